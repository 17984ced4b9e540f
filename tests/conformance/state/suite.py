#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""State API conformance: one suite, run unchanged against every state driver.

MOORING_STATE_DRIVER (in-memory, sqlite, postgresql, redis) picks the driver
from DRIVERS below. The real mooringd is started per test with two apps, `a`
and `b`, and these components, all of the driver's type:

- `store`:  the store under test (default keyPrefix appid: keys are `a||k`);
- `scoped`: `scopes: [a]`, invisible to `b`;
- `shared`: keyPrefix none: `a` and `b` see the same keys;
- `named`:  keyPrefix name: keys are `named||k`, also shared by apps.

Each app talks to its own Unix socket, like a Dapr SDK talks to its sidecar.
Server-backed drivers get a private server from tests/fixtures/servers.py for
the whole run (stopped and started again by the restart case).

Expected behaviour is Dapr 1.14's HTTP state API (the project's Dapr HTTP API
reference, section 3, which follows the release-1.14 code). Cases declare the
driver features they need (@needs) and are skipped visibly for drivers
without them; a driver not built into mooringd skips the whole suite (exit 77,
or a failure with MOORING_TEST_NO_SKIP=1).
"""

import functools
import json
import os
import signal
import sys
import threading
import time
import unittest
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (os.path.join(HERE, "..", "..", "integration"), os.path.join(HERE, "..", "..", "fixtures")):
    _p = os.path.normpath(_p)
    if _p not in sys.path:
        sys.path.insert(0, _p)

import harness  # noqa: E402
from harness import DaemonTestCase, UnixHTTPConnection, request, skip_or_fail  # noqa: E402

# Features: the driver's declared capabilities (ETAG, TRANSACTIONAL, TTL) plus DURABLE: its data
# survives a restart of the daemon.
ETAG, TRANSACTIONAL, TTL, DURABLE = "etag", "transactional", "ttl", "durable"
# Dapr's state.redis takes an etag on a key that does not exist as no etag at all (its Lua
# scripts check the version only of a key that is there); its SQL and in-memory stores answer
# a mismatch. Each driver matches its Dapr namesake.
ETAG_ON_MISSING_KEY_OK = "etag-on-missing-key-ok"
QUERY = "query"  # Dapr's QUERY_API

# What each driver is: its component type, its metadata (given the daemon's temp dir
# and the server fixture, if any), the features it must support, and its server.
DRIVERS = {
    "in-memory": {
        "type": "state.in-memory",
        "metadata": lambda tmp, name, server: [],
        "features": {ETAG, TRANSACTIONAL, TTL},
        "server": None,
    },
    "sqlite": {
        "type": "state.sqlite",
        "metadata": lambda tmp, name, server: [("connectionString", os.path.join(tmp, f"{name}.db"))],
        "fresh": lambda tmp, name, server: [("connectionString", os.path.join(tmp, f"{name}.db"))],
        "features": {ETAG, TRANSACTIONAL, TTL, DURABLE, QUERY},
        "server": None,
    },
    "postgresql": {
        "type": "state.postgresql",
        "metadata": lambda tmp, name, server: [("connectionString", server.conninfo)],
        # an empty backend of its own, for the startup case
        "fresh": lambda tmp, name, server: [("connectionString", server.create_database(name))],
        "features": {ETAG, TRANSACTIONAL, TTL, DURABLE, QUERY},
        "server": "postgresql",
        "persistent": True,   # data survives a server restart
    },
    "redis": {
        "type": "state.redis",
        "metadata": lambda tmp, name, server: server.metadata,  # with TLS under MOORING_REDIS_TLS=1
        "features": {ETAG, TRANSACTIONAL, TTL, DURABLE, ETAG_ON_MISSING_KEY_OK},
        "server": "redis",
        "persistent": False,  # the fixture runs without persistence
    },
}

DRIVER_NAME = os.environ.get("MOORING_STATE_DRIVER", "in-memory")
DRIVER = DRIVERS.get(DRIVER_NAME)
SERVER = None  # the server fixture, started by main()

COMPONENT = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {name}
spec:
  type: {type}
  version: v1
{metadata}{scopes}"""

CLIENT_TIMEOUT = 30.0


def yaml_str(s):
    return json.dumps(s)  # a JSON string is a valid YAML double-quoted scalar


def component(tmp, name, extra=(), scopes=None, metadata=None):
    """The YAML of a component of the driver under test; tmp is the daemon's temp dir."""
    items = list(metadata if metadata is not None else DRIVER["metadata"](tmp, name, SERVER)) + list(extra)
    meta = ""
    if items:
        meta = "  metadata:\n" + "".join(f"  - name: {k}\n    value: {yaml_str(v)}\n" for k, v in items)
    sc = f"scopes: [{', '.join(scopes)}]\n" if scopes else ""
    return COMPONENT.format(name=name, type=DRIVER["type"], metadata=meta, scopes=sc)


def needs(*features):
    """Marks a case as needing driver features; it is skipped, visibly, otherwise."""
    def deco(fn):
        @functools.wraps(fn)
        def wrapper(self, *a, **kw):
            for f in features:
                if f not in DRIVER["features"]:
                    self.skipTest(f"driver lacks {f}")
            return fn(self, *a, **kw)
        wrapper.features = features
        return wrapper
    return deco


def q(key):
    return urllib.parse.quote(key, safe="")


