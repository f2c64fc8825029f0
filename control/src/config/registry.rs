//! The registry mapping: value names and types, and the pure parser that turns the values
//! the driver reads from its Parameters key into a validated [`Config`].

use super::{
    Cidr, Config, LimitError, Service, ServiceError, Services, DISCONNECT_TIMEOUT_MS,
    IDLE_TIMEOUT_MS, MAX_ALLOWED_SOURCES, MAX_CONNECTIONS, MAX_RETAINED_PER_CONN,
    MAX_RETAINED_TOTAL, PROGRESS_TIMEOUT_MS, RETAIN_TIMEOUT_MS, SEND_RING_BYTES,
    UDP_DROP_BROADCAST, UDP_DROP_PRIVILEGED_PORTS, UDP_DROP_SERVICE_PORTS,
    UDP_DROP_SPECIAL_SOURCES, UDP_RATE_EXEMPT_LOOPBACK, UDP_RATE_PER_SOURCE, UDP_SEND_CONTEXTS,
    ZERO_COPY,
};
use core::fmt;

/// Registry value types (winnt.h).
pub const REG_SZ: u32 = 1;
pub const REG_DWORD: u32 = 4;
pub const REG_MULTI_SZ: u32 = 7;

/// `Services` (REG_MULTI_SZ): one `mode,proto,port,address` per string.
pub const SERVICES_VALUE: &str = "Services";
/// `AllowedSources` (REG_MULTI_SZ): CIDR prefixes whose datagrams/connections are served.
pub const ALLOWED_SOURCES_VALUE: &str = "AllowedSources";

/// A value the driver reads from `...\Services\wskecho\Parameters`.
#[derive(Clone, Copy, Debug)]
pub struct RegistryValueSpec {
    pub name: &'static str,
    pub reg_type: u32,
}

/// Every value the driver looks up, in the order it applies them.
pub const REGISTRY_VALUES: [RegistryValueSpec; 18] = [
    RegistryValueSpec {
        name: SERVICES_VALUE,
        reg_type: REG_MULTI_SZ,
    },
    RegistryValueSpec {
        name: ALLOWED_SOURCES_VALUE,
        reg_type: REG_MULTI_SZ,
    },
    RegistryValueSpec {
        name: MAX_CONNECTIONS.name,
        reg_type: REG_DWORD,
    },
    RegistryValueSpec {
        name: MAX_RETAINED_PER_CONN.name,
        reg_type: REG_DWORD,
    },
    RegistryValueSpec {
        name: MAX_RETAINED_TOTAL.name,
        reg_type: REG_DWORD,
    },
    RegistryValueSpec {
        name: SEND_RING_BYTES.name,
        reg_type: REG_DWORD,
    },
    RegistryValueSpec {
        name: UDP_SEND_CONTEXTS.name,
        reg_type: REG_DWORD,
    },
    RegistryValueSpec {
        name: UDP_RATE_PER_SOURCE.name,
        reg_type: REG_DWORD,
    },
    RegistryValueSpec {
        name: DISCONNECT_TIMEOUT_MS.name,
        reg_type: REG_DWORD,
    },
    RegistryValueSpec {
        name: IDLE_TIMEOUT_MS.name,
        reg_type: REG_DWORD,
    },
    RegistryValueSpec {
        name: PROGRESS_TIMEOUT_MS.name,
        reg_type: REG_DWORD,
    },
    RegistryValueSpec {
        name: RETAIN_TIMEOUT_MS.name,
        reg_type: REG_DWORD,
    },
    RegistryValueSpec {
        name: ZERO_COPY.name,
        reg_type: REG_DWORD,
    },
    RegistryValueSpec {
        name: UDP_DROP_BROADCAST.name,
        reg_type: REG_DWORD,
    },
    RegistryValueSpec {
        name: UDP_DROP_PRIVILEGED_PORTS.name,
        reg_type: REG_DWORD,
    },
    RegistryValueSpec {
        name: UDP_DROP_SERVICE_PORTS.name,
        reg_type: REG_DWORD,
    },
    RegistryValueSpec {
        name: UDP_DROP_SPECIAL_SOURCES.name,
        reg_type: REG_DWORD,
    },
    RegistryValueSpec {
        name: UDP_RATE_EXEMPT_LOOPBACK.name,
        reg_type: REG_DWORD,
    },
];

/// Longest registry value (bytes) worth reading; longer data is refused as invalid.
pub const MAX_REGISTRY_VALUE_BYTES: usize = 4096;

