//! The UDP reflection and loop guard of `echoload serve`: the driver's rules, from the same
//! code (`control::udp_guard`), with the same defaults (`control::config::UdpGuard` and
//! `UdpRateLimitPerSource`). One `Guard` per receiving thread: the rate-limit table is not
//! shared, so with several workers a source spreading its datagrams over several source ports
//! (which SO_REUSEPORT may hash to different workers) can get up to `threads` times the rate.
//!
//! MSG_BCAST/MSG_MCAST: Linux reports no such receive flags, and the portable back end sees
//! no destination address; a socket bound to a unicast address (the default 127.0.0.1)
//! never receives broadcast or multicast datagrams, so the rule needs nothing there. With a
//! wildcard bind the broadcast rule is not enforced by `echoload serve` (the other rules are).

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use control::config::UdpGuard;
use control::udp_guard::{check, rate_limited_source, GuardDrop, RateLimiter};

use super::Counters;

/// The guard's settings (`echoload serve --udp-...` flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuardConfig {
    pub rules: UdpGuard,
    /// Datagrams per second answered per source address (0: no limit).
    pub rate_per_source: u32,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            rules: UdpGuard::default(),
            rate_per_source: control::config::UDP_RATE_PER_SOURCE.default,
        }
    }
}

/// Says so when the rate limit starts dropping a source's datagrams: once per source, for the
/// first [`Announcer::MAX_LINES`] sources (then once that more go unannounced), on stderr.
/// Shared by every worker of one server.
#[derive(Debug, Default)]
pub(crate) struct Announcer {
    seen: Mutex<HashSet<IpAddr>>,
}

impl Announcer {
    pub(crate) const MAX_LINES: usize = 32;

    /// The rate limit dropped a datagram from `ip` (limit `rate` per second).
    fn limiting(&self, ip: IpAddr, rate: u32) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.len() > Self::MAX_LINES || !seen.insert(ip) {
            return;
        }
        if seen.len() > Self::MAX_LINES {
            eprintln!(
                "echoload serve: more sources are being rate limited (not listed; \
                 udp_drop_rate in the counters)"
            );
        } else {
            eprintln!(
                "echoload serve: UDP from {ip} is over {rate} datagrams/s: answering at most \
                 {rate}/s from it (the per-source rate limit, a reflection guard); \
                 --udp-rate-limit-per-source 0 lifts it{}",
                if ip.is_loopback() {
                    ""
                } else {
                    " (loopback sources are exempt by default)"
                }
            );
        }
    }

    /// The sources announced so far.
    pub(crate) fn sources(&self) -> Vec<IpAddr> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .copied()
            .collect()
    }
}

pub(crate) struct Guard {
    cfg: GuardConfig,
    announce: Option<Arc<Announcer>>,
    /// Ports of every service we serve, TCP and UDP.
    own_ports: Vec<u16>,
    rate: RateLimiter,
    t0: Instant,
}

impl Guard {
    pub(crate) fn new(cfg: GuardConfig, own_ports: Vec<u16>) -> Self {
        Guard {
            cfg,
            own_ports,
            // Nanoseconds since `t0` are the limiter's clock.
            rate: RateLimiter::new(cfg.rate_per_source, 1_000_000_000),
            t0: Instant::now(),
            announce: None,
        }
    }

    /// Announces each source the rate limit starts dropping through `a`.
    pub(crate) fn announcing(mut self, a: Arc<Announcer>) -> Self {
        self.announce = Some(a);
        self
    }

