//! How deep the image's own code goes on the stack under each entry into it.
//!
//! With the probe on, every import slot is bound to a small thunk that records the stack
//! pointer at the call, then jumps to the stand-in. From there the image's frames are
//! walked up with its own unwind data (.pdata / UNWIND_INFO, as Windows' RtlVirtualUnwind
//! does) to the first return address outside the image: that frame is the entry (a
//! callback, completion routine, dispatch routine, DriverEntry, thread start, ...), and
//! the distance from its stack pointer to the call site is the depth the image used. The
//! sim's frames below the call are not counted.
//!
//! Only calls through the import table are sampled (spin locks, pool, IRPs, events,
//! memcpy/memset, logging, ...). Calls through the WSK provider's dispatch pointers and
//! leaf code below the last import call are not, so every figure is a lower bound.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// The deepest sample under one entry function.
#[derive(Debug, Clone)]
pub struct EntryDepth {
    /// RVA of the entry function (the outermost frame of the image).
    pub entry_rva: u32,
    /// What the entry is, when the sim saw it handed over (DriverEntry, a thread start
    /// routine, a DPC, ...); None for WSK event callbacks and IRP completion routines.
    pub role: Option<String>,
    pub max_bytes: usize,
    /// The import being called at the deepest point.
    pub deepest_call: String,
    /// The IRQL at the deepest point.
    pub irql: u8,
    pub samples: u64,
}

pub(crate) struct Probe {
    base: usize,
    size: usize,
    /// RUNTIME_FUNCTION entries (begin, end, unwind info), sorted by begin.
    functions: Vec<(u32, u32, u32)>,
    /// "DLL!name" per thunk index.
    imports: Vec<String>,
    entries: Mutex<BTreeMap<u32, EntryDepth>>,
    roles: Mutex<BTreeMap<u32, String>>,
    unmeasured: AtomicU64,
    thunks: usize,
    thunks_len: usize,
}

const THUNK_LEN: usize = 80;

