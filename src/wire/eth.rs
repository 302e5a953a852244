//! Ethernet and 802.1Q: where layer 3 starts, the addresses a forward rewrites, and VLAN
//! tags added, changed or removed on the way out.

use smoltcp::wire::{EthernetAddress, EthernetFrame};

use super::csum::{rd16, wr16};
use super::{ETH_HDR, ETHERTYPE_VLAN, VLAN_HDR};
use crate::types::{DropReason, PacketBuf};

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

#[cfg(test)]
mod tests;
