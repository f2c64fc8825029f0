//! Regression tests of issue 21 (what a user of iperf3, sockperf, wrk2 and k6 hit): each one
//! failed before its fix.

// Every unsafe block states why it is sound.
#![deny(clippy::undocumented_unsafe_blocks)]

mod common;

use std::path::PathBuf;

use base64::Engine as _;
// The signal test (unix only) is the one that spawns with pipes and waits.
#[cfg(unix)]
use std::process::Stdio;
use std::process::{Command, Output};
#[cfg(unix)]
use std::time::Duration;

use common::{addr, server_on};
use control::protocol::Mode as ServiceMode;
use echoload::client::Proto;

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("echoload-i21-{}-{name}", std::process::id()))
}

/// The binary under test; ECHOLOAD_BIN runs these tests against another build (to see them
/// fail on the code before a fix).
fn bin() -> String {
    std::env::var("ECHOLOAD_BIN").unwrap_or_else(|_| common::bin().to_string())
}

fn echoload(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(p: &PathBuf) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Bug 1: GNU `timeout` signals the child and then its process group, two signals microseconds
/// apart; the second one killed at once and the report and JSON were lost (3 runs of 6). Now a
/// second signal inside the grace period is ignored.
#[cfg(unix)]
#[test]
fn two_signals_at_once_still_write_the_report() {
    let srv = server_on("127.0.0.1");
    let t = addr(&srv, ServiceMode::Echo, Proto::Tcp).to_string();
    for (sig, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let json_path = tmp(&format!("twice{sig}.json"));
        let _ = std::fs::remove_file(&json_path);
        let child = Command::new(bin())
            .args(["run", &t, "-t", "20", "--warmup", "0.1s", "-q", "--json"])
            .arg(&json_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(800));
        // SAFETY: kill() on our own child's pid, twice, as timeout(1) does.
        unsafe {
            libc::kill(child.id() as libc::pid_t, sig);
            libc::kill(child.id() as libc::pid_t, sig);
        }
        let out = child.wait_with_output().unwrap();
        let all = text(&out);
        assert_eq!(out.status.code(), Some(code), "{all}");
        assert!(all.contains("stopped by SIG"), "{all}");
        assert!(json(&json_path)["recv_msgs"].as_u64().unwrap() > 0, "{all}");
        let _ = std::fs::remove_file(&json_path);
    }
}

/// Bug 2: `-u -m stream` lost nothing (sent = received) yet reported "lost 8782" and exit 1:
/// the warm-up burst's losses were counted. Loss is now counted over the measured window, and
/// a failed flow is counted once (as its error, not also as lost).
#[test]
fn udp_counts_agree_with_each_other() {
    let srv = server_on("127.0.0.1");
    let t = addr(&srv, ServiceMode::Echo, Proto::Udp).to_string();
    let p = tmp("udpstream.json");
    let out = Command::new(bin())
        .args([
            "run", &t, "-u", "-m", "stream", "-t", "1", "--warmup", "0.3", "-q",
        ])
        .arg("--json")
        .arg(&p)
        .output()
        .unwrap();
    let v = json(&p);
    let (sent, recv, lost) = (
        v["sent_msgs"].as_u64().unwrap(),
        v["recv_msgs"].as_u64().unwrap(),
        v["errors"]["lost"].as_u64().unwrap(),
    );
    assert!(recv > 0, "{}", text(&out));
    assert!(
        recv + lost <= sent,
        "sent {sent} received {recv} lost {lost}: {}",
        text(&out)
    );
    let _ = std::fs::remove_file(&p);
    // A UDP port where nothing listens: one failure, counted once.
    let closed = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let p = tmp("udpclosed.json");
    let out = Command::new(bin())
        .args(["run", &closed, "-u", "-t", "0.3", "--warmup", "0", "-q"])
        .arg("--json")
        .arg(&p)
        .output()
        .unwrap();
    let v = json(&p);
    assert_eq!(v["errors"]["connect"].as_u64(), Some(1), "{}", text(&out));
    assert_eq!(v["errors"]["lost"].as_u64(), Some(0), "{}", text(&out));
    let _ = std::fs::remove_file(&p);
}

/// Bug 3: `-m rate --rate 1e12` ran and said "sent 0 … is 127.0.0.1:7007 a echo service?"
/// (TCP) or "sent 0 … lost 1057793" (UDP). A rate that cannot be scheduled is refused.
#[test]
fn impossible_rates_are_refused() {
    let srv = server_on("127.0.0.1");
    for p in [Proto::Tcp, Proto::Udp] {
        let t = addr(&srv, ServiceMode::Echo, p).to_string();
        let mut args = vec!["run", &t, "-m", "rate", "--rate", "1e12", "-t", "0.3"];
        args.extend(["--warmup", "0", "-q"]);
        if p == Proto::Udp {
            args.push("-u");
        }
        let out = echoload(&args);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(2), "{all}");
        assert!(all.contains("cannot be scheduled"), "{all}");
    }
}

