//! Neighbour resolution, owned by the management core.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::channel::Control;
use crate::config::ArpConfig;
use crate::lb::Snapshot;
use crate::types::{IfIdx, MacAddr};

struct NeighState {
    ip: Ipv4Addr,
    iface: IfIdx,
    mac: Option<[u8; 6]>,
    is_static: bool,
    last_heard: Option<Instant>,
    next_probe: Instant,
}

/// Most neighbours management tracks (the workers' caches are sized to match).
const MAX_NEIGHBOURS: usize = crate::channel::NEIGH_CAPACITY;

/// The authoritative neighbour table: resolves and keeps fresh every MAC the data plane
/// needs (backends, route next hops, clients on connected subnets), by IP address.
pub struct Neighbours {
    state: Vec<NeighState>,
    cfg: ArpConfig,
}

impl Neighbours {
    pub fn new(snap: &Snapshot, cfg: &ArpConfig, now: Instant) -> Self {
        let state = snap
            .neighbours
            .iter()
            .map(|n| NeighState {
                ip: n.addr,
                iface: n.iface,
                mac: n.static_mac,
                is_static: n.static_mac.is_some(),
                last_heard: None,
                next_probe: now,
            })
            .collect();
        Neighbours {
            state,
            cfg: cfg.clone(),
        }
    }

    fn find(&self, ip: Ipv4Addr) -> Option<usize> {
        self.state.iter().position(|s| s.ip == ip)
    }

    /// Control messages that seed the workers before they start: static MACs.
    pub fn initial(&self) -> Vec<Control> {
        self.state
            .iter()
            .filter(|s| s.is_static)
            .map(|s| Control::SetNeighbour {
                ip: s.ip,
                mac: s.mac,
            })
            .collect()
    }

    /// A worker needs `ip`: track it (it is probed on the next tick).
    pub fn wanted(&mut self, ip: Ipv4Addr, iface: IfIdx, now: Instant) {
        if self.find(ip).is_none() && self.state.len() < MAX_NEIGHBOURS {
            tracing::debug!(neighbour = %ip, "resolving on demand");
            self.state.push(NeighState {
                ip,
                iface,
                mac: None,
                is_static: false,
                last_heard: None,
                next_probe: now,
            });
        }
    }

    /// Applies a MAC seen in ARP; returns the broadcast to send if the workers' view changes.
    pub fn learned(
        &mut self,
        ip: Ipv4Addr,
        mac: [u8; 6],
        iface: IfIdx,
        now: Instant,
    ) -> Option<Control> {
        let i = match self.find(ip) {
            Some(i) => i,
            None if self.state.len() < MAX_NEIGHBOURS => {
                self.state.push(NeighState {
                    ip,
                    iface,
                    mac: None,
                    is_static: false,
                    last_heard: None,
                    next_probe: now + Duration::from_secs(u64::from(self.cfg.refresh_s)),
                });
                self.state.len() - 1
            }
            None => return None,
        };
        let s = &mut self.state[i];
        if s.is_static {
            return None;
        }
        s.last_heard = Some(now);
        if s.mac == Some(mac) {
            return None;
        }
        match s.mac {
            None => tracing::info!(neighbour = %ip, mac = %MacAddr(mac), "neighbour resolved"),
            Some(old) => tracing::warn!(
                neighbour = %ip, old = %MacAddr(old), new = %MacAddr(mac),
                "neighbour MAC changed"
            ),
        }
        s.mac = Some(mac);
        s.next_probe = now + Duration::from_secs(u64::from(self.cfg.refresh_s));
        Some(Control::SetNeighbour { ip, mac: Some(mac) })
    }

    /// Probes due neighbours and expires silent ones. `probe` gets ARP requests to send,
    /// `broadcast` neighbour changes for every worker.
    pub fn tick(
        &mut self,
        snap: &Snapshot,
        now: Instant,
        probe: &mut Vec<Control>,
        broadcast: &mut Vec<Control>,
    ) {
        let retry = Duration::from_millis(u64::from(self.cfg.retry_ms.max(10)));
        let refresh = Duration::from_secs(u64::from(self.cfg.refresh_s.max(1)));
        let expire = Duration::from_secs(u64::from(self.cfg.expire_s.max(1)));
        for s in &mut self.state {
            if s.is_static {
                continue;
            }
            if let (Some(_), Some(heard)) = (s.mac, s.last_heard)
                && now.duration_since(heard) > expire
            {
                tracing::warn!(neighbour = %s.ip, "neighbour expired: no ARP answer");
                s.mac = None;
                broadcast.push(Control::SetNeighbour {
                    ip: s.ip,
                    mac: None,
                });
            }
            if now >= s.next_probe {
                let Some(ifc) = snap.interfaces.get(usize::from(s.iface.0)) else {
                    continue;
                };
                // Ask from the interface address whose subnet holds the target.
                let sender = std::iter::once(&ifc.net)
                    .chain(&ifc.secondary)
                    .find(|c| c.contains(s.ip))
                    .map_or(ifc.addr, |c| c.addr);
                probe.push(Control::SendArp {
                    iface: s.iface,
                    sender,
                    target: s.ip,
                });
                s.next_probe = now + if s.mac.is_some() { refresh } else { retry };
            }
        }
    }

    /// Tracks the neighbours a new snapshot needs (after a reload).
    pub fn sync(&mut self, snap: &Snapshot, now: Instant) {
        for n in &snap.neighbours {
            match self.find(n.addr) {
                Some(i) => {
                    if let Some(m) = n.static_mac {
                        self.state[i].mac = Some(m);
                        self.state[i].is_static = true;
                    }
                }
                None if self.state.len() < MAX_NEIGHBOURS => self.state.push(NeighState {
                    ip: n.addr,
                    iface: n.iface,
                    mac: n.static_mac,
                    is_static: n.static_mac.is_some(),
                    last_heard: None,
                    next_probe: now,
                }),
                None => {}
            }
        }
    }

    /// (address, MAC, static) of every tracked neighbour.
    pub fn entries(&self) -> Vec<(Ipv4Addr, Option<[u8; 6]>, bool)> {
        self.state
            .iter()
            .map(|s| (s.ip, s.mac, s.is_static))
            .collect()
    }

    /// Resolved MAC of a neighbour (management view).
    pub fn mac(&self, ip: Ipv4Addr) -> Option<[u8; 6]> {
        self.find(ip).and_then(|i| self.state[i].mac)
    }
}

#[cfg(test)]
mod tests;