/// A configuration value the driver could not use, and why. `value` is the registry name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub value: &'static str,
    pub kind: ConfigErrorKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// The value has another registry type than expected.
    WrongType { expected: u32, found: u32 },
    /// Data length does not fit the type (e.g. a REG_DWORD that is not 4 bytes).
    BadLength,
    /// Text is not ASCII UTF-16LE, or too long.
    BadText,
    /// Entry number `index` (0-based) of a multi-string does not parse.
    Syntax { index: u16 },
    /// A service entry parses but is not acceptable.
    Service(ServiceError),
    /// A limit out of range or violating a cross-field rule.
    Limit(LimitError),
    /// The name is not one of [`REGISTRY_VALUES`].
    UnknownValue,
}

impl ConfigError {
    pub(crate) fn from_limit(e: LimitError) -> Self {
        let value = match e {
            LimitError::OutOfRange { value, .. } => value,
            LimitError::NotPowerOfTwo => SEND_RING_BYTES.name,
            LimitError::RetainedAboveTotal => MAX_RETAINED_PER_CONN.name,
            LimitError::TooManySources | LimitError::EmptyAllowList => ALLOWED_SOURCES_VALUE,
        };
        ConfigError {
            value,
            kind: ConfigErrorKind::Limit(e),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "registry value {}: ", self.value)?;
        match self.kind {
            ConfigErrorKind::WrongType { expected, found } => {
                write!(
                    f,
                    "type {found} where {} was expected",
                    reg_type_name(expected)
                )
            }
            ConfigErrorKind::BadLength => f.write_str("data length does not fit its type"),
            ConfigErrorKind::BadText => f.write_str("not ASCII text, or too long"),
            ConfigErrorKind::Syntax { index } => write!(f, "entry {index} does not parse"),
            ConfigErrorKind::Service(e) => write!(f, "{}", service_error_text(e)),
            ConfigErrorKind::Limit(LimitError::OutOfRange { min, max, .. }) => {
                write!(f, "out of range {min}..={max}")
            }
            ConfigErrorKind::Limit(LimitError::NotPowerOfTwo) => f.write_str("not a power of two"),
            ConfigErrorKind::Limit(LimitError::RetainedAboveTotal) => {
                write!(f, "greater than {}", MAX_RETAINED_TOTAL.name)
            }
            ConfigErrorKind::Limit(LimitError::TooManySources) => {
                write!(f, "more than {MAX_ALLOWED_SOURCES} prefixes")
            }
            ConfigErrorKind::Limit(LimitError::EmptyAllowList) => f.write_str(
                "empty (would refuse every peer; write 0.0.0.0/0 and ::/0 to allow all)",
            ),
            ConfigErrorKind::UnknownValue => f.write_str("not a wskecho parameter"),
        }?;
        f.write_str("; default used")
    }
}

pub const fn service_error_text(e: ServiceError) -> &'static str {
    match e {
        ServiceError::PortZero => "port 0",
        ServiceError::ModeNotAllowed => {
            "mode not allowed on this protocol (UDP source would amplify)"
        }
        ServiceError::TooMany => "too many services",
        ServiceError::Conflict => "two services on the same protocol, port and address",
        ServiceError::StreamNotTcp => "a stream socket is TCP only",
    }
}

pub const fn reg_type_name(t: u32) -> &'static str {
    match t {
        REG_SZ => "REG_SZ",
        REG_DWORD => "REG_DWORD",
        REG_MULTI_SZ => "REG_MULTI_SZ",
        _ => "another type",
    }
}

/// Collects registry values over the defaults.
#[derive(Clone, Debug, Default)]
pub struct ConfigBuilder {
    cfg: Config,
}

