//! The frame pipeline: a sequence of frames through the real `Datapath` (no DPDK), the way
//! the worker takes them, for a configuration with a service in each mode (proxy, DSR,
//! gateway), so that conns are created, hit, answered, expired and reclaimed.
//!
//! Two nodes see the same stream: one decides every frame with `process` only, the other
//! the worker's way (first pass, prefetch hints, fast lane, then the full path). Every
//! verdict, output frame and counter must be the same (the fast lane is an optimisation
//! only; src/datapath/fast.rs), each worker's counter invariants must hold after every frame
//! (`check_invariants`), a frame handed to its owner worker is never handed on again, and
//! nothing may panic.
//!
//! The input: a header (which configuration, the clock's start), then ops until the bytes run
//! out (reads past the end give zeros). Most ops are frames built from a few bytes with valid
//! checksums (a client to a service, the answer to a frame the balancer sent, an ICMP error
//! quoting one, a server's own traffic, ARP), then patched; one is raw bytes; the others move
//! the clock (workers sweep, HA sync rounds) and change what management changes. Numbers of
//! more than a byte are little-endian. fuzz/seeds.py writes inputs in this format.
//!
//! | bytes | |
//! |---|---|
//! | 1 | the configuration ([`cfg_bit`]): the kind of node ([`KINDS`]), VLAN, workers, sizes |
//! | 4 | the clock's start, ms (it wraps around) |
//! | then | ops: a byte, its low 3 bits the op, its high 5 bits `p`, then the op's bytes |
//!
//! | op | bytes | |
//! |---|---|---|
//! | 0 | length (u16, 11 bits), bytes | a raw frame |
//! | 1 | client, source port, TCP flags, n, n bytes | a client to [`TARGETS`]`[p & 15]` with that payload (`p & 16`: an echo request, if the target is UDP) |
//! | 2 | TCP flags | the answer to output `p % 8` (the last 8 frames forwarded), from where it went |
//! | 3 | kind, quote | an ICMP error about output `p % 8` (see `icmp_error`) |
//! | 4 | t | the clock moves on: t ms (t < 128), t - 128 s (t < 192), else t - 192 min; workers sweep 2^(p & 15) slots |
//! | 5 | c, (records) | management ([`Run::control`]) |
//! | 6 | sport (u16), dport (u16), TCP flags | a server's own traffic: B1 or B2 (`p & 1`) to [`SERVER_DESTS`]`[p >> 1 & 7]`, UDP if `p & 16`, an echo request if both ports are 0 |
//! | 7 | a | ARP: sender `a & 7`, target `a >> 3 & 7` of [`ARP_IPS`]; MAC `p & 3` of [`ARP_MACS`], reply if `p & 4`, unicast if `p & 8` |
//!
//! A frame op ends with a meta byte: bits 0-1 the prefetch hint the fast lane gets (fresh,
//! fresh, none, the previous frame's), bits 2-3 how many patches follow (offset, value: byte
//! pairs), bit 4 checksums recomputed after them, bit 5 the VLAN tagging the wrong one, bits
//! 6-7 the worker that receives it.

#![no_main]

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, OnceLock};

use crossbeam_queue::ArrayQueue;
use libfuzzer_sys::fuzz_target;

use switchyard::channel::{Event, SyncBatch, SyncLink, SyncOp, SyncRecord};
use switchyard::config::{Config, Mode, OnDown, Scheduler};
use switchyard::datapath::{Datapath, WorkerInfo};
use switchyard::flow::{NO_HINT, flags};
use switchyard::gslb::{Candidate, Table};
use switchyard::lb::sched::BackendLoad;
use switchyard::lb::{BackendRuntime, IdRegistry, Snapshot};
use switchyard::mode::snat::owner_of;
use switchyard::stats::Ctr;
use switchyard::testkit::{
    self, B1, B1_MAC, B2, B2_MAC, CLIENT, LB_ADDR, LB_MAC, ROUTER, ROUTER_MAC, SNAT_FLOAT, VIP,
};
use switchyard::types::{DropReason, IfIdx, Verdict};

/// The GSLB DNS address (tests/data/gslb.toml).
const DNS: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 53);
/// The servers' gateway address (HA: floating; else the balancer's secondary address).
const GW: Ipv4Addr = Ipv4Addr::new(10, 20, 1, 1);
const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
/// The VLAN of the tagged configurations.
const VLAN: u16 = 7;
/// Output frames remembered for replies and ICMP errors.
const OUTPUTS: usize = 8;

