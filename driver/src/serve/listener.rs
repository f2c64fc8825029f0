//! TCP listen sockets: one per configured TCP service.

use core::ptr;
use core::sync::atomic::{AtomicBool, Ordering};

use control::config::Service;
use wsk_sys::{
    IPPROTO_TCP, NTSTATUS, PIRP, PSOCKADDR, PVOID, STATUS_INSUFFICIENT_RESOURCES,
    STATUS_REQUEST_NOT_ACCEPTED, STATUS_SUCCESS, TCP_NODELAY, ULONG,
    WSK_CLIENT_CONNECTION_DISPATCH, WSK_CLIENT_LISTEN_DISPATCH, WSK_CLIENT_STREAM_DISPATCH,
    WSK_EVENT_ACCEPT, WSK_EVENT_DISCONNECT, WSK_EVENT_RECEIVE, WSK_EVENT_SEND_BACKLOG, WSK_SOCKET,
};

use crate::conn;
use crate::datapath::DataPath;
use crate::kernel::{irp, pool};
use crate::stats::Counter;
use crate::wsk::addr::SockAddrBuf;
use crate::wsk::{close_sync, open_bound, set_option_u32, BoundKind};

pub(crate) struct Listener {
    socket: *mut WSK_SOCKET,
    drv: *const DataPath,
    pub(crate) service: Service,
    /// Set by a NULL AcceptSocket (W48: a NULL AcceptSocket means the listener is dead): the socket
    /// no longer works.
    pub(crate) dead: AtomicBool,
    /// Pre-allocated so the close cannot fail for want of memory.
    close_irp: PIRP,
    /// Per-service counter slot (`Driver::stats_slots`), inherited by accepted connections.
    stats_slot: usize,
}

static LISTEN_DISPATCH: WSK_CLIENT_LISTEN_DISPATCH = WSK_CLIENT_LISTEN_DISPATCH {
    WskAcceptEvent: Some(accept_event),
    WskInspectEvent: None,
    WskAbortEvent: None,
};

/// A stream socket's client table points at both roles' tables (Windows 10 1703+); the
/// connection one is what accepted sockets inherit with the events enabled on the listener
/// (W34: a listener's connection callbacks go to sockets accepted by WskAcceptEvent), the same as a
/// listening socket's.
#[repr(transparent)]
#[allow(dead_code)] // read by WSK through the pointer handed to WskSocket
struct StreamDispatch(WSK_CLIENT_STREAM_DISPATCH);
// SAFETY: two pointers to immutable statics.
unsafe impl Sync for StreamDispatch {}
static STREAM_DISPATCH: StreamDispatch = StreamDispatch(WSK_CLIENT_STREAM_DISPATCH {
    Listen: ptr::addr_of!(LISTEN_DISPATCH),
    Connect: ptr::addr_of!(conn::CONN_DISPATCH),
});

impl Listener {
    /// WskSocket(LISTEN, or STREAM + WskListen for a stream service) + WskBind + events.
    /// PASSIVE_LEVEL.
    ///
    /// # Safety
    /// `drv` is captured and at its final address.
    pub(crate) unsafe fn create(
        drv: &DataPath,
        service: &Service,
        stats_slot: usize,
    ) -> Result<*mut Listener, NTSTATUS> {
        let l = pool::new_block(
            Listener {
                socket: ptr::null_mut(),
                drv,
                service: *service,
                dead: AtomicBool::new(false),
                // Allocated once the block exists (below): an IRP inside a value whose block
                // allocation fails would be dropped unfreed.
                close_irp: ptr::null_mut(),
                stats_slot,
            },
            pool::TAG_LISTEN,
        )?;
        // SAFETY: l is ours until the socket exists.
        unsafe { (*l).close_irp = irp::alloc() };
        // SAFETY: as above.
        if unsafe { (*l).close_irp.is_null() } {
            // SAFETY: never published.
            unsafe { Self::free(l) };
            return Err(STATUS_INSUFFICIENT_RESOURCES);
        }
        let local = core::net::SocketAddr::new(service.bind, service.port);
        // Connection events first so that every accepted socket inherits them (W34), then
        // accept; both after bind (C26: enable callbacks after bind or connect).
        // A stream socket's own connection callbacks are those of the stream when it is
        // connected, and nothing documents their inheritance by accepted sockets: for those
        // each accepted connection enables its own inside WskAcceptEvent (Conn::accepted).
        let conn_events = WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT | WSK_EVENT_SEND_BACKLOG;
        let events = if service.stream {
            [WSK_EVENT_ACCEPT, 0]
        } else {
            [conn_events, WSK_EVENT_ACCEPT]
        };
        let events = &events[..if service.stream { 1 } else { 2 }];
        let publish = |sock| {
            // SAFETY: l is ours; no callback can run before events are enabled.
            unsafe { (*l).socket = sock };
            // Echo latency: no Nagle on accepted sockets (they inherit the listener's option;
            // each echo send also carries WSK_FLAG_NODELAY). Best effort.
            // SAFETY: bound listen socket, PASSIVE_LEVEL.
            let _ = unsafe { set_option_u32(sock, IPPROTO_TCP as ULONG, TCP_NODELAY, 1) };
        };
        // SAFETY: the context (l) is complete before the socket exists; dispatch is static; on
        // failure the socket is closed before this returns.
        let opened = unsafe {
            open_bound(
                &drv.provider,
                if service.stream {
                    BoundKind::StreamListen
                } else {
                    BoundKind::Listen
                },
                l.cast(),
                if service.stream {
                    ptr::addr_of!(STREAM_DISPATCH).cast()
                } else {
                    ptr::addr_of!(LISTEN_DISPATCH).cast()
                },
                local,
                (*l).close_irp,
                publish,
                events,
            )
        };
        if let Err(e) = opened {
            // SAFETY: no socket left (C23: its close completed); never published.
            unsafe { Self::free(l) };
            return Err(e);
        }
        Ok(l)
    }

