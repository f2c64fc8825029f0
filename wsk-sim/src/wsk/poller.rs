//! Provider threads: poll the host sockets, move data between them and the client's IRPs,
//! and invoke the client's event callbacks (one at a time per socket) at a scheduled IRQL.

use std::io::{ErrorKind, Read};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use wsk_sys::{
    NTSTATUS, PIRP, PVOID, PWSK_SOCKET, SIZE_T, STATUS_CONNECTION_RESET, STATUS_DATA_NOT_ACCEPTED,
    STATUS_PENDING, STATUS_REQUEST_NOT_ACCEPTED, STATUS_SUCCESS, WSK_CLIENT_CONNECTION_DISPATCH,
    WSK_CLIENT_DATAGRAM_DISPATCH, WSK_CLIENT_LISTEN_DISPATCH, WSK_CLIENT_STREAM_DISPATCH,
    WSK_EVENT_ACCEPT, WSK_EVENT_DISCONNECT, WSK_EVENT_RECEIVE, WSK_EVENT_RECEIVE_FROM,
    WSK_EVENT_SEND_BACKLOG, WSK_FLAG_ABORTIVE, WSK_FLAG_AT_DISPATCH_LEVEL, WSK_FLAG_RELEASE_ASAP,
};

use super::addr::SockaddrBuf;
use super::connection::{self, Progress};
use super::indication::{self, Block};
use super::socket::{self, Kind, Provider, Sock};

const THREADS: usize = 2;
const RX_CAP: usize = 256 * 1024;
const DGRAM_CAP: usize = 256;

static WAKE_FDS: OnceLock<Vec<i32>> = OnceLock::new();

pub(crate) fn ensure_started() {
    WAKE_FDS.get_or_init(|| {
        let mut v = Vec::new();
        for i in 0..THREADS {
            // SAFETY: plain eventfd creation.
            let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
            assert!(fd >= 0, "eventfd failed");
            v.push(fd);
            std::thread::Builder::new()
                .name(format!("wsk-sim-provider-{i}"))
                .spawn(move || crate::irql::sim_thread_main(move || run(i, fd)))
                .expect("spawn provider thread");
        }
        v
    });
}

/// Wakes the provider thread that owns sockets with this owner index.
pub(crate) fn wake(owner: usize) {
    if let Some(fds) = WAKE_FDS.get() {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes to our eventfd.
        unsafe { libc::write(fds[owner % THREADS], (&raw const one).cast(), 8) };
    }
}

/// Work a callback job carries out with the provider lock released.
enum Job {
    Receive {
        ws: usize,
        ctx: usize,
        f: usize,
        block: Option<Box<Block>>,
        chunks: Vec<Vec<u8>>,
        flags: u32,
    },
    ReceiveFrom {
        ws: usize,
        ctx: usize,
        f: usize,
        block: Box<Block>,
        dgrams: Vec<(Vec<u8>, SocketAddr)>,
        is_static: bool,
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
    NullReceiveFrom {
        ws: usize,
        ctx: usize,
        f: usize,
    },
    Accept {
        ws: usize,
        new: usize,
        ctx: usize,
        f: usize,
        local: SocketAddr,
        remote: SocketAddr,
    },
}

enum Plan {
    Nothing,
    Complete(Vec<(usize, NTSTATUS, usize)>),
    Run(Job, Vec<(usize, NTSTATUS, usize)>),
}

fn run(idx: usize, wake_fd: i32) {
    crate::irql::mark_sim_thread();
    loop {
        let (mut pfds, ids, busy) = socket::with(|p| {
            let mut pfds = Vec::new();
            let mut ids = Vec::new();
            let mut busy = false;
            for (ws, s) in &p.sockets {
                if s.owner % THREADS != idx {
                    continue;
                }
                let (ev, work) = interest(s);
                if work {
                    busy = true;
                }
                if ev != 0 || work {
                    ids.push(*ws);
                }
                if ev != 0 {
                    if let Some(fd) = s.fd.as_ref() {
                        pfds.push(libc::pollfd {
                            fd: fd.as_raw_fd(),
                            events: ev,
                            revents: 0,
                        });
                    }
                }
            }
            (pfds, ids, busy)
        });
        pfds.push(libc::pollfd {
            fd: wake_fd,
            events: libc::POLLIN,
            revents: 0,
        });
        let timeout = if busy { 0 } else { 20 };
        // SAFETY: `pfds` is a valid array of pollfd.
        unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) };
        let mut drain = [0u8; 8];
        // SAFETY: reading our eventfd's counter (non-blocking).
        unsafe { libc::read(wake_fd, drain.as_mut_ptr().cast(), 8) };
        for ws in ids {
            service(ws);
        }
        if busy {
            std::thread::yield_now();
        }
    }
}

