//! Every service on TCP and UDP, IPv4 and IPv6, against the real driver inside wsk-sim.
//! Payloads are verified byte for byte and the driver's counters against what was sent.
// Tests build configs by value and name sockets, streams and pieces with single letters.
#![allow(clippy::large_types_passed_by_value, clippy::many_single_char_names)]

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::harness::{config_with, load};
use common::*;
use control::config::{Mode, Proto};
use control::protocol::sockperf::flags::{CLIENT as FLAG_CLIENT, REPLY as FLAG_REPLY};
use control::protocol::sockperf::{Header, HEADER_LEN};
use wskecho::stats::Counter;

std::thread_local! {
    /// Run this thread's test with its TCP services on stream sockets (WSK_FLAG_STREAM_SOCKET +
    /// WskListen) instead of listening sockets: every TCP service test runs with both kinds.
    static STREAM: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn on_stream_sockets(f: impl FnOnce()) {
    STREAM.with(|s| s.set(true));
    f();
}

fn loaded(mut cfg: control::config::Config) -> common::harness::Loaded {
    if STREAM.with(std::cell::Cell::get) {
        let list: Vec<_> = cfg
            .services
            .as_slice()
            .iter()
            .map(|s| s.with_stream(s.proto == Proto::Tcp))
            .collect();
        cfg.services = control::config::Services::from_slice(&list).unwrap();
    }
    let l = load(wsk_sim::Config::default(), Some(cfg)).unwrap();
    assert!(l.ready, "driver started");
    l
}

fn tcp_echo_sizes(ip: IpAddr) {
    let (cfg, ports) = config_with(ip, &[(Proto::Tcp, Mode::Echo)]);
    let drv = loaded(cfg);
    let addr = SocketAddr::new(ip, ports[0]);
    let mut s = connect(addr);
    let mut sent = 0u64;
    for (i, len) in [1usize, 2, 13, 100, 1400, 4096, 16 * 1024, 40_000, 64 * 1024]
        .into_iter()
        .enumerate()
    {
        let data = payload(i as u64, len);
        assert_eq!(tcp_echo(&mut s, &data), data, "echo of {len} bytes");
        sent += len as u64;
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "nothing after the echo, then FIN");
    eventually("close counted", || drv.counter(Counter::ConnClosed) == 1);
    assert_eq!(drv.counter(Counter::TcpBytesIn), sent);
    assert_eq!(drv.counter(Counter::TcpBytesOut), sent);
    assert_eq!(drv.counter(Counter::ConnAccepted), 1);
    assert_clean(&drv.unload());
}

#[test]
fn tcp_echo_v4_sizes_1b_to_64k() {
    tcp_echo_sizes(V4);
}

#[test]
fn tcp_echo_v6_sizes_1b_to_64k() {
    tcp_echo_sizes(V6);
}

fn tcp_echo_many(ip: IpAddr, conns: usize) {
    let (cfg, ports) = config_with(ip, &[(Proto::Tcp, Mode::Echo)]);
    let drv = loaded(cfg);
    let addr = SocketAddr::new(ip, ports[0]);
    let threads: Vec<_> = (0..conns)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = connect(addr);
                let mut n = 0u64;
                for k in 0..3 {
                    let data = payload((i * 10 + k) as u64, 1 + (i * 37 + k * 1000) % 3000);
                    assert_eq!(tcp_echo(&mut s, &data), data);
                    n += data.len() as u64;
                }
                n
            })
        })
        .collect();
    let total: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    eventually("all closed", || {
        drv.counter(Counter::ConnClosed) == conns as u64
    });
    assert_eq!(drv.counter(Counter::ConnAccepted), conns as u64);
    assert_eq!(drv.counter(Counter::TcpBytesIn), total);
    assert_eq!(drv.counter(Counter::TcpBytesOut), total);
    assert_clean(&drv.unload());
}

#[test]
fn tcp_echo_v4_200_connections() {
    tcp_echo_many(V4, 200);
}

#[test]
fn tcp_echo_v6_200_connections() {
    tcp_echo_many(V6, 200);
}

