#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Pub/sub over D-Bus (Publish, Subscribe and its Subscription objects,
ListSubscriptions), `mooringctl publish` and `mooringctl subscriptions` (over D-Bus
and over the shared socket), the admin route /mooring/v1/subscriptions and the
"subscriptions" of GET /v1.0/metadata, with the real daemon on a private bus.

A subscriber must call methods and receive the unicast Message signals on one
connection, which busctl cannot do: each subscriber here is this same file run
as a small D-Bus client (`--subscriber ADDRESS`) under a python3 that has
dbus-python and PyGObject (Debian's python3-dbus, python3-gi), driven with JSON
lines on its stdin and reporting replies and signals on its stdout.

Covered: Message signals with the CloudEvent, Ack SUCCESS (gone for good), RETRY
(offered again) and DROP, unknown delivery ids and statuses, a subscriber that
leaves (its unacked message goes to the next subscriber of the group), only the
subscriber may Ack or Close, the group rules for callers that are no app
("_dbus-<group>", never an app's group: the app keeps getting every message),
NoSuchPubsub (unknown or scoped pubsub), InvalidArgument, Closed when the
component goes away and when the daemon stops, the embedded default pubsub, the
Subscription interface against the documented XML, and mooringctl.
"""

import base64
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import xml.etree.ElementTree as ET

from harness import (DBUS_XML, MOORINGCTL, TIMEOUT, DaemonTestCase, main, request, require, skip_or_fail,
                     wait_for)
from testapp import TestApp

IFACE = "org.mooring.Runtime1"
SUB_IFACE = "org.mooring.Runtime1.Subscription"
ERR = "org.mooring.Runtime1.Error."


def subscriber_main(address):
    """The D-Bus client: one connection, commands on stdin, JSON lines on stdout."""
    import dbus
    import dbus.mainloop.glib
    from gi.repository import GLib

    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    bus = dbus.bus.BusConnection(address)
    loop = GLib.MainLoop()

    def emit(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    def on_message(delivery, topic, event, path=None):
        emit({"event": "message", "path": str(path), "id": int(delivery), "topic": str(topic),
              "data": base64.b64encode(bytes(event)).decode()})

    def on_closed(reason, path=None):
        emit({"event": "closed", "path": str(path), "reason": str(reason)})

    bus.add_signal_receiver(on_message, signal_name="Message", dbus_interface=SUB_IFACE, path_keyword="path",
                            byte_arrays=True)
    bus.add_signal_receiver(on_closed, signal_name="Closed", dbus_interface=SUB_IFACE, path_keyword="path")

    def handle(c):
        obj = bus.get_object(IFACE, c.get("path", "/org/mooring/Runtime1"), introspect=False)
        cmd = c["cmd"]
        if cmd == "subscribe":
            return str(obj.Subscribe(c["pubsub"], c["topic"], c["group"], dbus.UInt32(c.get("max", 0)),
                                     dbus_interface=IFACE))
        if cmd == "publish":
            obj.Publish(c["pubsub"], c["topic"], c.get("content_type", ""),
                        dbus.ByteArray(base64.b64decode(c["data"])),
                        dbus.Dictionary(c.get("metadata", {}), signature="ss"), dbus_interface=IFACE)
            return None
        if cmd == "list":
            return [[str(x) for x in s] for s in obj.ListSubscriptions(dbus_interface=IFACE)]
        if cmd == "ack":
            obj.Ack(dbus.UInt64(c["id"]), c["status"], dbus_interface=SUB_IFACE)
            return None
        if cmd == "close":
            obj.Close(dbus_interface=SUB_IFACE)
            return None
        if cmd == "props":
            props = obj.GetAll(SUB_IFACE, dbus_interface="org.freedesktop.DBus.Properties")
            return {str(k): str(v) for k, v in props.items()}
        if cmd == "introspect":
            return str(obj.Introspect(dbus_interface="org.freedesktop.DBus.Introspectable"))
        raise ValueError(cmd)

    pending = b""

    def on_stdin(fd, condition):
        nonlocal pending
        data = os.read(fd, 65536)
        if not data:
            loop.quit()
            return False
        pending += data
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            c = json.loads(line)
            if c["cmd"] == "quit":
                loop.quit()
                return False
            try:
                emit({"reply": handle(c)})
            except dbus.exceptions.DBusException as e:
                emit({"error": e.get_dbus_name(), "message": e.get_dbus_message()})
        return True

    GLib.io_add_watch(sys.stdin.fileno(), GLib.IO_IN | GLib.IO_HUP, on_stdin)
    emit({"reply": bus.get_unique_name()})
    loop.run()


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--subscriber":
    subscriber_main(sys.argv[2])
    sys.exit(0)

MEMORY_PUBSUB = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {name}
spec:
  type: pubsub.in-memory
  version: v1
"""

SCOPED_PUBSUB = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: private
spec:
  type: pubsub.in-memory
  version: v1
scopes:
- orders
"""

ORDERS_SUBSCRIPTION = """apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: shared-sub
spec:
  pubsubname: pubsub
  topic: shared
  routes:
    rules:
    - match: event.type == "special"
      path: /special
    default: /shared
  metadata:
    concurrency: "1"
scopes:
- orders
"""


def find_client_python():
    """A python3 with dbus-python and PyGObject: ours, or the system's."""
    for py in (sys.executable, "/usr/bin/python3"):
        if py and os.path.exists(py) and subprocess.run(
                [py, "-c", "import dbus, dbus.mainloop.glib; from gi.repository import GLib"],
                capture_output=True).returncode == 0:
            return py
    return None


CLIENT_PYTHON = None


class DBusError(Exception):
    def __init__(self, name, message):
        super().__init__(f"{name}: {message}")
        self.name, self.message = name, message


class Subscriber:
    """One D-Bus connection (a child process running subscriber_main())."""

    def __init__(self, address):
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
        self.proc = subprocess.Popen([CLIENT_PYTHON, os.path.abspath(__file__), "--subscriber", address],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.events = queue.Queue()
        self.replies = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.name = self._reply()

    def _read(self):
        for line in self.proc.stdout:
            o = json.loads(line)
            (self.events if "event" in o else self.replies).put(o)

    def _reply(self):
        try:
            o = self.replies.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError("the D-Bus client did not answer") from None
        if "error" in o:
            raise DBusError(o["error"], o["message"])
        return o["reply"]

    def cmd(self, **c):
        self.proc.stdin.write(json.dumps(c) + "\n")
        self.proc.stdin.flush()
        return self._reply()

    def error(self, **c):
        """Runs a command that must fail; returns (error name, message)."""
        try:
            self.cmd(**c)
        except DBusError as e:
            return e.name, e.message
        raise AssertionError(f"{c} did not fail")

    def subscribe(self, topic, group, pubsub="pubsub", max_in_flight=0):
        return self.cmd(cmd="subscribe", pubsub=pubsub, topic=topic, group=group, max=max_in_flight)

    def publish(self, topic, data, pubsub="pubsub", content_type="", metadata=None):
        return self.cmd(cmd="publish", pubsub=pubsub, topic=topic, content_type=content_type,
                        data=base64.b64encode(data).decode(), metadata=metadata or {})

    def ack(self, path, delivery, status="SUCCESS"):
        return self.cmd(cmd="ack", path=path, id=delivery, status=status)

    def event(self, kind="message"):
        """The next signal (a dict), which must be of kind; messages get "cloudevent" parsed."""
        try:
            e = self.events.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"no {kind} signal within {TIMEOUT}s") from None
        if e["event"] != kind:
            raise AssertionError(f"expected a {kind} signal, got {e}")
        if kind == "message":
            e["cloudevent"] = json.loads(base64.b64decode(e["data"]))
        return e

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write('{"cmd": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(TIMEOUT)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()


def interface_shape(xml_text, name):
    root = ET.fromstring(xml_text)
    for iface in root.findall("interface"):
        if iface.get("name") != name:
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
    raise AssertionError(f"no interface {name}")


class PubsubBusTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        require("dbus-daemon", "busctl")

    def start(self, components=None, **kw):
        if components is None:
            components = {"pubsub.yaml": MEMORY_PUBSUB.format(name="pubsub")}
        self.d = self.daemon(bus=True, components=components, **kw)
        return self.d

    def client(self):
        s = Subscriber(self.d.dbus.address)
        self.addCleanup(s.stop)
        return s

    def ctl(self, *args, socket=False, input=None):
        cmd = [MOORINGCTL] + (["--socket", self.d.api] if socket else [f"--bus-address={self.d.dbus.address}"])
        env = dict(os.environ)
        env.pop("MOORING_SOCKET", None)
        env["MOORING_PAGER"] = "cat"
        return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=TIMEOUT, env=env,
                              input=input)

    # ---- delivery and acks ----

    def test_publish_receive_ack(self):
        self.start()
        sub, pub = self.client(), self.client()
        path = sub.subscribe("orders", "workers")
        self.assertTrue(path.startswith("/org/mooring/Runtime1/subscription/"), path)
        self.assertEqual(sub.cmd(cmd="props", path=path),
                         {"Pubsub": "pubsub", "Topic": "orders", "Group": "_dbus-workers"})

        self.assertIsNone(pub.publish("orders", b'{"n":1}', content_type="application/json",
                                      metadata={"cloudevent.type": "order.created"}))
        m = sub.event()
        self.assertEqual((m["path"], m["topic"]), (path, "orders"))
        ce = m["cloudevent"]
        self.assertEqual(ce["data"], {"n": 1})
        self.assertEqual((ce["topic"], ce["pubsubname"], ce["type"], ce["datacontenttype"]),
                         ("orders", "pubsub", "order.created", "application/json"))

        # a bad status or an unknown id changes nothing
        self.assertEqual(sub.error(cmd="ack", path=path, id=m["id"], status="MAYBE")[0], ERR + "InvalidArgument")
        self.assertEqual(sub.error(cmd="ack", path=path, id=m["id"] + 1000, status="SUCCESS")[0],
                         ERR + "InvalidArgument")
        self.assertIsNone(sub.ack(path, m["id"], "SUCCESS"))
        # answered: the id is no longer known
        name, message = sub.error(cmd="ack", path=path, id=m["id"], status="SUCCESS")
        self.assertEqual(name, ERR + "InvalidArgument")
        self.assertIn(str(m["id"]), message)

        # acked for good: a new subscriber of the group gets the next message, not that one again
        self.assertIsNone(sub.cmd(cmd="close", path=path))
        self.assertEqual(sub.error(cmd="props", path=path)[0], "org.freedesktop.DBus.Error.UnknownObject")
        pub.publish("orders", b"marker")
        path2 = sub.subscribe("orders", "workers")
        self.assertNotEqual(path2, path)
        m2 = sub.event()
        self.assertEqual(m2["cloudevent"]["data"], "marker")
        sub.ack(path2, m2["id"])

    def test_retry_and_drop(self):
        self.start()
        sub = self.client()
        path = sub.subscribe("jobs", "workers", max_in_flight=1)
        sub.publish("jobs", b"first")
        sub.publish("jobs", b"second")
        m1 = sub.event()
        self.assertEqual(m1["cloudevent"]["data"], "first")
        # max_in_flight 1: "second" waits until "first" is answered. RETRY offers "first" again
        # after a backoff, as a new delivery of the same event (retries may reorder: "second",
        # due at once, may come first); DROP gives up on "second".
        sub.ack(path, m1["id"], "RETRY")
        self.assertEqual(sub.error(cmd="ack", path=path, id=m1["id"], status="SUCCESS")[0],
                         ERR + "InvalidArgument")
        seen = {}
        while len(seen) < 2:
            m = sub.event()
            data = m["cloudevent"]["data"]
            self.assertNotIn(data, seen)
            seen[data] = m
            sub.ack(path, m["id"], "drop" if data == "second" else "SUCCESS")
        again = seen["first"]
        self.assertEqual(again["cloudevent"]["id"], m1["cloudevent"]["id"])
        self.assertGreater(again["id"], m1["id"])
        # nothing is left: the next message is a new one
        sub.publish("jobs", b"third")
        self.assertEqual(sub.event()["cloudevent"]["data"], "third")

    def test_subscriber_leaving_hands_its_messages_to_the_group(self):
        self.start()
        a, b = self.client(), self.client()
        path_a = a.subscribe("orders", "workers")
        a.publish("orders", b"one")
        m = a.event()
        path_b = b.subscribe("orders", "workers")
        subs = b.cmd(cmd="list")
        self.assertEqual(sorted(subs), [["", "pubsub", "orders", "", "dbus"]] * 2)

        # a leaves the bus without acking: b, in the same group, gets the message
        a.kill()
        mb = b.event()
        self.assertEqual(mb["path"], path_b)
        self.assertEqual(mb["cloudevent"]["id"], m["cloudevent"]["id"])
        b.ack(path_b, mb["id"])
        wait_for(lambda: len(b.cmd(cmd="list")) == 1, what="a's subscription to end")
        self.assertEqual(b.error(cmd="props", path=path_a)[0], "org.freedesktop.DBus.Error.UnknownObject")

    def test_only_the_subscriber_acts(self):
        self.start()
        owner, other = self.client(), self.client()
        path = owner.subscribe("orders", "workers")
        other.publish("orders", b"x")
        m = owner.event()
        for c in ({"cmd": "ack", "id": m["id"], "status": "SUCCESS"}, {"cmd": "close"}):
            name, message = other.error(path=path, **c)
            self.assertEqual(name, ERR + "PermissionDenied", c)
            self.assertIn(owner.name, message)
        # properties are public
        self.assertEqual(other.cmd(cmd="props", path=path)["Topic"], "orders")
        owner.ack(path, m["id"])
        owner.cmd(cmd="close", path=path)

    def test_groups(self):
        """Every group gets every message; a caller that is no app names a group, which is kept
        apart from the apps' groups: subscribing as "orders" never takes messages from app orders."""
        sock = os.path.join(self.tmpdir(), "orders.sock")
        app = TestApp(unix_path=sock).start()
        self.addCleanup(app.stop)
        d = self.d = self.daemon(bus=True, start=False, apps={"orders": f"[App]\nAppAddress=unix:{sock}\n"},
                                 components={"pubsub.yaml": MEMORY_PUBSUB.format(name="pubsub")})
        os.makedirs(os.path.join(d.config, "subscriptions"))
        with open(os.path.join(d.config, "subscriptions", "orders.yaml"), "w") as f:
            f.write(ORDERS_SUBSCRIPTION)
        d.start()

        c1, c2 = self.client(), self.client()
        # no group, or an invalid one, for a caller that is no app
        self.assertEqual(c1.error(cmd="subscribe", pubsub="pubsub", topic="shared", group="", max=0)[0],
                         ERR + "InvalidArgument")
        self.assertEqual(c1.error(cmd="subscribe", pubsub="pubsub", topic="shared", group="a b", max=0)[0],
                         ERR + "InvalidArgument")
        p1 = c1.subscribe("shared", "orders")
        p2 = c2.subscribe("shared", "audit")
        self.assertEqual(c1.cmd(cmd="props", path=p1)["Group"], "_dbus-orders")
        self.assertEqual(c2.cmd(cmd="props", path=p2)["Group"], "_dbus-audit")

        for i in range(3):
            c1.publish("shared", f"m{i}".encode())
        for c, p in ((c1, p1), (c2, p2)):
            got = []
            for _ in range(3):
                m = c.event()
                got.append(m["cloudevent"]["data"])
                c.ack(p, m["id"])
            self.assertEqual(sorted(got), ["m0", "m1", "m2"])
        # the app got all three too (it answers 404: each is dropped after one POST)
        wait_for(lambda: app.paths().count("/shared") == 3, what="3 deliveries to app orders")

        # what runs: the app's declarative subscription and the two D-Bus ones
        expected = sorted([["orders", "pubsub", "shared", "/shared", "declarative"],
                           ["", "pubsub", "shared", "", "dbus"], ["", "pubsub", "shared", "", "dbus"]])
        self.assertEqual(sorted(c1.cmd(cmd="list")), expected)
        for socket in (False, True):
            p = self.ctl("subscriptions", "--json", socket=socket)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(sorted([s["app"], s["pubsub"], s["topic"], s["route"], s["kind"]]
                                    for s in json.loads(p.stdout)), expected)
            p = self.ctl("subscriptions", socket=socket)
            self.assertEqual(p.returncode, 0, p.stderr)
            lines = [line.split() for line in p.stdout.splitlines()]
            self.assertEqual(lines[0], ["APP", "PUBSUB", "TOPIC", "ROUTE", "KIND"])
            self.assertEqual(sorted(lines[1:]), sorted([["orders", "pubsub", "shared", "/shared", "declarative"],
                                                        ["-", "pubsub", "shared", "-", "dbus"],
                                                        ["-", "pubsub", "shared", "-", "dbus"]]))

        # the app's own view: Dapr's metadata API
        r = request(d.app_socket("orders"), "GET", "/v1.0/metadata")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["subscriptions"], [{
            "pubsubname": "pubsub", "topic": "shared", "type": "DECLARATIVE",
            "metadata": {"concurrency": "1"},
            "rules": {"rules": [{"match": 'event.type == "special"', "path": "/special"}, {"path": "/shared"}]},
        }])
        # a caller that is no app has no subscriptions of its own
        self.assertNotIn("subscriptions", d.get("/v1.0/metadata").json())

    # ---- errors ----

    def test_errors(self):
        self.start(components={"pubsub.yaml": MEMORY_PUBSUB.format(name="pubsub"),
                               "private.yaml": SCOPED_PUBSUB})
        c = self.client()
        for pubsub in ("nope", "private", ""):  # private: scoped to app orders, and we are no app
            name, message = c.error(cmd="subscribe", pubsub=pubsub, topic="t", group="g", max=0)
            self.assertEqual(name, ERR + "NoSuchPubsub", pubsub)
            name, message = c.error(cmd="publish", pubsub=pubsub, topic="t", data="", metadata={})
            self.assertEqual(name, ERR + "NoSuchPubsub", pubsub)
        self.assertIn("pubsub nope not found", c.error(cmd="publish", pubsub="nope", topic="t", data="")[1])
        for bad in ({"topic": ""}, {"max": 5000}):
            args = dict(cmd="subscribe", pubsub="pubsub", topic="t", group="g", max=0)
            args.update(bad)
            self.assertEqual(c.error(**args)[0], ERR + "InvalidArgument", bad)
        for topic, metadata in (("", {}), ("t", {"rawPayload": "maybe"}), ("t", {"ttlInSeconds": "-1"})):
            name, message = c.error(cmd="publish", pubsub="pubsub", topic=topic, data="", metadata=metadata)
            self.assertEqual(name, ERR + "InvalidArgument", (topic, metadata))
        # a CloudEvent that is no JSON
        self.assertEqual(c.error(cmd="publish", pubsub="pubsub", topic="t", content_type="application/cloudevents+json",
                                 data=base64.b64encode(b"{nope").decode())[0], ERR + "InvalidArgument")
        # nothing of that was left running
        self.assertEqual(c.cmd(cmd="list"), [])

    # ---- the end of a subscription ----

    def test_closed_when_the_component_goes(self):
        d = self.start(components={"pubsub.yaml": MEMORY_PUBSUB.format(name="pubsub"),
                                   "extra.yaml": MEMORY_PUBSUB.format(name="extra")})
        c = self.client()
        path = c.subscribe("t", "g", pubsub="extra")
        kept = c.subscribe("t", "g")
        os.unlink(os.path.join(d.config, "components", "extra.yaml"))
        d.signal(signal.SIGHUP)
        e = c.event("closed")
        self.assertEqual(e["path"], path)
        self.assertIn("removed or changed", e["reason"])
        self.assertEqual(c.error(cmd="close", path=path)[0], "org.freedesktop.DBus.Error.UnknownObject")
        # the other one runs on
        c.publish("t", b"still here")
        m = c.event()
        self.assertEqual((m["path"], m["cloudevent"]["data"]), (kept, "still here"))
        c.ack(kept, m["id"])

    def test_closed_when_the_daemon_stops(self):
        d = self.start()
        c = self.client()
        path = c.subscribe("t", "g")
        c.publish("t", b"unacked")
        c.event()
        self.assertEqual(d.stop(), 0)
        e = c.event("closed")
        self.assertEqual(e["path"], path)
        self.assertIn("stopping", e["reason"])

    # ---- the embedded default pubsub ----

    def test_default_pubsub(self):
        self.start(components={})
        c = self.client()
        path = c.subscribe("orders", "g")
        c.publish("orders", b"\x00\x01binary", content_type="application/octet-stream")
        m = c.event()
        self.assertEqual(base64.b64decode(m["cloudevent"]["data_base64"]), b"\x00\x01binary")
        c.ack(path, m["id"])

    # ---- documentation ----

    def test_subscription_interface_matches_documented_xml(self):
        self.start()
        c = self.client()
        path = c.subscribe("t", "g")
        with open(DBUS_XML) as f:
            documented = f.read()
        live = c.cmd(cmd="introspect", path=path)
        self.assertEqual(interface_shape(live, SUB_IFACE), interface_shape(documented, SUB_IFACE))
        # the root object lists the subscription as a child node
        root = ET.fromstring(c.cmd(cmd="introspect", path="/org/mooring/Runtime1/subscription"))
        self.assertIn(path.rsplit("/", 1)[1], [n.get("name") for n in root.findall("node")])

    # ---- mooringctl ----

    def test_mooringctl_publish(self):
        d = self.start()
        c = self.client()
        path = c.subscribe("orders", "g")
        data = os.path.join(d.tmp, "order.json")
        with open(data, "w") as f:
            f.write('{"qty": 3}')
        for socket in (False, True):
            t = "socket" if socket else "bus"
            p = self.ctl("publish", "pubsub", "orders", f"@{data}", "--content-type", "application/json",
                         "--metadata", "cloudevent.type=order.created", "--metadata", "partitionKey=a b&c",
                         socket=socket)
            self.assertEqual((p.returncode, p.stdout, p.stderr), (0, "", ""), t)
            m = c.event()
            self.assertEqual((m["cloudevent"]["data"], m["cloudevent"]["type"]), ({"qty": 3}, "order.created"), t)
            c.ack(path, m["id"])
            # DATA from standard input, and a literal that starts with '-' after "--"
            p = self.ctl("publish", "pubsub", "orders", "-", socket=socket, input="from stdin")
            self.assertEqual(p.returncode, 0, p.stderr)
            p = self.ctl("publish", "pubsub", "orders", "--", "-5", socket=socket)
            self.assertEqual(p.returncode, 0, p.stderr)
            for want in ("from stdin", "-5"):
                m = c.event()
                self.assertEqual((m["cloudevent"]["data"], m["cloudevent"]["datacontenttype"]), (want, "text/plain"))
                c.ack(path, m["id"])
            # errors: mooringd's message, exit status 1
            p = self.ctl("publish", "nope", "orders", "x", socket=socket)
            self.assertEqual(p.returncode, 1, t)
            self.assertIn("pubsub nope not found", p.stderr, t)
            p = self.ctl("publish", "pubsub", "orders", "x", "--metadata", "rawPayload=maybe", socket=socket)
            self.assertEqual(p.returncode, 1, t)
            self.assertIn("rawPayload", p.stderr, t)

        # usage errors
        for args in (("publish", "pubsub", "orders"), ("publish", "pubsub", "", "x"),
                     ("publish", "pubsub", "t", "x", "--metadata", "novalue"),
                     ("publish", "pubsub", "t", "x", "--metadata", "=v"),
                     ("publish", "pubsub", "t", "x", "--verb", "PUT"),
                     ("apps", "--content-type", "text/plain"), ("subscriptions", "extra")):
            p = self.ctl(*args)
            self.assertEqual(p.returncode, 2, args)
            self.assertIn("Try 'mooringctl --help'", p.stderr, args)
        p = self.ctl("--help")
        for word in ("publish PUBSUB TOPIC DATA", "subscriptions", "--content-type=TYPE", "--metadata=KEY=VALUE"):
            self.assertIn(word, p.stdout)

    def test_mooringctl_subscriptions_empty(self):
        self.start()
        for socket in (False, True):
            p = self.ctl("subscriptions", socket=socket)
            self.assertEqual((p.returncode, p.stdout), (0, "No subscriptions.\n"), p.stderr)
            p = self.ctl("subscriptions", "--json", socket=socket)
            self.assertEqual((p.returncode, json.loads(p.stdout)), (0, []), p.stderr)

    def tmpdir(self):
        t = tempfile.mkdtemp(prefix="mooring-it-app-")
        os.chmod(t, 0o755)
        self.addCleanup(shutil.rmtree, t, True)
        return t


if __name__ == "__main__":
    CLIENT_PYTHON = find_client_python()
    if not CLIENT_PYTHON:
        skip_or_fail("a python3 with dbus-python and PyGObject (python3-dbus, python3-gi) is needed")
    main()
