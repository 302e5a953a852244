//! Direct server return: the frame goes to the backend with only its Ethernet addresses
//! changed (destination = backend MAC, source = our port MAC). IP and L4 are untouched, so no
//! checksum changes; the backend owns the VIP on a non-ARPing loopback and answers the client
//! directly, bypassing the balancer. A DSR conn has no reverse tuple.

use super::Xmit;
use crate::flow::Conn;
use crate::types::Verdict;
use crate::wire::set_macs;

/// A DSR conn is its forward tuple and backend only: the backend's replies bypass us.
#[inline]
pub fn open(conn: Conn) -> Conn {
    conn
}

#[inline]
pub fn xmit(frame: &mut [u8], x: &Xmit<'_>) -> Verdict {
    set_macs(frame, x.egress_mac, x.next_hop_mac);
    Verdict::Forward(x.egress)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Conn, Dir, FlowKey, FlowState};
    use crate::testkit::frames::{TCP_SYN, with_ip_checksum};
    use crate::types::IfIdx;
    use crate::wire::{ETH_HDR, parse_ipv4};

    #[test]
    fn dsr_rewrites_only_the_ethernet_addresses() {
        let orig = with_ip_checksum(TCP_SYN.to_vec(), ETH_HDR);
        let mut f = orig.clone();
        let ip = parse_ipv4(&f, ETH_HDR).unwrap();
        let conn = Conn::new(&FlowKey::default(), FlowState::TcpSyn, 0, 0);
        let v = xmit(
            &mut f,
            &Xmit {
                conn: &conn,
                dir: Dir::Forward,
                l3: ETH_HDR,
                end: ip.end,
                has_l4: true,
                egress: IfIdx(0),
                egress_mac: [2, 0, 0, 0, 0, 0x10],
                next_hop_mac: [2, 0, 0, 0, 0, 0x11],
                backend: (0, 0),
            },
        );
        assert_eq!(v, Verdict::Forward(IfIdx(0)));
        assert_eq!(&f[0..6], &[2, 0, 0, 0, 0, 0x11]);
        assert_eq!(&f[6..12], &[2, 0, 0, 0, 0, 0x10]);
        assert_eq!(&f[12..], &orig[12..]);
    }
}
