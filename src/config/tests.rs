use super::validate::is_prime;
use super::*;

pub const GOOD: &str = r#"
[dpdk]
eal_args = ["--no-huge", "-m", "512", "--no-pci"]
[cores]
management = 0
workers = [1]
[flows]
capacity_per_core = 1048576
[[interfaces]]
name = "lan"
port = "net_af_packet0"
address = "10.20.0.10/24"
[[services]]
name = "web"
vip = "10.20.0.100"
port = 80
protocol = "tcp"
mode = "dsr"
scheduler = "maglev"
  [[services.backends]]
  address = "10.20.0.11"
  weight = 1
"#;

fn broken(from: &str, to: &str) -> ConfigError {
    let text = GOOD.replacen(from, to, 1);
    assert_ne!(text, GOOD, "fixture replacement {from:?} did not apply");
    Config::from_toml(&text).expect_err("config should be rejected")
}

#[test]
fn contract_example_is_valid() {
    let c = Config::from_toml(GOOD).unwrap();
    assert_eq!(c.flows.capacity_per_core, 1 << 20);
    assert_eq!(c.services[0].backends[0].weight, 1);
}

#[test]
fn oversized_conn_table_is_refused_with_its_cost() {
    let e = broken(
        "capacity_per_core = 1048576",
        "capacity_per_core = 4000000000",
    );
    assert_eq!(e.key, "flows.capacity_per_core");
    assert!(e.problem.contains("57 bytes"), "{}", e.problem);
}

#[test]
fn unknown_key_is_named() {
    let e = broken("capacity_per_core", "capacity_per_cor");
    assert_eq!(e.key, "flows.capacity_per_cor");
    assert!(e.problem.contains("unknown"));
}

#[test]
fn vip_that_is_not_an_address_is_named() {
    let e = broken("10.20.0.100", "10.20.0.300");
    assert_eq!(e.key, "services[0].vip");
    assert!(
        e.problem.contains("\"10.20.0.300\"") && e.problem.contains("IPv4 address"),
        "{}",
        e.problem
    );
}

#[test]
fn duplicate_service_is_named() {
    let dup = format!(
        "{GOOD}\n[[services]]\nname = \"web2\"\nvip = \"10.20.0.100\"\nport = 80\nprotocol = \"tcp\"\nmode = \"dsr\"\n  [[services.backends]]\n  address = \"10.20.0.12\"\n"
    );
    let e = Config::from_toml(&dup).unwrap_err();
    assert_eq!(e.key, "services[1].vip");
    assert!(e.problem.contains("duplicate"));
}

#[test]
fn service_without_backends_is_named() {
    let text = GOOD.split("  [[services.backends]]").next().unwrap();
    let e = Config::from_toml(text).unwrap_err();
    assert_eq!(e.key, "services[0].backends");
}

#[test]
fn all_weights_zero_is_named() {
    let e = broken("weight = 1", "weight = 0");
    assert_eq!(e.key, "services[0].backends");
    assert!(e.problem.contains("weights"));
}

#[test]
fn worker_on_management_core_is_named() {
    let e = broken("workers = [1]", "workers = [0]");
    assert_eq!(e.key, "cores.workers[0]");
}

#[test]
fn env_style_nested_keys_reach_the_struct() {
    // figment's Env provider is what `load` layers on; check a nested key round-trips.
    let fig = Figment::new()
        .merge(Toml::string(GOOD))
        .merge(("flows.capacity_per_core", 4096));
    let c: Config = fig.extract().unwrap();
    assert_eq!(c.flows.capacity_per_core, 4096);
}

#[test]
fn primes_are_told_apart() {
    assert!(is_prime(65537) && !is_prime(65536));
}
