//! Timing comes from a clock, not from counting sleeps (issue 13, item 4): KeDelayExecutionThread
//! rounds up to the clock interval (15.625 ms by default on Windows), so a limit converted into
//! a number of 5 ms housekeeping ticks takes three times as long. wsk-sim's
//! `delay_granularity_us` rounds the same way here.

mod common;

use std::io::Read;
use std::net::{Shutdown, SocketAddr};
use std::time::{Duration, Instant};

use common::harness::{config_with, load};
use common::*;
use control::config::{Mode, Proto};
use wskecho::stats::Counter;

const V4: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// Windows' default clock interval.
const CLOCK_INTERVAL_US: u64 = 15_625;

/// A source connection whose peer stops reading and then sends FIN: the graceful close can
/// never finish (the sends stay pending), so DisconnectTimeoutMs bounds it. 2000 ms must take
/// about 2 s, not 400 ticks of 15.6 ms (6.25 s).
#[test]
fn disconnect_timeout_is_measured_by_the_clock() {
    let (mut cfg, ports) = config_with(V4, &[(Proto::Tcp, Mode::Source)]);
    cfg.limits.disconnect_timeout_ms = 2000;
    let sim = wsk_sim::Config {
        delay_granularity_us: CLOCK_INTERVAL_US,
        ..wsk_sim::Config::default()
    };
    let drv = load(sim, Some(cfg)).unwrap();
    assert!(drv.ready);
    let mut s = connect(SocketAddr::new(V4, ports[0]));
    // Read a little to see the stream, then stop reading: the driver's sends stall.
    let mut buf = [0u8; 4096];
    s.read_exact(&mut buf).unwrap();
    // Wait (bounded) until the byte count has stopped moving for 500 ms: the socket buffers
    // are full and the driver's sends stay pending. (A single 100 ms pause is not proof on a
    // loaded 2-core machine: the flow may just have been descheduled, and then the FIN finds
    // no send pending and the graceful close rightly finishes at once.)
    let t_stall = Instant::now();
    let mut out = drv.counter(Counter::TcpBytesOut);
    let mut still = 0;
    while t_stall.elapsed() < Duration::from_secs(10) && still < 5 {
        std::thread::sleep(Duration::from_millis(100));
        let now = drv.counter(Counter::TcpBytesOut);
        still = if now == out { still + 1 } else { 0 };
        out = now;
    }
    let closed0 = drv.counter(Counter::ConnClosed);
    let t0 = Instant::now();
    s.shutdown(Shutdown::Write).unwrap();
    let mut took = None;
    while t0.elapsed() < Duration::from_secs(12) {
        if drv.counter(Counter::ConnClosed) > closed0 {
            took = Some(t0.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = took.expect("the stuck graceful close was never aborted");
    eprintln!("DisconnectTimeoutMs=2000 with {CLOCK_INTERVAL_US} us sleeps: closed after {took:?}");
    assert!(
        took >= Duration::from_millis(1900),
        "closed too early: {took:?}"
    );
    assert!(
        took < Duration::from_millis(3500),
        "timeout counted in sleeps: {took:?}"
    );
    drop(s);
    assert_clean(&drv.unload());
}
