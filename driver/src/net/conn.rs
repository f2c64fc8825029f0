//! TCP connection contexts: a pre-sized pool (allocated at start-up, never on the data path),
//! the receive / disconnect / send-backlog callbacks and the send pump.
//!
//! All decisions are made by `service::tcp::TcpState` under the connection's spin lock; this
//! module performs the WSK calls it hands out, outside the lock, one at a time per connection.

use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use control::config::Mode as CfgMode;
use wsk_sys::{
    ExAcquireRundownProtection, ExReleaseRundownProtection, IoFreeMdl, WskIoctl, FALSE, NTSTATUS,
    NT_SUCCESS, PDEVICE_OBJECT, PIRP, PMDL, PVOID, SIO_WSK_QUERY_IDEAL_SEND_BACKLOG, SIZE_T,
    STATUS_DATA_NOT_ACCEPTED, STATUS_MORE_PROCESSING_REQUIRED, STATUS_PENDING, STATUS_SUCCESS,
    ULONG, WSK_BUF, WSK_CLIENT_CONNECTION_DISPATCH, WSK_DATA_INDICATION, WSK_FLAG_ABORTIVE,
    WSK_FLAG_NODELAY, WSK_FLAG_RELEASE_ASAP, WSK_PROVIDER_CONNECTION_DISPATCH, WSK_SOCKET,
};

use super::{build_mdl, mdl, Driver};
use crate::kernel::lock::SpinLock;
use crate::kernel::{irp, pool};
use crate::service::sockperf::TcpFramer;
use crate::service::tcp::{RecvDecision, SendKind, TcpState, Work, MAX_SLOTS};
use crate::service::Service;
use crate::stats::Counter;

/// One outstanding send: its IRP and the WSK_BUF it describes (valid until completion, W14).
pub struct SendSlot {
    pub conn: *mut Conn,
    pub idx: usize,
    pub irp: PIRP,
    pub buf: WSK_BUF,
    /// The retained indication a zero-copy send uses (released once, C3).
    pub indication: *mut WSK_DATA_INDICATION,
}

pub struct Conn {
    pub drv: *const Driver,
    pub socket: *mut WSK_SOCKET,
    pub st: SpinLock<TcpState>,
    /// Touched only by the receive callback, which WSK serialises per socket (W45).
    pub framer: UnsafeCell<TcpFramer>,
    pub slots: [SendSlot; MAX_SLOTS],
    pub rx_irp: PIRP,
    pub rx_buf: WSK_BUF,
    pub disc_irp: PIRP,
    pub close_irp: PIRP,
    /// SIO_WSK_QUERY_IDEAL_SEND_BACKLOG at accept (W36, IRP required W30). Its own IRP: every
    /// other IRP of the context may be needed while the query is still pending.
    pub query_irp: PIRP,
    /// The query's output, one SIZE_T (valid until the query IRP completes, W14).
    pub query_out: SIZE_T,
    pub ring: *mut u8,
    pub ring_mdl: PMDL,
    pub index: usize,
    /// In use (read without the lock by the housekeeper's scan).
    pub live: AtomicBool,
    /// Outbound load-job connection (socket null until WskSocketConnect completes).
    pub job: bool,
    /// Per-service counter slot of the accepting listener (`stats::NO_SLOT` for jobs).
    pub svc_slot: usize,
    /// WskSocketConnect addresses (valid until its IRP completes, W14).
    pub local: super::addr::SockAddrBuf,
    pub remote: super::addr::SockAddrBuf,
}

/// Pre-sized pool of connection contexts (max_connections of them), a free stack under a
/// spin lock. Contexts are freed only at unload, so a stale pointer is never dangling.
pub struct ConnPool {
    pub conns: *mut *mut Conn,
    pub n: usize,
    free: SpinLock<FreeStack>,
    active: AtomicUsize,
}

struct FreeStack {
    items: *mut u32,
    len: usize,
}

static CONN_DISPATCH: WSK_CLIENT_CONNECTION_DISPATCH = WSK_CLIENT_CONNECTION_DISPATCH {
    WskReceiveEvent: Some(receive_event),
    WskDisconnectEvent: Some(disconnect_event),
    WskSendBacklogEvent: Some(send_backlog_event),
};

pub fn dispatch() -> *const WSK_CLIENT_CONNECTION_DISPATCH {
    ptr::addr_of!(CONN_DISPATCH)
}

fn service_of(m: CfgMode) -> Service {
    match m {
        CfgMode::Echo => Service::Echo,
        CfgMode::Discard => Service::Discard,
        CfgMode::Source => Service::Source,
        CfgMode::Sockperf => Service::Sockperf,
    }
}

