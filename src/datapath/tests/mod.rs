//! The datapath's tests: frames through `Datapath::process` (and the fast lane), one file per
//! subject, on the shared test configuration and fixtures of `crate::testkit`.

mod conns;
mod dsr;
mod fast_lane;
mod frag;
mod gateway;
mod gslb;
mod ha;
mod hardening;
mod local;
mod policy;
mod proxy;
mod robustness;
mod scaleout;

pub(super) use crate::config::Mode;
pub(super) use crate::testkit::frames::{
    ACK, SYN, dst, l4_checksum_ok, pkt, tuple, with_ip_checksum, xorshift,
};
pub(super) use crate::testkit::{
    B1, CLIENT, LB_MAC, ROUTER, ROUTER_MAC, VIP, config, datapath, datapath_in, datapath_on,
    snapshot, snapshot_with,
};
