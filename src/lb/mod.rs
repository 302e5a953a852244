//! Load-balancing state as the workers see it: an immutable [`Snapshot`] of interfaces,
//! services, backends and their Maglev tables, built by the management core from the config
//! and handed to workers whole (a reload publishes a new one; workers swap between bursts).
//!
//! Ids that cross module boundaries are newtypes: [`IfIdx`] (index of an interface, which is
//! also the index of its port in every worker), [`BackendId`] (stable index into
//! `Snapshot::backends`, what a flow remembers), [`SnatIdx`] (index of a source-NAT address).

pub mod maglev;
pub mod persist;
pub mod route;
pub mod sched;
pub mod select;

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasherDefault;
use std::net::Ipv4Addr;

use maglev::{MaglevBackend, MaglevTable};
use route::{NextHop, RouteTable};
use rustc_hash::FxHasher;

use crate::config::{BackendConfig, Config, HealthConfig, Mode, OnDown, Protocol, Scheduler};
use crate::flow::Timeouts;
use crate::types::{BackendId, IfIdx, Ipv4Cidr, SnatIdx};

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// A read-only map that scans a short array when it is small (the usual case: a handful of
/// VIPs and services) and hashes only when it is large; built once per snapshot.
#[derive(Debug, Default)]
struct SmallMap<K: Eq + std::hash::Hash + Copy, V: Copy> {
    keys: Vec<K>,
    vals: Vec<V>,
    map: Option<FxMap<K, V>>,
}

const SMALL: usize = 16;

impl<K: Eq + std::hash::Hash + Copy, V: Copy> SmallMap<K, V> {
    fn from_map(m: FxMap<K, V>) -> Self {
        if m.len() <= SMALL {
            let (keys, vals) = m.into_iter().unzip();
            SmallMap {
                keys,
                vals,
                map: None,
            }
        } else {
            SmallMap {
                keys: Vec::new(),
                vals: Vec::new(),
                map: Some(m),
            }
        }
    }

