//! DbgPrintEx from Rust formatting: the text is formatted into a fixed-capacity
//! `heapless::String` on the stack (no pool, usable at DISPATCH) and passed as the single
//! argument of a "%s" format, because DbgPrintEx is C-variadic (declared by wsk-sys with a
//! fixed arity, same x64 calling sequence).

use core::fmt::{self, Write};
use wsk_sys::{DbgPrintEx, DPFLTR_IHVNETWORK_ID};

/// Bytes of one line including its NUL terminator.
pub(crate) const LINE_MAX: usize = 240;

/// One log line: a `heapless::String` whose `fmt::Write` truncates instead of failing.
/// heapless refuses a whole `write_str` that does not fit; a log line keeps what fits (at a
/// char boundary), always leaving room for the NUL that `print` appends.
#[derive(Default)]
pub(crate) struct Line(heapless::String<LINE_MAX>);

impl Line {
    pub(crate) const fn new() -> Self {
        Self(heapless::String::new())
    }

    pub(crate) fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // '%' is harmless since the text is an argument, not the format.
        let room = (LINE_MAX - 1).saturating_sub(self.0.len());
        let mut end = s.len().min(room);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        // Fits by construction (len + end <= LINE_MAX - 1).
        let _ = self.0.push_str(s.get(..end).unwrap_or(""));
        Ok(())
    }
}

pub(crate) fn print(level: u32, args: fmt::Arguments<'_>) {
    let mut line = Line::new();
    let _ = line.write_str("wskecho: ");
    let _ = line.write_fmt(args);
    let _ = line.write_str("\n");
    // len <= LINE_MAX - 1: the NUL always fits.
    let _ = line.0.push('\0');
    // SAFETY: both strings are NUL-terminated and live across the call; "%s" consumes exactly
    // the one argument passed.
    unsafe {
        DbgPrintEx(
            DPFLTR_IHVNETWORK_ID,
            level,
            c"%s".as_ptr().cast(),
            line.0.as_ptr(),
        );
    }
}

/// DbgPrintEx at the info level, formatted like `format_args!`. Any IRQL.
macro_rules! log_info {
    ($($t:tt)*) => { $crate::kernel::log::print(wsk_sys::DPFLTR_INFO_LEVEL, format_args!($($t)*)) };
}
pub(crate) use log_info;

/// DbgPrintEx at the error level, formatted like `format_args!`. Any IRQL.
macro_rules! log_err {
    ($($t:tt)*) => { $crate::kernel::log::print(wsk_sys::DPFLTR_ERROR_LEVEL, format_args!($($t)*)) };
}
pub(crate) use log_err;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_and_keeps_room_for_nul() {
        let mut l = Line::new();
        for _ in 0..100 {
            let _ = write!(l, "abcdef");
        }
        assert_eq!(l.as_str().len(), LINE_MAX - 1);
        assert!(l.as_str().starts_with("abcdefabcdef"));
        // The NUL still fits after truncation.
        assert!(l.0.push('\0').is_ok());
    }

    #[test]
    fn truncation_keeps_what_fits_of_a_piece() {
        // One write larger than the room left: the prefix that fits is kept (heapless alone
        // would drop the whole piece).
        let mut l = Line::new();
        let _ = l.write_str("x");
        let long = [b'y'; 2 * LINE_MAX];
        let _ = l.write_str(core::str::from_utf8(&long).unwrap());
        assert_eq!(l.as_str().len(), LINE_MAX - 1);
        assert!(l.as_str().starts_with("xyyy"));
    }

    #[test]
    fn truncates_at_a_char_boundary() {
        // One piece of two-byte characters, longer than the line: 239 bytes of room hold 119
        // whole characters, never half of one.
        let mut buf = [0u8; 2 * LINE_MAX];
        let mut n = 0;
        for _ in 0..LINE_MAX {
            n += 'é'.encode_utf8(&mut buf[n..]).len();
        }
        let mut l = Line::new();
        let _ = l.write_str(core::str::from_utf8(&buf[..n]).unwrap());
        assert_eq!(l.as_str().len(), LINE_MAX - 2);
        assert_eq!(l.as_str().chars().count(), (LINE_MAX - 1) / 2);
    }
}
