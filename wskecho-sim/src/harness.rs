//! Loads the real wskecho driver into wsk-sim and unloads it again, checking the sim's leak
//! report. Shared by the `wskecho-sim` runner and the driver's host tests (included there with
//! `#[path]`, so the driver crate is linked once per binary).
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use control::config::{Config, Mode, Proto, Service, Services};
use wsk_sys::{DRIVER_OBJECT, NT_SUCCESS, UNICODE_STRING};

/// Registry path handed to DriverEntry (the sim's in-memory registry serves its Parameters).
pub const REGISTRY_PATH: &str = "\\Registry\\Machine\\System\\CurrentControlSet\\Services\\wskecho";

/// The orders the WSK docs leave open that the driver's host suites always run with (wsk-sim's
/// unkind settings, seeded): sleeps rounded to the clock interval, completions before the call
/// returns and while a receive callback runs, stalled callbacks, callbacks inside provider
/// calls, unmapped and 1-3 byte indication MDLs, the caller's process, and the close IRP
/// completing before, between or after the IRPs it cancelled (`close`), PASSIVE threads
/// descheduled at their kernel calls (`preempt`), events of an accepted socket before its
/// accept callback returns (`accept-race`), a disconnect event during a receive event
/// (`disconnect-race`), completions delivered by four threads at once (`parallel-completion`).
/// The wskecho-sim runner, a benchmark tool, keeps the kind orders.
pub const SUITE_UNKIND: &str =
    "close,clock,progress,late-return,stall,user-process,unmapped-mdl,tiny-mdl,inline-callback,\
     preempt,accept-race,disconnect-race,parallel-completion";

fn suite_orders(sim: wsk_sim::Config) -> wsk_sim::Config {
    // Included into the driver's integration tests, which are built with cfg(test).
    if cfg!(test) {
        sim.with_unkind(SUITE_UNKIND)
            .unwrap_or_else(|e| panic!("SUITE_UNKIND: {e}"))
    } else {
        sim
    }
}

pub struct Loaded {
    pub guard: wsk_sim::SimGuard,
    /// From `wsk_sim::new_driver_object` (lives for the process).
    pub drv_obj: *mut DRIVER_OBJECT,
    _path: Vec<u16>,
    _us: Box<UNICODE_STRING>,
    unloaded: bool,
    /// The start-up thread captured the provider and created the sockets.
    pub ready: bool,
}

/// Starts a sim run with `sim`, calls DriverEntry with `cfg` (None: read the sim registry),
/// and waits (bounded) until the start-up thread has created the sockets (`ready`). Err only
/// when DriverEntry itself failed (the driver is then not loaded).
// The configuration is handed over by value: DriverEntry takes ownership of it.
#[allow(clippy::large_types_passed_by_value)]
pub fn load(sim: wsk_sim::Config, cfg: Option<Config>) -> Result<Loaded, String> {
    load_with(sim, cfg, || {})
}

/// As [`load`], running `before_entry` after the sim is reset and before DriverEntry (to fill
/// the sim registry, queue one-shot faults, ...).
#[allow(clippy::large_types_passed_by_value)] // as for `load`: DriverEntry takes ownership
pub fn load_with(
    sim: wsk_sim::Config,
    cfg: Option<Config>,
    before_entry: impl FnOnce(),
) -> Result<Loaded, String> {
    let guard = wsk_sim::init(suite_orders(sim));
    before_entry();
    let drv_obj = wsk_sim::new_driver_object();
    let mut path: Vec<u16> = REGISTRY_PATH.encode_utf16().collect();
    let mut us = Box::new(UNICODE_STRING {
        Length: (path.len() * 2) as u16,
        MaximumLength: (path.len() * 2) as u16,
        Buffer: path.as_mut_ptr(),
    });
    // SAFETY: valid driver object and registry path, alive until unload.
    let st =
        unsafe { wsk_sim::run_passive(|| wskecho::driver_entry_with(drv_obj, &raw mut *us, cfg)) };
    if !NT_SUCCESS(st) {
        return Err(format!("DriverEntry failed {:#x}", st as u32));
    }
    let t0 = Instant::now();
    let ready = loop {
        match wskecho::start_state() {
            Some(wskecho::START_READY) => break true,
            Some(wskecho::START_FAILED) => break false,
            _ if t0.elapsed() > Duration::from_secs(10) => break false,
            _ => std::thread::sleep(Duration::from_millis(2)),
        }
    };
    Ok(Loaded {
        guard,
        drv_obj,
        _path: path,
        _us: us,
        unloaded: false,
        ready,
    })
}

