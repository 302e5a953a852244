#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/corpus/<target>/ (committed; rerun after changing the
frames target's input format or the files they come from). Python 3, no other packages.

frames: the golden input pcaps (tests/data/*_in.pcap) as raw frames, and short stories in
        each mode (a conn opened, answered, carried, closed, expired; ICMP errors; ARP; the
        servers' own traffic; GSLB DNS) in the op format of fuzz_targets/frames.rs.
config: the repository's configurations (conf/*.toml, tests/data/base.toml, with [gslb]).
api:    typical request lines ("METHOD URL").
"""

import hashlib
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CORPUS = os.path.join(HERE, "corpus")

SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08

# frames.rs: cfg_bit and KINDS.
PLAIN, EXCEPTION, GSLB, HA_OWNED, HA_BACKUP, HA_GSLB = 0, 1, 2, 3, 4, 5
VLAN, TWO_WORKERS, SMALL = 8, 16, 32
# frames.rs: TARGETS.
WEB_PROXY, DNS_DSR, GW_TCP, GW_UDP = 0, 1, 2, 3
NO_SERVICE, LOCAL_SSH, GSLB_DNS = 6, 8, 10


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def header(bits, now=0):
    return bytes([bits]) + struct.pack("<I", now)


def meta(worker=0, vlan_toggle=False, hint=0):
    return bytes([hint | (32 if vlan_toggle else 0) | (worker << 6)])


def client(target, c=0, sport=0, flags=SYN, payload=b"", m=None):
    return bytes([1 | target << 3, c, sport, flags, len(payload)]) + payload + (m or meta())


def reply(k, flags=SYN | ACK, m=None):
    return bytes([2 | k << 3, flags]) + (m or meta())


def icmp_error(k, kind=0, quote=0, m=None):
    return bytes([3 | k << 3, kind, quote]) + (m or meta())


def advance(t, sweep=8):
    return bytes([4 | sweep << 3, t])


def control(c):
    return bytes([5, c])


def server(p, sport, dport, flags=SYN, m=None):
    return bytes([6 | p << 3]) + struct.pack("<HHB", sport, dport, flags) + (m or meta())


def arp(p, a, m=None):
    return bytes([7 | p << 3, a]) + (m or meta())


def raw(frame, m=None):
    return bytes([0]) + struct.pack("<H", len(frame)) + frame + (m or meta())


def conn_story(target, c=0, sport=0):
    """A TCP conn (or UDP exchange) opened, answered, carried, closed and expired."""
    return (
        client(target, c, sport, SYN)
        + reply(0, SYN | ACK)
        + client(target, c, sport, ACK)
        + client(target, c, sport, ACK | PSH, b"GET / HTTP/1.0\r\n\r\n")
        + reply(0, ACK)
        + advance(50)
        + client(target, c, sport, FIN | ACK)
        + reply(0, FIN | ACK)
        + advance(0xC0 + 20, 15)
        + client(target, c, sport, SYN)
    )


def dns_query(name, qtype=1):
    q = struct.pack(">HHHHHH", 0x5A5A, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        q += bytes([len(label)]) + label.encode()
    return q + b"\x00" + struct.pack(">HH", qtype, 1)


def pcap_frames(path):
    data = open(path, "rb").read()
    off, out = 24, []
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack("<IIII", data[off : off + 16])
        off += 16
        out.append(data[off : off + incl])
        off += incl
    return out


def frames():
    for mode in ("proxy", "dsr", "gateway"):
        fs = pcap_frames(os.path.join(ROOT, "tests", "data", f"{mode}_in.pcap"))
        write("frames", f"golden-{mode}", header(PLAIN) + b"".join(raw(f) for f in fs))
        write("frames", f"golden-{mode}-exception", header(EXCEPTION) + b"".join(raw(f) for f in fs))
    names = {WEB_PROXY: "proxy", DNS_DSR: "dsr", GW_TCP: "gateway", GW_UDP: "gateway-udp"}
    for target, name in names.items():
        write("frames", f"story-{name}", header(PLAIN) + conn_story(target))
        write("frames", f"story-{name}-vlan", header(VLAN | EXCEPTION) + conn_story(target, 1, 7))
        write(
            "frames",
            f"story-{name}-2workers",
            header(TWO_WORKERS | EXCEPTION)
            + conn_story(target, 2, 1)
            + client(target, 2, 1, ACK, m=meta(worker=1))
            + reply(0, ACK, m=meta(worker=1)),
        )
        write("frames", f"story-{name}-ha", header(HA_OWNED | TWO_WORKERS) + conn_story(target, 3))
        write(
            "frames",
            f"icmp-{name}",
            header(EXCEPTION)
            + client(target, 0, 5, SYN, b"x" * 40)
            + icmp_error(0, 0, 0)
            + icmp_error(0, 1, 0x80)
            + icmp_error(0, 2, 0x40),
        )
    # The limits: a small table and few NAT ports, backends going down and coming back,
    # neighbours vanishing, time wrapping around.
    many = b"".join(client(WEB_PROXY, c, c * 3, SYN) for c in range(8))
    many += b"".join(client(GW_TCP, c, c * 5, SYN) for c in range(8))
    write("frames", "limits-small", header(SMALL | EXCEPTION) + many + advance(0x80 + 40, 15) + many)
    write(
        "frames",
        "backend-state",
        header(PLAIN, 0xFFFF_FF00)
        + client(WEB_PROXY)
        + client(GW_TCP)
        + control(0x01 | 0x10)  # B1 failing, established conns dropped
        + client(WEB_PROXY, 0, 0, ACK)
        + client(GW_TCP, 0, 0, ACK)
        + control(0x0E)  # B1 draining, B2 forced
        + client(WEB_PROXY, 1, 0, SYN)
        + control(0xA0)  # B1's MAC forgotten
        + client(GW_TCP, 0, 0, ACK)
        + control(0x80)  # management answers the resolve requests
        + client(GW_TCP, 0, 0, ACK)
        + control(0x90)  # reload
        + advance(0xFF),
    )
    upsert = bytes([0, 1, 6, 0, 0, 0]) + struct.pack("<H", 2001)  # a proxied conn, SNAT port 2001
    persist = bytes([2, 24, 0, 0, 1, 3 << 2]) + struct.pack("<H", 0)  # dns: 10.20.9.0/24 -> B1
    write(
        "frames",
        "ha-sync",
        header(HA_OWNED | TWO_WORKERS)
        + conn_story(WEB_PROXY)
        + client(DNS_DSR, 1, 1, 0, b"q")
        + advance(20)
        + control(0xB0)  # bulk resync
        + advance(20)
        + advance(20)
        + control(0xC1) + upsert + persist  # the peer's records
        + client(WEB_PROXY, 0, 0, ACK)
        + advance(0x80 + 11),
    )
    write(
        "frames",
        "ha-backup",
        header(HA_BACKUP) + control(0xC1) + upsert + persist + conn_story(WEB_PROXY) + advance(20),
    )
    write(
        "frames",
        "fragments",
        header(EXCEPTION)
        # The first fragment (more fragments), then a later one (offset 24), of the same id.
        + client(GW_TCP, 0, 9, SYN, b"a" * 16, m=bytes([2 << 2 | 16]) + bytes([20, 0x20, 21, 0]))
        + client(GW_TCP, 0, 9, SYN, b"b" * 16, m=bytes([2 << 2 | 16]) + bytes([20, 0x00, 21, 3]))
        + client(WEB_PROXY, 0, 8, SYN, b"c" * 16, m=bytes([1 << 2 | 16]) + bytes([20, 0x20])),
    )
    write(
        "frames",
        "server-traffic",
        header(EXCEPTION)
        + server(0, 22, 40000)
        + server(1 | 2 << 1, 5353, 53)
        + server(4 << 1, 0, 0)
        + server(2 << 1 | 16, 1, 2)
        + client(GW_TCP)
        + server(0, 80, 40000, SYN | ACK),
    )
    write(
        "frames",
        "arp",
        header(EXCEPTION)
        + arp(0, 5)  # request from the router for our address
        + arp(1, 5 << 3 | 3)  # B1 asks for the router
        + arp(4 | 8 | 1, 3)  # B1's reply
        + arp(4 | 3, 2 << 3 | 5),
    )
    write(
        "frames",
        "gslb",
        header(GSLB)
        + client(GSLB_DNS, 0, 1, 0, dns_query("www.g.example.com"))
        + client(GSLB_DNS, 6, 2, 0, dns_query("geo.g.example.com"))
        + client(GSLB_DNS, 7, 3, 0, dns_query("down.g.example.com", 28))
        + client(GSLB_DNS, 0, 4, 0, dns_query("other.example.org")),
    )
    write(
        "frames",
        "local",
        header(EXCEPTION | VLAN)
        + client(LOCAL_SSH)
        + client(NO_SERVICE)
        + client(DNS_DSR | 16, 0, 0, 0, b"ping")  # echo request to the VIP
        + client(WEB_PROXY, 0, 0, SYN, m=meta(vlan_toggle=True)),
    )


def configs():
    conf = os.path.join(ROOT, "conf")
    for name in sorted(os.listdir(conf)):
        if name.endswith(".toml"):
            write("config", name, open(os.path.join(conf, name), "rb").read())
    data = os.path.join(ROOT, "tests", "data")
    base = open(os.path.join(data, "base.toml"), "rb").read()
    write("config", "base.toml", base)
    write("config", "base-gslb.toml", base + b"\n[gslb]\n" + open(os.path.join(data, "gslb.toml"), "rb").read())


def api():
    lines = [
        "GET /metrics",
        "GET /status",
        "GET /",
        "GET /health",
        "GET /services",
        "GET /backends",
        "GET /flows?limit=10",
        "GET /latency",
        "GET /gslb",
        "GET /node",
        "POST /node/drain",
        "POST /node/enable",
        "POST /latency/reset",
        "POST /reload",
        "POST /backends/drain?service=web&backend=10.20.1.11&timeout_s=30",
        "POST /backends/enable?service=web&backend=10.20.1.11%3A8080",
        "POST /backends/weight?service=web&backend=10.20.1.12&weight=5",
        "DELETE /status",
        "GET /nothing?x",
    ]
    for line in lines:
        write("api", hashlib.sha1(line.encode()).hexdigest()[:16], line.encode())


if __name__ == "__main__":
    frames()
    configs()
    api()
