"""Switchyard's benchmark: every forwarding mode x active flows, beside dpdk-testpmd on the
identical vdev, core and traffic, in the same run.

    perf/run [--quick] [--runs N] [--seconds S] [--out DIR]

Traffic: perf/gen.py writes pcap files of 64-byte frames (N distinct flows, TCP ACKs and UDP;
proxy/gateway also carry each flow's reply direction), which DPDK's net_pcap replays from memory
with infinite_rx=1; transmitted frames go to net_pcap's drop sink. One worker on CPU 1, the
management core on CPU 0 - exactly where testpmd forwards (one forwarding core on CPU 1). The
baseline is testpmd macswap on the identical vdev and the identical pcap (each mode's own),
its runs alternating with Switchyard's; testpmd io on the forward traffic is shown for
context. Rates are medians of --runs runs of --seconds each, read from the counters after a
warm-up. Writes DIR/latest.{json,md} and a dated copy (--quick: DIR/quick.{json,md}). Needs
root (EAL) and a release build (made here).

Against real ports and a hardware generator: see perf/README.md.

This module is perf/run's body; perf/cells, perf/profile and perf/instructions import its
runners and configuration (`import bench`), so every script measures the same way.
"""
import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import testconf  # noqa: E402  (the test configuration, tests/data/base.toml)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("SYBIN") or os.path.join(ROOT, "target", "release", "switchyard")
API = "127.0.0.1:9199"
# Conn-table capacity per worker: None for the shipped default (1,048,576: what an operator
# runs, and what a 1M-flow cell needs), or a multiple of a cell's flows (plus 1024), a table
# sized to the load (`--capacity-factor`, perf/run and perf/cells; results up to
# 2026-12-01 12:00 used 1.1).
CAPACITY_FACTOR = None


def add_capacity_factor(ap):
    """The `--capacity-factor F` option of perf/run and perf/cells (they put it in
    CAPACITY_FACTOR)."""
    ap.add_argument("--capacity-factor", type=float,
                    help="conn-table capacity per worker as a multiple of the flows (+1024) "
                         "instead of the default config's")

# CPS cells: connections per file (each tuple once; the file is read as it plays), the mbufs
# of a run that does not hold its file in memory.
CPS_CONNS = 500_000
CPS_MBUFS = 65535


def cps_frames_per_conn(mode):
    """SYN, (the backend's SYN-ACK in the NAT modes), ACK, RST: see perf/gen.py."""
    return 3 if mode == "dsr" else 4


def mbufs_for(frames):
    # net_pcap's infinite_rx keeps every frame of the file in an mbuf, plus the rings.
    return frames + 70000


