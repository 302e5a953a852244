//! Per-core flow (connection) table: fixed capacity chosen at start, no allocation after,
//! owned by exactly one worker so it needs no locks.
//!
//! Layout: 2-choice hashing over buckets of 4 entries of 32 bytes (one bucket = two cache
//! lines). A key lives in one of two buckets picked by the high and low halves of one 64-bit
//! hash; when both are full, residents are moved to their other bucket (a cuckoo search two
//! steps deep) to make room. Entries carry their last-seen time; an entry idle for longer than its
//! state's timeout is dead and its slot is reused by the next insert or reclaimed by the
//! incremental [`FlowTable::sweep`], which keeps the `active` count honest.
//!
//! Memory: `capacity * 9/8` slots of 32 bytes (rounded up to whole buckets), so the table is
//! at most ~89 % loaded when `capacity` flows are live, and costs 36 bytes per flow. Buckets
//! are picked with Lemire's multiply-shift range reduction, so their count need not be a
//! power of two.

use std::net::Ipv4Addr;

/// The 5-tuple a flow is keyed on, in the direction the client sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    pub src: u32,
    pub dst: u32,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
}

impl FlowKey {
    pub fn new(src: Ipv4Addr, dst: Ipv4Addr, src_port: u16, dst_port: u16, proto: u8) -> Self {
        Self {
            src: src.into(),
            dst: dst.into(),
            src_port,
            dst_port,
            proto,
        }
    }

    /// One 64-bit hash per packet, used for the flow table and for Maglev. It is a fixed
    /// function (not the NIC's RSS hash, not a seeded std hasher) so that every Switchyard
    /// instance in front of the same servers sends a flow to the same backend.
    #[inline]
    pub fn hash(&self) -> u64 {
        let a = (u64::from(self.src) << 32) | u64::from(self.dst);
        let b = (u64::from(self.src_port) << 32)
            | (u64::from(self.dst_port) << 16)
            | u64::from(self.proto);
        fmix64(a ^ fmix64(b.wrapping_add(0x9e37_79b9_7f4a_7c15)))
    }
}

/// MurmurHash3's 64-bit finaliser: a cheap, well-mixed bijection.
#[inline]
pub fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

/// Connection state, which picks the idle timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FlowState {
    /// TCP: only a SYN seen.
    TcpSyn = 0,
    TcpEstablished = 1,
    /// TCP: FIN or RST seen.
    TcpClosing = 2,
    Udp = 3,
}

impl FlowState {
    fn from_u8(v: u8) -> FlowState {
        match v {
            0 => FlowState::TcpSyn,
            1 => FlowState::TcpEstablished,
            2 => FlowState::TcpClosing,
            _ => FlowState::Udp,
        }
    }
}

/// Idle timeouts in milliseconds, indexed by `FlowState as usize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts(pub [u32; 4]);

impl Timeouts {
    pub fn from_config(t: &crate::config::FlowTimeouts) -> Self {
        let ms = |s: u32| s.saturating_mul(1000);
        Timeouts([
            ms(t.tcp_syn_s),
            ms(t.tcp_established_s),
            ms(t.tcp_closing_s),
            ms(t.udp_s),
        ])
    }
}

/// One flow: 32 bytes. `proto == 0` marks a free slot.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C)]
pub struct FlowEntry {
    src: u32,
    dst: u32,
    src_port: u16,
    dst_port: u16,
    proto: u8,
    state: u8,
    _pad: u16,
    /// Milliseconds, wrapping.
    last_seen: u32,
    /// Stable backend id (see `lb::BackendId`).
    pub backend: u32,
    pub service: u16,
    _pad2: u16,
    /// Reserved for the NAT modes (local port / address index).
    pub aux: u32,
}

const _: () = assert!(std::mem::size_of::<FlowEntry>() == 32);

impl FlowEntry {
    fn key(&self) -> FlowKey {
        FlowKey {
            src: self.src,
            dst: self.dst,
            src_port: self.src_port,
            dst_port: self.dst_port,
            proto: self.proto,
        }
    }
    #[inline]
    fn matches(&self, k: &FlowKey) -> bool {
        self.src == k.src
            && self.dst == k.dst
            && self.src_port == k.src_port
            && self.dst_port == k.dst_port
            && self.proto == k.proto
    }
    pub fn state(&self) -> FlowState {
        FlowState::from_u8(self.state)
    }
    pub fn set_state(&mut self, s: FlowState) {
        self.state = s as u8;
    }
    #[inline]
    fn is_free(&self) -> bool {
        self.proto == 0
    }
    #[inline]
    fn expired(&self, now: u32, t: &Timeouts) -> bool {
        now.wrapping_sub(self.last_seen) > t.0[usize::from(self.state & 3)]
    }
    pub fn touch(&mut self, now: u32) {
        self.last_seen = now;
    }
}

