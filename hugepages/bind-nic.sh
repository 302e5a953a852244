#!/usr/bin/env bash
# Hand a NIC to DPDK (bind it to vfio-pci or uio_pci_generic), or give it back
# to its kernel driver.
#
# Usage:
#   bind-nic.sh PCI_ADDR [vfio-pci|uio_pci_generic] [--noiommu] [--dry-run]
#   bind-nic.sh --unbind PCI_ADDR KERNEL_DRIVER [--dry-run]   # e.g. ice, i40e, ixgbe
#   bind-nic.sh --status
#
#   PCI_ADDR    e.g. 0000:03:00.0 (the domain "0000:" may be omitted);
#               show.sh / --status list the network devices
#   vfio-pci    default and recommended: needs an IOMMU (VT-d / AMD-Vi enabled
#               in firmware, and intel_iommu=on iommu=pt on the kernel command
#               line for Intel)
#   uio_pci_generic  no IOMMU needed, but no DMA isolation and no MSI-X
#               interrupts (fine for Switchyard's polling workers)
#   --noiommu   vfio without an IOMMU: sets vfio's enable_unsafe_noiommu_mode.
#               As unsafe as uio (the device can DMA anywhere in RAM, and it
#               taints the kernel); for VMs/test boxes without a vIOMMU only
#   --dry-run   do every check, print what would be done, change nothing
#
# Safety: refuses a device that is not a network device, and refuses one
# whose kernel interface is in use (has an IPv4 address, a global IPv6
# address, routes, or is enslaved to a bond/bridge) so that the management
# NIC cannot be taken away by a typo. Flush the addresses first if you mean it.
# Needs dpdk-devbind.py (Debian package "dpdk").
set -Eeuo pipefail

