use std::net::Ipv4Addr;

use super::*;
use crate::channel::Event;
use crate::types::{DropReason, IfIdx, Verdict};
use crate::wire::{ARP_FRAME_LEN, PROTO_TCP, PROTO_UDP, build_arp_request};

#[test]
fn arp_for_vip_and_snat_is_answered_others_dropped() {
    let mut d = datapath_in(Mode::Proxy);
    for (target, want) in [
        (VIP, Verdict::Reply),
        (Ipv4Addr::new(10, 20, 1, 1), Verdict::Reply),
        (
            Ipv4Addr::new(10, 20, 0, 99),
            Verdict::Drop(DropReason::ArpNotForUs),
        ),
    ] {
        let mut f = vec![0u8; ARP_FRAME_LEN];
        build_arp_request(&mut f, None, ROUTER_MAC, ROUTER, target);
        assert_eq!(d.process(&mut f, IfIdx(0), 0, false), want, "{target}");
    }
}

#[test]
fn unresolved_next_hop_is_a_counted_drop_and_a_resolve_request() {
    let (mut d, ev) = datapath(&config(Mode::Dsr), 1, 0);
    d.set_neighbour(Ipv4Addr::new(10, 20, 1, 11), None);
    d.set_neighbour(Ipv4Addr::new(10, 20, 1, 12), None);
    let mut f = pkt(CLIENT, VIP, 40002, 80, PROTO_TCP, SYN);
    assert_eq!(
        d.process(&mut f, IfIdx(0), 0, false),
        Verdict::Drop(DropReason::NoNeighbour)
    );
    assert!(matches!(ev.pop(), Some(Event::Resolve { .. })));
    // Asked once per address per interval, not per packet.
    let mut g = pkt(CLIENT, VIP, 40002, 80, PROTO_TCP, ACK);
    d.process(&mut g, IfIdx(0), 1, false);
    assert!(ev.pop().is_none());
}

#[test]
fn non_service_traffic_is_dropped_by_reason() {
    let mut d = datapath_in(Mode::Dsr);
    let mut f = pkt(CLIENT, VIP, 40003, 81, PROTO_TCP, SYN);
    assert_eq!(
        d.process(&mut f, IfIdx(0), 0, false),
        Verdict::Drop(DropReason::NoService)
    );
    let mut g = pkt(CLIENT, Ipv4Addr::new(10, 20, 0, 50), 1, 2, PROTO_UDP, 0);
    assert_eq!(
        d.process(&mut g, IfIdx(0), 0, false),
        Verdict::Drop(DropReason::NotForUs)
    );
    let mut h = pkt(CLIENT, VIP, 40003, 80, PROTO_TCP, SYN);
    h[0] = 0x04; // another host's MAC (the one-arm port is promiscuous)
    assert_eq!(
        d.process(&mut h, IfIdx(0), 0, false),
        Verdict::Drop(DropReason::NotForUs)
    );
    d.publish();
    assert_eq!(d.ctr.check_invariants(), Ok(()));
}
