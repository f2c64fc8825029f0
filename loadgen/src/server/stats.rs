//! Server counters: one cache-line-separated block per worker, written only by that worker,
//! once per event batch, so the data path never shares a contended line.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of the server's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub tcp_accepted: u64,
    /// Connections closed at once because `max_conns` were open.
    pub tcp_refused: u64,
    pub tcp_open: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Datagrams received (UDP) / sockperf messages received (both transports).
    pub rx_msgs: u64,
    /// Datagrams / sockperf replies sent.
    pub tx_msgs: u64,
    /// UDP datagrams not answered: send buffer full, truncated, or refused by the reflection
    /// guard (the guard's share is broken down by reason below).
    pub udp_dropped: u64,
    /// Guard: sent to a broadcast or multicast address.
    pub udp_drop_broadcast: u64,
    /// Guard: source port below 1024.
    pub udp_drop_privileged_port: u64,
    /// Guard: source port of one of our services.
    pub udp_drop_service_port: u64,
    /// Guard: unspecified, multicast or broadcast source address.
    pub udp_drop_special_source: u64,
    /// Guard: over the per-source rate limit.
    pub udp_drop_rate: u64,
    /// Malformed sockperf messages (TCP: the connection is closed; UDP: dropped).
    pub sockperf_bad_frames: u64,
    /// sockperf messages counted but not answered (no reply requested).
    pub sockperf_counted: u64,
}

impl std::fmt::Display for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "tcp accepted {} refused {} open {} | rx {} B {} msgs | tx {} B {} msgs | udp dropped {} (broadcast {} privileged-port {} service-port {} special-source {} rate {}) | sockperf counted {} bad {}",
            self.tcp_accepted,
            self.tcp_refused,
            self.tcp_open,
            self.rx_bytes,
            self.rx_msgs,
            self.tx_bytes,
            self.tx_msgs,
            self.udp_dropped,
            self.udp_drop_broadcast,
            self.udp_drop_privileged_port,
            self.udp_drop_service_port,
            self.udp_drop_special_source,
            self.udp_drop_rate,
            self.sockperf_counted,
            self.sockperf_bad_frames
        )
    }
}

/// Counters a slot holds (index 2 is unused: `tcp_open` is the shared gauge).
const SLOT_COUNTERS: usize = 15;

impl Counters {
    /// The slot layout of a tally.
    fn slot_values(&self) -> [u64; SLOT_COUNTERS] {
        [
            self.tcp_accepted,
            self.tcp_refused,
            0,
            self.rx_bytes,
            self.tx_bytes,
            self.rx_msgs,
            self.tx_msgs,
            self.udp_dropped,
            self.sockperf_bad_frames,
            self.sockperf_counted,
            self.udp_drop_broadcast,
            self.udp_drop_privileged_port,
            self.udp_drop_service_port,
            self.udp_drop_special_source,
            self.udp_drop_rate,
        ]
    }
}

#[repr(align(128))]
#[derive(Default)]
pub(crate) struct Slot {
    v: [AtomicU64; SLOT_COUNTERS],
}

pub(crate) struct Shared {
    slots: Box<[Slot]>,
    /// Open TCP connections across workers: the connection limit is global.
    pub(crate) open: AtomicU64,
}

impl Shared {
    pub(crate) fn new(workers: usize) -> Self {
        let slots = (0..workers.max(1)).map(|_| Slot::default()).collect();
        Shared {
            slots,
            open: AtomicU64::new(0),
        }
    }

    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    /// Adds a worker's local tally into its slot (the worker is the slot's only writer).
    pub(crate) fn publish(&self, worker: usize, c: &mut Counters) {
        let s = &self.slots[worker];
        let vals = c.slot_values();
        for (a, v) in s.v.iter().zip(vals) {
            if v != 0 {
                a.store(a.load(Relaxed) + v, Relaxed);
            }
        }
        *c = Counters::default();
    }

    /// Adds counters from any thread (the portable back end's many threads share slot 0).
    #[cfg_attr(target_os = "linux", allow(dead_code))]
    pub(crate) fn add_shared(&self, c: &Counters) {
        let s = &self.slots[0];
        let vals = c.slot_values();
        for (a, v) in s.v.iter().zip(vals) {
            if v != 0 {
                a.fetch_add(v, Relaxed);
            }
        }
    }

    pub(crate) fn snapshot(&self) -> Counters {
        let mut t = [0u64; SLOT_COUNTERS];
        for s in &*self.slots {
            for (acc, a) in t.iter_mut().zip(&s.v) {
                *acc += a.load(Relaxed);
            }
        }
        Counters {
            tcp_accepted: t[0],
            tcp_refused: t[1],
            tcp_open: self.open.load(Relaxed),
            rx_bytes: t[3],
            tx_bytes: t[4],
            rx_msgs: t[5],
            tx_msgs: t[6],
            udp_dropped: t[7],
            sockperf_bad_frames: t[8],
            sockperf_counted: t[9],
            udp_drop_broadcast: t[10],
            udp_drop_privileged_port: t[11],
            udp_drop_service_port: t[12],
            udp_drop_special_source: t[13],
            udp_drop_rate: t[14],
        }
    }
}
