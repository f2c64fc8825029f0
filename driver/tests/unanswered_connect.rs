//! Job stop and unload while the job's connects go to an address that never answers (issue 17
//! item 3): a black hole, or a listener whose accept queue stays full. Nothing answers, so
//! only the driver can end those connects: it cancels their IRPs (IoCancelIrp, W76). Unload is
//! then bounded by DisconnectTimeoutMs plus a small constant, and a stopped job ends.
//! wsk-sim's `unanswered_connects` holds such connects pending until cancelled or closed.
//! Both connect styles (WskSocketConnect; WskSocket + WskBind + WskConnect).
//!
//! An unload that never returns is caught by a watchdog that ends the process (nothing else
//! can stop a thread blocked in the driver's unload); each test prints what it measured.

mod common;

#[allow(clippy::large_types_passed_by_value)]
#[path = "../../wskecho-sim/src/image.rs"]
mod image;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::harness::{config_with, free_port, load, Loaded};
use common::*;
use control::config::{Mode, Proto};
use control::ioctl::*;

/// DisconnectTimeoutMs of these runs.
const DISCONNECT_MS: u32 = 200;
/// Longer than anything the driver may take here (its bound is DISCONNECT_MS plus a few
/// housekeeping ticks), far shorter than never. The measured times are printed.
const WATCHDOG: Duration = Duration::from_secs(20);

fn job(port: u16, stream: bool) -> LoadJob {
    LoadJob {
        target: V4,
        port,
        proto: Proto::Tcp,
        pattern: LoadPattern::Echo,
        connections: 8,
        message_size: 100,
        duration_ms: 60_000,
        rate: 0,
        stream,
        flows: 0,
    }
}

/// A driver with an echo service and a job of 8 connections to `black_hole`, whose connects
/// the sim never answers; returns once the job runs.
fn start_job_into_black_hole(stream: bool) -> (Loaded, u32) {
    let (mut cfg, _) = config_with(V4, &[(Proto::Tcp, Mode::Echo)]);
    cfg.limits.disconnect_timeout_ms = DISCONNECT_MS;
    let black_hole = SocketAddr::new(V4, free_port(V4));
    let sim = wsk_sim::Config {
        unanswered_connects: vec![black_hole],
        ..wsk_sim::Config::default()
    };
    let drv = load(sim, Some(cfg)).unwrap();
    assert!(drv.ready);
    let mut b = [0u8; 256];
    let n = encode_load_start(&job(black_hole.port(), stream), &mut b).unwrap();
    let (st, out) = drv.control(IOCTL_WSKECHO_LOAD_START, &b[..n], LOAD_START_RESPONSE_LEN);
    assert_eq!(st, 0);
    let id = decode_load_started(&out).unwrap();
    // The connects are out (for a stream job, past WskSocket and WskBind) and unanswered.
    std::thread::sleep(Duration::from_millis(100));
    let s = status(&drv);
    assert_eq!(s.state, JobState::Running, "{s:?}");
    assert_eq!(s.connections_open, 0, "nothing answered: {s:?}");
    (drv, id)
}

fn status(drv: &Loaded) -> LoadStatus {
    let mut b = [0u8; 64];
    let n = encode_empty_request(Kind::LoadStatusRequest, &mut b).unwrap();
    let (st, out) = drv.control(IOCTL_WSKECHO_LOAD_STATUS, &b[..n], LOAD_STATUS_RESPONSE_LEN);
    assert_eq!(st, 0);
    decode_load_status(&out).unwrap()
}