/// Configuration choices: the input's first byte.
mod cfg_bit {
    /// Bits 0-2: the kind of node (see [`super::KINDS`]).
    pub const KIND: u8 = 7;
    pub const VLAN: u8 = 8;
    pub const TWO_WORKERS: u8 = 16;
    /// A conn table of 16, two or three NAT ports per worker: the limits are reached.
    pub const SMALL: u8 = 32;
}

/// The kinds of node: (exception path, GSLB, HA: `Some(owns the floating addresses)`).
const KINDS: [(bool, bool, Option<bool>); 8] = [
    (false, false, None),
    (true, false, None),
    (true, true, None),
    (true, false, Some(true)),
    (true, false, Some(false)),
    (true, true, Some(true)),
    (false, false, None),
    (true, false, None),
];

/// The fuzzed configuration: the test configuration (tests/data/base.toml) with
/// web tcp/80 in proxy mode, dns udp/53 in DSR with source persistence, and two gateway
/// services (tcp/443 with a translated backend port, udp/5000, least connections);
/// `bits` as [`cfg_bit`] says, established conns of a backend that is down dropped when
/// `drop_on_down`.
fn config(bits: u8, drop_on_down: bool) -> Config {
    let (exception, gslb, ha) = KINDS[usize::from(bits & cfg_bit::KIND)];
    let mut c = if ha.is_some() {
        testkit::ha_config(Mode::Dsr)
    } else {
        testkit::config(Mode::Dsr)
    };
    c.services[0].mode = Mode::Proxy;
    c.services[1].persistence = Some(switchyard::config::PersistenceConfig {
        timeout_s: 30,
        netmask: 24,
    });
    let mut gw = c.services[0].clone();
    gw.name = "gw".into();
    gw.port = 443;
    gw.mode = Mode::Gateway;
    gw.backends[1].port = Some(8443);
    let mut gwu = c.services[1].clone();
    gwu.name = "gwu".into();
    gwu.port = 5000;
    gwu.mode = Mode::Gateway;
    gwu.persistence = None;
    gwu.scheduler = Scheduler::LeastConnections;
    gwu.backends.push(testkit::backend(B2));
    c.services.push(gw);
    c.services.push(gwu);
    c.interfaces[0].exception_path = exception;
    if bits & cfg_bit::VLAN != 0 {
        c.interfaces[0].vlan = Some(VLAN);
    }
    if gslb {
        c.gslb = Some(testkit::gslb());
    }
    if drop_on_down {
        for s in &mut c.services {
            s.on_backend_down = OnDown::Drop;
        }
    }
    if bits & cfg_bit::SMALL != 0 {
        c.flows.capacity_per_core = 16;
        c.nat.port_min = 2000;
        c.nat.port_max = 2004;
    }
    c
}

/// Backend state as management would set it, two bits per backend (B1 low, B2 high):
/// healthy, failing its checks, draining, drained by force.
fn runtime(state: u8, addr: Ipv4Addr) -> BackendRuntime {
    let s = if addr == B1 { state } else { state >> 2 } & 3;
    BackendRuntime {
        healthy: s != 1,
        weight: None,
        draining: s >= 2,
        forced: s == 3,
    }
}

/// The snapshot of configuration `bits` with backend state `state` (bit 4: established
/// conns of a backend that is down dropped), built once: the 24 configurations as they
/// start are kept, 160 others at a time (each holds a 65537-slot Maglev table per
/// service, slow to build under the sanitizers).
fn snapshot(bits: u8, state: u8) -> Arc<Snapshot> {
    // The worker count and bits 6-7 are not in the snapshot.
    let key = (
        bits & (cfg_bit::KIND | cfg_bit::VLAN | cfg_bit::SMALL),
        state & 31,
    );
    type Cache = Mutex<HashMap<(u8, u8), Arc<Snapshot>>>;
    static BASE: OnceLock<Cache> = OnceLock::new();
    static OTHERS: OnceLock<Cache> = OnceLock::new();
    let cache = if key.1 == 0 { &BASE } else { &OTHERS }.get_or_init(Default::default);
    if let Some(s) = cache.lock().unwrap().get(&key) {
        return s.clone();
    }
    let cfg = config(key.0, key.1 & 16 != 0);
    cfg.validate()
        .unwrap_or_else(|e| panic!("fuzz config {bits:#x} invalid: {e}"));
    let owns = KINDS[usize::from(key.0 & cfg_bit::KIND)].2 == Some(true);
    // The active node owns every floating address (VIPs included), the backup none.
    let owned = if owns {
        cfg.floating()
    } else {
        Default::default()
    };
    let macs = vec![LB_MAC; cfg.interfaces.len()];
    let mut snap = Snapshot::build_with(
        &cfg,
        &macs,
        None,
        &mut IdRegistry::default(),
        &|k| runtime(key.1, k.1),
        cfg.ha.is_some().then_some(&owned),
    )
    .unwrap_or_else(|e| panic!("fuzz config {bits:#x} does not build: {e}"));
    if let Some(g) = &cfg.gslb {
        // As management builds it: the first two names up, the others down.
        let t = Table::build(
            g,
            |svc| cfg.services.iter().find(|s| s.name == svc).map(|s| s.vip),
            |name, _| Candidate {
                up: name < 2,
                load: 0.0,
            },
        );
        snap.gslb = Some(Arc::new(t));
    }
    let snap = Arc::new(snap);
    let mut cache = cache.lock().unwrap();
    if cache.len() >= 160 {
        cache.clear();
    }
    cache.insert(key, snap.clone());
    snap
}

