//! Deliberately broken servers: every integrity error must be noticed, counted in its own
//! counter, reported, and turn the exit status non-zero (while the report is still written).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{bin, quick};
use echoload::client::{Mode, Proto};
use echoload::run;

/// A UDP echo that applies `f(index, datagram)` -> datagrams to send back. Stops with the flag
/// (bounded by a 20 s safety limit).
fn udp_server(
    answer: impl Fn(u64, &[u8]) -> Vec<Vec<u8>> + Send + 'static,
) -> (SocketAddr, Arc<AtomicBool>, JoinHandle<()>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let local = sock.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let h = std::thread::spawn(move || {
        let t0 = Instant::now();
        let mut buf = vec![0u8; 65_536];
        let mut index = 0u64;
        let mut held: Vec<(Vec<u8>, SocketAddr)> = Vec::new();
        while !st.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(20) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            for out in answer(index, &buf[..n]) {
                held.push((out, from));
            }
            for (m, to) in held.drain(..) {
                let _ = sock.send_to(&m, to);
            }
            index += 1;
        }
    });
    (local, stop, h)
}

/// A TCP echo for one connection at a time that passes the echoed byte stream through
/// `f(offset, bytes)`; closes the connection when `f` returns false.
fn tcp_server(f: impl Fn(u64, &mut [u8]) -> bool + Send + Sync + 'static) -> SocketAddr {
    tcp_server_ending(false, f)
}

/// Like [`tcp_server`]; with `reset`, the connection ends with an RST instead of a FIN.
fn tcp_server_ending(
    reset: bool,
    f: impl Fn(u64, &mut [u8]) -> bool + Send + Sync + 'static,
) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    let f = Arc::new(f);
    std::thread::spawn(move || {
        // Serves connections until the test process ends (each bounded below).
        for c in l.incoming().take(8) {
            let Ok(mut c) = c else { continue };
            let f = f.clone();
            std::thread::spawn(move || {
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = vec![0u8; 65_536];
                let mut off = 0u64;
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 || !f(off, &mut buf[..n]) || c.write_all(&buf[..n]).is_err() {
                        if reset {
                            let _ = socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO));
                        }
                        break;
                    }
                    off += n as u64;
                }
            });
        }
    });
    a
}

fn udp_pingpong(a: SocketAddr) -> echoload::client::RunConfig {
    let mut cfg = quick(a, Proto::Udp, Mode::Pingpong);
    cfg.udp_timeout = Duration::from_millis(50);
    cfg.warmup = Duration::ZERO;
    cfg
}

#[test]
fn udp_dropped_datagram_is_lost_not_corrupt() {
    let (a, stop, h) = udp_server(|i, d| if i == 10 { vec![] } else { vec![d.to_vec()] });
    let r = run(&udp_pingpong(a));
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
    assert_eq!(r.errors.lost, 1, "{}", r.table());
    assert_eq!(
        (r.errors.corrupted, r.errors.duplicated),
        (0, 0),
        "{}",
        r.table()
    );
    assert!(!r.clean(false) && r.clean(true), "{}", r.table());
    assert!(r.recv_msgs > 20, "{}", r.table());
}

#[test]
fn udp_corrupted_byte_is_counted() {
    let (a, stop, h) = udp_server(|i, d| {
        let mut d = d.to_vec();
        if i == 7 {
            let n = d.len() - 1;
            d[n] ^= 0x01;
        }
        vec![d]
    });
    let r = run(&udp_pingpong(a));
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
    assert_eq!(r.errors.corrupted, 1, "{}", r.table());
    assert_eq!(r.errors.lost, 0, "{}", r.table());
    assert!(!r.clean(true), "corruption is never allowed");
}

#[test]
fn udp_duplicate_and_reorder_are_counted_separately() {
    // Datagram 5 is echoed twice; datagrams 20/21 swap (the engine runs open loop so both are
    // in flight).
    let held = Arc::new(std::sync::Mutex::new(None::<Vec<u8>>));
    let (a, stop, h) = udp_server(move |i, d| match i {
        5 => vec![d.to_vec(), d.to_vec()],
        20 => {
            *held.lock().unwrap() = Some(d.to_vec());
            vec![]
        }
        21 => vec![d.to_vec(), held.lock().unwrap().take().unwrap()],
        _ => vec![d.to_vec()],
    });
    let mut cfg = quick(a, Proto::Udp, Mode::Rate);
    cfg.rate = Some(2_000.0);
    cfg.warmup = Duration::ZERO;
    let r = run(&cfg);
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
    assert_eq!(r.errors.duplicated, 1, "{}", r.table());
    assert_eq!(r.errors.reordered, 1, "{}", r.table());
    assert_eq!((r.errors.lost, r.errors.corrupted), (0, 0), "{}", r.table());
}

#[test]
fn tcp_corrupted_byte_is_an_error() {
    let a = tcp_server(|off, b| {
        if off <= 1000 && off + b.len() as u64 > 1000 {
            b[(1000 - off) as usize] ^= 0x80;
        }
        true
    });
    let r = run(&quick(a, Proto::Tcp, Mode::Pingpong));
    assert!(r.errors.corrupted >= 1, "{}", r.table());
    assert!(!r.clean(true));
    assert!(
        r.messages.iter().any(|m| m.contains("corrupt")),
        "{:?}",
        r.messages
    );
}

