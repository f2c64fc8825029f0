//! `echoload run` options, and how they become a [`RunConfig`]. Only the arguments: the run
//! itself is `crate::session`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};

use super::units::{parse_bitrate, parse_duration, parse_rate, parse_size};
use super::{resolve, ProtoArg};
use crate::client::{Agent, Mode, Proto, RunConfig, SockOpts, Wire};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeArg {
    /// Closed loop: one outstanding message per connection; latency.
    Pingpong,
    /// Open loop at --rate; latency from the intended send time, and as wrk2 the
    /// uncorrected latency (from the actual send time) and the send lag.
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

/// `echoload run`. Short flags follow iperf3 (`-c HOST -p PORT -t TIME -l LEN -u -P N -b RATE
/// -R -i TIME -J -w SIZE -O TIME`), and none means something else than there (so `-s`, iperf3's
/// server, and `-d`, its debug, are not taken); every long flag of earlier versions still works.
#[derive(Args, Debug, Clone)]
#[command(group(clap::ArgGroup::new("where").args(["target_pos", "target", "client"])))]
pub struct RunArgs {
    /// Server: HOST:PORT, [IPv6]:PORT, or HOST alone (port from -p, else the mode's default
    /// service port: echo 7007, discard 7009 for sink, source 7019, sockperf 11111).
    #[arg(value_name = "TARGET")]
    pub target_pos: Option<String>,
    /// Same as TARGET.
    #[arg(long, value_name = "TARGET")]
    pub target: Option<String>,
    /// Same as TARGET (iperf3's `-c HOST`).
    #[arg(short = 'c', long = "client", value_name = "HOST")]
    pub client: Option<String>,
    /// Port, when the target names none.
    #[arg(short = 'p', long)]
    pub port: Option<u16>,
    /// Transport.
    #[arg(long, value_enum, default_value = "tcp")]
    pub proto: ProtoArg,
    /// UDP (same as --proto udp).
    #[arg(short = 'u', long = "udp")]
    pub udp: bool,
    /// Traffic pattern.
    #[arg(long, short = 'm', value_enum, default_value = "pingpong")]
    pub mode: ModeArg,
    /// Reverse: the server sends, the client receives and verifies (same as --mode source).
    #[arg(short = 'R', long)]
    pub reverse: bool,
    /// Both directions at once, as two runs side by side: a sink into the discard service and
    /// a source from the source service of HOST (ports SEND,RECV; default 7009,7019).
    #[arg(long, value_name = "SEND,RECV", num_args = 0..=1, default_missing_value = "7009,7019",
          value_parser = parse_port_pair, conflicts_with_all = ["reverse", "port"])]
    pub bidir: Option<(u16, u16)>,
    /// TCP connections or UDP flows, one socket each (iperf3's -P).
    #[arg(long, short = 'P', visible_alias = "parallel", default_value_t = 1)]
    pub conns: usize,
    /// Worker threads (each runs one event loop).
    #[arg(long, short = 'T', default_value_t = 1)]
    pub threads: usize,
    /// Message size, header included: 64, 1500, 1KiB, 64K (min 32 on the echoload wire, 14 on
    /// sockperf's; max 65507 for UDP).
    #[arg(long, short = 'l', alias = "len", default_value = "64",
          value_parser = parse_size)]
    pub size: usize,
    /// Total messages per second over all connections: 5000, 10k, 1.5M (required by rate
    /// mode; paces sink/stream when given).
    #[arg(long, short = 'r', value_parser = parse_rate, conflicts_with = "bitrate")]
    pub rate: Option<f64>,
    /// Target bit rate over all connections, as iperf3's -b: 100M, 10G (becomes --rate
    /// bitrate / (8 × size)); 0 means unlimited, as in iperf3.
    #[arg(long, short = 'b', value_parser = parse_bitrate_or_unlimited)]
    pub bitrate: Option<f64>,
    /// Measured time: 5, 1.5s, 500ms, 2m, 1h.
    #[arg(long, short = 't', default_value = "5s",
          value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured time before the measurement (iperf3's -O omit).
    #[arg(long, short = 'O', alias = "omit", default_value = "1s",
          value_parser = parse_duration)]
    pub warmup: Duration,
    /// Print one line per interval of this length during the run (the JSON has them always,
    /// at 1 s when not given). UDP runs that receive add two columns, as iperf3 does: loss %
    /// (a loss counts in the interval where a later reply shows the gap; the ones no reply
    /// follows, at the end) and RFC 3550 interarrival jitter in µs (of the round trips: the
    /// smoothed difference between consecutive ones, J += (|D| - J)/16). TCP runs add the
    /// segments retransmitted (Linux TCP_INFO, summed over the connections; "–" on Windows).
    #[arg(long, short = 'i', value_parser = parse_duration)]
    pub interval: Option<Duration>,
    /// Write the machine-readable result here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Print the JSON result on stdout instead of the table (iperf3's -J).
    #[arg(long, short = 'J')]
    pub json_stdout: bool,
    /// Free text stored in the result (e.g. to group the agents of one run).
    #[arg(long, default_value = "")]
    pub label: String,
    /// This agent's place in a distributed run, INDEX/COUNT (e.g. 0/3; stored as `agent`).
    #[arg(long, value_name = "INDEX/COUNT", default_value = "0/1", value_parser = parse_agent)]
    pub agent: Agent,
    /// Message format: echoload's own or sockperf's (to drive a real `sockperf server`).
    #[arg(long, value_enum, default_value = "echoload")]
    pub wire: WireArg,
    /// sockperf wire in rate mode: every Nth message asks for a reply.
    #[arg(long, default_value_t = 1)]
    pub reply_every: u64,
    /// Resolve the target to an IPv6 address.
    #[arg(long, short = '6')]
    pub ipv6: bool,
    /// Local address to send from (iperf3's -B).
    #[arg(long, short = 'B', value_name = "ADDR")]
    pub bind: Option<IpAddr>,
    /// Socket send and receive buffer size (iperf3's -w).
    #[arg(long, short = 'w', value_parser = parse_size)]
    pub socket_buffer: Option<usize>,
    /// Socket send buffer size (overrides --socket-buffer).
    #[arg(long, value_parser = parse_size)]
    pub sndbuf: Option<usize>,
    /// Socket receive buffer size (overrides --socket-buffer).
    #[arg(long, value_parser = parse_size)]
    pub rcvbuf: Option<usize>,
    /// TCP: leave Nagle's algorithm on (TCP_NODELAY off; by default it is set).
    #[arg(long)]
    pub nagle: bool,
    /// IP TOS byte (e.g. 0x10, 184) of every packet sent (iperf3's -S).
    #[arg(long, short = 'S', value_parser = parse_tos, conflicts_with = "dscp")]
    pub tos: Option<u8>,
    /// DSCP code point 0..63 (e.g. 46 for EF; the TOS byte is DSCP << 2).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..64))]
    pub dscp: Option<u8>,
    /// Pin worker thread N to the Nth CPU of this list, e.g. 0,1 (iperf3's -A).
    #[arg(long, short = 'A', value_delimiter = ',', value_name = "CPUS")]
    pub affinity: Vec<usize>,
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
    /// Single-flow UDP ping-pong (and source): after each send, poll a non-blocking receive
    /// this long before blocking in the receive (0: block at once). A reply that is back
    /// within it is taken without waking the client: that wake-up is the client's, not the
    /// network's (on an idle VM about two thirds of a loopback round trip), and latency tools
    /// poll before they sleep for that reason. When 8 spins in a row miss (a longer round
    /// trip, a busy machine) the next 256 rounds block at once, then one probes again: a slow
    /// network costs a tiny fraction of a core. A spin that catches can still be slower (on a
    /// busy machine a blocked client lets the server run on its own CPU): at the start and
    /// every 16384 rounds 64 round trips spinning are timed against 64 blocking and the faster
    /// is kept. Linux only (elsewhere as 0). --busy-poll, a spin without limit, wins over it.
    #[arg(long, default_value = "50us", value_parser = parse_duration)]
    pub spin: Duration,
    /// UDP: reply timeout for ping-pong, and drain time at the end.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    pub udp_timeout: Duration,
    /// Stream mode: bytes in flight per connection (64K, 1M, ...). Default: 1 MiB for TCP;
    /// for UDP 128 KiB over all flows, at most 64 KiB each, so that the bursts fit a loopback
    /// socket buffer (beyond it datagrams are dropped before they are ever echoed).
    #[arg(long, value_parser = parse_size)]
    pub window: Option<usize>,
    /// Source mode: do not check the server's byte pattern.
    #[arg(long)]
    pub no_verify: bool,
    /// UDP loss/duplicates do not make the exit status non-zero (corruption still does).
    #[arg(long)]
    pub allow_loss: bool,
    /// Treat a loopback target as a remote one where that changes advice: the UDP guard hint
    /// (servers rate limit non-loopback sources only). For tests against a server run with
    /// --udp-rate-limit-exempt-loopback false.
    #[arg(long)]
    pub assume_remote: bool,
    /// Show latency as half the round trip, as sockperf prints by default (display only: the
    /// JSON keeps full round trips; the send lag and the jitter are not halved).
    #[arg(long)]
    pub half_rtt: bool,
    /// No progress bar.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    #[command(flatten)]
    pub multi: super::multi::MultiArgs,
}

