//! Packet buffers: [`Mbuf`] owns one DPDK mbuf and frees it on drop; [`MbufArray`] is a fixed
//! array of them that rx bursts fill in place and tx bursts hand to the driver.

use std::ptr::NonNull;

use super::*;

/// One owned packet buffer. `repr(transparent)` so `Option<Mbuf>` has the layout of
/// `struct rte_mbuf *` (NULL = None), which lets bursts go straight into Rust arrays.
#[repr(transparent)]
pub struct Mbuf(pub(super) NonNull<ffi::rte_mbuf>);

// SAFETY: an Mbuf is uniquely owned; moving it between threads moves that ownership.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// The packet bytes of a single-segment mbuf, `None` for a chained one. Reads the mbuf
    /// header directly (bindgen's layout of `struct rte_mbuf`, checked below), so this inlines
    /// instead of crossing into C.
    #[inline]
    pub fn data_mut(&mut self) -> Option<&mut [u8]> {
        // SAFETY: we own the mbuf, so reading its header is fine; for a single segment the
        // `data_len` bytes at `buf_addr + data_off` lie inside its buffer and nobody else
        // aliases them while we hold `&mut self`. An mbuf from a pool always has a buffer
        // (`buf_addr` is never NULL), which the compiler is told so that callers do not test
        // the returned slice for NULL.
        unsafe {
            let m = &*self.0.as_ptr();
            if m.nb_segs != 1 {
                return None;
            }
            std::hint::assert_unchecked(!m.buf_addr.is_null());
            let data = m.buf_addr.cast::<u8>().add(usize::from(m.data_off));
            Some(std::slice::from_raw_parts_mut(
                data,
                usize::from(m.data_len),
            ))
        }
    }

    /// The device's RSS hash, when it supplied one.
    #[inline]
    pub fn rss_hash(&self) -> Option<u32> {
        let mut h = 0u32;
        // SAFETY: reads the owned mbuf's header.
        (unsafe { ffi::sy_mbuf_rss_hash(self.0.as_ptr(), &mut h) } != 0).then_some(h)
    }

    /// Grows an empty/short mbuf by `len` bytes and returns them, `None` without tailroom.
    pub fn append(&mut self, len: u16) -> Option<&mut [u8]> {
        // SAFETY: owned mbuf; rte_pktmbuf_append returns a pointer to `len` fresh bytes inside
        // the buffer or NULL.
        unsafe {
            let p = ffi::sy_mbuf_append(self.0.as_ptr(), len);
            (!p.is_null()).then(|| std::slice::from_raw_parts_mut(p, usize::from(len)))
        }
    }
}

impl Mbuf {
    /// Sets the length of a single-segment mbuf: grows into tailroom or trims the end.
    pub fn set_len(&mut self, len: usize) -> bool {
        let m = self.0.as_ptr();
        // SAFETY: owned mbuf; append/trim adjust its lengths within its own buffer and fail
        // (NULL / -1) rather than overrun it.
        unsafe {
            if ffi::sy_mbuf_nb_segs(m) != 1 {
                return false;
            }
            let cur = usize::from(ffi::sy_mbuf_data_len(m));
            if len >= cur {
                let Ok(grow) = u16::try_from(len - cur) else {
                    return false;
                };
                grow == 0 || !ffi::sy_mbuf_append(m, grow).is_null()
            } else {
                ffi::sy_mbuf_trim(m, (cur - len) as u16) == 0
            }
        }
    }

    /// The port id the mbuf was received on.
    #[inline]
    pub fn port(&self) -> PortId {
        // SAFETY: reads the owned mbuf's header.
        PortId(unsafe { (*self.0.as_ptr()).port })
    }
}

impl crate::types::PacketBuf for Mbuf {
    #[inline]
    fn bytes(&mut self) -> &mut [u8] {
        self.data_mut().unwrap_or_default()
    }
    #[inline]
    fn set_len(&mut self, len: usize) -> bool {
        Mbuf::set_len(self, len)
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the mbuf and give it back exactly once.
        unsafe { ffi::sy_pktmbuf_free(self.0.as_ptr()) };
    }
}

