//! UDP hardening, platform-free: the per-source token-bucket rate limit (a fixed table, no
//! allocation; the caller holds the socket's spin lock). Shared with `echoload serve`, so it
//! lives in the control crate next to the guard (`logic::udp_guard`). The CIDR allow-list
//! itself is the control crate's too (`Limits::source_allowed`), shared with the TCP accept
//! path.

pub use control::udp_guard::RateLimiter;
