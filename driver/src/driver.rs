//! The root state (`Driver`) and its lifecycle: creation and WSK registration, the services'
//! sockets (open, close, run-time reconfiguration, re-creation of dead ones), the per-service
//! counter slots, housekeeping and teardown.
//!
//! Which state each room owns: `serve` the listeners, the connection pool and the UDP sockets;
//! `load` the outbound load job; this file hands them the driver and decides when.

use control::config::Limit;
use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};

use control::config::{Config, Proto, Service, Services, MAX_SERVICES};
use control::protocol::pattern;
use wsk_sys::{
    ExInitializeRundownProtection, ExWaitForRundownProtectionRelease, IoFreeMdl, WskDeregister,
    WskRegister, WskReleaseProviderNPI, MAKE_WSK_VERSION, NTSTATUS, PDEVICE_OBJECT, PVOID,
    STATUS_DEVICE_NOT_READY, STATUS_INSUFFICIENT_RESOURCES, STATUS_NOT_SUPPORTED,
    WSK_CLIENT_DISPATCH, WSK_CLIENT_NPI, WSK_REGISTRATION,
};

use crate::conn::ConnPool;
use crate::datapath::DataPath;
use crate::handoff::Mailbox;
use crate::kernel::{pool, time};
use crate::live_limits::{self, LiveLimits};
use crate::load::{self, Job};
use crate::logic::budget::RetainedBudget;
use crate::logic::source;
use crate::reopen::Reopen;
use crate::serve::listener::Listener;
use crate::serve::udp::UdpSock;
use crate::stats::{Stats, NO_SLOT};
use crate::wsk::{check, mdl::build_mdl};

/// Start-up progress, readable by the host runner and tests.
/// How long a limits change waits for readers to leave the spare allow-list buffer (each
/// stays for one scan of at most 16 prefixes; the bound only gives up).
const LIST_SWAP_WAIT_MS: u64 = 1000;

pub const START_PENDING: u32 = 0;
pub const START_READY: u32 = 1;
pub const START_FAILED: u32 = 2;

/// The log line of an attempt to open `service`'s socket. PASSIVE_LEVEL.
fn log_open(service: &Service, r: Result<(), NTSTATUS>) {
    match r {
        Ok(()) => crate::kernel::log::log_info!(
            "{} {} on {}:{}",
            service.proto.name(),
            service.mode.name(),
            service.bind,
            service.port
        ),
        Err(e) => crate::kernel::log::log_err!(
            "{} {} on {}:{}: socket failed {:#x}",
            service.proto.name(),
            service.mode.name(),
            service.bind,
            service.port,
            e as u32
        ),
    }
}

/// How often (in housekeeping ticks) a service that failed to open is tried again.
const REOPEN_EVERY_TICKS: u32 = 16;

pub(crate) struct Driver {
    pub(crate) registration: WSK_REGISTRATION,
    pub(crate) client_npi: WSK_CLIENT_NPI,
    pub(crate) registered: bool,
    pub(crate) captured: bool,
    /// What the data path's callbacks may reach (counters, live limits, budget, connection
    /// pool, provider, rundown, load job); `conn`, `serve` and `load` hold `&DataPath`, never
    /// the Driver.
    pub(crate) dp: DataPath,
    /// The control path's copy of the configuration (services, limits as last set); the
    /// data path reads the limits from `dp.live` instead.
    pub(crate) config: Config,
    /// Ends the housekeeping loop (after every socket is closed).
    pub(crate) hk_stop: AtomicBool,
    pub(crate) start_state: AtomicU32,
    pub(crate) listeners: [*mut Listener; MAX_SERVICES],
    /// Taken out by the close before the socket is freed (the housekeeper's pass may read it:
    /// see `DataPath::hk_pass`).
    pub(crate) udps: [AtomicPtr<UdpSock>; MAX_SERVICES],
    /// Housekeeping ticks done (the re-open schedule; tests read it).
    pub(crate) hk_gen: AtomicU32,
    pub(crate) startup_thread: PVOID,
    /// Requests the control path hands to the start-up (system) thread.
    pub(crate) mailbox: Mailbox,
    pub(crate) device: PDEVICE_OBJECT,
    pub(crate) symlink_created: bool,
    /// One control request at a time; unload takes it for good.
    pub(crate) control_busy: AtomicBool,
    /// The housekeeper itself is closing a socket (it need not wait for its own pass).
    pub(crate) in_hk: bool,
    /// Services that failed to open, at start-up or when their dead socket was re-created
    /// (the port held, the address missing, a transient failure), with the status of the last
    /// attempt: the housekeeper tries again every `REOPEN_EVERY_TICKS` ticks until one opens or
    /// a reconfiguration removes the service (without it one failed re-open left the service
    /// dead until unload), and `driver status` reports them.
    pub(crate) reopen: Reopen,
    /// Which service owns each per-service counter slot. A slot follows the service, not its
    /// socket: re-creating a dead socket keeps the counts; a service removed by
    /// reconfiguration frees its slot. Changed only on the serialised control path.
    pub(crate) stats_slots: [Option<Service>; MAX_SERVICES],
}

