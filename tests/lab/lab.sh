#!/usr/bin/env bash
# Switchyard lab: a client, a router, a switch (Linux bridge), N backends
# (HTTP + DNS), all in network namespaces, plus ONE veth end ($LAB_PORT; two
# in mode gateway2) left in the root namespace for DPDK's net_af_packet PMD.
#
# LAB_MODE=dsr (default): direct server return.
#   client ns            router ns                    lan ns (bridge)          root ns
#   10.20.9.2/24 ---- 10.20.9.1/24                  +-----------+
#   gw 10.20.9.1         10.20.0.1/24 ------------- |           | ------------ $LAB_PORT (no IP; DPDK owns it;
#                                                   |  ${P}-br  |               balancer = 10.20.0.10 + VIP .100)
#   backend ns ${P}-bI   10.20.0.(10+I)/24 -------- |           |
#                        VIP 10.20.0.100/32 on lo   +-----------+
#                        gw 10.20.0.1 (replies go straight to the router: DSR)
#
# LAB_MODE=proxy: full NAT, one-arm. Same wiring and addresses as dsr, but
#   the backends have no VIP on lo (and no arp_ignore/arp_announce). The
#   balancer source-NATs to its own 10.20.0.10, which is on-link for them.
#
# LAB_MODE=gateway: one-arm gateway. Same single bridge, but the backends are
#   in 10.20.1.0/24: 10.20.1.(10+I)/24, default route via 10.20.1.1 (the
#   balancer's second address on $LAB_PORT). The router routes 10.20.1.0/24
#   via 10.20.0.10, so the client reaches the servers only through the balancer.
#
# LAB_MODE=gateway2: two-arm gateway. A second root-namespace veth end
#   $LAB_PORT2 whose peer is on a second bridge ${P}-br2 (lan ns) that only
#   the backends are on: 10.20.2.(10+I)/24, default route via 10.20.2.1 (the
#   balancer's inside address on $LAB_PORT2). The router routes 10.20.2.0/24
#   via 10.20.0.10 (the balancer's outside address on $LAB_PORT).
#
# LAB_PAIR=1 (with dsr, proxy or gateway): an HA pair instead of one balancer.
#   No root-namespace port; two node namespaces ${P}-na and ${P}-nb, each with a
#   veth end ${P}-pa / ${P}-pb (no IP; the node's DPDK owns it) whose peer is a
#   port of the LAN bridge. Switchyard and keepalived run inside them (the
#   tests start them; conf/pair-{a,b}.toml, conf/keepalived-{a,b}.conf): node a
#   10.20.0.10, node b 10.20.0.20; floating (keepalived moves them): the VIP,
#   the SNAT address 10.20.0.50 (proxy) and the servers' gateway 10.20.1.1
#   (gateway; the nodes' own addresses there are 10.20.1.2 and 10.20.1.3). In
#   gateway mode the router reaches 10.20.1.0/24 via the VIP.
#
# Every backend, in every mode, runs http_backend.py on :80 and dnsmasq (DNS
# only: no DHCP, no resolv.conf, no hosts file) on UDP+TCP :53, bound to the
# wildcard address so a query sent to the VIP (dsr) is answered from the VIP:
#   who.lab.test TXT "bI"  (the backend's name)
#   www.lab.test A 10.20.9.80
#   anything else in lab.test: NXDOMAIN; outside lab.test: REFUSED
#
# Usage:
#   lab.sh up | down | status
#   lab.sh exec NAME cmd...      # = ip netns exec ${LAB_PREFIX}-NAME cmd...
#                                #   NAME: client, router, lan, b1, b2, ...
# Environment (defaults):
#   LAB_MODE=dsr           dsr | proxy | gateway | gateway2 (see above).
#                          `down` and `status` do not need it (status reads
#                          the mode `up` recorded in $LAB_LOGDIR/lab.env).
#   LAB_PREFIX=sy          prefix of every namespace / bridge / veth name
#   LAB_PORT=yard0         root-namespace veth end for DPDK (must be unique
#                          per parallel lab too, it lives in the shared root ns)
#   LAB_PORT2=${LAB_PORT}b gateway2 only: second root-namespace veth end (the
#                          balancer's inside port). At most 15 chars, so with
#                          the default LAB_PORT may be at most 14 chars.
#   LAB_BACKENDS=2         number of backends
#   LAB_LOGDIR=/tmp/${LAB_PREFIX}-lab   per backend bN: HTTP request log
#                          (bN.log), HTTP server stderr (bN.err), pid file
#                          (bN.pid); DNS query log (bN.dns.log, one
#                          "query[TYPE] NAME from IP" line per query, preceded
#                          by a serial and the client's IP/port), dnsmasq
#                          stderr (bN.dns.err) and pid file (bN.dns.pid);
#                          plus lab.env (the mode's addressing as KEY=VALUE
#                          lines, written by `up`, removed by `down`)
#   LAB_WAIT_SECS=10       how long `up` waits for each backend to accept
#
# Needs root, iproute2, ethtool, curl, dnsmasq (Debian: dnsmasq-base), dig
# (bind9-dnsutils) and Debian's /usr/bin/python3.
# Backend request/query logs are kept after `down` (handy post-mortem); `up`
# truncates them.
set -Eeuo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
readonly P="${LAB_PREFIX:-sy}"
readonly PORT="${LAB_PORT:-yard0}"
readonly PORT2="${LAB_PORT2:-${PORT}b}"
readonly MODE="${LAB_MODE:-dsr}"
readonly NB="${LAB_BACKENDS:-2}"
readonly PAIR="${LAB_PAIR:-0}"
readonly LOGDIR="${LAB_LOGDIR:-/tmp/${P}-lab}"
readonly WAIT_SECS="${LAB_WAIT_SECS:-10}"
readonly PY=/usr/bin/python3 # system python: stdlib only, not the pyenv one
readonly BACKEND_PY="$SCRIPT_DIR/http_backend.py"
readonly DNSMASQ=dnsmasq

