//! Executive spin lock guarding a value (C14: only spin locks on callback/completion paths).

use core::cell::UnsafeCell;
use core::ops::{Deref, DerefMut};
use wsk_sys::{KeAcquireSpinLockRaiseToDpc, KeReleaseSpinLock, KIRQL, KSPIN_LOCK};

pub(crate) struct SpinLock<T> {
    lock: UnsafeCell<KSPIN_LOCK>,
    data: UnsafeCell<T>,
}

// SAFETY: access to `data` is serialised by the kernel spin lock.
unsafe impl<T: Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the value; no thread affinity.
unsafe impl<T: Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    pub(crate) const fn new(v: T) -> Self {
        // An initialised KSPIN_LOCK is 0 (KeInitializeSpinLock is inline on x64).
        Self {
            lock: UnsafeCell::new(0),
            data: UnsafeCell::new(v),
        }
    }

    /// Raises to DISPATCH_LEVEL. Callable at IRQL <= DISPATCH_LEVEL.
    #[inline]
    pub(crate) fn lock(&self) -> SpinGuard<'_, T> {
        // SAFETY: the lock word lives as long as self and is only used through these calls.
        let old = unsafe { KeAcquireSpinLockRaiseToDpc(self.lock.get()) };
        SpinGuard { l: self, old }
    }

    /// Direct access without the lock, for set-up and teardown when no other thread can see it.
    pub(crate) fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }
}

pub(crate) struct SpinGuard<'a, T> {
    l: &'a SpinLock<T>,
    old: KIRQL,
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: the guard holds the lock.
        unsafe { &*self.l.data.get() }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: the guard holds the lock exclusively.
        unsafe { &mut *self.l.data.get() }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        // SAFETY: acquired in `lock` with this old IRQL.
        unsafe { KeReleaseSpinLock(self.l.lock.get(), self.old) };
    }
}
