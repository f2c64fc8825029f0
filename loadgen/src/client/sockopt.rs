//! Socket settings a run may ask for (buffers, TCP_NODELAY, TOS, local address) and CPU
//! pinning of the worker threads.

use std::io;
use std::net::{IpAddr, SocketAddr};

use socket2::Socket;

/// Per-socket settings of a run.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SockOpts {
    /// SO_SNDBUF (None: the engine's default).
    pub send_buffer: Option<usize>,
    /// SO_RCVBUF (None: the engine's default).
    pub recv_buffer: Option<usize>,
    /// TCP_NODELAY (on by default: messages leave at once).
    pub nodelay: bool,
    /// IP TOS byte / IPv6 traffic class.
    pub tos: Option<u8>,
    /// Local address to bind before connecting (port chosen by the OS).
    pub bind: Option<IpAddr>,
}

impl Default for SockOpts {
    fn default() -> Self {
        SockOpts {
            send_buffer: None,
            recv_buffer: None,
            nodelay: true,
            tos: None,
            bind: None,
        }
    }
}

impl SockOpts {
    /// Applies everything but TCP_NODELAY to a socket that is not connected yet.
    pub(crate) fn apply(&self, s: &Socket, target: SocketAddr) -> io::Result<()> {
        let ctx = |what: &str, e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
        if let Some(n) = self.send_buffer {
            s.set_send_buffer_size(n).map_err(|e| ctx("SO_SNDBUF", e))?;
        }
        if let Some(n) = self.recv_buffer {
            s.set_recv_buffer_size(n).map_err(|e| ctx("SO_RCVBUF", e))?;
        }
        if let Some(t) = self.tos {
            set_tos(s, target, t).map_err(|e| ctx("TOS", e))?;
        }
        if let Some(ip) = self.bind {
            if ip.is_ipv6() != target.is_ipv6() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("local address {ip} and target {target} are of different families"),
                ));
            }
            s.bind(&SocketAddr::new(ip, 0).into())
                .map_err(|e| ctx(&format!("bind to {ip}"), e))?;
        }
        Ok(())
    }
}

#[cfg(unix)]
fn set_tos(s: &Socket, target: SocketAddr, tos: u8) -> io::Result<()> {
    if target.is_ipv6() {
        s.set_tclass_v6(u32::from(tos))
    } else {
        s.set_tos(u32::from(tos))
    }
}

#[cfg(not(unix))]
fn set_tos(s: &Socket, target: SocketAddr, tos: u8) -> io::Result<()> {
    if target.is_ipv6() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "an IPv6 traffic class cannot be set on this OS",
        ));
    }
    s.set_tos(u32::from(tos))
}

/// Pins the calling thread to `cpu`.
#[cfg(target_os = "linux")]
pub(crate) fn pin_to(cpu: usize) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET writes inside it (bounds are checked
    // against its size first); sched_setaffinity(0, ...) acts on the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("CPU {cpu} out of range"),
            ));
        }
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw const set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The CPUs this process may run on (None where the OS does not say).
#[cfg(target_os = "linux")]
pub fn allowed_cpus() -> Option<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity(0, ...) fills the
    // one we own; CPU_ISSET reads inside it (the index is below its bit size).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw mut set) != 0 {
            return None;
        }
        let bits = 8 * std::mem::size_of::<libc::cpu_set_t>();
        Some((0..bits).filter(|&c| libc::CPU_ISSET(c, &set)).collect())
    }
}

#[cfg(not(target_os = "linux"))]
pub fn allowed_cpus() -> Option<Vec<usize>> {
    None
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn pin_to(_cpu: usize) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "CPU pinning is implemented on Linux only",
    ))
}
