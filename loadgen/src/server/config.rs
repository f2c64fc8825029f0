//! `echoload serve` options and the resolved configuration.

use std::net::{IpAddr, Ipv4Addr};

/// Command-line options of `echoload serve`.
#[derive(clap::Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address to bind every service to (IPv4 or IPv6).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// Echo port (TCP and UDP); 0 = OS-assigned.
    #[arg(long, default_value_t = 7007)]
    pub echo_port: u16,
    /// Discard port (TCP and UDP).
    #[arg(long, default_value_t = 7009)]
    pub discard_port: u16,
    /// Source port (TCP stream; UDP answers each datagram with one of the same length).
    #[arg(long, default_value_t = 7019)]
    pub source_port: u16,
    /// sockperf-compatible service port (TCP and UDP).
    #[arg(long, default_value_t = 11111)]
    pub sockperf_port: u16,
    /// Services to leave off, comma-separated: echo,discard,source,sockperf.
    #[arg(long, value_delimiter = ',', value_parser = ["echo", "discard", "source", "sockperf"])]
    pub disable: Vec<String>,
    /// Worker threads, each with its own event loop and sockets (0 = one per CPU).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Maximum open TCP connections; more are accepted and reset at once.
    #[arg(long, default_value_t = 1024)]
    pub max_conns: usize,
    /// Print the counters every this many seconds (0 = only at exit).
    #[arg(long, default_value_t = 0.0)]
    pub stats_every: f64,
}

impl Default for ServeArgs {
    /// The command line's defaults.
    fn default() -> Self {
        ServeArgs {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            echo_port: 7007,
            discard_port: 7009,
            source_port: 7019,
            sockperf_port: 11111,
            disable: Vec::new(),
            threads: 0,
            max_conns: 1024,
            stats_every: 0.0,
        }
    }
}

impl ServeArgs {
    /// Every service on `ip` with OS-assigned ports and one worker (tests, embedded runs).
    pub fn ephemeral(ip: IpAddr) -> Self {
        ServeArgs {
            bind: ip,
            echo_port: 0,
            discard_port: 0,
            source_port: 0,
            sockperf_port: 0,
            threads: 1,
            ..ServeArgs::default()
        }
    }
}

/// A resolved server configuration. `None` for a port turns that service off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeConfig {
    pub bind: IpAddr,
    pub echo_port: Option<u16>,
    pub discard_port: Option<u16>,
    pub source_port: Option<u16>,
    pub sockperf_port: Option<u16>,
    /// Worker threads (at least 1).
    pub threads: usize,
    pub max_conns: usize,
}

impl Default for ServeConfig {
    /// The driver's defaults: 127.0.0.1, echo 7007, discard 7009, source 7019, sockperf 11111.
    fn default() -> Self {
        ServeConfig {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            echo_port: Some(7007),
            discard_port: Some(7009),
            source_port: Some(7019),
            sockperf_port: Some(11111),
            threads: default_threads(),
            max_conns: 1024,
        }
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

impl ServeConfig {
    /// Every service on 127.0.0.1 with OS-assigned ports and one worker: for tests and the
    /// embedded default run, which must never clash with anything already listening.
    pub fn loopback_ephemeral() -> Self {
        ServeConfig {
            echo_port: Some(0),
            discard_port: Some(0),
            source_port: Some(0),
            sockperf_port: Some(0),
            threads: 1,
            ..ServeConfig::default()
        }
    }

    /// The port of a service, if it is on.
    pub fn port(&self, svc: super::Service) -> Option<u16> {
        match svc {
            super::Service::Echo => self.echo_port,
            super::Service::Discard => self.discard_port,
            super::Service::Source => self.source_port,
            super::Service::Sockperf => self.sockperf_port,
        }
    }

    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.threads >= 1, "threads must be at least 1");
        anyhow::ensure!(self.threads <= 1024, "threads must be at most 1024");
        let mut fixed: Vec<u16> = super::Service::ALL
            .iter()
            .filter_map(|s| self.port(*s))
            .filter(|p| *p != 0)
            .collect();
        let n = fixed.len();
        fixed.sort_unstable();
        fixed.dedup();
        anyhow::ensure!(fixed.len() == n, "two services share a port");
        anyhow::ensure!(
            super::Service::ALL.iter().any(|s| self.port(*s).is_some()),
            "every service is disabled"
        );
        Ok(())
    }
}

impl From<ServeArgs> for ServeConfig {
    fn from(a: ServeArgs) -> Self {
        ServeConfig::from(&a)
    }
}

impl From<&ServeConfig> for ServeConfig {
    fn from(c: &ServeConfig) -> Self {
        c.clone()
    }
}

impl From<&ServeArgs> for ServeConfig {
    fn from(a: &ServeArgs) -> Self {
        let on = |name: &str, port: u16| {
            if a.disable
                .iter()
                .any(|d| d.trim().eq_ignore_ascii_case(name))
            {
                None
            } else {
                Some(port)
            }
        };
        ServeConfig {
            bind: a.bind,
            echo_port: on("echo", a.echo_port),
            discard_port: on("discard", a.discard_port),
            source_port: on("source", a.source_port),
            sockperf_port: on("sockperf", a.sockperf_port),
            threads: if a.threads == 0 {
                default_threads()
            } else {
                a.threads
            },
            max_conns: a.max_conns,
        }
    }
}
