//! IPv4: one validation pass that sorts malformed headers into drop reasons, the header
//! checksum check the hot path runs on every packet, and the TTL step of a router.

use std::net::Ipv4Addr;

use smoltcp::wire::Ipv4Packet;

use super::csum::{csum_replace16, rd16, wr16};
use crate::types::DropReason;

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

/// IPv4 protocol number of VRRP.
pub const PROTO_VRRP: u8 = 112;

/// Whether the frame is a VRRP advertisement to its multicast group (224.0.0.18, MAC
/// 01:00:5e:00:00:12) with a header that holds together: what an HA node hands keepalived.
pub fn is_vrrp_advert(frame: &[u8], l3: usize) -> bool {
    const MAC: [u8; 6] = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x12];
    const GROUP: [u8; 4] = [224, 0, 0, 18];
    frame.get(0..6) == Some(&MAC[..])
        && parse_ipv4(frame, l3)
            .is_ok_and(|ip| ip.proto == PROTO_VRRP && ip.dst.octets() == GROUP && !ip.is_fragment)
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

#[cfg(test)]
mod tests;