class StateCase(DaemonTestCase):
    """A fresh daemon per test; helpers speak the state API as an app."""

    def setUp(self):
        super().setUp()
        d = self.daemon(start=False, apps={"a": "[App]\n", "b": "[App]\n"})
        d.write_component("store.yaml", component(d.tmp, "store"))
        d.write_component("scoped.yaml", component(d.tmp, "scoped", scopes=["a"]))
        d.write_component("shared.yaml", component(d.tmp, "shared", extra=[("keyPrefix", "none")]))
        d.write_component("named.yaml", component(d.tmp, "named", extra=[("keyPrefix", "name")]))
        d.start()
        self.d = d
        self.tag = f"{self._testMethodName[5:]}-{uuid.uuid4().hex[:8]}"

    def key(self, name="k"):
        """A key unique to this test (server-backed stores are shared by all tests of a run)."""
        return f"{self.tag}-{name}"

    # -- raw requests --
    def req(self, method, path, body=None, app="a", headers=None, timeout=CLIENT_TIMEOUT):
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        h = dict(headers or {})
        if body is not None:
            h.setdefault("Content-Type", "application/json")
        conn = UnixHTTPConnection(self.d.app_socket(app), timeout=timeout)
        try:
            return request(None, method, path, body=body, headers=h, conn=conn)
        finally:
            conn.close()

    def save(self, items, store="store", app="a", query="", method="POST"):
        return self.req(method, f"/v1.0/state/{store}{query}", body=items, app=app)

    def save_ok(self, key, value, store="store", app="a", **item):
        r = self.save([dict(key=key, value=value, **item)], store=store, app=app)
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.body, b"")
        return r

    def get(self, key, store="store", app="a", query=""):
        return self.req("GET", f"/v1.0/state/{store}/{q(key)}{query}", app=app)

    def get_value(self, key, store="store", app="a"):
        """(value, etag) of a key that must exist."""
        r = self.get(key, store=store, app=app)
        self.assertEqual(r.status, 200, f"GET {key}: {r}")
        return r.json(), r.headers.get("etag")

    def assert_absent(self, key, store="store", app="a"):
        r = self.get(key, store=store, app=app)
        self.assertEqual(r.status, 204, f"GET {key} should find nothing: {r}")
        self.assertEqual(r.body, b"")

    def delete(self, key, store="store", app="a", etag=None, query=""):
        h = {"If-Match": etag} if etag is not None else None
        return self.req("DELETE", f"/v1.0/state/{store}/{q(key)}{query}", app=app, headers=h)

    def bulk(self, body, store="store", app="a"):
        return self.req("POST", f"/v1.0/state/{store}/bulk", body=body, app=app)

    def tx(self, operations, store="store", app="a", **extra):
        return self.req("POST", f"/v1.0/state/{store}/transaction", body=dict(operations=operations, **extra),
                        app=app)

    def assert_error(self, r, status, code):
        self.assertEqual(r.status, status, r)
        self.assertTrue(r.headers.get("content-type", "").startswith("application/json"), r.headers)
        body = r.json()
        self.assertEqual(body.get("errorCode"), code, body)
        self.assertIsInstance(body.get("message"), str, body)
        self.assertNotEqual(body["message"], "", body)
        return body


# ---------------------------------------------------------------------------

class CrudTest(StateCase):
    VALUES = [
        {"b": [1, 2, {"c": None}], "a": "x"},
        "text",
        42,
        -3.5,
        [1, "two", None, True, {"n": {"m": []}}],
        {"deep": {"er": {"est": {"ok": [[]]}}}},
        True,
        "",
    ]

    def test_save_get_roundtrip(self):
        for i, v in enumerate(self.VALUES):
            k = self.key(str(i))
            self.save_ok(k, v)
            r = self.get(k)
            self.assertEqual(r.status, 200, (v, r))
            self.assertTrue(r.headers.get("content-type", "").startswith("application/json"), r.headers)
            self.assertEqual(r.json(), v)
            self.assertTrue(r.headers.get("etag"), f"no ETag header for {v!r}: {r.headers}")

    def test_string_value_stays_a_json_string(self):
        k = self.key()
        self.save_ok(k, "text")
        r = self.get(k)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b'"text"')

    def test_save_with_put_and_several_items(self):
        k1, k2 = self.key("1"), self.key("2")
        r = self.save([{"key": k1, "value": 1}, {"key": k2, "value": {"two": 2}}], method="PUT")
        self.assertEqual(r.status, 204, r)
        self.assertEqual(self.get_value(k1)[0], 1)
        self.assertEqual(self.get_value(k2)[0], {"two": 2})

    def test_overwrite(self):
        k = self.key()
        self.save_ok(k, {"v": 1})
        self.save_ok(k, {"v": 2})
        self.assertEqual(self.get_value(k)[0], {"v": 2})

    def test_get_missing(self):
        self.assert_absent(self.key("never-saved"))

    def test_get_with_consistency(self):
        k = self.key()
        self.save_ok(k, 7, options={"consistency": "strong"})
        for c in ("strong", "eventual"):
            r = self.get(k, query=f"?consistency={c}")
            self.assertEqual((r.status, r.json()), (200, 7))

    def test_delete(self):
        k = self.key()
        self.save_ok(k, "gone soon")
        r = self.delete(k)
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.body, b"")
        self.assert_absent(k)

    def test_delete_missing(self):
        r = self.delete(self.key("never-saved"))
        self.assertEqual(r.status, 204, r)

    def test_save_empty_array(self):
        r = self.save([])
        self.assertEqual(r.status, 204, r)

    def test_keys_with_odd_characters(self):
        for name in ("a b", "slash/in/it", "pct%25", "ü-é-😀", "q?x=1&y", "#hash"):
            k = self.key(name)
            self.save_ok(k, name)
            self.assertEqual(self.get_value(k)[0], name)
            r = self.bulk({"keys": [k]})
            self.assertEqual(r.status, 200, r)
            self.assertEqual([i["key"] for i in r.json()], [k])
            self.assertEqual(self.delete(k).status, 204)
            self.assert_absent(k)

    def test_keys_are_case_sensitive(self):
        lower, upper = self.key("k"), self.key("K")
        self.save_ok(lower, "lower")
        self.save_ok(upper, "upper")
        self.assertEqual(self.get_value(lower)[0], "lower")
        self.assertEqual(self.get_value(upper)[0], "upper")

    @needs(DURABLE)
    def test_survives_daemon_restart(self):
        k = self.key()
        self.save_ok(k, {"durable": True})
        _, etag = self.get_value(k)
        self.assertEqual(self.d.stop(), 0)
        self.d.notify.messages.clear()
        self.d.start()
        self.assertEqual(self.get_value(k), ({"durable": True}, etag))



