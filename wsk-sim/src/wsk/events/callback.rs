//! What the provider threads plan for a socket under the provider lock (completions to
//! deliver, one callback to invoke) and the bookkeeping every callback shares.

use wsk_sys::{KIRQL, NTSTATUS, PIRP, STATUS_SUCCESS, WSK_FLAG_AT_DISPATCH_LEVEL};

use crate::wsk::socket::{self, Sock};

/// An IRP to complete: (IRP, status, information).
pub(crate) type Completion = (usize, NTSTATUS, usize);

/// A callback invocation, carried out with the provider lock released; each socket kind
/// builds its own.
pub(crate) struct Job(Box<dyn FnOnce(KIRQL, u32)>);

impl Job {
    /// `f(level, flags)` runs at `level` and passes `flags` (WSK_FLAG_AT_DISPATCH_LEVEL
    /// when `level` is DISPATCH) to the callback.
    pub(crate) fn new(f: impl FnOnce(KIRQL, u32) + 'static) -> Job {
        Job(Box::new(f))
    }

    /// Invokes the callback at a scheduled IRQL, then its kind's bookkeeping.
    pub(crate) fn run(self) {
        // Never below the calling thread's IRQL (a callback run inside a call made at
        // DISPATCH_LEVEL runs at DISPATCH_LEVEL and says so).
        let level = crate::kernel::irql::pick_level().max(crate::kernel::irql::current());
        let at = if level >= wsk_sys::DISPATCH_LEVEL {
            WSK_FLAG_AT_DISPATCH_LEVEL
        } else {
            0
        };
        let cfg = crate::kernel::state::config();
        if level == wsk_sys::PASSIVE_LEVEL
            && cfg.callback_stall_us > 0
            && crate::kernel::schedule::chance(cfg.callback_stall_rate)
        {
            // Descheduled at PASSIVE (preemption, a VM exit) on the way into the callback:
            // the socket is in its callback all that time.
            let max = cfg.callback_stall_us as usize;
            let us = crate::kernel::schedule::range(max / 2, max);
            std::thread::sleep(std::time::Duration::from_micros(us as u64));
        }
        (self.0)(level, at);
    }
}

/// What one planning step under the provider lock decided.
pub(crate) enum Plan {
    Nothing,
    Complete(Vec<Completion>),
    Run(Job, Vec<Completion>),
}

impl Plan {
    /// `Complete(done)`, or `Nothing` when there is nothing to complete.
    pub(crate) fn completing(done: Vec<Completion>) -> Plan {
        if done.is_empty() {
            Plan::Nothing
        } else {
            Plan::Complete(done)
        }
    }
}

/// Marks `event`'s callback running on this thread (one callback at a time per socket).
/// (A receive and a disconnect event may overlap under `disconnect_race_rate`: `running`
/// then has both bits.)
pub(crate) fn start_callback(s: &mut Sock, event: u32) {
    s.running |= event;
    s.running_thread = Some(std::thread::current().id());
}

/// A callback returned: complete disables that waited for it (W33) and a close that
/// waited for it (W70).
pub(crate) fn callback_done(ws: usize, event: u32) {
    let (waiters, close) = socket::with(|p| {
        let Some(s) = p.sockets.get_mut(&ws) else {
            return (Vec::new(), None);
        };
        s.running &= !event;
        // (If the other of two overlapping callbacks still runs, it runs on another thread.)
        s.running_thread = None;
        // W44: indications come in arbitrary thread context: now and then the socket moves
        // to another provider thread (still one callback at a time: `running` is checked
        // under the provider lock by whichever thread plans next).
        if crate::kernel::schedule::chance(0.25) {
            s.owner = crate::kernel::schedule::random() as usize;
        }
        // The owner left this socket out of its poll set while the callback ran (it may have
        // run on another thread): wake it, or data that came meanwhile waits for its poll
        // timeout (20 ms: seen as the p99.9 of ping-pong through wskecho-sim).
        crate::wsk::wake::wake(s.owner);
        let (w, keep): (Vec<_>, Vec<_>) =
            s.disable_waiters.drain(..).partition(|(e, _)| *e == event);
        s.disable_waiters = keep;
        // The close completes once no callback of the socket runs (W70).
        let close = if s.running == 0 { s.closing } else { None };
        if close.is_some() {
            socket::remove(p, ws);
        }
        (w.into_iter().map(|(_, irp)| irp).collect::<Vec<_>>(), close)
    });
    for irp in waiters {
        crate::wsk::complete::complete_async(irp as PIRP, STATUS_SUCCESS, 0);
    }
    if let Some(irp) = close.filter(|&i| i != 0) {
        crate::wsk::complete::complete_async(irp as PIRP, STATUS_SUCCESS, 0);
    }
}

/// Records a receive callback's return for its list (retained on STATUS_PENDING) and
/// applies WskRelease calls that came in from other threads before the return was seen.
/// `calls_at_return`: the callback thread's kernel calls (`preempt::calls_now`) taken as
/// the callback returned.
pub(crate) fn settle(
    ws: usize,
    block: Box<crate::wsk::indication::Block>,
    retained: bool,
    calls_at_return: u64,
) {
    let r = crate::wsk::indication::callback_returned(block, retained, calls_at_return);
    for (head, calls) in &r.still_running {
        crate::kernel::state::violation(format!(
            "WskRelease({head:#x}) from another thread while its {} callback was still running (the callback entered the kernel {calls} more time(s) before returning): the list is retained only once the callback has returned STATUS_PENDING (W55/W68; a release after the callback's last kernel call is accepted, G22); count the callback's own reference, do not infer its return from time",
            if r.stream { "WskReceiveEvent" } else { "WskReceiveFromEvent" }
        ));
    }
    if r.released > 0 {
        let owner = socket::with(|p| {
            p.sockets.get_mut(&ws).map(|s| {
                s.retained_bytes = s.retained_bytes.saturating_sub(r.released);
                s.owner
            })
        });
        if let Some(o) = owner {
            crate::wsk::wake::wake(o);
        }
    }
    for head in r.not_retained {
        crate::kernel::state::violation(format!(
            "WskRelease({head:#x}) during its receive callback, which then did not return STATUS_PENDING: the list was never retained (W55/W68)"
        ));
    }
}