impl ConnPool {
    pub const fn empty() -> Self {
        Self {
            conns: ptr::null_mut(),
            n: 0,
            free: SpinLock::new(FreeStack {
                items: ptr::null_mut(),
                len: 0,
            }),
            active: AtomicUsize::new(0),
        }
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Allocates `n` contexts with their IRPs, rings and MDLs. PASSIVE_LEVEL (start-up).
    /// On failure everything allocated so far is kept and freed by [`free`](Self::free).
    pub fn init(&mut self, drv: *const Driver, n: usize, ring_bytes: usize) -> bool {
        self.conns = pool::alloc(n * core::mem::size_of::<*mut Conn>(), pool::TAG_CONN).cast();
        let items: *mut u32 = pool::alloc(n * 4, pool::TAG_CONN).cast();
        self.free.get_mut().items = items;
        if self.conns.is_null() || items.is_null() {
            return false;
        }
        for i in 0..n {
            let c = alloc_conn(drv, i, ring_bytes);
            if c.is_null() {
                return false;
            }
            // SAFETY: i < n, both arrays have n entries.
            unsafe {
                *self.conns.add(i) = c;
                *items.add(i) = i as u32;
            }
            self.n = i + 1;
            self.free.get_mut().len = i + 1;
        }
        true
    }

    fn get(&self) -> Option<*mut Conn> {
        let mut f = self.free.lock();
        if f.len == 0 {
            return None;
        }
        f.len -= 1;
        // SAFETY: len < n entries initialised.
        let i = unsafe { *f.items.add(f.len) } as usize;
        self.active.fetch_add(1, Ordering::SeqCst);
        // SAFETY: i < n.
        Some(unsafe { *self.conns.add(i) })
    }

    fn put(&self, c: &Conn) {
        let mut f = self.free.lock();
        // SAFETY: at most n entries are ever free.
        unsafe { *f.items.add(f.len) = c.index as u32 };
        f.len += 1;
        self.active.fetch_sub(1, Ordering::SeqCst);
    }

    /// Live contexts `pick` selects (connecting ones included).
    pub fn count_where(&self, pick: impl Fn(&Conn) -> bool) -> usize {
        (0..self.n)
            .filter(|&i| {
                // SAFETY: i < n; contexts live until free().
                let c = unsafe { &**self.conns.add(i) };
                let _g = c.st.lock();
                c.live.load(Ordering::Relaxed) && pick(c)
            })
            .count()
    }

    /// Periodic kick (PASSIVE_LEVEL, start-up thread): connections whose indications are
    /// refused get one more zero-length WskReceive attempt (C5). Needed because a resume that
    /// races with the refusing callback's return is undone by the provider (G2).
    pub fn kick_blocked(&self) {
        if self.active() == 0 {
            return;
        }
        for i in 0..self.n {
            // SAFETY: i < n; contexts live until free().
            let c = unsafe { *self.conns.add(i) };
            // SAFETY: pooled context.
            let r = unsafe { &*c };
            if !r.live.load(Ordering::Relaxed) {
                continue;
            }
            let go = {
                let mut st = r.st.lock();
                r.live.load(Ordering::Relaxed)
                    && !r.socket.is_null()
                    && !st.close_issued()
                    && st.kick()
            };
            if go {
                // SAFETY: live context.
                unsafe { pump(c) };
            }
        }
    }

    /// Pumps every live connection `pick` selects (paced load jobs after their budget grew).
    /// PASSIVE_LEVEL (housekeeper).
    pub fn pump_where(&self, pick: impl Fn(&Conn) -> bool) {
        if self.active() == 0 {
            return;
        }
        for i in 0..self.n {
            // SAFETY: i < n; contexts live until free().
            let c = unsafe { *self.conns.add(i) };
            // SAFETY: pooled context.
            let r = unsafe { &*c };
            let go = {
                let st = r.st.lock();
                r.live.load(Ordering::Relaxed) && pick(r) && !st.close_issued() && st.wants_ticket()
            };
            if go {
                // SAFETY: live context with a socket (checked under its lock: the close is
                // issued by the pump itself, so it cannot have started).
                unsafe { pump(c) };
            }
        }
    }

    /// Graceful (echo the rest, FIN, close) or abortive teardown of every live connection.
    /// PASSIVE_LEVEL (unload).
    pub fn shutdown_all(&self, abortive: bool) {
        self.shutdown_where(abortive, |_| true);
    }

    /// As shutdown_all for the connections `pick` selects. Connections still connecting are
    /// skipped: their connect completion sees the stop and aborts them.
    pub fn shutdown_where(&self, abortive: bool, pick: impl Fn(&Conn) -> bool) {
        for i in 0..self.n {
            // SAFETY: i < n; contexts live until free().
            let c = unsafe { &mut **self.conns.add(i) };
            {
                let mut st = c.st.lock();
                if !c.live.load(Ordering::Relaxed)
                    || c.socket.is_null()
                    || st.close_issued()
                    || !pick(c)
                {
                    continue;
                }
                if abortive {
                    st.abort();
                } else {
                    st.local_shutdown();
                }
            }
            // SAFETY: the context is live and active.
            unsafe { pump(c) };
        }
    }

    /// # Safety
    /// No connection is open (after the rundown wait).
    pub unsafe fn free(&mut self) {
        for i in 0..self.n {
            // SAFETY: i < n.
            unsafe { free_conn(*self.conns.add(i)) };
        }
        // SAFETY: blocks from init, nothing references them any more.
        unsafe {
            pool::free(self.conns.cast(), pool::TAG_CONN);
            pool::free(self.free.get_mut().items.cast(), pool::TAG_CONN);
        }
        self.conns = ptr::null_mut();
        self.free.get_mut().items = ptr::null_mut();
        self.n = 0;
    }
}

fn alloc_conn(drv: *const Driver, index: usize, ring_bytes: usize) -> *mut Conn {
    let c: *mut Conn = pool::alloc_zeroed(pool::TAG_CONN);
    if c.is_null() {
        return c;
    }
    // SAFETY: fresh zeroed block; every field is written before use.
    unsafe {
        ptr::write(
            c,
            Conn {
                drv,
                socket: ptr::null_mut(),
                st: SpinLock::new(TcpState::new(
                    crate::service::tcp::Mode::Discard,
                    ring_bytes,
                    1,
                    1,
                    0,
                )),
                framer: UnsafeCell::new(TcpFramer::new()),
                slots: core::array::from_fn(|i| SendSlot {
                    conn: c,
                    idx: i,
                    irp: irp::alloc(),
                    buf: WSK_BUF {
                        Mdl: ptr::null_mut(),
                        Offset: 0,
                        Length: 0,
                    },
                    indication: ptr::null_mut(),
                }),
                rx_irp: irp::alloc(),
                rx_buf: WSK_BUF {
                    Mdl: ptr::null_mut(),
                    Offset: 0,
                    Length: 0,
                },
                disc_irp: irp::alloc(),
                close_irp: irp::alloc(),
                query_irp: irp::alloc(),
                query_out: 0,
                ring: pool::alloc(ring_bytes, pool::TAG_CONN),
                ring_mdl: ptr::null_mut(),
                index,
                live: AtomicBool::new(false),
                job: false,
                svc_slot: crate::stats::NO_SLOT,
                local: super::addr::SockAddrBuf::zeroed(),
                remote: super::addr::SockAddrBuf::zeroed(),
            },
        );
        let r = &mut *c;
        if !r.ring.is_null() {
            r.ring_mdl = build_mdl(r.ring, ring_bytes);
        }
        let ok = !r.ring_mdl.is_null()
            && !r.rx_irp.is_null()
            && !r.disc_irp.is_null()
            && !r.close_irp.is_null()
            && !r.query_irp.is_null()
            && r.slots.iter().all(|s| !s.irp.is_null());
        if !ok {
            free_conn(c);
            return ptr::null_mut();
        }
    }
    c
}

/// # Safety
/// `c` from alloc_conn, not in use by WSK.
unsafe fn free_conn(c: *mut Conn) {
    if c.is_null() {
        return;
    }
    // SAFETY: per the caller.
    unsafe {
        let r = &mut *c;
        for s in &r.slots {
            irp::free(s.irp);
        }
        irp::free(r.rx_irp);
        irp::free(r.disc_irp);
        irp::free(r.close_irp);
        irp::free(r.query_irp);
        if !r.ring_mdl.is_null() {
            IoFreeMdl(r.ring_mdl);
        }
        pool::free(r.ring, pool::TAG_CONN);
        pool::free_typed(c, pool::TAG_CONN);
    }
}

impl Conn {
    fn drv(&self) -> &Driver {
        // SAFETY: the driver state outlives every connection.
        unsafe { &*self.drv }
    }