/// UDP stream mode's default bytes in flight over all flows: what a Linux socket buffer of
/// the default size (rmem_default 208 KiB) takes without dropping.
const UDP_WINDOW_TOTAL: usize = 128 << 10;

/// `-b`: a bit rate, or 0 for unlimited (iperf3's meaning).
fn parse_bitrate_or_unlimited(s: &str) -> Result<f64, String> {
    if s.trim().parse::<f64>() == Ok(0.0) {
        return Ok(0.0);
    }
    parse_bitrate(s)
}

/// `INDEX/COUNT` with INDEX < COUNT.
fn parse_agent(s: &str) -> Result<Agent, String> {
    let bad = || format!("`{s}` is not INDEX/COUNT with INDEX < COUNT (e.g. 0/3)");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let index: u32 = i.trim().parse().map_err(|_| bad())?;
    let count: u32 = n.trim().parse().map_err(|_| bad())?;
    if index >= count {
        return Err(bad());
    }
    Ok(Agent { index, count })
}

/// `SEND,RECV` ports.
fn parse_port_pair(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("`{s}` is not SEND_PORT,RECV_PORT (e.g. 7009,7019)");
    let (a, b) = s.split_once(',').ok_or_else(bad)?;
    let p = |x: &str| {
        x.trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(bad)
    };
    Ok((p(a)?, p(b)?))
}

