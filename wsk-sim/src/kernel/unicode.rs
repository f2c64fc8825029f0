//! Counted UTF-16 strings (UNICODE_STRING).

use wsk_sys::{PCWSTR, PUNICODE_STRING};

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
