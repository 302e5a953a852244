//! An IPv4 packet's way to its conn: ICMP, fragments and other protocols sent to their own
//! paths; TCP and UDP handed to the core that owns their conn, looked up, or (to a VIP) given
//! a new conn, whose backend the service's persistence or scheduler picks and whose reverse
//! tuple its mode builds.

use super::frag::FragAction;
use super::{Datapath, Pkt};
use crate::config::Mode;
use crate::flow::{Conn, ConnId, Dir, FlowKey, FlowState, flags};
use crate::lb::LocalKind;
use crate::mode;
use crate::stats::Ctr;
use crate::types::{DropReason, IfIdx, PacketBuf, Verdict};
use crate::wire::{self, L2, PROTO_ICMP, PROTO_TCP, PROTO_UDP};

impl Datapath {
    /// An IPv4 frame that arrived on `in_if` (or was handed over by another worker when
    /// `steered`): validated, then sorted onto its path.
    pub(super) fn ipv4<P: PacketBuf>(
        &mut self,
        p: &mut P,
        l2: L2,
        in_if: IfIdx,
        now: u32,
        steered: bool,
    ) -> Verdict {
        let ip = match wire::parse_ipv4(p.bytes(), l2.l3) {
            Ok(ip) => ip,
            Err(r) => return Verdict::Drop(r),
        };
        let pk = Pkt {
            l2,
            ip,
            in_if,
            now,
            steered,
        };
        let local = self.snap.local(ip.dst).map(|(_, k)| k);
        if local == Some(LocalKind::Standby) {
            // A floating address the HA peer owns now: not ours to answer or balance.
            return Verdict::Drop(DropReason::NotOwner);
        }
        if ip.is_fragment {
            self.ctr.inc(Ctr::Fragments);
        }
        if ip.proto == PROTO_ICMP && !ip.is_fragment {
            return self.icmp(p, &pk, local);
        }
        if ip.is_later_fragment {
            return self.later_fragment(p, &pk, local);
        }
        if ip.proto != PROTO_TCP && ip.proto != PROTO_UDP {
            return match local {
                Some(LocalKind::Interface) if self.kernel(in_if) => Verdict::ToKernel,
                Some(_) if ip.is_fragment => Verdict::Drop(DropReason::Fragment),
                Some(_) => Verdict::Drop(DropReason::LocalNotHandled),
                None => self.route(p, &pk),
            };
        }
        self.l4(p, &pk, local)
    }

    /// TCP or UDP: handed to the worker that owns its conn, or its conn looked up (created,
    /// for a new flow to a VIP) and the packet sent on; unbalanced traffic to our own
    /// addresses goes to the kernel, the rest is routed or dropped.
    fn l4<P: PacketBuf>(&mut self, p: &mut P, pk: &Pkt, local: Option<LocalKind>) -> Verdict {
        let ip = &pk.ip;
        let l4 = match wire::parse_l4(p.bytes(), ip) {
            Ok(l4) => l4,
            Err(r) => return Verdict::Drop(r),
        };
        if local == Some(LocalKind::Dns) {
            return self.dns(p, pk, &l4);
        }
        let key = FlowKey::new(ip.src, ip.dst, l4.src_port, l4.dst_port, ip.proto);
        // The service of a packet to a VIP.
        let service = match local {
            Some(LocalKind::Vip) => match self.snap.service(ip.dst, l4.dst_port, ip.proto) {
                None => return Verdict::Drop(DropReason::NoService),
                // The access list, on every packet to the VIP (services with one take this
                // path, not the fast lane): a reload that narrows it cuts live conns too.
                Some(si)
                    if self.snap.services[usize::from(si)]
                        .acl
                        .as_ref()
                        .is_some_and(|a| !a.permits(ip.src)) =>
                {
                    return Verdict::Drop(DropReason::AclDenied);
                }
                s => s,
            },
            _ => None,
        };
        // Which worker owns the conn this packet belongs to (NAT conns only; see `handover`).
        let owner = match self.owner(&key, local, service) {
            Ok(o) => o,
            Err(r) => return Verdict::Drop(r),
        };
        if let Some(o) = owner
            && o != self.me.index
            && !pk.steered
        {
            if ip.is_fragment {
                let a = FragAction::Steer(o as u16);
                self.frags
                    .remember(key.src, key.dst, ip.id, ip.proto, a, pk.now);
            }
            return Verdict::Steer(o as u16);
        }
        // `pre_parse` hashed this very tuple already: no need to hash twice.
        let hash = self.hash_hint.take().unwrap_or_else(|| key.hash());
        debug_assert_eq!(hash, key.hash());
        let hit = match self.lookup(&key, hash, pk.now) {
            Some((id, _)) if self.synproxy_reuse(id, &l4.tcp, pk.now) => None,
            hit => hit,
        };
        // Whether this packet made its conn: its state is then what the packet says
        // (`first_state`), not a step of the state machine.
        let made = hit.is_none();
        let (id, dir) = match (hit, local, service) {
            (Some(h), _, _) => h,
            (None, _, Some(si)) => {
                if ip.proto == PROTO_TCP
                    && let Some(v) = self.synproxy_new(p, pk, &key, si, hash)
                {
                    return v;
                }
                let state = first_state(ip.proto, &l4.tcp);
                match self.new_conn(si, &key, hash, state, pk.now) {
                    Ok(id) => (id, Dir::Forward),
                    // GSLB: no backend here, so the site itself answers with a redirect to a
                    // peer site (management's HTTP server on the kernel side).
                    Err(DropReason::NoBackend)
                        if ip.proto == PROTO_TCP
                            && self.snap.services[usize::from(si)].redirect
                            && self.kernel(pk.in_if) =>
                    {
                        return Verdict::ToKernel;
                    }
                    Err(r) => return Verdict::Drop(r),
                }
            }
            (None, Some(LocalKind::Interface), _) if self.kernel(pk.in_if) => {
                return Verdict::ToKernel;
            }
            (None, Some(LocalKind::Snat), _) => return Verdict::Drop(DropReason::NoFlow),
            // Our own address (a VIP's packets have a service by now).
            (None, Some(_), _) => return Verdict::Drop(DropReason::LocalNotHandled),
            (None, None, _) => return self.route(p, pk),
        };
        if ip.is_fragment {
            let a = FragAction::Conn(key);
            self.frags
                .remember(key.src, key.dst, ip.id, ip.proto, a, pk.now);
        }
        let c = self.flows.conn_mut(id);
        let service = c.service;
        if !self.snap.services[usize::from(service)].owned {
            // A conn synced from the HA peer, whose VIP the peer owns now.
            return Verdict::Drop(DropReason::NotOwner);
        }
        if c.flags & flags::SEQ_ADJ != 0 {
            return self.synproxy_conn(p, pk, id, dir);
        }
        c.touch(pk.now);
        if ip.proto == PROTO_TCP
            && !made
            && self.flows.track_tcp(id, p.bytes()[ip.l4 + 13], dir)
            && self.sync.is_some()
        {
            self.sync_conn(id, pk.now);
        }
        self.send(p, pk, id, dir, true)
    }

