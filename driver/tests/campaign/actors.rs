//! The campaign's traffic: each client runs on a thread of its own, checks every byte it gets
//! back against what it sent (or the source pattern), and reports what it saw. Every socket
//! wait is bounded; the verdict is judged later against what the control thread did meanwhile.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use control::protocol::sockperf::flags::{CLIENT as FLAG_CLIENT, REPLY as FLAG_REPLY};
use control::protocol::sockperf::{Header, HEADER_LEN};

use crate::common::payload;
use crate::plan::Close;

/// How long a client waits for the next byte before it calls the connection stuck. Far above
/// any stall the unkind orders make (40 ms preemption, 20 ms callback stalls, 2 s graceful
/// close), so an undisturbed connection that hits it lost a context or a byte.
const READ_TIMEOUT: Duration = Duration::from_secs(6);

#[derive(Debug)]
pub enum Verdict {
    Ok,
    /// Bytes that differ from what was sent (or a reply to nothing sent): always a failure.
    Corrupt(String),
    /// The server's clean FIN came before every byte was echoed (issue 17 item 2's symptom).
    ShortBeforeFin(String),
    /// Refused, reset, or stuck: a failure unless the control thread disrupted the service.
    Error(String),
}

pub struct Report {
    pub start: Instant,
    pub end: Instant,
    pub verdict: Verdict,
}

/// A running client: what it is, the service port it talks to, its thread.
pub struct Client {
    pub what: String,
    pub port: u16,
    pub handle: JoinHandle<Report>,
}

fn spawn(what: String, port: u16, f: impl FnOnce() -> Verdict + Send + 'static) -> Client {
    let handle = std::thread::spawn(move || {
        let start = Instant::now();
        let verdict = f();
        Report {
            start,
            end: Instant::now(),
            verdict,
        }
    });
    Client { what, port, handle }
}

