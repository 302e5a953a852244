//! The per-packet decision, on plain bytes: classify a frame; answer ARP and ICMP echo for the
//! balancer's addresses; balance TCP/UDP to a VIP in the service's mode (DSR, proxy, gateway);
//! translate replies and ICMP errors of NAT conns; follow the fragment policy; route what the
//! servers send in gateway mode. No DPDK type appears here (the worker owns the mbufs, seen
//! through [`PacketBuf`]), so all of it runs in unit tests and golden tests alike.
//!
//! A bad or unwanted frame becomes `Verdict::Drop(reason)` and a counter; nothing here
//! allocates, locks, formats or makes a syscall.
//!
//! One file per part of the walk (docs/ARCHITECTURE.md follows a packet through them):
//!
//! | file | |
//! |---|---|
//! | `mod` | [`Datapath`], the worker's state; `process`: count, classify by ethertype |
//! | `fast` | the fast lane: established conns, decided in a few dozen instructions |
//! | `handover` | which worker owns a conn; frames handed between workers in the fast lane |
//! | `arp` | ARP for our addresses answered, neighbours learned |
//! | `ipv4` | IPv4 sorted by protocol; TCP/UDP to its owner core, its conn, or a new conn |
//! | `egress` | a conn's packet on its way out: next hop, TTL, the mode's rewrite, VLAN |
//! | `icmp` | echo, ICMP errors translated for conns, errors we originate |
//! | `frag` | the fragment policy: later fragments follow the first |
//! | `route` | what gateway-mode servers send elsewhere, routed |
//! | `neigh` | the worker's neighbour cache and resolve requests |
//! | `synproxy` | SYN cookies: conns of proxy/gateway services made only by a valid ACK |
//! | `limits` | token buckets: new flows per service and per client, ICMP errors we send |

use std::net::Ipv4Addr;
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

mod arp;
mod dns;
mod egress;
mod fast;
mod frag;
mod handover;
mod icmp;
mod ipv4;
mod limits;
mod neigh;
mod route;
mod sync;
mod synproxy;

#[cfg(test)]
mod tests;

pub use fast::{Gate, Pre};
use frag::FragTable;
use neigh::NeighCache;

use crate::channel::Event;
use crate::flow::{Conn, ConnId, Dir, FlowKey, FlowTable};
use crate::lb::Snapshot;
use crate::lb::sched::BackendLoad;
use crate::lb::select::Selector;
use crate::mode;
use crate::mode::snat::SnatPortPool;
use crate::stats::{Counters, Ctr, ServiceCounters};
use crate::types::{DropReason, IfIdx, PacketBuf, Verdict};
use crate::wire::{self, ETHERTYPE_ARP, ETHERTYPE_IPV4, Ipv4Meta, L2};

/// Most conn slots one sweep call visits under pressure (a few microseconds).
const MAX_PRESSURE_SWEEP: usize = 2048;

/// How long a fragment decision is remembered.
const FRAG_TIMEOUT_MS: u32 = 2000;

/// What the full path knows of an IPv4 packet once its header is validated: how it is
/// framed, its IPv4 facts, where and when it arrived, and whether another worker handed it
/// over (then it was counted as received there). Every step of the full path takes it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pkt {
    pub l2: L2,
    pub ip: Ipv4Meta,
    pub in_if: IfIdx,
    pub now: u32,
    pub steered: bool,
}

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
    neigh: NeighCache,
    pub ctr: Counters,
    /// Per service and backend: packets, bytes, flows.
    pub svc_ctr: ServiceCounters,
    events: Arc<ArrayQueue<Event>>,
    me: WorkerInfo,
    /// Proxy mode's local ports, this worker's slice.
    snat: SnatPortPool,
    frags: FragTable,
    /// Backend choice for new conns (persistence, schedulers, conn counts).
    select: Selector,
    /// The worker's prefetch pass already hashed this packet's tuple (see `pre_parse`).
    hash_hint: Option<u64>,
    /// The fast lane's caches (see `fast`).
    fast: fast::FastCache,
    /// HA flow sync (with `[ha]`; see `sync`).
    sync: Option<sync::SyncOut>,
    /// GSLB: each name's next turn of its answer wheel (`dns`).
    dns_turns: Box<[u32; crate::types::MAX_GSLB_NAMES]>,
    /// ICMP errors this worker may still originate (`icmp`).
    icmp_budget: limits::TokenBucket,
    /// New-flow limits per service and per client address (`limits`).
    limits: limits::FlowLimits,
    /// SYN cookies switched on (`synproxy`): `[protection] syn_cookies`, or `auto` with too
    /// many half-open conns.
    cookies_on: bool,
    /// The conn timeouts in force: the snapshot's, UDP's cut under pressure.
    timeouts: crate::flow::Timeouts,
    /// Conn slots the sweep still owes (under pressure it covers the table once per
    /// `udp_pressure_ms`) and the last millisecond it was assessed.
    sweep_debt: usize,
    last_assess: u32,
}

