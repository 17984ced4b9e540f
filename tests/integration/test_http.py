#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""HTTP front-end: health, metadata, errors, body limit, API token, identity by listener."""

import json
import os
import socket
import threading

from harness import DaemonTestCase, free_port, main, request

COMPONENT = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {name}
spec:
  type: state.sqlite
  version: v1
  metadata:
  - name: connectionString
    value: "data.db"
{scopes}
"""


class HttpTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.port = free_port()
        self.d = self.daemon(
            apps={
                "orders": f"[App]\nAppAddress=http://127.0.0.1:{free_port()}\nHttpPort={self.port}\nApiToken=s3cret\n",
                "billing": "[App]\nAppAddress=unix:/nonexistent/billing.sock\n",
            },
            components={
                "state.yaml": COMPONENT.format(name="statestore", scopes=""),
                "private.yaml": COMPONENT.format(name="private", scopes="scopes: [billing]"),
            },
            conf="[Daemon]\nMaxRequestBodySize=1K\n",
        )

    def test_healthz_everywhere(self):
        d = self.d
        for target in (d.api, d.app_socket("orders"), d.app_socket("billing"), ("127.0.0.1", self.port)):
            r = d.get("/v1.0/healthz", target=target)
            self.assertEqual(r.status, 204, target)
            self.assertEqual(r.body, b"")
            self.assertEqual(d.get("/v1.0/healthz/outbound", target=target).status, 204)

    def test_healthz_appid(self):
        d = self.d
        self.assertEqual(d.get("/v1.0/healthz?appid=billing", target=d.app_socket("billing")).status, 204)
        r = d.get("/v1.0/healthz?appid=orders", target=d.app_socket("billing"))
        self.assertEqual(r.status, 500)
        self.assertEqual(r.json()["errorCode"], "ERR_HEALTH_APPID_NOT_MATCH")

    def test_metadata_identity_by_listener(self):
        d = self.d
        m = d.get("/v1.0/metadata", target=d.app_socket("billing")).json()
        self.assertEqual(m["id"], "billing")
        self.assertEqual(sorted(c["name"] for c in m["components"]),
                         ["configstore", "lockstore", "private", "pubsub", "statestore"])
        self.assertEqual(m["appConnectionProperties"]["channelAddress"], "unix:/nonexistent/billing.sock")
        self.assertIn("daprRuntimeVersion", m["extended"])
        # orders is not in private's scopes: it does not see it
        m = d.get("/v1.0/metadata", target=d.app_socket("orders")).json()
        self.assertEqual(m["id"], "orders")
        comps = {c["name"]: c["type"] for c in m["components"]}
        self.assertEqual(comps, {"configstore": "configuration.sqlite", "lockstore": "lock.sqlite", "pubsub": "pubsub.sqlite",
                                 "statestore": "state.sqlite"})
        self.assertEqual(m["appConnectionProperties"]["protocol"], "http")
        # a header cannot change who you are
        m = d.get("/v1.0/metadata", target=d.app_socket("orders"), headers={"dapr-app-id": "billing"}).json()
        self.assertEqual(m["id"], "orders")
        # the shared socket: no unit, no app
        m = d.get("/v1.0/metadata").json()
        self.assertEqual(m["id"], "")

    def test_metadata_put_is_per_app(self):
        d = self.d
        r = request(d.app_socket("billing"), "PUT", "/v1.0/metadata/color", body=b"blue")
        self.assertEqual(r.status, 204)
        r = request(d.app_socket("billing"), "PUT", "/v1.0/metadata/a%2Fb", body="ü".encode())
        self.assertEqual(r.status, 204)
        m = d.get("/v1.0/metadata", target=d.app_socket("billing")).json()
        self.assertEqual(m["extended"]["color"], "blue")
        self.assertEqual(m["extended"]["a/b"], "ü")
        m = d.get("/v1.0/metadata", target=d.app_socket("orders"), headers={"dapr-api-token": "s3cret"}).json()
        self.assertNotIn("color", m["extended"])
        r = request(d.app_socket("billing"), "PUT", "/v1.0/metadata/bad", body=b"\xff\xfe")
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json()["errorCode"], "ERR_BAD_REQUEST")

    def test_unknown_routes_and_methods(self):
        d = self.d
        for method, path in (("GET", "/v1.0/nothing"), ("DELETE", "/v1.0/metadata"), ("POST", "/v1.0/healthz"),
                             ("GET", "/"), ("GET", "/v1.0/metadata/x/y")):
            r = request(d.app_socket("billing"), method, path)
            self.assertEqual(r.status, 404, (method, path))
            self.assertEqual(r.headers["content-type"], "application/json")
            body = r.json()
            self.assertEqual(body["errorCode"], "ERR_DIRECT_INVOKE")
            self.assertIn("dapr-app-id", body["message"])
        r = request(d.app_socket("billing"), "PUT", "/v1.0/metadata/%zz")
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json()["errorCode"], "ERR_MALFORMED_REQUEST")

    def test_path_normalization(self):
        d = self.d
        self.assertEqual(d.get("//v1.0//healthz/", target=d.app_socket("billing")).status, 204)

    def test_body_limit(self):
        d = self.d
        r = request(d.app_socket("billing"), "PUT", "/v1.0/metadata/big", body=b"x" * 2048)
        self.assertEqual(r.status, 413)
        self.assertEqual(r.json()["errorCode"], "ERR_BODY_TOO_LARGE")
        # chunked, no Content-Length: cut off while reading
        def chunks():
            for _ in range(8):
                yield b"y" * 512
        r = request(d.app_socket("billing"), "PUT", "/v1.0/metadata/big2", body=chunks())
        self.assertEqual(r.status, 413)
        m = d.get("/v1.0/metadata", target=d.app_socket("billing")).json()
        self.assertNotIn("big", m["extended"])
        self.assertNotIn("big2", m["extended"])
        # just under the limit is fine
        r = request(d.app_socket("billing"), "PUT", "/v1.0/metadata/ok", body=b"z" * 1000)
        self.assertEqual(r.status, 204)

    def test_api_token_on_tcp(self):
        d, tcp = self.d, ("127.0.0.1", self.port)
        r = d.get("/v1.0/metadata", target=tcp)
        self.assertEqual(r.status, 401)
        self.assertEqual(r.body, b"invalid api token")
        r = d.get("/v1.0/metadata", target=tcp, headers={"dapr-api-token": "wrong"})
        self.assertEqual(r.status, 401)
        r = d.get("/v1.0/metadata", target=tcp, headers={"dapr-api-token": "s3cret-longer"})
        self.assertEqual(r.status, 401)
        r = d.get("/v1.0/metadata", target=tcp, headers={"dapr-api-token": "s3cret"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["id"], "orders")
        # health is exempt, as in Dapr; the app's own Unix socket needs no token
        self.assertEqual(d.get("/v1.0/healthz", target=tcp).status, 204)
        self.assertEqual(d.get("/v1.0/metadata", target=d.app_socket("orders")).status, 200)

    def test_admin_routes_only_on_shared_socket(self):
        d = self.d
        apps = d.get("/mooring/v1/apps").json()
        self.assertEqual([a["id"] for a in apps], ["billing", "orders"])
        orders = apps[1]
        self.assertEqual(orders["httpPort"], self.port)
        self.assertEqual(orders["httpSocket"], d.app_socket("orders"))
        self.assertEqual(orders["source"], "file")
        self.assertNotIn("s3cret", json.dumps(apps))
        comps = d.get("/mooring/v1/components").json()
        self.assertEqual(sorted(c["name"] for c in comps), ["configstore", "lockstore", "private", "pubsub", "statestore"])
        private = [c for c in comps if c["name"] == "private"][0]
        self.assertEqual(private["scopes"], ["billing"])
        self.assertTrue(private["file"].endswith("private.yaml"))
        st = d.get("/mooring/v1/status").json()
        self.assertEqual((st["state"], st["apps"], st["components"], st["bus"]), ("running", 2, 5, "none"))  # + the default statestore, pubsub, lockstore and configstore
        r = d.get("/mooring/v1/apps", target=d.app_socket("billing"))
        self.assertEqual(r.status, 404)

    def test_keepalive_and_concurrency(self):
        d = self.d
        from harness import UnixHTTPConnection
        conn = UnixHTTPConnection(d.app_socket("billing"))
        for _ in range(50):
            self.assertEqual(request(None, "GET", "/v1.0/healthz", conn=conn).status, 204)
        conn.close()

        errors = []

        def worker():
            try:
                c = UnixHTTPConnection(d.app_socket("billing"))
                for _ in range(20):
                    r = request(None, "GET", "/v1.0/metadata", conn=c)
                    if r.status != 200 or r.json()["id"] != "billing":
                        errors.append(r)
                c.close()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=worker) for _ in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])

    def test_garbage_does_not_hurt(self):
        d = self.d
        for junk in (b"\x00\x01\x02\r\n\r\n", b"GET\r\n\r\n", b"GET /v1.0/healthz HTTP/9.9\r\n\r\n",
                     b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                     b"A" * 70000 + b"\r\n\r\n"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(d.app_socket("billing"))
            try:
                s.sendall(junk)
                s.shutdown(socket.SHUT_WR)
                s.recv(4096)
            except OSError:
                pass
            s.close()
        self.assertEqual(d.get("/v1.0/healthz", target=d.app_socket("billing")).status, 204)
        d.assert_running()


class SocketOwnershipTest(DaemonTestCase):
    """An app with User= gets a socket only that user (and root) can connect to; one
    without gets 0600 and the daemon's (handed to its own unit later, see
    test_app_security.py); AllowAnyUser=yes opens it to every local user."""

    def test_user_owns_the_socket(self):
        import subprocess
        import sys
        if os.geteuid() != 0:
            self.skipTest("needs root to act as two users")
        d = self.daemon(apps={"private": "[App]\nUser=65534\n", "open": "[App]\nAllowAnyUser=yes\n",
                              "default": "[App]\n", "ghost": "[App]\nUser=no-such-user-here\n"})
        st = os.stat(d.app_socket("private"))
        self.assertEqual((st.st_uid, st.st_mode & 0o777), (65534, 0o600))
        self.assertEqual(os.stat(d.app_socket("open")).st_mode & 0o777, 0o666)
        st = os.stat(d.app_socket("default"))
        self.assertEqual((st.st_uid, st.st_mode & 0o777), (os.geteuid(), 0o600))
        self.assertIn("apps.d/ghost.conf: field 'User': unknown user 'no-such-user-here'", d.log())
        client = ("import socket, sys\n"
                  "s = socket.socket(socket.AF_UNIX)\n"
                  "try:\n    s.connect(sys.argv[1]); print('connected')\n"
                  "except PermissionError:\n    print('denied')\n")

        def as_user(uid, path):
            return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                                   sys.executable, "-c", client, path],
                                  capture_output=True, text=True, timeout=30).stdout.strip()
        self.assertEqual(as_user(65534, d.app_socket("private")), "connected")
        self.assertEqual(as_user(65533, d.app_socket("private")), "denied")
        self.assertEqual(as_user(65533, d.app_socket("open")), "connected")
        self.assertEqual(as_user(65533, d.app_socket("default")), "denied")
        self.assertEqual(d.get("/v1.0/metadata", target=d.app_socket("private")).json()["id"], "private")
        # removed on reload although the socket is not the daemon's user's
        d.remove_app("private")
        import signal
        n = len(d.notify.messages)
        d.signal(signal.SIGHUP)
        d.notify.wait("READY=1", after=n)
        self.assertFalse(os.path.exists(d.app_socket("private")))


class MetadataLimitsTest(DaemonTestCase):
    def test_bounded(self):
        d = self.daemon(apps={"a": "[App]\n"})
        sock = d.app_socket("a")
        self.assertEqual(request(sock, "PUT", "/v1.0/metadata/big", body=b"x" * 65536).status, 204)
        r = request(sock, "PUT", "/v1.0/metadata/big", body=b"x" * 65537)
        self.assertEqual(r.status, 400)
        for i in range(255):
            self.assertEqual(request(sock, "PUT", f"/v1.0/metadata/k{i}", body=b"v").status, 204)
        r = request(sock, "PUT", "/v1.0/metadata/one-too-many", body=b"v")
        self.assertEqual(r.status, 400)
        self.assertIn("at most 256", r.json()["message"])
        self.assertEqual(request(sock, "PUT", "/v1.0/metadata/k7", body=b"replaced").status, 204)
        ext = d.get("/v1.0/metadata", target=sock).json()["extended"]
        self.assertEqual(ext["k7"], "replaced")


class StateIdentityTest(DaemonTestCase):
    def test_unidentified_callers_have_no_state(self):
        d = self.daemon(apps={"a": "[App]\n"})
        r = request(d.api, "POST", "/v1.0/state/statestore", body=b'[{"key":"k","value":1}]')
        self.assertEqual(r.status, 403)
        self.assertEqual(r.json()["errorCode"], "ERR_PERMISSION_DENIED")
        self.assertEqual(request(d.api, "GET", "/v1.0/state/statestore/k").status, 403)
        self.assertEqual(request(d.app_socket("a"), "GET", "/v1.0/state/statestore/k").status, 204)


def unit_cgroup_root():
    """Where a process can be put into a cgroup named like a systemd unit, so that
    sd_pid_get_unit() reports that unit (cgroup2, alone or in hybrid mode)."""
    for root in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if os.path.exists(os.path.join(root, "cgroup.controllers")):
            return root
    return None


class SharedSocketIdentityTest(DaemonTestCase):
    """A process in mooring-app@<id>.service is that app on the shared socket."""

    def test_caller_unit_decides_the_app(self):
        import subprocess
        import sys
        root = unit_cgroup_root()
        if os.geteuid() != 0 or not root:
            self.skipTest("needs root and a cgroup2 hierarchy to put a caller into a unit's cgroup")
        d = self.daemon(apps={"billing": "[App]\n", "orders": "[App]\n"})
        cg = os.path.join(root, "mooring-app@billing.service")
        os.makedirs(cg, exist_ok=True)
        self.addCleanup(lambda: os.path.isdir(cg) and os.rmdir(cg))
        client = ("import http.client, socket, sys\n"
                  "c = http.client.HTTPConnection('localhost')\n"
                  "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); c.sock = s\n"
                  "c.request('GET', '/v1.0/metadata'); print(c.getresponse().read().decode())\n")

        def enter_cgroup():
            with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

        p = subprocess.run([sys.executable, "-c", client, d.api], preexec_fn=enter_cgroup,
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["id"], "billing")
        # The same client outside the unit is nobody in particular.
        p = subprocess.run([sys.executable, "-c", client, d.api], capture_output=True, text=True, timeout=30)
        self.assertEqual(json.loads(p.stdout)["id"], "")


if __name__ == "__main__":
    main()