    /// Takes a context for a newly accepted socket. IRQL <= DISPATCH_LEVEL.
    /// None = refuse (pool empty or unloading).
    ///
    /// # Safety
    /// `sock` is the accepted socket.
    pub unsafe fn attach(
        drv: &Driver,
        mode: CfgMode,
        slot: usize,
        sock: *mut WSK_SOCKET,
    ) -> Option<*mut Conn> {
        let c = drv.conns.get()?;
        // Every live context holds the rundown until its close completes (C29/C30).
        // SAFETY: the rundown is initialised for the driver's lifetime.
        if unsafe { ExAcquireRundownProtection(ptr::addr_of!(drv.rundown).cast_mut()) } == FALSE {
            // SAFETY: c came from get().
            drv.conns.put(unsafe { &*c });
            return None;
        }
        // SAFETY: c is ours (off the free stack): nobody else touches it until published.
        let r = unsafe { &mut *c };
        let lim = &drv.cfg.limits;
        let svc = service_of(mode);
        r.socket = sock;
        r.svc_slot = slot;
        r.live.store(true, Ordering::SeqCst);
        r.job = false;
        *r.framer.get_mut() = TcpFramer::new();
        let ring_cap = r.st.get_mut().ring.capacity();
        *r.st.get_mut() = TcpState::new(
            svc.tcp_mode(),
            ring_cap,
            4,
            16 * 1024,
            lim.max_retained_per_conn as usize,
        );
        // Housekeeping ticks every 5 ms.
        r.st.get_mut().shutdown_limit_ticks = lim.disconnect_timeout_ms.div_ceil(5).max(1);
        for s in &mut r.slots {
            s.indication = ptr::null_mut();
        }
        Some(c)
    }

