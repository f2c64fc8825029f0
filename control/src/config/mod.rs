//! Driver configuration: types, defaults, limits and the registry mapping.
//!
//! Everything here is plain data with fixed capacity (no allocation), so the driver can hold a
//! [`Config`] in non-paged memory and the host tools can build the same value.
//!
//! The driver reads its service's `Parameters` key value by value (see [`REGISTRY_VALUES`]),
//! feeds each value it finds to [`ConfigBuilder::apply`], and calls [`ConfigBuilder::finish`].
//! A value that is invalid is reported as a [`ConfigError`] naming it, and its default is kept;
//! the other values still apply. The INF test parses `wskecho.inf` through the same functions.

mod limits;
mod registry;

pub use limits::*;
pub use registry::*;

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// At most this many services (listening sockets) are configured at once.
pub const MAX_SERVICES: usize = 16;
/// At most this many CIDR entries in the source allow-list.
pub const MAX_ALLOWED_SOURCES: usize = 16;

/// Transport protocol of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Proto {
    Tcp = 0,
    Udp = 1,
}

impl Proto {
    pub const fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Proto::Tcp),
            1 => Some(Proto::Udp),
            _ => None,
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("tcp") {
            Some(Proto::Tcp)
        } else if s.eq_ignore_ascii_case("udp") {
            Some(Proto::Udp)
        } else {
            None
        }
    }
}

pub use crate::protocol::Mode;

impl Mode {
    /// Whether the mode may run on this protocol. UDP `source` would send without being
    /// asked, i.e. amplify, so it is refused.
    pub const fn allowed_on(self, proto: Proto) -> bool {
        !matches!((self, proto), (Mode::Source, Proto::Udp))
    }
}

/// One listening service: a socket bound to `bind:port` running `mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Service {
    pub proto: Proto,
    pub port: u16,
    pub mode: Mode,
    pub bind: IpAddr,
    /// TCP only: listen on a WSK stream socket (WSK_FLAG_STREAM_SOCKET, Windows 10 1703+: a
    /// socket that can listen or connect, with WskListen) instead of a listening socket. The
    /// accepted connections are the same. Registry text: a fifth field `stream`.
    pub stream: bool,
}

/// Why a service (or a set of them) is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceError {
    /// Port 0 is not a service port.
    PortZero,
    /// `source` on UDP would amplify.
    ModeNotAllowed,
    /// More than [`MAX_SERVICES`].
    TooMany,
    /// Two services would need the same socket (same protocol and port, overlapping address).
    Conflict,
    /// A stream socket on UDP (stream sockets are connection-oriented: TCP only).
    StreamNotTcp,
}

impl Service {
    pub const fn new(proto: Proto, port: u16, mode: Mode, bind: IpAddr) -> Self {
        Service {
            proto,
            port,
            mode,
            bind,
            stream: false,
        }
    }

    /// The same service on a stream socket (`true`) or a listening socket (`false`).
    #[must_use]
    pub const fn with_stream(mut self, stream: bool) -> Self {
        self.stream = stream;
        self
    }

    pub fn validate(&self) -> Result<(), ServiceError> {
        if self.port == 0 {
            return Err(ServiceError::PortZero);
        }
        if self.stream && self.proto != Proto::Tcp {
            return Err(ServiceError::StreamNotTcp);
        }
        if !self.mode.allowed_on(self.proto) {
            return Err(ServiceError::ModeNotAllowed);
        }
        Ok(())
    }

    /// Two services conflict when they would bind the same protocol and port on overlapping
    /// addresses: identical addresses, or the same family where one is the wildcard.
    pub fn conflicts_with(&self, other: &Service) -> bool {
        if self.proto != other.proto || self.port != other.port {
            return false;
        }
        if self.bind == other.bind {
            return true;
        }
        self.bind.is_ipv4() == other.bind.is_ipv4()
            && (self.bind.is_unspecified() || other.bind.is_unspecified())
    }

    /// The registry text form, `mode,proto,port,address[,stream|,listen]` (e.g.
    /// `echo,tcp,7007,127.0.0.1` or `echo,tcp,7007,127.0.0.1,stream`). Commas, because IPv6
    /// addresses contain colons.
    pub fn parse_entry(s: &str) -> Option<Service> {
        let mut it = s.split(',').map(str::trim);
        let mode = Mode::parse(it.next()?)?;
        let proto = Proto::parse(it.next()?)?;
        let port = parse_u16(it.next()?)?;
        let bind = it.next()?.parse::<IpAddr>().ok()?;
        let stream = match it.next() {
            None => false,
            Some(k) if k.eq_ignore_ascii_case("stream") => true,
            Some(k) if k.eq_ignore_ascii_case("listen") => false,
            Some(_) => return None,
        };
        if it.next().is_some() {
            return None;
        }
        Some(Service {
            proto,
            port,
            mode,
            bind,
            stream,
        })
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},{},{},{}{}",
            self.mode.name(),
            self.proto.name(),
            self.port,
            self.bind,
            if self.stream { ",stream" } else { "" }
        )
    }
}

