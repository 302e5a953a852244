//! Load-balancing state as the workers see it: an immutable [`Snapshot`] of interfaces,
//! services, backends and their Maglev tables, built by the management core from the config
//! and handed to workers whole (a reload publishes a new one; workers swap between bursts).
//!
//! Ids that cross module boundaries are newtypes: [`IfIdx`] (index of an interface, which is
//! also the index of its port in every worker), [`BackendId`] (stable index into
//! `Snapshot::backends`, what a flow remembers), [`NeighIdx`] (slot in the workers' neighbour
//! MAC cache).

pub mod maglev;

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::Ipv4Addr;

use rustc_hash::FxHasher;

use crate::config::{Config, Ipv4Cidr, Mode, Protocol, parse_cidr, parse_mac};
use crate::flow::Timeouts;
use maglev::{MaglevBackend, MaglevTable};

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IfIdx(pub u16);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BackendId(pub u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NeighIdx(pub u32);

#[derive(Debug, Clone)]
pub struct Interface {
    pub name: String,
    pub mac: [u8; 6],
    pub addr: Ipv4Addr,
    pub net: Ipv4Cidr,
    pub vlan: Option<u16>,
}

#[derive(Debug, Clone)]
pub struct Backend {
    pub addr: Ipv4Addr,
    pub weight: u32,
    /// Interface whose subnet holds the backend (where it is reached).
    pub iface: IfIdx,
    pub neigh: NeighIdx,
    pub service: u16,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub proto: Protocol,
    pub mode: Mode,
    /// Interface that answers ARP for the VIP.
    pub iface: IfIdx,
    /// The service's backends; Maglev slot values index this list.
    pub backends: Vec<BackendId>,
    pub maglev: MaglevTable,
}

/// What a local (own or VIP) address is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalKind {
    /// The interface's own address.
    Interface,
    /// A VIP announced on that interface.
    Vip,
}

/// A neighbour the balancer resolves (backends today, gateways later).
#[derive(Debug, Clone)]
pub struct Neighbour {
    pub addr: Ipv4Addr,
    pub iface: IfIdx,
    /// Configured static MAC, never re-resolved.
    pub static_mac: Option<[u8; 6]>,
}

#[derive(Debug)]
pub struct Snapshot {
    pub interfaces: Vec<Interface>,
    pub services: Vec<Service>,
    pub backends: Vec<Backend>,
    pub neighbours: Vec<Neighbour>,
    pub timeouts: Timeouts,
    services_by_key: FxMap<(u32, u16, u8), u16>,
    local: FxMap<u32, (IfIdx, LocalKind)>,
    neigh_by_addr: FxMap<u32, NeighIdx>,
}

impl Snapshot {
    /// Builds the snapshot from a validated config and each interface's port MAC
    /// (`port_macs[i]` for `cfg.interfaces[i]`).
    pub fn build(cfg: &Config, port_macs: &[[u8; 6]]) -> Snapshot {
        let interfaces: Vec<Interface> = cfg
            .interfaces
            .iter()
            .zip(port_macs)
            .map(|(i, mac)| {
                let net = parse_cidr(&i.address).expect("validated");
                Interface {
                    name: i.name.clone(),
                    mac: *mac,
                    addr: net.addr,
                    net,
                    vlan: i.vlan,
                }
            })
            .collect();
        let iface_for = |ip: Ipv4Addr| {
            interfaces
                .iter()
                .position(|i| i.net.contains(ip))
                .map(|p| IfIdx(p as u16))
        };
        let mut local = FxMap::default();
        for (n, i) in interfaces.iter().enumerate() {
            local.insert(u32::from(i.addr), (IfIdx(n as u16), LocalKind::Interface));
        }
        let mut neighbours: Vec<Neighbour> = Vec::new();
        let mut neigh_by_addr = FxMap::default();
        let mut neigh = |addr: Ipv4Addr, iface: IfIdx, neighbours: &mut Vec<Neighbour>| {
            *neigh_by_addr.entry(u32::from(addr)).or_insert_with(|| {
                neighbours.push(Neighbour {
                    addr,
                    iface,
                    static_mac: None,
                });
                NeighIdx(neighbours.len() as u32 - 1)
            })
        };
        for n in &cfg.neighbours {
            let addr: Ipv4Addr = n.address.parse().expect("validated");
            let idx = neigh(addr, iface_for(addr).expect("validated"), &mut neighbours);
            neighbours[idx.0 as usize].static_mac = parse_mac(&n.mac);
        }
        let mut services = Vec::new();
        let mut backends = Vec::new();
        let mut services_by_key = FxMap::default();
        for (si, s) in cfg.services.iter().enumerate() {
            let vip: Ipv4Addr = s.vip.parse().expect("validated");
            let iface = match &s.interface {
                Some(n) => IfIdx(
                    cfg.interfaces
                        .iter()
                        .position(|i| &i.name == n)
                        .expect("validated") as u16,
                ),
                None => iface_for(vip).unwrap_or(IfIdx(0)),
            };
            local
                .entry(u32::from(vip))
                .or_insert((iface, LocalKind::Vip));
            let mut ids = Vec::new();
            let mut mb = Vec::new();
            for b in &s.backends {
                let addr: Ipv4Addr = b.address.parse().expect("validated");
                let biface = iface_for(addr).unwrap_or(iface);
                let n = neigh(addr, biface, &mut neighbours);
                backends.push(Backend {
                    addr,
                    weight: b.weight,
                    iface: biface,
                    neigh: n,
                    service: si as u16,
                });
                ids.push(BackendId(backends.len() as u32 - 1));
                mb.push(MaglevBackend {
                    addr,
                    weight: b.weight,
                });
            }
            services_by_key.insert((u32::from(vip), s.port, s.protocol.number()), si as u16);
            services.push(Service {
                name: s.name.clone(),
                vip,
                port: s.port,
                proto: s.protocol,
                mode: s.mode,
                iface,
                backends: ids,
                maglev: MaglevTable::build(&mb, s.maglev_table_size),
            });
        }
        Snapshot {
            interfaces,
            services,
            backends,
            neighbours,
            timeouts: Timeouts::from_config(&cfg.flows.timeouts),
            services_by_key,
            local,
            neigh_by_addr,
        }
    }

