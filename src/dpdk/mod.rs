//! Safe wrappers over the slice of DPDK Switchyard uses. This module (with `ffi`) is the only
//! place in the crate with `unsafe`; every block says why it is sound.
//!
//! Ownership: [`Mbuf`] owns one packet buffer and frees it on drop; an rx burst fills an array
//! of `Option<Mbuf>` directly (same layout as DPDK's `rte_mbuf *` array), and a tx burst from
//! an [`MbufArray`] hands ownership to the driver for what it sends and bulk-frees what it
//! does not.
//!
//! | file | |
//! |---|---|
//! | `mod` | EAL, mempool, errors, ids, prefetch and the signature compare |
//! | `mbuf` | [`Mbuf`], [`MbufArray`] (bursts) |
//! | `ring` | [`MbufRing`] (steering between workers) |
//! | `port` | [`Port`] (ethdev setup, link, xstats) |
//! | `huge` | [`HugeSlice`] (huge-page-backed tables) |
//! | `ffi` | bindgen's output |

#![allow(unsafe_code)]

mod ffi;
mod huge;
mod mbuf;
mod port;
mod ring;

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_void};
use std::ptr::NonNull;

pub use huge::HugeSlice;
pub use mbuf::{Mbuf, MbufArray};
pub use port::{Link, Port, RxLosses, link_of, port_names, prime_tap_rx, rx_losses_of};
pub use ring::MbufRing;
use thiserror::Error;

use crate::types::MacAddr;

/// Packets per rx/tx burst.
pub const BURST: usize = 32;

// The mbuf header is read from Rust (see `Mbuf::data_mut`): its layout must be DPDK's.
const _: () = assert!(std::mem::size_of::<ffi::rte_mbuf>() == 128);

/// Bit `i` set where `a[i] == v`: eight compares without a branch (the conn table's
/// signature match; DPDK's rte_hash does the same with vector compares).
#[inline(always)]
pub fn eq_mask8(a: &[u32; 8], v: u32) -> u32 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE2 is part of the x86_64 baseline; the loads read the 32 bytes of `a`, a live
    // reference, unaligned loads allowed.
    unsafe {
        use std::arch::x86_64::{
            __m128i, _mm_castsi128_ps, _mm_cmpeq_epi32, _mm_loadu_si128, _mm_movemask_ps,
            _mm_set1_epi32,
        };
        let p = a.as_ptr().cast::<__m128i>();
        let v = _mm_set1_epi32(v as i32);
        let lo = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(_mm_loadu_si128(p), v)));
        let hi = _mm_movemask_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(
            _mm_loadu_si128(p.add(1)),
            v,
        )));
        (lo | (hi << 4)) as u32
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut m = 0;
        for (i, x) in a.iter().enumerate() {
            m |= u32::from(*x == v) << i;
        }
        m
    }
}

/// Asks the CPU to bring `r`'s cache line closer (DPDK's `rte_prefetch0`); a hint only.
#[inline(always)]
pub fn prefetch0<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a pure hint with no memory effects; the address comes from a live
    // reference and SSE is part of the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            std::ptr::from_ref(r).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

/// A DPDK ethdev port id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortId(pub u16);

/// A queue index on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueueId(pub u16);

/// An EAL logical core id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LcoreId(pub u32);

#[derive(Debug, Error)]
pub enum DpdkError {
    #[error("EAL initialisation failed: {0}")]
    EalInit(String),
    #[error("no DPDK port named {name:?} (ports present: {present})")]
    NoSuchPort { name: String, present: String },
    #[error("port {name}: {what} failed: {reason}")]
    Port {
        name: String,
        what: &'static str,
        reason: String,
    },
    #[error(
        "port {name} offers {max} {dir} queues, {need} needed (one per worker); \
         for net_af_packet add qpairs={need} to its --vdev"
    )]
    Queues {
        name: String,
        dir: &'static str,
        max: u16,
        need: u16,
    },
    #[error("mempool {0}: creation failed: {1}")]
    Mempool(String, String),
    #[error("launching lcore {0}: {1}")]
    Launch(u32, String),
}

/// ENOTSUP on Linux (DPDK returns negative errno values).
const fn libc_enotsup() -> c_int {
    95
}

fn errno_str(code: c_int) -> String {
    let code = code.abs();
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated string.
    let s = unsafe { CStr::from_ptr(ffi::rte_strerror(code)) };
    format!("{} (errno {code})", s.to_string_lossy())
}

fn last_errno() -> String {
    // SAFETY: reads the calling thread's rte_errno; no preconditions.
    errno_str(unsafe { ffi::sy_errno() })
}

/// The initialised Environment Abstraction Layer. Cleaned up on drop. EAL can start only once
/// per process, which is why tests run the binary as a subprocess.
pub struct Eal {
    _private: (),
}

