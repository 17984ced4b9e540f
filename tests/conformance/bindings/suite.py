#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Bindings conformance: one suite, run against every bindings driver through
the real mooringd (MOORING_BINDING_DRIVER: http, localstorage, redis, mqtt,
cron). Server-backed drivers get a private server from tests/fixtures/servers.py
(Redis, mosquitto); bindings.http calls a real HTTP server of this test on a
loopback port.

Every output driver runs the API cases (daprd's answers and codes, section 5.1
of the project's Dapr HTTP API reference: 500 ERR_INVOKE_OUTPUT_BINDING for an
unknown binding, a missing or unsupported operation; 400 ERR_MALFORMED_REQUEST
for a body that is not JSON; component scopes) and its own operations. Input
drivers (cron, mqtt) run the delivery cases: the OPTIONS probe decides, events
arrive as POST /<route> with Content-Type application/json and metadata
headers, an app answering 500 gets the event again where the source can
redeliver, and (mqtt) nothing is lost across a SIGKILL of the daemon.

A driver whose server is not installed skips (exit 77), or fails when
MOORING_TEST_NO_SKIP=1.
"""

import http.server
import json
import os
import shutil
import signal
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (HERE, os.path.join(HERE, "..", "pubsub"), os.path.join(HERE, "..", "..", "integration"),
           os.path.join(HERE, "..", "..", "fixtures")):
    _p = os.path.normpath(_p)
    if _p not in sys.path:
        sys.path.insert(0, _p)

import harness  # noqa: E402
import subscriber  # noqa: E402
from harness import DaemonTestCase, free_port, request, skip_or_fail, wait_for  # noqa: E402
from subscriber import Reply, Subscriber  # noqa: E402

# The pub/sub suite's app also answers OPTIONS (the input binding probe) through its handle().
subscriber._Handler.do_OPTIONS = subscriber._Handler._serve

DRIVER_NAME = os.environ.get("MOORING_BINDING_DRIVER", "localstorage")
SERVER = None


def yaml_str(v):
    return json.dumps(str(v))


def component(name, type_, items=(), scopes=None):
    meta = ""
    if items:
        meta = "  metadata:\n" + "".join(f"  - name: {k}\n    value: {yaml_str(v)}\n" for k, v in items)
    sc = f"scopes: [{', '.join(scopes)}]\n" if scopes else ""
    return (f"apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n"
            f"  type: {type_}\n  version: v1\n{meta}{sc}")


class Target:
    """The outside HTTP server bindings.http calls: records requests, answers per path."""

    def __init__(self):
        self.requests = []
        target = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _serve(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                target.requests.append((self.command, self.path, dict(self.headers.items()), body))
                status = 200
                if "/status/" in self.path:
                    status = int(self.path.split("/status/")[1].split("/")[0])
                out = json.dumps({"method": self.command, "path": self.path}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-Target", "yes")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(out)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

        class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = S(("127.0.0.1", 0), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class BindingCase(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="mooring-bd-")
        os.chmod(self.tmp, 0o755)
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.uid = uuid.uuid4().hex[:8]

    def app(self, name, decide=None, delay=0.0):
        s = Subscriber(unix_path=os.path.join(self.tmp, f"{name}.sock"), decide=decide, delay=delay)
        s.start()
        self.addCleanup(s.stop)
        return s

    def start(self, components, apps=None, callers=("caller", "other"), app_extra=""):
        all_apps = {c: "[App]\n" for c in callers}
        for a, s in (apps or {}).items():
            all_apps[a] = s.conf(app_extra)
        d = self.daemon(start=False, apps=all_apps)
        for f, text in components.items():
            d.write_component(f, text)
        d.start()
        self.d = d
        return d

    def invoke(self, name, body, app="caller", method="POST", d=None):
        if not isinstance(body, bytes):
            body = json.dumps(body).encode()
        return request((d or self.d).app_socket(app), method, f"/v1.0/bindings/{name}", body=body,
                       headers={"Content-Type": "application/json"})

    def assert_error(self, r, status, code):
        self.assertEqual(r.status, status, r)
        body = r.json()
        self.assertEqual(body.get("errorCode"), code, body)
        self.assertIsInstance(body.get("message"), str)
        return body

    def reload(self, d=None):
        d = d or self.d
        n = len(d.notify.messages)
        d.signal(signal.SIGHUP)
        d.notify.wait("READY=1", after=n)


# ---------------------------------------------------------------------------
# Output drivers: the component under test, named "out"

def output_component(name="out", scopes=None, extra=()):
    if DRIVER_NAME == "localstorage":
        items = [("rootPath", os.path.join(ROOT_DIR, name))]
        t = "bindings.localstorage"
    elif DRIVER_NAME == "http":
        items = [("url", f"http://127.0.0.1:{TARGET.port}/base")]
        t = "bindings.http"
    elif DRIVER_NAME == "redis":
        items = [("redisHost", SERVER.address)]
        t = "bindings.redis"
    elif DRIVER_NAME == "postgresql":
        items = [("connectionString", SERVER.conninfo)]
        t = "bindings.postgresql"
    else:
        items = [("url", SERVER.url), ("topic", f"bindings-out-{name}")]
        t = "bindings.mqtt3"
    return component(name, t, items + list(extra), scopes)


OUTPUT = DRIVER_NAME in ("localstorage", "http", "redis", "mqtt", "postgresql")
INPUT = DRIVER_NAME in ("cron", "mqtt")
ROOT_DIR = None
TARGET = None
GOOD_OP = {"localstorage": "list", "http": "get", "redis": "get", "mqtt": "create",
           "postgresql": "query"}.get(DRIVER_NAME)
GOOD_MD = {"redis": {"key": "k"}, "postgresql": {"sql": "SELECT 1"}}.get(DRIVER_NAME, {})


@unittest.skipUnless(OUTPUT, "output cases")
class OutputApiTest(BindingCase):
    """daprd's answers, the same for every output binding."""

    def setUp(self):
        super().setUp()
        self.start({"out.yaml": output_component(), "scoped.yaml": output_component("scoped", scopes=["other"])})

    def test_unknown_binding(self):
        b = self.assert_error(self.invoke("nope", {"operation": GOOD_OP}), 500, "ERR_INVOKE_OUTPUT_BINDING")
        self.assertIn("nope", b["message"])

    def test_missing_operation(self):
        b = self.assert_error(self.invoke("out", {"data": 1}), 500, "ERR_INVOKE_OUTPUT_BINDING")
        self.assertIn("operation", b["message"])

    def test_unsupported_operation(self):
        b = self.assert_error(self.invoke("out", {"operation": "frobnicate"}), 500, "ERR_INVOKE_OUTPUT_BINDING")
        self.assertIn("frobnicate", b["message"])

    def test_malformed_bodies(self):
        for body in (b"", b"{", b"[1]", b'{"operation": 5}', b'{"operation":"get","metadata":{"a":1}}'):
            self.assert_error(self.invoke("out", body), 400, "ERR_MALFORMED_REQUEST")

    def test_scopes(self):
        # "scoped" is for app "other" only: "caller" does not see it, "other" does
        self.assert_error(self.invoke("scoped", {"operation": GOOD_OP, "metadata": GOOD_MD}), 500,
                          "ERR_INVOKE_OUTPUT_BINDING")
        r = self.invoke("scoped", {"operation": GOOD_OP, "metadata": GOOD_MD}, app="other")
        self.assertIn(r.status, (200, 204), r)

    def test_put_works_like_post(self):
        r = self.invoke("out", {"operation": GOOD_OP, "metadata": GOOD_MD}, method="PUT")
        self.assertIn(r.status, (200, 204), r)


