//! The self-test's result: each step's outcome and the text/JSON verdict a user pastes into a
//! bug report.

use std::fmt::Write as _;

use control::stats::{Counter, Counters};
use serde_json::{json, Value};

/// What became of one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Passed(String),
    Failed(String),
    /// The step could not run here (no such service configured, or it did not open): neither
    /// a pass nor a failure, and counted on its own.
    Unavailable(String),
}

impl Outcome {
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Passed(_) => "ok",
            Outcome::Failed(_) => "FAILED",
            Outcome::Unavailable(_) => "unavailable",
        }
    }
    pub fn detail(&self) -> &str {
        match self {
            Outcome::Passed(d) | Outcome::Failed(d) | Outcome::Unavailable(d) => d,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Step {
    pub name: &'static str,
    pub outcome: Outcome,
}

/// Everything the report shows.
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    /// What was tested: the device and the OS build, or a wskecho-sim's control address.
    pub target: String,
    /// "wskecho X.Y.Z, control ABI a..=b, N CPUs" once the version query answered.
    pub driver: Option<String>,
    pub services: Vec<String>,
    pub steps: Vec<Step>,
    /// The driver's global counters at the end.
    pub counters: Option<Counters>,
}

/// Exit code when no step failed but some could not run.
pub const EXIT_INCOMPLETE: i32 = 3;

impl Verdict {
    pub fn count(&self, word: &str) -> usize {
        self.steps
            .iter()
            .filter(|s| s.outcome.word() == word)
            .count()
    }

    /// PASS, FAIL or INCOMPLETE (nothing failed, something could not run).
    pub fn summary_word(&self) -> &'static str {
        if self.count("FAILED") > 0 {
            "FAIL"
        } else if self.count("unavailable") > 0 {
            "INCOMPLETE"
        } else {
            "PASS"
        }
    }

    /// 0 pass, 1 a step failed, [`EXIT_INCOMPLETE`] some steps could not run.
    pub fn exit_code(&self) -> i32 {
        match self.summary_word() {
            "PASS" => 0,
            "FAIL" => super::super::EXIT_REFUSED,
            _ => EXIT_INCOMPLETE,
        }
    }

    pub fn summary(&self) -> String {
        format!(
            "verdict: {}: {} passed, {} failed, {} unavailable",
            self.summary_word(),
            self.count("ok"),
            self.count("FAILED"),
            self.count("unavailable")
        )
    }

    /// The header lines (before any step runs).
    pub fn header(&self) -> String {
        let mut t = String::from("wskecho driver selftest\n");
        let _ = writeln!(t, "  echoload: {}", env!("CARGO_PKG_VERSION"));
        let _ = writeln!(t, "  target:   {}", self.target);
        t
    }

    /// One step as printed: `selftest NAME ... ok|FAILED|unavailable` (a line scripts grep)
    /// and its detail lines, indented.
    pub fn step_text(s: &Step) -> String {
        let mut t = format!("selftest {} ... {}\n", s.name, s.outcome.word());
        for l in s.outcome.detail().lines().filter(|l| !l.is_empty()) {
            let _ = writeln!(t, "    {l}");
        }
        t
    }

    /// What follows the steps: the driver, its services, the non-zero counters, the verdict.
    pub fn footer(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "driver:   {}",
            self.driver.as_deref().unwrap_or("(no answer)")
        );
        let _ = writeln!(t, "services: {}", self.services.join("; "));
        if let Some(c) = &self.counters {
            let _ = writeln!(t, "counters: {}", nonzero_counters(c));
        }
        t + &self.summary() + "\n"
    }

    pub fn to_json(&self) -> Value {
        json!({
            "echoload": env!("CARGO_PKG_VERSION"),
            "target": self.target,
            "driver": self.driver,
            "services": self.services,
            "steps": self.steps.iter().map(|s| json!({
                "name": s.name, "result": s.outcome.word(), "detail": s.outcome.detail(),
            })).collect::<Vec<_>>(),
            "counters": self.counters.as_ref().map(super::super::render::counters_json),
            "verdict": self.summary_word(),
            "passed": self.count("ok"),
            "failed": self.count("FAILED"),
            "unavailable": self.count("unavailable"),
        })
    }
}

/// `name value` for every counter that is not zero ("all zero" when none is).
pub fn nonzero_counters(c: &Counters) -> String {
    let v: Vec<String> = Counter::ALL
        .iter()
        .filter(|&&k| c.get(k) != 0)
        .map(|&k| {
            if k.is_gauge() {
                format!("{} {}", k.name(), c.get(k) as i64)
            } else {
                format!("{} {}", k.name(), c.get(k))
            }
        })
        .collect();
    if v.is_empty() {
        "all zero".into()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(outcomes: &[Outcome]) -> Verdict {
        Verdict {
            steps: outcomes
                .iter()
                .map(|o| Step {
                    name: "x",
                    outcome: o.clone(),
                })
                .collect(),
            ..Verdict::default()
        }
    }

    #[test]
    fn unavailable_is_neither_pass_nor_failure() {
        let ok = Outcome::Passed(String::new());
        let un = Outcome::Unavailable("no socket".into());
        let bad = Outcome::Failed("x".into());
        assert_eq!(v(&[ok.clone(), ok.clone()]).exit_code(), 0);
        let inc = v(&[ok.clone(), un.clone()]);
        assert_eq!(inc.exit_code(), EXIT_INCOMPLETE);
        assert_eq!(
            inc.summary(),
            "verdict: INCOMPLETE: 1 passed, 0 failed, 1 unavailable"
        );
        assert_eq!(v(&[ok, un, bad]).exit_code(), 1);
    }

    #[test]
    fn step_lines_end_with_the_word() {
        let s = Step {
            name: "tcp_echo",
            outcome: Outcome::Failed("first\nsecond".into()),
        };
        assert_eq!(
            Verdict::step_text(&s),
            "selftest tcp_echo ... FAILED\n    first\n    second\n"
        );
    }
}