    #[inline]
    fn get(&self, k: &K) -> Option<V> {
        match &self.map {
            Some(m) => m.get(k).copied(),
            None => self.keys.iter().position(|x| x == k).map(|i| self.vals[i]),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Interface {
    pub name: String,
    pub mac: [u8; 6],
    pub addr: Ipv4Addr,
    pub net: Ipv4Cidr,
    pub vlan: Option<u16>,
    /// Further connected subnets on this port.
    pub secondary: Vec<Ipv4Cidr>,
    /// Source-NAT addresses of this interface (proxy mode), as indices into `Snapshot::snat`.
    pub snat: Vec<SnatIdx>,
    /// Unbalanced traffic for our own addresses goes to the kernel (exception path).
    pub exception: bool,
}

#[derive(Debug, Clone)]
pub struct Backend {
    pub addr: Ipv4Addr,
    /// Port the backend listens on (= the service port unless translated).
    pub port: u16,
    /// Effective weight for new flows: 0 while down, drained, removed (or an idle sorry
    /// backend); else the run-time override or the configured weight.
    pub weight: u32,
    /// The configured weight.
    pub cfg_weight: u32,
    /// Whether packets of its established conns are still forwarded (false: dropped, counted
    /// as `drop_backend_down`, or `drop_drain_forced` when `forced`).
    pub accept_existing: bool,
    /// Its drain timed out.
    pub forced: bool,
    /// Gone from the configuration; kept so its established conns finish.
    pub removed: bool,
    /// The service's sorry backend.
    pub sorry: bool,
    /// A peer site's VIP (GSLB's IP proxy): new flows only while no local backend is up,
    /// always in full NAT.
    pub remote: bool,
    /// Interface the backend is reached through.
    pub iface: IfIdx,
    /// Address whose MAC frames to the backend carry (the backend, or a gateway).
    pub next_hop: Ipv4Addr,
    pub service: u16,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub vip: Ipv4Addr,
    pub port: u16,
    pub proto: Protocol,
    pub mode: Mode,
    pub scheduler: Scheduler,
    /// (timeout in ms, netmask) of source-address persistence.
    pub persistence: Option<(u32, u8)>,
    /// Interface that answers ARP for the VIP.
    pub iface: IfIdx,
    /// The service's backends; Maglev slot values index this list.
    pub backends: Vec<BackendId>,
    pub maglev: MaglevTable,
    pub health: Option<HealthConfig>,
    pub on_down: OnDown,
    /// GSLB: while no backend takes new conns, new TCP conns go to the kernel, where
    /// management answers them with an HTTP redirect to a peer site.
    pub redirect: bool,
    /// Some backend is a peer site's VIP (its conns are full-NAT whatever `mode` says).
    pub has_remote: bool,
    /// Gone from the configuration; kept so its established conns finish.
    pub removed: bool,
    /// Its VIP is ours (always on a single node; in an HA pair while keepalived gives it to
    /// us). A service not owned takes no new conns and carries none of its established ones.
    pub owned: bool,
    /// Source access list (`allow`/`deny`); `None`: every client.
    pub acl: Option<Acl>,
    /// New flows per second, all clients / one client address (0: no limit), for the whole
    /// node: each worker takes its share.
    pub new_flows_per_s: u32,
    pub new_flows_per_source_per_s: u32,
}

/// A service's source access list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    pub allow: Vec<Ipv4Cidr>,
    pub deny: Vec<Ipv4Cidr>,
}

impl Acl {
    /// Whether `src` may reach the service: not denied, and allowed (an empty allow list
    /// allows everyone).
    #[inline]
    pub fn permits(&self, src: Ipv4Addr) -> bool {
        !self.deny.iter().any(|c| c.contains(src))
            && (self.allow.is_empty() || self.allow.iter().any(|c| c.contains(src)))
    }
}

/// Run-time state of one backend that the configuration does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendRuntime {
    /// Passing health checks (true when the service has none).
    pub healthy: bool,
    /// Weight set at run time (`ctl weight`), overriding the configured one.
    pub weight: Option<u32>,
    /// Draining: no new flows.
    pub draining: bool,
    /// Draining past its timeout: established conns are dropped too.
    pub forced: bool,
}

impl Default for BackendRuntime {
    fn default() -> Self {
        BackendRuntime {
            healthy: true,
            weight: None,
            draining: false,
            forced: false,
        }
    }
}

/// Why a configuration does not make a snapshot. `Config::validate` refuses all of these,
/// so a validated configuration always builds; they are errors, not panics, all the same.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("{0} is in no interface's subnet")]
    NotConnected(Ipv4Addr),
    #[error("no interface named {0:?}")]
    NoInterface(String),
    #[error("no interface subnet or route reaches {0}")]
    NoRoute(Ipv4Addr),
}

/// Key of a backend across configurations: (service name, address, port).
pub type BackendKey = (String, Ipv4Addr, u16);

/// Keeps service and backend ids stable across snapshots (what established conns hold).
#[derive(Debug, Default, Clone)]
pub struct IdRegistry {
    services: HashMap<String, u16>,
    backends: HashMap<BackendKey, u32>,
}

impl IdRegistry {
    fn service(&mut self, name: &str) -> u16 {
        let n = self.services.len() as u16;
        *self.services.entry(name.to_string()).or_insert(n)
    }
    fn backend(&mut self, key: BackendKey) -> u32 {
        let n = self.backends.len() as u32;
        *self.backends.entry(key).or_insert(n)
    }
    pub fn service_count(&self) -> usize {
        self.services.len()
    }
    pub fn backend_count(&self) -> usize {
        self.backends.len()
    }
}

