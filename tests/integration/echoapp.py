# SPDX-License-Identifier: Apache-2.0
"""An HTTP app for the service-invocation tests, on a Unix socket or a loopback
port, one thread per connection.

Unlike testapp.TestApp it parses HTTP/1.1 itself, so a test sees exactly what
arrived: the raw request target, every header line in order (repeated ones
included), the body (streamed through sha256; kept in memory only up to
KEEP_BODY bytes). It counts the requests in progress and remembers the most it
saw at once, and it can answer in every way a test needs: any status and
headers, a chunked body, a generated body of any size, or raw bytes followed
by a hard close.

What the app answers is decided by app.handler(req) -> Reply; the default,
echo(), understands a few path prefixes:
  /status/NNN/...  answer status NNN (body: the request body)
  /sleep/MS/...    sleep MS milliseconds first, then echo
  anything else    200 with the request body
and always adds X-Echo-Method, X-Echo-Path, X-Echo-Length, X-Echo-Sha256.
Health probes (the HealthCheckPath, or "/" without dapr-callee-app-id) are
answered with app.health_status and kept apart in app.probes, as is mooringd's
GET /dapr/subscribe and GET /dapr/config (answered 404: no subscriptions, no actors).
"""

import hashlib
import os
import socket
import socketserver
import struct
import threading
import time

KEEP_BODY = 16 << 20
CHUNK = 1 << 20

REASONS = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 206: "Partial Content",
    301: "Moved Permanently", 302: "Found", 304: "Not Modified", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 418: "I'm a teapot",
    429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
}


class Request:
    def __init__(self, method, target, version, headers):
        self.method, self.target, self.version = method, target, version
        self.headers = headers  # [(name, value)] as received
        self.body = b""          # None when longer than KEEP_BODY
        self.length = 0
        self.sha256 = None
        self.chunked = False
        self.received_at = time.monotonic()

    @property
    def path(self):
        return self.target

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def header_names(self):
        return [k.lower() for k, _ in self.headers]

    def __repr__(self):
        return f"<Request {self.method} {self.target} {len(self.headers)} headers, {self.length} bytes>"


class Reply:
    """status, headers [(name, value)], body: bytes, or an iterable of bytes with length set
    (sent with that Content-Length), or chunks (sent chunked). raw: bytes written as they
    are, then the connection is closed hard (a partial answer). content_length=False
    sends no Content-Length at all (for HEAD answers that declare one themselves)."""

    def __init__(self, status=200, headers=(), body=b"", length=None, chunks=None, raw=None, close=False,
                 reset=False):
        self.status, self.headers, self.body = status, list(headers), body
        self.length, self.chunks, self.raw, self.close = length, chunks, raw, close
        self.reset = reset  # with raw, on TCP: a moment later, end with a reset (RST), not a FIN


def echo(req, app=None):
    parts = req.target.split("?", 1)[0].split("/")
    status = 200
    if len(parts) > 2 and parts[1] == "sleep":
        time.sleep(int(parts[2]) / 1000)
    elif len(parts) > 2 and parts[1] == "status":
        status = int(parts[2])
    headers = [("X-Echo-Method", req.method), ("X-Echo-Path", req.target), ("X-Echo-Length", str(req.length)),
               ("X-Echo-Sha256", req.sha256)]
    ct = req.header("Content-Type")
    if ct is not None:
        headers.append(("Content-Type", ct))
    return Reply(status, headers, req.body if req.body is not None else b"")


