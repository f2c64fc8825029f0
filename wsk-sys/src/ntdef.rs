//! Basic types of ntdef.h / minwindef.h / guiddef.h (x64 widths).

use core::ffi::c_void;

pub type PVOID = *mut c_void;
pub type PCVOID = *const c_void;
pub type HANDLE = *mut c_void;
pub type PHANDLE = *mut HANDLE;
pub type BOOLEAN = u8;
pub type PBOOLEAN = *mut BOOLEAN;
pub type UCHAR = u8;
pub type CHAR = i8;
pub type CCHAR = i8;
pub type USHORT = u16;
pub type CSHORT = i16;
pub type SHORT = i16;
pub type ULONG = u32;
pub type PULONG = *mut u32;
pub type LONG = i32;
pub type ULONGLONG = u64;
pub type LONGLONG = i64;
pub type ULONG_PTR = usize;
pub type LONG_PTR = isize;
pub type SIZE_T = usize;
pub type PSIZE_T = *mut usize;
pub type WCHAR = u16;
pub type PWSTR = *mut u16;
pub type PCWSTR = *const u16;
pub type PCHAR = *mut i8;
pub type PCSTR = *const u8;
pub type ACCESS_MASK = u32;
pub type KPRIORITY = i32;
pub type KAFFINITY = usize;
pub type POOL_FLAGS = u64;
pub type DEVICE_TYPE = u32;
pub type SECURITY_INFORMATION = u32;

pub const TRUE: BOOLEAN = 1;
pub const FALSE: BOOLEAN = 0;

/// `NTSTATUS`: <https://learn.microsoft.com/openspecs/windows_protocols/ms-erref/87fba13e-bf06-450e-83b1-9241dc81e781>
pub type NTSTATUS = i32;

/// `NT_SUCCESS` macro: success and informational codes are non-negative.
#[inline]
pub const fn NT_SUCCESS(status: NTSTATUS) -> bool {
    status >= 0
}

/// `NT_INFORMATION` macro (severity 01).
#[inline]
pub const fn NT_INFORMATION(status: NTSTATUS) -> bool {
    (status as u32 >> 30) == 1
}

/// `NT_WARNING` macro (severity 10).
#[inline]
pub const fn NT_WARNING(status: NTSTATUS) -> bool {
    (status as u32 >> 30) == 2
}

/// `NT_ERROR` macro (severity 11).
#[inline]
pub const fn NT_ERROR(status: NTSTATUS) -> bool {
    (status as u32 >> 30) == 3
}

/// `LIST_ENTRY`: <https://learn.microsoft.com/windows/win32/api/ntdef/ns-ntdef-list_entry>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LIST_ENTRY {
    pub Flink: *mut LIST_ENTRY,
    pub Blink: *mut LIST_ENTRY,
}
pub type PLIST_ENTRY = *mut LIST_ENTRY;

/// `SINGLE_LIST_ENTRY`: <https://learn.microsoft.com/windows/win32/api/ntdef/ns-ntdef-single_list_entry>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SINGLE_LIST_ENTRY {
    pub Next: *mut SINGLE_LIST_ENTRY,
}

/// `UNICODE_STRING`: <https://learn.microsoft.com/windows/win32/api/ntdef/ns-ntdef-_unicode_string>
/// Length and MaximumLength are in bytes, not characters.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UNICODE_STRING {
    pub Length: USHORT,
    pub MaximumLength: USHORT,
    pub Buffer: PWSTR,
}
pub type PUNICODE_STRING = *mut UNICODE_STRING;
pub type PCUNICODE_STRING = *const UNICODE_STRING;

/// The `LowPart`/`HighPart` view of `LARGE_INTEGER`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LARGE_INTEGER_PARTS {
    pub LowPart: ULONG,
    pub HighPart: LONG,
}

/// `LARGE_INTEGER`: <https://learn.microsoft.com/windows/win32/api/winnt/ns-winnt-large_integer-r1>
/// C's anonymous struct member is `u` here (C also names it `u`).
#[repr(C)]
#[derive(Clone, Copy)]
pub union LARGE_INTEGER {
    pub QuadPart: LONGLONG,
    pub u: LARGE_INTEGER_PARTS,
}
pub type PLARGE_INTEGER = *mut LARGE_INTEGER;

impl LARGE_INTEGER {
    pub const fn new(quad: i64) -> Self {
        LARGE_INTEGER { QuadPart: quad }
    }
}

impl core::fmt::Debug for LARGE_INTEGER {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // SAFETY: both members are plain integers covering all 8 bytes.
        let q = unsafe { self.QuadPart };
        f.debug_struct("LARGE_INTEGER")
            .field("QuadPart", &q)
            .finish()
    }
}

/// The `LowPart`/`HighPart` view of `ULARGE_INTEGER`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ULARGE_INTEGER_PARTS {
    pub LowPart: ULONG,
    pub HighPart: ULONG,
}

/// `ULARGE_INTEGER`: <https://learn.microsoft.com/windows/win32/api/winnt/ns-winnt-ularge_integer-r1>
#[repr(C)]
#[derive(Clone, Copy)]
pub union ULARGE_INTEGER {
    pub QuadPart: ULONGLONG,
    pub u: ULARGE_INTEGER_PARTS,
}