fn events(s: &Sock) -> u32 {
    s.events()
}

/// Poll events wanted, and whether there is work that needs no readiness.
#[allow(clippy::collapsible_match)] // a listening stream socket must not fall into the connection arm
fn interest(s: &Sock) -> (i16, bool) {
    if s.closing.is_some() || s.running != 0 {
        return (0, false);
    }
    if s.killed {
        return (0, !s.kill_reported);
    }
    let mut ev: i16 = 0;
    let mut work = false;
    match s.kind {
        Kind::Listen | Kind::Stream if s.listening => {
            if !s.accepts.is_empty() || events(s) & WSK_EVENT_ACCEPT != 0 {
                ev |= libc::POLLIN;
            }
        }
        Kind::Connection | Kind::Stream => {
            if s.connect.is_some() {
                ev |= libc::POLLOUT;
            }
            if s.connected {
                if s.dead.is_none() && !s.eof && s.rx.len() < RX_CAP && s.fd.is_some() {
                    ev |= libc::POLLIN;
                }
                if !s.sends.is_empty() && s.fd.is_some() {
                    ev |= libc::POLLOUT;
                }
                let e = events(s);
                work = (!s.rx.is_empty()
                    && (!s.receives.is_empty() || (e & WSK_EVENT_RECEIVE != 0 && !s.rx_blocked)))
                    || (s.eof && !s.eof_reported && s.rx.is_empty())
                    || (s.dead.is_some() && !s.dead_reported)
                    || (e & WSK_EVENT_SEND_BACKLOG != 0 && !s.backlog_reported)
                    || (s.disconnect.is_some() && s.sends.is_empty())
                    || (!s.receives.is_empty() && (s.eof || s.dead.is_some()));
            }
        }
        Kind::Datagram => {
            if s.bound.is_some() && s.dgrams.len() < DGRAM_CAP {
                ev |= libc::POLLIN;
            }
            if !s.sendtos.is_empty() {
                ev |= libc::POLLOUT;
            }
            let due = s.dgram_retry_at.is_none_or(|t| Instant::now() >= t);
            work = !s.dgrams.is_empty()
                && (!s.recvfroms.is_empty() || (events(s) & WSK_EVENT_RECEIVE_FROM != 0 && due));
        }
        _ => {}
    }
    (ev, work)
}

fn service(ws: usize) {
    for _ in 0..16 {
        let plan = socket::with(|p| plan(p, ws));
        match plan {
            Plan::Nothing => return,
            Plan::Complete(c) => run_completions(c),
            Plan::Run(job, c) => {
                run_completions(c);
                run_job(job);
            }
        }
    }
}

