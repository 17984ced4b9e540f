#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""mooringctl against the real daemon: over D-Bus (private bus) and over the shared
socket, tables and --json, "not running" messages, and app-exec as the
mooring-app@.service template runs it."""

import json
import os
import shutil
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

    def ctl(self, *args, bus=True, env=None, input=None, text=True, user=None):
        cmd = [MOORINGCTL]
        if bus:
            cmd.append(f"--bus-address={self.d.dbus.address}")
        if user is not None:
            cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + cmd
        e = dict(os.environ)
        e.pop("MOORING_SOCKET", None)
        e.update(env or {})
        return subprocess.run(cmd + list(args), capture_output=True, text=text, timeout=30, env=e, input=input)

    def test_status_apps_components_over_dbus_and_socket(self):
        d = self.d
        for transport in ([], ["--socket", d.api]):
            bus = not transport
            p = self.ctl(*transport, "status", bus=bus)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("running", p.stdout)
            st = json.loads(self.ctl(*transport, "--json", "status", bus=bus).stdout)
            self.assertEqual((st["state"], st["apps"], st["components"]), ("running", 2, 4))  # the defaults (state, pubsub, lock, configuration)

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
            self.assertEqual(sorted((c["name"], c["type"], c["version"]) for c in comps),
                             [("configstore", "configuration.sqlite", "v1"), ("lockstore", "lock.sqlite", "v1"),
                              ("pubsub", "pubsub.sqlite", "v1"),
                              ("statestore", "state.sqlite", "v1")])
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

    def state(self, *args, **kw):
        """mooringctl state ... acting as app 'orders' (we are root, or the daemon's user: allowed)."""
        return self.ctl("state", *args, "--app", "orders", **kw)

    def test_state_set_get_roundtrip(self):
        p = self.state("set", "statestore", "greeting", "hällo wörld")
        self.assertEqual((p.returncode, p.stdout, p.stderr), (0, "", ""))
        p = self.state("get", "statestore", "greeting", text=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, "hällo wörld".encode())  # as stored: no newline added

        # a value from standard input, with a NUL byte and bytes that are not UTF-8
        blob = b"a\x00b\xff\xfe\n\x00"
        p = self.state("set", "statestore", "blob", "-", input=blob, text=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        p = self.state("get", "statestore", "blob", text=False)
        self.assertEqual((p.returncode, p.stdout), (0, blob), p.stderr)
        # an empty value from standard input is a value too
        p = self.state("set", "statestore", "empty", "-", input=b"", text=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        p = self.state("get", "statestore", "empty", text=False)
        self.assertEqual((p.returncode, p.stdout), (0, b""), p.stderr)

        # options go anywhere; "--" lets a value start with '-'
        p = self.ctl("--app=orders", "state", "set", "--app", "orders", "statestore", "neg", "--", "-5")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.state("get", "statestore", "neg").stdout, "-5")

        # the app sees the same bytes over HTTP on its own socket
        from harness import request
        for key, value in (("greeting", "hällo wörld".encode()), ("blob", blob)):
            r = request(self.d.app_socket("orders"), "GET", f"/v1.0/state/statestore/{key}")
            self.assertEqual((r.status, r.body), (200, value), key)
        # and mooringctl sees what the app saved over HTTP
        r = request(self.d.app_socket("orders"), "POST", "/v1.0/state/statestore",
                    body=json.dumps([{"key": "fromhttp", "value": {"n": 1}}]),
                    headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 204, r)
        self.assertEqual(json.loads(self.state("get", "statestore", "fromhttp").stdout), {"n": 1})
        # keys are per app: 'web' does not see them
        p = self.ctl("state", "get", "statestore", "greeting", "--app", "web")
        self.assertEqual(p.returncode, 1)
        self.assertIn("key 'greeting' not found in store 'statestore'", p.stderr)

    def test_state_get_json(self):
        self.assertEqual(self.state("set", "statestore", "doc", '{"qty": 3, "tags": ["a"]}').returncode, 0)
        self.assertEqual(self.state("set", "statestore", "text", "just text").returncode, 0)
        self.assertEqual(self.state("set", "statestore", "bin", "-", input=b"\xff\x00\x01",
                                    text=False).returncode, 0)

        p = self.state("get", "statestore", "doc", "--json")
        self.assertEqual(p.returncode, 0, p.stderr)
        got = json.loads(p.stdout)
        self.assertEqual(sorted(got), ["etag", "found", "value"])
        self.assertIs(got["found"], True)
        self.assertIsInstance(got["etag"], str)
        self.assertTrue(got["etag"])
        self.assertEqual(got["value"], {"qty": 3, "tags": ["a"]})
        # the etag is the one HTTP reports
        from harness import request
        r = request(self.d.app_socket("orders"), "GET", "/v1.0/state/statestore/doc")
        self.assertEqual(r.headers["etag"], got["etag"])

        self.assertEqual(json.loads(self.state("--json", "get", "statestore", "text").stdout)["value"], "just text")
        self.assertEqual(json.loads(self.state("get", "statestore", "bin", "--json").stdout)["value"],
                         {"base64": "/wAB"})

    def test_state_etag_and_first_write(self):
        self.assertEqual(self.state("set", "statestore", "k", "v1").returncode, 0)
        etag = json.loads(self.state("get", "statestore", "k", "--json").stdout)["etag"]

        p = self.state("set", "statestore", "k", "v2", f"--etag={etag}")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.state("get", "statestore", "k").stdout, "v2")
        # the first etag is stale now
        p = self.state("set", "statestore", "k", "v3", "--etag", etag)
        self.assertEqual(p.returncode, 1)
        self.assertIn("mooringctl: etag mismatch for key 'k'", p.stderr)
        self.assertEqual(self.state("get", "statestore", "k").stdout, "v2")
        # an etag the store could never have issued: the daemon's message comes through
        p = self.state("set", "statestore", "k", "v3", "--etag", "999999")
        self.assertEqual(p.returncode, 1)
        self.assertIn("mooringctl: saving key 'k' failed: invalid etag '999999'", p.stderr)

        p = self.state("set", "statestore", "k", "v3", "--first-write")
        self.assertEqual(p.returncode, 1)
        self.assertIn("key 'k' already exists", p.stderr)
        self.assertEqual(self.state("get", "statestore", "k").stdout, "v2")
        p = self.state("set", "statestore", "new", "v", "--first-write", "--ttl", "3600")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.state("get", "statestore", "new").stdout, "v")

        # delete with a stale etag fails, then a plain delete works
        p = self.state("delete", "statestore", "k", "--etag", etag)
        self.assertEqual(p.returncode, 1)
        self.assertIn("etag mismatch for key 'k'", p.stderr)
        p = self.state("delete", "statestore", "k")
        self.assertEqual((p.returncode, p.stdout), (0, ""), p.stderr)
        p = self.state("get", "statestore", "k")
        self.assertEqual((p.returncode, p.stdout), (1, ""))
        self.assertIn("mooringctl: key 'k' not found in store 'statestore'", p.stderr)
        p = self.state("get", "statestore", "k", "--json")
        self.assertEqual((p.returncode, p.stdout), (1, ""))

    def test_state_errors(self):
        p = self.state("get", "nostore", "k")
        self.assertEqual(p.returncode, 1)
        self.assertIn("mooringctl: no state store 'nostore' for app 'orders'", p.stderr)
        p = self.state("set", "nostore", "k", "v")
        self.assertEqual(p.returncode, 1)
        self.assertIn("no state store 'nostore' for app 'orders'", p.stderr)
        p = self.ctl("state", "get", "statestore", "k", "--app", "ghost")
        self.assertEqual(p.returncode, 1)
        self.assertIn("mooringctl: no app 'ghost' is registered", p.stderr)
        # without --app the caller must be running in the app's unit
        p = self.ctl("state", "get", "statestore", "k")
        self.assertEqual(p.returncode, 1)
        self.assertIn("not an app", p.stderr)
        # the daemon's own checks come through
        p = self.state("set", "statestore", "a||b", "v")
        self.assertEqual(p.returncode, 1)
        self.assertIn("must not contain", p.stderr)
        # an unprivileged caller may not act as an app (no polkit here: denied)
        if os.geteuid() == 0 and shutil.which("setpriv"):
            p = self.ctl("state", "get", "statestore", "k", "--app", "orders", user=65534)
            self.assertEqual(p.returncode, 1, p.stderr)
            self.assertIn("mooringctl: not authorized to act as app 'orders'", p.stderr)

        self.d.stop()
        p = self.state("get", "statestore", "k")
        self.assertEqual(p.returncode, 3)
        self.assertIn("mooringd is not running", p.stderr)

    def test_state_usage(self):
        for args in (["state"],
                     ["state", "frob", "statestore", "k"],
                     ["state", "get", "statestore"],
                     ["state", "get", "statestore", "k", "extra"],
                     ["state", "set", "statestore", "k"],
                     ["state", "set", "statestore", "k", "-5"],
                     ["state", "set", "statestore", "k", "v", "--ttl", "soon"],
                     ["state", "set", "statestore", "k", "v", "--ttl=-2"],
                     ["state", "set", "statestore", "k", "v", "--ttl=2147483648"],
                     ["state", "set", "statestore", "k", "v", "--etag="],
                     ["state", "delete", "statestore", "k", "--first-write"],
                     ["state", "get", "statestore", "k", "--etag", "1"],
                     ["state", "get", "", "k"],
                     ["state", "get", "statestore", ""],
                     ["state", "get", "statestore", "k", "--app", "Bad!"],
                     ["state", "get", "statestore", "k", "--socket", self.d.api],
                     ["status", "--app", "orders"],
                     ["app-exec", "orders", "--etag", "1"]):
            p = self.ctl(*args, "--app=orders")
            self.assertEqual(p.returncode, 2, (args, p.stderr))
            self.assertIn("Try 'mooringctl --help'", p.stderr, args)
            self.assertEqual(p.stdout, "", args)
        p = self.ctl("state", "get", "statestore", "k", "--socket", self.d.api, "--app=orders", bus=False)
        self.assertEqual(p.returncode, 2)
        self.assertIn("state talks to mooringd over D-Bus and cannot use --socket", p.stderr)
        # $MOORING_SOCKET does not divert state from D-Bus
        self.assertEqual(self.state("set", "statestore", "k", "v", env={"MOORING_SOCKET": self.d.api}).returncode, 0)

        p = self.ctl("--help", bus=False)
        for word in ("state get STORE KEY", "state set STORE KEY VALUE", "state delete STORE KEY",
                     "--app=APP_ID", "--etag=ETAG", "--first-write", "--ttl=SECONDS"):
            self.assertIn(word, p.stdout)


if __name__ == "__main__":
    main()
