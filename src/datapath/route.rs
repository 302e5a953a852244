//! Routing what is neither for the balancer nor part of a conn (gateway mode: what the
//! servers send to other networks), as a router would.

use super::{Datapath, Pkt};
use crate::stats::Ctr;
use crate::types::{DropReason, PacketBuf, Verdict};
use crate::wire::{self, ICMP_NET_UNREACH, ICMP_TIME_EXCEEDED, ICMP_UNREACH};

impl Datapath {
    /// Routes a packet that is neither for us nor part of a conn (gateway mode: what the
    /// servers send to other networks), like a router: TTL, longest prefix match, ICMP.
    pub(super) fn route<P: PacketBuf>(&mut self, p: &mut P, pk: &Pkt) -> Verdict {
        if !self.snap.routing {
            return Verdict::Drop(DropReason::NotForUs);
        }
        if pk.ip.dst.is_broadcast() || pk.ip.dst.is_multicast() || pk.ip.src.is_multicast() {
            return Verdict::Drop(DropReason::NotForUs);
        }
        let Some(hop) = self.snap.routes.lookup(pk.ip.dst) else {
            return self.icmp_reply(p, pk, ICMP_UNREACH, ICMP_NET_UNREACH);
        };
        if !wire::decrement_ttl(p.bytes(), pk.l2.l3) {
            return self.icmp_reply(p, pk, ICMP_TIME_EXCEEDED, 0);
        }
        let Some(mac) = self.mac_for(hop.l2_target(pk.ip.dst), hop.iface, pk.now) else {
            return Verdict::Drop(DropReason::NoNeighbour);
        };
        let snap = self.snap.clone();
        let eg = &snap.interfaces[usize::from(hop.iface.0)];
        wire::set_macs(p.bytes(), eg.mac, mac);
        if pk.l2.vlan != eg.vlan && wire::retag(p, pk.l2.vlan, eg.vlan).is_none() {
            return Verdict::Drop(DropReason::MultiSegment);
        }
        self.ctr.inc(Ctr::Routed);
        Verdict::Forward(hop.iface)
    }
}
