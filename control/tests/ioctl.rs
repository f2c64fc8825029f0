//! IOCTL ABI: codes, every request's happy path through `dispatch`, and every malformed case
#![allow(
    clippy::many_single_char_names,
    clippy::field_reassign_with_default,
    clippy::type_complexity
)]
//! with its specific error and NTSTATUS.
use control::config::{Cidr, Config, Limits, Mode, Proto, Service, ServiceError};
use control::ioctl::status::*;
use control::ioctl::*;
use control::mock::MockDriver;
use control::stats::{Counter, COUNTER_COUNT};

fn lo() -> std::net::IpAddr {
    "127.0.0.1".parse().unwrap()
}

fn call(m: &mut MockDriver, code: u32, input: &[u8], cap: usize) -> (i32, Vec<u8>) {
    let mut out = vec![0u8; cap];
    let (s, n) = dispatch(m, code, input, &mut out);
    out.truncate(n);
    (s, out)
}

fn enc(f: impl FnOnce(&mut [u8]) -> Result<usize, ControlError>) -> Vec<u8> {
    let mut b = vec![0u8; MAX_INPUT_BYTES];
    let n = f(&mut b).unwrap();
    b.truncate(n);
    b
}

fn set_len(b: &mut [u8]) {
    let n = b.len() as u32;
    b[4..8].copy_from_slice(&n.to_le_bytes());
}

fn job() -> LoadJob {
    LoadJob {
        target: lo(),
        port: 7007,
        proto: Proto::Tcp,
        pattern: LoadPattern::Echo,
        connections: 4,
        message_size: 64,
        duration_ms: 3000,
        rate: 0,
        stream: false,
        flows: 0,
    }
}

#[test]
fn ctl_code_matches_winioctl() {
    // CTL_CODE(FILE_DEVICE_UNKNOWN, 0x800, METHOD_BUFFERED, FILE_ANY_ACCESS) is the well-known 0x222000.
    assert_eq!(
        ctl_code(0x22, 0x800, METHOD_BUFFERED, FILE_ANY_ACCESS),
        0x0022_2000
    );
    assert_eq!(
        ctl_code(0x22, 0x801, 0, FILE_READ_DATA | FILE_WRITE_DATA),
        0x0022_E004
    );
    let mut seen = std::collections::HashSet::new();
    for c in ALL_CODES {
        let (dev, func, method, access) = ctl_code_parts(c);
        assert_eq!(dev, FILE_DEVICE_WSKECHO);
        assert!(dev >= 0x8000 && func >= 0x800, "customer ranges");
        assert_eq!(method, METHOD_BUFFERED);
        assert_ne!(
            access, FILE_ANY_ACCESS,
            "every code needs read or write access"
        );
        assert!(seen.insert(c));
    }
    let (_, _, _, a) = ctl_code_parts(IOCTL_WSKECHO_SET_CONFIG);
    assert_eq!(
        a & FILE_WRITE_DATA,
        FILE_WRITE_DATA,
        "changes need write access"
    );
}

#[test]
fn version_happy_and_malformed() {
    let mut m = MockDriver::new(2);
    let (s, b) = call(&mut m, IOCTL_WSKECHO_QUERY_VERSION, &[], 64);
    assert_eq!(s, STATUS_SUCCESS);
    let v = VersionInfo::decode(&b).unwrap();
    assert!(v.compatible());
    assert_eq!((v.cpu_count, v.service_count), (2, 7));
    assert_eq!(
        call(&mut m, IOCTL_WSKECHO_QUERY_VERSION, &[0], 64).0,
        STATUS_INFO_LENGTH_MISMATCH
    );
    assert_eq!(
        call(
            &mut m,
            IOCTL_WSKECHO_QUERY_VERSION,
            &[],
            VERSION_INFO_LEN - 1
        ),
        (STATUS_BUFFER_TOO_SMALL, vec![])
    );
    let newer = VersionInfo {
        abi_min: ABI_VERSION + 1,
        abi_max: ABI_VERSION + 2,
        ..v
    };
    let mut b2 = vec![0; 64];
    let n = newer.encode(&mut b2).unwrap();
    assert!(!VersionInfo::decode(&b2[..n]).unwrap().compatible());
}

