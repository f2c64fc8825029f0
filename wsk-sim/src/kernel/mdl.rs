//! MDLs over real memory: IoAllocateMdl / MmBuildMdlForNonPagedPool / IoFreeMdl, and the
//! provider's walk of a WSK_BUF's MDL chain.

use std::alloc::Layout;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use wsk_sys::{
    BOOLEAN, KPROCESSOR_MODE, MDL, MDL_MAPPED_TO_SYSTEM_VA, MDL_PAGES_LOCKED,
    MDL_SOURCE_IS_NONPAGED_POOL, MEMORY_CACHING_TYPE, PIRP, PMDL, PVOID, ULONG,
};

const PAGE_SIZE: usize = 4096;

struct Rec {
    size: usize,
    /// The pool block the MDL described when it was built (start), to catch a buffer
    /// freed while the MDL is still in use.
    pool_block: Option<usize>,
    /// Provider operations currently reading or writing through this MDL.
    in_use: usize,
    client: bool,
}

static MDLS: Mutex<Option<HashMap<usize, Rec>>> = Mutex::new(None);

fn with<R>(f: impl FnOnce(&mut HashMap<usize, Rec>) -> R) -> R {
    let mut g: MutexGuard<'_, _> = MDLS.lock().unwrap_or_else(PoisonError::into_inner);
    f(g.get_or_insert_with(HashMap::new))
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 16).expect("MDL layout")
}

pub(crate) fn spanned_pages(va: usize, len: usize) -> usize {
    ((va & (PAGE_SIZE - 1)) + len).div_ceil(PAGE_SIZE).max(1)
}

/// Live client MDLs (IoAllocateMdl without IoFreeMdl).
pub(crate) fn live_client() -> Vec<usize> {
    with(|m| {
        m.iter()
            .filter(|(_, r)| r.client)
            .map(|(a, _)| *a)
            .collect()
    })
}

pub(crate) fn reset() {
    with(|m| {
        for (a, r) in m.drain() {
            // SAFETY: allocated by `alloc_mdl` with this layout.
            unsafe { std::alloc::dealloc(a as *mut u8, layout(r.size)) };
        }
    });
}

/// Allocates and initialises an MDL for `[va, va+len)` (MmInitializeMdl).
pub(crate) fn alloc_mdl(va: PVOID, len: u32, client: bool) -> PMDL {
    let pages = spanned_pages(va as usize, len as usize);
    let size = std::mem::size_of::<MDL>() + pages * std::mem::size_of::<usize>();
    // SAFETY: non-zero size.
    let p = unsafe { std::alloc::alloc_zeroed(layout(size)) }.cast::<MDL>();
    if p.is_null() {
        return p;
    }
    // SAFETY: `p` has room for the header and its page array.
    unsafe {
        (*p).Size = size as i16;
        (*p).StartVa = ((va as usize) & !(PAGE_SIZE - 1)) as PVOID;
        (*p).ByteOffset = (va as usize & (PAGE_SIZE - 1)) as u32;
        (*p).ByteCount = len;
    }
    with(|m| {
        m.insert(
            p as usize,
            Rec {
                size,
                pool_block: None,
                in_use: 0,
                client,
            },
        )
    });
    p
}

pub(crate) fn free_mdl(mdl: PMDL, call: &str) {
    let r = with(|m| {
        let r = m.get(&(mdl as usize)).map(|r| (r.in_use, r.client));
        if matches!(r, Some((0, _))) {
            m.remove(&(mdl as usize))
        } else {
            None
        }
    });
    match r {
        // SAFETY: allocated by alloc_mdl with this layout.
        Some(r) => unsafe {
            std::ptr::write_bytes(mdl.cast::<u8>(), crate::kernel::pool::FREED_POISON, r.size);
            std::alloc::dealloc(mdl.cast(), layout(r.size));
        },
        None => {
            let st = with(|m| m.get(&(mdl as usize)).map(|r| r.in_use));
            match st {
                Some(n) => crate::kernel::state::violation(format!(
                    "{call}({mdl:p}): MDL still in use by {n} pending WSK request(s) (C20)"
                )),
                None => crate::kernel::state::violation(format!(
                    "{call}({mdl:p}): not a live MDL (double free?)"
                )),
            }
        }
    }
}

