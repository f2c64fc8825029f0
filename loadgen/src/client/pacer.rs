//! The send schedule of one paced connection or flow (`--rate`): message `n` is due at
//! `phase + n * interval`. The TCP and UDP workers both pace with it, so a rate means the same
//! thing on either protocol and the intended send time a message carries (the time its
//! latency is measured from, wrk2-style) is computed in one place.

/// One connection's (or flow's) schedule. The arithmetic is in `f64` nanoseconds, truncated to
/// whole nanoseconds only where a time is handed out, so a fractional interval (3 messages per
/// microsecond on one connection) does not drift.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Pacer {
    interval_ns: f64,
    /// Where this connection's schedule starts within the first interval.
    phase_ns: f64,
}

impl Pacer {
    /// Connection `flow` of `conns`, each sending every `interval_ns`: the connections' phases
    /// are spread evenly over one interval, so together they send at a steady rate instead of
    /// in bursts of `conns` messages.
    pub fn new(interval_ns: f64, flow: u32, conns: usize) -> Pacer {
        Pacer {
            interval_ns,
            phase_ns: interval_ns * f64::from(flow) / conns as f64,
        }
    }

    /// When message `seq` is due: the intended send time it carries.
    #[inline]
    pub fn due_at(&self, seq: u64) -> u64 {
        (self.phase_ns + seq as f64 * self.interval_ns) as u64
    }

    /// How many messages are due by `now` beyond the `sent` ones already generated. When none
    /// is, `wake` is lowered to the time the next one is due (the worker sleeps until then).
    #[inline]
    pub fn quota(&self, now: u64, sent: u64, wake: &mut u64) -> u64 {
        let due = ((now as f64 - self.phase_ns) / self.interval_ns).floor() as i64 + 1;
        let q = (due.max(0) as u64).saturating_sub(sent);
        if q == 0 {
            *wake = (*wake).min(self.due_at(sent));
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_spread_the_connections_over_one_interval() {
        let p: Vec<u64> = (0..4).map(|f| Pacer::new(1000.0, f, 4).due_at(0)).collect();
        assert_eq!(p, [0, 250, 500, 750]);
        assert_eq!(Pacer::new(1000.0, 1, 4).due_at(3), 3250);
    }

    #[test]
    fn quota_counts_the_messages_due_and_not_yet_sent() {
        let p = Pacer::new(1000.0, 1, 4); // due at 250, 1250, 2250, ...
        let mut wake = u64::MAX;
        // Before the first is due: nothing, and wake at 250.
        assert_eq!(p.quota(249, 0, &mut wake), 0);
        assert_eq!(wake, 250);
        // At its due time exactly: one.
        let mut wake = u64::MAX;
        assert_eq!(p.quota(250, 0, &mut wake), 1);
        assert_eq!(wake, u64::MAX, "a due message leaves wake alone");
        // Late: every missed message is due at once (no skipping, as wrk2 does).
        assert_eq!(p.quota(3300, 0, &mut wake), 4);
        assert_eq!(p.quota(3300, 3, &mut wake), 1);
        // Ahead of the schedule: nothing, wake at the next one's time; an earlier wake stays.
        assert_eq!(p.quota(3300, 4, &mut wake), 0);
        assert_eq!(wake, 4250);
        let mut wake = 100;
        assert_eq!(p.quota(3300, 4, &mut wake), 0);
        assert_eq!(wake, 100);
        // More sent than due (never happens, but must not underflow).
        assert_eq!(p.quota(0, 9, &mut wake), 0);
    }

    #[test]
    fn a_fractional_interval_does_not_drift() {
        // 3 messages per microsecond on one connection: 333.33… ns apart.
        let p = Pacer::new(1000.0 / 3.0, 0, 1);
        assert_eq!(p.due_at(3_000_000), 1_000_000_000);
        let mut wake = u64::MAX;
        assert_eq!(p.quota(1_000_000_000, 0, &mut wake), 3_000_001);
    }
}
