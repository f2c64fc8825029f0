//! The provider's socket objects, the global socket table, WskSocket and WskCloseSocket.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use socket2::{Domain, Protocol, Socket as HostSocket, Type};
use wsk_sys::{
    ADDRESS_FAMILY, AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP, NTSTATUS, PEPROCESS, PETHREAD,
    PIRP, PSECURITY_DESCRIPTOR, PVOID, PWSK_CLIENT, PWSK_SOCKET, SOCK_DGRAM, SOCK_RAW, SOCK_STREAM,
    STATUS_CANCELLED, STATUS_INVALID_PARAMETER, STATUS_NOT_SUPPORTED, STATUS_SUCCESS, ULONG,
    USHORT, WSK_BUF, WSK_EVENT_ACCEPT, WSK_EVENT_DISCONNECT, WSK_EVENT_RECEIVE,
    WSK_EVENT_RECEIVE_FROM, WSK_EVENT_SEND_BACKLOG, WSK_FLAG_CONNECTION_SOCKET,
    WSK_FLAG_DATAGRAM_SOCKET, WSK_FLAG_LISTEN_SOCKET, WSK_FLAG_STREAM_SOCKET, WSK_SOCKET,
};

use super::complete;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Basic,
    Listen,
    Connection,
    Datagram,
    Stream,
}

impl Kind {
    /// The event flags SO_WSK_EVENT_CALLBACK may name for this category (W32).
    pub(crate) fn event_mask(self) -> u32 {
        match self {
            Kind::Basic => 0,
            Kind::Listen => WSK_EVENT_ACCEPT | CONNECTION_EVENTS,
            Kind::Connection => CONNECTION_EVENTS,
            Kind::Datagram => WSK_EVENT_RECEIVE_FROM,
            Kind::Stream => WSK_EVENT_ACCEPT | CONNECTION_EVENTS,
        }
    }
}

pub(crate) const CONNECTION_EVENTS: u32 =
    WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT | WSK_EVENT_SEND_BACKLOG;

pub(crate) struct SendReq {
    pub irp: usize,
    pub buf: WSK_BUF,
    pub done: usize,
    pub call: &'static str,
}

pub(crate) struct RecvReq {
    pub irp: usize,
    pub buf: WSK_BUF,
    pub flags: u32,
    pub got: usize,
}

pub(crate) struct RecvFromReq {
    pub irp: usize,
    pub buf: WSK_BUF,
    pub remote: usize,
    pub control_len: usize,
    pub control_flags: usize,
}

pub(crate) struct SendToReq {
    pub irp: usize,
    /// Datagrams still to send: (WSK_BUF, destination).
    pub bufs: VecDeque<(WSK_BUF, SocketAddr)>,
    pub sent: usize,
    pub call: &'static str,
}

pub(crate) struct AcceptReq {
    pub irp: usize,
    pub ctx: usize,
    pub dispatch: usize,
    pub local: usize,
    pub remote: usize,
}

pub(crate) struct Sock {
    pub kind: Kind,
    pub family: ADDRESS_FAMILY,
    pub client: usize,
    pub ctx: usize,
    pub dispatch: usize,
    pub fd: Option<HostSocket>,
    pub owner: usize,
    pub bound: Option<SocketAddr>,
    pub share_key: Option<(bool, SocketAddr)>,
    pub shared: bool,
    pub listening: bool,
    pub connected: bool,
    pub remote: Option<SocketAddr>,
    /// Per-socket enabled events, statically enabled ones, and connection events a listener
    /// passes to sockets accepted through WskAcceptEvent (W34).
    pub enabled: u32,
    pub static_mask: u32,
    pub inherit: u32,
    /// The callback running now (one at a time per socket), as its WSK_EVENT_* flag.
    pub running: u32,
    pub running_thread: Option<std::thread::ThreadId>,
    pub disable_waiters: Vec<(u32, usize)>,
    pub closing: Option<usize>,
    pub in_calls: usize,
    pub accepts: VecDeque<AcceptReq>,
    pub receives: VecDeque<RecvReq>,
    pub sends: VecDeque<SendReq>,
    pub recvfroms: VecDeque<RecvFromReq>,
    pub sendtos: VecDeque<SendToReq>,
    pub connect: Option<(usize, bool)>,
    /// The pending connect goes to one of `Config::unanswered_connects`: nothing was sent and
    /// it completes only when cancelled or the socket is closed.
    pub unanswered: bool,
    pub disconnect: Option<usize>,
    pub rx: VecDeque<u8>,
    pub rx_blocked: bool,
    pub eof: bool,
    pub eof_reported: bool,
    pub dead: Option<NTSTATUS>,
    pub dead_reported: bool,
    pub shut_wr: bool,
    pub dgrams: VecDeque<(Vec<u8>, SocketAddr)>,
    pub dgram_retry_at: Option<Instant>,
    pub fixed_remote: Option<SocketAddr>,
    pub retained_bytes: usize,
    pub backlog_reported: bool,
    /// While WskAcceptEvent runs for this (accepted) socket: where the client writes its
    /// context and dispatch (read when it enables events inside the callback: W50).
    pub accept_slots: Option<(usize, usize)>,
    /// While WskAcceptEvent runs for this (accepted) socket: the callback's thread and its
    /// kernel-call counter (a close from elsewhere is judged against it, see
    /// `events::listen::close_during_accept`).
    pub accept_thread: Option<(
        std::thread::ThreadId,
        std::sync::Arc<std::sync::atomic::AtomicU64>,
    )>,
    /// Set once the client owns the socket (an accepted socket before its accept returns
    /// is provider-owned).
    pub handed_out: bool,
    /// Made non-functional by `faults::kill_socket`; the NULL indication is reported once.
    pub killed: bool,
    pub kill_reported: bool,
}

