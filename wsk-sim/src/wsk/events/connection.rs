//! Connection (and connected stream) sockets' events: connect progress, sends and posted
//! receives moving, and WskReceiveEvent / WskDisconnectEvent / WskSendBacklogEvent
//! (W42-W46, W50-W58).

use std::io::{ErrorKind, Read};

use wsk_sys::{
    NTSTATUS, PVOID, SIZE_T, STATUS_CONNECTION_RESET, STATUS_DATA_NOT_ACCEPTED, STATUS_PENDING,
    STATUS_SUCCESS, WSK_CLIENT_CONNECTION_DISPATCH, WSK_CLIENT_STREAM_DISPATCH,
    WSK_EVENT_DISCONNECT, WSK_EVENT_RECEIVE, WSK_EVENT_SEND_BACKLOG, WSK_FLAG_ABORTIVE,
    WSK_FLAG_RELEASE_ASAP,
};

use super::callback::{callback_done, settle, start_callback, Completion, Job as Deferred, Plan};
use crate::kernel::irql::run_at;
use crate::kernel::mdl::pin_chain;
use crate::kernel::schedule::range;
use crate::kernel::state::{config, violation};
use crate::wsk::connection;
use crate::wsk::indication::{self, Block};
use crate::wsk::socket::{self, Kind, Progress, Provider, Sock};

/// Bytes read ahead from a host socket before the client takes them.
const RX_CAP: usize = 256 * 1024;

/// A connection callback to invoke.
enum Job {
    /// WskReceiveEvent; no block is the NULL indication of a dead socket (W52).
    Receive {
        ws: usize,
        ctx: usize,
        f: usize,
        block: Option<Box<Block>>,
        chunks: Vec<Vec<u8>>,
        flags: u32,
    },
    Disconnect {
        ws: usize,
        ctx: usize,
        f: usize,
        flags: u32,
    },
    Backlog {
        ws: usize,
        ctx: usize,
        f: usize,
        size: usize,
    },
}

/// The client's connection dispatch for a connection-like socket.
pub(crate) fn client_dispatch(s: &Sock) -> *const WSK_CLIENT_CONNECTION_DISPATCH {
    if s.dispatch == 0 {
        return std::ptr::null();
    }
    if s.kind == Kind::Stream {
        // SAFETY: stream sockets carry a WSK_CLIENT_STREAM_DISPATCH.
        unsafe { (*(s.dispatch as *const WSK_CLIENT_STREAM_DISPATCH)).Connect }
    } else {
        s.dispatch as *const WSK_CLIENT_CONNECTION_DISPATCH
    }
}

/// Poll events a connection-like socket wants, and whether it has work needing no readiness.
pub(crate) fn interest(s: &Sock) -> (i16, bool) {
    let mut ev: i16 = 0;
    let mut work = false;
    if s.connect.is_some() && !s.unanswered {
        ev |= libc::POLLOUT;
    }
    if s.connected {
        if s.dead.is_none() && !s.eof && s.rx.len() < RX_CAP && s.fd.is_some() {
            ev |= libc::POLLIN;
        }
        if !s.sends.is_empty() && s.fd.is_some() {
            ev |= libc::POLLOUT;
        }
        let e = s.events();
        work = (!s.rx.is_empty()
            && (!s.receives.is_empty() || (e & WSK_EVENT_RECEIVE != 0 && !s.rx_blocked)))
            || (s.eof && !s.eof_reported && s.rx.is_empty() && fin_deliverable(s))
            || (s.dead.is_some()
                && !s.dead_reported
                && (dead_deliverable(s) || !s.sends.is_empty() || s.disconnect.is_some()))
            || (e & WSK_EVENT_SEND_BACKLOG != 0 && !s.backlog_reported)
            || (s.disconnect.is_some() && s.sends.is_empty())
            || (!s.receives.is_empty() && (s.eof || s.dead.is_some()));
    }
    (ev, work)
}

/// Whether a graceful remote disconnect can be indicated now: the event is enabled and the
/// client's dispatch known (an accepted socket's is not until its accept callback set it,
/// W50). Until then the FIN stays pending, as buffered data does, and is indicated once
/// both hold (G21), never silently marked reported.
fn fin_deliverable(s: &Sock) -> bool {
    s.events() & WSK_EVENT_DISCONNECT != 0 && !client_dispatch(s).is_null()
}

/// As [`fin_deliverable`] for a dead connection (a reset): the disconnect event, or the
/// receive event's NULL indication (W52).
fn dead_deliverable(s: &Sock) -> bool {
    s.events() & (WSK_EVENT_DISCONNECT | WSK_EVENT_RECEIVE) != 0 && !client_dispatch(s).is_null()
}

