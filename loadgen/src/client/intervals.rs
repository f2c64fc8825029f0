//! Per-interval figures (`-i/--interval`, the JSON `intervals` array).
//!
//! Each worker accumulates the current interval in its [`Stats`] and, when its clock crosses
//! an interval boundary, adds that interval's counters and latency histogram to a shared
//! [`Book`]. An interval is complete once every worker has moved past it; the thread that
//! started the run then turns it into an [`Interval`] (and may print it). The sum over the
//! intervals of every counter is the run's total: what a worker counts after its last
//! boundary (e.g. replies declared lost at the end) goes to the last interval.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

// The counters every level shares (a worker's Stats, an interval, the run's totals) live
// here, at the bottom: stats.rs builds on the intervals' book, never the other way round.

/// Highest latency the histogram keeps exactly (ns); larger values saturate.
pub const HIST_MAX_NS: u64 = 100_000_000_000;

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("static histogram bounds are valid")
}

/// Integrity and connection error counters (the JSON `errors` object).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Errors {
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub corrupted: u64,
    pub connect: u64,
    pub io: u64,
}

impl Errors {
    pub fn add(&mut self, o: &Errors) {
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.corrupted += o.corrupted;
        self.connect += o.connect;
        self.io += o.io;
    }
}

/// One reporting interval of the measured window. Readers of older or partial documents see
/// a missing field as 0 (`serde(default)`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Interval {
    /// Seconds from the start of the measured window.
    pub start_s: f64,
    pub end_s: f64,
    pub sent_msgs: u64,
    pub recv_msgs: u64,
    pub sent_bytes: u64,
    pub recv_bytes: u64,
    /// Replies given up on in this interval.
    pub lost: u64,
    /// Corrupted, duplicated, failed connections and I/O errors in this interval.
    pub errors: u64,
    /// Received bits per second (sent, for send-only runs).
    pub bits_per_s: f64,
    pub msgs_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// TCP on Linux: segments retransmitted in this interval, TCP_INFO's tcpi_total_retrans
    /// summed over the connections (null: UDP, or no TCP_INFO, e.g. Windows).
    pub retransmits: Option<u64>,
    /// UDP: 100 × lost / (received + lost) in this interval (iperf3's "Lost/Total"); a loss
    /// counts in the interval where it shows: a gap in the reply sequence, or the end.
    pub loss_pct: f64,
    /// UDP: RFC 3550 interarrival jitter (µs) at the end of the interval, mean over the flows
    /// that had two replies by then (0: none, or TCP).
    pub jitter_us: f64,
}

/// Counter increments of one interval (one worker's, or summed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub sent_msgs: u64,
    pub recv_msgs: u64,
    pub sent_bytes: u64,
    pub recv_bytes: u64,
    pub errors: Errors,
    /// Not counters but the current values (a gauge): the sum of the flows' jitter (ns) and
    /// the number of flows in it; [`Counts::since`] keeps them as they are.
    pub jitter_ns_sum: u64,
    pub jitter_flows: u64,
    /// TCP retransmissions (a counter), and the connections whose TCP_INFO was read (a
    /// gauge; 0: none could be, so the interval has no figure).
    pub retrans: u64,
    pub retrans_conns: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.jitter_ns_sum += o.jitter_ns_sum;
        self.jitter_flows += o.jitter_flows;
        self.retrans += o.retrans;
        self.retrans_conns += o.retrans_conns;
        self.sent_msgs += o.sent_msgs;
        self.recv_msgs += o.recv_msgs;
        self.sent_bytes += o.sent_bytes;
        self.recv_bytes += o.recv_bytes;
        self.errors.add(&o.errors);
    }

    /// `self - before`, counter by counter.
    pub fn since(&self, before: &Counts) -> Counts {
        let e = &self.errors;
        let b = &before.errors;
        Counts {
            sent_msgs: self.sent_msgs - before.sent_msgs,
            recv_msgs: self.recv_msgs - before.recv_msgs,
            sent_bytes: self.sent_bytes - before.sent_bytes,
            recv_bytes: self.recv_bytes - before.recv_bytes,
            errors: Errors {
                // Saturating: the end may take back a loss an earlier interval reported.
                lost: e.lost.saturating_sub(b.lost),
                duplicated: e.duplicated - b.duplicated,
                reordered: e.reordered - b.reordered,
                corrupted: e.corrupted - b.corrupted,
                connect: e.connect - b.connect,
                io: e.io - b.io,
            },
            jitter_ns_sum: self.jitter_ns_sum,
            jitter_flows: self.jitter_flows,
            retrans: self.retrans.saturating_sub(before.retrans),
            retrans_conns: self.retrans_conns,
        }
    }
}