/// A MAC for a neighbour management "resolved" (distinct from the static ones).
fn resolved_mac(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [2, 0x99, o[0], o[1], o[2], o[3]]
}

/// One balancer: its workers (sharing the backend loads, as the workers of a node do) and
/// the queues their events go to.
struct Node {
    dps: Vec<Datapath>,
    events: Vec<Arc<ArrayQueue<Event>>>,
    /// HA flow sync (HA kinds): each worker's queues to management.
    sync: Vec<SyncLink>,
    /// Decide the worker's way (fast lane first) rather than with `process` only.
    fast: bool,
    /// The previous frame's conn hint (a stale hint must be harmless).
    old_hint: u32,
}

/// What became of one frame: each worker's verdict on the way (a steered frame has two),
/// and the frame as it left.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    verdicts: Vec<(usize, Verdict)>,
    frame: Vec<u8>,
}

impl Node {
    fn new(snap: &Arc<Snapshot>, workers: usize, capacity: usize, ha: bool, fast: bool) -> Node {
        let load = Arc::new(BackendLoad::new(workers));
        let mut dps = Vec::new();
        let mut events = Vec::new();
        let mut sync = Vec::new();
        for index in 0..workers {
            let q = Arc::new(ArrayQueue::new(64));
            let info = WorkerInfo {
                index,
                count: workers,
                flow_capacity: capacity,
                persist_capacity: 64,
            };
            let mut d = Datapath::new(snap.clone(), info, q.clone(), load.clone());
            for n in &snap.neighbours {
                if let Some(mac) = n.static_mac {
                    d.set_neighbour(n.addr, Some(mac));
                }
            }
            if ha {
                // As app.rs: the pair's batch interval (10 ms) and refresh (10 s).
                let link = SyncLink::new(4);
                d.enable_sync(link.clone(), 10, 10_000);
                sync.push(link);
            }
            dps.push(d);
            events.push(q);
        }
        Node {
            dps,
            events,
            sync,
            fast,
            old_hint: NO_HINT,
        }
    }

    /// Frame `f` received by worker `w` at `now`; `hint_mode` picks the prefetch hint the
    /// fast lane gets (the fresh one, none, or the previous frame's).
    fn rx(&mut self, w: usize, mut f: Vec<u8>, now: u32, hint_mode: u8) -> Outcome {
        let d = &mut self.dps[w];
        let v = if self.fast {
            let gate = d.fast_gate(IfIdx(0)).expect("interface 0 has a gate");
            let mut pre = Datapath::pre_parse(&f, &gate);
            if let Some(p) = &mut pre {
                let stage1 = d.prefetch_buckets(p);
                let fresh = d.flows.prefetch_conn(&p.key, p.hash, stage1);
                p.hint = match hint_mode & 3 {
                    2 => NO_HINT,
                    3 => self.old_hint,
                    _ => fresh,
                };
                self.old_hint = fresh;
            }
            match pre.and_then(|p| d.fast_path(&mut f, &p, now)) {
                Some(out) => Verdict::Forward(out),
                None => d.process_hinted(&mut f, IfIdx(0), now, pre.map(|p| p.hash)),
            }
        } else {
            d.process(&mut f, IfIdx(0), now, false)
        };
        let mut verdicts = vec![(w, v)];
        self.transmitted(w, v);
        if let Verdict::Steer(to) = v {
            let to = usize::from(to);
            // The worker hands the frame to its owner through a ring (there is one to every
            // other worker); the owner decides it as steered.
            assert!(
                to < self.dps.len() && to != w,
                "worker {w} of {} steers to {to}",
                self.dps.len()
            );
            self.dps[w].ctr.inc(Ctr::SteeredOut);
            let v2 = self.dps[to].process(&mut f, IfIdx(0), now, true);
            assert!(
                !matches!(v2, Verdict::Steer(_)),
                "worker {to} steers on a frame worker {w} steered to it: {v2:?}"
            );
            verdicts.push((to, v2));
            self.transmitted(to, v2);
        }
        Outcome { verdicts, frame: f }
    }