impl Loaded {
    /// Calls DriverUnload (PASSIVE_LEVEL) and returns the sim's leak/violation findings
    /// (empty = clean).
    pub fn unload(mut self) -> Vec<String> {
        self.unload_inner()
    }

    fn unload_inner(&mut self) -> Vec<String> {
        if self.unloaded {
            return Vec::new();
        }
        self.unloaded = true;
        // SAFETY: the driver object from new_driver_object, filled by DriverEntry.
        let unload = unsafe { (*self.drv_obj).DriverUnload }.expect("DriverEntry set DriverUnload");
        let p = self.drv_obj;
        // SAFETY: the loaded driver's unload routine with its own driver object.
        unsafe { wsk_sim::run_passive(|| unload(p)) };
        wsk_sim::finish()
    }

    // `&self` although the driver's state is global: only a loaded driver can be asked.
    #[allow(clippy::unused_self)]
    pub fn counters(&self) -> [u64; wskecho::stats::NUM_COUNTERS] {
        wskecho::counters().expect("driver loaded")
    }

    pub fn counter(&self, c: wskecho::stats::Counter) -> u64 {
        self.counters()[c as usize]
    }

    /// Control ABI call. Through the driver's control device when it has one, as a user
    /// process's DeviceIoControl arrives: `wsk_sim::device::call_dispatch` sends the
    /// IRP_MJ_DEVICE_CONTROL IRP (METHOD_BUFFERED) and the dispatch routine runs in the user
    /// process's context, so the sim's `user-process` order sees what the driver does there
    /// (a socket created with OwningProcess NULL would be the caller's, W26). Without a device
    /// (DriverEntry failed to create it), the control handler is called directly.
    pub fn control(&self, code: u32, input: &[u8], out_len: usize) -> (i32, Vec<u8>) {
        if let Some(dev) = self.control_device() {
            // SAFETY: a live device object of this driver, which set IRP_MJ_DEVICE_CONTROL.
            let r = unsafe {
                wsk_sim::device::call_dispatch(
                    dev,
                    wsk_sys::IRP_MJ_DEVICE_CONTROL,
                    code,
                    input,
                    out_len,
                )
            };
            return (r.status, r.output);
        }
        let mut out = vec![0u8; out_len];
        let (st, n) = wskecho::control(code, input, &mut out).expect("driver loaded");
        out.truncate(n);
        (st, out)
    }
}

impl Loaded {
    /// The driver's live device object with an IRP_MJ_DEVICE_CONTROL routine, if any.
    fn control_device(&self) -> Option<wsk_sys::PDEVICE_OBJECT> {
        if self.unloaded {
            return None;
        }
        wsk_sim::device::devices()
            .iter()
            .filter(|d| !d.deleted)
            .map(|d| d.address as wsk_sys::PDEVICE_OBJECT)
            // SAFETY: live (not deleted) device objects of this run.
            .find(|&dev| unsafe {
                (*dev).DriverObject == self.drv_obj
                    && (*self.drv_obj).MajorFunction[usize::from(wsk_sys::IRP_MJ_DEVICE_CONTROL)]
                        .is_some()
            })
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        if !self.unloaded && !std::thread::panicking() {
            let leaks = self.unload_inner();
            assert!(leaks.is_empty(), "leaks/violations at unload: {leaks:#?}");
        } else if !self.unloaded {
            let _ = self.unload_inner();
        }
    }
}

/// A TCP+UDP port pair free on `ip` right now (both protocols, so one number serves both).
pub fn free_port(ip: std::net::IpAddr) -> u16 {
    for _ in 0..100 {
        let t = TcpListener::bind(SocketAddr::new(ip, 0)).expect("bind tcp");
        let port = t.local_addr().unwrap().port();
        if UdpSocket::bind(SocketAddr::new(ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

/// A configuration with one service per (proto, mode) on fresh ports of `ip`.
pub fn config_with(ip: std::net::IpAddr, services: &[(Proto, Mode)]) -> (Config, Vec<u16>) {
    let mut cfg = Config::default();
    let mut list = Vec::new();
    let mut ports = Vec::new();
    for &(proto, mode) in services {
        let port = free_port(ip);
        list.push(Service::new(proto, port, mode, ip));
        ports.push(port);
    }
    cfg.services = Services::from_slice(&list).expect("valid services");
    cfg.limits.max_connections = 256;
    cfg.limits.udp_send_contexts = 64;
    (cfg, ports)
}
