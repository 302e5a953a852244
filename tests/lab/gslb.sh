#!/usr/bin/env bash
# Switchyard two-site GSLB lab: two sites joined by a WAN router, each with a Switchyard
# node, two HTTP servers and a greeting server (a line protocol standing in for POP3); two
# client namespaces in two regions, each with unbound as its recursive resolver; a parent
# name server (knot) for lab.test that delegates gslb.lab.test to the sites' DNS addresses
# (real NS delegation: the clients never name a site's DNS address).
#
#   region a: ca 10.40.1.2 (unbound) --+                +-- br1: site 1 10.41.0.0/24
#   region b: cb 10.40.2.2 (unbound) --+-- wan router --+      n1 port $P-p1: 10.41.0.10, VIPs .100 (web)
#   parent:   knot 10.40.0.2 ----------+  (.1 on each)  |      .110 (greet), DNS .53, SNAT .50
#                                                       |      w11 .11, w12 .12 (HTTP), g1 .21 (greet, DSR)
#                                                       +-- br2: site 2 10.42.0.0/24, the same shape
#                                                              (n2, w21, w22, g2)
#
# The nodes' namespaces ($P-n1, $P-n2) get their DPDK port ($P-p1, $P-p2, no IP) and nothing
# else: the tests (tests/gslb.rs) or the operator start switchyard in them with
# conf/gslb-site{1,2}.toml. lab.test's zone (knot): ns1.gslb / ns2.gslb -> 10.41.0.53 and
# 10.42.0.53, delegated with glue.
#
# Usage:
#   gslb.sh up | down | status
#   gslb.sh stop SERVER | start SERVER   # SERVER: w11 w12 g1 w21 w22 g2
#   gslb.sh exec NAME cmd...             # = ip netns exec ${LAB_PREFIX}-NAME cmd...
# Environment (defaults):
#   LAB_PREFIX=gs          prefix of every namespace / bridge / veth name
#   LAB_LOGDIR=/tmp/${LAB_PREFIX}-lab   server logs (NAME.log: one line per request or
#                          connection, NAME.err, NAME.pid), knot's and unbound's files
#   LAB_WAIT_SECS=10       how long `up` waits for each server
#   LAB_ZONE_COPY=0        1: also knot with a static copy of gslb.lab.test at 10.41.0.54 on
#                          site 1's LAN (namespace $P-kz), the DNS performance baseline
#
# Needs root, iproute2, ethtool, curl, dig, knot, unbound and Debian's /usr/bin/python3.
set -Eeuo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
readonly P="${LAB_PREFIX:-gs}"
readonly LOGDIR="${LAB_LOGDIR:-/tmp/${P}-lab}"
readonly WAIT_SECS="${LAB_WAIT_SECS:-10}"
readonly ZONE_COPY="${LAB_ZONE_COPY:-0}"
readonly PY=/usr/bin/python3
readonly PORT_ALIAS="switchyard-gslb:$P"
readonly NS_LAN="$P-lan" NS_WAN="$P-wan"
# Unused by this lab's shape, named for common.sh.
readonly IF_BRIDGE="$P-br1"
LINKS=()
UP_OK=0

log() { printf '[gslb.sh] %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}
# shellcheck source=common.sh
source "$SCRIPT_DIR/common.sh"

our_namespaces() {
	ip netns list 2>/dev/null | awk '{print $1}' |
		grep -E "^${P}-(lan|wan|parent|ca|cb|kz|n[12]|w[12][12]|g[12])\$" | sort -V || true
}

# Each site: its number, the HTTP servers and the greeting server.
readonly SERVERS=(w11 w12 g1 w21 w22 g2)
server_site() { echo "${1:1:1}"; }
server_addr() {
	local s=$1 n=${1:1:1}
	case "$s" in
	w?1) echo "10.4$n.0.11" ;;
	w?2) echo "10.4$n.0.12" ;;
	g?) echo "10.4$n.0.21" ;;
	esac
}

# A WAN router port: a veth from the router to namespace NS (or to bridge BR in $NS_LAN),
# the router's side ROUTER_ADDR/24.
wan_link() {
	local name=$1 router_addr=$2
	veth "$NS_WAN" "$P-r$name" "$3" "$4"
	ip -n "$NS_WAN" addr add "$router_addr/24" dev "$P-r$name"
	ip -n "$NS_WAN" link set "$P-r$name" up
}

# A client or parent namespace on its own WAN link.
edge_ns() {
	local name=$1 addr=$2 gw=$3
	new_ns "$P-$name"
	wan_link "$name" "$gw" "$P-$name" "$P-$name"
	ip -n "$P-$name" addr add "$addr/24" dev "$P-$name"
	ip -n "$P-$name" link set "$P-$name" up
	ip -n "$P-$name" route add default via "$gw"
}

