//! UDP sockets: one datagram socket per configured UDP service.
//!
//! Echo is zero-copy and batched: the indication list is retained (STATUS_PENDING) and the
//! replies to its datagrams go back in one WskSendMessages per run of datagrams from the same
//! source (W65: one RemoteAddress per call; a burst from one peer is one call per list), each
//! WSK_BUF_LIST entry over its datagram's indicated MDL chain. sockperf replies are copied into
//! the send context's small buffer with the rewritten header (the indication is never written)
//! and join the batch. Without WskSendMessages (before Windows 8) each datagram goes alone with
//! WskSendTo.
//!
//! Ownership is counted, never inferred from time:
//! - a retained list has one reference for the receive callback, dropped as the callback's last
//!   act, and one per batch still sending from it; whoever drops the last one gives the list
//!   back with WskRelease (C1: hold a zero-copy send's indication until both the send and the
//!   callback are done). If that is the callback itself no send uses the list any more and it
//!   returns STATUS_SUCCESS instead (not retained).
//! - the socket block has one reference for itself, dropped by `close_and_free`, and one per
//!   send IRP in flight; whoever drops the last one frees it. A context is therefore never
//!   freed under a pending IRP, whatever the order of the close's and the cancelled sends'
//!   completions (W70: close cancels pending IRPs and waits for running callbacks).
//!
//! Send contexts are pre-allocated per socket, one per datagram in flight, and kept in per-CPU
//! pools (MsQuic keeps per-processor datapath state for the same reason): the receive callback
//! takes from its CPU's pool and a send completion gives back to the pool of the CPU it runs on,
//! so an echoed datagram takes no lock shared across CPUs in the common case (the per-CPU lock
//! is taken on its own CPU only; it exists because a completion at PASSIVE_LEVEL may be
//! preempted on its CPU by a callback at DISPATCH_LEVEL); beside each pool's chain, an atomic
//! spare slot takes the list owner the callback's end gives back, so that an echo whose send
//! completed inline takes its CPU's lock once, not twice. A CPU whose pool is empty borrows
//! half of another CPU's pool (`UdpSock::borrow`, counted in `udp_shared_locks`); when no pool
//! has a context the datagram is dropped and counted (never queued, never allocated). A reply is
//! never larger than its request. Before any send a datagram passes AllowedSources, the
//! reflection and loop guard (`control::udp_guard`: broadcast/multicast flags, special sources,
//! privileged and own-service source ports) and the per-source rate limit (loopback exempt by
//! default); each drop is counted under its reason and simply leaves the datagram out of the
//! batch. A list of one datagram (the common case below saturation, `echo_one`) takes its
//! context and its CPU's remembered verdict on the last source screened there (`Seen`) in one
//! acquisition of that CPU's pool lock: a steady peer passes the allow-list and the guard once
//! per change of the configuration (the generations of the live limits and of the service
//! ports), the rate limit still per datagram.

use control::config::Limit;
use core::ptr;
use core::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};

use control::config::{Service, MAX_SERVICES};
use control::protocol::sockperf::{Header, HEADER_LEN};
use control::protocol::Mode;
use wsk_sys::{
    IoCancelIrp, IoFreeMdl, KeQueryActiveProcessorCountEx, ALL_PROCESSOR_GROUPS, NTSTATUS,
    NT_SUCCESS, PDEVICE_OBJECT, PFN_WSK_SEND_MESSAGES, PFN_WSK_SEND_TO, PIRP, PMDL, PSOCKADDR,
    PVOID, STATUS_INSUFFICIENT_RESOURCES, STATUS_PENDING, STATUS_SUCCESS, ULONG, WSK_BUF,
    WSK_BUF_LIST, WSK_CLIENT_DATAGRAM_DISPATCH, WSK_DATAGRAM_INDICATION, WSK_EVENT_RECEIVE_FROM,
    WSK_PROVIDER_DATAGRAM_DISPATCH, WSK_SOCKET,
};

use crate::datapath::DataPath;
use crate::kernel::lock::SpinLock;
use crate::kernel::time::{self, wait_until};
use crate::kernel::{irp, pool};
use crate::logic::{copy_at, udp_verdict, UdpVerdict};
use crate::stats::{Counter, MAX_CPUS};
use crate::wsk::addr::SockAddrBuf;
use crate::wsk::mdl::{self, build_mdl};
use crate::wsk::{close_sync, disable_event_sync, open_bound, BoundKind};
use control::udp_guard::{self, GuardDrop, RateLimiter};
use crossbeam_utils::CachePadded;

/// Size of a send context's copy buffer (sockperf replies); larger sockperf datagrams are
/// dropped and counted (udp_drop_too_big).
const COPY_BUF: usize = 2048;

/// How long the close waits for sends in flight before it closes anyway (at least; the
/// configured disconnect timeout if longer). A UDP send waits for no peer, so this normally
/// ends at once; it bounds a provider that holds sends back (C38: waits reached from user requests
/// are bounded).
const SEND_DRAIN_MS: u64 = 10_000;

/// The ports of every configured service (TCP and UDP; 0 = empty slot), for the guard's
/// own-port rule. The services list itself is written by the control path while callbacks
/// run, so callbacks read this copy of atomics instead (a datagram racing a reconfiguration
/// may see a mix of the old and new ports, never a torn port).
static SERVICE_PORTS: [AtomicU16; MAX_SERVICES] = [const { AtomicU16::new(0) }; MAX_SERVICES];

/// How many of `SERVICE_PORTS` are configured (the services are published in order, packed):
/// a datagram checks those only, not all MAX_SERVICES slots (the check runs for every
/// datagram of a one-datagram list). Racing a reconfiguration it may read the old count with
/// the new ports or the reverse: a mix, as above, always within the array.
static SERVICE_COUNT: AtomicUsize = AtomicUsize::new(0);

/// Bumped after each publication of `SERVICE_PORTS`, like `LiveLimits::generation`: a
/// remembered verdict (`Seen`) holds only while both are unchanged.
static SERVICE_GEN: AtomicU64 = AtomicU64::new(0);

/// Publishes the configured services' ports to the UDP guard. PASSIVE_LEVEL (start-up and the
/// control path, which are serialised).
pub(crate) fn publish_service_ports(services: &[Service]) {
    for (i, slot) in SERVICE_PORTS.iter().enumerate() {
        slot.store(services.get(i).map_or(0, |s| s.port), Ordering::Relaxed);
    }
    SERVICE_COUNT.store(services.len().min(MAX_SERVICES), Ordering::Relaxed);
    SERVICE_GEN.fetch_add(1, Ordering::SeqCst);
}

fn service_ports() -> impl Iterator<Item = u16> {
    let n = SERVICE_COUNT.load(Ordering::Relaxed).min(MAX_SERVICES);
    SERVICE_PORTS[..n]
        .iter()
        .map(|p| p.load(Ordering::Relaxed))
        .filter(|&p| p != 0)
}

const fn guard_counter(d: GuardDrop) -> Counter {
    match d {
        GuardDrop::Broadcast => Counter::UdpDropBroadcast,
        GuardDrop::SpecialSource => Counter::UdpDropSpecialSource,
        GuardDrop::PrivilegedPort => Counter::UdpDropPrivilegedPort,
        GuardDrop::ServicePort => Counter::UdpDropServicePort,
    }
}

