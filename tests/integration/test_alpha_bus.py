#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The alpha APIs over D-Bus (TryLock, Unlock, QueryState, GetConfiguration) on a private
dbus-daemon: the same blocks as HTTP, so what one front-end does the other sees."""

import json
import os
import sqlite3
import subprocess

from harness import MOORINGCTL, DaemonTestCase, main, request, require


class AlphaBusTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        require("dbus-daemon", "busctl")
        self.d = self.daemon(bus=True, apps={"a": "[App]\n", "b": "[App]\n"})

    def data(self, *args):
        return json.loads(self.d.call(*args).stdout)["data"]

    def error(self, method, *args):
        """The D-Bus error name of a failing call (gdbus prints it, busctl only the message)."""
        require("gdbus")
        p = subprocess.run(["gdbus", "call", "--address", self.d.dbus.address, "--dest", "org.mooring.Runtime1",
                            "--object-path", "/org/mooring/Runtime1", "--method", "org.mooring.Runtime1." + method]
                           + [str(a) for a in args], capture_output=True, text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        return p.stderr.split("org.mooring.Runtime1.Error.", 1)[1].split(":", 1)[0]

    def http(self, path, body, app="a"):
        return request(self.d.app_socket(app), "POST", path, body=json.dumps(body).encode())

    def test_lock(self):
        d = self.d
        # we are root: we may act as any app
        self.assertEqual(self.data("TryLock", "ssssi", "a", "lockstore", "r", "o1", 60), [True])
        self.assertEqual(self.data("TryLock", "ssssi", "a", "lockstore", "r", "o2", 60), [False])
        # HTTP as app a sees the same lease; app b has its own resources
        r = self.http("/v1.0-alpha1/lock/lockstore", {"resourceId": "r", "lockOwner": "o3", "expiryInSeconds": 5})
        self.assertEqual(r.json(), {"success": False})
        self.assertEqual(self.data("TryLock", "ssssi", "b", "lockstore", "r", "o2", 60), [True])
        self.assertEqual(self.data("Unlock", "ssss", "a", "lockstore", "r", "o2"), [2])
        self.assertEqual(self.data("Unlock", "ssss", "a", "lockstore", "r", "o1"), [0])
        self.assertEqual(self.data("Unlock", "ssss", "a", "lockstore", "r", "o1"), [1])
        # errors have D-Bus names
        self.assertEqual(self.error("TryLock", "a", "nostore", "r", "o", 5), "NoSuchStore")
        self.assertEqual(self.error("TryLock", "a", "lockstore", "r", "o", 0), "InvalidArgument")
        self.assertEqual(self.error("TryLock", "a", "lockstore", "x||y", "o", 5), "InvalidArgument")
        self.assertEqual(self.error("TryLock", "ghost", "lockstore", "r", "o", 5), "NoSuchApp")
        self.assertEqual(self.error("Unlock", "a", "lockstore", "", "o"), "InvalidArgument")

    def test_query_state(self):
        d = self.d
        r = request(d.app_socket("a"), "POST", "/v1.0/state/statestore",
                    body=json.dumps([{"key": f"k{i}", "value": {"n": i, "even": i % 2 == 0}} for i in range(5)]).encode())
        self.assertEqual(r.status, 204, r)
        q = json.dumps({"filter": {"EQ": {"even": True}}, "sort": [{"key": "n", "order": "DESC"}],
                        "page": {"limit": 2}})
        items, token = self.data("QueryState", "sss", "a", "statestore", q)
        self.assertEqual([(i[0], json.loads(bytes(i[1]))) for i in items],
                         [("k4", {"n": 4, "even": True}), ("k2", {"n": 2, "even": True})])
        self.assertEqual(token, "2")
        # b's query sees none of a's keys
        items, token = self.data("QueryState", "sss", "b", "statestore", q)
        self.assertEqual((items, token), ([], ""))
        self.assertEqual(self.error("QueryState", "a", "statestore", "'{not json'"), "InvalidArgument")
        self.assertEqual(self.error("QueryState", "a", "nostore", "'{}'"), "NoSuchStore")

    def test_get_configuration(self):
        d = self.d
        with sqlite3.connect(os.path.join(d.state, "configuration.db")) as db:
            db.execute("INSERT INTO configuration (key, value, version, metadata) VALUES "
                       "('k', 'v', '7', '{\"m\":\"x\"}')")
        (items,) = self.data("GetConfiguration", "ssas", "a", "configstore", 1, "k")
        self.assertEqual(items, [["k", "v", "7", {"m": "x"}]])
        r = request(d.app_socket("a"), "GET", "/v1.0/configuration/configstore?key=k")
        self.assertEqual(r.json(), {"k": {"value": "v", "version": "7", "metadata": {"m": "x"}}})
        self.assertEqual(self.error("GetConfiguration", "a", "nostore", "@as []"), "NoSuchStore")

    def ctl(self, *args):
        env = dict(os.environ)
        env.pop("MOORING_SOCKET", None)
        return subprocess.run([MOORINGCTL, f"--bus-address={self.d.dbus.address}"] + list(args),
                              capture_output=True, text=True, timeout=30, env=env)

    def test_mooringctl(self):
        """mooringctl lock, unlock, state query and configuration get go through the same methods."""
        p = self.ctl("lock", "--app=a", "lockstore", "res", "me", "60")
        self.assertEqual((p.returncode, json.loads(p.stdout)), (0, {"success": True}), p.stderr)
        p = self.ctl("lock", "lockstore", "res", "you", "60", "--app=a")
        self.assertEqual((p.returncode, json.loads(p.stdout)), (1, {"success": False}), p.stderr)
        self.assertIn("locked by another owner", p.stderr)
        p = self.ctl("unlock", "--app=a", "lockstore", "res", "you")
        self.assertEqual((p.returncode, json.loads(p.stdout)), (1, {"status": 2}), p.stderr)
        p = self.ctl("unlock", "--app=a", "lockstore", "res", "me")
        self.assertEqual((p.returncode, json.loads(p.stdout)), (0, {"status": 0}), p.stderr)
        p = self.ctl("lock", "--app=a", "lockstore", "res", "me", "0")
        self.assertEqual(p.returncode, 2, p.stderr)
        p = self.ctl("lock", "--app=a", "nostore", "res", "me", "5")
        self.assertEqual(p.returncode, 1)
        self.assertIn("no store 'nostore'", p.stderr)

        r = request(self.d.app_socket("a"), "POST", "/v1.0/state/statestore",
                    body=json.dumps([{"key": "x", "value": {"n": 1}}, {"key": "y", "value": {"n": 2}}]).encode())
        self.assertEqual(r.status, 204, r)
        p = self.ctl("state", "query", "--app=a", "statestore", '{"filter":{"EQ":{"n":2}}}')
        self.assertEqual(p.returncode, 0, p.stderr)
        out = json.loads(p.stdout)
        self.assertEqual([(i["key"], i["data"]) for i in out["results"]], [("y", {"n": 2})])
        p = self.ctl("state", "query", "--app=a", "statestore", '{"filter":{"LIKE":{}}}')
        self.assertEqual(p.returncode, 1)

        with sqlite3.connect(os.path.join(self.d.state, "configuration.db")) as db:
            db.execute("INSERT INTO configuration (key, value, version) VALUES ('c1', 'one', '1'), ('c2', 'two', '')")
        p = self.ctl("configuration", "get", "--app=b", "configstore", "c1", "c2")
        self.assertEqual((p.returncode, json.loads(p.stdout)),
                         (0, {"c1": {"value": "one", "version": "1"}, "c2": {"value": "two"}}), p.stderr)


if __name__ == "__main__":
    main()
