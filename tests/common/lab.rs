//! The namespace lab harness: builds a lab with tests/lab/lab.sh (torn down on drop, also when
//! an assertion fails), runs the real switchyard binary in front of it, captures on the
//! switch side of its port. Lab tests need root; they take `LAB_LOCK` so that only one lab
//! runs at a time on this 2-core machine.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::bin;

pub static LAB_LOCK: Mutex<()> = Mutex::new(());

pub const VIP: &str = "10.20.0.100";

pub fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// Runs `args` in network namespace `ns` (its full name).
pub fn exec_in(ns: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .expect("ip netns exec")
}

/// `switchyard ctl --json --config CONFIG ARGS` in namespace `ns`.
pub fn ctl_in(ns: &str, config: &Path, args: &[&str]) -> Output {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            super::bin(),
            "ctl",
            "--json",
            "--config",
        ])
        .arg(config)
        .args(args)
        .output()
        .expect("ctl")
}

pub fn assert_root() {
    let uid = Command::new("id").arg("-u").output().expect("id -u");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "lab tests need root (network namespaces); run scripts/test.sh as root"
    );
}

/// A lab from tests/lab/lab.sh, torn down on drop.
pub struct Lab {
    pub backends: usize,
    pub prefix: String,
    pub port: String,
    pub mode: String,
    pub logdir: PathBuf,
    /// An HA pair's lab (two balancer nodes in namespaces `PREFIX-na`, `PREFIX-nb`).
    pub pair: bool,
}

impl Lab {
    /// `prefix` must be short (interface names are prefix + a few chars, at most 15).
    pub fn up(prefix: &str, mode: &str) -> Lab {
        Self::up_with(prefix, mode, 2)
    }

    pub fn up_with(prefix: &str, mode: &str, backends: usize) -> Lab {
        Self::build(prefix, mode, backends, false)
    }

    /// The lab of an HA pair (tests/lab/lab.sh with LAB_PAIR=1).
    pub fn up_pair(prefix: &str, mode: &str) -> Lab {
        Self::build(prefix, mode, 2, true)
    }

    fn build(prefix: &str, mode: &str, backends: usize, pair: bool) -> Lab {
        assert_root();
        let lab = Lab {
            backends,
            prefix: prefix.into(),
            port: format!("{prefix}p0"),
            mode: mode.into(),
            logdir: std::env::temp_dir().join(format!("{prefix}-lab")),
            pair,
        };
        let st = lab.cmd("up").status().expect("lab.sh up");
        assert!(st.success(), "lab.sh up ({mode}) failed");
        lab
    }

    fn cmd(&self, sub: &str) -> Command {
        let mut c = Command::new("bash");
        c.arg(repo("tests/lab/lab.sh"))
            .arg(sub)
            .env("LAB_PREFIX", &self.prefix)
            .env("LAB_PORT", &self.port)
            .env("LAB_MODE", &self.mode)
            .env("LAB_BACKENDS", self.backends.to_string())
            .env("LAB_LOGDIR", &self.logdir)
            .env("LAB_PAIR", if self.pair { "1" } else { "0" });
        c
    }

    pub fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// Runs a command in one of the lab's namespaces.
    pub fn exec(&self, ns: &str, args: &[&str]) -> Output {
        exec_in(&self.ns(ns), args)
    }

    /// Starts a command in a namespace in the background (stdout piped).
    pub fn spawn_in(&self, ns: &str, args: &[&str]) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(ns)])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("ip netns exec")
    }

    /// `curl http://VIP/` from the client (optionally from a given source address).
    pub fn curl(&self, from: Option<&str>) -> Option<String> {
        let url = format!("http://{VIP}/");
        let mut args = vec!["curl", "-s", "-m", "3"];
        if let Some(f) = from {
            args.extend(["--interface", f]);
        }
        args.push(&url);
        let o = self.exec("client", &args);
        o.status
            .success()
            .then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
    }

    /// `dig @VIP who.lab.test TXT` from the client over UDP or TCP; the answering backend.
    pub fn dig(&self, tcp: bool) -> Option<String> {
        let at = format!("@{VIP}");
        let mut args = vec![
            "dig",
            "+short",
            "+time=2",
            "+tries=1",
            &at,
            "who.lab.test",
            "TXT",
        ];
        if tcp {
            args.push("+tcp");
        }
        let o = self.exec("client", &args);
        let out = String::from_utf8_lossy(&o.stdout)
            .trim()
            .trim_matches('"')
            .to_string();
        (o.status.success() && out.starts_with('b')).then_some(out)
    }

    /// Waits until the VIP answers HTTP (ARP settles, backends resolve).
    pub fn wait_for_vip(&self) {
        let t = Instant::now();
        while self.curl(None).is_none() {
            assert!(t.elapsed() < Duration::from_secs(20), "VIP never answered");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.logdir.join(name)).unwrap_or_default()
    }

    pub fn clear_logs(&self, names: &[&str]) {
        for n in names {
            let _ = std::fs::write(self.logdir.join(n), "");
        }
    }

    /// The config `conf/NAME` rewritten for this lab's port names and a unique EAL prefix.
    pub fn config(&self, name: &str) -> String {
        std::fs::read_to_string(repo("conf").join(name))
            .unwrap()
            .replace("iface=yard0b", &format!("iface={}b", self.port))
            .replace("iface=yard0", &format!("iface={}", self.port))
            .replace(
                "switchyard-lab",
                &format!("{}-{}", self.prefix, std::process::id()),
            )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.cmd("down").stdout(Stdio::null()).status();
    }
}

