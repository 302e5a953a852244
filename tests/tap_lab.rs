//! The proxy lab on DPDK's `net_tap` instead of `net_af_packet` (whose socket asks the kernel
//! to reassemble IP fragments before the balancer sees them): a bridge in the root namespace
//! joins the tap to the lab's LAN. UDP datagrams larger than the MTU cross the balancer as
//! fragments both ways (a UDP echo service on every backend); then `kill -9` and a restart
//! serve again within 5 s with nothing left behind. Needs root; one lab at a time.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::lab::*;

/// A UDP echo server (the backends' side of the fragment test).
const ECHO_SERVER: &str = "import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', 7))
while True:
    d, a = s.recvfrom(65535)
    s.sendto(d, a)";

/// Sends 20 datagrams of 3000 bytes to VIP:7 and prints how many came back whole.
const ECHO_CLIENT: &str = "import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
ok = 0
for i in range(20):
    d = os.urandom(3000)
    for _ in range(3):
        s.sendto(d, (sys.argv[1], 7))
        try:
            if s.recv(65535) == d:
                ok += 1
                break
        except socket.timeout:
            pass
print(ok)";

const ECHO_SERVICE: &str = r#"
[[services]]
name = "echo"
vip = "10.20.0.100"
port = 7
protocol = "udp"
mode = "proxy"
scheduler = "round_robin"
  [[services.backends]]
  address = "10.20.0.11"
  [[services.backends]]
  address = "10.20.0.12"
"#;

#[test]
fn fragments_cross_the_balancer_on_net_tap_and_kill_9_restart_serves_within_5_s() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up(&format!("ft{}", std::process::id() % 1000), "proxy");
    let _servers = Children(
        ["b1", "b2"]
            .iter()
            .map(|b| lab.spawn_in(b, &["python3", "-c", ECHO_SERVER]))
            .collect(),
    );
    let tap = format!("{}t", lab.prefix);
    let cfg = lab
        .config("lab-proxy.toml")
        .replace(
            &format!("--vdev=net_af_packet0,iface={},framecnt=4096", lab.port),
            &format!("--vdev=net_tap0,iface={tap}"),
        )
        .replace("port = \"net_af_packet0\"", "port = \"net_tap0\"")
        + ECHO_SERVICE;
    // The whole vdev replaced: net_tap refuses net_af_packet's arguments (framecnt) and makes
    // a `dtap0` of its own instead.
    assert!(
        cfg.contains(&format!("\"--vdev=net_tap0,iface={tap}\"")),
        "{cfg}"
    );
    let bridge = Bridge::new(&format!("{}rb", lab.prefix), &lab.port);
    let mut lb = Balancer::start(&cfg);
    bridge.attach(&tap);
    lab.wait_for_vip();

    let o = lab.exec("client", &["python3", "-c", ECHO_CLIENT, VIP]);
    let echoed: usize = String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert_eq!(
        echoed, 20,
        "3000-byte datagrams echoed whole through the VIP"
    );
    // The balancer itself handled fragments (3 per datagram each way), not a kernel.
    let stats = lb.finish();
    let frags = stats["fragments"].as_u64().unwrap_or(0);
    assert!(frags >= 20 * 3 * 2, "fragments seen: {frags}; {stats}");
    assert_eq!(stats["drop_fragment_no_flow"].as_u64(), Some(0), "{stats}");
    eprintln!("fragments handled: {frags}");

    // kill -9, then a restart: the tap goes with the process, and the new one serves within
    // 5 s of the kill.
    let mut lb = Balancer::start(&cfg);
    bridge.attach(&tap);
    lab.wait_for_vip();
    drop(lb); // SIGKILL and reaped
    let killed = Instant::now();
    let t = Instant::now();
    while Path::new(&format!("/sys/class/net/{tap}")).exists() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{tap} left after kill -9"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    lb = Balancer::start(&cfg);
    bridge.attach(&tap);
    let url = format!("http://{VIP}/");
    let curl = || exec_in(&lab.ns("client"), &["curl", "-s", "-m", "1", &url]);
    while !curl().status.success() {
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "not serving 5 s after kill -9"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let back = killed.elapsed();
    eprintln!("serving again {back:?} after kill -9");
    let _ = lb.finish();
}
