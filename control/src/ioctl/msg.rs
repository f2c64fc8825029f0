//! Request and response layouts other than statistics. Sizes are constants; every decoder
//! checks the exact length before reading and every encoder writes every byte it reports.

use super::wire::{Reader, Writer};
use super::{ControlError, Header, Kind, HEADER_LEN};
use crate::config::{
    Cidr, Config, DwordSpec, Limits, Mode, Proto, Service, Services, DWORD_SPECS,
    MAX_ALLOWED_SOURCES, MAX_SERVICES, U32_LIMIT_COUNT, UDP_DROP_BROADCAST,
    UDP_DROP_PRIVILEGED_PORTS, UDP_DROP_SERVICE_PORTS, UDP_DROP_SPECIAL_SOURCES,
    UDP_RATE_EXEMPT_LOOPBACK, ZERO_COPY,
};
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Windows address family numbers (ws2def.h).
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 23;

/// `family u16, reserved u16, addr [u8; 16]` (IPv4 in the first 4 bytes, the rest zero).
pub const ADDRESS_LEN: usize = 20;
/// `proto u8 (bit 7: stream socket, SERVICE_PROTO_STREAM), mode u8, port u16, address`.
pub const SERVICE_LEN: usize = 4 + ADDRESS_LEN;
/// `family u16, prefix u8, reserved u8, addr [u8; 16]`.
pub const CIDR_LEN: usize = 20;
/// [`U32_LIMIT_COUNT`] + 1 u32: the bounded limits in [`DWORD_SPECS`] order, then flags
/// (bit 0: zero copy, bits 1-5: the UDP guard's switches, [`LIMIT_FLAG_SWITCHES`]).
/// ABI 2 had seven limits (32 bytes); ABI 3 added IdleTimeoutMs, ProgressTimeoutMs and
/// RetainTimeoutMs (44 bytes).
pub const LIMITS_LEN: usize = (U32_LIMIT_COUNT + 1) * 4;

pub const LIMIT_FLAG_ZERO_COPY: u32 = 1;
/// The UDP guard's switches (registry values 0/1) as bits 1-5 of the limits flags word.
pub const LIMIT_FLAG_SWITCHES: [(u32, DwordSpec); 5] = [
    (1 << 1, UDP_DROP_BROADCAST),
    (1 << 2, UDP_DROP_PRIVILEGED_PORTS),
    (1 << 3, UDP_DROP_SERVICE_PORTS),
    (1 << 4, UDP_DROP_SPECIAL_SOURCES),
    (1 << 5, UDP_RATE_EXEMPT_LOOPBACK),
];