    /// # Safety
    /// `l` from [`create`](Self::create); called once at PASSIVE_LEVEL.
    pub(crate) unsafe fn close_and_free(l: *mut Listener) {
        // SAFETY: per the caller; the close waits for running accept callbacks (W70: close cancels
        // pending IRPs and waits for running callbacks), after which nothing references l (C23).
        // WskCloseSocket does not fail (G5: WskCloseSocket never fails).
        unsafe {
            let _ = close_sync((*l).socket, (*l).close_irp);
            Self::free(l);
        }
    }

    /// # Safety
    /// `l` not registered with WSK (never, or its close completed).
    unsafe fn free(l: *mut Listener) {
        // SAFETY: per the caller.
        unsafe {
            irp::free((*l).close_irp);
            pool::free_typed(l, pool::TAG_LISTEN);
        }
    }
}

/// WskAcceptEvent. IRQL <= DISPATCH_LEVEL (WSK_FLAG_AT_DISPATCH_LEVEL tells which; the code
/// assumes DISPATCH either way, C13: every callback must be DISPATCH-safe): no waits, no paged
/// memory, spin locks only.
unsafe extern "win64" fn accept_event(
    ctx: PVOID,
    _flags: ULONG,
    _local: PSOCKADDR,
    remote: PSOCKADDR,
    accept_socket: *mut WSK_SOCKET,
    accept_ctx: *mut PVOID,
    accept_dispatch: *mut *const WSK_CLIENT_CONNECTION_DISPATCH,
) -> NTSTATUS {
    // SAFETY: ctx is the Listener registered with WskSocket; it outlives the socket's close.
    let l = unsafe { &*ctx.cast::<Listener>() };
    // SAFETY: the driver state outlives every socket.
    let drv = unsafe { &*l.drv };
    if accept_socket.is_null() {
        // W48/C8: the listener is dead: the housekeeper closes and re-creates it (PASSIVE).
        l.dead.store(true, Ordering::Relaxed);
        drv.count_service(l.stats_slot, Counter::DeadSockets, 1);
        return STATUS_REQUEST_NOT_ACCEPTED;
    }
    if drv.stopping.load(Ordering::Relaxed) {
        drv.count_service(l.stats_slot, Counter::ConnRefused, 1);
        return STATUS_REQUEST_NOT_ACCEPTED;
    }
    // W47: the address is valid only during this call; copy what is needed (C10: set the accepted
    // socket's context and dispatch before enabling its callbacks).
    // SAFETY: provider SOCKADDR of its family.
    let peer = unsafe { SockAddrBuf::copy_from(remote) }.and_then(SockAddrBuf::to_socket_addr);
    if let Some(p) = peer {
        if !drv.live.source_allowed(p.ip()) {
            drv.count_service(l.stats_slot, Counter::ConnRefused, 1);
            return STATUS_REQUEST_NOT_ACCEPTED;
        }
    }
    // SAFETY: accept_socket is a live accepted socket; on refusal we never touch it (C9: a refused
    // AcceptSocket is never used again).
    if let Some(c) = unsafe { conn::Conn::attach(drv, l.service.mode, l.stats_slot, accept_socket) }
    {
        // C10: context and dispatch set before any callback can be enabled/inherited.
        // SAFETY: out-pointers supplied by the provider for this call.
        unsafe {
            *accept_ctx = c.cast();
            *accept_dispatch = conn::dispatch();
        }
        drv.count_service(l.stats_slot, Counter::ConnAccepted, 1);
        // A stream listener's accepted socket enables its own callbacks, here (W50: the accepted
        // socket's context and dispatch come from the out-parameters); a listening socket's
        // inherited them (W34). No pump, no close in here (item 7).
        // SAFETY: c is live (holds a rundown reference) with the accepted socket; called
        // once, by this callback, after the out-parameters are set.
        unsafe { conn::Conn::accepted(c, l.service.stream) };
        STATUS_SUCCESS
    } else {
        drv.count_service(l.stats_slot, Counter::ConnRefused, 1);
        STATUS_REQUEST_NOT_ACCEPTED
    }
}
