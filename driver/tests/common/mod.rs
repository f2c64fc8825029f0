//! Shared helpers of the driver's host tests: the sim harness (same source as wskecho-sim's)
//! and small std::net clients that verify every byte.
#![allow(dead_code)]

// The host runner's harness (its own crate lints it); a Config by value and methods kept
// on the instance are its API.
#[allow(clippy::large_types_passed_by_value, clippy::unused_self)]
#[path = "../../../wskecho-sim/src/harness.rs"]
pub mod harness;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

pub const V4: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
pub const V6: IpAddr = IpAddr::V6(std::net::Ipv6Addr::LOCALHOST);

/// Deterministic payload: byte i of message `seed` is a mix of both.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            ((i as u64)
                .wrapping_mul(31)
                .wrapping_add(seed.wrapping_mul(7919))
                % 253) as u8
        })
        .collect()
}

pub fn connect(addr: SocketAddr) -> TcpStream {
    let t0 = Instant::now();
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
                s.set_nodelay(true).unwrap();
                return s;
            }
            Err(e) if t0.elapsed() > Duration::from_secs(5) => panic!("connect {addr}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Writes `data` while reading the echo on another thread; returns what came back.
pub fn tcp_echo(s: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    let mut r = s.try_clone().unwrap();
    let n = data.len();
    let reader = std::thread::spawn(move || {
        let mut got = vec![0u8; n];
        r.read_exact(&mut got).map(|()| got)
    });
    s.write_all(data).unwrap();
    reader.join().unwrap().expect("echo read")
}

pub fn udp_client(ip: IpAddr) -> UdpSocket {
    let u = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
    u.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    u
}

/// Sends one datagram and waits (retrying a few times: UDP may drop) for its echo.
pub fn udp_roundtrip(u: &UdpSocket, to: SocketAddr, data: &[u8]) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    for _ in 0..5 {
        u.send_to(data, to).unwrap();
        if let Ok((n, from)) = u.recv_from(&mut buf) {
            assert_eq!(from, to, "reply from the service address");
            return Some(buf[..n].to_vec());
        }
    }
    None
}

/// Polls `f` (bounded) until it holds.
pub fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn assert_clean(findings: &[String]) {
    assert!(findings.is_empty(), "sim findings at unload: {findings:#?}");
}

/// The shipped image (target/driver/wskecho.sys, or WSKECHO_SYS), for the tests that run it
/// too (with wskecho-sim's image harness). None, said once, when it is not built, unless
/// WSKECHO_REQUIRE_IMAGE=1 (CI builds it with `cargo xtask driver`), which makes that a failure.
pub fn image_path() -> Option<std::path::PathBuf> {
    let p = std::env::var_os("WSKECHO_SYS").map_or_else(
        || {
            std::path::PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/driver/wskecho.sys"
            ))
        },
        std::path::PathBuf::from,
    );
    if p.is_file() {
        return Some(p);
    }
    assert!(
        std::env::var("WSKECHO_REQUIRE_IMAGE").as_deref() != Ok("1"),
        "{} missing (build it with `cargo xtask driver`)",
        p.display()
    );
    eprintln!(
        "SKIPPED: no driver image at {} (build it with `cargo xtask driver`)",
        p.display()
    );
    None
}

/// Sends one `config set` change through the control handler; returns the NTSTATUS.
pub fn set_config(drv: &harness::Loaded, change: &control::ioctl::SetConfig) -> i32 {
    let mut buf = vec![0u8; change.encoded_len()];
    let n = change.encode(&mut buf).unwrap();
    drv.control(control::ioctl::IOCTL_WSKECHO_SET_CONFIG, &buf[..n], 0)
        .0
}

/// The running configuration (`config get`).
pub fn get_config(drv: &harness::Loaded) -> control::config::Config {
    let mut req = [0u8; 64];
    let n = control::ioctl::encode_empty_request(control::ioctl::Kind::ConfigGetRequest, &mut req)
        .unwrap();
    let (st, out) = drv.control(
        control::ioctl::IOCTL_WSKECHO_GET_CONFIG,
        &req[..n],
        control::ioctl::MAX_OUTPUT_BYTES,
    );
    assert_eq!(st, 0);
    control::ioctl::decode_config_response(&out).unwrap()
}
