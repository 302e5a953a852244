//! The per-packet decision, on plain bytes: classify a frame; answer ARP and ICMP echo for the
//! balancer's addresses; balance TCP/UDP to a VIP in the service's mode (DSR, proxy, gateway);
//! translate replies and ICMP errors of NAT conns; follow the fragment policy; route what the
//! servers send in gateway mode. No DPDK type appears here (the worker owns the mbufs, seen
//! through [`PacketBuf`]), so all of it runs in unit tests and golden tests alike.
//!
//! A bad or unwanted frame becomes `Verdict::Drop(reason)` and a counter; nothing here
//! allocates, locks, formats or makes a syscall.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::Ipv4Addr;
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use rustc_hash::FxHasher;

mod fast;
pub use fast::{Gate, Pre};

use crate::channel::Event;
use crate::config::Mode;
use crate::flow::{Conn, ConnId, Dir, FlowKey, FlowState, FlowTable, flags};
use crate::frag::{FragAction, FragTable};
use crate::lb::persist::{PersistTable, masked, source_hash};
use crate::lb::sched::{BackendLoad, PickInput, SchedState, pick};
use crate::lb::{LocalKind, Snapshot};
use crate::mode::{self, Xmit, dsr, gateway, proxy};
use crate::nat::{SnatPortPool, owner_of, port_owner};
use crate::stats::{Counters, Ctr, ServiceCounters};
use crate::types::{BackendId, DropReason, IfIdx, MAX_BACKENDS, PacketBuf, SnatIdx, Verdict};
use crate::wire::{
    self, ETHERTYPE_ARP, ETHERTYPE_IPV4, ICMP_NET_UNREACH, ICMP_TIME_EXCEEDED, ICMP_UNREACH,
    IcmpError, Ipv4Meta, L2, PROTO_ICMP, PROTO_TCP, PROTO_UDP, Rewrite,
};

/// Most neighbours a worker caches (the map is sized once, never grows on the data path).
pub const NEIGH_CAPACITY: usize = 4096;
/// How long a fragment decision is remembered.
const FRAG_TIMEOUT_MS: u32 = 2000;
/// Re-ask management to resolve the same address at most this often.
const RESOLVE_EVERY_MS: u32 = 500;

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// Per-worker parameters fixed at start.
#[derive(Debug, Clone, Copy)]
pub struct WorkerInfo {
    pub index: usize,
    pub count: usize,
    pub flow_capacity: usize,
    pub persist_capacity: usize,
}

/// One worker's data-plane state. Owned by exactly one thread.
pub struct Datapath {
    pub snap: Arc<Snapshot>,
    pub flows: FlowTable,
    neigh: FxMap<u32, [u8; 6]>,
    resolve_asked: [(u32, u32); 64],
    pub ctr: Counters,
    /// Per service and backend: packets, bytes, flows.
    pub svc_ctr: ServiceCounters,
    events: Arc<ArrayQueue<Event>>,
    me: WorkerInfo,
    nat: SnatPortPool,
    frags: FragTable,
    persist: PersistTable,
    sched: Vec<SchedState>,
    /// Live conns per backend on this worker (exact); others' via `load`.
    backend_conns: Vec<u32>,
    load: Arc<BackendLoad>,
    /// The worker's prefetch pass already hashed this packet's tuple (see `pre_parse`).
    hash_hint: Option<u64>,
    /// The fast lane's caches (see `fast`).
    fast: fast::FastCache,
}

impl Datapath {
    pub fn new(
        snap: Arc<Snapshot>,
        me: WorkerInfo,
        events: Arc<ArrayQueue<Event>>,
        load: Arc<BackendLoad>,
    ) -> Self {
        let mut neigh = FxMap::default();
        neigh.reserve(NEIGH_CAPACITY);
        let mut flows = FlowTable::new(me.flow_capacity);
        record_backends(&mut flows, &snap);
        Datapath {
            nat: SnatPortPool::new(snap.snat.len(), me.index, me.count, snap.nat_ports),
            sched: snap.services.iter().map(SchedState::for_service).collect(),
            fast: fast::FastCache::new(&snap),
            snap,
            flows,
            neigh,
            resolve_asked: [(0, 0); 64],
            ctr: Counters::default(),
            svc_ctr: ServiceCounters::default(),
            events,
            me,
            frags: FragTable::new(FRAG_TIMEOUT_MS),
            persist: PersistTable::new(me.persist_capacity),
            backend_conns: vec![0; MAX_BACKENDS],
            load,
            hash_hint: None,
        }
    }

    pub fn set_neighbour(&mut self, ip: Ipv4Addr, mac: Option<[u8; 6]>) {
        let k = u32::from(ip);
        self.fast.invalidate();
        match mac {
            Some(m) if self.neigh.len() < NEIGH_CAPACITY || self.neigh.contains_key(&k) => {
                self.neigh.insert(k, m);
            }
            Some(_) => {}
            None => {
                self.neigh.remove(&k);
            }
        }
    }

    /// Installs a new snapshot. Conns keep their `BackendId`s, which management keeps stable
    /// across snapshots, so established flows stay on their backend.
    pub fn set_snapshot(&mut self, snap: Arc<Snapshot>) -> Arc<Snapshot> {
        self.sched = snap.services.iter().map(SchedState::for_service).collect();
        self.fast.rebuild(&snap);
        record_backends(&mut self.flows, &snap);
        std::mem::replace(&mut self.snap, snap)
    }

    /// Once per poll round: flow counters into `ctr`, backend conn counts to the others.
    pub fn publish(&mut self) {
        let f = self.flows.counters;
        self.ctr.set(Ctr::FlowsCreated, f.created);
        self.ctr.set(Ctr::FlowsExpired, f.expired);
        self.ctr.set(Ctr::FlowsActive, self.flows.active() as u64);
        self.ctr
            .set(Ctr::FlowCapacity, self.flows.capacity() as u64);
        self.ctr
            .set(Ctr::FlowTableBytes, self.flows.memory_bytes() as u64);
        // Only the backends that exist (the array is sized for the most there can be).
        let n = self.snap.backends.len().min(self.backend_conns.len());
        self.load.publish(self.me.index, &self.backend_conns[..n]);
    }

    /// Reclaims a slice of expired conns (between bursts).
    pub fn sweep(&mut self, now: u32, buckets: usize) {
        self.with_reclaim(|flows, t, reclaim| {
            flows.sweep(now, t, buckets, &mut { reclaim });
        });
    }

    /// Runs `f` on the conn table with the idle timeouts and the callback that gives back
    /// what a dead conn held (its NAT port, its backend count).
    #[inline]
    fn with_reclaim<R>(
        &mut self,
        f: impl FnOnce(&mut FlowTable, &crate::flow::Timeouts, &mut dyn FnMut(&Conn)) -> R,
    ) -> R {
        let t = self.snap.timeouts;
        let Datapath {
            flows,
            nat,
            backend_conns,
            ..
        } = self;
        f(flows, &t, &mut |c: &Conn| reclaim(c, nat, backend_conns))
    }

    /// Counts a frame the worker could not hand over as one slice (chained mbuf).
    pub fn count_unparseable(&mut self, len: usize, reason: DropReason) {
        self.ctr.inc(Ctr::RxPackets);
        self.ctr.add(Ctr::RxBytes, len as u64);
        self.ctr.drop(reason);
    }

    /// Like [`Datapath::process`], with the tuple hash the prefetch pass computed.
    #[inline]
    pub fn process_hinted<P: PacketBuf>(
        &mut self,
        p: &mut P,
        in_if: IfIdx,
        now: u32,
        hint: Option<u64>,
    ) -> Verdict {
        self.hash_hint = hint;
        let v = self.process(p, in_if, now, false);
        self.hash_hint = None;
        v
    }

    /// Decides one frame that arrived on `in_if` (or was handed over by another worker when
    /// `steered`), rewriting it in place, and counts it. A steered frame was counted as
    /// received (and as steered) by the worker that handed it over.
    #[inline]
    pub fn process<P: PacketBuf>(
        &mut self,
        p: &mut P,
        in_if: IfIdx,
        now: u32,
        steered: bool,
    ) -> Verdict {
        if !steered {
            self.ctr.inc(Ctr::RxPackets);
            self.ctr.add(Ctr::RxBytes, p.bytes().len() as u64);
        }
        let v = self.classify(p, in_if, now, steered);
        match v {
            Verdict::Forward(_) => self.ctr.inc(Ctr::Forwarded),
            Verdict::Reply => self.ctr.inc(Ctr::Replied),
            Verdict::Consumed => self.ctr.inc(Ctr::Consumed),
            // Counted by the worker: steered_out once the ring took it, else drop_steer_full.
            Verdict::Steer(_) => {}
            Verdict::ToKernel => self.ctr.inc(Ctr::ToKernel),
            Verdict::Drop(r) => self.ctr.drop(r),
        }
        if steered {
            self.ctr.inc(Ctr::SteeredIn);
        }
        v
    }