@unittest.skipUnless(DRIVER_NAME == "localstorage", "bindings.localstorage")
class LocalStorageTest(BindingCase):
    def setUp(self):
        super().setUp()
        self.root = os.path.join(ROOT_DIR, f"ls-{self.uid}")
        self.outside = tempfile.mkdtemp(prefix="mooring-outside-")
        self.addCleanup(shutil.rmtree, self.outside, True)
        self.start({"ls.yaml": component("ls", "bindings.localstorage", [("rootPath", self.root)])})

    def test_create_get_list_delete(self):
        r = self.invoke("ls", {"operation": "create", "data": "hello", "metadata": {"fileName": "a/b.txt"}})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"fileName": "a/b.txt"})
        with open(os.path.join(self.root, "a", "b.txt"), "rb") as f:
            self.assertEqual(f.read(), b"hello")  # one level of JSON quoting removed
        r = self.invoke("ls", {"operation": "get", "metadata": {"fileName": "a/b.txt"}})
        self.assertEqual((r.status, r.body), (200, b"hello"))
        r = self.invoke("ls", {"operation": "list"})
        self.assertEqual(r.json(), [os.path.join(os.path.realpath(self.root), "a", "b.txt")])
        r = self.invoke("ls", {"operation": "delete", "metadata": {"fileName": "a/b.txt"}})
        self.assertEqual((r.status, r.body), (204, b""))
        self.assertFalse(os.path.exists(os.path.join(self.root, "a", "b.txt")))
        r = self.invoke("ls", {"operation": "get", "metadata": {"fileName": "a/b.txt"}})
        b = self.assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING")
        self.assertTrue(b["message"].startswith("error invoking output binding ls: "), b)

    def test_base64_and_json_data(self):
        self.invoke("ls", {"operation": "create", "data": "aGk=", "metadata": {"fileName": "b64"}})
        with open(os.path.join(self.root, "b64"), "rb") as f:
            self.assertEqual(f.read(), b"hi")
        self.invoke("ls", {"operation": "create", "data": {"b": 1, "a": [1, "x"]}, "metadata": {"fileName": "j"}})
        with open(os.path.join(self.root, "j"), "rb") as f:
            self.assertEqual(f.read(), b'{"a":[1,"x"],"b":1}')

    def test_create_without_name_gets_a_uuid(self):
        r = self.invoke("ls", {"operation": "create", "data": "x"})
        name = r.json()["fileName"]
        self.assertRegex(name, r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
        self.assertTrue(os.path.exists(os.path.join(self.root, name)))

    def test_traversal_is_refused(self):
        target = os.path.join(self.outside, "victim")
        os.makedirs(self.root, exist_ok=True)
        os.symlink(self.outside, os.path.join(self.root, "link"))
        os.symlink(target, os.path.join(self.root, "filelink"))
        with open(os.path.join(self.outside, "secret"), "w") as f:
            f.write("secret")
        rel = os.path.relpath(target, self.root)
        for name in ("../escape", rel, target, "/etc/passwd", "a/../../escape", "link/victim", "filelink",
                     "link/../../escape"):
            for op in ("create", "get", "delete"):
                r = self.invoke("ls", {"operation": op, "data": "pwned", "metadata": {"fileName": name}})
                self.assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING")
        r = self.invoke("ls", {"operation": "get", "metadata": {"fileName": "link/secret"}})
        self.assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING")
        r = self.invoke("ls", {"operation": "list", "metadata": {"fileName": "link"}})
        self.assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING")
        self.assertEqual(sorted(os.listdir(self.outside)), ["secret"])  # nothing written outside
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(self.root), "escape")))
        # a ".." that stays inside the root is fine
        r = self.invoke("ls", {"operation": "create", "data": "ok", "metadata": {"fileName": "d/../inside"}})
        self.assertEqual(r.status, 200, r)

    def test_disallowed_root(self):
        d = self.daemon(start=False, apps={"caller": "[App]\n"})
        d.write_component("bad.yaml", component("bad", "bindings.localstorage", [("rootPath", "/proc/self")]))
        d.start()
        self.assert_error(self.invoke("bad", {"operation": "list"}, d=d), 500, "ERR_INVOKE_OUTPUT_BINDING")
        self.assertIn("disallowed", d.log())


