//! KeBugCheckEx stand-in: a bugcheck never returns, so the run stops here, like a violation
//! inside an `extern "win64"` call: the stop code, its four parameters and the last lines the
//! driver logged (what a debugger shows first) go to stderr, then the process aborts. Tests
//! observe it from a parent process (exit status and stderr).

/// How many of the last DbgPrintEx lines are shown with the stop code.
const LOG_TAIL: usize = 5;

/// KeBugCheckEx. Any IRQL. Never returns: aborts the process.
///
/// # Safety
/// None beyond the C contract.
#[no_mangle]
pub unsafe extern "win64" fn KeBugCheckEx(
    BugCheckCode: u32,
    BugCheckParameter1: usize,
    BugCheckParameter2: usize,
    BugCheckParameter3: usize,
    BugCheckParameter4: usize,
) -> ! {
    let log = crate::kernel::dbgprint::dbg_output();
    let lines: Vec<&str> = log.lines().collect();
    let tail = lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n  ");
    // Straight to fd 2: a captured message is lost when the process aborts.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!(
            "wsk-sim BUGCHECK: KeBugCheckEx({BugCheckCode:#x}, {BugCheckParameter1:#x}, \
             {BugCheckParameter2:#x}, {BugCheckParameter3:#x}, {BugCheckParameter4:#x})\n  \
             last DbgPrintEx lines:\n  {tail}\n"
        )
        .as_bytes(),
    );
    std::process::abort();
}
