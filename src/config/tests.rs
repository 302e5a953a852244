use super::validate::is_prime;
use super::*;
use crate::testkit::{self, BASE_TOML};

/// The test configuration's text with `from` replaced by `to`, which must be refused.
fn broken(from: &str, to: &str) -> ConfigError {
    let text = BASE_TOML.replacen(from, to, 1);
    assert_ne!(
        text, BASE_TOML,
        "fixture replacement {from:?} did not apply"
    );
    Config::from_toml(&text).expect_err("config should be rejected")
}

/// The test configuration after `edit`, which `validate` must refuse.
fn refused(edit: impl FnOnce(&mut Config)) -> ConfigError {
    let mut c = testkit::base();
    edit(&mut c);
    c.validate().expect_err("config should be rejected")
}

#[test]
fn test_configuration_is_valid_and_round_trips() {
    let c = testkit::base();
    assert_eq!(c.flows.capacity_per_core, 1024);
    assert_eq!(c.services[0].backends[0].weight, 1);
    assert_eq!(c.interfaces[0].mac, Some(MacAddr([2, 0, 0, 0, 0, 0x10])));
    // What the test kit writes for the binary reads back the same.
    let again = Config::from_toml(&testkit::to_toml(&c)).unwrap();
    assert_eq!(testkit::to_toml(&again), testkit::to_toml(&c));
}

#[test]
fn oversized_conn_table_is_refused_with_its_cost() {
    let e = broken("capacity_per_core = 1024", "capacity_per_core = 4000000000");
    assert_eq!(e.key, "flows.capacity_per_core");
    assert!(e.problem.contains("63 bytes"), "{}", e.problem);
}

#[test]
fn unknown_key_is_named() {
    let e = broken("capacity_per_core", "capacity_per_cor");
    assert_eq!(e.key, "flows.capacity_per_cor");
    assert!(e.problem.contains("unknown"));
}

#[test]
fn vip_that_is_not_an_address_is_named() {
    let e = broken("vip = \"10.20.0.100\"", "vip = \"10.20.0.300\"");
    assert_eq!(e.key, "services[0].vip");
    assert!(
        e.problem.contains("\"10.20.0.300\"") && e.problem.contains("IPv4 address"),
        "{}",
        e.problem
    );
}

#[test]
fn malformed_prefix_mac_and_listen_are_named() {
    let e = broken("address = \"10.20.0.10/24\"", "address = \"10.20.0.10/40\"");
    assert_eq!(e.key, "interfaces[0].address");
    assert!(e.problem.contains("a.b.c.d/len"), "{}", e.problem);
    let e = broken("mac = \"02:00:00:00:00:10\"", "mac = \"02:00:00:00:10\"");
    assert_eq!(e.key, "interfaces[0].mac");
    let e = broken("listen = \"\"", "listen = \"localhost\"");
    assert_eq!(e.key, "api.listen");
    assert!(e.problem.contains("address:port"), "{}", e.problem);
}

#[test]
fn duplicate_service_is_named() {
    let e = refused(|c| {
        let mut dup = c.services[0].clone();
        dup.name = "web2".into();
        c.services.push(dup);
    });
    assert_eq!(e.key, "services[2].vip");
    assert!(e.problem.contains("duplicate"));
}

#[test]
fn service_without_backends_is_named() {
    let e = refused(|c| c.services[0].backends.clear());
    assert_eq!(e.key, "services[0].backends");
}

#[test]
fn all_weights_zero_is_named() {
    let e = refused(|c| c.services[1].backends[0].weight = 0);
    assert_eq!(e.key, "services[1].backends");
    assert!(e.problem.contains("weights"));
}

#[test]
fn worker_on_management_core_is_named() {
    let e = refused(|c| c.cores.workers = vec![0]);
    assert_eq!(e.key, "cores.workers[0]");
}

#[test]
fn env_style_nested_keys_reach_the_struct() {
    // figment's Env provider is what `load` layers on; check a nested key round-trips.
    let fig = Figment::new()
        .merge(Toml::string(BASE_TOML))
        .merge(("flows.capacity_per_core", 4096));
    let c: Config = fig.extract().unwrap();
    assert_eq!(c.flows.capacity_per_core, 4096);
}