#[test]
fn unknown_code_is_invalid_device_request() {
    let mut m = MockDriver::new(1);
    for code in [
        0,
        0x0022_2000,
        ctl_code(FILE_DEVICE_WSKECHO, 0x8FF, 0, 1),
        IOCTL_WSKECHO_QUERY_STATS | 3,
    ] {
        assert_eq!(
            call(&mut m, code, &[], 4096).0,
            STATUS_INVALID_DEVICE_REQUEST
        );
    }
}

#[test]
fn stats_happy_path() {
    let mut m = MockDriver::new(3);
    m.tick(Counter::BytesIn, 10);
    for (pc, ps) in [(false, false), (true, false), (false, true), (true, true)] {
        let req = enc(|b| {
            StatsRequest {
                per_cpu: pc,
                per_service: ps,
            }
            .encode(b)
        });
        let (s, b) = call(&mut m, IOCTL_WSKECHO_QUERY_STATS, &req, MAX_OUTPUT_BYTES);
        assert_eq!(s, STATUS_SUCCESS);
        let v = StatsView::parse(&b).unwrap();
        assert_eq!(v.global().get(Counter::BytesIn), 30);
        assert_eq!(v.cpu_count(), if pc { 3 } else { 0 });
        assert_eq!(v.service_count(), if ps { 7 } else { 0 });
        if pc {
            assert_eq!(v.cpu(2).unwrap().get(Counter::BytesIn), 10);
            assert!(v.cpu(3).is_none());
        }
        if ps {
            let (svc, c) = v.service(6).unwrap();
            assert_eq!(svc, Config::default().services.as_slice()[6]);
            assert_eq!(c.get(Counter::BytesIn), 10);
        }
        assert_eq!(v.time_us(), 1_000_000);
        // Exactly the needed capacity works, one byte less does not.
        assert_eq!(
            call(&mut m, IOCTL_WSKECHO_QUERY_STATS, &req, b.len()).0,
            STATUS_SUCCESS
        );
        assert_eq!(
            call(&mut m, IOCTL_WSKECHO_QUERY_STATS, &req, b.len() - 1),
            (STATUS_BUFFER_TOO_SMALL, vec![])
        );
    }
    assert_eq!(COUNTER_COUNT, Counter::ALL.len());
}

/// The generic malformed cases every request kind must refuse with its own error.
fn malformed_common(code: u32, good: &[u8]) {
    let mut m = MockDriver::new(1);
    let cap = MAX_OUTPUT_BYTES;
    let st = |m: &mut MockDriver, b: &[u8]| call(m, code, b, cap).0;
    // Short: truncated, header patched to match; and truncated without patching.
    for cut in [1, 4] {
        if good.len() > 8 + cut - 1 {
            let mut b = good[..good.len() - cut].to_vec();
            set_len(&mut b);
            assert_eq!(
                st(&mut m, &b),
                STATUS_INFO_LENGTH_MISMATCH,
                "short by {cut} code {code:#x}"
            );
            assert_eq!(
                st(&mut m, &good[..good.len() - cut]),
                STATUS_INFO_LENGTH_MISMATCH
            );
        }
    }
    for n in 0..8 {
        assert_eq!(
            st(&mut m, &good[..n]),
            STATUS_INFO_LENGTH_MISMATCH,
            "header cut at {n}"
        );
    }
    // Long.
    let mut b = good.to_vec();
    b.push(0);
    set_len(&mut b);
    assert_eq!(
        st(&mut m, &b),
        STATUS_INFO_LENGTH_MISMATCH,
        "long code {code:#x}"
    );
    assert_eq!(
        st(&mut m, &vec![0u8; MAX_INPUT_BYTES + 1]),
        STATUS_INFO_LENGTH_MISMATCH
    );
    // Wrong version (older and newer).
    for v in [0u16, ABI_VERSION + 1, u16::MAX] {
        let mut b = good.to_vec();
        b[0..2].copy_from_slice(&v.to_le_bytes());
        assert_eq!(st(&mut m, &b), STATUS_REVISION_MISMATCH, "version {v}");
    }
    // Wrong kind.
    let mut b = good.to_vec();
    b[2] ^= 0x40;
    assert_eq!(st(&mut m, &b), STATUS_INVALID_PARAMETER);
}

