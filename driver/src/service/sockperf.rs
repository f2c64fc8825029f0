//! sockperf wire format: a 14-byte big-endian header in front of every message.
//!
//! `u64 seq | u16 flags | u32 total length (header included)`. On TCP the length frames the
//! byte stream, so the parser below is incremental: a message (and even its header) may be
//! split across any number of receive indications. A reply is owed only when the client asked
//! for one (`FLAG_REPLY`); it is the same bytes with `FLAG_CLIENT` cleared, so it is never
//! larger than the request (no amplification).

pub const HEADER_LEN: usize = 14;
pub const FLAG_CLIENT: u16 = 1;
pub const FLAG_REPLY: u16 = 2;
pub const FLAG_WARMUP: u16 = 4;
/// Offset of the flags field inside the header.
pub const FLAGS_OFFSET: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub seq: u64,
    pub flags: u16,
    pub len: u32,
}

impl Header {
    pub fn parse(b: &[u8; HEADER_LEN]) -> Self {
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&b[0..8]);
        Self {
            seq: u64::from_be_bytes(seq),
            flags: u16::from_be_bytes([b[8], b[9]]),
            len: u32::from_be_bytes([b[10], b[11], b[12], b[13]]),
        }
    }

    pub fn write(&self, out: &mut [u8; HEADER_LEN]) {
        out[0..8].copy_from_slice(&self.seq.to_be_bytes());
        out[8..10].copy_from_slice(&self.flags.to_be_bytes());
        out[10..14].copy_from_slice(&self.len.to_be_bytes());
    }

    pub fn wants_reply(&self) -> bool {
        self.flags & FLAG_REPLY != 0
    }

    /// The header of the answer: same sequence and length, client bit cleared.
    pub fn reply(&self) -> Self {
        Self {
            flags: self.flags & !FLAG_CLIENT,
            ..*self
        }
    }
}

/// What to do with one UDP datagram on the sockperf port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatagramVerdict {
    /// Send the datagram back with this header (same length as the request).
    Reply(Header),
    /// A valid message that asked for no reply.
    NoReply,
    /// Shorter than a header or its length field disagrees with the datagram size.
    Malformed,
}

pub fn datagram_verdict(first: &[u8], total_len: usize) -> DatagramVerdict {
    if total_len < HEADER_LEN || first.len() < HEADER_LEN {
        return DatagramVerdict::Malformed;
    }
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&first[..HEADER_LEN]);
    let hdr = Header::parse(&h);
    if hdr.len as usize != total_len {
        return DatagramVerdict::Malformed;
    }
    if hdr.wants_reply() {
        DatagramVerdict::Reply(hdr.reply())
    } else {
        DatagramVerdict::NoReply
    }
}

/// Largest message length accepted on TCP; a larger length field means the peer is not
/// speaking sockperf and the connection is dropped rather than buffered.
pub const MAX_TCP_MESSAGE: u32 = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Length field smaller than the header or above [`MAX_TCP_MESSAGE`].
    BadLength(u32),
}

/// Incremental TCP stream parser that produces the reply stream.
///
/// Feeding it input bytes yields output bytes (at most as many as the input): for a message
/// that asked for a reply, its bytes with the client bit cleared; for one that did not,
/// nothing. The parser keeps only the 14-byte header between calls, so it needs no buffer.
#[derive(Clone, Debug, Default)]
pub struct TcpFramer {
    hdr: [u8; HEADER_LEN],
    hdr_have: usize,
    /// Bytes of the current message's body still to come (after the header).
    body_left: u32,
    /// Whether the current message's body is to be echoed.
    body_reply: bool,
    pub messages: u64,
    pub replies: u64,
}

impl TcpFramer {
    pub const fn new() -> Self {
        Self {
            hdr: [0; HEADER_LEN],
            hdr_have: 0,
            body_left: 0,
            body_reply: false,
            messages: 0,
            replies: 0,
        }
    }

