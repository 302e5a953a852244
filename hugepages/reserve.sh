#!/usr/bin/env bash
# Reserve hugepages for Switchyard (DPDK) and make sure hugetlbfs is mounted.
#
# Usage: reserve.sh [N] [--1g] [--node K]
#   N          number of pages to have in the pool (default 512; 512 x 2 MiB
#              = 1 GiB). This SETS the pool size, it does not add to it.
#   --1g       1 GiB pages instead of 2 MiB pages
#   --node K   reserve on NUMA node K only (use the node the NIC sits on, see
#              show.sh); default: let the kernel spread pages over all nodes
#
# Prints what the kernel actually reserved, which can be fewer pages than
# asked for when memory is fragmented: that is a warning, not an error.
# Exits non-zero when nothing at all could be reserved.
#
# About 1 GiB pages: each one needs a physically contiguous, 1 GiB aligned
# free region. Right after boot those exist; on a running machine memory is
# usually too fragmented, so run-time reservation often yields fewer pages or
# none. The reliable way is to reserve them at boot, on the kernel command
# line (e.g. GRUB_CMDLINE_LINUX in /etc/default/grub, then update-grub):
#     default_hugepagesz=1G hugepagesz=1G hugepages=N
# (per node at boot: hugepagesz=1G hugepages=0:N0,1:N1). This script still
# tries at run time (after asking the kernel to compact memory) and reports
# what it got. Some CPUs/hypervisors do not offer 1 GiB pages at all (no
# "pdpe1gb" CPU flag): then /sys/kernel/mm/hugepages/hugepages-1048576kB does
# not exist and this script says so.
set -Eeuo pipefail

# Mount points this script created are recorded here, so release.sh only
# unmounts what we mounted (never a systemd-managed /dev/hugepages). /run is
# a tmpfs: the record vanishes at reboot, exactly like the mounts.
readonly STATE_DIR=/run/switchyard-hugepages
readonly MOUNT_RECORD="$STATE_DIR/mounts"

log() { printf 'reserve: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR

usage() {
	sed -n '2,/^set -Eeuo/{/^set -Eeuo/d;s/^# \{0,1\}//;p}' "$0" >&2
	exit 2
}

pages=512
size=2m
node=""
while (($#)); do
	case "$1" in
	--1g | --1G) size=1g ;;
	--2m | --2M) size=2m ;;
	--node)
		(($# >= 2)) || die "--node needs a node number"
		node=$2
		shift
		;;
	--node=*) node=${1#--node=} ;;
	-h | --help) usage ;;
	-*) die "unknown option '$1' (see --help)" ;;
	*)
		[[ "$1" =~ ^[0-9]+$ ]] || die "page count '$1' is not a number"
		pages=$1
		;;
	esac
	shift
done
((pages > 0)) || die "page count must be > 0 (use release.sh to free pages)"
((EUID == 0)) || die "must run as root"

if [[ "$size" == 1g ]]; then
	kb=1048576 mnt=/dev/hugepages-1G mntsize=1G human="1 GiB"
else
	kb=2048 mnt=/dev/hugepages mntsize=2M human="2 MiB"
fi

sysdir=/sys/kernel/mm/hugepages/hugepages-${kb}kB
[[ -d "$sysdir" ]] || die "this kernel/CPU does not support $human hugepages ($sysdir missing)"

# Which nr_hugepages file to write:
#  * --node K: the per-node file; the global count is the sum over nodes.
#  * otherwise the per-size sysfs file. /proc/sys/vm/nr_hugepages is the
#    same knob but only for the *default* page size (Hugepagesize in
#    /proc/meminfo), which is 1 GiB on machines booted with
#    default_hugepagesz=1G, so it is used only when it means our size.
default_kb=$(awk '/^Hugepagesize:/ {print $2}' /proc/meminfo)
if [[ -n "$node" ]]; then
	[[ "$node" =~ ^[0-9]+$ ]] || die "--node '$node' is not a number"
	nodedir=/sys/devices/system/node/node$node
	[[ -d "$nodedir" ]] || die "NUMA node $node does not exist (nodes: $(cd /sys/devices/system/node && echo node[0-9]*))"
	knob=$nodedir/hugepages/hugepages-${kb}kB/nr_hugepages
	[[ -e "$knob" ]] || die "node $node has no $human hugepage pool ($knob missing)"
