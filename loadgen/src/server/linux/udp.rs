//! The UDP data path: recvmmsg a batch, answer it in place, sendmmsg the replies.
//!
//! Sockets have UDP_GRO on, so a GSO burst from a client arrives as one buffer of equal-sized
//! segments (plus a shorter last one); the replies to it go back as one GSO send with the same
//! segment size. Either way each reply datagram is at most as large as the datagram it answers.

use crate::server::guard::Guard;
use crate::server::pattern::Block;
use crate::server::{Counters, Mode};
use control::protocol::sockperf::{self, Verdict};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::RawFd;

/// Datagrams (or GRO bursts) per recvmmsg.
const BATCH: usize = 32;
/// Room for the largest datagram or GRO burst.
const SLOT: usize = 65_536;
/// recvmmsg rounds per readiness event before yielding to other sockets.
const ROUNDS: usize = 8;
/// Control buffer per message, in u64 so a cmsghdr placed there is aligned.
const CTRL_WORDS: usize = 8;

/// Context the UDP path needs from its worker.
pub(crate) struct Ctx<'a> {
    /// The reflection and loop guard (this worker's: its rate-limit table is not shared).
    pub(crate) guard: &'a mut Guard,
    pub(crate) block: &'a Block,
}

/// Per-worker batch buffers. The headers point into the other boxed arrays, which never move
/// or grow after construction; the struct is neither Send nor Sync (raw pointers), so it stays
/// on the worker thread that built it.
pub(crate) struct Batch {
    bufs: Vec<u8>,
    names: Vec<libc::sockaddr_storage>,
    iov: Vec<libc::iovec>,
    ctrl: Vec<[u64; CTRL_WORDS]>,
    hdrs: Vec<libc::mmsghdr>,
    out_iov: Vec<libc::iovec>,
    out_ctrl: Vec<[u64; CTRL_WORDS]>,
    out_hdrs: Vec<libc::mmsghdr>,
    out_segs: Vec<u64>,
}

