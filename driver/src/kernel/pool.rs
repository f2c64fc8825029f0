//! Non-paged pool with a tag per owner (C15: everything touched at DISPATCH is non-paged;
//! C31: every block freed before unload — the sim's accounting checks it per tag).
//!
//! ExAllocatePool2 exists from Windows 10 2004 only, and the driver runs from 1809 / Server
//! 2019 on (docs/windows-versions.md): DriverEntry looks it up once ([`resolve`]); where the
//! kernel lacks it, blocks come from ExAllocatePoolWithTag(NonPagedPoolNx) and are zeroed
//! here, so every caller sees the same zeroed, tagged, non-executable block either way.

use core::ffi::c_void;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};
use wsk_sys::{
    ExAllocatePoolWithTag, ExFreePoolWithTag, MmGetSystemRoutineAddress, NonPagedPoolNx,
    EX_ALLOCATE_POOL2, NTSTATUS, PFN_EX_ALLOCATE_POOL2, POOL_FLAG_NON_PAGED,
    STATUS_INSUFFICIENT_RESOURCES, UNICODE_STRING,
};

/// ExAllocatePool2's address when the kernel exports it, else null. Written by [`resolve`]
/// in DriverEntry before the first allocation (and again at each load: a host process loads
/// the driver many times, on kernels with and without it); read by every allocation.
static POOL2: AtomicPtr<c_void> = AtomicPtr::new(ptr::null_mut());

/// Looks ExAllocatePool2 up and remembers the answer; true when the kernel has it.
/// PASSIVE_LEVEL (MmGetSystemRoutineAddress's rule): DriverEntry, before anything allocates.
pub(crate) fn resolve() -> bool {
    let bytes = (EX_ALLOCATE_POOL2.len() * 2) as u16;
    let mut name = UNICODE_STRING {
        Length: bytes,
        MaximumLength: bytes,
        // Only read: MmGetSystemRoutineAddress takes a PUNICODE_STRING but does not write it.
        Buffer: EX_ALLOCATE_POOL2.as_ptr().cast_mut(),
    };
    // SAFETY: PASSIVE_LEVEL (the caller's rule); `name` is a counted string that lives across
    // the call.
    let p = unsafe { MmGetSystemRoutineAddress(&raw mut name) };
    POOL2.store(p, Ordering::Release);
    !p.is_null()
}

const fn tag(b: [u8; 4]) -> u32 {
    // Pool tags are shown by debuggers in memory order: little-endian bytes.
    u32::from_le_bytes(b)
}

/// The driver state block (owner: lib.rs, freed at unload).
pub(crate) const TAG_DRIVER: u32 = tag(*b"WEdr");
/// Connection contexts and their send rings (owner: the conn pool, freed at unload).
pub(crate) const TAG_CONN: u32 = tag(*b"WEcn");
/// Listener contexts (owner: serve::listener).
pub(crate) const TAG_LISTEN: u32 = tag(*b"WEls");
/// UDP socket contexts with their send-context arrays and copy buffers (owner: serve::udp,
/// load::udp).
pub(crate) const TAG_UDP: u32 = tag(*b"WEud");
/// The shared read-only source pattern (owner: driver, freed at unload).
pub(crate) const TAG_PATTERN: u32 = tag(*b"WEpt");
/// Short-lived PASSIVE_LEVEL buffers: registry reads, sync IRP blocks (owner: the caller).
pub(crate) const TAG_TEMP: u32 = tag(*b"WEtm");

/// Zeroed, non-executable non-paged allocation; null on failure. IRQL <= DISPATCH_LEVEL.
pub(crate) fn alloc(size: usize, tag: u32) -> *mut u8 {
    let pool2 = POOL2.load(Ordering::Acquire);
    if !pool2.is_null() {
        // SAFETY: a non-null POOL2 is what the kernel's export table gives for
        // "ExAllocatePool2", whose prototype is PFN_EX_ALLOCATE_POOL2.
        let f = unsafe { core::mem::transmute::<*mut c_void, PFN_EX_ALLOCATE_POOL2>(pool2) };
        // SAFETY: no preconditions beyond IRQL <= DISPATCH for non-paged pool; without
        // POOL_FLAG_UNINITIALIZED the block is zeroed (and POOL_FLAG_NON_PAGED is NX).
        return unsafe { f(POOL_FLAG_NON_PAGED, size, tag).cast() };
    }
    // SAFETY: IRQL <= DISPATCH_LEVEL for non-paged pool, the caller's rule.
    let p: *mut u8 = unsafe { ExAllocatePoolWithTag(NonPagedPoolNx, size, tag).cast() };
    if !p.is_null() {
        // ExAllocatePoolWithTag hands out the block as it was: callers rely on zeroed memory
        // (alloc_zeroed, the statistics slots), as ExAllocatePool2 gives it.
        // SAFETY: a fresh block of at least `size` bytes, ours alone.
        unsafe { ptr::write_bytes(p, 0, size) };
    }
    p
}

/// # Safety
/// `p` came from [`alloc`] with the same `tag` and is not used afterwards.
pub(crate) unsafe fn free(p: *mut u8, tag: u32) {
    if !p.is_null() {
        // SAFETY: the caller guarantees ownership and the matching tag.
        unsafe { ExFreePoolWithTag(p.cast(), tag) };
    }
}

