use std::net::Ipv4Addr;

use super::*;
use crate::testkit::frames::*;
use crate::wire::*;

#[test]
fn valid_syn_parses() {
    let f = syn();
    let l2 = parse_l2(&f).unwrap();
    assert_eq!(l2.ethertype, ETHERTYPE_IPV4);
    let ip = parse_ipv4(&f, l2.l3).unwrap();
    assert_eq!(ip.dst, Ipv4Addr::new(10, 20, 0, 100));
    assert_eq!(ip.proto, PROTO_TCP);
    let l4 = parse_l4(&f, &ip).unwrap();
    assert_eq!((l4.src_port, l4.dst_port), (40000, 80));
    assert!(l4.tcp.syn && !l4.tcp.ack);
}

#[test]
fn bad_ihl_and_version_are_rejected() {
    let mut f = syn();
    f[ETH_HDR] = 0x44;
    assert_eq!(parse_ipv4(&f, ETH_HDR), Err(DropReason::BadIpv4Header));
    f[ETH_HDR] = 0x65;
    assert_eq!(parse_ipv4(&f, ETH_HDR), Err(DropReason::BadIpv4Header));
    // IHL says 60 bytes of header, more than the 40-byte packet.
    f[ETH_HDR] = 0x4f;
    assert_eq!(parse_ipv4(&f, ETH_HDR), Err(DropReason::TruncatedIpv4));
    // IHL 24 is fine for the frame but larger than the total length 20.
    f[ETH_HDR] = 0x46;
    f[ETH_HDR + 3] = 20;
    assert_eq!(parse_ipv4(&f, ETH_HDR), Err(DropReason::BadIpv4Length));
}

#[test]
fn bad_ip_checksum_is_rejected() {
    let mut f = syn();
    f[ETH_HDR + 10] ^= 0xff;
    assert_eq!(parse_ipv4(&f, ETH_HDR), Err(DropReason::BadIpv4Checksum));
}

#[test]
fn ethernet_padding_is_not_ip_payload() {
    let mut f = syn();
    f.extend_from_slice(&[0u8; 6]);
    let ip = parse_ipv4(&f, ETH_HDR).unwrap();
    assert_eq!(ip.end, 54);
}

#[test]
fn fragments_are_flagged() {
    let mut f = syn();
    f[ETH_HDR + 6] = 0x00;
    f[ETH_HDR + 7] = 0x10; // offset 16*8
    let f = with_ip_checksum(f, ETH_HDR);
    let ip = parse_ipv4(&f, ETH_HDR).unwrap();
    assert!(ip.is_fragment && ip.is_later_fragment);
}

#[test]
fn header_checksum_check_agrees_with_smoltcp_on_random_headers() {
    let mut rnd = xorshift(0x2545_f491_4f6c_dd1d);
    for i in 0..20_000 {
        let mut h = [0u8; 20];
        h.iter_mut().for_each(|b| *b = rnd() as u8);
        // Extremes too: runs of all-zero and all-ones words.
        if i % 7 == 0 {
            h[..18].fill(if i % 2 == 0 { 0xff } else { 0 });
        }
        // The all-zero header (a sum of 0, a multiple of 0xffff too) fails (i % 3 == 0
        // here: no checksum filled in).
        if i % 999 != 0 {
            h[0] = 0x45;
        } else {
            h.fill(0);
        }
        let mut p = smoltcp::wire::Ipv4Packet::new_unchecked(&mut h[..]);
        if i % 3 != 0 {
            p.fill_checksum();
        }
        let want = smoltcp::wire::Ipv4Packet::new_unchecked(&h[..]).verify_checksum();
        assert_eq!(ipv4_header_checksum_ok20(&h), want, "{h:02x?}");
        assert_eq!(ipv4_header_checksum_ok_any(&h), want, "{h:02x?}");
    }
}

#[test]
fn ttl_decrement_keeps_the_checksum_valid_and_stops_at_one() {
    let mut f = with_ip_checksum(TCP_SYN.to_vec(), ETH_HDR);
    f[ETH_HDR + 8] = 2;
    let mut f = with_ip_checksum(f, ETH_HDR);
    assert!(decrement_ttl(&mut f, ETH_HDR));
    assert_eq!(f[ETH_HDR + 8], 1);
    assert!(parse_ipv4(&f, ETH_HDR).is_ok());
    assert!(!decrement_ttl(&mut f, ETH_HDR));
}
