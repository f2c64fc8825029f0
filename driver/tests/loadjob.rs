//! Kernel-side load generation: a load job started through the control ABI opens connections
//! with WskSocketConnect and runs the echo-client or source pattern for its duration.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::harness::{config_with, load, Loaded};
use common::*;
use control::config::{Mode, Proto};
use control::ioctl::*;

fn start(drv: &Loaded, job: &LoadJob) -> i32 {
    let mut b = [0u8; 256];
    let n = encode_load_start(job, &mut b).unwrap();
    drv.control(IOCTL_WSKECHO_LOAD_START, &b[..n], LOAD_START_RESPONSE_LEN).0
}

fn status(drv: &Loaded) -> LoadStatus {
    let mut b = [0u8; 64];
    let n = encode_empty_request(Kind::LoadStatusRequest, &mut b).unwrap();
    let (st, out) = drv.control(IOCTL_WSKECHO_LOAD_STATUS, &b[..n], LOAD_STATUS_RESPONSE_LEN);
    assert_eq!(st, 0);
    decode_load_status(&out).unwrap()
}

fn job(target: IpAddr, port: u16, pattern: LoadPattern, connections: u32, size: u32, ms: u32) -> LoadJob {
    LoadJob { target, port, proto: Proto::Tcp, pattern, connections, message_size: size, duration_ms: ms, rate: 0 }
}

fn wait_done(drv: &Loaded) -> LoadStatus {
    let mut s = status(drv);
    eventually("job finished", || {
        s = status(drv);
        matches!(s.state, JobState::Finished | JobState::Failed)
    });
    s
}

#[test]
fn echo_client_job_against_own_echo_service() {
    for ip in [V4, V6] {
        let (cfg, ports) = config_with(ip, &[(Proto::Tcp, Mode::Echo)]);
        let drv = load(wsk_sim::Config::default(), Some(cfg)).unwrap();
        assert!(drv.ready);
        assert_eq!(start(&drv, &job(ip, ports[0], LoadPattern::Echo, 4, 1000, 400)), 0);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(status(&drv).state, JobState::Running);
        let s = wait_done(&drv);
        assert_eq!(s.state, JobState::Finished, "{s:?}");
        assert_eq!(s.verify_failures, 0, "{s:?}");
        assert_eq!(s.connect_failures, 0);
        assert!(s.messages_received > 10, "{s:?}");
        assert!(s.messages_sent >= s.messages_received);
        // Every counted message was received whole; at most one partial echo per connection.
        assert!(s.bytes_received >= s.messages_received * 1000 && s.bytes_received < (s.messages_received + 4) * 1000, "{s:?}");
        // The driver's own echo service saw the same traffic.
        assert!(drv.counter(wskecho::stats::Counter::TcpBytesIn) >= s.bytes_received);
        assert_clean(&drv.unload());
    }
}

#[test]
fn source_job_to_discard_and_a_refused_target() {
    let (cfg, ports) = config_with(V4, &[(Proto::Tcp, Mode::Discard)]);
    let drv = load(wsk_sim::Config::default(), Some(cfg)).unwrap();
    assert!(drv.ready);
    assert_eq!(start(&drv, &job(V4, ports[0], LoadPattern::Source, 3, 16_384, 300)), 0);
    let s = wait_done(&drv);
    assert_eq!(s.state, JobState::Finished, "{s:?}");
    assert!(s.bytes_sent > 100_000, "{s:?}");
    eventually("discard got it", || drv.counter(wskecho::stats::Counter::TcpBytesIn) >= s.bytes_sent);
    // Nobody listens there: every connect fails, the job says so.
    let closed = common::harness::free_port(V4);
    assert_eq!(start(&drv, &job(V4, closed, LoadPattern::Echo, 2, 100, 300)), 0);
    let s = wait_done(&drv);
    assert_eq!(s.state, JobState::Failed, "{s:?}");
    assert_eq!(s.connect_failures, 2);
    assert_ne!(s.last_status, 0);
    assert_clean(&drv.unload());
}

/// Unload while a job runs: bounded, clean.
#[test]
fn unload_during_a_job() {
    let (mut cfg, ports) = config_with(V4, &[(Proto::Tcp, Mode::Echo)]);
    cfg.limits.disconnect_timeout_ms = 200;
    let drv = load(wsk_sim::Config::default(), Some(cfg)).unwrap();
    assert_eq!(start(&drv, &job(V4, ports[0], LoadPattern::Echo, 8, 4000, 60_000)), 0);
    eventually("traffic", || status(&drv).messages_received > 20);
    let t0 = std::time::Instant::now();
    assert_clean(&drv.unload());
    assert!(t0.elapsed() < Duration::from_secs(5));
}
