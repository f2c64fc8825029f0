//! A completion routine's pump on a context that another CPU has closed and recycled (found by
//! a 45-minute campaign soak as a SIGSEGV: `send_done` -> `pump` -> `perform` reading a NULL
//! socket's dispatch table).
//!
//! The send completion recorded itself under the connection lock, dropped the lock, then
//! pumped. In between, with no IRP of its own counted any more, the context was nobody's:
//! another CPU could issue the close (the pump owner does that once nothing is in flight), the
//! close could complete and recycle the context, and a load job could take it again for an
//! outbound connection whose socket did not exist yet. The stale pump then ran the new
//! connection's first send on a NULL socket. The same window was open after every other
//! "record under the lock, unlock, pump" (the resume and disconnect completions, the
//! housekeeper's visit, job stops, the connect chain).
//!
//! What makes it likely here: load jobs that end and start again at once (contexts recycled and
//! taken again by outbound connections), against the driver's own echo service (its sends
//! complete while connections close), with completions delivered by four threads at once and
//! PASSIVE threads descheduled at their kernel calls (the suites' unkind orders,
//! `parallel-completion` and `preempt` among them). On the old code the process dies of the
//! NULL dereference (a bugcheck on Windows); the test also checks every echoed byte the jobs
//! verified and what the sim finds at unload.

mod common;

#[allow(clippy::large_types_passed_by_value)]
#[path = "../../wskecho-sim/src/image.rs"]
mod image;

use std::time::{Duration, Instant};

use common::harness::{config_with, load};
use common::*;
use control::config::{Mode, Proto};
use control::ioctl::*;
use wsk_sim::registry::{set_value, RegValue};

/// Jobs per run (WSKECHO_STALE_PUMP_JOBS, default 60): each one recycles up to 64 contexts.
fn jobs() -> u64 {
    std::env::var("WSKECHO_STALE_PUMP_JOBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

/// Sends one control request (code, input, output capacity): status and output bytes.
type Control<'a> = &'a dyn Fn(u32, &[u8], usize) -> (i32, Vec<u8>);

fn status(control: Control) -> LoadStatus {
    let mut b = [0u8; 64];
    let n = encode_empty_request(Kind::LoadStatusRequest, &mut b).unwrap();
    let (_, out) = control(IOCTL_WSKECHO_LOAD_STATUS, &b[..n], LOAD_STATUS_RESPONSE_LEN);
    decode_load_status(&out).unwrap()
}

/// The restarted jobs against the driver's echo service on `port`; returns (messages sent,
/// wrong echoes).
fn restarted_jobs(control: Control, port: u16) -> (u64, u64) {
    let mut b = [0u8; 256];
    let mut verify_failures = 0u64;
    let mut sent = 0u64;
    for i in 0..jobs() {
        let job = LoadJob {
            target: V4,
            port,
            proto: Proto::Tcp,
            pattern: LoadPattern::Echo,
            connections: 64,
            message_size: 64 + (i as u32 % 7) * 300,
            duration_ms: 15 + (i as u32 % 5) * 10,
            rate: 0,
            // Both connect styles: the stream socket's chain publishes late.
            stream: i % 2 == 1,
            flows: 0,
        };
        let n = encode_load_start(&job, &mut b).unwrap();
        // The previous job may still be stopping: a start is refused until it has ended.
        let t0 = Instant::now();
        loop {
            let (st, _) = control(IOCTL_WSKECHO_LOAD_START, &b[..n], LOAD_START_RESPONSE_LEN);
            if st == 0 {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "job {i}: start refused for 10 s ({st:#x})"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // Every third job is stopped early, the rest run out.
        if i % 3 == 0 {
            std::thread::sleep(Duration::from_millis(i % 11));
            let n = encode_load_stop(0, &mut b).unwrap();
            let _ = control(IOCTL_WSKECHO_LOAD_STOP, &b[..n], 0);
        }
        let t0 = Instant::now();
        let s = loop {
            let s = status(control);
            if matches!(s.state, JobState::Finished | JobState::Failed) {
                break s;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "job {i} still {:?} after 10 s",
                s.state
            );
            std::thread::sleep(Duration::from_millis(1));
        };
        verify_failures += s.verify_failures;
        sent += s.messages_sent;
    }
    (sent, verify_failures)
}

fn judge(what: &str, (sent, verify_failures): (u64, u64), findings: &[String], started: Instant) {
    eprintln!(
        "{what}: {} jobs in {:.1} s: {sent} messages sent, {verify_failures} wrong echoes",
        jobs(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(verify_failures, 0, "{what}: the jobs saw wrong echo bytes");
    assert!(
        sent > 0,
        "{what}: no job sent anything: the test ran nothing"
    );
    assert_clean(findings);
}

#[test]
fn completions_racing_recycled_contexts_of_restarted_jobs() {
    let (mut cfg, ports) = config_with(V4, &[(Proto::Tcp, Mode::Echo)]);
    // Short graceful phases: connections close (and contexts recycle) soon after a job ends.
    cfg.limits.disconnect_timeout_ms = 20;
    let drv = load(
        wsk_sim::Config {
            violations: wsk_sim::ViolationMode::Record,
            ..wsk_sim::Config::default()
        },
        Some(cfg),
    )
    .unwrap();
    assert!(drv.ready);
    let started = Instant::now();
    let control = |code: u32, input: &[u8], cap: usize| drv.control(code, input, cap);
    let counts = restarted_jobs(&control, ports[0]);
    judge("built-in", counts, &drv.unload(), started);
}

/// The same on the shipped image (wsk-sim's PE loader; the suites' unkind orders set here,
/// as the image harness does not add them).
#[test]
fn image_completions_racing_recycled_contexts_of_restarted_jobs() {
    let Some(path) = image_path() else { return };
    let port = common::harness::free_port(V4);
    let cfg = wsk_sim::Config {
        violations: wsk_sim::ViolationMode::Record,
        ..wsk_sim::Config::default()
    }
    .with_unkind(common::harness::SUITE_UNKIND)
    .unwrap();
    let params = format!("{}\\Parameters", image::REGISTRY_PATH);
    let run = image::load_with(&path, cfg, || {
        set_value(
            &params,
            "Services",
            RegValue::MultiSz(vec![format!("echo,tcp,{port},127.0.0.1")]),
        );
        set_value(&params, "DisconnectTimeoutMs", RegValue::Dword(20));
    })
    .unwrap_or_else(|e| panic!("image load: {e}"));
    assert!(run.ready);
    let started = Instant::now();
    let control = |code: u32, input: &[u8], cap: usize| {
        let mut out = vec![0u8; cap];
        let (st, k) = run.control(code, input, &mut out);
        out.truncate(k);
        (st, out)
    };
    let counts = restarted_jobs(&control, port);
    judge("image", counts, &run.unload(), started);
}
