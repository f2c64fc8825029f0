//! Device objects, symbolic links, security descriptors (recorded for tests) and a test
//! entry that sends an IRP to a driver's dispatch routine like the I/O manager would.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use wsk_sys::{
    ACCESS_MASK, ACL, BOOLEAN, DEVICE_OBJECT, DEVICE_TYPE, DO_DEVICE_INITIALIZING, HANDLE,
    IO_STACK_LOCATION, NTSTATUS, PACL, PDEVICE_OBJECT, PDRIVER_OBJECT, PSECURITY_DESCRIPTOR,
    PSE_EXPORTS, PSID, PUNICODE_STRING, SECURITY_DESCRIPTOR, SECURITY_INFORMATION, SE_EXPORTS,
    STATUS_BUFFER_TOO_SMALL, STATUS_INVALID_HANDLE, STATUS_INVALID_PARAMETER,
    STATUS_OBJECT_NAME_COLLISION, STATUS_OBJECT_NAME_NOT_FOUND, STATUS_PENDING,
    STATUS_REVISION_MISMATCH, STATUS_SUCCESS, ULONG,
};

/// One access-allowed ACE as applied to a device: the SID in S-1-... form and the mask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ace {
    pub sid: String,
    pub mask: ACCESS_MASK,
}

/// What the driver did with one device object.
#[derive(Clone, Debug, Default)]
pub struct DeviceRecord {
    pub address: usize,
    pub name: String,
    pub device_type: DEVICE_TYPE,
    pub characteristics: ULONG,
    pub exclusive: bool,
    /// The DACL applied with ZwSetSecurityObject (None until then).
    pub dacl: Option<Vec<Ace>>,
    pub deleted: bool,
}

#[derive(Default)]
struct Devices {
    devices: Vec<DeviceRecord>,
    symlinks: HashMap<String, String>,
    allocations: HashMap<usize, std::alloc::Layout>,
}

static DEVICES: Mutex<Option<Devices>> = Mutex::new(None);

fn with<R>(f: impl FnOnce(&mut Devices) -> R) -> R {
    let mut g: MutexGuard<'_, _> = DEVICES.lock().unwrap_or_else(PoisonError::into_inner);
    f(g.get_or_insert_with(Devices::default))
}

/// Every device created since `init` (deleted ones flagged).
pub fn devices() -> Vec<DeviceRecord> {
    with(|d| d.devices.clone())
}

/// Live symbolic links: (link name, device name).
pub fn symlinks() -> Vec<(String, String)> {
    with(|d| {
        d.symlinks
            .iter()
            .map(|(a, b)| (a.clone(), b.clone()))
            .collect()
    })
}

pub(crate) fn leaked() -> Vec<String> {
    with(|d| {
        let mut v: Vec<String> = d
            .devices
            .iter()
            .filter(|r| !r.deleted)
            .map(|r| format!("device object {:#x} '{}' not deleted", r.address, r.name))
            .collect();
        v.extend(
            d.symlinks
                .keys()
                .map(|l| format!("symbolic link '{l}' not deleted")),
        );
        v
    })
}

pub(crate) fn reset() {
    with(|d| {
        for (a, l) in d.allocations.drain() {
            // SAFETY: allocated by IoCreateDevice with this layout.
            unsafe { std::alloc::dealloc(a as *mut u8, l) };
        }
        d.devices.clear();
        d.symlinks.clear();
    });
}

