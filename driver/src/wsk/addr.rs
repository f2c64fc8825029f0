//! Socket addresses between WSK (Windows SOCKADDR layouts) and core::net.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use wsk_sys::{AF_INET, AF_INET6, SOCKADDR};

/// Room for a SOCKADDR_IN6 (28 bytes), 8-byte aligned like SOCKADDR_STORAGE.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct SockAddrBuf(pub [u8; 32]);

/// The unspecified address of `peer`'s family, port 0 (a client socket's local address).
pub(crate) fn wildcard_for(peer: SocketAddr) -> SocketAddr {
    let ip = if peer.is_ipv4() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    };
    SocketAddr::new(ip, 0)
}

impl SockAddrBuf {
    pub(crate) const fn zeroed() -> Self {
        Self([0; 32])
    }

    pub(crate) fn from_socket_addr(a: SocketAddr) -> Self {
        let mut b = [0u8; 32];
        match a {
            SocketAddr::V4(v) => {
                b[0..2].copy_from_slice(&AF_INET.to_le_bytes());
                b[2..4].copy_from_slice(&v.port().to_be_bytes());
                b[4..8].copy_from_slice(&v.ip().octets());
            }
            SocketAddr::V6(v) => {
                b[0..2].copy_from_slice(&AF_INET6.to_le_bytes());
                b[2..4].copy_from_slice(&v.port().to_be_bytes());
                b[4..8].copy_from_slice(&v.flowinfo().to_be_bytes());
                b[8..24].copy_from_slice(&v.ip().octets());
                b[24..28].copy_from_slice(&v.scope_id().to_le_bytes());
            }
        }
        Self(b)
    }

    #[inline]
    pub(crate) fn family(&self) -> u16 {
        u16::from_le_bytes([self.0[0], self.0[1]])
    }

    #[inline]
    pub(crate) fn to_socket_addr(self) -> Option<SocketAddr> {
        let b = &self.0;
        let port = u16::from_be_bytes([b[2], b[3]]);
        let fam = self.family();
        if fam == AF_INET {
            Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(b[4], b[5], b[6], b[7])),
                port,
            ))
        } else if fam == AF_INET6 {
            let mut o = [0u8; 16];
            o.copy_from_slice(&b[8..24]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), port))
        } else {
            None
        }
    }

    /// Copies a provider SOCKADDR (valid only during the callback, W47: the accept event's
    /// addresses are valid only during the call) by its family.
    ///
    /// # Safety
    /// `sa` is null or points to a SOCKADDR_IN / SOCKADDR_IN6 of its family's size.
    #[inline]
    pub(crate) unsafe fn copy_from(sa: *const SOCKADDR) -> Option<Self> {
        if sa.is_null() {
            return None;
        }
        // SAFETY: every SOCKADDR starts with its u16 family.
        let fam = unsafe { (*sa).sa_family };
        let mut out = Self::zeroed();
        // A constant length per family, so the copy is a few moves, not a call (the UDP
        // echo copies one address per datagram).
        if fam == AF_INET {
            // SAFETY: the caller guarantees a SOCKADDR_IN (16 bytes) for this family.
            unsafe { core::ptr::copy_nonoverlapping(sa.cast::<u8>(), out.0.as_mut_ptr(), 16) };
        } else if fam == AF_INET6 {
            // SAFETY: the caller guarantees a SOCKADDR_IN6 (28 bytes) for this family.
            unsafe { core::ptr::copy_nonoverlapping(sa.cast::<u8>(), out.0.as_mut_ptr(), 28) };
        } else {
            return None;
        }
        Some(out)
    }

    pub(crate) fn as_sockaddr(&mut self) -> *mut SOCKADDR {
        self.0.as_mut_ptr().cast()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_v4_v6() {
        for s in ["127.0.0.1:7007", "[::1]:11111"] {
            let a: SocketAddr = s.parse().unwrap();
            assert_eq!(SockAddrBuf::from_socket_addr(a).to_socket_addr(), Some(a));
        }
    }
}