struct Pending {
    counts: Counts,
    hist: Histogram<u64>,
}

/// The run so far as of the last complete interval (what a metrics endpoint shows): counters
/// summed, latency histogram merged, jitter as of that interval.
#[derive(Clone, Debug)]
pub struct Totals {
    pub sent_msgs: u64,
    pub recv_msgs: u64,
    pub sent_bytes: u64,
    pub recv_bytes: u64,
    pub errors: Errors,
    /// Round-trip latency (ns).
    pub latency: Histogram<u64>,
    /// UDP: mean jitter over the flows (ns), when known.
    pub jitter_ns: Option<f64>,
}

impl Default for Totals {
    fn default() -> Self {
        Totals {
            sent_msgs: 0,
            recv_msgs: 0,
            sent_bytes: 0,
            recv_bytes: 0,
            errors: Errors::default(),
            latency: new_histogram(),
            jitter_ns: None,
        }
    }
}

impl Totals {
    fn add(&mut self, c: &Counts, h: &Histogram<u64>) {
        self.sent_msgs += c.sent_msgs;
        self.recv_msgs += c.recv_msgs;
        self.sent_bytes += c.sent_bytes;
        self.recv_bytes += c.recv_bytes;
        self.errors.add(&c.errors);
        let _ = self.latency.add(h);
        if c.jitter_flows > 0 {
            self.jitter_ns = Some(c.jitter_ns_sum as f64 / c.jitter_flows as f64);
        }
    }
}

/// Where the workers of one run leave their finished intervals.
pub(crate) struct Book {
    pub len_ns: u64,
    /// Per worker: the index of the interval it accumulates now (`u64::MAX` once it is done).
    progress: Vec<AtomicU64>,
    pending: Mutex<PendingBook>,
}

struct PendingBook {
    map: BTreeMap<u64, Pending>,
    /// The first interval not taken yet.
    next: u64,
    /// Everything taken so far.
    taken: Totals,
}

impl Book {
    pub fn new(len_ns: u64, workers: usize) -> Book {
        Book {
            len_ns: len_ns.max(1),
            progress: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            pending: Mutex::new(PendingBook {
                map: BTreeMap::new(),
                next: 0,
                taken: Totals::default(),
            }),
        }
    }

    /// Worker `w` hands in interval `idx` and moves on to `next`.
    pub fn hand_in(&self, w: usize, idx: u64, counts: &Counts, hist: &Histogram<u64>, next: u64) {
        if *counts != Counts::default() || !hist.is_empty() {
            let mut p = self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let e = p.map.entry(idx).or_insert_with(|| Pending {
                counts: Counts::default(),
                hist: new_histogram(),
            });
            e.counts.add(counts);
            let _ = e.hist.add(hist);
        }
        self.progress[w].store(next, Ordering::Release);
    }

    /// Intervals every worker has moved past, below `limit`, in order, each once (empty ones
    /// included).
    pub fn take_complete(&self, limit: u64, sends_only: bool) -> Vec<Interval> {
        let done = self
            .progress
            .iter()
            .map(|p| p.load(Ordering::Acquire))
            .min()
            .unwrap_or(u64::MAX)
            .min(limit);
        let mut p = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = Vec::new();
        while p.next < done {
            let k = p.next;
            let v = p.map.remove(&k);
            if let Some(v) = &v {
                p.taken.add(&v.counts, &v.hist);
            }
            out.push(match v {
                Some(v) => self.summarize(k, &v.counts, &v.hist, None, sends_only),
                None => self.summarize(k, &Counts::default(), &new_histogram(), None, sends_only),
            });
            p.next += 1;
        }
        out
    }