// SAFETY: the raw pointers in a Sock (WSK_BUF MDL chains of pending requests) are client
// memory the provider may touch from any thread until completion, as the kernel does.
unsafe impl Send for Sock {}

impl Sock {
    pub(crate) fn new(
        kind: Kind,
        family: ADDRESS_FAMILY,
        client: usize,
        ctx: usize,
        dispatch: usize,
        fd: Option<HostSocket>,
    ) -> Self {
        Sock {
            kind,
            family,
            client,
            ctx,
            dispatch,
            fd,
            owner: 0,
            bound: None,
            share_key: None,
            shared: false,
            listening: false,
            connected: false,
            remote: None,
            enabled: 0,
            static_mask: 0,
            inherit: 0,
            running: 0,
            running_thread: None,
            disable_waiters: Vec::new(),
            closing: None,
            in_calls: 0,
            accepts: VecDeque::new(),
            receives: VecDeque::new(),
            sends: VecDeque::new(),
            recvfroms: VecDeque::new(),
            sendtos: VecDeque::new(),
            connect: None,
            unanswered: false,
            disconnect: None,
            rx: VecDeque::new(),
            rx_blocked: false,
            eof: false,
            eof_reported: false,
            dead: None,
            dead_reported: false,
            shut_wr: false,
            dgrams: VecDeque::new(),
            dgram_retry_at: None,
            fixed_remote: None,
            retained_bytes: 0,
            backlog_reported: false,
            accept_slots: None,
            accept_thread: None,
            handed_out: true,
            killed: false,
            kill_reported: false,
        }
    }

    pub(crate) fn events(&self) -> u32 {
        self.enabled | self.static_mask
    }

    /// Every pending IRP, removed (for close and abortive disconnect).
    pub(crate) fn drain_irps(&mut self) -> Vec<usize> {
        let mut v: Vec<usize> = Vec::new();
        v.extend(self.accepts.drain(..).map(|a| a.irp));
        for r in self.receives.drain(..) {
            // SAFETY: pinned when queued.
            unsafe { crate::kernel::mdl::pin_chain(r.buf.Mdl, -1) };
            v.push(r.irp);
        }
        for s in self.sends.drain(..) {
            // SAFETY: pinned when queued.
            unsafe { crate::kernel::mdl::pin_chain(s.buf.Mdl, -1) };
            v.push(s.irp);
        }
        for r in self.recvfroms.drain(..) {
            // SAFETY: pinned when queued.
            unsafe { crate::kernel::mdl::pin_chain(r.buf.Mdl, -1) };
            v.push(r.irp);
        }
        for s in self.sendtos.drain(..) {
            for (b, _) in &s.bufs {
                // SAFETY: pinned when queued.
                unsafe { crate::kernel::mdl::pin_chain(b.Mdl, -1) };
            }
            v.push(s.irp);
        }
        v.extend(self.connect.take().map(|c| c.0));
        v.extend(self.disconnect.take());
        v.extend(self.disable_waiters.drain(..).map(|d| d.1));
        v
    }
}

#[derive(Default)]
pub(crate) struct Provider {
    pub sockets: HashMap<usize, Sock>,
    pub closed: HashSet<usize>,
    pub next_owner: usize,
}

static PROVIDER: Mutex<Option<Provider>> = Mutex::new(None);

pub(crate) fn lock() -> MutexGuard<'static, Option<Provider>> {
    PROVIDER.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn with<R>(f: impl FnOnce(&mut Provider) -> R) -> R {
    let mut g = lock();
    f(g.get_or_insert_with(Provider::default))
}

