//! I/O manager structures (wdm.h, x64): IRP, IO_STACK_LOCATION, MDL, DRIVER_OBJECT,
//! DEVICE_OBJECT, and their constants.

use crate::ke::{KDPC, KEVENT, KIRQL, KPROCESSOR_MODE, KSPIN_LOCK, PEPROCESS, PETHREAD, PKEVENT};
use crate::ntdef::{
    BOOLEAN, CCHAR, CHAR, CSHORT, DEVICE_TYPE, LARGE_INTEGER, LIST_ENTRY, LONG, NTSTATUS, PCHAR,
    PUNICODE_STRING, PVOID, UCHAR, ULONG, ULONG_PTR, UNICODE_STRING, USHORT,
};

/// `IO_STATUS_BLOCK`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/ns-wdm-_io_status_block>
///
/// C has `union { NTSTATUS Status; PVOID Pointer; }` first; drivers only use `Status`
/// (`Pointer` is reserved), so it is a plain field here with the same offsets: Status at
/// 0, Information at 8.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IO_STATUS_BLOCK {
    pub Status: NTSTATUS,
    pub Information: ULONG_PTR,
}
pub type PIO_STATUS_BLOCK = *mut IO_STATUS_BLOCK;

/// `MDL`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/ns-wdm-_mdl>
/// (x64: 48 bytes). The page frame array follows the header in memory.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MDL {
    pub Next: *mut MDL,
    pub Size: CSHORT,
    pub MdlFlags: CSHORT,
    pub AllocationProcessorNumber: USHORT,
    pub Reserved: USHORT,
    pub Process: PEPROCESS,
    pub MappedSystemVa: PVOID,
    pub StartVa: PVOID,
    pub ByteCount: ULONG,
    pub ByteOffset: ULONG,
}
pub type PMDL = *mut MDL;

// MDL flags: <https://learn.microsoft.com/windows-hardware/drivers/kernel/using-mdls>
pub const MDL_MAPPED_TO_SYSTEM_VA: CSHORT = 0x0001;
pub const MDL_PAGES_LOCKED: CSHORT = 0x0002;
pub const MDL_SOURCE_IS_NONPAGED_POOL: CSHORT = 0x0004;
pub const MDL_ALLOCATED_FIXED_SIZE: CSHORT = 0x0008;
pub const MDL_PARTIAL: CSHORT = 0x0010;
pub const MDL_PARTIAL_HAS_BEEN_MAPPED: CSHORT = 0x0020;
pub const MDL_IO_PAGE_READ: CSHORT = 0x0040;
pub const MDL_WRITE_OPERATION: CSHORT = 0x0080;
pub const MDL_LOCKED_PAGE_TABLES: CSHORT = 0x0100;
pub const MDL_PARENT_MAPPED_SYSTEM_VA: CSHORT = MDL_LOCKED_PAGE_TABLES;
pub const MDL_FREE_EXTRA_PTES: CSHORT = 0x0200;
pub const MDL_DESCRIBES_AWE: CSHORT = 0x0400;
pub const MDL_IO_SPACE: CSHORT = 0x0800;
pub const MDL_NETWORK_HEADER: CSHORT = 0x1000;
pub const MDL_MAPPING_CAN_FAIL: CSHORT = 0x2000;
pub const MDL_PAGE_CONTENTS_INVARIANT: CSHORT = 0x4000;
pub const MDL_ALLOCATED_MUST_SUCCEED: CSHORT = MDL_PAGE_CONTENTS_INVARIANT;
pub const MDL_INTERNAL: CSHORT = 0x8000u16 as i16;

/// `DRIVER_DISPATCH`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nc-wdm-driver_dispatch>
pub type PDRIVER_DISPATCH =
    Option<unsafe extern "win64" fn(DeviceObject: *mut DEVICE_OBJECT, Irp: *mut IRP) -> NTSTATUS>;
/// `DRIVER_UNLOAD`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nc-wdm-driver_unload>
pub type PDRIVER_UNLOAD = Option<unsafe extern "win64" fn(DriverObject: *mut DRIVER_OBJECT)>;
/// `DRIVER_INITIALIZE`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nc-wdm-driver_initialize>
pub type PDRIVER_INITIALIZE = Option<
    unsafe extern "win64" fn(
        DriverObject: *mut DRIVER_OBJECT,
        RegistryPath: PUNICODE_STRING,
    ) -> NTSTATUS,
