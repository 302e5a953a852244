//! An HA pair in front of a pair lab (`Lab::up_pair`): each node runs the real switchyard and
//! Debian's keepalived in its own namespace (`PREFIX-na`, `PREFIX-nb`), from the shipped
//! conf/pair-{a,b}.toml and conf/keepalived-{a,b}.conf rewritten for the lab's mode and names.
//! Beside them: the long-lived clients (tests/lab/hold_client.py).

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::bin;
use super::lab::{Lab, repo};

/// `advert_int` of the shipped keepalived configs.
pub const ADVERT: Duration = Duration::from_secs(1);

/// Polls `f` every 100 ms until it holds; false after `limit`.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    loop {
        if f() {
            return true;
        }
        if t.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Node `n` ("a" or "b")'s switchyard config for the lab's mode. The shipped files are the
/// proxy pair; dsr drops the SNAT address, gateway gives each node its own address on the
/// servers' subnet and floats their gateway (10.20.1.1) with the VIP.
pub fn node_config(lab: &Lab, n: &str) -> String {
    let own = if n == "a" { 2 } else { 3 };
    let mut t = std::fs::read_to_string(repo(&format!("conf/pair-{n}.toml")))
        .unwrap()
        .replace(
            &format!("iface=sy-p{n}"),
            &format!("iface={}-p{n}", lab.prefix),
        )
        .replace(
            &format!("switchyard-pair-{n}"),
            &format!("{}-{n}-{}", lab.prefix, std::process::id()),
        )
        .replace("mode = \"proxy\"", &format!("mode = \"{}\"", lab.mode))
        // The tests hold a returning node's resync back for a few seconds (the default
        // gives up on a silent peer after 3 s).
        .replace("[ha]\n", "[ha]\nbulk_timeout_ms = 10000\n");
    match lab.mode.as_str() {
        "proxy" => {}
        "dsr" => t = drop_line(&t, "snat_addresses ="),
        "gateway" => {
            t = t
                .replace(
                    "snat_addresses = [\"10.20.0.50\"]",
                    &format!("secondary_addresses = [\"10.20.1.{own}/24\"]"),
                )
                .replace("address = \"10.20.0.11\"", "address = \"10.20.1.11\"")
                .replace("address = \"10.20.0.12\"", "address = \"10.20.1.12\"")
                .replace(
                    "[ha]\n",
                    "[ha]\n# The servers' gateway moves with the VIP.\nfloating_addresses = [\"10.20.1.1\"]\n",
                );
        }
        m => panic!("no pair config for mode {m}"),
    }
    t
}

/// Node `n`'s keepalived config: the shipped one with this build's binary, the lab's
/// interface and the mode's floating addresses; `nopreempt` added on request.
pub fn keepalived_config(lab: &Lab, n: &str, nopreempt: bool) -> String {
    let mut t = std::fs::read_to_string(repo(&format!("conf/keepalived-{n}.conf")))
        .unwrap()
        .replace("/usr/local/bin/switchyard", bin());
    match lab.mode.as_str() {
        "proxy" => {}
        "dsr" => t = drop_line(&t, "10.20.0.50/32"),
        "gateway" => t = t.replace("10.20.0.50/32", "10.20.1.1/32"),
        m => panic!("no keepalived config for mode {m}"),
    }
    if nopreempt {
        t = t.replace("    advert_int 1\n", "    advert_int 1\n    nopreempt\n");
        assert!(t.contains("nopreempt"));
    }
    t
}

fn drop_line(t: &str, needle: &str) -> String {
    let out: String = t
        .lines()
        .filter(|l| !l.contains(needle))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(out.len(), t.len(), "no line with {needle}");
    out
}

/// One node of the pair: switchyard and keepalived in namespace `PREFIX-nN`, both stopped on
/// drop. Logs go to files in the node's directory (printed by `logs` when a test fails).
pub struct Node {
    pub n: &'static str,
    ns: String,
    dir: tempfile::TempDir,
    sy: Option<Child>,
    ka: Option<Child>,
    starts: u32,
}

impl Node {
    pub fn new(lab: &Lab, n: &'static str, nopreempt: bool) -> Node {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("switchyard.toml"), node_config(lab, n)).unwrap();
        std::fs::write(
            dir.path().join("keepalived.conf"),
            keepalived_config(lab, n, nopreempt),
        )
        .unwrap();
        Node {
            n,
            ns: lab.ns(&format!("n{n}")),
            dir,
            sy: None,
            ka: None,
            starts: 0,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn in_ns(&self, prog: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns, prog]);
        c
    }

