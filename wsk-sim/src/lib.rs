//! wsk-sim: a user-mode WSK provider and the ntoskrnl subset a WSK driver imports, for
//! running an unchanged kernel driver's code in host tests. Test-only; never linked into
//! a .sys.
//!
//! The kernel functions (`ExAllocatePool2`, `IoAllocateIrp`, `WskRegister`, ...) are
//! defined here as `#[no_mangle] extern "win64"` symbols with the signatures `wsk-sys`
//! declares, so a driver crate built for the host links against them. A test binary must
//! link this crate: reference it (`use wsk_sim as _;` or call [`init`]).
//!
//! # Stable test API
//! - [`init`]`(`[`Config`]`) -> `[`SimGuard`]: serialises tests of one binary on a global
//!   lock, tears down what an earlier test left, seeds the schedule (`WSK_SIM_SEED`
//!   overrides the clock seed; the seed is printed when a test fails while the guard lives).
//! - [`counts`], [`leaks`], [`assert_no_leaks`]: live pool blocks per tag, IRPs, MDLs,
//!   sockets, captured NPIs, retained indications, pending IRPs, handles, devices.
//! - [`wait_quiescent`]: waits until no IRP is pending in the provider.
//! - [`violations`], [`take_violations`]: contract violations recorded (in
//!   [`ViolationMode::Record`]); in [`ViolationMode::Panic`] (default) a violation panics
//!   with the rule and the seed (aborting the process when it happens inside an
//!   `extern "win64"` call or on a provider thread, like a bugcheck).
//! - [`dbg_output`], [`take_dbg_output`]: DbgPrintEx capture.
//! - [`registry`]: `set_value(path, name, RegValue)` backs ZwOpenKey/ZwQueryValueKey.
//! - [`device`]: `devices()`, `symlinks()` (with the DACL applied by ZwSetSecurityObject),
//!   `call_dispatch(dev, major, ioctl, input, output_len)` to send an IRP to a driver.
//! - [`faults`]: `fail_next(Call, status, count)`, `kill_socket(local)`,
//!   `kill_connection(local, remote)`; random faults come from [`Config`].
//! - [`new_driver_object`]: a DRIVER_OBJECT to pass to DriverEntry.
//! - [`run_passive`]: run DriverEntry/DriverUnload as PASSIVE_LEVEL kernel code.
//! - [`finish`]: leaks + violations of the run (empty = clean), then teardown.
//! - [`RELEASED_POISON`]: the byte released indication data is overwritten with.

// Kernel names are kept exactly as the C headers spell them.
#![allow(non_snake_case, non_upper_case_globals, non_camel_case_types)]
// Every allocation the sim casts is made with the target type's alignment (16 or more);
// kernel signatures fix argument counts; status tables read best as parallel match arms.
#![allow(
    clippy::cast_ptr_alignment,
    clippy::too_many_arguments,
    clippy::match_same_arms,
    clippy::many_single_char_names,
    clippy::items_after_statements,
    clippy::single_match_else,
    clippy::needless_range_loop,
    clippy::struct_field_names,
    clippy::needless_pass_by_value
)]

pub mod accounting;
pub mod bugcheck;
pub mod config;
pub mod device;
pub mod faults;
pub(crate) mod irp;
pub(crate) mod irql;
pub(crate) mod mdl;
pub mod misc;
pub mod pool;
pub mod registry;
pub(crate) mod state;
pub(crate) mod sync;
pub(crate) mod thread;
pub(crate) mod timer;
pub(crate) mod wsk;

use std::time::{Duration, Instant};

pub use accounting::{counts, leaks, Counts};
pub use config::{Config, ViolationMode};
pub use misc::{dbg_output, take_dbg_output};
pub use state::SimGuard;
pub use wsk::RELEASED_POISON;

/// Starts a test run: takes the test lock, resets every table, applies `cfg`.
pub fn init(cfg: Config) -> SimGuard {
    state::init(cfg)
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

/// The IRQL the calling thread is at (the sim's per-thread IRQL).
pub fn current_irql() -> u8 {
    irql::current()
}

/// Waits (up to `timeout`) until no IRP is pending in the provider and no completion is
/// queued. True if it got there.
pub fn wait_quiescent(timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if irp::owned().is_empty() && wsk::complete::queued() == 0 {
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
pub(crate) fn teardown_all() {
    wsk::socket::reset();
    wsk::indication::reset();
    wsk::registration::reset();
    irp::reset();
    mdl::reset();
    pool::reset();
    device::reset();
    thread::reset();
    timer::reset();
    registry::clear();
    let _ = misc::take_dbg_output();
}
