//! Per-core connection table: fixed capacity chosen at start, no allocation after, owned by
//! exactly one worker so it needs no locks.
//!
//! Two parts, as in IPVS/DPVS a connection is reachable by two tuples:
//! - **conn buckets**: the [`Conn`]s themselves (32 bytes: the client tuple, what the backend
//!   side's tuple needs beyond the backend, whose address and port the table keeps per
//!   backend id, the TCP state, last-seen time, service, backend and NAT data), two to a
//!   64-byte bucket, placed by 2-choice cuckoo hashing of the forward (client) tuple: the
//!   two buckets are picked by multiply-shift of each half of one 64-bit hash, a conn goes to
//!   the first unless it is full, and a bounded cuckoo search (depth 8) moves conns to their
//!   other bucket when both are. There are 3/2 conn slots per conn of capacity, so most conns
//!   sit in their first bucket and **a forward packet reads one cache line**, the conn itself.
//! - an **index** of reverse tuples (NAT conns only: the tuple of the backend's replies) to
//!   their conn's location: 2-choice hashing over 64-byte buckets of eight (signature, conn
//!   reference) slots, cuckoo depth 2. A reply reads its index bucket and its conn.
//!
//! A conn's location is its [`ConnId`]; inserting may move other conns (their index entries
//! follow), so an id is valid until the next insert. What must outlive that (a fragment's
//! conn) keeps the tuple instead.
//!
//! Why conns sit in their buckets: a DSR packet at 64k flows paid for two table lines (index
//! bucket, conn) not in L2, and in a table of the default size (1M conns) with 64k live the
//! two are different lines for every flow: twice the memory per packet. perf/README.md has
//! the measurements.
//!
//! Memory per flow of capacity: 3/2 × 32 bytes of conn buckets + 9/8 × 8 bytes of index =
//! 57 bytes.
//!
//! A conn idle for longer than its state's timeout is dead: a lookup that meets it reclaims it
//! (and reports a miss), and the incremental [`FlowTable::sweep`] reclaims the rest, so the
//! `active` count and per-backend counts stay honest. Reclaiming calls back the caller (to
//! free NAT ports and per-backend counts). A full table refuses the new conn, counted, and
//! never evicts a live one.

use std::net::Ipv4Addr;

use crate::dpdk::HugeSlice;

/// A 5-tuple as seen on the wire, source first.
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

    /// Addresses and ports (all but the protocol) as two words: a quick filter.
    #[inline(always)]
    pub fn words(&self) -> (u64, u32) {
        (
            u64::from(self.src) | (u64::from(self.dst) << 32),
            u32::from(self.src_port) | (u32::from(self.dst_port) << 16),
        )
    }

    /// Equality with all fields compared at once, without a branch per field (the conn-table
    /// lookup's key check).
    #[inline]
    pub fn same(&self, o: &FlowKey) -> bool {
        (self.src ^ o.src)
            | (self.dst ^ o.dst)
            | u32::from(self.src_port ^ o.src_port)
            | u32::from(self.dst_port ^ o.dst_port)
            | u32::from(self.proto ^ o.proto)
            == 0
    }

    /// One 64-bit hash per packet, used for the table and for Maglev. It is a fixed function
    /// (not the NIC's RSS hash, not a seeded std hasher) so that every Switchyard instance in
    /// front of the same servers sends a flow to the same backend; perf/gen.py computes it
    /// too. Two 64x64->128-bit multiplies, each folded to 64 bits (high half xor low half):
    /// the first mixes the addresses with the ports, the second spreads every bit of that
    /// over the result. About a dozen instructions: under a third of two MurmurHash3
    /// finalisers, which this replaced (callgrind, perf/README.md).
    #[inline]
    pub fn hash(&self) -> u64 {
        let a = (u64::from(self.src) << 32) | u64::from(self.dst);
        let b = (u64::from(self.src_port) << 32)
            | (u64::from(self.dst_port) << 16)
            | u64::from(self.proto);
        // `a ^ b'` as well: a product with a zero factor would lose the other operand.
        let h = mum(a ^ 0x9e37_79b9_7f4a_7c15, b ^ 0xff51_afd7_ed55_8ccd) ^ a ^ b.rotate_left(32);
        mum(h ^ 0xc4ce_b9fe_1a85_ec53, 0x2545_f491_4f6c_dd1d)
    }
}

