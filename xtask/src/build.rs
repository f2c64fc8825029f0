//! Building wskecho.sys for x86_64-pc-windows-msvc from any host with rust-lld and no WDK,
//! and packaging it with its INF. Why this recipe (rust-lld, no WDK, the link arguments below):
//! docs/architecture.md, "Kernel FFI: how wskecho.sys is built".

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{inf, mingw, pe_check};

pub const TARGET: &str = "x86_64-pc-windows-msvc";
/// The Cargo profile of the .sys (inherits release; panic = abort, fat LTO).
pub const PROFILE: &str = "driver";

/// Linker arguments that make a kernel driver of a `#![no_std]` cdylib.
pub const LINK_ARGS: &[&str] = &[
    "/DRIVER",
    "/SUBSYSTEM:NATIVE",
    "/ENTRY:DriverEntry",
    "/NODEFAULTLIB",
    "/RELEASE",
    "/NXCOMPAT",
    "/DYNAMICBASE",
    "/MANIFEST:NO",
    "/OPT:REF,ICF",
];

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent")
        .to_path_buf()
}

/// `CARGO_TARGET_DIR`, or `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
}

fn rustc() -> String {
    std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into())
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

pub fn sysroot() -> Result<PathBuf> {
    let out = Command::new(rustc())
        .args(["--print", "sysroot"])
        .output()
        .context("running rustc --print sysroot")?;
    if !out.status.success() {
        bail!("rustc --print sysroot failed");
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// rust-lld as shipped with the host toolchain (used with the lld-link flavor).
pub fn rust_lld() -> Result<PathBuf> {
    let sysroot = sysroot()?;
    let host = host_triple()?;
    let lld = sysroot
        .join("lib/rustlib")
        .join(host)
        .join("bin")
        .join(if cfg!(windows) {
            "rust-lld.exe"
        } else {
            "rust-lld"
        });
    if !lld.is_file() {
        bail!(
            "rust-lld not found at {} (it ships with every rustup toolchain)",
            lld.display()
        );
    }
    Ok(lld)
}

fn host_triple() -> Result<String> {
    let out = Command::new(rustc())
        .arg("-vV")
        .output()
        .context("running rustc -vV")?;
    let text = String::from_utf8(out.stdout)?;
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(str::to_owned)
        .context("rustc -vV printed no host line")
}

/// Is the Windows target's standard library installed (`rustup target add x86_64-pc-windows-msvc`)?
pub fn windows_target_installed() -> bool {
    sysroot().is_ok_and(|s| s.join("lib/rustlib").join(TARGET).join("lib").is_dir())
}

/// The rustc arguments after `--` for a driver link.
pub fn driver_rustc_args(lld: &Path) -> Vec<String> {
    let mut args = vec![
        "-C".into(),
        format!("linker={}", lld.display()),
        "-C".into(),
        "linker-flavor=lld-link".into(),
        "-C".into(),
        "target-feature=+crt-static".into(),
    ];
    for a in LINK_ARGS {
        args.push("-C".into());
        args.push(format!("link-arg={a}"));
    }
    args
}

/// Builds `package` (a `#![no_std]` lib crate) as a driver; returns the linked image.
pub fn build_driver(package: &str, lib_name: &str, target_dir: &Path) -> Result<PathBuf> {
    if !windows_target_installed() {
        bail!("the {TARGET} target is not installed: run `rustup target add {TARGET}`");
    }
    let lld = rust_lld()?;
    let status = Command::new(cargo())
        .current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", target_dir)
        .args([
            "rustc",
            "-p",
            package,
            "--profile",
            PROFILE,
            "--target",
            TARGET,
            "--crate-type",
            "cdylib",
            "--",
        ])
        .args(driver_rustc_args(&lld))
        .status()
        .context("running cargo rustc")?;
    if !status.success() {
        bail!("cargo rustc -p {package} for {TARGET} failed");
    }
    let image = target_dir
        .join(TARGET)
        .join(PROFILE)
        .join(format!("{lib_name}.dll"));
    if !image.is_file() {
        bail!("build succeeded but {} is missing", image.display());
    }
    Ok(image)
}

/// What `package_driver` produced.
#[derive(Debug)]
pub struct Packaged {
    pub sys: PathBuf,
    pub inf: Option<PathBuf>,
    pub pdb: Option<PathBuf>,
    pub checksum_fixed: bool,
    pub report: pe_check::Report,
}

/// Copies the image as `<out_dir>/wskecho.sys` (writing the PE checksum if the linker left
/// it wrong), checks it, and copies `inf/wskecho.inf` beside it after checking that every
/// file the INF copies is one this step produced.
pub fn package_driver(image: &Path, out_dir: &Path, inf_src: &Path) -> Result<Packaged> {
    std::fs::create_dir_all(out_dir)?;
    let sys = out_dir.join("wskecho.sys");
    let mut bytes = std::fs::read(image).with_context(|| format!("reading {}", image.display()))?;
    let checksum_fixed = pe_check::fix_checksum(&mut bytes)?;
    std::fs::write(&sys, &bytes)?;

    let lists = mingw::ExportLists::load(&mingw::ensure_installed()?)?;
    let report = pe_check::check(&bytes, &lists)
        .map_err(|p| anyhow::anyhow!("{} is not a valid driver image:\n{p}", sys.display()))?;

    // The linker's symbols, for WinDbg on the test machine (not part of the INF's files).
    let pdb_src = image.with_extension("pdb");
    let pdb = if pdb_src.is_file() {
        let dst = out_dir.join("wskecho.pdb");
        std::fs::copy(&pdb_src, &dst)?;
        Some(dst)
    } else {
        None
    };

    let inf = if inf_src.is_file() {
        let text = std::fs::read_to_string(inf_src)?;
        inf::check_package(&text, &["wskecho.sys"])
            .map_err(|e| anyhow::anyhow!("{} is refused:\n{e}", inf_src.display()))?;
        let dst = out_dir.join("wskecho.inf");
        std::fs::copy(inf_src, &dst)?;
        Some(dst)
    } else {
        eprintln!(
            "xtask: warning: {} not found; packaging the .sys alone",
            inf_src.display()
        );
        None
    };
    Ok(Packaged {
        sys,
        inf,
        pdb,
        checksum_fixed,
        report,
    })
}