    /// Takes a context for an outbound (load-job) connection; the socket comes later from
    /// WskSocketConnect. IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    /// `drv` is the loaded driver.
    pub unsafe fn attach_outbound(
        drv: &Driver,
        mode: crate::service::tcp::Mode,
    ) -> Option<*mut Conn> {
        let c = drv.conns.get()?;
        // SAFETY: the rundown is initialised for the driver's lifetime.
        if unsafe { ExAcquireRundownProtection(ptr::addr_of!(drv.rundown).cast_mut()) } == FALSE {
            // SAFETY: c came from get().
            drv.conns.put(unsafe { &*c });
            return None;
        }
        // SAFETY: off the free stack, not yet published.
        let r = unsafe { &mut *c };
        let ring_cap = r.st.get_mut().ring.capacity();
        *r.st.get_mut() = TcpState::new(mode, ring_cap, 4, 16 * 1024, 0);
        r.st.get_mut().wait_peer_fin = true;
        r.st.get_mut().shutdown_limit_ticks =
            drv.cfg.limits.disconnect_timeout_ms.div_ceil(5).max(1);
        r.socket = ptr::null_mut();
        r.job = true;
        r.svc_slot = crate::stats::NO_SLOT;
        r.live.store(true, Ordering::SeqCst);
        for s in &mut r.slots {
            s.indication = ptr::null_mut();
        }
        Some(c)
    }

