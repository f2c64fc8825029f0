//! Constant values: against windows-sys where it defines the same name, and against
//! values derived by hand from wsk.h / ws2def.h / wdm.h where it does not.
#![cfg(target_arch = "x86_64")]

/// A constant's bit pattern at its own width, so differently typed C enums compare.
trait Bits {
    fn bits(self) -> u64;
}
macro_rules! bits {
    ($($t:ty => $u:ty),*) => { $(impl Bits for $t { fn bits(self) -> u64 { self as $u as u64 } })* };
}
bits!(i8 => u8, u8 => u8, i16 => u16, u16 => u16, i32 => u32, u32 => u32, i64 => u64, u64 => u64);

macro_rules! pairs {
    ($(($ours:ident, $theirs:path),)*) => {
        &[$((stringify!($ours), Bits::bits(wsk_sys::$ours), Bits::bits($theirs))),*]
    };
}

#[test]
fn constants_match_windows_sys() {
    let table: &[(&str, u64, u64)] = include!("const_pairs.in");
    assert!(
        table.len() > 150,
        "the comparison table shrank to {}",
        table.len()
    );
    let bad: Vec<_> = table.iter().filter(|(_, a, b)| a != b).collect();
    assert!(
        bad.is_empty(),
        "constants differing from windows-sys (name, ours, theirs): {bad:#x?}"
    );
}

/// wsk.h defines these as literals or from ws2def.h's IOC_* macros:
/// IOC_WSK = IOC_WS2 | 0x07000000 = 0x0F000000; _WSAIOR(x,y) = IOC_OUT|x|y (IOC_OUT 0x40000000),
/// _WSAIOW = IOC_IN (0x80000000), _WSAIORW = IOC_IN|IOC_OUT, _WSAIO = IOC_VOID (0x20000000);
/// WSK_SO_BASE = 0x4000.
/// A struct constant the pair table cannot hold.
#[test]
fn nt_authority_matches_windows_sys() {
    assert_eq!(
        wsk_sys::SECURITY_NT_AUTHORITY.Value,
        windows_sys::Win32::Security::SECURITY_NT_AUTHORITY.Value
    );
}

#[test]
fn wsk_constants_by_hand() {
    use wsk_sys::*;
    assert_eq!(IOC_WSK, 0x0F00_0000);
    assert_eq!(SIO_WSK_SET_REMOTE_ADDRESS, 0x8F00_0001);
    assert_eq!(SIO_WSK_REGISTER_EXTENSION, 0xCF00_0002);
    assert_eq!(SIO_WSK_QUERY_IDEAL_SEND_BACKLOG, 0x4F00_0003);
    assert_eq!(SIO_WSK_QUERY_RECEIVE_BACKLOG, 0x4F00_0004);
    assert_eq!(SIO_WSK_QUERY_INSPECT_ID, 0x4F00_0005);
    assert_eq!(SIO_WSK_SET_SENDTO_ADDRESS, 0x8F00_0006);
    assert_eq!(SIO_WSK_SET_TCP_SILENT_MODE, 0x2F00_0007);
    assert_eq!((SO_WSK_SECURITY, SO_WSK_EVENT_CALLBACK), (0x4001, 0x4002));
    assert_eq!(
        [
            WSK_EVENT_SEND_BACKLOG,
            WSK_EVENT_RECEIVE,
            WSK_EVENT_DISCONNECT,
            WSK_EVENT_RECEIVE_FROM,
            WSK_EVENT_ACCEPT,
            WSK_EVENT_DISABLE
        ],
        [0x10, 0x40, 0x80, 0x100, 0x200, 0x8000_0000]
    );
    assert_eq!(
        [
            WSK_FLAG_BASIC_SOCKET,
            WSK_FLAG_LISTEN_SOCKET,
            WSK_FLAG_CONNECTION_SOCKET,
            WSK_FLAG_DATAGRAM_SOCKET,
            WSK_FLAG_STREAM_SOCKET
        ],
        [0, 1, 2, 4, 8]
    );
    assert_eq!(
        [
            WSK_FLAG_ABORTIVE,
            WSK_FLAG_RELEASE_ASAP,
            WSK_FLAG_ENTIRE_MESSAGE,
            WSK_FLAG_AT_DISPATCH_LEVEL
        ],
        [1, 2, 4, 8]
    );
    assert_eq!(
        [
            WSK_FLAG_OOB,
            WSK_FLAG_NODELAY,
            WSK_FLAG_WAITALL,
            WSK_FLAG_DRAIN
        ],
        [1, 2, 2, 4]
    );
    assert_eq!((WSK_NO_WAIT, WSK_INFINITE_WAIT), (0, 0xFFFF_FFFF));
    assert_eq!(
        [
            WSK_TRANSPORT_LIST_QUERY,
            WSK_TRANSPORT_LIST_CHANGE,
            WSK_CACHE_SD,
            WSK_RELEASE_SD,
            WSK_TDI_DEVICENAME_MAPPING,
            WSK_SET_STATIC_EVENT_CALLBACKS,
            WSK_TDI_BEHAVIOR
        ],
        [2, 3, 4, 5, 6, 7, 8]
    );
    assert_eq!(MAKE_WSK_VERSION(1, 0), 0x0100);
    assert_eq!(WSK_MAJOR_VERSION(0x0102), 1);
    assert_eq!(WSK_MINOR_VERSION(0x0102), 2);
    assert_eq!((WskSetOption, WskGetOption, WskIoctl), (0, 1, 2));
}

