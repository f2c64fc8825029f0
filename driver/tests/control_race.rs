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
    // The echo sends stay pending until the close cancels them (after its drain wait): the
    // close outlasts the control path's 300 ms whatever the draws (a draw of short delays
    // used to let the whole request finish in time).
    wsk_sim::faults::hold_datagram_sends(true);
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
    // The echo sends stay pending until the close cancels them (after its drain wait): the
    // close outlasts the control path's 300 ms whatever the draws (a draw of short delays
    // used to let the whole request finish in time).
    wsk_sim::faults::hold_datagram_sends(true);
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

/// Issue 17 item 6: a UDP service socket killed during a burst, with echo sends in flight, is
/// noticed (the NULL list, W60, counted in DeadSockets) and re-created, every time. The review
/// saw 2 of 9 kills never noticed; this test has not reproduced that (it passed on the code
/// before this branch too: 45 kills with 20 ms send delays, 75 more with 0-300 ms), so it
/// guards the path without having been seen failing.
#[test]
fn killed_udp_socket_is_noticed_during_bursts() {
    let (cfg, ports) = config_with(V4, &[(Proto::Udp, Mode::Echo)]);
    let sim = wsk_sim::Config {
        pend_rate: 1.0,
        max_completion_delay_us: 20_000,
        ..wsk_sim::Config::default()
    };
    let drv = load(sim, Some(cfg)).unwrap();
    assert!(drv.ready);
    let to = SocketAddr::new(V4, ports[0]);
    let rounds = 9u64;
    for round in 0..rounds {
        let u = udp_client(V4);
        assert!(
            eventually_some(|| udp_roundtrip(&u, to, b"up")),
            "round {round}: echo up\n{}",
            why_no_echo(&drv)
        );
        let dead0 = drv.counter(Counter::DeadSockets);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let burst = {
            let stop = stop.clone();
            let u = u.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) && i < 200_000 {
                    let _ = u.send_to(&payload(i, 64), to);
                    i += 1;
                    if i % 16 == 15 {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
            })
        };
        let in0 = drv.counter(Counter::UdpDatagramsIn);
        eventually("the burst indicated", || {
            drv.counter(Counter::UdpDatagramsIn) > in0 + 100
        });
        assert_eq!(wsk_sim::faults::kill_socket(to), 1, "round {round}");
        let t0 = std::time::Instant::now();
        while drv.counter(Counter::DeadSockets) == dead0 && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        burst.join().unwrap();
        assert_eq!(
            drv.counter(Counter::DeadSockets),
            dead0 + 1,
            "round {round}: the killed socket was never noticed"
        );
    }
    let u = udp_client(V4);
    assert!(
        eventually_some(|| udp_roundtrip(&u, to, b"end")),
        "echo back at the end\n{}",
        why_no_echo(&drv)
    );
    assert_clean(&drv.unload());
}

/// What a failed echo check prints: the driver's counters and its log.
fn why_no_echo(drv: &common::harness::Loaded) -> String {
    let c = |k| drv.counter(k);
    format!(
        "open services {:?}; dead sockets {}, datagrams in {} out {}, drops: no context {} filtered {} service {} rate {}\nlog:\n{}",
        wskecho::open_services(),
        c(Counter::DeadSockets),
        c(Counter::UdpDatagramsIn),
        c(Counter::UdpDatagramsOut),
        c(Counter::UdpDropNoContext),
        c(Counter::UdpDropFiltered),
        c(Counter::UdpDropService),
        c(Counter::UdpDropRate),
        wsk_sim::dbg_output()
    )
}

/// Polls `f` (bounded, 10 s) until it returns Some.
fn eventually_some<T>(mut f: impl FnMut() -> Option<T>) -> bool {
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if f().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Issue 17 item 11: when DriverEntry cannot reference its start-up thread, it must not
/// return (and let the image go) before that thread has ended. It used to wait for an event
/// the thread set just before PsTerminateSystemThread: a thread descheduled right after the
/// signal (wsk-sim's `preempt` order, at KeSetEvent's return) was still running the driver's
/// code when DriverEntry had already failed. Now it waits on the thread handle, signalled only
/// once the thread has ended.
#[test]
fn driver_entry_failure_returns_after_the_startup_thread_ended() {
    let (cfg, _) = config_with(V4, &[(Proto::Tcp, Mode::Echo)]);
    let mut still_running = 0;
    let rounds = 10;
    for _ in 0..rounds {
        // The suite's orders with PASSIVE threads descheduled at half their kernel calls.
        let mut sim = wsk_sim::Config::default()
            .with_unkind(common::harness::SUITE_UNKIND)
            .unwrap();
        sim.preempt_rate = 0.5;
        sim.preempt_us = 60_000;
        let _g = wsk_sim::init(sim);
        wsk_sim::faults::fail_next(
            wsk_sim::faults::Call::ObReferenceObjectByHandle,
            wsk_sys::STATUS_INSUFFICIENT_RESOURCES,
            1,
        );
        let drv_obj = wsk_sim::new_driver_object();
        let mut path: Vec<u16> = common::harness::REGISTRY_PATH.encode_utf16().collect();
        let mut us = wsk_sys::UNICODE_STRING {
            Length: (path.len() * 2) as u16,
            MaximumLength: (path.len() * 2) as u16,
            Buffer: path.as_mut_ptr(),
        };
        let c = cfg.clone();
        // SAFETY: valid driver object and registry path for the call.
        let st = unsafe {
            wsk_sim::run_passive(|| wskecho::driver_entry_with(drv_obj, &raw mut us, Some(c)))
        };
        assert!(!wsk_sys::NT_SUCCESS(st), "DriverEntry fails");
        // Right when DriverEntry has returned: the image may be gone now.
        if wsk_sim::system_threads_running() != 0 {
            still_running += 1;
        }
        assert_eq!(wskecho::start_state(), None);
        // Let a straggler (old behaviour) end before the next round.
        let t0 = std::time::Instant::now();
        while wsk_sim::system_threads_running() != 0 && t0.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_clean(&wsk_sim::finish());
    }
    assert_eq!(
        still_running, 0,
        "the start-up thread still ran after DriverEntry failed in {still_running} of {rounds} rounds"
    );
}

/// Issue 17 item 6: a dead UDP socket whose re-creation fails once (here WskSocket fails the
/// first time; under load the port may still be held by the old socket's last sends) must
/// not leave the service dead until unload: the housekeeper tries again until it opens.
/// Before the fix one failed re-open was final: the echo never came back (10 s).
#[test]
fn failed_recreation_of_a_dead_udp_socket_is_retried() {
    let (cfg, ports) = config_with(V4, &[(Proto::Udp, Mode::Echo)]);
    let drv = load(wsk_sim::Config::default(), Some(cfg)).unwrap();
    assert!(drv.ready);
    let to = SocketAddr::new(V4, ports[0]);
    let u = udp_client(V4);
    assert!(eventually_some(|| udp_roundtrip(&u, to, b"up")), "echo up");
    let dead0 = drv.counter(Counter::DeadSockets);
    wsk_sim::faults::fail_next(
        wsk_sim::faults::Call::WskSocket,
        wsk_sys::STATUS_INSUFFICIENT_RESOURCES,
        1,
    );
    assert_eq!(wsk_sim::faults::kill_socket(to), 1);
    eventually("the killed socket noticed", || {
        drv.counter(Counter::DeadSockets) > dead0
    });
    let u = udp_client(V4);
    assert!(
        eventually_some(|| udp_roundtrip(&u, to, b"back")),
        "the echo service never came back after one failed re-creation"
    );
    assert_clean(&drv.unload());
}
