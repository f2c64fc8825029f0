//! The pump and the completions: one owner at a time issues the WSK calls `TcpState` hands
//! out (send, zero-length resume receive, disconnect, close, the ideal-backlog query); each
//! completion records its result under the connection's lock and either recycles the context
//! (the last IRP of a closed one) or enters the pump in the same critical section.

use core::ptr;
use core::sync::atomic::Ordering;

use wsk_sys::{
    ExReleaseRundownProtection, WskIoctl, NTSTATUS, NT_SUCCESS, PDEVICE_OBJECT, PIRP, PVOID,
    SIO_WSK_QUERY_IDEAL_SEND_BACKLOG, SIZE_T, ULONG, WSK_BUF, WSK_DATA_INDICATION,
    WSK_FLAG_ABORTIVE, WSK_FLAG_NODELAY, WSK_PROVIDER_CONNECTION_DISPATCH,
    WSK_PROVIDER_STREAM_DISPATCH,
};

use crate::datapath::DataPath;
use crate::kernel::irp;
use crate::kernel::lock::{SpinGuard, SpinLock};
use crate::logic::tcp::{SendKind, SendOp, TcpState, Work, MAX_SLOTS};
use crate::stats::Counter;

use super::{Conn, SendSlot};

/// Issues WskControlSocket(WskIoctl, SIO_WSK_QUERY_IDEAL_SEND_BACKLOG) asynchronously with the
/// context's pre-allocated query IRP (W30: some options need an IRP, W36:
/// SIO_WSK_QUERY_IDEAL_SEND_BACKLOG: connection sockets, IRP required). IRQL <= DISPATCH_LEVEL;
/// never waits.
///
/// The pending query keeps the context (and with it the driver rundown taken in attach) alive:
/// TcpState does not let the context be recycled before `query_done` ran, so the IRP, its
/// output buffer and the completion routine's code outlive it (C30: no completion routine may still
/// run when the image unloads). A close while the query is pending cancels it (W70: close cancels
/// pending IRPs and waits for running callbacks); the completion then recycles the context if it
/// comes last.
///
/// # Safety
/// `c` live with its socket; called once per connection, by the thread that attached it.
pub(super) unsafe fn query_backlog(c: *mut Conn) {
    // SAFETY: per the caller.
    let r = unsafe { &*c };
    // Counted as an executing call (C22: no call may be running at close) and an outstanding IRP
    // until query_done.
    if !r.state.lock().query_issue() {
        return;
    }
    // SAFETY: live context; the query IRP and query_out are owned by this call until it is
    // handed to WSK (query_issue succeeds once per lifetime, so the IRP is idle: it completed
    // before the context was last recycled). Fields are reached through the raw pointer.
    unsafe {
        let sock = (*c).socket;
        let basic = &*(*sock)
            .Dispatch
            .cast::<wsk_sys::WSK_PROVIDER_BASIC_DISPATCH>();
        (*c).query_out = 0;
        // C18: IoReuseIrp and a fresh completion routine before every use.
        irp::arm((*c).query_irp, query_done, c.cast());
        if let Some(ctl) = basic.WskControlSocket {
            // Completion (inline or later) goes through query_done (W11: SUCCESS/failure: the IRP
            // is complete; PENDING: it completes later); the status returned matters only from a
            // provider that did not complete the IRP.
            let st = ctl(
                sock,
                WskIoctl,
                SIO_WSK_QUERY_IDEAL_SEND_BACKLOG,
                0,
                0,
                ptr::null_mut(),
                core::mem::size_of::<SIZE_T>(),
                ptr::addr_of_mut!((*c).query_out).cast(),
                ptr::null_mut(),
                (*c).query_irp,
            );
            // The query IRP is armed once per connection and the call is still counted as
            // executing (no close, no recycle), so nothing else re-armed it.
            if irp::unfinished((*c).query_irp, st) {
                irp::complete_unfinished((*c).query_irp, query_done, c.cast(), st);
            }
        } else {
            // No provider function: the IRP never went out; it completes here as failed.
            irp::fail_unsent((*c).query_irp, query_done, c.cast());
        }
    }
    r.state.lock().call_returned();
}

