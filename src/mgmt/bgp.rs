//! What this node asks BIRD to announce (`[bgp]`): a /32 route per announceable VIP in the
//! kernel routing table `[bgp] table`, which BIRD's kernel protocol learns and its BGP
//! sessions export (conf/bird.conf). A VIP is announceable while every live service on it
//! has `min_backends_up` local backends taking new conns and the node is not drained or
//! stopping. Management recomputes the set every tick and changes the table only where it
//! differs; each announce and withdraw is counted and logged.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::Command;

use serde_json::{Value, json};

use super::kernel::KernelIface;
use crate::config::BgpConfig;
use crate::lb::Snapshot;

/// One announced VIP's route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The kernel interface the route names (the VIP's interface's exception path).
    pub dev: String,
    /// MED, as the route's metric (`krt_metric` in BIRD).
    pub metric: Option<u32>,
    /// A community value, as the route's realm (`krt_realm`).
    pub realm: Option<u16>,
}

/// The announcer's state.
pub struct Announcer {
    cfg: BgpConfig,
    /// What is in the table now (as far as our commands succeeded).
    installed: BTreeMap<Ipv4Addr, Route>,
    /// `ctl node drain`: nothing announced, existing flows kept.
    pub drained: bool,
    /// A clean stop is under way: nothing announced.
    pub stopping: bool,
    pub announces: u64,
    pub withdraws: u64,
    pub drains: u64,
    pub errors: u64,
    last_error: Option<String>,
    /// The forwarded-packets total last seen, and when it last moved (a drained node is
    /// done once its conns stop sending: the routers send them elsewhere).
    forwarded: (u64, std::time::Instant),
}

impl Announcer {
    pub fn new(cfg: &BgpConfig) -> Announcer {
        Announcer {
            cfg: cfg.clone(),
            installed: BTreeMap::new(),
            drained: false,
            stopping: false,
            announces: 0,
            withdraws: 0,
            drains: 0,
            errors: 0,
            last_error: None,
            forwarded: (0, std::time::Instant::now()),
        }
    }

