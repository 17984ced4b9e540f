#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Configuration errors: every bad file is reported with file:line:field, the rest
still loads, and the daemon still starts. Command line handling."""

import subprocess

from harness import MOORINGD, DaemonTestCase, main, request

GOOD = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {name}
spec:
  type: {type}
  version: v1
  metadata:
  - name: redisHost
    value: localhost:6379
  - name: redisPassword
    secretKeyRef:
      name: redis
      key: password
"""


class ConfigTest(DaemonTestCase):
    def test_bad_files_are_reported_and_the_rest_loads(self):
        multi = (GOOD.format(name="first", type="state.redis") + "---\n" +
                 "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: broken\nspec:\n"
                 "  type: nosuchcategory.thing\n" + "---\n" +
                 "apiVersion: dapr.io/v1alpha1\nkind: Subscription\nmetadata:\n  name: s\n" + "---\n" +
                 GOOD.format(name="third", type="pubsub.redis"))
        d = self.daemon(
            apps={
                "good": "[App]\nAppAddress=3000\n",
                "badkey": "[App]\nAppAddress=3001\nColour=blue\n",
                "badport": "# comment\n[App]\nHttpPort=99999\n",
                "Bad Name": "[App]\n",
                "noport": "[App]\nHttpPort=\n",
                "zeroport": "[App]\nHttpPort=0\n",
            },
            components={
                "multi.yaml": multi,
                "syntax.yaml": "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: [unclosed\n",
                "dup.yml": GOOD.format(name="first", type="state.in-memory"),
                "ignored.txt": "not yaml at all: [",
            },
            conf="[Daemon]\nMaxRequestBodySize=lots\n",
        )
        log = d.log()
        self.assertIn("apps.d/badkey.conf:3: field 'Colour': unknown key", log)
        self.assertIn("apps.d/badport.conf:3: field 'HttpPort': expected a port number 1-65535", log)
        self.assertIn("apps.d/Bad Name.conf: invalid app id 'Bad Name'", log)
        self.assertIn("apps.d/zeroport.conf:2: field 'HttpPort': expected a port number 1-65535", log)
        self.assertIn("multi.yaml:21: field 'spec.type': 'nosuchcategory.thing' is not <category>.<name>", log)
        self.assertIn("syntax.yaml:4: YAML syntax error", log)
        # dup.yml sorts first, so the second 'first' is the one in multi.yaml
        self.assertIn("multi.yaml:1: field 'metadata.name': component 'first' is already defined in", log)
        self.assertIn("mooringd.conf:2: field 'MaxRequestBodySize': expected a size", log)
        self.assertNotIn("ignored.txt", log)
        apps = [a["id"] for a in d.get("/mooring/v1/apps").json()]
        self.assertEqual(apps, ["good", "noport"])
        comps = {c["name"]: c for c in d.get("/mooring/v1/components").json()}
        self.assertEqual(sorted(comps), ["configstore", "first", "lockstore", "third"])
        self.assertEqual(comps["first"]["type"], "state.in-memory")
        self.assertEqual(comps["third"]["line"], 28)
        self.assertTrue(any("configuration errors: see the log" in m for m in d.notify.messages))

    def test_port_conflict_between_apps(self):
        from harness import free_port
        port = free_port()
        d = self.daemon(apps={"a": f"[App]\nHttpPort={port}\n", "b": f"[App]\nHttpPort={port}\n"})
        self.assertIn(f"apps.d/b.conf: field 'HttpPort': port {port} is already used by app 'a'", d.log())
        self.assertEqual([a["id"] for a in d.get("/mooring/v1/apps").json()], ["a"])

    def test_port_in_use_by_someone_else(self):
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        d = self.daemon(apps={"a": f"[App]\nHttpPort={port}\n", "b": "[App]\n"})
        self.assertIn(f"field 'HttpPort': cannot listen on 127.0.0.1:{port}: Address already in use", d.log())
        self.assertEqual([a["id"] for a in d.get("/mooring/v1/apps").json()], ["b"])
        s.close()

    def test_settings_apply(self):
        d = self.daemon(apps={"a": "[App]\n"}, conf="[Daemon]\nApiSocket=other.sock\nLogLevel=warning\n",
                        use_socket_activation=False, args=["--log-level", "warning"])
        import os
        self.assertTrue(os.path.exists(os.path.join(d.runtime, "other.sock")))
        self.assertNotIn("<6>", d.log())
        self.assertEqual(request(os.path.join(d.runtime, "other.sock"), "GET", "/v1.0/healthz").status, 204)


class CommandLineTest(DaemonTestCase):
    def run_d(self, *args):
        return subprocess.run([MOORINGD, *args], capture_output=True, text=True, timeout=30)

    def test_version_and_help(self):
        p = self.run_d("--version")
        self.assertEqual(p.returncode, 0)
        self.assertRegex(p.stdout, r"^mooringd \d+\.\d+\.\d+\n$")
        p = self.run_d("--help")
        self.assertEqual(p.returncode, 0)
        for opt in ("--config-dir", "--state-dir", "--runtime-dir", "--user", "--bus=", "--log-level"):
            self.assertIn(opt, p.stdout)

    def test_bad_arguments(self):
        for args in (["--bogus"], ["--bus=tcp"], ["--log-level", "loud"], ["extra"]):
            p = self.run_d(*args)
            self.assertEqual(p.returncode, 2, args)
            self.assertTrue(p.stderr, args)

    def test_user_mode_directories(self):
        import os
        import tempfile
        import time
        home = tempfile.mkdtemp()
        rt = os.path.join(home, "rt")
        os.makedirs(rt)
        env = dict(os.environ, HOME=home, XDG_RUNTIME_DIR=rt)
        env.pop("XDG_CONFIG_HOME", None)
        env.pop("XDG_STATE_HOME", None)
        os.makedirs(os.path.join(home, ".config/mooring/apps.d"))
        with open(os.path.join(home, ".config/mooring/apps.d/me.conf"), "w") as f:
            f.write("[App]\n")
        p = subprocess.Popen([MOORINGD, "--user", "--bus=none"], env=env, stderr=subprocess.DEVNULL)
        try:
            from harness import wait_for
            sock = os.path.join(rt, "mooring/apps/me/http.sock")
            wait_for(lambda: os.path.exists(sock) or p.poll() is not None, what="user-mode socket")
            self.assertIsNone(p.poll())
            self.assertTrue(os.path.isdir(os.path.join(home, ".local/state/mooring")))
        finally:
            p.terminate()
            p.wait(20)
            import shutil
            shutil.rmtree(home)
        self.assertEqual(p.returncode, 0)


if __name__ == "__main__":
    main()