/// Runs `f`, ending the process if it has not returned within WATCHDOG.
fn watched<T>(what: &str, f: impl FnOnce() -> T) -> (T, Duration) {
    let done = Arc::new(AtomicBool::new(false));
    let what = what.to_string();
    let watch = {
        let done = done.clone();
        std::thread::spawn(move || {
            let t0 = Instant::now();
            while !done.load(Ordering::SeqCst) {
                if t0.elapsed() > WATCHDOG {
                    eprintln!("{what}: not done within {WATCHDOG:?}");
                    std::process::exit(101);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let t0 = Instant::now();
    let r = f();
    let took = t0.elapsed();
    done.store(true, Ordering::SeqCst);
    watch.join().unwrap();
    (r, took)
}

fn unload_while_connecting(stream: bool) {
    let (drv, _) = start_job_into_black_hole(stream);
    let (findings, took) = watched("unload with unanswered connects", || drv.unload());
    eprintln!("stream={stream}: unload with 8 unanswered connects took {took:?}");
    assert_clean(&findings);
}

fn stop_while_connecting(stream: bool) {
    let (drv, id) = start_job_into_black_hole(stream);
    let mut b = [0u8; 64];
    let n = encode_load_stop(id, &mut b).unwrap();
    let (s, took) = watched("job stop with unanswered connects", || {
        assert_eq!(drv.control(IOCTL_WSKECHO_LOAD_STOP, &b[..n], 0).0, 0);
        loop {
            let s = status(&drv);
            if matches!(s.state, JobState::Finished | JobState::Failed) {
                break s;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    eprintln!("stream={stream}: job stop with 8 unanswered connects ended in {took:?}: {s:?}");
    // Finished means no context of the job is left (load::tick); a connect the stop cancelled
    // is not a failed one.
    assert_eq!(
        (s.state, s.connections_open, s.connect_failures),
        (JobState::Finished, 0, 0),
        "{s:?}"
    );
    let (findings, took) = watched("unload after the stop", || drv.unload());
    eprintln!("stream={stream}: unload after it took {took:?}");
    assert_clean(&findings);
}

#[test]
fn unload_cancels_unanswered_socketconnects() {
    unload_while_connecting(false);
}

#[test]
fn unload_cancels_unanswered_stream_connects() {
    unload_while_connecting(true);
}

#[test]
fn job_stop_cancels_unanswered_socketconnects() {
    stop_while_connecting(false);
}

#[test]
fn job_stop_cancels_unanswered_stream_connects() {
    stop_while_connecting(true);
}

/// The shipped image: unload, and job stop then unload, with unanswered connects of both
/// styles, under the suites' unkind orders.
#[test]
fn image_stop_and_unload_cancel_unanswered_connects() {
    let Some(path) = image_path() else { return };
    for stream in [false, true] {
        for stop in [true, false] {
            let port = free_port(V4);
            let black_hole = SocketAddr::new(V4, free_port(V4));
            let sim = wsk_sim::Config {
                unanswered_connects: vec![black_hole],
                ..wsk_sim::Config::default()
            }
            .with_unkind(common::harness::SUITE_UNKIND)
            .unwrap();
            let params = format!("{}\\Parameters", image::REGISTRY_PATH);
            let run = image::load_with(&path, sim, || {
                use wsk_sim::registry::{set_value, RegValue};
                set_value(
                    &params,
                    "Services",
                    RegValue::MultiSz(vec![format!("echo,tcp,{port},127.0.0.1")]),
                );
                set_value(
                    &params,
                    "DisconnectTimeoutMs",
                    RegValue::Dword(DISCONNECT_MS),
                );
            })
            .unwrap_or_else(|e| panic!("image load: {e}"));
            assert!(run.ready);
            let (mut b, mut out) = ([0u8; 256], [0u8; 256]);
            let n = encode_load_start(&job(black_hole.port(), stream), &mut b).unwrap();
            let (st, k) = run.control(IOCTL_WSKECHO_LOAD_START, &b[..n], &mut out);
            assert_eq!(st, 0);
            let id = decode_load_started(&out[..k]).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            let status = |out: &mut [u8; 256]| {
                let mut b = [0u8; 64];
                let n = encode_empty_request(Kind::LoadStatusRequest, &mut b).unwrap();
                let (_, k) = run.control(IOCTL_WSKECHO_LOAD_STATUS, &b[..n], out);
                decode_load_status(&out[..k]).unwrap()
            };
            let s = status(&mut out);
            assert_eq!(
                (s.state, s.connections_open),
                (JobState::Running, 0),
                "{s:?}"
            );
            if stop {
                let n = encode_load_stop(id, &mut b).unwrap();
                let (s, took) = watched("image: job stop with unanswered connects", || {
                    assert_eq!(run.control(IOCTL_WSKECHO_LOAD_STOP, &b[..n], &mut []).0, 0);
                    loop {
                        let s = status(&mut out);
                        if matches!(s.state, JobState::Finished | JobState::Failed) {
                            break s;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    }
                });
                eprintln!("image stream={stream}: job stop ended in {took:?}: {s:?}");
                assert_eq!(
                    (s.state, s.connections_open, s.connect_failures),
                    (JobState::Finished, 0, 0),
                    "{s:?}"
                );
            }
            let (findings, took) =
                watched("image: unload with unanswered connects", || run.unload());
            eprintln!("image stream={stream} stop={stop}: unload took {took:?}");
            assert_clean(&findings);
        }
    }
}
