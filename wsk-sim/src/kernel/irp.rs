//! IRPs with the real wdm.h layout (stack locations right after the IRP), completion as
//! the I/O manager does it, and the bookkeeping that catches reuse, double completion and
//! IRPs freed while the provider owns them.

use std::alloc::Layout;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use wsk_sys::{
    BOOLEAN, CCHAR, DISPATCH_LEVEL, IO_STACK_LOCATION, IRP, NTSTATUS, PDEVICE_OBJECT, PIRP,
    SL_INVOKE_ON_CANCEL, SL_INVOKE_ON_ERROR, SL_INVOKE_ON_SUCCESS, SL_PENDING_RETURNED,
    STATUS_MORE_PROCESSING_REQUIRED, STATUS_PENDING, USHORT,
};

pub(crate) const IO_TYPE_IRP: i16 = 6;
const IRP_ALLOCATED_BY_SIM: u8 = 0x80;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// IoAllocateIrp: freed by IoFreeIrp, counted as a leak until then.
    Allocated,
    /// IoInitializeIrp over caller memory: the caller owns the memory.
    Initialized,
    /// Built by the sim's test API to drive a driver dispatch routine.
    Test,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum IrpState {
    /// Fresh or reinitialised: may be passed to a provider function.
    Ready,
    /// Owned by the provider (`call`) until it is completed.
    Owned(&'static str),
    /// Completed; IoReuseIrp (or IoInitializeIrp) is required before it is used again.
    Completed,
    /// Completed back to the "I/O manager" (no completion routine stopped it).
    Finished,
}

struct Rec {
    origin: Origin,
    state: IrpState,
    size: usize,
}

/// Told when memory holding a provider-owned IRP is freed, so the provider (the layer
/// above) drops every queue entry that names it.
static ABANDONED: OnceLock<fn(usize)> = OnceLock::new();

/// Installs the abandoned-IRP hook (once per process).
pub(crate) fn set_abandoned_hook(forget: fn(usize)) {
    let _ = ABANDONED.set(forget);
}

static IRPS: Mutex<BTreeMap<usize, Rec>> = Mutex::new(BTreeMap::new());

fn table() -> MutexGuard<'static, BTreeMap<usize, Rec>> {
    IRPS.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn size_of_irp(stack: u8) -> usize {
    std::mem::size_of::<IRP>() + usize::from(stack) * std::mem::size_of::<IO_STACK_LOCATION>()
}

fn layout(size: usize) -> Layout {
    Layout::from_size_align(size, 16).expect("IRP layout")
}

/// Live IoAllocateIrp IRPs: (address, state).
pub(crate) fn live_allocated() -> Vec<(usize, String)> {
    table()
        .iter()
        .filter(|(_, r)| r.origin == Origin::Allocated)
        .map(|(a, r)| (*a, format!("{:?}", r.state)))
        .collect()
}

/// IRPs the provider still owns (pending), whatever their origin.
pub(crate) fn owned() -> Vec<(usize, &'static str)> {
    table()
        .iter()
        .filter_map(|(a, r)| match r.state {
            IrpState::Owned(c) => Some((*a, c)),
            _ => None,
        })
        .collect()
}

pub(crate) fn reset() {
    let mut t = table();
    for (addr, r) in std::mem::take(&mut *t) {
        if r.origin == Origin::Allocated || r.origin == Origin::Test {
            // SAFETY: allocated by `IoAllocateIrp`/`test_irp` with this layout.
            unsafe { std::alloc::dealloc(addr as *mut u8, layout(r.size)) };
        }
    }
}

/// Pool memory is being freed: IRPs inside it must not be owned by the provider.
pub(crate) fn check_freed_range(start: usize, size: usize, call: &str) {
    let mut t = table();
    let inside: Vec<usize> = t.range(start..start + size).map(|(a, _)| *a).collect();
    let mut bad = Vec::new();
    for a in inside {
        if let Some(r) = t.remove(&a) {
            if let IrpState::Owned(c) = r.state {
                bad.push((a, c));
            }
        }
    }
    drop(t);
    for (a, c) in bad {
        if let Some(forget) = ABANDONED.get() {
            forget(a);
        }
        crate::kernel::state::violation(format!(
            "{call} frees memory holding IRP {a:#x} still pending in {c} (C20: never free an IRP WSK owns)"
        ));
    }
}

/// # Safety
/// `irp` points to `size` writable bytes.
unsafe fn init_fields(irp: PIRP, size: USHORT, stack: CCHAR, flags: u8) {
    // SAFETY: per the function contract; IO_STACK_LOCATIONs follow the IRP.
    unsafe {
        std::ptr::write_bytes(irp.cast::<u8>(), 0, usize::from(size));
        (*irp).Type = IO_TYPE_IRP;
        (*irp).Size = size;
        (*irp).StackCount = stack;
        (*irp).CurrentLocation = stack + 1;
        (*irp).AllocationFlags = flags;
        (*irp).Tail.Overlay.CurrentStackLocation =
            irp.add(1).cast::<IO_STACK_LOCATION>().add(stack as usize);
    }
}

/// `IoAllocateIrp`: ≤ DISPATCH_LEVEL.
#[no_mangle]
pub unsafe extern "win64" fn IoAllocateIrp(StackSize: CCHAR, ChargeQuota: BOOLEAN) -> PIRP {
    crate::kernel::preempt::entry("IoAllocateIrp");
    let _ = ChargeQuota;
    crate::kernel::irql::require_dispatch_or_below("IoAllocateIrp");
    if StackSize < 1 {
        crate::kernel::state::violation(format!(
            "IoAllocateIrp(StackSize={StackSize}): at least one stack location is required"
        ));
        return std::ptr::null_mut();
    }
    if crate::kernel::schedule::injected_failure(crate::config::Call::IoAllocateIrp).is_some() {
        return std::ptr::null_mut();
    }
    let size = size_of_irp(StackSize as u8);
    // SAFETY: non-zero size.
    let p = unsafe { std::alloc::alloc(layout(size)) }.cast::<IRP>();
    if p.is_null() {
        return p;
    }
    // SAFETY: `p` has `size` bytes.
    unsafe { init_fields(p, size as USHORT, StackSize, IRP_ALLOCATED_BY_SIM) };
    table().insert(
        p as usize,
        Rec {
            origin: Origin::Allocated,
            state: IrpState::Ready,
            size,
        },
    );
    p
}

/// `IoInitializeIrp`: caller memory of `IoSizeOfIrp(StackSize)` bytes.
#[no_mangle]
pub unsafe extern "win64" fn IoInitializeIrp(Irp: PIRP, PacketSize: USHORT, StackSize: CCHAR) {
    if StackSize < 1 || usize::from(PacketSize) < size_of_irp(StackSize as u8) {
        crate::kernel::state::violation(format!(
            "IoInitializeIrp(PacketSize={PacketSize}, StackSize={StackSize}): PacketSize must be IoSizeOfIrp(StackSize) = {}",
            size_of_irp(StackSize.max(0) as u8)
        ));
        return;
    }
    let mut t = table();
    if let Some(r) = t.get(&(Irp as usize)) {
        if let IrpState::Owned(c) = r.state {
            drop(t);
            crate::kernel::state::violation(format!(
                "IoInitializeIrp({Irp:p}) while the IRP is still pending in {c}"
            ));
            return;
        }
    }
    let origin = t
        .get(&(Irp as usize))
        .map_or(Origin::Initialized, |r| r.origin);
    t.insert(
        Irp as usize,
        Rec {
            origin,
            state: IrpState::Ready,
            size: usize::from(PacketSize),
        },
    );
    drop(t);
    // SAFETY: the caller passes PacketSize bytes of IRP storage.
    unsafe { init_fields(Irp, PacketSize, StackSize, 0) };
}

/// `IoReuseIrp`: reinitialises a completed IRP and sets IoStatus.Status.
#[no_mangle]
pub unsafe extern "win64" fn IoReuseIrp(Irp: PIRP, Iostatus: NTSTATUS) {
    crate::kernel::preempt::entry("IoReuseIrp");
    let mut t = table();
    let Some(r) = t.get_mut(&(Irp as usize)) else {
        drop(t);
        crate::kernel::state::violation(format!(
            "IoReuseIrp({Irp:p}): not an IRP from IoAllocateIrp/IoInitializeIrp"
        ));
        return;
    };
    if let IrpState::Owned(c) = r.state {
        drop(t);
        crate::kernel::state::violation(format!(
            "IoReuseIrp({Irp:p}) while the IRP is still pending in {c}"
        ));
        return;
    }
    r.state = IrpState::Ready;
    drop(t);
    // SAFETY: the IRP is a live record of ours; Size/StackCount/AllocationFlags survive.
    unsafe {
        let (size, stack, flags) = ((*Irp).Size, (*Irp).StackCount, (*Irp).AllocationFlags);
        init_fields(Irp, size, stack, flags);
        (*Irp).IoStatus.Status = Iostatus;
    }
}

/// `IoFreeIrp`: only for IoAllocateIrp IRPs that nobody owns.
#[no_mangle]
pub unsafe extern "win64" fn IoFreeIrp(Irp: PIRP) {
    crate::kernel::preempt::entry("IoFreeIrp");
    crate::kernel::irql::require_dispatch_or_below("IoFreeIrp");
    let mut t = table();
    let Some(r) = t.get(&(Irp as usize)) else {
        drop(t);
        crate::kernel::state::violation(format!(
            "IoFreeIrp({Irp:p}): not a live IRP (double free?)"
        ));
        return;
    };
    if r.origin != Origin::Allocated {
        drop(t);
        crate::kernel::state::violation(format!(
            "IoFreeIrp({Irp:p}): IRP was not allocated by IoAllocateIrp"
        ));
        return;
    }
    if let IrpState::Owned(c) = r.state {
        drop(t);
        crate::kernel::state::violation(format!(
            "IoFreeIrp({Irp:p}) while the IRP is still pending in {c}"
        ));
        return;
    }
    let r = t.remove(&(Irp as usize)).expect("checked");
    drop(t);
    // SAFETY: allocated by IoAllocateIrp with this layout; poisoned before release.
    unsafe {
        std::ptr::write_bytes(Irp.cast::<u8>(), crate::kernel::pool::FREED_POISON, r.size);
        std::alloc::dealloc(Irp.cast(), layout(r.size));
    }
}

/// Provider side: takes ownership of a client IRP for `call` and sets up the stack
/// location the provider uses (W9: the client only set its completion routine).
///
/// # Safety
/// `irp` is NULL or a pointer the client passed as an IRP.
pub(crate) unsafe fn take(irp: PIRP, call: &'static str) -> bool {
    if irp.is_null() {
        crate::kernel::state::violation(format!("{call}: Irp is NULL (this call requires an IRP)"));
        return false;
    }
    let mut t = table();
    let Some(r) = t.get_mut(&(irp as usize)) else {
        drop(t);
        crate::kernel::state::violation(format!(
            "{call}: IRP {irp:p} was not created by IoAllocateIrp or IoInitializeIrp (W10)"
        ));
        return false;
    };
    match r.state {
        IrpState::Ready => {}
        IrpState::Owned(c) => {
            drop(t);
            crate::kernel::state::violation(format!(
                "{call}: IRP {irp:p} is already pending in {c}"
            ));
            return false;
        }
        IrpState::Completed | IrpState::Finished => {
            drop(t);
            crate::kernel::state::violation(format!(
                "{call}: IRP {irp:p} reused after completion without IoReuseIrp (W10/C18)"
            ));
            return false;
        }
    }
    // SAFETY: a live IRP record of ours.
    let loc = unsafe { (*irp).CurrentLocation };
    if loc <= 1 {
        drop(t);
        crate::kernel::state::violation(format!(
            "{call}: IRP {irp:p} has no stack location left for the provider (CurrentLocation {loc})"
        ));
        return false;
    }
    r.state = IrpState::Owned(call);
    drop(t);
    // SAFETY: IoSetNextIrpStackLocation: the location the client's IoSetCompletionRoutine
    // filled becomes the provider's current one.
    unsafe {
        (*irp).CurrentLocation -= 1;
        (*irp).Tail.Overlay.CurrentStackLocation = (*irp).Tail.Overlay.CurrentStackLocation.sub(1);
    }
    true
}

/// Undoes [`take`]: the provider gives the IRP back to its client without completing it (the
/// `unfinished_calls` fault, W11 broken on purpose). The stack location the provider was on
/// becomes the client's next one again, the completion routine untouched and never run.
///
/// # Safety
/// `irp` was taken by [`take`] and not completed.
pub(crate) unsafe fn untake(irp: PIRP) {
    let mut t = table();
    if let Some(r) = t.get_mut(&(irp as usize)) {
        if matches!(r.state, IrpState::Owned(_)) {
            r.state = IrpState::Ready;
            drop(t);
            // SAFETY: per the caller: the location take() moved to is given back.
            unsafe {
                (*irp).CurrentLocation += 1;
                (*irp).Tail.Overlay.CurrentStackLocation =
                    (*irp).Tail.Overlay.CurrentStackLocation.add(1);
            }
        }
    }
}

/// Marks a provider-owned IRP pending (IoMarkIrpPending) before STATUS_PENDING is returned.
///
/// # Safety
/// `irp` is owned by the provider.
pub(crate) unsafe fn mark_pending(irp: PIRP) {
    // SAFETY: per the function contract.
    unsafe { (*(*irp).Tail.Overlay.CurrentStackLocation).Control |= SL_PENDING_RETURNED };
}

/// Completes a provider-owned IRP with `status`/`info` on this thread at the current IRQL.
///
/// # Safety
/// `irp` is owned by the provider.
pub(crate) unsafe fn complete(irp: PIRP, status: NTSTATUS, info: usize) {
    // SAFETY: per the function contract.
    unsafe {
        (*irp).IoStatus.Status = status;
        (*irp).IoStatus.Information = info;
        complete_request(irp, "provider completion");
    }
}

/// The I/O manager's completion walk (IopfCompleteRequest).
///
/// # Safety
/// `irp` is a live IRP.
unsafe fn complete_request(irp: PIRP, call: &str) {
    crate::kernel::irql::require_dispatch_or_below(call);
    {
        let mut t = table();
        if let Some(r) = t.get_mut(&(irp as usize)) {
            match r.state {
                IrpState::Completed | IrpState::Finished => {
                    drop(t);
                    crate::kernel::state::violation(format!(
                        "{call}: IRP {irp:p} completed twice (MULTIPLE_IRP_COMPLETE_REQUESTS)"
                    ));
                    return;
                }
                _ => r.state = IrpState::Completed,
            }
        }
    }
    // SAFETY: a live IRP whose stack locations follow it in memory.
    unsafe {
        if (*irp).IoStatus.Status == STATUS_PENDING {
            crate::kernel::state::violation(format!(
                "{call}: IRP {irp:p} completed with STATUS_PENDING"
            ));
        }
        let stack_count = (*irp).StackCount;
        let mut sp = (*irp).Tail.Overlay.CurrentStackLocation;
        (*irp).CurrentLocation += 1;
        (*irp).Tail.Overlay.CurrentStackLocation = sp.add(1);
        while (*irp).CurrentLocation <= stack_count + 1 {
            let control = (*sp).Control;
            (*irp).PendingReturned = BOOLEAN::from(control & SL_PENDING_RETURNED != 0);
            let status = (*irp).IoStatus.Status;
            let invoke = (status >= 0 && control & SL_INVOKE_ON_SUCCESS != 0)
                || (status < 0 && control & SL_INVOKE_ON_ERROR != 0)
                || ((*irp).Cancel != 0 && control & SL_INVOKE_ON_CANCEL != 0);
            let routine = (*sp).CompletionRoutine;
            let context = (*sp).Context;
            (*sp).Control = 0;
            (*sp).CompletionRoutine = None;
            (*sp).Context = std::ptr::null_mut();
            if let (true, Some(routine)) = (invoke, routine) {
                let dev: PDEVICE_OBJECT = if (*irp).CurrentLocation == stack_count + 1 {
                    std::ptr::null_mut()
                } else {
                    (*(*irp).Tail.Overlay.CurrentStackLocation).DeviceObject
                };
                let r = crate::kernel::irql::run_at(
                    crate::kernel::irql::current(),
                    "completion routine",
                    || routine(dev, irp, context),
                );
                if r == STATUS_MORE_PROCESSING_REQUIRED {
                    return;
                }
            } else if (*irp).PendingReturned != 0 && (*irp).CurrentLocation <= stack_count {
                (*(*irp).Tail.Overlay.CurrentStackLocation).Control |= SL_PENDING_RETURNED;
            }
            sp = sp.add(1);
            (*irp).CurrentLocation += 1;
            (*irp).Tail.Overlay.CurrentStackLocation =
                (*irp).Tail.Overlay.CurrentStackLocation.add(1);
        }
    }
    // Fell off the top: the I/O manager would finish it for the issuing thread.
    let mut t = table();
    let origin = t.get(&(irp as usize)).map(|r| r.origin);
    if let Some(r) = t.get_mut(&(irp as usize)) {
        r.state = IrpState::Finished;
    }
    drop(t);
    if matches!(origin, Some(Origin::Allocated | Origin::Initialized)) {
        crate::kernel::state::violation(format!(
            "{call}: IRP {irp:p} from IoAllocateIrp/IoInitializeIrp reached the I/O manager: its completion routine must return STATUS_MORE_PROCESSING_REQUIRED (C17)"
        ));
    }
}

/// `IofCompleteRequest` (IoCompleteRequest): the driver completes an IRP it owns.
#[no_mangle]
pub unsafe extern "win64" fn IofCompleteRequest(Irp: PIRP, PriorityBoost: CCHAR) {
    crate::kernel::preempt::entry("IofCompleteRequest");
    let _ = PriorityBoost;
    if crate::kernel::irql::current() > DISPATCH_LEVEL {
        crate::kernel::state::violation("IoCompleteRequest above DISPATCH_LEVEL");
    }
    // An IRP handed to a WSK function belongs to the provider until the provider completes
    // it (W11, C20): the client completing it is the client's violation, blamed here, not on
    // the provider's later (correct) completion as a double completion. The IRP is left to
    // the provider.
    let held = match table().get(&(Irp as usize)) {
        Some(r) => match r.state {
            IrpState::Owned(call) => Some(call),
            _ => None,
        },
        None => None,
    };
    if let Some(call) = held {
        crate::kernel::state::violation(format!(
            "IoCompleteRequest: the client completed IRP {Irp:p} while WSK holds it (pending in {call}); only the provider completes it (W11, C20)"
        ));
        return;
    }
    // SAFETY: the caller passes an IRP it owns.
    unsafe { complete_request(Irp, "IoCompleteRequest") };
}

/// A test-made IRP with `stack` locations for driving a dispatch routine (device.rs).
pub(crate) fn test_irp(stack: u8) -> PIRP {
    let size = size_of_irp(stack);
    // SAFETY: non-zero size.
    let p = unsafe { std::alloc::alloc(layout(size)) }.cast::<IRP>();
    assert!(!p.is_null(), "out of memory");
    // SAFETY: `p` has `size` bytes.
    unsafe { init_fields(p, size as USHORT, stack as CCHAR, IRP_ALLOCATED_BY_SIM) };
    table().insert(
        p as usize,
        Rec {
            origin: Origin::Test,
            state: IrpState::Ready,
            size,
        },
    );
    p
}

pub(crate) fn free_test_irp(irp: PIRP) {
    if let Some(r) = table().remove(&(irp as usize)) {
        // SAFETY: allocated by test_irp with this layout.
        unsafe { std::alloc::dealloc(irp.cast(), layout(r.size)) };
    }
}

/// Whether the IRP has completed back to the I/O manager.
pub(crate) fn is_finished(irp: PIRP) -> bool {
    table()
        .get(&(irp as usize))
        .is_some_and(|r| r.state == IrpState::Finished)
}
