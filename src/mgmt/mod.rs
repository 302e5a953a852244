//! The management core: everything that is not per-packet. It owns the authoritative
//! configuration and run-time state (weights, drains, health), builds immutable snapshots and
//! publishes them to the workers, resolves neighbours, aggregates counters and latency
//! histograms, serves the API (through `api`'s thread) and decides when to stop.
//!
//! It talks to workers only through their control queues (management is the only producer,
//! the worker the only consumer), their event queues (the reverse) and their published stats.

mod alarms;
pub mod api;
pub mod bgp;
pub mod firewall;
pub mod gslb;
pub mod ha;
pub mod health;
mod http;
pub mod kernel;
mod liveness;
pub mod neigh;
mod reload;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use api::{Command, Request, Response};
use neigh::Neighbours;
use serde_json::{Value, json};

use crate::channel::{Control, Event, WorkerLink};
use crate::config::{Config, ConfigError};
use crate::lb::sched::BackendLoad;
use crate::lb::{BackendKey, BackendRuntime, BuildError, IdRegistry, Snapshot};
use crate::stats::{Counters, Ctr, LatencyHistogram, WorkerStats, new_latency_histogram};
use crate::types::{BackendId, MacAddr};

/// Sums every worker's published counters.
pub fn totals(links: &[WorkerLink]) -> (Counters, Vec<Counters>) {
    let per: Vec<Counters> = links.iter().map(|l| l.stats.load()).collect();
    let mut sum = Counters::default();
    for c in &per {
        sum.sum(c);
    }
    (sum, per)
}

/// Why an operator's command (API, ctl, SIGHUP) was refused; the running state is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error("no configuration file to reload from")]
    NoConfigFile,
    #[error("invalid configuration, running config kept: {0}")]
    InvalidConfig(ConfigError),
    #[error("invalid with the running startup-only keys: {0}")]
    StartupKeys(ConfigError),
    #[error("invalid configuration, running config kept: {0}")]
    Unbuildable(BuildError),
    #[error("bad port in {0:?}")]
    BadPort(String),
    #[error("{0:?} is not an address or address:port")]
    BadBackend(String),
    #[error("no service named {0:?}")]
    NoService(String),
    #[error("service {service:?} has no backend {backend}")]
    NoBackend { service: String, backend: String },
    #[error("{backend} is ambiguous in {service:?}: give address:port")]
    Ambiguous { service: String, backend: String },
    #[error("weight {0} is not 0-65535")]
    WeightRange(u32),
    #[error("this node has no [bgp]: nothing to drain or announce")]
    NoBgp,
}

/// Options of the management loop.
pub struct MgmtOptions {
    /// Stop once no frame has arrived for this long (pcap replay and tests).
    pub stop_after_idle: Option<Duration>,
    pub stats_interval: Option<Duration>,
    /// The file `reload` reads.
    pub config_path: Option<PathBuf>,
    /// Set by SIGHUP.
    pub hup: Arc<AtomicBool>,
    /// Set by SIGINT/SIGTERM: stop (with `[bgp]`, after withdrawing and the grace).
    pub term: Arc<AtomicBool>,
}

/// A drain in progress.
struct Drain {
    since: Instant,
    timeout: Option<Duration>,
}

pub struct Mgmt {
    cfg: Config,
    macs: Vec<[u8; 6]>,
    pub snap: Arc<Snapshot>,
    ids: IdRegistry,
    runtime: HashMap<BackendKey, BackendRuntime>,
    drains: HashMap<BackendKey, Drain>,
    neigh: Neighbours,
    links: Vec<WorkerLink>,
    load: Arc<BackendLoad>,
    /// Cumulative per-worker latency (merged from the workers' hand-overs).
    latency: Vec<LatencyHistogram>,
    health: health::Health,
    started: Instant,
    reloads: u64,
    reloads_failed: u64,
    pending: Vec<(usize, Control)>,
    /// Exception-path kernel interfaces (neighbours are mirrored into them).
    kifs: Vec<Option<kernel::KernelIface>>,
    /// The HA pair (with `[ha]`).
    ha: Option<ha::Ha>,
    /// Each worker's last heartbeat and when it last moved (`ctl health`).
    beats: Vec<(u64, Instant)>,
    /// Each port's link state, by interface name (set by app, which holds the ports).
    link_state: Option<LinkState>,
    /// GSLB (with `[gslb]`).
    gslb: Option<gslb::Gslb>,
    /// What BIRD announces (with `[bgp]`).
    bgp: Option<bgp::Announcer>,
    /// Rate-limited warnings of drops under pressure.
    alarms: alarms::Alarms,
    /// Each port's receive losses (app holds the ports).
    rx_losses: Option<RxLossesFn>,
}

