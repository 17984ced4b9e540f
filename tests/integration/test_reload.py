#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Reload keeps the last good version of a broken file (issue 10, part 3).

For each kind of file — an app file, a component YAML, config.yaml and a
subscription YAML — the test breaks the file, reloads, and checks that the
running object still works exactly as before (the app's socket, port and a
connection opened before the reload; the in-memory store with its key; the
accessControl policy; delivery to the route) and that the log says "kept the
previous version" with file:line. Then it changes the file to something
valid and different, reloads and sees the change applied; then removes the
file, reloads and sees the object gone. A broken file at first start is
still just an error.
"""

import json
import os
import re
import shutil
import signal
import tempfile

from echoapp import EchoApp
from harness import DaemonTestCase, UnixHTTPConnection, free_port, main, request, wait_for
from testapp import TestApp

KEPT = "; kept the previous version"


def kept_lines(log, path_suffix):
    """The log lines saying path_suffix:LINE: ...; kept the previous version."""
    return [line for line in log.splitlines()
            if re.search(re.escape(path_suffix) + r":\d+: .*" + re.escape(KEPT), line)]


def kept_line(log, path_suffix):
    """The last such line, or None."""
    lines = kept_lines(log, path_suffix)
    return lines[-1] if lines else None


class ReloadTestCase(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="mooring-reload-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def reload(self, d):
        n = len(d.notify.messages)
        d.signal(signal.SIGHUP)
        i = d.notify.wait("RELOADING=1", after=n)
        d.notify.wait("READY=1", after=i)
        return d.notify.messages[i:]

    def write(self, d, rel, text):
        path = os.path.join(d.config, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return path

    def assert_kept(self, d, path_suffix, messages):
        self.assertIsNotNone(kept_line(d.log(), path_suffix), f"no '{path_suffix}:LINE: ...{KEPT}' in the log")
        # the readiness status still reports the errors, and that versions were kept
        self.assertTrue(any(m.startswith("STATUS=") and "configuration errors" in m and "kept the previous"
                            in m for m in messages), messages)


class AppFileTest(ReloadTestCase):
    def test_broken_app_file_keeps_the_app(self):
        port = free_port()
        d = self.daemon(bus=True, apps={"a": f"[App]\nHttpPort={port}\n"})
        sock = d.app_socket("a")
        inode = os.stat(sock).st_ino
        # a connection made before the reload must go on working: the listener is untouched
        conn = UnixHTTPConnection(sock)
        self.addCleanup(conn.close)
        self.assertEqual(request(None, "GET", "/v1.0/metadata", conn=conn).json()["id"], "a")

        path = os.path.join(d.config, "apps.d", "a.conf")
        d.write_app("a", "[App]\nHttpPort=not-a-port\n")
        messages = self.reload(d)
        self.assertEqual([a["id"] for a in d.get("/mooring/v1/apps").json()], ["a"])
        self.assertEqual(os.stat(sock).st_ino, inode)
        self.assertEqual(request(None, "GET", "/v1.0/metadata", conn=conn).json()["id"], "a")
        self.assertEqual(request(("127.0.0.1", port), "GET", "/v1.0/metadata").json()["id"], "a")
        self.assertNotIn("App removed.", d.log())
        self.assert_kept(d, "apps.d/a.conf", messages)
        self.assertIn(f"{path}:2: field 'HttpPort': expected a port number 1-65535{KEPT}", d.log())

        # garbage that is no INI at all, and the D-Bus answer says errors were found
        d.write_app("a", "\x00\x01 garbage [[[\n")
        p = d.call("Reload", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("1 broken files or documents kept their previous version", p.stderr)
        self.assertEqual(len(kept_lines(d.log(), "apps.d/a.conf")), 2)
        self.assertEqual(request(None, "GET", "/v1.0/metadata", conn=conn).json()["id"], "a")
        self.assertEqual(os.stat(sock).st_ino, inode)

        # fixed, differently: the change applies (same listeners, new settings)
        d.write_app("a", f"[App]\nHttpPort={port}\nAppAddress=http://127.0.0.1:2\n")
        self.reload(d)
        apps = d.get("/mooring/v1/apps").json()
        self.assertEqual([(x["id"], x["appAddress"]) for x in apps], [("a", "http://127.0.0.1:2")])
        # a clean reload over D-Bus answers success again
        self.assertEqual(d.call("Reload").returncode, 0)

        # removed: the app goes
        d.remove_app("a")
        self.reload(d)
        self.assertEqual(d.get("/mooring/v1/apps").json(), [])
        self.assertFalse(os.path.exists(sock))

    def test_broken_at_first_start_is_an_error(self):
        d = self.daemon(apps={"a": "[App]\nHttpPort=not-a-port\n"})
        self.assertIn("apps.d/a.conf:2: field 'HttpPort': expected a port number 1-65535", d.log())
        self.assertNotIn(KEPT, d.log())
        self.assertEqual(d.get("/mooring/v1/apps").json(), [])


STORE = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: store
spec:
  type: {type}
  version: {version}
{extra}"""


