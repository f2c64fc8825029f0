//! Runs a shipped driver image (a PE32+ .sys) inside the sim, as Windows' loader would:
//! only the bytes of the file, none of the driver crate.
//!
//! [`Image::load`] parses the file (the `pe-image` crate, shared with xtask's PE check),
//! refuses what the sim cannot run (not AMD64, sections not page-aligned, a section both
//! writable and executable, an import the sim does not provide, a privileged instruction),
//! then maps it into fresh memory, applies the base relocations for wherever that memory
//! is (never the preferred ImageBase in practice), binds every import to the sim's
//! ntoskrnl.exe / HAL.dll / NETIO.SYS stand-ins ([`stand_ins`]) and gives each section its
//! protection: executable ones R+X, writable ones R+W, the rest (and the headers) R.
//! Dropping the [`Image`] unmaps it. [`driver::ImageDriver`] then calls its entry point,
//! its dispatch routines and its unload routine as the I/O manager does.
//!
//! Both the image and the host-built driver use the Microsoft x64 convention for every
//! kernel call and callback, so the sim calls, and is called by, either the same way.

pub mod crt;
pub mod driver;
pub mod privileged;
pub mod stack;
pub mod stand_ins;

use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use pe_image::{PeImage, IMAGE_REL_BASED_ABSOLUTE, IMAGE_REL_BASED_DIR64};

const PAGE: usize = 4096;

/// Why an image was not loaded (every reason found, not just the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError(pub Vec<String>);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "image not loaded:")?;
        for p in &self.0 {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {}

/// How a load went: where, and what it took.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub base: usize,
    pub preferred_base: u64,
    pub size: usize,
    pub relocations_applied: usize,
    pub imports_bound: usize,
    /// Parse, checks, map, relocate, bind and protect.
    pub elapsed: Duration,
}

/// How to load.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// A free, page-aligned address to map at (None: wherever the OS maps fresh memory).
    pub at: Option<usize>,
    /// Bind imports through thunks that measure the image's stack depth ([`stack`]).
    pub stack_probe: bool,
}

/// A mapped, relocated, bound image. Unmapped on drop.
pub struct Image {
    base: *mut u8,
    size: usize,
    entry_rva: u32,
    report: LoadReport,
    probe: Option<Box<stack::Probe>>,
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Image")
            .field("base", &self.base)
            .field("size", &self.size)
            .field("stack_probe", &self.probe.is_some())
            .finish_non_exhaustive()
    }
}

// SAFETY: the mapping is plain memory owned by this value; the code in it synchronises its
// own data as kernel code must.
unsafe impl Send for Image {}
// SAFETY: as above; &Image only reads addresses.
unsafe impl Sync for Image {}

fn round_up(n: usize) -> usize {
    n.div_ceil(PAGE) * PAGE
}