    fn classify<P: PacketBuf>(
        &mut self,
        p: &mut P,
        in_if: IfIdx,
        now: u32,
        steered: bool,
    ) -> Verdict {
        let b = p.bytes();
        let l2 = match wire::parse_l2(b) {
            Ok(l2) => l2,
            Err(r) => return Verdict::Drop(r),
        };
        let ifc = &self.snap.interfaces[usize::from(in_if.0)];
        if l2.vlan != ifc.vlan {
            return Verdict::Drop(DropReason::VlanMismatch);
        }
        match l2.ethertype {
            ETHERTYPE_ARP => self.arp(b, l2.l3, in_if),
            ETHERTYPE_IPV4 => {
                // A one-arm port is promiscuous: IPv4 must be unicast to our MAC.
                if b[0..6] != ifc.mac {
                    return Verdict::Drop(DropReason::NotForUs);
                }
                self.ipv4(p, &l2, in_if, now, steered)
            }
            _ => Verdict::Drop(DropReason::UnsupportedEthertype),
        }
    }

    fn arp(&mut self, frame: &mut [u8], l3: usize, in_if: IfIdx) -> Verdict {
        let a = match wire::parse_arp(frame, l3) {
            Ok(a) => a,
            Err(r) => return Verdict::Drop(r),
        };
        let ours = matches!(self.snap.local(a.target_ip), Some((i, _)) if i == in_if);
        // Learn from replies to us, and from requests for us that show a new MAC.
        if ours && !a.sender_ip.is_unspecified() {
            let known = self.neigh.get(&u32::from(a.sender_ip)).copied();
            if (!a.is_request || known != Some(a.sender_mac))
                && self
                    .events
                    .push(Event::Neighbour {
                        ip: a.sender_ip,
                        mac: a.sender_mac,
                        iface: in_if,
                    })
                    .is_err()
            {
                self.ctr.inc(Ctr::EventsLost);
            }
        }
        if a.is_request && ours && a.sender_ip != a.target_ip {
            let mac = self.snap.interfaces[usize::from(in_if.0)].mac;
            wire::arp_request_to_reply(frame, l3, &a, mac);
            return Verdict::Reply;
        }
        if !a.is_request && ours {
            return Verdict::Consumed;
        }
        Verdict::Drop(DropReason::ArpNotForUs)
    }

    fn ipv4<P: PacketBuf>(
        &mut self,
        p: &mut P,
        l2: &L2,
        in_if: IfIdx,
        now: u32,
        steered: bool,
    ) -> Verdict {
        let ip = match wire::parse_ipv4(p.bytes(), l2.l3) {
            Ok(ip) => ip,
            Err(r) => return Verdict::Drop(r),
        };
        let local = self.snap.local(ip.dst).map(|(_, k)| k);
        if ip.proto == PROTO_ICMP && !ip.is_fragment {
            return self.icmp(p, l2, &ip, in_if, local, now, steered);
        }
        if ip.is_later_fragment {
            return self.later_fragment(p, l2, &ip, in_if, local, now);
        }
        if ip.proto != PROTO_TCP && ip.proto != PROTO_UDP {
            return match local {
                Some(LocalKind::Interface) if self.kernel(in_if) => Verdict::ToKernel,
                Some(_) if ip.is_fragment => Verdict::Drop(DropReason::Fragment),
                Some(_) => Verdict::Drop(DropReason::LocalNotHandled),
                None => self.route(p, l2, &ip, in_if, now),
            };
        }
        let l4 = match wire::parse_l4(p.bytes(), &ip) {
            Ok(l4) => l4,
            Err(r) => return Verdict::Drop(r),
        };
        let key = FlowKey::new(ip.src, ip.dst, l4.src_port, l4.dst_port, ip.proto);
        let workers = self.me.count;
        // Which worker owns the conn this packet belongs to (NAT conns only; see `nat`).
        let owner = match local {
            Some(LocalKind::Vip) => match self.snap.service(ip.dst, l4.dst_port, ip.proto) {
                None => return Verdict::Drop(DropReason::NoService),
                Some(si) if self.snap.services[usize::from(si)].mode == Mode::Dsr => None,
                Some(_) => Some(owner_of(key.src, key.src_port, workers)),
            },
            Some(_) => port_owner(l4.dst_port, workers, self.snap.nat_ports),
            None if self.snap.routing => Some(owner_of(key.dst, key.dst_port, workers)),
            None => return Verdict::Drop(DropReason::NotForUs),
        };
        if let Some(o) = owner
            && o != self.me.index
            && !steered
        {
            if ip.is_fragment {
                let a = FragAction::Steer(o as u16);
                self.frags
                    .remember(key.src, key.dst, ip.id, ip.proto, a, now);
            }
            return Verdict::Steer(o as u16);
        }
        // `pre_parse` hashed this very tuple already: no need to hash twice.
        let hash = self.hash_hint.take().unwrap_or_else(|| key.hash());
        debug_assert_eq!(hash, key.hash());
        let hit = self.lookup(&key, hash, now);
        let (id, dir) = match (hit, local) {
            (Some(h), _) => h,
            (None, Some(LocalKind::Vip)) => {
                let si = self
                    .snap
                    .service(ip.dst, l4.dst_port, ip.proto)
                    .expect("checked above");
                match self.new_conn(si, &key, hash, &l4.tcp, now) {
                    Ok(id) => (id, Dir::Forward),
                    Err(r) => return Verdict::Drop(r),
                }
            }
            (None, Some(LocalKind::Interface)) if self.kernel(in_if) => {
                return Verdict::ToKernel;
            }
            (None, Some(LocalKind::Interface)) => {
                return Verdict::Drop(DropReason::LocalNotHandled);
            }
            (None, Some(LocalKind::Snat)) => return Verdict::Drop(DropReason::NoFlow),
            (None, None) => return self.route(p, l2, &ip, in_if, now),
        };
        if ip.is_fragment {
            let a = FragAction::Conn(key);
            self.frags
                .remember(key.src, key.dst, ip.id, ip.proto, a, now);
        }
        let c = self.flows.conn_mut(id);
        c.touch(now);
        if ip.proto == PROTO_TCP {
            c.track_tcp(p.bytes()[ip.l4 + 13]);
        }
        self.send(p, l2, &ip, in_if, id, dir, true, now)
    }

    /// Creates the conn for a new flow to service `si`: persistence or scheduler picks the
    /// backend, the mode builds the reverse tuple (proxy takes a local port).
    fn new_conn(
        &mut self,
        si: u16,
        key: &FlowKey,
        hash: u64,
        tcp: &wire::TcpFlags,
        now: u32,
    ) -> Result<ConnId, DropReason> {
        let snap = &*self.snap;
        let svc = &snap.services[usize::from(si)];
        let persisted = svc
            .persistence
            .map(|(timeout, mask)| (timeout, masked(key.src, mask)));
        let sticky = persisted.and_then(|(timeout, m)| {
            self.persist.get(si, m, now, timeout).filter(|b| {
                snap.backends
                    .get(b.0 as usize)
                    .is_some_and(|b| b.service == si)
            })
        });
        let backend = match sticky {
            Some(b) => b,
            None => {
                let src_hash = source_hash(persisted.map_or(key.src, |(_, m)| m));
                let slot = if persisted.is_some() {
                    // First pick for a client subnet: a weighted consistent hash of it, which
                    // every core and every instance computes alike (see lb::persist).
                    svc.maglev.lookup(src_hash).map(usize::from)
                } else {
                    let me = self.me.index;
                    let (own, load) = (&self.backend_conns, &self.load);
                    let active = |b: BackendId| {
                        own.get(b.0 as usize).copied().unwrap_or(0) + load.others(me, b)
                    };
                    let inp = PickInput {
                        service: svc,
                        backends: &snap.backends,
                        flow_hash: hash,
                        source_hash: src_hash,
                        active: &active,
                    };
                    pick(svc.scheduler, &mut self.sched[usize::from(si)], &inp)
                };
                let Some(slot) = slot else {
                    return Err(DropReason::NoBackend);
                };
                let b = svc.backends[slot];
                if let Some((timeout, m)) = persisted {
                    self.persist.put(si, m, b, now, timeout);
                }
                b
            }
        };
        let b = &snap.backends[backend.0 as usize];
        let state = if key.proto == PROTO_UDP {
            FlowState::Udp
        } else if tcp.rst || tcp.fin {
            FlowState::TcpClosing
        } else if tcp.syn && !tcp.ack {
            FlowState::TcpSyn
        } else {
            // A flow first seen mid-stream (restart, ECMP change) is adopted.
            FlowState::TcpEstablished
        };
        let mut conn = Conn::new(key, state, si, backend.0);
        match svc.mode {
            Mode::Dsr => {}
            Mode::Gateway => {
                let rev = gateway::reverse_tuple(
                    b.addr,
                    b.port,
                    Ipv4Addr::from(key.src),
                    key.src_port,
                    key.proto,
                );
                conn = conn.with_reverse(&rev);
            }
            Mode::Proxy => {
                let cands = &snap.interfaces[usize::from(b.iface.0)].snat;
                let Some((idx, lport)) = self.nat.alloc(cands, (hash >> 48) as usize) else {
                    return Err(DropReason::SnatExhausted);
                };
                let (snat_ip, _) = snap.snat[usize::from(idx.0)];
                let rev = proxy::reverse_tuple(b.addr, b.port, snat_ip, lport, key.proto);
                conn = conn.with_reverse(&rev);
                conn.flags |= flags::SNAT;
                conn.snat_idx = idx.0;
            }
        }
        match self.flows.insert(conn, now) {
            Ok(id) => {
                if let Some(n) = self.backend_conns.get_mut(backend.0 as usize) {
                    *n += 1;
                }
                self.svc_ctr.flow(si, backend.0);
                Ok(id)
            }
            Err(_) => {
                if conn.flags & flags::SNAT != 0 {
                    self.nat.free(SnatIdx(conn.snat_idx), conn.rev_dport);
                }
                Err(DropReason::FlowTableFull)
            }
        }
    }

