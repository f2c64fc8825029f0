//! The load job's TCP client: connections made with WskSocketConnect (or, for a job that asks
//! for them, stream sockets: WskSocket + WskBind + WskConnect), run on the served connections'
//! engine (`conn`) with this room's [`HOOKS`]: pacing from the job's ticket budget, the
//! job's counters, and the echo check against the source pattern.

use core::net::SocketAddr;
use core::ptr;
use core::sync::atomic::Ordering;

use control::protocol::pattern;
use wsk_sys::{
    IoCancelIrp, AF_INET, AF_INET6, IPPROTO_TCP, NTSTATUS, NT_SUCCESS, PDEVICE_OBJECT, PIRP, PVOID,
    SOCK_STREAM, STATUS_CANCELLED, STATUS_INSUFFICIENT_RESOURCES, STATUS_NOT_SUPPORTED,
    WSK_CLIENT_STREAM_DISPATCH, WSK_DATA_INDICATION, WSK_EVENT_DISCONNECT, WSK_EVENT_RECEIVE,
    WSK_FLAG_STREAM_SOCKET, WSK_PROVIDER_STREAM_DISPATCH, WSK_SOCKET,
};

use crate::conn::{self, ClientHooks, Conn};
use crate::datapath::DataPath;
use crate::kernel::irp;
use crate::logic::tcp::Mode;
use crate::stats::Counter;
use crate::wsk::addr::{wildcard_for, SockAddrBuf};
use crate::wsk::{enable_events, mdl};

/// What a load-job connection adds to the connection engine.
static HOOKS: ClientHooks = ClientHooks {
    take_ticket: |d| d.job.take_ticket(),
    sent,
    received: client_rx,
};

/// A connection of the load job (not a served one, not another client's).
pub(super) fn is_job(c: &Conn) -> bool {
    c.client.is_some_and(|h| ptr::eq(h, ptr::addr_of!(HOOKS)))
}

/// A send of the job completed with `bytes`. IRQL <= DISPATCH_LEVEL.
fn sent(c: &Conn, bytes: usize) {
    // SAFETY: the driver state outlives every connection.
    let d = unsafe { &*c.drv };
    d.job.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
    if matches!(c.state.lock().mode, Mode::EchoClient { .. }) {
        d.job.messages_sent.fetch_add(1, Ordering::Relaxed);
    }
}

pub(super) unsafe fn connect_one(
    d: &DataPath,
    remote: SocketAddr,
    mode: Mode,
    msg: usize,
    paced: bool,
    stream: bool,
) -> Result<(), NTSTATUS> {
    // SAFETY: attach with no socket yet: the context is ours until published below.
    let c =
        unsafe { Conn::attach_outbound(d, mode, &HOOKS) }.ok_or(STATUS_INSUFFICIENT_RESOURCES)?;
    {
        // SAFETY: not yet published: ours alone.
        let mut state = unsafe { &*c }.state.lock();
        state.client.paced = paced;
        state.client.tickets = 0;
        if mode == Mode::Source && paced {
            // A source "message" is one send of about message_size bytes (a multiple of the
            // pattern period, so the stream stays continuous).
            state.set_max_send(msg);
        }
    }
    if stream {
        // SAFETY: c is ours, not yet published.
        return unsafe { stream_socket(d, c, remote) };
    }
    let Some(sc) = d.provider().WskSocketConnect else {
        // SAFETY: never published.
        unsafe { conn::release_unconnected(c) };
        return Err(STATUS_NOT_SUPPORTED);
    };
    // SAFETY: c is ours; the address buffers live in the context until the IRP completes.
    unsafe {
        (*c).local = SockAddrBuf::from_socket_addr(wildcard_for(remote));
        (*c).remote = SockAddrBuf::from_socket_addr(remote);
        // From here a stop may cancel the connect (the job is not stopping: the control path
        // that starts it is the one that would stop it).
        (*c).state.lock().client.connect_out = true;
        let token = (*c).chain_entered.token();
        irp::arm((*c).rx_irp, connect_done, c.cast());
        let st = sc(
            d.provider.Client,
            SOCK_STREAM,
            IPPROTO_TCP,
            (*c).local.as_sockaddr(),
            (*c).remote.as_sockaddr(),
            0,
            c.cast(),
            conn::dispatch(),
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            (*c).rx_irp,
        );
        // SAFETY: the context is pooled memory; see finish_unfinished.
        finish_unfinished(c, token, st, connect_done);
    }
    Ok(())
}

