//! What serde cannot check: addresses in the right subnets, references that resolve,
//! uniqueness, the core layout, sizes. Each error names the key.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use super::*;

impl Config {
    /// Checks everything serde cannot: addresses, references, uniqueness, core layout.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.cores.workers.is_empty() {
            return Err(err("cores.workers", "at least one worker core is needed"));
        }
        let mut seen = HashSet::new();
        for (i, w) in self.cores.workers.iter().enumerate() {
            if self.cores.allow_shared {
                break;
            }
            if *w == self.cores.management {
                return Err(err(
                    format!("cores.workers[{i}]"),
                    format!(
                        "core {w} is also the management core (set cores.allow_shared = true \
                         only for tests)"
                    ),
                ));
            }
            if !seen.insert(*w) {
                return Err(err(
                    format!("cores.workers[{i}]"),
                    format!("core {w} listed twice"),
                ));
            }
        }
        for (i, a) in self.dpdk.eal_args.iter().enumerate() {
            let flag = a.split('=').next().unwrap_or("");
            if ["-l", "-c", "--lcores", "--main-lcore", "--master-lcore"].contains(&flag) {
                return Err(err(
                    format!("dpdk.eal_args[{i}]"),
                    format!("{a:?} sets lcores; Switchyard derives them from [cores]"),
                ));
            }
        }
        if self.flows.capacity_per_core == 0 {
            return Err(err("flows.capacity_per_core", "must be > 0"));
        }
        if self.flows.capacity_per_core > MAX_FLOWS_PER_CORE {
            return Err(err(
                "flows.capacity_per_core",
                format!(
                    "{} is more than {MAX_FLOWS_PER_CORE} (the conn table takes about 63 bytes \
                     per conn, allocated up front on every worker)",
                    self.flows.capacity_per_core
                ),
            ));
        }
        if self.cores.allow_shared && self.cores.idle_sleep_us == 0 {
            return Err(err(
                "cores.idle_sleep_us",
                "shared cores need an idle sleep, or spinning workers starve each other",
            ));
        }
        if self.cores.workers.len() > 64 {
            return Err(err("cores.workers", "at most 64 workers"));
        }
        if self.dpdk.mbufs < 1024 {
            return Err(err("dpdk.mbufs", "must be >= 1024"));
        }
        if self.interfaces.is_empty() {
            return Err(err("interfaces", "at least one interface is needed"));
        }
        let mut names = HashSet::new();
        let mut ports = HashSet::new();
        let mut subnets = Vec::new();
        for (i, ifc) in self.interfaces.iter().enumerate() {
            let k = |f: &str| format!("interfaces[{i}].{f}");
            if ifc.name.is_empty() {
                return Err(err(k("name"), "must not be empty"));
            }
            if !names.insert(ifc.name.as_str()) {
                return Err(err(
                    k("name"),
                    format!("duplicate interface {:?}", ifc.name),
                ));
            }
            if !ports.insert(ifc.port.as_str()) {
                return Err(err(
                    k("port"),
                    format!("port {:?} used by two interfaces", ifc.port),
                ));
            }
            subnets.push(ifc.address);
            if let Some(v) = ifc.vlan
                && (v == 0 || v > 4094)
            {
                return Err(err(k("vlan"), format!("{v} is not a VLAN id (1-4094)")));
            }
            subnets.extend(&ifc.secondary_addresses);
            if ifc.exception_path {
                let n = ifc.kernel_iface();
                if n.is_empty()
                    || n.len() > 15
                    || !n
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                {
                    return Err(err(
                        k("exception_iface"),
                        format!("{n:?} is not a usable interface name (1-15 of A-Za-z0-9-_.)"),
                    ));
                }
            }
            for (j, a) in ifc.exception_allow.iter().enumerate() {
                if super::parse_allow(a).is_none() {
                    return Err(err(
                        format!("interfaces[{i}].exception_allow[{j}]"),
                        format!("{a:?} is not tcp/PORT or udp/PORT (PORT 1-65535)"),
                    ));
                }
            }
            if ifc.snat_addresses.len() > 64 {
                return Err(err(k("snat_addresses"), "at most 64 per interface"));
            }
        }
        if self.nat.port_min == 0 || self.nat.port_min > self.nat.port_max {
            return Err(err(
                "nat.port_min",
                format!(
                    "range {}-{} is empty or starts at 0",
                    self.nat.port_min, self.nat.port_max
                ),
            ));
        }
        let nat_ports = u32::from(self.nat.port_max - self.nat.port_min) + 1;
        if nat_ports < self.cores.workers.len() as u32 {
            return Err(err(
                "nat.port_max",
                "the NAT port range needs at least one port per worker",
            ));
        }
        for (i, r) in self.routes.iter().enumerate() {
            let via = r.via;
            if !subnets.iter().any(|s| s.contains(via)) {
                return Err(err(
                    format!("routes[{i}].via"),
                    format!("next hop {via} is in no interface's subnet"),
                ));
            }
        }
        let routed = |ip: Ipv4Addr| {
            subnets.iter().any(|s| s.contains(ip))
                || self.routes.iter().any(|r| r.prefix.contains(ip))
        };
        for (i, n) in self.neighbours.iter().enumerate() {
            let ip = n.address;
            if !subnets.iter().any(|s| s.contains(ip)) {
                return Err(err(
                    format!("neighbours[{i}].address"),
                    format!("{ip} is in no interface's subnet"),
                ));
            }
        }
        let mut svc_names = HashSet::new();
        let mut svc_keys = HashSet::new();
        for (i, s) in self.services.iter().enumerate() {
            let k = |f: &str| format!("services[{i}].{f}");
            if s.name.is_empty() {
                return Err(err(k("name"), "must not be empty"));
            }
            if !svc_names.insert(s.name.as_str()) {
                return Err(err(k("name"), format!("duplicate service {:?}", s.name)));
            }
            let vip = s.vip;
            if vip.is_unspecified() || vip.is_broadcast() || vip.is_multicast() {
                return Err(err(k("vip"), format!("{vip} cannot be a VIP")));
            }
            if s.port == 0 {
                return Err(err(k("port"), "must be 1-65535"));
            }
            if !svc_keys.insert((vip, s.port, s.protocol)) {
                return Err(err(
                    k("vip"),
                    format!(
                        "duplicate service {vip}:{} {} (also defined earlier)",
                        s.port,
                        s.protocol.name()
                    ),
                ));
            }
            if let Some(ifn) = &s.interface
                && !self.interfaces.iter().any(|x| &x.name == ifn)
            {
                return Err(err(k("interface"), format!("no interface named {ifn:?}")));
            }
            if s.maglev_table_size < 65537 || !is_prime(s.maglev_table_size) {
                return Err(err(
                    k("maglev_table_size"),
                    format!("{} is not a prime >= 65537", s.maglev_table_size),
                ));
            }
            if s.backends.is_empty() {
                return Err(err(k("backends"), "a service needs at least one backend"));
            }
            let mut bset = HashSet::new();
            for (j, b) in s.backends.iter().enumerate() {
                let bk = format!("services[{i}].backends[{j}].address");
                let ip = b.address;
                // One server may listen on several ports: a backend is its address and port.
                let port = b.port.unwrap_or(s.port);
                if !bset.insert((ip, port)) {
                    return Err(err(&bk, format!("backend {ip}:{port} listed twice")));
                }
                if s.mode == Mode::Dsr && !b.remote && !subnets.iter().any(|c| c.contains(ip)) {
                    return Err(err(
                        &bk,
                        format!("{ip} is in no interface's subnet (dsr needs the backend on-link)"),
                    ));
                }
                if !routed(ip) {
                    return Err(err(
                        &bk,
                        format!("no interface subnet or route reaches {ip}"),
                    ));
                }
                if let Some(p) = b.port {
                    if p == 0 {
                        return Err(err(
                            format!("services[{i}].backends[{j}].port"),
                            "must be 1-65535",
                        ));
                    }
                    if s.mode == Mode::Dsr && !b.remote && p != s.port {
                        return Err(err(
                            format!("services[{i}].backends[{j}].port"),
                            "dsr cannot translate ports: the backend port must equal the service port",
                        ));
                    }
                }
                if b.weight > 65535 {
                    return Err(err(
                        format!("services[{i}].backends[{j}].weight"),
                        "must be 0-65535",
                    ));
                }
            }
            if let Some(p) = &s.persistence {
                if p.netmask > 32 {
                    return Err(err(
                        format!("services[{i}].persistence.netmask"),
                        format!("{} is not a prefix length (0-32)", p.netmask),
                    ));
                }
                if p.timeout_s == 0 {
                    return Err(err(
                        format!("services[{i}].persistence.timeout_s"),
                        "must be > 0",
                    ));
                }
            }
            if let Some(h) = &s.health {
                let hk = |f: &str| format!("services[{i}].health.{f}");
                if h.interval_ms < 50 {
                    return Err(err(hk("interval_ms"), "must be >= 50"));
                }
                if h.timeout_ms == 0 || h.timeout_ms > h.interval_ms {
                    return Err(err(hk("timeout_ms"), "must be > 0 and <= interval_ms"));
                }
                if h.rise == 0 || h.fall == 0 {
                    return Err(err(hk("rise"), "rise and fall must be >= 1"));
                }
                if h.kind == HealthKind::Http && !h.path.starts_with('/') {
                    return Err(err(hk("path"), "must start with /"));
                }
            }
            if let Some(b) = &s.sorry_backend {
                let ip = b.address;
                if !routed(ip) {
                    return Err(err(
                        format!("services[{i}].sorry_backend.address"),
                        format!("no interface subnet or route reaches {ip}"),
                    ));
                }
            }
            if s.allow.len() > 1024 || s.deny.len() > 1024 {
                return Err(err(
                    k("allow"),
                    "at most 1024 prefixes in allow and in deny",
                ));
            }
            if s.backends.iter().all(|b| b.weight == 0) {
                return Err(err(k("backends"), "all backend weights are 0"));
            }
            if s.sorry_backend.as_ref().is_some_and(|b| b.remote) {
                return Err(err(
                    format!("services[{i}].sorry_backend.remote"),
                    "a sorry backend is local; list a peer site's VIP as a backend with remote = true",
                ));
            }
        }
        self.validate_sanity()?;
        self.validate_ha()?;
        self.validate_bgp()?;
        self.validate_gslb()
    }
}

pub(super) fn is_prime(n: u32) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2u64;
    while d * d <= n as u64 {
        if (n as u64).is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}
