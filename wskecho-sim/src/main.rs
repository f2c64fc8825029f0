//! wskecho-sim: the real wskecho driver code, loaded into wsk-sim, serving real TCP/UDP on
//! loopback (default services from the control crate: echo 7007, discard 7009, source 7019,
//! sockperf 11111) and the control ABI over TCP (default 127.0.0.1:7070), until Ctrl-C or
//! SIGTERM or `--duration`. Prints the driver's counters and the sim's leak check at exit.
//!
//! - [`harness`]: loads the driver crate's code into wsk-sim and unloads it, checking for
//!   leaks (shared with the driver's host tests).
//! - [`image`]: `--sys PATH`, the shipped wskecho.sys image run through wsk-sim's loader
//!   instead of the built-in driver code.

// Every unsafe block states why it is sound.
#![deny(clippy::undocumented_unsafe_blocks)]

mod harness;
mod image;

/// A line on stderr. Unlike eprintln!, a closed stderr (`2>&1 | head -n 1`) is not a panic:
/// the run goes on and its exit code still carries the verdict.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str =
    "usage: wskecho-sim [--duration TIME] [--control ADDR | --no-control] [--seed N]
                   [--param NAME=DWORD]... [--services LIST] [--cpus N] [--draws]
                   [--datagrams-per-list N] [--sys PATH [--no-stack-probe]]
  Runs the wskecho driver inside wsk-sim on 127.0.0.1 with the default services
  (echo tcp+udp 7007, discard tcp+udp 7009, source tcp 7019, sockperf tcp+udp 11111).
  --param sets a DWORD value of the driver's registry Parameters key (e.g. EnableZeroCopy=0,
  MaxConnections=64); --services replaces the Services value with a ';'-separated list of
  'mode,proto,port,address' entries (e.g. 'echo,tcp,9007,127.0.0.1;echo,udp,9007,::1').
  --duration takes seconds (5, 1.5) or a duration (2s, 500ms, 1m). --cpus sets how many
  processors the simulator presents to the driver (default 4, whatever the host has).
  SIGINT and SIGTERM end the run like --duration: final counters and the leak verdict.
  Timing is realistic by default: every call that can complete inline does, callbacks and
  completions run at PASSIVE_LEVEL, all available data is indicated at once, so ping-pong
  latencies are the driver's own. --draws turns on the simulator's bug-finding draws instead
  (random pending and IRQL, completions delayed up to 2 ms and reordered, TCP data split over
  1-3 random indications): what the test suites and end-to-end runs use; they find races, they
  do not model a network (TCP ping-pong p50 then about 7x UDP's). --plain is the default and
  kept for old scripts. --datagrams-per-list N
  lets one WskReceiveFromEvent list hold up to N queued datagrams (a seeded draw of 1..N;
  default 8), e.g. 64 to measure batched UDP echo under bursts.
  --sys runs the driver image at PATH (e.g. target/driver/wskecho.sys from `cargo xtask
  driver`) instead of the built-in driver code: wsk-sim maps and relocates it, binds its
  imports to the sim's kernel, and reaches it only through DriverEntry, its IRP dispatch
  routines and DriverUnload; the stack its code uses under each entry is printed at exit
  (--no-stack-probe binds the imports directly, for instruction counts).";

struct Args {
    duration: Option<Duration>,
    control: Option<String>,
    seed: Option<u64>,
    params: Vec<(String, u32)>,
    services: Option<Vec<String>>,
    cpus: Option<u32>,
    draws: bool,
    datagrams_per_list: Option<usize>,
    sys: Option<String>,
    stack_probe: bool,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        duration: None,
        control: Some(control::transport::DEFAULT_ADDR.to_string()),
        seed: None,
        params: Vec::new(),
        services: None,
        cpus: None,
        draws: false,
        datagrams_per_list: None,
        sys: None,
        stack_probe: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--duration" => {
                let v = it.next().ok_or("--duration needs TIME")?;
                a.duration = Some(parse_duration(&v)?);
            }
            "--control" => a.control = Some(it.next().ok_or("--control needs ADDR")?),
            "--no-control" => a.control = None,
            "--seed" => {
                a.seed = Some(
                    it.next()
                        .ok_or("--seed needs N")?
                        .parse()
                        .map_err(|_| "bad --seed")?,
                );
            }
            "--param" => {
                let v = it.next().ok_or("--param needs NAME=DWORD")?;
                let (n, d) = v
                    .split_once('=')
                    .ok_or_else(|| format!("bad --param {v}"))?;
                let d: u32 = d.parse().map_err(|_| {
                    format!("bad --param {v}: the value must be a DWORD (0..=4294967295)")
                })?;
                a.params.push((param_name(n)?.to_string(), d));
            }
            "--services" => {
                let v = it.next().ok_or("--services needs a list")?;
                a.services = Some(v.split(';').map(str::to_string).collect());
            }
            "--cpus" => {
                let v = it.next().ok_or("--cpus needs N")?;
                a.cpus = Some(
                    v.parse()
                        .ok()
                        .filter(|n| (1..=MAX_SIM_CPUS).contains(n))
                        .ok_or_else(|| format!("bad --cpus {v}: 1 to {MAX_SIM_CPUS}"))?,
                );
            }
            "--plain" => a.draws = false,
            "--draws" => a.draws = true,
            "--datagrams-per-list" => {
                let v = it.next().ok_or("--datagrams-per-list needs N")?;
                a.datagrams_per_list = Some(
                    v.parse()
                        .ok()
                        .filter(|n| (1..=1024).contains(n))
                        .ok_or_else(|| format!("bad --datagrams-per-list {v}: 1 to 1024"))?,
                );
            }
            "--sys" => a.sys = Some(it.next().ok_or("--sys needs PATH")?),
            "--no-stack-probe" => a.stack_probe = false,
            "-h" | "--help" => return Err(USAGE.into()),
            o => return Err(format!("unknown argument {o}\n{USAGE}")),
        }
    }
    check_config(&a)?;
    Ok(a)
}

