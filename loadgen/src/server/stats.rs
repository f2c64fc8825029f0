//! Server counters: one cache-line-separated block per worker, written only by that worker,
//! once per event batch, so the data path never shares a contended line.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::{Mode, Proto};

/// Services × transports: each worker keeps its counters apart per (service, protocol), so
/// the metrics can be labelled by both.
pub(crate) const SERVICES: usize = 8;

/// The counter block of (service, protocol).
pub(crate) fn service_index(svc: Mode, proto: Proto) -> usize {
    svc as usize * 2 + usize::from(proto == Proto::Udp)
}

/// The (service, protocol) of counter block `i` (inverse of [`service_index`]).
pub(crate) fn service_of(i: usize) -> (Mode, Proto) {
    (
        Mode::ALL[i / 2],
        if i.is_multiple_of(2) {
            Proto::Tcp
        } else {
            Proto::Udp
        },
    )
}

/// A snapshot of the server's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub tcp_accepted: u64,
    /// Connections closed at once because `max_conns` were open.
    pub tcp_refused: u64,
    pub tcp_open: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Datagrams received (UDP) / sockperf messages received (both transports) / TCP echo:
    /// echoload-wire messages received whole (`server::framing`).
    pub rx_msgs: u64,
    /// Datagrams / sockperf replies / TCP echo: echoload-wire messages sent whole.
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

/// One `--stats-every` line: the wall-clock time (RFC 3339, UTC, milliseconds), seconds since
/// the server started, and the rates over the last `secs` seconds (`prev` to `cur`).
pub fn rate_line(
    prev: &Counters,
    cur: &Counters,
    secs: f64,
    at: std::time::SystemTime,
    since_start: f64,
) -> String {
    use crate::results::report::human;
    let per_s = |a: u64, b: u64| {
        if secs > 0.0 {
            b.saturating_sub(a) as f64 / secs
        } else {
            0.0
        }
    };
    format!(
        "{} +{since_start:.1}s  rx {} {}  tx {} {}  tcp open {} accepted {}  udp dropped {} \
         (rate limit {})",
        humantime::format_rfc3339_millis(at),
        human(per_s(prev.rx_bytes, cur.rx_bytes) * 8.0, "bit/s"),
        human(per_s(prev.rx_msgs, cur.rx_msgs), "msg/s"),
        human(per_s(prev.tx_bytes, cur.tx_bytes) * 8.0, "bit/s"),
        human(per_s(prev.tx_msgs, cur.tx_msgs), "msg/s"),
        cur.tcp_open,
        human(per_s(prev.tcp_accepted, cur.tcp_accepted), "/s"),
        human(per_s(prev.udp_dropped, cur.udp_dropped), "/s"),
        human(per_s(prev.udp_drop_rate, cur.udp_drop_rate), "/s"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_line_has_time_and_rates() {
        let prev = Counters {
            rx_bytes: 1_000,
            rx_msgs: 10,
            ..Counters::default()
        };
        let cur = Counters {
            rx_bytes: 1_001_000,
            tx_bytes: 500_000,
            rx_msgs: 4_010,
            tx_msgs: 2_000,
            tcp_open: 3,
            tcp_accepted: 4,
            udp_dropped: 10,
            udp_drop_rate: 10,
            ..Counters::default()
        };
        let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_796_000_000_123);
        let l = rate_line(&prev, &cur, 2.0, at, 12.04);
        assert_eq!(
            l,
            "2026-11-30T00:53:20.123Z +12.0s  rx 4.00 Mbit/s 2.00 kmsg/s  tx 2.00 Mbit/s \
             1.00 kmsg/s  tcp open 3 accepted 2.00 /s  udp dropped 5.00 /s (rate limit 5.00 /s)"
        );
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
    /// `SERVICES` slots per worker: slot `worker * SERVICES + service_index`.
    slots: Box<[Slot]>,
    /// Open TCP connections across workers: the connection limit is global.
    pub(crate) open: AtomicU64,
    /// The UDP rate limit's announcements (one per source, all workers together).
    pub(crate) announce: std::sync::Arc<super::guard::Announcer>,
}

impl Shared {
    pub(crate) fn new(workers: usize) -> Self {
        let slots = (0..workers.max(1) * SERVICES)
            .map(|_| Slot::default())
            .collect();
        Shared {
            slots,
            open: AtomicU64::new(0),
            announce: std::sync::Arc::default(),
        }
    }

    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    /// Adds a worker's local tally of service block `svc` ([`service_index`]) into its slot
    /// (the worker is the slot's only writer).
    pub(crate) fn publish(&self, worker: usize, svc: usize, c: &mut Counters) {
        let s = &self.slots[worker * SERVICES + svc];
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
    pub(crate) fn add_shared(&self, svc: usize, c: &Counters) {
        let s = &self.slots[svc];
        let vals = c.slot_values();
        for (a, v) in s.v.iter().zip(vals) {
            if v != 0 {
                a.fetch_add(v, Relaxed);
            }
        }
    }

    pub(crate) fn snapshot(&self) -> Counters {
        self.sum(|_| true)
    }

    /// The counters of each (service, protocol) block, in [`service_index`] order (the open
    /// connection gauge is global: 0 here).
    pub(crate) fn by_service(&self) -> Vec<(Mode, Proto, Counters)> {
        (0..SERVICES)
            .map(|k| {
                let (svc, proto) = service_of(k);
                let mut c = self.sum(|i| i % SERVICES == k);
                c.tcp_open = 0;
                (svc, proto, c)
            })
            .collect()
    }

    fn sum(&self, take: impl Fn(usize) -> bool) -> Counters {
        let mut t = [0u64; SLOT_COUNTERS];
        for (i, s) in self.slots.iter().enumerate() {
            if !take(i) {
                continue;
            }
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
