//! The `#[repr(C)]` mirrors in `control::ioctl::layout` describe exactly the bytes the encoders
//! write: each field's offset holds the value encoded into it.
#![allow(clippy::field_reassign_with_default)]
use control::config::{Cidr, Config, Limits, Mode, Proto, Service};
use control::ioctl::layout::*;
use control::ioctl::*;
use core::mem::offset_of;

fn at<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    b[off..off + N].try_into().unwrap()
}
fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(at(b, off))
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(at(b, off))
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(at(b, off))
}

fn enc(f: impl FnOnce(&mut [u8]) -> Result<usize, ControlError>) -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    let n = f(&mut b).unwrap();
    b.truncate(n);
    b
}

fn job() -> LoadJob {
    LoadJob {
        target: "::2".parse().unwrap(),
        port: 0x1234,
        proto: Proto::Udp,
        pattern: LoadPattern::Source,
        connections: 7,
        message_size: 1000,
        duration_ms: 5000,
        rate: 333,
        stream: false,
        flows: 5,
    }
}

#[test]
fn header_and_load_messages() {
    let b = enc(|o| encode_load_start(&job(), o));
    assert_eq!(u16_at(&b, offset_of!(WireHeader, version)), ABI_VERSION);
    assert_eq!(
        u16_at(&b, offset_of!(WireHeader, kind)),
        Kind::LoadStartRequest as u16
    );
    assert_eq!(u32_at(&b, offset_of!(WireHeader, length)) as usize, b.len());
    let j = offset_of!(WireLoadStart, job);
    assert_eq!(
        u16_at(
            &b,
            j + offset_of!(WireLoadJob, target) + offset_of!(WireAddress, family)
        ),
        AF_INET6
    );
    assert_eq!(b[j + offset_of!(WireAddress, addr) + 15], 2);
    assert_eq!(u16_at(&b, j + offset_of!(WireLoadJob, port)), 0x1234);
    assert_eq!(b[j + offset_of!(WireLoadJob, proto)], 1);
    assert_eq!(b[j + offset_of!(WireLoadJob, pattern)], 1);
    assert_eq!(u32_at(&b, j + offset_of!(WireLoadJob, connections)), 7);
    assert_eq!(u32_at(&b, j + offset_of!(WireLoadJob, message_size)), 1000);
    assert_eq!(u32_at(&b, j + offset_of!(WireLoadJob, duration_ms)), 5000);
    assert_eq!(u32_at(&b, j + offset_of!(WireLoadJob, rate)), 333);
    assert_eq!(u32_at(&b, j + offset_of!(WireLoadJob, flows)), 5);
    assert_eq!(u32_at(&b, j + offset_of!(WireLoadJob, reserved)), 0);

    let b = enc(|o| encode_load_stop(0xABCD, o));
    assert_eq!(u32_at(&b, offset_of!(WireJobId, job_id)), 0xABCD);

    let s = LoadStatus {
        job_id: 9,
        state: JobState::Running,
        last_status: -5,
        elapsed_ms: 11,
        connections_open: 12,
        connect_failures: 13,
        messages_sent: 1 << 40,
        messages_received: 2 << 40,
        bytes_sent: 3 << 40,
        bytes_received: 4 << 40,
        verify_failures: 5,
        job: Some(job()),
    };
    let b = enc(|o| encode_load_status(&s, o));
    assert_eq!(u32_at(&b, offset_of!(WireLoadStatus, job_id)), 9);
    assert_eq!(u32_at(&b, offset_of!(WireLoadStatus, state)), 1);
    assert_eq!(
        u32_at(&b, offset_of!(WireLoadStatus, last_status)) as i32,
        -5
    );
    assert_eq!(u32_at(&b, offset_of!(WireLoadStatus, elapsed_ms)), 11);
    assert_eq!(u32_at(&b, offset_of!(WireLoadStatus, connections_open)), 12);
    assert_eq!(u32_at(&b, offset_of!(WireLoadStatus, connect_failures)), 13);
    assert_eq!(
        u64_at(&b, offset_of!(WireLoadStatus, messages_sent)),
        1 << 40
    );
    assert_eq!(
        u64_at(&b, offset_of!(WireLoadStatus, messages_received)),
        2 << 40
    );
    assert_eq!(u64_at(&b, offset_of!(WireLoadStatus, bytes_sent)), 3 << 40);
    assert_eq!(
        u64_at(&b, offset_of!(WireLoadStatus, bytes_received)),
        4 << 40
    );
    assert_eq!(u64_at(&b, offset_of!(WireLoadStatus, verify_failures)), 5);
    assert_eq!(
        u32_at(
            &b,
            offset_of!(WireLoadStatus, job) + offset_of!(WireLoadJob, rate)
        ),
        333
    );
}

