//! Distributed runs through the binary, on loopback: agents started with one --start-at and
//! their share of the load, their stdout merged with `echoload merge -`, and a start in the
//! past refused.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{addr, bin, server_on};
use control::protocol::Mode as ServiceMode;
use echoload::client::Proto;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn agents_with_one_start_time_merge_from_a_stream() {
    let srv = server_on("127.0.0.1");
    let t = addr(&srv, ServiceMode::Echo, Proto::Tcp).to_string();
    let start = unix_now().ceil() + 2.0;
    // both agents run at once (spawned, then waited for)
    let running: Vec<_> = (0..2)
        .map(|i| {
            Command::new(bin())
                .args(["run", "--target", &t, "--conns", "3", "--duration", "1s"])
                .args([
                    "--warmup",
                    "0s",
                    "--interval",
                    "0.5s",
                    "--label",
                    "two",
                    "-q",
                    "-J",
                ])
                .args(["--start-at", &format!("{start}")])
                .args(["--agent-index", &i.to_string(), "--agent-count", "2"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let agents: Vec<_> = running
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let mut stream = Vec::new();
    let mut docs = Vec::new();
    for a in &agents {
        assert!(a.status.success(), "{}", String::from_utf8_lossy(&a.stderr));
        writeln!(stream, "some log line from kubectl").unwrap();
        stream.extend_from_slice(&a.stdout);
        docs.push(serde_json::from_slice::<serde_json::Value>(&a.stdout).unwrap());
    }
    // --conns 3 over two agents: 2 + 1; both measured from the same instant
    let conns: Vec<u64> = docs.iter().map(|d| d["conns"].as_u64().unwrap()).collect();
    assert_eq!(conns, [2, 1]);
    for (i, d) in docs.iter().enumerate() {
        assert_eq!(d["agent"]["index"], i);
        assert_eq!(d["agent"]["count"], 2);
        let at = humantime::parse_rfc3339(d["started_at"].as_str().unwrap()).unwrap();
        let at = at.duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
        // agents sleep until the instant; a late wake-up on a loaded machine is the only skew
        assert!(
            (at - start).abs() < 0.25,
            "agent {i} started at {at}, asked {start}"
        );
    }

    let json = std::env::temp_dir().join(format!("echoload-multi-{}.json", std::process::id()));
    let mut merge = Command::new(bin())
        .args(["merge", "-", "--strict", "--json"])
        .arg(&json)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    merge.stdin.take().unwrap().write_all(&stream).unwrap();
    let out = merge.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for k in ["sent_msgs", "recv_msgs", "sent_bytes", "recv_bytes"] {
        let sum: u64 = docs.iter().map(|d| d[k].as_u64().unwrap()).sum();
        assert_eq!(m[k].as_u64().unwrap(), sum, "{k}");
        let iv: u64 = m["intervals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i[k].as_u64().unwrap())
            .sum();
        assert_eq!(iv, sum, "intervals {k}");
    }
    assert_eq!(m["merge"]["agents"].as_array().unwrap().len(), 2);
    assert!(m["merge"]["window_skew_s"].as_f64().unwrap() < 0.5);
    let _ = std::fs::remove_file(&json);

    // one agent alone is a missing agent: --strict fails on the warning
    let mut merge = Command::new(bin())
        .args(["merge", "-", "--strict"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    merge
        .stdin
        .take()
        .unwrap()
        .write_all(&agents[0].stdout)
        .unwrap();
    let out = merge.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing agent(s) [1] of 2"));
}

#[test]
fn a_start_time_in_the_past_is_refused_before_any_traffic() {
    let srv = server_on("127.0.0.1");
    let t = addr(&srv, ServiceMode::Echo, Proto::Tcp).to_string();
    let out = Command::new(bin())
        .args(["run", "--target", &t, "--duration", "1s", "-q"])
        .args(["--start-at", &format!("{}", unix_now() - 5.0)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in the past"), "{err}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(srv.counters().tcp_accepted, 0, "no connection was made");
}
