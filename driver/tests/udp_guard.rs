//! The UDP reflection and loop guard against the real driver inside wsk-sim: each rule drops
//! and counts its datagrams by default, and answers them when switched off (so each test would
//! fail without its rule); loopback sources are not rate limited unless asked.
//!
//! Sources loopback can produce are real (a privileged port as root, a port of another
//! service, another loopback address); a broadcast/multicast flag and unspecified, multicast
//! or broadcast source addresses come from wsk-sim's `faults::disguise_datagrams` hook.
#![allow(clippy::large_types_passed_by_value)]

mod common;

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::harness::{config_with, load, Loaded};
use common::*;
use control::config::{Config, Mode, Proto};
use wsk_sys::{MSG_BCAST, MSG_MCAST};
use wskecho::stats::Counter;

/// Datagrams each case sends.
const N: u64 = 5;

fn loaded(cfg: Config) -> Loaded {
    let l = load(wsk_sim::Config::default(), Some(cfg)).unwrap();
    assert!(l.ready, "driver started");
    l
}

/// An echo service on `ip`, with `edit` applied to the limits.
fn echo_on(ip: IpAddr, edit: impl FnOnce(&mut Config)) -> (Config, SocketAddr) {
    let (mut cfg, ports) = config_with(ip, &[(Proto::Udp, Mode::Echo)]);
    edit(&mut cfg);
    (cfg, SocketAddr::new(ip, ports[0]))
}

/// Sends N datagrams from `u` to `to` and waits until the driver has counted them in.
/// Returns how many replies came back (each read with a short timeout).
fn send_n(l: &Loaded, u: &UdpSocket, to: SocketAddr) -> u64 {
    let before = l.counter(Counter::UdpDatagramsIn);
    u.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    for i in 0..N {
        u.send_to(&payload(i, 32), to).unwrap();
    }
    eventually("datagrams counted in", || {
        l.counter(Counter::UdpDatagramsIn) >= before + N
    });
    let mut buf = [0u8; 64];
    let mut replies = 0;
    while replies < N && u.recv_from(&mut buf).is_ok() {
        replies += 1;
    }
    replies
}

/// Waits until the driver has either sent or failed to send `n` replies (sim sends to
/// addresses a disguised datagram claims may fail; either way the guard let it through).
fn answered(l: &Loaded, n: u64) {
    eventually("replies attempted", || {
        l.counter(Counter::UdpDatagramsOut) + l.counter(Counter::SendErrors) >= n
    });
}

/// A UDP socket bound to a port below 1024 on 127.0.0.1 (needs root or CAP_NET_BIND_SERVICE),
/// or None.
fn privileged_socket() -> Option<UdpSocket> {
    (600..1000).find_map(|p| UdpSocket::bind(SocketAddr::new(V4, p)).ok())
}

/// The case's client: a real privileged port when the process may bind one, otherwise an
/// ephemeral socket the sim presents as 127.0.0.1:53.
fn privileged_client() -> UdpSocket {
    privileged_socket().unwrap_or_else(|| {
        let u = udp_client(V4);
        let port = u.local_addr().unwrap().port();
        wsk_sim::faults::disguise_datagrams(port, Some(SocketAddr::new(V4, 53)), 0);
        u
    })
}

#[test]
fn privileged_source_ports_are_dropped_and_counted() {
    let (cfg, to) = echo_on(V4, |_| {});
    let l = loaded(cfg);
    let u = privileged_client();
    assert_eq!(send_n(&l, &u, to), 0, "no reply to a privileged port");
    assert_eq!(l.counter(Counter::UdpDropPrivilegedPort), N);
    assert_eq!(l.counter(Counter::UdpDatagramsOut), 0);
    assert_clean(&l.unload());

    // Without the rule the same datagrams are answered.
    let (cfg, to) = echo_on(V4, |c| c.limits.udp_guard.drop_privileged_ports = false);
    let l = loaded(cfg);
    let u = privileged_client();
    send_n(&l, &u, to);
    answered(&l, N);
    assert_eq!(l.counter(Counter::UdpDropPrivilegedPort), 0);
    assert_clean(&l.unload());
}

/// Services: UDP echo on `echo` and TCP discard on another port `tcp` (both 127.0.0.1).
fn two_services(edit: impl FnOnce(&mut Config)) -> (Config, SocketAddr, u16) {
    let (mut cfg, ports) =
        config_with(V4, &[(Proto::Udp, Mode::Echo), (Proto::Tcp, Mode::Discard)]);
    edit(&mut cfg);
    (cfg, SocketAddr::new(V4, ports[0]), ports[1])
}

