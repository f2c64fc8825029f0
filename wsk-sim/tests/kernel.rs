//! The ntoskrnl subset: IRQL, spin locks, pool, IRPs, MDLs, events, rundown, timers,
//! work items, threads, registry, devices, DbgPrintEx.
#![allow(
    clippy::many_single_char_names,
    clippy::items_after_statements,
    clippy::unnecessary_box_returns,
    clippy::ref_as_ptr,
    clippy::used_underscore_binding
)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod common;

use std::ptr::null_mut;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use wsk_sim::{Config, ViolationMode};
use wsk_sys::*;

fn rec() -> Config {
    Config {
        violations: ViolationMode::Record,
        ..Config::plain()
    }
}

fn has_violation(needle: &str) -> bool {
    wsk_sim::violations().iter().any(|v| v.contains(needle))
}

fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(std::iter::once(0)).collect()
}

fn ustr(w: &[u16]) -> UNICODE_STRING {
    let mut u = UNICODE_STRING {
        Length: 0,
        MaximumLength: 0,
        Buffer: null_mut(),
    };
    // SAFETY: a NUL-terminated wide string.
    unsafe { RtlInitUnicodeString(&raw mut u, w.as_ptr()) };
    u
}

#[test]
fn spin_lock_raises_to_dispatch_and_excludes() {
    let _g = wsk_sim::init(rec());
    let lock = Box::leak(Box::new(0 as KSPIN_LOCK)) as *mut KSPIN_LOCK as usize;
    let counter = Box::leak(Box::new(0u64)) as *mut u64 as usize;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            std::thread::spawn(move || {
                for _ in 0..2000 {
                    // SAFETY: a shared spin lock protecting a plain counter.
                    unsafe {
                        let old = KeAcquireSpinLockRaiseToDpc(lock as PKSPIN_LOCK);
                        assert_eq!(KeGetCurrentIrql(), DISPATCH_LEVEL);
                        let c = counter as *mut u64;
                        let v = c.read_volatile();
                        std::hint::spin_loop();
                        c.write_volatile(v + 1);
                        KeReleaseSpinLock(lock as PKSPIN_LOCK, old);
                        assert_eq!(KeGetCurrentIrql(), PASSIVE_LEVEL);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // SAFETY: all threads joined.
    assert_eq!(unsafe { *(counter as *const u64) }, 8000);
    assert!(wsk_sim::violations().is_empty());
}

#[test]
fn passive_only_call_at_dispatch_is_flagged_by_name() {
    let _g = wsk_sim::init(rec());
    let mut lock: KSPIN_LOCK = 0;
    // SAFETY: plain calls at a raised IRQL.
    unsafe {
        let old = KeAcquireSpinLockRaiseToDpc(&raw mut lock);
        let mut ev: KEVENT = std::mem::zeroed();
        KeInitializeEvent(&raw mut ev, NotificationEvent, TRUE);
        let mut t = LARGE_INTEGER { QuadPart: -10 };
        KeWaitForSingleObject(
            (&raw mut ev).cast(),
            Executive,
            KernelMode,
            FALSE,
            &raw mut t,
        );
        let p = ExAllocatePool2(POOL_FLAG_PAGED, 16, TAG);
        KeReleaseSpinLock(&raw mut lock, old);
        ExFreePoolWithTag(p, TAG);
        // A zero timeout is a poll: allowed at DISPATCH.
        let old = KeAcquireSpinLockRaiseToDpc(&raw mut lock);
        let mut zero = LARGE_INTEGER { QuadPart: 0 };
        assert_eq!(
            KeWaitForSingleObject(
                (&raw mut ev).cast(),
                Executive,
                KernelMode,
                FALSE,
                &raw mut zero
            ),
            STATUS_SUCCESS
        );
        KeReleaseSpinLock(&raw mut lock, old);
    }
    let v = wsk_sim::take_violations();
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(v[0].contains("KeWaitForSingleObject called at IRQL 2"));
    assert!(v[1].contains("ExAllocatePool2(POOL_FLAG_PAGED) called at IRQL 2"));
    wsk_sim::assert_no_leaks();
}

#[test]
fn recursive_spin_lock_and_bad_lower_are_flagged() {
    let _g = wsk_sim::init(rec());
    let mut lock: KSPIN_LOCK = 0;
    // SAFETY: deliberate misuse, recorded not executed.
    unsafe {
        let old = KeAcquireSpinLockRaiseToDpc(&raw mut lock);
        KeAcquireSpinLockAtDpcLevel(&raw mut lock);
        KeReleaseSpinLock(&raw mut lock, old);
        KeLowerIrql(DISPATCH_LEVEL);
        KeAcquireSpinLockAtDpcLevel(&raw mut lock);
    }
    assert!(has_violation("already held by this thread"));
    assert!(has_violation("KeLowerIrql to 2 from lower IRQL 0"));
    assert!(has_violation("KeAcquireSpinLockAtDpcLevel at IRQL 0"));
    wsk_sim::take_violations();
}

#[test]
fn pool_accounting_tags_and_poison() {
    let _g = wsk_sim::init(rec());
    let t2 = u32::from_le_bytes(*b"Tst2");
    // SAFETY: plain allocations.
    unsafe {
        let a = ExAllocatePool2(POOL_FLAG_NON_PAGED, 100, TAG).cast::<u8>();
        let b =
            ExAllocatePool2(POOL_FLAG_NON_PAGED | POOL_FLAG_UNINITIALIZED, 5000, t2).cast::<u8>();
        assert_eq!(*a, 0, "ExAllocatePool2 zeroes");
        assert_eq!(*b, 0xCD, "uninitialised pool is poisoned");
        assert_eq!(a as usize % 16, 0);
        assert_eq!(b as usize % 4096, 0, "a page or more is page aligned");
        let c = wsk_sim::counts();
        assert_eq!(
            c.pool,
            vec![("Tst1".to_string(), 1, 100), ("Tst2".to_string(), 1, 5000)]
        );
        ExFreePoolWithTag(a.cast(), t2);
        assert!(has_violation("was allocated with tag 'Tst1'"));
        ExFreePoolWithTag(a.cast(), TAG);
        ExFreePoolWithTag(a.cast(), TAG);
        assert!(has_violation("double free"));
        assert!(wsk_sim::leaks().iter().any(|l| l.contains("'Tst2'")));
        ExFreePoolWithTag(b.cast(), t2);
        assert!(ExAllocatePool2(0, 8, TAG).is_null());
    }
    wsk_sim::take_violations();
    wsk_sim::assert_no_leaks();
}

/// The 1809 fallback: ExAllocatePoolWithTag does not zero (poisoned 0xCD here), is counted
/// by tag and call like ExAllocatePool2, fails with the same schedule, and refuses executable
/// pool and DISPATCH-level paged pool.
#[test]
fn pool_with_tag_is_uninitialised_tallied_and_nx_only() {
    let _g = wsk_sim::init(rec());
    // SAFETY: plain allocations.
    unsafe {
        let a = ExAllocatePoolWithTag(NonPagedPoolNx, 64, TAG).cast::<u8>();
        assert!(!a.is_null());
        assert!(
            std::slice::from_raw_parts(a, 64).iter().all(|&b| b == 0xCD),
            "not zeroed: poisoned"
        );
        assert_eq!(wsk_sim::counts().pool, vec![("Tst1".to_string(), 1, 64)]);
        let b = ExAllocatePool2(POOL_FLAG_NON_PAGED, 8, TAG);
        assert_eq!(
            wsk_sim::pool::allocations(),
            vec![
                (
                    "ExAllocatePool2(NON_PAGED)".to_string(),
                    "Tst1".to_string(),
                    1
                ),
                (
                    "ExAllocatePoolWithTag(NonPagedPoolNx)".to_string(),
                    "Tst1".to_string(),
                    1
                ),
            ]
        );
        ExFreePoolWithTag(a.cast(), TAG);
        ExFreePoolWithTag(b, TAG);
        assert!(ExAllocatePoolWithTag(NonPagedPool, 8, TAG).is_null());
        assert!(has_violation(
            "ExAllocatePoolWithTag(NonPagedPool): executable pool"
        ));
        let mut lock: KSPIN_LOCK = 0;
        let old = KeAcquireSpinLockRaiseToDpc(&raw mut lock);
        let p = ExAllocatePoolWithTag(PagedPool, 8, TAG);
        KeReleaseSpinLock(&raw mut lock, old);
        ExFreePoolWithTag(p, TAG);
        assert!(has_violation(
            "ExAllocatePoolWithTag(PagedPool) called at IRQL 2"
        ));
    }
    wsk_sim::take_violations();
    wsk_sim::assert_no_leaks();
    drop(_g);
    let _g = wsk_sim::init(Config {
        alloc_fail_rate: 1.0,
        ..rec()
    });
    // SAFETY: a plain allocation that fails.
    unsafe { assert!(ExAllocatePoolWithTag(NonPagedPoolNx, 8, TAG).is_null()) };
    wsk_sim::assert_no_leaks();
}

/// MmGetSystemRoutineAddress finds what the kernel exports on the run's build, the same
/// address the image loader binds, and nothing newer: ExAllocatePool2 from 19041 on.
#[test]
fn system_routine_lookup_follows_the_build() {
    fn look(name: &str) -> PVOID {
        let mut w: Vec<u16> = name.encode_utf16().collect();
        let mut us = UNICODE_STRING {
            Length: (w.len() * 2) as u16,
            MaximumLength: (w.len() * 2) as u16,
            Buffer: w.as_mut_ptr(),
        };
        // SAFETY: a valid counted string, PASSIVE_LEVEL.
        wsk_sim::run_passive(|| unsafe { MmGetSystemRoutineAddress(&raw mut us) })
    }
    for (build, has_pool2) in [(17763, false), (19041, true), (26100, true)] {
        let _g = wsk_sim::init(Config {
            windows_build: build,
            ..rec()
        });
        assert_eq!(
            !look("ExAllocatePool2").is_null(),
            has_pool2,
            "build {build}"
        );
        assert_eq!(
            look("ExAllocatePoolWithTag") as usize,
            ExAllocatePoolWithTag as *const () as usize,
            "build {build}"
        );
        assert_eq!(
            look("KeQueryPerformanceCounter") as usize,
            KeQueryPerformanceCounter as *const () as usize
        );
        assert!(look("NoSuchRoutine").is_null());
        assert!(look("WskRegister").is_null(), "NETIO.SYS is not searched");
        if has_pool2 {
            assert_eq!(
                look("ExAllocatePool2") as usize,
                ExAllocatePool2 as *const () as usize
            );
        }
        assert!(wsk_sim::take_violations().is_empty());
    }
    // PASSIVE_LEVEL only.
    let _g = wsk_sim::init(rec());
    let mut lock: KSPIN_LOCK = 0;
    let mut w: Vec<u16> = "ZwClose".encode_utf16().collect();
    let mut us = UNICODE_STRING {
        Length: 14,
        MaximumLength: 14,
        Buffer: w.as_mut_ptr(),
    };
    // SAFETY: a valid string; the IRQL is wrong on purpose.
    unsafe {
        let old = KeAcquireSpinLockRaiseToDpc(&raw mut lock);
        MmGetSystemRoutineAddress(&raw mut us);
        KeReleaseSpinLock(&raw mut lock, old);
    }
    assert!(has_violation("MmGetSystemRoutineAddress"));
    wsk_sim::take_violations();
}

#[test]
fn allocation_failures_from_the_schedule() {
    let _g = wsk_sim::init(Config {
        alloc_fail_rate: 1.0,
        ..rec()
    });
    // SAFETY: plain allocations that fail.
    unsafe {
        assert!(ExAllocatePool2(POOL_FLAG_NON_PAGED, 8, TAG).is_null());
        assert!(IoAllocateIrp(1, FALSE).is_null());
        assert!(IoAllocateMdl(null_mut(), 8, FALSE, FALSE, null_mut()).is_null());
    }
    wsk_sim::assert_no_leaks();
}

static ROUTINE_CALLS: AtomicUsize = AtomicUsize::new(0);
unsafe extern "win64" fn count_routine(_d: PDEVICE_OBJECT, _irp: PIRP, _ctx: PVOID) -> NTSTATUS {
    ROUTINE_CALLS.fetch_add(1, Ordering::SeqCst);
    STATUS_MORE_PROCESSING_REQUIRED
}

#[test]
fn completion_routines_follow_sl_invoke_flags() {
    let _g = wsk_sim::init(rec());
    ROUTINE_CALLS.store(0, Ordering::SeqCst);
    // SAFETY: driver-side IRP handling against the sim's IofCompleteRequest.
    unsafe {
        let irp = IoAllocateIrp(2, FALSE);
        assert_eq!((*irp).StackCount, 2);
        assert_eq!((*irp).CurrentLocation, 3);
        // Layout: stack locations right after the IRP, current = one past the last.
        let first = irp.add(1).cast::<IO_STACK_LOCATION>();
        assert_eq!((*irp).Tail.Overlay.CurrentStackLocation, first.add(2));
        // Routine only on error; complete with success from the lower location.
        IoSetCompletionRoutine(irp, Some(count_routine), null_mut(), false, true, false);
        IoSetNextIrpStackLocation(irp);
        IoMarkIrpPending(irp);
        (*irp).IoStatus.Status = STATUS_SUCCESS;
        IofCompleteRequest(irp, 0);
        assert_eq!(ROUTINE_CALLS.load(Ordering::SeqCst), 0);
        assert!(
            has_violation("reached the I/O manager"),
            "a driver IRP must be stopped with MORE_PROCESSING_REQUIRED"
        );
        wsk_sim::take_violations();
        IoReuseIrp(irp, STATUS_UNSUCCESSFUL);
        IoSetCompletionRoutine(irp, Some(count_routine), null_mut(), false, true, false);
        IoSetNextIrpStackLocation(irp);
        (*irp).IoStatus.Status = STATUS_UNSUCCESSFUL;
        IofCompleteRequest(irp, 0);
        assert_eq!(ROUTINE_CALLS.load(Ordering::SeqCst), 1);
        IofCompleteRequest(irp, 0);
        assert!(has_violation("completed twice"));
        IoFreeIrp(irp);
    }
    wsk_sim::take_violations();
    wsk_sim::assert_no_leaks();
}

#[test]
fn freeing_memory_that_holds_a_pending_irp_is_flagged() {
    let _g = wsk_sim::init(rec());
    let wsk = Wsk::open();
    let (_, s) = wsk.socket(
        AF_INET,
        SOCK_DGRAM,
        IPPROTO_UDP,
        WSK_FLAG_DATAGRAM_SOCKET,
        null_mut(),
        std::ptr::null(),
    );
    let mut a = v4([127, 0, 0, 1], 0);
    bind(s, &mut a);
    let b = PoolBuf::new(64);
    let mut wb = b.wsk_buf();
    // SAFETY: an IRP embedded in pool memory, freed while pending (the bug under test).
    unsafe {
        let size = IoSizeOfIrp(1);
        let mem = ExAllocatePool2(POOL_FLAG_NON_PAGED, usize::from(size), TAG).cast::<IRP>();
        IoInitializeIrp(mem, size, 1);
        IoSetCompletionRoutine(mem, Some(count_routine), null_mut(), true, true, true);
        assert_eq!(
            (dgram_d(s).WskReceiveFrom.unwrap())(
                s,
                &raw mut wb,
                0,
                null_mut(),
                null_mut(),
                null_mut(),
                null_mut(),
                mem
            ),
            STATUS_PENDING
        );
        ExFreePoolWithTag(mem.cast(), TAG);
    }
    assert!(has_violation("still pending in WskReceiveFrom"));
    wsk_sim::take_violations();
    close(s);
    b.free();
    wsk.close();
}

#[test]
fn mdl_over_pool_memory() {
    let _g = wsk_sim::init(rec());
    // SAFETY: plain MDL calls.
    unsafe {
        let p = ExAllocatePool2(POOL_FLAG_NON_PAGED, 10_000, TAG).cast::<u8>();
        let va = p.add(100);
        let irp = IoAllocateIrp(1, FALSE);
        let m = IoAllocateMdl(va.cast(), 9000, FALSE, FALSE, irp);
        assert_eq!((*irp).MdlAddress, m);
        MmBuildMdlForNonPagedPool(m);
        assert_eq!(
            MmGetSystemAddressForMdlSafe(m, NormalPagePriority),
            va.cast()
        );
        assert_eq!(MmGetMdlByteCount(m), 9000);
        assert_eq!(MmGetMdlVirtualAddress(m), va.cast());
        assert_eq!(wsk_sim::counts().mdls, 1);
        IoFreeMdl(m);
        IoFreeIrp(irp);
        ExFreePoolWithTag(p.cast(), TAG);
    }
    wsk_sim::assert_no_leaks();
}

#[test]
fn events_and_timeouts() {
    let _g = wsk_sim::init(rec());
    let ev: &'static mut KEVENT = Box::leak(Box::new(
        // SAFETY: initialised right below.
        unsafe { std::mem::zeroed() },
    ));
    let evp = std::ptr::from_mut(ev) as usize;
    // SAFETY: a leaked event shared with a thread.
    unsafe {
        KeInitializeEvent(evp as PKEVENT, SynchronizationEvent, FALSE);
        let start = Instant::now();
        let mut t = LARGE_INTEGER { QuadPart: -200_000 }; // 20 ms
        assert_eq!(
            KeWaitForSingleObject(evp as PVOID, Executive, KernelMode, FALSE, &raw mut t),
            STATUS_TIMEOUT
        );
        assert!(start.elapsed() >= Duration::from_millis(19));
        let th = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            KeSetEvent(evp as PKEVENT, 0, FALSE);
        });
        assert_eq!(
            KeWaitForSingleObject(evp as PVOID, Executive, KernelMode, FALSE, null_mut()),
            STATUS_SUCCESS
        );
        th.join().unwrap();
        // Synchronization event: auto-reset.
        let mut zero = LARGE_INTEGER { QuadPart: 0 };
        assert_eq!(
            KeWaitForSingleObject(evp as PVOID, Executive, KernelMode, FALSE, &raw mut zero),
            STATUS_TIMEOUT
        );
    }
}