/// As [`with`], from a thread that may already hold the provider lock further up its stack
/// (a client's kernel call inside a callback or completion the provider runs): tries for a
/// while (about a millisecond), None if the lock stayed busy.
pub(crate) fn try_with<R>(f: impl FnOnce(&mut Provider) -> R) -> Option<R> {
    for _ in 0..100 {
        match PROVIDER.try_lock() {
            Ok(mut g) => return Some(f(g.get_or_insert_with(Provider::default))),
            Err(std::sync::TryLockError::Poisoned(e)) => {
                let mut g = e.into_inner();
                return Some(f(g.get_or_insert_with(Provider::default)));
            }
            Err(std::sync::TryLockError::WouldBlock) => {
                std::thread::sleep(std::time::Duration::from_micros(10));
            }
        }
    }
    None
}

pub(crate) fn live_for_client(client: usize) -> usize {
    with(|p| {
        p.sockets
            .values()
            // A socket still being created by WskSocketConnect counts: its IRP is pending (W7).
            .filter(|s| s.client == client && (s.handed_out || s.connect.is_some()))
            .count()
    })
}

pub(crate) fn live() -> Vec<String> {
    with(|p| {
        p.sockets
            .iter()
            .filter(|(_, s)| s.handed_out)
            .map(|(a, s)| {
                format!(
                    "WSK socket {a:#x} ({:?}, bound {:?}) not closed",
                    s.kind, s.bound
                )
            })
            .collect()
    })
}

pub(crate) fn reset() {
    let socks: Vec<(usize, Sock)> = with(|p| {
        p.closed.clear();
        p.sockets.drain().collect()
    });
    for (a, mut s) in socks {
        for irp in s.drain_irps() {
            let _ = irp;
        }
        drop(s.fd.take());
        // SAFETY: allocated by new_wsk_socket; no client uses it after a reset.
        drop(unsafe { Box::from_raw(a as *mut WSK_SOCKET) });
    }
}

/// The provider dispatch table a new socket of each kind points to. The tables name every
/// provider call, so they live above this module (wsk/dispatch.rs) and are installed at init.
static TABLES: std::sync::OnceLock<fn(Kind) -> *const std::ffi::c_void> =
    std::sync::OnceLock::new();

/// Installs the table lookup (once per process).
pub(crate) fn set_dispatch_tables(for_kind: fn(Kind) -> *const std::ffi::c_void) {
    let _ = TABLES.set(for_kind);
}

/// How far a send got: all written, blocked (the host socket is full), or failed.
pub(crate) enum Progress {
    Done,
    Blocked,
    Failed(NTSTATUS),
}

/// Allocates the WSK_SOCKET (provider memory) and registers `s` under its address.
pub(crate) fn insert(mut s: Sock) -> usize {
    let ws = Box::into_raw(Box::new(WSK_SOCKET {
        Dispatch: TABLES
            .get()
            .map_or(std::ptr::null(), |for_kind| for_kind(s.kind)),
    })) as usize;
    with(|p| {
        s.owner = p.next_owner;
        p.next_owner = p.next_owner.wrapping_add(1);
        p.sockets.insert(ws, s);
    });
    ws
}

/// Removes a socket for good: its WSK_SOCKET stays allocated (quarantined, Dispatch still
/// valid) so any later use is reported as use-after-close instead of crashing.
pub(crate) fn remove(p: &mut Provider, ws: usize) -> Option<Sock> {
    let s = p.sockets.remove(&ws)?;
    p.closed.insert(ws);
    Some(s)
}

/// Creates the host socket for a category/family.
pub(crate) fn host_socket(
    kind: Kind,
    family: ADDRESS_FAMILY,
    stream: bool,
) -> std::io::Result<HostSocket> {
    let domain = if family == AF_INET6 {
        Domain::IPV6
    } else {
        Domain::IPV4
    };
    let (ty, proto) = if stream {
        (Type::STREAM, Protocol::TCP)
    } else {
        (Type::DGRAM, Protocol::UDP)
    };
    let s = HostSocket::new(domain, ty, Some(proto))?;
    s.set_nonblocking(true)?;
    if family == AF_INET6 {
        // Windows AF_INET6 sockets are IPv6-only unless IPV6_V6ONLY is cleared.
        s.set_only_v6(true)?;
    }
    if stream && kind != Kind::Basic {
        // Address sharing is enforced by the sim's own table; SO_REUSEADDR only keeps
        // TIME_WAIT from failing a rebind, as Windows' default does not either.
        s.set_reuse_address(true)?;
    }
    Ok(s)
}

