//! The answer table: each policy's picks from the candidates' states, what a name answers
//! when none is up, the wheels' spread, and the answer bytes as a DNS parser reads them.

use std::net::Ipv4Addr;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{DNSClass, RData, RecordType};

use super::*;
use crate::config::GslbConfig;

/// The local service `web`'s VIP, and the peer sites' VIPs.
const LOCAL: Ipv4Addr = Ipv4Addr::new(10, 20, 0, 100);
const EAST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const WEST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

const EU_CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 7, 7);
const US_CLIENT: Ipv4Addr = Ipv4Addr::new(10, 2, 7, 7);
/// Inside eu's /16 but in a longer prefix of us.
const US_IN_EU: Ipv4Addr = Ipv4Addr::new(10, 1, 99, 5);
const NOWHERE: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 1);

/// A `[gslb]` section with two regions and two peer sites, and `names` (TOML of
/// `[[names]]` tables).
fn gslb(names: &str) -> GslbConfig {
    let text = format!(
        r#"
zone = "g.example.com"
dns_addresses = ["10.20.0.53"]
key = "00112233445566778899aabbccddeeff"

[[regions]]
name = "eu"
prefixes = ["10.1.0.0/16"]

[[regions]]
name = "us"
prefixes = ["10.2.0.0/16", "10.1.99.0/24"]

[[sites]]
name = "east"
api = "192.0.2.10:8443"

[[sites]]
name = "west"
api = "198.51.100.10:8443"

{names}
"#
    );
    toml::from_str(&text).unwrap_or_else(|e| panic!("test [gslb]: {e}"))
}

/// `www.g.example.com` with `policy`'s extra keys and the three candidates local (`web`,
/// weight `w0`), east (`w1`) and west (`w2`), serving regions eu, us and none.
fn three(policy: &str, weights: [u32; 3]) -> GslbConfig {
    let [w0, w1, w2] = weights;
    gslb(&format!(
        r#"
[[names]]
name = "www.g.example.com"
ttl = 30
{policy}

  [[names.answers]]
  service = "web"
  weight = {w0}
  regions = ["eu"]

  [[names.answers]]
  site = "east"
  service = "web"
  vip = "192.0.2.1"
  weight = {w1}
  regions = ["us"]

  [[names.answers]]
  site = "west"
  service = "web"
  vip = "198.51.100.1"
  weight = {w2}
"#
    ))
}

fn local_web(service: &str) -> Option<Ipv4Addr> {
    (service == "web").then_some(LOCAL)
}

/// The table of `cfg` with candidate `a` of every name up as `up[a]` says, at `load[a]`.
fn table(cfg: &GslbConfig, up: [bool; 3], load: [f64; 3]) -> Table {
    Table::build(cfg, local_web, |_, a| Candidate {
        up: up[a],
        load: load[a],
    })
}

/// What one answer says, comparable: its A records' addresses, or its error code.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Said {
    A(Vec<Ipv4Addr>),
    Rcode(u8),
}

fn said(a: &Answer) -> Said {
    match a {
        Answer::Records { vips, .. } => Said::A(vips.clone()),
        Answer::Rcode(r) => Said::Rcode(*r),
    }
}

fn one(v: Ipv4Addr) -> Said {
    Said::A(vec![v])
}

/// The answers of `turns` consecutive turns from `first` for clients of `client`.
fn answers(t: &Table, client: Ipv4Addr, first: u32, turns: u32) -> Vec<Said> {
    let region = t.region_of(client);
    (first..first + turns)
        .map(|turn| said(t.entries[0].pick(region, turn)))
        .collect()
}

fn count(of: &[Said], what: &Said) -> usize {
    of.iter().filter(|s| *s == what).count()
}

const ALL_UP: [bool; 3] = [true; 3];
const NO_LOAD: [f64; 3] = [0.0; 3];

#[test]
fn local_first_answers_the_local_vip_while_it_is_up() {
    let cfg = three("policy = \"local_first\"", [1, 1, 3]);
    let t = table(&cfg, ALL_UP, NO_LOAD);
    for client in [EU_CLIENT, US_CLIENT, NOWHERE] {
        assert_eq!(answers(&t, client, 0, 50), vec![one(LOCAL); 50], "{client}");
    }
}