/// One datagram's send context. `repr(C)` with the WSK_BUF_LIST entry first: a batch is a
/// chain of contexts linked through their entries, and an entry's address is its context's.
#[repr(C)]
struct UdpSend {
    /// This datagram's entry in its batch's WSK_BUF_LIST; valid until the batch completes.
    entry: WSK_BUF_LIST,
    sock: *mut UdpSock,
    /// Next free context in its CPU's pool (`CpuFree`) while free; next context of its batch
    /// while sending (`Batch::add`), so that a finished batch is already a chain.
    next_free: *mut UdpSend,
    /// Used by the context that heads a batch (the others' stay idle).
    irp: PIRP,
    /// Entries into `send_done` for `irp`: a batch that completed inline gives its contexts
    /// back at once and another callback may arm this IRP again before the send call returns,
    /// so the W11: SUCCESS/failure: the IRP is complete; PENDING: it completes later check counts
    /// entries instead of reading the IRP (`irp::Completions`).
    entered: irp::Completions,
    /// Batch head: its send is (or is about to be) WSK's, for the close to cancel.
    sending: AtomicBool,
    /// Batch head: where the whole batch goes (W65: one address per call).
    remote: SockAddrBuf,
    /// Batch head: datagrams in the batch.
    count: u32,
    /// Batch head: its last context. A batch's contexts are linked through `next_free` as
    /// well as through their entries (`Batch::add`), so they go back to a pool as one chain.
    last: *mut UdpSend,
    /// Batch head: the list owner this batch holds a reference on (null: none).
    owner: *mut UdpSend,
    /// List owner (the context of a list's first zero-copy datagram): the list, and its
    /// references (the callback's until its last act + one per batch sending from it). The
    /// owner goes back to the pool only when they reach zero.
    list: *mut WSK_DATAGRAM_INDICATION,
    refs: AtomicU32,
    copy: *mut u8,
    copy_mdl: PMDL,
}

/// Free send contexts linked through `UdpSend::next_free`, with the last one (so that a whole
/// chain is spliced onto another in O(1)): one CPU's pool, a share borrowed from another CPU, or
/// what a callback took from its pool in one go (`UdpSock::grab`).
struct Chain {
    head: *mut UdpSend,
    tail: *mut UdpSend,
    len: u32,
}

/// One CPU's free send contexts. Taken by the receive callback on this CPU and refilled by the
/// send completions that run on it, so in the common case its lock is only ever taken on its
/// own CPU (uncontended, its line stays in that CPU's cache). Another CPU takes it only to
/// borrow when its own pool is empty (`borrow`). Beside them, under the same lock, the last
/// source a one-datagram list on this CPU let through (`Seen`).
struct CpuFree {
    chain: Chain,
    seen: Seen,
}

/// A source that passed the allow-list and the guard (`screen`), with what those depended on
/// besides the source: the list's broadcast/multicast flags and the generations of the live
/// limits and of the service ports they were read under. While all match, the next datagram
/// from that source passes them too and is not screened again (a one-datagram list cannot
/// share the screening with others in its list, `admit`'s `passed`). The rate limit is
/// never remembered: it takes a token per datagram. All-zero (`valid` false) is empty.
#[derive(Clone, Copy)]
struct Seen {
    remote: SockAddrBuf,
    flags: u32,
    limited: bool,
    valid: bool,
    live_gen: u64,
    ports_gen: u64,
}

impl Seen {
    /// Whether this is a verdict for `remote` with `flags` under generations `gens`.
    #[inline]
    fn matches(&self, remote: &SockAddrBuf, flags: u32, gens: (u64, u64)) -> bool {
        self.valid
            && self.live_gen == gens.0
            && self.ports_gen == gens.1
            && self.flags == flags
            && self.remote.0 == remote.0
    }
}

/// The Flags bits the guard looks at (the rest do not change a verdict).
const SCREEN_FLAGS: u32 = udp_guard::MSG_BCAST | udp_guard::MSG_MCAST;

// SAFETY: the contexts it links are the socket's, reached only by its holder (a pool's, under
// the pool's lock).
unsafe impl Send for Chain {}

impl Chain {
    const EMPTY: Chain = Chain {
        head: ptr::null_mut(),
        tail: ptr::null_mut(),
        len: 0,
    };

    /// # Safety
    /// `c` is a free context of ours, in no chain.
    #[inline]
    unsafe fn push(&mut self, c: *mut UdpSend) {
        // SAFETY: per the caller.
        unsafe { (*c).next_free = self.head };
        if self.head.is_null() {
            self.tail = c;
        }
        self.head = c;
        self.len += 1;
    }

    #[inline]
    fn pop(&mut self) -> Option<*mut UdpSend> {
        let c = self.head;
        if c.is_null() {
            return None;
        }
        // SAFETY: a free context of ours (pushed by `push`).
        self.head = unsafe { (*c).next_free };
        if self.head.is_null() {
            self.tail = ptr::null_mut();
        }
        self.len -= 1;
        Some(c)
    }

    /// The first `k` (1 to len) contexts, as a chain of their own.
    fn take_front(&mut self, k: u32) -> Chain {
        let head = self.head;
        let mut last = head;
        for _ in 1..k {
            // SAFETY: k <= len contexts are linked from head.
            last = unsafe { (*last).next_free };
        }
        // SAFETY: as above.
        self.head = unsafe { (*last).next_free };
        if self.head.is_null() {
            self.tail = ptr::null_mut();
        }
        self.len -= k;
        Chain {
            head,
            tail: last,
            len: k,
        }
    }

    /// Puts all of `c` in front of this chain.
    #[allow(clippy::needless_pass_by_value)] // by value: its contexts move into this chain
    fn splice_front(&mut self, c: Chain) {
        if c.len == 0 {
            return;
        }
        // SAFETY: c's tail is a free context of ours.
        unsafe { (*c.tail).next_free = self.head };
        if self.head.is_null() {
            self.tail = c.tail;
        }
        self.head = c.head;
        self.len += c.len;
    }
}

/// One CPU's pool and, beside it, its length as a hint another CPU may read without the lock
/// (written under the lock): a CPU looking for contexts to borrow skips empty pools without
/// taking their locks.
struct CpuPool {
    free: SpinLock<CpuFree>,
    avail: AtomicU32,
    /// One more free context, outside the chain and its lock: where a list's owner goes when
    /// the callback's end releases it (`put_spare`; an echo whose send completed inline) and
    /// where the next `take_one` or `get` on this CPU looks first. An atomic slot, so that
    /// that return takes no second lock round trip. Null: empty. Counted as free everywhere
    /// the pools are (`borrow` takes another CPU's when no pool has any left, `free_count`).
    spare: AtomicPtr<UdpSend>,
}

/// The per-CPU pools, each on its own cache lines (all-zero is a valid empty pool: an
/// initialised KSPIN_LOCK is 0). Only the first `UdpSock::ncpu` are used.
type CpuPools = [CachePadded<CpuPool>; MAX_CPUS];

/// A CPU borrowing from another takes half of its pool, or all of it when it holds no more
/// than this: halving a small pool would send the borrower back for more at once.
const BORROW_ALL_BELOW: u32 = 16;

/// `UdpSock::releasing`: set by the close before WskCloseSocket: no list is given back after
/// it (the socket is going, W68: WskRelease returns a PENDING list; close does not).
const RELEASE_CLOSED: u32 = 1 << 31;

pub(crate) struct UdpSock {
    socket: *mut WSK_SOCKET,
    drv: *const DataPath,
    pub(crate) service: Service,
    /// The per-source rate limit: shared by every CPU (a source's limit is one budget
    /// whichever CPU its datagrams land on), so taken only for rate-limited sources (not
    /// loopback, by default) and counted as a shared-lock acquisition.
    rate: SpinLock<RateLimiter>,
    /// WskRelease calls in progress outside any lock, plus `RELEASE_CLOSED` once the close
    /// began (the close waits for the count to drop to 0). An atomic, not a lock: a list
    /// given back takes no lock shared across CPUs.
    releasing: AtomicU32,
    /// Lists whose sends outlived the wait before the close: they could not be given back.
    abandoned: AtomicU32,
    /// The free send contexts, one pool per CPU (`CpuPools`, its own tagged allocation).
    pools: *mut CpuPools,
    /// Pools in use: the active processor count at open, 1 to MAX_CPUS.
    ncpu: usize,
    ctxs: *mut UdpSend,
    n: usize,
    closing: AtomicBool,
    /// Set by a NULL datagram list (W60: a receive-from list: one datagram per entry, valid for the
    /// callback): the socket no longer works.
    pub(crate) dead: AtomicBool,
    /// Pre-allocated for the callback disable and the close (teardown never allocates).
    ctl_irp: PIRP,
    /// Per-service counter slot (`Driver::stats_slots`).
    stats_slot: usize,
    /// References on this block: 1 for the socket itself (dropped by `close_and_free`) + 1 per
    /// send IRP in flight. Whoever takes it to zero frees the block.
    io: AtomicU32,
}

