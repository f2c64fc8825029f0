//! `echoload driver ...`: talks to wskecho's control device (Windows, `\\.\WskEcho`) or to a
//! wskecho-sim serving the same control ABI over a socket (`--control ADDR`). Requests and
//! answers are encoded and checked by the `control` crate; this module only chooses the
//! channel and formats the results. The command's arguments are in `crate::cli::driver`; the
//! exporter's Prometheus families in [`metrics`].

mod channel;
mod edit;
pub mod metrics;
mod render;
pub mod selftest;
#[cfg_attr(not(windows), allow(dead_code))]
mod win32;
#[cfg(windows)]
mod windows;

pub use channel::{open_channel, Channel, SocketChannel};
use edit::plan_change;
pub use render::config_json;
use render::{
    config_text, delta_json, delta_line, load_json, load_line, service_states_json,
    service_states_text, snapshot_json, snapshot_text, watch_header,
};

use std::io::Write;
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use control::config::{Config, Proto, Service};
use control::ioctl::status::{nt_success, status_name};
use control::ioctl::{
    self, ControlError, Kind, LoadJob, LoadPattern, LoadStatus, StatsRequest, StatsView,
    VersionInfo,
};
use control::stats::Counters;
use serde_json::{json, Value};

use crate::cli::driver::{
    ConfigCmd, ConfigSetArgs, DriverArgs, DriverCmd, LoadCmd, PatternArg, StatsArgs,
};
use crate::cli::ProtoArg;

/// Exit code when the driver refused a request.
pub const EXIT_REFUSED: i32 = 1;
/// Exit code when neither the driver nor a wskecho-sim could be reached.
pub const EXIT_UNREACHABLE: i32 = 2;

/// The driver or sim could not be reached (exit code [`EXIT_UNREACHABLE`]).
#[derive(Debug)]
pub struct Unreachable(pub String);

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Unreachable {}

/// The driver answered with an error status (exit code [`EXIT_REFUSED`]).
#[derive(Debug)]
pub struct Refused {
    pub status: i32,
    pub what: &'static str,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} refused: {} (0x{:08X}){}",
            self.what,
            status_name(self.status),
            self.status as u32,
            status_hint(self.status)
        )
    }
}
impl std::error::Error for Refused {}

fn status_hint(s: i32) -> &'static str {
    use control::ioctl::status::{
        STATUS_ACCESS_DENIED, STATUS_ADDRESS_ALREADY_EXISTS, STATUS_DEVICE_BUSY,
        STATUS_INVALID_ADDRESS, STATUS_INVALID_DEVICE_STATE, STATUS_INVALID_PARAMETER,
        STATUS_NOT_FOUND, STATUS_NOT_SUPPORTED, STATUS_REVISION_MISMATCH,
        STATUS_TOO_MANY_ADDRESSES,
    };
    match s {
        STATUS_REVISION_MISMATCH => ": the driver speaks another control ABI version than this echoload",
        STATUS_ADDRESS_ALREADY_EXISTS => ": that address and port are already in use (or conflict with a service)",
        STATUS_NOT_FOUND => ": no such service is configured",
        STATUS_DEVICE_BUSY => ": a load job is already running (echoload driver load stop)",
        STATUS_INVALID_DEVICE_STATE => ": no load job is running",
        STATUS_INVALID_ADDRESS => ": bad address or address family",
        STATUS_INVALID_PARAMETER => ": a value is out of range",
        STATUS_TOO_MANY_ADDRESSES => ": too many services",
        STATUS_ACCESS_DENIED => ": run as Administrator",
        STATUS_NOT_SUPPORTED => ": the driver cannot make this change while running (set it in the registry and restart the service)",
        _ => "",
    }
}

/// Runs a `driver` subcommand, printing to stdout. Exit code: 0 done, 1 refused, 2 unreachable.
/// (By value: the signature the CLI wiring expects.)
#[allow(clippy::needless_pass_by_value)]
pub fn run(args: DriverArgs) -> Result<i32> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    run_to(&args, &mut out)
}