#[test]
fn local_first_spreads_over_the_peers_by_weight_once_local_is_down() {
    let cfg = three("policy = \"local_first\"", [1, 1, 3]);
    let t = table(&cfg, [false, true, true], NO_LOAD);
    let got = answers(&t, NOWHERE, 0, 400);
    assert_eq!(count(&got, &one(LOCAL)), 0);
    assert_eq!(count(&got, &one(EAST)), 100);
    assert_eq!(count(&got, &one(WEST)), 300);
    // A local service that is not in the configuration counts as down, whatever its state.
    let gone = Table::build(
        &cfg,
        |_| None,
        |_, _| Candidate {
            up: true,
            load: 0.0,
        },
    );
    let got = answers(&gone, NOWHERE, 0, 4);
    assert_eq!(count(&got, &one(EAST)), 1);
    assert_eq!(count(&got, &one(WEST)), 3);
    // And back to local alone once it is up again.
    let back = table(&cfg, ALL_UP, NO_LOAD);
    assert_eq!(answers(&back, NOWHERE, 7, 20), vec![one(LOCAL); 20]);
}

#[test]
fn weighted_spreads_three_to_one_exactly_over_every_wheel_period() {
    let cfg = three("policy = \"weighted\"", [3, 1, 1]);
    // West down: local 3, east 1.
    let t = table(&cfg, [true, true, false], NO_LOAD);
    // Any 4 consecutive turns, from any start, give 3 local and 1 east.
    for first in 0..16 {
        let got = answers(&t, NOWHERE, first, 4);
        assert_eq!(count(&got, &one(LOCAL)), 3, "turns {first}..");
        assert_eq!(count(&got, &one(EAST)), 1, "turns {first}..");
    }
    let got = answers(&t, NOWHERE, 0, 4000);
    assert_eq!(count(&got, &one(LOCAL)), 3000);
    assert_eq!(count(&got, &one(EAST)), 1000);
    assert_eq!(
        count(&got, &one(WEST)),
        0,
        "a down candidate is never answered"
    );
    let shares: Vec<(Said, f64)> = t.entries[0]
        .shares(0)
        .into_iter()
        .map(|(a, s)| (said(a), s))
        .collect();
    assert_eq!(shares, vec![(one(LOCAL), 0.75), (one(EAST), 0.25)]);
    // The turn counter wraps without a jump in the spread (4 divides 2^32).
    let wrap: Vec<Said> = (0..8u32)
        .map(|k| said(t.entries[0].pick(0, (u32::MAX - 3).wrapping_add(k))))
        .collect();
    assert_eq!(count(&wrap, &one(LOCAL)), 6);
}

#[test]
fn weighted_interleaves_rather_than_runs() {
    // Smooth weighted round robin: with equal weights no candidate is answered twice in a row.
    let cfg = three("policy = \"weighted\"", [2, 2, 2]);
    let t = table(&cfg, ALL_UP, NO_LOAD);
    let got = answers(&t, NOWHERE, 0, 12);
    for pair in got.windows(2) {
        assert_ne!(pair[0], pair[1], "{got:?}");
    }
    for v in [LOCAL, EAST, WEST] {
        assert_eq!(count(&got, &one(v)), 4);
    }
}

#[test]
fn least_load_answers_the_least_loaded_candidate_that_is_up() {
    let cfg = three("policy = \"least_load\"", [1, 1, 1]);
    let t = table(&cfg, ALL_UP, [0.5, 0.2, 0.9]);
    assert_eq!(answers(&t, NOWHERE, 0, 10), vec![one(EAST); 10]);
    let t = table(&cfg, [true, false, true], [0.5, 0.2, 0.9]);
    assert_eq!(answers(&t, EU_CLIENT, 0, 10), vec![one(LOCAL); 10]);
    let t = table(&cfg, ALL_UP, [0.7, 0.9, 0.1]);
    assert_eq!(answers(&t, NOWHERE, 0, 10), vec![one(WEST); 10]);
    // Equal loads: the first candidate, steadily.
    let t = table(&cfg, ALL_UP, [0.3, 0.3, 0.3]);
    assert_eq!(answers(&t, NOWHERE, 0, 10), vec![one(LOCAL); 10]);
}

#[test]
fn region_slots_follow_the_longest_matching_prefix() {
    let cfg = three("policy = \"region\"", [1, 1, 1]);
    let t = table(&cfg, ALL_UP, NO_LOAD);
    assert_eq!(t.region_names, vec!["", "eu", "us"]);
    assert_eq!(t.region_of(EU_CLIENT), 1);
    assert_eq!(t.region_of(US_CLIENT), 2);
    assert_eq!(
        t.region_of(US_IN_EU),
        2,
        "10.1.99.0/24 is longer than 10.1.0.0/16"
    );
    assert_eq!(t.region_of(NOWHERE), 0);
}