    /// Sends a packet of conn `id` travelling in `dir`: TTL (NAT modes route), next hop,
    /// the mode's rewrite, VLAN of the egress interface.
    #[allow(clippy::too_many_arguments)]
    fn send<P: PacketBuf>(
        &mut self,
        p: &mut P,
        l2: &L2,
        ip: &Ipv4Meta,
        in_if: IfIdx,
        id: ConnId,
        dir: Dir,
        has_l4: bool,
        now: u32,
    ) -> Verdict {
        let conn = *self.flows.conn(id);
        // Copy out what is needed so the snapshot is not borrowed across `&mut self` calls
        // (cloning the Arc per packet would cost two atomic operations).
        let (egress, target) = match self.next_hop(dir, conn.hop_key(dir)) {
            Ok(h) => h,
            Err(r) => return Verdict::Drop(r),
        };
        let snap = &*self.snap;
        let mode = snap.services[usize::from(conn.service)].mode;
        let eg = &snap.interfaces[usize::from(egress.0)];
        let (eg_mac, eg_vlan) = (eg.mac, eg.vlan);
        self.svc_ctr
            .count(conn.service, conn.backend, ip.end - l2.l3);
        // NAT modes route: the TTL goes down by one (in the mode's rewrite, below).
        if mode != Mode::Dsr && p.bytes()[l2.l3 + 8] <= 1 {
            return self.icmp_reply(p, l2, ip, in_if, ICMP_TIME_EXCEEDED, 0);
        }
        let Some(mac) = self.mac_for(target, egress, now) else {
            return Verdict::Drop(DropReason::NoNeighbour);
        };
        let x = Xmit {
            conn: &conn,
            dir,
            l3: l2.l3,
            end: ip.end,
            has_l4,
            egress,
            egress_mac: eg_mac,
            next_hop_mac: mac,
            backend: self.flows.endpoint(conn.backend),
        };
        let v = match mode {
            Mode::Dsr => dsr::xmit(p.bytes(), &x),
            Mode::Proxy => proxy::xmit(p.bytes(), &x),
            Mode::Gateway => gateway::xmit(p.bytes(), &x),
        };
        if l2.vlan != eg_vlan && wire::retag(p, l2.vlan, eg_vlan).is_none() {
            return Verdict::Drop(DropReason::MultiSegment);
        }
        v
    }

    /// A non-first fragment: it follows its first fragment's decision.
    fn later_fragment<P: PacketBuf>(
        &mut self,
        p: &mut P,
        l2: &L2,
        ip: &Ipv4Meta,
        in_if: IfIdx,
        local: Option<LocalKind>,
        now: u32,
    ) -> Verdict {
        let (src, dst) = (u32::from(ip.src), u32::from(ip.dst));
        match self.frags.find(src, dst, ip.id, ip.proto, now) {
            Some(FragAction::Steer(w)) => Verdict::Steer(w),
            Some(FragAction::Conn(key)) => match self.lookup(&key, key.hash(), now) {
                Some((id, dir)) => {
                    self.flows.conn_mut(id).touch(now);
                    self.send(p, l2, ip, in_if, id, dir, false, now)
                }
                // The conn ended since the first fragment.
                None => Verdict::Drop(DropReason::FragmentNoFlow),
            },
            None if local == Some(LocalKind::Interface) && self.kernel(in_if) => Verdict::ToKernel,
            None if local == Some(LocalKind::Interface) => Verdict::Drop(DropReason::Fragment),
            None if local.is_none() && self.snap.routing => self.route(p, l2, ip, in_if, now),
            None => Verdict::Drop(DropReason::FragmentNoFlow),
        }
    }