/// RAII count of provider calls executing on a socket (W70: close must not overlap them).
pub(crate) struct InCall(usize);

impl Drop for InCall {
    fn drop(&mut self) {
        with(|p| {
            if let Some(s) = p.sockets.get_mut(&self.0) {
                s.in_calls = s.in_calls.saturating_sub(1);
            }
        });
    }
}

/// Looks up a client's socket pointer for `call`, counting the call as executing.
/// `Err(STATUS_INVALID_PARAMETER)` after a recorded violation (not a live socket);
/// `Err(STATUS_FILE_FORCED_CLOSED)` for a socket that no longer works (W15): the client is
/// expected to close it, and calls other than closing and releasing fail.
pub(crate) fn enter(socket: PWSK_SOCKET, call: &str) -> Result<InCall, NTSTATUS> {
    let call = enter_any(socket, call).ok_or(STATUS_INVALID_PARAMETER)?;
    let killed = with(|p| p.sockets.get(&call.0).is_some_and(|s| s.killed));
    if killed {
        return Err(wsk_sys::STATUS_FILE_FORCED_CLOSED);
    }
    Ok(call)
}

/// As [`enter`], also for a socket that no longer works (WskRelease must still return
/// retained lists).
pub(crate) fn enter_any(socket: PWSK_SOCKET, call: &str) -> Option<InCall> {
    // A provider call is a kernel call the client makes: a preemption point.
    crate::kernel::preempt::entry(call);
    let ws = socket as usize;
    let r = with(|p| match p.sockets.get_mut(&ws) {
        Some(s) if s.closing.is_none() => {
            s.in_calls += 1;
            Ok(())
        }
        Some(_) => Err("called on a socket whose WskCloseSocket is in progress (W70)"),
        None if p.closed.contains(&ws) => {
            Err("called on a socket after WskCloseSocket (C23: use after close)")
        }
        None => Err("called with a pointer that is not a WSK socket"),
    });
    match r {
        Ok(()) => Some(InCall(ws)),
        Err(e) => {
            crate::kernel::state::violation(format!("{call}({ws:#x}) {e}"));
            None
        }
    }
}

/// The common start of an IRP-taking socket call: IRQL check, the IRP taken (W11), the socket
/// entered as executing, and any injected failure. `Err(status)` is the call's return value;
/// the IRP is then already completed with it, except when the IRP itself was unusable.
///
/// # Safety
/// `irp` is the IRP the client passed to `name`.
/// Fault (`Config::unfinished_calls`, `faults::leave_unfinished`): `call` returns
/// STATUS_NOT_IMPLEMENTED with its IRP left alone, never taken, never completed (W11 broken on
/// purpose, as Wine's netio.sys answers the functions it lacks). `Some(status)` to return.
pub(crate) fn left_unfinished(
    call: crate::config::Call,
    irp: PIRP,
    name: &'static str,
) -> Option<NTSTATUS> {
    if !crate::kernel::schedule::unfinished(call, irp) {
        return None;
    }
    // Still a kernel call (counted, a point where the thread may be descheduled).
    crate::kernel::preempt::entry(name);
    Some(wsk_sys::STATUS_NOT_IMPLEMENTED)
}

pub(crate) unsafe fn begin_irp_call(
    socket: PWSK_SOCKET,
    irp: PIRP,
    name: &'static str,
    fault: crate::config::Call,
) -> Result<InCall, NTSTATUS> {
    crate::kernel::irql::require_dispatch_or_below(name);
    if let Some(st) = left_unfinished(fault, irp, name) {
        return Err(st);
    }
    // SAFETY: the client passes its IRP.
    if !unsafe { crate::kernel::irp::take(irp, name) } {
        return Err(STATUS_INVALID_PARAMETER);
    }
    let call = match enter(socket, name) {
        Ok(c) => c,
        // SAFETY: taken above.
        Err(st) => return Err(unsafe { complete::fail(irp, st) }),
    };
    if let Some(st) = crate::kernel::schedule::injected_failure(fault) {
        // SAFETY: taken above.
        return Err(unsafe { complete::fail(irp, st) });
    }
    Ok(call)
}

