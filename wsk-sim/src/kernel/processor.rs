//! Processors: the virtual processor a host thread runs on, and how many there are.

use wsk_sys::{PPROCESSOR_NUMBER, ULONG, USHORT};

/// `KeGetCurrentProcessorNumberEx`: the virtual processor of this host thread.
#[no_mangle]
pub unsafe extern "win64" fn KeGetCurrentProcessorNumberEx(ProcNumber: PPROCESSOR_NUMBER) -> ULONG {
    let cpu = crate::kernel::irql::cpu();
    if !ProcNumber.is_null() {
        // SAFETY: the caller passes PROCESSOR_NUMBER storage.
        unsafe {
            (*ProcNumber).Group = 0;
            (*ProcNumber).Number = cpu as u8;
            (*ProcNumber).Reserved = 0;
        }
    }
    cpu
}

/// `KeQueryActiveProcessorCountEx`: one group.
#[no_mangle]
pub unsafe extern "win64" fn KeQueryActiveProcessorCountEx(GroupNumber: USHORT) -> ULONG {
    if GroupNumber == 0 || GroupNumber == wsk_sys::ALL_PROCESSOR_GROUPS {
        crate::kernel::state::config().processor_count
    } else {
        0
    }
}
