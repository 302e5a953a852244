//! Wire formats: zero-copy views over frame bytes. No DPDK type appears here, so everything
//! is unit-tested on byte slices.
//!
//! The field accessors are smoltcp's `wire` module (Ethernet, ARP, IPv4, ICMPv4, TCP, UDP);
//! this module adds what smoltcp leaves out and what the data plane needs on top: 802.1Q,
//! a single validation pass that sorts malformed frames into [`DropReason`]s, and builders
//! for the frames the balancer originates (ARP requests, gratuitous ARP).

use std::net::Ipv4Addr;

use smoltcp::wire::{
    ArpOperation, ArpPacket, EthernetAddress, EthernetFrame, Icmpv4Message, Icmpv4Packet,
    Ipv4Packet, TcpPacket,
};

use crate::types::{DropReason, PacketBuf};

pub const ETH_HDR: usize = 14;
pub const VLAN_HDR: usize = 4;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const BROADCAST: [u8; 6] = [0xff; 6];
/// Length of an ARP frame the balancer builds (no VLAN tag): Ethernet + 28 bytes of ARP.
pub const ARP_FRAME_LEN: usize = ETH_HDR + 28;

/// Layer 2 of a frame: where layer 3 starts and what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2 {
    /// 802.1Q VLAN id, if tagged.
    pub vlan: Option<u16>,
    pub ethertype: u16,
    /// Offset of the layer-3 header.
    pub l3: usize,
}

/// Parses Ethernet and at most one 802.1Q tag.
pub fn parse_l2(frame: &[u8]) -> Result<L2, DropReason> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| DropReason::TruncatedEthernet)?;
    let ethertype = u16::from(eth.ethertype());
    if ethertype != ETHERTYPE_VLAN {
        return Ok(L2 {
            vlan: None,
            ethertype,
            l3: ETH_HDR,
        });
    }
    if frame.len() < ETH_HDR + VLAN_HDR {
        return Err(DropReason::TruncatedEthernet);
    }
    let tci = u16::from_be_bytes([frame[14], frame[15]]);
    let inner = u16::from_be_bytes([frame[16], frame[17]]);
    Ok(L2 {
        vlan: Some(tci & 0x0fff),
        ethertype: inner,
        l3: ETH_HDR + VLAN_HDR,
    })
}

/// Rewrites the Ethernet addresses of a frame (the only change a DSR forward makes).
pub fn set_macs(frame: &mut [u8], src: [u8; 6], dst: [u8; 6]) {
    let mut eth = EthernetFrame::new_unchecked(frame);
    eth.set_dst_addr(EthernetAddress(dst));
    eth.set_src_addr(EthernetAddress(src));
}

/// The facts about a validated IPv4 packet the data plane decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Meta {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    /// Offset of the L4 header in the frame.
    pub l4: usize,
    /// Offset one past the last IPv4 byte (frames may carry Ethernet padding after it).
    pub end: usize,
    /// More-fragments set or a non-zero offset.
    pub is_fragment: bool,
    /// Non-zero fragment offset: no L4 header here.
    pub is_later_fragment: bool,
    /// IPv4 identification (pairs fragments of one datagram).
    pub id: u16,
}

/// Validates the IPv4 header at `l3` (length, version, IHL, total length, checksum).
pub fn parse_ipv4(frame: &[u8], l3: usize) -> Result<Ipv4Meta, DropReason> {
    let buf = &frame[l3..];
    if buf.len() < 20 {
        return Err(DropReason::TruncatedIpv4);
    }
    let version = buf[0] >> 4;
    let ihl = usize::from(buf[0] & 0x0f) * 4;
    if version != 4 || ihl < 20 {
        return Err(DropReason::BadIpv4Header);
    }
    if ihl > buf.len() {
        return Err(DropReason::TruncatedIpv4);
    }
    let total = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if total < ihl || total > buf.len() {
        return Err(DropReason::BadIpv4Length);
    }
    // The checks above are exactly smoltcp's `check_len`, so its accessors cannot panic now.
    let ip = Ipv4Packet::new_unchecked(&buf[..total]);
    if !ipv4_header_checksum_ok(&buf[..ihl]) {
        return Err(DropReason::BadIpv4Checksum);
    }
    let frag_offset = ip.frag_offset();
    Ok(Ipv4Meta {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
        proto: u8::from(ip.next_header()),
        l4: l3 + ihl,
        end: l3 + total,
        is_fragment: ip.more_frags() || frag_offset != 0,
        is_later_fragment: frag_offset != 0,
        id: ip.ident(),
    })
}