    /// The worker's part after a verdict: what it transmits is counted as sent.
    fn transmitted(&mut self, w: usize, v: Verdict) {
        if let Verdict::Forward(_) | Verdict::Reply | Verdict::ToKernel = v {
            self.dps[w].ctr.inc(Ctr::TxPackets);
        }
    }

    /// The end of a poll round: counters published, every invariant checked.
    fn check(&mut self) {
        for (w, d) in self.dps.iter_mut().enumerate() {
            d.publish();
            if let Err(e) = d.ctr.check_invariants() {
                panic!("worker {w} (fast lane {}): {e:?}", self.fast);
            }
            assert!(d.flows.active() <= d.flows.capacity());
            assert_eq!(d.ctr.dropped(DropReason::TxFull), 0);
        }
    }

    /// Management's side of the events: resolve requests answered (`answer`) or dropped.
    fn drain_events(&mut self, answer: bool) -> Vec<(Ipv4Addr, [u8; 6])> {
        let mut learned = Vec::new();
        for q in &self.events {
            while let Some(e) = q.pop() {
                match e {
                    Event::Resolve { ip, .. } if answer => learned.push((ip, resolved_mac(ip))),
                    Event::Neighbour { ip, mac, .. } => learned.push((ip, mac)),
                    Event::Resolve { .. } => {}
                }
            }
        }
        learned
    }

    /// Management's side of HA sync: the batches the workers filled, taken (and given back
    /// empty), with the installed ones back to the spares.
    fn drain_sync(&mut self) -> Vec<(usize, Vec<SyncRecord>)> {
        let mut out = Vec::new();
        for (w, l) in self.sync.iter().enumerate() {
            while let Some(mut b) = l.full.pop() {
                out.push((w, b.records().to_vec()));
                b.len = 0;
                let _ = l.empty.push(b);
            }
            while l.installed.pop().is_some() {}
        }
        out
    }

    /// Records from the peer, dispatched as management does (mgmt/ha: a NAT conn to the
    /// worker that owns its client, the rest to every worker).
    fn install(&mut self, recs: &[SyncRecord], now: u32) {
        let n = self.dps.len();
        for (w, d) in self.dps.iter_mut().enumerate() {
            let mut b = SyncBatch::new();
            for r in recs {
                if r.flags & flags::REVERSE == 0 || owner_of(r.client, r.cport, n) == w {
                    b.push(*r);
                }
            }
            if b.len > 0 {
                d.sync_install(b, now);
            }
        }
    }

    fn each(&mut self, mut f: impl FnMut(&mut Datapath)) {
        for d in &mut self.dps {
            f(d);
        }
    }
}

/// `FRAMES_TRACE=1`: each frame's verdicts on stderr (to check what a seed does).
fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("FRAMES_TRACE").is_some())
}

/// The input, read as it is consumed; reads past its end give zeros.
struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Input<'_> {
    fn more(&self) -> bool {
        self.pos < self.data.len()
    }
    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let start = self.pos.min(self.data.len());
        let end = (start + n).min(self.data.len());
        self.pos += n;
        &self.data[start..end]
    }
}

/// The ones' complement sum of `b`, added to `sum`.
fn csum_add(mut sum: u32, b: &[u8]) -> u32 {
    let mut chunks = b.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn csum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Fills in the IPv4 header checksum and the TCP/UDP/ICMP checksum of an Ethernet frame
/// (untagged or 802.1Q), as far as its lengths allow.
fn fix_checksums(f: &mut [u8]) {
    let l3 = match f.get(12..14) {
        Some([8, 0]) => 14,
        Some([0x81, 0]) if f.get(16..18) == Some(&[8, 0]) => 18,
        _ => return,
    };
    let Some(&vihl) = f.get(l3) else { return };
    let ihl = usize::from(vihl & 15) * 4;
    if ihl < 20 || f.len() < l3 + ihl {
        return;
    }
    f[l3 + 10..l3 + 12].fill(0);
    let c = csum_fold(csum_add(0, &f[l3..l3 + ihl]));
    f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    let total = usize::from(u16::from_be_bytes([f[l3 + 2], f[l3 + 3]]));
    let end = (l3 + total).min(f.len());
    let l4 = l3 + ihl;
    let first_fragment = u16::from_be_bytes([f[l3 + 6], f[l3 + 7]]) & 0x1fff == 0;
    if end <= l4 || !first_fragment {
        return;
    }
    let proto = f[l3 + 9];
    let at = match proto {
        TCP if end - l4 >= 20 => 16,
        UDP if end - l4 >= 8 => 6,
        ICMP if end - l4 >= 4 => 2,
        _ => return,
    };
    f[l4 + at..l4 + at + 2].fill(0);
    let mut sum = 0;
    if proto != ICMP {
        sum = csum_add(sum, &f[l3 + 12..l3 + 20]);
        sum += u32::from(proto) + (end - l4) as u32;
    }
    let mut c = csum_fold(csum_add(sum, &f[l4..end]));
    if proto == UDP && c == 0 {
        c = 0xffff;
    }
    f[l4 + at..l4 + at + 2].copy_from_slice(&c.to_be_bytes());
}

/// An Ethernet + IPv4 frame carrying `l4` (checksums filled in).
fn ipv4_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    l4: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(34 + l4.len());
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[8, 0]);
    let total = (20 + l4.len()) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, proto, 0, 0]);
    f.extend_from_slice(&src.octets());
    f.extend_from_slice(&dst.octets());
    f.extend_from_slice(l4);
    fix_checksums(&mut f);
    f
}

