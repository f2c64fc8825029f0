//! The retransmits column of TCP interval lines (issue 21, iperf3's `Retr`): TCP_INFO's
//! tcpi_total_retrans summed over the connections, per interval; "–" (JSON null) where the
//! OS has no TCP_INFO, and for UDP.

mod common;

use std::process::Command;

use common::{addr, bin, server_on};
use control::protocol::Mode as Svc;
use echoload::client::Proto;

#[test]
fn tcp_intervals_carry_retransmits() {
    let srv = server_on("127.0.0.1");
    let target = addr(&srv, Svc::Echo, Proto::Tcp).to_string();
    let out = Command::new(bin())
        .args([
            "run", &target, "-m", "stream", "-P", "2", "-t", "0.6", "-O", "0.1",
        ])
        .args(["-i", "0.2", "-q", "-J"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    let head = err.lines().next().unwrap();
    assert!(head.trim_end().ends_with("retr"), "{err}");
    let ivs = v["intervals"].as_array().unwrap();
    assert_eq!(ivs.len(), 3, "{v}");
    let lines: Vec<&str> = err.lines().skip(1).take(3).collect();
    for (iv, line) in ivs.iter().zip(&lines) {
        let shown = line.split_whitespace().last().unwrap();
        if cfg!(target_os = "linux") {
            // A number in each interval, the same in the line; together no more than the
            // connections' total at the end (which counts the warm-up too).
            let r = iv["retransmits"].as_u64().unwrap_or_else(|| panic!("{iv}"));
            assert_eq!(shown, r.to_string(), "{line}");
        } else {
            assert!(iv["retransmits"].is_null(), "{iv}");
            assert_eq!(shown, "–", "{line}");
        }
    }
    if cfg!(target_os = "linux") {
        let sum: u64 = ivs.iter().map(|i| i["retransmits"].as_u64().unwrap()).sum();
        let total = v["tcp_info"]["retransmits"].as_u64().unwrap();
        assert!(sum <= total, "intervals {sum} > connections' total {total}");
    }
    // UDP has no such column.
    let udp = Command::new(bin())
        .args(["run", &addr(&srv, Svc::Echo, Proto::Udp).to_string(), "-u"])
        .args(["-t", "0.2", "-O", "0.05", "-i", "0.1", "-q", "-J"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&udp.stdout).unwrap();
    assert!(v["intervals"][0]["retransmits"].is_null(), "{v}");
    assert!(!String::from_utf8_lossy(&udp.stderr).contains("retr"));
}