/// What a local (own or VIP) address is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalKind {
    /// The interface's own address.
    Interface,
    /// A VIP announced on that interface.
    Vip,
    /// A source-NAT address (proxy mode replies come back to it).
    Snat,
    /// A floating address of an HA pair that the peer owns now: neither answered nor
    /// balanced here (`drop_not_owner`).
    Standby,
    /// A GSLB DNS address (`[gslb] dns_addresses`): UDP A queries for configured names are
    /// answered by the workers, other DNS by the kernel side.
    Dns,
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
    /// Neighbours to resolve up front (backends, route next hops) and static entries.
    pub neighbours: Vec<Neighbour>,
    /// Source-NAT addresses, with the interface each belongs to.
    pub snat: Vec<(Ipv4Addr, IfIdx)>,
    pub routes: RouteTable,
    /// Whether traffic that is neither for us nor part of a conn is routed (some service is
    /// in gateway mode) rather than dropped.
    pub routing: bool,
    /// This node is one of an HA pair: VRRP from the LAN goes to keepalived (the kernel).
    pub vrrp: bool,
    /// GSLB: the names' answers (management builds them from the sites' states).
    pub gslb: Option<std::sync::Arc<crate::gslb::Table>>,
    /// Source-NAT port range.
    pub nat_ports: (u16, u16),
    pub timeouts: Timeouts,
    /// `[protection]`.
    pub protection: crate::config::ProtectionConfig,
    services_by_key: SmallMap<(u32, u16, u8), u16>,
    local: SmallMap<u32, (IfIdx, LocalKind)>,
}

impl Snapshot {
    /// Builds the snapshot from a validated config and each interface's port MAC
    /// (`port_macs[i]` for `cfg.interfaces[i]`).
    pub fn build(cfg: &Config, port_macs: &[[u8; 6]]) -> Result<Snapshot, BuildError> {
        Self::build_with(
            cfg,
            port_macs,
            None,
            &mut IdRegistry::default(),
            &|_| BackendRuntime::default(),
            None,
        )
    }

