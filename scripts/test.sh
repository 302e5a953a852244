#!/usr/bin/env bash
# The whole test suite: installs what is missing, then format and lint checks, unit tests,
# golden pcap tests through the real binary, CLI tests, the namespace lab tests (root), and
# the fuzz targets for a few seconds each.
# .ci/run calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

scripts/install-deps.sh
((EUID == 0)) || { echo "test.sh: run as root (the lab tests build network namespaces)" >&2; exit 1; }

cargo fmt --check
cargo fmt --check --manifest-path fuzz/Cargo.toml
cargo clippy --all-targets --locked -- -D warnings
# Lab tests build namespaces and pin workers to cores: one test binary at a time (cargo's
# default), and labs use unique names, so a failed run never blocks the next.
cargo test --all-targets --locked
# The fuzz targets, briefly (nightly; a longer run: scripts/fuzz.sh 600).
scripts/fuzz.sh 15
