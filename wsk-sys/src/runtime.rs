//! Routines the driver looks up at run time with `MmGetSystemRoutineAddress` instead of
//! importing them, because they are newer than its minimum Windows (10 1809 / Server 2019,
//! build 17763; docs/windows-versions.md). Nothing here is a static import on Windows.

use crate::ntdef::{POOL_FLAGS, PVOID, SIZE_T, ULONG};

/// `ExAllocatePool2` (Windows 10 2004, build 19041, and later), called through the pointer
/// `MmGetSystemRoutineAddress` returns for [`EX_ALLOCATE_POOL2`]:
/// <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-exallocatepool2>
pub type PFN_EX_ALLOCATE_POOL2 =
    unsafe extern "win64" fn(Flags: POOL_FLAGS, NumberOfBytes: SIZE_T, Tag: ULONG) -> PVOID;

/// The exported name of [`PFN_EX_ALLOCATE_POOL2`], UTF-16 as `MmGetSystemRoutineAddress`
/// takes it.
pub const EX_ALLOCATE_POOL2: &[u16] = &utf16::<15>("ExAllocatePool2");

/// Build the oldest kernel that exports ExAllocatePool2 has.
pub const EX_ALLOCATE_POOL2_SINCE_BUILD: u32 = 19041;

/// An ASCII name as UTF-16 at compile time (`N` is its length).
const fn utf16<const N: usize>(s: &str) -> [u16; N] {
    let b = s.as_bytes();
    assert!(b.len() == N);
    let mut out = [0u16; N];
    let mut i = 0;
    while i < N {
        out[i] = b[i] as u16;
        i += 1;
    }
    out
}

// Off Windows, wsk-sim defines ExAllocatePool2 itself (its own tests and images that still
// import it call it there); declared here so they can name it. Never declared on Windows, so
// the driver image cannot import it by mistake.
#[cfg(not(target_os = "windows"))]
extern "win64" {
    pub fn ExAllocatePool2(Flags: POOL_FLAGS, NumberOfBytes: SIZE_T, Tag: ULONG) -> PVOID;
}
