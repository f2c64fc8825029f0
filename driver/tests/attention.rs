//! Housekeeping visits the connections that need it (issue 13 item 12): between the periodic
//! sweeps of the deadlines (every 100 ms) an idle tick visits only the attention list, so its
//! cost follows the connections with work (a resume to retry, a list to give back, a shutdown
//! to bound), not the open ones.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::harness::{config_with, load};
use common::*;
use control::config::{Mode, Proto};

#[test]
fn idle_ticks_do_not_visit_idle_connections() {
    const CONNS: u64 = 50;
    let (cfg, ports) = config_with(V4, &[(Proto::Tcp, Mode::Echo)]);
    let drv = load(wsk_sim::Config::default(), Some(cfg)).unwrap();
    let addr = SocketAddr::new(V4, ports[0]);
    let mut conns: Vec<_> = (0..CONNS).map(|_| connect(addr)).collect();
    for (i, s) in conns.iter_mut().enumerate() {
        let msg = payload(i as u64, 100);
        assert_eq!(tcp_echo(s, &msg), msg);
    }
    // Let retained lists go back and the attention list empty.
    std::thread::sleep(Duration::from_millis(300));
    let (t0, v0) = wskecho::housekeeping_counts().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let (t1, v1) = wskecho::housekeeping_counts().unwrap();
    let (ticks, visits) = (t1 - t0, v1 - v0);
    eprintln!("{ticks} ticks, {visits} visits of {CONNS} idle connections");
    assert!(ticks >= 10, "the housekeeper ran: {ticks} ticks");
    // Scanning every connection every tick would be CONNS * ticks visits; the sweeps alone
    // are CONNS per 100 ms.
    assert!(
        visits * 2 < CONNS * ticks,
        "{visits} visits in {ticks} ticks of {CONNS} idle connections"
    );
    assert!(
        visits >= CONNS,
        "the deadline sweeps still visit every connection"
    );
    // They still echo.
    for (i, s) in conns.iter_mut().enumerate() {
        let msg = payload(1000 + i as u64, 100);
        assert_eq!(tcp_echo(s, &msg), msg);
    }
    drop(conns);
    assert_clean(&drv.unload());
}

/// Issue 17 item 11: a connection that needs the housekeeper at every tick (indications
/// refused, the ring full behind a peer that never reads, so each tick re-arms its resume)
/// is visited at every tick, sweeps included: a sweep does not swallow the re-queue its own
/// visit made (which left the connection off the attention list until the next sweep, so a
/// resume or a release waited 100 ms instead of one tick).
#[test]
fn a_connection_needing_every_tick_is_visited_at_every_tick() {
    use std::io::Write;
    let (mut cfg, ports) = config_with(V4, &[(Proto::Tcp, Mode::Echo)]);
    cfg.limits.progress_timeout_ms = 600_000;
    cfg.limits.idle_timeout_ms = 600_000;
    let drv = load(wsk_sim::Config::default(), Some(cfg)).unwrap();
    let addr = SocketAddr::new(V4, ports[0]);
    let s = connect(addr);
    s.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Write until the driver back-pressures (its ring full of echo this peer never reads).
    let chunk = payload(7, 64 * 1024);
    for _ in 0..200 {
        if (&s).write_all(&chunk).is_err() {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let (t0, v0) = wskecho::housekeeping_counts().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let (t1, v1) = wskecho::housekeeping_counts().unwrap();
    let (ticks, visits) = (t1 - t0, v1 - v0);
    eprintln!("{ticks} ticks, {visits} visits of the one connection needing each of them");
    assert!(ticks >= 10, "the housekeeper ran: {ticks} ticks");
    assert!(
        visits * 10 >= ticks * 9,
        "{visits} visits in {ticks} ticks of a connection that needs every tick"
    );
    drop(s);
    assert_clean(&drv.unload());
}
