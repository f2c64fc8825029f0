//! The pre-sized pool of connection contexts (allocated at start-up, never on the data path,
//! freed only at unload, so a stale pointer is never dangling) and what the housekeeper does
//! with it: the attention lists, the deadline sweep, visits, pumps and shutdowns by predicate.

use core::cell::UnsafeCell;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use wsk_sys::{IoFreeMdl, NTSTATUS, STATUS_INSUFFICIENT_RESOURCES, WSK_BUF};

use crate::datapath::DataPath;
use crate::kernel::free_list::FreeList;
use crate::kernel::lock::SpinLock;
use crate::kernel::time;
use crate::kernel::{irp, pool};
use crate::logic::sockperf::TcpFramer;
use crate::logic::tcp::{self, TcpParams, TcpState};
use crate::stats::{Counter, NO_SLOT};
use crate::wsk::addr::SockAddrBuf;
use crate::wsk::mdl::build_mdl;

use super::pump::{pump_locked, Handoff};
use super::{Conn, Deadlines, SendSlot};

/// Pre-sized pool of connection contexts (max_connections of them), a free stack under a
/// spin lock. Contexts are freed only at unload, so a stale pointer is never dangling.
pub(crate) struct ConnPool {
    pub(crate) conns: *mut *mut Conn,
    pub(crate) n: usize,
    free: SpinLock<FreeList>,
    active: AtomicUsize,
    /// One bit per context, set while it is out of the free stack (set and cleared under the
    /// free stack's lock, with the pop and the push): the deadline sweep visits those, not all
    /// `n` (with thousands of contexts and one connection, the scan of every context's `live`
    /// flag was most of a tick). `taken_words` words of 64.
    taken: *mut AtomicU64,
    taken_words: usize,
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

impl ConnPool {
    pub(crate) const fn empty() -> Self {
        Self {
            conns: ptr::null_mut(),
            n: 0,
            free: SpinLock::new(FreeList::empty()),
            active: AtomicUsize::new(0),
            taken: ptr::null_mut(),
            taken_words: 0,
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
        drv: *const DataPath,
        n: usize,
        ring_bytes: usize,
    ) -> Result<(), NTSTATUS> {
        self.conns = pool::alloc(n * core::mem::size_of::<*mut Conn>(), pool::TAG_CONN).cast();
        if self.conns.is_null() {
            return Err(STATUS_INSUFFICIENT_RESOURCES);
        }
        let words = n.div_ceil(64);
        self.taken = pool::alloc(words * core::mem::size_of::<AtomicU64>(), pool::TAG_CONN).cast();
        if self.taken.is_null() {
            return Err(STATUS_INSUFFICIENT_RESOURCES);
        }
        for w in 0..words {
            // SAFETY: `words` words were just allocated (non-paged, suitably aligned).
            unsafe { ptr::write(self.taken.add(w), AtomicU64::new(0)) };
        }
        self.taken_words = words;
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

    pub(super) fn get(&self) -> Option<*mut Conn> {
        let i = {
            let mut free = self.free.lock();
            let i = free.pop()?;
            self.mark_taken(i, true);
            i
        };
        self.active.fetch_add(1, Ordering::SeqCst);
        // SAFETY: free indices are < n.
        Some(unsafe { *self.conns.add(i) })
    }

    pub(super) fn put(&self, c: &Conn) {
        let pushed = {
            let mut free = self.free.lock();
            let pushed = free.push(c.index);
            if pushed {
                self.mark_taken(c.index, false);
            }
            pushed
        };
        if pushed {
            self.active.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Sets or clears context `i`'s bit in `taken`. Under the free stack's lock, with the pop
    /// or push that moves `i` (so a bit never lags behind the stack: a context put back and
    /// taken again at once keeps its bit).
    fn mark_taken(&self, i: usize, taken: bool) {
        if i / 64 < self.taken_words {
            // SAFETY: within the `taken_words` words allocated in init.
            let w = unsafe { &*self.taken.add(i / 64) };
            let b = 1u64 << (i % 64);
            if taken {
                w.fetch_or(b, Ordering::Relaxed);
            } else {
                w.fetch_and(!b, Ordering::Relaxed);
            }
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
    pub(crate) fn tick(&self, drv: &DataPath) {
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
            // Every context out of the free stack (a live connection is one: taken before it
            // is made live, made dead before it goes back). One taken during this loop may
            // wait for the next sweep, as it would have if taken just after it.
            for w in 0..self.taken_words {
                // SAFETY: within the words allocated in init.
                let mut bits = unsafe { &*self.taken.add(w) }.load(Ordering::Relaxed);
                while bits != 0 {
                    let i = w * 64 + bits.trailing_zeros() as usize;
                    bits &= bits - 1;
                    if i >= self.n {
                        break;
                    }
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
            pool::free(self.taken.cast(), pool::TAG_CONN);
            self.free.get_mut().free();
            for a in &mut self.attention {
                a.get_mut().free();
            }
        }
        self.conns = ptr::null_mut();
        self.n = 0;
        self.taken = ptr::null_mut();
        self.taken_words = 0;
    }
}

fn alloc_conn(drv: *const DataPath, index: usize, ring_bytes: usize) -> *mut Conn {
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
                state: SpinLock::new(TcpState::new(TcpParams {
                    mode: tcp::Mode::Discard,
                    ring_cap: ring_bytes,
                    send_slots: 1,
                    max_send: 1,
                    per_conn_budget: 0,
                })),
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
                    handoff: AtomicU8::new(Handoff::IDLE),
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