fn udp_echo(ip: IpAddr) {
    let (cfg, ports) = config_with(ip, &[(Proto::Udp, Mode::Echo)]);
    let drv = loaded(cfg);
    let to = SocketAddr::new(ip, ports[0]);
    let u = udp_client(ip);
    let mut echoed = 0;
    for (i, len) in [0usize, 1, 64, 1400, 8192, 65_507].into_iter().enumerate() {
        let data = payload(i as u64, len);
        let got = udp_roundtrip(&u, to, &data).unwrap_or_else(|| panic!("no echo of {len} bytes"));
        assert_eq!(got, data, "datagram of {len} bytes");
        echoed += 1;
    }
    eventually("sends counted", || {
        drv.counter(Counter::UdpDatagramsOut) >= echoed
    });
    assert!(drv.counter(Counter::UdpDatagramsIn) >= echoed);
    assert_eq!(drv.counter(Counter::UdpDropNoContext), 0);
    assert_clean(&drv.unload());
}

#[test]
fn udp_echo_v4_0_to_65507_bytes() {
    udp_echo(V4);
}

#[test]
fn udp_echo_v6_0_to_65507_bytes() {
    udp_echo(V6);
}

#[test]
fn udp_echo_200_flows() {
    let (cfg, ports) = config_with(V4, &[(Proto::Udp, Mode::Echo)]);
    let drv = loaded(cfg);
    let to = SocketAddr::new(V4, ports[0]);
    let threads: Vec<_> = (0..200)
        .map(|i| {
            std::thread::spawn(move || {
                let u = udp_client(V4);
                let data = payload(i, 100 + (i as usize % 900));
                udp_roundtrip(&u, to, &data).is_some_and(|g| g == data)
            })
        })
        .collect();
    let ok = threads
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|&b| b)
        .count();
    // UDP may drop when all send contexts are busy (counted): almost every flow gets through
    // after retries.
    assert!(ok >= 190, "only {ok}/200 flows echoed");
    assert_clean(&drv.unload());
}

fn discard(ip: IpAddr) {
    let (cfg, ports) = config_with(
        ip,
        &[(Proto::Tcp, Mode::Discard), (Proto::Udp, Mode::Discard)],
    );
    let drv = loaded(cfg);
    let mut s = connect(SocketAddr::new(ip, ports[0]));
    let data = payload(1, 200_000);
    s.write_all(&data).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    assert!(back.is_empty(), "discard sends nothing");
    let u = udp_client(ip);
    for i in 0..20 {
        u.send_to(&payload(i, 500), SocketAddr::new(ip, ports[1]))
            .unwrap();
    }
    let mut buf = [0u8; 16];
    assert!(
        u.recv_from(&mut buf).is_err(),
        "udp discard answers nothing"
    );
    eventually("tcp bytes counted", || {
        drv.counter(Counter::TcpBytesIn) == data.len() as u64
    });
    eventually("udp datagrams counted", || {
        drv.counter(Counter::UdpDatagramsIn) == 20
    });
    assert_eq!(drv.counter(Counter::TcpBytesOut), 0);
    assert_eq!(drv.counter(Counter::UdpDatagramsOut), 0);
    assert_clean(&drv.unload());
}

#[test]
fn discard_tcp_udp_v4() {
    discard(V4);
}

#[test]
fn discard_tcp_udp_v6() {
    discard(V6);
}

fn source(ip: IpAddr) {
    let (cfg, ports) = config_with(ip, &[(Proto::Tcp, Mode::Source)]);
    let drv = loaded(cfg);
    let mut s = connect(SocketAddr::new(ip, ports[0]));
    let mut got = vec![0u8; 1_000_000];
    s.read_exact(&mut got).unwrap();
    for (i, b) in got.iter().enumerate() {
        assert_eq!(*b, (i % 251) as u8, "source byte {i}");
    }
    drop(s);
    eventually("source conn closed", || {
        drv.counter(Counter::ConnClosed) == 1
    });
    assert_clean(&drv.unload());
}

#[test]
fn source_tcp_v4_pattern() {
    source(V4);
}

#[test]
fn source_tcp_v6_pattern() {
    source(V6);
}

fn sp_msg(seq: u64, flags: u16, len: usize) -> Vec<u8> {
    let mut m = payload(seq, len);
    let mut h = [0u8; HEADER_LEN];
    Header {
        seq,
        flags,
        len: len as u32,
    }
    .write(&mut h);
    m[..HEADER_LEN].copy_from_slice(&h);
    m
}

fn sp_reply(m: &[u8]) -> Vec<u8> {
    let mut r = m.to_vec();
    let f = u16::from_be_bytes([r[8], r[9]]) & !FLAG_CLIENT;
    r[8..10].copy_from_slice(&f.to_be_bytes());
    r
}

