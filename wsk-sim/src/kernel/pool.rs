//! ExAllocatePool2 / ExAllocatePoolWithTag / ExFreePoolWithTag over the host heap, with
//! per-tag accounting, a tally of allocations by call, poisoning of fresh (uninitialised) and
//! freed blocks, and the IRQL rules of each call.

use std::alloc::Layout;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use wsk_sys::{
    NonPagedPool, NonPagedPoolNx, PagedPool, APC_LEVEL, DISPATCH_LEVEL, POOL_FLAGS,
    POOL_FLAG_CACHE_ALIGNED, POOL_FLAG_NON_PAGED, POOL_FLAG_NON_PAGED_EXECUTE, POOL_FLAG_PAGED,
    POOL_FLAG_UNINITIALIZED, POOL_TYPE, PVOID, SIZE_T, ULONG,
};

const PAGE_SIZE: usize = 4096;
/// Fill of POOL_FLAG_UNINITIALIZED blocks: code that relies on zeroed memory sees garbage.
pub(crate) const FRESH_POISON: u8 = 0xCD;
/// Fill of freed blocks (before they go back to the host heap).
pub(crate) const FREED_POISON: u8 = 0xDD;

struct Block {
    size: usize,
    tag: u32,
    layout: Layout,
}

#[derive(Default)]
struct Pool {
    blocks: BTreeMap<usize, Block>,
    /// Successful allocations since the run started, by (call with its pool kind, tag).
    tally: BTreeMap<(&'static str, u32), usize>,
}

/// A check run on each freed block: `(start, size, call)`.
pub(crate) type FreeCheck = fn(usize, usize, &str);

/// Checks the objects built on pool memory (IRPs, timers) install, so the allocator below
/// them never names them.
static FREE_CHECKS: OnceLock<Vec<FreeCheck>> = OnceLock::new();

/// Installs the free checks (once per process; later calls keep the first set).
pub(crate) fn set_free_checks(checks: Vec<FreeCheck>) {
    let _ = FREE_CHECKS.set(checks);
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    blocks: BTreeMap::new(),
    tally: BTreeMap::new(),
});

fn lock() -> MutexGuard<'static, Pool> {
    POOL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A tag as the four characters a pool dump shows (little-endian bytes).
pub fn tag_name(tag: u32) -> String {
    tag.to_le_bytes()
        .iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '.' })
        .collect()
}

/// Live blocks per tag: (tag, count, bytes).
pub(crate) fn live_by_tag() -> Vec<(u32, usize, usize)> {
    let p = lock();
    let mut m: HashMap<u32, (usize, usize)> = HashMap::new();
    for b in p.blocks.values() {
        let e = m.entry(b.tag).or_default();
        e.0 += 1;
        e.1 += b.size;
    }
    let mut v: Vec<_> = m.into_iter().map(|(t, (c, s))| (t, c, s)).collect();
    v.sort_unstable();
    v
}

/// The live block containing `[addr, addr+len)`, if any: (start, size).
pub(crate) fn block_containing(addr: usize, len: usize) -> Option<(usize, usize)> {
    let p = lock();
    let (&start, b) = p.blocks.range(..=addr).next_back()?;
    (addr + len <= start + b.size).then_some((start, b.size))
}

/// Successful allocations of this run: (call and pool kind, e.g.
/// "ExAllocatePoolWithTag(NonPagedPoolNx)", tag as text, count), sorted.
pub fn allocations() -> Vec<(String, String, usize)> {
    lock()
        .tally
        .iter()
        .map(|(&(call, tag), &n)| (call.to_string(), tag_name(tag), n))
        .collect()
}

/// Starts a run's tally afresh.
pub(crate) fn clear_tally() {
    lock().tally.clear();
}

/// Frees everything still allocated (between tests, after the leak report).
pub(crate) fn reset() {
    let mut p = lock();
    for (addr, b) in std::mem::take(&mut p.blocks) {
        // SAFETY: every entry was allocated by `alloc` with exactly this layout.
        unsafe { std::alloc::dealloc(addr as *mut u8, b.layout) };
    }
}

