//! The result document of a run ([`RunReport`]: the JSON and the human table), the interval
//! lines printed while a run goes on, and merging several runs' reports. The writing side of
//! results/; doc.rs reads documents back.

use std::fmt::Write as _;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::client::{
    Agent, Errors, Interval, Measurement, Mode, Proto, RunConfig, SpinCounts, Stats, TcpInfoSum,
    ThreadCpu, Wire,
};

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub bits_per_s: f64,
    pub bytes_per_s: f64,
    pub msgs_per_s: f64,
}

/// Latency percentiles in microseconds (0 when nothing was measured).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub mean: f64,
    /// Standard deviation (absent from schema 1 documents: 0).
    #[serde(default)]
    pub stddev: f64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
}

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Latency::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            count: h.len(),
            mean: h.mean() / 1000.0,
            stddev: h.stdev() / 1000.0,
            min: us(h.min()),
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            p9999: us(h.value_at_quantile(0.9999)),
            max: us(h.max()),
        }
    }
}

/// A paced run that sent less than this share of its requested rate says so.
const SHORTFALL: f64 = 0.9;

/// The schema of the documents this version writes.
pub const SCHEMA_VERSION: u32 = 2;

fn schema_v1() -> u32 {
    1
}

/// One run's result; serialized as the `--json` document (schema 2; schema 1 documents, which
/// lack the metadata and `intervals`, still load, with those keys empty).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunReport {
    #[serde(default = "schema_v1")]
    pub schema_version: u32,
    /// Random per run: 32 lowercase hex characters.
    #[serde(default)]
    pub run_id: String,
    #[serde(default)]
    pub label: String,
    /// Wall-clock start of the measured window, RFC 3339 UTC with microseconds.
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub host: String,
    /// echoload's version.
    #[serde(default)]
    pub version: String,
    /// The run's full configuration, as used.
    #[serde(default)]
    pub config: serde_json::Value,
    /// Messages per second asked for (null: as fast as the mode goes).
    #[serde(default)]
    pub requested_rate: Option<f64>,
    #[serde(default)]
    pub agent: Agent,
    pub target: String,
    pub proto: Proto,
    pub mode: Mode,
    pub wire: Wire,
    pub conns: usize,
    pub threads: usize,
    pub size: usize,
    /// Length of the measurement window actually covered (after warm-up).
    pub duration_s: f64,
    pub sent_msgs: u64,
    pub recv_msgs: u64,
    pub sent_bytes: u64,
    pub recv_bytes: u64,
    /// Received traffic per second (sent traffic for sink mode).
    pub throughput: Throughput,
    /// Latency in µs, ns-resolution histogram.
    pub latency_us: Latency,
    pub errors: Errors,
    /// 100 × lost / expected replies (0 when none were expected).
    #[serde(default)]
    pub loss_pct: f64,
    /// UDP runs that receive: RFC 3550 interarrival jitter in µs (as iperf3 reports it), the
    /// mean over the flows of each flow's estimate at the end (null: TCP, sink, or fewer
    /// than two replies on every flow).
    #[serde(default)]
    pub jitter_us: Option<f64>,
    /// Flows the jitter is the mean of (to weigh it when merging).
    #[serde(default)]
    pub jitter_flows: u64,
    /// Paced runs that expect replies (wrk2's `--u_latency`): round trips in µs from each
    /// message's *actual* send time (`latency_us` counts from the intended one); null otherwise
    /// and in merged documents.
    #[serde(default)]
    pub latency_uncorrected_us: Option<Latency>,
    /// Paced runs: how late each measured message was sent, in µs (actual - intended send
    /// time), so a late client shows apart from a late server; null otherwise.
    #[serde(default)]
    pub send_lag_us: Option<Latency>,
    /// The receiver's counts (`--server-metrics`: echoload serve's counters of the target
    /// service, read before and after the run, so warm-up and set-up included); null without.
    #[serde(default)]
    pub receiver: Option<crate::results::receiver::ReceiverCounts>,
    /// Human-readable descriptions of the first errors.
    pub messages: Vec<String>,
    /// HdrHistogram V2 serialization (ns values), base64.
    pub histogram: String,
    /// The measured window interval by interval (`-i`, 1 s by default).
    #[serde(default)]
    pub intervals: Vec<Interval>,
    /// Client CPU time from the start of the measured window to the end of the drain (null
    /// where the OS has no per-thread getrusage).
    #[serde(default)]
    pub cpu: Option<Cpu>,
    /// TCP_INFO summed over the connections at the end (null: UDP, or not Linux).
    #[serde(default)]
    pub tcp_info: Option<TcpInfoSum>,
    /// The single-flow UDP ping-pong or source that waits for each reply itself: its bounded
    /// spin before blocking (`--spin`); null for every other run and with `--busy-poll`.
    #[serde(default)]
    pub spin: Option<SpinReport>,
    /// How the command ended (as k6 summarizes a run): set by `echoload run`, absent from
    /// library reports and older documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
}

