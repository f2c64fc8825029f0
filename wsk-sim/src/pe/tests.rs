//! The loader against the shipped image (target/driver/wskecho.sys, from `cargo xtask
//! driver`), and against copies of it altered to be refused.
//!
//! Without the image these tests say so and pass, unless WSKECHO_REQUIRE_IMAGE=1 (CI sets
//! it after building the image), which turns a missing image into a failure.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use super::driver::ImageDriver;
use super::*;

/// Where `cargo xtask driver` leaves the image (WSKECHO_SYS overrides).
pub(crate) fn image_path() -> std::path::PathBuf {
    std::env::var_os("WSKECHO_SYS").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/driver/wskecho.sys"),
        std::path::PathBuf::from,
    )
}

pub(crate) fn image_bytes() -> Option<Vec<u8>> {
    match std::fs::read(image_path()) {
        Ok(b) => Some(b),
        Err(e) => {
            assert!(
                std::env::var("WSKECHO_REQUIRE_IMAGE").as_deref() != Ok("1"),
                "{}: {e} (build it with `cargo xtask driver`)",
                image_path().display()
            );
            eprintln!(
                "SKIPPED: no driver image at {} ({e}); build it with `cargo xtask driver`",
                image_path().display()
            );
            None
        }
    }
}

/// Two load addresses well away from the preferred ImageBase (0x180000000) and from each
/// other, in the user half of the address space.
const BASE_A: usize = 0x5a5a_0000_0000;
const BASE_B: usize = 0x6b6b_0000_0000;
/// Two more for the test that runs the image (tests run in parallel).
const BASE_C: usize = 0x4c4c_0000_0000;
const BASE_D: usize = 0x3d3d_0000_0000;

fn maps_line(addr: usize) -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for l in maps.lines() {
        let range = l.split_whitespace().next().unwrap();
        let (a, b) = range.split_once('-').unwrap();
        let (a, b) = (
            usize::from_str_radix(a, 16).unwrap(),
            usize::from_str_radix(b, 16).unwrap(),
        );
        if (a..b).contains(&addr) {
            return l.to_string();
        }
    }
    panic!("{addr:#x} not mapped");
}

