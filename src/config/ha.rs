//! `[ha]`: this node is one of an active/backup pair. keepalived (VRRP) elects which node owns
//! the floating addresses (the VIPs, the SNAT addresses and `floating_addresses`) and puts them
//! on the exception-path interface; Switchyard answers for them and balances them only while
//! they are there, and streams its conns to the peer so the other node can carry them on.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, Mode, err, ipv4_text};

/// `[ha]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HaConfig {
    /// The peer's sync address.
    #[serde(deserialize_with = "ipv4_text::one")]
    pub peer: Ipv4Addr,
    /// Our sync address: one of our own (not floating) interface addresses, on an interface
    /// with the exception path (sync datagrams travel through the kernel).
    #[serde(deserialize_with = "ipv4_text::one")]
    pub sync_address: Ipv4Addr,
    /// UDP port of the sync protocol, on both nodes.
    #[serde(default = "default_sync_port")]
    pub sync_port: u16,
    /// Shared key, hex (at least 16 bytes): every sync datagram then carries an HMAC-SHA256
    /// of it, and datagrams without the right one are dropped (counted). Empty: no HMAC.
    #[serde(default)]
    pub key: String,
    /// Conn changes are batched this long at most before they are sent.
    #[serde(default = "default_batch_interval_ms")]
    pub batch_interval_ms: u32,
    /// Addresses that float with the VIPs besides the VIPs and SNAT addresses: e.g. the
    /// servers' gateway address in gateway mode. Each in a connected subnet.
    #[serde(default, deserialize_with = "ipv4_text::list")]
    pub floating_addresses: Vec<Ipv4Addr>,
    /// How long a (re)started node waits for the peer's bulk sync before it declares itself
    /// ready without it (the peer is gone too).
    #[serde(default = "default_bulk_timeout_ms")]
    pub bulk_timeout_ms: u32,
    /// Conns that saw traffic are re-sent to the peer once per this period, which ages its
    /// copies from the last one it heard of (keep it well under the shortest idle timeout
    /// in `[flows.timeouts]` that matters).
    #[serde(default = "default_refresh_s")]
    pub refresh_s: u32,
}

fn default_sync_port() -> u16 {
    7789
}
fn default_batch_interval_ms() -> u32 {
    100
}
fn default_bulk_timeout_ms() -> u32 {
    3000
}
fn default_refresh_s() -> u32 {
    10
}

impl HaConfig {
    /// The key's bytes (`None`: no key).
    pub fn key_bytes(&self) -> Option<Vec<u8>> {
        super::hex_bytes(&self.key)
    }
}

impl Config {
    /// The addresses that float between the pair's nodes: every VIP, every SNAT address and
    /// `[ha] floating_addresses` (empty without `[ha]`).
    pub fn floating(&self) -> HashSet<Ipv4Addr> {
        let Some(ha) = &self.ha else {
            return HashSet::new();
        };
        self.services
            .iter()
            .map(|s| s.vip)
            .chain(
                self.interfaces
                    .iter()
                    .flat_map(|i| i.snat_addresses.iter().copied()),
            )
            .chain(ha.floating_addresses.iter().copied())
            .collect()
    }

    pub(super) fn validate_ha(&self) -> Result<(), ConfigError> {
        let Some(ha) = &self.ha else {
            return Ok(());
        };
        let own: Vec<(usize, Ipv4Addr)> = self
            .interfaces
            .iter()
            .enumerate()
            .flat_map(|(n, i)| {
                std::iter::once(i.address.addr)
                    .chain(i.secondary_addresses.iter().map(|c| c.addr))
                    .map(move |a| (n, a))
            })
            .collect();
        let Some(&(n, _)) = own.iter().find(|(_, a)| *a == ha.sync_address) else {
            return Err(err(
                "ha.sync_address",
                format!(
                    "{} is not one of this node's interface addresses",
                    ha.sync_address
                ),
            ));
        };
        let ifc = &self.interfaces[n];
        if !ifc.exception_path {
            return Err(err(
                "ha.sync_address",
                format!(
                    "interface {:?} has no exception path (sync travels through the kernel)",
                    ifc.name
                ),
            ));
        }
        let subnets: Vec<_> = self
            .interfaces
            .iter()
            .flat_map(|i| std::iter::once(i.address).chain(i.secondary_addresses.iter().copied()))
            .collect();
        if ha.peer == ha.sync_address || !subnets.iter().any(|c| c.contains(ha.peer)) {
            return Err(err(
                "ha.peer",
                format!("{} is not another address on a connected subnet", ha.peer),
            ));
        }
        if ha.sync_port == 0 {
            return Err(err("ha.sync_port", "must be 1-65535"));
        }
        if !ha.key.is_empty()
            && (ha.key.len() < 32 || ha.key.len() % 2 != 0 || ha.key_bytes().is_none())
        {
            return Err(err(
                "ha.key",
                "must be hex, at least 32 digits (16 bytes), or empty for no HMAC",
            ));
        }
        if ha.batch_interval_ms == 0 || ha.batch_interval_ms > 10_000 {
            return Err(err("ha.batch_interval_ms", "must be 1-10000"));
        }
        if ha.refresh_s == 0 || ha.refresh_s > 3600 {
            return Err(err("ha.refresh_s", "must be 1-3600"));
        }
        if ha.bulk_timeout_ms < 100 || ha.bulk_timeout_ms > 600_000 {
            return Err(err("ha.bulk_timeout_ms", "must be 100-600000"));
        }
        for (j, a) in ha.floating_addresses.iter().enumerate() {
            let k = format!("ha.floating_addresses[{j}]");
            if own.iter().any(|(_, o)| o == a) {
                return Err(err(
                    k,
                    format!(
                        "{a} is an interface address of this node; floating ones belong to no node"
                    ),
                ));
            }
            if !subnets.iter().any(|c| c.contains(*a)) {
                return Err(err(k, format!("{a} is in no interface's subnet")));
            }
        }
        // A proxy conn's reverse tuple names its SNAT address: only a floating one is still
        // ours on the other node. The interface's own address (the default) does not move.
        for (i, s) in self.services.iter().enumerate() {
            if s.mode != Mode::Proxy {
                continue;
            }
            let via = match &s.interface {
                Some(name) => self.interfaces.iter().position(|x| &x.name == name),
                None => self
                    .interfaces
                    .iter()
                    .position(|x| x.address.contains(s.vip)),
            }
            .unwrap_or(0);
            if self.interfaces[via].snat_addresses.is_empty() {
                return Err(err(
                    format!("interfaces[{via}].snat_addresses"),
                    format!(
                        "services[{i}] is in proxy mode: with [ha] its SNAT addresses must float \
                         (list them here and in keepalived's virtual_ipaddress), or its conns \
                         lose their tuple on failover"
                    ),
                ));
            }
        }
        Ok(())
    }
}
