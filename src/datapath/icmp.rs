//! ICMP: echo for the balancer's addresses, errors about balanced conns translated to where
//! the conn's other end is (so path-MTU discovery works through every mode), and the errors
//! the balancer itself sends (TTL expiry, no route).

use std::net::Ipv4Addr;

use super::{Datapath, Pkt};
use crate::config::Mode;
use crate::flow::{Conn, Dir, FlowKey, FlowState};
use crate::lb::LocalKind;
use crate::mode;
use crate::mode::snat::{owner_of, port_owner};
use crate::stats::Ctr;
use crate::types::{DropReason, PacketBuf, Verdict};
use crate::wire::{self, ICMP_TIME_EXCEEDED, IcmpError, PROTO_ICMP};

impl Datapath {
    /// ICMP: echo for our addresses; errors about balanced conns are translated to where
    /// the conn's other end is (path-MTU discovery works through every mode).
    pub(super) fn icmp<P: PacketBuf>(
        &mut self,
        p: &mut P,
        pk: &Pkt,
        local: Option<LocalKind>,
    ) -> Verdict {
        if let Some(e) = wire::parse_icmp_error(p.bytes(), &pk.ip) {
            return self.icmp_error(p, pk, local, &e);
        }
        match local {
            Some(LocalKind::Interface) if self.kernel(pk.in_if) => Verdict::ToKernel,
            Some(_) => {
                let mac = self.snap.interfaces[usize::from(pk.in_if.0)].mac;
                match wire::icmp_echo_to_reply(p.bytes(), pk.l2.l3, &pk.ip, mac) {
                    Ok(()) => Verdict::Reply,
                    Err(r) => Verdict::Drop(r),
                }
            }
            None => self.route(p, pk),
        }
    }

    pub(super) fn icmp_error<P: PacketBuf>(
        &mut self,
        p: &mut P,
        pk: &Pkt,
        local: Option<LocalKind>,
        e: &IcmpError,
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
            && !pk.steered
        {
            return Verdict::Steer(o as u16);
        }
        let hit = self.lookup(&key, key.hash(), pk.now);
        let Some((id, dir)) = hit else {
            if vip_dsr {
                // DSR is stateless enough: the conn may live on another core; Maglev maps
                // the quoted flow to the same backend.
                return self.dsr_stateless(p, pk, &key);
            }
            return match local {
                None => self.route(p, pk),
                Some(LocalKind::Interface) if self.kernel(pk.in_if) => Verdict::ToKernel,
                Some(_) => Verdict::Drop(DropReason::IcmpNoFlow),
            };
        };
        let conn = *self.flows.conn(id);
        let snap = self.snap.clone();
        let mode = snap.conn_mode(conn.service, conn.backend);
        let be = self.flows.endpoint(conn.backend);
        if let Some((outer, inner)) = mode::icmp_rewrites(mode, &conn, be, dir) {
            wire::rewrite_icmp_error(p.bytes(), pk.l2.l3, &pk.ip, e, &outer, &inner);
        }
        // Addresses are translated already: forward like a later fragment (no L4 rewrite).
        self.deliver(p, pk, &conn, dir)
    }

    /// An ICMP error about a DSR flow whose conn is not on this core.
    pub(super) fn dsr_stateless<P: PacketBuf>(
        &mut self,
        p: &mut P,
        pk: &Pkt,
        key: &FlowKey,
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
        self.deliver(p, pk, &conn, Dir::Forward)
    }

    /// Answers the packet's sender with an ICMP error from our address on the interface it came in on. Errors
    /// are never sent about ICMP errors, fragments after the first, or broadcasts.
    pub(super) fn icmp_reply<P: PacketBuf>(
        &mut self,
        p: &mut P,
        pk: &Pkt,
        icmp_type: u8,
        code: u8,
    ) -> Verdict {
        let reason = if icmp_type == ICMP_TIME_EXCEEDED {
            DropReason::TtlExceeded
        } else {
            DropReason::NoRoute
        };
        let is_error = pk.ip.proto == PROTO_ICMP && {
            let b = p.bytes();
            pk.ip.l4 < pk.ip.end && !matches!(b[pk.ip.l4], 0 | 8)
        };
        if is_error
            || pk.ip.is_later_fragment
            || pk.ip.src.is_unspecified()
            || pk.ip.src.is_broadcast()
        {
            return Verdict::Drop(reason);
        }
        let ifc = &self.snap.interfaces[usize::from(pk.in_if.0)];
        // From our address on the sender's subnet (one-arm gateway has several), else primary.
        let from = std::iter::once(&ifc.net)
            .chain(&ifc.secondary)
            .find(|c| c.contains(pk.ip.src))
            .map_or(ifc.addr, |c| c.addr);
        let mac = ifc.mac;
        if !self
            .icmp_budget
            .take(pk.now, ICMP_ERRORS_PER_S, ICMP_ERRORS_BURST)
        {
            return Verdict::Drop(DropReason::IcmpRateLimited);
        }
        if wire::to_icmp_error(p, pk.l2.l3, &pk.ip, mac, from, icmp_type, code) {
            self.ctr.inc(Ctr::IcmpSent);
            Verdict::Reply
        } else {
            Verdict::Drop(reason)
        }
    }
}

/// ICMP errors one worker may originate per second, and in a burst (Linux's defaults for
/// `icmp_msgs_per_sec` and `icmp_msgs_burst`): a flood of TTL-1 packets gets no more.
pub const ICMP_ERRORS_PER_S: u32 = 1000;
pub const ICMP_ERRORS_BURST: u32 = 50;