/// `IoCreateDevice`: PASSIVE_LEVEL. The extension follows the object (16-aligned).
#[no_mangle]
pub unsafe extern "win64" fn IoCreateDevice(
    DriverObject: PDRIVER_OBJECT,
    DeviceExtensionSize: ULONG,
    DeviceName: PUNICODE_STRING,
    DeviceType: DEVICE_TYPE,
    DeviceCharacteristics: ULONG,
    Exclusive: BOOLEAN,
    DeviceObject: *mut PDEVICE_OBJECT,
) -> NTSTATUS {
    crate::kernel::irql::require_passive("IoCreateDevice");
    // SAFETY: the caller passes a valid UNICODE_STRING or NULL.
    let name = unsafe { crate::kernel::unicode::unicode(DeviceName) };
    if !name.is_empty()
        && with(|d| {
            d.devices
                .iter()
                .any(|r| !r.deleted && r.name.eq_ignore_ascii_case(&name))
        })
    {
        return STATUS_OBJECT_NAME_COLLISION;
    }
    let obj_size = std::mem::size_of::<DEVICE_OBJECT>();
    let ext_off = obj_size.div_ceil(16) * 16;
    let layout = std::alloc::Layout::from_size_align(ext_off + DeviceExtensionSize as usize, 16)
        .expect("layout");
    // SAFETY: non-zero size.
    let p = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<DEVICE_OBJECT>();
    if p.is_null() {
        return wsk_sys::STATUS_INSUFFICIENT_RESOURCES;
    }
    // SAFETY: `p` is a fresh zeroed DEVICE_OBJECT plus extension; DriverObject is live.
    unsafe {
        (*p).Type = 3;
        (*p).Size = obj_size as u16;
        (*p).ReferenceCount = 0;
        (*p).DriverObject = DriverObject;
        (*p).Flags = DO_DEVICE_INITIALIZING;
        (*p).Characteristics = DeviceCharacteristics;
        (*p).DeviceType = DeviceType;
        (*p).StackSize = 1;
        (*p).DeviceExtension = if DeviceExtensionSize > 0 {
            p.cast::<u8>().add(ext_off).cast()
        } else {
            std::ptr::null_mut()
        };
        if !DriverObject.is_null() {
            (*p).NextDevice = (*DriverObject).DeviceObject;
            (*DriverObject).DeviceObject = p;
        }
        DeviceObject.write(p);
    }
    with(|d| {
        d.allocations.insert(p as usize, layout);
        d.devices.push(DeviceRecord {
            address: p as usize,
            name,
            device_type: DeviceType,
            characteristics: DeviceCharacteristics,
            exclusive: Exclusive != 0,
            dacl: None,
            deleted: false,
        });
    });
    STATUS_SUCCESS
}

/// `IoDeleteDevice`: PASSIVE_LEVEL; unlinks from the driver object and frees.
#[no_mangle]
pub unsafe extern "win64" fn IoDeleteDevice(DeviceObject: PDEVICE_OBJECT) {
    crate::kernel::irql::require_passive("IoDeleteDevice");
    let layout = with(|d| {
        let rec = d
            .devices
            .iter_mut()
            .find(|r| r.address == DeviceObject as usize && !r.deleted);
        match rec {
            Some(r) => {
                r.deleted = true;
                d.allocations.remove(&(DeviceObject as usize))
            }
            None => None,
        }
    });
    let Some(layout) = layout else {
        crate::kernel::state::violation(format!(
            "IoDeleteDevice({DeviceObject:p}): not a live device object"
        ));
        return;
    };
    // SAFETY: a live device object of ours; unlink it from its driver's list, then free.
    unsafe {
        let drv = (*DeviceObject).DriverObject;
        if !drv.is_null() {
            let mut link: *mut PDEVICE_OBJECT = &raw mut (*drv).DeviceObject;
            while !(*link).is_null() {
                if *link == DeviceObject {
                    *link = (*DeviceObject).NextDevice;
                    break;
                }
                link = &raw mut (**link).NextDevice;
            }
        }
        std::ptr::write_bytes(
            DeviceObject.cast::<u8>(),
            crate::kernel::pool::FREED_POISON,
            layout.size(),
        );
        std::alloc::dealloc(DeviceObject.cast(), layout);
    }
}