#[test]
fn region_answers_the_clients_regions_candidates_and_the_fallback_for_the_rest() {
    let cfg = three("policy = \"region\"", [1, 1, 1]);
    let t = table(&cfg, ALL_UP, NO_LOAD);
    assert_eq!(answers(&t, EU_CLIENT, 0, 20), vec![one(LOCAL); 20]);
    assert_eq!(answers(&t, US_CLIENT, 0, 20), vec![one(EAST); 20]);
    assert_eq!(answers(&t, US_IN_EU, 0, 20), vec![one(EAST); 20]);
    // Clients of no region: the fallback (weighted by default) over every candidate up.
    let got = answers(&t, NOWHERE, 0, 300);
    for v in [LOCAL, EAST, WEST] {
        assert_eq!(count(&got, &one(v)), 100, "{v}");
    }
}

#[test]
fn region_falls_back_when_the_regions_candidates_are_down() {
    let cfg = three("policy = \"region\"", [1, 1, 1]);
    // East (us's only candidate) down: us clients get the fallback, over local and west.
    let t = table(&cfg, [true, false, true], NO_LOAD);
    let got = answers(&t, US_CLIENT, 0, 200);
    assert_eq!(count(&got, &one(LOCAL)), 100);
    assert_eq!(count(&got, &one(WEST)), 100);
    // Eu is not affected.
    assert_eq!(answers(&t, EU_CLIENT, 0, 20), vec![one(LOCAL); 20]);
    // The fallback is its own policy.
    let cfg = three("policy = \"region\"\nfallback = \"least_load\"", [1, 1, 1]);
    let t = table(&cfg, [true, false, true], [0.8, 0.0, 0.4]);
    assert_eq!(answers(&t, US_CLIENT, 0, 20), vec![one(WEST); 20]);
    assert_eq!(answers(&t, NOWHERE, 0, 20), vec![one(WEST); 20]);
    assert_eq!(answers(&t, EU_CLIENT, 0, 20), vec![one(LOCAL); 20]);
    let cfg = three("policy = \"region\"\nfallback = \"local_first\"", [1, 1, 1]);
    let t = table(&cfg, [true, false, true], NO_LOAD);
    assert_eq!(answers(&t, US_CLIENT, 0, 20), vec![one(LOCAL); 20]);
}

#[test]
fn when_down_all_answers_every_vip() {
    for policy in ["local_first", "weighted", "least_load", "region"] {
        let cfg = three(&format!("policy = \"{policy}\""), [1, 2, 3]);
        let t = table(&cfg, [false; 3], NO_LOAD);
        for client in [EU_CLIENT, US_CLIENT, NOWHERE] {
            assert_eq!(
                answers(&t, client, 0, 5),
                vec![Said::A(vec![LOCAL, EAST, WEST]); 5],
                "{policy} {client}"
            );
        }
    }
    // Without the local service, every VIP that is known.
    let cfg = three("policy = \"weighted\"", [1, 1, 1]);
    let t = Table::build(
        &cfg,
        |_| None,
        |_, _| Candidate {
            up: false,
            load: 0.0,
        },
    );
    assert_eq!(answers(&t, NOWHERE, 0, 1), vec![Said::A(vec![EAST, WEST])]);
}

#[test]
fn when_down_servfail_or_refused_fails_closed() {
    for (when, rcode) in [("servfail", RCODE_SERVFAIL), ("refused", RCODE_REFUSED)] {
        for policy in ["local_first", "weighted", "least_load", "region"] {
            let cfg = three(
                &format!("policy = \"{policy}\"\nwhen_down = \"{when}\""),
                [1, 1, 1],
            );
            let t = table(&cfg, [false; 3], NO_LOAD);
            for client in [EU_CLIENT, US_CLIENT, NOWHERE] {
                let a = t.entries[0].pick(t.region_of(client), 0);
                assert_eq!(said(a), Said::Rcode(rcode), "{when} {policy} {client}");
                assert_eq!(a.count(), 0);
            }
            // One candidate up is answered, not the error.
            let t = table(&cfg, [false, false, true], NO_LOAD);
            assert_eq!(said(t.entries[0].pick(0, 0)), one(WEST), "{when} {policy}");
        }
    }
}

