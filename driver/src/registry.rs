//! Configuration from the service's `Parameters` registry key (PASSIVE_LEVEL, DriverEntry).
//! Absent values keep the control crate's defaults; invalid ones are logged (one DbgPrintEx
//! line each, event-log style) and their default is used.

use core::ptr;

use control::config::{
    encode_utf16z, Config, ConfigBuilder, MAX_REGISTRY_VALUE_BYTES, REGISTRY_VALUES,
};
use wsk_sys::{
    InitializeObjectAttributes, KeyValuePartialInformation, ZwClose, ZwOpenKey, ZwQueryValueKey,
    HANDLE, KEY_READ, KEY_VALUE_PARTIAL_INFORMATION, NT_SUCCESS, OBJ_CASE_INSENSITIVE,
    OBJ_KERNEL_HANDLE, PCUNICODE_STRING, STATUS_OBJECT_NAME_NOT_FOUND, ULONG, UNICODE_STRING,
};

use crate::kernel::pool;

const SUFFIX: &str = "\\Parameters";

/// # Safety
/// `reg_path` is null or a valid UNICODE_STRING. PASSIVE_LEVEL.
pub(crate) unsafe fn read_config(reg_path: PCUNICODE_STRING) -> Config {
    let mut b = ConfigBuilder::new();
    // SAFETY: per the caller.
    if let Some(h) = unsafe { open_parameters(reg_path) } {
        let buf = pool::alloc(MAX_REGISTRY_VALUE_BYTES + 64, pool::TAG_TEMP);
        if !buf.is_null() {
            for spec in REGISTRY_VALUES {
                // SAFETY: h open, buf has MAX+64 bytes.
                unsafe { read_value(h, spec.name, buf, &mut b) };
            }
            // SAFETY: allocated above.
            unsafe { pool::free(buf, pool::TAG_TEMP) };
        }
        // SAFETY: our handle.
        unsafe { ZwClose(h) };
    }
    let (cfg, err) = b.finish();
    if let Some(e) = err {
        crate::kernel::log::log_err!("{e}");
    }
    cfg
}

unsafe fn open_parameters(reg_path: PCUNICODE_STRING) -> Option<HANDLE> {
    if reg_path.is_null() {
        return None;
    }
    // SAFETY: valid UNICODE_STRING per the caller.
    let (len, src) = unsafe { (usize::from((*reg_path).Length), (*reg_path).Buffer) };
    let total = len + SUFFIX.len() * 2;
    if total > usize::from(u16::MAX) - 2 || src.is_null() {
        return None;
    }
    let name = pool::alloc(total + 2, pool::TAG_TEMP);
    if name.is_null() {
        return None;
    }
    // SAFETY: name has total+2 bytes; src has len bytes.
    unsafe {
        ptr::copy_nonoverlapping(src.cast::<u8>(), name, len);
        let tail = core::slice::from_raw_parts_mut(name.add(len), SUFFIX.len() * 2 + 2);
        encode_utf16z(SUFFIX, tail);
    }
    let mut us = UNICODE_STRING {
        Length: total as u16,
        MaximumLength: (total + 2) as u16,
        Buffer: name.cast(),
    };
    let mut oa = InitializeObjectAttributes(
        &raw mut us,
        OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE,
        ptr::null_mut(),
        ptr::null_mut(),
    );
    let mut h: HANDLE = ptr::null_mut();
    // SAFETY: all structures live across the call.
    let status = unsafe { ZwOpenKey(&raw mut h, KEY_READ, &raw mut oa) };
    // SAFETY: allocated above, no longer referenced.
    unsafe { pool::free(name, pool::TAG_TEMP) };
    NT_SUCCESS(status).then_some(h)
}

/// # Safety
/// `h` open key, `buf` MAX_REGISTRY_VALUE_BYTES + 64 bytes.
unsafe fn read_value(h: HANDLE, name: &'static str, buf: *mut u8, b: &mut ConfigBuilder) {
    let mut wname = [0u8; 128];
    let Some(n) = encode_utf16z(name, &mut wname) else {
        return;
    };
    let mut us = UNICODE_STRING {
        Length: (n - 2) as u16,
        MaximumLength: n as u16,
        Buffer: wname.as_mut_ptr().cast(),
    };
    let mut got: ULONG = 0;
    let cap = (MAX_REGISTRY_VALUE_BYTES + 64) as ULONG;
    // SAFETY: buf has cap bytes; us/wname live across the call.
    let status = unsafe {
        ZwQueryValueKey(
            h,
            &raw mut us,
            KeyValuePartialInformation,
            buf.cast(),
            cap,
            &raw mut got,
        )
    };
    if status == STATUS_OBJECT_NAME_NOT_FOUND {
        return;
    }
    if !NT_SUCCESS(status) {
        crate::kernel::log::log_err!(
            "registry value {name}: read failed {:#x}; default used",
            status as u32
        );
        return;
    }
    // SAFETY: ZwQueryValueKey filled a KEY_VALUE_PARTIAL_INFORMATION header + DataLength bytes;
    // the pool block is 16-aligned.
    #[allow(clippy::cast_ptr_alignment)]
    let (ty, data) = unsafe {
        let info = &*buf.cast::<KEY_VALUE_PARTIAL_INFORMATION>();
        let dl = (info.DataLength as usize).min(MAX_REGISTRY_VALUE_BYTES);
        (
            info.Type,
            core::slice::from_raw_parts(ptr::addr_of!(info.Data).cast::<u8>(), dl),
        )
    };
    if let Err(e) = b.apply(name, ty, data) {
        crate::kernel::log::log_err!("{e}");
    }
}