/// `IoCreateSymbolicLink`: PASSIVE_LEVEL.
#[no_mangle]
pub unsafe extern "win64" fn IoCreateSymbolicLink(
    SymbolicLinkName: PUNICODE_STRING,
    DeviceName: PUNICODE_STRING,
) -> NTSTATUS {
    crate::kernel::irql::require_passive("IoCreateSymbolicLink");
    // SAFETY: the caller passes valid UNICODE_STRINGs.
    let (link, dev) = unsafe {
        (
            crate::kernel::unicode::unicode(SymbolicLinkName),
            crate::kernel::unicode::unicode(DeviceName),
        )
    };
    with(|d| match d.symlinks.entry(link.to_ascii_lowercase()) {
        std::collections::hash_map::Entry::Occupied(_) => STATUS_OBJECT_NAME_COLLISION,
        std::collections::hash_map::Entry::Vacant(v) => {
            v.insert(dev);
            STATUS_SUCCESS
        }
    })
}

/// `IoDeleteSymbolicLink`: PASSIVE_LEVEL.
#[no_mangle]
pub unsafe extern "win64" fn IoDeleteSymbolicLink(SymbolicLinkName: PUNICODE_STRING) -> NTSTATUS {
    crate::kernel::irql::require_passive("IoDeleteSymbolicLink");
    // SAFETY: the caller passes a valid UNICODE_STRING.
    let link = unsafe { crate::kernel::unicode::unicode(SymbolicLinkName) };
    with(|d| {
        if d.symlinks.remove(&link.to_ascii_lowercase()).is_some() {
            STATUS_SUCCESS
        } else {
            STATUS_OBJECT_NAME_NOT_FOUND
        }
    })
}

// ---------------------------------------------------------------------------------------
// Security descriptors

const STATUS_ALLOTTED_SPACE_EXCEEDED: NTSTATUS = 0xC000_0099_u32 as i32;
const STATUS_INVALID_SID: NTSTATUS = 0xC000_0078_u32 as i32;
const STATUS_INVALID_ACL: NTSTATUS = 0xC000_0077_u32 as i32;

/// # Safety
/// `sid` points to a SID.
unsafe fn sid_len(sid: PSID) -> usize {
    // SAFETY: per the function contract; byte 1 is SubAuthorityCount.
    8 + 4 * usize::from(unsafe { *sid.cast::<u8>().add(1) })
}

/// # Safety
/// `sid` points to a SID.
pub(crate) unsafe fn sid_string(sid: PSID) -> String {
    // SAFETY: per the function contract.
    unsafe {
        let b = sid.cast::<u8>();
        let rev = *b;
        let n = usize::from(*b.add(1));
        let mut auth: u64 = 0;
        for i in 0..6 {
            auth = (auth << 8) | u64::from(*b.add(2 + i));
        }
        let mut s = format!("S-{rev}-{auth}");
        for i in 0..n {
            let _ = write!(s, "-{}", b.add(8 + 4 * i).cast::<u32>().read_unaligned());
        }
        s
    }
}

/// `RtlLengthSid`.
#[no_mangle]
pub unsafe extern "win64" fn RtlLengthSid(Sid: PSID) -> ULONG {
    // SAFETY: the caller passes a valid SID.
    unsafe { sid_len(Sid) as ULONG }
}

/// `RtlCreateSecurityDescriptor`: an absolute SD with no owner, group or ACLs.
#[no_mangle]
pub unsafe extern "win64" fn RtlCreateSecurityDescriptor(
    SecurityDescriptor: PSECURITY_DESCRIPTOR,
    Revision: ULONG,
) -> NTSTATUS {
    if Revision != wsk_sys::SECURITY_DESCRIPTOR_REVISION {
        return STATUS_REVISION_MISMATCH;
    }
    // SAFETY: the caller passes SECURITY_DESCRIPTOR storage.
    unsafe {
        SecurityDescriptor
            .cast::<SECURITY_DESCRIPTOR>()
            .write(SECURITY_DESCRIPTOR {
                Revision: Revision as u8,
                Sbz1: 0,
                Control: 0,
                Owner: std::ptr::null_mut(),
                Group: std::ptr::null_mut(),
                Sacl: std::ptr::null_mut(),
                Dacl: std::ptr::null_mut(),
            });
    }
    STATUS_SUCCESS
}

