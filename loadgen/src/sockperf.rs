//! sockperf's wire header, so echoload can talk to real sockperf clients and servers.
//!
//! Layout (checked against Mellanox/sockperf `src/message.h`, `MsgHeader`, packed, converted with
//! `hton`): 14 bytes, big-endian: `u64` sequence number, `u16` flags, `u32` total message length
//! including this header. On TCP the length field frames the byte stream. A sockperf server
//! ignores messages without the client flag, ignores warm-up messages, counts the rest, and
//! answers those with the reply flag by sending the same bytes back with the client flag cleared.

/// Size of the header on the wire (`MsgHeader::EFFECTIVE_SIZE`).
pub const HEADER_LEN: usize = 14;

/// Largest message sockperf itself accepts on UDP (`MAX_PAYLOAD_SIZE` default, 65507).
pub const MAX_UDP_MSG: usize = 65_507;

/// Largest frame the echoload server accepts on TCP: sockperf raises its own limit to `-m`, so
/// allow a little over 1 MiB, enough for any sane `-m` while still bounding what one frame can
/// make the server buffer.
pub const MAX_TCP_MSG: usize = 1 << 20;

/// Flag bits of the header's `flags` field.
pub mod flags {
    /// Sent by a client (a server clears it in its reply).
    pub const CLIENT: u16 = 1;
    /// The client asks for a reply ("pong request").
    pub const REPLY: u16 = 2;
    /// Warm-up message: a server neither answers nor counts it.
    pub const WARMUP: u16 = 4;
}

/// A decoded header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub seq: u64,
    pub flags: u16,
    /// Total message length, header included.
    pub len: u32,
}

impl Header {
    /// Writes the header into the first [`HEADER_LEN`] bytes of `out` (same as [`encode`]).
    pub fn encode(&self, out: &mut [u8]) {
        encode(self, out);
    }

    /// Reads a header (same as [`decode`]).
    pub fn decode(b: &[u8]) -> Option<Header> {
        decode(b)
    }

    pub fn is_client(&self) -> bool {
        self.flags & flags::CLIENT != 0
    }
    pub fn wants_reply(&self) -> bool {
        self.flags & flags::REPLY != 0
    }
    pub fn is_warmup(&self) -> bool {
        self.flags & flags::WARMUP != 0
    }
}

/// Writes `h` into the first [`HEADER_LEN`] bytes of `out`.
///
/// # Panics
/// If `out` is shorter than [`HEADER_LEN`].
pub fn encode(h: &Header, out: &mut [u8]) {
    out[0..8].copy_from_slice(&h.seq.to_be_bytes());
    out[8..10].copy_from_slice(&h.flags.to_be_bytes());
    out[10..14].copy_from_slice(&h.len.to_be_bytes());
}

/// Reads the header at the start of `buf`; `None` if fewer than [`HEADER_LEN`] bytes.
pub fn decode(buf: &[u8]) -> Option<Header> {
    let b: &[u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
    Some(Header {
        seq: u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        flags: u16::from_be_bytes([b[8], b[9]]),
        len: u32::from_be_bytes([b[10], b[11], b[12], b[13]]),
    })
}

/// Reads only the flags of the message at the start of `buf` (caller guarantees a full header).
#[inline]
pub(crate) fn flags_of(buf: &[u8]) -> u16 {
    u16::from_be_bytes([buf[8], buf[9]])
}

/// Turns a client message into the server's reply in place: clears the client flag.
#[inline]
pub fn make_reply_in_place(msg: &mut [u8]) {
    let f = flags_of(msg) & !flags::CLIENT;
    msg[8..10].copy_from_slice(&f.to_be_bytes());
}

/// What a sockperf server does with one complete message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not from a client, or a warm-up message: neither counted nor answered.
    Ignore,
    /// Counted, no reply requested.
    Count,
    /// Counted and answered.
    Reply,
}

/// Classifies a message by its flags, as sockperf's server does.
#[inline]
pub fn verdict(flags: u16) -> Verdict {
    if flags & flags::CLIENT == 0 || flags & flags::WARMUP != 0 {
        Verdict::Ignore
    } else if flags & flags::REPLY != 0 {
        Verdict::Reply
    } else {
        Verdict::Count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_byte_order() {
        let h = Header {
            seq: 0x0102_0304_0506_0708,
            flags: flags::CLIENT | flags::REPLY,
            len: 64,
        };
        let mut b = [0u8; 16];
        encode(&h, &mut b);
        assert_eq!(&b[..14], &[1, 2, 3, 4, 5, 6, 7, 8, 0, 3, 0, 0, 0, 64]);
        assert_eq!(decode(&b), Some(h));
        assert_eq!(decode(&b[..13]), None);
    }

    #[test]
    fn reply_clears_only_client_bit() {
        let mut b = [0u8; 20];
        encode(
            &Header {
                seq: 9,
                flags: 7,
                len: 20,
            },
            &mut b,
        );
        make_reply_in_place(&mut b);
        assert_eq!(decode(&b).unwrap().flags, 6);
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict(0), Verdict::Ignore);
        assert_eq!(verdict(flags::REPLY), Verdict::Ignore);
        assert_eq!(
            verdict(flags::CLIENT | flags::WARMUP | flags::REPLY),
            Verdict::Ignore
        );
        assert_eq!(verdict(flags::CLIENT), Verdict::Count);
        assert_eq!(verdict(flags::CLIENT | flags::REPLY), Verdict::Reply);
    }
}
