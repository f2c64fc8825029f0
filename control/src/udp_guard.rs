//! The UDP reflection and loop guard, shared by the driver and `echoload serve` so both apply
//! the same rules: which datagrams a UDP service drops before answering, which sources the
//! per-source rate limit applies to, and the limiter itself (a fixed table, no allocation).
//!
//! Echo answers whoever the source address claims to be, so a spoofed datagram turns the
//! service into a reflector (CERT VU#417980, CVE-2024-2169): aimed at another echo-like
//! service it starts an endless ping-pong, aimed at a broadcast or multicast group its replies
//! fan out. The rules (each switched by a registry value of [`UdpGuard`]) drop those datagrams
//! and name the reason, so each is counted on its own.

use crate::config::UdpGuard;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};

/// ws2def.h: the datagram was sent to a broadcast / multicast address (the WskReceiveFromEvent
/// Flags of the list it arrived in). Plain numbers here (this crate names nothing of wsk-sys);
/// a unit test in the driver checks they equal wsk-sys's.
pub const MSG_BCAST: u32 = 0x0400;
pub const MSG_MCAST: u32 = 0x0800;

/// Why a datagram is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardDrop {
    /// Flagged MSG_BCAST or MSG_MCAST.
    Broadcast,
    /// Unspecified, multicast or limited-broadcast source address.
    SpecialSource,
    /// Source port 0-1023.
    PrivilegedPort,
    /// Source port of one of our configured services.
    ServicePort,
}

/// The IPv4 address an IPv4-mapped IPv6 address stands for (a dual-stack socket reports v4
/// peers that way), so a v4 rule cannot be bypassed through the v6 form.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// Never a legitimate sender: unspecified (0.0.0.0, ::), multicast (224.0.0.0/4, ff00::/8) or
/// the IPv4 limited broadcast 255.255.255.255. A subnet's directed-broadcast address cannot be
/// recognised from the address alone (it depends on the interface's prefix length); datagrams
/// *sent to* one arrive flagged MSG_BCAST and are caught by that rule instead.
pub fn is_special_source(ip: IpAddr) -> bool {
    match unmapped(ip) {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_multicast() || v4 == Ipv4Addr::BROADCAST,
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    }
}

/// Loopback sources (127.0.0.0/8, ::1, and their v4-mapped form).
pub fn is_loopback(ip: IpAddr) -> bool {
    unmapped(ip).is_loopback()
}

/// Whether `UdpRateLimitPerSource` applies to a datagram from `ip`.
pub fn rate_limited_source(g: UdpGuard, ip: IpAddr) -> bool {
    !(g.rate_exempt_loopback && is_loopback(ip))
}

/// The first rule (in the order of [`GuardDrop`]) that drops a datagram from `peer`, indicated
/// with `flags`, while `service_ports` are the ports of every configured service; `None`: it
/// may be answered.
pub fn check(
    g: UdpGuard,
    flags: u32,
    peer: SocketAddr,
    mut service_ports: impl Iterator<Item = u16>,
) -> Option<GuardDrop> {
    if g.drop_broadcast && flags & (MSG_BCAST | MSG_MCAST) != 0 {
        return Some(GuardDrop::Broadcast);
    }
    if g.drop_special_sources && is_special_source(peer.ip()) {
        return Some(GuardDrop::SpecialSource);
    }
    if g.drop_privileged_ports && peer.port() < 1024 {
        return Some(GuardDrop::PrivilegedPort);
    }
    if g.drop_service_ports && service_ports.any(|p| p == peer.port()) {
        return Some(GuardDrop::ServicePort);
    }
    None
}

fn hash(a: &IpAddr) -> u32 {
    // FNV-1a: cheap and good enough to spread sources over the table.
    let mut h: u32 = 0x811c_9dc5;
    let mut eat = |b: u8| h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    match a {
        IpAddr::V4(v) => v.octets().into_iter().for_each(&mut eat),
        IpAddr::V6(v) => v.octets().into_iter().for_each(&mut eat),
    }
    h
}

pub const RATE_SLOTS: usize = 64;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    addr: IpAddr,
    tokens: u32,
    last: u64,
}

/// Per-source datagram rate limit: `rate` datagrams per second with a burst of `rate`
/// (0 = unlimited). Sources hash into a fixed table; a colliding source takes the slot over,
/// which can only make the limiter more lenient, never block a legitimate source forever.
#[derive(Clone, Copy, Debug)]
pub struct RateLimiter {
    rate: u32,
    /// Ticks per second of the clock passed in (KeQueryPerformanceCounter frequency).
    freq: u64,
    slots: [Option<Bucket>; RATE_SLOTS],
}

impl RateLimiter {
    pub const fn new(rate: u32, freq: u64) -> Self {
        Self {
            rate,
            freq,
            slots: [None; RATE_SLOTS],
        }
    }

