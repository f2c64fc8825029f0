//! The control device as the I/O manager meets it (IRPs through wsk-sim's call_dispatch) and
//! configuration from the registry Parameters key.

mod common;

use common::harness::{load_with, REGISTRY_PATH};
use common::*;
use control::ioctl::{VersionInfo, IOCTL_WSKECHO_QUERY_VERSION, VERSION_INFO_LEN};
use wsk_sim::registry::{set_value, RegValue};
use wsk_sys::*;

fn params() -> String {
    format!("{REGISTRY_PATH}\\Parameters")
}

#[test]
fn device_is_admin_only_and_answers_irps() {
    let port = common::harness::free_port(V4);
    let drv = load_with(wsk_sim::Config::default(), None, || {
        set_value(
            &params(),
            "Services",
            RegValue::MultiSz(vec![format!("echo,tcp,{port},127.0.0.1")]),
        );
    })
    .unwrap();
    assert!(drv.ready);
    let devs = wsk_sim::device::devices();
    let dev = devs
        .iter()
        .find(|d| d.name == "\\Device\\WskEcho")
        .expect("control device created");
    assert_ne!(
        dev.characteristics & FILE_DEVICE_SECURE_OPEN,
        0,
        "FILE_DEVICE_SECURE_OPEN"
    );
    let dacl = dev
        .dacl
        .as_ref()
        .expect("DACL applied with ZwSetSecurityObject");
    let sids: Vec<&str> = dacl.iter().map(|a| a.sid.as_str()).collect();
    assert_eq!(
        sids,
        ["S-1-5-18", "S-1-5-32-544"],
        "SYSTEM and Administrators only"
    );
    assert!(dacl.iter().all(|a| a.mask == GENERIC_ALL));
    let links = wsk_sim::device::symlinks();
    assert!(
        links
            .iter()
            .any(|(l, d)| l.eq_ignore_ascii_case("\\DosDevices\\WskEcho")
                && d.eq_ignore_ascii_case("\\Device\\WskEcho")),
        "{links:?}"
    );
    let pdev = dev.address as PDEVICE_OBJECT;
    // SAFETY: the live control device.
    unsafe {
        let r = wsk_sim::device::call_dispatch(pdev, IRP_MJ_CREATE, 0, &[], 0);
        assert_eq!(r.status, STATUS_SUCCESS);
        let r = wsk_sim::device::call_dispatch(
            pdev,
            IRP_MJ_DEVICE_CONTROL,
            IOCTL_WSKECHO_QUERY_VERSION,
            &[],
            VERSION_INFO_LEN,
        );
        assert_eq!(r.status, STATUS_SUCCESS);
        assert_eq!(r.information, VERSION_INFO_LEN);
        let v = VersionInfo::decode(&r.output).unwrap();
        assert_eq!(v.service_count, 1, "the registry's one service");
        let r = wsk_sim::device::call_dispatch(pdev, IRP_MJ_READ, 0, &[], 16);
        assert_eq!(r.status, STATUS_INVALID_DEVICE_REQUEST);
        let r = wsk_sim::device::call_dispatch(
            pdev,
            IRP_MJ_DEVICE_CONTROL,
            0x0022_0000,
            &[1, 2, 3],
            16,
        );
        assert_ne!(r.status, STATUS_SUCCESS, "unknown IOCTL refused");
        assert_eq!(r.information, 0);
        let r = wsk_sim::device::call_dispatch(pdev, IRP_MJ_CLOSE, 0, &[], 0);
        assert_eq!(r.status, STATUS_SUCCESS);
    }
    // The service from the registry really runs.
    let mut s = connect(std::net::SocketAddr::new(V4, port));
    assert_eq!(tcp_echo(&mut s, b"registry"), b"registry");
    drop(s);
    // (A leftover device or link would be in the sim's unload findings.)
    assert_clean(&drv.unload());
}

#[test]
fn invalid_registry_values_fall_back_to_defaults_with_a_log_line() {
    let drv = load_with(wsk_sim::Config::default(), None, || {
        set_value(&params(), "MaxConnections", RegValue::Sz("lots".into()));
        set_value(
            &params(),
            "Services",
            RegValue::MultiSz(vec!["echo,tcp,0,127.0.0.1".into()]),
        );
    })
    .unwrap();
    let log = wsk_sim::dbg_output();
    assert!(
        log.contains("MaxConnections"),
        "log names the bad value: {log}"
    );
    assert!(log.contains("Services"), "log names the bad value: {log}");
    let (st, out) = drv.control(IOCTL_WSKECHO_QUERY_VERSION, &[], VERSION_INFO_LEN);
    assert_eq!(st, 0);
    assert_eq!(
        VersionInfo::decode(&out).unwrap().service_count,
        7,
        "default services"
    );
    assert_clean(&drv.unload());
}

/// Adding and removing services at run time opens/closes only their sockets; a port already in
/// use gives a clear status and changes nothing.
#[test]
fn reconfiguration_under_traffic() {
    use control::config::{Mode, Proto, Service};
    use control::ioctl::SetConfig;
    use std::net::SocketAddr;
    let (cfg, ports) =
        common::harness::config_with(V4, &[(Proto::Tcp, Mode::Echo), (Proto::Udp, Mode::Echo)]);
    let drv = common::harness::load(wsk_sim::Config::default(), Some(cfg)).unwrap();
    assert!(drv.ready);
    let echo = SocketAddr::new(V4, ports[0]);
    let mut kept = connect(echo);
    assert_eq!(tcp_echo(&mut kept, b"before"), b"before");
    // Add a discard service.
    let p3 = common::harness::free_port(V4);
    assert_eq!(
        set_config(
            &drv,
            &SetConfig::AddService(Service::new(Proto::Tcp, p3, Mode::Discard, V4))
        ),
        0
    );
    let mut d = connect(SocketAddr::new(V4, p3));
    std::io::Write::write_all(&mut d, b"gone").unwrap();
    assert_eq!(get_config(&drv).services.len(), 3);
    // Remove the TCP echo listener: new connections are refused, the existing one still echoes.
    assert_eq!(
        set_config(
            &drv,
            &SetConfig::RemoveService(Service::new(Proto::Tcp, ports[0], Mode::Echo, V4))
        ),
        0
    );
    // (The sim may drop the host socket a moment after the close IRP completed.)
    eventually("listener closed", || {
        std::net::TcpStream::connect_timeout(&echo, std::time::Duration::from_millis(200)).is_err()
    });
    assert_eq!(
        tcp_echo(&mut kept, b"after"),
        b"after",
        "accepted connection undisturbed"
    );
    // UDP echo untouched.
    let u = udp_client(V4);
    assert_eq!(
        udp_roundtrip(&u, SocketAddr::new(V4, ports[1]), b"udp").as_deref(),
        Some(&b"udp"[..])
    );
    // A port in use: refused with a status, configuration unchanged.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p4 = taken.local_addr().unwrap().port();
    let before = get_config(&drv);
    let st = set_config(
        &drv,
        &SetConfig::AddService(Service::new(Proto::Tcp, p4, Mode::Echo, V4)),
    );
    assert_ne!(st, 0, "port in use refused");
    assert_eq!(get_config(&drv), before, "nothing half-applied");
    // A limits change is refused (pools are sized at load).
    let mut l = before.limits;
    l.max_connections += 1;
    assert_ne!(set_config(&drv, &SetConfig::SetLimits(l)), 0);
    drop((kept, d));
    assert_clean(&drv.unload());
}
