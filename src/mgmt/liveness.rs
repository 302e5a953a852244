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
