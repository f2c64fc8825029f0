//! Live progress on stderr while a run goes on (only when stderr is a terminal).

use std::io::IsTerminal;
use std::time::Duration;

use crate::client::LiveCounts;
use crate::report::human;

/// Live progress on stderr, only when it is a terminal.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub fn new(wanted: bool, total: Duration) -> Self {
        let bar = (wanted && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(total.as_millis() as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {elapsed_precise} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        Progress { bar }
    }
    pub fn active(&self) -> bool {
        self.bar.is_some()
    }
    pub fn tick(&self, live: LiveCounts, elapsed: Duration) {
        if let Some(b) = &self.bar {
            b.set_position(elapsed.as_millis() as u64);
            let secs = elapsed.as_secs_f64().max(1e-3);
            b.set_message(format!(
                "sent {}  recv {}  {}",
                human(live.sent_bytes as f64 * 8.0 / secs, "bit/s"),
                human(live.recv_bytes as f64 * 8.0 / secs, "bit/s"),
                human(live.msgs as f64 / secs, "msg/s"),
            ));
        }
    }
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