#[test]
fn config_get_set_happy_paths() {
    let mut m = MockDriver::new(1);
    let get = enc(|b| encode_empty_request(Kind::ConfigGetRequest, b));
    let (s, b) = call(&mut m, IOCTL_WSKECHO_GET_CONFIG, &get, MAX_OUTPUT_BYTES);
    assert_eq!(s, STATUS_SUCCESS);
    assert_eq!(decode_config_response(&b).unwrap(), Config::default());
    malformed_common(IOCTL_WSKECHO_GET_CONFIG, &get);

    let v6: std::net::IpAddr = "::1".parse().unwrap();
    let add = SetConfig::AddService(Service::new(Proto::Udp, 9000, Mode::Echo, v6));
    let (s, _) = call(&mut m, IOCTL_WSKECHO_SET_CONFIG, &enc(|b| add.encode(b)), 0);
    assert_eq!(s, STATUS_SUCCESS);
    assert_eq!(m.config.services.len(), 8);
    // Adding it again conflicts; removing something absent is not found.
    assert_eq!(
        call(&mut m, IOCTL_WSKECHO_SET_CONFIG, &enc(|b| add.encode(b)), 0).0,
        STATUS_ADDRESS_ALREADY_EXISTS
    );
    let rm = SetConfig::RemoveService(Service::new(Proto::Udp, 9000, Mode::Discard, v6));
    assert_eq!(
        call(&mut m, IOCTL_WSKECHO_SET_CONFIG, &enc(|b| rm.encode(b)), 0).0,
        STATUS_SUCCESS
    );
    assert_eq!(
        call(&mut m, IOCTL_WSKECHO_SET_CONFIG, &enc(|b| rm.encode(b)), 0).0,
        STATUS_NOT_FOUND
    );
    assert_eq!(m.config, Config::default());

    let mut l = Limits::default();
    l.max_connections = 7;
    l.set_allowed_sources(&[Cidr::parse("10.0.0.0/8").unwrap()])
        .unwrap();
    let sl = SetConfig::SetLimits(l.clone());
    assert_eq!(
        call(&mut m, IOCTL_WSKECHO_SET_CONFIG, &enc(|b| sl.encode(b)), 0).0,
        STATUS_SUCCESS
    );
    assert_eq!(m.config.limits, l);
    assert_eq!(m.config.services, Config::default().services);

    let mut c = Config::default();
    c.services =
        control::config::Services::from_slice(&[Service::new(Proto::Tcp, 1, Mode::Discard, lo())])
            .unwrap();
    let rep = SetConfig::Replace(c.clone());
    let rep_bytes = enc(|b| rep.encode(b));
    assert_eq!(
        call(&mut m, IOCTL_WSKECHO_SET_CONFIG, &rep_bytes, 0).0,
        STATUS_SUCCESS
    );
    assert_eq!(m.config, c);
    // The handler's own refusal (port in use) passes through and changes nothing.
    m.busy_ports.push(4242);
    let busy = SetConfig::AddService(Service::new(Proto::Tcp, 4242, Mode::Echo, lo()));
    assert_eq!(
        call(
            &mut m,
            IOCTL_WSKECHO_SET_CONFIG,
            &enc(|b| busy.encode(b)),
            0
        )
        .0,
        STATUS_ADDRESS_ALREADY_EXISTS
    );
    assert_eq!(m.config, c);

    for good in [enc(|b| add.encode(b)), enc(|b| sl.encode(b)), rep_bytes] {
        malformed_common(IOCTL_WSKECHO_SET_CONFIG, &good);
    }
}

