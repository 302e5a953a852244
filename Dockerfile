# Switchyard in a container: Debian 12's DPDK 22.11 runtime, the binary and conf/.
#
#   docker build -t switchyard .                    # builds the binary in rust:1-bookworm
#   scripts/container.sh build                      # the same image where no registry answers
#                                                   # (see below and README, "Running in a container")
#
# Stages:
#   runtime   FROM ${BASE}: the DPDK libraries and PMDs Switchyard loads, iproute2 and nftables
#             (the exception path runs `ip` and `nft`). No compiler, no Rust.
#   prebuilt  runtime + a binary taken from the build context (`switchyard`, `conf/`): what
#             scripts/container.sh builds with `--target prebuilt`, from a context it makes out
#             of the host's own `cargo build --release` (same Debian, same DPDK ABI).
#   build     FROM ${RUST_IMAGE}: `cargo build --release --locked` from the repository.
#   (last)    runtime + the build stage's binary: what a plain `docker build .` makes
#             (BuildKit, docker's default builder, skips `prebuilt`, which it does not need).
#
# A plain build needs rust:1-bookworm and debian:bookworm-slim from a registry; where none is
# reachable, scripts/container.sh makes a Debian base with debootstrap and passes it as BASE.
#
# Run it with the least privilege it needs (README, "Running in a container"), never
# --privileged: net_tap ports and the exception path need NET_ADMIN and /dev/net/tun,
# net_af_packet adds NET_RAW, hugepages a mount of /dev/hugepages. With your config in
# /etc/switchyard/switchyard.toml:
#   docker run -d --name switchyard --network host --cap-drop all --cap-add NET_ADMIN \
#       --device /dev/net/tun -v /etc/switchyard:/etc/switchyard:ro switchyard
#   docker kill -s HUP switchyard       # reload the config
#   docker stop switchyard              # SIGTERM: a clean stop, exit 0

ARG BASE=debian:bookworm-slim
ARG RUST_IMAGE=rust:1-bookworm

FROM ${BASE} AS runtime
# The PMDs a container is likely to drive: the virtual devices (tap, af_packet, pcap, ring,
# null) and common NICs (virtio, vmxnet3, e1000, ixgbe, i40e, ice). EAL loads every PMD found
# in its plugin directory, so only these are installed; add others with --build-arg.
ARG DPDK_PMDS="librte-mempool-ring23 librte-net-tap23 librte-net-af-packet23 \
    librte-net-pcap23 librte-net-ring23 librte-net-null23 librte-bus-pci23 \
    librte-net-virtio23 librte-net-vmxnet3-23 librte-net-e1000-23 librte-net-ixgbe23 \
    librte-net-i40e23 librte-net-ice23"
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        librte-eal23 librte-ethdev23 librte-mbuf23 librte-mempool23 librte-ring23 \
        ${DPDK_PMDS} iproute2 nftables \
    && rm -rf /var/lib/apt/lists/*
# The config comes from SWITCHYARD_CONFIG (`run`, `check`, `ctl`): mount your conf/ here.
ENV SWITCHYARD_CONFIG=/etc/switchyard/switchyard.toml
# `ctl health`: exit 0 while every worker makes progress and every port is up.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/switchyard", "ctl", "health"]
# Switchyard stops cleanly on SIGTERM within a second (after a [bgp] withdraw grace).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/switchyard"]
CMD ["run"]

FROM runtime AS prebuilt
COPY conf /etc/switchyard
COPY switchyard /usr/local/bin/switchyard

FROM ${RUST_IMAGE} AS build
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libdpdk-dev libclang-dev clang pkg-config libpcap-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip --strip-debug target/release/switchyard

FROM runtime
COPY conf /etc/switchyard
COPY --from=build /src/target/release/switchyard /usr/local/bin/switchyard