#[test]
fn rundown_protection() {
    let _g = wsk_sim::init(rec());
    let r = Box::leak(Box::new(EX_RUNDOWN_REF::zeroed())) as *mut EX_RUNDOWN_REF as usize;
    // SAFETY: a leaked rundown ref shared with a thread.
    unsafe {
        ExInitializeRundownProtection(r as PEX_RUNDOWN_REF);
        assert_eq!(ExAcquireRundownProtection(r as PEX_RUNDOWN_REF), TRUE);
        let th = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            ExReleaseRundownProtection(r as PEX_RUNDOWN_REF);
        });
        let start = Instant::now();
        ExWaitForRundownProtectionRelease(r as PEX_RUNDOWN_REF);
        assert!(
            start.elapsed() >= Duration::from_millis(25),
            "waited for the reference"
        );
        th.join().unwrap();
        assert_eq!(
            ExAcquireRundownProtection(r as PEX_RUNDOWN_REF),
            FALSE,
            "no acquire after rundown"
        );
        ExRundownCompleted(r as PEX_RUNDOWN_REF);
        ExReInitializeRundownProtection(r as PEX_RUNDOWN_REF);
        assert_eq!(ExAcquireRundownProtection(r as PEX_RUNDOWN_REF), TRUE);
        ExReleaseRundownProtection(r as PEX_RUNDOWN_REF);
        ExReleaseRundownProtection(r as PEX_RUNDOWN_REF);
    }
    assert!(has_violation("without a matching acquire"));
    wsk_sim::take_violations();
}

