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
mod tests {
    use super::*;

    const M: u32 = 65537;

    fn backends(n: u8, weight: impl Fn(u8) -> u32) -> Vec<MaglevBackend> {
        (0..n)
            .map(|i| MaglevBackend {
                addr: Ipv4Addr::new(10, 20, 0, 11 + i),
                weight: weight(i),
            })
            .collect()
    }

    #[test]
    fn equal_weights_share_equally_within_one_percent() {
        let b = backends(7, |_| 1);
        let t = MaglevTable::build(&b, M);
        for s in t.shares(b.len()) {
            let share = s as f64 / f64::from(M);
            assert!((share - 1.0 / 7.0).abs() < 0.01, "share {share}");
        }
    }

    #[test]
    fn weights_are_honoured_within_one_percent() {
        let b = backends(4, |i| [1, 2, 3, 10][usize::from(i)]);
        let total: u32 = b.iter().map(|x| x.weight).sum();
        let t = MaglevTable::build(&b, M);
        for (i, s) in t.shares(b.len()).into_iter().enumerate() {
            let share = s as f64 / f64::from(M);
            let want = f64::from(b[i].weight) / f64::from(total);
            assert!(
                (share - want).abs() < 0.01,
                "backend {i}: {share} vs {want}"
            );
        }
    }

    #[test]
    fn zero_weight_backends_get_nothing() {
        let b = backends(3, |i| if i == 1 { 0 } else { 1 });
        let t = MaglevTable::build(&b, M);
        assert_eq!(t.shares(3)[1], 0);
        let none = MaglevTable::build(&backends(2, |_| 0), M);
        assert_eq!(none.lookup(12345), None);
    }

    #[test]
    fn order_of_backends_does_not_matter() {
        let b = backends(5, |i| u32::from(i) + 1);
        let mut r = b.clone();
        r.reverse();
        let t1 = MaglevTable::build(&b, M);
        let t2 = MaglevTable::build(&r, M);
        // Indices differ (they point into differently ordered lists): compare addresses.
        for slot in 0..M as u64 {
            let a = b[usize::from(t1.lookup(slot).unwrap())].addr;
            let c = r[usize::from(t2.lookup(slot).unwrap())].addr;
            assert_eq!(a, c, "slot {slot}");
        }
    }

    #[test]
    fn removing_one_of_n_moves_about_one_nth() {
        let n = 10u8;
        let b = backends(n, |_| 1);
        let t1 = MaglevTable::build(&b, M);
        let removed = 4usize;
        let fewer: Vec<_> = b
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != removed)
            .map(|(_, x)| *x)
            .collect();
        let t2 = MaglevTable::build(&fewer, M);
        let mut moved = 0u64;
        for slot in 0..M as u64 {
            let before = b[usize::from(t1.lookup(slot).unwrap())].addr;
            let after = fewer[usize::from(t2.lookup(slot).unwrap())].addr;
            if before != after {
                moved += 1;
            }
        }
        let frac = moved as f64 / f64::from(M);
        let ideal = 1.0 / f64::from(n);
        // The removed backend's slots must move; Maglev moves only a little more than that.
        assert!(frac >= ideal - 0.005, "moved {frac}");
        assert!(frac <= ideal * 1.5, "moved {frac}, ideal {ideal}");
    }

    #[test]
    fn same_backends_same_table() {
        let b = backends(3, |_| 1);
        assert_eq!(MaglevTable::build(&b, M), MaglevTable::build(&b, M));
    }
}