@unittest.skipUnless(DRIVER_NAME == "http", "bindings.http")
class HttpTest(BindingCase):
    def setUp(self):
        super().setUp()
        TARGET.requests.clear()
        self.start({"web.yaml": component("web", "bindings.http", [("url", f"http://127.0.0.1:{TARGET.port}/base/"),
                                                                   ("securityToken", "tok"),
                                                                   ("securityTokenHeader", "X-Token")])})

    def test_get_with_path_and_response_metadata(self):
        r = self.invoke("web", {"operation": "get", "metadata": {"path": "/items/1", "X-Extra": "v",
                                                                  "lower": "not-a-header"}})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"method": "GET", "path": "/base/items/1"})
        self.assertEqual(r.headers.get("metadata.statuscode"), "200")
        self.assertEqual(r.headers.get("metadata.status"), "200 OK")
        self.assertEqual(r.headers.get("metadata.x-target"), "yes")
        method, path, headers, body = TARGET.requests[-1]
        self.assertEqual(headers.get("X-Extra"), "v")
        self.assertEqual(headers.get("X-Token"), "tok")
        self.assertNotIn("lower", {k.lower() for k in headers})
        self.assertEqual(body, b"")

    def test_post_sends_the_data_as_json(self):
        r = self.invoke("web", {"operation": "post", "data": {"x": "<y>"}})
        self.assertEqual(r.status, 200, r)
        method, path, headers, body = TARGET.requests[-1]
        self.assertEqual(method, "POST")
        self.assertEqual(body, b'{"x":"\\u003cy\\u003e"}')  # Go's json.Marshal escapes < and >
        self.assertEqual(headers.get("Content-Type"), "application/json; charset=utf-8")
        r = self.invoke("web", {"operation": "create", "data": "s"})
        self.assertEqual(TARGET.requests[-1][0], "POST")
        self.assertEqual(TARGET.requests[-1][3], b'"s"')  # a JSON string keeps its quotes
        for op in ("put", "patch", "delete", "options", "head"):
            r = self.invoke("web", {"operation": op})
            self.assertEqual(r.status, 200, (op, r))
            self.assertEqual(TARGET.requests[-1][0], op.upper())

    def test_non_2xx_is_an_error_with_metadata(self):
        r = self.invoke("web", {"operation": "get", "metadata": {"path": "status/404"}})
        self.assert_error(r, 500, "ERR_INVOKE_OUTPUT_BINDING")
        self.assertEqual(r.headers.get("metadata.statuscode"), "404")
        r = self.invoke("web", {"operation": "get", "metadata": {"path": "status/503", "errorIfNot2XX": "false"}})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("metadata.statuscode"), "503")

    def test_unreachable_url(self):
        d = self.daemon(start=False, apps={"caller": "[App]\n"})
        d.write_component("gone.yaml", component("gone", "bindings.http", [("url", f"http://127.0.0.1:{free_port()}")]))
        d.start()
        self.assert_error(self.invoke("gone", {"operation": "get"}, d=d), 500, "ERR_INVOKE_OUTPUT_BINDING")
        d.assert_running()