/// `IoAllocateMdl`: ≤ DISPATCH_LEVEL.
#[no_mangle]
pub unsafe extern "win64" fn IoAllocateMdl(
    VirtualAddress: PVOID,
    Length: ULONG,
    SecondaryBuffer: BOOLEAN,
    ChargeQuota: BOOLEAN,
    Irp: PIRP,
) -> PMDL {
    crate::kernel::preempt::entry("IoAllocateMdl");
    let _ = ChargeQuota;
    crate::kernel::irql::require_dispatch_or_below("IoAllocateMdl");
    if crate::kernel::schedule::injected_failure(crate::config::Call::IoAllocateMdl).is_some() {
        return std::ptr::null_mut();
    }
    let mdl = alloc_mdl(VirtualAddress, Length, true);
    if !mdl.is_null() && !Irp.is_null() {
        // SAFETY: the caller passes a live IRP; MDLs chain through Next.
        unsafe {
            if SecondaryBuffer == 0 {
                (*Irp).MdlAddress = mdl;
            } else {
                let mut tail = (*Irp).MdlAddress;
                if tail.is_null() {
                    (*Irp).MdlAddress = mdl;
                } else {
                    while !(*tail).Next.is_null() {
                        tail = (*tail).Next;
                    }
                    (*tail).Next = mdl;
                }
            }
        }
    }
    mdl
}

/// `IoFreeMdl`: ≤ DISPATCH_LEVEL.
#[no_mangle]
pub unsafe extern "win64" fn IoFreeMdl(Mdl: PMDL) {
    crate::kernel::preempt::entry("IoFreeMdl");
    crate::kernel::irql::require_dispatch_or_below("IoFreeMdl");
    free_mdl(Mdl, "IoFreeMdl");
}

/// `MmBuildMdlForNonPagedPool`: maps the MDL's pages (they are resident already).
#[no_mangle]
pub unsafe extern "win64" fn MmBuildMdlForNonPagedPool(MemoryDescriptorList: PMDL) {
    crate::kernel::irql::require_dispatch_or_below("MmBuildMdlForNonPagedPool");
    let mdl = MemoryDescriptorList;
    // SAFETY: the caller passes a live MDL from IoAllocateMdl.
    unsafe {
        let va = (*mdl).StartVa as usize + (*mdl).ByteOffset as usize;
        let len = (*mdl).ByteCount as usize;
        (*mdl).MappedSystemVa = va as PVOID;
        (*mdl).MdlFlags |= MDL_SOURCE_IS_NONPAGED_POOL;
        let pages = spanned_pages(va, len);
        let pfn = mdl.add(1).cast::<usize>();
        for i in 0..pages {
            // Fake but distinct page frame numbers.
            pfn.add(i).write(((*mdl).StartVa as usize >> 12) + i);
        }
        let block = crate::kernel::pool::block_containing(va, len).map(|(s, _)| s);
        with(|m| {
            if let Some(r) = m.get_mut(&(mdl as usize)) {
                r.pool_block = block;
            }
        });
    }
}

