//! `echoload serve` services against plain std::net clients: echo, discard, source on TCP and
//! UDP, IPv4 and IPv6, plus the robustness limits (connection limit, a client that never
//! reads, bounded stop). Every wait is bounded.

// Every unsafe block states why it is sound.
#![deny(clippy::undocumented_unsafe_blocks)]
#![allow(clippy::many_single_char_names)] // h = handle, s = socket, a = addrs, ... in short tests

use control::protocol::pattern::check as check_source;
use control::protocol::Mode as ServiceMode;
use echoload::cli::ServeArgs;
use echoload::server::{self, Counters, Proto, ServeConfig, ServerHandle};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(5);
const IPS: [IpAddr; 2] = [
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
];

fn start(ip: IpAddr) -> ServerHandle {
    server::spawn(ServeArgs::ephemeral(ip)).expect("server starts")
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, T).expect("connect");
    s.set_read_timeout(Some(T)).unwrap();
    s.set_write_timeout(Some(T)).unwrap();
    s
}

fn udp_to(addr: SocketAddr) -> UdpSocket {
    let any: SocketAddr = if addr.is_ipv4() {
        "127.0.0.1:0".parse().unwrap()
    } else {
        "[::1]:0".parse().unwrap()
    };
    let s = UdpSocket::bind(any).unwrap();
    s.connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s
}

/// Polls the server's counters until `ok` holds (they are published once per event batch).
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

#[test]
fn tcp_echo_returns_every_byte_v4_v6() {
    for ip in IPS {
        let h = start(ip);
        let mut s = tcp(h.addrs().tcp_echo.unwrap());
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let mut back = vec![0u8; data.len()];
        // Write and read in slices small enough that neither side's buffers fill.
        for (w, r) in data.chunks(10_000).zip(back.chunks_mut(10_000)) {
            s.write_all(w).unwrap();
            s.read_exact(r).unwrap();
        }
        assert!(data == back, "echoed bytes differ ({ip})");
        s.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "echo sent extra bytes");
        h.stop().unwrap();
    }
}

#[test]
fn udp_echo_same_datagram_never_larger_v4_v6() {
    for ip in IPS {
        let h = start(ip);
        let s = udp_to(h.addrs().udp_echo.unwrap());
        let mut buf = vec![0u8; 70_000];
        for size in [
            0usize,
            1,
            64,
            1472,
            9000,
            65_507 - 40,
            if ip.is_ipv4() { 65_507 } else { 65_487 },
        ] {
            let msg: Vec<u8> = (0..size).map(|i| (i % 253) as u8 ^ 0x5a).collect();
            s.send(&msg).unwrap();
            let n = s.recv(&mut buf).expect("echo reply");
            assert_eq!(n, size, "reply size for {size} bytes ({ip})");
            assert!(buf[..n] == msg[..], "reply bytes for {size} ({ip})");
        }
        let c = wait_counters(&h, |c| c.tx_msgs >= 7);
        assert!(
            c.tx_bytes <= c.rx_bytes,
            "UDP echo sent more than it received: {c}"
        );
        h.stop().unwrap();
    }
}

#[test]
fn udp_echo_burst_of_many_datagrams() {
    let h = start(IPS[0]);
    let s = udp_to(h.addrs().udp_echo.unwrap());
    let mut got = 0usize;
    let mut buf = [0u8; 2048];
    // Bursts of 100 with a drain in between: loopback does not drop at this depth.
    for round in 0..10u32 {
        for i in 0..100u32 {
            let v = round * 100 + i;
            s.send(&v.to_be_bytes().repeat(25)).unwrap();
        }
        for _ in 0..100 {
            let n = s.recv(&mut buf).unwrap();
            assert_eq!(n, 100);
            assert!(
                buf[..n].chunks(4).all(|c| c == &buf[..4]),
                "datagram mixed up"
            );
            got += 1;
        }
    }
    assert_eq!(got, 1000);
    let c = wait_counters(&h, |c| c.rx_msgs >= 1000 && c.tx_msgs >= 1000);
    assert_eq!(
        (c.rx_msgs, c.tx_msgs, c.udp_dropped),
        (1000, 1000, 0),
        "{c}"
    );
}

#[test]
fn discard_tcp_and_udp_v4_v6() {
    for ip in IPS {
        let h = start(ip);
        let mut s = tcp(h.addrs().tcp_discard.unwrap());
        let chunk = vec![0xabu8; 64 * 1024];
        for _ in 0..32 {
            s.write_all(&chunk).unwrap();
        }
        s.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest)
            .expect("discard closes after our EOF");
        assert!(rest.is_empty(), "discard sent data");
        let u = udp_to(h.addrs().udp_discard.unwrap());
        for _ in 0..10 {
            u.send(&[1u8; 100]).unwrap();
        }
        u.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut b = [0u8; 200];
        assert!(u.recv(&mut b).is_err(), "UDP discard answered");
        let c = wait_counters(&h, |c| c.rx_bytes >= 32 * 65536 + 1000 && c.rx_msgs >= 10);
        assert_eq!(c.rx_bytes, 32 * 65536 + 1000, "{c}");
        assert_eq!(c.tx_bytes, 0);
        h.stop().unwrap();
    }
}

