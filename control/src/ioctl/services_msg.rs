//! Service state (IOCTL_WSKECHO_QUERY_SERVICES): whether each configured service's socket is
//! open and, when it is not, the NTSTATUS of its last attempt to open and whether the driver is
//! still trying. A service whose port another socket holds, or whose address the machine does
//! not have, is part of the configuration but serves nothing: this answer says so.
//!
//! Added within ABI 3 without changing any existing message: a driver that has it sets
//! [`FEATURE_SERVICE_STATE`] in its version answer, and a client asks only then (an older
//! driver refuses the code as unknown, STATUS_INVALID_DEVICE_REQUEST).
//!
//! Response: [`Header`], `count u16, reserved u16, reserved u32`, then `count` entries of a
//! service ([`super::SERVICE_LEN`] bytes, as in a config), `status i32`, `flags u32`.

use super::msg::{decode_service, encode_service, SERVICE_LEN};
use super::status::STATUS_SUCCESS;
use super::wire::{Reader, Writer};
use super::{ControlError, Header, Kind, HEADER_LEN};
use crate::config::{Service, MAX_SERVICES};

/// Version-answer feature bit: the driver answers IOCTL_WSKECHO_QUERY_SERVICES.
pub const FEATURE_SERVICE_STATE: u32 = 1;
/// Every feature bit this build knows.
pub const KNOWN_FEATURES: u32 = FEATURE_SERVICE_STATE;

/// Entry flag: the service is not open and the driver tries to open it again (its
/// housekeeping retries about every 80 ms until it opens or is removed).
pub const SERVICE_STATE_RETRYING: u32 = 1;

/// One entry: a service, its status, its flags.
pub const SERVICE_STATE_LEN: usize = SERVICE_LEN + 8;
/// `count u16, reserved u16, reserved u32` after the header.
pub const SERVICE_STATES_FIXED_LEN: usize = HEADER_LEN + 8;

pub const fn service_states_len(services: usize) -> usize {
    SERVICE_STATES_FIXED_LEN + services * SERVICE_STATE_LEN
}

/// Where one configured service stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceState {
    pub service: Service,
    /// STATUS_SUCCESS: its socket is open. Otherwise why not: the NTSTATUS of the last
    /// attempt to open it (e.g. STATUS_ADDRESS_ALREADY_EXISTS: the port is taken), or
    /// STATUS_DEVICE_NOT_READY before the first attempt (the WSK provider not captured yet).
    pub status: i32,
    /// The driver keeps trying to open it (only when not open).
    pub retrying: bool,
}

impl ServiceState {
    pub fn is_open(&self) -> bool {
        self.status == STATUS_SUCCESS
    }
}

/// A decoded answer: up to [`MAX_SERVICES`] states, in configuration order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceStates {
    n: usize,
    items: [Option<ServiceState>; MAX_SERVICES],
}

impl ServiceStates {
    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &ServiceState> {
        self.items.iter().take(self.n).flatten()
    }
}

/// Encodes the states of `count` services, `state(i)` for each.
pub fn encode_service_states(
    count: usize,
    state: impl Fn(usize) -> ServiceState,
    out: &mut [u8],
) -> Result<usize, ControlError> {
    let n = count.min(MAX_SERVICES);
    let len = service_states_len(n);
    if out.len() < len {
        return Err(ControlError::OutputTooSmall);
    }
    let mut w = Writer::new(out);
    Header::write(&mut w, Kind::ServicesResponse, len);
    w.u16(n as u16);
    w.u16(0);
    w.u32(0);
    for i in 0..n {
        let s = state(i);
        encode_service(&mut w, &s.service);
        w.i32(s.status);
        // An open service is never "retrying".
        w.u32(if s.retrying && !s.is_open() {
            SERVICE_STATE_RETRYING
        } else {
            0
        });
    }
    w.done()
}