/// A TOS byte: decimal or 0x hex.
fn parse_tos(s: &str) -> Result<u8, String> {
    let t = s.trim();
    let v = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u8::from_str_radix(h, 16),
        None => t.parse::<u8>(),
    };
    v.map_err(|_| format!("`{s}` is not a TOS byte (0..255 or 0x00..0xff)"))
}

/// The default port of the service a mode talks to (the driver's and `echoload serve`'s).
fn default_port(mode: Mode, wire: Wire) -> u16 {
    match (wire, mode) {
        (Wire::Sockperf, _) => 11_111,
        (_, Mode::Sink) => 7009,
        (_, Mode::Source) => 7019,
        _ => 7007,
    }
}

/// `HOST:PORT` from a target that may lack the port.
fn with_port(target: &str, port: Option<u16>, default: u16) -> Result<String> {
    let has_port = if let Some(rest) = target.strip_prefix('[') {
        rest.contains("]:")
    } else {
        // One colon: host:port; several: a bare IPv6 address.
        target.matches(':').count() == 1
    };
    match (has_port, port) {
        (true, Some(_)) => bail!("the target {target:?} names a port already; drop -p/--port"),
        (true, None) => Ok(target.to_string()),
        (false, p) => {
            let p = p.unwrap_or(default);
            Ok(if target.contains(':') && !target.starts_with('[') {
                format!("[{target}]:{p}")
            } else {
                format!("{target}:{p}")
            })
        }
    }
}

impl RunArgs {
    /// Values no run can use, refused before any traffic.
    fn check_values(&self) -> Result<()> {
        if self.duration.is_zero() {
            bail!("-t/--duration must be longer than 0 (it is the measured time)");
        }
        if self.interval.is_some_and(|i| i.is_zero()) {
            bail!("-i/--interval must be longer than 0");
        }
        if self.window == Some(0) {
            bail!("--window 0 lets nothing be in flight: give the bytes in flight per connection (e.g. 64K)");
        }
        if !self.affinity.is_empty() {
            if let Some(cpus) = crate::client::allowed_cpus() {
                if let Some(bad) = self.affinity.iter().find(|c| !cpus.contains(c)) {
                    bail!(
                        "-A/--affinity {bad}: this process may run on CPU{} {} only",
                        if cpus.len() == 1 { "" } else { "s" },
                        cpus.iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(",")
                    );
                }
            }
        }
        Ok(())
    }