/// The command's outcome, in the JSON so a pipeline need not keep the exit status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Data moved, no integrity error, no failed connection (and no loss unless allowed).
    pub clean: bool,
    /// The process's exit status: 0 clean, 1 not clean, 128 + N stopped by signal N.
    pub exit_code: u8,
    /// "duration" (the planned end), or the signal that ended it ("SIGINT", "SIGTERM").
    pub stopped_by: String,
}

/// What `--spin` did: replies caught while spinning vs taken by the blocking receive, over
/// the rounds whose request was sent in the measured window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpinReport {
    /// The budget per round used, in µs (0: blocked at once: `--spin 0`, or not available).
    pub budget_us: f64,
    /// False off Linux: no non-blocking receive per call there, so the ping-pong blocks at
    /// once whatever `--spin` says.
    pub available: bool,
    /// Replies taken while spinning.
    pub caught: u64,
    /// Replies taken by the blocking receive (the spin missed, was backed off, or is off).
    pub blocked: u64,
    /// Rounds that spun, caught or not.
    pub spun: u64,
    /// Times the spin was switched off after missing 8 times in a row (or a missed probe), for
    /// the next 256 rounds.
    pub backoffs: u64,
    /// Trials of spinning against blocking (the median of 64 round trips each way, at the
    /// start and every 16384 rounds), over the whole run, warm-up included; and how many
    /// blocking won (its rounds then block at once until the next trial).
    pub trials: u64,
    pub blocking_won: u64,
}

impl SpinReport {
    fn from_counts(c: &SpinCounts) -> SpinReport {
        SpinReport {
            budget_us: c.budget_ns as f64 / 1000.0,
            available: c.available,
            caught: c.caught,
            blocked: c.blocked,
            spun: c.spun,
            backoffs: c.backoffs,
            trials: c.trials,
            blocking_won: c.blocking_won,
        }
    }

    fn add(&mut self, o: &SpinReport) {
        self.budget_us = self.budget_us.max(o.budget_us);
        self.available |= o.available;
        self.caught += o.caught;
        self.blocked += o.blocked;
        self.spun += o.spun;
        self.backoffs += o.backoffs;
        self.trials += o.trials;
        self.blocking_won += o.blocking_won;
    }

    /// The table's line (after the label).
    fn line(&self) -> String {
        if !self.available {
            return "not available on this OS: each reply waited for blocking at once (as \
                    --spin 0)"
                .to_string();
        }
        if self.budget_us <= 0.0 {
            return format!("off (--spin 0): {} replies after blocking", self.blocked);
        }
        let all = self.caught + self.blocked;
        format!(
            "budget {} µs: {} of {} replies caught spinning ({:.1} %), {} after blocking; {} \
             rounds spun, {} back-off{}; blocking faster in {} of {} trial{}",
            self.budget_us,
            self.caught,
            all,
            if all > 0 {
                100.0 * self.caught as f64 / all as f64
            } else {
                0.0
            },
            self.blocked,
            self.spun,
            self.backoffs,
            if self.backoffs == 1 { "" } else { "s" },
            self.blocking_won,
            self.trials,
            if self.trials == 1 { "" } else { "s" }
        )
    }
}

/// Client CPU use.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    pub user_s: f64,
    pub system_s: f64,
    /// (user + system) / measured seconds: how many cores the client kept busy.
    pub cores: f64,
    pub per_thread: Vec<ThreadCpu>,
}

impl Cpu {
    fn from_threads(t: &[ThreadCpu], duration_s: f64) -> Option<Cpu> {
        if t.is_empty() {
            return None;
        }
        let user_s: f64 = t.iter().map(|c| c.user_s).sum();
        let system_s: f64 = t.iter().map(|c| c.system_s).sum();
        Some(Cpu {
            user_s,
            system_s,
            cores: if duration_s > 0.0 {
                (user_s + system_s) / duration_s
            } else {
                0.0
            },
            per_thread: t.to_vec(),
        })
    }
}

