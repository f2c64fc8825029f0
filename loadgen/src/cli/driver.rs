//! `echoload driver ...` options (the subcommands that talk to the driver's control device or
//! a wskecho-sim's control socket). Only the arguments: the client that carries them out is
//! `crate::driverctl`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use control::config::{Cidr, Service};

use super::units::parse_duration;
use super::ProtoArg;

#[derive(Args, Debug, Clone)]
pub struct DriverArgs {
    /// Control address of a running wskecho-sim (default 127.0.0.1:7070). On Windows, without
    /// it, the driver's device \\.\WskEcho is used (or a wskecho-sim at the default address
    /// when the driver is not installed).
    #[arg(long, global = true, value_name = "ADDR")]
    pub control: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub cmd: DriverCmd,
}

#[derive(Subcommand, Debug, Clone)]
pub enum DriverCmd {
    /// Driver version, ABI, services and load-job state.
    Status,
    /// Counters: global, and per CPU / per service on request.
    Stats(StatsArgs),
    /// Read or change the running configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Kernel-side load generation.
    #[command(subcommand)]
    Load(LoadCmd),
    /// Run the control-ABI conformance suite (well-formed and malformed requests; refused ones
    /// must change nothing) against the driver or wskecho-sim.
    Check {
        /// A TCP port on 127.0.0.1 that nothing listens on (used in requests that must be
        /// refused); default: one the OS picks.
        #[arg(long)]
        free_port: Option<u16>,
    },
    /// First-boot self-test: echo over TCP and UDP, a TCP half-close, sink, the sockperf wire,
    /// the driver's own counters, control conformance and live stats, against the driver (or
    /// wskecho-sim); prints a verdict to paste into a bug report. Exit code 0 pass, 1 a step
    /// failed, 2 nothing answered, 3 some steps could not run (their service is not
    /// configured or did not open).
    Selftest {
        /// Measured time of each load run.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        duration: Duration,
        /// A TCP port on 127.0.0.1 that nothing listens on (for the conformance suite);
        /// default: one the OS picks.
        #[arg(long)]
        free_port: Option<u16>,
    },
    /// Serve the driver's counters (global, per CPU, per service) in the Prometheus text
    /// format on http://ADDR/metrics; each scrape queries the driver.
    Exporter {
        /// Listen address, e.g. 0.0.0.0:9464.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
        listen: String,
        /// Stop after this long (default: run until interrupted).
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
    },
}

#[derive(Args, Debug, Clone)]
pub struct StatsArgs {
    /// Print per-second deltas until interrupted (or --count samples).
    #[arg(long)]
    pub watch: bool,
    /// With --watch: stop after this many samples (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub count: u64,
    /// With --watch: sampling interval.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    #[arg(long)]
    pub per_cpu: bool,
    #[arg(long)]
    pub per_service: bool,
}

#[derive(Subcommand, Debug, Clone)]
pub enum ConfigCmd {
    /// Print services and limits.
    Get,
    /// Change services and limits. One --add or one --remove alone is sent as that operation;
    /// anything else is applied to the current configuration and sent as one replacement.
    Set(ConfigSetArgs),
}

#[derive(Args, Debug, Clone, Default)]
pub struct ConfigSetArgs {
    /// Add a service: MODE,PROTO,PORT,ADDRESS, e.g. echo,tcp,7007,127.0.0.1 (repeatable).
    #[arg(long, value_name = "SERVICE", value_parser = parse_service)]
    pub add: Vec<Service>,
    /// Remove a service (MODE,PROTO,PORT,ADDRESS; the mode is not compared).
    #[arg(long, value_name = "SERVICE", value_parser = parse_service)]
    pub remove: Vec<Service>,
    /// Replace the whole service list with the --add services.
    #[arg(long)]
    pub replace_services: bool,
    /// Set a limit: NAME=VALUE with a registry name, e.g. MaxConnections=2048 (repeatable).
    #[arg(long, value_name = "NAME=VALUE")]
    pub limit: Vec<String>,
    /// Replace the source allow-list (comma-separated CIDRs, e.g. 10.0.0.0/8,::1/128).
    #[arg(long, value_name = "CIDRS", value_delimiter = ',', value_parser = parse_cidr)]
    pub allowed_sources: Option<Vec<Cidr>>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum LoadCmd {
    /// Start a kernel load job.
    Start(LoadStartArgs),
    /// Stop the running job.
    Stop {
        /// Job id (0: whichever runs).
        #[arg(long, default_value_t = 0)]
        job: u32,
    },
    /// State and counters of the current or last job.
    Status,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PatternArg {
    /// Send, wait for the echo, verify, repeat.
    Echo,
    /// Send only.
    Source,
}

#[derive(Args, Debug, Clone)]
pub struct LoadStartArgs {
    /// Target HOST:PORT (IPv4 or [IPv6]:PORT).
    #[arg(long, short = 't')]
    pub target: SocketAddr,
    #[arg(long, value_enum, default_value = "tcp")]
    pub proto: ProtoArg,
    #[arg(long, value_enum, default_value = "echo")]
    pub pattern: PatternArg,
    #[arg(long, short = 'c', default_value_t = 1)]
    pub conns: u32,
    #[arg(long, short = 's', default_value_t = 64)]
    pub size: u32,
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Messages per second over all connections (0: unpaced).
    #[arg(long, short = 'r', default_value_t = 0)]
    pub rate: u32,
    /// TCP: connect from WSK stream sockets (WskSocket + WskBind + WskConnect) instead of
    /// WskSocketConnect's connection sockets.
    #[arg(long)]
    pub stream: bool,
    /// UDP: sockets (distinct source ports, so RSS spreads them over a NIC's receive queues)
    /// the job's send contexts are spread over, 1-64; default: the driver's (4, at most one per
    /// send context, `--conns`).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(control::ioctl::MAX_LOAD_FLOWS)))]
    pub flows: Option<u32>,
}

fn parse_service(s: &str) -> Result<Service, String> {
    Service::parse_entry(s)
        .ok_or_else(|| format!("`{s}` is not MODE,PROTO,PORT,ADDRESS (e.g. echo,udp,7007,::1)"))
}

fn parse_cidr(s: &str) -> Result<Cidr, String> {
    Cidr::parse(s).ok_or_else(|| format!("`{s}` is not ADDRESS/PREFIX with no host bits set"))
}