/// A connect in progress: `Ok(done)` to go on planning with the connect's completion (if it
/// finished), `Err(plan)` to stop here.
pub(crate) fn plan_connect(p: &mut Provider, ws: usize) -> Result<Vec<Completion>, Plan> {
    let mut done = Vec::new();
    let s = p.sockets.get_mut(&ws).expect("live");
    if let Some((irp, socket_connect)) = s.connect {
        if s.unanswered {
            return Err(Plan::Nothing);
        }
        let fd = s.fd.as_ref();
        let err = fd.and_then(|f| f.take_error().ok().flatten());
        let connected = fd.is_some_and(|f| f.peer_addr().is_ok());
        if let Some(e) = err {
            s.connect = None;
            let st = if e.kind() == ErrorKind::ConnectionRefused {
                wsk_sys::STATUS_CONNECTION_REFUSED
            } else {
                STATUS_CONNECTION_RESET
            };
            if socket_connect {
                if let Some(mut s) = socket::remove(p, ws) {
                    drop(s.fd.take());
                }
            }
            return Err(Plan::Complete(vec![(irp, st, 0)]));
        }
        if connected {
            s.connect = None;
            s.connected = true;
            s.bound =
                s.fd.as_ref()
                    .and_then(|f| f.local_addr().ok())
                    .and_then(|a| a.as_socket())
                    .or(s.bound);
            if socket_connect {
                s.handed_out = true;
            }
            done.push((irp, STATUS_SUCCESS, if socket_connect { ws } else { 0 }));
        } else {
            return Err(Plan::Nothing);
        }
    }
    Ok(done)
}

/// W52: a dead connection's WskReceiveEvent with a NULL DataIndication.
pub(crate) fn plan_killed(s: &mut Sock, ws: usize) -> Plan {
    // SAFETY: the client's connection dispatch (checked non-NULL by the caller).
    let f = unsafe { (*client_dispatch(s)).WskReceiveEvent }.map_or(0, |f| f as usize);
    start_callback(s, WSK_EVENT_RECEIVE);
    Plan::Run(
        defer(Job::Receive {
            ws,
            ctx: s.ctx,
            f,
            block: None,
            chunks: Vec::new(),
            flags: 0,
        }),
        Vec::new(),
    )
}

fn read_stream(s: &mut Sock) {
    let max = RX_CAP.saturating_sub(s.rx.len());
    if max == 0 || s.eof || s.dead.is_some() {
        return;
    }
    let Some(fd) = s.fd.as_ref() else { return };
    let mut buf = vec![0u8; max.min(64 * 1024)];
    match (&*fd).read(&mut buf) {
        Ok(0) => s.eof = true,
        Ok(n) => s.rx.extend(&buf[..n]),
        Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
        Err(_) => connection::abort(s, STATUS_CONNECTION_RESET),
    }
}

/// Sends move, head first, in slices from the client's MDLs; finished ones go to `done`.
fn move_sends(s: &mut Sock, done: &mut Vec<Completion>) {
    // Sends: head first, slices from the client's MDLs.
    while let Some(mut req) = s.sends.pop_front() {
        match connection::write_some(s, &mut req) {
            Progress::Done => {
                // SAFETY: pinned when queued.
                unsafe { pin_chain(req.buf.Mdl, -1) };
                done.push((req.irp, STATUS_SUCCESS, req.buf.Length));
            }
            Progress::Blocked => {
                s.sends.push_front(req);
                break;
            }
            Progress::Failed(st) => {
                // SAFETY: pinned when queued.
                unsafe { pin_chain(req.buf.Mdl, -1) };
                done.push((req.irp, st, 0));
                for r in s.sends.drain(..) {
                    // SAFETY: pinned when queued.
                    unsafe { pin_chain(r.buf.Mdl, -1) };
                    done.push((r.irp, st, 0));
                }
                break;
            }
        }
    }
}

/// Whether a provider thread other than the socket's may move its sends while its event
/// callback runs (`Config::progress_during_callback_rate`).
pub(crate) fn sends_may_move(s: &Sock) -> bool {
    s.running != 0
        && s.closing.is_none()
        && matches!(s.kind, Kind::Connection | Kind::Stream)
        && s.connected
        && !s.sends.is_empty()
        && s.fd.is_some()
        && config().progress_during_callback_rate > 0.0
}

