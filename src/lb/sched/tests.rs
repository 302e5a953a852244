use std::net::Ipv4Addr;

use super::*;
use crate::config::{Mode, Protocol};
use crate::lb::maglev::{MaglevBackend, MaglevTable};
use crate::types::IfIdx;

fn setup(weights: &[u32]) -> (Service, Vec<Backend>) {
    let backends: Vec<Backend> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| Backend {
            addr: Ipv4Addr::new(10, 20, 0, 11 + i as u8),
            port: 80,
            weight: *w,
            cfg_weight: *w,
            accept_existing: true,
            forced: false,
            removed: false,
            sorry: false,
            remote: false,
            iface: IfIdx(0),
            next_hop: Ipv4Addr::new(10, 20, 0, 11 + i as u8),
            service: 0,
        })
        .collect();
    let mb: Vec<MaglevBackend> = backends
        .iter()
        .map(|b| MaglevBackend {
            addr: b.addr,
            weight: b.weight,
        })
        .collect();
    let svc = Service {
        name: "s".into(),
        vip: Ipv4Addr::new(10, 20, 0, 100),
        port: 80,
        proto: Protocol::Tcp,
        mode: Mode::Proxy,
        scheduler: Scheduler::RoundRobin,
        persistence: None,
        iface: IfIdx(0),
        backends: (0..weights.len() as u32).map(BackendId).collect(),
        maglev: MaglevTable::build(&mb, 65537),
        health: None,
        on_down: crate::config::OnDown::Keep,
        redirect: false,
        has_remote: false,
        removed: false,
        owned: true,
        acl: None,
        new_flows_per_s: 0,
        new_flows_per_source_per_s: 0,
    };
    (svc, backends)
}

fn run(
    kind: Scheduler,
    weights: &[u32],
    n: usize,
    active: &dyn Fn(BackendId) -> u32,
) -> Vec<usize> {
    let (svc, backends) = setup(weights);
    let mut st = SchedState::for_service(&svc);
    let mut counts = vec![0; weights.len()];
    for i in 0..n {
        let h = crate::types::fmix64(i as u64 + 1);
        let inp = PickInput {
            service: &svc,
            backends: &backends,
            flow_hash: h,
            source_hash: h,
            active,
        };
        counts[pick(kind, &mut st, &inp).unwrap()] += 1;
    }
    counts
}

#[test]
fn round_robin_alternates_and_skips_weight_zero() {
    let c = run(Scheduler::RoundRobin, &[1, 0, 1], 100, &|_| 0);
    assert_eq!(c, vec![50, 0, 50]);
}

#[test]
fn weighted_round_robin_is_exact_per_period() {
    let c = run(Scheduler::WeightedRoundRobin, &[1, 2, 5], 800, &|_| 0);
    assert_eq!(c, vec![100, 200, 500]);
}

#[test]
fn hash_schedulers_honour_weights_within_tolerance() {
    for kind in [Scheduler::Maglev, Scheduler::SourceHash] {
        let c = run(kind, &[1, 3], 40_000, &|_| 0);
        let share = c[1] as f64 / 40_000.0;
        assert!((share - 0.75).abs() < 0.02, "{kind:?}: {share}");
    }
}

#[test]
fn least_connections_prefers_the_idle_backend() {
    // Backend 0 has 10 live conns, backend 1 none: every pick goes to 1.
    let busy = |b: BackendId| if b.0 == 0 { 10 } else { 0 };
    let c = run(Scheduler::LeastConnections, &[1, 1], 20, &busy);
    assert_eq!(c, vec![0, 20]);
}

#[test]
fn weighted_least_connections_divides_by_weight() {
    // 6 conns on a weight-3 backend (2 per unit) vs 3 on weight 1 (3 per unit).
    let load = |b: BackendId| if b.0 == 0 { 6 } else { 3 };
    let c = run(Scheduler::WeightedLeastConnections, &[3, 1], 10, &load);
    assert_eq!(c, vec![10, 0]);
    let c = run(Scheduler::LeastConnections, &[3, 1], 10, &load);
    assert_eq!(c, vec![0, 10]);
}

#[test]
fn all_weights_zero_picks_nothing() {
    let (svc, backends) = setup(&[0, 0]);
    for kind in [
        Scheduler::RoundRobin,
        Scheduler::WeightedRoundRobin,
        Scheduler::LeastConnections,
        Scheduler::WeightedLeastConnections,
        Scheduler::SourceHash,
        Scheduler::Maglev,
    ] {
        let mut st = SchedState::for_service(&svc);
        let inp = PickInput {
            service: &svc,
            backends: &backends,
            flow_hash: 1,
            source_hash: 1,
            active: &|_| 0,
        };
        assert_eq!(pick(kind, &mut st, &inp), None, "{kind:?}");
    }
}

#[test]
fn load_counts_other_workers_only() {
    let l = BackendLoad::new(2);
    l.publish(0, &[5, 1]);
    l.publish(1, &[2, 7]);
    assert_eq!(l.others(0, BackendId(1)), 7);
    assert_eq!(l.others(1, BackendId(0)), 5);
    assert_eq!(l.total(BackendId(0)), 7);
}
