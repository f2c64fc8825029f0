//! Bounds-checked little-endian readers and writers. Every read goes through [`Reader`],
//! which refuses to step past its slice, so a decoder cannot over-read whatever it is given.

use super::error::ControlError;

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], ControlError> {
        let end = self.pos.checked_add(n).ok_or(ControlError::Short)?;
        let s = self.buf.get(self.pos..end).ok_or(ControlError::Short)?;
        self.pos = end;
        Ok(s)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], ControlError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, ControlError> {
        Ok(self.array::<1>()?[0])
    }
    pub(crate) fn u16(&mut self) -> Result<u16, ControlError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub(crate) fn u32(&mut self) -> Result<u32, ControlError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub(crate) fn i32(&mut self) -> Result<i32, ControlError> {
        Ok(i32::from_le_bytes(self.array()?))
    }
    pub(crate) fn u64(&mut self) -> Result<u64, ControlError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A reserved field: must be zero so that a later version can give it a meaning.
    pub(crate) fn reserved(&mut self, n: usize) -> Result<(), ControlError> {
        if self.take(n)?.iter().all(|&b| b == 0) {
            Ok(())
        } else {
            Err(ControlError::Reserved)
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Everything must have been consumed: trailing bytes are a length error.
    pub(crate) fn finish(&self) -> Result<(), ControlError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(ControlError::Long)
        }
    }
}

/// Writes into a buffer the caller has already checked is large enough; a write past the end
/// is a bug in this crate and truncates silently rather than panicking in the kernel. Tests
/// check every encoder writes exactly its declared size.
pub(crate) struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
    overflow: bool,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(buf: &'a mut [u8]) -> Self {
        Writer {
            buf,
            pos: 0,
            overflow: false,
        }
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        let end = self.pos + b.len();
        match self.buf.get_mut(self.pos..end) {
            Some(d) => {
                d.copy_from_slice(b);
                self.pos = end;
            }
            None => self.overflow = true,
        }
    }
    pub(crate) fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    pub(crate) fn i32(&mut self, v: i32) {
        self.bytes(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
    pub(crate) fn zeros(&mut self, n: usize) {
        for _ in 0..n {
            self.u8(0);
        }
    }

    /// Bytes written, or the error for a buffer that was too small.
    pub(crate) fn done(self) -> Result<usize, ControlError> {
        if self.overflow {
            Err(ControlError::OutputTooSmall)
        } else {
            Ok(self.pos)
        }
    }
}
