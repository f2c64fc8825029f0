//! Driver-wide budget of bytes retained from the stack (zero-copy indications not yet
//! released). Rule C2: retained receive buffers starve the stack below, so retention is capped
//! per connection and globally; above either cap the data is copied instead.

use core::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub struct RetainedBudget {
    used: AtomicUsize,
    limit: AtomicUsize,
    peak: AtomicUsize,
}

impl RetainedBudget {
    pub const fn new(limit: usize) -> Self {
        Self {
            used: AtomicUsize::new(0),
            limit: AtomicUsize::new(limit),
            peak: AtomicUsize::new(0),
        }
    }

    #[cfg(test)]
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Reserves `n` bytes if that stays within the limit. Lock-free: callable at DISPATCH.
    #[inline]
    pub fn try_reserve(&self, n: usize) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            let Some(next) = cur.checked_add(n).filter(|&v| v <= limit) else {
                return false;
            };
            match self
                .used
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    // The peak only grows: no read-modify-write (a CAS loop on x86) unless
                    // this reservation passes it.
                    if next > self.peak.load(Ordering::Relaxed) {
                        self.peak.fetch_max(next, Ordering::Relaxed);
                    }
                    return true;
                }
                Err(v) => cur = v,
            }
        }
    }

    #[inline]
    pub fn release(&self, n: usize) {
        let prev = self.used.fetch_sub(n, Ordering::AcqRel);
        debug_assert!(prev >= n, "retained budget underflow");
    }

    #[cfg(test)]
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_releases() {
        let b = RetainedBudget::new(100);
        assert!(b.try_reserve(60));
        assert!(!b.try_reserve(41));
        assert!(b.try_reserve(40));
        b.release(100);
        assert_eq!(b.used(), 0);
        assert_eq!(b.peak(), 100);
        b.set_limit(0);
        assert!(!b.try_reserve(1));
        assert!(b.try_reserve(0));
    }
}
