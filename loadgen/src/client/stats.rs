//! Per-thread counters, the latency histogram and UDP sequence bookkeeping.

use std::sync::Arc;

use hdrhistogram::Histogram;

use super::intervals::{new_histogram, Book, Counts, Errors};
use super::spin::SpinCounts;
use super::sysinfo::{thread_cpu, TcpInfoSum, ThreadCpu};

/// RFC 3550 interarrival jitter of one flow (section 6.4.1, computed as in appendix A.8 and
/// as iperf3 does, in floating point): for consecutive arrivals i-1, i with transit times
/// `transit = arrival - send time`, `D = transit(i) - transit(i-1)` and
/// `J += (|D| - J) / 16`. Here the transit is a reply's round trip: arrival minus the send
/// time the message carries (the intended one in rate mode), so both clocks are ours.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Jitter {
    last_transit_ns: Option<i64>,
    estimate_ns: f64,
    samples: u64,
}

impl Jitter {
    /// One arrival whose transit time was `transit_ns`.
    #[inline]
    pub fn on_arrival(&mut self, transit_ns: i64) {
        if let Some(last) = self.last_transit_ns {
            let d = (transit_ns - last).unsigned_abs() as f64;
            self.estimate_ns += (d - self.estimate_ns) / 16.0;
        }
        self.last_transit_ns = Some(transit_ns);
        self.samples += 1;
    }

    /// The estimate in ns, once two arrivals gave a difference.
    pub fn ns(&self) -> Option<f64> {
        (self.samples >= 2).then_some(self.estimate_ns)
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
    /// UDP: the jitter of each flow (indexed by the worker's flow slot; merged: all flows).
    pub jitter: Vec<Jitter>,
    /// Paced runs (wrk2's habits): round trips from the *actual* send time (the latency
    /// `hist` counts from the intended one), and each measured message's send lag (actual -
    /// intended send time).
    pub uncorrected: Histogram<u64>,
    pub send_lag: Histogram<u64>,
    /// TCP on Linux: retransmissions of this worker's connections so far (each connection's
    /// increase since its last reading, so a closed one does not take its share back), and
    /// how many connections were read the last time.
    pub(crate) tcp_retrans: u64,
    pub(crate) tcp_retrans_conns: u64,
    /// The single-flow UDP ping-pong (or source) that waits for each reply itself: what its
    /// bounded spin did (None: another path ran, or `--busy-poll`).
    pub spin: Option<SpinCounts>,
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
    /// The measured window has begun (the first boundary at or after the warm-up passed).
    started: bool,
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
            jitter: Vec::new(),
            uncorrected: new_histogram(),
            send_lag: new_histogram(),
            tcp_retrans: 0,
            tcp_retrans_conns: 0,
            spin: None,
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
                started: false,
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
            jitter_ns_sum: self
                .jitter
                .iter()
                .filter_map(Jitter::ns)
                .sum::<f64>()
                .round() as u64,
            jitter_flows: self.jitter.iter().filter(|j| j.ns().is_some()).count() as u64,
            retrans: self.tcp_retrans,
            retrans_conns: self.tcp_retrans_conns,
        }
    }

    /// Whether the next [`Self::tick`] at `now` hands an interval in (or starts the measured
    /// window): the moment to refresh figures read from the sockets.
    #[inline]
    pub(crate) fn boundary_due(&self, now: u64) -> bool {
        self.iv.as_ref().is_some_and(|iv| now >= iv.next_ns)
    }

    /// Mean jitter (ns) over the flows that had two arrivals (None: no such flow).
    pub fn mean_jitter_ns(&self) -> Option<f64> {
        let v: Vec<f64> = self.jitter.iter().filter_map(Jitter::ns).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    /// Takes back one loss counted in the interval not handed in yet (a reply that arrived
    /// after a later one had shown it missing). False when this interval counted none: the
    /// loss was reported with an earlier interval and stays there until the end settles it.
    pub(crate) fn unlose(&mut self) -> bool {
        let handed = self.iv.as_ref().map_or(0, |iv| iv.handed.errors.lost);
        if self.errors.lost > handed {
            self.errors.lost -= 1;
            true
        } else {
            false
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
        if !iv.started {
            iv.started = true;
            // What was retransmitted before the measured window is not the measurement's.
            iv.handed.retrans = self.tcp_retrans;
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
        self.jitter.extend(o.jitter.iter().copied());
        self.uncorrected
            .add(&o.uncorrected)
            .expect("histograms share bounds");
        self.send_lag
            .add(&o.send_lag)
            .expect("histograms share bounds");
        if let Some(b) = &o.spin {
            self.spin.get_or_insert_with(SpinCounts::default).add(b);
        }
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

    /// RFC 3550 A.8 by hand: transits 100, 120, 90, 90, 150 µs give |D| = 20, 30, 0, 60 µs;
    /// J1 = 20/16 = 1.25; J2 = 1.25 + (30 - 1.25)/16 = 3.046875;
    /// J3 = 3.046875 - 3.046875/16 = 2.856445...; J4 = J3 + (60 - J3)/16 = 6.427917...
    #[test]
    fn jitter_follows_rfc3550() {
        let mut j = Jitter::default();
        assert_eq!(j.ns(), None);
        j.on_arrival(100_000);
        assert_eq!(j.ns(), None, "one arrival gives no difference yet");
        let expect = [1_250.0, 3_046.875, 2_856.445_312_5, 6_427.917_480_468_75];
        for (t, want) in [120_000i64, 90_000, 90_000, 150_000].iter().zip(expect) {
            j.on_arrival(*t);
            let got = j.ns().unwrap();
            assert!(
                (got - want).abs() < 0.01,
                "after transit {t}: {got} != {want}"
            );
        }
        // A constant delay, however large, is no jitter: the estimate decays toward 0.
        let mut k = Jitter::default();
        for _ in 0..10 {
            k.on_arrival(5_000_000);
        }
        assert_eq!(k.ns(), Some(0.0));
    }

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
