//! The WSK client: registration, listeners, connections, datagram sockets.
//!
//! Event callbacks are enabled per socket with SO_WSK_EVENT_CALLBACK, never statically
//! (WSK_SET_STATIC_EVENT_CALLBACKS), because: (1) per-socket enabling happens after our context
//! is complete (after bind for listen/datagram sockets, C26), so no event can reach a
//! half-built context (the G15/C24 race static callbacks have); (2) the connection events
//! (receive, disconnect, send backlog) are enabled on each *listener*, so every socket accepted
//! through WskAcceptEvent inherits them (W34) and starts receiving the moment the accept
//! callback returns, without a control call per connection; (3) outbound connection sockets
//! enable the same events after connect. The price, a control call per listener, is paid once.

pub mod addr;
pub mod conn;
pub mod job;
pub mod listener;
pub mod mdl;
pub mod udp;
pub mod udpjob;

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use control::config::{Config, Proto, Service, MAX_SERVICES};
use wsk_sys::{
    ExWaitForRundownProtectionRelease, IoAllocateMdl, IoFreeMdl, KeDelayExecutionThread,
    KeGetCurrentProcessorNumberEx, KeQueryPerformanceCounter, KernelMode,
    MmBuildMdlForNonPagedPool, WskDeregister, WskRegister, WskReleaseProviderNPI, WskSetOption,
    AF_INET, AF_INET6, EX_RUNDOWN_REF, FALSE, IPPROTO_TCP, IPPROTO_UDP, LARGE_INTEGER,
    MAKE_WSK_VERSION, NPIID, NPI_WSK_INTERFACE_ID, NTSTATUS, NT_SUCCESS, PDEVICE_OBJECT, PIRP,
    PMDL, PVOID, SOCK_DGRAM, SOCK_STREAM, SOL_SOCKET, SO_WSK_EVENT_CALLBACK,
    STATUS_INSUFFICIENT_RESOURCES, STATUS_NOT_SUPPORTED, STATUS_SUCCESS, ULONG,
    WSK_CLIENT_DISPATCH, WSK_CLIENT_NPI, WSK_EVENT_CALLBACK_CONTROL, WSK_FLAG_DATAGRAM_SOCKET,
    WSK_FLAG_LISTEN_SOCKET, WSK_PROVIDER_BASIC_DISPATCH, WSK_PROVIDER_DATAGRAM_DISPATCH,
    WSK_PROVIDER_DISPATCH, WSK_PROVIDER_LISTEN_DISPATCH, WSK_PROVIDER_NPI, WSK_REGISTRATION,
    WSK_SOCKET,
};

use crate::kernel::{irp, pool};
use crate::service::budget::RetainedBudget;
use crate::service::source;
use crate::stats::{Counter, Stats, SvcStats};

/// NPI_WSK_INTERFACE_ID (uuid.lib in C): {2227E803-8D8B-11D4-ABAD-009027A3CE26}... defined by
/// wsk-sys; referenced through it.
pub fn npi_id() -> *const NPIID {
    ptr::addr_of!(NPI_WSK_INTERFACE_ID)
}

/// Start-up progress, readable by the host runner and tests.
pub const START_PENDING: u32 = 0;
pub const START_READY: u32 = 1;
pub const START_FAILED: u32 = 2;