static CLIENT_DISPATCH: WSK_CLIENT_DISPATCH = WSK_CLIENT_DISPATCH {
    Version: MAKE_WSK_VERSION(1, 0),
    Reserved: 0,
    WskClientEvent: None,
};

impl Driver {
    /// Allocates and initialises the state block (pools, pattern, rundown) and registers with
    /// WSK. PASSIVE_LEVEL (DriverEntry). On failure nothing is left allocated or registered.
    pub(crate) fn create(config: &Config) -> Result<*mut Driver, NTSTATUS> {
        let d: *mut Driver = pool::alloc_zeroed(pool::TAG_DRIVER);
        if d.is_null() {
            return Err(STATUS_INSUFFICIENT_RESOURCES);
        }
        // SAFETY: the zeroed block is a valid Driver for all-integer/pointer/atomic fields
        // (SvcStats and the arrays of pointers included); the non-trivial ones are written
        // here before use.
        let r = unsafe {
            ptr::write(ptr::addr_of_mut!((*d).config), config.clone());
            ptr::write(
                ptr::addr_of_mut!((*d).dp.live),
                LiveLimits::new(&config.limits),
            );
            ptr::write(ptr::addr_of_mut!((*d).dp.stats), Stats::new());
            ptr::write(
                ptr::addr_of_mut!((*d).dp.budget),
                RetainedBudget::new(config.limits.max_retained_total as usize),
            );
            ptr::write(ptr::addr_of_mut!((*d).dp.conns), ConnPool::empty());
            ptr::write(ptr::addr_of_mut!((*d).dp.job), Job::new());
            ptr::write(ptr::addr_of_mut!((*d).stats_slots), [None; MAX_SERVICES]);
            ptr::write(ptr::addr_of_mut!((*d).reopen), Reopen::empty());
            &mut *d
        };
        r.dp.perf_freq = time::frequency();
        // SAFETY: the event lives in the block, which outlives every waiter and setter.
        unsafe {
            Mailbox::init(&raw mut r.mailbox);
        }
        // SAFETY: the rundown lives in the block until it is freed after the last release.
        unsafe { ExInitializeRundownProtection(&raw mut r.dp.rundown) };
        let status = r.alloc_pattern().and_then(|()| {
            r.dp.conns.init(
                &raw const r.dp,
                config.limits.max_connections as usize,
                config.limits.send_ring_bytes as usize,
            )
        });
        // SAFETY: d is at its final address.
        let status = status.and_then(|()| unsafe { r.register() });
        if let Err(e) = status {
            // SAFETY: nothing started; undo what was set up.
            unsafe { Self::destroy(d) };
            return Err(e);
        }
        Ok(d)
    }

    /// Releases the provider NPI and deregisters (returns once every socket is closed and every
    /// IRP has completed, W7: WskDeregister waits for every socket and call). Idempotent.
    ///
    /// # Safety
    /// `d` from [`create`](Self::create); no socket is open and no thread uses it.
    pub(crate) unsafe fn release_wsk(d: *mut Driver) {
        // SAFETY: per the caller.
        unsafe { (*d).release_wsk_inner() };
    }