    /// Changes the rate (datagrams per second per source, 0 = no limit) while running; the
    /// buckets keep their tokens, capped at the new rate on their next refill.
    pub fn set_rate(&mut self, rate: u32) {
        self.rate = rate;
    }

    pub fn allow(&mut self, a: &IpAddr, now: u64) -> bool {
        if self.rate == 0 {
            return true;
        }
        let i = hash(a) as usize % RATE_SLOTS;
        let b = match &mut self.slots[i] {
            Some(b) if b.addr == *a => b,
            s => {
                *s = Some(Bucket {
                    addr: *a,
                    tokens: self.rate,
                    last: now,
                });
                s.as_mut().expect("just set")
            }
        };
        let elapsed = now.saturating_sub(b.last);
        let add =
            (u128::from(elapsed) * u128::from(self.rate) / u128::from(self.freq.max(1))) as u64;
        if add > 0 {
            b.tokens = (u64::from(b.tokens) + add).min(u64::from(self.rate)) as u32;
            b.last = now;
        }
        if b.tokens > 0 {
            b.tokens -= 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::Ipv6Addr;

    fn sa(ip: &str, port: u16) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), port)
    }

    const NONE: [u16; 0] = [];

    #[test]
    fn each_rule_drops_and_names_its_reason() {
        let g = UdpGuard::default();
        let ok = sa("192.0.2.1", 40000);
        assert_eq!(check(g, 0, ok, NONE.into_iter()), None);
        assert_eq!(
            check(g, MSG_BCAST, ok, NONE.into_iter()),
            Some(GuardDrop::Broadcast)
        );
        assert_eq!(
            check(g, MSG_MCAST, ok, NONE.into_iter()),
            Some(GuardDrop::Broadcast)
        );
        for bad in [
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "::",
            "ff02::1",
            "::ffff:255.255.255.255",
            "::ffff:224.0.0.251",
        ] {
            assert_eq!(
                check(g, 0, sa(bad, 40000), NONE.into_iter()),
                Some(GuardDrop::SpecialSource),
                "{bad}"
            );
        }
        for p in [0, 7, 19, 53, 123, 1023] {
            assert_eq!(
                check(g, 0, sa("192.0.2.1", p), NONE.into_iter()),
                Some(GuardDrop::PrivilegedPort),
                "{p}"
            );
        }
        assert_eq!(check(g, 0, sa("192.0.2.1", 1024), NONE.into_iter()), None);
        assert_eq!(
            check(g, 0, sa("127.0.0.1", 7007), [7009, 7007].into_iter()),
            Some(GuardDrop::ServicePort)
        );
        assert_eq!(
            check(g, 0, sa("127.0.0.1", 7008), [7009, 7007].into_iter()),
            None
        );
    }

    #[test]
    fn each_rule_can_be_switched_off() {
        let off = UdpGuard {
            drop_broadcast: false,
            drop_privileged_ports: false,
            drop_service_ports: false,
            drop_special_sources: false,
            rate_exempt_loopback: false,
        };
        assert_eq!(
            check(
                off,
                MSG_BCAST | MSG_MCAST,
                sa("0.0.0.0", 7),
                [7].into_iter()
            ),
            None
        );
        let only_ports = UdpGuard {
            drop_privileged_ports: true,
            ..off
        };
        assert_eq!(
            check(only_ports, MSG_BCAST, sa("224.0.0.1", 7), NONE.into_iter()),
            Some(GuardDrop::PrivilegedPort)
        );
    }

    #[test]
    fn loopback_is_exempt_from_the_rate_limit_only_when_asked() {
        let g = UdpGuard::default();
        for lo in [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V4(Ipv4Addr::new(127, 1, 2, 3)),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped()),
        ] {
            assert!(!rate_limited_source(g, lo), "{lo}");
        }
        assert!(rate_limited_source(g, "192.0.2.1".parse().unwrap()));
        assert!(rate_limited_source(g, "2001:db8::1".parse().unwrap()));
        let strict = UdpGuard {
            rate_exempt_loopback: false,
            ..g
        };
        assert!(rate_limited_source(strict, IpAddr::V4(Ipv4Addr::LOCALHOST)));
    }

    #[test]
    fn ordinary_sources_are_not_special() {
        for ip in [
            "192.0.2.1",
            "10.255.255.255",
            "127.0.0.1",
            "::1",
            "2001:db8::1",
        ] {
            assert!(!is_special_source(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn rate_limit_refills() {
        let mut r = RateLimiter::new(3, 1000);
        let a = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let b = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        assert!((0..3).all(|_| r.allow(&a, 0)));
        assert!(!r.allow(&a, 0));
        assert!(!r.allow(&a, 300), "0.3 s refills less than one token");
        assert!(r.allow(&a, 1000), "one second later the bucket refilled");
        // Another source has its own bucket (or takes the slot over): never refused at first.
        assert!(r.allow(&b, 1000));
        assert!(RateLimiter::new(0, 1).allow(&a, 0));
    }
}
