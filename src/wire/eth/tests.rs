use super::*;
use crate::testkit::frames::*;
use crate::wire::*;

#[test]
fn vlan_tag_is_seen_through() {
    let f = syn();
    let mut t = f[..12].to_vec();
    t.extend_from_slice(&[0x81, 0x00, 0x00, 0x2a]);
    t.extend_from_slice(&f[12..]);
    let l2 = parse_l2(&t).unwrap();
    assert_eq!(l2.vlan, Some(42));
    assert_eq!(l2.l3, 18);
    assert!(parse_ipv4(&t, l2.l3).is_ok());
}

#[test]
fn truncated_frames_are_sorted_by_reason() {
    let f = syn();
    assert_eq!(parse_l2(&f[..10]), Err(DropReason::TruncatedEthernet));
    assert_eq!(
        parse_ipv4(&f[..ETH_HDR + 10], ETH_HDR),
        Err(DropReason::TruncatedIpv4)
    );
    // Total length claims more than the frame holds.
    assert_eq!(
        parse_ipv4(&f[..f.len() - 4], ETH_HDR),
        Err(DropReason::BadIpv4Length)
    );
    // TCP header cut short (total length fixed to match, checksum recomputed).
    let mut t = f[..ETH_HDR + 20 + 10].to_vec();
    t[ETH_HDR + 3] = 30;
    let t = with_ip_checksum(t, ETH_HDR);
    let ip = parse_ipv4(&t, ETH_HDR).unwrap();
    assert_eq!(parse_l4(&t, &ip), Err(DropReason::TruncatedL4));
}

#[test]
fn vlan_tags_are_added_changed_and_removed() {
    let orig = with_ip_checksum(TCP_SYN.to_vec(), ETH_HDR);
    let mut f = orig.clone();
    assert_eq!(retag(&mut f, None, Some(5)), Some(18));
    assert_eq!(parse_l2(&f).unwrap().vlan, Some(5));
    assert_eq!(retag(&mut f, Some(5), Some(6)), Some(18));
    assert_eq!(parse_l2(&f).unwrap().vlan, Some(6));
    assert_eq!(retag(&mut f, Some(6), None), Some(14));
    assert_eq!(f, orig);
}