impl Eal {
    /// Initialises EAL with `args` (program name first is added here).
    pub fn init(args: &[String]) -> Result<Eal, DpdkError> {
        let mut owned: Vec<CString> = Vec::with_capacity(args.len() + 1);
        owned.push(CString::new("switchyard").expect("static"));
        for a in args {
            owned.push(
                CString::new(a.as_str())
                    .map_err(|_| DpdkError::EalInit(format!("argument {a:?} holds a NUL byte")))?,
            );
        }
        // EAL may permute argv; give it pointers into strings that outlive the call.
        let mut argv: Vec<*mut c_char> = owned.iter().map(|s| s.as_ptr().cast_mut()).collect();
        // SAFETY: argv holds argc valid NUL-terminated strings kept alive by `owned` for the
        // duration of the call; EAL only reorders the pointer array.
        let rc = unsafe { ffi::rte_eal_init(argv.len() as c_int, argv.as_mut_ptr()) };
        if rc < 0 {
            return Err(DpdkError::EalInit(last_errno()));
        }
        Ok(Eal { _private: () })
    }

    /// TSC ticks per second.
    pub fn tsc_hz(&self) -> u64 {
        // SAFETY: EAL is initialised (self exists), which calibrates the TSC.
        unsafe { ffi::sy_tsc_hz() }
    }

    /// Runs `f` on worker lcore `lcore`. The closure is boxed once at launch.
    pub fn launch<F>(&self, lcore: LcoreId, f: F) -> Result<(), DpdkError>
    where
        F: FnOnce() -> i32 + Send + 'static,
    {
        type Job = Box<dyn FnOnce() -> i32 + Send>;
        extern "C" fn trampoline(arg: *mut c_void) -> c_int {
            // SAFETY: `arg` is the Box<Job> leaked by `launch` below, reclaimed exactly once.
            let job: Box<Job> = unsafe { Box::from_raw(arg.cast::<Job>()) };
            job()
        }
        let job: Box<Job> = Box::new(Box::new(f));
        let raw = Box::into_raw(job).cast::<c_void>();
        // SAFETY: the trampoline has the lcore_function_t ABI and owns `raw` once it runs.
        let rc = unsafe { ffi::rte_eal_remote_launch(Some(trampoline), raw, lcore.0) };
        if rc != 0 {
            // SAFETY: the launch failed, so the trampoline never ran and `raw` is still ours.
            drop(unsafe { Box::from_raw(raw.cast::<Job>()) });
            return Err(DpdkError::Launch(lcore.0, errno_str(rc)));
        }
        Ok(())
    }

    /// Waits for every launched worker lcore to return.
    pub fn wait_all(&self) {
        // SAFETY: called from the main lcore after launches; blocks until workers finish.
        unsafe { ffi::rte_eal_mp_wait_lcore() };
    }
}

impl Drop for Eal {
    fn drop(&mut self) {
        // SAFETY: all ports and pools are dropped before the Eal (owner order in main), and
        // workers have been waited for.
        unsafe { ffi::rte_eal_cleanup() };
    }
}

/// Current TSC value.
#[inline]
pub fn tsc() -> u64 {
    // SAFETY: reads the time-stamp counter; no preconditions.
    unsafe { ffi::sy_tsc() }
}

/// A packet mempool. Shared by all cores (DPDK mempools are thread-safe with per-lcore caches).
pub struct Mempool {
    ptr: NonNull<ffi::rte_mempool>,
}

// SAFETY: rte_mempool is designed for concurrent use from all lcores.
unsafe impl Send for Mempool {}

// SAFETY: as above; all operations through &Mempool are thread-safe DPDK calls.
unsafe impl Sync for Mempool {}

impl Mempool {
    pub fn new(name: &str, n: u32, cache: u32) -> Result<Mempool, DpdkError> {
        let cname = CString::new(name).expect("pool name has no NUL");
        // SAFETY: valid name; sizes are plain integers; EAL is initialised by the caller.
        let p = unsafe {
            ffi::rte_pktmbuf_pool_create(
                cname.as_ptr(),
                n,
                cache,
                0,
                ffi::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
                ffi::SOCKET_ID_ANY,
            )
        };
        NonNull::new(p)
            .map(|ptr| Mempool { ptr })
            .ok_or_else(|| DpdkError::Mempool(name.into(), last_errno()))
    }

    /// Allocates an empty mbuf, or `None` when the pool is exhausted.
    #[inline]
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool pointer is valid for the pool's lifetime.
        NonNull::new(unsafe { ffi::sy_pktmbuf_alloc(self.ptr.as_ptr()) }).map(Mbuf)
    }

    /// Mbufs currently free in the pool (management only).
    pub fn available(&self) -> u32 {
        // SAFETY: valid pool.
        unsafe { ffi::rte_mempool_avail_count(self.ptr.as_ptr()) }
    }
}

impl Drop for Mempool {
    fn drop(&mut self) {
        // SAFETY: ports using the pool are stopped and closed before (drop order in main).
        unsafe { ffi::rte_mempool_free(self.ptr.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn eq_mask8_marks_exactly_the_equal_lanes() {
        for pattern in 0u32..256 {
            let a: [u32; 8] = std::array::from_fn(|i| {
                if pattern >> i & 1 == 1 {
                    7
                } else {
                    i as u32 + 100
                }
            });
            assert_eq!(super::eq_mask8(&a, 7), pattern);
        }
        assert_eq!(super::eq_mask8(&[u32::MAX; 8], u32::MAX), 0xff);
    }
}
