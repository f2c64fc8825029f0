//! One `echoload run` session, from configuration to result: the client measures, the
//! watchers see it live (the progress line, interval lines, the `--metrics` endpoint), and the
//! report is built from the measurement. Its own room because it is the one place that ties
//! the client to the results; cli/run.rs only holds the `run` command's arguments.

pub mod metrics;
pub mod progress;

use std::time::Duration;

use anyhow::Result;

use crate::client::{self, Interval, LiveCounts, Measurement, Observer, RunConfig, Totals};
use crate::results::report::RunReport;
use progress::Progress;

/// Runs a measurement and returns its report; an invalid configuration or a run that could
/// not start is reported inside the report (see [`try_run`] to get it as `Err`).
pub fn run(cfg: &RunConfig) -> RunReport {
    run_with(cfg, None)
}

/// [`run`], giving each finished interval to `on_interval` while the run goes on.
pub fn run_with(cfg: &RunConfig, on_interval: Option<&mut dyn FnMut(&Interval)>) -> RunReport {
    try_run_with(cfg, on_interval, None, None)
        .unwrap_or_else(|e| RunReport::new(cfg, &Measurement::failed(format!("{e:#}"))))
}

/// Like [`run`], but an invalid configuration is an `Err`.
pub fn try_run(cfg: &RunConfig) -> Result<RunReport> {
    try_run_with(cfg, None, None, None)
}

/// [`run_with`], also giving the live counts to `on_tick` about every 100 ms, and the run so
/// far to `on_totals` after each complete interval (e.g. to a metrics endpoint).
pub fn run_watched(
    cfg: &RunConfig,
    on_interval: Option<&mut dyn FnMut(&Interval)>,
    on_tick: Option<&mut dyn FnMut(LiveCounts, Duration)>,
    on_totals: Option<&mut dyn FnMut(&Totals)>,
) -> RunReport {
    try_run_with(cfg, on_interval, on_tick, on_totals)
        .unwrap_or_else(|e| RunReport::new(cfg, &Measurement::failed(format!("{e:#}"))))
}

struct Watch<'a, 'b, 'c> {
    progress: Progress,
    on_interval: Option<&'a mut dyn FnMut(&Interval)>,
    on_tick: Option<&'b mut dyn FnMut(LiveCounts, Duration)>,
    on_totals: Option<&'c mut dyn FnMut(&Totals)>,
}

impl Observer for Watch<'_, '_, '_> {
    fn totals(&mut self, t: &Totals) {
        if let Some(f) = self.on_totals.as_mut() {
            f(t);
        }
    }
    fn tick(&mut self, live: LiveCounts, elapsed: Duration) {
        self.progress.tick(live, elapsed);
        if let Some(f) = self.on_tick.as_mut() {
            f(live, elapsed);
        }
    }
    fn interval(&mut self, iv: &Interval) {
        if let Some(f) = self.on_interval.as_mut() {
            f(iv);
        }
    }
}

fn try_run_with(
    cfg: &RunConfig,
    on_interval: Option<&mut dyn FnMut(&Interval)>,
    on_tick: Option<&mut dyn FnMut(LiveCounts, Duration)>,
    on_totals: Option<&mut dyn FnMut(&Totals)>,
) -> Result<RunReport> {
    // Interval lines and a progress bar would overwrite each other: lines win.
    let progress = Progress::new(
        cfg.progress && on_interval.is_none(),
        cfg.warmup,
        cfg.warmup + cfg.duration,
    );
    let watching =
        progress.active() || on_interval.is_some() || on_tick.is_some() || on_totals.is_some();
    let mut watch = Watch {
        progress,
        on_interval,
        on_tick,
        on_totals,
    };
    let m = client::measure(cfg, watching.then_some(&mut watch as &mut dyn Observer));
    watch.progress.finish();
    Ok(RunReport::new(cfg, &m?))
}
