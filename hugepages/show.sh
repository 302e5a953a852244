#!/usr/bin/env bash
# Show hugepage pools (per size, per NUMA node), hugetlbfs mounts, and where
# the network PCI devices sit (NUMA node, driver), i.e. everything needed to
# decide where to reserve pages and which cores to pin Switchyard's workers
# to. Read-only; does not need root (some details may be hidden without it).
#
# Usage: show.sh
set -Eeuo pipefail

rd() { cat "$1" 2>/dev/null || echo "?"; } # read a sysfs value, "?" if absent
human_kb() {
	local kb=$1
	if ((kb >= 1048576)); then echo "$((kb / 1048576))G"; else echo "$((kb / 1024))M"; fi
}

echo "== hugepage pools (all nodes)"
printf '  %-6s %8s %8s %8s %8s %10s\n' size total free rsvd surplus "total MiB"
for d in /sys/kernel/mm/hugepages/hugepages-*kB; do
	[[ -d "$d" ]] || continue
	kb=${d##*hugepages-}
	kb=${kb%kB}
	total=$(rd "$d/nr_hugepages")
	printf '  %-6s %8s %8s %8s %8s %10s\n' "$(human_kb "$kb")" "$total" "$(rd "$d/free_hugepages")" \
		"$(rd "$d/resv_hugepages")" "$(rd "$d/surplus_hugepages")" "$((total * kb / 1024))"
done
echo "  default size: $(awk '/^Hugepagesize:/ {print $2, $3}' /proc/meminfo)"

echo "== per NUMA node"
printf '  %-6s %-6s %8s %8s %8s  %s\n' node size total free surplus cpus
for n in /sys/devices/system/node/node[0-9]*; do
	[[ -d "$n" ]] || continue
	for d in "$n"/hugepages/hugepages-*kB; do
		[[ -d "$d" ]] || continue
		kb=${d##*hugepages-}
		kb=${kb%kB}
		printf '  %-6s %-6s %8s %8s %8s  %s\n' "${n##*node}" "$(human_kb "$kb")" "$(rd "$d/nr_hugepages")" \
			"$(rd "$d/free_hugepages")" "$(rd "$d/surplus_hugepages")" "$(rd "$n/cpulist")"
	done
done

echo "== hugetlbfs mounts"
if grep -q ' hugetlbfs ' /proc/mounts; then
	while read -r _ mnt _ opts _; do
		# Files here are DPDK's memory (rtemap_*); with no DPDK process
		# running they are stale and pin their pages (release.sh --clear).
		files=$(find "$mnt" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
		echo "  $mnt ($opts) files: $files"
	done < <(awk '$3 == "hugetlbfs"' /proc/mounts)
else
	echo "  none (reserve.sh mounts one)"
fi

# Kernel interface names belonging to a PCI device. Not just $dev/net/*:
# for virtio the netdev hangs off a child device (.../virtio0/net/eth0).
pci_ifnames() {
	local pdev n ndev out=()
	pdev=$(readlink -f "$1")
	for n in /sys/class/net/*; do
		[[ -e "$n/device" ]] || continue
		ndev=$(readlink -f "$n/device")
		if [[ "$ndev" == "$pdev" || "$ndev" == "$pdev"/* ]]; then out+=("${n##*/}"); fi
	done
	echo "${out[*]:-none}"
}

echo "== network PCI devices (class 0x02xxxx; numa_node -1 = no NUMA info / single node)"
found=0
for dev in /sys/bus/pci/devices/*; do
	[[ -e "$dev/class" ]] || continue
	[[ "$(rd "$dev/class")" == 0x02* ]] || continue
	found=1
	addr=${dev##*/}
	drv=none
	[[ -e "$dev/driver" ]] && drv=$(basename "$(readlink -f "$dev/driver")")
	numa=$(rd "$dev/numa_node") # -1: single node machine, or firmware did not say
	ifs=$(pci_ifnames "$dev")
	cpus=$(rd "$dev/local_cpulist")
	echo "  $addr numa_node=$numa driver=$drv if=$ifs local_cpus=$cpus"
done
((found)) || echo "  none"

if command -v dpdk-hugepages.py >/dev/null; then
	echo "== dpdk-hugepages.py -s"
	dpdk-hugepages.py -s 2>&1 | sed 's/^/  /' || true
fi
