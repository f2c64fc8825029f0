//! Export lists of ntoskrnl.exe, HAL.dll and NETIO.SYS, read from Debian's
//! mingw-w64-x86-64-dev import libraries (libntoskrnl.a, libhal.a, libnetio.a).
//!
//! Each archive member made by dlltool is a COFF object; an exported name `X` appears as
//! the import-address-table symbol `__imp_X` (data exports such as SeExports have only
//! that one), so the export list is every `__imp_` symbol with the prefix removed.
//! Short-format import members (llvm-dlltool) are read too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use object::read::archive::ArchiveFile;
use object::read::coff::{CoffFile, ImportFile};
use object::{Object, ObjectSymbol};

/// Where Debian puts the x86_64 mingw-w64 import libraries.
pub const MINGW_LIB_DIR: &str = "/usr/x86_64-w64-mingw32/lib";

/// The DLLs a driver may import from, each with its import library's file name.
pub const KERNEL_DLLS: &[(&str, &str)] = &[
    ("ntoskrnl.exe", "libntoskrnl.a"),
    ("HAL.dll", "libhal.a"),
    ("NETIO.SYS", "libnetio.a"),
];

/// Names newer than mingw-w64's lists, each with the Microsoft doc page that shows it is
/// exported by that DLL (and from which Windows version). Empty since ExAllocatePool2 (Windows
/// 10 2004) is looked up at run time: an allow-listed name must also be no newer than
/// [`MINIMUM_WINDOWS`] (docs/windows-versions.md), or the image needs the newer Windows.
pub const ALLOW_LIST: &[(&str, &str, &str)] = &[];

/// The oldest Windows the driver image must load on.
pub const MINIMUM_WINDOWS: &str = "Windows 10 1809 / Windows Server 2019 (build 17763)";

/// Exports the image must not import statically, with the reason (reported instead of "not
/// exported"). mingw-w64 lists SeExports, so the export check alone would let it through;
/// ExAllocatePool2 is newer than its lists and was allow-listed until the 1809 floor.
pub const FORBIDDEN_IMPORTS: &[(&str, &str, &str)] = &[
    (
        "ntoskrnl.exe",
        "ExAllocatePool2",
        "exported from Windows 10 2004 (build 19041) only; the minimum is build 17763: look it up \
         with MmGetSystemRoutineAddress and fall back to ExAllocatePoolWithTag",
    ),
    (
        "ntoskrnl.exe",
        "SeExports",
        "a data import other kernels implement differently (Wine exports a code stub); build the \
         well-known SIDs locally",
    ),
];

/// Why `dll!name` may not be imported, if it may not.
pub fn forbidden(dll: &str, name: &str) -> Option<&'static str> {
    FORBIDDEN_IMPORTS
        .iter()
        .find(|(d, n, _)| d.eq_ignore_ascii_case(dll) && *n == name)
        .map(|(_, _, why)| *why)
}

/// Export names per DLL, keyed by the lower-cased DLL name.
#[derive(Debug, Clone, Default)]
pub struct ExportLists {
    pub by_dll: BTreeMap<String, BTreeSet<String>>,
}

impl ExportLists {
    /// Reads the three import libraries from `dir`.
    pub fn load(dir: &Path) -> Result<Self> {
        let mut by_dll = BTreeMap::new();
        for (dll, lib) in KERNEL_DLLS {
            let path = dir.join(lib);
            let data =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let names = exports_of_import_library(&data)
                .with_context(|| format!("parsing {}", path.display()))?;
            if names.is_empty() {
                bail!("{} lists no exports", path.display());
            }
            by_dll.insert(dll.to_ascii_lowercase(), names);
        }
        Ok(ExportLists { by_dll })
    }

    /// Is `name` exported by `dll` (case-insensitive DLL name), per mingw or the allow-list?
    pub fn lookup(&self, dll: &str, name: &str) -> Option<Source> {
        let dll_lc = dll.to_ascii_lowercase();
        if self.by_dll.get(&dll_lc).is_some_and(|s| s.contains(name)) {
            return Some(Source::Mingw);
        }
        ALLOW_LIST
            .iter()
            .find(|(d, n, _)| d.eq_ignore_ascii_case(dll) && *n == name)
            .map(|(_, _, doc)| Source::AllowList(doc))
    }

    pub fn is_kernel_dll(&self, dll: &str) -> bool {
        self.by_dll.contains_key(&dll.to_ascii_lowercase())
    }
}

/// Where an accepted import name was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Mingw,
    AllowList(&'static str),
}

/// Every name an import library (GNU ar of COFF members) exports.
pub fn exports_of_import_library(data: &[u8]) -> Result<BTreeSet<String>> {
    let archive = ArchiveFile::parse(data)?;
    let mut names = BTreeSet::new();
    for member in archive.members() {
        let member = member?;
        let bytes = member.data(data)?;
        if let Ok(coff) = CoffFile::<&[u8]>::parse(bytes) {
            for sym in coff.symbols() {
                if let Some(n) = sym.name().ok().and_then(|n| n.strip_prefix("__imp_")) {
                    names.insert(n.to_owned());
                }
            }
        } else if let Ok(imp) = ImportFile::parse(bytes) {
            names.insert(String::from_utf8_lossy(imp.symbol()).into_owned());
        }
    }
    Ok(names)
}

/// The import libraries' directory, installing Debian's package if they are missing.
pub fn ensure_installed() -> Result<PathBuf> {
    let dir = PathBuf::from(MINGW_LIB_DIR);
    let missing = || KERNEL_DLLS.iter().any(|(_, lib)| !dir.join(lib).is_file());
    if missing() {
        eprintln!("xtask: mingw-w64 import libraries missing; running apt-get install -y mingw-w64-x86-64-dev");
        // apt-get needs root; use sudo when not running as root.
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        let apt = |args: &[&str]| {
            let mut cmd = if root {
                Command::new("apt-get")
            } else {
                Command::new("sudo")
            };
            if !root {
                cmd.arg("apt-get");
            }
            cmd.args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
        };
        let install = || {
            apt(&[
                "install",
                "-y",
                "--no-install-recommends",
                "mingw-w64-x86-64-dev",
            ])
        };
        if !install().is_ok_and(|s| s.success()) {
            // A fresh machine may have no package lists yet.
            let _ = apt(&["update"]);
            let ok = install().is_ok_and(|s| s.success());
            if !ok {
                bail!("apt-get install mingw-w64-x86-64-dev failed (needs root and Debian/Ubuntu)");
            }
        }
        if missing() {
            bail!("mingw-w64-x86-64-dev installed but {MINGW_LIB_DIR} still lacks the import libraries");
        }
    }
    Ok(dir)
}
