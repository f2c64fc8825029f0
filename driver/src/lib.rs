//! wskecho.sys: a Winsock Kernel echo / discard / source / sockperf server.
//!
//! One source for every target: on x86_64-pc-windows-msvc it is the driver; on the host it
//! runs inside wsk-sim (the same code, wsk-sys's imports resolved by wsk-sim). This file is glue
//! only: DriverEntry / DriverUnload, the start-up thread, and the few functions the host runner
//! and the tests read the loaded instance through.
//!
//! The rooms, from the ground up (arrows point down only; `tests/layout_rules.rs` checks the
//! ones that matter):
//!
//! | module | holds | imports |
//! |---|---|---|
//! | `kernel` | thin ntoskrnl wrappers: pool, IRPs, spin lock, log, time, free lists | wsk-sys |
//! | `logic` | the `wskecho-logic` crate, re-exported: platform-free decisions (TCP state machine,
//! sockperf framing, ring, budget) | control only, never wsk-sys |
//! | `wsk` | WSK helpers: socket + bind, events, options, close, addresses, MDLs | kernel |
//! | `stats` | per-CPU and per-service counters | control |
//! | `datapath` | `DataPath`: the data path's handle (counters, live limits, budget, connection
//! pool, provider, rundown, clock, pattern, load job) | kernel, stats, conn, load (types) |
//! | `conn` | the TCP engine: connection contexts, pool, pump, completions, callbacks | kernel,
//! wsk, logic, datapath; never serve, load or driver |
//! | `serve` | the served sockets: listener, UDP socket | kernel, wsk, logic, conn, datapath;
//! never load or driver |
//! | `load` | kernel-side load jobs: the job, its TCP and UDP clients | kernel, wsk, logic,
//! conn, datapath; never driver |
//! | `driver` | the root state (`Driver`, which owns the `DataPath`) and its lifecycle
//! (services, stats slots, housekeeping) | all rooms |
//! | `handoff`, `reopen` | the control path's mailbox to the system thread; services to open
//! again | driver |
//! | `device`, `ioctl` | the control device and its IRPs; the control handler | driver |
//! | `registry` | the configuration from the service's Parameters key | kernel |
//! | `live_limits` | the limits callbacks read, changeable while running | control |
#![no_std]
#![allow(non_snake_case)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(unreachable_pub)]

mod conn;
mod datapath;
mod device;
mod driver;
mod handoff;
mod ioctl;
mod kernel;
mod live_limits;
mod load;
mod registry;
mod reopen;
mod serve;
pub mod stats;
mod wsk;

// The platform-free decisions live in their own crate (fast unit and mutation tests); every
// `crate::logic::...` path reaches them through this name.
pub use wskecho_logic as logic;

#[cfg(all(target_os = "windows", not(test)))]
mod windows_rt;

use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use control::config::Config;
use wsk_sys::{
    Executive, InitializeObjectAttributes, KeWaitForSingleObject, KernelMode,
    ObReferenceObjectByHandle, ObfDereferenceObject, PsCreateSystemThread, PsTerminateSystemThread,
    WskCaptureProviderNPI, ZwClose, ZwWaitForSingleObject, FALSE, HANDLE, NTSTATUS,
    OBJ_KERNEL_HANDLE, PDRIVER_OBJECT, PUNICODE_STRING, PVOID, STATUS_DEVICE_NOT_READY,
    STATUS_OBJECT_NAME_COLLISION, STATUS_SUCCESS, SYNCHRONIZE, THREAD_ALL_ACCESS,
};

use driver::Driver;
pub use driver::{START_FAILED, START_PENDING, START_READY};
pub use kernel::bugcheck::{bugcheck_on_panic, BUGCHECK_PANIC};
pub use kernel::irp::routines_outstanding;
use kernel::time;
use wsk::check;

/// The one driver instance (DriverUnload only gets the DRIVER_OBJECT).
static DRIVER: AtomicPtr<Driver> = AtomicPtr::new(ptr::null_mut());

