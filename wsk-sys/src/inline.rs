//! wdm.h macros and FORCEINLINE functions that are not DLL exports, written in Rust.
//! They touch the structures exactly as the C definitions do.

use crate::imports::{
    IofCompleteRequest, KeAcquireSpinLockRaiseToDpc, MmMapLockedPagesSpecifyCache,
    ObfDereferenceObject,
};
use crate::io::{
    IO_STACK_LOCATION, IRP, MDL, MDL_MAPPED_TO_SYSTEM_VA, MDL_SOURCE_IS_NONPAGED_POOL,
    PIO_COMPLETION_ROUTINE, PIO_STACK_LOCATION, PIRP, PMDL, SL_INVOKE_ON_CANCEL,
    SL_INVOKE_ON_ERROR, SL_INVOKE_ON_SUCCESS, SL_PENDING_RETURNED,
};
use crate::ke::{
    KernelMode, MmCached, DISPATCH_LEVEL, KIRQL, MM_PAGE_PRIORITY, PKIRQL, PKSPIN_LOCK,
};
use crate::ntdef::{CCHAR, LONG_PTR, PVOID, ULONG, USHORT};

/// `IoGetCurrentIrpStackLocation`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-iogetcurrentirpstacklocation>
///
/// # Safety
/// `Irp` must point to a valid IRP.
#[inline]
pub unsafe fn IoGetCurrentIrpStackLocation(Irp: PIRP) -> PIO_STACK_LOCATION {
    // SAFETY: caller guarantees a valid IRP; Tail.Overlay is the live union member for
    // IRPs owned by a driver.
    unsafe { (*Irp).Tail.Overlay.CurrentStackLocation }
}

/// `IoGetNextIrpStackLocation`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-iogetnextirpstacklocation>
/// The stack grows downwards: the next location is the one below the current.
///
/// # Safety
/// `Irp` must point to a valid IRP with a location below the current one.
#[inline]
pub unsafe fn IoGetNextIrpStackLocation(Irp: PIRP) -> PIO_STACK_LOCATION {
    // SAFETY: caller guarantees the IRP is valid and has a next location.
    unsafe { (*Irp).Tail.Overlay.CurrentStackLocation.wrapping_sub(1) }
}

/// `IoSetCompletionRoutine`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-iosetcompletionroutine>
///
/// # Safety
/// `Irp` must point to a valid IRP with a next stack location.
#[inline]
pub unsafe fn IoSetCompletionRoutine(
    Irp: PIRP,
    CompletionRoutine: PIO_COMPLETION_ROUTINE,
    Context: PVOID,
    InvokeOnSuccess: bool,
    InvokeOnError: bool,
    InvokeOnCancel: bool,
) {
    // SAFETY: caller guarantees a valid IRP with a next location.
    unsafe {
        let s = IoGetNextIrpStackLocation(Irp);
        (*s).CompletionRoutine = CompletionRoutine;
        (*s).Context = Context;
        let mut control = 0;
        if InvokeOnSuccess {
            control |= SL_INVOKE_ON_SUCCESS;
        }
        if InvokeOnError {
            control |= SL_INVOKE_ON_ERROR;
        }
        if InvokeOnCancel {
            control |= SL_INVOKE_ON_CANCEL;
        }
        (*s).Control = control;
    }
}

/// `IoSetNextIrpStackLocation`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-iosetnextirpstacklocation>
///
/// # Safety
/// `Irp` must point to a valid IRP with a next stack location.
#[inline]
pub unsafe fn IoSetNextIrpStackLocation(Irp: PIRP) {
    // SAFETY: caller guarantees a valid IRP with a next location.
    unsafe {
        (*Irp).CurrentLocation -= 1;
        (*Irp).Tail.Overlay.CurrentStackLocation =
            (*Irp).Tail.Overlay.CurrentStackLocation.wrapping_sub(1);
    }
}

/// `IoSkipCurrentIrpStackLocation`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-ioskipcurrentirpstacklocation>
///
/// # Safety
/// `Irp` must point to a valid IRP.
#[inline]
pub unsafe fn IoSkipCurrentIrpStackLocation(Irp: PIRP) {
    // SAFETY: caller guarantees a valid IRP.
    unsafe {
        (*Irp).CurrentLocation += 1;
        (*Irp).Tail.Overlay.CurrentStackLocation =
            (*Irp).Tail.Overlay.CurrentStackLocation.wrapping_add(1);
    }
}

