//! wskecho-sim: the real wskecho driver code, loaded into wsk-sim, serving real TCP/UDP on
//! loopback (default services from the control crate: echo 7007, discard 7009, source 7019,
//! sockperf 11111) and the control ABI over TCP (default 127.0.0.1:7070), until Ctrl-C or
//! `--duration`. Prints the driver's counters and the sim's leak check at exit.

mod harness;
mod image;

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str =
    "usage: wskecho-sim [--duration SECS] [--control ADDR | --no-control] [--seed N]
                   [--param NAME=DWORD]... [--services LIST] [--plain]
                   [--sys PATH [--no-stack-probe]]
  Runs the wskecho driver inside wsk-sim on 127.0.0.1 with the default services
  (echo tcp+udp 7007, discard tcp+udp 7009, source tcp 7019, sockperf tcp+udp 11111).
  --param sets a DWORD value of the driver's registry Parameters key (e.g. EnableZeroCopy=0,
  MaxConnections=64); --services replaces the Services value with a ';'-separated list of
  'mode,proto,port,address' entries (e.g. 'echo,tcp,9007,127.0.0.1;echo,udp,9007,::1').
  --plain starts from wsk-sim's plain configuration (no random pending/IRQL choices, one
  indication entry per receive), for clean per-path measurements.
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
    plain: bool,
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
        plain: false,
        sys: None,
        stack_probe: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--duration" => {
                let v = it.next().ok_or("--duration needs SECS")?;
                let s: f64 = v.parse().map_err(|_| format!("bad --duration {v}"))?;
                a.duration = Some(Duration::from_secs_f64(s));
            }
            "--control" => a.control = Some(it.next().ok_or("--control needs ADDR")?),
            "--no-control" => a.control = None,
            "--seed" => {
                a.seed = Some(
                    it.next()
                        .ok_or("--seed needs N")?
                        .parse()
                        .map_err(|_| "bad --seed")?,
                )
            }
            "--param" => {
                let v = it.next().ok_or("--param needs NAME=DWORD")?;
                let (n, d) = v
                    .split_once('=')
                    .ok_or_else(|| format!("bad --param {v}"))?;
                let d: u32 = d.parse().map_err(|_| format!("bad --param value {d}"))?;
                a.params.push((n.to_string(), d));
            }
            "--services" => {
                let v = it.next().ok_or("--services needs a list")?;
                a.services = Some(v.split(';').map(str::to_string).collect());
            }
            "--plain" => a.plain = true,
            "--sys" => a.sys = Some(it.next().ok_or("--sys needs PATH")?),
            "--no-stack-probe" => a.stack_probe = false,
            "-h" | "--help" => return Err(USAGE.into()),
            o => return Err(format!("unknown argument {o}\n{USAGE}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        if let Err(e) = ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst)) {
            eprintln!("wskecho-sim: cannot install Ctrl-C handler: {e}");
        }
    }
    let mut sim = if args.plain {
        wsk_sim::Config::plain()
    } else {
        wsk_sim::Config::default()
    };
    sim.print_dbg = true;
    if let Some(s) = args.seed {
        sim.seed = s;
    }
    // Registry values as an installed driver would read them (none: the control crate's
    // defaults, like a fresh install).
    let params = format!("{}\\Parameters", harness::REGISTRY_PATH);
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
            eprintln!("wskecho-sim: driver start-up failed; unloading");
            for f in l.unload() {
                eprintln!("  {f}");
            }
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("wskecho-sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "wskecho-sim: driver loaded; serving until Ctrl-C{}",
        args.duration
            .map_or(String::new(), |d| format!(" or {d:?}"))
    );
    let control_thread =
        args.control
            .as_ref()
            .and_then(|addr| match std::net::TcpListener::bind(addr) {
                Ok(l) => {
                    eprintln!("wskecho-sim: control ABI on {addr}");
                    let stop = stop.clone();
                    Some(std::thread::spawn(move || {
                        let _ = control::transport::serve_until(&l, &stop, |code, inp, out| {
                            wskecho::control(code, inp, out)
                                .unwrap_or((wsk_sys::STATUS_DEVICE_NOT_READY, 0))
                        });
                    }))
                }
                Err(e) => {
                    eprintln!("wskecho-sim: control address {addr}: {e} (control disabled)");
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
    println!(
        "wskecho-sim: driver counters after {:.1} s:",
        t0.elapsed().as_secs_f64()
    );
    for (name, v) in wskecho::stats::COUNTER_NAMES.iter().zip(counters) {
        println!("  {name:<22} {v}");
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
