//! The reference server's resolved configuration (its command line is in `crate::cli::serve`).

use std::net::{IpAddr, Ipv4Addr};

use control::protocol::Mode;

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
    /// The UDP reflection and loop guard (the driver's rules and defaults).
    pub guard: super::GuardConfig,
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
            guard: super::GuardConfig::default(),
        }
    }
}

pub(crate) fn default_threads() -> usize {
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

    /// The bound port of every service (TCP and UDP share one number per service): the
    /// guard's own-port rule.
    pub(crate) fn own_ports(
        bound: &[(super::Mode, super::Proto, std::net::SocketAddr)],
    ) -> Vec<u16> {
        let mut v: Vec<u16> = bound.iter().map(|(_, _, a)| a.port()).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The port of a service, if it is on.
    pub fn port(&self, svc: Mode) -> Option<u16> {
        match svc {
            Mode::Echo => self.echo_port,
            Mode::Discard => self.discard_port,
            Mode::Source => self.source_port,
            Mode::Sockperf => self.sockperf_port,
        }
    }

    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.threads >= 1, "threads must be at least 1");
        anyhow::ensure!(self.threads <= 1024, "threads must be at most 1024");
        let mut fixed: Vec<u16> = Mode::ALL
            .iter()
            .filter_map(|s| self.port(*s))
            .filter(|p| *p != 0)
            .collect();
        let n = fixed.len();
        fixed.sort_unstable();
        fixed.dedup();
        anyhow::ensure!(fixed.len() == n, "two services share a port");
        anyhow::ensure!(
            Mode::ALL.iter().any(|s| self.port(*s).is_some()),
            "every service is disabled"
        );
        Ok(())
    }
}

impl From<&ServeConfig> for ServeConfig {
    fn from(c: &ServeConfig) -> Self {
        c.clone()
    }
}
