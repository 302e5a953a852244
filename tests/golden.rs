//! Golden tests: frames read from pcap files by DPDK's `net_pcap` vdev through the real binary;
//! what it transmits is compared byte for byte with frames built independently by
//! `tests/data/gen_golden.py` (timestamps ignored), and every drop is checked by reason.

mod common;

use common::*;

const COMMON: &str = r#"
[dpdk]
eal_args = ["--no-huge", "-m", "256", "--no-pci", "--file-prefix", "PREFIX",
            "--vdev=net_pcap0,rx_pcap=INPUT,tx_pcap=OUTPUT"]
mbufs = 2047
[cores]
management = 0
workers = [1]
idle_sleep_us = 100
[flows]
capacity_per_core = 1024
[api]
listen = ""
[[interfaces]]
name = "lan"
port = "net_pcap0"
address = "10.20.0.10/24"
mac = "02:00:00:00:00:10"
exception_path = false
SECONDARY
[[neighbours]]
address = "10.20.0.1"
mac = "02:00:00:00:00:01"
"#;

const DSR: &str = r#"
[[neighbours]]
address = "10.20.0.11"
mac = "02:00:00:00:00:11"
[[neighbours]]
address = "10.20.0.12"
mac = "02:00:00:00:00:12"
[[services]]
name = "web"
vip = "10.20.0.100"
port = 80
protocol = "tcp"
mode = "dsr"
  [[services.backends]]
  address = "10.20.0.11"
[[services]]
name = "dns"
vip = "10.20.0.100"
port = 53
protocol = "udp"
mode = "dsr"
  [[services.backends]]
  address = "10.20.0.12"
"#;

const PROXY: &str = r#"
[[routes]]
prefix = "0.0.0.0/0"
via = "10.20.0.1"
[[neighbours]]
address = "10.20.0.11"
mac = "02:00:00:00:00:11"
[[services]]
name = "web"
vip = "10.20.0.100"
port = 80
protocol = "tcp"
mode = "proxy"
scheduler = "round_robin"
  [[services.backends]]
  address = "10.20.0.11"
  port = 8080
[[services]]
name = "dns"
vip = "10.20.0.100"
port = 53
protocol = "udp"
mode = "proxy"
scheduler = "least_connections"
  [[services.backends]]
  address = "10.20.0.11"
"#;

const GATEWAY: &str = r#"
[[routes]]
prefix = "0.0.0.0/0"
via = "10.20.0.1"
[[neighbours]]
address = "10.20.1.11"
mac = "02:00:00:00:00:11"
[[services]]
name = "web"
vip = "10.20.0.100"
port = 80
protocol = "tcp"
mode = "gateway"
  [[services.backends]]
  address = "10.20.1.11"
[[services]]
name = "dns"
vip = "10.20.0.100"
port = 53
protocol = "udp"
mode = "gateway"
scheduler = "weighted_round_robin"
  [[services.backends]]
  address = "10.20.1.11"
"#;

/// Replays `input` through switchyard and returns (frames sent, total counters).
fn replay(name: &str, input: &str, mode: &str) -> (Vec<Vec<u8>>, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.pcap");
    let stats = dir.path().join("stats.json");
    let (services, secondary) = match mode {
        "dsr" => (DSR, ""),
        "proxy" => (PROXY, ""),
        _ => (GATEWAY, "secondary_addresses = [\"10.20.1.1/24\"]"),
    };
    let cfg = format!("{COMMON}{services}")
        .replace("SECONDARY", secondary)
        .replace(
            "PREFIX",
            &format!("sy-golden-{name}-{}", std::process::id()),
        )
        .replace("INPUT", data(input).to_str().unwrap())
        .replace("OUTPUT", out.to_str().unwrap());
    let cfg_path = dir.path().join("golden.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let o = switchyard(&[
        "run",
        "--config",
        cfg_path.to_str().unwrap(),
        "--stats-json",
        stats.to_str().unwrap(),
        "--stop-after-idle-ms",
        "400",
    ]);
    assert!(
        o.status.success(),
        "switchyard failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    (pcap_frames(&out), totals(&stats))
}

