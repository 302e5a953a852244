//! Forwarding modes, one module each, side by side with one signature as DPVS's `xmit_*`:
//! `xmit(frame, &Xmit) -> Verdict` rewrites the frame in place for one conn and direction.
//! The mode is fixed per service when the snapshot is built; the data plane dispatches once
//! per packet on the service's mode and never re-decides.
//!
//! What differs between modes is the conn's reverse tuple (what the backend side sends back,
//! built by each module's `reverse_tuple`) and whether L3/L4 is rewritten at all. For the two
//! NAT modes the rewrite itself is the same: a forward packet takes the reverse tuple,
//! mirrored; a reverse packet takes the forward tuple, mirrored.

pub mod dsr;
pub mod gateway;
pub mod proxy;
pub mod snat;

use std::net::Ipv4Addr;

use crate::flow::{Conn, Dir};
use crate::types::{IfIdx, Verdict};
use crate::wire::{Rewrite, decrement_ttl, nat_forward, rewrite_ipv4, set_macs};

/// Everything a mode needs to send one packet of one conn.
pub struct Xmit<'a> {
    pub conn: &'a Conn,
    pub dir: Dir,
    /// IPv4 header offset and end (the frame may carry Ethernet padding after `end`).
    pub l3: usize,
    pub end: usize,
    /// False for later fragments: no L4 header to translate.
    pub has_l4: bool,
    pub egress: IfIdx,
    pub egress_mac: [u8; 6],
    pub next_hop_mac: [u8; 6],
    /// The conn's backend (address, port): where its reverse tuple starts.
    pub backend: (u32, u16),
}

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

/// Shared body of the NAT modes: translate, then address the frame to the next hop.
#[inline]
fn nat_xmit(frame: &mut [u8], x: &Xmit<'_>) -> Verdict {
    let rw = nat_rewrite(x.conn, x.backend, x.dir);
    nat_translate(frame, x.l3, x.end, x.has_l4, &rw);
    set_macs(frame, x.egress_mac, x.next_hop_mac);
    Verdict::Forward(x.egress)
}
