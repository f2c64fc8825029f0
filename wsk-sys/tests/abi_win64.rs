//! The callback types are the Microsoft x64 convention, not merely self-consistent: a call
//! through `PFN_WSK_SOCKET` (11 parameters, 7 of them on the stack) lands its arguments in
//! RCX, RDX, R8, R9 and the stack slots after the 32-byte shadow space, as Windows' own
//! callers and callees expect; and a Microsoft-convention call sequence written by hand
//! reaches a Rust function of that type with every argument intact. Both directions matter:
//! the sim calls the driver's callbacks (sim as caller) and the driver calls the sim's
//! provider functions (sim as callee). Under System V the first would find RDI/RSI holding
//! the arguments and the second would read them from the wrong registers.
#![cfg(target_arch = "x86_64")]
#![allow(non_snake_case, clippy::too_many_arguments)]

use std::sync::Mutex;

use wsk_sys::{
    ADDRESS_FAMILY, NTSTATUS, PEPROCESS, PETHREAD, PFN_WSK_SOCKET, PIRP, PSECURITY_DESCRIPTOR,
    PVOID, PWSK_CLIENT, ULONG, USHORT,
};

// A Microsoft-convention callee and caller, written in assembly so that neither side is
// produced by the Rust compiler whose convention is under test.
std::arch::global_asm!(
    ".globl wsk_sys_abi_probe",
    ".p2align 4",
    // Microsoft x64 callee: the first four arguments in RCX, RDX, R8, R9; at entry [rsp] is
    // the return address, [rsp+8..0x28) the caller's shadow space, then arguments 5.. .
    // Stores all 11 into wsk_sys_abi_slots and returns 0x1234 in EAX.
    "wsk_sys_abi_probe:",
    "lea rax, [rip + wsk_sys_abi_slots]",
    "mov [rax], rcx",
    "mov [rax + 0x08], rdx",
    "mov [rax + 0x10], r8",
    "mov [rax + 0x18], r9",
    "mov r10, [rsp + 0x28]",
    "mov [rax + 0x20], r10",
    "mov r10, [rsp + 0x30]",
    "mov [rax + 0x28], r10",
    "mov r10, [rsp + 0x38]",
    "mov [rax + 0x30], r10",
    "mov r10, [rsp + 0x40]",
    "mov [rax + 0x38], r10",
    "mov r10, [rsp + 0x48]",
    "mov [rax + 0x40], r10",
    "mov r10, [rsp + 0x50]",
    "mov [rax + 0x48], r10",
    "mov r10, [rsp + 0x58]",
    "mov [rax + 0x50], r10",
    "mov eax, 0x1234",
    "ret",
    ".globl wsk_sys_abi_call",
    ".p2align 4",
    // System V entry (RDI = target, RSI = pointer to 11 u64 arguments); makes a Microsoft
    // x64 call: 32 bytes of shadow space, arguments 5..11 above it, RSP 16-aligned at the
    // call. RSI/RDI are callee-saved in the Microsoft convention, so the callee keeps them.
    "wsk_sys_abi_call:",
    "push rbp",
    "mov rbp, rsp",
    "sub rsp, 0x60",
    "mov rax, [rsi + 0x20]",
    "mov [rsp + 0x20], rax",
    "mov rax, [rsi + 0x28]",
    "mov [rsp + 0x28], rax",
    "mov rax, [rsi + 0x30]",
    "mov [rsp + 0x30], rax",
    "mov rax, [rsi + 0x38]",
    "mov [rsp + 0x38], rax",
    "mov rax, [rsi + 0x40]",
    "mov [rsp + 0x40], rax",
    "mov rax, [rsi + 0x48]",
    "mov [rsp + 0x48], rax",
    "mov rax, [rsi + 0x50]",
    "mov [rsp + 0x50], rax",
    "mov rcx, [rsi]",
    "mov rdx, [rsi + 0x08]",
    "mov r8, [rsi + 0x10]",
    "mov r9, [rsi + 0x18]",
    "call rdi",
    "mov rsp, rbp",
    "pop rbp",
    "ret",
);

#[no_mangle]
static mut wsk_sys_abi_slots: [u64; 11] = [0; 11];

type WskSocketFn = unsafe extern "win64" fn(
    PWSK_CLIENT,
    ADDRESS_FAMILY,
    USHORT,
    ULONG,
    ULONG,
    PVOID,
    *const core::ffi::c_void,
    PEPROCESS,
    PETHREAD,
    PSECURITY_DESCRIPTOR,
    PIRP,
) -> NTSTATUS;

extern "sysv64" {
    fn wsk_sys_abi_probe();
    fn wsk_sys_abi_call(target: WskSocketFn, args: *const u64) -> u64;
}

