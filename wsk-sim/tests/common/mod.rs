//! A small WSK client written for the sim's own tests (not the product driver). It calls
//! the sim only through wsk-sys's kernel declarations, as a driver does.
#![allow(
    dead_code,
    clippy::missing_safety_doc,
    clippy::missing_panics_doc,
    non_snake_case
)]

use std::ffi::c_void;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::Mutex;

use wsk_sys::*;

pub mod naive;
pub mod probe;

pub const TAG: u32 = u32::from_le_bytes(*b"Tst1");

static CLIENT_DISPATCH: WSK_CLIENT_DISPATCH = WSK_CLIENT_DISPATCH {
    Version: MAKE_WSK_VERSION(1, 0),
    Reserved: 0,
    WskClientEvent: None,
};

unsafe extern "win64" fn signal_done(_dev: PDEVICE_OBJECT, _irp: PIRP, ctx: PVOID) -> NTSTATUS {
    // SAFETY: ctx is the waiter's KEVENT, alive until it has waited.
    unsafe { KeSetEvent(ctx.cast(), 0, FALSE) };
    STATUS_MORE_PROCESSING_REQUIRED
}

/// Result of a synchronous IRP call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Done {
    pub returned: NTSTATUS,
    pub status: NTSTATUS,
    pub info: usize,
}

/// Calls `f` with a fresh one-location IRP and waits for its completion; checks the W11/W12
/// return protocol on the way.
pub fn sync_call(f: impl FnOnce(PIRP) -> NTSTATUS) -> Done {
    // SAFETY: the usual IRP + event dance; the event outlives the wait.
    unsafe {
        let irp = IoAllocateIrp(1, FALSE);
        assert!(!irp.is_null());
        let mut ev: KEVENT = std::mem::zeroed();
        KeInitializeEvent(&raw mut ev, SynchronizationEvent, FALSE);
        IoSetCompletionRoutine(
            irp,
            Some(signal_done),
            (&raw mut ev).cast(),
            true,
            true,
            true,
        );
        let returned = f(irp);
        let mut timeout = LARGE_INTEGER {
            QuadPart: -10_000 * 10_000,
        }; // 10 s
        let w = KeWaitForSingleObject(
            (&raw mut ev).cast(),
            Executive,
            KernelMode,
            FALSE,
            &raw mut timeout,
        );
        assert_eq!(w, STATUS_SUCCESS, "W11: the IRP was never completed");
        let status = (*irp).IoStatus.Status;
        let info = (*irp).IoStatus.Information;
        if returned == STATUS_PENDING {
            assert_eq!(
                (*irp).PendingReturned,
                TRUE,
                "W12: STATUS_PENDING returned but PendingReturned FALSE"
            );
        } else {
            assert_eq!(
                returned, status,
                "W12: inline return differs from IoStatus.Status"
            );
            assert_eq!(
                (*irp).PendingReturned,
                FALSE,
                "W12: inline completion with PendingReturned TRUE"
            );
        }
        IoFreeIrp(irp);
        Done {
            returned,
            status,
            info,
        }
    }
}

/// A registered, captured WSK client.
pub struct Wsk {
    pub reg: Box<WSK_REGISTRATION>,
    pub npi: WSK_PROVIDER_NPI,
    client_npi: Box<WSK_CLIENT_NPI>,
}

impl Wsk {
    pub fn open() -> Wsk {
        let mut client_npi = Box::new(WSK_CLIENT_NPI {
            ClientContext: null_mut(),
            Dispatch: &raw const CLIENT_DISPATCH,
        });
        let mut reg = Box::new(WSK_REGISTRATION::zeroed());
        let mut npi = WSK_PROVIDER_NPI {
            Client: null_mut(),
            Dispatch: std::ptr::null(),
        };
        // SAFETY: plain registration.
        unsafe {
            assert_eq!(
                WskRegister(&raw mut *client_npi, &raw mut *reg),
                STATUS_SUCCESS
            );
            assert_eq!(
                WskCaptureProviderNPI(&raw mut *reg, WSK_INFINITE_WAIT, &raw mut npi),
                STATUS_SUCCESS
            );
        }
        Wsk {
            reg,
            npi,
            client_npi,
        }
    }

    pub fn close(mut self) {
        // SAFETY: pairs with open.
        unsafe {
            WskReleaseProviderNPI(&raw mut *self.reg);
            WskDeregister(&raw mut *self.reg);
        }
    }