/// While the socket's callback runs on another thread: only its sends move (receives wait,
/// they would reorder data the callback may give back).
pub(crate) fn plan_sends(p: &mut Provider, ws: usize) -> Plan {
    let s = p.sockets.get_mut(&ws).expect("live");
    let mut done = Vec::new();
    move_sends(s, &mut done);
    Plan::completing(done)
}

pub(crate) fn plan(p: &mut Provider, ws: usize, mut done: Vec<Completion>) -> Plan {
    let s = p.sockets.get_mut(&ws).expect("live");
    move_sends(s, &mut done);
    if s.sends.is_empty() && s.dead.is_none() {
        if let Some(irp) = s.disconnect.take() {
            if let Some(fd) = s.fd.as_ref() {
                let _ = fd.shutdown(std::net::Shutdown::Write);
            }
            s.shut_wr = true;
            done.push((irp, STATUS_SUCCESS, 0));
        }
    }
    read_stream(s);
    // Posted receives take data before the callback (W42).
    while let Some(mut req) = s.receives.pop_front() {
        match connection::fill_receive(s, &mut req) {
            Some((st, n)) => {
                // SAFETY: pinned when queued.
                unsafe { pin_chain(req.buf.Mdl, -1) };
                s.rx_blocked = false;
                done.push((req.irp, st, n));
            }
            None => {
                s.receives.push_front(req);
                break;
            }
        }
    }
    let e = s.events();
    let level_flags = 0;
    if let Some(st) = s.dead {
        if !s.dead_reported {
            // G21: reported (and never again) only once indicated; pending IRPs fail now.
            s.dead_reported = dead_deliverable(s);
            for r in s.sends.drain(..).chain(std::iter::empty()) {
                // SAFETY: pinned when queued.
                unsafe { pin_chain(r.buf.Mdl, -1) };
                done.push((r.irp, st, 0));
            }
            if let Some(d) = s.disconnect.take() {
                done.push((d, st, 0));
            }
            let d = client_dispatch(s);
            if e & WSK_EVENT_DISCONNECT != 0 && !d.is_null() {
                // SAFETY: the client's connection dispatch.
                let f = unsafe { (*d).WskDisconnectEvent }.map_or(0, |f| f as usize);
                start_callback(s, WSK_EVENT_DISCONNECT);
                return Plan::Run(
                    defer(Job::Disconnect {
                        ws,
                        ctx: s.ctx,
                        f,
                        flags: WSK_FLAG_ABORTIVE,
                    }),
                    done,
                );
            }
            if e & WSK_EVENT_RECEIVE != 0 && !d.is_null() {
                // W52: a NULL indication says the socket no longer works.
                // SAFETY: the client's connection dispatch.
                let f = unsafe { (*d).WskReceiveEvent }.map_or(0, |f| f as usize);
                start_callback(s, WSK_EVENT_RECEIVE);
                return Plan::Run(
                    defer(Job::Receive {
                        ws,
                        ctx: s.ctx,
                        f,
                        block: None,
                        chunks: Vec::new(),
                        flags: level_flags,
                    }),
                    done,
                );
            }
        }
        return Plan::completing(done);
    }
    let d = client_dispatch(s);
    if e & WSK_EVENT_RECEIVE != 0
        && !s.rx_blocked
        && !s.rx.is_empty()
        && s.receives.is_empty()
        && !d.is_null()
    {
        let cfg = config();
        let avail = s.rx.len().min(cfg.max_indication.max(1));
        let n = if cfg.split_indications {
            range(1, avail)
        } else {
            avail
        };
        let data: Vec<u8> = s.rx.drain(..n).collect();
        let pieces = if cfg.split_indications {
            range(1, 3).min(n)
        } else {
            1
        };
        let mut chunks = Vec::new();
        let mut at = 0;
        for i in 0..pieces {
            let end = if i + 1 == pieces {
                n
            } else {
                n * (i + 1) / pieces
            };
            chunks.push(data[at..end].to_vec());
            at = end;
        }
        let mut flags = 0;
        if s.retained_bytes > cfg.release_asap_threshold {
            flags |= WSK_FLAG_RELEASE_ASAP;
        }
        let block = indication::stream(ws, &chunks);
        // SAFETY: the client's connection dispatch.
        let f = unsafe { (*d).WskReceiveEvent }.map_or(0, |f| f as usize);
        start_callback(s, WSK_EVENT_RECEIVE);
        let receive = Job::Receive {
            ws,
            ctx: s.ctx,
            f,
            block: Some(block),
            chunks,
            flags,
        };
        if e & WSK_EVENT_DISCONNECT != 0
            && !s.eof_reported
            && cfg.disconnect_race_rate > 0.0
            && crate::kernel::schedule::chance(cfg.disconnect_race_rate)
        {
            // `disconnect_race_rate`: the graceful WskDisconnectEvent may overlap this
            // receive callback, on another thread, once the peer's FIN is in and no data is
            // left: W45 serialises receive events only with each other.
            if s.rx.is_empty() && !s.eof {
                read_stream(s);
            }
            let wait = std::time::Duration::from_micros(cfg.disconnect_race_us);
            return Plan::Run(
                Deferred::new(move |level, at| race_receive(ws, receive, wait, level, at)),
                done,
            );
        }
        return Plan::Run(defer(receive), done);
    }
    if s.eof && s.rx.is_empty() && !s.eof_reported && fin_deliverable(s) {
        s.eof_reported = true;
        // W57: a graceful remote disconnect, without WSK_FLAG_ABORTIVE.
        // SAFETY: the client's connection dispatch (non-NULL: fin_deliverable).
        let f = unsafe { (*d).WskDisconnectEvent }.map_or(0, |f| f as usize);
        start_callback(s, WSK_EVENT_DISCONNECT);
        return Plan::Run(
            defer(Job::Disconnect {
                ws,
                ctx: s.ctx,
                f,
                flags: 0,
            }),
            done,
        );
    }
    if e & WSK_EVENT_SEND_BACKLOG != 0 && !s.backlog_reported && !d.is_null() {
        s.backlog_reported = true;
        // SAFETY: the client's connection dispatch.
        let f = unsafe { (*d).WskSendBacklogEvent }.map_or(0, |f| f as usize);
        start_callback(s, WSK_EVENT_SEND_BACKLOG);
        return Plan::Run(
            defer(Job::Backlog {
                ws,
                ctx: s.ctx,
                f,
                size: config().ideal_send_backlog,
            }),
            done,
        );
    }
    Plan::completing(done)
}

