//! `[bgp]`: this node is one of several behind ECMP routers; BIRD speaks BGP for it.
//! Switchyard decides what is announced: a /32 route per announceable VIP in a kernel
//! routing table that BIRD's kernel protocol learns and exports to its peers.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, err, ipv4_text};

/// `[bgp]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BgpConfig {
    /// The kernel routing table the announced VIPs are written to (BIRD: `kernel table N`
    /// with `learn`). Not 0, 253-255 or one of Switchyard's own (0x53590000 and up).
    #[serde(default = "default_table")]
    pub table: u32,
    /// A VIP is announced while every service on it has at least this many backends up.
    #[serde(default = "default_min_backends_up")]
    pub min_backends_up: u32,
    /// On a clean stop: every VIP withdrawn, then this long for the routers to move the
    /// flows before the data plane stops.
    #[serde(default = "default_withdraw_grace_ms")]
    pub withdraw_grace_ms: u32,
    /// Per-VIP route attributes (MED, a community value) for primary/backup sites.
    #[serde(default)]
    pub vips: Vec<BgpVipConfig>,
}

/// `[[bgp.vips]]`: what BIRD is told with a VIP's route, through the kernel route's metric
/// (BIRD: `krt_metric`) and realm (`krt_realm`); conf/bird.conf maps them to the MED and a
/// community.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BgpVipConfig {
    #[serde(deserialize_with = "ipv4_text::one")]
    pub vip: Ipv4Addr,
    #[serde(default)]
    pub med: Option<u32>,
    #[serde(default)]
    pub community: Option<u16>,
}

fn default_table() -> u32 {
    100
}
fn default_min_backends_up() -> u32 {
    1
}
fn default_withdraw_grace_ms() -> u32 {
    2000
}

impl Config {
    pub(super) fn validate_bgp(&self) -> Result<(), ConfigError> {
        let Some(b) = &self.bgp else { return Ok(()) };
        if matches!(b.table, 0 | 253..=255) || b.table >= 0x5359_0000 {
            return Err(err(
                "bgp.table",
                "not 0, 253-255 (the kernel's) or 0x53590000 and above (Switchyard's own)",
            ));
        }
        if b.withdraw_grace_ms > 600_000 {
            return Err(err("bgp.withdraw_grace_ms", "at most 600000"));
        }
        if self.ha.is_some() {
            return Err(err(
                "bgp",
                "[bgp] (ECMP scale-out) and [ha] (an active/backup pair) exclude each other",
            ));
        }
        let mut seen = HashSet::new();
        for (i, v) in b.vips.iter().enumerate() {
            if !self.services.iter().any(|s| s.vip == v.vip) {
                return Err(err(
                    format!("bgp.vips[{i}].vip"),
                    format!("{} is no service's VIP", v.vip),
                ));
            }
            if !seen.insert(v.vip) {
                return Err(err(format!("bgp.vips[{i}].vip"), "listed twice"));
            }
        }
        // Each VIP's route names the kernel interface of the interface announcing it.
        for (i, s) in self.services.iter().enumerate() {
            if !self.vip_interface_has_exception_path(s) {
                return Err(err(
                    format!("services[{i}].vip"),
                    "with [bgp] a VIP's interface needs exception_path = true (BIRD peers \
                     through the kernel interface, the VIP's route names it)",
                ));
            }
        }
        Ok(())
    }
}
