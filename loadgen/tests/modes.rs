//! Every mode, TCP and UDP, IPv4 and IPv6, against the in-process reference server.

mod common;

use common::{addr, quick, server_on};
use control::protocol::Mode as ServiceMode;
use echoload::client::{Mode, Proto};
use echoload::run;

fn service(mode: Mode) -> ServiceMode {
    match mode {
        Mode::Sink => ServiceMode::Discard,
        Mode::Source => ServiceMode::Source,
        _ => ServiceMode::Echo,
    }
}

fn all_modes(ip: &str, proto: Proto) {
    let srv = server_on(ip);
    for mode in [
        Mode::Pingpong,
        Mode::Rate,
        Mode::Stream,
        Mode::Sink,
        Mode::Source,
    ] {
        let mut cfg = quick(addr(&srv, service(mode), proto), proto, mode);
        if mode == Mode::Stream {
            cfg.size = 1000;
            cfg.window_bytes = 64 * 1024;
        }
        cfg.conns = 2;
        cfg.threads = 2;
        let r = run(&cfg);
        let what = format!("{proto} {mode} on {ip}:\n{}", r.table());
        assert!(r.clean(false), "not clean: {what}");
        assert!(r.duration_s > 0.2, "{what}");
        if mode == Mode::Sink {
            assert!(r.sent_msgs > 100, "{what}");
            assert!(r.throughput.bits_per_s > 0.0, "{what}");
        } else {
            assert!(r.recv_msgs > 50, "{what}");
            assert!(
                r.latency_us.count > 0 || mode == Mode::Source && proto == Proto::Tcp,
                "{what}"
            );
            assert!(r.latency_us.p50 > 0.0 || r.latency_us.count == 0, "{what}");
            assert!(r.throughput.msgs_per_s > 0.0, "{what}");
        }
        if mode == Mode::Rate {
            // Open loop at 20k/s for 0.3 s: the schedule, not the server, sets the count.
            assert!((5_000..=7_000).contains(&r.sent_msgs), "{what}");
        }
        if mode != Mode::Sink && mode != Mode::Source {
            assert_eq!(r.errors.lost, 0, "{what}");
        }
    }
    srv.stop().unwrap();
}

#[test]
fn tcp_v4_every_mode() {
    all_modes("127.0.0.1", Proto::Tcp);
}

#[test]
fn udp_v4_every_mode() {
    all_modes("127.0.0.1", Proto::Udp);
}

#[test]
fn tcp_v6_every_mode() {
    all_modes("::1", Proto::Tcp);
}

#[test]
fn udp_v6_every_mode() {
    all_modes("::1", Proto::Udp);
}

#[test]
fn udp_sizes_without_gso_and_large() {
    let srv = server_on("127.0.0.1");
    let a = addr(&srv, ServiceMode::Echo, Proto::Udp);
    // Rates low enough for an unoptimised build on a busy 2-core machine.
    for (size, gso, rate) in [
        (32, false, 500.0),
        (1400, true, 500.0),
        (65_507, true, 100.0),
    ] {
        let mut cfg = quick(a, Proto::Udp, Mode::Rate);
        cfg.size = size;
        cfg.gso = gso;
        cfg.rate = Some(rate);
        let r = run(&cfg);
        assert!(r.clean(false), "size {size}:\n{}", r.table());
        assert!(
            r.recv_msgs as f64 > rate * 0.3 * 0.5,
            "size {size}:\n{}",
            r.table()
        );
        assert_eq!(r.recv_bytes, r.recv_msgs * size as u64);
    }
}

#[test]
fn tcp_pingpong_many_conns_few_threads() {
    let srv = server_on("127.0.0.1");
    let mut cfg = quick(
        addr(&srv, ServiceMode::Echo, Proto::Tcp),
        Proto::Tcp,
        Mode::Pingpong,
    );
    cfg.conns = 16;
    cfg.threads = 2;
    let r = run(&cfg);
    assert!(r.clean(false), "{}", r.table());
    assert_eq!(r.conns, 16);
    assert!(r.recv_msgs > 1000, "{}", r.table());
}

#[test]
fn invalid_configs_are_refused() {
    let mut cfg = echoload::client::RunConfig {
        proto: Proto::Udp,
        size: 65_508,
        ..Default::default()
    };
    let e = echoload::try_run(&cfg).unwrap_err().to_string();
    assert!(e.contains("65507"), "{e}");
    cfg.size = 16;
    let e = echoload::try_run(&cfg).unwrap_err().to_string();
    assert!(e.contains("header"), "{e}");
    cfg.size = 64;
    cfg.mode = Mode::Rate;
    assert!(echoload::try_run(&cfg).is_err(), "rate without --rate");
}

/// Where the time went: per-thread CPU time and (Linux, TCP) TCP_INFO of every connection.
#[cfg(target_os = "linux")]
#[test]
fn cpu_and_tcp_info_are_reported() {
    let srv = server_on("127.0.0.1");
    let mut cfg = quick(
        addr(&srv, ServiceMode::Echo, Proto::Tcp),
        Proto::Tcp,
        Mode::Pingpong,
    );
    cfg.conns = 3;
    cfg.threads = 2;
    let r = run(&cfg);
    assert!(r.clean(false), "{}", r.table());
    let cpu = r.cpu.as_ref().expect("cpu on Linux");
    assert_eq!(cpu.per_thread.len(), 2);
    // A ping-pong loop keeps its thread busy: some CPU time must show.
    assert!(cpu.user_s + cpu.system_s > 0.0, "{cpu:?}");
    assert!(cpu.cores > 0.0 && cpu.cores <= 2.5, "{cpu:?}");
    let t = r.tcp_info.expect("tcp_info on Linux");
    assert_eq!(t.connections, 3);
    assert!(
        t.rtt_us_mean > 0.0 && t.rtt_us_max >= t.rtt_us_mean,
        "{t:?}"
    );
    assert!(t.cwnd_mean >= 1.0, "{t:?}");
    assert!(r.table().contains("tcp_info"), "{}", r.table());
    // UDP has no TCP_INFO.
    let u = run(&quick(
        addr(&srv, ServiceMode::Echo, Proto::Udp),
        Proto::Udp,
        Mode::Pingpong,
    ));
    assert!(u.tcp_info.is_none());
}
