//! The kernel side's DNS answers and the site exchange's signatures.

use std::net::Ipv4Addr;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use super::dns::Shared;
use super::exchange::{parse_report, poll_signature, report_signature};
use super::redirect::location;
use crate::config::GslbConfig;
use crate::gslb::{Candidate, Table};

/// The test configuration's `[gslb]` (tests/data/gslb.toml) with `extra_ns` more name
/// servers of long names (to make the apex's NS answer large).
fn gslb(extra_ns: usize) -> GslbConfig {
    let mut g = crate::testkit::gslb();
    for i in 0..extra_ns {
        g.nameservers.push(crate::config::NameServerConfig {
            name: format!("ns{i}-{}.example.net", "x".repeat(50)),
            address: None,
        });
    }
    g
}

fn shared(g: &GslbConfig, up: bool) -> Shared {
    let sh = Shared::new(g);
    let t = Table::build(
        g,
        |_| Some(Ipv4Addr::new(10, 20, 0, 100)),
        |_, a| Candidate {
            up: up && a == 0,
            load: 0.0,
        },
    );
    sh.set_table(Arc::new(t));
    sh
}

fn query(name: &str, t: RecordType, edns: Option<(u16, u8)>) -> Vec<u8> {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    if let Some((size, version)) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        e.set_version(version);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

fn ask(sh: &Shared, name: &str, t: RecordType, edns: Option<(u16, u8)>, tcp: bool) -> Message {
    let r = sh
        .respond(&query(name, t, edns), Ipv4Addr::new(10, 9, 9, 9), tcp)
        .expect("an answer");
    Message::from_vec(&r).expect("the answer parses")
}

#[test]
fn a_records_turn_by_weight_with_the_names_ttl() {
    let g = gslb(0);
    let sh = shared(&g, true);
    // Only the local candidate is up (the peer has not been polled up).
    for _ in 0..3 {
        let m = ask(&sh, "WWW.g.example.com.", RecordType::A, None, false);
        assert_eq!(m.metadata.id, 0x4242);
        assert!(m.metadata.authoritative && m.metadata.recursion_desired);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].ttl, 20);
        assert_eq!(
            m.answers[0].data,
            RData::A(Ipv4Addr::new(10, 20, 0, 100).into())
        );
    }
    assert_eq!(sh.name_queries(0), 3);
    assert_eq!(sh.last_answer(0).as_deref(), Some("10.20.0.100"));
}

#[test]
fn other_types_are_empty_noerror_with_the_soa() {
    let sh = shared(&gslb(0), true);
    let m = ask(&sh, "www.g.example.com.", RecordType::AAAA, None, false);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities.len(), 1);
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(m.authorities[0].ttl, 60);
}

#[test]
fn apex_answers_soa_and_ns_with_glue() {
    let sh = shared(&gslb(0), true);
    let m = ask(&sh, "g.example.com.", RecordType::SOA, None, false);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.answers[0].record_type(), RecordType::SOA);
    let m = ask(&sh, "g.example.com.", RecordType::NS, None, false);
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.additionals.len(), 1, "the in-zone name server's address");
    let m = ask(&sh, "ns1.g.example.com.", RecordType::A, None, false);
    assert_eq!(
        m.answers[0].data,
        RData::A(Ipv4Addr::new(10, 20, 0, 53).into())
    );
}

#[test]
fn unknown_names_nxdomain_in_zone_refused_outside() {
    let sh = shared(&gslb(0), true);
    let m = ask(&sh, "nope.g.example.com.", RecordType::A, None, false);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.metadata.authoritative);
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    let m = ask(&sh, "www.example.org.", RecordType::A, None, false);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(m.answers.is_empty());
}

#[test]
fn fail_closed_names_answer_their_code_when_down() {
    let sh = shared(&gslb(0), false);
    let m = ask(&sh, "down.g.example.com.", RecordType::A, None, false);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    // Fail open: every VIP.
    let m = ask(&sh, "www.g.example.com.", RecordType::A, None, false);
    assert_eq!(m.answers.len(), 2);
}