log() { printf 'bind-nic: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
trap 'log "failed at line $LINENO: $BASH_COMMAND"' ERR

usage() {
	sed -n '2,/^set -Eeuo/{/^set -Eeuo/d;s/^# \{0,1\}//;p}' "$0" >&2
	exit 2
}

DRY_RUN=0
# Every state-changing command goes through run(), so --dry-run is honest.
run() {
	if ((DRY_RUN)); then
		printf 'bind-nic: would run:' >&2
		printf ' %q' "$@" >&2
		printf '\n' >&2
	else
		"$@"
	fi
}

find_devbind() {
	local c
	for c in dpdk-devbind.py dpdk-devbind; do
		if command -v "$c" >/dev/null; then
			command -v "$c"
			return 0
		fi
	done
	die "dpdk-devbind.py not found (apt-get install dpdk)"
}

# dpdk-devbind calls lspci, which on kernels without module support prints
# "Unable to load libkmod resources" for every device: pure noise, drop it.
devbind() {
	local rc=0
	"$DEVBIND" "$@" 2> >(grep -v 'libkmod' >&2 || true) || rc=$?
	return "$rc"
}

# "03:00.0" -> "0000:03:00.0"; returns 1 for anything not shaped like a PCI
# address (the caller dies: a die inside $(...) would only end the subshell).
normalize_pci() {
	local a=${1,,}
	[[ "$a" =~ ^[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$ ]] && a="0000:$a"
	[[ "$a" =~ ^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$ ]] || return 1
	echo "$a"
}
bad_pci() { die "'$1' is not a PCI address (expected e.g. 0000:03:00.0)"; }

require_pci_dev() {
	local a=$1
	[[ -n "$a" ]] || die "empty PCI address"
	[[ -e "/sys/bus/pci/devices/$a" ]] ||
		die "no PCI device $a on this machine (list network devices: $0 --status, or show.sh)"
}

current_driver() {
	local d=/sys/bus/pci/devices/$1/driver
	if [[ -e "$d" ]]; then basename "$(readlink -f "$d")"; else echo none; fi
}

# Kernel interface names of a PCI device (virtio puts them one level deeper).
pci_ifnames() {
	local pdev n ndev
	pdev=$(readlink -f "/sys/bus/pci/devices/$1")
	for n in /sys/class/net/*; do
		[[ -e "$n/device" ]] || continue
		ndev=$(readlink -f "$n/device")
		if [[ "$ndev" == "$pdev" || "$ndev" == "$pdev"/* ]]; then echo "${n##*/}"; fi
	done
}

# Why an interface counts as in use ("" if it does not).
if_in_use() {
	local ifn=$1 why=()
	[[ -n "$(ip -4 -o addr show dev "$ifn" 2>/dev/null)" ]] && why+=("has IPv4 address(es)")
	[[ -n "$(ip -6 -o addr show dev "$ifn" scope global 2>/dev/null)" ]] && why+=("has global IPv6 address(es)")
	[[ -n "$(ip -4 route show table all dev "$ifn" 2>/dev/null)" ]] && why+=("has routes")
	[[ "$(ip -o link show dev "$ifn" 2>/dev/null)" == *" master "* ]] && why+=("is enslaved to a bridge/bond")
	((${#why[@]})) || return 0
	local out
	out=$(printf '%s; ' "${why[@]}")
	echo "${out%; }"
}

ensure_module() { # load a driver unless already there (module or built in)
	local drv=$1 mod=${1//-/_}
	[[ -d "/sys/bus/pci/drivers/$drv" ]] && return 0
	command -v modprobe >/dev/null || die "driver $drv not loaded and modprobe not available"
	run modprobe "$mod" || die "cannot load kernel module $mod (not built for this kernel? modules disabled?)"
	if ((!DRY_RUN)) && [[ ! -d "/sys/bus/pci/drivers/$drv" ]]; then
		die "module $mod loaded but driver $drv did not register"
	fi
}

cmd_status() {
	DEVBIND=$(find_devbind)
	devbind --status-dev net
}

cmd_bind() {
	local addr=$1 drv=$2 noiommu=$3 cur ifn why
	DEVBIND=$(find_devbind)
	((EUID == 0 || DRY_RUN)) || die "must run as root"
	case "$drv" in
	vfio-pci | uio_pci_generic) ;;
	igb_uio) die "igb_uio is an out-of-tree module; use vfio-pci (or uio_pci_generic)" ;;
	*) die "unsupported driver '$drv' (use vfio-pci or uio_pci_generic)" ;;
	esac
	require_pci_dev "$addr"
	[[ "$(cat "/sys/bus/pci/devices/$addr/class")" == 0x02* ]] ||
		die "$addr is not a network device (PCI class $(cat "/sys/bus/pci/devices/$addr/class"))"
	cur=$(current_driver "$addr")
	if [[ "$cur" == "$drv" ]]; then
		log "$addr is already bound to $drv"
		return 0
	fi

	# Refuse before touching anything: taking the management NIC away (or a
	# bridge/bond member) would cut the machine off.
	for ifn in $(pci_ifnames "$addr"); do
		why=$(if_in_use "$ifn")
		[[ -z "$why" ]] || die "$addr is kernel interface $ifn, which is in use ($why); refusing. If you really mean it: ip addr flush dev $ifn (and remove it from any bridge/bond) first"
	done

	if [[ "$drv" == vfio-pci ]]; then
		if ((noiommu)); then
			log "WARNING: enabling vfio no-IOMMU mode: the device can DMA to any memory, kernel gets tainted"
			if [[ -w /sys/module/vfio/parameters/enable_unsafe_noiommu_mode ]]; then
				run sh -c 'echo 1 > /sys/module/vfio/parameters/enable_unsafe_noiommu_mode'
			else
				run modprobe vfio enable_unsafe_noiommu_mode=1 ||
					die "cannot load vfio with enable_unsafe_noiommu_mode=1"
			fi
		elif [[ ! -e "/sys/bus/pci/devices/$addr/iommu_group" ]]; then
			die "$addr has no IOMMU group: the IOMMU is off. Enable VT-d/AMD-Vi in firmware and boot with 'intel_iommu=on iommu=pt' (Intel), or use --noiommu (unsafe) or uio_pci_generic"
		fi
	elif ((noiommu)); then
		log "note: --noiommu only applies to vfio-pci; ignored for $drv"
	fi
	ensure_module "$drv"

	# The kernel driver would otherwise still be using the port while it is
	# unbound; dpdk-devbind also refuses "Active" (routed) interfaces.
	for ifn in $(pci_ifnames "$addr"); do
		log "bringing $ifn down"
		run ip link set dev "$ifn" down
	done
	log "binding $addr ($cur -> $drv)"
	run devbind -b "$drv" "$addr"
	if ((!DRY_RUN)); then
		cur=$(current_driver "$addr")
		[[ "$cur" == "$drv" ]] || die "$addr is bound to '$cur' after dpdk-devbind, not $drv"
		echo "$addr bound to $drv"
	fi
}

cmd_unbind() {
	local addr=$1 kdrv=$2 cur
	DEVBIND=$(find_devbind)
	((EUID == 0 || DRY_RUN)) || die "must run as root"
	[[ "$kdrv" =~ ^[A-Za-z0-9_-]+$ ]] || die "'$kdrv' is not a driver name"
	case "$kdrv" in
	vfio-pci | uio_pci_generic | igb_uio) die "give the kernel driver of the NIC (e.g. ice, i40e, ixgbe, igb, mlx5_core), not $kdrv" ;;
	esac
	require_pci_dev "$addr"
	cur=$(current_driver "$addr")
	if [[ "$cur" == "$kdrv" ]]; then
		log "$addr is already bound to $kdrv"
		return 0
	fi
	ensure_module "$kdrv"
	log "binding $addr ($cur -> $kdrv)"
	run devbind -b "$kdrv" "$addr"
	if ((!DRY_RUN)); then
		cur=$(current_driver "$addr")
		[[ "$cur" == "$kdrv" ]] || die "$addr is bound to '$cur' after dpdk-devbind, not $kdrv"
		echo "$addr bound to $kdrv; interface(s): $(pci_ifnames "$addr" | tr '\n' ' ')(left down: ip link set dev IF up)"
	fi
}

main() {
	local mode=bind args=() noiommu=0 addr
	while (($#)); do
		case "$1" in
		--status) mode=status ;;
		--unbind) mode=unbind ;;
		--noiommu) noiommu=1 ;;
		--dry-run) DRY_RUN=1 ;;
		-h | --help) usage ;;
		-*) die "unknown option '$1' (see --help)" ;;
		*) args+=("$1") ;;
		esac
		shift
	done
	case "$mode" in
	status)
		((${#args[@]} == 0)) || die "--status takes no arguments"
		cmd_status
		;;
	unbind)
		((${#args[@]} == 2)) || die "usage: $0 --unbind PCI_ADDR KERNEL_DRIVER"
		# Separate assignment: a failing $(...) inside an argument list
		# would go unnoticed; here it is checked.
		addr=$(normalize_pci "${args[0]}") || bad_pci "${args[0]}"
		cmd_unbind "$addr" "${args[1]}"
		;;
	bind)
		((${#args[@]} >= 1 && ${#args[@]} <= 2)) || usage
		addr=$(normalize_pci "${args[0]}") || bad_pci "${args[0]}"
		cmd_bind "$addr" "${args[1]:-vfio-pci}" "$noiommu"
		;;
	esac
}

main "$@"