fn alloc(size: usize, align: usize, zero: bool, tag: u32, call: &'static str) -> PVOID {
    let size_rounded = size.max(1);
    let Ok(layout) = Layout::from_size_align(size_rounded, align) else {
        return std::ptr::null_mut();
    };
    // SAFETY: layout has a non-zero size.
    let p = unsafe {
        if zero {
            std::alloc::alloc_zeroed(layout)
        } else {
            let p = std::alloc::alloc(layout);
            if !p.is_null() {
                std::ptr::write_bytes(p, FRESH_POISON, size_rounded);
            }
            p
        }
    };
    if p.is_null() {
        return std::ptr::null_mut();
    }
    let mut pool = lock();
    pool.blocks.insert(p as usize, Block { size, tag, layout });
    *pool.tally.entry((call, tag)).or_default() += 1;
    p.cast()
}

fn free(p: PVOID, tag: Option<u32>, call: &str) {
    if p.is_null() {
        crate::kernel::state::violation(format!("{call}(NULL): freeing a NULL pool block"));
        return;
    }
    let mut pool = lock();
    let Some(b) = pool.blocks.get(&(p as usize)) else {
        drop(pool);
        crate::kernel::state::violation(format!(
            "{call}({p:p}): not the start of a live pool block (double free or foreign pointer)"
        ));
        return;
    };
    if let Some(tag) = tag {
        if tag != b.tag {
            let (want, got) = (b.tag, tag);
            drop(pool);
            crate::kernel::state::violation(format!(
                "{call}({p:p}, '{}'): block was allocated with tag '{}' (BAD_POOL_CALLER)",
                tag_name(got),
                tag_name(want)
            ));
            return;
        }
    }
    let b = pool.blocks.remove(&(p as usize)).expect("checked above");
    drop(pool);
    // Driver Verifier style: freeing memory that still holds an IRP the provider owns.
    for check in FREE_CHECKS.get().into_iter().flatten() {
        check(p as usize, b.size, call);
    }
    // SAFETY: the block is live (just removed from the table) and `b.size` bytes long.
    unsafe {
        std::ptr::write_bytes(p.cast::<u8>(), FREED_POISON, b.size);
        std::alloc::dealloc(p.cast(), b.layout);
    }
}

/// `ExAllocatePool2`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exallocatepool2>
#[no_mangle]
pub unsafe extern "win64" fn ExAllocatePool2(
    Flags: POOL_FLAGS,
    NumberOfBytes: SIZE_T,
    Tag: ULONG,
) -> PVOID {
    crate::kernel::preempt::entry("ExAllocatePool2");
    let kinds = Flags & (POOL_FLAG_NON_PAGED | POOL_FLAG_PAGED | POOL_FLAG_NON_PAGED_EXECUTE);
    if kinds.count_ones() != 1 {
        crate::kernel::state::violation(format!(
            "ExAllocatePool2(Flags={Flags:#x}): exactly one of POOL_FLAG_NON_PAGED, POOL_FLAG_PAGED, POOL_FLAG_NON_PAGED_EXECUTE is required"
        ));
        return std::ptr::null_mut();
    }
    if kinds == POOL_FLAG_PAGED {
        crate::kernel::irql::require_at_most("ExAllocatePool2(POOL_FLAG_PAGED)", APC_LEVEL);
    } else {
        crate::kernel::irql::require_at_most("ExAllocatePool2", DISPATCH_LEVEL);
    }
    if Tag == 0 {
        crate::kernel::state::violation("ExAllocatePool2 with pool tag 0 (a tag is required)");
    }
    if crate::kernel::schedule::tagged_alloc_failure(Tag)
        || crate::kernel::schedule::injected_failure(crate::config::Call::ExAllocatePool2).is_some()
    {
        return std::ptr::null_mut();
    }
    // x64 pool: 16-byte alignment, whole pages page-aligned, cache-aligned on request.
    let align = if NumberOfBytes >= PAGE_SIZE {
        PAGE_SIZE
    } else if Flags & POOL_FLAG_CACHE_ALIGNED != 0 {
        64
    } else {
        16
    };
    let call = match kinds {
        POOL_FLAG_PAGED => "ExAllocatePool2(PAGED)",
        POOL_FLAG_NON_PAGED_EXECUTE => "ExAllocatePool2(NON_PAGED_EXECUTE)",
        _ => "ExAllocatePool2(NON_PAGED)",
    };
    alloc(
        NumberOfBytes,
        align,
        Flags & POOL_FLAG_UNINITIALIZED == 0,
        Tag,
        call,
    )
}

