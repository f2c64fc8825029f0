//! Live counters for Prometheus: the text exposition format (version 0.0.4) on `/metrics`,
//! for `echoload serve --metrics`, `echoload run --metrics` and `echoload driver exporter`.
//!
//! Names follow Prometheus conventions: a `echoload_`/`wskecho_` prefix, base units (bytes,
//! seconds), `_total` on counters, gauges without it; every family has HELP and TYPE lines.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use control::stats::{Counter, Counters as DriverCounters};

use crate::client::LiveCounts;
use crate::driverctl::Snapshot;
use crate::server::Counters as ServerCounters;

/// The Content-Type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    /// Quantile samples (`quantile` label) plus `NAME_sum` and `NAME_count`.
    Summary,
}

/// Builds one exposition document. Samples are grouped under their family whatever order
/// they are added in (the format wants each family's lines together).
#[derive(Default, Debug)]
pub struct Exposition {
    /// (name, HELP+TYPE lines, sample lines), in declaration order.
    families: Vec<(String, String, String)>,
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

impl Exposition {
    /// Declares a family (HELP and TYPE), once.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Self {
        debug_assert!(
            (kind == Kind::Counter) == name.ends_with("_total"),
            "{name}: counters and only counters end in _total"
        );
        if !self.families.iter().any(|f| f.0 == name) {
            let head = format!(
                "# HELP {name} {}\n# TYPE {name} {}\n",
                escape_help(help),
                match kind {
                    Kind::Counter => "counter",
                    Kind::Gauge => "gauge",
                    Kind::Summary => "summary",
                }
            );
            self.families.push((name.to_string(), head, String::new()));
        }
        self
    }

    /// Adds a sample to a declared family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        // A summary's `_sum` and `_count` belong to its family.
        let family = |f: &(String, String, String)| {
            f.0 == name
                || (f.1.ends_with(" summary\n")
                    && (name == format!("{}_sum", f.0) || name == format!("{}_count", f.0)))
        };
        let Some(f) = self.families.iter_mut().find(|f| family(f)) else {
            panic!("{name} sampled before it was declared");
        };
        let out = &mut f.2;
        out.push_str(name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{k}=\"{}\"", escape_label(v));
            }
            out.push('}');
        }
        let _ = writeln!(out, " {value}");
        self
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) -> &mut Self {
        self.family(name, kind, help).sample(name, &[], value)
    }

    pub fn finish(self) -> String {
        self.families
            .into_iter()
            .map(|(_, head, samples)| head + &samples)
            .collect()
    }
}

/// One bound service's counters: (service, protocol, address, counters).
pub type ServiceCounters = (
    control::protocol::Mode,
    crate::server::Proto,
    SocketAddr,
    ServerCounters,
);

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
            let tcp = *proto == crate::server::Proto::Tcp;
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

/// What `echoload run --metrics` shows besides the live counts.
#[derive(Clone, Debug, Default)]
pub struct RunInfo {
    pub target: String,
    pub label: String,
    pub agent_index: u32,
    pub agent_count: u32,
}

/// `echoload run`'s live counters (measured window only: warm-up traffic is not counted), and
/// the run as of its last complete interval (`t`: none before the first).
pub fn client_exposition(
    l: &LiveCounts,
    elapsed: Duration,
    info: &RunInfo,
    t: Option<&crate::client::Totals>,
) -> String {
    use Kind::{Counter as C, Gauge as G};
    let mut e = Exposition::default();
    let (idx, cnt) = (info.agent_index.to_string(), info.agent_count.to_string());
    e.family(
        "echoload_run_info",
        G,
        "The running load test (value 1); its target, label and agent identity as labels.",
    )
    .sample(
        "echoload_run_info",
        &[
            ("target", &info.target),
            ("label", &info.label),
            ("agent_index", &idx),
            ("agent_count", &cnt),
        ],
        1.0,
    );
    e.single(
        "echoload_run_sent_bytes_total",
        C,
        "Bytes sent in the measured window.",
        l.sent_bytes as f64,
    );
    e.single(
        "echoload_run_received_bytes_total",
        C,
        "Bytes received in the measured window.",
        l.recv_bytes as f64,
    );
    e.single(
        "echoload_run_messages_total",
        C,
        "Messages received in the measured window (sent, for send-only modes).",
        l.msgs as f64,
    );
    e.single(
        "echoload_run_elapsed_seconds",
        G,
        "Seconds since the run's clock started (warm-up included).",
        elapsed.as_secs_f64(),
    );
    client_totals(&mut e, &t.cloned().unwrap_or_default());
    e.finish()
}

