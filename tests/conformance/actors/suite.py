#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Actor conformance: the actor block against every transactional state driver.

MOORING_STATE_DRIVER picks the driver exactly as the state suite does (its DRIVERS table,
server fixtures and component YAML are reused). The store under test is marked
actorStateStore: "true"; a real app process (tests/integration/actorapp.py) hosts the actor
type Counter. Checked per driver: the store is the actor store (ACTOR capability), actor
state transactions are atomic and kept per actor id, and reminders are stored in it: they
fire with their data, also after the daemon was killed and started again when the driver is
durable.
"""

import importlib.util
import json
import os
import signal
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("state_suite", os.path.join(HERE, "..", "state", "suite.py"))
state_suite = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(state_suite)

import harness  # noqa: E402  (on the path through the state suite)
from harness import DaemonTestCase, request, skip_or_fail, wait_for  # noqa: E402
from test_actors import AppProcess  # noqa: E402

CONFIG = {"entities": ["Counter"]}


class ActorStoreCase(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.app = None

    def tearDown(self):
        if self.app:
            self.app.kill()

    def start(self, use_socket_activation=True):
        d = self.daemon(start=False, apps={"caller": "[App]\n"}, use_socket_activation=use_socket_activation)
        d.write_component("store.yaml", state_suite.component(d.tmp, "store", extra=[("actorStateStore", "true")]))
        self.app = AppProcess(d.tmp, d.app_socket("host"), CONFIG).start()
        d.write_app("host", f"[App]\nAppAddress={self.app.address}\nHealthCheckPath=/healthz\n"
                            "HealthProbeInterval=100ms\n")
        d.start()
        self.wait_hosted(d)
        return d

    def wait_hosted(self, d):
        def ready():
            r = d.get("/mooring/v1/actors")
            return r.status == 200 and any(t["type"] == "Counter" and t["reminderState"] == "loaded"
                                           for t in r.json())
        wait_for(ready, what="actor type Counter hosted")

    def call(self, d, aid, method, body=b"", query=""):
        return request(d.app_socket("caller"), "PUT",
                       f"/v1.0/actors/Counter/{aid}/method/{method}" + (f"?{query}" if query else ""), body=body)

    def test_actor_store_and_atomic_state(self):
        d = self.start()
        m = d.get("/v1.0/metadata", target=d.app_socket("host")).json()
        caps = {c["name"]: c["capabilities"] for c in m["components"]}
        self.assertIn("ACTOR", caps["store"])
        self.assertEqual(self.call(d, "a1", "echo").status, 200)  # active now
        host = d.app_socket("host")
        ops = [{"operation": "upsert", "request": {"key": "k1", "value": {"n": 1}}},
               {"operation": "upsert", "request": {"key": "k2", "value": "two"}}]
        r = request(host, "POST", "/v1.0/actors/Counter/a1/state", body=json.dumps(ops).encode())
        self.assertEqual(r.status, 204, r)
        self.assertEqual(request(host, "GET", "/v1.0/actors/Counter/a1/state/k1").body, b'{"n":1}')
        # all or nothing: a stale etag fails the whole transaction, k2 keeps its value. The etag is
        # on a key that exists: Dapr's Redis store takes an etag on a missing key (state.redis does too)
        ops = [{"operation": "upsert", "request": {"key": "k2", "value": "changed"}},
               {"operation": "upsert", "request": {"key": "k1", "value": {"n": 2}, "etag": "999999"}}]
        r = request(host, "POST", "/v1.0/actors/Counter/a1/state", body=json.dumps(ops).encode())
        self.assertEqual((r.status, r.json()["errorCode"]), (500, "ERR_ACTOR_STATE_TRANSACTION_SAVE"), r)
        self.assertEqual(request(host, "GET", "/v1.0/actors/Counter/a1/state/k1").body, b'{"n":1}')
        self.assertEqual(request(host, "GET", "/v1.0/actors/Counter/a1/state/k2").body, b'"two"')
        # another actor of the type sees none of it
        self.assertEqual(self.call(d, "a2", "echo").status, 200)
        self.assertEqual(request(host, "GET", "/v1.0/actors/Counter/a2/state/k1").status, 204)
        r = request(host, "POST", "/v1.0/actors/Counter/a1/state",
                    body=json.dumps([{"operation": "delete", "request": {"key": "k2"}}]).encode())
        self.assertEqual(r.status, 204, r)
        self.assertEqual(request(host, "GET", "/v1.0/actors/Counter/a1/state/k2").status, 204)

    def test_reminders_live_in_the_store(self):
        durable = state_suite.DURABLE in state_suite.DRIVER["features"]
        d = self.start(use_socket_activation=False)
        host = d.app_socket("host")
        r = request(host, "POST", "/v1.0/actors/Counter/r1/reminders/now",
                    body=json.dumps({"dueTime": "0s", "data": {"x": 1}}).encode())
        self.assertEqual(r.status, 204, r)
        wait_for(lambda: self.app.entries("remind", id="r1", name="now"), what="the reminder")
        self.assertEqual(self.app.entries("remind", id="r1", name="now")[0]["body"]["data"], {"x": 1})
        r = request(host, "POST", "/v1.0/actors/Counter/r1/reminders/later",
                    body=json.dumps({"dueTime": "3s", "period": "R2/PT1S", "data": "l"}).encode())
        self.assertEqual(r.status, 204, r)
        if not durable:
            wait_for(lambda: len(self.app.entries("remind", id="r1", name="later")) == 2, what="two fires")
            return
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        d.start()
        wait_for(lambda: len(self.app.entries("remind", id="r1", name="later")) == 2,
                 what="two fires of the reminder registered before the kill")
        time.sleep(1.5)
        self.assertEqual(len(self.app.entries("remind", id="r1", name="later")), 2)
        self.assertEqual(len(self.app.entries("remind", id="r1", name="now")), 1)


def main():
    if state_suite.DRIVER is None:
        print(f"unknown MOORING_STATE_DRIVER={state_suite.DRIVER_NAME!r}", file=sys.stderr)
        sys.exit(1)
    harness.require("systemd-socket-activate")
    if not os.path.exists(harness.MOORINGD):
        skip_or_fail(f"{harness.MOORINGD} not built")
    signal.signal(signal.SIGTERM, state_suite._terminate)
    server = state_suite.start_server()
    try:
        if server is not None:
            server.start()
            state_suite.SERVER = server
        state_suite.preflight()
        prog = unittest.main(argv=[sys.argv[0]] + sys.argv[1:], exit=False, verbosity=2)
    finally:
        if server is not None:
            server.close()
    r = prog.result
    sys.exit(0 if r.wasSuccessful() and r.testsRun > 0 else 1)


if __name__ == "__main__":
    main()