static DGRAM_DISPATCH: WSK_CLIENT_DATAGRAM_DISPATCH = WSK_CLIENT_DATAGRAM_DISPATCH {
    WskReceiveFromEvent: Some(receive_from_event),
};

impl UdpSock {
    fn drv(&self) -> &DataPath {
        // SAFETY: the driver state outlives its sockets.
        unsafe { &*self.drv }
    }

    /// PASSIVE_LEVEL (start-up).
    ///
    /// # Safety
    /// `drv` captured, at its final address.
    pub(crate) unsafe fn create(
        drv: &DataPath,
        service: &Service,
        stats_slot: usize,
    ) -> Result<*mut UdpSock, NTSTATUS> {
        // Restart-only: the live table holds its start-up value.
        let n = (drv.live.get(Limit::UdpSendContexts) as usize).max(1);
        let u = pool::new_block(
            UdpSock {
                socket: ptr::null_mut(),
                drv,
                service: *service,
                rate: SpinLock::new(RateLimiter::new(
                    drv.live.get(Limit::UdpRatePerSource),
                    drv.perf_freq,
                )),
                releasing: AtomicU32::new(0),
                abandoned: AtomicU32::new(0),
                pools: ptr::null_mut(),
                ncpu: 1,
                ctxs: ptr::null_mut(),
                n: 0,
                closing: AtomicBool::new(false),
                dead: AtomicBool::new(false),
                // Allocated once the block exists (alloc_ctxs): an IRP inside a value whose
                // block allocation fails would be dropped unfreed.
                ctl_irp: ptr::null_mut(),
                stats_slot,
                io: AtomicU32::new(1),
            },
            pool::TAG_UDP,
        )?;
        // SAFETY: u is ours until the socket exists.
        if let Err(e) = unsafe { (*u).alloc_ctxs(n) } {
            // SAFETY: never published.
            unsafe { Self::free(u) };
            return Err(e);
        }
        let local = core::net::SocketAddr::new(service.bind, service.port);
        // SAFETY: ours; no callback before the events are enabled.
        let publish = |sock| unsafe { (*u).socket = sock };
        // SAFETY: context complete before the socket exists; static dispatch; on failure the
        // socket is closed before this returns.
        let opened = unsafe {
            open_bound(
                &drv.provider,
                BoundKind::Datagram,
                u.cast(),
                ptr::addr_of!(DGRAM_DISPATCH).cast(),
                local,
                (*u).ctl_irp,
                publish,
                // C26: per-socket callback after bind.
                &[WSK_EVENT_RECEIVE_FROM],
            )
        };
        if let Err(e) = opened {
            // SAFETY: no socket left (C23: its close completed); never published.
            unsafe { Self::free(u) };
            return Err(e);
        }
        Ok(u)
    }

    fn alloc_ctxs(&mut self, n: usize) -> Result<(), NTSTATUS> {
        self.ctl_irp = irp::alloc();
        if self.ctl_irp.is_null() {
            return Err(STATUS_INSUFFICIENT_RESOURCES);
        }
        // SAFETY: no preconditions.
        let cpus = unsafe { KeQueryActiveProcessorCountEx(ALL_PROCESSOR_GROUPS) } as usize;
        self.ncpu = cpus.clamp(1, MAX_CPUS);
        self.pools = pool::alloc_zeroed::<CpuPools>(pool::TAG_UDP);
        self.ctxs = pool::alloc(n * core::mem::size_of::<UdpSend>(), pool::TAG_UDP).cast();
        if self.ctxs.is_null() || self.pools.is_null() {
            return Err(STATUS_INSUFFICIENT_RESOURCES);
        }
        let me: *mut UdpSock = self;
        for i in 0..n {
            let copy = pool::alloc(COPY_BUF, pool::TAG_UDP);
            let ctx = UdpSend {
                entry: WSK_BUF_LIST {
                    Next: ptr::null_mut(),
                    Buffer: WSK_BUF {
                        Mdl: ptr::null_mut(),
                        Offset: 0,
                        Length: 0,
                    },
                },
                sock: me,
                next_free: ptr::null_mut(),
                irp: irp::alloc(),
                entered: irp::Completions::new(),
                sending: AtomicBool::new(false),
                remote: SockAddrBuf::zeroed(),
                count: 0,
                last: ptr::null_mut(),
                owner: ptr::null_mut(),
                list: ptr::null_mut(),
                refs: AtomicU32::new(0),
                copy,
                copy_mdl: if copy.is_null() {
                    ptr::null_mut()
                } else {
                    build_mdl(copy, COPY_BUF)
                },
            };
            let ok = !ctx.irp.is_null() && !ctx.copy_mdl.is_null();
            // SAFETY: i < n.
            unsafe { ptr::write(self.ctxs.add(i), ctx) };
            self.n = i + 1;
            // Spread evenly at first; completions move them to where the sends complete.
            // SAFETY: pools allocated above; the context is free and in no pool.
            unsafe {
                let p = &mut (*self.pools)[i % self.ncpu];
                p.free.get_mut().chain.push(self.ctxs.add(i));
                *p.avail.get_mut() = p.free.get_mut().chain.len;
            }
            if !ok {
                return Err(STATUS_INSUFFICIENT_RESOURCES);
            }
        }
        Ok(())
    }

    /// Frees the block. Any IRQL <= DISPATCH_LEVEL (the last send completion may do it).
    ///
    /// # Safety
    /// `u` not registered with WSK any more (or never), and no IRP of it pending (`io` at 0,
    /// or never issued).
    unsafe fn free(u: *mut UdpSock) {
        // SAFETY: per the caller.
        unsafe {
            let r = &mut *u;
            for i in 0..r.n {
                let c = &mut *r.ctxs.add(i);
                irp::free(c.irp);
                if !c.copy_mdl.is_null() {
                    IoFreeMdl(c.copy_mdl);
                }
                pool::free(c.copy, pool::TAG_UDP);
            }
            pool::free(r.ctxs.cast(), pool::TAG_UDP);
            // The pools only link the contexts freed above: nothing else to free in them.
            pool::free_typed(r.pools, pool::TAG_UDP);
            irp::free(r.ctl_irp);
            pool::free_typed(u, pool::TAG_UDP);
        }
    }

    /// CPU `cpu`'s pool (`cpu < ncpu`).
    #[inline]
    fn pool(&self, cpu: usize) -> &CpuPool {
        // SAFETY: allocated at open, freed with the block; cpu < ncpu <= MAX_CPUS.
        unsafe { &(*self.pools)[cpu] }
    }

    /// A free send context, from the spare slot or else the pool of `cpu` (`DataPath::cpu()`,
    /// read once by the caller for all it does), or else borrowed (`borrow`). Receive callback, IRQL <=
    /// DISPATCH_LEVEL: at PASSIVE_LEVEL the thread may have moved since `cpu` was read, and the
    /// pool is then another CPU's (correct, its lock serialises it; merely not local); at
    /// DISPATCH_LEVEL it stays on its CPU.
    #[inline]
    fn get(&self, cpu: usize) -> Option<*mut UdpSend> {
        let cpu = cpu % self.ncpu;
        let p = self.pool(cpu);
        let spare = p.spare.swap(ptr::null_mut(), Ordering::Acquire);
        if !spare.is_null() {
            return Some(spare);
        }
        {
            let mut g = p.free.lock();
            if let Some(c) = g.chain.pop() {
                p.avail.store(g.chain.len, Ordering::Relaxed);
                return Some(c);
            }
        }
        self.borrow(cpu)
    }

