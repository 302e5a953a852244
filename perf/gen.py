#!/usr/bin/env python3
"""Generates benchmark traffic: pcap files of 60-byte frames (64 on the wire) with N distinct
flows, for DPDK's net_pcap to replay with infinite_rx=1.

  gen.py MODE FLOWS OUT.pcap [REPEAT]     MODE: dsr | proxy | gateway
  gen.py MODE-tcp FLOWS OUT.pcap [REPEAT] the same, every flow TCP
  gen.py MODE-cps CONNS OUT.pcap          MODE: dsr | proxy | gateway
  gen.py gateway-rss2|gateway-own2 FLOWS OUT.pcap
                                          the gateway file over two rx queues (see below)
  gen.py proxy[-tcp]-open FLOWS OUT.pcap  the handshakes that open the TCP flows of the
                                          proxy file (see below)

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

A full-NAT conn is made only by its handshake (a mid-flow segment of one the balancer does
not know is dropped), so proxy-open writes, for the proxy file's TCP flows in the same order,
the client's SYN, the backend's SYN-ACK and the client's ACK (and each UDP flow's first
datagram), to the second port's MAC
(perf/testconf.py OPEN_IFACE): played once on that port, which the worker polls first each
round, beside the looped file. SNAT ports are then still taken in flow order: each flow's
first frame on the open port comes no later in the round than its first one in the loop.

gateway-rss2 and gateway-own2 write the gateway file as two workers' rx queues would receive
it, into OUT's name with .q0 and .q1 (one pcap per queue of net_pcap): -rss2 puts each frame
on the queue a hash of its own tuple picks, as RSS does, so about half the frames (replies
whose conn the other worker owns, and clients the other worker owns) reach the wrong worker
and are handed over on the SPSC rings; -own2 puts each frame on its conn's owner's queue
(src/mode/snat.rs owner_of: the client's address and port), so none is.

MODE-cps writes connections instead (the connections-per-second cells, played once, not
looped): CONNS TCP connections to VIP:80, each from its own client address and port (as
above), each tuple used once, one connection after the other: the client's SYN, the
backend's SYN-ACK (NAT modes; addressed as Switchyard translates it, proxy to the SNAT port
it will have assigned), the client's ACK and the client's RST. Each is a new conn for the
balancer: created, tracked through its handshake to established, closed.
"""
import contextlib
import os
import struct
import sys

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from testconf import (BACKEND, BACKEND_MAC, LB_MAC as LB, OPEN_MAC,  # noqa: E402
                      ROUTER_MAC as ROUTER, SNAT_ADDRS, SNAT_BASE, VIP)

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


ACK, SYN, RST = 0x10, 0x02, 0x04


def frame(smac, dmac, src, dst, proto, sport, dport, ttl=64, flags=ACK, seq=1, ack=1):
    if proto == 6:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
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


def flows(n, tcp_only=False):
    for i in range(n):
        src = (172 << 24) | (16 << 16) + (i >> 10)
        sport = PORT_MIN + (i & 1023)
        proto, dport = (6, 80) if tcp_only or i % 2 == 0 else (17, 53)
        yield src, sport, proto, dport


def snat_assignments(tuples):
    """(address, port) per flow of `tuples` ((src, sport, proto, dport)), as Switchyard's
    single worker assigns them in file order (no port given back before the last is
    taken: fewer flows than the pool's ports)."""
    nxt = [PORT_MIN] * SNAT_ADDRS
    out = []
    for src, sport, proto, dport in tuples:
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


def fmix64(k):
    """src/types/hash.rs fmix64."""
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & M64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & M64
    return k ^ (k >> 33)


