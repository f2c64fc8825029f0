//! One run from configuration to result: the client measures, live progress is shown, the
//! report is built from the measurement.

use anyhow::Result;

use crate::client::{self, Measurement, RunConfig};
use crate::progress::Progress;
use crate::report::RunReport;

/// Runs a measurement and returns its report; an invalid configuration or a run that could
/// not start is reported inside the report (see [`try_run`] to get it as `Err`).
pub fn run(cfg: &RunConfig) -> RunReport {
    try_run(cfg).unwrap_or_else(|e| RunReport::new(cfg, &Measurement::failed(format!("{e:#}"))))
}

/// Like [`run`], but an invalid configuration is an `Err`.
pub fn try_run(cfg: &RunConfig) -> Result<RunReport> {
    let progress = Progress::new(cfg.progress, cfg.warmup + cfg.duration);
    let mut tick = |live, elapsed| progress.tick(live, elapsed);
    let m = client::measure(cfg, progress.active().then_some(&mut tick as _));
    progress.finish();
    Ok(RunReport::new(cfg, &m?))
}
