#!/usr/bin/python3
"""Tiny HTTP backend for the Switchyard labs.

Runs inside a backend network namespace (started by tests/lab/lab.sh, and
as the content hosts of tests/lab/multitier.sh).

`GET /` answers with the body "backend <name>\\n" and `Cache-Control:
max-age=600`, so caching proxies in front of it (multitier.sh's nginx) cache
it; `/?anything` is the same page under another cache key. `GET /health`
answers "ok\\n" with `Cache-Control: no-store` (a health check through a
cache must reach the backend); anything else is a 404, also `no-store`.

Every request is logged as one line, flushed immediately, so tests can read
the log while the server is still running and see which client address
actually reached the backend (with DSR the client's own IP must be visible
here, not the balancer's).

Log line format (space separated, one request per line):

    <iso8601-utc> <name> <client_ip> <client_port> <local_ip> "<request line>" <status>

<local_ip> is the address the connection was accepted on; for DSR traffic
it is the VIP (bound on lo), for direct probes the backend's own address.

Only the Python standard library is used so it runs with Debian's
/usr/bin/python3 without any virtualenv.
"""

import argparse
import datetime
import http.server
import os
import signal
import sys
import threading


# Cache-Control values: the page is cacheable for 10 minutes (matches the
# multitier caches' proxy_cache_valid 200 10m); health and errors never are.
CACHEABLE = "max-age=600"
NOT_CACHEABLE = "no-store"


class Handler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.1 so keep-alive works like a real server; every response sets
    # Content-Length, which HTTP/1.1 persistent connections require.
    protocol_version = "HTTP/1.1"
    server_version = "switchyard-lab-backend"

    def do_GET(self):
        name = self.server.backend_name
        if self.path == "/" or self.path.startswith("/?"):
            body = f"backend {name}\n".encode()
            status = 200
            cache = CACHEABLE
        elif self.path == "/health":
            body = b"ok\n"
            status = 200
            cache = NOT_CACHEABLE
        else:
            body = b"not found\n"
            status = 404
            cache = NOT_CACHEABLE
        self._reply(status, body, cache=cache)

    def do_HEAD(self):
        self._reply(200, b"", length=len(f"backend {self.server.backend_name}\n"), cache=CACHEABLE)

    def _reply(self, status, body, length=None, cache=NOT_CACHEABLE):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Backend", self.server.backend_name)
        self.end_headers()
        if body:
            self.wfile.write(body)

    # BaseHTTPRequestHandler calls log_request() for every answered request
    # (and log_error() for malformed ones). Route both to our log file.
    def log_request(self, code="-", size="-"):
        if isinstance(code, http.HTTPStatus):
            code = code.value
        self.server.log_line(self.client_address, self.connection, self.requestline, code)

    def log_message(self, format, *args):  # noqa: A002 - signature fixed by stdlib
        # Errors (bad request, timeouts...) go to stderr, which lab.sh
        # redirects to <name>.err; the request log stays one line per request.
        sys.stderr.write("%s %s %s\n" % (self.server.backend_name, self.address_string(), format % args))
        sys.stderr.flush()


class Server(http.server.ThreadingHTTPServer):
    # Threads must not keep the process alive on SIGTERM.
    daemon_threads = True
    # Allow an immediate restart after `lab.sh down; lab.sh up`.
    allow_reuse_address = True
    # A server's listen backlog (nginx's is 511), not socketserver's 5: with 5, a burst of
    # connects overflows the SYN queue, the kernel answers with SYN cookies, and the odd
    # handshake ends in a reset from the backend that no balancer caused.
    request_queue_size = 511

    def __init__(self, addr, name, log):
        super().__init__(addr, Handler)
        self.backend_name = name
        self._log = log
        self._log_lock = threading.Lock()

    def log_line(self, client, conn, requestline, code):
        try:
            local_ip = conn.getsockname()[0]
        except OSError:
            local_ip = "-"
        ts = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
        line = f'{ts} {self.backend_name} {client[0]} {client[1]} {local_ip} "{requestline}" {code}\n'
        with self._log_lock:
            self._log.write(line)
            self._log.flush()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", help="backend name, e.g. b1 (returned in the body)")
    ap.add_argument("--bind", default="0.0.0.0", help="listen address (default 0.0.0.0)")
    ap.add_argument("--port", type=int, default=80, help="listen port (default 80)")
    ap.add_argument("--log", help="request log file (default: stdout)")
    ap.add_argument("--pidfile", help="write our pid here once listening; removed on exit")
    args = ap.parse_args()

    log = open(args.log, "a", buffering=1) if args.log else sys.stdout
    srv = Server((args.bind, args.port), args.name, log)

    # SIGTERM -> normal shutdown path (closes the socket, removes pidfile).
    # serve_forever() must be stopped from another thread, hence the helper.
    def on_term(signum, frame):
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    # Written only after bind() succeeded, so the pidfile means "listening".
    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")
    try:
        srv.serve_forever(poll_interval=0.2)
    finally:
        srv.server_close()
        if args.pidfile:
            try:
                os.unlink(args.pidfile)
            except FileNotFoundError:
                pass


if __name__ == "__main__":
    main()
