//! Source-NAT ports and which core owns a NAT conn.
//!
//! Ownership rule (so that both directions of a NAT conn meet on one core without locks):
//! the owner of a conn is `owner_of(client address, client port)`. The owner allocates the
//! conn's local port from its own slice of `[nat] port_min..=port_max`, so a reply to
//! (SNAT address, local port) can be sent to its owner by looking at the port alone
//! ([`port_owner`]); gateway-mode replies carry the client's address and port as their
//! destination, so [`owner_of`] applies to them directly. A packet that lands on another core
//! (RSS hashes the tuple it sees, not the conn) is handed to the owner over an SPSC ring.

use crate::types::{SnatIdx, fmix64};

/// Owner worker of a conn from its client endpoint.
#[inline]
pub fn owner_of(client: u32, client_port: u16, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    (fmix64((u64::from(client) << 16) | u64::from(client_port)) % workers as u64) as usize
}

/// First port of worker `k`'s slice of `range`.
fn slice_start(k: usize, workers: usize, range: (u16, u16)) -> u32 {
    let n = u32::from(range.1 - range.0) + 1;
    u32::from(range.0) + (k as u32 * n) / workers as u32
}

/// Owner worker of a local (SNAT) port.
#[inline]
pub fn port_owner(port: u16, workers: usize, range: (u16, u16)) -> Option<usize> {
    if port < range.0 || port > range.1 {
        return None;
    }
    (0..workers)
        .rev()
        .find(|&k| u32::from(port) >= slice_start(k, workers, range))
}

/// One worker's free local ports, per SNAT address: a bitmap of its slice of the range per
/// address. Handed out in ascending order from where the last one was taken, wrapping, so a
/// port just given back is reused last (the backend may still hold the old conn in
/// TIME_WAIT). Preallocated; alloc/free/take never allocate.
pub struct SnatPortPool {
    /// First port of this worker's slice.
    lo: u32,
    /// Ports in the slice.
    len: u32,
    ports: Vec<Ports>,
}

/// The free ports of one address (bit i: port `lo + i` is free).
struct Ports {
    bits: Box<[u64]>,
    free: u32,
    /// Where the next search starts (an offset into the slice).
    cursor: u32,
}

impl SnatPortPool {
    pub fn new(addresses: usize, worker: usize, workers: usize, range: (u16, u16)) -> Self {
        let lo = slice_start(worker, workers, range);
        let hi = slice_start(worker + 1, workers, range); // exclusive
        let len = hi - lo;
        let words = (len as usize).div_ceil(64).max(1);
        let full: Box<[u64]> = (0..words)
            .map(|w| {
                let first = w as u32 * 64;
                match len.saturating_sub(first) {
                    n if n >= 64 => u64::MAX,
                    n => (1u64 << n) - 1,
                }
            })
            .collect();
        SnatPortPool {
            lo,
            len,
            ports: (0..addresses)
                .map(|_| Ports {
                    bits: full.clone(),
                    free: len,
                    cursor: 0,
                })
                .collect(),
        }
    }

    /// A free (address, port) among `candidates`, trying them from `start` round.
    #[inline]
    pub fn alloc(&mut self, candidates: &[SnatIdx], start: usize) -> Option<(SnatIdx, u16)> {
        let n = candidates.len();
        for k in 0..n {
            let idx = candidates[(start + k) % n];
            let len = self.len;
            if let Some(p) = self.ports.get_mut(usize::from(idx.0))
                && let Some(off) = p.take_next(len)
            {
                return Some((idx, (self.lo + off) as u16));
            }
        }
        None
    }

    /// Takes `port` of address `idx` if it is free (a conn synced from the HA peer keeps the
    /// port the peer gave it); false if it is not this worker's or already taken.
    pub fn take(&mut self, idx: SnatIdx, port: u16) -> bool {
        let off = u32::from(port).wrapping_sub(self.lo);
        match self.ports.get_mut(usize::from(idx.0)) {
            Some(p) if off < self.len => p.take(off),
            _ => false,
        }
    }

    /// Gives `port` of address `idx` back (a port that is free already stays free).
    #[inline]
    pub fn free(&mut self, idx: SnatIdx, port: u16) {
        let off = u32::from(port).wrapping_sub(self.lo);
        if let Some(p) = self.ports.get_mut(usize::from(idx.0))
            && off < self.len
        {
            let (w, b) = ((off / 64) as usize, off % 64);
            if p.bits[w] & (1 << b) == 0 {
                p.bits[w] |= 1 << b;
                p.free += 1;
            }
        }
    }