impl core::fmt::Debug for ULARGE_INTEGER {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // SAFETY: both members are plain integers covering all 8 bytes.
        let q = unsafe { self.QuadPart };
        f.debug_struct("ULARGE_INTEGER")
            .field("QuadPart", &q)
            .finish()
    }
}

/// `GUID`: <https://learn.microsoft.com/windows/win32/api/guiddef/ns-guiddef-guid>
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GUID {
    pub Data1: u32,
    pub Data2: u16,
    pub Data3: u16,
    pub Data4: [u8; 8],
}
pub type LPGUID = *mut GUID;

/// `LUID`: <https://learn.microsoft.com/windows/win32/api/winnt/ns-winnt-luid>
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LUID {
    pub LowPart: ULONG,
    pub HighPart: LONG,
}

/// `OBJECT_ATTRIBUTES`: <https://learn.microsoft.com/windows/win32/api/ntdef/ns-ntdef-_object_attributes>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct OBJECT_ATTRIBUTES {
    pub Length: ULONG,
    pub RootDirectory: HANDLE,
    pub ObjectName: PUNICODE_STRING,
    pub Attributes: ULONG,
    pub SecurityDescriptor: PVOID,
    pub SecurityQualityOfService: PVOID,
}
pub type POBJECT_ATTRIBUTES = *mut OBJECT_ATTRIBUTES;

pub const OBJ_INHERIT: ULONG = 0x0000_0002;
pub const OBJ_PERMANENT: ULONG = 0x0000_0010;
pub const OBJ_EXCLUSIVE: ULONG = 0x0000_0020;
pub const OBJ_CASE_INSENSITIVE: ULONG = 0x0000_0040;
pub const OBJ_OPENIF: ULONG = 0x0000_0080;
pub const OBJ_OPENLINK: ULONG = 0x0000_0100;
pub const OBJ_KERNEL_HANDLE: ULONG = 0x0000_0200;
pub const OBJ_FORCE_ACCESS_CHECK: ULONG = 0x0000_0400;

/// `InitializeObjectAttributes` macro:
/// <https://learn.microsoft.com/windows/win32/api/ntdef/nf-ntdef-initializeobjectattributes>
#[inline]
pub const fn InitializeObjectAttributes(
    ObjectName: PUNICODE_STRING,
    Attributes: ULONG,
    RootDirectory: HANDLE,
    SecurityDescriptor: PVOID,
) -> OBJECT_ATTRIBUTES {
    OBJECT_ATTRIBUTES {
        Length: core::mem::size_of::<OBJECT_ATTRIBUTES>() as ULONG,
        RootDirectory,
        ObjectName,
        Attributes,
        SecurityDescriptor,
        SecurityQualityOfService: core::ptr::null_mut(),
    }
}

/// `CLIENT_ID`: <https://learn.microsoft.com/openspecs/windows_protocols/ms-tsts/a11e7129-685b-4535-8d37-21d4596ac057>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CLIENT_ID {
    pub UniqueProcess: HANDLE,
    pub UniqueThread: HANDLE,
}
pub type PCLIENT_ID = *mut CLIENT_ID;

/// `PROCESSOR_NUMBER`: <https://learn.microsoft.com/windows/win32/api/winnt/ns-winnt-processor_number>
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PROCESSOR_NUMBER {
    pub Group: USHORT,
    pub Number: UCHAR,
    pub Reserved: UCHAR,
}
pub type PPROCESSOR_NUMBER = *mut PROCESSOR_NUMBER;

pub const ALL_PROCESSOR_GROUPS: USHORT = 0xffff;

// Access masks (winnt.h / wdm.h).
pub const DELETE: ACCESS_MASK = 0x0001_0000;
pub const READ_CONTROL: ACCESS_MASK = 0x0002_0000;
pub const WRITE_DAC: ACCESS_MASK = 0x0004_0000;
pub const WRITE_OWNER: ACCESS_MASK = 0x0008_0000;
pub const SYNCHRONIZE: ACCESS_MASK = 0x0010_0000;
pub const STANDARD_RIGHTS_REQUIRED: ACCESS_MASK = 0x000F_0000;
pub const STANDARD_RIGHTS_ALL: ACCESS_MASK = 0x001F_0000;
pub const GENERIC_READ: ACCESS_MASK = 0x8000_0000;
pub const GENERIC_WRITE: ACCESS_MASK = 0x4000_0000;
pub const GENERIC_EXECUTE: ACCESS_MASK = 0x2000_0000;
pub const GENERIC_ALL: ACCESS_MASK = 0x1000_0000;
pub const FILE_ALL_ACCESS: ACCESS_MASK = STANDARD_RIGHTS_REQUIRED | SYNCHRONIZE | 0x1FF;
pub const THREAD_ALL_ACCESS: ACCESS_MASK = STANDARD_RIGHTS_REQUIRED | SYNCHRONIZE | 0xFFFF;
pub const KEY_QUERY_VALUE: ACCESS_MASK = 0x0001;
pub const KEY_ENUMERATE_SUB_KEYS: ACCESS_MASK = 0x0008;
pub const KEY_NOTIFY: ACCESS_MASK = 0x0010;
pub const KEY_READ: ACCESS_MASK =
    (READ_CONTROL | KEY_QUERY_VALUE | KEY_ENUMERATE_SUB_KEYS | KEY_NOTIFY) & !SYNCHRONIZE;