#[test]
fn primes_are_told_apart() {
    assert!(is_prime(65537) && !is_prime(65536));
}

/// What would start but not work is refused, the key named (hardening, issue 21 point 6).
#[test]
fn configs_that_would_fail_at_run_time_are_refused() {
    use std::net::Ipv4Addr;
    let own = Ipv4Addr::new(10, 20, 0, 10);
    let vip = Ipv4Addr::new(10, 20, 0, 100);
    type Edit = Box<dyn FnOnce(&mut Config)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "flows.timeouts.tcp_established_s",
            Box::new(|c| c.flows.timeouts.tcp_established_s = 0),
        ),
        (
            "flows.timeouts.udp_s",
            Box::new(|c| c.flows.timeouts.udp_s = 0),
        ),
        (
            "flows.timeouts.tcp_syn_s",
            Box::new(|c| c.flows.timeouts.tcp_syn_s = u32::MAX),
        ),
        (
            "services[0].vip",
            Box::new(move |c| c.services[0].vip = own),
        ),
        (
            "services[0].vip",
            Box::new(|c| c.services[0].vip = Ipv4Addr::LOCALHOST),
        ),
        (
            "services[0].vip",
            Box::new(|c| c.services[0].vip = Ipv4Addr::new(10, 20, 1, 12)),
        ),
        (
            "services[0].backends[0].address",
            Box::new(move |c| c.services[0].backends[0].address = own),
        ),
        (
            "interfaces[0].snat_addresses[0]",
            Box::new(move |c| c.interfaces[0].snat_addresses = vec![vip]),
        ),
        ("routes[0].via", Box::new(move |c| c.routes[0].via = own)),
        (
            "services[0].health.rise",
            Box::new(|c| {
                c.services[0].health = Some(
                    toml::from_str::<HealthConfig>("type = \"tcp\"\nrise = 4294967295").unwrap(),
                )
            }),
        ),
        (
            "cores.workers[0]",
            Box::new(|c| c.cores.workers = vec![4095]),
        ),
        ("cores.management", Box::new(|c| c.cores.management = 4095)),
        (
            "services",
            Box::new(|c| {
                c.flows.capacity_per_core = 1024;
                let mut s = c.services[0].clone();
                s.backends = (0..4100u32)
                    .map(|i| {
                        let mut b = s.backends[0].clone();
                        b.port = Some(1000 + (i % 60000) as u16);
                        b
                    })
                    .collect();
                s.mode = Mode::Proxy;
                c.services[0] = s;
            }),
        ),
    ];
    for (key, edit) in cases {
        let e = refused(edit);
        assert_eq!(e.key, key, "{}", e.problem);
    }
    // The conn tables must fit the machine.
    let e = refused(|c| {
        c.flows.capacity_per_core = MAX_FLOWS_PER_CORE;
        c.cores.workers = vec![1];
    });
    assert_eq!(e.key, "flows.capacity_per_core", "{}", e.problem);
}

/// One server on two ports is two backends.
#[test]
fn a_backend_on_two_ports_is_allowed() {
    let mut c = testkit::config(Mode::Proxy);
    let mut b = c.services[0].backends[0].clone();
    b.port = Some(8080);
    c.services[0].backends.push(b);
    c.validate().expect("same address, another port");
    let mut twice = c.clone();
    let again = twice.services[0].backends[2].clone();
    twice.services[0].backends.push(again);
    assert!(twice.validate().is_err());
}

/// An API reachable beyond this host needs a token; a token file must hold one.
#[test]
fn an_api_off_loopback_needs_a_token() {
    let e = refused(|c| c.api.listen = Some("10.20.0.10:9100".parse().unwrap()));
    assert_eq!(e.key, "api.token_file", "{}", e.problem);
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short");
    std::fs::write(&short, "abc").unwrap();
    let e = refused(|c| c.api.token_file = Some(short));
    assert_eq!(e.key, "api.token_file", "{}", e.problem);
    let good = dir.path().join("good");
    std::fs::write(&good, "0123456789abcdef0123\n").unwrap();
    let mut c = testkit::base();
    c.api.listen = Some("10.20.0.10:9100".parse().unwrap());
    c.api.token_file = Some(good);
    c.validate().expect("a token makes it acceptable");
}
