#!/usr/bin/env bash
# Self-test of the namespace labs themselves, WITHOUT Switchyard: brings up
# tests/lab/lab.sh in every LAB_MODE and tests/lab/multitier.sh, checks the
# wiring, addressing and servers (HTTP, DNS over UDP and TCP, nginx caching),
# tears each lab down and checks that nothing is left behind.
#
# Where a test needs the balancer's forwarding, a stand-in does it: a router
# route to a backend (DSR: the VIP is then answered by the backend straight
# from its lo, which is what the real balancer relies on), or a namespace
# "${prefix}-fake" with the balancer's addresses and plain kernel forwarding
# (gateway modes). Stand-ins are removed by this script.
#
# Usage: selftest.sh [CASE...]   CASE: dsr proxy gateway gateway2 multitier
#                                parallel errors (default: all of them)
# Env:   SELFTEST_PREFIX=yst   prefix base; every case appends a letter, so
#                              namespaces are yst{d,p,g,2,m,x,y}-*, root veths
#                              yst?p0/yst?p0b/yst?t1/yst?t2, logs /tmp/yst?-lab
#                              (kept), each up's stderr /tmp/yst?-up.stderr
# Needs root and what the labs need: iproute2, ethtool, curl, dnsmasq-base,
# bind9-dnsutils, nginx-light, Debian's /usr/bin/python3.
# Ends with "N passed, N failed"; exit status 1 if anything failed.
set -Euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly HERE
readonly LAB="$HERE/lab.sh" MT="$HERE/multitier.sh"
readonly BASE="${SELFTEST_PREFIX:-yst}"
readonly VIP=10.20.0.100

PASSED=0 FAILED=0
pass() { PASSED=$((PASSED + 1)); printf '  ok   %s\n' "$*"; }
fail() { FAILED=$((FAILED + 1)); printf '  FAIL %s\n' "$*"; }
# expect DESC WANT GOT
expect() { if [[ "$3" == "$2" ]]; then pass "$1"; else fail "$1: want '$2', got '$3'"; fi; }
# check DESC cmd... : passes when cmd succeeds
check() { local d=$1; shift; if "$@" >/dev/null 2>&1; then pass "$d"; else fail "$d"; fi; }
# refute DESC cmd... : passes when cmd fails
refute() { local d=$1; shift; if "$@" >/dev/null 2>&1; then fail "$d"; else pass "$d"; fi; }

# Everything this script started, for the EXIT trap: "lab PREFIX" or
# "mt PREFIX" (torn down with the script's down) and fake namespaces.
STARTED=()
cleanup() {
	local s
	for s in "${STARTED[@]}"; do
		case "$s" in
		lab\ *) LAB_PREFIX=${s#lab } LAB_LOGDIR="/tmp/${s#lab }-lab" bash "$LAB" down >/dev/null 2>&1 || true ;;
		mt\ *) LAB_PREFIX=${s#mt } LAB_LOGDIR="/tmp/${s#mt }-lab" bash "$MT" down >/dev/null 2>&1 || true ;;
		ns\ *) ip netns del "${s#ns }" 2>/dev/null || true ;;
		esac
	done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