# Fixed lab addressing. Every address lives inside our own namespaces, so
# parallel labs with different prefixes do not collide.
readonly CLIENT_IP=10.20.9.2 ROUTER_CLIENT_IP=10.20.9.1
readonly ROUTER_LAN_IP=10.20.0.1 VIP=10.20.0.100
# The balancer's own address on the LAN (outside address in gateway modes).
readonly BALANCER_IP=10.20.0.10

# What the mode decides (see the header):
#   BACKEND_NET   backends are $BACKEND_NET.(10+I)/24
#   BACKEND_GW    their default route
#   VIP_ON_LO     1: VIP on the backends' lo + arp_ignore/arp_announce (DSR)
#   SERVER_ROUTE  prefix the router reaches via the balancer ("" = none)
#   INSIDE_IP     the balancer's address on the backends' subnet, if it
#                 has one there (gateway modes)
case "$MODE" in
dsr) BACKEND_NET=10.20.0 BACKEND_GW=$ROUTER_LAN_IP VIP_ON_LO=1 SERVER_ROUTE="" INSIDE_IP="" ;;
proxy) BACKEND_NET=10.20.0 BACKEND_GW=$ROUTER_LAN_IP VIP_ON_LO=0 SERVER_ROUTE="" INSIDE_IP="" ;;
gateway) BACKEND_NET=10.20.1 BACKEND_GW=10.20.1.1 VIP_ON_LO=0 SERVER_ROUTE=10.20.1.0/24 INSIDE_IP=10.20.1.1 ;;
gateway2) BACKEND_NET=10.20.2 BACKEND_GW=10.20.2.1 VIP_ON_LO=0 SERVER_ROUTE=10.20.2.0/24 INSIDE_IP=10.20.2.1 ;;
*) BACKEND_NET="" BACKEND_GW="" VIP_ON_LO=0 SERVER_ROUTE="" INSIDE_IP="" ;; # rejected by validate
esac
readonly BACKEND_NET BACKEND_GW VIP_ON_LO SERVER_ROUTE INSIDE_IP
backend_addr() { echo "$BACKEND_NET.$((10 + $1))"; }
# What the router reaches the servers' subnet through: the balancer, or a pair's VIP.
server_route_via() { if ((PAIR)); then echo "$VIP"; else echo "$BALANCER_IP"; fi; }

