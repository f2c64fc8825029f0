//! Datagram sockets' events: sends and posted receives moving, and WskReceiveFromEvent
//! (W59-W63).

use std::io::ErrorKind;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use wsk_sys::{
    NTSTATUS, PVOID, STATUS_DATA_NOT_ACCEPTED, STATUS_PENDING, STATUS_SUCCESS,
    WSK_CLIENT_DATAGRAM_DISPATCH, WSK_EVENT_RECEIVE_FROM,
};

use super::callback::{callback_done, settle, start_callback, Completion, Job as Deferred, Plan};
use crate::kernel::irql::run_at;
use crate::kernel::mdl::pin_chain;
use crate::kernel::state::violation;

use crate::wsk::indication::{self, Block};
use crate::wsk::socket::{self, Progress, Provider, Sock};

/// Datagrams read ahead from a host socket before the client takes them.
const DGRAM_CAP: usize = 256;

/// A datagram callback to invoke.
enum Job {
    ReceiveFrom {
        ws: usize,
        ctx: usize,
        f: usize,
        block: Box<Block>,
        dgrams: Vec<(Vec<u8>, SocketAddr)>,
        is_static: bool,
        /// Flags a test hook adds to the callback's (`faults::disguise_datagrams`, stored in `wsk::disguise`).
        extra_flags: u32,
    },
    /// The NULL list of a dead socket (W60).
    NullReceiveFrom { ws: usize, ctx: usize, f: usize },
}

/// Poll events a datagram socket wants, and whether it has work needing no readiness.
pub(crate) fn interest(s: &Sock) -> (i16, bool) {
    let mut ev: i16 = 0;
    if s.bound.is_some() && s.dgrams.len() < DGRAM_CAP {
        ev |= libc::POLLIN;
    }
    if !s.sendtos.is_empty() && !crate::kernel::schedule::datagram_sends_held() {
        ev |= libc::POLLOUT;
    }
    let due = s.dgram_retry_at.is_none_or(|t| Instant::now() >= t);
    let work = !s.dgrams.is_empty()
        && (!s.recvfroms.is_empty() || (s.events() & WSK_EVENT_RECEIVE_FROM != 0 && due));
    (ev, work)
}

/// The client's WskReceiveFromEvent, or 0.
fn receive_from_event(s: &Sock) -> usize {
    // SAFETY: the client's datagram dispatch (the caller checked it non-NULL).
    unsafe { (*(s.dispatch as *const WSK_CLIENT_DATAGRAM_DISPATCH)).WskReceiveFromEvent }
        .map_or(0, |f| f as usize)
}

/// W60: a dead datagram socket's WskReceiveFromEvent with a NULL list.
pub(crate) fn plan_killed(s: &mut Sock, ws: usize) -> Plan {
    let f = receive_from_event(s);
    start_callback(s, WSK_EVENT_RECEIVE_FROM);
    Plan::Run(
        defer(Job::NullReceiveFrom { ws, ctx: s.ctx, f }),
        Vec::new(),
    )
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

pub(crate) fn plan(p: &mut Provider, ws: usize, mut done: Vec<Completion>) -> Plan {
    let s = p.sockets.get_mut(&ws).expect("live");
    let held = crate::kernel::schedule::datagram_sends_held();
    while let Some(mut req) = (!held).then(|| s.sendtos.pop_front()).flatten() {
        match crate::wsk::datagram::send_some(s, &mut req) {
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
        let (st, n) = crate::wsk::datagram::fill_recvfrom(&req, &data, from);
        // SAFETY: pinned when queued.
        unsafe { pin_chain(req.buf.Mdl, -1) };
        done.push((req.irp, st, n));
    }
    let due = s.dgram_retry_at.is_none_or(|t| Instant::now() >= t);
    if s.events() & WSK_EVENT_RECEIVE_FROM != 0 && !s.dgrams.is_empty() && due && s.dispatch != 0 {
        s.dgram_retry_at = None;
        let max = crate::kernel::state::config()
            .max_datagrams_per_indication
            .max(1);
        let mut n = crate::kernel::schedule::range(1, max).min(s.dgrams.len());
        // A disguised datagram (test hook) travels alone: its flags describe the whole list.
        let hooked = |d: &(Vec<u8>, SocketAddr)| crate::wsk::disguise::of(d.1.port());
        if let Some(i) = s.dgrams.iter().take(n).position(|d| hooked(d).is_some()) {
            n = i.max(1);
        }
        let mut dgrams: Vec<(Vec<u8>, SocketAddr)> = s.dgrams.drain(..n).collect();
        let mut extra_flags = 0;
        if let [one] = dgrams.as_mut_slice() {
            if let Some(d) = crate::wsk::disguise::of(one.1.port()) {
                one.1 = d.present_as.unwrap_or(one.1);
                extra_flags = d.flags;
            }
        }
        let block = indication::datagrams(ws, &dgrams);
        let f = receive_from_event(s);
        let is_static = s.static_mask & WSK_EVENT_RECEIVE_FROM != 0;
        start_callback(s, WSK_EVENT_RECEIVE_FROM);
        return Plan::Run(
            defer(Job::ReceiveFrom {
                ws,
                ctx: s.ctx,
                f,
                block,
                dgrams,
                is_static,
                extra_flags,
            }),
            done,
        );
    }
    Plan::completing(done)
}

fn run(job: Job, level: u8, at: u32) {
    match job {
        Job::ReceiveFrom {
            ws,
            ctx,
            f,
            mut block,
            dgrams,
            is_static,
            extra_flags,
        } => {
            type F = unsafe extern "win64" fn(
                PVOID,
                u32,
                *mut wsk_sys::WSK_DATAGRAM_INDICATION,
            ) -> NTSTATUS;
            let head = block.head_dgram();
            indication::callback_starts(&block);
            // SAFETY: `f` is the client's WskReceiveFromEvent.
            let f: F = unsafe { std::mem::transmute::<usize, F>(f) };
            let st = run_at(level, "WskReceiveFromEvent", || {
                // SAFETY: calling the client's callback with provider-owned arguments.
                unsafe { f(ctx as PVOID, at | extra_flags, head) }
            });
            let calls = crate::kernel::preempt::calls_now();
            after_receive_from(ws, block, dgrams, st, is_static, calls);
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
                run_at(level, "WskReceiveFromEvent", || unsafe {
                    f(ctx as PVOID, at, std::ptr::null_mut())
                });
            }
            callback_done(ws, WSK_EVENT_RECEIVE_FROM);
        }
    }
}

fn after_receive_from(
    ws: usize,
    block: Box<Block>,
    dgrams: Vec<(Vec<u8>, SocketAddr)>,
    st: NTSTATUS,
    is_static: bool,
    calls_at_return: u64,
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
    settle(ws, block, st == STATUS_PENDING, calls_at_return);
    if let Some(b) = bad {
        violation(format!("WskReceiveFromEvent returned {b:#x}; only SUCCESS, PENDING and DATA_NOT_ACCEPTED are defined (C32/G12)"));
    }
    callback_done(ws, WSK_EVENT_RECEIVE_FROM);
}

/// The job as the provider threads carry it.
fn defer(job: Job) -> Deferred {
    Deferred::new(move |level, at| run(job, level, at))
}
