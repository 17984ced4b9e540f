#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""mooringctl against the real daemon: over D-Bus (private bus) and over the shared
socket, tables and --json, "not running" messages, and app-exec as the
mooring-app@.service template runs it."""

import json
import os
import subprocess

from harness import MOORINGCTL, DaemonTestCase, free_port, main, require

COMPONENT = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.sqlite
"""


class CtlTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        require("dbus-daemon")
        self.port = free_port()
        self.d = self.daemon(bus=True, apps={
            "orders": f"[App]\nAppAddress=http://127.0.0.1:{free_port()}\nHttpPort={self.port}\nApiToken=tok\n"
                      "Exec=env\n",
            "web": "[App]\nAppAddress=unix:/run/web.sock\n",
        }, components={"s.yaml": COMPONENT})

    def ctl(self, *args, bus=True, env=None):
        cmd = [MOORINGCTL]
        if bus:
            cmd.append(f"--bus-address={self.d.dbus.address}")
        e = dict(os.environ)
        e.pop("MOORING_SOCKET", None)
        e.update(env or {})
        return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=30, env=e)

    def test_status_apps_components_over_dbus_and_socket(self):
        d = self.d
        for transport in ([], ["--socket", d.api]):
            bus = not transport
            p = self.ctl(*transport, "status", bus=bus)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("running", p.stdout)
            st = json.loads(self.ctl(*transport, "--json", "status", bus=bus).stdout)
            self.assertEqual((st["state"], st["apps"], st["components"]), ("running", 2, 1))

            p = self.ctl(*transport, "apps", bus=bus)
            self.assertEqual(p.returncode, 0, p.stderr)
            lines = p.stdout.splitlines()
            self.assertTrue(lines[0].startswith("APP"), lines)
            self.assertIn("orders", lines[1])
            self.assertIn(str(self.port), lines[1])
            self.assertIn("web", lines[2])
            apps = json.loads(self.ctl(*transport, "apps", "--json", bus=bus).stdout)
            self.assertEqual([a["id"] for a in apps], ["orders", "web"])
            self.assertEqual(apps[0]["httpSocket"], d.app_socket("orders"))
            self.assertEqual(apps[1]["httpPort"], 0)

            comps = json.loads(self.ctl(*transport, "components", "--json", bus=bus).stdout)
            self.assertEqual([(c["name"], c["type"], c["version"]) for c in comps],
                             [("statestore", "state.sqlite", "v1")])
            self.assertIn("statestore", self.ctl(*transport, "components", bus=bus).stdout)

    def test_not_running(self):
        d = self.d
        d.stop()
        p = self.ctl("status")
        self.assertEqual(p.returncode, 3)
        self.assertIn("mooringd is not running", p.stderr)
        p = self.ctl("--socket", d.api, "status", bus=False)
        self.assertEqual(p.returncode, 3)
        self.assertIn("mooringd is not running", p.stderr)

    def test_app_exec(self):
        p = self.ctl("app-exec", "orders")
        self.assertEqual(p.returncode, 0, p.stderr)
        env = dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line)
        self.assertEqual(env["APP_ID"], "orders")
        self.assertEqual(env["DAPR_HTTP_PORT"], str(self.port))
        self.assertEqual(env["DAPR_HTTP_ENDPOINT"], f"http://127.0.0.1:{self.port}")
        self.assertEqual(env["DAPR_API_TOKEN"], "tok")
        self.assertEqual(env["MOORING_HTTP_SOCKET"], self.d.app_socket("orders"))
        self.assertIn("APP_PORT", env)
        # what the app gets really works: its own endpoint answers as that app
        from harness import request
        r = request(("127.0.0.1", int(env["DAPR_HTTP_PORT"])), "GET", "/v1.0/metadata",
                    headers={"dapr-api-token": env["DAPR_API_TOKEN"]})
        self.assertEqual(r.json()["id"], "orders")

        p = self.ctl("app-exec", "web", "--", "sh", "-c", "echo $APP_ID:${DAPR_HTTP_PORT:-none}")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.strip(), "web:none")
        p = self.ctl("app-exec", "web")
        self.assertEqual(p.returncode, 1)
        self.assertIn("no Exec= line", p.stderr)
        p = self.ctl("app-exec", "ghost")
        self.assertEqual(p.returncode, 1)
        self.assertIn("no app 'ghost'", p.stderr)

    def test_usage(self):
        p = self.ctl("--help", bus=False)
        self.assertEqual(p.returncode, 0)
        for word in ("status", "apps", "components", "app-exec", "--json", "--socket", "--user"):
            self.assertIn(word, p.stdout)
        self.assertEqual(self.ctl("frobnicate").returncode, 2)


if __name__ == "__main__":
    main()
