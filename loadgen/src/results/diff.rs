//! `echoload diff A.json B.json`: two results side by side with ratios, and a verdict for CI:
//! B is worse when a figure moved the wrong way by more than the tolerance. In results/ with
//! the document it compares (report.rs).

use std::fmt::Write as _;

use crate::results::report::RunReport;

/// Which way is better for a figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Better {
    Higher,
    Lower,
}

/// One compared figure.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Row {
    pub metric: &'static str,
    pub a: f64,
    pub b: f64,
    /// b / a (null when a is 0).
    pub ratio: Option<f64>,
    /// B is worse than A by more than the tolerance.
    pub worse: bool,
}

/// A figure with its unit, auto-scaled (9.29 Mbit/s, not 9286400.000).
fn shown(metric: &str, v: f64) -> String {
    match metric {
        "bits_per_s" => crate::results::report::human(v, "bit/s"),
        "msgs_per_s" => crate::results::report::human(v, "msg/s"),
        "loss_pct" => format!("{v:.2} %"),
        "errors" => format!("{v:.0}"),
        m if m.starts_with("latency_us") => format!("{v:.1} µs"),
        _ => format!("{v:.3}"),
    }
}

/// The comparison of two runs.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Diff {
    /// Allowed relative change in the wrong direction (0.05 = 5 %).
    pub tolerance: f64,
    pub rows: Vec<Row>,
    /// Differences of setup that make the comparison questionable.
    pub notes: Vec<String>,
}

impl Diff {
    pub fn worse(&self) -> bool {
        self.rows.iter().any(|r| r.worse)
    }

    /// The human table.
    pub fn table(&self, a_name: &str, b_name: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "A = {a_name}\nB = {b_name}\ntolerance {:.1} %",
            self.tolerance * 100.0
        );
        let _ = writeln!(
            s,
            "{:<22} {:>16} {:>16} {:>8}  verdict",
            "metric", "A", "B", "B/A"
        );
        for r in &self.rows {
            let _ = writeln!(
                s,
                "{:<22} {:>16} {:>16} {:>8}  {}",
                r.metric,
                shown(r.metric, r.a),
                shown(r.metric, r.b),
                r.ratio
                    .map_or_else(|| "-".to_string(), |x| format!("{x:.3}")),
                if r.worse { "WORSE" } else { "ok" }
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        let _ = writeln!(
            s,
            "{}",
            if self.worse() {
                "B is worse than A"
            } else {
                "B is not worse than A"
            }
        );
        s
    }
}

/// Compares `b` against `a`.
pub fn diff(a: &RunReport, b: &RunReport, tolerance: f64) -> Diff {
    let mut rows = Vec::new();
    let mut row = |metric: &'static str, va: f64, vb: f64, better: Better| {
        let ratio = (va != 0.0).then(|| vb / va);
        let worse = match better {
            Better::Higher => vb < va * (1.0 - tolerance),
            Better::Lower => vb > va * (1.0 + tolerance),
        };
        rows.push(Row {
            metric,
            a: va,
            b: vb,
            ratio,
            worse,
        });
    };
    let (ta, tb) = (&a.throughput, &b.throughput);
    row("bits_per_s", ta.bits_per_s, tb.bits_per_s, Better::Higher);
    row("msgs_per_s", ta.msgs_per_s, tb.msgs_per_s, Better::Higher);
    let (la, lb) = (&a.latency_us, &b.latency_us);
    if la.count > 0 && lb.count > 0 {
        row("latency_us.p50", la.p50, lb.p50, Better::Lower);
        row("latency_us.p99", la.p99, lb.p99, Better::Lower);
        row("latency_us.p999", la.p999, lb.p999, Better::Lower);
        row("latency_us.max", la.max, lb.max, Better::Lower);
    }
    // Loss and integrity: any increase from a clean A counts (a relative tolerance of 0 is
    // meaningless there), a small change of a non-zero loss within the tolerance does not.
    row("loss_pct", a.loss_pct, b.loss_pct, Better::Lower);
    let bad = |r: &RunReport| (r.errors.corrupted + r.errors.connect + r.errors.io) as f64;
    row("errors", bad(a), bad(b), Better::Lower);
    let mut notes = Vec::new();
    let kind = |r: &RunReport| format!("{} {} {} B wire {}", r.proto, r.mode, r.size, r.wire);
    if kind(a) != kind(b) {
        notes.push(format!("A is {}, B is {}", kind(a), kind(b)));
    }
    if (a.conns, a.threads) != (b.conns, b.threads) {
        notes.push(format!(
            "A has {} connection(s) on {} thread(s), B {} on {}",
            a.conns, a.threads, b.conns, b.threads
        ));
    }
    Diff {
        tolerance,
        rows,
        notes,
    }
}

/// `5`, `5%` or `0.5%`: a percentage.
pub fn parse_tolerance(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let t = t.strip_suffix('%').unwrap_or(t);
    match t.parse::<f64>() {
        Ok(v) if (0.0..=1000.0).contains(&v) => Ok(v / 100.0),
        _ => Err(format!("`{s}` is not a percentage (e.g. 5 or 2.5%)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_parses() {
        assert_eq!(parse_tolerance("5"), Ok(0.05));
        assert_eq!(parse_tolerance("2.5%"), Ok(0.025));
        assert!(parse_tolerance("-1").is_err());
        assert!(parse_tolerance("x").is_err());
    }
}