#[test]
fn set_config_field_errors() {
    let add =
        enc(|b| SetConfig::AddService(Service::new(Proto::Tcp, 9000, Mode::Echo, lo())).encode(b));
    // Layout: header 8, op 4, reserved 4, service: proto 16, mode 17, port 18..20, family 20..22,
    // reserved 22..24, address 24..40.
    let cases: Vec<(&str, Box<dyn Fn(&mut Vec<u8>)>, ControlError, i32)> = vec![
        (
            "port 0",
            Box::new(|b| b[18..20].copy_from_slice(&[0, 0])),
            ControlError::BadPort,
            STATUS_INVALID_PARAMETER,
        ),
        (
            "family 7",
            Box::new(|b| b[20..22].copy_from_slice(&7u16.to_le_bytes())),
            ControlError::BadFamily,
            STATUS_INVALID_ADDRESS,
        ),
        (
            "family 0",
            Box::new(|b| b[20..22].copy_from_slice(&[0, 0])),
            ControlError::BadFamily,
            STATUS_INVALID_ADDRESS,
        ),
        (
            "v4 tail",
            Box::new(|b| b[39] = 1),
            ControlError::BadAddress,
            STATUS_INVALID_ADDRESS,
        ),
        (
            "addr reserved",
            Box::new(|b| b[22] = 1),
            ControlError::Reserved,
            STATUS_INVALID_PARAMETER,
        ),
        (
            "op reserved",
            Box::new(|b| b[13] = 1),
            ControlError::Reserved,
            STATUS_INVALID_PARAMETER,
        ),
        (
            "op 9",
            Box::new(|b| b[8] = 9),
            ControlError::BadEnum,
            STATUS_INVALID_PARAMETER,
        ),
        (
            "proto 5",
            Box::new(|b| b[16] = 5),
            ControlError::BadEnum,
            STATUS_INVALID_PARAMETER,
        ),
        (
            "mode 9",
            Box::new(|b| b[17] = 9),
            ControlError::BadEnum,
            STATUS_INVALID_PARAMETER,
        ),
        (
            "udp source",
            Box::new(|b| {
                b[16] = 1;
                b[17] = 2;
            }),
            ControlError::Service(ServiceError::ModeNotAllowed),
            STATUS_INVALID_PARAMETER,
        ),
    ];
    for (name, f, err, st) in cases {
        let mut b = add.clone();
        f(&mut b);
        assert_eq!(SetConfig::decode(&b), Err(err), "{name}");
        let mut m = MockDriver::new(1);
        assert_eq!(
            call(&mut m, IOCTL_WSKECHO_SET_CONFIG, &b, 0).0,
            st,
            "{name}"
        );
        assert_eq!(m.config, Config::default(), "{name} changed the config");
    }
    // Limits: out of range, non power of two ring, per-connection above total, bad flags.
    let lim = enc(|b| SetConfig::SetLimits(Limits::default()).encode(b));
    // limits at 16: max_connections 16, per-conn 20, total 24, ring 28, ..., disconnect 40,
    // idle 44, progress 48, retain 52, flags 56; then counts, reserved, CIDRs.
    let flags = 16 + LIMITS_LEN - 4;
    let counts = 16 + LIMITS_LEN;
    let cidr = counts + 8;
    let limit_cases: Vec<(usize, u32)> = vec![
        (16, 0),
        (16, 70_000),
        (28, 5000),
        (20, 200 << 20),
        (44, 86_400_001),
        (48, 3_600_001),
        (52, 60_001),
        (flags, 1 << 6),
    ];
    for (off, v) in limit_cases {
        let mut b = lim.clone();
        b[off..off + 4].copy_from_slice(&v.to_le_bytes());
        let e = SetConfig::decode(&b).unwrap_err();
        assert!(
            matches!(e, ControlError::Limit(_) | ControlError::Reserved),
            "{off} {v}: {e:?}"
        );
        assert_eq!(e.ntstatus(), STATUS_INVALID_PARAMETER);
    }
    // Counts beyond capacity, and counts that disagree with the length.
    let mut b = lim.clone();
    b[counts..counts + 2].copy_from_slice(&17u16.to_le_bytes());
    assert_eq!(SetConfig::decode(&b), Err(ControlError::OutOfRange));
    let mut b = lim.clone();
    b[counts..counts + 2].copy_from_slice(&3u16.to_le_bytes());
    assert_eq!(SetConfig::decode(&b), Err(ControlError::Short));
    let mut b = lim.clone();
    b[counts..counts + 2].copy_from_slice(&1u16.to_le_bytes());
    assert_eq!(SetConfig::decode(&b), Err(ControlError::Long));
    // Empty allow-list refused; CIDR with host bits refused.
    let mut b = lim.clone();
    b[counts..counts + 2].copy_from_slice(&0u16.to_le_bytes());
    b.truncate(b.len() - 40);
    set_len(&mut b);
    assert_eq!(
        SetConfig::decode(&b),
        Err(ControlError::Limit(
            control::config::LimitError::EmptyAllowList
        ))
    );
    let mut b = lim.clone();
    b[cidr + 2] = 8; // first CIDR 0.0.0.0/8 is fine...
    assert!(SetConfig::decode(&b).is_ok());
    b[cidr + 4] = 10; // ...10.0.0.0/8 too...
    assert!(SetConfig::decode(&b).is_ok());
    b[cidr + 5] = 1; // ...10.1.0.0/8 has host bits.
    assert_eq!(SetConfig::decode(&b), Err(ControlError::BadAddress));
    // Limits op carrying services is refused.
    let mut c = Config::default();
    c.limits.max_connections = 5;
    let mut b = enc(|b| SetConfig::Replace(c).encode(b));
    b[8] = 4;
    assert_eq!(SetConfig::decode(&b), Err(ControlError::OutOfRange));
}