    /// For a one-datagram list from `remote` with `flags` (`SCREEN_FLAGS` bits): a free
    /// context of `cpu`'s pool (as in `get`) and, if the pool's remembered source (`Seen`) is
    /// this one under generations `gens`, whether the rate limit applies to it, in one
    /// acquisition of the pool's lock (the spare slot, an atomic, is looked at first). None
    /// when the pool and its slot are empty (the caller takes the general path, which borrows
    /// or drops). Receive callback, IRQL <= DISPATCH_LEVEL.
    #[inline]
    fn take_one(
        &self,
        cpu: usize,
        remote: &SockAddrBuf,
        flags: u32,
        gens: (u64, u64),
    ) -> Option<(*mut UdpSend, Option<bool>)> {
        let p = self.pool(cpu % self.ncpu);
        let mut g = p.free.lock();
        let spare = p.spare.swap(ptr::null_mut(), Ordering::Acquire);
        let c = if spare.is_null() {
            let c = g.chain.pop()?;
            p.avail.store(g.chain.len, Ordering::Relaxed);
            c
        } else {
            spare
        };
        let known = g
            .seen
            .matches(remote, flags, gens)
            .then_some(g.seen.limited);
        Some((c, known))
    }

    /// Remembers `seen` as the source last screened on `cpu` (`take_one`). Receive callback,
    /// IRQL <= DISPATCH_LEVEL.
    #[cold]
    fn remember(&self, cpu: usize, seen: Seen) {
        let p = self.pool(cpu % self.ncpu);
        p.free.lock().seen = seen;
    }

    /// All of the free contexts of `cpu`'s pool (as in `get`), for a callback whose list holds
    /// more than one datagram: one acquisition of the pool's lock for the whole list instead
    /// of one per datagram. What is left goes back with `give_back`; meanwhile the pool looks
    /// empty to other CPUs (they borrow elsewhere) and refills from the completions that run
    /// on its CPU. Receive callback, IRQL <= DISPATCH_LEVEL.
    #[inline]
    fn grab(&self, cpu: usize) -> Chain {
        let p = self.pool(cpu % self.ncpu);
        let mut g = p.free.lock();
        p.avail.store(0, Ordering::Relaxed);
        core::mem::replace(&mut g.chain, Chain::EMPTY)
    }

    /// Gives back what is left of a `grab`, to the same pool. IRQL <= DISPATCH_LEVEL.
    #[inline]
    fn give_back(&self, cpu: usize, left: Chain) {
        if left.len == 0 {
            return;
        }
        let p = self.pool(cpu % self.ncpu);
        let mut g = p.free.lock();
        g.chain.splice_front(left);
        p.avail.store(g.chain.len, Ordering::Relaxed);
    }

    /// This CPU's pool is empty: take half of the first other CPU's pool that has any (all of
    /// it if small, `BORROW_ALL_BELOW`), under that CPU's lock (a lock shared across CPUs:
    /// counted; pools whose hint says empty are skipped unlocked), keep one and put the rest in
    /// this CPU's pool, so that the next `get`s are local again. A datagram is dropped (counted by
    /// the caller) only when no pool has a context: as many datagrams are in flight as there
    /// are contexts, the same bound as one shared pool. Never two pool locks at once.
    #[cold]
    fn borrow(&self, cpu: usize) -> Option<*mut UdpSend> {
        for k in 1..self.ncpu {
            let vp = self.pool((cpu + k) % self.ncpu);
            if vp.avail.load(Ordering::Relaxed) == 0 {
                continue;
            }
            self.drv().count(Counter::UdpSharedLocks, 1);
            let mut took = {
                let mut g = vp.free.lock();
                let take = if g.chain.len <= BORROW_ALL_BELOW {
                    g.chain.len
                } else {
                    g.chain.len.div_ceil(2)
                };
                if take == 0 {
                    continue;
                }
                let c = g.chain.take_front(take);
                vp.avail.store(g.chain.len, Ordering::Relaxed);
                c
            };
            let first = took.pop();
            if took.len != 0 {
                let p = self.pool(cpu);
                let mut g = p.free.lock();
                g.chain.splice_front(took);
                p.avail.store(g.chain.len, Ordering::Relaxed);
            }
            return first;
        }
        // No chain has any: another CPU's spare, if one is there.
        for k in 1..self.ncpu {
            let vp = self.pool((cpu + k) % self.ncpu);
            if vp.spare.load(Ordering::Relaxed).is_null() {
                continue;
            }
            self.drv().count(Counter::UdpSharedLocks, 1);
            let spare = vp.spare.swap(ptr::null_mut(), Ordering::Acquire);
            if !spare.is_null() {
                return Some(spare);
            }
        }
        None
    }

    /// Gives the contexts of a finished batch (`head` and those chained through their
    /// entries), but `keep`, back to the pool of `cpu` (the caller's `DataPath::cpu()`, as in
    /// `get`) under one acquisition of its lock. IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    /// The contexts are ours, used by nobody any more (`keep` excepted).
    #[inline]
    unsafe fn put_batch(&self, cpu: usize, head: *mut UdpSend, keep: *mut UdpSend) {
        // A batch of one zero-copy datagram is its list's owner alone, kept until the list's
        // references are gone: nothing to give back, so no lock (and no call: this test is
        // inlined into the completion).
        // SAFETY: head is a context of the batch (per the caller).
        if head == keep && unsafe { (*head).entry.Next }.is_null() {
            return;
        }
        // SAFETY: per the caller.
        unsafe { self.put_contexts(cpu, head, keep) };
    }

    /// `put_batch`'s work.
    ///
    /// # Safety
    /// As `put_batch`.
    unsafe fn put_contexts(&self, cpu: usize, head: *mut UdpSend, keep: *mut UdpSend) {
        // The batch is already a chain through `next_free`, head to `last` (`Batch::add`):
        // without a kept owner, or with the owner at its head (a list's first batch), it goes
        // back in O(1) instead of context by context (a burst's datagram: 13 Ir less).
        // SAFETY: the batch's head fields were set by `issue` (per the caller).
        let (count, last) = unsafe { ((*head).count, (*head).last) };
        let whole = if keep.is_null() {
            Some(Chain {
                head,
                tail: last,
                len: count,
            })
        } else if keep == head {
            Some(Chain {
                // SAFETY: as above; count >= 2 here (put_batch returned for a lone owner).
                head: unsafe { (*head).next_free },
                tail: last,
                len: count - 1,
            })
        } else {
            None
        };
        let p = self.pool(cpu % self.ncpu);
        let mut g = p.free.lock();
        if let Some(chain) = whole {
            g.chain.splice_front(chain);
            p.avail.store(g.chain.len, Ordering::Relaxed);
            return;
        }
        // The owner inside the batch (after a sockperf copy): context by context, skipping it.
        let mut c = head;
        while !c.is_null() {
            // SAFETY: a context of the batch; the entry is its first field (repr(C)).
            let next = unsafe { (*c).entry.Next }.cast::<UdpSend>();
            if c != keep {
                // SAFETY: the batch is done with it; the lock orders these writes before the
                // next get.
                unsafe { g.chain.push(c) };
            }
            c = next;
        }
        p.avail.store(g.chain.len, Ordering::Relaxed);
    }

    /// Gives one context back to the pool of `cpu` (as in `put_batch`). IRQL <=
    /// DISPATCH_LEVEL.
    ///
    /// # Safety
    /// `c` is one of ours, used by nobody any more.
    #[inline(never)] // the spare slot's fallback and the drops: kept out of the callbacks' bodies
    unsafe fn put(&self, cpu: usize, c: *mut UdpSend) {
        let p = self.pool(cpu % self.ncpu);
        let mut g = p.free.lock();
        // SAFETY: per the caller.
        unsafe { g.chain.push(c) };
        p.avail.store(g.chain.len, Ordering::Relaxed);
    }

