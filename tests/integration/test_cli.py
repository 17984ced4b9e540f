#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The CLI and the defaults a new user meets first (issue 16, parts 4 and 5):
help for every command, list/reload/register/unregister/stop, JSON sent as
application/json by invoke and publish, bash completion, the development
config serving every app, a missing config directory, app ids as documented,
all of a file's errors at once, and "Component loaded" only for components
that did load."""

import json
import os
import re
import shutil
import subprocess
import tempfile

from harness import MOORINGCTL, MOORINGD, DaemonTestCase, free_port, main, request, require, wait_for
from testapp import TestApp

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PUBSUB = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.in-memory
"""

SUBSCRIPTION = """apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: events
spec:
  pubsubname: pubsub
  topic: events
  routes:
    default: /events
scopes:
- sub
"""


class CliTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        require("dbus-daemon")
        self.tmp = tempfile.mkdtemp(prefix="mooring-cli-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def ctl(self, d, *args, input=None):
        e = dict(os.environ)
        e.pop("MOORING_SOCKET", None)
        bus = [f"--bus-address={d.dbus.address}"] if d and "--socket" not in args else []
        cmd = [MOORINGCTL] + bus + list(args)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, env=e, input=input)

    def test_help_for_every_command(self):
        p = self.ctl(None, "help")
        self.assertEqual(p.returncode, 0, p.stderr)
        for word in ("register", "unregister", "reload", "list", "stop", "help [COMMAND]"):
            self.assertIn(word, p.stdout)
        # every command the general help lists has its own help, the same both ways
        listed = p.stdout.split("Commands:", 1)[1].split("Options:", 1)[0]
        cmds = sorted({line.split()[0] for line in listed.splitlines() if line.startswith("  ") and
                       line[2:3].isalpha()})
        for must in ("invoke", "publish", "state", "apps", "register", "stop", "reload", "secret", "actor",
                     "lock", "configuration", "logs", "dashboard", "run", "init"):
            self.assertIn(must, cmds)
        for cmd in cmds:
            if cmd == "run":  # run has its own option parser and a longer --help
                a = self.ctl(None, "help", cmd)
                b = self.ctl(None, cmd, "--help")
                self.assertEqual((a.returncode, b.returncode), (0, 0), (a.stderr, b.stderr))
                self.assertIn("mooringctl [OPTIONS...] run", a.stdout)
                self.assertIn("mooringctl [OPTIONS...] run", b.stdout)
                continue
            a = self.ctl(None, "help", cmd)
            b = self.ctl(None, cmd, "--help")
            self.assertEqual((a.returncode, b.returncode), (0, 0), (cmd, a.stderr, b.stderr))
            self.assertEqual(a.stdout, b.stdout)
            self.assertIn(f"mooringctl [OPTIONS...] {cmd}", a.stdout)
        self.assertIn("application/json", self.ctl(None, "help", "invoke").stdout)
        p = self.ctl(None, "help", "frobnicate")
        self.assertEqual(p.returncode, 2)
        self.assertIn("unknown command 'frobnicate'", p.stderr)

    def test_list_reload_register_unregister_stop(self):
        d = self.daemon(bus=True, apps={"web": "[App]\n"})
        p = self.ctl(d, "list")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, self.ctl(d, "apps").stdout)
        port = free_port()
        p = self.ctl(d, "register", "orders", "AppAddress=http://127.0.0.1:3000", f"HttpPort={port}")
        self.assertEqual(p.returncode, 0, p.stderr)
        apps = json.loads(self.ctl(d, "--json", "list").stdout)
        self.assertEqual([(a["id"], a["httpPort"]) for a in apps], [("orders", port), ("web", 0)])
        # what the daemon refuses is said, with the setting's name
        p = self.ctl(d, "register", "bad", "HttpPort=x")
        self.assertEqual(p.returncode, 1)
        self.assertIn("HttpPort", p.stderr)
        self.assertEqual(self.ctl(d, "register", "bad", "novalue").returncode, 2)
        p = self.ctl(d, "stop", "orders")
        self.assertEqual(p.returncode, 0, p.stderr)
        p = self.ctl(d, "unregister", "orders")
        self.assertEqual(p.returncode, 1)
        self.assertIn("no app 'orders'", p.stderr)
        p = self.ctl(d, "unregister", "web")
        self.assertEqual(p.returncode, 1)
        self.assertIn("remove the file and reload", p.stderr)

        p = self.ctl(d, "reload")
        self.assertEqual(p.returncode, 0, p.stderr)
        d.write_app("web", "[App]\nHttpPort=nope\n")
        p = self.ctl(d, "reload")
        self.assertEqual(p.returncode, 1)
        self.assertIn("configuration errors", p.stderr)
        self.assertEqual([a["id"] for a in json.loads(self.ctl(d, "--json", "apps").stdout)], ["web"])

    def test_json_data_is_sent_as_json(self):
        sock = os.path.join(self.tmp, "sub.sock")
        app = TestApp(unix_path=sock).start()
        self.addCleanup(app.stop)
        d = self.daemon(bus=True, start=False, apps={"sub": f"[App]\nAppAddress=unix:{sock}\n"},
                        components={"pubsub.yaml": PUBSUB})
        os.makedirs(os.path.join(d.config, "subscriptions"))
        with open(os.path.join(d.config, "subscriptions", "events.yaml"), "w") as f:
            f.write(SUBSCRIPTION)
        d.start()
        wait_for(lambda: "Subscribed to topic events" in d.log(), what="the subscription")

        def last(path):
            reqs = [r for r in app.requests if r[1] == path]
            return reqs[-1] if reqs else None

        for transport in ([], ["--socket", d.api]):
            app.requests.clear()
            # the test app answers 404: the call reached it, which is all that is looked at
            p = self.ctl(d, *transport, "invoke", "sub", "m", "--data", '{"qty": 2}')
            self.assertIn("answered 404", p.stderr)
            self.assertEqual(last("/m")[2].get("Content-Type"), "application/json", transport)
            p = self.ctl(d, *transport, "invoke", "sub", "m", "--data", "plain words")
            self.assertIn("answered 404", p.stderr)
            self.assertNotEqual(last("/m")[2].get("Content-Type"), "application/json")
            p = self.ctl(d, *transport, "invoke", "sub", "m", "--data", '{"a":1}', "--content-type", "text/x-mine")
            self.assertIn("answered 404", p.stderr)
            self.assertEqual(last("/m")[2].get("Content-Type"), "text/x-mine")

            p = self.ctl(d, *transport, "publish", "pubsub", "events", '{"qty": 2}')
            self.assertEqual(p.returncode, 0, p.stderr)
            wait_for(lambda: last("/events") is not None, what="the JSON delivery")
            ev = json.loads(last("/events")[3])
            self.assertEqual((ev["datacontenttype"], ev["data"]), ("application/json", {"qty": 2}))
            app.requests.clear()
            p = self.ctl(d, *transport, "publish", "pubsub", "events", "not json")
            self.assertEqual(p.returncode, 0, p.stderr)
            wait_for(lambda: last("/events") is not None, what="the text delivery")
            ev = json.loads(last("/events")[3])
            self.assertEqual((ev["datacontenttype"], ev["data"]), ("text/plain", "not json"))

    def test_bash_completion(self):
        require("bash")
        script = os.path.join(SRC, "data", "completion", "mooringctl")

        def complete(*words):
            words = ["mooringctl"] + list(words)
            sh = (f". {script}; COMP_WORDS=({' '.join(repr(w) for w in words)}); COMP_CWORD={len(words) - 1}; "
                  "COMP_LINE=\"${COMP_WORDS[*]}\"; _mooringctl; printf '%s\\n' \"${COMPREPLY[@]}\"")
            p = subprocess.run(["bash", "-c", sh], capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr)
            return p.stdout.split()

        self.assertEqual(complete("inv"), ["invoke"])
        self.assertIn("unregister", complete("un"))
        self.assertEqual(complete("state", ""), ["get", "set", "delete"])
        self.assertIn("--content-type=", complete("invoke", "--con"))
        self.assertIn("--app-id=", complete("run", "--app"))

    def test_dev_config_serves_every_app(self):
        # data/dev as ./dev.sh run uses it, on a free port instead of 3500
        d = self.daemon(start=False)
        shutil.rmtree(d.config)
        shutil.copytree(os.path.join(SRC, "data", "dev"), d.config)
        port = free_port()
        demo = os.path.join(d.config, "apps.d", "demo.conf")
        with open(demo) as f:
            text = f.read().replace("HttpPort=3500", f"HttpPort={port}")
        with open(demo, "w") as f:
            f.write(text)
        d.write_app("orders", "[App]\n")
        d.start()
        for app in ("demo", "orders"):
            for store in ("statestore", "pubsub"):
                if store == "statestore":
                    r = request(d.app_socket(app), "POST", "/v1.0/state/statestore",
                                body=b'[{"key":"k","value":1}]', headers={"Content-Type": "application/json"})
                else:
                    r = request(d.app_socket(app), "POST", "/v1.0/publish/pubsub/t", body=b'{}',
                                headers={"Content-Type": "application/json"})
                self.assertEqual(r.status, 204, (app, store, r.body))

    def test_missing_config_dir_is_an_error(self):
        missing = os.path.join(self.tmp, "nope")
        p = subprocess.run([MOORINGD, "--config-dir", missing, "--state-dir", self.tmp, "--runtime-dir", self.tmp,
                            "--bus=none"], capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(f"configuration directory '{missing}': No such file or directory", p.stderr)

    def test_app_ids_as_documented(self):
        d = self.daemon(bus=True, apps={"Bad_App": "[App]\n", "good": "[App]\n"})
        self.assertIn("invalid app id 'Bad_App'", d.log())
        self.assertEqual([a["id"] for a in json.loads(self.ctl(d, "--json", "apps").stdout)], ["good"])
        p = d.call("RegisterApp", "sa{sv}", "Other", 0, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("Invalid app id 'Other'", p.stderr)

    def test_all_errors_of_a_file_at_once(self):
        d = self.daemon(apps={"web": "[App]\nHttpPort=x\nBogus=1\nno equals here\nMaxConcurrency=-1\n"})
        log = d.log()
        web = os.path.join(d.config, "apps.d", "web.conf")
        for line, what in ((2, "field 'HttpPort'"), (3, "field 'Bogus'"), (4, "expected 'Key=Value'"),
                           (5, "field 'MaxConcurrency'")):
            self.assertIn(f"{web}:{line}: {what}", log)

    def test_component_loaded_only_once_open(self):
        bad = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: broken
spec:
  type: state.sqlite
  metadata:
  - name: connectionString
    value: /proc/no/such/dir/state.db
"""
        good = PUBSUB.replace("name: pubsub", "name: events")
        d = self.daemon(components={"bad.yaml": bad, "good.yaml": good})
        log = d.log()
        self.assertRegex(log, r"Component loaded: pubsub.in-memory v1 from .*good.yaml")
        self.assertIn("state store 'broken' (state.sqlite)", log)
        self.assertNotRegex(log, r"Component loaded: state.sqlite v1 from .*bad.yaml")


if __name__ == "__main__":
    main()
