//! Resource limits and hardening knobs, each with a registry name, a range and a default.
//!
//! Every limit is defined once, in the `limit_table!` below: its field (with the field's
//! documentation), registry name, range, default, whether `config set` changes it on a running
//! driver ([`Apply`]) and the line `echoload driver config` prints. The spec constants, the
//! structs [`Limits`] and [`UdpGuard`], their defaults, the range checks, the by-name and
//! by-[`Limit`] accessors and [`DWORD_SPECS`] are generated from it; the driver's live copy
//! (`LiveLimits`) is an array indexed by [`Limit`]. The control ABI's versioned wire layout
//! stays written out (ioctl/msg.rs), checked against this table at compile time.

use super::{Cidr, MAX_ALLOWED_SOURCES};
use core::net::IpAddr;

/// Whether a running driver applies a `config set` of a limit at once or only after a
/// restart (its pools are sized from it at start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Apply {
    /// Changed at once, open connections and sockets included.
    Live,
    /// Read at start only; a running driver refuses a change.
    Restart,
}

/// A limit's value as the registry and the control ABI carry it: a `u32`, or 0/1 for a switch.
pub trait Dword: Copy {
    fn to_dword(self) -> u32;
    fn from_dword(v: u32) -> Self;
}

impl Dword for u32 {
    fn to_dword(self) -> u32 {
        self
    }
    fn from_dword(v: u32) -> Self {
        v
    }
}

impl Dword for bool {
    fn to_dword(self) -> u32 {
        u32::from(self)
    }
    fn from_dword(v: u32) -> Self {
        v != 0
    }
}

