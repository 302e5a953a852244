#!/usr/bin/env bash
# Installs what Switchyard needs to build, test and run its lab on Debian 12, and nothing
# that is already there. Idempotent; run as root. Used by scripts/demo.sh and scripts/test.sh.
set -euo pipefail

PKGS=(
	# DPDK 22.11 (headers + pkg-config file, runtime PMDs, dpdk-testpmd for baselines)
	libdpdk-dev dpdk dpdk-dev
	# bindgen needs libclang; the C shim needs a compiler
	libclang-dev clang build-essential pkg-config libpcap-dev
	# lab: namespaces, veth tuning, captures, real clients
	iproute2 ethtool tcpdump curl iputils-ping procps psmisc python3
	# lab servers and clients: DNS (dnsmasq, dig), caching proxies (nginx)
	dnsmasq-base bind9-dnsutils nginx-light
	# promtool checks /metrics
	prometheus
	# packet loss in the health-check lab test (this kernel has no netem), the pair tests'
	# held-back resync
	nftables
	# the HA pair: VRRP election (Debian's keepalived, unmodified)
	keepalived
	# two-site GSLB lab: the client's recursive resolver, the parent zone's authoritative server
	# (also the DNS performance baseline), the DNS load generator
	unbound knot dnsperf
	# ECMP scale-out lab: BGP on the nodes and the edge router
	bird2
	# flood labs (hardening): spoofed SYN/ACK/UDP floods from the client namespace
	hping3
	# containers (scripts/container.sh, tests/container.rs): podman on runc; the Debian base
	# image made with debootstrap where no registry answers. As root on overlayfs, podman
	# needs neither uidmap nor fuse-overlayfs; --network host/ns: needs no CNI firewalling.
	podman runc debootstrap
)

missing=()
for p in "${PKGS[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing+=("$p")
	fi
done
if ((${#missing[@]})); then
	echo "install-deps: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Rust toolchain comes from rustup (Debian 12's rustc is too old for edition 2024).
if ! command -v cargo >/dev/null; then
	if [[ -x "$HOME/.cargo/bin/cargo" ]]; then
		echo "install-deps: add \$HOME/.cargo/bin to PATH" >&2
	else
		echo "install-deps: no cargo found; install Rust with rustup (https://rustup.rs)" >&2
	fi
	exit 1
fi
rustup component list --installed 2>/dev/null | grep -q '^clippy' ||
	rustup component add clippy rustfmt >/dev/null 2>&1 || true
