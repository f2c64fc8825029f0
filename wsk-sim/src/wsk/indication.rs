//! Receive indications: provider memory (data, MDL chains, list nodes) handed to
//! WskReceiveEvent / WskReceiveFromEvent, retained on STATUS_PENDING until WskRelease, and
//! poisoned when released.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use wsk_sys::{
    MDL_PAGES_LOCKED, MDL_SOURCE_IS_NONPAGED_POOL, PMDL, WSK_BUF, WSK_DATAGRAM_INDICATION,
    WSK_DATA_INDICATION,
};

use super::addr::SockaddrBuf;

/// Fill of released indication data.
pub const RELEASED_POISON: u8 = 0xFE;
/// Bytes before the payload inside the first MDL (WSK_BUF.Offset is not zero).
const LEAD: usize = 7;

/// One indication list with everything it points to.
pub(crate) struct Block {
    pub socket: usize,
    data: Vec<Vec<u8>>,
    mdls: Vec<PMDL>,
    stream_nodes: Vec<WSK_DATA_INDICATION>,
    dgram_nodes: Vec<WSK_DATAGRAM_INDICATION>,
    addrs: Vec<SockaddrBuf>,
    released: Vec<bool>,
    pub bytes: usize,
}

// SAFETY: the raw pointers only point into the block's own heap allocations.
unsafe impl Send for Block {}

impl Block {
    pub(crate) fn head_stream(&mut self) -> *mut WSK_DATA_INDICATION {
        self.stream_nodes.as_mut_ptr()
    }
    pub(crate) fn head_dgram(&mut self) -> *mut WSK_DATAGRAM_INDICATION {
        self.dgram_nodes.as_mut_ptr()
    }
    fn node_addrs(&self) -> Vec<usize> {
        if self.stream_nodes.is_empty() {
            self.dgram_nodes
                .iter()
                .map(|n| std::ptr::from_ref(n) as usize)
                .collect()
        } else {
            self.stream_nodes
                .iter()
                .map(|n| std::ptr::from_ref(n) as usize)
                .collect()
        }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        for d in &mut self.data {
            d.fill(RELEASED_POISON);
        }
        for m in self.mdls.drain(..) {
            crate::kernel::mdl::free_mdl(m, "indication release");
        }
    }
}

/// Tiny MDLs per indication at most (`Config::tiny_mdl_rate`): enough to cross every
/// boundary a client's parser has, few enough to stay cheap.
const TINY_PIECES: usize = 32;

/// Builds an MDL chain over `buf`, payload starting at LEAD, split in up to 3 MDLs (or in
/// 1-3 byte ones).
fn chain(buf: &mut [u8], payload: usize, mdls: &mut Vec<PMDL>) -> WSK_BUF {
    if payload == 0 {
        return WSK_BUF {
            Mdl: std::ptr::null_mut(),
            Offset: 0,
            Length: 0,
        };
    }
    let cfg = crate::kernel::state::config();
    let mut cuts = vec![0usize];
    if cfg.tiny_mdl_rate > 0.0 && crate::kernel::schedule::chance(cfg.tiny_mdl_rate) {
        // 1-3 byte MDLs (up to TINY_PIECES of them, the rest in one).
        let mut at = 0;
        while cuts.len() <= TINY_PIECES {
            at += crate::kernel::schedule::range(1, 3);
            if at >= payload {
                break;
            }
            cuts.push(at);
        }
    } else {
        let pieces = crate::kernel::schedule::range(1, 3).min(payload);
        for i in 1..pieces {
            cuts.push(payload * i / pieces);
        }
    }
    cuts.push(payload);
    let unmapped = cfg.unmapped_mdl_rate > 0.0;
    let mut head: PMDL = std::ptr::null_mut();
    let mut prev: PMDL = std::ptr::null_mut();
    for w in cuts.windows(2) {
        let (start, len) = if w[0] == 0 {
            (0, LEAD + w[1])
        } else {
            (LEAD + w[0], w[1] - w[0])
        };
        // SAFETY: start+len lies within `buf` (LEAD + payload bytes).
        let va = unsafe { buf.as_mut_ptr().add(start) };
        let m = crate::kernel::mdl::alloc_mdl(va.cast(), len as u32, false);
        // SAFETY: a fresh MDL of ours: mapped non-paged memory, or (unmapped_mdl_rate) locked
        // pages not mapped yet, which the client maps with MmGetSystemAddressForMdlSafe.
        unsafe {
            if unmapped && crate::kernel::schedule::chance(cfg.unmapped_mdl_rate) {
                (*m).MappedSystemVa = std::ptr::null_mut();
                (*m).MdlFlags |= MDL_PAGES_LOCKED;
            } else {
                (*m).MappedSystemVa = va.cast();
                (*m).MdlFlags |= MDL_SOURCE_IS_NONPAGED_POOL;
            }
            if prev.is_null() {
                head = m;
            } else {
                (*prev).Next = m;
            }
        }
        prev = m;
        mdls.push(m);
    }
    WSK_BUF {
        Mdl: head,
        Offset: LEAD as u32,
        Length: payload,
    }
}

