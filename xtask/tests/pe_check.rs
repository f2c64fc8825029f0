//! The PE check against real linker output: tiny drivers compiled here with rustc and
//! rust-lld exactly as the product is linked (so the check sees what the toolchain
//! produces), one good and several bad, plus the real wskecho.sys.
//! Skipped, with a message, when the x86_64-pc-windows-msvc target is not installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use xtask::{build, mingw, pe_check};

fn tmp() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pe_check");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn target_missing() -> bool {
    if build::windows_target_installed() {
        return false;
    }
    eprintln!(
        "SKIPPED: the {} target is not installed (rustup target add {})",
        build::TARGET,
        build::TARGET
    );
    true
}

fn lists() -> mingw::ExportLists {
    mingw::ExportLists::load(&mingw::ensure_installed().expect("mingw-w64 import libraries"))
        .expect("export lists")
}

/// A `#![no_std]` driver whose imports are `imports` (Rust extern blocks) and whose
/// DriverEntry body is `body`, linked with the product's linker arguments.
fn compile_driver(name: &str, imports: &str, body: &str, extra: &str) -> Vec<u8> {
    let dir = tmp();
    let src = dir.join(format!("{name}.rs"));
    let out = dir.join(format!("{name}.dll"));
    let code = format!(
        r#"#![no_std]
#![allow(non_snake_case, clippy::all)]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {{ loop {{}} }}
{imports}
#[no_mangle]
pub unsafe extern "system" fn DriverEntry(_d: *mut u8, _r: *mut u8) -> i32 {{
    {body}
    0
}}
{extra}
"#
    );
    std::fs::write(&src, code).unwrap();
    let lld = build::rust_lld().unwrap();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let status = Command::new(rustc)
        .args([
            "--edition",
            "2021",
            "--crate-type",
            "cdylib",
            "--crate-name",
            name,
            "--target",
            build::TARGET,
        ])
        .args(["-C", "panic=abort", "-C", "opt-level=1"])
        .args(build::driver_rustc_args(&lld))
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .unwrap();
    assert!(status.success(), "rustc failed for {name}");
    let mut bytes = std::fs::read(&out).unwrap();
    pe_check::fix_checksum(&mut bytes).unwrap();
    bytes
}

const GOOD_IMPORTS: &str = r#"
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
extern "system" {
    fn ExAllocatePoolWithTag(pool_type: i32, n: usize, tag: u32) -> *mut u8;
    fn ExFreePoolWithTag(p: *mut u8, tag: u32);
    fn MmGetSystemRoutineAddress(name: *mut u8) -> *mut u8;
}
#[link(name = "HAL.dll", kind = "raw-dylib", modifiers = "+verbatim")]
extern "system" { fn KeQueryPerformanceCounter(f: *mut i64) -> i64; }
#[link(name = "NETIO.SYS", kind = "raw-dylib", modifiers = "+verbatim")]
extern "system" { fn WskDeregister(r: *mut u8); }
"#;

const GOOD_BODY: &str = "
    let p = ExAllocatePoolWithTag(512, 64, 0x74736554);
    ExFreePoolWithTag(p, 0x74736554);
    if KeQueryPerformanceCounter(core::ptr::null_mut()) == 0 {
        WskDeregister(MmGetSystemRoutineAddress(core::ptr::null_mut()));
    }
";

/// `tag` keeps parallel tests from writing the same files.
fn good(tag: &str) -> Vec<u8> {
    compile_driver(&format!("good_{tag}"), GOOD_IMPORTS, GOOD_BODY, "")
}