const fn same_name(a: &DwordSpec, b: &DwordSpec) -> bool {
    let (a, b) = (a.name.as_bytes(), b.name.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

// Every switch after the u32 limits travels as a flag bit: zero copy as bit 0, then the
// UDP guard's as bits 1.., in DWORD_SPECS order. A switch added without a bit fails the build.
const _: () = {
    assert!(U32_LIMIT_COUNT + 1 + LIMIT_FLAG_SWITCHES.len() == DWORD_SPECS.len());
    assert!(same_name(&DWORD_SPECS[U32_LIMIT_COUNT], &ZERO_COPY));
    let mut i = 0;
    while i < LIMIT_FLAG_SWITCHES.len() {
        assert!(LIMIT_FLAG_SWITCHES[i].0 == 2 << i);
        assert!(same_name(
            &LIMIT_FLAG_SWITCHES[i].1,
            &DWORD_SPECS[U32_LIMIT_COUNT + 1 + i]
        ));
        i += 1;
    }
};

pub(super) fn encode_addr(w: &mut Writer<'_>, a: IpAddr) {
    match a {
        IpAddr::V4(v4) => {
            w.u16(AF_INET);
            w.u16(0);
            w.bytes(&v4.octets());
            w.zeros(12);
        }
        IpAddr::V6(v6) => {
            w.u16(AF_INET6);
            w.u16(0);
            w.bytes(&v6.octets());
        }
    }
}

/// Decodes `family, 16 bytes`; IPv4 must leave bytes 4..16 zero so no byte goes unchecked.
fn decode_addr_bytes(family: u16, bytes: [u8; 16]) -> Result<IpAddr, ControlError> {
    match family {
        AF_INET => {
            if bytes[4..].iter().any(|&b| b != 0) {
                return Err(ControlError::BadAddress);
            }
            Ok(IpAddr::V4(Ipv4Addr::new(
                bytes[0], bytes[1], bytes[2], bytes[3],
            )))
        }
        AF_INET6 => Ok(IpAddr::V6(Ipv6Addr::from(bytes))),
        _ => Err(ControlError::BadFamily),
    }
}

pub(super) fn decode_addr(r: &mut Reader<'_>) -> Result<IpAddr, ControlError> {
    let family = r.u16()?;
    // Family first: a bad family is the more useful error than a reserved byte.
    let reserved = r.u16()?;
    let bytes = r.array::<16>()?;
    let a = decode_addr_bytes(family, bytes)?;
    if reserved != 0 {
        return Err(ControlError::Reserved);
    }
    Ok(a)
}

/// Bit 7 of a service's protocol byte: the service listens on a stream socket.
pub const SERVICE_PROTO_STREAM: u8 = 0x80;

pub(crate) fn encode_service(w: &mut Writer<'_>, s: &Service) {
    w.u8(s.proto as u8 | if s.stream { SERVICE_PROTO_STREAM } else { 0 });
    w.u8(s.mode as u8);
    w.u16(s.port);
    encode_addr(w, s.bind);
}

/// Decodes and validates one service (protocol, mode, port, address, mode-on-protocol).
pub(crate) fn decode_service(r: &mut Reader<'_>) -> Result<Service, ControlError> {
    let p = r.u8()?;
    let proto = Proto::from_u8(p & !SERVICE_PROTO_STREAM).ok_or(ControlError::BadEnum)?;
    let stream = p & SERVICE_PROTO_STREAM != 0;
    let mode = Mode::from_u8(r.u8()?).ok_or(ControlError::BadEnum)?;
    let port = r.u16()?;
    let bind = decode_addr(r)?;
    if port == 0 {
        return Err(ControlError::BadPort);
    }
    let s = Service {
        proto,
        port,
        mode,
        bind,
        stream,
    };
    s.validate().map_err(ControlError::Service)?;
    Ok(s)
}

fn encode_cidr(w: &mut Writer<'_>, c: &Cidr) {
    let (family, bytes) = match c.addr {
        IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[..4].copy_from_slice(&v4.octets());
            (AF_INET, b)
        }
        IpAddr::V6(v6) => (AF_INET6, v6.octets()),
    };
    w.u16(family);
    w.u8(c.prefix);
    w.u8(0);
    w.bytes(&bytes);
}

fn decode_cidr(r: &mut Reader<'_>) -> Result<Cidr, ControlError> {
    let family = r.u16()?;
    let prefix = r.u8()?;
    let reserved = r.u8()?;
    let addr = decode_addr_bytes(family, r.array::<16>()?)?;
    if reserved != 0 {
        return Err(ControlError::Reserved);
    }
    Cidr::new(addr, prefix).ok_or(ControlError::BadAddress)
}

fn encode_limits(w: &mut Writer<'_>, l: &Limits) {
    for spec in &DWORD_SPECS[..U32_LIMIT_COUNT] {
        w.u32(l.dword(spec.name).unwrap_or(0));
    }
    let mut flags = if l.zero_copy { LIMIT_FLAG_ZERO_COPY } else { 0 };
    for (bit, spec) in LIMIT_FLAG_SWITCHES {
        if l.dword(spec.name) == Some(1) {
            flags |= bit;
        }
    }
    w.u32(flags);
}

/// Limits without the allow-list; each value range-checked.
fn decode_limits(r: &mut Reader<'_>, l: &mut Limits) -> Result<(), ControlError> {
    for spec in &DWORD_SPECS[..U32_LIMIT_COUNT] {
        let v = r.u32()?;
        l.set_by_name(spec.name, v).map_err(ControlError::Limit)?;
    }
    let flags = r.u32()?;
    let known = LIMIT_FLAG_SWITCHES
        .iter()
        .fold(LIMIT_FLAG_ZERO_COPY, |m, (bit, _)| m | bit);
    if flags & !known != 0 {
        return Err(ControlError::Reserved);
    }
    l.zero_copy = flags & LIMIT_FLAG_ZERO_COPY != 0;
    for (bit, spec) in LIMIT_FLAG_SWITCHES {
        l.set_by_name(spec.name, u32::from(flags & bit != 0))
            .map_err(ControlError::Limit)?;
    }
    Ok(())
}

/// `limits, allowed_count u16, service_count u16, reserved u32, cidrs, services`.
pub const fn config_body_len(allowed: usize, services: usize) -> usize {
    LIMITS_LEN + 8 + allowed * CIDR_LEN + services * SERVICE_LEN
}

pub const fn config_response_len(allowed: usize, services: usize) -> usize {
    HEADER_LEN + config_body_len(allowed, services)
}

fn encode_config_body(w: &mut Writer<'_>, c: &Config) {
    encode_limits(w, &c.limits);
    w.u16(c.limits.allowed_sources().len() as u16);
    w.u16(c.services.len() as u16);
    w.u32(0);
    for a in c.limits.allowed_sources() {
        encode_cidr(w, a);
    }
    for s in c.services.as_slice() {
        encode_service(w, s);
    }
}

/// Reads a config body, which must fill the rest of the reader exactly, and validates it
/// as a whole (limits' cross rules, service conflicts).
fn decode_config_body(r: &mut Reader<'_>) -> Result<Config, ControlError> {
    let mut limits = Limits::default();
    decode_limits(r, &mut limits)?;
    let na = r.u16()? as usize;
    let ns = r.u16()? as usize;
    r.reserved(4)?;
    if na > MAX_ALLOWED_SOURCES || ns > MAX_SERVICES {
        return Err(ControlError::OutOfRange);
    }
    let need = na * CIDR_LEN + ns * SERVICE_LEN;
    if r.remaining() < need {
        return Err(ControlError::Short);
    }
    if r.remaining() > need {
        return Err(ControlError::Long);
    }
    let mut cidrs = heapless::Vec::<Cidr, MAX_ALLOWED_SOURCES>::new();
    for _ in 0..na {
        // na <= MAX_ALLOWED_SOURCES: checked above.
        cidrs
            .push(decode_cidr(r)?)
            .map_err(|_| ControlError::OutOfRange)?;
    }
    limits
        .set_allowed_sources(&cidrs)
        .map_err(ControlError::Limit)?;
    limits.validate().map_err(ControlError::Limit)?;
    let mut services = Services::empty();
    for _ in 0..ns {
        services
            .add(decode_service(r)?)
            .map_err(ControlError::Service)?;
    }
    r.finish()?;
    Ok(Config { services, limits })
}

/// Reads the header and checks the exact size of a fixed-size message.
pub(super) fn fixed(buf: &[u8], kind: Kind, len: usize) -> Result<Reader<'_>, ControlError> {
    let r = Header::check(buf, kind)?;
    if buf.len() < len {
        return Err(ControlError::Short);
    }
    if buf.len() > len {
        return Err(ControlError::Long);
    }
    Ok(r)
}

