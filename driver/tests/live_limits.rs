//! Limits that change while the driver runs (issue 13, item 13): `config set` under traffic
//! takes effect at once for open connections and sockets, without a restart. The pool sizes
//! (MaxConnections, MaxRetainedBytes, SendRingBytes, UdpSendContexts) stay restart-only.

mod common;

use std::io::Read;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::harness::{config_with, load, Loaded};
use common::*;
use control::config::{Cidr, Limits, Mode, Proto};
use control::ioctl::SetConfig;
use wskecho::stats::Counter;

fn set_limits(drv: &Loaded, f: impl FnOnce(&mut Limits)) {
    let mut l = get_config(drv).limits;
    f(&mut l);
    assert_eq!(
        set_config(drv, &SetConfig::SetLimits(l.clone())),
        0,
        "set {l:?}"
    );
    assert_eq!(get_config(drv).limits, l, "config get shows the change");
}

/// Echo round trips on one connection (accepted before this returns) on a thread of its own
/// until `stop`.
fn pinger(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let mut s = connect(addr);
    assert_eq!(tcp_echo(&mut s, b"first"), b"first");
    std::thread::spawn(move || {
        let mut n = 0u64;
        let t0 = Instant::now();
        while !stop.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(30) {
            let msg = payload(n, 2048);
            assert_eq!(tcp_echo(&mut s, &msg), msg, "round {n}");
            n += 1;
        }
        n
    })
}