body() { nsx "$1" curl -s -m 3 "$2" 2>/dev/null || true; }
# dnsq NS SERVER NAME TYPE [dig options...]
dnsq() { local ns=$1 srv=$2 name=$3 type=$4; shift 4; nsx "$ns" dig +short +time=2 +tries=1 "$@" "@$srv" "$name" "$type" 2>/dev/null || true; }
# Processes (not zombies: their cmdline is empty) whose command line has STR.
procs_mentioning() {
	local f
	for f in /proc/[0-9]*/cmdline; do
		tr '\0' ' ' 2>/dev/null <"$f" | grep -qF -- "$1" && echo "${f//[^0-9]/}"
	done
	return 0
}
netns_with_prefix() { ip netns list | awk '{print $1}' | grep -E "^$1-" || true; }
ports_with_alias() {
	local f
	for f in /sys/class/net/*/ifalias; do
		[[ "$(cat "$f" 2>/dev/null)" == "$1" ]] && basename "$(dirname "$f")"
	done
	return 0
}
envval() { sed -n "s/^$2=//p" "$1/lab.env" 2>/dev/null; }

# The HTTP and DNS service of backend I at ADDR, seen from namespace NS.
check_backend() {
	local ns=$1 i=$2 addr=$3 via=$4
	expect "$via: http://$addr/ answers backend b$i" "backend b$i" "$(body "$ns" "http://$addr/")"
	expect "$via: dig @$addr who.lab.test TXT (udp)" "\"b$i\"" "$(dnsq "$ns" "$addr" who.lab.test TXT)"
	expect "$via: dig @$addr who.lab.test TXT (tcp)" "\"b$i\"" "$(dnsq "$ns" "$addr" who.lab.test TXT +tcp)"
	expect "$via: dig @$addr www.lab.test A" "10.20.9.80" "$(dnsq "$ns" "$addr" www.lab.test A)"
}

# Lab teardown and what must not survive it.
down_and_check_clean() {
	local tool=$1 p=$2 alias=$3
	shift 3
	local logdir="/tmp/$p-lab"
	if env LAB_PREFIX="$p" LAB_LOGDIR="$logdir" "$@" bash "$tool" down >/dev/null 2>&1; then
		pass "$p: down"
	else
		fail "$p: down"
	fi
	expect "$p: no namespaces left" "" "$(netns_with_prefix "$p")"
	expect "$p: no root-namespace veths left" "" "$(ports_with_alias "$alias" | tr '\n' ' ')"
	expect "$p: no servers left" "" "$(procs_mentioning "$logdir/" | tr '\n' ' ')"
	expect "$p: no lab.env left" "" "$(ls "$logdir/lab.env" 2>/dev/null)"
	check "$p: second down is a no-op" env LAB_PREFIX="$p" LAB_LOGDIR="$logdir" bash "$tool" down
}

lab_up() {
	local p=$1 mode=$2
	STARTED+=("lab $p")
	if LAB_MODE=$mode LAB_PREFIX=$p LAB_PORT="${p}p0" LAB_LOGDIR="/tmp/$p-lab" bash "$LAB" up 2>"/tmp/$p-up.stderr"; then
		pass "$p: lab.sh up (LAB_MODE=$mode)"
	else
		fail "$p: lab.sh up (LAB_MODE=$mode); its output:"
		sed 's/^/    /' "/tmp/$p-up.stderr"
		return 1
	fi
	expect "$p: lab.env LAB_MODE" "$mode" "$(envval "/tmp/$p-lab" LAB_MODE)"
	check "$p: status" env LAB_PREFIX="$p" LAB_PORT="${p}p0" LAB_LOGDIR="/tmp/$p-lab" bash "$LAB" status
	local i
	for i in 1 2; do
		check "$p: b$i dnsmasq running" test -s "/tmp/$p-lab/b$i.dns.pid"
		expect "$p: b$i request log empty after up" "0" "$(wc -l <"/tmp/$p-lab/b$i.log")"
		expect "$p: b$i query log empty after up" "0" "$(wc -l <"/tmp/$p-lab/b$i.dns.log")"
	done
}

# A stand-in for the balancer in the gateway modes: a namespace with the
# balancer's addresses and kernel forwarding. LEG is "bridge addr/len ...".
fake_balancer() {
	local p=$1 ns="$1-fake" n=0 leg br addrs a
	shift
	STARTED+=("ns $ns")
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	for leg in "$@"; do
		n=$((n + 1))
		read -r br addrs <<<"$leg"
		ip -n "$p-lan" link add "$p-fl$n" type veth peer name "$p-f$n" netns "$ns"
		ip -n "$p-lan" link set "$p-fl$n" master "$br"
		ip -n "$p-lan" link set "$p-fl$n" up
		for a in $addrs; do ip -n "$ns" addr add "$a" dev "$p-f$n"; done
		ip -n "$ns" link set "$p-f$n" up
		nsx "$ns" sysctl -qw "net.ipv4.conf.$p-f$n.send_redirects=0"
	done
	nsx "$ns" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.send_redirects=0
	ip -n "$ns" route add default via 10.20.0.1
}

# ------------------------------------------------------------------ cases ---
case_dsr() {
	local p="${BASE}d" i
	echo "== dsr ($p)"
	lab_up "$p" dsr || return 0
	for i in 1 2; do
		check "$p: b$i has the VIP on lo" bash -c "ip -n $p-b$i -br addr show dev lo | grep -qF ' $VIP/32'"
		expect "$p: b$i arp_ignore" 1 "$(nsx "$p-b$i" sysctl -n net.ipv4.conf.all.arp_ignore)"
		expect "$p: b$i arp_announce" 2 "$(nsx "$p-b$i" sysctl -n net.ipv4.conf.all.arp_announce)"
		check_backend "$p-router" "$i" "10.20.0.$((10 + i))" "$p router"
	done
	expect "$p: nobody answers the VIP without the balancer" "" "$(body "$p-client" "http://$VIP/")"
	# DSR stand-in: the router hands VIP traffic to one backend. dig only
	# accepts an answer from the address it asked, so an answer proves the
	# backend replied from the VIP, over UDP and TCP.
	for i in 1 2; do
		ip -n "$p-router" route replace "$VIP/32" via "10.20.0.$((10 + i))"
		expect "$p: client -> VIP -> b$i (http, reply straight back)" "backend b$i" "$(body "$p-client" "http://$VIP/")"
		expect "$p: client -> VIP -> b$i (dns udp, answered from the VIP)" "\"b$i\"" "$(dnsq "$p-client" "$VIP" who.lab.test TXT)"
		expect "$p: client -> VIP -> b$i (dns tcp, answered from the VIP)" "\"b$i\"" "$(dnsq "$p-client" "$VIP" who.lab.test TXT +tcp)"
		check "$p: b$i logged client 10.20.9.2 on the VIP" grep -q " b$i 10.20.9.2 [0-9]* $VIP \"GET / " "/tmp/$p-lab/b$i.log"
		check "$p: b$i logged the client's DNS queries" grep -q "10.20.9.2/[0-9]* query\[TXT\] who.lab.test from 10.20.9.2" "/tmp/$p-lab/b$i.dns.log"
	done
	ip -n "$p-router" route del "$VIP/32"
	down_and_check_clean "$LAB" "$p" "switchyard-lab:$p"
}

case_proxy() {
	local p="${BASE}p" i
	echo "== proxy ($p)"
	lab_up "$p" proxy || return 0
	expect "$p: lab.env BACKEND_VIP_ON_LO" 0 "$(envval "/tmp/$p-lab" BACKEND_VIP_ON_LO)"
	for i in 1 2; do
		refute "$p: b$i has no VIP on lo" bash -c "ip -n $p-b$i -br addr show dev lo | grep -qF ' $VIP/'"
		expect "$p: b$i arp_ignore untouched" 0 "$(nsx "$p-b$i" sysctl -n net.ipv4.conf.all.arp_ignore)"
		expect "$p: b$i default route" "default via 10.20.0.1" "$(ip -n "$p-b$i" route show default | awk '{print $1, $2, $3}')"
		check_backend "$p-router" "$i" "10.20.0.$((10 + i))" "$p router"
		# 10.20.0.10 (the SNAT source) is on-link for the backends.
		check "$p: b$i: 10.20.0.10 on-link" bash -c "! ip -n $p-b$i route get 10.20.0.10 | grep -q via"
	done
	down_and_check_clean "$LAB" "$p" "switchyard-lab:$p"
}

case_gateway() {
	local p="${BASE}g" i
	echo "== gateway ($p)"
	lab_up "$p" gateway || return 0
	expect "$p: router route to the servers" "10.20.1.0/24 via 10.20.0.10" \
		"$(ip -n "$p-router" route show 10.20.1.0/24 | awk '{print $1, $2, $3}')"
	for i in 1 2; do
		check "$p: b$i address" bash -c "ip -n $p-b$i -br addr | grep -qF ' 10.20.1.$((10 + i))/24'"
		expect "$p: b$i default route" "default via 10.20.1.1" "$(ip -n "$p-b$i" route show default | awk '{print $1, $2, $3}')"
		refute "$p: b$i has no VIP on lo" bash -c "ip -n $p-b$i -br addr show dev lo | grep -qF ' $VIP/'"
		check_backend "$p-b1" "$i" "10.20.1.$((10 + i))" "$p b1"
	done
	expect "$p: client cannot reach the servers without the balancer" "" "$(nsx "$p-client" curl -s -m 2 http://10.20.1.11/ 2>/dev/null)"
	fake_balancer "$p" "$p-br 10.20.0.10/24 10.20.1.1/24"
	# The probe above left the router a FAILED (or INCOMPLETE) neighbour entry
	# for 10.20.0.10; its next packet to it may fail at once (EHOSTUNREACH)
	# instead of re-resolving. A real balancer coming up late has the same
	# problem unless it sends gratuitous ARP; here we just forget the entry.
	ip -n "$p-router" neigh del 10.20.0.10 dev "$p-rl" 2>/dev/null || true
	for i in 1 2; do
		check_backend "$p-client" "$i" "10.20.1.$((10 + i))" "$p client via stand-in"
		check "$p: b$i sees the client's address" grep -q " b$i 10.20.9.2 " "/tmp/$p-lab/b$i.log"
	done
	ip netns del "$p-fake"
	down_and_check_clean "$LAB" "$p" "switchyard-lab:$p"
}

case_gateway2() {
	local p="${BASE}2" i
	echo "== gateway2 ($p)"
	lab_up "$p" gateway2 || return 0
	expect "$p: lab.env LAB_PORT2" "${p}p0b" "$(envval "/tmp/$p-lab" LAB_PORT2)"
	expect "$p: both root veths are ours" "${p}p0 ${p}p0b" "$(ports_with_alias "switchyard-lab:$p" | sort | tr '\n' ' ' | sed 's/ $//')"
	expect "$p: second bridge holds only the inside port and the backends" "$p-lb1 $p-lb2 $p-lp2" \
		"$(ip -n "$p-lan" -br link show master "$p-br2" | awk '{sub(/@.*/, "", $1); print $1}' | sort | tr '\n' ' ' | sed 's/ $//')"
	expect "$p: first bridge holds router and outside port only" "$p-lp $p-lr" \
		"$(ip -n "$p-lan" -br link show master "$p-br" | awk '{sub(/@.*/, "", $1); print $1}' | sort | tr '\n' ' ' | sed 's/ $//')"
	expect "$p: router route to the servers" "10.20.2.0/24 via 10.20.0.10" \
		"$(ip -n "$p-router" route show 10.20.2.0/24 | awk '{print $1, $2, $3}')"
	for i in 1 2; do
		expect "$p: b$i default route" "default via 10.20.2.1" "$(ip -n "$p-b$i" route show default | awk '{print $1, $2, $3}')"
		check_backend "$p-b1" "$i" "10.20.2.$((10 + i))" "$p b1"
	done
	fake_balancer "$p" "$p-br 10.20.0.10/24" "$p-br2 10.20.2.1/24"
	for i in 1 2; do
		check_backend "$p-client" "$i" "10.20.2.$((10 + i))" "$p client via stand-in"
	done
	ip netns del "$p-fake"
	# down without LAB_PORT/LAB_PORT2/LAB_MODE still finds both root veths.
	down_and_check_clean "$LAB" "$p" "switchyard-lab:$p"
}