/// The driver keeps per-CPU counters for this many processors.
const MAX_SIM_CPUS: u32 = wskecho::stats::MAX_CPUS as u32;

/// Bare seconds (`5`, `1.5`: what worked before) or a humantime duration (`2s`, `500ms`, `1m`).
fn parse_duration(v: &str) -> Result<Duration, String> {
    let t = v.trim();
    if let Ok(secs) = t.parse::<f64>() {
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("bad --duration {v}: not a duration"));
    }
    humantime::parse_duration(t).map_err(|e| {
        format!("bad --duration {v}: {e} (seconds such as 5 or 1.5, or e.g. 2s, 500ms, 1m)")
    })
}

/// The registry DWORD value `name` stands for (case-insensitive, as the registry is), spelled
/// as the driver spells it; an unknown name is an error listing the known ones.
fn param_name(name: &str) -> Result<&'static str, String> {
    use control::config::{REGISTRY_VALUES, REG_DWORD};
    let dwords = || REGISTRY_VALUES.iter().filter(|s| s.reg_type == REG_DWORD);
    dwords()
        .find(|s| s.name.eq_ignore_ascii_case(name))
        .map(|s| s.name)
        .ok_or_else(|| {
            let known: Vec<_> = dwords().map(|s| s.name).collect();
            format!("unknown --param {name}; known: {}", known.join(", "))
        })
}

/// Runs the values through the parser the driver applies to its registry key, so that a value
/// the driver would log and replace by its default is refused here with the reason.
fn check_config(a: &Args) -> Result<(), String> {
    use control::config::{ConfigBuilder, REG_DWORD, REG_MULTI_SZ, SERVICES_VALUE};
    // The parser's text is written for the driver's log, which goes on with the default;
    // here the value is refused instead.
    let reason = |e: control::config::ConfigError| {
        e.to_string().trim_end_matches("; default used").to_string()
    };
    let mut b = ConfigBuilder::new();
    if let Some(list) = &a.services {
        b.apply(SERVICES_VALUE, REG_MULTI_SZ, &multi_sz(list))
            .map_err(|e| {
                format!(
                    "bad --services '{}': {} (entries 'mode,proto,port,address', ';'-separated, \
                     counted from 0)",
                    list.join(";"),
                    reason(e)
                )
            })?;
    }
    for (n, v) in &a.params {
        b.apply(n, REG_DWORD, &v.to_le_bytes())
            .map_err(|e| format!("bad --param {n}={v}: {}", reason(e)))?;
    }
    if let (_, Some(e)) = b.finish() {
        return Err(format!("bad --param combination: {}", reason(e)));
    }
    Ok(())
}

/// REG_MULTI_SZ data (UTF-16LE strings, each NUL-terminated, then a final NUL).
fn multi_sz(list: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in list {
        for u in s.encode_utf16().chain([0]) {
            out.extend_from_slice(&u.to_le_bytes());
        }
    }
    out.extend_from_slice(&[0, 0]);
    out
}

/// The final report on stdout. A closed stdout (`| head -n 1`) ends the printing quietly
/// instead of panicking; the verdict still decides the exit code and goes to stderr.
struct Report {
    out: std::io::StdoutLock<'static>,
    closed: bool,
}

impl Report {
    fn new() -> Self {
        Report {
            out: std::io::stdout().lock(),
            closed: false,
        }
    }

    fn line(&mut self, args: std::fmt::Arguments<'_>) {
        use std::io::Write;
        if !self.closed && (self.out.write_fmt(args).is_err() || self.out.write_all(b"\n").is_err())
        {
            self.closed = true;
        }
    }