/// SIO_WSK_QUERY_IDEAL_SEND_BACKLOG completion. IRQL <= DISPATCH_LEVEL, any thread (may run
/// inline inside WskControlSocket on the accepting thread). Stores the value as
/// WskSendBacklogEvent does (W58: the send backlog event reports the ideal backlog, C37: keep about
/// the ideal send backlog in flight). Starts no WSK call (C12: no new WSK call from a completion
/// routine: loop, do not recurse): the next send simply uses the new size. If the close already
/// completed, this was the context's last IRP and it recycles the context, releasing the rundown as
/// its very last act (C30).
unsafe extern "win64" fn query_done(_dev: PDEVICE_OBJECT, irp: PIRP, ctx: PVOID) -> NTSTATUS {
    let c = ctx.cast::<Conn>();
    // SAFETY: completed IRP.
    let (status, info) = unsafe { irp::result(irp) };
    // SAFETY: pooled context, kept out of the pool while the query is pending.
    let r = unsafe { &*c };
    let ok = NT_SUCCESS(status) && info >= core::mem::size_of::<SIZE_T>();
    // SAFETY: written by the provider before completion; the IRP is ours again.
    let ideal = unsafe { ptr::addr_of!((*c).query_out).read() };
    if ok {
        let drv = r.drv();
        drv.backlog_queries.fetch_add(1, Ordering::Relaxed);
        drv.backlog_last.store(ideal, Ordering::Relaxed);
    }
    let last = r.state.lock().query_complete(ok.then_some(ideal));
    if last {
        // SAFETY: the close completed and no other IRP of the context is outstanding.
        unsafe { recycle(c) };
    }
    irp::routine_return()
}

/// Issues the WSK calls TcpState hands out until there are none, one owner at a time.
/// A completion inside the owner's call does not pump (C12: no recursion): a send's hands its
/// recording to the owner (the slot's [`Handoff`]), the others record theirs and return; the
/// owner sees either when it asks `next_work` again after its call.
/// IRQL <= DISPATCH_LEVEL.
///
/// Only for a caller that holds the context by something the close waits for: a running
/// receive, disconnect or accept callback (W70), or an executing call it counted. Anyone else
/// (a completion routine, the housekeeper, a stop) decides under the lock and pumps with
/// [`pump_locked`] in the same critical section.
///
/// # Safety
/// `c` is a live pooled context, held as above.
pub(crate) unsafe fn pump(c: *mut Conn) {
    // SAFETY: per the caller.
    let lock = unsafe { &*ptr::addr_of!((*c).state) };
    // SAFETY: per the caller; the guard is this context's lock.
    unsafe { pump_locked(c, lock.lock()) };
}

/// [`pump`] with the context's lock already held by `state`, taken by the caller to record
/// what it did (a completion, a deadline, an abort). Entering the pump in that same critical
/// section is what keeps the context ours: only the pump owner issues the close, so once this
/// thread owns the pump nobody else can close the socket and recycle the context under it, and
/// if another thread owns it this one leaves what it recorded to that owner (which asks
/// `next_work` again after its call returns) and touches nothing after the unlock.
/// Dropping the lock first and pumping afterwards left a window (a send completion
/// whose pump ran after another CPU had closed and recycled the context, and an outbound
/// connection had taken it again with no socket yet: a NULL socket's dispatch table read, seen
/// as a SIGSEGV in a campaign soak). A context without a socket (an outbound connect not yet
/// published) is never pumped: whoever publishes it pumps. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `c` is a pooled context and `state` the guard of its lock.
pub(crate) unsafe fn pump_locked(c: *mut Conn, state: SpinGuard<'_, TcpState>) {
    // SAFETY: per the caller.
    unsafe { pump_locked_at(c, state, None) }
}

/// [`pump_locked`] for a caller that has read the CPU number already (`cpu`, for the
/// counters of the sends the pump issues; None: read when first needed).
///
/// # Safety
/// As [`pump_locked`].
#[inline]
unsafe fn pump_locked_at(c: *mut Conn, state: SpinGuard<'_, TcpState>, cpu: Option<usize>) {
    if state.pump_owned() {
        // Another thread owns the pump: it sees what was recorded under this lock (it asks
        // `next_work` again after its call returns), so this thread touches nothing after the
        // unlock. Both branches of `pump_unowned` end so too (the loop's `enter_pump` fails);
        // answered here without the call: a completion that finds the owner busy with another
        // call (a send completing after its own call returned, a resume) lands here.
        return;
    }
    // SAFETY: per the caller.
    unsafe { pump_unowned(c, state, cpu) }
}