#[test]
fn tcp_source_streams_the_pattern_v4_v6() {
    for ip in IPS {
        let h = start(ip);
        let mut s = tcp(h.addrs().tcp_source.unwrap());
        let mut off = 0u64;
        let mut buf = vec![0u8; 100_000];
        while off < 4_000_000 {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "source closed");
            assert_eq!(
                check_source(off, &buf[..n]),
                None,
                "pattern broken near offset {off} ({ip})"
            );
            off += n as u64;
        }
        // Whatever the client sends is read and dropped, and does not disturb the stream.
        s.write_all(b"ignored").unwrap();
        let n = s.read(&mut buf).unwrap();
        assert_eq!(check_source(off, &buf[..n]), None);
        h.stop().unwrap();
    }
}

#[test]
fn udp_source_answers_same_length_with_pattern_v4_v6() {
    for ip in IPS {
        let h = start(ip);
        let s = udp_to(h.addrs().udp_source.unwrap());
        let mut buf = vec![0u8; 70_000];
        for size in [1usize, 14, 500, 1472, 30_000] {
            s.send(&vec![0xffu8; size]).unwrap();
            let n = s.recv(&mut buf).unwrap();
            assert_eq!(
                n, size,
                "UDP source reply must be exactly the request's size"
            );
            assert_eq!(check_source(0, &buf[..n]), None);
        }
        h.stop().unwrap();
    }
}

#[test]
fn connection_limit_refuses_cleanly_and_recovers() {
    let cfg = ServeConfig {
        max_conns: 3,
        ..ServeConfig::loopback_ephemeral()
    };
    let h = server::spawn(cfg).unwrap();
    let addr = h.addrs().tcp_echo.unwrap();
    let mut held: Vec<TcpStream> = (0..3).map(|_| tcp(addr)).collect();
    for s in &mut held {
        s.write_all(b"ping").unwrap();
        let mut b = [0u8; 4];
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"ping");
    }
    let mut b = [0u8; 4];
    // The reset can arrive before connect() reports success, or on the first read.
    match TcpStream::connect_timeout(&addr, T) {
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("connect: {e}"),
        Ok(mut extra) => {
            extra.set_read_timeout(Some(T)).unwrap();
            let _ = extra.write_all(b"ping");
            match extra.read(&mut b) {
                Ok(0) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
                other => panic!("the 4th connection was served: {other:?}"),
            }
        }
    }
    let c = wait_counters(&h, |c| c.tcp_refused >= 1);
    assert_eq!(
        (c.tcp_accepted, c.tcp_refused, c.tcp_open),
        (3, 1, 3),
        "{c}"
    );
    // A slot freed by a closing client is usable again.
    drop(held.pop());
    wait_counters(&h, |c| c.tcp_open == 2);
    // Retried: on a loaded machine the server may see our close a little after its counter
    // moved, and a connection made in between is (rightly) refused.
    let end = Instant::now() + T;
    loop {
        let served = TcpStream::connect_timeout(&addr, T)
            .ok()
            .and_then(|mut again| {
                again.set_read_timeout(Some(T)).unwrap();
                again.write_all(b"pong").ok()?;
                again.read_exact(&mut b).ok()?;
                Some(b)
            });
        match served {
            Some(got) => {
                assert_eq!(&got, b"pong");
                break;
            }
            None if Instant::now() < end => std::thread::sleep(Duration::from_millis(20)),
            None => panic!("a freed connection slot was not reusable"),
        }
    }
    h.stop().unwrap();
}

#[test]
fn client_that_never_reads_gets_backpressure() {
    let h = start(IPS[0]);
    let addr = h.addrs().tcp_echo.unwrap();
    let s = tcp(addr);
    s.set_nonblocking(true).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let mut written = 0usize;
    let limit = 256 << 20;
    let end = Instant::now() + T;
    let mut stalls = 0;
    // Write without reading until the writes stall for a while: the server must stop reading.
    while written < limit && Instant::now() < end {
        match (&s).write(&chunk) {
            Ok(n) => {
                written += n;
                stalls = 0;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                stalls += 1;
                if stalls > 50 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("write failed: {e}"),
        }
    }
    assert!(
        written < limit,
        "server kept reading {written} bytes from a client that never reads"
    );
    // Meanwhile the server serves others.
    let mut other = tcp(addr);
    other.write_all(b"still alive").unwrap();
    let mut b = [0u8; 11];
    other.read_exact(&mut b).unwrap();
    assert_eq!(&b, b"still alive");
    let c = h.counters();
    // Held by the server: what it read minus what it wrote back is at most its buffer.
    assert!(
        c.rx_bytes - c.tx_bytes <= 64 * 1024,
        "server buffered too much: {c}"
    );
    drop(s);
    h.stop().unwrap();
}

#[test]
fn stop_is_bounded_with_open_connections() {
    let h = start(IPS[0]);
    let _a = tcp(h.addrs().tcp_echo.unwrap());
    let _b = tcp(h.addrs().tcp_source.unwrap());
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    h.stop().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "stop took {:?}",
        t.elapsed()
    );
}

