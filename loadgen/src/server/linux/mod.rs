//! Linux back end: one epoll worker per thread, SO_REUSEPORT sockets per worker.

mod sys;
mod tcp;
mod udp;
mod worker;

use super::stats::Shared;
use super::{Mode, Proto, ServeConfig};
use anyhow::Context as _;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use worker::{Bound, WorkerCtx};

pub(super) struct Running {
    threads: Vec<JoinHandle<io::Result<()>>>,
    wakers: Vec<Arc<sys::Waker>>,
}

impl Running {
    /// The caller has set the stop flag; wake every worker so none waits out its timeout.
    pub(super) fn join(self) -> anyhow::Result<()> {
        for w in &self.wakers {
            w.wake();
        }
        let mut first_err = None;
        for t in self.threads {
            let r = match t.join() {
                Ok(r) => r.context("server worker failed"),
                Err(_) => Err(anyhow::anyhow!("server worker panicked")),
            };
            if let Err(e) = r {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

const LISTEN_BACKLOG: i32 = 1024;
/// Kernel buffers for UDP sockets: bursts of GSO traffic must not overflow them.
const UDP_BUF: usize = 4 << 20;
/// TCP discard: SO_RCVLOWAT of its connections (inherited from the listener), so a worker
/// wakes when this much has arrived, not for every segment. A discard server has nothing to
/// answer, so waiting for more costs no one a round trip, and every wake-up it saves is one
/// drain, one window update and the sender's processing of that update saved: a one-connection
/// sink into it measured 183-257 CPU-ms per GB (client and server together) against 268-497
/// without, 24-31 against 11-21 Gbit/s on loopback (2026-12-07, issue 20). Linux still wakes
/// the reader below the mark when the connection ends (FIN), when the receive window is about
/// to close and under memory pressure (tcp_epollin_ready), so nothing stalls and at the end every
/// byte is drained and counted; while a connection stays open, the service's byte count may lag
/// what arrived by up to this much.
const DISCARD_RCVLOWAT: libc::c_int = 1 << 20;
/// Attempts at finding a port free for TCP and UDP at once when the config says 0.
const PORT_TRIES: usize = 16;

fn bind_one(proto: Proto, addr: SocketAddr) -> io::Result<Socket> {
    let (ty, p) = match proto {
        Proto::Tcp => (Type::STREAM, Protocol::TCP),
        Proto::Udp => (Type::DGRAM, Protocol::UDP),
    };
    let s = Socket::new(Domain::for_address(addr), ty, Some(p))?;
    if proto == Proto::Tcp {
        s.set_reuse_address(true)?;
    }
    // One socket per worker on the same port; the kernel spreads flows and connections.
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    match proto {
        Proto::Tcp => s.listen(LISTEN_BACKLOG)?,
        Proto::Udp => {
            let _ = s.set_recv_buffer_size(UDP_BUF);
            let _ = s.set_send_buffer_size(UDP_BUF);
            // GRO is an optimisation: older kernels without it still work, one datagram each.
            let _ = sys::set_int_opt(
                std::os::fd::AsRawFd::as_raw_fd(&s),
                libc::SOL_UDP,
                libc::UDP_GRO,
                1,
            );
        }
    }
    Ok(s)
}

/// SO_REUSEPORT would let us silently share a fixed port with another process that also set
/// it (an old `echoload serve`, say), splitting its traffic. A plain bind first proves the
/// port is free.
fn probe_free(proto: Proto, addr: SocketAddr) -> io::Result<()> {
    let (ty, p) = match proto {
        Proto::Tcp => (Type::STREAM, Protocol::TCP),
        Proto::Udp => (Type::DGRAM, Protocol::UDP),
    };
    let s = Socket::new(Domain::for_address(addr), ty, Some(p))?;
    if proto == Proto::Tcp {
        s.set_reuse_address(true)?;
    }
    s.bind(&addr.into())
}

/// Binds TCP and UDP sockets of one service for every worker, on one port for both.
fn bind_service(
    cfg: &ServeConfig,
    svc: Mode,
    port: u16,
) -> anyhow::Result<Vec<(usize, Proto, Socket)>> {
    let mut last_err = None;
    for _ in 0..PORT_TRIES {
        let mut socks = Vec::with_capacity(cfg.threads * 2);
        let mut p = port;
        let r = (|| -> io::Result<()> {
            for proto in [Proto::Tcp, Proto::Udp] {
                if p != 0 {
                    probe_free(proto, SocketAddr::new(cfg.bind, p))?;
                }
                for w in 0..cfg.threads {
                    let s = bind_one(proto, SocketAddr::new(cfg.bind, p))?;
                    if svc == Mode::Discard && proto == Proto::Tcp {
                        sys::set_int_opt(
                            std::os::fd::AsRawFd::as_raw_fd(&s),
                            libc::SOL_SOCKET,
                            libc::SO_RCVLOWAT,
                            DISCARD_RCVLOWAT,
                        )?;
                    }
                    if p == 0 {
                        p = s.local_addr()?.as_socket().map_or(0, |a| a.port());
                    }
                    socks.push((w, proto, s));
                }
            }
            Ok(())
        })();
        match r {
            Ok(()) => return Ok(socks),
            Err(e) if port == 0 && e.kind() == io::ErrorKind::AddrInUse => last_err = Some(e),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot bind {} on {}",
                        svc.name(),
                        SocketAddr::new(cfg.bind, p)
                    )
                })
            }
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("no port")))
        .context(format!("no free port for {}", svc.name()))
}