    /// Gives one context back to `cpu`'s spare slot (`CpuPool::spare`) if it is empty, else
    /// as `put`. IRQL <= DISPATCH_LEVEL.
    ///
    /// # Safety
    /// As `put`.
    // Always: as a call of its own it cost 27 Ir per echo (prologue and epilogue around one
    // compare-exchange; bench/driver-callgrind, LTO off).
    #[allow(clippy::inline_always)]
    #[inline(always)]
    unsafe fn put_spare(&self, cpu: usize, c: *mut UdpSend) {
        let p = self.pool(cpu % self.ncpu);
        // Release: the context's last writes before whoever takes it (Acquire).
        if p.spare
            .compare_exchange(ptr::null_mut(), c, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            // SAFETY: per the caller.
            unsafe { self.put(cpu, c) };
        }
    }

    /// Free contexts over all pools and their spare slots (the close's log). PASSIVE_LEVEL.
    fn free_count(&self) -> usize {
        (0..self.ncpu)
            .map(|k| {
                let p = self.pool(k);
                p.free.lock().chain.len as usize
                    + usize::from(!p.spare.load(Ordering::Acquire).is_null())
            })
            .sum()
    }
    /// The last reference on `owner`'s list is gone (the callback has made its last access
    /// and every batch from the list has completed): give the list back (C1, C3: once), unless
    /// the close has begun (then it cannot be, W68; counted and logged by the close). Any IRQL
    /// <= DISPATCH_LEVEL.
    ///
    /// # Safety
    /// `owner` is a list owner of ours whose references just reached zero.
    unsafe fn list_done(&self, cpu: usize, owner: *mut UdpSend) {
        // Registered as releasing before the close's flag is looked at: a close that sets the
        // flag after this waits for the count to drop; one that set it before is seen here.
        let give_back = self.releasing.fetch_add(1, Ordering::SeqCst) & RELEASE_CLOSED == 0;
        if give_back {
            // C12: no lock held. SAFETY: the list was retained with STATUS_PENDING and the
            // socket is not closing (the close waits for `releasing` to drop to 0).
            unsafe {
                let disp = &*(*self.socket)
                    .Dispatch
                    .cast::<WSK_PROVIDER_DATAGRAM_DISPATCH>();
                if let Some(rel) = disp.WskRelease {
                    rel(self.socket, (*owner).list);
                }
            }
        } else {
            self.abandoned.fetch_add(1, Ordering::Relaxed);
        }
        self.releasing.fetch_sub(1, Ordering::SeqCst);
        // SAFETY: nothing uses the owner any more.
        unsafe { self.put_spare(cpu, owner) };
    }

    /// IoCancelIrp on every batch's send still in flight (W76: it completes once, cancelled
    /// unless it completed first). PASSIVE_LEVEL, from the close, after the callback is
    /// disabled: no batch is issued any more, so an IRP seen sending is either WSK's or has
    /// just completed and stays idle (cancelling an idle IRP of ours does nothing; its memory
    /// lives with the block, which the socket's own reference keeps).
    ///
    /// # Safety
    /// The callback is disabled and has returned; the caller holds the socket's reference.
    unsafe fn cancel_sends(&self) {
        for i in 0..self.n {
            // SAFETY: i < n; contexts live with the block.
            let c = unsafe { &*self.ctxs.add(i) };
            if c.sending.load(Ordering::SeqCst) {
                // SAFETY: a live IRP of ours (see above).
                unsafe { IoCancelIrp(c.irp) };
            }
        }
    }

    /// Stops the callback, waits (bounded) for the sends in flight, which give their lists
    /// back, closes, and drops the socket's own reference: the block is freed here, or by
    /// the last send completion if one is still to run. PASSIVE_LEVEL.
    ///
    /// # Safety
    /// `u` from create, called once.
    pub(crate) unsafe fn close_and_free(u: *mut UdpSock, timeout_ms: u64) {
        // SAFETY: per the caller; the socket's own reference keeps u alive until dropped below.
        let r = unsafe { &*u };
        r.closing.store(true, Ordering::SeqCst);
        // Disable the callback and wait until any running invocation has returned (W33: a disable
        // with callbacks in progress pends): no new send starts and no callback holds a list
        // reference after this.
        // SAFETY: live socket; the control IRP is idle (teardown is serialised).
        let _ = unsafe { disable_event_sync(r.socket, WSK_EVENT_RECEIVE_FROM, r.ctl_irp) };
        // C4: release every retained list before WskCloseSocket/W68: every list back before the
        // close. A list goes back when its last send completes, so this waits for the sends.
        let bound = timeout_ms.max(SEND_DRAIN_MS);
        // A dead socket (W60: a NULL list: the socket is unusable and must be closed) moves
        // nothing more: a send it still holds completes only when cancelled or closed. Its
        // close comes from the housekeeper re-creating the service, which would otherwise sit
        // out the whole drain (10 s of no echo on that port, and no other housekeeping): its
        // sends are cancelled at once.
        let drain = if r.dead.load(Ordering::SeqCst) {
            0
        } else {
            bound
        };
        if !wait_until(drain, || r.io.load(Ordering::SeqCst) == 1) {
            crate::kernel::log::log_err!(
                "udp port {}: {} sends ({} of {} contexts) still in flight at close after {} ms; cancelled",
                r.service.port,
                r.io.load(Ordering::SeqCst).saturating_sub(1),
                r.n - r.free_count(),
                r.n,
                drain
            );
            // The provider holds them back (nothing bounds a send, C38). Their lists cannot
            // go back while a send still reads the indicated buffers, nor after the close
            // (the socket is gone, W68), and the close does not release them: so the sends
            // are cancelled now (W76), and each completion gives its list back before the
            // close, as a normal completion would.
            // SAFETY: r is alive (the socket's own reference).
            unsafe { r.cancel_sends() };
            if !wait_until(timeout_ms.max(1000), || r.io.load(Ordering::SeqCst) == 1) {
                crate::kernel::log::log_err!(
                    "udp port {}: {} sends ignored the cancel",
                    r.service.port,
                    r.io.load(Ordering::SeqCst).saturating_sub(1)
                );
            }
        }
        // From here no completion gives a list back; one doing so now finishes first (C22: no call
        // may be running at close).
        r.releasing.fetch_or(RELEASE_CLOSED, Ordering::SeqCst);
        let _ = wait_until(bound, || {
            r.releasing.load(Ordering::SeqCst) & !RELEASE_CLOSED == 0
        });
        // SAFETY: no call executing; the close cancels what is still pending (W70).
        let _ = unsafe { close_sync(r.socket, r.ctl_irp) };
        // W70: the cancelled sends' completions may come after the close's own. Past this
        // shorter wait the last of them frees the block (unload waits for every completion
        // routine, C30: no completion routine may still run when the image unloads).
        if !wait_until(timeout_ms.max(1000), || r.io.load(Ordering::SeqCst) == 1) {
            crate::kernel::log::log_err!(
                "udp port {}: {} send completions still to run after the close; the last frees the socket",
                r.service.port,
                r.io.load(Ordering::SeqCst).saturating_sub(1)
            );
        }
        let abandoned = r.abandoned.load(Ordering::Relaxed);
        if abandoned != 0 {
            crate::kernel::log::log_err!(
                "udp port {}: {} indication lists could not be given back before the close",
                r.service.port,
                abandoned
            );
        }
        // The socket's own reference, last use of r.
        if r.io.fetch_sub(1, Ordering::SeqCst) == 1 {
            // SAFETY: closed (C23), no IRP in flight.
            unsafe { Self::free(u) };
        }
    }
}

