//! Live progress on stderr while a run goes on (only when stderr is a terminal): the current
//! rates over the last second of the measured window, never an average that includes the
//! warm-up. In session/ as one of the run's live watchers.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::time::Duration;

use crate::client::LiveCounts;
use crate::results::report::human;

/// The span the shown rates are measured over.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// Live progress bar on stderr.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    rates: RateWindow,
}

impl Progress {
    /// A bar when `wanted` and stderr is a terminal; `warmup` and `total` (warm-up included)
    /// come from the run's configuration.
    pub fn new(wanted: bool, warmup: Duration, total: Duration) -> Self {
        let bar = (wanted && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(total.as_millis() as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {elapsed_precise} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        Progress {
            bar,
            rates: RateWindow::new(warmup),
        }
    }
    pub fn active(&self) -> bool {
        self.bar.is_some()
    }
    pub fn tick(&mut self, live: LiveCounts, elapsed: Duration) {
        let msg = self.rates.message(live, elapsed);
        if let Some(b) = &self.bar {
            b.set_position(elapsed.as_millis() as u64);
            b.set_message(msg);
        }
    }
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Samples of the live counters over the last [`RATE_WINDOW`] of the measured window.
pub struct RateWindow {
    warmup: Duration,
    samples: VecDeque<(Duration, LiveCounts)>,
}

impl RateWindow {
    pub fn new(warmup: Duration) -> Self {
        RateWindow {
            warmup,
            samples: VecDeque::new(),
        }
    }

    /// The progress text at `elapsed` (warm-up included) with the live counters `live`.
    pub fn message(&mut self, live: LiveCounts, elapsed: Duration) -> String {
        if elapsed < self.warmup {
            return "warm-up".to_string();
        }
        self.samples.push_back((elapsed, live));
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|(t, _)| elapsed.saturating_sub(*t) >= RATE_WINDOW)
        {
            self.samples.pop_front();
        }
        let (t0, c0) = self.samples.front().copied().unwrap_or((elapsed, live));
        // Until a second sample exists the window starts where the measurement did.
        let (t0, c0) = if t0 == elapsed {
            (self.warmup, LiveCounts::default())
        } else {
            (t0, c0)
        };
        let secs = elapsed.saturating_sub(t0).as_secs_f64().max(1e-3);
        let per_s = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
        format!(
            "sent {}  recv {}  {}",
            human(per_s(live.sent_bytes, c0.sent_bytes) * 8.0, "bit/s"),
            human(per_s(live.recv_bytes, c0.recv_bytes) * 8.0, "bit/s"),
            human(per_s(live.msgs, c0.msgs), "msg/s"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bug 5 (issue 11): with a 1 s warm-up and a steady 20k msg/s, the old display divided
    /// the measured count by the time since the start (warm-up included): 6.7k at 1.5 s,
    /// creeping up. The current rate must show 20k from the first samples on.
    #[test]
    fn rate_is_current_and_excludes_warmup() {
        let mut w = RateWindow::new(Duration::from_secs(1));
        assert_eq!(
            w.message(LiveCounts::default(), Duration::from_millis(500)),
            "warm-up"
        );
        let mut last = String::new();
        for step in 0..=40u64 {
            let t = Duration::from_millis(1000 + step * 100);
            // 20k msg/s of 64 B, counted from the end of the warm-up; from 3 s on, 40k msg/s.
            let ms = step * 100;
            let msgs = if ms <= 2000 {
                20 * ms
            } else {
                40_000 + 40 * (ms - 2000)
            };
            let live = LiveCounts {
                sent_bytes: msgs * 64,
                recv_bytes: msgs * 64,
                msgs,
            };
            last = w.message(live, t);
            if (1..=20).contains(&step) {
                assert!(last.ends_with("20.00 kmsg/s"), "at {t:?}: {last}");
            }
        }
        // The current rate follows the change within the window.
        assert!(last.ends_with("40.00 kmsg/s"), "{last}");
    }
}
