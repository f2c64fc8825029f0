//! Platform-free service logic: everything that decides, host-unit-tested. The kernel layer
//! (`net`) only moves buffers and makes the WSK calls these modules ask for.

pub mod budget;
pub mod ring;
pub mod sockperf;
pub mod source;
pub mod tcp;
pub mod udp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Echo,
    Discard,
    Source,
    Sockperf,
}

impl Service {
    pub fn tcp_mode(self) -> tcp::Mode {
        match self {
            Service::Echo => tcp::Mode::Echo,
            Service::Discard => tcp::Mode::Discard,
            Service::Source => tcp::Mode::Source,
            Service::Sockperf => tcp::Mode::Sockperf,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Service::Echo => "echo",
            Service::Discard => "discard",
            Service::Source => "source",
            Service::Sockperf => "sockperf",
        }
    }
}

/// What a UDP service does with one datagram of `len` bytes whose first bytes are `first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpVerdict {
    /// Send the datagram back unchanged (zero-copy from the indication).
    Echo,
    /// Send it back with this 14-byte header in front of bytes 14.. (copy path).
    SockperfReply(sockperf::Header),
    /// Count and drop.
    Drop,
}

pub fn udp_verdict(service: Service, first: &[u8], len: usize) -> UdpVerdict {
    match service {
        Service::Echo => UdpVerdict::Echo,
        // No UDP source: it would turn any spoofed datagram into a stream (amplification).
        Service::Discard | Service::Source => UdpVerdict::Drop,
        Service::Sockperf => match sockperf::datagram_verdict(first, len) {
            sockperf::DatagramVerdict::Reply(h) => UdpVerdict::SockperfReply(h),
            _ => UdpVerdict::Drop,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_never_amplifies() {
        assert_eq!(udp_verdict(Service::Source, b"x", 1), UdpVerdict::Drop);
        assert_eq!(udp_verdict(Service::Discard, b"x", 1), UdpVerdict::Drop);
        assert_eq!(udp_verdict(Service::Echo, b"", 0), UdpVerdict::Echo);
        assert_eq!(
            udp_verdict(Service::Sockperf, b"short", 5),
            UdpVerdict::Drop
        );
    }
}