/// [`pump_locked_at`] once no other thread owns the pump.
///
/// # Safety
/// As [`pump_locked`].
unsafe fn pump_unowned(c: *mut Conn, state: SpinGuard<'_, TcpState>, cpu: Option<usize>) {
    // SAFETY: per the caller.
    let (state, idle) = if unsafe { nothing_to_pump(c, &state) } {
        // What the loop would do with no work: nothing if another thread owns the pump (or
        // there is no socket yet), else enter, find nothing, leave and look at the attention
        // list below.
        // SAFETY: read under the lock it is written under.
        if state.pump_owned() || unsafe { (*c).socket }.is_null() {
            return;
        }
        (state, true)
    } else {
        // SAFETY: per the caller. Without a client, nothing_to_pump's false was idle's.
        let asked = unsafe { (*c).client }.is_none();
        // SAFETY: per the caller.
        let Pumped::Owner(state, idle) = (unsafe { pump_loop(c, state, cpu, asked) }) else {
            // Not the owner (it sees what was recorded), or the close went out: touch nothing.
            return;
        };
        (state, idle)
    };
    // Still under the lock (the attention list is taken inside a connection lock, never the
    // other way round): once it drops, another CPU may close and recycle the context.
    let tick = if idle {
        state.needs_tick_when_idle()
    } else {
        state.needs_tick()
    };
    if tick {
        // SAFETY: pooled context (per the caller); the data pointer outlives every context.
        let r = unsafe { &*c };
        r.drv().conns.attend(r);
    }
    drop(state);
}

/// [`pump_locked`] for a running receive callback, in the callback's own critical section:
/// returns with the lock held again, so the callback goes on (its decision, its reference's
/// drop) without taking the lock once more, and the attention list is left to the callback's
/// end, which looks at it once. Relocking after a close this pump issued is safe here (and only
/// here): the close waits for the running callback (W70), so nothing recycles the context
/// before the callback returns. IRQL <= DISPATCH_LEVEL.
///
/// Also returns whether `TcpState::idle` answered true in the critical section the guard
/// holds (false: not known), so the callback's end asks the narrower attention question.
///
/// # Safety
/// Called from the receive callback of `c`'s socket; `state` is the guard of `c`'s lock;
/// `cpu` the callback's `DataPath::cpu()`.
pub(super) unsafe fn pump_in_callback(
    c: *mut Conn,
    state: SpinGuard<'_, TcpState>,
    cpu: usize,
) -> (SpinGuard<'_, TcpState>, bool) {
    // SAFETY: per the caller.
    if unsafe { nothing_to_pump(c, &state) } {
        // Entering the pump would find nothing and leave it as it was.
        return (state, true);
    }
    // SAFETY: per the caller. Without a client, nothing_to_pump's false was idle's.
    unsafe { callback_pump(c, state, cpu, (*c).client.is_none()) }
}

/// The loop for a receive callback ([`pump_in_callback`]): its guard back, and whether idle
/// answered true in that critical section.
///
/// # Safety
/// As [`pump_in_callback`]; `asked`: idle is known to answer false now.
// Always: a match on the loop's result, on the receive callback's path once per message.
#[allow(clippy::inline_always)]
#[inline(always)]
unsafe fn callback_pump(
    c: *mut Conn,
    state: SpinGuard<'_, TcpState>,
    cpu: usize,
    asked: bool,
) -> (SpinGuard<'_, TcpState>, bool) {
    // SAFETY: per the caller.
    match unsafe { pump_loop(c, state, Some(cpu), asked) } {
        Pumped::Owner(g, idle) => (g, idle),
        Pumped::NotOwner(g) => (g, false),
        // SAFETY: the callback holds the context (W70, as in pump_in_callback).
        Pumped::Closed => (unsafe { &*ptr::addr_of!((*c).state) }.lock(), false),
    }
}

/// [`pump_in_callback`] for the receive callback that has just queued a send (a zero-copy
/// entry, or bytes committed to the ring) or aborted: the pump has work (`TcpState::idle`
/// would answer false), so neither the loop's entry nor its first question asks it.
/// IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// As [`pump_in_callback`].
#[inline]
pub(super) unsafe fn pump_queued_in_callback(
    c: *mut Conn,
    state: SpinGuard<'_, TcpState>,
    cpu: usize,
) -> (SpinGuard<'_, TcpState>, bool) {
    debug_assert!(!state.idle());
    // SAFETY: per the caller; idle answers false (above).
    unsafe { callback_pump(c, state, cpu, true) }
}

/// Whether a pump entered now would issue nothing and change nothing: `next_work` is idle
/// (TcpState::idle) and no paced client could take a ticket first (a served connection has
/// no client). Checked inline, under the lock, before the pump's loop is called.
///
/// # Safety
/// `c` is a pooled context and `state` the guard of its lock.
#[inline]
pub(super) unsafe fn nothing_to_pump(c: *mut Conn, state: &SpinGuard<'_, TcpState>) -> bool {
    // SAFETY: `client` is set before the context is published, and read under its lock.
    unsafe { (*c).client }.is_none() && state.idle()
}

