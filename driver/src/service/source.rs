//! The source service's payload: one shared read-only buffer with a repeating pattern,
//! sent again and again (no per-connection copy, no allocation per send).

pub const PATTERN_LEN: usize = 64 * 1024;

/// Period of the pattern: 251 is prime, so a slip by a few bytes shows at once. The same
/// stream as echoload's `payload::fill_source` (byte `i` of a connection is `i % 251`), so its
/// source-mode client verifies the driver's output.
pub const PERIOD: usize = 251;

pub const fn pattern_byte(i: usize) -> u8 {
    (i % PERIOD) as u8
}

pub fn fill_pattern(buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern_byte(i);
    }
}

/// Length of a source send: a multiple of the period so that consecutive sends continue the
/// pattern seamlessly.
pub fn send_len(max: usize) -> usize {
    let m = max.min(PATTERN_LEN);
    (m / PERIOD).max(1) * PERIOD
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_continue_the_pattern() {
        let n = send_len(8192);
        assert_eq!(n % PERIOD, 0);
        assert!(n <= 8192 && n > 8192 - PERIOD);
        let mut b = [0u8; 600];
        fill_pattern(&mut b);
        assert_eq!(b[0], 0);
        assert_eq!(b[250], 250);
        assert_eq!(b[251], 0);
        assert_eq!(b[n % 600], pattern_byte(n % 600));
    }
}
