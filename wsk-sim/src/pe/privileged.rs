//! Instructions a driver may execute in ring 0 that fault, or mean something else, in a user
//! process: control/debug register moves (`mov cr8` is how wsk-sys's inline
//! KeGetCurrentIrql/KeRaiseIrql/KeLowerIrql read and set the IRQL), port I/O, descriptor
//! tables, MSRs, interrupt flag, cache/TLB control, and gs:/fs: accesses (the kernel's
//! per-processor block; in a Linux process fs: is libc's TLS). The sim does not emulate
//! them: an image containing one is refused, naming each place, before anything is mapped.
//!
//! The executable sections are decoded linearly (x64 linkers keep jump tables and
//! constants in .rdata, so code sections decode as code); bytes that do not decode are
//! skipped.

use iced_x86::{Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register};

/// One refused instruction: section, offset in it, RVA and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub section: String,
    pub offset: u32,
    pub rva: u32,
    pub what: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "privileged instruction at {}+{:#x} (RVA {:#x}): {}",
            self.section, self.offset, self.rva, self.what
        )
    }
}

fn is_system_register(r: Register) -> bool {
    (Register::CR0 <= r && r <= Register::CR15)
        || (Register::DR0 <= r && r <= Register::DR15)
        || (Register::TR0 <= r && r <= Register::TR7)
}

fn why_privileged(i: &Instruction) -> Option<String> {
    use Mnemonic as M;
    for op in 0..i.op_count() {
        if i.op_kind(op) == OpKind::Register && is_system_register(i.op_register(op)) {
            return Some(format!(
                "{:?} with {:?} (control/debug register: IRQL through CR8 is not emulated)",
                i.mnemonic(),
                i.op_register(op)
            ));
        }
    }
    let m = i.mnemonic();
    let privileged = matches!(
        m,
        M::Cli
            | M::Sti
            | M::Hlt
            | M::In
            | M::Insb
            | M::Insw
            | M::Insd
            | M::Out
            | M::Outsb
            | M::Outsw
            | M::Outsd
            | M::Lgdt
            | M::Lidt
            | M::Lldt
            | M::Ltr
            | M::Lmsw
            | M::Clts
            | M::Invd
            | M::Wbinvd
            | M::Invlpg
            | M::Invpcid
            | M::Wrmsr
            | M::Rdmsr
            | M::Swapgs
            | M::Sysret
            | M::Sysexit
            | M::Xsetbv
            | M::Rdpmc
            | M::Wrfsbase
            | M::Wrgsbase
            | M::Rdfsbase
            | M::Rdgsbase
    );
    if privileged {
        return Some(format!("{m:?}"));
    }
    let has_memory = (0..i.op_count()).any(|op| i.op_kind(op) == OpKind::Memory);
    if has_memory && matches!(i.memory_segment(), Register::GS | Register::FS) {
        return Some(format!(
            "{m:?} through {:?}: (the kernel's per-processor block does not exist here)",
            i.memory_segment()
        ));
    }
    None
}

/// Decodes `code` (the bytes of section `section` at `rva`) and returns every privileged
/// instruction in it.
pub fn scan(section: &str, rva: u32, code: &[u8]) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut d = Decoder::with_ip(64, code, u64::from(rva), DecoderOptions::NONE);
    let mut i = Instruction::default();
    while d.can_decode() {
        d.decode_out(&mut i);
        if i.is_invalid() {
            continue;
        }
        if let Some(what) = why_privileged(&i) {
            let at = i.ip() as u32;
            out.push(Finding {
                section: section.to_string(),
                offset: at - rva,
                rva: at,
                what,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cr8_gs_and_port_io_and_passes_plain_code() {
        // push rbp; mov rbp,rsp; add rax,rcx; pop rbp; ret; int3 padding.
        let plain = [
            0x55, 0x48, 0x89, 0xe5, 0x48, 0x01, 0xc8, 0x5d, 0xc3, 0xcc, 0xcc,
        ];
        assert!(scan(".text", 0x1000, &plain).is_empty());
        let mut code = plain.to_vec();
        code.extend_from_slice(&[0x44, 0x0f, 0x20, 0xc0]); // mov rax, cr8  at +0xb
        code.extend_from_slice(&[0x44, 0x0f, 0x22, 0xc1]); // mov cr8, rcx  at +0xf
        code.extend_from_slice(&[0x65, 0x48, 0x8b, 0x04, 0x25, 0x88, 0x01, 0x00, 0x00]); // mov rax, gs:[0x188]
        code.extend_from_slice(&[0xec]); // in al, dx
        code.extend_from_slice(&[0xfa]); // cli
        let f = scan(".text", 0x1000, &code);
        let at: Vec<u32> = f.iter().map(|x| x.offset).collect();
        assert_eq!(at, vec![0xb, 0xf, 0x13, 0x1c, 0x1d], "{f:#?}");
        assert!(f[0].what.contains("CR8"), "{}", f[0]);
        assert_eq!(f[1].rva, 0x100f);
        assert!(f[2].what.contains("GS"), "{}", f[2]);
    }
}
