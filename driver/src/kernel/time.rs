//! Time: the performance counter and PASSIVE_LEVEL sleeps.

use wsk_sys::{
    KeDelayExecutionThread, KeQueryPerformanceCounter, KernelMode, FALSE, LARGE_INTEGER,
};

/// Performance counter ticks. Any IRQL.
pub(crate) fn now() -> u64 {
    // SAFETY: KeQueryPerformanceCounter may be called at any IRQL.
    unsafe { KeQueryPerformanceCounter(core::ptr::null_mut()).QuadPart as u64 }
}

/// Performance counter frequency (ticks per second). Any IRQL.
pub(crate) fn frequency() -> u64 {
    let mut freq = LARGE_INTEGER { QuadPart: 0 };
    // SAFETY: any IRQL; freq lives across the call and is an i64 in every variant.
    unsafe {
        KeQueryPerformanceCounter(&raw mut freq);
        freq.QuadPart as u64
    }
}

/// Polls `done` about every 10 ms until it holds or `ms` milliseconds have passed on the
/// performance counter. Elapsed time is read from the clock, never added up from sleeps: a
/// sleep lasts at least a clock interval (15.6 ms by default), so counting 10 ms per sleep
/// would stretch every limit. PASSIVE_LEVEL only.
pub(crate) fn wait_until(ms: u64, mut done: impl FnMut() -> bool) -> bool {
    let start = now();
    let limit = ms.saturating_mul(frequency()) / 1000;
    loop {
        if done() {
            return true;
        }
        if now().saturating_sub(start) >= limit {
            return false;
        }
        sleep_ms(10);
    }
}

/// Sleeps at least `ms` milliseconds. PASSIVE_LEVEL only.
pub(crate) fn sleep_ms(ms: u64) {
    // Relative time in 100 ns units is negative.
    let mut t = LARGE_INTEGER {
        QuadPart: -((ms as i64) * 10_000),
    };
    // SAFETY: PASSIVE_LEVEL kernel-mode delay.
    unsafe { KeDelayExecutionThread(KernelMode, FALSE, &raw mut t) };
}