    /// Queries the ideal send backlog (W36) so that sends are sized by it from the first byte
    /// (C37), then starts source connections sending. Runs in WskAcceptEvent: IRQL <=
    /// DISPATCH_LEVEL, no waits, no allocation (the query IRP and its output are pre-allocated
    /// in the context).
    ///
    /// # Safety
    /// `c` live, its socket the accepted one.
    pub unsafe fn after_accept(c: *mut Conn) {
        // SAFETY: live context with its socket (per the caller).
        unsafe { query_backlog(c) };
        // The query call has returned: a close it held back (C22), or the first source send,
        // goes out now. The pump is a no-op for an idle echo connection.
        // SAFETY: live context.
        unsafe { pump(c) };
    }
}

/// Issues WskControlSocket(WskIoctl, SIO_WSK_QUERY_IDEAL_SEND_BACKLOG) asynchronously with the
/// context's pre-allocated query IRP (W30, W36). IRQL <= DISPATCH_LEVEL; never waits.
///
/// The pending query keeps the context (and with it the driver rundown taken in attach) alive:
/// TcpState does not let the context be recycled before `query_done` ran, so the IRP, its
/// output buffer and the completion routine's code outlive it (C30). A close while the query is
/// pending cancels it (W70); the completion then recycles the context if it comes last.
///
/// # Safety
/// `c` live with its socket; called once per connection, by the thread that attached it.
unsafe fn query_backlog(c: *mut Conn) {
    // SAFETY: per the caller.
    let r = unsafe { &*c };
    // Counted as an executing call (C22) and an outstanding IRP until query_done.
    if !r.st.lock().query_issue() {
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
        match basic.WskControlSocket {
            Some(ctl) => {
                // Completion (inline or later) always goes through query_done (W11); the
                // status returned here adds nothing.
                let _ = ctl(
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
            }
            None => {
                // No provider function: the IRP never went out; undo the bookkeeping.
                let mut st = r.st.lock();
                let _ = st.query_complete(None);
            }
        }
    }
    r.st.lock().call_returned();
}

/// SIO_WSK_QUERY_IDEAL_SEND_BACKLOG completion. IRQL <= DISPATCH_LEVEL, any thread (may run
/// inline inside WskControlSocket on the accepting thread). Stores the value as
/// WskSendBacklogEvent does (W58, C37). Starts no WSK call (C12): the next send simply uses
/// the new size. If the close already completed, this was the context's last IRP and it
/// recycles the context, releasing the rundown as its very last act (C30).
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
    let last = r.st.lock().query_complete(ok.then_some(ideal));
    if last {
        // SAFETY: the close completed and no other IRP of the context is outstanding.
        unsafe { recycle(c) };
    }
    STATUS_MORE_PROCESSING_REQUIRED
}

/// An outbound context whose connect failed (or never started): back to the pool.
///
/// # Safety
/// No socket exists for `c`; nothing else references it.
pub unsafe fn release_unconnected(c: *mut Conn) {
    // SAFETY: per the caller.
    unsafe { recycle(c) };
}

/// Makes a connected socket visible to the pump and the housekeeper.
///
/// # Safety
/// `c` is the context `sock` was created for.
pub unsafe fn publish_socket(c: *mut Conn, sock: *mut WSK_SOCKET) {
    // SAFETY: the lock orders this write before any reader that takes it.
    let lock = unsafe { &*ptr::addr_of!((*c).st) };
    let _g = lock.lock();
    // SAFETY: as above.
    unsafe { (*c).socket = sock };
}

/// Issues the WSK calls TcpState hands out until there are none, one owner at a time.
/// An inline completion on this thread only flags more work (C12: no recursion).
/// IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `c` is a live pooled context.
pub unsafe fn pump(c: *mut Conn) {
    // SAFETY: per the caller. Contexts are shared between CPUs: fields are reached through the
    // raw pointer, and the mutable ones (state, slot buffers) only by the lock or pump owner.
    let drv = unsafe { &*(*c).drv };
    // SAFETY: as above.
    let lock = unsafe { &*ptr::addr_of!((*c).st) };
    let mut st = lock.lock();
    if !st.enter_pump() {
        return;
    }
    loop {
        while let Some(w) = {
            // Paced load job: one ticket from the job's rate budget per new message.
            // SAFETY: `job` is set before the context is published.
            if unsafe { (*c).job } && st.wants_ticket() && drv.job.take_ticket() {
                st.tickets += 1;
            }
            st.next_work(&drv.budget)
        } {
            // A released slot is free again the moment the lock drops (a new indication may
            // take it), so its list pointer is taken now, under the lock.
            let mut release_ind: *mut WSK_DATA_INDICATION = ptr::null_mut();
            if let Work::Release { slot } = w {
                // SAFETY: under the lock; the slot's indication belongs to this work item.
                unsafe {
                    let s = ptr::addr_of_mut!((*c).slots[slot]);
                    release_ind = (*s).indication;
                    (*s).indication = ptr::null_mut();
                }
            }
            // Fill the slot's WSK_BUF while holding the lock (the slot is ours now).
            if let Work::Send(op) = w {
                // SAFETY: the slot was handed to this pump owner by next_work.
                unsafe {
                    let s = ptr::addr_of_mut!((*c).slots[op.slot]);
                    (*s).buf = match op.kind {
                        // Set by the receive callback before the slot was queued.
                        SendKind::ZeroCopy => (*(*s).indication).Buffer,
                        SendKind::Ring { off, len } => WSK_BUF {
                            Mdl: (*c).ring_mdl,
                            Offset: off as ULONG,
                            Length: len,
                        },
                        SendKind::Pattern { len } => WSK_BUF {
                            Mdl: drv.pattern_mdl,
                            Offset: 0,
                            Length: len,
                        },
                    };
                }
            }
            drop(st);
            let closing = w == Work::Close;
            // SAFETY: the work item grants this thread the resource it names.
            unsafe { perform(c, w, release_ind) };
            if closing {
                // The close completion may already have recycled the context: touch nothing.
                return;
            }
            st = lock.lock();
            st.call_returned();
        }
        if !st.leave_pump() {
            break;
        }
    }
}

/// # Safety
/// Called by pump with the right to `w`'s resources.
unsafe fn perform(c: *mut Conn, w: Work, release_ind: *mut WSK_DATA_INDICATION) {
    // SAFETY: live pooled context; the fields used below are owned by this call per `w`.
    unsafe {
        let d = &*(*(*c).socket)
            .Dispatch
            .cast::<WSK_PROVIDER_CONNECTION_DISPATCH>();
        let sock = (*c).socket;
        match w {
            Work::Send(op) => {
                let s = ptr::addr_of_mut!((*c).slots[op.slot]);
                match op.kind {
                    SendKind::ZeroCopy => {
                        (*(*c).drv).count_svc((*c).svc_slot, Counter::ZeroCopySends, 1)
                    }
                    SendKind::Ring { .. } => {
                        (*(*c).drv).count_svc((*c).svc_slot, Counter::CopySends, 1)
                    }
                    SendKind::Pattern { .. } => {}
                }
                // Slot IRP idle (its slot was free); buf valid until completion (W14).
                irp::arm((*s).irp, send_done, s.cast());
                // Echo replies go out at once (latency is the point); the source stream may
                // coalesce.
                let flags = if matches!(op.kind, SendKind::Pattern { .. }) {
                    0
                } else {
                    WSK_FLAG_NODELAY
                };
                if let Some(send) = d.WskSend {
                    send(sock, ptr::addr_of_mut!((*s).buf), flags, (*s).irp);
                }
            }
            Work::ResumeReceive => {
                // C5: a zero-length receive resumes indications without taking data (W56).
                (*c).rx_buf = WSK_BUF {
                    Mdl: ptr::null_mut(),
                    Offset: 0,
                    Length: 0,
                };
                irp::arm((*c).rx_irp, rx_done, c.cast());
                if let Some(recv) = d.WskReceive {
                    recv(sock, ptr::addr_of_mut!((*c).rx_buf), 0, (*c).rx_irp);
                }
            }
            Work::Release { .. } => {
                // Retained with STATUS_PENDING, released exactly once (C3), before close (C4).
                if let Some(rel) = d.WskRelease {
                    rel(sock, release_ind);
                }
            }
            Work::Disconnect { abortive } => {
                let flags = if abortive { WSK_FLAG_ABORTIVE } else { 0 };
                // The disconnect IRP is used once per connection lifetime.
                irp::arm((*c).disc_irp, disc_done, c.cast());
                if let Some(disc) = d.WskDisconnect {
                    disc(sock, ptr::null_mut(), flags, (*c).disc_irp);
                }
            }
            Work::Close => {
                // Nothing in flight or retained, no call executing (C22, C4); the context
                // stays until close_done (C23).
                irp::arm((*c).close_irp, close_done, c.cast());
                if let Some(close) = d.Basic.WskCloseSocket {
                    close(sock, (*c).close_irp);
                }
            }
        }
    }
}

/// Send completion. IRQL <= DISPATCH_LEVEL, any thread.
unsafe extern "win64" fn send_done(_dev: PDEVICE_OBJECT, irp: PIRP, ctx: PVOID) -> NTSTATUS {
    // SAFETY: ctx is the SendSlot armed with this IRP; its Conn is pooled memory.
    let s = unsafe { &mut *ctx.cast::<SendSlot>() };
    let c = s.conn;
    // SAFETY: completed IRP.
    let (status, info) = unsafe { irp::result(irp) };
    // SAFETY: pooled context.
    let r = unsafe { &*c };
    let drv = r.drv();
    if NT_SUCCESS(status) {
        drv.count_svc(r.svc_slot, Counter::TcpBytesOut, info as u64);
        if r.job {
            drv.job
                .bytes_sent
                .fetch_add(info as u64, core::sync::atomic::Ordering::Relaxed);
            if matches!(
                r.st.lock().mode,
                crate::service::tcp::Mode::EchoClient { .. }
            ) {
                drv.job
                    .messages_sent
                    .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            }
        }
    } else {
        drv.count_svc(r.svc_slot, Counter::SendErrors, 1);
    }
    r.st.lock().send_complete(s.idx, NT_SUCCESS(status), info);
    // SAFETY: live context; pump re-enters only if no other thread owns it (C12).
    unsafe { pump(c) };
    STATUS_MORE_PROCESSING_REQUIRED
}

/// Zero-length resume receive completion. IRQL <= DISPATCH_LEVEL.
unsafe extern "win64" fn rx_done(_dev: PDEVICE_OBJECT, irp: PIRP, ctx: PVOID) -> NTSTATUS {
    let c = ctx.cast::<Conn>();
    // SAFETY: completed IRP; pooled context.
    let (status, info) = unsafe { irp::result(irp) };
    // SAFETY: pooled context.
    unsafe { &*c }
        .st
        .lock()
        .resume_complete(NT_SUCCESS(status), info);
    // SAFETY: live context.
    unsafe { pump(c) };
    STATUS_MORE_PROCESSING_REQUIRED
}

/// Disconnect completion. IRQL <= DISPATCH_LEVEL.
unsafe extern "win64" fn disc_done(_dev: PDEVICE_OBJECT, irp: PIRP, ctx: PVOID) -> NTSTATUS {
    let c = ctx.cast::<Conn>();
    // SAFETY: completed IRP.
    let (status, _) = unsafe { irp::result(irp) };
    // SAFETY: pooled context.
    let last = unsafe { &*c }
        .st
        .lock()
        .disconnect_complete(NT_SUCCESS(status));
    if last {
        // The close completed first; this was the last IRP (C20: never reuse a pending IRP).
        // SAFETY: nothing else references the context.
        unsafe { recycle(c) };
    } else {
        // SAFETY: live context.
        unsafe { pump(c) };
    }
    STATUS_MORE_PROCESSING_REQUIRED
}

/// Close completion: the socket is gone, no callback follows (W70). IRQL <= DISPATCH_LEVEL.
unsafe extern "win64" fn close_done(_dev: PDEVICE_OBJECT, _irp: PIRP, ctx: PVOID) -> NTSTATUS {
    let c = ctx.cast::<Conn>();
    // SAFETY: pooled context.
    if unsafe { &*c }.st.lock().close_complete() {
        // SAFETY: no IRP of the context is outstanding any more.
        unsafe { recycle(c) };
    }
    STATUS_MORE_PROCESSING_REQUIRED
}

/// Returns a closed context to the pool and drops its rundown reference as the very last act
/// (C30). Called by whichever of the close / disconnect completions comes last.
///
/// # Safety
/// The socket is closed and no IRP of the context is outstanding.
unsafe fn recycle(c: *mut Conn) {
    // SAFETY: per the caller, no other thread uses the context now.
    let r = unsafe { &mut *c };
    // SAFETY: driver state outlives the rundown.
    let drv = unsafe { &*r.drv };
    if !r.job {
        drv.count_svc(r.svc_slot, Counter::ConnClosed, 1);
    }
    r.live.store(false, Ordering::SeqCst);
    r.job = false;
    r.socket = ptr::null_mut();
    drv.conns.put(r);
    // SAFETY: acquired in attach.
    unsafe { ExReleaseRundownProtection(ptr::addr_of!(drv.rundown).cast_mut()) };
}

/// WskReceiveEvent. IRQL <= DISPATCH_LEVEL (C13). Serialised per socket by WSK (W45).
/// Returns only SUCCESS, PENDING or DATA_NOT_ACCEPTED (C32).
unsafe extern "win64" fn receive_event(
    ctx: PVOID,
    flags: ULONG,
    ind: *mut WSK_DATA_INDICATION,
    bytes_indicated: SIZE_T,
    bytes_accepted: *mut SIZE_T,
) -> NTSTATUS {
    // SAFETY: forwarded.
    let st = unsafe { receive(ctx, flags, ind, bytes_indicated, bytes_accepted) };
    // SAFETY: the registered context.
    unsafe { &*ctx.cast::<Conn>() }.st.lock().rx_callback_end();
    st
}

unsafe fn receive(
    ctx: PVOID,
    flags: ULONG,
    ind: *mut WSK_DATA_INDICATION,
    bytes_indicated: SIZE_T,
    bytes_accepted: *mut SIZE_T,
) -> NTSTATUS {
    let c = ctx.cast::<Conn>();
    // SAFETY: the context registered at accept; live until the close completes.
    let r = unsafe { &*c };
    let drv = r.drv();
    if ind.is_null() {
        // C7/W52: the socket no longer works (not EOF): close it now.
        drv.count_svc(r.svc_slot, Counter::DeadSockets, 1);
        r.st.lock().abort();
        // SAFETY: live context.
        unsafe { pump(c) };
        return STATUS_SUCCESS;
    }
    // SAFETY: ind is a valid list for this call (W51).
    let single = unsafe { (*ind).Next.is_null() };
    let zc_ok = single && flags & WSK_FLAG_RELEASE_ASAP == 0 && drv.cfg.limits.zero_copy;
    let decision = {
        let mut st = r.st.lock();
        let d = st.on_receive(bytes_indicated, zc_ok, &drv.budget);
        if let RecvDecision::ZeroCopy { slot } = d {
            // Published under the lock: the pump reads it when it issues this slot.
            // SAFETY: the slot was just reserved for this callback.
            unsafe { (*ptr::addr_of_mut!((*c).slots[slot])).indication = ind };
        }
        d
    };
    match decision {
        RecvDecision::Drop => {
            drv.count_svc(r.svc_slot, Counter::TcpBytesIn, bytes_indicated as u64);
            if r.job {
                // SAFETY: list valid for this call.
                unsafe { client_rx(c, ind, bytes_indicated) };
            }
            STATUS_SUCCESS
        }
        RecvDecision::NotAccepted => {
            drv.count_svc(r.svc_slot, Counter::RxBackpressure, 1);
            STATUS_DATA_NOT_ACCEPTED
        }
        RecvDecision::ZeroCopy { slot } => {
            drv.count_svc(r.svc_slot, Counter::TcpBytesIn, bytes_indicated as u64);
            // SAFETY: live context.
            unsafe { pump(c) };
            // C1: the callback's reference goes last; PENDING only if the send still uses it.
            let retained = r.st.lock().callback_done(slot, &drv.budget);
            // SAFETY: live context (the pump may owe a release now).
            unsafe { pump(c) };
            if retained {
                STATUS_PENDING
            } else {
                STATUS_SUCCESS
            }
        }
        RecvDecision::Copy { n } => {
            // SAFETY: list valid for this call; n <= bytes indicated.
            let ok = unsafe { copy_in(c, ind, n) };
            if !ok {
                drv.count_svc(r.svc_slot, Counter::ProtocolErrors, 1);
                r.st.lock().abort();
            }
            // Only what was taken counts: a partial accept's rest is indicated again later.
            drv.count_svc(r.svc_slot, Counter::TcpBytesIn, n as u64);
            drv.count_svc(r.svc_slot, Counter::CopyBytes, n as u64);
            // SAFETY: live context.
            unsafe { pump(c) };
            if n < bytes_indicated && ok {
                // Partial accept: indications resume after our zero-length WskReceive (W54, C5).
                drv.count_svc(r.svc_slot, Counter::RxBackpressure, 1);
                // SAFETY: out-parameter of this call.
                unsafe { *bytes_accepted = n };
            }
            STATUS_SUCCESS
        }
    }
}

/// Load-job connection data: an echo client verifies the echo against the source pattern it
/// sent (message offsets restart at 0 for every message) and sends the next message.
///
/// # Safety
/// Receive callback only; `ind` valid for the call.
unsafe fn client_rx(c: *mut Conn, mut ind: *mut WSK_DATA_INDICATION, n: usize) {
    // SAFETY: live context.
    let r = unsafe { &*c };
    let drv = r.drv();
    let (msg, mut off) = {
        let st = r.st.lock();
        match st.mode {
            crate::service::tcp::Mode::EchoClient { msg } => (msg, st.client_offset()),
            _ => (0, 0),
        }
    };
    drv.job
        .bytes_received
        .fetch_add(n as u64, core::sync::atomic::Ordering::Relaxed);
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
                    bad |= b != crate::service::source::pattern_byte(off);
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
        drv.job
            .verify_failures
            .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    }
    {
        let mut st = r.st.lock();
        let before = st.messages_received;
        st.client_received(n);
        let done = st.messages_received - before;
        drv.job
            .messages_received
            .fetch_add(done, core::sync::atomic::Ordering::Relaxed);
    }
    // SAFETY: live context: the next message goes out.
    unsafe { pump(c) };
}