/// The common start of WskSocket and WskSocketConnect: IRQL check, the IRP taken (W11), a
/// captured client (W6) and reserved flags clear (`flags_ok`), the owning process (W26),
/// any injected failure.
/// `Ok(client)` to go on; `Err(status)` is the call's return value, the IRP then already
/// completed with it except when the IRP itself was unusable.
///
/// # Safety
/// `irp` is the IRP the client passed to `name`.
pub(crate) unsafe fn begin_client_call(
    client: PWSK_CLIENT,
    irp: PIRP,
    flags_ok: bool,
    owning_process: PEPROCESS,
    name: &'static str,
    fault: crate::config::Call,
) -> Result<usize, NTSTATUS> {
    crate::kernel::irql::require_dispatch_or_below(name);
    if owning_process.is_null()
        && crate::kernel::process::is_user_process()
        && crate::kernel::state::config().flag_user_process_sockets
    {
        crate::kernel::state::violation(format!(
            "{name} with OwningProcess NULL in a user process's context (an IOCTL dispatch): the socket belongs to that process, not the driver (W26); pass PsInitialSystemProcess or create it from a system thread"
        ));
    }
    if let Some(st) = left_unfinished(fault, irp, name) {
        return Err(st);
    }
    // SAFETY: the client passes its IRP.
    if !unsafe { crate::kernel::irp::take(irp, name) } {
        return Err(STATUS_INVALID_PARAMETER);
    }
    let client = client as usize;
    if !super::clients::check_client(client, name) || !flags_ok {
        // SAFETY: taken above.
        return Err(unsafe { complete::fail(irp, STATUS_INVALID_PARAMETER) });
    }
    if let Some(st) = crate::kernel::schedule::injected_failure(fault) {
        // SAFETY: taken above.
        return Err(unsafe { complete::fail(irp, st) });
    }
    Ok(client)
}

fn category(flags: ULONG) -> Option<Kind> {
    match flags {
        0 => Some(Kind::Basic),
        WSK_FLAG_LISTEN_SOCKET => Some(Kind::Listen),
        WSK_FLAG_CONNECTION_SOCKET => Some(Kind::Connection),
        WSK_FLAG_DATAGRAM_SOCKET => Some(Kind::Datagram),
        WSK_FLAG_STREAM_SOCKET => Some(Kind::Stream),
        _ => None,
    }
}

/// W27: the AF_INET/AF_INET6 type/protocol pairs each category accepts. Some(true) =
/// stream transport, Some(false) = datagram transport.
fn transport(kind: Kind, ty: USHORT, proto: ULONG) -> Result<bool, NTSTATUS> {
    let tcp = ty == SOCK_STREAM && (proto == IPPROTO_TCP || proto == 0);
    let udp = ty == SOCK_DGRAM && (proto == IPPROTO_UDP || proto == 0);
    if ty == SOCK_RAW && matches!(kind, Kind::Basic | Kind::Datagram) {
        return Err(STATUS_NOT_SUPPORTED); // sim limit: no raw sockets
    }
    match kind {
        Kind::Basic if tcp => Ok(true),
        Kind::Basic if udp => Ok(false),
        Kind::Listen | Kind::Connection | Kind::Stream if tcp => Ok(true),
        Kind::Datagram if udp => Ok(false),
        _ => Err(STATUS_INVALID_PARAMETER),
    }
}

/// Creates a provider socket for a client (shared by WskSocket and WskSocketConnect).
/// Ok(socket address) or the failure status.
pub(crate) fn create(
    client: usize,
    family: ADDRESS_FAMILY,
    ty: USHORT,
    proto: ULONG,
    flags: ULONG,
    ctx: usize,
    dispatch: usize,
    sd: PSECURITY_DESCRIPTOR,
    call: &str,
) -> Result<usize, NTSTATUS> {
    let Some(kind) = category(flags) else {
        crate::kernel::state::violation(format!(
            "{call}: Flags {flags:#x} is not exactly one socket category (W22)"
        ));
        return Err(STATUS_INVALID_PARAMETER);
    };
    if family != AF_INET && family != AF_INET6 {
        return Err(STATUS_NOT_SUPPORTED);
    }
    let stream = transport(kind, ty, proto)?;
    let shared = if sd.is_null() {
        false
    } else {
        let cached = super::clients::with_client(client, |r| r.cached_sds.contains(&(sd as usize)))
            .unwrap_or(false);
        if !cached {
            crate::kernel::state::violation(format!(
                "{call}: SecurityDescriptor {sd:p} is not a WSK_CACHE_SD copy (W26)"
            ));
            return Err(STATUS_INVALID_PARAMETER);
        }
        true
    };
    let static_mask = super::clients::with_client(client, |r| {
        r.sockets_created += 1;
        r.static_mask
    })
    .unwrap_or(0);
    let fd =
        host_socket(kind, family, stream).map_err(|_| wsk_sys::STATUS_INSUFFICIENT_RESOURCES)?;
    let mut s = Sock::new(kind, family, client, ctx, dispatch, Some(fd));
    s.shared = shared;
    // W17: static callbacks apply to each new socket, for its category's flags.
    s.static_mask = static_mask
        & match kind {
            Kind::Listen => WSK_EVENT_ACCEPT,
            Kind::Connection => CONNECTION_EVENTS,
            Kind::Datagram => WSK_EVENT_RECEIVE_FROM,
            Kind::Stream => WSK_EVENT_ACCEPT | CONNECTION_EVENTS,
            Kind::Basic => 0,
        };
    Ok(insert(s))
}