    /// Whether a datagram (or GRO burst of `n` datagrams) from `peer` may be answered; when
    /// not, it is counted under its reason (and in `udp_dropped`).
    pub(crate) fn admit(&mut self, peer: SocketAddr, n: u64, c: &mut Counters) -> bool {
        if let Some(why) = check(self.cfg.rules, 0, peer, self.own_ports.iter().copied()) {
            let slot = match why {
                GuardDrop::Broadcast => &mut c.udp_drop_broadcast,
                GuardDrop::SpecialSource => &mut c.udp_drop_special_source,
                GuardDrop::PrivilegedPort => &mut c.udp_drop_privileged_port,
                GuardDrop::ServicePort => &mut c.udp_drop_service_port,
            };
            *slot += n;
            c.udp_dropped += n;
            return false;
        }
        if rate_limited_source(self.cfg.rules, peer.ip()) {
            let now = self.t0.elapsed().as_nanos() as u64;
            // A GRO burst takes one token per datagram; it is answered whole or not at all.
            let mut ok = true;
            for _ in 0..n {
                ok &= self.rate.allow(&peer.ip(), now);
            }
            if !ok {
                c.udp_drop_rate += n;
                c.udp_dropped += n;
                if let Some(a) = &self.announce {
                    a.limiting(peer.ip(), self.cfg.rate_per_source);
                }
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn each_reason_is_counted_apart() {
        let mut g = Guard::new(GuardConfig::default(), vec![7007, 7009]);
        let mut c = Counters::default();
        assert!(g.admit(sa("127.0.0.1:40000"), 1, &mut c));
        assert!(!g.admit(sa("127.0.0.1:53"), 1, &mut c));
        assert!(!g.admit(sa("127.0.0.2:7009"), 2, &mut c));
        assert!(!g.admit(sa("0.0.0.0:40000"), 1, &mut c));
        assert!(!g.admit(sa("[ff02::1]:40000"), 1, &mut c));
        assert!(!g.admit(sa("255.255.255.255:40000"), 1, &mut c));
        assert_eq!(c.udp_drop_privileged_port, 1);
        assert_eq!(c.udp_drop_service_port, 2);
        assert_eq!(c.udp_drop_special_source, 3);
        assert_eq!(c.udp_dropped, 6);
        assert_eq!(c.udp_drop_rate, 0);
    }

    #[test]
    fn non_loopback_sources_meet_the_default_rate_limit_loopback_does_not() {
        let cfg = GuardConfig::default();
        assert!(cfg.rate_per_source > 0);
        let mut g = Guard::new(cfg, Vec::new());
        let mut c = Counters::default();
        // Well past the burst (one second's worth) at once: a remote source is cut off ...
        let n = u64::from(cfg.rate_per_source) * 2;
        let remote = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 40000);
        let answered = (0..n).filter(|_| g.admit(remote, 1, &mut c)).count() as u64;
        assert!(answered <= u64::from(cfg.rate_per_source) + 1, "{answered}");
        assert!(c.udp_drop_rate >= n - answered);
        // ... a loopback one never.
        let mut c = Counters::default();
        assert!((0..n).all(|_| g.admit(sa("127.0.0.1:40000"), 1, &mut c)));
        assert_eq!(c.udp_drop_rate, 0);
    }

    /// Issue 21: the rate limit announces each source it drops, once, through every guard
    /// that shares the announcer; past MAX_LINES sources it stops listing them.
    #[test]
    fn limited_sources_are_announced_once() {
        let cfg = GuardConfig {
            rate_per_source: 2,
            ..GuardConfig::default()
        };
        let a = Arc::new(Announcer::default());
        let mut g1 = Guard::new(cfg, Vec::new()).announcing(a.clone());
        let mut g2 = Guard::new(cfg, Vec::new()).announcing(a.clone());
        let mut c = Counters::default();
        let remote = sa("192.0.2.1:40000");
        for _ in 0..10 {
            g1.admit(remote, 1, &mut c);
            g2.admit(remote, 1, &mut c);
        }
        assert_eq!(a.sources(), vec![remote.ip()]);
        for i in 0..100u8 {
            let src = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, i)), 40000);
            for _ in 0..5 {
                g1.admit(src, 1, &mut c);
            }
        }
        assert_eq!(a.sources().len(), Announcer::MAX_LINES + 1);
    }

    /// Issue 17 item 5 in `echoload serve`: 127.0.0.2 and 127.0.0.66 share a slot of the
    /// limiter; alternating, the pair gets one source's limit between them, not a full
    /// bucket at each switch.
    #[test]
    fn colliding_sources_share_one_limit() {
        let cfg = GuardConfig {
            rate_per_source: 5,
            rules: control::config::UdpGuard {
                rate_exempt_loopback: false,
                ..GuardConfig::default().rules
            },
        };
        let mut g = Guard::new(cfg, Vec::new());
        let mut c = Counters::default();
        let t0 = std::time::Instant::now();
        let answered = (0..200)
            .filter(|i| {
                let src = if i % 2 == 0 {
                    "127.0.0.2:40000"
                } else {
                    "127.0.0.66:40000"
                };
                g.admit(sa(src), 1, &mut c)
            })
            .count() as u64;
        // At most rate * (1 + t) over the t seconds the loop took (rounded up).
        let bound = 5 * (2 + t0.elapsed().as_secs());
        assert!(answered <= bound, "{answered} > {bound}");
        assert_eq!(c.udp_drop_rate, 200 - answered);
    }
}