/// Distinct values, each with bits in every byte the parameter type has, so a swap, a
/// truncation or an off-by-one stack slot shows.
const ARGS: [u64; 11] = [
    0x1111_2222_3333_4441,
    0x0000_0000_0000_a5c2, // ADDRESS_FAMILY (u16)
    0x0000_0000_0000_5ac3, // SocketType (u16)
    0x0000_0000_8765_4324, // Protocol (u32)
    0x0000_0000_f0e1_d2c5, // Flags (u32)
    0x6666_7777_8888_9996,
    0xaaaa_bbbb_cccc_ddd7,
    0x0102_0304_0506_0708,
    0x1020_3040_5060_7089,
    0x7fff_0000_ffff_000a,
    0x0f0f_f0f0_0f0f_f00b,
];

/// Width of each parameter of PFN_WSK_SOCKET: only these low bits are defined in a slot.
const WIDTH: [u32; 11] = [64, 16, 16, 32, 32, 64, 64, 64, 64, 64, 64];

fn mask(v: u64, bits: u32) -> u64 {
    if bits == 64 {
        v
    } else {
        v & ((1u64 << bits) - 1)
    }
}

fn call_through_pfn(f: PFN_WSK_SOCKET) -> NTSTATUS {
    let f = f.expect("callback set");
    let a = ARGS;
    // SAFETY: the target takes exactly these 11 arguments (values only; nothing dereferenced).
    unsafe {
        f(
            a[0] as PWSK_CLIENT,
            a[1] as ADDRESS_FAMILY,
            a[2] as USHORT,
            a[3] as ULONG,
            a[4] as ULONG,
            a[5] as PVOID,
            a[6] as *const core::ffi::c_void,
            a[7] as PEPROCESS,
            a[8] as PETHREAD,
            a[9] as PSECURITY_DESCRIPTOR,
            a[10] as PIRP,
        )
    }
}

static SEEN: Mutex<Option<[u64; 11]>> = Mutex::new(None);

unsafe extern "win64" fn rust_callee(
    Client: PWSK_CLIENT,
    AddressFamily: ADDRESS_FAMILY,
    SocketType: USHORT,
    Protocol: ULONG,
    Flags: ULONG,
    SocketContext: PVOID,
    Dispatch: *const core::ffi::c_void,
    OwningProcess: PEPROCESS,
    OwningThread: PETHREAD,
    SecurityDescriptor: PSECURITY_DESCRIPTOR,
    Irp: PIRP,
) -> NTSTATUS {
    *SEEN.lock().unwrap() = Some([
        Client as u64,
        u64::from(AddressFamily),
        u64::from(SocketType),
        u64::from(Protocol),
        u64::from(Flags),
        SocketContext as u64,
        Dispatch as u64,
        OwningProcess as u64,
        OwningThread as u64,
        SecurityDescriptor as u64,
        Irp as u64,
    ]);
    0x0BAD_F00D
}

/// Sim as caller: Rust calls through the wsk-sys PFN type; a hand-written Microsoft x64
/// callee reads the registers and stack slots Windows code would read.
#[test]
fn call_through_pfn_uses_microsoft_registers_and_stack() {
    // SAFETY: the probe has the Microsoft x64 signature of PFN_WSK_SOCKET (it reads 11
    // argument slots and returns a value in EAX); only the pointer type changes.
    let probe: WskSocketFn = unsafe {
        std::mem::transmute::<unsafe extern "sysv64" fn(), WskSocketFn>(wsk_sys_abi_probe)
    };
    let st = call_through_pfn(Some(probe));
    assert_eq!(st, 0x1234, "return value in EAX");
    // SAFETY: written by the probe above; tests in this file do not share the slots.
    let slots = unsafe { std::ptr::read_volatile(&raw const wsk_sys_abi_slots) };
    for i in 0..11 {
        assert_eq!(
            mask(slots[i], WIDTH[i]),
            mask(ARGS[i], WIDTH[i]),
            "argument {} of PFN_WSK_SOCKET not where the Microsoft x64 convention puts it \
             (passed {})",
            i + 1,
            if i < 4 {
                "in a register"
            } else {
                "on the stack"
            }
        );
    }
}

/// Sim as callee: a hand-written Microsoft x64 call sequence reaches a Rust function typed
/// as the wsk-sys PFN, and every argument (registers and stack) arrives.
#[test]
fn microsoft_call_sequence_reaches_pfn_callee() {
    let target: WskSocketFn = rust_callee;
    let pfn: PFN_WSK_SOCKET = Some(target);
    // SAFETY: the assembly makes a Microsoft x64 call with 11 u64 slots to `target`.
    let rax = unsafe { wsk_sys_abi_call(target, ARGS.as_ptr()) };
    assert_eq!(rax as u32, 0x0BAD_F00D, "return value in EAX");
    let seen = SEEN.lock().unwrap().expect("callee ran");
    for i in 0..11 {
        assert_eq!(
            seen[i],
            mask(ARGS[i], WIDTH[i]),
            "argument {} lost on the way in",
            i + 1
        );
    }
    // And the Rust-to-Rust call through the PFN agrees with both.
    *SEEN.lock().unwrap() = None;
    assert_eq!(call_through_pfn(pfn), 0x0BAD_F00D);
    assert_eq!(SEEN.lock().unwrap().expect("callee ran"), seen);
}