/// How [`pump_loop`] ended.
enum Pumped<'a> {
    /// This thread owned the pump and left it, lock held; true: `TcpState::idle` answered the
    /// last question (false: next_work's general path found nothing).
    Owner(SpinGuard<'a, TcpState>, bool),
    /// Another thread owns the pump (or the context has no socket yet), lock held.
    NotOwner(SpinGuard<'a, TcpState>),
    /// This thread issued the close; the lock is not held (the pump stays owned: nothing is
    /// issued after the close), and the close's completion may already have recycled the
    /// context.
    Closed,
}

/// The pump's loop: enters the pump in the caller's critical section and issues work until
/// `next_work` finds none, the lock dropped around each WSK call only. `cpu`: the caller's
/// CPU number if it read it (the send counters use it), else read at the first send.
/// `queued`: the caller has just queued work in this critical section, so the first question
/// skips `TcpState::idle` (it would answer false); every later question asks it, and the
/// loop's end reports whether it answered.
///
/// # Safety
/// `c` is a pooled context and `state` the guard of its lock.
unsafe fn pump_loop<'a>(
    c: *mut Conn,
    mut state: SpinGuard<'a, TcpState>,
    mut cpu: Option<usize>,
    queued: bool,
) -> Pumped<'a> {
    // SAFETY: per the caller. Contexts are shared between CPUs: fields are reached through the
    // raw pointer, and the mutable ones (state, slot buffers) only by the lock or pump owner.
    let drv = unsafe { &*(*c).drv };
    // SAFETY: as above; the lock lives as long as the guard the caller holds.
    let lock: &'a SpinLock<TcpState> = unsafe { &*ptr::addr_of!((*c).state) };
    // SAFETY: read under the lock it is written under (take, recycle, the connect chain).
    if unsafe { (*c).socket }.is_null() || !state.enter_pump() {
        return Pumped::NotOwner(state);
    }
    let mut ask_idle = !queued;
    let mut idle;
    while let Some(w) = {
        // A paced client: one ticket from its budget per new message.
        // SAFETY: `client` is set before the context is published.
        if let Some(client) = unsafe { (*c).client } {
            if state.wants_ticket() && (client.take_ticket)(drv) {
                state.client.tickets += 1;
            }
        }
        // next_work's inline question, asked here so that the loop's end knows the answer.
        idle = ask_idle && state.idle();
        ask_idle = true;
        if idle {
            None
        } else {
            state.next_work_unasked(&drv.budget)
        }
    } {
        if let Work::Send(op) = w {
            // The send, one per message, on its own path: fill the slot's WSK_BUF while
            // holding the lock (the slot is ours now), then issue it without the lock.
            // SAFETY: the slot was handed to this pump owner by next_work.
            unsafe { fill_send_buf(c, op) };
            drop(state);
            // SAFETY: the work item grants this thread the slot it names.
            let handed = unsafe { perform_send(c, op) };
            // Counted once the call has returned: with the result, in one step, when the
            // completion was handed over.
            if handed {
                // Its completion ran before the call returned and left it to this thread
                // (send_done): counted now, recorded below in the critical section this
                // thread takes anyway. The IRP stayed counted meanwhile.
                let cpu = *cpu.get_or_insert_with(DataPath::cpu);
                // SAFETY: live pooled context; the slot's IRP completed and nobody re-arms it
                // before the completion is recorded (only this pump owner issues sends).
                let ok = unsafe {
                    count_send_result(&*c, (*c).slots[op.slot % MAX_SLOTS].irp, cpu, Some(op.kind))
                };
                state = lock.lock();
                state.send_complete(op.slot, ok);
                // Only this pump issues the close, and it has not: the context cannot be due
                // for recycling here.
                debug_assert!(!state.recyclable());
                state.call_returned();
                continue;
            }
            if !matches!(op.kind, SendKind::Pattern { .. }) {
                let cpu = *cpu.get_or_insert_with(DataPath::cpu);
                // SAFETY: live pooled context (the pump owner's).
                let slot = unsafe { (*c).stats_slot };
                if matches!(op.kind, SendKind::ZeroCopy) {
                    drv.count_service_at(cpu, slot, Counter::ZeroCopySends, 1);
                } else {
                    drv.count_service_at(cpu, slot, Counter::CopySends, 1);
                }
            }
        } else {
            // A released slot is free again the moment the lock drops (a new indication may
            // take it), so its list pointer is taken now, under the lock.
            let mut release_ind: *mut WSK_DATA_INDICATION = ptr::null_mut();
            if let Work::Release { slot } = w {
                // SAFETY: under the lock; the slot's indication belongs to this work item.
                unsafe {
                    // TcpState hands out slots < MAX_SLOTS only; the mask lets the compiler
                    // see it (no panic path on the send path).
                    let s = ptr::addr_of_mut!((*c).slots[slot % MAX_SLOTS]);
                    release_ind = (*s).indication;
                    (*s).indication = ptr::null_mut();
                }
            }
            drop(state);
            let closing = w == Work::Close;
            // SAFETY: the work item grants this thread the resource it names.
            unsafe { perform(c, w, release_ind) };
            if closing {
                // The close completion may already have recycled the context: touch nothing.
                return Pumped::Closed;
            }
        }
        state = lock.lock();
        state.call_returned();
    }
    // Left in the critical section in which next_work found nothing (see enter_pump).
    state.leave_pump();
    Pumped::Owner(state, idle)
}