    pub fn dispatch(&self) -> &WSK_PROVIDER_DISPATCH {
        // SAFETY: valid while captured.
        unsafe { &*self.npi.Dispatch }
    }

    pub fn socket(
        &self,
        family: u16,
        ty: u16,
        proto: u32,
        flags: u32,
        ctx: PVOID,
        dispatch: *const c_void,
    ) -> (Done, PWSK_SOCKET) {
        let f = self.dispatch().WskSocket.expect("WskSocket");
        let d = sync_call(|irp| {
            // SAFETY: valid arguments per PFN_WSK_SOCKET.
            unsafe {
                f(
                    self.npi.Client,
                    family,
                    ty,
                    proto,
                    flags,
                    ctx,
                    dispatch,
                    null_mut(),
                    null_mut(),
                    null_mut(),
                    irp,
                )
            }
        });
        let s = if d.status == STATUS_SUCCESS {
            d.info as PWSK_SOCKET
        } else {
            null_mut()
        };
        (d, s)
    }
}

pub fn v4(ip: [u8; 4], port: u16) -> SOCKADDR_IN {
    SOCKADDR_IN {
        sin_family: AF_INET,
        sin_port: port.to_be(),
        sin_addr: IN_ADDR::from_octets(ip),
        sin_zero: [0; 8],
    }
}

pub fn port_of(sa: &SOCKADDR_IN) -> u16 {
    u16::from_be(sa.sin_port)
}

pub unsafe fn basic(s: PWSK_SOCKET) -> &'static WSK_PROVIDER_BASIC_DISPATCH {
    // SAFETY: every provider table starts with the basic table.
    unsafe { &*(*s).Dispatch.cast::<WSK_PROVIDER_BASIC_DISPATCH>() }
}
pub unsafe fn listen_d(s: PWSK_SOCKET) -> &'static WSK_PROVIDER_LISTEN_DISPATCH {
    // SAFETY: caller knows the category.
    unsafe { &*(*s).Dispatch.cast() }
}
pub unsafe fn conn_d(s: PWSK_SOCKET) -> &'static WSK_PROVIDER_CONNECTION_DISPATCH {
    // SAFETY: caller knows the category.
    unsafe { &*(*s).Dispatch.cast() }
}
pub unsafe fn dgram_d(s: PWSK_SOCKET) -> &'static WSK_PROVIDER_DATAGRAM_DISPATCH {
    // SAFETY: caller knows the category.
    unsafe { &*(*s).Dispatch.cast() }
}

pub fn bind(s: PWSK_SOCKET, addr: &mut SOCKADDR_IN) -> Done {
    // SAFETY: listen/connection/datagram tables all have WskBind right after Basic.
    let f = unsafe { listen_d(s) }.WskBind.expect("bind");
    // SAFETY: valid arguments.
    sync_call(|irp| unsafe { f(s, (addr as *mut SOCKADDR_IN).cast(), 0, irp) })
}

pub fn local_addr(s: PWSK_SOCKET, dgram: bool) -> (Done, SOCKADDR_IN) {
    let mut a = v4([0; 4], 0);
    // SAFETY: caller says which table.
    let f = unsafe {
        if dgram {
            dgram_d(s).WskGetLocalAddress
        } else {
            listen_d(s).WskGetLocalAddress
        }
    }
    .expect("local");
    // SAFETY: valid arguments.
    let d = sync_call(|irp| unsafe { f(s, (&raw mut a).cast(), irp) });
    (d, a)
}

pub fn close(s: PWSK_SOCKET) -> Done {
    // SAFETY: basic table.
    let f = unsafe { basic(s) }.WskCloseSocket.expect("close");
    // SAFETY: valid arguments.
    sync_call(|irp| unsafe { f(s, irp) })
}

pub fn enable(s: PWSK_SOCKET, mask: u32) -> NTSTATUS {
    let mut ctl = WSK_EVENT_CALLBACK_CONTROL {
        NpiId: &raw const NPI_WSK_INTERFACE_ID,
        EventMask: mask,
    };
    // SAFETY: basic table.
    let f = unsafe { basic(s) }.WskControlSocket.expect("control");
    // SAFETY: valid arguments; no IRP when enabling (W30).
    unsafe {
        f(
            s,
            WskSetOption,
            SO_WSK_EVENT_CALLBACK,
            SOL_SOCKET,
            std::mem::size_of::<WSK_EVENT_CALLBACK_CONTROL>(),
            (&raw mut ctl).cast(),
            0,
            null_mut(),
            null_mut(),
            null_mut(),
        )
    }
}