class _Handler(socketserver.StreamRequestHandler):
    rbufsize = CHUNK

    def setup(self):
        super().setup()
        with self.server.app.lock:
            self.server.app.connections += 1
            self.server.app.open_sockets.append(self.connection)

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        with self.server.app.lock:
            try:
                self.server.app.open_sockets.remove(self.connection)
            except ValueError:
                pass

    def _line(self):
        line = self.rfile.readline(65537)
        if not line:
            return None
        if not line.endswith(b"\r\n"):
            raise ConnectionError(f"bad line {line[:100]!r}")
        return line[:-2].decode("latin-1")

    def _read_body(self, req, hasher):
        te = (req.header("Transfer-Encoding") or "").lower()
        keep = []
        kept = 0

        def take(data):
            nonlocal kept
            hasher.update(data)
            req.length += len(data)
            if kept <= KEEP_BODY:
                keep.append(data)
                kept += len(data)

        if "chunked" in te:
            req.chunked = True
            while True:
                size = int(self._line().split(";", 1)[0], 16)
                if size == 0:
                    while self._line():  # trailers
                        pass
                    break
                left = size
                while left:
                    data = self.rfile.read(min(left, CHUNK))
                    if not data:
                        raise ConnectionError("eof in chunk")
                    take(data)
                    left -= len(data)
                self._line()
        else:
            left = int(req.header("Content-Length") or 0)
            while left:
                data = self.rfile.read(min(left, CHUNK))
                if not data:
                    raise ConnectionError("eof in body")
                take(data)
                left -= len(data)
        req.body = b"".join(keep) if kept <= KEEP_BODY else None
        req.sha256 = hasher.hexdigest()

    def handle(self):
        app = self.server.app
        while True:
            try:
                first = self._line()
                if first is None:
                    return
                if not first:
                    continue
                method, target, version = first.split(" ", 2)
                headers = []
                while True:
                    line = self._line()
                    if line is None:
                        return
                    if line == "":
                        break
                    k, v = line.split(":", 1)
                    headers.append((k, v.strip()))
                req = Request(method, target, version, headers)
                if (req.header("Expect") or "").lower() == "100-continue":
                    self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                    self.wfile.flush()
                self._read_body(req, hashlib.sha256())
            except (OSError, ValueError, ConnectionError):
                return
            probe = (target.split("?")[0] == app.health_path or
                     (target == "/" and req.header("dapr-callee-app-id") is None))
            if target in ("/dapr/subscribe", "/dapr/config") and req.header("dapr-callee-app-id") is None:
                # mooringd asks every healthy app for its pub/sub subscriptions and actor types: not a call.
                with app.lock:
                    app.probes.append(req)
                reply = Reply(404)
            elif probe:
                with app.lock:
                    app.probes.append(req)
                reply = Reply(app.health_status)
            else:
                with app.lock:
                    app.requests.append(req)
                    app.active += 1
                    app.max_active = max(app.max_active, app.active)
                try:
                    reply = app.handler(req)
                except Exception as e:  # a test handler's bug: answer 599 so it shows
                    reply = Reply(599, [("X-Handler-Error", repr(e)[:200])])
                finally:
                    # Done before the answer goes out: once the caller has it, the next
                    # request may arrive, and it must not count this one as still running.
                    with app.lock:
                        app.active -= 1
                        app.finished += 1
            try:
                done = self._send(req, reply)
            except OSError:
                done = True
            conn_hdr = (req.header("Connection") or "").lower()
            if done or conn_hdr == "close" or req.version == "HTTP/1.0":
                return

    def _send(self, req, reply):
        """Writes the answer; returns True when the connection must end."""
        w = self.wfile
        if reply.raw is not None:
            w.write(reply.raw)
            w.flush()
            if reply.reset and self.connection.family != socket.AF_UNIX:
                time.sleep(0.3)  # the bytes are read before the reset arrives
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                for f in (self.rfile, self.wfile):
                    try:
                        f.close()
                    except OSError:
                        pass
                self.connection.close()  # the last reference: linger 0 sends RST
                return True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return True
        head = [f"HTTP/1.1 {reply.status} {REASONS.get(reply.status, 'Status')}"]
        names = {k.lower() for k, _ in reply.headers}
        head += [f"{k}: {v}" for k, v in reply.headers]
        no_body = req.method == "HEAD" or reply.status in (204, 304) or 100 <= reply.status < 200
        if reply.chunks is not None:
            head.append("Transfer-Encoding: chunked")
        elif "content-length" not in names and reply.status not in (204, 304):
            n = reply.length if reply.length is not None else len(reply.body)
            head.append(f"Content-Length: {n}")
        if reply.close:
            head.append("Connection: close")
        w.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if not no_body:
            if reply.chunks is not None:
                for c in reply.chunks:
                    if c:
                        w.write(f"{len(c):x}\r\n".encode() + c + b"\r\n")
                        w.flush()
                w.write(b"0\r\n\r\n")
            elif isinstance(reply.body, (bytes, bytearray)):
                w.write(reply.body)
            else:
                for c in reply.body:
                    w.write(c)
        w.flush()
        return reply.close


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 1024


class _TCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


class EchoApp:
    def __init__(self, unix_path=None, port=None, handler=None, health_path="/healthz"):
        self.unix_path, self.port = unix_path, port
        self.handler = handler or (lambda req: echo(req, self))
        self.health_path = health_path
        self.health_status = 200
        self.lock = threading.Lock()
        self.requests = []
        self.probes = []
        self.connections = 0
        self.open_sockets = []
        self.active = self.max_active = self.finished = 0
        self.server = None

    @property
    def address(self):
        return f"unix:{self.unix_path}" if self.unix_path else f"http://127.0.0.1:{self.port}"

    def start(self):
        if self.unix_path:
            if os.path.exists(self.unix_path):
                os.unlink(self.unix_path)
            self.server = _UnixServer(self.unix_path, _Handler)
        else:
            self.server = _TCPServer(("127.0.0.1", self.port), _Handler)
        self.server.app = self
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
            with self.lock:
                for s in self.open_sockets:
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                self.open_sockets.clear()
            if self.unix_path and os.path.exists(self.unix_path):
                os.unlink(self.unix_path)

    def calls(self, prefix=""):
        """Requests (not probes) whose target starts with prefix."""
        with self.lock:
            return [r for r in self.requests if r.target.startswith(prefix)]
