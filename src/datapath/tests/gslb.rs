//! GSLB DNS on the workers: UDP A queries for configured names to a DNS address answered in
//! place from the snapshot's table (each policy's turn, the client's region), everything
//! else to a DNS address handed to the kernel side, what is not DNS dropped and counted.

use std::net::Ipv4Addr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use smoltcp::wire::{IpAddress, Ipv4Packet, UdpPacket};

use super::*;
use crate::config::{Config, GslbConfig};
use crate::datapath::Datapath;
use crate::gslb::{Candidate, Table};
use crate::lb::Snapshot;
use crate::stats::Ctr;
use crate::types::{DropReason, IfIdx, PacketBuf, Verdict};
use crate::wire::{ETH_HDR, PROTO_TCP, PROTO_UDP, parse_ipv4};

/// The DNS address, and a peer site's VIP.
const DNS: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 53);
const EAST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// A resolver of region us (CLIENT is of eu), and one of no region.
const US: Ipv4Addr = Ipv4Addr::new(10, 30, 1, 1);
const NOWHERE: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);

const WWW: &str = "www.g.example.com";
const GEO: &str = "geo.g.example.com";
const DOWN: &str = "down.g.example.com";
/// 251 characters: its 16 A records do not fit in 512 bytes.
fn long_name() -> String {
    format!(
        "{}.{}.{}.{}.g.example.com",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(45)
    )
}

/// The `[gslb]` of these tests: the test configuration's (tests/data/gslb.toml: `www`
/// weighted 3:1 between the local `web` and east, `geo` by region (eu: local, us: east),
/// `down` (nothing up, SERVFAIL)) and the long name (16 peer VIPs, nothing up, every VIP
/// answered).
fn gslb() -> GslbConfig {
    let mut long = format!(
        "[[names]]\nname = \"{}\"\npolicy = \"weighted\"\nwhen_down = \"all\"\n",
        long_name()
    );
    for i in 1..=16 {
        long += &format!(
            "[[names.answers]]\nsite = \"east\"\nservice = \"s{i}\"\nvip = \"192.0.2.{i}\"\n"
        );
    }
    let mut g = crate::testkit::gslb();
    let extra: GslbConfig = toml::from_str(&format!(
        "zone = \"g.example.com\"\ndns_addresses = []\n{long}"
    ))
    .unwrap_or_else(|e| panic!("test [gslb]: {e}"));
    g.names.extend(extra.names);
    g
}

/// The test configuration (DSR) with the exception path and [`gslb`].
fn gslb_config() -> Config {
    let mut c = config(Mode::Dsr);
    c.interfaces[0].exception_path = true;
    c.gslb = Some(gslb());
    c
}

/// The snapshot of `c` with its GSLB table as management builds it: `www` and `geo` up,
/// the other names down.
fn gslb_snapshot(c: &Config) -> Arc<Snapshot> {
    let mut snap = snapshot(c);
    let g = c.gslb.as_ref().expect("a [gslb]");
    let t = Table::build(
        g,
        |svc| c.services.iter().find(|s| s.name == svc).map(|s| s.vip),
        |name, _| Candidate {
            up: name < 2,
            load: 0.0,
        },
    );
    Arc::get_mut(&mut snap).expect("not shared yet").gslb = Some(Arc::new(t));
    snap
}

fn dns_datapath() -> Datapath {
    datapath_on(&gslb_snapshot(&gslb_config()), 1024, 1, 0).0
}

/// A query for `name` of `rtype`, id 0x5a5a, RD set, with an OPT record if `edns`.
fn query(name: &str, rtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new(0x5a5a, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(
        Name::from_ascii(format!("{name}.")).unwrap(),
        rtype,
    ));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

/// Router -> balancer: UDP `src`:40053 -> `dst`:`dport` carrying `payload`, checksums valid.
fn udp(src: Ipv4Addr, dst: Ipv4Addr, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 8 + payload.len()];
    f[0..6].copy_from_slice(&LB_MAC);
    f[6..12].copy_from_slice(&ROUTER_MAC);
    f[12] = 8;
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
        ip.set_version(4);
        ip.set_header_len(20);
        ip.set_total_len((20 + 8 + payload.len()) as u16);
        ip.set_hop_limit(60);
        ip.set_next_header(PROTO_UDP.into());
        ip.set_src_addr(src);
        ip.set_dst_addr(dst);
        ip.fill_checksum();
    }
    let mut u = UdpPacket::new_unchecked(&mut f[34..]);
    u.set_src_port(40053);
    u.set_dst_port(dport);
    u.set_len((8 + payload.len()) as u16);
    u.payload_mut().copy_from_slice(payload);
    u.fill_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst));
    f
}

