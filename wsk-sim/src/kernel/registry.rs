//! An in-memory registry behind ZwOpenKey / ZwQueryValueKey, filled by tests.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use wsk_sys::{
    ACCESS_MASK, HANDLE, KEY_VALUE_INFORMATION_CLASS, NTSTATUS, PHANDLE, POBJECT_ATTRIBUTES,
    PULONG, PUNICODE_STRING, PVOID, REG_BINARY, REG_DWORD, REG_MULTI_SZ, REG_QWORD, REG_SZ,
    STATUS_BUFFER_OVERFLOW, STATUS_BUFFER_TOO_SMALL, STATUS_INVALID_HANDLE,
    STATUS_INVALID_PARAMETER, STATUS_OBJECT_NAME_NOT_FOUND, STATUS_SUCCESS, ULONG,
};

/// A registry value as a test sets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegValue {
    Dword(u32),
    Qword(u64),
    Sz(String),
    MultiSz(Vec<String>),
    Binary(Vec<u8>),
}

impl RegValue {
    fn encode(&self) -> (ULONG, Vec<u8>) {
        fn wide(s: &str, out: &mut Vec<u8>) {
            for u in s.encode_utf16().chain(std::iter::once(0)) {
                out.extend_from_slice(&u.to_le_bytes());
            }
        }
        match self {
            RegValue::Dword(v) => (REG_DWORD, v.to_le_bytes().to_vec()),
            RegValue::Qword(v) => (REG_QWORD, v.to_le_bytes().to_vec()),
            RegValue::Sz(s) => {
                let mut b = Vec::new();
                wide(s, &mut b);
                (REG_SZ, b)
            }
            RegValue::MultiSz(v) => {
                let mut b = Vec::new();
                for s in v {
                    wide(s, &mut b);
                }
                b.extend_from_slice(&[0, 0]);
                (REG_MULTI_SZ, b)
            }
            RegValue::Binary(b) => (REG_BINARY, b.clone()),
        }
    }
}

static KEYS: Mutex<Option<HashMap<String, HashMap<String, RegValue>>>> = Mutex::new(None);

fn keys() -> MutexGuard<'static, Option<HashMap<String, HashMap<String, RegValue>>>> {
    KEYS.lock().unwrap_or_else(PoisonError::into_inner)
}

fn norm(path: &str) -> String {
    path.trim_end_matches('\\').to_ascii_lowercase()
}

/// Creates `path` (e.g. `\Registry\Machine\System\CurrentControlSet\Services\wskecho\Parameters`)
/// if needed and sets `name` in it.
pub fn set_value(path: &str, name: &str, value: RegValue) {
    keys()
        .get_or_insert_with(HashMap::new)
        .entry(norm(path))
        .or_default()
        .insert(name.to_ascii_lowercase(), value);
}

/// Creates an empty key.
pub fn create_key(path: &str) {
    keys()
        .get_or_insert_with(HashMap::new)
        .entry(norm(path))
        .or_default();
}

/// Removes every key.
pub fn clear() {
    *keys() = None;
}