    /// The intervals of a measured window of `measured_ns` not taken yet (call once every
    /// worker is done). Anything handed in for an interval past the window (e.g. replies
    /// declared lost after the end) is added to its last interval.
    pub fn finish(&self, measured_ns: u64, sends_only: bool) -> Vec<Interval> {
        let n = measured_ns.div_ceil(self.len_ns);
        let mut p = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut map = std::mem::take(&mut p.map);
        let mut out = Vec::new();
        if n == 0 {
            return out;
        }
        let late = map.split_off(&(n - 1));
        let mut last = Pending {
            counts: Counts::default(),
            hist: new_histogram(),
        };
        for v in late.values() {
            last.counts.add(&v.counts);
            let _ = last.hist.add(&v.hist);
        }
        map.insert(n - 1, last);
        for k in p.next..n {
            let v = map.remove(&k);
            if let Some(v) = &v {
                p.taken.add(&v.counts, &v.hist);
            }
            out.push(match v {
                Some(v) => self.summarize(k, &v.counts, &v.hist, Some(measured_ns), sends_only),
                None => self.summarize(
                    k,
                    &Counts::default(),
                    &new_histogram(),
                    Some(measured_ns),
                    sends_only,
                ),
            });
        }
        p.next = n;
        out
    }

    /// The intervals taken so far, summed.
    pub fn taken(&self) -> Totals {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .taken
            .clone()
    }

    /// Interval `idx` of counters `c` and latency `h`; the window ends at `measured_ns` when
    /// known.
    fn summarize(
        &self,
        idx: u64,
        c: &Counts,
        h: &Histogram<u64>,
        measured_ns: Option<u64>,
        sends_only: bool,
    ) -> Interval {
        let start = idx * self.len_ns;
        let end = measured_ns.map_or(start + self.len_ns, |m| (start + self.len_ns).min(m));
        let secs = (end.saturating_sub(start)) as f64 / 1e9;
        let (msgs, bytes) = if sends_only {
            (c.sent_msgs, c.sent_bytes)
        } else {
            (c.recv_msgs, c.recv_bytes)
        };
        let per_s = |v: u64| if secs > 0.0 { v as f64 / secs } else { 0.0 };
        let q = |p: f64| {
            if h.is_empty() {
                0.0
            } else {
                h.value_at_quantile(p) as f64 / 1000.0
            }
        };
        let e = &c.errors;
        Interval {
            start_s: start as f64 / 1e9,
            end_s: end as f64 / 1e9,
            sent_msgs: c.sent_msgs,
            recv_msgs: c.recv_msgs,
            sent_bytes: c.sent_bytes,
            recv_bytes: c.recv_bytes,
            lost: e.lost,
            errors: e.corrupted + e.duplicated + e.connect + e.io,
            bits_per_s: per_s(bytes) * 8.0,
            msgs_per_s: per_s(msgs),
            p50_us: q(0.50),
            p99_us: q(0.99),
            retransmits: (c.retrans_conns > 0).then_some(c.retrans),
            loss_pct: if e.lost > 0 {
                100.0 * e.lost as f64 / (c.recv_msgs + e.lost) as f64
            } else {
                0.0
            },
            jitter_us: if c.jitter_flows > 0 {
                c.jitter_ns_sum as f64 / c.jitter_flows as f64 / 1000.0
            } else {
                0.0
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Retransmissions are a counter (differences per interval), the connections read a
    /// gauge: an interval where no connection could be read has no figure, not 0.
    #[test]
    fn retransmits_per_interval() {
        let at_8 = Counts {
            retrans: 8,
            retrans_conns: 2,
            ..Counts::default()
        };
        let at_5 = Counts {
            retrans: 5,
            retrans_conns: 3,
            ..Counts::default()
        };
        let d = at_8.since(&at_5);
        assert_eq!((d.retrans, d.retrans_conns), (3, 2));
        let book = Book::new(1_000, 1);
        let h = new_histogram();
        book.hand_in(0, 0, &d, &h, 1);
        let none = Counts {
            sent_msgs: 1,
            ..Counts::default()
        };
        book.hand_in(0, 1, &none, &h, 2);
        let ivs = book.take_complete(u64::MAX, false);
        assert_eq!(ivs[0].retransmits, Some(3));
        assert_eq!(ivs[1].retransmits, None);
        // How the line shows them (a count, or – for none): results/report.rs's
        // interval_line_shows_retransmits_or_a_dash.
    }
}