impl ConfigBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one registry value (`data` as `ZwQueryValueKey` returns it: REG_DWORD as 4
    /// little-endian bytes, strings as UTF-16LE). On error nothing changes, so the value's
    /// default (or the previous good value) stays.
    pub fn apply(&mut self, name: &str, reg_type: u32, data: &[u8]) -> Result<(), ConfigError> {
        let Some(spec) = REGISTRY_VALUES
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
        else {
            return Err(ConfigError {
                value: "?",
                kind: ConfigErrorKind::UnknownValue,
            });
        };
        let value = spec.name;
        let err = |kind| ConfigError { value, kind };
        if reg_type != spec.reg_type {
            return Err(err(ConfigErrorKind::WrongType {
                expected: spec.reg_type,
                found: reg_type,
            }));
        }
        if data.len() > MAX_REGISTRY_VALUE_BYTES {
            return Err(err(ConfigErrorKind::BadLength));
        }
        match value {
            SERVICES_VALUE => {
                let mut list = Services::empty();
                let mut index = 0u16;
                let mut failure = None;
                for_each_multi_sz(data, |s| {
                    if failure.is_some() {
                        return;
                    }
                    match Service::parse_entry(s) {
                        None => failure = Some(ConfigErrorKind::Syntax { index }),
                        Some(svc) => {
                            if let Err(e) = list.add(svc) {
                                failure = Some(ConfigErrorKind::Service(e));
                            }
                        }
                    }
                    index += 1;
                })
                .map_err(err)?;
                if let Some(k) = failure {
                    return Err(err(k));
                }
                // An empty list is allowed: the driver then serves nothing until configured
                // through the control device.
                self.cfg.services = list;
                Ok(())
            }
            ALLOWED_SOURCES_VALUE => {
                let mut list = heapless::Vec::<Cidr, MAX_ALLOWED_SOURCES>::new();
                let mut failure = None;
                for_each_multi_sz(data, |s| {
                    if failure.is_some() {
                        return;
                    }
                    if list.is_full() {
                        failure = Some(ConfigErrorKind::Limit(LimitError::TooManySources));
                        return;
                    }
                    match Cidr::parse(s) {
                        Some(c) => {
                            let _ = list.push(c); // not full: checked above
                        }
                        None => {
                            failure = Some(ConfigErrorKind::Syntax {
                                index: list.len() as u16,
                            });
                        }
                    }
                })
                .map_err(err)?;
                if let Some(k) = failure {
                    return Err(err(k));
                }
                self.cfg
                    .limits
                    .set_allowed_sources(&list)
                    .map_err(|e| err(ConfigErrorKind::Limit(e)))
            }
            _ => {
                let Ok(bytes) = <[u8; 4]>::try_from(data) else {
                    return Err(err(ConfigErrorKind::BadLength));
                };
                let v = u32::from_le_bytes(bytes);
                self.cfg
                    .limits
                    .set_by_name(value, v)
                    .map_err(|e| err(ConfigErrorKind::Limit(e)))
            }
        }
    }

    /// Applies the cross-field rules. When they fail, both retention limits fall back to
    /// their defaults and the error is returned for logging.
    pub fn finish(mut self) -> (Config, Option<ConfigError>) {
        match self.cfg.limits.validate() {
            Ok(()) => (self.cfg, None),
            Err(e) => {
                self.cfg.limits.max_retained_per_conn = MAX_RETAINED_PER_CONN.default;
                self.cfg.limits.max_retained_total = MAX_RETAINED_TOTAL.default;
                (self.cfg, Some(ConfigError::from_limit(e)))
            }
        }
    }
}

/// Calls `f` for every string of a REG_MULTI_SZ (UTF-16LE). Empty strings are skipped, a
/// missing final terminator is tolerated (the registry does not enforce it); non-ASCII text
/// and strings longer than 127 characters are refused.
fn for_each_multi_sz(data: &[u8], mut f: impl FnMut(&str)) -> Result<(), ConfigErrorKind> {
    if data.len() & 1 != 0 {
        return Err(ConfigErrorKind::BadLength);
    }
    let mut buf = [0u8; 128];
    let mut n = 0usize;
    for ch in data.chunks_exact(2) {
        let c = u16::from_le_bytes([ch[0], ch[1]]);
        if c == 0 {
            if n > 0 {
                // ASCII only was stored, so this cannot fail.
                f(core::str::from_utf8(&buf[..n]).map_err(|_| ConfigErrorKind::BadText)?);
            }
            n = 0;
            continue;
        }
        if !(0x20..=0x7e).contains(&c) || n >= buf.len() {
            return Err(ConfigErrorKind::BadText);
        }
        buf[n] = c as u8;
        n += 1;
    }
    if n > 0 {
        f(core::str::from_utf8(&buf[..n]).map_err(|_| ConfigErrorKind::BadText)?);
    }
    Ok(())
}

/// Encodes ASCII `s` as UTF-16LE with a terminating NUL into `out`; returns bytes written, or
/// `None` when it does not fit or is not ASCII. (For building registry data and value names.)
pub fn encode_utf16z(s: &str, out: &mut [u8]) -> Option<usize> {
    let need = (s.len() + 1) * 2;
    if out.len() < need || !s.is_ascii() {
        return None;
    }
    for (i, b) in s.bytes().chain(core::iter::once(0)).enumerate() {
        out[2 * i] = b;
        out[2 * i + 1] = 0;
    }
    Some(need)
}
