//! Control device `\Device\WskEcho` (symbolic link `\DosDevices\WskEcho`), admin-only.
//!
//! IoCreateDeviceSecure is not an ntoskrnl export (static wdmsec.lib), so the SDDL
//! `D:P(A;;GA;;;SY)(A;;GA;;;BA)` is applied with exported calls: a DACL with two
//! ACCESS_ALLOWED ACEs (GENERIC_ALL for LocalSystem and Administrators), protected from
//! inheritance, set with ZwSetSecurityObject on a kernel handle to the device. The two SIDs
//! are built here, not read from the kernel's `SeExports` (a data import whose layout is one
//! kernel's; Wine exports a code stub under that name).
//! IOCTL dispatch only copies buffers and hands them to `ioctl::control_dispatch`; every check
//! lives in the control crate.

use core::ptr;

use control::ioctl::{DEVICE_NAME, DOS_DEVICE_NAME, FILE_DEVICE_WSKECHO, MAX_INPUT_BYTES};
use wsk_sys::{
    IoCompleteRequest, IoCreateDevice, IoCreateSymbolicLink, IoDeleteDevice, IoDeleteSymbolicLink,
    IoGetCurrentIrpStackLocation, KernelMode, ObOpenObjectByPointer, RtlAddAccessAllowedAce,
    RtlCreateAcl, RtlCreateSecurityDescriptor, RtlSetDaclSecurityDescriptor, ZwClose,
    ZwSetSecurityObject, ACCESS_ALLOWED_ACE, ACL, ACL_REVISION, DACL_SECURITY_INFORMATION,
    DOMAIN_ALIAS_RID_ADMINS, DO_DEVICE_INITIALIZING, FALSE, FILE_DEVICE_SECURE_OPEN, GENERIC_ALL,
    HANDLE, IO_NO_INCREMENT, IRP_MJ_CLOSE, IRP_MJ_CREATE, IRP_MJ_DEVICE_CONTROL, NTSTATUS,
    NT_SUCCESS, OBJ_KERNEL_HANDLE, PACL, PDEVICE_OBJECT, PDRIVER_OBJECT, PIRP,
    PSECURITY_DESCRIPTOR, PSID, PUNICODE_STRING, SECURITY_BUILTIN_DOMAIN_RID,
    SECURITY_DESCRIPTOR_MIN_LENGTH, SECURITY_DESCRIPTOR_REVISION, SECURITY_LOCAL_SYSTEM_RID,
    SECURITY_NT_AUTHORITY, SID, SID_IDENTIFIER_AUTHORITY, SID_REVISION, STATUS_DEVICE_NOT_READY,
    STATUS_INSUFFICIENT_RESOURCES, STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER,
    STATUS_SUCCESS, TRUE, ULONG, UNICODE_STRING, WRITE_DAC,
};

use crate::driver::Driver;
use crate::ioctl::control_dispatch;
use crate::kernel::pool;
use crate::wsk::check;

/// SE_DACL_PROTECTED through ZwSetSecurityObject: the "P" of "D:P".
const PROTECTED_DACL_SECURITY_INFORMATION: ULONG = 0x8000_0000;

struct WideName {
    buf: [u16; 40],
    us: UNICODE_STRING,
}

impl WideName {
    fn new(s: &str) -> Self {
        let mut w = WideName {
            buf: [0; 40],
            us: UNICODE_STRING {
                Length: 0,
                MaximumLength: 0,
                Buffer: ptr::null_mut(),
            },
        };
        for (i, b) in s.bytes().take(39).enumerate() {
            w.buf[i] = u16::from(b);
        }
        let n = s.len().min(39) as u16;
        w.us.Length = n * 2;
        w.us.MaximumLength = (n + 1) * 2;
        w
    }

    fn get(&mut self) -> PUNICODE_STRING {
        self.us.Buffer = self.buf.as_mut_ptr();
        &raw mut self.us
    }
}

