#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Prometheus metrics end to end: a real Prometheus server (Debian's) scrapes a
running mooringd on MetricsPort= and its HTTP API must return Dapr's series
with the values of the traffic the test made; promtool lints the exposition;
10,000 distinct hostile paths must not grow the number of series; the
Configuration's spec.metric.enabled: false turns an app's series off; the
metrics port serves nothing but /metrics.
"""

import http.client
import json
import os
import re
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

from echoapp import EchoApp
from harness import TIMEOUT, DaemonTestCase, UnixHTTPConnection, free_port, main, request, require, wait_for

PROMETHEUS = "prometheus"
PROMTOOL = "promtool"

# Counters whose names daprd defines without the "_total" suffix promtool's linter asks for:
# compatibility with Dapr's dashboards wins, so these lint remarks (and only these) are expected.
DAPR_COUNTERS = (
    "dapr_http_server_request_count",
    "dapr_http_server_response_count",
    "dapr_http_client_completed_count",
    "dapr_component_state_count",
    "dapr_component_pubsub_egress_count",
    "dapr_component_pubsub_ingress_count",
    "dapr_component_output_binding_count",
    "dapr_component_input_binding_count",
    "dapr_component_secret_count",
    "mooring_http_server_overflow_count",
)

SERIES_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$')


def parse(text):
    """{(name, frozenset(labels)): value} of every sample."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SERIES_RE.match(line)
        assert m, f"unparsable sample line: {line!r}"
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def sample(samples, name, **labels):
    want = set(labels.items())
    hits = [v for (n, ls), v in samples.items() if n == name and want <= set(ls)]
    return sum(hits) if hits else None