    /// Builds the next snapshot: ids from `ids` (stable across reloads), services and
    /// backends that left the configuration kept from `prev` as removed tombstones, and each
    /// backend's run-time state from `runtime`.
    pub fn build_with(
        cfg: &Config,
        port_macs: &[[u8; 6]],
        prev: Option<&Snapshot>,
        ids: &mut IdRegistry,
        runtime: &dyn Fn(&BackendKey) -> BackendRuntime,
        owned: Option<&HashSet<Ipv4Addr>>,
    ) -> Result<Snapshot, BuildError> {
        // In an HA pair the floating addresses are ours only while keepalived says so
        // (`owned`); a single node owns everything.
        let floating = cfg.floating();
        let owns = |a: Ipv4Addr| !floating.contains(&a) || owned.is_none_or(|o| o.contains(&a));
        let kind = |a: Ipv4Addr, k: LocalKind| if owns(a) { k } else { LocalKind::Standby };
        let mut snat = Vec::new();
        let interfaces: Vec<Interface> = cfg
            .interfaces
            .iter()
            .zip(port_macs)
            .enumerate()
            .map(|(n, (i, mac))| {
                let net = i.address;
                let mut idx = Vec::new();
                let addrs: &[Ipv4Addr] = if i.snat_addresses.is_empty() {
                    std::slice::from_ref(&net.addr)
                } else {
                    &i.snat_addresses
                };
                for &a in addrs {
                    snat.push((a, IfIdx(n as u16)));
                    idx.push(SnatIdx(snat.len() as u8 - 1));
                }
                Interface {
                    name: i.name.clone(),
                    mac: *mac,
                    addr: net.addr,
                    net,
                    vlan: i.vlan,
                    secondary: i.secondary_addresses.clone(),
                    snat: idx,
                    exception: i.exception_path,
                }
            })
            .collect();
        let mut routes = RouteTable::new();
        for (n, i) in interfaces.iter().enumerate() {
            for c in std::iter::once(&i.net).chain(&i.secondary) {
                routes.add(
                    c.addr,
                    c.len,
                    NextHop {
                        iface: IfIdx(n as u16),
                        via: None,
                    },
                );
            }
        }
        let connected = |ip: Ipv4Addr| {
            interfaces
                .iter()
                .position(|i| i.net.contains(ip) || i.secondary.iter().any(|c| c.contains(ip)))
                .map(|p| IfIdx(p as u16))
        };
        let mut neighbours: Vec<Neighbour> = Vec::new();
        let want = |addr: Ipv4Addr, iface: IfIdx, neighbours: &mut Vec<Neighbour>| {
            if !neighbours.iter().any(|n| n.addr == addr) {
                neighbours.push(Neighbour {
                    addr,
                    iface,
                    static_mac: None,
                });
            }
        };
        for r in &cfg.routes {
            let via = r.via;
            let iface = connected(via).ok_or(BuildError::NotConnected(via))?;
            routes.add(
                r.prefix.addr,
                r.prefix.len,
                NextHop {
                    iface,
                    via: Some(via),
                },
            );
            want(via, iface, &mut neighbours);
        }
        // The HA peer: its kernel talks to ours (sync), and the kernel interface does no ARP.
        if let Some(h) = &cfg.ha {
            let iface = connected(h.peer).ok_or(BuildError::NotConnected(h.peer))?;
            want(h.peer, iface, &mut neighbours);
        }
        for n in &cfg.neighbours {
            let addr = n.address;
            let iface = connected(addr).ok_or(BuildError::NotConnected(addr))?;
            want(addr, iface, &mut neighbours);
            if let Some(e) = neighbours.iter_mut().find(|e| e.addr == addr) {
                e.static_mac = Some(n.mac.0);
            }
        }
        let mut local = FxMap::default();
        for (n, i) in interfaces.iter().enumerate() {
            local.insert(u32::from(i.addr), (IfIdx(n as u16), LocalKind::Interface));
            for c in &i.secondary {
                local.insert(u32::from(c.addr), (IfIdx(n as u16), LocalKind::Interface));
            }
        }
        for (a, i) in &snat {
            local
                .entry(u32::from(*a))
                .or_insert((*i, kind(*a, LocalKind::Snat)));
        }
        for &a in cfg.gslb.iter().flat_map(|g| &g.dns_addresses) {
            let iface = connected(a).ok_or(BuildError::NotConnected(a))?;
            local
                .entry(u32::from(a))
                .or_insert((iface, kind(a, LocalKind::Dns)));
        }
        for &a in cfg.ha.iter().flat_map(|h| &h.floating_addresses) {
            let iface = connected(a).ok_or(BuildError::NotConnected(a))?;
            local
                .entry(u32::from(a))
                .or_insert((iface, kind(a, LocalKind::Interface)));
        }
        let mut services: Vec<Option<Service>> = Vec::new();
        let mut backends: Vec<Option<Backend>> = Vec::new();
        let mut services_by_key = FxMap::default();
        for s in &cfg.services {
            let si = ids.service(&s.name);
            let vip = s.vip;
            let iface = match &s.interface {
                Some(n) => IfIdx(
                    cfg.interfaces
                        .iter()
                        .position(|i| &i.name == n)
                        .ok_or_else(|| BuildError::NoInterface(n.clone()))?
                        as u16,
                ),
                None => connected(vip).unwrap_or(IfIdx(0)),
            };
            local
                .entry(u32::from(vip))
                .or_insert((iface, kind(vip, LocalKind::Vip)));
            let mut members: Vec<(&BackendConfig, bool)> =
                s.backends.iter().map(|b| (b, false)).collect();
            let has_remote = s.backends.iter().any(|b| b.remote);
            if let Some(sorry) = &s.sorry_backend {
                members.push((sorry, true));
            }
            let mut list = Vec::new();
            for (b, sorry) in members {
                let addr = b.address;
                let port = b.port.unwrap_or(s.port);
                let key = (s.name.clone(), addr, port);
                let bid = ids.backend(key.clone());
                let rt = runtime(&key);
                let hop = routes.lookup(addr).ok_or(BuildError::NoRoute(addr))?;
                let next_hop = hop.l2_target(addr);
                want(next_hop, hop.iface, &mut neighbours);
                let up = rt.healthy && !rt.draining;
                let weight = if up { rt.weight.unwrap_or(b.weight) } else { 0 };
                let accept_existing =
                    !rt.forced && (rt.healthy || s.on_backend_down == OnDown::Keep);
                put(
                    &mut backends,
                    bid as usize,
                    Backend {
                        addr,
                        port,
                        weight,
                        cfg_weight: b.weight,
                        accept_existing,
                        forced: rt.forced,
                        removed: false,
                        sorry,
                        remote: b.remote,
                        iface: hop.iface,
                        next_hop,
                        service: si,
                    },
                );
                list.push(BackendId(bid));
            }
            // Local backends first; a peer site's VIP (remote) only while none is up; the sorry
            // backend only while neither can serve.
            let up_of = |pred: &dyn Fn(&Backend) -> bool| {
                list.iter().any(|id| {
                    let b = backends[id.0 as usize].as_ref().expect("just built");
                    pred(b) && b.weight > 0
                })
            };
            let local_up = up_of(&|b| !b.sorry && !b.remote);
            let remote_up = up_of(&|b| b.remote);
            for id in &list {
                let b = backends[id.0 as usize].as_mut().expect("just built");
                if b.remote && local_up {
                    b.weight = 0;
                }
                if b.sorry {
                    b.weight = if local_up || remote_up || b.weight == 0 {
                        0
                    } else {
                        1
                    };
                }
            }
            let mb: Vec<MaglevBackend> = list
                .iter()
                .map(|id| {
                    let b = backends[id.0 as usize].as_ref().expect("just built");
                    MaglevBackend {
                        addr: b.addr,
                        weight: b.weight,
                    }
                })
                .collect();
            services_by_key.insert((u32::from(vip), s.port, s.protocol.number()), si);
            put(
                &mut services,
                usize::from(si),
                Service {
                    name: s.name.clone(),
                    vip,
                    port: s.port,
                    proto: s.protocol,
                    mode: s.mode,
                    scheduler: s.scheduler,
                    persistence: s
                        .persistence
                        .map(|p| (p.timeout_s.saturating_mul(1000), p.netmask)),
                    iface,
                    backends: list,
                    maglev: MaglevTable::build(&mb, s.maglev_table_size),
                    health: s.health.clone(),
                    on_down: s.on_backend_down,
                    redirect: s.redirect.is_some(),
                    has_remote,
                    removed: false,
                    owned: owns(vip),
                    acl: (!s.allow.is_empty() || !s.deny.is_empty()).then(|| Acl {
                        allow: s.allow.clone(),
                        deny: s.deny.clone(),
                    }),
                    new_flows_per_s: s.new_flows_per_s,
                    new_flows_per_source_per_s: s.new_flows_per_source_per_s,
                },
            );
        }
        // What left the configuration stays as tombstones, so established conns finish.
        for id in 0..ids.service_count() {
            if services.get(id).is_none_or(Option::is_none) {
                let old = prev.and_then(|p| p.services.get(id)).cloned();
                let tomb = old.map(|mut o| {
                    o.removed = true;
                    o.backends.clear();
                    o.maglev = MaglevTable::build(&[], 65537);
                    o
                });
                if let Some(t) = tomb {
                    put(&mut services, id, t);
                }
            }
        }
        for id in 0..ids.backend_count() {
            if backends.get(id).is_none_or(Option::is_none)
                && let Some(mut o) = prev.and_then(|p| p.backends.get(id)).cloned()
            {
                o.removed = true;
                o.weight = 0;
                put(&mut backends, id, o);
            }
        }
        let services: Vec<Service> = services
            .into_iter()
            .map(|s| s.unwrap_or_else(Service::placeholder))
            .collect();
        let backends: Vec<Backend> = backends
            .into_iter()
            .map(|b| b.unwrap_or_else(Backend::placeholder))
            .collect();
        // Transit traffic is routed only when servers use us as their gateway; static routes
        // alone only steer balanced traffic (replies to clients, backends behind a router).
        let routing = services
            .iter()
            .any(|s| s.mode == Mode::Gateway && !s.removed);
        Ok(Snapshot {
            interfaces,
            services,
            backends,
            neighbours,
            snat,
            routes,
            routing,
            vrrp: cfg.ha.is_some(),
            gslb: None,
            nat_ports: (cfg.nat.port_min, cfg.nat.port_max),
            timeouts: Timeouts::from_config(&cfg.flows.timeouts),
            protection: cfg.protection,
            services_by_key: SmallMap::from_map(services_by_key),
            local: SmallMap::from_map(local),
        })
    }