def mem_mb(mbufs):
    return max(1024, mbufs * 2400 // (1 << 20) + 512)


def hugepages_free_mb():
    try:
        info = dict(l.split(":", 1) for l in open("/proc/meminfo"))
        return int(info["HugePages_Free"].split()[0]) * int(info["Hugepagesize"].split()[0]) // 1024
    except (OSError, KeyError, ValueError):
        return 0


USE_HUGEPAGES = False


def memory_args(mbufs):
    """Hugepages when the run could reserve enough for its largest cell (fewer TLB misses, as
    in production), else --no-huge: decided once, so testpmd and Switchyard always match."""
    mb = mem_mb(mbufs)
    return ["-m", str(mb)] if USE_HUGEPAGES else ["--no-huge", "-m", str(mb)]


def gen(mode, flows, cache):
    """The cell's pcap (perf/gen.py; MODE may carry its shape: dsr-tcp, proxy-cps), made once
    per run."""
    path = os.path.join(cache, f"{mode}-{flows}.pcap")
    todo = [(mode, path)]
    if mode in ("proxy", "proxy-tcp"):
        todo.append((f"{mode}-open", open_pcap(path)))
    for m, p in todo:
        if not os.path.exists(p):
            subprocess.run([sys.executable, os.path.join(ROOT, "perf", "gen.py"), m, str(flows), p],
                           check=True)
    return path


def open_pcap(pcap):
    """The file that opens the TCP flows of a looped proxy pcap (see perf/gen.py)."""
    return pcap.removesuffix(".pcap") + "-open.pcap"


def api(path, method="GET"):
    req = urllib.request.Request(f"http://{API}{path}", method=method)
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.load(r)


def write_config(mode, flows, pcap, workdir, tag, api_addr, ha=None, once=False):
    """The balancer's configuration for one cell (the test configuration, see
    perf/testconf.py; `ha` as there), written to WORKDIR/perf.toml (its path is returned).
    `once`: the pcap is read from its file as it plays, once through (the CPS cells), not
    looped from memory. perf/instructions uses it too."""
    mbufs = CPS_MBUFS if once else mbufs_for(flows * (1 if mode == "dsr" else 2))
    loop = "" if once else ",infinite_rx=1"
    eal = [*memory_args(mbufs), "--no-pci", "--file-prefix", f"sy-perf-{tag}",
           f"--vdev=net_pcap0,rx_pcap={pcap}{loop}"]
    opener = open_pcap(pcap)
    open_port = mode == "proxy" and not once and os.path.exists(opener)
    if open_port:
        eal.append(f"--vdev=net_pcap1,rx_pcap={opener}")
    # None: the default config's table.
    capacity = None if CAPACITY_FACTOR is None else int(flows * CAPACITY_FACTOR) + 1024
    cfg = testconf.cell_config(mode, eal, mbufs, capacity, api_addr, ha, open_port)
    cfg_path = os.path.join(workdir, "perf.toml")
    with open(cfg_path, "w") as f:
        f.write(testconf.dumps(cfg))
    return cfg_path


def take_floating(mode):
    """What keepalived does for the active node of a pair: the floating addresses (the VIP,
    proxy's SNAT addresses) on the exception path's kernel interface; and a static
    neighbour for the absent peer, so that the sync datagrams leave."""
    iface = testconf.KERNEL_IFACE
    # The VIP last: no conn is made before every SNAT address is owned (the pcap's replies
    # expect the tuples of the whole pool).
    addrs = (testconf.snat_addresses() if mode == "proxy" else []) + \
        [testconf.BASE["services"][0]["vip"]]
    for a in addrs:
        subprocess.run(["ip", "addr", "add", f"{a}/32", "dev", iface], check=True)
    subprocess.run(["ip", "neigh", "replace", testconf.HA_PEER, "lladdr", testconf.HA_PEER_MAC,
                    "dev", iface, "nud", "permanent"], check=True)


@contextlib.contextmanager
def running(cfg_path, workdir):
    """`switchyard run` on `cfg_path` (its log in WORKDIR/switchyard.log) for the block,
    stopped with SIGINT when the block ends (killed if it has not exited 10 s later)."""
    p = subprocess.Popen([BIN, "run", "--config", cfg_path], stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(workdir, "switchyard.log"), "w"))
    try:
        yield p
    finally:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def wait_until(p, workdir, deadline, ready, failure="did not reach steady state"):
    """Polls the running balancer `p` until `ready(counters)` (its steady state) or the
    deadline; raises if it exits first."""
    while True:
        if p.poll() is not None:
            raise RuntimeError(f"switchyard exited: see {workdir}/switchyard.log")
        try:
            if ready(api("/status")["counters"]):
                return
        except OSError:
            pass
        if time.time() > deadline:
            raise RuntimeError(f"switchyard {failure}")
        time.sleep(0.2)


def run_switchyard(mode, flows, pcap, seconds, workdir, during=None, ha=None):
    """One Switchyard run on a cell, measured over `seconds` after the warm-up; `during`
    (if given) is called instead of sleeping through the measured window (perf/profile
    records there). `ha`: see testconf.cell_config; with "on" the node owns the floating
    addresses (`take_floating`) and streams its conns to the absent peer."""
    frames = flows * (1 if mode == "dsr" else 2)
    cfg_path = write_config(mode, flows, pcap, workdir, f"{mode}{flows}", API, ha)
    with running(cfg_path, workdir) as p:
        # Wait for the API, then for one full pass over the file (all flows created).
        deadline = time.time() + 120
        owned = ha != "on"
        def ready(c):
            nonlocal owned
            if not owned:
                take_floating(mode)
                owned = True
            return c["rx_packets"] > 2 * frames and c["flows_active"] >= flows * 0.99

        wait_until(p, workdir, deadline, ready)
        # The latency histograms restart here, so p50/p99 describe the measured window, not
        # the warm-up's conn creation (a worker hands its histogram over every 100 ms: what
        # it recorded in the 100 ms before the reset may still count, so the reset waits
        # for the warm-up's last new conns to be older than that).
        time.sleep(0.2)
        api("/latency/reset", "POST")
        sa = api("/status")
        a = sa["counters"]
        t0 = time.time()
        (during or time.sleep)(seconds)
        sb = api("/status")
        b = sb["counters"]
        t1 = time.time()
        lat = api("/latency")["workers"][0]
        rx = b["rx_packets"] - a["rx_packets"]
        drops = {k: b[k] - a[k] for k in b if k.startswith("drop_") and b[k] - a[k]}
        # The worker's own split of its busy rounds, per packet: the driver's rx burst (the
        # vdev copying stored frames into mbufs), Switchyard's work, the rest (tx bursts).
        busy = {ph: (b[f"busy_{ph}_ns"] - a[f"busy_{ph}_ns"]) / max(rx, 1)
                for ph in ("rx", "work", "tx")}
        return {
            "busy_ns": busy,
            "mpps": rx / (t1 - t0) / 1e6,
            "forwarded_share": (b["forwarded"] - a["forwarded"]) / max(rx, 1),
            "drops": drops,
            "p50_us": lat["p50_ns"] / 1000,
            "p99_us": lat["p99_ns"] / 1000,
            "flows_active": b["flows_active"],
            # Measured, not assumed: the table's memory over its capacity (one worker; None
            # from a build without these gauges, for A/B runs against older builds).
            "bytes_per_flow": (b["flow_table_bytes"] // max(b["flow_capacity"], 1)
                               if "flow_table_bytes" in b else None),
            "flow_capacity": b.get("flow_capacity"),
            # With [ha]: the sync over the measured window (records per second the workers
            # produced, the share dropped for want of a free batch) and the node's role.
            "ha": None if not sb.get("ha") else {
                "role": sb["ha"]["role"],
                "records_per_s": (sb["ha"]["records_sent"] - sa["ha"]["records_sent"])
                / (t1 - t0),
                "records_dropped": sb["ha"]["records_dropped"] - sa["ha"]["records_dropped"],
                "send_errors": sb["ha"].get("send_errors"),
            },
        }