/// 32 random lowercase hex characters.
pub fn new_run_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // No OS randomness: the clock still makes clashes unlikely.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        b = (t ^ (u128::from(std::process::id()) << 64)).to_le_bytes();
    }
    b.iter().fold(String::with_capacity(32), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// This machine's host name ("" if unknown).
pub fn host_name() -> String {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: gethostname writes at most `len` bytes into the buffer we own.
        let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if r == 0 {
            let n = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
            return String::from_utf8_lossy(&buf[..n]).into_owned();
        }
        String::new()
    }
    #[cfg(not(unix))]
    {
        std::env::var("COMPUTERNAME").unwrap_or_default()
    }
}

/// The standard compressed V2 encoding (cookie 0x1c849314, the V2 payload deflated), base64:
/// what HdrHistogram's Java, C, Go, JS and Python (`hdrh`) implementations decode.
pub fn encode_histogram(h: &Histogram<u64>) -> String {
    let mut v = Vec::new();
    V2DeflateSerializer::new()
        .serialize(h, &mut v)
        .expect("serializing into a Vec cannot fail");
    base64::engine::general_purpose::STANDARD.encode(v)
}

/// Reads either V2 form: compressed (what this version writes) or uncompressed (earlier
/// versions' documents).
pub fn decode_histogram(s: &str) -> Result<Histogram<u64>> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .context("histogram is not base64")?;
    let h: Histogram<u64> = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| anyhow::anyhow!("histogram is not HdrHistogram V2: {e:?}"))?;
    Ok(h)
}

impl RunReport {
    /// The result document of a measurement made with `cfg`.
    pub fn new(cfg: &RunConfig, m: &Measurement) -> RunReport {
        let mut r = RunReport::from_stats(cfg, &m.stats, m.duration_s);
        r.started_at = humantime::format_rfc3339_micros(m.started_at).to_string();
        r.intervals.clone_from(&m.intervals);
        r
    }

