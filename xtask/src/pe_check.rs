//! Checks that a PE image is a loadable x64 kernel driver that imports only what the
//! kernel exports: machine AMD64, subsystem NATIVE, an entry point, a valid checksum, no
//! TLS, NX_COMPAT, relocations not stripped, no exports but `DriverEntry`, no section both
//! writable and executable, imports only by name and only from ntoskrnl.exe / HAL.dll /
//! NETIO.SYS, each name present in that DLL's export list ([`crate::mingw`]) and none of the
//! names that would raise the minimum Windows version or tie the image to one kernel's data
//! layout ([`crate::mingw::FORBIDDEN_IMPORTS`]: ExAllocatePool2, SeExports).

use std::fmt;
use std::fmt::Write as _;

use anyhow::{Context, Result};
use pe_image::{ImportName, PeImage};

use crate::mingw::{ExportLists, Source};

/// One imported function or variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedName {
    pub dll: String,
    pub name: String,
    /// Doc page when the name came from the allow-list rather than mingw's lists.
    pub allow_listed: Option<&'static str>,
}

/// What a passing image looks like.
#[derive(Debug, Clone)]
pub struct Report {
    pub imports: Vec<ImportedName>,
    pub exports: Vec<String>,
    pub checksum: u32,
    pub entry_point: u32,
}

impl Report {
    /// "ntoskrnl.exe: 40 (ExFreePoolWithTag, ...)" lines; `*` marks allow-listed names.
    pub fn import_summary(&self) -> String {
        let mut dlls: Vec<&str> = self.imports.iter().map(|i| i.dll.as_str()).collect();
        dlls.dedup();
        let mut out = String::new();
        for dll in dlls {
            let names: Vec<String> = self
                .imports
                .iter()
                .filter(|i| i.dll == dll)
                .map(|i| {
                    if i.allow_listed.is_some() {
                        format!("{}*", i.name)
                    } else {
                        i.name.clone()
                    }
                })
                .collect();
            let _ = writeln!(
                out,
                "  {dll}: {} imports: {}",
                names.len(),
                names.join(", ")
            );
        }
        out
    }
}

/// Every reason an image was refused (all are collected, not just the first).
#[derive(Debug, Clone, Default)]
pub struct Problems(pub Vec<String>);

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Offset of `OptionalHeader.CheckSum` in the file.
fn checksum_offset(data: &[u8]) -> Result<usize> {
    let e_lfanew =
        u32::from_le_bytes(data.get(0x3c..0x40).context("no DOS header")?.try_into()?) as usize;
    // Signature (4) + IMAGE_FILE_HEADER (20) + 64 bytes into IMAGE_OPTIONAL_HEADER64.
    let off = e_lfanew + 4 + 20 + 64;
    if off + 4 > data.len() {
        anyhow::bail!("truncated optional header");
    }
    Ok(off)
}

