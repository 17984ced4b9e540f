# SPDX-License-Identifier: Apache-2.0
"""An app hosting Dapr actors, as an official SDK does it over HTTP, for the actor tests.
Run as its own process (python3 actorapp.py SOCKET CONFIG_JSON DAEMON_SOCKET LOG), or in a
thread through ActorApp.

It answers GET /dapr/config with the given config, GET /healthz with 200, and the actor
callbacks PUT /actors/{type}/{id}/method/{method}, .../method/remind/{name},
.../method/timer/{name} and DELETE /actors/{type}/{id}. Every callback is appended to LOG as
one JSON line {"kind","type","id","name","body","headers","query","t"} so a test (even across
restarts of the app) sees what arrived. Methods:
  echo      200 with the request body, its Content-Type, X-Echo-Query
  slow      sleeps 20 ms; records the most turns of one actor seen in the app at once
  fail      500 "boom"
  flaky     ?n=N: 500 "boom" for the first N flaky calls of this actor, then 200 "ok"
  status    answers the status given in ?code=
  reenter   ?n=N: calls itself N more times through mooringd with the Dapr-Reentrancy-Id header
  setstate  body: a transaction (JSON array) sent to mooringd for this actor; answers its status
  getstate  ?key=K: mooringd's answer for the actor's key K (status + body)
  settimer  body: {"name", ...spec}: registers a timer for this actor through mooringd
A reminder or timer whose data is {"cancel": true} is answered with X-DaprReminderCancel: true;
one whose data has "ms": N is answered N ms later. Their log lines carry "firing": how many
reminder and timer calls were in the app at once, this one included. Method lines carry "seq",
the call's number in this app; with log_ends set, a "method-end" line with the same seq follows
when the call is answered.
"""

import http.client
import json
import os
import socket
import socketserver
import sys
import threading
import time
import http.server
import urllib.parse


class _Unix(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=30)
        self.path_ = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(self.path_)
        self.sock = s


