//! TCP segments the SYN proxy reads and writes in place: a segment's sequence numbers and
//! MSS, a segment turned into a bare one (the cookie SYN-ACK, the SYN and the ACK to the
//! backend), and the sequence-number shift of a proxied conn's segments.

use smoltcp::wire::{Ipv4Packet, TcpOption, TcpPacket};

use super::csum::{csum_replace32, rd16, rd32, wr16};
use super::ipv4::Ipv4Meta;
use crate::types::PacketBuf;

pub const TH_FIN: u8 = 0x01;
pub const TH_SYN: u8 = 0x02;
pub const TH_RST: u8 = 0x04;
pub const TH_ACK: u8 = 0x10;

/// What the SYN proxy reads of a TCP segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSeg {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// The MSS option, if the segment carries one.
    pub mss: Option<u16>,
    /// Bytes of payload.
    pub payload: usize,
}

/// The TCP segment of a parsed IPv4 packet (`parse_l4` has checked its header length).
pub fn tcp_seg(frame: &[u8], ip: &Ipv4Meta) -> Option<TcpSeg> {
    let seg = frame.get(ip.l4..ip.end)?;
    let t = TcpPacket::new_checked(seg).ok()?;
    let mut mss = None;
    let mut opts = t.options();
    while !opts.is_empty() {
        let Ok((rest, opt)) = TcpOption::parse(opts) else {
            break;
        };
        match opt {
            TcpOption::EndOfList => break,
            TcpOption::MaxSegmentSize(m) => mss = Some(m),
            _ => {}
        }
        opts = rest;
    }
    Some(TcpSeg {
        seq: rd32(seg, 4),
        ack: rd32(seg, 8),
        flags: seg[13] & 0x3f,
        window: rd16(seg, 14),
        mss,
        payload: seg.len() - usize::from(t.header_len()),
    })
}

/// What a bare segment carries.
#[derive(Debug, Clone, Copy)]
pub struct Bare {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// An MSS option (the only option written).
    pub mss: Option<u16>,
    /// Back to its sender: addresses, ports and MACs swapped, a fresh TTL.
    pub reply: bool,
}

/// Rewrites the TCP packet of `ip` (whose IPv4 header must be 20 bytes) into a bare segment:
/// no payload, no option but `b.mss`; lengths and checksums redone. False, with the frame
/// unchanged, when its header has options or the buffer cannot hold the segment.
pub fn tcp_rewrite_bare<P: PacketBuf + ?Sized>(
    p: &mut P,
    l3: usize,
    ip: &Ipv4Meta,
    b: &Bare,
) -> bool {
    if ip.l4 != l3 + 20 {
        return false;
    }
    let hlen = 20 + if b.mss.is_some() { 4 } else { 0 };
    if !p.set_len(ip.l4 + hlen) {
        return false;
    }
    let frame = p.bytes();
    let (mut src, mut dst) = (ip.src, ip.dst);
    if b.reply {
        let (a, c) = frame.split_at_mut(6);
        a.swap_with_slice(&mut c[..6]);
        std::mem::swap(&mut src, &mut dst);
    }
    {
        let seg = &mut frame[ip.l4..];
        if b.reply {
            let (sp, dp) = (rd16(seg, 0), rd16(seg, 2));
            wr16(seg, 0, dp);
            wr16(seg, 2, sp);
        }
        seg[4..8].copy_from_slice(&b.seq.to_be_bytes());
        seg[8..12].copy_from_slice(&b.ack.to_be_bytes());
        seg[12] = ((hlen / 4) as u8) << 4;
        seg[13] = b.flags;
        wr16(seg, 14, b.window);
        wr16(seg, 18, 0); // urgent pointer
        if let Some(m) = b.mss {
            seg[20] = 2;
            seg[21] = 4;
            wr16(seg, 22, m);
        }
        let mut t = TcpPacket::new_unchecked(&mut seg[..hlen]);
        t.fill_checksum(&src.into(), &dst.into());
    }
    let mut pkt = Ipv4Packet::new_unchecked(&mut frame[l3..]);
    pkt.set_total_len((20 + hlen) as u16);
    pkt.set_src_addr(src);
    pkt.set_dst_addr(dst);
    if b.reply {
        pkt.set_hop_limit(64);
    }
    pkt.clear_flags();
    pkt.set_dont_frag(true);
    pkt.fill_checksum();
    true
}

/// Moves a segment's sequence number up by `seq_add` and its acknowledgment number (when
/// its ACK flag is set) down by `ack_sub`, updating the checksum (RFC 1624).
pub fn tcp_shift_seq(frame: &mut [u8], l4: usize, seq_add: u32, ack_sub: u32) {
    let seg = &mut frame[l4..];
    let mut csum = rd16(seg, 16);
    if seq_add != 0 {
        let old = rd32(seg, 4);
        let new = old.wrapping_add(seq_add);
        seg[4..8].copy_from_slice(&new.to_be_bytes());
        csum = csum_replace32(csum, old, new);
    }
    if ack_sub != 0 && seg[13] & TH_ACK != 0 {
        let old = rd32(seg, 8);
        let new = old.wrapping_sub(ack_sub);
        seg[8..12].copy_from_slice(&new.to_be_bytes());
        csum = csum_replace32(csum, old, new);
    }
    wr16(seg, 16, csum);
}
