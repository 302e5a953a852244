#!/usr/bin/env bash
# The labs' topology builder and helpers, shared by lab.sh and multitier.sh (sourced, not
# run). Both labs have one shape: a client behind a router, the router on a LAN (a Linux
# bridge in the namespace $NS_LAN), root-namespace veth ends on that LAN for DPDK, and
# server namespaces on the LAN (or on a second bridge). The functions below build, wait for,
# show and tear down that shape; each script says what goes where and which servers run.
#
# They use the caller's variables at call time: P, LOGDIR, NS_CLIENT, NS_ROUTER, NS_LAN,
# IF_CLIENT, IF_ROUTER_C, IF_ROUTER_L, IF_LAN_R, IF_BRIDGE, CLIENT_IP, ROUTER_CLIENT_IP,
# ROUTER_LAN_IP, PORT_ALIAS, WAIT_SECS, LINKS, and log/die/our_namespaces/have_ipv6.
# shellcheck disable=SC2154  # variables are defined by the sourcing script

have_ipv6() { [[ -d /proc/sys/net/ipv6 ]]; }

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

# -------------------------------------------------------- topology builder ---
# A switch: a plain bridge in $NS_LAN, no STP (nothing to loop), no forward delay, no
# multicast snooping (it floods like a dumb switch), no IPv6.
lan_bridge() {
	local br=$1
	ip -n "$NS_LAN" link add "$br" type bridge stp_state 0 forward_delay 0 mcast_snooping 0
	if have_ipv6; then nsysctl "$NS_LAN" "net.ipv6.conf.$br.disable_ipv6=1"; fi
	ip -n "$NS_LAN" link set "$br" up
}

# The clients' side: namespaces client, router and lan; the LAN bridge $IF_BRIDGE;
# client $CLIENT_IP/24 with its default route via the router; the router forwarding between
# $ROUTER_CLIENT_IP/24 and $ROUTER_LAN_IP/24 on the LAN.
client_router_lan() {
	log "creating namespaces"
	new_ns "$NS_CLIENT"
	new_ns "$NS_ROUTER"
	new_ns "$NS_LAN"
	lan_bridge "$IF_BRIDGE"

	log "client <-> router"
	veth "$NS_CLIENT" "$IF_CLIENT" "$NS_ROUTER" "$IF_ROUTER_C"
	ip -n "$NS_CLIENT" addr add "$CLIENT_IP/24" dev "$IF_CLIENT"
	ip -n "$NS_CLIENT" link set "$IF_CLIENT" up
	ip -n "$NS_CLIENT" route add default via "$ROUTER_CLIENT_IP"

	log "router <-> lan"
	veth "$NS_ROUTER" "$IF_ROUTER_L" "$NS_LAN" "$IF_LAN_R"
	ip -n "$NS_ROUTER" addr add "$ROUTER_CLIENT_IP/24" dev "$IF_ROUTER_C"
	ip -n "$NS_ROUTER" addr add "$ROUTER_LAN_IP/24" dev "$IF_ROUTER_L"
	# Router: forward; no reverse-path filtering (DSR is asymmetric: requests leave via the
	# LAN towards the balancer, replies come back from the servers); no ICMP redirects
	# (nothing should be "optimised" behind the balancer's back). Set all/default and per
	# device: the effective rp_filter is max(all, dev).
	nsysctl "$NS_ROUTER" net.ipv4.ip_forward=1 \
		net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
		"net.ipv4.conf.$IF_ROUTER_C.rp_filter=0" "net.ipv4.conf.$IF_ROUTER_L.rp_filter=0" \
		net.ipv4.conf.all.send_redirects=0 net.ipv4.conf.default.send_redirects=0 \
		"net.ipv4.conf.$IF_ROUTER_C.send_redirects=0" "net.ipv4.conf.$IF_ROUTER_L.send_redirects=0"
	ip -n "$NS_ROUTER" link set "$IF_ROUTER_C" up
	ip -n "$NS_ROUTER" link set "$IF_ROUTER_L" up
	ip -n "$NS_LAN" link set "$IF_LAN_R" master "$IF_BRIDGE"
	ip -n "$NS_LAN" link set "$IF_LAN_R" up
}

# A server namespace $P-NAME on bridge BRIDGE: its interface $P-NAME (bridge port $P-lNAME)
# with ADDR/24 and a default route via GW.
server_ns() {
	local name=$1 addr=$2 gw=$3 bridge=$4
	local ns="$P-$name" dev="$P-$name" lan="$P-l$name"
	new_ns "$ns"
	veth "$ns" "$dev" "$NS_LAN" "$lan"
	ip -n "$NS_LAN" link set "$lan" master "$bridge"
	ip -n "$NS_LAN" link set "$lan" up
	ip -n "$ns" addr add "$addr/24" dev "$dev"
	ip -n "$ns" link set "$dev" up
	ip -n "$ns" route add default via "$gw"
}