    fn from_stats(cfg: &RunConfig, st: &Stats, duration_s: f64) -> RunReport {
        let (msgs, bytes) = if cfg.mode == Mode::Sink {
            (st.sent_msgs, st.sent_bytes)
        } else {
            (st.recv_msgs, st.recv_bytes)
        };
        let per_s = |v: u64| {
            if duration_s > 0.0 {
                v as f64 / duration_s
            } else {
                0.0
            }
        };
        let mut messages = st.messages.clone();
        if st.errors.corrupted > 0 && st.errors.corrupted >= st.recv_msgs {
            messages.insert(
                0,
                format!(
                    "{} of the replies were corrupted and {} intact: wrong --wire? (this run \
                     spoke {}; a sockperf service needs --wire sockperf, an echo service \
                     the default --wire echoload)",
                    st.errors.corrupted,
                    st.recv_msgs,
                    match cfg.wire {
                        Wire::Echoload => "echoload",
                        Wire::Sockperf => "sockperf",
                    }
                ),
            );
        }
        let moved = if cfg.mode == Mode::Sink {
            st.sent_bytes > 0
        } else {
            st.recv_bytes > 0
        };
        // A paced run that fell behind: every message carries its intended send time, so one
        // sent late counts where it was due (perhaps before the window: "sent 0").
        let shortfall = cfg.paced().then_some(()).and_then(|()| {
            let want = cfg.rate?;
            let got = per_s(st.sent_msgs);
            (duration_s > 0.0 && got < SHORTFALL * want).then_some((got, want))
        });
        if let Some((got, want)) = shortfall {
            messages.insert(
                0,
                format!(
                    "could send only {} of the requested {} msg/s: the client (or the socket) \
                     could not keep up; messages count, and latency runs, from their intended \
                     send times, so late ones may fall outside the window",
                    thousands(got),
                    thousands(want)
                ),
            );
        }
        // Many connections refused or closed at once: one summary line before the first
        // failures' details (a server at its connection limit, say).
        let served = st.conns_served as usize;
        if cfg.proto == Proto::Tcp && served < cfg.conns && duration_s > 0.0 {
            messages.insert(
                0,
                format!(
                    "{} of {} connections established and served; the server refused or \
                     closed the rest (its connection limit?)",
                    thousands(served as f64),
                    thousands(cfg.conns as f64)
                ),
            );
        }
        if !moved && messages.is_empty() {
            messages.push(if duration_s <= 0.0 {
                "nothing was measured (the measured window is empty)".to_string()
            } else if cfg.mode == Mode::Sink || (cfg.mode != Mode::Source && st.sent_msgs == 0) {
                "nothing was sent in the measured window".to_string()
            } else {
                format!(
                    "nothing was received in the measured window (is {} {} service?)",
                    cfg.target,
                    match cfg.mode {
                        Mode::Source => "a source",
                        _ => "an echo",
                    }
                )
            });
        }
        if let Some(hint) = guard_hint(cfg, st, duration_s) {
            messages.push(hint);
        }
        let expected = if cfg.mode == Mode::Sink {
            0
        } else {
            st.recv_msgs + st.errors.lost
        };
        RunReport {
            schema_version: SCHEMA_VERSION,
            run_id: new_run_id(),
            label: cfg.label.clone(),
            started_at: String::new(),
            host: host_name(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            config: serde_json::to_value(cfg).unwrap_or_default(),
            requested_rate: cfg.rate,
            agent: cfg.agent,
            target: cfg.target.to_string(),
            proto: cfg.proto,
            mode: cfg.mode,
            wire: cfg.wire,
            conns: cfg.conns,
            threads: cfg.threads.min(cfg.conns),
            size: cfg.size,
            duration_s,
            sent_msgs: st.sent_msgs,
            recv_msgs: st.recv_msgs,
            sent_bytes: st.sent_bytes,
            recv_bytes: st.recv_bytes,
            throughput: Throughput {
                bits_per_s: per_s(bytes) * 8.0,
                bytes_per_s: per_s(bytes),
                msgs_per_s: per_s(msgs),
            },
            latency_us: Latency::from_histogram(&st.hist),
            errors: st.errors,
            loss_pct: if expected > 0 {
                100.0 * st.errors.lost as f64 / expected as f64
            } else {
                0.0
            },
            jitter_us: st.mean_jitter_ns().map(|ns| ns / 1000.0),
            jitter_flows: st.jitter.iter().filter(|j| j.ns().is_some()).count() as u64,
            latency_uncorrected_us: (cfg.paced() && cfg.mode != Mode::Sink)
                .then(|| Latency::from_histogram(&st.uncorrected)),
            send_lag_us: cfg.paced().then(|| Latency::from_histogram(&st.send_lag)),
            receiver: None,
            messages,
            histogram: encode_histogram(&st.hist),
            intervals: Vec::new(),
            cpu: Cpu::from_threads(&st.cpu, duration_s),
            tcp_info: (st.tcp_info.connections > 0).then_some(st.tcp_info),
            spin: st.spin.as_ref().map(SpinReport::from_counts),
            verdict: None,
        }
    }

    /// Whether the measured window moved data: something sent (send-only runs) or received
    /// (every other mode expects replies or a stream).
    pub fn moved_data(&self) -> bool {
        if self.mode == Mode::Sink {
            self.sent_bytes > 0
        } else {
            self.recv_bytes > 0
        }
    }

    /// Data moved, no integrity error and no failed connection; loss/duplicates count unless
    /// `allow_loss`.
    pub fn clean(&self, allow_loss: bool) -> bool {
        let e = &self.errors;
        self.moved_data()
            && e.corrupted == 0
            && e.connect == 0
            && e.io == 0
            && (allow_loss || (e.lost == 0 && e.duplicated == 0))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("report serializes")
    }

    pub fn write_json(&self, path: &std::path::Path) -> Result<()> {
        std::fs::write(path, self.to_json() + "\n")
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The human table.
    pub fn table(&self) -> String {
        self.table_view(false)
    }

    /// The human table; with `half_rtt` every latency figure is half the round trip, as
    /// sockperf prints by default (display only: the JSON keeps full round trips).
    pub fn table_view(&self, half_rtt: bool) -> String {
        let scale = if half_rtt { 0.5 } else { 1.0 };
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} {} → {}  ({} {}{}, {} thread{}, {} B, wire {}, {:.2} s measured)",
            self.proto,
            self.mode,
            self.target,
            self.conns,
            if self.proto == Proto::Udp {
                "flow"
            } else {
                "conn"
            },
            if self.conns == 1 { "" } else { "s" },
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            self.size,
            self.wire,
            self.duration_s
        );
        let t = &self.throughput;
        let _ = writeln!(
            s,
            "  throughput  {:>12}  {:>12}  {:>14}",
            human(t.bits_per_s, "bit/s"),
            human(t.bytes_per_s, "B/s"),
            human(t.msgs_per_s, "msg/s")
        );
        let every = self
            .config
            .get("reply_every")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(1);
        if every > 1 && self.duration_s > 0.0 {
            // The line above counts replies: with one reply per N messages, the rate sent is
            // N times it, and that is the rate asked for.
            let sent = self.sent_msgs as f64 / self.duration_s;
            let _ = writeln!(
                s,
                "  sending     {:>12}  {:>12}  {:>14}  (every {every}th message asks for a reply: \
                 the line above is the reply rate)",
                human(sent * 8.0 * self.size as f64, "bit/s"),
                human(sent * self.size as f64, "B/s"),
                human(sent, "msg/s")
            );
        }
        let _ = writeln!(
            s,
            "  sent        {:>12} msgs {:>14} bytes",
            self.sent_msgs, self.sent_bytes
        );
        let _ = writeln!(
            s,
            "  received    {:>12} msgs {:>14} bytes",
            self.recv_msgs, self.recv_bytes
        );
        if let Some(rc) = &self.receiver {
            let _ = writeln!(
                s,
                "  receiver    {:>12} msgs {:>14} bytes  udp dropped {}  ({} {} at {}, over the \
                 whole run: warm-up included)",
                rc.received_msgs,
                rc.received_bytes,
                rc.udp_dropped,
                rc.service,
                self.proto,
                rc.source
            );
        }
        let l = &self.latency_us;
        if l.count > 0 {
            let _ = writeln!(s, "  latency µs  min {:.1}  p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  p99.99 {:.1}  max {:.1}  ({} samples){}", scale * l.min, scale * l.p50, scale * l.p90, scale * l.p99, scale * l.p999, scale * l.p9999, scale * l.max, l.count, if half_rtt { "  half round trip (--half-rtt)" } else { "" });
            // sockperf prints these two; the JSON had them only.
            let _ = writeln!(
                s,
                "              mean {:.1}  stddev {:.1}",
                scale * l.mean,
                scale * l.stddev
            );
        }
        let short = |l: &Latency, f: f64| {
            format!(
                "p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  ({} samples)",
                f * l.p50,
                f * l.p90,
                f * l.p99,
                f * l.p999,
                f * l.max,
                l.count
            )
        };
        if let Some(u) = self.latency_uncorrected_us.as_ref().filter(|u| u.count > 0) {
            let _ = writeln!(
                s,
                "  uncorrected {}  (µs from the actual send time; the line above counts from the \
                 intended one)",
                short(u, scale)
            );
        }
        if let Some(g) = self.send_lag_us.as_ref().filter(|g| g.count > 0) {
            // A lag is not a round trip: never halved.
            let _ = writeln!(
                s,
                "  send lag    {}  (µs, actual - intended send time: the client's lateness)",
                short(g, 1.0)
            );
        }
        if let Some(c) = &self.cpu {
            let _ = writeln!(
                s,
                "  client cpu  user {:.2} s  system {:.2} s  ({:.2} cores over {} thread{})",
                c.user_s,
                c.system_s,
                c.cores,
                c.per_thread.len(),
                if c.per_thread.len() == 1 { "" } else { "s" }
            );
        }
        if let Some(t) = &self.tcp_info {
            let _ = writeln!(
                s,
                "  tcp_info    retransmits {}  rtt mean {:.1} µs  max {:.1} µs  cwnd mean {:.1}  ({} conn{})",
                t.retransmits, t.rtt_us_mean, t.rtt_us_max, t.cwnd_mean, t.connections,
                if t.connections == 1 { "" } else { "s" }
            );
        }
        if let Some(sp) = &self.spin {
            let _ = writeln!(s, "  spin        {}", sp.line());
        }
        if self.proto == Proto::Udp && self.mode != Mode::Sink {
            let expected = self.recv_msgs + self.errors.lost;
            let _ = writeln!(
                s,
                "  udp         loss {:.3} % ({} of {})  jitter {}",
                self.loss_pct,
                self.errors.lost,
                expected,
                self.jitter_us.map_or_else(
                    || "–".to_string(),
                    |j| format!(
                        "{j:.1} µs (RFC 3550, mean of {} flow{})",
                        self.jitter_flows,
                        if self.jitter_flows == 1 { "" } else { "s" }
                    )
                )
            );
        }
        let e = &self.errors;
        let _ = writeln!(
            s,
            "  errors      lost {}  duplicated {}  reordered {}  corrupted {}  connect {}  io {}",
            e.lost, e.duplicated, e.reordered, e.corrupted, e.connect, e.io
        );
        for m in &self.messages {
            let _ = writeln!(s, "  ! {m}");
        }
        s
    }
}