/// NPI_WSK_INTERFACE_ID is {2227E803-8D8B-11D4-ABAD-009027719E09}: the value C drivers get
/// from the WDK's library (several independent public WSK drivers define it with these
/// bytes when they avoid the library).
#[test]
fn npi_wsk_interface_id() {
    let g = wsk_sys::NPI_WSK_INTERFACE_ID;
    assert_eq!((g.Data1, g.Data2, g.Data3), (0x2227_E803, 0x8D8B, 0x11D4));
    assert_eq!(g.Data4, [0xAB, 0xAD, 0x00, 0x90, 0x27, 0x71, 0x9E, 0x09]);
}

/// POOL_FLAG_* (wdm.h, Windows 10 2004+) are not in windows-sys.
#[test]
fn pool_flags_by_hand() {
    use wsk_sys::*;
    assert_eq!(POOL_FLAG_USE_QUOTA, 0x1);
    assert_eq!(POOL_FLAG_UNINITIALIZED, 0x2);
    assert_eq!(POOL_FLAG_CACHE_ALIGNED, 0x8);
    assert_eq!(POOL_FLAG_RAISE_ON_FAILURE, 0x20);
    assert_eq!(POOL_FLAG_NON_PAGED, 0x40);
    assert_eq!(POOL_FLAG_NON_PAGED_EXECUTE, 0x80);
    assert_eq!(POOL_FLAG_PAGED, 0x100);
}

#[test]
fn status_helpers() {
    use wsk_sys::*;
    assert!(
        NT_SUCCESS(STATUS_SUCCESS)
            && NT_SUCCESS(STATUS_PENDING)
            && NT_SUCCESS(STATUS_EVENT_PENDING)
    );
    assert!(!NT_SUCCESS(STATUS_BUFFER_OVERFLOW) && NT_WARNING(STATUS_BUFFER_OVERFLOW));
    assert!(NT_ERROR(STATUS_DATA_NOT_ACCEPTED) && !NT_SUCCESS(STATUS_CANCELLED));
    assert!(NT_INFORMATION(STATUS_EVENT_PENDING));
    // Every status code in the table has a distinct name (the table is what logs print).
    let mut names: Vec<_> = ALL_STATUS_CODES.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), ALL_STATUS_CODES.len());
    assert_eq!(
        CTL_CODE(FILE_DEVICE_UNKNOWN, 0x800, METHOD_BUFFERED, FILE_ANY_ACCESS),
        0x0022_2000
    );
}