/// Copies the first `n` indicated bytes into the ring (echo) or through the sockperf framer
/// (reply stream, never longer than its input) and commits them. False on a mapping failure or a
/// sockperf framing error.
///
/// # Safety
/// Called from the receive callback only (framer and ring tail are its alone), `n` <= ring free.
unsafe fn copy_in(c: *mut Conn, mut ind: *mut WSK_DATA_INDICATION, n: usize) -> bool {
    // SAFETY: live context; shared access except the framer and the ring tail region.
    let r = unsafe { &*c };
    let cap = r.st.lock().ring.capacity();
    let (mode, regions) = {
        let st = r.st.lock();
        (
            st.mode,
            st.ring
                .write_regions((n + st.copy_slack()).min(st.ring.free())),
        )
    };
    // SAFETY: the regions beyond the tail belong to the receive callback until committed.
    let ring = unsafe { core::slice::from_raw_parts_mut(r.ring, cap) };
    // SAFETY: only the (serialised) receive callback touches the framer.
    let framer = unsafe { &mut *r.framer.get() };
    let mut written = 0usize;
    let mut left = n;
    let mut ok = true;
    let [(o1, l1), (o2, l2)] = regions;
    let mut put = |mut s: &[u8]| {
        while !s.is_empty() {
            let (o, room) = if written < l1 {
                (o1 + written, l1 - written)
            } else {
                (o2 + written - l1, l2 + l1 - written)
            };
            let k = room.min(s.len());
            assert!(k > 0, "ring reservation overrun");
            ring[o..o + k].copy_from_slice(&s[..k]);
            written += k;
            s = &s[k..];
        }
    };
    while left > 0 && !ind.is_null() {
        // SAFETY: valid list element for this call.
        let buf = unsafe { &(*ind).Buffer };
        // SAFETY: valid MDL chain (W51).
        let res = unsafe {
            mdl::for_each_chunk(buf, left, |chunk| {
                if mode == crate::service::tcp::Mode::Sockperf {
                    if framer.feed(chunk, &mut put).is_err() {
                        ok = false;
                    }
                } else {
                    put(chunk);
                }
            })
        };
        match res {
            Some(k) => left -= k,
            None => return false,
        }
        // SAFETY: as above.
        ind = unsafe { (*ind).Next };
    }
    r.st.lock().ring.commit(written);
    ok
}

/// WskDisconnectEvent. IRQL <= DISPATCH_LEVEL. Must return SUCCESS (C32).
unsafe extern "win64" fn disconnect_event(ctx: PVOID, flags: ULONG) -> NTSTATUS {
    let c = ctx.cast::<Conn>();
    // SAFETY: registered context.
    let r = unsafe { &*c };
    {
        let mut st = r.st.lock();
        if flags & WSK_FLAG_ABORTIVE != 0 {
            st.abort();
        } else {
            // W57: no more data will come; echo the rest, then FIN (C33).
            st.peer_graceful();
        }
    }
    // SAFETY: live context.
    unsafe { pump(c) };
    STATUS_SUCCESS
}

/// WskSendBacklogEvent. IRQL <= DISPATCH_LEVEL. Must return SUCCESS (C32).
unsafe extern "win64" fn send_backlog_event(ctx: PVOID, ideal: SIZE_T) -> NTSTATUS {
    // SAFETY: registered context.
    let r = unsafe { &*ctx.cast::<Conn>() };
    r.st.lock().set_ideal_backlog(ideal);
    STATUS_SUCCESS
}