/// Processes a test started beside the lab (listeners, servers), killed and reaped however
/// the test ends.
pub struct Children(pub Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `ip ARGS`, in namespace `ns` when given; true when it succeeded.
fn ip_in(ns: Option<&str>, args: &[&str]) -> bool {
    let mut c = Command::new("ip");
    if let Some(n) = ns {
        c.args(["-n", n]);
    }
    c.args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A network namespace of a test's own (loopback up), deleted on drop with whatever is still
/// in it (a veth moved into it takes its peer with it).
pub struct Netns(pub String);

impl Netns {
    pub fn new(name: &str) -> Netns {
        let _ = ip_in(None, &["netns", "del", name]); // left by a killed run
        assert!(ip_in(None, &["netns", "add", name]), "ip netns add {name}");
        let n = Netns(name.into());
        assert!(ip_in(Some(name), &["link", "set", "lo", "up"]));
        n
    }

    /// `/run/netns/NAME`, what a container runtime joins (podman: `--network ns:PATH`).
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip_in(None, &["netns", "del", &self.0]);
    }
}

/// A bridge between the lab's port and the balancer's `net_tap` kernel interface, in the root
/// namespace or in a namespace of the test's (where a containerised balancer makes its tap),
/// deleted on drop.
pub struct Bridge {
    name: String,
    ns: Option<String>,
}

impl Bridge {
    /// In the root namespace, where the lab leaves its port.
    pub fn new(name: &str, lab_port: &str) -> Bridge {
        Self::make(None, name, lab_port)
    }

    /// In namespace `ns`, the lab's port moved there first.
    pub fn in_ns(ns: &Netns, name: &str, lab_port: &str) -> Bridge {
        assert!(
            ip_in(None, &["link", "set", lab_port, "netns", &ns.0]),
            "moving {lab_port} into {}",
            ns.0
        );
        Self::make(Some(&ns.0), name, lab_port)
    }

    fn make(ns: Option<&str>, name: &str, lab_port: &str) -> Bridge {
        assert!(ip_in(ns, &["link", "add", name, "type", "bridge"]));
        let b = Bridge {
            name: name.into(),
            ns: ns.map(str::to_string),
        };
        // Its own MAC, so it never takes the tap's (see `attach`).
        assert!(ip_in(
            ns,
            &["link", "set", name, "address", "02:00:00:fe:00:01"]
        ));
        assert!(ip_in(ns, &["link", "set", lab_port, "master", name]));
        assert!(ip_in(ns, &["link", "set", lab_port, "up"]));
        assert!(ip_in(ns, &["link", "set", name, "up"]));
        b
    }

    fn mac_of(&self, dev: &str) -> Option<String> {
        let mut c = Command::new("ip");
        if let Some(n) = &self.ns {
            c.args(["-n", n]);
        }
        let o = c.args(["-br", "link", "show", "dev", dev]).output().ok()?;
        // "NAME STATE MAC <FLAGS>"
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        (o.status.success())
            .then(|| text.split_whitespace().nth(2).map(str::to_string))
            .flatten()
    }

    /// Waits for the balancer's tap and puts it on the bridge. net_tap gives the kernel side
    /// the port's own MAC; a bridge takes its ports' MACs as its own (frames to them stop at
    /// the bridge), so the kernel side gets another one, and frames to the balancer's MAC are
    /// bridged on to it. DPDK sets the kernel side's MAC again when it starts the port: the
    /// MAC is set until it stays.
    pub fn attach(&self, tap: &str) {
        const KERNEL_SIDE: &str = "02:00:00:fe:00:02";
        let ns = self.ns.as_deref();
        let t = Instant::now();
        let mut stable = 0;
        while stable < 5 {
            assert!(t.elapsed() < Duration::from_secs(20), "{tap} never settled");
            std::thread::sleep(Duration::from_millis(100));
            match self.mac_of(tap) {
                Some(m) if m == KERNEL_SIDE => stable += 1,
                Some(_) => {
                    stable = 0;
                    let _ = ip_in(ns, &["link", "set", tap, "address", KERNEL_SIDE]);
                    let _ = ip_in(ns, &["link", "set", tap, "master", &self.name]);
                    let _ = ip_in(ns, &["link", "set", tap, "up"]);
                }
                None => stable = 0,
            }
        }
        let ethtool = ["ethtool", "-K", tap, "tx", "off"];
        let _ = match ns {
            Some(n) => Some(exec_in(n, &ethtool)),
            None => Command::new(ethtool[0]).args(&ethtool[1..]).output().ok(),
        };
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = ip_in(self.ns.as_deref(), &["link", "del", &self.name]);
    }
}

/// A running balancer, interrupted (and reaped) on drop.
pub struct Balancer {
    child: Option<Child>,
    _dir: tempfile::TempDir,
    pub stats: PathBuf,
}

impl Balancer {
    pub fn start(config_text: &str) -> Balancer {
        let dir = tempfile::tempdir().unwrap();
        let cfg_path = dir.path().join("lab.toml");
        std::fs::write(&cfg_path, config_text).unwrap();
        Self::spawn(&cfg_path, dir)
    }

    /// Runs with the config file at `path` (which the test may rewrite for reloads).
    pub fn start_at(path: &Path) -> Balancer {
        Self::spawn(path, tempfile::tempdir().unwrap())
    }

    fn spawn(cfg_path: &Path, dir: tempfile::TempDir) -> Balancer {
        let stats = dir.path().join("stats.json");
        let child = Command::new(bin())
            .args(["run", "--config", cfg_path.to_str().unwrap()])
            .args(["--stats-json", stats.to_str().unwrap()])
            .env("RUST_LOG", "warn")
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

    /// Starts a balancer that shares the root namespace's AF_PACKET sockets with another one.
    /// DPDK 22.11's net_af_packet names its PACKET_FANOUT group `(pid ^ ifindex) & 0xffff`,
    /// so two processes on consecutive interfaces can collide (EINVAL at probe, the process
    /// exits): then it is simply started again, with another pid.
    pub fn start_beside_another(config_text: &str) -> Balancer {
        for _ in 0..5 {
            let mut b = Balancer::start(config_text);
            std::thread::sleep(Duration::from_millis(1500));
            let child = b.child.as_mut().expect("running");
            if child.try_wait().unwrap().is_none() {
                return b;
            }
        }
        panic!("switchyard kept failing to start");
    }

    /// Sends a signal (`-HUP`, ...) to the running balancer.
    pub fn signal(&self, sig: &str) {
        let id = self.child.as_ref().expect("running").id().to_string();
        assert!(
            Command::new("kill")
                .args([sig, &id])
                .status()
                .unwrap()
                .success()
        );
    }

    /// SIGINT, then wait; returns (exit success, how long it took).
    pub fn interrupt(&mut self) -> (bool, Duration) {
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

    /// Stops the balancer and returns its final total counters.
    pub fn finish(&mut self) -> serde_json::Value {
        let (ok, took) = self.interrupt();
        assert!(ok, "switchyard did not exit 0 on SIGINT");
        assert!(took <= Duration::from_secs(1), "shutdown took {took:?}");
        super::totals(&self.stats)
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
pub struct Capture {
    child: Child,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Capture {
    pub fn start(lab: &Lab) -> Capture {
        Self::on(lab, "lan", &format!("{}-lp", lab.prefix), &[])
    }

    /// tcpdump on interface `iface` of the lab's namespace `ns`, with a capture filter.
    pub fn on(lab: &Lab, ns: &str, iface: &str, filter: &[&str]) -> Capture {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("capture.pcap");
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.ns(ns), "tcpdump"])
            .args(["-i", iface])
            .args(["-n", "--immediate-mode", "-Z", "root", "-U", "-w"])
            .arg(&file)
            .args(filter)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpdump (install it: apt-get install tcpdump)");
        std::thread::sleep(Duration::from_millis(500));
        Capture {
            child,
            file,
            _dir: dir,
        }
    }

    pub fn stop(mut self) -> Vec<Vec<u8>> {
        std::thread::sleep(Duration::from_millis(200));
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        super::pcap_frames(&self.file)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// IPv4 TCP frames (untagged) whose source (or destination) address is `ip`.
pub fn tcp_frames(frames: &[Vec<u8>], ip: [u8; 4], as_source: bool) -> Vec<&Vec<u8>> {
    let at = if as_source { 26 } else { 30 };
    frames
        .iter()
        .filter(|f| f.len() > 47 && f[12..14] == [8, 0] && f[23] == 6 && f[at..at + 4] == ip)
        .collect()
}
