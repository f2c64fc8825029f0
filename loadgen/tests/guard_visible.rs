//! The UDP guard, visible (issue 21): `echoload serve` says when its per-source rate limit
//! starts dropping a source, once, with the option that lifts it; the client that loses
//! replies sending above the default limit to a non-loopback server says the server may be
//! limiting per source. Loopback is exempt from the limit by default on the server, so the
//! server runs with `--udp-rate-limit-exempt-loopback false` and the client with
//! `--assume-remote`.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::bin;

struct Serve {
    child: Child,
    udp_echo: SocketAddr,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `echoload serve` on OS-assigned loopback ports, loopback rate limited; stderr to `err`.
fn serve(err: &std::path::Path) -> Serve {
    let mut child = Command::new(bin())
        .args([
            "serve",
            "--threads",
            "2",
            "--echo-port",
            "0",
            "--discard-port",
            "0",
        ])
        .args(["--source-port", "0", "--sockperf-port", "0"])
        .args(["--udp-rate-limit-exempt-loopback", "false"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(err).unwrap())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut udp_echo = None;
    for line in BufReader::new(out).lines().take(20) {
        let line = line.unwrap();
        if let Some(a) = line.strip_prefix("echo     udp ") {
            udp_echo = Some(a.trim().parse().unwrap());
        }
        if line.starts_with("serving with") {
            break;
        }
    }
    Serve {
        child,
        udp_echo: udp_echo.expect("serve prints its UDP echo address"),
    }
}

fn client(target: SocketAddr, remote: bool) -> String {
    let mut c = Command::new(bin());
    c.args(["run", &target.to_string(), "-u", "-m", "rate", "-r", "4000"])
        .args(["-t", "1", "-O", "0.2", "-q", "--allow-loss"]);
    if remote {
        c.arg("--assume-remote");
    }
    let out = c.output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn server_announces_the_limit_and_client_hints_at_it() {
    let dir = std::env::temp_dir().join(format!("echoload-guard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = dir.join("serve.err");
    let s = serve(&err);
    // 4,000 msg/s against 1,000/s per source: about three quarters are dropped, twice over.
    let report = client(s.udp_echo, true);
    assert!(
        report.contains("the server may be limiting per source")
            && report.contains("--udp-rate-limit-per-source 0")
            && report.contains("UdpRateLimitPerSource=0")
            && report.contains("drop_rate_limited"),
        "{report}"
    );
    let quiet = client(s.udp_echo, false);
    assert!(
        !quiet.contains("limiting per source") && quiet.contains("lost"),
        "a loopback target gets no hint (loopback is exempt by default):\n{quiet}"
    );
    // Once per source, however long it goes on, with the option that lifts it (stderr is a
    // file: wait until the line is there, bounded).
    let t0 = Instant::now();
    let mut text = String::new();
    while t0.elapsed() < Duration::from_secs(5) {
        text = std::fs::read_to_string(&err).unwrap();
        if text.contains("127.0.0.1") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("is over 1000 datagrams/s"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(
        lines[0].contains("UDP from 127.0.0.1")
            && lines[0].contains("--udp-rate-limit-per-source 0 lifts it"),
        "{text}"
    );
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Below the limit nothing is said on either side.
#[test]
fn no_hint_without_loss() {
    let dir = std::env::temp_dir().join(format!("echoload-guard2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = dir.join("serve.err");
    let s = serve(&err);
    let out = Command::new(bin())
        .args([
            "run",
            &s.udp_echo.to_string(),
            "-u",
            "-m",
            "rate",
            "-r",
            "500",
        ])
        .args(["-t", "0.5", "-O", "0.1", "-q", "--assume-remote"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(!report.contains("limiting per source"), "{report}");
    drop(s);
    let text = std::fs::read_to_string(&err).unwrap();
    assert!(!text.contains("datagrams/s"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
