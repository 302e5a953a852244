//! ARP: requests parsed and answered in place, requests and gratuitous announcements built.

use std::net::Ipv4Addr;

use smoltcp::wire::{ArpOperation, ArpPacket};

use super::eth::set_macs;
use super::{
    ARP_FRAME_LEN, BROADCAST, ETH_HDR, ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_VLAN, VLAN_HDR,
};
use crate::types::DropReason;

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

#[cfg(test)]
mod tests;