    /// ICMP: echo for our addresses; errors about balanced conns are translated to where
    /// the conn's other end is (path-MTU discovery works through every mode).
    #[allow(clippy::too_many_arguments)]
    fn icmp<P: PacketBuf>(
        &mut self,
        p: &mut P,
        l2: &L2,
        ip: &Ipv4Meta,
        in_if: IfIdx,
        local: Option<LocalKind>,
        now: u32,
        steered: bool,
    ) -> Verdict {
        if let Some(e) = wire::parse_icmp_error(p.bytes(), ip) {
            return self.icmp_error(p, l2, ip, in_if, local, &e, now, steered);
        }
        match local {
            Some(LocalKind::Interface) if self.kernel(in_if) => Verdict::ToKernel,
            Some(_) => {
                let mac = self.snap.interfaces[usize::from(in_if.0)].mac;
                match wire::icmp_echo_to_reply(p.bytes(), l2.l3, ip, mac) {
                    Ok(()) => Verdict::Reply,
                    Err(r) => Verdict::Drop(r),
                }
            }
            None => self.route(p, l2, ip, in_if, now),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn icmp_error<P: PacketBuf>(
        &mut self,
        p: &mut P,
        l2: &L2,
        ip: &Ipv4Meta,
        in_if: IfIdx,
        local: Option<LocalKind>,
        e: &IcmpError,
        now: u32,
        steered: bool,
    ) -> Verdict {
        // The quoted packet went out from us (or the backend); the conn knows its tuple
        // reversed: what arrives in that conn's direction.
        let key = FlowKey::new(
            e.inner_dst,
            e.inner_src,
            e.inner_dport,
            e.inner_sport,
            e.inner_proto,
        );
        let workers = self.me.count;
        let owner = match local {
            Some(LocalKind::Vip) => Some(owner_of(u32::from(e.inner_dst), e.inner_dport, workers)),
            Some(_) => port_owner(e.inner_sport, workers, self.snap.nat_ports),
            None => Some(owner_of(u32::from(e.inner_src), e.inner_sport, workers)),
        };
        let vip_dsr = local == Some(LocalKind::Vip)
            && self
                .snap
                .service(e.inner_src, e.inner_sport, e.inner_proto)
                .is_some_and(|si| self.snap.services[usize::from(si)].mode == Mode::Dsr);
        if !vip_dsr
            && let Some(o) = owner
            && o != self.me.index
            && !steered
        {
            return Verdict::Steer(o as u16);
        }
        let hit = self.lookup(&key, key.hash(), now);
        let Some((id, dir)) = hit else {
            if vip_dsr {
                // DSR is stateless enough: the conn may live on another core; Maglev maps
                // the quoted flow to the same backend.
                return self.dsr_stateless(p, l2, ip, in_if, &key, now);
            }
            return match local {
                None => self.route(p, l2, ip, in_if, now),
                Some(LocalKind::Interface) if self.kernel(in_if) => Verdict::ToKernel,
                Some(_) => Verdict::Drop(DropReason::IcmpNoFlow),
            };
        };
        let conn = *self.flows.conn(id);
        let snap = self.snap.clone();
        let mode = snap.services[usize::from(conn.service)].mode;
        if mode != Mode::Dsr {
            let be = self.flows.endpoint(conn.backend);
            let (outer, inner) = match dir {
                // An error about our reply to the client: to the backend, quoting the reply
                // as the backend sent it.
                Dir::Forward => (
                    Rewrite {
                        src: (mode == Mode::Proxy).then(|| (Ipv4Addr::from(conn.rev_dst), 0)),
                        dst: Some((Ipv4Addr::from(be.0), 0)),
                    },
                    Rewrite {
                        src: Some((Ipv4Addr::from(be.0), be.1)),
                        dst: Some((Ipv4Addr::from(conn.rev_dst), conn.rev_dport)),
                    },
                ),
                // The backend's error about the client's packet: to the client, from the VIP,
                // quoting the packet as the client sent it.
                Dir::Reverse => (
                    Rewrite {
                        src: Some((Ipv4Addr::from(conn.vip), 0)),
                        dst: Some((Ipv4Addr::from(conn.client), 0)),
                    },
                    Rewrite {
                        src: Some((Ipv4Addr::from(conn.client), conn.cport)),
                        dst: Some((Ipv4Addr::from(conn.vip), conn.vport)),
                    },
                ),
            };
            wire::rewrite_icmp_error(p.bytes(), l2.l3, ip, e, &outer, &inner);
        }
        // Addresses are translated already: forward like a later fragment (no L4 rewrite).
        self.deliver(p, l2, ip, in_if, &conn, dir, now)
    }

    /// Sends an already-translated packet of `conn` to the conn's side `dir` points at.
    #[allow(clippy::too_many_arguments)]
    fn deliver<P: PacketBuf>(
        &mut self,
        p: &mut P,
        l2: &L2,
        ip: &Ipv4Meta,
        in_if: IfIdx,
        conn: &Conn,
        dir: Dir,
        now: u32,
    ) -> Verdict {
        let snap = self.snap.clone();
        let (egress, target) = match self.next_hop(dir, conn.hop_key(dir)) {
            Ok(h) => h,
            Err(r) => return Verdict::Drop(r),
        };
        let dsr = snap.services[usize::from(conn.service)].mode == Mode::Dsr;
        if !dsr && !wire::decrement_ttl(p.bytes(), l2.l3) {
            return self.icmp_reply(p, l2, ip, in_if, ICMP_TIME_EXCEEDED, 0);
        }
        let Some(mac) = self.mac_for(target, egress, now) else {
            return Verdict::Drop(DropReason::NoNeighbour);
        };
        let eg = &snap.interfaces[usize::from(egress.0)];
        wire::set_macs(p.bytes(), eg.mac, mac);
        if l2.vlan != eg.vlan && wire::retag(p, l2.vlan, eg.vlan).is_none() {
            return Verdict::Drop(DropReason::MultiSegment);
        }
        Verdict::Forward(egress)
    }

    /// An ICMP error about a DSR flow whose conn is not on this core.
    fn dsr_stateless<P: PacketBuf>(
        &mut self,
        p: &mut P,
        l2: &L2,
        ip: &Ipv4Meta,
        in_if: IfIdx,
        key: &FlowKey,
        now: u32,
    ) -> Verdict {
        let Some(si) = self
            .snap
            .service(Ipv4Addr::from(key.dst), key.dst_port, key.proto)
        else {
            return Verdict::Drop(DropReason::IcmpNoFlow);
        };
        let svc = &self.snap.services[usize::from(si)];
        let Some(slot) = svc.maglev.lookup(key.hash()) else {
            return Verdict::Drop(DropReason::NoBackend);
        };
        let conn = Conn::new(key, FlowState::Udp, si, svc.backends[usize::from(slot)].0);
        self.deliver(p, l2, ip, in_if, &conn, Dir::Forward, now)
    }

    /// Routes a packet that is neither for us nor part of a conn (gateway mode: what the
    /// servers send to other networks), like a router: TTL, longest prefix match, ICMP.
    fn route<P: PacketBuf>(
        &mut self,
        p: &mut P,
        l2: &L2,
        ip: &Ipv4Meta,
        in_if: IfIdx,
        now: u32,
    ) -> Verdict {
        if !self.snap.routing {
            return Verdict::Drop(DropReason::NotForUs);
        }
        if ip.dst.is_broadcast() || ip.dst.is_multicast() || ip.src.is_multicast() {
            return Verdict::Drop(DropReason::NotForUs);
        }
        let Some(hop) = self.snap.routes.lookup(ip.dst) else {
            return self.icmp_reply(p, l2, ip, in_if, ICMP_UNREACH, ICMP_NET_UNREACH);
        };
        if !wire::decrement_ttl(p.bytes(), l2.l3) {
            return self.icmp_reply(p, l2, ip, in_if, ICMP_TIME_EXCEEDED, 0);
        }
        let Some(mac) = self.mac_for(hop.l2_target(ip.dst), hop.iface, now) else {
            return Verdict::Drop(DropReason::NoNeighbour);
        };
        let snap = self.snap.clone();
        let eg = &snap.interfaces[usize::from(hop.iface.0)];
        wire::set_macs(p.bytes(), eg.mac, mac);
        if l2.vlan != eg.vlan && wire::retag(p, l2.vlan, eg.vlan).is_none() {
            return Verdict::Drop(DropReason::MultiSegment);
        }
        self.ctr.inc(Ctr::Routed);
        Verdict::Forward(hop.iface)
    }

    /// Answers the packet's sender with an ICMP error from our address on `in_if`. Errors
    /// are never sent about ICMP errors, fragments after the first, or broadcasts.
    fn icmp_reply<P: PacketBuf>(
        &mut self,
        p: &mut P,
        l2: &L2,
        ip: &Ipv4Meta,
        in_if: IfIdx,
        icmp_type: u8,
        code: u8,
    ) -> Verdict {
        let reason = if icmp_type == ICMP_TIME_EXCEEDED {
            DropReason::TtlExceeded
        } else {
            DropReason::NoRoute
        };
        let is_error = ip.proto == PROTO_ICMP && {
            let b = p.bytes();
            ip.l4 < ip.end && !matches!(b[ip.l4], 0 | 8)
        };
        if is_error || ip.is_later_fragment || ip.src.is_unspecified() || ip.src.is_broadcast() {
            return Verdict::Drop(reason);
        }
        let ifc = &self.snap.interfaces[usize::from(in_if.0)];
        // From our address on the sender's subnet (one-arm gateway has several), else primary.
        let from = std::iter::once(&ifc.net)
            .chain(&ifc.secondary)
            .find(|c| c.contains(ip.src))
            .map_or(ifc.addr, |c| c.addr);
        let mac = ifc.mac;
        if wire::to_icmp_error(p, l2.l3, ip, mac, from, icmp_type, code) {
            self.ctr.inc(Ctr::IcmpSent);
            Verdict::Reply
        } else {
            Verdict::Drop(reason)
        }
    }

    /// Conn-table lookup; a dead conn met on the way gives back its port and backend count.
    #[inline]
    fn lookup(&mut self, key: &FlowKey, hash: u64, now: u32) -> Option<(ConnId, Dir)> {
        self.with_reclaim(|flows, t, reclaim| flows.lookup(key, hash, now, t, &mut { reclaim }))
    }

    /// Where a packet travelling in `dir` goes: (egress interface, address whose MAC it is
    /// sent to), or why it cannot go. `to` is what decides it: the conn's backend id going
    /// forward, its client address going back (see `Conn::hop_key`).
    #[inline]
    fn next_hop(&self, dir: Dir, to: u32) -> Result<(IfIdx, Ipv4Addr), DropReason> {
        let snap = &*self.snap;
        match dir {
            Dir::Forward => {
                let b = snap
                    .backends
                    .get(to as usize)
                    .ok_or(DropReason::NoBackend)?;
                if !b.accept_existing {
                    return Err(if b.forced {
                        DropReason::DrainForced
                    } else {
                        DropReason::BackendDown
                    });
                }
                Ok((b.iface, b.next_hop))
            }
            Dir::Reverse => {
                let client = Ipv4Addr::from(to);
                let h = snap.routes.lookup(client).ok_or(DropReason::NoRoute)?;
                Ok((h.iface, h.l2_target(client)))
            }
        }
    }

    /// Whether `in_if` hands unbalanced local traffic to the kernel.
    #[inline]
    fn kernel(&self, in_if: IfIdx) -> bool {
        self.snap.interfaces[usize::from(in_if.0)].exception
    }

    /// The MAC of `ip`, or `None` after asking management to resolve it (rate-limited).
    #[inline]
    fn mac_for(&mut self, ip: Ipv4Addr, iface: IfIdx, now: u32) -> Option<[u8; 6]> {
        let k = u32::from(ip);
        if let Some(m) = self.neigh.get(&k) {
            return Some(*m);
        }
        let slot = (k as usize).wrapping_mul(0x9e37_79b9) >> 26 & 63;
        let (asked_ip, at) = self.resolve_asked[slot];
        if asked_ip != k || now.wrapping_sub(at) > RESOLVE_EVERY_MS {
            self.resolve_asked[slot] = (k, now);
            if self.events.push(Event::Resolve { ip, iface }).is_err() {
                self.ctr.inc(Ctr::EventsLost);
            }
        }
        None
    }
}

/// Tells the conn table every backend's address and port (the start of NAT conns' reverse
/// tuples), before any packet sees the snapshot.
fn record_backends(flows: &mut FlowTable, snap: &Snapshot) {
    for (id, b) in snap.backends.iter().enumerate() {
        flows.set_backend(id as u32, u32::from(b.addr), b.port);
    }
}

/// Gives back what a dead conn held: its SNAT port and its backend count.
#[inline]
fn reclaim(c: &Conn, nat: &mut SnatPortPool, backend_conns: &mut [u32]) {
    if c.flags & flags::SNAT != 0 {
        nat.free(SnatIdx(c.snat_idx), c.rev_dport);
    }
    if let Some(n) = backend_conns.get_mut(c.backend as usize) {
        *n = n.saturating_sub(1);
    }
}

/// The rewrite NAT modes apply (re-exported for tests and tools).
pub use mode::nat_rewrite;

#[cfg(test)]
mod tests_support {
    pub use super::tests::{ACK, CLIENT, LB, SYN, VIP, cfg as cfg_text_full, pkt};
    use super::*;

    pub fn cfg_text(mode: &str, extra_service: &str) -> String {
        cfg_text_full(mode, extra_service, "")
    }

    pub fn datapath(snap: &Arc<Snapshot>) -> (Datapath, Arc<ArrayQueue<Event>>) {
        let ev = Arc::new(ArrayQueue::new(64));
        let info = WorkerInfo {
            index: 0,
            count: 1,
            flow_capacity: 1024,
            persist_capacity: 1024,
        };
        let mut d = Datapath::new(
            snap.clone(),
            info,
            ev.clone(),
            Arc::new(BackendLoad::new(1)),
        );
        for (ip, last) in [("10.20.1.11", 0x11), ("10.20.1.12", 0x12), ("10.20.0.1", 1)] {
            d.set_neighbour(ip.parse().unwrap(), Some([2, 0, 0, 0, 0, last]));
        }
        (d, ev)
    }

    pub fn parse_dst(f: &[u8]) -> Ipv4Addr {
        crate::wire::parse_ipv4(f, crate::wire::ETH_HDR)
            .unwrap()
            .dst
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::Config;
    use crate::wire::{ARP_FRAME_LEN, ETH_HDR, build_arp_request, parse_ipv4, parse_l4};
    use smoltcp::wire::{IpAddress, Ipv4Packet, TcpPacket, UdpPacket};

    pub const LB: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
    const ROUTER: [u8; 6] = [2, 0, 0, 0, 0, 1];
    pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 20, 9, 2);
    pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 100);

    pub fn cfg(mode: &str, extra_service: &str, extra: &str) -> String {
        format!(
            r#"
[dpdk]
eal_args = []
[cores]
management = 0
workers = [1]
[flows]
capacity_per_core = 1024
{extra}
[[interfaces]]
name = "lan"
port = "p0"
address = "10.20.0.10/24"
secondary_addresses = ["10.20.1.1/24"]
[[routes]]
prefix = "0.0.0.0/0"
via = "10.20.0.1"
[[services]]
name = "web"
vip = "10.20.0.100"
port = 80
protocol = "tcp"
mode = "{mode}"
{extra_service}
  [[services.backends]]
  address = "10.20.1.11"
  [[services.backends]]
  address = "10.20.1.12"
[[services]]
name = "dns"
vip = "10.20.0.100"
port = 53
protocol = "udp"
mode = "{mode}"
  [[services.backends]]
  address = "10.20.1.11"
"#
        )
    }

    fn dp_with(text: &str, workers: usize, me: usize) -> (Datapath, Arc<ArrayQueue<Event>>) {
        let cfg = Config::from_toml(text).unwrap();
        let snap = Arc::new(Snapshot::build(&cfg, &[LB]));
        let ev = Arc::new(ArrayQueue::new(64));
        let info = WorkerInfo {
            index: me,
            count: workers,
            flow_capacity: cfg.flows.capacity_per_core as usize,
            persist_capacity: 1024,
        };
        let mut d = Datapath::new(snap, info, ev.clone(), Arc::new(BackendLoad::new(workers)));
        for (ip, last) in [("10.20.1.11", 0x11), ("10.20.1.12", 0x12), ("10.20.0.1", 1)] {
            d.set_neighbour(ip.parse().unwrap(), Some([2, 0, 0, 0, 0, last]));
        }
        (d, ev)
    }

    fn dp(mode: &str) -> Datapath {
        dp_with(&cfg(mode, "", ""), 1, 0).0
    }

    /// Ethernet + IPv4 + TCP (flags byte) or UDP with valid checksums.
    pub fn pkt(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        sport: u16,
        dport: u16,
        proto: u8,
        tcp_flags: u8,
    ) -> Vec<u8> {
        let l4len = if proto == PROTO_TCP { 20 } else { 8 + 4 };
        let mut f = vec![0u8; 14 + 20 + l4len];
        f[0..6].copy_from_slice(&LB);
        f[6..12].copy_from_slice(&ROUTER);
        f[12] = 8;
        let total = (20 + l4len) as u16;
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
            ip.set_version(4);
            ip.set_header_len(20);
            ip.set_total_len(total);
            ip.set_hop_limit(64);
            ip.set_next_header(proto.into());
            ip.set_src_addr(src);
            ip.set_dst_addr(dst);
            ip.fill_checksum();
        }
        let (s, d) = (IpAddress::Ipv4(src), IpAddress::Ipv4(dst));
        if proto == PROTO_TCP {
            let mut t = TcpPacket::new_unchecked(&mut f[34..]);
            t.set_src_port(sport);
            t.set_dst_port(dport);
            t.set_header_len(20);
            let raw = t.into_inner();
            raw[13] = tcp_flags;
            let mut t = TcpPacket::new_unchecked(&mut f[34..]);
            t.fill_checksum(&s, &d);
        } else {
            let mut u = UdpPacket::new_unchecked(&mut f[34..]);
            u.set_src_port(sport);
            u.set_dst_port(dport);
            u.set_len(12);
            u.fill_checksum(&s, &d);
        }
        f
    }

