//! The client engines: one non-blocking event loop per worker thread, connections (TCP) or
//! flows (UDP) spread over the threads round-robin.

mod batch;
mod intervals;
mod pacer;
pub mod schedule;
mod sockopt;
mod spin;
mod stats;
mod sysinfo;
mod tcp;
mod udp;
#[cfg(unix)]
mod wakeup;
mod wire;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Result};

pub use intervals::{Errors, Interval, Totals};
pub use sockopt::{allowed_cpus, SockOpts};
pub use spin::SpinCounts;
pub use stats::{SeqEvent, SeqTracker, Stats};
pub use sysinfo::{TcpInfoSum, ThreadCpu};
pub use wire::{Check, Wire};

/// The most messages per second one connection can be scheduled to send: one per nanosecond,
/// the resolution of the intended send times.
pub const MAX_RATE_PER_CONN: f64 = 1e9;

/// `--spin`'s default: longer than a loopback or LAN round trip with a spinning client
/// (~18 µs here), short enough that a miss costs little (and repeated misses back off).
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// Largest UDP payload over IPv4 (65535 - 20 - 8).
pub const MAX_UDP_SIZE: usize = 65_507;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    #[default]
    Tcp,
    Udp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Closed loop: one outstanding message per connection.
    #[default]
    Pingpong,
    /// Open loop at a fixed total rate; latency from the intended send time.
    Rate,
    /// As fast as possible (bounded in-flight window), echoes verified.
    Stream,
    /// Send only (discard server).
    Sink,
    /// Receive only (source server).
    Source,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Pingpong => "pingpong",
            Mode::Rate => "rate",
            Mode::Stream => "stream",
            Mode::Sink => "sink",
            Mode::Source => "source",
        })
    }
}

/// Everything one run needs; `Default` is a 1 s TCP ping-pong of 64-byte messages to
/// 127.0.0.1:7007 (the echo service's default port). Serialized as the result's `config`
/// (durations in seconds).
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunConfig {
    pub target: SocketAddr,
    pub proto: Proto,
    pub mode: Mode,
    pub wire: Wire,
    /// TCP connections or UDP flows (one socket each).
    pub conns: usize,
    pub threads: usize,
    /// Message size in bytes, header included.
    pub size: usize,
    /// Total messages per second over all connections (rate mode; paces sink/stream if set).
    pub rate: Option<f64>,
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    #[serde(serialize_with = "secs")]
    pub warmup: Duration,
    /// sockperf wire, rate mode: every Nth message asks for a reply (1 = all).
    pub reply_every: u64,
    /// UDP: use UDP_SEGMENT (GSO) where the OS has it, for sink/rate/stream.
    pub gso: bool,
    /// Datagrams per GSO send (clamped so one send stays under 64 KiB).
    pub gso_segments: usize,
    /// UDP: messages per sendmmsg/recvmmsg call.
    pub batch: usize,
    /// Spin on the event loop instead of sleeping (lower latency, one core per thread); it
    /// wins over `spin`.
    pub busy_poll: bool,
    /// Single-flow UDP ping-pong/source (Linux): after each send, poll a non-blocking receive
    /// this long before blocking (0: block at once), with a back-off when it keeps missing
    /// (see `spin.rs`).
    #[serde(serialize_with = "secs")]
    pub spin: Duration,
    /// How long a UDP ping-pong waits for a reply before sending the next message; also the
    /// drain time at the end of a UDP run.
    #[serde(serialize_with = "secs")]
    pub udp_timeout: Duration,
    #[serde(serialize_with = "secs")]
    pub connect_timeout: Duration,
    /// TCP: how long after the measured window the echoes still due are waited for before
    /// they count as lost (1 s; library callers facing a slow server may give more).
    #[serde(serialize_with = "secs")]
    pub tcp_drain: Duration,
    /// Stream mode: bytes in flight per connection.
    pub window_bytes: usize,
    /// Source mode: check the server's `i % 251` pattern.
    pub verify_source: bool,
    /// Live progress bar (only drawn when stderr is a terminal).
    pub progress: bool,
    /// Length of a reporting interval (the `intervals` of the result).
    #[serde(serialize_with = "secs")]
    pub interval: Duration,
    /// When this flag turns true the measured window ends early: sending stops, the echoes
    /// still due are drained and the run reports what it measured (e.g. after Ctrl-C).
    #[serde(skip)]
    pub stop: Option<&'static AtomicBool>,
    /// Distributed runs: the wall-clock start of the measured window (`--start-at`).
    #[serde(serialize_with = "opt_time")]
    pub start_at: Option<SystemTime>,
    /// Socket settings (buffers, TCP_NODELAY, TOS, local address).
    pub sock: SockOpts,
    /// Worker thread N runs on CPU `cpus[N % len]` (empty: not pinned).
    pub cpus: Vec<usize>,
    /// Free text shared by the agents of one distributed run (the result's `label`).
    pub label: String,
    /// This agent's place in a distributed run (the result's `agent`).
    pub agent: Agent,
    /// Advice treats a loopback target as remote (`--assume-remote`, for tests): the UDP
    /// guard hint.
    #[serde(skip)]
    pub assume_remote: bool,
}