pub struct Driver {
    pub registration: WSK_REGISTRATION,
    pub client_npi: WSK_CLIENT_NPI,
    pub provider: WSK_PROVIDER_NPI,
    pub registered: bool,
    pub captured: bool,
    pub cfg: Config,
    pub stats: Stats,
    pub budget: RetainedBudget,
    /// Held by every live connection context from accept to close completion (C29, C30).
    pub rundown: EX_RUNDOWN_REF,
    pub stopping: AtomicBool,
    /// Ends the housekeeping loop (after every socket is closed).
    pub hk_stop: AtomicBool,
    pub start_state: AtomicU32,
    pub listeners: [*mut listener::Listener; MAX_SERVICES],
    /// Read by the housekeeping thread, taken out by unload before the socket is freed.
    pub udps: [AtomicPtr<udp::UdpSock>; MAX_SERVICES],
    /// Housekeeping ticks done (unload waits for two after taking a socket out).
    pub hk_gen: AtomicU32,
    pub conns: conn::ConnPool,
    /// The source service's shared read-only payload and its MDL.
    pub pattern: *mut u8,
    pub pattern_mdl: PMDL,
    pub perf_freq: u64,
    pub startup_thread: PVOID,
    pub device: PDEVICE_OBJECT,
    pub symlink_created: bool,
    /// One control request at a time; unload takes it for good.
    pub control_busy: AtomicBool,
    /// The outbound load job (one at a time).
    pub job: job::Job,
    /// The housekeeper itself is closing a socket (it need not wait for its own ticks).
    pub in_hk: bool,
    /// Which service owns each per-service counter slot. A slot follows the service, not its
    /// socket: re-creating a dead socket keeps the counts; a service removed by
    /// reconfiguration frees its slot. Changed only on the serialised control path.
    pub svc_slots: [Option<Service>; MAX_SERVICES],
    /// Per-CPU × per-service counters (all-zero is valid: left as the pool zeroed it).
    pub svc_stats: SvcStats,
    /// SIO_WSK_QUERY_IDEAL_SEND_BACKLOG queries answered at accept and the last value (W36);
    /// host-test visibility only, not part of the control ABI (all-zero is valid).
    pub backlog_queries: AtomicU64,
    pub backlog_last: AtomicUsize,
}

/// A fixed-capacity list of services (no allocation on the control path either).
mod heapless_list {
    use control::config::{Service, MAX_SERVICES};

    pub struct List {
        items: [Option<Service>; MAX_SERVICES],
        len: usize,
    }

    impl FromIterator<Service> for List {
        fn from_iter<I: IntoIterator<Item = Service>>(it: I) -> Self {
            let mut l = List {
                items: [None; MAX_SERVICES],
                len: 0,
            };
            for s in it.into_iter().take(MAX_SERVICES) {
                l.items[l.len] = Some(s);
                l.len += 1;
            }
            l
        }
    }

    impl List {
        pub fn iter(&self) -> impl Iterator<Item = &Service> {
            self.items[..self.len].iter().flatten()
        }
    }
}

static CLIENT_DISPATCH: WSK_CLIENT_DISPATCH = WSK_CLIENT_DISPATCH {
    Version: MAKE_WSK_VERSION(1, 0),
    Reserved: 0,
    WskClientEvent: None,
};

impl Driver {
    pub fn cpu() -> usize {
        // SAFETY: no preconditions; NULL = do not return the group/number struct.
        unsafe { KeGetCurrentProcessorNumberEx(ptr::null_mut()) as usize }
    }

    pub fn count(&self, c: Counter, n: u64) {
        self.stats.add(Self::cpu(), c, n);
    }

    /// Counts globally and for the service owning `slot` (`stats::NO_SLOT`: global only).
    /// Any IRQL; touches only this CPU's lines.
    #[inline]
    pub fn count_svc(&self, slot: usize, c: Counter, n: u64) {
        let cpu = Self::cpu();
        self.stats.add(cpu, c, n);
        self.svc_stats.add(cpu, slot, c, n);
    }

    /// The counter slot of a configured service, taking (and zeroing) a free one if it has
    /// none yet. Control path / start-up, PASSIVE_LEVEL.
    pub fn slot_for(&mut self, svc: &Service) -> usize {
        if let Some(i) = self.svc_slots.iter().position(|s| s.as_ref() == Some(svc)) {
            return i;
        }
        match self.svc_slots.iter().position(Option::is_none) {
            Some(i) => {
                self.svc_stats.clear(i);
                self.svc_slots[i] = Some(*svc);
                i
            }
            None => crate::stats::NO_SLOT,
        }
    }

