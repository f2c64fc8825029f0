//! Building and checking messages on either wire format.

use crate::payload::{self, HEADER_LEN};
use control::protocol::sockperf;

/// Which message format the client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Wire {
    /// echoload's own header (sequence, timestamp, check word) + pattern.
    #[default]
    Echoload,
    /// sockperf's 14-byte header + pattern, so a real `sockperf server` answers.
    Sockperf,
}

impl std::fmt::Display for Wire {
    /// As the `--wire` value is spelled.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Wire::Echoload => "echoload",
            Wire::Sockperf => "sockperf",
        })
    }
}

/// Outcome of checking one received message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Intact; `ts_ns` is the send timestamp when the wire carries one.
    Ok { seq: u64, ts_ns: Option<u64> },
    /// Header readable (so the sequence is known) but some byte is wrong.
    BadBody { seq: u64 },
    /// Header unreadable, wrong length or wrong flow: the message cannot be attributed.
    BadHeader,
}

impl Wire {
    pub fn min_size(self) -> usize {
        match self {
            Wire::Echoload => HEADER_LEN,
            Wire::Sockperf => sockperf::HEADER_LEN,
        }
    }

    /// Writes message (flow, seq) into `buf` (its whole length is the message).
    #[inline]
    pub fn build(self, flow: u32, seq: u64, ts_ns: u64, reply: bool, buf: &mut [u8]) {
        match self {
            Wire::Echoload => payload::write_message(flow, seq, ts_ns, buf),
            Wire::Sockperf => {
                let mut flags = sockperf::flags::CLIENT;
                if reply {
                    flags |= sockperf::flags::REPLY;
                }
                let h = sockperf::Header {
                    seq,
                    flags,
                    len: buf.len() as u32,
                };
                h.encode(buf)
                    .expect("a sockperf message is at least a header long (Wire::min_size)");
                payload::fill_pattern(flow, seq, &mut buf[sockperf::HEADER_LEN..]);
            }
        }
    }

    /// Checks an echoed message of flow `flow`.
    #[inline]
    pub fn check(self, flow: u32, buf: &[u8]) -> Check {
        match self {
            Wire::Echoload => match payload::Header::decode(buf) {
                Some(h) if h.flow == flow && h.len as usize == buf.len() => {
                    if payload::check_pattern(flow, h.seq, &buf[HEADER_LEN..]) {
                        Check::Ok {
                            seq: h.seq,
                            ts_ns: Some(h.ts_ns),
                        }
                    } else {
                        Check::BadBody { seq: h.seq }
                    }
                }
                _ => Check::BadHeader,
            },
            Wire::Sockperf => match sockperf::Header::decode(buf) {
                // A reply must have the client bit cleared and keep the reply bit.
                Some(h) if h.len as usize == buf.len() => {
                    if h.is_client() || !h.wants_reply() {
                        Check::BadBody { seq: h.seq }
                    } else if payload::check_pattern(flow, h.seq, &buf[sockperf::HEADER_LEN..]) {
                        Check::Ok {
                            seq: h.seq,
                            ts_ns: None,
                        }
                    } else {
                        Check::BadBody { seq: h.seq }
                    }
                }
                _ => Check::BadHeader,
            },
        }
    }
}

