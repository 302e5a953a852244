//! HA flow sync, the worker's side. The worker of the node that owns a service streams every
//! change of that service's conns and persistence templates (created, state changed, ended,
//! and, once per refresh period, still alive) as [`SyncRecord`]s in batches it hands to
//! management, which sends them to the peer. On the peer the worker that will own each conn
//! there installs it in its own table and ages it as its own. A bulk resync walks the whole
//! table a slice per round. Batches are recycled through the channel's queues: nothing is
//! allocated or freed here, and with sync off (no `[ha]`) none of it runs.

use super::Datapath;
use crate::channel::{SyncBatch, SyncLink, SyncOp, SyncRecord};
use crate::config::Mode;
use crate::flow::{Conn, ConnId, FlowKey, FlowState, flags};
use crate::lb::persist::masked;
use crate::stats::Ctr;
use crate::types::{BackendId, SnatIdx};

/// Conn slots a bulk resync walks per poll round.
const BULK_SLOTS_PER_ROUND: usize = 2048;

/// The worker's sync state.
pub(super) struct SyncOut {
    link: SyncLink,
    /// The batch being filled.
    cur: Option<Box<SyncBatch>>,
    /// A batch is handed over once its first record is this old.
    interval_ms: u32,
    /// Live conns active within this long are re-sent once per this long (the peer ages its
    /// copies from the last record it got).
    refresh_ms: u32,
    /// The sweep pass last seen, whether it refreshes, and when the last refreshing one began.
    passes: u64,
    refreshing: bool,
    last_refresh: u32,
    /// A bulk resync in progress: the next conn slot (past the last: the templates).
    bulk: Option<usize>,
}

impl SyncOut {
    /// Appends `r` to the current batch (taking an empty one if needed); a full batch goes
    /// to management. Without an empty batch the record is dropped, counted.
    fn push(&mut self, r: SyncRecord, now: u32, ctr: &mut crate::stats::Counters) -> bool {
        if self.cur.is_none() {
            self.cur = self.link.empty.pop();
        }
        let Some(b) = self.cur.as_mut() else {
            ctr.inc(Ctr::SyncDropped);
            return false;
        };
        if b.len == 0 {
            b.since = now;
        }
        b.push(r);
        ctr.inc(Ctr::SyncRecords);
        if b.len == b.recs.len() {
            self.hand_over();
        }
        true
    }

    /// Conn `c` ended (reclaimed by a lookup or the sweep): tell the peer, if this node owns
    /// its service.
    pub(super) fn ended(
        &mut self,
        c: &Conn,
        snap: &crate::lb::Snapshot,
        now: u32,
        ctr: &mut crate::stats::Counters,
    ) {
        if snap
            .services
            .get(usize::from(c.service))
            .is_some_and(|s| s.owned)
        {
            self.push(conn_record(SyncOp::Delete, c, (0, 0)), now, ctr);
        }
    }

    fn hand_over(&mut self) {
        if let Some(b) = self.cur.take()
            && let Err(b) = self.link.full.push(b)
        {
            // Cannot happen (the queues hold every batch there is); keep filling it.
            self.cur = Some(b);
        }
    }
}

/// The record of conn `c` (whose backend is at `backend`) in state `op`.
fn conn_record(op: SyncOp, c: &Conn, backend: (u32, u16)) -> SyncRecord {
    SyncRecord {
        op,
        proto: c.proto,
        state: c.state() as u8,
        flags: c.flags & (flags::REVERSE | flags::SNAT),
        client: c.client,
        vip: c.vip,
        cport: c.cport,
        vport: c.vport,
        backend: backend.0,
        bport: backend.1,
        rev_dport: c.rev_dport,
        rev_dst: c.rev_dst,
    }
}

impl Datapath {
    /// Turns HA flow sync on for this worker (app, before the worker starts).
    pub fn enable_sync(&mut self, link: SyncLink, interval_ms: u32, refresh_ms: u32) {
        self.sync = Some(SyncOut {
            link,
            cur: None,
            interval_ms: interval_ms.max(1),
            refresh_ms: refresh_ms.max(1),
            passes: 0,
            refreshing: false,
            last_refresh: 0,
            bulk: None,
        });
    }

    /// Conn `id` was created or its state changed: tell the peer, if this node owns its
    /// service.
    #[cold]
    #[inline(never)]
    pub(super) fn sync_conn(&mut self, id: ConnId, now: u32) {
        let c = *self.flows.conn(id);
        if !self.owns(c.service) {
            return;
        }
        let r = conn_record(SyncOp::Upsert, &c, self.flows.endpoint(c.backend));
        if let Some(s) = self.sync.as_mut() {
            s.push(r, now, &mut self.ctr);
        }
    }

