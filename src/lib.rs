//! Switchyard: a DPDK poll-mode L4 load balancer.
//!
//! Layers, each using only those below it (docs/ARCHITECTURE.md; `tests/layers.rs` checks):
//! `types` (the shared vocabulary) < `dpdk` (the only unsafe code), `wire` (packet views),
//! `config`, `stats` < `flow` (per-core conn tables) < `lb` (snapshot, backend choice) <
//! `mode` (forwarding modes) < `channel` (worker <-> management messages) < `datapath` (the
//! per-packet decision) < `worker` (poll loop), `mgmt` (management core) < `ctl`, `app`
//! (start-up and shutdown). The binary (`main.rs`) is the CLI over `app`; `testkit` serves the
//! tests only.

#![deny(unsafe_code)]

pub mod app;
pub mod channel;
pub mod config;
pub mod ctl;
pub mod datapath;
pub mod dpdk;
pub mod flow;
pub mod gslb;
pub mod lb;
pub mod mgmt;
pub mod mode;
pub mod stats;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod types;
pub mod wire;
pub mod worker;
