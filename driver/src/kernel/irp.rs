//! IRPs the driver owns (rules C16: completion routines return MORE_PROCESSING_REQUIRED, invoked on
//! success, error and cancel–C20: never free or reuse what WSK still owns): one stack location,
//! IoReuseIrp and a fresh completion routine before every use, completion routines return
//! STATUS_MORE_PROCESSING_REQUIRED, and a synchronous helper for PASSIVE_LEVEL set-up/teardown that
//! waits only after STATUS_PENDING.

use core::ptr;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use wsk_sys::{
    Executive, IoAllocateIrp, IoFreeIrp, IoReuseIrp, IoSetCompletionRoutine, KeInitializeEvent,
    KeSetEvent, KeWaitForSingleObject, KernelMode, NotificationEvent, FALSE, KEVENT, NTSTATUS,
    PDEVICE_OBJECT, PIRP, PVOID, STATUS_INSUFFICIENT_RESOURCES, STATUS_MORE_PROCESSING_REQUIRED,
    STATUS_NOT_SUPPORTED, STATUS_PENDING,
};

pub(crate) type Completion = unsafe extern "win64" fn(PDEVICE_OBJECT, PIRP, PVOID) -> NTSTATUS;

/// Completion routines armed and not yet returned.
///
/// C30: no completion routine may still run driver code when the image unloads. The driver
/// is not PnP, so the choice is IoSetCompletionRoutineEx (the I/O manager references the
/// device object until the routine returns) or keeping the image alive ourselves. Ex is not
/// used: it allocates a context on every call, so every send would allocate (the data path
/// allocates nothing) and could fail for want of memory at DISPATCH_LEVEL. Instead every
/// [`arm`] counts the routine here and every routine's last act is [`routine_return`];
/// DriverUnload frees nothing and does not return before [`wait_routines_returned`] sees zero.
/// The connection rundown alone is not enough: it is released inside close/disconnect
/// completions, and a routine on another CPU (a send completion that pumped the close) may
/// still be executing after that release.
static ROUTINES: AtomicUsize = AtomicUsize::new(0);

/// IoAllocateIrp with one stack location (C18: IRPs with a stack location, reused with IoReuseIrp);
/// null on failure. IRQL <= DISPATCH_LEVEL.
pub(crate) fn alloc() -> PIRP {
    // SAFETY: plain allocation call; 1 stack location, no quota charge.
    unsafe { IoAllocateIrp(1, FALSE) }
}

/// # Safety
/// `irp` came from [`alloc`] and WSK no longer owns it (C20).
pub(crate) unsafe fn free(irp: PIRP) {
    if !irp.is_null() {
        // SAFETY: per the caller.
        unsafe { IoFreeIrp(irp) };
    }
}

/// What an armed IRP's IoStatus.Status holds until it completes. No completion can leave it
/// there (an IRP is never completed with STATUS_PENDING), so after a call that returned
/// anything else it tells whether the provider completed the IRP (W11: SUCCESS/failure: the IRP is
/// complete; PENDING: it completes later) or broke the rule (see [`unfinished`]).
const ARMED: NTSTATUS = STATUS_PENDING;

/// Prepares an owned IRP for its next WSK call (C18): reuse, then the completion routine for
/// success, error and cancel (C16).
///
/// # Safety
/// `irp` is a driver-owned IRP not currently owned by WSK; `ctx` stays valid until the
/// completion routine has run.
#[inline]
pub(crate) unsafe fn arm(irp: PIRP, routine: Completion, ctx: PVOID) {
    ROUTINES.fetch_add(1, Ordering::SeqCst);
    // SAFETY: per the caller; IoReuseIrp resets the IRP, IoSetCompletionRoutine writes the
    // next (first and only) stack location.
    unsafe {
        IoReuseIrp(irp, ARMED);
        IoSetCompletionRoutine(irp, Some(routine), ctx, true, true, true);
    }
}