>;
/// `DRIVER_STARTIO`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nc-wdm-driver_startio>
pub type PDRIVER_STARTIO =
    Option<unsafe extern "win64" fn(DeviceObject: *mut DEVICE_OBJECT, Irp: *mut IRP)>;
/// `DRIVER_CANCEL`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nc-wdm-driver_cancel>
pub type PDRIVER_CANCEL =
    Option<unsafe extern "win64" fn(DeviceObject: *mut DEVICE_OBJECT, Irp: *mut IRP)>;
/// `IO_COMPLETION_ROUTINE` (returns NTSTATUS, unlike windows-sys's binding):
/// <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nc-wdm-io_completion_routine>
pub type PIO_COMPLETION_ROUTINE = Option<
    unsafe extern "win64" fn(
        DeviceObject: *mut DEVICE_OBJECT,
        Irp: *mut IRP,
        Context: PVOID,
    ) -> NTSTATUS,
>;
/// `IO_WORKITEM_ROUTINE`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nc-wdm-io_workitem_routine>
pub type PIO_WORKITEM_ROUTINE =
    Option<unsafe extern "win64" fn(DeviceObject: *mut DEVICE_OBJECT, Context: PVOID)>;

/// `IO_WORKITEM`: opaque. <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-ioallocateworkitem>
#[repr(C)]
pub struct IO_WORKITEM {
    _private: [u8; 0],
    _not_send_sync: core::marker::PhantomData<*mut u8>,
}
pub type PIO_WORKITEM = *mut IO_WORKITEM;

/// `FILE_OBJECT`: only handled by pointer here, so opaque.
#[repr(C)]
pub struct FILE_OBJECT {
    _private: [u8; 0],
    _not_send_sync: core::marker::PhantomData<*mut u8>,
}
pub type PFILE_OBJECT = *mut FILE_OBJECT;

/// `KAPC` (x64: 88 bytes). Only its size matters here (it sits in `IRP.Tail`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KAPC {
    pub Opaque: [u64; 11],
}

/// `KDEVICE_QUEUE_ENTRY` (x64: 24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KDEVICE_QUEUE_ENTRY {
    pub DeviceListEntry: LIST_ENTRY,
    pub SortKey: ULONG,
    pub Inserted: BOOLEAN,
}

/// `KDEVICE_QUEUE` (x64: 40 bytes). The last member is C's union of `Busy` with the
/// `Reserved:8 / Hint:56` bit-fields; `Busy` is its low byte.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KDEVICE_QUEUE {
    pub Type: CSHORT,
    pub Size: CSHORT,
    pub DeviceListHead: LIST_ENTRY,
    pub Lock: KSPIN_LOCK,
    pub Busy: i64,
}

/// `WAIT_CONTEXT_BLOCK` (x64: 72 bytes). The first member is C's union of
/// `WaitQueueEntry` with `{ DmaWaitEntry; NumberOfChannels; bit-fields }` (both 24 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct WAIT_CONTEXT_BLOCK {
    pub WaitQueueEntry: KDEVICE_QUEUE_ENTRY,
    pub DeviceRoutine: PVOID,
    pub DeviceContext: PVOID,
    pub NumberOfMapRegisters: ULONG,
    pub DeviceObject: PVOID,
    pub CurrentIrp: PVOID,
    pub BufferChainingDpc: *mut KDPC,
}

/// `DEVICE_OBJECT.Queue`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union DEVICE_OBJECT_QUEUE {
    pub ListEntry: LIST_ENTRY,
    pub Wcb: WAIT_CONTEXT_BLOCK,
}

/// `DEVICE_OBJECT`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/ns-wdm-_device_object>
///
/// wdm.h declares it `DECLSPEC_ALIGN(MEMORY_ALLOCATION_ALIGNMENT)` (16 on x64), so it is
/// 336 bytes, not the 328 its members add up to.
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub struct DEVICE_OBJECT {
    pub Type: CSHORT,
    pub Size: USHORT,
    pub ReferenceCount: LONG,
    pub DriverObject: *mut DRIVER_OBJECT,
    pub NextDevice: *mut DEVICE_OBJECT,
    pub AttachedDevice: *mut DEVICE_OBJECT,
    pub CurrentIrp: *mut IRP,
    pub Timer: PVOID,
    pub Flags: ULONG,
    pub Characteristics: ULONG,
    pub Vpb: PVOID,
    pub DeviceExtension: PVOID,
    pub DeviceType: DEVICE_TYPE,
    pub StackSize: CCHAR,
    pub Queue: DEVICE_OBJECT_QUEUE,
    pub AlignmentRequirement: ULONG,
    pub DeviceQueue: KDEVICE_QUEUE,
    pub Dpc: KDPC,
    pub ActiveThreadCount: ULONG,
    pub SecurityDescriptor: PVOID,
    pub DeviceLock: KEVENT,
    pub SectorSize: USHORT,
    pub Spare1: USHORT,
    pub DeviceObjectExtension: PVOID,
    pub Reserved: PVOID,
}
pub type PDEVICE_OBJECT = *mut DEVICE_OBJECT;