/// `RtlSetDaclSecurityDescriptor`.
#[no_mangle]
pub unsafe extern "win64" fn RtlSetDaclSecurityDescriptor(
    SecurityDescriptor: PSECURITY_DESCRIPTOR,
    DaclPresent: BOOLEAN,
    Dacl: PACL,
    DaclDefaulted: BOOLEAN,
) -> NTSTATUS {
    const SE_DACL_PRESENT: u16 = 0x0004;
    const SE_DACL_DEFAULTED: u16 = 0x0008;
    let sd = SecurityDescriptor.cast::<SECURITY_DESCRIPTOR>();
    // SAFETY: the caller passes an absolute SD it created.
    unsafe {
        if (*sd).Revision != 1 {
            return STATUS_REVISION_MISMATCH;
        }
        if DaclPresent == 0 {
            (*sd).Control &= !SE_DACL_PRESENT;
            return STATUS_SUCCESS;
        }
        (*sd).Control |= SE_DACL_PRESENT;
        (*sd).Dacl = Dacl;
        if DaclDefaulted != 0 {
            (*sd).Control |= SE_DACL_DEFAULTED;
        } else {
            (*sd).Control &= !SE_DACL_DEFAULTED;
        }
    }
    STATUS_SUCCESS
}

/// `RtlCreateAcl`.
#[no_mangle]
pub unsafe extern "win64" fn RtlCreateAcl(
    Acl: PACL,
    AclLength: ULONG,
    AclRevision: ULONG,
) -> NTSTATUS {
    if (AclLength as usize) < std::mem::size_of::<ACL>() {
        return STATUS_BUFFER_TOO_SMALL;
    }
    if !(2..=4).contains(&AclRevision) || AclLength > 0xffff {
        return STATUS_INVALID_PARAMETER;
    }
    // SAFETY: the caller passes AclLength bytes of ACL storage.
    unsafe {
        Acl.write(ACL {
            AclRevision: AclRevision as u8,
            Sbz1: 0,
            AclSize: AclLength as u16,
            AceCount: 0,
            Sbz2: 0,
        });
    }
    STATUS_SUCCESS
}

/// # Safety
/// `acl` is a valid ACL.
unsafe fn acl_used(acl: PACL) -> usize {
    // SAFETY: per the function contract; ACEs follow the 8-byte header.
    unsafe {
        let mut off = std::mem::size_of::<ACL>();
        for _ in 0..(*acl).AceCount {
            off += usize::from(acl.cast::<u8>().add(off + 2).cast::<u16>().read_unaligned());
        }
        off
    }
}

/// `RtlAddAccessAllowedAce`.
#[no_mangle]
pub unsafe extern "win64" fn RtlAddAccessAllowedAce(
    Acl: PACL,
    AceRevision: ULONG,
    AccessMask: ACCESS_MASK,
    Sid: PSID,
) -> NTSTATUS {
    let _ = AceRevision;
    if Sid.is_null() {
        return STATUS_INVALID_SID;
    }
    // SAFETY: the caller passes a valid ACL and SID.
    unsafe {
        if (*Acl).AclRevision < 2 {
            return STATUS_INVALID_ACL;
        }
        let sl = sid_len(Sid);
        let ace_size = 8 + sl;
        let used = acl_used(Acl);
        if used + ace_size > usize::from((*Acl).AclSize) {
            return STATUS_ALLOTTED_SPACE_EXCEEDED;
        }
        let p = Acl.cast::<u8>().add(used);
        p.write(wsk_sys::ACCESS_ALLOWED_ACE_TYPE);
        p.add(1).write(0);
        p.add(2).cast::<u16>().write_unaligned(ace_size as u16);
        p.add(4).cast::<u32>().write_unaligned(AccessMask);
        std::ptr::copy_nonoverlapping(Sid.cast::<u8>(), p.add(8), sl);
        (*Acl).AceCount += 1;
    }
    STATUS_SUCCESS
}