static DPC_RUNS: AtomicUsize = AtomicUsize::new(0);
static DPC_IRQL: AtomicUsize = AtomicUsize::new(99);
unsafe extern "win64" fn dpc_routine(_dpc: PKDPC, ctx: PVOID, _a: PVOID, _b: PVOID) {
    DPC_IRQL.store(usize::from(KeGetCurrentIrql()), Ordering::SeqCst);
    DPC_RUNS.fetch_add(ctx as usize, Ordering::SeqCst);
}

#[test]
fn timers_fire_their_dpc_at_dispatch() {
    let _g = wsk_sim::init(rec());
    DPC_RUNS.store(0, Ordering::SeqCst);
    let timer: *mut KTIMER = Box::into_raw(Box::new(
        // SAFETY: initialised below.
        unsafe { std::mem::zeroed() },
    ));
    let dpc: *mut KDPC = Box::into_raw(Box::new(
        // SAFETY: initialised below.
        unsafe { std::mem::zeroed() },
    ));
    // SAFETY: timer and DPC outlive their use (cancelled/fired before being freed).
    unsafe {
        KeInitializeTimer(timer);
        KeInitializeDpc(dpc, Some(dpc_routine), 1 as PVOID);
        assert_eq!(
            KeSetTimer(timer, LARGE_INTEGER { QuadPart: -100_000 }, dpc),
            FALSE
        );
        wait_until("dpc", 5, || DPC_RUNS.load(Ordering::SeqCst) == 1);
        assert_eq!(DPC_IRQL.load(Ordering::SeqCst), 2);
        let mut zero = LARGE_INTEGER { QuadPart: 0 };
        assert_eq!(
            KeWaitForSingleObject(timer.cast(), Executive, KernelMode, FALSE, &raw mut zero),
            STATUS_SUCCESS,
            "an expired timer is signaled"
        );
        KeSetTimer(
            timer,
            LARGE_INTEGER {
                QuadPart: -10_000_000,
            },
            dpc,
        );
        assert_eq!(KeCancelTimer(timer), TRUE);
        assert_eq!(KeInsertQueueDpc(dpc, null_mut(), null_mut()), TRUE);
        wait_until("queued dpc", 5, || DPC_RUNS.load(Ordering::SeqCst) == 2);
        drop(Box::from_raw(timer));
        drop(Box::from_raw(dpc));
    }
    wsk_sim::assert_no_leaks();
}