/// Send times of recent messages for wires without a timestamp (sockperf), keyed by sequence.
impl Wire {
    /// [`Wire::check`] of a reply whose request is at hand (`seq`, its bytes `sent`, as
    /// built by [`Wire::build`] for `flow`): the ping-pong's outstanding request. A reply to
    /// it carries the same body, so the body is compared with the request's (one `memcmp`)
    /// instead of the pattern being generated again (~130 instructions for 64 bytes); any
    /// other datagram gets the full check. Same verdict as [`Wire::check`] either way.
    #[inline]
    pub fn check_echo(self, flow: u32, buf: &[u8], seq: u64, sent: &[u8]) -> Check {
        if buf.len() == sent.len() {
            match self {
                // The whole message is the request's: header (time, check word) and body.
                Wire::Echoload if buf == sent => {
                    if let Some(h) = payload::Header::decode(buf) {
                        if h.flow == flow && h.seq == seq && h.len as usize == buf.len() {
                            return Check::Ok {
                                seq,
                                ts_ns: Some(h.ts_ns),
                            };
                        }
                    }
                }
                Wire::Sockperf => {
                    if let Some(h) = sockperf::Header::decode(buf) {
                        if h.seq == seq
                            && h.len as usize == buf.len()
                            && !h.is_client()
                            && h.wants_reply()
                        {
                            return if buf[sockperf::HEADER_LEN..] == sent[sockperf::HEADER_LEN..] {
                                Check::Ok { seq, ts_ns: None }
                            } else {
                                Check::BadBody { seq }
                            };
                        }
                    }
                }
                Wire::Echoload => {}
            }
        }
        self.check(flow, buf)
    }
}

pub struct SendTimes {
    seqs: Vec<u64>,
    times: Vec<u64>,
}

impl SendTimes {
    pub fn new(cap: usize) -> Self {
        let cap = cap.next_power_of_two();
        SendTimes {
            seqs: vec![u64::MAX; cap],
            times: vec![0; cap],
        }
    }
    #[inline]
    pub fn put(&mut self, seq: u64, ts: u64) {
        let i = (seq as usize) & (self.seqs.len() - 1);
        self.seqs[i] = seq;
        self.times[i] = ts;
    }
    #[inline]
    pub fn get(&self, seq: u64) -> Option<u64> {
        let i = (seq as usize) & (self.seqs.len() - 1);
        (self.seqs[i] == seq).then(|| self.times[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_wires_round_trip() {
        for wire in [Wire::Echoload, Wire::Sockperf] {
            let mut b = vec![0u8; 100];
            wire.build(3, 9, 77, true, &mut b);
            if wire == Wire::Sockperf {
                // What a sockperf server does to a reply: clear the client bit.
                b[9] &= !1;
            }
            let c = wire.check(3, &b);
            assert!(matches!(c, Check::Ok { seq: 9, .. }), "{wire:?}: {c:?}");
            b[50] ^= 4;
            assert_eq!(wire.check(3, &b), Check::BadBody { seq: 9 });
        }
    }

    /// `check_echo` (the ping-pong's reply against its request) gives `check`'s verdict on
    /// the reply, a corrupted body or header, a reply to another request, a server-side
    /// flag wrong, a short datagram and garbage.
    #[test]
    fn check_echo_agrees_with_check() {
        for wire in [Wire::Echoload, Wire::Sockperf] {
            for size in [wire.min_size(), 64, 100] {
                let mut sent = vec![0u8; size];
                wire.build(3, 9, 77, true, &mut sent);
                let mut other = vec![0u8; size];
                wire.build(3, 8, 70, true, &mut other);
                let mut reply = sent.clone();
                let mut other_reply = other.clone();
                if wire == Wire::Sockperf {
                    // What a sockperf server does to a reply: clear the client bit.
                    reply[9] &= !1;
                    other_reply[9] &= !1;
                }
                let mut cases = vec![
                    reply.clone(),
                    other_reply,
                    sent.clone(),
                    reply[..size - 1].to_vec(),
                ];
                for i in [0, 9, 13, size - 1] {
                    let mut c = reply.clone();
                    c[i] ^= 0x10;
                    cases.push(c);
                }
                cases.push(vec![0xAB; size]);
                for (k, c) in cases.iter().enumerate() {
                    assert_eq!(
                        wire.check_echo(3, c, 9, &sent),
                        wire.check(3, c),
                        "{wire:?} size {size} case {k}"
                    );
                }
                assert!(matches!(
                    wire.check_echo(3, &reply, 9, &sent),
                    Check::Ok { seq: 9, .. }
                ));
            }
        }
    }
}