/// Fills the WSK_BUF of the send `op` in its slot: the indication's buffer (zero-copy), the
/// ring's bytes or the pattern.
///
/// # Safety
/// Under `c`'s lock, by the pump owner `op` was handed to.
#[inline]
unsafe fn fill_send_buf(c: *mut Conn, op: SendOp) {
    // SAFETY: per the caller; contexts and the driver state outlive the pump.
    unsafe {
        let s = ptr::addr_of_mut!((*c).slots[op.slot % MAX_SLOTS]);
        (*s).buf = match op.kind {
            // Set by the receive callback before the slot was queued.
            SendKind::ZeroCopy => (*(*s).indication).Buffer,
            SendKind::Ring { off, len } => WSK_BUF {
                Mdl: (*c).ring_mdl,
                Offset: off as ULONG,
                Length: len,
            },
            SendKind::Pattern { len } => WSK_BUF {
                Mdl: (*(*c).drv).pattern_mdl,
                Offset: 0,
                Length: len,
            },
        };
    }
}

/// Issues the send `op` (its WSK_BUF filled under the lock); the caller counts it. True: the
/// send's completion ran before this returned and left its recording to the caller (the
/// slot's [`Handoff`]); false: `send_done` records it (it ran already, or runs later).
///
/// # Safety
/// Called by pump with the right to `op`'s slot, without the lock.
#[inline]
unsafe fn perform_send(c: *mut Conn, op: SendOp) -> bool {
    // SAFETY: live pooled context; the slot is owned by this call per `op`.
    unsafe {
        let sock = (*c).socket;
        // The send, the one call per message, reads only its provider function.
        let send = send_fn(&*c);
        let s = ptr::addr_of_mut!((*c).slots[op.slot % MAX_SLOTS]);
        // Slot IRP idle (its slot was free); buf valid until completion (W14: buffers of a
        // pending call stay valid until it completes).
        irp::arm((*s).irp, send_done, s.cast());
        // From here until the swap below, a completion leaves its recording to this thread
        // (W13: completion routines run in an arbitrary thread or DPC; W12: an IRP may be
        // completed before the call that was handed it returns).
        (*s).handoff.store(Handoff::ISSUING, Ordering::SeqCst);
        // Echo replies go out at once (latency is the point); the source stream may
        // coalesce.
        let flags = if matches!(op.kind, SendKind::Pattern { .. }) {
            0
        } else {
            WSK_FLAG_NODELAY
        };
        if let Some(send) = send {
            let st = send(sock, ptr::addr_of_mut!((*s).buf), flags, (*s).irp);
            // Only this pump owner re-arms a slot's IRP.
            if irp::unfinished((*s).irp, st) {
                irp::complete_unfinished((*s).irp, send_done, s.cast(), st);
            }
        } else {
            irp::fail_unsent((*s).irp, send_done, s.cast());
        }
        (*s).handoff.swap(Handoff::IDLE, Ordering::AcqRel) == Handoff::HANDED
    }
}