    /// Releases WSK (if not done yet) and frees everything.
    ///
    /// # Safety
    /// `d` from [`create`](Self::create): no socket, thread, device or IRP uses it any more.
    pub(crate) unsafe fn destroy(d: *mut Driver) {
        // SAFETY: per the caller.
        unsafe {
            (*d).release_wsk_inner();
            (*d).free_resources();
            pool::free_typed(d, pool::TAG_DRIVER);
        }
    }

    /// The counter slot of a configured service, taking (and zeroing) a free one if it has
    /// none yet. Control path / start-up, PASSIVE_LEVEL.
    fn stats_slot_for(&mut self, service: &Service) -> usize {
        if let Some(i) = self
            .stats_slots
            .iter()
            .position(|s| s.as_ref() == Some(service))
        {
            return i;
        }
        match self.stats_slots.iter().position(Option::is_none) {
            Some(i) => {
                self.dp.service_stats.clear(i);
                self.stats_slots[i] = Some(*service);
                i
            }
            None => NO_SLOT,
        }
    }

    /// Frees the slots of services no longer configured. Control path, PASSIVE_LEVEL.
    fn release_stats_slots(&mut self, keep: &[Service]) {
        for s in &mut self.stats_slots {
            if s.is_some_and(|v| !keep.contains(&v)) {
                *s = None;
            }
        }
    }

    /// Per-service counters of a configured service (ABI layout); None if it has no slot.
    pub(crate) fn service_counters(
        &self,
        service: &Service,
    ) -> Option<[u64; control::stats::COUNTER_COUNT]> {
        let i = self
            .stats_slots
            .iter()
            .position(|s| s.as_ref() == Some(service))?;
        Some(self.dp.service_stats.snapshot(i))
    }

    /// WskRegister. PASSIVE_LEVEL (DriverEntry).
    ///
    /// # Safety
    /// `self` is at its final address (the registration block must stay put, W2: the client
    /// dispatch stays resident until deregistration).
    unsafe fn register(&mut self) -> Result<(), NTSTATUS> {
        self.client_npi.ClientContext = ptr::null_mut();
        self.client_npi.Dispatch = &raw const CLIENT_DISPATCH;
        // SAFETY: both blocks live in the driver state until WskDeregister returns (W2).
        let status = unsafe { WskRegister(&raw mut self.client_npi, &raw mut self.registration) };
        check(status)?;
        self.registered = true;
        Ok(())
    }

    fn alloc_pattern(&mut self) -> Result<(), NTSTATUS> {
        self.dp.pattern = pool::alloc(source::PATTERN_LEN, pool::TAG_PATTERN);
        if self.dp.pattern.is_null() {
            return Err(STATUS_INSUFFICIENT_RESOURCES);
        }
        // SAFETY: freshly allocated, PATTERN_LEN bytes, exclusively ours.
        pattern::fill(0, unsafe {
            core::slice::from_raw_parts_mut(self.dp.pattern, source::PATTERN_LEN)
        });
        self.dp.pattern_mdl = build_mdl(self.dp.pattern, source::PATTERN_LEN);
        if self.dp.pattern_mdl.is_null() {
            return Err(STATUS_INSUFFICIENT_RESOURCES);
        }
        Ok(())
    }