    /// Whether a new flow may come from `src`: not a martian, not one of our own addresses
    /// (spoofed).
    pub(super) fn admissible_source(&self, src: u32) -> Result<(), DropReason> {
        if martian(std::net::Ipv4Addr::from(src)) || self.snap.local(src.into()).is_some() {
            return Err(DropReason::MartianSource);
        }
        Ok(())
    }

    /// Creates the conn, in `state`, for a new flow to service `si`: the source admitted,
    /// the service's new-flow limits taken, the backend as `lb` selects it, the rest as the
    /// service's mode opens it; under pressure a half-open conn makes room.
    pub(super) fn new_conn(
        &mut self,
        si: u16,
        key: &FlowKey,
        hash: u64,
        state: FlowState,
        now: u32,
    ) -> Result<ConnId, DropReason> {
        self.admissible_source(key.src)?;
        self.limits
            .admit(&self.snap, si, key.src, now, self.me.count)?;
        let snap = &*self.snap;
        let backend = self.select.select(snap, si, key.src, hash, now)?;
        let svc = &snap.services[usize::from(si)];
        let b = &snap.backends[backend.0 as usize];
        let conn_mode = snap.conn_mode(si, backend.0);
        // A mid-flow TCP segment of a full-NAT conn cannot be adopted: the conn's SNAT
        // tuple was chosen by another node (or before a restart), and a new one would reach
        // the backend as a stranger.
        if conn_mode == Mode::Proxy && state == FlowState::TcpAdopted {
            return Err(DropReason::NatMidflow);
        }
        let persistent = svc.persistence.is_some();
        let conn = Conn::new(key, state, si, backend.0);
        let conn = mode::open(conn_mode, conn, b, snap, &mut self.snat, hash)?;
        let inserted = self.with_reclaim(now, |flows, _, reclaim| {
            flows.insert_evicting(conn, now, &mut { reclaim })
        });
        match inserted {
            Ok(id) => {
                self.select.opened(backend);
                self.svc_ctr.flow(si, backend.0);
                if self.sync.is_some() {
                    self.sync_conn(id, now);
                    if persistent {
                        self.sync_template(si, key.src, backend, now);
                    }
                }
                Ok(id)
            }
            Err(_) => {
                mode::close(&conn, &mut self.snat);
                Err(DropReason::FlowTableFull)
            }
        }
    }
}

/// The state a conn starts in from its first packet: a TCP segment other than a SYN (or a
/// FIN/RST) is adopted, half-open, until the flow shows it is real.
fn first_state(proto: u8, tcp: &wire::TcpFlags) -> FlowState {
    if proto == PROTO_UDP {
        FlowState::Udp
    } else if tcp.rst || tcp.fin {
        FlowState::TcpClosing
    } else if tcp.syn && !tcp.ack {
        FlowState::TcpSyn
    } else {
        // A flow first seen mid-stream (restart, ECMP change).
        FlowState::TcpAdopted
    }
}

/// A source no client can have (RFC 1812 5.3.7 and RFC 6890): "this network" 0/8, loopback,
/// multicast, the reserved class E and the limited broadcast.
fn martian(a: std::net::Ipv4Addr) -> bool {
    let o = a.octets();
    o[0] == 0 || a.is_loopback() || a.is_multicast() || o[0] >= 240
}