    /// Frees the slots of services no longer configured. Control path, PASSIVE_LEVEL.
    pub fn release_slots(&mut self, keep: &[Service]) {
        for s in &mut self.svc_slots {
            if s.is_some_and(|v| !keep.contains(&v)) {
                *s = None;
            }
        }
    }

    /// Per-service counters of a configured service (ABI layout); None if it has no slot.
    pub fn service_counters(&self, svc: &Service) -> Option<[u64; control::stats::COUNTER_COUNT]> {
        let i = self
            .svc_slots
            .iter()
            .position(|s| s.as_ref() == Some(svc))?;
        Some(self.svc_stats.snapshot(i))
    }

    pub fn now(&self) -> u64 {
        // SAFETY: KeQueryPerformanceCounter may be called at any IRQL.
        unsafe { KeQueryPerformanceCounter(ptr::null_mut()).QuadPart as u64 }
    }

    /// WskRegister. PASSIVE_LEVEL (DriverEntry).
    ///
    /// # Safety
    /// `self` is at its final address (the registration block must stay put, W2).
    pub unsafe fn register(&mut self) -> NTSTATUS {
        self.client_npi.ClientContext = ptr::null_mut();
        self.client_npi.Dispatch = &raw const CLIENT_DISPATCH;
        // SAFETY: both blocks live in the driver state until WskDeregister returns (W2).
        let st = unsafe { WskRegister(&raw mut self.client_npi, &raw mut self.registration) };
        self.registered = NT_SUCCESS(st);
        st
    }

    /// The provider dispatch table (valid while captured).
    pub fn provider(&self) -> &WSK_PROVIDER_DISPATCH {
        // SAFETY: set by a successful capture, released only at unload after all sockets close.
        unsafe { &*self.provider.Dispatch }
    }

    pub fn alloc_pattern(&mut self) -> bool {
        self.pattern = pool::alloc(source::PATTERN_LEN, pool::TAG_PATTERN);
        if self.pattern.is_null() {
            return false;
        }
        // SAFETY: freshly allocated, PATTERN_LEN bytes, exclusively ours.
        source::fill_pattern(unsafe {
            core::slice::from_raw_parts_mut(self.pattern, source::PATTERN_LEN)
        });
        self.pattern_mdl = build_mdl(self.pattern, source::PATTERN_LEN);
        !self.pattern_mdl.is_null()
    }

    /// Creates every configured socket. PASSIVE_LEVEL (start-up thread). A service that fails
    /// (e.g. its port is taken) is logged and the others still run.
    ///
    /// # Safety
    /// Captured provider; `self` at its final address.
    pub unsafe fn create_sockets(&mut self) -> NTSTATUS {
        let services = self.cfg.services;
        let mut first_err = STATUS_SUCCESS;
        for svc in services.as_slice() {
            // SAFETY: per this function's contract.
            if let Err(e) = unsafe { self.open_service(svc) } {
                if first_err == STATUS_SUCCESS {
                    first_err = e;
                }
            }
        }
        first_err
    }

    /// Opens one service's socket into a free slot. PASSIVE_LEVEL.
    ///
    /// # Safety
    /// Captured provider; `self` at its final address.
    pub unsafe fn open_service(&mut self, svc: &Service) -> Result<(), NTSTATUS> {
        let slot = self.slot_for(svc);
        let r = match svc.proto {
            Proto::Tcp => match self.listeners.iter().position(|l| l.is_null()) {
                // SAFETY: per this function's contract.
                Some(i) => unsafe { listener::Listener::create(self, svc, slot) }
                    .map(|l| self.listeners[i] = l),
                None => Err(STATUS_INSUFFICIENT_RESOURCES),
            },
            Proto::Udp => match self
                .udps
                .iter()
                .position(|u| u.load(Ordering::SeqCst).is_null())
            {
                // SAFETY: per this function's contract.
                Some(i) => unsafe { udp::UdpSock::create(self, svc, slot) }
                    .map(|u| self.udps[i].store(u, Ordering::SeqCst)),
                None => Err(STATUS_INSUFFICIENT_RESOURCES),
            },
        };
        match r {
            Ok(()) => crate::log_info!(
                "{} {} on {}:{}",
                svc.proto.name(),
                svc.mode.name(),
                svc.bind,
                svc.port
            ),
            Err(e) => crate::log_err!(
                "{} {} on {}:{}: socket failed {:#x}",
                svc.proto.name(),
                svc.mode.name(),
                svc.bind,
                svc.port,
                e as u32
            ),
        }
        r
    }