#[test]
fn edns_gets_an_opt_and_other_versions_badvers() {
    let sh = shared(&gslb(0), true);
    let m = ask(
        &sh,
        "www.g.example.com.",
        RecordType::A,
        Some((4096, 0)),
        false,
    );
    let e = m.edns.expect("an OPT in the answer");
    assert_eq!(e.max_payload(), 1232);
    assert_eq!(m.answers.len(), 1);
    let m = ask(
        &sh,
        "www.g.example.com.",
        RecordType::A,
        Some((4096, 1)),
        false,
    );
    // BADVERS and BADSIG share code 16 (RFC 6891 / 2845); hickory reads it as BADSIG.
    assert_eq!(u16::from(m.metadata.response_code), 16);
    assert!(m.answers.is_empty());
}

#[test]
fn large_answers_truncate_over_udp_but_not_tcp() {
    let sh = shared(&gslb(12), true);
    let m = ask(&sh, "g.example.com.", RecordType::NS, None, false);
    assert!(m.metadata.truncation, "over 512 bytes without EDNS: TC");
    assert!(m.answers.is_empty());
    let m = ask(
        &sh,
        "g.example.com.",
        RecordType::NS,
        Some((1232, 0)),
        false,
    );
    assert!(!m.metadata.truncation, "fits the EDNS size");
    assert_eq!(m.answers.len(), 13);
    let m = ask(&sh, "g.example.com.", RecordType::NS, None, true);
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 13);
}

#[test]
fn malformed_queries_are_dropped_and_counted() {
    let sh = shared(&gslb(0), true);
    let good = query("www.g.example.com.", RecordType::A, None);
    let from = Ipv4Addr::new(10, 9, 9, 9);
    for cut in 0..good.len() {
        assert!(
            sh.respond(&good[..cut], from, false).is_none(),
            "cut at {cut}"
        );
    }
    // A compression pointer pointing at itself in the question.
    let mut looped = good[..12].to_vec();
    looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    assert!(sh.respond(&looped, from, false).is_none());
    // 65535 questions announced, one present.
    let mut huge = good.clone();
    huge[4] = 0xff;
    huge[5] = 0xff;
    assert!(sh.respond(&huge, from, false).is_none());
    // A response is not a query.
    let mut resp = good.clone();
    resp[2] |= 0x80;
    assert!(sh.respond(&resp, from, false).is_none());
    let c = &sh.counters;
    assert_eq!(
        c.malformed.load(std::sync::atomic::Ordering::Relaxed),
        good.len() as u64 + 3
    );
    // Random bytes never panic.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        let mut buf = good.clone();
        for _ in 0..4 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = (x as usize) % buf.len();
            buf[i] = (x >> 32) as u8;
        }
        let _ = sh.respond(&buf, from, x & 1 == 0);
    }
}

#[test]
fn exchange_reports_are_signed_for_the_poll_that_asked() {
    let key = b"0123456789abcdef".to_vec();
    let nonce = "00112233445566778899aabbccddeeff";
    let body =
        br#"{"services":{"web":{"up":true,"healthy":2,"backends":2,"conns":5,"capacity":2000}}}"#;
    let resp = |sig: &str| {
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nX-SY-HMAC: {sig}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(body);
        r
    };
    let good = resp(&report_signature(&key, nonce, body));
    let r = parse_report(&key, nonce, &good).expect("a good report");
    assert!(r["web"].up);
    assert_eq!(r["web"].healthy, 2);
    // Another poll's nonce, another key, a changed body: refused.
    assert!(parse_report(&key, "ffffffffffffffffffffffffffffffff", &good).is_err());
    assert!(parse_report(b"another key.....", nonce, &good).is_err());
    let mut tampered = good.clone();
    let n = tampered.len();
    tampered[n - 10] = b'9';
    assert!(parse_report(&key, nonce, &tampered).is_err());
    assert_ne!(poll_signature(&key, nonce), poll_signature(&key, "x"));
}

#[test]
fn redirect_location_keeps_the_path() {
    assert_eq!(
        location("http://site1.example.test", "/a/b?c=1"),
        "http://site1.example.test/a/b?c=1"
    );
    assert_eq!(location("http://s1.test/", "/"), "http://s1.test/");
    assert_eq!(location("http://s1.test", "*"), "http://s1.test/");
}
