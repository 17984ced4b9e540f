# SPDX-License-Identifier: Apache-2.0
"""A subscriber app for the pub/sub conformance suite: a real HTTP/1.1 server
(keep-alive, one thread per connection) on a Unix socket or a loopback port
that answers GET /dapr/subscribe with what the test gives it and records
every delivery.

- subscriptions: the JSON GET /dapr/subscribe answers (a list, v1 or v2
  entries), or None for a 404 ("no programmatic subscriptions").
- decide(delivery) -> None (200, empty body: ack) or a Reply; the test's way
  to answer RETRY, DROP, 404, 5xx or to cut the answer short.
- Health probes (GET /) are answered 200 and only counted.
- Probes of the suite: events whose data is {"__probe__": token} (possibly
  wrapped by a rawPayload subscription) are acked and kept apart (probes,
  not deliveries); the suite publishes them until they arrive to know that
  a subscription is live in the broker.

Only the Python standard library.
"""

import base64
import http.server
import json
import os
import socket
import socketserver
import sys
import threading
import time


class Reply:
    """status, headers [(name, value)], body bytes; raw: bytes written as they are, then the
    connection is closed (an answer cut short)."""

    def __init__(self, status=200, headers=(), body=b"", raw=None):
        self.status, self.headers, self.body, self.raw = status, list(headers), body, raw


def event_payload(event):
    """The event's data: "data" as is, or "data_base64" decoded (bytes); None if neither."""
    if not isinstance(event, dict):
        return None
    if "data_base64" in event:
        try:
            return base64.b64decode(event["data_base64"])
        except (ValueError, TypeError):
            return None
    return event.get("data")


def probe_token(event, depth=0):
    """The probe token of an event (looking into raw-payload wrappers), or None."""
    if not isinstance(event, dict) or depth > 2:
        return None
    data = event.get("data")
    if isinstance(data, dict) and isinstance(data.get("__probe__"), str):
        return data["__probe__"]
    if "data_base64" in event:
        raw = event_payload(event)
        try:
            inner = json.loads(raw)
        except (ValueError, TypeError):
            return None
        return probe_token(inner, depth + 1)
    return None


class Delivery:
    """One POST the daemon made to the app."""

    def __init__(self, method, target, headers, body, seq):
        self.seq = seq                       # arrival order at this app
        self.at = time.monotonic()
        self.path = target
        self.method = method
        self.headers = headers               # [(name, value)] as received
        self.body = body or b""
        try:
            self.event = json.loads(self.body)
        except ValueError:
            self.event = None

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    @property
    def data(self):
        return event_payload(self.event)

    @property
    def id(self):
        return self.event.get("id") if isinstance(self.event, dict) else None

    def field(self, key, default=None):
        """A member of the JSON data (None when the data is no object)."""
        d = self.data
        return d.get(key, default) if isinstance(d, dict) else default

    def __repr__(self):
        return f"<Delivery {self.path} {self.body[:160]!r}>"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        super().setup()
        with self.server.app.cond:
            self.server.app.conns.add(self.connection)

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        with self.server.app.cond:
            self.server.app.conns.discard(self.connection)

    def address_string(self):
        return "app"

    def _serve(self):
        app = self.server.app
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        reply = app.handle(self.command, self.path, list(self.headers.items()), body)
        if reply.raw is not None:
            self.wfile.write(reply.raw)
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.send_response(reply.status)
        for k, v in reply.headers:
            self.send_header(k, v)
        if reply.status not in (204, 304):
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if reply.status not in (204, 304) and self.command != "HEAD":
            self.wfile.write(reply.body)
        self.wfile.flush()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve


class _Quiet:
    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], OSError):
            return  # the daemon went away mid-answer (killed, timed out): nothing to report
        super().handle_error(request, client_address)


class _UnixServer(_Quiet, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 1024

    def get_request(self):
        conn, _ = super().get_request()
        return conn, ("app", 0)  # BaseHTTPRequestHandler wants a (host, port)


class _TCPServer(_Quiet, socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


class Subscriber:
    def __init__(self, unix_path=None, port=None, subscriptions=None, decide=None, delay=0.0):
        self.unix_path, self.port = unix_path, port
        self.subscriptions = subscriptions
        self.decide = decide
        self.delay = delay                   # seconds each delivery takes before the answer
        self.cond = threading.Condition()
        self.deliveries = []
        self.probes = []
        self.health_probes = 0
        self.subscribe_calls = 0
        self.active = self.max_active = 0
        self.conns = set()
        self.server = None

    # -- lifecycle --
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
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self):
        """Closes the listener and every open connection (the app is gone)."""
        if not self.server:
            return
        self.server.shutdown()
        self.server.server_close()
        # open keep-alive connections would go on being served: end them too
        with self.cond:
            conns, self.conns = list(self.conns), set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server = None
        if self.unix_path and os.path.exists(self.unix_path):
            os.unlink(self.unix_path)

    def conf(self, extra=""):
        """The app file for mooringd: this address, quick health probes."""
        return f"[App]\nAppAddress={self.address}\nHealthProbeInterval=100ms\n{extra}"

    # -- the HTTP side --
    def handle(self, method, target, headers, body):
        path = target.split("?", 1)[0]
        if method == "GET" and path == "/":
            with self.cond:
                self.health_probes += 1
            return Reply(200)
        if method == "GET" and path == "/dapr/subscribe":
            with self.cond:
                self.subscribe_calls += 1
                subs = self.subscriptions
            if subs is None:
                return Reply(404, [("Content-Type", "text/plain")], b"no subscriptions")
            return Reply(200, [("Content-Type", "application/json")], json.dumps(subs).encode())
        if method == "GET" and path == "/dapr/config":
            # mooringd asks every healthy app which actor types it hosts: none here
            return Reply(404, [("Content-Type", "text/plain")], b"no actors")
        with self.cond:
            d = Delivery(method, target, headers, body, len(self.deliveries) + len(self.probes))
            token = probe_token(d.event)
            if token is not None:
                self.probes.append((token, d))
                self.cond.notify_all()
                return Reply(200)
            self.deliveries.append(d)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.cond.notify_all()
        try:
            if self.delay:
                time.sleep(self.delay)
            reply = self.decide(d) if self.decide else None
        except Exception as e:  # a test's bug: answer 599 so it shows
            reply = Reply(599, [("X-Handler-Error", repr(e)[:200])])
        finally:
            with self.cond:
                self.active -= 1
        return reply if reply is not None else Reply(200)

    # -- what arrived --
    def got(self, path=None, pred=None):
        """Deliveries (not probes), optionally only to path (without query) and matching pred."""
        with self.cond:
            l = list(self.deliveries)
        if path is not None:
            l = [d for d in l if d.path.split("?", 1)[0] == path]
        if pred is not None:
            l = [d for d in l if pred(d)]
        return l

    def has_probe(self, token):
        with self.cond:
            return any(t == token for t, _ in self.probes)

    def wait(self, cond, timeout=30.0, what="deliveries"):
        """Waits until cond(self) is true; returns its value or raises AssertionError."""
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                self.cond.release()
                try:
                    v = cond(self)
                finally:
                    self.cond.acquire()
                if v:
                    return v
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                         f"got {len(self.deliveries)} deliveries: {self.deliveries[-5:]}")
                self.cond.wait(min(left, 0.2))

    def wait_count(self, n, path=None, pred=None, timeout=30.0):
        return self.wait(lambda s: (lambda l: l if len(l) >= n else None)(s.got(path, pred)), timeout,
                         what=f"{n} deliveries" + (f" to {path}" if path else ""))
