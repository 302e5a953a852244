//! Wire formats: zero-copy views over frame bytes. No DPDK type appears here, so everything
//! is unit-tested on byte slices.
//!
//! The field accessors are smoltcp's `wire` module (Ethernet, ARP, IPv4, ICMPv4, TCP, UDP);
//! this module adds what smoltcp leaves out and what the data plane needs on top, one file per
//! concern:
//!
//! | file | |
//! |---|---|
//! | `eth` | Ethernet and 802.1Q: parse, MAC rewrite, VLAN re-tagging |
//! | `ipv4` | one validation pass into [`DropReason`]s, the header checksum check, TTL |
//! | `l4` | TCP/UDP ports and TCP flags |
//! | `arp` | ARP parsed, answered in place, requests and gratuitous ARP built |
//! | `icmp` | echo replies, ICMP errors parsed, translated and built |
//! | `nat` | address/port translation with incremental checksums (RFC 1624) |
//! | `csum` | the checksum update and field access the rewrites share |
//! | `tcp` | the SYN proxy's segments: sequence numbers, bare segments written in place |
//! | `dns` | GSLB: ordinary DNS queries read and answered in place by the workers |
//!
//! [`DropReason`]: crate::types::DropReason

mod arp;
mod csum;
mod dns;
mod eth;
mod icmp;
mod ipv4;
mod l4;
mod nat;
mod tcp;

pub use arp::{ArpMeta, arp_frame_len, arp_request_to_reply, build_arp_request, parse_arp};
pub use csum::{csum_replace16, csum_replace32};
pub use dns::{
    DNS_PORT, DnsParse, DnsQuery, EDNS_PAYLOAD, TYPE_A, dns_answer_in_place, parse_dns_query,
};
pub use eth::{L2, parse_l2, retag, set_macs};
pub use icmp::{
    ICMP_FRAG_NEEDED, ICMP_NET_UNREACH, ICMP_PARAM_PROBLEM, ICMP_PORT_UNREACH, ICMP_TIME_EXCEEDED,
    ICMP_UNREACH, IcmpError, icmp_echo_to_reply, parse_icmp_error, rewrite_icmp_error,
    to_icmp_error,
};
pub use ipv4::{
    Ipv4Meta, PROTO_VRRP, decrement_ttl, ipv4_header_checksum_ok, ipv4_header_checksum_ok20,
    is_vrrp_advert, parse_ipv4,
};
pub use l4::{L4Meta, TcpFlags, parse_l4};
pub use nat::{
    NAT_FIXED, Rewrite, l4_csum_end, nat_apply, nat_apply_fixed, nat_forward, rewrite_ipv4,
};
pub use tcp::{
    Bare, TH_ACK, TH_FIN, TH_RST, TH_SYN, TcpSeg, tcp_rewrite_bare, tcp_seg, tcp_shift_seq,
};

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