/// A TCP segment (no options) or UDP datagram carrying `payload`.
fn l4(proto: u8, sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut s = Vec::new();
    s.extend_from_slice(&sport.to_be_bytes());
    s.extend_from_slice(&dport.to_be_bytes());
    if proto == TCP {
        s.extend_from_slice(&[
            0, 0, 0x10, 0, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0,
        ]);
    } else {
        s.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        s.extend_from_slice(&[0, 0]);
    }
    s.extend_from_slice(payload);
    s
}

/// Clients: the test client and its neighbours (region eu), a resolver of region us, one of
/// no region.
fn client(i: u8) -> Ipv4Addr {
    match i & 7 {
        6 => Ipv4Addr::new(10, 30, 1, 1),
        7 => Ipv4Addr::new(172, 16, 0, 1),
        n => Ipv4Addr::new(10, 20, 9, 2 + n),
    }
}

/// Where a client's frame goes: each service, ports without one, the balancer's own and
/// floating addresses, the DNS address, somewhere else.
const TARGETS: [(Ipv4Addr, u16, u8); 16] = [
    (VIP, 80, TCP),
    (VIP, 53, UDP),
    (VIP, 443, TCP),
    (VIP, 5000, UDP),
    (VIP, 80, TCP),
    (VIP, 443, TCP),
    (VIP, 22, TCP),
    (VIP, 80, UDP),
    (LB_ADDR, 22, TCP),
    (LB_ADDR, 179, TCP),
    (DNS, 53, UDP),
    (DNS, 53, TCP),
    (SNAT_FLOAT, 2001, TCP),
    (GW, 80, TCP),
    (B1, 80, TCP),
    (Ipv4Addr::new(8, 8, 8, 8), 53, UDP),
];

/// Where a server's own traffic goes.
const SERVER_DESTS: [Ipv4Addr; 8] = [
    CLIENT,
    ROUTER,
    LB_ADDR,
    VIP,
    GW,
    Ipv4Addr::new(8, 8, 8, 8),
    B2,
    SNAT_FLOAT,
];

/// Addresses and MACs ARP talks about.
const ARP_IPS: [Ipv4Addr; 8] = [LB_ADDR, VIP, GW, B1, B2, ROUTER, SNAT_FLOAT, DNS];
const ARP_MACS: [[u8; 6]; 4] = [ROUTER_MAC, B1_MAC, B2_MAC, [2, 0, 0, 0, 0, 0x77]];

/// The balancer's reply to, or its copy of, a frame it sent, mirrored: from the host it was
/// sent to, back to its source.
fn mirror(out: &[u8], flags: u8) -> Option<Vec<u8>> {
    if out.len() < 34 || out[12..14] != [8, 0] {
        return None;
    }
    let ihl = usize::from(out[14] & 15) * 4;
    let proto = out[23];
    let l4at = 14 + ihl;
    let src = Ipv4Addr::new(out[26], out[27], out[28], out[29]);
    let dst = Ipv4Addr::new(out[30], out[31], out[32], out[33]);
    let ports = out.get(l4at..l4at + 4)?;
    let (sport, dport) = (
        u16::from_be_bytes([ports[0], ports[1]]),
        u16::from_be_bytes([ports[2], ports[3]]),
    );
    let mac: [u8; 6] = out[0..6].try_into().ok()?;
    let proto = if proto == UDP { UDP } else { TCP };
    Some(ipv4_frame(
        LB_MAC,
        mac,
        dst,
        src,
        proto,
        &l4(proto, dport, sport, flags, &[]),
    ))
}

