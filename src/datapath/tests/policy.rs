use std::net::Ipv4Addr;

use super::*;
use crate::config::OnDown;
use crate::lb::{BackendKey, BackendRuntime};
use crate::testkit;
use crate::types::{DropReason, IfIdx, Verdict};
use crate::wire::PROTO_TCP;

#[test]
fn down_backend_policy_keep_or_drop_for_established_conns() {
    for (policy, want) in [
        (OnDown::Keep, Verdict::Forward(IfIdx(0))),
        (OnDown::Drop, Verdict::Drop(DropReason::BackendDown)),
    ] {
        let mut c = config(Mode::Proxy);
        c.services[0].on_backend_down = policy;
        let (mut d, _) = datapath(&c, 1, 0);
        let mut f = pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, SYN);
        assert_eq!(
            d.process(&mut f, IfIdx(0), 0, false),
            Verdict::Forward(IfIdx(0))
        );
        let backend = dst(&f);
        // That backend fails its health checks.
        let down = move |k: &BackendKey| BackendRuntime {
            healthy: k.1 != backend,
            ..BackendRuntime::default()
        };
        d.set_snapshot(snapshot_with(&c, &down));
        let mut g = pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, ACK);
        assert_eq!(
            d.process(&mut g, IfIdx(0), 1, false),
            want,
            "policy {policy:?}"
        );
        // New flows avoid it either way.
        for p in 0..20 {
            let mut n = pkt(CLIENT, VIP, 41000 + p, 80, PROTO_TCP, SYN);
            d.process(&mut n, IfIdx(0), 1, false);
            assert_ne!(dst(&n), backend);
        }
    }
}

#[test]
fn sorry_backend_takes_new_flows_only_when_all_are_down() {
    let sorry = Ipv4Addr::new(10, 20, 1, 99);
    let mut c = config(Mode::Proxy);
    c.services[0].sorry_backend = Some(testkit::backend(sorry));
    testkit::add_neighbour(&mut c, sorry, [2, 0, 0, 0, 0, 0x99]);
    let (mut d, _) = datapath(&c, 1, 0);
    let mut f = pkt(CLIENT, VIP, 40000, 80, PROTO_TCP, SYN);
    d.process(&mut f, IfIdx(0), 0, false);
    assert_ne!(dst(&f), sorry, "sorry idle while others are up");
    let all_down = |k: &BackendKey| BackendRuntime {
        healthy: k.1 == sorry,
        ..BackendRuntime::default()
    };
    d.set_snapshot(snapshot_with(&c, &all_down));
    let mut g = pkt(CLIENT, VIP, 40001, 80, PROTO_TCP, SYN);
    assert_eq!(
        d.process(&mut g, IfIdx(0), 1, false),
        Verdict::Forward(IfIdx(0))
    );
    assert_eq!(dst(&g), sorry);
    // Without a sorry backend, all down means new flows are dropped and counted.
    let none_up = |_: &BackendKey| BackendRuntime {
        healthy: false,
        ..BackendRuntime::default()
    };
    let (mut e, _) = datapath_on(&snapshot_with(&config(Mode::Proxy), &none_up), 1024, 1, 0);
    let mut h = pkt(CLIENT, VIP, 40002, 80, PROTO_TCP, SYN);
    assert_eq!(
        e.process(&mut h, IfIdx(0), 0, false),
        Verdict::Drop(DropReason::NoBackend)
    );
}
