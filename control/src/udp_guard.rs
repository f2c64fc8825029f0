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
#[inline]
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
#[inline]
pub fn is_special_source(ip: IpAddr) -> bool {
    match unmapped(ip) {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_multicast() || v4 == Ipv4Addr::BROADCAST,
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    }
}

/// Loopback sources (127.0.0.0/8, ::1, and their v4-mapped form).
#[inline]
pub fn is_loopback(ip: IpAddr) -> bool {
    unmapped(ip).is_loopback()
}

/// Whether `UdpRateLimitPerSource` applies to a datagram from `ip`.
#[inline]
pub fn rate_limited_source(g: UdpGuard, ip: IpAddr) -> bool {
    !(g.rate_exempt_loopback && is_loopback(ip))
}

/// The first rule (in the order of [`GuardDrop`]) that drops a datagram from `peer`, indicated
/// with `flags`, while `service_ports` are the ports of every configured service; `None`: it
/// may be answered.
#[inline]
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

/// The slot of the table a source's datagrams draw from.
fn slot_of(a: &IpAddr) -> usize {
    hash(a) as usize % RATE_SLOTS
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: u32,
    last: u64,
}

/// Per-source datagram rate limit: `rate` datagrams per second with a burst of `rate`
/// (0 = unlimited), in a fixed table of [`RATE_SLOTS`] token buckets (no allocation).
///
/// A bucket belongs to its slot, not to the first source seen there: every source hashing to
/// a slot draws from the same bucket. So over any span of `t` seconds the sources of one slot
/// together, and therefore any one source, are answered at most `rate * (1 + t)` times. A
/// source that collides with another never gets more than the limit (taking a slot over used
/// to hand out a full bucket, so two alternating sources were answered without limit); it can
/// get less, sharing the bucket with the sources of its slot.
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

    /// Takes a token for a datagram from `a` at time `now` (ticks of `freq`); false: over
    /// the limit, drop it.
    pub fn allow(&mut self, a: &IpAddr, now: u64) -> bool {
        if self.rate == 0 {
            return true;
        }
        let rate = self.rate;
        let b = self.slots[slot_of(a)].get_or_insert(Bucket {
            tokens: rate,
            last: now,
        });
        let elapsed = now.saturating_sub(b.last);
        let add = (u128::from(elapsed) * u128::from(rate) / u128::from(self.freq.max(1))) as u64;
        if add > 0 {
            b.tokens = (u64::from(b.tokens) + add).min(u64::from(rate)) as u32;
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
        // Another source of another slot has its own bucket: never refused at first.
        assert_ne!(slot_of(&a), slot_of(&b));
        assert!(r.allow(&b, 1000));
        assert!(RateLimiter::new(0, 1).allow(&a, 0));
    }

    /// Issue 17 item 5: 127.0.0.2 and 127.0.0.66 share a slot. Alternating, each used to take
    /// the slot over with a full bucket: 200 of 200 answered at a limit of 5/s. Now they share
    /// the slot's bucket: together at most `rate * (1 + t)` over `t` seconds.
    #[test]
    fn colliding_sources_never_get_more_than_the_limit() {
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.66".parse().unwrap();
        assert_eq!(slot_of(&a), slot_of(&b), "the pair collides");
        let other: IpAddr = "192.0.2.7".parse().unwrap();
        assert_ne!(slot_of(&a), slot_of(&other));
        let rate = 5u32;
        let freq = 1000u64;
        // All at once: one burst between them.
        let mut r = RateLimiter::new(rate, freq);
        let ok = (0..200)
            .filter(|i| r.allow(if i % 2 == 0 { &a } else { &b }, 0))
            .count();
        assert_eq!(ok, rate as usize, "200 alternating datagrams at t=0");
        // Spread over 10 s (a datagram every 50 ms, alternating): each source, and the pair,
        // within rate * (1 + t).
        let mut r = RateLimiter::new(rate, freq);
        let (mut na, mut nb, mut nother) = (0u64, 0u64, 0u64);
        for i in 0..200u64 {
            let now = i * 50;
            if r.allow(if i % 2 == 0 { &a } else { &b }, now) {
                if i % 2 == 0 {
                    na += 1;
                } else {
                    nb += 1;
                }
            }
            nother += u64::from(r.allow(&other, now));
        }
        let t = 199 * 50 / freq; // seconds spanned, rounded down
        let bound = u64::from(rate) * (1 + t + 1);
        assert!(na + nb <= bound, "pair answered {na} + {nb} > {bound}");
        assert!(
            na + nb >= u64::from(rate) * t,
            "the pair still gets its share: {na} + {nb}"
        );
        // A source of another slot keeps its own bucket: rate * (1 + t) of its 200.
        assert!(nother <= bound && nother >= u64::from(rate) * t, "{nother}");
    }

    /// Any number of sources, any collisions: each source is answered at most `rate * (1 + t)`
    /// times (here a thousand sources, 64 slots, a flood at one instant: at most one burst
    /// per slot in total).
    #[test]
    fn any_source_stays_within_the_bound_whatever_collides() {
        let rate = 3u32;
        let mut r = RateLimiter::new(rate, 1);
        let mut per = [0u32; 1000];
        for _round in 0..20 {
            for (k, n) in per.iter_mut().enumerate() {
                let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + k as u32));
                *n += u32::from(r.allow(&ip, 0));
            }
        }
        let total: u32 = per.iter().sum();
        assert!(per.iter().all(|&n| n <= rate));
        assert!(total <= rate * RATE_SLOTS as u32, "{total}");
    }
}