/// The 128-bit product of `x` and `y`, folded to 64 bits.
#[inline]
fn mum(x: u64, y: u64) -> u64 {
    let m = u128::from(x) * u128::from(y);
    (m as u64) ^ ((m >> 64) as u64)
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

/// Which tuple of a conn a packet matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Client -> VIP (the tuple the flow was created from).
    Forward,
    /// Backend -> us (NAT modes only).
    Reverse,
}

/// Where a conn sits in the table (valid until the next insert, which may move it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnId(pub u32);

/// `Conn::flags` bits.
pub mod flags {
    /// The conn is live (its slot is in use).
    pub const IN_USE: u8 = 1;
    /// The reverse tuple is indexed (NAT modes).
    pub const REVERSE: u8 = 2;
    /// The conn holds a source-NAT port that must be given back.
    pub const SNAT: u8 = 4;
}

/// One connection: 32 bytes, so a conn bucket of two is one cache line (the buckets are
/// 2 MiB aligned). The reverse tuple (what the backend side sends us) is
/// `backend address:port -> rev_dst:rev_dport`; the backend's address and port are the same for
/// every conn of that backend id and live in the table's endpoint list, not here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Conn {
    /// Forward tuple: client -> VIP.
    pub client: u32,
    pub vip: u32,
    pub cport: u16,
    pub vport: u16,
    pub proto: u8,
    state: u8,
    pub flags: u8,
    /// Index of the SNAT address (proxy mode).
    pub snat_idx: u8,
    /// Milliseconds, wrapping.
    last_seen: u32,
    /// Stable backend id (see `lb::BackendId`).
    pub backend: u32,
    pub service: u16,
    /// Where the backend side's packets go (NAT modes): the SNAT port (proxy) or the client
    /// port (gateway) ...
    pub rev_dport: u16,
    /// ... at the SNAT address (proxy) or the client (gateway).
    pub rev_dst: u32,
}

const _: () = assert!(std::mem::size_of::<Conn>() == 32);

impl Conn {
    /// A new conn for the forward tuple `fwd`.
    pub fn new(fwd: &FlowKey, state: FlowState, service: u16, backend: u32) -> Conn {
        Conn {
            client: fwd.src,
            vip: fwd.dst,
            cport: fwd.src_port,
            vport: fwd.dst_port,
            proto: fwd.proto,
            state: state as u8,
            service,
            backend,
            ..Conn::default()
        }
    }

    /// Adds the reverse tuple (replies from the backend side) to be indexed too. Its source
    /// must be the conn's backend (address and port, as given to
    /// [`FlowTable::set_backend`]).
    pub fn with_reverse(mut self, rev: &FlowKey) -> Conn {
        self.rev_dst = rev.dst;
        self.rev_dport = rev.dst_port;
        self.flags |= flags::REVERSE;
        self
    }

    /// The tuple of direction `dir`; `backend` is the backend's (address, port), which the
    /// reverse tuple starts from.
    #[inline]
    pub fn key(&self, dir: Dir, backend: (u32, u16)) -> FlowKey {
        let (src, dst, src_port, dst_port) = match dir {
            Dir::Forward => (self.client, self.vip, self.cport, self.vport),
            Dir::Reverse => (backend.0, self.rev_dst, backend.1, self.rev_dport),
        };
        FlowKey {
            src,
            dst,
            src_port,
            dst_port,
            proto: self.proto,
        }
    }

    /// What decides where a packet of this conn travelling in `dir` goes: its backend id
    /// going forward, its client address going back.
    #[inline]
    pub fn hop_key(&self, dir: Dir) -> u32 {
        match dir {
            Dir::Forward => self.backend,
            Dir::Reverse => self.client,
        }
    }