/// Agent `index` of `count` in a distributed run (0 of 1 alone).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Agent {
    pub index: u32,
    pub count: u32,
}

impl Default for Agent {
    fn default() -> Self {
        Agent { index: 0, count: 1 }
    }
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// `start_at` as RFC 3339 (or null) in the echoed configuration.
#[allow(clippy::ref_option)] // serde's serialize_with hands over a &Option
fn opt_time<S: serde::Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&humantime::format_rfc3339_micros(*t).to_string()),
        None => s.serialize_none(),
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            target: SocketAddr::from(([127, 0, 0, 1], 7007)),
            proto: Proto::Tcp,
            mode: Mode::Pingpong,
            wire: Wire::Echoload,
            conns: 1,
            threads: 1,
            size: 64,
            rate: None,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            reply_every: 1,
            gso: true,
            gso_segments: 64,
            batch: 32,
            busy_poll: false,
            spin: DEFAULT_SPIN,
            udp_timeout: Duration::from_millis(200),
            tcp_drain: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(3),
            window_bytes: 1 << 20,
            verify_source: true,
            progress: false,
            interval: Duration::from_secs(1),
            stop: None,
            start_at: None,
            sock: SockOpts::default(),
            cpus: Vec::new(),
            label: String::new(),
            agent: Agent::default(),
            assume_remote: false,
        }
    }
}

impl RunConfig {
    pub fn validate(&self) -> Result<()> {
        if self.conns == 0 || self.threads == 0 {
            bail!("--conns and --threads must be at least 1");
        }
        let min = if self.mode == Mode::Source {
            1
        } else {
            self.wire.min_size()
        };
        if self.size < min {
            bail!(
                "--size {} is below the {} header size of {min} bytes (messages carry sequence, \
                 timestamp and a verifiable pattern)",
                self.size,
                match self.wire {
                    Wire::Echoload => "echoload",
                    Wire::Sockperf => "sockperf",
                }
            );
        }
        if self.proto == Proto::Udp && self.size > MAX_UDP_SIZE {
            bail!("--size {} is too large for UDP: the maximum datagram payload is {MAX_UDP_SIZE} bytes", self.size);
        }
        if self.proto == Proto::Tcp && self.size > (64 << 20) {
            bail!("--size {} is too large (maximum 64 MiB)", self.size);
        }
        match self.rate {
            Some(r) if !(r.is_finite() && r > 0.0) => bail!("--rate must be a positive number"),
            None if self.mode == Mode::Rate => bail!("--mode rate needs --rate MSGS_PER_S"),
            Some(_) if matches!(self.mode, Mode::Pingpong | Mode::Source) => bail!(
                "--mode {} is not paced: {}; -r/--rate and -b/--bitrate pace --mode rate \
                 (open loop, latency from the intended send time), stream and sink (iperf3's \
                 `-u -b 10M` is `-u -m sink -b 10M`)",
                self.mode,
                if self.mode == Mode::Pingpong {
                    "a ping-pong keeps one message in flight per connection and sends the next \
                     when the echo is back"
                } else {
                    "the server sends as fast as it can"
                }
            ),
            Some(r) if r / self.conns as f64 > MAX_RATE_PER_CONN => bail!(
                "--rate {r:.0} msg/s over {} connection{} cannot be scheduled: the send times \
                 are kept in nanoseconds, which allows at most {MAX_RATE_PER_CONN:.0} msg/s per \
                 connection (and no machine sends that many); ask for less, or leave --rate \
                 out for as fast as possible",
                self.conns,
                if self.conns == 1 { "" } else { "s" }
            ),
            _ => {}
        }
        if self.reply_every == 0 {
            bail!("--reply-every must be at least 1");
        }
        if self.wire == Wire::Sockperf && self.mode == Mode::Source {
            bail!("--wire sockperf has no source mode");
        }
        Ok(())
    }