/// Which columns the `-i` lines have, from the run's protocol and mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineStyle {
    /// Rates are of what was sent (sink runs), not received.
    pub sends_only: bool,
    /// UDP runs that receive: loss % and jitter columns.
    pub udp_receive: bool,
    /// `--half-rtt`: p50/p99 are half round trips.
    pub half_rtt: bool,
    /// TCP: a retransmits column ("–" where the OS has no TCP_INFO).
    pub tcp: bool,
}

impl LineStyle {
    pub fn of(cfg: &RunConfig) -> LineStyle {
        LineStyle {
            sends_only: cfg.mode == Mode::Sink,
            udp_receive: cfg.proto == Proto::Udp && cfg.mode != Mode::Sink,
            half_rtt: false,
            tcp: cfg.proto == Proto::Tcp,
        }
    }
}

/// The UDP guard, visible: a UDP run that lost replies while sending more than the servers'
/// default per-source rate limit to a non-loopback server says where the loss may come from.
/// echoload serve and the wskecho driver answer at most that many datagrams per second from
/// one source address (all flows of a client share it), and drop the rest silently.
fn guard_hint(cfg: &RunConfig, st: &Stats, duration_s: f64) -> Option<String> {
    let limit = f64::from(control::config::UDP_RATE_PER_SOURCE.default);
    let remote = cfg.assume_remote || !cfg.target.ip().is_loopback();
    if cfg.proto != Proto::Udp || cfg.mode == Mode::Sink || !remote || duration_s <= 0.0 {
        return None;
    }
    let sent = st.sent_msgs as f64 / duration_s;
    if st.errors.lost == 0 || sent <= limit {
        return None;
    }
    Some(format!(
        "replies were lost sending {} msg/s from one address to a non-loopback server \
         (received {}/s): the server may be limiting per source. echoload serve and the \
         wskecho driver answer at most {} datagrams/s per non-loopback source by default (a \
         reflection guard); lift it with `echoload serve --udp-rate-limit-per-source 0`, or on \
         the driver `echoload driver config set --limit UdpRateLimitPerSource=0` (its \
         drop_rate_limited counter in `echoload driver stats` counts what it dropped)",
        thousands(sent),
        thousands(st.recv_msgs as f64 / duration_s),
        thousands(limit)
    ))
}

