#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Invocation loops end (issue 10, finding 1).

An app whose AppAddress is its own HttpPort (a mooringd listener) made one
request with `dapr-app-id: a` loop through mooringd without end: mooringd
forwarded dapr-app-id to the "callee", which was mooringd again. Now the
caller's routing and identity headers are never forwarded, and every call
carries mooring-hops, refused past 16 with 508.
"""

import json

from echoapp import EchoApp
from harness import DaemonTestCase, free_port, main
from test_invoke import call, inv

MAX_HOPS = 16


class InvokeLoopTest(DaemonTestCase):
    def self_app(self):
        port = free_port()
        d = self.daemon(apps={"a": f"[App]\nHttpPort={port}\nAppAddress=http://127.0.0.1:{port}\n"})
        return d, port

    def test_dapr_app_id_loop_ends_at_once(self):
        d, port = self.self_app()
        # The request of the report: before the fix it never came back (and took every fd).
        r = call(d.app_socket("a"), "GET", "/loop", headers=[("dapr-app-id", "a")], timeout=10)
        # mooringd got /loop back without dapr-app-id: no route, its own 404, passed back as a's answer.
        self.assertEqual(r.status, 404, r)
        self.assertEqual(call(port, "GET", "/v1.0/healthz", timeout=10).status, 204)

    def test_a_chain_through_this_host_is_bounded(self):
        d, port = self.self_app()
        # Each hop strips one /v1.0/invoke/a/method: 20 levels would be 20 hops; the 17th is refused.
        r = call(d.app_socket("a"), "GET", inv("a", "/v1.0/invoke/a/method" * 19 + "/x"), timeout=20)
        self.assertEqual(r.status, 508, r)
        j = json.loads(r.body)
        self.assertEqual(j["errorCode"], "ERR_DIRECT_INVOKE", j)
        self.assertIn("mooring-hops", j["message"])
        # A short chain still works: 3 hops, then mooringd's own 404 for /x.
        r = call(d.app_socket("a"), "GET", inv("a", "/v1.0/invoke/a/method" * 2 + "/x"), timeout=20)
        self.assertEqual(r.status, 404, r)

    def test_a_caller_cannot_restart_the_count(self):
        d, port = self.self_app()
        # Forging mooring-hops only counts against the forger: the count goes on from it.
        r = call(d.app_socket("a"), "GET", inv("a", "/v1.0/invoke/a/method/x"),
                 headers=[("mooring-hops", str(MAX_HOPS - 1))], timeout=20)
        self.assertEqual(r.status, 508, r)

    def test_the_callee_never_gets_routing_headers(self):
        b = EchoApp(port=free_port())
        self.addCleanup(b.stop)
        b.start()
        d = self.daemon(apps={"a": "[App]\n", "b": f"[App]\nAppAddress={b.address}\n"})
        headers = [("dapr-app-id", "b"), ("dapr-caller-namespace", "evil"), ("dapr-callee-namespace", "evil"),
                   ("mooring-hops", "3"), ("X-Kept", "yes")]
        r = call(d.app_socket("a"), "POST", "/orders", b"o", headers=headers, timeout=10)
        self.assertEqual((r.status, r.body), (200, b"o"), r)
        got = b.calls("/orders")[0]
        for h in ("dapr-app-id", "dapr-caller-namespace", "dapr-callee-namespace"):
            self.assertEqual(got.header_all(h), [], h)
        self.assertEqual(got.header_all("mooring-hops"), ["4"])
        self.assertEqual(got.header_all("dapr-caller-app-id"), ["a"])
        self.assertEqual(got.header_all("X-Kept"), ["yes"])


if __name__ == "__main__":
    main()