/// The PE image checksum (as imagehlp's CheckSumMappedFile computes it): the
/// one's-complement-style 16-bit sum of the file with the CheckSum field taken as 0,
/// folded to 16 bits, plus the file length.
pub fn pe_checksum(data: &[u8]) -> Result<u32> {
    let skip = checksum_offset(data)?;
    let mut sum: u64 = 0;
    let mut i = 0;
    while i < data.len() {
        let word = if i == skip || i == skip + 2 {
            0
        } else {
            let lo = u64::from(data[i]);
            let hi = u64::from(data.get(i + 1).copied().unwrap_or(0));
            lo | (hi << 8)
        };
        sum += word;
        sum = (sum & 0xffff) + (sum >> 16);
        i += 2;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    Ok((sum as u32).wrapping_add(data.len() as u32))
}

/// Writes the correct checksum into the image if it is missing or wrong; returns whether
/// it changed anything.
pub fn fix_checksum(data: &mut [u8]) -> Result<bool> {
    let off = checksum_offset(data)?;
    let want = pe_checksum(data)?;
    let have = u32::from_le_bytes(data[off..off + 4].try_into()?);
    if have == want {
        return Ok(false);
    }
    data[off..off + 4].copy_from_slice(&want.to_le_bytes());
    Ok(true)
}

/// Checks `data` as a driver image against the kernel export lists.
pub fn check(data: &[u8], exports: &ExportLists) -> std::result::Result<Report, Problems> {
    let mut problems = Vec::new();
    let img = match PeImage::parse(data) {
        Ok(i) => i,
        Err(e) => return Err(Problems(vec![e.to_string()])),
    };
    let h = &img.headers;
    if h.machine != pe_image::IMAGE_FILE_MACHINE_AMD64 {
        problems.push(format!("machine is {:#06x}, not AMD64 (0x8664)", h.machine));
    }
    if h.subsystem != pe_image::IMAGE_SUBSYSTEM_NATIVE {
        problems.push(format!("subsystem is {}, not NATIVE (1)", h.subsystem));
    }
    let entry_point = h.entry_point;
    if entry_point == 0 {
        problems.push("no entry point".into());
    }
    let checksum = h.check_sum;
    match pe_checksum(data) {
        Ok(c) if c == checksum && c != 0 => {}
        Ok(c) => problems.push(format!("checksum in header {checksum:#x}, computed {c:#x}")),
        Err(e) => problems.push(format!("checksum: {e}")),
    }
    if img.has_tls {
        problems
            .push("has a TLS directory (thread-local storage does not exist for drivers)".into());
    }
    // HVCI / memory integrity loads only images that declare NX compatibility.
    if h.dll_characteristics & pe_image::IMAGE_DLLCHARACTERISTICS_NX_COMPAT == 0 {
        problems.push("not marked NX_COMPAT (/NXCOMPAT)".into());
    }
    // The kernel loads drivers at an address of its choosing: an image whose relocations
    // were stripped cannot be moved there. (An image with nothing to fix up may have no
    // relocation directory at all; that is fine.)
    if h.characteristics & pe_image::IMAGE_FILE_RELOCS_STRIPPED != 0 {
        problems.push(
            "base relocations stripped (the image could not be loaded at a kernel address)".into(),
        );
    }
    for s in &img.sections {
        if s.writable() && s.executable() {
            problems.push(format!("section {} is writable and executable", s.name));
        }
    }

    let mut export_names = Vec::new();
    for e in &img.exports {
        if e.name != "DriverEntry" {
            problems.push(format!(
                "exports {} (only DriverEntry may be exported)",
                e.name
            ));
        }
        export_names.push(e.name.clone());
    }

    let mut imports = Vec::new();
    let mut foreign_dlls = std::collections::BTreeSet::new();
    for imp in &img.imports {
        let dll = &imp.dll;
        let known = exports.is_kernel_dll(dll);
        if !known && foreign_dlls.insert(dll.clone()) {
            problems.push(format!(
                "imports from {dll} (only ntoskrnl.exe, HAL.dll, NETIO.SYS are allowed)"
            ));
        }
        match &imp.name {
            ImportName::Ordinal(o) => problems.push(format!("imports {dll} by ordinal {o}")),
            ImportName::Name(name) => {
                let source = exports.lookup(dll, name);
                if let Some(why) = crate::mingw::forbidden(dll, name) {
                    problems.push(format!("imports {dll}!{name}: {why}"));
                } else if known && source.is_none() {
                    problems.push(format!("imports {dll}!{name}, which {dll} does not export"));
                }
                let allow_listed = match source {
                    Some(Source::AllowList(doc)) => Some(doc),
                    _ => None,
                };
                imports.push(ImportedName {
                    dll: dll.clone(),
                    name: name.clone(),
                    allow_listed,
                });
            }
        }
    }
    if img.has_delay_imports {
        problems.push("has delay-load imports".into());
    }

    if problems.is_empty() {
        Ok(Report {
            imports,
            exports: export_names,
            checksum,
            entry_point,
        })
    } else {
        Err(Problems(problems))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checksum is the folded 16-bit sum plus the length, with the field itself
    /// counted as zero: worked by hand for a 0x44 + 0x5c-byte toy "image".
    #[test]
    fn checksum_arithmetic() {
        let mut img = vec![0u8; 0x60 + 4 + 20 + 64 + 8];
        img[0x3c] = 0x60; // e_lfanew
        let off = 0x60 + 4 + 20 + 64;
        img[0] = 0x34;
        img[1] = 0x12; // word 0x1234
        img[2] = 0xff;
        img[3] = 0xff; // word 0xffff: 0x1234 + 0xffff = 0x11233 -> fold -> 0x1234
        img[off..off + 4].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]); // ignored
        let expect = 0x1234 + 0x60 + img.len() as u32;
        assert_eq!(pe_checksum(&img).unwrap(), expect);
        assert!(fix_checksum(&mut img).unwrap());
        assert_eq!(
            u32::from_le_bytes(img[off..off + 4].try_into().unwrap()),
            expect
        );
        assert!(!fix_checksum(&mut img).unwrap(), "second fix is a no-op");
        // An odd trailing byte counts as the low byte of a last word.
        img.push(0x01);
        assert_eq!(pe_checksum(&img).unwrap(), expect + 1 + 1);
    }

    #[test]
    fn garbage_is_refused() {
        let lists = ExportLists::default();
        let err = check(b"MZ not really", &lists).unwrap_err();
        assert!(err.0[0].contains("not a PE32+"), "{err}");
    }
}