/// The column titles of [`interval_line`] (rates are of what was received, or sent for
/// send-only runs).
pub fn interval_header(style: &LineStyle) -> String {
    let mut s = format!(
        "{:>15}  {:>14}  {:>14}  {:>10}  {:>10}  {:>6}  {:>6}",
        "interval",
        if style.sends_only { "sent" } else { "received" },
        "msgs",
        if style.half_rtt {
            "p50 ½rtt"
        } else {
            "p50 µs"
        },
        if style.half_rtt {
            "p99 ½rtt"
        } else {
            "p99 µs"
        },
        "lost",
        "errors"
    );
    if style.udp_receive {
        let _ = write!(s, "  {:>7}  {:>10}", "loss %", "jitter µs");
    }
    if style.tcp {
        let _ = write!(s, "  {:>7}", "retr");
    }
    s
}

/// One line of `-i` output. An interval without latency samples (a send-only run, or one
/// where nothing came back) shows "–", not a latency of 0.
pub fn interval_line(iv: &Interval, style: &LineStyle) -> String {
    let k = if style.half_rtt { 0.5 } else { 1.0 };
    let lat = |v: f64| {
        if iv.recv_msgs == 0 || (iv.p50_us == 0.0 && iv.p99_us == 0.0) {
            "–".to_string()
        } else {
            format!("{:.1}", k * v)
        }
    };
    let mut s = format!(
        "{:>6.2}-{:>6.2} s  {:>14}  {:>14}  {:>10}  {:>10}  {:>6}  {:>6}",
        iv.start_s,
        iv.end_s,
        human(iv.bits_per_s, "bit/s"),
        human(iv.msgs_per_s, "msg/s"),
        lat(iv.p50_us),
        lat(iv.p99_us),
        iv.lost,
        iv.errors
    );
    if style.udp_receive {
        let jitter = if iv.jitter_us > 0.0 || iv.recv_msgs > 0 {
            format!("{:.1}", iv.jitter_us)
        } else {
            "–".to_string()
        };
        let _ = write!(s, "  {:>7.2}  {:>10}", iv.loss_pct, jitter);
    }
    if style.tcp {
        let r = iv
            .retransmits
            .map_or_else(|| "–".to_string(), |r| r.to_string());
        let _ = write!(s, "  {r:>7}");
    }
    s
}