/// `ExAllocatePoolWithTag`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exallocatepoolwithtag>
/// The call drivers use where ExAllocatePool2 is missing (before Windows 10 2004). The block
/// is *not* zeroed (filled with [`FRESH_POISON`] here, so code that assumes zeroes sees
/// garbage). NonPagedPool (executable) is flagged: Driver Verifier's and HVCI's code-integrity
/// checks refuse executable pool, and NonPagedPoolNx exists on every supported Windows.
#[no_mangle]
pub unsafe extern "win64" fn ExAllocatePoolWithTag(
    PoolType: POOL_TYPE,
    NumberOfBytes: SIZE_T,
    Tag: ULONG,
) -> PVOID {
    crate::kernel::preempt::entry("ExAllocatePoolWithTag");
    let call = match PoolType {
        NonPagedPoolNx => {
            crate::kernel::irql::require_at_most("ExAllocatePoolWithTag", DISPATCH_LEVEL);
            "ExAllocatePoolWithTag(NonPagedPoolNx)"
        }
        PagedPool => {
            crate::kernel::irql::require_at_most("ExAllocatePoolWithTag(PagedPool)", APC_LEVEL);
            "ExAllocatePoolWithTag(PagedPool)"
        }
        NonPagedPool => {
            crate::kernel::state::violation(
                "ExAllocatePoolWithTag(NonPagedPool): executable pool; use NonPagedPoolNx \
                 (Driver Verifier / HVCI code integrity)",
            );
            return std::ptr::null_mut();
        }
        t => {
            crate::kernel::state::violation(format!(
                "ExAllocatePoolWithTag(PoolType={t}): a pool type the sim does not model"
            ));
            return std::ptr::null_mut();
        }
    };
    if Tag == 0 {
        crate::kernel::state::violation(
            "ExAllocatePoolWithTag with pool tag 0 (a tag is required)",
        );
    }
    if crate::kernel::schedule::tagged_alloc_failure(Tag)
        || crate::kernel::schedule::injected_failure(crate::config::Call::ExAllocatePool2).is_some()
    {
        return std::ptr::null_mut();
    }
    let align = if NumberOfBytes >= PAGE_SIZE {
        PAGE_SIZE
    } else {
        16
    };
    alloc(NumberOfBytes, align, false, Tag, call)
}

/// `ExFreePoolWithTag`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exfreepoolwithtag>
#[no_mangle]
pub unsafe extern "win64" fn ExFreePoolWithTag(P: PVOID, Tag: ULONG) {
    crate::kernel::preempt::entry("ExFreePoolWithTag");
    crate::kernel::irql::require_at_most("ExFreePoolWithTag", DISPATCH_LEVEL);
    free(P, Some(Tag), "ExFreePoolWithTag");
}

/// `ExFreePool` (no tag check).
#[no_mangle]
pub unsafe extern "win64" fn ExFreePool(P: PVOID) {
    crate::kernel::preempt::entry("ExFreePool");
    crate::kernel::irql::require_at_most("ExFreePool", DISPATCH_LEVEL);
    free(P, None, "ExFreePool");
}
