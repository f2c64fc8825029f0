//! The single-flow UDP ping-pong's bounded spin (`--spin`): after each send the client polls a
//! non-blocking receive for a short budget before it blocks, so a reply that comes back within
//! the budget is taken without the client's own wake-up (on this project's 2-core VM an idle
//! vCPU's wake-up is most of a ~48 µs loopback round trip; spinning, ~18 µs). The client's
//! wake-up is not part of the network; latency tools poll before sleeping for that reason
//! (VMA, onload, sfnt-pingpong; sockperf with `--nonblocked`).
//!
//! The spin is bounded twice: by its budget per round, and by a back-off when it keeps missing
//! (a network whose round trip is longer than the budget, or a machine too busy to answer
//! within it), so such a run does not burn a core for nothing.
//!
//! A spin that catches is not always the faster choice: on loopback with a busy machine the
//! scheduler runs the server on the client's own CPU as soon as the client blocks (a context
//! switch, ~11 µs a round trip on the 2-core VM, where a spinning client keeps that CPU and
//! the reply waits for the other one: ~18 µs). So the gate also compares: at the start and
//! every [`TRIAL_EVERY`] rounds it times [`TRIAL_SAMPLES`] round trips spinning, then as many
//! blocking (each after [`TRIAL_SETTLE`] rounds not timed, while the scheduler settles into
//! the new pattern), and keeps the mode whose median is lower until the next trial.

/// Consecutive missed spins that switch the spin off. One miss proves nothing (a reply may
/// lose a race with an interrupt or a context switch); eight in a row, each a whole budget
/// long, are a round trip that does not fit the budget.
pub(crate) const MISS_LIMIT: u32 = 8;

/// Rounds without a spin after a back-off, before one round probes again (a probe that misses
/// backs off again at once; one that catches turns the spin back on). At most one spin of
/// every 257 rounds then misses: with a 1 ms round trip and the 50 µs default, 50 µs of spin
/// per 257 ms, under 0.02 % of a core; a network that gets faster is noticed within 257 rounds.
pub(crate) const SKIP_ROUNDS: u32 = 256;

/// Rounds between two trials of spinning against blocking: at ~11-50 µs a round on
/// loopback a trial every 0.2-0.8 s, so a change of load is followed; the trial's rounds in
/// the losing mode are about 2 % of all (at the tail, not the median).
pub(crate) const TRIAL_EVERY: u32 = 16384;

/// Round trips timed in each mode of a trial.
pub(crate) const TRIAL_SAMPLES: usize = 64;

/// Rounds of each mode of a trial before the timed ones: the scheduler takes a while to
/// move the server next to a client that now blocks (with 8 the blocking half still saw it
/// on the other CPU, and spinning won a run where blocking was faster, 17.7 vs 13.7 µs).
pub(crate) const TRIAL_SETTLE: u32 = 256;

/// The most rounds one half of a trial may take (replies lost on the way lengthen it).
const TRIAL_MAX_ROUNDS: u32 = TRIAL_SETTLE + 4 * TRIAL_SAMPLES as u32;

/// What the spin did over the measured window (rounds whose request was sent in it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpinCounts {
    /// The budget per round actually used, in ns (0: blocking at once).
    pub budget_ns: u64,
    /// False where the OS has no non-blocking receive flag here (not Linux): the ping-pong
    /// blocked at once whatever `--spin` said.
    pub available: bool,
    /// Replies taken while spinning.
    pub caught: u64,
    /// Replies taken by the blocking receive (the spin missed, was backed off, or is off).
    pub blocked: u64,
    /// Rounds that spun (caught or not).
    pub spun: u64,
    /// Times [`MISS_LIMIT`] misses in a row (or a missed probe) switched the spin off for
    /// [`SKIP_ROUNDS`] rounds.
    pub backoffs: u64,
    /// Trials of spinning against blocking completed, and how many blocking won (its rounds
    /// block at once until the next trial).
    pub trials: u64,
    pub blocking_won: u64,
}

impl SpinCounts {
    pub(crate) fn add(&mut self, o: &SpinCounts) {
        self.budget_ns = self.budget_ns.max(o.budget_ns);
        self.available |= o.available;
        self.caught += o.caught;
        self.blocked += o.blocked;
        self.spun += o.spun;
        self.backoffs += o.backoffs;
        self.trials += o.trials;
        self.blocking_won += o.blocking_won;
    }
}

/// Where the gate is in its cycle of trials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Spinning (or blocking, when the last trial said so); `since`: rounds since the last
    /// trial ended.
    Steady {
        since: u32,
    },
    /// A trial's spinning half, then its blocking half; `rounds`: this half's rounds so far
    /// (answered or not).
    TrialSpin {
        rounds: u32,
    },
    TrialBlock {
        rounds: u32,
    },
}

