#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""GetSecret and GetBulkSecret over D-Bus and `mooringctl secret get`, against the
real daemon on a private bus: the caller acts as an app, that app's scopes apply,
naming an app needs authorization (root passes; another user is refused, as no
polkit runs on the private bus), and values never reach the daemon's log."""

import json
import os
import secrets
import subprocess

from harness import MOORINGCTL, DaemonTestCase, main, require

STORE = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: vault
spec:
  type: secretstores.local.file
  metadata:
  - name: secretsFile
    value: {path}
"""

CONFIG_B = """apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: b
spec:
  secrets:
    scopes:
    - storeName: vault
      defaultAccess: deny
      allowedSecrets: [api]
"""


class SecretsBusTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        require("dbus-daemon", "busctl")
        self.values = {"db": "v-" + secrets.token_hex(12), "api": "v-" + secrets.token_hex(12)}
        d = self.daemon(start=False, bus=True)
        path = os.path.join(d.tmp, "secrets.json")
        with open(path, "w") as f:
            json.dump({"db": self.values["db"], "api": self.values["api"]}, f)
        conf_b = os.path.join(d.tmp, "b.yaml")
        with open(conf_b, "w") as f:
            f.write(CONFIG_B)
        d.write_app("a", "[App]\n")
        d.write_app("b", f"[App]\nConfiguration={conf_b}\n")
        d.write_component("vault.yaml", STORE.format(path=path))
        d.start()
        self.d = d
        self.addCleanup(self.assert_no_value_in_log)

    def assert_no_value_in_log(self):
        log = self.d.log()
        for v in self.values.values():
            self.assertNotIn(v, log)

    def ctl(self, *args, user=None):
        cmd = [MOORINGCTL, f"--bus-address={self.d.dbus.address}"] + list(args)
        if user is not None:
            cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + cmd
        e = dict(os.environ)
        e.pop("MOORING_SOCKET", None)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=e)

    def test_get_secret_as_an_app(self):
        p = self.d.call("GetSecret", "sssa{ss}", "a", "vault", "db", 0)
        self.assertEqual(json.loads(p.stdout)["data"][0], {"db": self.values["db"]})

    def test_bulk_is_filtered_by_the_apps_scopes(self):
        p = self.d.call("GetBulkSecret", "ssa{ss}", "a", "vault", 0)
        self.assertEqual(json.loads(p.stdout)["data"][0],
                         {"db": {"db": self.values["db"]}, "api": {"api": self.values["api"]}})
        p = self.d.call("GetBulkSecret", "ssa{ss}", "b", "vault", 0)
        self.assertEqual(json.loads(p.stdout)["data"][0], {"api": {"api": self.values["api"]}})

    def test_errors_have_their_names(self):
        cases = [
            (("b", "vault", "db"), "org.mooring.Runtime1.Error.PermissionDenied"),
            (("a", "vault", "nope"), "org.mooring.Runtime1.Error.NoSuchSecret"),
            (("a", "nostore", "db"), "org.mooring.Runtime1.Error.NoSuchStore"),
            (("zz", "vault", "db"), "org.mooring.Runtime1.Error.NoSuchApp"),
        ]
        for args, name in cases:
            p = subprocess.run(["gdbus", "call", "--address", self.d.dbus.address, "--dest", "org.mooring.Runtime1",
                                "--object-path", "/org/mooring/Runtime1", "--method",
                                "org.mooring.Runtime1.GetSecret", *args, "{}"], capture_output=True, text=True,
                               timeout=30)
            self.assertNotEqual(p.returncode, 0, (args, p.stdout))
            self.assertIn(name, p.stderr, args)

    def test_other_users_may_not_act_as_an_app(self):
        p = self.d.call("GetSecret", "sssa{ss}", "a", "vault", "db", 0, user=65534, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertNotIn(self.values["db"], p.stdout)
        # and one that is no app at all, naming none, is told so
        p = self.d.call("GetSecret", "sssa{ss}", "", "vault", "db", 0, user=65534, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("not an app", p.stderr)

    def test_mooringctl_secret_get(self):
        p = self.ctl("secret", "get", "vault", "db", "--app", "a")
        self.assertEqual((p.returncode, p.stdout), (0, self.values["db"] + "\n"), p.stderr)
        p = self.ctl("--json", "secret", "get", "vault", "api", "--app=b", "--metadata", "version_id=1")
        self.assertEqual((p.returncode, json.loads(p.stdout)), (0, {"api": self.values["api"]}), p.stderr)
        p = self.ctl("secret", "get", "vault", "db", "--app", "b")
        self.assertEqual(p.returncode, 1)
        self.assertIn("permission denied", p.stderr)
        p = self.ctl("secret", "get", "vault")
        self.assertEqual(p.returncode, 2)
        p = self.ctl("secret", "get", "vault", "db", "--etag", "x")
        self.assertEqual(p.returncode, 2)


if __name__ == "__main__":
    main()
