//! `switchyard check` and `run` on bad input: a clear message naming the key, a non-zero exit,
//! never a panic.

mod common;

use common::*;

const GOOD: &str = include_str!("../conf/lab-dsr.toml");

fn check(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, text).unwrap();
    let o = switchyard(&["check", "--config", p.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!err.contains("panicked"), "check panicked: {err}");
    (o.status.code().unwrap_or(-1), err)
}

fn broken(from: &str, to: &str) -> (i32, String) {
    let text = GOOD.replacen(from, to, 1);
    assert_ne!(text, GOOD, "fixture edit {from:?} did not apply");
    check(&text)
}

#[test]
fn shipped_configs_pass_check() {
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/conf")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            let o = switchyard(&["check", "--config", p.to_str().unwrap()]);
            assert!(
                o.status.success(),
                "{}: {}",
                p.display(),
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}

#[test]
fn unknown_key_is_named() {
    let (code, err) = broken("capacity_per_core", "capacity_per_cor");
    assert_eq!(code, 2);
    assert!(err.contains("flows.capacity_per_cor: unknown key"), "{err}");
}

#[test]
fn vip_that_is_not_an_address_is_named() {
    let (code, err) = broken("vip = \"10.20.0.100\"", "vip = \"not-an-ip\"");
    assert_eq!(code, 2);
    assert!(err.contains("services[0].vip"), "{err}");
}

#[test]
fn duplicate_service_is_named() {
    // The first service block again, renamed: same VIP, port and protocol.
    let start = GOOD.find("[[services]]").unwrap();
    let len = GOOD[start + 1..]
        .find("[[services]]")
        .map_or(GOOD.len() - start, |n| n + 1);
    let svc = &GOOD[start..start + len];
    let n = GOOD.matches("[[services]]").count();
    let text = format!(
        "{GOOD}\n{}",
        svc.replacen("name = \"web\"", "name = \"web2\"", 1)
    );
    let (code, err) = check(&text);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("services[{n}].vip"))
            && err.contains("duplicate service 10.20.0.100:80 tcp"),
        "{err}"
    );
}

#[test]
fn service_without_backends_is_named() {
    let text = GOOD.split("  [[services.backends]]").next().unwrap();
    let (code, err) = check(text);
    assert_eq!(code, 2);
    assert!(err.contains("services[0].backends"), "{err}");
}

#[test]
fn all_weights_zero_is_named() {
    let text = GOOD.replace("weight = 1", "weight = 0");
    let (code, err) = check(&text);
    assert_eq!(code, 2);
    assert!(
        err.contains("services[0].backends: all backend weights are 0"),
        "{err}"
    );
}

#[test]
fn worker_on_management_core_is_named() {
    let (code, err) = broken("workers = [1]", "workers = [0]");
    assert_eq!(code, 2);
    assert!(err.contains("cores.workers[0]"), "{err}");
}

#[test]
fn missing_file_is_reported() {
    let o = switchyard(&["check", "--config", "/nonexistent/switchyard.toml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not found"));
}

#[test]
fn run_with_an_unusable_port_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    let text = GOOD
        .replace("--vdev=net_af_packet0,iface=yard0", "--vdev=net_null0")
        .replace("port = \"net_af_packet0\"", "port = \"net_nosuch7\"")
        .replace("switchyard-lab", &format!("sy-cli-{}", std::process::id()));
    std::fs::write(&p, text).unwrap();
    let o = switchyard(&["run", "--config", p.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("no DPDK port named \"net_nosuch7\"") && err.contains("net_null0"),
        "{err}"
    );
}

#[test]
fn environment_overrides_reach_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, GOOD).unwrap();
    let o = std::process::Command::new(bin())
        .args(["check", "--config", p.to_str().unwrap()])
        .env("SWITCHYARD_FLOWS__CAPACITY_PER_CORE", "0")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("flows.capacity_per_core: must be > 0"),
        "{err}"
    );
}

#[test]
fn switchyard_config_names_the_file_and_is_not_a_key() {
    // The container image's way: no --config, the path in the environment (which the
    // SWITCHYARD_* overrides must not read as a key named `config`).
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, GOOD).unwrap();
    let o = std::process::Command::new(bin())
        .arg("check")
        .env("SWITCHYARD_CONFIG", &p)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains(": OK ("),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // --config wins over the environment.
    let o = std::process::Command::new(bin())
        .args(["check", "--config", "/nonexistent/switchyard.toml"])
        .env("SWITCHYARD_CONFIG", &p)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/switchyard.toml"));
}
