//! Windows 10 1809 / Server 2019 (build 17763) and later: the driver looks ExAllocatePool2
//! (2004, build 19041) up at run time and falls back to ExAllocatePoolWithTag(NonPagedPoolNx)
//! plus zeroing where the kernel lacks it. Both paths serve TCP and UDP echo and unload clean,
//! for the built-in driver and for the shipped image (which wsk-sim refuses to load on 1809 if
//! it imports ExAllocatePool2 statically); the sim's pool tally shows which call made every
//! block, and that each carries one of the driver's tags.

mod common;

#[path = "../../wskecho-sim/src/image.rs"]
mod image;

use common::harness::{self, config_with};
use common::*;
use control::config::{Mode, Proto};
use wsk_sim::registry::{set_value, RegValue};

/// 1809 / Server 2019, and 2004 (the first build with ExAllocatePool2).
const BUILDS: [u32; 2] = [17763, 19041];

/// What the sim's tally says about the run so far (DriverEntry and the traffic): every pool
/// block's call, with a driver tag.
fn check_tally(build: u32, what: &str) {
    let tally = wsk_sim::pool::allocations();
    assert!(!tally.is_empty(), "{what}: no allocations seen");
    let want = if build < 19041 {
        "ExAllocatePoolWithTag(NonPagedPoolNx)"
    } else {
        "ExAllocatePool2(NON_PAGED)"
    };
    for (call, tag, n) in &tally {
        assert_eq!(call, want, "{what} on build {build}: {n} block(s) '{tag}'");
        assert!(tag.starts_with("WE"), "{what}: foreign tag '{tag}'");
    }
    let blocks: usize = tally.iter().map(|t| t.2).sum();
    println!("{what}, build {build}: {blocks} blocks through {want}, tags {tally:?}");
}

fn check_log(build: u32, what: &str) {
    let log = wsk_sim::dbg_output();
    let want = if build < 19041 {
        "pool: ExAllocatePoolWithTag"
    } else {
        "pool: ExAllocatePool2"
    };
    assert!(
        log.contains(want),
        "{what} on build {build}: no {want:?} in\n{log}"
    );
}

fn traffic(tcp: u16, udp: u16) {
    let mut s = connect(std::net::SocketAddr::new(V4, tcp));
    for i in 0..8u64 {
        let data = payload(i, 3000);
        assert_eq!(tcp_echo(&mut s, &data), data);
    }
    let u = udp_client(V4);
    let mut answered = 0;
    for i in 0..20u64 {
        let data = payload(100 + i, 512);
        if let Some(got) = udp_roundtrip(&u, std::net::SocketAddr::new(V4, udp), &data) {
            assert_eq!(got, data);
            answered += 1;
        }
    }
    assert!(answered >= 15, "UDP echo answered {answered} of 20");
}

#[test]
fn builtin_driver_serves_and_unloads_on_1809_and_2004() {
    for build in BUILDS {
        let (cfg, ports) = config_with(V4, &[(Proto::Tcp, Mode::Echo), (Proto::Udp, Mode::Echo)]);
        let sim = wsk_sim::Config {
            windows_build: build,
            ..wsk_sim::Config::default()
        };
        let drv = harness::load(sim, Some(cfg)).unwrap();
        assert!(drv.ready, "build {build}: services did not open");
        traffic(ports[0], ports[1]);
        // The control device's DACL is built from local SIDs on both kernels.
        let devs = wsk_sim::device::devices();
        let dev = devs
            .iter()
            .find(|d| d.name == "\\Device\\WskEcho")
            .expect("control device");
        let sids: Vec<&str> = dev
            .dacl
            .as_ref()
            .unwrap()
            .iter()
            .map(|a| a.sid.as_str())
            .collect();
        assert_eq!(sids, ["S-1-5-18", "S-1-5-32-544"]);
        check_log(build, "built-in");
        // Read while this test still holds the sim (the guard goes with the unload, and the
        // next test's init starts a new tally).
        check_tally(build, "built-in");
        let findings = drv.unload();
        assert_clean(&findings);
    }
}

#[test]
fn image_serves_and_unloads_on_1809_and_2004() {
    let Some(path) = image_path() else { return };
    for build in BUILDS {
        let (tcp, udp) = (harness::free_port(V4), harness::free_port(V4));
        let sim = wsk_sim::Config {
            windows_build: build,
            ..wsk_sim::Config::default()
        }
        .with_unkind(harness::SUITE_UNKIND)
        .unwrap();
        let params = format!("{}\\Parameters", image::REGISTRY_PATH);
        let run = image::load_with(&path, sim, || {
            set_value(
                &params,
                "Services",
                RegValue::MultiSz(vec![
                    format!("echo,tcp,{tcp},127.0.0.1"),
                    format!("echo,udp,{udp},127.0.0.1"),
                ]),
            );
        })
        .unwrap_or_else(|e| panic!("build {build}: {e}"));
        assert!(run.ready, "build {build}: services did not open");
        traffic(tcp, udp);
        check_log(build, "image");
        check_tally(build, "image");
        let findings = run.unload();
        assert_clean(&findings);
    }
}