/// Waits until `c` has moved by more than `by` (bounded), returning the new value.
fn moved(drv: &Loaded, c: Counter, from: u64, by: u64) -> u64 {
    let t0 = Instant::now();
    loop {
        let v = drv.counter(c);
        if v > from + by || t0.elapsed() > Duration::from_secs(10) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn zero_copy_switches_off_and_on_under_traffic() {
    let (cfg, ports) = config_with(V4, &[(Proto::Tcp, Mode::Echo)]);
    // One list entry per indication: echo takes the zero-copy path whenever it may.
    let sim = wsk_sim::Config {
        split_indications: false,
        ..wsk_sim::Config::default()
    };
    let drv = load(sim, Some(cfg)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let t = pinger(SocketAddr::new(V4, ports[0]), stop.clone());
    let zc0 = moved(&drv, Counter::ZeroCopySends, 0, 20);
    assert!(zc0 > 20, "zero-copy in use before: {zc0}");
    set_limits(&drv, |l| l.zero_copy = false);
    // Sends issued before the change may still count; after a short settle none may.
    std::thread::sleep(Duration::from_millis(100));
    let zc1 = drv.counter(Counter::ZeroCopySends);
    let cp1 = drv.counter(Counter::CopySends);
    let cp2 = moved(&drv, Counter::CopySends, cp1, 50);
    assert!(cp2 > cp1 + 50, "echo went on through the copy path");
    assert_eq!(
        drv.counter(Counter::ZeroCopySends),
        zc1,
        "zero-copy after EnableZeroCopy=0"
    );
    set_limits(&drv, |l| l.zero_copy = true);
    let zc2 = moved(&drv, Counter::ZeroCopySends, zc1, 20);
    assert!(zc2 > zc1 + 20, "zero-copy back after EnableZeroCopy=1");
    stop.store(true, Ordering::SeqCst);
    assert!(t.join().unwrap() > 0);
    assert_clean(&drv.unload());
}

/// Issue 17 item 13: MaxRetainedBytesPerConnection is live, for connections already open. It
/// used to be copied into each connection at accept, so setting it to 0 (copy path only) left
/// an open connection on zero-copy.
#[test]
fn retained_bytes_per_connection_applies_to_an_open_connection() {
    let (cfg, ports) = config_with(V4, &[(Proto::Tcp, Mode::Echo)]);
    let sim = wsk_sim::Config {
        split_indications: false,
        ..wsk_sim::Config::default()
    };
    let drv = load(sim, Some(cfg)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Accepted (and echoing) before any change.
    let t = pinger(SocketAddr::new(V4, ports[0]), stop.clone());
    let zc0 = moved(&drv, Counter::ZeroCopySends, 0, 20);
    assert!(zc0 > 20, "zero-copy in use before: {zc0}");
    let per_conn = get_config(&drv).limits.max_retained_per_conn;
    set_limits(&drv, |l| l.max_retained_per_conn = 0);
    // Lists retained before the change may still be sent; after a short settle none may.
    std::thread::sleep(Duration::from_millis(100));
    let zc1 = drv.counter(Counter::ZeroCopySends);
    let cp1 = drv.counter(Counter::CopySends);
    let cp2 = moved(&drv, Counter::CopySends, cp1, 50);
    assert!(cp2 > cp1 + 50, "echo went on through the copy path");
    assert_eq!(
        drv.counter(Counter::ZeroCopySends),
        zc1,
        "zero-copy on the open connection after MaxRetainedBytesPerConnection=0"
    );
    set_limits(&drv, |l| l.max_retained_per_conn = per_conn);
    let zc2 = moved(&drv, Counter::ZeroCopySends, zc1, 20);
    assert!(zc2 > zc1 + 20, "zero-copy back with the budget restored");
    stop.store(true, Ordering::SeqCst);
    assert!(t.join().unwrap() > 0);
    assert_clean(&drv.unload());
}

#[test]
fn idle_and_disconnect_timeouts_apply_to_open_connections() {
    let (cfg, ports) = config_with(V4, &[(Proto::Tcp, Mode::Echo), (Proto::Tcp, Mode::Source)]);
    let drv = load(wsk_sim::Config::default(), Some(cfg)).unwrap();
    // An echo connection opened under the default IdleTimeoutMs (5 min).
    let mut idle = connect(SocketAddr::new(V4, ports[0]));
    assert_eq!(tcp_echo(&mut idle, b"hi"), b"hi");
    // A source connection whose peer stops reading: its graceful close will hang.
    let mut src = connect(SocketAddr::new(V4, ports[1]));
    let mut buf = [0u8; 4096];
    src.read_exact(&mut buf).unwrap();
    set_limits(&drv, |l| {
        l.idle_timeout_ms = 200;
        l.disconnect_timeout_ms = 300;
    });
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(
        idle.read(&mut buf).expect("FIN, not RST"),
        0,
        "idle limit applied"
    );
    // Wait until the source's sends are stuck (no byte moved for 500 ms), then FIN: the
    // graceful close is bounded by the new 300 ms, not the 2 s it was opened with.
    let t_stall = Instant::now();
    let (mut out, mut still) = (drv.counter(Counter::TcpBytesOut), 0);
    while t_stall.elapsed() < Duration::from_secs(10) && still < 5 {
        std::thread::sleep(Duration::from_millis(100));
        let now = drv.counter(Counter::TcpBytesOut);
        still = if now == out { still + 1 } else { 0 };
        out = now;
    }
    let closed0 = drv.counter(Counter::ConnClosed);
    let t0 = Instant::now();
    src.shutdown(Shutdown::Write).unwrap();
    while drv.counter(Counter::ConnClosed) == closed0 && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = t0.elapsed();
    assert!(
        took < Duration::from_millis(1500),
        "closed after {took:?}: DisconnectTimeoutMs=300 not applied to the open connection"
    );
    drop((idle, src));
    assert_clean(&drv.unload());
}

#[test]
fn allow_list_swaps_under_traffic() {
    let (cfg, ports) = config_with(V4, &[(Proto::Tcp, Mode::Echo)]);
    let drv = load(wsk_sim::Config::default(), Some(cfg)).unwrap();
    let addr = SocketAddr::new(V4, ports[0]);
    let stop = Arc::new(AtomicBool::new(false));
    // Accepted connections keep their echo: the list is checked at accept (TCP).
    let t = pinger(addr, stop.clone());
    let only_ten = [Cidr::parse("10.0.0.0/8").unwrap()];
    let any = [Cidr::ANY_V4, Cidr::ANY_V6];
    let refused0 = drv.counter(Counter::ConnRefused);
    // Swap back and forth while the pinger runs and new connections come and go.
    for round in 0..6 {
        let deny = round % 2 == 0;
        set_limits(&drv, |l| {
            l.set_allowed_sources(if deny { &only_ten } else { &any })
                .unwrap();
        });
        // One attempt (no retry: a refusal can reset the connection before connect returns).
        let echoed = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .ok()
            .is_some_and(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                std::io::Write::write_all(&mut s, b"x").is_ok() && {
                    let mut b = [0u8; 1];
                    matches!(s.read(&mut b), Ok(1))
                }
            });
        assert_eq!(
            echoed, !deny,
            "round {round}: allow-list {deny:?} not applied"
        );
    }
    assert_eq!(drv.counter(Counter::ConnRefused), refused0 + 3);
    stop.store(true, Ordering::SeqCst);
    assert!(
        t.join().unwrap() > 0,
        "the accepted connection echoed throughout"
    );
    assert_clean(&drv.unload());
}

#[test]
fn pool_sizes_stay_restart_only() {
    let (cfg, _) = config_with(V4, &[(Proto::Tcp, Mode::Echo)]);
    let drv = load(wsk_sim::Config::default(), Some(cfg)).unwrap();
    let before = get_config(&drv);
    for f in [
        (|l: &mut Limits| l.max_connections += 1) as fn(&mut Limits),
        |l| l.max_retained_total += 1,
        |l| l.send_ring_bytes *= 2,
        |l| l.udp_send_contexts += 1,
    ] {
        let mut l = before.limits.clone();
        f(&mut l);
        assert_ne!(set_config(&drv, &SetConfig::SetLimits(l)), 0);
        assert_eq!(get_config(&drv), before, "nothing changed");
    }
    assert_clean(&drv.unload());
}

/// Issue 17 item 4: a `config set` that fails half-way (a new service's port is taken) leaves
/// limits, allow-list and services exactly as they were. The old error path put the services
/// back but kept the new limits, allow-list included: `config get` showed them and a new
/// connection from 127.0.0.1 was refused by an allow-list that was never accepted.
#[test]
fn failed_replace_leaves_limits_and_allow_list_as_before() {
    let (cfg, ports) = config_with(V4, &[(Proto::Tcp, Mode::Echo), (Proto::Udp, Mode::Echo)]);
    let drv = load(wsk_sim::Config::default(), Some(cfg)).unwrap();
    assert!(drv.ready);
    let echo = SocketAddr::new(V4, ports[0]);
    let before = get_config(&drv);
    let taken = std::net::TcpListener::bind((V4, 0)).unwrap();
    let busy_port = taken.local_addr().unwrap().port();
    let mut new = before.clone();
    new.limits.idle_timeout_ms = 1234;
    new.limits.udp_rate_per_source = 7;
    new.limits
        .set_allowed_sources(&[Cidr::parse("10.0.0.0/8").unwrap()])
        .unwrap();
    // The UDP service goes (it is re-opened by the undo), the new one cannot bind.
    new.services = control::config::Services::from_slice(&[
        before.services.as_slice()[0],
        control::config::Service::new(Proto::Tcp, busy_port, Mode::Discard, V4),
    ])
    .unwrap();
    for round in 0..3 {
        let st = set_config(&drv, &SetConfig::Replace(new.clone()));
        assert_ne!(st, 0, "round {round}: a taken port fails the replace");
        assert_eq!(
            get_config(&drv),
            before,
            "round {round}: nothing half-applied"
        );
        // The allow-list the data path reads is the old one: 127.0.0.1 is still let in.
        let mut s = connect(echo);
        assert_eq!(
            tcp_echo(&mut s, b"still allowed"),
            b"still allowed",
            "round {round}"
        );
        let u = udp_client(V4);
        assert_eq!(
            udp_roundtrip(&u, SocketAddr::new(V4, ports[1]), b"udp").as_deref(),
            Some(&b"udp"[..]),
            "round {round}: the UDP service is back"
        );
    }
    assert_eq!(drv.counter(Counter::ConnRefused), 0);
    drop(taken);
    assert_clean(&drv.unload());
}
