//! `echoload driver exporter`: the driver's counters (global, per CPU, per service) in the
//! Prometheus format. Here with the control-device client that reads them; the format and
//! the endpoint are `crate::metrics`.

use control::stats::{Counter, Counters as DriverCounters};

use super::Snapshot;
use crate::metrics::{Exposition, Kind};

/// Metric name and fixed labels of each driver counter (`None` for per-CPU gauges, whose
/// per-CPU values are deltas that only their sum makes meaningful).
fn driver_metric(
    c: Counter,
) -> (
    &'static str,
    Option<(&'static str, &'static str)>,
    &'static str,
) {
    match c {
        Counter::ConnAccepted => (
            "wskecho_connections_accepted_total",
            None,
            "TCP connections accepted.",
        ),
        Counter::ConnRefused => (
            "wskecho_connections_refused_total",
            None,
            "TCP connections refused (limit, allow-list or memory).",
        ),
        Counter::ConnActive => (
            "wskecho_connections_active",
            None,
            "TCP connections accepted and not yet closed.",
        ),
        Counter::BytesIn => ("wskecho_received_bytes_total", None, "Bytes received."),
        Counter::BytesOut => ("wskecho_sent_bytes_total", None, "Bytes sent."),
        Counter::DatagramsIn => (
            "wskecho_received_datagrams_total",
            None,
            "UDP datagrams received.",
        ),
        Counter::DatagramsOut => ("wskecho_sent_datagrams_total", None, "UDP datagrams sent."),
        Counter::DropNoSendContext => (
            "wskecho_dropped_datagrams_total",
            Some(("reason", "no_send_context")),
            "UDP datagrams dropped, by reason.",
        ),
        Counter::DropRateLimited => (
            "wskecho_dropped_datagrams_total",
            Some(("reason", "rate_limited")),
            "UDP datagrams dropped, by reason.",
        ),
        Counter::DropNotAllowed => (
            "wskecho_dropped_datagrams_total",
            Some(("reason", "not_allowed")),
            "UDP datagrams dropped, by reason.",
        ),
        Counter::DropMalformed => (
            "wskecho_dropped_datagrams_total",
            Some(("reason", "malformed")),
            "UDP datagrams dropped, by reason.",
        ),
        Counter::DropBroadcast => (
            "wskecho_dropped_datagrams_total",
            Some(("reason", "broadcast")),
            "UDP datagrams dropped, by reason.",
        ),
        Counter::DropPrivilegedPort => (
            "wskecho_dropped_datagrams_total",
            Some(("reason", "privileged_port")),
            "UDP datagrams dropped, by reason.",
        ),
        Counter::DropServicePort => (
            "wskecho_dropped_datagrams_total",
            Some(("reason", "service_port")),
            "UDP datagrams dropped, by reason.",
        ),
        Counter::DropSpecialSource => (
            "wskecho_dropped_datagrams_total",
            Some(("reason", "special_source")),
            "UDP datagrams dropped, by reason.",
        ),
        Counter::RetainedBytes => (
            "wskecho_retained_bytes",
            None,
            "Receive-indication bytes held for zero-copy sends.",
        ),
        Counter::SendErrors => ("wskecho_send_errors_total", None, "Sends that failed."),
        Counter::ZeroCopySends => (
            "wskecho_tcp_sends_total",
            Some(("path", "zero_copy")),
            "TCP sends, by path (zero-copy from retained buffers, or copy ring).",
        ),
        Counter::CopySends => (
            "wskecho_tcp_sends_total",
            Some(("path", "copy")),
            "TCP sends, by path (zero-copy from retained buffers, or copy ring).",
        ),
        Counter::Backpressure => (
            "wskecho_backpressure_events_total",
            None,
            "Times a connection refused data because its ring was full.",
        ),
        Counter::TcpIdleTimeouts => (
            "wskecho_tcp_deadlines_total",
            Some(("deadline", "idle")),
            "TCP deadlines applied: idle (closed), progress (aborted), retain (copy path).",
        ),
        Counter::TcpProgressTimeouts => (
            "wskecho_tcp_deadlines_total",
            Some(("deadline", "progress")),
            "TCP deadlines applied: idle (closed), progress (aborted), retain (copy path).",
        ),
        Counter::TcpRetainTimeouts => (
            "wskecho_tcp_deadlines_total",
            Some(("deadline", "retain")),
            "TCP deadlines applied: idle (closed), progress (aborted), retain (copy path).",
        ),
    }
}

