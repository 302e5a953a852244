//! Safe wrappers over the slice of DPDK Switchyard uses. This module (with `ffi`) is the only
//! place in the crate with `unsafe`; every block says why it is sound.
//!
//! Ownership: [`Mbuf`] owns one packet buffer and frees it on drop; an rx burst fills an array
//! of `Option<Mbuf>` directly (same layout as DPDK's `rte_mbuf *` array), and a [`TxBuffer`]
//! hands ownership to the driver for what it sends and bulk-frees what it does not.

#![allow(unsafe_code)]

mod ffi;
mod huge;

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_void};
use std::ptr::NonNull;

pub use huge::HugeSlice;
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

/// One owned packet buffer. `repr(transparent)` so `Option<Mbuf>` has the layout of
/// `struct rte_mbuf *` (NULL = None), which lets bursts go straight into Rust arrays.
#[repr(transparent)]
pub struct Mbuf(NonNull<ffi::rte_mbuf>);

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
    slots: [Option<Mbuf>; N],
    len: usize,
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

/// Link status.
#[derive(Debug, Clone, Copy)]
pub struct Link {
    pub up: bool,
    pub speed_mbps: u32,
}

/// A configured and started ethdev port with `queues` rx and tx queues.
pub struct Port {
    pub id: PortId,
    pub name: String,
    pub mac: MacAddr,
    pub queues: u16,
    pub rss: bool,
    started: bool,
}

/// Lists the names of all probed ports.
pub fn port_names() -> Vec<String> {
    let mut v = Vec::new();
    for id in 0..ffi::RTE_MAX_ETHPORTS as u16 {
        // SAFETY: plain query.
        if unsafe { ffi::rte_eth_dev_is_valid_port(id) } == 0 {
            continue;
        }
        let mut buf = [0 as c_char; ffi::RTE_ETH_NAME_MAX_LEN as usize];
        // SAFETY: buf has RTE_ETH_NAME_MAX_LEN bytes as the API requires.
        if unsafe { ffi::rte_eth_dev_get_name_by_port(id, buf.as_mut_ptr()) } == 0 {
            // SAFETY: DPDK NUL-terminates the name inside buf.
            v.push(
                unsafe { CStr::from_ptr(buf.as_ptr()) }
                    .to_string_lossy()
                    .into(),
            );
        }
    }
    v
}

