#!/usr/bin/env bash
# Runs every fuzz target (fuzz/, cargo-fuzz with libFuzzer and AddressSanitizer, on the nightly
# toolchain) for SECONDS each (default 20) from its committed seeds, and fails if any of them
# found a crash, a panic, a timeout or ran out of memory; the input that did it is left in
# fuzz/artifacts/<target>/ (reproduce: cargo +nightly fuzz run <target> <that file>).
# Installs cargo-fuzz (and the nightly toolchain) if missing. scripts/test.sh runs it briefly.
#
# usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#
# New inputs libFuzzer finds go to fuzz/target/corpus/<target>/ (ignored, kept between runs so
# that later runs go deeper); fuzz/corpus/<target>/ holds the committed seeds (fuzz/seeds.py).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

secs=${1:-20}
shift || true
[[ $secs =~ ^[0-9]+$ ]] || { echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2; exit 2; }

if ! cargo +nightly --version >/dev/null 2>&1; then
	echo "fuzz.sh: installing the nightly toolchain (cargo-fuzz needs it)" >&2
	rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
	echo "fuzz.sh: installing cargo-fuzz" >&2
	cargo +nightly install --locked cargo-fuzz
fi

if (($#)); then
	targets=("$@")
else
	mapfile -t targets < <(cargo +nightly fuzz list)
fi
# One build for all targets first, so that each target's SECONDS are spent fuzzing.
cargo +nightly fuzz build

failed=()
for t in "${targets[@]}"; do
	work="fuzz/target/corpus/$t"
	mkdir -p "$work"
	echo "fuzz.sh: $t for ${secs}s" >&2
	# -timeout: one input taking longer is a hang (the slowest seed takes well under 1 s).
	if ! cargo +nightly fuzz run "$t" "$work" "fuzz/corpus/$t" -- \
		-max_total_time="$secs" -timeout=20 -print_final_stats=1 2>"fuzz/target/$t.log"; then
		# What went wrong (a panic's message comes long before the end of the log), then
		# where libFuzzer left the input.
		grep -m 5 -E "panicked at|^ERROR: |^SUMMARY: |^==[0-9]+== ERROR" "fuzz/target/$t.log" -A 1 >&2 || true
		sed -n '/^Failing input:/,/^Error:/p' "fuzz/target/$t.log" >&2
		failed+=("$t")
		continue
	fi
	grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' \
		"fuzz/target/$t.log" | sed "s/^/fuzz.sh: $t /" >&2
done
if ((${#failed[@]})); then
	echo "fuzz.sh: FAILED: ${failed[*]} (inputs in fuzz/artifacts/, logs in fuzz/target/*.log)" >&2
	exit 1
fi
echo "fuzz.sh: ${targets[*]}: no crash in ${secs}s each" >&2