/// # Safety
/// `acl` is NULL or a valid ACL.
unsafe fn parse_acl(acl: PACL) -> Vec<Ace> {
    let mut v = Vec::new();
    if acl.is_null() {
        return v;
    }
    // SAFETY: per the function contract.
    unsafe {
        let mut off = std::mem::size_of::<ACL>();
        for _ in 0..(*acl).AceCount {
            let p = acl.cast::<u8>().add(off);
            let size = usize::from(p.add(2).cast::<u16>().read_unaligned());
            if *p == wsk_sys::ACCESS_ALLOWED_ACE_TYPE {
                v.push(Ace {
                    sid: sid_string(p.add(8).cast()),
                    mask: p.add(4).cast::<u32>().read_unaligned(),
                });
            }
            off += size.max(8);
        }
    }
    v
}

/// `ZwSetSecurityObject`: records the DACL applied to a device handle.
#[no_mangle]
pub unsafe extern "win64" fn ZwSetSecurityObject(
    Handle: HANDLE,
    SecurityInformation: SECURITY_INFORMATION,
    SecurityDescriptor: PSECURITY_DESCRIPTOR,
) -> NTSTATUS {
    crate::kernel::irql::require_passive("ZwSetSecurityObject");
    let Some(crate::kernel::thread::Handle::Device(dev)) = crate::kernel::thread::lookup(Handle)
    else {
        return STATUS_INVALID_HANDLE;
    };
    if SecurityInformation & wsk_sys::DACL_SECURITY_INFORMATION == 0 {
        return STATUS_SUCCESS;
    }
    // SAFETY: the caller passes an absolute SD.
    let dacl = unsafe { parse_acl((*SecurityDescriptor.cast::<SECURITY_DESCRIPTOR>()).Dacl) };
    with(|d| {
        if let Some(r) = d
            .devices
            .iter_mut()
            .find(|r| r.address == dev && !r.deleted)
        {
            r.dacl = Some(dacl);
        }
    });
    STATUS_SUCCESS
}

// ---------------------------------------------------------------------------------------
// SeExports

/// The exported `SeExports` pointer (ntddk.h: `extern PSE_EXPORTS SeExports`); set by `init`.
#[no_mangle]
pub static mut SeExports: PSE_EXPORTS = std::ptr::null_mut();

fn make_sid(auth: u8, subs: &[u32]) -> PSID {
    let mut b = vec![1u8, subs.len() as u8, 0, 0, 0, 0, 0, auth];
    for s in subs {
        b.extend_from_slice(&s.to_le_bytes());
    }
    Box::leak(b.into_boxed_slice()).as_mut_ptr().cast()
}

pub(crate) fn init_se_exports() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: SE_EXPORTS is plain LUIDs and pointers; all-zero is a valid value.
        let mut e: Box<SE_EXPORTS> = Box::new(unsafe { std::mem::zeroed() });
        e.SeWorldSid = make_sid(1, &[0]);
        e.SeLocalSystemSid = make_sid(5, &[18]);
        e.SeLocalServiceSid = make_sid(5, &[19]);
        e.SeNetworkServiceSid = make_sid(5, &[20]);
        e.SeAuthenticatedUsersSid = make_sid(5, &[11]);
        e.SeAliasAdminsSid = make_sid(5, &[32, 544]);
        e.SeAliasUsersSid = make_sid(5, &[32, 545]);
        e.SeNtAuthoritySid = make_sid(5, &[]);
        // SAFETY: written once, before any driver code runs in this process.
        unsafe { SeExports = Box::into_raw(e) };
    });
}

// ---------------------------------------------------------------------------------------
// Test entry: send an IRP to a driver's dispatch routine.

/// Result of [`call_dispatch`].
#[derive(Clone, Debug)]
pub struct DispatchResult {
    pub returned: NTSTATUS,
    pub status: NTSTATUS,
    pub information: usize,
    /// The first `information` bytes of the system buffer (METHOD_BUFFERED output).
    pub output: Vec<u8>,
}