fn sockperf(ip: IpAddr) {
    let (cfg, ports) = config_with(
        ip,
        &[(Proto::Tcp, Mode::Sockperf), (Proto::Udp, Mode::Sockperf)],
    );
    let drv = loaded(cfg);
    // TCP: a stream of messages, every other one asking for a reply; written in odd-sized
    // pieces so headers straddle segments.
    let mut s = connect(SocketAddr::new(ip, ports[0]));
    let mut stream = Vec::new();
    let mut expect = Vec::new();
    for seq in 0..200u64 {
        let len = HEADER_LEN + (seq as usize * 13) % 2000;
        let flags = if seq % 2 == 0 {
            FLAG_CLIENT | FLAG_REPLY
        } else {
            FLAG_CLIENT
        };
        let m = sp_msg(seq, flags, len);
        if seq % 2 == 0 {
            expect.extend(sp_reply(&m));
        }
        stream.extend(m);
    }
    let mut r = s.try_clone().unwrap();
    let n = expect.len();
    let reader = std::thread::spawn(move || {
        let mut got = vec![0u8; n];
        r.read_exact(&mut got).map(|()| got)
    });
    for chunk in stream.chunks(777) {
        s.write_all(chunk).unwrap();
    }
    assert_eq!(reader.join().unwrap().unwrap(), expect);
    // UDP: reply only when asked, same length, client bit cleared; malformed is dropped.
    let u = udp_client(ip);
    let to = SocketAddr::new(ip, ports[1]);
    for seq in 0..20u64 {
        let m = sp_msg(
            seq,
            FLAG_CLIENT | FLAG_REPLY,
            HEADER_LEN + seq as usize * 50,
        );
        assert_eq!(
            udp_roundtrip(&u, to, &m).expect("sockperf udp reply"),
            sp_reply(&m)
        );
    }
    let dropped0 = drv.counter(Counter::UdpDropService);
    for seq in 100..110u64 {
        u.send_to(&sp_msg(seq, FLAG_CLIENT, 100), to).unwrap();
    }
    u.send_to(b"short", to).unwrap();
    let mut buf = [0u8; 256];
    u.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(
        u.recv_from(&mut buf).is_err(),
        "no reply without the reply bit or to junk"
    );
    // The ten valid messages that asked for no reply are received, not dropped as malformed
    // (sockperf's throughput test sends only those); the junk one is the one drop.
    assert_eq!(drv.counter(Counter::UdpDropService) - dropped0, 1);
    assert_clean(&drv.unload());
}

#[test]
fn sockperf_tcp_udp_v4() {
    sockperf(V4);
}

#[test]
fn sockperf_tcp_udp_v6() {
    sockperf(V6);
}

/// Indication lists of several entries (wsk-sim splits them at random into 1-3) are echoed
/// zero-copy, entry by entry, and released once (issue 13 item 11), every byte back in order.
/// What still takes the copy path is an indication that finds too few free send slots (the
/// sim delays completions by up to 2 ms). Measured here: 68% of the bytes copied when only
/// single-entry lists went zero-copy, about 5% now.
#[test]
fn tcp_multi_entry_lists_take_the_zero_copy_path() {
    let (cfg, ports) = config_with(V4, &[(Proto::Tcp, Mode::Echo)]);
    let sim = wsk_sim::Config {
        split_indications: true,
        ..wsk_sim::Config::default()
    };
    let drv = common::harness::load(sim, Some(cfg)).unwrap();
    let mut s = connect(SocketAddr::new(V4, ports[0]));
    for i in 0..100u64 {
        let msg = payload(i, 8 * 1024);
        assert_eq!(tcp_echo(&mut s, &msg), msg, "message {i}");
    }
    let (zc, copied) = (
        drv.counter(Counter::ZeroCopySends),
        drv.counter(Counter::CopyBytes),
    );
    drop(s);
    let total = 100 * 8 * 1024;
    assert!(zc >= 100, "zero-copy sends: {zc}");
    assert!(
        copied * 5 < total,
        "{copied} of {total} bytes copied with {zc} zero-copy sends"
    );
    assert_clean(&drv.unload());
}