type Started = (Vec<(Mode, Proto, SocketAddr)>, Running);

pub(super) fn start(
    cfg: &ServeConfig,
    stats: &Arc<Shared>,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Started> {
    let mut per_worker: Vec<Vec<Bound>> = (0..cfg.threads).map(|_| Vec::new()).collect();
    let mut addrs = Vec::new();
    for svc in Mode::ALL {
        let Some(port) = cfg.port(svc) else { continue };
        for (w, proto, sock) in bind_service(cfg, svc, port)? {
            if w == 0 {
                let a = sock
                    .local_addr()?
                    .as_socket()
                    .context("bound address is not IP")?;
                addrs.push((svc, proto, a));
            }
            per_worker[w].push(Bound { svc, proto, sock });
        }
    }
    let own_ports = ServeConfig::own_ports(&addrs);
    let mut threads = Vec::new();
    let mut wakers = Vec::new();
    for (id, bound) in per_worker.into_iter().enumerate() {
        let waker = Arc::new(sys::Waker::new()?);
        wakers.push(waker.clone());
        let sh = WorkerCtx {
            stats: stats.clone(),
            stop: stop.clone(),
            waker,
            max_conns: cfg.max_conns,
            guard: cfg.guard,
            own_ports: own_ports.clone(),
        };
        let t = std::thread::Builder::new()
            .name(format!("echoload-srv{id}"))
            .spawn(move || worker::run(id, bound, &sh));
        match t {
            Ok(t) => threads.push(t),
            Err(e) => {
                stop.store(true, std::sync::atomic::Ordering::SeqCst);
                let _ = Running { threads, wakers }.join();
                return Err(e).context("cannot start server thread");
            }
        }
    }
    Ok((addrs, Running { threads, wakers }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn rcvlowat(s: &Socket) -> libc::c_int {
        let mut v: libc::c_int = 0;
        let mut len = size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: a live socket; v and len are valid for the call.
        let r = unsafe {
            libc::getsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVLOWAT,
                (&raw mut v).cast(),
                &raw mut len,
            )
        };
        assert_eq!(r, 0, "{}", io::Error::last_os_error());
        v
    }

    /// Issue 20: the TCP discard listeners carry SO_RCVLOWAT (their connections inherit it),
    /// so a discard worker wakes per megabyte, not per segment; no other socket has it.
    #[test]
    fn only_tcp_discard_waits_for_a_megabyte() {
        let cfg = ServeConfig {
            threads: 2,
            ..ServeConfig::default()
        };
        for svc in [Mode::Discard, Mode::Echo] {
            let socks = bind_service(&cfg, svc, 0).unwrap();
            assert_eq!(socks.len(), 4, "TCP and UDP for each of 2 workers");
            for (_, proto, s) in &socks {
                let want = if svc == Mode::Discard && *proto == Proto::Tcp {
                    DISCARD_RCVLOWAT
                } else {
                    1
                };
                assert_eq!(rcvlowat(s), want, "{} {proto:?}", svc.name());
            }
        }
    }
}
