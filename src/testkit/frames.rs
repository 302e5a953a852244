//! Frames for tests: built with smoltcp's wire types (an oracle independent of `wire`),
//! checked the same way, and a fixed pseudo-random stream for tests over many packets.

use std::net::Ipv4Addr;

use smoltcp::wire::{IpAddress, Ipv4Packet, TcpPacket, UdpPacket};

use super::{LB_MAC, ROUTER_MAC};
use crate::wire::{ETH_HDR, PROTO_TCP, PROTO_UDP, parse_ipv4, parse_l4};

/// TCP flag bytes.
pub const SYN: u8 = 0x02;
pub const ACK: u8 = 0x10;

/// A fixed pseudo-random stream (xorshift64).
pub fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

/// TCP SYN 10.20.9.2:40000 -> 10.20.0.100:80 from the router to the balancer, no options,
/// checksums zero (see [`with_ip_checksum`], [`syn`]).
pub const TCP_SYN: [u8; 54] = [
    0x02, 0, 0, 0, 0, 0x10, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00, // eth
    0x45, 0x00, 0x00, 0x28, 0x00, 0x01, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, // ip (csum 0)
    10, 20, 9, 2, 10, 20, 0, 100, // addrs
    0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
];

/// `f` with the IPv4 header checksum at `l3` filled in.
pub fn with_ip_checksum(mut f: Vec<u8>, l3: usize) -> Vec<u8> {
    let ihl = usize::from(f[l3] & 0x0f) * 4;
    let mut p = Ipv4Packet::new_unchecked(&mut f[l3..l3 + ihl.max(20)]);
    p.fill_checksum();
    f
}

/// [`TCP_SYN`] with a valid IPv4 header checksum (its TCP checksum left zero).
pub fn syn() -> Vec<u8> {
    with_ip_checksum(TCP_SYN.to_vec(), ETH_HDR)
}

/// [`TCP_SYN`] with both checksums valid.
pub fn syn_with_tcp_csum() -> Vec<u8> {
    let mut f = syn();
    let ip = parse_ipv4(&f, ETH_HDR).unwrap();
    let mut t = TcpPacket::new_unchecked(&mut f[ip.l4..ip.end]);
    t.fill_checksum(&IpAddress::Ipv4(ip.src), &IpAddress::Ipv4(ip.dst));
    f
}

/// Ethernet (router -> balancer) + IPv4 + TCP (with `tcp_flags`) or UDP (4 bytes of
/// payload), every checksum valid.
pub fn pkt(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    proto: u8,
    tcp_flags: u8,
) -> Vec<u8> {
    let l4len = if proto == PROTO_TCP { 20 } else { 8 + 4 };
    let mut f = vec![0u8; 14 + 20 + l4len];
    f[0..6].copy_from_slice(&LB_MAC);
    f[6..12].copy_from_slice(&ROUTER_MAC);
    f[12] = 8;
    let total = (20 + l4len) as u16;
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
        ip.set_version(4);
        ip.set_header_len(20);
        ip.set_total_len(total);
        ip.set_hop_limit(64);
        ip.set_next_header(proto.into());
        ip.set_src_addr(src);
        ip.set_dst_addr(dst);
        ip.fill_checksum();
    }
    let (s, d) = (IpAddress::Ipv4(src), IpAddress::Ipv4(dst));
    if proto == PROTO_TCP {
        let mut t = TcpPacket::new_unchecked(&mut f[34..]);
        t.set_src_port(sport);
        t.set_dst_port(dport);
        t.set_header_len(20);
        let raw = t.into_inner();
        raw[13] = tcp_flags;
        let mut t = TcpPacket::new_unchecked(&mut f[34..]);
        t.fill_checksum(&s, &d);
    } else {
        let mut u = UdpPacket::new_unchecked(&mut f[34..]);
        u.set_src_port(sport);
        u.set_dst_port(dport);
        u.set_len(12);
        u.fill_checksum(&s, &d);
    }
    f
}

/// (source, source port, destination, destination port) of a TCP/UDP frame.
pub fn tuple(f: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    let ip = parse_ipv4(f, ETH_HDR).expect("valid IPv4");
    let l4 = parse_l4(f, &ip).unwrap();
    (ip.src, l4.src_port, ip.dst, l4.dst_port)
}

/// The IPv4 destination of a frame.
pub fn dst(f: &[u8]) -> Ipv4Addr {
    parse_ipv4(f, ETH_HDR).unwrap().dst
}

/// Whether the frame's TCP or UDP checksum verifies (smoltcp's check; other protocols pass).
pub fn l4_checksum_ok(f: &[u8]) -> bool {
    let ip = parse_ipv4(f, ETH_HDR).unwrap();
    let (s, d) = (IpAddress::Ipv4(ip.src), IpAddress::Ipv4(ip.dst));
    match ip.proto {
        PROTO_TCP => TcpPacket::new_checked(&f[ip.l4..ip.end])
            .unwrap()
            .verify_checksum(&s, &d),
        PROTO_UDP => UdpPacket::new_checked(&f[ip.l4..ip.end])
            .unwrap()
            .verify_checksum(&s, &d),
        _ => true,
    }
}
