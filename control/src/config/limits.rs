//! Resource limits and hardening knobs, each with a registry name, a range and a default.

use super::{Cidr, MAX_ALLOWED_SOURCES};
use core::net::IpAddr;

/// Resource limits and hardening knobs. Every field has a range, checked by
/// [`Limits::validate`]; the driver sizes its pools from these at start. Not `Copy` (the
/// allow-list is a `heapless::Vec`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Accepted TCP connections alive at once, over all services; more are refused.
    pub max_connections: u32,
    /// Receive-indication bytes one connection may hold for zero-copy echo.
    pub max_retained_per_conn: u32,
    /// Receive-indication bytes the whole driver may hold.
    pub max_retained_total: u32,
    /// Copy-path send ring per connection, bytes (power of two).
    pub send_ring_bytes: u32,
    /// Pre-allocated send contexts per UDP socket; past them datagrams are dropped and counted.
    pub udp_send_contexts: u32,
    /// Datagrams per second accepted from one source address; 0 = no limit.
    pub udp_rate_per_source: u32,
    /// How long unload waits for a graceful disconnect before aborting, milliseconds.
    pub disconnect_timeout_ms: u32,
    /// A TCP connection that has received nothing and has nothing left to send for this long
    /// is closed gracefully (FIN), milliseconds; 0 = never.
    pub idle_timeout_ms: u32,
    /// A TCP connection whose echo makes no progress for this long (sends pending and none
    /// completing, or received data it cannot send: a peer that never reads) is aborted and
    /// its buffers released, milliseconds; 0 = never.
    pub progress_timeout_ms: u32,
    /// Receive buffers held for zero-copy echo longer than this move the connection to the
    /// copy path (back-pressure), milliseconds; 0 = never.
    pub retain_timeout_ms: u32,
    /// Allow the zero-copy TCP echo path (0 forces the copy path; for benchmarks).
    pub zero_copy: bool,
    /// UDP reflection guard (see [`UdpGuard`]).
    pub udp_guard: UdpGuard,
    allowed: AllowList,
}

/// The source allow-list's storage. Its own type only for the out-of-line `Clone`: heapless
/// clones element by element, and inlined at every caller that grows the driver image.
#[derive(Debug, PartialEq, Eq)]
struct AllowList(heapless::Vec<Cidr, MAX_ALLOWED_SOURCES>);

impl Clone for AllowList {
    #[inline(never)]
    fn clone(&self) -> Self {
        AllowList(self.0.clone())
    }
}

/// The UDP reflection and loop guard: which datagrams a UDP service drops (and counts) before
/// answering. Every switch is on by default; `rate_exempt_loopback` keeps
/// `UdpRateLimitPerSource` off loopback sources so local benchmarks are never limited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpGuard {
    /// Drop datagrams WSK indicates with MSG_BCAST or MSG_MCAST (sent to a broadcast or
    /// multicast address: one spoofed request would draw replies from every listener).
    pub drop_broadcast: bool,
    /// Drop datagrams from source ports 0-1023 (echo, chargen, DNS, NTP, ...: the reflection
    /// partners of CVE-2024-2169 / VU#417980).
    pub drop_privileged_ports: bool,
    /// Drop datagrams whose source port is a port of any configured service (TCP or UDP):
    /// a spoofed datagram from one of our own services would start an endless ping-pong.
    pub drop_service_ports: bool,
    /// Drop datagrams from unspecified, multicast or limited-broadcast source addresses
    /// (never a legitimate sender; a reply would fan out).
    pub drop_special_sources: bool,
    /// Loopback sources are not rate limited.
    pub rate_exempt_loopback: bool,
}

impl Default for UdpGuard {
    fn default() -> Self {
        UdpGuard {
            drop_broadcast: UDP_DROP_BROADCAST.default != 0,
            drop_privileged_ports: UDP_DROP_PRIVILEGED_PORTS.default != 0,
            drop_service_ports: UDP_DROP_SERVICE_PORTS.default != 0,
            drop_special_sources: UDP_DROP_SPECIAL_SOURCES.default != 0,
            rate_exempt_loopback: UDP_RATE_EXEMPT_LOOPBACK.default != 0,
        }
    }
}

/// A limit out of its range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitError {
    /// The field's registry name and its inclusive range.
    OutOfRange {
        value: &'static str,
        min: u32,
        max: u32,
    },
    /// The send ring size must be a power of two.
    NotPowerOfTwo,
    /// Per-connection retention above the global budget.
    RetainedAboveTotal,
    /// More than [`MAX_ALLOWED_SOURCES`] prefixes.
    TooManySources,
    /// An allow-list with no entries would refuse every peer; say 0.0.0.0/0 to allow all.
    EmptyAllowList,
}