/// DriverEntry. PASSIVE_LEVEL. Never waits for the WSK provider (C27: no NPI wait in
/// DriverEntry): registration is immediate, the NPI capture and socket creation run on a
/// system thread.
///
/// # Safety
/// Called by the I/O manager (or the sim runner) with a valid DRIVER_OBJECT.
#[no_mangle]
pub unsafe extern "win64" fn DriverEntry(
    driver_object: PDRIVER_OBJECT,
    registry_path: PUNICODE_STRING,
) -> NTSTATUS {
    // SAFETY: forwarded.
    unsafe { driver_entry_with(driver_object, registry_path, None) }
}

/// DriverEntry with an optional configuration replacing the registry (host tests).
///
/// # Safety
/// As [`DriverEntry`].
pub unsafe fn driver_entry_with(
    driver_object: PDRIVER_OBJECT,
    registry_path: PUNICODE_STRING,
    config: Option<Config>,
) -> NTSTATUS {
    if !DRIVER.load(Ordering::SeqCst).is_null() {
        return STATUS_OBJECT_NAME_COLLISION;
    }
    // PASSIVE_LEVEL, before the first allocation: ExAllocatePool2 or the 1809 fallback.
    if kernel::pool::resolve() {
        kernel::log::log_info!("pool: ExAllocatePool2");
    } else {
        kernel::log::log_info!(
            "pool: ExAllocatePoolWithTag (no ExAllocatePool2 before Windows 10 2004)"
        );
    }
    let config = match config {
        Some(c) => c,
        // SAFETY: registry path from the caller.
        None => unsafe { registry::read_config(registry_path) },
    };
    let d = match Driver::create(&config) {
        Ok(d) => d,
        Err(e) => {
            kernel::log::log_err!("DriverEntry failed {:#x}", e as u32);
            return e;
        }
    };
    // SAFETY: d is at its final address and ours alone until published.
    let r = unsafe { &mut *d };
    // SAFETY: valid driver object; d at its final address.
    let mut status = unsafe { device::create(driver_object, d) };
    if status.is_ok() {
        // SAFETY: the start-up thread gets d, which outlives it (unload waits for it).
        status = unsafe { start_thread(r) };
    }
    if let Err(e) = status {
        kernel::log::log_err!("DriverEntry failed {:#x}", e as u32);
        // SAFETY: nothing started; undo what was set up.
        unsafe {
            device::delete(r);
            Driver::destroy(d);
        }
        return e;
    }
    DRIVER.store(d, Ordering::SeqCst);
    // SAFETY: valid driver object.
    unsafe { (*driver_object).DriverUnload = Some(DriverUnload) };
    kernel::log::log_info!(
        "loaded: {} services, max {} connections",
        config.services.len(),
        config.limits.max_connections
    );
    STATUS_SUCCESS
}

/// # Safety
/// PASSIVE_LEVEL; `r` at its final address, alive until the thread has exited.
unsafe fn start_thread(r: &mut Driver) -> Result<(), NTSTATUS> {
    let mut h: HANDLE = ptr::null_mut();
    let mut oa = InitializeObjectAttributes(
        ptr::null_mut(),
        OBJ_KERNEL_HANDLE,
        ptr::null_mut(),
        ptr::null_mut(),
    );
    let ctx: *mut Driver = r;
    // SAFETY: PASSIVE_LEVEL; the context outlives the thread (unload waits on it).
    check(unsafe {
        PsCreateSystemThread(
            &raw mut h,
            THREAD_ALL_ACCESS,
            &raw mut oa,
            ptr::null_mut(),
            ptr::null_mut(),
            Some(startup),
            ctx.cast(),
        )
    })?;
    let mut obj: PVOID = ptr::null_mut();
    // SAFETY: h is our kernel handle.
    let status = unsafe {
        ObReferenceObjectByHandle(
            h,
            SYNCHRONIZE,
            ptr::null_mut(),
            KernelMode,
            &raw mut obj,
            ptr::null_mut(),
        )
    };
    if let Err(e) = check(status) {
        // The thread runs and uses the block: it must be gone before DriverEntry frees it.
        // Without a thread object, wait on the thread handle itself, which is signalled only
        // once the thread has ended: an event the thread set would be signalled before its
        // last instructions, still in this image. `stopping` and `hk_stop`
        // end its capture loop (bounded waits) and its housekeeping loop.
        r.dp.stopping.store(true, Ordering::SeqCst);
        r.hk_stop.store(true, Ordering::SeqCst);
        // SAFETY: PASSIVE_LEVEL; our kernel handle, closed right after.
        unsafe {
            ZwWaitForSingleObject(h, FALSE, ptr::null_mut());
            ZwClose(h);
        }
        if r.captured {
            // It may have opened the services before it saw `stopping`.
            // SAFETY: start-up finished; PASSIVE_LEVEL.
            unsafe { r.close_sockets() };
        }
        return Err(e);
    }
    // SAFETY: ours; the referenced thread object is what unload waits on.
    unsafe { ZwClose(h) };
    r.startup_thread = obj;
    Ok(())
}

