//! Per-thread counters, the latency histogram and UDP sequence bookkeeping.

use hdrhistogram::Histogram;

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
    pub hist: Histogram<u64>,
    /// Counted inside the measurement window (after warm-up, before the end).
    pub sent_msgs: u64,
    pub sent_bytes: u64,
    pub recv_msgs: u64,
    pub recv_bytes: u64,
    pub errors: Errors,
    /// First few error descriptions, for the human report.
    pub messages: Vec<String>,
}

const MAX_MESSAGES: usize = 8;

impl Default for Stats {
    fn default() -> Self {
        Stats {
            hist: new_histogram(),
            sent_msgs: 0,
            sent_bytes: 0,
            recv_msgs: 0,
            recv_bytes: 0,
            errors: Errors::default(),
            messages: Vec::new(),
        }
    }
}

impl Stats {
    pub fn note(&mut self, msg: String) {
        if self.messages.len() < MAX_MESSAGES && !self.messages.contains(&msg) {
            self.messages.push(msg);
        }
    }

    pub fn merge(&mut self, o: &Stats) {
        self.hist.add(&o.hist).expect("histograms share bounds");
        self.sent_msgs += o.sent_msgs;
        self.sent_bytes += o.sent_bytes;
        self.recv_msgs += o.recv_msgs;
        self.recv_bytes += o.recv_bytes;
        self.errors.add(&o.errors);
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