#[test]
fn multi_thread_server_serves_on_each_port() {
    let cfg = ServeConfig {
        threads: 3,
        ..ServeConfig::loopback_ephemeral()
    };
    let h = server::spawn(cfg).unwrap();
    for (svc, proto, addr) in h.bound() {
        assert_ne!(addr.port(), 0);
        assert_eq!(h.addr(*svc, *proto), Some(*addr));
    }
    // Many flows: SO_REUSEPORT spreads them over the workers; every one is answered.
    let echo = h.addrs().udp_echo.unwrap();
    for i in 0..20u8 {
        let s = udp_to(echo);
        s.send(&[i; 33]).unwrap();
        let mut b = [0u8; 64];
        assert_eq!(s.recv(&mut b).unwrap(), 33);
        assert_eq!(b[0], i);
    }
    assert_eq!(
        h.addrs().tcp_echo.unwrap().port(),
        h.addr(ServiceMode::Echo, Proto::Udp).unwrap().port()
    );
    h.stop().unwrap();
}

#[test]
fn fixed_port_in_use_is_an_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cfg = ServeConfig {
        echo_port: Some(port),
        ..ServeConfig::loopback_ephemeral()
    };
    let err = server::spawn(cfg).expect_err("port is taken");
    assert!(format!("{err:#}").contains("echo"), "{err:#}");
}

/// Sends `buf` as one GSO burst of `seg`-byte datagrams (UDP_SEGMENT), as echoload's client and
/// QUIC stacks do; the server's UDP_GRO socket gets it as one buffer and must answer per datagram.
#[cfg(target_os = "linux")]
fn send_gso(s: &UdpSocket, buf: &[u8], seg: u16) {
    use std::os::fd::AsRawFd;
    let v = libc::c_int::from(seg);
    // SAFETY: setsockopt with a pointer to a live c_int and its size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&raw const v).cast(),
            4,
        )
    };
    assert_eq!(r, 0, "UDP_SEGMENT: {}", std::io::Error::last_os_error());
    assert_eq!(s.send(buf).unwrap(), buf.len());
}

#[cfg(target_os = "linux")]
#[test]
fn udp_gso_bursts_are_answered_datagram_by_datagram() {
    use control::protocol::sockperf::{flags, Header};
    for ip in IPS {
        let h = start(ip);
        // Echo: 9 full segments and a short last one come back as 10 datagrams, same sizes.
        let s = udp_to(h.addrs().udp_echo.unwrap());
        let burst: Vec<u8> = (0..950u32).map(|i| (i / 100) as u8).collect();
        send_gso(&s, &burst, 100);
        let mut b = [0u8; 2048];
        for k in 0..10u8 {
            let n = s.recv(&mut b).expect("echoed segment");
            assert_eq!(n, if k < 9 { 100 } else { 50 }, "segment {k} size ({ip})");
            assert!(b[..n].iter().all(|x| *x == k), "segment {k} content");
        }
        // sockperf: only segments asking for a reply come back, in order, flags fixed.
        let sp = udp_to(h.addrs().udp_sockperf.unwrap());
        let mut burst = Vec::new();
        for seq in 0..12u64 {
            let mut m = vec![seq as u8; 64];
            let fl = if seq % 3 == 0 {
                flags::CLIENT
            } else {
                flags::CLIENT | flags::REPLY
            };
            Header {
                seq,
                flags: fl,
                len: 64,
            }
            .encode(&mut m)
            .unwrap();
            burst.extend(m);
        }
        send_gso(&sp, &burst, 64);
        for seq in (0..12u64).filter(|s| s % 3 != 0) {
            let n = sp.recv(&mut b).expect("sockperf reply");
            assert_eq!(n, 64);
            assert_eq!(
                Header::decode(&b).unwrap(),
                Header {
                    seq,
                    flags: flags::REPLY,
                    len: 64
                }
            );
            assert!(b[14..64].iter().all(|x| u64::from(*x) == seq));
        }
        let c = wait_counters(&h, |c| c.rx_msgs >= 22 && c.tx_msgs >= 18);
        assert_eq!(
            (c.rx_msgs, c.tx_msgs, c.sockperf_counted, c.udp_dropped),
            (22, 18, 4, 0),
            "{c}"
        );
        assert!(c.tx_bytes <= c.rx_bytes, "{c}");
        h.stop().unwrap();
    }
}