/// A count with thousands separators: 1,515,174.
pub fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(crate) fn human(v: f64, unit: &str) -> String {
    let (d, p) = if v >= 1e9 {
        (1e9, "G")
    } else if v >= 1e6 {
        (1e6, "M")
    } else if v >= 1e3 {
        (1e3, "k")
    } else {
        (1.0, "")
    };
    format!("{:.2} {p}{unit}", v / d)
}

/// Why a set of runs cannot be merged (exit 2 at the command line).
pub fn check_mergeable(runs: &[(String, RunReport)]) -> Result<Vec<String>> {
    let Some((first_name, first)) = runs.first() else {
        bail!("nothing to merge")
    };
    let kind = |r: &RunReport| format!("{} {} {} B wire {}", r.proto, r.mode, r.size, r.wire);
    let mut seen: Vec<(String, &str)> = Vec::new();
    for (name, r) in runs {
        if (r.proto, r.mode, r.size, r.wire) != (first.proto, first.mode, first.size, first.wire) {
            bail!(
                "cannot merge {name} ({}) with {first_name} ({}): merged runs must share \
                 protocol, mode, size and wire",
                kind(r),
                kind(first)
            );
        }
        // Schema 1 documents have no run_id: the histogram and counters identify the run.
        let id = if r.run_id.is_empty() {
            format!("{}/{}/{}", r.histogram, r.sent_msgs, r.recv_msgs)
        } else {
            r.run_id.clone()
        };
        if let Some((_, other)) = seen.iter().find(|(i, _)| *i == id) {
            bail!(
                "{name} and {other} are the same run (run_id {}): merge each run once",
                r.run_id
            );
        }
        seen.push((id, name));
    }
    // Rates add up only for runs measured at the same time.
    let mut notes = Vec::new();
    let window = |r: &RunReport| {
        humantime::parse_rfc3339(&r.started_at).ok().map(|t| {
            let s = t
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            (s, s + r.duration_s)
        })
    };
    for (i, (na, a)) in runs.iter().enumerate() {
        for (nb, b) in &runs[i + 1..] {
            match (window(a), window(b)) {
                (Some((a0, a1)), Some((b0, b1))) if a1 <= b0 || b1 <= a0 => notes.push(format!(
                    "the measured windows of {na} and {nb} do not overlap: their rates are \
                     summed as if the runs were concurrent"
                )),
                (Some(_), Some(_)) => {}
                _ => {
                    let n = format!(
                        "{na} or {nb} has no started_at (schema 1): cannot check that the runs \
                         overlap"
                    );
                    if !notes.contains(&n) {
                        notes.push(n);
                    }
                }
            }
        }
    }
    Ok(notes)
}