/// Generates the limits from their table: the spec constants, [`Limit`], [`DWORD_SPECS`],
/// the [`Limits`] and [`UdpGuard`] structs and their defaults, [`Limits::get`] and
/// [`Limits::put`]. An entry is
/// `Id / SPEC_CONST: field: type = ("RegistryName", min, max, default, Live|Restart, "doc");`
/// with the field's documentation above it.
macro_rules! limit_table {
    (
        $(#[$lmeta:meta])*
        pub struct $L:ident { $(
            $(#[doc = $ldoc:literal])*
            $lid:ident / $LC:ident : $lf:ident : $lt:ty =
                ($lname:literal, $lmin:expr, $lmax:expr, $ldef:expr, $lapply:ident, $lline:literal);
        )* }
        $(#[$gmeta:meta])*
        pub struct $G:ident in $gfield:ident { $(
            $(#[doc = $gdoc:literal])*
            $gid:ident / $GC:ident : $gf:ident : $gt:ty =
                ($gname:literal, $gmin:expr, $gmax:expr, $gdef:expr, $gapply:ident, $gline:literal);
        )* }
    ) => {
        $(
            pub const $LC: DwordSpec = DwordSpec {
                name: $lname, min: $lmin, max: $lmax, default: $ldef, doc: $lline,
                apply: Apply::$lapply,
            };
        )*
        $(
            pub const $GC: DwordSpec = DwordSpec {
                name: $gname, min: $gmin, max: $gmax, default: $gdef, doc: $gline,
                apply: Apply::$gapply,
            };
        )*

        /// Every limit, in registry order (the order of [`DWORD_SPECS`]).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Limit { $($lid,)* $($gid,)* }

        /// How many limits there are.
        pub const LIMIT_COUNT: usize = [$(stringify!($lid),)* $(stringify!($gid),)*].len();

        impl Limit {
            /// Every limit, in registry order.
            pub const ALL: [Limit; LIMIT_COUNT] = [$(Limit::$lid,)* $(Limit::$gid,)*];

            /// Its registry name, range, default and doc line.
            pub const fn spec(self) -> &'static DwordSpec {
                match self {
                    $(Limit::$lid => &$LC,)*
                    $(Limit::$gid => &$GC,)*
                }
            }

            /// The limit with registry name `name`.
            pub fn from_name(name: &str) -> Option<Limit> {
                Limit::ALL.into_iter().find(|l| l.spec().name == name)
            }
        }

        /// The registry `REG_DWORD`s, in registry order: first the [`U32_LIMIT_COUNT`]
        /// bounded `u32` limits, then the 0/1 switches.
        pub const DWORD_SPECS: [DwordSpec; LIMIT_COUNT] = [$($LC,)* $($GC,)*];

        $(#[$gmeta])*
        pub struct $G { $( $(#[doc = $gdoc])* pub $gf: $gt, )* }

        impl Default for $G {
            fn default() -> Self {
                $G { $( $gf: <$gt as Dword>::from_dword($GC.default), )* }
            }
        }

        $(#[$lmeta])*
        pub struct $L {
            $( $(#[doc = $ldoc])* pub $lf: $lt, )*
            /// The UDP reflection guard (see [`UdpGuard`]).
            pub $gfield: $G,
            allowed: AllowList,
        }

        impl $L {
            /// The defaults, with `allowed` as the allow-list.
            fn with_allow_list(allowed: AllowList) -> Self {
                $L {
                    $( $lf: <$lt as Dword>::from_dword($LC.default), )*
                    $gfield: $G::default(),
                    allowed,
                }
            }

            /// The value of `limit` as the registry holds it (a switch as 0/1).
            pub fn get(&self, limit: Limit) -> u32 {
                match limit {
                    $(Limit::$lid => Dword::to_dword(self.$lf),)*
                    $(Limit::$gid => Dword::to_dword(self.$gfield.$gf),)*
                }
            }

            /// Stores `v` without a check ([`Limits::set`] checks the range).
            fn put(&mut self, limit: Limit, v: u32) {
                match limit {
                    $(Limit::$lid => self.$lf = <$lt as Dword>::from_dword(v),)*
                    $(Limit::$gid => self.$gfield.$gf = <$gt as Dword>::from_dword(v),)*
                }
            }
        }
    };
}

limit_table! {
    /// Resource limits and hardening knobs. Every field has a range, checked by
    /// [`Limits::validate`]; the driver sizes its pools from these at start. Not `Copy` (the
    /// allow-list is a `heapless::Vec`).
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Limits {
        /// Accepted TCP connections alive at once, over all services; more are refused.
        MaxConnections / MAX_CONNECTIONS: max_connections: u32 = ("MaxConnections", 1, 65_536,
            1024, Restart,
            "TCP connections alive at once over all services; more are refused and counted");
        /// Receive-indication bytes one connection may hold for zero-copy echo.
        MaxRetainedPerConn / MAX_RETAINED_PER_CONN: max_retained_per_conn: u32 = (
            "MaxRetainedBytesPerConnection", 0, 16 << 20, 256 << 10, Live,
            "receive-buffer bytes one connection may hold for zero-copy echo (0: copy path only)");
        /// Receive-indication bytes the whole driver may hold.
        MaxRetainedTotal / MAX_RETAINED_TOTAL: max_retained_total: u32 = ("MaxRetainedBytes", 0,
            1 << 30, 64 << 20, Restart,
            "receive-buffer bytes the whole driver may hold for zero-copy echo");
        /// Copy-path send ring per connection, bytes (power of two).
        SendRingBytes / SEND_RING_BYTES: send_ring_bytes: u32 = ("SendRingBytes", 4096, 1 << 20,
            32 << 10, Restart, "copy-path send ring per TCP connection, bytes, power of two");
        /// Pre-allocated send contexts per UDP socket; past them datagrams are dropped and
        /// counted.
        UdpSendContexts / UDP_SEND_CONTEXTS: udp_send_contexts: u32 = ("UdpSendContexts", 1,
            65_536, 256, Restart,
            "pre-allocated send contexts per UDP socket; datagrams past them are dropped and counted");
        /// Datagrams per second accepted from one source address; 0 = no limit.
        UdpRatePerSource / UDP_RATE_PER_SOURCE: udp_rate_per_source: u32 = (
            "UdpRateLimitPerSource", 0, 10_000_000, 1000, Live,
            "datagrams per second answered per source address, burst as large (0: no limit; loopback exempt by UdpRateLimitExemptLoopback)");
        /// How long unload waits for a graceful disconnect before aborting, milliseconds.
        DisconnectTimeoutMs / DISCONNECT_TIMEOUT_MS: disconnect_timeout_ms: u32 = (
            "DisconnectTimeoutMs", 0, 60_000, 2000, Live,
            "graceful disconnect wait at stop/unload before connections are aborted, ms");
        /// A TCP connection that has received nothing and has nothing left to send for this
        /// long is closed gracefully (FIN), milliseconds; 0 = never.
        IdleTimeoutMs / IDLE_TIMEOUT_MS: idle_timeout_ms: u32 = ("IdleTimeoutMs", 0, 86_400_000,
            300_000, Live,
            "a TCP connection that has received nothing and has nothing left to send for this long is closed gracefully (FIN), ms; 0: never");
        /// A TCP connection whose echo makes no progress for this long (sends pending and
        /// none completing, or received data it cannot send: a peer that never reads) is
        /// aborted and its buffers released, milliseconds; 0 = never.
        ProgressTimeoutMs / PROGRESS_TIMEOUT_MS: progress_timeout_ms: u32 = ("ProgressTimeoutMs",
            0, 3_600_000, 30_000, Live,
            "a TCP connection whose echo makes no progress for this long (sends pending and none completing, or received data it cannot send: a peer that never reads) is aborted and its buffers released, ms; 0: never");
        /// Receive buffers held for zero-copy echo longer than this move the connection to the
        /// copy path (back-pressure), milliseconds; 0 = never.
        RetainTimeoutMs / RETAIN_TIMEOUT_MS: retain_timeout_ms: u32 = ("RetainTimeoutMs", 0,
            60_000, 1_000, Live,
            "receive buffers held for zero-copy echo longer than this move the connection to the copy path (back-pressure), ms; 0: never");
        /// Allow the zero-copy TCP echo path (false forces the copy path; for benchmarks).
        ZeroCopy / ZERO_COPY: zero_copy: bool = ("EnableZeroCopy", 0, 1, 1, Live,
            "1: TCP echo may send the received buffers back without copying; 0: always copy");
    }
    /// The UDP reflection and loop guard: which datagrams a UDP service drops (and counts)
    /// before answering. Every switch is on by default; `rate_exempt_loopback` keeps
    /// `UdpRateLimitPerSource` off loopback sources so local benchmarks are never limited.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct UdpGuard in udp_guard {
        /// Drop datagrams WSK indicates with MSG_BCAST or MSG_MCAST (sent to a broadcast or
        /// multicast address: one spoofed request would draw replies from every listener).
        UdpDropBroadcast / UDP_DROP_BROADCAST: drop_broadcast: bool = ("UdpDropBroadcast", 0, 1,
            1, Live,
            "1: drop UDP datagrams sent to a broadcast or multicast address (MSG_BCAST/MSG_MCAST)");
        /// Drop datagrams from source ports 0-1023 (echo, chargen, DNS, NTP, ...: the
        /// reflection partners of CVE-2024-2169 / VU#417980).
        UdpDropPrivilegedPorts / UDP_DROP_PRIVILEGED_PORTS: drop_privileged_ports: bool = (
            "UdpDropPrivilegedSourcePorts", 0, 1, 1, Live,
            "1: drop UDP datagrams from source ports 0-1023 (other UDP services: reflection)");
        /// Drop datagrams whose source port is a port of any configured service (TCP or UDP):
        /// a spoofed datagram from one of our own services would start an endless ping-pong.
        UdpDropServicePorts / UDP_DROP_SERVICE_PORTS: drop_service_ports: bool = (
            "UdpDropServiceSourcePorts", 0, 1, 1, Live,
            "1: drop UDP datagrams whose source port is a configured service's port (echo loops)");
        /// Drop datagrams from unspecified, multicast or limited-broadcast source addresses
        /// (never a legitimate sender; a reply would fan out).
        UdpDropSpecialSources / UDP_DROP_SPECIAL_SOURCES: drop_special_sources: bool = (
            "UdpDropSpecialSources", 0, 1, 1, Live,
            "1: drop UDP datagrams from unspecified, multicast or broadcast source addresses");
        /// Loopback sources are not rate limited.
        UdpRateExemptLoopback / UDP_RATE_EXEMPT_LOOPBACK: rate_exempt_loopback: bool = (
            "UdpRateLimitExemptLoopback", 0, 1, 1, Live,
            "1: UdpRateLimitPerSource does not apply to loopback sources (local benchmarks)");
    }
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

/// One limit: registry name, range, default, doc line and whether it applies live.
#[derive(Clone, Copy, Debug)]
pub struct DwordSpec {
    pub name: &'static str,
    pub min: u32,
    pub max: u32,
    pub default: u32,
    pub doc: &'static str,
    pub apply: Apply,
}

/// How many of [`DWORD_SPECS`] are bounded `u32` limits (the rest are 0/1 switches). The
/// control ABI's limits block carries these as `u32`s, in this order, and the switches as
/// bits of its flags word; a compile-time check below keeps the split honest.
pub const U32_LIMIT_COUNT: usize = 10;

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
        Limits::with_allow_list(AllowList(allowed))
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
        for l in Limit::ALL {
            l.spec().check(self.get(l))?;
        }
        if !self.send_ring_bytes.is_power_of_two() {
            return Err(LimitError::NotPowerOfTwo);
        }
        if self.max_retained_per_conn > self.max_retained_total {
            return Err(LimitError::RetainedAboveTotal);
        }
        if self.allowed.0.is_empty() {
            return Err(LimitError::EmptyAllowList);
        }
        Ok(())
    }

    /// Value of the limit with registry name `name` (a switch as 0/1).
    pub fn dword(&self, name: &str) -> Option<u32> {
        Limit::from_name(name).map(|l| self.get(l))
    }

    /// Sets `limit` after its range check (the cross-field rules are checked by
    /// [`Limits::validate`]).
    pub fn set(&mut self, limit: Limit, v: u32) -> Result<(), LimitError> {
        limit.spec().check(v)?;
        if limit == Limit::SendRingBytes && !v.is_power_of_two() {
            return Err(LimitError::NotPowerOfTwo);
        }
        self.put(limit, v);
        Ok(())
    }

    /// Sets a limit by registry name after a range check (the cross-field rules are
    /// checked by [`Limits::validate`]).
    pub fn set_by_name(&mut self, name: &str, v: u32) -> Result<(), LimitError> {
        match Limit::from_name(name) {
            Some(l) => self.set(l, v),
            None => Err(LimitError::OutOfRange {
                value: "unknown",
                min: 0,
                max: 0,
            }),
        }
    }

    /// Whether `other` differs from `self` only in limits a running driver applies at once
    /// ([`Apply::Live`]) and the allow-list.
    pub fn only_live_changes(&self, other: &Limits) -> bool {
        Limit::ALL
            .into_iter()
            .all(|l| l.spec().apply == Apply::Live || self.get(l) == other.get(l))
    }
}