static WORK_RUNS: AtomicUsize = AtomicUsize::new(0);
unsafe extern "win64" fn work_routine(_dev: PDEVICE_OBJECT, ctx: PVOID) {
    assert_eq!(KeGetCurrentIrql(), PASSIVE_LEVEL);
    WORK_RUNS.fetch_add(ctx as usize, Ordering::SeqCst);
}

unsafe extern "win64" fn thread_routine(ctx: PVOID) {
    WORK_RUNS.fetch_add(ctx as usize, Ordering::SeqCst);
    // SAFETY: ends this system thread.
    unsafe { PsTerminateSystemThread(STATUS_SUCCESS) };
}

#[test]
fn work_items_and_system_threads() {
    let _g = wsk_sim::init(rec());
    WORK_RUNS.store(0, Ordering::SeqCst);
    // SAFETY: plain kernel calls.
    unsafe {
        let w = IoAllocateWorkItem(null_mut());
        IoQueueWorkItem(w, Some(work_routine), DelayedWorkQueue, 10 as PVOID);
        wait_until("work item", 5, || WORK_RUNS.load(Ordering::SeqCst) == 10);
        IoFreeWorkItem(w);
        let mut h: HANDLE = null_mut();
        assert_eq!(
            PsCreateSystemThread(
                &raw mut h,
                0,
                null_mut(),
                null_mut(),
                null_mut(),
                Some(thread_routine),
                5 as PVOID
            ),
            STATUS_SUCCESS
        );
        let mut obj: PVOID = null_mut();
        assert_eq!(
            ObReferenceObjectByHandle(h, 0, null_mut(), KernelMode, &raw mut obj, null_mut()),
            STATUS_SUCCESS
        );
        assert_eq!(ZwClose(h), STATUS_SUCCESS);
        let mut t = LARGE_INTEGER {
            QuadPart: -50_000_000,
        };
        assert_eq!(
            KeWaitForSingleObject(obj, Executive, KernelMode, FALSE, &raw mut t),
            STATUS_SUCCESS
        );
        assert_eq!(WORK_RUNS.load(Ordering::SeqCst), 15);
        ObDereferenceObject(obj);
    }
    wsk_sim::assert_no_leaks();
}

