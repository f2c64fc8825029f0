//! memcpy / memmove / memset / memcmp for images: ntoskrnl.exe exports them with the
//! Microsoft x64 convention, while the host's libc versions take System V arguments, so
//! an image bound to libc's would pass its arguments in the wrong registers.

use core::ffi::c_void;

/// `memcpy` (ntoskrnl.exe export). Overlap is undefined in C; copying as memmove is a
/// legal implementation and never corrupts.
///
/// # Safety
/// `dest` and `src` valid for `n` bytes.
pub unsafe extern "win64" fn memcpy(
    dest: *mut c_void,
    src: *const c_void,
    n: usize,
) -> *mut c_void {
    // SAFETY: per the function contract.
    unsafe { core::ptr::copy(src.cast::<u8>(), dest.cast::<u8>(), n) };
    dest
}

/// `memmove` (ntoskrnl.exe export).
///
/// # Safety
/// `dest` and `src` valid for `n` bytes.
pub unsafe extern "win64" fn memmove(
    dest: *mut c_void,
    src: *const c_void,
    n: usize,
) -> *mut c_void {
    // SAFETY: per the function contract; `copy` allows overlap.
    unsafe { core::ptr::copy(src.cast::<u8>(), dest.cast::<u8>(), n) };
    dest
}

/// `memset` (ntoskrnl.exe export): the low byte of `c` fills `n` bytes.
///
/// # Safety
/// `dest` valid for `n` bytes.
pub unsafe extern "win64" fn memset(dest: *mut c_void, c: i32, n: usize) -> *mut c_void {
    // SAFETY: per the function contract.
    unsafe { core::ptr::write_bytes(dest.cast::<u8>(), c as u8, n) };
    dest
}

/// `memcmp` (ntoskrnl.exe export): sign of the first differing byte pair (as unsigned).
///
/// # Safety
/// `a` and `b` valid for `n` bytes.
pub unsafe extern "win64" fn memcmp(a: *const c_void, b: *const c_void, n: usize) -> i32 {
    // SAFETY: per the function contract.
    let (x, y) = unsafe {
        (
            core::slice::from_raw_parts(a.cast::<u8>(), n),
            core::slice::from_raw_parts(b.cast::<u8>(), n),
        )
    };
    match x.iter().zip(y).find(|(p, q)| p != q) {
        Some((p, q)) => i32::from(*p) - i32::from(*q),
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn win64_crt_routines_behave_like_c() {
        let mut a = [1u8, 2, 3, 4, 5, 6];
        // SAFETY: in-bounds buffers.
        unsafe {
            memmove(a.as_mut_ptr().add(1).cast(), a.as_ptr().cast(), 4);
            assert_eq!(a, [1, 1, 2, 3, 4, 6]);
            memset(a.as_mut_ptr().cast(), 0x1ff, 2);
            assert_eq!(a, [0xff, 0xff, 2, 3, 4, 6]);
            let b = [0xffu8, 0xff, 2, 9];
            assert!(memcmp(a.as_ptr().cast(), b.as_ptr().cast(), 4) < 0);
            assert_eq!(memcmp(a.as_ptr().cast(), b.as_ptr().cast(), 3), 0);
            let mut c = [0u8; 4];
            assert_eq!(
                memcpy(c.as_mut_ptr().cast(), b.as_ptr().cast(), 4),
                c.as_mut_ptr().cast()
            );
            assert_eq!(c, b);
        }
    }
}
