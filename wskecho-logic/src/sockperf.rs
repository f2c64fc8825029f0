//! The sockperf service's decisions over the 14-byte header of `control::protocol::sockperf`
//! (shared with echoload). On TCP the length field frames the byte stream, so the parser below
//! is incremental: a message (and even its header) may be split across any number of receive
//! indications. A reply is owed only when the client asked
//! for one (`FLAG_REPLY`); it is the same bytes with `FLAG_CLIENT` cleared, so it is never
//! larger than the request (no amplification).

use control::protocol::sockperf::{Header, HEADER_LEN, MAX_TCP_MSG};

/// Largest message length accepted on TCP (the shared limit, as a length-field value).
const MAX_TCP_MESSAGE: u32 = MAX_TCP_MSG as u32;

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
    let Some(hdr) = Header::decode(first) else {
        return DatagramVerdict::Malformed;
    };
    if hdr.len as usize != total_len {
        return DatagramVerdict::Malformed;
    }
    if hdr.wants_reply() {
        DatagramVerdict::Reply(hdr.reply())
    } else {
        DatagramVerdict::NoReply
    }
}

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
                let (body, rest) = input.split_at_checked(n).unwrap_or((input, &[]));
                if self.body_reply {
                    out(body);
                }
                self.body_left -= body.len() as u32;
                input = rest;
                continue;
            }
            let n = HEADER_LEN.saturating_sub(self.hdr_have).min(input.len());
            let (head, rest) = input.split_at_checked(n).unwrap_or((input, &[]));
            self.hdr_have += super::copy_at(&mut self.hdr, self.hdr_have, head);
            input = rest;
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
    use control::protocol::sockperf::flags::{
        CLIENT as FLAG_CLIENT, REPLY as FLAG_REPLY, WARMUP as FLAG_WARMUP,
    };
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

    /// Both bounds of the length field are valid: a bare header (no body) and a message of
    /// exactly the largest size (kills `< HEADER_LEN` -> `<=` and `> MAX` -> `>=`).
    #[test]
    fn framer_takes_both_length_bounds() {
        let bare = msg(4, FLAG_CLIENT | FLAG_REPLY, b"");
        let mut f = TcpFramer::new();
        let mut out = Vec::new();
        assert_eq!(f.feed(&bare, &mut |s| out.extend_from_slice(s)), Ok(()));
        assert_eq!(out, msg(4, FLAG_REPLY, b""));
        let mut h = [0u8; HEADER_LEN];
        Header {
            seq: 5,
            flags: FLAG_CLIENT,
            len: MAX_TCP_MESSAGE,
        }
        .write(&mut h);
        assert_eq!(f.feed(&h, &mut |_| {}), Ok(()));
        assert_eq!((f.messages, f.replies), (2, 1));
    }
}
