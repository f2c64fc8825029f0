//! The panic path: log where, then stop the system with a driver-specific stop code.
//!
//! A panic in kernel code cannot unwind (panic = abort) and must not return into the state
//! that panicked. Spinning instead (the old handler) runs at DISPATCH_LEVEL, sometimes with a
//! spin lock held, which ends in a DPC watchdog bugcheck far from the cause or in a silent
//! hang. KeBugCheckEx stops at once, with the location in the dump.

use core::fmt;
use core::panic::Location;

use wsk_sys::KeBugCheckEx;

/// The stop code of a wskecho panic ("E0", "WE", 01).
pub const BUGCHECK_PANIC: u32 = 0xE057_4501;

/// Logs the panic with DbgPrintEx, then KeBugCheckEx(BUGCHECK_PANIC, line, column, address of
/// the source file name, its length): the first two parameters locate the panic in the
/// source, the last two let a debugger read the file name from the dump. Any IRQL (the log is
/// formatted on the stack, DbgPrintEx and KeBugCheckEx may be called at any IRQL).
pub fn bugcheck_on_panic(location: Option<&Location<'_>>, message: impl fmt::Display) -> ! {
    let (file, line, column) = location.map_or(("?", 0, 0), |l| (l.file(), l.line(), l.column()));
    super::log::log_err!("panic at {file}:{line}:{column}: {message}");
    // SAFETY: KeBugCheckEx takes plain values and never returns.
    unsafe {
        KeBugCheckEx(
            BUGCHECK_PANIC,
            line as usize,
            column as usize,
            file.as_ptr() as usize,
            file.len(),
        )
    }
}