#[test]
fn a_name_of_only_unknown_local_services_fails_closed_even_when_down_is_all() {
    let cfg = gslb(
        r#"
[[names]]
name = "api.g.example.com"
policy = "weighted"

  [[names.answers]]
  service = "api"
"#,
    );
    let t = Table::build(&cfg, local_web, |_, _| Candidate {
        up: true,
        load: 0.0,
    });
    assert_eq!(said(t.entries[0].pick(0, 0)), Said::Rcode(RCODE_SERVFAIL));
}

/// A whole response: a header (id 0x1234, a response, `ancount` answers), the question of
/// `qname` A IN as a client wrote it, and `tail`.
fn response(qname: &str, ancount: u16, tail: &[u8]) -> Vec<u8> {
    let mut m = vec![0x12, 0x34, 0x84, 0x00, 0, 1];
    m.extend(ancount.to_be_bytes());
    m.extend([0, 0, 0, 0]);
    for l in qname.split('.') {
        m.push(l.len() as u8);
        m.extend(l.bytes());
    }
    m.extend([0, 0, 1, 0, 1]);
    m.extend(tail);
    m
}

#[test]
fn answer_tails_parse_as_the_names_a_records() {
    let cfg = three("policy = \"weighted\"", [1, 1, 1]);
    let t = table(&cfg, ALL_UP, NO_LOAD);
    let e = &t.entries[0];
    assert_eq!((e.name.as_str(), e.ttl), ("www.g.example.com", 30));
    let mut seen = 0;
    for a in &e.answers {
        let Answer::Records { vips, tail } = a else {
            continue;
        };
        seen += 1;
        // The answers' names point at the question (offset 12), whatever its case.
        assert_eq!(tail[..2], [0xc0, 0x0c]);
        for qname in ["www.g.example.com", "WwW.G.eXaMpLe.CoM"] {
            let wire = response(qname, a.count(), tail);
            let m = Message::from_vec(&wire).unwrap_or_else(|e| panic!("{vips:?}: {e}"));
            assert_eq!(m.metadata.id, 0x1234);
            assert_eq!(m.metadata.message_type, MessageType::Response);
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert_eq!(m.queries.len(), 1);
            assert!(m.authorities.is_empty() && m.additionals.is_empty());
            let got: Vec<Ipv4Addr> = m
                .answers
                .iter()
                .map(|r| {
                    assert_eq!(r.name.to_ascii(), format!("{qname}."));
                    assert_eq!(r.ttl, 30);
                    assert_eq!(r.dns_class, DNSClass::IN);
                    assert_eq!(r.record_type(), RecordType::A);
                    match &r.data {
                        RData::A(a) => a.0,
                        other => panic!("not an A record: {other:?}"),
                    }
                })
                .collect();
            assert_eq!(&got, vips);
        }
        // Nothing after the records: the tail is exactly the answer section.
        let wire = response("www.g.example.com", a.count(), tail);
        assert_eq!(wire.len(), 12 + 19 + 4 + vips.len() * 16);
    }
    // Each candidate alone, and all three together (when down).
    assert_eq!(seen, 4);
}

#[test]
fn each_name_has_its_own_ttl_and_tail() {
    let cfg = gslb(
        r#"
[[names]]
name = "a.g.example.com"
policy = "weighted"
ttl = 0

  [[names.answers]]
  service = "web"

[[names]]
name = "deeper.name.below.g.example.com"
policy = "local_first"
ttl = 86400

  [[names.answers]]
  site = "east"
  service = "web"
  vip = "192.0.2.1"
"#,
    );
    let t = Table::build(&cfg, local_web, |_, _| Candidate {
        up: true,
        load: 0.0,
    });
    assert_eq!(t.len(), 2);
    for (id, (qname, ttl, vip)) in [
        ("a.g.example.com", 0, LOCAL),
        ("deeper.name.below.g.example.com", 86400, EAST),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(t.lookup(&wire_name(qname)), Some(id as u16));
        let a = t.entries[id].pick(0, 0);
        let Answer::Records { tail, .. } = a else {
            panic!("{qname}: {a:?}");
        };
        let m = Message::from_vec(&response(qname, 1, tail)).unwrap();
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].ttl, ttl);
        assert_eq!(m.answers[0].data, RData::A(A(vip)));
    }
}

#[test]
fn wire_name_is_lowercase_length_prefixed_labels_and_the_root() {
    let want = b"\x03www\x01g\x07example\x03com\x00".to_vec();
    assert_eq!(wire_name("www.g.example.com"), want);
    assert_eq!(wire_name("WWW.G.Example.COM"), want);
    assert_eq!(wire_name("www.g.example.com."), want);
    assert_eq!(wire_name(""), vec![0]);
    assert_eq!(wire_name("."), vec![0]);
    let long = "a".repeat(63);
    let w = wire_name(&format!("{long}.b"));
    assert_eq!((w[0], w.len()), (63, 1 + 63 + 2 + 1));
}

