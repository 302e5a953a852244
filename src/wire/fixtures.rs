//! Frames and helpers the wire tests (and other modules' tests) build on.

use smoltcp::wire::{IpAddress, Ipv4Packet, TcpPacket};

use super::{ETH_HDR, parse_ipv4};

/// A fixed pseudo-random stream (xorshift64) for tests over many random packets.
pub fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

/// TCP SYN 10.20.9.2:40000 -> 10.20.0.100:80, valid checksums, no options.
pub const TCP_SYN: [u8; 54] = [
    0x02, 0, 0, 0, 0, 0x10, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00, // eth
    0x45, 0x00, 0x00, 0x28, 0x00, 0x01, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, // ip (csum 0)
    10, 20, 9, 2, 10, 20, 0, 100, // addrs
    0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
];

pub fn with_ip_checksum(mut f: Vec<u8>, l3: usize) -> Vec<u8> {
    let ihl = usize::from(f[l3] & 0x0f) * 4;
    let mut p = Ipv4Packet::new_unchecked(&mut f[l3..l3 + ihl.max(20)]);
    p.fill_checksum();
    f
}

pub fn syn() -> Vec<u8> {
    with_ip_checksum(TCP_SYN.to_vec(), ETH_HDR)
}

pub fn tcp_ok(f: &[u8]) -> bool {
    let ip = parse_ipv4(f, ETH_HDR).unwrap();
    let t = TcpPacket::new_checked(&f[ip.l4..ip.end]).unwrap();
    t.verify_checksum(&IpAddress::Ipv4(ip.src), &IpAddress::Ipv4(ip.dst))
}

pub fn syn_with_tcp_csum() -> Vec<u8> {
    let mut f = with_ip_checksum(TCP_SYN.to_vec(), ETH_HDR);
    let ip = parse_ipv4(&f, ETH_HDR).unwrap();
    let mut t = TcpPacket::new_unchecked(&mut f[ip.l4..ip.end]);
    t.fill_checksum(&IpAddress::Ipv4(ip.src), &IpAddress::Ipv4(ip.dst));
    f
}