/// Reads up to 14 leading bytes of a datagram.
///
/// # Safety
/// Valid WSK_BUF for the call.
unsafe fn head_of(buf: &WSK_BUF) -> ([u8; HEADER_LEN], usize) {
    let mut h = [0u8; HEADER_LEN];
    let mut n = 0;
    // SAFETY: per the caller.
    let _ = unsafe {
        mdl::for_each_chunk(buf, HEADER_LEN, |s| {
            n += copy_at(&mut h, n, s);
        })
    };
    (h, n)
}

/// The provider's send functions: WskSendMessages when it has one (Windows 8+), else
/// WskSendTo one datagram at a time.
#[derive(Clone, Copy)]
struct Senders {
    messages: PFN_WSK_SEND_MESSAGES,
    to: PFN_WSK_SEND_TO,
}

/// Sends one batch (`head` and the contexts chained to it) with one provider call, holding a
/// reference on the socket block and, if `owner` is set, on the list. IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `head` heads a batch of ours with `remote` and `count` set, `last` its last context (linked
/// from `head` through entries and `next_free`, `Batch::add`); `owner` null or a list owner
/// whose references are held by the caller (the callback's).
unsafe fn issue(
    u: &UdpSock,
    head: *mut UdpSend,
    last: *mut UdpSend,
    owner: *mut UdpSend,
    send: Senders,
) {
    // SAFETY: per the caller; the batch is ours until its completion.
    unsafe {
        if !owner.is_null() {
            (*owner).refs.fetch_add(1, Ordering::SeqCst);
        }
        (*head).owner = owner;
        (*head).last = last;
        u.io.fetch_add(1, Ordering::SeqCst);
        let token = (*head).entered.token();
        (*head).sending.store(true, Ordering::SeqCst);
        irp::arm((*head).irp, send_done, head.cast());
        // The entries, their buffers and the address live in the contexts until completion:
        // W65 documents no lifetime for WskSendMessages, so the WskSendTo rule (W64: WskSendTo's
        // flags and addresses) is kept; nor an IRQL: msquic calls it from its receive path at
        // DISPATCH_LEVEL (G13: WskSendMessages' ControlInfo is consumed before the call returns).
        let st = if let Some(sm) = send.messages {
            sm(
                u.socket,
                &raw mut (*head).entry,
                0,
                (*head).remote.as_sockaddr(),
                0,
                ptr::null_mut(),
                (*head).irp,
            )
        } else if let Some(st) = send.to {
            st(
                u.socket,
                &raw mut (*head).entry.Buffer,
                0,
                (*head).remote.as_sockaddr(),
                0,
                ptr::null_mut(),
                (*head).irp,
            )
        } else {
            // Checked by the callback before any batch is built; never reached. The IRP
            // completes through its routine as failed, every count kept.
            irp::fail_unsent((*head).irp, send_done, head.cast());
            return;
        };
        // A final status with the IRP never completed (W11 broken): the batch finishes here
        // with that status, its contexts, list reference and block reference given back, as
        // its completion would. The contexts' memory lives while this callback runs (the close
        // disables the callback and waits for it before it drops the block's own reference);
        // an unchanged entry count means nobody took the head back, so the IRP is this batch's.
        if irp::unfinished_since((*head).irp, &(*head).entered, token, st) {
            irp::complete_unfinished((*head).irp, send_done, head.cast(), st);
        }
    }
}

/// WskReceiveFromEvent. IRQL <= DISPATCH_LEVEL (C13: every callback must be DISPATCH-safe); walks
/// the whole list.
/// Returns SUCCESS or PENDING only (C32: return only documented statuses from callbacks); never
/// DATA_NOT_ACCEPTED (that would disable a per-socket callback, C6: re-enable receive-from after
/// DATA_NOT_ACCEPTED): overload is handled by dropping.
#[allow(clippy::many_single_char_names)] // socket, list element, context, counts: one loop
#[allow(clippy::too_many_lines)] // one pass over the list: filter, batch, send
unsafe extern "win64" fn receive_from_event(
    ctx: PVOID,
    flags: ULONG,
    list: *mut WSK_DATAGRAM_INDICATION,
) -> NTSTATUS {
    // SAFETY: the UdpSock registered with WskSocket; lives until after its close completes
    // (the socket's own reference is dropped only after the close).
    let u = unsafe { &*ctx.cast::<UdpSock>() };
    let drv = u.drv();
    if list.is_null() {
        // W60/C7: the socket no longer works: the housekeeper closes and re-creates it.
        drv.count_service(u.stats_slot, Counter::DeadSockets, 1);
        u.dead.store(true, Ordering::SeqCst);
        return STATUS_SUCCESS;
    }
    let send = {
        // SAFETY: live datagram socket.
        let disp = unsafe {
            &*(*u.socket)
                .Dispatch
                .cast::<WSK_PROVIDER_DATAGRAM_DISPATCH>()
        };
        Senders {
            messages: disp.WskSendMessages,
            to: disp.WskSendTo,
        }
    };
    if send.messages.is_none() && send.to.is_none() {
        return STATUS_SUCCESS;
    }
    let closing = u.closing.load(Ordering::Relaxed);
    // Read once for the callback: its counters and its CPU's pool of send contexts.
    let cpu = DataPath::cpu();
    // SAFETY: valid list element for the duration of the callback (W60).
    if !closing && unsafe { (*list).Next }.is_null() {
        // SAFETY: a one-datagram list of this callback.
        if let Some(st) = unsafe { echo_one(u, flags, list, cpu, send) } {
            return st;
        }
    }
    // Datagrams and bytes in, counted once for the list.
    let (mut n_in, mut bytes_in) = (0u64, 0u64);
    // The last source that passed the filters and the guard (see `admit`).
    let mut passed: Option<(SockAddrBuf, bool)> = None;
    let mut batch = Batch::new(list, send);
    // A list of several datagrams takes its CPU's contexts in one go (`grab`).
    // SAFETY: valid list element for the duration of the callback (W60).
    let mut grabbed = if closing || unsafe { (*list).Next }.is_null() {
        Chain::EMPTY
    } else {
        u.grab(cpu)
    };
    let mut d = list;
    while !d.is_null() {
        // SAFETY: valid list element for the duration of the callback (W60).
        let (buf, remote_sa, next) = unsafe { ((*d).Buffer, (*d).RemoteAddress, (*d).Next) };
        d = next;
        let len = buf.Length;
        n_in += 1;
        bytes_in += len as u64;
        if closing {
            continue;
        }
        // SAFETY: the provider's SOCKADDR for this datagram.
        let Some(remote) = (unsafe { admit(u, flags, remote_sa, &mut passed) }) else {
            continue;
        };
        let Some(reply) = answer(u, &buf, len) else {
            continue;
        };
        let Some(c) = grabbed.pop().or_else(|| u.get(cpu)) else {
            drv.count_service(u.stats_slot, Counter::UdpDropNoContext, 1);
            continue;
        };
        // SAFETY: c is ours until its batch completes; buf is valid for the callback.
        unsafe {
            batch.fill(c, reply, &buf, len);
            batch.add(u, c, remote);
        }
    }
    u.give_back(cpu, grabbed);
    // Counted before the last batch goes, so that its completion's datagrams_out never runs
    // ahead of datagrams_in for a single-source list.
    count2_at(
        drv,
        cpu,
        u.stats_slot,
        (Counter::UdpDatagramsIn, n_in),
        (Counter::UdpBytesIn, bytes_in),
    );
    // SAFETY: the batch of this callback; its owner's references are held by it.
    unsafe { batch.finish(u, cpu) }
}