/// Disables one event with an IRP and waits: no invocation of it after this (W33).
pub fn disable(s: PWSK_SOCKET, event: u32) -> Done {
    let mut ctl = WSK_EVENT_CALLBACK_CONTROL {
        NpiId: &raw const NPI_WSK_INTERFACE_ID,
        EventMask: event | WSK_EVENT_DISABLE,
    };
    // SAFETY: basic table.
    let f = unsafe { basic(s) }.WskControlSocket.expect("control");
    // SAFETY: valid arguments; the control block outlives the call (sync_call waits).
    sync_call(|irp| unsafe {
        f(
            s,
            WskSetOption,
            SO_WSK_EVENT_CALLBACK,
            SOL_SOCKET,
            std::mem::size_of::<WSK_EVENT_CALLBACK_CONTROL>(),
            (&raw mut ctl).cast(),
            0,
            null_mut(),
            null_mut(),
            irp,
        )
    })
}

/// Pool buffer + MDL describing it.
pub struct PoolBuf {
    pub ptr: *mut u8,
    pub len: usize,
    pub mdl: PMDL,
}

impl PoolBuf {
    pub fn new(len: usize) -> PoolBuf {
        // SAFETY: plain allocation + MDL over it.
        unsafe {
            let ptr = ExAllocatePool2(POOL_FLAG_NON_PAGED, len.max(1), TAG).cast::<u8>();
            assert!(!ptr.is_null());
            let mdl = IoAllocateMdl(ptr.cast(), len as u32, FALSE, FALSE, null_mut());
            assert!(!mdl.is_null());
            MmBuildMdlForNonPagedPool(mdl);
            PoolBuf { ptr, len, mdl }
        }
    }
    pub fn from(data: &[u8]) -> PoolBuf {
        let b = PoolBuf::new(data.len());
        // SAFETY: `len` bytes of pool.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), b.ptr, data.len()) };
        b
    }
    pub fn wsk_buf(&self) -> WSK_BUF {
        WSK_BUF {
            Mdl: self.mdl,
            Offset: 0,
            Length: self.len,
        }
    }
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes of pool.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
    pub fn free(self) {
        // SAFETY: allocated in new.
        unsafe {
            IoFreeMdl(self.mdl);
            ExFreePoolWithTag(self.ptr.cast(), TAG);
        }
    }
}

