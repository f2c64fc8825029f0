//! Every command-line definition of `echoload` (a contract scripts rely on: keep flag names
//! stable): the top level and `merge`/`demo` here, `run`, `serve` and `driver` in their own files.

pub mod driver;
pub mod multi;
pub mod run;
pub mod serve;
pub mod units;

pub use driver::DriverArgs;
pub use run::RunArgs;
pub use serve::ServeArgs;
pub use units::parse_duration;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "echoload",
    version,
    about = "TCP/UDP echo load generator and reference server.\n\
With no subcommand: starts the reference server on loopback and runs a short mixed test against it."
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run a load test against a server.
    Run(Box<RunArgs>),
    /// Run the reference server (echo, discard, source, sockperf services).
    Serve(ServeArgs),
    /// Combine JSON results (e.g. of several machines) and print the merged report.
    Merge(MergeArgs),
    /// Draw results: latency by percentile, throughput and p99 over time (SVG or HTML).
    Plot(PlotArgs),
    /// Compare two JSON results (A = before, B = after); exit 1 when B is worse than A by
    /// more than the tolerance.
    Diff(DiffArgs),
    /// Talk to the wskecho driver's control device (or wskecho-sim's control socket).
    Driver(DriverArgs),
    /// The embedded demo (same as no subcommand).
    Demo(DemoArgs),
}

/// Transport (run and driver load jobs).
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ProtoArg {
    Tcp,
    Udp,
}

#[derive(Args, Debug, Clone)]
pub struct MergeArgs {
    /// JSON files written by `echoload run --json`, or `-` to read a stream of JSON documents
    /// from stdin (e.g. `kubectl logs`), skipping lines that are not part of one.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Also write the merged result here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Exit non-zero when the merge warns (skewed windows, missing or duplicate agents).
    #[arg(long)]
    pub strict: bool,
}

#[derive(Args, Debug, Clone)]
pub struct PlotArgs {
    /// JSON results (each one curve), or `-` for a stream of documents on stdin.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Output file: .svg, or .html for a page with the picture and a summary table.
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    /// Title above the pictures.
    #[arg(long, default_value = "echoload results")]
    pub title: String,
    /// The files are `NAME RATIO` lines (bench/compare's output): draw them as bars.
    #[arg(long)]
    pub bars: bool,
}

#[derive(Args, Debug, Clone)]
pub struct DiffArgs {
    /// The reference result (`echoload run --json`).
    pub a: PathBuf,
    /// The result compared with it.
    pub b: PathBuf,
    /// How much worse a figure may be before B counts as worse, in percent (5, 2.5%).
    #[arg(long, default_value = "5", value_parser = crate::results::diff::parse_tolerance)]
    pub tolerance: f64,
    /// Print the comparison as JSON.
    #[arg(long, short = 'J')]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Measured time of each test of the demo.
    #[arg(long, default_value = "1.5s", value_parser = parse_duration)]
    pub each: Duration,
    /// Also write every result as JSON lines into this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl Default for DemoArgs {
    fn default() -> Self {
        DemoArgs {
            each: Duration::from_millis(1500),
            json: None,
        }
    }
}

/// Resolves HOST:PORT (IPv6 in brackets), preferring the requested family.
pub fn resolve(target: &str, ipv6: bool) -> Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = target
        .to_socket_addrs()
        .with_context(|| {
            format!("cannot resolve target {target:?} (expected HOST:PORT or [IPv6]:PORT)")
        })?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv6() == ipv6)
        .or_else(|| if ipv6 { None } else { addrs.first() })
        .copied()
        .ok_or_else(|| {
            anyhow!(
                "target {target:?} has no {} address",
                if ipv6 { "IPv6" } else { "IPv4" }
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            resolve("127.0.0.1:7", false).unwrap(),
            "127.0.0.1:7".parse().unwrap()
        );
        assert_eq!(
            resolve("[::1]:7", false).unwrap(),
            "[::1]:7".parse().unwrap()
        );
        assert!(resolve("127.0.0.1:7", true).is_err());
        assert!(resolve("nonsense", false).is_err());
    }
}