impl Datapath {
    pub fn new(
        snap: Arc<Snapshot>,
        me: WorkerInfo,
        events: Arc<ArrayQueue<Event>>,
        load: Arc<BackendLoad>,
    ) -> Self {
        let mut flows = FlowTable::new(me.flow_capacity);
        record_backends(&mut flows, &snap);
        let timeouts = snap.timeouts;
        Datapath {
            snat: SnatPortPool::new(snap.snat.len(), me.index, me.count, snap.nat_ports),
            select: Selector::new(&snap, me.index, me.persist_capacity, load),
            fast: fast::FastCache::new(&snap),
            snap,
            flows,
            neigh: NeighCache::new(),
            ctr: Counters::default(),
            svc_ctr: ServiceCounters::default(),
            events,
            me,
            frags: FragTable::new(FRAG_TIMEOUT_MS),
            hash_hint: None,
            sync: None,
            dns_turns: Box::new([0; crate::types::MAX_GSLB_NAMES]),
            icmp_budget: limits::TokenBucket::full(icmp::ICMP_ERRORS_BURST),
            limits: limits::FlowLimits::new(),
            cookies_on: false,
            timeouts,
            sweep_debt: 0,
            last_assess: 0,
        }
    }

    /// Sets (or clears) a neighbour's MAC (management's word); every cached hop is
    /// forgotten.
    pub fn set_neighbour(&mut self, ip: Ipv4Addr, mac: Option<[u8; 6]>) {
        self.fast.invalidate();
        self.neigh.set(u32::from(ip), mac);
    }

    /// Installs a new snapshot. Conns keep their `BackendId`s, which management keeps stable
    /// across snapshots, so established flows stay on their backend.
    pub fn set_snapshot(&mut self, snap: Arc<Snapshot>) -> Arc<Snapshot> {
        self.select.rebuild(&snap);
        self.fast.rebuild(&snap);
        record_backends(&mut self.flows, &snap);
        let old = std::mem::replace(&mut self.snap, snap);
        self.assess(self.last_assess);
        old
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
        self.ctr
            .set(Ctr::FlowsHalfOpen, self.flows.half_open() as u64);
        self.ctr.set(Ctr::HalfOpenReclaimed, f.half_open_reclaimed);
        self.ctr.set(Ctr::SynCookiesOn, u64::from(self.cookies_on));
        let udp = crate::flow::FlowState::Udp as usize;
        self.ctr.set(
            Ctr::UdpPressure,
            u64::from(self.timeouts.0[udp] != self.snap.timeouts.0[udp]),
        );
        self.select.publish(self.snap.backends.len());
    }

    /// Reclaims a slice of expired conns (between bursts); under pressure, enough of them
    /// that the sweep covers the table once per `udp_pressure_ms`.
    pub fn sweep(&mut self, now: u32, buckets: usize) {
        if now != self.last_assess {
            self.assess(now);
        }
        let extra = self.sweep_debt.min(MAX_PRESSURE_SWEEP);
        self.sweep_debt -= extra;
        let buckets = buckets.max(extra);
        if self.sync.is_some() {
            return self.sweep_sync(now, buckets);
        }
        self.with_reclaim(now, |flows, t, reclaim| {
            flows.sweep(now, t, buckets, &mut { reclaim });
        });
    }

