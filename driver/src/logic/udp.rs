//! UDP hardening, platform-free: a per-source token-bucket rate limit in a fixed table (no
//! allocation; the caller holds the socket's spin lock). The CIDR allow-list itself is the
//! control crate's (`Limits::source_allowed`), shared with the TCP accept path.

use core::net::IpAddr;

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

    pub fn allow(&mut self, a: &IpAddr, now: u64) -> bool {
        if self.rate == 0 {
            return true;
        }
        let i = hash(a) as usize % RATE_SLOTS;
        let slot = &mut self.slots[i];
        if !slot.is_some_and(|b| b.addr == *a) {
            *slot = Some(Bucket {
                addr: *a,
                tokens: self.rate,
                last: now,
            });
        }
        let Some(b) = slot.as_mut() else {
            return true;
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
    use core::net::Ipv4Addr;

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
