//! GSLB on the management core: what each name answers, from the state of the local
//! services and of the peer sites' services, and the servers the kernel side of the exception
//! path runs for it.
//!
//! - The answers go into every snapshot (`gslb::Table`, built in [`Gslb::table`]); the
//!   workers answer UDP A queries from it, [`dns`] everything else (TCP, other types, the
//!   zone's own records, queries too large for the workers' path).
//! - Site exchange ([`exchange`]): this site serves `/gslb` (its services' health and load) on
//!   `[gslb] listen`, and polls every peer's, both authenticated with the shared key. A peer
//!   service is up after `rise` good polls that say so and down after `fall` that do not (or
//!   fail); each change is counted and logged.
//! - HTTP redirect ([`redirect`]): a service with `redirect` whose backends are all down has
//!   its new conns sent to the kernel; a small HTTP server on the VIP answers `302 Found`.
//!
//! The HTTP servers (`/gslb` and the redirects) are `mgmt::http` servers, kept in
//! [`Gslb`] and stopped by dropping them; the DNS servers and the pollers are threads that
//! watch a stop flag.

pub mod dns;
pub mod exchange;
pub mod redirect;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::config::{Config, GslbConfig};
use crate::gslb::{Candidate, Table};
use crate::lb::Snapshot;
use crate::lb::sched::BackendLoad;

/// What a peer says of one of its services (its `/gslb` report).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServiceReport {
    pub up: bool,
    pub healthy: u32,
    pub backends: u32,
    pub conns: u64,
    pub capacity: u64,
}

impl ServiceReport {
    fn load(&self) -> f64 {
        if self.capacity == 0 {
            1.0
        } else {
            self.conns as f64 / self.capacity as f64
        }
    }
}

/// A peer site's service as this site sees it (rise/fall applied).
#[derive(Debug, Clone, Default)]
pub struct PeerService {
    pub up: bool,
    ok_streak: u32,
    fail_streak: u32,
    pub transitions: u64,
    pub last: Option<ServiceReport>,
}

/// A peer site's poll state.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    pub polls_ok: u64,
    pub polls_failed: u64,
    pub last_error: Option<String>,
    pub last_ok: Option<Instant>,
    /// Services named by this site's answers (others are not tracked).
    pub services: HashMap<String, PeerService>,
}

/// GSLB's management state.
pub struct Gslb {
    cfg: GslbConfig,
    pub peers: Vec<Peer>,
    polls: Receiver<exchange::PollResult>,
    /// What `/gslb` serves (refreshed by the management loop).
    report: Arc<Mutex<Value>>,
    pub dns: Arc<dns::Shared>,
    pub redirects: Arc<redirect::Counters>,
    pub exchange: Arc<exchange::Counters>,
    /// Stops the DNS servers' and the pollers' threads.
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// The HTTP servers (`/gslb`, redirects): dropping one stops it.
    servers: Vec<crate::mgmt::http::Server>,
    last_refresh: Instant,
    /// Start-up: the poll results and the servers start with the management loop.
    pending_start: Option<std::sync::mpsc::Sender<exchange::PollResult>>,
}

impl Gslb {
    pub fn new(cfg: &Config) -> Option<Gslb> {
        let g = cfg.gslb.as_ref()?;
        let (tx, rx) = channel();
        let peers = g
            .sites
            .iter()
            .map(|site| Peer {
                services: g
                    .names
                    .iter()
                    .flat_map(|n| &n.answers)
                    .filter(|a| a.site.as_deref() == Some(site.name.as_str()))
                    .map(|a| (a.service.clone(), PeerService::default()))
                    .collect(),
                ..Peer::default()
            })
            .collect();
        Some(Gslb {
            cfg: g.clone(),
            peers,
            polls: rx,
            report: Arc::new(Mutex::new(json!({ "services": {} }))),
            dns: Arc::new(dns::Shared::new(g)),
            redirects: Arc::new(redirect::Counters::default()),
            exchange: Arc::new(exchange::Counters::default()),
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            servers: Vec::new(),
            last_refresh: Instant::now() - Duration::from_secs(3600),
            pending_start: Some(tx),
        })
    }