/// `IoCopyCurrentIrpStackLocationToNext`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-iocopycurrentirpstacklocationtonext>
/// Copies everything before `CompletionRoutine`, then clears `Control`.
///
/// # Safety
/// `Irp` must point to a valid IRP with a next stack location.
#[inline]
pub unsafe fn IoCopyCurrentIrpStackLocationToNext(Irp: PIRP) {
    // SAFETY: caller guarantees a valid IRP with a next location; the two locations are
    // adjacent, distinct array elements.
    unsafe {
        let cur = IoGetCurrentIrpStackLocation(Irp).cast::<u8>();
        let next = IoGetNextIrpStackLocation(Irp);
        core::ptr::copy_nonoverlapping(
            cur,
            next.cast::<u8>(),
            core::mem::offset_of!(IO_STACK_LOCATION, CompletionRoutine),
        );
        (*next).Control = 0;
    }
}

/// `IoMarkIrpPending`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-iomarkirppending>
///
/// # Safety
/// `Irp` must point to a valid IRP.
#[inline]
pub unsafe fn IoMarkIrpPending(Irp: PIRP) {
    // SAFETY: caller guarantees a valid IRP.
    unsafe { (*IoGetCurrentIrpStackLocation(Irp)).Control |= SL_PENDING_RETURNED };
}

/// `IoCompleteRequest` macro → `IofCompleteRequest`:
/// <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-iocompleterequest>
///
/// # Safety
/// As `IofCompleteRequest`.
#[inline]
pub unsafe fn IoCompleteRequest(Irp: PIRP, PriorityBoost: CCHAR) {
    // SAFETY: forwarded contract.
    unsafe { IofCompleteRequest(Irp, PriorityBoost) }
}

/// `IoSizeOfIrp` macro: bytes for an IRP with `StackSize` stack locations (for
/// IoInitializeIrp on caller memory).
#[inline]
pub const fn IoSizeOfIrp(StackSize: CCHAR) -> USHORT {
    (core::mem::size_of::<IRP>() + StackSize as usize * core::mem::size_of::<IO_STACK_LOCATION>())
        as USHORT
}

/// `ObDereferenceObject` macro → `ObfDereferenceObject`.
///
/// # Safety
/// As `ObfDereferenceObject`.
#[inline]
pub unsafe fn ObDereferenceObject(Object: PVOID) -> LONG_PTR {
    // SAFETY: forwarded contract.
    unsafe { ObfDereferenceObject(Object) }
}

/// `KeInitializeSpinLock` (FORCEINLINE on x64, not an export):
/// <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-keinitializespinlock>
///
/// # Safety
/// `SpinLock` must be valid for a write.
#[inline]
pub unsafe fn KeInitializeSpinLock(SpinLock: PKSPIN_LOCK) {
    // SAFETY: caller guarantees a writable lock.
    unsafe { *SpinLock = 0 };
}

/// `KeAcquireSpinLock` macro (x64: `*OldIrql = KeAcquireSpinLockRaiseToDpc(SpinLock)`).
///
/// # Safety
/// As `KeAcquireSpinLockRaiseToDpc`; `OldIrql` valid for a write.
#[inline]
pub unsafe fn KeAcquireSpinLock(SpinLock: PKSPIN_LOCK, OldIrql: PKIRQL) {
    // SAFETY: forwarded contract.
    unsafe { *OldIrql = KeAcquireSpinLockRaiseToDpc(SpinLock) };
}

/// `MmGetMdlByteCount` macro.
///
/// # Safety
/// `Mdl` must point to a valid MDL.
#[inline]
pub unsafe fn MmGetMdlByteCount(Mdl: *const MDL) -> ULONG {
    // SAFETY: caller guarantees a valid MDL.
    unsafe { (*Mdl).ByteCount }
}

/// `MmGetMdlByteOffset` macro.
///
/// # Safety
/// `Mdl` must point to a valid MDL.
#[inline]
pub unsafe fn MmGetMdlByteOffset(Mdl: *const MDL) -> ULONG {
    // SAFETY: caller guarantees a valid MDL.
    unsafe { (*Mdl).ByteOffset }
}

/// `MmGetMdlVirtualAddress` macro: `StartVa + ByteOffset`.
///
/// # Safety
/// `Mdl` must point to a valid MDL.
#[inline]
pub unsafe fn MmGetMdlVirtualAddress(Mdl: *const MDL) -> PVOID {
    // SAFETY: caller guarantees a valid MDL.
    unsafe {
        (*Mdl)
            .StartVa
            .cast::<u8>()
            .wrapping_add((*Mdl).ByteOffset as usize)
            .cast()
    }
}