/// Sends `f` from the LAN; the verdict.
fn send(d: &mut Datapath, f: &mut Vec<u8>) -> Verdict {
    d.process(f, IfIdx(0), 0, false)
}

/// The DNS answer in the reply frame `f` to a query from `client`, its frame checked on
/// the way (MACs, addresses and ports swapped, checksums).
fn reply(f: &[u8], client: Ipv4Addr) -> Message {
    assert_eq!(f[0..6], ROUTER_MAC, "to the query's sender");
    assert_eq!(f[6..12], LB_MAC);
    let ip = parse_ipv4(f, ETH_HDR).expect("a valid IPv4 header");
    assert_eq!((ip.src, ip.dst, ip.end), (DNS, client, f.len()));
    assert!(l4_checksum_ok(f), "UDP checksum");
    let (src, sport, dst, dport) = tuple(f);
    assert_eq!((src, sport, dst, dport), (DNS, 53, client, 40053));
    Message::from_vec(&f[ip.l4 + 8..]).unwrap_or_else(|e| panic!("answer unreadable: {e}"))
}

/// The A addresses of an answer to `name`.
fn addresses(m: &Message, name: &str) -> Vec<Ipv4Addr> {
    assert_eq!(m.metadata.id, 0x5a5a);
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert!(m.metadata.authoritative && m.metadata.recursion_desired);
    m.answers
        .iter()
        .map(|r| {
            assert_eq!(r.name.to_ascii().to_ascii_lowercase(), format!("{name}."));
            match &r.data {
                RData::A(a) => a.0,
                other => panic!("not A: {other:?}"),
            }
        })
        .collect()
}

/// The one address `d` answers `client` for `name`.
fn ask(d: &mut Datapath, client: Ipv4Addr, name: &str) -> Ipv4Addr {
    let mut f = udp(client, DNS, 53, &query(name, RecordType::A, None));
    assert_eq!(send(d, &mut f), Verdict::Reply, "{client} {name}");
    let a = addresses(&reply(&f, client), name);
    assert_eq!(a.len(), 1, "{a:?}");
    a[0]
}

#[test]
fn an_a_query_for_a_configured_name_is_answered_by_the_worker() {
    let mut d = dns_datapath();
    let mut f = udp(CLIENT, DNS, 53, &query(WWW, RecordType::A, None));
    assert_eq!(send(&mut d, &mut f), Verdict::Reply);
    let m = reply(&f, CLIENT);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.queries[0].name().to_ascii(), format!("{WWW}."));
    assert_eq!(m.queries[0].query_type(), RecordType::A);
    assert_eq!(addresses(&m, WWW), vec![VIP]);
    assert_eq!(m.answers[0].ttl, 20);
    assert!(m.edns.is_none());
    assert_eq!(d.ctr.get(Ctr::DnsAnswered), 1);
    assert_eq!(d.ctr.get(Ctr::Replied), 1);
    assert_eq!(d.ctr.get(Ctr::DnsToKernel), 0);
    assert_eq!(d.svc_ctr.names[..4], [1, 0, 0, 0]);
    d.publish();
    assert_eq!(d.ctr.check_invariants_rx(), Ok(()));
}

#[test]
fn the_question_is_answered_as_asked_and_edns_with_edns() {
    let mut d = dns_datapath();
    let asked = "WwW.G.eXample.COM";
    let mut f = udp(CLIENT, DNS, 53, &query(asked, RecordType::A, Some(4096)));
    assert_eq!(send(&mut d, &mut f), Verdict::Reply);
    let m = reply(&f, CLIENT);
    assert_eq!(m.queries[0].name().to_ascii(), format!("{asked}."));
    assert_eq!(m.answers[0].name.to_ascii(), format!("{asked}."));
    assert_eq!(addresses(&m, WWW).len(), 1);
    assert_eq!(m.edns.as_ref().map(|e| e.max_payload()), Some(1232));
}