/// Performs `w`, any work but a send ([`perform_send`]).
///
/// # Safety
/// Called by pump with the right to `w`'s resources.
unsafe fn perform(c: *mut Conn, w: Work, release_ind: *mut WSK_DATA_INDICATION) {
    // SAFETY: live pooled context; the fields used below are owned by this call per `w`.
    unsafe {
        let sock = (*c).socket;
        let d = ConnOps::of(&*c);
        match w {
            // Issued by perform_send.
            Work::Send(_) => {}
            Work::ResumeReceive => {
                // C5: a zero-length receive resumes indications without taking data (W56:
                // DATA_NOT_ACCEPTED: nothing consumed, no indication until a WskReceive).
                (*c).rx_buf = WSK_BUF {
                    Mdl: ptr::null_mut(),
                    Offset: 0,
                    Length: 0,
                };
                irp::arm((*c).rx_irp, rx_done, c.cast());
                if let Some(recv) = d.WskReceive {
                    let st = recv(sock, ptr::addr_of_mut!((*c).rx_buf), 0, (*c).rx_irp);
                    // Only this pump owner re-arms the receive IRP.
                    if irp::unfinished((*c).rx_irp, st) {
                        irp::complete_unfinished((*c).rx_irp, rx_done, c.cast(), st);
                    }
                } else {
                    irp::fail_unsent((*c).rx_irp, rx_done, c.cast());
                }
            }
            Work::Release { .. } => {
                // Retained with STATUS_PENDING, released exactly once (C3: WskRelease only PENDING
                // lists, exactly once), before close (C4:
                // release every retained list before WskCloseSocket).
                if let Some(rel) = d.WskRelease {
                    rel(sock, release_ind);
                }
            }
            Work::Disconnect { abortive } => {
                let flags = if abortive { WSK_FLAG_ABORTIVE } else { 0 };
                // The disconnect IRP is used once per connection lifetime.
                irp::arm((*c).disc_irp, disc_done, c.cast());
                if let Some(disc) = d.WskDisconnect {
                    let st = disc(sock, ptr::null_mut(), flags, (*c).disc_irp);
                    // The disconnect IRP is armed once per connection.
                    if irp::unfinished((*c).disc_irp, st) {
                        irp::complete_unfinished((*c).disc_irp, disc_done, c.cast(), st);
                    }
                } else {
                    irp::fail_unsent((*c).disc_irp, disc_done, c.cast());
                }
            }
            Work::Close => {
                // Nothing in flight or retained, no call executing (C22, C4); the context
                // stays until close_done (C23: keep the socket context until the close IRP
                // completes).
                let token = (*c).close_entered.token();
                irp::arm((*c).close_irp, close_done, c.cast());
                if let Some(close) = d.WskCloseSocket {
                    let st = close(sock, (*c).close_irp);
                    // A close that completed inline may have recycled the context, and a new
                    // connection on it may have armed close_irp again: the IRP's status alone
                    // cannot tell, the entry count can (it only grows). The context's memory
                    // stays (pooled until unload, which waits for whoever called the pump).
                    // Unchanged: close_done never ran, so nothing recycled the context and its
                    // close IRP is still this close's.
                    //
                    // A close the provider returned final without completing is finished here
                    // with that status, as the rule says (W11: any status but PENDING means the
                    // request is over), not left outstanding: the socket may not be used after
                    // WskCloseSocket whatever it returned (C23, W70), a second close would be a
                    // double close, and a context kept for a completion that never comes holds
                    // the driver's rundown and with it unload for ever. Trusting the return is
                    // all a client can do; the violation is logged.
                    if irp::unfinished_since((*c).close_irp, &(*c).close_entered, token, st) {
                        irp::complete_unfinished((*c).close_irp, close_done, c.cast(), st);
                    }
                } else {
                    irp::fail_unsent((*c).close_irp, close_done, c.cast());
                }
            }
        }
    }
}

/// The provider functions the engine calls on a connected socket, from its category's table
/// (W25: a connection socket's and a stream socket's tables differ in layout).
struct ConnOps {
    WskReceive: wsk_sys::PFN_WSK_RECEIVE,
    WskDisconnect: wsk_sys::PFN_WSK_DISCONNECT,
    WskRelease: wsk_sys::PFN_WSK_RELEASE_DATA_INDICATION_LIST,
    WskCloseSocket: wsk_sys::PFN_WSK_CLOSE_SOCKET,
}

impl ConnOps {
    /// # Safety
    /// `c` has a live socket.
    #[allow(non_snake_case)]
    unsafe fn of(c: &Conn) -> ConnOps {
        // SAFETY: per the caller; provider tables live as long as the capture.
        unsafe {
            if c.stream {
                let d = &*(*c.socket).Dispatch.cast::<WSK_PROVIDER_STREAM_DISPATCH>();
                ConnOps {
                    WskReceive: d.WskReceive,
                    WskDisconnect: d.WskDisconnect,
                    WskRelease: d.WskRelease,
                    WskCloseSocket: d.Basic.WskCloseSocket,
                }
            } else {
                let d = &*(*c.socket)
                    .Dispatch
                    .cast::<WSK_PROVIDER_CONNECTION_DISPATCH>();
                ConnOps {
                    WskReceive: d.WskReceive,
                    WskDisconnect: d.WskDisconnect,
                    WskRelease: d.WskRelease,
                    WskCloseSocket: d.Basic.WskCloseSocket,
                }
            }
        }
    }
}

/// WskSend of `c`'s socket, from its category's table (W25, as [`ConnOps`]).
///
/// # Safety
/// `c` has a live socket.
#[inline]
unsafe fn send_fn(c: &Conn) -> wsk_sys::PFN_WSK_SEND {
    // SAFETY: per the caller; provider tables live as long as the capture.
    unsafe {
        if c.stream {
            (*(*c.socket).Dispatch.cast::<WSK_PROVIDER_STREAM_DISPATCH>()).WskSend
        } else {
            (*(*c.socket)
                .Dispatch
                .cast::<WSK_PROVIDER_CONNECTION_DISPATCH>())
            .WskSend
        }
    }
}

