//! End to end: the test client echoes TCP and UDP traffic from real std::net clients on
//! 127.0.0.1 through the sim, with and without faults, and leaves nothing behind.
#![allow(
    clippy::many_single_char_names,
    clippy::items_after_statements,
    clippy::unnecessary_box_returns,
    clippy::ref_as_ptr,
    clippy::used_underscore_binding
)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use wsk_sys::*;

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn tcp_round(port: u16, size: usize, conns: usize) {
    let threads: Vec<_> = (0..conns)
        .map(|c| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let data = pattern(size, c as u8);
                let reader = {
                    let mut r = s.try_clone().unwrap();
                    std::thread::spawn(move || {
                        let mut got = vec![0u8; size];
                        r.read_exact(&mut got).expect("echo read");
                        got
                    })
                };
                for chunk in data.chunks(1000) {
                    s.write_all(chunk).unwrap();
                }
                let got = reader.join().unwrap();
                assert!(got == data, "echoed bytes differ");
                s.shutdown(std::net::Shutdown::Both).ok();
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
}

fn udp_round(port: u16, count: usize) {
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut echoed = 0;
    for i in 0..count {
        let d = pattern(100 + i % 200, i as u8);
        c.send_to(&d, ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 2048];
        if let Ok((n, _)) = c.recv_from(&mut buf) {
            assert_eq!(&buf[..n], &d[..], "UDP echo differs");
            echoed += 1;
        }
    }
    // Loopback UDP does not drop under this light load.
    assert!(
        echoed >= count * 9 / 10,
        "only {echoed}/{count} datagrams echoed"
    );
}

fn run_echo(cfg: wsk_sim::Config, zero_copy: bool, size: usize, conns: usize) {
    let _g = wsk_sim::init(cfg);
    let wsk = Wsk::open();
    let server = Server::new(zero_copy);
    let (ls, tport) = tcp_echo_listener(&wsk, &server);
    let (us, uport) = udp_echo_socket(&wsk, &server);
    tcp_round(tport, size, conns);
    udp_round(uport, 50);
    wait_until("connections closed", 10, || {
        server.conns_live.load(Ordering::SeqCst) == 0
    });
    wait_until("udp sends drained", 10, || {
        server.inflight_udp.load(Ordering::SeqCst) == 0
    });
    assert_eq!(close(ls).status, STATUS_SUCCESS);
    // Quiesce the datagram callbacks before closing: the callback calls WskSendTo on this
    // socket, and no call may overlap WskCloseSocket (W70/C22).
    assert_eq!(disable(us, WSK_EVENT_RECEIVE_FROM).status, STATUS_SUCCESS);
    wait_until("udp drained", 10, || {
        server.inflight_udp.load(Ordering::SeqCst) == 0
    });
    assert_eq!(close(us).status, STATUS_SUCCESS);
    wsk.close();
    let errors = server.errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "client saw errors: {errors:?}");
    assert_eq!(server.conns_total.load(Ordering::SeqCst), conns);
    wsk_sim::assert_no_leaks();
}

#[test]
fn echo_tcp_udp_copy_plain() {
    run_echo(wsk_sim::Config::plain(), false, 20_000, 2);
}

#[test]
fn echo_tcp_udp_zero_copy_scheduled() {
    // Default schedule: half the callbacks/completions at DISPATCH, 30% of calls pend.
    run_echo(wsk_sim::Config::default(), true, 200_000, 3);
}

#[test]
fn echo_with_short_writes_and_reordering() {
    let cfg = wsk_sim::Config {
        max_write_slice: 7,
        max_indication: 333,
        pend_rate: 0.6,
        ..wsk_sim::Config::default()
    };
    run_echo(cfg, false, 30_000, 2);
}

#[test]
fn echo_many_seeds() {
    for seed in 1..=4u64 {
        let cfg = wsk_sim::Config {
            seed,
            ..wsk_sim::Config::default()
        };
        run_echo(cfg, seed % 2 == 0, 8_000, 2);
    }
}
