//! WSK helpers: the socket calls every room makes the same way, each stating its IRQL and
//! returning `Result<_, NTSTATUS>`. Nothing here knows what a socket serves.
//!
//! Event callbacks are enabled per socket with SO_WSK_EVENT_CALLBACK, never statically
//! (WSK_SET_STATIC_EVENT_CALLBACKS), because: (1) per-socket enabling happens after our context
//! is complete (after bind for listen/datagram sockets, C26: events only after bind or
//! connect), so no event can reach a half-built context (the G15: static callbacks can come before
//! the socket's creation completes/C24: static callbacks: the context is complete before WskBind
//! race static callbacks have: events before the creating IRP's completion is seen); (2) the
//! connection events (receive, disconnect, send backlog) are enabled on each *listener*, so every
//! socket accepted through WskAcceptEvent inherits them (W34: a listener's connection callbacks go
//! to sockets accepted by WskAcceptEvent) and starts receiving the moment the accept callback
//! returns, without a control call per connection; (3) outbound connection sockets enable the same
//! events after connect. The price, a control call per listener, is paid once.
//!
//! - `addr`: SOCKADDR buffers; `mdl`: reading WSK_BUF chains and building MDLs.

pub(crate) mod addr;
pub(crate) mod mdl;

use core::net::SocketAddr;
use core::ptr;

use wsk_sys::{
    WskSetOption, AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, NPIID, NPI_WSK_INTERFACE_ID,
    NTSTATUS, NT_SUCCESS, PIRP, PVOID, SOCK_DGRAM, SOCK_STREAM, SOL_SOCKET, SO_WSK_EVENT_CALLBACK,
    STATUS_NOT_SUPPORTED, ULONG, WSK_EVENT_CALLBACK_CONTROL, WSK_EVENT_DISABLE,
    WSK_FLAG_DATAGRAM_SOCKET, WSK_FLAG_LISTEN_SOCKET, WSK_FLAG_STREAM_SOCKET,
    WSK_PROVIDER_BASIC_DISPATCH, WSK_PROVIDER_DATAGRAM_DISPATCH, WSK_PROVIDER_LISTEN_DISPATCH,
    WSK_PROVIDER_NPI, WSK_PROVIDER_STREAM_DISPATCH, WSK_SOCKET,
};

use crate::kernel::irp;

/// NPI_WSK_INTERFACE_ID (uuid.lib in C), defined by wsk-sys.
pub(crate) fn npi_id() -> *const NPIID {
    ptr::addr_of!(NPI_WSK_INTERFACE_ID)
}

/// Turns an NTSTATUS into the crate's error convention.
pub(crate) fn check(status: NTSTATUS) -> Result<(), NTSTATUS> {
    if NT_SUCCESS(status) {
        Ok(())
    } else {
        Err(status)
    }
}

/// The two bound socket kinds (a service's listen or datagram socket, a UDP load job's
/// datagram socket); each is created and bound the same way.
#[derive(Clone, Copy)]
pub(crate) enum BoundKind {
    Listen,
    /// A stream socket (WSK_FLAG_STREAM_SOCKET) that listens: WskBind, then WskListen.
    StreamListen,
    Datagram,
}