    /// Consumes all of `input`; `out` is called with slices of the reply stream in order.
    /// The total passed to `out` is never more than `input.len()`.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        out: &mut impl FnMut(&[u8]),
    ) -> Result<(), FrameError> {
        while !input.is_empty() {
            if self.body_left > 0 {
                let n = (self.body_left as usize).min(input.len());
                if self.body_reply {
                    out(&input[..n]);
                }
                self.body_left -= n as u32;
                input = &input[n..];
                continue;
            }
            let n = (HEADER_LEN - self.hdr_have).min(input.len());
            self.hdr[self.hdr_have..self.hdr_have + n].copy_from_slice(&input[..n]);
            self.hdr_have += n;
            input = &input[n..];
            if self.hdr_have < HEADER_LEN {
                break;
            }
            self.hdr_have = 0;
            let hdr = Header::parse(&self.hdr);
            if (hdr.len as usize) < HEADER_LEN || hdr.len > MAX_TCP_MESSAGE {
                return Err(FrameError::BadLength(hdr.len));
            }
            self.messages += 1;
            self.body_left = hdr.len - HEADER_LEN as u32;
            self.body_reply = hdr.wants_reply();
            if self.body_reply {
                self.replies += 1;
                let mut rep = [0u8; HEADER_LEN];
                hdr.reply().write(&mut rep);
                out(&rep);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn msg(seq: u64, flags: u16, body: &[u8]) -> Vec<u8> {
        let mut h = [0u8; HEADER_LEN];
        Header {
            seq,
            flags,
            len: (HEADER_LEN + body.len()) as u32,
        }
        .write(&mut h);
        let mut v = h.to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn header_roundtrip_is_big_endian() {
        let h = Header {
            seq: 0x0102_0304_0506_0708,
            flags: 3,
            len: 0x0a0b_0c0d,
        };
        let mut b = [0u8; HEADER_LEN];
        h.write(&mut b);
        assert_eq!(b, [1, 2, 3, 4, 5, 6, 7, 8, 0, 3, 0x0a, 0x0b, 0x0c, 0x0d]);
        assert_eq!(Header::parse(&b), h);
        assert_eq!(h.reply().flags, 2);
    }

    #[test]
    fn datagram_rules() {
        let m = msg(7, FLAG_CLIENT | FLAG_REPLY, b"abc");
        match datagram_verdict(&m, m.len()) {
            DatagramVerdict::Reply(h) => {
                assert_eq!(h.seq, 7);
                assert_eq!(h.flags, FLAG_REPLY);
                assert_eq!(h.len as usize, m.len());
            }
            v => panic!("{v:?}"),
        }
        let m = msg(7, FLAG_CLIENT, b"abc");
        assert_eq!(datagram_verdict(&m, m.len()), DatagramVerdict::NoReply);
        assert_eq!(
            datagram_verdict(&m, m.len() + 1),
            DatagramVerdict::Malformed
        );
        assert_eq!(datagram_verdict(&m[..10], 10), DatagramVerdict::Malformed);
    }

    /// Every split of a two-message stream gives the same reply stream.
    #[test]
    fn framer_is_split_invariant() {
        let mut stream = msg(1, FLAG_CLIENT | FLAG_REPLY, b"hello");
        stream.extend(msg(2, FLAG_CLIENT, b"no reply wanted"));
        stream.extend(msg(3, FLAG_CLIENT | FLAG_REPLY | FLAG_WARMUP, &[9u8; 40]));
        let mut expect = msg(1, FLAG_REPLY, b"hello");
        expect.extend(msg(3, FLAG_REPLY | FLAG_WARMUP, &[9u8; 40]));
        for a in 0..stream.len() {
            for b in a..stream.len() {
                let mut f = TcpFramer::new();
                let mut out = Vec::new();
                for part in [&stream[..a], &stream[a..b], &stream[b..]] {
                    f.feed(part, &mut |s| out.extend_from_slice(s)).unwrap();
                }
                assert_eq!(out, expect, "split at {a},{b}");
                assert_eq!(f.messages, 3);
                assert_eq!(f.replies, 2);
            }
        }
    }

    #[test]
    fn framer_rejects_bad_length() {
        let mut h = [0u8; HEADER_LEN];
        Header {
            seq: 0,
            flags: FLAG_REPLY,
            len: 5,
        }
        .write(&mut h);
        assert_eq!(
            TcpFramer::new().feed(&h, &mut |_| {}),
            Err(FrameError::BadLength(5))
        );
        Header {
            seq: 0,
            flags: FLAG_REPLY,
            len: MAX_TCP_MESSAGE + 1,
        }
        .write(&mut h);
        assert!(TcpFramer::new().feed(&h, &mut |_| {}).is_err());
    }
}