#[test]
fn maps_relocates_binds_and_protects_at_two_bases() {
    let Some(bytes) = image_bytes() else { return };
    let pe = pe_image::PeImage::parse(&bytes).unwrap();
    let a = Image::load(&bytes, Some(BASE_A)).unwrap_or_else(|e| panic!("{e}"));
    let b = Image::load(&bytes, Some(BASE_B)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((a.base(), b.base()), (BASE_A, BASE_B));
    assert_ne!(a.base() as u64, pe.headers.image_base);
    assert_eq!(a.entry_point() - a.base(), pe.headers.entry_point as usize);
    // Every DIR64 slot moved by exactly (base - ImageBase), at both bases.
    let dir64: Vec<_> = pe
        .relocations
        .iter()
        .filter(|r| r.kind == pe_image::IMAGE_REL_BASED_DIR64)
        .collect();
    assert!(!dir64.is_empty(), "the image has pointer relocations");
    assert_eq!(a.report().relocations_applied, dir64.len());
    for r in &dir64 {
        let s = pe.section_at(r.rva).unwrap();
        let off = (r.rva - s.rva) as usize;
        let file = u64::from_le_bytes(s.data[off..off + 8].try_into().unwrap());
        let target_rva = file - pe.headers.image_base;
        assert!(target_rva < u64::from(pe.headers.size_of_image), "{r:?}");
        assert_eq!(a.read_u64(r.rva as usize), BASE_A as u64 + target_rva);
        assert_eq!(b.read_u64(r.rva as usize), BASE_B as u64 + target_rva);
    }
    // Every import slot holds the sim's stand-in, data import included.
    let table = stand_ins::table();
    for imp in &pe.imports {
        let pe_image::ImportName::Name(n) = &imp.name else {
            panic!("ordinal import")
        };
        let want = stand_ins::lookup(&table, &imp.dll, n).unwrap();
        assert_eq!(a.read_u64(imp.iat_rva as usize), want as u64, "{n}");
    }
    // The Windows 10 1809 floor: ExAllocatePool2 is looked up, SeExports not used at all.
    let named = |n: &str| {
        pe.imports
            .iter()
            .any(|i| i.name == pe_image::ImportName::Name(n.into()))
    };
    assert!(named("MmGetSystemRoutineAddress") && named("ExAllocatePoolWithTag"));
    assert!(!named("ExAllocatePool2") && !named("SeExports"));
    // memcpy is bound to a Microsoft-convention routine: called through the image's own IAT
    // slot with the Microsoft convention, it copies (libc's System V memcpy would take its
    // arguments from RDI/RSI/RDX instead). Function addresses are not compared: the same
    // function may have several addresses across codegen units.
    let slot = pe
        .imports
        .iter()
        .find(|i| i.name == pe_image::ImportName::Name("memcpy".into()))
        .unwrap()
        .iat_rva as usize;
    // SAFETY: the slot holds a `memcpy(dest, src, n)` with the Microsoft x64 convention.
    let bound: unsafe extern "win64" fn(
        *mut core::ffi::c_void,
        *const core::ffi::c_void,
        usize,
    ) -> *mut core::ffi::c_void = unsafe { std::mem::transmute(a.read_u64(slot) as usize) };
    let (src, mut dst) = ([7u8, 6, 5, 4, 3, 2, 1], [0u8; 7]);
    // SAFETY: both buffers hold 7 bytes.
    let r = unsafe { bound(dst.as_mut_ptr().cast(), src.as_ptr().cast(), 7) };
    assert_eq!(
        (dst, r),
        (src, dst.as_mut_ptr().cast()),
        "memcpy through the IAT"
    );
    // Protections: code R+X, read-only data R, writable data R+W, headers R.
    for s in &pe.sections {
        let perms = maps_line(a.base() + s.rva as usize)
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string();
        let want = if s.executable() {
            "r-xp"
        } else if s.writable() {
            "rw-p"
        } else {
            "r--p"
        };
        assert_eq!(perms, want, "section {}", s.name);
    }
    assert!(maps_line(a.base()).contains(" r--p "), "headers read-only");
    drop(a);
    drop(b);
    assert!(
        !std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .contains(&format!("{BASE_A:x}-")),
        "unmapped on drop"
    );
}

/// Copies of the image altered in one way each are refused with a message that says where.
#[test]
fn refuses_missing_imports_wx_sections_and_privileged_code() {
    let Some(bytes) = image_bytes() else { return };
    let pe = pe_image::PeImage::parse(&bytes).unwrap();

    // Two imports renamed: both named, nothing loaded.
    let mut m = bytes.clone();
    for (from, to) in [
        (&b"ZwClose\0"[..], &b"ZwClosX\0"[..]),
        (b"WskRegister\0", b"WskRegistXr\0"),
    ] {
        let at = m.windows(from.len()).position(|w| w == from).unwrap();
        m[at..at + to.len()].copy_from_slice(to);
    }
    let e = Image::load(&m, None).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("ntoskrnl.exe!ZwClosX"), "{text}");
    assert!(text.contains("NETIO.SYS!WskRegistXr"), "{text}");
    assert_eq!(e.0.len(), 2, "{text}");

    // .text made writable too.
    let mut m = bytes.clone();
    let e_lfanew = u32::from_le_bytes(m[0x3c..0x40].try_into().unwrap()) as usize;
    let opt_size = u16::from_le_bytes(m[e_lfanew + 20..e_lfanew + 22].try_into().unwrap());
    let text_index = pe
        .sections
        .iter()
        .position(pe_image::Section::executable)
        .unwrap();
    let ch = e_lfanew + 24 + opt_size as usize + 40 * text_index + 36;
    let c = u32::from_le_bytes(m[ch..ch + 4].try_into().unwrap()) | pe_image::IMAGE_SCN_MEM_WRITE;
    m[ch..ch + 4].copy_from_slice(&c.to_le_bytes());
    let e = Image::load(&m, None).unwrap_err().to_string();
    assert!(e.contains("writable and executable"), "{e}");

    // `mov cr8, rcx` (KeLowerIrql's instruction) written over DriverEntry's first bytes.
    let mut m = bytes.clone();
    let text = &pe.sections[text_index];
    let off_in_text = pe.headers.entry_point - text.rva;
    let file_off = (text.file_offset + off_in_text) as usize;
    m[file_off..file_off + 4].copy_from_slice(&[0x44, 0x0f, 0x22, 0xc1]);
    let e = Image::load(&m, None).unwrap_err().to_string();
    assert!(
        e.contains(&format!("{}+{off_in_text:#x}", text.name)) && e.contains("CR8"),
        "{e}"
    );

    // The unaltered image loads (so the refusals above are the alterations').
    Image::load(&bytes, None).unwrap();
}