fn run(job: Job, level: u8, at: u32) {
    match job {
        Job::Receive {
            ws,
            ctx,
            f,
            mut block,
            chunks,
            flags,
        } => {
            type F = unsafe extern "win64" fn(
                PVOID,
                u32,
                *mut wsk_sys::WSK_DATA_INDICATION,
                SIZE_T,
                *mut SIZE_T,
            ) -> NTSTATUS;
            let bytes: usize = chunks.iter().map(Vec::len).sum();
            let mut accepted: SIZE_T = bytes;
            let head = block
                .as_mut()
                .map_or(std::ptr::null_mut(), |b| b.head_stream());
            if let Some(b) = block.as_ref() {
                indication::callback_starts(b);
            }
            let st = if f == 0 {
                STATUS_SUCCESS
            } else {
                // SAFETY: `f` is the client's WskReceiveEvent (PFN_WSK_RECEIVE_EVENT).
                let f: F = unsafe { std::mem::transmute::<usize, F>(f) };
                run_at(level, "WskReceiveEvent", || {
                    // SAFETY: calling the client's callback with provider-owned arguments.
                    unsafe { f(ctx as PVOID, flags | at, head, bytes, &raw mut accepted) }
                })
            };
            let calls = crate::kernel::preempt::calls_now();
            after_receive(ws, block, chunks, bytes, st, accepted, calls);
        }
        Job::Disconnect { ws, ctx, f, flags } => {
            type F = unsafe extern "win64" fn(PVOID, u32) -> NTSTATUS;
            let st = if f == 0 {
                STATUS_SUCCESS
            } else {
                // SAFETY: `f` is the client's WskDisconnectEvent.
                let f: F = unsafe { std::mem::transmute::<usize, F>(f) };
                // SAFETY: calling the client's callback.
                run_at(level, "WskDisconnectEvent", || unsafe {
                    f(ctx as PVOID, flags | at)
                })
            };
            if st != STATUS_SUCCESS {
                violation(format!(
                    "WskDisconnectEvent returned {st:#x}; only STATUS_SUCCESS is defined (W57/C32)"
                ));
            }
            callback_done(ws, WSK_EVENT_DISCONNECT);
        }
        Job::Backlog { ws, ctx, f, size } => {
            type F = unsafe extern "win64" fn(PVOID, SIZE_T) -> NTSTATUS;
            let st = if f == 0 {
                STATUS_SUCCESS
            } else {
                // SAFETY: `f` is the client's WskSendBacklogEvent.
                let f: F = unsafe { std::mem::transmute::<usize, F>(f) };
                // SAFETY: calling the client's callback.
                run_at(level, "WskSendBacklogEvent", || unsafe {
                    f(ctx as PVOID, size)
                })
            };
            if st != STATUS_SUCCESS {
                violation(format!("WskSendBacklogEvent returned {st:#x}; only STATUS_SUCCESS is defined (W58/C32)"));
            }
            callback_done(ws, WSK_EVENT_SEND_BACKLOG);
        }
    }
}

