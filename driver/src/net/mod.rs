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
pub mod listener;
pub mod mdl;
pub mod udp;

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};

use control::config::{Config, Proto, MAX_SERVICES};
use wsk_sys::*;

use crate::kernel::{irp, pool};
use crate::service::budget::RetainedBudget;
use crate::service::source;
use crate::stats::{Counter, Stats};

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
        self.client_npi.Dispatch = &CLIENT_DISPATCH;
        // SAFETY: both blocks live in the driver state until WskDeregister returns (W2).
        let st = unsafe { WskRegister(&mut self.client_npi, &mut self.registration) };
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
        source::fill_pattern(unsafe { core::slice::from_raw_parts_mut(self.pattern, source::PATTERN_LEN) });
        self.pattern_mdl = build_mdl(self.pattern, source::PATTERN_LEN);
        !self.pattern_mdl.is_null()
    }

    /// Creates every configured socket. PASSIVE_LEVEL (start-up thread).
    ///
    /// # Safety
    /// Captured provider; `self` at its final address.
    pub unsafe fn create_sockets(&mut self) -> NTSTATUS {
        let services = self.cfg.services;
        let mut first_err = STATUS_SUCCESS;
        for (i, svc) in services.as_slice().iter().enumerate() {
            let st = match svc.proto {
                // SAFETY: per this function's contract.
                Proto::Tcp => unsafe { listener::Listener::create(self, svc).map(|l| self.listeners[i] = l) },
                // SAFETY: per this function's contract.
                Proto::Udp => unsafe { udp::UdpSock::create(self, svc).map(|u| self.udps[i].store(u, Ordering::SeqCst)) },
            };
            if let Err(e) = st {
                crate::log_err!("{} {} port {} on {}: socket failed {:#x}", svc.proto.name(), svc.mode.name(), svc.port, svc.bind, e as u32);
                if first_err == STATUS_SUCCESS {
                    first_err = e;
                }
            } else {
                crate::log_info!("{} {} listening on {}:{}", svc.proto.name(), svc.mode.name(), svc.bind, svc.port);
            }
        }
        first_err
    }

    /// Teardown of every socket. PASSIVE_LEVEL (DriverUnload). Bounded: graceful first for
    /// `disconnect_timeout_ms`, then abortive (C29, C34), then waits for the rundown.
    ///
    /// # Safety
    /// Called once, after start-up finished.
    pub unsafe fn close_sockets(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
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
        for slot in &self.udps {
            let u = slot.swap(ptr::null_mut(), Ordering::SeqCst);
            if !u.is_null() {
                // The housekeeper may be inside a tick that read the pointer: two more ticks
                // and it is out (bounded: the thread ticks every 5 ms until hk_stop).
                let g0 = self.hk_gen.load(Ordering::SeqCst);
                wait_until(200, || self.hk_gen.load(Ordering::SeqCst).wrapping_sub(g0) >= 2);
                // SAFETY: created by UdpSock::create, closed once here.
                unsafe { udp::UdpSock::close_and_free(u, timeout) };
            }
        }
        // 4. Every connection context has been closed and its completion has run (C30).
        // SAFETY: initialised in DriverEntry; PASSIVE_LEVEL.
        unsafe { ExWaitForRundownProtectionRelease(&mut self.rundown) };
    }

    /// Housekeeping tick. PASSIVE_LEVEL (start-up thread).
    pub fn housekeeping(&self) {
        self.conns.kick_blocked();
        for slot in &self.udps {
            let u = slot.load(Ordering::SeqCst);
            if !u.is_null() {
                // SAFETY: unload takes the pointer out and waits two ticks before freeing it.
                unsafe { (*u).kick() };
            }
        }
        self.hk_gen.fetch_add(1, Ordering::SeqCst);
    }

    /// # Safety
    /// All sockets closed.
    pub unsafe fn release_wsk(&mut self) {
        if self.captured {
            // SAFETY: paired with the successful capture (C28).
            unsafe { WskReleaseProviderNPI(&mut self.registration) };
            self.captured = false;
        }
        if self.registered {
            // SAFETY: paired with WskRegister (C28); returns once every socket is closed (W7).
            unsafe { WskDeregister(&mut self.registration) };
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
    let mut t = LARGE_INTEGER { QuadPart: -((ms as i64) * 10_000) };
    // SAFETY: PASSIVE_LEVEL kernel-mode delay.
    unsafe { KeDelayExecutionThread(KernelMode, FALSE, &mut t) };
}

/// SO_WSK_EVENT_CALLBACK enabling `mask` (no IRP: enabling completes inline, W30).
///
/// # Safety
/// `sock` is a live socket whose category has the callbacks in `mask`.
pub unsafe fn enable_events(sock: *mut WSK_SOCKET, mask: ULONG) -> NTSTATUS {
    let mut ctl = WSK_EVENT_CALLBACK_CONTROL { NpiId: npi_id(), EventMask: mask };
    // SAFETY: every socket dispatch table starts with WSK_PROVIDER_BASIC_DISPATCH.
    let basic = unsafe { &*((*sock).Dispatch as *const WSK_PROVIDER_BASIC_DISPATCH) };
    let Some(f) = basic.WskControlSocket else { return STATUS_NOT_SUPPORTED };
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
pub unsafe fn set_option_u32(sock: *mut WSK_SOCKET, level: ULONG, code: ULONG, value: u32) -> NTSTATUS {
    // SAFETY: every socket dispatch table starts with WSK_PROVIDER_BASIC_DISPATCH.
    let basic = unsafe { &*((*sock).Dispatch as *const WSK_PROVIDER_BASIC_DISPATCH) };
    let Some(ctl) = basic.WskControlSocket else { return STATUS_NOT_SUPPORTED };
    let mut v = value;
    // SAFETY: v lives across the synchronous call.
    unsafe {
        irp::call_sync(|i| {
            ctl(sock, WskSetOption, code, level, 4, ptr::addr_of_mut!(v).cast(), 0, ptr::null_mut(), ptr::null_mut(), i)
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
    let basic = unsafe { &*((*sock).Dispatch as *const WSK_PROVIDER_BASIC_DISPATCH) };
    let Some(close) = basic.WskCloseSocket else { return STATUS_NOT_SUPPORTED };
    // SAFETY: the pre-allocated IRP is owned by call_sync_with until it returns.
    unsafe { irp::call_sync_with(close_irp, |i| close(sock, i)).0 }
}
