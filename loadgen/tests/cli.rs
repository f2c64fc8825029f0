//! The command line as scripts use it: exit codes, JSON keys, merge, the embedded default.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{addr, bin, server_on};
use control::protocol::Mode as ServiceMode;
use echoload::client::Proto;

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("echoload-{}-{name}", std::process::id()))
}

fn run_json(
    target: &str,
    proto: &str,
    mode: &str,
    extra: &[&str],
    json: &PathBuf,
) -> std::process::Output {
    Command::new(bin())
        .args([
            "run",
            "--target",
            target,
            "--proto",
            proto,
            "--mode",
            mode,
            "--duration",
            "0.3s",
            "--warmup",
            "0.05s",
            "-q",
        ])
        .args(extra)
        .arg("--json")
        .arg(json)
        .output()
        .unwrap()
}

#[test]
fn json_has_every_contract_key_and_clean_exit_is_zero() {
    let srv = server_on("127.0.0.1");
    let t = addr(&srv, ServiceMode::Echo, Proto::Udp).to_string();
    let json = tmp("keys.json");
    let out = run_json(
        &t,
        "udp",
        "rate",
        &["--rate", "5000", "--conns", "2"],
        &json,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for k in [
        "target",
        "proto",
        "mode",
        "duration_s",
        "sent_msgs",
        "recv_msgs",
        "sent_bytes",
        "recv_bytes",
        "histogram",
    ] {
        assert!(!v[k].is_null(), "missing {k}: {v}");
    }
    for k in ["bits_per_s", "msgs_per_s", "bytes_per_s"] {
        assert!(v["throughput"][k].as_f64().unwrap() > 0.0, "throughput.{k}");
    }
    for k in ["min", "p50", "p90", "p99", "p999", "p9999", "max"] {
        assert!(v["latency_us"][k].as_f64().unwrap() > 0.0, "latency_us.{k}");
    }
    for k in [
        "lost",
        "duplicated",
        "reordered",
        "corrupted",
        "connect",
        "io",
    ] {
        assert_eq!(v["errors"][k].as_u64(), Some(0), "errors.{k}");
    }
    assert_eq!(v["proto"], "udp");
    assert_eq!(v["mode"], "rate");
    assert_eq!(v["target"], t);
    let h = echoload::results::report::decode_histogram(v["histogram"].as_str().unwrap()).unwrap();
    assert_eq!(h.len(), v["latency_us"]["count"].as_u64().unwrap());
    let _ = std::fs::remove_file(json);
}

#[test]
fn merge_adds_counts_and_histograms() {
    let srv = server_on("127.0.0.1");
    let t = addr(&srv, ServiceMode::Echo, Proto::Tcp).to_string();
    let (a, b, m) = (tmp("a.json"), tmp("b.json"), tmp("m.json"));
    assert!(run_json(&t, "tcp", "pingpong", &[], &a).status.success());
    assert!(run_json(&t, "tcp", "pingpong", &["--conns", "2"], &b)
        .status
        .success());
    let out = Command::new(bin())
        .arg("merge")
        .arg(&a)
        .arg(&b)
        .arg("--json")
        .arg(&m)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("merged 2 results"));
    let read = |p: &PathBuf| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let (va, vb, vm) = (read(&a), read(&b), read(&m));
    let sum = |k: &str| va[k].as_u64().unwrap() + vb[k].as_u64().unwrap();
    assert_eq!(vm["recv_msgs"].as_u64().unwrap(), sum("recv_msgs"));
    assert_eq!(
        vm["latency_us"]["count"].as_u64().unwrap(),
        va["latency_us"]["count"].as_u64().unwrap() + vb["latency_us"]["count"].as_u64().unwrap()
    );
    let max = va["latency_us"]["max"]
        .as_f64()
        .unwrap()
        .max(vb["latency_us"]["max"].as_f64().unwrap());
    assert!((vm["latency_us"]["max"].as_f64().unwrap() - max).abs() / max < 0.01);
    for p in [a, b, m] {
        let _ = std::fs::remove_file(p);
    }
    let bad = Command::new(bin())
        .args(["merge", "/nonexistent/x.json"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn usage_errors_exit_2_with_a_clear_message() {
    let out = Command::new(bin())
        .args([
            "run",
            "--target",
            "127.0.0.1:9",
            "--proto",
            "udp",
            "--size",
            "65508",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("65507"));
    let out = Command::new(bin())
        .args(["run", "--target", "127.0.0.1:9", "--size", "8"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("header size"));
}

#[test]
fn ipv6_flag_and_bracketed_target() {
    let srv = server_on("::1");
    let a = addr(&srv, ServiceMode::Echo, Proto::Tcp);
    let json = tmp("v6.json");
    let out = run_json(
        &format!("[::1]:{}", a.port()),
        "tcp",
        "pingpong",
        &["--ipv6"],
        &json,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["target"], a.to_string());
    let _ = std::fs::remove_file(&json);
    // --ipv6 with an IPv4-only name is a usage error, not a silent fallback.
    let out = run_json(
        &format!("127.0.0.1:{}", a.port()),
        "tcp",
        "pingpong",
        &["--ipv6"],
        &json,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("IPv6"));
}

#[test]
fn embedded_default_demo_runs_clean() {
    let out = Command::new(bin())
        .args(["demo", "--each", "0.3s"])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{s}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s.contains("all demo runs clean"), "{s}");
    assert_eq!(s.matches("latency µs").count(), 4, "{s}");
}

/// Schema 2: `-i` prints one line per interval; the JSON has the run metadata and the
/// `intervals` array, whose counters add up to the run's totals.
#[test]
fn intervals_and_metadata() {
    let srv = server_on("127.0.0.1");
    for (proto, svc, mode) in [
        ("tcp", ServiceMode::Echo, "pingpong"),
        ("udp", ServiceMode::Echo, "rate"),
        ("udp", ServiceMode::Discard, "sink"),
    ] {
        let p = if proto == "tcp" {
            Proto::Tcp
        } else {
            Proto::Udp
        };
        let a = addr(&srv, svc, p);
        let json = tmp(&format!("iv-{proto}-{mode}.json"));
        let out = Command::new(bin())
            .args([
                "run",
                "-c",
                &a.ip().to_string(),
                "-p",
                &a.port().to_string(),
            ])
            .args(["--proto", proto, "-m", mode, "-t", "1.2s", "-i", "0.25s"])
            // Ping-pong is not paced (a rate is refused there).
            .args(if mode == "pingpong" {
                &[][..]
            } else {
                &["-r", "20k"][..]
            })
            .args(["-O", "0.1s", "--label", "lab-1", "--json"])
            .arg(&json)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{text}");
        let lines = text
            .lines()
            .filter(|l| {
                l.trim_start().starts_with(|c: char| c.is_ascii_digit()) && l.contains(" s  ")
            })
            .count();
        assert_eq!(lines, 5, "{text}");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(v["schema_version"], 2);
        let id = v["run_id"].as_str().unwrap();
        assert!(
            id.len() == 32
                && id
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_uppercase()),
            "{id}"
        );
        let started = v["started_at"].as_str().unwrap();
        assert!(started.len() == 27 && started.ends_with('Z'), "{started}");
        assert!(humantime::parse_rfc3339(started).is_ok(), "{started}");
        assert!(!v["host"].as_str().unwrap().is_empty());
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["label"], "lab-1");
        assert_eq!(v["agent"]["count"], 1);
        let asked = if mode == "pingpong" {
            serde_json::Value::Null
        } else {
            20_000.0.into()
        };
        assert_eq!(v["requested_rate"], asked);
        assert_eq!(v["config"]["interval"], 0.25);
        assert!(v["latency_us"]["stddev"].is_number());
        assert!(v["loss_pct"].is_number());
        let ivs = v["intervals"].as_array().unwrap();
        assert_eq!(ivs.len(), 5, "{v}");
        assert_eq!(ivs[0]["start_s"], 0.0);
        assert!((ivs[4]["end_s"].as_f64().unwrap() - 1.2).abs() < 1e-6);
        for k in ["sent_msgs", "recv_msgs", "sent_bytes", "recv_bytes"] {
            let sum: u64 = ivs.iter().map(|i| i[k].as_u64().unwrap()).sum();
            assert_eq!(sum, v[k].as_u64().unwrap(), "{k}");
        }
        let lost: u64 = ivs.iter().map(|i| i["lost"].as_u64().unwrap()).sum();
        assert_eq!(lost, v["errors"]["lost"].as_u64().unwrap());
        // Paced at 20k msg/s for 1.2 s (ping-pong is not paced): never more than the schedule,
        // and at least a quarter of it. Not per interval: a client descheduled for 100 ms on a loaded machine
        // sends that interval's messages late, in the next one (the open-loop schedule catches
        // up), which said nothing about the intervals this test is about (it failed 2 of 3 runs
        // at load 4-7, main's echoload as well).
        if mode != "pingpong" {
            let sent: u64 = ivs.iter().map(|i| i["sent_msgs"].as_u64().unwrap()).sum();
            assert!(
                (6_000..=25_200).contains(&sent),
                "{sent} sent against 24,000 scheduled"
            );
        }
        for iv in &ivs[..4] {
            for k in ["bits_per_s", "msgs_per_s", "p50_us", "p99_us"] {
                assert!(iv[k].is_number(), "{k}");
            }
        }
        let _ = std::fs::remove_file(&json);
    }
}

/// `echoload diff A B`: exit 0 unless B is worse than A beyond the tolerance (then 1).
#[test]
fn diff_flags_a_worse_run() {
    let srv = server_on("127.0.0.1");
    let t = addr(&srv, ServiceMode::Echo, Proto::Tcp).to_string();
    let (a, b) = (tmp("diff-a.json"), tmp("diff-b.json"));
    assert!(run_json(&t, "tcp", "pingpong", &[], &a).status.success());
    let va: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&a).unwrap()).unwrap();
    let diff = |vb: &serde_json::Value, extra: &[&str]| {
        std::fs::write(&b, vb.to_string()).unwrap();
        let out = Command::new(bin())
            .arg("diff")
            .arg(&a)
            .arg(&b)
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, text) = diff(&va, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("B is not worse"), "{text}");
    // 20 % less throughput: worse at 5 %, not at 25 %.
    let mut slow = va.clone();
    let bps = va["throughput"]["bits_per_s"].as_f64().unwrap();
    slow["throughput"]["bits_per_s"] = (bps * 0.8).into();
    let (code, text) = diff(&slow, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("WORSE"), "{text}");
    assert_eq!(diff(&slow, &["--tolerance", "25%"]).0, Some(0));
    // A p99 3 % higher is within the default 5 %; 10 % is not.
    let p99 = va["latency_us"]["p99"].as_f64().unwrap();
    let mut lat = va.clone();
    lat["latency_us"]["p99"] = (p99 * 1.03).into();
    assert_eq!(diff(&lat, &[]).0, Some(0));
    lat["latency_us"]["p99"] = (p99 * 1.10).into();
    assert_eq!(diff(&lat, &[]).0, Some(1));
    // Corruption in B is always worse; JSON output names the metric.
    let mut bad = va.clone();
    bad["errors"]["corrupted"] = 1.into();
    let (code, text) = diff(&bad, &["-J"]);
    assert_eq!(code, Some(1));
    let j: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rows = j["rows"].as_array().unwrap();
    assert!(rows
        .iter()
        .any(|r| r["metric"] == "errors" && r["worse"] == true));
    for p in [a, b] {
        let _ = std::fs::remove_file(p);
    }
}

