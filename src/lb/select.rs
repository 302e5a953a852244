//! Backend choice for a new conn, per worker: a live persistence template first, else the
//! service's consistent hash (a persistent service's first pick for a client subnet) or its
//! scheduler. The [`Selector`] owns everything that choice reads and writes on one core:
//! the persistence table, the schedulers' cursors and credits, and this worker's exact live
//! conn count per backend (published for the other workers' least-connections view).

use std::sync::Arc;

use super::Snapshot;
use super::persist::{PersistTable, masked, source_hash};
use super::sched::{BackendLoad, PickInput, SchedState, pick};
use crate::types::{BackendId, DropReason, MAX_BACKENDS};

/// One worker's backend selection state. Owned by the worker's thread.
pub struct Selector {
    /// This worker's index (its row in `load`).
    me: usize,
    persist: PersistTable,
    /// Per service id: round-robin cursor and smooth-WRR credits.
    sched: Vec<SchedState>,
    /// Live conns per backend on this worker (exact); the others' come from `load`.
    conns: Vec<u32>,
    load: Arc<BackendLoad>,
}

impl Selector {
    pub fn new(
        snap: &Snapshot,
        me: usize,
        persist_capacity: usize,
        load: Arc<BackendLoad>,
    ) -> Self {
        Selector {
            me,
            persist: PersistTable::new(persist_capacity),
            sched: snap.services.iter().map(SchedState::for_service).collect(),
            conns: vec![0; MAX_BACKENDS],
            load,
        }
    }

    /// A new snapshot: the schedulers start afresh (their state indexes each service's
    /// backend list, which may have changed); templates and conn counts stay.
    pub fn rebuild(&mut self, snap: &Snapshot) {
        self.sched = snap.services.iter().map(SchedState::for_service).collect();
    }

    /// The backend for a new conn of service `si` from `client` (`flow_hash`: the packet's
    /// tuple hash), or `NoBackend` when no backend may take new flows.
    pub fn select(
        &mut self,
        snap: &Snapshot,
        si: u16,
        client: u32,
        flow_hash: u64,
        now: u32,
    ) -> Result<BackendId, DropReason> {
        let svc = &snap.services[usize::from(si)];
        let persisted = svc
            .persistence
            .map(|(timeout, mask)| (timeout, masked(client, mask)));
        let sticky = persisted.and_then(|(timeout, m)| {
            self.persist.get(si, m, now, timeout).filter(|b| {
                snap.backends
                    .get(b.0 as usize)
                    .is_some_and(|b| b.service == si)
            })
        });
        if let Some(b) = sticky {
            return Ok(b);
        }
        let src_hash = source_hash(persisted.map_or(client, |(_, m)| m));
        let slot = if persisted.is_some() {
            // First pick for a client subnet: a weighted consistent hash of it, which every
            // core and every instance computes alike (see `persist`).
            svc.maglev.lookup(src_hash).map(usize::from)
        } else {
            let me = self.me;
            let (own, load) = (&self.conns, &self.load);
            let active =
                |b: BackendId| own.get(b.0 as usize).copied().unwrap_or(0) + load.others(me, b);
            let inp = PickInput {
                service: svc,
                backends: &snap.backends,
                flow_hash,
                source_hash: src_hash,
                active: &active,
            };
            pick(svc.scheduler, &mut self.sched[usize::from(si)], &inp)
        };
        let Some(slot) = slot else {
            return Err(DropReason::NoBackend);
        };
        let b = svc.backends[slot];
        if let Some((timeout, m)) = persisted {
            self.persist.put(si, m, b, now, timeout);
        }
        Ok(b)
    }

    /// Takes a persistence template the HA peer made: (service `si`, masked client) ->
    /// backend `b`, alive from `now`.
    pub fn adopt(&mut self, snap: &Snapshot, si: u16, masked: u32, b: BackendId, now: u32) {
        if let Some((timeout, _)) = snap
            .services
            .get(usize::from(si))
            .and_then(|s| s.persistence)
        {
            self.persist.put(si, masked, b, now, timeout);
        }
    }

    /// The live persistence templates: (service, masked client, backend).
    pub fn templates<'a>(
        &'a self,
        snap: &'a Snapshot,
        now: u32,
    ) -> impl Iterator<Item = (u16, u32, BackendId)> + 'a {
        self.persist.live(now, move |si| {
            snap.services
                .get(usize::from(si))
                .and_then(|s| s.persistence)
                .map(|(t, _)| t)
        })
    }

    /// A conn of backend `b` was created on this worker.
    #[inline]
    pub fn opened(&mut self, b: BackendId) {
        if let Some(n) = self.conns.get_mut(b.0 as usize) {
            *n += 1;
        }
    }

    /// A conn of backend `b` ended on this worker.
    #[inline]
    pub fn closed(&mut self, b: u32) {
        if let Some(n) = self.conns.get_mut(b as usize) {
            *n = n.saturating_sub(1);
        }
    }

    /// Publishes this worker's counts of the first `backends` backends (once per poll round;
    /// the array is sized for the most there can be).
    pub fn publish(&self, backends: usize) {
        let n = backends.min(self.conns.len());
        self.load.publish(self.me, &self.conns[..n]);
    }
}
