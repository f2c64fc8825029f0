//! One TCP connection of the server: echo, discard, source or sockperf.
//!
//! Level-triggered epoll. Output that does not fit the socket is kept (bounded by the
//! connection's buffers) and reading stops until it drains, so a client that never reads
//! gets TCP backpressure instead of growing our memory.

use super::sys;
use crate::server::framing::Framer;
use crate::server::pattern::Block;
use crate::server::{Counters, Mode};
use control::protocol::sockperf::{self, Verdict, HEADER_LEN, MAX_TCP_MSG};
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Initial buffer size: most messages fit, and a 32 KiB read amortises the syscall.
const BUF: usize = 32 * 1024;
/// Syscall rounds per readiness event before yielding to other connections.
const ROUNDS: usize = 16;

/// What the event loop must do next with a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Keep it, waiting for input (EPOLLIN).
    Read,
    /// Keep it, waiting for room to send (EPOLLOUT); input is not read meanwhile.
    Write,
    /// Keep it, waiting for both (source: sending forever, still draining input).
    Both,
    Close,
    /// Close and count a malformed sockperf frame.
    CloseBad,
}

impl Next {
    pub(crate) fn events(self) -> u32 {
        // No EPOLLRDHUP: it stays raised after a half-close and would spin a level-triggered
        // loop; EOF shows up as a zero-byte read, and EPOLLHUP/EPOLLERR are always reported.
        let base = 0u32;
        match self {
            Next::Read => base | libc::EPOLLIN as u32,
            Next::Write => base | libc::EPOLLOUT as u32,
            Next::Both | Next::Close | Next::CloseBad => {
                base | (libc::EPOLLIN | libc::EPOLLOUT) as u32
            }
        }
    }
}

pub(crate) struct Conn {
    pub(crate) fd: OwnedFd,
    pub(crate) svc: Mode,
    pub(crate) events: u32,
    /// echo: the data; sockperf: received bytes not yet framed.
    inb: Vec<u8>,
    in_start: usize,
    in_end: usize,
    /// sockperf replies not yet sent.
    out: Vec<u8>,
    out_start: usize,
    out_end: usize,
    /// source: stream offset of the next byte to send.
    src_off: u64,
    /// source: the client shut down its side; keep sending until the socket errors.
    rd_closed: bool,
    /// echo: echoload-wire messages received and sent whole (see `server::framing`).
    rx_frames: Framer,
    tx_frames: Framer,
}

/// Worker-wide scratch shared by every connection of one thread.
pub(crate) struct Scratch {
    pub(crate) discard: Box<[u8]>,
    pub(crate) block: Block,
}

impl Conn {
    pub(crate) fn new(fd: OwnedFd, svc: Mode) -> Self {
        let (inb, out) = match svc {
            Mode::Echo => (vec![0; BUF], Vec::new()),
            Mode::Sockperf => (vec![0; BUF], vec![0; BUF]),
            Mode::Discard | Mode::Source => (Vec::new(), Vec::new()),
        };
        Conn {
            fd,
            svc,
            events: 0,
            inb,
            in_start: 0,
            in_end: 0,
            out,
            out_start: 0,
            out_end: 0,
            src_off: 0,
            rd_closed: false,
            rx_frames: Framer::default(),
            tx_frames: Framer::default(),
        }
    }

    /// The readiness the connection waits for right after accept.
    pub(crate) fn initial(&self) -> Next {
        if self.svc == Mode::Source {
            Next::Both
        } else {
            Next::Read
        }
    }

    /// Does all the work the readiness in `ev` allows; returns what to wait for next.
    pub(crate) fn on_event(&mut self, ev: u32, s: &mut Scratch, c: &mut Counters) -> Next {
        if ev & libc::EPOLLERR as u32 != 0 {
            return Next::Close;
        }
        let fd = self.fd.as_raw_fd();
        match self.svc {
            Mode::Echo => self.echo(fd, c),
            Mode::Discard => discard(fd, &mut s.discard, c),
            Mode::Source => self.source(fd, ev, s, c),
            Mode::Sockperf => self.sockperf(fd, c),
        }
    }