/// [`run`] with the output going to `out` (for tests).
pub fn run_to(args: &DriverArgs, out: &mut dyn Write) -> Result<i32> {
    let res = open_channel(args.control.as_deref()).and_then(|mut ch| {
        if let DriverCmd::Selftest {
            duration,
            free_port,
        } = &args.cmd
        {
            let opts = selftest::Options {
                duration: *duration,
                free_port: *free_port,
                json: args.json,
            };
            let target = ch.describe();
            return selftest::run(ch.as_mut(), target, &opts, out);
        }
        execute(args, ch.as_mut(), out).map(|()| 0)
    });
    match res {
        Ok(code) => Ok(code),
        Err(e) => {
            if let Some(u) = e.downcast_ref::<Unreachable>() {
                eprintln!("echoload driver: {u}");
                Ok(EXIT_UNREACHABLE)
            } else if let Some(r) = e.downcast_ref::<Refused>() {
                eprintln!("echoload driver: {r}");
                Ok(EXIT_REFUSED)
            } else if e
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            {
                // Output piped into `head` and closed: not an error of ours.
                Ok(0)
            } else {
                Err(e)
            }
        }
    }
}

/// Sends a request; an error status becomes [`Refused`]; the output must decode.
fn request(
    ch: &mut dyn Channel,
    what: &'static str,
    code: u32,
    input: &[u8],
    cap: usize,
) -> Result<Vec<u8>> {
    let (status, outb) = ch.call(code, input, cap)?;
    if !nt_success(status) {
        bail!(Refused { status, what });
    }
    Ok(outb)
}

fn decode<T>(r: Result<T, ControlError>, what: &str) -> Result<T> {
    r.map_err(|e| anyhow!("malformed {what} answer from the driver: {e}"))
}

fn encode_with(f: impl FnOnce(&mut [u8]) -> Result<usize, ControlError>) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; ioctl::MAX_INPUT_BYTES];
    let n = f(&mut buf).map_err(|e| anyhow!("cannot encode request: {e}"))?;
    buf.truncate(n);
    Ok(buf)
}

pub fn query_version(ch: &mut dyn Channel) -> Result<VersionInfo> {
    let b = request(
        ch,
        "version query",
        ioctl::IOCTL_WSKECHO_QUERY_VERSION,
        &[],
        ioctl::VERSION_INFO_LEN,
    )?;
    let v = decode(VersionInfo::decode(&b), "version")?;
    if !v.compatible() {
        bail!(Refused {
            status: control::ioctl::status::STATUS_REVISION_MISMATCH,
            what: "version check"
        });
    }
    Ok(v)
}

/// Where each configured service stands (open, or why not), when the driver reports it
/// (`FEATURE_SERVICE_STATE` in its version answer); None from a driver that does not.
pub fn query_services(
    ch: &mut dyn Channel,
    v: &VersionInfo,
) -> Result<Option<ioctl::ServiceStates>> {
    if v.features & ioctl::FEATURE_SERVICE_STATE == 0 {
        return Ok(None);
    }
    let input = encode_with(|b| ioctl::encode_empty_request(Kind::ServicesRequest, b))?;
    let b = request(
        ch,
        "service state",
        ioctl::IOCTL_WSKECHO_QUERY_SERVICES,
        &input,
        ioctl::service_states_len(control::config::MAX_SERVICES),
    )?;
    decode(ioctl::decode_service_states(&b), "service state").map(Some)
}

pub fn query_config(ch: &mut dyn Channel) -> Result<Config> {
    let input = encode_with(|b| ioctl::encode_empty_request(Kind::ConfigGetRequest, b))?;
    let b = request(
        ch,
        "config get",
        ioctl::IOCTL_WSKECHO_GET_CONFIG,
        &input,
        ioctl::config_response_len(
            control::config::MAX_ALLOWED_SOURCES,
            control::config::MAX_SERVICES,
        ),
    )?;
    decode(ioctl::decode_config_response(&b), "config")
}

/// A stats snapshot, copied out of the answer.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub time_us: u64,
    pub global: Counters,
    pub cpus: Vec<Counters>,
    pub services: Vec<(Service, Counters)>,
}

pub fn query_stats(ch: &mut dyn Channel, per_cpu: bool, per_service: bool) -> Result<Snapshot> {
    let input = encode_with(|b| {
        StatsRequest {
            per_cpu,
            per_service,
        }
        .encode(b)
    })?;
    // Only what the answer can need: a METHOD_BUFFERED call makes the kernel allocate a
    // non-paged buffer of the larger of the two lengths.
    let cap = ioctl::stats_len(
        if per_cpu { ioctl::MAX_STATS_CPUS } else { 0 },
        if per_service {
            control::config::MAX_SERVICES
        } else {
            0
        },
    );
    let b = request(
        ch,
        "stats query",
        ioctl::IOCTL_WSKECHO_QUERY_STATS,
        &input,
        cap,
    )?;
    let v = decode(StatsView::parse(&b), "stats")?;
    Ok(Snapshot {
        time_us: v.time_us(),
        global: v.global(),
        cpus: (0..v.cpu_count()).filter_map(|i| v.cpu(i)).collect(),
        services: (0..v.service_count())
            .filter_map(|i| v.service(i))
            .collect(),
    })
}