/// `ZwOpenKey`: PASSIVE_LEVEL; the key must exist.
#[no_mangle]
pub unsafe extern "win64" fn ZwOpenKey(
    KeyHandle: PHANDLE,
    DesiredAccess: ACCESS_MASK,
    ObjectAttributes: POBJECT_ATTRIBUTES,
) -> NTSTATUS {
    let _ = DesiredAccess;
    crate::kernel::irql::require_passive("ZwOpenKey");
    if ObjectAttributes.is_null() || KeyHandle.is_null() {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the caller passes a valid OBJECT_ATTRIBUTES.
    let (root, name) = unsafe {
        (
            (*ObjectAttributes).RootDirectory,
            crate::kernel::unicode::unicode((*ObjectAttributes).ObjectName),
        )
    };
    let path = if root.is_null() {
        name
    } else {
        match crate::kernel::thread::lookup(root) {
            Some(crate::kernel::thread::Handle::Key(p)) => format!("{p}\\{name}"),
            _ => return STATUS_INVALID_HANDLE,
        }
    };
    let path = norm(&path);
    if !keys().as_ref().is_some_and(|k| k.contains_key(&path)) {
        return STATUS_OBJECT_NAME_NOT_FOUND;
    }
    let handle = crate::kernel::thread::new_handle(crate::kernel::thread::Handle::Key(path));
    // SAFETY: the caller passes HANDLE storage.
    unsafe { KeyHandle.write(handle) };
    STATUS_SUCCESS
}

/// `ZwQueryValueKey`: PASSIVE_LEVEL; KeyValuePartialInformation and
/// KeyValueFullInformation are supported.
#[no_mangle]
pub unsafe extern "win64" fn ZwQueryValueKey(
    KeyHandle: HANDLE,
    ValueName: PUNICODE_STRING,
    KeyValueInformationClass: KEY_VALUE_INFORMATION_CLASS,
    KeyValueInformation: PVOID,
    Length: ULONG,
    ResultLength: PULONG,
) -> NTSTATUS {
    crate::kernel::irql::require_passive("ZwQueryValueKey");
    let Some(crate::kernel::thread::Handle::Key(path)) = crate::kernel::thread::lookup(KeyHandle)
    else {
        return STATUS_INVALID_HANDLE;
    };
    // SAFETY: the caller passes a valid UNICODE_STRING.
    let name = unsafe { crate::kernel::unicode::unicode(ValueName) };
    let value = keys()
        .as_ref()
        .and_then(|k| k.get(&path))
        .and_then(|v| v.get(&name.to_ascii_lowercase()))
        .cloned();
    let Some(value) = value else {
        return STATUS_OBJECT_NAME_NOT_FOUND;
    };
    let (ty, data) = value.encode();
    let out = KeyValueInformation.cast::<u8>();
    let put32 = |off: usize, v: u32| {
        // SAFETY: callers check `off + 4 <= Length` first.
        unsafe { out.add(off).cast::<u32>().write_unaligned(v) }
    };
    match KeyValueInformationClass {
        wsk_sys::KeyValuePartialInformation => {
            // TitleIndex, Type, DataLength, Data[]
            let header = 12usize;
            let need = header + data.len();
            if !ResultLength.is_null() {
                // SAFETY: the caller passes ULONG storage.
                unsafe { ResultLength.write(need as u32) };
            }
            if (Length as usize) < header {
                return STATUS_BUFFER_TOO_SMALL;
            }
            put32(0, 0);
            put32(4, ty);
            put32(8, data.len() as u32);
            if (Length as usize) < need {
                return STATUS_BUFFER_OVERFLOW;
            }
            // SAFETY: `need <= Length` bytes of caller storage.
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), out.add(header), data.len()) };
            STATUS_SUCCESS
        }
        wsk_sys::KeyValueFullInformation => {
            // TitleIndex, Type, DataOffset, DataLength, NameLength, Name[]; data after.
            let wname: Vec<u16> = name.encode_utf16().collect();
            let header = 20usize;
            let data_off = (header + wname.len() * 2 + 7) & !7;
            let need = data_off + data.len();
            if !ResultLength.is_null() {
                // SAFETY: the caller passes ULONG storage.
                unsafe { ResultLength.write(need as u32) };
            }
            if (Length as usize) < header {
                return STATUS_BUFFER_TOO_SMALL;
            }
            put32(0, 0);
            put32(4, ty);
            put32(8, data_off as u32);
            put32(12, data.len() as u32);
            put32(16, (wname.len() * 2) as u32);
            if (Length as usize) < need {
                return STATUS_BUFFER_OVERFLOW;
            }
            // SAFETY: `need <= Length` bytes of caller storage.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    wname.as_ptr().cast::<u8>(),
                    out.add(header),
                    wname.len() * 2,
                );
                std::ptr::copy_nonoverlapping(data.as_ptr(), out.add(data_off), data.len());
            }
            STATUS_SUCCESS
        }
        _ => STATUS_INVALID_PARAMETER,
    }
}