start_server() {
	local s=$1 ns="$P-$1"
	rm -f "$LOGDIR/$s.pid"
	if [[ "$s" == g* ]]; then
		setsid -w ip netns exec "$ns" "$PY" "$SCRIPT_DIR/greet_server.py" "$s" --port 110 \
			--log "$LOGDIR/$s.log" --pidfile "$LOGDIR/$s.pid" \
			</dev/null >>"$LOGDIR/$s.err" 2>&1 &
	else
		setsid -w ip netns exec "$ns" "$PY" "$SCRIPT_DIR/http_backend.py" "$s" --bind 0.0.0.0 \
			--port 80 --log "$LOGDIR/$s.log" --pidfile "$LOGDIR/$s.pid" \
			</dev/null >>"$LOGDIR/$s.err" 2>&1 &
	fi
	local deadline=$((SECONDS + WAIT_SECS))
	until [[ -s "$LOGDIR/$s.pid" ]]; do
		((SECONDS < deadline)) || die "$s did not start; $(cat "$LOGDIR/$s.err")"
		sleep 0.05
	done
}

stop_server() {
	local s=$1 what=http_backend.py
	[[ "$s" == g* ]] && what=greet_server.py
	stop_pidfile "$LOGDIR/$s.pid" "$what"
}

# knot in namespace NS on ADDR, authoritative for ZONE from the zone file text on stdin;
# its files in $LOGDIR/knot-NAME.
knot_serve() {
	local name=$1 ns=$2 addr=$3 zone=$4 d="$LOGDIR/knot-$1"
	rm -rf "$d"
	mkdir -p "$d"
	cat >"$d/$zone.zone"
	cat >"$d/knot.conf" <<-EOF
		server:
		    rundir: "$d"
		    user: root:root
		    listen: $addr@53
		log:
		  - target: stderr
		    any: info
		database:
		    storage: "$d/db"
		template:
		  - id: default
		    storage: "$d"
		zone:
		  - domain: $zone
		    file: $zone.zone
	EOF
	setsid -w ip netns exec "$ns" knotd -c "$d/knot.conf" </dev/null >>"$LOGDIR/knot-$name.err" 2>&1 &
	local deadline=$((SECONDS + WAIT_SECS))
	until nsx "$ns" dig +short +time=1 +tries=1 @"$addr" "$zone" SOA 2>/dev/null | grep -q .; do
		((SECONDS < deadline)) || die "knot ($name) did not answer; $(cat "$LOGDIR/knot-$name.err")"
		sleep 0.1
	done
}

# The parent: lab.test, delegating gslb.lab.test to both sites with glue.
knot_up() {
	knot_serve parent "$P-parent" 10.40.0.2 lab.test <<-EOF
		\$ORIGIN lab.test.
		\$TTL 60
		@        SOA ns.lab.test. hostmaster.lab.test. 1 3600 600 86400 60
		@        NS  ns.lab.test.
		ns       A   10.40.0.2
		gslb     NS  ns1.gslb.lab.test.
		gslb     NS  ns2.gslb.lab.test.
		ns1.gslb A   10.41.0.53
		ns2.gslb A   10.42.0.53
	EOF
}

# LAB_ZONE_COPY=1: knot serving a static copy of gslb.lab.test on site 1's LAN (10.41.0.54,
# namespace $P-kz): the DNS performance baseline (perf/dns-lab), on the same path as site
# 1's DNS address.
knot_copy_up() {
	server_ns kz 10.41.0.54 10.41.0.1 "$P-br1"
	wait_links
	knot_serve copy "$P-kz" 10.41.0.54 gslb.lab.test <<-EOF
		\$ORIGIN gslb.lab.test.
		\$TTL 60
		@      SOA ns1.gslb.lab.test. hostmaster.gslb.lab.test. 1 3600 600 86400 60
		@      NS  ns1.gslb.lab.test.
		ns1    A   10.41.0.54
		www    10  A   10.41.0.100
		near   5   A   10.41.0.100
		site1  5   A   10.41.0.100
		site2  5   A   10.42.0.100
		closed 0   A   10.41.0.100
	EOF
}

