//! How the provider finishes IRPs: inline, or pended and completed later on another thread
//! (possibly before STATUS_PENDING is even returned), reordered, at a scheduled IRQL.

use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use wsk_sys::{NTSTATUS, PIRP, STATUS_PENDING};

struct Deferred {
    due: Instant,
    irp: usize,
    status: NTSTATUS,
    info: usize,
}

static QUEUE: Mutex<Vec<Deferred>> = Mutex::new(Vec::new());
static WAKE: Condvar = Condvar::new();

/// Most completer threads a run can ask for (`Config::completer_threads`).
const MAX_COMPLETERS: usize = 4;

fn ensure_thread() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        for i in 0..MAX_COMPLETERS {
            std::thread::Builder::new()
                .name(format!("wsk-sim-completer-{i}"))
                .spawn(move || crate::kernel::state::sim_thread_main(move || completer(i)))
                .expect("spawn completer");
        }
    });
}

/// Completer thread `me`: delivers due completions, any due one first, while `me` is below the
/// run's completer count. With several, two completions (of one socket too) run at once, as
/// on a multiprocessor, and one routine that stalls holds up none of the others.
fn completer(me: usize) {
    crate::kernel::state::mark_sim_thread();
    let mut q = QUEUE.lock().unwrap_or_else(PoisonError::into_inner);
    loop {
        let now = Instant::now();
        // The run's count (`Config::completer_threads`), read each round: runs differ.
        let active = me
            < crate::kernel::state::config()
                .completer_threads
                .clamp(1, MAX_COMPLETERS);
        let due: Vec<usize> = if active {
            (0..q.len()).filter(|&i| q[i].due <= now).collect()
        } else {
            Vec::new()
        };
        if !due.is_empty() {
            // Completions are reordered: any due one may go first.
            let pick = due[crate::kernel::schedule::range(0, due.len() - 1)];
            let d = q.swap_remove(pick);
            drop(q);
            // Another due one may be waiting: a sleeping completer takes it meanwhile.
            WAKE.notify_one();
            complete_now(d.irp as PIRP, d.status, d.info);
            q = QUEUE.lock().unwrap_or_else(PoisonError::into_inner);
            continue;
        }
        let wait = if active {
            q.iter()
                .map(|d| d.due.saturating_duration_since(now))
                .min()
                .unwrap_or(Duration::from_millis(100))
        } else {
            Duration::from_millis(100)
        };
        q = WAKE
            .wait_timeout(q, wait)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

/// Drops a queued completion of an IRP whose memory the client freed.
pub(crate) fn forget(irp: usize) {
    QUEUE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|d| d.irp != irp);
}

/// Completions not yet delivered.
pub(crate) fn queued() -> usize {
    QUEUE.lock().unwrap_or_else(PoisonError::into_inner).len()
}

/// Completes now on this thread at a scheduled IRQL (asynchronous completion).
pub(crate) fn complete_now(irp: PIRP, status: NTSTATUS, info: usize) {
    let level = crate::kernel::irql::pick_level();
    crate::kernel::irql::run_at(level, "IRP completion", || {
        // SAFETY: the provider owns `irp` until this completion.
        unsafe { crate::kernel::irp::complete(irp, status, info) };
    });
}

/// Hands a completion to the completer thread after a random delay.
pub(crate) fn defer(irp: PIRP, status: NTSTATUS, info: usize) {
    ensure_thread();
    let max = crate::kernel::state::config().max_completion_delay_us;
    let delay = Duration::from_micros(crate::kernel::schedule::range(0, max as usize) as u64);
    QUEUE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Deferred {
            due: Instant::now() + delay,
            irp: irp as usize,
            status,
            info,
        });
    WAKE.notify_all();
}

/// An asynchronous completion from a provider thread: on this thread or the completer's.
pub(crate) fn complete_async(irp: PIRP, status: NTSTATUS, info: usize) {
    if crate::kernel::schedule::chance(0.3) {
        defer(irp, status, info);
    } else {
        complete_now(irp, status, info);
    }
}

/// Finishes a call whose result is known now. Returns what the provider function returns:
/// either `status` after an inline completion, or STATUS_PENDING (the schedule decides).
///
/// # Safety
/// The provider owns `irp` (taken with `irp::take`).
pub(crate) unsafe fn finish(irp: PIRP, status: NTSTATUS, info: usize) -> NTSTATUS {
    let cfg = crate::kernel::state::config();
    if crate::kernel::schedule::chance(cfg.pend_rate) {
        // SAFETY: per the function contract.
        unsafe { crate::kernel::irp::mark_pending(irp) };
        if crate::kernel::schedule::chance(cfg.complete_before_return_rate) {
            // W12: completed on this thread before STATUS_PENDING is returned.
            // SAFETY: per the function contract.
            unsafe { crate::kernel::irp::complete(irp, status, info) };
            STATUS_PENDING
        } else {
            defer(irp, status, info);
            late_return()
        }
    } else {
        // SAFETY: per the function contract.
        unsafe { crate::kernel::irp::complete(irp, status, info) };
        status
    }
}

/// Finishes a failed call inline: the IRP is completed with the failure (W11), or pended.
///
/// # Safety
/// As [`finish`].
pub(crate) unsafe fn fail(irp: PIRP, status: NTSTATUS) -> NTSTATUS {
    // SAFETY: per the function contract.
    unsafe { finish(irp, status, 0) }
}

/// Returns STATUS_PENDING for an IRP already marked pending and handed to another thread,
/// which may complete it at any moment: the caller touches it no more. With
/// `Config::late_return_rate` the calling thread is held back first, as a preempted thread
/// would be, so the completion routine can run before the call returns (W12).
pub(crate) fn late_return() -> NTSTATUS {
    let cfg = crate::kernel::state::config();
    if cfg.late_return_us > 0 && crate::kernel::schedule::chance(cfg.late_return_rate) {
        let max = cfg.late_return_us as usize;
        let us = crate::kernel::schedule::range(max / 2, max);
        std::thread::sleep(std::time::Duration::from_micros(us as u64));
    }
    STATUS_PENDING
}