def redis(*args):
    """One command through redis-cli: the reply's text, None for a nil reply."""
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(SERVER.port), "--no-raw"] + list(args),
                         capture_output=True, timeout=10, check=True).stdout.decode().strip()
    if out == "(nil)":
        return None
    if out.startswith("(integer) "):
        return int(out.split(" ", 1)[1])
    return json.loads(out)  # a quoted string, escapes as JSON's


@unittest.skipUnless(DRIVER_NAME == "redis", "bindings.redis")
class RedisTest(BindingCase):
    def setUp(self):
        super().setUp()
        self.start({"kv.yaml": component("kv", "bindings.redis", [("redisHost", SERVER.address)])})

    def test_create_get_delete_increment(self):
        key = f"k-{self.uid}"
        r = self.invoke("kv", {"operation": "create", "data": {"a": 1}, "metadata": {"key": key}})
        self.assertEqual(r.status, 204, r)
        self.assertEqual(redis("GET", key), '{"a":1}')
        r = self.invoke("kv", {"operation": "get", "metadata": {"key": key}})
        self.assertEqual((r.status, r.body), (200, b'{"a":1}'))
        r = self.invoke("kv", {"operation": "delete", "metadata": {"key": key}})
        self.assertEqual(r.status, 204, r)
        self.assertIsNone(redis("GET", key))
        for i in (1, 2):
            r = self.invoke("kv", {"operation": "increment", "metadata": {"key": key + "n", "ttlInSeconds": "100"}})
            self.assertEqual(r.status, 204, r)
        self.assertEqual(redis("GET", key + "n"), "2")
        self.assertGreater(redis("TTL", key + "n"), 0)
        self.assert_error(self.invoke("kv", {"operation": "get"}), 500, "ERR_INVOKE_OUTPUT_BINDING")

    def test_create_with_ttl(self):
        key = f"t-{self.uid}"
        self.invoke("kv", {"operation": "create", "data": "v", "metadata": {"key": key, "ttlInSeconds": "60"}})
        self.assertGreater(redis("TTL", key), 0)
        self.assertEqual(redis("GET", key), '"v"')