unbound_up() {
	local c=$1 addr=$2 f="$LOGDIR/$1.unbound.conf"
	cat >"$f" <<-EOF
		server:
		    interface: $addr
		    interface: 127.0.0.1
		    port: 53
		    do-ip6: no
		    access-control: 10.40.0.0/16 allow
		    access-control: 127.0.0.0/8 allow
		    username: ""
		    chroot: ""
		    directory: "$LOGDIR"
		    pidfile: "$LOGDIR/$c.unbound.pid"
		    use-syslog: no
		    logfile: ""
		    do-daemonize: no
		    verbosity: 1
		    module-config: "iterator"
		    domain-insecure: "lab.test"
		    # test. is special-use (RFC 6761): unbound answers it locally unless told not to.
		    local-zone: "test." nodefault
		    do-not-query-localhost: no
		    cache-max-negative-ttl: 1
		    infra-host-ttl: 10
		    prefetch: no
		stub-zone:
		    name: "lab.test"
		    stub-addr: 10.40.0.2
		remote-control:
		    control-enable: no
	EOF
	setsid -w ip netns exec "$P-$c" unbound -d -c "$f" </dev/null >>"$LOGDIR/$c.unbound.err" 2>&1 &
	# The client's resolver: `ip netns exec` bind-mounts /etc/netns/NS/resolv.conf.
	mkdir -p "/etc/netns/$P-$c"
	echo "nameserver $addr" >"/etc/netns/$P-$c/resolv.conf"
	local deadline=$((SECONDS + WAIT_SECS))
	until nsx "$P-$c" dig +short +time=1 +tries=1 @"$addr" ns.lab.test A 2>/dev/null | grep -q 10.40.0.2; do
		((SECONDS < deadline)) || { UP_OK=${KEEP_ON_FAIL:-0}; die "unbound of $c did not answer; $(cat "$LOGDIR/$c.unbound.err")"; }
		sleep 0.1
	done
}

cmd_up() {
	need_root
	for t in knotd unbound curl dig ethtool; do
		command -v "$t" >/dev/null || die "missing tool: $t"
	done
	cmd_down
	trap on_up_exit EXIT
	trap 'log "command failed at line $LINENO: $BASH_COMMAND"' ERR
	trap 'exit 130' INT
	trap 'exit 143' TERM HUP
	mkdir -p "$LOGDIR"

	log "WAN router, sites' switches"
	new_ns "$NS_WAN"
	new_ns "$NS_LAN"
	nsysctl "$NS_WAN" net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 \
		net.ipv4.conf.default.rp_filter=0 net.ipv4.conf.all.send_redirects=0 \
		net.ipv4.conf.default.send_redirects=0
	local n
	for n in 1 2; do
		lan_bridge "$P-br$n"
		wan_link "s$n" "10.4$n.0.1" "$NS_LAN" "$P-ls$n"
		ip -n "$NS_LAN" link set "$P-ls$n" master "$P-br$n"
		ip -n "$NS_LAN" link set "$P-ls$n" up
	done
	log "parent name server, clients"
	edge_ns parent 10.40.0.2 10.40.0.1
	edge_ns ca 10.40.1.2 10.40.1.1
	edge_ns cb 10.40.2.2 10.40.2.1
	for n in 1 2; do
		log "site $n: node $P-n$n (port $P-p$n), servers"
		new_ns "$P-n$n"
		veth "$P-n$n" "$P-p$n" "$NS_LAN" "$P-lp$n"
		ip -n "$NS_LAN" link set "$P-lp$n" master "$P-br$n"
		ip -n "$NS_LAN" link set "$P-lp$n" up
		ip -n "$P-n$n" link set dev "$P-p$n" promisc on
		ip -n "$P-n$n" link set dev "$P-p$n" up
		ip -n "$P-n$n" link set lo up
	done
	local s
	for s in "${SERVERS[@]}"; do
		n=$(server_site "$s")
		server_ns "$s" "$(server_addr "$s")" "10.4$n.0.1" "$P-br$n"
		# The greeting servers are DSR real servers of their site's greet VIP.
		if [[ "$s" == g* ]]; then dsr_real_server "$s" "10.4$n.0.110"; fi
	done
	wait_links
	for s in "${SERVERS[@]}"; do start_server "$s"; done
	knot_up
	if ((ZONE_COPY)); then knot_copy_up; fi
	unbound_up ca 10.40.1.2
	unbound_up cb 10.40.2.2
	for s in "${SERVERS[@]}"; do : >"$LOGDIR/$s.log"; done
	UP_OK=1
	trap - EXIT ERR INT TERM HUP
	log "up: sites 10.41.0.0/24 and 10.42.0.0/24, clients ca (region a) and cb (region b); logs in $LOGDIR"
}

cmd_down() {
	local pf
	for pf in "$LOGDIR"/*.pid; do
		[[ -e "$pf" ]] || continue
		case "$pf" in
		*/g?.pid) stop_pidfile "$pf" greet_server.py ;;
		*.unbound.pid) stop_pidfile "$pf" unbound ;;
		*) stop_pidfile "$pf" http_backend.py ;;
		esac
	done
	topo_down
	rm -rf "/etc/netns/$P-ca" "/etc/netns/$P-cb"
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
status) topo_status ;;
stop) stop_server "${2:?server}" ;;
start) start_server "${2:?server}" ;;
exec)
	shift
	name=${1:?name}
	shift
	exec ip netns exec "$P-$name" "$@"
	;;
*) usage ;;
esac