    /// A persistence template (service `si`, client `client`) -> `backend` was made or used.
    #[cold]
    pub(super) fn sync_template(&mut self, si: u16, client: u32, backend: BackendId, now: u32) {
        let Some(r) = template_record(&self.snap, si, client, backend) else {
            return;
        };
        if let Some(s) = self.sync.as_mut() {
            s.push(r, now, &mut self.ctr);
        }
    }

    /// The record of a template, the masked address already applied to `client` here.
    /// Whether this node owns service `si` (always on a single node).
    #[inline]
    fn owns(&self, si: u16) -> bool {
        self.snap
            .services
            .get(usize::from(si))
            .is_some_and(|s| s.owned)
    }

    /// Once per poll round (sync on): hands the current batch over when its first record has
    /// waited the batch interval, and walks the next slice of a bulk resync.
    pub fn sync_round(&mut self, now: u32) {
        let Some(s) = self.sync.as_mut() else {
            return;
        };
        if let Some(b) = &s.cur
            && b.len > 0
            && now.wrapping_sub(b.since) >= s.interval_ms
        {
            s.hand_over();
        }
        if s.bulk.is_some() {
            self.bulk_step(now);
        }
    }

    /// Starts a bulk resync (`Control::SyncAll`): the whole table, then the templates.
    pub fn sync_all(&mut self) {
        if let Some(s) = self.sync.as_mut() {
            s.bulk = Some(0);
        }
    }

    /// One slice of the bulk resync. It stops where there is no empty batch and goes on from
    /// there next round, so a slow peer slows the resync, not the worker.
    fn bulk_step(&mut self, now: u32) {
        let t = self.snap.timeouts;
        let Some(s) = self.sync.as_mut() else {
            return;
        };
        let Some(mut i) = s.bulk else {
            return;
        };
        let slots = self.flows.slots();
        let end = (i + BULK_SLOTS_PER_ROUND).min(slots);
        while i < end {
            if let Some((c, be)) = self.flows.live_at(i, now, &t) {
                if s.cur.is_none() && s.link.empty.is_empty() {
                    break; // no room: resume here next round
                }
                s.push(conn_record(SyncOp::Upsert, c, be), now, &mut self.ctr);
            }
            i += 1;
        }
        if i < slots {
            s.bulk = Some(i);
            return;
        }
        // The table is done: the templates (few), then the resync is complete.
        let Datapath {
            select,
            snap,
            sync,
            ctr,
            ..
        } = self;
        if let Some(s) = sync.as_mut() {
            for (si, m, b) in select.templates(snap, now) {
                if let Some(r) = template_record(snap, si, m, b) {
                    s.push(r, now, ctr);
                }
            }
            s.hand_over();
            s.bulk = None;
        }
        self.ctr.inc(Ctr::SyncBulks);
    }

    /// The sweep with refresh (sync on): every refresh period one pass re-sends the live
    /// conns that were active since the last, of the services this node owns.
    pub(super) fn sweep_sync(&mut self, now: u32, slots: usize) {
        let t = self.snap.timeouts;
        let passes = self.flows.sweep_passes();
        let Datapath {
            flows,
            snat,
            select,
            sync,
            snap,
            ctr,
            ..
        } = self;
        let Some(s) = sync.as_mut() else {
            return;
        };
        if passes != s.passes {
            s.passes = passes;
            s.refreshing = now.wrapping_sub(s.last_refresh) >= s.refresh_ms;
            if s.refreshing {
                s.last_refresh = now;
            }
        }
        let refreshing = s.refreshing;
        let window = s.refresh_ms;
        let owned = |si: u16| snap.services.get(usize::from(si)).is_some_and(|x| x.owned);
        flows.sweep_with(now, &t, slots, &mut |c: &Conn, be| match be {
            None => {
                super::reclaim(c, snat, select);
                if owned(c.service) {
                    s.push(conn_record(SyncOp::Delete, c, (0, 0)), now, ctr);
                }
            }
            Some(be) => {
                if refreshing && owned(c.service) && now.wrapping_sub(c.last_seen()) <= window {
                    s.push(conn_record(SyncOp::Upsert, c, be), now, ctr);
                }
            }
        });
    }

    /// Installs what the peer streamed (`Control::SyncInstall`) and gives the batch back.
    pub fn sync_install(&mut self, batch: Box<SyncBatch>, now: u32) {
        for r in batch.records() {
            let ok = match r.op {
                SyncOp::Upsert => self.install_conn(r, now),
                SyncOp::Delete => {
                    self.remove_conn(r, now);
                    true
                }
                SyncOp::Persist => self.install_template(r, now),
            };
            self.ctr.inc(if ok {
                Ctr::SyncInstalled
            } else {
                Ctr::SyncInstallFailed
            });
        }
        if let Some(s) = &self.sync {
            let _ = s.link.installed.push(batch);
        }
    }

