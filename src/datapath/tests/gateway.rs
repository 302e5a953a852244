use std::net::Ipv4Addr;

use super::*;
use crate::stats::Ctr;
use crate::types::{IfIdx, Verdict};
use crate::wire::{ETH_HDR, ICMP_TIME_EXCEEDED, PROTO_ICMP, PROTO_TCP, parse_ipv4};

#[test]
fn gateway_dnats_in_and_reverse_nats_replies() {
    let mut d = datapath_in(Mode::Gateway);
    let mut f = pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, SYN);
    d.process(&mut f, IfIdx(0), 0, false);
    let (src, sport, backend, _) = tuple(&f);
    assert_eq!((src, sport), (CLIENT, 40000), "backends see the client");
    assert!(l4_checksum_ok(&f));
    let mut r = pkt(backend, CLIENT, 80, 40000, PROTO_TCP, SYN | ACK);
    assert_eq!(
        d.process(&mut r, IfIdx(0), 1, false),
        Verdict::Forward(IfIdx(0))
    );
    assert_eq!(tuple(&r), (VIP, 80, CLIENT, 40000));
    assert!(l4_checksum_ok(&r));
}

#[test]
fn gateway_routes_server_traffic_and_answers_ttl_expiry() {
    let mut d = datapath_in(Mode::Gateway);
    let server = Ipv4Addr::new(10, 20, 1, 11);
    let mut f = pkt(server, CLIENT, 5555, 22, PROTO_TCP, SYN);
    assert_eq!(
        d.process(&mut f, IfIdx(0), 0, false),
        Verdict::Forward(IfIdx(0))
    );
    assert_eq!(&f[0..6], &ROUTER_MAC);
    assert_eq!(
        tuple(&f),
        (server, 5555, CLIENT, 22),
        "routed, not translated"
    );
    assert_eq!(d.ctr.get(Ctr::Routed), 1);
    // TTL 1: time exceeded back to the server, from our address on its subnet's port.
    let mut g = pkt(server, CLIENT, 5556, 22, PROTO_TCP, SYN);
    g[14 + 8] = 1;
    let mut g = with_ip_checksum(g, ETH_HDR);
    assert_eq!(d.process(&mut g, IfIdx(0), 0, false), Verdict::Reply);
    let ip = parse_ipv4(&g, ETH_HDR).unwrap();
    assert_eq!((ip.dst, ip.proto), (server, PROTO_ICMP));
    assert_eq!(g[ip.l4], ICMP_TIME_EXCEEDED);
}
