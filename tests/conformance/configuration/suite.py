#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Configuration API conformance: one suite, run unchanged against every configuration store.

MOORING_CONFIGURATION_DRIVER (sqlite, postgresql, redis) picks the driver. Items are
written behind the daemon's back, the way an operator would: with another SQLite
connection, with SQL in PostgreSQL (a trigger sends pg_notify, as Dapr's docs set it up),
with SET/DEL in Redis. The app `a` is a real HTTP server on a Unix socket that records
what the daemon POSTs to /configuration/{store}/{key}.

Expected answers are daprd 1.14's (GET /v1.0/configuration/{store}, .../subscribe,
.../{id}/unsubscribe; the project's Dapr HTTP API reference 7.4).
"""

import http.server
import json
import os
import signal
import socketserver
import sqlite3
import sys
import threading
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (os.path.join(HERE, "..", "..", "integration"), os.path.join(HERE, "..", "..", "fixtures")):
    _p = os.path.normpath(_p)
    if _p not in sys.path:
        sys.path.insert(0, _p)

import harness  # noqa: E402
from harness import DaemonTestCase, request, skip_or_fail, wait_for  # noqa: E402

DRIVER_NAME = os.environ.get("MOORING_CONFIGURATION_DRIVER", "sqlite")
SERVER = None
TABLE = "cfg_" + uuid.uuid4().hex[:8]


class Backend:
    """Writes items where the driver under test reads them."""

    def __init__(self, tmp):
        self.tmp = tmp

    def metadata(self):
        if DRIVER_NAME == "sqlite":
            return [("connectionString", os.path.join(self.tmp, "cfg.db")), ("pollInterval", "50ms")]
        if DRIVER_NAME == "postgresql":
            return [("connectionString", SERVER.conninfo), ("table", TABLE)]
        return [("redisHost", SERVER.address)]

    def set(self, key, value, version=""):
        if DRIVER_NAME == "sqlite":
            with sqlite3.connect(os.path.join(self.tmp, "cfg.db")) as db:
                db.execute("INSERT INTO configuration (key, value, version) VALUES (?, ?, ?) "
                           "ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version",
                           (key, value, version))
        elif DRIVER_NAME == "postgresql":
            SERVER.psql(f"INSERT INTO {TABLE} (key, value, version, metadata) VALUES "
                        f"('{key}', '{value}', '{version}', '{{}}') ON CONFLICT (key) DO UPDATE SET "
                        f"value = excluded.value, version = excluded.version")
        else:
            SERVER.command("SET", key, f"{value}||{version}" if version else value)

    def delete(self, key):
        if DRIVER_NAME == "sqlite":
            with sqlite3.connect(os.path.join(self.tmp, "cfg.db")) as db:
                db.execute("DELETE FROM configuration WHERE key = ?", (key,))
        elif DRIVER_NAME == "postgresql":
            SERVER.psql(f"DELETE FROM {TABLE} WHERE key = '{key}'")
        else:
            SERVER.command("DEL", key)


def postgres_setup():
    # the table and trigger Dapr's docs have the operator create
    SERVER.psql(f"""
        CREATE TABLE {TABLE} (key text PRIMARY KEY, value text NOT NULL, version text NOT NULL, metadata json);
        CREATE OR REPLACE FUNCTION {TABLE}_notify() RETURNS trigger AS $$
        DECLARE data json; notification json;
        BEGIN
          IF (TG_OP = 'DELETE') THEN data = row_to_json(OLD); ELSE data = row_to_json(NEW); END IF;
          notification = json_build_object('table', TG_TABLE_NAME, 'action', TG_OP, 'data', data);
          PERFORM pg_notify('{TABLE}_chan', notification::text);
          RETURN NULL;
        END; $$ LANGUAGE plpgsql;
        CREATE TRIGGER {TABLE}_trg AFTER INSERT OR UPDATE OR DELETE ON {TABLE}
          FOR EACH ROW EXECUTE PROCEDURE {TABLE}_notify();""")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def address_string(self):
        return "app"

    def do_POST(self):
        app = self.server.app
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with app.cond:
            app.posts.append((self.path, self.headers.get("Content-Type"), json.loads(body)))
            status = app.status
            app.cond.notify_all()
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        self.send_response(200 if self.path == "/healthz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class App:
    """The app: records POSTs; answers them with .status."""

    def __init__(self, path):
        self.path = path
        self.posts = []
        self.status = 200
        self.cond = threading.Condition()
        self.server = _Server(path, _Handler)
        self.server.app = self
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def wait_post(self, pred, what, timeout=20):
        """The first recorded POST (path, type, body) that pred accepts; waits for it."""
        with self.cond:
            ok = self.cond.wait_for(lambda: any(pred(p) for p in self.posts), timeout)
            if not ok:
                raise AssertionError(f"no POST {what} within {timeout}s; got {self.posts}")
            return next(p for p in self.posts if pred(p))


def component(name, metadata, scopes=None):
    meta = "".join(f"  - name: {k}\n    value: {json.dumps(v)}\n" for k, v in metadata)
    sc = f"scopes: [{', '.join(scopes)}]\n" if scopes else ""
    return (f"apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\n"
            f"spec:\n  type: configuration.{DRIVER_NAME}\n  version: v1\n  metadata:\n{meta}{sc}")


class ConfigCase(DaemonTestCase):
    def setUp(self):
        super().setUp()
        d = self.daemon(start=False)
        self.backend = Backend(d.tmp)
        if DRIVER_NAME == "sqlite":  # the table exists once the store opened; make it now for set()
            with sqlite3.connect(os.path.join(d.tmp, "cfg.db")) as db:
                db.execute("CREATE TABLE IF NOT EXISTS configuration (key TEXT PRIMARY KEY NOT NULL, "
                           "value TEXT NOT NULL, version TEXT NOT NULL DEFAULT '', metadata TEXT NOT NULL "
                           "DEFAULT '{}')")
        self.app = App(os.path.join(d.tmp, "app-a.sock"))
        self.addCleanup(self.app.stop)
        d.write_app("a", f"[App]\nAppAddress=unix:{self.app.path}\n")
        d.write_app("b", "[App]\n")  # no channel
        d.write_component("store.yaml", component("store", self.backend.metadata()))
        d.write_component("scoped.yaml", component("scoped", self.backend.metadata(), scopes=["b"]))
        d.start()
        self.d = d
        self.p = f"k{uuid.uuid4().hex[:8]}"  # this test's key prefix

    def get(self, path, app="a"):
        return request(self.d.app_socket(app), "GET", path)

    def sub_query(self):
        q = "".join(f"&key={self.p}{k}" for k in ("a", "c"))[1:]
        if DRIVER_NAME == "postgresql":
            q += f"&metadata.pgNotifyChannel={TABLE}_chan"
        return q

    def assert_error(self, r, status, code):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.json().get("errorCode"), code, r.json())


class GetTest(ConfigCase):
    def test_get(self):
        p = self.p
        self.backend.set(p + "a", "one", "v1")
        self.backend.set(p + "b", "two")
        r = self.get(f"/v1.0/configuration/store?key={p}a&key={p}b")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {p + "a": {"value": "one", "version": "v1"}, p + "b": {"value": "two"}})
        r = self.get(f"/v1.0-alpha1/configuration/store?key={p}a")
        self.assertEqual(r.json(), {p + "a": {"value": "one", "version": "v1"}})
        # no key: every item
        r = self.get("/v1.0/configuration/store")
        self.assertEqual(r.status, 200, r)
        self.assertIn(p + "a", r.json())
        self.assertIn(p + "b", r.json())
        # nothing found: 204, no body
        r = self.get(f"/v1.0/configuration/store?key={p}missing")
        self.assertEqual((r.status, r.body), (204, b""))

    def test_errors(self):
        e = self.get("/v1.0/configuration/nope")
        self.assert_error(e, 400, "ERR_CONFIGURATION_STORE_NOT_FOUND")
        self.assert_error(self.get("/v1.0/configuration/scoped"), 400, "ERR_CONFIGURATION_STORE_NOT_FOUND")
        self.assert_error(self.get("/v1.0/configuration/nope/subscribe"), 400, "ERR_CONFIGURATION_STORE_NOT_FOUND")
        # an app with no channel cannot be told of changes (daprd: ERR_APP_CHANNEL_NIL)
        self.assert_error(self.get("/v1.0/configuration/store/subscribe", app="b"), 500, "ERR_APP_CHANNEL_NIL")
        # unsubscribing what is not there: daprd's {"message"} with 500
        r = self.get("/v1.0/configuration/store/no-such-id/unsubscribe")
        self.assertEqual(r.status, 500, r)
        self.assertIn("no-such-id", r.json()["message"])
        self.assertNotIn("ok", r.json())
        if DRIVER_NAME == "postgresql":
            self.assert_error(self.get("/v1.0/configuration/store/subscribe?key=x"), 500,
                              "ERR_CONFIGURATION_SUBSCRIBE")


class SubscribeTest(ConfigCase):
    def test_changes_reach_the_app_until_unsubscribed(self):
        p = self.p
        self.backend.set(p + "c", "before")  # watched, but unchanged after subscribing: never posted
        r = self.get(f"/v1.0/configuration/store/subscribe?{self.sub_query()}")
        self.assertEqual(r.status, 200, r)
        sid = r.json()["id"]
        self.assertRegex(sid, r"^[0-9a-f-]{36}$")
        self.backend.set(p + "b", "not watched")
        self.backend.set(p + "a", "1", "v1")
        path, ctype, body = self.app.wait_post(lambda x: x[0] == f"/configuration/store/{p}a", "for a")
        self.assertEqual(ctype, "application/json")
        self.assertEqual(body, {"id": sid, "items": {p + "a": {"value": "1", "version": "v1"}}})
        self.backend.set(p + "a", "2", "v2")
        self.app.wait_post(lambda x: x[2]["items"].get(p + "a", {}) == {"value": "2", "version": "v2"}, "for a=2")
        # only watched keys are posted
        self.assertFalse([x for x in self.app.posts if x[0].endswith(p + "b")], self.app.posts)
        # another app cannot end it
        r = self.get(f"/v1.0/configuration/store/{sid}/unsubscribe", app="b")
        self.assertEqual(r.status, 500, r)
        r = self.get(f"/v1.0/configuration/store/{sid}/unsubscribe")
        self.assertEqual((r.status, r.json()), (200, {"ok": True}))
        # after it ended, a change of a is not posted: a second subscription on c shows the daemon
        # got past the change of a
        r = self.get(f"/v1.0/configuration/store/subscribe?key={p}c" +
                     (f"&metadata.pgNotifyChannel={TABLE}_chan" if DRIVER_NAME == "postgresql" else ""))
        self.assertEqual(r.status, 200, r)
        n_before = len([x for x in self.app.posts if x[0].endswith(p + "a")])
        self.backend.set(p + "a", "3", "v3")
        self.backend.set(p + "c", "sentinel")
        self.app.wait_post(lambda x: x[0] == f"/configuration/store/{p}c", "for the sentinel")
        self.assertEqual(len([x for x in self.app.posts if x[0].endswith(p + "a")]), n_before, self.app.posts)
        # as daprd: a subscription starts with no post of what is already there
        self.assertFalse([x for x in self.app.posts if x[2]["items"].get(p + "c", {}).get("value") == "before"],
                         self.app.posts)

    def test_deletion(self):
        if DRIVER_NAME == "postgresql":
            return  # a trigger reports the old row on DELETE: Dapr's store sees a change, not a deletion
        p = self.p
        self.backend.set(p + "a", "1")
        r = self.get(f"/v1.0/configuration/store/subscribe?key={p}a")
        self.assertEqual(r.status, 200, r)
        sid = r.json()["id"]
        self.backend.delete(p + "a")
        _, _, body = self.app.wait_post(lambda x: x[2]["items"] == {p + "a": None}, "of the deletion")
        self.assertEqual(body["id"], sid)

    def test_app_not_answering_200_is_retried(self):
        p = self.p
        self.app.status = 500
        r = self.get(f"/v1.0/configuration/store/subscribe?{self.sub_query()}")
        self.assertEqual(r.status, 200, r)
        self.backend.set(p + "a", "x")
        wait_for(lambda: len([x for x in self.app.posts if x[0].endswith(p + "a")]) >= 2, timeout=20,
                 what="a retried delivery")
        self.app.status = 200
        self.d.assert_running()


if DRIVER_NAME in ("redis", "postgresql"):
    class ServerRestartTest(ConfigCase):
        def test_server_goes_away_and_comes_back(self):
            p = self.p
            r = self.get(f"/v1.0/configuration/store/subscribe?{self.sub_query()}")
            self.assertEqual(r.status, 200, r)
            SERVER.stop()
            try:
                self.assert_error(self.get(f"/v1.0/configuration/store?key={p}a"), 500, "ERR_CONFIGURATION_GET")
            finally:
                SERVER.start()
            # the subscription outlives the outage: the store listens again by itself
            def changed():
                self.backend.set(p + "a", "after", "v9")
                try:
                    self.app.wait_post(lambda x: x[2]["items"].get(p + "a", {}).get("value") == "after",
                                       "after the restart", timeout=1)
                    return True
                except AssertionError:
                    return False
            wait_for(changed, timeout=30, interval=0.2, what="a change delivered after the restart")
            r = self.get(f"/v1.0/configuration/store?key={p}a")
            self.assertEqual(r.json(), {p + "a": {"value": "after", "version": "v9"}})


if DRIVER_NAME == "sqlite":
    class DefaultStoreTest(DaemonTestCase):
        def test_configstore_without_components(self):
            d = self.daemon(apps={"a": "[App]\n"})
            r = request(d.app_socket("a"), "GET", "/v1.0/configuration/configstore")
            self.assertEqual((r.status, r.body), (204, b""))
            with sqlite3.connect(os.path.join(d.state, "configuration.db")) as db:
                db.execute("INSERT INTO configuration (key, value, version) VALUES ('k', 'v', '1')")
            r = request(d.app_socket("a"), "GET", "/v1.0/configuration/configstore?key=k")
            self.assertEqual(r.json(), {"k": {"value": "v", "version": "1"}})


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def main():
    global SERVER
    if DRIVER_NAME not in ("sqlite", "postgresql", "redis"):
        print(f"unknown MOORING_CONFIGURATION_DRIVER={DRIVER_NAME!r}", file=sys.stderr)
        sys.exit(1)
    harness.require("systemd-socket-activate")
    if not os.path.exists(harness.MOORINGD):
        skip_or_fail(f"{harness.MOORINGD} not built")
    signal.signal(signal.SIGTERM, _terminate)
    server = None
    if DRIVER_NAME != "sqlite":
        import servers
        server = servers.PostgresServer() if DRIVER_NAME == "postgresql" else servers.RedisServer()
    try:
        if server is not None:
            server.start()
            SERVER = server
            if DRIVER_NAME == "postgresql":
                postgres_setup()
        prog = unittest.main(argv=[sys.argv[0]] + sys.argv[1:], exit=False, verbosity=2)
    finally:
        if server is not None:
            server.close()
    r = prog.result
    sys.exit(0 if r.wasSuccessful() and r.testsRun > 0 else 1)


if __name__ == "__main__":
    main()