#[test]
fn weighted_answers_spread_three_to_one_over_queries() {
    let mut d = dns_datapath();
    let got: Vec<Ipv4Addr> = (0..400).map(|_| ask(&mut d, CLIENT, WWW)).collect();
    assert_eq!(got.iter().filter(|a| **a == VIP).count(), 300);
    assert_eq!(got.iter().filter(|a| **a == EAST).count(), 100);
    // Spread, not in runs: every 4 consecutive answers have one east.
    for w in got.chunks(4) {
        assert_eq!(w.iter().filter(|a| **a == EAST).count(), 1, "{w:?}");
    }
    assert_eq!(d.svc_ctr.names[0], 400);
    assert_eq!(d.ctr.get(Ctr::DnsAnswered), 400);
}

#[test]
fn region_answers_follow_the_resolvers_address() {
    let mut d = dns_datapath();
    for _ in 0..10 {
        assert_eq!(ask(&mut d, CLIENT, GEO), VIP, "eu");
        assert_eq!(ask(&mut d, US, GEO), EAST, "us");
    }
    // No region: the fallback (weighted, 1:1) over both.
    let rest: Vec<Ipv4Addr> = (0..10).map(|_| ask(&mut d, NOWHERE, GEO)).collect();
    assert_eq!(rest.iter().filter(|a| **a == VIP).count(), 5, "{rest:?}");
    assert_eq!(d.svc_ctr.names[1], 30);
}

#[test]
fn a_name_with_nothing_up_answers_its_when_down() {
    let mut d = dns_datapath();
    for edns in [None, Some(1232)] {
        let mut f = udp(CLIENT, DNS, 53, &query(DOWN, RecordType::A, edns));
        assert_eq!(send(&mut d, &mut f), Verdict::Reply);
        let m = reply(&f, CLIENT);
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        assert!(m.answers.is_empty());
    }
    assert_eq!(d.svc_ctr.names[2], 2);
}

#[test]
fn an_answer_too_large_for_the_client_goes_to_the_kernel() {
    let mut d = dns_datapath();
    let long = long_name();
    // 16 A records: 525 bytes, more than 512 without EDNS.
    let q = query(&long, RecordType::A, None);
    let mut f = udp(CLIENT, DNS, 53, &q);
    let before = f.clone();
    assert_eq!(send(&mut d, &mut f), Verdict::ToKernel);
    assert_eq!(f, before, "left as it came");
    assert_eq!(d.ctr.get(Ctr::DnsToKernel), 1);
    // With EDNS it fits.
    let mut f = udp(CLIENT, DNS, 53, &query(&long, RecordType::A, Some(1232)));
    assert_eq!(send(&mut d, &mut f), Verdict::Reply);
    let m = reply(&f, CLIENT);
    let want: Vec<Ipv4Addr> = (1..=16).map(|i| Ipv4Addr::new(192, 0, 2, i)).collect();
    assert_eq!(addresses(&m, &long), want);
    assert_eq!(d.svc_ctr.names[3], 1);
}

#[test]
fn other_traffic_to_a_dns_address_goes_to_the_kernel() {
    let mut d = dns_datapath();
    let www = query(WWW, RecordType::A, None);
    let two_questions = {
        let mut m = Message::new(7, MessageType::Query, OpCode::Query);
        let n = Name::from_ascii(format!("{WWW}.")).unwrap();
        m.add_query(Query::query(n.clone(), RecordType::A));
        m.add_query(Query::query(n, RecordType::AAAA));
        m.to_vec().unwrap()
    };
    let mut edns1 = query(WWW, RecordType::A, Some(1232));
    let v = edns1.len() - 5; // the OPT's TTL: extended rcode, version, flags
    edns1[v] = 1;
    let mut fragment = udp(CLIENT, DNS, 53, &www);
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut fragment[14..]);
        ip.set_more_frags(true);
        ip.fill_checksum();
    }
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "AAAA",
            udp(CLIENT, DNS, 53, &query(WWW, RecordType::AAAA, None)),
        ),
        (
            "MX",
            udp(CLIENT, DNS, 53, &query(WWW, RecordType::MX, None)),
        ),
        (
            "NS of the zone",
            udp(
                CLIENT,
                DNS,
                53,
                &query("g.example.com", RecordType::NS, None),
            ),
        ),
        (
            "SOA",
            udp(
                CLIENT,
                DNS,
                53,
                &query("g.example.com", RecordType::SOA, None),
            ),
        ),
        (
            "unknown name",
            udp(
                CLIENT,
                DNS,
                53,
                &query("nope.g.example.com", RecordType::A, None),
            ),
        ),
        (
            "below a name",
            udp(
                CLIENT,
                DNS,
                53,
                &query("x.www.g.example.com", RecordType::A, None),
            ),
        ),
        (
            "a name server's address",
            udp(
                CLIENT,
                DNS,
                53,
                &query("ns1.g.example.com", RecordType::A, None),
            ),
        ),
        ("two questions", udp(CLIENT, DNS, 53, &two_questions)),
        ("EDNS version 1", udp(CLIENT, DNS, 53, &edns1)),
        ("another port", udp(CLIENT, DNS, 5353, &www)),
        (
            "garbage to another port",
            udp(CLIENT, DNS, 5353, &[0xff; 3]),
        ),
        ("first fragment", fragment),
        ("TCP to 53", pkt(CLIENT, DNS, 40053, 53, PROTO_TCP, SYN)),
        ("TCP to 80", pkt(CLIENT, DNS, 40053, 80, PROTO_TCP, SYN)),
    ];
    let n = cases.len() as u64;
    for (what, mut f) in cases {
        let before = f.clone();
        assert_eq!(send(&mut d, &mut f), Verdict::ToKernel, "{what}");
        assert_eq!(f, before, "{what}: left as it came");
    }
    assert_eq!(d.ctr.get(Ctr::DnsToKernel), n);
    assert_eq!(d.ctr.get(Ctr::ToKernel), n);
    assert_eq!(d.ctr.get(Ctr::DnsAnswered), 0);
    assert!(d.svc_ctr.names.iter().all(|c| *c == 0));
    d.publish();
    assert_eq!(d.ctr.check_invariants_rx(), Ok(()));
}