    /// Flushes; the verdict goes to stderr as well when stdout was closed.
    fn finish(mut self, verdict: &str) {
        use std::io::Write;
        if self.closed || self.out.flush().is_err() {
            let _ = writeln!(std::io::stderr(), "wskecho-sim: stdout closed; {verdict}");
        }
    }
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            note!("{e}");
            return ExitCode::from(2);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        if let Err(e) = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst)) {
            note!("wskecho-sim: cannot install Ctrl-C handler: {e}");
        }
    }
    let mut sim = if args.draws {
        wsk_sim::Config::default()
    } else {
        wsk_sim::Config::plain()
    };
    if args.draws {
        note!(
            "wskecho-sim: the simulator's draws are on (--draws: random pending and IRQL, \
             completions delayed up to {} us, split indications): for finding races, not for \
             timing",
            sim.max_completion_delay_us
        );
    } else {
        note!(
            "wskecho-sim: realistic timing (inline completions, PASSIVE_LEVEL, whole \
             indications): latencies are the driver's own; --draws for the test suites' \
             bug-finding draws"
        );
    }
    sim.print_dbg = true;
    if let Some(s) = args.seed {
        sim.seed = s;
    }
    if let Some(n) = args.cpus {
        sim.processor_count = n;
    }
    if let Some(n) = args.datagrams_per_list {
        sim.max_datagrams_per_indication = n;
    }
    // The driver's processor count (per-CPU counters, KeQueryActiveProcessorCountEx) is the
    // simulator's, not this machine's.
    note!(
        "wskecho-sim: {} simulated processors (--cpus; this host has {})",
        sim.processor_count,
        std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
    );
    // Registry values as an installed driver would read them (none: the control crate's
    // defaults, like a fresh install).
    let params = format!("{}\\Parameters", harness::REGISTRY_PATH);
    let configured = args.services.as_ref().map_or_else(
        || control::config::Config::default().services.len(),
        |list| list.iter().filter(|e| !e.is_empty()).count(),
    );
    if configured == 0 && args.control.is_none() {
        note!("wskecho-sim: no services and --no-control: nothing to serve");
        return ExitCode::from(2);
    }
    let (regs, services) = (args.params.clone(), args.services.clone());
    let before_entry = move || {
        for (n, v) in regs {
            wsk_sim::registry::set_value(&params, &n, wsk_sim::registry::RegValue::Dword(v));
        }
        if let Some(list) = services {
            wsk_sim::registry::set_value(
                &params,
                "Services",
                wsk_sim::registry::RegValue::MultiSz(list),
            );
        }
    };
    if let Some(path) = &args.sys {
        let (path, control, d) = (
            std::path::Path::new(path),
            args.control.as_deref(),
            args.duration,
        );
        return image::serve(path, sim, args.stack_probe, before_entry, control, d, &stop);
    }
    let loaded = match harness::load_with(sim, None, before_entry) {
        Ok(l) if l.ready => l,
        Ok(l) => {
            note!("wskecho-sim: driver start-up failed; unloading");
            for f in l.unload() {
                note!("  {f}");
            }
            return ExitCode::FAILURE;
        }
        Err(e) => {
            note!("wskecho-sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A service whose socket failed (port taken, address not local) is logged by the driver
    // and the others run; with none running there is nothing to serve.
    let open = wskecho::open_services().unwrap_or(0);
    if open == 0 && configured > 0 {
        note!(
            "wskecho-sim: none of the {configured} configured services could start (see the \
             driver's errors above); unloading"
        );
        for f in loaded.unload() {
            note!("  {f}");
        }
        return ExitCode::FAILURE;
    }
    if open < configured {
        note!("wskecho-sim: only {open} of {configured} services started (see above)");
    }
    note!(
        "wskecho-sim: driver loaded; serving until Ctrl-C/SIGTERM{}",
        args.duration
            .map_or(String::new(), |d| format!(" or {d:?}"))
    );
    let control_thread =
        args.control
            .as_ref()
            .and_then(|addr| match std::net::TcpListener::bind(addr) {
                Ok(l) => {
                    note!("wskecho-sim: control ABI on {addr}");
                    let stop = stop.clone();
                    Some(std::thread::spawn(move || {
                        let _ = control::transport::serve_until(&l, &stop, |code, inp, out| {
                            wskecho::control(code, inp, out)
                                .unwrap_or((wsk_sys::STATUS_DEVICE_NOT_READY, 0))
                        });
                    }))
                }
                Err(e) => {
                    note!("wskecho-sim: control address {addr}: {e} (control disabled)");
                    None
                }
            });
    let t0 = Instant::now();
    while !stop.load(Ordering::SeqCst) && args.duration.is_none_or(|d| t0.elapsed() < d) {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::SeqCst);
    if let Some(t) = control_thread {
        let _ = t.join();
    }
    let counters = loaded.counters();
    let findings = loaded.unload();
    let mut out = Report::new();
    out.line(format_args!(
        "wskecho-sim: driver counters after {:.1} s:",
        t0.elapsed().as_secs_f64()
    ));
    for (name, v) in wskecho::stats::COUNTER_NAMES.iter().zip(counters) {
        out.line(format_args!("  {name:<22} {v}"));
    }
    if findings.is_empty() {
        let verdict = "unload clean (no leaks, no violations)";
        out.line(format_args!("wskecho-sim: {verdict}"));
        out.finish(verdict);
        ExitCode::SUCCESS
    } else {
        out.line(format_args!("wskecho-sim: unload findings:"));
        for f in &findings {
            out.line(format_args!("  {f}"));
        }
        out.finish(&format!("unload findings: {}", findings.join("; ")));
        ExitCode::FAILURE
    }
}
