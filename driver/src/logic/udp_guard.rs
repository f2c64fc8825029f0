//! The UDP reflection and loop guard's decision (which datagrams a UDP service drops, and why;
//! which sources are rate limited). Platform-free, it lives in the control crate so that
//! `echoload serve` applies exactly the same rules; this room re-exports it for `serve::udp`.

pub use control::udp_guard::{check, rate_limited_source, GuardDrop};