/// A SID of the NT authority with `N` sub-authorities: the `SID` layout with its
/// variable-length `SubAuthority` tail spelled out, so it can live on the stack.
#[repr(C)]
struct NtSid<const N: usize> {
    revision: u8,
    sub_authority_count: u8,
    authority: SID_IDENTIFIER_AUTHORITY,
    sub_authority: [ULONG; N],
}

// Same header as `SID` (RtlLengthSid's 8 + 4 * count bytes, tail at offset 8).
const _: () = {
    assert!(core::mem::offset_of!(SID, SubAuthority) == 8);
    assert!(core::mem::offset_of!(NtSid<1>, sub_authority) == 8);
    assert!(core::mem::size_of::<NtSid<1>>() == 12);
    assert!(core::mem::size_of::<NtSid<2>>() == 16);
};

impl<const N: usize> NtSid<N> {
    /// RtlLengthSid of this SID.
    const LEN: usize = 8 + 4 * N;

    const fn new(sub_authority: [ULONG; N]) -> Self {
        NtSid {
            revision: SID_REVISION,
            sub_authority_count: N as u8,
            authority: SECURITY_NT_AUTHORITY,
            sub_authority,
        }
    }

    fn as_psid(&mut self) -> PSID {
        ptr::from_mut(self).cast()
    }
}

/// S-1-5-18, LocalSystem (the SDDL's "SY").
const fn local_system_sid() -> NtSid<1> {
    NtSid::new([SECURITY_LOCAL_SYSTEM_RID])
}

/// S-1-5-32-544, BUILTIN\Administrators (the SDDL's "BA").
const fn administrators_sid() -> NtSid<2> {
    NtSid::new([SECURITY_BUILTIN_DOMAIN_RID, DOMAIN_ALIAS_RID_ADMINS])
}

/// Creates the device and link. PASSIVE_LEVEL (DriverEntry).
///
/// # Safety
/// Valid driver object; `d` at its final address.
pub(crate) unsafe fn create(drv_obj: PDRIVER_OBJECT, d: *mut Driver) -> Result<(), NTSTATUS> {
    let mut name = WideName::new(DEVICE_NAME);
    let mut dev: PDEVICE_OBJECT = ptr::null_mut();
    // SAFETY: PASSIVE_LEVEL; name lives across the call.
    check(unsafe {
        IoCreateDevice(
            drv_obj,
            core::mem::size_of::<*mut Driver>() as ULONG,
            name.get(),
            FILE_DEVICE_WSKECHO,
            FILE_DEVICE_SECURE_OPEN,
            FALSE,
            &raw mut dev,
        )
    })?;
    // SAFETY: d is ours; dev was just created with an extension of one pointer.
    unsafe {
        (*d).device = dev;
        *(*dev).DeviceExtension.cast::<*mut Driver>() = d;
    }
    // SAFETY: dev live, PASSIVE_LEVEL.
    if let Err(e) = unsafe { apply_admin_only_dacl(dev) } {
        crate::kernel::log::log_err!("control device security failed {:#x}", e as u32);
        return Err(e);
    }
    let mut link = WideName::new(DOS_DEVICE_NAME);
    // SAFETY: both names live across the call.
    check(unsafe { IoCreateSymbolicLink(link.get(), name.get()) })?;
    // SAFETY: d ours; drv_obj valid.
    unsafe {
        (*d).symlink_created = true;
        for f in &mut (*drv_obj).MajorFunction {
            *f = Some(dispatch_invalid);
        }
        (*drv_obj).MajorFunction[IRP_MJ_CREATE as usize] = Some(dispatch_create_close);
        (*drv_obj).MajorFunction[IRP_MJ_CLOSE as usize] = Some(dispatch_create_close);
        (*drv_obj).MajorFunction[IRP_MJ_DEVICE_CONTROL as usize] = Some(dispatch_ioctl);
        (*dev).Flags &= !DO_DEVICE_INITIALIZING;
    }
    Ok(())
}