    /// With `--bidir`: the sending run (sink into SEND) and the receiving run (source from
    /// RECV); None without it.
    pub fn to_bidir_configs(&self) -> Result<Option<(RunConfig, RunConfig)>> {
        let Some((send, recv)) = self.bidir else {
            return Ok(None);
        };
        if !matches!(self.mode, ModeArg::Pingpong) {
            bail!("--bidir runs a sink and a source at once; it takes no --mode");
        }
        let host = self
            .target_pos
            .as_deref()
            .or(self.target.as_deref())
            .or(self.client.as_deref())
            .unwrap_or_default();
        if with_port(host, None, 1).is_ok_and(|t| t == host) {
            bail!("--bidir takes HOST alone (the ports are --bidir SEND,RECV), not {host:?}");
        }
        let one = |mode: ModeArg, port: u16| {
            let mut a = self.clone();
            a.bidir = None;
            a.mode = mode;
            a.port = Some(port);
            if matches!(mode, ModeArg::Source) {
                // The server paces a source: the rate is the sending run's.
                a.rate = None;
                a.bitrate = None;
            }
            a.to_config()
        };
        Ok(Some((
            one(ModeArg::Sink, send)?,
            one(ModeArg::Source, recv)?,
        )))
    }

    pub fn to_config(&self) -> Result<RunConfig> {
        let Some(target) = self
            .target_pos
            .as_deref()
            .or(self.target.as_deref())
            .or(self.client.as_deref())
        else {
            bail!("no target: give HOST[:PORT] (or -c HOST, or --target HOST:PORT)");
        };
        let proto = match (self.udp, self.proto) {
            (true, _) | (false, ProtoArg::Udp) => Proto::Udp,
            (false, ProtoArg::Tcp) => Proto::Tcp,
        };
        let mode = match (self.reverse, self.mode) {
            (true, ModeArg::Pingpong | ModeArg::Source) => Mode::Source,
            (true, m) => {
                bail!("-R/--reverse is --mode source; it cannot be combined with --mode {m:?}")
            }
            (false, m) => match m {
                ModeArg::Pingpong => Mode::Pingpong,
                ModeArg::Rate => Mode::Rate,
                ModeArg::Stream => Mode::Stream,
                ModeArg::Sink => Mode::Sink,
                ModeArg::Source => Mode::Source,
            },
        };
        let wire = match self.wire {
            WireArg::Echoload => Wire::Echoload,
            WireArg::Sockperf => Wire::Sockperf,
        };
        if self.port == Some(0) {
            bail!("-p/--port 0 names no server port: give the port the server listens on");
        }
        let target = with_port(target, self.port, default_port(mode, wire))?;
        let rate = match self.bitrate {
            // -b 0: unlimited, as in iperf3.
            Some(0.0) => None,
            Some(b) => Some(b / (8.0 * self.size.max(1) as f64)),
            None => self.rate,
        };
        self.check_values()?;
        let target = resolve(&target, self.ipv6)?;
        if let Some(b) = self.bind {
            if b.is_ipv6() != target.is_ipv6() {
                bail!(
                    "-B/--bind {b} is an {} address but the target {target} is {}: the local \
                     address must be of the target's family",
                    if b.is_ipv6() { "IPv6" } else { "IPv4" },
                    if target.is_ipv6() { "IPv6" } else { "IPv4" }
                );
            }
        }
        let mut cfg = RunConfig {
            target,
            proto,
            mode,
            wire,
            conns: self.conns,
            threads: self.threads,
            size: self.size,
            rate,
            duration: self.duration,
            warmup: self.warmup,
            reply_every: self.reply_every,
            gso: !self.no_gso,
            gso_segments: self.gso_segments,
            batch: self.batch,
            busy_poll: self.busy_poll,
            spin: self.spin,
            udp_timeout: self.udp_timeout,
            window_bytes: self.window.unwrap_or(match proto {
                Proto::Tcp => 1 << 20,
                Proto::Udp => (UDP_WINDOW_TOTAL / self.conns.max(1)).clamp(self.size, 64 << 10),
            }),
            verify_source: !self.no_verify,
            progress: !self.quiet,
            interval: self.interval.unwrap_or(Duration::from_secs(1)),
            label: self.label.clone(),
            agent: self.agent,
            sock: SockOpts {
                send_buffer: self.sndbuf.or(self.socket_buffer),
                recv_buffer: self.rcvbuf.or(self.socket_buffer),
                nodelay: !self.nagle,
                tos: self.tos.or(self.dscp.map(|d| d << 2)),
                bind: self.bind,
            },
            cpus: self.affinity.clone(),
            assume_remote: self.assume_remote,
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
            "-c",
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

    fn parse(args: &[&str]) -> Result<RunConfig> {
        let c = Cli::try_parse_from(["echoload", "run"].iter().chain(args))?;
        let Some(Cmd::Run(r)) = c.cmd else {
            panic!("not run")
        };
        r.to_config()
    }

    #[test]
    fn iperf3_flags() {
        let c = parse(&[
            "-c",
            "127.0.0.1",
            "-p",
            "9000",
            "-t",
            "10",
            "-l",
            "1KiB",
            "-u",
            "-P",
            "4",
            "-m",
            "sink",
            "-b",
            "100M",
            "-i",
            "0.5",
            "-J",
        ])
        .unwrap();
        assert_eq!(c.target, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.duration, Duration::from_secs(10));
        assert_eq!((c.size, c.proto, c.conns), (1024, Proto::Udp, 4));
        assert_eq!(c.rate, Some(100e6 / 8192.0));
        assert_eq!(c.interval, Duration::from_millis(500));
        // The target as a positional argument; the port from the mode when not given.
        let c = parse(&["127.0.0.1", "-R"]).unwrap();
        assert_eq!((c.mode, c.target.port()), (Mode::Source, 7019));
        assert_eq!(parse(&["::1", "-m", "sink"]).unwrap().target.port(), 7009);
        assert_eq!(parse(&["[::1]:5", "-T", "1"]).unwrap().target.port(), 5);
        // Every older long flag still works; -s and -d (iperf3's server and debug) are not
        // taken, -w is iperf3's socket buffer.
        let c = parse(&[
            "--target",
            "127.0.0.1:7",
            "--conns",
            "2",
            "--size",
            "100",
            "--duration",
            "2s",
            "--warmup",
            "0",
        ])
        .unwrap();
        assert_eq!(
            (c.conns, c.size, c.duration),
            (2, 100, Duration::from_secs(2))
        );
        assert!(parse(&["-c", "127.0.0.1:7", "-s", "128"]).is_err());
        assert!(parse(&["-c", "127.0.0.1:7", "-d", "1h"]).is_err());
        let c = parse(&["-c", "127.0.0.1:7", "-w", "256K", "-O", "2s"]).unwrap();
        assert_eq!(
            (c.sock.send_buffer, c.warmup),
            (Some(256 << 10), Duration::from_secs(2))
        );
        // Usage errors.
        assert!(parse(&["127.0.0.1:7", "--rate", "10k", "--bitrate", "1G"]).is_err());
        assert!(parse(&["127.0.0.1:7", "-p", "8"]).is_err());
        assert!(parse(&["127.0.0.1:7", "-R", "-m", "sink"]).is_err());
        assert!(parse(&["127.0.0.1:7", "--target", "127.0.0.1:8"]).is_err());
        assert!(parse(&[]).is_err());
        // Socket settings.
        let c = parse(&[
            "127.0.0.1:7",
            "--nagle",
            "--dscp",
            "46",
            "--socket-buffer",
            "256K",
            "--rcvbuf",
            "1M",
            "-B",
            "127.0.0.1",
            "-A",
            "0,1",
        ])
        .unwrap();
        assert!(!c.sock.nodelay);
        assert_eq!(c.sock.tos, Some(46 << 2));
        assert_eq!(
            (c.sock.send_buffer, c.sock.recv_buffer),
            (Some(256 << 10), Some(1 << 20))
        );
        assert_eq!(c.cpus, vec![0, 1]);
        assert_eq!(
            parse(&["127.0.0.1:7", "-S", "0x10"]).unwrap().sock.tos,
            Some(0x10)
        );
    }
}