def daemon_call(sock, method, path, body=None, headers=None):
    c = _Unix(sock)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def address_string(self):
        return "mooringd"

    def _reply(self, status, body=b"", ctype=None, extra=()):
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self):
        app = self.server.app
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
        if url.path == "/dapr/config" and self.command == "GET":
            return self._reply(200, json.dumps(app.config).encode(), "application/json")
        if url.path == "/healthz":
            return self._reply(200)
        if url.path == "/dapr/subscribe":
            return self._reply(404)
        if len(parts) == 3 and parts[0] == "actors" and self.command == "DELETE":
            app.log({"kind": "deactivate", "type": parts[1], "id": parts[2]})
            return self._reply(200)
        if len(parts) < 5 or parts[0] != "actors" or parts[3] != "method" or self.command != "PUT":
            return self._reply(404)
        typ, aid = parts[1], parts[2]
        headers = {k.lower(): v for k, v in self.headers.items()}
        if parts[4] in ("remind", "timer") and len(parts) == 6:
            data = json.loads(body) if body else None
            inner = data.get("data") if isinstance(data, dict) else None
            ms = inner.get("ms") if isinstance(inner, dict) else None
            with app.lock:
                app.firing += 1
                firing = app.firing
            try:
                app.log({"kind": parts[4], "type": typ, "id": aid, "name": parts[5], "body": data, "firing": firing})
                if ms:
                    time.sleep(ms / 1000)
            finally:
                with app.lock:
                    app.firing -= 1
            cancel = isinstance(inner, dict) and inner.get("cancel")
            return self._reply(200, extra=[("X-DaprReminderCancel", "true")] if cancel else ())
        method = parts[4]
        key = (typ, aid)
        with app.lock:
            app.seq += 1
            seq = app.seq
            app.inside[key] = app.inside.get(key, 0) + 1
            app.max_inside[key] = max(app.max_inside.get(key, 0), app.inside[key])
            app.max_total = max(app.max_total, sum(app.inside.values()))
        try:
            with app.lock:
                inside, total = app.inside[key], sum(app.inside.values())
            app.log({"kind": "method", "type": typ, "id": aid, "name": method, "query": url.query,
                     "headers": headers, "body": body.decode(errors="replace"), "inside": inside, "total": total,
                     "seq": seq})
            if method == "echo":
                return self._reply(200, body, self.headers.get("Content-Type"), [("X-Echo-Query", url.query)])
            if method == "slow":
                time.sleep(float(q.get("ms", "20")) / 1000)
                return self._reply(200, b"ok", "text/plain")
            if method == "fail":
                return self._reply(500, b"boom", "text/plain")
            if method == "flaky":
                with app.lock:
                    app.flaky[key] = app.flaky.get(key, 0) + 1
                    seen = app.flaky[key]
                ok = seen > int(q.get("n", "0"))
                return self._reply(200 if ok else 500, b"ok" if ok else b"boom", "text/plain")
            if method == "status":
                return self._reply(int(q["code"]), b"status", "text/plain")
            if method == "reenter":
                n = int(q.get("n", "0"))
                if n <= 0:
                    return self._reply(200, b"bottom", "text/plain")
                h = {}
                if "dapr-reentrancy-id" in headers:
                    h["Dapr-Reentrancy-Id"] = headers["dapr-reentrancy-id"]
                st, b = daemon_call(app.daemon_sock, "PUT", f"/v1.0/actors/{typ}/{aid}/method/reenter?n={n - 1}",
                                    b"", h)
                return self._reply(200 if st == 200 else 500, b if st == 200 else b"nested failed: " + b,
                                   "text/plain")
            if method == "setstate":
                st, b = daemon_call(app.daemon_sock, "POST", f"/v1.0/actors/{typ}/{aid}/state", body)
                return self._reply(200, json.dumps({"status": st, "body": b.decode()}).encode(), "application/json")
            if method == "getstate":
                st, b = daemon_call(app.daemon_sock, "GET", f"/v1.0/actors/{typ}/{aid}/state/{q['key']}")
                return self._reply(200, json.dumps({"status": st, "body": b.decode()}).encode(), "application/json")
            if method == "settimer":
                spec = json.loads(body)
                name = spec.pop("name")
                st, b = daemon_call(app.daemon_sock, "POST", f"/v1.0/actors/{typ}/{aid}/timers/{name}",
                                    json.dumps(spec).encode())
                return self._reply(200, json.dumps({"status": st, "body": b.decode()}).encode(), "application/json")
            return self._reply(404, b"no such method")
        finally:
            with app.lock:
                app.inside[key] -= 1
            if app.log_ends:  # when the turn ended: the multi-host test checks turns never overlap
                app.log({"kind": "method-end", "type": typ, "id": aid, "name": method, "seq": seq})

    do_GET = do_PUT = do_POST = do_DELETE = _handle


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 512  # 200 actors called at once: each call may open a connection


class ActorApp:
    def __init__(self, unix_path, config, daemon_sock, log_path):
        self.unix_path, self.config, self.daemon_sock, self.log_path = unix_path, config, daemon_sock, log_path
        self.lock = threading.Lock()
        self.inside, self.max_inside = {}, {}
        self.flaky = {}  # (type, id): flaky calls seen
        self.max_total = 0
        self.firing = 0  # reminder and timer calls in the app now
        self.seq = 0  # method calls so far
        self.log_ends = False  # also log {"kind": "method-end"} when a method call is answered
        self.server = None

    @property
    def address(self):
        return f"unix:{self.unix_path}"

    def log(self, entry):
        entry["t"] = time.time()
        line = json.dumps(entry) + "\n"
        with self.lock:
            with open(self.log_path, "a") as f:
                f.write(line)

    def start(self):
        if os.path.exists(self.unix_path):
            os.unlink(self.unix_path)
        self.server = _UnixServer(self.unix_path, _Handler)
        self.server.app = self
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def read_log(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


if __name__ == "__main__":
    app = ActorApp(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3], sys.argv[4]).start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
