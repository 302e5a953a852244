#!/usr/bin/python3
"""A line-based greeting server for the GSLB lab, standing in for POP3 (the web switch's
example of a protocol a site proxies to its peer by IP).

On connect it sends "+OK <name> ready"; each line the client sends is answered with
"+OK <name> <line>", and "QUIT" with "+OK <name> bye" before it closes. Every connection is
logged as one flushed line, so tests see which address reached it:

    <iso8601-utc> <name> <client_ip> <client_port> <local_ip>

Standard library only (Debian's /usr/bin/python3).
"""

import argparse
import datetime
import os
import socketserver
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--bind", default="0.0.0.0")
    ap.add_argument("--port", type=int, default=110)
    ap.add_argument("--log", required=True)
    ap.add_argument("--pidfile", required=True)
    a = ap.parse_args()
    log = open(a.log, "a", buffering=1)

    class Handler(socketserver.StreamRequestHandler):
        timeout = 30

        def handle(self):
            peer = self.client_address
            local = self.request.getsockname()[0]
            ts = datetime.datetime.now(datetime.timezone.utc).isoformat()
            log.write(f"{ts} {a.name} {peer[0]} {peer[1]} {local}\n")
            self.wfile.write(f"+OK {a.name} ready\r\n".encode())
            for raw in self.rfile:
                line = raw.decode(errors="replace").strip()
                if line.upper() == "QUIT":
                    self.wfile.write(f"+OK {a.name} bye\r\n".encode())
                    return
                self.wfile.write(f"+OK {a.name} {line}\r\n".encode())

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True
        # A server's backlog, not socketserver's 5 (see http_backend.py).
        request_queue_size = 511

    srv = Server((a.bind, a.port), Handler)
    with open(a.pidfile, "w") as f:
        f.write(f"{os.getpid()}\n")
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
