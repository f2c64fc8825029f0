//! A client written for the kind order the sim used to show, for proving that each unkind
//! ordering setting is exercised: it keeps one connection context whose lifetime it ties
//! to an order the WSK docs do not promise. It never really frees anything (a "freed" flag
//! stands in), so a wrong order is counted, not undefined behaviour.

use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};

use wsk_sys::*;

use super::{conn_d, sync_call, v4, PoolBuf, Wsk};

/// A connection context as a naive driver keeps it.
pub struct Ctx {
    /// Cleared where the naive driver would free the context.
    pub alive: AtomicBool,
    /// Set by the issuing thread once its call has returned STATUS_PENDING; the naive
    /// driver's completion routine expects it.
    pub issued: AtomicBool,
    /// Completion routines that ran on a "freed" context, or before their call returned.
    pub wrong_order: AtomicUsize,
    /// Completion routines that ran.
    pub completed: AtomicUsize,
    /// The connection (for the receive callback's reply).
    pub socket: AtomicUsize,
    /// What the receive callback sends back.
    pub reply: AtomicPtr<WSK_BUF>,
    /// Replies whose completion ran while the receive callback that sent them still ran.
    pub completed_in_callback: AtomicUsize,
    /// Receive callbacks that ran.
    pub receives: AtomicUsize,
    /// A completion routine of the context is running (the naive client assumes they run one
    /// at a time).
    pub in_routine: AtomicBool,
    /// Completion routines that found another one of the context running.
    pub overlapped: AtomicUsize,
}

impl Ctx {
    pub fn new() -> Box<Ctx> {
        Box::new(Ctx {
            alive: AtomicBool::new(true),
            issued: AtomicBool::new(false),
            wrong_order: AtomicUsize::new(0),
            completed: AtomicUsize::new(0),
            socket: AtomicUsize::new(0),
            reply: AtomicPtr::new(null_mut()),
            completed_in_callback: AtomicUsize::new(0),
            receives: AtomicUsize::new(0),
            in_routine: AtomicBool::new(false),
            overlapped: AtomicUsize::new(0),
        })
    }
}

/// A data IRP's completion: touches the context (wrong if the close already "freed" it).
unsafe extern "win64" fn data_done(_d: PDEVICE_OBJECT, irp: PIRP, c: PVOID) -> NTSTATUS {
    // SAFETY: `c` is the test's Ctx, alive for the whole test.
    let ctx = unsafe { &*c.cast::<Ctx>() };
    if !ctx.alive.load(Ordering::SeqCst) {
        ctx.wrong_order.fetch_add(1, Ordering::SeqCst);
    }
    // SAFETY: the IRP is ours again (STATUS_MORE_PROCESSING_REQUIRED below).
    unsafe { IoFreeIrp(irp) };
    ctx.completed.fetch_add(1, Ordering::SeqCst);
    STATUS_MORE_PROCESSING_REQUIRED
}

/// The close's completion: the naive driver frees the context here.
unsafe extern "win64" fn close_done(_d: PDEVICE_OBJECT, irp: PIRP, c: PVOID) -> NTSTATUS {
    // SAFETY: as in data_done.
    let ctx = unsafe { &*c.cast::<Ctx>() };
    ctx.alive.store(false, Ordering::SeqCst);
    // SAFETY: as in data_done.
    unsafe { IoFreeIrp(irp) };
    ctx.completed.fetch_add(1, Ordering::SeqCst);
    STATUS_MORE_PROCESSING_REQUIRED
}

/// A completion that expects its call to have returned first (state the issuing thread
/// sets after the call, read in the routine).
unsafe extern "win64" fn after_return_done(_d: PDEVICE_OBJECT, irp: PIRP, c: PVOID) -> NTSTATUS {
    // SAFETY: as in data_done.
    let ctx = unsafe { &*c.cast::<Ctx>() };
    // SAFETY: the IRP is complete; read its PendingReturned before freeing it.
    let pended = unsafe { (*irp).PendingReturned } != 0;
    if pended && !ctx.issued.load(Ordering::SeqCst) {
        ctx.wrong_order.fetch_add(1, Ordering::SeqCst);
    }
    // SAFETY: as in data_done.
    unsafe { IoFreeIrp(irp) };
    ctx.completed.fetch_add(1, Ordering::SeqCst);
    STATUS_MORE_PROCESSING_REQUIRED
}

/// A completion that updates the context as if no other completion routine of the socket
/// could run meanwhile (the kind order: one thread delivers them): it holds the context for
/// 2 ms and counts another routine found inside.
unsafe extern "win64" fn serial_done(_d: PDEVICE_OBJECT, irp: PIRP, c: PVOID) -> NTSTATUS {
    // SAFETY: as in data_done.
    let ctx = unsafe { &*c.cast::<Ctx>() };
    if ctx.in_routine.swap(true, Ordering::SeqCst) {
        ctx.overlapped.fetch_add(1, Ordering::SeqCst);
    }
    std::thread::sleep(std::time::Duration::from_millis(2));
    ctx.in_routine.store(false, Ordering::SeqCst);
    // SAFETY: as in data_done.
    unsafe { IoFreeIrp(irp) };
    ctx.completed.fetch_add(1, Ordering::SeqCst);
    STATUS_MORE_PROCESSING_REQUIRED
}

/// WskGetLocalAddress of the connection `s` into `out`, whose completion assumes it runs
/// alone (see `serial_done`).
pub fn local_address_serial(s: PWSK_SOCKET, out: &mut SOCKADDR_IN, ctx: &Ctx) -> NTSTATUS {
    let irp = irp_with(serial_done, ctx);
    // SAFETY: connection socket; `out` outlives the IRP (the test waits for it).
    unsafe { (conn_d(s).WskGetLocalAddress.unwrap())(s, std::ptr::from_mut(out).cast(), irp) }
}

