//! wskecho.sys's platform-free decisions: everything that decides, and nothing that calls.
//! No WSK, no FFI, no unsafe code (nothing of wsk-sys; `forbid(unsafe_code)` below), so every
//! module here is unit-tested alone on the host. The driver's kernel rooms (`serve`, `load`)
//! only move buffers and make the WSK calls these modules ask for; the driver re-exports this
//! crate as `crate::logic`.
//!
//! - `tcp`: the per-connection send/receive state machine (zero-copy vs copy, ordering,
//!   backpressure, teardown); `load_client`: the kernel load job client's message state
//!   inside it.
//! - `udp_verdict` below: what a UDP service answers. The per-source rate limiter and the
//!   reflection and loop guard are `control::udp_guard` (shared with `echoload serve`).
//! - `sockperf`: the sockperf datagram rules and the TCP framer; `source`: source send sizes.
//! - `ring`: the copy path's byte ring; `budget`: the global retention budget.
//!
//! Why a crate of its own: its unit tests build and run in seconds without the driver, the
//! simulator or wsk-sys, which is what makes mutation testing the whole of it affordable
//! (`cargo mutants -p wskecho-logic`, README "Mutation testing": each mutant rebuilds only
//! this crate and its tests).
#![no_std]
#![forbid(unsafe_code)]

pub mod budget;
pub mod load_client;
pub mod ring;
pub mod sockperf;
pub mod source;
pub mod tcp;

use control::protocol::Mode;

/// Copies `src` into `dst` from offset `at`, as much as fits; returns the bytes copied. No
/// panic path (an offset past `dst` copies nothing): for code that runs in callbacks.
#[inline]
pub fn copy_at(dst: &mut [u8], at: usize, src: &[u8]) -> usize {
    let Some(d) = dst.get_mut(at..) else {
        return 0;
    };
    let mut n = 0;
    for (x, y) in d.iter_mut().zip(src) {
        *x = *y;
        n += 1;
    }
    n
}

/// The TCP state machine's mode for a served connection of a service in `mode`.
#[inline]
pub fn tcp_mode(mode: Mode) -> tcp::Mode {
    match mode {
        Mode::Echo => tcp::Mode::Echo,
        Mode::Discard => tcp::Mode::Discard,
        Mode::Source => tcp::Mode::Source,
        Mode::Sockperf => tcp::Mode::Sockperf,
    }
}

/// What a UDP service does with one datagram of `len` bytes whose first bytes are `first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpVerdict {
    /// Send the datagram back unchanged (zero-copy from the indication).
    Echo,
    /// Send it back with this 14-byte header in front of bytes 14.. (copy path).
    SockperfReply(control::protocol::sockperf::Header),
    /// A valid sockperf message that asked for no reply: counted as received (it already is,
    /// with every datagram), neither answered nor counted as a drop.
    Consume,
    /// Count and drop.
    Drop,
}

#[inline]
pub fn udp_verdict(mode: Mode, first: &[u8], len: usize) -> UdpVerdict {
    match mode {
        Mode::Echo => UdpVerdict::Echo,
        // No UDP source: it would turn any spoofed datagram into a stream (amplification).
        Mode::Discard | Mode::Source => UdpVerdict::Drop,
        Mode::Sockperf => match sockperf::datagram_verdict(first, len) {
            sockperf::DatagramVerdict::Reply(h) => UdpVerdict::SockperfReply(h),
            sockperf::DatagramVerdict::NoReply => UdpVerdict::Consume,
            sockperf::DatagramVerdict::Malformed => UdpVerdict::Drop,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_never_amplifies() {
        assert_eq!(udp_verdict(Mode::Source, b"x", 1), UdpVerdict::Drop);
        assert_eq!(udp_verdict(Mode::Discard, b"x", 1), UdpVerdict::Drop);
        assert_eq!(udp_verdict(Mode::Echo, b"", 0), UdpVerdict::Echo);
        assert_eq!(udp_verdict(Mode::Sockperf, b"short", 5), UdpVerdict::Drop);
    }

    #[test]
    fn sockperf_without_reply_bit_is_consumed_not_dropped() {
        use control::protocol::sockperf::{flags, Header, HEADER_LEN};
        let mut m = [0u8; 100];
        let h = Header {
            seq: 7,
            flags: flags::CLIENT,
            len: 100,
        };
        h.encode(&mut m).unwrap();
        assert_eq!(
            udp_verdict(Mode::Sockperf, &m[..HEADER_LEN], 100),
            UdpVerdict::Consume
        );
    }
}
