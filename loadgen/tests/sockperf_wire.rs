//! `--wire sockperf` against the real `sockperf server` binary (skipped, with a message, when
//! sockperf is not installed; ./test.sh installs it).

#![cfg(unix)]
// Every unsafe block states why it is sound.
#![deny(clippy::undocumented_unsafe_blocks)]

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::quick;
use echoload::client::{Mode, Proto, Wire};
use echoload::run;

fn have_sockperf() -> bool {
    let ok = Command::new("sockperf")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        eprintln!("SKIPPED: `sockperf` is not on PATH (apt-get install sockperf)");
    }
    ok
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `sockperf server` on a free loopback port (TCP or UDP) and waits until it answers.
fn sockperf_server(tcp: bool) -> (Server, SocketAddr) {
    let port = if tcp {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let mut cmd = Command::new("sockperf");
    cmd.args(["server", "-i", "127.0.0.1", "-p", &port.to_string()]);
    if tcp {
        cmd.arg("--tcp");
    }
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sockperf");
    let srv = Server(child);
    let a: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        if tcp {
            if TcpStream::connect_timeout(&a, Duration::from_millis(100)).is_ok() {
                break;
            }
        } else {
            // A UDP ping-pong that gets answers proves the server is up.
            let mut c = quick(a, Proto::Udp, Mode::Pingpong);
            c.wire = Wire::Sockperf;
            c.duration = Duration::from_millis(50);
            c.warmup = Duration::ZERO;
            if run(&c).recv_msgs > 0 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (srv, a)
}

fn sockperf_cfg(a: SocketAddr, proto: Proto, mode: Mode) -> echoload::client::RunConfig {
    let mut c = quick(a, proto, mode);
    c.wire = Wire::Sockperf;
    c
}

#[test]
fn udp_pingpong_rate_and_sink_against_sockperf_server() {
    if !have_sockperf() {
        return;
    }
    let (srv, a) = sockperf_server(false);
    let r = run(&sockperf_cfg(a, Proto::Udp, Mode::Pingpong));
    assert!(r.clean(false), "{}", r.table());
    assert!(
        r.recv_msgs > 100 && r.latency_us.count > 100,
        "{}",
        r.table()
    );

    let mut c = sockperf_cfg(a, Proto::Udp, Mode::Rate);
    c.rate = Some(5_000.0);
    c.reply_every = 10;
    let r = run(&c);
    assert!(r.clean(false), "{}", r.table());
    // One reply per ten messages, none missing.
    let ratio = r.sent_msgs as f64 / r.recv_msgs as f64;
    assert!((9.0..11.0).contains(&ratio), "{}", r.table());

    let mut c = sockperf_cfg(a, Proto::Udp, Mode::Sink);
    c.rate = Some(20_000.0);
    let r = run(&c);
    assert!(
        r.clean(false) && r.sent_msgs > 4_000 && r.recv_msgs == 0,
        "{}",
        r.table()
    );

    // sockperf prints what it counted when interrupted: our messages must be among them.
    let mut srv = srv;
    // SAFETY: plain kill(2) on the child we spawned.
    unsafe { libc::kill(srv.0.id() as i32, libc::SIGINT) };
    let out = srv.0.stdout.take().map(|mut o| {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut o, &mut s);
        s
    });
    let out = out.unwrap_or_default();
    let total: u64 = out
        .lines()
        .find_map(|l| {
            l.split("Total ")
                .nth(1)
                .and_then(|t| t.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or_else(|| panic!("no total in sockperf output: {out}"));
    assert!(
        total >= 5_000,
        "sockperf server counted only {total}: {out}"
    );
}

#[test]
fn tcp_pingpong_and_stream_against_sockperf_server() {
    if !have_sockperf() {
        return;
    }
    let (_srv, a) = sockperf_server(true);
    let r = run(&sockperf_cfg(a, Proto::Tcp, Mode::Pingpong));
    assert!(r.clean(false), "{}", r.table());
    assert!(r.recv_msgs > 100, "{}", r.table());
    let mut c = sockperf_cfg(a, Proto::Tcp, Mode::Stream);
    c.size = 1000;
    c.window_bytes = 64 * 1000;
    let r = run(&c);
    assert!(r.clean(false), "{}", r.table());
    assert!(r.recv_msgs > 100, "{}", r.table());
}