    pub fn config(&self) -> &GslbConfig {
        &self.cfg
    }

    /// Starts the kernel-side servers (DNS, `/gslb`, redirects) and the peer pollers.
    /// Failures to bind are logged: the data plane keeps working without them.
    pub fn start(&mut self, cfg: &Config) {
        let Some(tx) = self.pending_start.take() else {
            return;
        };
        let key = self.cfg.key_bytes().unwrap_or_default();
        for &addr in &self.cfg.dns_addresses {
            match dns::serve(addr, self.dns.clone(), self.stop.clone()) {
                Ok(t) => self.threads.extend(t),
                Err(e) => tracing::error!("gslb dns on {addr}: {e}"),
            }
        }
        if let Some(listen) = self.cfg.listen {
            match exchange::serve(
                listen,
                key.clone(),
                self.report.clone(),
                self.exchange.clone(),
            ) {
                Ok(s) => self.servers.push(s),
                Err(e) => tracing::error!("gslb exchange on {listen}: {e}"),
            }
        }
        let source = exchange::poll_source(cfg);
        for (i, site) in self.cfg.sites.iter().enumerate() {
            let p = exchange::Poller {
                site: i,
                target: site.api,
                source,
                key: key.clone(),
                interval: Duration::from_millis(u64::from(self.cfg.poll_interval_ms)),
                timeout: Duration::from_millis(u64::from(self.cfg.poll_timeout_ms)),
            };
            match p.spawn(tx.clone(), self.stop.clone()) {
                Ok(t) => self.threads.push(t),
                Err(e) => tracing::error!("gslb poller of {}: {e}", site.name),
            }
        }
        for s in cfg.services.iter().filter(|s| s.redirect.is_some()) {
            let target = s.redirect.clone().unwrap_or_default();
            match redirect::serve(
                std::net::SocketAddrV4::new(s.vip, s.port),
                target,
                self.redirects.clone(),
            ) {
                Ok(srv) => self.servers.push(srv),
                Err(e) => tracing::error!("redirect server of {:?}: {e}", s.name),
            }
        }
    }

    /// Stops every server and poller, and waits for their threads.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.servers.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }

    /// Applies the polls that arrived; true when a peer service went up or down.
    pub fn apply_polls(&mut self) -> bool {
        let mut changed = false;
        while let Ok(r) = self.polls.try_recv() {
            let Some(peer) = self.peers.get_mut(r.site) else {
                continue;
            };
            let site = &self.cfg.sites[r.site].name;
            match &r.report {
                Ok(_) => {
                    peer.polls_ok += 1;
                    peer.last_ok = Some(Instant::now());
                    peer.last_error = None;
                }
                Err(e) => {
                    peer.polls_failed += 1;
                    if peer.last_error.as_ref() != Some(e) {
                        tracing::warn!(site = %site, "gslb poll failed: {e}");
                    }
                    peer.last_error = Some(e.clone());
                }
            }
            for (name, ps) in peer.services.iter_mut() {
                let rep = r.report.as_ref().ok().and_then(|m| m.get(name)).copied();
                let good = rep.is_some_and(|s| s.up);
                if rep.is_some() {
                    ps.last = rep;
                }
                if good {
                    ps.ok_streak += 1;
                    ps.fail_streak = 0;
                } else {
                    ps.fail_streak += 1;
                    ps.ok_streak = 0;
                }
                let flip = if ps.up {
                    ps.fail_streak >= self.cfg.fall
                } else {
                    ps.ok_streak >= self.cfg.rise
                };
                if flip {
                    ps.up = !ps.up;
                    ps.transitions += 1;
                    changed = true;
                    tracing::info!(site = %site, service = %name, up = ps.up, "gslb peer service");
                }
            }
        }
        changed
    }