type Routine = unsafe extern "win64" fn(PDEVICE_OBJECT, PIRP, PVOID) -> NTSTATUS;

fn irp_with(routine: Routine, ctx: &Ctx) -> PIRP {
    // SAFETY: a fresh one-location IRP with the routine for success, error and cancel.
    unsafe {
        let irp = IoAllocateIrp(1, FALSE);
        assert!(!irp.is_null());
        IoSetCompletionRoutine(
            irp,
            Some(routine),
            std::ptr::from_ref(ctx).cast_mut().cast(),
            true,
            true,
            true,
        );
        irp
    }
}

/// Posts a WskReceive into `buf` that stays pending (the peer sends nothing).
pub fn post_receive(s: PWSK_SOCKET, buf: &PoolBuf, ctx: &Ctx) -> NTSTATUS {
    let mut wb = buf.wsk_buf();
    let irp = irp_with(data_done, ctx);
    // SAFETY: connection socket; the buffer outlives the IRP (the test waits for it).
    unsafe { (conn_d(s).WskReceive.unwrap())(s, &raw mut wb, 0, irp) }
}

/// Starts a graceful WskDisconnect.
pub fn disconnect(s: PWSK_SOCKET, ctx: &Ctx) -> NTSTATUS {
    let irp = irp_with(data_done, ctx);
    // SAFETY: connection socket, no final buffer.
    unsafe { (conn_d(s).WskDisconnect.unwrap())(s, null_mut(), 0, irp) }
}

/// WskCloseSocket whose completion "frees" the context.
pub fn close(s: PWSK_SOCKET, ctx: &Ctx) -> NTSTATUS {
    let irp = irp_with(close_done, ctx);
    // SAFETY: a socket of the test.
    unsafe { (conn_d(s).Basic.WskCloseSocket.unwrap())(s, irp) }
}

/// WskSend of `buf`; the issuing thread marks `issued` after the call returns, and the
/// completion counts a wrong order if it ran first although the call pended.
pub fn send_then_mark(s: PWSK_SOCKET, buf: &PoolBuf, ctx: &Ctx) -> NTSTATUS {
    let mut wb = buf.wsk_buf();
    let irp = irp_with(after_return_done, ctx);
    ctx.issued.store(false, Ordering::SeqCst);
    // SAFETY: connection socket; the buffer outlives the IRP (the test waits for it).
    let st = unsafe { (conn_d(s).WskSend.unwrap())(s, &raw mut wb, 0, irp) };
    ctx.issued.store(true, Ordering::SeqCst);
    st
}

/// The naive client's connection callbacks: only WskReceiveEvent.
pub static CONN: WSK_CLIENT_CONNECTION_DISPATCH = WSK_CLIENT_CONNECTION_DISPATCH {
    WskReceiveEvent: Some(receive),
    WskDisconnectEvent: None,
    WskSendBacklogEvent: None,
};

/// WskReceiveEvent (PASSIVE in these tests): accepts the data, sends `reply` with its own
/// IRP, and goes on using the connection for 80 ms as if no completion of this socket could
/// run before it returns (the kind order), counting it when one did.
unsafe extern "win64" fn receive(
    c: PVOID,
    _flags: ULONG,
    ind: PWSK_DATA_INDICATION,
    _bytes: SIZE_T,
    _accepted: *mut SIZE_T,
) -> NTSTATUS {
    if ind.is_null() {
        return STATUS_SUCCESS;
    }
    // SAFETY: `c` is the test's Ctx, alive for the whole test.
    let ctx = unsafe { &*c.cast::<Ctx>() };
    ctx.receives.fetch_add(1, Ordering::SeqCst);
    let s = ctx.socket.load(Ordering::SeqCst) as PWSK_SOCKET;
    let before = ctx.completed.load(Ordering::SeqCst);
    let irp = irp_with(data_done, ctx);
    // SAFETY: connection socket; the reply buffer outlives the test's connection.
    unsafe { (conn_d(s).WskSend.unwrap())(s, ctx.reply.load(Ordering::SeqCst), 0, irp) };
    std::thread::sleep(std::time::Duration::from_millis(80));
    if ctx.completed.load(Ordering::SeqCst) > before {
        ctx.completed_in_callback.fetch_add(1, Ordering::SeqCst);
    }
    STATUS_SUCCESS
}

/// WskSocketConnect to 127.0.0.1:`port` with `ctx` and the naive callbacks; the socket
/// goes into `ctx.socket`.
pub fn connect(wsk: &Wsk, port: u16, ctx: &Ctx) -> PWSK_SOCKET {
    let f = wsk.dispatch().WskSocketConnect.expect("WskSocketConnect");
    let mut local = v4([127, 0, 0, 1], 0);
    let mut remote = v4([127, 0, 0, 1], port);
    let d = sync_call(|irp| {
        // SAFETY: valid arguments per PFN_WSK_SOCKET_CONNECT; the addresses outlive the call.
        unsafe {
            f(
                wsk.npi.Client,
                SOCK_STREAM,
                IPPROTO_TCP,
                (&raw mut local).cast(),
                (&raw mut remote).cast(),
                0,
                std::ptr::from_ref(ctx).cast_mut().cast(),
                &raw const CONN,
                null_mut(),
                null_mut(),
                null_mut(),
                irp,
            )
        }
    });
    assert_eq!(d.status, STATUS_SUCCESS, "{d:?}");
    ctx.socket.store(d.info, Ordering::SeqCst);
    d.info as PWSK_SOCKET
}