@unittest.skipUnless(DRIVER_NAME == "postgresql", "bindings.postgresql")
class PostgresTest(BindingCase):
    def setUp(self):
        super().setUp()
        self.start({"db.yaml": component("db", "bindings.postgres", [("connectionString", SERVER.conninfo)])})
        self.table = f"t_{self.uid}"

    def sql(self, op, sql, params=None):
        md = {"sql": sql}
        if params is not None:
            md["params"] = json.dumps(params)
        return self.invoke("db", {"operation": op, "metadata": md})

    def test_exec_query_params(self):
        r = self.sql("exec", f"CREATE TABLE {self.table} (id int, name text, score float8, ok bool, doc jsonb)")
        # daprd answers 200 with an empty body: the binding returned metadata, not nothing
        self.assertEqual((r.status, r.body), (200, b""), r)
        self.assertEqual(r.headers.get("metadata.operation"), "exec")
        for k in ("metadata.start-time", "metadata.end-time", "metadata.duration"):
            self.assertIn(k, r.headers)
        r = self.sql("exec", f"INSERT INTO {self.table} VALUES ($1, $2, $3, $4, $5), ($6, $7, NULL, NULL, NULL)",
                     [1, "a'b", 1.5, True, '{"x": [1]}', 2, None])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers.get("metadata.rows-affected"), "2")
        r = self.sql("query", f"SELECT id, name, score, ok, doc FROM {self.table} ORDER BY id")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), [[1, "a'b", 1.5, True, {"x": [1]}], [2, None, None, None, None]])
        self.assertEqual(r.headers.get("metadata.sql"), f"SELECT id, name, score, ok, doc FROM {self.table} ORDER BY id")
        r = self.sql("query", f"SELECT name FROM {self.table} WHERE id = $1", [1])
        self.assertEqual(r.json(), [["a'b"]])

    def test_errors(self):
        b = self.assert_error(self.sql("query", "SELECT * FROM no_such_table_here"), 500, "ERR_INVOKE_OUTPUT_BINDING")
        self.assertIn("no_such_table_here", b["message"])
        self.assert_error(self.invoke("db", {"operation": "exec"}), 500, "ERR_INVOKE_OUTPUT_BINDING")
        self.assert_error(self.sql("exec", "SELECT 1", "not an array"), 500, "ERR_INVOKE_OUTPUT_BINDING")
        # the connection survives a failed statement
        self.assertEqual(self.sql("query", "SELECT 41 + 1").json(), [[42]])

    def test_close_ends_the_connection_as_daprd_does(self):
        self.assertEqual(self.sql("query", "SELECT 1").status, 200)
        r = self.invoke("db", {"operation": "close"})
        self.assertEqual(r.status, 204, r)
        self.assert_error(self.sql("query", "SELECT 1"), 500, "ERR_INVOKE_OUTPUT_BINDING")
        self.reload()  # unchanged component: still closed
        os.unlink(os.path.join(self.d.config, "components", "db.yaml"))
        self.reload()
        self.d.write_component("db.yaml", component("db", "bindings.postgresql",
                                                     [("connectionString", SERVER.conninfo)]))
        self.reload()
        wait_for(lambda: self.sql("query", "SELECT 1").status == 200, timeout=30, what="a fresh connection")

    def test_server_restart_reconnects(self):
        self.assertEqual(self.sql("query", "SELECT 1").status, 200)
        SERVER.stop()
        try:
            self.assert_error(self.sql("query", "SELECT 1"), 500, "ERR_INVOKE_OUTPUT_BINDING")
        finally:
            SERVER.start()
        wait_for(lambda: self.sql("query", "SELECT 1").status == 200, timeout=30, what="the reconnect")
        self.d.assert_running()


# ---------------------------------------------------------------------------
# Input drivers

def input_component(name, route=None, direction=None):
    extra = []
    if route:
        extra.append(("route", route))
    if direction:
        extra.append(("direction", direction))
    if DRIVER_NAME == "cron":
        return component(name, "bindings.cron", [("schedule", "@every 1s")] + extra)
    return component(name, "bindings.mqtt3", [("url", SERVER.url), ("topic", f"in-{name}")] + extra)


def posts(app, path):
    return [d for d in app.got(path) if d.method == "POST"]


