//! The shared test kit: the one test configuration (`tests/data/base.toml`), typed so a test
//! changes only what its case is about; the snapshot and datapath fixtures built from it; and
//! the frames tests send through them ([`frames`]). Unit tests, integration tests and benches
//! use it (the `testkit` feature, which the crate's dev-dependency on itself turns on);
//! perf/bench.py reads the same file. Not part of the balancer.

pub mod frames;

use std::net::Ipv4Addr;
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::channel::Event;
use crate::config::{BackendConfig, Config, Mode};
use crate::datapath::{Datapath, WorkerInfo};
use crate::lb::sched::BackendLoad;
use crate::lb::{BackendKey, BackendRuntime, IdRegistry, Snapshot};
use crate::types::MacAddr;

/// The test configuration's text.
pub const BASE_TOML: &str = include_str!("../../tests/data/base.toml");
/// The test configuration's `[gslb]` (tests/data/gslb.toml).
pub const GSLB_TOML: &str = include_str!("../../tests/data/gslb.toml");

/// The balancer's port MAC in the test configuration.
pub const LB_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
/// The router's MAC (the source of every client frame).
pub const ROUTER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
/// The backends' MACs (static neighbours).
pub const B1_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x11];
pub const B2_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x12];
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 20, 9, 2);
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 100);
/// The balancer's own address (the default SNAT address).
pub const LB_ADDR: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 10);
pub const ROUTER: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 1);
pub const B1: Ipv4Addr = Ipv4Addr::new(10, 20, 1, 11);
pub const B2: Ipv4Addr = Ipv4Addr::new(10, 20, 1, 12);

/// The test configuration as it is in the file.
pub fn base() -> Config {
    Config::from_toml(BASE_TOML).unwrap_or_else(|e| panic!("tests/data/base.toml: {e}"))
}

/// The test configuration's `[gslb]` section (tests/data/gslb.toml).
pub fn gslb() -> crate::config::GslbConfig {
    toml::from_str(GSLB_TOML).unwrap_or_else(|e| panic!("tests/data/gslb.toml: {e}"))
}

/// The test configuration with every service in `mode`.
pub fn config(mode: Mode) -> Config {
    let mut c = base();
    for s in &mut c.services {
        s.mode = mode;
    }
    c
}

/// A backend entry of `address` with the defaults (service port, weight 1).
pub fn backend(address: Ipv4Addr) -> BackendConfig {
    BackendConfig {
        address,
        port: None,
        weight: 1,
        remote: false,
    }
}

/// Adds a static neighbour (so no test waits for ARP).
pub fn add_neighbour(c: &mut Config, address: Ipv4Addr, mac: [u8; 6]) {
    c.neighbours.push(crate::config::NeighbourConfig {
        address,
        mac: MacAddr(mac),
    });
}

/// `cfg` as a TOML file the binary reads (integration tests, perf).
pub fn to_toml(cfg: &Config) -> String {
    toml::to_string(cfg).unwrap_or_else(|e| panic!("test config as TOML: {e}"))
}

/// The snapshot of `cfg` (validated first: a test edit that breaks it fails here, named),
/// each backend's run-time state from `runtime`.
pub fn snapshot_with(
    cfg: &Config,
    runtime: &dyn Fn(&BackendKey) -> BackendRuntime,
) -> Arc<Snapshot> {
    cfg.validate()
        .unwrap_or_else(|e| panic!("test config invalid: {e}"));
    let macs = vec![LB_MAC; cfg.interfaces.len()];
    let snap = Snapshot::build_with(cfg, &macs, None, &mut IdRegistry::default(), runtime, None)
        .unwrap_or_else(|e| panic!("test config does not build: {e}"));
    Arc::new(snap)
}

/// The test configuration in `mode` as one node of an HA pair: this node 10.20.0.10, its peer
/// 10.20.0.20, the exception path on, a floating SNAT address (10.20.0.50) and the servers'
/// floating gateway address 10.20.1.1 (the node's own one there becomes 10.20.1.2).
pub fn ha_config(mode: Mode) -> Config {
    let mut c = config(mode);
    let ifc = &mut c.interfaces[0];
    ifc.exception_path = true;
    ifc.snat_addresses = vec![SNAT_FLOAT];
    ifc.secondary_addresses = vec!["10.20.1.2/24".parse().expect("a prefix")];
    c.ha = Some(crate::config::HaConfig {
        peer: Ipv4Addr::new(10, 20, 0, 20),
        sync_address: LB_ADDR,
        sync_port: 7789,
        key: String::new(),
        batch_interval_ms: 10,
        floating_addresses: vec![Ipv4Addr::new(10, 20, 1, 1)],
        bulk_timeout_ms: 3000,
        refresh_s: 10,
    });
    c
}

/// The floating SNAT address of [`ha_config`].
pub const SNAT_FLOAT: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 50);

/// The snapshot of an HA node's `cfg` owning `owned` of its floating addresses.
pub fn snapshot_owning(cfg: &Config, owned: &std::collections::HashSet<Ipv4Addr>) -> Arc<Snapshot> {
    cfg.validate()
        .unwrap_or_else(|e| panic!("test config invalid: {e}"));
    let macs = vec![LB_MAC; cfg.interfaces.len()];
    let snap = Snapshot::build_with(
        cfg,
        &macs,
        None,
        &mut IdRegistry::default(),
        &|_| BackendRuntime::default(),
        Some(owned),
    )
    .unwrap_or_else(|e| panic!("test config does not build: {e}"));
    Arc::new(snap)
}

/// The snapshot of `cfg`, every backend healthy.
pub fn snapshot(cfg: &Config) -> Arc<Snapshot> {
    snapshot_with(cfg, &|_| BackendRuntime::default())
}

/// Worker `me` of `workers` on `snap`, with the snapshot's static neighbours in its cache
/// (as management seeds them), and the queue its events go to.
pub fn datapath_on(
    snap: &Arc<Snapshot>,
    flow_capacity: usize,
    workers: usize,
    me: usize,
) -> (Datapath, Arc<ArrayQueue<Event>>) {
    let events = Arc::new(ArrayQueue::new(64));
    let info = WorkerInfo {
        index: me,
        count: workers,
        flow_capacity,
        persist_capacity: 1024,
    };
    let load = Arc::new(BackendLoad::new(workers));
    let mut d = Datapath::new(snap.clone(), info, events.clone(), load);
    for n in &snap.neighbours {
        if let Some(mac) = n.static_mac {
            d.set_neighbour(n.addr, Some(mac));
        }
    }
    (d, events)
}

/// Worker `me` of `workers` on `cfg` (see [`datapath_on`]).
pub fn datapath(cfg: &Config, workers: usize, me: usize) -> (Datapath, Arc<ArrayQueue<Event>>) {
    let cap = cfg.flows.capacity_per_core as usize;
    datapath_on(&snapshot(cfg), cap, workers, me)
}

/// The one-worker datapath of the test configuration in `mode`.
pub fn datapath_in(mode: Mode) -> Datapath {
    datapath(&config(mode), 1, 0).0
}
