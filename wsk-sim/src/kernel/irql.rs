//! Per-thread IRQL, as Driver Verifier tracks it, and the IRQL checks of each call.

use std::cell::Cell;

use wsk_sys::{APC_LEVEL, DISPATCH_LEVEL, KIRQL, PASSIVE_LEVEL};

thread_local! {
    static IRQL: Cell<KIRQL> = const { Cell::new(PASSIVE_LEVEL) };
    static CPU: Cell<u32> = const { Cell::new(u32::MAX) };
}

pub(crate) fn current() -> KIRQL {
    IRQL.with(Cell::get)
}

pub(crate) fn set(level: KIRQL) {
    IRQL.with(|c| c.set(level));
}

/// The virtual processor this thread runs on (threads are spread over the configured count).
pub(crate) fn cpu() -> u32 {
    CPU.with(|c| {
        if c.get() == u32::MAX {
            use std::sync::atomic::{AtomicU32, Ordering};
            static NEXT: AtomicU32 = AtomicU32::new(0);
            c.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        c.get() % crate::kernel::state::config().processor_count.max(1)
    })
}

/// Driver Verifier's IRQL check: `call` may run at most at `max`.
#[track_caller]
pub(crate) fn require_at_most(call: &str, max: KIRQL) -> bool {
    let now = current();
    if now > max {
        crate::kernel::state::violation(format!(
            "{call} called at IRQL {now}, allowed only at IRQL <= {max} ({})",
            name(max)
        ));
        return false;
    }
    true
}

#[track_caller]
pub(crate) fn require_passive(call: &str) -> bool {
    require_at_most(call, PASSIVE_LEVEL)
}

#[track_caller]
pub(crate) fn require_below_dispatch(call: &str) -> bool {
    require_at_most(call, APC_LEVEL)
}

#[track_caller]
pub(crate) fn require_dispatch_or_below(call: &str) -> bool {
    require_at_most(call, DISPATCH_LEVEL)
}

pub(crate) fn name(level: KIRQL) -> &'static str {
    match level {
        0 => "PASSIVE_LEVEL",
        1 => "APC_LEVEL",
        2 => "DISPATCH_LEVEL",
        _ => "DIRQL",
    }
}

/// Driver code the sim calls asynchronously (callbacks, completion routines, DPCs, work
/// items) that is executing right now: must be zero once DriverUnload has returned (C30).
static CLIENT_CODE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

const ASYNC_CLIENT_CODE: &[&str] = &[
    "completion routine",
    "DPC routine",
    "WskReceiveEvent",
    "WskReceiveFromEvent",
    "WskDisconnectEvent",
    "WskSendBacklogEvent",
    "WskAcceptEvent",
];

/// A work item counts from IoQueueWorkItem (Windows keeps the device referenced) to the end
/// of its routine.
pub(crate) fn client_code_enter() {
    CLIENT_CODE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

pub(crate) fn client_code_leave() {
    CLIENT_CODE.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
}

pub(crate) fn client_code_running() -> usize {
    CLIENT_CODE.load(std::sync::atomic::Ordering::SeqCst)
}

/// Runs `f` at `level` (raised from the current IRQL) and checks that client code gave the
/// IRQL back as it found it.
pub(crate) fn run_at<R>(level: KIRQL, what: &str, f: impl FnOnce() -> R) -> R {
    let old = current();
    let level = level.max(old);
    set(level);
    let counted = ASYNC_CLIENT_CODE.contains(&what);
    if counted {
        CLIENT_CODE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    let r = f();
    if counted {
        CLIENT_CODE.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
    let after = current();
    if after != level {
        crate::kernel::state::violation(format!(
            "{what} returned at IRQL {after} but was entered at IRQL {level}"
        ));
    }
    set(old);
    r
}

/// The IRQL the schedule picks for a callback or asynchronous completion.
pub(crate) fn pick_level() -> KIRQL {
    if crate::kernel::schedule::chance(crate::kernel::state::config().dispatch_rate) {
        DISPATCH_LEVEL
    } else {
        PASSIVE_LEVEL
    }
}

/// `KeGetCurrentIrql` (an intrinsic on Windows; an export of the sim elsewhere).
#[no_mangle]
pub unsafe extern "win64" fn KeGetCurrentIrql() -> KIRQL {
    current()
}

/// `KfRaiseIrql` (what KeRaiseIrql expands to). Raising to a lower level is a bugcheck.
#[no_mangle]
pub unsafe extern "win64" fn KfRaiseIrql(NewIrql: KIRQL) -> KIRQL {
    let old = current();
    if NewIrql < old {
        crate::kernel::state::violation(format!(
            "KeRaiseIrql to {NewIrql} from higher IRQL {old} (IRQL_NOT_GREATER_OR_EQUAL)"
        ));
        return old;
    }
    set(NewIrql);
    old
}

/// `KeLowerIrql`. Lowering to a higher level is a bugcheck.
#[no_mangle]
pub unsafe extern "win64" fn KeLowerIrql(NewIrql: KIRQL) {
    let old = current();
    if NewIrql > old {
        crate::kernel::state::violation(format!(
            "KeLowerIrql to {NewIrql} from lower IRQL {old} (IRQL_NOT_LESS_OR_EQUAL)"
        ));
        return;
    }
    set(NewIrql);
}
