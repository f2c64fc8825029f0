//! The provider's table of client registrations: each WSK_REGISTRATION block, its client
//! token, captures, static event mask and cached security descriptors.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use wsk_sys::WSK_CLIENT_DISPATCH;

pub(crate) const REG_MAGIC: u64 = 0x5753_4B53_494D_5245; // "WSKSIMRE"

pub(crate) struct Reg {
    pub client_token: usize,
    pub context: usize,
    pub dispatch: usize,
    pub dispatch_copy: WSK_CLIENT_DISPATCH,
    pub captures: usize,
    pub deregistering: bool,
    pub static_mask: u32,
    pub sockets_created: usize,
    pub cached_sds: HashSet<usize>,
    pub list_change_irps: Vec<usize>,
}

#[derive(Default)]
pub(crate) struct Regs {
    pub by_block: HashMap<usize, Reg>,
    pub by_token: HashMap<usize, usize>,
    pub start: Option<Instant>,
}

static REGS: Mutex<Option<Regs>> = Mutex::new(None);

pub(crate) fn with<R>(f: impl FnOnce(&mut Regs) -> R) -> R {
    let mut g: MutexGuard<'_, _> = REGS.lock().unwrap_or_else(PoisonError::into_inner);
    f(g.get_or_insert_with(Regs::default))
}

pub(crate) fn start_run() {
    with(|r| r.start = Some(Instant::now()));
    crate::kernel::device::init_se_exports();
}

pub(crate) fn reset() {
    with(|r| {
        r.by_block.clear();
        r.by_token.clear();
    });
}

pub(crate) fn leaked() -> Vec<String> {
    with(|r| {
        let mut v = Vec::new();
        for (blk, reg) in &r.by_block {
            v.push(format!("WSK registration {blk:#x} not deregistered"));
            if reg.captures > 0 {
                v.push(format!(
                    "WSK registration {blk:#x}: {} provider NPI capture(s) not released",
                    reg.captures
                ));
            }
            for sd in &reg.cached_sds {
                v.push(format!(
                    "cached security descriptor {sd:#x} not released with WSK_RELEASE_SD"
                ));
            }
        }
        v
    })
}

pub(crate) fn captures() -> usize {
    with(|r| r.by_block.values().map(|x| x.captures).sum())
}

/// Runs `f` on the registration that owns a `PWSK_CLIENT` token.
pub(crate) fn with_client<R>(client: usize, f: impl FnOnce(&mut Reg) -> R) -> Option<R> {
    with(|r| {
        let blk = *r.by_token.get(&client)?;
        r.by_block.get_mut(&blk).map(f)
    })
}

/// W6: client-level dispatch calls need a live capture.
pub(crate) fn check_client(client: usize, call: &str) -> bool {
    match with_client(client, |r| r.captures) {
        None => {
            crate::kernel::state::violation(format!(
                "{call}: Client {client:#x} is not a captured WSK provider NPI"
            ));
            false
        }
        Some(0) => {
            crate::kernel::state::violation(format!(
                "{call} called after WskReleaseProviderNPI released every capture (W6)"
            ));
            false
        }
        Some(_) => true,
    }
}