/// One bounded `u32` field: registry name, range, default.
#[derive(Clone, Copy, Debug)]
pub struct DwordSpec {
    pub name: &'static str,
    pub min: u32,
    pub max: u32,
    pub default: u32,
    pub doc: &'static str,
}

pub const MAX_CONNECTIONS: DwordSpec = DwordSpec {
    name: "MaxConnections",
    min: 1,
    max: 65_536,
    default: 1024,
    doc: "TCP connections alive at once over all services; more are refused and counted",
};
pub const MAX_RETAINED_PER_CONN: DwordSpec = DwordSpec {
    name: "MaxRetainedBytesPerConnection",
    min: 0,
    max: 16 << 20,
    default: 256 << 10,
    doc: "receive-buffer bytes one connection may hold for zero-copy echo (0: copy path only)",
};
pub const MAX_RETAINED_TOTAL: DwordSpec = DwordSpec {
    name: "MaxRetainedBytes",
    min: 0,
    max: 1 << 30,
    default: 64 << 20,
    doc: "receive-buffer bytes the whole driver may hold for zero-copy echo",
};
pub const SEND_RING_BYTES: DwordSpec = DwordSpec {
    name: "SendRingBytes",
    min: 4096,
    max: 1 << 20,
    default: 32 << 10,
    doc: "copy-path send ring per TCP connection, bytes, power of two",
};
pub const UDP_SEND_CONTEXTS: DwordSpec = DwordSpec {
    name: "UdpSendContexts",
    min: 1,
    max: 65_536,
    default: 256,
    doc: "pre-allocated send contexts per UDP socket; datagrams past them are dropped and counted",
};
pub const UDP_RATE_PER_SOURCE: DwordSpec = DwordSpec {
    name: "UdpRateLimitPerSource",
    min: 0,
    max: 10_000_000,
    default: 1000,
    doc: "datagrams per second answered per source address, burst as large (0: no limit; loopback exempt by UdpRateLimitExemptLoopback)",
};
pub const DISCONNECT_TIMEOUT_MS: DwordSpec = DwordSpec {
    name: "DisconnectTimeoutMs",
    min: 0,
    max: 60_000,
    default: 2000,
    doc: "graceful disconnect wait at stop/unload before connections are aborted, ms",
};
pub const IDLE_TIMEOUT_MS: DwordSpec = DwordSpec {
    name: "IdleTimeoutMs",
    min: 0,
    max: 86_400_000,
    default: 300_000,
    doc: "a TCP connection that has received nothing and has nothing left to send for this long is closed gracefully (FIN), ms; 0: never",
};
pub const PROGRESS_TIMEOUT_MS: DwordSpec = DwordSpec {
    name: "ProgressTimeoutMs",
    min: 0,
    max: 3_600_000,
    default: 30_000,
    doc: "a TCP connection whose echo makes no progress for this long (sends pending and none completing, or received data it cannot send: a peer that never reads) is aborted and its buffers released, ms; 0: never",
};
pub const RETAIN_TIMEOUT_MS: DwordSpec = DwordSpec {
    name: "RetainTimeoutMs",
    min: 0,
    max: 60_000,
    default: 1_000,
    doc: "receive buffers held for zero-copy echo longer than this move the connection to the copy path (back-pressure), ms; 0: never",
};
pub const ZERO_COPY: DwordSpec = DwordSpec {
    name: "EnableZeroCopy",
    min: 0,
    max: 1,
    default: 1,
    doc: "1: TCP echo may send the received buffers back without copying; 0: always copy",
};

pub const UDP_DROP_BROADCAST: DwordSpec = DwordSpec {
    name: "UdpDropBroadcast",
    min: 0,
    max: 1,
    default: 1,
    doc: "1: drop UDP datagrams sent to a broadcast or multicast address (MSG_BCAST/MSG_MCAST)",
};
pub const UDP_DROP_PRIVILEGED_PORTS: DwordSpec = DwordSpec {
    name: "UdpDropPrivilegedSourcePorts",
    min: 0,
    max: 1,
    default: 1,
    doc: "1: drop UDP datagrams from source ports 0-1023 (other UDP services: reflection)",
};
pub const UDP_DROP_SERVICE_PORTS: DwordSpec = DwordSpec {
    name: "UdpDropServiceSourcePorts",
    min: 0,
    max: 1,
    default: 1,
    doc: "1: drop UDP datagrams whose source port is a configured service's port (echo loops)",
};
pub const UDP_DROP_SPECIAL_SOURCES: DwordSpec = DwordSpec {
    name: "UdpDropSpecialSources",
    min: 0,
    max: 1,
    default: 1,
    doc: "1: drop UDP datagrams from unspecified, multicast or broadcast source addresses",
};
pub const UDP_RATE_EXEMPT_LOOPBACK: DwordSpec = DwordSpec {
    name: "UdpRateLimitExemptLoopback",
    min: 0,
    max: 1,
    default: 1,
    doc: "1: UdpRateLimitPerSource does not apply to loopback sources (local benchmarks)",
};