fn buffer_for(payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0xA5u8; LEAD + payload.len()];
    b[LEAD..].copy_from_slice(payload);
    b
}

/// A stream indication list over `chunks` (one WSK_DATA_INDICATION per chunk).
pub(crate) fn stream(socket: usize, chunks: &[Vec<u8>]) -> Box<Block> {
    let mut b = Box::new(Block {
        socket,
        data: Vec::new(),
        mdls: Vec::new(),
        stream_nodes: Vec::with_capacity(chunks.len()),
        dgram_nodes: Vec::new(),
        addrs: Vec::new(),
        released: vec![false; chunks.len()],
        bytes: chunks.iter().map(Vec::len).sum(),
    });
    for c in chunks {
        b.data.push(buffer_for(c));
    }
    for i in 0..chunks.len() {
        let len = chunks[i].len();
        let mut mdls = std::mem::take(&mut b.mdls);
        let buf = chain(&mut b.data[i], len, &mut mdls);
        b.mdls = mdls;
        b.stream_nodes.push(WSK_DATA_INDICATION {
            Next: std::ptr::null_mut(),
            Buffer: buf,
        });
    }
    let base = b.stream_nodes.as_mut_ptr();
    for i in 1..chunks.len() {
        // SAFETY: both indices are in bounds; the Vec never reallocates after this.
        unsafe { (*base.add(i - 1)).Next = base.add(i) };
    }
    b
}

/// A datagram indication list, one node per datagram.
pub(crate) fn datagrams(socket: usize, dgrams: &[(Vec<u8>, SocketAddr)]) -> Box<Block> {
    let mut b = Box::new(Block {
        socket,
        data: Vec::new(),
        mdls: Vec::new(),
        stream_nodes: Vec::new(),
        dgram_nodes: Vec::with_capacity(dgrams.len()),
        addrs: dgrams.iter().map(|(_, a)| SockaddrBuf::new(*a)).collect(),
        released: vec![false; dgrams.len()],
        bytes: dgrams.iter().map(|(d, _)| d.len()).sum(),
    });
    for (d, _) in dgrams {
        b.data.push(buffer_for(d));
    }
    for i in 0..dgrams.len() {
        let len = dgrams[i].0.len();
        let mut mdls = std::mem::take(&mut b.mdls);
        let buf = chain(&mut b.data[i], len, &mut mdls);
        b.mdls = mdls;
        let addr = b.addrs[i].as_ptr();
        b.dgram_nodes.push(WSK_DATAGRAM_INDICATION {
            Next: std::ptr::null_mut(),
            Buffer: buf,
            ControlInfo: std::ptr::null_mut(),
            ControlInfoLength: 0,
            RemoteAddress: addr,
        });
    }
    let base = b.dgram_nodes.as_mut_ptr();
    for i in 1..dgrams.len() {
        // SAFETY: both indices are in bounds; the Vec never reallocates after this.
        unsafe { (*base.add(i - 1)).Next = base.add(i) };
    }
    b
}

// ---------------------------------------------------------------------------------------
// Retained lists