impl Batch {
    pub(crate) fn new() -> Self {
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain C structs for which all-zero
        // bytes are a valid (empty) value.
        let zeroed = || unsafe { std::mem::zeroed::<libc::mmsghdr>() };
        let mut b = Batch {
            bufs: vec![0; BATCH * SLOT],
            // SAFETY: as above, all-zero is a valid sockaddr_storage.
            names: (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect(),
            iov: (0..BATCH)
                .map(|_| libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                })
                .collect(),
            ctrl: vec![[0; CTRL_WORDS]; BATCH],
            hdrs: (0..BATCH).map(|_| zeroed()).collect(),
            out_iov: (0..BATCH)
                .map(|_| libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                })
                .collect(),
            out_ctrl: vec![[0; CTRL_WORDS]; BATCH],
            out_hdrs: (0..BATCH).map(|_| zeroed()).collect(),
            out_segs: vec![0; BATCH],
        };
        for i in 0..BATCH {
            b.iov[i] = libc::iovec {
                iov_base: b.bufs[i * SLOT..].as_mut_ptr().cast(),
                iov_len: SLOT,
            };
            let h = &mut b.hdrs[i].msg_hdr;
            h.msg_name = (&raw mut b.names[i]).cast();
            h.msg_iov = &raw mut b.iov[i];
            h.msg_iovlen = 1;
            h.msg_control = b.ctrl[i].as_mut_ptr().cast();
            let o = &mut b.out_hdrs[i].msg_hdr;
            o.msg_iov = &raw mut b.out_iov[i];
            o.msg_iovlen = 1;
        }
        b
    }

    fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for h in &mut self.hdrs {
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_controllen = (CTRL_WORDS * 8) as _;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        // SAFETY: every header points at live buffers of the sizes it states (set in new(),
        // lengths reset above); the batch outlives the call.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT as _, // c_int on glibc, c_uint on musl
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as usize)
        }
    }

    /// The GRO segment size of message `i`, if the kernel coalesced it.
    fn gro_size(&self, i: usize) -> Option<usize> {
        let h = &self.hdrs[i].msg_hdr;
        // SAFETY: the CMSG_* macros walk the control buffer the kernel filled, bounded by
        // msg_controllen; the data of a UDP_GRO cmsg is one c_int, read unaligned.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                    let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                    return usize::try_from(v).ok().filter(|v| *v > 0);
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        None
    }

    /// Queues the reply for received message `i`: `len` bytes at the start of its slot, as
    /// `segs` datagrams of `seg` bytes (GSO when more than one).
    fn push_reply(&mut self, k: usize, i: usize, len: usize, seg: usize, segs: u64) {
        self.out_iov[k] = libc::iovec {
            iov_base: self.bufs[i * SLOT..].as_mut_ptr().cast(),
            iov_len: len,
        };
        self.out_segs[k] = segs;
        let name_len = self.hdrs[i].msg_hdr.msg_namelen;
        let name = (&raw mut self.names[i]).cast();
        let ctrl = self.out_ctrl[k].as_mut_ptr();
        let o = &mut self.out_hdrs[k].msg_hdr;
        o.msg_name = name;
        o.msg_namelen = name_len;
        if segs > 1 {
            o.msg_control = ctrl.cast();
            // SAFETY: CMSG_SPACE/CMSG_LEN are pure size computations; the control buffer is
            // CTRL_WORDS*8 = 64 bytes, more than CMSG_SPACE(2) = 24, so the header and its u16
            // fit; the buffer is u64-aligned as cmsghdr requires.
            unsafe {
                o.msg_controllen = libc::CMSG_SPACE(2) as _;
                let c = libc::CMSG_FIRSTHDR(o);
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = libc::UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(2) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg as u16);
            }
        } else {
            o.msg_control = std::ptr::null_mut();
            o.msg_controllen = 0;
        }
        o.msg_flags = 0;
    }

    /// Sends the `k` queued replies; what the socket will not take now is dropped and counted
    /// (UDP gives no delivery promise, and waiting would stall every other flow of the worker).
    fn send(&mut self, fd: RawFd, k: usize, c: &mut Counters) {
        let mut done = 0;
        while done < k {
            // SAFETY: headers done..k were filled by push_reply and point at live buffers.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.out_hdrs[done..].as_mut_ptr(),
                    (k - done) as libc::c_uint,
                    libc::MSG_DONTWAIT as _, // c_int on glibc, c_uint on musl
                )
            };
            if r > 0 {
                for j in done..done + r as usize {
                    c.tx_msgs += self.out_segs[j];
                    c.tx_bytes += self.out_iov[j].iov_len as u64;
                }
                done += r as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            if r == 0
                || matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                )
            {
                c.udp_dropped += self.out_segs[done..k].iter().sum::<u64>();
                return;
            }
            // This datagram failed on its own (e.g. unreachable destination): skip it.
            c.udp_dropped += self.out_segs[done];
            done += 1;
        }
    }

    /// Serves one readable UDP socket of service `svc`.
    pub(crate) fn on_readable(
        &mut self,
        fd: RawFd,
        svc: Mode,
        ctx: &mut Ctx<'_>,
        c: &mut Counters,
    ) {
        for _ in 0..ROUNDS {
            let Ok(n) = self.recv(fd) else { return };
            let mut k = 0;
            for i in 0..n {
                let len = self.hdrs[i].msg_len as usize;
                let seg = self.gro_size(i).unwrap_or(len);
                let nsegs = if len == 0 || seg == 0 {
                    1
                } else {
                    len.div_ceil(seg) as u64
                };
                c.rx_msgs += nsegs;
                c.rx_bytes += len as u64;
                if self.hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                    c.udp_dropped += nsegs;
                    continue;
                }
                if svc == Mode::Discard {
                    continue;
                }
                let Some(peer) = peer_addr(&self.names[i]) else {
                    c.udp_dropped += nsegs;
                    continue;
                };
                if !ctx.guard.admit(peer, nsegs, c) {
                    continue;
                }
                let buf = &mut self.bufs[i * SLOT..i * SLOT + len];
                let seg = seg.max(1);
                let (rlen, rsegs) = match svc {
                    Mode::Echo => (len, nsegs),
                    Mode::Source => {
                        let pat = ctx.block.window(0);
                        for chunk in buf.chunks_mut(seg) {
                            chunk.copy_from_slice(&pat[..chunk.len()]);
                        }
                        (len, nsegs)
                    }
                    Mode::Sockperf => sockperf_burst(buf, seg, c),
                    Mode::Discard => unreachable!("handled above"),
                };
                if rsegs > 0 {
                    self.push_reply(k, i, rlen, seg, rsegs);
                    k += 1;
                }
            }
            self.send(fd, k, c);
            if n < BATCH {
                return;
            }
        }
    }
}

