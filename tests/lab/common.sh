#!/usr/bin/env bash
# Helpers shared by lab.sh and multitier.sh (sourced, not run). They use the caller's
# variables at call time: P, LOGDIR, NS_LAN, PORT_ALIAS, WAIT_SECS, and log/die.
# shellcheck disable=SC2154  # variables are defined by the sourcing script

need_root() {
	((EUID == 0)) || die "must run as root (network namespaces, veths, sysctls)"
	command -v ip >/dev/null || die "missing tool: ip (iproute2)"
}

# --------------------------------------------------------------- helpers ---
nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# sysctl inside a namespace. `ip netns exec` remounts /sys and gives us the
# namespace's own /proc/sys/net, so plain sysctl sees per-netns values.
nsysctl() { local ns=$1; shift; local kv; for kv in "$@"; do nsx "$ns" sysctl -qw "$kv" >/dev/null; done; }

# Root-namespace veths this lab created, found by ifalias, so `down` also
# cleans up when it is run without the LAB_PORT that `up` was given.
our_root_ports() {
	local f
	for f in /sys/class/net/*/ifalias; do
		[[ -r "$f" && "$(cat "$f" 2>/dev/null)" == "$PORT_ALIAS" ]] || continue
		basename "$(dirname "$f")"
	done
}

# veth pair with both ends created straight in their namespaces.
veth() {
	local ns_a=$1 a=$2 ns_b=$3 b=$4
	ip -n "$ns_a" link add "$a" type veth peer name "$b" netns "$ns_b"
	prep_if "$ns_a" "$a"
	prep_if "$ns_b" "$b"
}

# Kill every process inside a namespace. A namespace that still holds a
# process survives `ip netns del` (and so do its veths), so this comes first.
kill_ns_pids() {
	local ns=$1 pids i
	pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ') || true
	[[ -n "${pids// /}" ]] || return 0
	# shellcheck disable=SC2086 # word splitting of the pid list is intended
	kill -TERM $pids 2>/dev/null || true
	for ((i = 0; i < 30; i++)); do
		pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ') || true
		[[ -n "${pids// /}" ]] || return 0
		sleep 0.1
	done
	# shellcheck disable=SC2086
	kill -KILL $pids 2>/dev/null || true
}

on_up_exit() {
	local rc=$?
	if ((UP_OK == 0)); then
		log "up failed (rc=$rc); tearing down partial lab"
		trap - EXIT ERR INT TERM HUP
		cmd_down || true
	fi
}

usage() {
	sed -n '2,/^set -Eeuo/{/^set -Eeuo/d;s/^# \{0,1\}//;p}' "$0" >&2
	exit 2
}

new_ns() {
	local ns=$1
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	if have_ipv6; then
		# Before any interface exists, so every veth is born with IPv6 off:
		# no router solicitations / MLD / DAD packets polluting captures.
		nsysctl "$ns" net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
	fi
}

# Settings every lab veth end gets, before it is brought up.
prep_if() {
	local ns=$1 dev=$2
	LINKS+=("$ns $dev")
	if have_ipv6; then
		nsysctl "$ns" "net.ipv6.conf.$dev.disable_ipv6=1"
	fi
	ip -n "$ns" link set dev "$dev" mtu 1500
	# veths default to checksum offload: packets then carry CHECKSUM_PARTIAL
	# and AF_PACKET hands DPDK frames whose L4 checksum is only a pseudo-
	# header seed. Turning tx checksumming off makes every sender compute
	# full checksums; it also turns TSO off (it depends on tx csum), so GSO
	# segments in software and DPDK never sees frames above the MTU.
	nsx "$ns" ethtool -K "$dev" tx off >/dev/null
}

wait_links() {
	local l ns dev state deadline=$((SECONDS + WAIT_SECS))
	for l in "${LINKS[@]}"; do
		ns=${l% *}
		dev=${l#* }
		while :; do
			# The root-namespace end ($PORT) is recorded with ns "-".
			if [[ "$ns" == "-" ]]; then
				state=$(cat "/sys/class/net/$dev/operstate" 2>/dev/null || true)
			else
				state=$(nsx "$ns" cat "/sys/class/net/$dev/operstate" 2>/dev/null || true)
			fi
			[[ "$state" == "up" ]] && break
			((SECONDS < deadline)) || die "link $dev (ns $ns) is not up (operstate '$state')"
			sleep 0.05
		done
	done
}

check_port_free() {
	local port=$1 var=$2 owner
	[[ -e "/sys/class/net/$port" ]] || return 0
	owner=$(cat "/sys/class/net/$port/ifalias" 2>/dev/null || true)
	case "$owner" in
	switchyard-multitier:*) die "interface $port belongs to the multitier lab with LAB_PREFIX=${owner#switchyard-multitier:}; pick another $var" ;;
	switchyard-lab:*) die "interface $port belongs to the lab.sh lab with LAB_PREFIX=${owner#switchyard-lab:}; pick another $var" ;;
	esac
	die "interface $port already exists in the root namespace and was not created by this lab; pick another $var"
}

# A root-namespace veth end for DPDK, its peer a port of a bridge in $NS_LAN.
root_port() {
	local port=$1 peer=$2 bridge=$3
	ip link add "$port" type veth peer name "$peer" netns "$NS_LAN"
	ip link set dev "$port" alias "$PORT_ALIAS"
	# Root end: no IP (DPDK owns it), IPv6 off so the kernel never emits
	# RS/DAD/MLD on it, promisc so AF_PACKET sees frames for the balancer's
	# MAC even if DPDK's view of the MAC differs, MTU 1500.
	if have_ipv6; then sysctl -qw "net.ipv6.conf.$port.disable_ipv6=1" >/dev/null; fi
	ip link set dev "$port" mtu 1500
	ethtool -K "$port" tx off >/dev/null
	LINKS+=("- $port")
	prep_if "$NS_LAN" "$peer"
	ip -n "$NS_LAN" link set "$peer" master "$bridge"
	ip -n "$NS_LAN" link set "$peer" up
	ip link set dev "$port" promisc on
	ip link set dev "$port" up
}