    pub const SYN: u8 = 0x02;
    pub const ACK: u8 = 0x10;

    pub(super) fn tuple(f: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
        let ip = parse_ipv4(f, ETH_HDR).expect("valid IPv4 after rewrite");
        let l4 = parse_l4(f, &ip).unwrap();
        (ip.src, l4.src_port, ip.dst, l4.dst_port)
    }

    fn checksums_ok(f: &[u8]) -> bool {
        let ip = parse_ipv4(f, ETH_HDR).unwrap();
        let (s, d) = (IpAddress::Ipv4(ip.src), IpAddress::Ipv4(ip.dst));
        match ip.proto {
            PROTO_TCP => TcpPacket::new_checked(&f[ip.l4..ip.end])
                .unwrap()
                .verify_checksum(&s, &d),
            PROTO_UDP => UdpPacket::new_checked(&f[ip.l4..ip.end])
                .unwrap()
                .verify_checksum(&s, &d),
            _ => true,
        }
    }

    #[test]
    fn dsr_syn_goes_to_a_backend_and_sticks() {
        let mut d = dp("dsr");
        let mut f = pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, SYN);
        let orig = f.clone();
        assert_eq!(
            d.process(&mut f, IfIdx(0), 0, false),
            Verdict::Forward(IfIdx(0))
        );
        assert_eq!(&f[12..], &orig[12..], "DSR leaves L3/L4 alone");
        let chosen = f[5];
        assert!(chosen == 0x11 || chosen == 0x12);
        for t in 1..5 {
            let mut g = pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, ACK);
            d.process(&mut g, IfIdx(0), t, false);
            assert_eq!(g[5], chosen);
        }
        assert_eq!(d.flows.active(), 1);
    }

    #[test]
    fn dsr_spreads_flows_over_backends() {
        let mut d = dp("dsr");
        let mut n11 = 0;
        for p in 0..1000u16 {
            let mut f = pkt(CLIENT, VIP, 10000 + p, 80, PROTO_TCP, SYN);
            assert_eq!(
                d.process(&mut f, IfIdx(0), 0, false),
                Verdict::Forward(IfIdx(0))
            );
            n11 += usize::from(f[5] == 0x11);
        }
        assert!((350..=650).contains(&n11), "{n11}");
    }

    #[test]
    fn established_flow_survives_a_backend_set_change() {
        let text = cfg("dsr", "", "");
        let (mut d, _) = dp_with(&text, 1, 0);
        let mut before = Vec::new();
        for i in 0..300u16 {
            let mut f = pkt(CLIENT, VIP, 30000 + i, 80, PROTO_TCP, SYN);
            d.process(&mut f, IfIdx(0), 0, false);
            before.push(f[5]);
        }
        // A third backend joins: Maglev maps about a third of all hashes to it.
        let bigger = text.replacen(
            "  [[services.backends]]\n  address = \"10.20.1.12\"\n",
            "  [[services.backends]]\n  address = \"10.20.1.12\"\n  [[services.backends]]\n  address = \"10.20.1.13\"\n",
            1,
        );
        let cfg = Config::from_toml(&bigger).unwrap();
        d.set_snapshot(Arc::new(Snapshot::build(&cfg, &[LB])));
        d.set_neighbour(Ipv4Addr::new(10, 20, 1, 13), Some([2, 0, 0, 0, 0, 0x13]));
        for i in 0..300u16 {
            let mut f = pkt(CLIENT, VIP, 30000 + i, 80, PROTO_TCP, ACK);
            d.process(&mut f, IfIdx(0), 10, false);
            assert_eq!(f[5], before[usize::from(i)], "flow {i} moved");
        }
        let mut to_new = 0;
        for i in 0..300u16 {
            let mut f = pkt(CLIENT, VIP, 50000 + i, 80, PROTO_TCP, SYN);
            d.process(&mut f, IfIdx(0), 10, false);
            to_new += usize::from(f[5] == 0x13);
        }
        assert!(to_new > 50, "new backend got {to_new} of 300 new flows");
    }

    #[test]
    fn arp_for_vip_and_snat_is_answered_others_dropped() {
        let mut d = dp("proxy");
        for (target, want) in [
            (VIP, Verdict::Reply),
            (Ipv4Addr::new(10, 20, 1, 1), Verdict::Reply),
            (
                Ipv4Addr::new(10, 20, 0, 99),
                Verdict::Drop(DropReason::ArpNotForUs),
            ),
        ] {
            let mut f = vec![0u8; ARP_FRAME_LEN];
            build_arp_request(&mut f, None, ROUTER, Ipv4Addr::new(10, 20, 0, 1), target);
            assert_eq!(d.process(&mut f, IfIdx(0), 0, false), want, "{target}");
        }
    }

    #[test]
    fn unresolved_next_hop_is_a_counted_drop_and_a_resolve_request() {
        let (mut d, ev) = dp_with(&cfg("dsr", "", ""), 1, 0);
        d.set_neighbour(Ipv4Addr::new(10, 20, 1, 11), None);
        d.set_neighbour(Ipv4Addr::new(10, 20, 1, 12), None);
        let mut f = pkt(CLIENT, VIP, 40002, 80, PROTO_TCP, SYN);
        assert_eq!(
            d.process(&mut f, IfIdx(0), 0, false),
            Verdict::Drop(DropReason::NoNeighbour)
        );
        assert!(matches!(ev.pop(), Some(Event::Resolve { .. })));
        // Asked once per address per interval, not per packet.
        let mut g = pkt(CLIENT, VIP, 40002, 80, PROTO_TCP, ACK);
        d.process(&mut g, IfIdx(0), 1, false);
        assert!(ev.pop().is_none());
    }

    #[test]
    fn non_service_traffic_is_dropped_by_reason() {
        let mut d = dp("dsr");
        let mut f = pkt(CLIENT, VIP, 40003, 81, PROTO_TCP, SYN);
        assert_eq!(
            d.process(&mut f, IfIdx(0), 0, false),
            Verdict::Drop(DropReason::NoService)
        );
        let mut g = pkt(CLIENT, Ipv4Addr::new(10, 20, 0, 50), 1, 2, PROTO_UDP, 0);
        assert_eq!(
            d.process(&mut g, IfIdx(0), 0, false),
            Verdict::Drop(DropReason::NotForUs)
        );
        let mut h = pkt(CLIENT, VIP, 40003, 80, PROTO_TCP, SYN);
        h[0] = 0x04; // another host's MAC (the one-arm port is promiscuous)
        assert_eq!(
            d.process(&mut h, IfIdx(0), 0, false),
            Verdict::Drop(DropReason::NotForUs)
        );
        d.publish();
        assert_eq!(d.ctr.check_invariants(), Ok(()));
    }

    #[test]
    fn proxy_translates_both_ways_with_valid_checksums() {
        let mut d = dp("proxy");
        let mut f = pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, SYN);
        assert_eq!(
            d.process(&mut f, IfIdx(0), 0, false),
            Verdict::Forward(IfIdx(0))
        );
        let (src, lport, dst, bport) = tuple(&f);
        assert_eq!(
            src,
            Ipv4Addr::new(10, 20, 0, 10),
            "source is the interface (SNAT) address"
        );
        assert_eq!(bport, 80);
        assert!(dst == Ipv4Addr::new(10, 20, 1, 11) || dst == Ipv4Addr::new(10, 20, 1, 12));
        assert!(checksums_ok(&f));
        assert_eq!(parse_ipv4(&f, ETH_HDR).unwrap().id, 0);
        assert_eq!(f[14 + 8], 63, "TTL decremented");
        // The backend answers the SNAT address; the client gets it from the VIP.
        let mut r = pkt(dst, src, 80, lport, PROTO_TCP, SYN | ACK);
        r[0..6].copy_from_slice(&LB);
        assert_eq!(
            d.process(&mut r, IfIdx(0), 1, false),
            Verdict::Forward(IfIdx(0))
        );
        assert_eq!(tuple(&r), (VIP, 80, CLIENT, 40000));
        assert!(checksums_ok(&r));
        assert_eq!(
            &r[0..6],
            &ROUTER,
            "client is reached through the default route"
        );
        // Unknown local port: no conn, so it is the kernel's (exception path, on by default).
        let mut x = pkt(dst, src, 80, lport.wrapping_add(1), PROTO_TCP, ACK);
        assert_eq!(d.process(&mut x, IfIdx(0), 1, false), Verdict::ToKernel);
    }

    #[test]
    fn proxy_snat_exhaustion_refuses_new_flows_and_keeps_old_ones() {
        let (mut d, _) = dp_with(
            &cfg("proxy", "", "[nat]\nport_min = 2000\nport_max = 2002"),
            1,
            0,
        );
        let mut ok = Vec::new();
        for p in 0..5u16 {
            let mut f = pkt(CLIENT, VIP, 41000 + p, 80, PROTO_TCP, SYN);
            match d.process(&mut f, IfIdx(0), 0, false) {
                Verdict::Forward(_) => ok.push((p, tuple(&f))),
                Verdict::Drop(DropReason::SnatExhausted) => {}
                v => panic!("{v:?}"),
            }
        }
        assert_eq!(ok.len(), 3);
        assert_eq!(d.ctr.dropped(DropReason::SnatExhausted), 2);
        for (p, t) in &ok {
            let mut f = pkt(CLIENT, VIP, 41000 + p, 80, PROTO_TCP, ACK);
            assert_eq!(
                d.process(&mut f, IfIdx(0), 5, false),
                Verdict::Forward(IfIdx(0))
            );
            assert_eq!(tuple(&f), *t, "established conn keeps its port");
        }
    }

    #[test]
    fn nat_conns_are_steered_to_their_owner() {
        let text = cfg("gateway", "", "");
        let (mut d0, _) = dp_with(&text, 2, 0);
        let (mut d1, _) = dp_with(&text, 2, 1);
        let mut steered = 0;
        for p in 0..50u16 {
            let owner = owner_of(u32::from(CLIENT), 20000 + p, 2);
            let mut f = pkt(CLIENT, VIP, 20000 + p, 80, PROTO_TCP, SYN);
            let (me, other) = if owner == 0 {
                (&mut d1, &mut d0)
            } else {
                (&mut d0, &mut d1)
            };
            let v = me.process(&mut f, IfIdx(0), 0, false);
            assert_eq!(v, Verdict::Steer(owner as u16));
            assert_eq!(
                other.process(&mut f, IfIdx(0), 0, true),
                Verdict::Forward(IfIdx(0))
            );
            steered += 1;
        }
        assert_eq!(steered, 50);
        assert_eq!(d0.flows.active() + d1.flows.active(), 50);
    }

    #[test]
    fn gateway_dnats_in_and_reverse_nats_replies() {
        let mut d = dp("gateway");
        let mut f = pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, SYN);
        d.process(&mut f, IfIdx(0), 0, false);
        let (src, sport, backend, _) = tuple(&f);
        assert_eq!((src, sport), (CLIENT, 40000), "backends see the client");
        assert!(checksums_ok(&f));
        let mut r = pkt(backend, CLIENT, 80, 40000, PROTO_TCP, SYN | ACK);
        assert_eq!(
            d.process(&mut r, IfIdx(0), 1, false),
            Verdict::Forward(IfIdx(0))
        );
        assert_eq!(tuple(&r), (VIP, 80, CLIENT, 40000));
        assert!(checksums_ok(&r));
    }

    #[test]
    fn gateway_routes_server_traffic_and_answers_ttl_expiry() {
        let mut d = dp("gateway");
        let server = Ipv4Addr::new(10, 20, 1, 11);
        let mut f = pkt(server, CLIENT, 5555, 22, PROTO_TCP, SYN);
        assert_eq!(
            d.process(&mut f, IfIdx(0), 0, false),
            Verdict::Forward(IfIdx(0))
        );
        assert_eq!(&f[0..6], &ROUTER);
        assert_eq!(
            tuple(&f),
            (server, 5555, CLIENT, 22),
            "routed, not translated"
        );
        assert_eq!(d.ctr.get(Ctr::Routed), 1);
        // TTL 1: time exceeded back to the server, from our address on its subnet's port.
        let mut g = pkt(server, CLIENT, 5556, 22, PROTO_TCP, SYN);
        g[14 + 8] = 1;
        let mut g = crate::wire::fixtures::with_ip_checksum(g, ETH_HDR);
        assert_eq!(d.process(&mut g, IfIdx(0), 0, false), Verdict::Reply);
        let ip = parse_ipv4(&g, ETH_HDR).unwrap();
        assert_eq!((ip.dst, ip.proto), (server, PROTO_ICMP));
        assert_eq!(g[ip.l4], ICMP_TIME_EXCEEDED);
    }

    #[test]
    fn persistence_keeps_a_client_subnet_on_one_backend() {
        let persist = "  [services.persistence]\n  timeout_s = 300\n  netmask = 24";
        let text = cfg("proxy", persist, "").replace(
            "mode = \"proxy\"\n  [services",
            "mode = \"proxy\"\nscheduler = \"round_robin\"\n  [services",
        );
        let (mut d, _) = dp_with(&text, 1, 0);
        let mut seen = std::collections::HashSet::new();
        for p in 0..50u16 {
            let mut f = pkt(
                Ipv4Addr::new(10, 20, 9, (p % 5) as u8 + 2),
                VIP,
                30000 + p,
                80,
                PROTO_TCP,
                SYN,
            );
            d.process(&mut f, IfIdx(0), u32::from(p), false);
            seen.insert(tuple(&f).2);
        }
        assert_eq!(seen.len(), 1, "one /24, one backend");
        let mut spread = std::collections::HashSet::new();
        for n in 0..40u8 {
            let mut f = pkt(Ipv4Addr::new(172, 16, n, 9), VIP, 30000, 80, PROTO_TCP, SYN);
            d.process(&mut f, IfIdx(0), 100, false);
            spread.insert(tuple(&f).2);
        }
        assert_eq!(spread.len(), 2, "different subnets spread");
    }

    #[test]
    fn icmp_port_unreachable_from_a_proxy_backend_reaches_the_client() {
        let mut d = dp("proxy");
        let mut q = pkt(CLIENT, VIP, 5353, 53, PROTO_UDP, 0);
        d.process(&mut q, IfIdx(0), 0, false);
        let (snat, lport, backend, _) = tuple(&q);
        // The backend rejects the datagram: ICMP port unreachable quoting what it received.
        let ip = parse_ipv4(&q, ETH_HDR).unwrap();
        let mut e = q.clone();
        e[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x11]);
        assert!(wire::to_icmp_error(
            &mut e,
            ETH_HDR,
            &ip,
            [2, 0, 0, 0, 0, 0x11],
            backend,
            ICMP_UNREACH,
            3
        ));
        e[0..6].copy_from_slice(&LB);
        let e_ip = parse_ipv4(&e, ETH_HDR).unwrap();
        assert_eq!(e_ip.dst, snat);
        assert_eq!(
            d.process(&mut e, IfIdx(0), 1, false),
            Verdict::Forward(IfIdx(0))
        );
        let out = parse_ipv4(&e, ETH_HDR).unwrap();
        assert_eq!((out.src, out.dst), (VIP, CLIENT));
        let err = wire::parse_icmp_error(&e, &out).unwrap();
        assert_eq!((err.inner_src, err.inner_sport), (CLIENT, 5353));
        assert_eq!((err.inner_dst, err.inner_dport), (VIP, 53));
        assert!(
            smoltcp::wire::Icmpv4Packet::new_checked(&e[out.l4..out.end])
                .unwrap()
                .verify_checksum()
        );
        let _ = lport;
    }

    /// The first and the last fragment of one UDP datagram from the client to VIP:53.
    fn fragment_pair(sport: u16) -> (Vec<u8>, Vec<u8>) {
        let mut first = pkt(CLIENT, VIP, sport, 53, PROTO_UDP, 0);
        first[14 + 4..14 + 6].copy_from_slice(&0x4242u16.to_be_bytes());
        first[14 + 6] = 0x20; // MF
        let first = crate::wire::fixtures::with_ip_checksum(first, ETH_HDR);
        let mut later = first.clone();
        later[14 + 6] = 0x00;
        later[14 + 7] = 0x02; // offset 16 bytes, last fragment
        (
            first,
            crate::wire::fixtures::with_ip_checksum(later, ETH_HDR),
        )
    }

    #[test]
    fn later_fragments_follow_the_first() {
        let mut d = dp("gateway");
        let (mut first, mut later) = fragment_pair(5353);
        let mut early = later.clone();
        assert_eq!(
            d.process(&mut early, IfIdx(0), 0, false),
            Verdict::Drop(DropReason::FragmentNoFlow),
            "a later fragment before its first is dropped"
        );
        assert_eq!(
            d.process(&mut first, IfIdx(0), 1, false),
            Verdict::Forward(IfIdx(0))
        );
        let backend = parse_ipv4(&first, ETH_HDR).unwrap().dst;
        assert_eq!(
            d.process(&mut later, IfIdx(0), 2, false),
            Verdict::Forward(IfIdx(0))
        );
        let ip = parse_ipv4(&later, ETH_HDR).expect("IPv4 checksum updated");
        assert_eq!(ip.dst, backend);
        assert_eq!(
            &later[34..],
            &early[34..],
            "later fragment payload untouched"
        );
    }

    #[test]
    fn a_later_fragment_does_not_follow_a_conn_that_ended() {
        // UDP conns idle for over a second end; the fragment entry lives two.
        let text = cfg("proxy", "", "[flows.timeouts]\nudp_s = 1");
        let (mut d, _) = dp_with(&text, 1, 0);
        let (first, later) = fragment_pair(5353);
        let other = pkt(CLIENT, VIP, 5354, 53, PROTO_UDP, 0);
        let at = |d: &mut Datapath, f: &[u8], now| d.process(&mut f.to_vec(), IfIdx(0), now, false);
        let fwd = Verdict::Forward(IfIdx(0));
        assert_eq!(at(&mut d, &first, 0), fwd);
        assert_eq!(at(&mut d, &later, 100), fwd);
        // The conn ends (reclaimed by the sweep) and another flow's conn is created, which
        // may take the ended one's place in the table.
        d.sweep(1_200, usize::MAX);
        assert_eq!(d.flows.active(), 0);
        assert_eq!(at(&mut d, &other, 1_200), fwd);
        assert_eq!(
            at(&mut d, &later, 1_300),
            Verdict::Drop(DropReason::FragmentNoFlow),
            "the fragment's conn is gone: dropped, not sent along another conn"
        );
    }

    #[test]
    fn full_flow_table_drops_new_flows_only() {
        let text = cfg("dsr", "", "").replace("capacity_per_core = 1024", "capacity_per_core = 8");
        let (mut d, _) = dp_with(&text, 1, 0);
        let mut ok = Vec::new();
        for p in 0..100u16 {
            let mut f = pkt(CLIENT, VIP, 20000 + p, 80, PROTO_TCP, SYN);
            if d.process(&mut f, IfIdx(0), 0, false) != Verdict::Drop(DropReason::FlowTableFull) {
                ok.push(p);
            }
        }
        assert_eq!(ok.len(), 8);
        assert_eq!(d.ctr.dropped(DropReason::FlowTableFull), 92);
        for p in ok {
            let mut f = pkt(CLIENT, VIP, 20000 + p, 80, PROTO_TCP, ACK);
            assert_eq!(
                d.process(&mut f, IfIdx(0), 1, false),
                Verdict::Forward(IfIdx(0))
            );
        }
    }
}