/// `MmMapLockedPagesSpecifyCache`, for MDLs whose pages are locked or non-paged.
#[no_mangle]
pub unsafe extern "win64" fn MmMapLockedPagesSpecifyCache(
    MemoryDescriptorList: PMDL,
    AccessMode: KPROCESSOR_MODE,
    CacheType: MEMORY_CACHING_TYPE,
    RequestedAddress: PVOID,
    BugCheckOnFailure: ULONG,
    Priority: ULONG,
) -> PVOID {
    crate::kernel::preempt::entry("MmMapLockedPagesSpecifyCache");
    let _ = (
        AccessMode,
        CacheType,
        RequestedAddress,
        BugCheckOnFailure,
        Priority,
    );
    let mdl = MemoryDescriptorList;
    // SAFETY: the caller passes a live MDL.
    unsafe {
        if (*mdl).MdlFlags & (MDL_PAGES_LOCKED | MDL_SOURCE_IS_NONPAGED_POOL) == 0 {
            crate::kernel::state::violation(format!(
                "MmMapLockedPagesSpecifyCache({mdl:p}): pages neither locked nor non-paged"
            ));
            return std::ptr::null_mut();
        }
        let va = (*mdl).StartVa as usize + (*mdl).ByteOffset as usize;
        (*mdl).MappedSystemVa = va as PVOID;
        (*mdl).MdlFlags |= MDL_MAPPED_TO_SYSTEM_VA;
        va as PVOID
    }
}

/// The memory segments `[Offset, Offset+Length)` of an MDL chain covers, checked.
/// `call` names the WSK call for messages. None after a violation.
///
/// # Safety
/// `mdl` is NULL or the head of a chain of live MDLs.
pub(crate) unsafe fn segments(
    mdl: PMDL,
    offset: usize,
    length: usize,
    call: &str,
) -> Option<Vec<(*mut u8, usize)>> {
    let mut out = Vec::new();
    if length == 0 {
        return Some(out);
    }
    let mut cur = mdl;
    let mut skip = offset;
    let mut left = length;
    let mut first = true;
    while left > 0 {
        if cur.is_null() {
            crate::kernel::state::violation(format!(
                "{call}: WSK_BUF Length {length} (Offset {offset}) runs past the end of its MDL chain"
            ));
            return None;
        }
        // SAFETY: per the function contract.
        let (flags, va, count, next) = unsafe {
            (
                (*cur).MdlFlags,
                (*cur).StartVa as usize + (*cur).ByteOffset as usize,
                (*cur).ByteCount as usize,
                (*cur).Next,
            )
        };
        if flags & (MDL_SOURCE_IS_NONPAGED_POOL | MDL_PAGES_LOCKED | MDL_MAPPED_TO_SYSTEM_VA) == 0 {
            crate::kernel::state::violation(format!(
                "{call}: MDL {cur:p} is neither built for non-paged pool nor locked (W51)"
            ));
            return None;
        }
        let block = with(|m| m.get(&(cur as usize)).map(|r| r.pool_block));
        if let Some(Some(start)) = block {
            if crate::kernel::pool::block_containing(va, count).map(|(s, _)| s) != Some(start) {
                crate::kernel::state::violation(format!(
                    "{call}: MDL {cur:p} describes pool memory that has been freed (C20)"
                ));
                return None;
            }
        }
        if first && skip > count {
            crate::kernel::state::violation(format!(
                "{call}: WSK_BUF Offset {offset} is not inside the first MDL ({count} bytes)"
            ));
            return None;
        }
        first = false;
        let avail = count.saturating_sub(skip);
        let take = avail.min(left);
        if take > 0 {
            out.push(((va + skip) as *mut u8, take));
        }
        left -= take;
        skip = 0;
        cur = next;
    }
    Some(out)
}

/// Pins every MDL of a chain for a pending provider operation (IoFreeMdl then flags it).
///
/// # Safety
/// `mdl` is NULL or the head of a chain of live MDLs.
pub(crate) unsafe fn pin_chain(mdl: PMDL, delta: isize) {
    let mut cur = mdl;
    let mut n = 0;
    while !cur.is_null() && n < 4096 {
        with(|m| {
            if let Some(r) = m.get_mut(&(cur as usize)) {
                r.in_use = r.in_use.saturating_add_signed(delta);
            }
        });
        // SAFETY: per the function contract.
        cur = unsafe { (*cur).Next };
        n += 1;
    }
}
