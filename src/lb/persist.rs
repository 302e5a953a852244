//! Source-address persistence ("sticky" affinity): per core, (service, masked client
//! address) -> backend for `timeout` after the last connection that used it.
//!
//! Cores agree without talking: a client subnet's first backend is chosen by a weighted
//! consistent hash of the masked address (the service's Maglev table), which every core and
//! every instance computes alike; the template then keeps that choice while it lives, even if
//! the backend set or weights change. Fixed-size 4-way buckets allocated at start: when a
//! bucket is full of live templates, the least recently used one is replaced (counted).

use crate::types::{BackendId, fmix64};

#[derive(Clone, Copy, Default)]
struct Entry {
    /// (service + 1) << 32 | masked address; 0 = free.
    key: u64,
    backend: u32,
    last_used: u32,
}

const WAYS: usize = 4;

pub struct PersistTable {
    e: Box<[Entry]>,
    n_buckets: u64,
    pub evicted: u64,
}

/// Masks a client address to the persistence netmask.
#[inline]
pub fn masked(client: u32, netmask: u8) -> u32 {
    if netmask == 0 {
        0
    } else {
        client & (u32::MAX << (32 - u32::from(netmask)))
    }
}

/// Hash of a masked client address, for the consistent first pick.
#[inline]
pub fn source_hash(masked: u32) -> u64 {
    fmix64(u64::from(masked) ^ 0x5357_5943_4841_5348)
}

impl PersistTable {
    pub fn new(capacity: usize) -> Self {
        let n = capacity.div_ceil(WAYS).max(1);
        PersistTable {
            e: vec![Entry::default(); n * WAYS].into_boxed_slice(),
            n_buckets: n as u64,
            evicted: 0,
        }
    }

    fn bucket(&self, key: u64) -> usize {
        (((fmix64(key) & 0xffff_ffff) * self.n_buckets) >> 32) as usize * WAYS
    }

    /// The live template's backend, refreshed to `now`.
    #[inline]
    pub fn get(
        &mut self,
        service: u16,
        masked: u32,
        now: u32,
        timeout_ms: u32,
    ) -> Option<BackendId> {
        let key = ((u64::from(service) + 1) << 32) | u64::from(masked);
        let b = self.bucket(key);
        for e in &mut self.e[b..b + WAYS] {
            if e.key == key {
                if now.wrapping_sub(e.last_used) > timeout_ms {
                    e.key = 0;
                    return None;
                }
                e.last_used = now;
                return Some(BackendId(e.backend));
            }
        }
        None
    }

    pub fn put(
        &mut self,
        service: u16,
        masked: u32,
        backend: BackendId,
        now: u32,
        timeout_ms: u32,
    ) {
        let key = ((u64::from(service) + 1) << 32) | u64::from(masked);
        let b = self.bucket(key);
        let bucket = &mut self.e[b..b + WAYS];
        let slot = bucket
            .iter()
            .position(|e| e.key == key || e.key == 0 || now.wrapping_sub(e.last_used) > timeout_ms)
            .unwrap_or_else(|| {
                self.evicted += 1;
                (0..WAYS)
                    .max_by_key(|&i| now.wrapping_sub(bucket[i].last_used))
                    .unwrap_or(0)
            });
        bucket[slot] = Entry {
            key,
            backend: backend.0,
            last_used: now,
        };
    }

    /// Every template still alive at `now` (by its service's timeout, `None` for a service
    /// without persistence): (service, masked address, backend). A walk over the whole table
    /// (HA bulk resync), not for the hot path.
    pub fn live<'a>(
        &'a self,
        now: u32,
        timeout_ms: impl Fn(u16) -> Option<u32> + 'a,
    ) -> impl Iterator<Item = (u16, u32, BackendId)> + 'a {
        self.e.iter().filter_map(move |e| {
            if e.key == 0 {
                return None;
            }
            let service = ((e.key >> 32) - 1) as u16;
            let t = timeout_ms(service)?;
            (now.wrapping_sub(e.last_used) <= t).then_some((
                service,
                e.key as u32,
                BackendId(e.backend),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_lives_until_timeout_after_last_use() {
        let mut t = PersistTable::new(64);
        let m = masked(0x0a14_0902, 24);
        assert_eq!(m, 0x0a14_0900);
        assert_eq!(t.get(0, m, 0, 1000), None);
        t.put(0, m, BackendId(3), 0, 1000);
        assert_eq!(t.get(0, m, 900, 1000), Some(BackendId(3)));
        assert_eq!(
            t.get(0, m, 1800, 1000),
            Some(BackendId(3)),
            "refreshed at 900"
        );
        assert_eq!(t.get(0, m, 2900, 1000), None);
        // Per service.
        t.put(1, m, BackendId(4), 0, 1000);
        assert_eq!(t.get(0, m, 10, 1000), None);
        assert_eq!(t.get(1, m, 10, 1000), Some(BackendId(4)));
    }

    #[test]
    fn full_table_replaces_least_recently_used() {
        let mut t = PersistTable::new(4);
        for i in 0..5u32 {
            t.put(0, i << 8, BackendId(i), i, 1_000_000);
        }
        assert_eq!(t.evicted, 1);
        assert_eq!(t.get(0, 4 << 8, 10, 1_000_000), Some(BackendId(4)));
        assert_eq!(t.get(0, 0, 10, 1_000_000), None, "oldest went");
    }
}