/// How many of [`DWORD_SPECS`] are bounded `u32` limits (the rest are 0/1 switches). The
/// control ABI's limits block carries these as `u32`s, in this order, and the switches as
/// bits of its flags word; a compile-time check below keeps the split honest.
pub const U32_LIMIT_COUNT: usize = 10;

/// The registry `REG_DWORD`s, in registry order: first the [`U32_LIMIT_COUNT`] bounded `u32`
/// limits, then the 0/1 switches.
pub const DWORD_SPECS: [DwordSpec; U32_LIMIT_COUNT + 6] = [
    MAX_CONNECTIONS,
    MAX_RETAINED_PER_CONN,
    MAX_RETAINED_TOTAL,
    SEND_RING_BYTES,
    UDP_SEND_CONTEXTS,
    UDP_RATE_PER_SOURCE,
    DISCONNECT_TIMEOUT_MS,
    IDLE_TIMEOUT_MS,
    PROGRESS_TIMEOUT_MS,
    RETAIN_TIMEOUT_MS,
    ZERO_COPY,
    UDP_DROP_BROADCAST,
    UDP_DROP_PRIVILEGED_PORTS,
    UDP_DROP_SERVICE_PORTS,
    UDP_DROP_SPECIAL_SOURCES,
    UDP_RATE_EXEMPT_LOOPBACK,
];

/// The split [`U32_LIMIT_COUNT`] describes: no 0/1 switch among the `u32` limits, only
/// switches after them (so a spec added in the wrong place fails the build).
const _: () = {
    let mut i = 0;
    while i < DWORD_SPECS.len() {
        let s = &DWORD_SPECS[i];
        let switch = s.min == 0 && s.max == 1;
        assert!(switch == (i >= U32_LIMIT_COUNT));
        i += 1;
    }
};

impl DwordSpec {
    pub fn check(&self, v: u32) -> Result<u32, LimitError> {
        if v < self.min || v > self.max {
            Err(LimitError::OutOfRange {
                value: self.name,
                min: self.min,
                max: self.max,
            })
        } else {
            Ok(v)
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        let mut allowed = heapless::Vec::new();
        let _ = allowed.push(Cidr::ANY_V4);
        let _ = allowed.push(Cidr::ANY_V6);
        Limits {
            max_connections: MAX_CONNECTIONS.default,
            max_retained_per_conn: MAX_RETAINED_PER_CONN.default,
            max_retained_total: MAX_RETAINED_TOTAL.default,
            send_ring_bytes: SEND_RING_BYTES.default,
            udp_send_contexts: UDP_SEND_CONTEXTS.default,
            udp_rate_per_source: UDP_RATE_PER_SOURCE.default,
            disconnect_timeout_ms: DISCONNECT_TIMEOUT_MS.default,
            idle_timeout_ms: IDLE_TIMEOUT_MS.default,
            progress_timeout_ms: PROGRESS_TIMEOUT_MS.default,
            retain_timeout_ms: RETAIN_TIMEOUT_MS.default,
            zero_copy: ZERO_COPY.default != 0,
            udp_guard: UdpGuard::default(),
            allowed: AllowList(allowed),
        }
    }
}

impl Limits {
    /// The source allow-list (checked for every UDP datagram and every accepted connection).
    pub fn allowed_sources(&self) -> &[Cidr] {
        &self.allowed.0
    }

    pub fn set_allowed_sources(&mut self, list: &[Cidr]) -> Result<(), LimitError> {
        if list.is_empty() {
            return Err(LimitError::EmptyAllowList);
        }
        self.allowed.0 =
            heapless::Vec::from_slice(list).map_err(|()| LimitError::TooManySources)?;
        Ok(())
    }

    /// Whether a peer may be served.
    pub fn source_allowed(&self, peer: IpAddr) -> bool {
        self.allowed_sources().iter().any(|c| c.contains(peer))
    }

    /// Every field in range, and the cross-field rules.
    pub fn validate(&self) -> Result<(), LimitError> {
        MAX_CONNECTIONS.check(self.max_connections)?;
        MAX_RETAINED_PER_CONN.check(self.max_retained_per_conn)?;
        MAX_RETAINED_TOTAL.check(self.max_retained_total)?;
        SEND_RING_BYTES.check(self.send_ring_bytes)?;
        if !self.send_ring_bytes.is_power_of_two() {
            return Err(LimitError::NotPowerOfTwo);
        }
        UDP_SEND_CONTEXTS.check(self.udp_send_contexts)?;
        UDP_RATE_PER_SOURCE.check(self.udp_rate_per_source)?;
        DISCONNECT_TIMEOUT_MS.check(self.disconnect_timeout_ms)?;
        IDLE_TIMEOUT_MS.check(self.idle_timeout_ms)?;
        PROGRESS_TIMEOUT_MS.check(self.progress_timeout_ms)?;
        RETAIN_TIMEOUT_MS.check(self.retain_timeout_ms)?;
        if self.max_retained_per_conn > self.max_retained_total {
            return Err(LimitError::RetainedAboveTotal);
        }
        if self.allowed.0.is_empty() {
            return Err(LimitError::EmptyAllowList);
        }
        Ok(())
    }

