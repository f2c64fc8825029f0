//! The limits the data path reads while the driver runs, changeable by `config set` without a
//! restart.
//!
//! Callbacks run at DISPATCH_LEVEL on every CPU while the control path replaces the
//! configuration, so they never read `Driver::config` (the control path's own copy): each
//! scalar lives here in an atomic, and the allow-list is double-buffered. A reader of the list
//! registers in the buffer it is about to read (a count per buffer) and re-checks that the
//! buffer is still the active one; the writer (the serialised control path, PASSIVE_LEVEL)
//! fills the inactive buffer only once that buffer's reader count is zero, then swaps. A
//! reader therefore never sees a buffer being written, and the writer waits for readers, not
//! for time.
//!
//! Every value here is read where it is used, not copied at accept or socket creation, so a
//! change reaches open connections and sockets at once (MaxRetainedBytesPerConnection is read
//! before each indication; tests in driver/tests/live_limits.rs change each kind on an open
//! connection). What stays restart-only (the pools are sized from it at start):
//! MaxConnections, MaxRetainedBytes, SendRingBytes, UdpSendContexts.

use core::cell::UnsafeCell;
use core::net::IpAddr;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use control::config::{Apply, Cidr, Limit, Limits, UdpGuard, LIMIT_COUNT, MAX_ALLOWED_SOURCES};
use heapless::Vec;

/// One buffer of the allow-list.
type List = Vec<Cidr, MAX_ALLOWED_SOURCES>;

pub(crate) struct LiveLimits {
    /// Every limit of control's table, indexed by [`Limit`]; those that apply live
    /// ([`Apply::Live`]) are republished by each `config set`, the restart-only ones keep the
    /// value the pools were sized from.
    values: [AtomicU32; LIMIT_COUNT],
    lists: [UnsafeCell<List>; 2],
    /// Index of the list readers use (bit 0), and `ALLOWS_ALL` when that list lets every
    /// source through: published in the same store as the index, so a reader that sees the
    /// bit needs neither the reader count nor the list (the check runs for every datagram).
    active: AtomicUsize,
    /// Readers inside each list right now.
    readers: [AtomicUsize; 2],
    /// Whether each list lets every source through, as `ALLOWS_ALL` (written with its list,
    /// read by the serialised control path only, to publish it with the index).
    allows_all: [AtomicUsize; 2],
    /// The UDP guard's switches packed in one word (`guard_bits`), republished with the
    /// scalars: a datagram reads one atomic, not one per switch.
    guard: AtomicU32,
    /// Bumped after every change published here (scalars, switches, list), so that a verdict
    /// computed from these values can be remembered with the generation it was read under
    /// (`generation`). 64 bits: never wraps.
    generation: AtomicU64,
}

/// `active`'s flag: the active list lets every source through.
const ALLOWS_ALL: usize = 2;

/// `ALLOWS_ALL` if `list` lets every source through: it holds 0.0.0.0/0 (every IPv4 source,
/// IPv4-mapped IPv6 ones included: `Cidr::contains` compares those as IPv4) and ::/0 (every
/// other IPv6 source). Sufficient, not necessary: other lists are walked.
fn allows_all(list: &[Cidr]) -> usize {
    // A /0 matches everything of its family only with the unspecified address (contains
    // compares the masked source with `addr`).
    let any = |v4: bool| {
        list.iter()
            .any(|c| c.prefix == 0 && c.addr.is_unspecified() && c.addr.is_ipv4() == v4)
    };
    if any(true) && any(false) {
        ALLOWS_ALL
    } else {
        0
    }
}

/// The guard's switches as one word (bit per switch, in `UdpGuard`'s field order).
fn guard_bits(g: UdpGuard) -> u32 {
    u32::from(g.drop_broadcast)
        | u32::from(g.drop_privileged_ports) << 1
        | u32::from(g.drop_service_ports) << 2
        | u32::from(g.drop_special_sources) << 3
        | u32::from(g.rate_exempt_loopback) << 4
}

