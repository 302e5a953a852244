use std::net::Ipv4Addr;

use super::*;
use crate::wire::*;

#[test]
fn arp_request_becomes_reply_in_place() {
    let mut f = vec![0u8; ARP_FRAME_LEN];
    let router_mac = [2, 0, 0, 0, 0, 1];
    build_arp_request(
        &mut f,
        None,
        router_mac,
        Ipv4Addr::new(10, 20, 0, 1),
        Ipv4Addr::new(10, 20, 0, 100),
    );
    let req = parse_arp(&f, ETH_HDR).unwrap();
    assert!(req.is_request);
    assert_eq!(req.target_ip, Ipv4Addr::new(10, 20, 0, 100));
    let ours = [2, 0, 0, 0, 0, 0x10];
    arp_request_to_reply(&mut f, ETH_HDR, &req, ours);
    let rep = parse_arp(&f, ETH_HDR).unwrap();
    assert!(!rep.is_request);
    assert_eq!(rep.sender_mac, ours);
    assert_eq!(rep.sender_ip, Ipv4Addr::new(10, 20, 0, 100));
    assert_eq!(rep.target_ip, Ipv4Addr::new(10, 20, 0, 1));
    assert_eq!(&f[0..6], &router_mac);
}

#[test]
fn malformed_arp_is_rejected() {
    let mut f = vec![0u8; ARP_FRAME_LEN];
    build_arp_request(
        &mut f,
        None,
        [2; 6],
        Ipv4Addr::LOCALHOST,
        Ipv4Addr::LOCALHOST,
    );
    assert_eq!(parse_arp(&f[..30], ETH_HDR), Err(DropReason::MalformedArp));
    f[ETH_HDR + 5] = 16; // protocol length 16: not IPv4
    assert_eq!(parse_arp(&f, ETH_HDR), Err(DropReason::MalformedArp));
}

#[test]
fn vlan_arp_request_is_tagged() {
    let mut f = vec![0u8; arp_frame_len(Some(7))];
    build_arp_request(
        &mut f,
        Some(7),
        [2; 6],
        Ipv4Addr::LOCALHOST,
        Ipv4Addr::LOCALHOST,
    );
    let l2 = parse_l2(&f).unwrap();
    assert_eq!((l2.vlan, l2.ethertype), (Some(7), ETHERTYPE_ARP));
    assert!(parse_arp(&f, l2.l3).is_ok());
}