impl Port {
    /// Finds the port by DPDK name (`net_af_packet0`, a PCI address), configures `queues` rx
    /// and tx queues (RSS when the device offers it and there is more than one queue), sets
    /// the MAC if asked, enables promiscuous mode and starts it.
    pub fn open(
        name: &str,
        queues: u16,
        pool: &Mempool,
        rx_desc: u16,
        tx_desc: u16,
        mac: Option<[u8; 6]>,
    ) -> Result<Port, DpdkError> {
        let cname = CString::new(name).map_err(|_| DpdkError::NoSuchPort {
            name: name.into(),
            present: port_names().join(", "),
        })?;
        let mut id = 0u16;
        // SAFETY: valid C string and out-pointer.
        if unsafe { ffi::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) } != 0 {
            let present = port_names();
            return Err(DpdkError::NoSuchPort {
                name: name.into(),
                present: if present.is_empty() {
                    "none; check --vdev/-a in [dpdk] eal_args".into()
                } else {
                    present.join(", ")
                },
            });
        }
        let perr = |what: &'static str, rc: c_int| DpdkError::Port {
            name: name.into(),
            what,
            reason: errno_str(rc),
        };
        let mut info = ffi::rte_eth_dev_info::default();
        // SAFETY: valid port id and out-struct.
        let rc = unsafe { ffi::rte_eth_dev_info_get(id, &mut info) };
        if rc != 0 {
            return Err(perr("dev_info_get", rc));
        }
        for (dir, max) in [("rx", info.max_rx_queues), ("tx", info.max_tx_queues)] {
            if max < queues {
                return Err(DpdkError::Queues {
                    name: name.into(),
                    dir,
                    max,
                    need: queues,
                });
            }
        }
        let mut conf = ffi::rte_eth_conf::default();
        // SAFETY: returns constants.
        let (want_hf, rss_hash_offload) =
            unsafe { (ffi::sy_rss_hf_ipv4(), ffi::sy_rx_offload_rss_hash()) };
        let hf = info.flow_type_rss_offloads & want_hf;
        let rss = queues > 1 && hf != 0;
        if rss {
            conf.rxmode.mq_mode = ffi::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_hf = hf;
        }
        if info.rx_offload_capa & rss_hash_offload != 0 {
            conf.rxmode.offloads |= rss_hash_offload;
        }
        // SAFETY: valid port id and fully initialised conf.
        let rc = unsafe { ffi::rte_eth_dev_configure(id, queues, queues, &conf) };
        if rc != 0 {
            return Err(perr("configure", rc));
        }
        // SAFETY: plain query.
        let socket = unsafe { ffi::rte_eth_dev_socket_id(id) };
        let socket = if socket < 0 { 0 } else { socket as u32 };
        for q in 0..queues {
            // SAFETY: port configured with `queues` queues; NULL conf = driver defaults; the
            // pool outlives the port (drop order in main).
            let rc = unsafe {
                ffi::rte_eth_rx_queue_setup(
                    id,
                    q,
                    rx_desc,
                    socket,
                    std::ptr::null(),
                    pool.ptr.as_ptr(),
                )
            };
            if rc != 0 {
                return Err(perr("rx_queue_setup", rc));
            }
            // SAFETY: as above.
            let rc =
                unsafe { ffi::rte_eth_tx_queue_setup(id, q, tx_desc, socket, std::ptr::null()) };
            if rc != 0 {
                return Err(perr("tx_queue_setup", rc));
            }
        }
        // Devices that cannot change their MAC (net_pcap, some VFs) still work with the
        // configured one: the port is promiscuous and the balancer writes its own source MAC.
        let mut soft_mac = None;
        if let Some(m) = mac {
            let mut a = ffi::rte_ether_addr { addr_bytes: m };
            // SAFETY: valid port and address struct.
            let rc = unsafe { ffi::rte_eth_dev_default_mac_addr_set(id, &mut a) };
            if rc == -(libc_enotsup()) {
                tracing::warn!(
                    port = name,
                    "device cannot set its MAC; using it in software only"
                );
                soft_mac = Some(m);
            } else if rc != 0 {
                return Err(perr("setting the MAC address", rc));
            }
        }
        // SAFETY: configured port.
        let rc = unsafe { ffi::rte_eth_dev_start(id) };
        if rc != 0 {
            return Err(perr("start", rc));
        }
        // Promiscuous mode: a one-arm balancer must see frames for VIP MACs it answers for;
        // some vdevs do not support it, which is harmless, so the result is only logged.
        // SAFETY: started port.
        let prc = unsafe { ffi::rte_eth_promiscuous_enable(id) };
        if prc != 0 {
            tracing::debug!(
                port = name,
                "promiscuous mode not supported: {}",
                errno_str(prc)
            );
        }
        let mut a = ffi::rte_ether_addr::default();
        // SAFETY: valid port and out-struct.
        let rc = unsafe { ffi::rte_eth_macaddr_get(id, &mut a) };
        if rc != 0 {
            return Err(perr("macaddr_get", rc));
        }
        Ok(Port {
            id: PortId(id),
            name: name.into(),
            mac: MacAddr(soft_mac.unwrap_or(a.addr_bytes)),
            queues,
            rss,
            started: true,
        })
    }

    pub fn link(&self) -> Link {
        let mut l = ffi::rte_eth_link::default();
        // SAFETY: valid port and out-struct.
        unsafe { ffi::rte_eth_link_get_nowait(self.id.0, &mut l) };
        Link {
            up: l.link_status() != 0,
            speed_mbps: l.link_speed,
        }
    }

    /// The device's extended statistics, name -> value.
    pub fn xstats(&self) -> Vec<(String, u64)> {
        // SAFETY: a NULL array asks for the count.
        let n = unsafe { ffi::rte_eth_xstats_get_names(self.id.0, std::ptr::null_mut(), 0) };
        if n <= 0 {
            return Vec::new();
        }
        let n = n as usize;
        let mut names = vec![ffi::rte_eth_xstat_name::default(); n];
        let mut vals = vec![ffi::rte_eth_xstat::default(); n];
        // SAFETY: arrays have room for n entries.
        let got = unsafe {
            let a = ffi::rte_eth_xstats_get_names(self.id.0, names.as_mut_ptr(), n as u32);
            let b = ffi::rte_eth_xstats_get(self.id.0, vals.as_mut_ptr(), n as u32);
            a.min(b)
        };
        if got <= 0 {
            return Vec::new();
        }
        vals.iter()
            .take(got as usize)
            .filter_map(|v| {
                let nm = names.get(v.id as usize)?;
                // SAFETY: xstat names are NUL-terminated within their fixed array.
                let s = unsafe { CStr::from_ptr(nm.name.as_ptr()) };
                Some((s.to_string_lossy().into_owned(), v.value))
            })
            .collect()
    }

    /// Stops the port (rx/tx cease); called at shutdown after workers returned.
    pub fn stop(&mut self) {
        if self.started {
            // SAFETY: valid started port; workers no longer poll it.
            unsafe {
                ffi::rte_eth_dev_stop(self.id.0);
            }
            self.started = false;
        }
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        self.stop();
        // SAFETY: stopped port, no queue in use.
        unsafe {
            ffi::rte_eth_dev_close(self.id.0);
        }
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
