//! `echoload serve`'s counters by service and protocol (issue 21: the metrics are labelled
//! by both), TCP echo's message counts included.

mod common;

use std::time::Duration;

use common::{addr, quick, server_on};
use control::protocol::Mode as Svc;
use echoload::client::{Mode, Proto};
use echoload::run;
use echoload::server::Proto as SProto;

#[test]
fn counters_are_kept_per_service_and_protocol() {
    let srv = server_on("127.0.0.1");
    let mut tcp = quick(
        addr(&srv, Svc::Echo, Proto::Tcp),
        Proto::Tcp,
        Mode::Pingpong,
    );
    tcp.warmup = Duration::ZERO;
    tcp.conns = 2;
    let t = run(&tcp);
    let mut udp = quick(addr(&srv, Svc::Discard, Proto::Udp), Proto::Udp, Mode::Sink);
    udp.warmup = Duration::ZERO;
    udp.rate = Some(5_000.0);
    let u = run(&udp);
    assert!(
        t.sent_msgs > 0 && u.sent_msgs > 0,
        "{}{}",
        t.table(),
        u.table()
    );
    // Workers publish once per event batch: give them a moment (bounded).
    let get = |svc, proto| {
        srv.counters_by_service()
            .into_iter()
            .find(|(s, p, _, _)| *s == svc && *p == proto)
            .map(|(_, _, _, c)| c)
            .unwrap()
    };
    for _ in 0..50 {
        if get(Svc::Discard, SProto::Udp).rx_msgs >= u.sent_msgs {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let echo_tcp = get(Svc::Echo, SProto::Tcp);
    // Every message the client counted, and the few still in flight when it stopped counting.
    assert!(
        echo_tcp.rx_msgs >= t.sent_msgs && echo_tcp.rx_msgs - t.sent_msgs <= 2,
        "echo/tcp received {} messages, the client sent {}",
        echo_tcp.rx_msgs,
        t.sent_msgs
    );
    assert!(echo_tcp.tx_msgs >= t.recv_msgs && echo_tcp.tx_msgs <= echo_tcp.rx_msgs);
    assert_eq!(echo_tcp.tcp_accepted, 2);
    assert_eq!(echo_tcp.rx_bytes, echo_tcp.rx_msgs * 64);
    let discard_udp = get(Svc::Discard, SProto::Udp);
    assert!(
        discard_udp.rx_msgs >= u.sent_msgs,
        "discard/udp {} of {}",
        discard_udp.rx_msgs,
        u.sent_msgs
    );
    assert_eq!(discard_udp.tcp_accepted, 0);
    // Nothing went to the others, and the blocks add up to the totals.
    assert_eq!(get(Svc::Echo, SProto::Udp).rx_bytes, 0);
    assert_eq!(get(Svc::Discard, SProto::Tcp).rx_bytes, 0);
    let all = srv.counters();
    let sum: u64 = srv
        .counters_by_service()
        .iter()
        .map(|(_, _, _, c)| c.rx_bytes)
        .sum();
    assert_eq!(sum, all.rx_bytes);
}
