#!/usr/bin/env bash
# Switchyard two-tier lab (like IBM Network Dispatcher in front of caching
# proxies, and a second Dispatcher in front of the content hosts): a client,
# a router, a switch (Linux bridge), two nginx caching proxies and two HTTP
# content hosts, all in network namespaces, plus TWO veth ends left in the
# root namespace, one per balancer, for DPDK's net_af_packet PMD.
#
#   client ns          router ns                 lan ns (bridge ${P}-br)        root ns
#   10.20.9.2/24 -- 10.20.9.1/24               +-----------+
#   gw 10.20.9.1       10.20.0.1/24 ---------- |           | -- $LAB_PORT_T1  tier-1 balancer: 10.20.0.10,
#                                              |           |                  VIP1 10.20.0.100 (DSR to caches)
#                                              |           | -- $LAB_PORT_T2  tier-2 balancer: 10.20.0.20,
#                                              |           |                  VIP2 10.20.0.200 (full NAT to hosts)
#   cache ns ${P}-cI   10.20.0.(20+I)/24 ----- |           |
#     nginx :80        VIP1 10.20.0.100/32 on lo, arp_ignore=1/arp_announce=2,
#                      gw 10.20.0.1 (replies go straight to the router: DSR)
#                      proxy_cache; proxy_pass http://10.20.0.200 (VIP2)
#   host ns ${P}-hI    10.20.0.(30+I)/24 ----- |           |
#     http_backend.py  no VIP (the tier-2 balancer source-NATs to 10.20.0.20,
#                      on-link), gw 10.20.0.1    +-----------+
#
# Request path: client -> VIP1 -> tier-1 -> cache cN (DSR) -> on a miss,
# cN connects to VIP2 -> tier-2 -> host hN (NAT) -> tier-2 -> cN -> client.
# Each nginx answers with X-Cache-Status ($upstream_cache_status: MISS, HIT,
# ...) and X-Cache-Node: cN. GET /cache-health is answered by nginx itself
# (never proxied, never cached): "cN ok". The hosts answer "backend hN" with
# Cache-Control: max-age=600, so nginx caches them (proxy_cache_valid 200 10m
# too). nginx opens one upstream connection per miss (no upstream keepalive),
# so every miss is a new flow for the tier-2 balancer.
#
# Usage:
#   multitier.sh up | down | status
#   multitier.sh exec NAME cmd...  # = ip netns exec ${LAB_PREFIX}-NAME cmd...
#                                  #   NAME: client, router, lan, c1, c2, h1, h2
# Environment (defaults):
#   LAB_PREFIX=mt           prefix of every namespace / bridge / veth name
#   LAB_PORT_T1=${P}t1      root-namespace veth end of the tier-1 balancer
#   LAB_PORT_T2=${P}t2      root-namespace veth end of the tier-2 balancer
#   LAB_CACHES=2            number of caching proxies (at most 9)
#   LAB_HOSTS=2             number of content hosts (at most 9)
#   LAB_LOGDIR=/tmp/${P}-lab  (only [A-Za-z0-9_./-]: it goes into nginx.conf)
#                           cN.access.log  nginx access log, one line a request:
#                             <iso8601> cN <remote_addr> <remote_port> <local_addr>
#                             "<request>" <status> <upstream_cache_status> <upstream_addr>
#                           cN.error.log, cN.err (nginx stderr), cN.pid (master),
#                           cN/ (nginx prefix: nginx.conf, cache/, tmp/);
#                           hN.log / hN.err / hN.pid as in lab.sh;
#                           lab.env (addressing, KEY=VALUE, written by `up`)
#   LAB_WAIT_SECS=10        how long `up` waits for each server to answer
#
# Needs root, iproute2, ethtool, curl, nginx (Debian: nginx-light or nginx)
# and Debian's /usr/bin/python3. Logs are kept after `down`; `up` truncates
# them (and empties the caches).
set -Eeuo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly SCRIPT_DIR
readonly P="${LAB_PREFIX:-mt}"
readonly PORT_T1="${LAB_PORT_T1:-${P}t1}"
readonly PORT_T2="${LAB_PORT_T2:-${P}t2}"
readonly NC="${LAB_CACHES:-2}"
readonly NH="${LAB_HOSTS:-2}"
readonly LOGDIR="${LAB_LOGDIR:-/tmp/${P}-lab}"
readonly WAIT_SECS="${LAB_WAIT_SECS:-10}"
readonly PY=/usr/bin/python3 # system python: stdlib only, not the pyenv one
readonly BACKEND_PY="$SCRIPT_DIR/http_backend.py"
NGINX="$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)"
readonly NGINX

