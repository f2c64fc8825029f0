//! Per-thread counters, the latency histogram and UDP sequence bookkeeping.

use std::sync::Arc;

use hdrhistogram::Histogram;

use super::intervals::{Book, Counts};
use super::sysinfo::{thread_cpu, TcpInfoSum, ThreadCpu};

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

/// What one worker thread measured.
pub struct Stats {
    /// Latency of the whole run (the current interval's samples join it at each boundary).
    pub hist: Histogram<u64>,
    /// Latency samples of the current interval.
    recent: Histogram<u64>,
    iv: Option<IntervalState>,
    /// Counted inside the measurement window (after warm-up, before the end).
    pub sent_msgs: u64,
    pub sent_bytes: u64,
    pub recv_msgs: u64,
    pub recv_bytes: u64,
    pub errors: Errors,
    /// First few error descriptions, for the human report.
    pub messages: Vec<String>,
    /// CPU time of each worker thread over the measured window and the drain (where known).
    pub cpu: Vec<ThreadCpu>,
    /// CPU time of this thread at the start of the measured window.
    cpu_at_start: Option<ThreadCpu>,
    /// TCP_INFO of the connections (Linux, TCP runs).
    pub tcp_info: TcpInfoSum,
    /// TCP: connections established and served (open at the end, or echoed before closing).
    pub conns_served: u64,
}

/// A worker's place in the interval book.
struct IntervalState {
    book: Arc<Book>,
    worker: usize,
    /// Index of the interval being accumulated.
    cur: u64,
    /// Clock time of the next boundary check.
    next_ns: u64,
    /// Totals already handed in.
    handed: Counts,
}

const MAX_MESSAGES: usize = 8;

impl Default for Stats {
    fn default() -> Self {
        Stats {
            hist: new_histogram(),
            recent: new_histogram(),
            iv: None,
            sent_msgs: 0,
            sent_bytes: 0,
            recv_msgs: 0,
            recv_bytes: 0,
            errors: Errors::default(),
            messages: Vec::new(),
            cpu: Vec::new(),
            cpu_at_start: None,
            tcp_info: TcpInfoSum::default(),
            conns_served: 0,
        }
    }
}

impl Stats {
    /// A worker's stats, handing its intervals to `book` as worker number `worker`.
    pub(crate) fn for_worker(book: Arc<Book>, worker: usize) -> Stats {
        Stats {
            iv: Some(IntervalState {
                book,
                worker,
                cur: 0,
                next_ns: 0,
                handed: Counts::default(),
            }),
            ..Stats::default()
        }
    }

    /// Records one latency sample (ns).
    #[inline]
    pub fn record_latency(&mut self, ns: u64) {
        self.recent.saturating_record(ns.max(1));
    }

    fn totals(&self) -> Counts {
        Counts {
            sent_msgs: self.sent_msgs,
            recv_msgs: self.recv_msgs,
            sent_bytes: self.sent_bytes,
            recv_bytes: self.recv_bytes,
            errors: self.errors,
        }
    }

    /// At clock time `now` (measured window `[warm_end_ns, end_ns)`): when an interval boundary
    /// has passed, hands the finished interval in. Cheap when none has.
    #[inline]
    pub(crate) fn tick(&mut self, now: u64, warm_end_ns: u64, end_ns: u64) {
        match &self.iv {
            Some(iv) if now >= iv.next_ns => self.cross(now, warm_end_ns, end_ns),
            _ => {}
        }
    }

    fn cross(&mut self, now: u64, warm_end_ns: u64, end_ns: u64) {
        let totals = self.totals();
        let Some(iv) = self.iv.as_mut() else { return };
        let len = iv.book.len_ns;
        if now < warm_end_ns {
            iv.next_ns = warm_end_ns;
            return;
        }
        if self.cpu_at_start.is_none() {
            self.cpu_at_start = thread_cpu();
        }
        // Never past the window's last interval (what comes after the end belongs to it).
        let last = end_ns.saturating_sub(warm_end_ns).saturating_sub(1) / len;
        let idx = ((now - warm_end_ns) / len).min(last);
        if idx != iv.cur {
            let counts = totals.since(&iv.handed);
            iv.book
                .hand_in(iv.worker, iv.cur, &counts, &self.recent, idx);
            iv.handed = totals;
            iv.cur = idx;
            let _ = self.hist.add(&self.recent);
            self.recent.reset();
        }
        iv.next_ns = if idx == last {
            u64::MAX
        } else {
            warm_end_ns + (idx + 1) * len
        };
    }