class StartupTest(DaemonTestCase):
    def test_many_stores_on_one_fresh_backend(self):
        """Six stores sharing one empty backend (one database, one server) set themselves up
        concurrently: each works from the first request on."""
        d = self.daemon(start=False, apps={"a": "[App]\n"})
        names = [f"s{i}" for i in range(6)]
        fresh = DRIVER.get("fresh")
        shared = fresh(d.tmp, f"fresh_{uuid.uuid4().hex[:8]}", SERVER) if fresh else None
        for n in names:
            d.write_component(f"{n}.yaml", component(d.tmp, n, metadata=shared))
        d.start()
        for n in names:
            r = request(d.app_socket("a"), "POST", f"/v1.0/state/{n}", body=b'[{"key":"k","value":1}]',
                        headers={"Content-Type": "application/json"})
            self.assertEqual(r.status, 204, f"{n}: {r}")


class BulkTest(StateCase):
    def test_bulk_get(self):
        k1, k2, k3, missing = self.key("1"), self.key("2"), self.key("3"), self.key("missing")
        self.save([{"key": k1, "value": {"one": 1}}, {"key": k2, "value": "two"}, {"key": k3, "value": 3}])
        r = self.bulk({"keys": [k1, k2, missing, k3], "parallelism": 2})
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.headers.get("content-type", "").startswith("application/json"), r.headers)
        items = r.json()
        self.assertIsInstance(items, list)
        self.assertEqual(sorted(i["key"] for i in items), sorted([k1, k2, k3, missing]))
        by_key = {i["key"]: i for i in items}
        for k, v in ((k1, {"one": 1}), (k2, "two"), (k3, 3)):
            self.assertIn("data", by_key[k], by_key[k])
            self.assertEqual(by_key[k]["data"], v)
            self.assertNotIn("value", by_key[k])
            self.assertIsInstance(by_key[k].get("etag"), str)
            self.assertEqual(by_key[k]["etag"], self.get_value(k)[1], "bulk etag differs from GET's ETag")
            self.assertNotIn("error", by_key[k])
        self.assertNotIn("data", by_key[missing])
        self.assertNotIn("error", by_key[missing])

    def test_bulk_get_no_keys(self):
        for body in ({"keys": []}, {"keys": [], "parallelism": 10}):
            r = self.bulk(body)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json(), [])

    def test_bulk_get_put_verb(self):
        k = self.key()
        self.save_ok(k, 1)
        r = self.req("PUT", "/v1.0/state/store/bulk", body={"keys": [k]})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()[0]["data"], 1)

    def test_bulk_get_many(self):
        keys = [self.key(str(i)) for i in range(50)]
        self.assertEqual(self.save([{"key": k, "value": i} for i, k in enumerate(keys)]).status, 204)
        r = self.bulk({"keys": keys, "parallelism": 4})
        self.assertEqual(r.status, 200, r)
        self.assertEqual({i["key"]: i["data"] for i in r.json()}, {k: i for i, k in enumerate(keys)})


