//! Non-paged pool with a tag per owner (C15: everything touched at DISPATCH is non-paged;
//! C31: every block freed before unload — the sim's accounting checks it per tag).

use core::ptr;
use wsk_sys::{
    ExAllocatePool2, ExFreePoolWithTag, NTSTATUS, POOL_FLAG_NON_PAGED,
    STATUS_INSUFFICIENT_RESOURCES,
};

const fn tag(b: [u8; 4]) -> u32 {
    // Pool tags are shown by debuggers in memory order: little-endian bytes.
    u32::from_le_bytes(b)
}

/// The driver state block (owner: lib.rs, freed at unload).
pub(crate) const TAG_DRIVER: u32 = tag(*b"WEdr");
/// Connection contexts and their send rings (owner: serve::conn pool, freed at unload).
pub(crate) const TAG_CONN: u32 = tag(*b"WEcn");
/// Listener contexts (owner: serve::listener).
pub(crate) const TAG_LISTEN: u32 = tag(*b"WEls");
/// UDP socket contexts with their send-context arrays and copy buffers (owner: serve::udp, load::udp).
pub(crate) const TAG_UDP: u32 = tag(*b"WEud");
/// The shared read-only source pattern (owner: driver, freed at unload).
pub(crate) const TAG_PATTERN: u32 = tag(*b"WEpt");
/// Short-lived PASSIVE_LEVEL buffers: registry reads, sync IRP blocks (owner: the caller).
pub(crate) const TAG_TEMP: u32 = tag(*b"WEtm");

/// Zeroed non-paged allocation; null on failure. IRQL <= DISPATCH_LEVEL.
pub(crate) fn alloc(size: usize, tag: u32) -> *mut u8 {
    // SAFETY: ExAllocatePool2 has no preconditions beyond IRQL <= DISPATCH for non-paged pool;
    // without POOL_FLAG_UNINITIALIZED the block is zeroed.
    unsafe { ExAllocatePool2(POOL_FLAG_NON_PAGED, size, tag).cast() }
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