fn after_receive(
    ws: usize,
    block: Option<Box<Block>>,
    chunks: Vec<Vec<u8>>,
    bytes: usize,
    st: NTSTATUS,
    accepted: usize,
    calls_at_return: u64,
) {
    let Some(block) = block else {
        callback_done(ws, WSK_EVENT_RECEIVE);
        return;
    };
    let mut bad = None;
    socket::with(|p| {
        let Some(s) = p.sockets.get_mut(&ws) else {
            return;
        };
        let put_back = |s: &mut Sock, from: usize| {
            let all: Vec<u8> = chunks.concat();
            for b in all[from..].iter().rev() {
                s.rx.push_front(*b);
            }
            s.rx_blocked = true;
        };
        match st {
            STATUS_SUCCESS if accepted > bytes => {
                bad = Some(format!(
                    "WskReceiveEvent returned STATUS_SUCCESS with *BytesAccepted {accepted} > BytesIndicated {bytes} (W54)"
                ));
            }
            STATUS_SUCCESS if accepted == bytes => {}
            STATUS_SUCCESS => put_back(s, accepted), // W54: partial
            STATUS_PENDING => s.retained_bytes += bytes,
            STATUS_DATA_NOT_ACCEPTED => put_back(s, 0), // W56
            other => {
                bad = Some(format!("WskReceiveEvent returned {other:#x}; only SUCCESS, PENDING and DATA_NOT_ACCEPTED are defined (C32)"));
                put_back(s, 0);
            }
        }
    });
    settle(ws, block, st == STATUS_PENDING, calls_at_return);
    if let Some(b) = bad {
        violation(b);
    }
    callback_done(ws, WSK_EVENT_RECEIVE);
}

/// `disconnect_race_rate`: runs the receive callback with the socket's disconnect event
/// armed: at each of the callback's kernel calls, once the peer's FIN is in and no data is
/// left, the WskDisconnectEvent runs on another thread while the callback waits up to
/// `wait`. If the FIN is in by the time the callback returns, the event still goes to
/// another thread (overlapping the provider's bookkeeping of the receive).
fn race_receive(ws: usize, receive: Job, wait: std::time::Duration, level: u8, at: u32) {
    let work = move || {
        disconnect_due(ws, true)
            .map(|job| Box::new(move || defer(job).run()) as Box<dyn FnOnce() + Send>)
    };
    crate::wsk::race::arm(Box::new(work), wait);
    run(receive, level, at);
    if crate::wsk::race::disarm().is_some() {
        if let Some(job) = disconnect_due(ws, false) {
            crate::wsk::race::run_elsewhere(
                Box::new(move || defer(job).run()),
                std::time::Duration::ZERO,
            );
        }
    }
}

/// The socket's graceful WskDisconnectEvent if it is due now (FIN in, no data left, not
/// reported, the event enabled), marked running; checked from the receive callback's thread,
/// `during` it (at one of its kernel calls) or once it has returned. After its return, not
/// while another receive callback of the socket has been started: that one carries data from
/// before the FIN and may not have run an instruction yet, and a disconnect event overlapping
/// it there would be one before its data, which W57 excludes (G23).
fn disconnect_due(ws: usize, during: bool) -> Option<Job> {
    socket::try_with(|p| {
        let s = p.sockets.get_mut(&ws)?;
        if s.eof_reported
            || s.closing.is_some()
            || s.dead.is_some()
            || s.events() & WSK_EVENT_DISCONNECT == 0
            || (!during && s.running & WSK_EVENT_RECEIVE != 0)
        {
            return None;
        }
        if s.rx.is_empty() && !s.eof {
            read_stream(s);
        }
        let d = client_dispatch(s);
        if !(s.eof && s.rx.is_empty()) || d.is_null() {
            return None;
        }
        s.eof_reported = true;
        // SAFETY: the client's connection dispatch.
        let f = unsafe { (*d).WskDisconnectEvent }.map_or(0, |f| f as usize);
        start_callback(s, WSK_EVENT_DISCONNECT);
        Some(Job::Disconnect {
            ws,
            ctx: s.ctx,
            f,
            flags: 0,
        })
    })
    .flatten()
}

/// The job as the provider threads carry it.
fn defer(job: Job) -> Deferred {
    Deferred::new(move |level, at| run(job, level, at))
}
