//! The served sockets: one listener per TCP service (`listener`), whose accepted connections
//! run on the TCP engine (`crate::conn`), and one datagram socket per UDP service (`udp`).
//! Nothing here knows load jobs exist.

pub(crate) mod listener;
pub(crate) mod udp;
