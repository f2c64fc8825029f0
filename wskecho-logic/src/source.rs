//! The source service's payload: one shared read-only buffer holding the source pattern
//! (`control::protocol::pattern`), sent again and again (no per-connection copy, no allocation
//! per send).

use control::protocol::pattern;

pub const PATTERN_LEN: usize = 64 * 1024;

/// Length of a source send: a multiple of the period so that consecutive sends continue the
/// pattern seamlessly.
pub fn send_len(max: usize) -> usize {
    let m = max.min(PATTERN_LEN);
    (m / pattern::PERIOD).max(1) * pattern::PERIOD
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_continue_the_pattern() {
        let n = send_len(8192);
        assert_eq!(n % pattern::PERIOD, 0);
        assert!(n <= 8192 && n > 8192 - pattern::PERIOD);
        let mut b = [0u8; 600];
        pattern::fill(0, &mut b);
        assert_eq!(b[n % 600], pattern::byte((n % 600) as u64));
        assert_eq!(send_len(10), pattern::PERIOD);
    }
}