fn run_completions(c: Vec<(usize, NTSTATUS, usize)>) {
    for (irp, st, info) in c {
        if irp != 0 {
            super::complete::complete_async(irp as PIRP, st, info);
        }
    }
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

fn read_datagrams(s: &mut Sock) {
    let Some(fd) = s.fd.as_ref() else { return };
    let mut buf = vec![MaybeUninit::<u8>::uninit(); 65536];
    while s.dgrams.len() < DGRAM_CAP {
        match fd.recv_from(&mut buf) {
            Ok((n, from)) => {
                // SAFETY: recv_from initialised the first n bytes.
                let data: Vec<u8> = buf[..n]
                    .iter()
                    .map(|b| unsafe { b.assume_init() })
                    .collect();
                let Some(from) = from.as_socket() else {
                    continue;
                };
                // W38: with a fixed remote address, datagrams from elsewhere are dropped.
                if s.fixed_remote.is_some_and(|r| r != from) {
                    continue;
                }
                s.dgrams.push_back((data, from));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(_) => {} // ICMP errors of earlier sends: ignored, as for UDP on Windows
        }
    }
}

/// The client's connection dispatch for a connection-like socket.
fn conn_dispatch(s: &Sock) -> *const WSK_CLIENT_CONNECTION_DISPATCH {
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

fn plan(p: &mut Provider, ws: usize) -> Plan {
    let Some(s) = p.sockets.get_mut(&ws) else {
        return Plan::Nothing;
    };
    if s.closing.is_some() || s.running != 0 {
        return Plan::Nothing;
    }
    if s.killed {
        return plan_killed(s, ws);
    }
    let mut done: Vec<(usize, NTSTATUS, usize)> = Vec::new();

    // Connect in progress.
    if let Some((irp, socket_connect)) = s.connect {
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
            return Plan::Complete(vec![(irp, st, 0)]);
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
            return Plan::Nothing;
        }
    }

    match s.kind {
        Kind::Listen | Kind::Stream if s.listening => plan_listen(p, ws, done),
        Kind::Connection | Kind::Stream if s.connected => plan_connection(p, ws, done),
        Kind::Datagram => plan_datagram(p, ws, done),
        _ => {
            if done.is_empty() {
                Plan::Nothing
            } else {
                Plan::Complete(done)
            }
        }
    }
}

/// W48/W52/W60: a non-functional socket gets one NULL indication if its callback is on.
fn plan_killed(s: &mut Sock, ws: usize) -> Plan {
    if s.kill_reported {
        return Plan::Nothing;
    }
    s.kill_reported = true;
    let e = s.events();
    let me = Some(std::thread::current().id());
    match s.kind {
        Kind::Listen | Kind::Stream
            if s.listening && e & WSK_EVENT_ACCEPT != 0 && s.dispatch != 0 =>
        {
            let f = if s.kind == Kind::Stream {
                // SAFETY: stream sockets carry a WSK_CLIENT_STREAM_DISPATCH.
                unsafe { (*(s.dispatch as *const WSK_CLIENT_STREAM_DISPATCH)).Listen as usize }
            } else {
                s.dispatch
            };
            // SAFETY: the client's listen dispatch.
            let f = if f == 0 {
                0
            } else {
                unsafe {
                    (*(f as *const WSK_CLIENT_LISTEN_DISPATCH))
                        .WskAcceptEvent
                        .map_or(0, |f| f as usize)
                }
            };
            s.running = WSK_EVENT_ACCEPT;
            s.running_thread = me;
            let any: SocketAddr = ([0, 0, 0, 0], 0).into();
            Plan::Run(
                Job::Accept {
                    ws,
                    new: 0,
                    ctx: s.ctx,
                    f,
                    local: any,
                    remote: any,
                },
                Vec::new(),
            )
        }
        Kind::Datagram if e & WSK_EVENT_RECEIVE_FROM != 0 && s.dispatch != 0 => {
            // SAFETY: the client's datagram dispatch.
            let f = unsafe {
                (*(s.dispatch as *const WSK_CLIENT_DATAGRAM_DISPATCH)).WskReceiveFromEvent
            }
            .map_or(0, |f| f as usize);
            s.running = WSK_EVENT_RECEIVE_FROM;
            s.running_thread = me;
            Plan::Run(Job::NullReceiveFrom { ws, ctx: s.ctx, f }, Vec::new())
        }
        Kind::Connection | Kind::Stream
            if e & WSK_EVENT_RECEIVE != 0 && !conn_dispatch(s).is_null() =>
        {
            // SAFETY: the client's connection dispatch.
            let f = unsafe { (*conn_dispatch(s)).WskReceiveEvent }.map_or(0, |f| f as usize);
            s.running = WSK_EVENT_RECEIVE;
            s.running_thread = me;
            Plan::Run(
                Job::Receive {
                    ws,
                    ctx: s.ctx,
                    f,
                    block: None,
                    chunks: Vec::new(),
                    flags: 0,
                },
                Vec::new(),
            )
        }
        _ => Plan::Nothing,
    }
}

fn plan_listen(p: &mut Provider, ws: usize, mut done: Vec<(usize, NTSTATUS, usize)>) -> Plan {
    let s = p.sockets.get_mut(&ws).expect("live");
    let has_event = s.events() & WSK_EVENT_ACCEPT != 0;
    if s.accepts.is_empty() && !has_event {
        return if done.is_empty() {
            Plan::Nothing
        } else {
            Plan::Complete(done)
        };
    }
    let Some(fd) = s.fd.as_ref() else {
        return Plan::Complete(done);
    };
    let (conn, remote) = match fd.accept() {
        Ok((c, a)) => (c, a.as_socket()),
        Err(_) => {
            return if done.is_empty() {
                Plan::Nothing
            } else {
                Plan::Complete(done)
            }
        }
    };
    let _ = conn.set_nonblocking(true);
    let local = conn.local_addr().ok().and_then(|a| a.as_socket());
    let (Some(remote), Some(local)) = (remote, local) else {
        return Plan::Complete(done);
    };
    let (family, client) = (s.family, s.client);
    let static_conn = super::registration::with_client(client, |r| r.static_mask).unwrap_or(0)
        & socket::CONNECTION_EVENTS;
    let mut ns = Sock::new(Kind::Connection, family, client, 0, 0, Some(conn));
    ns.connected = true;
    ns.bound = Some(local);
    ns.remote = Some(remote);
    if let Some(req) = s.accepts.pop_front() {
        // W41: a queued WskAccept takes the connection; callbacks start disabled.
        ns.ctx = req.ctx;
        ns.dispatch = req.dispatch;
        ns.static_mask = static_conn;
        // SAFETY: optional address buffers the client keeps valid until completion.
        unsafe {
            if req.local != 0 {
                super::addr::write(req.local as _, local);
            }
            if req.remote != 0 {
                super::addr::write(req.remote as _, remote);
            }
        }
        let new = insert_locked(p, ns);
        done.push((req.irp, STATUS_SUCCESS, new));
        return Plan::Complete(done);
    }
    // WskAcceptEvent: the new socket is the provider's until the callback accepts it.
    ns.handed_out = false;
    let (ctx, disp) = (s.ctx, s.dispatch);
    let f = if s.kind == Kind::Stream {
        // SAFETY: stream sockets carry a WSK_CLIENT_STREAM_DISPATCH.
        unsafe { (*(disp as *const WSK_CLIENT_STREAM_DISPATCH)).Listen as usize }
    } else {
        disp
    };
    // SAFETY: the client's listen dispatch (entry checked non-NULL when enabled).
    let f = if f == 0 {
        0
    } else {
        unsafe {
            (*(f as *const WSK_CLIENT_LISTEN_DISPATCH))
                .WskAcceptEvent
                .map_or(0, |f| f as usize)
        }
    };
    s.running = WSK_EVENT_ACCEPT;
    s.running_thread = Some(std::thread::current().id());
    let new = insert_locked(p, ns);
    Plan::Run(
        Job::Accept {
            ws,
            new,
            ctx,
            f,
            local,
            remote,
        },
        done,
    )
}

fn insert_locked(p: &mut Provider, mut s: Sock) -> usize {
    let ws = Box::into_raw(Box::new(wsk_sys::WSK_SOCKET {
        Dispatch: (&raw const socket::CONNECTION_DISPATCH).cast(),
    })) as usize;
    s.owner = p.next_owner;
    p.next_owner = p.next_owner.wrapping_add(1);
    let owner = s.owner;
    p.sockets.insert(ws, s);
    wake(owner);
    ws
}

fn plan_connection(p: &mut Provider, ws: usize, mut done: Vec<(usize, NTSTATUS, usize)>) -> Plan {
    let s = p.sockets.get_mut(&ws).expect("live");
    // Sends: head first, slices from the client's MDLs.
    while let Some(mut req) = s.sends.pop_front() {
        match connection::write_some(s, &mut req) {
            Progress::Done => {
                // SAFETY: pinned when queued.
                unsafe { crate::mdl::pin_chain(req.buf.Mdl, -1) };
                done.push((req.irp, STATUS_SUCCESS, req.buf.Length));
            }
            Progress::Blocked => {
                s.sends.push_front(req);
                break;
            }
            Progress::Failed(st) => {
                // SAFETY: pinned when queued.
                unsafe { crate::mdl::pin_chain(req.buf.Mdl, -1) };
                done.push((req.irp, st, 0));
                for r in s.sends.drain(..) {
                    // SAFETY: pinned when queued.
                    unsafe { crate::mdl::pin_chain(r.buf.Mdl, -1) };
                    done.push((r.irp, st, 0));
                }
                break;
            }
        }
    }
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
                unsafe { crate::mdl::pin_chain(req.buf.Mdl, -1) };
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
            s.dead_reported = true;
            for r in s.sends.drain(..).chain(std::iter::empty()) {
                // SAFETY: pinned when queued.
                unsafe { crate::mdl::pin_chain(r.buf.Mdl, -1) };
                done.push((r.irp, st, 0));
            }
            if let Some(d) = s.disconnect.take() {
                done.push((d, st, 0));
            }
            let d = conn_dispatch(s);
            if e & WSK_EVENT_DISCONNECT != 0 && !d.is_null() {
                // SAFETY: the client's connection dispatch.
                let f = unsafe { (*d).WskDisconnectEvent }.map_or(0, |f| f as usize);
                s.running = WSK_EVENT_DISCONNECT;
                s.running_thread = Some(std::thread::current().id());
                return Plan::Run(
                    Job::Disconnect {
                        ws,
                        ctx: s.ctx,
                        f,
                        flags: WSK_FLAG_ABORTIVE,
                    },
                    done,
                );
            }
            if e & WSK_EVENT_RECEIVE != 0 && !d.is_null() {
                // W52: a NULL indication says the socket no longer works.
                // SAFETY: the client's connection dispatch.
                let f = unsafe { (*d).WskReceiveEvent }.map_or(0, |f| f as usize);
                s.running = WSK_EVENT_RECEIVE;
                s.running_thread = Some(std::thread::current().id());
                return Plan::Run(
                    Job::Receive {
                        ws,
                        ctx: s.ctx,
                        f,
                        block: None,
                        chunks: Vec::new(),
                        flags: level_flags,
                    },
                    done,
                );
            }
        }
        return if done.is_empty() {
            Plan::Nothing
        } else {
            Plan::Complete(done)
        };
    }
    let d = conn_dispatch(s);
    if e & WSK_EVENT_RECEIVE != 0
        && !s.rx_blocked
        && !s.rx.is_empty()
        && s.receives.is_empty()
        && !d.is_null()
    {
        let cfg = crate::state::config();
        let avail = s.rx.len().min(cfg.max_indication.max(1));
        let n = if cfg.split_indications {
            crate::faults::range(1, avail)
        } else {
            avail
        };
        let data: Vec<u8> = s.rx.drain(..n).collect();
        let pieces = if cfg.split_indications {
            crate::faults::range(1, 3).min(n)
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
        s.running = WSK_EVENT_RECEIVE;
        s.running_thread = Some(std::thread::current().id());
        return Plan::Run(
            Job::Receive {
                ws,
                ctx: s.ctx,
                f,
                block: Some(block),
                chunks,
                flags,
            },
            done,
        );
    }
    if s.eof && s.rx.is_empty() && !s.eof_reported {
        s.eof_reported = true;
        if e & WSK_EVENT_DISCONNECT != 0 && !d.is_null() {
            // W57: a graceful remote disconnect, without WSK_FLAG_ABORTIVE.
            // SAFETY: the client's connection dispatch.
            let f = unsafe { (*d).WskDisconnectEvent }.map_or(0, |f| f as usize);
            s.running = WSK_EVENT_DISCONNECT;
            s.running_thread = Some(std::thread::current().id());
            return Plan::Run(
                Job::Disconnect {
                    ws,
                    ctx: s.ctx,
                    f,
                    flags: 0,
                },
                done,
            );
        }
    }
    if e & WSK_EVENT_SEND_BACKLOG != 0 && !s.backlog_reported && !d.is_null() {
        s.backlog_reported = true;
        // SAFETY: the client's connection dispatch.
        let f = unsafe { (*d).WskSendBacklogEvent }.map_or(0, |f| f as usize);
        s.running = WSK_EVENT_SEND_BACKLOG;
        s.running_thread = Some(std::thread::current().id());
        return Plan::Run(
            Job::Backlog {
                ws,
                ctx: s.ctx,
                f,
                size: crate::state::config().ideal_send_backlog,
            },
            done,
        );
    }
    if done.is_empty() {
        Plan::Nothing
    } else {
        Plan::Complete(done)
    }
}

fn plan_datagram(p: &mut Provider, ws: usize, mut done: Vec<(usize, NTSTATUS, usize)>) -> Plan {
    let s = p.sockets.get_mut(&ws).expect("live");
    while let Some(mut req) = s.sendtos.pop_front() {
        match super::datagram::send_some(s, &mut req) {
            Progress::Done => done.push((req.irp, STATUS_SUCCESS, req.sent)),
            Progress::Blocked => {
                s.sendtos.push_front(req);
                break;
            }
            Progress::Failed(st) => done.push((req.irp, st, 0)),
        }
    }
    if s.bound.is_some() {
        read_datagrams(s);
    }
    while !s.dgrams.is_empty() {
        let Some(req) = s.recvfroms.pop_front() else {
            break;
        };
        let (data, from) = s.dgrams.pop_front().expect("non-empty");
        let (st, n) = super::datagram::fill_recvfrom(&req, &data, from);
        // SAFETY: pinned when queued.
        unsafe { crate::mdl::pin_chain(req.buf.Mdl, -1) };
        done.push((req.irp, st, n));
    }
    let due = s.dgram_retry_at.is_none_or(|t| Instant::now() >= t);
    if s.events() & WSK_EVENT_RECEIVE_FROM != 0 && !s.dgrams.is_empty() && due && s.dispatch != 0 {
        s.dgram_retry_at = None;
        let n = crate::faults::range(1, 8).min(s.dgrams.len());
        let dgrams: Vec<(Vec<u8>, SocketAddr)> = s.dgrams.drain(..n).collect();
        let block = indication::datagrams(ws, &dgrams);
        // SAFETY: the client's datagram dispatch.
        let f =
            unsafe { (*(s.dispatch as *const WSK_CLIENT_DATAGRAM_DISPATCH)).WskReceiveFromEvent }
                .map_or(0, |f| f as usize);
        let is_static = s.static_mask & WSK_EVENT_RECEIVE_FROM != 0;
        s.running = WSK_EVENT_RECEIVE_FROM;
        s.running_thread = Some(std::thread::current().id());
        return Plan::Run(
            Job::ReceiveFrom {
                ws,
                ctx: s.ctx,
                f,
                block,
                dgrams,
                is_static,
            },
            done,
        );
    }
    if done.is_empty() {
        Plan::Nothing
    } else {
        Plan::Complete(done)
    }
}

fn call_flags(level: u8) -> u32 {
    if level >= wsk_sys::DISPATCH_LEVEL {
        WSK_FLAG_AT_DISPATCH_LEVEL
    } else {
        0
    }
}

fn run_job(job: Job) {
    let level = crate::irql::pick_level();
    let at = call_flags(level);
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
                indication::in_callback(b, true);
            }
            let st = if f == 0 {
                STATUS_SUCCESS
            } else {
                // SAFETY: `f` is the client's WskReceiveEvent (PFN_WSK_RECEIVE_EVENT).
                let f: F = unsafe { std::mem::transmute::<usize, F>(f) };
                crate::irql::run_at(level, "WskReceiveEvent", || {
                    // SAFETY: calling the client's callback with provider-owned arguments.
                    unsafe { f(ctx as PVOID, flags | at, head, bytes, &raw mut accepted) }
                })
            };
            if let Some(b) = block.as_ref() {
                indication::in_callback(b, false);
            }
            after_receive(ws, block, chunks, bytes, st, accepted);
        }
        Job::ReceiveFrom {
            ws,
            ctx,
            f,
            mut block,
            dgrams,
            is_static,
        } => {
            type F = unsafe extern "win64" fn(
                PVOID,
                u32,
                *mut wsk_sys::WSK_DATAGRAM_INDICATION,
            ) -> NTSTATUS;
            let head = block.head_dgram();
            indication::in_callback(&block, true);
            // SAFETY: `f` is the client's WskReceiveFromEvent.
            let f: F = unsafe { std::mem::transmute::<usize, F>(f) };
            let st = crate::irql::run_at(level, "WskReceiveFromEvent", || {
                // SAFETY: calling the client's callback with provider-owned arguments.
                unsafe { f(ctx as PVOID, at, head) }
            });
            indication::in_callback(&block, false);
            after_receive_from(ws, block, dgrams, st, is_static);
        }
        Job::NullReceiveFrom { ws, ctx, f } => {
            type F = unsafe extern "win64" fn(
                PVOID,
                u32,
                *mut wsk_sys::WSK_DATAGRAM_INDICATION,
            ) -> NTSTATUS;
            if f != 0 {
                // SAFETY: `f` is the client's WskReceiveFromEvent.
                let f: F = unsafe { std::mem::transmute::<usize, F>(f) };
                // SAFETY: a NULL list: the socket no longer works (W60).
                crate::irql::run_at(level, "WskReceiveFromEvent", || unsafe {
                    f(ctx as PVOID, at, std::ptr::null_mut())
                });
            }
            callback_done(ws, WSK_EVENT_RECEIVE_FROM);
        }
        Job::Disconnect { ws, ctx, f, flags } => {
            type F = unsafe extern "win64" fn(PVOID, u32) -> NTSTATUS;
            let st = if f == 0 {
                STATUS_SUCCESS
            } else {
                // SAFETY: `f` is the client's WskDisconnectEvent.
                let f: F = unsafe { std::mem::transmute::<usize, F>(f) };
                // SAFETY: calling the client's callback.
                crate::irql::run_at(level, "WskDisconnectEvent", || unsafe {
                    f(ctx as PVOID, flags | at)
                })
            };
            if st != STATUS_SUCCESS {
                crate::state::violation(format!(
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
                crate::irql::run_at(level, "WskSendBacklogEvent", || unsafe {
                    f(ctx as PVOID, size)
                })
            };
            if st != STATUS_SUCCESS {
                crate::state::violation(format!("WskSendBacklogEvent returned {st:#x}; only STATUS_SUCCESS is defined (W58/C32)"));
            }
            callback_done(ws, WSK_EVENT_SEND_BACKLOG);
        }
        Job::Accept {
            ws,
            new,
            ctx,
            f,
            local,
            remote,
        } => {
            type F = unsafe extern "win64" fn(
                PVOID,
                u32,
                wsk_sys::PSOCKADDR,
                wsk_sys::PSOCKADDR,
                PWSK_SOCKET,
                *mut PVOID,
                *mut *const WSK_CLIENT_CONNECTION_DISPATCH,
            ) -> NTSTATUS;
            let mut l = SockaddrBuf::new(local);
            let mut r = SockaddrBuf::new(remote);
            let mut ctx_slot: PVOID = std::ptr::null_mut();
            let mut disp_slot: *const WSK_CLIENT_CONNECTION_DISPATCH = std::ptr::null();
            socket::with(|p| {
                if let Some(s) = p.sockets.get_mut(&new) {
                    s.accept_slots =
                        Some(((&raw mut ctx_slot) as usize, (&raw mut disp_slot) as usize));
                }
            });
            let st = if f == 0 {
                STATUS_REQUEST_NOT_ACCEPTED
            } else {
                // SAFETY: `f` is the client's WskAcceptEvent.
                let f: F = unsafe { std::mem::transmute::<usize, F>(f) };
                crate::irql::run_at(level, "WskAcceptEvent", || {
                    // SAFETY: calling the client's callback with provider-owned arguments.
                    unsafe {
                        f(
                            ctx as PVOID,
                            at,
                            if new == 0 {
                                std::ptr::null_mut()
                            } else {
                                l.as_ptr()
                            },
                            if new == 0 {
                                std::ptr::null_mut()
                            } else {
                                r.as_ptr()
                            },
                            new as PWSK_SOCKET,
                            &raw mut ctx_slot,
                            &raw mut disp_slot,
                        )
                    }
                })
            };
            after_accept(ws, new, st, ctx_slot as usize, disp_slot as usize);
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
            STATUS_SUCCESS if accepted >= bytes => {}
            STATUS_SUCCESS => put_back(s, accepted), // W54: partial
            STATUS_PENDING => s.retained_bytes += bytes,
            STATUS_DATA_NOT_ACCEPTED => put_back(s, 0), // W56
            other => {
                bad = Some(other);
                put_back(s, 0);
            }
        }
    });
    if st == STATUS_PENDING {
        indication::retain(block);
    } else {
        indication::discard(block);
    }
    if let Some(b) = bad {
        crate::state::violation(format!("WskReceiveEvent returned {b:#x}; only SUCCESS, PENDING and DATA_NOT_ACCEPTED are defined (C32)"));
    }
    callback_done(ws, WSK_EVENT_RECEIVE);
}