# Fixed lab addressing, all inside our own namespaces.
readonly CLIENT_IP=10.20.9.2 ROUTER_CLIENT_IP=10.20.9.1 ROUTER_LAN_IP=10.20.0.1
readonly T1_IP=10.20.0.10 VIP1=10.20.0.100
readonly T2_IP=10.20.0.20 VIP2=10.20.0.200
cache_addr() { echo "10.20.0.$((20 + $1))"; }
host_addr() { echo "10.20.0.$((30 + $1))"; }

readonly NS_CLIENT="$P-client" NS_ROUTER="$P-router" NS_LAN="$P-lan"
readonly IF_CLIENT="$P-cl"   # client ns, towards router
readonly IF_ROUTER_C="$P-rc" # router ns, towards client
readonly IF_ROUTER_L="$P-rl" # router ns, towards the LAN
readonly IF_LAN_R="$P-lr"    # lan ns bridge port for the router
readonly IF_LAN_T1="$P-lp1"  # lan ns bridge port, peer of $PORT_T1
readonly IF_LAN_T2="$P-lp2"  # lan ns bridge port, peer of $PORT_T2
readonly IF_BRIDGE="$P-br"   # the switch
# Servers: namespace ${P}-cI / ${P}-hI, interface of the same name inside it,
# bridge port ${P}-lcI / ${P}-lhI in the lan ns.

# ifalias of our root veths: `down` deletes only what this script created and
# finds both ports without being told their names. Different from lab.sh's
# "switchyard-lab:" so the two scripts never delete each other's ports.
readonly PORT_ALIAS="switchyard-multitier:$P"

