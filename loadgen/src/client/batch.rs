//! Batched UDP send/receive: sendmmsg (+ UDP_SEGMENT GSO) and recvmmsg on Linux, one call per
//! datagram elsewhere. All buffers are allocated once per worker.

use std::io;

use mio::net::UdpSocket;

/// Largest payload one GSO send may carry (the UDP length limit over IPv4).
const GSO_MAX_BYTES: usize = 65_507;
/// Linux caps segments per GSO send (UDP_MAX_SEGMENTS, 64 on older kernels).
const GSO_MAX_SEGS: usize = 64;

/// Datagrams per GSO send for `size`-byte messages; 1 means "no GSO".
pub fn gso_segments(size: usize, wanted: usize) -> usize {
    wanted
        .min(GSO_MAX_SEGS)
        .min(GSO_MAX_BYTES / size.max(1))
        .max(1)
}

#[cfg(target_os = "linux")]
mod imp {
    use super::{io, UdpSocket};
    use std::os::fd::AsRawFd;

    /// Space for one `cmsghdr` carrying a u16, 8-byte aligned (CMSG_SPACE(2) on 64-bit Linux).
    #[repr(C, align(8))]
    #[derive(Clone, Copy)]
    struct Cmsg([u8; 32]);

    pub struct TxBatch {
        hdrs: Vec<libc::mmsghdr>,
        iovs: Vec<libc::iovec>,
        cmsgs: Vec<Cmsg>,
        segs_of: Vec<usize>,
        gso: bool,
    }

    impl TxBatch {
        pub fn new(batch: usize, gso: bool) -> Self {
            let batch = batch.max(1);
            // SAFETY: mmsghdr/iovec are plain C structs for which all-zero is a valid value.
            let zero_h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            TxBatch {
                hdrs: vec![zero_h; batch],
                iovs: vec![
                    libc::iovec {
                        iov_base: std::ptr::null_mut(),
                        iov_len: 0
                    };
                    batch
                ],
                cmsgs: vec![Cmsg([0; 32]); batch],
                segs_of: vec![0; batch],
                gso,
            }
        }

        /// Sends the first `n` `size`-byte messages of `buf`, `segs` per GSO send; returns how
        /// many messages the kernel took (a prefix of them).
        pub fn send(
            &mut self,
            sock: &UdpSocket,
            buf: &[u8],
            size: usize,
            n: usize,
            segs: usize,
        ) -> io::Result<usize> {
            loop {
                match self.send_once(sock, buf, size, n, segs) {
                    // Kernels or devices without UDP GSO: fall back to one datagram per message.
                    Err(e)
                        if self.gso
                            && segs > 1
                            && matches!(
                                e.raw_os_error(),
                                Some(
                                    libc::EINVAL | libc::EIO | libc::EOPNOTSUPP | libc::ENOPROTOOPT
                                )
                            ) =>
                    {
                        self.gso = false;
                    }
                    r => return r,
                }
            }
        }