#[test]
fn good_driver_passes() {
    if target_missing() {
        return;
    }
    let report = pe_check::check(&good("pass"), &lists())
        .unwrap_or_else(|p| panic!("good driver refused:\n{p}"));
    let names: Vec<_> = report
        .imports
        .iter()
        .map(|i| format!("{}!{}", i.dll, i.name))
        .collect();
    for want in [
        "ntoskrnl.exe!ExAllocatePoolWithTag",
        "ntoskrnl.exe!MmGetSystemRoutineAddress",
        "HAL.dll!KeQueryPerformanceCounter",
        "NETIO.SYS!WskDeregister",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    assert!(
        report.imports.iter().all(|i| i.allow_listed.is_none()),
        "every name is in mingw-w64's lists"
    );
    assert_eq!(report.exports, vec!["DriverEntry".to_owned()]);
}

#[test]
fn ntdll_import_is_refused() {
    if target_missing() {
        return;
    }
    let imports = r#"
#[link(name = "ntdll.dll", kind = "raw-dylib", modifiers = "+verbatim")]
extern "system" { fn NtClose(h: *mut u8) -> i32; }
"#;
    let img = compile_driver("ntdll", imports, "NtClose(core::ptr::null_mut());", "");
    let err =
        pe_check::check(&img, &lists()).expect_err("a driver importing ntdll.dll must be refused");
    assert!(err.0.iter().any(|p| p.contains("ntdll.dll")), "{err}");
}

#[test]
fn missing_name_is_refused() {
    if target_missing() {
        return;
    }
    let imports = r#"
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
extern "system" { fn IoDoesNotExistAnywhere(x: u32) -> i32; fn KeSetEvent(e: *mut u8, i: i32, w: u8) -> i32; }
"#;
    let img = compile_driver(
        "missing",
        imports,
        "IoDoesNotExistAnywhere(1); KeSetEvent(core::ptr::null_mut(), 0, 0);",
        "",
    );
    let err =
        pe_check::check(&img, &lists()).expect_err("an import ntoskrnl.exe lacks must be refused");
    assert_eq!(err.0.len(), 1, "only the unknown name is wrong: {err}");
    assert!(err.0[0].contains("IoDoesNotExistAnywhere"), "{err}");
}

/// ExAllocatePool2 (Windows 10 2004+) and SeExports (a data import) are in mingw-w64's lists,
/// so only the deny-list refuses them: one problem each, naming the name.
#[test]
fn pool2_and_se_exports_are_refused() {
    if target_missing() {
        return;
    }
    let imports = r#"
#[link(name = "ntoskrnl.exe", kind = "raw-dylib", modifiers = "+verbatim")]
extern "system" {
    fn ExAllocatePool2(flags: u64, n: usize, tag: u32) -> *mut u8;
    fn ExFreePoolWithTag(p: *mut u8, tag: u32);
    static SeExports: *mut u8;
}
"#;
    let body = "
    let p = ExAllocatePool2(0x40, 64, 0x74736554);
    ExFreePoolWithTag(p, 0x74736554);
    if p.is_null() { ExFreePoolWithTag(SeExports, 1); }
";
    let img = compile_driver("newer", imports, body, "");
    let err = pe_check::check(&img, &lists())
        .expect_err("ExAllocatePool2 and SeExports imports must be refused");
    assert_eq!(err.0.len(), 2, "exactly the two names: {err}");
    assert!(
        err.0
            .iter()
            .any(|p| p.contains("ntoskrnl.exe!ExAllocatePool2") && p.contains("19041")),
        "{err}"
    );
    assert!(
        err.0.iter().any(|p| p.contains("ntoskrnl.exe!SeExports")),
        "{err}"
    );
}

#[test]
fn extra_export_is_refused() {
    if target_missing() {
        return;
    }
    let extra = "#[no_mangle] pub extern \"system\" fn Helper() -> u32 { 7 }";
    let img = compile_driver("export", GOOD_IMPORTS, GOOD_BODY, extra);
    let err = pe_check::check(&img, &lists()).expect_err("a second export must be refused");
    assert!(err.0.iter().any(|p| p.contains("exports Helper")), "{err}");
}

/// Offsets in the PE headers, for patching the good image.
fn opt_header(img: &[u8]) -> usize {
    u32::from_le_bytes(img[0x3c..0x40].try_into().unwrap()) as usize + 4 + 20
}

#[test]
fn patched_headers_are_refused() {
    if target_missing() {
        return;
    }
    let lists = lists();
    let base = good("patched");
    let opt = opt_header(&base);

    // Subsystem (optional header + 68) = 2, WINDOWS_GUI; checksum re-fixed so only that is wrong.
    let mut img = base.clone();
    img[opt + 68..opt + 70].copy_from_slice(&2u16.to_le_bytes());
    pe_check::fix_checksum(&mut img).unwrap();
    let err = pe_check::check(&img, &lists).unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    assert!(err.0[0].contains("subsystem"), "{err}");

    // Machine (file header + 0) = i386.
    let mut img = base.clone();
    let fh = opt - 20;
    img[fh..fh + 2].copy_from_slice(&0x014cu16.to_le_bytes());
    pe_check::fix_checksum(&mut img).unwrap();
    let err = pe_check::check(&img, &lists).unwrap_err();
    assert!(err.0.iter().any(|p| p.contains("machine")), "{err}");

    // One byte of the last page changed after linking: checksum no longer matches.
    let mut img = base.clone();
    let last = img.len() - 1;
    img[last] ^= 0x5a;
    let err = pe_check::check(&img, &lists).unwrap_err();
    assert!(err.0.iter().any(|p| p.contains("checksum")), "{err}");

    // A TLS directory (data directory 9 at optional header + 112 + 9 * 8).
    let mut img = base.clone();
    let tls = opt + 112 + 9 * 8;
    img[tls..tls + 8].copy_from_slice(&[0x00, 0x10, 0, 0, 0x28, 0, 0, 0]);
    pe_check::fix_checksum(&mut img).unwrap();
    let err = pe_check::check(&img, &lists).unwrap_err();
    assert!(err.0.iter().any(|p| p.contains("TLS")), "{err}");

    // No entry point (optional header + 16).
    let mut img = base.clone();
    img[opt + 16..opt + 20].copy_from_slice(&0u32.to_le_bytes());
    pe_check::fix_checksum(&mut img).unwrap();
    let err = pe_check::check(&img, &lists).unwrap_err();
    assert!(err.0.iter().any(|p| p.contains("entry point")), "{err}");

    // IMAGE_FILE_RELOCS_STRIPPED (bit 0 of the file header's Characteristics, at + 18).
    let mut img = base.clone();
    img[fh + 18] |= 0x01;
    pe_check::fix_checksum(&mut img).unwrap();
    let err = pe_check::check(&img, &lists).unwrap_err();
    assert!(err.0.iter().any(|p| p.contains("relocations")), "{err}");

    // NX_COMPAT (0x100) cleared in DllCharacteristics (optional header + 70).
    let mut img = base.clone();
    img[opt + 71] &= !0x01;
    pe_check::fix_checksum(&mut img).unwrap();
    let err = pe_check::check(&img, &lists).unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    assert!(err.0[0].contains("NX_COMPAT"), "{err}");

    // .text made writable (IMAGE_SCN_MEM_WRITE in its section header's Characteristics).
    let mut img = base.clone();
    let size_of_opt = u16::from_le_bytes([img[fh + 16], img[fh + 17]]) as usize;
    let sections = opt + size_of_opt;
    let count = u16::from_le_bytes([img[fh + 2], img[fh + 3]]) as usize;
    let text = (0..count)
        .map(|i| sections + i * 40)
        .find(|&h| img[h..h + 8].starts_with(b".text"))
        .expect(".text");
    img[text + 39] |= 0x80;
    pe_check::fix_checksum(&mut img).unwrap();
    let err = pe_check::check(&img, &lists).unwrap_err();
    assert!(
        err.0.iter().any(|p| p.contains("writable and executable")),
        "{err}"
    );

    // And the unpatched image still passes, so the failures above are the patches'.
    pe_check::check(&base, &lists).unwrap();
}

/// The real product: builds wskecho for Windows into a private target directory,
/// packages it with the real INF and checks it.
#[test]
fn real_driver_passes() {
    if target_missing() {
        return;
    }
    let target_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("driver-build");
    let image =
        build::build_driver("wskecho", "wskecho", &target_dir).expect("wskecho builds for Windows");
    let out = tmp().join("package");
    let inf = build::workspace_root().join("inf/wskecho.inf");
    let p = build::package_driver(&image, &out, &inf).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(Path::new(&p.sys).is_file());
    if inf.is_file() {
        assert!(
            p.inf.as_ref().is_some_and(|i| i.is_file()),
            "the INF is packaged beside the .sys"
        );
    }
    let names: Vec<_> = p.report.imports.iter().map(|i| i.name.as_str()).collect();
    assert!(
        names.contains(&"WskRegister"),
        "the driver registers with WSK: {names:?}"
    );
    // The Windows 10 1809 floor (docs/windows-versions.md): ExAllocatePool2 only through
    // MmGetSystemRoutineAddress, no SeExports (check() refuses both; named here as well).
    for absent in ["ExAllocatePool2", "SeExports"] {
        assert!(!names.contains(&absent), "{absent} imported: {names:?}");
    }
    assert!(names.contains(&"MmGetSystemRoutineAddress"), "{names:?}");
    println!("{}", p.report.import_summary());
}

/// Packaging refuses an INF that copies a file the build does not produce.
#[test]
fn inf_naming_a_missing_file_is_refused() {
    if target_missing() {
        return;
    }
    let dir = tmp().join("inf_case");
    std::fs::create_dir_all(&dir).unwrap();
    let image = dir.join("good.dll");
    std::fs::write(&image, good("inf")).unwrap();
    let inf = dir.join("bad.inf");
    std::fs::write(
        &inf,
        "[SourceDisksFiles]\nwskecho.sys = 1,,\nhelper.dll = 1,,\n",
    )
    .unwrap();
    let err = build::package_driver(&image, &dir.join("out"), &inf)
        .expect_err("helper.dll is not produced");
    assert!(format!("{err:#}").contains("helper.dll"), "{err:#}");
    // The same image with the shipped INF (it copies only wskecho.sys) packages fine.
    std::fs::copy(build::workspace_root().join("inf/wskecho.inf"), &inf).unwrap();
    let ok = build::package_driver(&image, &dir.join("out"), &inf).unwrap();
    assert!(ok.inf.is_some());
}