def _window_rate(samples, total):
    """Rate per second of a counter that rose to `total` while a file played once, over the
    middle of the play (from 20 % to 80 % of `total`), from (time, value) samples; None
    when the samples do not cover that much of it."""
    lo = next(((t, v) for t, v in samples if v >= 0.2 * total), None)
    hi = next(((t, v) for t, v in samples if v >= 0.8 * total), None)
    if not lo or not hi or hi[0] <= lo[0]:
        return None
    return (hi[1] - lo[1]) / (hi[0] - lo[0])


def run_switchyard_cps(mode, pcap, workdir):
    """One Switchyard run on a CPS cell: the file (CPS_CONNS connections, each tuple once)
    played once through from its file. Returns the connections per second of the worker's
    busy time (its busy_*_ns counters: rounds with packets, so the rate it holds while it
    has work) and of the wall clock over the middle of the play, the frames per second, the
    per-packet split and the table's state at the end."""
    frames = CPS_CONNS * cps_frames_per_conn(mode)
    cfg_path = write_config(mode, CPS_CONNS, pcap, workdir, f"cps{mode}", API, once=True)
    with running(cfg_path, workdir) as p:
        samples, last, still = [], None, 0
        deadline = time.time() + 120
        while time.time() < deadline:
            if p.poll() is not None:
                raise RuntimeError(f"switchyard exited: see {workdir}/switchyard.log")
            try:
                c = api("/status")["counters"]
            except OSError:
                time.sleep(0.005)
                continue
            samples.append((time.time(), c["flows_created"], c["rx_packets"]))
            # Done when the file has played (the counters stand still for 0.3 s).
            still = still + 1 if last and last["rx_packets"] == c["rx_packets"] else 0
            last = c
            if c["rx_packets"] >= frames and still >= 30:
                break
            time.sleep(0.01)
        else:
            raise RuntimeError("switchyard did not play the file through")
        busy_ns = sum(last[f"busy_{ph}_ns"] for ph in ("rx", "work", "tx"))
        rx = last["rx_packets"]
        created = last["flows_created"]
        wall = _window_rate([(t, n) for t, n, _ in samples], created)
        drops = {k: v for k, v in last.items() if k.startswith("drop_") and v}
        return {
            "conns_per_s": created / busy_ns * 1e9,
            "conns_per_s_wall": wall,
            "mpps": rx / busy_ns * 1e3,
            "ns_per_conn": busy_ns / max(created, 1),
            "busy_ns": {ph: last[f"busy_{ph}_ns"] / max(rx, 1) for ph in ("rx", "work", "tx")},
            "conns_created": created,
            "rx_packets": rx,
            "forwarded_share": last["forwarded"] / max(rx, 1),
            "flows_active": last["flows_active"],
            "flows_half_open": last.get("flows_half_open"),
            "flow_capacity": last.get("flow_capacity"),
            "syn_cookies_sent": last.get("syn_cookies_sent"),
            "drops": drops,
        }