    pub fn state(&self) -> FlowState {
        FlowState::from_u8(self.state)
    }
    /// Whether the conn is in state `s` (`state() == s` without decoding the stored byte).
    #[inline]
    pub fn is(&self, s: FlowState) -> bool {
        self.state == s as u8
    }
    pub fn set_state(&mut self, s: FlowState) {
        self.state = s as u8;
    }
    pub fn touch(&mut self, now: u32) {
        self.last_seen = now;
    }
    /// Whether `k` is this conn's forward tuple: the conn's first 13 bytes are that tuple in
    /// `FlowKey`'s field order, so this is a 64-bit and a 32-bit compare and a byte, not a
    /// `FlowKey` built and compared field by field (the fast lane's lookup check).
    #[inline(always)]
    pub fn is_forward(&self, k: &FlowKey) -> bool {
        let ((a, p), (b, q)) = (self.words(), k.words());
        (a ^ b) | u64::from(p ^ q) | u64::from(self.proto ^ k.proto) == 0
    }
    /// [`FlowKey::words`] of the forward tuple.
    #[inline(always)]
    fn words(&self) -> (u64, u32) {
        (
            u64::from(self.client) | (u64::from(self.vip) << 32),
            u32::from(self.cport) | (u32::from(self.vport) << 16),
        )
    }

