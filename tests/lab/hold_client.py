#!/usr/bin/python3
"""Long-lived clients for the HA pair tests: N keep-alive HTTP connections to a VIP, each
sending `GET /` every PERIOD seconds, and UDP DNS queries beside them. Runs in the lab's
client namespace; standard library only (Debian's /usr/bin/python3).

    hold_client.py VIP --conns 200 --period 0.2 --seconds 30 [--dns-every 0.1] --out FILE

Writes FILE (JSON) when done: per connection the backends that answered it (the body
"backend bN"), requests and failures, whether it was reset, the longest gap between two
answers, when it failed (seconds since start); for DNS the queries sent and answered and when
queries went unanswered; and the time (seconds since start) of each
new connection opened with --probe-every (a fresh connection per probe, to time when new
connections work again). SIGUSR1 writes a mark (seconds since start) into the output, so a
test can say when it did something (killed a node).
"""
import argparse
import json
import os
import random
import selectors
import signal
import socket
import struct
import sys
import threading
import time


def request(vip):
    return f"GET / HTTP/1.1\r\nHost: {vip}\r\n\r\n".encode()


class Conn:
    def __init__(self, vip, i):
        self.vip, self.i = vip, i
        self.backends = []
        self.requests = self.answers = self.failures = 0
        self.reset = False
        self.error = None
        self.failed_at = None
        self.last_answer = None
        self.max_gap = 0.0
        self.sock = None

    def open(self, timeout):
        s = socket.create_connection((self.vip, 80), timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = s

    def one(self, t0, timeout):
        """One request on the held connection; False once it is dead."""
        self.requests += 1
        try:
            self.sock.settimeout(timeout)
            self.sock.sendall(request(self.vip))
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise ConnectionResetError("closed by peer")
                buf += chunk
            head, body = buf.split(b"\r\n\r\n", 1)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            while len(body) < length:
                chunk = self.sock.recv(4096)
                if not chunk:
                    raise ConnectionResetError("closed by peer")
                body += chunk
            name = body.decode(errors="replace").strip().split()[-1]
            if not self.backends or self.backends[-1] != name:
                self.backends.append(name)
            now = time.monotonic() - t0
            if self.last_answer is not None:
                self.max_gap = max(self.max_gap, now - self.last_answer)
            self.last_answer = now
            self.answers += 1
            return True
        except ConnectionResetError as e:
            self.reset = True
            self.error = f"reset: {e}"
        except (socket.timeout, OSError) as e:
            self.error = f"{type(e).__name__}: {e}"
        self.failures += 1
        self.failed_at = round(time.monotonic() - t0, 3)
        return False


def dns_query(qid):
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in b"www.lab.test".split(b"."):
        q += bytes([len(label)]) + label
    return q + b"\x00\x00\x01\x00\x01"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("vip")
    ap.add_argument("--conns", type=int, default=200)
    ap.add_argument("--period", type=float, default=0.2)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--dns-every", type=float, default=0.1)
    ap.add_argument("--probe-every", type=float, default=0.2)
    ap.add_argument("--timeout", type=float, default=20)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    t0 = time.monotonic()
    marks = []
    signal.signal(signal.SIGUSR1, lambda *_: marks.append(round(time.monotonic() - t0, 3)))
    conns = [Conn(a.vip, i) for i in range(a.conns)]
    for c in conns:
        try:
            c.open(5)
        except OSError as e:
            c.error = f"connect: {e}"
            c.failures += 1
            c.failed_at = 0.0
    stop = t0 + a.seconds

    def hold(c):
        # Spread the connections over the period, then one request each period.
        time.sleep(random.random() * a.period)
        while c.sock is not None and time.monotonic() < stop:
            t = time.monotonic()
            if not c.one(t0, a.timeout):
                break
            time.sleep(max(0.0, a.period - (time.monotonic() - t)))

    dns = {"sent": 0, "answered": 0, "failed_at": []}

    def query():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(1.0)
        qid = 1
        while time.monotonic() < stop:
            qid = (qid + 1) & 0xFFFF
            dns["sent"] += 1
            try:
                s.sendto(dns_query(qid), (a.vip, 53))
                while True:
                    r, _ = s.recvfrom(2048)
                    if len(r) >= 2 and struct.unpack(">H", r[:2])[0] == qid:
                        dns["answered"] += 1
                        break
            except OSError:
                dns["failed_at"].append(round(time.monotonic() - t0, 3))
            time.sleep(a.dns_every)

    probes = []

    def probe():
        while time.monotonic() < stop:
            t = time.monotonic() - t0
            c = Conn(a.vip, -1)
            ok = False
            try:
                c.open(1)
                ok = c.one(t0, 1)
                c.sock.close()
            except OSError:
                pass
            probes.append([round(t, 3), ok])
            time.sleep(a.probe_every)

    threads = [threading.Thread(target=hold, args=(c,), daemon=True) for c in conns]
    threads.append(threading.Thread(target=query, daemon=True))
    threads.append(threading.Thread(target=probe, daemon=True))
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.0, stop - time.monotonic()) + a.timeout + 5)
    out = {
        "conns": [
            {
                "backends": c.backends,
                "requests": c.requests,
                "answers": c.answers,
                "failures": c.failures,
                "reset": c.reset,
                "error": c.error,
                "failed_at": c.failed_at,
                "max_gap": round(c.max_gap, 3),
            }
            for c in conns
        ],
        "dns": dns,
        "probes": probes,
        "marks": marks,
    }
    with open(a.out, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    sys.exit(main())