#[derive(Default)]
struct Retained {
    next_id: u64,
    blocks: HashMap<u64, Box<Block>>,
    /// Node address -> (block id, node index).
    nodes: HashMap<usize, (u64, usize)>,
    /// Recently released blocks, poisoned and kept before their memory is reused.
    quarantine: VecDeque<Box<Block>>,
    /// Node addresses of released lists (for "double release" messages).
    released_nodes: VecDeque<usize>,
    /// Nodes of lists whose receive callback is running right now, on which thread, and
    /// that thread's kernel-call counter.
    in_callback: HashMap<usize, (std::thread::ThreadId, Arc<AtomicU64>)>,
    /// WskRelease calls from other threads on lists whose callback the provider has not
    /// seen return yet: (head, socket, stream, the callback thread's kernel calls then).
    /// The callback may already have returned STATUS_PENDING (the provider thread can be
    /// preempted right after the return; a client's last reference may go just before it),
    /// so they are applied when its return is recorded, unless the callback entered the
    /// kernel again after the release: then it was still running (W55/W68, G22).
    early_releases: Vec<(usize, usize, bool, u64)>,
}

static RETAINED: Mutex<Option<Retained>> = Mutex::new(None);

/// WskRelease calls applied although they came in from another thread before the provider saw
/// the list's callback return (G22: after the callback's last kernel call), this run.
static EARLY_APPLIED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many releases [`EARLY_APPLIED`] counts so far this run.
pub(crate) fn early_releases_applied() -> u64 {
    EARLY_APPLIED.load(Ordering::SeqCst)
}

fn with<R>(f: impl FnOnce(&mut Retained) -> R) -> R {
    let mut g: MutexGuard<'_, _> = RETAINED.lock().unwrap_or_else(PoisonError::into_inner);
    f(g.get_or_insert_with(Retained::default))
}

fn quarantine(r: &mut Retained, b: Box<Block>) {
    let mut b = b;
    for d in &mut b.data {
        d.fill(RELEASED_POISON);
    }
    r.quarantine.push_back(b);
    while r.quarantine.len() > 64 {
        r.quarantine.pop_front();
    }
}

/// The receive callback for this list starts on this thread.
pub(crate) fn callback_starts(b: &Block) {
    let me = std::thread::current().id();
    let calls = crate::kernel::preempt::thread_calls();
    with(|r| {
        for a in b.node_addrs() {
            r.in_callback.insert(a, (me, Arc::clone(&calls)));
        }
    });
}

/// What the provider saw when a receive callback's return was recorded.
pub(crate) struct Returned {
    /// Bytes released by WskRelease calls that came in before the return was recorded.
    pub released: usize,
    /// Heads released that way although the callback did not return STATUS_PENDING.
    pub not_retained: Vec<usize>,
    /// Heads released that way while the callback was provably still running: (head,
    /// kernel calls the callback made after the release).
    pub still_running: Vec<(usize, u64)>,
    /// A WSK_DATA_INDICATION list (WskReceiveEvent), else datagrams (WskReceiveFromEvent).
    pub stream: bool,
}

