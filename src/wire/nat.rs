//! Address and port translation with incremental checksums (RFC 1624): the general rewrite
//! (IP options, later fragments, ICMP quotes) and the one-pass forward of a plain TCP/UDP
//! packet that NAT modes use for nearly every packet.

use std::net::Ipv4Addr;

use super::csum::{csum_replace16, csum_replace32, rd16, rd32, wr16};
use super::{PROTO_TCP, PROTO_UDP};

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

#[cfg(test)]
mod tests;
