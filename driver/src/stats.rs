//! Per-CPU statistics: one cache-line-aligned block of relaxed atomics per processor, summed
//! on read. Callbacks on different CPUs never share a line (no false sharing on the hot path):
//! each block is a `crossbeam_utils::CachePadded` (128-byte aligned on x86_64, the adjacent-line
//! prefetcher pairs 64-byte lines).

use core::sync::atomic::{AtomicU64, Ordering};
use crossbeam_utils::CachePadded;

pub const MAX_CPUS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Counter {
    ConnAccepted,
    ConnRefused,
    ConnClosed,
    TcpBytesIn,
    TcpBytesOut,
    ZeroCopySends,
    CopyBytes,
    RxBackpressure,
    UdpDatagramsIn,
    UdpDatagramsOut,
    UdpBytesIn,
    UdpBytesOut,
    UdpDropNoContext,
    UdpDropFiltered,
    UdpDropRate,
    UdpDropTooBig,
    UdpDropService,
    SendErrors,
    DeadSockets,
    ProtocolErrors,
    OutboundConnects,
    OutboundFailures,
    CopySends,
    /// A broken invariant met on a callback path, dropped and counted instead of a panic
    /// (e.g. a completion naming a slot in the wrong state).
    InternalErrors,
    /// UDP guard drops, one per reason (`control::udp_guard::GuardDrop`).
    UdpDropBroadcast,
    UdpDropPrivilegedPort,
    UdpDropServicePort,
    UdpDropSpecialSource,
    /// TCP deadlines applied (`logic::tcp::Kick`): idle close, progress abort, retention.
    TcpIdleTimeouts,
    TcpProgressTimeouts,
    TcpRetainTimeouts,
    /// Acquisitions of a lock shared across CPUs on the UDP echo path (issue 20: goal 0 per
    /// datagram in steady state). Global only: a measure of the driver, not of a service.
    UdpSharedLocks,
}

pub const NUM_COUNTERS: usize = Counter::UdpSharedLocks as usize + 1;

pub const COUNTER_NAMES: [&str; NUM_COUNTERS] = [
    "conn_accepted",
    "conn_refused",
    "conn_closed",
    "tcp_bytes_in",
    "tcp_bytes_out",
    "zero_copy_sends",
    "copy_bytes",
    "rx_backpressure",
    "udp_datagrams_in",
    "udp_datagrams_out",
    "udp_bytes_in",
    "udp_bytes_out",
    "udp_drop_no_context",
    "udp_drop_filtered",
    "udp_drop_rate",
    "udp_drop_too_big",
    "udp_drop_service",
    "send_errors",
    "dead_sockets",
    "protocol_errors",
    "outbound_connects",
    "outbound_failures",
    "copy_sends",
    "internal_errors",
    "udp_drop_broadcast",
    "udp_drop_privileged_port",
    "udp_drop_service_port",
    "udp_drop_special_source",
    "tcp_idle_timeouts",
    "tcp_progress_timeouts",
    "tcp_retain_timeouts",
    "udp_shared_locks",
];

/// One CPU's counters, alone on its cache lines.
type CpuBlock = CachePadded<[AtomicU64; NUM_COUNTERS]>;

#[derive(Debug)]
pub struct Stats {
    cpus: [CpuBlock; MAX_CPUS],
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const BLOCK: CpuBlock = CachePadded::new([ZERO; NUM_COUNTERS]);

impl Stats {
    pub const fn new() -> Self {
        Self {
            cpus: [BLOCK; MAX_CPUS],
        }
    }

