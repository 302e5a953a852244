//! HA pair tests, end to end: two Switchyard nodes on the lab's LAN, each with Debian's
//! keepalived electing over VRRPv3 through Switchyard's exception path, 200 long-lived TCP
//! connections and DNS queries from the client through the VIP (tests/lab/hold_client.py),
//! in proxy, dsr and gateway mode. Needs root; one lab at a time.

mod common;

use std::time::{Duration, Instant};

use common::lab::*;
use common::pair::*;

const CONNS: usize = 200;

/// The sync port, blocked in a node's namespace to hold its bulk resync back.
const SYNC_PORT: u16 = 7789;

fn prefix(tag: &str) -> String {
    format!("{tag}{}", std::process::id() % 10000)
}

/// Both nodes up, keepalived on each; waits until `a` (priority 150) is master and `b`
/// backup, both healthy, and the VIP answers.
fn pair_up(lab: &Lab, nopreempt: bool) -> (Node, Node) {
    let mut a = Node::new(lab, "a", nopreempt);
    let mut b = Node::new(lab, "b", nopreempt);
    a.start();
    b.start();
    a.start_keepalived();
    b.start_keepalived();
    let ok = wait_until(Duration::from_secs(25), || {
        a.role() == "master" && b.role() == "backup" && a.healthy() && b.healthy()
    });
    assert!(
        ok,
        "pair never settled: a {} / b {}\n{}{}",
        a.ha(),
        b.ha(),
        a.logs(),
        b.logs()
    );
    lab.wait_for_vip();
    (a, b)
}

/// Waits until `n` is master; how long that took.
fn wait_master(n: &Node, other: &Node, limit: Duration) -> Duration {
    let t = Instant::now();
    let ok = wait_until(limit, || n.role() == "master");
    assert!(
        ok,
        "node {} never became master: {}\n{}{}",
        n.n,
        n.ha(),
        n.logs(),
        other.logs()
    );
    t.elapsed()
}