// SAFETY: the lists are written only by the single (serialised) control path while their
// reader count is zero and they are not active (see the module comment); everything else is
// atomic.
unsafe impl Sync for LiveLimits {}

/// True when `new` differs from `old` only in what [`LiveLimits`] applies live.
pub(crate) fn only_live_changes(old: &Limits, new: &Limits) -> bool {
    old.only_live_changes(new)
}

impl LiveLimits {
    /// The values of `l`. PASSIVE_LEVEL (driver creation).
    pub(crate) fn new(l: &Limits) -> Self {
        let s = LiveLimits {
            values: Limit::ALL.map(|id| AtomicU32::new(l.get(id))),
            lists: [UnsafeCell::new(List::new()), UnsafeCell::new(List::new())],
            active: AtomicUsize::new(0),
            readers: [AtomicUsize::new(0), AtomicUsize::new(0)],
            allows_all: [AtomicUsize::new(0), AtomicUsize::new(0)],
            guard: AtomicU32::new(0),
            generation: AtomicU64::new(0),
        };
        // SAFETY: not shared yet.
        unsafe { fill(&mut *s.lists[0].get(), l.allowed_sources()) };
        let all = allows_all(l.allowed_sources());
        s.allows_all[0].store(all, Ordering::Relaxed);
        s.active.store(all, Ordering::Relaxed);
        s.store_guard();
        s
    }

    /// Stores the live limits of `l` (the restart-only ones keep their start-up values).
    fn store_scalars(&self, l: &Limits) {
        for (id, a) in Limit::ALL.into_iter().zip(&self.values) {
            if id.spec().apply == Apply::Live {
                a.store(l.get(id), Ordering::Relaxed);
            }
        }
        self.store_guard();
    }

    /// Packs the guard's switches, as stored in `values`, into `guard`.
    fn store_guard(&self) {
        self.guard
            .store(guard_bits(self.read_guard()), Ordering::Relaxed);
    }

    /// Publishes `l` to the data path: scalars at once, the allow-list by a swap once no
    /// reader is inside the buffer it reuses. False (nothing of the list changed; the scalars
    /// did) when readers did not leave that buffer within `wait_ms`. PASSIVE_LEVEL, the
    /// serialised control path only.
    pub(crate) fn publish(&self, l: &Limits, wait_ms: u64) -> bool {
        let ok = self.publish_values(l, wait_ms);
        self.changed();
        ok
    }

    /// `publish` but for the generation.
    fn publish_values(&self, l: &Limits, wait_ms: u64) -> bool {
        self.store_scalars(l);
        let cur = self.active.load(Ordering::SeqCst) & 1;
        let next = cur ^ 1;
        // SAFETY: index 0 or 1.
        if let (Some(readers), Some(list)) = (self.readers.get(next), self.lists.get(next)) {
            // Readers still inside `next` entered before the last swap; each leaves after one
            // list scan. Counted, not timed: the bound only gives up.
            if !crate::kernel::time::wait_until(wait_ms, || readers.load(Ordering::SeqCst) == 0) {
                return false;
            }
            // SAFETY: `next` is not active and no reader is inside it; a reader that enters
            // from now on sees `active == cur` on its re-check and leaves without reading.
            unsafe { fill(&mut *list.get(), l.allowed_sources()) };
            let all = allows_all(l.allowed_sources());
            if let Some(a) = self.allows_all.get(next) {
                a.store(all, Ordering::Relaxed);
            }
            self.active.store(next | all, Ordering::SeqCst);
        }
        true
    }

    /// Puts the scalars of `old` back after a `publish` that returned false (its list did
    /// not change). PASSIVE_LEVEL, the serialised control path only.
    pub(crate) fn revert_scalars(&self, old: &Limits) {
        self.store_scalars(old);
        self.changed();
    }