fn after_receive_from(
    ws: usize,
    block: Box<Block>,
    dgrams: Vec<(Vec<u8>, SocketAddr)>,
    st: NTSTATUS,
    is_static: bool,
) {
    let mut bad = None;
    socket::with(|p| {
        let Some(s) = p.sockets.get_mut(&ws) else {
            return;
        };
        match st {
            STATUS_SUCCESS => {}
            STATUS_PENDING => s.retained_bytes += block.bytes,
            other => {
                if other != STATUS_DATA_NOT_ACCEPTED {
                    bad = Some(other);
                }
                for d in dgrams.into_iter().rev() {
                    s.dgrams.push_front(d);
                }
                if is_static {
                    // W61: a static callback keeps being called; retry a little later.
                    s.dgram_retry_at = Some(Instant::now() + Duration::from_millis(5));
                } else {
                    // W61: a per-socket callback is disabled until re-enabled.
                    s.enabled &= !WSK_EVENT_RECEIVE_FROM;
                }
            }
        }
    });
    if st == STATUS_PENDING {
        indication::retain(block);
    } else {
        indication::discard(block);
    }
    if let Some(b) = bad {
        crate::state::violation(format!("WskReceiveFromEvent returned {b:#x}; only SUCCESS, PENDING and DATA_NOT_ACCEPTED are defined (C32/G12)"));
    }
    callback_done(ws, WSK_EVENT_RECEIVE_FROM);
}