/// Answers the sockperf messages of one datagram or GRO burst in place: replies are moved to
/// the front, in order, so they stay valid GSO segments (equal size, a shorter one only last).
/// Returns the reply bytes and their count.
fn sockperf_burst(buf: &mut [u8], seg: usize, c: &mut Counters) -> (usize, u64) {
    let mut w = 0;
    let mut segs = 0;
    let mut off = 0;
    while off < buf.len() {
        let end = (off + seg).min(buf.len());
        let m = end - off;
        let well_formed = sockperf::Header::decode(&buf[off..end]).filter(|h| h.len as usize == m);
        if let Some(h) = well_formed {
            match sockperf::verdict(h.flags) {
                Verdict::Ignore => {}
                Verdict::Count => c.sockperf_counted += 1,
                Verdict::Reply => {
                    sockperf::make_reply_in_place(&mut buf[off..end]);
                    if w != off {
                        buf.copy_within(off..end, w);
                    }
                    w += m;
                    segs += 1;
                }
            }
        } else {
            c.sockperf_bad_frames += 1;
        }
        off = end;
    }
    (w, segs)
}

/// The datagram's source address (None for a family other than IPv4/IPv6).
fn peer_addr(sa: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match sa.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in; storage is larger and
            // suitably aligned for it.
            let s = unsafe { &*(std::ptr::from_ref(sa).cast::<libc::sockaddr_in>()) };
            let ip = Ipv4Addr::from(u32::from_be(s.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), u16::from_be(s.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let s = unsafe { &*(std::ptr::from_ref(sa).cast::<libc::sockaddr_in6>()) };
            let ip = Ipv6Addr::from(s.sin6_addr.s6_addr);
            Some(SocketAddr::new(ip.into(), u16::from_be(s.sin6_port)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::protocol::sockperf::{flags, Header};

    fn msg(seq: u64, fl: u16, len: usize) -> Vec<u8> {
        let mut v = vec![seq as u8; len];
        Header {
            seq,
            flags: fl,
            len: len as u32,
        }
        .encode(&mut v)
        .unwrap();
        v
    }

    #[test]
    fn burst_keeps_only_replies_in_order() {
        let c1 = flags::CLIENT;
        let cr = flags::CLIENT | flags::REPLY;
        let mut buf = Vec::new();
        buf.extend(msg(1, cr, 20));
        buf.extend(msg(2, c1, 20));
        buf.extend(msg(3, cr | flags::WARMUP, 20));
        buf.extend(msg(4, cr, 20));
        buf.extend(msg(5, cr, 16)); // shorter last segment
        let mut c = Counters::default();
        let (len, segs) = sockperf_burst(&mut buf, 20, &mut c);
        assert_eq!((len, segs), (56, 3));
        let seqs: Vec<u64> = [0, 20, 40]
            .iter()
            .map(|o| sockperf::Header::decode(&buf[*o..]).unwrap().seq)
            .collect();
        assert_eq!(seqs, [1, 4, 5]);
        assert_eq!(
            sockperf::Header::decode(&buf[40..]).unwrap().flags,
            flags::REPLY
        );
        assert_eq!(c.sockperf_counted, 1);
        assert_eq!(c.sockperf_bad_frames, 0);
    }

    #[test]
    fn burst_rejects_length_mismatch() {
        let mut buf = msg(1, flags::CLIENT | flags::REPLY, 30);
        buf[13] = 31;
        let mut c = Counters::default();
        assert_eq!(sockperf_burst(&mut buf, 30, &mut c), (0, 0));
        assert_eq!(c.sockperf_bad_frames, 1);
        let mut tiny = vec![0u8; 5];
        assert_eq!(sockperf_burst(&mut tiny, 5, &mut c), (0, 0));
        assert_eq!(c.sockperf_bad_frames, 2);
    }
}
