//! The data path's handle (`DataPath`): all that the connection engine, the served sockets and
//! the load job may reach from their callbacks, at up to DISPATCH_LEVEL. Counters, the live
//! limits, the retained-bytes budget, the connection pool, the provider, the rundown that unload
//! waits on, the clock frequency, the source pattern, the load job, the stop flag.
//!
//! Why a handle of its own: the root state (`Driver`) also holds what only the serialised
//! control path may touch at PASSIVE_LEVEL (the configuration, the socket tables, the
//! per-service counter slots, the mailbox, the device). The Driver owns one `DataPath` and
//! gives `&DataPath` to `conn`, `serve` and `load`; they never import `crate::driver`
//! (`tests/layout_rules.rs` checks it), so a callback cannot reach the control path's state.

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use wsk_sys::{
    KeGetCurrentProcessorNumberEx, EX_RUNDOWN_REF, PMDL, WSK_PROVIDER_DISPATCH, WSK_PROVIDER_NPI,
};

use crate::conn::ConnPool;
use crate::kernel::time;
use crate::live_limits::LiveLimits;
use crate::load::Job;
use crate::logic::budget::RetainedBudget;
use crate::stats::{Counter, Stats, SvcStats};

pub(crate) struct DataPath {
    /// The captured provider (set once by the start-up thread before any socket exists,
    /// released at unload after the last one closed).
    pub(crate) provider: WSK_PROVIDER_NPI,
    /// The limits callbacks read, changeable while running.
    pub(crate) live: LiveLimits,
    pub(crate) stats: Stats,
    /// Per-CPU × per-service counters (all-zero is valid: left as the pool zeroed it).
    pub(crate) service_stats: SvcStats,
    pub(crate) budget: RetainedBudget,
    /// Held by every live connection context from accept to close completion (C29: unload
    /// closes every socket itself; C30: no completion routine runs after unload).
    pub(crate) rundown: EX_RUNDOWN_REF,
    /// Unload has begun: no new connection, no new job step.
    pub(crate) stopping: AtomicBool,
    pub(crate) conns: ConnPool,
    /// The source service's shared read-only payload and its MDL.
    pub(crate) pattern: *mut u8,
    pub(crate) pattern_mdl: PMDL,
    pub(crate) perf_freq: u64,
    /// The outbound load job (one at a time).
    pub(crate) job: Job,
    /// Housekeeping passes begun plus passes ended: odd while a pass runs. A socket the
    /// housekeeper reads from a table (the served UDP sockets, the load job's) is freed only
    /// after the pass that may have read it has ended
    /// ([`wait_housekeeper_pass`](Self::wait_housekeeper_pass)): counted, not "two ticks'
    /// time", which a preempted housekeeper outlives.
    pub(crate) hk_pass: AtomicU32,
    /// SIO_WSK_QUERY_IDEAL_SEND_BACKLOG queries answered at accept and the last value (W36:
    /// the ideal-backlog query); host-test visibility only, not part of the control ABI.
    pub(crate) backlog_queries: AtomicU64,
    pub(crate) backlog_last: AtomicUsize,
}

impl DataPath {
    #[inline]
    pub(crate) fn cpu() -> usize {
        // SAFETY: no preconditions; NULL = do not return the group/number struct.
        unsafe { KeGetCurrentProcessorNumberEx(ptr::null_mut()) as usize }
    }

    pub(crate) fn count(&self, c: Counter, n: u64) {
        self.stats.add(Self::cpu(), c, n);
    }

    /// Counts globally and for the service owning `stats_slot` (`stats::NO_SLOT`: global
    /// only). Any IRQL; touches only this CPU's lines.
    #[inline]
    pub(crate) fn count_service(&self, stats_slot: usize, c: Counter, n: u64) {
        self.count_service_at(Self::cpu(), stats_slot, c, n);
    }

    /// [`count_service`](Self::count_service) with the CPU number already read: a callback
    /// that counts more than once reads it once (KeGetCurrentProcessorNumberEx is a call into
    /// the kernel). A number read before the thread moved to another CPU (possible below
    /// DISPATCH_LEVEL) only puts the count in another CPU's block: the blocks are relaxed
    /// atomics summed on read, per CPU only to keep CPUs off each other's cache lines.
    #[inline]
    pub(crate) fn count_service_at(&self, cpu: usize, stats_slot: usize, c: Counter, n: u64) {
        self.stats.add(cpu, c, n);
        self.service_stats.add(cpu, stats_slot, c, n);
    }

    /// Two counts of one CPU and service at once (the copy path's bytes in and bytes copied):
    /// one index computation for both (`Stats::add2`).
    #[inline]
    pub(crate) fn count2_service_at(
        &self,
        cpu: usize,
        stats_slot: usize,
        (c1, n1): (Counter, u64),
        (c2, n2): (Counter, u64),
    ) {
        self.stats.add2(cpu, c1, n1, c2, n2);
        self.service_stats.add2(cpu, stats_slot, c1, n1, c2, n2);
    }

    /// The provider dispatch table (valid while captured).
    pub(crate) fn provider(&self) -> &WSK_PROVIDER_DISPATCH {
        // SAFETY: set by a successful capture, released only at unload after all sockets close.
        unsafe { &*self.provider.Dispatch }
    }

    /// Returns once no housekeeping pass that had begun when it was called is still running
    /// (at once between passes). A pointer taken out of a table the housekeeper reads before
    /// this call is then no longer held by it. Never from the housekeeper's own pass (it would
    /// wait for itself). PASSIVE_LEVEL.
    pub(crate) fn wait_housekeeper_pass(&self) {
        let v = self.hk_pass.load(Ordering::SeqCst);
        if v & 1 == 0 {
            return;
        }
        // A pass does no unbounded wait, so this ends; logged every 5 s meanwhile. Giving up
        // instead would free what the pass may still read.
        while !time::wait_until(5000, || self.hk_pass.load(Ordering::SeqCst) != v) {
            crate::kernel::log::log_err!("waiting for the housekeeper's pass to end");
        }
    }
}