    /// Whether it is time to look at the local load again (`least_load`), and the report.
    pub fn due(&mut self, now: Instant) -> bool {
        let iv = Duration::from_millis(u64::from(self.cfg.poll_interval_ms).min(1000));
        if now.duration_since(self.last_refresh) >= iv {
            self.last_refresh = now;
            true
        } else {
            false
        }
    }

    /// The answers of every name for snapshot `snap` of config `cfg`.
    pub fn table(&self, cfg: &Config, snap: &Snapshot, load: &BackendLoad) -> Table {
        let Some(g) = cfg.gslb.as_ref() else {
            return Table::default();
        };
        let local = local_reports(g, snap, load);
        Table::build(
            g,
            |svc| {
                snap.services
                    .iter()
                    .find(|s| s.name == svc && !s.removed)
                    .map(|s| s.vip)
            },
            |n, a| {
                let ans = &g.names[n].answers[a];
                match &ans.site {
                    None => local.get(&ans.service).map_or(
                        Candidate {
                            up: false,
                            load: 0.0,
                        },
                        |r| Candidate {
                            up: r.up,
                            load: r.load(),
                        },
                    ),
                    Some(site) => {
                        let ps = g
                            .sites
                            .iter()
                            .position(|s| &s.name == site)
                            .and_then(|i| self.peers.get(i))
                            .and_then(|p| p.services.get(&ans.service));
                        Candidate {
                            up: ps.is_some_and(|p| p.up),
                            load: ps.and_then(|p| p.last).map_or(0.0, |r| r.load()),
                        }
                    }
                }
            },
        )
    }

    /// Refreshes what `/gslb` serves.
    pub fn refresh_report(&self, cfg: &Config, snap: &Snapshot, load: &BackendLoad) {
        let Some(g) = cfg.gslb.as_ref() else { return };
        let r = local_reports(g, snap, load);
        if let Ok(mut v) = self.report.lock() {
            *v = json!({ "services": r });
        }
    }

    /// `ctl gslb`: names and their answers, peers and their services.
    pub fn status(&self, snap: &Snapshot, worker_answers: &dyn Fn(usize) -> u64) -> Value {
        let table = snap.gslb.as_deref();
        let names: Vec<Value> = self
            .cfg
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let answers = table.and_then(|t| t.entries.get(i)).map(|e| {
                    let regions = if n.policy == crate::config::Policy::Region {
                        table.map_or(1, |t| t.region_names.len())
                    } else {
                        1
                    };
                    (0..regions)
                        .map(|r| {
                            let shares: Vec<Value> = e
                                .shares(r)
                                .into_iter()
                                .map(|(a, share)| match a {
                                    crate::gslb::Answer::Records { vips, .. } => json!({
                                        "a": vips.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
                                        "share": share,
                                    }),
                                    crate::gslb::Answer::Rcode(c) => json!({
                                        "rcode": dns::rcode_name(*c),
                                        "share": share,
                                    }),
                                })
                                .collect();
                            let region = table
                                .and_then(|t| t.region_names.get(r))
                                .filter(|s| !s.is_empty())
                                .cloned()
                                .unwrap_or_else(|| "*".to_string());
                            json!({ "region": region, "answers": shares })
                        })
                        .collect::<Vec<_>>()
                });
                json!({
                    "name": n.name,
                    "policy": n.policy,
                    "ttl": n.ttl,
                    "when_down": n.when_down,
                    "answers_now": answers,
                    "queries_workers": worker_answers(i),
                    "queries_kernel": self.dns.name_queries(i),
                    "last_kernel_answer": self.dns.last_answer(i),
                })
            })
            .collect();
        let sites: Vec<Value> = self
            .cfg
            .sites
            .iter()
            .zip(&self.peers)
            .map(|(s, p)| {
                let services: serde_json::Map<String, Value> = p
                    .services
                    .iter()
                    .map(|(name, ps)| {
                        (
                            name.clone(),
                            json!({
                                "up": ps.up,
                                "transitions": ps.transitions,
                                "last_report": ps.last,
                            }),
                        )
                    })
                    .collect();
                json!({
                    "name": s.name,
                    "api": s.api.to_string(),
                    "reachable": p.last_ok.is_some_and(|t| t.elapsed()
                        < Duration::from_millis(2 * u64::from(self.cfg.poll_interval_ms) + 1000)),
                    "polls_ok": p.polls_ok,
                    "polls_failed": p.polls_failed,
                    "last_error": p.last_error,
                    "services": services,
                })
            })
            .collect();
        json!({
            "zone": self.cfg.zone,
            "dns_addresses": self.cfg.dns_addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "names": names,
            "sites": sites,
            "dns_kernel": self.dns.counters_json(),
            "exchange": self.exchange.json(),
            "redirects": self.redirects.json(),
        })
    }
}