@unittest.skipUnless(INPUT, "input cases")
class InputTest(BindingCase):
    def feed(self, name, data, n=1):
        """Makes the source produce n events (mqtt: publish through an output binding)."""
        if DRIVER_NAME == "cron":
            return
        for i in range(n):
            r = self.invoke(f"{name}-out", {"operation": "create", "data": data if n == 1 else f"{data}-{i}"})
            self.assertEqual(r.status, 204, r)

    def components(self, name, **kw):
        c = {f"{name}.yaml": input_component(name, **kw)}
        if DRIVER_NAME == "mqtt":
            # output only: without `direction` it would be read too (a second reader of the topic)
            c[f"{name}-out.yaml"] = component(f"{name}-out", "bindings.mqtt3",
                                              [("url", SERVER.url), ("topic", f"in-{name}"),
                                               ("direction", "output")])
        return c

    def wait_reading(self, app_id, name):
        def ok():
            md = request(self.d.app_socket(app_id), "GET", "/v1.0/metadata").json()
            return any(b.get("name") == name for b in md.get("inputBindings", []) or [])
        # the metadata API lists readers once they run
        wait_for(lambda: "delivers to " + app_id in self.d.log() and name in self.d.log(), timeout=30,
                 what=f"{app_id} reading {name}")

    def test_probe_and_delivery(self):
        app = self.app("reader", decide=lambda d: Reply(200) if d.method == "OPTIONS" else None)
        self.start(self.components("ev"), apps={"reader": app})
        self.wait_reading("reader", "ev")
        self.feed("ev", {"n": 1})
        got = app.wait_count(1, "/ev", pred=lambda d: d.method == "POST")
        d = got[0]
        self.assertEqual(d.header("Content-Type"), "application/json")
        self.assertTrue(any(o.method == "OPTIONS" and o.path == "/ev" for o in app.got()))
        if DRIVER_NAME == "cron":
            self.assertEqual(d.body, b"")
            self.assertEqual(d.header("timeZone"), "Local")
            self.assertRegex(d.header("readTimeUTC"), r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? \+0000 UTC$")
        else:
            self.assertEqual(json.loads(d.body), {"n": 1})
            self.assertEqual(d.header("topic"), "in-ev")

    def test_route_and_direction_skip_the_probe(self):
        app = self.app("reader", decide=lambda d: Reply(404) if d.method == "OPTIONS" else None)
        self.start(self.components("rt", route="/custom", direction="input"), apps={"reader": app})
        self.wait_reading("reader", "rt")
        self.feed("rt", "x")
        app.wait_count(1, "/custom", pred=lambda d: d.method == "POST")
        self.assertFalse(any(o.method == "OPTIONS" for o in app.got()))

    def test_app_answering_404_to_the_probe_is_not_called(self):
        app = self.app("reader", decide=lambda d: Reply(404) if d.method == "OPTIONS" else None)
        self.start(self.components("nr"), apps={"reader": app})
        wait_for(lambda: "does not read input binding nr" in self.d.log(), timeout=30, what="probe refused")
        self.feed("nr", "x")
        time.sleep(1.5)
        self.assertEqual(posts(app, "/nr"), [])

    def test_app_answering_500_gets_the_event_again(self):
        if DRIVER_NAME == "cron":
            self.skipTest("cron cannot redeliver a tick: daprd drops the handler's error (checked: next tick)")
        fails = {"n": 0}

        def decide(d):
            if d.method == "OPTIONS":
                return Reply(200)
            if fails["n"] < 2:
                fails["n"] += 1
                return Reply(500)
            return None

        app = self.app("reader", decide=decide)
        self.start(self.components("rd"), apps={"reader": app})
        self.wait_reading("reader", "rd")
        self.feed("rd", "again")
        got = app.wait_count(3, "/rd", pred=lambda d: d.method == "POST", timeout=30)
        self.assertTrue(all(d.body == b'"again"' for d in got[:3]), got)


@unittest.skipUnless(DRIVER_NAME == "cron", "bindings.cron")
class CronTest(BindingCase):
    def test_fires_every_second_and_stops_when_removed(self):
        app = self.app("reader", decide=lambda d: Reply(200) if d.method == "OPTIONS" else None)
        self.start({"tick.yaml": input_component("tick")}, apps={"reader": app})
        app.wait_count(2, "/tick", pred=lambda d: d.method == "POST", timeout=30)
        os.unlink(os.path.join(self.d.config, "components", "tick.yaml"))
        self.reload()
        n = len(posts(app, "/tick"))
        time.sleep(2.5)
        # at most one tick that was already out when the reload came
        self.assertLessEqual(len(posts(app, "/tick")), n + 1)
        self.d.assert_running()

    def test_bad_schedule_is_a_config_error(self):
        d = self.daemon(start=False, apps={"caller": "[App]\n"})
        d.write_component("bad.yaml", component("bad", "bindings.cron", [("schedule", "61 * * * * *")]))
        d.start()
        self.assertIn("invalid schedule format", d.log())


@unittest.skipUnless(DRIVER_NAME == "mqtt", "bindings.mqtt3")
class MqttConcurrencyTest(BindingCase):
    def test_max_concurrency_is_honoured(self):
        """Input events take the app's MaxConcurrency= slots: with 1, one POST at a time."""
        app = self.app("reader", decide=lambda d: Reply(200) if d.method == "OPTIONS" else None, delay=0.1)
        self.start(InputTest.components(self, "mc"), apps={"reader": app}, app_extra="MaxConcurrency=1\n")
        InputTest.wait_reading(self, "reader", "mc")
        InputTest.feed(self, "mc", "m", n=8)
        app.wait_count(8, "/mc", pred=lambda d: d.method == "POST", timeout=60)
        self.assertEqual(app.max_active, 1)


@unittest.skipUnless(DRIVER_NAME == "mqtt", "bindings.mqtt3")
class MqttCrashTest(BindingCase):
    def test_sigkill_loses_nothing(self):
        """Messages published while the app is slow survive a SIGKILL of the daemon; duplicates counted."""
        app = self.app("reader", decide=lambda d: Reply(200) if d.method == "OPTIONS" else None)
        app.delay = 0.02
        comps = InputTest.components(self, "crash")
        d = self.start(comps, apps={"reader": app})
        InputTest.wait_reading(self, "reader", "crash")
        total = 200
        InputTest.feed(self, "crash", "m", n=total)
        app.wait_count(20, "/crash", pred=lambda x: x.method == "POST", timeout=30)
        d.signal(signal.SIGKILL)
        d.proc.wait()
        d.start()
        self.wait_count_unique(app, total)
        bodies = [x.body for x in posts(app, "/crash")]
        dups = len(bodies) - len(set(bodies))
        print(f"\nmqtt input across SIGKILL: {total} published, {len(set(bodies))} delivered, {dups} duplicates",
              file=sys.stderr)
        self.assertEqual(set(bodies), {json.dumps(f"m-{i}").encode() for i in range(total)})

    def wait_count_unique(self, app, n):
        app.wait(lambda s: len({x.body for x in posts(s, "/crash")}) >= n, timeout=60, what=f"{n} distinct events")


# ---------------------------------------------------------------------------

def start_server():
    import servers
    if DRIVER_NAME == "redis":
        return servers.RedisServer()
    if DRIVER_NAME == "mqtt":
        return servers.MosquittoServer()
    if DRIVER_NAME == "postgresql":
        return servers.PostgresServer()
    return None


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def main():
    global SERVER, ROOT_DIR, TARGET
    if DRIVER_NAME not in ("http", "localstorage", "redis", "mqtt", "cron", "postgresql"):
        print(f"unknown MOORING_BINDING_DRIVER={DRIVER_NAME!r}", file=sys.stderr)
        sys.exit(1)
    harness.require("systemd-socket-activate")
    if not os.path.exists(harness.MOORINGD):
        skip_or_fail(f"{harness.MOORINGD} not built")
    signal.signal(signal.SIGTERM, _terminate)
    ROOT_DIR = tempfile.mkdtemp(prefix="mooring-ls-")
    os.chmod(ROOT_DIR, 0o755)
    TARGET = Target()
    server = start_server()
    try:
        if server is not None:
            server.start()
            SERVER = server
        prog = unittest.main(argv=[sys.argv[0]] + sys.argv[1:], exit=False, verbosity=2)
    finally:
        if server is not None:
            server.close()
        TARGET.stop()
        shutil.rmtree(ROOT_DIR, True)
    r = prog.result
    if r.skipped and os.environ.get("MOORING_TEST_NO_SKIP") == "1":
        # skips by driver (skipUnless) are the suite's shape; a skipTest() inside a case is not
        bad = [(t, why) for t, why in r.skipped if "cases" not in why and not why.startswith("bindings.")
               and not why.startswith("cron cannot")]
        for t, why in bad:
            print(f"FAIL (not skippable in CI): {t.id()}: {why}", file=sys.stderr)
        if bad:
            sys.exit(1)
    sys.exit(0 if r.wasSuccessful() and r.testsRun > 0 else 1)


if __name__ == "__main__":
    main()
