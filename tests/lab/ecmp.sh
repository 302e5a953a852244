#!/usr/bin/env bash
# Switchyard ECMP lab: an edge router running BIRD with multipath BGP to three Switchyard
# nodes, kernel ECMP with L4 hashing, a client behind the router, two DSR backends.
#
#   client ns 10.20.9.2 --- router ns 10.20.9.1 | 10.20.0.1 --- lan bridge ${P}-br
#                           BIRD AS 65000, ECMP                  |- node n1 port ${P}-p1 (10.20.0.10)
#                           fib_multipath_hash_policy=1          |- node n2 port ${P}-p2 (10.20.0.20)
#                                                                |- node n3 port ${P}-p3 (10.20.0.30)
#                                                                |- b1 10.20.0.11, b2 10.20.0.12
#                                                                   (HTTP :80; VIP 10.99.0.100 on lo)
#
# Each node namespace ${P}-nN gets its DPDK port (no IP) and its BIRD (conf/bird.conf with the
# node's router id and address, AS 65001, control socket $LOGDIR/bird-nN.ctl); the tests (or
# the operator) start switchyard there with conf/ecmp-node.toml (per node: its address, port
# and file prefix). The router's BIRD (AS 65000, $LOGDIR/bird-router.ctl) takes the VIP's /32
# from every node that announces it and installs one multipath route.
#
# Usage:
#   ecmp.sh up | down | status
#   ecmp.sh route                 # the router's route to the VIP
#   ecmp.sh exec NAME cmd...      # = ip netns exec ${LAB_PREFIX}-NAME cmd...
# Environment (defaults):
#   LAB_PREFIX=ec          prefix of every namespace / bridge / veth name
#   LAB_LOGDIR=/tmp/${LAB_PREFIX}-lab   backend logs (bN.log), BIRD configs, logs, sockets
#   LAB_WAIT_SECS=10       how long `up` waits for each server
#
# Needs root, iproute2, ethtool, curl, bird2 and Debian's /usr/bin/python3.
set -Eeuo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
REPO="$(cd "$SCRIPT_DIR/../.." && pwd)"
readonly REPO
readonly P="${LAB_PREFIX:-ec}"
readonly LOGDIR="${LAB_LOGDIR:-/tmp/${P}-lab}"
readonly WAIT_SECS="${LAB_WAIT_SECS:-10}"
readonly PY=/usr/bin/python3
readonly PORT_ALIAS="switchyard-ecmp:$P"
readonly CLIENT_IP=10.20.9.2 ROUTER_CLIENT_IP=10.20.9.1 ROUTER_LAN_IP=10.20.0.1
readonly VIP=10.99.0.100
readonly NS_CLIENT="$P-client" NS_ROUTER="$P-router" NS_LAN="$P-lan"
readonly IF_CLIENT="$P-cl" IF_ROUTER_C="$P-rc" IF_ROUTER_L="$P-rl" IF_LAN_R="$P-lr"
readonly IF_BRIDGE="$P-br"
readonly NODES=(1 2 3)
LINKS=()
UP_OK=0

