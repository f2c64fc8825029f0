//! `echoload serve`'s UDP reflection and loop guard on loopback, on both back ends: a
//! privileged source port and the port of one of our services are dropped and counted by
//! default and answered when the rule is switched off; a loopback benchmark is not rate
//! limited unless the exemption is switched off. (Sources loopback cannot produce, and the
//! remote-source rate limit, are unit-tested in `server::guard`.)

use echoload::cli::ServeArgs;
use echoload::server::{self, Counters, ServeConfig, ServerHandle};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const N: u64 = 5;

fn spawn(cfg: ServeConfig, portable: bool) -> ServerHandle {
    if portable {
        server::spawn_portable(cfg).unwrap()
    } else {
        server::spawn(cfg).unwrap()
    }
}

fn wait_counters(h: &ServerHandle, f: impl Fn(&Counters) -> bool) -> Counters {
    let t0 = Instant::now();
    loop {
        let c = h.counters();
        if f(&c) {
            return c;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "timed out: {c}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends N datagrams from `u` to `to`; returns the replies (each read waits 200 ms at most).
fn send_n(u: &UdpSocket, to: SocketAddr) -> u64 {
    u.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    for i in 0..N {
        u.send_to(&[i as u8; 32], to).unwrap();
    }
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < N && u.recv_from(&mut buf).is_ok() {
        got += 1;
    }
    got
}

fn cfg_with(edit: impl FnOnce(&mut ServeArgs)) -> ServeConfig {
    let mut a = ServeArgs::ephemeral(LO);
    edit(&mut a);
    ServeConfig::from(&a)
}

/// A socket on a privileged port of 127.0.0.1 (needs root or CAP_NET_BIND_SERVICE).
fn privileged_socket() -> Option<UdpSocket> {
    (600..1000).find_map(|p| UdpSocket::bind(SocketAddr::new(LO, p)).ok())
}

#[test]
fn privileged_source_ports_are_dropped_and_counted() {
    if privileged_socket().is_none() {
        eprintln!("skipped: cannot bind a port below 1024 (not root)");
        return;
    }
    for portable in [false, true] {
        let h = spawn(cfg_with(|_| {}), portable);
        let to = h.addrs().udp_echo.unwrap();
        let u = privileged_socket().unwrap();
        assert_eq!(send_n(&u, to), 0, "portable={portable}");
        let c = wait_counters(&h, |c| c.udp_drop_privileged_port >= N);
        assert_eq!((c.udp_drop_privileged_port, c.tx_msgs), (N, 0), "{c}");
        h.stop().unwrap();

        let h = spawn(
            cfg_with(|a| a.udp_drop_privileged_source_ports = false),
            portable,
        );
        let to = h.addrs().udp_echo.unwrap();
        let u = privileged_socket().unwrap();
        assert_eq!(send_n(&u, to), N, "answered without the rule");
        assert_eq!(h.counters().udp_drop_privileged_port, 0);
        h.stop().unwrap();
    }
}

#[test]
fn service_source_ports_are_dropped_and_counted() {
    let other = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    for portable in [false, true] {
        for drop in [true, false] {
            let h = spawn(
                cfg_with(|a| a.udp_drop_service_source_ports = drop),
                portable,
            );
            let to = h.addrs().udp_echo.unwrap();
            // Another echo service on the same port elsewhere would ping-pong with ours; and
            // the port of another of our services (the TCP sockperf port; UDP shares it).
            let sp = h.addrs().tcp_sockperf.unwrap().port();
            let socks = [
                UdpSocket::bind(SocketAddr::new(other, to.port())).unwrap(),
                UdpSocket::bind(SocketAddr::new(other, sp)).unwrap(),
            ];
            for u in &socks {
                let got = send_n(u, to);
                assert_eq!(
                    got,
                    if drop { 0 } else { N },
                    "portable={portable} drop={drop}"
                );
            }
            if drop {
                let c = wait_counters(&h, |c| c.udp_drop_service_port >= 2 * N);
                assert_eq!((c.udp_drop_service_port, c.tx_msgs), (2 * N, 0), "{c}");
            } else {
                assert_eq!(h.counters().udp_drop_service_port, 0);
            }
            h.stop().unwrap();
        }
    }
}

/// Sends `n` datagrams fast (a short pause every 8), draining replies on another thread;
/// returns the counters once they settle.
fn blast(h: &ServerHandle, n: u64) -> Counters {
    let to = h.addrs().udp_echo.unwrap();
    let u = UdpSocket::bind(SocketAddr::new(LO, 0)).unwrap();
    let r = u.try_clone().unwrap();
    r.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while r.recv_from(&mut buf).is_ok() {}
    });
    for i in 0..n {
        u.send_to(&[i as u8; 16], to).unwrap();
        if i % 8 == 7 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    reader.join().unwrap();
    h.counters()
}

#[test]
fn loopback_benchmarks_are_not_rate_limited_by_default() {
    let defaults = ServeConfig::default().guard;
    assert!(defaults.rate_per_source > 0);
    assert!(defaults.rules.rate_exempt_loopback);
    let rate = 100;
    let n = 6 * u64::from(rate);
    for portable in [false, true] {
        let h = spawn(cfg_with(|a| a.udp_rate_limit_per_source = rate), portable);
        let c = blast(&h, n);
        assert!(c.rx_msgs > 3 * u64::from(rate), "{c}");
        assert_eq!(c.udp_drop_rate, 0, "loopback exempt: {c}");
        h.stop().unwrap();

        let h = spawn(
            cfg_with(|a| {
                a.udp_rate_limit_per_source = rate;
                a.udp_rate_limit_exempt_loopback = false;
            }),
            portable,
        );
        let c = blast(&h, n);
        assert!(c.rx_msgs > 3 * u64::from(rate), "{c}");
        assert!(c.udp_drop_rate > 0, "not exempt: {c}");
        h.stop().unwrap();
    }
}

#[test]
fn serve_flags_reach_the_guard_with_the_drivers_defaults() {
    use clap::Parser;
    let d = control::config::Config::default().limits;
    let g = ServeConfig::from(&ServeArgs::default()).guard;
    assert_eq!(g.rules, d.udp_guard);
    assert_eq!(g.rate_per_source, d.udp_rate_per_source);
    let cli = echoload::cli::Cli::try_parse_from([
        "echoload",
        "serve",
        "--udp-drop-broadcast",
        "false",
        "--udp-drop-privileged-source-ports",
        "false",
        "--udp-drop-service-source-ports",
        "false",
        "--udp-drop-special-sources",
        "false",
        "--udp-rate-limit-exempt-loopback",
        "false",
        "--udp-rate-limit-per-source",
        "0",
    ])
    .unwrap();
    let Some(echoload::cli::Cmd::Serve(a)) = cli.cmd else {
        panic!("serve")
    };
    let g = ServeConfig::from(&a).guard;
    assert_eq!(g.rate_per_source, 0);
    assert!(!g.rules.drop_broadcast);
    assert!(!g.rules.drop_privileged_ports);
    assert!(!g.rules.drop_service_ports);
    assert!(!g.rules.drop_special_sources);
    assert!(!g.rules.rate_exempt_loopback);
}
