//! GSLB DNS on the workers: a UDP A query for a configured name, to one of our DNS
//! addresses, is answered in place from the snapshot's precomputed answers (`gslb::Table`):
//! the name looked up, the client's (resolver's) region found, the name's next turn taken.
//! Everything else sent to a DNS address (TCP, other types, other names, unusual queries)
//! goes to the kernel, where management answers it; what is not a DNS query is dropped.

use super::{Datapath, Pkt};
use crate::gslb::Answer;
use crate::stats::Ctr;
use crate::types::{DropReason, PacketBuf, Verdict};
use crate::wire::{
    DNS_PORT, DnsParse, L4Meta, PROTO_UDP, TYPE_A, dns_answer_in_place, parse_dns_query,
};

impl Datapath {
    pub(super) fn dns<P: PacketBuf>(&mut self, p: &mut P, pk: &Pkt, l4: &L4Meta) -> Verdict {
        match self.dns_answer(p, pk, l4) {
            Ok(v) => v,
            Err(DnsParse::Malformed) => Verdict::Drop(DropReason::DnsMalformed),
            Err(DnsParse::Other) if self.kernel(pk.in_if) => {
                self.ctr.inc(Ctr::DnsToKernel);
                Verdict::ToKernel
            }
            Err(DnsParse::Other) => Verdict::Drop(DropReason::LocalNotHandled),
        }
    }

    /// The answer, or why the workers do not give it (`Other`: the kernel side does).
    fn dns_answer<P: PacketBuf>(
        &mut self,
        p: &mut P,
        pk: &Pkt,
        l4: &L4Meta,
    ) -> Result<Verdict, DnsParse> {
        let ip = &pk.ip;
        if ip.proto != PROTO_UDP || l4.dst_port != DNS_PORT || ip.is_fragment {
            return Err(DnsParse::Other);
        }
        let Some(table) = self.snap.gslb.as_deref() else {
            return Err(DnsParse::Other);
        };
        let mut name = [0u8; 255];
        let (q, n) = parse_dns_query(&p.bytes()[ip.l4 + 8..ip.end], &mut name)?;
        if q.qtype != TYPE_A {
            return Err(DnsParse::Other);
        }
        let id = usize::from(table.lookup(&name[..n]).ok_or(DnsParse::Other)?);
        let turn = self.dns_turns.get_mut(id).ok_or(DnsParse::Other)?;
        *turn = turn.wrapping_add(1);
        let answer = table.entries[id].pick(table.region_of(ip.src), *turn);
        let (rcode, tail): (u8, &[u8]) = match answer {
            Answer::Records { tail, .. } => (0, tail),
            Answer::Rcode(r) => (*r, &[]),
        };
        let mac = self.snap.interfaces[usize::from(pk.in_if.0)].mac;
        // Too large for the client: the kernel side answers (truncated).
        if !dns_answer_in_place(p, pk.l2.l3, ip, &q, mac, rcode, answer.count(), tail) {
            return Err(DnsParse::Other);
        }
        if let Some(c) = self.svc_ctr.names.get_mut(id) {
            *c += 1;
        }
        self.ctr.inc(Ctr::DnsAnswered);
        Ok(Verdict::Reply)
    }
}