/// A connect-chain call on the context's `rx_irp` returned `returned`: if the provider returned
/// a final status without completing the IRP (W11: SUCCESS/failure: the IRP is complete; PENDING:
/// it completes later broken, as Wine's netio.sys does for the functions it lacks), the step's
/// routine runs here with that status, logged, so the chain ends (or goes on) as if the provider
/// had completed it, every count kept (the context's rundown, ROUTINES). The IRP's status alone
/// cannot tell: a step that completed inline re-arms the same IRP for the next one (or recycles the
/// context) before this call returns; the entry count (`Conn::chain_entered`, read into `token`
/// before the call) can. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `c` is the job's pooled context (its memory lives until the pool is freed, after every
/// caller of this room has returned); `routine` is the one armed for the call.
unsafe fn finish_unfinished(
    c: *mut Conn,
    token: u32,
    returned: NTSTATUS,
    routine: irp::Completion,
) {
    // SAFETY: per the caller; unchanged count: the step never completed, the IRP and the
    // context are still this step's.
    unsafe {
        if irp::unfinished_since((*c).rx_irp, &(*c).chain_entered, token, returned) {
            irp::complete_unfinished((*c).rx_irp, routine, c.cast(), returned);
        }
    }
}

/// A stream socket's client table: only its connection role is used (Windows 10 1703+).
#[repr(transparent)]
#[allow(dead_code)] // read by WSK through the pointer handed to WskSocket
struct StreamDispatch(WSK_CLIENT_STREAM_DISPATCH);
// SAFETY: a null pointer and a pointer to an immutable static.
unsafe impl Sync for StreamDispatch {}
static STREAM_DISPATCH: StreamDispatch = StreamDispatch(WSK_CLIENT_STREAM_DISPATCH {
    Listen: ptr::null(),
    Connect: ptr::addr_of!(conn::CONN_DISPATCH),
});

/// Starts the stream-socket chain WskSocket(STREAM) -> WskBind(wildcard) -> WskConnect(remote),
/// each step issued from the previous one's completion on the context's receive IRP (idle
/// until the connection is up) with the addresses in the context (valid until completion,
/// W14: buffers of a pending call stay valid until it completes). Never waits: the housekeeper
/// thread that starts the job is not held by a slow peer.
///
/// # Safety
/// `c` attached for this job, not published.
unsafe fn stream_socket(d: &DataPath, c: *mut Conn, remote: SocketAddr) -> Result<(), NTSTATUS> {
    // SAFETY: a captured provider's dispatch table.
    let Some(ws) = (unsafe { (*d.provider.Dispatch).WskSocket }) else {
        // SAFETY: never published.
        unsafe { conn::release_unconnected(c) };
        return Err(STATUS_NOT_SUPPORTED);
    };
    let family = if remote.is_ipv4() { AF_INET } else { AF_INET6 };
    // SAFETY: c is ours; the context and the static dispatch outlive the socket (C24: static
    // callbacks: the context is complete before WskBind).
    unsafe {
        (*c).stream = true;
        (*c).local = SockAddrBuf::from_socket_addr(wildcard_for(remote));
        (*c).remote = SockAddrBuf::from_socket_addr(remote);
        (*c).state.lock().client.connect_out = true;
        let token = (*c).chain_entered.token();
        irp::arm((*c).rx_irp, stream_created, c.cast());
        let st = ws(
            d.provider.Client,
            family,
            SOCK_STREAM,
            IPPROTO_TCP,
            WSK_FLAG_STREAM_SOCKET,
            c.cast(),
            ptr::addr_of!(STREAM_DISPATCH).cast(),
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
            (*c).rx_irp,
        );
        finish_unfinished(c, token, st, stream_created);
    }
    Ok(())
}