/// Allocates a zeroed `T`, honouring alignments above the pool's 16 bytes (the per-CPU
/// statistics are 128-byte aligned): the block is over-allocated and the original address is
/// stored just below the aligned one. Only for types whose all-zero bit pattern is valid or that
/// are fully written before use.
pub(crate) fn alloc_zeroed<T>(tag: u32) -> *mut T {
    let align = core::mem::align_of::<T>();
    let size = core::mem::size_of::<T>();
    if align <= 16 {
        return alloc(size, tag).cast();
    }
    let raw = alloc(size + align, tag);
    if raw.is_null() {
        return ptr::null_mut();
    }
    // Pool blocks are 16-aligned, so the aligned address is at least 16 bytes in: room for
    // the original pointer.
    let aligned = ((raw as usize + 16 + align - 1) & !(align - 1)) as *mut u8;
    // SAFETY: aligned - 8 .. aligned lies inside the block (aligned >= raw + 16), and is
    // 8-aligned since aligned is at least 16-aligned.
    #[allow(clippy::cast_ptr_alignment)]
    unsafe {
        aligned.sub(8).cast::<*mut u8>().write(raw);
    };
    aligned.cast()
}

/// Allocates a `T` and moves `value` into it: the one way the driver makes a context, so every
/// field is written before the block can be published. IRQL <= DISPATCH_LEVEL.
pub(crate) fn new_block<T>(value: T, tag: u32) -> Result<*mut T, NTSTATUS> {
    let p: *mut T = alloc_zeroed(tag);
    if p.is_null() {
        return Err(STATUS_INSUFFICIENT_RESOURCES);
    }
    // SAFETY: a fresh block of T's size and alignment, ours alone.
    unsafe { ptr::write(p, value) };
    Ok(p)
}

/// # Safety
/// `p` came from [`alloc_zeroed`] with the same tag; drops `T` in place first.
pub(crate) unsafe fn free_typed<T>(p: *mut T, tag: u32) {
    if p.is_null() {
        return;
    }
    // SAFETY: the caller owns a live T there; the raw pointer was stored by alloc_zeroed.
    unsafe {
        ptr::drop_in_place(p);
        if core::mem::align_of::<T>() <= 16 {
            free(p.cast(), tag);
        } else {
            #[allow(clippy::cast_ptr_alignment)] // 8-aligned: written by alloc_zeroed
            let raw = p.cast::<u8>().sub(8).cast::<*mut u8>().read();
            free(raw, tag);
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    extern crate wsk_sim;

    use super::*;
    use std::string::String;
    use std::vec::Vec;

    /// Loads nothing: resolves the pool routine on a sim kernel of `build`, allocates `n` bytes
    /// with TAG_TEMP and returns (found ExAllocatePool2, the block's bytes, the sim's tally of
    /// allocations by call, findings after the free).
    #[allow(clippy::type_complexity)]
    fn one_block(
        build: u32,
        n: usize,
    ) -> (bool, Vec<u8>, Vec<(String, String, usize)>, Vec<String>) {
        let guard = wsk_sim::init(wsk_sim::Config {
            windows_build: build,
            ..wsk_sim::Config::plain()
        });
        // resolve's rule: PASSIVE_LEVEL.
        let found = wsk_sim::run_passive(resolve);
        let p = alloc(n, TAG_TEMP);
        assert!(!p.is_null());
        // SAFETY: a live block of n bytes.
        let bytes = unsafe { core::slice::from_raw_parts(p, n) }.to_vec();
        let tally = wsk_sim::pool::allocations();
        // SAFETY: allocated above with this tag.
        unsafe { free(p, TAG_TEMP) };
        let findings = wsk_sim::finish();
        // Forgotten while this test holds the sim: the next test resolves afresh.
        POOL2.store(ptr::null_mut(), Ordering::Release);
        drop(guard);
        (found, bytes, tally, findings)
    }

    /// On a kernel without ExAllocatePool2 (1809, build 17763) the block comes from
    /// ExAllocatePoolWithTag(NonPagedPoolNx) with the owner's tag, and is zeroed although the
    /// sim fills such blocks with 0xCD.
    #[test]
    fn fallback_blocks_are_zeroed_nx_and_tagged() {
        let (found, bytes, tally, findings) = one_block(17763, 777);
        assert!(!found, "build 17763 has no ExAllocatePool2");
        assert!(
            bytes.iter().all(|&b| b == 0),
            "not zeroed: {:x?}",
            &bytes[..16]
        );
        assert_eq!(
            tally,
            [(
                "ExAllocatePoolWithTag(NonPagedPoolNx)".into(),
                "WEtm".into(),
                1
            )]
        );
        assert!(findings.is_empty(), "{findings:?}");
    }

    /// On 2004 and later the block comes from ExAllocatePool2 (zeroed by the kernel).
    #[test]
    fn pool2_is_used_where_the_kernel_has_it() {
        let (found, bytes, tally, findings) = one_block(19041, 100);
        assert!(found);
        assert!(bytes.iter().all(|&b| b == 0));
        assert_eq!(
            tally,
            [("ExAllocatePool2(NON_PAGED)".into(), "WEtm".into(), 1)]
        );
        assert!(findings.is_empty(), "{findings:?}");
    }
}
