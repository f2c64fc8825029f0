//! `echoload serve`: the user-mode reference server (echo, discard, source, sockperf).
//!
//! The same services and default ports as the wskecho driver, so the two can be compared.
//! On Linux every worker thread runs one epoll loop over its own SO_REUSEPORT sockets (one UDP
//! socket and one TCP listener per service per thread), UDP moves in recvmmsg/sendmmsg batches
//! with GRO on receive and GSO on the replies. Elsewhere a simple portable back end runs
//! (std::net, a thread per socket and per connection).

mod config;
mod framing;
mod guard;
pub mod metrics;
mod pattern;
mod stats;

#[cfg(target_os = "linux")]
mod linux;
mod portable;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub(crate) use config::default_threads;
// What each service does: the one definition, shared with the driver.
pub use config::ServeConfig;
use control::protocol::Mode;
pub use guard::GuardConfig;
pub use stats::Counters;

/// Transport of a bound service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

/// The bound address of every service (`None`: not enabled).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerAddrs {
    pub tcp_echo: Option<SocketAddr>,
    pub udp_echo: Option<SocketAddr>,
    pub tcp_discard: Option<SocketAddr>,
    pub udp_discard: Option<SocketAddr>,
    pub tcp_source: Option<SocketAddr>,
    pub udp_source: Option<SocketAddr>,
    pub tcp_sockperf: Option<SocketAddr>,
    pub udp_sockperf: Option<SocketAddr>,
}

impl ServerAddrs {
    fn from_list(list: &[(Mode, Proto, SocketAddr)]) -> Self {
        let mut a = ServerAddrs::default();
        for (svc, proto, addr) in list {
            let slot = match (svc, proto) {
                (Mode::Echo, Proto::Tcp) => &mut a.tcp_echo,
                (Mode::Echo, Proto::Udp) => &mut a.udp_echo,
                (Mode::Discard, Proto::Tcp) => &mut a.tcp_discard,
                (Mode::Discard, Proto::Udp) => &mut a.udp_discard,
                (Mode::Source, Proto::Tcp) => &mut a.tcp_source,
                (Mode::Source, Proto::Udp) => &mut a.udp_source,
                (Mode::Sockperf, Proto::Tcp) => &mut a.tcp_sockperf,
                (Mode::Sockperf, Proto::Udp) => &mut a.udp_sockperf,
            };
            *slot = Some(*addr);
        }
        a
    }
}

/// A running server. Dropping it stops it too.
pub struct ServerHandle {
    bound: Vec<(Mode, Proto, SocketAddr)>,
    addrs: ServerAddrs,
    stats: Arc<stats::Shared>,
    stop: Arc<AtomicBool>,
    inner: Option<Inner>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("bound", &self.bound)
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// The bound address of a service (the OS-assigned port when the config said 0).
    pub fn addr(&self, svc: Mode, proto: Proto) -> Option<SocketAddr> {
        self.bound
            .iter()
            .find(|(s, p, _)| *s == svc && *p == proto)
            .map(|(_, _, a)| *a)
    }

    /// The bound address of every service.
    pub fn addrs(&self) -> &ServerAddrs {
        &self.addrs
    }

    /// Every bound service, in bind order.
    pub fn bound(&self) -> &[(Mode, Proto, SocketAddr)] {
        &self.bound
    }

    /// Counters summed over all workers (workers publish once per event batch).
    pub fn counters(&self) -> Counters {
        self.stats.snapshot()
    }