#[cfg(test)]
mod policy_tests {
    use super::tests_support::*;
    use super::*;
    use crate::flow::NO_HINT;
    use crate::lb::{BackendKey, BackendRuntime, IdRegistry};

    fn snap_with(text: &str, rt: &dyn Fn(&BackendKey) -> BackendRuntime) -> Arc<Snapshot> {
        let cfg = crate::config::Config::from_toml(text).unwrap();
        Arc::new(Snapshot::build_with(
            &cfg,
            &[LB],
            None,
            &mut IdRegistry::default(),
            rt,
        ))
    }

    #[test]
    fn down_backend_policy_keep_or_drop_for_established_conns() {
        for (policy, want) in [
            ("keep", Verdict::Forward(IfIdx(0))),
            ("drop", Verdict::Drop(DropReason::BackendDown)),
        ] {
            let text = cfg_text("proxy", &format!("on_backend_down = \"{policy}\""));
            let (mut d, _) = datapath(&snap_with(&text, &|_| BackendRuntime::default()));
            let mut f = pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, SYN);
            assert_eq!(
                d.process(&mut f, IfIdx(0), 0, false),
                Verdict::Forward(IfIdx(0))
            );
            let backend = parse_dst(&f);
            // That backend fails its health checks.
            let down = move |k: &BackendKey| BackendRuntime {
                healthy: k.1 != backend,
                ..BackendRuntime::default()
            };
            d.set_snapshot(snap_with(&text, &down));
            let mut g = pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, ACK);
            assert_eq!(
                d.process(&mut g, IfIdx(0), 1, false),
                want,
                "policy {policy}"
            );
            // New flows avoid it either way.
            for p in 0..20 {
                let mut n = pkt(CLIENT, VIP, 41000 + p, 80, PROTO_TCP, SYN);
                d.process(&mut n, IfIdx(0), 1, false);
                assert_ne!(parse_dst(&n), backend);
            }
        }
    }

    /// The fast lane (datapath/fast.rs) is an optimisation only. Two datapaths see the same
    /// stream - flows opening, carrying data, closing and reopening, replies, TTL 1, VLAN tags,
    /// damaged frames, a backend going down, a neighbour vanishing and coming back with a new
    /// MAC, time passing so conns expire - one through `process` only, one the way the worker
    /// does it (fast lane first). Every verdict, output frame and counter must be identical.
    #[test]
    fn fast_lane_decides_exactly_like_the_full_path() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut rnd = move || {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            seed.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let cases = ["dsr", "proxy", "gateway"]
            .into_iter()
            .flat_map(|m| [(m, false), (m, true)]);
        for (mode, tagged) in cases {
            let mut text = cfg_text(mode, "on_backend_down = \"drop\"");
            if tagged {
                text = text.replace("port = \"p0\"", "port = \"p0\"\nvlan = 7");
            }
            let up = snap_with(&text, &|_| BackendRuntime::default());
            let b11: Ipv4Addr = "10.20.1.11".parse().unwrap();
            let down = snap_with(&text, &move |k: &BackendKey| BackendRuntime {
                healthy: k.1 != b11,
                ..BackendRuntime::default()
            });
            let (mut full, _) = datapath(&up);
            let (mut fast, _) = datapath(&up);
            let mut last_out: HashMap<(u8, bool), Vec<u8>> = HashMap::new();
            let (mut lane, n) = (0, 8000u32);
            let mut old_hint = NO_HINT;
            for step in 0..n {
                let router: Ipv4Addr = "10.20.0.1".parse().unwrap();
                match step {
                    2000 => [&mut full, &mut fast]
                        .map(|d| d.set_snapshot(down.clone()))
                        .len(),
                    3000 => [&mut full, &mut fast]
                        .map(|d| d.set_snapshot(up.clone()))
                        .len(),
                    4000 => [&mut full, &mut fast]
                        .map(|d| d.set_neighbour(b11, None))
                        .len(),
                    4500 => [&mut full, &mut fast]
                        .map(|d| d.set_neighbour(b11, Some([2, 0, 0, 0, 0, 0x77])))
                        .len(),
                    5500 => [&mut full, &mut fast]
                        .map(|d| d.set_neighbour(router, Some([2, 0, 0, 0, 0, 0x66])))
                        .len(),
                    _ => 0,
                };
                let now = step * 7;
                let c = (rnd() % 48) as u8;
                let udp = rnd() % 4 == 0;
                let client = Ipv4Addr::new(10, 20, 9, 2 + c);
                let (proto, dport) = if udp {
                    (PROTO_UDP, 53)
                } else {
                    (PROTO_TCP, 80)
                };
                let flags = [SYN, ACK, ACK, ACK, ACK, 0x11, 0x04, 0x18][(rnd() % 8) as usize];
                let mut f = pkt(client, VIP, 40000 + u16::from(c), dport, proto, flags);
                let kind = rnd() % 10;
                match kind {
                    // A reply to what was last sent for this flow, mirrored.
                    0..=2 => {
                        if let Some(o) = last_out.get(&(c, udp)) {
                            let (s, sp, d, dp) = super::tests::tuple(o);
                            f = pkt(d, s, dp, sp, proto, ACK);
                        }
                    }
                    3 => {
                        f[14 + 8] = 1; // TTL 1 (checksum fixed below)
                    }
                    // 4: the wrong tagging (below).
                    5 => {
                        for _ in 0..(1 + rnd() % 3) {
                            let at = (rnd() as usize) % f.len();
                            f[at] = rnd() as u8;
                        }
                        if rnd() % 2 == 0 {
                            f[0..6].copy_from_slice(&LB);
                        }
                    }
                    _ => {}
                }
                if f.len() > 34 && f[12] == 8 && f[14 + 8] == 1 {
                    smoltcp::wire::Ipv4Packet::new_unchecked(&mut f[14..34]).fill_checksum();
                }
                if tagged != (kind == 4) {
                    f.splice(12..12, [0x81, 0, 0, 7]);
                }
                let mut f1 = f.clone();
                let mut f2 = f;
                let v1 = full.process(&mut f1, IfIdx(0), now, false);
                let gate = fast.fast_gate(IfIdx(0)).expect("interface 0");
                let mut pre = Datapath::pre_parse(&f2, &gate);
                if let Some(p) = &mut pre {
                    // The worker's hint, or none, or a stale one from an earlier packet.
                    let stage1 = fast.prefetch_buckets(p);
                    let fresh = fast.flows.prefetch_conn(&p.key, p.hash, stage1);
                    p.hint = [fresh, fresh, NO_HINT, old_hint][(rnd() % 4) as usize];
                    old_hint = fresh;
                }
                let v2 = match pre.and_then(|p| fast.fast_path(&mut f2, &p, now)) {
                    Some(out) => {
                        lane += 1;
                        Verdict::Forward(out)
                    }
                    None => fast.process_hinted(&mut f2, IfIdx(0), now, pre.map(|p| p.hash)),
                };
                assert_eq!(v1, v2, "{mode} tagged {tagged} step {step}");
                assert_eq!(f1, f2, "{mode} step {step}: frames differ");
                assert_eq!(
                    full.ctr.0, fast.ctr.0,
                    "{mode} step {step}: counters differ"
                );
                if step % 97 == 0 || step == n - 1 {
                    assert!(full.svc_ctr.svc == fast.svc_ctr.svc, "{mode} step {step}");
                    assert!(
                        full.svc_ctr.backend == fast.svc_ctr.backend,
                        "{mode} {step}"
                    );
                    // Conns too: tuples, TCP state, last seen, backend.
                    let conns = |d: &Datapath| d.flows.snapshot(usize::MAX);
                    assert!(
                        conns(&full) == conns(&fast),
                        "{mode} step {step}: conns differ"
                    );
                }
                if matches!(v1, Verdict::Forward(_)) {
                    if f1.get(12) == Some(&0x81) {
                        f1.drain(12..16);
                    }
                    if f1.len() >= 34 && f1[12] == 8 {
                        last_out.insert((c, udp), f1);
                    }
                }
            }
            // The comparison means something only if both lanes were taken often.
            assert!(
                lane > n / 4 && lane < n - n / 10,
                "{mode}: fast lane took {lane}"
            );
        }
    }

    #[test]
    fn sorry_backend_takes_new_flows_only_when_all_are_down() {
        let text = cfg_text("proxy", "sorry_backend = { address = \"10.20.1.99\" }");
        let (mut d, _) = datapath(&snap_with(&text, &|_| BackendRuntime::default()));
        d.set_neighbour(Ipv4Addr::new(10, 20, 1, 99), Some([2, 0, 0, 0, 0, 0x99]));
        let mut f = pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, SYN);
        d.process(&mut f, IfIdx(0), 0, false);
        assert_ne!(
            parse_dst(&f),
            Ipv4Addr::new(10, 20, 1, 99),
            "sorry idle while others are up"
        );
        let all_down = |k: &BackendKey| BackendRuntime {
            healthy: k.1 == Ipv4Addr::new(10, 20, 1, 99),
            ..BackendRuntime::default()
        };
        d.set_snapshot(snap_with(&text, &all_down));
        let mut g = pkt(CLIENT, VIP, 40001, 80, PROTO_TCP, SYN);
        assert_eq!(
            d.process(&mut g, IfIdx(0), 1, false),
            Verdict::Forward(IfIdx(0))
        );
        assert_eq!(parse_dst(&g), Ipv4Addr::new(10, 20, 1, 99));
        // Without a sorry backend, all down means new flows are dropped and counted.
        let plain = cfg_text("proxy", "");
        let none_up = |_: &BackendKey| BackendRuntime {
            healthy: false,
            ..BackendRuntime::default()
        };
        let (mut e, _) = datapath(&snap_with(&plain, &none_up));
        let mut h = pkt(CLIENT, VIP, 40002, 80, PROTO_TCP, SYN);
        assert_eq!(
            e.process(&mut h, IfIdx(0), 0, false),
            Verdict::Drop(DropReason::NoBackend)
        );
    }
}

