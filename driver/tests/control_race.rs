//! The control plane against work in flight (issue 17 items 10 and 11): a control request the
//! IOCTL thread gave up on is still being carried out by the system thread; unload (and any
//! other control request) must not run beside it.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::harness::{config_with, load};
use common::*;
use control::config::{Mode, Proto, Service, Services};
use control::ioctl::SetConfig;
use wskecho::stats::Counter;

/// STATUS_IO_TIMEOUT: the control path gave up waiting for the system thread.
const STATUS_IO_TIMEOUT: i32 = 0xC000_00B5_u32 as i32;

/// Issue 17 item 10. A replace that swaps a UDP echo service for a UDP discard service on the
/// same port: the system thread first closes the echo socket, which waits for its echo sends
/// (held back by the sim for up to 3 s), then opens the discard socket. The control path gives
/// up after 300 ms. Unload then used to take the control lock at once and sweep the sockets
/// while the system thread was still closing; the discard socket it opened afterwards was never
/// closed and WskDeregister never returned. Now the control lock stays with the system thread
/// until the request is done: unload waits, then closes the new socket too.
#[test]
fn unload_waits_for_a_control_request_that_timed_out() {
    let (mut cfg, ports) = config_with(V4, &[(Proto::Udp, Mode::Echo)]);
    cfg.limits.disconnect_timeout_ms = 200;
    // Every send pends, a third of the completions come up to 3 s late; other calls complete
    // before they return (set-up and close take no time). Violations are recorded.
    let sim = wsk_sim::Config {
        pend_rate: 1.0,
        complete_before_return_rate: 1.0,
        max_completion_delay_us: 3_000_000,
        watchdog_ms: 10_000,
        ..wsk_sim::Config::recording()
    };
    let drv = load(sim, Some(cfg.clone())).unwrap();
    assert!(drv.ready);
    wskecho::set_control_wait_ms(300).unwrap();
    let to = SocketAddr::new(V4, ports[0]);
    let u = udp_client(V4);
    for i in 0..60 {
        u.send_to(&payload(i, 100), to).unwrap();
    }
    eventually("the datagrams indicated", || {
        drv.counter(Counter::UdpDatagramsIn) >= 50
    });
    let mut new = cfg;
    new.services =
        Services::from_slice(&[Service::new(Proto::Udp, ports[0], Mode::Discard, V4)]).unwrap();
    let st = set_config(&drv, &SetConfig::Replace(new));
    assert_eq!(
        st, STATUS_IO_TIMEOUT,
        "the close outlasted the control path's wait (sends held back)"
    );
    let findings = drv.unload();
    assert_eq!(
        wskecho::routines_outstanding(),
        0,
        "a completion routine outlived DriverUnload"
    );
    assert_clean(&findings);
}

/// Issue 17 item 10, the other requests: while the system thread still works on a request
/// that timed out, the next control request finds the control lock taken
/// (STATUS_DEVICE_BUSY) instead of running beside it.
#[test]
fn a_request_after_a_timed_out_one_waits_its_turn() {
    let (mut cfg, ports) = config_with(V4, &[(Proto::Udp, Mode::Echo)]);
    cfg.limits.disconnect_timeout_ms = 200;
    let sim = wsk_sim::Config {
        pend_rate: 1.0,
        complete_before_return_rate: 1.0,
        max_completion_delay_us: 3_000_000,
        ..wsk_sim::Config::recording()
    };
    let drv = load(sim, Some(cfg.clone())).unwrap();
    assert!(drv.ready);
    wskecho::set_control_wait_ms(300).unwrap();
    let to = SocketAddr::new(V4, ports[0]);
    let u = udp_client(V4);
    for i in 0..60 {
        u.send_to(&payload(i, 100), to).unwrap();
    }
    eventually("the datagrams indicated", || {
        drv.counter(Counter::UdpDatagramsIn) >= 50
    });
    let mut new = cfg.clone();
    new.services =
        Services::from_slice(&[Service::new(Proto::Udp, ports[0], Mode::Discard, V4)]).unwrap();
    assert_eq!(
        set_config(&drv, &SetConfig::Replace(new.clone())),
        STATUS_IO_TIMEOUT
    );
    // Right after: the system thread is still closing the echo socket.
    let busy = set_config(&drv, &SetConfig::SetLimits(cfg.limits.clone()));
    assert_eq!(
        busy,
        control::ioctl::status::STATUS_DEVICE_BUSY,
        "a second request ran beside the first"
    );
    // Once the first is done the control path is free again. (Its outcome is not the point:
    // the sim may still hold the echo socket's port while its held-back sends are pending,
    // and then the replace is undone.)
    let mut got = None;
    for _ in 0..200 {
        std::thread::sleep(Duration::from_millis(50));
        let mut req = [0u8; 64];
        let n =
            control::ioctl::encode_empty_request(control::ioctl::Kind::ConfigGetRequest, &mut req)
                .unwrap();
        let (st, out) = drv.control(
            control::ioctl::IOCTL_WSKECHO_GET_CONFIG,
            &req[..n],
            control::ioctl::MAX_OUTPUT_BYTES,
        );
        if st == 0 {
            got = Some(control::ioctl::decode_config_response(&out).unwrap());
            break;
        }
    }
    let got = got.expect("control path free again");
    assert!(
        got.services == new.services || got.services.as_slice()[0].mode == Mode::Echo,
        "{got:?}"
    );
    assert_clean(&drv.unload());
}