    pub fn grace(&self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::from(self.cfg.withdraw_grace_ms))
    }

    /// The routes `snap` asks for (empty while drained or stopping).
    pub fn wanted(
        &self,
        snap: &Snapshot,
        kifs: &[Option<KernelIface>],
    ) -> BTreeMap<Ipv4Addr, Route> {
        let mut out = BTreeMap::new();
        if self.drained || self.stopping {
            return out;
        }
        let mut ok: BTreeMap<Ipv4Addr, (bool, usize)> = BTreeMap::new();
        for s in snap.services.iter().filter(|s| !s.removed) {
            let up = s
                .backends
                .iter()
                .map(|id| &snap.backends[id.0 as usize])
                .filter(|b| !b.sorry && !b.remote && !b.removed && b.weight > 0)
                .count();
            let e = ok.entry(s.vip).or_insert((true, usize::from(s.iface.0)));
            e.0 &= s.owned && up >= self.cfg.min_backends_up as usize;
        }
        for (vip, (good, iface)) in ok {
            let Some(Some(k)) = kifs.get(iface) else {
                continue;
            };
            if !good {
                continue;
            }
            let attrs = self.cfg.vips.iter().find(|v| v.vip == vip);
            out.insert(
                vip,
                Route {
                    dev: k.name.clone(),
                    metric: attrs.and_then(|a| a.med),
                    realm: attrs.and_then(|a| a.community),
                },
            );
        }
        out
    }

    /// Brings the table to `wanted`; returns whether anything changed.
    pub fn sync(&mut self, wanted: &BTreeMap<Ipv4Addr, Route>) -> bool {
        let table = self.cfg.table.to_string();
        let mut changed = false;
        let gone: Vec<Ipv4Addr> = self
            .installed
            .keys()
            .filter(|v| !wanted.contains_key(v))
            .copied()
            .collect();
        for vip in gone {
            let r = ip(&["route", "del", &format!("{vip}/32"), "table", &table]);
            // Gone already is as good as withdrawn.
            if let Err(e) = r.as_ref()
                && !e.contains("No such process")
            {
                self.error(format!("withdrawing {vip}: {e}"));
                continue;
            }
            self.installed.remove(&vip);
            self.withdraws += 1;
            changed = true;
            tracing::info!(vip = %vip, "bgp: withdrawn");
        }
        for (vip, route) in wanted {
            if self.installed.get(vip) == Some(route) {
                continue;
            }
            let dst = format!("{vip}/32");
            let mut args = vec![
                "route", "replace", &dst, "dev", &route.dev, "table", &table, "proto", "static",
            ];
            let metric = route.metric.map(|m| m.to_string());
            if let Some(m) = &metric {
                args.extend(["metric", m.as_str()]);
            }
            let realm = route.realm.map(|r| r.to_string());
            if let Some(r) = &realm {
                args.extend(["realm", r.as_str()]);
            }
            if let Err(e) = ip(&args) {
                self.error(format!("announcing {vip}: {e}"));
                continue;
            }
            self.installed.insert(*vip, route.clone());
            self.announces += 1;
            changed = true;
            tracing::info!(vip = %vip, "bgp: announced");
        }
        changed
    }

    fn error(&mut self, e: String) {
        self.errors += 1;
        if self.last_error.as_ref() != Some(&e) {
            tracing::error!("{e}");
        }
        self.last_error = Some(e);
    }

    /// Withdraws everything (at exit, whatever state).
    pub fn withdraw_all(&mut self) {
        self.stopping = true;
        self.sync(&BTreeMap::new());
    }

    pub fn announced(&self) -> Vec<Ipv4Addr> {
        self.installed.keys().copied().collect()
    }

    /// `switchyard_bgp_*`: the VIPs asked of BIRD, drained, announces/withdraws/drains.
    pub fn metrics(&self, reg: &mut prometheus_client::registry::Registry) {
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family;
        use prometheus_client::metrics::gauge::Gauge;
        let announced = Family::<Vec<(&'static str, String)>, Gauge>::default();
        for v in self.installed.keys() {
            announced
                .get_or_create(&vec![("vip", v.to_string())])
                .set(1);
        }
        reg.register(
            "bgp_announced",
            "VIPs whose route this node puts in the table BIRD announces",
            announced,
        );
        let drained = Gauge::<i64>::default();
        drained.set(i64::from(self.drained));
        reg.register(
            "bgp_drained",
            "The node is drained (ctl node drain)",
            drained,
        );
        for (name, help, v) in [
            (
                "bgp_announces",
                "VIP routes put in the table",
                self.announces,
            ),
            (
                "bgp_withdraws",
                "VIP routes taken out of the table",
                self.withdraws,
            ),
            ("bgp_drains", "Node drains", self.drains),
            ("bgp_errors", "Failed route changes", self.errors),
        ] {
            let c = Counter::<u64>::default();
            c.inc_by(v);
            reg.register(name, help, c);
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "table": self.cfg.table,
            "announced": self.installed.keys().map(|v| v.to_string()).collect::<Vec<_>>(),
            "drained": self.drained,
            "stopping": self.stopping,
            "announces": self.announces,
            "withdraws": self.withdraws,
            "drains": self.drains,
            "errors": self.errors,
            "last_error": self.last_error,
        })
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let o = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).trim().to_string())
    }
}

impl super::Mgmt {
    /// Brings the announced set to what the running snapshot asks for.
    pub(super) fn bgp_tick(&mut self) {
        if self.bgp.is_none() {
            return;
        }
        let (sum, _) = super::totals(&self.links);
        let fwd = sum.get(crate::stats::Ctr::Forwarded);
        if let Some(a) = self.bgp.as_mut() {
            if fwd != a.forwarded.0 {
                a.forwarded = (fwd, std::time::Instant::now());
            }
            let w = a.wanted(&self.snap, &self.kifs);
            a.sync(&w);
        }
    }

    /// A clean stop begins: withdraw everything; returns when the loop may end.
    pub(super) fn bgp_stop(&mut self, now: std::time::Instant) -> std::time::Instant {
        match self.bgp.as_mut() {
            Some(a) => {
                a.withdraw_all();
                tracing::info!(
                    grace_ms = a.grace().as_millis() as u64,
                    "stopping: VIPs withdrawn"
                );
                now + a.grace()
            }
            None => now,
        }
    }