# Makes server $P-NAME a DSR real server for VIP, the classic LVS-DR way: the VIP on lo so
# the kernel accepts packets addressed to it, but never answers ARP for it (arp_ignore=1:
# only for addresses on the receiving interface) nor uses it as an ARP source
# (arp_announce=2). Only the balancer owns the VIP on the wire. The effective value is
# max(all, dev), so both are set.
dsr_real_server() {
	local name=$1 vip=$2
	local ns="$P-$name" dev="$P-$name"
	nsysctl "$ns" net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2 \
		"net.ipv4.conf.$dev.arp_ignore=1" "net.ipv4.conf.$dev.arp_announce=2"
	ip -n "$ns" addr add "$vip/32" dev lo
}

# Waits until server NAME answers http://ADDR/PATH from inside its own namespace (no
# dependency on the bridge or router, and it proves its veth is up). Its pid file
# $LOGDIR/NAME.pid is written only after bind(); while it is missing, `ALIVE...` (a
# command) must succeed or the server is taken for dead.
wait_http() {
	local name=$1 addr=$2 path=$3 deadline=$((SECONDS + WAIT_SECS))
	shift 3
	while ((SECONDS < deadline)); do
		if [[ -s "$LOGDIR/$name.pid" ]] &&
			nsx "$P-$name" curl -fsS --max-time 1 -o /dev/null "http://$addr$path" 2>/dev/null; then
			return 0
		fi
		if [[ ! -s "$LOGDIR/$name.pid" ]] && ! "$@"; then
			log "$name exited during startup; its stderr:"
			sed 's/^/    /' "$LOGDIR/$name.err" >&2 || true
			return 1
		fi
		sleep 0.1
	done
	log "$name did not answer http://$addr$path within ${WAIT_SECS}s; its stderr:"
	sed 's/^/    /' "$LOGDIR/$name.err" >&2 || true
	return 1
}

# Stops a server this lab started: the pid in FILE, if that process really is PROGRAM
# (never some other process that reused the pid); the pid file goes.
stop_pidfile() {
	local pf=$1 what=$2 pid
	pid=$(cat "$pf" 2>/dev/null || true)
	if [[ "$pid" =~ ^[0-9]+$ ]] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q "$what"; then
		kill -TERM "$pid" 2>/dev/null || true
	fi
	rm -f "$pf"
}

# Tears the topology down (after the caller stopped its servers with stop_pidfile):
# whatever still runs in our namespaces, our root veths (their peers in $NS_LAN go with
# them), the namespaces; then waits until the root veths are really gone, so an immediate
# `up` can recreate them. lab.env (it describes a running lab) goes; the logs stay.
topo_down() {
	local ns i dev
	for ns in $(our_namespaces); do
		kill_ns_pids "$ns"
	done
	for dev in $(our_root_ports); do
		ip link del "$dev" 2>/dev/null || true
	done
	for ns in $(our_namespaces); do
		ip netns del "$ns" 2>/dev/null || true
	done
	# Namespace teardown is asynchronous in the kernel.
	for ((i = 0; i < 50; i++)); do
		[[ -z "$(our_root_ports)" ]] && break
		sleep 0.1
	done
	dev=$(our_root_ports | tr '\n' ' ')
	if [[ -n "$dev" ]]; then
		log "warning: root-namespace veth(s) still present after down: $dev"
	fi
	rm -f "$LOGDIR/lab.env"
	return 0
}

# The topology as it is: our root veths, and each namespace's addresses, routes and (the
# lan namespace) bridge ports.
topo_status() {
	local ns dev br
	echo "== namespaces"
	our_namespaces | sed 's/^/  /'
	echo "== root namespace ports (ifalias $PORT_ALIAS)"
	for dev in $(our_root_ports); do
		ip -d -br link show dev "$dev" | sed 's/^/  /'
	done
	for ns in $(our_namespaces); do
		echo "== $ns"
		ip -n "$ns" -br addr show | sed 's/^/  /'
		ip -n "$ns" route show | sed 's/^/  route: /'
		if [[ "$ns" == "$NS_LAN" ]]; then
			for br in $(ip -n "$ns" -br link show type bridge | awk '{print $1}'); do
				ip -n "$ns" -br link show master "$br" 2>/dev/null | sed "s/^/  $br port: /"
			done
		fi
	done
}