/// Who records a send's completion, per use of its slot (`SendSlot::handoff`): one atomic swap
/// on each side decides, so exactly one of the two records it, whichever thread the
/// completion runs on and whenever it runs (W12, W13). Nothing is inferred from time.
pub(super) struct Handoff;

impl Handoff {
    /// No send call in progress: the completion routine records the completion itself.
    pub(super) const IDLE: u8 = 0;
    /// The pump is inside the WskSend call it handed this slot's IRP.
    pub(super) const ISSUING: u8 = 1;
    /// The completion ran during that call and left its recording to the pump.
    pub(super) const HANDED: u8 = 2;
}

/// Send completion. IRQL <= DISPATCH_LEVEL, any thread (W13), possibly before the WskSend it
/// belongs to has returned (W12).
///
/// The common case on a fast path, a send completing inside its own WskSend call, costs one
/// swap here: the pump owner that is still in that call records the completion in the
/// critical section it takes again after the call anyway (one lock round trip per message
/// instead of two). Until it does, the IRP stays counted in TcpState, so nothing closes or
/// recycles the context; the result stays in the IRP, which nobody re-arms before then.
unsafe extern "win64" fn send_done(_dev: PDEVICE_OBJECT, irp: PIRP, ctx: PVOID) -> NTSTATUS {
    let s = ctx.cast::<SendSlot>();
    // SAFETY: ctx is the SendSlot armed with this IRP, in pooled memory (live while its IRP is
    // counted).
    if unsafe { &(*s).handoff }.swap(Handoff::HANDED, Ordering::AcqRel) == Handoff::ISSUING {
        return irp::routine_return();
    }
    // SAFETY: as above; the pump has left the call, so this routine records the completion.
    unsafe { send_done_locked(s, irp) };
    irp::routine_return()
}

/// [`send_done`] when the pump has left the send call: counts the result and records the
/// completion under the lock, then pumps or recycles in that critical section. IRQL <=
/// DISPATCH_LEVEL (the routine's).
///
/// Out of line and win64 like its caller, so that the routine's fast path saves nothing: a
/// call from a win64 function into the host's own ABI makes the caller save ten XMM registers
/// on every entry (a cost only the host build has; the image is win64 throughout).
///
/// # Safety
/// `s` is the slot armed with the completed `irp`, from its completion routine.
#[inline(never)]
unsafe extern "win64" fn send_done_locked(s: *mut SendSlot, irp: PIRP) {
    // SAFETY: per the caller; the Conn is pooled memory.
    let (c, idx) = unsafe { ((*s).conn, (*s).idx) };
    // SAFETY: pooled context.
    let r = unsafe { &*c };
    // Read once: this count and those of the sends the pump below may issue.
    let cpu = DataPath::cpu();
    // SAFETY: completed IRP.
    let ok = unsafe { count_send_result(r, irp, cpu, None) };
    let mut state = r.state.lock();
    state.send_complete(idx, ok);
    let last = state.recyclable();
    // SAFETY: live pooled context, its lock held by `state` since the completion was recorded.
    unsafe { complete_tail(c, state, last, Some(cpu)) };
}

/// Counts a completed send's result (bytes out, or a send error) and tells a paced client, on
/// CPU `cpu`, before the completion is recorded under the lock; true: it succeeded. `issued`:
/// the send's kind, when the pump that issued it counts the send too, in the same step (each
/// arm names its counters, so their indexes are constants).
///
/// # Safety
/// `irp` is `r`'s completed send IRP, not re-armed yet.
#[inline]
unsafe fn count_send_result(r: &Conn, irp: PIRP, cpu: usize, issued: Option<SendKind>) -> bool {
    // SAFETY: per the caller.
    let (status, info) = unsafe { irp::result(irp) };
    let drv = r.drv();
    let ok = NT_SUCCESS(status);
    let slot = r.stats_slot;
    let out = info as u64;
    match (issued, ok) {
        (Some(SendKind::Ring { .. }), true) => drv.count2_service_at(
            cpu,
            slot,
            (Counter::CopySends, 1),
            (Counter::TcpBytesOut, out),
        ),
        (Some(SendKind::ZeroCopy), true) => drv.count2_service_at(
            cpu,
            slot,
            (Counter::ZeroCopySends, 1),
            (Counter::TcpBytesOut, out),
        ),
        (_, true) => drv.count_service_at(cpu, slot, Counter::TcpBytesOut, out),
        (_, false) => {
            match issued {
                Some(SendKind::Ring { .. }) => {
                    drv.count_service_at(cpu, slot, Counter::CopySends, 1);
                }
                Some(SendKind::ZeroCopy) => {
                    drv.count_service_at(cpu, slot, Counter::ZeroCopySends, 1);
                }
                _ => {}
            }
            drv.count_service_at(cpu, slot, Counter::SendErrors, 1);
        }
    }
    if ok {
        if let Some(client) = r.client {
            (client.sent)(r, info);
        }
    }
    ok
}

