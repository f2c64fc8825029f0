//! SIO_WSK_QUERY_IDEAL_SEND_BACKLOG at accept (W36): every accepted connection asks for the
//! ideal send backlog and sizes its sends by the answer (C37), and connections that die or an
//! unload while queries may be pending leave nothing behind.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::harness::{config_with, load};
use common::*;
use control::config::{Mode, Proto};

/// The sim answers the query with `ideal_send_backlog`; the driver keeps that much in flight
/// across its 8 send slots (one per list entry for multi-entry zero-copy), so each send is an
/// eighth of it.
#[test]
fn accept_queries_the_ideal_send_backlog() {
    let (cfg, ports) = config_with(V4, &[(Proto::Tcp, Mode::Echo)]);
    let sim = wsk_sim::Config {
        ideal_send_backlog: 200_000,
        ..wsk_sim::Config::default()
    };
    let drv = load(sim, Some(cfg)).unwrap();
    assert!(drv.ready);
    let mut out = [0usize; 8];
    let (q0, _, n0) = wskecho::send_backlog_state(&mut out).unwrap();
    assert_eq!((q0, n0), (0, 0), "no connection yet, no query");

    let addr = SocketAddr::new(V4, ports[0]);
    let mut a = connect(addr);
    let mut b = connect(addr);
    let data = payload(1, 100_000);
    assert_eq!(tcp_echo(&mut a, &data), data);
    assert_eq!(tcp_echo(&mut b, &data[..1000]), &data[..1000]);

    let t0 = Instant::now();
    loop {
        let (queries, last, n) = wskecho::send_backlog_state(&mut out).unwrap();
        if queries >= 2 && n == 2 {
            assert_eq!(last, 200_000, "the value the sim reports");
            assert_eq!(
                &out[..n],
                &[25_000, 25_000],
                "send size = ideal backlog / 8 slots"
            );
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "queries {queries}, live {n}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(a);
    drop(b);
    assert_clean(&drv.unload());
}

/// Connections that close at once (the query may still be pending, its completion then
/// cancelled by the close) and an unload with connections open: nothing leaks, and the
/// context's query IRP is reused cleanly by later connections.
#[test]
fn short_connections_and_unload_with_queries() {
    let (cfg, ports) = config_with(V4, &[(Proto::Tcp, Mode::Echo), (Proto::Tcp, Mode::Source)]);
    let sim = wsk_sim::Config {
        ideal_send_backlog: 8 * 1024,
        pend_rate: 0.6,
        ..wsk_sim::Config::default()
    };
    let drv = load(sim, Some(cfg)).unwrap();
    assert!(drv.ready);
    for i in 0..60u64 {
        let s = connect(SocketAddr::new(V4, ports[(i % 2) as usize]));
        drop(s);
    }
    let mut keep = Vec::new();
    for i in 0..4u64 {
        let mut s = connect(SocketAddr::new(V4, ports[0]));
        let d = payload(i, 3000);
        assert_eq!(tcp_echo(&mut s, &d), d);
        keep.push(s);
    }
    let mut out = [0usize; 16];
    let (queries, last, _) = wskecho::send_backlog_state(&mut out).unwrap();
    assert!(queries >= 4, "queries {queries}");
    assert_eq!(last, 8 * 1024);
    assert_clean(&drv.unload());
    drop(keep);
}