/// `WskSocket`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_socket>
#[no_mangle]
pub unsafe extern "win64" fn WskSocket(
    Client: PWSK_CLIENT,
    AddressFamily: ADDRESS_FAMILY,
    SocketType: USHORT,
    Protocol: ULONG,
    Flags: ULONG,
    SocketContext: PVOID,
    Dispatch: *const std::ffi::c_void,
    OwningProcess: PEPROCESS,
    OwningThread: PETHREAD,
    SecurityDescriptor: PSECURITY_DESCRIPTOR,
    Irp: PIRP,
) -> NTSTATUS {
    let _ = OwningThread;
    // SAFETY: the client passes its IRP.
    let client = match unsafe {
        begin_client_call(
            Client,
            Irp,
            true,
            OwningProcess,
            "WskSocket",
            crate::config::Call::WskSocket,
        )
    } {
        Ok(client) => client,
        Err(st) => return st,
    };
    match create(
        client,
        AddressFamily,
        SocketType,
        Protocol,
        Flags,
        SocketContext as usize,
        Dispatch as usize,
        SecurityDescriptor,
        "WskSocket",
    ) {
        // SAFETY: taken above.
        Ok(ws) => unsafe { complete::finish(Irp, STATUS_SUCCESS, ws) },
        // SAFETY: taken above.
        Err(st) => unsafe { complete::fail(Irp, st) },
    }
}

/// `WskCloseSocket`: cancels every pending IRP, waits for a running callback, frees the
/// socket (W70). Retained indications are left alone (W68).
#[no_mangle]
pub unsafe extern "win64" fn WskCloseSocket(Socket: PWSK_SOCKET, Irp: PIRP) -> NTSTATUS {
    crate::kernel::irql::require_dispatch_or_below("WskCloseSocket");
    let ws = Socket as usize;
    let me = std::thread::current().id();
    let r = with(|p| {
        let Some(s) = p.sockets.get_mut(&ws) else {
            return Err(if p.closed.contains(&ws) {
                "socket already closed (double WskCloseSocket)"
            } else {
                "not a WSK socket"
            });
        };
        if s.closing.is_some() {
            return Err("WskCloseSocket already in progress");
        }
        if s.in_calls > 0 {
            return Err("another call on this socket is still executing (W70/C22)");
        }
        if let Some((t, calls)) = &s.accept_thread {
            // Its WskAcceptEvent has not returned: the socket is the provider's until the
            // callback accepts it, and one it rejects the provider closes itself (W49).
            if *t == me {
                return Err("issued inside the socket's own WskAcceptEvent: the provider owns an accepted socket until its accept callback returns (W49/C9)");
            }
            // From another thread: judged when the callback returns (issue 17 item 7).
            crate::wsk::events::listen::close_during_accept(
                ws,
                calls.load(std::sync::atomic::Ordering::SeqCst),
            );
        }
        Ok(())
    });
    if let Err(e) = r {
        crate::kernel::state::violation(format!("WskCloseSocket({ws:#x}): {e}"));
        // SAFETY: complete the client's IRP all the same (W11), if it is a valid one.
        if unsafe { crate::kernel::irp::take(Irp, "WskCloseSocket") } {
            // SAFETY: taken.
            return unsafe { complete::fail(Irp, STATUS_INVALID_PARAMETER) };
        }
        return STATUS_INVALID_PARAMETER;
    }
    // Fault (Config::unfinished_calls): a close that finishes at once closes the socket and
    // returns STATUS_SUCCESS with its IRP never completed (W11 broken on purpose); one that
    // must wait for a running callback returns STATUS_PENDING and completes as usual.
    let leave = crate::kernel::schedule::unfinished(crate::config::Call::WskCloseSocket, Irp);
    // SAFETY: the client passes its IRP.
    if !unsafe { crate::kernel::irp::take(Irp, "WskCloseSocket") } {
        return STATUS_INVALID_PARAMETER;
    }
    let (cancelled, finish_now) = with(|p| {
        let s = p.sockets.get_mut(&ws).expect("checked");
        s.closing = Some(Irp as usize);
        let irps = s.drain_irps();
        if let Some(fd) = s.fd.take() {
            if s.kind != Kind::Datagram && !(s.shut_wr && s.eof) {
                // Not fully disconnected both ways: the close aborts the connection.
                let _ = fd.set_linger(Some(std::time::Duration::ZERO));
            }
            drop(fd);
        }
        s.share_key = None;
        // A callback running on another thread: the close completes after it returns.
        let busy = s.running != 0 && s.running_thread != Some(me);
        let inside = s.running != 0 && s.running_thread == Some(me);
        if busy || inside {
            // Marked pending before the lock is released: the callback's return completes
            // it (W12).
            // SAFETY: taken above.
            unsafe { crate::kernel::irp::mark_pending(Irp) };
        }
        (irps, !busy && !inside)
    });
    if finish_now && leave {
        for irp in cancelled {
            complete::complete_now(irp as PIRP, STATUS_CANCELLED, 0);
        }
        with(|p| remove(p, ws));
        // SAFETY: taken above, never completed: given back as the client handed it over.
        unsafe { crate::kernel::irp::untake(Irp) };
        crate::kernel::preempt::entry("WskCloseSocket");
        return STATUS_SUCCESS;
    }
    let cfg = crate::kernel::state::config();
    if finish_now
        && !cancelled.is_empty()
        && crate::kernel::schedule::chance(cfg.reorder_close_rate)
    {
        // W70 gives no order between the close's completion and those of the IRPs it
        // cancelled: the close completes before, between or after them; those after it
        // complete on another thread.
        let at = crate::kernel::schedule::range(0, cancelled.len());
        for &irp in &cancelled[..at] {
            complete::complete_now(irp as PIRP, STATUS_CANCELLED, 0);
        }
        with(|p| remove(p, ws));
        // SAFETY: taken above; marked before it completes, as STATUS_PENDING is returned.
        unsafe {
            crate::kernel::irp::mark_pending(Irp);
            crate::kernel::irp::complete(Irp, STATUS_SUCCESS, 0);
        }
        for &irp in &cancelled[at..] {
            complete::defer(irp as PIRP, STATUS_CANCELLED, 0);
        }
        return complete::late_return();
    }
    for irp in cancelled {
        complete::complete_now(irp as PIRP, STATUS_CANCELLED, 0);
    }
    if finish_now {
        with(|p| remove(p, ws));
        // SAFETY: taken above.
        unsafe { complete::finish(Irp, STATUS_SUCCESS, 0) }
    } else {
        // The poller completes the close once the running callback returns.
        complete::late_return()
    }
}

