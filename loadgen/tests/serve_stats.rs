//! `echoload serve --stats-every`: rates with the time they were measured at (issue 21).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use common::bin;

#[test]
fn stats_lines_carry_rfc3339_time_seconds_and_rates() {
    let before = SystemTime::now() - Duration::from_secs(1);
    let mut child = Command::new(bin())
        .args([
            "serve",
            "--threads",
            "1",
            "--echo-port",
            "0",
            "--discard-port",
            "0",
        ])
        .args([
            "--source-port",
            "0",
            "--sockperf-port",
            "0",
            "--stats-every",
            "0.2",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = BufReader::new(child.stderr.take().unwrap());
    let mut stamps = Vec::new();
    // Bounded: the first three rate lines (about 0.6 s), or 40 lines at most.
    for line in err.lines().take(40) {
        let line = line.unwrap();
        if line.starts_with("  total: ") {
            continue;
        }
        let mut f = line.split_whitespace();
        let t =
            humantime::parse_rfc3339(f.next().unwrap()).unwrap_or_else(|e| panic!("{line}: {e}"));
        let since: f64 = f
            .next()
            .and_then(|s| s.strip_prefix('+'))
            .and_then(|s| s.strip_suffix('s'))
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no +SECONDSs in {line}"));
        assert!(line.contains(" rx 0.00 bit/s 0.00 msg/s "), "{line}");
        assert!(line.contains(" tcp open 0 "), "{line}");
        stamps.push((t, since));
        if stamps.len() == 3 {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(stamps.len(), 3, "{stamps:?}");
    assert!(stamps[0].0 >= before, "{stamps:?}");
    assert!(
        stamps
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1),
        "{stamps:?}"
    );
}
