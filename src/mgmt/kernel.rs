//! The kernel side of the exception path: each interface with `exception_path` gets a kernel
//! interface (a DPDK `net_tap` port the data plane bridges) carrying the balancer's addresses,
//! so ping, ssh and the health checker use the kernel's stack over the same network.
//!
//! ARP stays in the data plane: the kernel interface runs with `arp off`, and management
//! mirrors every neighbour it resolves into the kernel as a permanent entry. Static routes go
//! into a policy-routing table used for traffic sourced from the balancer's addresses (ending
//! in `unreachable default`), so the host's own routes are never touched nor used for it.

use std::net::Ipv4Addr;
use std::process::Command;

use crate::config::Config;
use crate::types::Ipv4Cidr;

/// First policy-routing table (one per interface above it).
const TABLE_BASE: u32 = 0x5359_0100;

#[derive(Debug, Clone)]
pub struct KernelIface {
    pub name: String,
    /// Addresses (with their prefixes) on it.
    pub addrs: Vec<Ipv4Cidr>,
    /// Service addresses the kernel answers on itself (GSLB's DNS addresses, redirecting
    /// VIPs), as /32s with their source rules; in a pair keepalived adds the floating ones.
    pub local: Vec<(Ipv4Addr, bool)>,
    pub table: u32,
}

impl KernelIface {
    pub fn holds(&self, ip: Ipv4Addr) -> bool {
        self.addrs.iter().any(|c| c.contains(ip))
    }
}

/// What setting up the kernel side of the exception path ran into.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("running {cmd}: {source}")]
    Spawn { cmd: String, source: std::io::Error },
    #[error("{cmd}: {stderr}")]
    Failed { cmd: String, stderr: String },
    #[error("{path}: {source} (in a container, set it there: --sysctl {key}={value})")]
    Sysctl {
        path: String,
        key: String,
        value: String,
        source: std::io::Error,
    },
}

fn ip(args: &[&str]) -> Result<(), KernelError> {
    let cmd = || format!("ip {}", args.join(" "));
    let o = Command::new("ip")
        .args(args)
        .output()
        .map_err(|source| KernelError::Spawn { cmd: cmd(), source })?;
    if o.status.success() {
        Ok(())
    } else {
        Err(KernelError::Failed {
            cmd: cmd(),
            stderr: String::from_utf8_lossy(&o.stderr).trim().to_string(),
        })
    }
}

/// The kernel interfaces the configuration asks for (index = interface index).
pub fn plan(cfg: &Config) -> Vec<Option<KernelIface>> {
    cfg.interfaces
        .iter()
        .enumerate()
        .map(|(i, ifc)| {
            ifc.exception_path.then(|| {
                let floating = cfg.floating();
                let local = super::gslb::kernel_addresses(cfg, i)
                    .into_iter()
                    .map(|a| (a, !floating.contains(&a)))
                    .collect();
                let addrs = std::iter::once(ifc.address)
                    .chain(ifc.secondary_addresses.iter().copied())
                    .collect();
                KernelIface {
                    name: ifc.kernel_iface(),
                    addrs,
                    local,
                    table: TABLE_BASE + i as u32,
                }
            })
        })
        .collect()
}

/// Sets a sysctl unless it already has the value: a container's /proc/sys is read-only, and
/// its runtime sets what the container needs beforehand (`--sysctl`).
fn sysctl(key: &str, value: &str) -> Result<(), KernelError> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == value) {
        return Ok(());
    }
    std::fs::write(&path, value).map_err(|source| KernelError::Sysctl {
        path,
        key: key.into(),
        value: value.into(),
        source,
    })
}

