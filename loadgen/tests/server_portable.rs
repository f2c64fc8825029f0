//! The portable (std::net, thread-per-connection) back end that `echoload serve` uses on
//! Windows, exercised here on Linux through `spawn_portable`.

#![allow(clippy::many_single_char_names)] // h = handle, s = socket, a = addrs, ... in short tests

use control::protocol::pattern::check as check_source;
use control::protocol::sockperf::{flags, Header};
use echoload::cli::ServeArgs;
use echoload::server::{self, ServeConfig, ServerHandle};
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(5);

fn start(ip: IpAddr) -> ServerHandle {
    server::spawn_portable(ServeArgs::ephemeral(ip)).expect("server starts")
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, T).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s
}

fn udp(addr: SocketAddr) -> UdpSocket {
    let s = UdpSocket::bind(SocketAddr::new(addr.ip(), 0)).unwrap();
    s.connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s
}

#[test]
fn every_service_v4_v6() {
    for ip in [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        let h = start(ip);
        let a = *h.addrs();
        // TCP echo.
        let mut s = tcp(a.tcp_echo.unwrap());
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 199) as u8).collect();
        let mut back = vec![0u8; data.len()];
        for (w, r) in data.chunks(5000).zip(back.chunks_mut(5000)) {
            s.write_all(w).unwrap();
            s.read_exact(r).unwrap();
        }
        assert!(data == back);
        // UDP echo: same size back.
        let u = udp(a.udp_echo.unwrap());
        let mut b = vec![0u8; 70_000];
        for size in [0usize, 1, 1472, 60_000] {
            u.send(&data[..size.min(data.len())]).unwrap();
            assert_eq!(u.recv(&mut b).unwrap(), size.min(data.len()));
        }
        // TCP discard: closes after our EOF, sends nothing.
        let mut d = tcp(a.tcp_discard.unwrap());
        d.write_all(&data).unwrap();
        d.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        d.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        // TCP source: the pattern.
        let mut src = tcp(a.tcp_source.unwrap());
        let mut off = 0u64;
        while off < 500_000 {
            let n = src.read(&mut b).unwrap();
            assert!(n > 0);
            assert_eq!(check_source(off, &b[..n]), None);
            off += n as u64;
        }
        // UDP source: same length, pattern from 0.
        let us = udp(a.udp_source.unwrap());
        us.send(&[9u8; 700]).unwrap();
        let n = us.recv(&mut b).unwrap();
        assert_eq!(n, 700);
        assert_eq!(check_source(0, &b[..n]), None);
        // sockperf UDP and TCP.
        let mut m = vec![0u8; 64];
        Header {
            seq: 5,
            flags: flags::CLIENT | flags::REPLY,
            len: 64,
        }
        .encode(&mut m)
        .unwrap();
        let sp = udp(a.udp_sockperf.unwrap());
        sp.send(&m).unwrap();
        assert_eq!(sp.recv(&mut b).unwrap(), 64);
        assert_eq!(Header::decode(&b).unwrap().flags, flags::REPLY);
        let mut st = tcp(a.tcp_sockperf.unwrap());
        st.write_all(&m[..30]).unwrap();
        st.write_all(&m[30..]).unwrap();
        let mut r = [0u8; 64];
        st.read_exact(&mut r).unwrap();
        assert_eq!(
            Header::decode(&r).unwrap(),
            Header {
                seq: 5,
                flags: flags::REPLY,
                len: 64
            }
        );
        let t = Instant::now();
        h.stop().unwrap();
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "stop took {:?}",
            t.elapsed()
        );
    }
}

#[test]
fn limits_and_malformed_frames() {
    let cfg = ServeConfig {
        max_conns: 2,
        ..ServeConfig::loopback_ephemeral()
    };
    let h = server::spawn_portable(cfg).unwrap();
    let a = *h.addrs();
    // A malformed frame closes that connection.
    let mut bad = tcp(a.tcp_sockperf.unwrap());
    let mut m = [0u8; 20];
    Header {
        seq: 1,
        flags: flags::CLIENT | flags::REPLY,
        len: 3,
    }
    .encode(&mut m)
    .unwrap();
    bad.write_all(&m).unwrap();
    let mut b = [0u8; 8];
    match bad.read(&mut b) {
        Ok(0) => {}
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("not closed: {other:?}"),
    }
    drop(bad);
    // Wait until the closed connection no longer counts, then fill the limit.
    let end = Instant::now() + T;
    while h.counters().tcp_open > 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut held: Vec<TcpStream> = (0..2).map(|_| tcp(a.tcp_echo.unwrap())).collect();
    for s in &mut held {
        s.write_all(b"x").unwrap();
        s.read_exact(&mut b[..1]).unwrap();
    }
    match TcpStream::connect_timeout(&a.tcp_echo.unwrap(), T) {
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
        Err(e) => panic!("connect: {e}"),
        Ok(mut extra) => {
            extra.set_read_timeout(Some(T)).unwrap();
            let _ = extra.write_all(b"x");
            match extra.read(&mut b) {
                Ok(0) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
                other => panic!("3rd connection served: {other:?}"),
            }
        }
    }
    let end = Instant::now() + T;
    let mut c = h.counters();
    while c.tcp_refused < 1 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
        c = h.counters();
    }
    assert_eq!((c.tcp_refused, c.sockperf_bad_frames), (1, 1), "{c}");
    h.stop().unwrap();
}
