use std::net::Ipv4Addr;

use smoltcp::wire::{IpAddress, Ipv4Packet, UdpPacket};

use super::*;
use crate::testkit::frames::*;
use crate::wire::*;

/// `nat_forward` (one folded update for everything) against the step-by-step path
/// (`decrement_ttl` + `rewrite_ipv4`) and against checksums computed from scratch, on
/// random TCP and UDP packets (UDP with and without a checksum).
#[test]
fn one_pass_nat_matches_step_by_step_and_from_scratch() {
    use smoltcp::wire::{IpAddress, TcpPacket, UdpPacket};
    let mut rnd = xorshift(0x1234_5678_9abc_def1);
    for i in 0..20_000 {
        let udp = i % 2 == 1;
        let payload = (rnd() % 24) as usize;
        let l4len = if udp { 8 } else { 20 } + payload;
        let mut f = vec![0u8; 14 + 20 + l4len];
        f[12] = 8;
        let (src, dst) = (Ipv4Addr::from(rnd() as u32), Ipv4Addr::from(rnd() as u32));
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
            ip.set_version(4);
            ip.set_header_len(20);
            ip.set_total_len((20 + l4len) as u16);
            ip.set_hop_limit(2 + (rnd() % 254) as u8);
            ip.set_ident(rnd() as u16);
            ip.set_next_header(if udp { PROTO_UDP } else { PROTO_TCP }.into());
            ip.set_src_addr(src);
            ip.set_dst_addr(dst);
            ip.fill_checksum();
        }
        for b in &mut f[34..] {
            *b = rnd() as u8;
        }
        let (s, d) = (IpAddress::Ipv4(src), IpAddress::Ipv4(dst));
        if udp {
            let mut u = UdpPacket::new_unchecked(&mut f[34..]);
            u.set_len(l4len as u16);
            u.fill_checksum(&s, &d);
            if i % 6 == 1 {
                u.set_checksum(0); // no checksum
            }
        } else {
            let mut t = TcpPacket::new_unchecked(&mut f[34..]);
            t.set_header_len(20);
            t.fill_checksum(&s, &d);
        }
        let rw = Rewrite {
            src: Some((Ipv4Addr::from(rnd() as u32), rnd() as u16)),
            dst: Some((Ipv4Addr::from(rnd() as u32), rnd() as u16)),
        };
        let end = f.len();
        let mut one = f.clone();
        assert!(nat_forward(&mut one, ETH_HDR, end, &rw));
        // The fast lane's fixed-size form, on every packet that has its bytes (all TCP
        // ones, UDP ones with 10 bytes of payload or more).
        let mut fixed = f.clone();
        match fixed[ETH_HDR..].first_chunk_mut() {
            Some(h) => {
                let (Some((s, sp)), Some((d, dp))) = (rw.src, rw.dst) else {
                    unreachable!()
                };
                nat_apply_fixed(h, udp, (s.into(), sp), (d.into(), dp));
                assert_eq!(&h[..], &one[ETH_HDR..ETH_HDR + NAT_FIXED], "packet {i}");
            }
            None => assert!(udp && f.len() - ETH_HDR < NAT_FIXED, "packet {i}"),
        }
        let mut steps = f.clone();
        assert!(decrement_ttl(&mut steps, ETH_HDR));
        rewrite_ipv4(&mut steps, ETH_HDR, end, true, &rw);
        assert_eq!(one, steps, "packet {i}");
        let ip = Ipv4Packet::new_checked(&one[14..]).unwrap();
        assert!(ip.verify_checksum());
        let (s, d) = (
            IpAddress::Ipv4(ip.src_addr()),
            IpAddress::Ipv4(ip.dst_addr()),
        );
        if udp {
            let u = UdpPacket::new_checked(&one[34..]).unwrap();
            assert!(u.checksum() == 0 || u.verify_checksum(&s, &d), "packet {i}");
            assert_eq!(u.checksum() == 0, i % 6 == 1);
        } else {
            assert!(
                TcpPacket::new_checked(&one[34..])
                    .unwrap()
                    .verify_checksum(&s, &d)
            );
        }
    }
    // What it does not take, it leaves alone.
    let mut f = syn();
    let orig = f.clone();
    f[ETH_HDR + 8] = 1; // TTL would expire
    let want = f.clone();
    let rw = Rewrite {
        src: Some((Ipv4Addr::new(1, 2, 3, 4), 1)),
        dst: Some((Ipv4Addr::new(5, 6, 7, 8), 2)),
    };
    assert!(!nat_forward(&mut f, ETH_HDR, orig.len(), &rw));
    assert_eq!(f, want);
    let mut short = orig.clone();
    assert!(!nat_forward(&mut short, ETH_HDR, ETH_HDR + 30, &rw));
    assert_eq!(short, orig);
}

#[test]
fn incremental_checksum_matches_full_recompute() {
    let mut f = syn_with_tcp_csum();
    assert!(l4_checksum_ok(&f));
    rewrite_ipv4(
        &mut f,
        ETH_HDR,
        54,
        true,
        &Rewrite {
            src: Some((Ipv4Addr::new(10, 20, 0, 10), 61000)),
            dst: Some((Ipv4Addr::new(10, 20, 0, 11), 8080)),
        },
    );
    let ip = parse_ipv4(&f, ETH_HDR).expect("IPv4 checksum still valid");
    assert_eq!(ip.src, Ipv4Addr::new(10, 20, 0, 10));
    let l4 = parse_l4(&f, &ip).unwrap();
    assert_eq!((l4.src_port, l4.dst_port), (61000, 8080));
    assert!(l4_checksum_ok(&f), "TCP checksum updated incrementally");
}

#[test]
fn udp_zero_checksum_stays_zero_and_others_are_updated() {
    let mut f = vec![0u8; 14 + 20 + 8 + 4];
    f[12] = 8;
    f[14..34].copy_from_slice(&[
        0x45, 0, 0, 32, 0, 0, 0, 0, 64, 17, 0, 0, 10, 20, 9, 2, 10, 20, 0, 100,
    ]);
    f[34..42].copy_from_slice(&[0x14, 0xe9, 0, 53, 0, 12, 0, 0]);
    let mut f = with_ip_checksum(f, ETH_HDR);
    let rw = Rewrite {
        src: None,
        dst: Some((Ipv4Addr::new(10, 20, 1, 11), 5353)),
    };
    let mut g = f.clone();
    let n = g.len();
    rewrite_ipv4(&mut g, ETH_HDR, n, true, &rw);
    assert_eq!(&g[40..42], &[0, 0], "zero UDP checksum means none");
    // With a real checksum it is updated.
    {
        let ip = parse_ipv4(&f, ETH_HDR).unwrap();
        let mut u = UdpPacket::new_unchecked(&mut f[ip.l4..ip.end]);
        u.fill_checksum(&IpAddress::Ipv4(ip.src), &IpAddress::Ipv4(ip.dst));
    }
    let n = f.len();
    rewrite_ipv4(&mut f, ETH_HDR, n, true, &rw);
    let ip = parse_ipv4(&f, ETH_HDR).unwrap();
    let u = UdpPacket::new_checked(&f[ip.l4..ip.end]).unwrap();
    assert!(u.verify_checksum(&IpAddress::Ipv4(ip.src), &IpAddress::Ipv4(ip.dst)));
    assert_eq!(u.dst_port(), 5353);
}