    /// Undoes the last successful [`publish`](Self::publish): the scalars of `old` and the
    /// allow-list buffer that was active before it. Cannot fail and waits for nobody: the old
    /// buffer was not written since (the writer fills only the inactive one, and nothing was
    /// published in between), and readers still inside the newer one leave it before the next
    /// publish reuses it (that publish waits for them). PASSIVE_LEVEL, the serialised control
    /// path only, right after a `publish` that returned true.
    pub(crate) fn revert(&self, old: &Limits) {
        self.store_scalars(old);
        let prev = (self.active.load(Ordering::SeqCst) & 1) ^ 1;
        let all = self
            .allows_all
            .get(prev)
            .map_or(0, |a| a.load(Ordering::Relaxed));
        self.active.store(prev | all, Ordering::SeqCst);
        self.changed();
    }

    /// Marks the values as changed, after they are stored: a reader that sees the new
    /// generation (an acquire) sees the values stored before it.
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The generation of the values (see `generation`): read it before the values; a verdict
    /// computed from them holds while it is unchanged (a reader racing a change may compute
    /// from a mix of old and new values under the old generation, as it may without the
    /// generation; the next reader sees the new one). Any IRQL.
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether `peer` is in the allow-list. Any IRQL (one atomic load when the list lets every
    /// source through, else atomics and a bounded scan).
    #[inline]
    pub(crate) fn source_allowed(&self, peer: IpAddr) -> bool {
        if self.active.load(Ordering::SeqCst) & ALLOWS_ALL != 0 {
            return true;
        }
        self.source_in_list(peer)
    }

    /// `source_allowed`'s walk of the list.
    fn source_in_list(&self, peer: IpAddr) -> bool {
        loop {
            let a = self.active.load(Ordering::SeqCst);
            if a & ALLOWS_ALL != 0 {
                return true;
            }
            let i = a & 1;
            let (Some(readers), Some(list)) = (self.readers.get(i), self.lists.get(i)) else {
                return false;
            };
            readers.fetch_add(1, Ordering::SeqCst);
            if self.active.load(Ordering::SeqCst) & 1 == i {
                // SAFETY: registered in `i` while it is active: the writer does not touch it
                // until this reader has left.
                let ok = unsafe { &*list.get() }.iter().any(|c| c.contains(peer));
                readers.fetch_sub(1, Ordering::SeqCst);
                return ok;
            }
            // Swapped between the load and the registration: read the new one.
            readers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// The current value of `limit` (a switch as 0/1). Any IRQL (one atomic load).
    #[inline]
    pub(crate) fn get(&self, limit: Limit) -> u32 {
        self.values
            .get(limit as usize)
            .map_or(0, |a| a.load(Ordering::Relaxed))
    }

    /// The current value of the switch `limit`. Any IRQL.
    #[inline]
    pub(crate) fn on(&self, limit: Limit) -> bool {
        self.get(limit) != 0
    }

    /// The UDP guard's switches as they are now. Any IRQL (one atomic load).
    #[inline]
    pub(crate) fn udp_guard(&self) -> UdpGuard {
        let b = self.guard.load(Ordering::Relaxed);
        UdpGuard {
            drop_broadcast: b & 1 != 0,
            drop_privileged_ports: b & 2 != 0,
            drop_service_ports: b & 4 != 0,
            drop_special_sources: b & 8 != 0,
            rate_exempt_loopback: b & 16 != 0,
        }
    }

    /// The guard's switches from `values` (one load per switch).
    fn read_guard(&self) -> UdpGuard {
        UdpGuard {
            drop_broadcast: self.on(Limit::UdpDropBroadcast),
            drop_privileged_ports: self.on(Limit::UdpDropPrivilegedPorts),
            drop_service_ports: self.on(Limit::UdpDropServicePorts),
            drop_special_sources: self.on(Limit::UdpDropSpecialSources),
            rate_exempt_loopback: self.on(Limit::UdpRateExemptLoopback),
        }
    }
}

fn fill(dst: &mut List, src: &[Cidr]) {
    dst.clear();
    for c in src.iter().take(MAX_ALLOWED_SOURCES) {
        // Capacity is MAX_ALLOWED_SOURCES: cannot fail after the take.
        let _ = dst.push(*c);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    #[test]
    fn guard_switches_round_trip() {
        let mut l = Limits::default();
        for bits in 0..32u32 {
            l.udp_guard = UdpGuard {
                drop_broadcast: bits & 1 != 0,
                drop_privileged_ports: bits & 2 != 0,
                drop_service_ports: bits & 4 != 0,
                drop_special_sources: bits & 8 != 0,
                rate_exempt_loopback: bits & 16 != 0,
            };
            let live = LiveLimits::new(&l);
            assert_eq!(live.udp_guard(), l.udp_guard);
        }
    }

    /// The packed guard word follows publish and revert_scalars.
    #[test]
    fn guard_switches_follow_publish_and_revert() {
        let old = Limits::default();
        let live = LiveLimits::new(&old);
        let mut new = old.clone();
        new.udp_guard.drop_special_sources = !old.udp_guard.drop_special_sources;
        new.udp_guard.rate_exempt_loopback = !old.udp_guard.rate_exempt_loopback;
        // Each change moves the generation (a remembered UDP verdict is kept while it stays).
        let g0 = live.generation();
        assert!(live.publish(&new, 100));
        assert_eq!(live.udp_guard(), new.udp_guard);
        let g1 = live.generation();
        assert!(g1 > g0, "publish");
        live.revert_scalars(&old);
        assert_eq!(live.udp_guard(), old.udp_guard);
        let g2 = live.generation();
        assert!(g2 > g1, "revert_scalars");
        assert!(live.publish(&new, 100));
        live.revert(&old);
        assert_eq!(live.udp_guard(), old.udp_guard);
        assert!(live.generation() > g2 + 1, "publish and revert");
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn with_list(list: &[&str]) -> Limits {
        let mut l = Limits::default();
        let cidrs: heapless::Vec<Cidr, MAX_ALLOWED_SOURCES> =
            list.iter().map(|c| Cidr::parse(c).unwrap()).collect();
        l.set_allowed_sources(&cidrs).unwrap();
        l
    }

    /// The allow-everything shortcut gives the walk's answers, and follows publish and
    /// revert (a revert to an allow-everything list after a narrow one, and back).
    #[test]
    fn allow_list_shortcut_matches_the_walk() {
        let peers = [
            "10.1.2.3",
            "127.0.0.1",
            "::1",
            "::ffff:10.1.2.3",
            "2001:db8::1",
        ];
        let lists: [&[&str]; 6] = [
            &["0.0.0.0/0", "::/0"],
            &["10.0.0.0/8"],
            &["0.0.0.0/0"],
            &["::/0"],
            &["::/0", "0.0.0.0/0", "10.0.0.0/8"],
            &["::1", "0.0.0.0/1", "128.0.0.0/1"],
        ];
        let base = Limits::default();
        let live = LiveLimits::new(&base);
        let check = |live: &LiveLimits, l: &Limits, what: &str| {
            for p in peers {
                assert_eq!(
                    live.source_allowed(ip(p)),
                    l.source_allowed(ip(p)),
                    "{what} {p}"
                );
            }
        };
        check(&live, &base, "default");
        let mut prev = base.clone();
        for list in lists {
            let l = with_list(list);
            assert!(live.publish(&l, 100));
            check(&live, &l, &format!("{list:?}"));
            live.revert(&prev);
            check(&live, &prev, &format!("revert from {list:?}"));
            assert!(live.publish(&l, 100));
            check(&live, &l, &format!("{list:?} again"));
            prev = l;
        }
    }

    /// Every limit reads back as set; a publish changes the live ones only.
    #[test]
    fn publish_changes_live_limits_only() {
        let old = Limits::default();
        let live = LiveLimits::new(&old);
        let mut new = old.clone();
        for id in Limit::ALL {
            let s = id.spec();
            // A valid value other than the default (the ring size stays a power of two).
            let v = if s.default == s.max { s.min } else { s.max };
            new.set(id, v).unwrap();
        }
        assert!(live.publish(&new, 100));
        for id in Limit::ALL {
            let want = match id.spec().apply {
                Apply::Live => new.get(id),
                Apply::Restart => old.get(id),
            };
            assert_eq!(live.get(id), want, "{id:?}");
        }
    }
}
