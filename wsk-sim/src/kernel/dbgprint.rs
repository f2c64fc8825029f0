//! DbgPrintEx, captured for tests (and echoed to stderr when asked).

use std::sync::{Mutex, PoisonError};

use wsk_sys::{NTSTATUS, ULONG};

static DBG: Mutex<String> = Mutex::new(String::new());

/// Everything printed with DbgPrintEx since the last call (one line per print).
pub fn take_dbg_output() -> String {
    std::mem::take(&mut *DBG.lock().unwrap_or_else(PoisonError::into_inner))
}

/// A copy of the captured DbgPrintEx output.
pub fn dbg_output() -> String {
    DBG.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// # Safety
/// `p` is NULL or a NUL-terminated string.
unsafe fn cstr(p: *const u8) -> String {
    if p.is_null() {
        return "(null)".into();
    }
    // SAFETY: per the function contract.
    unsafe { std::ffi::CStr::from_ptr(p.cast()) }
        .to_string_lossy()
        .into_owned()
}

/// `DbgPrintEx`, with the fixed arity the team uses: `(id, level, "%s", text)`. A format
/// other than "%s" is printed as is, with its first `%s` replaced by `Arg`.
#[no_mangle]
pub unsafe extern "win64" fn DbgPrintEx(
    ComponentId: ULONG,
    Level: ULONG,
    Format: *const u8,
    Arg: *const u8,
) -> NTSTATUS {
    crate::kernel::preempt::entry("DbgPrintEx");
    // SAFETY: the caller passes NUL-terminated strings (kernel contract).
    let (fmt, arg) = unsafe {
        (
            cstr(Format),
            if Arg.is_null() {
                String::new()
            } else {
                cstr(Arg)
            },
        )
    };
    let text = if fmt.contains("%s") {
        fmt.replacen("%s", &arg, 1)
    } else {
        fmt
    };
    let line = format!("[{ComponentId}:{Level}] {}", text.trim_end_matches('\n'));
    if crate::kernel::state::config().print_dbg {
        // Not eprintln!: a closed stderr (`2>&1 | head`) must not panic inside a kernel-side
        // callback, where a panic cannot unwind and aborts the process.
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "{line}");
    }
    let mut d = DBG.lock().unwrap_or_else(PoisonError::into_inner);
    d.push_str(&line);
    d.push('\n');
    // Bound the capture: a chatty driver must not grow memory without limit.
    if d.len() > 4 << 20 {
        let cut = d.len() - (2 << 20);
        d.drain(..cut);
    }
    0
}
