//! Message counts on a TCP echo byte stream: the echo service copies bytes, whatever they are,
//! but when they are echoload-wire messages (a header with the message length) it can count
//! them, so the server's TCP message counters compare with the client's. One [`Framer`] per
//! direction per connection; a stream that is not echoload's wire stops being counted at its
//! first bad header (its bytes are still echoed).

use crate::payload::{Header, HEADER_LEN};

#[derive(Clone, Debug, Default)]
pub(crate) struct Framer {
    hdr: [u8; HEADER_LEN],
    /// Header bytes collected so far.
    have: usize,
    /// Bytes of the current message's body still to come.
    need: u64,
    /// Not echoload's wire: counts nothing more.
    off: bool,
}

impl Framer {
    /// Feeds the next bytes of the stream; returns how many messages ended in them.
    pub(crate) fn feed(&mut self, mut b: &[u8]) -> u64 {
        let mut done = 0;
        while !b.is_empty() && !self.off {
            if self.need > 0 {
                let k = (self.need.min(b.len() as u64)) as usize;
                self.need -= k as u64;
                b = &b[k..];
                if self.need == 0 {
                    done += 1;
                }
                continue;
            }
            let k = (HEADER_LEN - self.have).min(b.len());
            self.hdr[self.have..self.have + k].copy_from_slice(&b[..k]);
            self.have += k;
            b = &b[k..];
            if self.have == HEADER_LEN {
                self.have = 0;
                match Header::decode(&self.hdr) {
                    Some(h) if h.len as usize >= HEADER_LEN => {
                        self.need = u64::from(h.len) - HEADER_LEN as u64;
                        if self.need == 0 {
                            done += 1;
                        }
                    }
                    _ => self.off = true,
                }
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_messages_split_anywhere_and_stops_on_foreign_bytes() {
        let mut stream = Vec::new();
        for (seq, len) in [(0u64, 32usize), (1, 100), (2, 64), (3, 5000)] {
            let mut m = vec![0u8; len];
            crate::payload::write_message(7, seq, 1, &mut m);
            stream.extend_from_slice(&m);
        }
        for chunk in [1, 3, 31, 32, 33, 1000, stream.len()] {
            let mut f = Framer::default();
            let n: u64 = stream.chunks(chunk).map(|c| f.feed(c)).sum();
            assert_eq!(n, 4, "chunks of {chunk}");
        }
        // The first 40 bytes of a message: its header, not its end.
        let mut f = Framer::default();
        assert_eq!(f.feed(&stream[32..32 + 40]), 0);
        // Foreign bytes: no count, ever after.
        let mut f = Framer::default();
        assert_eq!(f.feed(&[0xAB; 64]), 0);
        assert_eq!(f.feed(&stream), 0);
    }
}