class EtagTest(StateCase):
    @needs(ETAG)
    def test_update_with_etag(self):
        k = self.key()
        self.save_ok(k, "v1")
        _, e1 = self.get_value(k)
        self.assertTrue(e1)
        self.save_ok(k, "v2", etag=e1)
        v, e2 = self.get_value(k)
        self.assertEqual(v, "v2")
        self.assertTrue(e2)
        self.assertNotEqual(e2, e1, "a write must produce a new etag")
        # e1 is stale now
        r = self.save([{"key": k, "value": "v3", "etag": e1}])
        self.assert_error(r, 409, "ERR_STATE_SAVE")
        self.assertEqual(self.get_value(k), ("v2", e2))

    @needs(ETAG)
    def test_every_write_changes_the_etag(self):
        k = self.key()
        seen = set()
        for i in range(5):
            self.save_ok(k, "same")
            e = self.get_value(k)[1]
            self.assertNotIn(e, seen)
            seen.add(e)

    @needs(ETAG)
    def test_delete_with_etag(self):
        k = self.key()
        self.save_ok(k, "v1")
        _, stale = self.get_value(k)
        self.save_ok(k, "v2")
        _, right = self.get_value(k)
        r = self.delete(k, etag=stale)
        self.assert_error(r, 409, "ERR_STATE_DELETE")
        self.assertEqual(self.get_value(k), ("v2", right))
        r = self.delete(k, etag=right)
        self.assertEqual(r.status, 204, r)
        self.assert_absent(k)

    @needs(ETAG)
    def test_etag_on_a_missing_key(self):
        """As the Dapr store of the same type; and a multi-item save that fails says which of its
        items were stored (each item of a save stands alone)."""
        k, other, gone = self.key("missing"), self.key("other"), self.key("gone")
        ok = ETAG_ON_MISSING_KEY_OK in DRIVER["features"]
        # an etag of the store's own form, of a key that is no more
        self.save_ok(gone, "x")
        etag = self.get_value(gone)[1]
        self.assertEqual(self.delete(gone).status, 204)
        r = self.save([{"key": other, "value": "o"}, {"key": k, "value": "v", "etag": etag}])
        if ok:
            self.assertEqual(r.status, 204, r)
            self.assertEqual(self.get_value(k)[0], "v")
            self.assertEqual(self.delete(self.key("never"), etag=etag).status, 204)
            # a stale etag on a key that is there is still a conflict, and says what was stored
            r = self.save([{"key": other, "value": "o2"}, {"key": k, "value": "w", "etag": etag + "9"}])
            self.assert_error(r, 409, "ERR_STATE_SAVE")
            self.assertIn(f"1 of 2 items stored: '{other}'; not stored: '{k}'", r.json()["message"])
            self.assertEqual(self.get_value(other)[0], "o2")
            self.assertEqual(self.get_value(k)[0], "v")
        else:
            self.assert_error(r, 409, "ERR_STATE_SAVE")
            self.assertIn(f"1 of 2 items stored: '{other}'; not stored: '{k}'", r.json()["message"])
            self.assertEqual(self.get_value(other)[0], "o")
            self.assert_absent(k)
            self.assert_error(self.delete(self.key("never"), etag=etag), 409, "ERR_STATE_DELETE")

    @needs(ETAG)
    def test_first_write(self):
        k = self.key()
        fw = {"concurrency": "first-write"}
        # absent: inserted
        self.save_ok(k, "first", options=fw)
        _, e = self.get_value(k)
        # present, no etag: conflict, nothing changed
        r = self.save([{"key": k, "value": "second", "options": fw}])
        self.assert_error(r, 409, "ERR_STATE_SAVE")
        self.assertEqual(self.get_value(k), ("first", e))
        # present, right etag: fine
        self.save_ok(k, "third", etag=e, options=fw)
        self.assertEqual(self.get_value(k)[0], "third")

    @needs(ETAG)
    def test_last_write_without_etag_always_wins(self):
        k = self.key()
        lw = {"concurrency": "last-write"}
        self.save_ok(k, 1, options=lw)
        self.save_ok(k, 2, options=lw)
        self.assertEqual(self.get_value(k)[0], 2)

    @needs(ETAG)
    def test_concurrent_first_write_no_lost_update(self):
        """20 writers increment one counter with get-etag-then-save: each success is based on
        the latest value, so the final value equals the number of successful saves."""
        k = self.key("counter")
        self.save_ok(k, 0)
        threads, rounds = 20, 10
        ok = [0] * threads
        bad = []

        def worker(n):
            conn = UnixHTTPConnection(self.d.app_socket("a"), timeout=CLIENT_TIMEOUT)
            try:
                for _ in range(rounds):
                    r = request(None, "GET", f"/v1.0/state/store/{q(k)}", conn=conn)
                    if r.status != 200:
                        bad.append(("get", r))
                        return
                    body = json.dumps([{"key": k, "value": r.json() + 1, "etag": r.headers.get("etag"),
                                        "options": {"concurrency": "first-write"}}]).encode()
                    r = request(None, "POST", "/v1.0/state/store", body=body,
                                headers={"Content-Type": "application/json"}, conn=conn)
                    if r.status == 204:
                        ok[n] += 1
                    elif r.status != 409 or r.json().get("errorCode") != "ERR_STATE_SAVE":
                        bad.append(("save", r))
            except Exception as e:  # noqa: BLE001 - reported below
                bad.append(("exception", e))
            finally:
                conn.close()

        ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(bad, [])
        self.assertGreater(sum(ok), 0)
        self.assertEqual(self.get_value(k)[0], sum(ok), f"lost updates: {sum(ok)} saves succeeded")

    def test_concurrent_last_write(self):
        k = self.key()
        threads, rounds = 20, 10
        bad = []

        def worker(n):
            conn = UnixHTTPConnection(self.d.app_socket("a"), timeout=CLIENT_TIMEOUT)
            try:
                for i in range(rounds):
                    body = json.dumps([{"key": k, "value": {"writer": n, "round": i}}]).encode()
                    r = request(None, "POST", "/v1.0/state/store", body=body,
                                headers={"Content-Type": "application/json"}, conn=conn)
                    if r.status != 204:
                        bad.append(r)
            except Exception as e:  # noqa: BLE001 - reported below
                bad.append(e)
            finally:
                conn.close()

        ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(bad, [])
        v = self.get_value(k)[0]
        self.assertIn(v["writer"], range(threads))
        self.assertIn(v["round"], range(rounds))


class TransactionTest(StateCase):
    @needs(TRANSACTIONAL)
    def test_upserts_and_deletes(self):
        t1, t2, gone = self.key("t1"), self.key("t2"), self.key("gone")
        self.save_ok(gone, "bye")
        r = self.tx([
            {"operation": "upsert", "request": {"key": t1, "value": 1}},
            {"operation": "upsert", "request": {"key": t2, "value": {"x": [1, 2]}}},
            {"operation": "delete", "request": {"key": gone}},
        ])
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.body, b"")
        self.assertEqual(self.get_value(t1)[0], 1)
        self.assertEqual(self.get_value(t2)[0], {"x": [1, 2]})
        self.assert_absent(gone)

    @needs(TRANSACTIONAL)
    def test_ops_apply_in_order(self):
        k = self.key()
        r = self.tx([
            {"operation": "upsert", "request": {"key": k, "value": 1}},
            {"operation": "delete", "request": {"key": k}},
            {"operation": "upsert", "request": {"key": k, "value": 3}},
        ])
        self.assertEqual(r.status, 204, r)
        self.assertEqual(self.get_value(k)[0], 3)

    @needs(TRANSACTIONAL)
    def test_empty_transaction(self):
        r = self.tx([])
        self.assertEqual(r.status, 204, r)

    @needs(TRANSACTIONAL, ETAG)
    def test_transaction_with_right_etag(self):
        k = self.key()
        self.save_ok(k, "v1")
        _, e = self.get_value(k)
        r = self.tx([{"operation": "upsert", "request": {"key": k, "value": "v2", "etag": e}}])
        self.assertEqual(r.status, 204, r)
        self.assertEqual(self.get_value(k)[0], "v2")

    @needs(TRANSACTIONAL, ETAG)
    def test_stale_etag_applies_nothing(self):
        new, keep, x = self.key("new"), self.key("keep"), self.key("x")
        self.save_ok(keep, "kept")
        self.save_ok(x, "x1")
        _, stale = self.get_value(x)
        self.save_ok(x, "x2")
        before = {k: self.get_value(k) for k in (keep, x)}
        r = self.tx([
            {"operation": "upsert", "request": {"key": new, "value": "should not exist"}},
            {"operation": "delete", "request": {"key": keep}},
            {"operation": "upsert", "request": {"key": x, "value": "x3", "etag": stale}},
        ])
        self.assert_error(r, 500, "ERR_STATE_TRANSACTION")
        self.assert_absent(new)
        self.assertEqual({k: self.get_value(k) for k in (keep, x)}, before)

    @needs(TRANSACTIONAL, ETAG)
    def test_stale_etag_on_delete_applies_nothing(self):
        new, x = self.key("new"), self.key("x")
        self.save_ok(x, "x1")
        _, stale = self.get_value(x)
        self.save_ok(x, "x2")
        r = self.tx([
            {"operation": "upsert", "request": {"key": new, "value": 1}},
            {"operation": "delete", "request": {"key": x, "etag": stale}},
        ])
        self.assert_error(r, 500, "ERR_STATE_TRANSACTION")
        self.assert_absent(new)
        self.assertEqual(self.get_value(x)[0], "x2")

    @needs(TRANSACTIONAL)
    def test_unknown_operation(self):
        new = self.key("new")
        r = self.tx([
            {"operation": "upsert", "request": {"key": new, "value": 1}},
            {"operation": "frobnicate", "request": {"key": self.key("other"), "value": 2}},
        ])
        self.assert_error(r, 400, "ERR_NOT_SUPPORTED_STATE_OPERATION")
        self.assert_absent(new)

    @needs(TRANSACTIONAL)
    def test_transaction_key_validation(self):
        new = self.key("new")
        r = self.tx([
            {"operation": "upsert", "request": {"key": new, "value": 1}},
            {"operation": "upsert", "request": {"key": "bad||key", "value": 2}},
        ])
        self.assert_error(r, 400, "ERR_MALFORMED_REQUEST")
        self.assert_absent(new)

    @needs(TRANSACTIONAL)
    def test_transaction_is_scoped_per_app(self):
        k = self.key()
        r = self.tx([{"operation": "upsert", "request": {"key": k, "value": "from a"}}])
        self.assertEqual(r.status, 204, r)
        self.assert_absent(k, app="b")
        self.assertEqual(self.get_value(k)[0], "from a")

    def test_not_transactional(self):
        if TRANSACTIONAL in DRIVER["features"]:
            self.skipTest("driver is transactional")
        r = self.tx([{"operation": "upsert", "request": {"key": self.key(), "value": 1}}])
        self.assert_error(r, 500, "ERR_STATE_STORE_NOT_SUPPORTED")