/// Sends an IRP with `major` (IRP_MJ_CREATE, IRP_MJ_CLOSE, IRP_MJ_DEVICE_CONTROL, ...) to
/// `dev`'s driver at PASSIVE_LEVEL, as the I/O manager does for a user request: METHOD_BUFFERED
/// system buffer of max(input, output) bytes, waits (bounded) if the routine pends.
///
/// # Safety
/// `dev` is a live device object whose driver object has a dispatch routine for `major`.
pub unsafe fn call_dispatch(
    dev: PDEVICE_OBJECT,
    major: u8,
    ioctl: u32,
    input: &[u8],
    output_len: usize,
) -> DispatchResult {
    // SAFETY: per the function contract.
    let (stack, routine) = unsafe {
        let drv = (*dev).DriverObject;
        (
            (*dev).StackSize.max(1) as u8,
            (*drv).MajorFunction[usize::from(major)],
        )
    };
    let irp = crate::kernel::irp::test_irp(stack);
    let buf_len = input.len().max(output_len);
    let mut sysbuf = vec![0u8; buf_len.max(1)];
    sysbuf[..input.len()].copy_from_slice(input);
    // SAFETY: a fresh test IRP; the driver's location becomes current, as IoCallDriver does.
    let returned = unsafe {
        (*irp).AssociatedIrp.SystemBuffer = if buf_len > 0 {
            sysbuf.as_mut_ptr().cast()
        } else {
            std::ptr::null_mut()
        };
        (*irp).RequestorMode = wsk_sys::UserMode;
        (*irp).CurrentLocation -= 1;
        (*irp).Tail.Overlay.CurrentStackLocation = (*irp).Tail.Overlay.CurrentStackLocation.sub(1);
        let sl: *mut IO_STACK_LOCATION = (*irp).Tail.Overlay.CurrentStackLocation;
        (*sl).MajorFunction = major;
        (*sl).DeviceObject = dev;
        (*sl).Parameters.DeviceIoControl.IoControlCode = ioctl;
        (*sl).Parameters.DeviceIoControl.InputBufferLength = input.len() as u32;
        (*sl).Parameters.DeviceIoControl.OutputBufferLength = output_len as u32;
        match routine {
            // A user request: the routine runs in the calling process's context.
            Some(r) => crate::kernel::process::in_user_process(|| {
                crate::kernel::irql::run_at(0, "dispatch routine", || r(dev, irp))
            }),
            None => {
                crate::kernel::irp::free_test_irp(irp);
                return DispatchResult {
                    returned: wsk_sys::STATUS_INVALID_DEVICE_REQUEST,
                    status: wsk_sys::STATUS_INVALID_DEVICE_REQUEST,
                    information: 0,
                    output: Vec::new(),
                };
            }
        }
    };
    let deadline =
        Instant::now() + Duration::from_millis(crate::kernel::state::config().watchdog_ms);
    while !crate::kernel::irp::is_finished(irp) {
        if returned != STATUS_PENDING {
            crate::kernel::state::violation(format!(
                "dispatch routine returned {returned:#x} without completing the IRP (must return STATUS_PENDING or complete it)"
            ));
            break;
        }
        if Instant::now() > deadline {
            crate::kernel::state::violation("a pended dispatch IRP was never completed");
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: the IRP is complete (or abandoned after a violation); read its status.
    let (status, information) = unsafe { ((*irp).IoStatus.Status, (*irp).IoStatus.Information) };
    if returned != STATUS_PENDING && returned != status {
        crate::kernel::state::violation(format!(
            "dispatch routine returned {returned:#x} but completed the IRP with {status:#x}"
        ));
    }
    let n = information.min(output_len).min(sysbuf.len());
    let output = sysbuf[..n].to_vec();
    crate::kernel::irp::free_test_irp(irp);
    DispatchResult {
        returned,
        status,
        information,
        output,
    }
}