    /// The forwarding mode of a conn of `service` to `backend`: the service's, but full NAT
    /// (proxy) to a peer site's VIP (GSLB's IP proxy).
    #[inline]
    pub fn conn_mode(&self, service: u16, backend: u32) -> Mode {
        let s = &self.services[usize::from(service)];
        if s.has_remote
            && self
                .backends
                .get(backend as usize)
                .is_some_and(|b| b.remote)
        {
            Mode::Proxy
        } else {
            s.mode
        }
    }

    #[inline]
    pub fn service(&self, vip: Ipv4Addr, port: u16, proto: u8) -> Option<u16> {
        self.services_by_key.get(&(u32::from(vip), port, proto))
    }

    /// Whether `ip` is one of the balancer's addresses, and on which interface.
    #[inline]
    pub fn local(&self, ip: Ipv4Addr) -> Option<(IfIdx, LocalKind)> {
        self.local.get(&u32::from(ip))
    }

    /// Distinct VIPs this node owns with the interface announcing each, in service order.
    pub fn vips(&self) -> Vec<(Ipv4Addr, IfIdx)> {
        let mut v: Vec<(Ipv4Addr, IfIdx)> = Vec::new();
        for s in self.services.iter().filter(|s| !s.removed && s.owned) {
            if !v.iter().any(|(ip, _)| *ip == s.vip) {
                v.push((s.vip, s.iface));
            }
        }
        v
    }
}

