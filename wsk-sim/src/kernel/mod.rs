//! The kernel layer: the ntoskrnl.exe / HAL.dll subset a WSK driver imports, and the run
//! state (seeded schedule, violations; the configuration is `crate::config`) every part of the sim reads.
//!
//! Nothing here names the WSK provider above it (`tests/layout_rules.rs` checks it): where
//! the kernel must tell the provider something, the provider installs a hook at init
//! ([`install`]).

pub(crate) mod dbgprint;
pub mod device;
pub(crate) mod irp;
pub(crate) mod irql;
pub(crate) mod mdl;
pub mod pool;
pub(crate) mod preempt;
pub(crate) mod process;
pub(crate) mod processor;
pub mod registry;
pub(crate) mod routines;
pub(crate) mod schedule;
pub(crate) mod state;
pub(crate) mod sync;
pub(crate) mod thread;
pub(crate) mod timer;
pub(crate) mod unicode;

/// Wires the hooks (once per process): the allocator asks the IRP and timer tables about
/// every freed block (Driver Verifier's freed-while-pending checks), and `irp_abandoned`
/// (the provider's) hears of each pending IRP whose memory was freed.
pub(crate) fn install(irp_abandoned: fn(usize)) {
    pool::set_free_checks(vec![irp::check_freed_range, timer::check_freed_range]);
    irp::set_abandoned_hook(irp_abandoned);
}

/// Starts a run with `cfg`: the schedule reseeded, the run state replaced.
pub(crate) fn start(cfg: crate::config::Config) {
    process::init_exports();
    schedule::reset(cfg.seed);
    pool::clear_tally();
    preempt::configure(cfg.preempt_rate, cfg.preempt_us);
    state::start(cfg);
}

/// Tears the kernel's tables down between runs (drops leaked memory and objects).
pub(crate) fn reset() {
    irp::reset();
    mdl::reset();
    pool::reset();
    device::reset();
    thread::reset();
    timer::reset();
    registry::clear();
    let _ = dbgprint::take_dbg_output();
}
