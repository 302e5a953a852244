//! The management side of an HA pair (`[ha]`): following which floating addresses keepalived
//! gives this node, and the flow sync with the peer.
//!
//! * **Ownership** (`owner`): the floating addresses (VIPs, SNAT addresses, `[ha]
//!   floating_addresses`) are ours while keepalived has them on our exception-path kernel
//!   interface. A change rebuilds the snapshot (the workers then answer ARP for, and balance,
//!   exactly what we own) and announces newly owned addresses with gratuitous ARP.
//! * **Sync** (`proto`): the workers' conn changes go to the peer in datagrams over UDP
//!   from `sync_address`; what the peer sends is installed on the worker that will own each
//!   conn here (`owner_of` for NAT conns, every worker for DSR conns and templates). A node
//!   that starts asks the peer for everything it has (bulk resync) and is **ready** (`ctl
//!   health`) only once that is complete, or once the peer has not answered within
//!   `bulk_timeout_ms` (it is gone too).
//! * **Hello**: every second each node says its role, readiness and set-up; a peer that says
//!   "master" while we are is a both-active window, counted and logged.

mod owner;
pub mod proto;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant, SystemTime};

pub use proto::Role;
use proto::{Msg, RECORDS_PER_DATAGRAM, ReplayWindow};
use serde_json::{Value, json};

use crate::channel::{Control, SyncBatch, SyncRecord, WorkerLink};
use crate::config::{Config, HaConfig};
use crate::flow::flags;
use crate::mode::snat::owner_of;
use crate::stats::Ctr;

/// A hello this often.
const HELLO_EVERY: Duration = Duration::from_secs(1);
/// A peer unheard for this long is down.
const PEER_TIMEOUT: Duration = Duration::from_secs(3);
/// A bulk request is repeated this often until the peer answers.
const BULK_REQUEST_EVERY: Duration = Duration::from_millis(500);

/// What this node knows of its peer.
#[derive(Debug, Default)]
struct Peer {
    boot: Option<u32>,
    last_heard: Option<Instant>,
    role: Option<Role>,
    ready: bool,
    workers: u16,
    nat_ports: (u16, u16),
}

/// Whether this node has the sessions it should (after a start: the peer's bulk resync).
#[derive(Debug)]
enum Readiness {
    /// Waiting for the peer's bulk resync since `since`; `answered`: the peer began it.
    Waiting {
        since: Instant,
        last_request: Option<Instant>,
        answered: Option<Instant>,
        /// Records received since the peer began it.
        got: u64,
        /// Bulk resyncs that arrived short (datagrams lost) and were asked for again.
        retries: u32,
    },
    Ready,
}

/// A bulk resync that arrives with fewer records than the peer sent is asked for again this
/// many times before the node makes do with what it has.
const BULK_RETRIES: u32 = 3;

/// A bulk resync this node is sending: each worker's bulk count when it began.
#[derive(Debug)]
struct BulkOut {
    bulks_before: Vec<u64>,
    records_before: u64,
}

/// Counters and gauges of the pair (`ctl status`, `/metrics`).
#[derive(Debug, Default, Clone)]
pub struct HaCounters {
    pub datagrams_sent: u64,
    pub datagrams_received: u64,
    pub datagrams_bad: u64,
    /// Of those, datagrams refused as seen already (a replay).
    pub datagrams_replayed: u64,
    pub send_errors: u64,
    pub records_sent: u64,
    pub records_received: u64,
    pub bulks_sent: u64,
    pub bulks_received: u64,
    /// Times this node became master.
    pub failovers: u64,
    /// Times this node and its peer both said "master".
    pub both_active: u64,
    /// Age of the oldest record in the last batch sent (ms, worker clock).
    pub sync_lag_ms: u64,
}

