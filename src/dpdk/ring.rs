//! [`MbufRing`]: an SPSC `rte_ring` of mbufs, how a worker hands a packet to the core that
//! owns its conn.

use std::ffi::CString;
use std::os::raw::c_void;
use std::ptr::NonNull;

use super::*;

/// A single-producer/single-consumer `rte_ring` of mbufs: hands packets from one core to
/// another (software steering of replies to the core that owns their flow).
pub struct MbufRing {
    ptr: NonNull<ffi::rte_ring>,
}

// SAFETY: an rte_ring is built for cross-core use. In SP/SC mode the caller must keep to one
// enqueuing and one dequeuing thread; that is the contract documented on the methods.
unsafe impl Send for MbufRing {}

// SAFETY: all access goes through DPDK's lock-free ring operations.
unsafe impl Sync for MbufRing {}

impl MbufRing {
    /// Creates a ring of `size` slots (a power of two; holds `size - 1` mbufs).
    pub fn new(name: &str, size: u32) -> Result<MbufRing, DpdkError> {
        let cname = CString::new(name).expect("ring name has no NUL");
        // SAFETY: valid name; flags select single-producer/single-consumer mode.
        let p = unsafe {
            ffi::rte_ring_create(
                cname.as_ptr(),
                size,
                ffi::SOCKET_ID_ANY,
                ffi::RING_F_SP_ENQ | ffi::RING_F_SC_DEQ,
            )
        };
        NonNull::new(p)
            .map(|ptr| MbufRing { ptr })
            .ok_or_else(|| DpdkError::Mempool(name.into(), last_errno()))
    }

    /// Moves as many mbufs of `from` as fit into the ring (in order); the rest stay in `from`
    /// (shifted to its front). Returns how many were enqueued. Producer side only.
    pub fn enqueue<const N: usize>(&self, from: &mut MbufArray<N>) -> usize {
        let len = from.len;
        let ptrs = from.slots.as_mut_ptr().cast::<*mut c_void>();
        // SAFETY: slots[..len] hold owned mbufs; the ring takes ownership of the first `n`.
        let n = unsafe { ffi::sy_ring_enqueue_burst(self.ptr.as_ptr(), ptrs, len as u32) } as usize;
        for s in &mut from.slots[..n] {
            // SAFETY: ownership moved into the ring: forget without freeing.
            unsafe { std::ptr::write(s, None) };
        }
        from.slots[..len].rotate_left(n);
        from.len = len - n;
        n
    }

    /// Moves up to the free room of `into` out of the ring. Consumer side only.
    pub fn dequeue<const N: usize>(&self, into: &mut MbufArray<N>) -> usize {
        let room = N - into.len;
        // SAFETY: slots[len..] are None (NULL); the ring writes at most `room` owned mbuf
        // pointers there, which `into` then owns.
        let n = unsafe {
            ffi::sy_ring_dequeue_burst(
                self.ptr.as_ptr(),
                into.slots[into.len..].as_mut_ptr().cast::<*mut c_void>(),
                room as u32,
            )
        } as usize;
        into.len += n;
        n
    }

    /// Mbufs waiting in the ring.
    pub fn count(&self) -> u32 {
        // SAFETY: valid ring.
        unsafe { ffi::sy_ring_count(self.ptr.as_ptr()) }
    }
}

impl Drop for MbufRing {
    fn drop(&mut self) {
        // Free what is still queued, then the ring.
        let mut rest: MbufArray<BURST> = MbufArray::new();
        while self.dequeue(&mut rest) > 0 {
            rest.free_all();
        }
        // SAFETY: no other handle uses the ring any more (we are being dropped).
        unsafe { ffi::rte_ring_free(self.ptr.as_ptr()) };
    }
}
