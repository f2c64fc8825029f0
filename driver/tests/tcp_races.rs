//! TCP echo against the orders a peer's FIN or RST can take relative to the driver's callbacks
//! (issue 17 items 2 and 8), with the suites' unkind orders on (`disconnect-race`: the
//! graceful WskDisconnectEvent overlaps the last WskReceiveEvent; `accept-race`: an accepted
//! socket's events before its accept callback returns). Plain listening sockets and stream
//! sockets (WSK_FLAG_STREAM_SOCKET + WskListen) alike.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::harness::{config_with, load};
use common::*;
use control::config::{Mode, Proto};
use wskecho::stats::Counter;

fn config(stream: bool) -> (control::config::Config, u16) {
    let (mut cfg, ports) = config_with(V4, &[(Proto::Tcp, Mode::Echo)]);
    let list: Vec<_> = cfg
        .services
        .as_slice()
        .iter()
        .map(|s| s.with_stream(stream))
        .collect();
    cfg.services = control::config::Services::from_slice(&list).unwrap();
    (cfg, ports[0])
}

/// The client writes 1,500 bytes and half-closes at once; it must read all 1,500 back, byte
/// for byte, then our FIN. Returns the tries (of `tries`) that came back short or wrong.
fn half_close_tries(stream: bool, tries: u64) -> Vec<String> {
    let (cfg, port) = config(stream);
    let drv = load(wsk_sim::Config::default(), Some(cfg)).unwrap();
    assert!(drv.ready);
    let addr = SocketAddr::new(V4, port);
    let mut bad = Vec::new();
    for i in 0..tries {
        let mut s = connect(addr);
        let data = payload(i, 1500);
        s.write_all(&data).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = Vec::new();
        let r = s.read_to_end(&mut got);
        if r.is_err() || got != data {
            bad.push(format!(
                "try {i}: {} of 1500 bytes back ({}), {}",
                got.len(),
                if got.len() <= data.len() && got[..] == data[..got.len()] {
                    "a clean prefix"
                } else {
                    "corrupted"
                },
                r.map_or_else(|e| format!("error {e}"), |_| "then FIN".into())
            ));
        }
    }
    eventually("all closed", || {
        drv.counter(Counter::ConnClosed) == drv.counter(Counter::ConnAccepted)
    });
    assert_clean(&drv.unload());
    bad
}

/// Issue 17 item 2: every byte indicated before the peer's FIN is echoed before ours goes
/// out, whatever the order of the last receive event and the disconnect event.
#[test]
fn half_close_echoes_every_byte_before_our_fin() {
    for stream in [false, true] {
        let bad = half_close_tries(stream, 25);
        eprintln!(
            "{} listener: {} of 25 tries short",
            if stream { "stream" } else { "plain" },
            bad.len()
        );
        assert!(bad.is_empty(), "stream {stream}: {bad:#?}");
    }
}

/// Issue 17 item 8 (and sim gap S-A): connections that send and close (FIN), close at once
/// (FIN, no data) or reset, as fast as they connect, on a stream-socket listener whose
/// accepted sockets enable their own callbacks. Every context comes back without waiting for
/// the idle timeout, and afterwards the full MaxConnections still echo.
#[test]
fn stream_listener_churn_leaves_no_context_stuck() {
    const MAX: u32 = 16;
    let (mut cfg, port) = config(true);
    cfg.limits.max_connections = MAX;
    // Long enough that a context stuck on a lost FIN or RST stays stuck for the test.
    cfg.limits.idle_timeout_ms = 600_000;
    cfg.limits.progress_timeout_ms = 600_000;
    let drv = load(wsk_sim::Config::default(), Some(cfg)).unwrap();
    assert!(drv.ready);
    let addr = SocketAddr::new(V4, port);
    for i in 0..300u64 {
        let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
            continue;
        };
        match i % 3 {
            0 => {
                let _ = (&s).write_all(&payload(i, 100));
                let _ = s.shutdown(std::net::Shutdown::Write);
            }
            1 => {}
            _ => {
                // Closing with the echo unread in the receive buffer resets (Linux sends RST).
                let _ = (&s).write_all(&payload(i, 100));
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.peek(&mut [0u8; 1]);
            }
        }
        drop(s);
        if i % 16 == 15 {
            // Let the closes catch up now and then, so the limit is not what refuses.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let accepted = drv.counter(Counter::ConnAccepted);
    let t0 = std::time::Instant::now();
    while drv.counter(Counter::ConnClosed) < drv.counter(Counter::ConnAccepted)
        && t0.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (accepted_now, closed) = (
        drv.counter(Counter::ConnAccepted),
        drv.counter(Counter::ConnClosed),
    );
    eprintln!(
        "{accepted} accepted during the churn, {} refused, {} still open 10 s after",
        drv.counter(Counter::ConnRefused),
        accepted_now - closed
    );
    assert_eq!(
        accepted_now,
        closed,
        "{} contexts stuck after the churn",
        accepted_now - closed
    );
    // The whole pool is free again: MAX connections at once all echo.
    let refused0 = drv.counter(Counter::ConnRefused);
    let mut conns: Vec<_> = (0..MAX).map(|_| connect(addr)).collect();
    for (i, s) in conns.iter_mut().enumerate() {
        let msg = payload(1000 + i as u64, 200);
        assert_eq!(tcp_echo(s, &msg), msg, "connection {i} after the churn");
    }
    assert_eq!(drv.counter(Counter::ConnRefused), refused0);
    drop(conns);
    eventually("all closed", || {
        drv.counter(Counter::ConnClosed) == drv.counter(Counter::ConnAccepted)
    });
    assert_clean(&drv.unload());
}

/// Issue 17 item 9 (G22): a zero-copy echo's retained list is given back by a send completion
/// on another thread while the receive callback that retained it is descheduled between its
/// last unlock (its reference dropped) and its return. The suites' `preempt` order produces
/// exactly that interleaving, the sim accepts such a release after the callback's last
/// kernel call and would flag one after which the callback entered the kernel again.
#[test]
fn retained_lists_go_back_between_the_callbacks_last_unlock_and_its_return() {
    let (cfg, port) = config(false);
    let drv = load(wsk_sim::Config::default(), Some(cfg)).unwrap();
    assert!(drv.ready);
    let addr = SocketAddr::new(V4, port);
    let mut s = connect(addr);
    let t0 = std::time::Instant::now();
    let mut echoes = 0u64;
    while wsk_sim::early_releases() == 0 && echoes < 5_000 && t0.elapsed() < Duration::from_secs(30)
    {
        let msg = payload(echoes, 1000);
        assert_eq!(tcp_echo(&mut s, &msg), msg);
        echoes += 1;
    }
    let early = wsk_sim::early_releases();
    eprintln!(
        "{early} early release(s) after {echoes} echoes, {} zero-copy sends",
        drv.counter(Counter::ZeroCopySends)
    );
    assert!(
        drv.counter(Counter::ZeroCopySends) > 0,
        "zero copy was used"
    );
    assert!(
        early > 0,
        "no release came between a callback's last unlock and its return"
    );
    drop(s);
    eventually("closed", || drv.counter(Counter::ConnClosed) == 1);
    assert_clean(&drv.unload());
}