#[test]
fn what_is_not_a_dns_query_is_dropped_as_malformed() {
    let mut d = dns_datapath();
    let mut response = query(WWW, RecordType::A, None);
    response[2] |= 0x80;
    let mut long_label = query(WWW, RecordType::A, None);
    long_label[12] = 64;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("4 bytes", pkt(CLIENT, DNS, 40053, 53, PROTO_UDP, 0)),
        ("empty", udp(CLIENT, DNS, 53, &[])),
        ("a response", udp(CLIENT, DNS, 53, &response)),
        ("a label of 64", udp(CLIENT, DNS, 53, &long_label)),
        ("cut in the question", {
            let q = query(WWW, RecordType::A, None);
            udp(CLIENT, DNS, 53, &q[..20])
        }),
    ];
    let n = cases.len() as u64;
    for (what, mut f) in cases {
        assert_eq!(
            send(&mut d, &mut f),
            Verdict::Drop(DropReason::DnsMalformed),
            "{what}"
        );
    }
    assert_eq!(d.ctr.dropped(DropReason::DnsMalformed), n);
    assert_eq!(d.ctr.get(Ctr::DnsToKernel) + d.ctr.get(Ctr::DnsAnswered), 0);
}

#[test]
fn without_the_exception_path_unusual_queries_are_dropped_and_a_queries_answered() {
    // The configuration requires the exception path with DNS addresses; a snapshot
    // without it still must not hand the kernel what it cannot take.
    let c = gslb_config();
    let mut snap = gslb_snapshot(&c);
    Arc::get_mut(&mut snap).unwrap().interfaces[0].exception = false;
    let (mut d, _) = datapath_on(&snap, 1024, 1, 0);
    let mut f = udp(CLIENT, DNS, 53, &query(WWW, RecordType::AAAA, None));
    assert_eq!(
        send(&mut d, &mut f),
        Verdict::Drop(DropReason::LocalNotHandled)
    );
    let mut f = pkt(CLIENT, DNS, 40053, 53, PROTO_TCP, SYN);
    assert_eq!(
        send(&mut d, &mut f),
        Verdict::Drop(DropReason::LocalNotHandled)
    );
    assert_eq!(ask(&mut d, CLIENT, WWW), VIP);
    let mut f = udp(CLIENT, DNS, 53, &[1, 2, 3]);
    assert_eq!(
        send(&mut d, &mut f),
        Verdict::Drop(DropReason::DnsMalformed)
    );
    assert_eq!(d.ctr.get(Ctr::DnsToKernel), 0);
    assert_eq!(d.ctr.get(Ctr::ToKernel), 0);
}

#[test]
fn without_a_table_queries_go_to_the_kernel() {
    // Before management's first table (the snapshot as `Snapshot::build` leaves it).
    let (mut d, _) = datapath(&gslb_config(), 1, 0);
    let mut f = udp(CLIENT, DNS, 53, &query(WWW, RecordType::A, None));
    assert_eq!(send(&mut d, &mut f), Verdict::ToKernel);
    assert_eq!(d.ctr.get(Ctr::DnsToKernel), 1);
}