/// Limits with the three ABI-3 timeouts away from their defaults (and from each other).
fn timeouts() -> Limits {
    let mut l = Limits::default();
    l.idle_timeout_ms = 86_400_000;
    l.progress_timeout_ms = 0;
    l.retain_timeout_ms = 12_345;
    l
}

#[test]
fn abi3_timeouts_round_trip() {
    let l = timeouts();
    assert_ne!(l, Limits::default());
    // Encoder and decoder, both set-config forms and the config response.
    let sl = SetConfig::SetLimits(l.clone());
    assert_eq!(SetConfig::decode(&enc(|b| sl.encode(b))), Ok(sl.clone()));
    let c = Config {
        limits: l.clone(),
        ..Config::default()
    };
    let rep = SetConfig::Replace(c.clone());
    assert_eq!(SetConfig::decode(&enc(|b| rep.encode(b))), Ok(rep.clone()));
    assert_eq!(
        decode_config_response(&enc(|b| encode_config_response(&c, b))),
        Ok(c.clone())
    );
    // Through dispatch: set, then get back.
    let mut m = MockDriver::new(1);
    let (s, _) = call(&mut m, IOCTL_WSKECHO_SET_CONFIG, &enc(|b| sl.encode(b)), 0);
    assert_eq!(s, STATUS_SUCCESS);
    let get = enc(|b| encode_empty_request(Kind::ConfigGetRequest, b));
    let (s, b) = call(&mut m, IOCTL_WSKECHO_GET_CONFIG, &get, MAX_OUTPUT_BYTES);
    assert_eq!(s, STATUS_SUCCESS);
    let got = decode_config_response(&b).unwrap().limits;
    assert_eq!(
        (
            got.idle_timeout_ms,
            got.progress_timeout_ms,
            got.retain_timeout_ms
        ),
        (86_400_000, 0, 12_345)
    );
    assert_eq!(got, l);
}

/// An ABI-2 set-config (32-byte limits block: seven u32s and flags) is refused, never read as
/// an ABI-3 one: with its own version by STATUS_REVISION_MISMATCH, and even under the current
/// version by the length check; the configuration is unchanged either way.
#[test]
fn abi2_limits_block_is_refused() {
    const OLD_LIMITS_LEN: usize = 32;
    assert_eq!(LIMITS_LEN, OLD_LIMITS_LEN + 12);
    for l in [Limits::default(), timeouts()] {
        let new = enc(|b| SetConfig::SetLimits(l).encode(b));
        // Drop idle/progress/retain (bytes 28..40 of the limits block, after the 7th u32).
        let cut = 16 + 7 * 4;
        let mut old = [&new[..cut], &new[cut + 12..]].concat();
        assert_eq!(old.len(), new.len() - 12);
        set_len(&mut old);
        // Same version: the old body does not fit the new layout.
        let e = SetConfig::decode(&old).unwrap_err();
        assert!(
            matches!(e, ControlError::Short | ControlError::Long),
            "{e:?}"
        );
        assert_eq!(e.ntstatus(), STATUS_INFO_LENGTH_MISMATCH);
        // As an ABI-2 client sends it.
        old[..2].copy_from_slice(&2u16.to_le_bytes());
        assert_eq!(SetConfig::decode(&old), Err(ControlError::Version));
        assert_eq!(ControlError::Version.to_string(), "unsupported ABI version");
        let mut m = MockDriver::new(1);
        let (s, _) = call(&mut m, IOCTL_WSKECHO_SET_CONFIG, &old, 0);
        assert_eq!(s, STATUS_REVISION_MISMATCH);
        assert_eq!(m.config, Config::default());
    }
}

