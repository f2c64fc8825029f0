//! The socket framing: calls through `serve_until` reach the handler with the same bytes;
#![allow(
    clippy::many_single_char_names,
    clippy::field_reassign_with_default,
    clippy::type_complexity
)]
//! oversize and malformed frames are refused cleanly.
use control::ioctl::status::*;
use control::ioctl::*;
use control::mock::MockDriver;
use control::transport::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn server() -> (
    std::net::SocketAddr,
    Arc<AtomicBool>,
    std::thread::JoinHandle<()>,
) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let t = std::thread::spawn(move || {
        let mut m = MockDriver::new(2);
        serve_until(&l, &s2, |c, i, o| dispatch(&mut m, c, i, o)).unwrap();
    });
    (addr, stop, t)
}

fn raw(addr: std::net::SocketAddr, frame: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    s.write_all(frame).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut r = Vec::new();
    s.read_to_end(&mut r).unwrap();
    r
}

#[test]
fn calls_reach_dispatch_and_errors_carry_no_output() {
    let (addr, stop, t) = server();
    let (s, out) = call(addr, IOCTL_WSKECHO_QUERY_VERSION, &[], 64).unwrap();
    assert_eq!(s, STATUS_SUCCESS);
    assert_eq!(VersionInfo::decode(&out).unwrap().cpu_count, 2);
    let mut req = vec![0u8; 64];
    let n = encode_empty_request(Kind::ConfigGetRequest, &mut req).unwrap();
    let (s, out) = call(addr, IOCTL_WSKECHO_GET_CONFIG, &req[..n], MAX_FRAME_OUTPUT).unwrap();
    assert_eq!(s, STATUS_SUCCESS);
    assert_eq!(
        decode_config_response(&out).unwrap(),
        control::config::Config::default()
    );
    // Too small a capacity: error status, no bytes.
    assert_eq!(
        call(addr, IOCTL_WSKECHO_GET_CONFIG, &req[..n], 8).unwrap(),
        (STATUS_BUFFER_TOO_SMALL, vec![])
    );
    assert_eq!(
        call(addr, 0x1234, &[], 16).unwrap(),
        (STATUS_INVALID_DEVICE_REQUEST, vec![])
    );
    // The client refuses to send over-cap frames.
    assert!(call(
        addr,
        IOCTL_WSKECHO_GET_CONFIG,
        &vec![0; MAX_FRAME_INPUT as usize + 1],
        16
    )
    .is_err());
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
}

#[test]
fn oversize_and_bad_frames_are_refused_and_server_survives() {
    let (addr, stop, t) = server();
    let status_of = |r: &[u8]| i32::from_le_bytes(r[0..4].try_into().unwrap());
    // Input over the cap: answered without reading it.
    let mut f = encode_request(IOCTL_WSKECHO_QUERY_VERSION, &[], 16);
    f[12..16].copy_from_slice(&(MAX_FRAME_INPUT + 1).to_le_bytes());
    let r = raw(addr, &f);
    assert_eq!((status_of(&r), r.len()), (STATUS_INVALID_PARAMETER, 8));
    // Output capacity over the cap.
    let f = encode_request(IOCTL_WSKECHO_QUERY_VERSION, &[], MAX_FRAME_OUTPUT + 1);
    assert_eq!(status_of(&raw(addr, &f)), STATUS_INVALID_PARAMETER);
    // Bad magic and bad frame version.
    let mut f = encode_request(IOCTL_WSKECHO_QUERY_VERSION, &[], 64);
    f[0] = b'X';
    assert_eq!(status_of(&raw(addr, &f)), STATUS_INVALID_PARAMETER);
    let mut f = encode_request(IOCTL_WSKECHO_QUERY_VERSION, &[], 64);
    f[4] = 9;
    assert_eq!(status_of(&raw(addr, &f)), STATUS_REVISION_MISMATCH);
    // A truncated frame (client closes early) costs only its connection.
    let f = encode_request(IOCTL_WSKECHO_QUERY_VERSION, &[], 64);
    assert!(raw(addr, &f[..10]).is_empty());
    // Still serving.
    assert_eq!(
        call(addr, IOCTL_WSKECHO_QUERY_VERSION, &[], 64).unwrap().0,
        STATUS_SUCCESS
    );
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
}
