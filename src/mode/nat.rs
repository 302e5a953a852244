//! The NAT modes' shared body (proxy and gateway differ only in the reverse tuple): the
//! translation of a packet of a conn, and of an ICMP error about one.

use std::net::Ipv4Addr;

use super::Xmit;
use crate::flow::{Conn, Dir};
use crate::types::Verdict;
use crate::wire::{Rewrite, decrement_ttl, nat_forward, rewrite_ipv4, set_macs};

/// The address/port rewrite a NAT conn (whose backend is at `backend`) applies to a packet
/// travelling in `dir`.
pub fn nat_rewrite(c: &Conn, backend: (u32, u16), dir: Dir) -> Rewrite {
    let ((src, sport), (dst, dport)) = nat_endpoints(c, backend, dir);
    Rewrite {
        src: Some((Ipv4Addr::from(src), sport)),
        dst: Some((Ipv4Addr::from(dst), dport)),
    }
}

/// [`nat_rewrite`] as plain numbers: ((new source, port), (new destination, port)).
#[inline]
pub fn nat_endpoints(c: &Conn, backend: (u32, u16), dir: Dir) -> ((u32, u16), (u32, u16)) {
    match dir {
        Dir::Forward => ((c.rev_dst, c.rev_dport), backend),
        Dir::Reverse => ((c.vip, c.vport), (c.client, c.cport)),
    }
}

/// A NAT mode's translation of the IPv4 packet at `l3..end`: TTL down by one (the caller
/// checked it stays above zero) and `rw` applied, in one pass for a plain TCP/UDP packet
/// ([`nat_forward`]), else step by step (IP options, later fragments). The full path
/// translates through here; the fast lane, whose packets always qualify for the one pass,
/// calls its arithmetic ([`crate::wire::nat_apply`]) directly.
#[inline]
pub fn nat_translate(frame: &mut [u8], l3: usize, end: usize, has_l4: bool, rw: &Rewrite) {
    if !(has_l4 && nat_forward(frame, l3, end, rw)) {
        decrement_ttl(frame, l3);
        rewrite_ipv4(frame, l3, end, has_l4, rw);
    }
}

/// Translate, then address the frame to the next hop.
#[inline]
pub(super) fn xmit(frame: &mut [u8], x: &Xmit<'_>) -> Verdict {
    let rw = nat_rewrite(x.conn, x.backend, x.dir);
    nat_translate(frame, x.l3, x.end, x.has_l4, &rw);
    set_macs(frame, x.egress_mac, x.next_hop_mac);
    Verdict::Forward(x.egress)
}

/// The translation of an ICMP error about a packet of NAT conn `c` (backend at `backend`)
/// that travels in `dir`: (outer header, quoted packet). `snat`: the backend sees the SNAT
/// address (proxy) rather than the client (gateway).
pub(super) fn icmp_rewrites(
    c: &Conn,
    (baddr, bport): (u32, u16),
    dir: Dir,
    snat: bool,
) -> (Rewrite, Rewrite) {
    match dir {
        // An error about our reply to the client: to the backend, quoting the reply as the
        // backend sent it.
        Dir::Forward => (
            Rewrite {
                src: snat.then(|| (Ipv4Addr::from(c.rev_dst), 0)),
                dst: Some((Ipv4Addr::from(baddr), 0)),
            },
            Rewrite {
                src: Some((Ipv4Addr::from(baddr), bport)),
                dst: Some((Ipv4Addr::from(c.rev_dst), c.rev_dport)),
            },
        ),
        // The backend's error about the client's packet: to the client, from the VIP, quoting
        // the packet as the client sent it.
        Dir::Reverse => (
            Rewrite {
                src: Some((Ipv4Addr::from(c.vip), 0)),
                dst: Some((Ipv4Addr::from(c.client), 0)),
            },
            Rewrite {
                src: Some((Ipv4Addr::from(c.client), c.cport)),
                dst: Some((Ipv4Addr::from(c.vip), c.vport)),
            },
        ),
    }
}