/// Prefixed variant of a driver metric name (`wskecho_cpu_…`, `wskecho_service_…`).
fn scoped(name: &str, scope: &str) -> String {
    format!("wskecho_{scope}_{}", &name["wskecho_".len()..])
}

/// The driver's counters: global, per CPU (`cpu` label) and per service (`mode`, `proto`,
/// `port`, `address`). Scopes are separate families, so `sum()` over one never double-counts.
pub fn driver_exposition(s: &Snapshot) -> String {
    let mut e = Exposition::default();
    e.single(
        "wskecho_up",
        Kind::Gauge,
        "1 when the driver answered the stats query.",
        1.0,
    );
    let value = |c: &DriverCounters, k: Counter| {
        if k.is_gauge() {
            // Per-CPU gauge deltas wrap; their sum is exact (see control::stats).
            c.get(k) as i64 as f64
        } else {
            c.get(k) as f64
        }
    };
    for k in Counter::ALL {
        let (name, label, help) = driver_metric(k);
        let kind = if k.is_gauge() {
            Kind::Gauge
        } else {
            Kind::Counter
        };
        let fixed: Vec<(&str, &str)> = label.into_iter().collect();
        e.family(name, kind, help)
            .sample(name, &fixed, value(&s.global, k));
        if !s.cpus.is_empty() && !k.is_gauge() {
            let n = scoped(name, "cpu");
            e.family(&n, kind, &format!("{help} Per CPU."));
            for (i, c) in s.cpus.iter().enumerate() {
                let cpu = i.to_string();
                let mut l = vec![("cpu", cpu.as_str())];
                l.extend(fixed.iter().copied());
                e.sample(&n, &l, value(c, k));
            }
        }
        if !s.services.is_empty() {
            let n = scoped(name, "service");
            e.family(&n, kind, &format!("{help} Per service."));
            for (svc, c) in &s.services {
                let (port, addr) = (svc.port.to_string(), svc.bind.to_string());
                let mut l = vec![
                    ("mode", svc.mode.name()),
                    ("proto", svc.proto.name()),
                    ("port", port.as_str()),
                    ("address", addr.as_str()),
                ];
                l.extend(fixed.iter().copied());
                e.sample(&n, &l, value(c, k));
            }
        }
    }
    e.finish()
}

/// The exposition when the driver did not answer: `wskecho_up 0`.
pub fn driver_down() -> String {
    let mut e = Exposition::default();
    e.single(
        "wskecho_up",
        Kind::Gauge,
        "1 when the driver answered the stats query.",
        0.0,
    );
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::check::well_formed;
    use control::config::{Mode, Proto, Service};

    #[test]
    fn driver_exposition_has_global_cpu_and_service_families() {
        let mut g = DriverCounters::default();
        g.set(Counter::BytesIn, 1000);
        g.set(Counter::ConnActive, 2);
        g.set(Counter::DropMalformed, 4);
        let mut c0 = DriverCounters::default();
        c0.set(Counter::BytesIn, 600);
        c0.set(Counter::ConnActive, u64::MAX); // a -1 delta on this CPU
        let mut c1 = DriverCounters::default();
        c1.set(Counter::BytesIn, 400);
        let svc = Service::new(Proto::Tcp, 7007, Mode::Echo, "127.0.0.1".parse().unwrap());
        let s = Snapshot {
            time_us: 0,
            global: g,
            cpus: vec![c0, c1],
            services: vec![(svc, g)],
        };
        let t = driver_exposition(&s);
        well_formed(&t);
        for want in [
            "wskecho_up 1\n",
            "\nwskecho_received_bytes_total 1000\n",
            "\nwskecho_cpu_received_bytes_total{cpu=\"0\"} 600\n",
            "\nwskecho_cpu_received_bytes_total{cpu=\"1\"} 400\n",
            "\nwskecho_service_received_bytes_total{mode=\"echo\",proto=\"tcp\",port=\"7007\",address=\"127.0.0.1\"} 1000\n",
            "\nwskecho_connections_active 2\n",
            "\nwskecho_dropped_datagrams_total{reason=\"malformed\"} 4\n",
        ] {
            assert!(t.contains(want), "{want:?} missing in\n{t}");
        }
        assert!(
            !t.contains("wskecho_cpu_connections_active"),
            "per-CPU gauges are deltas"
        );
        well_formed(&driver_down());
    }
}
