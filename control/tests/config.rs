//! Configuration defaults and the registry mapping.
#![allow(
    clippy::many_single_char_names,
    clippy::field_reassign_with_default,
    clippy::type_complexity
)]
use control::config::*;
use std::net::IpAddr;

fn utf16z(s: &str) -> Vec<u8> {
    let mut v: Vec<u8> = s.encode_utf16().flat_map(u16::to_le_bytes).collect();
    v.extend_from_slice(&[0, 0]);
    v
}

fn multi_sz(items: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    for i in items {
        v.extend(utf16z(i));
    }
    v.extend_from_slice(&[0, 0]);
    v
}

#[test]
fn defaults_are_the_documented_services() {
    let c = Config::default();
    let got: Vec<String> = c
        .services
        .as_slice()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        got,
        [
            "echo,tcp,7007,127.0.0.1",
            "echo,udp,7007,127.0.0.1",
            "discard,tcp,7009,127.0.0.1",
            "discard,udp,7009,127.0.0.1",
            "source,tcp,7019,127.0.0.1",
            "sockperf,tcp,11111,127.0.0.1",
            "sockperf,udp,11111,127.0.0.1",
        ]
    );
    c.validate().unwrap();
    assert_eq!(Services::from_slice(&DEFAULT_SERVICES).unwrap(), c.services);
}

#[test]
fn empty_registry_gives_defaults() {
    let (c, e) = ConfigBuilder::new().finish();
    assert_eq!(c, Config::default());
    assert!(e.is_none());
}

#[test]
fn services_value_parses_v4_and_v6() {
    let mut b = ConfigBuilder::new();
    b.apply(
        "Services",
        REG_MULTI_SZ,
        &multi_sz(&["echo,udp,9000,::1", "discard, TCP ,9001,0.0.0.0"]),
    )
    .unwrap();
    let (c, _) = b.finish();
    let s = c.services.as_slice();
    assert_eq!(s.len(), 2);
    assert_eq!(
        s[0],
        Service::new(Proto::Udp, 9000, Mode::Echo, "::1".parse().unwrap())
    );
    assert_eq!(
        s[1],
        Service::new(Proto::Tcp, 9001, Mode::Discard, "0.0.0.0".parse().unwrap())
    );
}

#[test]
fn invalid_values_name_themselves_and_keep_defaults() {
    let cases: Vec<(&str, u32, Vec<u8>, ConfigErrorKind)> = vec![
        (
            "Services",
            REG_SZ,
            utf16z("echo,tcp,1,127.0.0.1"),
            ConfigErrorKind::WrongType {
                expected: REG_MULTI_SZ,
                found: REG_SZ,
            },
        ),
        (
            "Services",
            REG_MULTI_SZ,
            multi_sz(&["echo,tcp,0,127.0.0.1"]),
            ConfigErrorKind::Service(ServiceError::PortZero),
        ),
        (
            "Services",
            REG_MULTI_SZ,
            multi_sz(&["echo,tcp,70000,127.0.0.1"]),
            ConfigErrorKind::Syntax { index: 0 },
        ),
        (
            "Services",
            REG_MULTI_SZ,
            multi_sz(&["echo,tcp,7,127.0.0.1", "bogus"]),
            ConfigErrorKind::Syntax { index: 1 },
        ),
        (
            "Services",
            REG_MULTI_SZ,
            multi_sz(&["source,udp,7,127.0.0.1"]),
            ConfigErrorKind::Service(ServiceError::ModeNotAllowed),
        ),
        (
            "Services",
            REG_MULTI_SZ,
            multi_sz(&["echo,tcp,7,0.0.0.0", "discard,tcp,7,127.0.0.1"]),
            ConfigErrorKind::Service(ServiceError::Conflict),
        ),
        (
            "Services",
            REG_MULTI_SZ,
            multi_sz(&["echo,tcp,7,300.1.1.1"]),
            ConfigErrorKind::Syntax { index: 0 },
        ),
        (
            "Services",
            REG_MULTI_SZ,
            vec![b'e', 0, 0xe9, 0, 0, 0],
            ConfigErrorKind::BadText,
        ),
        (
            "Services",
            REG_MULTI_SZ,
            vec![b'e', 0, 0],
            ConfigErrorKind::BadLength,
        ),
        (
            "MaxConnections",
            REG_DWORD,
            0u32.to_le_bytes().to_vec(),
            ConfigErrorKind::Limit(LimitError::OutOfRange {
                value: "MaxConnections",
                min: 1,
                max: 65536,
            }),
        ),
        (
            "MaxConnections",
            REG_DWORD,
            vec![1, 0, 0],
            ConfigErrorKind::BadLength,
        ),
        (
            "SendRingBytes",
            REG_DWORD,
            5000u32.to_le_bytes().to_vec(),
            ConfigErrorKind::Limit(LimitError::NotPowerOfTwo),
        ),
        (
            "AllowedSources",
            REG_MULTI_SZ,
            multi_sz(&["10.0.0.1/8"]),
            ConfigErrorKind::Syntax { index: 0 },
        ),
        (
            "AllowedSources",
            REG_MULTI_SZ,
            multi_sz(&["10.0.0.0/33"]),
            ConfigErrorKind::Syntax { index: 0 },
        ),
        (
            "AllowedSources",
            REG_MULTI_SZ,
            multi_sz(&[]),
            ConfigErrorKind::Limit(LimitError::EmptyAllowList),
        ),
    ];
    for (name, ty, data, kind) in cases {
        let mut b = ConfigBuilder::new();
        let e = b.apply(name, ty, &data).unwrap_err();
        assert_eq!(e.value, name, "{name}");
        assert_eq!(e.kind, kind, "{name} {data:?}");
        let text = e.to_string();
        assert!(
            text.contains(name) && text.ends_with("default used"),
            "{text}"
        );
        assert_eq!(b.finish().0, Config::default(), "{name} changed the config");
    }
}