    /// Creates every configured socket. PASSIVE_LEVEL (start-up thread). A service that fails
    /// (e.g. its port is taken) is logged and the others still run; the first failure is
    /// returned.
    ///
    /// # Safety
    /// Captured provider; `self` at its final address.
    pub(crate) unsafe fn create_sockets(&mut self) -> Result<(), NTSTATUS> {
        let services = self.config.services.clone();
        crate::serve::udp::publish_service_ports(services.as_slice());
        let mut first = Ok(());
        for service in services.as_slice() {
            // SAFETY: per this function's contract.
            let r = unsafe { self.open_service(service) };
            if let Err(e) = r {
                // Retried by the housekeeper and reported by `driver status`, not only logged.
                let _ = self.reopen.add(*service, e);
            }
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// Opens one service's socket into a free slot. PASSIVE_LEVEL.
    ///
    /// # Safety
    /// Captured provider; `self` at its final address.
    unsafe fn open_service(&mut self, service: &Service) -> Result<(), NTSTATUS> {
        // SAFETY: per this function's contract.
        let r = unsafe { self.open_service_unlogged(service) };
        log_open(service, r);
        r
    }

    /// [`open_service`](Self::open_service) without the log line (the retry logs only a
    /// change: a port held for an hour would otherwise log twelve lines a second).
    ///
    /// # Safety
    /// As [`open_service`](Self::open_service).
    unsafe fn open_service_unlogged(&mut self, service: &Service) -> Result<(), NTSTATUS> {
        let stats_slot = self.stats_slot_for(service);
        let r = match service.proto {
            Proto::Tcp => match self.listeners.iter().position(|l| l.is_null()) {
                // SAFETY: per this function's contract.
                Some(i) => unsafe { Listener::create(&self.dp, service, stats_slot) }
                    .map(|l| self.listeners[i] = l),
                None => Err(STATUS_INSUFFICIENT_RESOURCES),
            },
            Proto::Udp => match self
                .udps
                .iter()
                .position(|u| u.load(Ordering::SeqCst).is_null())
            {
                // SAFETY: per this function's contract.
                Some(i) => unsafe { UdpSock::create(&self.dp, service, stats_slot) }
                    .map(|u| self.udps[i].store(u, Ordering::SeqCst)),
                None => Err(STATUS_INSUFFICIENT_RESOURCES),
            },
        };
        r
    }

    /// Closes one service's socket if it is open (connections it accepted keep running);
    /// false when it had none. PASSIVE_LEVEL.
    ///
    /// # Safety
    /// Captured provider.
    unsafe fn close_service(&mut self, service: &Service, timeout_ms: u64) -> bool {
        match service.proto {
            Proto::Tcp => {
                let Some(i) = self
                    .listeners
                    .iter()
                    // SAFETY: non-null slots hold live listeners.
                    .position(|&l| !l.is_null() && unsafe { (*l).service } == *service)
                else {
                    return false;
                };
                let l = core::mem::replace(&mut self.listeners[i], ptr::null_mut());
                // SAFETY: taken out of the table, closed once.
                unsafe { Listener::close_and_free(l) };
            }
            Proto::Udp => {
                let Some(i) = self.udps.iter().position(|u| {
                    let p = u.load(Ordering::SeqCst);
                    // SAFETY: non-null slots hold live sockets.
                    !p.is_null() && unsafe { (*p).service } == *service
                }) else {
                    return false;
                };
                let u = self.udps[i].swap(ptr::null_mut(), Ordering::SeqCst);
                // The housekeeper may be inside a pass that read the pointer (unless this is
                // the housekeeper itself: re-creating a dead socket, or a reconfiguration it
                // carries out between passes).
                if !self.in_hk {
                    self.dp.wait_housekeeper_pass();
                }
                // SAFETY: taken out of the table, closed once.
                unsafe { UdpSock::close_and_free(u, timeout_ms) };
            }
        }
        true
    }

    /// Run-time reconfiguration (control path, PASSIVE_LEVEL, one at a time). Services are
    /// diffed: removed ones are closed, added ones opened, unchanged ones not touched. If an
    /// added one fails (e.g. STATUS_ADDRESS_ALREADY_EXISTS) every change of this call, limits
    /// and allow-list included, is undone and that status returned: nothing is left
    /// half-applied (see `unwind` for the one best-effort case). Limits apply at once (the data
    /// path reads them from `live`), except those that size the pre-allocated pools at load:
    /// a change of one of those is refused (STATUS_NOT_SUPPORTED) and nothing changes.
    ///
    /// # Safety
    /// Captured provider, not unloading, called from the serialised control path.
    pub(crate) unsafe fn reconfigure(&mut self, new: &Config) -> Result<(), NTSTATUS> {
        if !live_limits::only_live_changes(&self.config.limits, &new.limits) {
            return Err(STATUS_NOT_SUPPORTED);
        }
        // `config.limits` keeps the old values until the call has succeeded: the undo of a
        // replace that fails half-way puts them back from there.
        let limits_changed = new.limits != self.config.limits;
        if limits_changed && !self.dp.live.publish(&new.limits, LIST_SWAP_WAIT_MS) {
            // Readers never left the spare allow-list buffer: the list did not change, the
            // scalars did; put them back.
            self.dp.live.revert_scalars(&self.config.limits);
            return Err(STATUS_DEVICE_NOT_READY);
        }
        let old = self.config.services.clone();
        let timeout = u64::from(self.dp.live.get(Limit::DisconnectTimeoutMs));
        // Subsets of valid lists: adding to an empty list cannot conflict or overflow.
        let mut removed = Services::empty();
        for s in old.as_slice() {
            if !new.services.as_slice().contains(s) {
                let _ = removed.add(*s);
            }
        }
        let mut added = Services::empty();
        for s in new.services.as_slice() {
            if !old.as_slice().contains(s) {
                let _ = added.add(*s);
            }
        }
        // Added services that need no removed one's port open first, before anything is
        // closed: if one fails, closing what this call opened restores everything exactly.
        // Only those that take over a removed service's port (same protocol and port) wait
        // until it is closed; a failure among those can re-open the removed ones only best
        // effort (the port may have been taken meanwhile; logged). Bit k of a mask is
        // added[k] (at most MAX_SERVICES = 16 entries): no list copies on this stack, which
        // the start-up thread's frame holds (a frame over 4 KiB needs __chkstk, which the
        // image does not link).
        let late: u32 = added
            .as_slice()
            .iter()
            .enumerate()
            .filter(|(_, s)| removed.as_slice().iter().any(|r| r.conflicts_with(s)))
            .fold(0, |m, (k, _)| m | 1 << k);
        crate::serve::udp::publish_service_ports(new.services.as_slice());
        let mut opened: u32 = 0;
        for (k, s) in added.as_slice().iter().enumerate() {
            if late & 1 << k == 0 {
                // SAFETY: per this function's contract.
                if let Err(e) = unsafe { self.open_service(s) } {
                    // SAFETY: per this function's contract; nothing was closed.
                    unsafe { self.unwind(&added, opened, None, limits_changed) };
                    return Err(e);
                }
                opened |= 1 << k;
            }
        }
        for s in removed.as_slice() {
            // SAFETY: per this function's contract.
            unsafe { self.close_service(s, timeout) };
        }
        for (k, s) in added.as_slice().iter().enumerate() {
            if late & 1 << k != 0 {
                // SAFETY: per this function's contract.
                if let Err(e) = unsafe { self.open_service(s) } {
                    // SAFETY: per this function's contract.
                    unsafe { self.unwind(&added, opened, Some(&removed), limits_changed) };
                    return Err(e);
                }
                opened |= 1 << k;
            }
        }
        if limits_changed {
            // Only the control path reads `config`; the limits part is what `live` holds.
            self.config.limits = new.limits.clone();
        }
        // Only the control path reads the services list; callbacks read the limits.
        // SAFETY: exclusive control path.
        unsafe { ptr::addr_of_mut!(self.config.services).write(new.services.clone()) };
        self.release_stats_slots(new.services.as_slice());
        // A removed service is not retried any more (nor reported).
        self.reopen.retain(|s| new.services.as_slice().contains(s));
        Ok(())
    }

    /// Undoes a reconfiguration that failed half-way: closes the services of `added` it
    /// opened (bit k of `opened` = added[k]), re-opens the ones it `closed` (best effort: the
    /// port may have been taken meanwhile, logged) and puts back the limits and allow-list it
    /// published, from `config.limits`, still the old ones. PASSIVE_LEVEL,
    /// the serialised control path. Not inlined: the cold path keeps its copies off the
    /// caller's frame.
    ///
    /// # Safety
    /// As [`reconfigure`](Self::reconfigure), which calls it right after a failed open.
    #[inline(never)]
    unsafe fn unwind(
        &mut self,
        added: &Services,
        opened: u32,
        closed: Option<&Services>,
        limits_changed: bool,
    ) {
        let timeout = u64::from(self.dp.live.get(Limit::DisconnectTimeoutMs));
        for (k, s) in added.as_slice().iter().enumerate() {
            if opened & 1 << k != 0 {
                // SAFETY: opened by the failed call.
                unsafe { self.close_service(s, timeout) };
            }
        }
        for s in closed.map_or(&[][..], Services::as_slice) {
            // SAFETY: per this function's contract.
            if let Err(e) = unsafe { self.open_service(s) } {
                // Still configured: retried and reported like any service that failed to open.
                let _ = self.reopen.add(*s, e);
            }
        }
        let keep = self.config.services.clone();
        crate::serve::udp::publish_service_ports(keep.as_slice());
        self.release_stats_slots(keep.as_slice());
        if limits_changed {
            // `publish` succeeded in this call: the previous allow-list buffer is untouched.
            self.dp.live.revert(&self.config.limits);
        }
    }

    /// Teardown of every socket. PASSIVE_LEVEL (DriverUnload). Bounded: graceful first for
    /// `disconnect_timeout_ms`, then abortive (C29: unload closes every socket, then deregisters;
    /// C34: a graceful disconnect is bounded), then waits for the rundown.
    ///
    /// # Safety
    /// Called once, after start-up finished.
    pub(crate) unsafe fn close_sockets(&mut self) {
        self.dp.stopping.store(true, Ordering::SeqCst);
        // 0. The load job (its UDP socket; TCP job connections go with the others below).
        load::close(&self.dp);
        // 1. No new connections: close the listeners (the close waits for running accept
        //    callbacks, W70: close cancels pending IRPs and waits for running callbacks).
        for l in &mut self.listeners {
            if !l.is_null() {
                // SAFETY: created by Listener::create, closed once here.
                unsafe { Listener::close_and_free(*l) };
                *l = ptr::null_mut();
            }
        }
        let timeout = u64::from(self.dp.live.get(Limit::DisconnectTimeoutMs));
        // 2. Connections: echo what is queued, FIN, then close; abort whatever is left.
        self.dp.conns.shutdown_all(false);
        time::wait_until(timeout, || self.dp.conns.active() == 0);
        self.dp.conns.shutdown_all(true);
        // 3. Datagram sockets: wait for in-flight sends (they hold retained lists, C4: release
        // every retained list before WskCloseSocket), close.
        for i in 0..self.udps.len() {
            let u = self.udps[i].load(Ordering::SeqCst);
            if !u.is_null() {
                // SAFETY: a live socket of the table.
                let service = unsafe { (*u).service };
                // SAFETY: closed once, taken out of the table first.
                unsafe { self.close_service(&service, timeout) };
            }
        }
        // 4. Every connection context has been closed and its completion has run (C30: no
        // completion routine may still run when the image unloads).
        // SAFETY: initialised in create; PASSIVE_LEVEL.
        unsafe { ExWaitForRundownProtectionRelease(&raw mut self.dp.rundown) };
    }

    /// Housekeeping tick. PASSIVE_LEVEL (start-up thread).
    pub(crate) fn housekeeping(&mut self) {
        // Odd from here to the end of the pass (see `hk_pass`); SeqCst orders it before this
        // pass's loads of the socket tables.
        self.dp.hk_pass.fetch_add(1, Ordering::SeqCst);
        self.dp.conns.tick(&self.dp);
        load::tick(&self.dp);
        self.recreate_dead_sockets();
        self.hk_gen.fetch_add(1, Ordering::SeqCst);
        self.dp.hk_pass.fetch_add(1, Ordering::SeqCst);
    }

    /// A listener that got a NULL AcceptSocket (W48: a NULL AcceptSocket means the listener is
    /// dead) or a datagram socket that got a NULL list (W60: a receive-from list: one datagram per
    /// entry, valid for the callback) no longer works: close it and open the same service again
    /// (C8: a NULL AcceptSocket: refuse and recreate the listener). Runs under the control lock so
    /// it never races a reconfiguration; skipped (retried next tick) if busy.
    fn recreate_dead_sockets(&mut self) {
        let mut dead = Services::empty();
        for &l in &self.listeners {
            // SAFETY: non-null entries are live listeners (only this thread and the serialised
            // control path change the table).
            if !l.is_null() && unsafe { (*l).dead.load(Ordering::SeqCst) } {
                // SAFETY: as above.
                let _ = dead.add(unsafe { (*l).service });
            }
        }
        for u in &self.udps {
            let p = u.load(Ordering::SeqCst);
            // SAFETY: as above.
            if !p.is_null() && unsafe { (*p).dead.load(Ordering::SeqCst) } {
                // SAFETY: as above.
                let _ = dead.add(unsafe { (*p).service });
            }
        }
        let retry = !self.reopen.is_empty()
            && self
                .hk_gen
                .load(Ordering::Relaxed)
                .is_multiple_of(REOPEN_EVERY_TICKS);
        if (dead.is_empty() && !retry)
            || self.dp.stopping.load(Ordering::SeqCst)
            || self.control_busy.swap(true, Ordering::SeqCst)
        {
            return;
        }
        if retry {
            self.retry_reopen();
        }
        let timeout = u64::from(self.dp.live.get(Limit::DisconnectTimeoutMs));
        self.in_hk = true;
        for service in dead.as_slice() {
            crate::kernel::log::log_err!(
                "{} {} port {}: socket dead, re-creating",
                service.proto.name(),
                service.mode.name(),
                service.port
            );
            // SAFETY: captured provider; the control lock is held.
            unsafe {
                self.close_service(service, timeout);
                if let Err(e) = self.open_service(service) {
                    // Tried again by the housekeeper (open_service logged why).
                    let _ = self.reopen.add(*service, e);
                }
            }
        }
        self.in_hk = false;
        self.control_busy.store(false, Ordering::SeqCst);
    }

    /// One more attempt at each service whose re-creation failed; a service the configuration
    /// no longer has, or that is open again, leaves the list. PASSIVE_LEVEL, control lock held.
    fn retry_reopen(&mut self) {
        let pending = core::mem::replace(&mut self.reopen, Reopen::empty());
        for service in pending.services() {
            if !self.config.services.as_slice().contains(&service) || self.is_open(&service) {
                continue;
            }
            // SAFETY: captured provider; the control lock is held.
            let r = unsafe { self.open_service_unlogged(&service) };
            // Logged when it opens or fails otherwise than last time, not on every retry.
            if r.err() != pending.status_of(&service) {
                log_open(&service, r);
            }
            if let Err(e) = r {
                let _ = self.reopen.add(service, e);
            }
        }
    }

    /// Whether `service` has an open socket (listener or datagram socket). The control lock is
    /// held (or start-up is over and nothing else changes the tables).
    pub(crate) fn is_open(&self, service: &Service) -> bool {
        // SAFETY: non-null entries are live sockets (only the housekeeper and the serialised
        // control path change the tables; the control lock is held).
        self.listeners
            .iter()
            .any(|&l| !l.is_null() && unsafe { (*l).service } == *service)
            || self.udps.iter().any(|u| {
                let p = u.load(Ordering::SeqCst);
                // SAFETY: as above.
                !p.is_null() && unsafe { (*p).service } == *service
            })
    }

    /// # Safety
    /// All sockets closed.
    unsafe fn release_wsk_inner(&mut self) {
        if self.captured {
            // SAFETY: paired with the successful capture (C28: balanced on every path).
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
    unsafe fn free_resources(&mut self) {
        // SAFETY: no socket is open, no IRP outstanding.
        unsafe {
            self.dp.conns.free();
            if !self.dp.pattern_mdl.is_null() {
                IoFreeMdl(self.dp.pattern_mdl);
                self.dp.pattern_mdl = ptr::null_mut();
            }
            pool::free(self.dp.pattern, pool::TAG_PATTERN);
        }
        self.dp.pattern = ptr::null_mut();
    }
}
