# Builds the switchyard binary on Debian 12 with the distribution's DPDK 22.11 and runs it.
# DPDK needs the host's devices and hugepages (or --no-huge) and, for net_af_packet/net_tap,
# the host network:
#   docker build -t switchyard .
#   docker run --rm --privileged --network host -v /dev/hugepages:/dev/hugepages \
#       -v $PWD/conf:/etc/switchyard switchyard run --config /etc/switchyard/switchyard.toml
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
        libdpdk-dev libclang-dev clang pkg-config libpcap-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends dpdk libpcap0.8 \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/switchyard /usr/local/bin/switchyard
COPY conf /etc/switchyard
ENTRYPOINT ["/usr/local/bin/switchyard"]
CMD ["check", "--config", "/etc/switchyard/switchyard.toml"]