    /// Starts switchyard (`ip netns exec` execs it: the child is switchyard itself) and waits
    /// until its API answers.
    pub fn start(&mut self) {
        self.starts += 1;
        let log = File::create(self.path(&format!("switchyard-{}.log", self.starts))).unwrap();
        let child = self
            .in_ns(bin())
            .args(["run", "--config"])
            .arg(self.path("switchyard.toml"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("switchyard");
        self.sy = Some(child);
        let up = wait_until(Duration::from_secs(15), || self.status().is_some());
        assert!(up, "node {}: API never answered\n{}", self.n, self.logs());
    }

    /// keepalived in the foreground (`-n`), VRRP only (`-P`), logging to the console (`-l`).
    pub fn start_keepalived(&mut self) {
        let log = File::create(self.path("keepalived.log")).unwrap();
        let child = self
            .in_ns("keepalived")
            .args(["-n", "-l", "-D", "-P", "-f"])
            .arg(self.path("keepalived.conf"))
            .arg("-p")
            .arg(self.path("keepalived.pid"))
            .arg("-r")
            .arg(self.path("vrrp.pid"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("keepalived (apt-get install keepalived)");
        self.ka = Some(child);
    }

    /// `kill -9` switchyard.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.sy.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops keepalived the way an operator does (SIGTERM: it gives up its addresses and
    /// tells the peer with a priority-0 advert).
    pub fn stop_keepalived(&mut self) {
        if let Some(mut c) = self.ka.take() {
            signal(c.id(), "-TERM");
            let t = Instant::now();
            while c.try_wait().unwrap().is_none() && t.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal (`-STOP`, `-CONT`) to switchyard.
    pub fn signal(&self, sig: &str) {
        signal(self.sy.as_ref().expect("running").id(), sig);
    }

    fn api(&self, path: &str) -> Option<Value> {
        let o = self.exec(&[
            "curl",
            "-s",
            "-m",
            "2",
            &format!("http://127.0.0.1:9100{path}"),
        ]);
        if !o.status.success() {
            return None;
        }
        serde_json::from_slice(&o.stdout).ok()
    }

    /// `GET /status`.
    pub fn status(&self) -> Option<Value> {
        self.api("/status")
    }

    /// The pair's part of `/status`.
    pub fn ha(&self) -> Value {
        self.status()
            .map(|s| s["ha"].clone())
            .unwrap_or(Value::Null)
    }

    /// "master", "backup", "partial" (or "" when the API does not answer).
    pub fn role(&self) -> String {
        self.ha()["role"].as_str().unwrap_or("").to_string()
    }

    /// `switchyard ctl health`: keepalived's track_script.
    pub fn healthy(&self) -> bool {
        self.exec(&[bin(), "ctl", "--api", "127.0.0.1:9100", "health"])
            .status
            .success()
    }

    pub fn metrics(&self) -> String {
        let o = self.exec(&["curl", "-s", "-m", "2", "http://127.0.0.1:9100/metrics"]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn exec(&self, args: &[&str]) -> Output {
        self.in_ns(args[0])
            .args(&args[1..])
            .output()
            .expect("ip netns exec")
    }

    /// The floating addresses keepalived has put on the node's exception-path interface.
    pub fn kernel_addresses(&self) -> String {
        let o = self.exec(&["ip", "-br", "-4", "addr", "show", "dev", "sy-lan"]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn keepalived_log(&self) -> String {
        std::fs::read_to_string(self.path("keepalived.log")).unwrap_or_default()
    }

    /// Every log of the node, for assertion messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for i in 1..=self.starts {
            let f = format!("switchyard-{i}.log");
            let t = std::fs::read_to_string(self.path(&f)).unwrap_or_default();
            let tail: Vec<&str> = t.lines().rev().take(40).collect();
            s += &format!("--- node {} {f} (last 40 lines)\n", self.n);
            for l in tail.iter().rev() {
                s += l;
                s.push('\n');
            }
        }
        let k = self.keepalived_log();
        let tail: Vec<&str> = k.lines().rev().take(30).collect();
        s += &format!("--- node {} keepalived.log (last 30 lines)\n", self.n);
        for l in tail.iter().rev() {
            s += l;
            s.push('\n');
        }
        s
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = &self.sy {
            signal(c.id(), "-CONT");
        }
        self.stop_keepalived();
        self.kill9();
    }
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill").args([sig, &pid.to_string()]).status();
}

/// tests/lab/hold_client.py in the client namespace.
pub struct Hold {
    child: Option<Child>,
    out: PathBuf,
    _dir: tempfile::TempDir,
    started: Instant,
}

impl Hold {
    pub fn start(lab: &Lab, conns: usize, seconds: u64) -> Hold {
        Self::start_in(&lab.ns("client"), super::lab::VIP, conns, seconds, &[])
    }

    /// The client in namespace `ns` against `vip`, with more of hold_client.py's arguments.
    pub fn start_in(ns: &str, vip: &str, conns: usize, seconds: u64, extra: &[&str]) -> Hold {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("hold.json");
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "/usr/bin/python3"])
            .arg(repo("tests/lab/hold_client.py"))
            .arg(vip)
            .args(extra)
            .args(["--conns", &conns.to_string(), "--period", "0.2"])
            .args(["--seconds", &seconds.to_string(), "--out"])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("hold_client.py");
        Hold {
            child: Some(child),
            out,
            _dir: dir,
            started: Instant::now(),
        }
    }

    /// Writes a mark into the report (the client's clock: `marks` in the report).
    pub fn mark(&self) {
        signal(self.child.as_ref().expect("running").id(), "-USR1");
    }

    /// How long ago the client started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits for the client to finish and returns its report.
    pub fn finish(mut self) -> Value {
        let mut c = self.child.take().unwrap();
        let st = c.wait().unwrap();
        assert!(st.success(), "hold_client.py failed");
        serde_json::from_slice(&std::fs::read(&self.out).expect("hold report")).unwrap()
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// (sender MAC, address) of every gratuitous ARP (sender address = target address) among
/// `frames`.
pub fn gratuitous_arps(frames: &[Vec<u8>]) -> Vec<([u8; 6], [u8; 4])> {
    frames
        .iter()
        .filter(|f| f.len() >= 42 && f[12..14] == [8, 6])
        .filter(|f| f[28..32] == f[38..42])
        .map(|f| {
            let mut mac = [0u8; 6];
            mac.copy_from_slice(&f[22..28]);
            let mut ip = [0u8; 4];
            ip.copy_from_slice(&f[28..32]);
            (mac, ip)
        })
        .collect()
}

/// The MAC of a node's port (what its GARPs carry).
pub fn port_mac(lab: &Lab, n: &str) -> [u8; 6] {
    let o = Command::new("ip")
        .args(["netns", "exec", &lab.ns(&format!("n{n}"))])
        .args([
            "cat",
            &format!("/sys/class/net/{}-p{n}/address", lab.prefix),
        ])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&o.stdout);
    let mut mac = [0u8; 6];
    for (i, p) in s.trim().split(':').enumerate().take(6) {
        mac[i] = u8::from_str_radix(p, 16).unwrap_or(0);
    }
    mac
}

/// What the long-lived clients saw, against the marks the test set.
pub struct Report {
    pub v: Value,
}

impl Report {
    pub fn conns(&self) -> &Vec<Value> {
        self.v["conns"].as_array().unwrap()
    }

    pub fn mark(&self, i: usize) -> f64 {
        self.v["marks"][i]
            .as_f64()
            .unwrap_or_else(|| panic!("mark {i} missing: {}", self.v["marks"]))
    }

    /// Connections that answered every request, on one backend, never reset.
    pub fn continued(&self) -> usize {
        self.conns()
            .iter()
            .filter(|c| {
                c["failures"] == 0
                    && c["reset"] == false
                    && c["backends"].as_array().unwrap().len() == 1
            })
            .count()
    }

    /// Connections that failed at or after `t` (client seconds).
    pub fn failed_after(&self, t: f64) -> usize {
        self.conns()
            .iter()
            .filter(|c| c["failed_at"].as_f64().is_some_and(|f| f >= t))
            .count()
    }

    pub fn opened(&self) -> usize {
        self.conns()
            .iter()
            .filter(|c| c["failed_at"].as_f64() != Some(0.0))
            .count()
    }

    /// The first successful new-connection probe at or after `t`.
    pub fn first_new_conn_after(&self, t: f64) -> Option<f64> {
        self.v["probes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p[1] == true)
            .map(|p| p[0].as_f64().unwrap())
            .find(|&at| at >= t)
    }

    /// New-connection probes started in `[from, to)` that failed.
    pub fn probes_failed_between(&self, from: f64, to: f64) -> Vec<f64> {
        self.v["probes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p[1] == false)
            .map(|p| p[0].as_f64().unwrap())
            .filter(|&at| at >= from && at < to)
            .collect()
    }

    pub fn failures(&self) -> String {
        let bad: Vec<&Value> = self
            .conns()
            .iter()
            .filter(|c| c["failures"] != 0 || c["backends"].as_array().unwrap().len() != 1)
            .take(5)
            .collect();
        format!(
            "{} of {} continued; first failures: {bad:?}; marks {}",
            self.continued(),
            self.conns().len(),
            self.v["marks"]
        )
    }
}