/// Blocks (or unblocks) the sync port's input in node `n`'s namespace with nftables.
fn block_sync(lab: &Lab, n: &str, on: bool) {
    let ns = lab.ns(&format!("n{n}"));
    let rules = if on {
        format!(
            "table inet sytest {{\n chain input {{\n  type filter hook input priority 0;\n  \
             udp dport {SYNC_PORT} drop\n }}\n}}\n"
        )
    } else {
        "delete table inet sytest\n".to_string()
    };
    let mut c = std::process::Command::new("ip")
        .args(["netns", "exec", &ns, "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nft");
    use std::io::Write;
    c.stdin.take().unwrap().write_all(rules.as_bytes()).unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "nft: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The node loss, the return and preemption, in one mode:
/// 1. `a` is active with 200 conns and DNS through it; `kill -9` its switchyard: `b` takes
///    over, the conns continue on their backends, new conns work, `b`'s GARPs are on the LAN.
/// 2. `a` restarts with its sync input blocked: it is not ready and keepalived does not give
///    it the VIPs; unblocked, it receives the bulk resync, becomes ready and (preempt) takes
///    the VIPs back with no conn lost.
fn node_loss_and_return(mode: &str, tag: &str) {
    let _g = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up_pair(&prefix(tag), mode);
    let (mut a, b) = pair_up(&lab, false);
    let mac_a = port_mac(&lab, "a");
    let mac_b = port_mac(&lab, "b");
    // Gratuitous ARPs on the LAN, as the router sees them.
    let arp = Capture::on(&lab, "router", &format!("{}-rl", lab.prefix), &["arp"]);
    let hold = Hold::start(&lab, CONNS, 36);

    // Every conn open and older than one sync batch (100 ms).
    std::thread::sleep(Duration::from_secs(3));
    let installed = b.ha()["records_installed"].as_u64().unwrap_or(0);
    assert!(
        installed >= CONNS as u64,
        "the backup installed only {installed} records: {}",
        b.ha()
    );

    // 1. Node loss.
    hold.mark(); // 0: kill
    a.kill9();
    let takeover = wait_master(&b, &a, Duration::from_secs(10));
    hold.mark(); // 1: b is master
    eprintln!("{mode}: b master {takeover:?} after the kill");
    // The conns' TCP retransmissions (backing off) reach b within seconds.
    std::thread::sleep(Duration::from_secs(8));
    let hb = b.ha();
    assert_eq!(hb["failovers"], 1, "{hb}");
    assert!(hb["last_failover"].as_u64().is_some(), "{hb}");
    assert_eq!(hb["both_active"], 0, "{hb}");

    // 2. The old active comes back, first without its sync input.
    block_sync(&lab, "a", true);
    hold.mark(); // 2: a restarts
    a.start();
    assert!(!a.healthy(), "a says healthy before its resync: {}", a.ha());
    assert_eq!(a.ha()["ready"], false, "{}", a.ha());
    std::thread::sleep(Duration::from_secs(4)); // keepalived's rise + master-down time
    assert_ne!(
        a.role(),
        "master",
        "keepalived gave a not-ready node the VIPs"
    );
    assert_eq!(b.role(), "master");
    assert!(!a.healthy());
    block_sync(&lab, "a", false);
    let ok = wait_until(Duration::from_secs(5), || a.ha()["ready"] == true);
    assert!(ok, "a never became ready: {}\n{}", a.ha(), a.logs());
    hold.mark(); // 3: a ready
    let ha = a.ha();
    assert!(
        ha["resync_records"].as_u64().unwrap_or(0) >= CONNS as u64,
        "bulk resync brought too little: {ha}"
    );
    let back = wait_master(&a, &b, Duration::from_secs(15));
    hold.mark(); // 4: a is master again
    eprintln!("{mode}: a master again {back:?} after ready");
    let ok = wait_until(Duration::from_secs(3), || b.role() == "backup");
    assert!(ok, "b still {}", b.role());
    assert!(a.healthy());

    let r = Report { v: hold.finish() };
    let (kill, b_master, restart, a_master) = (r.mark(0), r.mark(1), r.mark(2), r.mark(4));
    assert_eq!(r.opened(), CONNS, "{}", r.failures());
    // >= 99 % of the conns continue, on the same backend, through both changes.
    assert!(r.continued() * 100 >= CONNS * 99, "{}", r.failures());
    // Preemption loses none.
    assert_eq!(r.failed_after(restart), 0, "{}", r.failures());
    // New conns: VRRP's master-down time (3 adverts and a skew) after the kill, they work
    // again within 3 advert intervals of the backup taking over.
    let first = r
        .first_new_conn_after(kill)
        .expect("no new conn after the kill");
    eprintln!(
        "{mode}: new conns again {:.2} s after the kill ({:.2} s after b took over); \
         continued {} of {CONNS}; dns {}",
        first - kill,
        first - b_master,
        r.continued(),
        r.v["dns"]
    );
    assert!(
        first - b_master <= 3.0 * ADVERT.as_secs_f64(),
        "new conns only {:.2} s after b took over",
        first - b_master
    );
    let late = r.probes_failed_between(b_master + 3.0 * ADVERT.as_secs_f64(), a_master - 1.0);
    assert!(late.is_empty(), "new conns failed on b at {late:?}");
    let late = r.probes_failed_between(a_master + 1.0, f64::MAX);
    assert!(
        late.is_empty(),
        "new conns failed after a took back at {late:?}"
    );
    // DNS over UDP: queries go unanswered only around the two changes.
    let dns_late: Vec<f64> = r.v["dns"]["failed_at"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .filter(|&t| !(kill - 1.0..b_master + 3.0).contains(&t))
        .filter(|&t| !(a_master - 2.0..a_master + 1.0).contains(&t))
        .collect();
    assert!(
        dns_late.is_empty(),
        "DNS unanswered outside the failovers at {dns_late:?}"
    );

    // GARPs on the LAN: b's for every floating address after the kill, a's after it took
    // them back.
    let garps = gratuitous_arps(&arp.stop());
    let floating: Vec<[u8; 4]> = match mode {
        "proxy" => vec![[10, 20, 0, 100], [10, 20, 0, 50]],
        "gateway" => vec![[10, 20, 0, 100], [10, 20, 1, 1]],
        _ => vec![[10, 20, 0, 100]],
    };
    for ip in &floating {
        for (who, mac) in [("b", mac_b), ("a", mac_a)] {
            assert!(
                garps.contains(&(mac, *ip)),
                "no GARP for {ip:?} from {who} ({mac:02x?}); seen {garps:02x?}"
            );
        }
    }

    // What an operator sees on the new active: the role, the peer, the sync, the failover.
    let ha = a.ha();
    assert_eq!(ha["role"], "master", "{ha}");
    assert_eq!(ha["peer"]["up"], true, "{ha}");
    assert_eq!(ha["peer"]["role"], "backup", "{ha}");
    assert!(ha["records_sent"].as_u64().unwrap() > 0, "{ha}");
    assert!(ha["last_failover"].as_u64().is_some(), "{ha}");
    assert!(ha["sync_lag_ms"].as_u64().is_some(), "{ha}");
    let m = a.metrics();
    for name in [
        "switchyard_ha_role",
        "switchyard_ha_ready",
        "switchyard_ha_peer_up",
        "switchyard_ha_sync_lag_milliseconds",
        "switchyard_ha_sync_records",
        "switchyard_ha_last_failover_timestamp_seconds",
    ] {
        assert!(m.contains(name), "metric {name} missing");
    }
    let st = a.exec(&[common::bin(), "ctl", "--api", "127.0.0.1:9100", "status"]);
    let st = String::from_utf8_lossy(&st.stdout);
    assert!(
        st.contains("ha: role master") && st.contains("peer 10.20.0.20"),
        "{st}"
    );
}

#[test]
fn proxy_pair_loses_no_session_on_node_loss_and_return() {
    node_loss_and_return("proxy", "hp");
}

#[test]
fn dsr_pair_loses_no_session_on_node_loss_and_return() {
    node_loss_and_return("dsr", "hd");
}

#[test]
fn gateway_pair_loses_no_session_on_node_loss_and_return() {
    node_loss_and_return("gateway", "hg");
}

/// keepalived, not Switchyard, stops on the active: the same outcome as a node loss. Without
/// preempt the old active, back, stays backup. The backup wedged (SIGSTOP): its track_script
/// fails and keepalived takes it out (FAULT) until it runs again.
#[test]
fn keepalived_stop_nopreempt_and_wedged_backup() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up_pair(&prefix("hk"), "proxy");
    let (mut a, b) = pair_up(&lab, true);
    let hold = Hold::start(&lab, CONNS, 22);
    std::thread::sleep(Duration::from_secs(3));

    hold.mark(); // 0: keepalived stops on a
    a.stop_keepalived();
    let took = wait_master(&b, &a, Duration::from_secs(10));
    hold.mark(); // 1
    eprintln!("keepalived stopped on a: b master {took:?} later");
    let ok = wait_until(Duration::from_secs(3), || a.role() == "backup");
    assert!(ok, "a still {} with keepalived stopped", a.role());

    // Back, without preempt: a stays backup.
    std::thread::sleep(Duration::from_secs(2));
    a.start_keepalived();
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        (a.role().as_str(), b.role().as_str()),
        ("backup", "master"),
        "nopreempt: a took the VIPs back\n{}{}",
        a.logs(),
        b.logs()
    );
    assert!(a.keepalived_log().contains("Entering BACKUP STATE"));

    // a (the backup now) wedges: keepalived puts it in FAULT. b stays master throughout
    // (what a's keepalived queued while a stood still is not sent when it runs again).
    let b_failovers = b.ha()["failovers"].clone();
    a.signal("-STOP");
    let ok = wait_until(Duration::from_secs(10), || {
        a.keepalived_log().contains("Entering FAULT STATE")
    });
    a.signal("-CONT");
    assert!(
        ok,
        "track_script never demoted the wedged backup\n{}",
        a.logs()
    );
    let ok = wait_until(Duration::from_secs(10), || {
        a.keepalived_log()
            .rsplit("Entering FAULT STATE")
            .next()
            .is_some_and(|after| after.contains("Entering BACKUP STATE"))
    });
    assert!(ok, "a never left FAULT once running again\n{}", a.logs());
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(b.role(), "master", "\n{}{}", a.logs(), b.logs());
    assert_eq!(
        b.ha()["failovers"],
        b_failovers,
        "b lost the VIPs while a was wedged"
    );
    let st = a.status().unwrap_or_default();
    eprintln!(
        "a after the wedge: stale frames from the kernel dropped: {}",
        st["counters"]["drop_stale_from_kernel"]
    );

    let r = Report { v: hold.finish() };
    let (stop, b_master) = (r.mark(0), r.mark(1));
    assert_eq!(r.opened(), CONNS, "{}", r.failures());
    assert!(r.continued() * 100 >= CONNS * 99, "{}", r.failures());
    let first = r
        .first_new_conn_after(stop)
        .expect("no new conn after the stop");
    eprintln!(
        "keepalived stop: new conns again {:.2} s after it ({:.2} s after b took over); continued {}",
        first - stop,
        first - b_master,
        r.continued()
    );
    assert!(first - stop <= 3.0 * ADVERT.as_secs_f64());
}
