//! Unload's ordering (issue 13, items 5 and 6).

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::harness::{config_with, load};
use common::*;
use control::config::{Mode, Proto};
use wskecho::stats::Counter;

const V4: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// C30: every completion routine armed while traffic ran has returned when DriverUnload
/// returns (unload waits for them after WskDeregister, before freeing anything), and the
/// count really follows the routines (it is non-zero while sends are in flight).
#[test]
fn unload_returns_after_every_completion_routine() {
    assert_eq!(
        wskecho::routines_outstanding(),
        0,
        "nothing armed before load"
    );
    let (mut cfg, ports) = config_with(V4, &[(Proto::Tcp, Mode::Source), (Proto::Udp, Mode::Echo)]);
    cfg.limits.disconnect_timeout_ms = 200;
    let drv = load(wsk_sim::Config::default(), Some(cfg)).unwrap();
    assert!(drv.ready);
    // A source connection whose reader is slow keeps sends pending.
    let mut s = connect(SocketAddr::new(V4, ports[0]));
    let mut buf = vec![0u8; 65536];
    s.read_exact(&mut buf[..1024]).unwrap();
    let u = udp_client(V4);
    let to = SocketAddr::new(V4, ports[1]);
    let mut seen = 0;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) && seen == 0 {
        let _ = u.send_to(b"ping", to);
        seen = wskecho::routines_outstanding();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(seen > 0, "sends in flight are counted");
    assert!(drv.counter(Counter::TcpBytesOut) > 0);
    let _ = s.write_all(b"x");
    let findings = drv.unload();
    assert_eq!(
        wskecho::routines_outstanding(),
        0,
        "a completion routine outlived DriverUnload"
    );
    drop(s);
    assert_clean(&findings);
}
