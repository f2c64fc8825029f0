//! The source pattern: byte `i` of a stream (counted from its first byte) is `i % 251`.
//!
//! 251 is prime, so the pattern never lines up with power-of-two buffer or segment sizes: a
//! lost, duplicated or shifted chunk shows at the first byte after it. The driver's source
//! service and load jobs send it; echoload's source client and reference server check and
//! send the same stream.

/// Period of the pattern.
pub const PERIOD: usize = 251;

/// The byte at stream offset `offset`.
#[inline]
pub const fn byte(offset: u64) -> u8 {
    (offset % PERIOD as u64) as u8
}

/// Fills `buf` with the pattern starting at stream offset `offset`.
pub fn fill(offset: u64, buf: &mut [u8]) {
    let mut v = byte(offset);
    for b in buf {
        *b = v;
        v = if v as usize == PERIOD - 1 { 0 } else { v + 1 };
    }
}

/// Index of the first byte of `buf` that differs from the pattern at `offset`.
pub fn check(offset: u64, buf: &[u8]) -> Option<usize> {
    let mut v = byte(offset);
    for (i, b) in buf.iter().enumerate() {
        if *b != v {
            return Some(i);
        }
        v = if v as usize == PERIOD - 1 { 0 } else { v + 1 };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_and_check_agree_at_any_offset() {
        for off in [0u64, 1, 250, 251, 252, 1_000_003] {
            let mut b = [0u8; 600];
            fill(off, &mut b);
            assert_eq!(b[0], byte(off));
            assert_eq!(check(off, &b), None);
            b[300] ^= 1;
            assert_eq!(check(off, &b), Some(300));
        }
        assert_eq!(byte(251 * 3 + 5), 5);
    }
}
