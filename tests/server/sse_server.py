#!/usr/bin/env python3
"""A local Server-Sent Events test server (python3 stdlib only).

Listens on 127.0.0.1 on a random free port and prints the port, alone on a
line, on stdout once it is ready. Threaded: one thread per connection. Runs
until killed, or with --exit-on-eof until its stdin is closed (so that a
test that dies takes the server with it).
Streams are sent with chunked transfer encoding, as real APIs do. A request
for an absolute URL (as sent to an HTTP proxy) is served by its path, so the
server doubles as a proxy for tests of the proxy variables.

Endpoints (query parameters in brackets):
  GET /events  [n=10, size=0, crlf=0, delay_ms=0]
      n events `id: I`, `event: tick`, `data: {"i": I, "pad": "..."}` with a pad
      of `size` bytes; CRLF line ends with crlf=1; a pause between events.
  GET /hang    [n=2]
      n events, then nothing more, connection held open (up to 120 s).
  GET /big     [mb=10]
      one event whose data is one line of `mb` MiB ("0123456789abcdef"
      repeated),
      then an event `data: end`.
  GET /stream  [bytes=200000000, event=1024]
      about `bytes` bytes of events of `event` bytes each (data lines of 'x'),
      written in 1 MiB pieces; then `data: [DONE]`. For the benchmark.
  GET /status  [code=500]
      a response with that status and a short body.
  any /echo
      replies with a JSON object: method, path, headers, body.
"""
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def q(self, name, default):
        v = self.query.get(name)
        return int(v[0]) if v else default

    def start_stream(self, status=200):
        self.send_response(status)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def chunk(self, data):
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_stream(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def route(self):
        u = urlparse(self.path)
        self.query = parse_qs(u.query)
        fn = getattr(self, "ep_" + u.path.strip("/"), None)
        if fn is None:
            self.send_error(404)
            return
        try:
            fn()
        except (BrokenPipeError, ConnectionResetError):
            pass

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = route

    def ep_events(self):
        n, size = self.q("n", 10), self.q("size", 0)
        eol = b"\r\n" if self.q("crlf", 0) else b"\n"
        delay = self.q("delay_ms", 0) / 1000.0
        pad = b"p" * size
        self.start_stream()
        for i in range(n):
            ev = (b"id: %d" % i + eol + b"event: tick" + eol +
                  b'data: {"i": %d, "pad": "' % i + pad + b'"}' + eol + eol)
            self.chunk(ev)
            if delay:
                self.wfile.flush()
                time.sleep(delay)
        self.end_stream()

    def ep_hang(self):
        n = self.q("n", 2)
        self.start_stream()
        for i in range(n):
            self.chunk(b"data: %d\n\n" % i)
        self.wfile.flush()
        # Hold the connection without sending, until the client goes away.
        self.connection.settimeout(120)
        try:
            self.connection.recv(1)
        except (socket.timeout, OSError):
            pass

    def ep_big(self):
        mb = self.q("mb", 10)
        self.start_stream()
        self.chunk(b"event: big\ndata: ")
        piece = b"0123456789abcdef" * 65536  # 1 MiB
        for _ in range(mb):
            self.chunk(piece)
        self.chunk(b"\n\ndata: end\n\n")
        self.end_stream()

    def ep_stream(self):
        total, size = self.q("bytes", 200000000), self.q("event", 1024)
        ev = b"data: " + b"x" * max(size - 8, 1) + b"\n\n"
        per = max(1, (1 << 20) // len(ev))
        block = ev * per
        head = b"%x\r\n" % len(block)
        frame = head + block + b"\r\n"
        self.start_stream()
        sent = 0
        while sent < total:
            self.wfile.write(frame)
            sent += len(block)
        self.chunk(b"data: [DONE]\n\n")
        self.end_stream()

    def ep_status(self):
        code = self.q("code", 500)
        body = b'{"error": "status %d"}' % code
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def ep_echo(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        out = json.dumps({
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def main():
    srv = Server(("127.0.0.1", 0), Handler)
    print(srv.server_address[1], flush=True)
    if "--exit-on-eof" not in sys.argv[1:]:
        try:
            srv.serve_forever()
        except KeyboardInterrupt:
            pass
        return
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        sys.stdin.read()
    except KeyboardInterrupt:
        pass
    srv.shutdown()


if __name__ == "__main__":
    main()
