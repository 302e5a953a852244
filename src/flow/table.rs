//! The per-core conn table: conns in 2-choice cuckoo buckets by their forward tuple, and an
//! index of NAT conns' reverse tuples (see the module documentation of `flow`).

use super::conn::{Conn, ConnId, Dir, Timeouts, flags};
use super::key::FlowKey;
use crate::dpdk::HugeSlice;

/// Ways of an index bucket (reverse tuples).
const WAYS: usize = 8;

/// Conns per conn bucket: one 64-byte line.
const CWAYS: usize = 2;

/// Conn slots per conn of capacity, as a fraction: 3/2, so a full table is two-thirds
/// occupied, well inside what 2-choice cuckoo hashing with two-slot buckets fills (~89 %)
/// and sparse enough that most conns sit in their first bucket (one line per lookup).
const SLOTS_NUM: usize = 3;

const SLOTS_DEN: usize = 2;

/// An index entry's reference to its conn (and a lookup hint): `location << 1 | reverse`,
/// where `reverse` says which of the conn's tuples it stands for.
#[inline]
fn conn_ref(id: u32, dir: Dir) -> u32 {
    (id << 1) | u32::from(dir == Dir::Reverse)
}

#[inline]
fn ref_conn(r: u32) -> u32 {
    r >> 1
}

#[inline]
fn ref_dir(r: u32) -> Dir {
    if r & 1 == 0 {
        Dir::Forward
    } else {
        Dir::Reverse
    }
}

/// Cuckoo search depth of the index (eight-way buckets) when both candidates are full.
const KICK_DEPTH: u8 = 2;

/// Cuckoo search depth of the conn buckets (two-way: a deeper but narrower tree).
const CONN_KICK_DEPTH: u8 = 8;

/// "No conn hint" for [`FlowTable::lookup_hinted`]: never a reference (locations stay below
/// 2^31 - 2, see [`FlowTable::new`]).
pub const NO_HINT: u32 = u32::MAX;

/// Slots [`FlowTable::insert_evicting`] looks at, past the new conn's own, for a half-open
/// conn to reclaim when the table is full (under a flood nearly every conn is one).
const EVICT_SCAN: usize = 256;

/// What [`FlowTable::prefetch_buckets`] hands to [`FlowTable::prefetch_conn`] (through the
/// packet's hint field) when it was told the packet is likely a reverse tuple: not a
/// reference either, so as a hint it names nothing.
const REVERSE_GUESS: u32 = u32::MAX - 1;

/// 64 bytes: eight signatures and eight conn references (see [`conn_ref`]).
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Bucket {
    sig: [u32; WAYS],
    r: [u32; WAYS],
}

impl Bucket {
    /// Bit `w` set where way `w` holds signature `sig`: eight compares without a branch (two
    /// vector compares and a mask), so finding the way costs no mispredicted loop exit.
    #[inline]
    fn matching(&self, sig: u32) -> u32 {
        crate::dpdk::eq_mask8(&self.sig, sig)
    }
}

/// Outcome counters of the table, owned by the worker and copied into its stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowCounters {
    pub created: u64,
    pub expired: u64,
    pub full: u64,
    /// Half-open conns given up to make room (see [`FlowTable::insert_evicting`]).
    pub half_open_reclaimed: u64,
}

/// The table is out of room for this conn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

pub struct FlowTable {
    /// The conns themselves, in place: conn bucket `i` is `conns[2i..2i + 2]`, one cache
    /// line (the slice is 2 MiB aligned). A conn's location is its [`ConnId`].
    conns: HugeSlice<Conn>,
    n_cbuckets: u64,
    /// Most live conns at once.
    capacity: usize,
    /// (address, port) of each backend id: where a NAT conn's reverse tuple comes from.
    endpoints: Vec<(u32, u16)>,
    /// Reverse tuples (NAT conns) -> their conn's location.
    index: HugeSlice<Bucket>,
    n_buckets: u64,
    active: usize,
    /// Live conns with a reverse tuple (NAT conns).
    reverse_tuples: usize,
    /// Live half-open TCP conns (`FlowState::is_half_open`).
    half_open: usize,
    /// Where the search for a half-open conn to reclaim anywhere goes on from.
    evict_pos: usize,
    /// One word per conn slot that moves with its conn: the SYN proxy's sequence numbers
    /// (`flags::SEQ_ADJ`).
    aux: Vec<u32>,
    sweep_pos: usize,
    /// Completed sweep passes.
    sweep_passes: u64,
    pub counters: FlowCounters,
}