impl Image {
    /// Loads the image file at `path` at an address the OS picks.
    pub fn load_file(path: impl AsRef<Path>) -> Result<Image, LoadError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)
            .map_err(|e| LoadError(vec![format!("cannot read {}: {e}", path.display())]))?;
        Image::load(&bytes, None)
    }

    /// Loads `bytes` at `at` (a free, page-aligned address; fails if it is taken) or, when
    /// None, wherever the OS maps fresh memory.
    pub fn load(bytes: &[u8], at: Option<usize>) -> Result<Image, LoadError> {
        Image::load_with(
            bytes,
            LoadOptions {
                at,
                stack_probe: false,
            },
        )
    }

    /// Loads `bytes` as `opts` say.
    pub fn load_with(bytes: &[u8], opts: LoadOptions) -> Result<Image, LoadError> {
        let at = opts.at;
        let t0 = Instant::now();
        let img = PeImage::parse(bytes).map_err(|e| LoadError(vec![e.to_string()]))?;
        let mut problems = Vec::new();
        let h = img.headers;
        if h.machine != pe_image::IMAGE_FILE_MACHINE_AMD64 {
            problems.push(format!("machine {:#06x}, not AMD64", h.machine));
        }
        if h.entry_point == 0 {
            problems.push("no entry point".into());
        }
        if h.section_alignment as usize & (PAGE - 1) != 0 {
            problems.push(format!(
                "SectionAlignment {:#x} is not a multiple of the page size: sections cannot \
                 get their own protections",
                h.section_alignment
            ));
        }
        if h.characteristics & pe_image::IMAGE_FILE_RELOCS_STRIPPED != 0 {
            problems.push("relocations stripped: cannot load at another base".into());
        }
        let size = round_up(h.size_of_image as usize);
        if size == 0 || (h.size_of_headers as usize) > size {
            problems.push("bad SizeOfImage/SizeOfHeaders".into());
        }
        for s in &img.sections {
            if s.writable() && s.executable() {
                problems.push(format!("section {} is writable and executable", s.name));
            }
            if s.rva as usize & (PAGE - 1) != 0 {
                problems.push(format!("section {} not page-aligned", s.name));
            }
            if s.rva as usize + s.memory_size() as usize > size {
                problems.push(format!("section {} beyond SizeOfImage", s.name));
            }
            if s.executable() {
                // The file pads raw data to FileAlignment; VirtualSize is the code's length.
                let n = match s.virtual_size as usize {
                    0 => s.data.len(),
                    v => v.min(s.data.len()),
                };
                let code = &s.data[..n];
                problems.extend(
                    privileged::scan(&s.name, s.rva, code)
                        .iter()
                        .map(ToString::to_string),
                );
            }
        }
        for r in &img.relocations {
            match r.kind {
                IMAGE_REL_BASED_ABSOLUTE => {}
                IMAGE_REL_BASED_DIR64 if (r.rva as usize) + 8 <= size => {}
                IMAGE_REL_BASED_DIR64 => {
                    problems.push(format!("relocation at RVA {:#x} beyond the image", r.rva));
                }
                k => problems.push(format!(
                    "relocation type {k} at RVA {:#x} (only DIR64 on x64)",
                    r.rva
                )),
            }
        }
        let table = stand_ins::table();
        // The run's kernel: a routine newer than it is not exported, as on that Windows.
        let build = crate::kernel::state::config().windows_build;
        let mut binds = Vec::new();
        for imp in &img.imports {
            let pe_image::ImportName::Name(name) = &imp.name else {
                problems.push(format!("import {}!{} by ordinal", imp.dll, imp.name));
                continue;
            };
            match stand_ins::find(&table, &imp.dll, name) {
                Some(a) if a.since_build > build => problems.push(format!(
                    "import {}!{name} is exported from Windows build {} on; this kernel is \
                     build {build} (Windows fails the load: STATUS_DRIVER_ENTRYPOINT_NOT_FOUND)",
                    imp.dll, a.since_build
                )),
                Some(a) if (imp.iat_rva as usize) + 8 <= size => binds.push((imp.iat_rva, *a)),
                Some(_) => {
                    problems.push(format!("IAT slot of {}!{name} beyond the image", imp.dll));
                }
                None => problems.push(format!(
                    "import {}!{name} is not provided by the sim",
                    imp.dll
                )),
            }
        }
        if !problems.is_empty() {
            return Err(LoadError(problems));
        }

        let base = map_fresh(size, at).map_err(|e| LoadError(vec![e]))?;
        let image = Image {
            base,
            size,
            entry_rva: h.entry_point,
            report: LoadReport {
                base: base as usize,
                preferred_base: h.image_base,
                size,
                relocations_applied: 0,
                imports_bound: binds.len(),
                elapsed: Duration::ZERO,
            },
            probe: None,
        };
        // From here on `image` owns the mapping: an early return unmaps it.
        let mut image = image;
        // SAFETY: `base` is a fresh RW mapping of `size` bytes; every write below is bounds-
        // checked against `size` (headers and sections above, relocations and IAT slots too).
        unsafe {
            std::ptr::copy_nonoverlapping(img.header_bytes.as_ptr(), base, img.header_bytes.len());
            for s in &img.sections {
                let n = s.data.len().min(s.memory_size() as usize);
                std::ptr::copy_nonoverlapping(s.data.as_ptr(), base.add(s.rva as usize), n);
            }
            let delta = (base as u64).wrapping_sub(h.image_base);
            for r in &img.relocations {
                if r.kind == IMAGE_REL_BASED_DIR64 {
                    let p = base.add(r.rva as usize).cast::<u64>();
                    p.write_unaligned(p.read_unaligned().wrapping_add(delta));
                    image.report.relocations_applied += 1;
                }
            }
        }
        let mut bound: Vec<usize> = binds.iter().map(|b| b.1.address).collect();
        if opts.stack_probe {
            // Functions go through a measuring thunk; variables stay bound to themselves.
            let funcs: Vec<(String, usize)> = binds
                .iter()
                .filter(|b| !b.1.data)
                .map(|b| (format!("{}!{}", b.1.dll, b.1.name), b.1.address))
                .collect();
            let (probe, thunks) =
                stack::Probe::new(base as usize, size, img.exception_directory, &funcs)
                    .map_err(|e| LoadError(vec![e]))?;
            let mut t = thunks.into_iter();
            for (b, addr) in binds.iter().zip(&mut bound) {
                if !b.1.data {
                    *addr = t.next().expect("one thunk per function");
                }
            }
            image.probe = Some(probe);
        }
        for (&(slot, _), &addr) in binds.iter().zip(&bound) {
            // SAFETY: IAT slots were checked to lie inside the mapping.
            unsafe {
                base.add(slot as usize)
                    .cast::<u64>()
                    .write_unaligned(addr as u64);
            }
        }
        // Headers and any gap read-only; then each section's own protection.
        let mut prots = vec![libc::PROT_READ; size / PAGE];
        for s in &img.sections {
            let prot = if s.executable() {
                libc::PROT_READ | libc::PROT_EXEC
            } else if s.writable() {
                libc::PROT_READ | libc::PROT_WRITE
            } else {
                libc::PROT_READ
            };
            let first = s.rva as usize / PAGE;
            let last = round_up(s.rva as usize + s.memory_size() as usize) / PAGE;
            for p in &mut prots[first..last] {
                *p = prot;
            }
        }
        for (i, &prot) in prots.iter().enumerate() {
            // SAFETY: page `i` of our own mapping.
            let rc = unsafe { libc::mprotect(base.add(i * PAGE).cast(), PAGE, prot) };
            if rc != 0 {
                return Err(LoadError(vec![format!(
                    "mprotect: {}",
                    std::io::Error::last_os_error()
                )]));
            }
        }
        image.report.elapsed = t0.elapsed();
        Ok(image)
    }

    /// Where the image is mapped.
    pub fn base(&self) -> usize {
        self.base as usize
    }

    /// Size of the mapping (SizeOfImage rounded up to pages).
    pub fn size(&self) -> usize {
        self.size
    }

    /// The entry point (DriverEntry for a driver).
    pub fn entry_point(&self) -> usize {
        self.base as usize + self.entry_rva as usize
    }

    /// Whether `addr` lies inside the mapped image.
    pub fn contains(&self, addr: usize) -> bool {
        addr >= self.base as usize && addr < self.base as usize + self.size
    }

    pub fn report(&self) -> &LoadReport {
        &self.report
    }

    /// With [`LoadOptions::stack_probe`]: the deepest stack use seen under each entry into
    /// the image (deepest first), and how many samples could not be walked.
    pub fn stack_depths(&self) -> Option<(Vec<stack::EntryDepth>, u64)> {
        self.probe.as_ref().map(|p| p.report())
    }

    /// Names the routine at `address` (inside the image) in the stack report.
    pub fn set_entry_role(&self, address: usize, role: &str) {
        if let Some(p) = &self.probe {
            p.set_role(address, role);
        }
    }

    /// A copy of the mapped bytes at `rva` (for tests: relocated values, bound slots).
    pub fn read_u64(&self, rva: usize) -> u64 {
        assert!(rva + 8 <= self.size, "read beyond the image");
        // SAFETY: in bounds; every page of the image is at least readable.
        unsafe { self.base.add(rva).cast::<u64>().read_unaligned() }
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        // SAFETY: our own mapping; nothing of the image may run any more (the owner unloads
        // the driver before dropping the image).
        unsafe { libc::munmap(self.base.cast(), self.size) };
    }
}

fn map_fresh(size: usize, at: Option<usize>) -> Result<*mut u8, String> {
    let (hint, flags) = match at {
        Some(a) if a & (PAGE - 1) != 0 => {
            return Err(format!("load address {a:#x} not page-aligned"))
        }
        Some(a) => (
            a as *mut libc::c_void,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
        ),
        None => (
            std::ptr::null_mut(),
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
        ),
    };
    // SAFETY: an anonymous private mapping; MAP_FIXED_NOREPLACE never replaces a mapping.
    let p = unsafe { libc::mmap(hint, size, libc::PROT_READ | libc::PROT_WRITE, flags, -1, 0) };
    if p == libc::MAP_FAILED {
        return Err(format!(
            "mmap of {size:#x} bytes{}: {}",
            at.map_or(String::new(), |a| format!(" at {a:#x}")),
            std::io::Error::last_os_error()
        ));
    }
    if let Some(a) = at {
        if p as usize != a {
            // Kernels before MAP_FIXED_NOREPLACE treat it as a hint.
            // SAFETY: the mapping just made.
            unsafe { libc::munmap(p, size) };
            return Err(format!("{a:#x} is taken"));
        }
    }
    Ok(p.cast())
}

#[cfg(test)]
mod tests;
