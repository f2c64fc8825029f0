//! One reading of a PE32+ (x64) image, on top of the `object` crate, for the two programs
//! that look inside wskecho.sys: xtask's driver check (is this a loadable kernel driver?)
//! and wsk-sim's loader (map it, relocate it, bind its imports, run it). Both see the same
//! headers, sections, imports, exports and base relocations, so a parsing fix lands once.
//!
//! Everything is read up front by [`PeImage::parse`] into plain owned values; malformed
//! tables are errors, never panics.

use std::fmt;

use object::pe;
use object::read::pe::{ImageNtHeaders, ImageOptionalHeader, Import as ObjImport, PeFile64};
use object::LittleEndian as LE;

pub use object::pe::{
    IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE, IMAGE_DLLCHARACTERISTICS_NX_COMPAT,
    IMAGE_FILE_MACHINE_AMD64, IMAGE_FILE_RELOCS_STRIPPED, IMAGE_REL_BASED_ABSOLUTE,
    IMAGE_REL_BASED_DIR64, IMAGE_SCN_CNT_UNINITIALIZED_DATA, IMAGE_SCN_MEM_EXECUTE,
    IMAGE_SCN_MEM_READ, IMAGE_SCN_MEM_WRITE, IMAGE_SUBSYSTEM_NATIVE,
};

/// A parse failure: what could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<object::Error> for Error {
    fn from(e: object::Error) -> Self {
        Error(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// The file and optional header fields the checker and the loader use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Headers {
    pub machine: u16,
    /// IMAGE_FILE_HEADER.Characteristics.
    pub characteristics: u16,
    pub subsystem: u16,
    pub dll_characteristics: u16,
    /// RVA of the entry point (0: none).
    pub entry_point: u32,
    /// The preferred load address.
    pub image_base: u64,
    pub size_of_image: u32,
    pub size_of_headers: u32,
    pub section_alignment: u32,
    pub check_sum: u32,
}

/// One section header, with its bytes from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    /// RVA of the first byte.
    pub rva: u32,
    /// Size in memory (bytes past the file data are zero).
    pub virtual_size: u32,
    /// File offset of the raw data.
    pub file_offset: u32,
    /// Raw data from the file (SizeOfRawData bytes, possibly more or fewer than virtual_size).
    pub data: Vec<u8>,
    /// IMAGE_SCN_* flags.
    pub characteristics: u32,
}

impl Section {
    pub fn readable(&self) -> bool {
        self.characteristics & IMAGE_SCN_MEM_READ != 0
    }
    pub fn writable(&self) -> bool {
        self.characteristics & IMAGE_SCN_MEM_WRITE != 0
    }
    pub fn executable(&self) -> bool {
        self.characteristics & IMAGE_SCN_MEM_EXECUTE != 0
    }
    /// Bytes the section occupies in memory: the larger of VirtualSize and SizeOfRawData
    /// (linkers leave VirtualSize 0 in some object-style images).
    pub fn memory_size(&self) -> u32 {
        self.virtual_size.max(self.data.len() as u32)
    }
}

/// How an import names what it wants.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ImportName {
    Name(String),
    Ordinal(u16),
}

impl fmt::Display for ImportName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportName::Name(n) => f.write_str(n),
            ImportName::Ordinal(o) => write!(f, "#{o}"),
        }
    }
}

/// One imported function or variable and the import-address-table slot the loader fills.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    /// The DLL as the image spells it (Windows matches it case-insensitively).
    pub dll: String,
    pub name: ImportName,
    /// RVA of its 8-byte IAT slot.
    pub iat_rva: u32,
}

/// One base relocation: the RVA it patches and its IMAGE_REL_BASED_* type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relocation {
    pub rva: u32,
    pub kind: u16,
}

/// One exported name (or `#ordinal`) and its RVA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub name: String,
    pub rva: u32,
}

/// A parsed PE32+ image.
#[derive(Debug, Clone)]
pub struct PeImage {
    pub headers: Headers,
    /// The header bytes (SizeOfHeaders) as in the file.
    pub header_bytes: Vec<u8>,
    pub sections: Vec<Section>,
    pub imports: Vec<Import>,
    pub exports: Vec<Export>,
    pub relocations: Vec<Relocation>,
    /// A TLS directory is present (non-empty).
    pub has_tls: bool,
    /// A delay-load import directory is present (non-empty).
    pub has_delay_imports: bool,
    /// The exception directory (.pdata: RUNTIME_FUNCTION entries), as (RVA, size).
    pub exception_directory: Option<(u32, u32)>,
}