#[test]
fn load_jobs() {
    let mut m = MockDriver::new(1);
    let st = enc(|b| encode_empty_request(Kind::LoadStatusRequest, b));
    let (s, b) = call(
        &mut m,
        IOCTL_WSKECHO_LOAD_STATUS,
        &st,
        LOAD_STATUS_RESPONSE_LEN,
    );
    assert_eq!(s, STATUS_SUCCESS);
    assert_eq!(decode_load_status(&b).unwrap(), LoadStatus::IDLE);
    malformed_common(IOCTL_WSKECHO_LOAD_STATUS, &st);

    let start = enc(|b| encode_load_start(&job(), b));
    // Output too small: refused before the job starts.
    assert_eq!(
        call(
            &mut m,
            IOCTL_WSKECHO_LOAD_START,
            &start,
            LOAD_START_RESPONSE_LEN - 1
        )
        .0,
        STATUS_BUFFER_TOO_SMALL
    );
    assert_eq!(m.status.state, JobState::Idle);
    let (s, b) = call(&mut m, IOCTL_WSKECHO_LOAD_START, &start, 64);
    assert_eq!(s, STATUS_SUCCESS);
    let id = decode_load_started(&b).unwrap();
    assert_eq!(id, 1);
    assert_eq!(
        call(&mut m, IOCTL_WSKECHO_LOAD_START, &start, 64).0,
        STATUS_DEVICE_BUSY
    );
    m.tick(Counter::BytesIn, 5);
    let (_, b) = call(
        &mut m,
        IOCTL_WSKECHO_LOAD_STATUS,
        &st,
        LOAD_STATUS_RESPONSE_LEN,
    );
    let ls = decode_load_status(&b).unwrap();
    assert_eq!(
        (ls.state, ls.job, ls.messages_sent),
        (JobState::Running, Some(job()), 5)
    );
    let stop_other = enc(|b| encode_load_stop(id + 1, b));
    assert_eq!(
        call(&mut m, IOCTL_WSKECHO_LOAD_STOP, &stop_other, 0).0,
        STATUS_INVALID_DEVICE_STATE
    );
    let stop = enc(|b| encode_load_stop(id, b));
    assert_eq!(
        call(&mut m, IOCTL_WSKECHO_LOAD_STOP, &stop, 0).0,
        STATUS_SUCCESS
    );
    assert_eq!(
        call(&mut m, IOCTL_WSKECHO_LOAD_STOP, &stop, 0).0,
        STATUS_INVALID_DEVICE_STATE
    );
    malformed_common(IOCTL_WSKECHO_LOAD_STOP, &stop);
    malformed_common(IOCTL_WSKECHO_LOAD_START, &start);

    // Field errors. Layout: header 8, family 8..10, reserved 10..12, addr 12..28, port 28..30,
    // proto 30, pattern 31, conns 32..36, size 36..40, duration 40..44, rate 44..48,
    // flows 48..52 (ABI 4), reserved 52..56.
    let bad: Vec<(&str, usize, Vec<u8>, ControlError)> = vec![
        ("port 0", 28, vec![0, 0], ControlError::BadPort),
        ("family 99", 8, vec![99, 0], ControlError::BadFamily),
        (
            "unspecified target",
            12,
            vec![0, 0, 0, 0],
            ControlError::BadAddress,
        ),
        (
            "multicast target",
            12,
            vec![224, 0, 0, 1],
            ControlError::BadAddress,
        ),
        ("0 conns", 32, vec![0, 0, 0, 0], ControlError::OutOfRange),
        (
            "too many conns",
            32,
            5000u32.to_le_bytes().to_vec(),
            ControlError::OutOfRange,
        ),
        ("size 0", 36, vec![0, 0, 0, 0], ControlError::OutOfRange),
        (
            "size 2 MiB",
            36,
            (2u32 << 20).to_le_bytes().to_vec(),
            ControlError::OutOfRange,
        ),
        ("duration 0", 40, vec![0, 0, 0, 0], ControlError::OutOfRange),
        (
            "rate",
            44,
            u32::MAX.to_le_bytes().to_vec(),
            ControlError::OutOfRange,
        ),
        ("proto", 30, vec![2], ControlError::BadEnum),
        ("pattern", 31, vec![2], ControlError::BadEnum),
        // The job is TCP: its connections are its flows.
        (
            "flows on tcp",
            48,
            vec![2, 0, 0, 0],
            ControlError::OutOfRange,
        ),
        ("reserved", 52, vec![1, 0, 0, 0], ControlError::Reserved),
    ];
    for (name, off, bytes, err) in bad {
        let mut b = start.clone();
        b[off..off + bytes.len()].copy_from_slice(&bytes);
        assert_eq!(decode_load_start(&b), Err(err), "{name}");
        let mut m = MockDriver::new(1);
        assert_eq!(
            call(&mut m, IOCTL_WSKECHO_LOAD_START, &b, 64).0,
            err.ntstatus(),
            "{name}"
        );
        assert_eq!(m.status.state, JobState::Idle, "{name} started a job");
    }
    // UDP message size limit is 65507.
    let mut j = job();
    j.proto = Proto::Udp;
    j.message_size = 65_507;
    assert!(j.validate().is_ok());
    j.message_size = 65_508;
    assert_eq!(j.validate(), Err(ControlError::OutOfRange));
    j.message_size = 64;
    j.flows = MAX_LOAD_FLOWS;
    assert!(j.validate().is_ok());
    j.flows = MAX_LOAD_FLOWS + 1;
    assert_eq!(j.validate(), Err(ControlError::OutOfRange));
    j.flows = 3;
    // IPv6 target roundtrips.
    j.message_size = 1;
    j.target = "::1".parse().unwrap();
    assert_eq!(decode_load_start(&enc(|b| encode_load_start(&j, b))), Ok(j));
}