def run_two_workers(how, flows, cache, seconds, workdir):
    """Two workers on the gateway file spread over two rx queues (perf/gen.py gateway-rss2 /
    gateway-own2): worker 0 on CPU 1, worker 1 on CPU 0 beside the management thread
    (allow_shared). Measured as run_switchyard; adds the frames handed between the workers
    per second and the busy time per packet summed over both."""
    base = os.path.join(cache, f"gateway-{how}2-{flows}.pcap")
    queues = [base.removesuffix(".pcap") + f".q{q}.pcap" for q in (0, 1)]
    if not os.path.exists(queues[0]):
        subprocess.run([sys.executable, os.path.join(ROOT, "perf", "gen.py"), f"gateway-{how}2",
                        str(flows), base], check=True)
    mbufs = mbufs_for(2 * flows)
    eal = [*memory_args(mbufs), "--no-pci", "--file-prefix", f"sy-perf-w2{how}",
           "--vdev=net_pcap0," + ",".join(f"rx_pcap={q}" for q in queues) + ",infinite_rx=1"]
    cfg = testconf.cell_config("gateway", eal, mbufs, None, API)
    # Both always have frames (the file loops), so the idle sleep that shared cores need
    # never comes.
    cfg["cores"].update({"management": 0, "workers": [1, 0], "allow_shared": True,
                         "idle_sleep_us": 50})
    cfg_path = os.path.join(workdir, "perf.toml")
    with open(cfg_path, "w") as f:
        f.write(testconf.dumps(cfg))
    with running(cfg_path, workdir) as p:
        wait_until(p, workdir, time.time() + 120, lambda c: c["rx_packets"] > 4 * flows
                   and c["flows_active"] >= flows * 0.99)
        a = api("/status")["counters"]
        t0 = time.time()
        time.sleep(seconds)
        b = api("/status")["counters"]
        t1 = time.time()
        d = {k: b[k] - a[k] for k in ("rx_packets", "forwarded", "steered_out", "steered_in",
                                     "busy_rx_ns", "busy_work_ns", "busy_tx_ns")}
        rx = max(d["rx_packets"], 1)
        full = b.get("drop_steer_full", 0) - a.get("drop_steer_full", 0)
        return {
            "mpps": d["rx_packets"] / (t1 - t0) / 1e6,
            "forwarded_mpps": d["forwarded"] / (t1 - t0) / 1e6,
            "steered_per_s": d["steered_out"] / (t1 - t0),
            "steer_full_per_s": full / (t1 - t0),
            "steered_share": d["steered_out"] / rx,
            "forwarded_share": d["forwarded"] / rx,
            "busy_ns": {ph: d[f"busy_{ph}_ns"] / rx for ph in ("rx", "work", "tx")},
            "drops": {k: b[k] - a[k] for k in b if k.startswith("drop_") and b[k] - a[k]},
        }


