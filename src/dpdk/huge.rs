//! [`HugeSlice`]: a fixed-size table in its own anonymous mapping, 2 MiB aligned and advised
//! to the kernel as transparent-huge-page memory *before* it is first touched, so the kernel
//! backs it with 2 MiB pages from the first fault. A 1M-conn table spans 57 MiB: with 4 KiB
//! pages nearly every packet would also miss the TLB (and in a VM a TLB miss walks two page
//! tables). Advice only: where THP is off the table still works on 4 KiB pages.

use std::alloc::Layout;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use nix::sys::mman::{MapFlags, MmapAdvise, ProtFlags, madvise, mmap_anonymous, munmap};

const HUGE: usize = 2 << 20;

/// `len` values of `T` in a huge-page-advised mapping. Like `Box<[T]>`, but never moved or
/// grown; `T: Copy` so that nothing needs dropping.
pub struct HugeSlice<T: Copy> {
    ptr: NonNull<T>,
    len: usize,
    map: NonNull<std::ffi::c_void>,
    map_len: usize,
}

// SAFETY: HugeSlice owns its mapping exclusively, like Box<[T]>; sending it moves that
// ownership, sharing `&HugeSlice` only hands out `&[T]`.
unsafe impl<T: Copy + Send> Send for HugeSlice<T> {}
// SAFETY: as above.
unsafe impl<T: Copy + Sync> Sync for HugeSlice<T> {}

impl<T: Copy> HugeSlice<T> {
    /// `len` copies of `init`, in memory of its own. Aborts like `Vec` when the system has no
    /// memory to give.
    pub fn new(len: usize, init: T) -> HugeSlice<T> {
        assert!(
            std::mem::align_of::<T>() <= 4096,
            "HugeSlice: alignment above a page"
        );
        let bytes = len.max(1).checked_mul(std::mem::size_of::<T>().max(1));
        let Some(bytes) = bytes else {
            panic!("HugeSlice: {len} entries overflow the address space");
        };
        let map_len = bytes.div_ceil(HUGE) * HUGE + HUGE;
        let oom = || std::alloc::handle_alloc_error(Layout::from_size_align(bytes, HUGE).unwrap());
        let Some(nz) = std::num::NonZeroUsize::new(map_len) else {
            oom()
        };
        // SAFETY: a fresh private anonymous mapping aliases nothing; it is unmapped only by
        // Drop, with the same address and length.
        let map = unsafe {
            mmap_anonymous(
                None,
                nz,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_NORESERVE,
            )
        }
        .unwrap_or_else(|_| oom());
        // Start at the first 2 MiB boundary inside the mapping (one huge page of slack).
        let base = map.as_ptr() as usize;
        let start = base.next_multiple_of(HUGE);
        let data = start as *mut T;
        // SAFETY: [start, start + bytes) lies inside the mapping (map_len has a huge page of
        // slack for the alignment); the advice changes how it is backed, never its contents.
        let _ = unsafe {
            madvise(
                NonNull::new_unchecked(start as *mut std::ffi::c_void),
                map_len - (start - base),
                MmapAdvise::MADV_HUGEPAGE,
            )
        };
        for i in 0..len {
            // SAFETY: entry i is inside the mapping, aligned (page-aligned start, T's alignment
            // divides the page size and its own size), and written before anyone reads it.
            unsafe { data.add(i).write(init) };
        }
        HugeSlice {
            // SAFETY: `start` is inside a successful mapping, so it is not null.
            ptr: unsafe { NonNull::new_unchecked(data) },
            len,
            map,
            map_len,
        }
    }

    /// Prefetches entry `i` into all cache levels, without a bounds check: a prefetch is
    /// only a hint, and one past the end (a caller's bug) reads nothing and faults never.
    #[inline(always)]
    pub fn prefetch(&self, i: usize) {
        let p = self.ptr.as_ptr().wrapping_add(i);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: prefetch has no memory effects and cannot fault, whatever the address;
        // SSE is part of the x86_64 baseline.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                p.cast::<i8>().cast_const(),
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = p;
    }

    /// How the kernel backs the table: the address range of the mapping holding it (the
    /// kernel may merge neighbouring mappings of the same kind) and that mapping's KiB on huge
    /// pages, from /proc/self/smaps (`None` if unreadable). Diagnostics only.
    pub fn huge_pages(&self) -> Option<((usize, usize), u64)> {
        let text = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let at = self.ptr.as_ptr() as usize;
        let range_of = |l: &str| {
            let (lo, hi) = l.split_whitespace().next()?.split_once('-')?;
            Some((
                usize::from_str_radix(lo, 16).ok()?,
                usize::from_str_radix(hi, 16).ok()?,
            ))
        };
        let mut lines = text.lines();
        let range = lines
            .by_ref()
            .find_map(|l| range_of(l).filter(|&(lo, hi)| lo <= at && at < hi))?;
        let kb = lines
            // "Key: value" lines until the next mapping's header.
            .take_while(|l| {
                l.split_once(':')
                    .is_some_and(|(k, _)| !k.contains([' ', '-']))
            })
            .find_map(|l| l.strip_prefix("AnonHugePages:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
        Some((range, kb))
    }
}

impl<T: Copy> Deref for HugeSlice<T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        // SAFETY: `len` initialised values at `ptr`, owned by self, alive until Drop.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> DerefMut for HugeSlice<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Copy> Drop for HugeSlice<T> {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once; T: Copy needs no drop.
        let _ = unsafe { munmap(self.map, self.map_len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_and_changes_values_like_a_boxed_slice() {
        let mut s = HugeSlice::new(3_000_000, 7u64);
        assert_eq!(s.len(), 3_000_000);
        assert!(s.iter().all(|&v| v == 7));
        s[2_999_999] = 9;
        s[0] = 1;
        assert_eq!((s[0], s[1], s[2_999_999]), (1, 7, 9));
        assert_eq!(s.as_ptr() as usize % HUGE, 0);
        // A prefetch is a hint: in the table or past its end, it changes nothing.
        s.prefetch(2_999_999);
        s.prefetch(3_000_000 + 1_000_000);
        assert_eq!((s[0], s[2_999_999]), (1, 9));
        let empty = HugeSlice::new(0, 0u8);
        assert!(empty.is_empty());
        // The mapping is found in smaps; how much of it is on huge pages depends on the
        // kernel (THP setting, fragmentation), so only the bound is checked.
        let ((lo, hi), kb) = s.huge_pages().expect("mapping listed in /proc/self/smaps");
        assert!(lo <= s.as_ptr() as usize && (s.as_ptr() as usize) < hi);
        assert!(kb <= ((hi - lo) / 1024) as u64, "{kb} KiB");
    }
}
