//! Process-global run state: configuration, seed, violations, and which threads are the sim's.

use std::cell::Cell;
use std::sync::{Mutex, PoisonError, RwLock};

use crate::config::{Config, ViolationMode};

static CONFIG: RwLock<Option<Config>> = RwLock::new(None);
static VIOLATIONS: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub(crate) fn config() -> Config {
    CONFIG
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .unwrap_or_default()
}

pub(crate) fn seed() -> u64 {
    CONFIG
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .map_or(0, |c| c.seed)
}

/// Starts a run: `cfg` becomes the run's configuration and the violations of an earlier
/// run are dropped.
pub(crate) fn start(cfg: Config) {
    VIOLATIONS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
    *CONFIG.write().unwrap_or_else(PoisonError::into_inner) = Some(cfg);
}

/// A broken rule of the documented contract. Panics (with the seed) or records it.
#[track_caller]
pub(crate) fn violation(msg: impl std::fmt::Display) {
    let text = msg.to_string();
    let mode = CONFIG
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .map_or(ViolationMode::Panic, |c| c.violations);
    VIOLATIONS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(text.clone());
    if mode == ViolationMode::Panic {
        // Straight to fd 2: provider threads inherit the test harness's output capture, and
        // a captured message is lost when the process aborts.
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!("wsk-sim VIOLATION: {text} (seed {:#x})\n", seed()).as_bytes(),
        );
        if is_sim_thread() {
            // A provider thread has no test to fail: stop the process like a bugcheck.
            std::process::abort();
        }
        panic!("wsk-sim VIOLATION: {text}");
    }
}

pub(crate) fn take_violations() -> Vec<String> {
    std::mem::take(&mut *VIOLATIONS.lock().unwrap_or_else(PoisonError::into_inner))
}

pub(crate) fn violations() -> Vec<String> {
    VIOLATIONS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

thread_local! {
    static SIM_THREAD: Cell<bool> = const { Cell::new(false) };
}

pub(crate) fn mark_sim_thread() {
    SIM_THREAD.with(|c| c.set(true));
}

/// Body of a sim-owned thread: a panic there has no test to fail, and the harness's output
/// capture (inherited by threads spawned inside a test) would swallow its message, so print
/// it straight to fd 2 and stop the process like a bugcheck.
pub(crate) fn sim_thread_main(f: impl FnOnce()) {
    mark_sim_thread();
    if let Err(e) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_string()))
            .unwrap_or_default();
        let name = std::thread::current().name().unwrap_or("?").to_string();
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            format!(
                "wsk-sim: thread {name} panicked: {msg} (seed {:#x})\n",
                seed()
            )
            .as_bytes(),
        );
        std::process::abort();
    }
}

pub(crate) fn is_sim_thread() -> bool {
    SIM_THREAD.with(Cell::get)
}