def two_worker_cells(runs, seconds, cache, work, flows=65536):
    """Gateway at `flows` flows on two workers, frames spread as RSS would (half of them
    handed to the other worker) against each frame on its owner's queue (none), alternating;
    the cost of a handed-over frame from the difference in busy time per packet."""
    res = {"rss": [], "own": []}
    for _ in range(runs):
        for how in ("own", "rss"):
            res[how].append(run_two_workers(how, flows, cache, seconds, work))
    out = {"flows": flows}
    for how, rs in res.items():
        med = sorted(rs, key=lambda r: r["mpps"])[len(rs) // 2]
        busy = sum(med["busy_ns"].values())
        out[how] = {"mpps": round(med["mpps"], 3), "mpps_runs": [round(r["mpps"], 3) for r in rs],
                    "forwarded_mpps": round(med["forwarded_mpps"], 3),
                    "steered_per_s": round(med["steered_per_s"]),
                    "steer_full_per_s": round(med["steer_full_per_s"]),
                    "steered_share": round(med["steered_share"], 3),
                    "forwarded_share": round(med["forwarded_share"], 4),
                    "busy_ns_per_packet": round(busy, 1), "drops": med["drops"]}
    # What a handed-over frame costs, from the difference in busy time per packet: only
    # when the rings kept up (a frame dropped at a full ring costs its sender, not a
    # hand-over).
    rss = out["rss"]
    extra = rss["busy_ns_per_packet"] - out["own"]["busy_ns_per_packet"]
    kept_up = rss["steer_full_per_s"] <= 0.01 * max(rss["steered_per_s"], 1)
    out["ns_per_steered"] = round(extra / max(rss["steered_share"], 1e-9), 1) if kept_up else None
    print(f"two workers, gateway {flows} flows: RSS spread {rss['mpps']} Mpps in, "
          f"{rss['forwarded_mpps']} out ({rss['steered_per_s'] / 1e6:.2f} M handed over/s, "
          f"{rss['steer_full_per_s'] / 1e6:.2f} M/s dropped at a full ring), owner's queue "
          f"{out['own']['mpps']} Mpps; ns per handed-over frame: {out['ns_per_steered']}",
          flush=True)
    return out


def run_testpmd_once(fwd, pcap, frames):
    """testpmd's rate in forwarding mode `fwd` on a pcap played once through from its file
    (the CPS cells' baseline): Mpps over the middle of the play, from its port counters read
    every 10 ms."""
    args = ["dpdk-testpmd", "-l", "0,1", *memory_args(CPS_MBUFS), "--no-pci",
            "--file-prefix", "sy-perf-testpmd", f"--vdev=net_pcap0,rx_pcap={pcap}",
            "--", "-i", "--port-topology=loop", "--nb-cores=1",
            f"--total-num-mbufs={CPS_MBUFS}"]
    p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    # A reader thread, so that each stats line comes with the time it was printed.
    lines = []
    threading.Thread(target=lambda: [lines.append((time.time(), l)) for l in p.stdout],
                     daemon=True).start()

    def cmd(c):
        p.stdin.write(c + "\n")
        p.stdin.flush()

    cmd(f"set fwd {fwd}")
    time.sleep(1.0)
    cmd("start")
    t_end = time.time() + 60
    while time.time() < t_end:
        cmd("show port stats 0")
        time.sleep(0.01)
        got = [int(m.group(1)) for _, l in list(lines)
               for m in [re.search(r"RX-packets:\s+(\d+)", l)] if m]
        if len(got) > 30 and got[-1] >= frames and got[-1] == got[-30]:
            break
    cmd("stop")
    cmd("quit")
    p.wait(60)
    out = [(t, int(m.group(1))) for t, l in lines
           for m in [re.search(r"RX-packets:\s+(\d+)", l)] if m]
    if not out:
        raise RuntimeError("testpmd printed no stats")
    rate = _window_rate(out, out[-1][1])
    if rate is None:
        raise RuntimeError("testpmd: the play was too short to time")
    return rate / 1e6


def run_testpmd(fwd, pcap, frames, seconds, during=None):
    """testpmd's rate on a pcap in forwarding mode `fwd` over `seconds` after a warm-up;
    `during` as for run_switchyard."""
    mbufs = mbufs_for(frames)
    args = ["dpdk-testpmd", "-l", "0,1", *memory_args(mbufs), "--no-pci",
            "--file-prefix", "sy-perf-testpmd", f"--vdev=net_pcap0,rx_pcap={pcap},infinite_rx=1",
            "--", "-i", "--port-topology=loop", "--nb-cores=1", f"--total-num-mbufs={mbufs}"]
    p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)

    def cmd(c):
        p.stdin.write(c + "\n")
        p.stdin.flush()

    cmd(f"set fwd {fwd}")
    cmd("start")
    time.sleep(2 + frames / 1e6)  # warm-up (and loading a large pcap)
    cmd("show port stats all")
    time.sleep(0.3)
    t0 = time.time()
    (during or time.sleep)(seconds)
    cmd("show port stats all")
    time.sleep(0.3)
    t1 = time.time()
    cmd("stop")
    cmd("quit")
    out, _ = p.communicate(timeout=60)
    rx = [int(x) for x in re.findall(r"RX-packets:\s+(\d+)", out)]
    if len(rx) < 2:
        raise RuntimeError("testpmd printed no stats:\n" + out[-2000:])
    # testpmd's own rate between the two "show port stats" (its TSC, not our clock): right
    # even when a slow start (loading a large pcap) made it read our commands late.
    pps = [int(x) for x in re.findall(r"Rx-pps:\s+(\d+)", out)]
    if len(pps) >= 2 and pps[1] > 0:
        return pps[1] / 1e6
    return (rx[1] - rx[0]) / (t1 - t0) / 1e6


SHAPES = {"mixed": "half TCP, half UDP", "tcp": "TCP only"}