#[test]
fn dwords_apply_and_cross_rule_falls_back() {
    let mut b = ConfigBuilder::new();
    b.apply("MaxConnections", REG_DWORD, &10u32.to_le_bytes())
        .unwrap();
    b.apply("maxretainedbytes", REG_DWORD, &100u32.to_le_bytes())
        .unwrap();
    let (c, e) = b.finish();
    assert_eq!(c.limits.max_connections, 10);
    let e = e.unwrap();
    assert_eq!(e.value, "MaxRetainedBytesPerConnection");
    assert_eq!(c.limits.max_retained_total, MAX_RETAINED_TOTAL.default);
    c.validate().unwrap();
}

#[test]
fn unknown_value_is_refused() {
    let e = ConfigBuilder::new()
        .apply("Nope", REG_DWORD, &[0; 4])
        .unwrap_err();
    assert_eq!(e.kind, ConfigErrorKind::UnknownValue);
}

#[test]
fn allow_list_matching() {
    let mut l = Limits::default();
    assert!(l.source_allowed("8.8.8.8".parse().unwrap()));
    l.set_allowed_sources(&[
        Cidr::parse("10.1.0.0/16").unwrap(),
        Cidr::parse("fe80::/10").unwrap(),
    ])
    .unwrap();
    let ok = |s: &str| l.source_allowed(s.parse::<IpAddr>().unwrap());
    assert!(ok("10.1.2.3"));
    assert!(ok("::ffff:10.1.9.9"), "v4-mapped compared as v4");
    assert!(!ok("10.2.0.1"));
    assert!(ok("fe80::1"));
    assert!(!ok("::1"));
    assert_eq!(
        Cidr::parse("127.0.0.1").unwrap().to_string(),
        "127.0.0.1/32"
    );
}

#[test]
fn remove_and_add_services() {
    let mut s = Config::default().services;
    let lo: IpAddr = "127.0.0.1".parse().unwrap();
    assert!(s.remove(Proto::Tcp, 7009, lo));
    assert!(!s.remove(Proto::Tcp, 7009, lo));
    assert_eq!(s.len(), 6);
    s.add(Service::new(Proto::Tcp, 7009, Mode::Echo, lo))
        .unwrap();
    assert_eq!(
        s.add(Service::new(Proto::Tcp, 7009, Mode::Echo, lo)),
        Err(ServiceError::Conflict)
    );
    for p in 1..=9 {
        s.add(Service::new(Proto::Udp, p, Mode::Echo, lo)).unwrap();
    }
    assert_eq!(s.len(), MAX_SERVICES);
    assert_eq!(
        s.add(Service::new(Proto::Udp, 100, Mode::Echo, lo)),
        Err(ServiceError::TooMany)
    );
}

