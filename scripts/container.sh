#!/usr/bin/env bash
# Switchyard's container image: built from the repository's Dockerfile and run with the least
# privilege it needs, by podman (or docker where a docker daemon answers). Run as root.
#
#   scripts/container.sh base            the base image (once; cached as $SWITCHYARD_BASE_IMAGE)
#   scripts/container.sh build           base, release binary, image $SWITCHYARD_IMAGE
#   scripts/container.sh run [OPTS...]   run the image in the foreground (see `run` below)
#   scripts/container.sh test            tests/container.rs: the image in front of a lab (root)
#
# Base: debian:bookworm-slim where a registry gives it; otherwise a Debian 12 made here with
# `debootstrap --variant=minbase` from the Debian mirror this machine's apt uses, imported as
# localhost/switchyard-base:bookworm and kept (delete it to make it again). The Dockerfile
# stays an ordinary one (`docker build .` builds the binary in rust:1-bookworm); this script
# builds its `prebuilt` target instead, from a context holding the host's release binary and
# conf/ (the same Debian 12 and DPDK 22.11 ABI as the image's runtime).
#
# Environment:
#   SWITCHYARD_IMAGE       image to build or run (localhost/switchyard:latest)
#   SWITCHYARD_BASE_IMAGE  the cached base (localhost/switchyard-base:bookworm)
#   SWITCHYARD_BIN         put this binary in the image instead of `cargo build --release`
#                          (tests/container.rs passes the one cargo test built)
#   CONTAINER_ENGINE       podman or docker (default: docker if its daemon answers, else podman)
#   PODMAN_OPTS            podman's global options ("--cgroup-manager=cgroupfs --runtime=runc":
#                          these machines run no systemd and have runc, not crun)
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"

IMAGE="${SWITCHYARD_IMAGE:-localhost/switchyard:latest}"
BASE_IMAGE="${SWITCHYARD_BASE_IMAGE:-localhost/switchyard-base:bookworm}"
SUITE=bookworm

log() { printf 'container.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

if [[ -z "${CONTAINER_ENGINE:-}" ]]; then
	if command -v docker >/dev/null && timeout 5 docker info >/dev/null 2>&1; then
		CONTAINER_ENGINE=docker
	else
		CONTAINER_ENGINE=podman
	fi
fi
case "$CONTAINER_ENGINE" in
podman) read -r -a ENGINE <<<"podman ${PODMAN_OPTS:---cgroup-manager=cgroupfs --runtime=runc}" ;;
docker) ENGINE=(docker) ;;
*) die "CONTAINER_ENGINE must be podman or docker, not '$CONTAINER_ENGINE'" ;;
esac
command -v "${ENGINE[0]}" >/dev/null || die "${ENGINE[0]} not found (scripts/install-deps.sh installs podman)"

# podman 4.3 gives a container RLIMIT_NOFILE 1048576 and a high RLIMIT_NPROC, and runc fails to
# set them ("error setting rlimit type 7: operation not permitted") where root lacks
# CAP_SYS_RESOURCE and the host's hard limits are lower (as on these machines). The most that
# can be had: the host's hard limits (podman runs runc with RLIMIT_NPROC 32768 at most).
LIMITS=()
if [[ "$CONTAINER_ENGINE" == podman ]]; then
	nofile=$(ulimit -Hn) nproc=$(ulimit -Hu)
	[[ "$nofile" == unlimited || "$nofile" -gt 1048576 ]] && nofile=1048576
	[[ "$nproc" == unlimited || "$nproc" -gt 32768 ]] && nproc=32768
	LIMITS=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")
fi

have_image() { "${ENGINE[@]}" image inspect "$1" >/dev/null 2>&1; }

# The Debian mirror (and security mirror) this machine's apt uses for bookworm.
mirror() {
	local want="$1" fallback="$2" site
	# shellcheck disable=SC2016 # apt's own $(FIELD) syntax, not the shell's
	site=$(apt-get indextargets --format '$(SITE) $(RELEASE)' 2>/dev/null |
		awk -v r="$want" '$2 == r { print $1; exit }')
	echo "${site:-$fallback}"
}

