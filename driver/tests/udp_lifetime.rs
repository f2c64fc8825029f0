//! Lifetimes on the UDP paths (hardening issue, items 1b and 1c): a retained datagram list goes
//! back when its last reference goes (the callback's and every send's), never after some
//! housekeeping ticks; a socket or load job with sends still in flight at close is freed only
//! after every send IRP it issued has completed, and its lists all go back before the close.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::harness::{config_with, load, Loaded};
use common::*;
use control::config::{Mode, Proto};
use control::ioctl::*;
use wskecho::stats::Counter;

/// A sim whose send completions can come seconds late: every send pends (no inline
/// completion) and about a third of the sends' completions wait up to `delay_ms` (the
/// provider holding a datagram, a slow NIC). Other calls that pend complete before they
/// return, so socket set-up, the callback disable and the close take no time. Violations are
/// recorded, so the unload findings list them all (a freed IRP still pending, a list never
/// released) instead of aborting the process.
fn slow_completions(delay_ms: u64) -> wsk_sim::Config {
    wsk_sim::Config {
        pend_rate: 1.0,
        complete_before_return_rate: 1.0,
        max_completion_delay_us: delay_ms * 1000,
        ..wsk_sim::Config::recording()
    }
}

/// 1b: the list of a datagram whose echo send completed after the receive callback returned
/// is given back by that completion (the last reference), not parked until later callbacks
/// or housekeeping ticks. Checked right when the last completion routine has returned: no
/// tick and no other callback can have run in between. Breaks if the release is moved back
/// to a tick (the list is then still retained at that moment).
#[test]
fn a_list_goes_back_with_its_last_send() {
    let (cfg, ports) = config_with(V4, &[(Proto::Udp, Mode::Echo)]);
    let drv = load(wsk_sim::Config::default(), Some(cfg)).unwrap();
    assert!(drv.ready);
    let to = SocketAddr::new(V4, ports[0]);
    let u = udp_client(V4);
    let mut buf = [0u8; 256];
    let mut retained_after_last_completion = 0;
    let mut checked = 0;
    for i in 0..60u64 {
        let data = payload(i, 32);
        u.send_to(&data, to).unwrap();
        let Ok((n, _)) = u.recv_from(&mut buf) else {
            continue;
        };
        assert_eq!(&buf[..n], &data[..]);
        // Spin (no sleep: a tick must not get in) until the send's completion routine has
        // returned: UDP echo is the only traffic, so nothing else is armed.
        let t0 = Instant::now();
        while wskecho::routines_outstanding() != 0 {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "send never completed"
            );
            std::hint::spin_loop();
        }
        checked += 1;
        if wsk_sim::counts().retained_indications != 0 {
            retained_after_last_completion += 1;
        }
    }
    assert!(checked > 30, "too few echoes ({checked})");
    assert_eq!(
        retained_after_last_completion, 0,
        "lists still retained after their last send completed ({retained_after_last_completion} of {checked})"
    );
    assert_clean(&drv.unload());
}

/// Sends `datagrams` (`gap` apart: spaced out they come one per list, so each is a send call of
/// its own), waits until most were indicated, unloads.
fn burst_then_unload(drv: Loaded, to: SocketAddr, datagrams: u64, gap: Duration) -> Vec<String> {
    let u = udp_client(V4);
    for i in 0..datagrams {
        u.send_to(&payload(i, 100), to).unwrap();
        std::thread::sleep(gap);
    }
    eventually("the datagrams indicated", || {
        drv.counter(Counter::UdpDatagramsIn) >= datagrams * 9 / 10
    });
    drv.unload()
}

/// 1c: unload while echo sends are still pending, longer than the close used to wait for
/// them (DisconnectTimeoutMs 200 -> it waited 1 s, then closed and freed the contexts under
/// the pending IRPs, and the lists of those sends were never released). Now the close waits
/// for every send (they give their lists back) and frees the socket only when its count of
/// IRPs in flight is zero. Breaks with the old bounded wait: the sim reports IoFreeIrp of a
/// pending IRP and lists never released.
#[test]
fn unload_with_echo_sends_pending() {
    let (mut cfg, ports) = config_with(V4, &[(Proto::Udp, Mode::Echo)]);
    cfg.limits.disconnect_timeout_ms = 200;
    let drv = load(slow_completions(4000), Some(cfg)).unwrap();
    assert!(drv.ready);
    let findings = burst_then_unload(drv, SocketAddr::new(V4, ports[0]), 60, Duration::ZERO);
    assert_eq!(
        wskecho::routines_outstanding(),
        0,
        "a send completion outlived DriverUnload"
    );
    assert_clean(&findings);
}