    fn echo(&mut self, fd: RawFd, c: &mut Counters) -> Next {
        for _ in 0..ROUNDS {
            if self.in_start < self.in_end {
                match sys::send(fd, &self.inb[self.in_start..self.in_end]) {
                    Ok(n) => {
                        c.tx_msgs += self
                            .tx_frames
                            .feed(&self.inb[self.in_start..self.in_start + n]);
                        self.in_start += n;
                        c.tx_bytes += n as u64;
                        if self.in_start < self.in_end {
                            return Next::Write;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Write,
                    Err(_) => return Next::Close,
                }
            }
            self.in_start = 0;
            self.in_end = 0;
            match sys::recv(fd, &mut self.inb) {
                Ok(0) => return Next::Close,
                Ok(n) => {
                    self.in_end = n;
                    c.rx_bytes += n as u64;
                    c.rx_msgs += self.rx_frames.feed(&self.inb[..n]);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Read,
                Err(_) => return Next::Close,
            }
        }
        if self.in_start < self.in_end {
            Next::Write
        } else {
            Next::Read
        }
    }

    fn source(&mut self, fd: RawFd, ev: u32, s: &mut Scratch, c: &mut Counters) -> Next {
        if !self.rd_closed && ev & libc::EPOLLIN as u32 != 0 {
            match discard(fd, &mut s.discard, c) {
                Next::Close => self.rd_closed = true,
                Next::CloseBad => return Next::Close,
                _ => {}
            }
        }
        if ev & libc::EPOLLHUP as u32 != 0 {
            return Next::Close;
        }
        for _ in 0..ROUNDS {
            match sys::send(fd, s.block.window(self.src_off)) {
                Ok(n) => {
                    self.src_off += n as u64;
                    c.tx_bytes += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => return Next::Close,
            }
        }
        if self.rd_closed {
            Next::Write
        } else {
            Next::Both
        }
    }

    fn sockperf(&mut self, fd: RawFd, c: &mut Counters) -> Next {
        for _ in 0..ROUNDS {
            // 1. Pending replies first: nothing new is read until they are out.
            if self.out_start < self.out_end {
                match sys::send(fd, &self.out[self.out_start..self.out_end]) {
                    Ok(n) => {
                        self.out_start += n;
                        c.tx_bytes += n as u64;
                        if self.out_start < self.out_end {
                            return Next::Write;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Write,
                    Err(_) => return Next::Close,
                }
            }
            self.out_start = 0;
            self.out_end = 0;
            // 2. Frame what we have.
            match self.frame(c) {
                Ok(()) => {}
                Err(()) => return Next::CloseBad,
            }
            if self.out_end > 0 {
                continue;
            }
            // 3. Read more, making room for one whole frame if a large one is pending.
            if self.in_start > 0 {
                self.inb.copy_within(self.in_start..self.in_end, 0);
                self.in_end -= self.in_start;
                self.in_start = 0;
            }
            if self.in_end >= HEADER_LEN {
                let want = sockperf::Header::decode(&self.inb).map_or(0, |h| h.len as usize);
                if want > self.inb.len() {
                    self.inb.resize(want, 0);
                }
            }
            if self.in_end == self.inb.len() {
                // Cannot happen (a full buffer always holds a whole frame, or was grown above);
                // a zero-length read would look like EOF, so refuse rather than misreport.
                return Next::Close;
            }
            match sys::recv(fd, &mut self.inb[self.in_end..]) {
                Ok(0) => return Next::Close,
                Ok(n) => {
                    self.in_end += n;
                    c.rx_bytes += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Read,
                Err(_) => return Next::Close,
            }
        }
        if self.out_start < self.out_end {
            Next::Write
        } else {
            Next::Read
        }
    }

    /// Consumes complete frames from the input, queueing replies, until the input holds only a
    /// partial frame or the reply buffer is full. `Err` on a malformed frame.
    fn frame(&mut self, c: &mut Counters) -> Result<(), ()> {
        while self.in_end - self.in_start >= HEADER_LEN {
            let msg = &self.inb[self.in_start..self.in_end];
            let h = sockperf::Header::decode(msg).ok_or(())?;
            let len = h.len as usize;
            if !(HEADER_LEN..=MAX_TCP_MSG).contains(&len) {
                c.sockperf_bad_frames += 1;
                return Err(());
            }
            if msg.len() < len {
                return Ok(());
            }
            match sockperf::verdict(h.flags) {
                Verdict::Ignore => {}
                Verdict::Count => {
                    c.rx_msgs += 1;
                    c.sockperf_counted += 1;
                }
                Verdict::Reply => {
                    if self.out.len() - self.out_end < len {
                        if self.out_end > 0 {
                            // Full: flush first, then come back for this frame.
                            return Ok(());
                        }
                        self.out.resize(len, 0);
                    }
                    let dst = &mut self.out[self.out_end..self.out_end + len];
                    dst.copy_from_slice(&msg[..len]);
                    sockperf::make_reply_in_place(dst);
                    self.out_end += len;
                    c.rx_msgs += 1;
                    c.tx_msgs += 1;
                }
            }
            self.in_start += len;
        }
        Ok(())
    }
}

/// Drains input without copying it to user space: a discard server has no use for the bytes.
fn discard(fd: RawFd, buf: &mut [u8], c: &mut Counters) -> Next {
    for _ in 0..ROUNDS {
        match sys::recv_drop(fd, buf) {
            Ok(0) => return Next::Close,
            Ok(n) => c.rx_bytes += n as u64,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Next::Read,
            Err(_) => return Next::Close,
        }
    }
    Next::Read
}