/// Bug 3 (the rest): a paced run that falls short of its rate says so. A UDP sink through a
/// 1-datagram batch at a rate no loopback socket takes from one thread.
#[test]
fn a_rate_not_reached_is_reported() {
    let srv = server_on("127.0.0.1");
    let t = addr(&srv, ServiceMode::Discard, Proto::Udp).to_string();
    let p = tmp("short.json");
    let out = Command::new(bin())
        .args(["run", &t, "-u", "-m", "sink", "-r", "100M", "-t", "0.5"])
        .args(["--warmup", "0", "-q", "--batch", "1", "--no-gso", "--json"])
        .arg(&p)
        .output()
        .unwrap();
    let v = json(&p);
    let msgs: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(
        msgs.iter().any(|m| m.contains("could send only")),
        "{}",
        text(&out)
    );
    let _ = std::fs::remove_file(&p);
}

/// Bug 4: in ping-pong (and source) `-r`/`-b` were silently ignored while the JSON recorded
/// the requested rate; iperf3's habitual `-u -b 10M` ran an unpaced ping-pong.
#[test]
fn rates_a_mode_ignores_are_refused() {
    for args in [
        &["run", "127.0.0.1:7", "-u", "-b", "10M"][..],
        &["run", "127.0.0.1:7", "-r", "5000"][..],
        &["run", "127.0.0.1:7", "-R", "-r", "5000"][..],
    ] {
        let out = echoload(args);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {all}");
        assert!(all.contains("pace --mode rate"), "{args:?}: {all}");
    }
}