/// This site's services as `/gslb` reports them: up (a local backend takes new conns and
/// the VIP is ours), healthy local backends, active conns, capacity.
fn local_reports(
    g: &GslbConfig,
    snap: &Snapshot,
    load: &BackendLoad,
) -> HashMap<String, ServiceReport> {
    snap.services
        .iter()
        .filter(|s| !s.removed)
        .map(|s| {
            let mut r = ServiceReport::default();
            for id in &s.backends {
                let b = &snap.backends[id.0 as usize];
                r.conns += u64::from(load.total(*id));
                if b.sorry || b.remote || b.removed {
                    continue;
                }
                r.backends += 1;
                if b.weight > 0 {
                    r.healthy += 1;
                }
            }
            r.up = s.owned && r.healthy > 0;
            r.capacity = u64::from(r.healthy) * u64::from(g.backend_capacity);
            (s.name.clone(), r)
        })
        .collect()
}

/// Addresses the kernel side holds for GSLB on interface `iface` of `cfg` (the DNS addresses
/// and redirecting VIPs in its subnets or announced on it).
pub fn kernel_addresses(cfg: &Config, iface: usize) -> Vec<Ipv4Addr> {
    let Some(ifc) = cfg.interfaces.get(iface) else {
        return Vec::new();
    };
    let mut out: Vec<Ipv4Addr> = cfg
        .gslb
        .iter()
        .flat_map(|g| &g.dns_addresses)
        .copied()
        .filter(|a| {
            ifc.address.contains(*a) || ifc.secondary_addresses.iter().any(|c| c.contains(*a))
        })
        .collect();
    for s in cfg.services.iter().filter(|s| s.redirect.is_some()) {
        let on = match &s.interface {
            Some(n) => *n == ifc.name,
            None => {
                ifc.address.contains(s.vip)
                    || (iface == 0 && !cfg.interfaces.iter().any(|i| i.address.contains(s.vip)))
            }
        };
        if on && !out.contains(&s.vip) {
            out.push(s.vip);
        }
    }
    out
}

impl super::Mgmt {
    /// Starts GSLB's servers and pollers, and puts the first answers into the snapshot.
    pub(super) fn gslb_start(&mut self) {
        let cfg = self.cfg.clone();
        if let Some(g) = self.gslb.as_mut() {
            g.start(&cfg);
            self.publish();
        }
    }

    /// Applies peer polls; now and then refreshes `/gslb` and looks whether the answers moved
    /// (a service's load, for `least_load`): a new snapshot only when they did.
    pub(super) fn gslb_tick(&mut self, now: Instant) {
        let Some(g) = self.gslb.as_mut() else { return };
        let mut changed = g.apply_polls();
        if g.due(now) {
            g.refresh_report(&self.cfg, &self.snap, &self.load);
            let t = g.table(&self.cfg, &self.snap, &self.load);
            changed |= self.snap.gslb.as_deref() != Some(&t);
        }
        if changed {
            self.publish();
        }
    }

