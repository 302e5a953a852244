//! Direct server return: the frame goes to the backend with only its Ethernet addresses
//! changed (destination = backend MAC, source = our port MAC). IP and L4 are untouched, so no
//! checksum changes; the backend owns the VIP on a non-ARPing loopback and answers the client
//! directly, bypassing the balancer.

use super::Xmit;
use crate::datapath::Verdict;
use crate::wire::set_macs;

#[inline]
pub fn xmit(frame: &mut [u8], x: &Xmit<'_>) -> Verdict {
    set_macs(frame, x.egress.mac, x.next_hop_mac);
    Verdict::Forward(x.egress_idx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Ipv4Cidr;
    use crate::lb::{Backend, IfIdx, Interface, NeighIdx};
    use crate::wire::tests::{TCP_SYN, with_ip_checksum};
    use crate::wire::{ETH_HDR, parse_ipv4};
    use std::net::Ipv4Addr;

    #[test]
    fn dsr_rewrites_only_the_ethernet_addresses() {
        let orig = with_ip_checksum(TCP_SYN.to_vec(), ETH_HDR);
        let mut f = orig.clone();
        let ip = parse_ipv4(&f, ETH_HDR).unwrap();
        let egress = Interface {
            name: "lan".into(),
            mac: [2, 0, 0, 0, 0, 0x10],
            addr: Ipv4Addr::new(10, 20, 0, 10),
            net: Ipv4Cidr {
                addr: Ipv4Addr::new(10, 20, 0, 10),
                len: 24,
            },
            vlan: None,
        };
        let backend = Backend {
            addr: Ipv4Addr::new(10, 20, 0, 11),
            weight: 1,
            iface: IfIdx(0),
            neigh: NeighIdx(0),
            service: 0,
        };
        let v = xmit(
            &mut f,
            &Xmit {
                ip: &ip,
                backend: &backend,
                egress: &egress,
                egress_idx: IfIdx(0),
                next_hop_mac: [2, 0, 0, 0, 0, 0x11],
            },
        );
        assert_eq!(v, Verdict::Forward(IfIdx(0)));
        assert_eq!(&f[0..6], &[2, 0, 0, 0, 0, 0x11]);
        assert_eq!(&f[6..12], &[2, 0, 0, 0, 0, 0x10]);
        assert_eq!(&f[12..], &orig[12..]);
    }
}