/// The families built from the complete intervals: messages each way, loss, errors by kind,
/// the latency summary and (UDP) the jitter.
fn client_totals(e: &mut Exposition, t: &crate::client::Totals) {
    use Kind::{Counter as C, Gauge as G};
    const AS_OF: &str = " Up to the last complete interval (-i, 1 s by default).";
    e.single(
        "echoload_run_sent_messages_total",
        C,
        &format!("Messages sent in the measured window.{AS_OF}"),
        t.sent_msgs as f64,
    );
    e.single(
        "echoload_run_received_messages_total",
        C,
        &format!("Replies (or source messages) received in the measured window.{AS_OF}"),
        t.recv_msgs as f64,
    );
    e.single(
        "echoload_run_lost_messages_total",
        C,
        &format!("Replies that never came (UDP: counted when a later reply shows the gap).{AS_OF}"),
        t.errors.lost as f64,
    );
    let expected = t.recv_msgs + t.errors.lost;
    e.single(
        "echoload_run_loss_ratio",
        G,
        &format!("Lost / (received + lost), 0 to 1.{AS_OF}"),
        if expected > 0 {
            t.errors.lost as f64 / expected as f64
        } else {
            0.0
        },
    );
    let name = "echoload_run_errors_total";
    e.family(
        name,
        C,
        &format!(
            "Integrity and connection errors, by kind (lost replies are counted apart).{AS_OF}"
        ),
    );
    let er = &t.errors;
    for (kind, v) in [
        ("corrupted", er.corrupted),
        ("duplicated", er.duplicated),
        ("reordered", er.reordered),
        ("connect", er.connect),
        ("io", er.io),
    ] {
        e.sample(name, &[("kind", kind)], v as f64);
    }
    let name = "echoload_run_latency_seconds";
    e.family(
        name,
        Kind::Summary,
        &format!("Round-trip latency (from the intended send time in rate mode).{AS_OF}"),
    );
    let h = &t.latency;
    for (q, label) in [(0.5, "0.5"), (0.99, "0.99"), (0.999, "0.999")] {
        let v = if h.is_empty() {
            f64::NAN
        } else {
            h.value_at_quantile(q) as f64 / 1e9
        };
        e.sample(name, &[("quantile", label)], v);
    }
    let sum_s = if h.is_empty() {
        0.0
    } else {
        h.mean() * h.len() as f64 / 1e9
    };
    e.sample("echoload_run_latency_seconds_sum", &[], sum_s);
    e.sample("echoload_run_latency_seconds_count", &[], h.len() as f64);
    if let Some(j) = t.jitter_ns {
        e.single(
            "echoload_run_jitter_seconds",
            G,
            &format!("UDP: RFC 3550 interarrival jitter, mean over the flows.{AS_OF}"),
            j / 1e9,
        );
    }
}

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

/// `echoload serve --metrics ADDR`: the server's counters on ADDR until the handle is dropped.
pub fn serve_server_counters(addr: &str, h: &crate::server::ServerHandle) -> Result<MetricsServer> {
    let read = h.counter_reader();
    let by_service = h.service_reader();
    let started = Instant::now();
    let server = MetricsServer::start(addr, move || {
        server_exposition(&read(), &by_service(), started)
    })?;
    println!("metrics  http http://{}/metrics", server.addr());
    Ok(server)
}

/// What the run's endpoint renders: the live counts, the time, the run as of its last
/// complete interval.
type LiveState = (LiveCounts, Duration, Option<crate::client::Totals>);

