//! TCP connection contexts: a pre-sized pool (allocated at start-up, never on the data path),
//! the receive / disconnect / send-backlog callbacks and the send pump.
//!
//! All decisions are made by `logic::tcp::TcpState` under the connection's spin lock; this
//! module performs the WSK calls it hands out, outside the lock, one at a time per connection.
//!
//! The same engine carries outbound connections: whoever opens one attaches it with its
//! [`ClientHooks`] (pacing, counting, checking what comes back); a served connection has none,
//! and nothing here knows what a client is for.

use control::config::Limit;
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use control::protocol::Mode;
use wsk_sys::{
    ExAcquireRundownProtection, ExReleaseRundownProtection, IoFreeMdl, WskIoctl, FALSE, NTSTATUS,
    NT_SUCCESS, PDEVICE_OBJECT, PIRP, PMDL, PVOID, SIO_WSK_QUERY_IDEAL_SEND_BACKLOG, SIZE_T,
    STATUS_DATA_NOT_ACCEPTED, STATUS_INSUFFICIENT_RESOURCES, STATUS_PENDING, STATUS_SUCCESS, ULONG,
    WSK_BUF, WSK_CLIENT_CONNECTION_DISPATCH, WSK_DATA_INDICATION, WSK_EVENT_DISCONNECT,
    WSK_EVENT_RECEIVE, WSK_EVENT_SEND_BACKLOG, WSK_FLAG_ABORTIVE, WSK_FLAG_NODELAY,
    WSK_FLAG_RELEASE_ASAP, WSK_PROVIDER_CONNECTION_DISPATCH, WSK_PROVIDER_STREAM_DISPATCH,
    WSK_SOCKET,
};

use crate::driver::Driver;
use crate::kernel::free_list::FreeList;
use crate::kernel::lock::{SpinGuard, SpinLock};
use crate::kernel::time;
use crate::kernel::{irp, pool};
use crate::logic::ring::ByteRing;
use crate::logic::sockperf::TcpFramer;
use crate::logic::tcp::{self, RecvDecision, SendKind, TcpState, Work, MAX_SLOTS};
use crate::stats::{Counter, NO_SLOT};
use crate::wsk::addr::SockAddrBuf;
use crate::wsk::mdl::{self, build_mdl};

/// One outstanding send: its IRP and the WSK_BUF it describes (valid until completion, W14: buffers
/// of a pending call stay valid until it completes).
pub(crate) struct SendSlot {
    pub(crate) conn: *mut Conn,
    pub(crate) idx: usize,
    pub(crate) irp: PIRP,
    pub(crate) buf: WSK_BUF,
    /// The retained indication a zero-copy send uses (released once, C3: WskRelease only PENDING
    /// lists, exactly once).
    pub(crate) indication: *mut WSK_DATA_INDICATION,
}

/// What an outbound connection adds to the engine, set by the room that opened it (served
/// connections have none). Plain functions over a static table: nothing allocated per
/// connection, nothing the served path has to know.
pub(crate) struct ClientHooks {
    /// The connection is paced and wants a ticket for its next message: true if one was
    /// granted. Any IRQL (atomics only).
    pub(crate) take_ticket: fn(&Driver) -> bool,
    /// A send of `bytes` completed with success. IRQL <= DISPATCH_LEVEL.
    pub(crate) sent: fn(&Conn, usize),
    /// `bytes` indicated bytes arrived; the state machine drops them after this returns.
    /// Receive callback only (IRQL <= DISPATCH_LEVEL); `ind` is valid for the call.
    pub(crate) received: unsafe fn(*mut Conn, *mut WSK_DATA_INDICATION, usize),
}

pub(crate) struct Conn {
    pub(crate) drv: *const Driver,
    pub(crate) socket: *mut WSK_SOCKET,
    pub(crate) state: SpinLock<TcpState>,
    /// Touched only by the receive callback, which WSK serialises per socket (W45: receive events
    /// are serialised per socket).
    pub(crate) framer: UnsafeCell<TcpFramer>,
    pub(crate) slots: [SendSlot; MAX_SLOTS],
    pub(crate) rx_irp: PIRP,
    pub(crate) rx_buf: WSK_BUF,
    pub(crate) disc_irp: PIRP,
    pub(crate) close_irp: PIRP,
    /// Entries into `close_done`: tells an unfinished close from one that completed inline and
    /// recycled the context before WskCloseSocket returned (W11: SUCCESS/failure: the IRP is
    /// complete; PENDING: it completes later, `irp::Completions`).
    close_entered: irp::Completions,
    /// Entries into the connect chain's completions on `rx_irp` (load::tcp), each of which may
    /// re-arm it for the next step before the call that completed it returns.
    pub(crate) chain_entered: irp::Completions,
    /// SIO_WSK_QUERY_IDEAL_SEND_BACKLOG at accept (W36: SIO_WSK_QUERY_IDEAL_SEND_BACKLOG:
    /// connection sockets, IRP required, IRP required W30: some options need an IRP). Its own IRP:
    /// every other IRP of the context may be needed while the query is still pending.
    pub(crate) query_irp: PIRP,
    /// The query's output, one SIZE_T (valid until the query IRP completes, W14).
    pub(crate) query_out: SIZE_T,
    pub(crate) ring: *mut u8,
    pub(crate) ring_mdl: PMDL,
    pub(crate) index: usize,
    /// In use (read without the lock by the housekeeper's scan).
    pub(crate) live: AtomicBool,
    /// On the pool's attention list (at most once: set by whoever pushes it, cleared by the
    /// housekeeper when it takes it off).
    attn: AtomicBool,
    /// A receive callback has been entered and has not yet dropped its reference: set as
    /// its first act, before any kernel call, cleared under the lock with its last one. A
    /// disconnect event that overlaps it (G1: receive events are serialised per socket, nothing
    /// orders them with other events, G23: a graceful disconnect event may overlap a receive event)
    /// reads it under the lock.
    rx_entered: AtomicBool,
    /// An outbound connection's hooks (its socket is null until WskSocketConnect completes);
    /// None for a served connection.
    pub(crate) client: Option<&'static ClientHooks>,
    /// The socket is a stream socket (an outbound connection made with WskSocket(STREAM) +
    /// WskBind + WskConnect): its provider table is WSK_PROVIDER_STREAM_DISPATCH, whose
    /// functions sit at other offsets than a connection socket's.
    pub(crate) stream: bool,
    /// An outbound stream socket between WskSocket and the completion of its WskConnect:
    /// not yet `socket` (unpublished, so neither the pump nor a stop touches it), owned by
    /// the connect chain (load::tcp).
    pub(crate) connecting: *mut WSK_SOCKET,
    /// Per-service counter slot of the accepting listener (`stats::NO_SLOT` for clients).
    pub(crate) stats_slot: usize,
    /// WskSocketConnect addresses of an outbound connection (valid until its IRP completes,
    /// W14: buffers stay valid until completion).
    pub(crate) local: SockAddrBuf,
    pub(crate) remote: SockAddrBuf,
}