def cps_cells(runs, cache, work):
    """The connections-per-second cells: each mode's CPS file (perf/gen.py MODE-cps), testpmd
    macswap on it alternating with Switchyard, `runs` times; rows for the result file."""
    rows = []
    for mode in ("dsr", "proxy", "gateway"):
        pcap = gen(f"{mode}-cps", CPS_CONNS, cache)
        frames = CPS_CONNS * cps_frames_per_conn(mode)
        res, swap = [], []
        for _ in range(runs):
            swap.append(run_testpmd_once("macswap", pcap, frames))
            res.append(run_switchyard_cps(mode, pcap, work))
        med = sorted(res, key=lambda r: r["conns_per_s"])[len(res) // 2]
        macswap = statistics.median(swap)
        wall = [r["conns_per_s_wall"] for r in res if r["conns_per_s_wall"]]
        wall_pps = statistics.median(wall) * cps_frames_per_conn(mode) / 1e6 if wall else None
        row = {
            "mode": mode, "conns": CPS_CONNS,
            "conns_per_s": round(med["conns_per_s"]),
            "conns_per_s_runs": [round(r["conns_per_s"]) for r in res],
            "conns_per_s_wall": round(statistics.median(wall)) if wall else None,
            "mpps": round(med["mpps"], 3),
            "testpmd_macswap_mpps": round(macswap, 3),
            "testpmd_macswap_runs": [round(x, 3) for x in swap],
            "ratio_macswap": round(wall_pps / macswap, 3) if wall_pps else None,
            "ns_per_conn": round(med["ns_per_conn"], 1),
            "busy_ns_per_packet": {k: round(v, 1) for k, v in med["busy_ns"].items()},
            "conns_created": med["conns_created"],
            "forwarded_share": round(med["forwarded_share"], 4),
            "flows_active": med["flows_active"], "flows_half_open": med["flows_half_open"],
            "flow_capacity": med["flow_capacity"], "drops": med["drops"],
        }
        rows.append(row)
        print(f"switchyard {mode:8} CPS: {row['conns_per_s']:,} conns/s busy, "
              f"{row['conns_per_s_wall']} wall (x{row['ratio_macswap']} testpmd macswap "
              f"{macswap:.2f} Mpps), {row['ns_per_conn']} ns/conn", flush=True)
    return rows


def reserve_hugepages(need_mb):
    """Hugepages for the packet memory of both contenders (hugepages/reserve.sh; best effort):
    enough more 2 MiB pages that `need_mb` are free. Sets and returns USE_HUGEPAGES."""
    global USE_HUGEPAGES
    free = hugepages_free_mb()
    if free < need_mb:
        try:
            total = int(open("/proc/sys/vm/nr_hugepages").read())
        except OSError:
            total = 0
        subprocess.run(["bash", os.path.join(ROOT, "hugepages", "reserve.sh"),
                        str(total + (need_mb - free) // 2 + 1)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    USE_HUGEPAGES = hugepages_free_mb() >= need_mb
    return USE_HUGEPAGES


def alternate(mode, flows, pcap, runs, seconds, workdir, each=None):
    """testpmd macswap on the cell's own pcap (proxy/gateway files hold both directions,
    twice the frames) alternating with Switchyard, `runs` times, so that both see the same
    moments of this shared machine; `each(testpmd_mpps, switchyard_result)` after every
    pair. Returns (Switchyard results, testpmd Mpps), in run order."""
    frames = flows * (1 if mode == "dsr" else 2)
    res, swap = [], []
    for _ in range(runs):
        swap.append(run_testpmd("macswap", pcap, frames, seconds))
        res.append(run_switchyard(mode, flows, pcap, seconds, workdir))
        if each:
            each(swap[-1], res[-1])
    return res, swap


def cell_stats(res, swap):
    """(the median Switchyard run, the median testpmd Mpps, the paired ratio). The paired
    ratio is the median of each Switchyard run's ratio to the testpmd run just before it:
    the two saw nearly the same moment of this shared machine, whose load drifts over tens
    of seconds (the ratio of the two medians can pair a quiet run with a loaded one)."""
    med = sorted(res, key=lambda r: r["mpps"])[len(res) // 2]
    paired = statistics.median(r["mpps"] / t for r, t in zip(res, swap))
    return med, statistics.median(swap), paired


def machine():
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    dpdk = subprocess.run(["pkg-config", "--modversion", "libdpdk"], capture_output=True,
                          text=True).stdout.strip()
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1),
        "kernel": platform.release(), "dpdk": dpdk, "rustc": rustc,
        "note": "shared cloud VM; net_pcap infinite_rx from memory, tx to net_pcap's drop sink",
        "hugepages": USE_HUGEPAGES,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="64k flows only, one short run each")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--out", default=os.path.join(ROOT, "perf", "results"))
    add_capacity_factor(ap)
    a = ap.parse_args()
    global CAPACITY_FACTOR
    CAPACITY_FACTOR = a.capacity_factor
    runs = a.runs or (1 if a.quick else 3)
    seconds = a.seconds or (2.0 if a.quick else 4.0)
    flow_counts = [65536] if a.quick else [1000, 65536, 1000000]
    if os.geteuid() != 0:
        sys.exit("perf/run: needs root (DPDK EAL)")
    for tool in ("dpdk-testpmd", "cargo"):
        if not shutil.which(tool):
            sys.exit(f"perf/run: {tool} missing; run scripts/install-deps.sh")
    subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT, check=True)
    try:
        hugepages_before = int(open("/proc/sys/vm/nr_hugepages").read())
    except OSError:
        hugepages_before = None
    need = mem_mb(mbufs_for(2 * max(flow_counts))) + 512
    reserve_hugepages(need)
    print(f"hugepages: {'yes' if USE_HUGEPAGES else 'no (--no-huge)'} "
          f"({hugepages_free_mb()} MiB free, {need} MiB needed)", flush=True)
    os.makedirs(a.out, exist_ok=True)
    cache = tempfile.mkdtemp(prefix="sy-perf-")
    work = tempfile.mkdtemp(prefix="sy-perf-run-")
    started = time.time()
    rows = []
    baselines = {}
    try:
        for flows in flow_counts:
            base = {}
            # testpmd io: what the vdev alone delivers (on the forward-only traffic).
            io_pcap = gen("dsr", flows, cache)
            base["io"] = statistics.median(run_testpmd("io", io_pcap, flows, seconds)
                                           for _ in range(runs))
            print(f"testpmd io       {flows:>8} flows: {base['io']:.2f} Mpps", flush=True)
            shapes = ["mixed", "tcp"] if flows == 65536 else ["mixed"]
            for shape, mode in ((sh, m) for sh in shapes for m in ("dsr", "proxy", "gateway")):
                pcap = gen(mode if shape == "mixed" else f"{mode}-{shape}", flows, cache)
                res, swap = alternate(mode, flows, pcap, runs, seconds, work)
                med, macswap, paired = cell_stats(res, swap)
                base[f"macswap_{mode}" + ("" if shape == "mixed" else f"_{shape}")] = \
                    round(macswap, 3)
                print(f"testpmd macswap  {flows:>8} flows ({mode} {shape} pcap): "
                      f"{macswap:.2f} Mpps", flush=True)
                row = {
                    "mode": mode, "flows": flows, "shape": shape,
                    "mpps": round(med["mpps"], 3),
                    "mpps_runs": [round(r["mpps"], 3) for r in res],
                    "testpmd_macswap_mpps": round(macswap, 3),
                    "testpmd_macswap_runs": [round(x, 3) for x in swap],
                    "ratio_macswap": round(med["mpps"] / macswap, 3),
                    "ratio_macswap_paired": round(paired, 3),
                    "ns_per_packet": round(1000 / med["mpps"], 1),
                    "busy_ns_per_packet": {k: round(v, 1) for k, v in med["busy_ns"].items()},
                    "p50_us": round(med["p50_us"], 1), "p99_us": round(med["p99_us"], 1),
                    "bytes_per_flow": med["bytes_per_flow"],
                    "flow_capacity": med["flow_capacity"],
                    "forwarded_share": round(med["forwarded_share"], 4),
                    "drops": med["drops"],
                }
                rows.append(row)
                bz = row["busy_ns_per_packet"]
                print(f"switchyard {mode:8} {flows:>8} flows {shape}: {row['mpps']:.2f} Mpps "
                      f"(x{row['ratio_macswap']:.3f} macswap, paired "
                      f"x{row['ratio_macswap_paired']:.3f}) p99 {row['p99_us']} us, "
                      f"ns/pkt rx {bz['rx']} work {bz['work']} tx {bz['tx']}", flush=True)
            baselines[flows] = base
        cps_rows = cps_cells(runs, cache, work)
        two = two_worker_cells(runs, seconds, cache, work)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        # Hugepage files of our EAL instances (a killed run can leave them behind).
        for d in ("/dev/hugepages", "/dev/hugepages-1G"):
            for f in (os.listdir(d) if os.path.isdir(d) else []):
                if f.startswith("sy-perf-"):
                    try:
                        os.unlink(os.path.join(d, f))
                    except OSError:
                        pass
        if hugepages_before is not None:
            # Give back what this run reserved.
            try:
                with open("/proc/sys/vm/nr_hugepages", "w") as f:
                    f.write(str(hugepages_before))
            except OSError:
                pass
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc = {"date": when, "quick": a.quick, "runs": runs, "seconds": seconds,
           "capacity_factor": CAPACITY_FACTOR,
           "machine": machine(), "testpmd": baselines, "results": rows, "cps": cps_rows,
           "two_workers": two,
           "elapsed_s": round(time.time() - started)}
    if CAPACITY_FACTOR is not None:
        table = f"sized to the flows (x{CAPACITY_FACTOR:g} + 1024)"
    elif rows and rows[0].get("flow_capacity"):
        table = f"of the default config ({rows[0]['flow_capacity']:,} conns per worker)"
    else:
        table = "of the default config"
    md = [f"Measured {when} by `perf/run{' --quick' if a.quick else ''}` "
          f"(median of {runs} run(s) x {seconds:g} s) on {doc['machine']['cpu']}, "
          f"{doc['machine']['cores']} cores, DPDK {doc['machine']['dpdk']}; one worker core; "
          f"{'hugepages' if USE_HUGEPAGES else '--no-huge'}; conn table {table}.", "",
          "| mode | flows | traffic | Mpps | testpmd macswap Mpps | x macswap | paired | ns/pkt | rx / work / tx ns | p50 us | p99 us | bytes/flow |",
          "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {r['mode']} | {r['flows']:,} | {SHAPES[r['shape']]} | {r['mpps']:.2f} | "
                  f"{r['testpmd_macswap_mpps']:.2f} | {r['ratio_macswap']:.3f} | "
                  f"{r['ratio_macswap_paired']:.3f} | "
                  f"{r['ns_per_packet']} | {r['busy_ns_per_packet']['rx']:.0f} / "
                  f"{r['busy_ns_per_packet']['work']:.0f} / {r['busy_ns_per_packet']['tx']:.0f} | "
                  f"{r['p50_us']} | {r['p99_us']} | {r['bytes_per_flow']} |")
    md += ["", "testpmd macswap ran on each mode's own pcap (proxy and gateway files hold both "
           "directions), alternating with Switchyard's runs; testpmd io on the forward traffic: "
           + ", ".join(f"{f:,} flows {b['io']:.2f} Mpps" for f, b in baselines.items()) + ". "
           "rx / work / tx: the worker's own split of its time per packet (its busy_*_ns "
           "counters): in the driver's rx burst (the vdev copying each stored frame into an "
           "mbuf), deciding and rewriting, and the rest of the round (tx bursts). x macswap: "
           "median Mpps over median testpmd Mpps; paired: median of each run's ratio to the "
           "testpmd run just before it. Traffic: " + "; ".join(
               f"{k}: {v}" for k, v in SHAPES.items()) + "."]
    md += ["", f"Connections per second: {CPS_CONNS:,} connections, each tuple once (SYN, the "
           "backend's SYN-ACK in the NAT modes, ACK, RST), the file played once from disk "
           "(not looped from memory); testpmd macswap on the same file alternating with "
           "Switchyard's runs.", "",
           "| mode | conns/s (busy) | conns/s (wall) | Mpps (busy) | testpmd macswap Mpps | x macswap | ns/conn | rx / work / tx ns per packet | conns in the table after |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in cps_rows:
        bz = r["busy_ns_per_packet"]
        md.append(f"| {r['mode']} | {r['conns_per_s']:,.0f} | {r['conns_per_s_wall']:,.0f} | "
                  f"{r['mpps']:.2f} | {r['testpmd_macswap_mpps']:.2f} | "
                  f"{r['ratio_macswap']:.3f} | {r['ns_per_conn']:.0f} | "
                  f"{bz['rx']:.0f} / {bz['work']:.0f} / {bz['tx']:.0f} | "
                  f"{r['flows_active']:,} |")
    md += ["", "conns/s (busy): conns made over the worker's busy time (rounds that had "
           "packets: the rate it holds while it has work); (wall): over the middle 60 % of the "
           "play by the clock; x macswap: the wall-clock packet rate over testpmd's on the "
           "same file (both read it from disk as it plays: ~100 ns a frame of the vdev's own)."]
    md += ["", f"Two workers (gateway, {two['flows']:,} flows, the file over two rx queues; "
           "worker 0 on CPU 1, worker 1 on CPU 0 beside the management thread):", "",
           "| frames on | Mpps in | Mpps forwarded | handed over /s | dropped at a full ring /s | busy ns per packet (both workers) |",
           "|---|---:|---:|---:|---:|---:|"]
    for how, label in (("own", "their conn owner's queue"), ("rss", "a queue by their own hash (RSS)")):
        r = two[how]
        md.append(f"| {label} | {r['mpps']:.2f} | {r['forwarded_mpps']:.2f} | "
                  f"{r['steered_per_s']:,} | {r['steer_full_per_s']:,} | "
                  f"{r['busy_ns_per_packet']} |")
    md += ["", "A frame handed to the other worker costs "
           + (f"~{two['ns_per_steered']} ns of busy time (from the difference in busy time "
              "per packet)." if two["ns_per_steered"] is not None else
              "more than the rings could carry here: worker 1 shares its CPU with the "
              "management thread and this script, so worker 0 fills its ring (the frames "
              "dropped at a full ring, counted as drop_steer_full).")]
    text = "\n".join(md) + "\n"
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    # A quick run never replaces the full run's table that the README quotes.
    names = ("quick",) if a.quick else ("latest", stamp)
    for name in names:
        with open(os.path.join(a.out, f"{name}.json"), "w") as f:
            json.dump(doc, f, indent=2)
        with open(os.path.join(a.out, f"{name}.md"), "w") as f:
            f.write(text)
    print()
    print(text)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
