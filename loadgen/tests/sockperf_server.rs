//! The sockperf service of `echoload serve`: the real `sockperf` client in ping-pong,
//! under-load and throughput modes (UDP and TCP), and malformed input. sockperf 3.7 has no
//! IPv6, so the real-client tests are IPv4; the protocol tests also run on ::1.

#![allow(clippy::many_single_char_names)] // h = handle, s = socket, a = addrs, ... in short tests

#[path = "support/sockperf.rs"]
mod sockperf_cli;

use control::protocol::sockperf::{flags, Header, HEADER_LEN};
use echoload::cli::ServeArgs;
use echoload::server::{self, Counters, ServerHandle};
use sockperf_cli::{number_after, observations, run_sockperf, sockperf_on_path};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(5);

fn start(ip: IpAddr) -> ServerHandle {
    server::spawn(ServeArgs::ephemeral(ip)).expect("server starts")
}

fn wait_counters(h: &ServerHandle, ok: impl Fn(&Counters) -> bool) -> Counters {
    let end = Instant::now() + T;
    loop {
        let c = h.counters();
        if ok(&c) || Instant::now() > end {
            return c;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn client_args<'a>(mode: &'a str, port: &'a str, tcp: bool, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![mode, "-i", "127.0.0.1", "-p", port, "-t", "1", "-m", "64"];
    if tcp {
        a.push("--tcp");
    }
    a.extend_from_slice(extra);
    a
}

fn assert_clean(text: &str, what: &str) {
    for bad in ["ERROR", "No messages were received", "Invalid", "error:"] {
        assert!(
            !text.contains(bad),
            "{what}: sockperf reported `{bad}`:\n{text}"
        );
    }
}

fn pingpong_like(mode: &str, extra: &[&str], tcp: bool) {
    if !sockperf_on_path() {
        return;
    }
    let h = start(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let addr = if tcp {
        h.addrs().tcp_sockperf
    } else {
        h.addrs().udp_sockperf
    }
    .unwrap();
    let port = addr.port().to_string();
    let text = run_sockperf(&client_args(mode, &port, tcp, extra));
    assert_clean(&text, mode);
    let lat = number_after(&text, "Summary: Latency is")
        .unwrap_or_else(|| panic!("no latency in:\n{text}"));
    assert!(lat > 0.0 && lat < 10_000.0, "latency {lat} us");
    let obs = observations(&text);
    assert!(obs >= 10.0, "only {obs} observations:\n{text}");
    let c = wait_counters(&h, |c| c.tx_msgs >= 10);
    assert!(c.tx_msgs >= 10 && c.sockperf_bad_frames == 0, "{c}");
    h.stop().unwrap();
}

#[test]
fn real_sockperf_ping_pong_udp() {
    pingpong_like("ping-pong", &[], false);
}

#[test]
fn real_sockperf_ping_pong_tcp() {
    pingpong_like("ping-pong", &[], true);
}

#[test]
fn real_sockperf_under_load_udp() {
    pingpong_like(
        "under-load",
        &["--mps", "5000", "--reply-every", "5"],
        false,
    );
}

#[test]
fn real_sockperf_under_load_tcp() {
    pingpong_like("under-load", &["--mps", "5000", "--reply-every", "5"], true);
}

fn throughput(tcp: bool) {
    if !sockperf_on_path() {
        return;
    }
    let h = start(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let addr = if tcp {
        h.addrs().tcp_sockperf
    } else {
        h.addrs().udp_sockperf
    }
    .unwrap();
    let port = addr.port().to_string();
    let text = run_sockperf(&client_args("throughput", &port, tcp, &[]));
    assert_clean(&text, "throughput");
    let rate = number_after(&text, "Summary: Message Rate is")
        .unwrap_or_else(|| panic!("no rate in:\n{text}"));
    assert!(rate > 100.0, "rate {rate}");
    // Throughput messages ask for no reply: counted at the server, never answered.
    let c = wait_counters(&h, |c| c.sockperf_counted >= 100);
    assert!(
        c.sockperf_counted >= 100 && c.sockperf_bad_frames == 0,
        "{c}"
    );
    assert_eq!(c.tx_msgs, 0, "throughput messages were answered: {c}");
    h.stop().unwrap();
}

#[test]
fn real_sockperf_throughput_udp() {
    throughput(false);
}

#[test]
fn real_sockperf_throughput_tcp() {
    throughput(true);
}

fn msg(seq: u64, fl: u16, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31)).collect();
    Header {
        seq,
        flags: fl,
        len: len as u32,
    }
    .encode(&mut v)
    .unwrap();
    v
}

const CR: u16 = flags::CLIENT | flags::REPLY;

#[test]
fn udp_protocol_v4_v6() {
    for ip in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        let h = start(ip);
        let addr = h.addrs().udp_sockperf.unwrap();
        let s = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
        s.connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut b = vec![0u8; 70_000];
        // Not answered: no reply flag, warm-up, not from a client, wrong length, too short.
        s.send(&msg(1, flags::CLIENT, 64)).unwrap();
        s.send(&msg(2, CR | flags::WARMUP, 64)).unwrap();
        s.send(&msg(3, flags::REPLY, 64)).unwrap();
        let mut wrong = msg(4, CR, 64);
        wrong[13] = 65;
        s.send(&wrong).unwrap();
        s.send(&[1, 2, 3]).unwrap();
        // Answered: the same bytes with the client flag cleared.
        for (seq, len) in [(5u64, 14usize), (6, 64), (7, 1472), (8, 65_000)] {
            let m = msg(seq, CR, len);
            s.send(&m).unwrap();
            let n = s.recv(&mut b).expect("reply");
            assert_eq!(n, len, "reply length ({ip})");
            assert_eq!(
                Header::decode(&b).unwrap(),
                Header {
                    seq,
                    flags: flags::REPLY,
                    len: len as u32
                }
            );
            assert_eq!(&b[HEADER_LEN..n], &m[HEADER_LEN..], "payload changed");
        }
        assert!(
            s.recv(&mut b).is_err(),
            "an unanswerable message was answered"
        );
        let c = wait_counters(&h, |c| c.tx_msgs >= 4 && c.sockperf_bad_frames >= 2);
        assert_eq!(
            (c.tx_msgs, c.sockperf_counted, c.sockperf_bad_frames),
            (4, 1, 2),
            "{c}"
        );
        h.stop().unwrap();
    }
}

fn tcp_conn(h: &ServerHandle) -> TcpStream {
    let s = TcpStream::connect_timeout(&h.addrs().tcp_sockperf.unwrap(), T).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s
}

#[test]
fn tcp_framing_split_and_coalesced() {
    for ip in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        let h = start(ip);
        let mut s = tcp_conn(&h);
        s.set_nodelay(true).unwrap();
        // Byte by byte: the server must reassemble the frame.
        let m = msg(1, CR, 100);
        for byte in &m {
            s.write_all(std::slice::from_ref(byte)).unwrap();
        }
        let mut r = vec![0u8; 100];
        s.read_exact(&mut r).unwrap();
        assert_eq!(Header::decode(&r).unwrap().flags, flags::REPLY);
        assert_eq!(&r[HEADER_LEN..], &m[HEADER_LEN..]);
        // Several frames in one write, only some asking for replies; one larger than the
        // server's initial buffer.
        let mut all = Vec::new();
        let parts = [
            (2u64, CR, 50usize),
            (3, flags::CLIENT, 60),
            (4, CR | flags::WARMUP, 70),
            (5, CR, 200_000),
            (6, CR, 14),
        ];
        for (seq, fl, len) in parts {
            all.extend(msg(seq, fl, len));
        }
        s.write_all(&all).unwrap();
        for (seq, len) in [(2u64, 50usize), (5, 200_000), (6, 14)] {
            let mut r = vec![0u8; len];
            s.read_exact(&mut r).unwrap();
            assert_eq!(
                Header::decode(&r).unwrap(),
                Header {
                    seq,
                    flags: flags::REPLY,
                    len: len as u32
                }
            );
            assert_eq!(&r[HEADER_LEN..], &msg(seq, CR, len)[HEADER_LEN..]);
        }
        let c = wait_counters(&h, |c| c.tx_msgs >= 4);
        assert_eq!(
            (c.tx_msgs, c.sockperf_counted, c.sockperf_bad_frames),
            (4, 1, 0),
            "{c}"
        );
        h.stop().unwrap();
    }
}

/// The server closes a connection whose frame length is impossible; `Ok(0)` or a reset.
fn expect_closed(s: &mut TcpStream) {
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("connection not closed: {other:?}"),
    }
}

#[test]
fn tcp_malformed_frames_close_the_connection() {
    let h = start(IpAddr::V4(Ipv4Addr::LOCALHOST));
    for bad_len in [0u32, 13, (1 << 20) + 1, u32::MAX] {
        let mut s = tcp_conn(&h);
        let mut m = vec![0u8; 64];
        Header {
            seq: 1,
            flags: CR,
            len: bad_len,
        }
        .encode(&mut m)
        .unwrap();
        s.write_all(&m).unwrap();
        expect_closed(&mut s);
    }
    // A good frame after the bad connections still works on a new one.
    let mut s = tcp_conn(&h);
    s.write_all(&msg(9, CR, 40)).unwrap();
    let mut r = [0u8; 40];
    s.read_exact(&mut r).unwrap();
    assert_eq!(Header::decode(&r).unwrap().seq, 9);
    let c = wait_counters(&h, |c| c.sockperf_bad_frames >= 4);
    assert_eq!(c.sockperf_bad_frames, 4, "{c}");
    h.stop().unwrap();
}