log() { printf '[ecmp.sh] %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}
# shellcheck source=common.sh
source "$SCRIPT_DIR/common.sh"

our_namespaces() {
	ip netns list 2>/dev/null | awk '{print $1}' |
		grep -E "^${P}-(client|router|lan|n[0-9]|b[0-9])\$" | sort -V || true
}

node_addr() { echo "10.20.0.$((10 * $1))"; }

start_bird() {
	local name=$1 ns=$2 conf=$3
	setsid -w ip netns exec "$ns" bird -f -c "$conf" -s "$LOGDIR/bird-$name.ctl" \
		</dev/null >>"$LOGDIR/bird-$name.log" 2>&1 &
	local deadline=$((SECONDS + WAIT_SECS))
	until [[ -S "$LOGDIR/bird-$name.ctl" ]]; do
		((SECONDS < deadline)) || die "BIRD ($name) did not start: $(cat "$LOGDIR/bird-$name.log")"
		sleep 0.05
	done
}

router_bird() {
	local n f="$LOGDIR/bird-router.conf"
	{
		cat <<-EOF
			router id $ROUTER_LAN_IP;
			protocol device { scan time 2; }
			# One multipath route per VIP, over every node that announces it (ECMP).
			protocol kernel {
			    merge paths on;
			    ipv4 { import none; export all; };
			}
		EOF
		for n in "${NODES[@]}"; do
			cat <<-EOF
				protocol bgp n$n {
				    local $ROUTER_LAN_IP as 65000;
				    neighbor $(node_addr "$n") as 65001;
				    hold time 3;
				    keepalive time 1;
				    connect retry time 1;
				    error wait time 1, 10;
				    ipv4 { import all; export none; };
				}
			EOF
		done
	} >"$f"
	start_bird router "$NS_ROUTER" "$f"
}

node_bird() {
	local n=$1 a f="$LOGDIR/bird-n$1.conf"
	a=$(node_addr "$n")
	sed -e "s/router id 10.20.0.10;/router id $a;/" -e "s/local 10.20.0.10 as/local $a as/" \
		"$REPO/conf/bird.conf" >"$f"
	start_bird "n$n" "$P-n$n" "$f"
}

cmd_up() {
	need_root
	for t in bird birdc curl ethtool; do
		command -v "$t" >/dev/null || die "missing tool: $t"
	done
	cmd_down
	trap on_up_exit EXIT
	trap 'log "command failed at line $LINENO: $BASH_COMMAND"' ERR
	trap 'exit 130' INT
	trap 'exit 143' TERM HUP
	mkdir -p "$LOGDIR"
	client_router_lan
	# Kernel ECMP hashing on the 5-tuple: each client connection picks a node.
	nsysctl "$NS_ROUTER" net.ipv4.fib_multipath_hash_policy=1
	local n i
	for n in "${NODES[@]}"; do
		log "node n$n ($(node_addr "$n")), port $P-p$n"
		new_ns "$P-n$n"
		veth "$P-n$n" "$P-p$n" "$NS_LAN" "$P-lp$n"
		ip -n "$NS_LAN" link set "$P-lp$n" master "$IF_BRIDGE"
		ip -n "$NS_LAN" link set "$P-lp$n" up
		ip -n "$P-n$n" link set dev "$P-p$n" promisc on
		ip -n "$P-n$n" link set dev "$P-p$n" up
	done
	for i in 1 2; do
		log "backend b$i (10.20.0.1$i)"
		server_ns "b$i" "10.20.0.1$i" "$ROUTER_LAN_IP" "$IF_BRIDGE"
		dsr_real_server "b$i" "$VIP"
	done
	wait_links
	for i in 1 2; do
		rm -f "$LOGDIR/b$i.pid"
		setsid -w ip netns exec "$P-b$i" "$PY" "$SCRIPT_DIR/http_backend.py" "b$i" --bind 0.0.0.0 \
			--port 80 --log "$LOGDIR/b$i.log" --pidfile "$LOGDIR/b$i.pid" \
			</dev/null >>"$LOGDIR/b$i.err" 2>&1 &
		wait_http "b$i" "10.20.0.1$i" /health true
		: >"$LOGDIR/b$i.log"
	done
	router_bird
	for n in "${NODES[@]}"; do node_bird "$n"; done
	UP_OK=1
	trap - EXIT ERR INT TERM HUP
	log "up: client $CLIENT_IP -> router (BIRD, ECMP) -> nodes 10.20.0.{10,20,30}; VIP $VIP; logs in $LOGDIR"
}

cmd_down() {
	local pf
	for pf in "$LOGDIR"/b*.pid; do
		[[ -e "$pf" ]] && stop_pidfile "$pf" http_backend.py
	done
	topo_down
	rm -f "$LOGDIR"/bird-*.ctl
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
status) topo_status ;;
route) ip -n "$NS_ROUTER" route show "$VIP" ;;
exec)
	shift
	name=${1:?name}
	shift
	exec ip netns exec "$P-$name" "$@"
	;;
*) usage ;;
esac