    /// Closes one service's socket if it is open (connections it accepted keep running).
    /// PASSIVE_LEVEL.
    ///
    /// # Safety
    /// Captured provider.
    pub unsafe fn close_service(&mut self, svc: &Service, timeout_ms: u64) -> bool {
        match svc.proto {
            Proto::Tcp => {
                // SAFETY: non-null slots hold live listeners.
                let Some(i) = self
                    .listeners
                    .iter()
                    .position(|&l| !l.is_null() && unsafe { (*l).svc } == *svc)
                else {
                    return false;
                };
                let l = core::mem::replace(&mut self.listeners[i], ptr::null_mut());
                // SAFETY: taken out of the table, closed once.
                unsafe { listener::Listener::close_and_free(l) };
            }
            Proto::Udp => {
                // SAFETY: non-null slots hold live sockets.
                let Some(i) = self.udps.iter().position(|u| {
                    let p = u.load(Ordering::SeqCst);
                    !p.is_null() && unsafe { (*p).svc } == *svc
                }) else {
                    return false;
                };
                let u = self.udps[i].swap(ptr::null_mut(), Ordering::SeqCst);
                // The housekeeper may be inside a tick that read the pointer: two more ticks
                // and it is out (bounded: it ticks every 5 ms while the driver runs).
                if !self.in_hk {
                    let g0 = self.hk_gen.load(Ordering::SeqCst);
                    wait_until(200, || {
                        self.hk_gen.load(Ordering::SeqCst).wrapping_sub(g0) >= 2
                    });
                }
                // SAFETY: taken out of the table, closed once.
                unsafe { udp::UdpSock::close_and_free(u, timeout_ms) };
            }
        }
        true
    }

    /// Run-time reconfiguration (control path, PASSIVE_LEVEL, one at a time). Services are
    /// diffed: removed ones are closed, added ones opened, unchanged ones not touched. If an
    /// added one fails (e.g. STATUS_ADDRESS_ALREADY_EXISTS) every change of this call is undone
    /// and that status returned: nothing is left half-applied. Limits size the pre-allocated
    /// pools at load, so a change of limits is refused (STATUS_NOT_SUPPORTED).
    ///
    /// # Safety
    /// Captured provider, not unloading, called from the serialised control path.
    pub unsafe fn reconfigure(&mut self, new: &Config) -> Result<(), NTSTATUS> {
        if new.limits != self.cfg.limits {
            return Err(STATUS_NOT_SUPPORTED);
        }
        let old = self.cfg.services;
        let timeout = u64::from(self.cfg.limits.disconnect_timeout_ms);
        let removed: heapless_list::List = old
            .as_slice()
            .iter()
            .filter(|s| !new.services.as_slice().contains(s))
            .copied()
            .collect();
        let added: heapless_list::List = new
            .services
            .as_slice()
            .iter()
            .filter(|s| !old.as_slice().contains(s))
            .copied()
            .collect();
        for s in removed.iter() {
            // SAFETY: per this function's contract.
            unsafe { self.close_service(s, timeout) };
        }
        for (k, s) in added.iter().enumerate() {
            // SAFETY: per this function's contract.
            if let Err(e) = unsafe { self.open_service(s) } {
                for undo in added.iter().take(k) {
                    // SAFETY: opened above in this call.
                    unsafe { self.close_service(undo, timeout) };
                }
                for back in removed.iter() {
                    // SAFETY: best effort: the old port may have been taken meanwhile (logged).
                    let _ = unsafe { self.open_service(back) };
                }
                let keep = self.cfg.services;
                self.release_slots(keep.as_slice());
                return Err(e);
            }
        }
        // Only the control path reads the services list; callbacks read the limits.
        // SAFETY: exclusive control path; the limits part is unchanged.
        unsafe { ptr::addr_of_mut!(self.cfg.services).write(new.services) };
        self.release_slots(new.services.as_slice());
        Ok(())
    }

