//! Rate-limited warnings for what an operator must hear about under pressure: the conn table
//! full, SNAT ports exhausted, martian sources, ICMP errors held back, NAT segments of other
//! nodes. Counters say how many; the log says that it is happening, at most once per reason
//! every `EVERY`, with the count since the last line.

use std::time::{Duration, Instant};

use crate::stats::Counters;
use crate::types::DropReason;

/// At most one line per reason this often.
pub const EVERY: Duration = Duration::from_secs(10);

const WATCHED: [(DropReason, &str); 7] = [
    (
        DropReason::FlowTableFull,
        "conn table full: new flows dropped (flows.capacity_per_core)",
    ),
    (
        DropReason::SnatExhausted,
        "SNAT ports exhausted: new proxy flows dropped (more snat_addresses or [nat] ports)",
    ),
    (
        DropReason::MartianSource,
        "new flows from martian sources dropped",
    ),
    (
        DropReason::IcmpRateLimited,
        "ICMP errors held back by the rate limit",
    ),
    (
        DropReason::NatMidflow,
        "mid-flow segments of full-NAT conns this node does not know dropped",
    ),
    (
        DropReason::ServiceRateLimited,
        "new flows over a service's new_flows_per_s dropped",
    ),
    (
        DropReason::SourceRateLimited,
        "new flows over a service's new_flows_per_source_per_s dropped",
    ),
];

/// Per watched reason: the count at the last line and when it was written.
pub struct Alarms {
    last: [(u64, Option<Instant>); WATCHED.len()],
    /// Per port: frames the device missed at the last line, and when it was written.
    missed: std::collections::HashMap<String, (u64, Option<Instant>)>,
    /// When the ports' counters were last read (once a second is enough).
    ports_read: Option<Instant>,
    /// Workers answering SYNs with cookies at the last look.
    cookies_on: u64,
}

impl Alarms {
    pub fn new() -> Alarms {
        Alarms {
            last: [(0, None); WATCHED.len()],
            missed: std::collections::HashMap::new(),
            ports_read: None,
            cookies_on: 0,
        }
    }

    /// Whether to read the ports' counters now (once a second).
    pub fn ports_due(&mut self, now: Instant) -> bool {
        if self
            .ports_read
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return false;
        }
        self.ports_read = Some(now);
        true
    }

    /// Warns (at most every `EVERY` per port) when a port's device missed frames: the
    /// workers did not empty its rx ring in time.
    pub fn rx_missed(&mut self, losses: &[(String, [u64; 3])], now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        for (port, [missed, _, _]) in losses {
            let e = self.missed.entry(port.clone()).or_insert((0, None));
            if *missed <= e.0 || e.1.is_some_and(|t| now.duration_since(t) < EVERY) {
                continue;
            }
            let n = missed - e.0;
            tracing::warn!(port = %port, missed = n, "rx ring overflowed: frames missed by the device");
            out.push(format!("{port}: {n} frames missed"));
            *e = (*missed, Some(now));
        }
        out
    }

    /// Looks at the totals; returns the lines written (for tests).
    pub fn tick(&mut self, sum: &Counters, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        for (i, (reason, what)) in WATCHED.iter().enumerate() {
            let v = sum.dropped(*reason);
            let (seen, at) = self.last[i];
            if v <= seen || at.is_some_and(|t| now.duration_since(t) < EVERY) {
                continue;
            }
            let line = format!("{what}: {} since the last report", v - seen);
            tracing::warn!(drop = reason.name(), count = v - seen, "{what}");
            out.push(line);
            self.last[i] = (v, Some(now));
        }
        // SYN cookies on or off (`auto`): once per change.
        let on = sum.get(crate::stats::Ctr::SynCookiesOn);
        if on != self.cookies_on {
            let line = format!("SYN cookies on in {on} worker(s) (half-open conns)");
            if on > self.cookies_on {
                tracing::warn!(workers = on, "SYN cookies on: a flood of half-open conns");
            } else {
                tracing::info!(
                    workers = on,
                    "SYN cookies: fewer workers answer with cookies"
                );
            }
            out.push(line);
            self.cookies_on = on;
        }
        out
    }
}

impl Default for Alarms {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_per_reason_at_most_every_period_with_the_count_since() {
        let mut a = Alarms::new();
        let mut c = Counters::default();
        let t0 = Instant::now();
        assert!(a.tick(&c, t0).is_empty());
        for _ in 0..5 {
            c.drop(DropReason::FlowTableFull);
        }
        let l = a.tick(&c, t0);
        assert_eq!(l.len(), 1);
        assert!(
            l[0].contains("conn table full") && l[0].contains(": 5 since"),
            "{l:?}"
        );
        c.drop(DropReason::FlowTableFull);
        assert!(
            a.tick(&c, t0 + Duration::from_secs(1)).is_empty(),
            "held back"
        );
        c.drop(DropReason::SnatExhausted);
        let l = a.tick(&c, t0 + Duration::from_secs(2));
        assert_eq!(l.len(), 1, "another reason has its own period: {l:?}");
        let l = a.tick(&c, t0 + EVERY + Duration::from_secs(1));
        assert_eq!(l.len(), 1);
        assert!(l[0].contains(": 1 since"), "{l:?}");
    }

    #[test]
    fn missed_frames_are_reported_per_port_at_most_every_period() {
        let mut a = Alarms::new();
        let t0 = Instant::now();
        let p = |m: u64| vec![("lan".to_string(), [m, 0, 0])];
        assert!(a.rx_missed(&p(0), t0).is_empty());
        assert_eq!(a.rx_missed(&p(7), t0), ["lan: 7 frames missed"]);
        assert!(a.rx_missed(&p(9), t0 + Duration::from_secs(1)).is_empty());
        assert_eq!(
            a.rx_missed(&p(12), t0 + EVERY + Duration::from_secs(1)),
            ["lan: 5 frames missed"]
        );
    }
}
