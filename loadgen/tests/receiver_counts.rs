//! Receiver-side counts on a sink run's report (issue 21, iperf3's receiver line): read from
//! `echoload serve --metrics` before and after the run (`--server-metrics`).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::bin;

#[test]
fn a_sink_run_reports_what_the_server_received() {
    let mut srv = Command::new(bin())
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
            "--metrics",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (mut udp, mut tcp, mut metrics) = (None, None, None);
    for line in BufReader::new(srv.stdout.take().unwrap()).lines().take(20) {
        let line = line.unwrap();
        if let Some(a) = line.strip_prefix("discard  udp ") {
            udp = Some(a.trim().to_string());
        }
        if let Some(a) = line.strip_prefix("discard  tcp ") {
            tcp = Some(a.trim().to_string());
        }
        if let Some(a) = line.split("http://").nth(1) {
            metrics = Some(a.trim_end_matches("/metrics").to_string());
        }
        if line.starts_with("serving with") {
            break;
        }
    }
    let (udp, tcp, metrics) = (udp.unwrap(), tcp.unwrap(), metrics.unwrap());
    let run = |target: &str, udp: bool| {
        let mut c = Command::new(bin());
        c.args([
            "run", target, "-m", "sink", "-r", "5000", "-t", "0.5", "-O", "0", "-q",
        ])
        .args(["-J", "--server-metrics", &metrics]);
        if udp {
            c.arg("-u");
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    // No warm-up: every message sent is measured. On loopback at 5,000 msg/s every one
    // arrives, unless the server was descheduled long enough for its socket buffer to
    // overflow (a loaded machine): never more than were sent, and whole datagrams.
    let v = run(&udp, true);
    let rc = &v["receiver"];
    assert_eq!(rc["service"], "discard", "{v}");
    let (got, sent) = (
        rc["received_msgs"].as_u64().unwrap(),
        v["sent_msgs"].as_u64().unwrap(),
    );
    assert!(got <= sent && got >= sent * 9 / 10, "{v}");
    assert_eq!(rc["received_bytes"].as_u64(), Some(got * 64), "{v}");
    assert_eq!(rc["udp_dropped"], 0, "{v}");
    // TCP: every byte (discard drops them unread: bytes, no messages).
    let v = run(&tcp, false);
    assert_eq!(v["receiver"]["received_bytes"], v["sent_bytes"], "{v}");
    assert_eq!(v["receiver"]["received_msgs"], 0, "{v}");
    let _ = srv.kill();
    let _ = srv.wait();
}
