//! Schedulers: which backend a new connection goes to. Per-core state (round-robin cursors,
//! smooth-WRR credits) lives in the worker; nothing here locks or allocates per packet.
//!
//! Least-connections across cores: each worker counts its own live conns per backend exactly
//! and publishes the counts once per poll round ([`BackendLoad`]); a worker picking a backend
//! adds its own exact counts to the other workers' last published ones. The view of other
//! cores is therefore at most one poll round (microseconds) old; no lock, no shared write.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::config::Scheduler;
use crate::lb::{Backend, Service};
use crate::types::{BackendId, MAX_BACKENDS};

/// Published live-conn counts: `[worker][backend]`, each row written by its worker only.
pub struct BackendLoad {
    rows: Vec<Box<[AtomicU32]>>,
}

impl BackendLoad {
    pub fn new(workers: usize) -> Self {
        BackendLoad {
            rows: (0..workers)
                .map(|_| (0..MAX_BACKENDS).map(|_| AtomicU32::new(0)).collect())
                .collect(),
        }
    }

    /// Called by worker `w` with its own counts.
    pub fn publish(&self, w: usize, counts: &[u32]) {
        for (a, c) in self.rows[w].iter().zip(counts) {
            a.store(*c, Ordering::Relaxed);
        }
    }

    /// Live conns of `b` on all workers but `w`.
    #[inline]
    pub fn others(&self, w: usize, b: BackendId) -> u32 {
        let i = b.0 as usize;
        self.rows
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != w)
            .map(|(_, r)| r.get(i).map_or(0, |a| a.load(Ordering::Relaxed)))
            .sum()
    }

    /// Live conns of `b` on all workers (management view).
    pub fn total(&self, b: BackendId) -> u32 {
        let i = b.0 as usize;
        self.rows
            .iter()
            .map(|r| r.get(i).map_or(0, |a| a.load(Ordering::Relaxed)))
            .sum()
    }
}

/// A worker's scheduler state for one service.
#[derive(Debug, Clone, Default)]
pub struct SchedState {
    cursor: usize,
    /// Smooth weighted round-robin credits, one per backend of the service.
    credit: Vec<i64>,
}

impl SchedState {
    pub fn for_service(s: &Service) -> Self {
        SchedState {
            cursor: 0,
            credit: vec![0; s.backends.len()],
        }
    }
}

/// What a scheduler may look at for one decision.
pub struct PickInput<'a> {
    pub service: &'a Service,
    pub backends: &'a [Backend],
    /// The packet's flow hash (Maglev).
    pub flow_hash: u64,
    /// Hash of the (masked) client address (source_hash, persistence).
    pub source_hash: u64,
    /// Live conns of a backend as this worker sees them (own exact + others' published).
    pub active: &'a dyn Fn(BackendId) -> u32,
}

/// Picks a backend slot (index into `service.backends`), `None` when every weight is 0.
pub fn pick(kind: Scheduler, st: &mut SchedState, inp: &PickInput<'_>) -> Option<usize> {
    let svc = inp.service;
    let n = svc.backends.len();
    let weight = |i: usize| inp.backends[svc.backends[i].0 as usize].weight;
    match kind {
        Scheduler::Maglev => svc.maglev.lookup(inp.flow_hash).map(usize::from),
        Scheduler::SourceHash => svc.maglev.lookup(inp.source_hash).map(usize::from),
        Scheduler::RoundRobin => {
            for k in 0..n {
                let i = (st.cursor + k) % n;
                if weight(i) > 0 {
                    st.cursor = (i + 1) % n;
                    return Some(i);
                }
            }
            None
        }
        Scheduler::WeightedRoundRobin => {
            // nginx's smooth weighted round-robin: interleaves, exact over one period.
            if st.credit.len() != n {
                st.credit = vec![0; n];
            }
            let mut total = 0i64;
            let mut best: Option<usize> = None;
            for i in 0..n {
                let w = i64::from(weight(i));
                if w == 0 {
                    continue;
                }
                st.credit[i] += w;
                total += w;
                if best.is_none_or(|b| st.credit[i] > st.credit[b]) {
                    best = Some(i);
                }
            }
            if let Some(b) = best {
                st.credit[b] -= total;
            }
            best
        }
        Scheduler::LeastConnections | Scheduler::WeightedLeastConnections => {
            let weighted = kind == Scheduler::WeightedLeastConnections;
            let mut best: Option<(usize, u64, u64)> = None;
            // Start at the cursor so ties rotate instead of always hitting the first backend.
            for k in 0..n {
                let i = (st.cursor + k) % n;
                let w = u64::from(weight(i));
                if w == 0 {
                    continue;
                }
                let a = u64::from((inp.active)(svc.backends[i]));
                let w = if weighted { w } else { 1 };
                // a/w < best_a/best_w  <=>  a * best_w < best_a * w
                if best.is_none_or(|(_, ba, bw)| a * bw < ba * w) {
                    best = Some((i, a, w));
                }
            }
            st.cursor = (st.cursor + 1) % n.max(1);
            best.map(|(i, _, _)| i)
        }
    }
}

#[cfg(test)]
mod tests;
