//! Switchyard in a container, as README "Running in a container" runs it: the image built by
//! `scripts/container.sh build` (its Debian base made once with debootstrap and cached), run by
//! podman with only NET_ADMIN and /dev/net/tun, in a network namespace where DPDK's `net_tap`
//! interface is bridged onto the proxy lab's LAN. Real curl and dig through the VIP, a weight
//! change in the mounted conf/ applied by `podman kill -s HUP` (20 : 20 -> 40 : 10 in the
//! backends' own logs), the image's HEALTHCHECK, `podman stop` within the grace with exit 0,
//! and the counters from the API and from the final JSON log line. Needs root and podman
//! (scripts/install-deps.sh); one lab at a time.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::lab::*;

/// The test's own tag, so that it never replaces an image someone built for use.
const IMAGE: &str = "localhost/switchyard:test";
/// What scripts/container.sh caches the base as (its default).
const BASE: &str = "localhost/switchyard-base:bookworm";
/// scripts/container.sh's podman options (no systemd here; runc, not crun).
const PODMAN_OPTS: [&str; 2] = ["--cgroup-manager=cgroupfs", "--runtime=runc"];

fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(PODMAN_OPTS)
        .args(args)
        .output()
        .expect("podman (scripts/install-deps.sh installs it)")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn script(args: &[&str]) -> Command {
    let mut c = Command::new(repo("scripts/container.sh"));
    c.args(args)
        .env("CONTAINER_ENGINE", "podman")
        .env("SWITCHYARD_IMAGE", IMAGE);
    c
}

/// A container of the test's, removed (killed first if need be) on drop.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-t", "0", &self.0]);
    }
}

/// One sample `name{labels} value` of a Prometheus exposition.
fn sample(text: &str, name_and_labels: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no sample {name_and_labels}"))
        .round() as u64
}