elif [[ "$default_kb" == "$kb" ]]; then
	knob=/proc/sys/vm/nr_hugepages
else
	knob=$sysdir/nr_hugepages
fi

before=$(cat "$knob")
if [[ "$size" == 1g ]] && ((pages > before)) && [[ -w /proc/sys/vm/compact_memory ]]; then
	# Defragment physical memory first; gives run-time 1 GiB allocation its
	# best chance. Harmless (costs some CPU time) if it does not help.
	log "compacting memory before allocating 1 GiB pages"
	echo 1 >/proc/sys/vm/compact_memory || true
fi

log "setting $knob: $before -> $pages"
# The write itself succeeds even when the kernel cannot find enough memory;
# it silently reserves as many as it can. So read the result back.
echo "$pages" >"$knob"
got=$(cat "$knob")

# Mount hugetlbfs with the matching page size, unless something already
# provides a mount for that size (systemd usually mounts /dev/hugepages).
# DPDK finds hugetlbfs mounts itself via /proc/mounts, by page size.
mount_pagesize_kb() {
	# pagesize of the hugetlbfs mounted at $1 ("" if not hugetlbfs)
	awk -v m="$1" '$2 == m && $3 == "hugetlbfs" {
		ps = "";
		n = split($4, o, ",");
		for (i = 1; i <= n; i++) if (o[i] ~ /^pagesize=/) ps = substr(o[i], 10);
		print ps; exit
	}' /proc/mounts
}
to_kb() { # 2M -> 2048, 1024M -> 1048576, 1G -> 1048576; "" -> default size
	local v=${1:-${default_kb}K}
	case "$v" in
	*K | *k) echo "${v%[Kk]}" ;;
	*M | *m) echo $((${v%[Mm]} * 1024)) ;;
	*G | *g) echo $((${v%[Gg]} * 1024 * 1024)) ;;
	*) echo $((v / 1024)) ;;
	esac
}
have_mount_for_size() {
	local m
	while read -r m; do
		[[ "$(to_kb "$(mount_pagesize_kb "$m")")" == "$kb" ]] && return 0
	done < <(awk '$3 == "hugetlbfs" {print $2}' /proc/mounts)
	return 1
}

if have_mount_for_size; then
	log "hugetlbfs for $human pages already mounted"
elif mountpoint -q "$mnt"; then
	log "warning: $mnt is already mounted but not as hugetlbfs pagesize=$mntsize; not touching it; mount one yourself, e.g.: mount -t hugetlbfs -o pagesize=$mntsize nodev /mnt/huge-$mntsize"
else
	mkdir -p "$mnt"
	mount -t hugetlbfs -o "pagesize=$mntsize" nodev "$mnt"
	mkdir -p "$STATE_DIR"
	grep -qxF "$mnt" "$MOUNT_RECORD" 2>/dev/null || echo "$mnt" >>"$MOUNT_RECORD"
	log "mounted hugetlbfs pagesize=$mntsize at $mnt"
fi

# Report.
total=$(cat "$sysdir/nr_hugepages")
free=$(cat "$sysdir/free_hugepages")
where=${node:+on node $node }
echo "reserved $got x $human pages ${where}($((got * kb / 1024)) MiB); pool now: total $total, free $free"
if [[ -z "$node" ]]; then
	for d in /sys/devices/system/node/node[0-9]*; do
		[[ -r "$d/hugepages/hugepages-${kb}kB/nr_hugepages" ]] || continue
		echo "  ${d##*/}: $(cat "$d/hugepages/hugepages-${kb}kB/nr_hugepages") pages"
	done
fi
if ((got == 0)); then
	log "error: the kernel reserved no $human pages"
	[[ "$size" == 1g ]] && log "hint: reserve 1 GiB pages at boot: default_hugepagesz=1G hugepagesz=1G hugepages=$pages"
	exit 1
fi
if ((got < pages)); then
	log "warning: asked for $pages pages, the kernel only had $got (memory fragmented or too small)"
fi
exit 0