#[test]
fn registry_values_for_driver_config() {
    let _g = wsk_sim::init(rec());
    let path = r"\Registry\Machine\System\CurrentControlSet\Services\wskecho\Parameters";
    wsk_sim::registry::set_value(path, "EchoPort", wsk_sim::registry::RegValue::Dword(7007));
    wsk_sim::registry::set_value(
        path,
        "BindAddress",
        wsk_sim::registry::RegValue::Sz("127.0.0.1".into()),
    );
    let wpath = wide(&path.to_uppercase());
    let mut name = ustr(&wpath);
    let mut oa = InitializeObjectAttributes(
        &raw mut name,
        OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE,
        null_mut(),
        null_mut(),
    );
    let mut h: HANDLE = null_mut();
    // SAFETY: plain registry calls.
    unsafe {
        assert_eq!(ZwOpenKey(&raw mut h, KEY_READ, &raw mut oa), STATUS_SUCCESS);
        let vn = wide("echoport");
        let mut v = ustr(&vn);
        let mut buf = [0u8; 64];
        let mut len = 0u32;
        assert_eq!(
            ZwQueryValueKey(
                h,
                &raw mut v,
                KeyValuePartialInformation,
                buf.as_mut_ptr().cast(),
                64,
                &raw mut len
            ),
            STATUS_SUCCESS
        );
        let info = buf
            .as_ptr()
            .cast::<KEY_VALUE_PARTIAL_INFORMATION>()
            .read_unaligned();
        assert_eq!((info.Type, info.DataLength, len), (REG_DWORD, 4, 16));
        assert_eq!(u32::from_le_bytes(buf[12..16].try_into().unwrap()), 7007);
        let vn = wide("BindAddress");
        let mut v = ustr(&vn);
        assert_eq!(
            ZwQueryValueKey(
                h,
                &raw mut v,
                KeyValuePartialInformation,
                buf.as_mut_ptr().cast(),
                14,
                &raw mut len
            ),
            STATUS_BUFFER_OVERFLOW
        );
        assert_eq!(len as usize, 12 + 20);
        let vn = wide("Missing");
        let mut v = ustr(&vn);
        assert_eq!(
            ZwQueryValueKey(
                h,
                &raw mut v,
                KeyValuePartialInformation,
                buf.as_mut_ptr().cast(),
                64,
                &raw mut len
            ),
            STATUS_OBJECT_NAME_NOT_FOUND
        );
        assert_eq!(ZwClose(h), STATUS_SUCCESS);
        let wmissing = wide(r"\Registry\Machine\Nope");
        let mut n2 = ustr(&wmissing);
        let mut oa2 =
            InitializeObjectAttributes(&raw mut n2, OBJ_CASE_INSENSITIVE, null_mut(), null_mut());
        assert_eq!(
            ZwOpenKey(&raw mut h, KEY_READ, &raw mut oa2),
            STATUS_OBJECT_NAME_NOT_FOUND
        );
    }
    wsk_sim::assert_no_leaks();
}

