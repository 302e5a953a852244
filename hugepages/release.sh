#!/usr/bin/env bash
# Give hugepages back to the kernel and unmount what reserve.sh mounted.
#
# Usage: release.sh [--2m | --1g] [--clear]
#   (default)  release both 2 MiB and 1 GiB pools, on every NUMA node
#   --2m/--1g  release only that page size
#   --clear    also delete stale DPDK files (rtemap_*, *map_*) from the
#              hugetlbfs mounts reserve.sh created, when no process uses them.
#              A crashed DPDK process leaves such files behind and they keep
#              their pages allocated: the pool then cannot shrink to 0.
#
# Pages still mapped by a running process are not freed by the kernel (they
# become "surplus" and go away when the process exits); this script reports
# them instead of failing. A mount is unmounted only if reserve.sh created it
# (recorded in /run/switchyard-hugepages/mounts) and nothing uses it.
set -Eeuo pipefail

readonly STATE_DIR=/run/switchyard-hugepages
readonly MOUNT_RECORD="$STATE_DIR/mounts"

log() { printf 'release: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR

usage() {
	sed -n '2,/^set -Eeuo/{/^set -Eeuo/d;s/^# \{0,1\}//;p}' "$0" >&2
	exit 2
}

sizes=(2048 1048576)
clear=0
while (($#)); do
	case "$1" in
	--2m | --2M) sizes=(2048) ;;
	--1g | --1G) sizes=(1048576) ;;
	--clear) clear=1 ;;
	-h | --help) usage ;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
	shift
done
((EUID == 0)) || die "must run as root"

# A mount is busy when a process has a file in it open or mapped. fuser -m
# answers that for the whole filesystem; without psmisc fall back to lsof.
mount_busy() {
	local m=$1
	if command -v fuser >/dev/null; then
		fuser -m "$m" >/dev/null 2>&1
	elif command -v lsof >/dev/null; then
		[[ -n "$(lsof -t -- "$m" 2>/dev/null)" ]]
	else
		return 1 # cannot tell; umount itself refuses (EBUSY) if mapped
	fi
}

recorded_mounts() {
	if [[ -r "$MOUNT_RECORD" ]]; then cat "$MOUNT_RECORD"; fi
}

mount_kb() { # page size in kB of the hugetlbfs mounted at $1
	awk -v m="$1" '$2 == m && $3 == "hugetlbfs" {
		n = split($4, o, ",");
		for (i = 1; i <= n; i++) if (o[i] ~ /^pagesize=/) v = substr(o[i], 10);
		# awk reads "2M" as 2: scale by the unit suffix
		if (v ~ /G$/) print v * 1048576; else if (v ~ /M$/) print v * 1024; else print v + 0;
		exit
	}' /proc/mounts
}

want_size() { local s; for s in "${sizes[@]}"; do [[ "$s" == "$1" ]] && return 0; done; return 1; }

# 1. Stale DPDK files (only with --clear, only in our mounts, only if unused).
if ((clear)); then
	while read -r m; do
		if [[ -z "$m" ]] || ! mountpoint -q "$m"; then continue; fi
		want_size "$(mount_kb "$m")" || continue
		if mount_busy "$m"; then
			log "$m is in use by a running process; not clearing it"
			continue
		fi
		n=$(find "$m" -mindepth 1 -maxdepth 1 -type f | wc -l)
		if ((n > 0)); then
			log "removing $n stale file(s) from $m"
			find "$m" -mindepth 1 -maxdepth 1 -type f -delete
		fi
	done < <(recorded_mounts)
fi

# 2. Shrink the pools to 0. The per-size sysfs knob covers all NUMA nodes.
for kb in "${sizes[@]}"; do
	d=/sys/kernel/mm/hugepages/hugepages-${kb}kB
	[[ -d "$d" ]] || continue
	if ((kb == 2048)); then human="2 MiB"; else human="1 GiB"; fi
	before=$(cat "$d/nr_hugepages")
	echo 0 >"$d/nr_hugepages"
	# nr_hugepages includes surplus pages: whatever is left after writing 0
	# is in use and will be freed by the kernel once its last user lets go.
	left=$(cat "$d/nr_hugepages")
	echo "$human pages: $before -> $left"
	if ((left > 0)); then
		log "warning: $left x $human pages are still in use (running DPDK process, or stale files in a hugetlbfs mount; see show.sh, release.sh --clear)"
	fi
done

# 3. Unmount what reserve.sh mounted, if nothing uses it and no files are left.
if [[ -r "$MOUNT_RECORD" ]]; then
	keep=()
	while read -r m; do
		[[ -n "$m" ]] || continue
		if ! mountpoint -q "$m"; then
			continue # already gone; forget it
		fi
		if ! want_size "$(mount_kb "$m")"; then
			keep+=("$m")
			continue
		fi
		if mount_busy "$m"; then
			log "$m is in use; left mounted"
			keep+=("$m")
		elif [[ -n "$(find "$m" -mindepth 1 -maxdepth 1 -print -quit)" ]]; then
			log "$m still holds files (stale DPDK memory? use --clear); left mounted"
			keep+=("$m")
		elif umount "$m"; then
			rmdir "$m" 2>/dev/null || true
			echo "unmounted $m"
		else
			keep+=("$m")
		fi
	done < <(recorded_mounts)
	if ((${#keep[@]})); then
		printf '%s\n' "${keep[@]}" >"$MOUNT_RECORD"
	else
		rm -f "$MOUNT_RECORD"
		rmdir "$STATE_DIR" 2>/dev/null || true
	fi
fi
exit 0
