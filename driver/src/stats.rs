//! Per-CPU statistics: one cache-line-aligned block of relaxed atomics per processor, summed
//! on read. Callbacks on different CPUs never share a line (no false sharing on the hot path).

use core::sync::atomic::{AtomicU64, Ordering};

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
}

pub const NUM_COUNTERS: usize = Counter::CopySends as usize + 1;

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
];

#[repr(C, align(128))]
#[derive(Debug)]
struct CpuBlock {
    c: [AtomicU64; NUM_COUNTERS],
}

#[derive(Debug)]
pub struct Stats {
    cpus: [CpuBlock; MAX_CPUS],
}

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: AtomicU64 = AtomicU64::new(0);
#[allow(clippy::declare_interior_mutable_const)]
const BLOCK: CpuBlock = CpuBlock { c: [ZERO; NUM_COUNTERS] };

impl Stats {
    pub const fn new() -> Self {
        Self { cpus: [BLOCK; MAX_CPUS] }
    }

    #[inline]
    pub fn add(&self, cpu: usize, c: Counter, n: u64) {
        self.cpus[cpu % MAX_CPUS].c[c as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self, c: Counter) -> u64 {
        self.cpus.iter().map(|b| b.c[c as usize].load(Ordering::Relaxed)).sum()
    }

    pub fn snapshot(&self) -> [u64; NUM_COUNTERS] {
        let mut out = [0u64; NUM_COUNTERS];
        for b in &self.cpus {
            for (o, c) in out.iter_mut().zip(b.c.iter()) {
                *o += c.load(Ordering::Relaxed);
            }
        }
        out
    }

    pub fn cpu_snapshot(&self, cpu: usize) -> [u64; NUM_COUNTERS] {
        let mut out = [0u64; NUM_COUNTERS];
        if let Some(b) = self.cpus.get(cpu) {
            for (o, c) in out.iter_mut().zip(b.c.iter()) {
                *o = c.load(Ordering::Relaxed);
            }
        }
        out
    }

    pub fn reset(&self) {
        for b in &self.cpus {
            for c in &b.c {
                c.store(0, Ordering::Relaxed);
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
        assert_eq!(COUNTER_NAMES[Counter::OutboundFailures as usize], "outbound_failures");
        assert_eq!(core::mem::align_of::<CpuBlock>(), 128);
        s.reset();
        assert_eq!(s.get(Counter::UdpBytesIn), 0);
    }
}
