//! Socket address types and constants (ws2def.h, ws2ipdef.h, inaddr.h, in6addr.h).

use crate::ntdef::{GUID, PVOID, PWSTR, SIZE_T, ULONG, USHORT};

/// `ADDRESS_FAMILY`.
pub type ADDRESS_FAMILY = USHORT;
pub const AF_UNSPEC: ADDRESS_FAMILY = 0;
pub const AF_INET: ADDRESS_FAMILY = 2;
pub const AF_INET6: ADDRESS_FAMILY = 23;

pub const SOCK_STREAM: USHORT = 1;
pub const SOCK_DGRAM: USHORT = 2;
pub const SOCK_RAW: USHORT = 3;

/// `IPPROTO` values (an `int` enum in C; WSK takes them as ULONG).
pub type IPPROTO = i32;
pub const IPPROTO_IP: ULONG = 0;
pub const IPPROTO_ICMP: ULONG = 1;
pub const IPPROTO_TCP: ULONG = 6;
pub const IPPROTO_UDP: ULONG = 17;
pub const IPPROTO_IPV6: ULONG = 41;
pub const IPPROTO_ICMPV6: ULONG = 58;

/// Level for socket options.
pub const SOL_SOCKET: ULONG = 0xffff;
pub const SO_DEBUG: ULONG = 0x0001;
pub const SO_ACCEPTCONN: ULONG = 0x0002;
pub const SO_REUSEADDR: ULONG = 0x0004;
pub const SO_KEEPALIVE: ULONG = 0x0008;
pub const SO_BROADCAST: ULONG = 0x0020;
pub const SO_LINGER: ULONG = 0x0080;
pub const SO_EXCLUSIVEADDRUSE: ULONG = !SO_REUSEADDR;
pub const SO_SNDBUF: ULONG = 0x1001;
pub const SO_RCVBUF: ULONG = 0x1002;
pub const SO_ERROR: ULONG = 0x1007;
pub const SO_TYPE: ULONG = 0x1008;
/// Base of the WSK-specific socket options (`SO_WSK_SECURITY`, `SO_WSK_EVENT_CALLBACK`).
pub const WSK_SO_BASE: ULONG = 0x4000;
pub const TCP_NODELAY: ULONG = 0x0001;
pub const IPV6_V6ONLY: ULONG = 27;

// Flags of received datagrams (ws2def.h).
pub const MSG_OOB: ULONG = 0x0001;
pub const MSG_PEEK: ULONG = 0x0002;
pub const MSG_DONTROUTE: ULONG = 0x0004;
pub const MSG_WAITALL: ULONG = 0x0008;
pub const MSG_TRUNC: ULONG = 0x0100;
pub const MSG_CTRUNC: ULONG = 0x0200;
pub const MSG_BCAST: ULONG = 0x0400;
pub const MSG_MCAST: ULONG = 0x0800;

// IOCTL composition (ws2def.h): <https://learn.microsoft.com/windows/win32/winsock/winsock-ioctls>
pub const IOCPARM_MASK: ULONG = 0x7f;
pub const IOC_VOID: ULONG = 0x2000_0000;
pub const IOC_OUT: ULONG = 0x4000_0000;
pub const IOC_IN: ULONG = 0x8000_0000;
pub const IOC_INOUT: ULONG = IOC_IN | IOC_OUT;
pub const IOC_UNIX: ULONG = 0x0000_0000;
pub const IOC_WS2: ULONG = 0x0800_0000;
pub const IOC_PROTOCOL: ULONG = 0x1000_0000;
pub const IOC_VENDOR: ULONG = 0x1800_0000;
/// WSK-specific codes: Winsock2 codes with the top 3 bits of the vendor field set.
pub const IOC_WSK: ULONG = IOC_WS2 | 0x0700_0000;

/// `_WSAIO` macro.
#[inline]
pub const fn _WSAIO(x: ULONG, y: ULONG) -> ULONG {
    IOC_VOID | x | y
}
/// `_WSAIOR` macro.
#[inline]
pub const fn _WSAIOR(x: ULONG, y: ULONG) -> ULONG {
    IOC_OUT | x | y
}
/// `_WSAIOW` macro.
#[inline]
pub const fn _WSAIOW(x: ULONG, y: ULONG) -> ULONG {
    IOC_IN | x | y
}
/// `_WSAIORW` macro.
#[inline]
pub const fn _WSAIORW(x: ULONG, y: ULONG) -> ULONG {
    IOC_INOUT | x | y
}

/// `SOCKADDR`: <https://learn.microsoft.com/windows/win32/api/ws2def/ns-ws2def-sockaddr>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SOCKADDR {
    pub sa_family: ADDRESS_FAMILY,
    pub sa_data: [i8; 14],
}
pub type PSOCKADDR = *mut SOCKADDR;

/// `IN_ADDR.S_un.S_un_b`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IN_ADDR_BYTES {
    pub s_b1: u8,
    pub s_b2: u8,
    pub s_b3: u8,
    pub s_b4: u8,
}

/// `IN_ADDR.S_un.S_un_w`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IN_ADDR_WORDS {
    pub s_w1: u16,
    pub s_w2: u16,
}