/// A connection's time limits as the live limits say now, in performance-counter units (clock
/// limits, not counts of housekeeping ticks). Read at attach and again by every housekeeping
/// tick, so a `config set` applies to open connections too.
#[derive(Clone, Copy)]
struct Deadlines {
    shutdown: u64,
    idle: u64,
    progress: u64,
    retain: u64,
}

impl Deadlines {
    fn now(drv: &Driver) -> Self {
        let l = &drv.live;
        let ms = |v: u32| u64::from(v) * drv.perf_freq / 1000;
        Deadlines {
            shutdown: ms(l.get(Limit::DisconnectTimeoutMs)).max(1),
            idle: ms(l.get(Limit::IdleTimeoutMs)),
            progress: ms(l.get(Limit::ProgressTimeoutMs)),
            retain: ms(l.get(Limit::RetainTimeoutMs)),
        }
    }

    /// `served`: outbound load connections end with their job; only served ones may sit idle.
    fn apply(self, state: &mut TcpState, served: bool) {
        state.shutdown_limit = self.shutdown;
        state.progress_limit = self.progress;
        state.retain_limit = self.retain;
        state.idle_limit = if served { self.idle } else { 0 };
    }
}

/// Pre-sized pool of connection contexts (max_connections of them), a free stack under a
/// spin lock. Contexts are freed only at unload, so a stale pointer is never dangling.
pub(crate) struct ConnPool {
    pub(crate) conns: *mut *mut Conn,
    pub(crate) n: usize,
    free: SpinLock<FreeList>,
    active: AtomicUsize,
    /// Connections the housekeeper must visit at its next tick (`TcpState::needs_tick`), in
    /// two stacks: events push onto `attention[attn_cur]`; the housekeeper flips `attn_cur`
    /// and drains the other, so what it pushes back while it works waits for the next tick.
    /// A connection is on at most one of them (`Conn::attn`), so `n` entries each suffice.
    attention: [SpinLock<FreeList>; 2],
    attn_cur: AtomicUsize,
    /// Clock reading of the last full sweep (every live connection: idle, progress and
    /// retention deadlines), performance-counter units. Housekeeper only.
    last_sweep: core::sync::atomic::AtomicU64,
    /// Connections the housekeeper visited (host tests: an idle tick visits none).
    pub(crate) visits: core::sync::atomic::AtomicU64,
}

/// How often the housekeeper sweeps every live connection for the deadlines (between sweeps a
/// tick visits only the attention list): the deadlines' resolution.
const SWEEP_MS: u64 = 100;

pub(crate) static CONN_DISPATCH: WSK_CLIENT_CONNECTION_DISPATCH = WSK_CLIENT_CONNECTION_DISPATCH {
    WskReceiveEvent: Some(receive_event),
    WskDisconnectEvent: Some(disconnect_event),
    WskSendBacklogEvent: Some(send_backlog_event),
};

pub(crate) fn dispatch() -> *const WSK_CLIENT_CONNECTION_DISPATCH {
    ptr::addr_of!(CONN_DISPATCH)
}

impl ConnPool {
    pub(crate) const fn empty() -> Self {
        Self {
            conns: ptr::null_mut(),
            n: 0,
            free: SpinLock::new(FreeList::empty()),
            active: AtomicUsize::new(0),
            attention: [
                SpinLock::new(FreeList::empty()),
                SpinLock::new(FreeList::empty()),
            ],
            attn_cur: AtomicUsize::new(0),
            last_sweep: core::sync::atomic::AtomicU64::new(0),
            visits: core::sync::atomic::AtomicU64::new(0),
        }
    }

    pub(crate) fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Allocates `n` contexts with their IRPs, rings and MDLs. PASSIVE_LEVEL (start-up).
    /// On failure everything allocated so far is kept and freed by [`free`](Self::free).
    pub(crate) fn init(
        &mut self,
        drv: *const Driver,
        n: usize,
        ring_bytes: usize,
    ) -> Result<(), NTSTATUS> {
        self.conns = pool::alloc(n * core::mem::size_of::<*mut Conn>(), pool::TAG_CONN).cast();
        if self.conns.is_null() {
            return Err(STATUS_INSUFFICIENT_RESOURCES);
        }
        self.free.get_mut().alloc(n, pool::TAG_CONN)?;
        for a in &mut self.attention {
            a.get_mut().alloc(n, pool::TAG_CONN)?;
        }
        for i in 0..n {
            let c = alloc_conn(drv, i, ring_bytes);
            if c.is_null() {
                return Err(STATUS_INSUFFICIENT_RESOURCES);
            }
            // SAFETY: i < n entries were allocated.
            unsafe { *self.conns.add(i) = c };
            self.n = i + 1;
            self.free.get_mut().push(i);
        }
        Ok(())
    }