unsafe extern "win64" fn ioctl_dispatch(_dev: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: the I/O manager's IRP for our device.
    unsafe {
        let sl = IoGetCurrentIrpStackLocation(irp);
        let code = (*sl).Parameters.DeviceIoControl.IoControlCode;
        let out = (*sl).Parameters.DeviceIoControl.OutputBufferLength as usize;
        let buf = (*irp).AssociatedIrp.SystemBuffer.cast::<u8>();
        let n = out.min(4);
        std::ptr::copy_nonoverlapping(code.to_le_bytes().as_ptr(), buf, n);
        (*irp).IoStatus.Status = STATUS_SUCCESS;
        (*irp).IoStatus.Information = n;
        IoCompleteRequest(irp, IO_NO_INCREMENT);
    }
    STATUS_SUCCESS
}

#[test]
fn control_device_security_and_dispatch() {
    let _g = wsk_sim::init(rec());
    let drv = wsk_sim::new_driver_object();
    let dn = wide(r"\Device\WskEcho");
    let ln = wide(r"\DosDevices\WskEcho");
    let (mut dname, mut lname) = (ustr(&dn), ustr(&ln));
    // SAFETY: the I/O and security calls a control device needs.
    unsafe {
        (*drv).MajorFunction[usize::from(IRP_MJ_DEVICE_CONTROL)] = Some(ioctl_dispatch);
        let mut dev: PDEVICE_OBJECT = null_mut();
        assert_eq!(
            IoCreateDevice(
                drv,
                32,
                &raw mut dname,
                FILE_DEVICE_NETWORK,
                FILE_DEVICE_SECURE_OPEN,
                FALSE,
                &raw mut dev
            ),
            STATUS_SUCCESS
        );
        assert_eq!((*drv).DeviceObject, dev);
        assert!(!(*dev).DeviceExtension.is_null());
        assert_eq!(
            IoCreateSymbolicLink(&raw mut lname, &raw mut dname),
            STATUS_SUCCESS
        );
        let se = wsk_sim::device::SeExports;
        let sys = (*se).SeLocalSystemSid;
        let adm = (*se).SeAliasAdminsSid;
        let acl_len = 8 + 2 * 8 + RtlLengthSid(sys) + RtlLengthSid(adm);
        let acl = ExAllocatePool2(POOL_FLAG_NON_PAGED, acl_len as usize, TAG).cast::<ACL>();
        assert_eq!(RtlCreateAcl(acl, acl_len, ACL_REVISION), STATUS_SUCCESS);
        assert_eq!(
            RtlAddAccessAllowedAce(acl, ACL_REVISION, FILE_ALL_ACCESS, sys),
            STATUS_SUCCESS
        );
        assert_eq!(
            RtlAddAccessAllowedAce(acl, ACL_REVISION, FILE_ALL_ACCESS, adm),
            STATUS_SUCCESS
        );
        let mut sd: SECURITY_DESCRIPTOR = std::mem::zeroed();
        assert_eq!(
            RtlCreateSecurityDescriptor((&raw mut sd).cast(), SECURITY_DESCRIPTOR_REVISION),
            STATUS_SUCCESS
        );
        assert_eq!(
            RtlSetDaclSecurityDescriptor((&raw mut sd).cast(), TRUE, acl, FALSE),
            STATUS_SUCCESS
        );
        let mut h: HANDLE = null_mut();
        assert_eq!(
            ObOpenObjectByPointer(
                dev.cast(),
                OBJ_KERNEL_HANDLE,
                null_mut(),
                WRITE_DAC,
                null_mut(),
                KernelMode,
                &raw mut h
            ),
            STATUS_SUCCESS
        );
        assert_eq!(
            ZwSetSecurityObject(h, DACL_SECURITY_INFORMATION, (&raw mut sd).cast()),
            STATUS_SUCCESS
        );
        assert_eq!(ZwClose(h), STATUS_SUCCESS);
        ExFreePoolWithTag(acl.cast(), TAG);
        (*dev).Flags &= !DO_DEVICE_INITIALIZING;
        let rec = &wsk_sim::device::devices()[0];
        assert_eq!(rec.name, r"\Device\WskEcho");
        let dacl = rec.dacl.clone().expect("DACL applied");
        assert_eq!(
            dacl.iter().map(|a| a.sid.as_str()).collect::<Vec<_>>(),
            ["S-1-5-18", "S-1-5-32-544"]
        );
        assert_eq!(
            wsk_sim::device::symlinks(),
            vec![(
                r"\dosdevices\wskecho".to_string(),
                r"\Device\WskEcho".to_string()
            )]
        );
        let r = wsk_sim::device::call_dispatch(dev, IRP_MJ_DEVICE_CONTROL, 0x0022_2004, &[1, 2], 4);
        assert_eq!(
            (r.status, r.information, r.output),
            (STATUS_SUCCESS, 4, 0x0022_2004u32.to_le_bytes().to_vec())
        );
        assert_eq!(IoDeleteSymbolicLink(&raw mut lname), STATUS_SUCCESS);
        IoDeleteDevice(dev);
        assert!((*drv).DeviceObject.is_null());
    }
    wsk_sim::assert_no_leaks();
}