// ----- configuration ------------------------------------------------------------------------

pub fn encode_config_response(c: &Config, out: &mut [u8]) -> Result<usize, ControlError> {
    let len = config_response_len(c.limits.allowed_sources().len(), c.services.len());
    if out.len() < len {
        return Err(ControlError::OutputTooSmall);
    }
    let mut w = Writer::new(out);
    Header::write(&mut w, Kind::ConfigResponse, len);
    encode_config_body(&mut w, c);
    w.done()
}

pub fn decode_config_response(buf: &[u8]) -> Result<Config, ControlError> {
    let mut r = Header::check(buf, Kind::ConfigResponse)?;
    decode_config_body(&mut r)
}

/// A change to the configuration. (`Replace` is large; it lives on the stack briefly and
/// the kernel has no Box.)
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetConfig {
    /// Services and limits replaced as a whole.
    Replace(Config),
    AddService(Service),
    /// Matched on protocol, port and address; the mode is ignored.
    RemoveService(Service),
    /// Limits and allow-list replaced, services kept.
    SetLimits(Limits),
}

const OP_REPLACE: u32 = 1;
const OP_ADD: u32 = 2;
const OP_REMOVE: u32 = 3;
const OP_LIMITS: u32 = 4;

impl SetConfig {
    /// The configuration after this change, or why it cannot apply. Pure: the driver then
    /// opens the services in `new` that are not in `current` and closes the others
    /// (see [`services_diff`]).
    pub fn apply(&self, current: &Config) -> Result<Config, ControlError> {
        let mut c = current.clone();
        match self {
            SetConfig::Replace(n) => c = n.clone(),
            SetConfig::AddService(s) => c.services.add(*s).map_err(ControlError::Service)?,
            SetConfig::RemoveService(s) => {
                if !c.services.remove(s.proto, s.port, s.bind) {
                    return Err(ControlError::NoSuchService);
                }
            }
            SetConfig::SetLimits(l) => c.limits = l.clone(),
        }
        Ok(c)
    }

    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + 8
            + match self {
                SetConfig::Replace(c) => {
                    config_body_len(c.limits.allowed_sources().len(), c.services.len())
                }
                SetConfig::AddService(_) | SetConfig::RemoveService(_) => SERVICE_LEN,
                SetConfig::SetLimits(l) => config_body_len(l.allowed_sources().len(), 0),
            }
    }

    pub fn encode(&self, out: &mut [u8]) -> Result<usize, ControlError> {
        let len = self.encoded_len();
        if out.len() < len {
            return Err(ControlError::OutputTooSmall);
        }
        let mut w = Writer::new(out);
        Header::write(&mut w, Kind::SetConfigRequest, len);
        match self {
            SetConfig::Replace(c) => {
                w.u32(OP_REPLACE);
                w.u32(0);
                encode_config_body(&mut w, c);
            }
            SetConfig::AddService(s) | SetConfig::RemoveService(s) => {
                w.u32(if matches!(self, SetConfig::AddService(_)) {
                    OP_ADD
                } else {
                    OP_REMOVE
                });
                w.u32(0);
                encode_service(&mut w, s);
            }
            SetConfig::SetLimits(l) => {
                w.u32(OP_LIMITS);
                w.u32(0);
                encode_config_body(
                    &mut w,
                    &Config {
                        services: Services::empty(),
                        limits: l.clone(),
                    },
                );
            }
        }
        w.done()
    }

    pub fn decode(buf: &[u8]) -> Result<SetConfig, ControlError> {
        let mut r = Header::check(buf, Kind::SetConfigRequest)?;
        let op = r.u32()?;
        r.reserved(4)?;
        match op {
            OP_REPLACE => Ok(SetConfig::Replace(decode_config_body(&mut r)?)),
            OP_ADD | OP_REMOVE => {
                if r.remaining() < SERVICE_LEN {
                    return Err(ControlError::Short);
                }
                if r.remaining() > SERVICE_LEN {
                    return Err(ControlError::Long);
                }
                let s = decode_service(&mut r)?;
                r.finish()?;
                Ok(if op == OP_ADD {
                    SetConfig::AddService(s)
                } else {
                    SetConfig::RemoveService(s)
                })
            }
            OP_LIMITS => {
                let c = decode_config_body(&mut r)?;
                if !c.services.is_empty() {
                    return Err(ControlError::OutOfRange);
                }
                Ok(SetConfig::SetLimits(c.limits))
            }
            _ => Err(ControlError::BadEnum),
        }
    }
}

/// Services in `old` but not `new` (to close) and in `new` but not `old` (to open). A
/// service whose mode changed appears in both, so its socket is re-created.
pub fn services_diff<'a>(
    old: &'a Config,
    new: &'a Config,
) -> (
    impl Iterator<Item = &'a Service> + 'a,
    impl Iterator<Item = &'a Service> + 'a,
) {
    let removed = old
        .services
        .as_slice()
        .iter()
        .filter(move |s| !new.services.as_slice().contains(s));
    let added = new
        .services
        .as_slice()
        .iter()
        .filter(move |s| !old.services.as_slice().contains(s));
    (removed, added)
}