/// From the port of a TCP service of ours (UDP port free), and from the echo service's own
/// port on another loopback address (another echo service there would ping-pong forever).
fn service_port_clients(echo: SocketAddr, tcp_port: u16) -> [UdpSocket; 2] {
    let other_loopback = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
    [
        UdpSocket::bind(SocketAddr::new(V4, tcp_port)).expect("UDP side of a TCP-only port"),
        UdpSocket::bind(SocketAddr::new(other_loopback, echo.port())).expect("bind 127.0.0.2"),
    ]
}

#[test]
fn service_source_ports_are_dropped_and_counted() {
    let (cfg, echo, tcp_port) = two_services(|_| {});
    let l = loaded(cfg);
    for u in service_port_clients(echo, tcp_port) {
        assert_eq!(send_n(&l, &u, echo), 0, "no reply to a service port");
    }
    assert_eq!(l.counter(Counter::UdpDropServicePort), 2 * N);
    assert_eq!(l.counter(Counter::UdpDatagramsOut), 0);
    assert_clean(&l.unload());

    let (cfg, echo, tcp_port) = two_services(|c| c.limits.udp_guard.drop_service_ports = false);
    let l = loaded(cfg);
    for u in service_port_clients(echo, tcp_port) {
        send_n(&l, &u, echo);
    }
    answered(&l, 2 * N);
    assert_eq!(l.counter(Counter::UdpDropServicePort), 0);
    assert_clean(&l.unload());
}

#[test]
fn broadcast_and_multicast_flags_are_dropped_and_counted() {
    for drop in [true, false] {
        let (cfg, to) = echo_on(V4, |c| c.limits.udp_guard.drop_broadcast = drop);
        let l = loaded(cfg);
        for flag in [MSG_BCAST, MSG_MCAST] {
            let u = udp_client(V4);
            wsk_sim::faults::disguise_datagrams(u.local_addr().unwrap().port(), None, flag);
            let replies = send_n(&l, &u, to);
            if drop {
                assert_eq!(replies, 0, "flag {flag:#x}");
            }
        }
        if drop {
            assert_eq!(l.counter(Counter::UdpDropBroadcast), 2 * N);
            assert_eq!(l.counter(Counter::UdpDatagramsOut), 0);
        } else {
            answered(&l, 2 * N);
            assert_eq!(l.counter(Counter::UdpDropBroadcast), 0);
        }
        assert_clean(&l.unload());
    }
}

#[test]
fn special_source_addresses_are_dropped_and_counted() {
    let cases: [(IpAddr, &[&str]); 2] = [
        (V4, &["0.0.0.0", "224.0.0.1", "255.255.255.255"]),
        (V6, &["::", "ff02::1", "::ffff:224.0.0.1"]),
    ];
    for drop in [true, false] {
        for (ip, sources) in cases {
            let (cfg, to) = echo_on(ip, |c| c.limits.udp_guard.drop_special_sources = drop);
            let l = loaded(cfg);
            for src in sources {
                let u = udp_client(ip);
                let port = u.local_addr().unwrap().port();
                let fake = SocketAddr::new(src.parse().unwrap(), port);
                wsk_sim::faults::disguise_datagrams(port, Some(fake), 0);
                send_n(&l, &u, to);
            }
            let n = N * sources.len() as u64;
            if drop {
                assert_eq!(l.counter(Counter::UdpDropSpecialSource), n, "{ip}");
                assert_eq!(l.counter(Counter::UdpDatagramsOut), 0);
                assert_eq!(l.counter(Counter::SendErrors), 0);
            } else {
                answered(&l, n);
                assert_eq!(l.counter(Counter::UdpDropSpecialSource), 0);
            }
            assert_clean(&l.unload());
        }
    }
}