pub struct Ha {
    cfg: HaConfig,
    floating: HashSet<Ipv4Addr>,
    /// Our exception-path kernel interfaces (where keepalived puts the floating addresses).
    kifs: Vec<String>,
    owned: HashSet<Ipv4Addr>,
    role: Role,
    last_failover: Option<SystemTime>,
    sock: Option<UdpSocket>,
    key: Option<Vec<u8>>,
    boot: u32,
    seq: u32,
    workers: u16,
    nat_ports: (u16, u16),
    peer: Peer,
    replay: ReplayWindow,
    readiness: Readiness,
    started: Instant,
    /// How long after the start this node became ready.
    ready_after: Option<Duration>,
    /// Records the bulk resync brought.
    resync_records: u64,
    bulk_out: Option<BulkOut>,
    last_hello: Option<Instant>,
    both_active_now: bool,
    /// Install batches to reuse.
    spare: Vec<Box<SyncBatch>>,
    pub counters: HaCounters,
}

impl Ha {
    pub fn new(cfg: &Config, now: Instant) -> Option<Ha> {
        let h = cfg.ha.clone()?;
        let kifs = cfg
            .interfaces
            .iter()
            .filter(|i| i.exception_path)
            .map(|i| i.kernel_iface())
            .collect();
        let addr = SocketAddrV4::new(h.sync_address, h.sync_port);
        let sock = match UdpSocket::bind(addr).and_then(|s| {
            s.set_nonblocking(true)?;
            Ok(s)
        }) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(%addr, "HA sync socket: {e}; retrying every tick");
                None
            }
        };
        let boot = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos() ^ d.as_secs() as u32)
            | 1;
        tracing::info!(peer = %h.peer, sync = %addr, "HA pair: waiting for the peer's bulk resync");
        Some(Ha {
            key: h.key_bytes(),
            floating: cfg.floating(),
            kifs,
            owned: HashSet::new(),
            role: Role::Backup,
            last_failover: None,
            sock,
            boot,
            seq: 0,
            workers: cfg.cores.workers.len() as u16,
            nat_ports: (cfg.nat.port_min, cfg.nat.port_max),
            peer: Peer::default(),
            replay: ReplayWindow::default(),
            readiness: Readiness::Waiting {
                since: now,
                last_request: None,
                answered: None,
                got: 0,
                retries: 0,
            },
            started: now,
            ready_after: None,
            resync_records: 0,
            bulk_out: None,
            last_hello: None,
            both_active_now: false,
            spare: Vec::new(),
            counters: HaCounters::default(),
            cfg: h,
        })
    }

    /// The floating addresses this node owns now.
    pub fn owned(&self) -> &HashSet<Ipv4Addr> {
        &self.owned
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the peer's hellos arrive.
    pub fn peer_up(&self, now: Instant) -> bool {
        self.peer
            .last_heard
            .is_some_and(|t| now.duration_since(t) < PEER_TIMEOUT)
    }

    /// When this node last became master, in Unix seconds.
    pub fn last_failover_unix(&self) -> Option<u64> {
        self.last_failover
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
    }

    /// Whether this node has the sessions it should: not while it waits for the peer's bulk
    /// resync after a start.
    pub fn ready(&self) -> bool {
        matches!(self.readiness, Readiness::Ready)
    }

    /// A new configuration (reload): the floating set may have changed.
    pub fn reconfigure(&mut self, cfg: &Config) {
        self.floating = cfg.floating();
        self.owned.retain(|a| self.floating.contains(a));
    }

    /// Reads what keepalived gives us; returns the addresses newly owned (to announce) when
    /// ownership changed, `None` when it did not.
    pub fn poll_ownership(&mut self) -> Option<Vec<Ipv4Addr>> {
        let present = owner::kernel_addresses(&self.kifs);
        let owned: HashSet<Ipv4Addr> = self.floating.intersection(&present).copied().collect();
        if owned == self.owned {
            return None;
        }
        let gained: Vec<Ipv4Addr> = owned.difference(&self.owned).copied().collect();
        let lost: Vec<Ipv4Addr> = self.owned.difference(&owned).copied().collect();
        self.owned = owned;
        let role = if self.owned.is_empty() {
            Role::Backup
        } else if self.owned.len() == self.floating.len() {
            Role::Master
        } else {
            Role::Partial
        };
        if role != self.role {
            if role == Role::Master {
                self.counters.failovers += 1;
                self.last_failover = Some(SystemTime::now());
            }
            tracing::warn!(
                from = self.role.name(),
                to = role.name(),
                ?gained,
                ?lost,
                "HA role changed"
            );
            self.role = role;
            self.last_hello = None; // say so now
        } else {
            tracing::info!(?gained, ?lost, "HA: floating addresses changed");
        }
        Some(gained)
    }

    fn send(&mut self, msg: &Msg) {
        let Some(sock) = &self.sock else {
            return;
        };
        self.seq = self.seq.wrapping_add(1);
        let d = proto::encode(self.boot, self.seq, msg, self.key.as_deref());
        let to = SocketAddr::V4(SocketAddrV4::new(self.cfg.peer, self.cfg.sync_port));
        match sock.send_to(&d, to) {
            Ok(_) => self.counters.datagrams_sent += 1,
            Err(e) => {
                self.counters.send_errors += 1;
                tracing::debug!("HA sync send: {e}");
            }
        }
    }

    /// One management tick: hello, bulk requests, the workers' batches out, the peer's
    /// datagrams in. `pending` gets the control messages for the workers.
    pub fn tick(
        &mut self,
        now: Instant,
        links: &[WorkerLink],
        pending: &mut Vec<(usize, Control)>,
    ) {
        if self.sock.is_none() {
            let addr = SocketAddrV4::new(self.cfg.sync_address, self.cfg.sync_port);
            self.sock = UdpSocket::bind(addr)
                .and_then(|s| s.set_nonblocking(true).map(|()| s))
                .ok();
        }
        if self
            .last_hello
            .is_none_or(|t| now.duration_since(t) >= HELLO_EVERY)
        {
            self.last_hello = Some(now);
            let hello = Msg::Hello {
                role: self.role,
                ready: self.ready(),
                workers: self.workers,
                nat_ports: self.nat_ports,
            };
            self.send(&hello);
        }
        self.readiness_tick(now);
        // A bulk resync this node sends is complete when every worker finished its walk;
        // their last batches are queued by then (a worker queues before it counts).
        let done = self.bulk_out.as_ref().is_some_and(|b| {
            links
                .iter()
                .zip(&b.bulks_before)
                .all(|(l, n)| l.stats.load().get(Ctr::SyncBulks) > *n)
        });
        self.send_batches(links);
        if done && let Some(b) = self.bulk_out.take() {
            let records = self.counters.records_sent - b.records_before;
            self.send(&Msg::BulkEnd { records });
            self.counters.bulks_sent += 1;
            tracing::info!(records, "HA: bulk resync sent");
        }
        self.receive(now, links, pending);
    }

    fn readiness_tick(&mut self, now: Instant) {
        let Readiness::Waiting {
            since,
            last_request,
            answered,
            ..
        } = &mut self.readiness
        else {
            return;
        };
        let timeout = Duration::from_millis(u64::from(self.cfg.bulk_timeout_ms));
        // Unanswered, or answered but silent since: the peer is gone too.
        let heard = self.peer.last_heard.max(*answered).unwrap_or(*since);
        if answered.is_none() && now.duration_since(*since) >= timeout
            || answered.is_some() && now.duration_since(heard) >= timeout
        {
            tracing::warn!("HA: no bulk resync from the peer; ready without it");
            self.become_ready(now);
            return;
        }
        if answered.is_none()
            && last_request.is_none_or(|t| now.duration_since(t) >= BULK_REQUEST_EVERY)
        {
            *last_request = Some(now);
            self.send(&Msg::BulkRequest);
        }
    }

    fn become_ready(&mut self, now: Instant) {
        self.readiness = Readiness::Ready;
        self.ready_after = Some(now.duration_since(self.started));
    }

    /// The workers' filled batches, as datagrams to the peer; the batches go back empty.
    fn send_batches(&mut self, links: &[WorkerLink]) {
        for l in links {
            let Some(s) = &l.sync else { continue };
            while let Some(mut b) = s.full.pop() {
                let age = l.stats.last_beat().saturating_sub(u64::from(b.since));
                self.counters.sync_lag_ms = age;
                for chunk in b.records().chunks(RECORDS_PER_DATAGRAM) {
                    self.send(&Msg::Records(chunk.to_vec()));
                    self.counters.records_sent += chunk.len() as u64;
                }
                b.len = 0;
                let _ = s.empty.push(b);
            }
            while let Some(b) = s.installed.pop() {
                self.spare.push(b);
            }
        }
    }

    fn receive(&mut self, now: Instant, links: &[WorkerLink], pending: &mut Vec<(usize, Control)>) {
        let mut buf = [0u8; 2048];
        // Per worker, the install batch being filled.
        let mut fill: Vec<Option<Box<SyncBatch>>> = links.iter().map(|_| None).collect();
        for _ in 0..4096 {
            let Some(sock) = &self.sock else { break };
            let (n, from) = match sock.recv_from(&mut buf) {
                Ok(x) => x,
                Err(_) => break, // WouldBlock: nothing more this tick
            };
            if from.ip() != std::net::IpAddr::V4(self.cfg.peer) {
                self.counters.datagrams_bad += 1;
                continue;
            }
            let d = match proto::decode(&buf[..n], self.key.as_deref()) {
                Ok(d) => d,
                Err(e) => {
                    self.counters.datagrams_bad += 1;
                    tracing::debug!("HA sync datagram dropped: {e}");
                    continue;
                }
            };
            if !self.replay.accept(d.node, d.seq) {
                self.counters.datagrams_bad += 1;
                self.counters.datagrams_replayed += 1;
                tracing::debug!(seq = d.seq, "HA sync datagram dropped: seen already");
                continue;
            }
            self.counters.datagrams_received += 1;
            if self.peer.boot.is_some_and(|b| b != d.node) {
                tracing::warn!("HA: the peer restarted");
            }
            self.peer.boot = Some(d.node);
            self.peer.last_heard = Some(now);
            match d.msg {
                Msg::Hello {
                    role,
                    ready,
                    workers,
                    nat_ports,
                } => {
                    if (workers, nat_ports) != (self.workers, self.nat_ports)
                        && (self.peer.workers, self.peer.nat_ports) != (workers, nat_ports)
                    {
                        tracing::error!(
                            workers,
                            ?nat_ports,
                            "HA: the peer's workers or [nat] ports differ from ours: \
                             synced NAT conns would land on the wrong core"
                        );
                    }
                    self.peer.role = Some(role);
                    self.peer.ready = ready;
                    self.peer.workers = workers;
                    self.peer.nat_ports = nat_ports;
                    let both = role == Role::Master && self.role == Role::Master;
                    if both && !self.both_active_now {
                        self.counters.both_active += 1;
                        tracing::error!("HA: both nodes are master (keepalived split brain?)");
                    }
                    self.both_active_now = both;
                }
                Msg::BulkRequest => {
                    if self.bulk_out.is_none() {
                        tracing::info!("HA: the peer asks for a bulk resync");
                        self.bulk_out = Some(BulkOut {
                            bulks_before: links
                                .iter()
                                .map(|l| l.stats.load().get(Ctr::SyncBulks))
                                .collect(),
                            records_before: self.counters.records_sent,
                        });
                        self.send(&Msg::BulkStart);
                        for w in 0..links.len() {
                            pending.push((w, Control::SyncAll));
                        }
                    }
                }
                Msg::BulkStart => {
                    if let Readiness::Waiting { answered, got, .. } = &mut self.readiness {
                        *answered = Some(now);
                        *got = 0;
                    }
                }
                Msg::BulkEnd { records } => {
                    self.bulk_end(now, records);
                }
                Msg::Records(recs) => {
                    self.counters.records_received += recs.len() as u64;
                    if let Readiness::Waiting { got, .. } = &mut self.readiness {
                        *got += recs.len() as u64;
                    }
                    for r in &recs {
                        self.dispatch(r, links.len(), &mut fill, pending);
                    }
                }
            }
        }
        for (w, b) in fill.into_iter().enumerate() {
            if let Some(b) = b.filter(|b| b.len > 0) {
                pending.push((w, Control::SyncInstall(b)));
            }
        }
    }

    /// The end of a bulk resync the peer sent us: ready, unless datagrams were lost on the
    /// way (fewer records than it sent), when it is asked for again (a few times).
    fn bulk_end(&mut self, now: Instant, records: u64) {
        let Readiness::Waiting {
            since,
            got,
            retries,
            answered,
            last_request,
        } = &mut self.readiness
        else {
            return;
        };
        self.counters.bulks_received += 1;
        if *got < records && *retries < BULK_RETRIES {
            tracing::warn!(
                sent = records,
                received = *got,
                "HA: bulk resync arrived short; asking again"
            );
            *retries += 1;
            *since = now;
            *answered = None;
            *last_request = None;
            return;
        }
        if *got < records {
            tracing::warn!(
                sent = records,
                received = *got,
                "HA: bulk resync short again; ready with what arrived"
            );
        }
        self.resync_records = *got;
        tracing::info!(records = *got, "HA: bulk resync received; ready");
        self.become_ready(now);
    }

    /// Puts `r` in the install batch of each worker that is to have it.
    fn dispatch(
        &mut self,
        r: &SyncRecord,
        workers: usize,
        fill: &mut [Option<Box<SyncBatch>>],
        pending: &mut Vec<(usize, Control)>,
    ) {
        // A NAT conn lives on the core that owns its client (as on the peer: the same
        // workers and ports); DSR conns (RSS picks the core) and templates go to every one.
        let only = (r.flags & flags::REVERSE != 0).then(|| owner_of(r.client, r.cport, workers));
        for (w, slot) in fill.iter_mut().enumerate() {
            if only.is_some_and(|o| o != w) {
                continue;
            }
            let b = slot.get_or_insert_with(|| self.spare.pop().unwrap_or_else(SyncBatch::new));
            if b.len == 0 {
                b.since = 0;
            }
            b.push(*r);
            if b.len == b.recs.len()
                && let Some(full) = slot.take()
            {
                pending.push((w, Control::SyncInstall(full)));
            }
        }
    }

    /// The pair's state for `ctl status` and the API.
    pub fn view(&self, now: Instant, links: &[WorkerLink]) -> Value {
        let sum = |c: Ctr| -> u64 { links.iter().map(|l| l.stats.load().get(c)).sum() };
        let c = &self.counters;
        json!({
            "role": self.role.name(),
            "ready": self.ready(),
            "ready_after_ms": self.ready_after.map(|d| d.as_millis() as u64),
            "resync_records": self.resync_records,
            "owned": self.owned.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "floating": self.floating.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "peer": {
                "address": self.cfg.peer.to_string(),
                "up": self.peer.last_heard.is_some_and(|t| now.duration_since(t) < PEER_TIMEOUT),
                "role": self.peer.role.map(Role::name),
                "ready": self.peer.ready,
                "last_heard_ms_ago": self.peer.last_heard.map(|t| now.duration_since(t).as_millis() as u64),
            },
            "sync_lag_ms": c.sync_lag_ms,
            "records_sent": c.records_sent,
            "records_received": c.records_received,
            "records_installed": sum(Ctr::SyncInstalled),
            "records_install_failed": sum(Ctr::SyncInstallFailed),
            "records_dropped": sum(Ctr::SyncDropped),
            "datagrams_sent": c.datagrams_sent,
            "datagrams_received": c.datagrams_received,
            "datagrams_bad": c.datagrams_bad,
            "datagrams_replayed": c.datagrams_replayed,
            "send_errors": c.send_errors,
            "bulks_sent": c.bulks_sent,
            "bulks_received": c.bulks_received,
            "failovers": c.failovers,
            "both_active": c.both_active,
            "last_failover": self.last_failover.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map(|d| d.as_secs()),
        })
    }
}

impl super::Mgmt {
    /// The pair's part of a management tick: ownership (a change rebuilds the snapshot and
    /// announces what we gained), then sync.
    pub(super) fn ha_tick(&mut self, now: Instant) {
        let gained = self.ha.as_mut().and_then(Ha::poll_ownership);
        if let Some(gained) = gained {
            self.publish();
            for a in gained {
                if let Some((iface, _)) = self.snap.local(a) {
                    self.pending.push((
                        0,
                        Control::SendArp {
                            iface,
                            sender: a,
                            target: a,
                        },
                    ));
                }
            }
            self.flush_pending();
        }
        if let Some(ha) = self.ha.as_mut() {
            ha.tick(now, &self.links, &mut self.pending);
        }
    }

    /// The pair's state (`None`: a single node).
    pub fn ha_view(&self) -> Option<Value> {
        self.ha
            .as_ref()
            .map(|h| h.view(Instant::now(), &self.links))
    }

    pub fn ha(&self) -> Option<&Ha> {
        self.ha.as_ref()
    }
}
