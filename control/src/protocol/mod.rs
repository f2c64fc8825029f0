//! Wire-level definitions shared by the driver and echoload (`#![no_std]`, no allocation):
//! the one definition of each, so the two sides cannot drift apart.
//!
//! - [`Mode`]: what a service does with the bytes it receives (echo, discard, source,
//!   sockperf); the configuration, the IOCTL ABI, the driver and the reference server all use
//!   this enum.
//! - [`sockperf`]: sockperf's 14-byte message header and how a server classifies a message.
//! - [`pattern`]: the source pattern, byte `i` of a stream is `i % 251`.

mod mode;
pub mod pattern;
pub mod sockperf;

pub use mode::Mode;
