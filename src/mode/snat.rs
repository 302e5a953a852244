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

/// One worker's free local ports, per SNAT address. Preallocated; alloc/free never allocate.
pub struct SnatPortPool {
    free: Vec<Vec<u16>>,
}

impl SnatPortPool {
    pub fn new(addresses: usize, worker: usize, workers: usize, range: (u16, u16)) -> Self {
        let lo = slice_start(worker, workers, range);
        let hi = slice_start(worker + 1, workers, range); // exclusive
        let ports: Vec<u16> = (lo..hi).rev().map(|p| p as u16).collect();
        SnatPortPool {
            free: (0..addresses).map(|_| ports.clone()).collect(),
        }
    }

    /// A free (address, port) among `candidates`, trying them from `start` round.
    #[inline]
    pub fn alloc(&mut self, candidates: &[SnatIdx], start: usize) -> Option<(SnatIdx, u16)> {
        let n = candidates.len();
        for k in 0..n {
            let idx = candidates[(start + k) % n];
            if let Some(p) = self.free.get_mut(usize::from(idx.0)).and_then(Vec::pop) {
                return Some((idx, p));
            }
        }
        None
    }

    #[inline]
    pub fn free(&mut self, idx: SnatIdx, port: u16) {
        if let Some(f) = self.free.get_mut(usize::from(idx.0)) {
            // Capacity is the whole slice, so this push never reallocates.
            debug_assert!(f.len() < f.capacity());
            f.push(port);
        }
    }

    /// Free ports of one address (diagnostics).
    pub fn available(&self, idx: SnatIdx) -> usize {
        self.free.get(usize::from(idx.0)).map_or(0, Vec::len)
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