fn parse_u16(s: &str) -> Option<u16> {
    // `u16::from_str` accepts a leading '+'; registry text should be plain digits.
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// An address prefix for the source allow-list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub const ANY_V4: Cidr = Cidr {
        addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        prefix: 0,
    };
    pub const ANY_V6: Cidr = Cidr {
        addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        prefix: 0,
    };

    /// A prefix is valid when it fits the family and no host bits are set below it (so the
    /// text an operator wrote means exactly one network).
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return None;
        }
        let c = Cidr { addr, prefix };
        if c.masked(addr) != addr {
            return None;
        }
        Some(c)
    }

    fn masked(&self, a: IpAddr) -> IpAddr {
        match a {
            IpAddr::V4(v) => {
                let bits = u32::from(v);
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.prefix))
                };
                IpAddr::V4(Ipv4Addr::from(bits & mask))
            }
            IpAddr::V6(v) => {
                let bits = u128::from(v);
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.prefix))
                };
                IpAddr::V6(Ipv6Addr::from(bits & mask))
            }
        }
    }

    /// Whether `a` lies inside this prefix. Families never match each other; an IPv4-mapped
    /// IPv6 source is compared as IPv4 so a dual-stack socket cannot bypass a v4 rule.
    pub fn contains(&self, a: IpAddr) -> bool {
        let a = match a {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
            IpAddr::V4(_) => a,
        };
        a.is_ipv4() == self.addr.is_ipv4() && self.masked(a) == self.addr
    }

    /// `address/prefix`; a bare address means a single host.
    pub fn parse(s: &str) -> Option<Cidr> {
        let s = s.trim();
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().ok()?;
        let prefix = match p {
            Some(p) => {
                let v = parse_u16(p)?;
                u8::try_from(v).ok()?
            }
            None => {
                if addr.is_ipv4() {
                    32
                } else {
                    128
                }
            }
        };
        Cidr::new(addr, prefix)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The services list: at most [`MAX_SERVICES`], each valid, none conflicting. Not `Copy`
/// (a `heapless::Vec`); clone it where a copy is meant.
#[derive(Debug, PartialEq, Eq)]
pub struct Services(heapless::Vec<Service, MAX_SERVICES>);

impl Clone for Services {
    /// Out of line: heapless clones element by element, and inlined at every caller that
    /// grows the driver image by kilobytes.
    #[inline(never)]
    fn clone(&self) -> Self {
        Services(self.0.clone())
    }
}

impl Services {
    pub const fn empty() -> Self {
        Services(heapless::Vec::new())
    }

    pub fn as_slice(&self) -> &[Service] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Builds a validated list: each service valid, none conflicting, at most [`MAX_SERVICES`].
    pub fn from_slice(list: &[Service]) -> Result<Self, ServiceError> {
        let mut s = Services::empty();
        for svc in list {
            s.add(*svc)?;
        }
        Ok(s)
    }

    /// Adds one service after checking it against the others.
    pub fn add(&mut self, svc: Service) -> Result<(), ServiceError> {
        svc.validate()?;
        if self.as_slice().iter().any(|o| o.conflicts_with(&svc)) {
            return Err(ServiceError::Conflict);
        }
        self.0.push(svc).map_err(|_| ServiceError::TooMany)
    }

    /// Removes the service with this protocol, port and address; returns whether it existed.
    pub fn remove(&mut self, proto: Proto, port: u16, bind: IpAddr) -> bool {
        let Some(i) = self
            .as_slice()
            .iter()
            .position(|s| s.proto == proto && s.port == port && s.bind == bind)
        else {
            return false;
        };
        self.0.remove(i);
        true
    }
}

/// The default bind address: loopback. An operator widens it on purpose.
pub const DEFAULT_BIND: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// echo TCP+UDP 7007, discard TCP+UDP 7009, source TCP 7019, sockperf TCP+UDP 11111.
pub const DEFAULT_SERVICES: [Service; 7] = [
    Service::new(Proto::Tcp, 7007, Mode::Echo, DEFAULT_BIND),
    Service::new(Proto::Udp, 7007, Mode::Echo, DEFAULT_BIND),
    Service::new(Proto::Tcp, 7009, Mode::Discard, DEFAULT_BIND),
    Service::new(Proto::Udp, 7009, Mode::Discard, DEFAULT_BIND),
    Service::new(Proto::Tcp, 7019, Mode::Source, DEFAULT_BIND),
    Service::new(Proto::Tcp, 11111, Mode::Sockperf, DEFAULT_BIND),
    Service::new(Proto::Udp, 11111, Mode::Sockperf, DEFAULT_BIND),
];

/// The whole driver configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub services: Services,
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Self {
        // The defaults are valid by construction and fit (7 <= MAX_SERVICES); a test checks
        // `from_slice` accepts them.
        let mut services = Services::empty();
        for s in DEFAULT_SERVICES {
            let _ = services.0.push(s);
        }
        Config {
            services,
            limits: Limits::default(),
        }
    }
}

impl Config {
    pub fn validate(&self) -> Result<(), ConfigError> {
        Services::from_slice(self.services.as_slice()).map_err(|e| ConfigError {
            value: SERVICES_VALUE,
            kind: ConfigErrorKind::Service(e),
        })?;
        self.limits.validate().map_err(ConfigError::from_limit)
    }
}