/// Reads each port's receive losses: (interface name, [missed, errors, no mbuf]).
pub type RxLossesFn = Box<dyn Fn() -> Vec<(String, [u64; 3])>>;

/// Reads each port's link state: (interface name, up).
pub type LinkState = Box<dyn Fn() -> Vec<(String, bool)>>;

impl Mgmt {
    pub fn new(
        cfg: Config,
        macs: Vec<[u8; 6]>,
        ids: IdRegistry,
        snap: Arc<Snapshot>,
        links: Vec<WorkerLink>,
        load: Arc<BackendLoad>,
    ) -> Mgmt {
        let now = Instant::now();
        let neigh = Neighbours::new(&snap, &cfg.arp, now);
        let latency = links.iter().map(|_| *new_latency_histogram()).collect();
        let health = health::Health::new(&snap);
        let beats = links.iter().map(|_| (0, now)).collect();
        Mgmt {
            macs,
            snap,
            ids,
            runtime: HashMap::new(),
            drains: HashMap::new(),
            neigh,
            links,
            load,
            latency,
            health,
            started: now,
            reloads: 0,
            reloads_failed: 0,
            pending: Vec::new(),
            kifs: Vec::new(),
            ha: ha::Ha::new(&cfg, now),
            beats,
            link_state: None,
            gslb: gslb::Gslb::new(&cfg),
            bgp: cfg.bgp.as_ref().map(bgp::Announcer::new),
            alarms: alarms::Alarms::new(),
            rx_losses: None,
            cfg,
        }
    }

    /// How to read the ports' link state (app holds the ports; management does not name
    /// DPDK).
    pub fn set_link_state(&mut self, f: LinkState) {
        self.link_state = Some(f);
    }

    /// How to read the ports' receive losses (`/metrics`, warnings).
    pub fn set_rx_losses(&mut self, f: RxLossesFn) {
        self.rx_losses = Some(f);
    }

    /// Each port's receive losses now (empty before app set the reader).
    pub fn rx_losses(&self) -> Vec<(String, [u64; 3])> {
        self.rx_losses.as_ref().map_or_else(Vec::new, |f| f())
    }

    /// The exception path's kernel interfaces, to mirror neighbours into.
    pub fn set_kernel_ifaces(&mut self, kifs: Vec<Option<kernel::KernelIface>>) {
        for (ip, mac, _) in self.neigh.entries() {
            if mac.is_some() {
                kernel::neighbour(&kifs, ip, mac);
            }
        }
        self.kifs = kifs;
    }

    pub fn links(&self) -> &[WorkerLink] {
        &self.links
    }

    /// Messages the workers get before they start: static neighbours, gratuitous ARPs.
    pub fn seed_workers(&self) {
        for l in &self.links {
            for c in self.neigh.initial() {
                let _ = l.control.push(c);
            }
        }
        if self.cfg.arp.gratuitous {
            for (vip, iface) in self.snap.vips() {
                let _ = self.links[0].control.push(Control::SendArp {
                    iface,
                    sender: vip,
                    target: vip,
                });
            }
        }
    }

    /// Builds a snapshot of `cfg` with the current run-time state, and the id registry that
    /// goes with it (committed only with the snapshot).
    fn build(&self, cfg: &Config) -> Result<(Snapshot, IdRegistry), BuildError> {
        let rt = &self.runtime;
        let mut ids = self.ids.clone();
        let mut snap = Snapshot::build_with(
            cfg,
            &self.macs,
            Some(&self.snap),
            &mut ids,
            &|k| rt.get(k).copied().unwrap_or_default(),
            self.ha.as_ref().map(|h| h.owned()),
        )?;
        if let Some(g) = &self.gslb {
            snap.gslb = Some(Arc::new(g.table(cfg, &snap, &self.load)));
        }
        Ok((snap, ids))
    }