    /// Hands in the current interval (the worker is done) and folds every latency sample into
    /// the run's histogram.
    pub(crate) fn close(&mut self) {
        let totals = self.totals();
        if let Some(iv) = self.iv.take() {
            let counts = totals.since(&iv.handed);
            iv.book
                .hand_in(iv.worker, iv.cur, &counts, &self.recent, u64::MAX);
        }
        let _ = self.hist.add(&self.recent);
        self.recent.reset();
        if let (Some(a), Some(b)) = (self.cpu_at_start, thread_cpu()) {
            self.cpu.push(ThreadCpu {
                user_s: (b.user_s - a.user_s).max(0.0),
                system_s: (b.system_s - a.system_s).max(0.0),
            });
        }
    }

    pub fn note(&mut self, msg: String) {
        if self.messages.len() < MAX_MESSAGES && !self.messages.contains(&msg) {
            self.messages.push(msg);
        }
    }

    pub fn merge(&mut self, o: &Stats) {
        self.hist.add(&o.hist).expect("histograms share bounds");
        self.hist.add(&o.recent).expect("histograms share bounds");
        self.sent_msgs += o.sent_msgs;
        self.sent_bytes += o.sent_bytes;
        self.recv_msgs += o.recv_msgs;
        self.recv_bytes += o.recv_bytes;
        self.errors.add(&o.errors);
        self.cpu.extend(o.cpu.iter().copied());
        self.tcp_info.add(&o.tcp_info);
        self.conns_served += o.conns_served;
        for m in &o.messages {
            self.note(m.clone());
        }
    }
}

/// What a received sequence number turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqEvent {
    /// First arrival, in order (or after a gap).
    New,
    /// First arrival, but a later sequence arrived before it.
    Reordered,
    /// Already seen.
    Duplicate,
}

/// Tracks which sequence numbers of one UDP flow arrived, with a sliding bitmap window.
/// Loss is not decided here: it is `sent - unique` once the run has drained.
pub struct SeqTracker {
    highest: Option<u64>,
    /// Bit i of word w marks sequence `base + 64*w + i`, ring-indexed by sequence.
    bits: Vec<u64>,
    pub unique: u64,
}

const WINDOW_WORDS: usize = 64; // 4096 sequences

impl Default for SeqTracker {
    fn default() -> Self {
        SeqTracker {
            highest: None,
            bits: vec![0; WINDOW_WORDS],
            unique: 0,
        }
    }
}

impl SeqTracker {
    fn slot(seq: u64) -> (usize, u64) {
        (((seq / 64) as usize) % WINDOW_WORDS, 1u64 << (seq % 64))
    }

    fn window() -> u64 {
        (WINDOW_WORDS as u64) * 64
    }

    pub fn on_recv(&mut self, seq: u64) -> SeqEvent {
        match self.highest {
            Some(h) if seq <= h => {
                if h - seq >= Self::window() - 64 {
                    // Too old to remember: assume a late first arrival.
                    self.unique += 1;
                    return SeqEvent::Reordered;
                }
                let (w, b) = Self::slot(seq);
                if self.bits[w] & b != 0 {
                    SeqEvent::Duplicate
                } else {
                    self.bits[w] |= b;
                    self.unique += 1;
                    SeqEvent::Reordered
                }
            }
            prev => {
                // Clear the words the window slides over, so stale bits never alias.
                let from = prev.map_or(0, |h| h / 64 + 1);
                let to = seq / 64;
                if to >= from {
                    let n = (to - from + 1).min(WINDOW_WORDS as u64);
                    for i in 0..n {
                        self.bits[((to - i) as usize) % WINDOW_WORDS] = 0;
                    }
                }
                let (w, b) = Self::slot(seq);
                self.bits[w] |= b;
                self.highest = Some(seq);
                self.unique += 1;
                SeqEvent::New
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_classifies() {
        let mut t = SeqTracker::default();
        assert_eq!(t.on_recv(0), SeqEvent::New);
        assert_eq!(t.on_recv(2), SeqEvent::New);
        assert_eq!(t.on_recv(1), SeqEvent::Reordered);
        assert_eq!(t.on_recv(1), SeqEvent::Duplicate);
        assert_eq!(t.on_recv(2), SeqEvent::Duplicate);
        assert_eq!(t.on_recv(10_000), SeqEvent::New);
        assert_eq!(t.on_recv(9_999), SeqEvent::Reordered);
        assert_eq!(t.on_recv(9_999), SeqEvent::Duplicate);
        assert_eq!(t.unique, 5);
        for s in 10_001..20_000 {
            assert_eq!(t.on_recv(s), SeqEvent::New);
        }
        assert_eq!(t.on_recv(19_990), SeqEvent::Duplicate);
    }
}
