//! Reload: the configuration file read again, what can change live applied in one new
//! snapshot, startup-only keys reported (and kept as they run), an invalid file refused with
//! the running config kept.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::{CmdError, Mgmt, erased};
use crate::channel::Control;
use crate::config::Config;

impl Mgmt {
    /// Re-reads the configuration file; applies what can change live, reports what needs a
    /// restart, and keeps the running config if the new one is invalid.
    pub(super) fn reload(&mut self, path: Option<&PathBuf>) -> Result<Value, CmdError> {
        let Some(path) = path else {
            return Err(CmdError::NoConfigFile);
        };
        let new = match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                self.reloads_failed += 1;
                tracing::warn!("reload rejected, running config kept: {e}");
                return Err(CmdError::InvalidConfig(e));
            }
        };
        let mut restart = Vec::new();
        let ser = |v: &dyn erased::Ser| v.json();
        if ser(&new.dpdk) != ser(&self.cfg.dpdk) {
            restart.push("dpdk");
        }
        if ser(&new.cores) != ser(&self.cfg.cores) {
            restart.push("cores");
        }
        if ser(&new.interfaces) != ser(&self.cfg.interfaces) {
            restart.push("interfaces");
        }
        if ser(&new.nat) != ser(&self.cfg.nat) {
            restart.push("nat");
        }
        if ser(&new.flows.capacity_per_core) != ser(&self.cfg.flows.capacity_per_core)
            || ser(&new.flows.persistence_capacity_per_core)
                != ser(&self.cfg.flows.persistence_capacity_per_core)
        {
            restart.push("flows.capacity_per_core");
        }
        if ser(&new.api) != ser(&self.cfg.api) {
            restart.push("api");
        }
        if ser(&new.ha) != ser(&self.cfg.ha) {
            restart.push("ha");
        }
        if ser(&new.gslb) != ser(&self.cfg.gslb) {
            restart.push("gslb");
        }
        let redirects = |c: &Config| -> Vec<_> {
            c.services
                .iter()
                .map(|s| (s.vip, s.port, s.redirect.clone()))
                .filter(|r| r.2.is_some())
                .collect()
        };
        if redirects(&new) != redirects(&self.cfg) {
            restart.push("services.redirect");
        }
        let mut applied = Vec::new();
        for (name, a, b) in [
            ("services", ser(&new.services), ser(&self.cfg.services)),
            ("routes", ser(&new.routes), ser(&self.cfg.routes)),
            (
                "neighbours",
                ser(&new.neighbours),
                ser(&self.cfg.neighbours),
            ),
            (
                "flows.timeouts",
                ser(&new.flows.timeouts),
                ser(&self.cfg.flows.timeouts),
            ),
            ("arp", ser(&new.arp), ser(&self.cfg.arp)),
            (
                "protection",
                ser(&new.protection),
                ser(&self.cfg.protection),
            ),
        ] {
            if a != b {
                applied.push(name);
            }
        }
        // Startup-only sections keep their running values; everything else is taken.
        let mut next = new;
        next.dpdk = self.cfg.dpdk.clone();
        next.cores = self.cfg.cores.clone();
        next.interfaces = self.cfg.interfaces.clone();
        next.nat = self.cfg.nat.clone();
        next.api = self.cfg.api.clone();
        next.ha = self.cfg.ha.clone();
        next.gslb = self.cfg.gslb.clone();
        // Redirects are served from start-up on (their VIPs on the kernel side): they keep
        // what they were.
        for svc in &mut next.services {
            svc.redirect = self
                .cfg
                .services
                .iter()
                .find(|o| o.name == svc.name && o.vip == svc.vip && o.port == svc.port)
                .and_then(|o| o.redirect.clone());
        }
        // A service's mode is the shape of its conns (a reverse tuple, a SNAT port): the
        // established ones could not take another mode's rewrite, so a service keeps the mode
        // it runs in until a restart.
        for svc in &mut next.services {
            if let Some(o) = self.cfg.services.iter().find(|o| o.name == svc.name)
                && o.mode != svc.mode
            {
                svc.mode = o.mode;
                if !restart.contains(&"services.mode") {
                    restart.push("services.mode");
                }
            }
        }
        next.flows.capacity_per_core = self.cfg.flows.capacity_per_core;
        next.flows.persistence_capacity_per_core = self.cfg.flows.persistence_capacity_per_core;
        if let Err(e) = next.validate() {
            self.reloads_failed += 1;
            return Err(CmdError::StartupKeys(e));
        }
        let built = match self.build(&next) {
            Ok(b) => b,
            Err(e) => {
                self.reloads_failed += 1;
                return Err(CmdError::Unbuildable(e));
            }
        };
        let old_vips = self.snap.vips();
        // A pair: the floating set follows the services (what is owned of it is re-read
        // from the kernel interface on the next tick, and announced then).
        if let Some(ha) = self.ha.as_mut() {
            ha.reconfigure(&next);
        }
        self.cfg = next;
        self.install(built);
        for (vip, iface) in self.snap.vips() {
            if !old_vips.iter().any(|(v, _)| *v == vip) {
                self.pending.push((
                    0,
                    Control::SendArp {
                        iface,
                        sender: vip,
                        target: vip,
                    },
                ));
            }
        }
        self.reloads += 1;
        if !restart.is_empty() {
            tracing::warn!(keys = ?restart, "reload: these keys need a restart and were not applied");
        }
        tracing::info!(changed = ?applied, "configuration reloaded");
        Ok(json!({
            "reloaded": true,
            "applied": applied,
            "restart_required": restart,
        }))
    }
}