#[test]
fn config_layout() {
    let mut limits = Limits::default();
    limits.max_connections = 77;
    limits.zero_copy = false;
    limits.idle_timeout_ms = 111_111;
    limits.progress_timeout_ms = 222_222;
    limits.retain_timeout_ms = 33_333;
    let mut c = Config {
        limits,
        ..Config::default()
    };
    c.limits
        .set_allowed_sources(&[Cidr::parse("10.9.0.0/16").unwrap()])
        .unwrap();
    let b = enc(|o| encode_config_response(&c, o));
    let l = offset_of!(WireConfigHead, limits);
    assert_eq!(u32_at(&b, l + offset_of!(WireLimits, max_connections)), 77);
    assert_eq!(
        u32_at(&b, l + offset_of!(WireLimits, send_ring_bytes)),
        c.limits.send_ring_bytes
    );
    assert_eq!(
        u32_at(&b, l + offset_of!(WireLimits, disconnect_timeout_ms)),
        c.limits.disconnect_timeout_ms
    );
    // ABI 3: the three timeouts follow disconnect_timeout_ms, before flags.
    assert_eq!(
        offset_of!(WireLimits, idle_timeout_ms),
        offset_of!(WireLimits, disconnect_timeout_ms) + 4
    );
    assert_eq!(
        u32_at(&b, l + offset_of!(WireLimits, idle_timeout_ms)),
        111_111
    );
    assert_eq!(
        u32_at(&b, l + offset_of!(WireLimits, progress_timeout_ms)),
        222_222
    );
    assert_eq!(
        u32_at(&b, l + offset_of!(WireLimits, retain_timeout_ms)),
        33_333
    );
    assert_eq!(offset_of!(WireLimits, flags), LIMITS_LEN - 4);
    // Zero copy off; the UDP guard's five switches (bits 1-5) on by default.
    assert_eq!(u32_at(&b, l + offset_of!(WireLimits, flags)), 0b11_1110);
    assert_eq!(u16_at(&b, offset_of!(WireConfigHead, allowed_count)), 1);
    assert_eq!(u16_at(&b, offset_of!(WireConfigHead, service_count)), 7);
    let cidr = size_of::<WireConfigHead>();
    assert_eq!(u16_at(&b, cidr + offset_of!(WireCidr, family)), AF_INET);
    assert_eq!(b[cidr + offset_of!(WireCidr, prefix)], 16);
    assert_eq!(&b[cidr + offset_of!(WireCidr, addr)..][..4], &[10, 9, 0, 0]);
    let svc = cidr + size_of::<WireCidr>() + 5 * size_of::<WireService>();
    // The 6th default service: sockperf tcp 11111 on 127.0.0.1.
    assert_eq!(b[svc + offset_of!(WireService, proto)], 0);
    assert_eq!(b[svc + offset_of!(WireService, mode)], 3);
    assert_eq!(u16_at(&b, svc + offset_of!(WireService, port)), 11111);
    assert_eq!(
        &b[svc + offset_of!(WireService, bind) + offset_of!(WireAddress, addr)..][..4],
        &[127, 0, 0, 1]
    );

    let add = SetConfig::AddService(Service::new(
        Proto::Udp,
        4000,
        Mode::Discard,
        "127.0.0.2".parse().unwrap(),
    ));
    let b = enc(|o| add.encode(o));
    assert_eq!(u32_at(&b, offset_of!(WireSetConfigHead, op)), 2);
    let s = size_of::<WireSetConfigHead>();
    assert_eq!(u16_at(&b, s + offset_of!(WireService, port)), 4000);
    assert_eq!(b.len(), s + size_of::<WireService>());
}