class TtlTest(StateCase):
    def wait_gone(self, keys, since, limit=3.0):
        left = set(keys)
        while left:
            for k in list(left):
                r = self.get(k)
                self.assertIn(r.status, (200, 204), r)
                if r.status == 204:
                    left.discard(k)
            if not left:
                break
            self.assertLess(time.monotonic() - since, limit, f"still there after {limit}s: {sorted(left)}")
            time.sleep(0.1)

    @needs(TTL)
    def test_ttl_in_item_metadata(self):
        short, forever, plain = self.key("short"), self.key("forever"), self.key("plain")
        t0 = time.monotonic()
        r = self.save([
            {"key": short, "value": "brief", "metadata": {"ttlInSeconds": "1"}},
            {"key": forever, "value": "stays", "metadata": {"ttlInSeconds": "-1"}},
            {"key": plain, "value": "stays too"},
        ])
        self.assertEqual(r.status, 204, r)
        self.wait_gone([short], t0)
        time.sleep(max(0.0, 1.5 - (time.monotonic() - t0)))
        self.assertEqual(self.get_value(forever)[0], "stays")
        self.assertEqual(self.get_value(plain)[0], "stays too")

    @needs(TTL)
    def test_ttl_in_query(self):
        k = self.key()
        t0 = time.monotonic()
        r = self.save([{"key": k, "value": "brief"}], query="?metadata.ttlInSeconds=1")
        self.assertEqual(r.status, 204, r)
        self.wait_gone([k], t0)

    @needs(TTL)
    def test_ttl_hidden_from_bulk(self):
        k = self.key()
        t0 = time.monotonic()
        self.save_ok(k, 1, metadata={"ttlInSeconds": "1"})
        self.wait_gone([k], t0)
        r = self.bulk({"keys": [k]})
        self.assertEqual(r.status, 200, r)
        self.assertNotIn("data", r.json()[0])

    @needs(TTL, TRANSACTIONAL)
    def test_ttl_in_transaction(self):
        k = self.key()
        t0 = time.monotonic()
        r = self.tx([{"operation": "upsert", "request": {"key": k, "value": 1, "metadata": {"ttlInSeconds": "1"}}}])
        self.assertEqual(r.status, 204, r)
        self.wait_gone([k], t0)

    @needs(TTL, TRANSACTIONAL)
    def test_ttl_in_transaction_request_metadata(self):
        k = self.key()
        t0 = time.monotonic()
        r = self.tx([{"operation": "upsert", "request": {"key": k, "value": 1}}], metadata={"ttlInSeconds": "1"})
        self.assertEqual(r.status, 204, r)
        self.wait_gone([k], t0)

    @needs(TTL)
    def test_ttl_minus_one_removes_an_expiry(self):
        k = self.key()
        t0 = time.monotonic()
        self.save_ok(k, "brief", metadata={"ttlInSeconds": "1"})
        self.save_ok(k, "forever", metadata={"ttlInSeconds": "-1"})
        time.sleep(max(0.0, 2.0 - (time.monotonic() - t0)))
        self.assertEqual(self.get_value(k)[0], "forever")

    @needs(TTL)
    def test_ttl_expire_time(self):
        import datetime
        k, plain = self.key(), self.key("plain")
        self.save_ok(k, 1, metadata={"ttlInSeconds": "100"})
        self.save_ok(plain, 2)
        now = datetime.datetime.now(datetime.timezone.utc)
        r = self.get(k)
        self.assertEqual(r.status, 200, r)
        exp = r.headers.get("metadata.ttlexpiretime")
        self.assertTrue(exp, f"no metadata.ttlExpireTime header: {r.headers}")
        t = datetime.datetime.fromisoformat(exp.replace("Z", "+00:00"))
        self.assertIsNotNone(t.tzinfo, exp)
        self.assertLess(abs((t - now).total_seconds() - 100), 30, f"{exp} is not ~100s after {now}")
        self.assertNotIn("metadata.ttlexpiretime", self.get(plain).headers)
        items = {i["key"]: i for i in self.bulk({"keys": [k, plain]}).json()}
        self.assertEqual(items[k].get("metadata", {}).get("ttlExpireTime"), exp)
        self.assertNotIn("ttlExpireTime", items[plain].get("metadata") or {})

    @needs(TTL)
    def test_bad_ttl(self):
        k = self.key()
        self.save_ok(k, "kept")
        before = self.get_value(k)
        for bad in ("abc", "-2", "1.5", "99999999999"):
            r = self.save([{"key": k, "value": "replaced", "metadata": {"ttlInSeconds": bad}}])
            self.assert_error(r, 500, "ERR_STATE_SAVE")
            self.assertEqual(self.get_value(k), before, bad)


