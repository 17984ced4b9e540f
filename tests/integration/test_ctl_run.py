#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""mooringctl run and run -f (issue 16, parts 1 and 2), against the real
daemon: the app is registered while it runs and removed when run goes (also
on SIGKILL), gets Dapr's environment, its own resources, prefixed output,
the signals and its exit status; "mooringctl stop" ends it; with no daemon
running a private one is started; a Multi-App Run template shaped like the
Dapr JavaScript pub/sub quickstart runs with node."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from harness import MOORINGCTL, MOORINGD, TIMEOUT, DaemonTestCase, main, request, require, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))

MYSTORE = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: mystore
spec:
  type: state.in-memory
"""

# An app that reports what it got and waits: prints its environment as JSON, saves a key in
# "mystore" through its own DAPR_HTTP_PORT, and stops on SIGTERM with status 3.
APP = r"""
import json, os, signal, sys, time, urllib.request
def term(*_):
    print("got TERM", flush=True)
    sys.exit(3)
signal.signal(signal.SIGTERM, term)
env = {k: os.environ.get(k) for k in ("APP_ID", "APP_PORT", "DAPR_HTTP_PORT", "DAPR_GRPC_PORT", "APP_PROTOCOL",
                                       "MOORING_HTTP_SOCKET")}
print("env " + json.dumps(env), flush=True)
port = os.environ["DAPR_HTTP_PORT"]
req = urllib.request.Request(f"http://127.0.0.1:{port}/v1.0/state/mystore", method="POST",
                             data=b'[{"key":"k","value":"v"}]', headers={"Content-Type": "application/json"})
try:
    print("save", urllib.request.urlopen(req).status, flush=True)
except Exception as e:
    print("save failed", e, flush=True)
print("to stderr", file=sys.stderr, flush=True)
if len(sys.argv) > 1:
    sys.exit(int(sys.argv[1]))
while True:
    time.sleep(1)
