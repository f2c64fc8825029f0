//! wskecho.sys: a Winsock Kernel echo / discard / source / sockperf server.
//!
//! One source for every target: on x86_64-pc-windows-msvc it is the driver; on the host it
//! runs inside wsk-sim (the same code, wsk-sys's imports resolved by wsk-sim).
//! This file is glue only: DriverEntry / DriverUnload and the start-up thread.
#![no_std]
#![allow(non_snake_case)]
// Kernel modules import wsk-sys wholesale: its items are the C headers' names, and listing
// dozens of them per file would hide the code.
#![allow(clippy::wildcard_imports)]

pub mod device;
pub mod kernel;
pub mod net;
pub mod registry;
pub mod service;
pub mod stats;

#[cfg(all(target_os = "windows", not(test)))]
mod windows_rt;

use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use control::config::Config;
use wsk_sys::{
    ExInitializeRundownProtection, Executive, InitializeObjectAttributes,
    KeQueryPerformanceCounter, KeWaitForSingleObject, KernelMode, ObReferenceObjectByHandle,
    ObfDereferenceObject, PsCreateSystemThread, PsTerminateSystemThread, WskCaptureProviderNPI,
    ZwClose, FALSE, HANDLE, LARGE_INTEGER, NTSTATUS, NT_SUCCESS, OBJ_KERNEL_HANDLE, PDRIVER_OBJECT,
    PUNICODE_STRING, PVOID, STATUS_DEVICE_NOT_READY, STATUS_INSUFFICIENT_RESOURCES,
    STATUS_OBJECT_NAME_COLLISION, STATUS_SUCCESS, SYNCHRONIZE, THREAD_ALL_ACCESS,
};

use kernel::pool;
use net::Driver;

/// The one driver instance (DriverUnload only gets the DRIVER_OBJECT).
static DRIVER: AtomicPtr<Driver> = AtomicPtr::new(ptr::null_mut());

/// DriverEntry. PASSIVE_LEVEL. Never waits for the WSK provider (C27): registration is
/// immediate, the NPI capture and socket creation run on a system thread.
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
    cfg: Option<Config>,
) -> NTSTATUS {
    if !DRIVER.load(Ordering::SeqCst).is_null() {
        return STATUS_OBJECT_NAME_COLLISION;
    }
    let cfg = match cfg {
        Some(c) => c,
        // SAFETY: registry path from the caller.
        None => unsafe { registry::read_config(registry_path) },
    };
    let d: *mut Driver = pool::alloc_zeroed(pool::TAG_DRIVER);
    if d.is_null() {
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    // SAFETY: zeroed block is a valid Driver for all-integer/pointer fields; the non-trivial
    // ones are written here before use.
    let r = unsafe {
        ptr::write(ptr::addr_of_mut!((*d).cfg), cfg);
        ptr::write(ptr::addr_of_mut!((*d).stats), stats::Stats::new());
        ptr::write(
            ptr::addr_of_mut!((*d).budget),
            service::budget::RetainedBudget::new(cfg.limits.max_retained_total as usize),
        );
        ptr::write(ptr::addr_of_mut!((*d).conns), net::conn::ConnPool::empty());
        ptr::write(ptr::addr_of_mut!((*d).job), net::job::Job::new());
        ptr::write(
            ptr::addr_of_mut!((*d).svc_slots),
            [None; control::config::MAX_SERVICES],
        );
        &mut *d
    };
    let mut freq = LARGE_INTEGER { QuadPart: 0 };
    // SAFETY: any IRQL.
    unsafe {
        KeQueryPerformanceCounter(&raw mut freq);
        r.perf_freq = freq.QuadPart as u64;
        ExInitializeRundownProtection(&raw mut r.rundown);
    }
    let mut st = if r.alloc_pattern()
        && r.conns.init(
            d,
            cfg.limits.max_connections as usize,
            cfg.limits.send_ring_bytes as usize,
        ) {
        STATUS_SUCCESS
    } else {
        STATUS_INSUFFICIENT_RESOURCES
    };
    if NT_SUCCESS(st) {
        // SAFETY: d is at its final address.
        st = unsafe { r.register() };
    }
    if NT_SUCCESS(st) {
        // SAFETY: valid driver object.
        st = unsafe { device::create(driver_object, d) };
    }
    if NT_SUCCESS(st) {
        // SAFETY: start-up thread gets d, which outlives it (unload waits for it).
        st = unsafe { start_thread(r) };
    }
    if !NT_SUCCESS(st) {
        log_err!("DriverEntry failed {:#x}", st as u32);
        // SAFETY: nothing started; undo what was set up.
        unsafe {
            device::delete(r);
            r.release_wsk();
            r.free_resources();
            pool::free_typed(d, pool::TAG_DRIVER);
        }
        return st;
    }
    DRIVER.store(d, Ordering::SeqCst);
    // SAFETY: valid driver object.
    unsafe { (*driver_object).DriverUnload = Some(DriverUnload) };
    log_info!(
        "loaded: {} services, max {} connections",
        cfg.services.len(),
        cfg.limits.max_connections
    );
    STATUS_SUCCESS
}

unsafe fn start_thread(r: &mut Driver) -> NTSTATUS {
    let mut h: HANDLE = ptr::null_mut();
    let mut oa = InitializeObjectAttributes(
        ptr::null_mut(),
        OBJ_KERNEL_HANDLE,
        ptr::null_mut(),
        ptr::null_mut(),
    );
    let ctx: *mut Driver = r;
    // SAFETY: PASSIVE_LEVEL; the context outlives the thread (unload waits on it).
    let st = unsafe {
        PsCreateSystemThread(
            &raw mut h,
            THREAD_ALL_ACCESS,
            &raw mut oa,
            ptr::null_mut(),
            ptr::null_mut(),
            Some(startup),
            ctx.cast(),
        )
    };
    if !NT_SUCCESS(st) {
        return st;
    }
    let mut obj: PVOID = ptr::null_mut();
    // SAFETY: h is our kernel handle.
    let st = unsafe {
        ObReferenceObjectByHandle(
            h,
            SYNCHRONIZE,
            ptr::null_mut(),
            KernelMode,
            &raw mut obj,
            ptr::null_mut(),
        )
    };
    // SAFETY: ours.
    unsafe { ZwClose(h) };
    if NT_SUCCESS(st) {
        r.startup_thread = obj;
    }
    st
}

/// Start-up thread. PASSIVE_LEVEL: captures the provider NPI (bounded waits, so unload can stop
/// it), creates the configured sockets, then stays as the housekeeping thread until unload.
unsafe extern "win64" fn startup(ctx: PVOID) {
    // SAFETY: the Driver block outlives this thread.
    let d = unsafe { &mut *ctx.cast::<Driver>() };
    loop {
        if d.stopping.load(Ordering::SeqCst) {
            break;
        }
        // SAFETY: registration live; PASSIVE_LEVEL for a non-zero wait (W3).
        let st =
            unsafe { WskCaptureProviderNPI(&raw mut d.registration, 200, &raw mut d.provider) };
        if NT_SUCCESS(st) {
            d.captured = true;
            break;
        }
        if st != STATUS_DEVICE_NOT_READY {
            log_err!("WskCaptureProviderNPI failed {:#x}", st as u32);
            break;
        }
    }
    let state = if d.captured && !d.stopping.load(Ordering::SeqCst) {
        // SAFETY: captured, PASSIVE_LEVEL.
        let st = unsafe { d.create_sockets() };
        if !NT_SUCCESS(st) {
            log_err!("some services failed to start ({:#x})", st as u32);
        }
        net::START_READY
    } else {
        net::START_FAILED
    };
    d.start_state.store(state, Ordering::SeqCst);
    // From here on the thread is the driver's housekeeper until unload has closed every socket:
    // every 5 ms it re-arms the resume of connections whose indications were refused (C5, G2)
    // and gives back finished zero-copy lists no later callback released (C1).
    while state == net::START_READY && !d.hk_stop.load(Ordering::SeqCst) {
        net::sleep_ms(5);
        d.housekeeping();
    }
    // SAFETY: system thread exit.
    unsafe { PsTerminateSystemThread(STATUS_SUCCESS) };
}

/// DriverUnload. PASSIVE_LEVEL. Bounded even with clients connected and sending: graceful
/// close for DisconnectTimeoutMs, then abortive; returns only once every IRP and callback is
/// done and WskDeregister has returned (C29, C30).
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
    r.stopping.store(true, Ordering::SeqCst);
    // The start-up thread sees `stopping` within one bounded capture wait.
    while r.start_state.load(Ordering::SeqCst) == net::START_PENDING && !r.startup_thread.is_null()
    {
        net::sleep_ms(5);
    }
    // Take the control path for good (bounded wait for a request in progress).
    net::wait_until(5000, || !r.control_busy.swap(true, Ordering::SeqCst));
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
    // SAFETY: no socket, no thread, no IRP left.
    unsafe {
        r.release_wsk();
        r.free_resources();
    }
    log_counters(r);
    // SAFETY: nothing references the block any more.
    unsafe { pool::free_typed(d, pool::TAG_DRIVER) };
}

