//! One worker thread: one epoll loop over its own listeners, UDP sockets and connections.

use super::sys::{self, Epoll, Waker};
use super::tcp::{Conn, Next, Scratch};
use super::udp::{self, Batch};
use crate::server::pattern::Block;
use crate::server::stats::{service_index, Shared, SERVICES};
use crate::server::{Counters, Mode, Proto, STOP_BOUND};
use socket2::Socket;
use std::io::{self, ErrorKind};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Bytes one TCP discard drain asks for: several times the listener's SO_RCVLOWAT (see
/// `DISCARD_RCVLOWAT`), so one call takes what gathered.
const DISCARD_BUF: usize = 4 << 20;

/// A socket bound for one worker.
pub(crate) struct Bound {
    pub(crate) svc: Mode,
    pub(crate) proto: Proto,
    pub(crate) sock: Socket,
}

/// What the worker shares with the rest of the server.
pub(crate) struct WorkerCtx {
    pub(crate) stats: Arc<Shared>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) waker: Arc<Waker>,
    pub(crate) max_conns: usize,
    pub(crate) guard: crate::server::GuardConfig,
    /// Ports of every service we serve (TCP and UDP), for the guard.
    pub(crate) own_ports: Vec<u16>,
}

enum Entry {
    Free,
    Wake,
    Listener(Mode, Socket),
    Udp(Mode, Socket),
    Conn(Box<Conn>),
}

/// Accepts per listener readiness before serving the connections again.
const ACCEPTS: usize = 64;
const TOKEN_WAKE: u64 = 0;

pub(crate) fn run(id: usize, bound: Vec<Bound>, sh: &WorkerCtx) -> io::Result<()> {
    let ep = Epoll::new()?;
    let mut entries: Vec<Entry> = vec![Entry::Wake];
    let mut free: Vec<usize> = Vec::new();
    ep.add(sh.waker.fd(), libc::EPOLLIN as u32, TOKEN_WAKE)?;
    for b in bound {
        let token = entries.len() as u64;
        ep.add(b.sock.as_raw_fd(), libc::EPOLLIN as u32, token)?;
        entries.push(match b.proto {
            Proto::Tcp => Entry::Listener(b.svc, b.sock),
            Proto::Udp => Entry::Udp(b.svc, b.sock),
        });
    }
    let mut reserve = open_reserve();
    let mut scratch = Scratch {
        // As large as a drain may be: with MSG_TRUNC nothing is copied into it (so its pages
        // are never touched), and one call takes all that SO_RCVLOWAT let gather.
        discard: vec![0u8; DISCARD_BUF].into_boxed_slice(),
        block: Block::new(),
    };
    let mut batch = Batch::new();
    let mut guard = crate::server::guard::Guard::new(sh.guard, sh.own_ports.clone())
        .announcing(sh.stats.announce.clone());
    // One tally per (service, protocol): the metrics are labelled by both.
    let mut local = [Counters::default(); SERVICES];
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let timeout = STOP_BOUND.as_millis() as i32;

    while !sh.stop.load(Ordering::Relaxed) {
        let n = ep.wait(&mut events, timeout)?;
        for ev in &events[..n] {
            let (token, bits) = (ev.u64 as usize, ev.events);
            match &mut entries[token] {
                Entry::Free | Entry::Wake => {}
                Entry::Udp(svc, sock) => {
                    let mut ctx = udp::Ctx {
                        guard: &mut guard,
                        block: &scratch.block,
                    };
                    let c = &mut local[service_index(*svc, Proto::Udp)];
                    batch.on_readable(sock.as_raw_fd(), *svc, &mut ctx, c);
                }
                Entry::Listener(svc, sock) => {
                    let (svc, lfd) = (*svc, sock.as_raw_fd());
                    let mut st = AcceptState {
                        entries: &mut entries,
                        free: &mut free,
                        reserve: &mut reserve,
                    };
                    let c = &mut local[service_index(svc, Proto::Tcp)];
                    accept_some(lfd, svc, sh, &ep, &mut st, c);
                }
                Entry::Conn(conn) => {
                    let c = &mut local[service_index(conn.svc, Proto::Tcp)];
                    let next = conn.on_event(bits, &mut scratch, c);
                    match next {
                        Next::Close | Next::CloseBad => {
                            entries[token] = Entry::Free;
                            free.push(token);
                            sh.stats.open.fetch_sub(1, Ordering::Relaxed);
                        }
                        _ => {
                            let want = next.events();
                            if want != conn.events {
                                if ep.modify(conn.fd.as_raw_fd(), want, token as u64).is_err() {
                                    entries[token] = Entry::Free;
                                    free.push(token);
                                    sh.stats.open.fetch_sub(1, Ordering::Relaxed);
                                    continue;
                                }
                                conn.events = want;
                            }
                        }
                    }
                }
            }
        }
        for (k, c) in local.iter_mut().enumerate() {
            sh.stats.publish(id, k, c);
        }
    }
    let conns = entries
        .iter()
        .filter(|e| matches!(e, Entry::Conn(_)))
        .count() as u64;
    sh.stats.open.fetch_sub(conns, Ordering::Relaxed);
    Ok(())
}

/// A descriptor held back for the moment the process runs out of them: a level-triggered
/// listener with a pending connection we cannot accept would otherwise wake us forever.
/// Freeing it lets us accept that connection just to reset it, then we take it back.
fn open_reserve() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

struct AcceptState<'a> {
    entries: &'a mut Vec<Entry>,
    free: &'a mut Vec<usize>,
    reserve: &'a mut Option<std::fs::File>,
}

fn accept_some(
    lfd: i32,
    svc: Mode,
    sh: &WorkerCtx,
    ep: &Epoll,
    st: &mut AcceptState<'_>,
    local: &mut Counters,
) {
    for _ in 0..ACCEPTS {
        let fd = match sys::accept(lfd) {
            Ok(fd) => fd,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                ) =>
            {
                continue
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                if st.reserve.take().is_none() {
                    return;
                }
                if let Ok(fd) = sys::accept(lfd) {
                    sys::close_with_reset(fd);
                    local.tcp_refused += 1;
                }
                *st.reserve = open_reserve();
                continue;
            }
            // WouldBlock: drained. Anything else: retry on the next readiness.
            Err(_) => return,
        };
        let max = sh.max_conns as u64;
        let admitted = sh
            .stats
            .open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                (v < max).then_some(v + 1)
            });
        if admitted.is_err() {
            sys::close_with_reset(fd);
            local.tcp_refused += 1;
            continue;
        }
        local.tcp_accepted += 1;
        // Echo and sockperf answer small messages: Nagle would hold replies back.
        let _ = sys::set_int_opt(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
        let mut conn = Box::new(Conn::new(fd, svc));
        let want = conn.initial().events();
        conn.events = want;
        let raw = conn.fd.as_raw_fd();
        let token = st.free.pop().unwrap_or_else(|| {
            st.entries.push(Entry::Free);
            st.entries.len() - 1
        });
        if ep.add(raw, want, token as u64).is_err() {
            st.free.push(token);
            sh.stats.open.fetch_sub(1, Ordering::Relaxed);
            continue;
        }
        st.entries[token] = Entry::Conn(conn);
    }
}