/// The IPv4 header checksum verifies (one's complement sum of the header is 0xffff). Summing
/// 32-bit words measured faster than smoltcp's generic byte-pair loop for this hot check
/// (benches/dataplane.rs, "parse eth+ipv4(checksum)+tcp").
#[inline]
pub fn ipv4_header_checksum_ok(h: &[u8]) -> bool {
    match h.try_into() {
        Ok(h) => ipv4_header_checksum_ok20(h),
        Err(_) => ipv4_header_checksum_ok_any(h),
    }
}

/// [`ipv4_header_checksum_ok`] for a header without options, branch-free. The header's
/// 16-bit words have a one's complement sum of 0xffff exactly when their plain sum S is a
/// non-zero multiple of 0xffff (the end-around carries make the one's complement sum S mod
/// 0xffff, in 1..=0xffff for S > 0). A 32-bit word is its two halves mod 0xffff (2^16 is 1
/// there), and byte order does not matter (RFC 1071: swapping bytes swaps the sum, and
/// 0xffff is its own swap), so S is taken as five 32-bit words as they lie in memory. S is a
/// multiple of the odd 0xffff exactly when S times 0xffff's inverse mod 2^64 is at most
/// (2^64 - 1) / 0xffff (the multiples map to 0, 1, 2, ... in order): a multiply and a
/// compare, no division and no folding.
#[inline]
pub fn ipv4_header_checksum_ok20(h: &[u8; 20]) -> bool {
    const M: u64 = 0xffff;
    const INV: u64 = {
        // Newton's iteration: M is its own inverse mod 8, and each step doubles the bits.
        let mut x = M;
        let mut i = 0;
        while i < 5 {
            x = x.wrapping_mul(2u64.wrapping_sub(M.wrapping_mul(x)));
            i += 1;
        }
        x
    };
    const _: () = assert!(M.wrapping_mul(INV) == 1);
    let w = |i: usize| u64::from(u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    let sum = w(0) + w(4) + w(8) + w(12) + w(16); // < 5 * 2^32
    sum != 0 && sum.wrapping_mul(INV) <= u64::MAX / M
}

#[inline]
fn ipv4_header_checksum_ok_any(h: &[u8]) -> bool {
    let mut sum: u64 = 0;
    for w in h.chunks_exact(4) {
        sum += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

/// TCP flags the flow state machine needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

/// Ports (and TCP flags) of the L4 header in `frame[l4..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L4Meta {
    pub src_port: u16,
    pub dst_port: u16,
    pub tcp: TcpFlags,
}

pub fn parse_l4(frame: &[u8], ip: &Ipv4Meta) -> Result<L4Meta, DropReason> {
    let seg = &frame[ip.l4..ip.end];
    match ip.proto {
        PROTO_TCP => {
            let tcp = TcpPacket::new_checked(seg).map_err(|_| DropReason::TruncatedL4)?;
            if usize::from(tcp.header_len()) < 20 {
                return Err(DropReason::TruncatedL4);
            }
            Ok(L4Meta {
                src_port: tcp.src_port(),
                dst_port: tcp.dst_port(),
                tcp: TcpFlags {
                    syn: tcp.syn(),
                    ack: tcp.ack(),
                    fin: tcp.fin(),
                    rst: tcp.rst(),
                },
            })
        }
        PROTO_UDP => {
            if seg.len() < 8 {
                return Err(DropReason::TruncatedL4);
            }
            Ok(L4Meta {
                src_port: u16::from_be_bytes([seg[0], seg[1]]),
                dst_port: u16::from_be_bytes([seg[2], seg[3]]),
                tcp: TcpFlags::default(),
            })
        }
        _ => Ok(L4Meta {
            src_port: 0,
            dst_port: 0,
            tcp: TcpFlags::default(),
        }),
    }
}

/// An ARP packet's fields the neighbour logic needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpMeta {
    pub is_request: bool,
    pub sender_mac: [u8; 6],
    pub sender_ip: Ipv4Addr,
    pub target_ip: Ipv4Addr,
}

pub fn parse_arp(frame: &[u8], l3: usize) -> Result<ArpMeta, DropReason> {
    let arp = ArpPacket::new_checked(&frame[l3..]).map_err(|_| DropReason::MalformedArp)?;
    if u16::from(arp.hardware_type()) != 1
        || u16::from(arp.protocol_type()) != ETHERTYPE_IPV4
        || arp.hardware_len() != 6
        || arp.protocol_len() != 4
    {
        return Err(DropReason::MalformedArp);
    }
    let is_request = match arp.operation() {
        ArpOperation::Request => true,
        ArpOperation::Reply => false,
        _ => return Err(DropReason::MalformedArp),
    };
    let ip = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
    let mut sender_mac = [0u8; 6];
    sender_mac.copy_from_slice(arp.source_hardware_addr());
    Ok(ArpMeta {
        is_request,
        sender_mac,
        sender_ip: ip(arp.source_protocol_addr()),
        target_ip: ip(arp.target_protocol_addr()),
    })
}

/// Turns an ARP request (already parsed as `req`) into the reply for `our_mac`, in place.
pub fn arp_request_to_reply(frame: &mut [u8], l3: usize, req: &ArpMeta, our_mac: [u8; 6]) {
    set_macs(frame, our_mac, req.sender_mac);
    let mut arp = ArpPacket::new_unchecked(&mut frame[l3..]);
    arp.set_operation(ArpOperation::Reply);
    arp.set_source_hardware_addr(&our_mac);
    arp.set_source_protocol_addr(&req.target_ip.octets());
    arp.set_target_hardware_addr(&req.sender_mac);
    arp.set_target_protocol_addr(&req.sender_ip.octets());
}

/// Length of an ARP frame built by [`build_arp`] for an interface with or without a VLAN.
pub fn arp_frame_len(vlan: Option<u16>) -> usize {
    ARP_FRAME_LEN + if vlan.is_some() { VLAN_HDR } else { 0 }
}

/// Builds an ARP request into `buf` (which must be `arp_frame_len(vlan)` long): a resolution
/// request for `target` when `target != sender_ip`, a gratuitous announcement when equal.
pub fn build_arp_request(
    buf: &mut [u8],
    vlan: Option<u16>,
    our_mac: [u8; 6],
    sender_ip: Ipv4Addr,
    target: Ipv4Addr,
) {
    buf[0..6].copy_from_slice(&BROADCAST);
    buf[6..12].copy_from_slice(&our_mac);
    let l3 = match vlan {
        Some(v) => {
            buf[12..14].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
            buf[14..16].copy_from_slice(&(v & 0x0fff).to_be_bytes());
            buf[16..18].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
            ETH_HDR + VLAN_HDR
        }
        None => {
            buf[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
            ETH_HDR
        }
    };
    let mut arp = ArpPacket::new_unchecked(&mut buf[l3..]);
    arp.set_hardware_type(smoltcp::wire::ArpHardware::Ethernet);
    arp.set_protocol_type(smoltcp::wire::EthernetProtocol::Ipv4);
    arp.set_hardware_len(6);
    arp.set_protocol_len(4);
    arp.set_operation(ArpOperation::Request);
    arp.set_source_hardware_addr(&our_mac);
    arp.set_source_protocol_addr(&sender_ip.octets());
    arp.set_target_hardware_addr(&[0; 6]);
    arp.set_target_protocol_addr(&target.octets());
}

/// Turns an ICMP echo request into the echo reply in place: MACs and IPs swapped, TTL reset,
/// checksums recomputed. Returns `Err` (and leaves the frame alone) for anything that is not
/// a well-formed echo request.
pub fn icmp_echo_to_reply(
    frame: &mut [u8],
    l3: usize,
    ip: &Ipv4Meta,
    our_mac: [u8; 6],
) -> Result<(), DropReason> {
    {
        let icmp = Icmpv4Packet::new_checked(&frame[ip.l4..ip.end])
            .map_err(|_| DropReason::TruncatedL4)?;
        if icmp.msg_type() != Icmpv4Message::EchoRequest || icmp.msg_code() != 0 {
            return Err(DropReason::IcmpNotHandled);
        }
        if !icmp.verify_checksum() {
            return Err(DropReason::BadIcmpChecksum);
        }
    }
    let peer_mac = {
        let eth = EthernetFrame::new_unchecked(&frame[..]);
        eth.src_addr().0
    };
    set_macs(frame, our_mac, peer_mac);
    {
        let mut icmp = Icmpv4Packet::new_unchecked(&mut frame[ip.l4..ip.end]);
        icmp.set_msg_type(Icmpv4Message::EchoReply);
        icmp.fill_checksum();
    }
    let mut pkt = Ipv4Packet::new_unchecked(&mut frame[l3..ip.end]);
    pkt.set_src_addr(ip.dst);
    pkt.set_dst_addr(ip.src);
    pkt.set_hop_limit(64);
    pkt.fill_checksum();
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

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

    fn syn() -> Vec<u8> {
        with_ip_checksum(TCP_SYN.to_vec(), ETH_HDR)
    }

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

    #[test]
    fn echo_request_becomes_reply() {
        // 10.20.9.2 -> 10.20.0.100 echo request id 1 seq 1, 4 bytes payload.
        let mut f = vec![
            0x02, 0, 0, 0, 0, 0x10, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00, 0x45, 0, 0, 32, 0, 7, 0, 0,
            63, 1, 0, 0, 10, 20, 9, 2, 10, 20, 0, 100, 8, 0, 0, 0, 0, 1, 0, 1, b'a', b'b', b'c',
            b'd',
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
}

// ---------------------------------------------------------------------------------------------
// Rewriting: NAT with incremental checksums (RFC 1624), TTL, VLAN tags, ICMP errors.
// ---------------------------------------------------------------------------------------------

/// RFC 1624 eqn. 3: the checksum after one 16-bit word changes from `old` to `new`.
#[inline]
pub fn csum_replace16(csum: u16, old: u16, new: u16) -> u16 {
    let mut sum = u32::from(!csum) + u32::from(!old) + u32::from(new);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// The checksum after a 32-bit field (an address) changes.
#[inline]
pub fn csum_replace32(csum: u16, old: u32, new: u32) -> u16 {
    let c = csum_replace16(csum, (old >> 16) as u16, (new >> 16) as u16);
    csum_replace16(c, old as u16, new as u16)
}

#[inline]
fn rd16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn wr16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

#[inline]
fn rd32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Where the L4 checksum of a segment is, if the protocol has one in reach.
#[inline]
fn l4_csum_at(proto: u8, l4: usize, end: usize) -> Option<usize> {
    let off = match proto {
        PROTO_TCP => 16,
        PROTO_UDP => 6,
        _ => return None,
    };
    (l4 + off + 2 <= end).then_some(l4 + off)
}

/// New addresses and ports for an IPv4 packet (`None` keeps the field).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rewrite {
    pub src: Option<(Ipv4Addr, u16)>,
    pub dst: Option<(Ipv4Addr, u16)>,
}

/// Applies `rw` to the IPv4 packet at `l3` (header length `ihl`) whose L4 header, if
/// `has_l4` (not a later fragment), is at `l3 + ihl`; `end` bounds the checksummed bytes.
/// IPv4 and TCP/UDP checksums are updated incrementally; a zero UDP checksum stays zero.
pub fn rewrite_ipv4(b: &mut [u8], l3: usize, end: usize, has_l4: bool, rw: &Rewrite) {
    let ihl = usize::from(b[l3] & 0x0f) * 4;
    let proto = b[l3 + 9];
    let l4 = l3 + ihl;
    let mut ip_csum = rd16(b, l3 + 10);
    let csum_at = if has_l4 {
        l4_csum_at(proto, l4, end)
    } else {
        None
    };
    let mut l4_csum = csum_at.map(|at| rd16(b, at));
    let udp_zero = proto == PROTO_UDP && l4_csum == Some(0);
    for (addr_at, port_at, new) in [(l3 + 12, l4, rw.src), (l3 + 16, l4 + 2, rw.dst)] {
        let Some((ip, port)) = new else { continue };
        let old_ip = rd32(b, addr_at);
        let new_ip = u32::from(ip);
        if old_ip != new_ip {
            ip_csum = csum_replace32(ip_csum, old_ip, new_ip);
            l4_csum = l4_csum.map(|c| csum_replace32(c, old_ip, new_ip));
            b[addr_at..addr_at + 4].copy_from_slice(&ip.octets());
        }
        if has_l4 && (proto == PROTO_TCP || proto == PROTO_UDP) && port_at + 2 <= end {
            let old_port = rd16(b, port_at);
            if old_port != port {
                l4_csum = l4_csum.map(|c| csum_replace16(c, old_port, port));
                wr16(b, port_at, port);
            }
        }
    }
    wr16(b, l3 + 10, ip_csum);
    if let (Some(at), Some(c)) = (csum_at, l4_csum) {
        let c = if udp_zero {
            0
        } else if proto == PROTO_UDP && c == 0 {
            0xffff
        } else {
            c
        };
        wr16(b, at, c);
    }
}

/// A NAT modes' forward in one pass, for the common packet: an IPv4 header without options
/// followed by a whole TCP or UDP header. Sets the addresses and ports of `rw` (both must be
/// `Some`), decrements the TTL, and gives each checksum one combined incremental update (RFC
/// 1624, folded once), which for a correct input checksum is exactly the checksum a
/// computation from scratch gives; a zero UDP checksum stays zero. Returns false, changing
/// nothing, for any other packet or a TTL that would expire: the caller then takes
/// [`decrement_ttl`] and [`rewrite_ipv4`].
#[inline(always)]
pub fn nat_forward(b: &mut [u8], l3: usize, end: usize, rw: &Rewrite) -> bool {
    let (Some((src, sport)), Some((dst, dport))) = (rw.src, rw.dst) else {
        return false;
    };
    let Some(h) = b.get_mut(l3..end) else {
        return false;
    };
    let udp = match h.get(9) {
        Some(&PROTO_TCP) => false,
        Some(&PROTO_UDP) => true,
        _ => return false,
    };
    if h.len() < l4_csum_end(udp) || h[0] != 0x45 || h[8] <= 1 {
        return false;
    }
    nat_apply(h, udp, (src.into(), sport), (dst.into(), dport));
    true
}

/// Where the L4 checksum of a plain (optionless) IPv4 TCP or UDP packet ends.
#[inline(always)]
pub fn l4_csum_end(udp: bool) -> usize {
    if udp { 28 } else { 38 }
}

/// The arithmetic of [`nat_forward`], for a packet already known to qualify: `h` an IPv4
/// packet without options, TTL above 1, TCP (`udp` false) or UDP, at least
/// [`l4_csum_end`] bytes long (else this panics; the fast lane checked all of that in its
/// pre-parse). Sets source and destination address and port, decrements the TTL, updates both
/// checksums as `nat_forward` documents.
#[inline(always)]
pub fn nat_apply(h: &mut [u8], udp: bool, src: (u32, u16), dst: (u32, u16)) {
    let csum_at = l4_csum_end(udp) - 2;
    let (hd, rest) = h
        .split_first_chunk_mut::<24>()
        .expect("an IPv4 header and ports");
    let ck: &mut [u8; 2] = (&mut rest[csum_at - 24..csum_at - 22])
        .try_into()
        .expect("two bytes");
    nat_core(hd, ck, udp, src, dst);
}

/// Bytes from the IPv4 header that [`nat_apply_fixed`] takes: a header without options and a
/// TCP header up to its checksum (UDP's ends earlier).
pub const NAT_FIXED: usize = 38;

/// [`nat_apply`] on the packet's first [`NAT_FIXED`] bytes as an array (the fast lane's view
/// of them): no length to check.
#[inline(always)]
pub fn nat_apply_fixed(h: &mut [u8; NAT_FIXED], udp: bool, src: (u32, u16), dst: (u32, u16)) {
    let (hd, rest) = h.split_at_mut(24);
    let hd: &mut [u8; 24] = hd.try_into().expect("24 bytes");
    let at = l4_csum_end(udp) - 2 - 24;
    let ck: &mut [u8; 2] = (&mut rest[at..at + 2]).try_into().expect("two bytes");
    nat_core(hd, ck, udp, src, dst);
}

/// The translation itself, on the IPv4 header and ports (`hd`) and the L4 checksum (`ck`).
///
/// A one's complement sum does not depend on byte order (RFC 1071, 2.B): the packet's words
/// are summed as the machine reads them, 32 bits at a time, and only the new values are put
/// in network order, instead of swapping every 16-bit word in and out (half the
/// instructions). The sums are the same, so are the checksums, byte for byte (the unit test
/// compares with the step-by-step rewrite and with checksums computed from scratch).
#[inline(always)]
fn nat_core(
    hd: &mut [u8; 24],
    ck: &mut [u8; 2],
    udp: bool,
    (src, sport): (u32, u16),
    (dst, dport): (u32, u16),
) {
    let rd = |h: &[u8; 24], at: usize| u32::from_ne_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    let (src, dst) = (src.to_be_bytes(), dst.to_be_bytes());
    let (sport, dport) = (sport.to_be_bytes(), dport.to_be_bytes());
    let new_ports = [sport[0], sport[1], dport[0], dport[1]];
    // `!old + new` over the changed words, as 32-bit words in a 64-bit sum.
    let w = |x: u32| u64::from(x);
    let addr =
        w(!rd(hd, 12)) + w(!rd(hd, 16)) + w(u32::from_ne_bytes(src)) + w(u32::from_ne_bytes(dst));
    let ports = w(!rd(hd, 20)) + w(u32::from_ne_bytes(new_ports));
    // The TTL is the first byte of its 16-bit word: one less there is `!old + new` =
    // 0xffff - (that byte's weight), whatever the TTL and protocol.
    const TTL: u64 = 0xffff - u16::from_ne_bytes([1, 0]) as u64;
    // 64 -> 32 -> 16 bits, each an add with the carry added back (end-around carry): the
    // result is nonzero for a nonzero sum, as the step-by-step folds give.
    let fold = |x: u64| {
        let (s, c) = (x as u32).overflowing_add((x >> 32) as u32);
        let x = s + u32::from(c);
        let (s, c) = (x as u16).overflowing_add((x >> 16) as u16);
        !(s + u16::from(c))
    };
    let ip = fold(u64::from(!u16::from_ne_bytes([hd[10], hd[11]])) + addr + TTL);
    let l4_old = u16::from_ne_bytes([ck[0], ck[1]]);
    let l4 = if udp && l4_old == 0 {
        0 // UDP without a checksum
    } else {
        match fold(u64::from(!l4_old) + addr + ports) {
            0 if udp => 0xffff,
            c => c,
        }
    };
    hd[8] -= 1;
    hd[10..12].copy_from_slice(&ip.to_ne_bytes());
    hd[12..16].copy_from_slice(&src);
    hd[16..20].copy_from_slice(&dst);
    hd[20..24].copy_from_slice(&new_ports);
    ck.copy_from_slice(&l4.to_ne_bytes());
}

/// Decrements the TTL (with checksum update). Returns false, leaving the packet alone, when
/// it would reach zero: the caller answers with ICMP time exceeded.
#[inline]
pub fn decrement_ttl(b: &mut [u8], l3: usize) -> bool {
    let ttl = b[l3 + 8];
    if ttl <= 1 {
        return false;
    }
    let old = rd16(b, l3 + 8);
    b[l3 + 8] = ttl - 1;
    let new = rd16(b, l3 + 8);
    let c = csum_replace16(rd16(b, l3 + 10), old, new);
    wr16(b, l3 + 10, c);
    true
}

/// Makes the frame carry VLAN tag `to` instead of `from` (adding, removing or changing the
/// 802.1Q header). Returns the new L3 offset, or `None` if the buffer cannot be resized.
pub fn retag<P: PacketBuf + ?Sized>(
    p: &mut P,
    from: Option<u16>,
    to: Option<u16>,
) -> Option<usize> {
    match (from, to) {
        (None, None) => Some(ETH_HDR),
        (Some(_), Some(v)) => {
            let b = p.bytes();
            let tci = (rd16(b, 14) & 0xf000) | (v & 0x0fff);
            wr16(b, 14, tci);
            Some(ETH_HDR + VLAN_HDR)
        }
        (None, Some(v)) => {
            let len = p.bytes().len();
            if !p.set_len(len + VLAN_HDR) {
                return None;
            }
            let b = p.bytes();
            b.copy_within(12..len, 16);
            wr16(b, 12, ETHERTYPE_VLAN);
            wr16(b, 14, v & 0x0fff);
            Some(ETH_HDR + VLAN_HDR)
        }
        (Some(_), None) => {
            let b = p.bytes();
            let len = b.len();
            b.copy_within(16..len, 12);
            if !p.set_len(len - VLAN_HDR) {
                return None;
            }
            Some(ETH_HDR)
        }
    }
}

/// An ICMP error (destination unreachable, time exceeded, parameter problem) and the packet
/// it quotes: the tuple of that inner packet as it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpError {
    pub icmp_type: u8,
    pub code: u8,
    /// Offset of the quoted IPv4 header.
    pub inner_l3: usize,
    pub inner_src: Ipv4Addr,
    pub inner_dst: Ipv4Addr,
    pub inner_proto: u8,
    pub inner_sport: u16,
    pub inner_dport: u16,
}

pub const ICMP_UNREACH: u8 = 3;
pub const ICMP_TIME_EXCEEDED: u8 = 11;
pub const ICMP_PARAM_PROBLEM: u8 = 12;
pub const ICMP_FRAG_NEEDED: u8 = 4;
pub const ICMP_PORT_UNREACH: u8 = 3;
pub const ICMP_NET_UNREACH: u8 = 0;

/// Parses an ICMP error carrying at least the quoted IPv4 header and 8 bytes of its payload
/// (enough for TCP/UDP ports). `None` for other ICMP messages or short quotes.
pub fn parse_icmp_error(b: &[u8], ip: &Ipv4Meta) -> Option<IcmpError> {
    let icmp = &b[ip.l4..ip.end];
    if icmp.len() < 8 + 20 + 8 {
        return None;
    }
    let t = icmp[0];
    if !matches!(t, ICMP_UNREACH | ICMP_TIME_EXCEEDED | ICMP_PARAM_PROBLEM) {
        return None;
    }
    let inner = &icmp[8..];
    let ihl = usize::from(inner[0] & 0x0f) * 4;
    if inner[0] >> 4 != 4 || ihl < 20 || inner.len() < ihl + 8 {
        return None;
    }
    let proto = inner[9];
    let (sport, dport) = if proto == PROTO_TCP || proto == PROTO_UDP {
        (rd16(inner, ihl), rd16(inner, ihl + 2))
    } else {
        (0, 0)
    };
    Some(IcmpError {
        icmp_type: t,
        code: icmp[1],
        inner_l3: ip.l4 + 8,
        inner_src: Ipv4Addr::from(rd32(inner, 12)),
        inner_dst: Ipv4Addr::from(rd32(inner, 16)),
        inner_proto: proto,
        inner_sport: sport,
        inner_dport: dport,
    })
}

/// Rewrites the outer header (`outer`) and the quoted packet (`inner`) of an ICMP error,
/// then recomputes the ICMP checksum over the (short) message.
pub fn rewrite_icmp_error(
    b: &mut [u8],
    l3: usize,
    ip: &Ipv4Meta,
    e: &IcmpError,
    outer: &Rewrite,
    inner: &Rewrite,
) {
    // The quoted packet: its IPv4 checksum is updated; its L4 checksum too when the quote
    // reaches it (UDP's does; TCP's usually lies past the 8 quoted bytes).
    rewrite_ipv4(b, e.inner_l3, ip.end, true, inner);
    // The outer addresses: ICMP has no pseudo-header, so only the IPv4 checksum changes.
    rewrite_ipv4(b, l3, ip.end, false, outer);
    let mut icmp = Icmpv4Packet::new_unchecked(&mut b[ip.l4..ip.end]);
    icmp.fill_checksum();
}

/// Turns the frame into an ICMP error about the packet it holds, addressed back to that
/// packet's source from `from` (one of our addresses), to go out where it came in.
/// Quotes the original IPv4 header and the first 8 bytes of its payload (RFC 792).
pub fn to_icmp_error<P: PacketBuf + ?Sized>(
    p: &mut P,
    l3: usize,
    ip: &Ipv4Meta,
    our_mac: [u8; 6],
    from: Ipv4Addr,
    icmp_type: u8,
    code: u8,
) -> bool {
    let mut quote = [0u8; 60 + 8];
    let qlen = {
        let b = p.bytes();
        let n = (ip.l4 - l3 + 8).min(ip.end - l3);
        quote[..n].copy_from_slice(&b[l3..l3 + n]);
        n
    };
    let total = 20 + 8 + qlen;
    if !p.set_len(l3 + total) {
        return false;
    }
    let b = p.bytes();
    let peer = [b[6], b[7], b[8], b[9], b[10], b[11]];
    set_macs(b, our_mac, peer);
    let h = &mut b[l3..];
    h[..20].copy_from_slice(&[
        0x45, 0, 0, 0, 0, 0, 0, 0, 64, PROTO_ICMP, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    wr16(h, 2, total as u16);
    h[12..16].copy_from_slice(&from.octets());
    h[16..20].copy_from_slice(&ip.src.octets());
    h[20..28].copy_from_slice(&[icmp_type, code, 0, 0, 0, 0, 0, 0]);
    h[28..28 + qlen].copy_from_slice(&quote[..qlen]);
    {
        let mut pkt = Ipv4Packet::new_unchecked(&mut h[..20]);
        pkt.fill_checksum();
    }
    let mut icmp = Icmpv4Packet::new_unchecked(&mut h[20..total]);
    icmp.fill_checksum();
    true
}

#[cfg(test)]
mod rewrite_tests {
    use super::tests::{TCP_SYN, with_ip_checksum, xorshift};
    use super::*;
    use smoltcp::wire::{IpAddress, TcpPacket, UdpPacket};

    fn tcp_ok(f: &[u8]) -> bool {
        let ip = parse_ipv4(f, ETH_HDR).unwrap();
        let t = TcpPacket::new_checked(&f[ip.l4..ip.end]).unwrap();
        t.verify_checksum(&IpAddress::Ipv4(ip.src), &IpAddress::Ipv4(ip.dst))
    }

    fn syn_with_tcp_csum() -> Vec<u8> {
        let mut f = with_ip_checksum(TCP_SYN.to_vec(), ETH_HDR);
        let ip = parse_ipv4(&f, ETH_HDR).unwrap();
        let mut t = TcpPacket::new_unchecked(&mut f[ip.l4..ip.end]);
        t.fill_checksum(&IpAddress::Ipv4(ip.src), &IpAddress::Ipv4(ip.dst));
        f
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
    fn incremental_checksum_matches_full_recompute() {
        let mut f = syn_with_tcp_csum();
        assert!(tcp_ok(&f));
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
        assert!(tcp_ok(&f), "TCP checksum updated incrementally");
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
}