fn log_counters(r: &Driver) {
    let snap = r.stats.snapshot();
    for (chunk_i, chunk) in snap.chunks(6).enumerate() {
        let mut line = kernel::log::LineBuf::new();
        for (j, v) in chunk.iter().enumerate() {
            let _ = core::fmt::Write::write_fmt(
                &mut line,
                format_args!("{}={} ", stats::COUNTER_NAMES[chunk_i * 6 + j], v),
            );
        }
        log_info!("final: {}", line.as_str());
    }
    log_info!("final: retained_peak={} unloaded", r.budget.peak());
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
    (!d.is_null()).then(|| unsafe { (*d).stats.snapshot() })
}

/// SIO_WSK_QUERY_IDEAL_SEND_BACKLOG queries answered at accept, the last value answered, and
/// the send size (bytes, C37) of up to `out.len()` live connections written to `out`, with
/// their number. Host-test visibility; not part of the control ABI.
pub fn send_backlog_state(out: &mut [usize]) -> Option<(u64, usize, usize)> {
    let d = DRIVER.load(Ordering::SeqCst);
    if d.is_null() {
        return None;
    }
    // SAFETY: as in start_state.
    let r = unsafe { &*d };
    let mut n = 0;
    for i in 0..r.conns.n {
        if n == out.len() {
            break;
        }
        // SAFETY: i < n; contexts live until the pool is freed at unload.
        let c = unsafe { &**r.conns.conns.add(i) };
        let st = c.st.lock();
        if c.live.load(Ordering::Relaxed) && !c.job {
            out[n] = st.max_send();
            n += 1;
        }
    }
    Some((
        r.backlog_queries.load(Ordering::Relaxed),
        r.backlog_last.load(Ordering::Relaxed),
        n,
    ))
}

/// The control ABI on the loaded instance (what IRP_MJ_DEVICE_CONTROL does, for transports
/// other than the device: wskecho-sim serves it over TCP). PASSIVE_LEVEL.
pub fn control(code: u32, input: &[u8], output: &mut [u8]) -> Option<(i32, usize)> {
    let d = DRIVER.load(Ordering::SeqCst);
    // SAFETY: as in start_state.
    (!d.is_null()).then(|| unsafe { device::control_dispatch(d, code, input, output) })
}