/// `DRIVER_OBJECT`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/ns-wdm-_driver_object>
#[repr(C)]
#[derive(Clone, Copy)]
pub struct DRIVER_OBJECT {
    pub Type: CSHORT,
    pub Size: CSHORT,
    pub DeviceObject: PDEVICE_OBJECT,
    pub Flags: ULONG,
    pub DriverStart: PVOID,
    pub DriverSize: ULONG,
    pub DriverSection: PVOID,
    pub DriverExtension: PVOID,
    pub DriverName: UNICODE_STRING,
    pub HardwareDatabase: PUNICODE_STRING,
    pub FastIoDispatch: PVOID,
    pub DriverInit: PDRIVER_INITIALIZE,
    pub DriverStartIo: PDRIVER_STARTIO,
    pub DriverUnload: PDRIVER_UNLOAD,
    pub MajorFunction: [PDRIVER_DISPATCH; IRP_MJ_MAXIMUM_FUNCTION as usize + 1],
}
pub type PDRIVER_OBJECT = *mut DRIVER_OBJECT;

/// `IRP.AssociatedIrp`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union IRP_ASSOCIATED_IRP {
    pub MasterIrp: *mut IRP,
    pub IrpCount: LONG,
    pub SystemBuffer: PVOID,
}

/// `IRP.Overlay.AsynchronousParameters`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IRP_ASYNCHRONOUS_PARAMETERS {
    /// C: `union { PIO_APC_ROUTINE UserApcRoutine; PVOID IssuingProcess; }`.
    pub UserApcRoutine: PVOID,
    /// C: `union { PVOID UserApcContext; struct _IORING_OBJECT *IoRing; }`.
    pub UserApcContext: PVOID,
}

/// `IRP.Overlay`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union IRP_OVERLAY {
    pub AsynchronousParameters: IRP_ASYNCHRONOUS_PARAMETERS,
    pub AllocationSize: LARGE_INTEGER,
}

/// `IRP.Tail.Overlay`. C nests anonymous unions/structs; the members a driver uses are
/// flattened here under their C names (`DriverContext` shares its bytes with
/// `DeviceQueueEntry`, `CurrentStackLocation` with `PacketType`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IRP_TAIL_OVERLAY {
    pub DriverContext: [PVOID; 4],
    pub Thread: PETHREAD,
    pub AuxiliaryBuffer: PCHAR,
    pub ListEntry: LIST_ENTRY,
    pub CurrentStackLocation: *mut IO_STACK_LOCATION,
    pub OriginalFileObject: PFILE_OBJECT,
}

/// `IRP.Tail`.
#[repr(C)]
#[derive(Clone, Copy)]
pub union IRP_TAIL {
    pub Overlay: IRP_TAIL_OVERLAY,
    pub Apc: KAPC,
    pub CompletionKey: PVOID,
}

/// `IRP`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/ns-wdm-_irp>
/// (x64: 208 bytes; the I/O stack locations follow it in memory, the last one first:
/// see [`crate::IoGetCurrentIrpStackLocation`]).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IRP {
    pub Type: CSHORT,
    pub Size: USHORT,
    pub AllocationProcessorNumber: USHORT,
    pub Reserved: USHORT,
    pub MdlAddress: PMDL,
    pub Flags: ULONG,
    pub AssociatedIrp: IRP_ASSOCIATED_IRP,
    pub ThreadListEntry: LIST_ENTRY,
    pub IoStatus: IO_STATUS_BLOCK,
    pub RequestorMode: KPROCESSOR_MODE,
    pub PendingReturned: BOOLEAN,
    pub StackCount: CHAR,
    pub CurrentLocation: CHAR,
    pub Cancel: BOOLEAN,
    pub CancelIrql: KIRQL,
    pub ApcEnvironment: CCHAR,
    pub AllocationFlags: UCHAR,
    /// C: `union { PIO_STATUS_BLOCK UserIosb; PVOID IoRingContext; }`.
    pub UserIosb: PIO_STATUS_BLOCK,
    pub UserEvent: PKEVENT,
    pub Overlay: IRP_OVERLAY,
    pub CancelRoutine: PDRIVER_CANCEL,
    pub UserBuffer: PVOID,
    pub Tail: IRP_TAIL,
}
pub type PIRP = *mut IRP;

