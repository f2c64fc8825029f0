//! A provider that returns a final status without completing the IRP (issue 17 item 12): W11
//! says any non-pending return means the IRP has completed, but Wine's netio.sys returns
//! STATUS_NOT_IMPLEMENTED for the functions it lacks and leaves the IRP alone. wsk-sim does the
//! same for every WskControlSocket with an IRP (`Config::unfinished_calls`): the listener's
//! TCP_NODELAY (synchronous, `call_sync`) and each accepted connection's
//! SIO_WSK_QUERY_IDEAL_SEND_BACKLOG (asynchronous, its own IRP). The driver must take the
//! returned status, keep its routine counts right, say what the provider did, and still serve
//! and unload cleanly and in bounded time.
//!
//! One test in this binary: an unload that never returns is caught by a watchdog that ends the
//! process (nothing else can stop a thread blocked in the driver's unload).

mod common;

#[allow(clippy::large_types_passed_by_value)]
#[path = "../../wskecho-sim/src/image.rs"]
mod image;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::harness::{config_with, load};
use common::*;
use control::config::{Mode, Proto};

/// Unload's bound here: DisconnectTimeoutMs (200) plus the sim's own teardown, with a wide
/// margin for a loaded 2-core machine. Before the fix unload never returned (the connections
/// whose query never completed held the rundown).
const UNLOAD_WATCHDOG: Duration = Duration::from_secs(20);

#[test]
fn control_socket_that_never_completes_its_irp() {
    let (mut cfg, ports) = config_with(V4, &[(Proto::Tcp, Mode::Echo), (Proto::Udp, Mode::Echo)]);
    cfg.limits.disconnect_timeout_ms = 200;
    let sim = wsk_sim::Config {
        unfinished_calls: vec![wsk_sim::config::Call::WskControlSocket],
        ..wsk_sim::Config::default()
    };
    let drv = load(sim, Some(cfg)).unwrap();
    assert!(
        drv.ready,
        "the services open although TCP_NODELAY was never completed"
    );
    // Echo works, byte for byte, on connections whose backlog query was never completed.
    let addr = std::net::SocketAddr::new(V4, ports[0]);
    for i in 0..4u64 {
        let mut s = connect(addr);
        let data = payload(i, 20_000);
        assert_eq!(tcp_echo(&mut s, &data), data, "connection {i}");
    }
    let u = udp_client(V4);
    let d = payload(9, 300);
    assert_eq!(
        udp_roundtrip(&u, std::net::SocketAddr::new(V4, ports[1]), &d),
        Some(d)
    );
    assert_eq!(
        drv.counter(wskecho::stats::Counter::InternalErrors),
        0,
        "nothing counted as the driver's own error"
    );
    // Read before unload (the sim's teardown clears it).
    let log = wsk_sim::dbg_output();
    let said = log
        .lines()
        .filter(|l| l.contains("without completing the IRP"))
        .count();
    // Unload, watched.
    let done = Arc::new(AtomicBool::new(false));
    let watch = {
        let done = done.clone();
        std::thread::spawn(move || {
            let t0 = Instant::now();
            while !done.load(Ordering::SeqCst) {
                if t0.elapsed() > UNLOAD_WATCHDOG {
                    eprintln!(
                        "unload did not return within {UNLOAD_WATCHDOG:?} with a provider that \
                         leaves IRPs uncompleted"
                    );
                    std::process::exit(101);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let t0 = Instant::now();
    let findings = drv.unload();
    done.store(true, Ordering::SeqCst);
    watch.join().unwrap();
    let took = t0.elapsed();
    eprintln!("unload with uncompleted control IRPs took {took:?}");
    assert_clean(&findings);
    // The listener's TCP_NODELAY and the four connections' backlog queries.
    assert!(
        said >= 5,
        "the provider's violation is logged each time:\n{log}"
    );
}

/// The same provider under the shipped image: it serves, says what the provider did, and
/// unloads cleanly in bounded time.
#[test]
fn image_with_a_control_socket_that_never_completes_its_irp() {
    let Some(path) = image_path() else { return };
    let port = common::harness::free_port(V4);
    let sim = wsk_sim::Config {
        unfinished_calls: vec![wsk_sim::config::Call::WskControlSocket],
        ..wsk_sim::Config::default()
    };
    let params = format!("{}\\Parameters", image::REGISTRY_PATH);
    let run = image::load_with(&path, sim, || {
        use wsk_sim::registry::{set_value, RegValue};
        set_value(
            &params,
            "Services",
            RegValue::MultiSz(vec![format!("echo,tcp,{port},127.0.0.1")]),
        );
        set_value(&params, "DisconnectTimeoutMs", RegValue::Dword(200));
    })
    .unwrap_or_else(|e| panic!("image load: {e}"));
    assert!(run.ready);
    let addr = std::net::SocketAddr::new(V4, port);
    for i in 0..4u64 {
        let mut s = connect(addr);
        let data = payload(i, 20_000);
        assert_eq!(tcp_echo(&mut s, &data), data, "connection {i}");
    }
    let log = wsk_sim::dbg_output();
    let said = log
        .lines()
        .filter(|l| l.contains("without completing the IRP"))
        .count();
    let done = Arc::new(AtomicBool::new(false));
    let watch = {
        let done = done.clone();
        std::thread::spawn(move || {
            let t0 = Instant::now();
            while !done.load(Ordering::SeqCst) {
                if t0.elapsed() > UNLOAD_WATCHDOG {
                    eprintln!("image: unload did not return within {UNLOAD_WATCHDOG:?}");
                    std::process::exit(101);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let t0 = Instant::now();
    let findings = run.unload();
    done.store(true, Ordering::SeqCst);
    watch.join().unwrap();
    eprintln!(
        "image: unload with uncompleted control IRPs took {:?}",
        t0.elapsed()
    );
    assert_clean(&findings);
    assert!(
        said >= 5,
        "the provider's violation is logged each time:\n{log}"
    );
}
