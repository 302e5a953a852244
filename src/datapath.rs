//! The per-packet decision, on plain bytes: classify a frame, answer ARP and ICMP echo for the
//! balancer's addresses, look up the service and the flow, pick a backend, and hand the frame
//! to the service's forwarding mode. No DPDK type appears here (the worker owns the mbufs),
//! so all of this runs in unit tests and golden tests alike.
//!
//! A bad or unwanted frame becomes `Verdict::Drop(reason)` and a counter; nothing here
//! allocates, locks, formats or makes a syscall.

use std::net::Ipv4Addr;
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::config::Mode;
use crate::flow::{FlowKey, FlowState, FlowTable, NewFlow};
use crate::lb::{BackendId, IfIdx, LocalKind, NeighIdx, Snapshot};
use crate::mode::{Xmit, dsr};
use crate::stats::{Counters, Ctr};
use crate::wire::{
    self, DropReason, ETHERTYPE_ARP, ETHERTYPE_IPV4, PROTO_ICMP, PROTO_TCP, PROTO_UDP,
};

/// What becomes of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Rewritten; transmit on this interface's port.
    Forward(IfIdx),
    /// Rewritten into an answer; transmit back out of the port it came in on.
    Reply,
    /// Used up by the balancer (e.g. an ARP reply it learned from).
    Consumed,
    Drop(DropReason),
}

/// Worker -> management messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// An ARP packet from a tracked neighbour showed its MAC.
    Neighbour { idx: NeighIdx, mac: [u8; 6] },
}

/// Management -> worker messages, applied between bursts.
#[derive(Debug, Clone)]
pub enum Control {
    /// Sets (or clears) a neighbour's MAC in the worker's cache.
    SetNeighbour { idx: NeighIdx, mac: Option<[u8; 6]> },
    /// Builds and sends an ARP request (gratuitous when `sender == target`).
    SendArp {
        iface: IfIdx,
        sender: Ipv4Addr,
        target: Ipv4Addr,
    },
    /// Replaces the worker's snapshot (reload).
    Snapshot(Arc<Snapshot>),
}

/// One worker's data-plane state. Owned by exactly one thread.
pub struct Datapath {
    pub snap: Arc<Snapshot>,
    pub flows: FlowTable,
    /// MAC per neighbour index; `None` until resolved.
    neigh: Vec<Option<[u8; 6]>>,
    pub ctr: Counters,
    events: Arc<ArrayQueue<Event>>,
}

impl Datapath {
    pub fn new(snap: Arc<Snapshot>, flow_capacity: usize, events: Arc<ArrayQueue<Event>>) -> Self {
        let n = snap.neighbours.len();
        Datapath {
            snap,
            flows: FlowTable::new(flow_capacity),
            neigh: vec![None; n],
            ctr: Counters::default(),
            events,
        }
    }

    pub fn set_neighbour(&mut self, idx: NeighIdx, mac: Option<[u8; 6]>) {
        if let Some(slot) = self.neigh.get_mut(idx.0 as usize) {
            *slot = mac;
        }
    }

    /// Installs a new snapshot. Flow entries keep their `BackendId`s, which management keeps
    /// stable across snapshots, so established flows stay on their backend.
    pub fn set_snapshot(&mut self, snap: Arc<Snapshot>) -> Arc<Snapshot> {
        self.neigh.resize(snap.neighbours.len(), None);
        std::mem::replace(&mut self.snap, snap)
    }

    /// Copies the flow table's own counters into `ctr` (once per poll round).
    pub fn sync_flow_counters(&mut self) {
        let f = self.flows.counters;
        self.ctr.set(Ctr::FlowsCreated, f.created);
        self.ctr.set(Ctr::FlowsExpired, f.expired);
        self.ctr.set(Ctr::FlowsActive, self.flows.active() as u64);
    }

