use std::net::Ipv4Addr;

use smoltcp::wire::{Icmpv4Message, Icmpv4Packet};

use super::*;
use crate::testkit::frames::*;
use crate::wire::*;

#[test]
fn echo_request_becomes_reply() {
    // 10.20.9.2 -> 10.20.0.100 echo request id 1 seq 1, 4 bytes payload.
    let mut f = vec![
        0x02, 0, 0, 0, 0, 0x10, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00, 0x45, 0, 0, 32, 0, 7, 0, 0, 63,
        1, 0, 0, 10, 20, 9, 2, 10, 20, 0, 100, 8, 0, 0, 0, 0, 1, 0, 1, b'a', b'b', b'c', b'd',
    ];
    {
        let mut i = Icmpv4Packet::new_unchecked(&mut f[34..]);
        i.fill_checksum();
    }
    let f0 = with_ip_checksum(f.clone(), ETH_HDR);
    f = f0;
    let ip = parse_ipv4(&f, ETH_HDR).unwrap();
    icmp_echo_to_reply(&mut f, ETH_HDR, &ip, [2, 0, 0, 0, 0, 0x10]).unwrap();
    let ip2 = parse_ipv4(&f, ETH_HDR).unwrap();
    assert_eq!(ip2.src, Ipv4Addr::new(10, 20, 0, 100));
    assert_eq!(ip2.dst, Ipv4Addr::new(10, 20, 9, 2));
    let icmp = Icmpv4Packet::new_checked(&f[34..]).unwrap();
    assert_eq!(icmp.msg_type(), Icmpv4Message::EchoReply);
    assert!(icmp.verify_checksum());
    assert_eq!(&f[0..6], &[2, 0, 0, 0, 0, 1]);
    // A corrupted request is refused, not answered.
    let mut bad = f.clone();
    bad[34] = 8;
    bad[40] ^= 1;
    let ip = parse_ipv4(&bad, ETH_HDR).unwrap();
    assert_eq!(
        icmp_echo_to_reply(&mut bad, ETH_HDR, &ip, [2; 6]),
        Err(DropReason::BadIcmpChecksum)
    );
}

#[test]
fn icmp_error_is_built_and_parsed_back() {
    let mut f = syn_with_tcp_csum();
    let ip = parse_ipv4(&f, ETH_HDR).unwrap();
    let us = Ipv4Addr::new(10, 20, 0, 10);
    assert!(to_icmp_error(
        &mut f,
        ETH_HDR,
        &ip,
        [2, 0, 0, 0, 0, 0x10],
        us,
        ICMP_TIME_EXCEEDED,
        0
    ));
    assert_eq!(f.len(), 14 + 20 + 8 + 28);
    let e_ip = parse_ipv4(&f, ETH_HDR).unwrap();
    assert_eq!((e_ip.src, e_ip.dst, e_ip.proto), (us, ip.src, PROTO_ICMP));
    let icmp = Icmpv4Packet::new_checked(&f[e_ip.l4..e_ip.end]).unwrap();
    assert!(icmp.verify_checksum());
    let e = parse_icmp_error(&f, &e_ip).unwrap();
    assert_eq!((e.inner_src, e.inner_dst), (ip.src, ip.dst));
    assert_eq!((e.inner_sport, e.inner_dport), (40000, 80));
    // Translating it keeps every checksum valid.
    let outer = Rewrite {
        src: None,
        dst: Some((Ipv4Addr::new(10, 20, 0, 11), 0)),
    };
    let inner = Rewrite {
        src: Some((Ipv4Addr::new(10, 20, 0, 11), 8080)),
        dst: None,
    };
    rewrite_icmp_error(&mut f, ETH_HDR, &e_ip, &e, &outer, &inner);
    let e_ip = parse_ipv4(&f, ETH_HDR).unwrap();
    assert_eq!(e_ip.dst, Ipv4Addr::new(10, 20, 0, 11));
    let e2 = parse_icmp_error(&f, &e_ip).unwrap();
    assert_eq!(
        (e2.inner_src, e2.inner_sport),
        (Ipv4Addr::new(10, 20, 0, 11), 8080)
    );
    assert!(
        Icmpv4Packet::new_checked(&f[e_ip.l4..e_ip.end])
            .unwrap()
            .verify_checksum()
    );
}
