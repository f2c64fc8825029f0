//! Byte ring for the copy path, index arithmetic only.
//!
//! The storage is owned by the connection context (one non-paged block described by one MDL),
//! so the ring keeps offsets and the caller passes the storage in. Three cursors split it:
//! `head..sent` is handed to WSK (in flight, must not be overwritten), `sent..tail` is copied
//! but not yet sent, `tail..head+cap` is free. Cursors are free-running `usize`s: offsets are
//! taken modulo the capacity, so `tail - head` is always the fill level.

#[derive(Clone, Copy, Debug)]
pub struct ByteRing {
    cap: usize,
    head: usize,
    sent: usize,
    tail: usize,
}

impl ByteRing {
    pub const fn new(cap: usize) -> Self {
        Self {
            cap,
            head: 0,
            sent: 0,
            tail: 0,
        }
    }

    #[inline]
    pub fn capacity(&self) -> usize {
        self.cap
    }

    #[inline]
    pub fn free(&self) -> usize {
        self.cap - (self.tail - self.head)
    }

    /// Copied but not yet handed to a send.
    #[inline]
    pub fn queued(&self) -> usize {
        self.tail - self.sent
    }

    #[inline]
    pub fn in_flight(&self) -> usize {
        self.sent - self.head
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.tail == self.head
    }

    /// Up to two (offset, len) regions where the next `n` bytes go (n <= free()).
    #[inline]
    pub fn write_regions(&self, n: usize) -> [(usize, usize); 2] {
        debug_assert!(n <= self.free());
        let off = self.tail % self.cap.max(1);
        let first = n.min(self.cap - off);
        [(off, first), (0, n - first)]
    }

    /// Copies `data` (at most `free()` bytes of it) into `storage` and commits it.
    /// Returns the number of bytes taken.
    #[cfg(test)]
    pub fn push(&mut self, storage: &mut [u8], data: &[u8]) -> usize {
        debug_assert_eq!(storage.len(), self.cap);
        let n = data.len().min(self.free());
        let [(o1, l1), (o2, l2)] = self.write_regions(n);
        storage[o1..o1 + l1].copy_from_slice(&data[..l1]);
        storage[o2..o2 + l2].copy_from_slice(&data[l1..n]);
        self.tail += n;
        n
    }

    /// Marks `n` bytes written through [`write_regions`](Self::write_regions) as queued.
    /// More than is free is refused (false, nothing committed): the caller counts it.
    #[must_use]
    #[inline]
    pub fn commit(&mut self, n: usize) -> bool {
        if n > self.free() {
            return false;
        }
        self.tail += n;
        true
    }

    /// Takes the next contiguous queued chunk (at most `max`) for a send: (offset, len).
    #[inline]
    pub fn take_send(&mut self, max: usize) -> Option<(usize, usize)> {
        let q = self.queued();
        if q == 0 || max == 0 {
            return None;
        }
        let off = self.sent % self.cap.max(1);
        let len = q.min(self.cap - off).min(max);
        self.sent += len;
        Some((off, len))
    }

    /// The oldest in-flight chunk of `len` bytes has completed. More than is in flight is
    /// refused (false, nothing freed): the caller counts it.
    #[must_use]
    #[inline]
    pub fn complete(&mut self, len: usize) -> bool {
        if len > self.in_flight() {
            return false;
        }
        self.head += len;
        true
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    #[test]
    fn wraps_and_preserves_order() {
        let mut r = ByteRing::new(8);
        let mut st = [0u8; 8];
        assert_eq!(r.push(&mut st, b"abcdef"), 6);
        assert_eq!(r.take_send(4), Some((0, 4)));
        assert!(r.complete(4));
        assert_eq!(r.push(&mut st, b"ghijklmn"), 6); // only 6 free
        assert_eq!(r.free(), 0);
        let mut out = Vec::new();
        // Bounded: a ring that never runs dry fails here instead of hanging the test.
        for _ in 0..8 {
            let Some((o, l)) = r.take_send(100) else {
                break;
            };
            out.extend_from_slice(&st[o..o + l]);
            assert!(r.complete(l));
        }
        assert_eq!(out, b"efghijkl");
        assert!(r.is_empty());
    }

    #[test]
    fn in_flight_bytes_are_not_free() {
        let mut r = ByteRing::new(4);
        let mut st = [0u8; 4];
        r.push(&mut st, b"wxyz");
        let (o, l) = r.take_send(4).unwrap();
        assert_eq!((o, l, r.free(), r.queued(), r.in_flight()), (0, 4, 0, 0, 4));
        assert_eq!(r.push(&mut st, b"q"), 0);
        assert!(r.complete(4));
        assert_eq!(r.free(), 4);
    }

    #[test]
    fn over_completion_and_over_commit_are_refused() {
        let mut r = ByteRing::new(4);
        assert!(!r.complete(1), "nothing in flight");
        assert!(!r.commit(5), "more than free");
        assert!(r.is_empty());
        let mut z = ByteRing::new(0);
        assert!(
            z.take_send(10).is_none(),
            "a zero-capacity ring never divides by zero"
        );
    }

    /// The accessors against a ring whose cursors have all moved off zero (kills `capacity`
    /// -> 0/1, `in_flight`'s `-` -> `+`, `is_empty` -> true).
    #[test]
    fn accessors_after_the_cursors_moved() {
        let mut r = ByteRing::new(8);
        let mut st = [0u8; 8];
        assert_eq!(r.capacity(), 8);
        assert!(r.is_empty());
        assert_eq!(r.push(&mut st, b"abcdef"), 6);
        assert!(!r.is_empty(), "6 bytes queued");
        assert_eq!(r.take_send(4), Some((0, 4)));
        assert!(r.complete(3));
        // head 3, sent 4, tail 6.
        assert_eq!((r.in_flight(), r.queued(), r.free()), (1, 2, 5));
        assert!(!r.is_empty());
        assert_eq!(r.take_send(8), Some((4, 2)));
        assert_eq!(r.in_flight(), 3);
        assert!(r.complete(3));
        assert_eq!((r.in_flight(), r.queued(), r.free()), (0, 0, 8));
        assert!(r.is_empty());
        assert_eq!(r.capacity(), 8, "capacity never changes");
    }
}