/// WskSocket + WskBind, PASSIVE_LEVEL. No event is enabled yet, so no callback can run (C26
/// enables them after bind). If the bind fails the socket is closed here with `close_irp`
/// before returning (C23: the caller may free `ctx` as soon as this returns an error).
///
/// # Safety
/// `provider` is captured; `ctx` is the socket's fully initialised context (C24: complete
/// before WskBind) and `dispatch` the matching static client dispatch table, both alive until
/// the socket's close completes; `close_irp` is an idle driver-owned IRP.
unsafe fn socket_and_bind(
    provider: &WSK_PROVIDER_NPI,
    kind: BoundKind,
    ctx: PVOID,
    dispatch: *const core::ffi::c_void,
    local: SocketAddr,
    close_irp: PIRP,
) -> Result<*mut WSK_SOCKET, NTSTATUS> {
    let (ty, proto, flags) = match kind {
        BoundKind::Listen => (SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_LISTEN_SOCKET),
        BoundKind::StreamListen => (SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_STREAM_SOCKET),
        BoundKind::Datagram => (SOCK_DGRAM, IPPROTO_UDP, WSK_FLAG_DATAGRAM_SOCKET),
    };
    let family = if local.is_ipv4() { AF_INET } else { AF_INET6 };
    // SAFETY: a captured provider's dispatch table (per the caller).
    let Some(wsk_socket) = (unsafe { (*provider.Dispatch).WskSocket }) else {
        return Err(STATUS_NOT_SUPPORTED);
    };
    // SAFETY: per the caller, ctx and dispatch outlive the socket; the IRP is waited for.
    let (status, info) = unsafe {
        irp::call_sync(|i| {
            wsk_socket(
                provider.Client,
                family,
                ty,
                proto,
                flags,
                ctx,
                dispatch,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                i,
            )
        })
    };
    check(status)?;
    // C19: Information is a socket only on success.
    let sock = info as *mut WSK_SOCKET;
    // SAFETY: the provider gave sock the dispatch table of its kind (W25: the dispatch table must
    // match the socket's category).
    let bind = unsafe {
        match kind {
            BoundKind::Listen => (*(*sock).Dispatch.cast::<WSK_PROVIDER_LISTEN_DISPATCH>()).WskBind,
            BoundKind::StreamListen => {
                (*(*sock).Dispatch.cast::<WSK_PROVIDER_STREAM_DISPATCH>()).WskBind
            }
            BoundKind::Datagram => {
                (*(*sock).Dispatch.cast::<WSK_PROVIDER_DATAGRAM_DISPATCH>()).WskBind
            }
        }
    };
    let mut a = addr::SockAddrBuf::from_socket_addr(local);
    let status = match bind {
        // SAFETY: a lives across the synchronous call.
        Some(bind) => unsafe { irp::call_sync(|i| bind(sock, a.as_sockaddr(), 0, i)).0 },
        None => STATUS_NOT_SUPPORTED,
    };
    // A stream socket listens only once asked to, after its bind (WskListen, IRP required).
    let status = match kind {
        BoundKind::StreamListen if NT_SUCCESS(status) => {
            // SAFETY: a stream socket's table (W25); bound just above.
            match unsafe { (*(*sock).Dispatch.cast::<WSK_PROVIDER_STREAM_DISPATCH>()).WskListen } {
                // SAFETY: synchronous call on our own IRP.
                Some(listen) => unsafe { irp::call_sync(|i| listen(sock, i)).0 },
                None => STATUS_NOT_SUPPORTED,
            }
        }
        _ => status,
    };
    if let Err(e) = check(status) {
        // SAFETY: no event enabled, no call executing; the close completes before we return.
        let _ = unsafe { close_sync(sock, close_irp) };
        return Err(e);
    }
    Ok(sock)
}

/// A service's or a job's bound socket, ready: [`socket_and_bind`], then `before_events`
/// (publish the socket in its context, set options: no callback can run yet), then each mask of
/// `events` enabled in order (C26: after bind). On any failure the socket is closed with
/// `close_irp` before returning, so the caller may free `ctx` at once (C23). PASSIVE_LEVEL.
///
/// # Safety
/// As [`socket_and_bind`]; the category of `kind` has the callbacks in `events`.
#[allow(clippy::too_many_arguments)] // the WSK call's own inputs plus the two steps after it
pub(crate) unsafe fn open_bound(
    provider: &WSK_PROVIDER_NPI,
    kind: BoundKind,
    ctx: PVOID,
    dispatch: *const core::ffi::c_void,
    local: SocketAddr,
    close_irp: PIRP,
    before_events: impl FnOnce(*mut WSK_SOCKET),
    events: &[ULONG],
) -> Result<*mut WSK_SOCKET, NTSTATUS> {
    // SAFETY: per the caller.
    let sock = unsafe { socket_and_bind(provider, kind, ctx, dispatch, local, close_irp) }?;
    before_events(sock);
    for &mask in events {
        // SAFETY: a bound socket of the category (per the caller).
        if let Err(e) = unsafe { enable_events(sock, mask) } {
            // SAFETY: no call executing; the close completes before we return (C23).
            let _ = unsafe { close_sync(sock, close_irp) };
            return Err(e);
        }
    }
    Ok(sock)
}

/// The socket's basic dispatch table (every socket dispatch table starts with it).
///
/// # Safety
/// `sock` is a live socket.
unsafe fn basic(sock: *mut WSK_SOCKET) -> &'static WSK_PROVIDER_BASIC_DISPATCH {
    // SAFETY: per the caller; provider tables live as long as the capture.
    unsafe { &*(*sock).Dispatch.cast::<WSK_PROVIDER_BASIC_DISPATCH>() }
}