    fn active_conns(&self) -> u64 {
        let (sum, _) = super::totals(&self.links);
        sum.get(crate::stats::Ctr::FlowsActive)
    }

    /// `GET /node`: announced VIPs, drained, live conns.
    pub(super) fn node_status(&self) -> Result<Value, super::CmdError> {
        Ok(match &self.bgp {
            Some(a) => {
                let mut v = a.json();
                v["active_conns"] = json!(self.active_conns());
                v["idle_s"] = json!(a.forwarded.1.elapsed().as_secs_f64());
                v
            }
            None => json!({ "bgp": false, "active_conns": self.active_conns() }),
        })
    }

    /// `ctl node drain` / `enable`: withdraw every VIP (existing flows keep flowing) or
    /// announce again.
    pub(super) fn node_drain(&mut self, drain: bool) -> Result<Value, super::CmdError> {
        let Some(a) = self.bgp.as_mut() else {
            return Err(super::CmdError::NoBgp);
        };
        if drain && !a.drained {
            a.drains += 1;
            tracing::info!("node drained: every VIP withdrawn");
        }
        a.drained = drain;
        self.bgp_tick();
        self.node_status()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::config::{BgpVipConfig, Mode};
    use crate::lb::BackendRuntime;
    use crate::testkit::{VIP, config, snapshot_with};

    fn node(med: Option<u32>) -> (crate::config::Config, Vec<Option<KernelIface>>) {
        let mut c = config(Mode::Dsr);
        c.interfaces[0].exception_path = true;
        c.bgp = Some(BgpConfig {
            table: 100,
            min_backends_up: 1,
            withdraw_grace_ms: 1000,
            vips: vec![BgpVipConfig {
                vip: VIP,
                med,
                community: Some(7),
            }],
        });
        let kifs = super::super::kernel::plan(&c);
        (c, kifs)
    }

    #[test]
    fn a_vip_is_announced_while_its_services_have_enough_backends() {
        let (c, kifs) = node(Some(50));
        let a = Announcer::new(c.bgp.as_ref().unwrap());
        let all_up = snapshot_with(&c, &|_| BackendRuntime::default());
        let w = a.wanted(&all_up, &kifs);
        assert_eq!(w.keys().copied().collect::<Vec<_>>(), vec![VIP]);
        assert_eq!(
            w[&VIP],
            Route {
                dev: "sy-lan".into(),
                metric: Some(50),
                realm: Some(7)
            }
        );
        // The test configuration's VIP has `web` on 10.20.1.11 and .12 and `dns` on .11 alone.
        let down = |addr: [u8; 4]| {
            snapshot_with(&c, &move |k| BackendRuntime {
                healthy: k.1 != Ipv4Addr::from(addr),
                ..BackendRuntime::default()
            })
        };
        // .12 down: every service keeps a backend up, announced.
        assert_eq!(a.wanted(&down([10, 20, 1, 12]), &kifs).len(), 1);
        // .11 down: `dns` has none, withdrawn.
        assert!(a.wanted(&down([10, 20, 1, 11]), &kifs).is_empty());
    }

    #[test]
    fn nothing_is_announced_while_drained_or_stopping() {
        let (c, kifs) = node(None);
        let snap = snapshot_with(&c, &|_| BackendRuntime::default());
        let mut a = Announcer::new(c.bgp.as_ref().unwrap());
        assert_eq!(a.wanted(&snap, &kifs).len(), 1);
        a.drained = true;
        assert!(a.wanted(&snap, &kifs).is_empty());
        a.drained = false;
        a.stopping = true;
        assert!(a.wanted(&snap, &kifs).is_empty());
    }

    #[test]
    fn check_refuses_what_would_not_work() {
        let (mut c, _) = node(None);
        c.bgp.as_mut().unwrap().table = 254;
        assert!(c.validate().unwrap_err().to_string().contains("bgp.table"));
        let (mut c, _) = node(None);
        c.bgp.as_mut().unwrap().vips[0].vip = Ipv4Addr::new(10, 9, 9, 9);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("bgp.vips[0].vip")
        );
        let (mut c, _) = node(None);
        c.interfaces[0].exception_path = false;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("exception_path")
        );
    }
}
