//! Property tests (run by `cargo test -p control`): random bytes never panic and never read
#![allow(
    clippy::many_single_char_names,
    clippy::field_reassign_with_default,
    clippy::type_complexity
)]
//! past the slice; encode→decode roundtrips; malformed variants of valid messages give their
//! specific errors.
use control::config::{
    Cidr, Config, Limits, Mode, Proto, Service, Services, DWORD_SPECS, MAX_SERVICES,
};
use control::ioctl::status::*;
use control::ioctl::*;
use control::mock::MockDriver;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn arb_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
    ]
}

fn arb_service() -> impl Strategy<Value = Service> {
    (any::<bool>(), 0u8..4, 1u16.., arb_ip()).prop_map(|(udp, m, port, bind)| {
        let proto = if udp { Proto::Udp } else { Proto::Tcp };
        let mut mode = Mode::from_u8(m).unwrap();
        if !mode.allowed_on(proto) {
            mode = Mode::Echo;
        }
        Service::new(proto, port, mode, bind)
    })
}

fn arb_cidr() -> impl Strategy<Value = Cidr> {
    (arb_ip(), any::<u8>()).prop_map(|(a, p)| match a {
        IpAddr::V4(v) => {
            let p = p % 33;
            let mask = if p == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(p))
            };
            Cidr::new(IpAddr::V4(Ipv4Addr::from(u32::from(v) & mask)), p).unwrap()
        }
        IpAddr::V6(v) => {
            let p = p % 129;
            let mask = if p == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(p))
            };
            Cidr::new(IpAddr::V6(Ipv6Addr::from(u128::from(v) & mask)), p).unwrap()
        }
    })
}

fn arb_limits() -> impl Strategy<Value = Limits> {
    (
        proptest::array::uniform::<_, { DWORD_SPECS.len() }>(any::<u32>()),
        proptest::collection::vec(arb_cidr(), 1..=16),
    )
        .prop_map(|(raw, cidrs)| {
            let mut l = Limits::default();
            for (spec, r) in DWORD_SPECS.iter().zip(raw) {
                let mut v = spec.min + r % (spec.max - spec.min + 1);
                if spec.name == "SendRingBytes" {
                    v = v.next_power_of_two().min(spec.max);
                }
                l.set_by_name(spec.name, v).unwrap();
            }
            if l.max_retained_per_conn > l.max_retained_total {
                l.max_retained_per_conn = l.max_retained_total;
            }
            l.set_allowed_sources(&cidrs).unwrap();
            l.validate().unwrap();
            l
        })
}

fn arb_config() -> impl Strategy<Value = Config> {
    (
        proptest::collection::vec(arb_service(), 0..=MAX_SERVICES + 4),
        arb_limits(),
    )
        .prop_map(|(svcs, limits)| {
            let mut services = Services::empty();
            for s in svcs {
                let _ = services.add(s);
            }
            Config { services, limits }
        })
}

fn arb_job() -> impl Strategy<Value = LoadJob> {
    (
        arb_ip(),
        1u16..,
        any::<bool>(),
        any::<bool>(),
        1u32..=MAX_LOAD_CONNECTIONS,
        1u32..=MAX_UDP_MESSAGE,
        1u32..=MAX_LOAD_DURATION_MS,
        0u32..=MAX_LOAD_RATE,
        0u32..=MAX_LOAD_FLOWS,
    )
        .prop_filter_map("usable target", |(t, port, udp, src, c, s, d, r, f)| {
            let j = LoadJob {
                target: t,
                port,
                proto: if udp { Proto::Udp } else { Proto::Tcp },
                pattern: if src {
                    LoadPattern::Source
                } else {
                    LoadPattern::Echo
                },
                connections: c,
                message_size: s,
                duration_ms: d,
                rate: r,
                stream: false,
                // A TCP job's connections are its flows: only UDP jobs name a count.
                flows: if udp { f } else { 0 },
            };
            j.validate().ok().map(|()| j)
        })
}

fn arb_set_config() -> impl Strategy<Value = SetConfig> {
    prop_oneof![
        arb_config().prop_map(SetConfig::Replace),
        arb_service().prop_map(SetConfig::AddService),
        arb_service().prop_map(SetConfig::RemoveService),
        arb_limits().prop_map(SetConfig::SetLimits),
    ]
}

fn enc(f: impl FnOnce(&mut [u8]) -> Result<usize, ControlError>) -> Vec<u8> {
    let mut b = vec![0u8; MAX_INPUT_BYTES.max(MAX_OUTPUT_BYTES)];
    let n = f(&mut b).unwrap();
    b.truncate(n);
    b
}

