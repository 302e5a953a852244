use std::net::Ipv4Addr;

use super::*;
use crate::types::{DropReason, IfIdx, Verdict};
use crate::wire;
use crate::wire::{ETH_HDR, ICMP_UNREACH, PROTO_TCP, PROTO_UDP, parse_ipv4};

#[test]
fn proxy_translates_both_ways_with_valid_checksums() {
    let mut c = config(Mode::Proxy);
    c.interfaces[0].exception_path = true;
    let (mut d, _) = datapath(&c, 1, 0);
    let mut f = pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, SYN);
    assert_eq!(
        d.process(&mut f, IfIdx(0), 0, false),
        Verdict::Forward(IfIdx(0))
    );
    let (src, lport, dst, bport) = tuple(&f);
    assert_eq!(
        src,
        Ipv4Addr::new(10, 20, 0, 10),
        "source is the interface (SNAT) address"
    );
    assert_eq!(bport, 80);
    assert!(dst == Ipv4Addr::new(10, 20, 1, 11) || dst == Ipv4Addr::new(10, 20, 1, 12));
    assert!(l4_checksum_ok(&f));
    assert_eq!(parse_ipv4(&f, ETH_HDR).unwrap().id, 0);
    assert_eq!(f[14 + 8], 63, "TTL decremented");
    // The backend answers the SNAT address; the client gets it from the VIP.
    let mut r = pkt(dst, src, 80, lport, PROTO_TCP, SYN | ACK);
    r[0..6].copy_from_slice(&LB_MAC);
    assert_eq!(
        d.process(&mut r, IfIdx(0), 1, false),
        Verdict::Forward(IfIdx(0))
    );
    assert_eq!(tuple(&r), (VIP, 80, CLIENT, 40000));
    assert!(l4_checksum_ok(&r));
    assert_eq!(
        &r[0..6],
        &ROUTER_MAC,
        "client is reached through the default route"
    );
    // Unknown local port: no conn, so it is the kernel's (the exception path).
    let mut x = pkt(dst, src, 80, lport.wrapping_add(1), PROTO_TCP, ACK);
    assert_eq!(d.process(&mut x, IfIdx(0), 1, false), Verdict::ToKernel);
}

#[test]
fn proxy_snat_exhaustion_refuses_new_flows_and_keeps_old_ones() {
    let mut c = config(Mode::Proxy);
    c.nat.port_min = 2000;
    c.nat.port_max = 2002;
    let (mut d, _) = datapath(&c, 1, 0);
    let mut ok = Vec::new();
    for p in 0..5u16 {
        let mut f = pkt(CLIENT, VIP, 41000 + p, 80, PROTO_TCP, SYN);
        match d.process(&mut f, IfIdx(0), 0, false) {
            Verdict::Forward(_) => ok.push((p, tuple(&f))),
            Verdict::Drop(DropReason::SnatExhausted) => {}
            v => panic!("{v:?}"),
        }
    }
    assert_eq!(ok.len(), 3);
    assert_eq!(d.ctr.dropped(DropReason::SnatExhausted), 2);
    for (p, t) in &ok {
        let mut f = pkt(CLIENT, VIP, 41000 + p, 80, PROTO_TCP, ACK);
        assert_eq!(
            d.process(&mut f, IfIdx(0), 5, false),
            Verdict::Forward(IfIdx(0))
        );
        assert_eq!(tuple(&f), *t, "established conn keeps its port");
    }
}

#[test]
fn icmp_port_unreachable_from_a_proxy_backend_reaches_the_client() {
    let mut d = datapath_in(Mode::Proxy);
    let mut q = pkt(CLIENT, VIP, 5353, 53, PROTO_UDP, 0);
    d.process(&mut q, IfIdx(0), 0, false);
    let (snat, lport, backend, _) = tuple(&q);
    // The backend rejects the datagram: ICMP port unreachable quoting what it received.
    let ip = parse_ipv4(&q, ETH_HDR).unwrap();
    let mut e = q.clone();
    e[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 0x11]);
    assert!(wire::to_icmp_error(
        &mut e,
        ETH_HDR,
        &ip,
        [2, 0, 0, 0, 0, 0x11],
        backend,
        ICMP_UNREACH,
        3
    ));
    e[0..6].copy_from_slice(&LB_MAC);
    let e_ip = parse_ipv4(&e, ETH_HDR).unwrap();
    assert_eq!(e_ip.dst, snat);
    assert_eq!(
        d.process(&mut e, IfIdx(0), 1, false),
        Verdict::Forward(IfIdx(0))
    );
    let out = parse_ipv4(&e, ETH_HDR).unwrap();
    assert_eq!((out.src, out.dst), (VIP, CLIENT));
    let err = wire::parse_icmp_error(&e, &out).unwrap();
    assert_eq!((err.inner_src, err.inner_sport), (CLIENT, 5353));
    assert_eq!((err.inner_dst, err.inner_dport), (VIP, 53));
    assert!(
        smoltcp::wire::Icmpv4Packet::new_checked(&e[out.l4..out.end])
            .unwrap()
            .verify_checksum()
    );
    let _ = lport;
}