/// Makes every socket bound to `local` non-functional (see `faults::kill_socket`).
pub(crate) fn kill(local: std::net::SocketAddr, remote: Option<std::net::SocketAddr>) -> usize {
    let (n, irps) = with(|p| {
        let mut n = 0;
        let mut irps = Vec::new();
        for s in p.sockets.values_mut() {
            if s.bound != Some(local) || s.killed || s.closing.is_some() || s.kind == Kind::Basic {
                continue;
            }
            // Accepted sockets share the listener's local address: a remote picks one.
            let is_conn = s.connected || s.connect.is_some();
            if is_conn != remote.is_some() || (is_conn && s.remote != remote) {
                continue;
            }
            n += 1;
            s.killed = true;
            let keep = std::mem::take(&mut s.disable_waiters);
            irps.extend(s.drain_irps());
            s.disable_waiters = keep;
            if let Some(fd) = s.fd.take() {
                let _ = fd.set_linger(Some(std::time::Duration::ZERO));
            }
            if s.connected {
                // G7: no disconnect event after the NULL indication.
                s.dead = Some(wsk_sys::STATUS_FILE_FORCED_CLOSED);
                s.dead_reported = true;
            }
            super::wake::wake(s.owner);
        }
        (n, irps)
    });
    for irp in irps {
        complete::complete_now(irp as PIRP, wsk_sys::STATUS_FILE_FORCED_CLOSED, 0);
    }
    n
}

/// Connects to `remote` still in progress give up now with STATUS_IO_TIMEOUT, as TCP's SYN
/// retries would after about 21 s on Windows: the host attempt is dropped, a WskSocketConnect's
/// socket goes with it (it was never handed out), a WskConnect's socket stays for its owner
/// to close. Returns how many connects it ended.
pub(crate) fn time_out_connects(remote: std::net::SocketAddr) -> usize {
    let irps = with(|p| {
        let mut irps = Vec::new();
        let ids: Vec<usize> = p
            .sockets
            .iter()
            .filter(|(_, s)| s.connect.is_some() && s.remote == Some(remote) && !s.connected)
            .map(|(ws, _)| *ws)
            .collect();
        for ws in ids {
            let s = p.sockets.get_mut(&ws).expect("listed");
            let (irp, socket_connect) = s.connect.take().expect("listed");
            drop(s.fd.take());
            super::wake::wake(s.owner);
            if socket_connect {
                if let Some(mut s) = remove(p, ws) {
                    drop(s.fd.take());
                }
            }
            irps.push(irp);
        }
        irps
    });
    for &irp in &irps {
        complete::complete_now(irp as PIRP, wsk_sys::STATUS_IO_TIMEOUT, 0);
    }
    irps.len()
}

