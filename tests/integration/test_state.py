#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""State block integration: the embedded default store, durability of acknowledged
saves across SIGKILL, and stores following their components across reloads.
(Per-driver behaviour is the conformance suite's job: tests/conformance/state.)"""

import json
import os
import signal
import threading

from harness import DaemonTestCase, main, request, wait_for

APP = "[App]\n"


def save(sock, key, value):
    return request(sock, "POST", "/v1.0/state/statestore", body=json.dumps([{"key": key, "value": value}]).encode())


class StateTest(DaemonTestCase):
    def test_default_store_is_sqlite_in_the_state_dir(self):
        d = self.daemon(apps={"a": APP})
        m = d.get("/v1.0/metadata", target=d.app_socket("a")).json()
        comp = [c for c in m["components"] if c["name"] == "statestore"][0]
        self.assertEqual(comp["type"], "state.sqlite")
        self.assertEqual(sorted(comp["capabilities"]), ["ETAG", "QUERY_API", "TRANSACTIONAL", "TTL"])
        self.assertEqual(save(d.app_socket("a"), "k", {"v": 1}).status, 204)
        self.assertTrue(os.path.exists(os.path.join(d.state, "state.db")))

    def test_acknowledged_saves_survive_sigkill(self):
        d = self.daemon(apps={"a": APP}, use_socket_activation=False)
        sock = d.app_socket("a")
        acked, stop = [], threading.Event()

        def writer(n):
            i = 0
            while not stop.is_set():
                key = f"w{n}-{i}"
                try:
                    r = save(sock, key, {"i": i, "pad": "x" * 200})
                except OSError:
                    return  # the daemon died under us: unacknowledged, fine
                if r.status == 204:
                    acked.append(key)
                i += 1

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        wait_for(lambda: len(acked) >= 300, what="300 acknowledged saves")
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        stop.set()
        for t in threads:
            t.join()
        n_acked = len(acked)
        # same directories, new process
        d.start()
        keys = list(acked)
        missing = []
        for i in range(0, len(keys), 100):
            r = request(sock, "POST", "/v1.0/state/statestore/bulk",
                        body=json.dumps({"keys": keys[i:i + 100]}).encode())
            self.assertEqual(r.status, 200)
            missing += [it["key"] for it in r.json() if "data" not in it]
        self.assertEqual(missing, [], f"{len(missing)} of {n_acked} acknowledged saves lost")

    def test_stores_follow_components_across_reload(self):
        mem = ("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: cache\n"
               "spec:\n  type: state.in-memory\n")
        d = self.daemon(apps={"a": APP}, components={"cache.yaml": mem})
        sock = d.app_socket("a")
        r = request(sock, "POST", "/v1.0/state/cache", body=b'[{"key":"k","value":1}]')
        self.assertEqual(r.status, 204)
        # the built-in statestore is there only while no state component is configured
        self.assertEqual(request(sock, "GET", "/v1.0/state/statestore/k").status, 400)

        # an unchanged component keeps its store (and its in-memory data) over a reload
        n = len(d.notify.messages)
        d.signal(signal.SIGHUP)
        d.notify.wait("READY=1", after=n)
        self.assertEqual(request(sock, "GET", "/v1.0/state/cache/k").body, b"1")

        # a changed one is a new store; a removed one disappears
        d.write_component("cache.yaml", mem + "  metadata:\n  - name: keyPrefix\n    value: none\n")
        n = len(d.notify.messages)
        d.signal(signal.SIGHUP)
        d.notify.wait("READY=1", after=n)
        self.assertEqual(request(sock, "GET", "/v1.0/state/cache/k").status, 204)
        os.unlink(os.path.join(d.config, "components", "cache.yaml"))
        n = len(d.notify.messages)
        d.signal(signal.SIGHUP)
        d.notify.wait("READY=1", after=n)
        self.assertEqual(request(sock, "GET", "/v1.0/state/cache/k").status, 400)
        self.assertEqual(request(sock, "GET", "/v1.0/state/statestore/k").status, 204)

    def test_bad_driver_metadata_is_reported_and_the_rest_works(self):
        bad = ("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pg\n"
               "spec:\n  type: state.postgresql\n")
        good = ("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: mem\n"
                "spec:\n  type: state.in-memory\n")
        d = self.daemon(apps={"a": APP}, components={"pg.yaml": bad, "mem.yaml": good})
        self.assertIn("pg.yaml:1: field 'spec.metadata': state store 'pg' (state.postgresql):", d.log())
        self.assertIn("connectionString", d.log())
        self.assertEqual(request(d.app_socket("a"), "POST", "/v1.0/state/mem", body=b'[{"key":"k","value":2}]').status,
                         204)
        r = request(d.app_socket("a"), "GET", "/v1.0/state/pg/k")
        self.assertEqual((r.status, r.json()["errorCode"]), (400, "ERR_STATE_STORE_NOT_FOUND"))

    def test_metadata_from_secret_store_and_env(self):
        """connectionString from secretKeyRef (secretstores.local.file), tableName from envRef."""
        import tempfile
        tmp = tempfile.mkdtemp(prefix="mooring-secrets-")
        self.addCleanup(__import__("shutil").rmtree, tmp, True)
        db = os.path.join(tmp, "from-secret.db")
        with open(os.path.join(tmp, "secrets.json"), "w") as f:
            json.dump({"db": {"path": db}}, f)
        comps = {
            "secrets.yaml": ("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: localsecrets\n"
                             "spec:\n  type: secretstores.local.file\n  metadata:\n  - name: secretsFile\n"
                             f"    value: {tmp}/secrets.json\n"),
            "store.yaml": ("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: sec\n"
                           "spec:\n  type: state.sqlite\n  metadata:\n  - name: connectionString\n"
                           "    secretKeyRef:\n      name: db:path\n  - name: tableName\n"
                           "    envRef: MOORING_TEST_TABLE\nauth:\n  secretStore: localsecrets\n"),
            "broken.yaml": ("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: broken\n"
                            "spec:\n  type: state.sqlite\n  metadata:\n  - name: connectionString\n"
                            "    secretKeyRef:\n      name: nope\nauth:\n  secretStore: localsecrets\n"),
        }
        d = self.daemon(apps={"a": APP}, components=comps, env={"MOORING_TEST_TABLE": "from_env"})
        r = request(d.app_socket("a"), "POST", "/v1.0/state/sec", body=b'[{"key":"k","value":7}]')
        self.assertEqual(r.status, 204, d.log())
        self.assertTrue(os.path.exists(db))
        import sqlite3
        rows = sqlite3.connect(db).execute("SELECT count(*) FROM from_env").fetchone()[0]
        self.assertEqual(rows, 1)
        self.assertIn("broken.yaml", d.log())
        self.assertIn("secret 'nope' for 'connectionString' from store 'localsecrets': no such secret", d.log())
        self.assertNotIn(db, d.log())  # secret values are not logged


if __name__ == "__main__":
    main()