#[inline]
fn sig_of(hash: u64) -> u32 {
    ((hash.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32) | 1
}

/// The two candidate buckets of `hash` among `n`: each 32-bit half mapped onto `0..n`.
#[inline]
fn candidates(hash: u64, n: u64) -> (usize, usize) {
    let lo = hash & 0xffff_ffff;
    let hi = hash >> 32;
    (((lo * n) >> 32) as usize, ((hi * n) >> 32) as usize)
}

impl FlowTable {
    /// Allocates the whole table up front (the only allocation it ever makes).
    pub fn new(capacity: usize) -> Self {
        // Locations (3/2 of capacity) shifted left by one stay below NO_HINT.
        let capacity = capacity.clamp(1, (u32::MAX >> 2) as usize);
        let slots = (capacity * SLOTS_NUM)
            .div_ceil(SLOTS_DEN)
            .max(2 * CWAYS)
            .next_multiple_of(CWAYS);
        let conns = HugeSlice::new(slots, Conn::default());
        let islots = (capacity + capacity / 8).max(WAYS * 2);
        let n = islots.div_ceil(WAYS);
        let index = HugeSlice::new(n, Bucket::default());
        Self {
            conns,
            n_cbuckets: (slots / CWAYS) as u64,
            capacity,
            endpoints: Vec::new(),
            index,
            n_buckets: n as u64,
            active: 0,
            reverse_tuples: 0,
            half_open: 0,
            evict_pos: 0,
            aux: vec![0; slots],
            sweep_pos: 0,
            sweep_passes: 0,
            counters: FlowCounters::default(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records backend `id`'s address and port (control path; a backend id keeps them for
    /// life, so conns already in the table are unaffected).
    pub fn set_backend(&mut self, id: u32, addr: u32, port: u16) {
        let i = id as usize;
        if self.endpoints.len() <= i {
            self.endpoints.resize(i + 1, (0, 0));
        }
        self.endpoints[i] = (addr, port);
    }

    /// Backend `id`'s (address, port), as recorded by [`FlowTable::set_backend`].
    #[inline]
    pub fn endpoint(&self, id: u32) -> (u32, u16) {
        self.endpoints.get(id as usize).copied().unwrap_or_default()
    }

    /// The tuple of conn `c` in direction `dir` (only a reverse tuple reads the endpoint
    /// list: it starts at the backend).
    #[inline]
    pub fn key_of(&self, c: &Conn, dir: Dir) -> FlowKey {
        let backend = match dir {
            Dir::Forward => (0, 0),
            Dir::Reverse => self.endpoint(c.backend),
        };
        c.key(dir, backend)
    }

    /// Whether any conn has a reverse tuple (only then can a packet be one).
    #[inline]
    pub fn has_reverse_tuples(&self) -> bool {
        self.reverse_tuples != 0
    }

    /// Live conns (expired ones count until reclaimed by a lookup or the sweep).
    pub fn active(&self) -> usize {
        self.active
    }

    /// Bytes of table memory (conn buckets and index).
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.conns)
            + std::mem::size_of_val(&*self.index)
            + std::mem::size_of_val(&*self.aux)
    }

    /// Live half-open TCP conns.
    pub fn half_open(&self) -> usize {
        self.half_open
    }

    /// Conn `id`'s word (see `aux` above).
    #[inline]
    pub fn aux(&self, id: ConnId) -> u32 {
        self.aux[id.0 as usize]
    }

    #[inline]
    pub fn set_aux(&mut self, id: ConnId, v: u32) {
        self.aux[id.0 as usize] = v;
    }

    /// [`Conn::track_tcp`] on conn `id`, keeping the half-open count.
    #[inline]
    pub fn track_tcp(&mut self, id: ConnId, flags: u8, dir: Dir) -> bool {
        !self.conns[id.0 as usize].tcp_steady(flags) && self.track_tcp_change(id, flags, dir)
    }

    /// The fast lane's bookkeeping for a packet of conn `id`: seen at `now` and, for a TCP
    /// segment (`tcp_flags`), [`FlowTable::track_tcp`]; returns whether the state changed.
    /// One index of the conn for both; the state machine itself runs out of line, as the
    /// common segment (an ACK of an established conn) changes nothing.
    #[inline(always)]
    pub fn touch_track(&mut self, id: ConnId, now: u32, tcp_flags: Option<u8>, dir: Dir) -> bool {
        let c = &mut self.conns[id.0 as usize];
        c.touch(now);
        match tcp_flags {
            Some(f) if !c.tcp_steady(f) => self.track_tcp_change(id, f, dir),
            _ => false,
        }
    }

    /// [`FlowTable::track_tcp`] for a segment that may change the conn's state.
    #[inline(never)]
    fn track_tcp_change(&mut self, id: ConnId, flags: u8, dir: Dir) -> bool {
        let c = &mut self.conns[id.0 as usize];
        let was = c.is_half_open();
        let changed = c.track_tcp(flags, dir);
        if changed {
            self.count_transition(was, id);
        }
        changed
    }

    /// Sets conn `id`'s state, keeping the half-open count.
    pub fn set_state(&mut self, id: ConnId, s: crate::flow::FlowState) {
        let c = &mut self.conns[id.0 as usize];
        let was = c.is_half_open();
        c.set_state(s);
        self.count_transition(was, id);
    }

    #[inline]
    fn count_transition(&mut self, was: bool, id: ConnId) {
        let now = self.conns[id.0 as usize].is_half_open();
        if was != now {
            if now {
                self.half_open += 1;
            } else {
                self.half_open -= 1;
            }
        }
    }

    /// How much of the table the kernel backs with huge pages, in KiB (`None` where
    /// /proc/self/smaps cannot be read). Diagnostics, for the start-up log.
    pub fn huge_pages_kb(&self) -> Option<u64> {
        let (a, ka) = self.conns.huge_pages()?;
        let (b, kb) = self.index.huge_pages()?;
        // Both may sit in one (merged) mapping: count it once.
        Some(if a == b { ka } else { ka + kb })
    }

    /// Bytes of table memory per conn of capacity.
    pub fn bytes_per_flow(&self) -> usize {
        self.memory_bytes() / self.capacity
    }

    /// The two candidate conn buckets of a forward tuple's hash.
    #[inline]
    fn conn_candidates(&self, hash: u64) -> (usize, usize) {
        candidates(hash, self.n_cbuckets)
    }

    /// Prefetch stage 1 for a burst: where the tuple of `hash` most likely is. Forward
    /// tuples live in their first conn bucket unless it was full, reverse tuples (`reverse`
    /// is the caller's guess) are found through their first index bucket. Returns what stage
    /// 2 ([`FlowTable::prefetch_conn`]) is to be given, which is also a valid hint: for a
    /// forward guess, a reference to the first conn bucket (where the tuple most likely is;
    /// stage 2 then need not work the bucket out from the hash again), else one that names
    /// nothing.
    #[inline(always)]
    pub fn prefetch_buckets(&self, hash: u64, reverse: bool) -> u32 {
        if reverse {
            let (a, _) = candidates(hash, self.n_buckets);
            self.index.prefetch(a);
            REVERSE_GUESS
        } else {
            let (a, _) = self.conn_candidates(hash);
            self.conns.prefetch(a * CWAYS);
            conn_ref((a * CWAYS) as u32, Dir::Forward)
        }
    }

    /// Prefetch stage 2 (stage 1's line now in cache), given what stage 1 returned (`stage1`,
    /// which carries its guess): a forward tuple found in its first conn bucket keeps stage
    /// 1's reference to that bucket (no further line needed), else the second conn bucket is
    /// prefetched and named; a reverse guess prefetches the conn a signature match in the
    /// index points at, else the second index bucket. Returns a hint for
    /// [`FlowTable::lookup_hinted`] ([`NO_HINT`] when there is none).
    #[inline(always)]
    pub fn prefetch_conn(&self, key: &FlowKey, hash: u64, stage1: u32) -> u32 {
        if stage1 == REVERSE_GUESS {
            let sig = sig_of(hash);
            let (a, b) = candidates(hash, self.n_buckets);
            let bucket = &self.index[a];
            match bucket.matching(sig) {
                0 => {
                    self.index.prefetch(b);
                    NO_HINT
                }
                m => {
                    let r = bucket.r[m.trailing_zeros() as usize];
                    self.conns.prefetch(ref_conn(r) as usize);
                    r
                }
            }
        } else {
            // Addresses and ports pick the way (the hint is checked in full where used, and
            // a forward reference stands for both ways of its bucket).
            let i = ref_conn(stage1) as usize;
            let words = key.words();
            match self.conns.get(i..i + CWAYS) {
                Some([c0, c1]) if c0.words() == words || c1.words() == words => stage1,
                _ => {
                    // Not in its first bucket: in the second if anywhere, which the hint
                    // names.
                    let (_, b) = self.conn_candidates(hash);
                    self.conns.prefetch(b * CWAYS);
                    conn_ref((b * CWAYS) as u32, Dir::Forward)
                }
            }
        }
    }

    /// Finds the live conn for `key`. A dead (expired) conn met here is reclaimed, `reclaim`
    /// is called with it, and the lookup reports a miss.
    #[inline(always)]
    pub fn lookup(
        &mut self,
        key: &FlowKey,
        hash: u64,
        now: u32,
        t: &Timeouts,
        reclaim: &mut impl FnMut(&Conn),
    ) -> Option<(ConnId, Dir)> {
        self.lookup_hinted(key, hash, NO_HINT, now, t, reclaim)
    }

    /// [`FlowTable::lookup`], trying the conn `hint` names first (a reference from
    /// [`FlowTable::prefetch_conn`] or [`NO_HINT`]; checked, so a stale one costs only the
    /// check). A dead (expired) conn met here is reclaimed, `reclaim` is called with it, and
    /// the lookup reports a miss. Always inlined: it is the fast lane's core, and as a call it
    /// spilled the key and table fields to the stack every packet.
    #[inline(always)]
    pub fn lookup_hinted(
        &mut self,
        key: &FlowKey,
        hash: u64,
        hint: u32,
        now: u32,
        t: &Timeouts,
        reclaim: &mut impl FnMut(&Conn),
    ) -> Option<(ConnId, Dir)> {
        let (id, dir) = self.find_hinted(key, hash, hint)?;
        if self.conns[id.0 as usize].expired(now, t) {
            self.reclaim_dead(id, reclaim);
            return None;
        }
        Some((id, dir))
    }

    /// The conn indexed under `key` (live or dead), trying the conn `hint` names first.
    #[inline(always)]
    pub fn find_hinted(&self, key: &FlowKey, hash: u64, hint: u32) -> Option<(ConnId, Dir)> {
        match self.at_ref(key, hint) {
            Some(hit) => Some(hit),
            None => self.find(key, hash),
        }
    }

    /// The conn reference `r` names, if that conn is in use (alive or expired) and holds `key` in
    /// the direction `r` says; a forward reference also stands for the other way of its conn
    /// bucket (the prefetch names a bucket when it could not look inside). Tuples are unique
    /// in the table, so that conn is the one [`FlowTable::find`] would return, however the
    /// table changed since `r` was read.
    #[inline(always)]
    fn at_ref(&self, key: &FlowKey, r: u32) -> Option<(ConnId, Dir)> {
        let i = ref_conn(r) as usize;
        let c = self.conns.get(i)?;
        match ref_dir(r) {
            Dir::Forward => {
                if c.holds_forward(key) {
                    return Some((ConnId(i as u32), Dir::Forward));
                }
                // Buckets are two conns at an even index: `i ^ 1` is the other way.
                let j = i ^ 1;
                self.conns[j]
                    .holds_forward(key)
                    .then_some((ConnId(j as u32), Dir::Forward))
            }
            Dir::Reverse => {
                (c.in_use() && c.has_reverse() && self.key_of(c, Dir::Reverse).same(key))
                    .then_some((ConnId(i as u32), Dir::Reverse))
            }
        }
    }

    /// The conn holding `key` (live or dead) and which of its tuples `key` is: its two conn
    /// buckets (a forward tuple), then its two index buckets (a reverse tuple).
    #[inline]
    fn find(&self, key: &FlowKey, hash: u64) -> Option<(ConnId, Dir)> {
        let (a, b) = self.conn_candidates(hash);
        for bi in [a, b] {
            for i in bi * CWAYS..(bi + 1) * CWAYS {
                if self.conns[i].holds_forward(key) {
                    return Some((ConnId(i as u32), Dir::Forward));
                }
            }
        }
        self.find_reverse(key, hash)
            .map(|id| (ConnId(id), Dir::Reverse))
    }

    /// The conn whose reverse tuple is `key`, through the index.
    #[inline]
    fn find_reverse(&self, key: &FlowKey, hash: u64) -> Option<u32> {
        let sig = sig_of(hash);
        let (a, b) = candidates(hash, self.n_buckets);
        for bi in [a, b] {
            let bucket = &self.index[bi];
            let mut m = bucket.matching(sig);
            while m != 0 {
                let w = m.trailing_zeros() as usize;
                m &= m - 1;
                let id = ref_conn(bucket.r[w]);
                let c = &self.conns[id as usize];
                if c.has_reverse() && self.key_of(c, Dir::Reverse).same(key) {
                    return Some(id);
                }
            }
        }
        None
    }

    /// A lookup met a dead conn: rare, kept out of the lookup's code.
    #[cold]
    #[inline(never)]
    fn reclaim_dead(&mut self, id: ConnId, reclaim: &mut impl FnMut(&Conn)) {
        self.remove(id, reclaim);
    }

    #[inline]
    pub fn conn(&self, id: ConnId) -> &Conn {
        &self.conns[id.0 as usize]
    }

    #[inline]
    pub fn conn_mut(&mut self, id: ConnId) -> &mut Conn {
        &mut self.conns[id.0 as usize]
    }

    /// Inserts `conn` (created with [`Conn::new`], optionally [`Conn::with_reverse`]) as live
    /// at `now`. Fails, counted, when the table holds its capacity or has no room for the
    /// conn's tuples; nothing changes then but where other conns sit. Making room may move
    /// other conns: a [`ConnId`] is valid until the next insert.
    pub fn insert(&mut self, conn: Conn, now: u32) -> Result<ConnId, TableFull> {
        self.try_insert(conn, now)
            .inspect_err(|_| self.counters.full += 1)
    }

    /// [`FlowTable::insert`], making room under pressure by reclaiming a half-open conn
    /// (handed to `reclaim`), among the new conn's candidate slots first: when the table is
    /// full, or when a half-open conn would take more than half of the capacity. Established
    /// conns are never reclaimed, so a flood of spoofed SYNs or ACKs recycles its own conns
    /// and leaves the real ones alone.
    pub fn insert_evicting(
        &mut self,
        conn: Conn,
        now: u32,
        reclaim: &mut impl FnMut(&Conn),
    ) -> Result<ConnId, TableFull> {
        let share_full = conn.is_half_open() && self.half_open >= self.capacity.div_ceil(2);
        // One among the new conn's own slots, else any: its slots may be free while the
        // table holds its capacity.
        if (share_full || self.active >= self.capacity)
            && (self.reclaim_half_open(&conn, now, reclaim) || self.reclaim_any_half_open(reclaim))
        {
            return self.insert(conn, now);
        }
        match self.try_insert(conn, now) {
            Err(TableFull) if self.reclaim_half_open(&conn, now, reclaim) => self.insert(conn, now),
            Err(e) => {
                self.counters.full += 1;
                Err(e)
            }
            ok => ok,
        }
    }

    /// Reclaims the longest-idle half-open conn among the slots `conn` could take; false
    /// when none of them is half-open.
    fn reclaim_half_open(
        &mut self,
        conn: &Conn,
        now: u32,
        reclaim: &mut impl FnMut(&Conn),
    ) -> bool {
        let (a, b) = self.conn_candidates(self.key_of(conn, Dir::Forward).hash());
        let victim = (a * CWAYS..(a + 1) * CWAYS)
            .chain(b * CWAYS..(b + 1) * CWAYS)
            .filter(|&i| self.conns[i].in_use() && self.conns[i].is_half_open())
            .max_by_key(|&i| now.wrapping_sub(self.conns[i].last_seen));
        let Some(i) = victim else {
            return false;
        };
        self.reclaim_half_open_at(i, reclaim);
        true
    }

    /// Reclaims the next half-open conn after the eviction cursor, looking at most
    /// [`EVICT_SCAN`] slots; false when none is there.
    fn reclaim_any_half_open(&mut self, reclaim: &mut impl FnMut(&Conn)) -> bool {
        let n = self.conns.len();
        for _ in 0..EVICT_SCAN.min(n) {
            let i = self.evict_pos;
            self.evict_pos = if i + 1 == n { 0 } else { i + 1 };
            if self.conns[i].in_use() && self.conns[i].is_half_open() {
                self.reclaim_half_open_at(i, reclaim);
                return true;
            }
        }
        false
    }

    /// Reclaims the half-open conn in slot `i` to make room, counted.
    fn reclaim_half_open_at(&mut self, i: usize, reclaim: &mut impl FnMut(&Conn)) {
        self.remove(ConnId(i as u32), reclaim);
        self.counters.half_open_reclaimed += 1;
    }

    /// [`FlowTable::insert`] without counting a failure.
    fn try_insert(&mut self, mut conn: Conn, now: u32) -> Result<ConnId, TableFull> {
        if self.active >= self.capacity {
            return Err(TableFull);
        }
        conn.flags |= flags::IN_USE;
        conn.last_seen = now;
        let (a, b) = self.conn_candidates(self.key_of(&conn, Dir::Forward).hash());
        let slot = self
            .free_way(a)
            .or_else(|| self.free_way(b))
            .or_else(|| self.conn_kick(a, CONN_KICK_DEPTH))
            .or_else(|| self.conn_kick(b, CONN_KICK_DEPTH));
        let Some(id) = slot else {
            return Err(TableFull);
        };
        self.conns[id] = conn;
        self.aux[id] = 0;
        if conn.has_reverse()
            && !self.index_insert(
                &self.key_of(&conn, Dir::Reverse),
                conn_ref(id as u32, Dir::Reverse),
            )
        {
            self.conns[id] = Conn::default();
            return Err(TableFull);
        }
        self.active += 1;
        self.reverse_tuples += usize::from(conn.has_reverse());
        self.half_open += usize::from(conn.is_half_open());
        self.counters.created += 1;
        Ok(ConnId(id as u32))
    }

    /// A free slot of conn bucket `bi`.
    #[inline]
    fn free_way(&self, bi: usize) -> Option<usize> {
        (bi * CWAYS..(bi + 1) * CWAYS).find(|&i| !self.conns[i].in_use())
    }

    /// Frees a slot in full conn bucket `bi` by moving a resident to its other candidate
    /// bucket, recursively making room there up to `depth` more steps (a bounded cuckoo
    /// search that moves conns only once a complete path is found). Returns the freed slot.
    fn conn_kick(&mut self, bi: usize, depth: u8) -> Option<usize> {
        for pass in 0..2 {
            for i in bi * CWAYS..(bi + 1) * CWAYS {
                // A deeper step of this search may have emptied or refilled this slot.
                if !self.conns[i].in_use() {
                    return Some(i);
                }
                let alt = self.other_bucket(i, bi);
                if alt == bi {
                    continue;
                }
                let room = if pass == 0 {
                    self.free_way(alt)
                } else if depth > 0 {
                    self.conn_kick(alt, depth - 1)
                } else {
                    None
                };
                if let Some(to) = room {
                    if !self.conns[i].in_use() {
                        return Some(i);
                    }
                    // Only the conn `alt` was worked out for may go there: making room in
                    // `alt` can have moved another conn (whose buckets are this one and some
                    // third) into slot i. Then `to` stays free and the next way is tried.
                    if self.other_bucket(i, bi) == alt {
                        self.move_conn(i, to);
                        return Some(i);
                    }
                }
            }
        }
        None
    }

    /// The candidate bucket of the conn in slot `i` (in bucket `bi`) that is not `bi`
    /// (`bi` itself when both candidates are `bi`).
    fn other_bucket(&self, i: usize, bi: usize) -> usize {
        let (x, y) = self.conn_candidates(self.key_of(&self.conns[i], Dir::Forward).hash());
        if x == bi { y } else { x }
    }

    /// Moves a live conn to free slot `to`; its reverse index entry follows.
    fn move_conn(&mut self, from: usize, to: usize) {
        let c = self.conns[from];
        self.conns[to] = c;
        self.conns[from] = Conn::default();
        self.aux[to] = self.aux[from];
        if c.has_reverse() {
            let key = self.key_of(&c, Dir::Reverse);
            match self.index_entry(&key, conn_ref(from as u32, Dir::Reverse)) {
                Some((bi, w)) => self.index[bi].r[w] = conn_ref(to as u32, Dir::Reverse),
                None => debug_assert!(false, "index entry of a live conn missing"),
            }
        }
    }

    /// Reclaims conn `id` (it must be live): removes its index entry, hands it to
    /// `reclaim`, frees its slot.
    pub fn remove(&mut self, id: ConnId, reclaim: &mut impl FnMut(&Conn)) {
        let c = self.conns[id.0 as usize];
        debug_assert!(c.in_use());
        if c.has_reverse() {
            self.index_remove(&self.key_of(&c, Dir::Reverse), conn_ref(id.0, Dir::Reverse));
        }
        reclaim(&c);
        self.conns[id.0 as usize] = Conn::default();
        self.active -= 1;
        self.reverse_tuples -= usize::from(c.has_reverse());
        self.half_open -= usize::from(c.is_half_open());
        self.counters.expired += 1;
    }

    fn index_insert(&mut self, key: &FlowKey, r: u32) -> bool {
        let hash = key.hash();
        let sig = sig_of(hash);
        let (a, b) = candidates(hash, self.n_buckets);
        for bi in [a, b] {
            if let Some(w) = (0..WAYS).find(|&w| self.index[bi].sig[w] == 0) {
                self.index[bi].sig[w] = sig;
                self.index[bi].r[w] = r;
                return true;
            }
        }
        let slot = self
            .kick(a, KICK_DEPTH)
            .map(|w| (a, w))
            .or_else(|| self.kick(b, KICK_DEPTH).map(|w| (b, w)));
        match slot {
            Some((bi, w)) => {
                self.index[bi].sig[w] = sig;
                self.index[bi].r[w] = r;
                true
            }
            None => false,
        }
    }

    fn index_remove(&mut self, key: &FlowKey, r: u32) {
        match self.index_entry(key, r) {
            Some((bi, w)) => self.index[bi].sig[w] = 0,
            None => debug_assert!(false, "index entry of a live conn missing"),
        }
    }

    /// Where the index holds reference `r` under `key`: (bucket, way).
    fn index_entry(&self, key: &FlowKey, r: u32) -> Option<(usize, usize)> {
        let (a, b) = candidates(key.hash(), self.n_buckets);
        [a, b].into_iter().find_map(|bi| {
            (0..WAYS)
                .find(|&w| self.index[bi].sig[w] != 0 && self.index[bi].r[w] == r)
                .map(|w| (bi, w))
        })
    }

    /// Frees a slot in full index bucket `bi` by moving an entry to its other candidate
    /// bucket, recursively making room there up to `depth` more steps (a bounded cuckoo
    /// search that only moves entries once a complete path is found, so a failure changes
    /// nothing). Returns the freed way.
    fn kick(&mut self, bi: usize, depth: u8) -> Option<usize> {
        for pass in 0..2 {
            for w in 0..WAYS {
                let (sig, r) = (self.index[bi].sig[w], self.index[bi].r[w]);
                // A deeper step of this search may have emptied this way.
                if sig == 0 {
                    return Some(w);
                }
                let c = &self.conns[ref_conn(r) as usize];
                let (x, y) = candidates(self.key_of(c, ref_dir(r)).hash(), self.n_buckets);
                let alt = if x == bi { y } else { x };
                if alt == bi {
                    continue;
                }
                let room = if pass == 0 {
                    (0..WAYS).find(|&aw| self.index[alt].sig[aw] == 0)
                } else if depth > 0 {
                    self.kick(alt, depth - 1)
                } else {
                    None
                };
                if let Some(aw) = room {
                    // Making room in `alt` may have moved this entry away (the way is free)
                    // or another one in (it may not belong in `alt`: try the next way).
                    if self.index[bi].sig[w] == 0 {
                        return Some(w);
                    }
                    if (self.index[bi].sig[w], self.index[bi].r[w]) == (sig, r) {
                        self.index[alt].sig[aw] = sig;
                        self.index[alt].r[aw] = r;
                        self.index[bi].sig[w] = 0;
                        return Some(w);
                    }
                }
            }
        }
        None
    }

    /// Reclaims dead conns among the next `n` conn slots, continuing where the last call
    /// stopped. Workers call it between bursts, so a full pass takes bounded time per call.
    #[inline]
    pub fn sweep(
        &mut self,
        now: u32,
        t: &Timeouts,
        n: usize,
        reclaim: &mut impl FnMut(&Conn),
    ) -> usize {
        self.sweep_with(now, t, n, &mut |c, backend| {
            if backend.is_none() {
                reclaim(c);
            }
        })
    }

    /// [`FlowTable::sweep`] telling `visit` of every conn it passes: a dead one, reclaimed,
    /// with `None` (what the reclaim callback gets), a live one with its backend's (address,
    /// port) (HA sync refreshes the peer's copies this way).
    pub fn sweep_with(
        &mut self,
        now: u32,
        t: &Timeouts,
        n: usize,
        visit: &mut impl FnMut(&Conn, Option<(u32, u16)>),
    ) -> usize {
        let mut freed = 0;
        for _ in 0..n.min(self.conns.len()) {
            let id = self.sweep_pos as u32;
            self.sweep_pos += 1;
            if self.sweep_pos == self.conns.len() {
                self.sweep_pos = 0;
                self.sweep_passes += 1;
            }
            let c = &self.conns[id as usize];
            if c.in_use() {
                if c.expired(now, t) {
                    self.remove(ConnId(id), &mut |c: &Conn| visit(c, None));
                    freed += 1;
                } else {
                    visit(c, Some(self.endpoint(c.backend)));
                }
            }
        }
        // The next call's conns, so that it does not wait for them.
        if let Some(next) = self
            .conns
            .get(self.sweep_pos..(self.sweep_pos + n.min(16)).min(self.conns.len()))
        {
            for c in next.iter().step_by(64 / std::mem::size_of::<Conn>()) {
                crate::dpdk::prefetch0(c);
            }
        }
        freed
    }

    /// Complete passes of the sweep over the table so far.
    pub fn sweep_passes(&self) -> u64 {
        self.sweep_passes
    }

    /// Conn slots in the table (live or not): the range [`FlowTable::live_at`] takes.
    pub fn slots(&self) -> usize {
        self.conns.len()
    }

    /// The conn in slot `i` if one lives there (not expired at `now`), with its backend's
    /// (address, port): a walk over the whole table (HA bulk resync), not for the hot path.
    pub fn live_at(&self, i: usize, now: u32, t: &Timeouts) -> Option<(&Conn, (u32, u16))> {
        let c = self.conns.get(i)?;
        (c.in_use() && !c.expired(now, t)).then(|| (c, self.endpoint(c.backend)))
    }

    /// Up to `n` live conns (diagnostics; walks the table, not for the hot path).
    pub fn snapshot(&self, n: usize) -> Vec<Conn> {
        self.conns
            .iter()
            .filter(|c| c.in_use())
            .take(n)
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests;