/// SO_WSK_EVENT_CALLBACK enabling `mask` (no IRP: enabling completes inline, W30: some options need
/// an IRP).
/// IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `sock` is a live socket whose category has the callbacks in `mask`.
pub(crate) unsafe fn enable_events(sock: *mut WSK_SOCKET, mask: ULONG) -> Result<(), NTSTATUS> {
    let mut ctl = WSK_EVENT_CALLBACK_CONTROL {
        NpiId: npi_id(),
        EventMask: mask,
    };
    // SAFETY: per the caller.
    let Some(f) = unsafe { basic(sock) }.WskControlSocket else {
        return Err(STATUS_NOT_SUPPORTED);
    };
    // SAFETY: ctl lives across the call; no IRP for enabling (W30).
    check(unsafe {
        f(
            sock,
            WskSetOption,
            SO_WSK_EVENT_CALLBACK,
            SOL_SOCKET,
            core::mem::size_of::<WSK_EVENT_CALLBACK_CONTROL>(),
            ptr::addr_of_mut!(ctl).cast(),
            0,
            ptr::null_mut(),
            ptr::null_mut(),
            ptr::null_mut(),
        )
    })
}

/// SO_WSK_EVENT_CALLBACK disabling `event`, synchronously with `irp`: returns once any running
/// invocation of that callback has returned (W33: a disable with callbacks in progress pends).
/// PASSIVE_LEVEL.
///
/// # Safety
/// `sock` is a live socket; `irp` an idle driver-owned IRP.
pub(crate) unsafe fn disable_event_sync(
    sock: *mut WSK_SOCKET,
    event: ULONG,
    irp: PIRP,
) -> Result<(), NTSTATUS> {
    // SAFETY: per the caller.
    let Some(ctl) = unsafe { basic(sock) }.WskControlSocket else {
        return Err(STATUS_NOT_SUPPORTED);
    };
    let mut c = WSK_EVENT_CALLBACK_CONTROL {
        NpiId: npi_id(),
        EventMask: event | WSK_EVENT_DISABLE,
    };
    // SAFETY: the control buffer lives across the synchronous call.
    check(unsafe {
        irp::call_sync_with(irp, |i| {
            ctl(
                sock,
                WskSetOption,
                SO_WSK_EVENT_CALLBACK,
                SOL_SOCKET,
                core::mem::size_of::<WSK_EVENT_CALLBACK_CONTROL>(),
                ptr::addr_of_mut!(c).cast(),
                0,
                ptr::null_mut(),
                ptr::null_mut(),
                i,
            )
        })
        .0
    })
}

/// WskSetOption of a u32 option, synchronously. PASSIVE_LEVEL (set-up).
///
/// # Safety
/// `sock` is a live socket.
pub(crate) unsafe fn set_option_u32(
    sock: *mut WSK_SOCKET,
    level: ULONG,
    code: ULONG,
    value: u32,
) -> Result<(), NTSTATUS> {
    // SAFETY: per the caller.
    let Some(ctl) = unsafe { basic(sock) }.WskControlSocket else {
        return Err(STATUS_NOT_SUPPORTED);
    };
    let mut v = value;
    // SAFETY: v lives across the synchronous call.
    check(unsafe {
        irp::call_sync(|i| {
            ctl(
                sock,
                WskSetOption,
                code,
                level,
                4,
                ptr::addr_of_mut!(v).cast(),
                0,
                ptr::null_mut(),
                ptr::null_mut(),
                i,
            )
        })
        .0
    })
}

/// Synchronous WskCloseSocket for sockets closed at PASSIVE_LEVEL (listeners, datagram).
///
/// # Safety
/// No call on `sock` still executing (C22: no call may be running at close); `sock` not used
/// afterwards (C23).
pub(crate) unsafe fn close_sync(sock: *mut WSK_SOCKET, close_irp: PIRP) -> Result<(), NTSTATUS> {
    // SAFETY: per the caller.
    let Some(close) = unsafe { basic(sock) }.WskCloseSocket else {
        return Err(STATUS_NOT_SUPPORTED);
    };
    // SAFETY: the pre-allocated IRP is owned by call_sync_with until it returns.
    check(unsafe { irp::call_sync_with(close_irp, |i| close(sock, i)).0 })
}
