use std::net::Ipv4Addr;
use std::sync::Arc;

use super::*;
use crate::lb::Snapshot;
use crate::testkit::{self, B1};

/// The test configuration with backend 1's MAC not static: a neighbour to resolve.
fn snap() -> Arc<Snapshot> {
    let mut c = testkit::base();
    c.neighbours.retain(|n| n.address != B1);
    testkit::snapshot(&c)
}

#[test]
fn unresolved_neighbour_is_probed_then_refreshed_then_expired() {
    let s = snap();
    let cfg = ArpConfig {
        refresh_s: 30,
        retry_ms: 1000,
        expire_s: 120,
        gratuitous: true,
    };
    let t0 = Instant::now();
    let mut n = Neighbours::new(&s, &cfg, t0);
    assert_eq!(
        n.initial().len(),
        2,
        "the static router and .12 seed the workers"
    );
    let (mut p, mut b) = (Vec::new(), Vec::new());
    n.tick(&s, t0, &mut p, &mut b);
    // Only the dynamic neighbour (.11) is probed, from our address on its subnet.
    assert_eq!(p.len(), 1);
    match &p[0] {
        Control::SendArp { sender, target, .. } => {
            assert_eq!(*sender, Ipv4Addr::new(10, 20, 1, 1));
            assert_eq!(*target, B1);
        }
        other => panic!("{other:?}"),
    }
    p.clear();
    // Retry after retry_ms while unresolved.
    n.tick(&s, t0 + Duration::from_millis(500), &mut p, &mut b);
    assert!(p.is_empty());
    n.tick(&s, t0 + Duration::from_millis(1001), &mut p, &mut b);
    assert_eq!(p.len(), 1);
    p.clear();
    let ip = B1;
    let t1 = t0 + Duration::from_secs(2);
    let mac = [2, 0, 0, 0, 0, 0x11];
    assert!(n.learned(ip, mac, IfIdx(0), t1).is_some());
    assert!(n.learned(ip, mac, IfIdx(0), t1).is_none());
    assert_eq!(n.mac(ip), Some(mac));
    // Next probe only at refresh time.
    n.tick(&s, t1 + Duration::from_secs(29), &mut p, &mut b);
    assert!(p.is_empty());
    n.tick(&s, t1 + Duration::from_secs(31), &mut p, &mut b);
    assert_eq!(p.len(), 1);
    // Silent past expire_s: cleared in every worker.
    n.tick(&s, t1 + Duration::from_secs(121), &mut p, &mut b);
    assert_eq!(b.len(), 1);
    assert_eq!(n.mac(ip), None);
}

#[test]
fn on_demand_neighbours_are_resolved_from_the_matching_subnet() {
    let s = snap();
    let t0 = Instant::now();
    let mut n = Neighbours::new(&s, &ArpConfig::default(), t0);
    // A client on a connected subnet, wanted twice: resolved once, from 10.20.0.10.
    let client = Ipv4Addr::new(10, 20, 0, 77);
    n.wanted(client, IfIdx(0), t0);
    n.wanted(client, IfIdx(0), t0);
    let (mut p, mut b) = (Vec::new(), Vec::new());
    n.tick(&s, t0, &mut p, &mut b);
    let asks: Vec<_> = p
        .iter()
        .filter_map(|c| match c {
            Control::SendArp { sender, target, .. } => Some((*sender, *target)),
            _ => None,
        })
        .filter(|(_, t)| *t == client)
        .collect();
    assert_eq!(asks, [(Ipv4Addr::new(10, 20, 0, 10), client)]);
}
