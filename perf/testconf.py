"""The test configuration (tests/data/base.toml, the one switchyard::testkit uses) as perf/
reads it: the addresses perf/gen.py writes its traffic with, and the balancer's
configuration for a perf cell, built from that file with only the cell's changes."""
import json
import os
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE_PATH = os.path.join(ROOT, "tests", "data", "base.toml")

with open(BASE_PATH, "rb") as _f:
    BASE = tomllib.load(_f)


def _ip(s):
    a, b, c, d = (int(x) for x in s.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def _mac(s):
    return bytes.fromhex(s.replace(":", ""))


def _neighbour_mac(addr):
    return next(_mac(n["mac"]) for n in BASE["neighbours"] if n["address"] == addr)


_BACKEND = BASE["services"][0]["backends"][0]["address"]
_ROUTER = BASE["routes"][0]["via"]
# What the traffic is addressed with: the balancer's MAC, the router's (the clients' frames
# come through it), the VIP, and the one backend every perf flow goes to.
LB_MAC = _mac(BASE["interfaces"][0]["mac"])
ROUTER_MAC = _neighbour_mac(_ROUTER)
VIP = _ip(BASE["services"][0]["vip"])
BACKEND = _ip(_BACKEND)
BACKEND_MAC = _neighbour_mac(_BACKEND)
# Proxy cells' SNAT addresses 10.20.0.200 + k: one address's 64,512 ports do not hold 1M
# flows.
SNAT_BASE = _ip("10.20.0.200")
SNAT_ADDRS = 20


# Proxy cells: a full-NAT conn is made only by its handshake (a mid-flow segment of an
# unknown one is dropped), so the TCP flows of a looped proxy file are opened from a second
# file played once on a second port, interface OPEN_IFACE, which the worker polls first
# (perf/gen.py MODE-open).
OPEN_IFACE = {"name": "open", "port": "net_pcap1", "address": "10.20.3.10/24",
              "mac": "02:00:00:00:00:30", "exception_path": False}
OPEN_MAC = _mac(OPEN_IFACE["mac"])

# An HA cell (perf/sync): the exception path's kernel interface, where the harness puts the
# floating addresses as keepalived would, and a peer that is never there (its sync
# datagrams leave through the port like any other frame).
KERNEL_IFACE = "syperf0"
HA_PEER = "10.20.0.2"
HA_PEER_MAC = "02:00:00:00:00:02"
HA_KEY = "73796e632d706572662d63656c6c2d6b65792d6e6f742d7365637265742d3031"


def snat_addresses():
    return [".".join(str((SNAT_BASE + k) >> s & 255) for s in (24, 16, 8, 0))
            for k in range(SNAT_ADDRS)]


def cell_config(mode, eal_args, mbufs, capacity, api, ha=None, open_port=False):
    """The balancer's configuration for a perf cell: the test configuration with every
    service in `mode` on the one backend, a spinning worker (no idle sleep), the cell's DPDK
    arguments and mbufs, the API on `api`, and `capacity` conns per worker (None: the
    shipped default). `ha`: None for the plain cell; "off" adds the exception path (kernel
    interface KERNEL_IFACE); "on" adds that and an `[ha]` section (sync to HA_PEER, with an
    HMAC key). `open_port`: OPEN_IFACE first (its vdev among `eal_args`)."""
    c = json.loads(json.dumps(BASE))  # a deep copy
    c["dpdk"] = {"eal_args": eal_args, "mbufs": mbufs, "mbuf_cache": 250,
                 "rx_descriptors": 1024, "tx_descriptors": 1024}
    c["cores"].pop("idle_sleep_us", None)
    c["flows"].pop("capacity_per_core", None)
    if capacity is not None:
        c["flows"]["capacity_per_core"] = capacity
    c["api"] = {"listen": api}
    c["log"] = {"level": "warn"}
    # A cell's table is deliberately up to 95 % full of live flows (1M flows in the default
    # table), which the default pressure mark (50 %) treats as a flood: UDP conns idle out
    # after 1 s and the sweep speeds up. A looped file comes back to a flow only once a pass,
    # so its UDP conns would be remade (with other SNAT ports than the file's replies name).
    c["protection"] = {**c.get("protection", {}), "pressure_percent": 100}
    if mode == "proxy":
        c["interfaces"][0]["snat_addresses"] = snat_addresses()
    if ha in ("off", "on"):
        c["interfaces"][0]["exception_path"] = True
        c["interfaces"][0]["exception_iface"] = KERNEL_IFACE
    if ha == "on":
        c["ha"] = {"peer": HA_PEER, "sync_address": c["interfaces"][0]["address"].split("/")[0],
                   "key": HA_KEY}
    if open_port:
        c["interfaces"].insert(0, dict(OPEN_IFACE))
    for s in c["services"]:
        s["mode"] = mode
        s["backends"] = [{"address": _BACKEND}]
    return c


def _value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"no TOML for {v!r}")


def dumps(c):
    """A configuration dict as TOML: tables and arrays of tables at the top, anything deeper
    inline."""
    out = []
    for k, v in c.items():
        if isinstance(v, dict):
            out += ["", f"[{k}]"] + [f"{kk} = {_value(vv)}" for kk, vv in v.items()]
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for x in v:
                out += ["", f"[[{k}]]"] + [f"{kk} = {_value(vv)}" for kk, vv in x.items()]
        else:
            out.insert(0, f"{k} = {_value(v)}")
    return "\n".join(out).lstrip("\n") + "\n"
