//! `echoload driver selftest` against a fake driver: control's MockDriver behind an
//! in-process control socket (as wskecho-sim serves it), whose configuration points at an
//! in-process `echoload serve` (or at closed ports). The real driver runs it in scripts/e2e.sh
//! (wskecho-sim, built-in and image) and under Wine's kernel (scripts/wine-kernel-test.sh).
#![allow(clippy::many_single_char_names)]
mod common;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use clap::Parser;
use control::config::{Proto as CProto, Service, Services};
use control::ioctl::{dispatch, IOCTL_WSKECHO_QUERY_STATS};
use control::mock::MockDriver;
use control::protocol::Mode as SMode;
use control::stats::{Counter, Counters};
use echoload::cli::DriverArgs;
use echoload::client::Proto;
use echoload::driverctl::run_to;
use echoload::driverctl::selftest::{EXIT_INCOMPLETE, STEPS};
use serde_json::Value;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: DriverArgs,
}

/// The fake driver. With `counts`, every stats query adds one connection, byte and datagram
/// to each service (a driver that counts what it serves); without, only its clock moves.
struct Fake {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Fake {
    fn start(services: &[Service], counts: bool) -> Fake {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mut m = MockDriver::new(2);
        let mut list = Services::empty();
        for s in services {
            list.add(*s).unwrap();
        }
        m.config.services = list;
        m.per_service = vec![Counters::default(); services.len()];
        let mock = Arc::new(Mutex::new(m));
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || {
            control::transport::serve_until(&l, &s2, |code, i, o| {
                let mut m = mock.lock().unwrap();
                if code == IOCTL_WSKECHO_QUERY_STATS {
                    let n = u64::from(counts);
                    for c in [
                        Counter::ConnAccepted,
                        Counter::BytesIn,
                        Counter::BytesOut,
                        Counter::DatagramsIn,
                        Counter::DatagramsOut,
                    ] {
                        m.tick(c, n);
                    }
                }
                dispatch(&mut *m, code, i, o)
            })
            .unwrap();
        });
        Fake {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// `driver selftest --json`: (exit code, the verdict).
    fn selftest(&self) -> (i32, Value) {
        let argv = [
            "driver",
            "--control",
            &self.addr.to_string(),
            "--json",
            "selftest",
            "--duration",
            "300ms",
        ];
        let cli = Cli::try_parse_from(argv).unwrap();
        let mut out = Vec::new();
        let code = run_to(&cli.args, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let v = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
        (code, v)
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn results(v: &Value) -> Vec<(String, String)> {
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["result"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn result_of(v: &Value, name: &str) -> String {
    results(v)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no step {name} in {v}"))
        .1
}

fn service(mode: SMode, proto: CProto, a: SocketAddr) -> Service {
    Service::new(proto, a.port(), mode, a.ip())
}

/// The four services the traffic steps need, served by echoload serve.
fn served(h: &echoload::server::ServerHandle) -> Vec<Service> {
    vec![
        service(
            SMode::Echo,
            CProto::Tcp,
            common::addr(h, SMode::Echo, Proto::Tcp),
        ),
        service(
            SMode::Echo,
            CProto::Udp,
            common::addr(h, SMode::Echo, Proto::Udp),
        ),
        service(
            SMode::Discard,
            CProto::Tcp,
            common::addr(h, SMode::Discard, Proto::Tcp),
        ),
        service(
            SMode::Sockperf,
            CProto::Udp,
            common::addr(h, SMode::Sockperf, Proto::Udp),
        ),
    ]
}

/// A port on 127.0.0.1 nothing listens on (TCP and UDP alike, as far as a test can tell).
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn passes_against_a_driver_that_serves_and_counts() {
    let h = common::server_on("127.0.0.1");
    let f = Fake::start(&served(&h), true);
    let (code, v) = f.selftest();
    let names: Vec<String> = results(&v).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, STEPS, "{v}");
    for (n, r) in results(&v) {
        assert_eq!(r, "ok", "{n}: {v}");
    }
    assert_eq!((code, v["verdict"].as_str()), (0, Some("PASS")), "{v}");
    assert_eq!(v["driver"], "wskecho 0.1.0, control ABI 4..=4, 2 CPUs");
    assert!(
        v["target"].as_str().unwrap().starts_with("wskecho-sim"),
        "{v}"
    );
}

/// Traffic that another server answered on the driver's ports: the runs pass, the driver's
/// counters did not move, so the self-test fails.
#[test]
fn traffic_the_driver_did_not_count_fails() {
    let h = common::server_on("127.0.0.1");
    let f = Fake::start(&served(&h), false);
    let (code, v) = f.selftest();
    assert_eq!(result_of(&v, "tcp_echo"), "ok", "{v}");
    assert_eq!(result_of(&v, "driver_counted_traffic"), "FAILED", "{v}");
    assert_eq!((code, v["verdict"].as_str()), (1, Some("FAIL")), "{v}");
}

/// Services that did not open (as under Wine's netio): the control steps pass, every step
/// that needs a socket is unavailable, the verdict says INCOMPLETE (exit 3), not PASS.
#[test]
fn closed_services_are_unavailable_not_passed() {
    let lo = "127.0.0.1".parse().unwrap();
    let (t, u, p) = (closed_port(), closed_port(), closed_port());
    let f = Fake::start(
        &[
            Service::new(CProto::Tcp, t, SMode::Echo, lo),
            Service::new(CProto::Udp, u, SMode::Echo, lo),
            Service::new(CProto::Udp, p, SMode::Sockperf, lo),
        ],
        true,
    );
    let (code, v) = f.selftest();
    for (n, r) in results(&v) {
        let want = if n.starts_with("control_") {
            "ok"
        } else {
            "unavailable"
        };
        assert_eq!(r, want, "{n}: {v}");
    }
    assert_eq!(code, EXIT_INCOMPLETE, "{v}");
    assert_eq!(v["verdict"], "INCOMPLETE");
    assert_eq!(v["unavailable"], 7, "{v}");
}

/// An "echo" service that keeps what it reads until the client's half-close and then closes
/// without echoing: TCP echo by ping-pong cannot pass against it, and the half-close step
/// must fail rather than hang (it is bounded).
#[test]
fn half_close_needs_the_echo_before_end_of_file() {
    use std::io::Read;
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    l.set_nonblocking(true).unwrap();
    let t = std::thread::spawn(move || {
        for _ in 0..2000 {
            if s2.load(Ordering::Relaxed) {
                break;
            }
            if let Ok((mut c, _)) = l.accept() {
                c.set_nonblocking(false).unwrap();
                c.set_read_timeout(Some(std::time::Duration::from_secs(15)))
                    .unwrap();
                let mut sink = Vec::new();
                let _ = c.read_to_end(&mut sink);
            } else {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    });
    let f = Fake::start(&[service(SMode::Echo, CProto::Tcp, a)], true);
    let (code, v) = f.selftest();
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    assert_eq!(result_of(&v, "tcp_half_close"), "FAILED", "{v}");
    let detail = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "tcp_half_close")
        .unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(detail.contains("end-of-file after 0 of 65536"), "{detail}");
    assert_eq!(code, 1);
}

/// The text form: the header names the target, each step is one greppable line, the verdict
/// closes it; nothing answering is exit 2 with no verdict.
#[test]
fn text_verdict_and_unreachable() {
    let h = common::server_on("127.0.0.1");
    let f = Fake::start(&served(&h), true);
    let cli = Cli::try_parse_from([
        "driver",
        "--control",
        &f.addr.to_string(),
        "selftest",
        "--duration",
        "200ms",
    ])
    .unwrap();
    let mut out = Vec::new();
    assert_eq!(run_to(&cli.args, &mut out).unwrap(), 0);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("selftest "))
        .collect();
    let want: Vec<String> = STEPS
        .iter()
        .map(|s| format!("selftest {s} ... ok"))
        .collect();
    assert_eq!(lines, want, "{text}");
    assert!(
        text.contains("target:   wskecho-sim (control socket"),
        "{text}"
    );
    assert!(
        text.ends_with("verdict: PASS: 11 passed, 0 failed, 0 unavailable\n"),
        "{text}"
    );

    let port = closed_port();
    let cli = Cli::try_parse_from([
        "driver",
        "--control",
        &format!("127.0.0.1:{port}"),
        "selftest",
    ])
    .unwrap();
    let mut out = Vec::new();
    assert_eq!(
        run_to(&cli.args, &mut out).unwrap(),
        echoload::driverctl::EXIT_UNREACHABLE
    );
}
