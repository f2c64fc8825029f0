//! Faults a test injects on purpose: one-shot call failures (the seeded schedule keeps
//! them) and sockets that stop working as a failing transport's would.

pub use crate::kernel::config::Call;
pub use crate::kernel::schedule::{fail_next, fail_next_alloc_tagged};

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

/// Datagrams a datagram socket receives from host source port `from_port` are indicated to
/// WskReceiveFromEvent with RemoteAddress `present_as` (when given) and with `flags` ORed into
/// the callback's Flags (e.g. MSG_BCAST / MSG_MCAST, W60), each in a list of its own (Flags
/// describe the whole list). For sources and flags loopback cannot produce: a multicast or
/// unspecified source address, a datagram sent to a broadcast address. Only the event path is
/// affected (not WskReceiveFrom IRPs). Cleared by [`crate::init`].
pub fn disguise_datagrams(from_port: u16, present_as: Option<std::net::SocketAddr>, flags: u32) {
    crate::wsk::disguise::set(from_port, present_as, flags);
}
