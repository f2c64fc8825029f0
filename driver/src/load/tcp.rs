//! The load job's TCP client: connections made with WskSocketConnect, run on the served
//! connections' engine (`serve::conn`) with this room's [`HOOKS`]: pacing from the job's
//! ticket budget, the job's counters, and the echo check against the source pattern.

use core::net::SocketAddr;
use core::ptr;
use core::sync::atomic::Ordering;

use control::protocol::pattern;
use wsk_sys::{
    IPPROTO_TCP, NTSTATUS, NT_SUCCESS, PDEVICE_OBJECT, PIRP, PVOID, SOCK_STREAM,
    STATUS_INSUFFICIENT_RESOURCES, STATUS_NOT_SUPPORTED, WSK_DATA_INDICATION, WSK_EVENT_DISCONNECT,
    WSK_EVENT_RECEIVE, WSK_SOCKET,
};

use crate::driver::Driver;
use crate::kernel::irp;
use crate::logic::tcp::Mode;
use crate::serve::conn::{self, ClientHooks, Conn};
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
    d: &Driver,
    remote: SocketAddr,
    mode: Mode,
    msg: usize,
    paced: bool,
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
    let Some(sc) = d.provider().WskSocketConnect else {
        // SAFETY: never published.
        unsafe { conn::release_unconnected(c) };
        return Err(STATUS_NOT_SUPPORTED);
    };
    // SAFETY: c is ours; the address buffers live in the context until the IRP completes.
    unsafe {
        (*c).local = SockAddrBuf::from_socket_addr(wildcard_for(remote));
        (*c).remote = SockAddrBuf::from_socket_addr(remote);
        irp::arm((*c).rx_irp, connect_done, c.cast());
        sc(
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
    }
    Ok(())
}

/// WskSocketConnect completion. IRQL <= DISPATCH_LEVEL.
unsafe extern "win64" fn connect_done(_dev: PDEVICE_OBJECT, irp: PIRP, ctx: PVOID) -> NTSTATUS {
    let c = ctx.cast::<Conn>();
    // SAFETY: completed IRP; pooled context.
    let (status, info) = unsafe { irp::result(irp) };
    // SAFETY: pooled context.
    let d = unsafe { &*(*c).drv };
    if !NT_SUCCESS(status) {
        d.job.connect_failures.fetch_add(1, Ordering::SeqCst);
        d.job.fail(status);
        d.count(Counter::OutboundFailures, 1);
        // SAFETY: no socket exists (C19: Information is a socket only on success).
        unsafe { conn::release_unconnected(c) };
        return irp::routine_return();
    }
    let sock = info as *mut WSK_SOCKET;
    d.count(Counter::OutboundConnects, 1);
    d.job.open.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the connected socket; events enabled only after connect (C26, W31), the context
    // complete before that.
    unsafe {
        conn::publish_socket(c, sock);
        let events = enable_events(sock, WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT);
        if events.is_err()
            || d.stopping.load(Ordering::SeqCst)
            || d.job.stop_requested.load(Ordering::SeqCst)
        {
            (*c).state.lock().abort();
        }
        conn::pump(c);
    }
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
        // SAFETY: valid list element for this call (W51).
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