/// Bug 10: values no run can use are refused up front (exit 2, clear message); `-b 0` is
/// unlimited, as in iperf3.
#[test]
fn unusable_values_are_refused_up_front() {
    let cpus = echoload::client::allowed_cpus().map_or(64, |c| c.iter().max().unwrap() + 1);
    let bad_cpu = cpus.to_string();
    for (args, says) in [
        (vec!["-t", "0"], "--duration"),
        (vec!["-p", "0"], "--port"),
        (vec!["-A", bad_cpu.as_str()], "--affinity"),
        (vec!["-B", "::1"], "family"),
        (vec!["--window", "0"], "--window"),
    ] {
        let target = if args[0] == "-p" {
            "127.0.0.1"
        } else {
            "127.0.0.1:9"
        };
        let out = Command::new(bin())
            .args(["run", target, "-q"])
            .args(&args)
            .output()
            .unwrap();
        let all = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {all}");
        assert!(all.contains(says), "{args:?}: {all}");
    }
    // -b 0: unlimited (a short sink that moves data).
    let srv = server_on("127.0.0.1");
    let t = addr(&srv, ServiceMode::Discard, Proto::Tcp).to_string();
    let out = echoload(&[
        "run", &t, "-m", "sink", "-b", "0", "-t", "0.3", "--warmup", "0", "-q",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// Bug 6: the JSON `histogram` was uncompressed V2, which HdrHistogram's other
/// implementations do not read. (Decoding by python hdrh is checked in scripts/plot_test.py.)
#[test]
fn the_histogram_is_standard_compressed_v2() {
    let srv = server_on("127.0.0.1");
    let t = addr(&srv, ServiceMode::Echo, Proto::Tcp).to_string();
    let p = tmp("hist.json");
    let out = Command::new(bin())
        .args(["run", &t, "-t", "0.3", "--warmup", "0", "-q", "--json"])
        .arg(&p)
        .output()
        .unwrap();
    let v = json(&p);
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v["histogram"].as_str().unwrap())
        .unwrap();
    assert_eq!(raw[..4], [0x1c, 0x84, 0x93, 0x14], "{}", text(&out));
    let h = echoload::results::report::decode_histogram(v["histogram"].as_str().unwrap()).unwrap();
    assert_eq!(h.len(), v["latency_us"]["count"].as_u64().unwrap());
    let _ = std::fs::remove_file(&p);
}

/// Bug 7: `plot -o x.png` wrote an SVG into x.png and exited 0.
#[test]
fn plot_refuses_an_output_it_cannot_write() {
    let srv = server_on("127.0.0.1");
    let t = addr(&srv, ServiceMode::Echo, Proto::Tcp).to_string();
    let p = tmp("forpng.json");
    let png = tmp("x.png");
    let _ = std::fs::remove_file(&png);
    assert!(echoload(&[
        "run",
        &t,
        "-t",
        "0.2",
        "--warmup",
        "0",
        "-q",
        "--json",
        p.to_str().unwrap()
    ])
    .status
    .success());
    let out = echoload(&["plot", p.to_str().unwrap(), "-o", png.to_str().unwrap()]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains(".svg or .html"), "{all}");
    assert!(!png.exists(), "nothing written");
    let _ = std::fs::remove_file(&p);
}

/// Bug 9: `diff`/`plot` on a `--bidir` document failed with "missing field `target` at line
/// 282". Both directions are read now; a bidir result against a single one is explained.
/// Bug 13 (diff): figures with units, auto-scaled, not raw floats ("bits_per_s 9286400.000").
#[test]
fn bidir_documents_diff_and_plot() {
    let srv = server_on("127.0.0.1");
    let send = addr(&srv, ServiceMode::Discard, Proto::Tcp).port();
    let recv = addr(&srv, ServiceMode::Source, Proto::Tcp).port();
    let ports = format!("{send},{recv}");
    let (a, b, one) = (tmp("bidir-a.json"), tmp("bidir-b.json"), tmp("single.json"));
    for p in [&a, &b] {
        let out = echoload(&[
            "run",
            "127.0.0.1",
            "--bidir",
            &ports,
            "-t",
            "0.3",
            "--warmup",
            "0",
            "-q",
            "--json",
            p.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let out = echoload(&[
        "diff",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--tolerance",
        "1000",
    ]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("(send)") && all.contains("(receive)"), "{all}");
    assert!(all.contains("bit/s") && all.contains("msg/s"), "{all}");
    let svg = tmp("bidir.svg");
    let out = echoload(&["plot", a.to_str().unwrap(), "-o", svg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let pic = std::fs::read_to_string(&svg).unwrap();
    assert!(pic.contains("send") && pic.contains("receive"), "legend");
    // A single run against a bidir one: said what it is.
    let t = addr(&srv, ServiceMode::Echo, Proto::Tcp).to_string();
    assert!(echoload(&[
        "run",
        &t,
        "-t",
        "0.2",
        "--warmup",
        "0",
        "-q",
        "--json",
        one.to_str().unwrap()
    ])
    .status
    .success());
    let out = echoload(&["diff", a.to_str().unwrap(), one.to_str().unwrap()]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("--bidir result"), "{all}");
    for p in [a, b, one, svg] {
        let _ = std::fs::remove_file(p);
    }
}

/// Bug 13: "wire Echoload" (the flag value is `echoload`), "a echo service", "merged 1
/// results", sink interval lines with p50/p99 "0.0" instead of "–", merge's "0.033 Gbit/s".
#[test]
fn wording() {
    let srv = server_on("127.0.0.1");
    let sink = addr(&srv, ServiceMode::Discard, Proto::Tcp).to_string();
    let p = tmp("words.json");
    let out = echoload(&[
        "run",
        &sink,
        "-m",
        "sink",
        "-r",
        "2000",
        "-t",
        "0.4",
        "-i",
        "0.2",
        "--warmup",
        "0",
        "-q",
        "--json",
        p.to_str().unwrap(),
    ]);
    let all = text(&out);
    assert!(all.contains("wire echoload"), "{all}");
    let ivs: Vec<&str> = all
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()) && l.contains(" s  "))
        .collect();
    assert!(!ivs.is_empty(), "{all}");
    for l in ivs {
        assert!(l.contains('–') && !l.contains(" 0.0 "), "{l}");
    }
    let out = echoload(&["merge", p.to_str().unwrap()]);
    let all = text(&out);
    assert!(all.contains("merged 1 result "), "{all}");
    assert!(!all.contains("Gbit/s") && all.contains("bit/s"), "{all}");
    // Ping-pong into a discard service: nothing comes back (bug 12: "connection N never
    // answered", not "1 echoes missing 1 s after the end").
    let out = echoload(&["run", &sink, "-t", "0.3", "--warmup", "0", "-q"]);
    let all = text(&out);
    assert!(all.contains("connection 0 never answered (is"), "{all}");
    assert!(all.contains("an echo service"), "{all}");
    assert!(!all.contains("1 echoes"), "{all}");
    let _ = std::fs::remove_file(&p);
}

/// Habits (iperf3): no short flag means something else than in iperf3: `-w` is the socket
/// buffer (it was the warm-up), `-s` (server there) and `-d` (debug) are not taken (they were
/// the size and the duration).
#[test]
fn short_flags_mean_what_they_mean_in_iperf3() {
    let srv = server_on("127.0.0.1");
    let t = addr(&srv, ServiceMode::Echo, Proto::Tcp).to_string();
    let p = tmp("wflag.json");
    let out = echoload(&[
        "run",
        &t,
        "-w",
        "256K",
        "-t",
        "0.2",
        "-O",
        "0",
        "-q",
        "--json",
        p.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(json(&p)["config"]["sock"]["send_buffer"], 256 << 10);
    for f in ["-s", "-d"] {
        let out = echoload(&["run", &t, f, "1", "-t", "0.2", "-O", "0", "-q"]);
        assert_eq!(out.status.code(), Some(2), "{f}: {}", text(&out));
    }
    let _ = std::fs::remove_file(&p);
}

/// Habits (sockperf, k6): mean and standard deviation in the table (they were in the JSON
/// only); a structured verdict in the JSON (`clean`, `exit_code`, `stopped_by`).
#[test]
fn table_has_mean_and_stddev_and_json_a_verdict() {
    let srv = server_on("127.0.0.1");
    let t = addr(&srv, ServiceMode::Echo, Proto::Tcp).to_string();
    let p = tmp("verdict.json");
    let out = echoload(&[
        "run",
        &t,
        "-t",
        "0.2",
        "-O",
        "0",
        "-q",
        "--json",
        p.to_str().unwrap(),
    ]);
    let all = text(&out);
    assert!(all.contains("mean ") && all.contains("stddev "), "{all}");
    let v = json(&p)["verdict"].clone();
    assert_eq!(v["clean"], true, "{all}");
    assert_eq!(v["exit_code"], 0, "{all}");
    assert_eq!(v["stopped_by"], "duration", "{all}");
    let _ = std::fs::remove_file(&p);
}

/// Bug 5: with `--reply-every` (sockperf wire) the headline rate was the reply rate ("100.00
/// msg/s" while 10k msg/s were sent); the rate sent is shown too.
#[test]
fn reply_every_shows_the_rate_sent() {
    let srv = server_on("127.0.0.1");
    let t = addr(&srv, ServiceMode::Sockperf, Proto::Udp).to_string();
    let out = echoload(&[
        "run",
        &t,
        "-u",
        "--wire",
        "sockperf",
        "-m",
        "rate",
        "-r",
        "10k",
        "--reply-every",
        "100",
        "-t",
        "0.5",
        "-O",
        "0",
        "-q",
    ]);
    let all = text(&out);
    let line = all
        .lines()
        .find(|l| l.trim_start().starts_with("sending"))
        .unwrap_or_else(|| panic!("no sending line: {all}"));
    assert!(
        line.contains("kmsg/s") && line.contains("every 100th"),
        "{all}"
    );
}

/// Bug 11: `-P 10000` against a server limited to 1,024 connections reported "connect 8922
/// io 54" and reset lines; now one line says how many connections were served.
#[test]
fn connections_beyond_the_servers_limit_are_summed_up() {
    let mut cfg = echoload::server::ServeConfig::loopback_ephemeral();
    cfg.max_conns = 4;
    let srv = echoload::server::spawn(cfg).unwrap();
    let t = addr(&srv, ServiceMode::Echo, Proto::Tcp).to_string();
    let out = echoload(&["run", &t, "-P", "10", "-t", "0.3", "-O", "0.1", "-q"]);
    let all = text(&out);
    assert!(
        all.contains("4 of 10 connections established and served"),
        "{all}"
    );
}