/// Reads the bytes a WSK_BUF describes (whole MDL chain, Offset in the first MDL).
pub unsafe fn read_wsk_buf(b: &WSK_BUF) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.Length);
    let mut mdl = b.Mdl;
    let mut off = b.Offset as usize;
    while out.len() < b.Length && !mdl.is_null() {
        // SAFETY: a valid chain per the WSK_BUF contract.
        unsafe {
            let va = MmGetSystemAddressForMdlSafe(mdl, NormalPagePriority).cast::<u8>();
            assert!(!va.is_null());
            let n = ((*mdl).ByteCount as usize - off).min(b.Length - out.len());
            out.extend_from_slice(std::slice::from_raw_parts(va.add(off), n));
            off = 0;
            mdl = (*mdl).Next;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// An echo server over events: TCP (listen + accepted sockets) and UDP.

/// Per-connection state; freed when the close completes.
pub struct Conn {
    pub sock: AtomicPtr<WSK_SOCKET>,
    pub inflight: AtomicUsize,
    pub closing: AtomicBool,
    pub close_started: AtomicBool,
    pub server: *const Server,
}

pub struct Server {
    /// Echo from the indication without copying (retain + WskRelease after the send).
    pub zero_copy: bool,
    pub conns_live: AtomicUsize,
    pub conns_total: AtomicUsize,
    pub bytes: AtomicUsize,
    pub dgrams: AtomicUsize,
    pub dgram_sock: AtomicPtr<WSK_SOCKET>,
    pub errors: Mutex<Vec<String>>,
    pub inflight_udp: AtomicUsize,
    /// Under fault injection, failed sends are expected and not errors.
    pub tolerate_failures: AtomicBool,
}

// SAFETY: the raw server pointer in Conn is only read; Server's fields are atomics/mutex.
unsafe impl Send for Server {}
// SAFETY: as above.
unsafe impl Sync for Server {}

impl Server {
    pub fn new(zero_copy: bool) -> Box<Server> {
        Box::new(Server {
            zero_copy,
            conns_live: AtomicUsize::new(0),
            conns_total: AtomicUsize::new(0),
            bytes: AtomicUsize::new(0),
            dgrams: AtomicUsize::new(0),
            dgram_sock: AtomicPtr::new(null_mut()),
            errors: Mutex::new(Vec::new()),
            inflight_udp: AtomicUsize::new(0),
            tolerate_failures: AtomicBool::new(false),
        })
    }
    fn error(&self, e: String) {
        self.errors.lock().unwrap().push(e);
    }
}

pub static LISTEN_DISPATCH: WSK_CLIENT_LISTEN_DISPATCH = WSK_CLIENT_LISTEN_DISPATCH {
    WskAcceptEvent: Some(on_accept),
    WskInspectEvent: None,
    WskAbortEvent: None,
};
pub static CONN_DISPATCH: WSK_CLIENT_CONNECTION_DISPATCH = WSK_CLIENT_CONNECTION_DISPATCH {
    WskReceiveEvent: Some(on_receive),
    WskDisconnectEvent: Some(on_disconnect),
    WskSendBacklogEvent: None,
};
pub static DGRAM_DISPATCH: WSK_CLIENT_DATAGRAM_DISPATCH = WSK_CLIENT_DATAGRAM_DISPATCH {
    WskReceiveFromEvent: Some(on_receive_from),
};

fn check_irql(flags: u32, what: &str, server: &Server) {
    // SAFETY: plain IRQL query.
    let irql = KeGetCurrentIrql();
    let flagged = flags & WSK_FLAG_AT_DISPATCH_LEVEL != 0;
    if irql > DISPATCH_LEVEL || (flagged && irql != DISPATCH_LEVEL) {
        server.error(format!(
            "{what}: IRQL {irql}, AT_DISPATCH flag {flagged} (W43)"
        ));
    }
}

unsafe extern "win64" fn on_accept(
    ctx: PVOID,
    flags: ULONG,
    _local: PSOCKADDR,
    _remote: PSOCKADDR,
    accept: PWSK_SOCKET,
    accept_ctx: *mut PVOID,
    accept_dispatch: *mut *const WSK_CLIENT_CONNECTION_DISPATCH,
) -> NTSTATUS {
    // SAFETY: ctx is the Server, alive while the listener lives.
    let server = unsafe { &*(ctx as *const Server) };
    check_irql(flags, "WskAcceptEvent", server);
    if accept.is_null() {
        return STATUS_REQUEST_NOT_ACCEPTED;
    }
    let conn = Box::into_raw(Box::new(Conn {
        sock: AtomicPtr::new(accept),
        inflight: AtomicUsize::new(0),
        closing: AtomicBool::new(false),
        close_started: AtomicBool::new(false),
        server,
    }));
    server.conns_live.fetch_add(1, Ordering::SeqCst);
    server.conns_total.fetch_add(1, Ordering::SeqCst);
    // SAFETY: the provider's out-parameters.
    unsafe {
        *accept_ctx = conn.cast();
        *accept_dispatch = &raw const CONN_DISPATCH;
    }
    STATUS_SUCCESS
}

struct SendCtx {
    irp: PIRP,
    buf: Option<PoolBuf>,
    conn: *const Conn,
    /// Zero-copy: the retained list and how many sends still use it.
    list: PWSK_DATA_INDICATION,
    list_refs: *const AtomicUsize,
}

unsafe extern "win64" fn on_send_done(_dev: PDEVICE_OBJECT, irp: PIRP, ctx: PVOID) -> NTSTATUS {
    // SAFETY: ctx is the SendCtx of this IRP.
    let sc = unsafe { Box::from_raw(ctx.cast::<SendCtx>()) };
    // SAFETY: the Conn outlives its in-flight sends.
    let conn = unsafe { &*sc.conn };
    // SAFETY: the Server outlives its connections.
    let server = unsafe { &*conn.server };
    // SAFETY: completed IRP.
    let st = unsafe { (*irp).IoStatus.Status };
    if st != STATUS_SUCCESS
        && st != STATUS_CANCELLED
        && st != STATUS_CONNECTION_RESET
        && st != STATUS_CONNECTION_ABORTED
        && !server.tolerate_failures.load(Ordering::SeqCst)
    {
        server.error(format!("send completed with {st:#x}"));
    }
    if let Some(b) = sc.buf {
        b.free();
    }
    if !sc.list.is_null() {
        // SAFETY: the counter lives until the last send of the list completes.
        let refs = unsafe { &*sc.list_refs };
        if refs.fetch_sub(1, Ordering::SeqCst) == 1 {
            let sock = conn.sock.load(Ordering::SeqCst);
            // SAFETY: still open: the close waits for in-flight sends.
            let st = unsafe { (conn_d(sock).WskRelease.expect("release"))(sock, sc.list) };
            if st != STATUS_SUCCESS {
                server.error(format!("WskRelease {st:#x}"));
            }
            // SAFETY: allocated with the list.
            drop(unsafe { Box::from_raw(sc.list_refs.cast_mut()) });
        }
    }
    // SAFETY: ours.
    unsafe { IoFreeIrp(irp) };
    if conn.inflight.fetch_sub(1, Ordering::SeqCst) == 1 && conn.closing.load(Ordering::SeqCst) {
        start_close(sc.conn);
    }
    STATUS_MORE_PROCESSING_REQUIRED
}

unsafe extern "win64" fn on_close_done(_dev: PDEVICE_OBJECT, irp: PIRP, ctx: PVOID) -> NTSTATUS {
    // SAFETY: ctx is the Conn; the close is its last use.
    let conn = unsafe { Box::from_raw(ctx.cast::<Conn>()) };
    // SAFETY: the Server outlives its connections.
    let server = unsafe { &*conn.server };
    // SAFETY: ours.
    unsafe { IoFreeIrp(irp) };
    server.conns_live.fetch_sub(1, Ordering::SeqCst);
    STATUS_MORE_PROCESSING_REQUIRED
}

fn start_close(conn: *const Conn) {
    // SAFETY: live until on_close_done.
    let c = unsafe { &*conn };
    if c.close_started.swap(true, Ordering::SeqCst) {
        return;
    }
    let sock = c.sock.load(Ordering::SeqCst);
    // SAFETY: async close with its own IRP; the Conn is freed in its completion.
    unsafe {
        let irp = IoAllocateIrp(1, FALSE);
        IoSetCompletionRoutine(
            irp,
            Some(on_close_done),
            conn.cast_mut().cast(),
            true,
            true,
            true,
        );
        (basic(sock).WskCloseSocket.expect("close"))(sock, irp);
    }
}

fn request_close(conn: *const Conn) {
    // SAFETY: live until on_close_done.
    let c = unsafe { &*conn };
    c.closing.store(true, Ordering::SeqCst);
    if c.inflight.load(Ordering::SeqCst) == 0 {
        start_close(conn);
    }
}

unsafe extern "win64" fn on_receive(
    ctx: PVOID,
    flags: ULONG,
    ind: PWSK_DATA_INDICATION,
    bytes: SIZE_T,
    _accepted: *mut SIZE_T,
) -> NTSTATUS {
    let conn = ctx as *const Conn;
    // SAFETY: live while the socket is open.
    let c = unsafe { &*conn };
    // SAFETY: the Server outlives its connections.
    let server = unsafe { &*c.server };
    check_irql(flags, "WskReceiveEvent", server);
    if ind.is_null() {
        request_close(conn);
        return STATUS_SUCCESS;
    }
    if c.closing.load(Ordering::SeqCst) {
        return STATUS_SUCCESS;
    }
    let sock = c.sock.load(Ordering::SeqCst);
    server.bytes.fetch_add(bytes, Ordering::SeqCst);
    // SAFETY: the provider's list, valid during the callback (and until release if kept).
    unsafe {
        let mut total = 0;
        let mut n = 0;
        let mut cur = ind;
        while !cur.is_null() {
            total += (*cur).Buffer.Length;
            n += 1;
            cur = (*cur).Next;
        }
        if total != bytes {
            server.error(format!(
                "BytesIndicated {bytes} != list total {total} (W51)"
            ));
        }
        let zero_copy = server.zero_copy && flags & WSK_FLAG_RELEASE_ASAP == 0;
        // One reference per send plus one for this callback: the list is released by
        // whoever finishes last, and never before the callback has returned PENDING.
        let refs: *const AtomicUsize = if zero_copy {
            Box::into_raw(Box::new(AtomicUsize::new(n + 1)))
        } else {
            std::ptr::null()
        };
        let mut cur = ind;
        while !cur.is_null() {
            let irp = IoAllocateIrp(1, FALSE);
            let (mut wb, buf) = if zero_copy {
                ((*cur).Buffer, None)
            } else {
                let data = read_wsk_buf(&(*cur).Buffer);
                let b = PoolBuf::from(&data);
                (b.wsk_buf(), Some(b))
            };
            let sc = Box::into_raw(Box::new(SendCtx {
                irp,
                buf,
                conn,
                list: if zero_copy { ind } else { null_mut() },
                list_refs: refs,
            }));
            c.inflight.fetch_add(1, Ordering::SeqCst);
            IoSetCompletionRoutine(irp, Some(on_send_done), sc.cast(), true, true, true);
            (conn_d(sock).WskSend.expect("send"))(sock, &raw mut wb, 0, irp);
            cur = (*cur).Next;
        }
        if zero_copy && (*refs).fetch_sub(1, Ordering::SeqCst) != 1 {
            STATUS_PENDING
        } else {
            if zero_copy {
                // Every send already completed: nothing to retain.
                drop(Box::from_raw(refs.cast_mut()));
            }
            STATUS_SUCCESS
        }
    }
}

unsafe extern "win64" fn on_disconnect(ctx: PVOID, flags: ULONG) -> NTSTATUS {
    // SAFETY: live while the socket is open.
    let c = unsafe { &*(ctx as *const Conn) };
    // SAFETY: the Server outlives its connections.
    check_irql(flags, "WskDisconnectEvent", unsafe { &*c.server });
    request_close(ctx as *const Conn);
    STATUS_SUCCESS
}

struct UdpSend {
    buf: Option<PoolBuf>,
    addr: SOCKADDR_IN6,
    server: *const Server,
    list: PWSK_DATAGRAM_INDICATION,
    refs: *const AtomicUsize,
}

unsafe extern "win64" fn on_udp_sent(_dev: PDEVICE_OBJECT, irp: PIRP, ctx: PVOID) -> NTSTATUS {
    // SAFETY: ctx is this IRP's UdpSend.
    let u = unsafe { Box::from_raw(ctx.cast::<UdpSend>()) };
    // SAFETY: the Server outlives the socket.
    let server = unsafe { &*u.server };
    // SAFETY: completed IRP.
    let st = unsafe { (*irp).IoStatus.Status };
    if st != STATUS_SUCCESS
        && st != STATUS_CANCELLED
        && !server.tolerate_failures.load(Ordering::SeqCst)
    {
        server.error(format!("sendto completed with {st:#x}"));
    }
    if let Some(b) = u.buf {
        b.free();
    }
    // SAFETY: the counter lives until the list is released.
    if !u.list.is_null() && unsafe { &*u.refs }.fetch_sub(1, Ordering::SeqCst) == 1 {
        // SAFETY: allocated with the list.
        drop(unsafe { Box::from_raw(u.refs.cast_mut()) });
        let sock = server.dgram_sock.load(Ordering::SeqCst);
        // SAFETY: the socket is closed only after in-flight sends drain.
        let st = unsafe { (dgram_d(sock).WskRelease.expect("release"))(sock, u.list) };
        if st != STATUS_SUCCESS {
            server.error(format!("WskRelease(datagram) {st:#x}"));
        }
    }
    // SAFETY: ours.
    unsafe { IoFreeIrp(irp) };
    server.inflight_udp.fetch_sub(1, Ordering::SeqCst);
    STATUS_MORE_PROCESSING_REQUIRED
}

unsafe extern "win64" fn on_receive_from(
    ctx: PVOID,
    flags: ULONG,
    ind: PWSK_DATAGRAM_INDICATION,
) -> NTSTATUS {
    // SAFETY: ctx is the Server.
    let server = unsafe { &*(ctx as *const Server) };
    check_irql(flags, "WskReceiveFromEvent", server);
    if ind.is_null() {
        return STATUS_SUCCESS;
    }
    let sock = server.dgram_sock.load(Ordering::SeqCst);
    // SAFETY: the provider's list, valid during the callback.
    unsafe {
        let mut n = 0;
        let mut cur = ind;
        while !cur.is_null() {
            n += 1;
            cur = (*cur).Next;
        }
        let refs: *const AtomicUsize = Box::into_raw(Box::new(AtomicUsize::new(n + 1)));
        let mut cur = ind;
        while !cur.is_null() {
            let next = (*cur).Next;
            server.dgrams.fetch_add(1, Ordering::SeqCst);
            let mut addr: SOCKADDR_IN6 = std::mem::zeroed();
            std::ptr::copy_nonoverlapping(
                (*cur).RemoteAddress.cast::<u8>(),
                (&raw mut addr).cast::<u8>(),
                std::mem::size_of::<SOCKADDR_IN>(),
            );
            let irp = IoAllocateIrp(1, FALSE);
            let (mut wb, buf, list) = if server.zero_copy {
                ((*cur).Buffer, None, ind)
            } else {
                let data = read_wsk_buf(&(*cur).Buffer);
                let b = PoolBuf::from(&data);
                (b.wsk_buf(), Some(b), null_mut())
            };
            let u = Box::into_raw(Box::new(UdpSend {
                buf,
                addr,
                server,
                list,
                refs,
            }));
            server.inflight_udp.fetch_add(1, Ordering::SeqCst);
            IoSetCompletionRoutine(irp, Some(on_udp_sent), u.cast(), true, true, true);
            (dgram_d(sock).WskSendTo.expect("sendto"))(
                sock,
                &raw mut wb,
                0,
                (&raw mut (*u).addr).cast(),
                0,
                null_mut(),
                irp,
            );
            cur = next;
        }
        if server.zero_copy && (*refs).fetch_sub(1, Ordering::SeqCst) != 1 {
            STATUS_PENDING
        } else {
            // Copy mode, or every send already completed: nothing retained.
            drop(Box::from_raw(refs.cast_mut()));
            STATUS_SUCCESS
        }
    }
}

/// Opens a TCP echo listener on 127.0.0.1:0 with inherited connection events.
pub fn tcp_echo_listener(wsk: &Wsk, server: &Server) -> (PWSK_SOCKET, u16) {
    let (d, ls) = wsk.socket(
        AF_INET,
        SOCK_STREAM,
        IPPROTO_TCP,
        WSK_FLAG_LISTEN_SOCKET,
        std::ptr::from_ref(server).cast_mut().cast(),
        (&raw const LISTEN_DISPATCH).cast(),
    );
    assert_eq!(d.status, STATUS_SUCCESS);
    let mut a = v4([127, 0, 0, 1], 0);
    assert_eq!(bind(ls, &mut a).status, STATUS_SUCCESS);
    assert_eq!(
        enable(ls, WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT),
        STATUS_SUCCESS
    );
    assert_eq!(enable(ls, WSK_EVENT_ACCEPT), STATUS_SUCCESS);
    let (d, la) = local_addr(ls, false);
    assert_eq!(d.status, STATUS_SUCCESS);
    (ls, port_of(&la))
}

/// Opens a UDP echo socket on 127.0.0.1:0.
pub fn udp_echo_socket(wsk: &Wsk, server: &Server) -> (PWSK_SOCKET, u16) {
    let (d, s) = wsk.socket(
        AF_INET,
        SOCK_DGRAM,
        IPPROTO_UDP,
        WSK_FLAG_DATAGRAM_SOCKET,
        std::ptr::from_ref(server).cast_mut().cast(),
        (&raw const DGRAM_DISPATCH).cast(),
    );
    assert_eq!(d.status, STATUS_SUCCESS);
    server.dgram_sock.store(s, Ordering::SeqCst);
    let mut a = v4([127, 0, 0, 1], 0);
    assert_eq!(bind(s, &mut a).status, STATUS_SUCCESS);
    assert_eq!(enable(s, WSK_EVENT_RECEIVE_FROM), STATUS_SUCCESS);
    let (d, la) = local_addr(s, true);
    assert_eq!(d.status, STATUS_SUCCESS);
    (s, port_of(&la))
}

/// Waits until `f` holds (bounded).
pub fn wait_until(what: &str, secs: u64, f: impl Fn() -> bool) {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !f() {
        assert!(
            std::time::Instant::now() < end,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}