    /// Value of the `u32` field a spec describes (the zero-copy switch as 0/1).
    pub fn dword(&self, name: &str) -> Option<u32> {
        Some(match name {
            n if n == MAX_CONNECTIONS.name => self.max_connections,
            n if n == MAX_RETAINED_PER_CONN.name => self.max_retained_per_conn,
            n if n == MAX_RETAINED_TOTAL.name => self.max_retained_total,
            n if n == SEND_RING_BYTES.name => self.send_ring_bytes,
            n if n == UDP_SEND_CONTEXTS.name => self.udp_send_contexts,
            n if n == UDP_RATE_PER_SOURCE.name => self.udp_rate_per_source,
            n if n == DISCONNECT_TIMEOUT_MS.name => self.disconnect_timeout_ms,
            n if n == IDLE_TIMEOUT_MS.name => self.idle_timeout_ms,
            n if n == PROGRESS_TIMEOUT_MS.name => self.progress_timeout_ms,
            n if n == RETAIN_TIMEOUT_MS.name => self.retain_timeout_ms,
            n if n == ZERO_COPY.name => u32::from(self.zero_copy),
            n if n == UDP_DROP_BROADCAST.name => u32::from(self.udp_guard.drop_broadcast),
            n if n == UDP_DROP_PRIVILEGED_PORTS.name => {
                u32::from(self.udp_guard.drop_privileged_ports)
            }
            n if n == UDP_DROP_SERVICE_PORTS.name => u32::from(self.udp_guard.drop_service_ports),
            n if n == UDP_DROP_SPECIAL_SOURCES.name => {
                u32::from(self.udp_guard.drop_special_sources)
            }
            n if n == UDP_RATE_EXEMPT_LOOPBACK.name => {
                u32::from(self.udp_guard.rate_exempt_loopback)
            }
            _ => return None,
        })
    }

    fn set_dword(&mut self, name: &str, v: u32) -> bool {
        match name {
            n if n == MAX_CONNECTIONS.name => self.max_connections = v,
            n if n == MAX_RETAINED_PER_CONN.name => self.max_retained_per_conn = v,
            n if n == MAX_RETAINED_TOTAL.name => self.max_retained_total = v,
            n if n == SEND_RING_BYTES.name => self.send_ring_bytes = v,
            n if n == UDP_SEND_CONTEXTS.name => self.udp_send_contexts = v,
            n if n == UDP_RATE_PER_SOURCE.name => self.udp_rate_per_source = v,
            n if n == DISCONNECT_TIMEOUT_MS.name => self.disconnect_timeout_ms = v,
            n if n == IDLE_TIMEOUT_MS.name => self.idle_timeout_ms = v,
            n if n == PROGRESS_TIMEOUT_MS.name => self.progress_timeout_ms = v,
            n if n == RETAIN_TIMEOUT_MS.name => self.retain_timeout_ms = v,
            n if n == ZERO_COPY.name => self.zero_copy = v != 0,
            n if n == UDP_DROP_BROADCAST.name => self.udp_guard.drop_broadcast = v != 0,
            n if n == UDP_DROP_PRIVILEGED_PORTS.name => {
                self.udp_guard.drop_privileged_ports = v != 0;
            }
            n if n == UDP_DROP_SERVICE_PORTS.name => self.udp_guard.drop_service_ports = v != 0,
            n if n == UDP_DROP_SPECIAL_SOURCES.name => {
                self.udp_guard.drop_special_sources = v != 0;
            }
            n if n == UDP_RATE_EXEMPT_LOOPBACK.name => {
                self.udp_guard.rate_exempt_loopback = v != 0;
            }
            _ => return false,
        }
        true
    }

    /// Sets a `u32` field by registry name after a range check (the cross-field rules are
    /// checked by [`Limits::validate`]).
    pub fn set_by_name(&mut self, name: &str, v: u32) -> Result<(), LimitError> {
        let spec = DWORD_SPECS.iter().find(|s| s.name == name);
        match spec {
            Some(s) => {
                s.check(v)?;
                if s.name == SEND_RING_BYTES.name && !v.is_power_of_two() {
                    return Err(LimitError::NotPowerOfTwo);
                }
                self.set_dword(name, v);
                Ok(())
            }
            None => Err(LimitError::OutOfRange {
                value: "unknown",
                min: 0,
                max: 0,
            }),
        }
    }
}