/// An ICMP error about a frame the balancer sent, from the host it went to (or the router
/// on the way), back to the frame's source: `kind` picks the type and code, `quote` how much
/// of the frame's IP packet it carries.
fn icmp_error(out: &[u8], kind: u8, quote: u8) -> Option<Vec<u8>> {
    if out.len() < 34 || out[12..14] != [8, 0] {
        return None;
    }
    let ip = &out[14..];
    let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let mac: [u8; 6] = out[0..6].try_into().ok()?;
    let (t, code, from) = match kind & 7 {
        0 => (3, 3, dst),
        1 => (3, 4, ROUTER),
        2 => (11, 0, ROUTER),
        3 => (3, 1, ROUTER),
        4 => (3, 3, dst),
        5 => (12, 0, dst),
        6 => (3, 13, ROUTER),
        _ => (kind >> 3, quote & 15, dst),
    };
    let n = match quote >> 6 {
        0 => 28,
        1 => 20,
        2 => ip.len(),
        _ => usize::from(quote & 63),
    }
    .min(ip.len());
    let mut m = vec![t, code, 0, 0, 0, 0, 0x05, 0xdc];
    m.extend_from_slice(&ip[..n]);
    Some(ipv4_frame(LB_MAC, mac, from, src, ICMP, &m))
}

/// A record the HA peer streamed (8 bytes): an op, a tuple of one of the services (or not),
/// a backend, and the rest as they come (a conn state or persistence netmask, flags, where
/// a NAT conn's backend side goes).
fn peer_record(inp: &mut Input) -> SyncRecord {
    let (a, state, fl, c, t, b) = (inp.u8(), inp.u8(), inp.u8(), inp.u8(), inp.u8(), inp.u8());
    let rev_dport = inp.u16();
    let (vip, vport, proto) = TARGETS[usize::from(t & 15)];
    let backend = [B1, B2, CLIENT, LB_ADDR][usize::from(b & 3)];
    let bport = [80, 443, 8443, 53, 5000, 0, 40000, 2001][usize::from(b >> 2) & 7];
    let rev_dst = [LB_ADDR, SNAT_FLOAT, client(c), B1][usize::from(b >> 5) & 3];
    SyncRecord {
        op: [SyncOp::Upsert, SyncOp::Delete, SyncOp::Persist][usize::from(a % 3)],
        proto: if a & 4 != 0 { a >> 3 } else { proto },
        state,
        flags: fl,
        client: u32::from(client(c)),
        vip: u32::from(vip),
        cport: 40000 + u16::from(c >> 3),
        vport,
        backend: u32::from(backend),
        bport,
        rev_dport,
        rev_dst: u32::from(rev_dst),
    }
}

/// The state a run builds up: the two nodes, the clock, what the balancer sent lately.
struct Run {
    bits: u8,
    full: Node,
    fast: Node,
    now: u32,
    outputs: [Option<Vec<u8>>; OUTPUTS],
    next_out: usize,
    frames: usize,
}

impl Run {
    fn nodes(&mut self) -> [&mut Node; 2] {
        [&mut self.full, &mut self.fast]
    }

    /// One frame into both nodes at worker `w`: the same outcome, every invariant held.
    fn frame(&mut self, w: usize, f: Vec<u8>, hint_mode: u8) {
        let w = w % self.full.dps.len();
        let a = self.full.rx(w, f.clone(), self.now, hint_mode);
        let b = self.fast.rx(w, f, self.now, hint_mode);
        assert_eq!(
            a, b,
            "frame {}: full path and fast lane disagree",
            self.frames
        );
        if trace() {
            eprintln!("frame {} at {}: {:?}", self.frames, self.now, a.verdicts);
        }
        for (x, y) in self.full.dps.iter().zip(&self.fast.dps) {
            assert_eq!(
                x.ctr.0, y.ctr.0,
                "frame {}: counters differ (full path, fast lane)",
                self.frames
            );
        }
        self.full.check();
        self.fast.check();
        if let Some(&(_, Verdict::Forward(_))) = a.verdicts.last() {
            let mut out = a.frame;
            if out.get(12..14) == Some(&[0x81, 0]) {
                out.drain(12..16);
            }
            self.outputs[self.next_out] = Some(out);
            self.next_out = (self.next_out + 1) % OUTPUTS;
        }
        self.frames += 1;
        if self.frames.is_multiple_of(64) {
            self.compare_state();
        }
    }

    /// Service and backend counters and conns: the same in both nodes.
    fn compare_state(&self) {
        for (x, y) in self.full.dps.iter().zip(&self.fast.dps) {
            assert!(x.svc_ctr == y.svc_ctr, "service counters differ");
            assert!(
                x.flows.snapshot(usize::MAX) == y.flows.snapshot(usize::MAX),
                "conns differ"
            );
        }
    }

