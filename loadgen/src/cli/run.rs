//! `echoload run` options, and how they become a [`RunConfig`].

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, ValueEnum};

use super::{parse_duration, resolve, ProtoArg};
use crate::client::{Mode, Proto, RunConfig, Wire};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeArg {
    /// Closed loop: one outstanding message per connection; latency.
    Pingpong,
    /// Open loop at --rate; latency from the intended send time.
    Rate,
    /// As fast as the in-flight window allows; every echoed byte verified.
    Stream,
    /// Send only (discard server).
    Sink,
    /// Receive only (source server; TCP stream or UDP request/reply).
    Source,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum WireArg {
    Echoload,
    Sockperf,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Server address: HOST:PORT, [v6addr]:PORT or a host name.
    #[arg(long, short = 't')]
    pub target: String,
    /// Transport.
    #[arg(long, value_enum, default_value = "tcp")]
    pub proto: ProtoArg,
    /// Traffic pattern.
    #[arg(long, short = 'm', value_enum, default_value = "pingpong")]
    pub mode: ModeArg,
    /// TCP connections or UDP flows (one socket each).
    #[arg(long, short = 'c', default_value_t = 1)]
    pub conns: usize,
    /// Worker threads (each runs one event loop).
    #[arg(long, short = 'T', default_value_t = 1)]
    pub threads: usize,
    /// Message size in bytes, header included (min 32 on the echoload wire, 14 on sockperf's;
    /// max 65507 for UDP).
    #[arg(long, short = 's', default_value_t = 64)]
    pub size: usize,
    /// Total messages per second over all connections (required by rate mode; paces
    /// sink/stream when given).
    #[arg(long, short = 'r')]
    pub rate: Option<f64>,
    /// Measured time, e.g. 5s, 500ms, 1m.
    #[arg(long, short = 'd', default_value = "5s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured time before the measurement.
    #[arg(long, short = 'w', default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Write the machine-readable result here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Message format: echoload's own or sockperf's (to drive a real `sockperf server`).
    #[arg(long, value_enum, default_value = "echoload")]
    pub wire: WireArg,
    /// sockperf wire in rate mode: every Nth message asks for a reply.
    #[arg(long, default_value_t = 1)]
    pub reply_every: u64,
    /// Resolve the target to an IPv6 address.
    #[arg(long, short = '6')]
    pub ipv6: bool,
    /// Disable UDP GSO (UDP_SEGMENT) even where available.
    #[arg(long)]
    pub no_gso: bool,
    /// Datagrams per GSO send.
    #[arg(long, default_value_t = 64)]
    pub gso_segments: usize,
    /// Messages per sendmmsg/recvmmsg call.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Spin instead of sleeping (a full core per thread): a one-flow UDP ping-pong spins on a
    /// non-blocking receive, everything else polls its event loop without waiting.
    /// On a small VM spinning can be slower than blocking; measure both.
    #[arg(long)]
    pub busy_poll: bool,
    /// UDP: reply timeout for ping-pong, and drain time at the end.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub udp_timeout: Duration,
    /// Stream mode: bytes in flight per connection.
    #[arg(long, default_value_t = 1 << 20)]
    pub window: usize,
    /// Source mode: do not check the server's byte pattern.
    #[arg(long)]
    pub no_verify: bool,
    /// UDP loss/duplicates do not make the exit status non-zero (corruption still does).
    #[arg(long)]
    pub allow_loss: bool,
    /// Print the JSON result on stdout instead of the table.
    #[arg(long)]
    pub json_stdout: bool,
    /// No progress bar.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    #[command(flatten)]
    pub multi: super::multi::MultiArgs,
}

impl RunArgs {
    pub fn to_config(&self) -> Result<RunConfig> {
        let mut cfg = RunConfig {
            target: resolve(&self.target, self.ipv6)?,
            proto: match self.proto {
                ProtoArg::Tcp => Proto::Tcp,
                ProtoArg::Udp => Proto::Udp,
            },
            mode: match self.mode {
                ModeArg::Pingpong => Mode::Pingpong,
                ModeArg::Rate => Mode::Rate,
                ModeArg::Stream => Mode::Stream,
                ModeArg::Sink => Mode::Sink,
                ModeArg::Source => Mode::Source,
            },
            wire: match self.wire {
                WireArg::Echoload => Wire::Echoload,
                WireArg::Sockperf => Wire::Sockperf,
            },
            conns: self.conns,
            threads: self.threads,
            size: self.size,
            rate: self.rate,
            duration: self.duration,
            warmup: self.warmup,
            reply_every: self.reply_every,
            gso: !self.no_gso,
            gso_segments: self.gso_segments,
            batch: self.batch,
            busy_poll: self.busy_poll,
            udp_timeout: self.udp_timeout,
            window_bytes: self.window,
            verify_source: !self.no_verify,
            progress: !self.quiet,
            ..RunConfig::default()
        };
        self.multi.apply(&mut cfg)?;
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Cmd};
    use clap::Parser;

    #[test]
    fn cli_contract_parses() {
        let c = Cli::try_parse_from([
            "echoload",
            "run",
            "--target",
            "127.0.0.1:7007",
            "--proto",
            "udp",
            "--mode",
            "rate",
            "--conns",
            "2",
            "--threads",
            "2",
            "--size",
            "100",
            "--rate",
            "1000",
            "--duration",
            "1s",
            "--warmup",
            "0s",
            "--json",
            "/tmp/x.json",
        ])
        .unwrap();
        let Some(Cmd::Run(r)) = c.cmd else {
            panic!("not run")
        };
        let cfg = r.to_config().unwrap();
        assert_eq!(
            (cfg.proto, cfg.mode, cfg.conns, cfg.size),
            (Proto::Udp, Mode::Rate, 2, 100)
        );
        let big = Cli::try_parse_from([
            "echoload",
            "run",
            "-t",
            "127.0.0.1:7",
            "--proto",
            "udp",
            "--size",
            "65508",
        ])
        .unwrap();
        let Some(Cmd::Run(r)) = big.cmd else {
            panic!("not run")
        };
        let e = r.to_config().unwrap_err().to_string();
        assert!(e.contains("65507"), "{e}");
    }
}
