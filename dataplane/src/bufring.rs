//! A provided-buffer ring (`IORING_REGISTER_PBUF_RING`, Linux 5.19+).
//!
//! The ring is an array of `entries` 16-byte `io_uring_buf` descriptors
//! (`addr`, `len`, `bid`, and a reserved `u16` that, in entry 0, is the
//! ring's tail), page-aligned, shared with the kernel. The kernel consumes
//! descriptors from its private head; the application adds buffers at the
//! tail, index `tail & mask`, and publishes the new tail with a release
//! store. Every buffer id is in exactly one place at a time (the ring, or
//! held by the application), and the ring has one descriptor per buffer,
//! so it can never overflow.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::Submitter;

/// An anonymous, page-aligned, zeroed memory mapping.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Mapping> {
        // SAFETY: anonymous private mapping; no file, no fixed address.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        NonNull::new(p.cast::<u8>())
            .map(|ptr| Mapping { ptr, len })
            .ok_or_else(|| io::Error::other("mmap returned null"))
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len come from a successful mmap and are unmapped once.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// A registered provided-buffer ring with its buffers.
///
/// Drop order matters: the io_uring must be dropped (or the group
/// unregistered) before this, since the kernel writes into the buffers.
pub struct BufRing {
    ring: Mapping,
    bufs: Mapping,
    entries: u16,
    buf_size: u32,
    /// Local tail: descriptors added but maybe not yet published.
    tail: u16,
    /// Buffers currently held by the application (not in the ring).
    held: u32,
    /// Per buffer: whether the application holds it (guards against a
    /// double recycle, which would corrupt the ring).
    is_held: Box<[bool]>,
    bgid: u16,
}

impl BufRing {
    /// Allocates `entries` buffers of `buf_size` bytes each and a ring of
    /// `entries` descriptors, all buffers initially in the ring (not yet
    /// published; see [`BufRing::publish`]).
    ///
    /// Errors: `InvalidInput` unless `entries` is a power of two in
    /// 1..=32768 and `buf_size` is nonzero; mmap failures.
    pub fn new(entries: u16, buf_size: u32, bgid: u16) -> io::Result<BufRing> {
        if entries == 0 || !entries.is_power_of_two() || entries > 32768 || buf_size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer ring: entries must be a power of two <= 32768, buffers nonempty",
            ));
        }
        let ring = Mapping::new(usize::from(entries) * std::mem::size_of::<BufRingEntry>())?;
        let bufs = Mapping::new(usize::from(entries) * buf_size as usize)?;
        let mut r = BufRing {
            ring,
            bufs,
            entries,
            buf_size,
            tail: 0,
            held: u32::from(entries),
            is_held: vec![true; usize::from(entries)].into_boxed_slice(),
            bgid,
        };
        for bid in 0..entries {
            r.recycle(bid);
        }
        Ok(r)
    }

    /// Registers the ring with `submitter` under its buffer group id and
    /// publishes the initial buffers.
    pub fn register(&self, submitter: &Submitter<'_>) -> io::Result<()> {
        // SAFETY: the ring mapping is page-aligned, holds `entries`
        // descriptors and lives until `self` is dropped, which the worker
        // does only after the io_uring itself is gone.
        unsafe {
            submitter.register_buf_ring_with_flags(
                self.ring.ptr.as_ptr() as u64,
                self.entries,
                self.bgid,
                0,
            )?;
        }
        self.publish();
        Ok(())
    }

    /// The buffer group id to put in receive SQEs.
    pub fn bgid(&self) -> u16 {
        self.bgid
    }

    /// Size of each buffer in bytes.
    pub fn buf_size(&self) -> u32 {
        self.buf_size
    }

    /// Number of buffers.
    pub fn entries(&self) -> u16 {
        self.entries
    }

    /// Buffers currently in the ring (available to the kernel once
    /// published).
    pub fn available(&self) -> u32 {
        u32::from(self.entries) - self.held
    }

    /// Marks buffer `bid` as taken by the kernel for a completion (it left
    /// the ring). Returns false for an unknown or already-held id.
    #[inline]
    pub fn take(&mut self, bid: u16) -> bool {
        match self.is_held.get_mut(usize::from(bid)) {
            Some(h) if !*h => {
                *h = true;
                self.held += 1;
                true
            }
            _ => false,
        }
    }

    /// Buffer `bid`, `len` bytes (clamped to the buffer size). The caller
    /// must hold the buffer (it came in a completion and was not recycled).
    #[inline]
    pub fn buf_mut(&mut self, bid: u16, len: usize) -> &mut [u8] {
        let bid = usize::from(bid % self.entries);
        let size = self.buf_size as usize;
        // SAFETY: bid < entries, so the range lies inside the mapping; the
        // kernel does not write a buffer the application holds, and `&mut
        // self` makes this the only live slice.
        unsafe {
            std::slice::from_raw_parts_mut(self.bufs.ptr.as_ptr().add(bid * size), len.min(size))
        }
    }

    /// Start address of buffer `bid` (for send iovecs).
    #[inline]
    pub fn buf_ptr(&self, bid: u16) -> *mut u8 {
        let bid = usize::from(bid % self.entries);
        // SAFETY: in bounds of the mapping.
        unsafe { self.bufs.ptr.as_ptr().add(bid * self.buf_size as usize) }
    }

    /// Gives buffer `bid` back: writes a descriptor at the local tail. The
    /// kernel sees it after the next [`BufRing::publish`]. A recycle of a
    /// buffer not held is ignored (returns false).
    #[inline]
    pub fn recycle(&mut self, bid: u16) -> bool {
        match self.is_held.get_mut(usize::from(bid)) {
            Some(h) if *h => *h = false,
            _ => return false,
        }
        self.held -= 1;
        let idx = usize::from(self.tail & (self.entries - 1));
        // SAFETY: idx < entries; fields are written one by one so that the
        // tail (entry 0's reserved field) is never overwritten. The kernel
        // reads descriptors only between its head and the published tail,
        // and this index is past the published tail.
        unsafe {
            let e = &mut *self.ring.ptr.as_ptr().cast::<BufRingEntry>().add(idx);
            e.set_addr(self.buf_ptr(bid) as u64);
            e.set_len(self.buf_size);
            e.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
        true
    }

    /// Publishes the local tail to the kernel (one release store).
    #[inline]
    pub fn publish(&self) {
        // SAFETY: the tail field lies in entry 0 of the mapping, u16-aligned;
        // the kernel reads it with an acquire load.
        unsafe {
            let t = BufRingEntry::tail(self.ring.ptr.as_ptr().cast::<BufRingEntry>());
            (*(t as *const AtomicU16)).store(self.tail, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_sizes() {
        assert!(BufRing::new(0, 2048, 0).is_err());
        assert!(BufRing::new(3, 2048, 0).is_err());
        assert!(BufRing::new(4, 0, 0).is_err());
    }

    #[test]
    fn take_and_recycle_track_ownership() {
        let mut r = BufRing::new(8, 64, 0).unwrap();
        assert_eq!(r.available(), 8);
        assert!(r.take(3));
        assert!(!r.take(3), "already held");
        assert!(!r.take(9), "unknown id");
        assert_eq!(r.available(), 7);
        r.buf_mut(3, 10).copy_from_slice(&[7; 10]);
        assert_eq!(r.buf_mut(3, 1000).len(), 64);
        assert!(r.recycle(3));
        assert!(!r.recycle(3), "double recycle ignored");
        assert_eq!(r.available(), 8);
        r.publish();
        assert_eq!(r.tail, 9);
    }
}