        fn send_once(
            &mut self,
            sock: &UdpSocket,
            buf: &[u8],
            size: usize,
            n: usize,
            segs: usize,
        ) -> io::Result<usize> {
            let segs = if self.gso { segs.max(1) } else { 1 };
            let mut m = 0;
            let mut off = 0;
            while m < self.hdrs.len() && off < n * size {
                let cnt = segs.min(n - off / size);
                let len = cnt * size;
                self.iovs[m] = libc::iovec {
                    iov_base: buf[off..].as_ptr() as *mut libc::c_void,
                    iov_len: len,
                };
                let h = &mut self.hdrs[m].msg_hdr;
                h.msg_name = std::ptr::null_mut();
                h.msg_namelen = 0;
                h.msg_iov = &raw mut self.iovs[m];
                h.msg_iovlen = 1;
                h.msg_flags = 0;
                if cnt > 1 {
                    let c: *mut libc::cmsghdr = (&raw mut self.cmsgs[m]).cast();
                    // SAFETY: CMSG_LEN/CMSG_SPACE only compute sizes.
                    let (clen, cspace) =
                        unsafe { (libc::CMSG_LEN(2) as usize, libc::CMSG_SPACE(2) as usize) };
                    // SAFETY: cmsghdr is plain integers (musl adds padding fields): all-zero is a
                    // valid value, filled in below.
                    let mut hdr: libc::cmsghdr = unsafe { std::mem::zeroed() };
                    hdr.cmsg_len = clen as _;
                    hdr.cmsg_level = libc::SOL_UDP;
                    hdr.cmsg_type = libc::UDP_SEGMENT;
                    // SAFETY: `c` points at 32 bytes, 8-aligned, owned by self: room for a
                    // cmsghdr (16 bytes) plus the u16 payload.
                    unsafe {
                        c.write(hdr);
                        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), size as u16);
                    }
                    h.msg_control = c.cast();
                    h.msg_controllen = cspace as _;
                } else {
                    h.msg_control = std::ptr::null_mut();
                    h.msg_controllen = 0;
                }
                self.segs_of[m] = cnt;
                off += len;
                m += 1;
            }
            // SAFETY: the first `m` headers point at iovecs/cmsgs owned by self and at `buf`,
            // all alive for the call; the socket is connected, so no address is needed.
            let r = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    self.hdrs.as_mut_ptr(),
                    m as u32,
                    libc::MSG_DONTWAIT as _, // c_int on glibc, c_uint on musl
                )
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(self.segs_of[..r as usize].iter().sum())
        }
    }

    /// Keeps the ICMP errors of a connected UDP socket queued until [`take_icmp_error`] reads
    /// them. Needed because sendmmsg consumes the socket's pending error (ECONNREFUSED after a
    /// port unreachable) when a later datagram of the batch fails, and drops it: the call only
    /// returns a shorter count.
    pub fn keep_icmp_errors(sock: &socket2::Socket, v6: bool) -> io::Result<()> {
        let (level, name) = if v6 {
            (libc::IPPROTO_IPV6, libc::IPV6_RECVERR)
        } else {
            (libc::IPPROTO_IP, libc::IP_RECVERR)
        };
        let on: libc::c_int = 1;
        // SAFETY: a valid fd and a pointer to a c_int of the length given.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                level,
                name,
                (&raw const on).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The oldest queued ICMP error of the socket, if any (see [`keep_icmp_errors`]).
    pub fn take_icmp_error(sock: &UdpSocket) -> Option<io::Error> {
        let mut data = [0u8; 64];
        let mut ctrl = [0u64; 32];
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: all-zero is a valid msghdr.
        let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
        h.msg_iov = &raw mut iov;
        h.msg_iovlen = 1;
        h.msg_control = ctrl.as_mut_ptr().cast();
        h.msg_controllen = std::mem::size_of_val(&ctrl) as _;
        // SAFETY: the header points at `iov`/`data`/`ctrl`, alive for the call.
        let r = unsafe {
            libc::recvmsg(
                sock.as_raw_fd(),
                &raw mut h,
                libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
            )
        };
        if r < 0 {
            return None;
        }
        // SAFETY: the kernel filled `msg_controllen` bytes of `ctrl` with well-formed cmsgs;
        // CMSG_* walk only inside them, and the extended error is read unaligned.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&raw const h);
            while !c.is_null() {
                let lv = ((*c).cmsg_level, (*c).cmsg_type);
                if lv == (libc::SOL_IP, libc::IP_RECVERR)
                    || lv == (libc::SOL_IPV6, libc::IPV6_RECVERR)
                {
                    let ee = std::ptr::read_unaligned(
                        libc::CMSG_DATA(c).cast::<libc::sock_extended_err>(),
                    );
                    return Some(io::Error::from_raw_os_error(ee.ee_errno as i32));
                }
                c = libc::CMSG_NXTHDR(&raw const h, c);
            }
        }
        Some(io::Error::other("ICMP error"))
    }

    pub struct RxBatch {
        hdrs: Vec<libc::mmsghdr>,
        iovs: Vec<libc::iovec>,
        bufs: Vec<u8>,
        slot: usize,
    }

    impl RxBatch {
        /// `slot` bytes per datagram: one more than expected, so oversized replies show.
        pub fn new(batch: usize, slot: usize) -> Self {
            let batch = batch.max(1);
            // SAFETY: all-zero is a valid mmsghdr.
            let zero_h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            RxBatch {
                hdrs: vec![zero_h; batch],
                iovs: vec![
                    libc::iovec {
                        iov_base: std::ptr::null_mut(),
                        iov_len: 0
                    };
                    batch
                ],
                bufs: vec![0; batch * slot],
                slot,
            }
        }

        pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
            for i in 0..self.hdrs.len() {
                self.iovs[i] = libc::iovec {
                    iov_base: self.bufs[i * self.slot..].as_mut_ptr().cast(),
                    iov_len: self.slot,
                };
                let h = &mut self.hdrs[i].msg_hdr;
                h.msg_name = std::ptr::null_mut();
                h.msg_namelen = 0;
                h.msg_iov = &raw mut self.iovs[i];
                h.msg_iovlen = 1;
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
                h.msg_flags = 0;
                self.hdrs[i].msg_len = 0;
            }
            // SAFETY: every header points at a distinct `slot`-byte region of `bufs`, alive for
            // the call.
            let r = unsafe {
                libc::recvmmsg(
                    sock.as_raw_fd(),
                    self.hdrs.as_mut_ptr(),
                    self.hdrs.len() as u32,
                    libc::MSG_DONTWAIT as _, // c_int on glibc, c_uint on musl
                    std::ptr::null_mut(),
                )
            };
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(r as usize)
        }

        pub fn capacity(&self) -> usize {
            self.hdrs.len()
        }

        pub fn msg(&self, i: usize) -> &[u8] {
            let len = (self.hdrs[i].msg_len as usize).min(self.slot);
            &self.bufs[i * self.slot..i * self.slot + len]
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::{io, UdpSocket};

    pub struct TxBatch;

    impl TxBatch {
        pub fn new(_batch: usize, _gso: bool) -> Self {
            TxBatch
        }
        // The Linux batch's signature, so the callers are the same on every platform.
        #[allow(clippy::unused_self)]
        pub fn send(
            &mut self,
            sock: &UdpSocket,
            buf: &[u8],
            size: usize,
            n: usize,
            _segs: usize,
        ) -> io::Result<usize> {
            for i in 0..n {
                match sock.send(&buf[i * size..(i + 1) * size]) {
                    Ok(_) => {}
                    Err(e) if i > 0 && e.kind() == io::ErrorKind::WouldBlock => return Ok(i),
                    Err(e) => return Err(e),
                }
            }
            Ok(n)
        }
    }

    // The Linux signature (there the socket option can fail); nothing to set elsewhere.
    #[allow(clippy::unnecessary_wraps)]
    pub fn keep_icmp_errors(_sock: &socket2::Socket, _v6: bool) -> io::Result<()> {
        Ok(())
    }

    /// Elsewhere a failed datagram of a batch fails its own send call.
    pub fn take_icmp_error(_sock: &UdpSocket) -> Option<io::Error> {
        None
    }

    pub struct RxBatch {
        bufs: Vec<u8>,
        lens: Vec<usize>,
        slot: usize,
    }

    impl RxBatch {
        pub fn new(batch: usize, slot: usize) -> Self {
            RxBatch {
                bufs: vec![0; batch.max(1) * slot],
                lens: vec![0; batch.max(1)],
                slot,
            }
        }
        pub fn recv(&mut self, sock: &UdpSocket) -> io::Result<usize> {
            let mut n = 0;
            while n < self.lens.len() {
                match sock.recv(&mut self.bufs[n * self.slot..(n + 1) * self.slot]) {
                    Ok(len) => {
                        self.lens[n] = len;
                        n += 1;
                    }
                    Err(e) if n > 0 && e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            Ok(n)
        }
        pub fn capacity(&self) -> usize {
            self.lens.len()
        }
        pub fn msg(&self, i: usize) -> &[u8] {
            &self.bufs[i * self.slot..i * self.slot + self.lens[i]]
        }
    }
}

pub use imp::{keep_icmp_errors, take_icmp_error, RxBatch, TxBatch};