class IsolationTest(StateCase):
    def test_keys_are_per_app(self):
        k = self.key()
        self.save_ok(k, "a's")
        self.assert_absent(k, app="b")
        r = self.bulk({"keys": [k]}, app="b")
        self.assertEqual(r.status, 200, r)
        self.assertNotIn("data", r.json()[0])
        self.save_ok(k, "b's", app="b")
        self.assertEqual(self.get_value(k)[0], "a's")
        self.assertEqual(self.get_value(k, app="b")[0], "b's")
        self.assertEqual(self.delete(k, app="b").status, 204)
        self.assertEqual(self.get_value(k)[0], "a's")

    def test_key_prefix_none_is_shared(self):
        k = self.key()
        self.save_ok(k, "for everyone", store="shared")
        self.assertEqual(self.get_value(k, store="shared", app="b")[0], "for everyone")
        r = self.bulk({"keys": [k]}, store="shared", app="b")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()[0]["key"], k)
        self.assertEqual(r.json()[0]["data"], "for everyone")
        self.assertEqual(self.delete(k, store="shared", app="b").status, 204)
        self.assert_absent(k, store="shared")

    def test_key_prefix_name_is_shared(self):
        k = self.key()
        self.save_ok(k, "by store name", store="named")
        self.assertEqual(self.get_value(k, store="named", app="b")[0], "by store name")

    def test_scoped_store(self):
        k = self.key()
        self.save_ok(k, "only a", store="scoped")
        self.assertEqual(self.get_value(k, store="scoped")[0], "only a")
        for r in (self.get(k, store="scoped", app="b"),
                  self.save([{"key": k, "value": 1}], store="scoped", app="b"),
                  self.delete(k, store="scoped", app="b"),
                  self.bulk({"keys": [k]}, store="scoped", app="b"),
                  self.tx([], store="scoped", app="b")):
            self.assert_error(r, 400, "ERR_STATE_STORE_NOT_FOUND")

    def test_unknown_store(self):
        k = self.key()
        for r in (self.get(k, store="nope"),
                  self.save([{"key": k, "value": 1}], store="nope"),
                  self.delete(k, store="nope"),
                  self.bulk({"keys": [k]}, store="nope"),
                  self.tx([], store="nope")):
            self.assert_error(r, 400, "ERR_STATE_STORE_NOT_FOUND")


class ValueTest(StateCase):
    def test_large_value(self):
        k = self.key()
        big = "".join(chr(ord("a") + i % 26) for i in range(1 << 20))
        r = self.save([{"key": k, "value": big}])
        self.assertEqual(r.status, 204, r)
        r = self.get(k)
        self.assertEqual(r.status, 200)
        self.assertEqual(len(r.body), len(big) + 2)
        self.assertEqual(r.json(), big)
        r = self.bulk({"keys": [k]})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()[0]["data"], big)

    def test_escapes_and_unicode(self):
        s = "".join(chr(c) for c in range(0x20)) + "\"\\/\x7f é € 😀 \u2028\u2029 \ufeff end"
        for i, ensure_ascii in enumerate((True, False)):
            k = self.key(str(i))
            body = json.dumps([{"key": k, "value": {"s": s, "list": [s]}}], ensure_ascii=ensure_ascii)
            r = self.save(body.encode("utf-8"))
            self.assertEqual(r.status, 204, r)
            r = self.get(k)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(json.loads(r.body.decode("utf-8")), {"s": s, "list": [s]})
            r = self.bulk({"keys": [k]})
            self.assertEqual(r.json()[0]["data"], {"s": s, "list": [s]})

    def test_numbers(self):
        k = self.key()
        v = [0, -1, 1.25, 1e-7, 123456789, -0.5, 1e300]
        self.save_ok(k, v)
        self.assertEqual(self.get_value(k)[0], v)


