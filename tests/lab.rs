//! Lab tests, end to end: real clients (curl, dig) in network namespaces, real servers (an HTTP
//! server and dnsmasq per backend), Switchyard in front through DPDK's `net_af_packet`, in
//! each forwarding mode. Built by tests/lab/lab.sh; needs root. One lab at a time.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::lab::*;

fn counts<F: Fn() -> Option<String>>(n: usize, f: F) -> (BTreeMap<String, usize>, usize) {
    let mut per = BTreeMap::new();
    let mut failed = 0;
    for _ in 0..n {
        match f() {
            Some(b) => *per.entry(b).or_default() += 1,
            None => failed += 1,
        }
    }
    (per, failed)
}

/// Log lines (non-empty) of every backend's HTTP log.
fn http_log_lines(lab: &Lab) -> Vec<String> {
    ["b1.log", "b2.log"]
        .iter()
        .flat_map(|n| lab.log(n).lines().map(str::to_string).collect::<Vec<_>>())
        .filter(|l| !l.trim().is_empty())
        .collect()
}

fn dns_both_ways(lab: &Lab, n: usize) {
    for tcp in [false, true] {
        let (per, failed) = counts(n, || lab.dig(tcp));
        assert_eq!(failed, 0, "dig (tcp={tcp}) failures; answers {per:?}");
    }
}

#[test]
fn dsr_lab_balances_200_curls_and_replies_bypass_the_balancer() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(&format!("d{}", std::process::id() % 10000), "dsr");
    let mut lb = Balancer::start(&lab.config("lab-dsr.toml"));
    let cap = Capture::start(&lab);
    lab.wait_for_vip();
    lab.clear_logs(&["b1.log", "b2.log"]);

    let (per, failed) = counts(200, || lab.curl(None));
    assert_eq!(failed, 0, "failed requests; served: {per:?}");
    for b in ["backend b1", "backend b2"] {
        let n = per.get(b).copied().unwrap_or(0);
        assert!(
            (70..=130).contains(&n),
            "{b} served {n} of 200 (want 35-65 %): {per:?}"
        );
    }
    // The backends saw the client's own address (DSR keeps the source), on the VIP.
    let lines = http_log_lines(&lab);
    assert_eq!(lines.len(), 200);
    for l in &lines {
        assert!(
            l.contains(" 10.20.9.2 ") && l.contains(" 10.20.0.100 "),
            "{l}"
        );
    }
    dns_both_ways(&lab, 10);

    // Replies never cross the balancer: its port saw each SYN twice (in from the router, out
    // to a backend with only the MACs rewritten) but no VIP-sourced TCP.
    let frames = cap.stop();
    let syns = tcp_frames(&frames, [10, 20, 0, 100], false)
        .into_iter()
        .filter(|f| f[47] & 0x12 == 0x02)
        .count();
    assert!(syns >= 400, "capture saw only {syns} SYNs to the VIP");
    assert_eq!(
        tcp_frames(&frames, [10, 20, 0, 100], true).len(),
        0,
        "VIP replies crossed"
    );

    let t = lb.finish();
    assert!(t["forwarded"].as_u64().unwrap() >= 1000);
    assert!(
        t["generated"].as_u64().unwrap() >= 3,
        "GARP + ARP requests for both backends"
    );
}

#[test]
fn proxy_lab_backends_see_the_balancer_and_dns_works() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(&format!("p{}", std::process::id() % 10000), "proxy");
    let mut lb = Balancer::start(&lab.config("lab-proxy.toml"));
    lab.wait_for_vip();
    lab.clear_logs(&["b1.log", "b2.log"]);
    let (per, failed) = counts(100, || lab.curl(None));
    assert_eq!(failed, 0, "{per:?}");
    assert_eq!(
        per.len(),
        2,
        "least_connections uses both idle backends: {per:?}"
    );
    for l in http_log_lines(&lab) {
        assert!(
            l.contains(" 10.20.0.10 "),
            "backend saw something else than the SNAT address: {l}"
        );
    }
    dns_both_ways(&lab, 10);
    let t = lb.finish();
    assert_eq!(t["drop_snat_exhausted"], 0);
    assert!(t["flows_created"].as_u64().unwrap() >= 120);
}

fn gateway_checks(lab: &Lab, lb: &mut Balancer, backend_net: &str) {
    let cap = if lab.mode == "gateway" {
        Some(Capture::start(lab))
    } else {
        None
    };
    lab.wait_for_vip();
    lab.clear_logs(&["b1.log", "b2.log"]);
    let (per, failed) = counts(60, || lab.curl(None));
    assert_eq!(failed, 0, "{per:?}");
    assert_eq!(per.len(), 2, "{per:?}");
    for l in http_log_lines(lab) {
        assert!(
            l.contains(" 10.20.9.2 "),
            "gateway backends must see the client: {l}"
        );
        assert!(l.contains(&format!(" {backend_net}.")), "{l}");
    }
    dns_both_ways(lab, 10);
    // A backend reaches a host on the client side through the balancer (routed both ways).
    let ping = lab.exec("b1", &["ping", "-c", "3", "-W", "2", "10.20.9.2"]);
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stdout)
    );
    if let Some(cap) = cap {
        // Replies do cross the balancer, and leave it from the VIP.
        let frames = cap.stop();
        assert!(!tcp_frames(&frames, [10, 20, 0, 100], true).is_empty());
    }
    let t = lb.finish();
    assert!(
        t["routed"].as_u64().unwrap() >= 6,
        "ping both ways was routed"
    );
}

