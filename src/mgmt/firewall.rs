//! The exception path's kernel interfaces accept only what the operator asked for: replies
//! to the kernel's own connections (health checks, GSLB polls, BGP sessions BIRD opens),
//! ICMP, and the services Switchyard runs there (the API when it listens on this network,
//! VRRP and flow sync of a pair, BGP, GSLB's DNS, `/gslb` and redirects), plus each
//! interface's `exception_allow`. Everything else arriving on them is dropped, so the host's
//! own listeners (anything bound to 0.0.0.0) are not reachable from the balancer's networks.
//!
//! One nftables chain per kernel interface (`inet switchyard`, chain `in_<interface>`, an
//! input hook), replaced at start and removed at stop; rules match the interface by name, so
//! several Switchyard processes in one namespace keep their own chains.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};

use super::kernel::{KernelError, KernelIface};
use crate::config::{Config, parse_allow};

const TABLE: &str = "switchyard";

fn chain(k: &KernelIface) -> String {
    let name: String = k
        .name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("in_{name}")
}

/// The nft script for kernel interface `k` (interface `iface` of `cfg`).
pub fn rules(cfg: &Config, iface: usize, k: &KernelIface) -> String {
    let c = chain(k);
    let mut r: Vec<String> = vec![
        format!("add table inet {TABLE}"),
        format!(
            "add chain inet {TABLE} {c} {{ type filter hook input priority -10; policy accept; }}"
        ),
        format!("flush chain inet {TABLE} {c}"),
        format!("add rule inet {TABLE} {c} iifname != \"{}\" return", k.name),
        format!("add rule inet {TABLE} {c} ct state established,related accept"),
        format!("add rule inet {TABLE} {c} ip protocol icmp accept"),
    ];
    let mut accept = |m: String| r.push(format!("add rule inet {TABLE} {c} {m} accept"));
    let ours = |a: Ipv4Addr| k.holds(a) || k.local.iter().any(|l| l.0 == a);
    let on_here = |sa: &SocketAddr| match sa.ip() {
        IpAddr::V4(a) => a.is_unspecified() || ours(a),
        IpAddr::V6(_) => false,
    };
    if let Some(api) = cfg.api.listen
        && on_here(&api)
    {
        accept(format!("tcp dport {}", api.port()));
    }
    if let Some(ha) = &cfg.ha {
        accept("ip protocol 112".into()); // VRRP
        accept(format!("udp dport {}", ha.sync_port));
    }
    if cfg.bgp.is_some() {
        accept("tcp dport 179".into());
    }
    if let Some(g) = &cfg.gslb {
        for a in g.dns_addresses.iter().filter(|a| ours(**a)) {
            accept(format!("ip daddr {a} udp dport 53"));
            accept(format!("ip daddr {a} tcp dport 53"));
        }
        if let Some(l) = g.listen
            && on_here(&l)
        {
            accept(format!("ip daddr {} tcp dport {}", l.ip(), l.port()));
        }
    }
    for s in cfg.services.iter().filter(|s| s.redirect.is_some()) {
        if ours(s.vip) {
            accept(format!("ip daddr {} tcp dport {}", s.vip, s.port));
        }
    }
    if let Some(ifc) = cfg.interfaces.get(iface) {
        for (proto, port) in ifc.exception_allow.iter().filter_map(|a| parse_allow(a)) {
            accept(format!("{proto} dport {port}"));
        }
    }
    r.push(format!("add rule inet {TABLE} {c} counter drop"));
    r.join("\n") + "\n"
}

fn nft(script: &str) -> Result<(), KernelError> {
    let cmd = || "nft -f -".to_string();
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| KernelError::Spawn { cmd: cmd(), source })?;
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(script.as_bytes());
    }
    let o = child
        .wait_with_output()
        .map_err(|source| KernelError::Spawn { cmd: cmd(), source })?;
    if o.status.success() {
        Ok(())
    } else {
        Err(KernelError::Failed {
            cmd: format!("{}: {script}", cmd()),
            stderr: String::from_utf8_lossy(&o.stderr).trim().to_string(),
        })
    }
}

/// Installs each kernel interface's chain.
pub fn setup(cfg: &Config, kifs: &[Option<KernelIface>]) -> Result<(), KernelError> {
    for (i, k) in kifs.iter().enumerate() {
        if let Some(k) = k {
            nft(&rules(cfg, i, k))?;
        }
    }
    Ok(())
}

/// Removes our chains (the table stays for other processes' chains; it holds nothing then).
pub fn teardown(kifs: &[Option<KernelIface>]) {
    for k in kifs.iter().flatten() {
        let _ = nft(&format!("delete chain inet {TABLE} {}\n", chain(k)));
    }
}
