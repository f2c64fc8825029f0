//! Per-thread IRQL, as Driver Verifier tracks it, and the IRQL checks of each call.

use std::cell::Cell;

use wsk_sys::{APC_LEVEL, DISPATCH_LEVEL, KIRQL, PASSIVE_LEVEL};

thread_local! {
    static IRQL: Cell<KIRQL> = const { Cell::new(PASSIVE_LEVEL) };
    static SIM_THREAD: Cell<bool> = const { Cell::new(false) };
    static CPU: Cell<u32> = const { Cell::new(u32::MAX) };
}

pub(crate) fn current() -> KIRQL {
    IRQL.with(Cell::get)
}

pub(crate) fn set(level: KIRQL) {
    IRQL.with(|c| c.set(level));
}

pub(crate) fn mark_sim_thread() {
    SIM_THREAD.with(|c| c.set(true));
}

pub(crate) fn is_sim_thread() -> bool {
    SIM_THREAD.with(Cell::get)
}

/// The virtual processor this thread runs on (threads are spread over the configured count).
pub(crate) fn cpu() -> u32 {
    CPU.with(|c| {
        if c.get() == u32::MAX {
            use std::sync::atomic::{AtomicU32, Ordering};
            static NEXT: AtomicU32 = AtomicU32::new(0);
            c.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        c.get() % crate::state::config().processor_count.max(1)
    })
}

/// Driver Verifier's IRQL check: `call` may run at most at `max`.
#[track_caller]
pub(crate) fn require_at_most(call: &str, max: KIRQL) -> bool {
    let now = current();
    if now > max {
        crate::state::violation(format!(
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

/// Runs `f` at `level` (raised from the current IRQL) and checks that client code gave the
/// IRQL back as it found it.
pub(crate) fn run_at<R>(level: KIRQL, what: &str, f: impl FnOnce() -> R) -> R {
    let old = current();
    let level = level.max(old);
    set(level);
    let r = f();
    let after = current();
    if after != level {
        crate::state::violation(format!(
            "{what} returned at IRQL {after} but was entered at IRQL {level}"
        ));
    }
    set(old);
    r
}

/// The IRQL the schedule picks for a callback or asynchronous completion.
pub(crate) fn pick_level() -> KIRQL {
    if crate::faults::chance(crate::state::config().dispatch_rate) {
        DISPATCH_LEVEL
    } else {
        PASSIVE_LEVEL
    }
}

/// `KeGetCurrentIrql` (an intrinsic on Windows; an export of the sim elsewhere).
#[no_mangle]
pub unsafe extern "system" fn KeGetCurrentIrql() -> KIRQL {
    current()
}

/// `KfRaiseIrql` (what KeRaiseIrql expands to). Raising to a lower level is a bugcheck.
#[no_mangle]
pub unsafe extern "system" fn KfRaiseIrql(NewIrql: KIRQL) -> KIRQL {
    let old = current();
    if NewIrql < old {
        crate::state::violation(format!(
            "KeRaiseIrql to {NewIrql} from higher IRQL {old} (IRQL_NOT_GREATER_OR_EQUAL)"
        ));
        return old;
    }
    set(NewIrql);
    old
}

/// `KeLowerIrql`. Lowering to a higher level is a bugcheck.
#[no_mangle]
pub unsafe extern "system" fn KeLowerIrql(NewIrql: KIRQL) {
    let old = current();
    if NewIrql > old {
        crate::state::violation(format!(
            "KeLowerIrql to {NewIrql} from lower IRQL {old} (IRQL_NOT_LESS_OR_EQUAL)"
        ));
        return;
    }
    set(NewIrql);
}
