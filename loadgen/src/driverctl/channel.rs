//! How requests reach the driver: its device on Windows, wskecho-sim's socket elsewhere.

use std::net::SocketAddr;
#[cfg(windows)]
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use super::Unreachable;

/// A way to send one IOCTL and get (NTSTATUS, output).
pub trait Channel {
    fn call(&mut self, code: u32, input: &[u8], out_cap: usize) -> Result<(i32, Vec<u8>)>;
    /// What this channel reaches, for reports: the device and the OS build, or a socket.
    fn describe(&self) -> String {
        "a control channel".into()
    }
}

/// wskecho-sim's control socket.
pub struct SocketChannel {
    addr: SocketAddr,
}

impl Channel for SocketChannel {
    fn describe(&self) -> String {
        format!(
            "wskecho-sim (control socket {}), host {} {}",
            self.addr,
            std::env::consts::OS,
            std::env::consts::ARCH
        )
    }

    fn call(&mut self, code: u32, input: &[u8], out_cap: usize) -> Result<(i32, Vec<u8>)> {
        control::transport::call(self.addr, code, input, out_cap as u32).map_err(|e| {
            use std::io::ErrorKind;
            if e.kind() == ErrorKind::ConnectionRefused {
                anyhow!(Unreachable(format!(
                    "wskecho-sim is not running at {} ({e}); start it (cargo run --release --bin wskecho-sim) or pass --control ADDR",
                    self.addr
                )))
            } else if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) {
                // Something may listen there without speaking the control protocol (a wrong
                // port), or the host does not answer at all.
                anyhow!(Unreachable(format!(
                    "control request to {} timed out ({e}): no wskecho-sim answered there; is \
                     it the control port (wskecho-sim --control ADDR)?",
                    self.addr
                )))
            } else if matches!(
                e.kind(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
            ) {
                anyhow!(Unreachable(format!(
                    "{} closed the control connection without an answer ({e}): is it a \
                     wskecho-sim control port?",
                    self.addr
                )))
            } else {
                anyhow!(e).context(format!("control request to {}", self.addr))
            }
        })
    }
}

/// Opens the channel: on Windows the device unless --control was given (falling back to a
/// wskecho-sim at the default address when the device is absent), elsewhere the socket.
pub fn open_channel(control: Option<&str>) -> Result<Box<dyn Channel>> {
    #[cfg(windows)]
    if control.is_none() {
        return match super::windows::DeviceChannel::open() {
            Ok(d) => Ok(Box::new(d)),
            Err(e) => {
                let addr = control::transport::resolve(control::transport::DEFAULT_ADDR)?;
                if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                    return Ok(Box::new(SocketChannel { addr }));
                }
                Err(anyhow!(Unreachable(format!(
                    "the wskecho driver is not reachable: {e}; and no wskecho-sim runs at {addr}. \
                     Install and start the driver (README, \"Windows\"), or start wskecho-sim / pass --control ADDR"
                ))))
            }
        };
    }
    let text = control.unwrap_or(control::transport::DEFAULT_ADDR);
    let addr = control::transport::resolve(text).with_context(|| format!("--control {text}"))?;
    Ok(Box::new(SocketChannel { addr }))
}