#[test]
fn lookup_takes_the_lowercase_wire_name_of_any_spelling() {
    let cfg = three("policy = \"weighted\"", [1, 1, 1]);
    let t = table(&cfg, ALL_UP, NO_LOAD);
    assert!(!t.is_empty());
    for spelling in [
        "www.g.example.com",
        "WWW.G.EXAMPLE.COM",
        "Www.G.example.com.",
    ] {
        assert_eq!(t.lookup(&wire_name(spelling)), Some(0), "{spelling}");
    }
    for other in [
        "g.example.com",
        "ww.g.example.com",
        "www.g.example.co",
        "www",
    ] {
        assert_eq!(t.lookup(&wire_name(other)), None, "{other}");
    }
    // The key is the wire form: not the dotted text, not a name missing its root label.
    assert_eq!(t.lookup(b"www.g.example.com"), None);
    let w = wire_name("www.g.example.com");
    assert_eq!(t.lookup(&w[..w.len() - 1]), None);
    assert!(Table::default().is_empty());
}

/// `when_down = "all"` dedups the VIPs it answers, but only runs of equal ones: two
/// candidates with the same VIP that are not next to each other give a duplicate A record
/// (RFC 2181 5: an RRset has no duplicate records).
#[test]
fn when_down_all_answers_each_vip_once() {
    let cfg = gslb(
        r#"
[[names]]
name = "www.g.example.com"
policy = "weighted"

  [[names.answers]]
  site = "east"
  service = "web"
  vip = "192.0.2.1"

  [[names.answers]]
  site = "west"
  service = "web"
  vip = "198.51.100.1"

  [[names.answers]]
  site = "east"
  service = "web2"
  vip = "192.0.2.1"
"#,
    );
    let t = Table::build(&cfg, local_web, |_, _| Candidate {
        up: false,
        load: 0.0,
    });
    assert_eq!(said(t.entries[0].pick(0, 0)), Said::A(vec![EAST, WEST]));
}

/// The answer of a name with `service` its one local candidate, read back as a whole
/// response: its A records' addresses (hickory-proto's error if it cannot read it).
fn answered(name: &str) -> Result<Vec<Ipv4Addr>, String> {
    let cfg = gslb(&format!(
        "[[names]]\nname = \"{name}\"\npolicy = \"weighted\"\n\
         [[names.answers]]\nservice = \"web\"\n"
    ));
    let t = Table::build(&cfg, local_web, |_, _| Candidate {
        up: true,
        load: 0.0,
    });
    assert_eq!(t.lookup(&wire_name(name)), Some(0), "{name}");
    let a = t.entries[0].pick(0, 0);
    let Answer::Records { vips, tail } = a else {
        return Err(format!("{a:?}"));
    };
    assert_eq!(vips, &[LOCAL]);
    let m = Message::from_vec(&response(name, a.count(), tail))
        .map_err(|e| format!("{e} (tail {tail:?})"))?;
    Ok(m.answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => a.0,
            other => panic!("{name}: not A: {other:?}"),
        })
        .collect())
}

#[test]
fn every_name_the_configuration_takes_gets_records_that_parse() {
    let long = format!(
        "{}.{}.{}.{}.g.example.com",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(47)
    );
    assert_eq!(long.len(), 253);
    for name in [
        "_sip._udp.g.example.com",
        "x-y.g.example.com",
        "xn--bcher-kva.g.example.com",
        "0.g.example.com",
        "a_b.g.example.com",
        long.as_str(),
    ] {
        assert!(crate::config::valid_dns_name(name), "{name}");
        assert_eq!(answered(name), Ok(vec![LOCAL]), "{name}");
    }
}

/// A label that starts or ends with a hyphen, which hickory-proto's `Name::from_ascii` refuses,
/// is not a valid name for the configuration; a table built without validation answers such a
/// name SERVFAIL rather than a count of records it does not carry.
#[test]
fn a_name_hickory_cannot_encode_is_refused_by_validation_and_never_half_answered() {
    for name in ["-x.g.example.com", "x-.g.example.com"] {
        assert!(!crate::config::valid_dns_name(name), "{name}");
    }
    assert_eq!(
        answered("-x.g.example.com"),
        Err(format!("{:?}", Answer::Rcode(RCODE_SERVFAIL)))
    );
}