/// Every decoder and `dispatch` on `b`, summarised so two runs can be compared.
fn decode_all(b: &[u8]) -> String {
    let mut m = MockDriver::new(2);
    let mut out = vec![0u8; 4096];
    let d: Vec<(i32, usize)> = ALL_CODES
        .iter()
        .map(|&c| dispatch(&mut m, c, b, &mut out))
        .collect();
    format!(
        "{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{:?}{d:?}",
        SetConfig::decode(b),
        decode_config_response(b),
        decode_load_start(b),
        decode_load_stop(b),
        decode_load_status(b),
        decode_load_started(b),
        StatsRequest::decode(b),
        StatsView::parse(b).map(|v| (v.cpu_count(), v.service_count(), v.global())),
        VersionInfo::decode(b),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// No panic on arbitrary bytes, and the result depends only on the bytes inside the
    /// slice (trailing memory differs between the two runs: reading it would show).
    #[test]
    fn random_bytes_never_panic_nor_over_read(b in proptest::collection::vec(any::<u8>(), 0..1200), tail in any::<u8>()) {
        let mut x = b.clone();
        x.extend(std::iter::repeat_n(tail, 64));
        let mut y = b.clone();
        y.extend(std::iter::repeat_n(!tail, 64));
        prop_assert_eq!(decode_all(&x[..b.len()]), decode_all(&y[..b.len()]));
    }

    /// Random bytes behind a valid header reach the body decoders.
    #[test]
    fn random_bodies_after_valid_header(kind in 1u16..=11, body in proptest::collection::vec(any::<u8>(), 0..900)) {
        let mut b = vec![0u8; 8];
        b[0..2].copy_from_slice(&ABI_VERSION.to_le_bytes());
        b[2..4].copy_from_slice(&kind.to_le_bytes());
        b.extend(&body);
        let n = b.len() as u32;
        b[4..8].copy_from_slice(&n.to_le_bytes());
        decode_all(&b);
    }

    #[test]
    fn set_config_roundtrip(c in arb_set_config()) {
        let b = enc(|o| c.encode(o));
        prop_assert_eq!(b.len(), c.encoded_len());
        prop_assert_eq!(SetConfig::decode(&b), Ok(c));
    }

    #[test]
    fn config_response_roundtrip(c in arb_config()) {
        let b = enc(|o| encode_config_response(&c, o));
        prop_assert_eq!(decode_config_response(&b), Ok(c));
    }

    #[test]
    fn load_roundtrip(j in arb_job(), id in any::<u32>(), st in 0u32..5, n in any::<[u64; 5]>(), small in any::<[u32; 4]>(), some in any::<bool>()) {
        prop_assert_eq!(decode_load_start(&enc(|o| encode_load_start(&j, o))), Ok(j));
        prop_assert_eq!(decode_load_stop(&enc(|o| encode_load_stop(id, o))), Ok(id));
        prop_assert_eq!(decode_load_started(&enc(|o| encode_load_started(id, o))), Ok(id));
        let s = LoadStatus {
            job_id: id,
            state: JobState::from_u32(st).unwrap(),
            last_status: small[0] as i32,
            elapsed_ms: small[1],
            connections_open: small[2],
            connect_failures: small[3],
            messages_sent: n[0],
            messages_received: n[1],
            bytes_sent: n[2],
            bytes_received: n[3],
            verify_failures: n[4],
            job: some.then_some(j),
        };
        prop_assert_eq!(decode_load_status(&enc(|o| encode_load_status(&s, o))), Ok(s));
    }

    /// Truncated (header fixed or not), extended, wrong-version and wrong-kind variants of
    /// valid requests give their specific errors.
    #[test]
    fn malformed_requests(c in arb_set_config(), j in arb_job(), cut in 1usize..64, extra in 1usize..64, ver in any::<u16>(), which in 0usize..3) {
        let good = match which {
            0 => enc(|o| c.encode(o)),
            1 => enc(|o| encode_load_start(&j, o)),
            _ => enc(|o| encode_load_stop(7, o)),
        };
        let dec = |b: &[u8]| -> Result<(), ControlError> {
            match which {
                0 => SetConfig::decode(b).map(|_| ()),
                1 => decode_load_start(b).map(|_| ()),
                _ => decode_load_stop(b).map(|_| ()),
            }
        };
        let fix = |b: &mut Vec<u8>| { let n = b.len() as u32; b[4..8].copy_from_slice(&n.to_le_bytes()); };
        if cut <= good.len() - 8 {
            let mut b = good[..good.len() - cut].to_vec();
            prop_assert_eq!(dec(&b), Err(ControlError::LengthField));
            fix(&mut b);
            let e = dec(&b).unwrap_err();
            // A Replace/SetLimits body is sized by its counts: cutting it is Short.
            prop_assert_eq!(e, ControlError::Short);
            prop_assert_eq!(e.ntstatus(), STATUS_INFO_LENGTH_MISMATCH);
        }
        let mut b = good.clone();
        b.extend(std::iter::repeat_n(0u8, extra));
        prop_assert_eq!(dec(&b), Err(ControlError::LengthField));
        fix(&mut b);
        prop_assert_eq!(dec(&b), Err(ControlError::Long));
        if ver != ABI_VERSION {
            let mut b = good.clone();
            b[0..2].copy_from_slice(&ver.to_le_bytes());
            prop_assert_eq!(dec(&b), Err(ControlError::Version));
            prop_assert_eq!(ControlError::Version.ntstatus(), STATUS_REVISION_MISMATCH);
        }
        let mut b = good.clone();
        b[2] = b[2].wrapping_add(1 + (ver % 200) as u8);
        prop_assert_eq!(dec(&b), Err(ControlError::Kind));
    }

    /// Any family other than AF_INET/AF_INET6 in a load target or service is BadFamily;
    /// port 0 is BadPort.
    #[test]
    fn bad_family_and_port(j in arb_job(), fam in any::<u16>(), s in arb_service()) {
        prop_assume!(fam != AF_INET && fam != AF_INET6);
        let mut b = enc(|o| encode_load_start(&j, o));
        b[8..10].copy_from_slice(&fam.to_le_bytes());
        prop_assert_eq!(decode_load_start(&b), Err(ControlError::BadFamily));
        let mut b = enc(|o| encode_load_start(&j, o));
        b[28..30].copy_from_slice(&[0, 0]);
        prop_assert_eq!(decode_load_start(&b), Err(ControlError::BadPort));
        let mut b = enc(|o| SetConfig::AddService(s).encode(o));
        b[20..22].copy_from_slice(&fam.to_le_bytes());
        prop_assert_eq!(SetConfig::decode(&b), Err(ControlError::BadFamily));
        let mut b = enc(|o| SetConfig::AddService(s).encode(o));
        b[18..20].copy_from_slice(&[0, 0]);
        prop_assert_eq!(SetConfig::decode(&b), Err(ControlError::BadPort));
    }
}
