//! The single-flow UDP ping-pong's bounded spin (`--spin`): after each send the client polls a
//! non-blocking receive for a short budget before it blocks, so a reply that comes back within
//! the budget is taken without the client's own wake-up (on this project's 2-core VM an idle
//! vCPU's wake-up is most of a ~48 µs loopback round trip; spinning, ~18 µs). The client's
//! wake-up is not part of the network; latency tools poll before sleeping for that reason
//! (VMA, onload, sfnt-pingpong; sockperf with `--nonblocked -F recvfrom`).
//!
//! The spin is bounded twice: by its budget per round, and by a back-off when it keeps missing
//! (a network whose round trip is longer than the budget, or a machine too busy to answer
//! within it), so such a run does not burn a core for nothing.

/// Consecutive missed spins that switch the spin off. One miss proves nothing (a reply may
/// lose a race with an interrupt or a context switch); eight in a row, each a whole budget
/// long, are a round trip that does not fit the budget.
pub(crate) const MISS_LIMIT: u32 = 8;

/// Rounds without a spin after a back-off, before one round probes again (a probe that misses
/// backs off again at once; one that catches turns the spin back on). At most one spin of
/// every 257 rounds then misses: with a 1 ms round trip and the 50 µs default, 50 µs of spin
/// per 257 ms, under 0.02 % of a core; a network that gets faster is noticed within 257 rounds.
pub(crate) const SKIP_ROUNDS: u32 = 256;

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
}

impl SpinCounts {
    pub(crate) fn add(&mut self, o: &SpinCounts) {
        self.budget_ns = self.budget_ns.max(o.budget_ns);
        self.available |= o.available;
        self.caught += o.caught;
        self.blocked += o.blocked;
        self.spun += o.spun;
        self.backoffs += o.backoffs;
    }
}

/// Decides, round by round, whether to spin: the back-off of the module's description.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SpinGate {
    budget_ns: u64,
    /// Consecutive misses (stays at the limit through a back-off, so a missed probe backs
    /// off again).
    misses: u32,
    /// Rounds still to skip.
    skip: u32,
}

impl SpinGate {
    pub(crate) fn new(budget_ns: u64) -> SpinGate {
        SpinGate {
            budget_ns,
            misses: 0,
            skip: 0,
        }
    }

    /// This round's spin budget in ns; None: block at once (no budget, or backed off).
    #[inline]
    pub(crate) fn round(&mut self) -> Option<u64> {
        if self.budget_ns == 0 {
            return None;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return None;
        }
        Some(self.budget_ns)
    }

    /// The spin of this round took the reply.
    #[inline]
    pub(crate) fn caught(&mut self) {
        self.misses = 0;
    }

    /// The spin of this round ended without the reply; true when that switched it off.
    #[inline]
    pub(crate) fn missed(&mut self) -> bool {
        self.misses = (self.misses + 1).min(MISS_LIMIT);
        if self.misses >= MISS_LIMIT {
            self.skip = SKIP_ROUNDS;
            true
        } else {
            false
        }
    }
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

    #[test]
    fn zero_budget_never_spins() {
        let mut g = SpinGate::new(0);
        assert!((0..1_000).all(|_| g.round().is_none()));
    }
}