/// IdleTimeoutMs, ProgressTimeoutMs, RetainTimeoutMs: documented defaults; 0 ("never"), the
/// maximum and a value between apply; one past the maximum is refused with the value's name
/// and range, and its default stays.
#[test]
fn timeout_values_parse_and_fall_back() {
    type Field = fn(&Limits) -> u32;
    type FieldMut = fn(&mut Limits) -> &mut u32;
    let d = Limits::default();
    assert_eq!(
        (
            d.idle_timeout_ms,
            d.progress_timeout_ms,
            d.retain_timeout_ms
        ),
        (300_000, 30_000, 1_000)
    );
    let cases: [(&str, u32, u32, Field, FieldMut); 3] = [
        (
            "IdleTimeoutMs",
            86_400_000,
            300_000,
            |l| l.idle_timeout_ms,
            |l| &mut l.idle_timeout_ms,
        ),
        (
            "ProgressTimeoutMs",
            3_600_000,
            30_000,
            |l| l.progress_timeout_ms,
            |l| &mut l.progress_timeout_ms,
        ),
        (
            "RetainTimeoutMs",
            60_000,
            1_000,
            |l| l.retain_timeout_ms,
            |l| &mut l.retain_timeout_ms,
        ),
    ];
    for (name, max, default, field, field_mut) in cases {
        for v in [0, 1, 7_777, max] {
            let mut b = ConfigBuilder::new();
            b.apply(name, REG_DWORD, &v.to_le_bytes()).unwrap();
            let (c, e) = b.finish();
            assert_eq!(e, None, "{name}={v}");
            assert_eq!(field(&c.limits), v, "{name}={v}");
            assert_eq!(c.limits.dword(name), Some(v));
        }
        // Case-insensitive, like every registry name.
        let mut b = ConfigBuilder::new();
        b.apply(&name.to_ascii_lowercase(), REG_DWORD, &5u32.to_le_bytes())
            .unwrap();
        assert_eq!(field(&b.finish().0.limits), 5);

        for bad in [max + 1, u32::MAX] {
            let mut b = ConfigBuilder::new();
            let e = b.apply(name, REG_DWORD, &bad.to_le_bytes()).unwrap_err();
            assert_eq!(e.value, name);
            assert_eq!(
                e.kind,
                ConfigErrorKind::Limit(LimitError::OutOfRange {
                    value: name,
                    min: 0,
                    max
                })
            );
            assert_eq!(
                e.to_string(),
                format!("registry value {name}: out of range 0..={max}; default used")
            );
            let (c, fin) = b.finish();
            assert_eq!(fin, None);
            assert_eq!(field(&c.limits), default, "{name}={bad}");
            assert_eq!(c, Config::default());
        }
        // A REG_SZ where a REG_DWORD belongs is refused too.
        let e = ConfigBuilder::new()
            .apply(name, REG_SZ, &utf16z("5"))
            .unwrap_err();
        assert_eq!(
            e.kind,
            ConfigErrorKind::WrongType {
                expected: REG_DWORD,
                found: REG_SZ
            }
        );
        // And Limits::validate holds the same range.
        let mut l = Limits::default();
        assert!(l.set_by_name(name, max + 1).is_err());
        l.set_by_name(name, max).unwrap();
        l.validate().unwrap();
        *field_mut(&mut l) = max + 1;
        assert_eq!(
            l.validate(),
            Err(LimitError::OutOfRange {
                value: name,
                min: 0,
                max
            })
        );
    }
}

#[test]
fn remove_keeps_the_order_of_the_others() {
    let mut s = Config::default().services;
    let lo: IpAddr = "127.0.0.1".parse().unwrap();
    assert!(s.remove(Proto::Udp, 7007, lo));
    let mut want = DEFAULT_SERVICES.to_vec();
    want.remove(1);
    assert_eq!(s.as_slice(), &want[..]);
    assert_eq!(s, Services::from_slice(&want).unwrap());
}

#[test]
fn allow_list_bounds_and_equality() {
    let cidrs: Vec<Cidr> = (0..=MAX_ALLOWED_SOURCES)
        .map(|i| Cidr::parse(&format!("10.{i}.0.0/16")).unwrap())
        .collect();
    let mut l = Limits::default();
    assert_eq!(
        l.set_allowed_sources(&cidrs),
        Err(LimitError::TooManySources)
    );
    assert_eq!(l, Limits::default(), "a refused list changes nothing");
    l.set_allowed_sources(&cidrs[..MAX_ALLOWED_SOURCES])
        .unwrap();
    assert_eq!(l.allowed_sources(), &cidrs[..MAX_ALLOWED_SOURCES]);
    assert!(l.validate().is_ok());
    // Shrinking leaves nothing of the longer list behind: equal to one set directly.
    l.set_allowed_sources(&cidrs[..1]).unwrap();
    let mut m = Limits::default();
    m.set_allowed_sources(&cidrs[..1]).unwrap();
    assert_eq!(l, m);
    assert_eq!(l.allowed_sources(), &cidrs[..1]);
    assert!(l.source_allowed("10.0.1.2".parse().unwrap()));
    assert!(!l.source_allowed("10.1.1.2".parse().unwrap()));
}

/// A TCP service may listen on a stream socket: a fifth registry field `stream` (or `listen`,
/// the default); shown back the same way; refused on UDP.
#[test]
fn stream_services_parse_show_and_refuse_udp() {
    let lo: IpAddr = "127.0.0.1".parse().unwrap();
    let s = Service::parse_entry("echo,tcp,7007,127.0.0.1,stream").unwrap();
    assert_eq!(
        s,
        Service::new(Proto::Tcp, 7007, Mode::Echo, lo).with_stream(true)
    );
    assert_eq!(s.to_string(), "echo,tcp,7007,127.0.0.1,stream");
    assert_eq!(Service::parse_entry(&s.to_string()), Some(s));
    let l = Service::parse_entry("echo,tcp,7007,127.0.0.1, LISTEN").unwrap();
    assert!(!l.stream);
    assert_eq!(l.to_string(), "echo,tcp,7007,127.0.0.1");
    assert_eq!(
        Service::parse_entry("echo,tcp,7007,127.0.0.1,streams"),
        None
    );
    assert_eq!(
        Service::parse_entry("echo,tcp,7007,127.0.0.1,stream,x"),
        None
    );
    let u = Service::parse_entry("echo,udp,7007,127.0.0.1,stream").unwrap();
    assert_eq!(u.validate(), Err(ServiceError::StreamNotTcp));
    // A stream and a listening service on one port conflict like any two.
    assert!(s.conflicts_with(&l));
}