#[test]
fn stats_and_version_layout() {
    let mut m = control::mock::MockDriver::new(3);
    m.tick(control::stats::Counter::BytesIn, 5);
    let req = enc(|o| {
        StatsRequest {
            per_cpu: true,
            per_service: false,
        }
        .encode(o)
    });
    assert_eq!(u32_at(&req, offset_of!(WireStatsRequest, flags)), 1);
    let mut out = vec![0u8; MAX_OUTPUT_BYTES];
    let (st, n) = dispatch(&mut m, IOCTL_WSKECHO_QUERY_STATS, &req, &mut out);
    assert_eq!(st, 0);
    let b = &out[..n];
    assert_eq!(u16_at(b, offset_of!(WireStatsHead, cpu_count)), 3);
    assert_eq!(u16_at(b, offset_of!(WireStatsHead, service_count)), 0);
    assert_eq!(
        u16_at(b, offset_of!(WireStatsHead, counter_count)) as usize,
        control::stats::COUNTER_COUNT
    );
    assert_eq!(u64_at(b, offset_of!(WireStatsHead, time_us)), 1_000_000);
    let global = size_of::<WireStatsHead>();
    assert_eq!(
        u64_at(b, global + 8 * control::stats::Counter::BytesIn as usize),
        15
    );

    let (st, n) = dispatch(&mut m, IOCTL_WSKECHO_QUERY_VERSION, &[], &mut out);
    assert_eq!(st, 0);
    let b = &out[..n];
    assert_eq!(u16_at(b, offset_of!(WireVersionInfo, abi_max)), ABI_VERSION);
    assert_eq!(u16_at(b, offset_of!(WireVersionInfo, driver_minor)), 1);
    assert_eq!(u32_at(b, offset_of!(WireVersionInfo, cpu_count)), 3);
    assert_eq!(u32_at(b, offset_of!(WireVersionInfo, service_count)), 7);
}

#[test]
fn service_state_layout() {
    use control::ioctl::status::STATUS_ADDRESS_ALREADY_EXISTS;
    let v4: std::net::IpAddr = "127.0.0.3".parse().unwrap();
    let states = [
        ServiceState {
            service: Service::new(Proto::Tcp, 7, Mode::Echo, v4),
            status: 0,
            retrying: false,
        },
        ServiceState {
            service: Service::new(Proto::Udp, 4000, Mode::Discard, v4),
            status: STATUS_ADDRESS_ALREADY_EXISTS,
            retrying: true,
        },
    ];
    let b = enc(|o| encode_service_states(2, |i| states[i], o));
    assert_eq!(u16_at(&b, offset_of!(WireServiceStatesHead, count)), 2);
    assert_eq!(
        u16_at(&b, offset_of!(WireHeader, kind)),
        Kind::ServicesResponse as u16
    );
    let second = size_of::<WireServiceStatesHead>() + size_of::<WireServiceState>();
    assert_eq!(b.len(), second + size_of::<WireServiceState>());
    assert_eq!(
        u16_at(
            &b,
            second + offset_of!(WireServiceState, service) + offset_of!(WireService, port)
        ),
        4000
    );
    assert_eq!(
        u32_at(&b, second + offset_of!(WireServiceState, status)),
        STATUS_ADDRESS_ALREADY_EXISTS as u32
    );
    assert_eq!(
        u32_at(&b, second + offset_of!(WireServiceState, flags)),
        SERVICE_STATE_RETRYING
    );
    // The version answer announces it.
    let mut m = control::mock::MockDriver::new(1);
    let mut out = vec![0u8; MAX_OUTPUT_BYTES];
    let (st, n) = dispatch(&mut m, IOCTL_WSKECHO_QUERY_VERSION, &[], &mut out);
    assert_eq!(st, 0);
    assert_eq!(
        u32_at(&out[..n], offset_of!(WireVersionInfo, features)) & FEATURE_SERVICE_STATE,
        FEATURE_SERVICE_STATE
    );
    // Through dispatch: every configured service of the mock, open.
    let req = enc(|o| encode_empty_request(Kind::ServicesRequest, o));
    let (st, n) = dispatch(&mut m, IOCTL_WSKECHO_QUERY_SERVICES, &req, &mut out);
    assert_eq!(st, 0);
    let d = decode_service_states(&out[..n]).unwrap();
    assert_eq!(d.len(), m.config.services.len());
    assert!(d.iter().all(ServiceState::is_open));
}
