//! Issue 18: a configured service whose socket cannot open (its port held by another socket,
//! its address not on this machine) is reported as such by `echoload driver status`, through
//! the control ABI's service state (IOCTL_WSKECHO_QUERY_SERVICES), with its NTSTATUS in words,
//! and the driver keeps trying: once the port is free the service opens and serves, and the
//! status says so. End to end: the driver in wsk-sim, its control ABI served over a socket as
//! wskecho-sim serves it, and echoload's own `driver status` code printing it.

mod common;

use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::harness::{config_with, load, Loaded};
use common::*;
use control::config::{Mode, Proto, Service, Services};
use control::ioctl::status::{STATUS_ADDRESS_ALREADY_EXISTS, STATUS_SUCCESS};
use control::ioctl::*;
use echoload::cli::driver::{DriverArgs, DriverCmd};

fn states(drv: &Loaded) -> ServiceStates {
    let mut req = [0u8; 16];
    let n = encode_empty_request(Kind::ServicesRequest, &mut req).unwrap();
    let (st, out) = drv.control(
        IOCTL_WSKECHO_QUERY_SERVICES,
        &req[..n],
        service_states_len(control::config::MAX_SERVICES),
    );
    assert_eq!(st, STATUS_SUCCESS);
    decode_service_states(&out).unwrap()
}

/// The driver's control ABI on a loopback socket, as wskecho-sim serves it.
struct ControlServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ControlServer {
    fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let _ = control::transport::serve_until(&l, &s2, |code, inp, out| {
                wskecho::control(code, inp, out).unwrap_or((wsk_sys::STATUS_DEVICE_NOT_READY, 0))
            });
        });
        ControlServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// `echoload driver --control ADDR status`, its text.
    fn status_text(&self) -> String {
        let args = DriverArgs {
            control: Some(self.addr.to_string()),
            json: false,
            cmd: DriverCmd::Status,
        };
        let mut out = Vec::new();
        let code = echoload::driverctl::run_to(&args, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(code, 0, "{text}");
        text
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn open_failures_are_reported_and_retried() {
    let (mut cfg, ports) = config_with(
        V4,
        &[
            (Proto::Tcp, Mode::Echo),
            (Proto::Udp, Mode::Echo),
            (Proto::Tcp, Mode::Discard),
        ],
    );
    // A fourth service on an address this machine does not have (TEST-NET-1, RFC 5737).
    let absent: IpAddr = "192.0.2.1".parse().unwrap();
    let mut list: Vec<Service> = cfg.services.as_slice().to_vec();
    list.push(Service::new(Proto::Udp, ports[2], Mode::Echo, absent));
    cfg.services = Services::from_slice(&list).unwrap();
    // Other sockets hold the first two services' ports.
    let tcp_holder = TcpListener::bind(SocketAddr::new(V4, ports[0])).unwrap();
    let udp_holder = UdpSocket::bind(SocketAddr::new(V4, ports[1])).unwrap();
    let drv = load(wsk_sim::Config::default(), Some(cfg)).unwrap();
    assert!(
        drv.ready,
        "the driver runs with the services that could open"
    );
    let server = ControlServer::start();

    let s = states(&drv);
    let got: Vec<(u16, i32, bool)> = s
        .iter()
        .map(|x| (x.service.port, x.status, x.retrying))
        .collect();
    eprintln!("held: {got:x?}");
    assert_eq!(s.len(), 4);
    let v: Vec<&ServiceState> = s.iter().collect();
    assert_eq!(v[0].status, STATUS_ADDRESS_ALREADY_EXISTS, "{got:x?}");
    assert_eq!(v[1].status, STATUS_ADDRESS_ALREADY_EXISTS, "{got:x?}");
    assert!(v[0].retrying && v[1].retrying, "{got:x?}");
    assert!(v[2].is_open(), "{got:x?}");
    assert!(!v[3].is_open() && v[3].retrying, "{got:x?}");
    let text = server.status_text();
    eprintln!("{text}");
    assert!(text.contains("service state (1 of 4 open):"), "{text}");
    for (proto, port) in [("tcp", ports[0]), ("udp", ports[1])] {
        let line = format!(
            "echo      {proto} 127.0.0.1:{port}  NOT OPEN: STATUS_ADDRESS_ALREADY_EXISTS (0xC000020A), retrying"
        );
        assert!(text.contains(&line), "missing {line:?} in\n{text}");
    }
    assert!(
        text.contains(&format!("discard   tcp 127.0.0.1:{}  open", ports[2])),
        "{text}"
    );
    assert!(
        text.contains(&format!("echo      udp 192.0.2.1:{}  NOT OPEN: ", ports[2])),
        "{text}"
    );
    // Retried quietly: after at least two retries (16 housekeeping ticks apart) each held
    // service has logged its failure once, at start-up, not once per retry.
    let ticks = || wskecho::housekeeping_counts().unwrap().0;
    let t0 = ticks();
    eventually("two retries", || ticks() >= t0 + 33);
    let log = wsk_sim::dbg_output();
    for port in [ports[0], ports[1]] {
        let said = log
            .lines()
            .filter(|l| l.contains(&format!("on 127.0.0.1:{port}: socket failed")))
            .count();
        assert_eq!(said, 1, "port {port} failure lines:\n{log}");
    }

    // The ports come free: the driver's retry opens both services, which then serve.
    drop(tcp_holder);
    drop(udp_holder);
    eventually("the held services open", || {
        let s = states(&drv);
        let v: Vec<&ServiceState> = s.iter().collect();
        v[0].is_open() && v[1].is_open()
    });
    let mut conn = connect(SocketAddr::new(V4, ports[0]));
    let data = payload(1, 5000);
    assert_eq!(tcp_echo(&mut conn, &data), data);
    let u = udp_client(V4);
    let d = payload(2, 300);
    assert_eq!(
        udp_roundtrip(&u, SocketAddr::new(V4, ports[1]), &d),
        Some(d)
    );
    let text = server.status_text();
    eprintln!("{text}");
    assert!(text.contains("service state (3 of 4 open):"), "{text}");
    assert!(
        text.contains(&format!("echo      tcp 127.0.0.1:{}  open", ports[0]))
            && text.contains(&format!("echo      udp 127.0.0.1:{}  open", ports[1])),
        "{text}"
    );
    drop(server);
    assert_clean(&drv.unload());
}
