//! WskRelease for both kinds of indication list: a list the client retained with
//! STATUS_PENDING goes back to the provider (W68).

use wsk_sys::{
    NTSTATUS, PWSK_DATAGRAM_INDICATION, PWSK_DATA_INDICATION, PWSK_SOCKET,
    STATUS_INVALID_PARAMETER, STATUS_SUCCESS,
};

use super::indication;
use super::socket;
use crate::kernel::state::violation;

/// `WskRelease` for connection sockets (PFN_WSK_RELEASE_DATA_INDICATION_LIST): W68.
#[no_mangle]
pub unsafe extern "win64" fn WskReleaseData(
    Socket: PWSK_SOCKET,
    DataIndication: PWSK_DATA_INDICATION,
) -> NTSTATUS {
    crate::kernel::irql::require_dispatch_or_below("WskRelease");
    let Some(_in) = socket::enter_any(Socket, "WskRelease") else {
        return STATUS_INVALID_PARAMETER;
    };
    release(Socket as usize, DataIndication as usize, true)
}

/// `WskRelease` for datagram sockets (PFN_WSK_RELEASE_DATAGRAM_INDICATION_LIST).
#[no_mangle]
pub unsafe extern "win64" fn WskReleaseDatagrams(
    Socket: PWSK_SOCKET,
    DatagramIndication: PWSK_DATAGRAM_INDICATION,
) -> NTSTATUS {
    crate::kernel::irql::require_dispatch_or_below("WskRelease");
    let Some(_in) = socket::enter_any(Socket, "WskRelease") else {
        return STATUS_INVALID_PARAMETER;
    };
    release(Socket as usize, DatagramIndication as usize, false)
}

pub(crate) fn _ok() -> NTSTATUS {
    STATUS_SUCCESS
}

/// Releases the list at `head` retained from socket `ws` (`stream`: a WSK_DATA_INDICATION
/// list, else WSK_DATAGRAM_INDICATION) and lets the socket's indications resume.
pub(crate) fn release(ws: usize, head: usize, stream: bool) -> NTSTATUS {
    // SAFETY: `release` checks `head` against the table before reading it.
    match unsafe { indication::release(ws, head, stream) } {
        indication::Release::Ok { socket, bytes } => {
            let owner = socket::with(|p| {
                p.sockets.get_mut(&socket).map(|s| {
                    s.retained_bytes = s.retained_bytes.saturating_sub(bytes);
                    s.owner
                })
            });
            if let Some(o) = owner {
                super::wake::resume(o, socket);
            }
            STATUS_SUCCESS
        }
        // Applied when the provider records the callback's STATUS_PENDING.
        indication::Release::Early => STATUS_SUCCESS,
        indication::Release::Twice => {
            violation(format!(
                "WskRelease({head:#x}): indication list released twice"
            ));
            STATUS_INVALID_PARAMETER
        }
        indication::Release::WrongSocket(o) => {
            violation(format!(
                "WskRelease({head:#x}) on socket {ws:#x}, but the list belongs to socket {o:#x}"
            ));
            STATUS_INVALID_PARAMETER
        }
        indication::Release::DuringCallback => {
            violation(format!(
                "WskRelease({head:#x}) while its receive callback is still running: the list is not retained until the callback returns STATUS_PENDING (W55/W68)"
            ));
            STATUS_INVALID_PARAMETER
        }
        indication::Release::Unknown => {
            violation(format!(
                "WskRelease({head:#x}): not a retained indication list (W68)"
            ));
            STATUS_INVALID_PARAMETER
        }
    }
}