    /// Whether message `seq` expects an echo.
    #[inline]
    pub(crate) fn wants_reply(&self, seq: u64) -> bool {
        match self.mode {
            Mode::Sink | Mode::Source => false,
            Mode::Rate if self.wire == Wire::Sockperf => seq.is_multiple_of(self.reply_every),
            _ => true,
        }
    }

    /// Whether the client paces its sends.
    pub(crate) fn paced(&self) -> bool {
        self.rate.is_some() && self.mode != Mode::Pingpong && self.mode != Mode::Source
    }
}

/// Shared between workers and the progress display.
#[derive(Default)]
pub(crate) struct Live {
    pub sent_bytes: AtomicU64,
    pub recv_bytes: AtomicU64,
    pub msgs: AtomicU64,
}

impl Live {
    fn counts(&self) -> LiveCounts {
        LiveCounts {
            sent_bytes: self.sent_bytes.load(Ordering::Relaxed),
            recv_bytes: self.recv_bytes.load(Ordering::Relaxed),
            msgs: self.msgs.load(Ordering::Relaxed),
        }
    }
}

/// Measured traffic so far, as a progress display sees it while the run goes on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveCounts {
    pub sent_bytes: u64,
    pub recv_bytes: u64,
    /// Messages received (sent, for send-only runs).
    pub msgs: u64,
}

/// What a run measured; [`crate::results::report::RunReport`] turns it into the result document.
pub struct Measurement {
    /// Counters and latency summed over every worker.
    pub stats: Stats,
    /// Length of the measured window actually covered (after warm-up), in seconds.
    pub duration_s: f64,
    /// The measured window in intervals of `RunConfig::interval`.
    pub intervals: Vec<Interval>,
    /// Wall-clock start of the measured window (after the warm-up).
    pub started_at: SystemTime,
}

impl Measurement {
    /// A run that could not start: `why` is counted as a connection failure.
    pub fn failed(why: String) -> Measurement {
        let mut stats = Stats::default();
        stats.errors.connect += 1;
        stats.note(why);
        Measurement {
            stats,
            duration_s: 0.0,
            intervals: Vec::new(),
            started_at: SystemTime::now(),
        }
    }
}

/// Watches a run from the thread that started it.
pub trait Observer {
    /// About every 100 ms: the live counters (measured traffic only) and the time since the
    /// start (warm-up included).
    fn tick(&mut self, _live: LiveCounts, _elapsed: Duration) {}
    /// Each interval, in order, once every worker is past it (the last one is not announced
    /// here: it is the measurement's last entry of `intervals`).
    fn interval(&mut self, _iv: &Interval) {}
    /// After the intervals above: the run so far, every complete interval summed (the last
    /// call has the whole measured window).
    fn totals(&mut self, _t: &Totals) {}
}

