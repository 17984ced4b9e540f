#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Distributed lock conformance: one suite, run unchanged against every lock driver.

MOORING_LOCK_DRIVER (sqlite, redis) picks the driver. One real mooringd per test
class (a restart case starts its own), with apps `a` and `b` and three components
of the driver's type: `store` (default keyPrefix appid), `scoped` (scopes: [a])
and `shared` (keyPrefix none: apps contend for the same resource ids).

Expected answers are daprd 1.14's (POST /v1.0-alpha1/lock|unlock/{store}; the
project's Dapr HTTP API reference 7.5; dapr/dapr pkg/messages for the errors).
"""

import json
import os
import signal
import sys
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (os.path.join(HERE, "..", "..", "integration"), os.path.join(HERE, "..", "..", "fixtures")):
    _p = os.path.normpath(_p)
    if _p not in sys.path:
        sys.path.insert(0, _p)

import harness  # noqa: E402
from harness import DaemonTestCase, UnixHTTPConnection, request, skip_or_fail, wait_for  # noqa: E402

DRIVERS = {
    "sqlite": {
        "type": "lock.sqlite",
        "metadata": lambda tmp, name, server: [("connectionString", os.path.join(tmp, f"{name}.db"))],
        "server": None,
    },
    "redis": {
        "type": "lock.redis",
        "metadata": lambda tmp, name, server: [("redisHost", server.address)],
        "server": "redis",
    },
}

DRIVER_NAME = os.environ.get("MOORING_LOCK_DRIVER", "sqlite")
DRIVER = DRIVERS.get(DRIVER_NAME)
SERVER = None


def component(tmp, name, extra=(), scopes=None):
    items = list(DRIVER["metadata"](tmp, name, SERVER)) + list(extra)
    meta = "  metadata:\n" + "".join(f"  - name: {k}\n    value: {json.dumps(v)}\n" for k, v in items) if items else ""
    sc = f"scopes: [{', '.join(scopes)}]\n" if scopes else ""
    return (f"apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\n"
            f"spec:\n  type: {DRIVER['type']}\n  version: v1\n{meta}{sc}")


def make_daemon(case):
    d = case.daemon(start=False, apps={"a": "[App]\n", "b": "[App]\n"})
    d.write_component("store.yaml", component(d.tmp, "store"))
    d.write_component("scoped.yaml", component(d.tmp, "scoped", scopes=["a"]))
    d.write_component("shared.yaml", component(d.tmp, "shared", extra=[("keyPrefix", "none")]))
    d.start()
    return d


def restart(d):
    assert d.stop() == 0, d.log()
    d.notify.messages.clear()
    d.start()


class LockCase(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.d = make_daemon(self)
        self.res = f"{self._testMethodName[5:]}-{uuid.uuid4().hex[:8]}"

    def req(self, path, body, app="a"):
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        conn = UnixHTTPConnection(self.d.app_socket(app), timeout=30)
        try:
            return request(None, "POST", path, body=body, headers={"Content-Type": "application/json"}, conn=conn)
        finally:
            conn.close()

    def lock(self, owner, expiry=60, store="store", app="a", res=None):
        return self.req(f"/v1.0-alpha1/lock/{store}",
                        {"resourceId": res or self.res, "lockOwner": owner, "expiryInSeconds": expiry}, app=app)

    def unlock(self, owner, store="store", app="a", res=None):
        return self.req(f"/v1.0-alpha1/unlock/{store}", {"resourceId": res or self.res, "lockOwner": owner}, app=app)

    def assert_locked(self, r, success):
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"success": success})

    def assert_unlocked(self, r, status):
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), {"status": status})

    def assert_error(self, r, status, code):
        self.assertEqual(r.status, status, r)
        body = r.json()
        self.assertEqual(body.get("errorCode"), code, body)
        self.assertTrue(body.get("message"), body)
        return body


class LockTest(LockCase):
    def test_lock_excludes_other_owners(self):
        self.assert_locked(self.lock("o1"), True)
        self.assert_locked(self.lock("o2"), False)
        # as Dapr's stores do: a held lock is not taken again, not even by its owner
        self.assert_locked(self.lock("o1"), False)

    def test_unlock_answers(self):
        self.assert_unlocked(self.unlock("o1"), 1)            # LOCK_DOES_NOT_EXIST
        self.assert_locked(self.lock("o1"), True)
        self.assert_unlocked(self.unlock("o2"), 2)            # LOCK_BELONGS_TO_OTHERS
        self.assert_locked(self.lock("o2"), False)            # still o1's
        self.assert_unlocked(self.unlock("o1"), 0)            # SUCCESS
        self.assert_unlocked(self.unlock("o1"), 1)
        self.assert_locked(self.lock("o2"), True)

    def test_lease_expires(self):
        self.assert_locked(self.lock("o1", expiry=1), True)
        self.assert_locked(self.lock("o2", expiry=60), False)
        # the lease ends on its own; no fixed sleep, but it must end
        wait_for(lambda: self.lock("o2", expiry=60).json() == {"success": True}, timeout=15, interval=0.2,
                 what="the 1 s lease to expire")
        self.assert_unlocked(self.unlock("o1"), 2)

    def test_apps_have_their_own_resources(self):
        self.assert_locked(self.lock("o1", app="a"), True)
        self.assert_locked(self.lock("o2", app="b"), True)   # lock||b||res is not lock||a||res
        self.assert_unlocked(self.unlock("o2", app="a"), 2)

    def test_key_prefix_none_is_shared(self):
        self.assert_locked(self.lock("o1", store="shared", app="a"), True)
        self.assert_locked(self.lock("o2", store="shared", app="b"), False)
        self.assert_unlocked(self.unlock("o1", store="shared", app="b"), 0)

    def test_proto_spellings(self):
        # protojson: the proto's own field names and an int32 given as a string; unknown fields ignored
        r = self.req("/v1.0-alpha1/lock/store",
                     {"resource_id": self.res, "lock_owner": "o1", "expiry_in_seconds": "30", "x": 1})
        self.assert_locked(r, True)
        self.assert_unlocked(self.req("/v1.0-alpha1/unlock/store", {"resource_id": self.res, "lock_owner": "o1"}),
                             0)

    def test_bad_requests(self):
        e = self.assert_error(self.req("/v1.0-alpha1/lock/store", {"lockOwner": "o", "expiryInSeconds": 5}),
                              400, "ERR_MALFORMED_REQUEST")
        self.assertEqual(e["message"], "ResourceId is empty in lock store store")
        e = self.assert_error(self.req("/v1.0-alpha1/lock/store", {"resourceId": "r", "expiryInSeconds": 5}),
                              400, "ERR_MALFORMED_REQUEST")
        self.assertEqual(e["message"], "LockOwner is empty in lock store store")
        e = self.assert_error(self.lock("o", expiry=0), 400, "ERR_MALFORMED_REQUEST")
        self.assertEqual(e["message"], "ExpiryInSeconds is not positive in lock store store")
        self.assert_error(self.lock("o", expiry=-5), 400, "ERR_MALFORMED_REQUEST")
        self.assert_error(self.req("/v1.0-alpha1/unlock/store", {"resourceId": "r"}), 400, "ERR_MALFORMED_REQUEST")
        self.assert_error(self.req("/v1.0-alpha1/lock/store", b"{not json"), 400, "ERR_MALFORMED_REQUEST")
        self.assert_error(self.req("/v1.0-alpha1/lock/store", {"resourceId": 5, "lockOwner": "o"}), 400,
                          "ERR_MALFORMED_REQUEST")
        self.assert_error(self.req("/v1.0-alpha1/lock/store", b""), 400, "ERR_MALFORMED_REQUEST")
        # the request is checked before the store is looked up (daprd's order)
        self.assert_error(self.req("/v1.0-alpha1/lock/nope", {"resourceId": "r", "lockOwner": "o"}), 400,
                          "ERR_MALFORMED_REQUEST")
        e = self.assert_error(self.lock("o", store="nope"), 400, "ERR_LOCK_STORE_NOT_FOUND")
        self.assertEqual(e["message"], "lock store nope not found")
        self.assert_error(self.unlock("o", store="nope"), 400, "ERR_LOCK_STORE_NOT_FOUND")
        # scopes: b does not see `scoped`
        # (its own resource id: on one server, lock||a||<res> is the same key for every store, as in Dapr)
        self.assert_locked(self.lock("o", store="scoped", app="a", res=self.res + "-scoped"), True)
        self.assert_error(self.lock("o", store="scoped", app="b", res=self.res + "-scoped"), 400,
                          "ERR_LOCK_STORE_NOT_FOUND")
        # "||" in a resource id fails the call (daprd: ERR_TRY_LOCK / ERR_UNLOCK, 500), and locks nothing
        self.assert_error(self.lock("o", res="x||y"), 500, "ERR_TRY_LOCK")
        self.assert_error(self.unlock("o", res="x||y"), 500, "ERR_UNLOCK")
        # a caller that is no app (the shared socket) has no locks
        r = request(self.d.api, "POST", "/v1.0-alpha1/lock/store",
                    body=json.dumps({"resourceId": "r", "lockOwner": "o", "expiryInSeconds": 5}).encode())
        self.assert_error(r, 403, "ERR_PERMISSION_DENIED")
        # nothing of the above took a lease
        self.assert_locked(self.lock("o1"), True)

    def test_concurrent_contenders_one_winner(self):
        import concurrent.futures
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            rs = list(ex.map(lambda i: self.lock(f"o{i}", app="a" if i % 2 else "b", store="shared"), range(40)))
        wins = [r for r in rs if r.json() == {"success": True}]
        self.assertEqual(len(wins), 1, [r.json() for r in rs])


class RestartTest(LockCase):
    def test_leases_survive_and_expire_across_a_restart(self):
        short, long_ = self.res + "-short", self.res + "-long"
        self.assert_locked(self.lock("o1", expiry=2, res=short), True)
        self.assert_locked(self.lock("o1", expiry=600, res=long_), True)
        restart(self.d)
        # the long lease is still held after the restart, and still its owner's to release
        self.assert_locked(self.lock("o2", res=long_), False)
        wait_for(lambda: self.lock("o2", res=short).json() == {"success": True}, timeout=15, interval=0.2,
                 what="the short lease to expire across the restart")
        self.assert_unlocked(self.unlock("o2", res=long_), 2)
        self.assert_unlocked(self.unlock("o1", res=long_), 0)


class RedisTest(LockCase):
    def test_key_is_daprs(self):
        self.assert_locked(self.lock("o1"), True)
        self.assertEqual(SERVER.command("EXISTS", f"lock||a||{self.res}"), b":1")
        self.assertEqual(SERVER.command("TTL", f"lock||a||{self.res}")[:1], b":")

    def test_server_goes_away_and_comes_back(self):
        self.assert_locked(self.lock("o1"), True)
        SERVER.stop()
        try:
            self.assert_error(self.lock("o1", res=self.res + "-2"), 500, "ERR_TRY_LOCK")
            self.assert_error(self.unlock("o1"), 500, "ERR_UNLOCK")
        finally:
            SERVER.start()
        # the fixture keeps no data: the lease went with the server; the store reconnects by itself
        wait_for(lambda: self.lock("o2").status == 200, timeout=20, interval=0.2, what="a reconnect")
        self.d.assert_running()


class DefaultStoreTest(DaemonTestCase):
    def test_lockstore_without_components(self):
        d = self.daemon(apps={"a": "[App]\n"})
        body = json.dumps({"resourceId": "r", "lockOwner": "o", "expiryInSeconds": 30}).encode()
        r = request(d.app_socket("a"), "POST", "/v1.0-alpha1/lock/lockstore", body=body)
        self.assertEqual((r.status, r.json()), (200, {"success": True}))
        self.assertTrue(os.path.exists(os.path.join(d.state, "locks.db")))


# Driver-specific cases exist only for their driver (a skip would fail CI's no-skip rule).
if DRIVER_NAME != "redis":
    del RedisTest
if DRIVER_NAME != "sqlite":
    del DefaultStoreTest


def preflight():
    d = harness.Daemon(apps={"a": "[App]\n"})
    try:
        d.write_component("store.yaml", component(d.tmp, "store"))
        d.start()
        d.stop()
        log = d.log()
    finally:
        d.cleanup()
    if "no lock store driver for type" in log:
        skip_or_fail(f"{DRIVER['type']} is not built into {harness.MOORINGD}")


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def main():
    global SERVER
    if DRIVER is None:
        print(f"unknown MOORING_LOCK_DRIVER={DRIVER_NAME!r}", file=sys.stderr)
        sys.exit(1)
    harness.require("systemd-socket-activate")
    if not os.path.exists(harness.MOORINGD):
        skip_or_fail(f"{harness.MOORINGD} not built")
    signal.signal(signal.SIGTERM, _terminate)
    server = None
    if DRIVER["server"] == "redis":
        import servers
        server = servers.RedisServer()
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