    pub(super) fn gslb_status(&self) -> Result<Value, super::CmdError> {
        let Some(g) = &self.gslb else {
            return Ok(json!({ "enabled": false }));
        };
        let links = &self.links;
        let worker = |i: usize| -> u64 { links.iter().map(|l| l.stats.name_answers(i)).sum() };
        Ok(g.status(&self.snap, &worker))
    }
}

impl Gslb {
    /// GSLB's metrics: queries per name (by path), peer services' state and changes, polls,
    /// the kernel side's DNS outcomes, redirects.
    pub fn metrics(
        &self,
        reg: &mut prometheus_client::registry::Registry,
        worker_answers: &dyn Fn(usize) -> u64,
    ) {
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family;
        use prometheus_client::metrics::gauge::Gauge;
        type Labels = Vec<(&'static str, String)>;
        let queries = Family::<Labels, Counter>::default();
        for (i, n) in self.cfg.names.iter().enumerate() {
            for (path, v) in [
                ("worker", worker_answers(i)),
                ("kernel", self.dns.name_queries(i)),
            ] {
                queries
                    .get_or_create(&vec![("name", n.name.clone()), ("path", path.into())])
                    .inc_by(v);
            }
        }
        reg.register(
            "gslb_queries",
            "DNS queries for a GSLB name, answered by the workers or the kernel side",
            queries,
        );
        let up = Family::<Labels, Gauge>::default();
        let changes = Family::<Labels, Counter>::default();
        let polls = Family::<Labels, Counter>::default();
        for (site, p) in self.cfg.sites.iter().zip(&self.peers) {
            for (svc, ps) in &p.services {
                let l = vec![("site", site.name.clone()), ("service", svc.clone())];
                up.get_or_create(&l).set(i64::from(ps.up));
                changes.get_or_create(&l).inc_by(ps.transitions);
            }
            for (result, v) in [("ok", p.polls_ok), ("failed", p.polls_failed)] {
                polls
                    .get_or_create(&vec![
                        ("site", site.name.clone()),
                        ("result", result.into()),
                    ])
                    .inc_by(v);
            }
        }
        reg.register(
            "gslb_peer_up",
            "A peer site's service is up (rise/fall applied)",
            up,
        );
        reg.register(
            "gslb_peer_transitions",
            "Up/down changes of a peer site's service",
            changes,
        );
        reg.register("gslb_polls", "Polls of a peer site's /gslb", polls);
        let dns = Family::<Labels, Counter>::default();
        let c = &self.dns.counters;
        for (kind, a) in [
            ("udp", &c.udp),
            ("tcp", &c.tcp),
            ("malformed", &c.malformed),
            ("refused", &c.refused),
            ("nxdomain", &c.nxdomain),
            ("truncated", &c.truncated),
            ("notimp", &c.notimp),
            ("formerr", &c.formerr),
            ("badvers", &c.badvers),
        ] {
            dns.get_or_create(&vec![("kind", kind.into())])
                .inc_by(a.load(Ordering::Relaxed));
        }
        reg.register(
            "gslb_kernel_dns",
            "Queries of the kernel side's DNS server, by outcome",
            dns,
        );
        let redirects = Counter::<u64>::default();
        redirects.inc_by(self.redirects.redirects.load(Ordering::Relaxed));
        reg.register(
            "gslb_redirects",
            "HTTP redirects to a peer site sent",
            redirects,
        );
        let ex = Family::<Labels, Counter>::default();
        for (kind, a) in [
            ("served", &self.exchange.served),
            ("refused", &self.exchange.refused),
            ("replayed", &self.exchange.replayed),
        ] {
            ex.get_or_create(&vec![("kind", kind.into())])
                .inc_by(a.load(Ordering::Relaxed));
        }
        reg.register(
            "gslb_exchange_requests",
            "Requests to this site's /gslb, by outcome",
            ex,
        );
    }
}