/// `IN_ADDR.S_un`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union IN_ADDR_0 {
    pub S_un_b: IN_ADDR_BYTES,
    pub S_un_w: IN_ADDR_WORDS,
    /// Network byte order.
    pub S_addr: u32,
}

/// `IN_ADDR`: <https://learn.microsoft.com/windows/win32/api/winsock2/ns-winsock2-in_addr>
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IN_ADDR {
    pub S_un: IN_ADDR_0,
}

impl IN_ADDR {
    /// From the four octets in written order (a.b.c.d).
    pub const fn from_octets(o: [u8; 4]) -> Self {
        IN_ADDR {
            S_un: IN_ADDR_0 {
                S_addr: u32::from_ne_bytes(o),
            },
        }
    }
    /// The four octets in written order.
    pub const fn octets(&self) -> [u8; 4] {
        // SAFETY: every member of the union is 4 plain bytes.
        unsafe { self.S_un.S_addr }.to_ne_bytes()
    }
}

impl core::fmt::Debug for IN_ADDR {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let o = self.octets();
        write!(f, "{}.{}.{}.{}", o[0], o[1], o[2], o[3])
    }
}

/// `SOCKADDR_IN`: <https://learn.microsoft.com/windows/win32/api/ws2def/ns-ws2def-sockaddr_in>
/// `sin_port` is in network byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SOCKADDR_IN {
    pub sin_family: ADDRESS_FAMILY,
    pub sin_port: USHORT,
    pub sin_addr: IN_ADDR,
    pub sin_zero: [i8; 8],
}
pub type PSOCKADDR_IN = *mut SOCKADDR_IN;

/// `IN6_ADDR.u`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union IN6_ADDR_0 {
    pub Byte: [u8; 16],
    pub Word: [u16; 8],
}

/// `IN6_ADDR`: <https://learn.microsoft.com/windows/win32/api/in6addr/ns-in6addr-in6_addr>
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IN6_ADDR {
    pub u: IN6_ADDR_0,
}

impl IN6_ADDR {
    pub const fn from_octets(o: [u8; 16]) -> Self {
        IN6_ADDR {
            u: IN6_ADDR_0 { Byte: o },
        }
    }
    pub const fn octets(&self) -> [u8; 16] {
        // SAFETY: every member of the union is 16 plain bytes.
        unsafe { self.u.Byte }
    }
}

impl core::fmt::Debug for IN6_ADDR {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("IN6_ADDR").field(&self.octets()).finish()
    }
}

/// `SOCKADDR_IN6`: <https://learn.microsoft.com/windows/win32/api/ws2ipdef/ns-ws2ipdef-sockaddr_in6_lh>
/// C puts `sin6_scope_id` in a union with the `SCOPE_ID` bit-field view of the same ULONG.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SOCKADDR_IN6 {
    pub sin6_family: ADDRESS_FAMILY,
    pub sin6_port: USHORT,
    pub sin6_flowinfo: ULONG,
    pub sin6_addr: IN6_ADDR,
    pub sin6_scope_id: ULONG,
}
pub type PSOCKADDR_IN6 = *mut SOCKADDR_IN6;

/// `SOCKADDR_STORAGE`: <https://learn.microsoft.com/windows/win32/api/ws2def/ns-ws2def-sockaddr_storage_lh>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SOCKADDR_STORAGE {
    pub ss_family: ADDRESS_FAMILY,
    pub __ss_pad1: [i8; 6],
    pub __ss_align: i64,
    pub __ss_pad2: [i8; 112],
}
pub type PSOCKADDR_STORAGE = *mut SOCKADDR_STORAGE;

impl SOCKADDR_STORAGE {
    pub const fn zeroed() -> Self {
        SOCKADDR_STORAGE {
            ss_family: 0,
            __ss_pad1: [0; 6],
            __ss_align: 0,
            __ss_pad2: [0; 112],
        }
    }
}

/// `CMSGHDR` / `WSACMSGHDR`: <https://learn.microsoft.com/windows/win32/api/ws2def/ns-ws2def-wsacmsghdr>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CMSGHDR {
    pub cmsg_len: SIZE_T,
    pub cmsg_level: i32,
    pub cmsg_type: i32,
}
pub type WSACMSGHDR = CMSGHDR;
pub type PCMSGHDR = *mut CMSGHDR;

/// `ADDRINFOEXW`: <https://learn.microsoft.com/windows/win32/api/ws2def/ns-ws2def-addrinfoexw>
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ADDRINFOEXW {
    pub ai_flags: i32,
    pub ai_family: i32,
    pub ai_socktype: i32,
    pub ai_protocol: i32,
    pub ai_addrlen: SIZE_T,
    pub ai_canonname: PWSTR,
    pub ai_addr: PSOCKADDR,
    pub ai_blob: PVOID,
    pub ai_bloblen: SIZE_T,
    pub ai_provider: *mut GUID,
    pub ai_next: *mut ADDRINFOEXW,
}
pub type PADDRINFOEXW = *mut ADDRINFOEXW;

pub const INADDR_ANY: u32 = 0x0000_0000;
pub const INADDR_LOOPBACK: u32 = 0x7f00_0001;