# Namespace names.
readonly NS_CLIENT="$P-client" NS_ROUTER="$P-router" NS_LAN="$P-lan"
# Interface names (kernel limit: 15 chars, IFNAMSIZ-1). Each veth is created
# with both ends directly in their target namespaces, so apart from $PORT no
# name ever appears in the root namespace.
readonly IF_CLIENT="$P-cl"     # client ns, towards router
readonly IF_ROUTER_C="$P-rc"   # router ns, towards client
readonly IF_ROUTER_L="$P-rl"   # router ns, towards the LAN
readonly IF_LAN_R="$P-lr"      # lan ns bridge port for the router
readonly IF_LAN_PORT="$P-lp"   # lan ns bridge port, peer of $PORT
readonly IF_BRIDGE="$P-br"     # the switch
readonly IF_LAN_PORT2="$P-lp2" # gateway2: lan ns port on $IF_BRIDGE2, peer of $PORT2
readonly IF_BRIDGE2="$P-br2"   # gateway2: the backends' own switch
if_backend() { echo "$P-b$1"; }   # backend ns, towards the LAN
if_lan_backend() { echo "$P-lb$1"; } # lan ns bridge port for backend $1
ns_backend() { echo "$P-b$1"; }

# Written as the root veths' ifalias so `down` only ever deletes a $PORT (or
# $PORT2) that this script created (never, say, a real NIC that happens to be
# named so), and finds both without being told LAB_PORT/LAB_PORT2/LAB_MODE.
readonly PORT_ALIAS="switchyard-lab:$P"

