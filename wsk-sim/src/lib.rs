//! wsk-sim: a user-mode WSK provider and the ntoskrnl subset a WSK driver imports, for
//! running an unchanged kernel driver's code in host tests. Test-only; never linked into
//! a .sys.
//!
//! The kernel functions (`ExAllocatePool2`, `IoAllocateIrp`, `WskRegister`, ...) are
//! defined here as `#[no_mangle] extern "win64"` symbols with the signatures `wsk-sys`
//! declares, so a driver crate built for the host links against them. A test binary must
//! link this crate: reference it (`use wsk_sim as _;` or call [`init`]).
//!
//! # Modules
//! - `kernel`: the ntoskrnl/HAL subset (IRQL, pool, sync objects, IRPs, MDLs, timers and
//!   DPCs, threads and work items, devices, registry, DbgPrintEx) and the run state
//!   (seeded schedule, violations). It never names the layer above.
//! - [`config`]: the simulator's configuration, read by both layers.
//! - `wsk`: the WSK provider (NETIO.SYS's side of wsk.h) over host sockets: registration,
//!   sockets per category, their event callbacks, the provider threads.
//! - [`run`], [`accounting`], [`faults`]: the test API over both layers.
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
//!   `kill_connection(local, remote)`, `disguise_datagrams(port, source, flags)` (a datagram
//!   source address or MSG_BCAST/MSG_MCAST that loopback cannot produce); random faults come
//!   from [`Config`].
//! - [`Config::with_unkind`] / `WSK_SIM_UNKIND` ([`UNKIND_ORDERS`], or `all`): the orders
//!   the WSK docs leave open (close vs the IRPs it cancels, completions before the call
//!   returns or during a callback, stalled callbacks, callbacks inside calls, the caller's
//!   process, unmapped and tiny MDLs, the clock interval, preempted PASSIVE threads, events
//!   of an accepted socket before its accept callback returns, a disconnect event during a
//!   receive event), off by default.
//! - [`new_driver_object`]: a DRIVER_OBJECT to pass to DriverEntry.
//! - [`run_passive`]: run DriverEntry/DriverUnload as PASSIVE_LEVEL kernel code.
//! - [`finish`]: leaks + violations of the run (empty = clean), then teardown.
//! - [`RELEASED_POISON`]: the byte released indication data is overwritten with.

// Every unsafe block says why it is sound.
#![deny(clippy::undocumented_unsafe_blocks)]
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
pub mod faults;
pub(crate) mod kernel;
pub mod pe;
pub mod run;
pub(crate) mod wsk;

pub use accounting::{counts, leaks, Counts};
pub use config::{Config, ViolationMode, UNKIND_ORDERS};
pub use kernel::dbgprint::{dbg_output, take_dbg_output};
pub use kernel::{device, pool, registry};
pub use run::{
    assert_no_leaks, current_irql, early_releases, finish, init, new_driver_object, run_passive,
    seed, take_violations, violations, wait_quiescent, SimGuard,
};
pub use wsk::RELEASED_POISON;

/// System threads (PsCreateSystemThread) that have not ended yet: a driver whose DriverEntry
/// failed, or that was unloaded, must have none (its code would run after the image is gone).
pub fn system_threads_running() -> usize {
    kernel::thread::threads_running()
}