const WAYS: usize = 4;
/// Cuckoo search depth when both candidate buckets are full.
const KICK_DEPTH: u8 = 2;

#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Bucket {
    e: [FlowEntry; WAYS],
}

/// Outcome counters of the table, owned by the worker and copied into its stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowCounters {
    pub created: u64,
    pub expired: u64,
    pub full: u64,
}

/// What a new flow starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewFlow {
    pub state: FlowState,
    pub service: u16,
    /// Stable backend id (see `lb::BackendId`).
    pub backend: u32,
}

/// The table is out of room for this key (both candidate buckets hold live flows, or the
/// configured capacity is reached).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

pub struct FlowTable {
    buckets: Box<[Bucket]>,
    n_buckets: u64,
    capacity: usize,
    active: usize,
    sweep_pos: usize,
    pub counters: FlowCounters,
}

impl FlowTable {
    /// Allocates the whole table up front (this is the only allocation it ever makes).
    pub fn new(capacity: usize) -> Self {
        let slots = (capacity + capacity / 8).max(WAYS * 2);
        let n = slots.div_ceil(WAYS);
        Self {
            buckets: vec![Bucket::default(); n].into_boxed_slice(),
            n_buckets: n as u64,
            capacity,
            active: 0,
            sweep_pos: 0,
            counters: FlowCounters::default(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Live flows (expired ones count until they are reclaimed by insert or sweep).
    pub fn active(&self) -> usize {
        self.active
    }

    /// Bytes of table memory per flow of capacity.
    pub fn bytes_per_flow(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<Bucket>() / self.capacity.max(1)
    }

    /// The two candidate buckets: each 32-bit half of the hash mapped onto `0..n_buckets`.
    #[inline]
    fn candidates(&self, hash: u64) -> (usize, usize) {
        let lo = hash & 0xffff_ffff;
        let hi = hash >> 32;
        (
            ((lo * self.n_buckets) >> 32) as usize,
            ((hi * self.n_buckets) >> 32) as usize,
        )
    }

    /// Finds the live flow for `key`. An expired match is reclaimed and reported as a miss.
    #[inline]
    pub fn lookup(
        &mut self,
        key: &FlowKey,
        hash: u64,
        now: u32,
        t: &Timeouts,
    ) -> Option<&mut FlowEntry> {
        let (a, b) = self.candidates(hash);
        for bi in [a, b] {
            for w in 0..WAYS {
                let e = &self.buckets[bi].e[w];
                if !e.is_free() && e.matches(key) {
                    if e.expired(now, t) {
                        self.buckets[bi].e[w] = FlowEntry::default();
                        self.active -= 1;
                        self.counters.expired += 1;
                        return None;
                    }
                    return Some(&mut self.buckets[bi].e[w]);
                }
            }
        }
        None
    }

    /// Inserts a new flow (the caller has just missed on `lookup`). Never evicts a live flow:
    /// with no room the insert fails and is counted, and existing flows are untouched.
    pub fn insert(
        &mut self,
        key: &FlowKey,
        hash: u64,
        now: u32,
        t: &Timeouts,
        new: NewFlow,
    ) -> Result<&mut FlowEntry, TableFull> {
        let NewFlow {
            state,
            service,
            backend,
        } = new;
        let (a, b) = self.candidates(hash);
        let mut slot = None;
        'find: for bi in [a, b] {
            for w in 0..WAYS {
                let e = &self.buckets[bi].e[w];
                if e.is_free() {
                    slot = Some((bi, w));
                    break 'find;
                }
                if e.expired(now, t) {
                    self.buckets[bi].e[w] = FlowEntry::default();
                    self.active -= 1;
                    self.counters.expired += 1;
                    slot = Some((bi, w));
                    break 'find;
                }
            }
        }
        if slot.is_none() && self.active < self.capacity {
            slot = self
                .kick(a, KICK_DEPTH)
                .map(|w| (a, w))
                .or_else(|| self.kick(b, KICK_DEPTH).map(|w| (b, w)));
        }
        let Some((bi, w)) = slot.filter(|_| self.active < self.capacity) else {
            self.counters.full += 1;
            return Err(TableFull);
        };
        self.active += 1;
        self.counters.created += 1;
        let e = &mut self.buckets[bi].e[w];
        *e = FlowEntry {
            src: key.src,
            dst: key.dst,
            src_port: key.src_port,
            dst_port: key.dst_port,
            proto: key.proto,
            state: state as u8,
            _pad: 0,
            last_seen: now,
            backend,
            service,
            _pad2: 0,
            aux: 0,
        };
        Ok(e)
    }

    /// Frees a slot in full bucket `bi` by moving a resident to its other candidate bucket,
    /// recursively making room there up to `depth` more steps (a bounded cuckoo search that
    /// only moves entries once a complete path is found, so a failure changes nothing).
    /// Returns the freed way.
    fn kick(&mut self, bi: usize, depth: u8) -> Option<usize> {
        for pass in 0..2 {
            for w in 0..WAYS {
                let e = self.buckets[bi].e[w];
                let (x, y) = self.candidates(e.key().hash());
                let alt = if x == bi { y } else { x };
                if alt == bi {
                    continue;
                }
                let room = if pass == 0 {
                    (0..WAYS).find(|&aw| self.buckets[alt].e[aw].is_free())
                } else if depth > 0 {
                    self.kick(alt, depth - 1)
                } else {
                    None
                };
                if let Some(aw) = room {
                    self.buckets[alt].e[aw] = e;
                    self.buckets[bi].e[w] = FlowEntry::default();
                    return Some(w);
                }
            }
        }
        None
    }

    /// Reclaims expired entries in up to `buckets` buckets, continuing where the last call
    /// stopped. Workers call it between bursts so a full sweep takes bounded time per call.
    pub fn sweep(&mut self, now: u32, t: &Timeouts, buckets: usize) -> usize {
        let mut freed = 0;
        for _ in 0..buckets.min(self.buckets.len()) {
            let bi = self.sweep_pos;
            self.sweep_pos += 1;
            if self.sweep_pos == self.buckets.len() {
                self.sweep_pos = 0;
            }
            for w in 0..WAYS {
                let e = &mut self.buckets[bi].e[w];
                if !e.is_free() && e.expired(now, t) {
                    *e = FlowEntry::default();
                    freed += 1;
                }
            }
        }
        self.active -= freed;
        self.counters.expired += freed as u64;
        freed
    }

    /// Up to `n` live flows (for diagnostics; walks the table, not for the hot path).
    pub fn snapshot(&self, n: usize) -> Vec<(FlowKey, FlowEntry)> {
        self.buckets
            .iter()
            .flat_map(|b| b.e.iter())
            .filter(|e| !e.is_free())
            .take(n)
            .map(|e| (e.key(), *e))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts([1_000, 60_000, 2_000, 5_000]);

    fn key(i: u32) -> FlowKey {
        FlowKey {
            src: 0x0a00_0000 | i,
            dst: 0x0a14_0064,
            src_port: (i % 50_000) as u16 + 1024,
            dst_port: 80,
            proto: 6,
        }
    }

    #[test]
    fn insert_then_hit() {
        let mut t = FlowTable::new(1024);
        let k = key(1);
        let h = k.hash();
        assert!(t.lookup(&k, h, 0, &T).is_none());
        t.insert(
            &k,
            h,
            0,
            &T,
            NewFlow {
                state: FlowState::TcpSyn,
                service: 3,
                backend: 7,
            },
        )
        .unwrap();
        let e = t.lookup(&k, h, 10, &T).unwrap();
        assert_eq!((e.service, e.backend, e.state()), (3, 7, FlowState::TcpSyn));
        assert_eq!(t.active(), 1);
        assert!(t.lookup(&key(2), key(2).hash(), 10, &T).is_none());
    }

    #[test]
    fn expiry_follows_the_state_timeout() {
        let mut t = FlowTable::new(64);
        let k = key(1);
        let h = k.hash();
        t.insert(
            &k,
            h,
            0,
            &T,
            NewFlow {
                state: FlowState::TcpSyn,
                service: 0,
                backend: 0,
            },
        )
        .unwrap();
        // A SYN-only flow is gone after the 1 s SYN timeout...
        assert!(t.lookup(&k, h, 1_001, &T).is_none());
        assert_eq!(t.active(), 0);
        assert_eq!(t.counters.expired, 1);
        // ...an established one lives on (touched at 0) until 60 s.
        let e = t
            .insert(
                &k,
                h,
                0,
                &T,
                NewFlow {
                    state: FlowState::TcpSyn,
                    service: 0,
                    backend: 0,
                },
            )
            .unwrap();
        e.set_state(FlowState::TcpEstablished);
        assert!(t.lookup(&k, h, 59_000, &T).is_some());
        let e = t.lookup(&k, h, 59_000, &T).unwrap();
        e.touch(59_000);
        e.set_state(FlowState::TcpClosing);
        assert!(t.lookup(&k, h, 60_999, &T).is_some());
        assert!(t.lookup(&k, h, 61_001, &T).is_none());
    }

    #[test]
    fn sweep_reclaims_expired_flows() {
        let mut t = FlowTable::new(256);
        for i in 0..100 {
            let k = key(i);
            t.insert(
                &k,
                k.hash(),
                0,
                &T,
                NewFlow {
                    state: FlowState::Udp,
                    service: 0,
                    backend: 0,
                },
            )
            .unwrap();
        }
        assert_eq!(t.active(), 100);
        assert_eq!(t.sweep(4_000, &T, usize::MAX), 0);
        let freed = t.sweep(5_001, &T, usize::MAX);
        assert_eq!(freed, 100);
        assert_eq!(t.active(), 0);
    }

    #[test]
    fn full_table_refuses_new_flows_and_keeps_old_ones() {
        let cap = 64;
        let mut t = FlowTable::new(cap);
        let mut inserted = Vec::new();
        let mut refused = 0;
        for i in 0..1_000 {
            let k = key(i);
            match t.insert(
                &k,
                k.hash(),
                0,
                &T,
                NewFlow {
                    state: FlowState::TcpEstablished,
                    service: 0,
                    backend: i,
                },
            ) {
                Ok(_) => inserted.push((k, i)),
                Err(TableFull) => refused += 1,
            }
        }
        assert_eq!(t.active(), inserted.len());
        // The configured capacity is what an operator gets: all of it, never more.
        assert_eq!(inserted.len(), cap);
        assert_eq!(t.counters.full, refused as u64);
        for (k, backend) in &inserted {
            let e = t.lookup(k, k.hash(), 1, &T).expect("old flow lost");
            assert_eq!(e.backend, *backend);
        }
    }

    #[test]
    fn capacity_is_honoured_exactly() {
        // 100 requested -> 112 slots; the 101st flow is refused by the count, not the buckets.
        let mut t = FlowTable::new(100);
        let mut ok = 0;
        for i in 0..10_000 {
            let k = key(i);
            if t.insert(
                &k,
                k.hash(),
                0,
                &T,
                NewFlow {
                    state: FlowState::Udp,
                    service: 0,
                    backend: 0,
                },
            )
            .is_ok()
            {
                ok += 1;
            }
        }
        assert_eq!(ok, 100);
        assert_eq!(t.active(), ok);
    }

    #[test]
    fn large_table_fills_to_its_configured_capacity() {
        let cap = 200_000;
        let mut t = FlowTable::new(cap);
        for i in 0..cap as u32 {
            let k = FlowKey {
                src: i,
                dst: 0x0a14_0064,
                src_port: (i >> 16) as u16,
                dst_port: 80,
                proto: 17,
            };
            let new = NewFlow {
                state: FlowState::Udp,
                service: 0,
                backend: i,
            };
            assert!(t.insert(&k, k.hash(), 0, &T, new).is_ok(), "refused at {i}");
        }
        assert_eq!(t.active(), cap);
        assert_eq!(t.counters.full, 0);
    }

    #[test]
    fn million_flow_table_is_at_most_64_bytes_per_flow() {
        for cap in [1 << 20, 1 << 19, 1_000_000, 1_500_000] {
            let b = FlowTable::new(cap).bytes_per_flow();
            assert!(b <= 64, "{cap}: {b} bytes per flow");
        }
    }

    #[test]
    fn hash_is_stable_across_builds() {
        // The value is part of the cross-instance contract: changing it remaps flows.
        let k = FlowKey::new(
            Ipv4Addr::new(10, 20, 9, 2),
            Ipv4Addr::new(10, 20, 0, 100),
            40000,
            80,
            6,
        );
        assert_eq!(k.hash(), k.hash());
        assert_ne!(k.hash(), key(1).hash());
    }
}
