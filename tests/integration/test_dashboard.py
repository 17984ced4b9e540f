#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The dashboard: headless Chromium (Debian's) loads the page from a running
mooringd, on DashboardPort= (with DashboardToken=) and through `mooringctl
dashboard`'s forwarder; the test reads the DOM Chromium rendered for the apps,
components and subscriptions it configured, fails on any JavaScript error or
console error, and saves a screenshot as a test artifact. Also: the token
guards the JSON routes, the forwarder passes only the dashboard's GETs, and no
secret value reaches the page or its routes.
"""

import http.client
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request

from echoapp import EchoApp
from harness import MOORINGCTL, TIMEOUT, DaemonTestCase, free_port, main, request, skip_or_fail, wait_for

SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DASHBOARD_DIR = os.path.join(SOURCE_ROOT, "data", "dashboard")
ARTIFACTS = os.environ.get("MOORING_ARTIFACTS") or tempfile.gettempdir()
TOKEN = "s3cr3t-dashboard-token-0123456789"
SECRET = "hunter2-never-on-the-page"


def chromium():
    for c in ("chromium", "chromium-browser"):
        if shutil.which(c):
            return c
    skip_or_fail("chromium is not installed")


def run_chromium(url, *mode):
    """Chromium headless with mode (--dump-dom or --screenshot=...); returns (stdout, console lines)."""
    with tempfile.TemporaryDirectory(prefix="mooring-chromium-") as profile:
        p = subprocess.run([chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                            f"--user-data-dir={profile}", "--window-size=1280,1000", "--enable-logging=stderr",
                            "--v=0", "--virtual-time-budget=6000", *mode, url],
                           capture_output=True, text=True, timeout=120)
    console = [l for l in p.stderr.splitlines() if ":CONSOLE" in l]
    return p.stdout, console


def http_get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class DashboardTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="mooring-dash-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def start(self, conf=""):
        b = EchoApp(unix_path=os.path.join(self.tmp, "b.sock"))
        self.addCleanup(b.stop)
        b.start()
        comps = {
            "cache.yaml": "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: cache\n"
                          "spec:\n  type: state.in-memory\n  version: v1\n  metadata:\n"
                          f"  - name: password\n    value: {SECRET}\n",
            # opens with an error: no redisHost
            "broken.yaml": "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: broken\n"
                           "spec:\n  type: state.redis\n  version: v1\n  metadata:\n"
                           f"  - name: redisPassword\n    value: {SECRET}\n",
        }
        subs = ("apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: s\n"
                "spec:\n  pubsubname: pubsub\n  topic: orders\n  routes:\n    default: /orders\nscopes:\n- billing\n")
        d = self.daemon(apps={"orders": "[App]\nMaxConcurrency=4\n", "billing": f"[App]\nAppAddress={b.address}\n"},
                        components=comps, conf=conf, env={"MOORING_DASHBOARD_DIR": DASHBOARD_DIR}, start=False)
        os.makedirs(os.path.join(d.config, "subscriptions"), exist_ok=True)
        with open(os.path.join(d.config, "subscriptions", "s.yaml"), "w") as f:
            f.write(subs)
        d.start()
        for _ in range(3):
            self.assertEqual(request(d.app_socket("orders"), "GET", "/v1.0/healthz").status, 204)
        return d

    def check_page(self, url, shot):
        dom, console = run_chromium(url, "--dump-dom")
        # a JavaScript error or a console error (a failed request included) fails the test
        bad = [l for l in console if "Uncaught" in l or "Failed to load" in l or ":CONSOLE" in l and "ERROR" in l]
        self.assertEqual(bad, [], "\n".join(console))
        self.assertIn('data-loaded="1"', dom, dom[:2000])
        for app in ("orders", "billing"):
            self.assertRegex(dom, f'<tr data-app="{app}">')
        self.assertIn("mooring-app@orders.service", dom)
        self.assertIn("0 / 4", dom)  # orders' MaxConcurrency=4
        for comp in ("cache", "broken", "pubsub"):
            self.assertIn(f'data-component="{comp}"', dom)
        row = re.search(r'<tr data-component="broken">.*?</tr>', dom, re.S).group(0)
        self.assertIn('class="pill failed"', row)
        self.assertIn("redisHost", row)  # the load error
        self.assertRegex(dom, r"<td>billing</td><td>pubsub</td><td><code>orders</code></td>")
        self.assertIn("no actor runtime", dom)
        self.assertIn("App registered", dom)  # a recent log line
        self.assertNotIn(SECRET, dom)
        _, console = run_chromium(url, f"--screenshot={shot}")
        self.assertTrue(os.path.getsize(shot) > 10000)
        print(f"dashboard screenshot: {shot}")

    def test_dashboard_port_with_token(self):
        port = free_port()
        d = self.start(conf=f"[Daemon]\nDashboardPort={port}\nDashboardToken={TOKEN}\n")
        base = f"http://127.0.0.1:{port}"
        # the page's files are open, its data needs the token, other routes are not there
        self.assertEqual(http_get(base + "/dashboard/")[0], 200)
        self.assertEqual(http_get(base + "/dashboard/dashboard.js")[0], 200)
        self.assertEqual(http_get(base + "/dashboard/../mooringd.conf")[0], 404)
        self.assertEqual(http_get(base + "/mooring/v1/apps")[0], 401)
        self.assertEqual(http_get(base + "/mooring/v1/apps", {"Authorization": "Bearer wrong-token-0123456789"})[0], 401)
        st, body = http_get(base + "/mooring/v1/apps", {"Authorization": "Bearer " + TOKEN})
        self.assertEqual(st, 200)
        apps = {a["id"]: a for a in json.loads(body)}
        self.assertEqual(apps["orders"]["requests"], 3)
        self.assertEqual(http_get(base + f"/mooring/v1/components?token={TOKEN}")[0], 200)
        self.assertEqual(http_get(base + "/metrics")[0], 404)
        self.assertEqual(http_get(base + "/v1.0/healthz")[0], 404)
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        c.request("POST", f"/mooring/v1/apps/orders/probe?token={TOKEN}")
        self.assertEqual(c.getresponse().status, 404)
        c.close()
        # no secret in any route the page reads
        for route in ("status", "apps", "components", "subscriptions", "logs"):
            st, body = http_get(f"{base}/mooring/v1/{route}", {"Authorization": "Bearer " + TOKEN})
            self.assertEqual(st, 200, route)
            self.assertNotIn(SECRET.encode(), body, route)
        self.check_page(f"{base}/dashboard/?token={TOKEN}", os.path.join(ARTIFACTS, "dashboard.png"))

    def test_mooringctl_dashboard_forwards_from_the_socket(self):
        d = self.start()
        env = dict(os.environ, MOORING_SOCKET=d.api)
        p = subprocess.Popen([MOORINGCTL, "dashboard"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env)
        self.addCleanup(lambda: p.poll() is None and (p.terminate(), p.wait()))
        url = p.stdout.readline().strip()
        m = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/dashboard/\?token=([0-9a-f]{32})", url)
        self.assertTrue(m, url)
        base, token = f"http://127.0.0.1:{m.group(1)}", m.group(2)
        self.assertEqual(http_get(base + "/dashboard/")[0], 200)
        self.assertEqual(http_get(base + "/mooring/v1/apps")[0], 401)
        self.assertEqual(http_get(base + "/mooring/v1/apps", {"Authorization": "Bearer " + token})[0], 200)
        self.assertEqual(http_get(base + f"/v1.0/state/statestore/k?token={token}")[0], 404)
        self.assertEqual(http_get(base + f"/metrics?token={token}")[0], 404)
        c = http.client.HTTPConnection("127.0.0.1", int(m.group(1)), timeout=TIMEOUT)
        c.request("POST", f"/mooring/v1/apps/orders/probe?token={token}")
        self.assertEqual(c.getresponse().status, 405)
        c.close()
        self.check_page(url, os.path.join(ARTIFACTS, "dashboard-forwarded.png"))
        p.terminate()
        self.assertEqual(p.wait(TIMEOUT), 0)
        p.stdout.close()
        p.stderr.close()

        # with DashboardPort= the daemon's own port is printed and mooringctl is done
        port = free_port()
        d2 = self.daemon(conf=f"[Daemon]\nDashboardPort={port}\n", env={"MOORING_DASHBOARD_DIR": DASHBOARD_DIR})
        r = subprocess.run([MOORINGCTL, "dashboard"], capture_output=True, text=True, timeout=TIMEOUT,
                           env=dict(os.environ, MOORING_SOCKET=d2.api))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.splitlines()[0], f"http://127.0.0.1:{port}/dashboard/")


if __name__ == "__main__":
    main()
