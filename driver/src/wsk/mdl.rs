//! Reading WSK_BUF data (C35: walk the whole MDL chain, Offset in the first MDL only): walk the
//! whole chain, Offset applies to the first MDL only, map each MDL and treat a failed mapping as an
//! error, never a NULL dereference. And the MDLs the driver builds over its own non-paged buffers.

use wsk_sys::{
    IoAllocateMdl, MdlMappingNoExecute, MmBuildMdlForNonPagedPool, MmGetSystemAddressForMdlSafe,
    NormalPagePriority, FALSE, PMDL, ULONG, WSK_BUF,
};

/// Calls `f` with consecutive slices of the first `max` bytes of `buf` (<= buf.Length).
/// Returns the bytes visited, or None when an MDL could not be mapped.
///
/// # Safety
/// `buf` describes a valid locked/non-paged MDL chain (W51: the indication list is valid for the
/// callback, W75: a WSK_BUF's Offset lies in its first MDL), live for the call.
#[inline]
pub(crate) unsafe fn for_each_chunk(
    buf: &WSK_BUF,
    max: usize,
    mut f: impl FnMut(&[u8]),
) -> Option<usize> {
    let mut left = buf.Length.min(max);
    let total = left;
    let mut mdl = buf.Mdl;
    let mut off = buf.Offset as usize;
    while left > 0 {
        if mdl.is_null() {
            return None;
        }
        // SAFETY: mdl is a valid MDL in the chain (caller), mapped system VA or mappable.
        let (va, count, next) = unsafe {
            let va = MmGetSystemAddressForMdlSafe(mdl, NormalPagePriority | MdlMappingNoExecute);
            (va, (*mdl).ByteCount as usize, (*mdl).Next)
        };
        if va.is_null() {
            return None;
        }
        if off < count {
            let n = (count - off).min(left);
            // SAFETY: [va+off, va+off+n) lies within the MDL's described bytes.
            let s = unsafe { core::slice::from_raw_parts(va.cast::<u8>().add(off), n) };
            f(s);
            left -= n;
            off = 0;
        } else {
            off -= count;
        }
        mdl = next;
    }
    Some(total)
}

/// An MDL over non-paged pool (IRQL <= DISPATCH_LEVEL); null on failure.
pub(crate) fn build_mdl(p: *mut u8, len: usize) -> PMDL {
    // SAFETY: p/len is a live non-paged block owned by the caller, which frees the MDL first.
    unsafe {
        let mdl = IoAllocateMdl(p.cast(), len as ULONG, FALSE, FALSE, core::ptr::null_mut());
        if !mdl.is_null() {
            MmBuildMdlForNonPagedPool(mdl);
        }
        mdl
    }
}