    /// Percent of this worker's ports taken, over all its addresses.
    pub fn used_percent(&self) -> u32 {
        let total = u64::from(self.len) * self.ports.len() as u64;
        if total == 0 {
            return 0;
        }
        let free: u64 = self.ports.iter().map(|p| u64::from(p.free)).sum();
        ((total - free) * 100 / total) as u32
    }

    /// Free ports of one address (diagnostics).
    pub fn available(&self, idx: SnatIdx) -> usize {
        self.ports
            .get(usize::from(idx.0))
            .map_or(0, |p| p.free as usize)
    }
}

impl Ports {
    /// The first free offset at or after the cursor (wrapping), taken.
    #[inline]
    fn take_next(&mut self, len: u32) -> Option<u32> {
        if self.free == 0 {
            return None;
        }
        let n = self.bits.len();
        let mut w = (self.cursor / 64) as usize;
        let mut mask = !0u64 << (self.cursor % 64);
        for _ in 0..=n {
            let m = self.bits[w] & mask;
            if m != 0 {
                let off = w as u32 * 64 + m.trailing_zeros();
                self.take(off);
                self.cursor = if off + 1 >= len { 0 } else { off + 1 };
                return Some(off);
            }
            w = (w + 1) % n;
            mask = !0;
        }
        None
    }

    fn take(&mut self, off: u32) -> bool {
        let (w, b) = ((off / 64) as usize, off % 64);
        if self.bits[w] & (1 << b) == 0 {
            return false;
        }
        self.bits[w] &= !(1 << b);
        self.free -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_partition_the_range_and_owners_match() {
        let range = (1024, 65535);
        for workers in [1, 2, 3, 7] {
            let mut seen = 0;
            for k in 0..workers {
                let mut p = SnatPortPool::new(1, k, workers, range);
                while let Some((_, port)) = p.alloc(&[SnatIdx(0)], 0) {
                    assert_eq!(port_owner(port, workers, range), Some(k));
                    seen += 1;
                }
            }
            assert_eq!(seen, 65535 - 1024 + 1, "{workers} workers");
        }
        assert_eq!(port_owner(80, 2, range), None);
    }

    #[test]
    fn exhaustion_then_free_makes_room() {
        let mut p = SnatPortPool::new(2, 0, 1, (2000, 2002));
        let c = [SnatIdx(0), SnatIdx(1)];
        let got: Vec<_> = (0..6).map(|_| p.alloc(&c, 0).unwrap()).collect();
        assert_eq!(got[0], (SnatIdx(0), 2000), "lowest port first");
        assert!(
            got.contains(&(SnatIdx(1), 2002)),
            "second address used after the first"
        );
        assert_eq!(p.alloc(&c, 0), None);
        p.free(SnatIdx(1), 2001);
        assert_eq!(p.alloc(&c, 0), Some((SnatIdx(1), 2001)));
    }

    #[test]
    fn ports_go_in_ascending_order_a_freed_one_last_and_a_synced_one_is_taken() {
        let mut p = SnatPortPool::new(1, 0, 1, (1000, 1199));
        let a = [SnatIdx(0)];
        let got: Vec<u16> = (0..5).map(|_| p.alloc(&a, 0).unwrap().1).collect();
        assert_eq!(got, [1000, 1001, 1002, 1003, 1004]);
        p.free(SnatIdx(0), 1001);
        assert_eq!(
            p.alloc(&a, 0).unwrap().1,
            1005,
            "a freed port is reused last"
        );
        // A conn synced from the peer keeps its port: taken, then skipped by alloc.
        assert!(p.take(SnatIdx(0), 1006));
        assert!(!p.take(SnatIdx(0), 1006), "taken twice");
        assert!(!p.take(SnatIdx(0), 999), "not in the slice");
        assert_eq!(p.alloc(&a, 0).unwrap().1, 1007);
        assert_eq!(p.available(SnatIdx(0)), 200 - 7);
        // Free twice: counted once.
        p.free(SnatIdx(0), 1000);
        p.free(SnatIdx(0), 1000);
        assert_eq!(p.available(SnatIdx(0)), 200 - 6);
    }

    #[test]
    fn owner_is_stable_and_spreads() {
        let mut count = [0; 2];
        for port in 0..1000u16 {
            let o = owner_of(0x0a14_0902, 30000 + port, 2);
            assert_eq!(o, owner_of(0x0a14_0902, 30000 + port, 2));
            count[o] += 1;
        }
        assert!(count[0] > 400 && count[1] > 400, "{count:?}");
        assert_eq!(owner_of(1, 2, 1), 0);
    }
}