/// 1c, the load job's socket: a source job whose send completions come late is stopped by
/// unload; the job block is freed only after its last send completed. Breaks with the old
/// bounded waits (1 s before the close, 1 s after it, then freed): a completion runs on the
/// freed job.
#[test]
fn unload_with_load_job_sends_pending() {
    let (mut cfg, ports) = config_with(V4, &[(Proto::Udp, Mode::Discard)]);
    cfg.limits.disconnect_timeout_ms = 200;
    let drv = load(slow_completions(6000), Some(cfg)).unwrap();
    assert!(drv.ready);
    let job = LoadJob {
        target: V4,
        port: ports[0],
        proto: Proto::Udp,
        pattern: LoadPattern::Source,
        connections: 16,
        message_size: 100,
        duration_ms: 60_000,
        rate: 0,
        stream: false,
        flows: 0,
    };
    let mut b = [0u8; 256];
    let n = encode_load_start(&job, &mut b).unwrap();
    let (st, _) = drv.control(IOCTL_WSKECHO_LOAD_START, &b[..n], LOAD_START_RESPONSE_LEN);
    assert_eq!(st, 0);
    eventually("the job's datagrams at the discard service", || {
        drv.counter(Counter::UdpDatagramsIn) > 40
    });
    let findings = drv.unload();
    assert_eq!(
        wskecho::routines_outstanding(),
        0,
        "a send completion outlived DriverUnload"
    );
    assert_clean(&findings);
}

/// 1c, past the bound: echo sends whose completions come later than the close's wait for them
/// (10 s). Their lists cannot be given back once the close has begun (W68: that would be a call
/// on a closing socket); the close says so in the log, closes, and leaves the socket block to
/// the last of those completions: no IRP is freed while pending, no pool block is left, and the
/// only findings are the lists that could not be returned. Breaks if the close frees the block
/// itself after its waits (IoFreeIrp of a pending IRP, or a completion on freed memory).
#[test]
fn sends_outliving_the_close_free_the_socket_last() {
    let (mut cfg, ports) = config_with(V4, &[(Proto::Udp, Mode::Echo)]);
    cfg.limits.disconnect_timeout_ms = 200;
    let drv = load(slow_completions(15_000), Some(cfg)).unwrap();
    assert!(drv.ready);
    let _ = wsk_sim::take_dbg_output();
    let findings = burst_then_unload(
        drv,
        SocketAddr::new(V4, ports[0]),
        60,
        Duration::from_millis(2),
    );
    let log = wsk_sim::dbg_output();
    assert_eq!(
        wskecho::routines_outstanding(),
        0,
        "a send completion outlived DriverUnload"
    );
    let other: Vec<&String> = findings
        .iter()
        .filter(|f| !f.contains("retained and never released with WskRelease (W68)"))
        .collect();
    assert!(
        other.is_empty(),
        "findings besides unreturned lists: {other:#?}"
    );
    // The case this test is for happened (a draw of the delays could spare it, very rarely).
    if !log.contains("the last frees the socket") {
        eprintln!("every send completed within the close's waits this time:\n{log}");
    }
}

/// Issue 17 item 11: echo sends the provider holds past the close's drain (10 s) and never
/// completes by itself (`faults::hold_datagram_sends`: pending until cancelled or closed). Their
/// lists used to be abandoned: the close then cancelled the sends itself (W70) and the lists,
/// retained for the zero-copy echo, were never given back (W68: not after the close has begun).
/// Now the close cancels the sends first (W76); each cancelled completion gives its list back
/// before WskCloseSocket. Unload is clean: no list left retained, no block, no IRP.
#[test]
fn lists_held_past_the_drain_go_back_before_the_close() {
    let (mut cfg, ports) = config_with(V4, &[(Proto::Udp, Mode::Echo)]);
    cfg.limits.disconnect_timeout_ms = 200;
    let drv = load(wsk_sim::Config::recording(), Some(cfg)).unwrap();
    assert!(drv.ready);
    wsk_sim::faults::hold_datagram_sends(true);
    let _ = wsk_sim::take_dbg_output();
    let to = SocketAddr::new(V4, ports[0]);
    let u = udp_client(V4);
    for i in 0..5u64 {
        u.send_to(&payload(i, 100), to).unwrap();
        eventually("the datagram indicated", || {
            drv.counter(Counter::UdpDatagramsIn) > i
        });
    }
    // Nothing answered: every send is held, every list retained. The datagrams are counted
    // inside the receive callback, before it returns STATUS_PENDING (only then is the list
    // retained): the last one's count can be seen while its callback still runs.
    assert_eq!(drv.counter(Counter::UdpDatagramsOut), 0);
    eventually("every list retained", || {
        wsk_sim::counts().retained_indications == 5
    });
    let t0 = Instant::now();
    let findings = drv.unload();
    let log = wsk_sim::dbg_output();
    eprintln!("unload with 5 held sends took {:?}", t0.elapsed());
    assert_eq!(
        wskecho::routines_outstanding(),
        0,
        "a send completion outlived DriverUnload"
    );
    assert!(
        !log.contains("could not be given back"),
        "lists abandoned:\n{log}"
    );
    assert_clean(&findings);
}
