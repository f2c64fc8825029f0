//! Regression tests of the bugs a new user hit (issue 11): each one failed before its fix.

// Every unsafe block states why it is sound.
#![deny(clippy::undocumented_unsafe_blocks)]

mod common;

// The Linux-only test below (TCP_CORK) is the one that writes through a listener of its own.
#[cfg(target_os = "linux")]
use std::io::Write;
#[cfg(target_os = "linux")]
use std::net::TcpListener;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{addr, quick, server_on};
use control::protocol::Mode as ServiceMode;
use echoload::client::{Mode, Proto};
use echoload::run;

/// A UDP port on 127.0.0.1 where nothing listens (bound once by us, then closed).
fn closed_udp_port() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Bug 3: a UDP sink to a closed port got no error (sendmmsg drops the ECONNREFUSED of a
/// later datagram of its batch); before the fix: clean, connect 0, ~40k msg/s "sent".
#[test]
fn udp_sink_to_closed_port_is_refused() {
    for gso in [true, false] {
        let mut cfg = quick(closed_udp_port(), Proto::Udp, Mode::Sink);
        cfg.gso = gso;
        let r = run(&cfg);
        assert!(!r.clean(true), "gso {gso}: {}", r.table());
        assert!(r.errors.connect + r.errors.io >= 1, "{}", r.table());
        assert!(
            r.messages.iter().any(|m| m.contains("refused")),
            "{:?}",
            r.messages
        );
    }
}

/// Bug 3: the discard server going away in the middle of a UDP sink run is noticed.
#[test]
fn udp_sink_notices_the_server_going_away() {
    let srv = server_on("127.0.0.1");
    let a = addr(&srv, ServiceMode::Discard, Proto::Udp);
    let mut cfg = quick(a, Proto::Udp, Mode::Sink);
    cfg.duration = Duration::from_millis(1500);
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        srv.stop().unwrap();
    });
    let r = run(&cfg);
    stopper.join().unwrap();
    assert!(!r.clean(true), "{}", r.table());
    assert!(
        r.messages.iter().any(|m| m.contains("refused")),
        "{:?}",
        r.messages
    );
}

/// Bug 2: TCP source whose server sends its last bytes and the end-of-file in one segment
/// (TCP_CORK holds the data until the FIN joins it): the EOF arrives in the same edge-triggered
/// event as the data, and a short read used to end the reading. Before the fix the run
/// reported the full duration measured, no error, clean.
#[cfg(target_os = "linux")]
#[test]
fn tcp_source_sees_eof_that_comes_with_data() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        std::thread::sleep(Duration::from_millis(150));
        socket2::SockRef::from(&c).set_cork(true).unwrap();
        let mut buf = vec![0u8; 1000];
        control::protocol::pattern::fill(0, &mut buf);
        c.write_all(&buf).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        // Keep the socket (no RST) until the client is done.
        std::thread::sleep(Duration::from_millis(1500));
    });
    let mut cfg = quick(a, Proto::Tcp, Mode::Source);
    cfg.warmup = Duration::ZERO;
    cfg.duration = Duration::from_secs(1);
    let r = run(&cfg);
    h.join().unwrap();
    assert!(!r.clean(true), "{}", r.table());
    assert!(
        r.messages
            .iter()
            .any(|m| m.contains("closed by the server")),
        "{:?}",
        r.messages
    );
}

fn tmp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("echoload-reg-{}-{name}", std::process::id()))
}

