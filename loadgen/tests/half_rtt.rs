//! `--half-rtt` (issue 21, sockperf's default view): the table and the interval lines show
//! half round trips, the JSON keeps the full ones.

mod common;

use std::process::Command;

use common::{addr, bin, server_on};
use control::protocol::Mode as Svc;
use echoload::client::Proto;

/// The number after `key ` in `line`.
fn after(line: &str, key: &str) -> f64 {
    line.split(&format!("{key} "))
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

#[test]
fn half_rtt_halves_the_display_only() {
    let srv = server_on("127.0.0.1");
    let target = addr(&srv, Svc::Echo, Proto::Udp).to_string();
    let dir = std::env::temp_dir().join(format!("echoload-half-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("r.json");
    let out = Command::new(bin())
        .args([
            "run", &target, "-u", "-t", "0.4", "-O", "0.1", "-i", "0.2", "-q",
        ])
        .arg("--half-rtt")
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("  latency µs"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("half round trip (--half-rtt)"), "{line}");
    // One decimal shown: the halved figure within rounding of half the JSON's.
    for (key, json_key) in [("p50", "p50"), ("p99", "p99"), ("max", "max")] {
        let shown = after(line, key);
        let full = v["latency_us"][json_key].as_f64().unwrap();
        assert!(
            (shown - full / 2.0).abs() <= 0.051,
            "{key}: {shown} vs {full}/2\n{text}"
        );
    }
    let head = text.lines().next().unwrap();
    assert!(head.contains("p50 ½rtt"), "{head}");
    let ivs = v["intervals"].as_array().unwrap();
    let lines: Vec<&str> = text.lines().skip(1).take(ivs.len()).collect();
    for (l, iv) in lines.iter().zip(ivs) {
        let p50: f64 = l.split_whitespace().nth(7).unwrap().parse().unwrap();
        let full = iv["p50_us"].as_f64().unwrap();
        assert!((p50 - full / 2.0).abs() <= 0.051, "{l} vs {iv}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
