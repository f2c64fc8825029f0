//! Receiver-side counts of a run (iperf3 reports the receiver's view of a UDP test): read from
//! `echoload serve`'s metrics endpoint, the only control channel `echoload serve` has, before
//! and after the run (`echoload run --server-metrics ADDR`). In results/ because the counts
//! are part of the result document (its `receiver` object, written by report.rs).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::client::Proto;

/// What the server's service counted over the run, warm-up and connection set-up included.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReceiverCounts {
    /// Where they were read (`echoload serve --metrics` address).
    pub source: String,
    /// The service the target port belongs to (`discard`, `echo`, ...).
    pub service: String,
    /// Messages received: UDP datagrams, sockperf messages, TCP echo's echoload-wire messages
    /// (TCP discard counts none: it drops its bytes unread).
    pub received_msgs: u64,
    pub received_bytes: u64,
    /// UDP datagrams the service did not answer or dropped (guard, full buffers).
    pub udp_dropped: u64,
}

/// One reading of the target service's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    pub service: String,
    pub msgs: u64,
    pub bytes: u64,
    pub dropped: u64,
}

/// Reads `http://ADDR/metrics` and picks the counters of the service on `port`/`proto`.
pub fn read(addr: &str, proto: Proto, port: u16) -> Result<Reading> {
    let text = get_metrics(addr)?;
    parse(&text, proto, port).ok_or_else(|| {
        anyhow!(
            "the metrics at {addr} have no {proto} service on port {port} (is it echoload \
             serve --metrics, serving the target?)"
        )
    })
}

/// After minus before, as the report's receiver counts.
pub fn counts(addr: &str, before: &Reading, after: &Reading) -> ReceiverCounts {
    ReceiverCounts {
        source: addr.to_string(),
        service: after.service.clone(),
        received_msgs: after.msgs.saturating_sub(before.msgs),
        received_bytes: after.bytes.saturating_sub(before.bytes),
        udp_dropped: after.dropped.saturating_sub(before.dropped),
    }
}

fn get_metrics(addr: &str) -> Result<String> {
    let sa: SocketAddr = addr
        .to_socket_addrs()
        .with_context(|| format!("--server-metrics {addr}"))?
        .next()
        .ok_or_else(|| anyhow!("--server-metrics {addr}: no address"))?;
    let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(3))
        .with_context(|| format!("connecting to the server's metrics at {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let Some((head, body)) = out.split_once("\r\n\r\n") else {
        bail!("{addr}: not an HTTP answer");
    };
    if !head.starts_with("HTTP/1.") || !head.contains(" 200 ") {
        bail!("{addr}: {}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_string())
}

/// The target service's counters in an exposition (`echoload_server_service_*` families).
pub fn parse(text: &str, proto: Proto, port: u16) -> Option<Reading> {
    let want_proto = format!("proto=\"{proto}\"");
    let want_port = format!("port=\"{port}\"");
    let mut r = Reading::default();
    let mut found = false;
    for line in text.lines() {
        let Some((name, rest)) = line.split_once('{') else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let labels: Vec<&str> = labels.split(',').collect();
        if !labels.contains(&want_proto.as_str()) || !labels.contains(&want_port.as_str()) {
            continue;
        }
        let v = value.trim().parse::<f64>().ok()? as u64;
        let slot = match name {
            "echoload_server_service_received_messages_total" => &mut r.msgs,
            "echoload_server_service_received_bytes_total" => &mut r.bytes,
            "echoload_server_service_udp_dropped_total" => &mut r.dropped,
            _ => continue,
        };
        *slot = v;
        found = true;
        if let Some(s) = labels.iter().find_map(|l| l.strip_prefix("service=\"")) {
            r.service = s.trim_end_matches('"').to_string();
        }
    }
    found.then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_target_service() {
        let text = "\
# TYPE echoload_server_service_received_messages_total counter
echoload_server_service_received_messages_total{service=\"discard\",proto=\"udp\",port=\"7009\"} 1500
echoload_server_service_received_messages_total{service=\"discard\",proto=\"tcp\",port=\"7009\"} 0
echoload_server_service_received_messages_total{service=\"echo\",proto=\"udp\",port=\"7007\"} 9
echoload_server_service_received_bytes_total{service=\"discard\",proto=\"udp\",port=\"7009\"} 96000
echoload_server_service_udp_dropped_total{service=\"discard\",proto=\"udp\",port=\"7009\"} 2
";
        let r = parse(text, Proto::Udp, 7009).unwrap();
        assert_eq!(
            r,
            Reading {
                service: "discard".into(),
                msgs: 1500,
                bytes: 96_000,
                dropped: 2
            }
        );
        assert_eq!(parse(text, Proto::Udp, 7010), None);
        let before = Reading {
            msgs: 500,
            bytes: 32_000,
            ..r.clone()
        };
        let c = counts("h:1", &before, &r);
        assert_eq!(
            (c.received_msgs, c.received_bytes, c.udp_dropped),
            (1000, 64_000, 0)
        );
    }
}