/// The call that was handed `irp` returned `returned`, which is not STATUS_PENDING, and the
/// IRP has not completed: the provider broke W11 (Wine's netio.sys returns
/// STATUS_NOT_IMPLEMENTED for functions it lacks and leaves the IRP alone). Its routine will
/// never run by itself. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `irp` was [`arm`]ed for that call and nothing but this call's completion could have re-armed
/// it since (the caller still owns the work the IRP belongs to).
#[inline]
pub(crate) unsafe fn unfinished(irp: PIRP, returned: NTSTATUS) -> bool {
    // SAFETY: per the caller, a live IRP of ours.
    returned != STATUS_PENDING && unsafe { (*irp).IoStatus.Status } == ARMED
}

/// How many times one IRP's completion routine has been entered: the per-use token that tells,
/// after a call returned a final status, whether its IRP completed even where [`unfinished`]
/// alone cannot. That check reads the IRP's status, and an IRP whose completion ran inline may
/// have been armed again before the call returned: the connect chain's next step re-arms the
/// same IRP from the completion, a UDP batch's context goes back to its pool and another
/// callback arms it at once, a closed connection's context is recycled and may be closed again.
/// The count only grows, so "unchanged since the call began" proves the routine never ran for
/// this use, whoever holds the IRP now. It lives beside its IRP, in memory that outlives every
/// use of it (a pooled context, a socket's send contexts).
pub(crate) struct Completions(AtomicU32);

impl Completions {
    pub(crate) const fn new() -> Self {
        Self(AtomicU32::new(0))
    }

    /// Read before the call the IRP is handed to.
    #[inline]
    pub(crate) fn token(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }

