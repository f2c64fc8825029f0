//! The served sockets: one listener per TCP service (`listener`), the connections it accepts
//! (`conn`: the connection pool, callbacks and send pump), one datagram socket per UDP service
//! (`udp`). Nothing here knows load jobs exist: an outbound connection brings its own
//! `conn::ClientHooks`.

pub(crate) mod conn;
pub(crate) mod listener;
pub(crate) mod udp;
