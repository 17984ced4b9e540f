#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""App channel: health probing of real app processes over a Unix socket and TCP,
transitions both ways, keep-alive reuse of the connection to the app."""

import os

from harness import DaemonTestCase, free_port, main, wait_for
from testapp import TestApp


class AppChannelTest(DaemonTestCase):
    def health(self, d, app_id):
        for a in d.get("/mooring/v1/apps").json():
            if a["id"] == app_id:
                return a["health"]
        return None

    def wait_health(self, d, app_id, want):
        wait_for(lambda: self.health(d, app_id) == want, timeout=20, what=f"{app_id} {want}")

    def test_unix_app_health_transitions_and_keepalive(self):
        tmp = self.daemon(start=False).tmp  # a scratch dir that is cleaned up
        sock = os.path.join(tmp, "app.sock")
        app = TestApp(unix_path=sock).start()
        self.addCleanup(app.stop)
        d = self.daemon(apps={"web": f"[App]\nAppAddress=unix:{sock}\nHealthCheckPath=/healthz\n"
                                     "HealthProbeInterval=100ms\n"})
        self.wait_health(d, "web", "healthy")
        wait_for(lambda: app.paths().count("/healthz") >= 8, what="8 probes")
        # one kept-alive connection carries the probes (allow one reconnect for timing)
        self.assertLessEqual(app.connections, 2, app.connections)
        ua = [r[2].get("User-Agent") for r in app.requests]
        self.assertTrue(all(u and u.startswith("mooringd/") for u in ua))

        app.health_status = 503
        self.wait_health(d, "web", "unhealthy")
        self.assertIn("App is unhealthy", d.log())
        app.health_status = 200
        self.wait_health(d, "web", "healthy")

        app.stop()
        self.wait_health(d, "web", "unhealthy")
        app.start()
        self.wait_health(d, "web", "healthy")
        d.assert_running()

    def test_tcp_app_any_answer_is_alive(self):
        port = free_port()
        d = self.daemon(apps={"api": f"[App]\nAppAddress=http://127.0.0.1:{port}\nHealthProbeInterval=100ms\n"})
        self.wait_health(d, "api", "unhealthy")  # nothing listens yet
        app = TestApp(port=port).start()
        self.addCleanup(app.stop)
        self.wait_health(d, "api", "healthy")   # 404 on "/" still proves the app is there
        self.assertIn("/", app.paths())

    def test_app_without_address_is_not_probed(self):
        d = self.daemon(apps={"quiet": "[App]\n"})
        self.assertEqual(self.health(d, "quiet"), "unknown")

    def test_reload_changing_address_restarts_probing(self):
        port1, port2 = free_port(), free_port()
        app2 = TestApp(port=port2).start()
        self.addCleanup(app2.stop)
        d = self.daemon(apps={"mv": f"[App]\nAppAddress=http://127.0.0.1:{port1}\nHealthProbeInterval=100ms\n"})
        self.wait_health(d, "mv", "unhealthy")
        d.write_app("mv", f"[App]\nAppAddress=http://127.0.0.1:{port2}\nHealthProbeInterval=100ms\n")
        import signal
        n = len(d.notify.messages)
        d.signal(signal.SIGHUP)
        d.notify.wait("READY=1", after=n)
        self.wait_health(d, "mv", "healthy")

    def test_probe_now_answers_asynchronously(self):
        """POST /mooring/v1/apps/{id}/probe suspends the HTTP request until the app
        channel's probe completes; the connection stays usable afterwards."""
        import threading
        from harness import UnixHTTPConnection, request
        port = free_port()
        d = self.daemon(apps={"api": f"[App]\nAppAddress=http://127.0.0.1:{port}\nHealthCheckPath=/healthz\n"
                                     "HealthProbeInterval=1h\n",
                              "none": "[App]\n"})
        conn = UnixHTTPConnection(d.api)
        r = request(None, "POST", "/mooring/v1/apps/api/probe", conn=conn)
        self.assertEqual(r.status, 200)
        body = r.json()
        self.assertEqual((body["id"], body["ok"], body["health"], body["status"]), ("api", False, "unhealthy", 0))
        self.assertIn("connect", body["error"].lower())
        # the same kept-alive connection serves the next request
        self.assertEqual(request(None, "GET", "/v1.0/healthz", conn=conn).status, 204)

        app = TestApp(port=port).start()
        self.addCleanup(app.stop)
        r = request(None, "POST", "/mooring/v1/apps/api/probe", conn=conn)
        body = r.json()
        self.assertEqual((body["ok"], body["health"], body["status"]), (True, "healthy", 200))
        self.assertNotIn("error", body)
        app.health_status = 500
        body = request(None, "POST", "/mooring/v1/apps/api/probe", conn=conn).json()
        self.assertEqual((body["ok"], body["status"]), (False, 500))
        conn.close()

        # many at once, each on its own connection, all answered
        results = []

        def probe():
            results.append(request(d.api, "POST", "/mooring/v1/apps/api/probe").status)
        threads = [threading.Thread(target=probe) for _ in range(30)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(results, [200] * 30)

        r = request(d.api, "POST", "/mooring/v1/apps/none/probe")
        self.assertEqual(r.status, 400)
        self.assertIn("no AppAddress", r.json()["message"])
        r = request(d.api, "POST", "/mooring/v1/apps/ghost/probe")
        self.assertEqual(r.status, 400)
        # admin only: not on an app's socket
        self.assertEqual(request(d.app_socket("none"), "POST", "/mooring/v1/apps/api/probe").status, 404)


if __name__ == "__main__":
    main()
