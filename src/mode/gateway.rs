//! Gateway (destination NAT): client:cport -> VIP:vport becomes client:cport ->
//! backend:bport; the backends route through the balancer, so their replies
//! (backend:bport -> client:cport) arrive here and become VIP:vport -> client:cport. Backends
//! see the client's real address. Everything else the servers send is routed (see `lb::route`
//! and the datapath's transit path).

use std::net::Ipv4Addr;

use super::{Xmit, nat_xmit};
use crate::flow::FlowKey;
use crate::types::Verdict;

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

#[inline]
pub fn xmit(frame: &mut [u8], x: &Xmit<'_>) -> Verdict {
    nat_xmit(frame, x)
}