#[test]
fn dbgprint_is_captured_and_processors_reported() {
    let _g = wsk_sim::init(Config {
        processor_count: 3,
        ..rec()
    });
    // SAFETY: fixed-arity DbgPrintEx, NUL-terminated strings.
    unsafe {
        DbgPrintEx(
            DPFLTR_IHVNETWORK_ID,
            DPFLTR_INFO_LEVEL,
            c"%s".as_ptr().cast(),
            c"wskecho: hello".as_ptr().cast(),
        );
        assert_eq!(KeQueryActiveProcessorCountEx(ALL_PROCESSOR_GROUPS), 3);
        let mut pn = PROCESSOR_NUMBER::default();
        let n = KeGetCurrentProcessorNumberEx(&raw mut pn);
        assert!(n < 3 && u32::from(pn.Number) == n);
        let mut f = LARGE_INTEGER { QuadPart: 0 };
        let a = KeQueryPerformanceCounter(&raw mut f).QuadPart;
        std::thread::sleep(Duration::from_millis(2));
        let b = KeQueryPerformanceCounter(null_mut()).QuadPart;
        assert!(f.QuadPart == 10_000_000 && b > a);
    }
    assert!(wsk_sim::dbg_output().contains("wskecho: hello"));
}

static SLOW_DONE: AtomicUsize = AtomicUsize::new(0);
unsafe extern "win64" fn slow_work(_dev: PDEVICE_OBJECT, _ctx: PVOID) {
    std::thread::sleep(Duration::from_millis(400));
    SLOW_DONE.store(1, Ordering::SeqCst);
}