/// How a trial ended (for the counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Spin,
    Block,
}

/// Decides, round by round, whether to spin: the back-off and the trials of the module's
/// description. No allocation; a few comparisons a round, a median of 64 per trial.
#[derive(Clone, Debug)]
pub(crate) struct SpinGate {
    budget_ns: u64,
    /// Consecutive misses (stays at the limit through a back-off, so a missed probe backs
    /// off again).
    misses: u32,
    /// Rounds still to skip.
    skip: u32,
    phase: Phase,
    /// The last trial found blocking faster: steady rounds block at once.
    block: bool,
    spin_rtt: [u64; TRIAL_SAMPLES],
    block_rtt: [u64; TRIAL_SAMPLES],
    /// Samples taken in the current half of a trial.
    taken: usize,
}

impl SpinGate {
    pub(crate) fn new(budget_ns: u64) -> SpinGate {
        SpinGate {
            budget_ns,
            misses: 0,
            skip: 0,
            // The first trial at once: the warm-up settles the choice.
            phase: Phase::Steady { since: TRIAL_EVERY },
            block: false,
            spin_rtt: [0; TRIAL_SAMPLES],
            block_rtt: [0; TRIAL_SAMPLES],
            taken: 0,
        }
    }

    /// This round's spin budget in ns; None: block at once (no budget, backed off, or the
    /// last trial found blocking faster).
    #[inline]
    pub(crate) fn round(&mut self) -> Option<u64> {
        if self.budget_ns == 0 {
            return None;
        }
        if self.skip > 0 {
            // Missing: no trial either (spinning does not even catch).
            self.skip -= 1;
            return None;
        }
        match &mut self.phase {
            Phase::Steady { since } if *since >= TRIAL_EVERY => {
                self.phase = Phase::TrialSpin { rounds: 1 };
                self.taken = 0;
                Some(self.budget_ns)
            }
            Phase::Steady { since } => {
                *since += 1;
                (!self.block).then_some(self.budget_ns)
            }
            Phase::TrialSpin { rounds } | Phase::TrialBlock { rounds }
                if *rounds >= TRIAL_MAX_ROUNDS =>
            {
                // Replies lost on the way only lengthen a half; bounded all the same (no
                // verdict: the last one stands).
                self.phase = Phase::Steady { since: 0 };
                (!self.block).then_some(self.budget_ns)
            }
            Phase::TrialSpin { rounds } => {
                *rounds += 1;
                Some(self.budget_ns)
            }
            Phase::TrialBlock { rounds } => {
                *rounds += 1;
                None
            }
        }
    }

    /// The spin of this round took the reply.
    #[inline]
    pub(crate) fn caught(&mut self) {
        self.misses = 0;
    }

    /// The spin of this round ended without the reply; true when that switched it off (a
    /// trial under way ends without a verdict).
    #[inline]
    pub(crate) fn missed(&mut self) -> bool {
        self.misses = (self.misses + 1).min(MISS_LIMIT);
        if self.misses >= MISS_LIMIT {
            self.skip = SKIP_ROUNDS;
            if !matches!(self.phase, Phase::Steady { .. }) {
                self.phase = Phase::Steady { since: 0 };
            }
            true
        } else {
            false
        }
    }

    /// This round's reply came `rtt_ns` after its request (rounds without a reply give
    /// none). Some: a trial ended with this verdict.
    #[inline]
    pub(crate) fn answered(&mut self, rtt_ns: u64) -> Option<Verdict> {
        let (rounds, spinning) = match self.phase {
            Phase::Steady { .. } => return None,
            Phase::TrialSpin { rounds } => (rounds, true),
            Phase::TrialBlock { rounds } => (rounds, false),
        };
        if rounds > TRIAL_SETTLE {
            let v = if spinning {
                &mut self.spin_rtt
            } else {
                &mut self.block_rtt
            };
            v[self.taken] = rtt_ns;
            self.taken += 1;
        }
        if self.taken < TRIAL_SAMPLES {
            return None;
        }
        self.taken = 0;
        if spinning {
            self.phase = Phase::TrialBlock { rounds: 0 };
            return None;
        }
        self.phase = Phase::Steady { since: 0 };
        self.block = median(&mut self.block_rtt) < median(&mut self.spin_rtt);
        Some(if self.block {
            Verdict::Block
        } else {
            Verdict::Spin
        })
    }
}