class ComponentFileTest(ReloadTestCase):
    def save(self, d, key, value):
        r = request(d.app_socket("a"), "POST", "/v1.0/state/store", body=json.dumps([{"key": key, "value": value}]),
                    headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 204, r)

    def load(self, d, key):
        return request(d.app_socket("a"), "GET", f"/v1.0/state/store/{key}")

    def test_broken_component_keeps_store_and_data(self):
        d = self.daemon(apps={"a": "[App]\n"},
                        components={"store.yaml": STORE.format(type="state.in-memory", version="v1", extra="")})
        self.save(d, "k", "kept")
        path = os.path.join(d.config, "components", "store.yaml")

        # 1. a YAML syntax error: the document cannot be told, the whole file's last version stays
        d.write_component("store.yaml", "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: [unclosed\n")
        messages = self.reload(d)
        self.assertEqual(self.load(d, "k").json(), "kept")
        self.assertNotIn("Component removed.", d.log())
        self.assert_kept(d, "components/store.yaml", messages)
        self.assertIn(f"{path}:4: YAML syntax error", kept_line(d.log(), "components/store.yaml"))

        # 2. a document that names itself but is invalid: that component stays
        d.write_component("store.yaml", STORE.format(type="state.in-memory", version="one", extra=""))
        self.reload(d)
        self.assertEqual(self.load(d, "k").json(), "kept")
        self.assertIn(f"{path}:7: field 'spec.version': expected v1, v2, ... not 'one'{KEPT}", d.log())

        # 3. parses, but no driver takes it: the running store stays
        d.write_component("store.yaml", STORE.format(type="state.nosuchdriver", version="v1", extra=""))
        self.reload(d)
        self.assertEqual(self.load(d, "k").json(), "kept")
        self.assertIn(f"{path}:1: field 'spec.metadata': state store 'store' (state.nosuchdriver)",
                      kept_line(d.log(), "components/store.yaml"))
        comps = {c["name"]: c["type"] for c in d.get("/mooring/v1/components").json()}
        self.assertEqual(comps.get("store"), "state.in-memory")
        self.assertNotIn("Component removed.", d.log())

        # fixed, differently (scoped now): the component is reopened as a new store
        d.write_component("store.yaml", STORE.format(type="state.in-memory", version="v1", extra="scopes:\n- a\n"))
        self.reload(d)
        self.assertEqual(self.load(d, "k").status, 204)
        self.save(d, "k", "new")
        self.assertEqual(self.load(d, "k").json(), "new")

        # removed: gone
        os.unlink(path)
        self.reload(d)
        self.assertNotIn("store", [c["name"] for c in d.get("/mooring/v1/components").json()])
        r = self.load(d, "k")
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json()["errorCode"], "ERR_STATE_STORE_NOT_FOUND")

    def test_per_document_in_a_multi_document_file(self):
        """One good document changes, one broken document keeps its running version."""
        two = (STORE.format(type="state.in-memory", version="v1", extra="") + "---\n" +
               STORE.format(type="state.in-memory", version="v1", extra="").replace("name: store", "name: other"))
        d = self.daemon(apps={"a": "[App]\n"}, components={"two.yaml": two})
        self.save(d, "k", "kept")
        broken = (STORE.format(type="state.in-memory", version="bad", extra="") + "---\n" +
                  STORE.format(type="state.in-memory", version="v1", extra="").replace("name: store", "name: third"))
        d.write_component("two.yaml", broken)
        self.reload(d)
        self.assertEqual(self.load(d, "k").json(), "kept")
        comps = sorted(c["name"] for c in d.get("/mooring/v1/components").json())
        self.assertEqual(comps, ["configstore", "lockstore", "pubsub", "store", "third"])
        self.assertIn(f"two.yaml:7: field 'spec.version': expected v1, v2, ... not 'bad'{KEPT}", d.log())


ACL = """apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: acl
spec:
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: a
      defaultAction: deny
      trustDomain: public
      namespace: default
      operations:
      - name: {allow}
        action: allow
"""


