//! The TCP engine: connection contexts that served and outbound connections both run on.
//!
//! All decisions are made by `logic::tcp::TcpState` under the connection's spin lock; this
//! room performs the WSK calls it hands out, outside the lock, one at a time per connection.
//! Whoever opens a connection attaches it: a listener (`serve`) with none, the load job
//! (`load`) with its [`ClientHooks`] (pacing, counting, checking what comes back); nothing here
//! knows what a client is for. The engine reaches the driver only through `&DataPath`.
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | the context (`Conn`), its deadlines, attach / take, release of an unconnected one |
//! | `pool.rs` | the pre-sized pool: allocation, housekeeping tick and visits, shutdown, free |
//! | `pump.rs` | the pump (one owner issues the WSK calls), the completions, recycling |
//! | `events.rs` | the connection callbacks: receive, disconnect, send backlog |

use control::config::Limit;
use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use control::protocol::Mode;
use wsk_sys::{
    ExAcquireRundownProtection, FALSE, PIRP, PMDL, SIZE_T, WSK_BUF, WSK_DATA_INDICATION,
    WSK_EVENT_DISCONNECT, WSK_EVENT_RECEIVE, WSK_EVENT_SEND_BACKLOG, WSK_SOCKET,
};

use crate::datapath::DataPath;
use crate::kernel::irp;
use crate::kernel::lock::SpinLock;
use crate::logic::ring::ByteRing;
use crate::logic::sockperf::TcpFramer;
use crate::logic::tcp::{self, TcpParams, TcpState, MAX_SLOTS};
use crate::stats::NO_SLOT;
use crate::wsk::addr::SockAddrBuf;

mod events;
mod pool;
mod pump;

pub(crate) use events::{dispatch, CONN_DISPATCH};
pub(crate) use pool::ConnPool;
pub(crate) use pump::{pump, pump_locked};
use pump::{query_backlog, recycle};

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
    /// Who records this slot's send completion: the pump that issued it, if the completion
    /// finds the pump still inside the WskSend call, else the completion routine itself
    /// (`pump::Handoff`: one swap on each side decides, whatever the thread or the order).
    pub(crate) handoff: AtomicU8,
}

/// What an outbound connection adds to the engine, set by the room that opened it (served
/// connections have none). Plain functions over a static table: nothing allocated per
/// connection, nothing the served path has to know.
pub(crate) struct ClientHooks {
    /// The connection is paced and wants a ticket for its next message: true if one was
    /// granted. Any IRQL (atomics only).
    pub(crate) take_ticket: fn(&DataPath) -> bool,
    /// A send of `bytes` completed with success. IRQL <= DISPATCH_LEVEL.
    pub(crate) sent: fn(&Conn, usize),
    /// `bytes` indicated bytes arrived; the state machine drops them after this returns.
    /// Receive callback only (IRQL <= DISPATCH_LEVEL); `ind` is valid for the call.
    pub(crate) received: unsafe fn(*mut Conn, *mut WSK_DATA_INDICATION, usize),
}

pub(crate) struct Conn {
    pub(crate) drv: *const DataPath,
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
    fn now(drv: &DataPath) -> Self {
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

impl Conn {
    fn drv(&self) -> &DataPath {
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
        drv: &DataPath,
        mode: Mode,
        stats_slot: usize,
        sock: *mut WSK_SOCKET,
    ) -> Option<*mut Conn> {
        let mut state = TcpState::new(TcpParams {
            mode: crate::logic::tcp_mode(mode),
            ring_cap: 0,
            send_slots: MAX_SLOTS,
            max_send: 16 * 1024,
            per_conn_budget: drv.live.get(Limit::MaxRetainedPerConn) as usize,
        });
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
        drv: &DataPath,
        mode: tcp::Mode,
        client: &'static ClientHooks,
    ) -> Option<*mut Conn> {
        let mut state = TcpState::new(TcpParams {
            mode,
            ring_cap: 0,
            send_slots: 4,
            max_send: 16 * 1024,
            per_conn_budget: 0,
        });
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
        drv: &DataPath,
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

/// An outbound context whose connect failed (or never started): back to the pool.
///
/// # Safety
/// No socket exists for `c`; nothing else references it.
pub(crate) unsafe fn release_unconnected(c: *mut Conn) {
    // SAFETY: per the caller.
    unsafe { recycle(c) };
}
