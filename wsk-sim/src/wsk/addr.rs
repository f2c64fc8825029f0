//! Windows SOCKADDR (AF_INET = 2, AF_INET6 = 23) <-> host socket addresses.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use wsk_sys::{AF_INET, AF_INET6, PSOCKADDR, SOCKADDR_IN, SOCKADDR_IN6};

/// Reads a client SOCKADDR.
///
/// # Safety
/// `sa` is NULL or points to a SOCKADDR_IN / SOCKADDR_IN6 as its family says.
pub(crate) unsafe fn read(sa: PSOCKADDR) -> Option<SocketAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: per the function contract.
    unsafe {
        match (*sa).sa_family {
            AF_INET => {
                let s = sa.cast::<SOCKADDR_IN>().read_unaligned();
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(s.sin_addr.octets()),
                    u16::from_be(s.sin_port),
                )))
            }
            AF_INET6 => {
                let s = sa.cast::<SOCKADDR_IN6>().read_unaligned();
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(s.sin6_addr.octets()),
                    u16::from_be(s.sin6_port),
                    u32::from_be(s.sin6_flowinfo),
                    s.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

/// Writes `a` as a Windows SOCKADDR.
///
/// # Safety
/// `out` points to storage for the family's SOCKADDR (SOCKADDR_IN6 for IPv6).
pub(crate) unsafe fn write(out: PSOCKADDR, a: SocketAddr) {
    // SAFETY: per the function contract.
    unsafe {
        match a {
            SocketAddr::V4(v4) => out.cast::<SOCKADDR_IN>().write_unaligned(SOCKADDR_IN {
                sin_family: AF_INET,
                sin_port: v4.port().to_be(),
                sin_addr: wsk_sys::IN_ADDR::from_octets(v4.ip().octets()),
                sin_zero: [0; 8],
            }),
            SocketAddr::V6(v6) => out.cast::<SOCKADDR_IN6>().write_unaligned(SOCKADDR_IN6 {
                sin6_family: AF_INET6,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo().to_be(),
                sin6_addr: wsk_sys::IN6_ADDR::from_octets(v6.ip().octets()),
                sin6_scope_id: v6.scope_id(),
            }),
        }
    }
}

/// Storage big enough for either family, for addresses the provider hands to callbacks.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
pub(crate) struct SockaddrBuf(pub [u8; 32]);

impl SockaddrBuf {
    pub(crate) fn new(a: SocketAddr) -> Self {
        let mut b = SockaddrBuf([0; 32]);
        // SAFETY: 32 bytes hold a SOCKADDR_IN6 (28 bytes).
        unsafe { write(b.0.as_mut_ptr().cast(), a) };
        b
    }
    pub(crate) fn as_ptr(&mut self) -> PSOCKADDR {
        self.0.as_mut_ptr().cast()
    }
}

pub(crate) fn family_of(a: &SocketAddr) -> u16 {
    if a.is_ipv4() {
        AF_INET
    } else {
        AF_INET6
    }
}