    /// Reads the counters from another thread (a metrics endpoint), as [`Self::counters`].
    pub fn counter_reader(&self) -> impl Fn() -> Counters + Send + Sync + 'static {
        let stats = self.stats.clone();
        move || stats.snapshot()
    }

    /// The sources the UDP rate limit has dropped datagrams from (each announced once on
    /// stderr when it started).
    pub fn rate_limited_sources(&self) -> Vec<std::net::IpAddr> {
        self.stats.announce.sources()
    }

    /// The counters of each bound service, by protocol, with its address (their sum is
    /// [`Self::counters`], but for the open-connection gauge, which is global).
    pub fn counters_by_service(&self) -> Vec<(Mode, Proto, SocketAddr, Counters)> {
        by_service(&self.stats, &self.bound)
    }

    /// [`Self::counters_by_service`] from another thread.
    pub fn service_reader(
        &self,
    ) -> impl Fn() -> Vec<(Mode, Proto, SocketAddr, Counters)> + Send + Sync + 'static {
        let stats = self.stats.clone();
        let bound = self.bound.clone();
        move || by_service(&stats, &bound)
    }

    /// Stops every worker and joins them. Workers never block longer than their poll timeout,
    /// so this returns within about [`STOP_BOUND`].
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        match self.inner.take() {
            Some(r) => r.join(),
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

fn by_service(
    stats: &stats::Shared,
    bound: &[(Mode, Proto, SocketAddr)],
) -> Vec<(Mode, Proto, SocketAddr, Counters)> {
    stats
        .by_service()
        .into_iter()
        .filter_map(|(m, p, c)| {
            let (_, _, a) = bound.iter().find(|(bm, bp, _)| *bm == m && *bp == p)?;
            Some((m, p, *a, c))
        })
        .collect()
}

/// The longest a worker sleeps before it notices a stop request it was not woken for.
pub const STOP_BOUND: Duration = Duration::from_millis(200);

/// Binds every enabled service and starts the workers. Takes a [`ServeConfig`] or
/// `cli::ServeArgs` (by value or reference).
pub fn spawn(cfg: impl Into<ServeConfig>) -> anyhow::Result<ServerHandle> {
    let cfg: ServeConfig = cfg.into();
    cfg.validate()?;
    let stats = Arc::new(stats::Shared::new(cfg.threads));
    let stop = Arc::new(AtomicBool::new(false));
    let (bound, running) = imp::start(&cfg, &stats, &stop)?;
    let addrs = ServerAddrs::from_list(&bound);
    Ok(ServerHandle {
        bound,
        addrs,
        stats,
        stop,
        inner: Some(native(running)),
    })
}

/// `echoload serve`: runs until SIGINT/SIGTERM, then prints the counters (and every
/// `stats_every` seconds when that is above 0).
pub fn run(cfg: &ServeConfig, stats_every: f64) -> anyhow::Result<()> {
    run_with_metrics(cfg, stats_every, None)
}

/// [`run`], with the counters also on a Prometheus endpoint (`--metrics ADDR`).
pub fn run_with_metrics(
    cfg: &ServeConfig,
    stats_every: f64,
    metrics: Option<&str>,
) -> anyhow::Result<()> {
    let h = spawn(cfg)?;
    let _endpoint = metrics
        .map(|addr| metrics::serve_server_counters(addr, &h))
        .transpose()?;
    for (svc, proto, addr) in h.bound() {
        crate::output::println(&format!(
            "{:<8} {:<3} {addr}",
            svc.name(),
            if *proto == Proto::Tcp { "tcp" } else { "udp" }
        ));
    }
    crate::output::println(&format!(
        "serving with {} thread(s), max {} TCP connections; Ctrl-C stops",
        cfg.threads, cfg.max_conns
    ));
    crate::signals::install();
    let started = std::time::Instant::now();
    let mut last = started;
    let mut prev = h.counters();
    while !crate::signals::requested() {
        std::thread::sleep(Duration::from_millis(100));
        let secs = last.elapsed().as_secs_f64();
        if stats_every > 0.0 && secs >= stats_every {
            last = std::time::Instant::now();
            let cur = h.counters();
            // Rates over the last period with the time they were measured at; the totals
            // after them.
            eprintln!(
                "{}",
                stats::rate_line(
                    &prev,
                    &cur,
                    secs,
                    std::time::SystemTime::now(),
                    started.elapsed().as_secs_f64()
                )
            );
            eprintln!("  total: {cur}");
            prev = cur;
        }
    }
    let c = h.counters();
    h.stop()?;
    crate::output::println(&c.to_string());
    Ok(())
}

#[cfg(target_os = "linux")]
use linux as imp;
#[cfg(not(target_os = "linux"))]
use portable as imp;

/// Like [`spawn`], but always with the portable std::net back end (thread per connection),
/// which `spawn` uses where the epoll back end does not exist (Windows). Public so the
/// portable back end is tested on Linux too.
pub fn spawn_portable(cfg: impl Into<ServeConfig>) -> anyhow::Result<ServerHandle> {
    let cfg: ServeConfig = cfg.into();
    cfg.validate()?;
    let stats = Arc::new(stats::Shared::new(cfg.threads));
    let stop = Arc::new(AtomicBool::new(false));
    let (bound, running) = portable::start(&cfg, &stats, &stop)?;
    let addrs = ServerAddrs::from_list(&bound);
    Ok(ServerHandle {
        bound,
        addrs,
        stats,
        stop,
        inner: Some(Inner::Portable(running)),
    })
}

enum Inner {
    #[cfg(target_os = "linux")]
    Native(imp::Running),
    Portable(portable::Running),
}

impl Inner {
    fn join(self) -> anyhow::Result<()> {
        match self {
            #[cfg(target_os = "linux")]
            Inner::Native(r) => r.join(),
            Inner::Portable(r) => r.join(),
        }
    }
}

#[cfg(target_os = "linux")]
fn native(r: imp::Running) -> Inner {
    Inner::Native(r)
}

#[cfg(not(target_os = "linux"))]
fn native(r: imp::Running) -> Inner {
    Inner::Portable(r)
}