class BadInputTest(StateCase):
    def setUp(self):
        super().setUp()
        self.k = self.key("kept")
        self.save_ok(self.k, {"kept": True})
        self.before = self.get_value(self.k)

    def assert_unchanged(self):
        self.assertEqual(self.get_value(self.k), self.before)

    def check(self, body, code="ERR_MALFORMED_REQUEST", status=400):
        r = self.save(body)
        self.assert_error(r, status, code)
        self.assert_unchanged()
        return r

    def test_malformed_json(self):
        self.check(b'[{"key": "' + self.k.encode() + b'", "value": ')
        self.check(b"not json at all")
        self.check(b"")

    def test_missing_key(self):
        self.check([{"value": 1}])
        self.check([{"key": "", "value": 1}])

    def test_key_with_separator(self):
        self.check([{"key": "x||y", "value": 1}])
        self.check([{"key": "||", "value": 1}])
        r = self.get("x||y")
        self.assert_error(r, 400, "ERR_MALFORMED_REQUEST")
        r = self.delete("x||y")
        self.assert_error(r, 400, "ERR_MALFORMED_REQUEST")
        r = self.bulk({"keys": [self.k, "x||y"]})
        self.assert_error(r, 400, "ERR_MALFORMED_REQUEST")
        self.assert_unchanged()

    def test_not_an_array(self):
        self.check({"key": self.k, "value": "replaced"})
        self.check('"just a string"')
        self.check([["nested", "array"]])

    def test_etag_wrong_type(self):
        self.check([{"key": self.k, "value": "replaced", "etag": 5}])

    def test_bad_item_spoils_the_whole_request(self):
        new = self.key("new")
        self.check([{"key": new, "value": 1}, {"key": self.k, "value": "replaced"}, {"key": "x||y", "value": 2}])
        self.assert_absent(new)
        self.check([{"key": new, "value": 1}, {"key": self.k, "value": "replaced", "etag": 5}])
        self.assert_absent(new)

    def test_bad_bulk_body(self):
        r = self.bulk(b'{"keys": [')
        self.assert_error(r, 400, "ERR_MALFORMED_REQUEST")
        self.assert_unchanged()

    @needs(TRANSACTIONAL)
    def test_bad_transaction_body(self):
        r = self.req("POST", "/v1.0/state/store/transaction", body=b'{"operations": [')
        self.assert_error(r, 400, "ERR_MALFORMED_REQUEST")
        r = self.tx([{"operation": "upsert", "request": {"key": self.k, "value": "replaced", "etag": 5}}])
        self.assert_error(r, 400, "ERR_MALFORMED_REQUEST")
        self.assert_unchanged()


class QueryTest(StateCase):
    """Dapr's state query (alpha): POST /v1.0-alpha1/state/{store}/query."""

    PEOPLE = {
        "ann": {"person": {"org": "dev", "id": 3}, "city": "berlin", "rank": 1.5},
        "bob": {"person": {"org": "ops", "id": 1}, "city": "paris", "rank": 2},
        "cyd": {"person": {"org": "dev", "id": 2}, "city": "paris", "rank": 2.0},
        "dan": {"person": {"org": "qa", "id": 4}, "city": "rome", "flag": True},
        "eve": {"person": {"org": "dev", "id": 5}, "city": "1"},
        "raw": "not an object",
    }

    def query(self, body, store="store", app="a", method="POST"):
        return self.req(method, f"/v1.0-alpha1/state/{store}/query", body=body, app=app)

    def fill(self, store="store", app="a"):
        r = self.save([{"key": self.key(k), "value": v} for k, v in self.PEOPLE.items()], store=store, app=app)
        self.assertEqual(r.status, 204, r)

    def names(self, r):
        """The short names of the result keys, in order (only this test's unprefixed keys); 204: none."""
        if r.status == 204:
            self.assertEqual(r.body, b"")
            return []
        self.assertEqual(r.status, 200, r)
        return [i["key"][len(self.tag) + 1:] for i in r.json()["results"] if i["key"].startswith(self.tag)]

    def mine(self, flt):
        """flt restricted to this test's items (server-backed stores hold other tests' keys too)."""
        return {"AND": [flt, {"IN": {"tag": [self.tag]}}]}

    def fill_tagged(self, store="store", app="a", tag=None):
        items = [{"key": self.key(k), "value": dict(v, tag=tag or self.tag) if isinstance(v, dict) else v}
                 for k, v in self.PEOPLE.items()]
        r = self.save(items, store=store, app=app)
        self.assertEqual(r.status, 204, r)

    @needs(QUERY)
    def test_filters(self):
        self.fill_tagged()
        q = lambda f: set(self.names(self.query({"filter": self.mine(f)})))  # noqa: E731
        self.assertEqual(q({"EQ": {"person.org": "dev"}}), {"ann", "cyd", "eve"})
        self.assertEqual(q({"IN": {"city": ["rome", "berlin"]}}), {"ann", "dan"})
        self.assertEqual(q({"AND": [{"EQ": {"person.org": "dev"}}, {"EQ": {"city": "paris"}}]}), {"cyd"})
        self.assertEqual(q({"OR": [{"EQ": {"person.id": 1}}, {"EQ": {"person.id": 4}}]}), {"bob", "dan"})
        # JSON types: 2 equals 2.0, the string "1" is not the number 1, true is not 1
        self.assertEqual(q({"EQ": {"rank": 2}}), {"bob", "cyd"})
        self.assertEqual(q({"EQ": {"city": 1}}), set())
        self.assertEqual(q({"EQ": {"city": "1"}}), {"eve"})
        self.assertEqual(q({"EQ": {"flag": True}}), {"dan"})
        self.assertEqual(q({"EQ": {"flag": 1}}), set())
        self.assertEqual(q({"EQ": {"rank": None}}), {"dan", "eve"})
        # a whole result item: the caller's key, the stored JSON, the etag GET gives
        r = self.query({"filter": self.mine({"EQ": {"person.id": 3}})})
        (item,) = r.json()["results"]
        self.assertEqual(item["key"], self.key("ann"))
        self.assertEqual(item["data"], dict(self.PEOPLE["ann"], tag=self.tag))
        self.assertEqual(item["etag"], self.get_value(self.key("ann"))[1])
        self.assertNotIn("token", r.json())

    @needs(QUERY)
    def test_sort_and_pages(self):
        self.fill_tagged()
        flt = self.mine({"IN": {"person.org": ["dev", "ops", "qa"]}})
        r = self.query({"filter": flt, "sort": [{"key": "person.id", "order": "DESC"}]})
        self.assertEqual(self.names(r), ["eve", "dan", "ann", "cyd", "bob"])
        # Go decodes sort entries and the page as structs: member names in any case
        r = self.query({"filter": flt, "sort": [{"KEY": "city"}, {"Key": "person.id", "Order": "ASC"}]})
        self.assertEqual(self.names(r), ["eve", "ann", "bob", "cyd", "dan"])
        seen, token, pages = [], None, 0
        while True:
            page = {"limit": 2} if token is None else {"limit": 2, "token": token}
            r = self.query({"filter": flt, "sort": [{"key": "person.id"}], "page": page})
            if r.status == 204:
                break
            self.assertEqual(r.status, 200, r)
            body = r.json()
            seen += self.names(r)
            token = body["token"]
            pages += 1
            self.assertLessEqual(pages, 5)
        self.assertEqual(seen, ["bob", "cyd", "ann", "dan", "eve"])

    @needs(QUERY)
    def test_only_the_callers_keys(self):
        self.fill_tagged(app="a")
        r = self.query({"filter": {"EQ": {"tag": self.tag}}}, app="b")
        self.assertEqual(r.status, 204, r)  # b's keys are b||..., a's are not b's
        self.fill_tagged(store="shared", app="b", tag=self.tag + "-shared")
        r = self.query({"filter": {"EQ": {"tag": self.tag + "-shared"}}}, store="shared", app="a")
        # keyPrefix none: one key space, b's keys included (the string value has no tag)
        self.assertEqual(len(self.names(r)), 5)

    @needs(QUERY)
    def test_bad_queries(self):
        for body in (b"{not json", b"[]", {"filter": {}}, {"filter": {"LIKE": {"a": 1}}},
                     {"filter": {"AND": [{"EQ": {"a": 1}}]}}, {"filter": {"EQ": {"a": 1, "b": 2}}},
                     {"filter": {"IN": {"a": []}}}, {"filter": {"EQ": {"a..b": 1}}},
                     {"filter": {"EQ": {"a": {"b": 1}}}}, {"sort": [{"key": "a", "order": "SIDEWAYS"}]},
                     {"sort": {"key": "a"}}, {"page": {"token": "x"}}, {"page": {"limit": "2"}}):
            r = self.query(body)
            self.assert_error(r, 500, "ERR_STATE_QUERY")
        self.assert_error(self.query({}, store="nope"), 400, "ERR_STATE_STORE_NOT_FOUND")
        # nothing matched: 204 and no body, as daprd
        r = self.query({"filter": {"EQ": {"tag": "no-such-" + self.tag}}})
        self.assertEqual((r.status, r.body), (204, b""))
        # the capability is announced
        m = self.req("GET", "/v1.0/metadata").json()
        caps = {c["name"]: c.get("capabilities", []) for c in m["components"]}
        self.assertIn("QUERY_API", caps["store"])

    def test_without_query_api(self):
        if QUERY in DRIVER["features"]:
            return
        self.assert_error(self.query({"filter": {"EQ": {"a": 1}}}), 500, "ERR_STATE_STORE_NOT_SUPPORTED")
        m = self.req("GET", "/v1.0/metadata").json()
        caps = {c["name"]: c.get("capabilities", []) for c in m["components"]}
        self.assertNotIn("QUERY_API", caps["store"])


