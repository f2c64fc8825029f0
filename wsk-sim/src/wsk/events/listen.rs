//! Listening sockets' events: a connection arrives for a queued WskAccept or for
//! WskAcceptEvent (W41, W47-W49).

use std::net::SocketAddr;
use std::time::Duration;

use wsk_sys::{
    NTSTATUS, PVOID, PWSK_SOCKET, STATUS_REQUEST_NOT_ACCEPTED, STATUS_SUCCESS,
    WSK_CLIENT_CONNECTION_DISPATCH, WSK_CLIENT_LISTEN_DISPATCH, WSK_CLIENT_STREAM_DISPATCH,
    WSK_EVENT_ACCEPT,
};

use super::callback::{callback_done, start_callback, Completion, Job as Deferred, Plan};
use crate::wsk::addr::SockaddrBuf;
use crate::wsk::socket::{self, Kind, Provider, Sock};

/// A WskAcceptEvent to invoke; `new` 0 is the NULL AcceptSocket of a dead listener.
struct Job {
    ws: usize,
    new: usize,
    ctx: usize,
    f: usize,
    local: SocketAddr,
    remote: SocketAddr,
}

/// Poll events a listening socket wants.
pub(crate) fn interest(s: &Sock) -> i16 {
    if !s.accepts.is_empty() || s.events() & WSK_EVENT_ACCEPT != 0 {
        libc::POLLIN
    } else {
        0
    }
}

/// The client's WskAcceptEvent, or 0.
fn accept_event(s: &Sock) -> usize {
    let f = if s.kind == Kind::Stream {
        // SAFETY: stream sockets carry a WSK_CLIENT_STREAM_DISPATCH.
        unsafe { (*(s.dispatch as *const WSK_CLIENT_STREAM_DISPATCH)).Listen as usize }
    } else {
        s.dispatch
    };
    if f == 0 {
        return 0;
    }
    // SAFETY: the client's listen dispatch (entry checked non-NULL when enabled).
    unsafe {
        (*(f as *const WSK_CLIENT_LISTEN_DISPATCH))
            .WskAcceptEvent
            .map_or(0, |f| f as usize)
    }
}

/// W48: a dead listener's WskAcceptEvent with a NULL AcceptSocket.
pub(crate) fn plan_killed(s: &mut Sock, ws: usize) -> Plan {
    let f = accept_event(s);
    start_callback(s, WSK_EVENT_ACCEPT);
    let any: SocketAddr = ([0, 0, 0, 0], 0).into();
    Plan::Run(
        defer(Job {
            ws,
            new: 0,
            ctx: s.ctx,
            f,
            local: any,
            remote: any,
        }),
        Vec::new(),
    )
}

pub(crate) fn plan(p: &mut Provider, ws: usize, done: Vec<Completion>) -> Plan {
    let s = p.sockets.get_mut(&ws).expect("live");
    let has_event = s.events() & WSK_EVENT_ACCEPT != 0;
    if s.accepts.is_empty() && !has_event {
        return Plan::completing(done);
    }
    let Some(fd) = s.fd.as_ref() else {
        return Plan::Complete(done);
    };
    let (conn, remote) = match fd.accept() {
        Ok((c, a)) => (c, a.as_socket()),
        Err(_) => return Plan::completing(done),
    };
    let _ = conn.set_nonblocking(true);
    let local = conn.local_addr().ok().and_then(|a| a.as_socket());
    let (Some(remote), Some(local)) = (remote, local) else {
        return Plan::Complete(done);
    };
    let mut done = done;
    let (family, client) = (s.family, s.client);
    let static_conn = crate::wsk::clients::with_client(client, |r| r.static_mask).unwrap_or(0)
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
                crate::wsk::addr::write(req.local as _, local);
            }
            if req.remote != 0 {
                crate::wsk::addr::write(req.remote as _, remote);
            }
        }
        let new = insert_locked(p, ns);
        done.push((req.irp, STATUS_SUCCESS, new));
        return Plan::Complete(done);
    }
    // WskAcceptEvent: the new socket is the provider's until the callback accepts it.
    ns.handed_out = false;
    let ctx = s.ctx;
    let f = accept_event(s);
    start_callback(s, WSK_EVENT_ACCEPT);
    let new = insert_locked(p, ns);
    Plan::Run(
        defer(Job {
            ws,
            new,
            ctx,
            f,
            local,
            remote,
        }),
        done,
    )
}

