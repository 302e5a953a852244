use std::net::Ipv4Addr;

use super::*;
use crate::config::{PersistenceConfig, Scheduler};
use crate::mode::snat::owner_of;
use crate::testkit;
use crate::types::{DropReason, IfIdx, Verdict};
use crate::wire::PROTO_TCP;

#[test]
fn established_flow_survives_a_backend_set_change() {
    let mut c = config(Mode::Dsr);
    let (mut d, _) = datapath(&c, 1, 0);
    let mut before = Vec::new();
    for i in 0..300u16 {
        let mut f = pkt(CLIENT, VIP, 30000 + i, 80, PROTO_TCP, SYN);
        d.process(&mut f, IfIdx(0), 0, false);
        before.push(f[5]);
    }
    // A third backend joins: Maglev maps about a third of all hashes to it.
    let b3 = Ipv4Addr::new(10, 20, 1, 13);
    c.services[0].backends.push(testkit::backend(b3));
    d.set_snapshot(snapshot(&c));
    d.set_neighbour(b3, Some([2, 0, 0, 0, 0, 0x13]));
    for i in 0..300u16 {
        let mut f = pkt(CLIENT, VIP, 30000 + i, 80, PROTO_TCP, ACK);
        d.process(&mut f, IfIdx(0), 10, false);
        assert_eq!(f[5], before[usize::from(i)], "flow {i} moved");
    }
    let mut to_new = 0;
    for i in 0..300u16 {
        let mut f = pkt(CLIENT, VIP, 50000 + i, 80, PROTO_TCP, SYN);
        d.process(&mut f, IfIdx(0), 10, false);
        to_new += usize::from(f[5] == 0x13);
    }
    assert!(to_new > 50, "new backend got {to_new} of 300 new flows");
}

#[test]
fn full_flow_table_drops_new_flows_only() {
    let mut c = config(Mode::Dsr);
    c.flows.capacity_per_core = 8;
    let (mut d, _) = datapath(&c, 1, 0);
    let mut ok = Vec::new();
    for p in 0..100u16 {
        // Established conns (SYN, then the client's ACK): never reclaimed to make room.
        let mut f = pkt(CLIENT, VIP, 20000 + p, 80, PROTO_TCP, SYN);
        if d.process(&mut f, IfIdx(0), 0, false) != Verdict::Drop(DropReason::FlowTableFull) {
            let mut a = pkt(CLIENT, VIP, 20000 + p, 80, PROTO_TCP, ACK);
            d.process(&mut a, IfIdx(0), 0, false);
            ok.push(p);
        }
    }
    assert_eq!(ok.len(), 8);
    assert_eq!(d.ctr.dropped(DropReason::FlowTableFull), 92);
    assert_eq!(d.flows.half_open(), 0);
    for p in ok {
        let mut f = pkt(CLIENT, VIP, 20000 + p, 80, PROTO_TCP, ACK);
        assert_eq!(
            d.process(&mut f, IfIdx(0), 1, false),
            Verdict::Forward(IfIdx(0))
        );
    }
}

/// A table full of half-open conns (a SYN flood, DSR) makes room for new ones by reclaiming
/// them: a real client's SYN and its ACK go through, and its established conn then stays.
#[test]
fn half_open_conns_make_room_and_established_ones_stay() {
    let mut c = config(Mode::Dsr);
    c.flows.capacity_per_core = 64;
    let (mut d, _) = datapath(&c, 1, 0);
    let flood = Ipv4Addr::new(10, 99, 0, 1);
    for p in 0..64u16 {
        let mut f = pkt(flood, VIP, 1000 + p, 80, PROTO_TCP, SYN);
        d.process(&mut f, IfIdx(0), 0, false);
    }
    // Half-open conns have half of the table; past it they recycle each other.
    assert!(
        (32..=64).contains(&d.flows.active()),
        "{}",
        d.flows.active()
    );
    assert_eq!(d.flows.half_open(), d.flows.active());
    // The real client, then many more spoofed SYNs: each reclaims a half-open conn.
    let mut syn = pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, SYN);
    assert_eq!(
        d.process(&mut syn, IfIdx(0), 1, false),
        Verdict::Forward(IfIdx(0))
    );
    let mut ack = pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, ACK);
    assert_eq!(
        d.process(&mut ack, IfIdx(0), 1, false),
        Verdict::Forward(IfIdx(0))
    );
    let mut new_ok = 0;
    for p in 0..2000u16 {
        let mut f = pkt(flood, VIP, 10000 + p, 80, PROTO_TCP, SYN);
        new_ok += usize::from(d.process(&mut f, IfIdx(0), 2, false) == Verdict::Forward(IfIdx(0)));
    }
    assert!(new_ok > 1900, "{new_ok} of 2000 SYNs found room");
    assert!(d.flows.counters.half_open_reclaimed >= 1900);
    let mut more = pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, ACK);
    assert_eq!(
        d.process(&mut more, IfIdx(0), 3, false),
        Verdict::Forward(IfIdx(0))
    );
    assert_eq!(d.flows.half_open(), d.flows.active() - 1);
}

#[test]
fn nat_conns_are_steered_to_their_owner() {
    let c = config(Mode::Gateway);
    let (mut d0, _) = datapath(&c, 2, 0);
    let (mut d1, _) = datapath(&c, 2, 1);
    let mut steered = 0;
    for p in 0..50u16 {
        let owner = owner_of(u32::from(CLIENT), 20000 + p, 2);
        let mut f = pkt(CLIENT, VIP, 20000 + p, 80, PROTO_TCP, SYN);
        let (me, other) = if owner == 0 {
            (&mut d1, &mut d0)
        } else {
            (&mut d0, &mut d1)
        };
        let v = me.process(&mut f, IfIdx(0), 0, false);
        assert_eq!(v, Verdict::Steer(owner as u16));
        assert_eq!(
            other.process(&mut f, IfIdx(0), 0, true),
            Verdict::Forward(IfIdx(0))
        );
        steered += 1;
    }
    assert_eq!(steered, 50);
    assert_eq!(d0.flows.active() + d1.flows.active(), 50);
}

#[test]
fn persistence_keeps_a_client_subnet_on_one_backend() {
    let mut c = config(Mode::Proxy);
    c.services[0].scheduler = Scheduler::RoundRobin;
    c.services[0].persistence = Some(PersistenceConfig {
        timeout_s: 300,
        netmask: 24,
    });
    let (mut d, _) = datapath(&c, 1, 0);
    let mut seen = std::collections::HashSet::new();
    for p in 0..50u16 {
        let mut f = pkt(
            Ipv4Addr::new(10, 20, 9, (p % 5) as u8 + 2),
            VIP,
            30000 + p,
            80,
            PROTO_TCP,
            SYN,
        );
        d.process(&mut f, IfIdx(0), u32::from(p), false);
        seen.insert(tuple(&f).2);
    }
    assert_eq!(seen.len(), 1, "one /24, one backend");
    let mut spread = std::collections::HashSet::new();
    for n in 0..40u8 {
        let mut f = pkt(Ipv4Addr::new(172, 16, n, 9), VIP, 30000, 80, PROTO_TCP, SYN);
        d.process(&mut f, IfIdx(0), 100, false);
        spread.insert(tuple(&f).2);
    }
    assert_eq!(spread.len(), 2, "different subnets spread");
}