    /// The first act of the IRP's completion routine (before anything that could re-arm the
    /// IRP or give its owner away).
    #[inline]
    pub(crate) fn entered(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// [`unfinished`] for an IRP whose completion may re-arm it or give its owner away before the
/// call returns: the call that was handed `irp` when `done` read `token` returned `returned`,
/// not STATUS_PENDING, the routine was never entered and the provider never wrote a status.
/// IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `irp` and `done` belong together and are valid memory (they may have been re-armed or
/// reused since: that is what the token tells).
#[inline]
pub(crate) unsafe fn unfinished_since(
    irp: PIRP,
    done: &Completions,
    token: u32,
    returned: NTSTATUS,
) -> bool {
    // The routine not entered means nobody re-armed the IRP (only a completion or its owner
    // after one re-arms), so its status is still this use's.
    // SAFETY: per the caller.
    returned != STATUS_PENDING && done.token() == token && unsafe { unfinished(irp, returned) }
}

/// Finishes an [`unfinished`] call as the provider should have: the routine runs here with the
/// status the call returned, so every count it keeps (its context's outstanding IRPs,
/// [`ROUTINES`]) stays right. The violation is logged. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// [`unfinished`] said so for `irp`, armed with `routine` and `ctx`.
pub(crate) unsafe fn complete_unfinished(
    irp: PIRP,
    routine: Completion,
    ctx: PVOID,
    returned: NTSTATUS,
) {
    super::log::log_err!(
        "provider returned {:#x} without completing the IRP (W11); finished here",
        returned as u32
    );
    // SAFETY: per the caller; the IRP is ours (the provider returned a final status).
    unsafe {
        (*irp).IoStatus.Status = returned;
        (*irp).IoStatus.Information = 0;
        routine(ptr::null_mut(), irp, ctx);
    }
}

/// An armed IRP that never reaches WSK (the provider lacks the function): its routine runs
/// here, as if WSK had failed the call with STATUS_NOT_SUPPORTED, so every count the routine
/// keeps (its context's outstanding IRPs, [`ROUTINES`]) stays right. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `irp` was just [`arm`]ed with `routine` and `ctx`, and nothing else will complete it.
pub(crate) unsafe fn fail_unsent(irp: PIRP, routine: Completion, ctx: PVOID) {
    // SAFETY: per the caller the IRP is ours and armed; the routine is called as the I/O
    // manager would call it (device object NULL, as for an IRP with no device).
    unsafe {
        (*irp).IoStatus.Status = STATUS_NOT_SUPPORTED;
        (*irp).IoStatus.Information = 0;
        routine(ptr::null_mut(), irp, ctx);
    }
}

/// The last act of every completion routine (C30): after it the routine touches nothing of the
/// driver's state and returns STATUS_MORE_PROCESSING_REQUIRED (the IRP is ours, C16). Any IRQL.
#[inline]
pub(crate) fn routine_return() -> NTSTATUS {
    ROUTINES.fetch_sub(1, Ordering::SeqCst);
    STATUS_MORE_PROCESSING_REQUIRED
}

/// Completion routines armed and not returned yet.
pub fn routines_outstanding() -> usize {
    ROUTINES.load(Ordering::SeqCst)
}

/// Waits (bounded by `ms`) until every armed completion routine has returned. PASSIVE_LEVEL
/// (DriverUnload, after WskDeregister: every IRP has completed by then, W7: WskDeregister waits for
/// every socket and call).
pub(crate) fn wait_routines_returned(ms: u64) -> bool {
    super::time::wait_until(ms, || routines_outstanding() == 0)
}

/// (status, information) of a completed IRP.
///
/// # Safety
/// `irp` is valid and completed.
pub(crate) unsafe fn result(irp: PIRP) -> (NTSTATUS, usize) {
    // SAFETY: per the caller.
    unsafe { ((*irp).IoStatus.Status, (*irp).IoStatus.Information) }
}

/// IRQL: <= DISPATCH_LEVEL (any thread). Signals the waiter of [`call_sync`].
unsafe extern "win64" fn sync_done(_dev: PDEVICE_OBJECT, _irp: PIRP, ctx: PVOID) -> NTSTATUS {
    // SAFETY: ctx is the KEVENT on the waiting thread's stack, alive until the wait returns.
    unsafe { KeSetEvent(ctx.cast(), 0, FALSE) };
    // The IRP is ours: the I/O manager must not touch it again (C16).
    routine_return()
}

/// Runs one IRP-based WSK call synchronously. PASSIVE_LEVEL only, never from a callback or
/// completion routine (C11: never wait inside a callback or completion routine). Returns the final
/// (status, information).
///
/// # Safety
/// Every buffer `f` hands to WSK must stay valid until this returns.
pub(crate) unsafe fn call_sync(f: impl FnOnce(PIRP) -> NTSTATUS) -> (NTSTATUS, usize) {
    let irp = alloc();
    if irp.is_null() {
        return (STATUS_INSUFFICIENT_RESOURCES, 0);
    }
    // SAFETY: fresh IRP, per the caller for the buffers.
    let r = unsafe { call_sync_with(irp, f) };
    // SAFETY: completed and no longer referenced by WSK.
    unsafe { free(irp) };
    r
}

/// As [`call_sync`] with a caller-owned IRP (kept for teardown so that a close can never fail
/// for want of memory, C31: free everything before unload).
///
/// # Safety
/// `irp` is an idle driver-owned IRP; buffers as for [`call_sync`].
pub(crate) unsafe fn call_sync_with(
    irp: PIRP,
    f: impl FnOnce(PIRP) -> NTSTATUS,
) -> (NTSTATUS, usize) {
    // SAFETY: a zeroed KEVENT is initialised by KeInitializeEvent before use.
    let mut ev: KEVENT = unsafe { core::mem::zeroed() };
    // SAFETY: ev lives on this stack until after the wait (C20: never abandon it).
    unsafe {
        KeInitializeEvent(&raw mut ev, NotificationEvent, FALSE);
        arm(irp, sync_done, ptr::addr_of_mut!(ev).cast());
    }
    let status = f(irp);
    // SAFETY: armed above for this call; only this thread re-arms it.
    if unsafe { unfinished(irp, status) } {
        // The provider returned a final status without completing the IRP: that status is the
        // result, and the routine (which keeps ROUTINES right) runs here, as it never will.
        // SAFETY: as above; the event lives on this stack.
        unsafe { complete_unfinished(irp, sync_done, ptr::addr_of_mut!(ev).cast(), status) };
        return (status, 0);
    }
    if status == STATUS_PENDING {
        // C19: only a pending call has a completion still to wait for.
        // SAFETY: PASSIVE_LEVEL, kernel-mode wait on our own event.
        unsafe {
            KeWaitForSingleObject(
                ptr::addr_of_mut!(ev).cast(),
                Executive,
                KernelMode,
                FALSE,
                ptr::null_mut(),
            );
        }
    }
    // SAFETY: the IRP has completed on every path (W11) and is ours again.
    unsafe { result(irp) }
}