/// The receive callback for this list returned, `retained` (STATUS_PENDING) or not: in one
/// step, the list is retained or poisoned, the callback marker cleared, and releases that
/// came in early applied, so no WskRelease can fall between them. `calls_at_return`: the
/// callback thread's kernel calls when the callback returned.
pub(crate) fn callback_returned(b: Box<Block>, retained: bool, calls_at_return: u64) -> Returned {
    with(|r| {
        let nodes = b.node_addrs();
        for a in &nodes {
            r.in_callback.remove(a);
        }
        let (early, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut r.early_releases)
            .into_iter()
            .partition(|e| nodes.contains(&e.0));
        r.early_releases = keep;
        let mut out = Returned {
            released: 0,
            not_retained: Vec::new(),
            still_running: early
                .iter()
                .filter(|e| calls_at_return > e.3)
                .map(|e| (e.0, calls_at_return - e.3))
                .collect(),
            stream: !b.stream_nodes.is_empty(),
        };
        if retained {
            retain_locked(r, b);
            for (head, socket, stream, then) in early {
                // SAFETY: `head` is a node of the block just retained.
                let done = unsafe { release_locked(r, socket, head, stream) };
                if let Release::Ok { bytes, .. } = done {
                    out.released += bytes;
                    if calls_at_return <= then {
                        EARLY_APPLIED.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        } else {
            out.not_retained = early.into_iter().map(|e| e.0).collect();
            discard_locked(r, b);
        }
        out
    })
}

/// The client returned from the callback without retaining the list: poison it now.
fn discard_locked(r: &mut Retained, b: Box<Block>) {
    for a in b.node_addrs() {
        r.released_nodes.push_back(a);
    }
    while r.released_nodes.len() > 4096 {
        r.released_nodes.pop_front();
    }
    quarantine(r, b);
}

/// STATUS_PENDING: the client keeps the list until WskRelease.
fn retain_locked(r: &mut Retained, b: Box<Block>) {
    r.next_id += 1;
    let id = r.next_id;
    for (i, a) in b.node_addrs().into_iter().enumerate() {
        r.nodes.insert(a, (id, i));
    }
    r.blocks.insert(id, b);
}

/// Result of a WskRelease.
pub(crate) enum Release {
    /// Released `bytes` belonging to `socket`.
    Ok {
        socket: usize,
        bytes: usize,
    },
    Unknown,
    Twice,
    /// From the thread running the list's receive callback, before it returned.
    DuringCallback,
    /// From another thread while the provider has not yet seen the callback return:
    /// applied once it returns STATUS_PENDING.
    Early,
    WrongSocket(usize),
}

/// WskRelease(list): releases every node reachable from `head` through Next (a client
/// may split a list and release the pieces separately: G11).
///
/// # Safety
/// `head` is a node pointer handed out by the provider (checked against the table first).
pub(crate) unsafe fn release(socket: usize, head: usize, stream: bool) -> Release {
    with(|r| {
        if let Some((t, calls)) = r.in_callback.get(&head) {
            if *t == std::thread::current().id() {
                return Release::DuringCallback;
            }
            let then = calls.load(Ordering::SeqCst);
            r.early_releases.push((head, socket, stream, then));
            return Release::Early;
        }
        // SAFETY: per the function contract.
        unsafe { release_locked(r, socket, head, stream) }
    })
}

/// # Safety
/// As [`release`].
unsafe fn release_locked(r: &mut Retained, socket: usize, head: usize, stream: bool) -> Release {
    {
        let Some(&(id, _)) = r.nodes.get(&head) else {
            return if r.released_nodes.contains(&head) {
                Release::Twice
            } else {
                Release::Unknown
            };
        };
        let owner = r.blocks[&id].socket;
        if owner != socket {
            return Release::WrongSocket(owner);
        }
        let mut cur = head;
        let mut bytes = 0usize;
        while cur != 0 {
            let Some(&(bid, idx)) = r.nodes.get(&cur) else {
                break;
            };
            if bid != id {
                break;
            }
            r.nodes.remove(&cur);
            r.released_nodes.push_back(cur);
            let b = r.blocks.get_mut(&id).expect("live block");
            b.released[idx] = true;
            bytes += b.data[idx].len().saturating_sub(LEAD);
            // SAFETY: `cur` is a node of this live block.
            cur = unsafe {
                if stream {
                    (*(cur as *const WSK_DATA_INDICATION)).Next as usize
                } else {
                    (*(cur as *const WSK_DATAGRAM_INDICATION)).Next as usize
                }
            };
        }
        while r.released_nodes.len() > 4096 {
            r.released_nodes.pop_front();
        }
        if r.blocks[&id].released.iter().all(|x| *x) {
            let b = r.blocks.remove(&id).expect("live block");
            quarantine(r, b);
        }
        Release::Ok {
            socket: owner,
            bytes,
        }
    }
}

/// Retained lists still held: (socket, bytes).
pub(crate) fn live() -> Vec<(usize, usize)> {
    with(|r| r.blocks.values().map(|b| (b.socket, b.bytes)).collect())
}

pub(crate) fn reset() {
    with(|r| {
        r.blocks.clear();
        r.nodes.clear();
        r.quarantine.clear();
        r.released_nodes.clear();
        r.in_callback.clear();
        r.early_releases.clear();
    });
    EARLY_APPLIED.store(0, Ordering::SeqCst);
}