/// Decodes and validates an answer: exact length, count in range, every service valid,
/// reserved fields and unknown flags zero, no open service flagged as retrying.
pub fn decode_service_states(buf: &[u8]) -> Result<ServiceStates, ControlError> {
    let mut r: Reader<'_> = Header::check(buf, Kind::ServicesResponse)?;
    let n = r.u16()? as usize;
    r.reserved(2)?;
    r.reserved(4)?;
    if n > MAX_SERVICES {
        return Err(ControlError::OutOfRange);
    }
    let len = service_states_len(n);
    if buf.len() < len {
        return Err(ControlError::Short);
    }
    if buf.len() > len {
        return Err(ControlError::Long);
    }
    let mut items = [None; MAX_SERVICES];
    for item in items.iter_mut().take(n) {
        let service = decode_service(&mut r)?;
        let status = r.i32()?;
        let flags = r.u32()?;
        if flags & !SERVICE_STATE_RETRYING != 0 {
            return Err(ControlError::Reserved);
        }
        let retrying = flags & SERVICE_STATE_RETRYING != 0;
        if retrying && status == STATUS_SUCCESS {
            return Err(ControlError::OutOfRange);
        }
        *item = Some(ServiceState {
            service,
            status,
            retrying,
        });
    }
    r.finish()?;
    Ok(ServiceStates { n, items })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Mode, Proto};
    use crate::ioctl::status::{STATUS_ADDRESS_ALREADY_EXISTS, STATUS_DEVICE_NOT_READY};

    fn states() -> [ServiceState; 3] {
        let v4 = core::net::IpAddr::V4(core::net::Ipv4Addr::LOCALHOST);
        [
            ServiceState {
                service: Service::new(Proto::Tcp, 7, Mode::Echo, v4),
                status: STATUS_SUCCESS,
                retrying: false,
            },
            ServiceState {
                service: Service::new(Proto::Udp, 7, Mode::Echo, v4),
                status: STATUS_ADDRESS_ALREADY_EXISTS,
                retrying: true,
            },
            ServiceState {
                service: Service::new(Proto::Tcp, 9, Mode::Discard, v4),
                status: STATUS_DEVICE_NOT_READY,
                retrying: false,
            },
        ]
    }

    #[test]
    fn round_trip_and_exact_lengths() {
        let s = states();
        let mut b = [0u8; 256];
        let n = encode_service_states(s.len(), |i| s[i], &mut b).unwrap();
        assert_eq!(n, service_states_len(3));
        let d = decode_service_states(&b[..n]).unwrap();
        assert_eq!(d.len(), 3);
        assert!(d.iter().copied().eq(s.iter().copied()));
        assert_eq!(
            decode_service_states(&b[..n - 1]),
            Err(ControlError::LengthField)
        );
        assert_eq!(
            encode_service_states(s.len(), |i| s[i], &mut b[..n - 1]),
            Err(ControlError::OutputTooSmall)
        );
    }

    #[test]
    fn flags_are_checked() {
        let s = states();
        let mut b = [0u8; 256];
        let n = encode_service_states(1, |i| s[i], &mut b).unwrap();
        // The first entry is open: flagging it as retrying is refused, as is an unknown bit.
        let flags_at = n - 4;
        b[flags_at] = SERVICE_STATE_RETRYING as u8;
        assert_eq!(
            decode_service_states(&b[..n]),
            Err(ControlError::OutOfRange)
        );
        b[flags_at] = 2;
        assert_eq!(decode_service_states(&b[..n]), Err(ControlError::Reserved));
        // An open service the caller marked retrying goes out without the flag.
        let open_retrying = ServiceState {
            retrying: true,
            ..s[0]
        };
        let n = encode_service_states(1, |_| open_retrying, &mut b).unwrap();
        assert!(
            !decode_service_states(&b[..n])
                .unwrap()
                .iter()
                .next()
                .unwrap()
                .retrying
        );
    }
}