#[test]
fn stats_request_malformed() {
    let good = enc(|b| {
        StatsRequest {
            per_cpu: true,
            per_service: true,
        }
        .encode(b)
    });
    malformed_common(IOCTL_WSKECHO_QUERY_STATS, &good);
    let mut b = good.clone();
    b[8] = 4;
    assert_eq!(StatsRequest::decode(&b), Err(ControlError::Reserved));
    let mut b = good.clone();
    b[15] = 1;
    assert_eq!(StatsRequest::decode(&b), Err(ControlError::Reserved));
}

/// Invariant 5: every byte of every response is written by its encoder (no stale buffer
/// contents, hence no kernel pointer or pool garbage), and responses re-encode to the same bytes.
#[test]
fn responses_write_every_byte_and_roundtrip() {
    let mut m = MockDriver::new(4);
    m.tick(Counter::BytesOut, u64::MAX - 3);
    m.load_start(&job()).unwrap();
    let reqs: Vec<(u32, Vec<u8>)> = vec![
        (IOCTL_WSKECHO_QUERY_VERSION, vec![]),
        (
            IOCTL_WSKECHO_QUERY_STATS,
            enc(|b| {
                StatsRequest {
                    per_cpu: true,
                    per_service: true,
                }
                .encode(b)
            }),
        ),
        (
            IOCTL_WSKECHO_GET_CONFIG,
            enc(|b| encode_empty_request(Kind::ConfigGetRequest, b)),
        ),
        (
            IOCTL_WSKECHO_LOAD_STATUS,
            enc(|b| encode_empty_request(Kind::LoadStatusRequest, b)),
        ),
    ];
    for (code, input) in reqs {
        let mut a = vec![0x00u8; MAX_OUTPUT_BYTES];
        let mut b = vec![0xFFu8; MAX_OUTPUT_BYTES];
        let (sa, na) = dispatch(&mut m, code, &input, &mut a);
        let (sb, nb) = dispatch(&mut m, code, &input, &mut b);
        assert_eq!((sa, sb), (STATUS_SUCCESS, STATUS_SUCCESS));
        assert_eq!(na, nb);
        assert_eq!(
            a[..na],
            b[..nb],
            "code {code:#x}: some byte was not written by the encoder"
        );
        let mut re = vec![0u8; na];
        let n2 = match code {
            IOCTL_WSKECHO_QUERY_VERSION => VersionInfo::decode(&a[..na]).unwrap().encode(&mut re),
            IOCTL_WSKECHO_GET_CONFIG => {
                encode_config_response(&decode_config_response(&a[..na]).unwrap(), &mut re)
            }
            IOCTL_WSKECHO_LOAD_STATUS => {
                encode_load_status(&decode_load_status(&a[..na]).unwrap(), &mut re)
            }
            _ => {
                StatsView::parse(&a[..na]).unwrap();
                re.copy_from_slice(&a[..na]);
                Ok(na)
            }
        }
        .unwrap();
        assert_eq!(re[..n2], a[..na]);
    }
}

