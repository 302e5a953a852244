//! Floods in the lab: spoofed SYN and ACK floods (hping3 `--flood --rand-source`, as fast as
//! the client namespace can send) against each mode, and a spoofed UDP flood against the proxy
//! DNS service, with real clients beside them: a `curl` every 0.1 s (a new connection each),
//! keep-alive connections and DNS queries (tests/lab/hold_client.py). Traffic stays inside the
//! lab's namespaces (the spoofed sources' answers die at the lab's router). Needs root and
//! hping3; one lab at a time.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::lab::*;
use common::pair::Hold;
use serde_json::Value;

/// Seconds each flood lasts.
const FLOOD_S: u64 = 10;
/// Seconds of quiet before, between and after the floods.
const QUIET_S: u64 = 4;

/// How long a curl may take: room for a client's SYN retransmissions (1, 3, 7 s) while
/// hping3, the balancer and the lab's kernels share the 2 cores.
const CURL_MAX_S: &str = "8";

/// A `curl` started every 0.1 s from the client namespace (each on its own, so that a slow
/// one does not delay the next) until stopped: (seconds since `t0`, ok, seconds taken).
struct Curls {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<(f64, Child)>>,
}

impl Curls {
    fn start(lab: &Lab, t0: Instant) -> Curls {
        let stop = Arc::new(AtomicBool::new(false));
        let ns = lab.ns("client");
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut out = Vec::new();
            let url = format!("http://{VIP}/");
            while !s.load(Ordering::Relaxed) {
                let t = t0.elapsed().as_secs_f64();
                let c = Command::new("ip")
                    .args(["netns", "exec", &ns, "curl", "-s", "-m", CURL_MAX_S])
                    .args(["-w", " %{time_total}", &url])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("curl");
                out.push((t, c));
                std::thread::sleep(Duration::from_millis(100));
            }
            out
        });
        Curls { stop, handle }
    }

    fn finish(self) -> Vec<(f64, bool, f64)> {
        self.stop.store(true, Ordering::Relaxed);
        let started = self.handle.join().unwrap();
        started
            .into_iter()
            .map(|(t, c)| {
                let o = c.wait_with_output().expect("curl");
                let text = String::from_utf8_lossy(&o.stdout);
                let ok = o.status.success() && text.contains("backend");
                let took = text
                    .rsplit(' ')
                    .next()
                    .and_then(|x| x.trim().parse().ok())
                    .unwrap_or(f64::NAN);
                (t, ok, took)
            })
            .collect()
    }
}

/// hping3 flooding the VIP from the client namespace with random sources; `args` says what.
fn flood(lab: &Lab, args: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", &lab.ns("client"), "timeout", "-s", "INT"])
        .arg(FLOOD_S.to_string())
        .args(["hping3", "--flood", "--rand-source", "-q"])
        .args(args)
        .arg(VIP)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("hping3")
}

/// The router forwards what the spoofed sources send (no reverse-path filter there: the
/// floods' sources are random) and drops its answers to them (no route).
fn let_spoofed_sources_through(lab: &Lab) {
    for k in ["all", "default"] {
        let o = lab.exec(
            "router",
            &["sysctl", "-qw", &format!("net.ipv4.conf.{k}.rp_filter=0")],
        );
        assert!(o.status.success());
    }
    let o = lab.exec(
        "router",
        &[
            "sh",
            "-c",
            "for f in /proc/sys/net/ipv4/conf/*/rp_filter; do echo 0 > $f; done",
        ],
    );
    assert!(o.status.success());
}

/// A window of the test's clock: (from, to) seconds.
type Window = (f64, f64);

/// Curls started in window `w`: (succeeded, all, slowest in seconds).
fn share_ok(curls: &[(f64, bool, f64)], w: Window) -> (usize, usize, f64) {
    let inside: Vec<_> = curls.iter().filter(|c| c.0 >= w.0 && c.0 < w.1).collect();
    let slowest = inside.iter().map(|c| c.2).fold(0.0, f64::max);
    (inside.iter().filter(|c| c.1).count(), inside.len(), slowest)
}