    fn get(&self) -> Option<*mut Conn> {
        let i = self.free.lock().pop()?;
        self.active.fetch_add(1, Ordering::SeqCst);
        // SAFETY: free indices are < n.
        Some(unsafe { *self.conns.add(i) })
    }

    fn put(&self, c: &Conn) {
        if self.free.lock().push(c.index) {
            self.active.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Live contexts `pick` selects (connecting ones included).
    pub(crate) fn count_where(&self, pick: impl Fn(&Conn) -> bool) -> usize {
        (0..self.n)
            .filter(|&i| {
                // SAFETY: i < n; contexts live until free().
                let c = unsafe { &**self.conns.add(i) };
                let _g = c.state.lock();
                c.live.load(Ordering::Relaxed) && pick(c)
            })
            .count()
    }

    /// Puts `c` on the attention list for the next housekeeping tick (once). IRQL <=
    /// DISPATCH_LEVEL.
    pub(crate) fn attend(&self, c: &Conn) {
        if !c.attn.swap(true, Ordering::SeqCst) {
            let cur = self.attn_cur.load(Ordering::SeqCst) & 1;
            if let Some(list) = self.attention.get(cur) {
                if !list.lock().push(c.index) {
                    // Cannot happen (one entry per connection at most): counted, not lost
                    // for good (the next sweep visits every live connection).
                    c.attn.store(false, Ordering::SeqCst);
                    c.drv().count(Counter::InternalErrors, 1);
                }
            }
        }
    }

    /// Housekeeping tick (PASSIVE_LEVEL, start-up thread). Visits the connections on the
    /// attention list, and every `SWEEP_MS` every live one: applies each one's deadlines
    /// (idle, progress, retention, graceful shutdown; counted), gives back lists whose
    /// callback has returned, and gives connections whose indications are refused one more
    /// zero-length WskReceive attempt (C5: after a partial or refused indication, post a
    /// WskReceive), needed because a resume that races with the refusing callback's return is
    /// undone by the provider (G2: indications resume only once the posted WskReceive completes).
    /// An idle tick between sweeps costs O(attention), not O(slots).
    pub(crate) fn tick(&self, drv: &Driver) {
        let now = time::now();
        let last = self.last_sweep.load(Ordering::Relaxed);
        let sweep = now.saturating_sub(last) >= SWEEP_MS * drv.perf_freq / 1000;
        // Flip first: what events (or the visits below) push from now on waits for the next
        // tick; the old stack is drained whole.
        let old = self.attn_cur.fetch_xor(1, Ordering::SeqCst) & 1;
        if sweep {
            self.last_sweep.store(now, Ordering::Relaxed);
        }
        let Some(list) = self.attention.get(old) else {
            return;
        };
        // The old stack is drained (each flag cleared) before any visit: a visit that puts its
        // connection back on the list must find the flag clear, or its re-queue is lost and
        // the connection waits for the next sweep.
        loop {
            let Some(i) = list.lock().pop() else {
                break;
            };
            if i >= self.n {
                continue;
            }
            // SAFETY: i < n; contexts live until free().
            let c = unsafe { *self.conns.add(i) };
            // SAFETY: pooled context.
            unsafe { &*c }.attn.store(false, Ordering::SeqCst);
            if !sweep {
                // SAFETY: pooled context (a recycled one simply finds nothing to do).
                unsafe { self.visit(c, now) };
            }
        }
        if sweep && self.active() > 0 {
            for i in 0..self.n {
                // SAFETY: i < n; contexts live until free().
                let c = unsafe { *self.conns.add(i) };
                // SAFETY: pooled context.
                if unsafe { &*c }.live.load(Ordering::Relaxed) {
                    // SAFETY: pooled context.
                    unsafe { self.visit(c, now) };
                }
            }
        }
    }

    /// One housekeeping visit of `c` at clock reading `now`.
    ///
    /// # Safety
    /// `c` is a pooled context.
    unsafe fn visit(&self, c: *mut Conn, now: u64) {
        self.visits.fetch_add(1, Ordering::Relaxed);
        // SAFETY: per the caller.
        let r = unsafe { &*c };
        let drv = r.drv();
        let mut state = r.state.lock();
        let (kick, again) =
            if r.live.load(Ordering::Relaxed) && !r.socket.is_null() && !state.close_issued() {
                Deadlines::now(drv).apply(&mut state, r.client.is_none());
                let k = state.kick(now);
                (k, state.needs_tick())
            } else {
                (tcp::Kick::default(), false)
            };
        for (hit, counter) in [
            (kick.idle_timeout, Counter::TcpIdleTimeouts),
            (kick.progress_timeout, Counter::TcpProgressTimeouts),
            (kick.retain_timeout, Counter::TcpRetainTimeouts),
        ] {
            if hit {
                drv.count_service(r.stats_slot, counter, 1);
            }
        }
        if kick.pump {
            // In the critical section that checked the context: a close issued and completed
            // on another CPU after an unlock would leave this pump on a recycled context.
            // SAFETY: live context with its socket, its lock held by `state`.
            unsafe { pump_locked(c, state) };
        } else if again {
            // Inside the connection lock, as everywhere (lock order).
            self.attend(r);
        }
    }

    /// Pumps every live connection `pick` selects (paced load jobs after their budget grew).
    /// PASSIVE_LEVEL (housekeeper).
    pub(crate) fn pump_where(&self, pick: impl Fn(&Conn) -> bool) {
        if self.active() == 0 {
            return;
        }
        for i in 0..self.n {
            // SAFETY: i < n; contexts live until free().
            let c = unsafe { *self.conns.add(i) };
            // SAFETY: pooled context.
            let r = unsafe { &*c };
            let state = r.state.lock();
            let go = r.live.load(Ordering::Relaxed)
                && pick(r)
                && !state.close_issued()
                && state.wants_ticket();
            if go {
                // SAFETY: live context (checked under its lock, which the pump is entered in:
                // the close is issued by the pump owner, so it cannot start meanwhile).
                unsafe { pump_locked(c, state) };
            }
        }
    }

    /// Graceful (echo the rest, FIN, close) or abortive teardown of every live connection.
    /// PASSIVE_LEVEL (unload).
    pub(crate) fn shutdown_all(&self, abortive: bool) {
        self.shutdown_where(abortive, |_| true);
    }

    /// As shutdown_all for the connections `pick` selects. Connections still connecting are
    /// skipped: their connect completion sees the stop and aborts them (whoever opened them
    /// cancels connects that would take too long, as `load::tcp::cancel_connects` does).
    pub(crate) fn shutdown_where(&self, abortive: bool, pick: impl Fn(&Conn) -> bool) {
        for i in 0..self.n {
            // SAFETY: i < n; contexts live until free().
            let c: *mut Conn = unsafe { *self.conns.add(i) };
            // SAFETY: pooled context.
            let r = unsafe { &*c };
            let mut state = r.state.lock();
            if !r.live.load(Ordering::Relaxed)
                || r.socket.is_null()
                || state.close_issued()
                || !pick(r)
            {
                continue;
            }
            if abortive {
                state.abort();
            } else {
                state.local_shutdown();
            }
            // SAFETY: live context with its socket, checked under the lock held by `state`.
            unsafe { pump_locked(c, state) };
        }
    }

    /// # Safety
    /// No connection is open (after the rundown wait).
    pub(crate) unsafe fn free(&mut self) {
        for i in 0..self.n {
            // SAFETY: i < n.
            unsafe { free_conn(*self.conns.add(i)) };
        }
        // SAFETY: blocks from init, nothing references them any more.
        unsafe {
            pool::free(self.conns.cast(), pool::TAG_CONN);
            self.free.get_mut().free();
            for a in &mut self.attention {
                a.get_mut().free();
            }
        }
        self.conns = ptr::null_mut();
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
                state: SpinLock::new(TcpState::new(tcp::Mode::Discard, ring_bytes, 1, 1, 0)),
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
                close_entered: irp::Completions::new(),
                chain_entered: irp::Completions::new(),
                query_irp: irp::alloc(),
                query_out: 0,
                ring: pool::alloc(ring_bytes, pool::TAG_CONN),
                ring_mdl: ptr::null_mut(),
                index,
                live: AtomicBool::new(false),
                attn: AtomicBool::new(false),
                rx_entered: AtomicBool::new(false),
                client: None,
                stream: false,
                connecting: ptr::null_mut(),
                stats_slot: NO_SLOT,
                local: SockAddrBuf::zeroed(),
                remote: SockAddrBuf::zeroed(),
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

    /// Takes a context for a newly accepted socket, inside WskAcceptEvent; the callback then
    /// calls [`accepted`](Self::accepted). IRQL <= DISPATCH_LEVEL.
    /// None = refuse (pool empty or unloading).
    ///
    /// # Safety
    /// `sock` is the accepted socket.
    pub(crate) unsafe fn attach(
        drv: &Driver,
        mode: Mode,
        stats_slot: usize,
        sock: *mut WSK_SOCKET,
    ) -> Option<*mut Conn> {
        let mut state = TcpState::new(
            crate::logic::tcp_mode(mode),
            0,
            MAX_SLOTS,
            16 * 1024,
            drv.live.get(Limit::MaxRetainedPerConn) as usize,
        );
        // The accept callback runs until `accepted` ends it: no close before (W49: the provider
        // owns an accepted socket until the accept callback returns).
        state.accept_begin();
        // SAFETY: forwarded.
        unsafe { Self::take(drv, state, sock, None, stats_slot) }
    }

    /// Takes a context for an outbound connection run by `client`; the socket comes later
    /// from WskSocketConnect. Its close waits for the peer's FIN. IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    /// `drv` is the loaded driver.
    pub(crate) unsafe fn attach_outbound(
        drv: &Driver,
        mode: tcp::Mode,
        client: &'static ClientHooks,
    ) -> Option<*mut Conn> {
        let mut state = TcpState::new(mode, 0, 4, 16 * 1024, 0);
        state.wait_peer_fin = true;
        // SAFETY: forwarded.
        unsafe { Self::take(drv, state, ptr::null_mut(), Some(client), NO_SLOT) }
    }

    /// A context off the free stack holding a rundown reference, reset to `state` (its ring
    /// keeps the pool's capacity). IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    /// `sock` is the socket the context is for (null until an outbound connect completes).
    unsafe fn take(
        drv: &Driver,
        mut state: TcpState,
        sock: *mut WSK_SOCKET,
        client: Option<&'static ClientHooks>,
        stats_slot: usize,
    ) -> Option<*mut Conn> {
        let c = drv.conns.get()?;
        // Every live context holds the rundown until its close completes (C29: unload closes every
        // socket, then deregisters/C30: no completion routine may still run when the image
        // unloads).
        // SAFETY: the rundown is initialised for the driver's lifetime.
        if unsafe { ExAcquireRundownProtection(ptr::addr_of!(drv.rundown).cast_mut()) } == FALSE {
            // SAFETY: c came from get().
            drv.conns.put(unsafe { &*c });
            return None;
        }
        // SAFETY: c is ours (off the free stack): nobody else touches it until published.
        let r = unsafe { &mut *c };
        // Under the lock: a housekeeping visit that read `live` before this context was last
        // recycled may still take it.
        let mut locked = r.state.lock();
        state.ring = ByteRing::new(locked.ring.capacity());
        Deadlines::now(drv).apply(&mut state, client.is_none());
        *locked = state;
        drop(locked);
        *r.framer.get_mut() = TcpFramer::new();
        r.socket = sock;
        r.rx_entered.store(false, Ordering::SeqCst);
        r.client = client;
        r.stream = false;
        r.connecting = ptr::null_mut();
        r.stats_slot = stats_slot;
        for s in &mut r.slots {
            s.indication = ptr::null_mut();
        }
        r.live.store(true, Ordering::SeqCst);
        Some(c)
    }

    /// The rest of WskAcceptEvent for the connection `c`, once the callback has set
    /// `*AcceptSocketContext` and `*AcceptSocketDispatch`. IRQL <= DISPATCH_LEVEL, no waits,
    /// no allocation.
    ///
    /// With `enable` (a stream listener's accepted socket, whose callbacks nothing says it
    /// inherits: W34: a listener's connection callbacks go to sockets accepted by WskAcceptEvent
    /// speaks of listening sockets, G18: whether accepted sockets inherit static callbacks is not
    /// stated) its callbacks are enabled here, inside the accept callback, as wsk.h allows once the
    /// out-parameters are set (W50: the accepted socket's context and dispatch come from the
    /// out-parameters), and not later from the housekeeper: events that come in the meantime would
    /// wait behind a tick or a control request (a FIN or reset that came before is
    /// indicated once they are, G21: a FIN or reset before the accepted socket's callbacks are
    /// enabled is indicated once they are). They may start at once, on another thread; the context
    /// is complete. Then the ideal send backlog is queried (W36, C37: keep about the ideal send
    /// backlog in flight). Nothing is pumped here and no close can be issued while the callback
    /// runs (`accept_begin`, taken in attach): what is due, a close held back or a source's first
    /// send, goes out from the housekeeper's next visit.
    ///
    /// # Safety
    /// `c` live from [`attach`](Self::attach), its socket the accepted one; called once, by
    /// the accept callback that attached it.
    pub(crate) unsafe fn accepted(c: *mut Conn, enable: bool) {
        // SAFETY: per the caller.
        let r = unsafe { &*c };
        if enable {
            // SAFETY: a connected socket (W31: which sockets SO_WSK_EVENT_CALLBACK applies to)
            // whose context and dispatch the provider has from the out-parameters (W50); IRQL <=
            // DISPATCH_LEVEL (W29: WskControlSocket up to DISPATCH_LEVEL). Counted as an executing
            // call by the accept hold.
            let ok = unsafe {
                crate::wsk::enable_events(
                    r.socket,
                    WSK_EVENT_RECEIVE | WSK_EVENT_DISCONNECT | WSK_EVENT_SEND_BACKLOG,
                )
            }
            .is_ok();
            if !ok {
                // Closed (abortively) from the housekeeper once the callback has returned.
                r.state.lock().abort();
            }
        }
        // SAFETY: live context with its socket (per the caller).
        unsafe { query_backlog(c) };
        // Last act, under the lock: from its unlock on, another CPU may close the socket
        // before the callback has returned (as a list may be released before a receive
        // callback's return, G22: a retained list may be released from another thread before the
        // callback's return is seen); nothing of this callback enters the kernel after it. The
        // attention list is taken inside the connection lock (nothing takes them the other way
        // round) so that the housekeeper cannot visit before the hold is gone.
        let mut state = r.state.lock();
        state.accept_end();
        r.drv().conns.attend(r);
        drop(state);
    }
}

/// Issues WskControlSocket(WskIoctl, SIO_WSK_QUERY_IDEAL_SEND_BACKLOG) asynchronously with the
/// context's pre-allocated query IRP (W30, W36). IRQL <= DISPATCH_LEVEL; never waits.
///
/// The pending query keeps the context (and with it the driver rundown taken in attach) alive:
/// TcpState does not let the context be recycled before `query_done` ran, so the IRP, its
/// output buffer and the completion routine's code outlive it (C30). A close while the query is
/// pending cancels it (W70: close cancels pending IRPs and waits for running callbacks); the
/// completion then recycles the context if it comes last.
///
/// # Safety
/// `c` live with its socket; called once per connection, by the thread that attached it.
unsafe fn query_backlog(c: *mut Conn) {
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
            // Completion (inline or later) goes through query_done (W11); the status returned
            // matters only from a provider that did not complete the IRP.
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
/// WskSendBacklogEvent does (W58: the send backlog event reports the ideal backlog, C37). Starts no
/// WSK call (C12: no new WSK call from a completion routine: loop, do not recurse): the next send
/// simply uses the new size. If the close already completed, this was the context's last IRP and it
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
    let last = r.state.lock().query_complete(ok.then_some(ideal));
    if last {
        // SAFETY: the close completed and no other IRP of the context is outstanding.
        unsafe { recycle(c) };
    }
    irp::routine_return()
}

/// An outbound context whose connect failed (or never started): back to the pool.
///
/// # Safety
/// No socket exists for `c`; nothing else references it.
pub(crate) unsafe fn release_unconnected(c: *mut Conn) {
    // SAFETY: per the caller.
    unsafe { recycle(c) };
}

/// Issues the WSK calls TcpState hands out until there are none, one owner at a time.
/// An inline completion on this thread only flags more work (C12: no recursion).
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
/// if another thread owns it this one only flags more work and touches nothing after the unlock.
/// Dropping the lock first and pumping afterwards left a window (a send completion
/// whose pump ran after another CPU had closed and recycled the context, and an outbound
/// connection had taken it again with no socket yet: a NULL socket's dispatch table read, seen
/// as a SIGSEGV in a campaign soak). A context without a socket (an outbound connect not yet
/// published) is never pumped: whoever publishes it pumps. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `c` is a pooled context and `state` the guard of its lock.
pub(crate) unsafe fn pump_locked(c: *mut Conn, mut state: SpinGuard<'_, TcpState>) {
    // SAFETY: per the caller. Contexts are shared between CPUs: fields are reached through the
    // raw pointer, and the mutable ones (state, slot buffers) only by the lock or pump owner.
    let drv = unsafe { &*(*c).drv };
    // SAFETY: as above.
    let lock = unsafe { &*ptr::addr_of!((*c).state) };
    // SAFETY: read under the lock it is written under (take, recycle, the connect chain).
    if unsafe { (*c).socket }.is_null() || !state.enter_pump() {
        return;
    }
    loop {
        while let Some(w) = {
            // A paced client: one ticket from its budget per new message.
            // SAFETY: `client` is set before the context is published.
            if let Some(client) = unsafe { (*c).client } {
                if state.wants_ticket() && (client.take_ticket)(drv) {
                    state.client.tickets += 1;
                }
            }
            state.next_work(&drv.budget)
        } {
            // A released slot is free again the moment the lock drops (a new indication may
            // take it), so its list pointer is taken now, under the lock.
            let mut release_ind: *mut WSK_DATA_INDICATION = ptr::null_mut();
            if let Work::Release { slot } = w {
                // SAFETY: under the lock; the slot's indication belongs to this work item.
                unsafe {
                    // TcpState hands out slots < MAX_SLOTS only; the mask lets the compiler see
                    // it (no panic path on the send path).
                    let s = ptr::addr_of_mut!((*c).slots[slot % MAX_SLOTS]);
                    release_ind = (*s).indication;
                    (*s).indication = ptr::null_mut();
                }
            }
            // Fill the slot's WSK_BUF while holding the lock (the slot is ours now).
            if let Work::Send(op) = w {
                // SAFETY: the slot was handed to this pump owner by next_work.
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
                            Mdl: drv.pattern_mdl,
                            Offset: 0,
                            Length: len,
                        },
                    };
                }
            }
            drop(state);
            let closing = w == Work::Close;
            // SAFETY: the work item grants this thread the resource it names.
            unsafe { perform(c, w, release_ind) };
            if closing {
                // The close completion may already have recycled the context: touch nothing.
                return;
            }
            state = lock.lock();
            state.call_returned();
        }
        if !state.leave_pump() {
            break;
        }
    }
    // Still under the lock (the attention list is taken inside a connection lock, never the
    // other way round): once it drops, another CPU may close and recycle the context.
    if state.needs_tick() {
        drv.conns.attend(
            // SAFETY: live pooled context (per the caller).
            unsafe { &*c },
        );
    }
    drop(state);
}