# Makes the base image from Debian's packages, unless it is cached or a registry has one.
base() {
	if have_image "$BASE_IMAGE"; then
		log "base $BASE_IMAGE (cached)"
		return
	fi
	if "${ENGINE[@]}" pull -q "docker.io/library/debian:$SUITE-slim" >/dev/null 2>&1; then
		"${ENGINE[@]}" tag "docker.io/library/debian:$SUITE-slim" "$BASE_IMAGE"
		log "base $BASE_IMAGE = debian:$SUITE-slim (pulled)"
		return
	fi
	command -v debootstrap >/dev/null || die "no registry and no debootstrap (scripts/install-deps.sh)"
	local main security root
	main=$(mirror "$SUITE" http://deb.debian.org/debian)
	security=$(mirror "$SUITE-security" http://deb.debian.org/debian-security)
	root=$(mktemp -d /var/tmp/switchyard-base.XXXXXX)
	# --one-file-system: never into anything debootstrap left mounted there.
	# shellcheck disable=SC2064 # expand now: the path is local
	trap "rm -rf --one-file-system '$root'" EXIT
	# apt's proxy and release-date check as this machine has them (a snapshot mirror's
	# Release files are old), for debootstrap and for apt in the image.
	local PROXY="" VALID=""
	eval "$(apt-config shell PROXY Acquire::http::Proxy VALID Acquire::Check-Valid-Until)"
	log "base: no registry; debootstrap --variant=minbase $SUITE from $main"
	http_proxy="${PROXY:-${http_proxy:-}}" \
		debootstrap --variant=minbase "$SUITE" "$root" "$main" >"$root.log" 2>&1 ||
		{ tail -20 "$root.log" >&2; rm -f "$root.log"; die "debootstrap failed"; }
	rm -f "$root.log"
	cat >"$root/etc/apt/sources.list" <<-EOF
		deb $main $SUITE main
		deb $main $SUITE-updates main
		deb $security $SUITE-security main
	EOF
	# What debian:*-slim leaves out, here and in every package installed later.
	cat >"$root/etc/dpkg/dpkg.cfg.d/slim" <<-'EOF'
		path-exclude /usr/share/doc/*
		path-include /usr/share/doc/*/copyright
		path-exclude /usr/share/man/*
		path-exclude /usr/share/info/*
		path-exclude /usr/share/locale/*
		path-include /usr/share/locale/locale.alias
	EOF
	cat >"$root/etc/apt/apt.conf.d/docker-clean" <<-'EOF'
		APT::Install-Recommends "false";
		DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
	EOF
	if [[ -n "$PROXY" ]]; then
		echo "Acquire::http::Proxy \"$PROXY\";" >>"$root/etc/apt/apt.conf.d/50host"
	fi
	if [[ -n "$VALID" ]]; then
		echo "Acquire::Check-Valid-Until \"$VALID\";" >>"$root/etc/apt/apt.conf.d/50host"
	fi
	find "$root/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
	rm -rf "$root"/usr/share/{man,info}/* "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* \
		"$root"/var/log/*.log "$root"/var/log/apt/*
	find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
	tar -C "$root" --numeric-owner -c . |
		"${ENGINE[@]}" import --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
	rm -rf --one-file-system "$root"
	trap - EXIT
	log "base $BASE_IMAGE made ($("${ENGINE[@]}" image inspect --format '{{.Size}}' "$BASE_IMAGE") bytes)"
}

build() {
	base
	local bin="${SWITCHYARD_BIN:-}"
	if [[ -z "$bin" ]]; then
		(cd "$REPO" && cargo build --release --locked)
		bin="$REPO/target/release/switchyard"
	fi
	[[ -x "$bin" ]] || die "no binary at $bin"
	local ctx
	ctx=$(mktemp -d /var/tmp/switchyard-ctx.XXXXXX)
	# shellcheck disable=SC2064
	trap "rm -rf '$ctx'" EXIT
	# Symbols stay (perf, backtraces), DWARF goes: as the Dockerfile's build stage does.
	strip --strip-debug -o "$ctx/switchyard" "$bin"
	cp -r "$REPO/conf" "$ctx/conf"
	local old fmt=()
	old=$("${ENGINE[@]}" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
	[[ "$CONTAINER_ENGINE" == podman ]] && fmt=(--format docker) # HEALTHCHECK is docker-format only
	"${ENGINE[@]}" build "${fmt[@]}" "${LIMITS[@]}" --network host --target prebuilt \
		--build-arg "BASE=$BASE_IMAGE" -f "$REPO/Dockerfile" -t "$IMAGE" "$ctx"
	rm -rf "$ctx"
	trap - EXIT
	# The image this one replaces goes if nothing names it any more (another tag, a
	# container still using it: it stays).
	if [[ -n "$old" && "$old" != "$("${ENGINE[@]}" image inspect --format '{{.Id}}' "$IMAGE")" &&
		"$("${ENGINE[@]}" image inspect --format '{{len .RepoTags}}' "$old" 2>/dev/null)" == 0 ]]; then
		"${ENGINE[@]}" rmi "$old" >/dev/null 2>&1 || true
	fi
	log "image $IMAGE ($("${ENGINE[@]}" image inspect --format '{{.Size}}' "$IMAGE") bytes)"
}

# run [--network NET] [--conf DIR] [--af-packet] [--hugepages] [ENGINE-RUN-OPTIONS...]
#   --network NET  host (default: the host's interfaces, a real NIC or net_af_packet), or a
#                  namespace (podman: ns:/run/netns/NAME) where a lab wires the tap
#   --conf DIR     mounted read-only at /etc/switchyard (default: the repository's conf/);
#                  pick the file with -e SWITCHYARD_CONFIG=/etc/switchyard/FILE
#   --af-packet    NET_RAW too (net_af_packet's socket); net_tap needs only NET_ADMIN
#   --hugepages    mount /dev/hugepages (without it, eal_args need --no-huge)
# Everything else goes to `ENGINE run` before the image (-d, --name, -e, ...).
run() {
	local network=host conf="$REPO/conf" extra=()
	local caps=(--cap-drop all --cap-add NET_ADMIN) devs=(--device /dev/net/tun)
	while (($#)); do
		case "$1" in
		--network) network="$2"; shift 2 ;;
		--network=*) network="${1#*=}"; shift ;;
		--conf) conf="$2"; shift 2 ;;
		--af-packet) caps+=(--cap-add NET_RAW); shift ;;
		--hugepages) devs+=(-v /dev/hugepages:/dev/hugepages); shift ;;
		*) extra+=("$1"); shift ;;
		esac
	done
	local cmd=("${ENGINE[@]}" run "${LIMITS[@]}" --network "$network" "${caps[@]}" "${devs[@]}"
		-v "$conf:/etc/switchyard:ro" "${extra[@]}" "$IMAGE")
	log "${cmd[*]}"
	exec "${cmd[@]}"
}

((EUID == 0)) || die "run as root"
case "${1:-}" in
base) base ;;
build) build ;;
run) shift; run "$@" ;;
test) cd "$REPO" && exec cargo test --locked --test container -- --nocapture ;;
*) die "usage: $0 base | build | run [OPTIONS...] | test" ;;
esac