fn after_accept(ws: usize, new: usize, st: NTSTATUS, ctx: usize, disp: usize) {
    if new == 0 {
        // The NULL AcceptSocket of a dead listener (W48): nothing was accepted.
        callback_done(ws, WSK_EVENT_ACCEPT);
        return;
    }
    let mut bad = None;
    let closed_new = socket::with(|p| {
        let inherit = p.sockets.get(&ws).map_or(0, |l| l.inherit);
        match st {
            STATUS_SUCCESS => {
                if let Some(s) = p.sockets.get_mut(&new) {
                    s.accept_slots = None;
                    s.ctx = ctx;
                    s.dispatch = disp;
                    s.handed_out = true;
                    // W34: listener-enabled connection events apply to this socket; G18:
                    // static connection events too.
                    s.enabled |= inherit;
                    s.static_mask |= super::registration::with_client(s.client, |r| r.static_mask)
                        .unwrap_or(0)
                        & socket::CONNECTION_EVENTS;
                    wake(s.owner);
                }
                false
            }
            other => {
                if other != STATUS_REQUEST_NOT_ACCEPTED {
                    bad = Some(other);
                }
                // W49: rejected: the provider closes the accepted socket itself.
                if let Some(mut s) = socket::remove(p, new) {
                    if let Some(fd) = s.fd.take() {
                        let _ = fd.set_linger(Some(Duration::ZERO));
                    }
                }
                true
            }
        }
    });
    let _ = closed_new;
    if let Some(b) = bad {
        crate::state::violation(format!("WskAcceptEvent returned {b:#x}; only SUCCESS and STATUS_REQUEST_NOT_ACCEPTED are defined (W49/C32)"));
    }
    callback_done(ws, WSK_EVENT_ACCEPT);
}