case_multitier() {
	local p="${BASE}m" i log="/tmp/${BASE}m-lab" hdr
	echo "== multitier ($p)"
	STARTED+=("mt $p")
	if LAB_PREFIX=$p LAB_LOGDIR="$log" bash "$MT" up 2>"/tmp/$p-up.stderr"; then
		pass "$p: multitier.sh up"
	else
		fail "$p: multitier.sh up; its output:"
		sed 's/^/    /' "/tmp/$p-up.stderr"
		return 0
	fi
	check "$p: status" env LAB_PREFIX="$p" LAB_LOGDIR="$log" bash "$MT" status
	expect "$p: root veths" "${p}t1 ${p}t2" "$(ports_with_alias "switchyard-multitier:$p" | sort | tr '\n' ' ' | sed 's/ $//')"
	for i in 1 2; do
		check "$p: c$i nginx -t" nsx "$p-c$i" nginx -t -q -p "$log/c$i/" -c "$log/c$i/nginx.conf" -e "$log/c$i.error.log"
		check "$p: c$i has VIP1 on lo" bash -c "ip -n $p-c$i -br addr show dev lo | grep -qF ' 10.20.0.100/32'"
		expect "$p: c$i arp_ignore" 1 "$(nsx "$p-c$i" sysctl -n net.ipv4.conf.all.arp_ignore)"
		expect "$p: c$i /cache-health (own ns)" "c$i ok" "$(body "$p-c$i" "http://10.20.0.2$i/cache-health")"
		expect "$p: c1 -> h$i directly" "backend h$i" "$(body "$p-c1" "http://10.20.0.3$i/")"
		refute "$p: h$i has no VIP on lo" bash -c "ip -n $p-h$i -br addr show dev lo | grep -qF ' 10.20.0.'"
	done
	expect "$p: router -> c2 /cache-health across the LAN" "c2 ok" "$(body "$p-router" "http://10.20.0.22/cache-health")"
	# On c2, not c1: the failed ARP for VIP2 leaves a FAILED neighbour entry
	# that makes c2's next connect to VIP2 fail at once (EHOSTUNREACH, 502).
	hdr=$(nsx "$p-c2" curl -s -m 6 -o /dev/null -D - "http://10.20.0.22/nothing-behind" 2>/dev/null | tr -d '\r')
	check "$p: c2 without tier 2 answers 504 (3s proxy_connect_timeout)" grep -qE '^HTTP/1.1 504' <<<"$hdr"
	# Stand-ins: VIP2 on h1's lo (h1 answers ARP for it: no arp_ignore there)
	# and the router handing VIP1 to c1.
	ip -n "$p-h1" addr add 10.20.0.200/32 dev lo
	ip -n "$p-router" route replace 10.20.0.100/32 via 10.20.0.21
	hdr=$(nsx "$p-client" curl -s -m 5 -D - "http://10.20.0.100/?selftest" 2>/dev/null | tr -d '\r')
	check "$p: client -> VIP1 -> c1 -> VIP2 -> h1" grep -qx "backend h1" <<<"$hdr"
	check "$p: first request is a MISS" grep -qx "X-Cache-Status: MISS" <<<"$hdr"
	check "$p: X-Cache-Node c1" grep -qx "X-Cache-Node: c1" <<<"$hdr"
	check "$p: h1 sends Cache-Control max-age=600" grep -qx "Cache-Control: max-age=600" <<<"$hdr"
	hdr=$(nsx "$p-client" curl -s -m 5 -D - "http://10.20.0.100/?selftest" 2>/dev/null | tr -d '\r')
	check "$p: second request is a HIT" grep -qx "X-Cache-Status: HIT" <<<"$hdr"
	nsx "$p-client" curl -s -m 5 -o /dev/null "http://10.20.0.100/health"
	nsx "$p-client" curl -s -m 5 -o /dev/null "http://10.20.0.100/health"
	expect "$p: /health is never cached (both reached h1)" 2 "$(grep -c '"GET /health ' "$log/h1.log")"
	expect "$p: h1 saw exactly one GET /?selftest" 1 "$(grep -c '"GET /?selftest ' "$log/h1.log")"
	check "$p: h1 logged c1 as client, VIP2 as local address" grep -q " h1 10.20.0.21 [0-9]* 10.20.0.200 \"GET /?selftest " "$log/h1.log"
	check "$p: c1 access log: client, VIP1, MISS then HIT" bash -c "grep -q ' c1 10.20.9.2 [0-9]* 10.20.0.100 \"GET /?selftest HTTP/1.1\" 200 MISS 10.20.0.200:80' '$log/c1.access.log' &&
		grep -q ' c1 10.20.9.2 [0-9]* 10.20.0.100 \"GET /?selftest HTTP/1.1\" 200 HIT -' '$log/c1.access.log'"
	ip -n "$p-router" route del 10.20.0.100/32
	ip -n "$p-h1" addr del 10.20.0.200/32 dev lo
	down_and_check_clean "$MT" "$p" "switchyard-multitier:$p"
}