@contextlib.contextmanager
def pcap(path):
    """A pcap file being written: yields `put(frame)`."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        rec = struct.Struct("<IIII")

        def put(b):
            f.write(rec.pack(0, 0, len(b), len(b)))
            f.write(b)

        yield put


def write_queues(how, n, path, queues=2):
    """The gateway file over `queues` rx queues (see the module's doc)."""
    with contextlib.ExitStack() as files:
        puts = [files.enter_context(pcap(path.removesuffix(".pcap") + f".q{q}.pcap"))
                for q in range(queues)]
        for src, sport, proto, dport in flows(n):
            owner = fmix64((src << 16) | sport) % queues
            for b, tup in ((frame(ROUTER, LB, src, VIP, proto, sport, dport, ttl=63),
                            (src, VIP, sport, dport, proto)),
                           (frame(BACKEND_MAC, LB, BACKEND, src, proto, dport, sport),
                            (BACKEND, src, dport, sport, proto))):
                puts[owner if how == "own" else (flow_hash(*tup) >> 7) % queues](b)


def handshake(put, lb_mac, src, sport, back, cseq, bseq):
    """A TCP connection's opening from client `src`:`sport` to VIP:80, to `lb_mac`: the
    client's SYN, the backend's SYN-ACK to `back` (the address and port the balancer sends
    from; None in DSR, where it bypasses us) and the client's ACK; `cseq`/`bseq` the
    client's and the backend's initial sequence numbers."""
    put(frame(ROUTER, lb_mac, src, VIP, 6, sport, 80, ttl=63, flags=SYN, seq=cseq, ack=0))
    if back:
        put(frame(BACKEND_MAC, lb_mac, BACKEND, back[0], 6, 80, back[1], flags=SYN | ACK,
                  seq=bseq, ack=cseq + 1))
    put(frame(ROUTER, lb_mac, src, VIP, 6, sport, 80, ttl=63, flags=ACK, seq=cseq + 1,
              ack=bseq + 1))


def write_cps(mode, n, put):
    tuples = list(flows(n, tcp_only=True))
    snat = snat_assignments(tuples) if mode == "proxy" else None
    cseq, bseq = 1000, 5000
    for i, (src, sport, _, _) in enumerate(tuples):
        back = {"proxy": snat and snat[i], "gateway": (src, sport)}.get(mode)
        handshake(put, LB, src, sport, back, cseq, bseq)
        put(frame(ROUTER, LB, src, VIP, 6, sport, 80, ttl=63, flags=RST | ACK, seq=cseq + 1,
                  ack=bseq + 1))


def write_open(tcp_only, n, put):
    tuples = list(flows(n, tcp_only))
    snat = snat_assignments(tuples)
    for (src, sport, proto, dport), back in zip(tuples, snat):
        if proto != 6:
            # Its first datagram: the open file keeps the loop's pace (two frames a flow).
            put(frame(ROUTER, OPEN_MAC, src, VIP, proto, sport, dport, ttl=63))
            continue
        handshake(put, OPEN_MAC, src, sport, back, 0, 0)


def main():
    mode, n, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    repeat = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    if mode in ("gateway-rss2", "gateway-own2"):
        return write_queues(mode[8:11], n, path)
    with pcap(path) as put:
        if mode.endswith("-cps"):
            write_cps(mode[:-4], n, put)
            return
        if mode.endswith("-open"):
            write_open(mode.removesuffix("-open").endswith("-tcp"), n, put)
            return
        tcp_only = mode.endswith("-tcp")
        mode = mode.removesuffix("-tcp")
        snat = snat_assignments(flows(n, tcp_only)) if mode == "proxy" else None

        for i, (src, sport, proto, dport) in enumerate(f for _ in range(repeat)
                                                       for f in flows(n, tcp_only)):
            i %= n
            put(frame(ROUTER, LB, src, VIP, proto, sport, dport, ttl=63))
            if mode == "gateway":
                put(frame(BACKEND_MAC, LB, BACKEND, src, proto, dport, sport))
            elif mode == "proxy":
                addr, port = snat[i]
                put(frame(BACKEND_MAC, LB, BACKEND, addr, proto, dport, port))


if __name__ == "__main__":
    main()