impl PeImage {
    /// Reads every table of a PE32+ image.
    pub fn parse(data: &[u8]) -> Result<PeImage> {
        let file = PeFile64::parse(data).map_err(|e| Error(format!("not a PE32+ image: {e}")))?;
        let nt = file.nt_headers();
        let opt = nt.optional_header();
        let headers = Headers {
            machine: nt.file_header().machine.get(LE),
            characteristics: nt.file_header().characteristics.get(LE),
            subsystem: opt.subsystem(),
            dll_characteristics: opt.dll_characteristics(),
            entry_point: opt.address_of_entry_point(),
            image_base: opt.image_base(),
            size_of_image: opt.size_of_image(),
            size_of_headers: opt.size_of_headers(),
            section_alignment: opt.section_alignment(),
            check_sum: opt.check_sum(),
        };
        let header_bytes = data
            .get(..headers.size_of_headers as usize)
            .ok_or_else(|| Error("SizeOfHeaders beyond the end of the file".into()))?
            .to_vec();
        let mut sections = Vec::new();
        for s in file.section_table().iter() {
            let (off, size) = s.pe_file_range();
            let bytes = data
                .get(off as usize..(off as usize).saturating_add(size as usize))
                .ok_or_else(|| {
                    Error(format!(
                        "section {} raw data beyond the end of the file",
                        String::from_utf8_lossy(s.raw_name())
                    ))
                })?;
            sections.push(Section {
                name: String::from_utf8_lossy(s.raw_name()).into_owned(),
                rva: s.virtual_address.get(LE),
                virtual_size: s.virtual_size.get(LE),
                file_offset: off,
                data: bytes.to_vec(),
                characteristics: s.characteristics.get(LE),
            });
        }
        let dir_present = |i: usize| {
            file.data_directory(i)
                .is_some_and(|d| d.virtual_address.get(LE) != 0 || d.size.get(LE) != 0)
        };
        Ok(PeImage {
            headers,
            header_bytes,
            imports: read_imports(&file).map_err(|e| Error(format!("bad import table: {e}")))?,
            exports: read_exports(&file).map_err(|e| Error(format!("bad export table: {e}")))?,
            relocations: read_relocations(&file)
                .map_err(|e| Error(format!("bad base relocations: {e}")))?,
            sections,
            has_tls: dir_present(pe::IMAGE_DIRECTORY_ENTRY_TLS),
            has_delay_imports: file
                .data_directory(pe::IMAGE_DIRECTORY_ENTRY_DELAY_IMPORT)
                .is_some_and(|d| d.size.get(LE) != 0),
            exception_directory: file
                .data_directory(pe::IMAGE_DIRECTORY_ENTRY_EXCEPTION)
                .map(|d| (d.virtual_address.get(LE), d.size.get(LE)))
                .filter(|&(a, n)| a != 0 && n != 0),
        })
    }

    /// The section holding `rva`, if any.
    pub fn section_at(&self, rva: u32) -> Option<&Section> {
        self.sections
            .iter()
            .find(|s| rva >= s.rva && rva - s.rva < s.memory_size())
    }
}

fn read_imports(file: &PeFile64<'_>) -> object::Result<Vec<Import>> {
    let mut out = Vec::new();
    let Some(table) = file.import_table()? else {
        return Ok(out);
    };
    let mut descs = table.descriptors()?;
    while let Some(desc) = descs.next()? {
        let dll = String::from_utf8_lossy(table.name(desc.name.get(LE))?).into_owned();
        let iat = desc.first_thunk.get(LE);
        // The lookup table (OriginalFirstThunk) names the imports; an image without one
        // names them in the IAT itself, before binding.
        let lookup = match desc.original_first_thunk.get(LE) {
            0 => iat,
            n => n,
        };
        let mut thunks = table.thunks(lookup)?;
        let mut index = 0u32;
        while let Some(thunk) = thunks.next::<pe::ImageNtHeaders64>()? {
            let name = match table.import::<pe::ImageNtHeaders64>(thunk)? {
                ObjImport::Ordinal(o) => ImportName::Ordinal(o),
                ObjImport::Name(_, n) => ImportName::Name(String::from_utf8_lossy(n).into_owned()),
            };
            out.push(Import {
                dll: dll.clone(),
                name,
                iat_rva: iat + 8 * index,
            });
            index += 1;
        }
    }
    Ok(out)
}

fn read_exports(file: &PeFile64<'_>) -> object::Result<Vec<Export>> {
    let Some(table) = file.export_table()? else {
        return Ok(Vec::new());
    };
    Ok(table
        .exports()?
        .into_iter()
        .map(|e| Export {
            name: e.name.map_or_else(
                || format!("#{}", e.ordinal),
                |n| String::from_utf8_lossy(n).into_owned(),
            ),
            rva: match e.target {
                object::read::pe::ExportTarget::Address(a) => a,
                _ => 0,
            },
        })
        .collect())
}

fn read_relocations(file: &PeFile64<'_>) -> object::Result<Vec<Relocation>> {
    let mut out = Vec::new();
    let Some(mut blocks) = file
        .data_directories()
        .relocation_blocks(file.data(), &file.section_table())?
    else {
        return Ok(out);
    };
    while let Some(block) = blocks.next()? {
        out.extend(block.map(|r| Relocation {
            rva: r.virtual_address,
            kind: r.typ,
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"MZ",
            b"MZ not really a PE image at all............",
        ] {
            let e = PeImage::parse(bytes).unwrap_err();
            assert!(e.0.contains("not a PE32+"), "{e}");
        }
    }
}