    /// Once a millisecond: pressure (the table's or the SNAT ports' use at
    /// `[protection] pressure_percent` or more: UDP conns idle out after `udp_pressure_ms`, and
    /// the sweep owes the table's share of slots for the milliseconds past) and SYN cookies.
    fn assess(&mut self, now: u32) {
        let elapsed = now.wrapping_sub(self.last_assess).min(1000) as usize;
        self.last_assess = now;
        let pr = self.snap.protection;
        let table = self.flows.active() * 100 / self.flows.capacity().max(1);
        let pressure = table >= usize::from(pr.pressure_percent)
            || self.snat.used_percent() >= u32::from(pr.pressure_percent);
        self.timeouts = if pressure {
            self.snap.timeouts.with_udp(pr.udp_pressure_ms)
        } else {
            self.snap.timeouts
        };
        self.fast.set_timeouts(self.timeouts);
        if pressure {
            let per_ms = self
                .flows
                .slots()
                .div_ceil(pr.udp_pressure_ms.max(1) as usize);
            self.sweep_debt = (self.sweep_debt + per_ms * elapsed).min(self.flows.slots());
        } else {
            self.sweep_debt = 0;
        }
        self.assess_cookies();
    }

    /// Runs `f` on the conn table with the idle timeouts and the callback that gives back
    /// what a dead conn held (its NAT port, its backend count) and, with HA sync, tells the
    /// peer it ended.
    #[inline]
    pub(super) fn with_reclaim<R>(
        &mut self,
        now: u32,
        f: impl FnOnce(&mut FlowTable, &crate::flow::Timeouts, &mut dyn FnMut(&Conn)) -> R,
    ) -> R {
        let t = self.timeouts;
        let Datapath {
            flows,
            snat,
            select,
            sync,
            snap,
            ctr,
            ..
        } = self;
        f(flows, &t, &mut |c: &Conn| {
            reclaim(c, snat, select);
            if let Some(s) = sync {
                s.ended(c, snap, now, ctr);
            }
        })
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
                // A one-arm port is promiscuous: IPv4 must be unicast to our MAC, but for
                // the VRRP adverts of an HA pair, which keepalived hears on the kernel side.
                if b[0..6] != ifc.mac {
                    if self.snap.vrrp && ifc.exception && wire::is_vrrp_advert(b, l2.l3) {
                        return Verdict::ToKernel;
                    }
                    return Verdict::Drop(DropReason::NotForUs);
                }
                self.ipv4(p, l2, in_if, now, steered)
            }
            _ => Verdict::Drop(DropReason::UnsupportedEthertype),
        }
    }

    /// Conn-table lookup; a dead conn met on the way gives back its port and backend count.
    #[inline]
    pub(super) fn lookup(&mut self, key: &FlowKey, hash: u64, now: u32) -> Option<(ConnId, Dir)> {
        self.with_reclaim(now, |flows, t, reclaim| {
            flows.lookup(key, hash, now, t, &mut { reclaim })
        })
    }

    /// Where a packet travelling in `dir` goes: (egress interface, address whose MAC it is
    /// sent to), or why it cannot go. `to` is what decides it: the conn's backend id going
    /// forward, its client address going back (see `Conn::hop_key`).
    #[inline]
    pub(super) fn next_hop(&self, dir: Dir, to: u32) -> Result<(IfIdx, Ipv4Addr), DropReason> {
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
    pub(super) fn kernel(&self, in_if: IfIdx) -> bool {
        self.snap.interfaces[usize::from(in_if.0)].exception
    }
}

/// Tells the conn table every backend's address and port (the start of NAT conns' reverse
/// tuples), before any packet sees the snapshot.
fn record_backends(flows: &mut FlowTable, snap: &Snapshot) {
    for (id, b) in snap.backends.iter().enumerate() {
        flows.set_backend(id as u32, u32::from(b.addr), b.port);
    }
}

/// Gives back what a dead conn held: what its mode took (a SNAT port) and its backend count.
#[inline]
fn reclaim(c: &Conn, snat: &mut SnatPortPool, select: &mut Selector) {
    mode::close(c, snat);
    select.closed(c.backend);
}