/// Combines runs made in parallel (e.g. from several machines): counts and rates add up, the
/// latency comes from the summed histograms, the duration is the longest one.
pub fn merge(reports: &[RunReport]) -> Result<RunReport> {
    let Some(first) = reports.first() else {
        bail!("nothing to merge")
    };
    let mut out = first.clone();
    let mut hist = decode_histogram(&first.histogram)?;
    for r in &reports[1..] {
        let h = decode_histogram(&r.histogram)?;
        hist.add(&h)
            .map_err(|e| anyhow::anyhow!("histograms cannot be merged: {e:?}"))?;
        if !out.target.split(',').any(|t| t == r.target) {
            out.target = format!("{},{}", out.target, r.target);
        }
        out.conns += r.conns;
        out.threads += r.threads;
        out.duration_s = out.duration_s.max(r.duration_s);
        out.sent_msgs += r.sent_msgs;
        out.recv_msgs += r.recv_msgs;
        out.sent_bytes += r.sent_bytes;
        out.recv_bytes += r.recv_bytes;
        out.throughput.bits_per_s += r.throughput.bits_per_s;
        out.throughput.bytes_per_s += r.throughput.bytes_per_s;
        out.throughput.msgs_per_s += r.throughput.msgs_per_s;
        out.errors.add(&r.errors);
        out.jitter_us = match (out.jitter_us, r.jitter_us) {
            (Some(a), Some(b)) => {
                let n = out.jitter_flows + r.jitter_flows;
                Some(if n > 0 {
                    (a * out.jitter_flows as f64 + b * r.jitter_flows as f64) / n as f64
                } else {
                    f64::midpoint(a, b)
                })
            }
            (a, b) => a.or(b),
        };
        out.jitter_flows += r.jitter_flows;
        out.messages.extend(r.messages.iter().cloned());
        out.cpu = match (out.cpu.take(), &r.cpu) {
            (Some(mut a), Some(b)) => {
                a.user_s += b.user_s;
                a.system_s += b.system_s;
                a.cores += b.cores;
                a.per_thread.extend(b.per_thread.iter().copied());
                Some(a)
            }
            (a, b) => a.or_else(|| b.clone()),
        };
        out.tcp_info = match (out.tcp_info, r.tcp_info) {
            (Some(mut a), Some(b)) => {
                a.add(&b);
                Some(a)
            }
            (a, b) => a.or(b),
        };
        out.spin = match (out.spin, r.spin) {
            (Some(mut a), Some(b)) => {
                a.add(&b);
                Some(a)
            }
            (a, b) => a.or(b),
        };
    }
    out.latency_us = Latency::from_histogram(&hist);
    out.histogram = encode_histogram(&hist);
    // Their histograms are not in the documents: no exact merge.
    out.latency_uncorrected_us = None;
    out.send_lag_us = None;
    // Several servers' or one server's counts: not summed blindly.
    out.receiver = None;
    // A new document: its own id; per-interval alignment of the inputs is not done here.
    out.schema_version = SCHEMA_VERSION;
    out.run_id = new_run_id();
    out.intervals.clear();
    // The verdict was the first run's command's, not the merge's.
    out.verdict = None;
    let expected = out.recv_msgs + out.errors.lost;
    out.loss_pct = if out.mode != Mode::Sink && expected > 0 {
        100.0 * out.errors.lost as f64 / expected as f64
    } else {
        0.0
    };
    out.agent = Agent::default();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The retransmits column of a TCP interval line: the count, or a dash when the interval
    /// had no TCP_INFO reading (client/intervals.rs checks which intervals get which).
    #[test]
    fn interval_line_shows_retransmits_or_a_dash() {
        let style = LineStyle {
            tcp: true,
            ..Default::default()
        };
        let with = Interval {
            retransmits: Some(3),
            ..Default::default()
        };
        let without = Interval {
            retransmits: None,
            ..Default::default()
        };
        assert!(interval_line(&with, &style).ends_with("        3"));
        assert!(interval_line(&without, &style).ends_with("        –"));
    }

    /// Issue 21 bug 6: the histogram was uncompressed V2 (cookie 0x1c849313), which
    /// HdrHistogram's other implementations do not read.
    #[test]
    fn histogram_is_compressed_v2_and_reads_back() {
        let mut h = crate::client::Stats::default().hist;
        for v in [1_000u64, 25_000, 25_000, 9_000_000] {
            h.record(v).unwrap();
        }
        let text = encode_histogram(&h);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&text)
            .unwrap();
        assert_eq!(raw[..4], [0x1c, 0x84, 0x93, 0x14], "compressed V2 cookie");
        let back = decode_histogram(&text).unwrap();
        assert_eq!((back.len(), back.max()), (h.len(), h.max()));
        // Documents of earlier versions (uncompressed V2) still load.
        let mut old = Vec::new();
        hdrhistogram::serialization::V2Serializer::new()
            .serialize(&h, &mut old)
            .unwrap();
        let old = base64::engine::general_purpose::STANDARD.encode(old);
        assert_eq!(decode_histogram(&old).unwrap().len(), 4);
    }
}
