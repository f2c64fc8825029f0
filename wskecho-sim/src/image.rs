//! `wskecho-sim --sys PATH`: the shipped driver image instead of the built-in driver code.
//! wsk-sim maps the file, binds its imports to the sim's kernel and calls its DriverEntry;
//! every later contact goes through what Windows would use: IRPs through the driver
//! object's MajorFunction table for the control ABI and statistics, DriverUnload at the
//! end. Nothing of the driver crate is used on this path.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use control::ioctl::{StatsRequest, StatsView, IOCTL_WSKECHO_QUERY_STATS, STATS_REQUEST_LEN};
use control::stats::Counters;
use wsk_sim::pe::driver::{DeviceHandle, ImageDriver};
use wsk_sim::pe::stack::EntryDepth;
use wsk_sim::pe::{Image, LoadOptions, LoadReport};
use wsk_sys::NT_SUCCESS;

/// Registry path handed to DriverEntry (the same key the built-in driver reads).
pub const REGISTRY_PATH: &str = "\\Registry\\Machine\\System\\CurrentControlSet\\Services\\wskecho";

/// A loaded image and its sim run.
pub struct ImageRun {
    drv: Option<ImageDriver>,
    /// The control device, looked up once DriverEntry returned.
    device: Option<DeviceHandle>,
    pub report: LoadReport,
    /// The start-up thread opened every configured service (each reported opened or failed).
    pub ready: bool,
    _guard: wsk_sim::SimGuard,
}

/// Why an image did not get loaded.
#[derive(Debug)]
pub enum LoadFailure {
    /// The loader refused the file (the message lists every reason).
    Refused(String),
    /// DriverEntry returned an error; `findings` is the sim's check after it (leaks,
    /// violations: empty when the driver undid everything).
    EntryFailed { status: i32, findings: Vec<String> },
}

impl std::fmt::Display for LoadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadFailure::Refused(m) => f.write_str(m),
            LoadFailure::EntryFailed { status, findings } => write!(
                f,
                "DriverEntry failed {:#x}; findings after it: {findings:?}",
                *status as u32
            ),
        }
    }
}

/// Starts a sim run with `sim`, runs `before_entry` (fill the sim registry), loads the image
/// at `path` with the stack probe and calls its DriverEntry, then waits (bounded) for its
/// start-up thread.
pub fn load_with(
    path: &Path,
    sim: wsk_sim::Config,
    before_entry: impl FnOnce(),
) -> Result<ImageRun, LoadFailure> {
    load_with_probe(path, sim, true, before_entry)
}