/// `echoload run --metrics ADDR`: the run, with its live counters on ADDR while it goes on.
pub fn run_with_endpoint(
    cfg: &crate::client::RunConfig,
    addr: &str,
    on_interval: Option<&mut dyn FnMut(&crate::client::Interval)>,
) -> Result<crate::report::RunReport> {
    let info = RunInfo {
        target: cfg.target.to_string(),
        label: cfg.label.clone(),
        agent_index: cfg.agent.index,
        agent_count: cfg.agent.count,
    };
    let state: Arc<std::sync::Mutex<LiveState>> = Arc::new(std::sync::Mutex::new((
        LiveCounts::default(),
        Duration::ZERO,
        None,
    )));
    let shared = state.clone();
    let server = MetricsServer::start(addr, move || {
        let s = shared
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        client_exposition(&s.0, s.1, &info, s.2.as_ref())
    })?;
    eprintln!("metrics on http://{}/metrics", server.addr());
    let lock = || {
        state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let mut observe = |l: LiveCounts, t: Duration| {
        let mut s = lock();
        (s.0, s.1) = (l, t);
    };
    let mut totals = |t: &crate::client::Totals| lock().2 = Some(t.clone());
    Ok(crate::runner::run_watched(
        cfg,
        on_interval,
        Some(&mut observe),
        Some(&mut totals),
    ))
}

/// An HTTP endpoint serving `/metrics` from a background thread; stops when dropped.
pub struct MetricsServer {
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
    addr: SocketAddr,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn bind(addr: &str) -> Result<(tiny_http::Server, SocketAddr)> {
    let server = tiny_http::Server::http(addr)
        .map_err(|e| anyhow!("metrics endpoint: cannot listen on {addr}: {e}"))?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| anyhow!("metrics endpoint {addr}: not an IP socket"))?;
    Ok((server, bound))
}

fn answer(req: tiny_http::Request, render: &mut dyn FnMut() -> String) {
    let path = req.url().split('?').next().unwrap_or("");
    let resp = match path {
        "/metrics" => {
            let ct = tiny_http::Header::from_bytes(&b"Content-Type"[..], CONTENT_TYPE.as_bytes())
                .expect("static header is valid");
            tiny_http::Response::from_string(render()).with_header(ct)
        }
        "/" => tiny_http::Response::from_string("echoload: metrics at /metrics\n"),
        _ => tiny_http::Response::from_string("not found: try /metrics\n").with_status_code(404),
    };
    // A scraper that hung up early is its own problem.
    let _ = req.respond(resp);
}

impl MetricsServer {
    /// Listens on `addr` (HOST:PORT; port 0 picks one) and answers with `render()`.
    pub fn start(addr: &str, render: impl Fn() -> String + Send + Sync + 'static) -> Result<Self> {
        let (server, bound) = bind(addr)?;
        let server = Arc::new(server);
        let s = server.clone();
        let thread = std::thread::Builder::new()
            .name("echoload-metrics".into())
            .spawn(move || {
                let mut r = || render();
                for req in s.incoming_requests() {
                    answer(req, &mut r);
                }
            })?;
        Ok(MetricsServer {
            server,
            thread: Some(thread),
            addr: bound,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves on the calling thread (for renderers that are not `Send`, like a driver channel)
/// until `deadline` passes, if any; checks the deadline at least every 200 ms.
pub fn serve_here(
    addr: &str,
    deadline: Option<Instant>,
    on_bound: impl FnOnce(SocketAddr),
    render: &mut dyn FnMut() -> String,
) -> Result<()> {
    let (server, bound) = bind(addr)?;
    on_bound(bound);
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(());
        }
        if let Some(req) = server.recv_timeout(Duration::from_millis(200))? {
            answer(req, render);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::config::{Mode, Proto, Service};
    use std::io::{Read, Write};

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// Every sample line names a declared family; HELP precedes TYPE precedes samples.
    fn well_formed(text: &str) {
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                declared.push(rest.split(' ').next().unwrap().to_string());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split(' ');
                assert_eq!(Some(declared.last().unwrap().as_str()), it.next(), "{line}");
                assert!(
                    matches!(it.next(), Some("counter" | "gauge" | "summary")),
                    "{line}"
                );
            } else {
                let name = line.split(['{', ' ']).next().unwrap();
                let fam = declared.last().map(String::as_str).unwrap();
                let sub = name
                    .strip_suffix("_sum")
                    .or_else(|| name.strip_suffix("_count"));
                assert!(
                    name == fam
                        || (sub == Some(fam) && text.contains(&format!("# TYPE {fam} summary"))),
                    "{line}"
                );
                let v: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
                // A quantile of an empty summary is NaN (the format's word for "none yet").
                assert!(
                    v.is_finite() || (v.is_nan() && line.contains("quantile=")),
                    "{line}"
                );
            }
        }
        for d in &declared {
            assert_eq!(
                d.ends_with("_total"),
                text.contains(&format!("# TYPE {d} counter")),
                "{d}"
            );
        }
    }

    #[test]
    fn labels_and_help_are_escaped() {
        let mut e = Exposition::default();
        e.family("x_total", Kind::Counter, "a\\b\nc").sample(
            "x_total",
            &[("l", "q\"u\\o\nte")],
            3.0,
        );
        assert_eq!(
            e.finish(),
            "# HELP x_total a\\\\b\\nc\n# TYPE x_total counter\nx_total{l=\"q\\\"u\\\\o\\nte\"} 3\n"
        );
    }

    #[test]
    fn server_and_client_expositions_are_well_formed_and_carry_the_values() {
        let c = ServerCounters {
            rx_bytes: 12345,
            tcp_open: 3,
            ..ServerCounters::default()
        };
        let t = server_exposition(&c, &[], Instant::now());
        well_formed(&t);
        assert!(t.contains("\nechoload_server_received_bytes_total 12345\n"));
        assert!(t.contains("\nechoload_server_tcp_connections_open 3\n"));
        let l = LiveCounts {
            sent_bytes: 7,
            recv_bytes: 8,
            msgs: 9,
        };
        let info = RunInfo {
            target: "198.18.0.1:7007".into(),
            label: "a\"b".into(),
            agent_index: 1,
            agent_count: 3,
        };
        let t = client_exposition(&l, Duration::from_secs(2), &info, None);
        well_formed(&t);
        // The run so far: messages each way, loss, errors by kind, latency in seconds.
        let mut tot = crate::client::Totals {
            sent_msgs: 1000,
            recv_msgs: 990,
            jitter_ns: Some(2_500.0),
            ..Default::default()
        };
        tot.errors.lost = 10;
        tot.errors.corrupted = 2;
        for us in 1..=1000u64 {
            tot.latency.record(us * 1000).unwrap();
        }
        let t = client_exposition(&l, Duration::from_secs(2), &info, Some(&tot));
        well_formed(&t);
        for want in [
            "\nechoload_run_sent_messages_total 1000\n",
            "\nechoload_run_received_messages_total 990\n",
            "\nechoload_run_lost_messages_total 10\n",
            "\nechoload_run_loss_ratio 0.01\n",
            "\nechoload_run_errors_total{kind=\"corrupted\"} 2\n",
            "# TYPE echoload_run_latency_seconds summary\n",
            "\nechoload_run_latency_seconds{quantile=\"0.5\"} 0.0005",
            "\nechoload_run_latency_seconds{quantile=\"0.999\"} 0.000999",
            "\nechoload_run_latency_seconds_count 1000\n",
            "\nechoload_run_jitter_seconds 0.0000025\n",
        ] {
            assert!(t.contains(want), "{want:?} missing in\n{t}");
        }
        assert!(t.contains("echoload_run_info{target=\"198.18.0.1:7007\",label=\"a\\\"b\",agent_index=\"1\",agent_count=\"3\"} 1\n"));
        assert!(t.contains("\nechoload_run_messages_total 9\n"));
    }

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

    #[test]
    fn the_endpoint_serves_metrics_and_stops_when_dropped() {
        let n = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let n2 = n.clone();
        let srv = MetricsServer::start("127.0.0.1:0", move || {
            let v = n2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut e = Exposition::default();
            e.single("t_total", Kind::Counter, "scrapes", v as f64);
            e.finish()
        })
        .unwrap();
        let addr = srv.addr();
        let a = get(addr, "/metrics");
        assert!(a.starts_with("HTTP/1.") && a.contains(" 200 "), "{a}");
        assert!(
            a.contains("text/plain; version=0.0.4") && a.ends_with("t_total 0\n"),
            "{a}"
        );
        assert!(get(addr, "/metrics").ends_with("t_total 1\n"));
        assert!(get(addr, "/nope").contains(" 404 "));
        drop(srv); // returns once the serving thread has ended
        let late = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500));
        if let Ok(mut s) = late {
            // the listener may linger until its accept returns, but nobody answers any more
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let _ = write!(s, "GET /metrics HTTP/1.0\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            assert!(!out.contains("t_total"), "{out}");
        }
        assert!(MetricsServer::start("not an address", String::new).is_err());
    }
}
