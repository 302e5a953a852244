//! Helpers shared by the integration tests: they run the real `switchyard` binary as a
//! subprocess (EAL starts once per process), each with its own `--file-prefix`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_switchyard")
}

pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Runs `switchyard ARGS` and returns its output.
pub fn switchyard(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .expect("running switchyard")
}

/// Packet payloads of a pcap file, timestamps ignored (DPDK's pcap PMD stamps tx time).
pub fn pcap_frames(path: &Path) -> Vec<Vec<u8>> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut r = pcap_file::pcap::PcapReader::new(f).expect("pcap header");
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        out.push(p.expect("pcap record").data.into_owned());
    }
    out
}

/// Hex dump with a caret under the first differing byte, for assertion messages.
pub fn diff(a: &[u8], b: &[u8]) -> String {
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let hex = |v: &[u8]| {
        v.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    format!(
        "first difference at byte {at} (lengths {} vs {})\n got: {}\nwant: {}",
        a.len(),
        b.len(),
        hex(a),
        hex(b)
    )
}

/// Reads the `--stats-json` file's totals.
pub fn totals(path: &Path) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("stats json")).expect("json");
    v["total"].clone()
}

pub mod lab;
pub mod pair;
pub mod script_lab;
