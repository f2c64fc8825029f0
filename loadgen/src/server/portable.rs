//! Portable back end over std::net (the Windows build of `echoload serve`, and a fallback):
//! a thread per listener, per UDP socket and per TCP connection, blocking I/O with short
//! timeouts so every thread notices a stop request within [`STOP_BOUND`]. Simpler and slower
//! than the Linux epoll back end, with the same services, limits and counters.

use super::pattern::Block;
use super::stats::Shared;
use super::{Counters, Mode, Proto, ServeConfig, STOP_BOUND};
use anyhow::Context as _;
use control::protocol::sockperf::{self, Verdict, HEADER_LEN, MAX_TCP_MSG};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub(super) struct Running {
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Running {
    /// The caller has set the stop flag; every thread sees it within STOP_BOUND.
    pub(super) fn join(self) -> anyhow::Result<()> {
        let mut panicked = false;
        loop {
            let batch: Vec<_> = std::mem::take(
                &mut *self
                    .threads
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            if batch.is_empty() {
                break;
            }
            for t in batch {
                panicked |= t.join().is_err();
            }
        }
        anyhow::ensure!(!panicked, "a server thread panicked");
        Ok(())
    }
}

#[derive(Clone)]
struct Ctx {
    stats: Arc<Shared>,
    stop: Arc<AtomicBool>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    max_conns: usize,
    guard: super::GuardConfig,
    /// Ports of every service we serve (TCP and UDP), for the guard.
    own_ports: Arc<Vec<u16>>,
    block: Arc<Block>,
}

impl Ctx {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn spawn(&self, name: String, f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
        let t = std::thread::Builder::new().name(name).spawn(f)?;
        self.threads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(t);
        Ok(())
    }

    /// Every portable thread publishes into the first worker's slot of its service: the
    /// counters are summed anyway, and the slot's atomics make concurrent adds safe (a lost
    /// update is impossible with fetch_add).
    fn add(&self, svc: Mode, proto: Proto, c: &Counters) {
        self.stats
            .add_shared(super::stats::service_index(svc, proto), c);
    }
}

type Started = (Vec<(Mode, Proto, SocketAddr)>, Running);

pub(super) fn start(
    cfg: &ServeConfig,
    stats: &Arc<Shared>,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Started> {
    let mut bound = Vec::new();
    let mut listeners = Vec::new();
    let mut udps = Vec::new();
    for svc in Mode::ALL {
        let Some(port) = cfg.port(svc) else { continue };
        let (l, u) = bind_pair(cfg, port)
            .with_context(|| format!("cannot bind {} on {}:{port}", svc.name(), cfg.bind))?;
        bound.push((svc, Proto::Tcp, l.local_addr()?));
        bound.push((svc, Proto::Udp, u.local_addr()?));
        listeners.push((svc, l));
        udps.push((svc, u));
    }
    let own = ServeConfig::own_ports(&bound);
    let ctx = Ctx {
        stats: stats.clone(),
        stop: stop.clone(),
        threads: Arc::new(Mutex::new(Vec::new())),
        max_conns: cfg.max_conns,
        guard: cfg.guard,
        own_ports: Arc::new(own),
        block: Arc::new(Block::new()),
    };
    let running = Running {
        threads: ctx.threads.clone(),
    };
    let started = (|| -> std::io::Result<()> {
        for (svc, l) in listeners {
            let c = ctx.clone();
            ctx.spawn(format!("echoload-{}-tcp", svc.name()), move || {
                accept_loop(&l, svc, &c);
            })?;
        }
        for (svc, u) in udps {
            let c = ctx.clone();
            ctx.spawn(format!("echoload-{}-udp", svc.name()), move || {
                udp_loop(&u, svc, &c);
            })?;
        }
        Ok(())
    })();
    if let Err(e) = started {
        stop.store(true, Ordering::SeqCst);
        let _ = running.join();
        return Err(e).context("cannot start server thread");
    }
    Ok((bound, running))
}

/// TCP and UDP on one port; with port 0, retried until both get the same one.
fn bind_pair(cfg: &ServeConfig, port: u16) -> std::io::Result<(TcpListener, UdpSocket)> {
    let mut last = None;
    for _ in 0..16 {
        let l = TcpListener::bind(SocketAddr::new(cfg.bind, port))?;
        let p = l.local_addr()?.port();
        match UdpSocket::bind(SocketAddr::new(cfg.bind, p)) {
            Ok(u) => {
                l.set_nonblocking(true)?;
                u.set_read_timeout(Some(STOP_BOUND / 2))?;
                return Ok((l, u));
            }
            Err(e) if port == 0 && e.kind() == ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no port")))
}

fn accept_loop(l: &TcpListener, svc: Mode, ctx: &Ctx) {
    while !ctx.stopped() {
        match l.accept() {
            Ok((s, _)) => {
                let max = ctx.max_conns as u64;
                let admitted =
                    ctx.stats
                        .open
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                            (v < max).then_some(v + 1)
                        });
                if admitted.is_err() {
                    // Counted first, so whoever sees the close also sees the count; then dropped
                    // at once: the client sees its connection closed, nothing served.
                    ctx.add(
                        svc,
                        Proto::Tcp,
                        &Counters {
                            tcp_refused: 1,
                            ..Counters::default()
                        },
                    );
                    drop(s);
                    continue;
                }
                ctx.add(
                    svc,
                    Proto::Tcp,
                    &Counters {
                        tcp_accepted: 1,
                        ..Counters::default()
                    },
                );
                let c = ctx.clone();
                let spawned = ctx.spawn(format!("echoload-{}-conn", svc.name()), move || {
                    serve_conn(s, svc, &c);
                    c.stats.open.fetch_sub(1, Ordering::Relaxed);
                });
                if spawned.is_err() {
                    ctx.stats.open.fetch_sub(1, Ordering::Relaxed);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(STOP_BOUND / 10),
            Err(_) => std::thread::sleep(STOP_BOUND / 10),
        }
    }
}

fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

/// write_all that gives up when the server stops (a client that never reads blocks us here,
/// which is the backpressure we want, but must not block shutdown).
fn send_all(s: &mut TcpStream, mut buf: &[u8], ctx: &Ctx, c: &mut Counters) -> bool {
    while !buf.is_empty() {
        match s.write(buf) {
            Ok(0) => return false,
            Ok(n) => {
                c.tx_bytes += n as u64;
                buf = &buf[n..];
            }
            Err(e) if timed_out(&e) => {
                if ctx.stopped() {
                    return false;
                }
            }
            Err(_) => return false,
        }
    }
    true
}

fn serve_conn(mut s: TcpStream, svc: Mode, ctx: &Ctx) {
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(STOP_BOUND / 2));
    let _ = s.set_write_timeout(Some(STOP_BOUND / 2));
    let mut c = Counters::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut have = 0usize;
    let mut src_off = 0u64;
    let mut out = Vec::new();
    // Echo: echoload-wire messages each way (see `server::framing`).
    let mut frames_in = super::framing::Framer::default();
    let mut frames_out = super::framing::Framer::default();
    while !ctx.stopped() {
        if svc == Mode::Source {
            if !send_all(&mut s, ctx.block.window(src_off), ctx, &mut c) {
                break;
            }
            src_off += super::pattern::Block::CHUNK as u64;
            ctx.add(svc, Proto::Tcp, &std::mem::take(&mut c));
            continue;
        }
        let n = match s.read(&mut buf[have..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if timed_out(&e) => continue,
            Err(_) => break,
        };
        c.rx_bytes += n as u64;
        let ok = match svc {
            Mode::Echo => {
                c.rx_msgs += frames_in.feed(&buf[..n]);
                let ok = send_all(&mut s, &buf[..n], ctx, &mut c);
                if ok {
                    c.tx_msgs += frames_out.feed(&buf[..n]);
                }
                ok
            }
            Mode::Discard | Mode::Source => true,
            Mode::Sockperf => {
                have += n;
                match frames(&mut buf, &mut have, &mut out, &mut c) {
                    Ok(()) => {
                        let ok = send_all(&mut s, &out, ctx, &mut c);
                        out.clear();
                        ok
                    }
                    Err(()) => false,
                }
            }
        };
        ctx.add(svc, Proto::Tcp, &std::mem::take(&mut c));
        if !ok {
            break;
        }
    }
    ctx.add(svc, Proto::Tcp, &c);
}

/// Moves complete sockperf frames out of `buf[..*have]`, replies into `out`; grows `buf` for
/// a frame larger than it. `Err` on a malformed frame.
fn frames(
    buf: &mut Vec<u8>,
    have: &mut usize,
    out: &mut Vec<u8>,
    c: &mut Counters,
) -> Result<(), ()> {
    let mut at = 0;
    while *have - at >= HEADER_LEN {
        let h = sockperf::Header::decode(&buf[at..*have]).ok_or(())?;
        let len = h.len as usize;
        if !(HEADER_LEN..=MAX_TCP_MSG).contains(&len) {
            c.sockperf_bad_frames += 1;
            return Err(());
        }
        if *have - at < len {
            break;
        }
        match sockperf::verdict(h.flags) {
            Verdict::Ignore => {}
            Verdict::Count => {
                c.rx_msgs += 1;
                c.sockperf_counted += 1;
            }
            Verdict::Reply => {
                let start = out.len();
                out.extend_from_slice(&buf[at..at + len]);
                sockperf::make_reply_in_place(&mut out[start..]);
                c.rx_msgs += 1;
                c.tx_msgs += 1;
            }
        }
        at += len;
    }
    buf.copy_within(at..*have, 0);
    *have -= at;
    if *have >= HEADER_LEN {
        let want = sockperf::Header::decode(buf).map_or(0, |h| h.len as usize);
        if want > buf.len() {
            buf.resize(want, 0);
        }
    }
    Ok(())
}

fn udp_loop(u: &UdpSocket, svc: Mode, ctx: &Ctx) {
    let mut buf = vec![0u8; 65_536];
    let mut guard = super::guard::Guard::new(ctx.guard, ctx.own_ports.to_vec())
        .announcing(ctx.stats.announce.clone());
    while !ctx.stopped() {
        let Ok((n, from)) = u.recv_from(&mut buf) else {
            continue;
        };
        let mut c = Counters {
            rx_msgs: 1,
            rx_bytes: n as u64,
            ..Counters::default()
        };
        let reply_len = match svc {
            Mode::Discard => None,
            _ if !guard.admit(from, 1, &mut c) => None,
            Mode::Echo => Some(n),
            Mode::Source => {
                buf[..n].copy_from_slice(&ctx.block.window(0)[..n]);
                Some(n)
            }
            Mode::Sockperf => match sockperf::Header::decode(&buf[..n]) {
                Some(h) if h.len as usize == n => match sockperf::verdict(h.flags) {
                    Verdict::Ignore => None,
                    Verdict::Count => {
                        c.sockperf_counted += 1;
                        None
                    }
                    Verdict::Reply => {
                        sockperf::make_reply_in_place(&mut buf[..n]);
                        Some(n)
                    }
                },
                _ => {
                    c.sockperf_bad_frames += 1;
                    None
                }
            },
        };
        if let Some(len) = reply_len {
            match u.send_to(&buf[..len], from) {
                Ok(w) => {
                    c.tx_msgs += 1;
                    c.tx_bytes += w as u64;
                }
                Err(_) => c.udp_dropped += 1,
            }
        }
        ctx.add(svc, Proto::Udp, &c);
    }
}