    /// Counts a frame the worker could not hand over as one slice (chained mbuf).
    pub fn count_unparseable(&mut self, len: usize, reason: DropReason) {
        self.ctr.inc(Ctr::RxPackets);
        self.ctr.add(Ctr::RxBytes, len as u64);
        self.ctr.drop(reason);
    }

    /// Decides one frame that arrived on `in_if`, rewriting it in place, and counts it.
    #[inline]
    pub fn process(&mut self, frame: &mut [u8], in_if: IfIdx, now_ms: u32) -> Verdict {
        self.ctr.inc(Ctr::RxPackets);
        self.ctr.add(Ctr::RxBytes, frame.len() as u64);
        let v = self.classify(frame, in_if, now_ms);
        match v {
            Verdict::Forward(_) => self.ctr.inc(Ctr::Forwarded),
            Verdict::Reply => self.ctr.inc(Ctr::Replied),
            Verdict::Consumed => self.ctr.inc(Ctr::Consumed),
            Verdict::Drop(r) => self.ctr.drop(r),
        }
        v
    }

    fn classify(&mut self, frame: &mut [u8], in_if: IfIdx, now: u32) -> Verdict {
        let l2 = match wire::parse_l2(frame) {
            Ok(l2) => l2,
            Err(r) => return Verdict::Drop(r),
        };
        let ifc = &self.snap.interfaces[usize::from(in_if.0)];
        if l2.vlan != ifc.vlan {
            return Verdict::Drop(DropReason::VlanMismatch);
        }
        match l2.ethertype {
            ETHERTYPE_ARP => self.arp(frame, l2.l3, in_if),
            ETHERTYPE_IPV4 => self.ipv4(frame, l2.l3, in_if, now),
            _ => Verdict::Drop(DropReason::UnsupportedEthertype),
        }
    }

