//! Checks of what would start but not work (hardening): addresses that collide (a VIP that is
//! also an interface address or a backend, a backend or SNAT address that is a VIP or ours),
//! limits the data plane has (backends per node, conn-table memory, timeouts), cores that do
//! not exist. Each error names the key.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use super::{Config, ConfigError, err};
use crate::types::MAX_BACKENDS;

/// Bytes one conn takes in a worker's table (with its bucket share), for the memory check.
const CONN_BYTES: u64 = 64;
/// At most this share of the machine's memory for the conn tables of all workers.
const TABLE_MEMORY_SHARE: u64 = 2;
/// Largest idle timeout, seconds (7 days).
pub const MAX_TIMEOUT_S: u32 = 7 * 24 * 3600;
/// Largest health-check rise / fall.
pub const MAX_RISE_FALL: u32 = 100;

/// The machine's memory (`/proc/meminfo`'s MemTotal).
fn physical_memory() -> Option<u64> {
    let m = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// How many cores the machine numbers (one past the highest online core).
fn cpus() -> Option<usize> {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").ok()?;
    online
        .trim()
        .split(',')
        .filter_map(|r| r.rsplit('-').next()?.parse::<usize>().ok())
        .max()
        .map(|m| m + 1)
}

impl Config {
    /// This node's own addresses: every interface's address and secondary addresses.
    pub fn own_addresses(&self) -> HashSet<Ipv4Addr> {
        self.interfaces
            .iter()
            .flat_map(|i| {
                std::iter::once(i.address.addr).chain(i.secondary_addresses.iter().map(|c| c.addr))
            })
            .collect()
    }

    pub(super) fn validate_sanity(&self) -> Result<(), ConfigError> {
        // Cores: EAL fails late and without naming the key.
        if let Some(n) = cpus() {
            let c = &self.cores;
            if c.management as usize >= n {
                return Err(err(
                    "cores.management",
                    format!(
                        "core {} does not exist (this machine has 0-{})",
                        c.management,
                        n - 1
                    ),
                ));
            }
            for (i, w) in c.workers.iter().enumerate() {
                if *w as usize >= n {
                    return Err(err(
                        format!("cores.workers[{i}]"),
                        format!("core {w} does not exist (this machine has 0-{})", n - 1),
                    ));
                }
            }
        }
        // Conn tables are allocated up front on every worker.
        let per_worker = (u64::from(self.flows.capacity_per_core)
            + u64::from(self.flows.persistence_capacity_per_core))
            * CONN_BYTES;
        let total = per_worker * self.cores.workers.len() as u64;
        if let Some(mem) = physical_memory()
            && total > mem / TABLE_MEMORY_SHARE
        {
            return Err(err(
                "flows.capacity_per_core",
                format!(
                    "{} conns (and {} persistence entries) per worker on {} workers take about \
                     {} MiB, more than half of this machine's {} MiB",
                    self.flows.capacity_per_core,
                    self.flows.persistence_capacity_per_core,
                    self.cores.workers.len(),
                    total >> 20,
                    mem >> 20
                ),
            ));
        }
        let t = &self.flows.timeouts;
        for (k, v) in [
            ("tcp_syn_s", t.tcp_syn_s),
            ("tcp_established_s", t.tcp_established_s),
            ("tcp_closing_s", t.tcp_closing_s),
            ("udp_s", t.udp_s),
        ] {
            if v == 0 || v > MAX_TIMEOUT_S {
                return Err(err(
                    format!("flows.timeouts.{k}"),
                    format!("{v} s: must be 1-{MAX_TIMEOUT_S} (0 would end every conn at once)"),
                ));
            }
        }
        let pr = &self.protection;
        if pr.syn_cookie_half_open == 0 {
            return Err(err(
                "protection.syn_cookie_half_open",
                "0: must be at least 1 (syn_cookies = \"on\" answers every SYN with a cookie)",
            ));
        }
        if !(1..=100).contains(&pr.pressure_percent) {
            return Err(err(
                "protection.pressure_percent",
                format!("{}: must be 1-100", pr.pressure_percent),
            ));
        }
        if pr.udp_pressure_ms == 0 || pr.udp_pressure_ms > t.udp_s.saturating_mul(1000) {
            return Err(err(
                "protection.udp_pressure_ms",
                format!(
                    "{} ms: must be 1 ms up to flows.timeouts.udp_s ({} s)",
                    pr.udp_pressure_ms, t.udp_s
                ),
            ));
        }
        let backends: usize = self
            .services
            .iter()
            .map(|s| s.backends.len() + usize::from(s.sorry_backend.is_some()))
            .sum();
        if backends > MAX_BACKENDS {
            return Err(err(
                "services",
                format!("{backends} backends in all; at most {MAX_BACKENDS} per node"),
            ));
        }
        self.validate_api()?;
        self.validate_addresses()
    }

    /// An API reachable from elsewhere than this host needs a token.
    fn validate_api(&self) -> Result<(), ConfigError> {
        let token = self.api.token().map_err(|e| err("api.token_file", e))?;
        if let Some(l) = self.api.listen
            && !l.ip().is_loopback()
            && token.is_none()
        {
            return Err(err(
                "api.token_file",
                format!(
                    "the API listens on {l}, beyond this host: give it a token (token_file or \
                     SWITCHYARD_API_TOKEN)"
                ),
            ));
        }
        Ok(())
    }

    /// No address may play two roles that the data plane tells apart by address.
    fn validate_addresses(&self) -> Result<(), ConfigError> {
        let own = self.own_addresses();
        let vips: HashSet<Ipv4Addr> = self.services.iter().map(|s| s.vip).collect();
        let backends: HashSet<Ipv4Addr> = self
            .services
            .iter()
            .flat_map(|s| s.backends.iter().chain(s.sorry_backend.iter()))
            .map(|b| b.address)
            .collect();
        for (i, s) in self.services.iter().enumerate() {
            let v = s.vip;
            let what = if own.contains(&v) {
                Some("an interface address of this node")
            } else if v.is_loopback() {
                Some("a loopback address")
            } else if backends.contains(&v) {
                Some("a backend's address (its gratuitous ARP would take the backend's place)")
            } else {
                None
            };
            if let Some(w) = what {
                return Err(err(format!("services[{i}].vip"), format!("{v} is {w}")));
            }
            for (j, b) in s.backends.iter().chain(s.sorry_backend.iter()).enumerate() {
                let a = b.address;
                if vips.contains(&a)
                    || own.contains(&a)
                    || a.is_loopback()
                    || a.is_unspecified()
                    || a.is_broadcast()
                    || a.is_multicast()
                {
                    let key = if j < s.backends.len() {
                        format!("services[{i}].backends[{j}].address")
                    } else {
                        format!("services[{i}].sorry_backend.address")
                    };
                    return Err(err(
                        key,
                        format!("{a} is a VIP, one of this node's addresses or not a host address"),
                    ));
                }
            }
            if let Some(h) = &s.health
                && (h.rise > MAX_RISE_FALL || h.fall > MAX_RISE_FALL)
            {
                return Err(err(
                    format!("services[{i}].health.rise"),
                    format!("rise and fall must be 1-{MAX_RISE_FALL}"),
                ));
            }
        }
        for (i, ifc) in self.interfaces.iter().enumerate() {
            for (j, a) in ifc.snat_addresses.iter().enumerate() {
                if vips.contains(a) || own.contains(a) || a.is_loopback() || a.is_multicast() {
                    return Err(err(
                        format!("interfaces[{i}].snat_addresses[{j}]"),
                        format!("{a} is a VIP, an interface address or not a host address"),
                    ));
                }
            }
        }
        for (i, r) in self.routes.iter().enumerate() {
            if vips.contains(&r.via) || own.contains(&r.via) {
                return Err(err(
                    format!("routes[{i}].via"),
                    format!(
                        "{} is a VIP or this node's own address, not a next hop",
                        r.via
                    ),
                ));
            }
        }
        Ok(())
    }
}