/// A connect step failed (either style): counted as the job's connect failure, unless it is
/// our own cancel of a stopping job's connect.
fn connect_failed(d: &DataPath, status: NTSTATUS) {
    if status == STATUS_CANCELLED && stopping(d) {
        // Our own cancel (cancel_connects): the job was stopped, the connect did not fail.
        return;
    }
    d.job.connect_failures.fetch_add(1, Ordering::SeqCst);
    d.job.fail(status);
    d.count(Counter::OutboundFailures, 1);
}

/// The job is stopping (job stop or unload): no new connect step starts.
fn stopping(d: &DataPath) -> bool {
    d.stopping.load(Ordering::SeqCst) || d.job.stop_requested.load(Ordering::SeqCst)
}

/// The next connect step may start: its IRP is WSK's from now until its completion, for
/// [`cancel_connects`] to cancel. False (nothing marked) when the job is stopping: the step is
/// not made. Checked and marked under the context lock, the lock the canceller looks under, so
/// a step either sees the stop or is seen by the canceller. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `c` is the job's context, its connect chain between steps.
unsafe fn step_begin(d: &DataPath, c: *mut Conn) -> bool {
    // SAFETY: per the caller.
    let mut state = unsafe { &*c }.state.lock();
    if stopping(d) {
        return false;
    }
    state.client.connect_out = true;
    true
}

/// A connect step's IRP completed: nothing of the chain is WSK's to cancel any more.
///
/// # Safety
/// `c` is the job's context (in the step's completion routine).
unsafe fn step_done(c: *mut Conn) {
    // SAFETY: per the caller.
    unsafe { &*c }.state.lock().client.connect_out = false;
}

/// A connect ended without a socket: the context goes back to the pool, unless a canceller is
/// inside IoCancelIrp on its IRP (then the last canceller out gives it back: the IRP must not
/// be re-armed for another connection under its cancel). IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// No socket exists for `c`; its connect IRP has completed.
unsafe fn release_or_defer(c: *mut Conn) {
    let deferred = {
        // SAFETY: per the caller.
        let mut state = unsafe { &*c }.state.lock();
        if state.client.cancelling > 0 {
            state.client.release_deferred = true;
        }
        state.client.cancelling > 0
    };
    if !deferred {
        // SAFETY: per the caller; nobody else holds it.
        unsafe { conn::release_unconnected(c) };
    }
}

/// Cancels the connect IRP of every job connection still connecting: a
/// connect to an address that never answers would otherwise hold a job stop, and unload's
/// rundown wait, for TCP's SYN retries (about 21 s on Windows) or for ever. The IRP completes
/// with STATUS_CANCELLED (W76: a pending WSK IRP may be cancelled with IoCancelIrp), the step's
/// completion sees the stop and ends the chain. While IoCancelIrp runs the canceller counts as an
/// executing call and as a canceller, so the context is neither closed nor recycled (nor its IRP
/// re-armed for someone else) under it.
///
/// A step may arm its IRP after the look below and before its call reaches WSK, where the
/// cancel finds nothing; the housekeeper repeats this every tick while the job stops.
/// PASSIVE_LEVEL (control path, housekeeper, unload).
pub(super) fn cancel_connects(d: &DataPath) {
    let pool = &d.conns;
    for i in 0..pool.n {
        // SAFETY: i < n; contexts live until the pool is freed.
        let c = unsafe { *pool.conns.add(i) };
        // SAFETY: pooled context.
        let r = unsafe { &*c };
        let go = {
            let mut state = r.state.lock();
            let go = r.live.load(Ordering::Relaxed)
                && is_job(r)
                && r.socket.is_null()
                && state.client.connect_out;
            if go {
                state.client.cancelling += 1;
                state.call_begin();
            }
            go
        };
        if !go {
            continue;
        }
        // SAFETY: the context's own IRP, never freed while the pool lives; a completion that
        // comes first leaves it ours and idle (cancelling a completed IRP does nothing).
        unsafe { IoCancelIrp(r.rx_irp) };
        let mut state = r.state.lock();
        state.call_returned();
        state.client.cancelling -= 1;
        let release = state.client.cancelling == 0 && state.client.release_deferred;
        if release {
            state.client.release_deferred = false;
            drop(state);
            // SAFETY: the connect ended without a socket and left it to us.
            unsafe { conn::release_unconnected(c) };
        } else {
            // A close held back by us goes out; entered in the critical section that ended
            // our call (after the unlock the context may be closed and recycled). Nothing
            // happens while the socket is unpublished.
            // SAFETY: pooled context, its lock held by `state`.
            unsafe { conn::pump_locked(c, state) };
        }
    }
}