/// Kernel interfaces that `net_af_packet` vdevs open (`iface=` of each `--vdev`).
fn af_packet_ifaces(cfg: &Config) -> Vec<String> {
    cfg.dpdk
        .eal_args
        .iter()
        .filter_map(|a| a.strip_prefix("--vdev=").or(Some(a.as_str())))
        .filter(|a| a.starts_with("net_af_packet"))
        .flat_map(|a| {
            a.split(',')
                .filter_map(|kv| kv.strip_prefix("iface="))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Brings the kernel interfaces up with their addresses and routes (after the tap ports
/// started). Static routes are put in each interface's table, selected by source address.
///
/// With `net_af_packet`, the kernel also sees every frame on the port's own interface and, once
/// our addresses exist in the kernel, would answer frames for them there too (a TCP reset for
/// each reply of a proxy conn). Strict reverse-path filtering and `arp_ignore=8` on that
/// interface stop it: the kernel's view of our network is the tap alone.
pub fn setup(cfg: &Config, kifs: &[Option<KernelIface>]) -> Result<(), KernelError> {
    if kifs.iter().any(Option::is_some) {
        for dev in af_packet_ifaces(cfg) {
            sysctl(&format!("net.ipv4.conf.{dev}.rp_filter"), "1")?;
            sysctl(&format!("net.ipv4.conf.{dev}.arp_ignore"), "8")?;
        }
    }
    for k in kifs.iter().flatten() {
        // No IPv6 chatter (router solicitations, MLD) from the tap onto the network.
        let _ = sysctl(&format!("net.ipv6.conf.{}.disable_ipv6", k.name), "1");
        ip(&["link", "set", "dev", &k.name, "arp", "off"])?;
        ip(&["link", "set", "dev", &k.name, "up"])?;
        let t = k.table.to_string();
        for c in &k.addrs {
            let a = c.addr.to_string();
            ip(&["addr", "replace", &c.to_string(), "dev", &k.name])?;
            ip(&[
                "route",
                "replace",
                &c.network().to_string(),
                "dev",
                &k.name,
                "src",
                &a,
                "table",
                &t,
            ])?;
            let _ = ip(&["rule", "del", "from", &a, "table", &t]);
            ip(&["rule", "add", "from", &a, "table", &t])?;
        }
        for &(a, add) in &k.local {
            let a = a.to_string();
            if add {
                ip(&["addr", "replace", &format!("{a}/32"), "dev", &k.name])?;
            }
            let _ = ip(&["rule", "del", "from", &a, "table", &t]);
            ip(&["rule", "add", "from", &a, "table", &t])?;
        }
        // Nothing sourced from our addresses may fall through to the host's own routes.
        ip(&["route", "replace", "unreachable", "default", "table", &t])?;
        for r in &cfg.routes {
            if k.holds(r.via) {
                ip(&[
                    "route",
                    "replace",
                    &r.prefix.to_string(),
                    "via",
                    &r.via.to_string(),
                    "dev",
                    &k.name,
                    "table",
                    &t,
                ])?;
            }
        }
    }
    super::firewall::setup(cfg, kifs)
}

/// Mirrors a neighbour into the kernel interface whose subnet holds it.
pub fn neighbour(kifs: &[Option<KernelIface>], addr: Ipv4Addr, mac: Option<[u8; 6]>) {
    for k in kifs.iter().flatten().filter(|k| k.holds(addr)) {
        let r = match mac {
            Some(m) => {
                let mac = format!(
                    "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                    m[0], m[1], m[2], m[3], m[4], m[5]
                );
                ip(&[
                    "neigh",
                    "replace",
                    &addr.to_string(),
                    "lladdr",
                    &mac,
                    "dev",
                    &k.name,
                    "nud",
                    "permanent",
                ])
            }
            None => ip(&["neigh", "del", &addr.to_string(), "dev", &k.name]),
        };
        if let Err(e) = r {
            tracing::debug!("kernel neighbour {addr}: {e}");
        }
    }
}

/// Removes the policy rules and the firewall chains (the interfaces themselves go with their
/// tap ports).
pub fn teardown(kifs: &[Option<KernelIface>]) {
    super::firewall::teardown(kifs);
    for k in kifs.iter().flatten() {
        let t = k.table.to_string();
        for a in k
            .addrs
            .iter()
            .map(|c| c.addr)
            .chain(k.local.iter().map(|l| l.0))
        {
            let _ = ip(&["rule", "del", "from", &a.to_string(), "table", &t]);
        }
        let _ = ip(&["route", "flush", "table", &t]);
    }
}
