//! The panic path (issue 13, item 2): a panic logs its location with DbgPrintEx and stops
//! with KeBugCheckEx(BUGCHECK_PANIC, line, column, file, file length). On Windows the
//! driver's `#[panic_handler]` calls `bugcheck_on_panic`; on the host std owns the panic
//! handler, so a panic hook (the host's stand-in for the handler) routes a real panic to the
//! same function, against wsk-sim's KeBugCheckEx stand-in, which stops the process as a
//! bugcheck stops the machine. The test therefore runs the panic in a child process.

use std::process::Command;

const CHILD: &str = "WSKECHO_PANIC_CHILD";

/// Runs in a child process only: a real panic, routed by a hook to the driver's panic path.
#[test]
fn child_panics_through_the_driver_path() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let _sim = wsk_sim::init(wsk_sim::Config::default());
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .unwrap_or("?");
        wskecho::bugcheck_on_panic(info.location(), msg)
    }));
    panic!("forced panic");
}

#[test]
fn a_panic_logs_its_location_and_stops_with_the_bugcheck() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_panics_through_the_driver_path",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the child must not survive: {err}");
    // The line of the child's panic!, read from this file.
    let line = include_str!("panic.rs")
        .lines()
        .position(|l| l.trim_start().starts_with("panic!(\"forced panic"))
        .unwrap()
        + 1;
    let file = "driver/tests/panic.rs";
    let code = format!("KeBugCheckEx({:#x}, {line:#x}, ", wskecho::BUGCHECK_PANIC);
    assert!(err.contains(&code), "no {code} in:\n{err}");
    assert!(
        err.contains(&format!(", {:#x})", file.len())),
        "file length: {err}"
    );
    let log = format!("panic at {file}:{line}:5: forced panic");
    assert!(err.contains(&log), "no DbgPrintEx line {log:?} in:\n{err}");
}
