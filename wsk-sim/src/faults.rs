//! Faults a test injects on purpose: one-shot call failures (the seeded schedule keeps
//! them) and sockets that stop working as a failing transport's would.

pub use crate::kernel::config::Call;
pub use crate::kernel::schedule::fail_next;

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

/// How datagrams from one host source port are presented: see [`disguise_datagrams`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Disguise {
    pub(crate) present_as: Option<std::net::SocketAddr>,
    pub(crate) flags: u32,
}

static DISGUISES: std::sync::Mutex<Vec<(u16, Disguise)>> = std::sync::Mutex::new(Vec::new());

/// Datagrams a datagram socket receives from host source port `from_port` are indicated to
/// WskReceiveFromEvent with RemoteAddress `present_as` (when given) and with `flags` ORed into
/// the callback's Flags (e.g. MSG_BCAST / MSG_MCAST, W60), each in a list of its own (Flags
/// describe the whole list). For sources and flags loopback cannot produce: a multicast or
/// unspecified source address, a datagram sent to a broadcast address. Only the event path is
/// affected (not WskReceiveFrom IRPs). Cleared by [`crate::init`].
pub fn disguise_datagrams(from_port: u16, present_as: Option<std::net::SocketAddr>, flags: u32) {
    let mut d = DISGUISES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    d.retain(|(p, _)| *p != from_port);
    d.push((from_port, Disguise { present_as, flags }));
}

/// The disguise of datagrams from host source port `port`, if a test set one.
pub(crate) fn disguise_of(port: u16) -> Option<Disguise> {
    DISGUISES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .find(|(p, _)| *p == port)
        .map(|(_, d)| *d)
}

pub(crate) fn clear_disguises() {
    DISGUISES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();
}