/// Start-up thread. PASSIVE_LEVEL: captures the provider NPI (bounded waits, so unload can stop
/// it), creates the configured sockets, then stays as the housekeeping thread until unload.
unsafe extern "win64" fn startup(ctx: PVOID) {
    // SAFETY: the Driver block outlives this thread.
    let d = unsafe { &mut *ctx.cast::<Driver>() };
    // Whether this thread holds the control lock (see below).
    let mut locked = false;
    loop {
        if d.dp.stopping.load(Ordering::SeqCst) {
            break;
        }
        // SAFETY: registration live; PASSIVE_LEVEL for a non-zero wait (W3: WskCaptureProviderNPI
        // with WSK_NO_WAIT returns at once).
        let status =
            unsafe { WskCaptureProviderNPI(&raw mut d.registration, 200, &raw mut d.dp.provider) };
        if check(status).is_ok() {
            // The control lock from before `captured` is set until the services are open: a
            // control request meanwhile gets STATUS_DEVICE_NOT_READY (not captured) or
            // STATUS_DEVICE_BUSY, never the socket tables and the reopen list half made. Taken
            // first so that no request that needs `captured` (config set posts to this
            // thread's mailbox and waits) can hold it while this thread waits. Bounded: only
            // the short read-only requests can hold it now, and unload takes it only after
            // start-up has finished.
            while !d.dp.stopping.load(Ordering::SeqCst) {
                if !d.control_busy.swap(true, Ordering::SeqCst) {
                    locked = true;
                    break;
                }
                time::sleep_ms(1);
            }
            // Captured either way (`captured` pairs the capture with its release, C28: balance
            // every register/capture with its release); without the lock only when stopping, and
            // then no service opens below.
            d.captured = true;
            break;
        }
        if status != STATUS_DEVICE_NOT_READY {
            kernel::log::log_err!("WskCaptureProviderNPI failed {:#x}", status as u32);
            break;
        }
    }
    let state = if d.captured && !d.dp.stopping.load(Ordering::SeqCst) {
        // SAFETY: captured, PASSIVE_LEVEL.
        if let Err(e) = unsafe { d.create_sockets() } {
            kernel::log::log_err!("some services failed to start ({:#x})", e as u32);
        }
        START_READY
    } else {
        START_FAILED
    };
    if locked {
        d.control_busy.store(false, Ordering::SeqCst);
    }
    d.start_state.store(state, Ordering::SeqCst);
    // From here on the thread is the driver's housekeeper until unload has closed every socket:
    // every 5 ms it re-arms the resume of connections whose indications were refused (C5:
    // resume with a zero-length receive; G2: indications resume only once the posted WskReceive
    // completes) and gives back finished zero-copy lists no later callback released (C1: a list is
    // released once the callback and the send are done).
    // It also carries out the control path's socket-creating requests (see handoff), woken at
    // once when one is posted.
    while state == START_READY && !d.hk_stop.load(Ordering::SeqCst) {
        d.mailbox.wait_posted(5);
        handoff::run_posted(d);
        d.housekeeping();
    }
    // Whoever frees the block waits on this thread's object (unload) or handle (a failed
    // DriverEntry): both are signalled only once the thread has ended.
    // SAFETY: PASSIVE_LEVEL, a system thread of ours.
    unsafe { PsTerminateSystemThread(STATUS_SUCCESS) };
}