    /// Teardown of every socket. PASSIVE_LEVEL (DriverUnload). Bounded: graceful first for
    /// `disconnect_timeout_ms`, then abortive (C29, C34), then waits for the rundown.
    ///
    /// # Safety
    /// Called once, after start-up finished.
    pub unsafe fn close_sockets(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // 0. A UDP load job's socket (TCP job connections go with the others below).
        job::close_udp(self);
        // 1. No new connections: close the listeners (the close waits for running accept
        //    callbacks, W70).
        for l in &mut self.listeners {
            if !l.is_null() {
                // SAFETY: created by Listener::create, closed once here.
                unsafe { listener::Listener::close_and_free(*l) };
                *l = ptr::null_mut();
            }
        }
        let timeout = u64::from(self.cfg.limits.disconnect_timeout_ms);
        // 2. Connections: echo what is queued, FIN, then close; abort whatever is left.
        self.conns.shutdown_all(false);
        wait_until(timeout, || self.conns.active() == 0);
        self.conns.shutdown_all(true);
        // 3. Datagram sockets: wait for in-flight sends (they hold retained lists, C4), close.
        for i in 0..self.udps.len() {
            let u = self.udps[i].load(Ordering::SeqCst);
            if !u.is_null() {
                // SAFETY: a live socket of the table.
                let svc = unsafe { (*u).svc };
                // SAFETY: closed once, taken out of the table first.
                unsafe { self.close_service(&svc, timeout) };
            }
        }
        // 4. Every connection context has been closed and its completion has run (C30).
        // SAFETY: initialised in DriverEntry; PASSIVE_LEVEL.
        unsafe { ExWaitForRundownProtectionRelease(&raw mut self.rundown) };
    }

    /// Housekeeping tick. PASSIVE_LEVEL (start-up thread).
    pub fn housekeeping(&mut self) {
        self.conns.kick_blocked();
        job::tick(self);
        self.recreate_dead_sockets();
        for slot in &self.udps {
            let u = slot.load(Ordering::SeqCst);
            if !u.is_null() {
                // SAFETY: unload takes the pointer out and waits two ticks before freeing it.
                unsafe { (*u).kick() };
            }
        }
        self.hk_gen.fetch_add(1, Ordering::SeqCst);
    }

    /// A listener that got a NULL AcceptSocket (W48) or a datagram socket that got a NULL list
    /// (W60) no longer works: close it and open the same service again (C8). Runs under the
    /// control lock so it never races a reconfiguration; skipped (retried next tick) if busy.
    fn recreate_dead_sockets(&mut self) {
        let mut dead: [Option<Service>; 2 * MAX_SERVICES] = [None; 2 * MAX_SERVICES];
        let mut n = 0;
        for &l in &self.listeners {
            // SAFETY: non-null entries are live listeners (only this thread and the serialised
            // control path change the table).
            if !l.is_null() && unsafe { (*l).dead.load(Ordering::SeqCst) } {
                dead[n] = Some(unsafe { (*l).svc });
                n += 1;
            }
        }
        for u in &self.udps {
            let p = u.load(Ordering::SeqCst);
            // SAFETY: as above.
            if !p.is_null() && unsafe { (*p).dead.load(Ordering::SeqCst) } {
                dead[n] = Some(unsafe { (*p).svc });
                n += 1;
            }
        }
        if n == 0
            || self.stopping.load(Ordering::SeqCst)
            || self.control_busy.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let timeout = u64::from(self.cfg.limits.disconnect_timeout_ms);
        self.in_hk = true;
        for svc in dead.iter().flatten() {
            crate::log_err!(
                "{} {} port {}: socket dead, re-creating",
                svc.proto.name(),
                svc.mode.name(),
                svc.port
            );
            // SAFETY: captured provider; the control lock is held.
            unsafe {
                self.close_service(svc, timeout);
                let _ = self.open_service(svc);
            }
        }
        self.in_hk = false;
        self.control_busy.store(false, Ordering::SeqCst);
    }

