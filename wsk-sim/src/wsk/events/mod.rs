//! Event callbacks, one file per socket kind beside that kind's calls: what the provider
//! threads plan for a socket under the provider lock and what they do once it is released.

pub(crate) mod callback;
pub(crate) mod connection;
pub(crate) mod datagram;
pub(crate) mod listen;

pub(crate) use callback::{Completion, Plan};