/// A stream socket exists but will not connect: published and aborted, so the engine closes
/// it and recycles the context when the close (and every IRP) has come back.
///
/// # Safety
/// `c`'s connect chain owns `sock` and has no IRP out.
unsafe fn stream_abandon(c: *mut Conn, sock: *mut WSK_SOCKET) {
    // SAFETY: per the caller.
    unsafe {
        (*c).connecting = ptr::null_mut();
        // Published, aborted and pumped in one critical section: from its unlock on another
        // CPU may close and recycle the context.
        let mut state = (*c).state.lock();
        (*c).socket = sock;
        state.abort();
        conn::pump_locked(c, state);
    }
}

/// Makes one call of the connect chain on the chain's socket, counted as executing (C22: no call
/// may be running at close): its completion may run inline and end the chain (a failure publishes
/// and aborts the socket), and the close that follows must wait until this call has returned. IRQL
/// <= DISPATCH_LEVEL.
///
/// # Safety
/// `c` is the job's context, its chain owning the socket `call` uses.
unsafe fn chain_call(c: *mut Conn, call: impl FnOnce()) {
    // SAFETY: per the caller; the context cannot be recycled while a call is counted.
    let r = unsafe { &*c };
    r.state.lock().call_begin();
    call();
    let mut state = r.state.lock();
    state.call_returned();
    // A close held back by this call, or the connection's first sends, go out now (nothing
    // while the socket is unpublished), entered before the unlock that ends our hold.
    // SAFETY: pooled context, its lock held by `state`.
    unsafe { conn::pump_locked(c, state) };
}

/// WskSocket(STREAM) completion: bind to the wildcard next. IRQL <= DISPATCH_LEVEL.
unsafe extern "win64" fn stream_created(_dev: PDEVICE_OBJECT, irp: PIRP, ctx: PVOID) -> NTSTATUS {
    let c = ctx.cast::<Conn>();
    // First act: the call that handed the IRP over may be checking for W11.
    // SAFETY: pooled context.
    unsafe { &*c }.chain_entered.entered();
    // SAFETY: pooled context.
    unsafe { step_done(c) };
    // SAFETY: completed IRP; pooled context.
    let (status, info) = unsafe { irp::result(irp) };
    // SAFETY: pooled context.
    let d = unsafe { &*(*c).drv };
    if !NT_SUCCESS(status) {
        connect_failed(d, status);
        // SAFETY: no socket exists (C19: Information is a socket only on success).
        unsafe { release_or_defer(c) };
        return irp::routine_return();
    }
    let sock = info as *mut WSK_SOCKET;
    // SAFETY: a stream socket's table (W25: the dispatch table must match the socket's category);
    // the address lives in the context; the IRP is ours again and re-armed for this step (C18: IRPs
    // with a stack location, reused with IoReuseIrp).
    unsafe {
        (*c).connecting = sock;
        let t = &*(*sock).Dispatch.cast::<WSK_PROVIDER_STREAM_DISPATCH>();
        if !step_begin(d, c) {
            // Stopping: no bind; the engine closes the socket.
            stream_abandon(c, sock);
        } else if let Some(bind) = t.WskBind {
            let token = (*c).chain_entered.token();
            irp::arm(irp, stream_bound, c.cast());
            chain_call(c, || {
                let st = bind(sock, (*c).local.as_sockaddr(), 0, irp);
                finish_unfinished(c, token, st, stream_bound);
            });
        } else {
            connect_failed(d, STATUS_NOT_SUPPORTED);
            stream_abandon(c, sock);
        }
    }
    irp::routine_return()
}