/// Time base of one run: all threads measure from the same instant.
#[derive(Clone)]
pub(crate) struct Clock {
    pub start: Instant,
    /// `start` on CLOCK_MONOTONIC in ns (Linux: what `Instant` reads), for [`Clock::now_ns`].
    #[cfg(target_os = "linux")]
    start_mono_ns: u64,
    pub warm_end_ns: u64,
    /// The planned end (warm-up + duration).
    planned_end_ns: u64,
    /// An earlier end set when the run is asked to stop (`u64::MAX`: none).
    stop_at_ns: Arc<AtomicU64>,
    /// The run's stop flag (`RunConfig::stop`): the first end check that sees it set ends the
    /// window there, so no thread has to poll it.
    stop_flag: Option<&'static AtomicBool>,
}

impl Clock {
    pub fn new(start: Instant, warm_end_ns: u64, planned_end_ns: u64) -> Clock {
        Clock {
            start,
            // Both read CLOCK_MONOTONIC: `start`, taken before, is `elapsed` ago on this clock.
            #[cfg(target_os = "linux")]
            start_mono_ns: mono_ns().saturating_sub(start.elapsed().as_nanos() as u64),
            warm_end_ns,
            planned_end_ns,
            stop_at_ns: Arc::new(AtomicU64::new(u64::MAX)),
            stop_flag: None,
        }
    }
    /// The same clock, its window ended early once `flag` turns true.
    pub fn stopped_by(mut self, flag: Option<&'static AtomicBool>) -> Clock {
        self.stop_flag = flag;
        self
    }
    /// Linux: one clock_gettime (vDSO) and a subtraction: twice per round trip in a
    /// ping-pong, so not `Instant::elapsed` (its `Timespec` subtraction and u128 `Duration`
    /// conversion were ~45 instructions a read, callgrind).
    #[cfg(target_os = "linux")]
    #[inline]
    pub fn now_ns(&self) -> u64 {
        mono_ns().saturating_sub(self.start_mono_ns)
    }
    #[cfg(not(target_os = "linux"))]
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
    /// End of the measured window: the planned one, or when the run was stopped (the first
    /// call after the stop flag turned true fixes that time).
    #[inline]
    pub fn end_ns(&self) -> u64 {
        let mut stop = self.stop_at_ns.load(Ordering::Relaxed);
        if stop == u64::MAX && self.stop_flag.is_some_and(|f| f.load(Ordering::Relaxed)) {
            self.stop_now();
            stop = self.stop_at_ns.load(Ordering::Relaxed);
        }
        self.planned_end_ns.min(stop)
    }
    #[inline]
    pub fn measuring(&self, t: u64) -> bool {
        t >= self.warm_end_ns && t < self.end_ns()
    }
    /// Ends the measured window now (if it has not ended yet).
    pub fn stop_now(&self) {
        self.stop_at_ns.fetch_min(self.now_ns(), Ordering::Relaxed);
    }
}

#[cfg(target_os = "linux")]
use crate::signals::monotonic_ns as mono_ns;

/// What each worker gets: its share of the connections.
pub(crate) struct Worker {
    pub cfg: Arc<RunConfig>,
    /// This worker's number (0..threads).
    pub index: usize,
    pub book: Arc<intervals::Book>,
    /// Global flow ids of this worker's connections.
    pub flows: Vec<u32>,
    pub live: Arc<Live>,
    pub ready: Arc<Barrier>,
    pub clock: Arc<OnceLock<Clock>>,
    pub go: Arc<Barrier>,
}

impl Worker {
    /// Waits until every worker has set up its sockets, then returns the common clock.
    pub fn sync_start(&self) -> Clock {
        self.ready.wait();
        self.go.wait();
        self.clock
            .get()
            .expect("clock set before the go barrier")
            .clone()
    }

    /// Pacing: interval between sends of one connection, in ns.
    pub fn interval_ns(&self) -> Option<f64> {
        let r = self.cfg.rate?;
        self.cfg.paced().then(|| 1e9 * self.cfg.conns as f64 / r)
    }
}

