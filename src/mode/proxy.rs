//! Proxy (full NAT): client:cport -> VIP:vport becomes snat:lport -> backend:bport, and the
//! backend's replies (backend:bport -> snat:lport) become VIP:vport -> client:cport. The local
//! (SNAT) address belongs to the interface that reaches the backend; the local port comes from
//! the owner core's slice of the NAT port range (see `nat`). Backends see the balancer's
//! address, so they need no special routing.

use std::net::Ipv4Addr;

use super::snat::SnatPortPool;
use super::{Xmit, nat};
use crate::flow::{Conn, Dir, FlowKey, flags};
use crate::lb::{Backend, Snapshot};
use crate::types::{DropReason, SnatIdx, Verdict};
use crate::wire::Rewrite;

/// The tuple the backend's replies carry.
pub fn reverse_tuple(
    backend: Ipv4Addr,
    bport: u16,
    snat: Ipv4Addr,
    lport: u16,
    proto: u8,
) -> FlowKey {
    FlowKey::new(backend, snat, bport, lport, proto)
}

/// The conn with a local (SNAT) address and port of the interface that reaches `b`, and its
/// reverse tuple; `SnatExhausted` when that interface has no port left on this worker.
/// `flow_hash` picks which of the interface's SNAT addresses is tried first.
pub fn open(
    mut conn: Conn,
    b: &Backend,
    snap: &Snapshot,
    snat: &mut SnatPortPool,
    flow_hash: u64,
) -> Result<Conn, DropReason> {
    let cands = &snap.interfaces[usize::from(b.iface.0)].snat;
    let Some((idx, lport)) = snat.alloc(cands, (flow_hash >> 48) as usize) else {
        return Err(DropReason::SnatExhausted);
    };
    let (snat_ip, _) = snap.snat[usize::from(idx.0)];
    let rev = reverse_tuple(b.addr, b.port, snat_ip, lport, conn.proto);
    conn = conn.with_reverse(&rev);
    conn.flags |= flags::SNAT;
    conn.snat_idx = idx.0;
    Ok(conn)
}

/// Gives back the conn's SNAT port, if it holds one.
#[inline]
pub fn close(c: &Conn, snat: &mut SnatPortPool) {
    if c.flags & flags::SNAT != 0 {
        snat.free(SnatIdx(c.snat_idx), c.rev_dport);
    }
}

#[inline]
pub fn xmit(frame: &mut [u8], x: &Xmit<'_>) -> Verdict {
    nat::xmit(frame, x)
}

/// ICMP errors: the backend knows the conn by its SNAT address, so both sides change.
pub fn icmp_rewrites(c: &Conn, backend: (u32, u16), dir: Dir) -> (Rewrite, Rewrite) {
    nat::icmp_rewrites(c, backend, dir, true)
}

#[cfg(test)]
mod tests;