/// The tail a send, resume or disconnect completion shares, once it has recorded its result
/// under the connection's lock (`state`). `last`: the close has completed and this was the last
/// IRP (W70 orders nothing: the close may complete before IRPs it cancelled): the context
/// goes back to the pool. Otherwise the pump is entered in the same critical section: once
/// this IRP is no longer counted, only the pump ownership keeps the context from being closed
/// and recycled by another CPU (C12: no new WSK call from a completion routine: the pump
/// loops, it does not recurse).
///
/// # Safety
/// `c` is a live pooled context and `state` its lock's guard.
unsafe fn complete_tail(
    c: *mut Conn,
    state: SpinGuard<'_, TcpState>,
    last: bool,
    cpu: Option<usize>,
) {
    if last {
        drop(state);
        // SAFETY: no IRP of the context is outstanding any more; nothing else references it.
        unsafe { recycle(c) };
    } else {
        // SAFETY: per the caller.
        unsafe { pump_locked_at(c, state, cpu) };
    }
}

/// Zero-length resume receive completion. IRQL <= DISPATCH_LEVEL.
unsafe extern "win64" fn rx_done(_dev: PDEVICE_OBJECT, irp: PIRP, ctx: PVOID) -> NTSTATUS {
    let c = ctx.cast::<Conn>();
    // SAFETY: completed IRP; pooled context.
    let (status, info) = unsafe { irp::result(irp) };
    // SAFETY: pooled context, kept out of the pool while this IRP is outstanding.
    let mut state = unsafe { &*c }.state.lock();
    state.resume_complete(NT_SUCCESS(status), info);
    let last = state.recyclable();
    // SAFETY: live pooled context, its lock held by `state` since the completion was recorded.
    unsafe { complete_tail(c, state, last, None) };
    irp::routine_return()
}

/// Disconnect completion. IRQL <= DISPATCH_LEVEL.
unsafe extern "win64" fn disc_done(_dev: PDEVICE_OBJECT, irp: PIRP, ctx: PVOID) -> NTSTATUS {
    let c = ctx.cast::<Conn>();
    // SAFETY: completed IRP.
    let (status, _) = unsafe { irp::result(irp) };
    // SAFETY: pooled context, kept out of the pool while this IRP is outstanding.
    let mut state = unsafe { &*c }.state.lock();
    let last = state.disconnect_complete(NT_SUCCESS(status));
    // SAFETY: live pooled context, its lock held by `state` since the completion was recorded.
    unsafe { complete_tail(c, state, last, None) };
    irp::routine_return()
}

/// Close completion: the socket is gone, no callback follows (W70). IRQL <= DISPATCH_LEVEL.
unsafe extern "win64" fn close_done(_dev: PDEVICE_OBJECT, _irp: PIRP, ctx: PVOID) -> NTSTATUS {
    let c = ctx.cast::<Conn>();
    // First act: the close's caller may be checking for W11 (Completions).
    // SAFETY: pooled context.
    unsafe { &*c }.close_entered.entered();
    // SAFETY: pooled context.
    if unsafe { &*c }.state.lock().close_complete() {
        // SAFETY: no IRP of the context is outstanding any more.
        unsafe { recycle(c) };
    }
    irp::routine_return()
}

/// Returns a closed context to the pool and drops its rundown reference as the very last act
/// (C30). Called by whichever completion (the close's, or a send, resume, disconnect or query
/// the close cancelled) finds the close completed and no IRP outstanding
/// (`TcpState::recyclable`, counted under the lock, so exactly one does).
///
/// # Safety
/// The socket is closed and no IRP of the context is outstanding.
pub(super) unsafe fn recycle(c: *mut Conn) {
    // SAFETY: per the caller, no other thread uses the context now.
    let r = unsafe { &mut *c };
    // SAFETY: driver state outlives the rundown.
    let drv = unsafe { &*r.drv };
    if r.client.is_none() {
        drv.count_service(r.stats_slot, Counter::ConnClosed, 1);
    }
    let anomalies = r.state.lock().anomalies;
    if anomalies > 0 {
        drv.count(Counter::InternalErrors, u64::from(anomalies));
    }
    r.live.store(false, Ordering::SeqCst);
    r.client = None;
    r.socket = ptr::null_mut();
    drv.conns.put(r);
    // SAFETY: acquired in attach.
    unsafe { ExReleaseRundownProtection(ptr::addr_of!(drv.rundown).cast_mut()) };
}
