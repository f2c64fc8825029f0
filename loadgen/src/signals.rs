//! SIGINT/SIGTERM as a stop request: `echoload run` ends its measurement early and still
//! reports, `echoload serve` stops and prints its counters. A second signal ends the process
//! at once, but only after a grace period: GNU `timeout` (and a shell's Ctrl-C to a process
//! group) delivers two signals microseconds apart, and the report of the first must survive.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// Monotonic time of the first stop signal (ns), for the grace period.
static FIRST_NS: AtomicU64 = AtomicU64::new(0);

/// How long after the first signal a second one is ignored rather than killing at once.
pub const GRACE_NS: u64 = 1_000_000_000;

/// Whether a further signal at `now_ns`, the first having come at `first_ns`, ends the process.
pub fn kills_now(first_ns: u64, now_ns: u64) -> bool {
    now_ns.saturating_sub(first_ns) >= GRACE_NS
}

/// The flag the handlers set (give it to `RunConfig::stop`).
pub fn flag() -> &'static AtomicBool {
    &STOP
}

/// Whether a stop was requested.
pub fn requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// The number of the signal that asked to stop, if one did.
pub fn received() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// The shell's exit status for a run ended by signal `sig` (128 + the number: 130 for SIGINT,
/// 143 for SIGTERM).
pub fn exit_status(sig: i32) -> u8 {
    u8::try_from(128 + sig).unwrap_or(1)
}

/// The signal's name, for messages.
pub fn name(sig: i32) -> &'static str {
    match sig {
        2 => "SIGINT",
        15 => "SIGTERM",
        _ => "a signal",
    }
}

/// CLOCK_MONOTONIC in ns (the clock `Instant` reads on Linux). Async-signal-safe: the
/// handler below stamps with it; the client's clock reads it too (one call, no `Instant`).
#[cfg(unix)]
#[inline]
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; it is async-signal-safe.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts);
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

#[cfg(unix)]
pub fn install() {
    extern "C" fn on_signal(sig: libc::c_int) {
        // Atomics, clock_gettime(), signal() and raise() only: all async-signal-safe.
        let now = monotonic_ns().max(1);
        if STOP.load(Ordering::SeqCst) {
            if kills_now(FIRST_NS.load(Ordering::SeqCst), now) {
                // SAFETY: resetting the disposition and raising the signal again are
                // async-signal-safe; the signal is blocked until this handler returns, then
                // the default action ends the process as the sender meant.
                unsafe {
                    libc::signal(sig, libc::SIG_DFL);
                    libc::raise(sig);
                }
            }
            return;
        }
        FIRST_NS.store(now, Ordering::SeqCst);
        SIGNAL.store(sig, Ordering::SeqCst);
        STOP.store(true, Ordering::SeqCst);
    }
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only performs async-signal-safe calls (atomics, clock_gettime,
    // signal, raise); signal() with a valid function pointer has no other preconditions.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Windows: Ctrl-C (and Ctrl-Break / closing the console) asks to stop, reported as SIGINT
/// (exit 130); a second Ctrl-C more than the grace period after the first ends the process.
#[cfg(not(unix))]
pub fn install() {
    const SIGINT: i32 = 2;
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(std::time::Instant::now);
    let _ = ctrlc::set_handler(move || {
        let now = (start.elapsed().as_nanos() as u64).max(1);
        if STOP.load(Ordering::SeqCst) {
            if kills_now(FIRST_NS.load(Ordering::SeqCst), now) {
                std::process::exit(i32::from(exit_status(SIGINT)));
            }
            return;
        }
        FIRST_NS.store(now, Ordering::SeqCst);
        // The signal first: whoever sees the stop also sees why.
        SIGNAL.store(SIGINT, Ordering::SeqCst);
        STOP.store(true, Ordering::SeqCst);
    });
}
