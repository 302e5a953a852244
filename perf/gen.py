#!/usr/bin/env python3
"""Generates benchmark traffic: pcap files of 60-byte frames (64 on the wire) with N distinct
flows, for DPDK's net_pcap to replay with infinite_rx=1.

  gen.py MODE FLOWS OUT.pcap [REPEAT]     MODE: dsr | proxy | gateway | testpmd

REPEAT (default 1) writes the whole set of flows that many times: the same frames per second
reach the vdev from a file REPEAT times larger while the conn table stays FLOWS big, which
separates the cost of the vdev's own memory traffic from that of the conn table (see
perf/README.md, "Where the cycles go").

Flow i comes from client 172.16.0.0 + i/1024 (port 1024 + i%1024) to the VIP 10.20.0.100,
half TCP ACKs (port 80), half UDP (port 53). For proxy and gateway the file also holds each
flow's reply from the backend 10.20.1.11, addressed as Switchyard will have translated the
flow: gateway replies go to the client itself; proxy replies go to the SNAT address and local
port Switchyard assigns, which this script computes with the same hash and port-pool rules
(src/flow/key.rs FlowKey::hash, src/mode/snat.rs SnatPortPool, one worker, addresses
10.20.0.200+k). The addresses and MACs are the test configuration's (perf/testconf.py).
Frames are written straight to pcap (no scapy), so a million flows take seconds.
"""
import os
import struct
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testconf import (BACKEND, BACKEND_MAC, LB_MAC as LB, ROUTER_MAC as ROUTER,  # noqa: E402
                      SNAT_ADDRS, SNAT_BASE, VIP)

M64 = (1 << 64) - 1
PORT_MIN, PORT_MAX = 1024, 65535


def mum(x, y):
    m = x * y
    return (m & M64) ^ (m >> 64)


def flow_hash(src, dst, sport, dport, proto):
    a = (src << 32) | dst
    b = (sport << 32) | (dport << 16) | proto
    rot = ((b << 32) | (b >> 32)) & M64
    h = mum(a ^ 0x9E3779B97F4A7C15, b ^ 0xFF51AFD7ED558CCD) ^ a ^ rot
    return mum(h ^ 0xC4CEB9FE1A85EC53, 0x2545F4914F6CDD1D)


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def frame(smac, dmac, src, dst, proto, sport, dport, ttl=64):
    if proto == 6:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 5 << 4, 0x10, 65535, 0, 0)
    else:
        l4 = struct.pack("!HHHH", sport, dport, 8, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0x4000, ttl, proto, 0,
                     src.to_bytes(4, "big"), dst.to_bytes(4, "big"))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    pseudo = src.to_bytes(4, "big") + dst.to_bytes(4, "big") + struct.pack("!BBH", 0, proto, len(l4))
    c = csum(pseudo + l4)
    if proto == 17 and c == 0:
        c = 0xFFFF
    at = 16 if proto == 6 else 6
    l4 = l4[:at] + struct.pack("!H", c) + l4[at + 2:]
    f = dmac + smac + b"\x08\x00" + ip + l4
    return f + b"\0" * (60 - len(f))


def flows(n):
    for i in range(n):
        src = (172 << 24) | (16 << 16) + (i >> 10)
        sport = PORT_MIN + (i & 1023)
        proto, dport = (6, 80) if i % 2 == 0 else (17, 53)
        yield src, sport, proto, dport


def snat_assignments(n):
    """(address, port) per flow, as Switchyard's single worker assigns them in file order."""
    nxt = [PORT_MIN] * SNAT_ADDRS
    out = []
    for src, sport, proto, dport in flows(n):
        start = (flow_hash(src, VIP, sport, dport, proto) >> 48) % SNAT_ADDRS
        for k in range(SNAT_ADDRS):
            a = (start + k) % SNAT_ADDRS
            if nxt[a] <= PORT_MAX:
                out.append((SNAT_BASE + a, nxt[a]))
                nxt[a] += 1
                break
        else:
            raise SystemExit("more flows than SNAT ports")
    return out


def main():
    mode, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    repeat = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    snat = snat_assignments(n) if mode == "proxy" else None
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        rec = struct.Struct("<IIII")

        def put(b):
            f.write(rec.pack(0, 0, len(b), len(b)))
            f.write(b)

        for i, (src, sport, proto, dport) in enumerate(f for _ in range(repeat) for f in flows(n)):
            i %= n
            if mode == "testpmd":
                put(frame(ROUTER, LB, src, VIP, proto, sport, dport))
                continue
            put(frame(ROUTER, LB, src, VIP, proto, sport, dport, ttl=63))
            if mode == "gateway":
                put(frame(BACKEND_MAC, LB, BACKEND, src, proto, dport, sport))
            elif mode == "proxy":
                addr, port = snat[i]
                put(frame(BACKEND_MAC, LB, BACKEND, addr, proto, dport, port))


if __name__ == "__main__":
    main()
