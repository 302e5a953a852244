#!/usr/bin/env bash
# The lab demo: installs what is missing, builds Switchyard, builds a namespace lab (client,
# router, switch, two HTTP backends owning the VIP on lo), puts Switchyard in front in DSR
# mode through DPDK's net_af_packet, sends 200 real curl requests to the VIP and shows where
# they went. Tears everything down on exit, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
N="${DEMO_REQUESTS:-200}"
VIP=10.20.0.100
export LAB_PREFIX=sydemo LAB_PORT=yard0 LAB_LOGDIR=/tmp/sydemo-lab

((EUID == 0)) || { echo "demo.sh: run as root (network namespaces)" >&2; exit 1; }
scripts/install-deps.sh
cargo build --release --locked

work=$(mktemp -d)
lb_pid=""
cleanup() {
	[[ -n "$lb_pid" ]] && kill -INT "$lb_pid" 2>/dev/null && wait "$lb_pid" 2>/dev/null || true
	tests/lab/lab.sh down >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

tests/lab/lab.sh up
target/release/switchyard check --config conf/lab-dsr.toml
target/release/switchyard run --config conf/lab-dsr.toml --stats-json "$work/stats.json" \
	2>"$work/switchyard.log" &
lb_pid=$!

echo "demo: waiting for the VIP to answer..."
for _ in $(seq 1 50); do
	tests/lab/lab.sh exec client curl -s -m 1 "http://$VIP/" >/dev/null && break
	sleep 0.2
done
: >"$LAB_LOGDIR/b1.log"
: >"$LAB_LOGDIR/b2.log"

echo "demo: $N requests from the client namespace to http://$VIP/"
ok=0
declare -A served=()
for _ in $(seq 1 "$N"); do
	if body=$(tests/lab/lab.sh exec client curl -s -m 3 "http://$VIP/"); then
		ok=$((ok + 1))
		served[$body]=$((${served[$body]:-0} + 1))
	fi
done
kill -INT "$lb_pid"
wait "$lb_pid" || true
lb_pid=""

echo
echo "requests succeeded: $ok / $N"
for b in "${!served[@]}"; do printf '  %-12s %4d (%d %%)\n' "$b" "${served[$b]}" $((100 * ${served[$b]} / N)); done
echo "backend b1 log (client address as the server saw it):"
head -n 3 "$LAB_LOGDIR/b1.log" | sed 's/^/  /'
echo "balancer counters:"
python3 - "$work/stats.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))["total"]
for k, v in t.items():
    if v:
        print(f"  {k:28} {v}")
PY
[[ $ok -eq $N ]]