    #[inline]
    pub fn service(&self, vip: Ipv4Addr, port: u16, proto: u8) -> Option<u16> {
        self.services_by_key
            .get(&(u32::from(vip), port, proto))
            .copied()
    }

    /// Whether `ip` is one of the balancer's addresses, and on which interface.
    #[inline]
    pub fn local(&self, ip: Ipv4Addr) -> Option<(IfIdx, LocalKind)> {
        self.local.get(&u32::from(ip)).copied()
    }

    #[inline]
    pub fn neighbour(&self, ip: Ipv4Addr) -> Option<NeighIdx> {
        self.neigh_by_addr.get(&u32::from(ip)).copied()
    }

    /// Distinct VIPs with the interface announcing each, in service order.
    pub fn vips(&self) -> Vec<(Ipv4Addr, IfIdx)> {
        let mut v: Vec<(Ipv4Addr, IfIdx)> = Vec::new();
        for s in &self.services {
            if !v.iter().any(|(ip, _)| *ip == s.vip) {
                v.push((s.vip, s.iface));
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_indexes_services_vips_and_neighbours() {
        let cfg = Config::from_toml(
            r#"
[dpdk]
eal_args = []
[cores]
management = 0
workers = [1]
[[interfaces]]
name = "lan"
port = "p0"
address = "10.20.0.10/24"
[[neighbours]]
address = "10.20.0.12"
mac = "02:00:00:00:00:12"
[[services]]
name = "web"
vip = "10.20.0.100"
port = 80
protocol = "tcp"
mode = "dsr"
  [[services.backends]]
  address = "10.20.0.11"
  [[services.backends]]
  address = "10.20.0.12"
[[services]]
name = "dns"
vip = "10.20.0.100"
port = 53
protocol = "udp"
mode = "dsr"
  [[services.backends]]
  address = "10.20.0.12"
"#,
        )
        .unwrap();
        let s = Snapshot::build(&cfg, &[[2, 0, 0, 0, 0, 0x10]]);
        let vip = Ipv4Addr::new(10, 20, 0, 100);
        assert_eq!(s.service(vip, 80, 6), Some(0));
        assert_eq!(s.service(vip, 53, 17), Some(1));
        assert_eq!(s.service(vip, 53, 6), None);
        assert_eq!(s.local(vip), Some((IfIdx(0), LocalKind::Vip)));
        assert_eq!(
            s.local(Ipv4Addr::new(10, 20, 0, 10)),
            Some((IfIdx(0), LocalKind::Interface))
        );
        // .12 is shared by two services and has a static MAC: one neighbour entry.
        assert_eq!(s.neighbours.len(), 2);
        let n12 = s.neighbour(Ipv4Addr::new(10, 20, 0, 12)).unwrap();
        assert_eq!(
            s.neighbours[n12.0 as usize].static_mac,
            Some([2, 0, 0, 0, 0, 0x12])
        );
        assert_eq!(s.vips(), vec![(vip, IfIdx(0))]);
        assert_eq!(s.backends.len(), 3);
    }
}
