//! Two Switchyard processes, two VIPs, like a Dispatcher in front of caching proxies and a
//! second one in front of the content hosts (tests/lab/multitier.sh): tier 1 balances two
//! nginx caches in DSR mode, their misses go to tier 2's VIP, which balances two content
//! hosts in proxy mode. A first fetch travels both tiers; the second is a cache hit that never
//! reaches tier 2. Needs root.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::lab::{Balancer, LAB_LOCK, assert_root, repo};

struct MultiTier {
    prefix: String,
    logdir: std::path::PathBuf,
}

impl MultiTier {
    fn cmd(&self, sub: &str) -> Command {
        let mut c = Command::new("bash");
        c.arg(repo("tests/lab/multitier.sh"))
            .arg(sub)
            .env("LAB_PREFIX", &self.prefix)
            .env("LAB_LOGDIR", &self.logdir);
        c
    }
    fn curl(&self, path: &str) -> Option<(String, String)> {
        let url = format!("http://10.20.0.100{path}");
        let o = Command::new("ip")
            .args(["netns", "exec", &format!("{}-client", self.prefix)])
            .args(["curl", "-s", "-m", "5", "-D", "-", &url])
            .output()
            .unwrap();
        if !o.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        let (head, body) = text.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.1 200")
            .then(|| (head.to_string(), body.trim().to_string()))
    }
    fn log(&self, name: &str) -> Vec<String> {
        std::fs::read_to_string(self.logdir.join(name))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect()
    }
}

impl Drop for MultiTier {
    fn drop(&mut self) {
        let _ = self.cmd("down").stdout(Stdio::null()).status();
    }
}

fn header<'a>(head: &'a str, name: &str) -> &'a str {
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or("")
        .trim()
}

#[test]
fn two_tiers_cache_miss_then_hit() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    assert_root();
    let prefix = format!("m{}", std::process::id() % 10000);
    let mt = MultiTier {
        prefix: prefix.clone(),
        logdir: std::env::temp_dir().join(format!("{prefix}-lab")),
    };
    assert!(mt.cmd("up").status().unwrap().success(), "multitier.sh up");
    let conf = |name: &str, port: &str| {
        std::fs::read_to_string(repo("conf").join(name))
            .unwrap()
            .replace("iface=mtt1", &format!("iface={prefix}t1"))
            .replace("iface=mtt2", &format!("iface={prefix}t2"))
            .replace("switchyard-t", &format!("{prefix}-{}-", std::process::id()))
            .replace("{port}", port)
    };
    let mut t1 = Balancer::start_beside_another(&conf("multitier-t1.toml", "t1"));
    let mut t2 = Balancer::start_beside_another(&conf("multitier-t2.toml", "t2"));

    // Tier 1 answers (nginx's own health page, never proxied) before the real fetches.
    let t = Instant::now();
    while mt.curl("/cache-health").is_none() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "tier-1 VIP never answered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for f in ["c1.access.log", "c2.access.log", "h1.log", "h2.log"] {
        let _ = std::fs::write(mt.logdir.join(f), "");
    }

    let (h1, body1) = mt.curl("/").expect("first fetch through both tiers");
    assert_eq!(header(&h1, "X-Cache-Status"), "MISS", "{h1}");
    assert!(
        body1.starts_with("backend h"),
        "content host answered: {body1}"
    );
    let hosts_after_first = mt.log("h1.log").len() + mt.log("h2.log").len();
    assert_eq!(
        hosts_after_first, 1,
        "the miss reached exactly one content host"
    );
    // The content host saw tier 2's address (proxy mode), not the cache.
    let host_line = [mt.log("h1.log"), mt.log("h2.log")].concat().pop().unwrap();
    assert!(host_line.contains(" 10.20.0.20 "), "{host_line}");

    let (h2, body2) = mt.curl("/").expect("second fetch");
    assert_eq!(header(&h2, "X-Cache-Status"), "HIT", "{h2}");
    assert_eq!(
        header(&h2, "X-Cache-Node"),
        header(&h1, "X-Cache-Node"),
        "persistence"
    );
    assert_eq!(body2, body1);
    assert_eq!(
        mt.log("h1.log").len() + mt.log("h2.log").len(),
        1,
        "the hit did not reach tier 2"
    );
    let caches = [mt.log("c1.access.log"), mt.log("c2.access.log")].concat();
    assert_eq!(caches.len(), 2, "the cache saw both fetches: {caches:?}");
    assert!(
        caches.iter().all(|l| l.contains(" 10.20.9.2 ")),
        "caches see the client (DSR)"
    );

    let s1 = t1.finish();
    let s2 = t2.finish();
    assert!(
        s1["forwarded"].as_u64().unwrap() >= 6,
        "tier 1 carried the client: {s1}"
    );
    assert!(
        s2["forwarded"].as_u64().unwrap() >= 6,
        "tier 2 carried the miss: {s2}"
    );
}
