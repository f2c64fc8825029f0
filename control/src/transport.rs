//! The control ABI over a TCP socket (feature `std`), so that wskecho-sim serves the very
//! bytes the driver's control device takes, and Linux tests exercise them.
//!
//! One request per connection:
//! - request: `magic "WSKC"`, `frame_version u16 = 1`, `reserved u16 = 0`, `code u32`,
//!   `input_len u32`, `output_capacity u32`, then `input_len` bytes;
//! - response: `status i32` (NTSTATUS), `output_len u32` (≤ output_capacity), output bytes.
//!
//! All little-endian. As METHOD_BUFFERED does, an error status (severity bits 11) carries no
//! output. Frames over the caps are answered with STATUS_INVALID_PARAMETER without reading
//! their payload, and the connection is closed.

use crate::ioctl::status::{STATUS_INVALID_PARAMETER, STATUS_REVISION_MISMATCH};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use std::vec;
use std::vec::Vec;

pub const MAGIC: [u8; 4] = *b"WSKC";
pub const FRAME_VERSION: u16 = 1;
pub const REQUEST_HEADER_LEN: usize = 20;
pub const RESPONSE_HEADER_LEN: usize = 8;
/// Largest input a frame may carry (above any valid request).
pub const MAX_FRAME_INPUT: u32 = 64 << 10;
/// Largest output capacity a frame may ask for (above any valid response).
pub const MAX_FRAME_OUTPUT: u32 = 1 << 20;
/// Where wskecho-sim listens by default.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7070";
/// How long either side waits for the other's bytes.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

const _: () = assert!(crate::ioctl::MAX_INPUT_BYTES <= MAX_FRAME_INPUT as usize);
const _: () = assert!(crate::ioctl::MAX_OUTPUT_BYTES <= MAX_FRAME_OUTPUT as usize);

/// NT_ERROR: severity "error" (the top two bits set).
fn is_error(status: i32) -> bool {
    (status as u32) >> 30 == 3
}

/// Encodes a request frame.
pub fn encode_request(code: u32, input: &[u8], out_cap: u32) -> Vec<u8> {
    let mut f = Vec::with_capacity(REQUEST_HEADER_LEN + input.len());
    f.extend_from_slice(&MAGIC);
    f.extend_from_slice(&FRAME_VERSION.to_le_bytes());
    f.extend_from_slice(&0u16.to_le_bytes());
    f.extend_from_slice(&code.to_le_bytes());
    f.extend_from_slice(&(input.len() as u32).to_le_bytes());
    f.extend_from_slice(&out_cap.to_le_bytes());
    f.extend_from_slice(input);
    f
}

/// Sends one request and reads its response: `(NTSTATUS, output bytes)`.
pub fn call(addr: SocketAddr, code: u32, input: &[u8], out_cap: u32) -> io::Result<(i32, Vec<u8>)> {
    if input.len() > MAX_FRAME_INPUT as usize || out_cap > MAX_FRAME_OUTPUT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "control request over the frame caps",
        ));
    }
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    s.write_all(&encode_request(code, input, out_cap))?;
    let mut h = [0u8; RESPONSE_HEADER_LEN];
    s.read_exact(&mut h)?;
    let status = i32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if len > out_cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "control response longer than the capacity asked for",
        ));
    }
    let mut out = vec![0u8; len as usize];
    s.read_exact(&mut out)?;
    Ok((status, out))
}

/// Resolves `host:port` text to the first address.
pub fn resolve(addr: &str) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "address resolves to nothing"))
}

/// Serves control requests forever (until the listener fails).
pub fn serve(
    listener: &TcpListener,
    handler: impl FnMut(u32, &[u8], &mut [u8]) -> (i32, usize),
) -> io::Result<()> {
    serve_until(listener, &AtomicBool::new(false), handler)
}

/// Serves control requests until `stop` is set (checked at least every 20 ms). Connections are
/// handled one at a time, one request each, so the handler needs no locking.
pub fn serve_until(
    listener: &TcpListener,
    stop: &AtomicBool,
    mut handler: impl FnMut(u32, &[u8], &mut [u8]) -> (i32, usize),
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    // Poll fast right after a request (clients often send several in a row), slowly when idle.
    let mut last = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((s, _)) => {
                // A client that misbehaves only loses its own connection.
                let _ = serve_one(s, &mut handler);
                last = std::time::Instant::now();
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let idle = last.elapsed() > Duration::from_millis(200);
                std::thread::sleep(Duration::from_millis(if idle { 20 } else { 1 }));
            }
            Err(e)
                if e.kind() == io::ErrorKind::Interrupted
                    || e.kind() == io::ErrorKind::ConnectionAborted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn respond(s: &mut TcpStream, status: i32, out: &[u8]) -> io::Result<()> {
    let mut r = Vec::with_capacity(RESPONSE_HEADER_LEN + out.len());
    r.extend_from_slice(&status.to_le_bytes());
    r.extend_from_slice(&(out.len() as u32).to_le_bytes());
    r.extend_from_slice(out);
    s.write_all(&r)
}

fn serve_one(
    mut s: TcpStream,
    handler: &mut impl FnMut(u32, &[u8], &mut [u8]) -> (i32, usize),
) -> io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    s.set_nodelay(true)?;
    let mut h = [0u8; REQUEST_HEADER_LEN];
    s.read_exact(&mut h)?;
    let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    if h[..4] != MAGIC {
        return respond(&mut s, STATUS_INVALID_PARAMETER, &[]);
    }
    if u16::from_le_bytes([h[4], h[5]]) != FRAME_VERSION || h[6..8] != [0, 0] {
        return respond(&mut s, STATUS_REVISION_MISMATCH, &[]);
    }
    let code = u32_at(8);
    let in_len = u32_at(12);
    let out_cap = u32_at(16);
    if in_len > MAX_FRAME_INPUT || out_cap > MAX_FRAME_OUTPUT {
        return respond(&mut s, STATUS_INVALID_PARAMETER, &[]);
    }
    let mut input = vec![0u8; in_len as usize];
    s.read_exact(&mut input)?;
    let mut out = vec![0u8; out_cap as usize];
    let (status, n) = handler(code, &input, &mut out);
    let n = if is_error(status) {
        0
    } else {
        n.min(out.len())
    };
    respond(&mut s, status, &out[..n])
}