#[test]
fn dsr_golden_frames_match_byte_for_byte() {
    let (got, t) = replay("dsr", "dsr_in.pcap", "dsr");
    let want = pcap_frames(&data("dsr_expected.pcap"));
    assert_eq!(got.len(), want.len(), "frame count; got {got:02x?}");
    // Order: gratuitous ARP for the VIP, ARP replies (VIP, own address), ICMP echo replies
    // (VIP, own address), DSR rewrites of a TCP SYN, a TCP data segment, a UDP datagram and
    // the first fragment of a UDP datagram.
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(g == w, "frame {i}: {}", diff(g, w));
    }
    assert_eq!(t["generated"], 1, "one gratuitous ARP");
    assert_eq!(t["replied"], 4);
    assert_eq!(t["forwarded"], 4);
    assert_eq!(t["tx_packets"], 9);
    assert_eq!(
        t["flows_created"], 2,
        "SYN+ACK share one flow; the UDP datagram and the fragmented one (same ports) another"
    );
}

#[test]
fn dsr_golden_drops_are_counted_by_reason() {
    let (_, t) = replay("drops", "dsr_in.pcap", "dsr");
    for reason in [
        "bad_ipv4_header",
        "bad_ipv4_checksum",
        "bad_ipv4_length",
        "truncated_ethernet",
        "truncated_ipv4",
        "truncated_l4",
        "no_service",
        "not_for_us",
        "unsupported_ethertype",
        "arp_not_for_us",
        "vlan_mismatch",
        "fragment",
        "bad_icmp_checksum",
        "local_not_handled",
    ] {
        assert_eq!(t[format!("drop_{reason}")], 1, "drop_{reason}");
    }
    // Invariant: every received frame has exactly one verdict.
    let n = |k: &str| t[k].as_u64().unwrap();
    let drops: u64 = t
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("drop_") && *k != "drop_tx_full")
        .map(|(_, v)| v.as_u64().unwrap())
        .sum();
    assert_eq!(n("rx_packets"), 22);
    assert_eq!(
        n("rx_packets"),
        n("forwarded") + n("replied") + n("consumed") + drops
    );
    assert_eq!(
        n("tx_packets") + n("drop_tx_full"),
        n("forwarded") + n("replied") + n("generated")
    );
}

fn assert_golden(mode: &str) -> serde_json::Value {
    let (got, t) = replay(mode, &format!("{mode}_in.pcap"), mode);
    let want = pcap_frames(&data(&format!("{mode}_expected.pcap")));
    assert_eq!(got.len(), want.len(), "{mode}: frame count; got {got:02x?}");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(g == w, "{mode} frame {i}: {}", diff(g, w));
    }
    t
}

/// Proxy: SYN, SYN-ACK, data, FIN, UDP both ways, an inbound packet-too-big and an outbound
/// port-unreachable translated (outer and quoted headers), first and later fragment; every
/// checksum as scapy computes it from scratch.
#[test]
fn proxy_golden_frames_match_byte_for_byte() {
    let t = assert_golden("proxy");
    assert_eq!(
        t["drop_fragment_no_flow"], 1,
        "a later fragment without its first"
    );
    assert_eq!(
        t["drop_local_not_handled"], 1,
        "TCP to a local port no conn holds"
    );
    assert_eq!(t["flows_created"], 3);
}

/// Gateway: DNAT in, reverse NAT out, server-originated traffic routed, TTL expiry answered
/// with ICMP time exceeded, the backend's port unreachable translated, fragments.
#[test]
fn gateway_golden_frames_match_byte_for_byte() {
    let t = assert_golden("gateway");
    assert_eq!(t["routed"], 1);
    assert_eq!(t["icmp_sent"], 1);
}