/// `IO_STACK_LOCATION.Parameters.DeviceIoControl`. On x64 each ULONG member is
/// `POINTER_ALIGNMENT` (8), hence the padding members.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IO_STACK_DEVICE_IO_CONTROL {
    pub OutputBufferLength: ULONG,
    pub Padding0: ULONG,
    pub InputBufferLength: ULONG,
    pub Padding1: ULONG,
    pub IoControlCode: ULONG,
    pub Padding2: ULONG,
    pub Type3InputBuffer: PVOID,
}

/// `IO_STACK_LOCATION.Parameters.Read` / `.Write` (x64 layout, POINTER_ALIGNMENT).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IO_STACK_READ_WRITE {
    pub Length: ULONG,
    pub Padding0: ULONG,
    pub Key: ULONG,
    pub Flags: ULONG,
    pub ByteOffset: LARGE_INTEGER,
}

/// `IO_STACK_LOCATION.Parameters.Create` (x64 layout, POINTER_ALIGNMENT).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IO_STACK_CREATE {
    pub SecurityContext: PVOID,
    pub Options: ULONG,
    pub Padding0: ULONG,
    pub FileAttributes: USHORT,
    pub ShareAccess: USHORT,
    pub Padding1: ULONG,
    pub EaLength: ULONG,
    pub Padding2: ULONG,
}

/// `IO_STACK_LOCATION.Parameters.Others`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct IO_STACK_OTHERS {
    pub Argument1: PVOID,
    pub Argument2: PVOID,
    pub Argument3: PVOID,
    pub Argument4: PVOID,
}

/// `IO_STACK_LOCATION.Parameters` (x64: 32 bytes; the members a WSK driver uses).
#[repr(C)]
#[derive(Clone, Copy)]
pub union IO_STACK_PARAMETERS {
    pub Create: IO_STACK_CREATE,
    pub Read: IO_STACK_READ_WRITE,
    pub Write: IO_STACK_READ_WRITE,
    pub DeviceIoControl: IO_STACK_DEVICE_IO_CONTROL,
    pub Others: IO_STACK_OTHERS,
}

/// `IO_STACK_LOCATION`: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/ns-wdm-_io_stack_location>
/// (x64: 72 bytes).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct IO_STACK_LOCATION {
    pub MajorFunction: UCHAR,
    pub MinorFunction: UCHAR,
    pub Flags: UCHAR,
    pub Control: UCHAR,
    pub Parameters: IO_STACK_PARAMETERS,
    pub DeviceObject: PDEVICE_OBJECT,
    pub FileObject: PFILE_OBJECT,
    pub CompletionRoutine: PIO_COMPLETION_ROUTINE,
    pub Context: PVOID,
}
pub type PIO_STACK_LOCATION = *mut IO_STACK_LOCATION;

// IO_STACK_LOCATION.Control: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-iosetcompletionroutine>
pub const SL_PENDING_RETURNED: UCHAR = 0x01;
pub const SL_ERROR_RETURNED: UCHAR = 0x02;
pub const SL_INVOKE_ON_CANCEL: UCHAR = 0x20;
pub const SL_INVOKE_ON_SUCCESS: UCHAR = 0x40;
pub const SL_INVOKE_ON_ERROR: UCHAR = 0x80;