log() { printf 'multitier[%s]: %s\n' "$P" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# shellcheck source=common.sh
. "$SCRIPT_DIR/common.sh"

# ---------------------------------------------------------------- checks ---
validate() {
	[[ "$P" =~ ^[A-Za-z0-9_-]+$ ]] || die "LAB_PREFIX '$P' must match [A-Za-z0-9_-]+"
	[[ "$NC" =~ ^[1-9]$ ]] || die "LAB_CACHES '$NC' must be 1..9 (caches are 10.20.0.21..29)"
	[[ "$NH" =~ ^[1-9]$ ]] || die "LAB_HOSTS '$NH' must be 1..9 (hosts are 10.20.0.31..39)"
	[[ "$WAIT_SECS" =~ ^[0-9]+$ ]] || die "LAB_WAIT_SECS '$WAIT_SECS' must be an integer"
	[[ "$LOGDIR" =~ ^[A-Za-z0-9_./-]+$ ]] || die "LAB_LOGDIR '$LOGDIR' must match [A-Za-z0-9_./-]+ (it is written into nginx.conf)"
	local n
	for n in "$PORT_T1" "$PORT_T2" "$IF_CLIENT" "$IF_ROUTER_C" "$IF_ROUTER_L" "$IF_LAN_R" \
		"$IF_LAN_T1" "$IF_LAN_T2" "$IF_BRIDGE" "$P-lc$NC" "$P-lh$NH"; do
		((${#n} <= 15)) || die "interface name '$n' is longer than 15 chars; use a shorter LAB_PREFIX/LAB_PORT_T1/LAB_PORT_T2"
	done
	for n in "$PORT_T1" "$PORT_T2"; do
		[[ "$n" =~ ^[A-Za-z0-9_.-]+$ ]] || die "'$n' is not a valid interface name"
	done
	[[ "$PORT_T1" != "$PORT_T2" ]] || die "LAB_PORT_T1 and LAB_PORT_T2 must differ"
}

need_root_and_tools() {
	need_root
	local t
	for t in ip ethtool curl sysctl; do
		command -v "$t" >/dev/null || die "missing tool: $t"
	done
	[[ -x "$NGINX" ]] || die "missing tool: nginx (Debian package nginx-light or nginx)"
	[[ -x "$PY" ]] || die "missing $PY (Debian's system python)"
	[[ -r "$BACKEND_PY" ]] || die "missing $BACKEND_PY"
}

our_namespaces() {
	ip netns list 2>/dev/null | awk '{print $1}' |
		grep -E "^${P}-(client|router|lan|c[0-9]+|h[0-9]+)\$" | sort -V || true
}

# shellcheck disable=SC2034  # used by common.sh (wait_links)
LINKS=()

# ------------------------------------------------------------------ down ---
cmd_down() {
	# Servers started by us (pid files), then the topology.
	local pf
	if [[ -d "$LOGDIR" ]]; then
		for pf in "$LOGDIR"/c*.pid "$LOGDIR"/h*.pid; do
			[[ -e "$pf" ]] || continue
			case "$(basename "$pf")" in
			c*) stop_pidfile "$pf" nginx ;;
			*) stop_pidfile "$pf" http_backend.py ;;
			esac
		done
	fi
	topo_down
}

UP_OK=0

# A server namespace $P-NAME on the LAN: interface $P-NAME, bridge port
# $P-lNAME, address ADDR/24, default route via the router.
write_nginx_conf() {
	local name=$1 dir=$2
	cat <<-EOF
		# Generated by tests/lab/multitier.sh for cache node $name (lab '$P').
		# Run: nginx -p $dir/ -c $dir/nginx.conf -e $LOGDIR/$name.error.log
		daemon on;
		master_process on;
		# Runs as root like the rest of the lab: the workers write the cache and
		# temp files under \$LAB_LOGDIR, which is root's.
		user root root;
		worker_processes 1;
		pid $LOGDIR/$name.pid;
		error_log $LOGDIR/$name.error.log notice;

		events {
		    worker_connections 1024;
		}

		http {
		    default_type text/plain;
		    sendfile on;
		    keepalive_timeout 30s;
		    server_tokens off;

		    log_format lab '\$time_iso8601 $name \$remote_addr \$remote_port \$server_addr '
		                   '"\$request" \$status \$upstream_cache_status \$upstream_addr';
		    access_log $LOGDIR/$name.access.log lab;

		    client_body_temp_path $dir/tmp/client_body;
		    proxy_temp_path $dir/tmp/proxy;
		    fastcgi_temp_path $dir/tmp/fastcgi;
		    uwsgi_temp_path $dir/tmp/uwsgi;
		    scgi_temp_path $dir/tmp/scgi;

		    proxy_cache_path $dir/cache levels=1:2 keys_zone=$name:10m max_size=64m
		                     inactive=60m use_temp_path=off;

		    server {
		        # 0.0.0.0 also accepts connections to VIP1 on lo (DSR).
		        listen 0.0.0.0:80 default_server;
		        server_name _;

		        # The node itself, never proxied nor cached (readiness probe).
		        location = /cache-health {
		            add_header X-Cache-Node $name always;
		            return 200 "$name ok\n";
		        }

		        location / {
		            proxy_pass http://$VIP2;
		            proxy_http_version 1.1;
		            proxy_set_header Connection "";
		            proxy_set_header Host \$host;
		            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
		            proxy_connect_timeout 3s;
		            proxy_send_timeout 10s;
		            proxy_read_timeout 10s;

		            proxy_cache $name;
		            proxy_cache_valid 200 10m;

		            add_header X-Cache-Status \$upstream_cache_status always;
		            add_header X-Cache-Node $name always;
		        }
		    }
		}
	EOF
}

start_cache() {
	local i=$1 name="c$1" dir="$LOGDIR/c$1"
	rm -rf "$dir"
	mkdir -p "$dir/cache" "$dir/tmp"
	write_nginx_conf "$name" "$dir" >"$dir/nginx.conf"
	: >"$LOGDIR/$name.access.log"
	: >"$LOGDIR/$name.error.log"
	: >"$LOGDIR/$name.err"
	rm -f "$LOGDIR/$name.pid"
	local args=(-p "$dir/" -c "$dir/nginx.conf" -e "$LOGDIR/$name.error.log")
	if ! nsx "$P-$name" "$NGINX" -t -q "${args[@]}" </dev/null >>"$LOGDIR/$name.err" 2>&1; then
		log "nginx -t failed for $name ($dir/nginx.conf):"
		sed 's/^/    /' "$LOGDIR/$name.err" >&2 || true
		return 1
	fi
	# daemon on: the first process exits once the master has bound :80 and
	# forked (non-zero if it could not); nginx redirects its own stdio.
	if ! nsx "$P-$name" "$NGINX" "${args[@]}" </dev/null >>"$LOGDIR/$name.err" 2>&1; then
		log "nginx for $name failed to start:"
		sed 's/^/    /' "$LOGDIR/$name.err" "$LOGDIR/$name.error.log" >&2 || true
		return 1
	fi
}

HOST_PIDS=()
start_host() {
	local i=$1 name="h$1"
	: >"$LOGDIR/$name.log"
	: >"$LOGDIR/$name.err"
	rm -f "$LOGDIR/$name.pid"
	setsid -w ip netns exec "$P-$name" "$PY" "$BACKEND_PY" "$name" --bind 0.0.0.0 --port 80 \
		--log "$LOGDIR/$name.log" --pidfile "$LOGDIR/$name.pid" \
		</dev/null >>"$LOGDIR/$name.err" 2>&1 &
	HOST_PIDS[i]=$!
}

# Waits until `curl http://ADDR/PATH` from the server's own namespace works
# and NAME's pid file exists. ALIVE... is a command that fails once the server
# is known to be dead while it has no pid file yet (http_backend.py writes it
# after bind(); nginx's master writes it just after daemonizing, so for nginx
# it is `true`: a dead nginx shows as a timeout).
cmd_up() {
	need_root_and_tools
	cmd_down
	trap on_up_exit EXIT
	trap 'log "command failed at line $LINENO: $BASH_COMMAND"' ERR
	trap 'exit 130' INT
	trap 'exit 143' TERM HUP

	check_port_free "$PORT_T1" LAB_PORT_T1
	check_port_free "$PORT_T2" LAB_PORT_T2
	mkdir -p "$LOGDIR"

	client_router_lan

	log "$PORT_T1 (tier 1) and $PORT_T2 (tier 2) (root ns) <-> lan"
	root_port "$PORT_T1" "$IF_LAN_T1" "$IF_BRIDGE"
	root_port "$PORT_T2" "$IF_LAN_T2" "$IF_BRIDGE"

	local i addr
	for ((i = 1; i <= NH; i++)); do
		addr=$(host_addr "$i")
		log "content host h$i ($addr)"
		server_ns "h$i" "$addr" "$ROUTER_LAN_IP" "$IF_BRIDGE"
		start_host "$i"
	done
	for ((i = 1; i <= NC; i++)); do
		addr=$(cache_addr "$i")
		log "cache c$i ($addr, VIP1 $VIP1 on lo)"
		server_ns "c$i" "$addr" "$ROUTER_LAN_IP" "$IF_BRIDGE"
		# Connections to VIP2 leave from $addr.
		dsr_real_server "c$i" "$VIP1"
		start_cache "$i"
	done

	wait_links
	for ((i = 1; i <= NH; i++)); do
		wait_http "h$i" "$(host_addr "$i")" /health kill -0 "${HOST_PIDS[i]}"
	done
	for ((i = 1; i <= NC; i++)); do
		wait_http "c$i" "$(cache_addr "$i")" /cache-health true
	done
	for ((i = 1; i <= NH; i++)); do : >"$LOGDIR/h$i.log"; done
	for ((i = 1; i <= NC; i++)); do : >"$LOGDIR/c$i.access.log"; done
	write_env >"$LOGDIR/lab.env"

	# shellcheck disable=SC2034  # read by common.sh (on_up_exit)
	UP_OK=1
	trap - EXIT ERR INT TERM HUP
	log "up: logs in $LOGDIR"
	describe | while IFS= read -r line; do log "  $line"; done
}

write_env() {
	local i caches=() hosts=()
	for ((i = 1; i <= NC; i++)); do caches+=("$(cache_addr "$i")"); done
	for ((i = 1; i <= NH; i++)); do hosts+=("$(host_addr "$i")"); done
	local IFS=,
	cat <<-EOF
		LAB_PREFIX=$P
		LAB_PORT_T1=$PORT_T1
		LAB_PORT_T2=$PORT_T2
		CLIENT_IP=$CLIENT_IP
		CLIENT_GW=$ROUTER_CLIENT_IP
		ROUTER_LAN_IP=$ROUTER_LAN_IP
		LAN_NET=10.20.0.0/24
		T1_IP=$T1_IP
		VIP1=$VIP1
		T1_MODE=dsr
		CACHES=${caches[*]}
		T2_IP=$T2_IP
		VIP2=$VIP2
		T2_MODE=proxy
		HOSTS=${hosts[*]}
	EOF
}

describe() {
	local i
	echo "client $CLIENT_IP/24 gw $ROUTER_CLIENT_IP; router $ROUTER_CLIENT_IP + $ROUTER_LAN_IP/24 (LAN 10.20.0.0/24, bridge $IF_BRIDGE)"
	echo "tier 1 on '$PORT_T1': $T1_IP/24 + VIP1 $VIP1, DSR to the caches"
	echo "tier 2 on '$PORT_T2': $T2_IP/24 + VIP2 $VIP2, full NAT (SNAT to $T2_IP) to the hosts"
	for ((i = 1; i <= NC; i++)); do
		echo "cache c$i $(cache_addr "$i")/24 gw $ROUTER_LAN_IP + VIP1 $VIP1/32 on lo: nginx :80 -> http://$VIP2"
	done
	for ((i = 1; i <= NH; i++)); do
		echo "host h$i $(host_addr "$i")/24 gw $ROUTER_LAN_IP: http_backend.py :80"
	done
}

# ---------------------------------------------------------------- status ---
cmd_status() {
	local pf pid name
	echo "== multitier lab '$P' (LAB_PORT_T1=$PORT_T1, LAB_PORT_T2=$PORT_T2, logs in $LOGDIR)"
	if [[ -r "$LOGDIR/lab.env" ]]; then
		echo "== addressing (as recorded by up in $LOGDIR/lab.env)"
		sed 's/^/  /' "$LOGDIR/lab.env"
	else
		echo "== addressing (not up; what up would create)"
		describe | sed 's/^/  /'
	fi
	topo_status
	echo "== servers"
	for pf in "$LOGDIR"/c*.pid "$LOGDIR"/h*.pid; do
		[[ -e "$pf" ]] || continue
		name=$(basename "$pf" .pid)
		pid=$(cat "$pf" 2>/dev/null || true)
		if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
			if [[ "$name" == c* ]]; then
				echo "  $name nginx master pid $pid running ($(wc -l <"$LOGDIR/$name.access.log") requests logged)"
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
		[[ $# -ge 3 ]] || die "usage: multitier.sh exec NAME cmd..."
		local name=$2
		shift 2
		exec ip netns exec "$P-$name" "$@"
		;;
	-h | --help | help) usage ;;
	*) usage ;;
	esac
}

main "$@"