/// `--bidir`: a sink and a source at the same time, both reports in one JSON document.
#[test]
fn bidir_runs_both_directions_at_once() {
    let srv = server_on("127.0.0.1");
    let sink = addr(&srv, ServiceMode::Discard, Proto::Tcp).port();
    let source = addr(&srv, ServiceMode::Source, Proto::Tcp).port();
    let json = tmp("bidir.json");
    let out = Command::new(bin())
        .args(["run", "127.0.0.1", "--bidir", &format!("{sink},{source}")])
        .args(["-t", "0.5", "-O", "0", "-q", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("== send") && text.contains("== receive"),
        "{text}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["bidir"], true);
    assert_eq!(v["send"]["mode"], "sink");
    assert_eq!(v["receive"]["mode"], "source");
    assert!(v["send"]["sent_bytes"].as_u64().unwrap() > 0);
    assert!(v["receive"]["recv_bytes"].as_u64().unwrap() > 0);
    // Both measured windows overlap: they started together.
    let t = |k: &str| humantime::parse_rfc3339(v[k]["started_at"].as_str().unwrap()).unwrap();
    let gap = t("send")
        .duration_since(t("receive"))
        .or_else(|_| t("receive").duration_since(t("send")))
        .unwrap();
    assert!(gap < std::time::Duration::from_millis(300), "{gap:?}");
    // HOST:PORT makes no sense with --bidir.
    let out = Command::new(bin())
        .args(["run", "127.0.0.1:7", "--bidir", "-t", "0.1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let _ = std::fs::remove_file(&json);
}

/// Socket settings reach the socket: the local address (-B) is the peer the server sees, and
/// one it cannot bind fails the run with a message naming it.
#[cfg(target_os = "linux")]
#[test]
fn socket_settings_apply() {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    let peer = std::thread::spawn(move || {
        let (mut c, from) = l.accept().unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 4096];
        while let Ok(n) = c.read(&mut buf) {
            if n == 0 || c.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        from
    });
    let out = Command::new(bin())
        .args([
            "run",
            &a.to_string(),
            "-B",
            "127.0.0.2",
            "--dscp",
            "46",
            "--nagle",
        ])
        .args(["--socket-buffer", "256K", "-t", "0.3", "-O", "0", "-q"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        peer.join().unwrap().ip(),
        "127.0.0.2".parse::<std::net::IpAddr>().unwrap()
    );
    // 192.0.2.1 (TEST-NET-1) is not an address of this machine.
    let out = Command::new(bin())
        .args([
            "run",
            &a.to_string(),
            "-B",
            "192.0.2.1",
            "-t",
            "0.2",
            "-O",
            "0",
            "-q",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("bind to 192.0.2.1"), "{text}");
}
