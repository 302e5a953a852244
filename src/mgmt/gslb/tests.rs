//! The kernel side's DNS answers and the site exchange's signatures.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use super::dns::Shared;
use super::exchange::{parse_report, poll_signature, report_signature};
use super::redirect::location;
use super::{exchange, redirect};
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

/// Sends `raw` to `addr` and reads the answer to its end (within 3 s).
fn http_call(addr: std::net::SocketAddr, raw: &[u8]) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn loopback() -> (std::net::TcpListener, std::net::SocketAddr) {
    let l = crate::mgmt::http::listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// A redirect server on an ephemeral loopback port, with heads due within `head_timeout`.
fn redirect_server(
    head_timeout: Duration,
) -> (
    crate::mgmt::http::Server,
    std::net::SocketAddr,
    Arc<redirect::Counters>,
) {
    let (l, addr) = loopback();
    let ctr = Arc::new(redirect::Counters::default());
    let limits = crate::mgmt::http::Limits {
        head_timeout,
        ..redirect::LIMITS
    };
    let s =
        redirect::serve_on(l, limits, "http://site1.example.test/".into(), ctr.clone()).unwrap();
    (s, addr, ctr)
}

#[test]
fn redirect_server_answers_302_with_the_location_over_a_socket() {
    let (_s, addr, ctr) = redirect_server(Duration::from_secs(2));
    let out = http_call(addr, b"GET /a/b?c=1 HTTP/1.1\r\nHost: www\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 302 Found\r\n"), "{out}");
    assert!(
        out.contains("\r\nLocation: http://site1.example.test/a/b?c=1\r\n"),
        "{out}"
    );
    assert!(out.contains("\r\nConnection: close\r\n"), "{out}");
    assert!(
        out.ends_with("\r\n\r\nmoved to http://site1.example.test/a/b?c=1\n"),
        "{out}"
    );
    // Any method; a HEAD gets the head alone.
    let head = http_call(addr, b"HEAD /x HTTP/1.0\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 302 Found\r\n"), "{head}");
    assert!(
        head.contains("Location: http://site1.example.test/x\r\n"),
        "{head}"
    );
    assert!(head.ends_with("\r\n\r\n"), "{head}");
    // Garbage is refused, not redirected (nor counted).
    assert!(http_call(addr, b"\x16\x03\x01garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
    assert_eq!(ctr.json()["sent"], 2);
}

#[test]
fn a_slowloris_client_does_not_hold_up_the_redirect_server() {
    use std::io::{Read, Write};
    let (_s, addr, ctr) = redirect_server(Duration::from_millis(800));
    // Slow clients: a byte of a head every 50 ms for 300 ms, then nothing; and idle ones.
    let slow: Vec<_> = (0..8)
        .map(|i| {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            std::thread::spawn(move || {
                let drip: &[u8] = if i % 2 == 0 { b"GET /s" } else { b"" };
                for b in drip {
                    c.write_all(&[*b]).unwrap();
                    std::thread::sleep(Duration::from_millis(50));
                }
                let mut out = String::new();
                let _ = c.read_to_string(&mut out);
                out
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    // A second client is answered at once, while they dribble.
    let t = Instant::now();
    let out = http_call(addr, b"GET /fast HTTP/1.1\r\n\r\n");
    let took = t.elapsed();
    assert!(out.starts_with("HTTP/1.1 302 Found\r\n"), "{out}");
    assert!(
        out.contains("Location: http://site1.example.test/fast\r\n"),
        "{out}"
    );
    assert!(took < Duration::from_millis(300), "{took:?}");
    // The slow ones are cut off at the head's deadline with a 408, never redirected.
    for h in slow {
        let out = h.join().unwrap();
        assert!(out.starts_with("HTTP/1.1 408"), "{out:?}");
    }
    assert_eq!(ctr.json()["sent"], 1);
}

#[test]
fn exchange_server_signs_reports_and_refuses_bad_and_replayed_polls_over_a_socket() {
    let key = b"0123456789abcdef".to_vec();
    let (l, addr) = loopback();
    let report = Arc::new(std::sync::Mutex::new(serde_json::json!({ "services": {
        "web": { "up": true, "healthy": 2, "backends": 3, "conns": 7, "capacity": 2000 }
    }})));
    let ctr = Arc::new(exchange::Counters::default());
    let _s = exchange::serve_on(l, exchange::LIMITS, key.clone(), report, ctr.clone()).unwrap();
    // A poller with the key takes the report.
    let poller = exchange::Poller {
        site: 0,
        target: addr,
        source: None,
        key: key.clone(),
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(2),
    };
    let r = poller.poll().expect("a good poll");
    assert_eq!(
        (r["web"].up, r["web"].backends, r["web"].conns),
        (true, 3, 7)
    );
    // One without it does not.
    let stranger = exchange::Poller {
        key: b"another key.....".to_vec(),
        ..poller
    };
    assert_eq!(stranger.poll().unwrap_err(), "status 401");

    let nonce = "00112233445566778899aabbccddeeff";
    let signed = format!(
        "GET /gslb?nonce={nonce} HTTP/1.0\r\nAuthorization: SY-HMAC {}\r\n\r\n",
        poll_signature(&key, nonce)
    );
    let first = http_call(addr, signed.as_bytes());
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
    assert!(
        parse_report(&key, nonce, first.as_bytes()).is_ok(),
        "{first}"
    );
    // The same poll again: a replay.
    let again = http_call(addr, signed.as_bytes());
    assert!(again.starts_with("HTTP/1.1 401 "), "{again}");
    assert!(
        again.ends_with("{\"error\":\"nonce seen before\"}"),
        "{again}"
    );
    assert!(!again.contains("X-SY-HMAC"), "{again}");
    for (raw, status, body) in [
        (
            format!("GET /gslb?nonce={nonce} HTTP/1.1\r\n\r\n"),
            401,
            "a poll is GET /gslb?nonce=<32 hex> with its signature",
        ),
        (
            "GET /gslb HTTP/1.1\r\nAuthorization: SY-HMAC 00\r\n\r\n".into(),
            401,
            "a poll is GET /gslb?nonce=<32 hex> with its signature",
        ),
        (
            format!(
                "GET /gslb?nonce=ffffffffffffffffffffffffffffffff HTTP/1.1\r\n\
                 Authorization: SY-HMAC {}\r\n\r\n",
                poll_signature(&key, nonce)
            ),
            401,
            "bad signature",
        ),
        (
            "GET /status HTTP/1.1\r\n\r\n".into(),
            404,
            "no such endpoint",
        ),
    ] {
        let out = http_call(addr, raw.as_bytes());
        assert!(
            out.starts_with(&format!("HTTP/1.1 {status} ")),
            "{raw:?}: {out}"
        );
        assert!(
            out.ends_with(&format!("{{\"error\":\"{body}\"}}")),
            "{raw:?}: {out}"
        );
    }
    // Two served; the stranger's and four above refused; one replayed.
    assert_eq!(
        ctr.json(),
        serde_json::json!({ "served": 2, "refused": 5, "replayed": 1 })
    );
}