    fn output(&self, k: u8) -> Option<&[u8]> {
        self.outputs[usize::from(k) % OUTPUTS].as_deref()
    }

    /// Management's changes, applied to every worker of both nodes; `c >> 4` says which:
    ///
    /// 0, 1: a snapshot with backend state `c & 31` ([`runtime`]; bit 4: `on_backend_down =
    /// "drop"`); 2, 3: B1's MAC changed, restored; 4, 5: B2's, the router's forgotten; 6: the
    /// router's changed; 7: every static MAC restored; 8: the workers' resolve requests
    /// answered; 9: a reload with nothing changed; 10: B1's MAC forgotten; 11: a bulk HA
    /// resync; 12: `(c & 15) + 1` records from the HA peer follow (8 bytes each,
    /// [`peer_record`]) and are installed (HA kinds only).
    fn control(&mut self, c: u8, inp: &mut Input<'_>) {
        let learned = self.full.drain_events(c >> 4 == 8);
        self.fast.drain_events(false);
        let peer: Vec<SyncRecord> = if c >> 4 == 12 {
            (0..=c & 15).map(|_| peer_record(inp)).collect()
        } else {
            Vec::new()
        };
        let now = self.now;
        let bits = self.bits;
        let mac = [2, 0, 0, 0, 0, 0x70 | (c & 15)];
        for n in self.nodes() {
            match c >> 4 {
                0 | 1 => {
                    let s = snapshot(bits, c & 31);
                    n.each(|d| drop(d.set_snapshot(s.clone())));
                }
                2 => n.each(|d| d.set_neighbour(B1, Some(mac))),
                3 => n.each(|d| d.set_neighbour(B1, Some(B1_MAC))),
                4 => n.each(|d| d.set_neighbour(B2, None)),
                5 => n.each(|d| d.set_neighbour(ROUTER, None)),
                6 => n.each(|d| d.set_neighbour(ROUTER, Some(mac))),
                7 => n.each(|d| {
                    d.set_neighbour(B1, Some(B1_MAC));
                    d.set_neighbour(B2, Some(B2_MAC));
                    d.set_neighbour(ROUTER, Some(ROUTER_MAC));
                }),
                8 => {
                    for (ip, mac) in &learned {
                        n.each(|d| d.set_neighbour(*ip, Some(*mac)));
                    }
                }
                9 => {
                    // A reload with nothing changed.
                    let s = snapshot(bits, 0);
                    n.each(|d| drop(d.set_snapshot(s.clone())));
                }
                10 => n.each(|d| d.set_neighbour(B1, None)),
                11 => n.each(|d| d.sync_all()),
                // Only a node with [ha] hears from a peer.
                12 if !n.sync.is_empty() => n.install(&peer, now),
                _ => {}
            }
        }
    }

    /// The clock moves on; workers sweep their tables as between bursts.
    fn advance(&mut self, t: u8, sweep: u8) {
        let ms: u32 = match t {
            0..0x80 => u32::from(t),
            0x80..0xc0 => u32::from(t - 0x80) * 1000,
            _ => u32::from(t - 0xc0) * 60_000,
        };
        self.now = self.now.wrapping_add(ms);
        let now = self.now;
        let buckets = 1usize << (sweep & 15);
        self.full.drain_events(false);
        self.fast.drain_events(false);
        for n in self.nodes() {
            n.each(|d| {
                d.sweep(now, buckets);
                d.sync_round(now);
            });
            n.check();
        }
        let (a, b) = (self.full.drain_sync(), self.fast.drain_sync());
        assert!(a == b, "HA sync records differ (full path, fast lane)");
        for (x, y) in self.full.dps.iter().zip(&self.fast.dps) {
            assert_eq!(x.ctr.0, y.ctr.0, "counters differ after a sweep");
        }
    }
}

