//! sockperf's wire header, so the driver and echoload talk to real sockperf clients and servers.
//!
//! Layout (sockperf's `MsgHeader`, packed, converted with `hton`): 14 bytes, big-endian: `u64`
//! sequence number, `u16` flags, `u32` total message length including this header. On TCP the
//! length field frames the byte stream. A sockperf server ignores messages without the client
//! flag, ignores warm-up messages, counts the rest, and answers those with the reply flag by
//! sending the same bytes back with the client flag cleared (so a reply is never larger than
//! its request: no amplification).

/// Size of the header on the wire.
pub const HEADER_LEN: usize = 14;

/// Largest message sockperf itself accepts on UDP (its default `MAX_PAYLOAD_SIZE`).
pub const MAX_UDP_MSG: usize = 65_507;

/// Largest frame a server accepts on TCP: sockperf raises its own limit to `-m`, so allow a
/// little over 1 MiB, enough for any sane `-m` while bounding what one frame can make a server
/// buffer. A larger length field means the peer is not speaking sockperf.
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
    /// Decodes a full header.
    pub fn parse(b: &[u8; HEADER_LEN]) -> Self {
        Self {
            seq: u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            flags: u16::from_be_bytes([b[8], b[9]]),
            len: u32::from_be_bytes([b[10], b[11], b[12], b[13]]),
        }
    }

    /// Reads the header at the start of `buf`; `None` if it holds fewer than [`HEADER_LEN`]
    /// bytes.
    pub fn decode(buf: &[u8]) -> Option<Self> {
        Some(Self::parse(buf.get(..HEADER_LEN)?.try_into().ok()?))
    }

    /// Encodes the header.
    pub fn write(&self, out: &mut [u8; HEADER_LEN]) {
        out[0..8].copy_from_slice(&self.seq.to_be_bytes());
        out[8..10].copy_from_slice(&self.flags.to_be_bytes());
        out[10..14].copy_from_slice(&self.len.to_be_bytes());
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `out`; `None` (nothing
    /// written) if `out` is shorter.
    pub fn encode(&self, out: &mut [u8]) -> Option<()> {
        let head: &mut [u8; HEADER_LEN] = out.get_mut(..HEADER_LEN)?.try_into().ok()?;
        self.write(head);
        Some(())
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

    /// The header of the answer: same sequence and length, client flag cleared.
    #[must_use]
    pub fn reply(&self) -> Self {
        Self {
            flags: self.flags & !flags::CLIENT,
            ..*self
        }
    }
}

/// The flags of the message at the start of `buf`; `None` if it holds no full header.
#[inline]
pub fn flags_of(buf: &[u8]) -> Option<u16> {
    Some(Header::decode(buf)?.flags)
}

/// Turns a client message into the server's reply in place (clears the client flag); false,
/// nothing changed, if `msg` holds no full header.
#[inline]
pub fn make_reply_in_place(msg: &mut [u8]) -> bool {
    let Some(f) = flags_of(msg) else {
        return false;
    };
    msg[8..10].copy_from_slice(&(f & !flags::CLIENT).to_be_bytes());
    true
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
    fn header_round_trip_is_big_endian() {
        let h = Header {
            seq: 0x0102_0304_0506_0708,
            flags: flags::CLIENT | flags::REPLY,
            len: 0x0a0b_0c0d,
        };
        let mut b = [0u8; HEADER_LEN];
        h.write(&mut b);
        assert_eq!(b, [1, 2, 3, 4, 5, 6, 7, 8, 0, 3, 0x0a, 0x0b, 0x0c, 0x0d]);
        assert_eq!(Header::decode(&b), Some(h));
        assert_eq!(Header::decode(&b[..13]), None);
        assert_eq!(h.encode(&mut [0u8; 13]), None);
        assert_eq!(h.reply().flags, flags::REPLY);
    }

    #[test]
    fn reply_in_place_clears_the_client_flag_only() {
        let mut m = [0u8; 20];
        Header {
            seq: 9,
            flags: flags::CLIENT | flags::REPLY,
            len: 20,
        }
        .encode(&mut m)
        .unwrap();
        assert!(make_reply_in_place(&mut m));
        assert_eq!(flags_of(&m), Some(flags::REPLY));
        assert!(!make_reply_in_place(&mut m[..10]));
        assert_eq!(verdict(flags::CLIENT | flags::REPLY), Verdict::Reply);
        assert_eq!(verdict(flags::CLIENT), Verdict::Count);
        assert_eq!(verdict(flags::CLIENT | flags::WARMUP), Verdict::Ignore);
        assert_eq!(verdict(flags::REPLY), Verdict::Ignore);
    }
}