/// Bug 1: `echoload run ... --json-stdout | true` panicked ("failed printing to stdout",
/// exit 101). Now the output is dropped and the run ends as it would have.
#[test]
fn closed_stdout_ends_quietly() {
    let srv = server_on("127.0.0.1");
    let t = addr(&srv, ServiceMode::Echo, Proto::Tcp).to_string();
    for extra in [&["--json-stdout"][..], &[][..]] {
        let mut child = Command::new(common::bin())
            .args([
                "run",
                "--target",
                &t,
                "--duration",
                "0.3s",
                "--warmup",
                "0s",
                "-q",
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Close the reading end before the report is printed.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{extra:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// Bug 4: a run that moved no data exited 0: source mode against an echo port (the echo
/// server waits for data that never comes) and a zero duration.
#[test]
fn run_that_moved_nothing_fails() {
    let srv = server_on("127.0.0.1");
    let echo = addr(&srv, ServiceMode::Echo, Proto::Tcp);
    let r = run(&quick(echo, Proto::Tcp, Mode::Source));
    assert!(!r.clean(true), "{}", r.table());
    assert!(
        r.messages
            .iter()
            .any(|m| m.contains("nothing was received")),
        "{:?}",
        r.messages
    );
    let mut cfg = quick(echo, Proto::Tcp, Mode::Pingpong);
    cfg.duration = Duration::ZERO;
    let r = run(&cfg);
    assert!(!r.clean(true), "{}", r.table());
    let out = Command::new(common::bin())
        .args(["run", "--target", &echo.to_string(), "--mode", "source"])
        .args(["--duration", "0.3s", "--warmup", "0s", "-q"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// Bug 6: SIGINT/SIGTERM used to kill the run with no report and no JSON. Now sending stops,
/// the report of the measured part is printed and written, exit 130 / 143.
#[cfg(unix)]
#[test]
fn signal_stops_the_run_and_reports() {
    let srv = server_on("127.0.0.1");
    let t = addr(&srv, ServiceMode::Echo, Proto::Tcp).to_string();
    for (sig, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let json = tmp(&format!("sig{sig}.json"));
        let _ = std::fs::remove_file(&json);
        let child = Command::new(common::bin())
            .args([
                "run",
                "--target",
                &t,
                "--duration",
                "20s",
                "--warmup",
                "0.2s",
                "-q",
            ])
            .arg("--json")
            .arg(&json)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1200));
        // SAFETY: kill() on our own child's pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, sig);
        }
        let began = std::time::Instant::now();
        let out = child.wait_with_output().unwrap();
        assert!(began.elapsed() < Duration::from_secs(5), "slow to stop");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(code), "{text}");
        assert!(text.contains("stopped by SIG"), "{text}");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let d = v["duration_s"].as_f64().unwrap();
        assert!((0.5..3.0).contains(&d), "measured {d} s");
        assert!(v["recv_msgs"].as_u64().unwrap() > 0, "{v}");
        let _ = std::fs::remove_file(&json);
    }
}

/// Bug 12: `--json` into a directory that does not exist failed only after the whole run.
#[test]
fn json_path_checked_before_sending() {
    let srv = server_on("127.0.0.1");
    let t = addr(&srv, ServiceMode::Echo, Proto::Tcp).to_string();
    let began = std::time::Instant::now();
    let out = Command::new(common::bin())
        .args([
            "run",
            "--target",
            &t,
            "--duration",
            "5s",
            "--warmup",
            "0s",
            "-q",
        ])
        .args(["--json", "/nonexistent-echoload-dir/r.json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    assert!(
        began.elapsed() < Duration::from_secs(3),
        "ran before checking"
    );
}

fn run_to_json(target: &str, proto: &str, size: &str, json: &std::path::Path) -> Child {
    Command::new(common::bin())
        .args(["run", "--target", target, "--proto", proto, "--size", size])
        .args(["--duration", "0.6s", "--warmup", "0s", "-q", "--json"])
        .arg(json)
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

fn merge(files: &[&std::path::Path]) -> (Option<i32>, String) {
    let out = Command::new(common::bin())
        .arg("merge")
        .args(files)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Bug 7: merge summed runs that do not belong together (TCP with UDP, 64 B with 512 B, the
/// same file twice) and runs made one after the other as if concurrent.
#[test]
fn merge_refuses_mismatched_and_duplicate_runs() {
    let srv = server_on("127.0.0.1");
    let tcp = addr(&srv, ServiceMode::Echo, Proto::Tcp).to_string();
    let udp = addr(&srv, ServiceMode::Echo, Proto::Udp).to_string();
    let f = |n: &str| tmp(&format!("merge-{n}.json"));
    // a and b run at the same time; c is UDP; d is 512 B; e runs after a and b.
    let mut a = run_to_json(&tcp, "tcp", "64", &f("a"));
    let mut b = run_to_json(&tcp, "tcp", "64", &f("b"));
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    assert!(run_to_json(&udp, "udp", "64", &f("c"))
        .wait()
        .unwrap()
        .success());
    assert!(run_to_json(&tcp, "tcp", "512", &f("d"))
        .wait()
        .unwrap()
        .success());
    assert!(run_to_json(&tcp, "tcp", "64", &f("e"))
        .wait()
        .unwrap()
        .success());

    let (code, err) = merge(&[&f("a"), &f("b")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("overlap"), "{err}");
    for other in ["c", "d"] {
        let (code, err) = merge(&[&f("a"), &f(other)]);
        assert_eq!(code, Some(2), "{other}: {err}");
        assert!(err.contains("cannot merge"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let (code, err) = merge(&[&f("a"), &f("a")]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("same run"), "{err}");
    // A copy under another name is the same run too (detected by run_id, not file name).
    std::fs::copy(f("a"), f("a-copy")).unwrap();
    let (code, err) = merge(&[&f("a"), &f("a-copy")]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = merge(&[&f("a"), &f("e")]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("do not overlap"), "{err}");
    for n in ["a", "b", "c", "d", "e", "a-copy"] {
        let _ = std::fs::remove_file(f(n));
    }
}

/// Bug 13: warm-up traffic was counted on one side only. A UDP echo that holds every datagram
/// of its first 0.5 s and then answers them all makes the replies to the warm-up's messages
/// arrive inside the measured window: they used to count as received (received > sent by
/// about the warm-up's message count). Now a reply counts when its message was sent inside
/// the window, like the sent side.
#[test]
fn warmup_counted_on_both_sides_over_the_same_window() {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let a = sock.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut held: Vec<(Vec<u8>, SocketAddr)> = Vec::new();
        let mut first: Option<std::time::Instant> = None;
        let t0 = std::time::Instant::now();
        let mut idle = 0;
        // Bounded: ends 20 idle polls (0.4 s) after the client stops, 10 s at most.
        while idle < 20 && t0.elapsed() < Duration::from_secs(10) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                idle += 1;
                continue;
            };
            idle = 0;
            let start = *first.get_or_insert_with(std::time::Instant::now);
            if start.elapsed() < Duration::from_millis(500) {
                held.push((buf[..n].to_vec(), from));
                continue;
            }
            for (i, (m, to)) in held.drain(..).enumerate() {
                sock.send_to(&m, to).unwrap();
                // Paced a little, so the client's receive buffer can take the burst.
                if i % 64 == 63 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            sock.send_to(&buf[..n], from).unwrap();
        }
    });
    let mut cfg = quick(a, Proto::Udp, Mode::Rate);
    cfg.rate = Some(5000.0);
    cfg.warmup = Duration::from_millis(300);
    cfg.duration = Duration::from_millis(700);
    cfg.udp_timeout = Duration::from_secs(2);
    let r = run(&cfg);
    h.join().unwrap();
    assert!(r.sent_msgs > 3000, "{}", r.table());
    // Before the fix: received = sent + about 1500 (the warm-up's replies). A loaded machine
    // may drop some of the held burst (lost, whole run), so: never more received than sent,
    // and every message sent in the window received or lost.
    assert!(r.recv_msgs <= r.sent_msgs, "{}", r.table());
    assert!(r.recv_msgs + r.errors.lost >= r.sent_msgs, "{}", r.table());
    if r.errors.lost == 0 {
        assert_eq!(r.sent_msgs, r.recv_msgs, "{}", r.table());
    }
}

/// Bug 13: when nearly every reply is "corrupted", the report says "wrong --wire?".
#[test]
fn wrong_wire_is_hinted() {
    let srv = server_on("127.0.0.1");
    let a = addr(&srv, ServiceMode::Echo, Proto::Udp);
    let mut cfg = quick(a, Proto::Udp, Mode::Pingpong);
    cfg.wire = echoload::client::Wire::Sockperf;
    let r = run(&cfg);
    assert!(!r.clean(true));
    assert!(
        r.messages.iter().any(|m| m.contains("wrong --wire?")),
        "{:?}",
        r.messages
    );
}