fn run(data: &[u8]) {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        // Each conn table is its own 2 MiB-aligned mapping advised for huge pages
        // (dpdk::HugeSlice): four tables a run would have the kernel clear 16 MiB each time.
        // Without transparent huge pages only the pages a table uses are cleared.
        // SAFETY: prctl with integer arguments; it changes only this process's THP mode.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    });
    let mut inp = Input { data, pos: 0 };
    let bits = inp.u8();
    let now = inp.u32();
    let workers = if bits & cfg_bit::TWO_WORKERS != 0 {
        2
    } else {
        1
    };
    let capacity = if bits & cfg_bit::SMALL != 0 { 16 } else { 1024 };
    let snap = snapshot(bits, 0);
    let vlan = bits & cfg_bit::VLAN != 0;
    let ha = KINDS[usize::from(bits & cfg_bit::KIND)].2.is_some();
    let mut r = Run {
        bits,
        full: Node::new(&snap, workers, capacity, ha, false),
        fast: Node::new(&snap, workers, capacity, ha, true),
        now,
        outputs: Default::default(),
        next_out: 0,
        frames: 0,
    };
    while inp.more() && r.frames < 4096 {
        let op = inp.u8();
        let p = op >> 3;
        let f = match op & 7 {
            // Raw bytes, as they are.
            0 => {
                let len = usize::from(inp.u16() & 0x7ff);
                Some(inp.bytes(len).to_vec())
            }
            // A client to a service (or elsewhere): client, source port, flags, payload.
            1 => {
                let (dst, dport, proto) = TARGETS[usize::from(p & 15)];
                let c = inp.u8();
                let sport = 40000 + u16::from(inp.u8());
                let flags = inp.u8();
                let n = usize::from(inp.u8());
                let payload = inp.bytes(n).to_vec();
                let proto = if p & 16 != 0 && proto == UDP {
                    ICMP
                } else {
                    proto
                };
                let seg = if proto == ICMP {
                    // An echo request.
                    let mut m = vec![8, 0, 0, 0, 0, 1, 0, 1];
                    m.extend_from_slice(&payload);
                    m
                } else {
                    l4(proto, sport, dport, flags, &payload)
                };
                Some(ipv4_frame(LB_MAC, ROUTER_MAC, client(c), dst, proto, &seg))
            }
            // The other end's answer to a frame the balancer sent.
            2 => {
                let flags = inp.u8();
                r.output(p)
                    .and_then(|o| mirror(o, flags))
                    .or_else(|| Some(testkit::frames::syn()))
            }
            // An ICMP error about a frame the balancer sent.
            3 => {
                let (kind, quote) = (inp.u8(), inp.u8());
                r.output(p).and_then(|o| icmp_error(o, kind, quote))
            }
            4 => {
                r.advance(inp.u8(), p);
                None
            }
            5 => {
                let c = inp.u8();
                r.control(c, &mut inp);
                None
            }
            // A server's own traffic (gateway mode routes it).
            6 => {
                let (server, mac) = if p & 1 == 0 {
                    (B1, B1_MAC)
                } else {
                    (B2, B2_MAC)
                };
                let dst = SERVER_DESTS[usize::from(p >> 1) & 7];
                let (sport, dport, flags) = (inp.u16(), inp.u16(), inp.u8());
                // Ports 0 and 0: an echo request.
                let proto = match (sport, dport, p & 16 != 0) {
                    (0, 0, _) => ICMP,
                    (_, _, true) => UDP,
                    _ => TCP,
                };
                let seg = if proto == ICMP {
                    vec![8, 0, 0, 0, 0, 1, 0, 1]
                } else {
                    l4(proto, sport, dport, flags, &[])
                };
                Some(ipv4_frame(LB_MAC, mac, server, dst, proto, &seg))
            }
            // ARP: request or reply, sender, target.
            _ => {
                let a = inp.u8();
                let sender = ARP_IPS[usize::from(a & 7)];
                let target = ARP_IPS[usize::from(a >> 3) & 7];
                let smac = ARP_MACS[usize::from(p & 3)];
                let oper = if p & 4 != 0 { 2u8 } else { 1 };
                let dmac = if p & 8 != 0 { LB_MAC } else { [0xff; 6] };
                let mut f = Vec::with_capacity(42);
                f.extend_from_slice(&dmac);
                f.extend_from_slice(&smac);
                f.extend_from_slice(&[8, 6, 0, 1, 8, 0, 6, 4, 0, oper]);
                f.extend_from_slice(&smac);
                f.extend_from_slice(&sender.octets());
                f.extend_from_slice(&if oper == 2 { LB_MAC } else { [0; 6] });
                f.extend_from_slice(&target.octets());
                Some(f)
            }
        };
        let Some(mut f) = f else { continue };
        // How the frame arrives: patched, re-checksummed, tagged, at which worker, with
        // which prefetch hint.
        let meta = inp.u8();
        for _ in 0..(meta >> 2) & 3 {
            let (at, v) = (usize::from(inp.u8()), inp.u8());
            if let Some(b) = f.get_mut(at) {
                *b = v;
            }
        }
        if meta & 16 != 0 {
            fix_checksums(&mut f);
        }
        let raw = op & 7 == 0;
        if !raw && (vlan != (meta & 32 != 0)) && f.len() >= 12 {
            f.splice(12..12, [0x81, 0, 0, VLAN as u8]);
        }
        r.frame(usize::from(meta >> 6), f, meta);
    }
    r.compare_state();
}

fuzz_target!(|data: &[u8]| run(data));