/// DriverUnload. PASSIVE_LEVEL. Bounded even with clients connected and sending: graceful
/// close for DisconnectTimeoutMs, then abortive; returns only once every IRP and callback is
/// done and WskDeregister has returned (C29: unload closes every socket, then deregisters, C30: no
/// completion routine may still run when the image unloads).
///
/// # Safety
/// Called by the I/O manager once.
pub unsafe extern "win64" fn DriverUnload(driver_object: PDRIVER_OBJECT) {
    let _ = driver_object;
    let d = DRIVER.swap(ptr::null_mut(), Ordering::SeqCst);
    if d.is_null() {
        return;
    }
    // SAFETY: the instance stays valid until freed at the end here.
    let r = unsafe { &mut *d };
    r.dp.stopping.store(true, Ordering::SeqCst);
    // The start-up thread sees `stopping` within one bounded capture wait.
    while r.start_state.load(Ordering::SeqCst) == START_PENDING && !r.startup_thread.is_null() {
        time::sleep_ms(5);
    }
    // Take the control path for good. A request in progress finishes first: tearing down under
    // it would double-close sockets or open one after the sweep (then WskDeregister never
    // returns). Every control request is bounded itself and sees `stopping`, so this ends; it
    // is logged every 5 s while it waits.
    while !time::wait_until(5000, || !r.control_busy.swap(true, Ordering::SeqCst)) {
        kernel::log::log_err!("unload: waiting for a control request to finish");
    }
    // SAFETY: start-up finished; teardown in order: device, sockets (the housekeeper still
    // ticking), housekeeper, WSK, memory.
    unsafe {
        device::delete(r);
        if r.captured {
            r.close_sockets();
        }
    }
    r.hk_stop.store(true, Ordering::SeqCst);
    if !r.startup_thread.is_null() {
        // SAFETY: referenced thread object; PASSIVE_LEVEL wait.
        unsafe {
            KeWaitForSingleObject(
                r.startup_thread,
                Executive,
                KernelMode,
                FALSE,
                ptr::null_mut(),
            );
            ObfDereferenceObject(r.startup_thread);
        }
        r.startup_thread = ptr::null_mut();
    }
    log_counters(r);
    // SAFETY: no socket, no thread left; WskDeregister (in destroy) returns once every IRP has
    // completed (W7: WskDeregister waits for every socket and call).
    unsafe { Driver::release_wsk(d) };
    // C30: completion routines run on other CPUs until their last act; neither free their
    // memory nor let the image go before every one has returned (see kernel::irp).
    if !kernel::irp::wait_routines_returned(30_000) {
        // Never free what a routine may still use: the block (its contexts and IRPs) is left
        // allocated, a leak the pool tag shows, rather than a use after free.
        kernel::log::log_err!(
            "{} completion routines still outstanding at unload: driver memory not freed",
            kernel::irp::routines_outstanding()
        );
        return;
    }
    // SAFETY: nothing references the block any more.
    unsafe { Driver::destroy(d) };
}

fn log_counters(r: &Driver) {
    let snap = r.dp.stats.snapshot();
    for (chunk_i, chunk) in snap.chunks(6).enumerate() {
        let mut line = kernel::log::Line::new();
        for (j, v) in chunk.iter().enumerate() {
            let _ = core::fmt::Write::write_fmt(
                &mut line,
                format_args!("{}={} ", stats::COUNTER_NAMES[chunk_i * 6 + j], v),
            );
        }
        kernel::log::log_info!("final: {}", line.as_str());
    }
    kernel::log::log_info!("final: retained_peak={} unloaded", r.dp.budget.peak());
}