/// `receive_from_event` for a list of one datagram (the common case below saturation), with
/// its CPU's remembered source (`Seen`): a steady peer is screened once per change of the
/// configuration, not per datagram, and the context and the verdict come in one acquisition
/// of the pool's lock. None, having done nothing, when the datagram needs the general path
/// (an address of no known family, or an empty pool: that path counts the drop or borrows, in
/// its order). Receive callback, IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `list` is the callback's one-datagram list (valid for the callback, W60); the socket is not
/// closing.
#[inline]
unsafe fn echo_one(
    u: &UdpSock,
    flags: ULONG,
    list: *mut WSK_DATAGRAM_INDICATION,
    cpu: usize,
    send: Senders,
) -> Option<NTSTATUS> {
    let drv = u.drv();
    // SAFETY: per the caller.
    let (buf, remote_sa) = unsafe { ((*list).Buffer, (*list).RemoteAddress) };
    // SAFETY: the provider's SOCKADDR for this datagram.
    let remote = unsafe { SockAddrBuf::copy_from(remote_sa) }?;
    let key = flags & SCREEN_FLAGS;
    // Read before the values they guard (`screen`): see `LiveLimits::generation`.
    let gens = (drv.live.generation(), SERVICE_GEN.load(Ordering::Acquire));
    let (c, known) = u.take_one(cpu, &remote, key, gens)?;
    let len = buf.Length;
    let reply = (|| {
        let limited = if let Some(limited) = known {
            limited
        } else {
            let limited = screen(u, flags, &remote)?;
            u.remember(
                cpu,
                Seen {
                    remote,
                    flags: key,
                    limited,
                    valid: true,
                    live_gen: gens.0,
                    ports_gen: gens.1,
                },
            );
            limited
        };
        if limited && !rate_allows(u, &remote) {
            return None;
        }
        answer(u, &buf, len)
    })();
    // Counted before the batch goes, as in `receive_from_event`.
    count2_at(
        drv,
        cpu,
        u.stats_slot,
        (Counter::UdpDatagramsIn, 1),
        (Counter::UdpBytesIn, len as u64),
    );
    let Some(reply) = reply else {
        // Dropped (counted) or consumed: the context goes back unused.
        // SAFETY: c is ours and unused.
        unsafe { u.put(cpu, c) };
        return Some(STATUS_SUCCESS);
    };
    let mut batch = Batch::new(list, send);
    // SAFETY: c is ours until its batch completes; buf is valid for the callback; the batch is
    // this callback's and finished once.
    unsafe {
        batch.fill(c, reply, &buf, len);
        batch.add(u, c, remote);
        Some(batch.finish(u, cpu))
    }
}

/// `DataPath::count_service` with the CPU number already read (the echo path reads it once
/// per callback or completion: KeGetCurrentProcessorNumberEx is a call into the kernel).
#[inline]
fn count_at(drv: &DataPath, cpu: usize, stats_slot: usize, c: Counter, n: u64) {
    drv.stats.add(cpu, c, n);
    drv.service_stats.add(cpu, stats_slot, c, n);
}

/// `count_at` for two counters at once (datagrams and bytes): one index computation per table.
#[inline]
fn count2_at(drv: &DataPath, cpu: usize, stats_slot: usize, c: (Counter, u64), d: (Counter, u64)) {
    drv.stats.add2(cpu, c.0, c.1, d.0, d.1);
    drv.service_stats.add2(cpu, stats_slot, c.0, c.1, d.0, d.1);
}

/// Whether a datagram from `remote_sa` may be answered: the allow-list, the reflection and
/// loop guard, and the per-source rate limit; counts the drop otherwise. `passed` is the last
/// source that passed the first two (they depend on the source and the list's Flags only) and
/// whether the rate limit applies to it: a burst from one peer is checked once. The rate limit
/// takes a token per datagram, burst or not. Receive callback, IRQL <= DISPATCH_LEVEL.
///
/// # Safety
/// `remote_sa` is the provider's SOCKADDR of a datagram of the list being indicated.
#[inline]
unsafe fn admit(
    u: &UdpSock,
    flags: ULONG,
    remote_sa: PSOCKADDR,
    passed: &mut Option<(SockAddrBuf, bool)>,
) -> Option<SockAddrBuf> {
    let drv = u.drv();
    // SAFETY: per the caller.
    let Some(remote) = (unsafe { SockAddrBuf::copy_from(remote_sa) }) else {
        drv.count_service(u.stats_slot, Counter::UdpDropFiltered, 1);
        return None;
    };
    let limited = match *passed {
        Some((p, limited)) if p.0 == remote.0 => limited,
        _ => {
            let limited = screen(u, flags, &remote)?;
            *passed = Some((remote, limited));
            limited
        }
    };
    if limited && !rate_allows(u, &remote) {
        return None;
    }
    Some(remote)
}

/// The allow-list and the reflection and loop guard for a datagram from `remote` in a list
/// indicated with `flags`: whether the rate limit applies to it if it passes; None (the drop
/// counted) otherwise. A function of the source, the flags' `SCREEN_FLAGS` bits, the live
/// limits and the service ports only (`Seen` relies on it). Receive callback, IRQL <=
/// DISPATCH_LEVEL.
#[inline]
fn screen(u: &UdpSock, flags: ULONG, remote: &SockAddrBuf) -> Option<bool> {
    let drv = u.drv();
    let peer = remote.to_socket_addr()?;
    if !drv.live.source_allowed(peer.ip()) {
        drv.count_service(u.stats_slot, Counter::UdpDropFiltered, 1);
        return None;
    }
    // Reflection and loop guard; MSG_BCAST/MSG_MCAST in Flags describe the whole list (W60).
    let guard = drv.live.udp_guard();
    if let Some(why) = udp_guard::check(guard, flags, peer, service_ports()) {
        drv.count_service(u.stats_slot, guard_counter(why), 1);
        return None;
    }
    Some(udp_guard::rate_limited_source(guard, peer.ip()))
}

/// The per-source rate limit: takes a token for a datagram from `remote`; false (the drop
/// counted) when it has none. Receive callback, IRQL <= DISPATCH_LEVEL.
fn rate_allows(u: &UdpSock, remote: &SockAddrBuf) -> bool {
    let drv = u.drv();
    let Some(ip) = remote.to_socket_addr().map(|p| p.ip()) else {
        return true;
    };
    let allowed = {
        drv.count(Counter::UdpSharedLocks, 1);
        let mut rate = u.rate.lock();
        // UdpRateLimitPerSource may change while running (live limits).
        rate.set_rate(drv.live.get(Limit::UdpRatePerSource));
        rate.allow(&ip, time::now())
    };
    if !allowed {
        drv.count_service(u.stats_slot, Counter::UdpDropRate, 1);
    }
    allowed
}

/// What a datagram gets back.
#[derive(Clone, Copy)]
enum Reply {
    /// The datagram itself (echo, zero-copy).
    Echo,
    /// A sockperf reply: a copy with this header.
    Sockperf(Header),
}

/// What the service sends back for a datagram of `len` bytes; `None`: nothing (discard, a
/// sockperf message that wants no reply, or a drop, counted). Receive callback, IRQL <=
/// DISPATCH_LEVEL.
// Two callers on the echo path (`echo_one` and the list loop): with plain #[inline] the
// compiler stopped inlining it and the fill/add below, and a burst's datagram paid the calls
// (bench/driver-callgrind, bursts of 64: 156 -> 204 Ir per echo).
#[allow(clippy::inline_always)]
#[inline(always)]
fn answer(u: &UdpSock, buf: &WSK_BUF, len: usize) -> Option<Reply> {
    // Echo answers every datagram as it is (`udp_verdict`'s first arm): no header to read, no
    // verdict to build (per datagram of a burst: 9 Ir less, bench/driver-callgrind).
    if u.service.mode == Mode::Echo {
        return Some(Reply::Echo);
    }
    // Only sockperf looks at the bytes (its header).
    let (head_bytes, hn) = if u.service.mode == Mode::Sockperf {
        // SAFETY: a valid buffer of the list being indicated.
        unsafe { head_of(buf) }
    } else {
        ([0u8; HEADER_LEN], 0)
    };
    match udp_verdict(u.service.mode, head_bytes.get(..hn).unwrap_or(&[]), len) {
        UdpVerdict::Consume => None,
        UdpVerdict::Drop => {
            if u.service.mode != Mode::Discard {
                u.drv()
                    .count_service(u.stats_slot, Counter::UdpDropService, 1);
            }
            None
        }
        UdpVerdict::SockperfReply(h) => {
            if len > COPY_BUF {
                u.drv()
                    .count_service(u.stats_slot, Counter::UdpDropTooBig, 1);
                return None;
            }
            Some(Reply::Sockperf(h))
        }
        UdpVerdict::Echo => Some(Reply::Echo),
    }
}

