//! The source service's pre-filled send block. The pattern itself (byte `i` of a stream is
//! `i % 251`) is defined once, in [`control::protocol::pattern`], shared with the driver.

use control::protocol::pattern;

/// A pre-filled pattern block: any window `[o % 251 .. o % 251 + n]` with `n <= CHUNK` is the
/// pattern at offset `o`, so the TCP source sends straight from it without filling per write.
pub(crate) struct Block(Box<[u8]>);

impl Block {
    pub(crate) const CHUNK: usize = 64 * 1024;

    pub(crate) fn new() -> Self {
        let mut v = vec![0u8; Self::CHUNK + pattern::PERIOD];
        pattern::fill(0, &mut v);
        Block(v.into_boxed_slice())
    }

    /// The next `CHUNK` bytes of the pattern for stream offset `offset`.
    pub(crate) fn window(&self, offset: u64) -> &[u8] {
        let s = usize::from(pattern::byte(offset));
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
            assert_eq!(pattern::check(off, b.window(off)), None, "offset {off}");
            assert_eq!(b.window(off).len(), Block::CHUNK);
        }
    }
}
