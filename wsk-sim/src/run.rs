//! A run's lifecycle as tests see it: start (serialised on one lock), inspect, finish.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::accounting::leaks;
use crate::config::Config;
use crate::kernel::{irp, irql, state};

/// Tests of one binary share the process-global sim: [`init`] takes this lock.
static TEST_LOCK: Mutex<()> = Mutex::new(());

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

/// Starts a test run: takes the test lock, resets every table, applies `cfg`.
pub fn init(cfg: Config) -> SimGuard {
    let lock = TEST_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    // Callbacks, completion routines and work items of the previous run finish before its
    // tables go (bounded): none of them runs into this run's state or counters.
    let end = Instant::now() + Duration::from_secs(5);
    while (irql::client_code_running() > 0 || crate::wsk::complete::queued() > 0)
        && Instant::now() < end
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    let seed = cfg.seed;
    crate::kernel::install(crate::wsk::socket::forget);
    teardown_all();
    crate::wsk::disguise::clear();
    crate::kernel::start(cfg);
    crate::wsk::start_run();
    SimGuard { _lock: lock, seed }
}

/// The seed of the current run.
pub fn seed() -> u64 {
    state::seed()
}

/// Violations recorded so far in this run.
pub fn violations() -> Vec<String> {
    state::violations()
}

/// Violations recorded so far, cleared.
pub fn take_violations() -> Vec<String> {
    state::take_violations()
}

/// WskRelease calls from another thread that reached the provider before it saw the list's
/// receive callback return STATUS_PENDING, after the callback's last kernel call, and were
/// accepted (G22), this run: shows that the `preempt` order produced that interleaving.
pub fn early_releases() -> u64 {
    crate::wsk::indication::early_releases_applied()
}

/// The IRQL the calling thread is at (the sim's per-thread IRQL).
pub fn current_irql() -> u8 {
    irql::current()
}

/// Waits (up to `timeout`) until no IRP is pending in the provider and no completion is
/// queued. True if it got there.
pub fn wait_quiescent(timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if irp::owned().is_empty() && crate::wsk::complete::queued() == 0 {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Panics listing every leak and every recorded violation (after waiting up to 2 s for
/// pending completions to drain).
pub fn assert_no_leaks() {
    wait_quiescent(Duration::from_secs(2));
    let l = leaks();
    let v = violations();
    assert!(
        l.is_empty() && v.is_empty(),
        "wsk-sim: leaks at teardown (seed {:#x}):\n  {}\nviolations:\n  {}",
        seed(),
        l.join("\n  "),
        v.join("\n  ")
    );
}

/// Runs `f` as kernel code at PASSIVE_LEVEL on this thread (DriverEntry, DriverUnload) and
/// checks it returns at PASSIVE_LEVEL.
pub fn run_passive<R>(f: impl FnOnce() -> R) -> R {
    if irql::current() != 0 {
        state::violation(format!("run_passive entered at IRQL {}", irql::current()));
    }
    irql::run_at(0, "PASSIVE_LEVEL code", f)
}

/// Ends a run: waits for pending completions, returns every leak and every violation
/// (empty = clean), then tears the run's state down.
pub fn finish() -> Vec<String> {
    wait_quiescent(Duration::from_secs(2));
    let mut v = leaks();
    // C30: after DriverUnload no driver code may still run. Allow a routine a moment to
    // leave its last instructions (a rundown released as its last act) before reporting.
    let end = Instant::now() + Duration::from_millis(200);
    while irql::client_code_running() > 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(1));
    }
    if irql::client_code_running() > 0 {
        v.push(format!(
            "{} callback(s)/completion routine(s)/DPC(s)/work item(s) of the driver still running after unload (C30)",
            irql::client_code_running()
        ));
    }
    v.extend(
        take_violations()
            .into_iter()
            .map(|m| format!("violation: {m}")),
    );
    teardown_all();
    v
}

/// A zeroed DRIVER_OBJECT (Type 4) with its Size set, leaked for the test's lifetime.
pub fn new_driver_object() -> *mut wsk_sys::DRIVER_OBJECT {
    // SAFETY: DRIVER_OBJECT is plain data; all-zero is a valid starting state.
    let mut d: Box<wsk_sys::DRIVER_OBJECT> = Box::new(unsafe { std::mem::zeroed() });
    d.Type = 4;
    d.Size = std::mem::size_of::<wsk_sys::DRIVER_OBJECT>() as i16;
    Box::into_raw(d)
}

/// Tears down every table between runs (drops host sockets, frees leaked memory).
fn teardown_all() {
    crate::wsk::reset();
    crate::kernel::reset();
}