#[cfg(test)]
mod robustness_tests {
    use super::tests_support::*;
    use super::*;
    use crate::types::PacketBuf;

    /// xorshift64*: a fixed, dependency-free pseudo-random stream.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    /// Random bytes and mutated valid frames, in every mode: never a panic, every frame gets
    /// exactly one verdict, and the counter invariants hold.
    #[test]
    fn garbage_and_mutated_frames_are_counted_never_panic() {
        for mode in ["dsr", "proxy", "gateway"] {
            let cfg = crate::config::Config::from_toml(&cfg_text(mode, "")).unwrap();
            let snap = Arc::new(Snapshot::build(&cfg, &[LB]));
            let (mut d, _) = datapath(&snap);
            let mut rng = Rng(0x5359_u64 + mode.len() as u64);
            let valid = [
                pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, SYN),
                pkt(CLIENT, VIP, 5353, 53, PROTO_UDP, 0),
                pkt(
                    Ipv4Addr::new(10, 20, 1, 11),
                    CLIENT,
                    80,
                    40000,
                    PROTO_TCP,
                    ACK,
                ),
            ];
            let n = 30_000;
            for i in 0..n {
                let mut f: Vec<u8> = if i % 3 == 0 {
                    let len = (rng.next() % 120) as usize;
                    (0..len).map(|_| rng.next() as u8).collect()
                } else {
                    let mut f = valid[i % valid.len()].clone();
                    for _ in 0..(1 + rng.next() % 4) {
                        let at = (rng.next() as usize) % f.len();
                        f[at] = rng.next() as u8;
                    }
                    if rng.next().is_multiple_of(5) {
                        let cut = (rng.next() as usize) % f.len();
                        f.truncate(cut);
                    }
                    // Keep many of them addressed to us so they get past the MAC check.
                    if rng.next().is_multiple_of(2) && f.len() >= 6 {
                        f[0..6].copy_from_slice(&LB);
                    }
                    f
                };
                let len_before = f.len();
                let v = d.process(&mut f, IfIdx(0), i as u32, false);
                if let Verdict::Forward(_) | Verdict::Reply = v {
                    assert!(!f.bytes().is_empty() || len_before == 0);
                }
            }
            d.publish();
            assert_eq!(d.ctr.get(Ctr::RxPackets), n as u64);
            assert_eq!(d.ctr.check_invariants_rx(), Ok(()), "{mode}");
        }
    }
}
