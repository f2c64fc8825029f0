//! `MmGetSystemRoutineAddress`: a routine of ntoskrnl.exe or HAL.dll by name, from the same
//! export table the image loader binds imports to (`pe::stand_ins`), minus the routines newer
//! than the run's `windows_build` (ExAllocatePool2 before 19041): so a driver that looks a
//! routine up is tested on both kinds of kernel, with the table the loader uses.

use wsk_sys::{PUNICODE_STRING, PVOID};

/// The DLLs MmGetSystemRoutineAddress searches ("the kernel or HAL" in its documentation).
const SEARCHED: [&str; 2] = ["ntoskrnl.exe", "HAL.dll"];

/// `MmGetSystemRoutineAddress`:
/// <https://learn.microsoft.com/windows-hardware/drivers/ddi/wdm/nf-wdm-mmgetsystemroutineaddress>
/// PASSIVE_LEVEL. NULL for a name neither module exports on this build.
#[no_mangle]
pub unsafe extern "win64" fn MmGetSystemRoutineAddress(
    SystemRoutineName: PUNICODE_STRING,
) -> PVOID {
    crate::kernel::preempt::entry("MmGetSystemRoutineAddress");
    crate::kernel::irql::require_passive("MmGetSystemRoutineAddress");
    if SystemRoutineName.is_null() {
        crate::kernel::state::violation("MmGetSystemRoutineAddress(NULL)");
        return std::ptr::null_mut();
    }
    // SAFETY: a non-NULL UNICODE_STRING from the caller.
    let name = unsafe { crate::kernel::unicode::unicode(SystemRoutineName) };
    lookup(&name).map_or(std::ptr::null_mut(), |a| a as PVOID)
}

/// The address MmGetSystemRoutineAddress gives for `name` on this run's build.
pub(crate) fn lookup(name: &str) -> Option<usize> {
    let build = crate::kernel::state::config().windows_build;
    let table = crate::pe::stand_ins::table();
    SEARCHED
        .iter()
        .find_map(|dll| crate::pe::stand_ins::find(&table, dll, name))
        .filter(|s| !s.data && s.since_build <= build)
        .map(|s| s.address)
}
