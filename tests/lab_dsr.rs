//! The DSR lab, end to end: namespaces with a real client, router, switch and two real HTTP
//! backends (tests/lab/lab.sh), Switchyard on the LAN through DPDK's `net_af_packet`, and
//! `curl` from the client to the VIP. Needs root (namespaces, veth); CI runs as root.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const VIP: &str = "10.20.0.100";

/// The lab, torn down on drop (also when an assertion fails).
struct Lab {
    prefix: String,
    port: String,
    logdir: PathBuf,
}

fn lab_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/lab.sh")
}

impl Lab {
    fn up(prefix: &str) -> Lab {
        let lab = Lab {
            prefix: prefix.into(),
            port: format!("{prefix}p0"),
            logdir: std::env::temp_dir().join(format!("{prefix}-lab")),
        };
        let st = lab.cmd("up").status().expect("lab.sh up");
        assert!(st.success(), "lab.sh up failed");
        lab
    }

    fn cmd(&self, sub: &str) -> Command {
        let mut c = Command::new("bash");
        c.arg(lab_script())
            .arg(sub)
            .env("LAB_PREFIX", &self.prefix)
            .env("LAB_PORT", &self.port)
            .env("LAB_LOGDIR", &self.logdir);
        c
    }

    /// Runs a command in one of the lab's namespaces.
    fn exec(&self, ns: &str, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &format!("{}-{ns}", self.prefix)])
            .args(args)
            .output()
            .expect("ip netns exec")
    }

    fn curl_vip(&self) -> Option<String> {
        let o = self.exec(
            "client",
            &["curl", "-s", "-m", "3", &format!("http://{VIP}/")],
        );
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.cmd("down").stdout(Stdio::null()).status();
    }
}

/// A running balancer, interrupted (and reaped) on drop.
struct Balancer {
    child: Option<Child>,
    _dir: tempfile::TempDir,
    stats: PathBuf,
}

impl Balancer {
    fn start(port: &str, prefix: &str) -> Balancer {
        let dir = tempfile::tempdir().unwrap();
        let cfg = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/lab-dsr.toml"),
        )
        .unwrap()
        .replace("iface=yard0", &format!("iface={port}"))
        .replace(
            "switchyard-lab",
            &format!("{prefix}-{}", std::process::id()),
        );
        let cfg_path = dir.path().join("lab.toml");
        std::fs::write(&cfg_path, cfg).unwrap();
        let stats = dir.path().join("stats.json");
        let child = Command::new(bin())
            .args(["run", "--config", cfg_path.to_str().unwrap()])
            .args(["--stats-json", stats.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn switchyard");
        Balancer {
            child: Some(child),
            _dir: dir,
            stats,
        }
    }

    /// SIGINT, then wait; returns (exit success, how long it took).
    fn interrupt(&mut self) -> (bool, Duration) {
        let mut child = self.child.take().expect("running");
        let t = Instant::now();
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return (st.success(), t.elapsed());
            }
            if t.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                return (false, t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// tcpdump on the switch side of the balancer's veth (the root-side end is DPDK's, and frames
/// DPDK transmits through AF_PACKET bypass taps on that end), stopped on drop.
struct Capture {
    child: Child,
    file: PathBuf,
}

impl Capture {
    fn start(lab: &Lab, file: PathBuf) -> Capture {
        let child = Command::new("ip")
            .args(["netns", "exec", &format!("{}-lan", lab.prefix), "tcpdump"])
            .args(["-i", &format!("{}-lp", lab.prefix)])
            .args(["-n", "--immediate-mode", "-Z", "root", "-U", "-w"])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpdump (install it: apt-get install tcpdump)");
        std::thread::sleep(Duration::from_millis(500));
        Capture { child, file }
    }

    fn stop(mut self) -> Vec<Vec<u8>> {
        std::thread::sleep(Duration::from_millis(200));
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        pcap_frames(&self.file)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[test]
fn dsr_lab_balances_200_curls_and_replies_bypass_the_balancer() {
    assert!(
        is_root(),
        "the lab test needs root (network namespaces); run scripts/test.sh as root"
    );
    let prefix = format!("t{}", std::process::id() % 100_000);
    let lab = Lab::up(&prefix);
    let mut lb = Balancer::start(&lab.port, &prefix);
    let capdir = tempfile::tempdir().unwrap();
    let cap = Capture::start(&lab, capdir.path().join("port.pcap"));

    // The router learns the VIP's MAC from our ARP reply; wait until the service answers.
    let t = Instant::now();
    while lab.curl_vip().is_none() {
        assert!(t.elapsed() < Duration::from_secs(20), "VIP never answered");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Fresh logs: only the 200 measured requests count.
    for b in ["b1", "b2"] {
        std::fs::write(lab.logdir.join(format!("{b}.log")), "").unwrap();
    }

    let mut per_backend = std::collections::BTreeMap::<String, u32>::new();
    let mut failed = 0;
    for _ in 0..200 {
        match lab.curl_vip() {
            Some(body) => *per_backend.entry(body).or_default() += 1,
            None => failed += 1,
        }
    }
    assert_eq!(failed, 0, "failed requests; served: {per_backend:?}");
    for b in ["backend b1", "backend b2"] {
        let n = per_backend.get(b).copied().unwrap_or(0);
        assert!(
            (70..=130).contains(&n),
            "{b} served {n} of 200 (want 35-65 %): {per_backend:?}"
        );
    }

    // The backends saw the client's own address (DSR keeps the source), on the VIP.
    let mut logged = 0;
    for b in ["b1", "b2"] {
        let log = std::fs::read_to_string(lab.logdir.join(format!("{b}.log"))).unwrap();
        for line in log.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                line.contains(" 10.20.9.2 ") && line.contains(" 10.20.0.100 "),
                "{b} log line without the client/VIP: {line}"
            );
            logged += 1;
        }
    }
    assert_eq!(logged, 200);

    // Replies never cross the balancer: the port saw client->VIP frames but no VIP-sourced TCP.
    let frames = cap.stop();
    let vip = [10u8, 20, 0, 100];
    let ipv4_tcp = |f: &&Vec<u8>| f.len() > 34 && f[12..14] == [8, 0] && f[23] == 6;
    // Every connection's SYN to the VIP crosses the port twice: in from the router, and out
    // to a backend with only the MACs rewritten.
    let syns_to_vip = frames
        .iter()
        .filter(ipv4_tcp)
        .filter(|f| f[30..34] == vip && f[47] & 0x12 == 0x02)
        .count();
    let from_vip = frames
        .iter()
        .filter(ipv4_tcp)
        .filter(|f| f[26..30] == vip)
        .count();
    assert!(
        syns_to_vip >= 400,
        "capture saw only {syns_to_vip} SYNs to the VIP"
    );
    assert_eq!(
        from_vip, 0,
        "VIP-sourced replies crossed the balancer's port"
    );

    // SIGINT stops everything cleanly within a second.
    let (ok, took) = lb.interrupt();
    assert!(ok, "switchyard did not exit 0 on SIGINT");
    assert!(took <= Duration::from_secs(1), "shutdown took {took:?}");
    let t = totals(&lb.stats);
    assert!(t["forwarded"].as_u64().unwrap() >= 1000);
    assert!(
        t["generated"].as_u64().unwrap() >= 3,
        "GARP + ARP requests for both backends"
    );
}
