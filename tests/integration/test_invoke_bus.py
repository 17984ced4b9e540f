#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Service invocation over D-Bus (InvokeMethod) and `mooringctl invoke` (over D-Bus
and over the shared socket), with the real daemon on a private bus and a small
threaded HTTP app of our own on a Unix socket.

Covered: verbs, path + query, headers and a binary body both ways; the callee's
404/500 returned as a status, not an error; the D-Bus error names (busctl prints
only the message, so a dbus-monitor collects the names): NoSuchApp, Unavailable,
Timeout, PermissionDenied (accessControl), InvalidArgument, ResponseTooLarge;
mooringctl's output and exit statuses, --data @FILE and -, --header, --verbose.
"""

import http.server
import json
import os
import socketserver
import subprocess
import threading

from harness import MOORINGCTL, TIMEOUT, DaemonTestCase, main, require, wait_for

IFACE = "org.mooring.Runtime1"
ERR = "org.mooring.Runtime1.Error."
BINARY = bytes(range(256))
MIB = 1 << 20

DENY_ALL = """apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: deny-all
spec:
  accessControl:
    defaultAction: deny
"""


class Seen:
    """One request as the app received it."""

    def __init__(self, verb, path, headers, body):
        self.verb, self.path, self.body = verb, path, body
        self.headers = {k.lower(): v for k, v in headers.items()}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def address_string(self):
        return "test-client"

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _stream(self, announced):
        """40 MiB in 1 MiB pieces, with a Content-Length that says 70 MiB, or chunked;
        stops when mooringd hangs up."""
        self.send_response(200)
        if announced:
            self.send_header("Content-Length", str(70 * MIB))
        else:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        piece = b"x" * MIB
        for _ in range(40):
            self.wfile.write(piece if announced else b"%x\r\n%s\r\n" % (len(piece), piece))
        if not announced:
            self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True

    def _answer(self):
        try:
            self._route()
        except (BrokenPipeError, ConnectionResetError):  # mooringd hung up: an answer it refused
            self.close_connection = True

    def _route(self):
        app = self.server.app
        body = self._read_body()
        if self.path == "/healthz":  # mooringd's health probe: not counted
            self._send(200)
            return
        if self.path in ("/dapr/subscribe", "/dapr/config"):  # mooringd asks for subscriptions, actor types
            self._send(404)
            return
        with app.lock:
            app.requests.append(Seen(self.command, self.path, self.headers, body))
        path = self.path.split("?")[0]
        if path.startswith("/echo"):
            self._send(200, body, [("Content-Type", "application/octet-stream"), ("X-Reply", "yes"),
                                   ("X-Verb", self.command)])
        elif path == "/binary":
            self._send(200, BINARY, [("Content-Type", "application/octet-stream")])
        elif path.startswith("/bytes/"):
            self._send(200, b"z" * int(path.split("/")[2]))
        elif path.startswith("/status/"):
            code = int(path.split("/")[2])
            self._send(code, f"status {code}".encode(), [("X-Status", str(code))])
        elif path == "/slow":
            app.release.wait(TIMEOUT)
            self._send(200, b"late")
        elif path == "/huge-announced":
            self._stream(True)
        elif path == "/huge-chunked":
            self._stream(False)
        else:
            self._send(404, b"no such route")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _answer


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 64


class App:
    """The callee: an HTTP/1.1 server on a Unix socket in a thread, recording what it receives."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.requests = []
        self.release = threading.Event()  # lets /slow answer
        self.server = None

    def start(self):
        self.server = _Server(self.path, _Handler)
        self.server.app = self
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.release.set()
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if os.path.exists(self.path):
            os.unlink(self.path)

    def last(self):
        with self.lock:
            return self.requests[-1] if self.requests else None

    def count(self):
        with self.lock:
            return len(self.requests)


