//! ICMPv4: echo answered in place, errors parsed with the packet they quote, translated
//! (outer and quoted headers) or built about a packet the balancer cannot deliver.

use std::net::Ipv4Addr;

use smoltcp::wire::{EthernetFrame, Icmpv4Message, Icmpv4Packet, Ipv4Packet};

use super::csum::{rd16, rd32, wr16};
use super::eth::set_macs;
use super::ipv4::Ipv4Meta;
use super::nat::{Rewrite, rewrite_ipv4};
use super::{PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use crate::types::{DropReason, PacketBuf};

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
mod tests;