/// Start-up state of the loaded instance: None when no driver is loaded.
pub fn start_state() -> Option<u32> {
    let d = DRIVER.load(Ordering::SeqCst);
    // SAFETY: non-null only while loaded (host use: tests/runner, not concurrent with unload).
    (!d.is_null()).then(|| unsafe { (*d).start_state.load(Ordering::SeqCst) })
}

/// Sockets of configured services that are open right now (TCP listeners + UDP sockets) of
/// the loaded instance: None when no driver is loaded. Host use (the runner refuses to "serve"
/// when none of the configured services could start).
pub fn open_services() -> Option<usize> {
    let d = DRIVER.load(Ordering::SeqCst);
    (!d.is_null()).then(|| {
        // SAFETY: as in start_state; read after start-up (the runner calls it once the state
        // is READY, before the control path can change services).
        let r = unsafe { &*d };
        r.listeners.iter().filter(|l| !l.is_null()).count()
            + r.udps
                .iter()
                .filter(|u| !u.load(Ordering::SeqCst).is_null())
                .count()
    })
}

/// Counter snapshot of the loaded instance.
pub fn counters() -> Option<[u64; stats::NUM_COUNTERS]> {
    let d = DRIVER.load(Ordering::SeqCst);
    // SAFETY: as in start_state.
    (!d.is_null()).then(|| unsafe { (*d).dp.stats.snapshot() })
}

/// SIO_WSK_QUERY_IDEAL_SEND_BACKLOG queries answered at accept, the last value answered, and
/// the send size (bytes, C37: keep about the ideal send backlog in flight) of up to `out.len()`
/// live connections written to `out`, with their number. Host-test visibility; not part of the
/// control ABI.
pub fn send_backlog_state(out: &mut [usize]) -> Option<(u64, usize, usize)> {
    let d = DRIVER.load(Ordering::SeqCst);
    if d.is_null() {
        return None;
    }
    // SAFETY: as in start_state.
    let r = unsafe { &*d };
    let mut n = 0;
    for i in 0..r.dp.conns.n {
        if n == out.len() {
            break;
        }
        // SAFETY: i < n; contexts live until the pool is freed at unload.
        let c = unsafe { &**r.dp.conns.conns.add(i) };
        let state = c.state.lock();
        if c.live.load(Ordering::Relaxed) && c.client.is_none() {
            out[n] = state.max_send();
            n += 1;
        }
    }
    Some((
        r.dp.backlog_queries.load(Ordering::Relaxed),
        r.dp.backlog_last.load(Ordering::Relaxed),
        n,
    ))
}

/// The control ABI on the loaded instance (what IRP_MJ_DEVICE_CONTROL does, for transports
/// other than the device: wskecho-sim serves it over TCP). PASSIVE_LEVEL.
pub fn control(code: u32, input: &[u8], output: &mut [u8]) -> Option<(i32, usize)> {
    let d = DRIVER.load(Ordering::SeqCst);
    // SAFETY: as in start_state.
    (!d.is_null()).then(|| unsafe { ioctl::control_dispatch(d, code, input, output) })
}

/// Housekeeping ticks done and connection visits made by them so far. Host-test visibility
/// (an idle tick visits only the attention list); not part of the control ABI.
pub fn housekeeping_counts() -> Option<(u64, u64)> {
    let d = DRIVER.load(Ordering::SeqCst);
    if d.is_null() {
        return None;
    }
    // SAFETY: as in start_state.
    let r = unsafe { &*d };
    Some((
        u64::from(r.hk_gen.load(Ordering::SeqCst)),
        r.dp.conns.visits.load(Ordering::Relaxed),
    ))
}

/// Sets how long a control request waits for the system thread before it gives up (60 s by
/// default) on the loaded instance. Host tests only: for a request that outlives the wait (the
/// system thread still works on it while unload comes).
pub fn set_control_wait_ms(ms: u64) -> Option<()> {
    let d = DRIVER.load(Ordering::SeqCst);
    // SAFETY: as in start_state; the value is an atomic.
    (!d.is_null()).then(|| unsafe { (*d).mailbox.set_wait_ms(ms) })
}