# Several labs at once (same addresses, different namespaces), plus a lab.sh
# and a multitier lab with the same prefix letters apart.
case_parallel() {
	local a="${BASE}x" b="${BASE}y" m="${BASE}m"
	echo "== parallel ($a dsr + $b gateway2 + $m multitier)"
	lab_up "$a" dsr || return 0
	lab_up "$b" gateway2 || return 0
	STARTED+=("mt $m")
	check "$m: multitier.sh up alongside" env LAB_PREFIX="$m" LAB_LOGDIR="/tmp/$m-lab" bash "$MT" up
	check_backend "$a-router" 1 10.20.0.11 "$a router"
	check_backend "$b-b2" 1 10.20.2.11 "$b b2"
	expect "$m: c1 -> h2" "backend h2" "$(body "$m-c1" http://10.20.0.32/)"
	down_and_check_clean "$LAB" "$b" "switchyard-lab:$b"
	expect "$a: still answering after $b went down" "backend b2" "$(body "$a-router" http://10.20.0.12/)"
	down_and_check_clean "$MT" "$m" "switchyard-multitier:$m"
	down_and_check_clean "$LAB" "$a" "switchyard-lab:$a"
}

case_errors() {
	local a="${BASE}x" b="${BASE}y"
	echo "== errors ($a, $b)"
	refute "unknown LAB_MODE is rejected" env LAB_MODE=nat LAB_PREFIX="$b" bash "$LAB" up
	refute "too long LAB_PORT2 is rejected" env LAB_MODE=gateway2 LAB_PREFIX="$b" LAB_PORT=abcdefghijklmno bash "$LAB" up
	lab_up "$a" proxy || return 0
	STARTED+=("lab $b")
	# b asks for a's port: must fail and leave neither b behind nor a broken.
	refute "$b: up on $a's LAB_PORT fails" env LAB_MODE=gateway2 LAB_PREFIX="$b" LAB_PORT="${a}p0" LAB_LOGDIR="/tmp/$b-lab" bash "$LAB" up
	expect "$b: nothing left of the failed up" "" "$(netns_with_prefix "$b")"
	refute "$b: up on $a's port as LAB_PORT2 fails" env LAB_MODE=gateway2 LAB_PREFIX="$b" LAB_PORT="${b}p0" LAB_PORT2="${a}p0" LAB_LOGDIR="/tmp/$b-lab" bash "$LAB" up
	expect "$b: nothing left of the failed up" "" "$(netns_with_prefix "$b")$(ports_with_alias "switchyard-lab:$b")"
	expect "$a: untouched" "backend b1" "$(body "$a-router" http://10.20.0.11/)"
	down_and_check_clean "$LAB" "$a" "switchyard-lab:$a"
}

main() {
	((EUID == 0)) || { echo "selftest: must run as root" >&2; exit 2; }
	local cases=("$@") c
	((${#cases[@]})) || cases=(dsr proxy gateway gateway2 multitier parallel errors)
	for c in "${cases[@]}"; do
		case "$c" in
		dsr | proxy | gateway | gateway2 | multitier | parallel | errors) "case_$c" ;;
		*) echo "selftest: unknown case '$c'" >&2; exit 2 ;;
		esac
	done
	echo "$PASSED passed, $FAILED failed"
	((FAILED == 0))
}

main "$@"