/// IoCancelIrp on a provider-owned IRP: dequeue it and complete it cancelled.
pub(crate) fn cancel(irp: usize) -> bool {
    let found = dequeue(irp);
    if found {
        complete::complete_now(irp as PIRP, STATUS_CANCELLED, 0);
    }
    found
}

/// The client freed memory holding a pending IRP (a violation already reported): the
/// provider must never touch that IRP again, so it leaves every queue uncompleted.
pub(crate) fn forget(irp: usize) {
    dequeue(irp);
    complete::forget(irp);
    with(|p| {
        for s in p.sockets.values_mut() {
            if let Some(i) = s.sends.iter().position(|r| r.irp == irp) {
                let r = s.sends.remove(i).expect("index");
                // SAFETY: pinned when queued.
                unsafe { crate::kernel::mdl::pin_chain(r.buf.Mdl, -1) };
            }
            if let Some(i) = s.sendtos.iter().position(|r| r.irp == irp) {
                s.sendtos.remove(i);
            }
            if s.connect.is_some_and(|c| c.0 == irp) {
                s.connect = None;
            }
            s.disable_waiters.retain(|d| d.1 != irp);
            if s.closing == Some(irp) {
                s.closing = Some(0);
            }
        }
    });
}

/// Removes a pending receive/accept/disconnect/connect IRP from its socket's queue. A
/// cancelled WskSocketConnect takes its socket with it (never handed out: W23, Information is
/// a socket only on success); a cancelled WskConnect leaves its socket bound and unconnected,
/// the client's to close.
fn dequeue(irp: usize) -> bool {
    with(|p| {
        let connecting = p
            .sockets
            .iter()
            .find(|(_, s)| s.connect.is_some_and(|c| c.0 == irp))
            .map(|(ws, s)| (*ws, s.connect.is_some_and(|c| c.1)));
        if let Some((ws, socket_connect)) = connecting {
            if socket_connect {
                if let Some(mut s) = remove(p, ws) {
                    drop(s.fd.take());
                }
            } else if let Some(s) = p.sockets.get_mut(&ws) {
                s.connect = None;
                s.unanswered = false;
            }
            return true;
        }
        for s in p.sockets.values_mut() {
            if let Some(i) = s.receives.iter().position(|r| r.irp == irp) {
                let r = s.receives.remove(i).expect("index");
                // SAFETY: pinned when queued.
                unsafe { crate::kernel::mdl::pin_chain(r.buf.Mdl, -1) };
                return true;
            }
            if let Some(i) = s.recvfroms.iter().position(|r| r.irp == irp) {
                let r = s.recvfroms.remove(i).expect("index");
                // SAFETY: pinned when queued.
                unsafe { crate::kernel::mdl::pin_chain(r.buf.Mdl, -1) };
                return true;
            }
            if let Some(i) = s.accepts.iter().position(|r| r.irp == irp) {
                s.accepts.remove(i);
                return true;
            }
            // A datagram send still queued (not one being written: the queue holds only
            // requests not yet sent, or the rest of a WskSendMessages list, which the cancel
            // ends; a send that completes first is not cancelled, W76).
            if let Some(i) = s.sendtos.iter().position(|r| r.irp == irp) {
                let r = s.sendtos.remove(i).expect("index");
                for (b, _) in &r.bufs {
                    // SAFETY: pinned when queued.
                    unsafe { crate::kernel::mdl::pin_chain(b.Mdl, -1) };
                }
                return true;
            }
            if s.disconnect == Some(irp) {
                s.disconnect = None;
                return true;
            }
        }
        false
    })
}

/// `IoCancelIrp`: WSK cancels pending receives, accepts, disconnects, connects and datagram
/// sends (W76).
#[no_mangle]
pub unsafe extern "win64" fn IoCancelIrp(Irp: PIRP) -> wsk_sys::BOOLEAN {
    crate::kernel::irql::require_dispatch_or_below("IoCancelIrp");
    // SAFETY: the caller passes a live IRP.
    unsafe { (*Irp).Cancel = 1 };
    wsk_sys::BOOLEAN::from(cancel(Irp as usize))
}
