//! Live counters for Prometheus: the text exposition format (version 0.0.4) and the HTTP
//! endpoint that serves it on `/metrics`. What each command exposes lives with the command:
//! `echoload serve --metrics` in `server/metrics.rs`, `echoload run --metrics` in
//! `session/metrics.rs`, `echoload driver exporter` in `driverctl/metrics.rs`; this module
//! knows none of them, so each can import it without an import circle.
//!
//! Names follow Prometheus conventions: a `echoload_`/`wskecho_` prefix, base units (bytes,
//! seconds), `_total` on counters, gauges without it; every family has HELP and TYPE lines.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

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

/// Checks shared by every module's exposition tests.
#[cfg(test)]
pub(crate) mod check {
    /// Every sample line names a declared family; HELP precedes TYPE precedes samples.
    pub fn well_formed(text: &str) {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
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