/// WskBind completion: connect next. IRQL <= DISPATCH_LEVEL.
unsafe extern "win64" fn stream_bound(_dev: PDEVICE_OBJECT, irp: PIRP, ctx: PVOID) -> NTSTATUS {
    let c = ctx.cast::<Conn>();
    // First act: the call that handed the IRP over may be checking for W11.
    // SAFETY: pooled context.
    unsafe { &*c }.chain_entered.entered();
    // SAFETY: pooled context.
    unsafe { step_done(c) };
    // SAFETY: completed IRP; pooled context whose chain holds the socket.
    let (status, _) = unsafe { irp::result(irp) };
    // SAFETY: as above.
    let (d, sock) = unsafe { (&*(*c).drv, (*c).connecting) };
    // SAFETY: as in stream_created.
    unsafe {
        let t = &*(*sock).Dispatch.cast::<WSK_PROVIDER_STREAM_DISPATCH>();
        match t.WskConnect {
            Some(_) if NT_SUCCESS(status) && !step_begin(d, c) => {
                // Stopping: no connect; the engine closes the socket.
                stream_abandon(c, sock);
            }
            Some(connect) if NT_SUCCESS(status) => {
                let token = (*c).chain_entered.token();
                irp::arm(irp, stream_connected, c.cast());
                chain_call(c, || {
                    let st = connect(sock, (*c).remote.as_sockaddr(), 0, irp);
                    finish_unfinished(c, token, st, stream_connected);
                });
            }
            _ => {
                connect_failed(
                    d,
                    if NT_SUCCESS(status) {
                        STATUS_NOT_SUPPORTED
                    } else {
                        status
                    },
                );
                stream_abandon(c, sock);
            }
        }
    }
    irp::routine_return()
}

/// WskConnect completion: the connection runs as any other. IRQL <= DISPATCH_LEVEL.
unsafe extern "win64" fn stream_connected(_dev: PDEVICE_OBJECT, irp: PIRP, ctx: PVOID) -> NTSTATUS {
    let c = ctx.cast::<Conn>();
    // First act: the call that handed the IRP over may be checking for W11.
    // SAFETY: pooled context.
    unsafe { &*c }.chain_entered.entered();
    // SAFETY: pooled context.
    unsafe { step_done(c) };
    // SAFETY: completed IRP; pooled context whose chain holds the socket.
    let (status, _) = unsafe { irp::result(irp) };
    // SAFETY: as above.
    let (d, sock) = unsafe { (&*(*c).drv, (*c).connecting) };
    if !NT_SUCCESS(status) {
        connect_failed(d, status);
        // SAFETY: the chain owns the socket; no IRP out.
        unsafe { stream_abandon(c, sock) };
        return irp::routine_return();
    }
    // SAFETY: the chain's socket, now connected.
    unsafe {
        (*c).connecting = ptr::null_mut();
        connected(d, c, sock);
    }
    irp::routine_return()
}

