//! echoload's client engine (the project's load generator, as a library) against the driver in
//! wsk-sim: every service it has a mode for, TCP and UDP, IPv4 and IPv6, 1 and 200 connections,
//! payloads verified by echoload, counters checked against what it sent.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::harness::{config_with, load};
use common::*;
use control::config::{Mode as SvcMode, Proto as SvcProto};
use echoload::client::{Mode, Proto, RunConfig};
use echoload::run;
use wskecho::stats::Counter;

fn rc(target: SocketAddr, proto: Proto, mode: Mode) -> RunConfig {
    RunConfig {
        target,
        proto,
        mode,
        duration: Duration::from_millis(400),
        // The sim's unkind orders (preempted threads, held accept callbacks) make the last of
        // 200 connections wait seconds to be accepted on 2 cores: slow, not lost.
        tcp_drain: Duration::from_secs(10),
        progress: false,
        ..RunConfig::default()
    }
}

fn echo_both(ip: IpAddr, conns: usize, size: usize) {
    let (cfg, ports) = config_with(
        ip,
        &[
            (SvcProto::Tcp, SvcMode::Echo),
            (SvcProto::Udp, SvcMode::Echo),
        ],
    );
    let drv = load(wsk_sim::Config::default(), Some(cfg)).unwrap();
    assert!(drv.ready);
    let tcp = run(&RunConfig {
        conns,
        threads: 2,
        size,
        ..rc(SocketAddr::new(ip, ports[0]), Proto::Tcp, Mode::Pingpong)
    });
    assert!(tcp.clean(false), "{}\n{:?}", tcp.table(), tcp.messages);
    assert!(tcp.recv_msgs > 0, "no TCP echoes");
    let udp_size = size.min(65_507);
    let udp = run(&RunConfig {
        conns,
        threads: 2,
        size: udp_size,
        ..rc(SocketAddr::new(ip, ports[1]), Proto::Udp, Mode::Pingpong)
    });
    // UDP may lose a datagram when every send context is busy (counted by the driver); no
    // corruption is ever allowed.
    assert!(udp.clean(true), "{}\n{:?}", udp.table(), udp.messages);
    assert!(udp.recv_msgs > 0, "no UDP echoes");
    eventually("tcp connections closed", || {
        drv.counter(Counter::ConnClosed) == drv.counter(Counter::ConnAccepted)
    });
    // Everything the client sent on TCP arrived and went back (clients wait for their echoes).
    assert_eq!(
        drv.counter(Counter::TcpBytesIn),
        drv.counter(Counter::TcpBytesOut)
    );
    assert!(
        drv.counter(Counter::TcpBytesIn) >= tcp.recv_bytes,
        "driver saw {} < client got {}",
        drv.counter(Counter::TcpBytesIn),
        tcp.recv_bytes
    );
    // The send completion (which counts) may run after the client already has the reply.
    eventually("udp sends counted", || {
        drv.counter(Counter::UdpDatagramsOut) >= udp.recv_msgs
    });
    assert_eq!(drv.counter(Counter::ConnAccepted), conns as u64);
    assert_clean(&drv.unload());
}

#[test]
fn echoload_echo_v4_one_conn_64b() {
    echo_both(V4, 1, 64);
}

#[test]
fn echoload_echo_v6_one_conn_64k() {
    echo_both(V6, 1, 64 * 1024);
}

#[test]
fn echoload_echo_v4_200_conns() {
    echo_both(V4, 200, 512);
}

#[test]
fn echoload_echo_v6_200_conns() {
    echo_both(V6, 200, 1400);
}

#[test]
fn echoload_stream_sink_source() {
    let (cfg, ports) = config_with(
        V4,
        &[
            (SvcProto::Tcp, SvcMode::Echo),
            (SvcProto::Tcp, SvcMode::Discard),
            (SvcProto::Tcp, SvcMode::Source),
        ],
    );
    let drv = load(wsk_sim::Config::default(), Some(cfg)).unwrap();
    assert!(drv.ready);
    let stream = run(&RunConfig {
        size: 16 * 1024,
        conns: 4,
        ..rc(SocketAddr::new(V4, ports[0]), Proto::Tcp, Mode::Stream)
    });
    assert!(
        stream.clean(false),
        "{}\n{:?}",
        stream.table(),
        stream.messages
    );
    assert!(stream.recv_bytes > 0);
    let sink = run(&RunConfig {
        size: 8192,
        conns: 2,
        ..rc(SocketAddr::new(V4, ports[1]), Proto::Tcp, Mode::Sink)
    });
    assert!(sink.clean(false), "{}\n{:?}", sink.table(), sink.messages);
    assert!(sink.sent_bytes > 0);
    let source = run(&RunConfig {
        conns: 2,
        verify_source: true,
        ..rc(SocketAddr::new(V4, ports[2]), Proto::Tcp, Mode::Source)
    });
    assert!(
        source.clean(false),
        "{}\n{:?}",
        source.table(),
        source.messages
    );
    assert!(
        source.recv_bytes > 100_000,
        "source delivered only {} bytes",
        source.recv_bytes
    );
    eventually("all closed", || {
        drv.counter(Counter::ConnClosed) == drv.counter(Counter::ConnAccepted)
    });
    assert_clean(&drv.unload());
}

/// The whole control ABI conformance suite (control crate) through the driver's dispatch:
/// every well-formed and malformed request answered with its exact status, nothing changed.
#[test]
fn control_abi_conformance() {
    let (cfg, _ports) = config_with(
        V4,
        &[
            (SvcProto::Tcp, SvcMode::Echo),
            (SvcProto::Udp, SvcMode::Echo),
        ],
    );
    let drv = load(wsk_sim::Config::default(), Some(cfg)).unwrap();
    assert!(drv.ready);
    let free = common::harness::free_port(V4);
    let mut call = |code: u32, input: &[u8], cap: usize| -> Result<(i32, Vec<u8>), String> {
        Ok(drv.control(code, input, cap))
    };
    let cases = control::conformance::run(&mut call, free);
    let failed: Vec<_> = cases.iter().filter(|c| !c.passed()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} cases failed: {failed:#?}",
        failed.len(),
        cases.len()
    );
    assert!(cases.len() > 50);
    assert_clean(&drv.unload());
}