#[test]
fn finish_reports_driver_code_still_running_after_unload() {
    let _g = wsk_sim::init(rec());
    // SAFETY: a work item whose routine outlives "unload".
    let w = unsafe {
        let w = IoAllocateWorkItem(null_mut());
        IoQueueWorkItem(w, Some(slow_work), DelayedWorkQueue, null_mut());
        w
    };
    let report = wsk_sim::finish();
    assert!(
        report
            .iter()
            .any(|l| l.contains("still running after unload (C30)")),
        "{report:?}"
    );
    wait_until("slow work item", 5, || {
        SLOW_DONE.load(Ordering::SeqCst) == 1
    });
    let _ = w;
    assert!(wsk_sim::finish().is_empty());
}

#[test]
fn freeing_pool_with_a_set_timer_is_flagged() {
    let _g = wsk_sim::init(rec());
    // SAFETY: a timer in pool memory, freed while set (the bug under test).
    unsafe {
        let t = ExAllocatePool2(POOL_FLAG_NON_PAGED, std::mem::size_of::<KTIMER>(), TAG)
            .cast::<KTIMER>();
        KeInitializeTimer(t);
        KeSetTimer(
            t,
            LARGE_INTEGER {
                QuadPart: -10_000_000,
            },
            null_mut(),
        );
        ExFreePoolWithTag(t.cast(), TAG);
    }
    assert!(has_violation("TIMER_OR_DPC_INVALID"));
    wsk_sim::take_violations();
    wsk_sim::assert_no_leaks();
}