log() { printf 'lab[%s]: %s\n' "$P" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# shellcheck source=common.sh
. "$SCRIPT_DIR/common.sh"

# ---------------------------------------------------------------- checks ---
validate() {
	[[ "$P" =~ ^[A-Za-z0-9_-]+$ ]] || die "LAB_PREFIX '$P' must match [A-Za-z0-9_-]+"
	[[ -n "$BACKEND_NET" ]] || die "LAB_MODE '$MODE' must be one of: dsr proxy gateway gateway2"
	[[ "$NB" =~ ^[1-9][0-9]*$ ]] || die "LAB_BACKENDS '$NB' must be a positive integer"
	[[ "$PAIR" =~ ^[01]$ ]] || die "LAB_PAIR '$PAIR' must be 0 or 1"
	if ((PAIR)) && [[ "$MODE" == gateway2 ]]; then die "LAB_PAIR=1 takes dsr, proxy or gateway"; fi
	((NB <= 89)) || die "LAB_BACKENDS must be <= 89 (backend addresses are 10.20.0.11..99, .100 is the VIP)"
	[[ "$WAIT_SECS" =~ ^[0-9]+$ ]] || die "LAB_WAIT_SECS '$WAIT_SECS' must be an integer"
	local n
	for n in "$PORT" "$IF_CLIENT" "$IF_ROUTER_C" "$IF_ROUTER_L" "$IF_LAN_R" \
		"$IF_LAN_PORT" "$IF_BRIDGE" "$(if_backend "$NB")" "$(if_lan_backend "$NB")"; do
		((${#n} <= 15)) || die "interface name '$n' is longer than 15 chars; use a shorter LAB_PREFIX/LAB_PORT"
	done
	[[ "$PORT" =~ ^[A-Za-z0-9_.-]+$ ]] || die "LAB_PORT '$PORT' is not a valid interface name"
	if [[ "$MODE" == gateway2 ]]; then
		for n in "$PORT2" "$IF_LAN_PORT2" "$IF_BRIDGE2"; do
			((${#n} <= 15)) || die "interface name '$n' is longer than 15 chars; use a shorter LAB_PREFIX/LAB_PORT, or set LAB_PORT2"
		done
		[[ "$PORT2" =~ ^[A-Za-z0-9_.-]+$ ]] || die "LAB_PORT2 '$PORT2' is not a valid interface name"
		[[ "$PORT2" != "$PORT" ]] || die "LAB_PORT2 must differ from LAB_PORT"
	fi
}

need_root_and_tools() {
	need_root
	local t
	for t in ip ethtool curl sysctl; do
		command -v "$t" >/dev/null || die "missing tool: $t"
	done
	command -v "$DNSMASQ" >/dev/null || die "missing tool: dnsmasq (Debian package dnsmasq-base)"
	command -v dig >/dev/null || die "missing tool: dig (Debian package bind9-dnsutils)"
	[[ -x "$PY" ]] || die "missing $PY (Debian's system python)"
	[[ -r "$BACKEND_PY" ]] || die "missing $BACKEND_PY"
}

# Our namespaces, whatever LAB_BACKENDS was when `up` ran.
our_namespaces() {
	ip netns list 2>/dev/null | awk '{print $1}' |
		grep -E "^${P}-(client|router|lan|b[0-9]+|n[ab])\$" | sort -V || true
}

# "ns dev" of every veth end we create; `up` waits for all of them to be
# operationally up (carrier is propagated asynchronously after `link set up`).
# shellcheck disable=SC2034  # used by common.sh (wait_links)
LINKS=()

# ------------------------------------------------------------------ down ---
cmd_down() {
	# Backend servers started by us (pid files), then the topology.
	local pf
	if [[ -d "$LOGDIR" ]]; then
		for pf in "$LOGDIR"/b*.pid; do
			[[ -e "$pf" ]] || continue
			case "$pf" in
			*.dns.pid) stop_pidfile "$pf" dnsmasq ;; # bN.dns.pid
			*) stop_pidfile "$pf" http_backend.py ;; # bN.pid
			esac
		done
	fi
	topo_down
}

# -------------------------------------------------------------------- up ---
UP_OK=0

BACKEND_PIDS=()
start_backend() {
	local i=$1 ns name
	ns=$(ns_backend "$i")
	name="b$i"
	: >"$LOGDIR/$name.log"
	: >"$LOGDIR/$name.err"
	rm -f "$LOGDIR/$name.pid"
	# `ip netns exec` execs (no fork); setsid detaches the server from our
	# session so it outlives this script and ignores terminal ^C. All fds are
	# redirected so callers that capture our output do not hang on them.
	setsid -w ip netns exec "$ns" "$PY" "$BACKEND_PY" "$name" --bind 0.0.0.0 --port 80 \
		--log "$LOGDIR/$name.log" --pidfile "$LOGDIR/$name.pid" \
		</dev/null >>"$LOGDIR/$name.err" 2>&1 &
	# Only used to notice an early death; the pid file is authoritative.
	BACKEND_PIDS[i]=$!
}

# dnsmasq as a DNS-only server for backend $1. Wildcard socket (no
# --bind-interfaces/--bind-dynamic): it answers UDP from the address the
# query was sent to (IP_PKTINFO), so DSR queries to the VIP on lo are answered
# from the VIP; TCP answers from the accepted socket's address anyway.
start_dns() {
	local i=$1 ns name
	ns=$(ns_backend "$i")
	name="b$i"
	: >"$LOGDIR/$name.dns.log"
	: >"$LOGDIR/$name.dns.err"
	rm -f "$LOGDIR/$name.dns.pid"
	# dnsmasq daemonizes itself (fork, setsid, stdio to /dev/null); its first
	# process exits only once the daemon is listening, non-zero if it failed.
	# --conf-file=/dev/null: ignore any /etc/dnsmasq.conf. No upstream servers
	# (--no-resolv) and lab.test is local, so nothing is ever forwarded.
	# --user/--group=root: no privilege drop, so the log and pid files in
	# $LOGDIR are written by the same user as everything else here.
	# --log-queries=extra: each line has a query serial and client addr/port.
	if ! nsx "$ns" "$DNSMASQ" --conf-file=/dev/null \
		--port=53 --no-resolv --no-hosts --no-poll --user=root --group=root \
		--local=/lab.test/ \
		--txt-record="who.lab.test,$name" \
		--host-record=www.lab.test,10.20.9.80 \
		--log-queries=extra --log-facility="$LOGDIR/$name.dns.log" \
		--pid-file="$LOGDIR/$name.dns.pid" \
		</dev/null >>"$LOGDIR/$name.dns.err" 2>&1; then
		log "dnsmasq for $name failed to start:"
		sed 's/^/    /' "$LOGDIR/$name.dns.err" >&2 || true
		return 1
	fi
}

# DNS readiness: the TXT answer over UDP and over TCP, from the backend's own
# namespace to its own address.
wait_dns() {
	local i=$1 ns name addr deadline udp tcp
	ns=$(ns_backend "$i")
	name="b$i"
	addr=$(backend_addr "$i")
	deadline=$((SECONDS + WAIT_SECS))
	while ((SECONDS < deadline)); do
		udp=$(nsx "$ns" dig +short +time=1 +tries=1 "@$addr" who.lab.test TXT 2>/dev/null || true)
		tcp=$(nsx "$ns" dig +short +tcp +time=1 +tries=1 "@$addr" who.lab.test TXT 2>/dev/null || true)
		[[ "$udp" == "\"$name\"" && "$tcp" == "\"$name\"" ]] && return 0
		sleep 0.1
	done
	log "dnsmasq of $name did not answer who.lab.test TXT within ${WAIT_SECS}s (udp '$udp', tcp '$tcp'); its stderr and log:"
	sed 's/^/    /' "$LOGDIR/$name.dns.err" "$LOGDIR/$name.dns.log" >&2 || true
	return 1
}

# Node NODE (a or b) of an HA pair: namespace $P-nNODE with the veth end $P-pNODE (the
# node's DPDK port, no IP, promiscuous), its peer a port of the LAN bridge.
pair_node() {
	local n=$1 ns="$P-n$1" dev="$P-p$1" lan="$P-lp$1"
	log "HA node $n: namespace $ns, port $dev"
	new_ns "$ns"
	veth "$ns" "$dev" "$NS_LAN" "$lan"
	ip -n "$NS_LAN" link set "$lan" master "$IF_BRIDGE"
	ip -n "$NS_LAN" link set "$lan" up
	ip -n "$ns" link set dev "$dev" promisc on
	ip -n "$ns" link set dev "$dev" up
}

cmd_up() {
	need_root_and_tools
	cmd_down
	# Any failure or interruption from here on tears the partial lab down.
	# Signals are turned into a plain exit so that the EXIT trap runs.
	trap on_up_exit EXIT
	trap 'log "command failed at line $LINENO: $BASH_COMMAND"' ERR
	trap 'exit 130' INT
	trap 'exit 143' TERM HUP

	if ((!PAIR)); then check_port_free "$PORT" LAB_PORT; fi
	if [[ "$MODE" == gateway2 ]]; then check_port_free "$PORT2" LAB_PORT2; fi
	mkdir -p "$LOGDIR"
	rm -f "$LOGDIR/lab.env"

	client_router_lan

	if [[ -n "$SERVER_ROUTE" ]]; then
		# Gateway modes: the servers' subnet is behind the balancer (a pair: behind
		# whichever node owns the VIP).
		ip -n "$NS_ROUTER" route add "$SERVER_ROUTE" via "$(server_route_via)"
	fi

	if ((PAIR)); then
		pair_node a
		pair_node b
	else
		log "$PORT (root ns) <-> lan"
		root_port "$PORT" "$IF_LAN_PORT" "$IF_BRIDGE"
	fi

	# The bridge the backends are on: the one LAN, or (gateway2) their own.
	local backend_bridge=$IF_BRIDGE
	if [[ "$MODE" == gateway2 ]]; then
		backend_bridge=$IF_BRIDGE2
		lan_bridge "$IF_BRIDGE2"
		log "$PORT2 (root ns) <-> lan, second bridge $IF_BRIDGE2"
		root_port "$PORT2" "$IF_LAN_PORT2" "$IF_BRIDGE2"
	fi

	local i addr
	for ((i = 1; i <= NB; i++)); do
		addr=$(backend_addr "$i")
		log "backend b$i ($addr)"
		server_ns "b$i" "$addr" "$BACKEND_GW" "$backend_bridge"
		if ((VIP_ON_LO)); then dsr_real_server "b$i" "$VIP"; fi
		start_backend "$i"
		start_dns "$i"
	done

	wait_links
	for ((i = 1; i <= NB; i++)); do
		wait_http "b$i" "$(backend_addr "$i")" /health kill -0 "${BACKEND_PIDS[i]}"
		wait_dns "$i"
	done
	# Start with empty request/query logs: the readiness probes above are not
	# traffic the tests sent.
	for ((i = 1; i <= NB; i++)); do
		: >"$LOGDIR/b$i.log"
		: >"$LOGDIR/b$i.dns.log"
	done
	write_env >"$LOGDIR/lab.env"

	# shellcheck disable=SC2034  # read by common.sh (on_up_exit)
	UP_OK=1
	trap - EXIT ERR INT TERM HUP
	log "up: client $CLIENT_IP -> router -> LAN 10.20.0.0/24; balancer port '$PORT' (root ns); VIP $VIP; $NB backend(s); logs in $LOGDIR"
	describe | while IFS= read -r line; do log "  $line"; done
}

# The mode's addressing as KEY=VALUE lines (no spaces, no quoting: both
# `source`-able and trivially parsed). Written to $LOGDIR/lab.env by `up`.
#   BALANCER_IP         the balancer's address on LAB_PORT (SNAT source in proxy)
#   BALANCER_GW         its next hop towards the clients (the router); the
#                       gateway modes need it for the backends' replies
#   BALANCER_INSIDE_IP  gateway: 2nd address on LAB_PORT; gateway2: address
#                       on LAB_PORT2; empty otherwise
#   SERVER_ROUTE(_VIA)  what the router routes via the balancer (gateway modes)
write_env() {
	local i backends=()
	for ((i = 1; i <= NB; i++)); do backends+=("$(backend_addr "$i")"); done
	local IFS=,
	cat <<-EOF
		LAB_MODE=$MODE
		LAB_PREFIX=$P
		LAB_PORT=$PORT
		LAB_PORT2=$([[ "$MODE" == gateway2 ]] && echo "$PORT2")
		CLIENT_IP=$CLIENT_IP
		CLIENT_GW=$ROUTER_CLIENT_IP
		ROUTER_LAN_IP=$ROUTER_LAN_IP
		LAN_NET=10.20.0.0/24
		VIP=$VIP
		BALANCER_IP=$BALANCER_IP
		BALANCER_INSIDE_IP=$INSIDE_IP
		BALANCER_GW=$ROUTER_LAN_IP
		BACKEND_NET=$BACKEND_NET.0/24
		BACKEND_GW=$BACKEND_GW
		BACKEND_VIP_ON_LO=$VIP_ON_LO
		BACKENDS=${backends[*]}
		SERVER_ROUTE=$SERVER_ROUTE
		SERVER_ROUTE_VIA=$([[ -n "$SERVER_ROUTE" ]] && server_route_via)
		LAB_PAIR=$PAIR
		NODE_A_NS=$( ((PAIR)) && echo "$P-na")
		NODE_A_PORT=$( ((PAIR)) && echo "$P-pa")
		NODE_B_NS=$( ((PAIR)) && echo "$P-nb")
		NODE_B_PORT=$( ((PAIR)) && echo "$P-pb")
	EOF
}

# Human-readable addressing of the mode (end of `up`, and `status`).
describe() {
	local i
	echo "mode $MODE"
	echo "client $CLIENT_IP/24 gw $ROUTER_CLIENT_IP; router $ROUTER_CLIENT_IP + $ROUTER_LAN_IP/24 (LAN 10.20.0.0/24, bridge $IF_BRIDGE)"
	case "$MODE" in
	dsr) echo "balancer on '$PORT': $BALANCER_IP/24 + VIP $VIP; backends reply to clients directly (VIP on their lo)" ;;
	proxy) echo "balancer on '$PORT': $BALANCER_IP/24 + VIP $VIP; SNAT to $BALANCER_IP (on-link for the backends); no VIP on backends" ;;
	gateway) echo "balancer on '$PORT': $BALANCER_IP/24 + $INSIDE_IP/24 (backends' gateway) + VIP $VIP, default route via $ROUTER_LAN_IP; router: $SERVER_ROUTE via $BALANCER_IP" ;;
	gateway2) echo "balancer outside '$PORT': $BALANCER_IP/24 + VIP $VIP, default route via $ROUTER_LAN_IP; inside '$PORT2' (bridge $IF_BRIDGE2): $INSIDE_IP/24 (backends' gateway); router: $SERVER_ROUTE via $BALANCER_IP" ;;
	esac
	for ((i = 1; i <= NB; i++)); do
		echo "backend b$i $(backend_addr "$i")/24 gw $BACKEND_GW$( ((VIP_ON_LO)) && echo " + VIP $VIP/32 on lo"): HTTP :80, DNS udp+tcp :53"
	done
}

# ---------------------------------------------------------------- status ---
cmd_status() {
	local pf pid name
	echo "== lab '$P' (LAB_PORT=$PORT, logs in $LOGDIR)"
	if [[ -r "$LOGDIR/lab.env" ]]; then
		echo "== addressing (as recorded by up in $LOGDIR/lab.env)"
		sed 's/^/  /' "$LOGDIR/lab.env"
	else
		echo "== addressing (not up; what up would create with LAB_MODE=$MODE)"
		describe | sed 's/^/  /'
	fi
	topo_status
	echo "== backend servers"
	for pf in "$LOGDIR"/b*.pid; do
		[[ -e "$pf" ]] || { echo "  none"; break; }
		name=$(basename "$pf" .pid)
		pid=$(cat "$pf" 2>/dev/null || true)
		if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
			if [[ "$name" == *.dns ]]; then
				echo "  ${name%.dns} dnsmasq pid $pid running ($(grep -c ' query\[' "$LOGDIR/$name.log" 2>/dev/null || true) queries logged)"
			else
				echo "  $name http pid $pid running ($(wc -l <"$LOGDIR/$name.log") requests logged)"
			fi
		else
			echo "  $name pid ${pid:-?} NOT running"
		fi
	done
}

main() {
	validate
	case "${1:-}" in
	up) cmd_up ;;
	down)
		need_root
		cmd_down
		log "down"
		;;
	status) cmd_status ;;
	exec)
		[[ $# -ge 3 ]] || die "usage: lab.sh exec NAME cmd..."
		local name=$2
		shift 2
		exec ip netns exec "$P-$name" "$@"
		;;
	-h | --help | help) usage ;;
	*) usage ;;
	esac
}

main "$@"