pub fn query_load(ch: &mut dyn Channel) -> Result<LoadStatus> {
    let input = encode_with(|b| ioctl::encode_empty_request(Kind::LoadStatusRequest, b))?;
    let b = request(
        ch,
        "load status",
        ioctl::IOCTL_WSKECHO_LOAD_STATUS,
        &input,
        ioctl::LOAD_STATUS_RESPONSE_LEN,
    )?;
    decode(ioctl::decode_load_status(&b), "load status")
}

fn execute(args: &DriverArgs, ch: &mut dyn Channel, out: &mut dyn Write) -> Result<()> {
    match &args.cmd {
        DriverCmd::Status => {
            let v = query_version(ch)?;
            let c = query_config(ch)?;
            let states = query_services(ch, &v)?;
            let l = query_load(ch)?;
            if args.json {
                let j = json!({
                    "driver_version": format!("{}.{}.{}", v.driver.0, v.driver.1, v.driver.2),
                    "abi": {"min": v.abi_min, "max": v.abi_max},
                    "cpus": v.cpu_count,
                    "config": config_json(&c),
                    "services": states.as_ref().map(service_states_json),
                    "load": load_json(&l),
                });
                writeln!(out, "{j}")?;
            } else {
                writeln!(
                    out,
                    "wskecho {}.{}.{} (control ABI {}..={}), {} CPUs",
                    v.driver.0, v.driver.1, v.driver.2, v.abi_min, v.abi_max, v.cpu_count
                )?;
                write!(out, "{}", config_text(&c))?;
                write!(out, "{}", service_states_text(states.as_ref()))?;
                writeln!(out, "load job: {}", load_line(&l))?;
            }
        }
        DriverCmd::Stats(s) => stats_cmd(args.json, s, ch, out)?,
        DriverCmd::Selftest { .. } => bail!("the self-test runs through run_to"),
        DriverCmd::Check { free_port } => check_cmd(args.json, *free_port, ch, out)?,
        DriverCmd::Exporter { listen, duration } => {
            let deadline = duration.map(|d| Instant::now() + d);
            crate::metrics::serve_here(
                listen,
                deadline,
                |a| {
                    let _ = writeln!(out, "metrics on http://{a}/metrics");
                    let _ = out.flush();
                },
                &mut || match query_stats(ch, true, true) {
                    Ok(s) => metrics::driver_exposition(&s),
                    Err(e) => {
                        eprintln!("echoload driver exporter: {e:#}");
                        metrics::driver_down()
                    }
                },
            )?;
        }
        DriverCmd::Config(ConfigCmd::Get) => {
            let c = query_config(ch)?;
            if args.json {
                writeln!(out, "{}", config_json(&c))?;
            } else {
                write!(out, "{}", config_text(&c))?;
            }
        }
        DriverCmd::Config(ConfigCmd::Set(s)) => {
            let change = plan_change(s, ch)?;
            let input = encode_with(|b| change.encode(b))?;
            request(ch, "config set", ioctl::IOCTL_WSKECHO_SET_CONFIG, &input, 0)?;
            let c = query_config(ch)?;
            if args.json {
                writeln!(out, "{}", config_json(&c))?;
            } else {
                writeln!(out, "configuration applied")?;
                write!(out, "{}", config_text(&c))?;
            }
        }
        DriverCmd::Load(LoadCmd::Start(a)) => {
            let job = LoadJob {
                target: a.target.ip(),
                port: a.target.port(),
                proto: match a.proto {
                    ProtoArg::Tcp => Proto::Tcp,
                    ProtoArg::Udp => Proto::Udp,
                },
                pattern: match a.pattern {
                    PatternArg::Echo => LoadPattern::Echo,
                    PatternArg::Source => LoadPattern::Source,
                },
                connections: a.conns,
                message_size: a.size,
                duration_ms: u32::try_from(a.duration.as_millis()).unwrap_or(u32::MAX),
                rate: a.rate,
                stream: a.stream,
                // 0 asks for the driver's default.
                flows: a.flows.unwrap_or(0),
            };
            // Checked here too, so the operator learns which value is wrong.
            job.validate().map_err(|e| anyhow!("load job: {e}"))?;
            let input = encode_with(|b| ioctl::encode_load_start(&job, b))?;
            let b = request(
                ch,
                "load start",
                ioctl::IOCTL_WSKECHO_LOAD_START,
                &input,
                ioctl::LOAD_START_RESPONSE_LEN,
            )?;
            let id = decode(ioctl::decode_load_started(&b), "load start")?;
            if args.json {
                writeln!(out, "{}", json!({"job_id": id}))?;
            } else {
                writeln!(out, "load job {id} started")?;
            }
        }
        DriverCmd::Load(LoadCmd::Stop { job }) => {
            let input = encode_with(|b| ioctl::encode_load_stop(*job, b))?;
            request(ch, "load stop", ioctl::IOCTL_WSKECHO_LOAD_STOP, &input, 0)?;
            let l = query_load(ch)?;
            if args.json {
                writeln!(out, "{}", load_json(&l))?;
            } else {
                writeln!(out, "load job: {}", load_line(&l))?;
            }
        }
        DriverCmd::Load(LoadCmd::Status) => {
            let l = query_load(ch)?;
            if args.json {
                writeln!(out, "{}", load_json(&l))?;
            } else {
                writeln!(out, "load job: {}", load_line(&l))?;
            }
        }
    }
    Ok(())
}