/// `MmGetSystemAddressForMdlSafe` macro:
/// <https://learn.microsoft.com/windows-hardware/drivers/kernel/mm-bad-pointer> /
/// <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-mmgetsystemaddressformdlsafe>
/// Returns `MappedSystemVa` when the MDL is already mapped or describes non-paged pool
/// (the usual case for WSK indications and MDLs built with MmBuildMdlForNonPagedPool);
/// otherwise maps it. Returns NULL when mapping fails.
///
/// # Safety
/// `Mdl` must point to a valid, locked MDL; IRQL <= DISPATCH_LEVEL.
#[inline]
pub unsafe fn MmGetSystemAddressForMdlSafe(Mdl: PMDL, Priority: MM_PAGE_PRIORITY) -> PVOID {
    // SAFETY: caller guarantees a valid locked MDL.
    unsafe {
        if (*Mdl).MdlFlags & (MDL_MAPPED_TO_SYSTEM_VA | MDL_SOURCE_IS_NONPAGED_POOL) != 0 {
            (*Mdl).MappedSystemVa
        } else {
            MmMapLockedPagesSpecifyCache(
                Mdl,
                KernelMode,
                MmCached,
                core::ptr::null_mut(),
                0,
                Priority,
            )
        }
    }
}

// ---- IRQL -------------------------------------------------------------------------------
// On x64 Windows these are FORCEINLINE functions reading/writing CR8 (the task priority
// register holds the IRQL). Off Windows the driver runs inside wsk-sim, which tracks a
// per-thread IRQL and defines the three extern functions below.

#[cfg(not(target_os = "windows"))]
mod host_irql {
    use crate::ke::KIRQL;
    extern "win64" {
        pub fn KeGetCurrentIrql() -> KIRQL;
        pub fn KfRaiseIrql(NewIrql: KIRQL) -> KIRQL;
        pub fn KeLowerIrql(NewIrql: KIRQL);
    }
}

/// `KeGetCurrentIrql`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-kegetcurrentirql>
#[inline]
pub fn KeGetCurrentIrql() -> KIRQL {
    #[cfg(target_os = "windows")]
    {
        let cr8: u64;
        // SAFETY: reading CR8 is allowed at any IRQL in kernel mode and has no side effects.
        unsafe {
            core::arch::asm!("mov {}, cr8", out(reg) cr8, options(nomem, nostack, preserves_flags));
        };
        cr8 as KIRQL
    }
    #[cfg(not(target_os = "windows"))]
    {
        // SAFETY: wsk-sim's definition has no preconditions.
        unsafe { host_irql::KeGetCurrentIrql() }
    }
}

/// `KfRaiseIrql` (x64 FORCEINLINE): raises to `NewIrql` and returns the previous IRQL.
///
/// # Safety
/// `NewIrql` must be >= the current IRQL.
#[inline]
pub unsafe fn KfRaiseIrql(NewIrql: KIRQL) -> KIRQL {
    #[cfg(target_os = "windows")]
    {
        let old = KeGetCurrentIrql();
        // SAFETY: caller guarantees NewIrql >= current IRQL; writing CR8 is what wdm.h does.
        // No `nomem`: this is a compiler barrier, as the C version's intrinsic is.
        unsafe {
            core::arch::asm!("mov cr8, {}", in(reg) NewIrql as u64, options(nostack, preserves_flags));
        };
        old
    }
    #[cfg(not(target_os = "windows"))]
    {
        // SAFETY: forwarded contract.
        unsafe { host_irql::KfRaiseIrql(NewIrql) }
    }
}

/// `KeRaiseIrql` macro: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-keraiseirql>
///
/// # Safety
/// `NewIrql` >= current IRQL; `OldIrql` valid for a write.
#[inline]
pub unsafe fn KeRaiseIrql(NewIrql: KIRQL, OldIrql: PKIRQL) {
    // SAFETY: forwarded contract.
    unsafe { *OldIrql = KfRaiseIrql(NewIrql) };
}

/// `KeRaiseIrqlToDpcLevel`.
///
/// # Safety
/// Current IRQL <= DISPATCH_LEVEL.
#[inline]
pub unsafe fn KeRaiseIrqlToDpcLevel() -> KIRQL {
    // SAFETY: forwarded contract.
    unsafe { KfRaiseIrql(DISPATCH_LEVEL) }
}

/// `KeLowerIrql`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-kelowerirql>
///
/// # Safety
/// `NewIrql` must be the value the matching raise returned.
#[inline]
pub unsafe fn KeLowerIrql(NewIrql: KIRQL) {
    #[cfg(target_os = "windows")]
    {
        // SAFETY: caller guarantees NewIrql is the IRQL saved by the matching raise.
        unsafe {
            core::arch::asm!("mov cr8, {}", in(reg) NewIrql as u64, options(nostack, preserves_flags));
        };
    }
    #[cfg(not(target_os = "windows"))]
    {
        // SAFETY: forwarded contract.
        unsafe { host_irql::KeLowerIrql(NewIrql) }
    }
}