fn connect(addr: SocketAddr) -> Result<TcpStream, Verdict> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| Verdict::Error(format!("connect: {e}")))?;
    let _ = s.set_read_timeout(Some(READ_TIMEOUT));
    let _ = s.set_write_timeout(Some(READ_TIMEOUT));
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// Reads to the peer's FIN (Ok) or an error, into `got`.
fn read_to_fin(s: &mut TcpStream, got: &mut Vec<u8>, cap: usize) -> Result<(), std::io::Error> {
    let mut buf = vec![0u8; 65_536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                if got.len() > cap {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Compares an echo stream with what was sent: corrupt, short before a clean FIN, cut by an
/// error, or whole.
pub fn judge_stream(
    sent: &[u8],
    got: &[u8],
    end: Result<(), std::io::Error>,
    what: &str,
) -> Verdict {
    let n = got.len().min(sent.len());
    if got.len() > sent.len() {
        return Verdict::Corrupt(format!(
            "{what}: {} bytes back for {} sent",
            got.len(),
            sent.len()
        ));
    }
    if let Some(i) = (0..n).find(|&i| got[i] != sent[i]) {
        // The bytes at the first difference, both ways, and how the stream ended: enough to
        // tell a gap (a later piece echoed after a missing one) from garbage.
        let at = |v: &[u8]| {
            v[i..(i + 16).min(v.len())]
                .iter()
                .fold(String::new(), |mut s, b| {
                    use std::fmt::Write as _;
                    let _ = write!(s, "{b:02x}");
                    s
                })
        };
        return Verdict::Corrupt(format!(
            "{what}: byte {i} of {} differs ({} bytes back; got {} where {} was sent; end {end:?})",
            sent.len(),
            got.len(),
            at(got),
            at(sent)
        ));
    }
    if got.len() == sent.len() {
        // Every byte came back. A close that then ended in an error was abortive: a graceful
        // disconnect that outlived a short DisconnectTimeoutMs ends with an RST, by design.
        return Verdict::Ok;
    }
    match end {
        Ok(()) => Verdict::ShortBeforeFin(format!(
            "{what}: server FIN after {} of {} bytes echoed",
            got.len(),
            sent.len()
        )),
        Err(e) => Verdict::Error(format!(
            "{what}: {e} after {} of {} bytes",
            got.len(),
            sent.len()
        )),
    }
}

/// Writes `data` in `chunk`-byte pieces, half-closes, reads to the server's FIN: `expect`
/// must come back, whole, before it.
fn stream_half_close(
    addr: SocketAddr,
    data: &[u8],
    expect: &[u8],
    chunk: usize,
    what: &str,
) -> Verdict {
    let mut s = match connect(addr) {
        Ok(s) => s,
        Err(v) => return v,
    };
    let Ok(mut r) = s.try_clone() else {
        return Verdict::Error("clone".into());
    };
    let cap = expect.len();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::with_capacity(cap);
        let end = read_to_fin(&mut r, &mut got, cap);
        (got, end)
    });
    let mut wrote = Ok(());
    for c in data.chunks(chunk.max(1)) {
        wrote = s.write_all(c);
        if wrote.is_err() {
            break;
        }
    }
    if wrote.is_ok() {
        wrote = s.shutdown(Shutdown::Write);
    }
    let (got, end) = reader.join().expect("reader thread");
    match (judge_stream(expect, &got, end, what), wrote) {
        (Verdict::Ok | Verdict::ShortBeforeFin(_), Err(e)) => {
            Verdict::Error(format!("{what}: write: {e} ({} bytes back)", got.len()))
        }
        (v, _) => v,
    }
}

pub fn tcp_echo(addr: SocketAddr, seed: u64, len: usize, chunk: usize, close: Close) -> Client {
    let what = format!("tcp echo {len} B in {chunk} B writes, {close:?} close, to {addr}");
    let w = what.clone();
    spawn(what, addr.port(), move || {
        let data = payload(seed, len);
        match close {
            Close::Half => stream_half_close(addr, &data, &data, chunk, "echo"),
            Close::Abort => abortive_echo(addr, &data, chunk),
        }
    })
    .named(w)
}

/// Writes half, reads what came back (checked), writes the rest and closes with the echo
/// unread: the kernel sends an RST.
fn abortive_echo(addr: SocketAddr, data: &[u8], chunk: usize) -> Verdict {
    let mut s = match connect(addr) {
        Ok(s) => s,
        Err(v) => return v,
    };
    // At most 32 KiB in flight before reading, so neither side's buffers fill.
    let first = &data[..(data.len() / 2).min(32 << 10)];
    for c in first.chunks(chunk.max(1)) {
        if let Err(e) = s.write_all(c) {
            return Verdict::Error(format!("abortive echo: write: {e}"));
        }
    }
    let mut got = vec![0u8; first.len().min(1000)];
    if let Err(e) = s.read_exact(&mut got) {
        return Verdict::Error(format!("abortive echo: read: {e}"));
    }
    if got[..] != first[..got.len()] {
        return Verdict::Corrupt("abortive echo: echoed prefix differs".into());
    }
    let rest = &data[first.len()..];
    let _ = s.write_all(&rest[..rest.len().min(32 << 10)]);
    std::thread::sleep(Duration::from_millis(2));
    drop(s);
    Verdict::Ok
}

pub fn sockperf_tcp(addr: SocketAddr, msgs: u32) -> Client {
    spawn(
        format!("sockperf tcp {msgs} messages to {addr}"),
        addr.port(),
        move || {
            let mut stream = Vec::new();
            let mut expect = Vec::new();
            for seq in 0..u64::from(msgs) {
                let len = HEADER_LEN + (seq as usize * 13) % 2000;
                let reply = seq % 2 == 0;
                let m = sp_msg(
                    seq,
                    if reply {
                        FLAG_CLIENT | FLAG_REPLY
                    } else {
                        FLAG_CLIENT
                    },
                    len,
                );
                if reply {
                    expect.extend(sp_reply(&m));
                }
                stream.extend(m);
            }
            stream_half_close(addr, &stream, &expect, 777, "sockperf")
        },
    )
}

fn sp_msg(seq: u64, flags: u16, len: usize) -> Vec<u8> {
    let mut m = payload(seq, len);
    let mut h = [0u8; HEADER_LEN];
    Header {
        seq,
        flags,
        len: len as u32,
    }
    .write(&mut h);
    m[..HEADER_LEN].copy_from_slice(&h);
    m
}

fn sp_reply(m: &[u8]) -> Vec<u8> {
    let mut r = m.to_vec();
    let f = u16::from_be_bytes([r[8], r[9]]) & !FLAG_CLIENT;
    r[8..10].copy_from_slice(&f.to_be_bytes());
    r
}

pub fn source(addr: SocketAddr, bytes: usize) -> Client {
    spawn(
        format!("source read {bytes} B from {addr}"),
        addr.port(),
        move || {
            let mut s = match connect(addr) {
                Ok(s) => s,
                Err(v) => return v,
            };
            let mut got = vec![0u8; bytes];
            let mut at = 0;
            while at < bytes {
                match s.read(&mut got[at..]) {
                    Ok(0) => {
                        return Verdict::Error(format!("source: FIN after {at} of {bytes} bytes"))
                    }
                    Ok(n) => at += n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => {
                        return Verdict::Error(format!("source: {e} after {at} of {bytes} bytes"))
                    }
                }
            }
            match control::protocol::pattern::check(0, &got) {
                Some(i) => Verdict::Corrupt(format!("source: byte {i} off the pattern")),
                None => Verdict::Ok,
            }
        },
    )
}

pub fn discard(addr: SocketAddr, seed: u64, bytes: usize) -> Client {
    spawn(
        format!("discard {bytes} B to {addr}"),
        addr.port(),
        move || {
            // A discard service sends nothing back, then its FIN.
            stream_half_close(addr, &payload(seed, bytes), &[], 16_384, "discard")
        },
    )
}

/// UDP echo (or sockperf when `sockperf`) from `sources` addresses: every reply must be the
/// echo of one datagram that source sent (sockperf: its reply form), from the service
/// address, at most once. Losses are allowed (UDP; the driver drops when out of contexts).
pub fn udp(
    addr: SocketAddr,
    seed: u64,
    sources: u8,
    count: u32,
    size: usize,
    sockperf: bool,
) -> Client {
    let what = format!(
        "udp {} {count} x {size} B from {sources} sources to {addr}",
        if sockperf { "sockperf" } else { "echo" }
    );
    spawn(what, addr.port(), move || {
        let ips: Vec<IpAddr> = if addr.is_ipv6() {
            vec![addr.ip()]
        } else {
            (0..sources)
                .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i)))
                .collect()
        };
        let mut socks = Vec::new();
        for ip in ips {
            match UdpSocket::bind(SocketAddr::new(ip, 0)) {
                Ok(u) => {
                    let _ = u.set_read_timeout(Some(Duration::from_millis(5)));
                    socks.push(u);
                }
                Err(e) => return Verdict::Error(format!("bind {ip}: {e}")),
            }
        }
        let size = size.max(HEADER_LEN);
        // Datagram k of source i: the seq field (sockperf) or the first 8 bytes say (i, k).
        let msg = |i: usize, k: u32| -> Vec<u8> {
            let seq = ((i as u64) << 32) | u64::from(k);
            if sockperf {
                sp_msg(seq, FLAG_CLIENT | FLAG_REPLY, size)
            } else {
                let mut m = payload(seed ^ seq, size);
                m[..8].copy_from_slice(&seq.to_be_bytes());
                m
            }
        };
        let mut seen = std::collections::HashSet::new();
        let mut buf = vec![0u8; 65_536];
        let mut check = |socks: &[UdpSocket],
                         seen: &mut std::collections::HashSet<u64>|
         -> Result<usize, Verdict> {
            let mut got = 0;
            for (i, u) in socks.iter().enumerate() {
                while let Ok((n, from)) = u.recv_from(&mut buf) {
                    got += 1;
                    if from != addr {
                        return Err(Verdict::Corrupt(format!("reply from {from}, not {addr}")));
                    }
                    let r = &buf[..n];
                    let seq = if sockperf {
                        Header::decode(r).map(|h| h.seq)
                    } else {
                        r.get(..8)
                            .map(|b| u64::from_be_bytes(b.try_into().unwrap()))
                    };
                    let Some(seq) = seq.filter(|s| (s >> 32) as usize == i && (*s as u32) < count)
                    else {
                        // A datagram of another source (its echo sent to the wrong address)
                        // or bytes that are nobody's.
                        let whose = seq.map_or("no header".to_string(), |s| {
                            format!("source {} datagram {}", s >> 32, s as u32)
                        });
                        return Err(Verdict::Corrupt(format!(
                            "a {n} B reply to source {i} ({}) matching nothing it sent: header says {whose}",
                            socks[i].local_addr().map_or(String::new(), |a| a.to_string())
                        )));
                    };
                    let sent = msg(i, seq as u32);
                    let want = if sockperf { sp_reply(&sent) } else { sent };
                    if r != want {
                        return Err(Verdict::Corrupt(format!(
                            "reply {seq:#x}: {n} B differ from the datagram"
                        )));
                    }
                    if !seen.insert(seq) {
                        return Err(Verdict::Corrupt(format!("reply {seq:#x} came twice")));
                    }
                }
            }
            Ok(got)
        };
        for k in 0..count {
            for (i, u) in socks.iter().enumerate() {
                let _ = u.send_to(&msg(i, k), addr);
            }
            if k % 8 == 7 {
                if let Err(v) = check(&socks, &mut seen) {
                    return v;
                }
            }
        }
        // Late replies: until 200 ms pass without one (bounded).
        let t0 = Instant::now();
        let mut quiet = Instant::now();
        while quiet.elapsed() < Duration::from_millis(200) && t0.elapsed() < Duration::from_secs(5)
        {
            match check(&socks, &mut seen) {
                Err(v) => return v,
                Ok(0) => {}
                Ok(_) => quiet = Instant::now(),
            }
        }
        Verdict::Ok
    })
}

impl Client {
    fn named(mut self, what: String) -> Client {
        self.what = what;
        self
    }
}
