//! Per-service statistics through the IOCTL path: each service's block counts exactly the
//! traffic its clients sent, and nothing of the others'.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use control::config::{Mode, Proto, Service};
use control::ioctl::{StatsRequest, StatsView, IOCTL_WSKECHO_QUERY_STATS, MAX_OUTPUT_BYTES};
use control::stats::{Counter as C, Counters};

fn query(drv: &common::harness::Loaded) -> (Counters, Vec<(Service, Counters)>) {
    let mut req = [0u8; 64];
    let n = StatsRequest {
        per_cpu: true,
        per_service: true,
    }
    .encode(&mut req)
    .unwrap();
    let (st, out) = drv.control(IOCTL_WSKECHO_QUERY_STATS, &req[..n], MAX_OUTPUT_BYTES);
    assert_eq!(st, 0, "stats status");
    let v = StatsView::parse(&out).unwrap();
    let svcs = (0..v.service_count())
        .map(|i| v.service(i).unwrap())
        .collect();
    (v.global(), svcs)
}

fn block(svcs: &[(Service, Counters)], proto: Proto, port: u16) -> Counters {
    svcs.iter()
        .find(|(s, _)| s.proto == proto && s.port == port)
        .map(|(_, c)| *c)
        .expect("service listed")
}

#[test]
#[allow(clippy::many_single_char_names)]
fn per_service_counters_match_each_clients_traffic() {
    let (cfg, ports) = common::harness::config_with(
        V4,
        &[
            (Proto::Tcp, Mode::Echo),
            (Proto::Udp, Mode::Echo),
            (Proto::Tcp, Mode::Discard),
        ],
    );
    let drv = common::harness::load(wsk_sim::Config::default(), Some(cfg)).unwrap();
    assert!(drv.ready);
    let (tcp_echo_port, udp_echo_port, discard_port) = (ports[0], ports[1], ports[2]);

    // TCP echo: 3 connections, different sizes, every byte echoed.
    let mut tcp_bytes = 0u64;
    for (k, len) in [1usize, 1000, 70_000].into_iter().enumerate() {
        let mut s = connect(SocketAddr::new(V4, tcp_echo_port));
        let data = payload(k as u64, len);
        assert_eq!(tcp_echo(&mut s, &data), data);
        tcp_bytes += len as u64;
    }
    // UDP echo: one datagram in flight at a time, so none is lost on loopback.
    let u = udp_client(V4);
    u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let to = SocketAddr::new(V4, udp_echo_port);
    let (mut dgrams, mut udp_bytes) = (0u64, 0u64);
    let mut buf = vec![0u8; 65536];
    for len in [0usize, 1, 64, 1400, 9000] {
        let data = payload(len as u64, len);
        u.send_to(&data, to).unwrap();
        let (n, _) = u.recv_from(&mut buf).expect("echo datagram");
        assert_eq!(&buf[..n], &data[..]);
        dgrams += 1;
        udp_bytes += len as u64;
    }
    // Discard: two connections, nothing comes back.
    let mut discard_bytes = 0u64;
    for len in [5000usize, 123] {
        let mut s = connect(SocketAddr::new(V4, discard_port));
        s.write_all(&payload(9, len)).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        // The service closes after the peer's FIN: EOF means everything was taken.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(rest.is_empty());
        discard_bytes += len as u64;
    }

    // Counts land asynchronously (send completions, closes): wait for the totals, then compare
    // every block exactly.
    eventually("counters settle", || {
        let (_, s) = query(&drv);
        let t = block(&s, Proto::Tcp, tcp_echo_port);
        let d = block(&s, Proto::Tcp, discard_port);
        t.get(C::BytesOut) == tcp_bytes
            && t.get(C::ConnActive) == 0
            && d.get(C::BytesIn) == discard_bytes
            && d.get(C::ConnActive) == 0
    });
    let (global, svcs) = query(&drv);
    let t = block(&svcs, Proto::Tcp, tcp_echo_port);
    assert_eq!(t.get(C::ConnAccepted), 3);
    assert_eq!(t.get(C::ConnRefused), 0);
    assert_eq!(t.get(C::BytesIn), tcp_bytes);
    assert_eq!(t.get(C::BytesOut), tcp_bytes);
    assert_eq!(t.get(C::DatagramsIn) + t.get(C::DatagramsOut), 0);
    assert!(
        t.get(C::ZeroCopySends) + t.get(C::CopySends) > 0,
        "echo sends counted for the service"
    );

    let ud = block(&svcs, Proto::Udp, udp_echo_port);
    assert_eq!(ud.get(C::DatagramsIn), dgrams);
    assert_eq!(ud.get(C::DatagramsOut), dgrams);
    assert_eq!(ud.get(C::BytesIn), udp_bytes);
    assert_eq!(ud.get(C::BytesOut), udp_bytes);
    assert_eq!(ud.get(C::ConnAccepted), 0);

    let d = block(&svcs, Proto::Tcp, discard_port);
    assert_eq!(d.get(C::ConnAccepted), 2);
    assert_eq!(d.get(C::BytesIn), discard_bytes);
    assert_eq!(d.get(C::BytesOut), 0);
    assert_eq!(d.get(C::DatagramsIn), 0);

    // The services are the only traffic: the global block is their sum.
    for c in [
        C::ConnAccepted,
        C::BytesIn,
        C::BytesOut,
        C::DatagramsIn,
        C::DatagramsOut,
    ] {
        assert_eq!(
            global.get(c),
            t.get(c) + ud.get(c) + d.get(c),
            "{}",
            c.name()
        );
    }

    // A removed and re-added service starts from zero (its slot is freed, then reused).
    let svc = Service::new(Proto::Udp, udp_echo_port, Mode::Echo, V4);
    let set = |change: control::ioctl::SetConfig| {
        let mut b = vec![0u8; change.encoded_len()];
        let n = change.encode(&mut b).unwrap();
        drv.control(control::ioctl::IOCTL_WSKECHO_SET_CONFIG, &b[..n], 0)
            .0
    };
    assert_eq!(set(control::ioctl::SetConfig::RemoveService(svc)), 0);
    // (The sim may release the host port a moment after the close completed.)
    eventually("port re-bound", || {
        set(control::ioctl::SetConfig::AddService(svc)) == 0
    });
    let (_, svcs) = query(&drv);
    assert_eq!(
        block(&svcs, Proto::Udp, udp_echo_port).get(C::DatagramsIn),
        0
    );
    assert_eq!(
        block(&svcs, Proto::Tcp, tcp_echo_port).get(C::BytesIn),
        tcp_bytes,
        "others untouched"
    );
    drop(u);
    assert_clean(&drv.unload());
}
