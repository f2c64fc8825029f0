//! The driver's control device on Windows: CreateFileW(`\\.\WskEcho`) + DeviceIoControl.
//! A few kernel32/ntdll declarations instead of a windows-sys dependency.

use std::ffi::c_void;
use std::io;

use anyhow::Result;
use control::ioctl::status::STATUS_SUCCESS;

use super::win32::win32_to_ntstatus;

type Handle = *mut c_void;
const INVALID_HANDLE_VALUE: Handle = -1isize as Handle;
const GENERIC_READ: u32 = 0x8000_0000;
const GENERIC_WRITE: u32 = 0x4000_0000;
const FILE_SHARE_READ: u32 = 1;
const FILE_SHARE_WRITE: u32 = 2;
const OPEN_EXISTING: u32 = 3;

#[link(name = "kernel32")]
extern "system" {
    fn CreateFileW(
        name: *const u16,
        access: u32,
        share: u32,
        security: *mut c_void,
        disposition: u32,
        flags: u32,
        template: Handle,
    ) -> Handle;
    fn DeviceIoControl(
        device: Handle,
        code: u32,
        input: *const c_void,
        input_len: u32,
        output: *mut c_void,
        output_len: u32,
        returned: *mut u32,
        overlapped: *mut c_void,
    ) -> i32;
    fn CloseHandle(h: Handle) -> i32;
    fn GetModuleHandleW(name: *const u16) -> Handle;
    fn GetProcAddress(module: Handle, name: *const u8) -> *const c_void;
}

/// RTL_OSVERSIONINFOW.
#[repr(C)]
struct OsVersionInfo {
    size: u32,
    major: u32,
    minor: u32,
    build: u32,
    platform: u32,
    csd: [u16; 128],
}

#[link(name = "ntdll")]
extern "system" {
    fn RtlGetVersion(info: *mut OsVersionInfo) -> i32;
}

/// "Windows 10.0.17763" (RtlGetVersion: unlike GetVersionEx it does not depend on the
/// program's manifest), with "under Wine X" when ntdll is Wine's: a bug report must say so.
pub fn os_description() -> String {
    let mut v = OsVersionInfo {
        size: std::mem::size_of::<OsVersionInfo>() as u32,
        major: 0,
        minor: 0,
        build: 0,
        platform: 0,
        csd: [0; 128],
    };
    // SAFETY: `v` is a writable RTL_OSVERSIONINFOW with its size field set, as the call needs.
    let st = unsafe { RtlGetVersion(&raw mut v) };
    let mut t = if st == 0 {
        format!("Windows {}.{}.{}", v.major, v.minor, v.build)
    } else {
        format!("Windows (RtlGetVersion failed: 0x{:08X})", st as u32)
    };
    let ntdll: Vec<u16> = "ntdll.dll".encode_utf16().chain(Some(0)).collect();
    // SAFETY: NUL-terminated UTF-16 name; ntdll is loaded in every process.
    let m = unsafe { GetModuleHandleW(ntdll.as_ptr()) };
    if !m.is_null() {
        // SAFETY: `m` is ntdll's handle; the name is a NUL-terminated ASCII string.
        let f = unsafe { GetProcAddress(m, c"wine_get_version".as_ptr().cast()) };
        if !f.is_null() {
            // SAFETY: Wine's ntdll exports `const char *wine_get_version(void)` (cdecl, which
            // is the one x64 calling convention); it returns a static NUL-terminated string.
            let ver = unsafe {
                let f: unsafe extern "C" fn() -> *const std::ffi::c_char = std::mem::transmute(f);
                std::ffi::CStr::from_ptr(f()).to_string_lossy().into_owned()
            };
            t.push_str(" under Wine ");
            t.push_str(&ver);
        }
    }
    t
}

pub struct DeviceChannel {
    h: Handle,
}

impl DeviceChannel {
    pub fn open() -> io::Result<Self> {
        let name: Vec<u16> = control::ioctl::USER_DEVICE_PATH
            .encode_utf16()
            .chain(Some(0))
            .collect();
        // SAFETY: `name` is NUL-terminated UTF-16 that outlives the call; the other pointers
        // are null, which CreateFileW accepts for security attributes and template.
        let h = unsafe {
            CreateFileW(
                name.as_ptr(),
                GENERIC_READ | GENERIC_WRITE,
                FILE_SHARE_READ | FILE_SHARE_WRITE,
                std::ptr::null_mut(),
                OPEN_EXISTING,
                0,
                std::ptr::null_mut(),
            )
        };
        if h == INVALID_HANDLE_VALUE {
            let e = io::Error::last_os_error();
            let why = match e.raw_os_error() {
                Some(2 | 3) => "\\\\.\\WskEcho does not exist (driver not installed or not started: sc start wskecho)".to_string(),
                Some(5) => "access denied to \\\\.\\WskEcho (the device is for Administrators and SYSTEM only: run elevated)".to_string(),
                _ => format!("cannot open \\\\.\\WskEcho: {e}"),
            };
            return Err(io::Error::new(e.kind(), why));
        }
        Ok(DeviceChannel { h })
    }
}

impl Drop for DeviceChannel {
    fn drop(&mut self) {
        // SAFETY: `h` came from a successful CreateFileW and is closed once, here.
        unsafe { CloseHandle(self.h) };
    }
}

impl super::Channel for DeviceChannel {
    fn describe(&self) -> String {
        format!(
            "{} on {}",
            control::ioctl::USER_DEVICE_PATH,
            os_description()
        )
    }

    fn call(&mut self, code: u32, input: &[u8], out_cap: usize) -> Result<(i32, Vec<u8>)> {
        let mut out = vec![0u8; out_cap];
        let mut returned = 0u32;
        // SAFETY: the buffers are valid for the lengths passed for the whole (synchronous)
        // call; the handle was opened without FILE_FLAG_OVERLAPPED, so no OVERLAPPED is used.
        let ok = unsafe {
            DeviceIoControl(
                self.h,
                code,
                input.as_ptr().cast(),
                input.len() as u32,
                out.as_mut_ptr().cast(),
                out.len() as u32,
                &raw mut returned,
                std::ptr::null_mut(),
            )
        };
        if ok == 0 {
            let e = io::Error::last_os_error().raw_os_error().unwrap_or(0);
            return Ok((win32_to_ntstatus(e), Vec::new()));
        }
        out.truncate(returned as usize);
        Ok((STATUS_SUCCESS, out))
    }
}
