//! One run from configuration to result: the client measures, live progress is shown, the
//! report is built from the measurement.

use anyhow::Result;

use crate::client::{self, Measurement, Observer, RunConfig};
use crate::progress::Progress;
use crate::report::RunReport;

/// Runs a measurement and returns its report; an invalid configuration or a run that could
/// not start is reported inside the report (see [`try_run`] to get it as `Err`).
pub fn run(cfg: &RunConfig) -> RunReport {
    try_run(cfg).unwrap_or_else(|e| RunReport::new(cfg, &Measurement::failed(format!("{e:#}"))))
}

/// Like [`run`], but an invalid configuration is an `Err`.
pub fn try_run(cfg: &RunConfig) -> Result<RunReport> {
    try_run_observed(cfg, None)
}

/// [`run`] with a second observer of the live counts (e.g. a metrics endpoint), called
/// about every 100 ms beside the progress display.
pub fn run_observed(cfg: &RunConfig, extra: Option<Observer<'_>>) -> RunReport {
    try_run_observed(cfg, extra)
        .unwrap_or_else(|e| RunReport::new(cfg, &Measurement::failed(format!("{e:#}"))))
}

fn try_run_observed(cfg: &RunConfig, mut extra: Option<Observer<'_>>) -> Result<RunReport> {
    let progress = Progress::new(cfg.progress, cfg.warmup + cfg.duration);
    let wanted = progress.active() || extra.is_some();
    let mut tick = |live, elapsed| {
        progress.tick(live, elapsed);
        if let Some(x) = extra.as_mut() {
            x(live, elapsed);
        }
    };
    let m = client::measure(cfg, wanted.then_some(&mut tick as _));
    progress.finish();
    Ok(RunReport::new(cfg, &m?))
}
