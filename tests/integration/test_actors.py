#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Actors end to end: the real daemon and a real app process hosting actors (actorapp.py),
called through the app sockets as an SDK calls its sidecar."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

from actorapp import read_log
from harness import MOORINGCTL, DaemonTestCase, main, request, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = {
    "entities": ["Counter", "Reent", "Idle"],
    "actorIdleTimeout": "1h",
    "entitiesConfig": [
        {"entities": ["Reent"], "reentrancy": {"enabled": True, "maxStackDepth": 4}},
        {"entities": ["Idle"], "actorIdleTimeout": "1s"},
    ],
}


class AppProcess:
    """actorapp.py as its own process on a Unix socket; it calls the daemon through host's socket."""

    def __init__(self, tmp, daemon_sock, config=CONFIG):
        self.sock = os.path.join(tmp, "actorapp.sock")
        self.log = os.path.join(tmp, "actorapp.log")
        self.daemon_sock, self.config = daemon_sock, config
        self.proc = None

    @property
    def address(self):
        return f"unix:{self.sock}"

    def start(self):
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "actorapp.py"), self.sock,
                                      json.dumps(self.config), self.daemon_sock, self.log])
        wait_for(lambda: os.path.exists(self.sock), what="the actor app's socket")
        return self

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if os.path.exists(self.sock):
            os.unlink(self.sock)

    def entries(self, kind=None, **match):
        return [e for e in read_log(self.log)
                if (kind is None or e["kind"] == kind) and all(e.get(k) == v for k, v in match.items())]


class ActorsTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.apps = []

    def tearDown(self):
        for a in self.apps:
            a.kill()

    def start(self, use_socket_activation=True, bus=False):
        """Daemon with app 'host' (runs actorapp.py) and app 'caller' (no actors)."""
        d = self.daemon(start=False, apps={"caller": "[App]\n"}, use_socket_activation=use_socket_activation,
                        bus=bus)
        app = AppProcess(d.tmp, d.app_socket("host")).start()
        self.apps.append(app)
        d.write_app("host", f"[App]\nAppAddress={app.address}\nHealthCheckPath=/healthz\nHealthProbeInterval=100ms\n")
        d.start()
        self.wait_hosted(d)
        return d, app

    def wait_hosted(self, d, types=("Counter", "Reent", "Idle")):
        def ready():
            r = d.get("/mooring/v1/actors")
            got = {t["type"]: t for t in r.json()} if r.status == 200 else {}
            return all(t in got and got[t]["reminderState"] == "loaded" for t in types)
        wait_for(ready, what=f"actor types {types} hosted")

    def call(self, d, app_id, typ, aid, method, verb="PUT", body=b"", headers=None, query=""):
        path = f"/v1.0/actors/{typ}/{aid}/method/{method}" + (f"?{query}" if query else "")
        return request(d.app_socket(app_id), verb, path, body=body, headers=headers)

    # ---- method calls ----

    def test_method_round_trip_and_errors(self):
        d, app = self.start()
        body = b'{"n": 1, "s": "\xc3\xa9"}'
        r = self.call(d, "caller", "Counter", "42", "echo", verb="POST", body=body,
                      headers={"Content-Type": "application/x-test", "X-Custom": "yes"}, query="a=1&b=%2F")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, body)
        self.assertEqual(r.headers["content-type"], "application/x-test")
        self.assertEqual(r.headers["x-echo-query"], "a=1&b=%2F")
        seen = app.entries("method", type="Counter", id="42", name="echo")[0]
        self.assertEqual(seen["headers"].get("x-custom"), "yes")
        # GET and DELETE from the caller reach the app as PUT too (the app answers only PUT)
        self.assertEqual(self.call(d, "caller", "Counter", "42", "echo", verb="GET").status, 200)
        # the app's non-200 is Dapr's 500 ERR_ACTOR_INVOKE_METHOD with its body
        r = self.call(d, "caller", "Counter", "42", "fail")
        self.assertEqual(r.status, 500, r)
        self.assertEqual(r.json()["errorCode"], "ERR_ACTOR_INVOKE_METHOD")
        self.assertIn("boom", r.json()["message"])
        r = self.call(d, "caller", "NoSuchType", "1", "echo")
        self.assertEqual((r.status, r.json()["errorCode"]), (500, "ERR_ACTOR_INVOKE_METHOD"), r)
        # metadata of the hosting app: actors and actorRuntime
        m = d.get("/v1.0/metadata", target=d.app_socket("host")).json()
        counts = {a["type"]: a["count"] for a in m["actorRuntime"]["activeActors"]}
        self.assertEqual(counts["Counter"], 1)
        self.assertEqual(m["actorRuntime"]["runtimeStatus"], "RUNNING")
        self.assertTrue(m["actorRuntime"]["hostReady"])
        self.assertEqual(m["actorRuntime"]["placement"], "placement: connected")
        self.assertIn({"type": "Counter", "count": 1}, m["actors"])
        # the caller hosts nothing
        m = d.get("/v1.0/metadata", target=d.app_socket("caller")).json()
        self.assertFalse(m["actorRuntime"]["hostReady"])

    def test_turns_one_at_a_time_per_actor_parallel_across_actors(self):
        d, app = self.start()
        results = []

        def one(aid, ms):
            r = self.call(d, "caller", "Counter", aid, "slow", query=f"ms={ms}")
            results.append(r.status)

        threads = [threading.Thread(target=one, args=("same", 2)) for _ in range(200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(results, [200] * 200)
        same = app.entries("method", type="Counter", id="same")
        self.assertEqual(len(same), 200)
        self.assertEqual(max(e["inside"] for e in same), 1, "two turns of one actor overlapped")
        results.clear()
        threads = [threading.Thread(target=one, args=(f"a{i}", 100)) for i in range(200)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(results, [200] * 200)
        many = [e for e in app.entries("method", type="Counter") if e["id"].startswith("a")]
        self.assertEqual(len({e["id"] for e in many}), 200)
        self.assertGreater(max(e["total"] for e in many), 1, "different actors never ran at the same time")

    def test_reentrancy_allowed_and_depth_limited(self):
        d, app = self.start()
        r = self.call(d, "caller", "Reent", "r1", "reenter", query="n=3")
        self.assertEqual((r.status, r.body), (200, b"bottom"), r)
        chain = {e["headers"].get("dapr-reentrancy-id") for e in app.entries("method", type="Reent", id="r1")}
        self.assertEqual(len(chain), 1)
        self.assertIsNotNone(chain.pop())
        # maxStackDepth 4: the fifth nested entry is refused and the chain fails
        r = self.call(d, "caller", "Reent", "r2", "reenter", query="n=5")
        self.assertEqual(r.status, 500, r)
        self.assertEqual(len(app.entries("method", type="Reent", id="r2")), 4)

    # ---- state ----

    def test_actor_state(self):
        d, app = self.start()
        ops = [{"operation": "upsert", "request": {"key": "k", "value": {"v": 1}}},
               {"operation": "upsert", "request": {"key": "gone", "value": 2}},
               {"operation": "delete", "request": {"key": "gone"}}]
        r = self.call(d, "caller", "Counter", "s1", "setstate", body=json.dumps(ops).encode())
        self.assertEqual(r.json()["status"], 204, r)
        r = self.call(d, "caller", "Counter", "s1", "getstate", query="key=k").json()
        self.assertEqual((r["status"], json.loads(r["body"])), (200, {"v": 1}))
        self.assertEqual(self.call(d, "caller", "Counter", "s1", "getstate", query="key=gone").json()["status"], 204)
        # another id of the same type sees nothing of it
        self.assertEqual(self.call(d, "caller", "Counter", "s2", "getstate", query="key=k").json()["status"], 204)
        # the actor is active on this host, for its host app only
        r = request(d.app_socket("host"), "GET", "/v1.0/actors/Counter/s1/state/k")
        self.assertEqual((r.status, r.body), (200, b'{"v":1}'))
        r = request(d.app_socket("caller"), "GET", "/v1.0/actors/Counter/s1/state/k")
        self.assertEqual((r.status, r.json()["errorCode"]), (400, "ERR_ACTOR_INSTANCE_MISSING"), r)
        r = request(d.app_socket("host"), "GET", "/v1.0/actors/Counter/never/state/k")
        self.assertEqual((r.status, r.json()["errorCode"]), (400, "ERR_ACTOR_INSTANCE_MISSING"), r)
        r = request(d.app_socket("host"), "POST", "/v1.0/actors/Counter/never/state", body=b"[]")
        self.assertEqual((r.status, r.json()["errorCode"]), (400, "ERR_ACTOR_INSTANCE_MISSING"), r)
        # bad bodies change nothing
        for bad in (b"{}", b"not json", b'[{"operation": "upsert", "request": {"value": 1}}]'):
            r = request(d.app_socket("host"), "POST", "/v1.0/actors/Counter/s1/state", body=bad)
            self.assertEqual((r.status, r.json()["errorCode"]), (400, "ERR_MALFORMED_REQUEST"), (bad, r))
        r = request(d.app_socket("host"), "POST", "/v1.0/actors/Counter/s1/state",
                    body=b'[{"operation": "merge", "request": {"key": "k", "value": 1}}]')
        self.assertEqual(r.status, 400, r)
        r = request(d.app_socket("host"), "GET", "/v1.0/actors/Counter/s1/state/k")
        self.assertEqual(r.body, b'{"v":1}')

    # ---- timers ----

    def test_timers_fire_periodically_and_stop(self):
        d, app = self.start()
        # a timer needs an active actor
        r = request(d.app_socket("host"), "POST", "/v1.0/actors/Counter/t0/timers/tick", body=b'{"period": "1s"}')
        self.assertEqual((r.status, r.json()["errorCode"]), (500, "ERR_ACTOR_TIMER_CREATE"), r)
        spec = {"name": "tick", "dueTime": "0s", "period": "150ms", "callback": "onTick", "data": {"x": [1, 2]}}
        r = self.call(d, "caller", "Counter", "t1", "settimer", body=json.dumps(spec).encode()).json()
        self.assertEqual(r["status"], 204, r)
        wait_for(lambda: len(app.entries("timer", id="t1")) >= 3, what="3 timer fires")
        fire = app.entries("timer", id="t1")[0]
        self.assertEqual(fire["body"], {"callback": "onTick", "data": {"x": [1, 2]}, "dueTime": "0s",
                                        "period": "150ms"})
        r = request(d.app_socket("host"), "DELETE", "/v1.0/actors/Counter/t1/timers/tick")
        self.assertEqual(r.status, 204, r)
        n = len(app.entries("timer", id="t1"))
        time.sleep(0.6)
        self.assertLessEqual(len(app.entries("timer", id="t1")), n + 1)  # one may have been on its way
        # X-DaprReminderCancel: true stops it after one fire; bad periods are refused
        spec = {"name": "once", "period": "100ms", "data": {"cancel": True}}
        self.assertEqual(self.call(d, "caller", "Counter", "t2", "settimer",
                                   body=json.dumps(spec).encode()).json()["status"], 204)
        wait_for(lambda: app.entries("timer", id="t2"), what="the cancelling timer's fire")
        time.sleep(0.5)
        self.assertEqual(len(app.entries("timer", id="t2")), 1)
        spec = {"name": "bad", "period": "1d"}
        r = self.call(d, "caller", "Counter", "t2", "settimer", body=json.dumps(spec).encode()).json()
        self.assertEqual(r["status"], 500, r)
        self.assertEqual(json.loads(r["body"])["errorCode"], "ERR_ACTOR_TIMER_CREATE")

    # ---- reminders ----

    def reminder(self, d, aid, name, body, app_id="host", verb="POST"):
        return request(d.app_socket(app_id), verb, f"/v1.0/actors/Counter/{aid}/reminders/{name}",
                       body=json.dumps(body).encode() if isinstance(body, dict) else body)

    def test_reminders_api_repetitions_ttl_and_errors(self):
        d, app = self.start()
        r = self.reminder(d, "m1", "rep", {"dueTime": "0s", "period": "R3/PT1S", "data": {"hello": "world"}})
        self.assertEqual(r.status, 204, r)
        r = request(d.app_socket("host"), "GET", "/v1.0/actors/Counter/m1/reminders/rep")
        self.assertEqual(r.json(), {"data": {"hello": "world"}, "dueTime": "0s", "period": "R3/PT1S"})
        r = request(d.app_socket("host"), "GET", "/v1.0/actors/Counter/m1/reminders/none")
        self.assertEqual((r.status, r.body), (200, b"null"))
        # ttl ends a periodic reminder
        self.assertEqual(self.reminder(d, "m2", "ttl", {"period": "200ms", "ttl": "1s"}).status, 204)
        wait_for(lambda: len(app.entries("remind", id="m1")) == 3, what="3 repetitions")
        fire = app.entries("remind", id="m1", name="rep")[0]
        self.assertEqual(fire["body"], {"data": {"hello": "world"}, "dueTime": "0s", "period": "R3/PT1S"})
        time.sleep(1.3)
        self.assertEqual(len(app.entries("remind", id="m1")), 3)
        n_ttl = len(app.entries("remind", id="m2"))
        self.assertGreaterEqual(n_ttl, 2)
        self.assertLessEqual(n_ttl, 6)
        time.sleep(0.5)
        self.assertEqual(len(app.entries("remind", id="m2")), n_ttl)
        # bad durations and bodies: Dapr's errors, nothing stored
        for body, status, code in ((b"not json", 400, "ERR_MALFORMED_REQUEST"),
                                   ({"period": "1d"}, 500, "ERR_ACTOR_REMINDER_CREATE"),
                                   ({"period": "R0/PT1S"}, 500, "ERR_ACTOR_REMINDER_CREATE"),
                                   ({"dueTime": "tomorrow"}, 500, "ERR_ACTOR_REMINDER_CREATE"),
                                   ({"dueTime": 5}, 400, "ERR_MALFORMED_REQUEST"),
                                   ({"ttl": "2000-01-01T00:00:00Z"}, 500, "ERR_ACTOR_REMINDER_CREATE")):
            r = self.reminder(d, "m3", "bad", body)
            self.assertEqual((r.status, r.json()["errorCode"]), (status, code), (body, r))
        r = request(d.app_socket("host"), "GET", "/v1.0/actors/Counter/m3/reminders/bad")
        self.assertEqual(r.body, b"null")
        # only the app hosting the type manages its reminders
        r = self.reminder(d, "m3", "x", {"dueTime": "1h"}, app_id="caller")
        self.assertEqual((r.status, r.json()["errorCode"]), (403, "ERR_ACTOR_REMINDER_NON_HOSTED"), r)
        # delete is immediate
        self.assertEqual(self.reminder(d, "m4", "later", {"dueTime": "1s"}).status, 204)
        self.assertEqual(self.reminder(d, "m4", "later", b"", verb="DELETE").status, 204)
        time.sleep(1.5)
        self.assertEqual(app.entries("remind", id="m4"), [])
        # mooringctl-side view: the admin listing
        r = d.get("/mooring/v1/actors/Counter/m1/reminders")
        self.assertEqual(r.json(), [])

    def test_reminders_survive_sigkill_and_fire_once(self):
        d, app = self.start(use_socket_activation=False)
        self.assertEqual(self.reminder(d, "k1", "missed", {"dueTime": "1s", "data": "m"}).status, 204)
        self.assertEqual(self.reminder(d, "k1", "later", {"dueTime": "4s", "data": "l"}).status, 204)
        self.assertEqual(self.reminder(d, "k1", "fired", {"dueTime": "0s", "data": "f"}).status, 204)
        # a periodic one: what is stored after a fire is where its schedule stands (fires left)
        self.assertEqual(self.reminder(d, "k1", "twice", {"dueTime": "0s", "period": "R2/PT30S"}).status, 204)
        wait_for(lambda: app.entries("remind", id="k1", name="fired"), what="the immediate reminder")
        wait_for(lambda: app.entries("remind", id="k1", name="twice"), what="the periodic reminder's first fire")
        time.sleep(0.3)  # its removal is written
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        time.sleep(1.5)  # "missed" falls due while the daemon is down
        self.assertEqual(app.entries("remind", id="k1", name="missed"), [])
        d.start()
        wait_for(lambda: app.entries("remind", id="k1", name="missed"), what="the missed reminder after restart")
        wait_for(lambda: app.entries("remind", id="k1", name="later"), what="the later reminder after restart")
        self.assertEqual(app.entries("remind", id="k1", name="later")[0]["body"]["data"], "l")
        time.sleep(0.5)
        d.stop()
        d.start()
        self.wait_hosted(d)
        time.sleep(1.0)
        for name in ("missed", "later", "fired", "twice"):
            self.assertEqual(len(app.entries("remind", id="k1", name=name)), 1, name)

    def test_reminders_due_at_once_fire_once_each_a_bounded_number_at_a_time(self):
        """Many reminders due at the same moment: each fires once, and at most 128 (mooringd's
        FIRES_IN_APP_MAX) are in the app at once; the rest wait their turn instead of each opening
        its own connection (100,000 of them ran the ephemeral ports out)."""
        d, app = self.start()
        n, threads = 300, 10
        due_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 8))
        statuses = []

        def register(k):
            for i in range(k, n, threads):
                statuses.append(self.reminder(d, f"b{i}", "burst", {"dueTime": due_at, "data": {"ms": 200}}).status)

        ts = [threading.Thread(target=register, args=(k,)) for k in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        self.assertEqual(statuses, [204] * n)
        wait_for(lambda: len(app.entries("remind", name="burst")) >= n, timeout=60, interval=0.2,
                 what=f"{n} reminder fires")
        fires = app.entries("remind", name="burst")
        self.assertEqual(sorted(e["id"] for e in fires), sorted(f"b{i}" for i in range(n)))
        most = max(e["firing"] for e in fires)
        self.assertLessEqual(most, 128, "more fires in the app at once than mooringd allows an app")
        self.assertGreater(most, 1, "the fires never overlapped")
        wait_for(lambda: {t["type"]: t for t in d.get("/mooring/v1/actors").json()}["Counter"]["reminders"] == 0,
                 what="the fired reminders removed")
        time.sleep(0.5)
        self.assertEqual(len(app.entries("remind", name="burst")), n)

    def test_reminder_record_written_by_dapr_reads_back(self):
        """A reminder record in Dapr's shape (no fields of ours) in the actor store fires once."""
        import sqlite3
        d = self.daemon(start=False, apps={"caller": "[App]\n"})
        app = AppProcess(d.tmp, d.app_socket("host")).start()
        self.apps.append(app)
        d.write_app("host", f"[App]\nAppAddress={app.address}\nHealthCheckPath=/healthz\nHealthProbeInterval=100ms\n")
        os.makedirs(d.state, exist_ok=True)
        past = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
        record = [{"actorID": "d1", "actorType": "Counter", "name": "fromdapr", "data": {"by": "daprd"},
                   "period": "", "dueTime": "1m", "registeredTime": past},
                  {"actorID": "d2", "actorType": "Counter", "name": "periodic", "data": None,
                   "period": "1h", "dueTime": "0s", "registeredTime": past,
                   "expirationTime": "2000-01-01T00:00:00Z"}]
        db = sqlite3.connect(os.path.join(d.state, "actors.db"))
        db.execute("CREATE TABLE state (key TEXT NOT NULL PRIMARY KEY, value BLOB NOT NULL, etag TEXT NOT NULL,"
                   " expire_at INTEGER, update_time INTEGER)")
        db.execute("INSERT INTO state (key, value, etag) VALUES (?, ?, ?)",
                   ("actors||Counter", json.dumps(record).encode(), "1"))
        db.commit()
        db.close()
        d.start()
        self.wait_hosted(d)
        wait_for(lambda: app.entries("remind", id="d1"), what="the reminder daprd stored")
        self.assertEqual(app.entries("remind", id="d1")[0]["body"], {"data": {"by": "daprd"}, "dueTime": "1m",
                                                                     "period": ""})
        time.sleep(1.0)
        self.assertEqual(len(app.entries("remind", id="d1")), 1)
        # an expired one is dropped without a fire
        self.assertEqual(app.entries("remind", id="d2"), [])

    # ---- reminder storage partitions (remindersStoragePartitions) ----

    def restart_app(self, d, app, config):
        """The host app again with another /dapr/config, the daemon stopped meanwhile."""
        d.stop()
        app.kill()
        app = AppProcess(d.tmp, d.app_socket("host"), config=config).start()
        self.apps.append(app)
        d.start()
        self.wait_hosted(d)
        return app

    def stored(self, d):
        """The actor store's rows for type Counter's reminders: {key: parsed value}."""
        import sqlite3
        db = sqlite3.connect(os.path.join(d.state, "actors.db"), timeout=10)
        try:
            rows = db.execute("SELECT key, value FROM state WHERE key LIKE 'actors||Counter%'").fetchall()
        finally:
            db.close()
        return {k: json.loads(v) for k, v in rows}

    def layout(self, d):
        """(partition count, {partition number: sorted [(actorID, name)]}) as the store holds them,
        read the way daprd reads them (the metadata names the partitions)."""
        rows = self.stored(d)
        meta = rows.get("actors||Counter||metadata")
        n = meta["actorRemindersMetadata"]["partitionCount"] if meta else 0
        if n == 0:
            return 0, {0: sorted((r["actorID"], r["name"]) for r in rows.get("actors||Counter", []))}
        return n, {i: sorted((r["actorID"], r["name"]) for r in rows[f"actors||Counter||{meta['id']}||reminders||{i}"])
                   for i in range(1, n + 1)}

    @staticmethod
    def dapr_partition(aid, name, n):
        """daprd's partition of a reminder: FNV-1a (32 bits) over the actor id then the name."""
        h = 2166136261
        for b in (aid + name).encode():
            h = ((h ^ b) * 16777619) & 0xFFFFFFFF
        return h % n + 1

    def expect_layout(self, d, n, names):
        want = {i: [] for i in (range(1, n + 1) if n else [0])}
        for aid, name in names:
            want[self.dapr_partition(aid, name, n) if n else 0].append((aid, name))
        want = (n, {i: sorted(v) for i, v in want.items()})
        wait_for(lambda: self.layout(d) == want, what=f"the reminders stored in {n} partitions")

    def test_reminder_partitions_change_across_restarts_keep_every_reminder(self):
        d, app = self.start(use_socket_activation=False)
        names = [(f"p{i}", f"r{i % 3}") for i in range(40)]
        for aid, name in names:
            self.assertEqual(self.reminder(d, aid, name, {"dueTime": "1h", "data": {"of": aid}}).status, 204)
        self.expect_layout(d, 0, names)
        # an id that is no UTF-8 cannot be stored in a JSON record: refused, nothing stored
        r = self.reminder(d, "bad%FF", "x", {"dueTime": "1h"})
        self.assertEqual((r.status, r.json()["errorCode"]), (500, "ERR_ACTOR_REMINDER_CREATE"), r)
        for n in (4, 2, 7, 0):
            config = json.loads(json.dumps(CONFIG))
            config["entitiesConfig"].append({"entities": ["Counter"], "remindersStoragePartitions": n})
            app = self.restart_app(d, app, config)
            self.expect_layout(d, n, names)
            rows = self.stored(d)
            # the old layout's records are gone: the metadata's partitions (and no others) are there
            meta = rows.get("actors||Counter||metadata")
            self.assertEqual(sorted(rows), sorted(["actors||Counter||metadata", "actors||Counter"] if n == 0 else
                                                  ["actors||Counter||metadata"] +
                                                  [f"actors||Counter||{meta['id']}||reminders||{i}"
                                                   for i in range(1, n + 1)]))
            for aid, name in names:
                r = request(d.app_socket("host"), "GET", f"/v1.0/actors/Counter/{aid}/reminders/{name}")
                self.assertEqual(r.json(), {"data": {"of": aid}, "dueTime": "1h", "period": ""}, (n, aid, name))
            # the fire below (n == 2) was recorded: no second one after a restart (one log for all apps)
            self.assertEqual(len(app.entries("remind", id="p0", name="now")), 0 if n in (4, 2) else 1)
            if n == 2:
                # a fire is recorded in its partition: after it, the store no longer holds it
                self.assertEqual(self.reminder(d, "p0", "now", {"dueTime": "0s", "data": 1}).status, 204)
                wait_for(lambda: app.entries("remind", id="p0", name="now"), what="the fire")
                self.expect_layout(d, 2, names)
            # a registration goes to daprd's partition
            self.assertEqual(self.reminder(d, "extra", f"n{n}", {"dueTime": "1h"}).status, 204)
            self.expect_layout(d, n, names + [("extra", f"n{n}")])
            self.assertEqual(self.reminder(d, "extra", f"n{n}", b"", verb="DELETE").status, 204)
            self.expect_layout(d, n, names)
        # the app comes back with another count while the daemon runs: moved at once
        app.kill()
        health = lambda: {a["id"]: a["health"] for a in d.get("/mooring/v1/apps").json()}.get("host")
        wait_for(lambda: health() != "healthy", what="the app seen gone")
        config = json.loads(json.dumps(CONFIG))
        config["remindersStoragePartitions"] = 3
        app = AppProcess(d.tmp, d.app_socket("host"), config=config).start()
        self.apps.append(app)
        self.expect_layout(d, 3, names)
        self.assertEqual(self.reminder(d, "extra", "live", {"dueTime": "1h"}).status, 204)
        self.expect_layout(d, 3, names + [("extra", "live")])
        self.assertEqual(app.entries("remind", name="r0"), [])

    def test_reminder_partitions_written_by_dapr_read_back(self):
        """A store partitioned by daprd (metadata record + partitions under its id) loads, fires,
        and keeps daprd's layout id when the count is the one configured."""
        import sqlite3
        config = json.loads(json.dumps(CONFIG))
        config["remindersStoragePartitions"] = 3
        d = self.daemon(start=False, apps={"caller": "[App]\n"})
        app = AppProcess(d.tmp, d.app_socket("host"), config=config).start()
        self.apps.append(app)
        d.write_app("host", f"[App]\nAppAddress={app.address}\nHealthCheckPath=/healthz\nHealthProbeInterval=100ms\n")
        os.makedirs(d.state, exist_ok=True)
        past = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
        layout_id = "5d6a6a4e-2b0c-4d4b-9a57-0f3a1c2b7e11"
        records = {1: [], 2: [], 3: []}
        names = [(f"d{i}", "fromdapr") for i in range(9)]
        for aid, name in names:
            records[self.dapr_partition(aid, name, 3)].append(
                {"actorID": aid, "actorType": "Counter", "name": name, "data": {"by": aid}, "period": "",
                 "dueTime": "1m", "registeredTime": past})
        db = sqlite3.connect(os.path.join(d.state, "actors.db"))
        db.execute("CREATE TABLE state (key TEXT NOT NULL PRIMARY KEY, value BLOB NOT NULL, etag TEXT NOT NULL,"
                   " expire_at INTEGER, update_time INTEGER)")
        db.execute("INSERT INTO state (key, value, etag) VALUES (?, ?, ?)",
                   ("actors||Counter||metadata", json.dumps(
                       {"id": layout_id, "actorRemindersMetadata": {"partitionCount": 3}}).encode(), "1"))
        for i, recs in records.items():
            db.execute("INSERT INTO state (key, value, etag) VALUES (?, ?, ?)",
                       (f"actors||Counter||{layout_id}||reminders||{i}", json.dumps(recs).encode(), "1"))
        db.commit()
        db.close()
        d.start()
        self.wait_hosted(d)
        wait_for(lambda: len(app.entries("remind", name="fromdapr")) == 9, what="the reminders daprd stored")
        for aid, _ in names:
            self.assertEqual(app.entries("remind", id=aid)[0]["body"], {"data": {"by": aid}, "dueTime": "1m",
                                                                        "period": ""})
        self.assertEqual(self.reminder(d, "new", "one", {"dueTime": "1h"}).status, 204)
        self.expect_layout(d, 3, [("new", "one")])
        self.assertEqual(self.stored(d)["actors||Counter||metadata"]["id"], layout_id)
        time.sleep(0.5)
        self.assertEqual(len(app.entries("remind", name="fromdapr")), 9)

    # ---- lifecycle ----

    def test_idle_deactivation_and_app_that_comes_back(self):
        d, app = self.start()
        self.assertEqual(self.call(d, "caller", "Idle", "i1", "echo").status, 200)
        wait_for(lambda: app.entries("deactivate", type="Idle", id="i1"), what="DELETE /actors/Idle/i1")
        m = d.get("/v1.0/metadata", target=d.app_socket("host")).json()
        self.assertEqual({a["type"]: a["count"] for a in m["actorRuntime"]["activeActors"]}["Idle"], 0)
        # the app goes away: calls fail with Dapr's error; it comes back: calls work again
        app.kill()
        r = self.call(d, "caller", "Counter", "c1", "echo")
        self.assertEqual((r.status, r.json()["errorCode"]), (500, "ERR_ACTOR_INVOKE_METHOD"), r)
        app.start()
        wait_for(lambda: self.call(d, "caller", "Counter", "c1", "echo").status == 200, what="the app back")


    # ---- D-Bus and mooringctl: the same block code ----

    def test_dbus_and_mooringctl(self):
        d, app = self.start(bus=True)

        def ay(b):
            return [len(b)] + list(b)

        def data(p):
            return bytes(json.loads(p.stdout)["data"][0])

        # any caller may call an actor; data goes as the body, the answer comes back
        p = d.call("InvokeActor", "ssssay", "", "Counter", "b1", "echo", *ay(b'{"a":1}'))
        self.assertEqual(data(p), b'{"a":1}')
        p = d.call("InvokeActor", "ssssay", "", "Counter", "b1", "fail", 0, check=False)
        self.assertIn("error from actor service: boom", p.stderr + p.stdout)
        p = d.call("InvokeActor", "ssssay", "", "Nope", "b1", "echo", 0, check=False)
        self.assertIn("No app hosts that actor type", p.stderr + p.stdout)
        # state as the hosting app (root may act as any app)
        d.call("ExecuteActorStateTransaction", "sssa(ssay)", "host", "Counter", "b1", 1, "upsert", "k", *ay(b"12"))
        p = d.call("GetActorState", "ssss", "host", "Counter", "b1", "k")
        found, value = json.loads(p.stdout)["data"]
        self.assertEqual((found, bytes(value)), (True, b"12"))
        r = request(d.app_socket("host"), "GET", "/v1.0/actors/Counter/b1/state/k")
        self.assertEqual(r.body, b"12")
        p = d.call("GetActorState", "ssss", "caller", "Counter", "b1", "k", check=False)
        self.assertIn("not active on this host", p.stderr + p.stdout)
        # reminders and timers
        d.call("RegisterActorReminder", "sssssssay", "host", "Counter", "b1", "r", "0s", "", "", *ay(b'"x"'))
        wait_for(lambda: app.entries("remind", id="b1", name="r"), what="the reminder set over D-Bus")
        self.assertEqual(app.entries("remind", id="b1", name="r")[0]["body"]["data"], "x")
        p = d.call("RegisterActorReminder", "sssssssay", "host", "Counter", "b1", "bad", "", "1d", "", 0,
                   check=False)
        self.assertIn("period:", p.stderr + p.stdout)
        p = d.call("RegisterActorReminder", "sssssssay", "caller", "Counter", "b1", "x", "1h", "", "", 0,
                   check=False)
        self.assertIn("does not host that actor type", p.stderr + p.stdout)
        d.call("RegisterActorReminder", "sssssssay", "host", "Counter", "b1", "later", "1h", "PT1H", "", 0)
        d.call("RegisterActorTimer", "ssssssssay", "host", "Counter", "b1", "t", "0s", "100ms", "", "cb",
               *ay(b'{"cancel": true}'))
        wait_for(lambda: app.entries("timer", id="b1", name="t"), what="the timer set over D-Bus")
        d.call("UnregisterActorTimer", "ssss", "host", "Counter", "b1", "t")
        # mooringctl
        env = {"PATH": os.environ.get("PATH", "")}
        ctl = [MOORINGCTL, f"--bus-address={d.dbus.address}"]
        p = subprocess.run(ctl + ["actors", "--json"], capture_output=True, text=True, env=env, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        types = {t["type"]: t for t in json.loads(p.stdout)}
        self.assertEqual((types["Counter"]["app"], types["Counter"]["active"]), ("host", 1))
        p = subprocess.run(ctl + ["actor", "invoke", "Counter", "b2", "echo", "--data", "hello"],
                           capture_output=True, text=True, env=env, timeout=30)
        self.assertEqual((p.returncode, p.stdout), (0, "hello"), p.stderr)
        p = subprocess.run(ctl + ["actor", "invoke", "Counter", "b2", "fail"], capture_output=True, text=True,
                           env=env, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("boom", p.stderr)
        p = subprocess.run(ctl + ["actor", "reminders", "Counter", "b1", "--json"], capture_output=True, text=True,
                           env=env, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual([(r["name"], r["period"], r["firesLeft"]) for r in json.loads(p.stdout)],
                         [("later", "PT1H", -1)])
        p = subprocess.run(ctl + ["actor", "invoke", "Counter"], capture_output=True, text=True, env=env, timeout=30)
        self.assertEqual(p.returncode, 2)


if __name__ == "__main__":
    main()