    #[inline]
    pub fn add(&self, cpu: usize, c: Counter, n: u64) {
        self.cpus[cpu % MAX_CPUS][c as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Two counters of one CPU at once (the UDP echo's datagrams and bytes): one index
    /// computation for both.
    #[inline]
    pub fn add2(&self, cpu: usize, c1: Counter, n1: u64, c2: Counter, n2: u64) {
        let b = &self.cpus[cpu % MAX_CPUS];
        b[c1 as usize].fetch_add(n1, Ordering::Relaxed);
        b[c2 as usize].fetch_add(n2, Ordering::Relaxed);
    }

    pub fn get(&self, c: Counter) -> u64 {
        self.cpus
            .iter()
            .map(|b| b[c as usize].load(Ordering::Relaxed))
            .sum()
    }

    pub fn snapshot(&self) -> [u64; NUM_COUNTERS] {
        let mut out = [0u64; NUM_COUNTERS];
        for b in &self.cpus {
            for (o, c) in out.iter_mut().zip(b.iter()) {
                *o += c.load(Ordering::Relaxed);
            }
        }
        out
    }

    pub fn cpu_snapshot(&self, cpu: usize) -> [u64; NUM_COUNTERS] {
        let mut out = [0u64; NUM_COUNTERS];
        if let Some(b) = self.cpus.get(cpu) {
            for (o, c) in out.iter_mut().zip(b.iter()) {
                *o = c.load(Ordering::Relaxed);
            }
        }
        out
    }

    pub fn reset(&self) {
        for b in &self.cpus {
            for c in b.iter() {
                c.store(0, Ordering::Relaxed);
            }
        }
    }
}

/// Slot value for traffic that belongs to no service (load-job connections).
pub const NO_SLOT: usize = usize::MAX;

/// Where a driver counter lands in a per-service block (indexed like the control ABI's
/// `Counters`). `ConnClosed` is kept in the `ConnActive` cell and turned into the gauge
/// (accepted - closed) on read. Counters the ABI has no place for are global only.
pub const fn svc_index(c: Counter) -> Option<usize> {
    use control::stats::Counter as A;
    let a = match c {
        Counter::ConnAccepted => A::ConnAccepted,
        Counter::ConnRefused => A::ConnRefused,
        Counter::ConnClosed => A::ConnActive,
        Counter::TcpBytesIn | Counter::UdpBytesIn => A::BytesIn,
        Counter::TcpBytesOut | Counter::UdpBytesOut => A::BytesOut,
        Counter::UdpDatagramsIn => A::DatagramsIn,
        Counter::UdpDatagramsOut => A::DatagramsOut,
        Counter::UdpDropNoContext => A::DropNoSendContext,
        Counter::UdpDropRate => A::DropRateLimited,
        Counter::UdpDropFiltered => A::DropNotAllowed,
        Counter::UdpDropService | Counter::UdpDropTooBig => A::DropMalformed,
        Counter::SendErrors => A::SendErrors,
        Counter::ZeroCopySends => A::ZeroCopySends,
        Counter::CopySends => A::CopySends,
        Counter::RxBackpressure => A::Backpressure,
        Counter::UdpDropBroadcast => A::DropBroadcast,
        Counter::UdpDropPrivilegedPort => A::DropPrivilegedPort,
        Counter::UdpDropServicePort => A::DropServicePort,
        Counter::UdpDropSpecialSource => A::DropSpecialSource,
        Counter::TcpIdleTimeouts => A::TcpIdleTimeouts,
        Counter::TcpProgressTimeouts => A::TcpProgressTimeouts,
        Counter::TcpRetainTimeouts => A::TcpRetainTimeouts,
        Counter::CopyBytes
        | Counter::DeadSockets
        | Counter::ProtocolErrors
        | Counter::OutboundConnects
        | Counter::OutboundFailures
        | Counter::InternalErrors
        | Counter::UdpSharedLocks => return None,
    };
    Some(a as usize)
}

/// One CPU's counters for one service: 20 × u64 padded to two 128-byte lines.
type SvcBlock = CachePadded<[AtomicU64; control::stats::COUNTER_COUNT]>;

/// Per-CPU × per-service counters: a callback only writes its own CPU's line for its own
/// service, so services add no shared-line traffic on the data path. The all-zero bit pattern
/// is a valid (empty) value, so it lives directly in the pool-zeroed driver state
/// (`MAX_CPUS × MAX_SERVICES × 256 B` = 256 KiB, never on a stack).
#[derive(Debug)]
pub struct SvcStats {
    cpus: [[SvcBlock; MAX_SERVICES]; MAX_CPUS],
}

pub use control::config::MAX_SERVICES;

impl SvcStats {
    #[inline]
    pub fn add(&self, cpu: usize, slot: usize, c: Counter, n: u64) {
        if slot < MAX_SERVICES {
            if let Some(i) = svc_index(c) {
                self.cpus[cpu % MAX_CPUS][slot][i].fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Two counters of one CPU and service at once (as `Stats::add2`).
    #[inline]
    pub fn add2(&self, cpu: usize, slot: usize, c1: Counter, n1: u64, c2: Counter, n2: u64) {
        if slot < MAX_SERVICES {
            let b = &self.cpus[cpu % MAX_CPUS][slot];
            if let Some(i) = svc_index(c1) {
                b[i].fetch_add(n1, Ordering::Relaxed);
            }
            if let Some(i) = svc_index(c2) {
                b[i].fetch_add(n2, Ordering::Relaxed);
            }
        }
    }

    /// Sum over CPUs, in the control ABI's layout (ConnActive already turned into the gauge).
    pub fn snapshot(&self, slot: usize) -> [u64; control::stats::COUNTER_COUNT] {
        let mut out = [0u64; control::stats::COUNTER_COUNT];
        if slot < MAX_SERVICES {
            for cpu in &self.cpus {
                for (o, c) in out.iter_mut().zip(cpu[slot].iter()) {
                    *o = o.wrapping_add(c.load(Ordering::Relaxed));
                }
            }
        }
        let active = control::stats::Counter::ConnActive as usize;
        out[active] = out[control::stats::Counter::ConnAccepted as usize].wrapping_sub(out[active]);
        out
    }

    /// Zeroes a slot before a new service takes it. Control path (PASSIVE_LEVEL).
    pub fn clear(&self, slot: usize) {
        if slot < MAX_SERVICES {
            for cpu in &self.cpus {
                for c in cpu[slot].iter() {
                    c.store(0, Ordering::Relaxed);
                }
            }
        }
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_over_cpus() {
        let s = Stats::new();
        s.add(0, Counter::UdpBytesIn, 5);
        s.add(3, Counter::UdpBytesIn, 7);
        s.add(MAX_CPUS + 1, Counter::ConnAccepted, 1);
        assert_eq!(s.get(Counter::UdpBytesIn), 12);
        assert_eq!(s.snapshot()[Counter::ConnAccepted as usize], 1);
        assert_eq!(
            COUNTER_NAMES[Counter::OutboundFailures as usize],
            "outbound_failures"
        );
        assert_eq!(core::mem::align_of::<CpuBlock>(), 128);
        s.reset();
        assert_eq!(s.get(Counter::UdpBytesIn), 0);
    }

    #[test]
    fn per_service_blocks_are_separate_and_mapped() {
        extern crate std;
        use control::stats::Counter as A;
        // Too big for a test thread's stack in debug builds: on the heap, zeroed like the pool.
        let layout = std::alloc::Layout::new::<SvcStats>();
        #[allow(clippy::cast_ptr_alignment)] // allocated with SvcStats's own layout
        // SAFETY: non-zero size; all-zero bits are a valid SvcStats.
        let p = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<SvcStats>();
        assert!(!p.is_null());
        // SAFETY: freshly allocated and zeroed.
        let s = unsafe { &*p };
        assert_eq!(core::mem::size_of::<SvcBlock>(), 256);
        s.add(0, 1, Counter::TcpBytesIn, 10);
        s.add(5, 1, Counter::UdpBytesIn, 5);
        s.add(2, 1, Counter::ConnAccepted, 3);
        s.add(3, 1, Counter::ConnClosed, 1);
        s.add(0, 2, Counter::UdpDropTooBig, 1);
        s.add(0, 2, Counter::UdpDropService, 1);
        s.add(0, NO_SLOT, Counter::TcpBytesIn, 99);
        s.add(0, 1, Counter::DeadSockets, 7);
        s.add(0, 2, Counter::UdpDropServicePort, 4);
        let a = s.snapshot(1);
        assert_eq!(a[A::BytesIn as usize], 15);
        assert_eq!(a[A::ConnAccepted as usize], 3);
        assert_eq!(a[A::ConnActive as usize], 2);
        assert_eq!(a.iter().sum::<u64>(), 20);
        let b = s.snapshot(2);
        assert_eq!(b[A::DropMalformed as usize], 2);
        assert_eq!(b[A::BytesIn as usize], 0);
        assert_eq!(b[A::DropServicePort as usize], 4);
        s.clear(1);
        assert_eq!(s.snapshot(1), [0; control::stats::COUNTER_COUNT]);
        // SAFETY: allocated above with this layout.
        unsafe { std::alloc::dealloc(p.cast(), layout) };
    }
}