#[test]
fn gateway_one_arm_lab_reverse_nats_and_routes() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(&format!("g{}", std::process::id() % 10000), "gateway");
    let mut lb = Balancer::start(&lab.config("lab-gateway.toml"));
    gateway_checks(&lab, &mut lb, "10.20.1");
}

#[test]
fn gateway_two_arm_lab_reverse_nats_and_routes() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(&format!("h{}", std::process::id() % 10000), "gateway2");
    let mut lb = Balancer::start(&lab.config("lab-gateway2.toml"));
    gateway_checks(&lab, &mut lb, "10.20.2");
}

/// Two workers on one CPU, `qpairs=2`: the kernel spreads flows over both queues by its own
/// hash, so replies of NAT conns often land on the worker that does not own them; those are
/// handed over on an SPSC ring. Many parallel connections must all complete.
#[test]
fn two_workers_complete_flows_whose_replies_land_on_the_other_core() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    for (mode, conf) in [("proxy", "lab-proxy.toml"), ("gateway", "lab-gateway.toml")] {
        let lab = Lab::up(&format!("w{}", std::process::id() % 10000), mode);
        let cfg = lab
            .config(conf)
            .replace(
                &format!("iface={}", lab.port),
                &format!("iface={},qpairs=2", lab.port),
            )
            .replace("workers = [1]", "workers = [1, 1]\nallow_shared = true");
        let mut lb = Balancer::start(&cfg);
        lab.wait_for_vip();
        // 200 requests, 20 at a time.
        let script = format!(
            "seq 200 | xargs -P 20 -I{{}} curl -s -o /dev/null -m 5 -w '%{{http_code}}\\n' http://{VIP}/ | sort | uniq -c"
        );
        let o = lab.exec("client", &["sh", "-c", &script]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.trim() == "200 200", "{mode}: status codes: {out}");
        let t = lb.finish();
        eprintln!(
            "{mode}, 2 workers: rx {} forwarded {} steered_out {} steered_in {}",
            t["rx_packets"], t["forwarded"], t["steered_out"], t["steered_in"]
        );
        assert!(
            t["steered_out"].as_u64().unwrap() > 0,
            "{mode}: no cross-core handover: {t}"
        );
        assert_eq!(t["steered_out"], t["steered_in"]);
        assert_eq!(t["drop_steer_full"], 0);
    }
}

#[test]
fn persistence_keeps_a_client_on_one_backend_and_spreads_subnets() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(&format!("s{}", std::process::id() % 10000), "proxy");
    // Extra client subnets 10.20.10-17.0/24 on the client link (router answers them).
    let (cl, rc) = (format!("{}-cl", lab.prefix), format!("{}-rc", lab.prefix));
    for n in 10..18 {
        let c = format!("10.20.{n}.2/24");
        let r = format!("10.20.{n}.1/24");
        assert!(
            lab.exec("client", &["ip", "addr", "add", &c, "dev", &cl])
                .status
                .success()
        );
        assert!(
            lab.exec("router", &["ip", "addr", "add", &r, "dev", &rc])
                .status
                .success()
        );
    }
    let cfg = lab.config("lab-proxy.toml").replacen(
        "scheduler = \"least_connections\"",
        "scheduler = \"round_robin\"\n  [services.persistence]\n  timeout_s = 300\n  netmask = 24",
        1,
    );
    let mut lb = Balancer::start(&cfg);
    lab.wait_for_vip();
    let (per, failed) = counts(50, || lab.curl(Some("10.20.9.2")));
    assert_eq!(failed, 0);
    assert_eq!(
        per.len(),
        1,
        "50 connections from one client, one backend: {per:?}"
    );
    let mut spread = BTreeSet::new();
    for n in 10..18 {
        let src = format!("10.20.{n}.2");
        for _ in 0..3 {
            spread.insert(lab.curl(Some(&src)).expect("curl from another subnet"));
        }
    }
    assert_eq!(
        spread.len(),
        2,
        "clients from different subnets spread: {spread:?}"
    );
    lb.finish();
}

/// Proxy mode with a pool of four local ports: four held connections take them all, the
/// fifth is refused cleanly (counted), and the four keep working.
#[test]
fn snat_exhaustion_refuses_new_connections_and_keeps_established_ones() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(&format!("x{}", std::process::id() % 10000), "proxy");
    let cfg = lab.config("lab-proxy.toml").replace(
        "[[interfaces]]",
        "[nat]\nport_min = 30000\nport_max = 30003\n\n[[interfaces]]",
    );
    let mut lb = Balancer::start(&cfg);
    lab.wait_for_vip(); // uses (and, after it closes, holds for tcp_closing_s) a port...
    std::thread::sleep(std::time::Duration::from_secs(11)); // ...until the closing timeout
    let script = format!(
        r#"
import socket, sys
held = []
for i in range(4):
    s = socket.create_connection(("{VIP}", 80), timeout=3)
    held.append(s)
try:
    socket.create_connection(("{VIP}", 80), timeout=2)
    print("fifth connected")
except OSError:
    print("fifth refused")
ok = 0
for s in held:
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    ok += b" 200 " in data
print("held ok", ok)
"#
    );
    let o = lab.exec("client", &["/usr/bin/python3", "-c", &script]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("fifth refused"),
        "{out} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("held ok 4"), "{out}");
    let t = lb.finish();
    assert!(t["drop_snat_exhausted"].as_u64().unwrap() >= 1, "{t}");
}