/// The replies of one indicated list, in batches of consecutive datagrams to one address
/// (W65: a WskSendMessages batch goes to one address): the open batch's head and tail, and
/// the list's owner (the first zero-copy reply's context, which holds the list's references).
struct Batch {
    list: *mut WSK_DATAGRAM_INDICATION,
    send: Senders,
    owner: *mut UdpSend,
    head: *mut UdpSend,
    tail: *mut UdpSend,
}

impl Batch {
    fn new(list: *mut WSK_DATAGRAM_INDICATION, send: Senders) -> Self {
        Batch {
            list,
            send,
            owner: ptr::null_mut(),
            head: ptr::null_mut(),
            tail: ptr::null_mut(),
        }
    }

    /// Fills context `c`'s send entry with the reply: a copy with the sockperf header
    /// rewritten, or the indicated buffer itself (zero-copy: the first such context owns the
    /// list and takes the callback's own reference on it, C1: a retained list is released once
    /// the callback and every send using it are done).
    ///
    /// # Safety
    /// `c` is a context of ours taken for this datagram; `buf` is valid for the callback.
    #[allow(clippy::inline_always)] // as `answer`
    #[inline(always)]
    unsafe fn fill(&mut self, c: *mut UdpSend, reply: Reply, buf: &WSK_BUF, len: usize) {
        // SAFETY: per the caller.
        let cr = unsafe { &mut *c };
        cr.entry.Next = ptr::null_mut();
        if let Reply::Sockperf(h) = reply {
            // SAFETY: copy buffer of COPY_BUF >= len bytes.
            let dst = unsafe { core::slice::from_raw_parts_mut(cr.copy, COPY_BUF) };
            let mut k = 0;
            // SAFETY: valid buffer.
            let _ = unsafe {
                mdl::for_each_chunk(buf, len, |s| {
                    k += copy_at(dst, k, s);
                })
            };
            let mut hb = [0u8; HEADER_LEN];
            h.write(&mut hb);
            let _ = copy_at(dst, 0, &hb);
            cr.entry.Buffer = WSK_BUF {
                Mdl: cr.copy_mdl,
                Offset: 0,
                Length: k,
            };
        } else {
            if self.owner.is_null() {
                self.owner = c;
                cr.list = self.list;
                // The callback's own reference (C1), dropped as its last act (`finish`).
                cr.refs.store(1, Ordering::SeqCst);
            }
            cr.entry.Buffer = *buf;
        }
    }

    /// Adds the filled context `c` (a reply to `remote`) to the open batch; a reply to another
    /// address, or a provider without WskSendMessages, sends the open batch first.
    ///
    /// # Safety
    /// `c` was filled by [`fill`](Self::fill); the contexts in the batch are ours.
    #[allow(clippy::inline_always)] // as `answer`
    #[inline(always)]
    unsafe fn add(&mut self, u: &UdpSock, c: *mut UdpSend, remote: SockAddrBuf) {
        // SAFETY: head, tail and c are contexts of ours in this callback's batches.
        unsafe {
            if !self.head.is_null()
                && (self.send.messages.is_none() || (*self.head).remote.0 != remote.0)
            {
                issue(u, self.head, self.tail, self.owner, self.send);
                self.head = ptr::null_mut();
            }
            if self.head.is_null() {
                self.head = c;
                (*c).remote = remote;
                (*c).count = 1;
            } else {
                (*self.tail).entry.Next = &raw mut (*c).entry;
                // The same chain for the pool (`put_contexts`).
                (*self.tail).next_free = c;
                (*self.head).count += 1;
            }
        }
        self.tail = c;
    }

    /// Sends the open batch and drops the callback's reference on the list, as the callback's
    /// last act: STATUS_PENDING if a send still uses the list (retained until the last one
    /// releases it), STATUS_SUCCESS otherwise.
    ///
    /// # Safety
    /// The callback's batch, called once, after every datagram was added.
    unsafe fn finish(self, u: &UdpSock, cpu: usize) -> NTSTATUS {
        if !self.head.is_null() {
            // SAFETY: the open batch; owner's references held by this callback.
            unsafe { issue(u, self.head, self.tail, self.owner, self.send) };
        }
        if self.owner.is_null() {
            return STATUS_SUCCESS;
        }
        // Zero: every batch already completed, nothing uses the list: not retained.
        // SAFETY: owner stays ours until its count reaches zero.
        if unsafe { (*self.owner).refs.fetch_sub(1, Ordering::SeqCst) } == 1 {
            // SAFETY: nothing uses the owner any more.
            unsafe { u.put_spare(cpu, self.owner) };
            STATUS_SUCCESS
        } else {
            STATUS_PENDING
        }
    }
}

/// WskSendMessages / WskSendTo completion. IRQL <= DISPATCH_LEVEL.
unsafe extern "win64" fn send_done(_dev: PDEVICE_OBJECT, irp: PIRP, ctx: PVOID) -> NTSTATUS {
    // First act, before the batch's contexts go back: the sender may be checking for W11.
    // SAFETY: the armed batch head, alive while its send holds the block's reference.
    unsafe {
        let head = ctx.cast::<UdpSend>();
        (*head).entered.entered();
        (*head).sending.store(false, Ordering::SeqCst);
    }
    // SAFETY: completed IRP.
    let (status, info) = unsafe { irp::result(irp) };
    // SAFETY: the armed batch head; its socket lives while this send holds its reference.
    unsafe { send_done_inner(ctx.cast(), status, info) };
    irp::routine_return()
}

/// Counts a finished batch, gives its contexts back, drops its list reference (the last one
/// gives the list back) and then its reference on the socket block (the last one frees it).
///
/// # Safety
/// `head` heads a batch that has finished; called once per batch.
unsafe fn send_done_inner(head: *mut UdpSend, status: NTSTATUS, info: usize) {
    // SAFETY: the socket block lives while this batch holds its reference.
    let up = unsafe { (*head).sock };
    // SAFETY: as above.
    let u = unsafe { &*up };
    let drv = u.drv();
    // SAFETY: the batch is ours until given back below.
    let (n, owner) = unsafe { ((*head).count, (*head).owner) };
    // Read once for the completion: its counters and the pool its contexts go back to.
    let cpu = DataPath::cpu();
    if NT_SUCCESS(status) {
        count2_at(
            drv,
            cpu,
            u.stats_slot,
            (Counter::UdpDatagramsOut, u64::from(n)),
            (Counter::UdpBytesOut, info as u64),
        );
    } else {
        count_at(drv, cpu, u.stats_slot, Counter::SendErrors, u64::from(n));
    }
    // SAFETY: the batch is done with its contexts; the owner stays until its count is 0.
    unsafe { u.put_batch(cpu, head, owner) };
    // SAFETY: owner alive until its count reaches zero.
    if !owner.is_null() && unsafe { (*owner).refs.fetch_sub(1, Ordering::SeqCst) } == 1 {
        // SAFETY: its last reference just went.
        unsafe { u.list_done(cpu, owner) };
    }
    // This send's reference on the block, the last use of u.
    if u.io.fetch_sub(1, Ordering::SeqCst) == 1 {
        // SAFETY: the close dropped the socket's own reference: closed, nothing in flight.
        unsafe { UdpSock::free(up) };
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn guard_flags_are_wsk_sys_flags() {
        assert_eq!(control::udp_guard::MSG_BCAST, wsk_sys::MSG_BCAST);
        assert_eq!(control::udp_guard::MSG_MCAST, wsk_sys::MSG_MCAST);
    }
}
