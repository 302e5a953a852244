//! Golden tests: frames read from pcap files by DPDK's `net_pcap` vdev through the real binary;
//! what it transmits is compared byte for byte with frames built independently by
//! `tests/data/gen_golden.py` (timestamps ignored), and every drop is checked by reason.
//! The configuration is the shared test configuration with each case's backends.

mod common;

use std::net::Ipv4Addr;

use common::*;
use switchyard::config::{BackendConfig, Config, Mode, Scheduler};
use switchyard::testkit;

/// The test configuration (switchyard::testkit) as each golden case needs it: the topology
/// tests/data/gen_golden.py built the expected frames for.
fn golden_config(mode: Mode) -> Config {
    let mut c = testkit::config(mode);
    match mode {
        // tcp/80 -> 10.20.0.11, udp/53 -> 10.20.0.12, both on the LAN.
        Mode::Dsr => {
            let (b1, b2) = (Ipv4Addr::new(10, 20, 0, 11), Ipv4Addr::new(10, 20, 0, 12));
            c.services[0].backends = vec![testkit::backend(b1)];
            c.services[1].backends = vec![testkit::backend(b2)];
            testkit::add_neighbour(&mut c, b1, testkit::B1_MAC);
            testkit::add_neighbour(&mut c, b2, testkit::B2_MAC);
        }
        // Both to 10.20.0.11, tcp translated to port 8080; SNAT to the interface address.
        Mode::Proxy => {
            let b1 = Ipv4Addr::new(10, 20, 0, 11);
            c.services[0].scheduler = Scheduler::RoundRobin;
            c.services[0].backends = vec![BackendConfig {
                port: Some(8080),
                ..testkit::backend(b1)
            }];
            c.services[1].scheduler = Scheduler::LeastConnections;
            c.services[1].backends = vec![testkit::backend(b1)];
            testkit::add_neighbour(&mut c, b1, testkit::B1_MAC);
        }
        // Both to 10.20.1.11 behind the balancer (its 10.20.1.1 is their gateway).
        Mode::Gateway => {
            c.services[0].backends.truncate(1);
            c.services[1].scheduler = Scheduler::WeightedRoundRobin;
        }
    }
    c
}

/// Replays `input` through switchyard and returns (frames sent, total counters).
fn replay(name: &str, input: &str, mode: Mode) -> (Vec<Vec<u8>>, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.pcap");
    let stats = dir.path().join("stats.json");
    let mut cfg = golden_config(mode);
    cfg.dpdk.eal_args.extend([
        "--file-prefix".to_string(),
        format!("sy-golden-{name}-{}", std::process::id()),
        format!(
            "--vdev=net_pcap0,rx_pcap={},tx_pcap={}",
            data(input).display(),
            out.display()
        ),
    ]);
    let cfg_path = dir.path().join("golden.toml");
    std::fs::write(&cfg_path, testkit::to_toml(&cfg)).unwrap();
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
    let (got, t) = replay("dsr", "dsr_in.pcap", Mode::Dsr);
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
    let (_, t) = replay("drops", "dsr_in.pcap", Mode::Dsr);
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

fn assert_golden(mode: Mode) -> serde_json::Value {
    let (got, t) = replay(mode.name(), &format!("{mode}_in.pcap"), mode);
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
    let t = assert_golden(Mode::Proxy);
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
    let t = assert_golden(Mode::Gateway);
    assert_eq!(t["routed"], 1);
    assert_eq!(t["icmp_sent"], 1);
}