class ErrorWatch:
    """A dbus-monitor for the error replies mooringd sends; names in order of arrival."""

    def __init__(self, d):
        self.d = d
        self.lock = threading.Lock()
        self.lines = []
        self.proc = subprocess.Popen(["stdbuf", "-oL", "dbus-monitor", "--address", d.dbus.address,
                                      f"type='error',sender='{IFACE}'"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        # In place once it sees an error we provoke (an unknown method), whatever the timing.
        wait_for(lambda: self.d.call("NoSuchMethodHere", check=False) and self.names(),
                 what="dbus-monitor to report mooringd's errors")
        # The probes above that it saw late would land among the errors a test provokes
        # next (names()[n] was then UnknownMethod). One more, named apart, and wait for it:
        # the monitor reports in bus order, so every earlier probe is in by then.
        self.d.call("NoSuchMethodSettled", check=False)
        wait_for(lambda: self.saw("NoSuchMethodSettled"), what="dbus-monitor to catch up with the probes")

    def saw(self, text):
        with self.lock:
            return any(text in line for line in self.lines)

    def _read(self):
        for line in iter(self.proc.stdout.readline, ""):
            with self.lock:
                self.lines.append(line)

    def names(self):
        with self.lock:
            return [w.split("=", 1)[1] for line in self.lines for w in line.split() if w.startswith("error_name=")]

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


def invoke_args(app, method, verb="", headers=(), body=b""):
    args = [app, method, verb, len(headers)]
    for k, v in headers:
        args += [k, v]
    return args + [len(body)] + list(body)


class InvokeBusTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        require("dbus-daemon", "busctl", "dbus-monitor", "stdbuf")
        self.d = self.start_daemon()

    def start_daemon(self, config=None):
        """A daemon with app 'echo' (our App), 'slowpoke' (the same, 1s timeout) and 'gone'
        (nothing listens); config: the text of config.yaml."""
        d = self.daemon(bus=True, start=False)
        sock = os.path.join(d.tmp, "app.sock")
        app = App(sock).start()
        self.addCleanup(app.stop)
        d.app = app
        d.write_app("echo", f"[App]\nAppAddress=unix:{sock}\nHealthCheckPath=/healthz\n")
        d.write_app("slowpoke", f"[App]\nAppAddress=unix:{sock}\nHealthCheckPath=/healthz\nInvokeTimeoutSec=1\n")
        d.write_app("gone", f"[App]\nAppAddress=unix:{os.path.join(d.tmp, 'nothing.sock')}\n")
        if config is not None:
            with open(os.path.join(d.config, "config.yaml"), "w") as f:
                f.write(config)
        d.start()
        d.errors = ErrorWatch(d)
        self.addCleanup(d.errors.stop)
        return d

    def invoke(self, *args, d=None, **kw):
        """InvokeMethod; returns (status, {lower-case header name: value}, body bytes)."""
        d = d or self.d
        p = d.call("InvokeMethod", "sssa(ss)ay", *invoke_args(*args, **kw))
        status, headers, body = json.loads(p.stdout)["data"]
        return status, {k.lower(): v for k, v in headers}, bytes(body)

    def invoke_error(self, *args, d=None, **kw):
        """InvokeMethod that must fail; returns (error name, busctl's message)."""
        d = d or self.d
        n = len(d.errors.names())
        p = d.call("InvokeMethod", "sssa(ss)ay", *invoke_args(*args, **kw), check=False)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        wait_for(lambda: len(d.errors.names()) > n, what="the error reply")
        return d.errors.names()[n], p.stderr

    # ---- InvokeMethod ----

    def test_verbs_path_query_headers_and_binary_body(self):
        app = self.d.app
        for verb, sent in (("GET", b""), ("POST", BINARY), ("PUT", BINARY), ("DELETE", BINARY)):
            status, headers, body = self.invoke("echo", "/echo/items?id=7&q=a%20b", verb,
                                                headers=[("X-Custom", "v 1"), ("Content-Type", "application/x-t")],
                                                body=sent)
            self.assertEqual(status, 200, verb)
            self.assertEqual(body, sent, verb)
            self.assertEqual(headers.get("x-reply"), "yes", verb)
            self.assertEqual(headers.get("x-verb"), verb, verb)
            self.assertEqual(headers.get("content-type"), "application/octet-stream", verb)
            seen = app.last()
            self.assertEqual((seen.verb, seen.path), (verb, "/echo/items?id=7&q=a%20b"))
            self.assertEqual(seen.headers.get("x-custom"), "v 1", verb)
            self.assertEqual(seen.headers.get("content-type"), "application/x-t", verb)
            self.assertEqual(seen.body, sent, verb)

        # an empty verb is GET; the method may come without its leading '/'
        status, _, body = self.invoke("echo", "echo/noslash")
        self.assertEqual((status, body), (200, b""))
        self.assertEqual((app.last().verb, app.last().path), ("GET", "/echo/noslash"))
        # an answer's binary body, and HEAD (no body whatever Content-Length says)
        self.assertEqual(self.invoke("echo", "/binary")[::2], (200, BINARY))
        status, headers, body = self.invoke("echo", "/binary", "HEAD")
        self.assertEqual((status, body), (200, b""))
        self.assertEqual(app.last().verb, "HEAD")

    def test_get_with_a_body_stays_get(self):
        """A body does not change the verb (an HTTP client library may turn a request with a body
        into a POST unless told the verb; libcurl, which mooringd used once, did)."""
        status, headers, body = self.invoke("echo", "/echo/get", "GET", body=BINARY)
        seen = self.d.app.last()
        self.assertEqual((status, seen.verb, headers.get("x-verb")), (200, "GET", "GET"))
        self.assertEqual((seen.body, body), (BINARY, BINARY))

    def test_callee_status_is_returned_not_an_error(self):
        for code in (404, 500):
            status, headers, body = self.invoke("echo", f"/status/{code}", "POST", body=b"x")
            self.assertEqual((status, body, headers.get("x-status")), (code, f"status {code}".encode(), str(code)))
        self.assertEqual(self.invoke("echo", "/not-a-route")[::2], (404, b"no such route"))

    def test_errors_without_an_answer(self):
        name, message = self.invoke_error("ghost", "/echo")
        self.assertEqual(name, ERR + "NoSuchApp")
        self.assertIn("ghost", message)
        name, message = self.invoke_error("gone", "/echo", "POST", body=b"lost")
        self.assertEqual(name, ERR + "Unavailable", message)
        n = self.d.app.count()
        name, message = self.invoke_error("slowpoke", "/slow")
        self.assertEqual(name, ERR + "Timeout", message)
        self.d.app.release.set()
        self.assertGreater(self.d.app.count(), n)  # the call did reach the app
        self.d.assert_running()

    def test_invalid_arguments(self):
        cases = [
            (("echo", "/echo", "get"), {}, "verb"),
            (("echo", "/echo", "GE T"), {}, "verb"),
            (("echo", "/echo", "CONNECT"), {}, "not allowed"),
            (("echo", "/echo x"), {}, "percent-encoded"),
            (("echo", "/echo\n"), {}, "percent-encoded"),
            (("echo", "/echo"), {"headers": [("Bad Name", "v")]}, "header name"),
            (("echo", "/echo"), {"headers": [("X-Evil", "a\r\nInjected: 1")]}, "control characters"),
        ]
        for args, kw, message in cases:
            name, got = self.invoke_error(*args, **kw)
            self.assertEqual(name, ERR + "InvalidArgument", (args, kw, got))
            self.assertIn(message, got, (args, kw))
        self.assertEqual(self.d.app.count(), 0)  # nothing reached the app

    def test_access_control_denies(self):
        d = self.start_daemon(config=DENY_ALL)
        name, message = self.invoke_error("echo", "/echo", "POST", body=b"secret", d=d)
        self.assertEqual(name, ERR + "PermissionDenied", message)
        self.assertIn("denied", message)
        self.assertEqual(d.app.count(), 0)  # the callee never saw it

    def test_answer_too_large_for_one_message(self):
        """Replies stay within 32 MiB, dbus-daemon's default message limit: above it the
        bus would disconnect mooringd itself."""
        for path in ("/huge-announced", "/huge-chunked", f"/bytes/{40 * MIB}", f"/bytes/{32 * MIB}"):
            name, message = self.invoke_error("echo", path)
            self.assertEqual(name, ERR + "ResponseTooLarge", (path, message))
            self.assertIn("HTTP", message)
            # still on the bus, and the connection to the app is fine
            self.assertEqual(self.invoke("echo", "/echo", "PUT", body=b"after")[::2], (200, b"after"), path)
        # just below: the whole answer arrives
        size = 31 * MIB
        p = self.ctl("invoke", "echo", f"/bytes/{size}")
        self.assertEqual((p.returncode, len(p.stdout), p.stdout[:3]), (0, size, b"zzz"), p.stderr)
        self.assertEqual(self.d.prop("State"), "running")

    # ---- mooringctl invoke ----

    def ctl(self, *args, socket=False, input=b""):
        cmd = [MOORINGCTL] + (["--socket", self.d.api] if socket else [f"--bus-address={self.d.dbus.address}"])
        env = dict(os.environ)
        env.pop("MOORING_SOCKET", None)
        return subprocess.run(cmd + list(args), capture_output=True, timeout=TIMEOUT, env=env, input=input)

    def test_mooringctl_invoke(self):
        app = self.d.app
        data = os.path.join(self.d.tmp, "data.bin")
        with open(data, "wb") as f:
            f.write(BINARY * 3)
        for socket in (False, True):
            t = "socket" if socket else "bus"
            # --data @FILE: POST, body both ways byte for byte, --header passed on
            p = self.ctl("invoke", "echo", "/echo/x?y=1", "--data", f"@{data}", "--header", "X-A: b c", socket=socket)
            self.assertEqual((p.returncode, p.stdout, p.stderr), (0, BINARY * 3, b""), t)
            seen = app.last()
            self.assertEqual((seen.verb, seen.path, seen.body), ("POST", "/echo/x?y=1", BINARY * 3), t)
            self.assertEqual(seen.headers.get("x-a"), "b c", t)
            # --data -: standard input; --verb in any case; options anywhere
            p = self.ctl("invoke", "--verb", "put", "echo", "--data", "-", "echo/in", socket=socket, input=b"\0in\n")
            self.assertEqual((p.returncode, p.stdout), (0, b"\0in\n"), (t, p.stderr))
            self.assertEqual((app.last().verb, app.last().path), ("PUT", "/echo/in"), t)
            # GET by default, literal --data makes it POST
            p = self.ctl("invoke", "echo", "/binary", socket=socket)
            self.assertEqual((p.returncode, p.stdout), (0, BINARY), t)
            self.assertEqual(app.last().verb, "GET", t)
            p = self.ctl("invoke", "echo", "/echo", "--data", "hello", socket=socket)
            self.assertEqual((p.returncode, p.stdout, app.last().verb), (0, b"hello", "POST"), t)
            # --verbose: status and headers on stderr, the body alone on stdout
            p = self.ctl("invoke", "-v", "echo", "/echo", "--data", "v", socket=socket)
            self.assertEqual((p.returncode, p.stdout), (0, b"v"), t)
            err = p.stderr.decode()
            self.assertTrue(err.startswith("HTTP 200\n"), (t, err))
            self.assertIn("X-Reply: yes\n", err, t)
            # the callee's error status: body printed, exit 1
            p = self.ctl("invoke", "echo", "/status/404", socket=socket)
            self.assertEqual((p.returncode, p.stdout), (1, b"status 404"), t)
            self.assertIn(b"mooringctl: echo answered 404", p.stderr, t)
            p = self.ctl("invoke", "echo", "/status/500", "--verb", "DELETE", socket=socket)
            self.assertEqual(p.returncode, 1, t)
            self.assertIn(b"echo answered 500", p.stderr, t)
            # no answer at all: mooringd's message, exit 1, nothing on stdout
            p = self.ctl("invoke", "ghost", "/x", socket=socket)
            self.assertEqual((p.returncode, p.stdout), (1, b""), t)
            self.assertIn(b"ghost", p.stderr, t)
            self.assertNotIn(b"answered", p.stderr, t)
            p = self.ctl("invoke", "gone", "/x", socket=socket)
            self.assertEqual((p.returncode, p.stdout), (1, b""), t)
            self.assertNotIn(b"answered", p.stderr, t)

    def test_mooringctl_invoke_usage_and_not_running(self):
        for args in (["invoke", "echo"], ["invoke", "echo", "/x", "extra"], ["invoke", "bad id", "/x"],
                     ["invoke", "echo", "/a b"], ["invoke", "echo", "/x", "--verb", "G(T"],
                     ["invoke", "echo", "/x", "--header", "no colon"], ["status", "--data", "x"],
                     ["invoke", "echo", "/x", "--app", "echo"]):
            p = self.ctl(*args)
            self.assertEqual(p.returncode, 2, (args, p.stderr))
        p = self.ctl("invoke", "echo", "/x", "--data", "@" + os.path.join(self.d.tmp, "missing"))
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"cannot open", p.stderr)
        self.assertIn(b"invoke APP_ID METHOD", self.ctl("--help").stdout)
        self.d.stop()
        for socket in (False, True):
            p = self.ctl("invoke", "echo", "/echo", socket=socket)
            self.assertEqual(p.returncode, 3, p.stderr)
            self.assertIn(b"mooringd is not running", p.stderr)


if __name__ == "__main__":
    main()