/// An image that imports ExAllocatePool2 statically (the shipped one with its
/// MmGetSystemRoutineAddress import renamed) loads on a 2004 kernel and is refused on 1809,
/// naming the import and both builds, as Windows refuses it there.
#[test]
fn refuses_an_import_newer_than_the_kernel() {
    let Some(bytes) = image_bytes() else { return };
    let mut m = bytes.clone();
    let (from, to) = (
        &b"MmGetSystemRoutineAddress\0"[..],
        &b"ExAllocatePool2\0"[..],
    );
    let at = m.windows(from.len()).position(|w| w == from).unwrap();
    m[at..at + to.len()].copy_from_slice(to);
    {
        let _g = crate::init(crate::Config {
            windows_build: 19041,
            ..crate::Config::default()
        });
        Image::load(&m, None).unwrap_or_else(|e| panic!("build 19041 has it: {e}"));
        assert!(crate::finish().is_empty());
    }
    let _g = crate::init(crate::Config {
        windows_build: 17763,
        ..crate::Config::default()
    });
    let e = Image::load(&m, None).unwrap_err();
    let text = e.to_string();
    assert!(
        text.contains("ntoskrnl.exe!ExAllocatePool2")
            && text.contains("build 19041")
            && text.contains("build 17763"),
        "{text}"
    );
    assert_eq!(e.0.len(), 1, "{text}");
    // The shipped image itself loads on 1809.
    Image::load(&bytes, None).unwrap_or_else(|e| panic!("{e}"));
    assert!(crate::finish().is_empty());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const REGISTRY_PATH: &str = "\\Registry\\Machine\\System\\CurrentControlSet\\Services\\wskecho";
/// CTL_CODE(0xA57E, 0x800, METHOD_BUFFERED, FILE_READ_DATA): the driver's version query.
const IOCTL_QUERY_VERSION: u32 = (0xA57E << 16) | (1 << 14) | (0x800 << 2);

/// The image runs at both bases: DriverEntry reads its Parameters, opens a TCP echo service
/// that echoes real bytes, answers an IOCTL through its MajorFunction table, and unloads
/// with nothing leaked.
#[test]
fn image_runs_at_two_bases() {
    let Some(bytes) = image_bytes() else { return };
    for base in [BASE_C, BASE_D] {
        let _g = crate::init(crate::Config::default());
        let port = free_port();
        crate::registry::set_value(
            &format!("{REGISTRY_PATH}\\Parameters"),
            "Services",
            crate::registry::RegValue::MultiSz(vec![format!("echo,tcp,{port},127.0.0.1")]),
        );
        let image = Image::load(&bytes, Some(base)).unwrap_or_else(|e| panic!("{e}"));
        let drv = ImageDriver::start(image, REGISTRY_PATH);
        assert!(
            NT_SUCCESS(drv.entry_status()),
            "DriverEntry {:#x}",
            drv.entry_status()
        );
        let t0 = Instant::now();
        let mut s = loop {
            match std::net::TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(e) if t0.elapsed() > Duration::from_secs(10) => panic!("connect: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let msg: Vec<u8> = (0..5000u32).map(|i| (i * 7 + base as u32) as u8).collect();
        s.write_all(&msg).unwrap();
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(got, msg, "echo through the image at {base:#x}");
        drop(s);
        let dev = drv.device().expect("control device");
        // SAFETY: the driver is loaded.
        let r = unsafe { dev.ioctl(IOCTL_QUERY_VERSION, &[], 64) };
        assert_eq!(r.status, 0, "{r:?}");
        assert!(r.information > 0 && !r.output.is_empty(), "{r:?}");
        let findings = drv.unload();
        assert!(findings.is_empty(), "at {base:#x}: {findings:#?}");
    }
}

use wsk_sys::NT_SUCCESS;

const BASE_E: usize = 0x2e2e_0000_0000;

/// With the stack probe, every import call is walked back to its entry with the image's
/// unwind data: every sample walks (a wrong unwinder reads outside the stack and fails),
/// and the entries the sim knows (DriverEntry, dispatch, the system thread, DriverUnload)
/// and the WSK callbacks all show up with a depth.
#[test]
fn stack_probe_walks_every_sample() {
    let Some(bytes) = image_bytes() else { return };
    let _g = crate::init(crate::Config::default());
    let port = free_port();
    crate::registry::set_value(
        &format!("{REGISTRY_PATH}\\Parameters"),
        "Services",
        crate::registry::RegValue::MultiSz(vec![
            format!("echo,tcp,{port},127.0.0.1"),
            format!("echo,udp,{port},127.0.0.1"),
        ]),
    );
    let image = Image::load_with(
        &bytes,
        LoadOptions {
            at: Some(BASE_E),
            stack_probe: true,
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let drv = ImageDriver::start(image, REGISTRY_PATH);
    assert!(NT_SUCCESS(drv.entry_status()));
    let t0 = Instant::now();
    let mut s = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) if t0.elapsed() > Duration::from_secs(10) => panic!("connect: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let msg = vec![0x5au8; 20000];
    s.write_all(&msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, msg);
    drop(s);
    // The UDP service may open after the TCP one: a datagram sent before its socket exists is
    // gone (no error reaches an unconnected socket), so ask again until it answers (bounded).
    let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut b = [0u8; 16];
    let t0 = Instant::now();
    let n = loop {
        u.send_to(b"ping", ("127.0.0.1", port)).unwrap();
        match u.recv(&mut b) {
            Ok(n) => break n,
            Err(e) if t0.elapsed() > Duration::from_secs(10) => panic!("udp echo: {e}"),
            Err(_) => {}
        }
    };
    assert_eq!(&b[..n], b"ping");
    // SAFETY: the driver is loaded.
    let r = unsafe { drv.device().unwrap().ioctl(IOCTL_QUERY_VERSION, &[], 64) };
    assert_eq!(r.status, 0);
    let (findings, stack) = drv.unload_with_stack();
    assert!(findings.is_empty(), "{findings:#?}");
    let (entries, unmeasured) = stack.expect("probe on");
    for e in &entries {
        eprintln!(
            "{:>6} bytes  {:<40} RVA {:#07x}  deepest at {} (IRQL {}), {} samples",
            e.max_bytes,
            e.role.as_deref().unwrap_or("callback / completion routine"),
            e.entry_rva,
            e.deepest_call,
            e.irql,
            e.samples
        );
    }
    assert_eq!(unmeasured, 0, "samples the unwinder could not walk");
    for role in [
        "DriverEntry",
        "DriverUnload",
        "system thread",
        "IRP_MJ_DEVICE_CONTROL dispatch",
        "IRP_MJ_CREATE/CLOSE dispatch",
    ] {
        assert!(
            entries.iter().any(|e| e.role.as_deref() == Some(role)),
            "no samples under {role}: {entries:#?}"
        );
    }
    assert!(
        entries.iter().any(|e| e.role.is_none()),
        "the WSK callbacks and completion routines were sampled"
    );
    for e in &entries {
        assert!(e.max_bytes >= 8 && e.max_bytes < 64 << 10, "{e:?}");
    }
}
