//! UDP loss % and RFC 3550 jitter, end to end (issue 21's iperf3 habits): test servers whose
//! answers make both figures known in advance.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{bin, quick};
use echoload::client::{Mode, Proto};
use echoload::payload::{Header, HEADER_LEN};
use echoload::run;

/// A UDP echo on loopback that passes each echoload message through `f` (None: dropped).
/// Stops with the flag (bounded by a 20 s safety limit).
fn udp_echo(
    f: impl Fn(&mut [u8]) -> bool + Send + 'static,
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
        while !st.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(20) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            if f(&mut buf[..n]) {
                let _ = sock.send_to(&buf[..n], from);
            }
        }
    });
    (local, stop, h)
}

fn header(m: &[u8]) -> Header {
    Header::decode(&m[..HEADER_LEN]).expect("an echoload message")
}

/// Every odd-numbered reply carries a send time 10 ms earlier than the real one (header
/// re-signed, so it is intact): consecutive round trips differ by D = ±10 ms + the change of
/// the real round trip, and RFC 3550's J_i = J_{i-1} + (|D| - J_{i-1}) / 16 climbs to
/// 10 ms (1 - (15/16)^(n-1)) after n replies. The exact arithmetic is `stats::tests`; here
/// the wiring. A scheduling stall (hundreds of ms on a loaded machine) is one long round
/// trip: two large |D|, which only push the estimate up, and never past 10 ms + the longest
/// round trip. So: at least 8 ms (tens of µs without the shift; about 5 ms if the round trips
/// themselves were smoothed instead of their differences), at most 10 ms + max.
#[test]
fn jitter_end_to_end_follows_the_formula() {
    const SHIFT_NS: u64 = 10_000_000;
    let (addr, stop, h) = udp_echo(|m| {
        let mut hd = header(m);
        if hd.seq % 2 == 1 {
            hd.ts_ns = hd.ts_ns.saturating_sub(SHIFT_NS);
            hd.encode(m);
        }
        true
    });
    let mut cfg = quick(addr, Proto::Udp, Mode::Pingpong);
    cfg.interval = Duration::from_millis(100);
    let r = run(&cfg);
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
    let t = r.table();
    assert!(r.recv_msgs >= 100, "{t}");
    assert_eq!(r.jitter_flows, 1, "{t}");
    let got = r.jitter_us.expect("a UDP ping-pong has a jitter figure");
    let high = 10_000.0 + r.latency_us.max;
    assert!(
        (8_000.0..=high).contains(&got),
        "jitter {got:.1} µs, RFC 3550 gives 10000 µs (at most {high:.0} with stalls)\n{t}"
    );
    // The last interval carries the estimate as it stood at the end of the run (kept in
    // whole ns there).
    let last = r.intervals.last().unwrap().jitter_us;
    assert!(
        (last - got).abs() < 0.01,
        "{last} vs {got}: {:?}",
        r.intervals
    );
    // A TCP run has none.
    let tcp = echoload::results::report::RunReport::new(
        &quick(addr, Proto::Tcp, Mode::Pingpong),
        &echoload::client::Measurement::failed("none".into()),
    );
    assert_eq!(tcp.jitter_us, None);
}

/// A server that drops every fourth message (sequence 3 mod 4) of an open-loop run at
/// 4,000 msg/s: each 0.25 s interval loses a quarter of its replies, and says so in the
/// interval where the gap shows, not all at the end; the intervals add up to the total,
/// which is exact. (A loaded machine may drop more, in a socket buffer while the client or
/// this server is descheduled: never less.)
#[test]
fn loss_is_counted_per_interval() {
    let (addr, stop, h) = udp_echo(|m| header(m).seq % 4 != 3);
    let mut cfg = quick(addr, Proto::Udp, Mode::Rate);
    cfg.rate = Some(4_000.0);
    cfg.duration = Duration::from_secs(1);
    cfg.interval = Duration::from_millis(250);
    let r = run(&cfg);
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
    let t = r.table();
    assert_eq!(r.recv_msgs + r.errors.lost, r.sent_msgs, "{t}");
    // The measured sequences are one range: a quarter of it, less one at each end at most.
    assert!(r.errors.lost + 2 >= r.sent_msgs / 4, "{t}");
    assert!(r.loss_pct > 24.0, "{t}");
    assert_eq!(r.intervals.len(), 4, "{:?}", r.intervals);
    // An interval a stall left (nearly) without replies shows no gaps: the others do.
    let busy: Vec<_> = r.intervals.iter().filter(|i| i.recv_msgs >= 50).collect();
    assert!(busy.len() >= 2, "{:?}", r.intervals);
    for iv in busy {
        assert!(
            iv.loss_pct > 20.0,
            "interval {:.2}-{:.2} s: loss {:.2} % ({} lost, {} received)\n{t}",
            iv.start_s,
            iv.end_s,
            iv.loss_pct,
            iv.lost,
            iv.recv_msgs
        );
    }
    let lost: u64 = r.intervals.iter().map(|i| i.lost).sum();
    assert_eq!(lost, r.errors.lost, "{:?}", r.intervals);
    assert!(t.contains(&format!("loss {:.3} %", r.loss_pct)), "{t}");
}

/// The command line: `-i` lines of a UDP run have the loss % and jitter columns, the table
/// its `udp` line and the JSON `jitter_us` and each interval's `loss_pct` / `jitter_us`.
#[test]
fn cli_shows_loss_and_jitter() {
    let (addr, stop, h) = udp_echo(|m| header(m).seq % 10 != 9);
    let dir = std::env::temp_dir().join(format!("echoload-udpq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("r.json");
    let out = Command::new(bin())
        .args([
            "run",
            &addr.to_string(),
            "-u",
            "-m",
            "rate",
            "-r",
            "2000",
            "-t",
            "0.6",
        ])
        .args(["-O", "0.1", "-i", "0.3", "-q", "--allow-loss", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let head = text.lines().next().unwrap();
    assert!(
        head.contains("loss %") && head.contains("jitter µs"),
        "{text}"
    );
    let loss: f64 = text
        .split("  udp         loss ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no udp line: {text}"));
    // One in ten dropped on purpose (more only if a loaded machine dropped some too).
    assert!(loss > 9.0, "{text}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(v["jitter_us"].as_f64().is_some(), "{v}");
    for iv in v["intervals"].as_array().unwrap() {
        let l = iv["loss_pct"].as_f64().unwrap();
        assert!(l > 6.0 || iv["recv_msgs"].as_u64() < Some(50), "{iv}");
        assert!(iv["jitter_us"].as_f64().is_some(), "{iv}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