/// Frames the kernel received on the balancer's port (its veth end in the root namespace).
fn kernel_rx_frames(port: &str) -> u64 {
    std::fs::read_to_string(format!("/sys/class/net/{port}/statistics/rx_packets"))
        .expect("the lab's port")
        .trim()
        .parse()
        .expect("a count")
}

fn counter(totals: &Value, name: &str) -> u64 {
    totals[name].as_u64().unwrap_or(0)
}

/// One lab per mode: a SYN flood, quiet, an ACK flood, quiet; in proxy mode a UDP flood on
/// the DNS service too. Returns the balancer's final counters.
fn floods_in(mode: &str, prefix: &str) {
    let _g = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(&format!("{prefix}{}", std::process::id() % 1000), mode);
    let_spoofed_sources_through(&lab);
    let mut cfg = lab.config(&format!("lab-{mode}.toml"));
    if mode == "dsr" {
        // DSR cannot proxy SYNs (the replies bypass it); its defence is the table's: with the
        // lab's 1M conns the floods here (~200k conns) never reach the half-open share, so
        // the table is made small enough that they do, and the reclaim runs under a real
        // flood.
        cfg = cfg.replace("capacity_per_core = 1048576", "capacity_per_core = 65536");
        assert!(cfg.contains("capacity_per_core = 65536"));
    }
    let port_rx = || kernel_rx_frames(&lab.port);
    let kernel_rx0 = port_rx();
    let mut lb = Balancer::start(&cfg);
    lab.wait_for_vip();
    let udp = mode == "proxy";
    let phases: &[(&str, &[&str])] = if udp {
        &[
            ("syn", &["-S", "-p", "80"]),
            ("ack", &["-A", "-p", "80"]),
            ("udp", &["--udp", "-p", "53"]),
        ]
    } else {
        &[("syn", &["-S", "-p", "80"]), ("ack", &["-A", "-p", "80"])]
    };
    let total_s = QUIET_S + phases.len() as u64 * (FLOOD_S + QUIET_S);
    let hold = Hold::start_in(
        &lab.ns("client"),
        VIP,
        10,
        total_s,
        &["--dns-every", "0.1", "--probe-every", "1000"],
    );
    let t0 = Instant::now();
    let curls = Curls::start(&lab, t0);
    std::thread::sleep(Duration::from_secs(QUIET_S));
    let mut windows = Vec::new();
    for (name, args) in phases {
        let from = t0.elapsed().as_secs_f64();
        let mut f = flood(&lab, args);
        let _ = f.wait();
        let to = t0.elapsed().as_secs_f64();
        windows.push((*name, (from, to)));
        std::thread::sleep(Duration::from_secs(QUIET_S));
    }
    let curls = curls.finish();
    let hold_t0 = t0.elapsed().as_secs_f64() - hold.elapsed().as_secs_f64();
    let report = hold.finish();
    let totals = lb.finish();
    let kernel_rx = port_rx() - kernel_rx0;

    let mut summary = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for (name, (from, to)) in &windows {
        let (ok, n, slow) = share_ok(&curls, (*from, *to));
        let (ok_after, n_after, _) = share_ok(&curls, (*to, to + QUIET_S as f64));
        let line = format!(
            "{name}: curls {ok}/{n} during (slowest {slow:.2} s), {ok_after}/{n_after} after"
        );
        eprintln!("{mode} {line}");
        summary.push(line);
        if n < 5 {
            failures.push(format!("{name}: only {n} curls during the flood"));
        }
        if ok * 100 < n * 99 {
            failures.push(format!("{name}: {ok}/{n} curls during the flood"));
        }
        if ok_after * 100 < n_after * 99 {
            failures.push(format!("{name}: {ok_after}/{n_after} curls after"));
        }
    }
    // Established keep-alive connections: every request answered, none reset.
    for c in report["conns"].as_array().unwrap() {
        assert_eq!(
            c["failures"].as_u64(),
            Some(0),
            "{mode}: a held connection failed: {c}"
        );
        assert!(
            c["answers"].as_u64() > Some(10),
            "{mode}: a held connection stalled: {c}"
        );
        assert_ne!(
            c["reset"].as_bool(),
            Some(true),
            "{mode}: a held connection was reset: {c}"
        );
    }
    // DNS beside the floods (UDP): in proxy mode, >= 90 % answered during the UDP flood and
    // every query from 5 s after it on.
    let dns = &report["dns"];
    let failed: Vec<f64> = dns["failed_at"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .map(|t| t + hold_t0)
        .collect();
    if let Some((_, (from, to))) = windows.iter().find(|(n, _)| *n == "udp") {
        let during = (to - from) / 0.1;
        let lost = failed.iter().filter(|t| **t >= *from && **t < *to).count() as f64;
        let late = failed.iter().filter(|t| **t >= to + 5.0).count();
        summary.push(format!(
            "udp: dns lost {lost} of ~{during:.0} during, {late} after +5 s"
        ));
        assert!(
            lost <= during * 0.10,
            "{mode}: {lost} DNS queries lost of ~{during:.0} during the UDP flood"
        );
        assert_eq!(
            late, 0,
            "{mode}: DNS queries lost 5 s after the UDP flood: {failed:?}"
        );
    }
    let rx = counter(&totals, "rx_packets");
    let secs = windows.len() as u64 * FLOOD_S;
    // Frames the kernel handed to the port that the balancer never read: DPDK 22.11's
    // af_packet PMD does not report its ring's drops (rx_missed stays 0), so they are counted
    // here, from the interface's own counter. An unoptimised balancer lost 5-7 % here.
    summary.push(format!(
        "port: kernel rx {kernel_rx}, balancer rx {rx} ({:.2} % not read)",
        kernel_rx.saturating_sub(rx) as f64 * 100.0 / kernel_rx.max(1) as f64
    ));
    summary.push(format!(
        "rx {rx} frames (~{} kpps in floods), conns created {}, cookies \
         sent {} valid {}, half-open reclaimed {}, \
         nat_midflow {}, flow_table_full {}, snat_exhausted {}",
        rx / secs / 1000,
        counter(&totals, "flows_created"),
        counter(&totals, "syn_cookies_sent"),
        counter(&totals, "syn_cookies_valid"),
        counter(&totals, "half_open_reclaimed"),
        counter(&totals, "drop_nat_midflow"),
        counter(&totals, "drop_flow_table_full"),
        counter(&totals, "drop_snat_exhausted"),
    ));
    let drops: Vec<String> = totals
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, v)| k.starts_with("drop_") && v.as_u64().unwrap_or(0) > 0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    summary.push(format!("drops: {}", drops.join(", ")));
    eprintln!("{mode}: {}", summary.join("; "));
    assert!(failures.is_empty(), "{mode}: {failures:?}");
    assert!(
        rx > 100_000,
        "{mode}: the floods never reached the balancer ({rx} frames)"
    );
    if mode == "dsr" {
        // DSR cannot proxy SYNs (the replies bypass it): the floods' half-open conns recycle
        // each other instead, and the real ones stay.
        assert!(
            counter(&totals, "flows_created") > 100_000,
            "{mode}: {totals}"
        );
    } else {
        assert!(
            counter(&totals, "syn_cookies_sent") > 10_000,
            "{mode}: {totals}"
        );
        assert!(
            counter(&totals, "syn_cookies_valid") > 0,
            "{mode}: {totals}"
        );
    }
}

#[test]
fn floods_in_proxy_mode_leave_real_clients_served() {
    floods_in("proxy", "fp");
}

#[test]
fn floods_in_gateway_mode_leave_real_clients_served() {
    floods_in("gateway", "fg");
}

#[test]
fn floods_in_dsr_mode_leave_real_clients_served() {
    floods_in("dsr", "fd");
}
