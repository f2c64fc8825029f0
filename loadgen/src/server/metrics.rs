//! `echoload serve --metrics ADDR`: the reference server's counters in the Prometheus format
//! (totals and per service). Here with the server, whose counters it reads; the format and
//! the endpoint are `crate::metrics`.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::Result;

use super::{Counters as ServerCounters, Proto, ServerHandle};
use crate::metrics::{Exposition, Kind, MetricsServer};

/// One bound service's counters: (service, protocol, address, counters).
pub type ServiceCounters = (control::protocol::Mode, Proto, SocketAddr, ServerCounters);

/// `echoload serve`'s counters: the totals, and per service the same counters in
/// `echoload_server_service_*` families labelled `service`, `proto` and `port` (separate
/// families, so a `sum()` over one never counts twice).
pub fn server_exposition(
    c: &ServerCounters,
    services: &[ServiceCounters],
    started: Instant,
) -> String {
    use Kind::Gauge as G;
    let mut e = Exposition::default();
    server_totals(&mut e, c);
    server_services(&mut e, services);
    e.single(
        "echoload_server_uptime_seconds",
        G,
        "Seconds since the server started.",
        started.elapsed().as_secs_f64(),
    );
    e.finish()
}

/// Per service and protocol: messages and bytes each way, drops, connections.
fn server_services(e: &mut Exposition, services: &[ServiceCounters]) {
    use Kind::Counter as C;
    type Get = fn(&ServerCounters) -> u64;
    let rows: [(&str, &str, Get); 8] = [
        (
            "echoload_server_service_received_messages_total",
            "Messages received: UDP datagrams, sockperf messages, and on TCP echo the \
             echoload-wire messages received whole (a byte stream of another format counts \
             none; TCP discard drops its bytes unread and counts none). Per service and \
             protocol.",
            |c| c.rx_msgs,
        ),
        (
            "echoload_server_service_sent_messages_total",
            "Messages sent: UDP datagrams, sockperf replies, TCP echoload-wire messages \
             echoed whole. Per service and protocol.",
            |c| c.tx_msgs,
        ),
        (
            "echoload_server_service_received_bytes_total",
            "Payload bytes received. Per service and protocol.",
            |c| c.rx_bytes,
        ),
        (
            "echoload_server_service_sent_bytes_total",
            "Payload bytes sent. Per service and protocol.",
            |c| c.tx_bytes,
        ),
        (
            "echoload_server_service_udp_dropped_total",
            "UDP datagrams not answered. Per service and protocol.",
            |c| c.udp_dropped,
        ),
        (
            "echoload_server_service_udp_rate_limited_total",
            "UDP datagrams dropped by the per-source rate limit. Per service and protocol.",
            |c| c.udp_drop_rate,
        ),
        (
            "echoload_server_service_tcp_connections_accepted_total",
            "TCP connections accepted. Per service and protocol.",
            |c| c.tcp_accepted,
        ),
        (
            "echoload_server_service_tcp_connections_refused_total",
            "TCP connections reset at once (connection limit). Per service and protocol.",
            |c| c.tcp_refused,
        ),
    ];
    for (name, help, get) in rows {
        e.family(name, C, help);
        for (svc, proto, addr, c) in services {
            let tcp = *proto == Proto::Tcp;
            // TCP-only and UDP-only families leave the other protocol out.
            if (name.contains("_udp_") && tcp) || (name.contains("_tcp_") && !tcp) {
                continue;
            }
            let port = addr.port().to_string();
            let labels = [
                ("service", svc.name()),
                ("proto", if tcp { "tcp" } else { "udp" }),
                ("port", port.as_str()),
            ];
            e.sample(name, &labels, get(c) as f64);
        }
    }
}

fn server_totals(e: &mut Exposition, c: &ServerCounters) {
    use Kind::{Counter as C, Gauge as G};
    let rows: [(&str, Kind, &str, u64); 10] = [
        (
            "echoload_server_tcp_connections_accepted_total",
            C,
            "TCP connections accepted.",
            c.tcp_accepted,
        ),
        (
            "echoload_server_tcp_connections_refused_total",
            C,
            "TCP connections closed at once because the connection limit was reached.",
            c.tcp_refused,
        ),
        (
            "echoload_server_tcp_connections_open",
            G,
            "TCP connections open now.",
            c.tcp_open,
        ),
        (
            "echoload_server_received_bytes_total",
            C,
            "Payload bytes received, all services and transports.",
            c.rx_bytes,
        ),
        (
            "echoload_server_sent_bytes_total",
            C,
            "Payload bytes sent, all services and transports.",
            c.tx_bytes,
        ),
        (
            "echoload_server_received_messages_total",
            C,
            "UDP datagrams, sockperf messages and TCP echo's echoload-wire messages received.",
            c.rx_msgs,
        ),
        (
            "echoload_server_sent_messages_total",
            C,
            "UDP datagrams, sockperf replies and TCP echo's echoload-wire messages sent.",
            c.tx_msgs,
        ),
        (
            "echoload_server_udp_dropped_total",
            C,
            "UDP datagrams not answered (send buffer full, truncated, refused source port).",
            c.udp_dropped,
        ),
        (
            "echoload_server_sockperf_bad_frames_total",
            C,
            "Malformed sockperf messages.",
            c.sockperf_bad_frames,
        ),
        (
            "echoload_server_sockperf_unanswered_total",
            C,
            "sockperf messages counted without a reply (none requested).",
            c.sockperf_counted,
        ),
    ];
    for (name, kind, help, v) in rows {
        e.single(name, kind, help, v as f64);
    }
}

/// `echoload serve --metrics ADDR`: the server's counters on ADDR until the handle is dropped.
pub fn serve_server_counters(addr: &str, h: &ServerHandle) -> Result<MetricsServer> {
    let read = h.counter_reader();
    let by_service = h.service_reader();
    let started = Instant::now();
    let server = MetricsServer::start(addr, move || {
        server_exposition(&read(), &by_service(), started)
    })?;
    println!("metrics  http http://{}/metrics", server.addr());
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::check::well_formed;

    #[test]
    fn the_exposition_is_well_formed_and_carries_the_values() {
        let c = ServerCounters {
            rx_bytes: 12345,
            tcp_open: 3,
            ..ServerCounters::default()
        };
        let t = server_exposition(&c, &[], Instant::now());
        well_formed(&t);
        assert!(t.contains("\nechoload_server_received_bytes_total 12345\n"));
        assert!(t.contains("\nechoload_server_tcp_connections_open 3\n"));
    }
}