/// As [`load_with`]; `stack_probe` false binds imports directly (for instruction counts of
/// the image's code without the probe's thunks in the way).
pub fn load_with_probe(
    path: &Path,
    sim: wsk_sim::Config,
    stack_probe: bool,
    before_entry: impl FnOnce(),
) -> Result<ImageRun, LoadFailure> {
    let guard = wsk_sim::init(sim);
    before_entry();
    let refused = |e: String| LoadFailure::Refused(format!("{}: {e}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| refused(e.to_string()))?;
    let image = Image::load_with(
        &bytes,
        LoadOptions {
            at: None,
            stack_probe,
        },
    )
    .map_err(|e| refused(e.to_string()))?;
    let report = image.report().clone();
    let drv = ImageDriver::start(image, REGISTRY_PATH);
    if !NT_SUCCESS(drv.entry_status()) {
        let status = drv.entry_status();
        let findings = drv.unload();
        return Err(LoadFailure::EntryFailed { status, findings });
    }
    let device = drv.device();
    let ready = wait_started(Duration::from_secs(10));
    Ok(ImageRun {
        drv: Some(drv),
        device,
        report,
        ready,
        _guard: guard,
    })
}

/// The image's start-up thread is visible from outside only through what it prints: it
/// logs "loaded: N services" in DriverEntry, then one line per service it opens ("tcp echo
/// on ...") or fails to open ("... socket failed"). Ready once N such lines are there.
fn wait_started(timeout: Duration) -> bool {
    let t0 = Instant::now();
    loop {
        let out = wsk_sim::dbg_output();
        let wanted = out.lines().find_map(|l| {
            let rest = l.split("wskecho: loaded: ").nth(1)?;
            rest.split_whitespace().next()?.parse::<usize>().ok()
        });
        if out.contains("WskCaptureProviderNPI failed") {
            return false;
        }
        if let Some(n) = wanted {
            let opened = out
                .lines()
                .filter(|l| {
                    ["wskecho: tcp ", "wskecho: udp "]
                        .iter()
                        .any(|p| l.contains(p))
                        && l.contains(" on ")
                })
                .count();
            if opened >= n {
                return true;
            }
        }
        if t0.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

impl ImageRun {
    /// The control ABI as a user-mode client reaches it: open, DeviceIoControl, close.
    /// Returns (NTSTATUS, bytes written to `output`).
    pub fn control(&self, code: u32, input: &[u8], output: &mut [u8]) -> (i32, usize) {
        control_through(self.device, code, input, output)
    }

    /// A handle for the control thread (valid until [`ImageRun::unload`]).
    pub fn device(&self) -> Option<DeviceHandle> {
        self.device
    }

    /// The driver's global counters, read with IOCTL_WSKECHO_QUERY_STATS.
    pub fn counters(&self) -> Option<Counters> {
        let mut req = [0u8; STATS_REQUEST_LEN];
        StatsRequest {
            per_cpu: false,
            per_service: false,
        }
        .encode(&mut req)
        .ok()?;
        let mut out = vec![0u8; 4096];
        let (st, n) = self.control(IOCTL_WSKECHO_QUERY_STATS, &req, &mut out);
        if !NT_SUCCESS(st) {
            return None;
        }
        StatsView::parse(&out[..n]).ok().map(|v| v.global())
    }

    pub fn image_base(&self) -> usize {
        self.report.base
    }

    /// DriverUnload, the sim's leak/violation check (empty = clean), unmap.
    pub fn unload(self) -> Vec<String> {
        self.unload_with_stack().0
    }

    /// As [`ImageRun::unload`], with the stack depths measured over the run.
    pub fn unload_with_stack(mut self) -> (Vec<String>, Option<(Vec<EntryDepth>, u64)>) {
        self.device = None;
        self.drv
            .take()
            .map(ImageDriver::unload_with_stack)
            .unwrap_or_default()
    }
}

/// The stack budget the driver aims at under an entry (reported, not enforced): 4 KiB under
/// a WSK callback, completion routine, DPC or work item (they run on whatever stack the
/// network stack or the system lends them), 8 KiB elsewhere.
pub fn stack_goal(e: &EntryDepth) -> usize {
    match e.role.as_deref() {
        None | Some("DPC" | "work item") => 4 << 10,
        Some(_) => 8 << 10,
    }
}

/// The stack table printed at exit.
pub fn print_stack(entries: &[EntryDepth], unmeasured: u64) {
    println!(
        "wskecho-sim: image stack use per entry (deepest import call, measured from the entry's \
         rsp; lower bounds: calls through WSK dispatch pointers are not sampled):"
    );
    for e in entries {
        let goal = stack_goal(e);
        println!(
            "  {:>6} bytes {} {:>5} goal  {:<34} RVA {:#07x}  at {} (IRQL {}), {} samples",
            e.max_bytes,
            if e.max_bytes <= goal { "<=" } else { "> " },
            goal,
            e.role
                .as_deref()
                .unwrap_or("WSK callback / completion routine"),
            e.entry_rva,
            e.deepest_call,
            e.irql,
            e.samples
        );
    }
    if unmeasured > 0 {
        println!("  ({unmeasured} samples could not be walked)");
    }
}

/// One control request through the device (STATUS_DEVICE_NOT_READY without one).
pub fn control_through(
    device: Option<DeviceHandle>,
    code: u32,
    input: &[u8],
    output: &mut [u8],
) -> (i32, usize) {
    let Some(dev) = device else {
        return (wsk_sys::STATUS_DEVICE_NOT_READY, 0);
    };
    // SAFETY: callers use the handle only while the image is loaded (the runner joins its
    // control thread before unloading).
    let r = unsafe { dev.ioctl(code, input, output.len()) };
    let n = r.output.len().min(output.len());
    output[..n].copy_from_slice(&r.output[..n]);
    (r.status, n)
}

/// The runner's `--sys` mode: load the image, serve the control ABI over TCP through its
/// device until `stop` or `duration`, print its counters, unload and give the verdict
/// (the same messages as the built-in mode).
pub fn serve(
    path: &Path,
    sim: wsk_sim::Config,
    stack_probe: bool,
    before_entry: impl FnOnce(),
    control_addr: Option<&str>,
    duration: Option<Duration>,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::process::ExitCode {
    use std::process::ExitCode;
    use std::sync::atomic::Ordering;
    let run = match load_with_probe(path, sim, stack_probe, before_entry) {
        Ok(r) if r.ready => r,
        Ok(r) => {
            eprintln!("wskecho-sim: driver start-up failed; unloading");
            for f in r.unload() {
                eprintln!("  {f}");
            }
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("wskecho-sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    let r = &run.report;
    eprintln!(
        "wskecho-sim: image {} mapped at {:#x} ({:#x} bytes, preferred base {:#x}): {} \
         relocations applied, {} imports bound, loaded in {:.2} ms",
        path.display(),
        r.base,
        r.size,
        r.preferred_base,
        r.relocations_applied,
        r.imports_bound,
        r.elapsed.as_secs_f64() * 1e3
    );
    eprintln!(
        "wskecho-sim: driver loaded; serving until Ctrl-C{}",
        duration.map_or(String::new(), |d| format!(" or {d:?}"))
    );
    let device = run.device();
    let control_thread = control_addr.and_then(|addr| match std::net::TcpListener::bind(addr) {
        Ok(l) => {
            eprintln!("wskecho-sim: control ABI on {addr} (through the image's device)");
            let stop = stop.clone();
            Some(std::thread::spawn(move || {
                let _ = control::transport::serve_until(&l, &stop, |code, inp, out| {
                    control_through(device, code, inp, out)
                });
            }))
        }
        Err(e) => {
            eprintln!("wskecho-sim: control address {addr}: {e} (control disabled)");
            None
        }
    });
    let t0 = Instant::now();
    while !stop.load(Ordering::SeqCst) && duration.is_none_or(|d| t0.elapsed() < d) {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::SeqCst);
    if let Some(t) = control_thread {
        let _ = t.join();
    }
    let counters = run.counters();
    let (findings, stack) = run.unload_with_stack();
    println!(
        "wskecho-sim: driver counters after {:.1} s (control ABI):",
        t0.elapsed().as_secs_f64()
    );
    match counters {
        Some(c) => {
            for k in control::stats::Counter::ALL {
                println!("  {:<22} {}", k.name(), c.get(k));
            }
        }
        None => println!("  (the stats query failed)"),
    }
    if let Some((entries, unmeasured)) = stack {
        print_stack(&entries, unmeasured);
    }
    if findings.is_empty() {
        println!("wskecho-sim: unload clean (no leaks, no violations)");
        ExitCode::SUCCESS
    } else {
        println!("wskecho-sim: unload findings:");
        for f in &findings {
            println!("  {f}");
        }
        ExitCode::FAILURE
    }
}