class Prometheus:
    """Debian's prometheus on a free loopback port, scraping targets every second."""

    def __init__(self, tmp, targets):
        self.port = free_port()
        self.dir = os.path.join(tmp, "prometheus")
        os.makedirs(self.dir)
        cfg = os.path.join(self.dir, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n"
                    "  - job_name: mooringd\n    static_configs:\n"
                    f"      - targets: [{', '.join(repr(t) for t in targets)}]\n")
        self.log = open(os.path.join(self.dir, "log"), "w")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={self.dir}/data",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=self.log, stderr=self.log)
        wait_for(self.ready, what="prometheus to be ready")

    def ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("prometheus exited: " + open(self.log.name).read())
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def query(self, q):
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
        with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
            j = json.load(r)
        assert j["status"] == "success", j
        return j["data"]["result"]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class MetricsTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="mooring-metrics-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", self.tmp]))

    def echo(self, name):
        a = EchoApp(unix_path=os.path.join(self.tmp, f"{name}.sock"))
        self.addCleanup(a.stop)
        return a.start()

    def metrics(self, d):
        r = d.get("/metrics")
        self.assertEqual(r.status, 200, r.body)
        self.assertTrue(r.headers["content-type"].startswith("text/plain; version=0.0.4"), r.headers)
        return r.body.decode()

    def traffic(self, d):
        """Known traffic from app a: 5 invocations of b, 3 health checks, 2 saves and 4 gets."""
        sock = d.app_socket("a")
        for i in range(5):
            r = request(sock, "POST", f"/v1.0/invoke/b/method/orders/{i}", body=b"x" * 100)
            self.assertEqual(r.status, 200, r.body)
        for _ in range(3):
            self.assertEqual(request(sock, "GET", "/v1.0/healthz").status, 204)
        for i in range(2):
            r = request(sock, "POST", "/v1.0/state/statestore", body=json.dumps([{"key": f"k{i}", "value": i}]).encode())
            self.assertEqual(r.status, 204, r.body)
        for i in range(4):
            self.assertEqual(request(sock, "GET", f"/v1.0/state/statestore/k{i % 2}").status, 200)

    def test_prometheus_scrapes_dapr_series(self):
        require(PROMETHEUS)
        b = self.echo("b")
        port = free_port()
        d = self.daemon(apps={"a": "[App]\n", "b": f"[App]\nAppAddress={b.address}\n"},
                        conf=f"[Daemon]\nMetricsPort={port}\n")
        self.traffic(d)
        prom = Prometheus(self.tmp, [f"127.0.0.1:{port}"])
        self.addCleanup(prom.stop)

        def value(q):
            res = prom.query(q)
            return float(res[0]["value"][1]) if res else None

        q = 'sum(dapr_http_server_request_count{app_id="a",method="POST",path="/v1.0/invoke/{id}/method/{method*}"})'
        wait_for(lambda: value(q) == 5, what=f"{q} == 5 (now {value(q)})")
        self.assertEqual(value('sum(dapr_http_server_response_count{app_id="a",path="/v1.0/healthz",status="204"})'), 3)
        self.assertEqual(value('sum(dapr_http_server_latency_count{app_id="a",path="/v1.0/state/{store}/{key}",'
                               'method="GET",status="200"})'), 4)
        # calls into b, seen by b's "sidecar": Dapr's client metrics under app_id b
        self.assertEqual(value('sum(dapr_http_client_completed_count{app_id="b",method="POST",status="200"})'), 5)
        self.assertEqual(value('sum(dapr_http_client_sent_bytes_sum{app_id="b"})'), 500)
        self.assertEqual(value('sum(dapr_component_state_count{app_id="a",component="statestore",operation="set",'
                               'success="true"})'), 2)
        self.assertEqual(value('sum(dapr_component_state_count{app_id="a",component="statestore",operation="get",'
                               'success="true"})'), 4)
        # the built-in defaults: statestore, pubsub, lockstore, configstore
        self.assertEqual(value('sum(dapr_runtime_component_loaded{app_id="a"})'), 4)
        # request bodies: 5 invocations of 100 bytes and 2 saves
        self.assertEqual(value('dapr_http_server_request_bytes_count{app_id="a"}'), 14)
        self.assertGreater(value('process_resident_memory_bytes'), 1 << 20)
        self.assertGreater(value('process_open_fds'), 3)
        self.assertIsNotNone(value('process_cpu_seconds_total'))
        # a histogram Prometheus can compute with: every request took under 100 s
        self.assertEqual(value('sum(dapr_http_server_latency_bucket{app_id="a",le="100000"})'),
                         value('sum(dapr_http_server_latency_count{app_id="a"})'))
        # the metrics port serves /metrics and nothing else: no API, no invocation by header
        for path, hdr in (("/v1.0/healthz", {}), ("/mooring/v1/apps", {}), ("/x", {"dapr-app-id": "b"})):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
            c.request("GET", path, headers=hdr)
            self.assertEqual(c.getresponse().status, 404, path)
            c.close()
        self.assertEqual(len(b.calls("/orders")), 5)

    def test_promtool_accepts_the_exposition(self):
        require(PROMTOOL)
        b = self.echo("b")
        d = self.daemon(apps={"a": "[App]\n", "b": f"[App]\nAppAddress={b.address}\n"})
        self.traffic(d)
        # label values that need escaping reach the exposition only through component names and
        # topics from config files; a publish to a topic with a quote and a backslash:
        sock = d.app_socket("a")
        r = request(sock, "POST", "/v1.0/publish/pubsub/we%22ird%5Ctopic", body=b'{"a":1}',
                    headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 204, r.body)
        text = self.metrics(d)
        self.assertIn('topic="we\\"ird\\\\topic"', text)
        p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True,
                           timeout=TIMEOUT)
        # exit 3: lint remarks only; 1 would be a format error
        self.assertIn(p.returncode, (0, 3), p.stdout + p.stderr)
        for line in (p.stdout + p.stderr).splitlines():
            name = line.split(" ", 1)[0]
            self.assertIn(name, DAPR_COUNTERS, f"unexpected promtool remark: {line}")

    def test_hostile_paths_keep_cardinality_bounded(self):
        b = self.echo("b")
        d = self.daemon(apps={"a": "[App]\n", "b": f"[App]\nAppAddress={b.address}\n"})
        sock = d.app_socket("a")
        before = None
        c = UnixHTTPConnection(sock)
        methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "PURGE"]
        for i in range(10000):
            kind = i % 4
            if kind == 0:
                path = f"/nope/{i}/{'x' * (i % 50)}"          # unrouted
            elif kind == 1:
                path = f"/v1.0/state/store{i}/key{i}"           # unknown stores, distinct keys
            elif kind == 2:
                path = f"/v1.0/invoke/app{i}/method/m{i}"       # unknown apps
            else:
                path = f"/v1.0/metadata/key{i}%2F{i}"           # every key distinct (and PUT fails: GET)
            c.request(methods[i % len(methods)], path, headers={"Content-Length": "0"})
            resp = c.getresponse()
            resp.read()
            if i == 99:
                before = parse(self.metrics(d))
        c.close()
        after = parse(self.metrics(d))
        names = lambda s, pfx: {k for k in s if k[0].startswith(pfx) and ("app_id", "a") in k[1]}
        server_before = names(before, "dapr_http_server")
        server_after = names(after, "dapr_http_server")
        # every route × method × status combination was already seen in the first 100 requests
        self.assertEqual(len(server_after), len(server_before), sorted(server_after - server_before)[:20])
        self.assertLess(len(after), 3000)
        paths = {dict(ls).get("path") for (n, ls) in after if n == "dapr_http_server_request_count"}
        self.assertTrue(all(p is None or p in ("_unmatched", "/metrics") or "{" in p or p == "/v1.0/healthz"
                            for p in paths), paths)
        self.assertEqual(sample(after, "dapr_http_server_request_count", app_id="a"), 10000)
        # an invented method is no label value either
        text = self.metrics(d)
        self.assertNotIn('method="PURGE"', text)
        self.assertIn('method="_other"', text)

    def test_metric_enabled_false_turns_series_off(self):
        b = self.echo("b")
        cfg = os.path.join(self.tmp, "quiet.yaml")
        with open(cfg, "w") as f:
            f.write("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: quiet\n"
                    "spec:\n  metric:\n    enabled: false\n")
        d = self.daemon(apps={"a": f"[App]\nConfiguration={cfg}\n", "c": "[App]\n",
                              "b": f"[App]\nAppAddress={b.address}\n"})
        for app in ("a", "c"):
            self.assertEqual(request(d.app_socket(app), "GET", "/v1.0/healthz").status, 204)
        s = parse(self.metrics(d))
        self.assertIsNone(sample(s, "dapr_http_server_request_count", app_id="a"))
        self.assertEqual(sample(s, "dapr_http_server_request_count", app_id="c"), 1)
        # a bad value is a configuration error with file and field, and the app refuses calls
        with open(cfg, "w") as f:
            f.write("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: quiet\n"
                    "spec:\n  metric:\n    enabled: maybe\n")
        d.signal(1)
        d.notify.wait("READY=1", after=len(d.notify.messages))
        wait_for(lambda: "spec.metric.enabled" in d.log(), what="the configuration error in the log")


if __name__ == "__main__":
    main()