    fn arp(&mut self, frame: &mut [u8], l3: usize, in_if: IfIdx) -> Verdict {
        let a = match wire::parse_arp(frame, l3) {
            Ok(a) => a,
            Err(r) => return Verdict::Drop(r),
        };
        // Learn from any ARP of a tracked neighbour (its replies to our requests, and its own
        // requests), but tell management only when something changed or it answered us.
        if let Some(idx) = self.snap.neighbour(a.sender_ip) {
            let known = self.neigh.get(idx.0 as usize).copied().flatten();
            if (!a.is_request || known != Some(a.sender_mac))
                && self
                    .events
                    .push(Event::Neighbour {
                        idx,
                        mac: a.sender_mac,
                    })
                    .is_err()
            {
                self.ctr.inc(Ctr::EventsLost);
            }
        }
        let ours = matches!(self.snap.local(a.target_ip), Some((i, _)) if i == in_if);
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

    fn ipv4(&mut self, frame: &mut [u8], l3: usize, in_if: IfIdx, now: u32) -> Verdict {
        let ip = match wire::parse_ipv4(frame, l3) {
            Ok(ip) => ip,
            Err(r) => return Verdict::Drop(r),
        };
        let Some((_, kind)) = self.snap.local(ip.dst) else {
            return Verdict::Drop(DropReason::NotForUs);
        };
        if ip.is_fragment {
            // Policy (until fragment handling lands): fragments addressed to the balancer or a
            // VIP are dropped and counted; see docs/ARCHITECTURE.md.
            return Verdict::Drop(DropReason::Fragment);
        }
        match ip.proto {
            PROTO_ICMP => {
                let mac = self.snap.interfaces[usize::from(in_if.0)].mac;
                match wire::icmp_echo_to_reply(frame, l3, &ip, mac) {
                    Ok(()) => Verdict::Reply,
                    Err(r) => Verdict::Drop(r),
                }
            }
            PROTO_TCP | PROTO_UDP if kind == LocalKind::Vip => self.balance(frame, &ip, now),
            PROTO_TCP | PROTO_UDP => Verdict::Drop(DropReason::LocalNotHandled),
            _ => Verdict::Drop(DropReason::LocalNotHandled),
        }
    }

    fn balance(&mut self, frame: &mut [u8], ip: &wire::Ipv4Meta, now: u32) -> Verdict {
        let l4 = match wire::parse_l4(frame, ip) {
            Ok(l4) => l4,
            Err(r) => return Verdict::Drop(r),
        };
        let Some(si) = self.snap.service(ip.dst, l4.dst_port, ip.proto) else {
            return Verdict::Drop(DropReason::NoService);
        };
        let key = FlowKey::new(ip.src, ip.dst, l4.src_port, l4.dst_port, ip.proto);
        let hash = key.hash();
        let snap = &*self.snap;
        let t = &snap.timeouts;
        let backend = match self.flows.lookup(&key, hash, now, t) {
            Some(e) => {
                if ip.proto == PROTO_TCP {
                    let st = e.state();
                    if l4.tcp.rst || l4.tcp.fin {
                        e.set_state(FlowState::TcpClosing);
                    } else if l4.tcp.syn && st == FlowState::TcpClosing {
                        // Port reuse after close: a new connection on the same backend.
                        e.set_state(FlowState::TcpSyn);
                    } else if l4.tcp.ack && st == FlowState::TcpSyn {
                        e.set_state(FlowState::TcpEstablished);
                    }
                }
                e.touch(now);
                BackendId(e.backend)
            }
            None => {
                let svc = &snap.services[usize::from(si)];
                let Some(slot) = svc.maglev.lookup(hash) else {
                    return Verdict::Drop(DropReason::NoBackend);
                };
                let id = svc.backends[usize::from(slot)];
                // A flow first seen mid-stream (balancer restart, another instance's flow
                // after ECMP change) is adopted: Maglev maps it to the same backend anyway.
                let state = if ip.proto == PROTO_UDP {
                    FlowState::Udp
                } else if l4.tcp.rst || l4.tcp.fin {
                    FlowState::TcpClosing
                } else if l4.tcp.syn && !l4.tcp.ack {
                    FlowState::TcpSyn
                } else {
                    FlowState::TcpEstablished
                };
                if self
                    .flows
                    .insert(
                        &key,
                        hash,
                        now,
                        t,
                        NewFlow {
                            state,
                            service: si,
                            backend: id.0,
                        },
                    )
                    .is_err()
                {
                    return Verdict::Drop(DropReason::FlowTableFull);
                }
                id
            }
        };
        let Some(b) = snap.backends.get(backend.0 as usize) else {
            return Verdict::Drop(DropReason::NoBackend);
        };
        let Some(mac) = self.neigh.get(b.neigh.0 as usize).copied().flatten() else {
            return Verdict::Drop(DropReason::NoNeighbour);
        };
        let x = Xmit {
            ip,
            backend: b,
            egress: &snap.interfaces[usize::from(b.iface.0)],
            egress_idx: b.iface,
            next_hop_mac: mac,
        };
        match snap.services[usize::from(si)].mode {
            Mode::Dsr => dsr::xmit(frame, &x),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::wire::tests::{TCP_SYN, with_ip_checksum};
    use crate::wire::{ARP_FRAME_LEN, ETH_HDR, build_arp_request};

    const CFG: &str = r#"
[dpdk]
eal_args = []
[cores]
management = 0
workers = [1]
[flows]
capacity_per_core = 1024
[[interfaces]]
name = "lan"
port = "p0"
address = "10.20.0.10/24"
[[services]]
name = "web"
vip = "10.20.0.100"
port = 80
protocol = "tcp"
mode = "dsr"
  [[services.backends]]
  address = "10.20.0.11"
  [[services.backends]]
  address = "10.20.0.12"
"#;
    const OUR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];

    fn dp() -> (Datapath, Arc<ArrayQueue<Event>>) {
        let cfg = Config::from_toml(CFG).unwrap();
        let snap = Arc::new(Snapshot::build(&cfg, &[OUR_MAC]));
        let ev = Arc::new(ArrayQueue::new(16));
        let mut d = Datapath::new(snap, 1024, ev.clone());
        d.set_neighbour(NeighIdx(0), Some([2, 0, 0, 0, 0, 0x11]));
        d.set_neighbour(NeighIdx(1), Some([2, 0, 0, 0, 0, 0x12]));
        (d, ev)
    }

    fn syn_from(port: u16) -> Vec<u8> {
        let mut f = TCP_SYN.to_vec();
        f[34..36].copy_from_slice(&port.to_be_bytes());
        with_ip_checksum(f, ETH_HDR)
    }

    #[test]
    fn syn_to_vip_goes_to_a_backend_and_sticks() {
        let (mut d, _) = dp();
        let mut f = syn_from(40000);
        assert_eq!(d.process(&mut f, IfIdx(0), 0), Verdict::Forward(IfIdx(0)));
        let chosen = [f[0], f[1], f[2], f[3], f[4], f[5]];
        assert!(chosen == [2, 0, 0, 0, 0, 0x11] || chosen == [2, 0, 0, 0, 0, 0x12]);
        assert_eq!(d.flows.active(), 1);
        // Same flow again, after its backend's neighbour moved index order: same backend.
        let mut g = syn_from(40000);
        d.process(&mut g, IfIdx(0), 5);
        assert_eq!(&g[0..6], &chosen);
        assert_eq!(d.ctr.get(Ctr::Forwarded), 2);
    }

    #[test]
    fn many_flows_spread_over_both_backends() {
        let (mut d, _) = dp();
        let mut n11 = 0;
        for p in 0..1000u16 {
            let mut f = syn_from(10000 + p);
            assert_eq!(d.process(&mut f, IfIdx(0), 0), Verdict::Forward(IfIdx(0)));
            if f[5] == 0x11 {
                n11 += 1;
            }
        }
        assert!((350..=650).contains(&n11), "{n11}");
    }

    #[test]
    fn established_flow_survives_a_backend_set_change() {
        let (mut d, _) = dp();
        let port = |i: u16| 30000 + i;
        let mut before = Vec::new();
        for i in 0..300 {
            let mut f = syn_from(port(i));
            assert_eq!(d.process(&mut f, IfIdx(0), 0), Verdict::Forward(IfIdx(0)));
            before.push(f[5]);
        }
        // A third backend joins: Maglev now maps about a third of all hashes to it.
        let bigger = format!("{CFG}  [[services.backends]]\n  address = \"10.20.0.13\"\n");
        let cfg = Config::from_toml(&bigger).unwrap();
        let snap = Arc::new(Snapshot::build(&cfg, &[OUR_MAC]));
        d.set_snapshot(snap);
        d.set_neighbour(NeighIdx(2), Some([2, 0, 0, 0, 0, 0x13]));
        // Established flows stay where they were...
        for i in 0..300 {
            let mut f = syn_from(port(i));
            f[47] = 0x10; // ACK
            d.process(&mut f, IfIdx(0), 10);
            assert_eq!(f[5], before[usize::from(i)], "flow {i} moved");
        }
        // ...while new flows do reach the new backend.
        let mut to_new = 0;
        for i in 0..300 {
            let mut f = syn_from(port(1000 + i));
            d.process(&mut f, IfIdx(0), 10);
            to_new += usize::from(f[5] == 0x13);
        }
        assert!(to_new > 50, "new backend got {to_new} of 300 new flows");
    }

    #[test]
    fn arp_for_vip_is_answered_and_for_others_dropped() {
        let (mut d, _) = dp();
        let mut f = vec![0u8; ARP_FRAME_LEN];
        build_arp_request(
            &mut f,
            None,
            [2, 0, 0, 0, 0, 1],
            Ipv4Addr::new(10, 20, 0, 1),
            Ipv4Addr::new(10, 20, 0, 100),
        );
        assert_eq!(d.process(&mut f, IfIdx(0), 0), Verdict::Reply);
        assert_eq!(&f[6..12], &OUR_MAC);
        let mut g = vec![0u8; ARP_FRAME_LEN];
        build_arp_request(
            &mut g,
            None,
            [2, 0, 0, 0, 0, 1],
            Ipv4Addr::new(10, 20, 0, 1),
            Ipv4Addr::new(10, 20, 0, 99),
        );
        assert_eq!(
            d.process(&mut g, IfIdx(0), 0),
            Verdict::Drop(DropReason::ArpNotForUs)
        );
    }

    #[test]
    fn arp_from_a_backend_reports_its_mac() {
        let (mut d, ev) = dp();
        d.set_neighbour(NeighIdx(0), None);
        let mut f = vec![0u8; ARP_FRAME_LEN];
        build_arp_request(
            &mut f,
            None,
            [2, 0, 0, 0, 0, 0x11],
            Ipv4Addr::new(10, 20, 0, 11),
            Ipv4Addr::new(10, 20, 0, 10),
        );
        assert_eq!(d.process(&mut f, IfIdx(0), 0), Verdict::Reply);
        assert_eq!(
            ev.pop(),
            Some(Event::Neighbour {
                idx: NeighIdx(0),
                mac: [2, 0, 0, 0, 0, 0x11]
            })
        );
    }

    #[test]
    fn unresolved_backend_is_a_counted_drop() {
        let (mut d, _) = dp();
        d.set_neighbour(NeighIdx(0), None);
        d.set_neighbour(NeighIdx(1), None);
        let mut f = syn_from(40002);
        assert_eq!(
            d.process(&mut f, IfIdx(0), 0),
            Verdict::Drop(DropReason::NoNeighbour)
        );
        assert_eq!(d.ctr.dropped(DropReason::NoNeighbour), 1);
    }

    #[test]
    fn non_service_traffic_is_dropped_by_reason() {
        let (mut d, _) = dp();
        let mut f = syn_from(40003);
        f[37] = 81; // dst port 81
        assert_eq!(
            d.process(&mut f, IfIdx(0), 0),
            Verdict::Drop(DropReason::NoService)
        );
        let mut g = syn_from(40003);
        g[33] = 50; // dst 10.20.0.50
        let mut g = with_ip_checksum(g, ETH_HDR);
        assert_eq!(
            d.process(&mut g, IfIdx(0), 0),
            Verdict::Drop(DropReason::NotForUs)
        );
        let mut h = syn_from(40003);
        h[12] = 0x86;
        h[13] = 0xdd;
        assert_eq!(
            d.process(&mut h, IfIdx(0), 0),
            Verdict::Drop(DropReason::UnsupportedEthertype)
        );
        let mut c = d.ctr;
        c.set(Ctr::FlowsActive, 0);
        assert!(c.check_invariants().is_ok());
    }

    #[test]
    fn full_flow_table_drops_new_flows_only() {
        let cfg = Config::from_toml(CFG).unwrap();
        let snap = Arc::new(Snapshot::build(&cfg, &[OUR_MAC]));
        let mut d = Datapath::new(snap, 8, Arc::new(ArrayQueue::new(4)));
        d.set_neighbour(NeighIdx(0), Some([2, 0, 0, 0, 0, 0x11]));
        d.set_neighbour(NeighIdx(1), Some([2, 0, 0, 0, 0, 0x12]));
        let mut ok = Vec::new();
        for p in 0..100u16 {
            let mut f = syn_from(20000 + p);
            if d.process(&mut f, IfIdx(0), 0) != Verdict::Drop(DropReason::FlowTableFull) {
                ok.push(p);
            }
        }
        assert!(ok.len() <= 8 && !ok.is_empty());
        assert_eq!(
            d.ctr.dropped(DropReason::FlowTableFull),
            100 - ok.len() as u64
        );
        for p in ok {
            let mut f = syn_from(20000 + p);
            assert_eq!(d.process(&mut f, IfIdx(0), 1), Verdict::Forward(IfIdx(0)));
        }
    }
}