/// Runs a measurement. An invalid configuration is an `Err`; failures of the run itself
/// (refused connections, lost or corrupted messages) are counted in the measurement.
/// `observe`, when given, gets the live counters about every 100 ms.
pub fn measure(cfg: &RunConfig, observe: Option<&mut dyn Observer>) -> Result<Measurement> {
    cfg.validate()?;
    let cfg = Arc::new(cfg.clone());
    let threads = cfg.threads.min(cfg.conns);
    let live = Arc::new(Live::default());
    let ready = Arc::new(Barrier::new(threads + 1));
    let go = Arc::new(Barrier::new(threads + 1));
    let clock = Arc::new(OnceLock::new());
    let book = Arc::new(intervals::Book::new(
        cfg.interval.as_nanos() as u64,
        threads,
    ));
    let sends_only = cfg.mode == Mode::Sink;
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let flows = (0..cfg.conns as u32)
            .filter(|f| *f as usize % threads == t)
            .collect();
        let w = Worker {
            cfg: cfg.clone(),
            index: t,
            book: book.clone(),
            flows,
            live: live.clone(),
            ready: ready.clone(),
            clock: clock.clone(),
            go: go.clone(),
        };
        let h = std::thread::Builder::new()
            .name(format!("echoload-{t}"))
            .spawn(move || {
                if !w.cfg.cpus.is_empty() {
                    let cpu = w.cfg.cpus[w.index % w.cfg.cpus.len()];
                    if let Err(e) = sockopt::pin_to(cpu) {
                        let mut st = Stats::default();
                        st.errors.io += 1;
                        st.note(format!("pinning worker {} to CPU {cpu}: {e}", w.index));
                        // The other workers wait for this one at the start barriers.
                        let _ = w.sync_start();
                        st.close();
                        return st;
                    }
                }
                let mut st = match w.cfg.proto {
                    Proto::Tcp => tcp::worker(&w),
                    Proto::Udp => udp::worker(&w),
                };
                st.close();
                st
            })?;
        handles.push(h);
    }
    ready.wait();
    let warm = schedule::warmup_until(cfg.start_at, cfg.warmup).as_nanos() as u64;
    let wall = SystemTime::now();
    let c = Clock::new(Instant::now(), warm, warm + cfg.duration.as_nanos() as u64)
        .stopped_by(cfg.stop);
    let _ = clock.set(c.clone());
    go.wait();

    // Without an observer the main thread just joins below: a periodic wake-up would land on
    // the workers' cores (2 here) and show in the latency tail and the ping-pong p50. The stop
    // flag needs no polling: the workers' end checks see it (`Clock::end_ns`).
    let mut observe = observe;
    let mut announced = Vec::new();
    if let Some(o) = observe.as_mut() {
        let mut last_observed = Instant::now();
        while !handles.iter().all(std::thread::JoinHandle::is_finished) {
            if last_observed.elapsed() >= Duration::from_millis(100) {
                last_observed = Instant::now();
                o.tick(live.counts(), c.start.elapsed());
            }
            // Every interval but the window's last (which may still shrink or grow).
            let last = c.end_ns().saturating_sub(c.warm_end_ns).saturating_sub(1) / book.len_ns;
            let ivs = book.take_complete(last, sends_only);
            if !ivs.is_empty() {
                for iv in ivs {
                    o.interval(&iv);
                    announced.push(iv);
                }
                o.totals(&book.taken());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let mut total = Stats::default();
    for h in handles {
        if let Ok(st) = h.join() {
            total.merge(&st);
        } else {
            total.errors.io += 1;
            total.note("a worker thread panicked".into());
        }
    }
    let end_ns = c.end_ns().min(c.now_ns());
    let measured_ns = end_ns
        .saturating_sub(c.warm_end_ns)
        .min(cfg.duration.as_nanos() as u64);
    let rest = book.finish(measured_ns, sends_only);
    if let Some(o) = observe.as_mut() {
        for iv in &rest {
            o.interval(iv);
        }
        o.totals(&book.taken());
    }
    // An interval announced before a stop cut the window short cannot lie past its end (every
    // worker had passed it), so the list stays in order and within the window.
    let mut intervals = announced;
    intervals.extend(rest);
    Ok(Measurement {
        stats: total,
        duration_s: measured_ns as f64 / 1e9,
        intervals,
        started_at: wall + Duration::from_nanos(warm),
    })
}
