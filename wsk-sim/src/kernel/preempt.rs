//! Preemption points: the kernel calls a client makes, where a PASSIVE_LEVEL thread can be
//! descheduled (`Config::preempt_rate`, the `preempt` order), and a per-thread count of
//! them, so the provider can tell that a callback was still running (it entered the kernel
//! again) after something happened on another thread.
//!
//! A thread at PASSIVE_LEVEL can lose its processor between any two instructions; the sim
//! models it where it can, at the kernel calls of the code under test: on the way in (before
//! the call takes effect) and, for calls that lower the IRQL to PASSIVE_LEVEL or end a
//! protected region (KeReleaseSpinLock, ExReleaseRundownProtection), on the way out as well.
//! The stall is a real sleep of `preempt_us` (half to all of it): long enough for a 5 ms
//! housekeeping tick, even a 15.6 ms one (`clock`), to come round more than once. A thread
//! is not descheduled again within two `preempt_us` of its last stall (a fresh quantum).

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use wsk_sys::PASSIVE_LEVEL;

/// `preempt_rate` as f64 bits (0: off) and `preempt_us`, copied from the run's
/// configuration at start (read on every kernel call: no lock).
static RATE_BITS: AtomicU64 = AtomicU64::new(0);
static STALL_US: AtomicU64 = AtomicU64::new(0);

/// The provider's hook, called on every counted kernel call (after any stall) with the
/// call's name: it may carry out an event it armed for this thread (an unkind race).
static HOOK: OnceLock<fn(&str)> = OnceLock::new();

thread_local! {
    /// Kernel calls this thread has entered (shared so the provider can read another
    /// thread's count).
    static CALLS: Arc<AtomicU64> = Arc::new(AtomicU64::new(0));
}

/// Takes the run's preemption settings (at `init`).
pub(crate) fn configure(rate: f64, stall_us: u64) {
    let rate = if stall_us == 0 { 0.0 } else { rate };
    RATE_BITS.store(rate.to_bits(), Ordering::SeqCst);
    STALL_US.store(stall_us, Ordering::SeqCst);
}

/// Installs the provider's per-call hook (once per process).
pub(crate) fn set_hook(hook: fn(&str)) {
    let _ = HOOK.set(hook);
}

/// This thread's kernel-call counter.
pub(crate) fn thread_calls() -> Arc<AtomicU64> {
    CALLS.with(Arc::clone)
}

/// Kernel calls this thread has entered so far.
pub(crate) fn calls_now() -> u64 {
    CALLS.with(|c| c.load(Ordering::SeqCst))
}

thread_local! {
    /// When this thread's last preemption ended: it then has a fresh quantum.
    static LAST_STALL: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// A PASSIVE_LEVEL thread may be descheduled here (`preempt_rate`), unless it was
/// descheduled less than two `preempt_us` ago (a thread just scheduled again has a fresh
/// quantum: a loop of many kernel calls is not descheduled at each).
fn maybe_stall() {
    let rate = f64::from_bits(RATE_BITS.load(Ordering::Relaxed));
    if rate <= 0.0 || crate::kernel::irql::current() != PASSIVE_LEVEL {
        return;
    }
    let max = STALL_US.load(Ordering::Relaxed);
    let fresh = LAST_STALL.with(|l| {
        l.get()
            .is_some_and(|t| t.elapsed() < Duration::from_micros(2 * max))
    });
    if !fresh && crate::kernel::schedule::chance(rate) {
        let us = crate::kernel::schedule::range(max as usize / 2, max as usize);
        std::thread::sleep(Duration::from_micros(us as u64));
        LAST_STALL.with(|l| l.set(Some(Instant::now())));
    }
}

/// On the way into kernel call `call`, made by the code under test: maybe descheduled
/// (before the call takes effect), then counted, then the provider's hook.
pub(crate) fn entry(call: &str) {
    maybe_stall();
    CALLS.with(|c| c.fetch_add(1, Ordering::SeqCst));
    if let Some(h) = HOOK.get() {
        h(call);
    }
}

/// On the way out of a call that may have lowered the IRQL to PASSIVE_LEVEL: maybe
/// descheduled after it took effect.
pub(crate) fn exit() {
    maybe_stall();
}