/// GET http://127.0.0.1:9100PATH inside the container's namespace (the image has no curl).
fn api(ns: &Netns, path: &str) -> String {
    let url = format!("http://127.0.0.1:9100{path}");
    let o = exec_in(&ns.0, &["curl", "-s", "-m", "2", &url]);
    assert!(o.status.success(), "GET {path}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// `n` curls through the VIP; how many each backend's HTTP log gained.
fn curls(lab: &Lab, n: usize) -> (usize, usize) {
    lab.clear_logs(&["b1.log", "b2.log"]);
    for i in 0..n {
        assert!(lab.curl(None).is_some(), "curl {i} of {n} through the VIP");
    }
    let lines = |f: &str| lab.log(f).lines().count();
    (lines("b1.log"), lines("b2.log"))
}

#[test]
fn containerised_switchyard_serves_reloads_on_hup_and_stops_cleanly() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    assert_root();

    // The image: the base from cache (or debootstrap, the first time), the binary this test
    // build made (the same Debian and DPDK as a release build; `build` alone builds that).
    let cached = podman(&["image", "exists", BASE]).status.success();
    let t = Instant::now();
    let o = script(&["build"])
        .env("SWITCHYARD_BIN", common::bin())
        .output()
        .expect("scripts/container.sh");
    assert!(o.status.success(), "container.sh build: {}", text(&o));
    let built = t.elapsed();
    let size = podman(&["image", "inspect", "--format", "{{.Size}}", IMAGE]);
    eprintln!(
        "image built in {built:.1?} (base {}), {} MB",
        if cached {
            "cached"
        } else {
            "made with debootstrap"
        },
        String::from_utf8_lossy(&size.stdout)
            .trim()
            .parse::<u64>()
            .unwrap_or(0)
            >> 20
    );

    let lab = Lab::up(&format!("ct{}", std::process::id() % 1000), "proxy");
    let ns = Netns::new(&lab.ns("yard"));
    let bridge = Bridge::in_ns(&ns, &format!("{}yb", lab.prefix), &lab.port);
    let conf = tempfile::tempdir().unwrap();
    let conf_file = conf.path().join("lab-container.toml");
    let cfg = lab.config("lab-container.toml");
    std::fs::write(&conf_file, &cfg).unwrap();

    // Least privilege: scripts/container.sh run adds --cap-drop all --cap-add NET_ADMIN
    // --device /dev/net/tun and mounts --conf read-only at /etc/switchyard.
    let name = format!("{}-sy", lab.prefix);
    let _ = podman(&["rm", "-f", "-t", "0", &name]); // left by a killed run
    let started = Instant::now();
    let o = script(&["run", "--network", &format!("ns:{}", ns.path())])
        .args(["--conf", conf.path().to_str().unwrap()])
        .args(["-d", "--name", &name])
        .args(["-e", "SWITCHYARD_CONFIG=/etc/switchyard/lab-container.toml"])
        .output()
        .expect("scripts/container.sh run");
    let ct = Container(name.clone());
    assert!(o.status.success(), "container.sh run: {}", text(&o));
    let caps = podman(&["inspect", "--format", "{{.EffectiveCaps}}", &ct.0]);
    assert_eq!(
        String::from_utf8_lossy(&caps.stdout).trim(),
        "[CAP_NET_ADMIN]",
        "{}",
        text(&caps)
    );
    bridge.attach("sy-tap0");
    lab.wait_for_vip();
    eprintln!("serving {:.1?} after podman run", started.elapsed());

    // The image's HEALTHCHECK (`switchyard ctl health` inside the container).
    let h = podman(&["healthcheck", "run", &ct.0]);
    assert!(h.status.success(), "healthcheck: {}", text(&h));

    // Weights 20 : 20 (weighted round robin on one worker: every other conn).
    let m0 = api(&ns, "/metrics");
    let flows = |m: &str, svc: &str| {
        sample(
            m,
            &format!("switchyard_service_flows_total{{service=\"{svc}\"}}"),
        )
    };
    let (b1, b2) = curls(&lab, 40);
    assert!(
        b1.abs_diff(20) <= 2 && b2.abs_diff(20) <= 2,
        "20:20 split {b1}/{b2}"
    );
    let mut answered = [0; 2];
    for _ in 0..10 {
        match lab.dig(false).as_deref() {
            Some("b1") => answered[0] += 1,
            Some("b2") => answered[1] += 1,
            other => panic!("dig through the VIP: {other:?}"),
        }
    }
    assert_eq!(answered, [5, 5], "DNS round robin");

    // 40 : 10 in the mounted file, then SIGHUP.
    let edited =
        cfg.replacen("weight = 20", "weight = 40", 1)
            .replacen("weight = 20", "weight = 10", 1);
    assert_ne!(edited, cfg);
    std::fs::write(&conf_file, edited).unwrap();
    let k = podman(&["kill", "-s", "HUP", &ct.0]);
    assert!(k.status.success(), "podman kill -s HUP: {}", text(&k));
    let t = Instant::now();
    loop {
        let m = api(&ns, "/metrics");
        if sample(&m, "switchyard_reloads_total") == 1 {
            let w = |b: &str| {
                sample(
                    &m,
                    &format!("switchyard_backend_weight{{service=\"web\",backend=\"{b}:80\"}}"),
                )
            };
            assert_eq!((w("10.20.0.11"), w("10.20.0.12")), (40, 10));
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "SIGHUP not applied");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (b1, b2) = curls(&lab, 50);
    assert!(
        b1.abs_diff(40) <= 2 && b2.abs_diff(10) <= 2,
        "40:10 split {b1}/{b2}"
    );

    // The API's counters match the traffic: 90 HTTP conns, 10 DNS flows.
    std::thread::sleep(Duration::from_millis(300)); // one publish interval
    let m = api(&ns, "/metrics");
    assert_eq!(flows(&m, "web") - flows(&m0, "web"), 90);
    assert_eq!(flows(&m, "dns") - flows(&m0, "dns"), 10);
    assert_eq!(sample(&m, "switchyard_reload_failures_total"), 0);

    // podman stop: SIGTERM, a clean exit long before the 10 s grace.
    let t = Instant::now();
    let s = podman(&["stop", &ct.0]);
    let took = t.elapsed();
    assert!(s.status.success(), "podman stop: {}", text(&s));
    eprintln!("podman stop took {took:.1?}");
    assert!(took < Duration::from_secs(3), "podman stop took {took:?}");
    let code = podman(&["inspect", "--format", "{{.State.ExitCode}}", &ct.0]);
    assert_eq!(String::from_utf8_lossy(&code.stdout).trim(), "0");

    // The log: JSON lines on stdout, the last counters among them.
    let logs = podman(&["logs", &ct.0]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&logs.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let message = |m: &str| {
        lines
            .iter()
            .find(|l| l["fields"]["message"] == m)
            .unwrap_or_else(|| panic!("no {m:?} in the JSON log: {}", text(&logs)))
    };
    assert!(
        message("SIGHUP reload")["fields"]["result"]
            .as_str()
            .is_some_and(|r| r.contains("\"reloaded\":true"))
    );
    let counters: serde_json::Value = serde_json::from_str(
        message("final counters")["fields"]["counters"]
            .as_str()
            .unwrap_or("{}"),
    )
    .expect("final counters as JSON");
    let n = |k: &str| counters[k].as_u64().unwrap_or(0);
    // 90 conns of several frames each way, 10 queries and their answers; every frame handled
    // has one verdict (src/stats.rs), nothing dropped for want of a conn or a route.
    assert!(n("flows_created") >= 90 + 10, "{counters}");
    assert!(n("forwarded") >= 90 * 8 + 10 * 2, "{counters}");
    let drops: u64 = counters
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("drop_") && *k != "drop_tx_full")
        .map(|(_, v)| v.as_u64().unwrap_or(0))
        .sum();
    let verdicts = [
        "forwarded",
        "replied",
        "consumed",
        "steered_out",
        "to_kernel",
    ]
    .iter()
    .map(|k| n(k))
    .sum::<u64>()
        + drops;
    assert_eq!(n("rx_packets") + n("steered_in"), verdicts, "{counters}");
    message("switchyard stopped");
    // The container's taps went with it; the namespace (and the lab) stay the test's.
    let gone = Command::new("ip")
        .args(["-n", &ns.0, "link", "show", "sy-tap0"])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "sy-tap0 left after podman stop");
}
