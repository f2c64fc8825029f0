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
