#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""D-Bus front-end on a private dbus-daemon: introspection matches the documented
XML, properties, RegisterApp/UnregisterApp/GetApp/Reload, errors, and the polkit
path for callers that are neither root nor the daemon's user."""

import json
import os
import pwd
import xml.etree.ElementTree as ET

from harness import DBUS_XML, DaemonTestCase, free_port, main, request, require, wait_for

IFACE = "org.mooring.Runtime1"


def interface_shape(xml_text):
    """Members of org.mooring.Runtime1 with types, arg names and directions (docs ignored)."""
    root = ET.fromstring(xml_text)
    for iface in root.findall("interface"):
        if iface.get("name") != IFACE:
            continue
        shape = {}
        for m in iface.findall("method"):
            shape["method " + m.get("name")] = [(a.get("type"), a.get("name"), a.get("direction", "in"))
                                                for a in m.findall("arg")]
        for p in iface.findall("property"):
            shape["property " + p.get("name")] = (p.get("type"), p.get("access"))
        for s in iface.findall("signal"):
            shape["signal " + s.get("name")] = [(a.get("type"), a.get("name")) for a in s.findall("arg")]
        return shape
    raise AssertionError(f"no interface {IFACE}")


class DBusTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        require("dbus-daemon", "busctl")
        self.d = self.daemon(bus=True, apps={"fromfile": "[App]\nAppAddress=http://127.0.0.1:1\n"})

    def test_introspection_matches_documented_xml(self):
        p = self.d.busctl("call", "org.mooring.Runtime1", "/org/mooring/Runtime1",
                          "org.freedesktop.DBus.Introspectable", "Introspect", "--json=short")
        live = json.loads(p.stdout)["data"][0]
        with open(DBUS_XML) as f:
            documented = f.read()
        self.assertEqual(interface_shape(live), interface_shape(documented))

    def test_properties(self):
        d = self.d
        self.assertEqual(d.prop("Version"), open_version())
        self.assertEqual(d.prop("State"), "running")
        apps = d.prop("Apps")
        self.assertEqual([a[0] for a in apps], ["fromfile"])
        self.assertEqual(apps[0][1], "http://127.0.0.1:1")
        self.assertEqual(apps[0][2], d.app_socket("fromfile"))
        # no component files: the built-in default state store and pub/sub are there
        comps = {c[0]: c[1] for c in d.prop("Components")}
        self.assertEqual(sorted(comps), ["configstore", "lockstore", "pubsub", "statestore"])
        self.assertTrue(comps["statestore"].startswith("state."))
        self.assertTrue(comps["pubsub"].startswith("pubsub."))

    def test_register_get_unregister(self):
        d = self.d
        port = free_port()
        d.call("RegisterApp", "sa{sv}", "web", 4, "AppAddress", "s", "unix:/tmp/web.sock", "HttpPort", "q", port,
               "ApiToken", "s", "tok", "Exec", "s", "/bin/true --flag")
        sock = d.app_socket("web")
        self.assertEqual(d.get("/v1.0/metadata", target=sock).json()["id"], "web")
        self.assertEqual(d.get("/v1.0/metadata", target=("127.0.0.1", port),
                               headers={"dapr-api-token": "tok"}).json()["id"], "web")
        self.assertEqual([a[0] for a in d.prop("Apps")], ["fromfile", "web"])

        info = json.loads(d.call("GetApp", "s", "web").stdout)["data"][0]
        self.assertEqual(info["AppId"]["data"], "web")
        self.assertEqual(info["HttpSocket"]["data"], sock)
        self.assertEqual(info["HttpPort"]["data"], port)
        self.assertEqual(info["Exec"]["data"], "/bin/true --flag")
        self.assertEqual(info["ApiToken"]["data"], "tok")  # we are root

        p = d.call("RegisterApp", "sa{sv}", "web", 0, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("an app with id 'web' is already registered", p.stderr)

        d.call("UnregisterApp", "s", "web")
        self.assertFalse(os.path.exists(sock))
        self.assertEqual([a[0] for a in d.prop("Apps")], ["fromfile"])
        p = d.call("GetApp", "s", "web", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("No app 'web' is registered", p.stderr)
        p = d.call("UnregisterApp", "s", "fromfile", check=False)
        self.assertIn("remove the file and reload", p.stderr)

    def test_invalid_arguments(self):
        d = self.d
        cases = [
            (["bad id", 0], "Invalid app id"),
            (["x", 1, "HttpPort", "q", 0], "Setting 'HttpPort'"),
            (["x", 1, "AppAddress", "s", "ftp://nope"], "Setting 'AppAddress'"),
            (["x", 1, "Colour", "s", "blue"], "Setting 'Colour': unknown key"),
            (["x", 1, "Exec", "b", "true"], "expected a string or number"),
        ]
        for args, message in cases:
            p = d.call("RegisterApp", "sa{sv}", *args, check=False)
            self.assertNotEqual(p.returncode, 0, args)
            self.assertIn(message, p.stderr, args)
        self.assertEqual([a[0] for a in d.prop("Apps")], ["fromfile"])

    def test_reload_over_dbus(self):
        d = self.d
        d.write_app("later", "[App]\n")
        d.call("Reload")
        self.assertEqual([a[0] for a in d.prop("Apps")], ["fromfile", "later"])
        self.assertTrue(os.path.exists(d.app_socket("later")))

    def test_unprivileged_callers_go_through_polkit(self):
        d = self.d
        try:
            pwd.getpwnam("nobody")
        except KeyError:
            self.skipTest("no user nobody")
        # No polkit on this bus: privileged calls are refused, with a clear error.
        for method, sig, args in (("Reload", "", []), ("RegisterApp", "sa{sv}", ["evil", 0]),
                                  ("UnregisterApp", "s", ["fromfile"])):
            p = d.call(method, sig, *args, user=65534, check=False)
            self.assertNotEqual(p.returncode, 0, method)
            self.assertIn("Not authorized", p.stderr, method)
        self.assertEqual([a[0] for a in d.prop("Apps")], ["fromfile"])
        # Reads are open to everyone, but tokens are not.
        d.call("RegisterApp", "sa{sv}", "tok", 1, "ApiToken", "s", "hidden")
        p = d.call("GetApp", "s", "tok", user=65534)
        info = json.loads(p.stdout)["data"][0]
        self.assertEqual(info["AppId"]["data"], "tok")
        self.assertNotIn("ApiToken", info)
        self.assertNotIn("hidden", p.stdout)
        p = d.busctl("get-property", "org.mooring.Runtime1", "/org/mooring/Runtime1", IFACE, "State", user=65534)
        self.assertIn("running", p.stdout)

    def test_state_methods(self):
        """The state API over D-Bus reaches the same store and keys as HTTP."""
        d = self.d
        from harness import request
        # save over D-Bus as app 'fromfile' (we are root: may act as any app)
        d.call("SaveState", "sssaysa{ss}", "fromfile", "statestore", "k1", 3, 0, 255, 10, "", 0)
        r = json.loads(d.call("GetState", "sss", "fromfile", "statestore", "k1").stdout)["data"]
        self.assertEqual(r[0], True)
        self.assertEqual(r[1], [0, 255, 10])  # binary stays binary
        etag = r[2]
        self.assertTrue(etag)
        # HTTP on the app's socket sees the same item (same scoping: fromfile||k1)
        got = request(d.app_socket("fromfile"), "GET", "/v1.0/state/statestore/k1")
        self.assertEqual((got.status, got.body, got.headers["etag"]), (200, b"\x00\xff\n", etag))
        # a stale etag (whatever the default store's etag format): write once more, reuse the old one
        d.call("SaveState", "sssaysa{ss}", "fromfile", "statestore", "k1", 3, 0, 255, 10, "", 0)
        p = d.call("SaveState", "sssaysa{ss}", "fromfile", "statestore", "k1", 1, 65, etag, 0, check=False)
        self.assertIn("etag", p.stderr)
        self.assertNotEqual(p.returncode, 0)
        etag = json.loads(d.call("GetState", "sss", "fromfile", "statestore", "k1").stdout)["data"][2]
        # bulk and transaction
        d.call("ExecuteStateTransaction", "ssa(ssays)", "fromfile", "statestore", 2,
               "upsert", "k2", 2, 104, 105, "", "delete", "k1", 0, etag)
        items = json.loads(d.call("GetBulkState", "ssas", "fromfile", "statestore", 2, "k1", "k2").stdout)["data"][0]
        self.assertEqual([(i[0], i[1], i[2]) for i in items], [("k1", False, []), ("k2", True, [104, 105])])
        d.call("DeleteState", "ssssa{ss}", "fromfile", "statestore", "k2", "", 0)
        r = json.loads(d.call("GetState", "sss", "fromfile", "statestore", "k2").stdout)["data"]
        self.assertEqual(r[0], False)
        # errors
        p = d.call("GetState", "sss", "ghost", "statestore", "k", check=False)
        self.assertIn("No app 'ghost'", p.stderr)
        p = d.call("GetState", "sss", "fromfile", "nostore", "k", check=False)
        self.assertIn("State store 'nostore' is not found", p.stderr)
        p = d.call("GetState", "sss", "", "statestore", "k", check=False)
        self.assertIn("not an app", p.stderr)
        p = d.call("GetState", "sss", "fromfile", "statestore", "a||b", check=False)
        self.assertIn("must not contain", p.stderr)
        # an unprivileged caller may not act as an app (no polkit here: denied)
        p = d.call("GetState", "sss", "fromfile", "statestore", "k1", user=65534, check=False)
        self.assertIn("Not authorized", p.stderr)

    def test_properties_changed_signals(self):
        """Apps changes (register) and State changes (reload) are signalled (line-buffered monitor)."""
        import subprocess
        import time
        d = self.d
        mon = subprocess.Popen(["stdbuf", "-oL", "dbus-monitor", "--address", d.dbus.address,
                                "type='signal',interface='org.freedesktop.DBus.Properties',"
                                "member='PropertiesChanged',path='/org/mooring/Runtime1'"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.addCleanup(lambda: (mon.kill(), mon.wait(), mon.stdout.close()))
        time.sleep(0.3)  # the monitor must be subscribed before we act
        d.call("RegisterApp", "sa{sv}", "sig", 0)
        d.call("Reload")
        out = []
        import threading
        reader = threading.Thread(target=lambda: out.extend(iter(mon.stdout.readline, "")), daemon=True)
        reader.start()

        def seen():
            text = "".join(out)
            return '"Apps"' in text and '"State"' in text and "reloading" in text
        wait_for(seen, timeout=10, what="PropertiesChanged for Apps and State")

    def test_name_released_on_stop(self):
        d = self.d
        self.assertEqual(d.stop(), 0)
        p = d.busctl("status", "org.mooring.Runtime1", check=False)
        self.assertNotEqual(p.returncode, 0)


def open_version():
    import subprocess
    from harness import MOORINGD
    return subprocess.run([MOORINGD, "--version"], capture_output=True, text=True).stdout.split()[1]



class DBusLargeReplyTest(DaemonTestCase):
    def test_state_reply_over_the_bus_limit_is_refused_and_the_daemon_stays(self):
        """dbus-daemon disconnects a peer that sends more than max_message_size (32 MiB): an answer
        that large is refused with ResponseTooLarge instead, and mooringd stays on the bus."""
        d = self.daemon(bus=True, apps={"big": "[App]\n"}, conf="[Daemon]\nMaxRequestBodySize=64M\n")
        v = "x" * (17 << 20)
        for key in ("a", "b"):
            body = json.dumps([{"key": key, "value": v}]).encode()
            r = request(d.app_socket("big"), "POST", "/v1.0/state/statestore", body=body,
                        headers={"Content-Type": "application/json"})
            self.assertEqual(r.status, 204, r)
        # one value fits in a reply
        p = d.busctl("call", "org.mooring.Runtime1", "/org/mooring/Runtime1", "org.mooring.Runtime1",
                     "GetState", "sss", "big", "statestore", "a")
        self.assertTrue(p.stdout.startswith("bays true"), p.stdout[:40])
        # two do not: refused, and the daemon is still there
        p = d.call("GetBulkState", "ssas", "big", "statestore", 2, "a", "b", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("does not fit in one D-Bus message", p.stderr)
        self.assertEqual(d.prop("State"), "running")


if __name__ == "__main__":
    main()