/// A connected socket joins the engine: published, its callbacks enabled (after connect: C26:
/// enable callbacks after bind or connect, W31: which sockets SO_WSK_EVENT_CALLBACK applies to; the
/// context is complete), aborted at once if the job is stopping, pumped.
///
/// The enable is counted as an executing call before the socket is published, in the same
/// critical section (C22): from the moment a job stop, an unload or the housekeeper can see the
/// socket they may abort the connection, and the engine's close must wait until the enable has
/// returned (otherwise it runs on a closed socket, on Windows a freed WSK_SOCKET). The pump
/// after it issues whatever the count held back.
///
/// # Safety
/// `c` is the job's context and `sock` its connected socket.
unsafe fn connected(d: &DataPath, c: *mut Conn, sock: *mut WSK_SOCKET) {
    d.count(Counter::OutboundConnects, 1);
    d.job.open.fetch_add(1, Ordering::SeqCst);
    // SAFETY: per the caller; the context cannot be recycled while a call is counted.
    let r = unsafe { &*c };
    {
        let mut state = r.state.lock();
        state.call_begin();
        // SAFETY: written under the context lock, which the pump reads it under.
        unsafe { (*c).socket = sock };
    }
    // SAFETY: a connected socket with our context and dispatch (W31: after connect).
    let events = unsafe { enable_events(sock, WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT) };
    let mut state = r.state.lock();
    state.call_returned();
    if events.is_err()
        || d.stopping.load(Ordering::SeqCst)
        || d.job.stop_requested.load(Ordering::SeqCst)
    {
        state.abort();
    }
    // A close held back by the enable goes out now, entered before the unlock that ends the
    // enable's hold (after it another CPU may close and recycle the context).
    // SAFETY: live context with its socket, its lock held by `state`.
    unsafe { conn::pump_locked(c, state) };
}

/// WskSocketConnect completion. IRQL <= DISPATCH_LEVEL.
unsafe extern "win64" fn connect_done(_dev: PDEVICE_OBJECT, irp: PIRP, ctx: PVOID) -> NTSTATUS {
    let c = ctx.cast::<Conn>();
    // First act: the call that handed the IRP over may be checking for W11.
    // SAFETY: pooled context.
    unsafe { &*c }.chain_entered.entered();
    // SAFETY: pooled context.
    unsafe { step_done(c) };
    // SAFETY: completed IRP; pooled context.
    let (status, info) = unsafe { irp::result(irp) };
    // SAFETY: pooled context.
    let d = unsafe { &*(*c).drv };
    if !NT_SUCCESS(status) {
        connect_failed(d, status);
        // SAFETY: no socket exists (C19: Information is a socket only on success).
        unsafe { release_or_defer(c) };
        return irp::routine_return();
    }
    // SAFETY: the connected socket of this context.
    unsafe { connected(d, c, info as *mut WSK_SOCKET) };
    irp::routine_return()
}

/// Load-job connection data: an echo client verifies the echo against the source pattern it
/// sent (message offsets restart at 0 for every message) and sends the next message.
///
/// # Safety
/// Receive callback only; `ind` valid for the call.
unsafe fn client_rx(c: *mut Conn, mut ind: *mut WSK_DATA_INDICATION, n: usize) {
    // SAFETY: live context.
    let r = unsafe { &*c };
    // SAFETY: the driver state outlives every connection.
    let drv = unsafe { &*r.drv };
    let (msg, mut off) = {
        let state = r.state.lock();
        match state.mode {
            Mode::EchoClient { msg } => (msg, state.client.offset()),
            _ => (0, 0),
        }
    };
    drv.job
        .bytes_received
        .fetch_add(n as u64, Ordering::Relaxed);
    if msg == 0 {
        return;
    }
    let mut bad = false;
    while !ind.is_null() {
        // SAFETY: valid list element for this call (W51: the indication list is valid for the
        // callback).
        let buf = unsafe { &(*ind).Buffer };
        // SAFETY: valid MDL chain.
        let ok = unsafe {
            mdl::for_each_chunk(buf, usize::MAX, |chunk| {
                for &b in chunk {
                    bad |= b != pattern::byte(off as u64);
                    off += 1;
                    if off == msg {
                        off = 0;
                    }
                }
            })
        };
        bad |= ok.is_none();
        // SAFETY: as above.
        ind = unsafe { (*ind).Next };
    }
    if bad {
        drv.job.verify_failures.fetch_add(1, Ordering::Relaxed);
    }
    {
        let mut state = r.state.lock();
        let before = state.client.messages_received;
        state.client_received(n);
        let done = state.client.messages_received - before;
        drv.job.messages_received.fetch_add(done, Ordering::Relaxed);
    }
    // SAFETY: live context: the next message goes out.
    unsafe { conn::pump(c) };
}
