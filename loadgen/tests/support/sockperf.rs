//! Running the real `sockperf` binary from a test: one place for echoload's interop tests and
//! wskecho-sim's image test (included there with `#[path]`).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// True if `sockperf` is on PATH; otherwise says why the caller skips.
pub fn sockperf_on_path() -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("sockperf").is_file()));
    if !found {
        eprintln!(
            "SKIPPED: `sockperf` is not on PATH (Debian package `sockperf`; ./test.sh installs it)"
        );
    }
    found
}

/// One real sockperf at a time within a test binary: they are CPU-hungry and the machine has
/// few cores.
static SOCKPERF: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `sockperf <args>`; returns its combined output. sockperf 3.7 now and then hangs at the
/// end of a run on a loaded machine (its timer handler calls printf, which can deadlock), so a
/// run that has not exited after 10 s is killed and retried, at most 3 times.
pub fn run_sockperf(args: &[&str]) -> String {
    let _one = SOCKPERF
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for attempt in 1..=3 {
        let mut child = Command::new("sockperf")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sockperf starts");
        let end = Instant::now() + Duration::from_secs(10);
        let mut hung = false;
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > end {
                let _ = child.kill();
                hung = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if hung {
            eprintln!("sockperf {args:?} hung (attempt {attempt}), output so far:\n{text}");
            continue;
        }
        assert!(out.status.success(), "sockperf {args:?} failed:\n{text}");
        return text;
    }
    panic!("sockperf {args:?} hung 3 times");
}

/// The number after `key` in sockperf's output, e.g. "Latency is 25.6".
pub fn number_after(text: &str, key: &str) -> Option<f64> {
    let rest = &text[text.find(key)? + key.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// N of sockperf's "Total N observations" line (latency samples it matched to replies).
pub fn observations(text: &str) -> f64 {
    text.match_indices("Total ")
        .find_map(|(i, _)| {
            let mut w = text[i + 6..].split_whitespace();
            let n = w.next()?.parse::<f64>().ok()?;
            w.next()?.starts_with("observations").then_some(n)
        })
        .unwrap_or(0.0)
}