#[test]
fn stats_response_decoder_refuses_malformed_answers() {
    let mut m = MockDriver::new(2);
    let req = enc(|b| {
        StatsRequest {
            per_cpu: true,
            per_service: true,
        }
        .encode(b)
    });
    let (s, good) = call(&mut m, IOCTL_WSKECHO_QUERY_STATS, &req, MAX_OUTPUT_BYTES);
    assert_eq!(s, STATUS_SUCCESS);
    StatsView::parse(&good).unwrap();
    // Layout: header 8, cpu_count 8, service_count 10, counter_count 12, reserved 14, time 16.
    let patch = |off: usize, bytes: &[u8]| {
        let mut b = good.clone();
        b[off..off + bytes.len()].copy_from_slice(bytes);
        StatsView::parse(&b).map(|_| ())
    };
    assert_eq!(
        patch(12, &15u16.to_le_bytes()),
        Err(ControlError::Version),
        "other counter set"
    );
    assert_eq!(
        patch(8, &3u16.to_le_bytes()),
        Err(ControlError::Short),
        "one CPU more than sent"
    );
    assert_eq!(patch(8, &1u16.to_le_bytes()), Err(ControlError::Long));
    assert_eq!(
        patch(8, &2000u16.to_le_bytes()),
        Err(ControlError::OutOfRange)
    );
    assert_eq!(
        patch(10, &17u16.to_le_bytes()),
        Err(ControlError::OutOfRange)
    );
    assert_eq!(patch(14, &[1]), Err(ControlError::Reserved));
    // First service entry after global + 2 CPU blocks: its port set to 0.
    let svc = 24 + 3 * COUNTER_COUNT * 8;
    assert_eq!(patch(svc + 2, &[0, 0]), Err(ControlError::BadPort));
    assert_eq!(patch(svc + 4, &[9, 0]), Err(ControlError::BadFamily));
    let mut short = good[..good.len() - 8].to_vec();
    set_len(&mut short);
    assert_eq!(
        StatsView::parse(&short).map(|_| ()),
        Err(ControlError::Short)
    );
}

/// A stream-socket TCP service travels as bit 7 of its protocol byte; on UDP it is refused.
#[test]
fn stream_service_round_trips_and_udp_stream_is_refused() {
    let lo = "127.0.0.1".parse().unwrap();
    let s = Service::new(Proto::Tcp, 7100, Mode::Echo, lo).with_stream(true);
    let add = SetConfig::AddService(s);
    let b = enc(|b| add.encode(b));
    assert_eq!(SetConfig::decode(&b), Ok(add.clone()));
    let mut bad = SetConfig::AddService(Service::new(Proto::Udp, 7100, Mode::Echo, lo));
    let mut b = enc(|b| bad.encode(b));
    let at = b.len() - SERVICE_LEN;
    b[at] |= SERVICE_PROTO_STREAM;
    assert_eq!(
        SetConfig::decode(&b),
        Err(ControlError::Service(ServiceError::StreamNotTcp))
    );
    bad = SetConfig::AddService(Service::new(Proto::Tcp, 7100, Mode::Echo, lo));
    assert_ne!(SetConfig::decode(&enc(|b| bad.encode(b))), Ok(add));
}