    /// Makes `snap` the running snapshot and hands it to every worker (they swap it in
    /// between bursts).
    fn install(&mut self, (snap, ids): (Snapshot, IdRegistry)) {
        let snap = Arc::new(snap);
        self.ids = ids;
        self.neigh.sync(&snap, Instant::now());
        self.health.sync(&snap);
        if let (Some(g), Some(t)) = (&self.gslb, &snap.gslb) {
            g.dns.set_table(t.clone());
        }
        self.snap = snap.clone();
        for w in 0..self.links.len() {
            self.pending.push((w, Control::Snapshot(snap.clone())));
        }
        self.flush_pending();
    }

    /// Publishes the running config with the current run-time state (a drain, a weight, a
    /// health change). The config built before, so it builds again; were it not to, the
    /// running snapshot stays and the error is logged.
    fn publish(&mut self) {
        match self.build(&self.cfg) {
            Ok(s) => self.install(s),
            Err(e) => tracing::error!("snapshot not rebuilt, the running one stays: {e}"),
        }
    }

    fn flush_pending(&mut self) {
        let links = &self.links;
        self.pending
            .retain(|(w, c)| links[*w].control.push(c.clone()).is_err());
    }

    /// Finds a backend of a service by `addr` or `addr:port`.
    fn find_backend(&self, service: &str, backend: &str) -> Result<BackendKey, CmdError> {
        let (addr, port) = match backend.split_once(':') {
            Some((a, p)) => (
                a,
                Some(
                    p.parse::<u16>()
                        .map_err(|_| CmdError::BadPort(backend.to_string()))?,
                ),
            ),
            None => (backend, None),
        };
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|_| CmdError::BadBackend(backend.to_string()))?;
        let svc = self
            .snap
            .services
            .iter()
            .position(|s| s.name == service && !s.removed)
            .ok_or_else(|| CmdError::NoService(service.to_string()))?;
        let matches: Vec<BackendKey> = self.snap.services[svc]
            .backends
            .iter()
            .filter_map(|id| {
                let b = &self.snap.backends[id.0 as usize];
                (b.addr == addr && port.is_none_or(|p| p == b.port))
                    .then(|| (service.to_string(), b.addr, b.port))
            })
            .collect();
        match matches.len() {
            0 => Err(CmdError::NoBackend {
                service: service.to_string(),
                backend: backend.to_string(),
            }),
            1 => Ok(matches[0].clone()),
            _ => Err(CmdError::Ambiguous {
                service: service.to_string(),
                backend: backend.to_string(),
            }),
        }
    }

    fn drain(
        &mut self,
        service: &str,
        backend: &str,
        timeout_s: Option<u64>,
    ) -> Result<Value, CmdError> {
        let key = self.find_backend(service, backend)?;
        self.runtime.entry(key.clone()).or_default().draining = true;
        self.drains.insert(
            key.clone(),
            Drain {
                since: Instant::now(),
                timeout: timeout_s.map(Duration::from_secs),
            },
        );
        tracing::info!(service, backend = %key.1, "backend draining");
        self.publish();
        Ok(
            json!({"service": service, "backend": format!("{}:{}", key.1, key.2), "state": "draining"}),
        )
    }

    fn enable(&mut self, service: &str, backend: &str) -> Result<Value, CmdError> {
        let key = self.find_backend(service, backend)?;
        let rt = self.runtime.entry(key.clone()).or_default();
        rt.draining = false;
        rt.forced = false;
        self.drains.remove(&key);
        tracing::info!(service, backend = %key.1, "backend enabled");
        self.publish();
        Ok(
            json!({"service": service, "backend": format!("{}:{}", key.1, key.2), "state": "enabled"}),
        )
    }

    fn weight(&mut self, service: &str, backend: &str, weight: u32) -> Result<Value, CmdError> {
        if weight > 65535 {
            return Err(CmdError::WeightRange(weight));
        }
        let key = self.find_backend(service, backend)?;
        self.runtime.entry(key.clone()).or_default().weight = Some(weight);
        tracing::info!(service, backend = %key.1, weight, "backend weight set");
        self.publish();
        Ok(json!({"service": service, "backend": format!("{}:{}", key.1, key.2), "weight": weight}))
    }

    /// Drains whose timeout passed: their remaining conns are dropped from now on (counted).
    fn expire_drains(&mut self, now: Instant) {
        let mut changed = false;
        for (key, d) in &self.drains {
            if let Some(t) = d.timeout
                && now.duration_since(d.since) >= t
            {
                let rt = self.runtime.entry(key.clone()).or_default();
                if !rt.forced {
                    rt.forced = true;
                    changed = true;
                    tracing::warn!(service = %key.0, backend = %key.1, "drain timed out: remaining conns are dropped");
                }
            }
        }
        if changed {
            self.publish();
        }
    }

    /// Applies health transitions reported by the checkers.
    fn apply_health(&mut self) {
        let changes = self.health.poll();
        if changes.is_empty() {
            return;
        }
        for (key, healthy) in changes {
            self.runtime.entry(key).or_default().healthy = healthy;
        }
        self.publish();
    }

    fn merge_latency(&mut self) {
        for (w, l) in self.links.iter().enumerate() {
            while let Some(mut h) = l.stats.hist_full.pop() {
                let _ = self.latency[w].add(&*h);
                h.reset();
                let _ = l.stats.hist_empty.push(h);
            }
        }
    }

    /// Runs until `stop` is set (signal) or the idle limit is reached; then sets `stop` so the
    /// workers leave their loops.
    pub fn run(&mut self, stop: &AtomicBool, opts: &MgmtOptions, cmds: Option<Receiver<Command>>) {
        let tick = Duration::from_millis(10);
        let mut probe = Vec::new();
        let mut broadcast = Vec::new();
        let mut last_rx = 0u64;
        let mut last_rx_change = Instant::now();
        let mut last_stats = Instant::now();
        self.health.start(&self.snap);
        self.gslb_start();
        let mut stop_at: Option<Instant> = None;
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if opts.term.load(Ordering::Relaxed) {
                // A clean stop: with [bgp], withdraw every VIP and keep forwarding for the
                // grace, so the routers move the flows before the data plane goes.
                let at = *stop_at.get_or_insert_with(|| self.bgp_stop(now));
                if now >= at {
                    break;
                }
            }
            for l in &self.links {
                while let Some(ev) = l.events.pop() {
                    match ev {
                        Event::Neighbour { ip, mac, iface } => {
                            if let Some(c) = self.neigh.learned(ip, mac, iface, now) {
                                broadcast.push(c);
                            }
                        }
                        Event::Resolve { ip, iface } => self.neigh.wanted(ip, iface, now),
                    }
                }
                while l.retired.pop().is_some() {}
            }
            self.neigh.tick(&self.snap, now, &mut probe, &mut broadcast);
            // ARP requests go out through worker 0; neighbour changes to every worker.
            self.pending.extend(probe.drain(..).map(|c| (0, c)));
            for c in broadcast.drain(..) {
                if let Control::SetNeighbour { ip, mac } = &c {
                    kernel::neighbour(&self.kifs, *ip, *mac);
                }
                let n = self.links.len();
                self.pending.extend((0..n).map(|w| (w, c.clone())));
            }
            // A full control queue keeps the message for the next tick instead of losing it.
            self.flush_pending();
            self.track_beats(now);
            self.ha_tick(now);
            self.expire_drains(now);
            self.apply_health();
            self.gslb_tick(now);
            self.bgp_tick();
            self.merge_latency();
            if opts.hup.swap(false, Ordering::Relaxed) {
                match self.reload(opts.config_path.as_ref()) {
                    Ok(v) => tracing::info!(result = %v, "SIGHUP reload"),
                    Err(e) => tracing::error!("SIGHUP reload failed: {e}"),
                }
            }
            if let Some(rx) = &cmds {
                while let Ok(cmd) = rx.try_recv() {
                    let resp = self.handle(cmd.req, opts);
                    let _ = cmd.reply.send(resp);
                }
            }

            let (sum, _) = totals(&self.links);
            self.alarms.tick(&sum, now);
            if self.alarms.ports_due(now) {
                let losses = self.rx_losses();
                self.alarms.rx_missed(&losses, now);
            }
            let rx = sum.get(Ctr::RxPackets);
            if rx != last_rx {
                last_rx = rx;
                last_rx_change = now;
            }
            if let Some(idle) = opts.stop_after_idle
                && now.duration_since(last_rx_change) >= idle
                && self.pending.is_empty()
            {
                tracing::info!(rx_packets = rx, "idle limit reached; stopping");
                break;
            }
            if let Some(iv) = opts.stats_interval
                && now.duration_since(last_stats) >= iv
            {
                last_stats = now;
                tracing::info!(counters = %sum.to_json(), "stats");
            }
            std::thread::sleep(tick);
        }
        stop.store(true, Ordering::Relaxed);
        self.health.stop();
        if let Some(g) = self.gslb.as_mut() {
            g.stop();
        }
        if let Some(b) = self.bgp.as_mut() {
            b.withdraw_all();
        }
        self.merge_latency();
    }

    fn handle(&mut self, req: Request, opts: &MgmtOptions) -> Response {
        let r = match req {
            Request::Status => Ok(self.status()),
            Request::Health => {
                let (ok, v) = self.liveness(Instant::now());
                return Response::json(if ok { 200 } else { 503 }, &v);
            }
            Request::Services => Ok(self.services()),
            Request::Backends => Ok(self.backends()),
            Request::Latency => Ok(self.latency()),
            Request::LatencyReset => Ok(self.reset_latency()),
            Request::Flows(limit) => Ok(self.flows(limit)),
            Request::Gslb => self.gslb_status(),
            Request::Node => self.node_status(),
            Request::NodeDrain => self.node_drain(true),
            Request::NodeEnable => self.node_drain(false),
            Request::Metrics => return Response::metrics(api::metrics(self)),
            Request::Reload => self.reload(opts.config_path.as_ref()),
            Request::Drain {
                service,
                backend,
                timeout_s,
            } => self.drain(&service, &backend, timeout_s),
            Request::Enable { service, backend } => self.enable(&service, &backend),
            Request::Weight {
                service,
                backend,
                weight,
            } => self.weight(&service, &backend, weight),
        };
        match r {
            Ok(v) => Response::json(200, &v),
            Err(e) => Response::json(400, &json!({ "error": e.to_string() })),
        }
    }

    pub fn status(&self) -> Value {
        let (sum, per) = totals(&self.links);
        let live = self.snap.services.iter().filter(|s| !s.removed).count();
        let (up, down) =
            self.snap
                .backends
                .iter()
                .filter(|b| !b.removed)
                .fold((0, 0), |(u, d), b| {
                    if b.weight > 0 || b.sorry {
                        (u + 1, d)
                    } else {
                        (u, d + 1)
                    }
                });
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": self.started.elapsed().as_secs(),
            "workers": self.links.len(),
            "services": live,
            "backends_up": up,
            "backends_down": down,
            "reloads": self.reloads,
            "reloads_failed": self.reloads_failed,
            "counters": sum.to_json(),
            "workers_counters": per.iter().map(Counters::to_json).collect::<Vec<_>>(),
            "ha": self.ha_view(),
            "bgp": self.bgp.as_ref().map(bgp::Announcer::json),
            "neighbours": self.neigh.entries().iter().map(|(ip, mac, st)| json!({
                "address": ip.to_string(),
                "mac": mac.map(|m| MacAddr(m).to_string()),
                "static": st,
            })).collect::<Vec<_>>(),
        })
    }

    /// (packets, bytes, flows) of a service or backend summed over workers.
    fn sum3(&self, f: impl Fn(&WorkerStats) -> [u64; 3]) -> [u64; 3] {
        self.links.iter().fold([0; 3], |a, l| {
            let v = f(&l.stats);
            [a[0] + v[0], a[1] + v[1], a[2] + v[2]]
        })
    }

    pub fn services(&self) -> Value {
        let list: Vec<Value> = self
            .snap
            .services
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.removed)
            .map(|(i, s)| {
                let [p, b, f] = self.sum3(|w| w.service(i));
                json!({
                    "name": s.name,
                    "vip": s.vip.to_string(),
                    "port": s.port,
                    "protocol": s.proto.name(),
                    "mode": format!("{:?}", s.mode).to_lowercase(),
                    "scheduler": serde_json::to_value(s.scheduler).unwrap_or(Value::Null),
                    "backends": s.backends.len(),
                    "backends_up": s.backends.iter().filter(|id| self.snap.backends[id.0 as usize].weight > 0).count(),
                    "packets": p, "bytes": b, "flows": f,
                })
            })
            .collect();
        json!(list)
    }

    pub fn backends(&self) -> Value {
        let list: Vec<Value> = self
            .snap
            .backends
            .iter()
            .enumerate()
            .filter(|(_, b)| !b.removed)
            .map(|(i, b)| {
                let s = &self.snap.services[usize::from(b.service)];
                let key = (s.name.clone(), b.addr, b.port);
                let rt = self.runtime.get(&key).copied().unwrap_or_default();
                let [p, by, f] = self.sum3(|w| w.backend(i));
                let state = if rt.forced {
                    "drained"
                } else if rt.draining {
                    "draining"
                } else if !rt.healthy {
                    "down"
                } else if b.sorry && b.weight == 0 {
                    "standby"
                } else {
                    "up"
                };
                let h = self.health.view(&key);
                json!({
                    "service": s.name,
                    "address": b.addr.to_string(),
                    "port": b.port,
                    "state": state,
                    "healthy": rt.healthy,
                    "weight": b.weight,
                    "configured_weight": b.cfg_weight,
                    "sorry": b.sorry,
                    "active_conns": self.load.total(BackendId(i as u32)),
                    "packets": p, "bytes": by, "flows": f,
                    "health": h,
                })
            })
            .collect();
        json!(list)
    }

    pub fn latency(&self) -> Value {
        let q = |h: &LatencyHistogram| {
            json!({
                "count": h.len(),
                "p50_ns": h.value_at_quantile(0.50),
                "p90_ns": h.value_at_quantile(0.90),
                "p99_ns": h.value_at_quantile(0.99),
                "p999_ns": h.value_at_quantile(0.999),
                "max_ns": h.max(),
            })
        };
        let workers: Vec<Value> = self.latency.iter().map(q).collect();
        json!({
            "workers": workers,
            "health_probes": self.health.latency_view(),
        })
    }

    /// Starts the latency histograms afresh (a benchmark's measured window, an operator's
    /// "since the change"): hand-overs waiting in the queues are discarded with the merged
    /// histograms. A worker hands over every 100 ms, so up to 100 ms of packets recorded
    /// just before the reset may still be counted after it. Returns the (empty) view.
    fn reset_latency(&mut self) -> Value {
        for (w, l) in self.links.iter().enumerate() {
            while let Some(mut h) = l.stats.hist_full.pop() {
                h.reset();
                let _ = l.stats.hist_empty.push(h);
            }
            self.latency[w].reset();
        }
        self.health.reset_latency();
        self.latency()
    }

    /// Up to `limit` live conns, most recently created first across workers.
    pub fn flows(&self, limit: usize) -> Value {
        let limit = limit.clamp(1, 10_000);
        for l in &self.links {
            while l.flows.pop().is_some() {}
            let _ = l.control.push(Control::DumpFlows(limit));
        }
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut all = Vec::new();
        let mut got = 0;
        while got < self.links.len() && Instant::now() < deadline {
            for l in &self.links {
                if let Some(v) = l.flows.pop() {
                    all.extend(v);
                    got += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        all.truncate(limit);
        let list: Vec<Value> = all
            .iter()
            .map(|c| {
                let svc = self.snap.services.get(usize::from(c.service));
                let b = self.snap.backends.get(c.backend as usize);
                json!({
                    "service": svc.map(|s| s.name.clone()),
                    "protocol": if c.proto == 6 { "tcp" } else { "udp" },
                    "client": format!("{}:{}", Ipv4Addr::from(c.client), c.cport),
                    "vip": format!("{}:{}", Ipv4Addr::from(c.vip), c.vport),
                    "backend": b.map(|b| format!("{}:{}", b.addr, b.port)),
                    "local": c.has_reverse().then(|| format!("{}:{}", Ipv4Addr::from(c.rev_dst), c.rev_dport)),
                    "state": format!("{:?}", c.state()),
                })
            })
            .collect();
        json!({"workers_answered": got, "flows": list})
    }
}

/// serde_json comparison of config sections (they are all Serialize).
mod erased {
    pub trait Ser {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Ser for T {
        fn json(&self) -> String {
            serde_json::to_string(self).unwrap_or_default()
        }
    }
}