/// # Safety
/// Called by pump with the right to `w`'s resources.
unsafe fn perform(c: *mut Conn, w: Work, release_ind: *mut WSK_DATA_INDICATION) {
    // SAFETY: live pooled context; the fields used below are owned by this call per `w`.
    unsafe {
        let d = ConnOps::of(&*c);
        let sock = (*c).socket;
        match w {
            Work::Send(op) => {
                let s = ptr::addr_of_mut!((*c).slots[op.slot % MAX_SLOTS]);
                match op.kind {
                    SendKind::ZeroCopy => {
                        (*(*c).drv).count_service((*c).stats_slot, Counter::ZeroCopySends, 1);
                    }
                    SendKind::Ring { .. } => {
                        (*(*c).drv).count_service((*c).stats_slot, Counter::CopySends, 1);
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
                    let st = send(sock, ptr::addr_of_mut!((*s).buf), flags, (*s).irp);
                    // Only this pump owner re-arms a slot's IRP.
                    if irp::unfinished((*s).irp, st) {
                        irp::complete_unfinished((*s).irp, send_done, s.cast(), st);
                    }
                } else {
                    irp::fail_unsent((*s).irp, send_done, s.cast());
                }
            }
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
                // Retained with STATUS_PENDING, released exactly once (C3), before close (C4:
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
    WskSend: wsk_sys::PFN_WSK_SEND,
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
                    WskSend: d.WskSend,
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
                    WskSend: d.WskSend,
                    WskReceive: d.WskReceive,
                    WskDisconnect: d.WskDisconnect,
                    WskRelease: d.WskRelease,
                    WskCloseSocket: d.Basic.WskCloseSocket,
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
        drv.count_service(r.stats_slot, Counter::TcpBytesOut, info as u64);
        if let Some(client) = r.client {
            (client.sent)(r, info);
        }
    } else {
        drv.count_service(r.stats_slot, Counter::SendErrors, 1);
    }
    let mut state = r.state.lock();
    state.send_complete(s.idx, NT_SUCCESS(status));
    if state.recyclable() {
        drop(state);
        // The close completed first (W70 orders nothing): this was the last IRP.
        // SAFETY: nothing else references the context.
        unsafe { recycle(c) };
    } else {
        // In the same critical section as the completion: once this IRP is no longer counted,
        // only the pump ownership keeps the context from being closed and recycled (C12).
        // SAFETY: live context, its lock held by `state`.
        unsafe { pump_locked(c, state) };
    }
    irp::routine_return()
}

/// Zero-length resume receive completion. IRQL <= DISPATCH_LEVEL.
unsafe extern "win64" fn rx_done(_dev: PDEVICE_OBJECT, irp: PIRP, ctx: PVOID) -> NTSTATUS {
    let c = ctx.cast::<Conn>();
    // SAFETY: completed IRP; pooled context.
    let (status, info) = unsafe { irp::result(irp) };
    // SAFETY: pooled context, kept out of the pool while this IRP is outstanding.
    let mut state = unsafe { &*c }.state.lock();
    state.resume_complete(NT_SUCCESS(status), info);
    if state.recyclable() {
        drop(state);
        // The close cancelled this receive and completed before it (W70 orders nothing).
        // SAFETY: no IRP of the context is outstanding any more.
        unsafe { recycle(c) };
    } else {
        // SAFETY: live context, its lock held by `state` since the completion was recorded.
        unsafe { pump_locked(c, state) };
    }
    irp::routine_return()
}

/// Disconnect completion. IRQL <= DISPATCH_LEVEL.
unsafe extern "win64" fn disc_done(_dev: PDEVICE_OBJECT, irp: PIRP, ctx: PVOID) -> NTSTATUS {
    let c = ctx.cast::<Conn>();
    // SAFETY: completed IRP.
    let (status, _) = unsafe { irp::result(irp) };
    // SAFETY: pooled context, kept out of the pool while this IRP is outstanding.
    let mut state = unsafe { &*c }.state.lock();
    if state.disconnect_complete(NT_SUCCESS(status)) {
        drop(state);
        // The close completed first; this was the last IRP (C20: never reuse a pending IRP).
        // SAFETY: nothing else references the context.
        unsafe { recycle(c) };
    } else {
        // SAFETY: live context, its lock held by `state` since the completion was recorded.
        unsafe { pump_locked(c, state) };
    }
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
unsafe fn recycle(c: *mut Conn) {
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

/// WskReceiveEvent. IRQL <= DISPATCH_LEVEL (C13: every callback must be DISPATCH-safe). Serialised
/// per socket by WSK (W45).
/// Returns only SUCCESS, PENDING or DATA_NOT_ACCEPTED (C32: return only documented statuses from
/// callbacks).
unsafe extern "win64" fn receive_event(
    ctx: PVOID,
    flags: ULONG,
    ind: *mut WSK_DATA_INDICATION,
    bytes_indicated: SIZE_T,
    bytes_accepted: *mut SIZE_T,
) -> NTSTATUS {
    // First act, before any kernel call: a disconnect event that overlaps this callback from
    // here on holds our FIN back until the bytes indicated here are echoed (G23).
    // SAFETY: the registered context; live until the close completes (W70).
    unsafe { &*ctx.cast::<Conn>() }
        .rx_entered
        .store(true, Ordering::SeqCst);
    // SAFETY: forwarded.
    let status = unsafe { receive(ctx, flags, ind, bytes_indicated, bytes_accepted) };
    // The callback's last act: it drops its reference on the lists it retained (C1: hold a
    // zero-copy send's indication until both the send and the callback are done). Nothing is
    // released on this thread after it: the provider has not seen our STATUS_PENDING yet.
    // Another CPU may release them between the unlock below and the return (G22).
    // The context cannot be recycled under us: the close waits for running callbacks (W70).
    // SAFETY: the registered context.
    let r = unsafe { &*ctx.cast::<Conn>() };
    let mut state = r.state.lock();
    if state.needs_tick() {
        // Lists this callback retained go back at the next pump or tick: on the attention
        // list first, so that dropping the reference below stays the callback's last act.
        drop(state);
        r.drv().conns.attend(r);
        state = r.state.lock();
    }
    // The reference is dropped under the lock every releaser takes: no release can reach the
    // provider before this unlock, and nothing of this callback enters the kernel after it.
    state.rx_callback_end();
    r.rx_entered.store(false, Ordering::SeqCst);
    drop(state);
    status
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
        // C7: a NULL indication means the socket is dead: close it/W52: the socket no longer works
        // (not EOF): close it now.
        drv.count_service(r.stats_slot, Counter::DeadSockets, 1);
        r.state.lock().abort();
        // SAFETY: live context.
        unsafe { pump(c) };
        return STATUS_SUCCESS;
    }
    // The entries' lengths, in list order (zero-copy sends each entry from its own slot, so a
    // list of more entries than slots takes the copy path).
    let mut lens = [0usize; MAX_SLOTS];
    let mut entries = 0usize;
    let mut entry = ind;
    while !entry.is_null() {
        if let Some(l) = lens.get_mut(entries) {
            // SAFETY: a valid list element for this call (W51: the indication list is valid for the
            // callback).
            *l = unsafe { (*entry).Buffer.Length };
        }
        entries += 1;
        // SAFETY: as above.
        entry = unsafe { (*entry).Next };
    }
    // Lists retained by earlier callbacks whose sends are done go back first (this callback
    // started, so theirs have returned, W45): their slots are free for this indication.
    let zc_ok = entries <= MAX_SLOTS
        && flags & WSK_FLAG_RELEASE_ASAP == 0
        && drv.live.on(Limit::ZeroCopy)
        && lens.iter().take(entries).sum::<usize>() == bytes_indicated;
    let decision = {
        let mut state = r.state.lock();
        if state.callback_begin() {
            drop(state);
            // SAFETY: live context.
            unsafe { pump(c) };
            state = r.state.lock();
        }
        // A live limit (config set): read for every indication, not once at attach.
        state.set_per_conn_budget(drv.live.get(Limit::MaxRetainedPerConn) as usize);
        let d = if zc_ok {
            state.on_receive_list(&lens[..entries], true, &drv.budget)
        } else {
            state.on_receive(bytes_indicated, false, &drv.budget)
        };
        if let RecvDecision::ZeroCopy { slot } = d {
            // Each entry's slot learns its entry; the head's is the list WskRelease is given.
            // Published under the lock: the pump reads them when it issues these slots.
            let (group, n) = state.group(slot);
            let mut entry = ind;
            for &g in group.iter().take(n) {
                // SAFETY: the slots were just reserved for this callback; `entry` walks the same
                // list as above, one entry per slot.
                unsafe {
                    (*ptr::addr_of_mut!((*c).slots[g % MAX_SLOTS])).indication = entry;
                    if !entry.is_null() {
                        entry = (*entry).Next;
                    }
                }
            }
        }
        d
    };
    match decision {
        RecvDecision::Drop => {
            drv.count_service(r.stats_slot, Counter::TcpBytesIn, bytes_indicated as u64);
            if let Some(client) = r.client {
                // SAFETY: list valid for this call.
                unsafe { (client.received)(c, ind, bytes_indicated) };
            }
            STATUS_SUCCESS
        }
        RecvDecision::NotAccepted => {
            drv.count_service(r.stats_slot, Counter::RxBackpressure, 1);
            STATUS_DATA_NOT_ACCEPTED
        }
        RecvDecision::ZeroCopy { slot } => {
            drv.count_service(r.stats_slot, Counter::TcpBytesIn, bytes_indicated as u64);
            // SAFETY: live context.
            unsafe { pump(c) };
            // C1: the callback's reference goes last; PENDING only if the send still uses it.
            let retained = r.state.lock().callback_done(slot, &drv.budget);
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
                drv.count_service(r.stats_slot, Counter::ProtocolErrors, 1);
                r.state.lock().abort();
            }
            // Only what was taken counts: a partial accept's rest is indicated again later.
            drv.count_service(r.stats_slot, Counter::TcpBytesIn, n as u64);
            drv.count_service(r.stats_slot, Counter::CopyBytes, n as u64);
            // SAFETY: live context.
            unsafe { pump(c) };
            if n < bytes_indicated && ok {
                // Partial accept: indications resume after our zero-length WskReceive (W54:
                // BytesAccepted below BytesIndicated: partial, indications stop, C5).
                drv.count_service(r.stats_slot, Counter::RxBackpressure, 1);
                // SAFETY: out-parameter of this call.
                unsafe { *bytes_accepted = n };
            }
            STATUS_SUCCESS
        }
    }
}

/// Copies the first `n` indicated bytes into the ring (echo) or through the sockperf framer
/// (reply stream, never longer than its input) and commits them. False on a mapping failure or a
/// sockperf framing error.
///
/// # Safety
/// Called from the receive callback only (framer and ring tail are its alone), `n` <= ring free.
#[allow(clippy::many_single_char_names)] // ring arithmetic: offsets and lengths of two regions
unsafe fn copy_in(c: *mut Conn, mut ind: *mut WSK_DATA_INDICATION, n: usize) -> bool {
    // SAFETY: live context; shared access except the framer and the ring tail region.
    let r = unsafe { &*c };
    let cap = r.state.lock().ring.capacity();
    let (mode, regions) = {
        let state = r.state.lock();
        (
            state.mode,
            state
                .ring
                .write_regions((n + state.copy_slack()).min(state.ring.free())),
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
    // More bytes than the reserved regions hold cannot happen (the reply stream is never
    // longer than its input plus one header of slack); if it did, the rest is dropped and the
    // copy reported as failed (the caller aborts and counts the connection), never a panic.
    let mut overrun = false;
    let mut put = |mut s: &[u8]| {
        while !s.is_empty() {
            let (o, room) = if written < l1 {
                (o1 + written, l1 - written)
            } else {
                (o2 + written - l1, l2 + l1 - written)
            };
            let k = room.min(s.len());
            let (Some(dst), Some((src, rest))) = (ring.get_mut(o..o + k), s.split_at_checked(k))
            else {
                overrun = true;
                return;
            };
            if k == 0 {
                overrun = true;
                return;
            }
            for (d, b) in dst.iter_mut().zip(src) {
                *d = *b;
            }
            written += k;
            s = rest;
        }
    };
    while left > 0 && !ind.is_null() {
        // SAFETY: valid list element for this call.
        let buf = unsafe { &(*ind).Buffer };
        // SAFETY: valid MDL chain (W51).
        let res = unsafe {
            mdl::for_each_chunk(buf, left, |chunk| {
                if mode == tcp::Mode::Sockperf {
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
    let committed = r.state.lock().ring.commit(written);
    ok && !overrun && committed
}

/// WskDisconnectEvent. IRQL <= DISPATCH_LEVEL. Must return SUCCESS (C32).
unsafe extern "win64" fn disconnect_event(ctx: PVOID, flags: ULONG) -> NTSTATUS {
    let c = ctx.cast::<Conn>();
    // SAFETY: registered context.
    let r = unsafe { &*c };
    {
        let mut state = r.state.lock();
        if flags & WSK_FLAG_ABORTIVE != 0 {
            state.abort();
        } else {
            // W57: no more data will come; echo the rest, then FIN (C33: graceful echo close:
            // disconnect after the last send, then close). A receive callback entered before this
            // one (G1: nothing orders them; the sim's disconnect-race) carries bytes from before
            // the FIN: our FIN waits for it.
            if r.rx_entered.load(Ordering::SeqCst) {
                state.receive_running();
            }
            state.peer_graceful();
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
    r.state.lock().set_ideal_backlog(ideal);
    STATUS_SUCCESS
}