"""


class RunTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        require("dbus-daemon")
        self.tmp = tempfile.mkdtemp(prefix="mooring-ctlrun-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.app = os.path.join(self.tmp, "app.py")
        with open(self.app, "w") as f:
            f.write(APP)
        self.res = os.path.join(self.tmp, "res")
        os.makedirs(self.res)
        with open(os.path.join(self.res, "mystore.yaml"), "w") as f:
            f.write(MYSTORE)
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stdout.close()
        super().tearDown()

    def env(self, **kw):
        e = dict(os.environ)
        e.pop("MOORING_SOCKET", None)
        e["MOORINGD"] = MOORINGD
        e.update(kw)
        return e

    def run_bg(self, *args, env=None):
        """mooringctl ARGS in the background, output (both streams) collected line by line."""
        p = subprocess.Popen([MOORINGCTL] + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, env=env or self.env())
        p.lines = []
        import threading

        def reader():
            for line in p.stdout:
                p.lines.append(line.rstrip("\n"))
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        p.reader = t
        self.procs.append(p)
        return p

    def wait_line(self, p, text):
        wait_for(lambda: any(text in l for l in p.lines) or p.poll() is not None, what=repr(text))
        if not any(text in l for l in p.lines):
            p.reader.join(5)
            self.assertTrue(any(text in l for l in p.lines), (text, p.lines))

    def finish(self, p):
        p.wait(TIMEOUT)
        p.reader.join(TIMEOUT)
        return p.returncode

    def apps(self, d):
        return [a[0] for a in d.prop("Apps")]

    def test_run_app_lifecycle(self):
        d = self.daemon(bus=True, apps={"other": "[App]\n"})
        bus = f"--bus-address={d.dbus.address}"
        p = self.run_bg(bus, "run", "--app-id", "orders", "--app-port", "3999", "--resources-path", self.res, "--",
                        sys.executable, self.app)
        self.wait_line(p, "== APP == save")
        env = json.loads(next(l for l in p.lines if l.startswith("== APP == env "))[len("== APP == env "):])
        self.assertEqual((env["APP_ID"], env["APP_PORT"], env["APP_PROTOCOL"]), ("orders", "3999", "http"))
        self.assertEqual(env["MOORING_HTTP_SOCKET"], d.app_socket("orders"))
        self.assertIn("== APP == save 204", p.lines)
        self.assertIn("== APP == to stderr", p.lines)
        self.assertIn("orders", self.apps(d))
        # its resources are its own: the app's port sees mystore, another app does not
        r = request(("127.0.0.1", int(env["DAPR_HTTP_PORT"])), "GET", "/v1.0/state/mystore/k")
        self.assertEqual((r.status, r.body), (200, b'"v"'))
        r = request(d.app_socket("other"), "GET", "/v1.0/state/mystore/k")
        self.assertEqual(r.status, 400, r.body)
        self.assertEqual(r.json()["errorCode"], "ERR_STATE_STORE_NOT_FOUND")
        # SIGTERM is passed on; the app's exit status is ours
        p.send_signal(signal.SIGTERM)
        self.assertEqual(self.finish(p), 3, p.lines)
        self.assertIn("== APP == got TERM", p.lines)
        wait_for(lambda: "orders" not in self.apps(d), what="the app's removal")
        self.assertNotIn("mystore", [c[0] for c in d.prop("Components")])

        # the exit status of an app that ends by itself
        p = self.run_bg(bus, "run", "--app-id", "quick", "--resources-path", self.res, "--", sys.executable,
                        self.app, "7")
        self.assertEqual(self.finish(p), 7, p.lines)

    def test_sigkill_and_stop(self):
        d = self.daemon(bus=True)
        bus = f"--bus-address={d.dbus.address}"
        p = self.run_bg(bus, "run", "--app-id", "victim", "--", "sleep", "3017")
        self.wait_line(p, "app 'victim' registered")
        self.assertIn("victim", self.apps(d))
        p.kill()
        self.finish(p)
        # the daemon saw our connection go: the app is gone, and so is the app's process
        wait_for(lambda: "victim" not in self.apps(d), what="removal after SIGKILL")
        self.assertIn("The client that registered the app left the bus", d.log())
        wait_for(lambda: subprocess.run(["pgrep", "-f", "sleep 3017"], capture_output=True).returncode != 0,
                 what="the app's end")

        p = self.run_bg(bus, "run", "--app-id", "stopme", "--", sys.executable, self.app)
        self.wait_line(p, "== APP == env")
        s = subprocess.run([MOORINGCTL, bus, "stop", "stopme"], capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(s.returncode, 0, s.stderr)
        self.assertEqual(self.finish(p), 3, p.lines)
        self.assertTrue(any("was removed from mooringd" in l for l in p.lines), p.lines)

        # what the daemon refuses is said and nothing runs
        # (h2c is a protocol the Dapr CLI knows and mooringd does not serve)
        p = self.run_bg(bus, "run", "--app-id", "bad", "--app-protocol", "h2c", "--", "true")
        self.assertEqual(self.finish(p), 1, p.lines)
        self.assertTrue(any("AppProtocol" in l for l in p.lines), p.lines)

    def test_usage(self):
        def ctl(*a):
            return subprocess.run([MOORINGCTL] + list(a), capture_output=True, text=True, timeout=TIMEOUT)
        p = ctl("run", "--help")
        self.assertEqual(p.returncode, 0)
        self.assertIn("--dapr-http-port", p.stdout)
        self.assertEqual(ctl("run", "--app-port", "0", "--", "true").returncode, 2)
        self.assertEqual(ctl("run", "--app-id", "Bad", "--", "true").returncode, 2)
        p = ctl("run", "--resources-path", "/nonexistent", "--", "true")
        self.assertEqual(p.returncode, 2)
        self.assertIn("/nonexistent", p.stderr)
        self.assertEqual(ctl("run").returncode, 2)
        self.assertEqual(ctl("run", "-f", self.tmp, "--app-id", "x").returncode, 2)

    def test_private_daemon(self):
        # no daemon, no session bus, no XDG_RUNTIME_DIR: run starts its own and says so
        home = os.path.join(self.tmp, "home")
        os.makedirs(home)
        env = self.env(HOME=home)
        for k in ("DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_STATE_HOME"):
            env.pop(k, None)
        script = ("import os, urllib.request\n"
                  "b = 'http://127.0.0.1:' + os.environ['DAPR_HTTP_PORT']\n"
                  "r = urllib.request.Request(b + '/v1.0/state/statestore', method='POST', "
                  "data=b'[{\"key\":\"n\",\"value\":42}]', headers={'Content-Type': 'application/json'})\n"
                  "print('save', urllib.request.urlopen(r).status)\n"
                  "print('get', urllib.request.urlopen(b + '/v1.0/state/statestore/n').read().decode())\n")
        p = self.run_bg("run", "--app-id", "solo", "--", sys.executable, "-c", script, env=env)
        self.assertEqual(self.finish(p), 0, p.lines)
        out = "\n".join(p.lines)
        self.assertIn("started a private one for this run", out)
        self.assertIn("no session bus: started one", out)
        self.assertIn("== APP == save 204", out)
        self.assertIn("== APP == get 42", out)
        # the embedded store keeps the data in the user's state directory
        self.assertTrue(os.path.exists(os.path.join(home, ".local", "state", "mooring", "state.db")))
        # nothing of the run is left running
        left = subprocess.run(["pgrep", "-f", "mooring-run-"], capture_output=True, text=True)
        self.assertEqual(left.stdout.strip(), "", "processes left behind")

    def test_init_uninstall(self):
        home = os.path.join(self.tmp, "home")
        os.makedirs(home)
        env = self.env(HOME=home)
        for k in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR"):
            env.pop(k, None)

        def ctl(*a):
            return subprocess.run([MOORINGCTL] + list(a), capture_output=True, text=True, timeout=TIMEOUT, env=env)
        p = ctl("init")
        self.assertEqual(p.returncode, 0, p.stderr)
        conf = os.path.join(home, ".config", "mooring")
        for f in ("components/statestore.yaml", "components/pubsub.yaml", "mooringd.conf"):
            self.assertIn(f"created  {conf}/{f}", p.stdout)
        self.assertTrue(os.path.isdir(os.path.join(conf, "apps.d")))
        with open(os.path.join(conf, "components", "statestore.yaml")) as f:
            self.assertIn("type: state.sqlite", f.read())
        # no systemd user manager in the test: said, not failed
        self.assertIn("No systemd user manager", p.stdout)
        # the files are what a daemon loads without complaint
        d = self.daemon(start=False)
        shutil.rmtree(d.config)
        shutil.copytree(conf, d.config)
        d.start()
        self.assertNotIn("<3>", d.log())
        comps = d.get("/mooring/v1/components").json()
        # init writes state and pub/sub; the lock and configuration stores are the daemon's built-ins
        self.assertEqual(sorted((c["name"], c["type"], c["file"].startswith(d.config)) for c in comps),
                         [("configstore", "configuration.sqlite", False), ("lockstore", "lock.sqlite", False),
                          ("pubsub", "pubsub.sqlite", True), ("statestore", "state.sqlite", True)])
        # a file the user changed stays
        with open(os.path.join(conf, "components", "pubsub.yaml"), "a") as f:
            f.write("# mine\n")
        p = ctl("uninstall")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("kept     " + os.path.join(conf, "components", "pubsub.yaml"), p.stdout)
        self.assertFalse(os.path.exists(os.path.join(conf, "components", "statestore.yaml")))
        os.unlink(os.path.join(conf, "components", "pubsub.yaml"))
        p = ctl("uninstall")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertFalse(os.path.exists(conf))

    def test_run_file_js_quickstart(self):
        require("node")
        src = os.path.join(HERE, "runapps", "js-pubsub")
        folder = os.path.join(self.tmp, "js-pubsub")
        shutil.copytree(src, folder)
        # appPort: a free one instead of the quickstart's fixed 5001
        from harness import free_port
        port = free_port()
        yaml = os.path.join(folder, "dapr.yaml")
        with open(yaml) as f:
            text = f.read().replace("appPort: 5001", f"appPort: {port}")
        with open(yaml, "w") as f:
            f.write(text)
        d = self.daemon(bus=True)
        p = self.run_bg(f"--bus-address={d.dbus.address}", "run", "-f", folder)
        self.wait_line(p, "== APP - order-processor == all 5 orders received")
        out = "\n".join(p.lines)
        self.assertIn("== APP - checkout == Published data: {\"orderId\":1} (pubsub)", out)
        self.assertIn("== APP - order-processor == Subscriber received: {\"orderId\":1}", out)
        self.assertIn("warning: unknown field 'someFutureField'; ignored", out)
        self.assertIn("warning: 'logLevel' is not supported", out)
        self.assertEqual(sorted(self.apps(d)), ["checkout", "order-processor"])
        # the quickstart's Redis statestore: the embedded default serves it, with a warning
        self.assertIn("component 'statestore' of an app's resources is not used", d.log())
        r = request(d.app_socket("checkout"), "GET", "/v1.0/state/statestore/last-order")
        self.assertEqual(r.status, 200, r.body)
        # Ctrl-C stops them all
        p.send_signal(signal.SIGINT)
        self.assertEqual(self.finish(p), 0, p.lines)
        wait_for(lambda: self.apps(d) == [], what="both apps' removal")


if __name__ == "__main__":
    main()