/// A fixed array of owned mbufs (no heap). Dropping it bulk-frees what it still holds.
pub struct MbufArray<const N: usize> {
    /// `rte_mbuf *` slots (an `Option<Mbuf>` has a pointer's layout); `slots[..len]` hold mbufs
    /// (the rings in `ring` move them in and out in bulk).
    pub(super) slots: [Option<Mbuf>; N],
    pub(super) len: usize,
}

impl<const N: usize> Default for MbufArray<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> MbufArray<N> {
    pub fn new() -> Self {
        Self {
            slots: [const { None }; N],
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == N
    }

    /// Fills the array from rx queue `q` of `port`; returns the number received.
    #[inline]
    pub fn rx_burst(&mut self, port: PortId, q: QueueId) -> usize {
        debug_assert!(self.len == 0);
        // SAFETY: `slots` is N pointer-sized `Option<Mbuf>` slots, all None (NULL); the PMD
        // writes at most N owned mbuf pointers into them, which we then own.
        let n = unsafe {
            ffi::sy_rx_burst(
                port.0,
                q.0,
                self.slots.as_mut_ptr().cast::<*mut ffi::rte_mbuf>(),
                N as u16,
            )
        };
        // The PMD returns at most N; saying so lets the compiler drop the bounds checks of
        // the callers' loops over the burst.
        self.len = usize::from(n).min(N);
        self.len
    }

    /// Takes packet `i` out (leaving the slot empty).
    #[inline]
    pub fn take(&mut self, i: usize) -> Option<Mbuf> {
        self.slots[i].take()
    }

    /// Marks the array empty after all slots were taken.
    #[inline]
    pub fn reset(&mut self) {
        debug_assert!(self.slots[..self.len].iter().all(Option::is_none));
        self.len = 0;
    }

    /// Appends; returns the mbuf back when full.
    #[inline]
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.len == N {
            return Err(m);
        }
        // The slot is empty (None) past `len`: nothing to drop, so no drop check either.
        std::mem::forget(self.slots[self.len].replace(m));
        self.len += 1;
        Ok(())
    }

    /// Bytes of packet `i` (single-segment only).
    pub fn data_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        self.slots.get_mut(i)?.as_mut()?.data_mut()
    }

    /// Frees every held mbuf in one call.
    #[inline]
    pub fn free_all(&mut self) {
        if self.len == 0 {
            return;
        }
        // SAFETY: slots[..len] are Some (owned, non-NULL) and laid out as rte_mbuf pointers;
        // after the bulk free we forget them by overwriting with None without running Drop.
        unsafe {
            ffi::rte_pktmbuf_free_bulk(
                self.slots.as_mut_ptr().cast::<*mut ffi::rte_mbuf>(),
                self.len as u32,
            );
            for s in &mut self.slots[..self.len] {
                std::ptr::write(s, None);
            }
        }
        self.len = 0;
    }

    /// Transmits the held mbufs on `port`/`q`. Returns (sent, dropped); unsent ones are freed.
    #[inline]
    pub fn tx_burst(&mut self, port: PortId, q: QueueId) -> (usize, usize) {
        let len = self.len;
        if len == 0 {
            return (0, 0);
        }
        let ptrs = self.slots.as_mut_ptr().cast::<*mut ffi::rte_mbuf>();
        // SAFETY: slots[..len] hold owned mbufs; the PMD takes ownership of the first `sent`.
        let sent = usize::from(unsafe { ffi::sy_tx_burst(port.0, q.0, ptrs, len as u16) });
        for s in &mut self.slots[..sent] {
            // SAFETY: ownership passed to the driver: forget without freeing.
            unsafe { std::ptr::write(s, None) };
        }
        let unsent = len - sent;
        if unsent > 0 {
            // SAFETY: slots[sent..len] are still owned; free in bulk then forget.
            unsafe {
                ffi::rte_pktmbuf_free_bulk(ptrs.add(sent), unsent as u32);
                for s in &mut self.slots[sent..len] {
                    std::ptr::write(s, None);
                }
            }
        }
        self.len = 0;
        (sent, unsent)
    }
}

impl<const N: usize> Drop for MbufArray<N> {
    fn drop(&mut self) {
        self.free_all();
    }
}