/// The copy path's ring wraps in the middle of a chunk (the 2026-12-07 copy loop handles a
/// chunk that fits its region inline and hands the one that crosses the ring's end to the
/// general writer): with zero-copy off and the smallest ring (4 KiB), writes of odd sizes
/// whose indications wsk-sim splits into 1 to 3 MDLs at random make the tail cross the
/// ring's end 192 times (768 KiB through 4 KiB), inside a chunk unless one happens to end
/// there, and every byte must come back in order. Dropping the crossing chunk's bytes, or
/// miscounting them, fails this test (seen: the echo read times out short); robustness,
/// tcp_races and the other service tests, with a 32 KiB ring and zero-copy on, did not notice
/// the dropped bytes.
#[test]
fn tcp_copy_ring_wraps_inside_a_chunk_keep_every_byte() {
    let (mut cfg, ports) = config_with(V4, &[(Proto::Tcp, Mode::Echo)]);
    cfg.limits.zero_copy = false;
    cfg.limits.send_ring_bytes = 4096;
    let sim = wsk_sim::Config {
        split_indications: true,
        ..wsk_sim::Config::default()
    };
    let drv = common::harness::load(sim, Some(cfg)).unwrap();
    let mut s = connect(SocketAddr::new(V4, ports[0]));
    // Odd sizes, so the tail meets the ring's end at ever other offsets within a write.
    let sizes = [1usize, 7, 63, 257, 1021, 1499, 3001];
    let mut sent = Vec::new();
    let mut i = 0u64;
    while sent.len() < 768 * 1024 {
        sent.extend_from_slice(&payload(i, sizes[i as usize % sizes.len()]));
        i += 1;
    }
    let total = sent.len();
    let mut r = s.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = vec![0u8; total];
        r.read_exact(&mut got).map(|()| got)
    });
    // One write per message: each is an indication of its own or part of a larger one.
    let mut off = 0;
    for k in 0..i {
        let len = sizes[k as usize % sizes.len()];
        s.write_all(&sent[off..off + len]).unwrap();
        off += len;
    }
    let got = reader.join().unwrap().expect("echo read");
    let first_bad = got.iter().zip(&sent).position(|(a, b)| a != b);
    assert_eq!(
        first_bad, None,
        "echo differs from byte {first_bad:?} of {total}"
    );
    assert_eq!(drv.counter(Counter::ZeroCopySends), 0, "zero-copy was off");
    assert_eq!(
        drv.counter(Counter::CopyBytes),
        total as u64,
        "every byte copied once"
    );
    drop(s);
    assert_clean(&drv.unload());
}

#[test]
fn stream_socket_tcp_echo_v4_v6_sizes() {
    on_stream_sockets(|| {
        tcp_echo_sizes(V4);
        tcp_echo_sizes(V6);
    });
}

#[test]
fn stream_socket_tcp_echo_200_connections() {
    on_stream_sockets(|| tcp_echo_many(V4, 200));
}

#[test]
fn stream_socket_discard_source_sockperf() {
    on_stream_sockets(|| {
        discard(V4);
        source(V6);
        sockperf(V4);
    });
}

/// A stream service really is a stream socket: it is the one that needs WskListen, so with
/// WskListen failing it does not open (and says so), while a listening-socket service does.
#[test]
fn stream_service_listens_with_wsklisten() {
    use control::config::{Config, Service, Services};
    for stream in [false, true] {
        let port = common::harness::free_port(V4);
        let cfg = Config {
            services: Services::from_slice(&[
                Service::new(Proto::Tcp, port, Mode::Echo, V4).with_stream(stream)
            ])
            .unwrap(),
            ..Config::default()
        };
        let sim = wsk_sim::Config {
            fail_calls: vec![wsk_sim::config::Call::WskListen],
            fail_rate: 1.0,
            ..wsk_sim::Config::default()
        };
        let drv = load(sim, Some(cfg)).unwrap();
        let echoed = std::net::TcpStream::connect_timeout(
            &SocketAddr::new(V4, port),
            Duration::from_millis(500),
        )
        .ok()
        .map(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            tcp_echo(&mut s, b"x") == b"x"
        });
        assert_eq!(
            echoed.unwrap_or(false),
            !stream,
            "stream={stream}: WskListen decides only for stream services"
        );
        let log = wsk_sim::take_dbg_output();
        drop(drv);
        if stream {
            assert!(
                log.contains(&port.to_string()),
                "the failed service is logged: {log}"
            );
        }
    }
}