/// # Safety
/// PASSIVE_LEVEL; called once per created device.
pub(crate) unsafe fn delete(d: &mut Driver) {
    if d.symlink_created {
        let mut link = WideName::new(DOS_DEVICE_NAME);
        // SAFETY: created in `create`.
        unsafe { IoDeleteSymbolicLink(link.get()) };
        d.symlink_created = false;
    }
    if !d.device.is_null() {
        // SAFETY: created in `create`; no handle can reach the driver state any more after
        // IoDeleteDevice (the I/O manager keeps the object until the last handle closes, but
        // dispatch routines check the extension pointer).
        unsafe {
            *(*d.device).DeviceExtension.cast::<*mut Driver>() = ptr::null_mut();
            IoDeleteDevice(d.device);
        }
        d.device = ptr::null_mut();
    }
}

/// # Safety
/// PASSIVE_LEVEL; `dev` is a live device object.
unsafe fn apply_admin_only_dacl(dev: PDEVICE_OBJECT) -> Result<(), NTSTATUS> {
    let (mut sys_sid, mut admins_sid) = (local_system_sid(), administrators_sid());
    let (sys, admins) = (sys_sid.as_psid(), admins_sid.as_psid());
    let sid_len = NtSid::<1>::LEN + NtSid::<2>::LEN;
    // ACL header + 2 ACEs (header + mask, then the SID in place of SidStart).
    let acl_len = core::mem::size_of::<ACL>()
        + 2 * (core::mem::size_of::<ACCESS_ALLOWED_ACE>() - 4)
        + sid_len;
    let total = SECURITY_DESCRIPTOR_MIN_LENGTH + acl_len;
    let block = pool::alloc(total + 8, pool::TAG_TEMP);
    if block.is_null() {
        return Err(STATUS_INSUFFICIENT_RESOURCES);
    }
    let sd: PSECURITY_DESCRIPTOR = block.cast();
    // SAFETY: the ACL follows the descriptor, 8-aligned, inside the block.
    let acl: PACL = unsafe { block.add((SECURITY_DESCRIPTOR_MIN_LENGTH + 7) & !7).cast() };
    // SAFETY: buffers sized above; PASSIVE_LEVEL for the Zw/Ob calls.
    let status = unsafe {
        let mut st = RtlCreateSecurityDescriptor(sd, SECURITY_DESCRIPTOR_REVISION);
        if NT_SUCCESS(st) {
            st = RtlCreateAcl(acl, acl_len as ULONG, ACL_REVISION);
        }
        if NT_SUCCESS(st) {
            st = RtlAddAccessAllowedAce(acl, ACL_REVISION, GENERIC_ALL, sys);
        }
        if NT_SUCCESS(st) {
            st = RtlAddAccessAllowedAce(acl, ACL_REVISION, GENERIC_ALL, admins);
        }
        if NT_SUCCESS(st) {
            st = RtlSetDaclSecurityDescriptor(sd, TRUE, acl, FALSE);
        }
        if NT_SUCCESS(st) {
            let mut h: HANDLE = ptr::null_mut();
            st = ObOpenObjectByPointer(
                dev.cast(),
                OBJ_KERNEL_HANDLE,
                ptr::null_mut(),
                WRITE_DAC,
                ptr::null_mut(),
                KernelMode,
                &raw mut h,
            );
            if NT_SUCCESS(st) {
                st = ZwSetSecurityObject(
                    h,
                    DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
                    sd,
                );
                ZwClose(h);
            }
        }
        st
    };
    // SAFETY: allocated above; ZwSetSecurityObject copied the descriptor.
    unsafe { pool::free(block, pool::TAG_TEMP) };
    check(status)
}

