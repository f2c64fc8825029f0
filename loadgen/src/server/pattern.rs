//! The source service's byte pattern: byte `i` of a stream is `i mod 251`.
//!
//! 251 is prime, so the pattern never lines up with power-of-two buffer or segment sizes: a
//! lost, duplicated or shifted chunk shows up at the first byte after it.

/// Period of the pattern.
pub const SOURCE_PERIOD: usize = 251;

/// The byte the source service sends at stream offset `offset`.
#[inline]
pub fn source_byte(offset: u64) -> u8 {
    (offset % SOURCE_PERIOD as u64) as u8
}

/// Fills `buf` with the pattern at stream offset `offset` (the client's definition, so the two
/// sides cannot disagree).
pub fn fill_source(offset: u64, buf: &mut [u8]) {
    crate::payload::fill_source(offset, buf);
}

/// Index of the first byte of `buf` that differs from the pattern at `offset`.
pub fn verify_source(offset: u64, buf: &[u8]) -> Option<usize> {
    crate::payload::check_source(offset, buf)
}

/// A pre-filled pattern block: any window `[o % 251 .. o % 251 + n]` with `n <= CHUNK` is the
/// pattern at offset `o`, so the TCP source sends straight from it without filling per write.
pub(crate) struct Block(Box<[u8]>);

impl Block {
    pub(crate) const CHUNK: usize = 64 * 1024;

    pub(crate) fn new() -> Self {
        let mut v = vec![0u8; Self::CHUNK + SOURCE_PERIOD];
        fill_source(0, &mut v);
        Block(v.into_boxed_slice())
    }

    /// The next `CHUNK` bytes of the pattern for stream offset `offset`.
    pub(crate) fn window(&self, offset: u64) -> &[u8] {
        let s = (offset % SOURCE_PERIOD as u64) as usize;
        &self.0[s..s + Self::CHUNK]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_continue_the_pattern() {
        let b = Block::new();
        for off in [0u64, 1, 250, 251, 252, 1_000_003] {
            assert_eq!(verify_source(off, b.window(off)), None, "offset {off}");
        }
        let mut x = vec![0u8; 600];
        fill_source(77, &mut x);
        assert_eq!(verify_source(77, &x), None);
        assert!(x
            .iter()
            .enumerate()
            .all(|(i, b)| *b == source_byte(77 + i as u64)));
        x[300] ^= 1;
        assert_eq!(verify_source(77, &x), Some(300));
        assert_eq!(source_byte(251 * 3 + 5), 5);
    }
}