    /// # Safety
    /// All sockets closed.
    pub unsafe fn release_wsk(&mut self) {
        if self.captured {
            // SAFETY: paired with the successful capture (C28).
            unsafe { WskReleaseProviderNPI(&raw mut self.registration) };
            self.captured = false;
        }
        if self.registered {
            // SAFETY: paired with WskRegister (C28); returns once every socket is closed (W7).
            unsafe { WskDeregister(&raw mut self.registration) };
            self.registered = false;
        }
    }

    /// # Safety
    /// Nothing uses the pools any more.
    pub unsafe fn free_resources(&mut self) {
        // SAFETY: no socket is open, no IRP outstanding.
        unsafe {
            self.conns.free();
            if !self.pattern_mdl.is_null() {
                IoFreeMdl(self.pattern_mdl);
                self.pattern_mdl = ptr::null_mut();
            }
            pool::free(self.pattern, pool::TAG_PATTERN);
        }
        self.pattern = ptr::null_mut();
    }
}

/// An MDL over non-paged pool (IRQL <= DISPATCH_LEVEL); null on failure.
pub fn build_mdl(p: *mut u8, len: usize) -> PMDL {
    // SAFETY: p/len is a live non-paged block owned by the caller, which frees the MDL first.
    unsafe {
        let mdl = IoAllocateMdl(p.cast(), len as ULONG, FALSE, FALSE, ptr::null_mut());
        if !mdl.is_null() {
            MmBuildMdlForNonPagedPool(mdl);
        }
        mdl
    }
}

/// Polls `done` every 10 ms for at most `ms` milliseconds. PASSIVE_LEVEL only.
pub fn wait_until(ms: u64, mut done: impl FnMut() -> bool) -> bool {
    let mut waited = 0;
    loop {
        if done() {
            return true;
        }
        if waited >= ms {
            return false;
        }
        sleep_ms(10);
        waited += 10;
    }
}

pub fn sleep_ms(ms: u64) {
    // Relative time in 100 ns units is negative.
    let mut t = LARGE_INTEGER {
        QuadPart: -((ms as i64) * 10_000),
    };
    // SAFETY: PASSIVE_LEVEL kernel-mode delay.
    unsafe { KeDelayExecutionThread(KernelMode, FALSE, &raw mut t) };
}

/// The two socket kinds a service owns; each is created and bound the same way.
#[derive(Clone, Copy)]
pub enum BoundKind {
    Listen,
    Datagram,
}