    fn forward_key(r: &SyncRecord) -> FlowKey {
        FlowKey {
            src: r.client,
            dst: r.vip,
            src_port: r.cport,
            dst_port: r.vport,
            proto: r.proto,
        }
    }

    /// The service of a record and its backend's id here.
    fn record_ids(&self, r: &SyncRecord) -> Option<(u16, BackendId)> {
        let snap = &*self.snap;
        let si = snap.service(r.vip.into(), r.vport, r.proto)?;
        let b = snap.services[usize::from(si)]
            .backends
            .iter()
            .copied()
            .find(|b| {
                let x = &snap.backends[b.0 as usize];
                u32::from(x.addr) == r.backend && x.port == r.bport
            })?;
        Some((si, b))
    }

    fn install_conn(&mut self, r: &SyncRecord, now: u32) -> bool {
        let key = Self::forward_key(r);
        let state = FlowState::from_u8(r.state);
        if let Some((id, _)) = self.lookup(&key, key.hash(), now) {
            self.flows.set_state(id, state);
            self.flows.conn_mut(id).touch(now);
            return true;
        }
        let Some((si, backend)) = self.record_ids(r) else {
            return false;
        };
        // The conn must have the shape this node's mode of its service gives conns
        // (`mode::open`): a peer on another configuration (a reload that changed the mode
        // reached one node first) may send another. Installed, a conn without the reverse
        // tuple its NAT mode needs would be rewritten from one it does not have (source
        // 0.0.0.0:0), and one with a reverse tuple its owner would not have made lives on a
        // worker that is not where its packets are steered.
        let fits = match self.snap.services[usize::from(si)].mode {
            Mode::Dsr => r.flags & (flags::REVERSE | flags::SNAT) == 0,
            Mode::Gateway => {
                r.flags & (flags::REVERSE | flags::SNAT) == flags::REVERSE
                    && (r.rev_dst, r.rev_dport) == (r.client, r.cport)
            }
            Mode::Proxy => r.flags & (flags::REVERSE | flags::SNAT) == flags::REVERSE | flags::SNAT,
        };
        if !fits {
            return false;
        }
        let mut conn = Conn::new(&key, state, si, backend.0);
        if r.flags & flags::REVERSE != 0 {
            conn = conn.with_reverse(&FlowKey {
                src: r.backend,
                dst: r.rev_dst,
                src_port: r.bport,
                dst_port: r.rev_dport,
                proto: r.proto,
            });
        }
        if r.flags & flags::SNAT != 0 {
            let Some(idx) = self
                .snap
                .snat
                .iter()
                .position(|(a, _)| u32::from(*a) == r.rev_dst)
            else {
                return false;
            };
            let idx = SnatIdx(idx as u8);
            if !self.snat.take(idx, r.rev_dport) {
                return false;
            }
            conn.flags |= flags::SNAT;
            conn.snat_idx = idx.0;
        }
        match self.flows.insert(conn, now) {
            Ok(_) => {
                self.select.opened(backend);
                true
            }
            Err(_) => {
                crate::mode::close(&conn, &mut self.snat);
                false
            }
        }
    }

    fn remove_conn(&mut self, r: &SyncRecord, now: u32) {
        let key = Self::forward_key(r);
        if let Some((id, _)) = self.lookup(&key, key.hash(), now) {
            let Datapath {
                flows,
                snat,
                select,
                ..
            } = self;
            flows.remove(id, &mut |c: &Conn| super::reclaim(c, snat, select));
        }
    }

    fn install_template(&mut self, r: &SyncRecord, now: u32) -> bool {
        // A template's netmask comes from the peer's datagram: one past 32 is no netmask
        // (`masked` would shift by a negative amount) and the record is refused.
        if r.state > 32 {
            return false;
        }
        let Some((si, backend)) = self.record_ids(r) else {
            return false;
        };
        self.select
            .adopt(&self.snap, si, masked(r.client, r.state), backend, now);
        true
    }
}

/// A persistence template of service `si` as a record (`None`: the service or backend is gone,
/// or the service has no persistence).
fn template_record(
    snap: &crate::lb::Snapshot,
    si: u16,
    client: u32,
    backend: BackendId,
) -> Option<SyncRecord> {
    let svc = snap.services.get(usize::from(si))?;
    let (_, netmask) = svc.persistence?;
    let b = snap.backends.get(backend.0 as usize)?;
    Some(SyncRecord {
        op: SyncOp::Persist,
        proto: svc.proto.number(),
        state: netmask,
        client: masked(client, netmask),
        vip: u32::from(svc.vip),
        vport: svc.port,
        backend: u32::from(b.addr),
        bport: b.port,
        ..SyncRecord::default()
    })
}
