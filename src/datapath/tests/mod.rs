//! The datapath's tests: frames through `Datapath::process` (and the fast lane), one file per
//! subject; the fixtures they share are below.

use std::net::Ipv4Addr;
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use smoltcp::wire::{IpAddress, Ipv4Packet, TcpPacket, UdpPacket};

use crate::channel::Event;
use crate::config::Config;
use crate::datapath::{Datapath, WorkerInfo};
use crate::lb::sched::BackendLoad;
use crate::lb::{BackendKey, BackendRuntime, IdRegistry, Snapshot};
use crate::wire::{ETH_HDR, PROTO_TCP, PROTO_UDP, parse_ipv4, parse_l4};

mod conns;
mod dsr;
mod fast_lane;
mod frag;
mod gateway;
mod local;
mod policy;
mod proxy;
mod robustness;

pub fn cfg_text(mode: &str, extra_service: &str) -> String {
    cfg(mode, extra_service, "")
}

pub fn datapath(snap: &Arc<Snapshot>) -> (Datapath, Arc<ArrayQueue<Event>>) {
    let ev = Arc::new(ArrayQueue::new(64));
    let info = WorkerInfo {
        index: 0,
        count: 1,
        flow_capacity: 1024,
        persist_capacity: 1024,
    };
    let mut d = Datapath::new(
        snap.clone(),
        info,
        ev.clone(),
        Arc::new(BackendLoad::new(1)),
    );
    for (ip, last) in [("10.20.1.11", 0x11), ("10.20.1.12", 0x12), ("10.20.0.1", 1)] {
        d.set_neighbour(ip.parse().unwrap(), Some([2, 0, 0, 0, 0, last]));
    }
    (d, ev)
}

pub fn parse_dst(f: &[u8]) -> Ipv4Addr {
    crate::wire::parse_ipv4(f, crate::wire::ETH_HDR)
        .unwrap()
        .dst
}

pub const LB: [u8; 6] = [2, 0, 0, 0, 0, 0x10];

const ROUTER: [u8; 6] = [2, 0, 0, 0, 0, 1];

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 20, 9, 2);

pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 100);

pub fn cfg(mode: &str, extra_service: &str, extra: &str) -> String {
    format!(
        r#"
[dpdk]
eal_args = []
[cores]
management = 0
workers = [1]
[flows]
capacity_per_core = 1024
{extra}
[[interfaces]]
name = "lan"
port = "p0"
address = "10.20.0.10/24"
secondary_addresses = ["10.20.1.1/24"]
[[routes]]
prefix = "0.0.0.0/0"
via = "10.20.0.1"
[[services]]
name = "web"
vip = "10.20.0.100"
port = 80
protocol = "tcp"
mode = "{mode}"
{extra_service}
  [[services.backends]]
  address = "10.20.1.11"
  [[services.backends]]
  address = "10.20.1.12"
[[services]]
name = "dns"
vip = "10.20.0.100"
port = 53
protocol = "udp"
mode = "{mode}"
  [[services.backends]]
  address = "10.20.1.11"
"#
    )
}

fn dp_with(text: &str, workers: usize, me: usize) -> (Datapath, Arc<ArrayQueue<Event>>) {
    let cfg = Config::from_toml(text).unwrap();
    let snap = Arc::new(Snapshot::build(&cfg, &[LB]).unwrap());
    let ev = Arc::new(ArrayQueue::new(64));
    let info = WorkerInfo {
        index: me,
        count: workers,
        flow_capacity: cfg.flows.capacity_per_core as usize,
        persist_capacity: 1024,
    };
    let mut d = Datapath::new(snap, info, ev.clone(), Arc::new(BackendLoad::new(workers)));
    for (ip, last) in [("10.20.1.11", 0x11), ("10.20.1.12", 0x12), ("10.20.0.1", 1)] {
        d.set_neighbour(ip.parse().unwrap(), Some([2, 0, 0, 0, 0, last]));
    }
    (d, ev)
}

fn dp(mode: &str) -> Datapath {
    dp_with(&cfg(mode, "", ""), 1, 0).0
}

/// Ethernet + IPv4 + TCP (flags byte) or UDP with valid checksums.
pub fn pkt(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    proto: u8,
    tcp_flags: u8,
) -> Vec<u8> {
    let l4len = if proto == PROTO_TCP { 20 } else { 8 + 4 };
    let mut f = vec![0u8; 14 + 20 + l4len];
    f[0..6].copy_from_slice(&LB);
    f[6..12].copy_from_slice(&ROUTER);
    f[12] = 8;
    let total = (20 + l4len) as u16;
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
        ip.set_version(4);
        ip.set_header_len(20);
        ip.set_total_len(total);
        ip.set_hop_limit(64);
        ip.set_next_header(proto.into());
        ip.set_src_addr(src);
        ip.set_dst_addr(dst);
        ip.fill_checksum();
    }
    let (s, d) = (IpAddress::Ipv4(src), IpAddress::Ipv4(dst));
    if proto == PROTO_TCP {
        let mut t = TcpPacket::new_unchecked(&mut f[34..]);
        t.set_src_port(sport);
        t.set_dst_port(dport);
        t.set_header_len(20);
        let raw = t.into_inner();
        raw[13] = tcp_flags;
        let mut t = TcpPacket::new_unchecked(&mut f[34..]);
        t.fill_checksum(&s, &d);
    } else {
        let mut u = UdpPacket::new_unchecked(&mut f[34..]);
        u.set_src_port(sport);
        u.set_dst_port(dport);
        u.set_len(12);
        u.fill_checksum(&s, &d);
    }
    f
}

pub const SYN: u8 = 0x02;

pub const ACK: u8 = 0x10;

pub(super) fn tuple(f: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    let ip = parse_ipv4(f, ETH_HDR).expect("valid IPv4 after rewrite");
    let l4 = parse_l4(f, &ip).unwrap();
    (ip.src, l4.src_port, ip.dst, l4.dst_port)
}

fn checksums_ok(f: &[u8]) -> bool {
    let ip = parse_ipv4(f, ETH_HDR).unwrap();
    let (s, d) = (IpAddress::Ipv4(ip.src), IpAddress::Ipv4(ip.dst));
    match ip.proto {
        PROTO_TCP => TcpPacket::new_checked(&f[ip.l4..ip.end])
            .unwrap()
            .verify_checksum(&s, &d),
        PROTO_UDP => UdpPacket::new_checked(&f[ip.l4..ip.end])
            .unwrap()
            .verify_checksum(&s, &d),
        _ => true,
    }
}

fn snap_with(text: &str, rt: &dyn Fn(&BackendKey) -> BackendRuntime) -> Arc<Snapshot> {
    let cfg = crate::config::Config::from_toml(text).unwrap();
    Arc::new(Snapshot::build_with(&cfg, &[LB], None, &mut IdRegistry::default(), rt).unwrap())
}