// Major function codes: <https://learn.microsoft.com/windows-hardware/drivers/kernel/irp-major-function-codes>
pub const IRP_MJ_CREATE: UCHAR = 0x00;
pub const IRP_MJ_CREATE_NAMED_PIPE: UCHAR = 0x01;
pub const IRP_MJ_CLOSE: UCHAR = 0x02;
pub const IRP_MJ_READ: UCHAR = 0x03;
pub const IRP_MJ_WRITE: UCHAR = 0x04;
pub const IRP_MJ_QUERY_INFORMATION: UCHAR = 0x05;
pub const IRP_MJ_SET_INFORMATION: UCHAR = 0x06;
pub const IRP_MJ_QUERY_EA: UCHAR = 0x07;
pub const IRP_MJ_SET_EA: UCHAR = 0x08;
pub const IRP_MJ_FLUSH_BUFFERS: UCHAR = 0x09;
pub const IRP_MJ_QUERY_VOLUME_INFORMATION: UCHAR = 0x0a;
pub const IRP_MJ_SET_VOLUME_INFORMATION: UCHAR = 0x0b;
pub const IRP_MJ_DIRECTORY_CONTROL: UCHAR = 0x0c;
pub const IRP_MJ_FILE_SYSTEM_CONTROL: UCHAR = 0x0d;
pub const IRP_MJ_DEVICE_CONTROL: UCHAR = 0x0e;
pub const IRP_MJ_INTERNAL_DEVICE_CONTROL: UCHAR = 0x0f;
pub const IRP_MJ_SHUTDOWN: UCHAR = 0x10;
pub const IRP_MJ_LOCK_CONTROL: UCHAR = 0x11;
pub const IRP_MJ_CLEANUP: UCHAR = 0x12;
pub const IRP_MJ_CREATE_MAILSLOT: UCHAR = 0x13;
pub const IRP_MJ_QUERY_SECURITY: UCHAR = 0x14;
pub const IRP_MJ_SET_SECURITY: UCHAR = 0x15;
pub const IRP_MJ_POWER: UCHAR = 0x16;
pub const IRP_MJ_SYSTEM_CONTROL: UCHAR = 0x17;
pub const IRP_MJ_DEVICE_CHANGE: UCHAR = 0x18;
pub const IRP_MJ_QUERY_QUOTA: UCHAR = 0x19;
pub const IRP_MJ_SET_QUOTA: UCHAR = 0x1a;
pub const IRP_MJ_PNP: UCHAR = 0x1b;
pub const IRP_MJ_MAXIMUM_FUNCTION: UCHAR = 0x1b;

// Priority boosts for IoCompleteRequest.
pub const IO_NO_INCREMENT: CCHAR = 0;
pub const IO_NETWORK_INCREMENT: CCHAR = 2;

// Device object flags and types: <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-iocreatedevice>
pub const DO_VERIFY_VOLUME: ULONG = 0x0000_0002;
pub const DO_BUFFERED_IO: ULONG = 0x0000_0004;
pub const DO_EXCLUSIVE: ULONG = 0x0000_0008;
pub const DO_DIRECT_IO: ULONG = 0x0000_0010;
pub const DO_MAP_IO_BUFFER: ULONG = 0x0000_0020;
pub const DO_DEVICE_INITIALIZING: ULONG = 0x0000_0080;
pub const FILE_DEVICE_SECURE_OPEN: ULONG = 0x0000_0100;
pub const FILE_DEVICE_NETWORK: DEVICE_TYPE = 0x0000_0012;
pub const FILE_DEVICE_UNKNOWN: DEVICE_TYPE = 0x0000_0022;

// CTL_CODE pieces: <https://learn.microsoft.com/windows-hardware/drivers/kernel/defining-i-o-control-codes>
pub const METHOD_BUFFERED: ULONG = 0;
pub const METHOD_IN_DIRECT: ULONG = 1;
pub const METHOD_OUT_DIRECT: ULONG = 2;
pub const METHOD_NEITHER: ULONG = 3;
pub const FILE_ANY_ACCESS: ULONG = 0;
pub const FILE_SPECIAL_ACCESS: ULONG = FILE_ANY_ACCESS;
pub const FILE_READ_ACCESS: ULONG = 0x0001;
pub const FILE_WRITE_ACCESS: ULONG = 0x0002;

/// `CTL_CODE` macro.
#[inline]
pub const fn CTL_CODE(DeviceType: ULONG, Function: ULONG, Method: ULONG, Access: ULONG) -> ULONG {
    (DeviceType << 16) | (Access << 14) | (Function << 2) | Method
}

/// `DEVICE_TYPE_FROM_CTL_CODE` macro.
#[inline]
pub const fn DEVICE_TYPE_FROM_CTL_CODE(ctrlCode: ULONG) -> ULONG {
    (ctrlCode & 0xffff_0000) >> 16
}

/// `METHOD_FROM_CTL_CODE` macro.
#[inline]
pub const fn METHOD_FROM_CTL_CODE(ctrlCode: ULONG) -> ULONG {
    ctrlCode & 3
}