/// A callback returned: complete disables that waited for it (W33) and a close that
/// waited for it (W70).
fn callback_done(ws: usize, event: u32) {
    let (waiters, close) = socket::with(|p| {
        let Some(s) = p.sockets.get_mut(&ws) else {
            return (Vec::new(), None);
        };
        s.running = 0;
        s.running_thread = None;
        // W44: indications come in arbitrary thread context: now and then the socket moves
        // to another provider thread (still one callback at a time: `running` is checked
        // under the provider lock by whichever thread plans next).
        if crate::faults::chance(0.25) {
            s.owner = crate::faults::random() as usize;
            wake(s.owner);
        }
        let (w, keep): (Vec<_>, Vec<_>) =
            s.disable_waiters.drain(..).partition(|(e, _)| *e == event);
        s.disable_waiters = keep;
        let close = s.closing;
        if close.is_some() {
            socket::remove(p, ws);
        }
        (w.into_iter().map(|(_, irp)| irp).collect::<Vec<_>>(), close)
    });
    for irp in waiters {
        super::complete::complete_async(irp as PIRP, STATUS_SUCCESS, 0);
    }
    if let Some(irp) = close.filter(|&i| i != 0) {
        super::complete::complete_async(irp as PIRP, STATUS_SUCCESS, 0);
    }
}
