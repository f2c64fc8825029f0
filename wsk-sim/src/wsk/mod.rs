//! The WSK provider (NETIO.SYS's side of wsk.h) over host sockets.

pub(crate) mod addr;
pub(crate) mod complete;
pub(crate) mod connection;
pub(crate) mod control;
pub(crate) mod datagram;
pub(crate) mod indication;
pub(crate) mod listen;
pub(crate) mod poller;
pub(crate) mod registration;
pub(crate) mod socket;

pub use indication::RELEASED_POISON;
