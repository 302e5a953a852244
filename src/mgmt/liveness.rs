//! Whether this node is fit to carry traffic (`GET /health`, `switchyard ctl health`, which
//! keepalived's `track_script` runs): every worker's loop making progress, every port's link
//! up, and in an HA pair the bulk resync from the peer complete after a (re)start, so a node
//! that comes back never takes the VIPs before it has the sessions.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Mgmt;

/// A worker whose heartbeat has not moved for this long is wedged.
const STALL: Duration = Duration::from_millis(1000);

impl Mgmt {
    /// Follows the workers' heartbeats (every tick).
    pub(super) fn track_beats(&mut self, now: Instant) {
        for (l, (beat, moved)) in self.links.iter().zip(self.beats.iter_mut()) {
            let b = l.stats.last_beat();
            if b != *beat {
                *beat = b;
                *moved = now;
            }
        }
    }

    /// (healthy, why) at `now`.
    pub fn liveness(&self, now: Instant) -> (bool, Value) {
        let mut problems = Vec::new();
        for (w, (_, moved)) in self.beats.iter().enumerate() {
            let stalled = now.duration_since(*moved);
            if stalled >= STALL {
                problems.push(format!(
                    "worker {w} made no progress for {} ms",
                    stalled.as_millis()
                ));
            }
        }
        if let Some(f) = &self.link_state {
            for (name, up) in f() {
                if !up {
                    problems.push(format!("interface {name:?}: link down"));
                }
            }
        }
        let ready = self.ha().is_none_or(super::ha::Ha::ready);
        if !ready {
            problems.push("waiting for the HA peer's bulk resync".to_string());
        }
        let ok = problems.is_empty();
        (
            ok,
            json!({
                "healthy": ok,
                "ready": ready,
                "role": self.ha().map(|h| h.role().name()),
                "problems": problems,
            }),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use crossbeam_queue::ArrayQueue;

    use super::super::Mgmt;
    use crate::channel::WorkerLink;
    use crate::config::{Config, Mode};
    use crate::lb::IdRegistry;
    use crate::lb::sched::BackendLoad;
    use crate::stats::WorkerStats;
    use crate::testkit;

    fn mgmt(cfg: Config, workers: usize) -> Mgmt {
        let snap = testkit::snapshot_owning(&cfg, &Default::default());
        let links = (0..workers)
            .map(|_| WorkerLink {
                control: Arc::new(ArrayQueue::new(16)),
                events: Arc::new(ArrayQueue::new(16)),
                retired: Arc::new(ArrayQueue::new(4)),
                stats: Arc::new(WorkerStats::default()),
                flows: Arc::new(ArrayQueue::new(1)),
                sync: None,
            })
            .collect();
        let macs = vec![testkit::LB_MAC; cfg.interfaces.len()];
        let load = Arc::new(BackendLoad::new(workers));
        Mgmt::new(cfg, macs, IdRegistry::default(), snap, links, load)
    }

    #[test]
    fn a_worker_whose_heartbeat_stops_makes_the_node_unhealthy_until_it_moves() {
        let mut m = mgmt(testkit::config(Mode::Dsr), 2);
        let t0 = Instant::now();
        m.track_beats(t0);
        assert!(m.liveness(t0 + Duration::from_millis(500)).0);
        // Worker 1 beats on, worker 0 does not.
        let later = t0 + Duration::from_millis(1500);
        m.links()[1].stats.beat(1500);
        m.track_beats(later);
        let (ok, why) = m.liveness(later);
        assert!(!ok, "{why}");
        let problems = why["problems"].to_string();
        assert!(
            problems.contains("worker 0 made no progress") && !problems.contains("worker 1"),
            "{why}"
        );
        m.links()[0].stats.beat(1600);
        m.track_beats(later);
        assert!(m.liveness(later).0);
    }

    #[test]
    fn an_ha_node_is_not_ready_before_its_peer_resynced_it() {
        let mut m = mgmt(testkit::ha_config(Mode::Proxy), 1);
        let now = Instant::now();
        m.track_beats(now);
        let (ok, why) = m.liveness(now);
        assert!(!ok, "{why}");
        assert_eq!(why["ready"], false, "{why}");
        assert!(why["problems"].to_string().contains("bulk resync"), "{why}");
    }
}
