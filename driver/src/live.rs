//! The limits the data path reads while the driver runs, changeable by `config set` without a
//! restart (issue 13 item 13).
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
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use control::config::{Cidr, Limits, UdpGuard, MAX_ALLOWED_SOURCES};
use heapless::Vec;

/// One buffer of the allow-list.
type List = Vec<Cidr, MAX_ALLOWED_SOURCES>;

pub(crate) struct LiveLimits {
    zero_copy: AtomicBool,
    max_retained_per_conn: AtomicU32,
    disconnect_timeout_ms: AtomicU32,
    idle_timeout_ms: AtomicU32,
    progress_timeout_ms: AtomicU32,
    retain_timeout_ms: AtomicU32,
    udp_rate_per_source: AtomicU32,
    /// The UDP guard's five switches, one bit each (see `guard_bits`).
    udp_guard: AtomicU32,
    lists: [UnsafeCell<List>; 2],
    /// Index of the list readers use.
    active: AtomicUsize,
    /// Readers inside each list right now.
    readers: [AtomicUsize; 2],
}

// SAFETY: the lists are written only by the single (serialised) control path while their
// reader count is zero and they are not active (see the module comment); everything else is
// atomic.
unsafe impl Sync for LiveLimits {}

/// The guard's switches as bits (order of `UdpGuard`'s fields).
fn guard_bits(g: UdpGuard) -> u32 {
    u32::from(g.drop_broadcast)
        | u32::from(g.drop_privileged_ports) << 1
        | u32::from(g.drop_service_ports) << 2
        | u32::from(g.drop_special_sources) << 3
        | u32::from(g.rate_exempt_loopback) << 4
}

/// True when `new` differs from `old` only in what [`LiveLimits`] carries.
pub(crate) fn only_live_changes(old: &Limits, new: &Limits) -> bool {
    old.max_connections == new.max_connections
        && old.max_retained_total == new.max_retained_total
        && old.send_ring_bytes == new.send_ring_bytes
        && old.udp_send_contexts == new.udp_send_contexts
}

impl LiveLimits {
    /// The values of `l`. PASSIVE_LEVEL (driver creation).
    pub(crate) fn new(l: &Limits) -> Self {
        let s = LiveLimits {
            zero_copy: AtomicBool::new(false),
            max_retained_per_conn: AtomicU32::new(0),
            disconnect_timeout_ms: AtomicU32::new(0),
            idle_timeout_ms: AtomicU32::new(0),
            progress_timeout_ms: AtomicU32::new(0),
            retain_timeout_ms: AtomicU32::new(0),
            udp_rate_per_source: AtomicU32::new(0),
            udp_guard: AtomicU32::new(0),
            lists: [UnsafeCell::new(List::new()), UnsafeCell::new(List::new())],
            active: AtomicUsize::new(0),
            readers: [AtomicUsize::new(0), AtomicUsize::new(0)],
        };
        s.store_scalars(l);
        // SAFETY: not shared yet.
        unsafe { fill(&mut *s.lists[0].get(), l.allowed_sources()) };
        s
    }

    fn store_scalars(&self, l: &Limits) {
        let st = |a: &AtomicU32, v: u32| a.store(v, Ordering::Relaxed);
        self.zero_copy.store(l.zero_copy, Ordering::Relaxed);
        st(&self.max_retained_per_conn, l.max_retained_per_conn);
        st(&self.disconnect_timeout_ms, l.disconnect_timeout_ms);
        st(&self.idle_timeout_ms, l.idle_timeout_ms);
        st(&self.progress_timeout_ms, l.progress_timeout_ms);
        st(&self.retain_timeout_ms, l.retain_timeout_ms);
        st(&self.udp_rate_per_source, l.udp_rate_per_source);
        st(&self.udp_guard, guard_bits(l.udp_guard));
    }

    /// Publishes `l` to the data path: scalars at once, the allow-list by a swap once no
    /// reader is inside the buffer it reuses. False (nothing of the list changed; the scalars
    /// did) when readers did not leave that buffer within `wait_ms`. PASSIVE_LEVEL, the
    /// serialised control path only.
    pub(crate) fn publish(&self, l: &Limits, wait_ms: u64) -> bool {
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
            self.active.store(next, Ordering::SeqCst);
        }
        true
    }

    /// Puts the scalars of `old` back after a `publish` that returned false (its list did
    /// not change). PASSIVE_LEVEL, the serialised control path only.
    pub(crate) fn revert_scalars(&self, old: &Limits) {
        self.store_scalars(old);
    }

    /// Undoes the last successful [`publish`](Self::publish): the scalars of `old` and the
    /// allow-list buffer that was active before it. Cannot fail and waits for nobody: the old
    /// buffer was not written since (the writer fills only the inactive one, and nothing was
    /// published in between), and readers still inside the newer one leave it before the next
    /// publish reuses it (that publish waits for them). PASSIVE_LEVEL, the serialised control
    /// path only, right after a `publish` that returned true.
    pub(crate) fn revert(&self, old: &Limits) {
        self.store_scalars(old);
        self.active.fetch_xor(1, Ordering::SeqCst);
    }

    /// Whether `peer` is in the allow-list. Any IRQL (atomics and a bounded scan).
    pub(crate) fn source_allowed(&self, peer: IpAddr) -> bool {
        loop {
            let i = self.active.load(Ordering::SeqCst) & 1;
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

    pub(crate) fn zero_copy(&self) -> bool {
        self.zero_copy.load(Ordering::Relaxed)
    }
    pub(crate) fn max_retained_per_conn(&self) -> u32 {
        self.max_retained_per_conn.load(Ordering::Relaxed)
    }
    pub(crate) fn disconnect_timeout_ms(&self) -> u32 {
        self.disconnect_timeout_ms.load(Ordering::Relaxed)
    }
    pub(crate) fn idle_timeout_ms(&self) -> u32 {
        self.idle_timeout_ms.load(Ordering::Relaxed)
    }
    pub(crate) fn progress_timeout_ms(&self) -> u32 {
        self.progress_timeout_ms.load(Ordering::Relaxed)
    }
    pub(crate) fn retain_timeout_ms(&self) -> u32 {
        self.retain_timeout_ms.load(Ordering::Relaxed)
    }
    pub(crate) fn udp_rate_per_source(&self) -> u32 {
        self.udp_rate_per_source.load(Ordering::Relaxed)
    }
    pub(crate) fn udp_guard(&self) -> UdpGuard {
        let b = self.udp_guard.load(Ordering::Relaxed);
        UdpGuard {
            drop_broadcast: b & 1 != 0,
            drop_privileged_ports: b & 1 << 1 != 0,
            drop_service_ports: b & 1 << 2 != 0,
            drop_special_sources: b & 1 << 3 != 0,
            rate_exempt_loopback: b & 1 << 4 != 0,
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
    use super::*;

    #[test]
    fn guard_bits_round_trip() {
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
}
