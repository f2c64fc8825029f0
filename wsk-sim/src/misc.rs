//! DbgPrintEx (captured), processors, strings.

use std::sync::{Mutex, PoisonError};

use wsk_sys::{NTSTATUS, PCWSTR, PPROCESSOR_NUMBER, PUNICODE_STRING, ULONG, USHORT};

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
    if crate::state::config().print_dbg {
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

/// `KeGetCurrentProcessorNumberEx`: the virtual processor of this host thread.
#[no_mangle]
pub unsafe extern "win64" fn KeGetCurrentProcessorNumberEx(ProcNumber: PPROCESSOR_NUMBER) -> ULONG {
    let cpu = crate::irql::cpu();
    if !ProcNumber.is_null() {
        // SAFETY: the caller passes PROCESSOR_NUMBER storage.
        unsafe {
            (*ProcNumber).Group = 0;
            (*ProcNumber).Number = cpu as u8;
            (*ProcNumber).Reserved = 0;
        }
    }
    cpu
}

/// `KeQueryActiveProcessorCountEx`: one group.
#[no_mangle]
pub unsafe extern "win64" fn KeQueryActiveProcessorCountEx(GroupNumber: USHORT) -> ULONG {
    if GroupNumber == 0 || GroupNumber == wsk_sys::ALL_PROCESSOR_GROUPS {
        crate::state::config().processor_count
    } else {
        0
    }
}

/// `RtlInitUnicodeString`.
#[no_mangle]
pub unsafe extern "win64" fn RtlInitUnicodeString(
    DestinationString: PUNICODE_STRING,
    SourceString: PCWSTR,
) {
    // SAFETY: the caller passes UNICODE_STRING storage and a NUL-terminated string or NULL.
    unsafe {
        let mut n = 0usize;
        if !SourceString.is_null() {
            while *SourceString.add(n) != 0 {
                n += 1;
            }
        }
        let bytes = (n * 2).min(0xfffc) as u16;
        (*DestinationString).Length = bytes;
        (*DestinationString).MaximumLength = if SourceString.is_null() { 0 } else { bytes + 2 };
        (*DestinationString).Buffer = SourceString.cast_mut();
    }
}

/// A UNICODE_STRING's text.
///
/// # Safety
/// `s` is NULL or a valid UNICODE_STRING.
pub(crate) unsafe fn unicode(s: PUNICODE_STRING) -> String {
    if s.is_null() {
        return String::new();
    }
    // SAFETY: per the function contract.
    unsafe {
        let len = usize::from((*s).Length) / 2;
        if (*s).Buffer.is_null() || len == 0 {
            return String::new();
        }
        String::from_utf16_lossy(std::slice::from_raw_parts((*s).Buffer, len))
    }
}
