//! Gateway (destination NAT): client:cport -> VIP:vport becomes client:cport ->
//! backend:bport; the backends route through the balancer, so their replies
//! (backend:bport -> client:cport) arrive here and become VIP:vport -> client:cport. Backends
//! see the client's real address. Everything else the servers send is routed (see `lb::route`
//! and the datapath's transit path).

use std::net::Ipv4Addr;

use super::{Xmit, nat};
use crate::flow::{Conn, Dir, FlowKey};
use crate::lb::Backend;
use crate::types::Verdict;
use crate::wire::Rewrite;

/// The tuple the backend's replies carry.
pub fn reverse_tuple(
    backend: Ipv4Addr,
    bport: u16,
    client: Ipv4Addr,
    cport: u16,
    proto: u8,
) -> FlowKey {
    FlowKey::new(backend, client, bport, cport, proto)
}

/// The conn with its reverse tuple: the backend's replies to the client.
pub fn open(conn: Conn, b: &Backend) -> Conn {
    let rev = reverse_tuple(
        b.addr,
        b.port,
        Ipv4Addr::from(conn.client),
        conn.cport,
        conn.proto,
    );
    conn.with_reverse(&rev)
}

#[inline]
pub fn xmit(frame: &mut [u8], x: &Xmit<'_>) -> Verdict {
    nat::xmit(frame, x)
}

/// ICMP errors: the backend sees the client's own address, so only the VIP side changes.
pub fn icmp_rewrites(c: &Conn, backend: (u32, u16), dir: Dir) -> (Rewrite, Rewrite) {
    nat::icmp_rewrites(c, backend, dir, false)
}