#[test]
fn port_53_of_a_vip_is_still_balanced() {
    let mut d = dns_datapath();
    let mut f = udp(CLIENT, VIP, 53, &query(WWW, RecordType::A, None));
    assert_eq!(send(&mut d, &mut f), Verdict::Forward(IfIdx(0)));
    assert_eq!(dst(&f), VIP, "DSR: the VIP stays the destination");
    assert_eq!(f[0..6], [2, 0, 0, 0, 0, 0x11], "to backend 10.20.1.11");
    assert_eq!(d.ctr.get(Ctr::DnsAnswered), 0);
}

#[test]
fn every_worker_answers_its_own_queries() {
    let snap = gslb_snapshot(&gslb_config());
    for me in 0..4 {
        let (mut d, _) = datapath_on(&snap, 1024, 4, me);
        for client in [CLIENT, US, NOWHERE] {
            ask(&mut d, client, WWW);
        }
        assert_eq!(d.ctr.get(Ctr::DnsAnswered), 3, "worker {me}");
    }
}

/// Valid queries with their DNS bytes mutated: every one reaches the DNS path and gets
/// exactly one of its three outcomes, each counted; every answer is a valid frame.
#[test]
fn mutated_queries_to_a_dns_address_get_one_counted_outcome_each() {
    let mut d = dns_datapath();
    let mut next = xorshift(0x6515);
    let valid = [
        query(WWW, RecordType::A, None),
        query(GEO, RecordType::A, Some(1232)),
        query(DOWN, RecordType::A, None),
        query(&long_name(), RecordType::A, Some(600)),
    ];
    let n = 30_000u64;
    let mut replies = 0;
    for i in 0..n {
        let mut m = valid[i as usize % valid.len()].clone();
        for _ in 0..(1 + next() % 3) {
            let at = (next() as usize) % m.len();
            m[at] = if next().is_multiple_of(2) {
                m[at] ^ (1 << (next() % 8))
            } else {
                next() as u8
            };
        }
        if next().is_multiple_of(6) {
            let cut = (next() as usize) % m.len();
            m.truncate(cut);
        }
        let client = [CLIENT, US, NOWHERE][(next() % 3) as usize];
        let mut f = udp(client, DNS, 53, &m);
        match send(&mut d, &mut f) {
            Verdict::Reply => {
                replies += 1;
                let ip = parse_ipv4(&f, ETH_HDR).expect("a valid IPv4 header");
                assert_eq!((ip.src, ip.dst), (DNS, client));
                assert!(l4_checksum_ok(&f));
                let dns = &f.bytes()[ip.l4 + 8..];
                assert_eq!(dns[..2], m[..2], "id kept");
                assert_eq!(dns[2] & 0x84, 0x84, "QR and AA");
            }
            Verdict::ToKernel | Verdict::Drop(DropReason::DnsMalformed) => {}
            v => panic!("{v:?} for {m:?}"),
        }
    }
    assert!(replies > 1000, "{replies}");
    let c = &d.ctr;
    assert_eq!(c.get(Ctr::DnsAnswered), c.get(Ctr::Replied));
    assert_eq!(c.get(Ctr::DnsToKernel), c.get(Ctr::ToKernel));
    assert_eq!(
        c.get(Ctr::Replied) + c.get(Ctr::ToKernel) + c.dropped(DropReason::DnsMalformed),
        n
    );
    assert_eq!(d.svc_ctr.names.iter().sum::<u64>(), c.get(Ctr::DnsAnswered));
    d.publish();
    assert_eq!(d.ctr.check_invariants_rx(), Ok(()));
}

/// A name hickory-proto cannot encode (a label starting with '-') is refused by `check`, so no
/// worker ever holds an answer for it.
#[test]
fn a_name_with_a_leading_hyphen_is_refused_by_check() {
    let mut c = gslb_config();
    let g = c.gslb.as_mut().unwrap();
    let mut n = g.names[0].clone();
    n.name = "-x.g.example.com".into();
    g.names.push(n);
    let e = c.validate().expect_err("a '-x' label is not a DNS name");
    assert!(
        e.to_string()
            .contains("\"-x.g.example.com\" is not a DNS name"),
        "{e}"
    );
}
