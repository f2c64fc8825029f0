//! The self-test's socket work: whether a service accepts at all, a TCP half-close, and load
//! runs built from the same flags a user gives `echoload run`. Every wait is bounded.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use clap::Parser;
use control::config::{Mode, Proto, Service};

use super::verdict::Outcome;
use crate::cli::{Cli, Cmd};

/// Where to send a service's test traffic: its own address, or the loopback address of its
/// family when it binds the unspecified one.
pub fn target_of(s: &Service) -> SocketAddr {
    let ip = match s.bind {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        a => a,
    };
    SocketAddr::new(ip, s.port)
}

/// Whether something serves the service's address: a TCP connect is accepted; a UDP datagram
/// draws no "port unreachable" (refused/reset) within a short wait. Err: why not.
pub fn probe(s: &Service) -> Result<(), String> {
    let to = target_of(s);
    match s.proto {
        Proto::Tcp => TcpStream::connect_timeout(&to, Duration::from_secs(3))
            .map(drop)
            .map_err(|e| format!("TCP connect to {to}: {e}")),
        Proto::Udp => {
            let local: SocketAddr = if to.is_ipv4() {
                (Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let sock = UdpSocket::bind(local).map_err(|e| format!("UDP bind: {e}"))?;
            sock.connect(to)
                .map_err(|e| format!("UDP connect {to}: {e}"))?;
            sock.set_read_timeout(Some(Duration::from_millis(300)))
                .map_err(|e| e.to_string())?;
            // To a sockperf service a warm-up message, which it neither answers nor counts
            // (anything else that does not parse would count as malformed).
            let mut msg = [0u8; 32];
            if s.mode == Mode::Sockperf {
                use control::protocol::sockperf::{flags, Header};
                let h = Header {
                    seq: 0,
                    flags: flags::CLIENT | flags::WARMUP,
                    len: msg.len() as u32,
                };
                let _ = h.encode(&mut msg);
            } else {
                msg[..22].copy_from_slice(b"wskecho selftest probe");
            }
            // The "port unreachable" comes back asynchronously and is reported by a later
            // call: on Linux the next receive, under Wine only the next send. Two rounds.
            let refused = |e: &std::io::Error| {
                matches!(
                    e.kind(),
                    ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset
                )
            };
            let mut buf = [0u8; 64];
            for _ in 0..2 {
                match sock.send(&msg) {
                    Err(e) if refused(&e) => return Err(format!("UDP to {to}: {e}")),
                    Err(e) => return Err(format!("UDP send to {to}: {e}")),
                    Ok(_) => {}
                }
                match sock.recv(&mut buf) {
                    Ok(_) => return Ok(()),
                    Err(e) if refused(&e) => return Err(format!("UDP to {to}: {e}")),
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => return Err(format!("UDP receive from {to}: {e}")),
                }
            }
            // Nothing came back and nothing refused: something holds the port (a discard
            // service answers nothing); the runs and the counters tell the rest.
            Ok(())
        }
    }
}

/// TCP half-close against an echo service: send a block, shut down the sending side, and read
/// until end-of-file: every byte must come back, in order, and then the server must close.
pub fn half_close(to: SocketAddr) -> Outcome {
    const LEN: usize = 64 * 1024;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut s = match TcpStream::connect_timeout(&to, Duration::from_secs(3)) {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(format!("connect {to}: {e}")),
    };
    let data: Vec<u8> = (0..LEN).map(|i| (i * 7 + i / 251) as u8).collect();
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    // Write and read in turns: the server stops reading when its echo is not read.
    let (mut sent, mut got) = (0usize, Vec::with_capacity(LEN));
    let mut buf = vec![0u8; 16 * 1024];
    while sent < LEN {
        match s.write(&data[sent..(sent + 8192).min(LEN)]) {
            Ok(n) => sent += n,
            Err(e) => return Outcome::Failed(format!("send after {sent} bytes: {e}")),
        }
        let _ = s.set_nonblocking(true);
        while let Ok(n @ 1..) = s.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        let _ = s.set_nonblocking(false);
        if Instant::now() > deadline {
            return Outcome::Failed(format!("sent only {sent} of {LEN} bytes in 10 s"));
        }
    }
    if let Err(e) = s.shutdown(Shutdown::Write) {
        return Outcome::Failed(format!("shutdown(send): {e}"));
    }
    loop {
        if Instant::now() > deadline {
            return Outcome::Failed(format!(
                "{} of {LEN} bytes back and no end-of-file within 10 s of the half-close",
                got.len()
            ));
        }
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => {
                return Outcome::Failed(format!(
                    "after {} of {LEN} bytes back: {e} (the server reset instead of closing)",
                    got.len()
                ))
            }
        }
    }
    if got.len() != LEN {
        return Outcome::Failed(format!(
            "end-of-file after {} of {LEN} bytes back",
            got.len()
        ));
    }
    if let Some(i) = got.iter().zip(&data).position(|(a, b)| a != b) {
        return Outcome::Failed(format!("byte {i} of the echo differs from what was sent"));
    }
    Outcome::Passed(format!(
        "{LEN} bytes to {to}, send side shut: all echoed, then end-of-file"
    ))
}

/// One `echoload run` with these flags (after `--target` and `--quiet --warmup 0s`): passed
/// when the run moved data with no integrity, connection or I/O error and nothing lost.
pub fn load_run(to: SocketAddr, flags: &[&str]) -> Outcome {
    load_run_explained(to, flags, &mut || None)
}

/// A load run as [`load_run`], where lost datagrams pass only when the driver counted every
/// one of them as its own drop: `drops` is called after the run and gives how many datagrams
/// the driver dropped for want of a send context during it (None: not known). The driver holds
/// a send context until the provider completes the send (W13: completions come when they come;
/// the simulator delays them, a preempted CPU does too), so a fast ping-pong can run its pool
/// dry and the driver drops and counts (the documented overload rule). An uncounted loss, a
/// corruption or a duplicate still fails.
pub fn load_run_explained(
    to: SocketAddr,
    flags: &[&str],
    drops: &mut dyn FnMut() -> Option<u64>,
) -> Outcome {
    let target = to.to_string();
    let mut argv = vec![
        "echoload", "run", "--quiet", "--warmup", "0s", "--target", &target,
    ];
    argv.extend_from_slice(flags);
    let cfg = match Cli::try_parse_from(&argv) {
        Ok(Cli {
            cmd: Some(Cmd::Run(a)),
        }) => a.to_config(),
        Ok(_) => return Outcome::Failed(format!("{argv:?} is not a run")),
        Err(e) => return Outcome::Failed(format!("{argv:?}: {e}")),
    };
    let r = match cfg.and_then(|c| crate::session::try_run(&c)) {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(format!("{e:#}")),
    };
    let e = &r.errors;
    let what = format!(
        "echoload run {}: sent {} msgs / {} B, received {} msgs / {} B, p50 {:.0} us, p99 {:.0} us; lost {}, corrupted {}, connect errors {}, I/O errors {}",
        flags.join(" "),
        r.sent_msgs,
        r.sent_bytes,
        r.recv_msgs,
        r.recv_bytes,
        r.latency_us.p50,
        r.latency_us.p99,
        e.lost,
        e.corrupted,
        e.connect,
        e.io
    );
    if r.clean(false) {
        Outcome::Passed(what)
    } else if r.clean(true)
        && e.duplicated == 0
        && e.lost > 0
        && drops().is_some_and(|d| d >= e.lost)
    {
        Outcome::Passed(format!(
            "{what}\nevery lost datagram was counted by the driver as dropped for want of a send context (its pool ran dry while send completions were late)"
        ))
    } else {
        let first: Vec<&str> = r.messages.iter().take(3).map(String::as_str).collect();
        Outcome::Failed(format!("{what}\n{}", first.join("\n")))
    }
}
