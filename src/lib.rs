//! Switchyard: a DPDK poll-mode L4 load balancer.
//!
//! Layers (see docs/ARCHITECTURE.md): `dpdk` (the only unsafe code) < `wire` (packet views)
//! < `flow` (per-core tables) < `lb` (services, Maglev) < `mode` (forwarding modes) <
//! `datapath` (per-packet decision) < `worker` (poll loop) / `mgmt` (management core) <
//! `app` (start-up and shutdown). The binary (`main.rs`) is the CLI over `app`.

#![deny(unsafe_code)]

pub mod app;
pub mod channel;
pub mod config;
pub mod ctl;
pub mod datapath;
pub mod dpdk;
pub mod flow;
pub mod lb;
pub mod mgmt;
pub mod mode;
pub mod stats;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod types;
pub mod wire;
pub mod worker;
