use super::*;
use crate::flow::{Conn, Dir, FlowState};
use crate::testkit::frames::{TCP_SYN, with_ip_checksum};
use crate::types::IfIdx;
use crate::wire::{ETH_HDR, parse_ipv4, parse_l4};

#[test]
fn proxy_translates_both_directions() {
    let mut f = with_ip_checksum(TCP_SYN.to_vec(), ETH_HDR);
    let ip = parse_ipv4(&f, ETH_HDR).unwrap();
    let l4 = parse_l4(&f, &ip).unwrap();
    let fwd = FlowKey::new(ip.src, ip.dst, l4.src_port, l4.dst_port, 6);
    let rev = reverse_tuple(
        Ipv4Addr::new(10, 20, 0, 11),
        8080,
        Ipv4Addr::new(10, 20, 0, 10),
        1024,
        6,
    );
    let conn = Conn::new(&fwd, FlowState::TcpSyn, 0, 0).with_reverse(&rev);
    let mut x = Xmit {
        conn: &conn,
        dir: Dir::Forward,
        l3: ETH_HDR,
        end: ip.end,
        has_l4: true,
        egress: IfIdx(0),
        egress_mac: [2, 0, 0, 0, 0, 0x10],
        next_hop_mac: [2, 0, 0, 0, 0, 0x11],
        backend: (u32::from(Ipv4Addr::new(10, 20, 0, 11)), 8080),
    };
    assert_eq!(xmit(&mut f, &x), Verdict::Forward(IfIdx(0)));
    let ip2 = parse_ipv4(&f, ETH_HDR).unwrap();
    let l42 = parse_l4(&f, &ip2).unwrap();
    assert_eq!(
        (ip2.src, l42.src_port),
        (Ipv4Addr::new(10, 20, 0, 10), 1024)
    );
    assert_eq!(
        (ip2.dst, l42.dst_port),
        (Ipv4Addr::new(10, 20, 0, 11), 8080)
    );
    // The backend's reply, mirrored, goes back to the client from the VIP.
    let mut r = f.clone();
    crate::wire::rewrite_ipv4(
        &mut r,
        ETH_HDR,
        ip2.end,
        true,
        &crate::wire::Rewrite {
            src: Some((ip2.dst, l42.dst_port)),
            dst: Some((ip2.src, l42.src_port)),
        },
    );
    x.dir = Dir::Reverse;
    xmit(&mut r, &x);
    let ip3 = parse_ipv4(&r, ETH_HDR).unwrap();
    let l43 = parse_l4(&r, &ip3).unwrap();
    assert_eq!((ip3.src, l43.src_port), (Ipv4Addr::new(10, 20, 0, 100), 80));
    assert_eq!(
        (ip3.dst, l43.dst_port),
        (Ipv4Addr::new(10, 20, 9, 2), 40000)
    );
}
