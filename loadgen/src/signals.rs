//! SIGINT/SIGTERM as a stop request: `echoload run` ends its measurement early and still
//! reports, `echoload serve` stops and prints its counters. A second signal of the same kind
//! ends the process at once (the handler resets itself).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);
static SIGNAL: AtomicI32 = AtomicI32::new(0);

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

#[cfg(unix)]
pub fn install() {
    extern "C" fn on_signal(sig: libc::c_int) {
        // Atomic stores and signal() only: async-signal-safe.
        SIGNAL.store(sig, Ordering::SeqCst);
        STOP.store(true, Ordering::SeqCst);
        // SAFETY: resetting the disposition to the default is async-signal-safe.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only performs atomic stores and signal(), which are
    // async-signal-safe; signal() with a valid function pointer has no other preconditions.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Windows: Ctrl-C (and Ctrl-Break / closing the console) asks to stop, reported as SIGINT
/// (exit 130); a second Ctrl-C after the stop was requested ends the process at once.
#[cfg(not(unix))]
pub fn install() {
    const SIGINT: i32 = 2;
    let _ = ctrlc::set_handler(|| {
        if STOP.load(Ordering::SeqCst) {
            std::process::exit(i32::from(exit_status(SIGINT)));
        }
        // The signal first: whoever sees the stop also sees why.
        SIGNAL.store(SIGINT, Ordering::SeqCst);
        STOP.store(true, Ordering::SeqCst);
    });
}
