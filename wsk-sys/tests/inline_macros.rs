//! The wdm.h macros written in Rust, exercised on an IRP laid out in memory the way
//! IoInitializeIrp lays it out: the IRP header, then StackCount locations; the current
//! location starts one past the last, and each driver's location is the one below.
#![cfg(target_arch = "x86_64")]

use core::mem::{size_of, MaybeUninit};
use wsk_sys::*;

const STACK: CCHAR = 2;

/// 8-aligned zeroed storage for an IRP with `STACK` locations, initialised as
/// IoInitializeIrp documents (CurrentLocation = StackCount + 1).
fn new_irp(buf: &mut [u64]) -> PIRP {
    assert!(buf.len() * 8 >= IoSizeOfIrp(STACK) as usize);
    let irp = buf.as_mut_ptr().cast::<IRP>();
    // SAFETY: buf is large enough and 8-aligned; every field written is in bounds.
    unsafe {
        (*irp).Size = IoSizeOfIrp(STACK);
        (*irp).StackCount = STACK;
        (*irp).CurrentLocation = STACK + 1;
        let first = irp.add(1).cast::<IO_STACK_LOCATION>();
        (*irp).Tail.Overlay.CurrentStackLocation = first.add(STACK as usize);
    }
    irp
}

unsafe extern "win64" fn done(_d: PDEVICE_OBJECT, _i: PIRP, _c: PVOID) -> NTSTATUS {
    STATUS_MORE_PROCESSING_REQUIRED
}

#[test]
fn irp_stack_macros() {
    let mut buf = vec![0u64; IoSizeOfIrp(STACK) as usize / 8];
    assert_eq!(
        IoSizeOfIrp(STACK) as usize,
        size_of::<IRP>() + 2 * size_of::<IO_STACK_LOCATION>()
    );
    let irp = new_irp(&mut buf);
    let base = buf.as_ptr() as usize;
    let mut ctx = 7u32;
    // SAFETY: irp points into buf with two stack locations below the current one.
    unsafe {
        let next = IoGetNextIrpStackLocation(irp);
        // The highest location is the last array element: header + 1 * 72.
        assert_eq!(
            next as usize - base,
            size_of::<IRP>() + size_of::<IO_STACK_LOCATION>()
        );
        IoSetCompletionRoutine(irp, Some(done), (&raw mut ctx).cast(), true, true, true);
        assert_eq!(
            (*next).Control,
            SL_INVOKE_ON_SUCCESS | SL_INVOKE_ON_ERROR | SL_INVOKE_ON_CANCEL
        );
        assert_eq!((*next).Control, 0xE0);
        assert_eq!((*next).Context, (&raw mut ctx).cast());
        let f = (*next).CompletionRoutine.expect("routine set");
        assert_eq!(
            f(core::ptr::null_mut(), irp, core::ptr::null_mut()),
            STATUS_MORE_PROCESSING_REQUIRED
        );

        IoSetCompletionRoutine(irp, Some(done), core::ptr::null_mut(), true, false, false);
        assert_eq!((*next).Control, SL_INVOKE_ON_SUCCESS);

        // A driver calling down: the next location becomes current.
        IoSetNextIrpStackLocation(irp);
        assert_eq!((*irp).CurrentLocation, STACK);
        assert_eq!(IoGetCurrentIrpStackLocation(irp), next);
        (*next).MajorFunction = IRP_MJ_DEVICE_CONTROL;
        (*next).Parameters.DeviceIoControl.IoControlCode = 0x1234;
        IoCopyCurrentIrpStackLocationToNext(irp);
        let lower = IoGetNextIrpStackLocation(irp);
        assert_eq!((*lower).MajorFunction, IRP_MJ_DEVICE_CONTROL);
        assert_eq!((*lower).Parameters.DeviceIoControl.IoControlCode, 0x1234);
        assert!(
            (*lower).CompletionRoutine.is_none(),
            "the completion routine is not copied"
        );
        assert_eq!((*lower).Control, 0);

        IoMarkIrpPending(irp);
        assert_eq!((*next).Control & SL_PENDING_RETURNED, SL_PENDING_RETURNED);

        IoSkipCurrentIrpStackLocation(irp);
        assert_eq!((*irp).CurrentLocation, STACK + 1);
    }
}

/// Stands in for ntoskrnl's export: records that the macro fell back to mapping.
static MAPPED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[no_mangle]
extern "win64" fn MmMapLockedPagesSpecifyCache(
    mdl: PMDL,
    access_mode: KPROCESSOR_MODE,
    cache_type: MEMORY_CACHING_TYPE,
    _requested_address: PVOID,
    _bug_check_on_failure: ULONG,
    _priority: ULONG,
) -> PVOID {
    assert_eq!((access_mode, cache_type), (KernelMode, MmCached));
    MAPPED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    // SAFETY: the test passes a valid MDL.
    unsafe { (*mdl).StartVa }
}

#[test]
fn spin_lock_and_mdl_macros() {
    let mut lock: KSPIN_LOCK = 0xdead;
    // SAFETY: a valid writable lock.
    unsafe { KeInitializeSpinLock(&raw mut lock) };
    assert_eq!(lock, 0);

    let mut data = [0u8; 64];
    let mut mdl = MaybeUninit::<MDL>::zeroed();
    let m = mdl.as_mut_ptr();
    // SAFETY: m points to a zeroed MDL; the flags say it is mapped, so no import is called.
    unsafe {
        (*m).MdlFlags = MDL_SOURCE_IS_NONPAGED_POOL;
        (*m).MappedSystemVa = data.as_mut_ptr().cast();
        (*m).StartVa = data.as_mut_ptr().cast();
        (*m).ByteOffset = 3;
        (*m).ByteCount = 10;
        assert_eq!(
            MmGetSystemAddressForMdlSafe(m, NormalPagePriority),
            data.as_mut_ptr().cast()
        );
        assert_eq!(
            MmGetMdlVirtualAddress(m) as usize,
            data.as_ptr() as usize + 3
        );
        assert_eq!(MmGetMdlByteCount(m), 10);
        assert_eq!(MmGetMdlByteOffset(m), 3);
        assert_eq!(
            MAPPED.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "mapped MDL must not be re-mapped"
        );
        // Neither mapped nor non-paged: the macro must ask Mm to map it.
        (*m).MdlFlags = MDL_PAGES_LOCKED;
        (*m).MappedSystemVa = core::ptr::null_mut();
        assert_eq!(
            MmGetSystemAddressForMdlSafe(m, NormalPagePriority),
            data.as_mut_ptr().cast()
        );
        assert_eq!(MAPPED.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}

#[test]
fn object_attributes_macro() {
    let mut name = UNICODE_STRING {
        Length: 0,
        MaximumLength: 0,
        Buffer: core::ptr::null_mut(),
    };
    let oa = InitializeObjectAttributes(
        &raw mut name,
        OBJ_KERNEL_HANDLE | OBJ_CASE_INSENSITIVE,
        core::ptr::null_mut(),
        core::ptr::null_mut(),
    );
    assert_eq!(oa.Length as usize, size_of::<OBJECT_ATTRIBUTES>());
    assert_eq!(oa.Length, 48);
    assert_eq!(oa.Attributes, 0x240);
    assert_eq!(oa.ObjectName, &raw mut name);
}
