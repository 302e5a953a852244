//! Scale-out behind ECMP, end to end (tests/lab/ecmp.sh): an edge router running BIRD with
//! multipath BGP to three Switchyard nodes (each with its BIRD, conf/bird.conf), kernel ECMP
//! hashing on the 5-tuple, 300 long-lived DSR connections from the client
//! (tests/lab/hold_client.py), two backends. Needs root; one lab at a time.

mod common;

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::bin;
use common::lab::{LAB_LOCK, ctl_in, repo};
use common::pair::{Hold, Report, wait_until};
use common::script_lab::ScriptLab;
use serde_json::Value;

const VIP: &str = "10.99.0.100";
const CONNS: usize = 300;

type Lab = ScriptLab;

/// What the ECMP lab adds to a script lab.
trait EcmpLab {
    fn next_hops(&self) -> Vec<String>;
    fn curl(&self) -> String;
}

impl EcmpLab for ScriptLab {
    /// The nodes the router's route to the VIP goes through now.
    fn next_hops(&self) -> Vec<String> {
        let o = self.script(&["route"]);
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        let mut hops: Vec<String> = text
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "via")
            .map(|w| w[1].to_string())
            .collect();
        hops.sort();
        hops
    }

    fn curl(&self) -> String {
        let o = self.exec(
            "client",
            &["curl", "-s", "-m", "3", &format!("http://{VIP}/")],
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

fn addr(n: u32) -> String {
    format!("10.20.0.{}", 10 * n)
}

/// A node's Switchyard (its BIRD is the lab's).
struct Node {
    n: u32,
    ns: String,
    config: PathBuf,
    logdir: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Node {
    fn new(lab: &Lab, n: u32) -> Node {
        let text = std::fs::read_to_string(repo("conf/ecmp-node.toml"))
            .unwrap()
            .replace("10.20.0.10/24", &format!("{}/24", addr(n)))
            .replace("iface=sy-p1", &format!("iface={}-p{n}", lab.prefix))
            .replace(
                "switchyard-ecmp-1",
                &format!("{}-ecmp-{n}-{}", lab.prefix, std::process::id()),
            );
        let config = lab.logdir.join(format!("node{n}.toml"));
        std::fs::write(&config, text).unwrap();
        Node {
            n,
            ns: lab.ns(&format!("n{n}")),
            config,
            logdir: lab.logdir.clone(),
            child: None,
            starts: 0,
        }
    }

    fn start(&mut self) {
        self.starts += 1;
        let log = File::create(
            self.logdir
                .join(format!("node{}-{}.log", self.n, self.starts)),
        )
        .unwrap();
        self.child = Some(
            Command::new("ip")
                .args(["netns", "exec", &self.ns, bin(), "run", "--config"])
                .arg(&self.config)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("switchyard"),
        );
        assert!(
            wait_until(Duration::from_secs(20), || self.status().is_some()),
            "node {}: API never answered",
            self.n
        );
    }

    fn ctl(&self, args: &[&str]) -> Output {
        ctl_in(&self.ns, &self.config, args)
    }

    fn status(&self) -> Option<Value> {
        serde_json::from_slice(&self.ctl(&["status"]).stdout).ok()
    }

    fn counter(&self, name: &str) -> u64 {
        self.status()
            .and_then(|s| s["counters"][name].as_u64())
            .unwrap_or(0)
    }

    fn metrics(&self) -> String {
        let o = Command::new("ip")
            .args(["netns", "exec", &self.ns, "curl", "-s", "-m", "2"])
            .arg("http://127.0.0.1:9100/metrics")
            .output()
            .expect("curl");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Drops (or lets through again) this node's health probes to the VIP, in its namespace.
    fn block_probes(&self, on: bool) {
        let steps: Vec<Vec<&str>> = if on {
            vec![
                vec!["add", "table", "inet", "sy_block"],
                vec![
                    "add",
                    "chain",
                    "inet",
                    "sy_block",
                    "out",
                    "{ type filter hook output priority 0; }",
                ],
                vec![
                    "add",
                    "rule",
                    "inet",
                    "sy_block",
                    "out",
                    "tcp",
                    "dport",
                    "80",
                    "ip",
                    "daddr",
                    "10.99.0.100",
                    "drop",
                ],
            ]
        } else {
            vec![vec!["delete", "table", "inet", "sy_block"]]
        };
        for step in steps {
            let o = Command::new("ip")
                .args(["netns", "exec", &self.ns, "nft"])
                .args(&step)
                .output()
                .expect("nft");
            assert!(
                o.status.success(),
                "nft: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// SIGINT; the exit status once it exits.
    fn interrupt(&mut self) {
        let c = self.child.as_ref().expect("running");
        let _ = Command::new("kill")
            .args(["-INT", &c.id().to_string()])
            .status();
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<bool> {
        let t = Instant::now();
        while t.elapsed() < limit {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                self.child = None;
                return Some(st.success());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// How long until the router's next hops are exactly `want` (None: not within `limit`).
fn converge(lab: &Lab, want: &[u32], limit: Duration) -> Option<Duration> {
    let want: Vec<String> = want.iter().map(|&n| addr(n)).collect();
    let t = Instant::now();
    while t.elapsed() < limit {
        if lab.next_hops() == want {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn three_nodes_behind_ecmp_keep_flows_through_node_changes() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up("ecmp.sh", &format!("ec{}", std::process::id() % 1000));
    let mut nodes: Vec<Node> = (1..=3).map(|n| Node::new(&lab, n)).collect();
    for n in &mut nodes {
        n.start();
    }
    let all = converge(&lab, &[1, 2, 3], Duration::from_secs(20));
    assert!(
        all.is_some(),
        "the router never had 3 next hops: {:?}",
        lab.next_hops()
    );
    assert!(lab.curl().starts_with("backend b"));
    // The VIP's MED and community ([[bgp.vips]]) reach the router through BIRD.
    let o = Command::new("birdc")
        .arg("-s")
        .arg(lab.logdir.join("bird-router.ctl"))
        .args(["show", "route", "all", "for", VIP])
        .output()
        .expect("birdc");
    let routes = String::from_utf8_lossy(&o.stdout);
    assert!(
        routes.contains("BGP.med: 50") && routes.contains("BGP.community: (65001,7)"),
        "{routes}"
    );

    let hold = Hold::start_in(
        &lab.ns("client"),
        VIP,
        CONNS,
        62,
        &["--dns-every", "1000", "--probe-every", "0.2"],
    );
    std::thread::sleep(Duration::from_secs(4));
    // Every node carries some of the connections.
    let created: Vec<u64> = nodes.iter().map(|n| n.counter("flows_created")).collect();
    eprintln!("flows created per node: {created:?}");
    assert!(
        created.iter().all(|&c| c > 0),
        "a node carried nothing: {created:?}"
    );

    // 1. kill -9 node 3: the router drops it after BGP's hold time; its flows move to the
    //    other nodes, which adopt them on the same backend (Maglev).
    hold.mark(); // 0
    nodes[2].kill9();
    let t = converge(&lab, &[1, 2], Duration::from_secs(10));
    eprintln!("node 3 killed: out of the router's ECMP set after {t:?}");
    assert!(t.is_some_and(|t| t <= Duration::from_secs(5)), "{t:?}");
    std::thread::sleep(Duration::from_secs(5));

    // 2. node 3 back: flows hashed to it again are adopted there.
    hold.mark(); // 1
    nodes[2].start();
    let t = converge(&lab, &[1, 2, 3], Duration::from_secs(15));
    eprintln!("node 3 back in the ECMP set after {t:?}");
    assert!(t.is_some());
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        nodes[2].counter("flows_created") > 0,
        "node 3 adopted nothing"
    );

    // 3. ctl node drain on node 2: withdrawn, flows move on (--wait returns once node 2 has
    //    forwarded nothing for 2 s); enable: announced again.
    hold.mark(); // 2
    let t0 = Instant::now();
    let o = nodes[1].ctl(&["node", "drain", "--wait", "--timeout-s", "30"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    eprintln!(
        "node 2 drained (ctl node drain --wait) in {:?}",
        t0.elapsed()
    );
    assert_eq!(lab.next_hops(), [addr(1), addr(3)]);
    let v: Value = serde_json::from_slice(&nodes[1].ctl(&["node", "status"]).stdout).unwrap();
    assert_eq!(v["drained"], true);
    assert_eq!(v["announced"], Value::Array(vec![]));
    let m = nodes[1].metrics();
    assert!(m.contains("switchyard_bgp_drained 1"), "{m}");
    assert!(m.contains("switchyard_bgp_drains_total 1"), "{m}");
    assert!(nodes[1].ctl(&["node", "enable"]).status.success());
    assert!(converge(&lab, &[1, 2, 3], Duration::from_secs(10)).is_some());
    std::thread::sleep(Duration::from_secs(3));

    // 4. Every backend of the VIP down as node 1 sees it (its health probes dropped in its
    //    namespace): node 1 withdraws, the others keep serving; probes through again: back.
    hold.mark(); // 3
    assert!(
        nodes[0]
            .metrics()
            .contains("switchyard_bgp_announced{vip=\"10.99.0.100\"} 1")
    );
    nodes[0].block_probes(true);
    let t = converge(&lab, &[2, 3], Duration::from_secs(10));
    eprintln!("node 1's backends down: withdrawn after {t:?}");
    assert!(t.is_some());
    assert!(lab.curl().starts_with("backend b"));
    nodes[0].block_probes(false);
    assert!(converge(&lab, &[1, 2, 3], Duration::from_secs(10)).is_some());
    std::thread::sleep(Duration::from_secs(3));

    // 5. Clean stop of node 1: withdrawn while the process still forwards (the grace), then
    //    it exits 0; no connection is reset.
    hold.mark(); // 4
    nodes[0].interrupt();
    let t = converge(&lab, &[2, 3], Duration::from_secs(10));
    let alive = nodes[0].running();
    eprintln!("node 1 stopping: withdrawn after {t:?}, still running then: {alive}");
    assert!(
        t.is_some() && alive,
        "the VIP must be withdrawn before the process exits"
    );
    assert_eq!(nodes[0].wait_exit(Duration::from_secs(15)), Some(true));

    let r = Report { v: hold.finish() };
    let resets = r.conns().iter().filter(|c| c["reset"] == true).count();
    eprintln!(
        "{} of {} held connections continued on their backend; {} reset",
        r.continued(),
        CONNS,
        resets
    );
    assert!(r.continued() * 100 >= CONNS * 99, "{}", r.failures());
    assert_eq!(resets, 0, "{}", r.failures());
    // New connections worked after each change settled.
    for m in 0..5 {
        let failed = r.probes_failed_between(r.mark(m), r.mark(m) + 6.0);
        eprintln!(
            "mark {m}: new-connection probes failed in the 6 s after: {}, first good {:.2} s after",
            failed.len(),
            r.first_new_conn_after(r.mark(m))
                .map_or(f64::NAN, |t| t - r.mark(m))
        );
        assert!(
            r.first_new_conn_after(r.mark(m))
                .is_some_and(|t| t < r.mark(m) + 6.0),
            "no new connection within 6 s of mark {m}"
        );
    }
    // The stopping node reset nothing and the others adopted mid-flow (no NAT here).
    for n in &nodes[1..] {
        assert_eq!(n.counter("drop_nat_midflow"), 0);
    }
}
