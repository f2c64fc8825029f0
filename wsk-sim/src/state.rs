//! Process-global run state: configuration, the test serialisation lock, violations.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use crate::config::{Config, ViolationMode};

static CONFIG: RwLock<Option<Config>> = RwLock::new(None);
static TEST_LOCK: Mutex<()> = Mutex::new(());
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

/// Held for the duration of one test: tests of one binary share the process-global sim, so
/// they run one at a time. Dropping it while panicking prints the seed to replay the run.
#[must_use = "the sim is reset for the lifetime of this guard"]
pub struct SimGuard {
    _lock: MutexGuard<'static, ()>,
    seed: u64,
}

impl std::fmt::Debug for SimGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimGuard")
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl SimGuard {
    pub fn seed(&self) -> u64 {
        self.seed
    }
}

impl Drop for SimGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "wsk-sim: test failed with seed {0:#x}; replay with WSK_SIM_SEED={0:#x}",
                self.seed
            );
        }
    }
}

/// Takes the test lock, tears down whatever a previous test left, and starts a run.
pub(crate) fn init(cfg: Config) -> SimGuard {
    let lock = TEST_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let seed = cfg.seed;
    crate::teardown_all();
    crate::faults::reset(seed);
    VIOLATIONS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
    *CONFIG.write().unwrap_or_else(PoisonError::into_inner) = Some(cfg);
    crate::wsk::registration::start_run();
    SimGuard { _lock: lock, seed }
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
        if crate::irql::is_sim_thread() {
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