fn median(v: &mut [u64; TRIAL_SAMPLES]) -> u64 {
    *v.select_nth_unstable(TRIAL_SAMPLES / 2).1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a gate through `rounds` rounds whose spins catch when `catch(round)` says so;
    /// returns (spun, backoffs).
    fn drive(rounds: u64, catch: impl Fn(u64) -> bool) -> (u64, u64) {
        let mut g = SpinGate::new(50_000);
        let (mut spun, mut backoffs) = (0, 0);
        for r in 0..rounds {
            if g.round().is_some() {
                spun += 1;
                if catch(r) {
                    g.caught();
                } else if g.missed() {
                    backoffs += 1;
                }
            }
        }
        (spun, backoffs)
    }

    #[test]
    fn always_missing_spins_once_per_skip_window() {
        // 8 misses (rounds 0-7), then a probe at rounds 7 + 257 m: 8 + (10_000 - 8) / 257.
        let (spun, backoffs) = drive(10_000, |_| false);
        assert_eq!(spun, 8 + (10_000 - 8) / 257);
        assert_eq!(spun, 46);
        assert_eq!(backoffs, spun - 7);
    }

    #[test]
    fn catching_spins_every_round() {
        assert_eq!(drive(10_000, |_| true), (10_000, 0));
        // Half of them caught: never eight misses in a row.
        assert_eq!(drive(10_000, |r| r % 2 == 0), (10_000, 0));
    }

    #[test]
    fn a_caught_probe_turns_the_spin_back_on() {
        // Missing for the first 1000 rounds, then catching: back on at the first probe after.
        let (spun, _) = drive(2_000, |r| r >= 1_000);
        let probes_before = (1_000 - 8) / 257;
        let first_probe_after = 7 + (probes_before + 1) * 257;
        assert_eq!(spun, 8 + probes_before + (2_000 - first_probe_after));
    }

    /// Rounds whose round trip is `spin_ns` when they spin and `block_ns` when they block
    /// (every spin catches); returns (spun, trials, blocking won).
    fn drive_rtt(rounds: u64, spin_ns: impl Fn(u64) -> u64, block_ns: u64) -> (u64, u64, u64) {
        let mut g = SpinGate::new(50_000);
        let (mut spun, mut trials, mut won) = (0, 0, 0);
        for r in 0..rounds {
            let rtt = if g.round().is_some() {
                spun += 1;
                g.caught();
                spin_ns(r)
            } else {
                block_ns
            };
            match g.answered(rtt) {
                Some(Verdict::Block) => (trials, won) = (trials + 1, won + 1),
                Some(Verdict::Spin) => trials += 1,
                None => {}
            }
        }
        (spun, trials, won)
    }

    /// One trial is 2 × (256 + 64) rounds: half of them spin.
    const TRIAL_ROUNDS: u64 = 2 * (TRIAL_SETTLE as u64 + TRIAL_SAMPLES as u64);

    #[test]
    fn spinning_stays_when_it_is_faster() {
        // Quiet machine: 18 µs spinning, 48 µs blocking. All but the trials' blocking halves.
        let n = 100_000;
        let (spun, trials, won) = drive_rtt(n, |_| 18_000, 48_000);
        let cycle = TRIAL_EVERY as u64 + TRIAL_ROUNDS;
        assert_eq!((won, trials), (0, n.div_ceil(cycle)));
        assert_eq!(spun, n - trials * TRIAL_ROUNDS / 2);
    }

    #[test]
    fn blocking_is_chosen_when_it_is_faster() {
        // Busy machine, loopback: the server runs on the client's CPU once it blocks: 11 µs
        // blocking, 18 µs spinning. Only the trials' spinning halves spin.
        let n = 100_000;
        let (spun, trials, won) = drive_rtt(n, |_| 18_000, 11_000);
        assert!(
            trials >= n / (TRIAL_EVERY as u64 + TRIAL_ROUNDS),
            "{trials}"
        );
        assert_eq!(won, trials);
        assert_eq!(spun, trials * TRIAL_ROUNDS / 2);
        assert!(spun * 50 < n, "{spun} of {n} rounds spun");
    }

    #[test]
    fn a_later_trial_follows_a_change() {
        // Spinning is slower for the first 20 000 rounds, faster after: the first trial after
        // the change turns the spin back on for good.
        let n = 60_000;
        let (spun, trials, won) = drive_rtt(n, |r| if r < 20_000 { 18_000 } else { 9_000 }, 11_000);
        let cycle = TRIAL_EVERY as u64 + TRIAL_ROUNDS;
        assert_eq!(won, 20_000_u64.div_ceil(cycle), "{trials} trials");
        assert!(spun > n - 20_000 - cycle, "{spun}");
    }

    #[test]
    fn zero_budget_never_spins() {
        let mut g = SpinGate::new(0);
        assert!((0..1_000).all(|_| g.round().is_none()));
    }
}
