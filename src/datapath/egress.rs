//! The way out for a packet of a conn: next hop, TTL (NAT modes route), the mode's rewrite,
//! the MACs and the egress interface's VLAN.

use super::{Datapath, Pkt};
use crate::config::Mode;
use crate::flow::{Conn, ConnId, Dir};
use crate::mode::{self, Xmit};
use crate::types::{DropReason, PacketBuf, Verdict};
use crate::wire::{self, ICMP_TIME_EXCEEDED};

impl Datapath {
    /// Sends a packet of conn `id` travelling in `dir`: TTL (NAT modes route), next hop,
    /// the mode's rewrite, VLAN of the egress interface.
    pub(super) fn send<P: PacketBuf>(
        &mut self,
        p: &mut P,
        pk: &Pkt,
        id: ConnId,
        dir: Dir,
        has_l4: bool,
    ) -> Verdict {
        let conn = *self.flows.conn(id);
        // Copy out what is needed so the snapshot is not borrowed across `&mut self` calls
        // (cloning the Arc per packet would cost two atomic operations).
        let (egress, target) = match self.next_hop(dir, conn.hop_key(dir)) {
            Ok(h) => h,
            Err(r) => return Verdict::Drop(r),
        };
        let snap = &*self.snap;
        let mode = snap.conn_mode(conn.service, conn.backend);
        let eg = &snap.interfaces[usize::from(egress.0)];
        let (eg_mac, eg_vlan) = (eg.mac, eg.vlan);
        self.svc_ctr
            .count(conn.service, conn.backend, pk.ip.end - pk.l2.l3);
        // NAT modes route: the TTL goes down by one (in the mode's rewrite, below).
        if mode != Mode::Dsr && p.bytes()[pk.l2.l3 + 8] <= 1 {
            return self.icmp_reply(p, pk, ICMP_TIME_EXCEEDED, 0);
        }
        let Some(mac) = self.mac_for(target, egress, pk.now) else {
            return Verdict::Drop(DropReason::NoNeighbour);
        };
        let x = Xmit {
            conn: &conn,
            dir,
            l3: pk.l2.l3,
            end: pk.ip.end,
            has_l4,
            egress,
            egress_mac: eg_mac,
            next_hop_mac: mac,
            backend: self.flows.endpoint(conn.backend),
        };
        let v = mode::xmit(mode, p.bytes(), &x);
        if pk.l2.vlan != eg_vlan && wire::retag(p, pk.l2.vlan, eg_vlan).is_none() {
            return Verdict::Drop(DropReason::MultiSegment);
        }
        v
    }

    /// Sends an already-translated packet of `conn` to the conn's side `dir` points at.
    pub(super) fn deliver<P: PacketBuf>(
        &mut self,
        p: &mut P,
        pk: &Pkt,
        conn: &Conn,
        dir: Dir,
    ) -> Verdict {
        let snap = self.snap.clone();
        let (egress, target) = match self.next_hop(dir, conn.hop_key(dir)) {
            Ok(h) => h,
            Err(r) => return Verdict::Drop(r),
        };
        let dsr = snap.conn_mode(conn.service, conn.backend) == Mode::Dsr;
        if !dsr && !wire::decrement_ttl(p.bytes(), pk.l2.l3) {
            return self.icmp_reply(p, pk, ICMP_TIME_EXCEEDED, 0);
        }
        let Some(mac) = self.mac_for(target, egress, pk.now) else {
            return Verdict::Drop(DropReason::NoNeighbour);
        };
        let eg = &snap.interfaces[usize::from(egress.0)];
        wire::set_macs(p.bytes(), eg.mac, mac);
        if pk.l2.vlan != eg.vlan && wire::retag(p, pk.l2.vlan, eg.vlan).is_none() {
            return Verdict::Drop(DropReason::MultiSegment);
        }
        Verdict::Forward(egress)
    }
}
