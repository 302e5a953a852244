use super::*;
use crate::datapath::Datapath;
use crate::datapath::frag::{FragAction, FragTable};
use crate::flow::FlowKey;
use crate::types::{DropReason, IfIdx, Verdict};
use crate::wire::{ETH_HDR, PROTO_UDP, parse_ipv4};

/// The first and the last fragment of one UDP datagram from the client to VIP:53.
fn fragment_pair(sport: u16) -> (Vec<u8>, Vec<u8>) {
    let mut first = pkt(CLIENT, VIP, sport, 53, PROTO_UDP, 0);
    first[14 + 4..14 + 6].copy_from_slice(&0x4242u16.to_be_bytes());
    first[14 + 6] = 0x20; // MF
    let first = with_ip_checksum(first, ETH_HDR);
    let mut later = first.clone();
    later[14 + 6] = 0x00;
    later[14 + 7] = 0x02; // offset 16 bytes, last fragment
    (first, with_ip_checksum(later, ETH_HDR))
}

#[test]
fn later_fragments_follow_the_first() {
    let mut d = datapath_in(Mode::Gateway);
    let (mut first, mut later) = fragment_pair(5353);
    let mut early = later.clone();
    assert_eq!(
        d.process(&mut early, IfIdx(0), 0, false),
        Verdict::Drop(DropReason::FragmentNoFlow),
        "a later fragment before its first is dropped"
    );
    assert_eq!(
        d.process(&mut first, IfIdx(0), 1, false),
        Verdict::Forward(IfIdx(0))
    );
    let backend = parse_ipv4(&first, ETH_HDR).unwrap().dst;
    assert_eq!(
        d.process(&mut later, IfIdx(0), 2, false),
        Verdict::Forward(IfIdx(0))
    );
    let ip = parse_ipv4(&later, ETH_HDR).expect("IPv4 checksum updated");
    assert_eq!(ip.dst, backend);
    assert_eq!(
        &later[34..],
        &early[34..],
        "later fragment payload untouched"
    );
}

#[test]
fn a_later_fragment_does_not_follow_a_conn_that_ended() {
    // UDP conns idle for over a second end; the fragment entry lives two.
    let mut c = config(Mode::Proxy);
    c.flows.timeouts.udp_s = 1;
    let (mut d, _) = datapath(&c, 1, 0);
    let (first, later) = fragment_pair(5353);
    let other = pkt(CLIENT, VIP, 5354, 53, PROTO_UDP, 0);
    let at = |d: &mut Datapath, f: &[u8], now| d.process(&mut f.to_vec(), IfIdx(0), now, false);
    let fwd = Verdict::Forward(IfIdx(0));
    assert_eq!(at(&mut d, &first, 0), fwd);
    assert_eq!(at(&mut d, &later, 100), fwd);
    // The conn ends (reclaimed by the sweep) and another flow's conn is created, which
    // may take the ended one's place in the table.
    d.sweep(1_200, usize::MAX);
    assert_eq!(d.flows.active(), 0);
    assert_eq!(at(&mut d, &other, 1_200), fwd);
    assert_eq!(
        at(&mut d, &later, 1_300),
        Verdict::Drop(DropReason::FragmentNoFlow),
        "the fragment's conn is gone: dropped, not sent along another conn"
    );
}

#[test]
fn later_fragments_find_the_first_ones_decision_until_timeout() {
    let mut t = FragTable::new(2000);
    assert_eq!(t.find(1, 2, 7, 17, 0), None);
    t.remember(1, 2, 7, 17, FragAction::Conn(FlowKey::default()), 100);
    assert_eq!(
        t.find(1, 2, 7, 17, 150),
        Some(FragAction::Conn(FlowKey::default()))
    );
    assert_eq!(t.find(1, 2, 8, 17, 150), None, "other datagram");
    assert_eq!(t.find(1, 2, 7, 17, 2101), None, "expired");
}