impl Probe {
    /// Reads `.pdata` from the mapped image and builds one thunk per import (`targets`:
    /// (name, stand-in address)). Returns the probe and each import's thunk address.
    pub(crate) fn new(
        base: usize,
        size: usize,
        exception_directory: Option<(u32, u32)>,
        targets: &[(String, usize)],
    ) -> Result<(Box<Probe>, Vec<usize>), String> {
        let mut functions = Vec::new();
        if let Some((rva, len)) = exception_directory {
            if rva as usize + len as usize > size {
                return Err("exception directory beyond the image".into());
            }
            for i in 0..len as usize / 12 {
                let at = base + rva as usize + 12 * i;
                // SAFETY: inside the mapped, readable image (checked above).
                let e = unsafe {
                    (
                        (at as *const u32).read_unaligned(),
                        ((at + 4) as *const u32).read_unaligned(),
                        ((at + 8) as *const u32).read_unaligned(),
                    )
                };
                functions.push(e);
            }
        }
        functions.sort_unstable();
        let thunks_len = (targets.len() * THUNK_LEN).div_ceil(4096).max(1) * 4096;
        // SAFETY: a fresh anonymous RW mapping.
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                thunks_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if page == libc::MAP_FAILED {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        let probe = Box::new(Probe {
            base,
            size,
            functions,
            imports: targets.iter().map(|t| t.0.clone()).collect(),
            entries: Mutex::new(BTreeMap::new()),
            roles: Mutex::new(BTreeMap::new()),
            unmeasured: AtomicU64::new(0),
            thunks: page as usize,
            thunks_len,
        });
        let mut addrs = Vec::new();
        for (i, (_, target)) in targets.iter().enumerate() {
            let code = thunk(
                &raw const *probe as u64,
                i as u64,
                record as *const () as u64,
                *target as u64,
            );
            let at = page as usize + i * THUNK_LEN;
            // SAFETY: inside the RW mapping made above.
            unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), at as *mut u8, code.len()) };
            addrs.push(at);
        }
        // SAFETY: our mapping; from now on it is code only.
        if unsafe { libc::mprotect(page, thunks_len, libc::PROT_READ | libc::PROT_EXEC) } != 0 {
            return Err(format!("mprotect: {}", std::io::Error::last_os_error()));
        }
        Ok((probe, addrs))
    }

    pub(crate) fn set_role(&self, address: usize, role: &str) {
        if address >= self.base && address < self.base + self.size {
            self.roles
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert((address - self.base) as u32, role.to_string());
        }
    }

    /// Every entry seen, deepest first, and the number of samples that could not be walked.
    pub(crate) fn report(&self) -> (Vec<EntryDepth>, u64) {
        let roles = self.roles.lock().unwrap_or_else(PoisonError::into_inner);
        let mut v: Vec<EntryDepth> = self
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .map(|mut e| {
                e.role = roles.get(&e.entry_rva).cloned();
                e
            })
            .collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.max_bytes));
        (v, self.unmeasured.load(Ordering::Relaxed))
    }

    fn function_at(&self, rva: u32) -> Option<(u32, u32, u32)> {
        let i = self.functions.partition_point(|f| f.0 <= rva);
        let f = *self.functions.get(i.checked_sub(1)?)?;
        (rva < f.1).then_some(f)
    }

    fn image_u8s(&self, rva: u32, n: usize) -> Option<&[u8]> {
        if rva as usize + n > self.size {
            return None;
        }
        // SAFETY: inside the mapped image, which outlives the probe's use.
        Some(unsafe { std::slice::from_raw_parts((self.base + rva as usize) as *const u8, n) })
    }

    /// Applies one function's unwind codes (and its chained ones) to (rsp, rbp): the
    /// stack pointer just above its frame, where its return address is.
    fn unwind_frame(
        &self,
        unwind_rva: u32,
        mut rsp: usize,
        mut rbp: u64,
        read: &dyn Fn(usize) -> Option<u64>,
    ) -> Option<(usize, u64)> {
        const RBP: u8 = 5;
        let mut info = unwind_rva;
        for _ in 0..8 {
            let h = self.image_u8s(info, 4)?;
            let (flags, count, frame_reg, frame_off) =
                (h[0] >> 3, h[2] as usize, h[3] & 0xf, (h[3] >> 4) as usize);
            let codes = self.image_u8s(info + 4, count * 2)?;
            let slot = |i: usize| -> Option<usize> {
                let b = codes.get(2 * i..2 * i + 2)?;
                Some(usize::from(u16::from_le_bytes([b[0], b[1]])))
            };
            let mut i = 0;
            while i < count {
                let (op, op_info) = (codes[2 * i + 1] & 0xf, codes[2 * i + 1] >> 4);
                match op {
                    // UWOP_PUSH_NONVOL
                    0 => {
                        if op_info == RBP {
                            rbp = read(rsp)?;
                        }
                        rsp += 8;
                        i += 1;
                    }
                    // UWOP_ALLOC_LARGE
                    1 if op_info == 0 => {
                        rsp += slot(i + 1)? * 8;
                        i += 2;
                    }
                    1 => {
                        rsp += slot(i + 1)? | (slot(i + 2)? << 16);
                        i += 3;
                    }
                    // UWOP_ALLOC_SMALL
                    2 => {
                        rsp += usize::from(op_info) * 8 + 8;
                        i += 1;
                    }
                    // UWOP_SET_FPREG: the frame register holds rsp + 16 * offset.
                    3 if frame_reg == RBP => {
                        rsp = (rbp as usize).checked_sub(16 * frame_off)?;
                        i += 1;
                    }
                    // UWOP_SAVE_NONVOL / _FAR
                    4 => {
                        if op_info == RBP {
                            rbp = read(rsp + slot(i + 1)? * 8)?;
                        }
                        i += 2;
                    }
                    5 => {
                        if op_info == RBP {
                            rbp = read(rsp + (slot(i + 1)? | (slot(i + 2)? << 16)))?;
                        }
                        i += 3;
                    }
                    // UWOP_SAVE_XMM128 / _FAR: no effect on rsp or rbp.
                    8 => i += 2,
                    9 => i += 3,
                    _ => return None,
                }
            }
            if flags & 4 == 0 {
                return Some((rsp, rbp));
            }
            // UNW_FLAG_CHAININFO: a RUNTIME_FUNCTION follows the (even-padded) codes.
            let chained = self.image_u8s(info + 4 + ((count + 1) & !1) as u32 * 2, 12)?;
            info = u32::from_le_bytes(chained[8..12].try_into().ok()?);
        }
        None
    }

    /// From a thunk's stack pointer (pointing at the image's return address), the entry
    /// function's RVA and the bytes of stack the image used under it.
    fn walk(&self, rsp0: usize, rbp0: u64) -> Option<(u32, usize)> {
        let hi = stack_top();
        if hi == 0 {
            return None;
        }
        let read = |a: usize| -> Option<u64> {
            // SAFETY: an aligned address of this thread's stack, between the probe's own
            // stack pointer and the top of the stack.
            (a >= rsp0 && a + 8 <= hi && a.trailing_zeros() >= 3)
                .then(|| unsafe { (a as *const u64).read() })
        };
        let mut rsp = rsp0;
        let mut rbp = rbp0;
        let mut pc = read(rsp)? as usize;
        rsp += 8;
        let mut entry = None;
        for _ in 0..256 {
            if pc < self.base || pc >= self.base + self.size {
                // `rsp - 8` held the return address into the sim: the image's entry rsp.
                return Some((entry?, rsp - 8 - rsp0));
            }
            let rva = (pc - self.base) as u32;
            match self.function_at(rva.checked_sub(1)?) {
                Some((begin, _, unwind)) => {
                    entry = Some(begin);
                    (rsp, rbp) = self.unwind_frame(unwind, rsp, rbp, &read)?;
                }
                // A leaf function (no unwind data): its return address is at rsp.
                None => entry = Some(rva),
            }
            pc = read(rsp)? as usize;
            rsp += 8;
        }
        None
    }

    fn record(&self, rsp0: usize, rbp: u64, index: usize) {
        let Some((entry, depth)) = self.walk(rsp0, rbp) else {
            self.unmeasured.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let irql = crate::current_irql();
        let call = self.imports.get(index).map_or("?", String::as_str);
        // Routines handed to the kernel: their role is known from the call.
        let arg = |n: usize| -> usize {
            // SAFETY: the thunk pushed RCX, RDX, R8, R9 just below rsp0; arguments 5.. are
            // in the caller's frame above the shadow space.
            unsafe {
                match n {
                    1..=4 => ((rsp0 - 8 * n) as *const usize).read(),
                    _ => ((rsp0 + 8 + 8 * (n - 1)) as *const usize).read(),
                }
            }
        };
        match call {
            "ntoskrnl.exe!PsCreateSystemThread" => self.set_role(arg(6), "system thread"),
            "ntoskrnl.exe!IoQueueWorkItem" => self.set_role(arg(2), "work item"),
            "ntoskrnl.exe!KeInitializeDpc" => self.set_role(arg(2), "DPC"),
            _ => {}
        }
        let mut e = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let d = e.entry(entry).or_insert_with(|| EntryDepth {
            entry_rva: entry,
            role: None,
            max_bytes: 0,
            deepest_call: String::new(),
            irql,
            samples: 0,
        });
        d.samples += 1;
        if depth > d.max_bytes {
            d.max_bytes = depth;
            d.deepest_call = call.to_string();
            d.irql = irql;
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        // SAFETY: the thunk mapping made in `new`; the image is unmapped first.
        unsafe { libc::munmap(self.thunks as *mut libc::c_void, self.thunks_len) };
    }
}

/// Called by every thunk (Microsoft x64 convention, from the assembly below).
unsafe extern "win64" fn record(rsp0: usize, rbp: u64, probe: *const Probe, index: usize) {
    // SAFETY: the thunks hold the probe's address, alive while the image is mapped.
    let p = unsafe { &*probe };
    p.record(rsp0, rbp, index);
}

/// One thunk: save the argument registers, call `record(rsp at entry, rbp, probe, index)`
/// with the Microsoft convention (shadow space, 16-byte alignment), restore, jump on.
fn thunk(probe: u64, index: u64, recorder: u64, target: u64) -> Vec<u8> {
    let mut c = vec![
        0x51, // push rcx
        0x52, // push rdx
        0x41, 0x50, // push r8
        0x41, 0x51, // push r9
        0x48, 0x8d, 0x4c, 0x24, 0x20, // lea rcx, [rsp+0x20]
        0x48, 0x89, 0xea, // mov rdx, rbp
        0x49, 0xb8, // mov r8, imm64
    ];
    c.extend_from_slice(&probe.to_le_bytes());
    c.extend_from_slice(&[0x49, 0xb9]); // mov r9, imm64
    c.extend_from_slice(&index.to_le_bytes());
    c.extend_from_slice(&[0x48, 0x83, 0xec, 0x28]); // sub rsp, 0x28
    c.extend_from_slice(&[0x48, 0xb8]); // mov rax, imm64
    c.extend_from_slice(&recorder.to_le_bytes());
    c.extend_from_slice(&[0xff, 0xd0]); // call rax
    c.extend_from_slice(&[0x48, 0x83, 0xc4, 0x28]); // add rsp, 0x28
    c.extend_from_slice(&[0x41, 0x59, 0x41, 0x58, 0x5a, 0x59]); // pop r9, r8, rdx, rcx
    c.extend_from_slice(&[0x48, 0xb8]); // mov rax, imm64
    c.extend_from_slice(&target.to_le_bytes());
    c.extend_from_slice(&[0xff, 0xe0]); // jmp rax
    debug_assert!(c.len() <= THUNK_LEN);
    c
}

thread_local! {
    static STACK_TOP: Cell<usize> = const { Cell::new(0) };
}

/// The highest address of this thread's stack (0 if unknown).
fn stack_top() -> usize {
    STACK_TOP.with(|t| {
        if t.get() == 0 {
            // SAFETY: pthread_getattr_np fills `attr` for the calling thread; destroyed after.
            unsafe {
                let mut attr: libc::pthread_attr_t = std::mem::zeroed();
                if libc::pthread_getattr_np(libc::pthread_self(), &raw mut attr) == 0 {
                    let mut addr: *mut libc::c_void = std::ptr::null_mut();
                    let mut size: libc::size_t = 0;
                    if libc::pthread_attr_getstack(&raw const attr, &raw mut addr, &raw mut size)
                        == 0
                    {
                        t.set(addr as usize + size);
                    }
                    libc::pthread_attr_destroy(&raw mut attr);
                }
            }
        }
        t.get()
    })
}