/// Sends `n` datagrams fast (a short pause every 8 so the host socket's
/// buffer does not overflow before the sim reads it), draining replies on another thread.
/// Returns (rate drops, datagrams counted in).
fn blast(l: &Loaded, to: SocketAddr, n: u64) -> (u64, u64) {
    let u = udp_client(V4);
    let r = u.try_clone().unwrap();
    r.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let mut got = 0u64;
        while r.recv_from(&mut buf).is_ok() {
            got += 1;
        }
        got
    });
    let t0 = Instant::now();
    // Paced (about 6k/s, still 60 times the test's limit) so that a stalled sim thread (the
    // suites' unkind orders hold one for up to 40 ms) leaves no more queued than the sim's host
    // socket holds: its default receive buffer takes about 270 small datagrams, and at twice
    // this pace a stall during the blast cut what reached the driver to 264-272 of 600 (1 run
    // in 6 alone, then under the 3 x limit the assertions need).
    for i in 0..n {
        u.send_to(&payload(i, 16), to).unwrap();
        if i % 4 == 3 {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    let sent_in = t0.elapsed();
    let _ = reader.join();
    // Settle: the counters stop moving once the sim has indicated everything it read.
    let mut last = u64::MAX;
    let t1 = Instant::now();
    while t1.elapsed() < Duration::from_secs(5) {
        let now = l.counter(Counter::UdpDatagramsIn);
        if now == last {
            break;
        }
        last = now;
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("sent {n} in {sent_in:?}");
    (
        l.counter(Counter::UdpDropRate),
        l.counter(Counter::UdpDatagramsIn),
    )
}

#[test]
fn loopback_benchmarks_are_not_rate_limited_by_default() {
    // The shipped defaults: a non-zero per-source limit, loopback exempt.
    let defaults = Config::default().limits;
    assert!(defaults.udp_rate_per_source > 0);
    assert!(defaults.udp_guard.rate_exempt_loopback);
    // A limit the debug-built sim can outrun several times over within a second (the
    // default's 1000/s is more than it reliably indicates from one host socket).
    let rate = 100u32;
    let n = 6 * u64::from(rate);

    let (cfg, to) = echo_on(V4, |c| c.limits.udp_rate_per_source = rate);
    let l = loaded(cfg);
    let (drops, seen) = blast(&l, to, n);
    eprintln!("loopback exempt: {seen} in, {drops} rate drops");
    assert!(
        seen > 3 * u64::from(rate),
        "the blast must exceed the limit: {seen} reached the driver"
    );
    assert_eq!(drops, 0, "a loopback source is not limited");
    assert_clean(&l.unload());

    // The same blast with the exemption off meets the limit.
    let (cfg, to) = echo_on(V4, |c| {
        c.limits.udp_rate_per_source = rate;
        c.limits.udp_guard.rate_exempt_loopback = false;
    });
    let l = loaded(cfg);
    let (drops, seen) = blast(&l, to, n);
    eprintln!("loopback not exempt: {seen} in, {drops} rate drops");
    assert!(
        seen > 3 * u64::from(rate),
        "the blast must exceed the limit: {seen} reached the driver"
    );
    assert!(drops > 0, "the limit applies to a non-exempt source");
    assert_clean(&l.unload());
}

/// Issue 17 item 5, through the driver: 127.0.0.2 and 127.0.0.66 share one of the limiter's 64
/// slots (`control::udp_guard` checks the pair collides). Alternating, each used to take the
/// slot over with a full bucket: 200 of 200 answered at a limit of 5/s. Now the pair shares
/// the slot's bucket and is answered at most `rate * (1 + t)` times over the `t` seconds the
/// test took (measured around the whole exchange, so a slow run only widens the bound).
#[test]
fn colliding_sources_share_the_rate_limit() {
    let rate = 5u32;
    let (cfg, to) = echo_on(V4, |c| {
        c.limits.udp_rate_per_source = rate;
        c.limits.udp_guard.rate_exempt_loopback = false;
    });
    let l = loaded(cfg);
    let socks: Vec<UdpSocket> = ["127.0.0.2", "127.0.0.66"]
        .iter()
        .map(|ip| {
            let u = UdpSocket::bind((ip.parse::<IpAddr>().unwrap(), 0)).unwrap();
            u.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            u
        })
        .collect();
    let readers: Vec<_> = socks
        .iter()
        .map(|u| {
            let r = u.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                let mut got = 0u64;
                let t0 = Instant::now();
                // Ends 300 ms after the last reply (bounded overall).
                while t0.elapsed() < Duration::from_secs(30) && r.recv_from(&mut buf).is_ok() {
                    got += 1;
                }
                got
            })
        })
        .collect();
    let t0 = Instant::now();
    let n = 200u64;
    for i in 0..n {
        socks[(i % 2) as usize]
            .send_to(&payload(i, 16), to)
            .unwrap();
        std::thread::sleep(Duration::from_micros(300));
    }
    eventually("the datagrams counted in", || {
        l.counter(Counter::UdpDatagramsIn) >= n * 9 / 10
    });
    let got: Vec<u64> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    let secs = t0.elapsed().as_secs() + 1;
    let bound = u64::from(rate) * (1 + secs);
    let drops = l.counter(Counter::UdpDropRate);
    eprintln!("answered {got:?} of {n} in {secs} s (bound {bound}), {drops} rate drops");
    assert!(
        got[0] + got[1] <= bound,
        "the colliding pair was answered {} times, more than {bound}",
        got[0] + got[1]
    );
    assert!(got[0] + got[1] > 0, "the pair is limited, not cut off");
    assert!(drops > 0);
    assert_clean(&l.unload());
}