/// WskSocket + WskBind for a service's listen or datagram socket, PASSIVE_LEVEL. No event is
/// enabled yet, so no callback can run (C26 enables them after bind).
/// `Err((status, sock))`: `sock` is null when no socket was created, else the caller closes it
/// (C23: and frees its context only after the close completed).
///
/// # Safety
/// `drv` is captured; `ctx` is the socket's fully initialised context (C24) and `dispatch` the
/// matching static client dispatch table, both alive until the socket's close completes.
pub unsafe fn socket_and_bind(
    drv: &Driver,
    kind: BoundKind,
    ctx: PVOID,
    dispatch: *const core::ffi::c_void,
    local: core::net::SocketAddr,
) -> Result<*mut WSK_SOCKET, (NTSTATUS, *mut WSK_SOCKET)> {
    let (ty, proto, flags) = match kind {
        BoundKind::Listen => (SOCK_STREAM, IPPROTO_TCP, WSK_FLAG_LISTEN_SOCKET),
        BoundKind::Datagram => (SOCK_DGRAM, IPPROTO_UDP, WSK_FLAG_DATAGRAM_SOCKET),
    };
    let family = if local.is_ipv4() { AF_INET } else { AF_INET6 };
    let client = drv.provider.Client;
    let Some(wsk_socket) = drv.provider().WskSocket else {
        return Err((STATUS_NOT_SUPPORTED, ptr::null_mut()));
    };
    // SAFETY: per the caller, ctx and dispatch outlive the socket; the IRP is waited for.
    let (st, info) = unsafe {
        irp::call_sync(|i| {
            wsk_socket(
                client,
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
    if !NT_SUCCESS(st) {
        return Err((st, ptr::null_mut()));
    }
    // C19: Information is a socket only on success.
    let sock = info as *mut WSK_SOCKET;
    // SAFETY: the provider gave sock the dispatch table of its kind (W25).
    let bind = unsafe {
        match kind {
            BoundKind::Listen => (*(*sock).Dispatch.cast::<WSK_PROVIDER_LISTEN_DISPATCH>()).WskBind,
            BoundKind::Datagram => {
                (*(*sock).Dispatch.cast::<WSK_PROVIDER_DATAGRAM_DISPATCH>()).WskBind
            }
        }
    };
    let mut a = addr::SockAddrBuf::from_socket_addr(local);
    let st = match bind {
        // SAFETY: a lives across the synchronous call.
        Some(bind) => unsafe { irp::call_sync(|i| bind(sock, a.as_sockaddr(), 0, i)).0 },
        None => STATUS_NOT_SUPPORTED,
    };
    if NT_SUCCESS(st) {
        Ok(sock)
    } else {
        Err((st, sock))
    }
}

/// SO_WSK_EVENT_CALLBACK enabling `mask` (no IRP: enabling completes inline, W30).
///
/// # Safety
/// `sock` is a live socket whose category has the callbacks in `mask`.
pub unsafe fn enable_events(sock: *mut WSK_SOCKET, mask: ULONG) -> NTSTATUS {
    let mut ctl = WSK_EVENT_CALLBACK_CONTROL {
        NpiId: npi_id(),
        EventMask: mask,
    };
    // SAFETY: every socket dispatch table starts with WSK_PROVIDER_BASIC_DISPATCH.
    let basic = unsafe { &*(*sock).Dispatch.cast::<WSK_PROVIDER_BASIC_DISPATCH>() };
    let Some(f) = basic.WskControlSocket else {
        return STATUS_NOT_SUPPORTED;
    };
    // SAFETY: ctl lives across the call; no IRP for enabling (W30).
    unsafe {
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
    }
}

/// WskSetOption of a u32 option, synchronously. PASSIVE_LEVEL (set-up).
///
/// # Safety
/// `sock` is a live socket.
pub unsafe fn set_option_u32(
    sock: *mut WSK_SOCKET,
    level: ULONG,
    code: ULONG,
    value: u32,
) -> NTSTATUS {
    // SAFETY: every socket dispatch table starts with WSK_PROVIDER_BASIC_DISPATCH.
    let basic = unsafe { &*(*sock).Dispatch.cast::<WSK_PROVIDER_BASIC_DISPATCH>() };
    let Some(ctl) = basic.WskControlSocket else {
        return STATUS_NOT_SUPPORTED;
    };
    let mut v = value;
    // SAFETY: v lives across the synchronous call.
    unsafe {
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
    }
}

/// Synchronous WskCloseSocket for sockets closed at PASSIVE_LEVEL (listeners, datagram).
///
/// # Safety
/// No call on `sock` still executing (C22); `sock` not used afterwards (C23).
pub unsafe fn close_sync(sock: *mut WSK_SOCKET, close_irp: PIRP) -> NTSTATUS {
    // SAFETY: every socket dispatch table starts with WSK_PROVIDER_BASIC_DISPATCH.
    let basic = unsafe { &*(*sock).Dispatch.cast::<WSK_PROVIDER_BASIC_DISPATCH>() };
    let Some(close) = basic.WskCloseSocket else {
        return STATUS_NOT_SUPPORTED;
    };
    // SAFETY: the pre-allocated IRP is owned by call_sync_with until it returns.
    unsafe { irp::call_sync_with(close_irp, |i| close(sock, i)).0 }
}