class ConfigurationFileTest(ReloadTestCase):
    def test_broken_config_yaml_keeps_access_control(self):
        b = EchoApp(unix_path=os.path.join(self.tmp, "b.sock"))
        b.start()
        self.addCleanup(b.stop)
        d = self.daemon(start=False, apps={"a": "[App]\n", "b": f"[App]\nAppAddress={b.address}\n"})
        path = self.write(d, "config.yaml", ACL.format(allow="/allowed/*"))
        d.start()
        a = d.app_socket("a")

        def status(method):
            return request(a, "GET", f"/v1.0/invoke/b/method/{method}").status

        self.assertEqual(status("allowed/x"), 200)
        self.assertEqual(status("other/x"), 403)

        # broken: the deny stays in force and the allow too (not "fail closed" for everything)
        self.write(d, "config.yaml", ACL.format(allow="/allowed/*") + "  tracing: [unclosed\n")
        messages = self.reload(d)
        self.assertEqual(status("allowed/x"), 200)
        self.assertEqual(status("other/x"), 403)
        self.assert_kept(d, "config.yaml", messages)
        self.assertIn(f"{path}:", kept_line(d.log(), "config.yaml"))

        # a document that is valid YAML but not a valid Configuration
        self.write(d, "config.yaml", ACL.format(allow="/allowed/*").replace("action: allow", "action: maybe"))
        self.reload(d)
        self.assertEqual(status("allowed/x"), 200)
        self.assertEqual(status("other/x"), 403)
        self.assertIn(f"{path}:16: ", kept_line(d.log(), "config.yaml"))

        # fixed, differently: the new policy applies
        self.write(d, "config.yaml", ACL.format(allow="/other/*"))
        self.reload(d)
        self.assertEqual(status("allowed/x"), 403)
        self.assertEqual(status("other/x"), 200)

        # removed: no configuration, everything allowed
        os.unlink(path)
        self.reload(d)
        self.assertEqual(status("allowed/x"), 200)
        self.assertEqual(status("other/x"), 200)


PUBSUB = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.in-memory
  version: v1
"""

SUBSCRIPTION = """apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: orders-sub
spec:
  pubsubname: pubsub
  topic: orders
  routes:
    default: {route}
"""


class SubscriptionFileTest(ReloadTestCase):
    def test_broken_subscription_keeps_delivering(self):
        app = TestApp(unix_path=os.path.join(self.tmp, "sub.sock")).start()
        self.addCleanup(app.stop)
        d = self.daemon(start=False, apps={"sub": f"[App]\nAppAddress=unix:{app.unix_path}\n"},
                        components={"pubsub.yaml": PUBSUB})
        path = self.write(d, "subscriptions/orders.yaml", SUBSCRIPTION.format(route="/first"))
        d.start()
        sent = [0]

        def publish_and_wait(route):
            before = app.paths().count(route)
            r = request(d.app_socket("sub"), "POST", "/v1.0/publish/pubsub/orders", body=b'{"n": 1}',
                        headers={"Content-Type": "application/json"})
            self.assertEqual(r.status, 204, r)
            sent[0] += 1
            wait_for(lambda: app.paths().count(route) > before, timeout=15, what=f"a delivery to {route}")

        def routes():
            return [(s["app"], s["route"]) for s in d.get("/mooring/v1/subscriptions").json()]

        wait_for(lambda: ("sub", "/first") in routes(), what="the subscription to start")
        publish_and_wait("/first")

        # broken YAML: the subscription keeps delivering to its route
        self.write(d, "subscriptions/orders.yaml", "apiVersion: dapr.io/v2alpha1\nkind: [Subscription\n")
        messages = self.reload(d)
        wait_for(lambda: ("sub", "/first") in routes(), timeout=5, what="the kept subscription to run")
        publish_and_wait("/first")
        self.assert_kept(d, "subscriptions/orders.yaml", messages)
        self.assertIn(f"{path}:", kept_line(d.log(), "subscriptions/orders.yaml"))

        # a document that names itself but has no route: that subscription stays
        self.write(d, "subscriptions/orders.yaml", SUBSCRIPTION.format(route="").replace("    default: \n", ""))
        self.reload(d)
        wait_for(lambda: ("sub", "/first") in routes(), timeout=5, what="the kept subscription to run")
        publish_and_wait("/first")
        self.assertIn("field 'spec.routes'", kept_line(d.log(), "subscriptions/orders.yaml"))

        # fixed, differently: the new route applies
        self.write(d, "subscriptions/orders.yaml", SUBSCRIPTION.format(route="/second"))
        self.reload(d)
        wait_for(lambda: ("sub", "/second") in routes(), what="the new subscription to run")
        self.assertNotIn(("sub", "/first"), routes())
        publish_and_wait("/second")

        # removed: gone
        os.unlink(path)
        self.reload(d)
        self.assertEqual([r for r in routes() if r[0] == "sub"], [])


if __name__ == "__main__":
    main()
