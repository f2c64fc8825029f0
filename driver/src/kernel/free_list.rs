//! A fixed-capacity stack of free indices over a tagged non-paged array (the connection pool;
//! a UDP socket's send contexts are in per-CPU pools of their own, `serve::udp`). Not locked
//! itself: its owner keeps it under a spin lock.
//!
//! Deliberately not a `heapless::Vec` (the crate the driver uses for its other fixed-capacity
//! containers): a heapless capacity is a compile-time constant, but these lists are sized at
//! start from the registry (MaxConnections up to 65,536; UdpSendContexts per socket), so a
//! `heapless::Vec<u32, 65_536>` would put 256 KiB in every list, one per UDP socket, whatever
//! was configured. This one takes exactly `cap` indices from tagged non-paged pool once, when
//! its owner (the connection pool, a UDP socket) is set up, and never allocates after that:
//! push/pop are allocation-free and safe at DISPATCH_LEVEL under the owner's spin lock.

use core::ptr;

use wsk_sys::{NTSTATUS, STATUS_INSUFFICIENT_RESOURCES};

use super::pool;

pub(crate) struct FreeList {
    items: *mut u32,
    len: usize,
    cap: usize,
    tag: u32,
}

impl FreeList {
    pub(crate) const fn empty() -> Self {
        Self {
            items: ptr::null_mut(),
            len: 0,
            cap: 0,
            tag: 0,
        }
    }

    /// Room for `cap` indices, none free yet (the owner pushes each index once its context
    /// exists). IRQL <= DISPATCH_LEVEL.
    pub(crate) fn alloc(&mut self, cap: usize, tag: u32) -> Result<(), NTSTATUS> {
        self.items = pool::alloc(cap * core::mem::size_of::<u32>(), tag).cast();
        if self.items.is_null() {
            return Err(STATUS_INSUFFICIENT_RESOURCES);
        }
        self.cap = cap;
        self.tag = tag;
        self.len = 0;
        Ok(())
    }

    /// Gives index `i` back. False (nothing stored) when the list is already full: a double
    /// free the caller counts instead of overrunning the array.
    pub(crate) fn push(&mut self, i: usize) -> bool {
        if self.len >= self.cap {
            return false;
        }
        // SAFETY: len < cap entries were allocated.
        unsafe { *self.items.add(self.len) = i as u32 };
        self.len += 1;
        true
    }

    pub(crate) fn pop(&mut self) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        // SAFETY: len < cap, written by push.
        Some(unsafe { *self.items.add(self.len) } as usize)
    }

    /// Frees the array.
    ///
    /// # Safety
    /// No index is in use any more.
    pub(crate) unsafe fn free(&mut self) {
        // SAFETY: allocated by `alloc` with this tag (or null).
        unsafe { pool::free(self.items.cast(), self.tag) };
        *self = Self::empty();
    }
}