fn insert_locked(p: &mut Provider, mut s: Sock) -> usize {
    let ws = Box::into_raw(Box::new(wsk_sys::WSK_SOCKET {
        Dispatch: (&raw const crate::wsk::dispatch::CONNECTION_DISPATCH).cast(),
    })) as usize;
    s.owner = p.next_owner;
    p.next_owner = p.next_owner.wrapping_add(1);
    let owner = s.owner;
    p.sockets.insert(ws, s);
    crate::wsk::wake::wake(owner);
    ws
}

fn run(job: Job, level: u8, at: u32) {
    type F = unsafe extern "win64" fn(
        PVOID,
        u32,
        wsk_sys::PSOCKADDR,
        wsk_sys::PSOCKADDR,
        PWSK_SOCKET,
        *mut PVOID,
        *mut *const WSK_CLIENT_CONNECTION_DISPATCH,
    ) -> NTSTATUS;
    let Job {
        ws,
        new,
        ctx,
        f,
        local,
        remote,
    } = job;
    let mut l = SockaddrBuf::new(local);
    let mut r = SockaddrBuf::new(remote);
    let mut ctx_slot: PVOID = std::ptr::null_mut();
    let mut disp_slot: *const WSK_CLIENT_CONNECTION_DISPATCH = std::ptr::null();
    socket::with(|p| {
        if let Some(s) = p.sockets.get_mut(&new) {
            s.accept_slots = Some(((&raw mut ctx_slot) as usize, (&raw mut disp_slot) as usize));
            s.accept_thread = Some((
                std::thread::current().id(),
                crate::kernel::preempt::thread_calls(),
            ));
        }
    });
    let cfg = crate::kernel::state::config();
    if new != 0
        && f != 0
        && cfg.accept_race_rate > 0.0
        && crate::kernel::schedule::chance(cfg.accept_race_rate)
    {
        arm_accept_race(
            ws,
            new,
            (&raw mut ctx_slot) as usize,
            (&raw mut disp_slot) as usize,
            cfg.accept_race_us,
        );
    }
    let st = if f == 0 {
        STATUS_REQUEST_NOT_ACCEPTED
    } else {
        // SAFETY: `f` is the client's WskAcceptEvent.
        let f: F = unsafe { std::mem::transmute::<usize, F>(f) };
        crate::kernel::irql::run_at(level, "WskAcceptEvent", || {
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
    // The callback returned: its slots leave the stack with this frame.
    let calls_at_return = crate::kernel::preempt::calls_now();
    let _ = crate::wsk::race::disarm();
    if let Some(then) = take_close_during_accept(new) {
        if calls_at_return > then {
            crate::kernel::state::violation(format!(
                "WskCloseSocket({new:#x}) from another thread while its WskAcceptEvent still ran (the callback entered the kernel {} more time(s) before returning): the provider owns an accepted socket until its accept callback returns (W49/C9); a close after the callback's last kernel call is accepted (G22's rule)",
                calls_at_return - then
            ));
        }
    }
    after_accept(ws, new, st, ctx_slot as usize, disp_slot as usize);
}

/// `accept_race_rate`: the accepted socket's events may come as soon as the callback has
/// set `*AcceptSocketDispatch` (W50: they are what its callbacks use), on another thread,
/// before WskAcceptEvent returns. The callback is held back 1-5 ms on entry (the peer's
/// first bytes or FIN arrive meanwhile); at its first kernel call after the dispatch is set,
/// the socket takes the context and dispatch, its inherited (W34) and static (G18)
/// connection events, and another thread serves it (indicating data or a FIN already
/// there) while the callback waits up to `wait_us` for that.
fn arm_accept_race(listener: usize, new: usize, ctx_slot: usize, disp_slot: usize, wait_us: u64) {
    let hold = crate::kernel::schedule::range(1_000, 5_000);
    std::thread::sleep(Duration::from_micros(hold as u64));
    crate::wsk::race::arm(
        Box::new(move || {
            // SAFETY: the out-parameters live in `run`'s frame, which disarms the race before
            // it returns; read on the callback's own thread, after its writes.
            let (ctx, disp) = unsafe {
                (
                    std::ptr::read_volatile(ctx_slot as *const usize),
                    std::ptr::read_volatile(disp_slot as *const usize),
                )
            };
            if disp == 0 {
                return None;
            }
            // (try_with: this thread may hold the provider lock further up its stack.)
            let live = socket::try_with(|p| {
                let inherit = p.sockets.get(&listener).map_or(0, |l| l.inherit);
                let s = p.sockets.get_mut(&new)?;
                s.ctx = ctx;
                s.dispatch = disp;
                s.enabled |= inherit;
                s.static_mask |= crate::wsk::clients::with_client(s.client, |r| r.static_mask)
                    .unwrap_or(0)
                    & socket::CONNECTION_EVENTS;
                Some(())
            });
            live.flatten()?;
            Some(Box::new(move || crate::wsk::wake::serve_now(new)) as Box<dyn FnOnce() + Send>)
        }),
        Duration::from_micros(wait_us),
    );
}

/// Closes of accepted sockets issued from other threads while their WskAcceptEvent ran:
/// (socket, the callback thread's kernel calls then).
static CLOSES_DURING_ACCEPT: std::sync::Mutex<Vec<(usize, u64)>> =
    std::sync::Mutex::new(Vec::new());

/// WskCloseSocket on `ws` from another thread while its accept callback still runs, whose
/// thread had made `calls` kernel calls then. Judged when the callback returns: a close after
/// its last kernel call is accepted, as a WskRelease there is (G22); one after which it
/// entered the kernel again was issued while it provably still ran.
pub(crate) fn close_during_accept(ws: usize, calls: u64) {
    CLOSES_DURING_ACCEPT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((ws, calls));
}

fn take_close_during_accept(ws: usize) -> Option<u64> {
    let mut v = CLOSES_DURING_ACCEPT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let i = v.iter().position(|e| e.0 == ws)?;
    Some(v.swap_remove(i).1)
}

fn after_accept(ws: usize, new: usize, st: NTSTATUS, ctx: usize, disp: usize) {
    if new == 0 {
        // The NULL AcceptSocket of a dead listener (W48): nothing was accepted.
        callback_done(ws, WSK_EVENT_ACCEPT);
        return;
    }
    let mut bad = None;
    socket::with(|p| {
        let inherit = p.sockets.get(&ws).map_or(0, |l| l.inherit);
        match st {
            STATUS_SUCCESS => {
                if let Some(s) = p.sockets.get_mut(&new) {
                    s.accept_thread = None;
                    let statics = crate::wsk::clients::with_client(s.client, |r| r.static_mask)
                        .unwrap_or(0)
                        & socket::CONNECTION_EVENTS;
                    if disp == 0 && (inherit | statics | s.enabled) != 0 {
                        // Real WSK would call the accepted socket's events through it.
                        bad = Some(format!(
                            "WskAcceptEvent accepted socket {new:#x} with *AcceptSocketDispatch NULL, but its events {:#x} are enabled (inherited from the listener, W34; static, G18; or enabled inside the callback): the provider would call them through that NULL table (W50/W25)",
                            inherit | statics | s.enabled
                        ));
                    }
                    s.accept_slots = None;
                    s.ctx = ctx;
                    s.dispatch = disp;
                    s.handed_out = true;
                    // W34: listener-enabled connection events apply to this socket; G18:
                    // static connection events too.
                    s.enabled |= inherit;
                    s.static_mask |= crate::wsk::clients::with_client(s.client, |r| r.static_mask)
                        .unwrap_or(0)
                        & socket::CONNECTION_EVENTS;
                    crate::wsk::wake::wake(s.owner);
                }
            }
            other => {
                if other != STATUS_REQUEST_NOT_ACCEPTED {
                    bad = Some(format!("WskAcceptEvent returned {other:#x}; only SUCCESS and STATUS_REQUEST_NOT_ACCEPTED are defined (W49/C32)"));
                }
                // W49: rejected: the provider closes the accepted socket itself.
                if let Some(mut s) = socket::remove(p, new) {
                    if let Some(fd) = s.fd.take() {
                        let _ = fd.set_linger(Some(Duration::ZERO));
                    }
                }
            }
        }
    });
    if let Some(b) = bad {
        crate::kernel::state::violation(b);
    }
    callback_done(ws, WSK_EVENT_ACCEPT);
}

/// The job as the provider threads carry it.
fn defer(job: Job) -> Deferred {
    Deferred::new(move |level, at| run(job, level, at))
}