fn check_cmd(
    as_json: bool,
    free_port: Option<u16>,
    ch: &mut dyn Channel,
    out: &mut dyn Write,
) -> Result<()> {
    // One request first: when nothing answers, that is one transport error (exit 2), not a
    // failure of every case of the suite.
    ch.call(
        ioctl::IOCTL_WSKECHO_QUERY_VERSION,
        &[],
        ioctl::VERSION_INFO_LEN,
    )?;
    let port = match free_port {
        Some(p) => p,
        None => std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port(),
    };
    let mut call = |code: u32, input: &[u8], cap: usize| {
        ch.call(code, input, cap).map_err(|e| format!("{e:#}"))
    };
    let cases = control::conformance::run(&mut call, port);
    let failed = cases.iter().filter(|c| !c.passed()).count();
    if as_json {
        let list: Vec<Value> = cases
            .iter()
            .map(|c| json!({"case": c.name, "passed": c.passed(), "status": format!("0x{:08X}", c.got as u32), "problem": c.problem}))
            .collect();
        writeln!(
            out,
            "{}",
            json!({"passed": cases.len() - failed, "failed": failed, "cases": list})
        )?;
    } else {
        for c in &cases {
            if c.passed() {
                writeln!(out, "ok    {}", c.name)?;
            } else {
                writeln!(out, "FAIL  {}: {}", c.name, c.problem)?;
            }
        }
        writeln!(
            out,
            "conformance: {} passed, {} failed",
            cases.len() - failed,
            failed
        )?;
    }
    if failed > 0 {
        bail!(Refused {
            status: control::ioctl::status::STATUS_INVALID_PARAMETER,
            what: "conformance check"
        });
    }
    Ok(())
}

fn stats_cmd(
    as_json: bool,
    s: &StatsArgs,
    ch: &mut dyn Channel,
    out: &mut dyn Write,
) -> Result<()> {
    let first = query_stats(ch, s.per_cpu, s.per_service)?;
    if !s.watch {
        if as_json {
            writeln!(out, "{}", snapshot_json(&first))?;
        } else {
            write!(out, "{}", snapshot_text(&first))?;
        }
        return Ok(());
    }
    let mut prev = first;
    let mut n = 0u64;
    let mut next = Instant::now() + s.interval;
    if !as_json {
        writeln!(out, "{}", watch_header())?;
    }
    while s.count == 0 || n < s.count {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += s.interval;
        let cur = query_stats(ch, false, false)?;
        let secs = (cur.time_us.saturating_sub(prev.time_us)) as f64 / 1e6;
        let secs = if secs > 0.0 {
            secs
        } else {
            s.interval.as_secs_f64()
        };
        if as_json {
            writeln!(out, "{}", delta_json(&prev.global, &cur.global, secs))?;
        } else {
            writeln!(out, "{}", delta_line(&prev.global, &cur.global, secs))?;
        }
        out.flush()?;
        prev = cur;
        n += 1;
    }
    Ok(())
}
