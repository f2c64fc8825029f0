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

use std::time::{Duration, Instant};

use common::harness::{config_with, load};
use common::*;
use control::config::{Mode, Proto};
use control::ioctl::*;

/// Jobs per run (WSKECHO_STALE_PUMP_JOBS, default 60): each one recycles up to 64 contexts.
fn jobs() -> u64 {
    std::env::var("WSKECHO_STALE_PUMP_JOBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60)
}

fn status(drv: &common::harness::Loaded) -> LoadStatus {
    let mut b = [0u8; 64];
    let n = encode_empty_request(Kind::LoadStatusRequest, &mut b).unwrap();
    let (_, out) = drv.control(IOCTL_WSKECHO_LOAD_STATUS, &b[..n], LOAD_STATUS_RESPONSE_LEN);
    decode_load_status(&out).unwrap()
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
    let mut b = [0u8; 256];
    let mut verify_failures = 0u64;
    let mut sent = 0u64;
    let started = Instant::now();
    for i in 0..jobs() {
        let job = LoadJob {
            target: V4,
            port: ports[0],
            proto: Proto::Tcp,
            pattern: LoadPattern::Echo,
            connections: 64,
            message_size: 64 + (i as u32 % 7) * 300,
            duration_ms: 15 + (i as u32 % 5) * 10,
            rate: 0,
            // Both connect styles: the stream socket's chain publishes late.
            stream: i % 2 == 1,
        };
        let n = encode_load_start(&job, &mut b).unwrap();
        // The previous job may still be stopping: a start is refused until it has ended.
        let t0 = Instant::now();
        loop {
            let (st, _) = drv.control(IOCTL_WSKECHO_LOAD_START, &b[..n], LOAD_START_RESPONSE_LEN);
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
            let _ = drv.control(IOCTL_WSKECHO_LOAD_STOP, &b[..n], 0);
        }
        let t0 = Instant::now();
        let s = loop {
            let s = status(&drv);
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
    let findings = drv.unload();
    eprintln!(
        "{} jobs in {:.1} s: {sent} messages sent, {verify_failures} wrong echoes",
        jobs(),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(verify_failures, 0, "the jobs saw wrong echo bytes");
    assert!(sent > 0, "no job sent anything: the test ran nothing");
    assert_clean(&findings);
}