class RestartTest(StateCase):
    def test_server_restart(self):
        if not DRIVER["server"]:
            self.skipTest("driver has no server")
        before = self.key("before")
        self.save_ok(before, {"saved": "before the restart"})

        SERVER.stop()
        self.addCleanup(ensure_server_running)
        k = self.key()
        t0 = time.monotonic()
        r = self.save([{"key": k, "value": "during"}])
        self.assertLess(time.monotonic() - t0, CLIENT_TIMEOUT)
        self.assert_error(r, 500, "ERR_STATE_SAVE")
        r = self.get(before)
        self.assert_error(r, 500, "ERR_STATE_GET")
        self.d.assert_running()

        SERVER.start()
        deadline = time.monotonic() + 15
        while True:
            r = self.save([{"key": k, "value": "after"}])
            if r.status == 204:
                break
            self.assertIn(r.status, (500,), r)
            self.assertLess(time.monotonic(), deadline, f"saves still fail 15s after the server came back: {r}")
            time.sleep(0.2)
        self.d.assert_running()
        self.assertEqual(self.get_value(k)[0], "after")
        if DRIVER.get("persistent"):
            self.assertEqual(self.get_value(before)[0], {"saved": "before the restart"})


def ensure_server_running():
    if SERVER is None:
        return
    if DRIVER["server"] == "postgresql":
        if not SERVER.is_ready():
            SERVER.start()
    elif not SERVER.ping():
        SERVER.stop()
        SERVER.start()


# ---------------------------------------------------------------------------

def start_server():
    import servers
    if DRIVER["server"] == "postgresql":
        return servers.PostgresServer()
    if DRIVER["server"] == "redis":
        return servers.RedisServer()
    return None


def preflight():
    """One daemon with the store alone: a driver missing from this build is a skip, not 52 failures."""
    d = harness.Daemon(apps={"a": "[App]\n"})
    try:
        d.write_component("store.yaml", component(d.tmp, "store"))
        d.start()
        request(d.app_socket("a"), "GET", "/v1.0/state/store/preflight")
        d.stop()
        log = d.log()
    finally:
        d.cleanup()
    if "no state store driver for type" in log:
        skip_or_fail(f"{DRIVER['type']} is not built into {harness.MOORINGD}")


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def main():
    global SERVER
    if DRIVER is None:
        print(f"unknown MOORING_STATE_DRIVER={DRIVER_NAME!r}; known: {', '.join(DRIVERS)}", file=sys.stderr)
        sys.exit(1)
    harness.require("systemd-socket-activate")
    if not os.path.exists(harness.MOORINGD):
        skip_or_fail(f"{harness.MOORINGD} not built")
    # meson's timeout sends SIGTERM: unwind so the servers are stopped.
    signal.signal(signal.SIGTERM, _terminate)
    print(f"state conformance: driver {DRIVER_NAME} ({DRIVER['type']}), features "
          f"{', '.join(sorted(DRIVER['features'])) or 'none'}", file=sys.stderr)
    server = start_server()
    try:
        if server is not None:
            server.start()
            SERVER = server
        preflight()
        prog = unittest.main(argv=[sys.argv[0]] + sys.argv[1:], exit=False, verbosity=2)
    finally:
        if server is not None:
            server.close()
    r = prog.result
    sys.exit(0 if r.wasSuccessful() and r.testsRun > 0 else 1)


if __name__ == "__main__":
    main()
