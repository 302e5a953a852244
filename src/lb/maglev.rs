//! Maglev consistent hashing (Eisenbud et al., NSDI 2016) with weights.
//!
//! Each backend walks its own permutation of the `M` table slots (offset and skip derived from
//! its address by a fixed hash, so every instance builds the same table for the same backends)
//! and, in turn, claims the next free slot of its permutation. A backend of weight `w` takes
//! `w` turns per round, so shares match weights up to one round of rounding. Backends are
//! ordered by address before filling, so configuration order does not change the table.

use std::net::Ipv4Addr;

use crate::types::fmix64;

/// A backend as the table sees it: the address keys its permutation, `weight` its share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaglevBackend {
    pub addr: Ipv4Addr,
    pub weight: u32,
}

/// The lookup table: slot -> index into the backend list the table was built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaglevTable {
    slots: Box<[u16]>,
}

/// Marks a slot of a table whose backends all have weight 0.
pub const NO_BACKEND: u16 = u16::MAX;

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl MaglevTable {
    /// Builds the table of prime size `m` for `backends` (index i in the result refers to
    /// `backends[i]`). At most 65535 backends.
    pub fn build(backends: &[MaglevBackend], m: u32) -> MaglevTable {
        let m64 = u64::from(m);
        let mut slots = vec![NO_BACKEND; m as usize].into_boxed_slice();
        let mut order: Vec<usize> = (0..backends.len())
            .filter(|&i| backends[i].weight > 0)
            .collect();
        if order.is_empty() || m == 0 {
            return MaglevTable { slots };
        }
        order.sort_by_key(|&i| u32::from(backends[i].addr));
        let g = order.iter().fold(0, |g, &i| gcd(g, backends[i].weight));
        let perm: Vec<(u64, u64)> = order
            .iter()
            .map(|&i| {
                let a = u64::from(u32::from(backends[i].addr));
                let offset = fmix64(a ^ 0x5157_4c4f_4144_4241) % m64;
                let skip = fmix64(a.wrapping_add(0x6d61_676c_6576_0001)) % (m64 - 1) + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0u64; order.len()];
        let mut filled = 0u64;
        'fill: loop {
            for (n, &i) in order.iter().enumerate() {
                let (offset, skip) = perm[n];
                for _ in 0..backends[i].weight / g {
                    let mut c = (offset + next[n] * skip) % m64;
                    while slots[c as usize] != NO_BACKEND {
                        next[n] += 1;
                        c = (offset + next[n] * skip) % m64;
                    }
                    slots[c as usize] = i as u16;
                    next[n] += 1;
                    filled += 1;
                    if filled == m64 {
                        break 'fill;
                    }
                }
            }
        }
        MaglevTable { slots }
    }

    /// The backend index for a flow hash, or `None` when every backend has weight 0.
    #[inline]
    pub fn lookup(&self, hash: u64) -> Option<u16> {
        let s = self.slots[(hash % self.slots.len() as u64) as usize];
        (s != NO_BACKEND).then_some(s)
    }

    pub fn size(&self) -> usize {
        self.slots.len()
    }

    /// Slots held by each backend index (for tests and diagnostics).
    pub fn shares(&self, n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &s in self.slots.iter() {
            if s != NO_BACKEND {
                c[usize::from(s)] += 1;
            }
        }
        c
    }
}

#[cfg(test)]
mod tests;
