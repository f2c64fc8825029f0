//! `echoload serve` options, and how they become a [`ServeConfig`].

use std::net::{IpAddr, Ipv4Addr};

use crate::server::ServeConfig;

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
    /// Every this many seconds print (stderr) the rates since the last line, stamped with the
    /// wall-clock time (RFC 3339 UTC, milliseconds) and the seconds since the server started,
    /// then the totals (0 = only the totals, at exit).
    #[arg(long, default_value_t = 0.0)]
    pub stats_every: f64,
    /// Serve the counters in the Prometheus text format on http://ADDR/metrics: totals, and
    /// per service and protocol (echoload_server_service_*{service,proto,port}), TCP echo's
    /// echoload-wire message counts included.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// UDP guard: drop datagrams sent to a broadcast or multicast address (driver:
    /// UdpDropBroadcast). Needs the destination, which only a unicast bind guarantees here.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub udp_drop_broadcast: bool,
    /// UDP guard: drop datagrams from source ports 0-1023 (UdpDropPrivilegedSourcePorts).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub udp_drop_privileged_source_ports: bool,
    /// UDP guard: drop datagrams from the port of any of our services, TCP or UDP
    /// (UdpDropServiceSourcePorts).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub udp_drop_service_source_ports: bool,
    /// UDP guard: drop datagrams from unspecified, multicast or broadcast source addresses
    /// (UdpDropSpecialSources).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub udp_drop_special_sources: bool,
    /// UDP datagrams per second answered per source address, burst as large; 0 = no limit
    /// (UdpRateLimitPerSource).
    #[arg(long, default_value_t = control::config::UDP_RATE_PER_SOURCE.default)]
    pub udp_rate_limit_per_source: u32,
    /// Loopback sources are not rate limited (UdpRateLimitExemptLoopback).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub udp_rate_limit_exempt_loopback: bool,
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
            metrics: None,
            udp_drop_broadcast: true,
            udp_drop_privileged_source_ports: true,
            udp_drop_service_source_ports: true,
            udp_drop_special_sources: true,
            udp_rate_limit_per_source: control::config::UDP_RATE_PER_SOURCE.default,
            udp_rate_limit_exempt_loopback: true,
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

impl From<ServeArgs> for ServeConfig {
    fn from(a: ServeArgs) -> Self {
        ServeConfig::from(&a)
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
                crate::server::default_threads()
            } else {
                a.threads
            },
            max_conns: a.max_conns,
            guard: crate::server::GuardConfig {
                rules: control::config::UdpGuard {
                    drop_broadcast: a.udp_drop_broadcast,
                    drop_privileged_ports: a.udp_drop_privileged_source_ports,
                    drop_service_ports: a.udp_drop_service_source_ports,
                    drop_special_sources: a.udp_drop_special_sources,
                    rate_exempt_loopback: a.udp_rate_limit_exempt_loopback,
                },
                rate_per_source: a.udp_rate_limit_per_source,
            },
        }
    }
}
