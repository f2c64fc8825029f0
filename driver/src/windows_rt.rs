//! Symbols the prebuilt `core` needs when linked as a kernel driver with /NODEFAULTLIB.
//! Defined in assembly so they are not exported from the .sys (a `#[no_mangle]` item would
//! be: the image must export DriverEntry only).

/// No unwinding in the kernel (panic = abort): log the location and bugcheck at once
/// (`kernel::bugcheck`), never return into the state that panicked.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::kernel::bugcheck::bugcheck_on_panic(info.location(), info.message())
}

// `_fltused`: referenced by MSVC-style objects whenever floating point appears.
// `__CxxFrameHandler3`: named by the prebuilt core's unwind tables; never called with
// panic=abort, so an inert body returning 0 (ExceptionContinueExecution is never reached).
core::arch::global_asm!(
    ".globl _fltused",
    ".section .rdata,\"dr\"",
    ".p2align 2",
    "_fltused:",
    ".long 0",
    ".text",
    ".globl __CxxFrameHandler3",
    ".p2align 4",
    "__CxxFrameHandler3:",
    "xor eax, eax",
    "ret",
);