    /// Whether this slot holds a conn (alive or expired) whose forward tuple is `k`.
    #[inline(always)]
    fn holds_forward(&self, k: &FlowKey) -> bool {
        self.in_use() && self.is_forward(k)
    }
    pub fn has_reverse(&self) -> bool {
        self.flags & flags::REVERSE != 0
    }
    #[inline]
    fn in_use(&self) -> bool {
        self.flags & flags::IN_USE != 0
    }
    #[inline]
    pub fn expired(&self, now: u32, t: &Timeouts) -> bool {
        now.wrapping_sub(self.last_seen) > t.0[usize::from(self.state & 3)]
    }
}

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
    sweep_pos: usize,
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
            sweep_pos: 0,
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
        std::mem::size_of_val(&*self.conns) + std::mem::size_of_val(&*self.index)
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
    pub fn insert(&mut self, mut conn: Conn, now: u32) -> Result<ConnId, TableFull> {
        if self.active >= self.capacity {
            self.counters.full += 1;
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
            self.counters.full += 1;
            return Err(TableFull);
        };
        self.conns[id] = conn;
        if conn.has_reverse()
            && !self.index_insert(
                &self.key_of(&conn, Dir::Reverse),
                conn_ref(id as u32, Dir::Reverse),
            )
        {
            self.conns[id] = Conn::default();
            self.counters.full += 1;
            return Err(TableFull);
        }
        self.active += 1;
        self.reverse_tuples += usize::from(conn.has_reverse());
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
    pub fn sweep(
        &mut self,
        now: u32,
        t: &Timeouts,
        n: usize,
        reclaim: &mut impl FnMut(&Conn),
    ) -> usize {
        let mut freed = 0;
        for _ in 0..n.min(self.conns.len()) {
            let id = self.sweep_pos as u32;
            self.sweep_pos += 1;
            if self.sweep_pos == self.conns.len() {
                self.sweep_pos = 0;
            }
            let c = &self.conns[id as usize];
            if c.in_use() && c.expired(now, t) {
                self.remove(ConnId(id), reclaim);
                freed += 1;
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

    fn none(_: &Conn) {}

    /// A small table whose backend 1 is 10.20.0.11:80, a client tuple (`key(1)`) and the
    /// reverse tuple a NAT conn of it would have (backend -> 10.20.0.10:20001).
    fn nat_fixture() -> (FlowTable, FlowKey, FlowKey) {
        let mut t = FlowTable::new(64);
        let rev = FlowKey {
            src: 0x0a14_000b,
            dst: 0x0a14_000a,
            src_port: 80,
            dst_port: 20001,
            proto: 6,
        };
        t.set_backend(1, rev.src, rev.src_port);
        (t, key(1), rev)
    }

    fn ins(
        t: &mut FlowTable,
        k: &FlowKey,
        st: FlowState,
        backend: u32,
    ) -> Result<ConnId, TableFull> {
        t.insert(Conn::new(k, st, 0, backend), 0)
    }

    #[test]
    fn insert_then_hit() {
        let mut t = FlowTable::new(1024);
        let k = key(1);
        assert!(t.lookup(&k, k.hash(), 0, &T, &mut none).is_none());
        let id = t.insert(Conn::new(&k, FlowState::TcpSyn, 3, 7), 0).unwrap();
        let (got, dir) = t.lookup(&k, k.hash(), 10, &T, &mut none).unwrap();
        assert_eq!((got, dir), (id, Dir::Forward));
        let c = t.conn(id);
        assert_eq!((c.service, c.backend, c.state()), (3, 7, FlowState::TcpSyn));
        assert_eq!(t.active(), 1);
        assert!(
            t.lookup(&key(2), key(2).hash(), 10, &T, &mut none)
                .is_none()
        );
    }

    #[test]
    fn signature_collisions_are_resolved_by_the_tuple() {
        // Reverse tuples go through the index's signatures: decoys with the right signature
        // that point at another NAT conn are skipped by the tuple check.
        let (mut t, f1, r1) = nat_fixture();
        let (f2, r2, r3) = (
            key(2),
            FlowKey {
                dst_port: 20002,
                ..r1
            },
            FlowKey {
                dst_port: 20003,
                ..r1
            },
        );
        let id1 = t
            .insert(Conn::new(&f1, FlowState::TcpSyn, 0, 1).with_reverse(&r1), 0)
            .unwrap();
        let id2 = t
            .insert(Conn::new(&f2, FlowState::TcpSyn, 0, 1).with_reverse(&r2), 0)
            .unwrap();
        let h = r1.hash();
        let (a, b) = candidates(h, t.n_buckets);
        for bi in [a, b] {
            t.index[bi].sig = [sig_of(h); WAYS];
            t.index[bi].r = [conn_ref(id2.0, Dir::Reverse); WAYS];
        }
        t.index[a].r[WAYS - 1] = conn_ref(id1.0, Dir::Reverse);
        assert_eq!(
            t.lookup(&r1, h, 1, &T, &mut none),
            Some((id1, Dir::Reverse))
        );
        // Only in the second bucket: found there after eight mismatches in the first.
        if a != b {
            t.index[a].r[WAYS - 1] = conn_ref(id2.0, Dir::Reverse);
            t.index[b].r[3] = conn_ref(id1.0, Dir::Reverse);
            assert_eq!(
                t.lookup(&r1, h, 1, &T, &mut none),
                Some((id1, Dir::Reverse))
            );
        }
        // A tuple whose signature matches everywhere but which has no conn: a miss.
        let h3 = r3.hash();
        let (a3, b3) = candidates(h3, t.n_buckets);
        for bi in [a3, b3] {
            t.index[bi].sig = [sig_of(h3); WAYS];
            t.index[bi].r = [conn_ref(id2.0, Dir::Reverse); WAYS];
        }
        assert_eq!(t.lookup(&r3, h3, 1, &T, &mut none), None);
    }

    #[test]
    fn forward_tuples_are_found_in_either_conn_bucket_by_the_whole_tuple() {
        let mut t = FlowTable::new(64);
        let k = key(1);
        let (a, b) = t.conn_candidates(k.hash());
        // Conns differing from `k` in one field each fill its first bucket: none matches.
        let near = [
            FlowKey {
                src_port: k.src_port + 1,
                ..k
            },
            FlowKey { proto: 17, ..k },
        ];
        for (w, n) in near.iter().enumerate() {
            let mut c = Conn::new(n, FlowState::TcpEstablished, 0, 9);
            c.flags |= flags::IN_USE;
            t.conns[a * CWAYS + w] = c;
        }
        assert_eq!(t.lookup(&k, k.hash(), 1, &T, &mut none), None);
        // An empty slot never matches, not even the all-zero tuple.
        let zero = FlowKey::default();
        assert_eq!(t.find(&zero, zero.hash()), None);
        // `k` in its second bucket (when it has two): found there.
        if a != b {
            let mut c = Conn::new(&k, FlowState::TcpEstablished, 0, 7);
            c.flags |= flags::IN_USE;
            t.conns[b * CWAYS + 1] = c;
            let id = ConnId((b * CWAYS + 1) as u32);
            assert_eq!(
                t.lookup(&k, k.hash(), 1, &T, &mut none),
                Some((id, Dir::Forward))
            );
            // The first bucket's conn with k's addresses and ports (not its protocol) may be
            // the hint: checked, and the answer is still k's conn.
            let h = t.prefetch_conn(&k, k.hash(), t.prefetch_buckets(k.hash(), false));
            assert_eq!(
                t.lookup_hinted(&k, k.hash(), h, 1, &T, &mut none),
                Some((id, Dir::Forward))
            );
        }
    }

    #[test]
    fn a_stale_or_wrong_hint_never_changes_the_answer() {
        let (mut t, fwd, rev) = nat_fixture();
        let other = key(2);
        let nat = Conn::new(&fwd, FlowState::TcpSyn, 0, 1).with_reverse(&rev);
        let id = t.insert(nat, 0).unwrap();
        // The two prefetch stages, with the packet's direction guessed right or wrong.
        let stages = |t: &FlowTable, k: &FlowKey, reverse: bool| {
            t.prefetch_conn(k, k.hash(), t.prefetch_buckets(k.hash(), reverse))
        };
        let hint = stages(&t, &fwd, false);
        let rev_hint = stages(&t, &rev, true);
        assert_eq!(
            (hint, rev_hint),
            (conn_ref(id.0, Dir::Forward), conn_ref(id.0, Dir::Reverse))
        );
        let hinted = |t: &mut FlowTable, k: &FlowKey, h: u32| {
            t.lookup_hinted(k, k.hash(), h, 1, &T, &mut none)
        };
        // A wrong guess of the direction: no hint, or one naming a bucket without the tuple.
        let wrong = stages(&t, &rev, false);
        assert_eq!(hinted(&mut t, &rev, wrong), Some((id, Dir::Reverse)));
        assert_eq!(stages(&t, &fwd, true), NO_HINT);
        assert_eq!(hinted(&mut t, &fwd, hint), Some((id, Dir::Forward)));
        assert_eq!(hinted(&mut t, &rev, rev_hint), Some((id, Dir::Reverse)));
        // A hint naming another conn, the other direction, or nothing: found by the search.
        assert_eq!(hinted(&mut t, &rev, hint), Some((id, Dir::Reverse)));
        assert_eq!(hinted(&mut t, &fwd, rev_hint), Some((id, Dir::Forward)));
        assert_eq!(hinted(&mut t, &fwd, NO_HINT), Some((id, Dir::Forward)));
        assert_eq!(hinted(&mut t, &other, hint), None);
        let h = stages(&t, &other, false);
        assert_eq!(hinted(&mut t, &other, h), None);
        // The conn is gone; a conn without a reverse tuple whose forward tuple is the old
        // reverse tuple takes its place in the table: the old hints must find only it.
        t.sweep(10_000, &T, usize::MAX, &mut none);
        t.insert(Conn::new(&other, FlowState::TcpSyn, 0, 1), 10_000)
            .unwrap();
        let reused = t
            .insert(Conn::new(&rev, FlowState::TcpSyn, 0, 1), 10_000)
            .unwrap();
        for k in [&fwd, &rev] {
            for h in [hint, rev_hint] {
                let got = t.lookup_hinted(k, k.hash(), h, 10_001, &T, &mut none);
                let want = (k == &rev).then_some((reused, Dir::Forward));
                assert_eq!(got, want, "{k:?} hint {h}");
            }
        }
        // A reverse hint at a conn whose reverse fields spell the tuple but that has no
        // reverse tuple indexed: the search's answer, not the hinted one.
        let c = t.conn_mut(reused);
        (c.rev_dst, c.rev_dport) = (rev.dst, rev.dst_port);
        assert_eq!(t.key_of(t.conn(reused), Dir::Reverse), rev);
        let wrong = conn_ref(reused.0, Dir::Reverse);
        assert_eq!(
            t.lookup_hinted(&rev, rev.hash(), wrong, 10_001, &T, &mut none),
            Some((reused, Dir::Forward))
        );
    }

    #[test]
    fn reverse_tuple_finds_the_same_conn() {
        let (mut t, fwd, rev) = nat_fixture();
        let id = t
            .insert(
                Conn::new(&fwd, FlowState::TcpSyn, 0, 1).with_reverse(&rev),
                0,
            )
            .unwrap();
        assert_eq!(
            t.lookup(&rev, rev.hash(), 1, &T, &mut none),
            Some((id, Dir::Reverse))
        );
        assert_eq!(
            t.lookup(&fwd, fwd.hash(), 1, &T, &mut none),
            Some((id, Dir::Forward))
        );
        // Reclaiming removes both index entries and reports the conn once.
        let mut seen = Vec::new();
        t.sweep(10_000, &T, usize::MAX, &mut |c: &Conn| seen.push(c.backend));
        assert_eq!(seen, vec![1]);
        assert!(t.lookup(&rev, rev.hash(), 1, &T, &mut none).is_none());
        assert!(t.lookup(&fwd, fwd.hash(), 1, &T, &mut none).is_none());
        assert_eq!(t.active(), 0);
    }

    #[test]
    fn expiry_follows_the_state_timeout() {
        let mut t = FlowTable::new(64);
        let k = key(1);
        let h = k.hash();
        ins(&mut t, &k, FlowState::TcpSyn, 0).unwrap();
        // A SYN-only conn is gone after the 1 s SYN timeout, and reclaim is told.
        let mut reclaimed = 0;
        assert!(
            t.lookup(&k, h, 1_001, &T, &mut |_: &Conn| reclaimed += 1)
                .is_none()
        );
        assert_eq!((t.active(), reclaimed, t.counters.expired), (0, 1, 1));
        // An established one lives on until 60 s after its last packet.
        let id = ins(&mut t, &k, FlowState::TcpSyn, 0).unwrap();
        t.conn_mut(id).set_state(FlowState::TcpEstablished);
        assert!(t.lookup(&k, h, 59_000, &T, &mut none).is_some());
        let c = t.conn_mut(id);
        c.touch(59_000);
        c.set_state(FlowState::TcpClosing);
        assert!(t.lookup(&k, h, 60_999, &T, &mut none).is_some());
        assert!(t.lookup(&k, h, 61_001, &T, &mut none).is_none());
    }

    #[test]
    fn sweep_reclaims_expired_conns() {
        let mut t = FlowTable::new(256);
        for i in 0..100 {
            ins(&mut t, &key(i), FlowState::Udp, 0).unwrap();
        }
        assert_eq!(t.active(), 100);
        assert_eq!(t.sweep(4_000, &T, usize::MAX, &mut none), 0);
        assert_eq!(t.sweep(5_001, &T, usize::MAX, &mut none), 100);
        assert_eq!(t.active(), 0);
        // Slots are reusable afterwards.
        for i in 0..256 {
            ins(&mut t, &key(1000 + i), FlowState::Udp, 0).unwrap();
        }
    }

    #[test]
    fn full_table_refuses_new_conns_and_keeps_old_ones() {
        let cap = 64;
        let mut t = FlowTable::new(cap);
        let mut inserted = Vec::new();
        let mut refused = 0;
        for i in 0..1_000 {
            let k = key(i);
            match ins(&mut t, &k, FlowState::TcpEstablished, i) {
                Ok(_) => inserted.push((k, i)),
                Err(TableFull) => refused += 1,
            }
        }
        // The configured capacity is what an operator gets: all of it, never more.
        assert_eq!(inserted.len(), cap);
        assert_eq!(t.active(), cap);
        assert_eq!(t.counters.full, refused as u64);
        for (k, backend) in &inserted {
            let (id, _) = t
                .lookup(k, k.hash(), 1, &T, &mut none)
                .expect("old conn lost");
            assert_eq!(t.conn(id).backend, *backend);
        }
    }

    #[test]
    fn large_nat_table_fills_to_its_configured_capacity() {
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
            let rev = FlowKey {
                src: 0x0a14_000b,
                dst: 0x0a14_000a + (i >> 16),
                src_port: 53,
                dst_port: i as u16,
                proto: 17,
            };
            t.set_backend(i, rev.src, rev.src_port);
            let c = Conn::new(&k, FlowState::Udp, 0, i).with_reverse(&rev);
            assert!(t.insert(c, 0).is_ok(), "refused at {i}");
        }
        assert_eq!(t.active(), cap);
        assert_eq!(t.counters.full, 0);
        // Conns moved by the cuckoo search took their reverse entries along: every conn is
        // still found by both tuples, in one of its two conn buckets, and most (a lookup
        // reads one line) in the first.
        let mut first = 0;
        for id in 0..t.conns.len() {
            let c = t.conns[id];
            if !c.in_use() {
                continue;
            }
            let (f, r) = (t.key_of(&c, Dir::Forward), t.key_of(&c, Dir::Reverse));
            let id = ConnId(id as u32);
            assert_eq!(t.find(&f, f.hash()), Some((id, Dir::Forward)));
            assert_eq!(t.find(&r, r.hash()), Some((id, Dir::Reverse)));
            let (a, b) = t.conn_candidates(f.hash());
            let bi = id.0 as usize / CWAYS;
            assert!(bi == a || bi == b);
            first += usize::from(bi == a);
        }
        assert!(
            first * 10 > cap * 7,
            "{first} of {cap} in their first bucket"
        );
    }

    #[test]
    fn churn_in_a_small_full_table_keeps_every_conn_findable() {
        // A tiny table run at its capacity with random inserts and removals: deep cuckoo
        // searches happen all the time, in the conn buckets and in the index. After every
        // step each live conn must sit in one of its buckets and be found by both tuples.
        let (mut t, _, rev0) = nat_fixture();
        let cap = t.capacity();
        let mut live: Vec<(FlowKey, FlowKey)> = Vec::new();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for step in 0..20_000u32 {
            if next() % 3 != 0 {
                let f = FlowKey {
                    src_port: step as u16,
                    ..key(next() as u32 % 5000)
                };
                let r = FlowKey {
                    dst_port: 1024 + step as u16,
                    ..rev0
                };
                if t.find(&f, f.hash()).is_none() && t.find(&r, r.hash()).is_none() {
                    let c = Conn::new(&f, FlowState::Udp, 0, 1).with_reverse(&r);
                    if t.insert(c, 0).is_ok() {
                        live.push((f, r));
                    }
                }
            } else if !live.is_empty() {
                let (f, _) = live.swap_remove(next() as usize % live.len());
                let (id, _) = t.find(&f, f.hash()).expect("live conn");
                t.remove(id, &mut none);
            }
            for (f, r) in &live {
                let (id, dir) = t
                    .find(f, f.hash())
                    .unwrap_or_else(|| panic!("step {step}: {f:?} lost"));
                assert_eq!(dir, Dir::Forward);
                assert_eq!(t.find(r, r.hash()), Some((id, Dir::Reverse)), "step {step}");
                let (a, b) = t.conn_candidates(f.hash());
                let bi = id.0 as usize / CWAYS;
                assert!(bi == a || bi == b, "step {step}: not in its buckets");
            }
            assert_eq!(t.active(), live.len());
            assert!(live.len() <= cap);
        }
        assert!(
            t.counters.full > 0,
            "the table never filled: the test did not test"
        );
    }

    #[test]
    fn million_flow_table_is_at_most_64_bytes_per_flow() {
        for cap in [1 << 20, 1_000_000, 1_500_000] {
            let b = FlowTable::new(cap).bytes_per_flow();
            assert!(b <= 64, "{cap}: {b} bytes per flow");
        }
    }

    #[test]
    fn hash_is_a_fixed_function() {
        // The values are part of the cross-instance contract (changing them remaps flows), and
        // perf/gen.py's flow_hash gives the same ones.
        let k = |port| {
            FlowKey::new(
                Ipv4Addr::new(10, 20, 9, 2),
                Ipv4Addr::new(10, 20, 0, 100),
                port,
                80,
                6,
            )
        };
        assert_eq!(k(40000).hash(), 0x4a07_c1bf_276a_f4b0);
        assert_eq!(k(40001).hash(), 0x8aa8_8c3c_357d_cae5);
        // A zero factor in the first product (a = its constant) still leaves the ports in.
        let zero = FlowKey {
            src: 0x9e37_79b9,
            dst: 0x7f4a_7c15,
            ..k(1)
        };
        let ports: std::collections::HashSet<u64> = (1..=1000)
            .map(|p| {
                FlowKey {
                    src_port: p,
                    ..zero
                }
                .hash()
            })
            .collect();
        assert_eq!(ports.len(), 1000);
        assert_ne!(k(40000).hash(), key(1).hash());
    }
}
