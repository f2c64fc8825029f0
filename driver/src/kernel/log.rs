//! DbgPrintEx from Rust formatting: the text is formatted into a fixed stack buffer (no pool,
//! usable at DISPATCH) and passed as the single argument of a "%s" format, because DbgPrintEx
//! is C-variadic (declared by wsk-sys with a fixed arity, same x64 calling sequence).

use core::fmt::{self, Write};
use wsk_sys::{DbgPrintEx, DPFLTR_IHVNETWORK_ID};

pub(crate) const LINE_MAX: usize = 240;

pub(crate) struct LineBuf {
    buf: [u8; LINE_MAX],
    len: usize,
}

impl LineBuf {
    pub(crate) const fn new() -> Self {
        Self {
            buf: [0; LINE_MAX],
            len: 0,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        core::str::from_utf8(self.buf.get(..self.len).unwrap_or(&[])).unwrap_or("?")
    }
}

impl Default for LineBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        // Truncate (keeping room for the NUL); '%' is harmless since the text is an argument.
        for &b in s.as_bytes() {
            match self.buf.get_mut(self.len) {
                Some(slot) if self.len + 1 < LINE_MAX => *slot = b,
                _ => break,
            }
            self.len += 1;
        }
        Ok(())
    }
}

pub(crate) fn print(level: u32, args: fmt::Arguments<'_>) {
    let mut line = LineBuf::new();
    let _ = line.write_str("wskecho: ");
    let _ = line.write_fmt(args);
    let _ = line.write_str("\n");
    line.buf[line.len % LINE_MAX] = 0; // len < LINE_MAX: the NUL always fits
                                       // SAFETY: both strings are NUL-terminated and live across the call; "%s" consumes exactly
                                       // the one argument passed.
    unsafe {
        DbgPrintEx(
            DPFLTR_IHVNETWORK_ID,
            level,
            c"%s".as_ptr().cast(),
            line.buf.as_ptr(),
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
        let mut l = LineBuf::new();
        for _ in 0..100 {
            let _ = write!(l, "abcdef");
        }
        assert_eq!(l.as_str().len(), LINE_MAX - 1);
    }
}