/// # Safety
/// `irp` is an IRP this driver was handed and has not completed yet.
unsafe fn complete(irp: PIRP, status: NTSTATUS, info: usize) -> NTSTATUS {
    // SAFETY: the IRP is ours to complete.
    unsafe {
        (*irp).IoStatus.Status = status;
        (*irp).IoStatus.Information = info;
        IoCompleteRequest(irp, IO_NO_INCREMENT);
    }
    status
}

/// IRP_MJ_CREATE / IRP_MJ_CLOSE. PASSIVE_LEVEL. Access was checked against the DACL by the
/// I/O manager (FILE_DEVICE_SECURE_OPEN covers opens of names below the device too).
unsafe extern "win64" fn dispatch_create_close(_dev: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: IRP from the I/O manager.
    unsafe { complete(irp, STATUS_SUCCESS, 0) }
}

/// Every other major function. PASSIVE_LEVEL.
unsafe extern "win64" fn dispatch_invalid(_dev: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: IRP from the I/O manager.
    unsafe { complete(irp, STATUS_INVALID_DEVICE_REQUEST, 0) }
}

/// IRP_MJ_DEVICE_CONTROL (METHOD_BUFFERED). PASSIVE_LEVEL. Copies the input out of the
/// system buffer (input and output share it), lets the control crate validate and answer.
unsafe extern "win64" fn dispatch_ioctl(dev: PDEVICE_OBJECT, irp: PIRP) -> NTSTATUS {
    // SAFETY: IRP and device from the I/O manager; METHOD_BUFFERED system buffer of
    // max(in, out) bytes.
    unsafe {
        let d = *(*dev).DeviceExtension.cast::<*mut Driver>();
        if d.is_null() {
            return complete(irp, STATUS_DEVICE_NOT_READY, 0);
        }
        let sl = IoGetCurrentIrpStackLocation(irp);
        let p = (*sl).Parameters.DeviceIoControl;
        let (code, in_len, out_len) = (
            p.IoControlCode,
            p.InputBufferLength as usize,
            p.OutputBufferLength as usize,
        );
        let sys = (*irp).AssociatedIrp.SystemBuffer.cast::<u8>();
        if in_len > MAX_INPUT_BYTES {
            return complete(irp, STATUS_INVALID_PARAMETER, 0);
        }
        let inbuf = pool::alloc(in_len.max(1), pool::TAG_TEMP);
        if inbuf.is_null() {
            return complete(irp, STATUS_INSUFFICIENT_RESOURCES, 0);
        }
        if in_len > 0 && !sys.is_null() {
            ptr::copy_nonoverlapping(sys, inbuf, in_len);
        }
        let input = core::slice::from_raw_parts(inbuf, in_len);
        let output: &mut [u8] = if out_len > 0 && !sys.is_null() {
            core::slice::from_raw_parts_mut(sys, out_len)
        } else {
            &mut []
        };
        let (status, n) = control_dispatch(d, code, input, output);
        pool::free(inbuf, pool::TAG_TEMP);
        complete(irp, status, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes<const N: usize>(sid: &NtSid<N>) -> &[u8] {
        // SAFETY: NtSid is repr(C) with no padding (checked above); LEN bytes long.
        unsafe { core::slice::from_raw_parts(ptr::from_ref(sid).cast::<u8>(), NtSid::<N>::LEN) }
    }

    /// The binary form of the two SIDs, as winnt.h's constants give it: revision 1, the
    /// sub-authority count, the authority {0,0,0,0,0,5} big-endian, then each RID
    /// little-endian.
    #[test]
    fn well_known_sids_in_binary() {
        assert_eq!(
            bytes(&local_system_sid()),
            [1, 1, 0, 0, 0, 0, 0, 5, 18, 0, 0, 0]
        );
        assert_eq!(
            bytes(&administrators_sid()),
            [1, 2, 0, 0, 0, 0, 0, 5, 32, 0, 0, 0, 0x20, 0x02, 0, 0]
        );
    }
}