#[test]
fn tcp_server_closing_mid_run_gives_partial_report_and_failure_exit() {
    let t0 = Instant::now();
    let a = tcp_server(move |_, _| t0.elapsed() < Duration::from_millis(400));
    let json = std::env::temp_dir().join(format!("echoload-close-{}.json", std::process::id()));
    let out = Command::new(bin())
        .args([
            "run",
            "--target",
            &a.to_string(),
            "--mode",
            "pingpong",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "-q",
        ])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("closed by the server"), "{stdout}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(
        v["recv_msgs"].as_u64().unwrap() > 0,
        "partial results kept: {v}"
    );
    assert!(v["errors"]["io"].as_u64().unwrap() >= 1);
    let _ = std::fs::remove_file(&json);
}

#[test]
fn refused_targets_fail_clearly() {
    // Bind then drop, so the port is (almost certainly) closed.
    let tcp = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let r = run(&quick(tcp, Proto::Tcp, Mode::Pingpong));
    assert_eq!(r.errors.connect, 1, "{}", r.table());
    assert!(
        r.messages
            .iter()
            .any(|m| m.to_lowercase().contains("refused")),
        "{:?}",
        r.messages
    );

    let udp = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let r = run(&quick(udp, Proto::Udp, Mode::Pingpong));
    assert!(r.errors.connect + r.errors.io >= 1, "{}", r.table());
    assert!(
        r.messages.iter().any(|m| m.contains("refused")),
        "{:?}",
        r.messages
    );

    let out = Command::new(bin())
        .args([
            "run",
            "--target",
            &tcp.to_string(),
            "-t",
            "0.3s",
            "-O",
            "0s",
            "-q",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("refused"));
}

#[test]
fn tcp_reset_mid_run_is_reported() {
    // Reset after 100 echoed messages (not after a time: on a loaded machine the first
    // message may come late).
    let a = tcp_server_ending(true, move |off, _| off < 64 * 100);
    let mut cfg = quick(a, Proto::Tcp, Mode::Pingpong);
    cfg.warmup = Duration::ZERO;
    let r = run(&cfg);
    assert!(r.errors.io >= 1 && r.recv_msgs > 0, "{}", r.table());
    assert!(
        r.messages
            .iter()
            .any(|m| m.contains("reset") || m.contains("closed")),
        "{:?}",
        r.messages
    );
    assert!(
        r.duration_s < 0.29,
        "the run stops when its only connection is gone: {}",
        r.table()
    );
}

#[test]
fn udp_server_dying_mid_run_is_reported() {
    let (a, stop, h) = udp_server(|_, d| vec![d.to_vec()]);
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        stop.store(true, Ordering::Relaxed);
        h.join().unwrap();
    });
    let mut cfg = udp_pingpong(a);
    cfg.duration = Duration::from_millis(600);
    let r = run(&cfg);
    stopper.join().unwrap();
    assert!(r.recv_msgs > 0, "{}", r.table());
    // Either the ICMP port-unreachable surfaces (refused) or the replies just stop (lost).
    assert!(r.errors.io + r.errors.lost >= 1, "{}", r.table());
    assert!(!r.clean(false), "{}", r.table());
}

#[test]
fn stalled_server_shows_as_latency_not_as_lower_rate() {
    // The server stops answering for 150 ms once: an open-loop client must keep its schedule
    // and charge the stall to latency (no coordinated omission).
    let stalled = Arc::new(AtomicBool::new(false));
    let s2 = stalled.clone();
    let a = tcp_server(move |off, _| {
        if off > 64 * 200 && !s2.swap(true, Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(150));
        }
        true
    });
    let mut cfg = quick(a, Proto::Tcp, Mode::Rate);
    cfg.rate = Some(2_000.0);
    cfg.duration = Duration::from_millis(500);
    cfg.warmup = Duration::ZERO;
    let r = run(&cfg);
    assert!(r.clean(false), "{}", r.table());
    assert!(
        (950..=1050).contains(&r.sent_msgs),
        "schedule kept: {}",
        r.table()
    );
    assert!(
        r.latency_us.max >= 140_000.0,
        "stall visible: {}",
        r.table()
    );
    assert!(r.latency_us.p50 < 50_000.0, "{}", r.table());
    // About 300 messages (150 ms at 2000/s) waited behind the stall.
    assert!(r.latency_us.p90 > 10_000.0, "{}", r.table());
}

#[test]
fn broken_source_pattern_is_corruption() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut c, _)) = l.accept() {
            let mut b = vec![0u8; 10_000];
            control::protocol::pattern::fill(0, &mut b);
            b[5_000] ^= 0xff;
            let _ = c.write_all(&b);
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let r = run(&quick(a, Proto::Tcp, Mode::Source));
    assert_eq!(r.errors.corrupted, 1, "{}", r.table());
    assert!(
        r.messages.iter().any(|m| m.contains("offset 5000")),
        "{:?}",
        r.messages
    );
}