fn put<T>(v: &mut Vec<Option<T>>, i: usize, x: T) {
    if v.len() <= i {
        v.resize_with(i + 1, || None);
    }
    v[i] = Some(x);
}

impl Service {
    /// An id never filled (cannot happen with a consistent registry); inert.
    fn placeholder() -> Service {
        Service {
            name: String::new(),
            vip: Ipv4Addr::UNSPECIFIED,
            port: 0,
            proto: Protocol::Tcp,
            mode: Mode::Dsr,
            scheduler: Scheduler::Maglev,
            persistence: None,
            iface: IfIdx(0),
            backends: Vec::new(),
            maglev: MaglevTable::build(&[], 65537),
            health: None,
            on_down: OnDown::Keep,
            redirect: false,
            has_remote: false,
            removed: true,
            owned: false,
            acl: None,
            new_flows_per_s: 0,
            new_flows_per_source_per_s: 0,
        }
    }
}

impl Backend {
    fn placeholder() -> Backend {
        Backend {
            addr: Ipv4Addr::UNSPECIFIED,
            port: 0,
            weight: 0,
            cfg_weight: 0,
            accept_existing: false,
            forced: false,
            removed: true,
            sorry: false,
            remote: false,
            iface: IfIdx(0),
            next_hop: Ipv4Addr::UNSPECIFIED,
            service: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;

    #[test]
    fn snapshot_indexes_services_vips_and_neighbours() {
        let s = testkit::snapshot(&testkit::base());
        let vip = testkit::VIP;
        assert_eq!(s.service(vip, 80, 6), Some(0));
        assert_eq!(s.service(vip, 53, 17), Some(1));
        assert_eq!(s.service(vip, 53, 6), None);
        assert_eq!(s.local(vip), Some((IfIdx(0), LocalKind::Vip)));
        assert_eq!(
            s.local(testkit::LB_ADDR),
            Some((IfIdx(0), LocalKind::Interface))
        );
        assert_eq!(
            s.local(Ipv4Addr::new(10, 20, 1, 1)),
            Some((IfIdx(0), LocalKind::Interface)),
            "a secondary address is ours too"
        );
        // The router and the two backends; .11 serves both services: one entry each.
        assert_eq!(s.neighbours.len(), 3);
        let b1 = s.neighbours.iter().find(|n| n.addr == testkit::B1).unwrap();
        assert_eq!(b1.static_mac, Some(testkit::B1_MAC));
        // The interface address doubles as the default SNAT address.
        assert_eq!(s.snat, vec![(testkit::LB_ADDR, IfIdx(0))]);
        assert!(!s.routing, "no gateway-mode service");
        assert_eq!(s.vips(), vec![(vip, IfIdx(0))]);
        assert_eq!(s.backends.len(), 3);
    }

    #[test]
    fn a_gateway_service_turns_routing_on() {
        let s = testkit::snapshot(&testkit::config(Mode::Gateway));
        assert!(s.routing);
    }
}
