//! Health checks in the lab: the management core probes each backend through the exception
//! path's kernel interface. Needs root.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::bin;
use common::lab::*;
use serde_json::Value;

fn backends() -> Vec<Value> {
    let o = Command::new(bin())
        .args(["ctl", "--api", "127.0.0.1:9100", "--json", "backends"])
        .output()
        .unwrap();
    serde_json::from_slice::<Value>(&o.stdout)
        .map(|v| v.as_array().cloned().unwrap_or_default())
        .unwrap_or_default()
}

fn web_state(addr: &str) -> Option<Value> {
    backends()
        .into_iter()
        .find(|b| b["service"] == "web" && b["address"] == addr)
}

fn wait_state(addr: &str, healthy: bool, within: Duration) -> Duration {
    let what = if healthy { "up" } else { "down" };
    wait_for(addr, what, within, |b| b["healthy"] == healthy)
}

/// Polls backend `addr` of "web" until `cond` holds (`what` says what for the failure
/// message); returns how long that took.
fn wait_for(addr: &str, what: &str, within: Duration, cond: impl Fn(&Value) -> bool) -> Duration {
    let t = Instant::now();
    loop {
        if web_state(addr).is_some_and(|b| cond(&b)) {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < within,
            "{addr} not {what} within {within:?}: {:?}",
            web_state(addr)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `cfg` with `[services.health]` (the given keys) added to the "web" service.
fn with_health(cfg: &str, health: &str) -> String {
    let web = cfg.find("name = \"web\"").expect("web service");
    let at = web
        + cfg[web..]
            .find("\n  [[services.backends]]")
            .expect("backends");
    format!(
        "{}\n  [services.health]\n{health}{}",
        &cfg[..at],
        &cfg[at..]
    )
}

/// Stopping one backend's server takes it out within fall x interval + timeout; 100 curls
/// then all succeed; restarting it brings it back after `rise` good checks.
#[test]
fn a_stopped_backend_is_taken_out_and_comes_back() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(&format!("k{}", std::process::id() % 10000), "proxy");
    let health = "  type = \"http\"\n  path = \"/\"\n  expect_status = 200\n  interval_ms = 500\n  timeout_ms = 300\n  rise = 2\n  fall = 3";
    let mut lb = Balancer::start(&with_health(&lab.config("lab-proxy.toml"), health));
    lab.wait_for_vip();
    wait_state("10.20.0.11", true, Duration::from_secs(5));
    // Stop b1's HTTP server.
    let pid = std::fs::read_to_string(lab.logdir.join("b1.pid")).unwrap();
    assert!(
        Command::new("kill")
            .arg(pid.trim())
            .status()
            .unwrap()
            .success()
    );
    let took = wait_state("10.20.0.11", false, Duration::from_secs(10));
    // fall x interval + timeout = 1.8 s; allow one extra interval for the phase of the checks.
    assert!(
        took <= Duration::from_millis(2_400),
        "took {took:?} to mark it down"
    );
    let mut failed = 0;
    for _ in 0..100 {
        match lab.curl(None) {
            Some(b) => assert_eq!(b, "backend b2"),
            None => failed += 1,
        }
    }
    assert_eq!(failed, 0, "requests failed after the backend was taken out");
    // Restart it: back after `rise` (2) good checks.
    let ns = lab.ns("b1");
    let script = repo("tests/lab/http_backend.py");
    let log = lab.logdir.join("b1.log");
    // `setsid -f` forks the server off and returns at once; lab.sh down kills it later.
    let started = Command::new("setsid")
        .args(["-f", "ip", "netns", "exec", &ns, "/usr/bin/python3"])
        .arg(&script)
        .args(["b1", "--bind", "0.0.0.0", "--port", "80", "--log"])
        .arg(&log)
        .arg("--pidfile")
        .arg(lab.logdir.join("b1.pid"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(started.success());
    let back = wait_state("10.20.0.11", true, Duration::from_secs(10));
    eprintln!("down after {took:?}, back after {back:?}");
    assert!(
        back >= Duration::from_millis(400),
        "came back before 2 checks: {back:?}"
    );
    let st = web_state("10.20.0.11").unwrap();
    assert_eq!(st["health"]["transitions"], 2, "{st}");
    // least_connections: the returning backend, with no conns, gets the new ones.
    let served: Vec<String> = (0..20).map(|_| lab.curl(None).unwrap()).collect();
    assert!(served.iter().any(|b| b == "backend b1"), "{served:?}");
    lb.finish();
}

/// DSR checks run on the VIP: a server that is up but lacks the VIP on its loopback fails.
#[test]
fn dsr_backend_without_the_vip_on_lo_is_marked_down() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(&format!("v{}", std::process::id() % 10000), "dsr");
    let health =
        "  type = \"http\"\n  interval_ms = 300\n  timeout_ms = 200\n  rise = 2\n  fall = 2";
    let mut lb = Balancer::start(&with_health(&lab.config("lab-dsr.toml"), health));
    lab.wait_for_vip();
    wait_state("10.20.0.11", true, Duration::from_secs(5));
    // Checked, and up, before the VIP goes: a backend starts up before its first check (at
    // 300 ms), so "up" alone can come before any check has run.
    wait_for("10.20.0.11", "checked", Duration::from_secs(5), |b| {
        b["health"]["checks"].as_u64().unwrap() > 0
    });
    assert_eq!(web_state("10.20.0.11").unwrap()["healthy"], true);
    let o = lab.exec("b1", &["ip", "addr", "del", "10.20.0.100/32", "dev", "lo"]);
    assert!(o.status.success());
    wait_state("10.20.0.11", false, Duration::from_secs(5));
    // The host itself still answers on its own address: only the VIP check failed.
    let direct = lab.exec("router", &["curl", "-s", "-m", "2", "http://10.20.0.11/"]);
    assert!(String::from_utf8_lossy(&direct.stdout).contains("backend b1"));
    assert_eq!(web_state("10.20.0.12").unwrap()["healthy"], true);
    for _ in 0..20 {
        assert_eq!(lab.curl(None).as_deref(), Some("backend b2"));
    }
    lb.finish();
}

/// With 30 % packet loss on one backend's link (both directions; nftables, as this kernel has
/// no netem), the default rise/fall/interval/timeout keep it from flapping more than a few
/// times a minute.
#[test]
fn lossy_link_does_not_make_a_backend_flap() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(&format!("n{}", std::process::id() % 10000), "proxy");
    let mut lb = Balancer::start(&with_health(
        &lab.config("lab-proxy.toml"),
        "  type = \"http\"",
    ));
    lab.wait_for_vip();
    let dev = format!("{}-b1", lab.prefix);
    let rules = format!(
        "table inet loss {{\n\
           chain in {{ type filter hook input priority 0; iifname \"{dev}\" numgen random mod 100 < 30 drop; }}\n\
           chain out {{ type filter hook output priority 0; oifname \"{dev}\" numgen random mod 100 < 30 drop; }}\n\
         }}\n"
    );
    let f = lab.logdir.join("loss.nft");
    std::fs::write(&f, rules).unwrap();
    let o = lab.exec("b1", &["nft", "-f", f.to_str().unwrap()]);
    assert!(
        o.status.success(),
        "nft: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let before = web_state("10.20.0.11").unwrap()["health"]["transitions"]
        .as_u64()
        .unwrap();
    std::thread::sleep(Duration::from_secs(60));
    let st = web_state("10.20.0.11").unwrap();
    let transitions = st["health"]["transitions"].as_u64().unwrap() - before;
    let checks = st["health"]["checks"].as_u64().unwrap();
    eprintln!("30% loss for 60 s: {checks} checks, {transitions} transitions");
    assert!(checks >= 25, "{st}");
    assert_ne!(
        st["health"]["last_error"], "",
        "the loss made some checks fail: {st}"
    );
    assert!(
        transitions <= 6,
        "flapped {transitions} times in a minute: {st}"
    );
    lb.finish();
}