/// Applies `f` to the running driver's limits (`config set`).
fn set_limits(l: &Loaded, f: impl FnOnce(&mut control::config::Limits)) {
    let mut lim = get_config(l).limits;
    f(&mut lim);
    assert_eq!(
        set_config(l, &control::ioctl::SetConfig::SetLimits(lim.clone())),
        0,
        "set {lim:?}"
    );
}

/// `send_n`, then waits until the driver has answered (or failed to answer) `want` more
/// datagrams than before and checks the drop counter `c` moved by `drops`.
fn phase(l: &Loaded, u: &UdpSocket, to: SocketAddr, want: u64, c: Counter, drops: u64) {
    let out0 = l.counter(Counter::UdpDatagramsOut) + l.counter(Counter::SendErrors);
    let c0 = l.counter(c);
    send_n(l, u, to);
    answered(l, out0 + want);
    eventually("drops counted", || l.counter(c) >= c0 + drops);
    assert_eq!(l.counter(c), c0 + drops, "{c:?}");
    assert_eq!(
        l.counter(Counter::UdpDatagramsOut) + l.counter(Counter::SendErrors),
        out0 + want,
        "answered"
    );
}

/// A source whose verdict the driver remembers between one-datagram lists (`Seen` in
/// driver/src/serve/udp.rs) is screened again after every live change of what the verdict
/// depends on: the allow-list, a guard switch (the loopback rate exemption) and the service
/// ports; another source, or the same one in a list flagged MSG_BCAST, is screened on its own. The same socket sends throughout; one datagram per indication list, on one
/// simulated processor: the remembered verdict is per processor, and the sim's callback
/// threads run on several, so with more than one a datagram could land on a processor that
/// never saw the source and pass for the wrong reason.
#[test]
fn live_changes_reach_a_remembered_source() {
    let (cfg, to) = echo_on(V4, |c| c.limits.udp_rate_per_source = 1);
    let sim = wsk_sim::Config {
        max_datagrams_per_indication: 1,
        processor_count: 1,
        ..wsk_sim::Config::default()
    };
    let l = load(sim, Some(cfg)).unwrap();
    assert!(l.ready, "driver started");
    let u = udp_client(V4);
    let filtered = Counter::UdpDropFiltered;
    phase(&l, &u, to, N, filtered, 0);
    phase(&l, &u, to, N, filtered, 0);
    // Another source, right after the remembered one: screened on its own.
    let p = privileged_client();
    phase(&l, &p, to, 0, Counter::UdpDropPrivilegedPort, N);
    phase(&l, &u, to, N, filtered, 0);
    // The same source in a list flagged MSG_BCAST: the flags are part of the verdict.
    let uport = u.local_addr().unwrap().port();
    wsk_sim::faults::disguise_datagrams(uport, None, MSG_BCAST);
    phase(&l, &u, to, 0, Counter::UdpDropBroadcast, N);
    wsk_sim::faults::disguise_datagrams(uport, None, 0);
    phase(&l, &u, to, N, filtered, 0);
    set_limits(&l, |lim| {
        lim.set_allowed_sources(&[control::config::Cidr::parse("10.0.0.0/8").unwrap()])
            .unwrap();
    });
    phase(&l, &u, to, 0, filtered, N);
    set_limits(&l, |lim| {
        lim.set_allowed_sources(&[control::config::Cidr::ANY_V4, control::config::Cidr::ANY_V6])
            .unwrap();
    });
    phase(&l, &u, to, N, filtered, 0);
    // The loopback exemption off at 1 datagram/s: N back to back cannot all pass.
    set_limits(&l, |lim| lim.udp_guard.rate_exempt_loopback = false);
    let rate0 = l.counter(Counter::UdpDropRate);
    send_n(&l, &u, to);
    eventually("rate drops", || l.counter(Counter::UdpDropRate) > rate0);
    set_limits(&l, |lim| lim.udp_guard.rate_exempt_loopback = true);
    phase(&l, &u, to, N, Counter::UdpDropRate, 0);
    // A TCP service on the client's port: its datagrams now come from a service port.
    let port = u.local_addr().unwrap().port();
    assert_eq!(
        set_config(
            &l,
            &control::ioctl::SetConfig::AddService(control::config::Service::new(
                Proto::Tcp,
                port,
                Mode::Discard,
                V4
            ))
        ),
        0
    );
    phase(&l, &u, to, 0, Counter::UdpDropServicePort, N);
    assert_clean(&l.unload());
}
