//! Faults a test injects on purpose: one-shot call failures (the seeded schedule keeps
//! them) and sockets that stop working as a failing transport's would.

pub use crate::config::Call;
pub use crate::kernel::schedule::{
    fail_next, fail_next_alloc_tagged, hold_datagram_sends, leave_unfinished,
};

/// Makes the listening and datagram sockets bound to `local` no longer functional, as a failing transport
/// would: pending IRPs complete with STATUS_FILE_FORCED_CLOSED (W15), the host socket is
/// closed (connections reset), and each socket gets one NULL indication if its callback is
/// enabled: WskAcceptEvent with a NULL AcceptSocket (W48, once: G4), WskReceiveFromEvent
/// with a NULL list (W60), WskReceiveEvent with a NULL DataIndication (W52, no disconnect
/// event after it: G7). Returns how many sockets it killed.
pub fn kill_socket(local: std::net::SocketAddr) -> usize {
    crate::wsk::socket::kill(local, None)
}

/// The same for the connection socket `local` <-> `remote` (accepted sockets share the
/// listener's local address, so the peer's address picks one).
pub fn kill_connection(local: std::net::SocketAddr, remote: std::net::SocketAddr) -> usize {
    crate::wsk::socket::kill(local, Some(remote))
}

/// Connects to `remote` still waiting for an answer fail now with STATUS_IO_TIMEOUT, as when
/// TCP's SYN retries run out (about 21 s on Windows, 127 s on Linux): a test that connects to
/// an address that never answers ([`FullBacklog`]) ends those connects without waiting that
/// long. Returns how many it ended.
pub fn time_out_connects(remote: std::net::SocketAddr) -> usize {
    crate::wsk::socket::time_out_connects(remote)
}

/// A loopback TCP port that never answers a connect: a listener with a backlog of 0 that
/// nobody accepts from, its one queue slot taken by a connection of its own. A SYN to it is
/// dropped (Linux, `tcp_abort_on_overflow` 0) and the connect waits through every SYN retry,
/// as to a black hole, until [`FullBacklog::answer`]. Closed when dropped.
pub struct FullBacklog {
    listener: std::sync::Arc<socket2::Socket>,
    _filler: std::net::TcpStream,
    addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for FullBacklog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FullBacklog")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FullBacklog {
    /// A full-backlog port on `ip` (a loopback address).
    pub fn new(ip: std::net::IpAddr) -> std::io::Result<FullBacklog> {
        use socket2::{Domain, Socket, Type};
        let l = Socket::new(Domain::for_address((ip, 0).into()), Type::STREAM, None)?;
        l.bind(&std::net::SocketAddr::new(ip, 0).into())?;
        l.listen(0)?;
        let addr = l
            .local_addr()?
            .as_socket()
            .ok_or_else(|| std::io::Error::other("no address"))?;
        let filler =
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))?;
        Ok(FullBacklog {
            listener: std::sync::Arc::new(l),
            _filler: filler,
            addr,
            stop: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
            acceptor: None,
        })
    }

    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// From now on the port answers, late, as a slow server would: the backlog grows (a
    /// second listen) and a thread accepts and holds every connection until drop. A connect
    /// already waiting completes at its next SYN retry (1 s, 3 s, 7 s ... after its first).
    pub fn answer(&mut self) -> std::io::Result<()> {
        if self.acceptor.is_some() {
            return Ok(());
        }
        self.listener.listen(1024)?;
        self.listener.set_nonblocking(true)?;
        let (l, stop) = (self.listener.clone(), self.stop.clone());
        self.acceptor = Some(std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                match l.accept() {
                    // Bounded: a test's connects, not a flood.
                    Ok((s, _)) if held.len() < 4096 => held.push(s),
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
                }
            }
        }));
        Ok(())
    }
}

impl Drop for FullBacklog {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }
}

/// Datagrams a datagram socket receives from host source port `from_port` are indicated to
/// WskReceiveFromEvent with RemoteAddress `present_as` (when given) and with `flags` ORed into
/// the callback's Flags (e.g. MSG_BCAST / MSG_MCAST, W60), each in a list of its own (Flags
/// describe the whole list). For sources and flags loopback cannot produce: a multicast or
/// unspecified source address, a datagram sent to a broadcast address. Only the event path is
/// affected (not WskReceiveFrom IRPs). Cleared by [`crate::init`].
pub fn disguise_datagrams(from_port: u16, present_as: Option<std::net::SocketAddr>, flags: u32) {
    crate::wsk::disguise::set(from_port, present_as, flags);
}

#[cfg(test)]
mod tests {
    use super::FullBacklog;
    use std::time::Duration;

    /// A connect to a full backlog gets no answer (it would wait through the SYN retries).
    #[test]
    fn full_backlog_never_answers() {
        let b = FullBacklog::new(std::net::Ipv4Addr::LOCALHOST.into()).unwrap();
        let r = std::net::TcpStream::connect_timeout(&b.addr(), Duration::from_millis(300));
        let e = r.expect_err("a full backlog answered");
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
    }

    /// Once it answers, a new connect gets in at once.
    #[test]
    fn full_backlog_answers_when_told() {
        let mut b = FullBacklog::new(std::net::Ipv4Addr::LOCALHOST.into()).unwrap();
        b.answer().unwrap();
        for _ in 0..3 {
            std::net::TcpStream::connect_timeout(&b.addr(), Duration::from_secs(2)).unwrap();
        }
    }
}
