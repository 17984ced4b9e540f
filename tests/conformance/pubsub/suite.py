#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Pub/sub conformance: one suite, run unchanged against every pub/sub broker.

MOORING_PUBSUB_DRIVER (in-memory, sqlite, redis, mqtt) picks the broker from
DRIVERS below. Each test starts the real mooringd with a component `pubsub`
of the broker's type, a publisher app `pub` (no AppAddress: it only talks to
its own socket, as a Dapr SDK talks to its sidecar) and subscriber apps that
are real HTTP servers (subscriber.Subscriber on a Unix socket or a loopback
port) answering GET /dapr/subscribe and the deliveries. Server-backed brokers
get a private server from tests/fixtures/servers.py for the whole run; topics
carry a per-test suffix so that tests never see each other's messages.

Expected behaviour: Dapr 1.14's pub/sub (the project's Dapr HTTP API
reference, §4) as mooringd implements it (daemon/blocks/pubsub.h): publish
answers 204 only once the broker durably accepted the message; delivery is
at least once; a subscription is live once its app is healthy.

Which cases a broker may skip, and why (the @needs features):
- DURABLE (sqlite, redis, mqtt): acknowledged messages survive a SIGKILL of
  the daemon. pubsub.in-memory keeps messages in the daemon's memory: it is
  documented as losing them with the process, so the crash case is skipped.
- SHARED (redis, mqtt): the broker is a server that two daemons can share,
  so two daemons running the same app id compete for its messages.
  pubsub.in-memory and pubsub.sqlite are local to one daemon (its memory,
  its state directory): there is nothing to share, the competing-consumers
  case is skipped.
- ORDERED (all four): per topic and group, first deliveries follow publish
  order (driver.h); checked with a subscription of concurrency "1".
Every other case runs on every broker.

A driver not built into this mooringd skips the whole suite (exit 77), or
fails it when MOORING_TEST_NO_SKIP=1; so does a missing server binary.

The crash case's numbers are printed and written to
$MOORING_TEST_LOG_DIR/pubsub-<driver>-crash.txt (meson's log directory).
"""

import base64
import datetime
import functools
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (HERE, os.path.join(HERE, "..", "..", "integration"), os.path.join(HERE, "..", "..", "fixtures")):
    _p = os.path.normpath(_p)
    if _p not in sys.path:
        sys.path.insert(0, _p)

import harness  # noqa: E402
from harness import DaemonTestCase, UnixHTTPConnection, free_port, request, skip_or_fail, wait_for  # noqa: E402
from subscriber import Reply, Subscriber  # noqa: E402

DURABLE, SHARED, ORDERED = "durable", "shared", "ordered"


def _mqtt_url(server):
    url = getattr(server, "url", None)
    if url:
        return url
    return f"tcp://127.0.0.1:{server.port}"


# What each broker is: its component type, its metadata (given the component's name and the
# server fixture), its features (see the docstring), and its server.
DRIVERS = {
    "in-memory": {
        "type": "pubsub.in-memory",
        "metadata": lambda name, server: [],
        "features": {ORDERED},
        "server": None,
    },
    "sqlite": {
        "type": "pubsub.sqlite",
        # `pubsub` uses the default file (pubsub.db in the state dir); other components get their own.
        "metadata": lambda name, server: [] if name == "pubsub" else [("connectionString", f"pubsub-{name}.db")],
        "features": {DURABLE, ORDERED},
        "server": None,
    },
    "redis": {
        "type": "pubsub.redis",
        "metadata": lambda name, server: server.metadata,  # with TLS under MOORING_REDIS_TLS=1
        "features": {DURABLE, SHARED, ORDERED},
        "server": "redis",
    },
    "mqtt": {
        "type": "pubsub.mqtt3",
        "metadata": lambda name, server: [("url", _mqtt_url(server))],
        "features": {DURABLE, SHARED, ORDERED},
        "server": "mosquitto",
    },
}

DRIVER_NAME = os.environ.get("MOORING_PUBSUB_DRIVER", "in-memory")
DRIVER = DRIVERS.get(DRIVER_NAME)
SERVER = None  # the server fixture, started by main()

COMPONENT = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {name}
spec:
  type: {type}
  version: v1
{metadata}{scopes}"""

UUID4_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TRACEPARENT_RE = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
SETTLE = 2.0          # seconds to wait for "nothing more arrives"
DELIVERY_TIMEOUT = 40.0


def yaml_str(s):
    return json.dumps(s)  # a JSON string is a valid YAML double-quoted scalar


def component(name="pubsub", extra=(), scopes=None):
    items = list(DRIVER["metadata"](name, SERVER)) + list(extra)
    meta = ""
    if items:
        meta = "  metadata:\n" + "".join(f"  - name: {k}\n    value: {yaml_str(v)}\n" for k, v in items)
    sc = f"scopes: [{', '.join(scopes)}]\n" if scopes else ""
    return COMPONENT.format(name=name, type=DRIVER["type"], metadata=meta, scopes=sc)


def needs(*features):
    """Marks a case as needing broker features; skipped, visibly, otherwise."""
    def deco(fn):
        @functools.wraps(fn)
        def wrapper(self, *a, **kw):
            for f in features:
                if f not in DRIVER["features"]:
                    self.skipTest(f"{DRIVER['type']} is not {f}: {SKIP_REASONS[f]}")
            return fn(self, *a, **kw)
        return wrapper
    return deco


SKIP_REASONS = {
    DURABLE: "an in-memory broker loses its messages with the daemon by design",
    SHARED: "the broker is local to one daemon (memory or its state dir): no two daemons can share it",
    ORDERED: "the broker does not order first deliveries",
}


def v1(topic, route, pubsub="pubsub", **extra):
    """A v1 GET /dapr/subscribe entry."""
    return dict(pubsubname=pubsub, topic=topic, route=route, **extra)


def parse_time(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


class PubsubCase(DaemonTestCase):
    """Helpers: subscriber apps, a daemon around them, publishing as an app, and sync()."""

    def setUp(self):
        super().setUp()
        self.uid = uuid.uuid4().hex[:8]
        self.tmp = tempfile.mkdtemp(prefix="mooring-ps-")
        os.chmod(self.tmp, 0o755)
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.d = None

    def topic(self, name):
        """A topic unique to this test (server-backed brokers are shared by the whole run)."""
        return f"{name}-{self.uid}"

    def subscriber(self, name, subscriptions=None, decide=None, tcp=False, delay=0.0):
        if tcp:
            s = Subscriber(port=free_port(), subscriptions=subscriptions, decide=decide, delay=delay)
        else:
            s = Subscriber(unix_path=os.path.join(self.tmp, f"{name}.sock"), subscriptions=subscriptions,
                           decide=decide, delay=delay)
        s.start()
        self.addCleanup(s.stop)
        return s

    def start_daemon(self, subs=None, publishers=("pub",), components=None, declarative=None, start=True, **kw):
        """subs: {app id: Subscriber}; components: {file: yaml} (default: `pubsub` of the broker);
        declarative: {file: Subscription yaml} in <config>/subscriptions/."""
        apps = {p: "[App]\n" for p in publishers}
        for app_id, s in (subs or {}).items():
            apps[app_id] = s.conf()
        d = self.daemon(start=False, apps=apps, **kw)
        for f, text in (components if components is not None else {"pubsub.yaml": component()}).items():
            d.write_component(f, text)
        if declarative:
            self.write_subscriptions(d, declarative)
        if start:
            d.start()
        if self.d is None:
            self.d = d
        return d

    def write_subscriptions(self, d, files):
        sd = os.path.join(d.config, "subscriptions")
        os.makedirs(sd, exist_ok=True)
        for f, text in files.items():
            with open(os.path.join(sd, f), "w") as fh:
                fh.write(text)

    def reload(self, d):
        n = len(d.notify.messages)
        d.signal(signal.SIGHUP)
        d.notify.wait("READY=1", after=n)

    # -- publishing --
    def publish(self, topic, body, content_type="application/json", app="pub", pubsub="pubsub", query="",
                headers=None, method="POST", d=None):
        d = d or self.d
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        h = dict(headers or {})
        if content_type is not None:
            h["Content-Type"] = content_type
        return request(d.app_socket(app), method, f"/v1.0/publish/{pubsub}/{topic}{query}", body=body, headers=h)

    def publish_ok(self, topic, body, **kw):
        r = self.publish(topic, body, **kw)
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.body, b"")
        return r

    def bulk(self, topic, entries, app="pub", pubsub="pubsub", query=""):
        body = entries if isinstance(entries, bytes) else json.dumps(entries).encode()
        return request(self.d.app_socket(app), "POST", f"/v1.0-alpha1/publish/bulk/{pubsub}/{topic}{query}",
                       body=body, headers={"Content-Type": "application/json"})

    def assert_error(self, r, status, code):
        self.assertEqual(r.status, status, r)
        self.assertTrue(r.headers.get("content-type", "").startswith("application/json"), r.headers)
        body = r.json()
        self.assertEqual(body.get("errorCode"), code, body)
        self.assertIsInstance(body.get("message"), str, body)
        return body

    # -- subscriptions --
    def subscriptions(self, d=None):
        return (d or self.d).get("/mooring/v1/subscriptions").json()

    def wait_subscribed(self, topic, app_ids, d=None, pubsub="pubsub", timeout=30):
        def ok():
            have = {(s["app"], s["pubsub"], s["topic"]) for s in self.subscriptions(d)}
            return all((a, pubsub, topic) in have for a in app_ids)
        wait_for(ok, timeout=timeout, interval=0.05, what=f"{sorted(app_ids)} subscribed to {topic}")

    def sync(self, topic, subs, d=None, pubsub="pubsub", timeout=30, publisher="pub", any_of=False):
        """Returns once every subscriber in subs ({app id: Subscriber}) received a probe on topic:
        the subscription is live in the broker (brokers that deliver only what is published after a
        subscription exists need this before a test publishes). any_of: one of them is enough
        (competing consumers)."""
        d = d or self.d
        self.wait_subscribed(topic, list(subs), d=d, pubsub=pubsub, timeout=timeout)
        token = f"probe-{uuid.uuid4().hex}"
        end = time.monotonic() + timeout
        while True:
            r = self.publish(topic, {"__probe__": token}, pubsub=pubsub, app=publisher, d=d)
            self.assertEqual(r.status, 204, f"probe publish to {topic}: {r}")
            step_end = min(end, time.monotonic() + 1.0)
            while time.monotonic() < step_end:
                got = [s.has_probe(token) for s in subs.values()]
                if any(got) if any_of else all(got):
                    return
                time.sleep(0.02)
            if time.monotonic() >= end:
                missing = [a for a, s in subs.items() if not s.has_probe(token)]
                raise AssertionError(f"no probe on {topic} reached {missing} within {timeout}s")


# ---------------------------------------------------------------------------

class PublishApiTest(PubsubCase):
    """The publish endpoints' answers (no subscriber needed)."""

    def setUp(self):
        super().setUp()
        self.start_daemon(components={
            "pubsub.yaml": component(),
            "limited.yaml": component("limited", extra=[("allowedTopics", "allowed-topic,other")]),
        })

    def test_publish_answers_204_empty(self):
        for method in ("POST", "PUT"):
            r = self.publish(self.topic("t"), {"x": 1}, method=method)
            self.assertEqual(r.status, 204, (method, r))
            self.assertEqual(r.body, b"")

    def test_unknown_pubsub(self):
        for method in ("POST", "PUT"):
            r = self.publish(self.topic("t"), {"x": 1}, pubsub="nope", method=method)
            self.assert_error(r, 404, "ERR_PUBSUB_NOT_FOUND")

    def test_bulk_unknown_pubsub(self):
        """Dapr validates the pubsub before looking at the entries: 404 ERR_PUBSUB_NOT_FOUND."""
        r = self.bulk(self.topic("t"), [{"entryId": "1", "event": "x", "contentType": "text/plain"}], pubsub="nope")
        self.assert_error(r, 404, "ERR_PUBSUB_NOT_FOUND")

    def test_bulk_topic_not_allowed(self):
        r = self.bulk("forbidden-topic", [{"entryId": "1", "event": "x", "contentType": "text/plain"}],
                      pubsub="limited")
        self.assert_error(r, 403, "ERR_PUBSUB_FORBIDDEN")

    def test_empty_topic(self):
        r = request(self.d.app_socket("pub"), "POST", "/v1.0/publish/pubsub", body=b"{}",
                    headers={"Content-Type": "application/json"})
        self.assert_error(r, 404, "ERR_TOPIC_NAME_EMPTY")

    def test_bad_raw_payload(self):
        for v in ("maybe", "2", ""):
            r = self.publish(self.topic("t"), {"x": 1}, query=f"?metadata.rawPayload={v}")
            self.assert_error(r, 400, "ERR_PUBSUB_REQUEST_METADATA")
        for v in ("true", "false", "1", "0", "True"):
            r = self.publish(self.topic("t"), {"x": 1}, query=f"?metadata.rawPayload={v}")
            self.assertEqual(r.status, 204, (v, r))

    def test_bad_ttl(self):
        for v in ("abc", "0", "-1", "1.5"):
            r = self.publish(self.topic("t"), {"x": 1}, query=f"?metadata.ttlInSeconds={v}")
            self.assert_error(r, 400, "ERR_PUBSUB_REQUEST_METADATA")
        r = self.publish(self.topic("t"), {"x": 1}, query="?metadata.ttlInSeconds=60")
        self.assertEqual(r.status, 204, r)

    def test_topic_not_allowed(self):
        r = self.publish("forbidden-topic", {"x": 1}, pubsub="limited")
        self.assert_error(r, 403, "ERR_PUBSUB_FORBIDDEN")
        r = self.publish("allowed-topic", {"x": 1}, pubsub="limited")
        self.assertEqual(r.status, 204, r)

    def test_bad_cloudevent(self):
        for body in (b"not json", b"[1, 2]"):
            r = self.publish(self.topic("t"), body, content_type="application/cloudevents+json")
            self.assert_error(r, 500, "ERR_PUBSUB_CLOUD_EVENTS_SER")

    def test_bulk_duplicate_entry_id(self):
        r = self.bulk(self.topic("t"), [{"entryId": "1", "event": "a", "contentType": "text/plain"},
                                        {"entryId": "2", "event": "b", "contentType": "text/plain"},
                                        {"entryId": "1", "event": "c", "contentType": "text/plain"}])
        self.assert_error(r, 400, "ERR_PUBSUB_EVENTS_SER")

    def test_bulk_bad_requests(self):
        t = self.topic("t")
        r = self.bulk(t, [{"event": "a", "contentType": "text/plain"}])
        self.assert_error(r, 400, "ERR_PUBSUB_EVENTS_SER")
        r = self.bulk(t, b'{"entryId": "1"}')
        self.assert_error(r, 400, "ERR_PUBSUB_EVENTS_SER")
        r = self.bulk(t, b"[not json")
        self.assert_error(r, 400, "ERR_PUBSUB_EVENTS_SER")
        r = self.bulk(t, [])
        self.assertEqual(r.status, 204, r)


class DefaultPubsubTest(PubsubCase):
    def test_default_pubsub_without_components(self):
        """With no pub/sub component at all, `pubsub` exists: pubsub.sqlite (the embedded
        default) in a build with SQLite. Not broker-specific: run once, in the sqlite run."""
        if DRIVER_NAME != "sqlite":
            self.skipTest("tests the built-in default pubsub (pubsub.sqlite); run in the sqlite run only")
        t = self.topic("default")
        sub = self.subscriber("sub", [v1(t, "/in")])
        d = self.start_daemon({"sub": sub}, components={})
        comps = {c["name"]: c["type"] for c in d.get("/mooring/v1/components").json()}
        self.assertEqual(comps.get("pubsub"), "pubsub.sqlite", comps)
        self.sync(t, {"sub": sub})
        self.publish_ok(t, {"hello": "default"})
        got = sub.wait_count(1, "/in")
        self.assertEqual(got[0].data, {"hello": "default"})


# ---------------------------------------------------------------------------

class EnvelopeTest(PubsubCase):
    """What a subscriber receives for each kind of publish. `sub` subscribes to T (route /events)
    and, with metadata rawPayload "true", to TR (route /raw)."""

    def setUp(self):
        super().setUp()
        self.t = self.topic("env")
        self.tr = self.topic("envraw")
        self.sub = self.subscriber("sub", [v1(self.t, "/events"),
                                           v1(self.tr, "/raw", metadata={"rawPayload": "true"})],
                                   decide=self.decide)
        self.retry_ttl = False
        self.start_daemon({"sub": self.sub})
        self.sync(self.t, {"sub": self.sub})
        self.sync(self.tr, {"sub": self.sub})

    def decide(self, d):
        if self.retry_ttl and d.field("ttl"):
            return Reply(200, [("Content-Type", "application/json")], b'{"status":"RETRY"}')
        return None

    def assert_same_trace(self, tp, context):
        """tp is a W3C traceparent of the publisher's trace (TRACEPARENT's trace id)."""
        self.assertRegex(tp or "", TRACEPARENT_RE, context)
        self.assertEqual(tp.split("-")[1], TRACEPARENT.split("-")[1], context)

    def one(self, publish, path="/events", **kw):
        """Publishes (publish: kwargs for publish_ok) and returns the single delivery it makes."""
        before = len(self.sub.got(path))
        self.publish_ok(**publish)
        got = self.sub.wait_count(before + 1, path, timeout=DELIVERY_TIMEOUT)
        return got[before]

    def test_json(self):
        for ct in ("application/json", "application/json; charset=utf-8"):
            v = {"a": 1, "b": [True, None, "x"], "c": {"d": -1.5, "e": "ü😀"}}
            dl = self.one(dict(topic=self.t, body=v, content_type=ct))
            self.assertEqual(dl.event.get("datacontenttype"), ct, dl)
            self.assertEqual(dl.event.get("data"), v, dl)
            self.assertNotIn("data_base64", dl.event)
        for v in ([1, 2, 3], "a string", 42, None):
            dl = self.one(dict(topic=self.t, body=json.dumps(v)))
            self.assertEqual(dl.event.get("data"), v, dl)

    def test_json_that_does_not_parse_is_a_string(self):
        dl = self.one(dict(topic=self.t, body=b'{"not": json', content_type="application/json"))
        self.assertEqual(dl.event.get("data"), '{"not": json', dl)

    def test_text(self):
        dl = self.one(dict(topic=self.t, body=b"hello world", content_type=None))
        self.assertEqual(dl.event.get("datacontenttype"), "text/plain", dl)
        self.assertEqual(dl.event.get("data"), "hello world", dl)
        s = "grüße, 😀 \"quoted\" \\ {not json}"
        dl = self.one(dict(topic=self.t, body=s.encode(), content_type="text/plain; charset=utf-8"))
        self.assertEqual(dl.event.get("datacontenttype"), "text/plain; charset=utf-8", dl)
        self.assertEqual(dl.event.get("data"), s, dl)
        dl = self.one(dict(topic=self.t, body=b"<a>xml</a>", content_type="application/xml"))
        self.assertEqual(dl.event.get("datacontenttype"), "application/xml", dl)
        self.assertEqual(dl.event.get("data"), "<a>xml</a>", dl)

    def test_binary(self):
        blob = bytes(range(256)) + b"\x00\x00end\x00"
        dl = self.one(dict(topic=self.t, body=blob, content_type="application/octet-stream"))
        self.assertEqual(dl.event.get("datacontenttype"), "application/octet-stream", dl)
        self.assertNotIn("data", dl.event)
        self.assertEqual(base64.b64decode(dl.event["data_base64"]), blob)
        dl = self.one(dict(topic=self.t, body=b"", content_type="application/octet-stream"))
        self.assertEqual(base64.b64decode(dl.event.get("data_base64", "x")), b"", dl)

    def test_envelope_fields(self):
        t0 = datetime.datetime.now(datetime.timezone.utc)
        dl = self.one(dict(topic=self.t, body={"n": 1}, headers={"traceparent": TRACEPARENT}))
        ev = dl.event
        self.assertRegex(ev.get("id", ""), UUID4_RE)
        self.assertEqual(ev.get("source"), "pub")
        self.assertEqual(ev.get("type"), "com.dapr.event.sent")
        self.assertEqual(ev.get("specversion"), "1.0")
        self.assertEqual(ev.get("topic"), self.t)
        self.assertEqual(ev.get("pubsubname"), "pubsub")
        self.assertEqual(ev.get("datacontenttype"), "application/json")
        t = parse_time(ev.get("time", ""))
        self.assertIsNotNone(t.tzinfo, ev)
        self.assertLess(abs((t - t0).total_seconds()), 30, ev)
        # the publisher's trace (the publish span: same trace id) travels in the event and in the
        # delivery's traceparent header
        self.assert_same_trace(ev.get("traceparent"), ev)
        self.assert_same_trace(dl.header("traceparent"), dl.headers)
        # how it was delivered
        self.assertEqual(dl.method, "POST")
        self.assertEqual(dl.path, "/events")
        self.assertTrue((dl.header("content-type") or "").startswith("application/cloudevents+json"), dl.headers)
        self.assertEqual(dl.header("pubsubname"), "pubsub", dl.headers)
        # every event its own id
        dl2 = self.one(dict(topic=self.t, body={"n": 2}))
        self.assertRegex(dl2.id or "", UUID4_RE)
        self.assertNotEqual(dl2.id, dl.id)
        # without a traceparent from the publisher the event starts a trace of its own
        self.assertRegex(dl2.event.get("traceparent", ""), TRACEPARENT_RE, dl2.event)
        self.assertNotEqual(dl2.event["traceparent"].split("-")[1], TRACEPARENT.split("-")[1])
        self.assertEqual(dl2.header("traceparent"), dl2.event["traceparent"], dl2.headers)

    def test_cloudevent_overrides(self):
        dl = self.one(dict(topic=self.t, body={"n": 1},
                           query="?metadata.cloudevent.id=my-id-1&metadata.cloudevent.type=my.type"))
        self.assertEqual(dl.event.get("id"), "my-id-1", dl)
        self.assertEqual(dl.event.get("type"), "my.type", dl)
        self.assertEqual(dl.event.get("data"), {"n": 1}, dl)

    def test_delivery_trace_headers_match_the_event(self):
        """The delivery's traceparent and tracestate headers are the event's own, also when
        metadata.cloudevent.* overrides set them (brokers only mooringd writes carry them beside
        the event, the others have them read from it)."""
        tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        dl = self.one(dict(topic=self.t, body={"n": 1},
                           headers={"traceparent": TRACEPARENT, "tracestate": "congo=t61rcWkgMzE"},
                           query="?metadata.cloudevent.traceparent=" + tp +
                                 "&metadata.cloudevent.tracestate=rojo%3D00f067aa0ba902b7"))
        self.assertEqual(dl.event.get("traceparent"), tp, dl.event)
        self.assertEqual(dl.header("traceparent"), tp, dl.headers)
        self.assertEqual(dl.event.get("tracestate"), "rojo=00f067aa0ba902b7", dl.event)
        self.assertEqual(dl.header("tracestate"), "rojo=00f067aa0ba902b7", dl.headers)
        # without a tracestate the event has "" and the delivery no such header
        dl2 = self.one(dict(topic=self.t, body={"n": 2}, headers={"traceparent": TRACEPARENT}))
        self.assertEqual(dl2.event.get("tracestate"), "", dl2.event)
        self.assertIsNone(dl2.header("tracestate"), dl2.headers)
        self.assertEqual(dl2.header("traceparent"), dl2.event.get("traceparent"), dl2.headers)

    def test_cloudevent_passthrough(self):
        ce = {"id": "ce-1", "source": "my-source", "type": "my.type", "specversion": "1.0",
              "datacontenttype": "application/json", "data": {"x": [1, 2]}, "topic": "wrong-topic",
              "pubsubname": "wrong-pubsub", "myextension": "kept", "time": "2020-01-02T03:04:05Z"}
        dl = self.one(dict(topic=self.t, body=ce, content_type="application/cloudevents+json"))
        ev = dl.event
        for k in ("id", "source", "type", "specversion", "datacontenttype", "data", "myextension", "time"):
            self.assertEqual(ev.get(k), ce[k], (k, ev))
        self.assertEqual(ev.get("topic"), self.t, ev)
        self.assertEqual(ev.get("pubsubname"), "pubsub", ev)
        self.assertRegex(ev.get("traceparent", ""), TRACEPARENT_RE, ev)  # added: it had none

    def test_cloudevent_passthrough_fills_missing(self):
        ce = {"id": "ce-2", "data": "payload"}
        dl = self.one(dict(topic=self.t, body=ce, content_type="application/cloudevents+json; charset=utf-8",
                           headers={"traceparent": TRACEPARENT}))
        ev = dl.event
        self.assertEqual(ev.get("id"), "ce-2", ev)
        self.assertEqual(ev.get("data"), "payload", ev)
        self.assertEqual(ev.get("source"), "Dapr", ev)
        self.assertEqual(ev.get("type"), "com.dapr.event.sent", ev)
        self.assertEqual(ev.get("specversion"), "1.0", ev)
        self.assertEqual(ev.get("topic"), self.t, ev)
        self.assertEqual(ev.get("pubsubname"), "pubsub", ev)
        parse_time(ev.get("time", ""))
        self.assert_same_trace(ev.get("traceparent"), ev)

    def test_raw_payload_published_is_delivered_unwrapped(self):
        """rawPayload=true: no envelope; a subscriber without rawPayload gets the bytes as they were
        published (here a CloudEvent the publisher built itself)."""
        own = json.dumps({"id": "raw-ce", "specversion": "1.0", "source": "me", "type": "t.raw",
                          "datacontenttype": "application/json", "data": {"raw": True}},
                         separators=(",", ":")).encode()
        dl = self.one(dict(topic=self.t, body=own, query="?metadata.rawPayload=true"))
        self.assertEqual(dl.body, own)

    def test_raw_payload_subscription_gets_it_wrapped(self):
        """A subscription with rawPayload "true" gets whatever the broker holds wrapped as
        {data_base64, datacontenttype application/octet-stream, ...}: raw bytes as published raw,
        and Dapr's envelope (as its JSON bytes) when published normally."""
        blob = b"\x00raw\x01bytes\xff\x00"
        dl = self.one(dict(topic=self.tr, body=blob, content_type="application/octet-stream",
                           query="?metadata.rawPayload=true"), path="/raw")
        ev = dl.event
        self.assertEqual(base64.b64decode(ev.get("data_base64", "")), blob, ev)
        self.assertEqual(ev.get("datacontenttype"), "application/octet-stream", ev)
        self.assertEqual(ev.get("topic"), self.tr, ev)
        self.assertEqual(ev.get("pubsubname"), "pubsub", ev)
        self.assertEqual(ev.get("specversion"), "1.0", ev)
        self.assertTrue(ev.get("id"), ev)
        self.assertNotIn("data", ev)

        dl = self.one(dict(topic=self.tr, body={"enveloped": 1}), path="/raw")
        inner = json.loads(base64.b64decode(dl.event.get("data_base64", "")))
        self.assertEqual(inner.get("data"), {"enveloped": 1}, inner)
        self.assertEqual(inner.get("source"), "pub", inner)
        self.assertEqual(inner.get("topic"), self.tr, inner)

    def test_ttl_expired_messages_are_not_delivered(self):
        """ttlInSeconds=1 and an app that keeps answering RETRY: deliveries stop once it expired."""
        self.retry_ttl = True
        t0 = time.monotonic()
        self.publish_ok(self.t, {"ttl": True}, query="?metadata.ttlInSeconds=1")
        self.sub.wait_count(1, "/events", pred=lambda d: d.field("ttl"), timeout=DELIVERY_TIMEOUT)
        time.sleep(max(0.0, t0 + 5.0 - time.monotonic()))
        late = [round(d.at - t0, 2) for d in self.sub.got("/events", lambda d: d.field("ttl")) if d.at > t0 + 1.5]
        self.assertEqual(late, [], "deliveries (seconds after the publish) of a message whose 1 s TTL had passed")


class BulkPublishTest(PubsubCase):
    def test_bulk_publish_delivers_every_entry(self):
        t = self.topic("bulk")
        sub = self.subscriber("sub", [v1(t, "/bulk")])
        self.start_daemon({"sub": sub})
        self.sync(t, {"sub": sub})
        entries = [
            {"entryId": "e1", "event": {"kind": "json", "n": 1}, "contentType": "application/json"},
            {"entryId": "e2", "event": "plain text", "contentType": "text/plain"},
            {"entryId": "e3", "event": {"id": "bulk-ce", "source": "bulk-src", "type": "bulk.type",
                                        "specversion": "1.0", "data": {"kind": "ce"}},
             "contentType": "application/cloudevents+json"},
            {"entryId": "e4", "event": {"kind": "override"}, "contentType": "application/json",
             "metadata": {"cloudevent.id": "bulk-id-4"}},
        ]
        r = self.bulk(t, entries)
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.body, b"")
        got = sub.wait_count(4, "/bulk", timeout=DELIVERY_TIMEOUT)
        time.sleep(SETTLE / 2)
        got = sub.got("/bulk")
        self.assertEqual(len(got), 4, got)
        by = {}
        for dl in got:
            d = dl.data
            by[d.get("kind") if isinstance(d, dict) else d] = dl.event
        self.assertEqual(set(by), {"json", "plain text", "ce", "override"}, by)
        self.assertEqual(by["json"]["data"], {"kind": "json", "n": 1})
        self.assertEqual(by["json"]["datacontenttype"], "application/json")
        self.assertEqual(by["json"]["source"], "pub")
        self.assertEqual(by["plain text"]["datacontenttype"], "text/plain")
        self.assertEqual((by["ce"]["id"], by["ce"]["source"], by["ce"]["type"]), ("bulk-ce", "bulk-src", "bulk.type"))
        self.assertEqual(by["ce"]["topic"], t)
        self.assertEqual(by["override"]["id"], "bulk-id-4")
        for ev in by.values():
            self.assertEqual(ev["pubsubname"], "pubsub")
            self.assertEqual(ev["topic"], t)


# ---------------------------------------------------------------------------

ROUTES_V2 = {"rules": [{"match": 'event.type == "created"', "path": "/created"},
                       {"match": 'event.data.kind == "big"', "path": "/big"}],
             "default": "/other"}


class RoutingTest(PubsubCase):
    def route_of(self, sub, marker):
        dl = sub.wait(lambda s: (lambda l: l[0] if l else None)(s.got(pred=lambda d: d.field("m") == marker)),
                      timeout=DELIVERY_TIMEOUT, what=f"the message {marker}")
        return dl.path

    def check_rules(self, sub, t):
        """Publishes to t and checks the ROUTES_V2 rules chose the path."""
        self.publish_ok(t, {"id": "x", "type": "created", "specversion": "1.0", "source": "s",
                            "data": {"m": "ce-created", "kind": "big"}},
                        content_type="application/cloudevents+json")
        self.publish_ok(t, {"m": "override-created"}, query="?metadata.cloudevent.type=created")
        self.publish_ok(t, {"m": "data-big", "kind": "big"})
        self.publish_ok(t, {"m": "data-small", "kind": "small"})
        self.publish_ok(t, {"m": "no-kind"})
        self.publish_ok(t, {"id": "y", "type": "other", "specversion": "1.0", "source": "s",
                            "data": {"m": "ce-other"}}, content_type="application/cloudevents+json")
        want = {"ce-created": "/created", "override-created": "/created", "data-big": "/big",
                "data-small": "/other", "no-kind": "/other", "ce-other": "/other"}
        got = {m: self.route_of(sub, m) for m in want}
        self.assertEqual(got, want)

    def test_programmatic_v2_rules_and_default(self):
        t = self.topic("rules")
        sub = self.subscriber("sub", [dict(pubsubname="pubsub", topic=t, routes=ROUTES_V2)])
        self.start_daemon({"sub": sub})
        self.sync(t, {"sub": sub})
        self.check_rules(sub, t)

    def test_declarative_v2alpha1_rules_and_v1alpha1_route(self):
        t2, t1 = self.topic("decl2"), self.topic("decl1")
        sub = self.subscriber("sub", None)  # GET /dapr/subscribe: 404
        v2 = f"""apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: rules-sub
spec:
  pubsubname: pubsub
  topic: {t2}
  routes:
    rules:
    - match: 'event.type == "created"'
      path: /created
    - match: 'event.data.kind == "big"'
      path: /big
    default: /other
"""
        v1a = f"""apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata:
  name: route-sub
spec:
  pubsubname: pubsub
  topic: {t1}
  route: /v1route
"""
        self.start_daemon({"sub": sub}, declarative={"rules.yaml": v2, "route.yaml": v1a})
        self.sync(t2, {"sub": sub})
        self.sync(t1, {"sub": sub})
        kinds = {(s["app"], s["topic"]): s["kind"] for s in self.subscriptions()}
        self.assertEqual(kinds.get(("sub", t2)), "declarative", kinds)
        self.check_rules(sub, t2)
        self.publish_ok(t1, {"m": "v1"})
        self.assertEqual(self.route_of(sub, "v1"), "/v1route")

    def test_declarative_scopes(self):
        t = self.topic("scoped")
        a = self.subscriber("a", None)
        b = self.subscriber("b", None)
        decl = f"""apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: scoped-sub
spec:
  pubsubname: pubsub
  topic: {t}
  routes:
    default: /scoped
scopes:
- a
"""
        self.start_daemon({"a": a, "b": b}, declarative={"scoped.yaml": decl})
        self.sync(t, {"a": a})
        wait_for(lambda: b.subscribe_calls > 0, what="b healthy and asked for its subscriptions")
        self.publish_ok(t, {"m": 1})
        a.wait_count(1, "/scoped", timeout=DELIVERY_TIMEOUT)
        time.sleep(SETTLE)
        self.assertEqual(b.got(), [])
        self.assertEqual([s for s in self.subscriptions() if s["app"] == "b"], [])

    def test_sighup_reloads_declarative_subscriptions(self):
        t = self.topic("reload")
        sub = self.subscriber("sub", None)
        self.start_daemon({"sub": sub})
        decl = f"""apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata:
  name: late
spec:
  pubsubname: pubsub
  topic: {t}
  route: /late
"""
        self.write_subscriptions(self.d, {"late.yaml": decl})
        self.reload(self.d)
        self.sync(t, {"sub": sub})
        self.publish_ok(t, {"m": "after-reload"})
        self.assertEqual(self.route_of(sub, "after-reload"), "/late")
        # and removing it ends the subscription
        os.unlink(os.path.join(self.d.config, "subscriptions", "late.yaml"))
        self.reload(self.d)
        wait_for(lambda: not [s for s in self.subscriptions() if s["topic"] == t], what="subscription gone")


# ---------------------------------------------------------------------------

def answer_json(obj, status=200):
    return Reply(status, [("Content-Type", "application/json")], json.dumps(obj).encode())


class DeliveryTest(PubsubCase):
    """The app's answer decides: ack, retry with backoff, drop (to the dead-letter topic)."""

    def test_ack_answers(self):
        answers = {
            "empty": Reply(200),
            "no-content": Reply(204),
            "success": answer_json({"status": "SUCCESS"}),
            "not-json": Reply(200, [("Content-Type", "text/plain")], b"fine, thanks"),
            "json-without-status": answer_json({"other": 1}),
            "created": Reply(201),
        }
        t = self.topic("ack")
        sub = self.subscriber("sub", [v1(t, "/ack")], decide=lambda d: answers.get(d.field("m")))
        self.start_daemon({"sub": sub})
        self.sync(t, {"sub": sub})
        for m in answers:
            self.publish_ok(t, {"m": m})
        sub.wait_count(len(answers), "/ack", timeout=DELIVERY_TIMEOUT)
        time.sleep(SETTLE)
        counts = {m: len(sub.got("/ack", lambda d, m=m: d.field("m") == m)) for m in answers}
        self.assertEqual(counts, {m: 1 for m in answers}, "each acked answer must end the message")

    def test_retry_then_success(self):
        """RETRY, 500, an unknown status, an answer cut short (the app died while answering):
        each redelivers, with backoff."""
        t = self.topic("retry")
        # (An app closing the connection without answering at all is not used here: libcurl
        # resends a request at once, itself, when a reused connection ends without a byte.)
        cut = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"sta"
        seq = [answer_json({"status": "RETRY"}), Reply(500), answer_json({"status": "WHATEVER"}),
               Reply(raw=cut), None]

        def decide(d):
            n = len(sub.got("/retry", lambda x: x.field("m") == d.field("m"))) - 1
            return seq[n] if n < len(seq) else Reply(599)

        sub = self.subscriber("sub", [v1(t, "/retry")], decide=decide)
        self.start_daemon({"sub": sub})
        self.sync(t, {"sub": sub})
        self.publish_ok(t, {"m": "r"})
        got = sub.wait_count(len(seq), "/retry", timeout=60)
        time.sleep(SETTLE)
        got = sub.got("/retry")
        self.assertEqual(len(got), len(seq), f"{len(got)} deliveries: acked after the {len(seq)}th")
        self.assertEqual(len({dl.id for dl in got}), 1, "a redelivery is the same event")
        gaps = [round(b.at - a.at, 2) for a, b in zip(got, got[1:])]
        print(f"\n  retry gaps (s): {gaps}", file=sys.stderr)
        self.assertGreaterEqual(gaps[0], 0.35, f"first retry too early: {gaps}")
        self.assertLess(gaps[0], 5.0, f"first retry too late: {gaps}")
        for g0, g1 in zip(gaps, gaps[1:]):
            self.assertGreaterEqual(g1, g0 * 1.4, f"no exponential backoff: {gaps}")
        self.assertLess(gaps[-1], 20, gaps)

    def dead_letter_setup(self, answer):
        t, dlt = self.topic("main"), self.topic("dead")
        sub = self.subscriber("sub", [v1(t, "/main", deadLetterTopic=dlt), v1(dlt, "/dead")],
                              decide=lambda d: answer if d.path == "/main" else None)
        self.start_daemon({"sub": sub})
        # probes are acked on both topics (also on /main: decide() is not asked about them)
        self.sync(t, {"sub": sub})
        self.sync(dlt, {"sub": sub})
        return t, dlt, sub

    def test_drop_goes_to_dead_letter_topic(self):
        t, dlt, sub = self.dead_letter_setup(answer_json({"status": "DROP"}))
        self.publish_ok(t, {"m": "poison"}, headers={"traceparent": TRACEPARENT})
        dead = sub.wait_count(1, "/dead", timeout=DELIVERY_TIMEOUT)[0]
        main = sub.got("/main")
        self.assertEqual(len(main), 1, main)
        self.assertEqual(dead.data, {"m": "poison"}, dead)
        self.assertEqual(dead.id, main[0].id, "the dead letter is the original event")
        self.assertEqual(dead.event.get("source"), "pub", dead)
        time.sleep(SETTLE)
        self.assertEqual(len(sub.got("/main")), 1, "a dropped message must not be redelivered")
        self.assertEqual(len(sub.got("/dead")), 1)

    def test_drop_without_dead_letter_topic(self):
        t = self.topic("drop")
        sub = self.subscriber("sub", [v1(t, "/drop")], decide=lambda d: answer_json({"status": "DROP"}))
        self.start_daemon({"sub": sub})
        self.sync(t, {"sub": sub})
        self.publish_ok(t, {"m": "dropped"})
        sub.wait_count(1, "/drop", timeout=DELIVERY_TIMEOUT)
        time.sleep(SETTLE)
        self.assertEqual(len(sub.got("/drop")), 1, "a dropped message must not be redelivered")
        self.d.assert_running()

    def test_404_drops_without_dead_letter(self):
        t, dlt, sub = self.dead_letter_setup(Reply(404))
        self.publish_ok(t, {"m": "nowhere"})
        sub.wait_count(1, "/main", timeout=DELIVERY_TIMEOUT)
        time.sleep(SETTLE + 1)
        self.assertEqual(len(sub.got("/main")), 1, "a 404 must not be retried")
        self.assertEqual(sub.got("/dead"), [], "a 404 must not be dead-lettered")

    def test_fan_out_to_every_app(self):
        t = self.topic("fan")
        subs = {name: self.subscriber(name, [v1(t, f"/fan-{name}")], tcp=(name == "c"))
                for name in ("a", "b", "c")}
        self.start_daemon(subs)
        self.sync(t, subs)
        n = 20
        for i in range(n):
            self.publish_ok(t, {"n": i})
        for name, s in subs.items():
            s.wait_count(n, f"/fan-{name}", timeout=DELIVERY_TIMEOUT)
        time.sleep(SETTLE / 2)
        for name, s in subs.items():
            got = sorted(d.field("n") for d in s.got(f"/fan-{name}"))
            self.assertEqual(got, list(range(n)), f"app {name}")

    def test_subscriber_down_gets_messages_when_back(self):
        """The apps go away (Unix socket gone, TCP port closed); published messages wait for them."""
        t = self.topic("down")
        subs = {"u": self.subscriber("u", [v1(t, "/down")]),
                "t": self.subscriber("t", [v1(t, "/down")], tcp=True)}
        self.start_daemon(subs)
        self.sync(t, subs)
        for s in subs.values():
            s.stop()
        n = 10
        for i in range(n):
            self.publish_ok(t, {"n": i})
        time.sleep(1.5)  # deliveries fail, the probes find the apps down
        for s in subs.values():
            s.start()
        for name, s in subs.items():
            s.wait(lambda s: len({d.field("n") for d in s.got("/down")}) >= n, timeout=60,
                   what=f"all {n} messages at {name} after it came back")
            self.assertEqual({d.field("n") for d in s.got("/down")}, set(range(n)), name)

    def test_max_concurrency_covers_deliveries(self):
        """MaxConcurrency=1 (Dapr's app-max-concurrency) bounds every call to the app: deliveries of
        two subscriptions (64 in flight each) never overlap there, and every message still arrives."""
        t1, t2 = self.topic("mc1"), self.topic("mc2")
        sub = self.subscriber("sub", [v1(t1, "/one"), v1(t2, "/two")], delay=0.01)
        d = self.start_daemon({"sub": sub}, start=False)
        d.write_app("sub", sub.conf("MaxConcurrency=1\n"))
        d.start()
        self.sync(t1, {"sub": sub})
        self.sync(t2, {"sub": sub})
        n = 30
        for i in range(n):
            self.publish_ok(t1, {"n": i})
            self.publish_ok(t2, {"n": i})
        sub.wait_count(n, "/one", timeout=DELIVERY_TIMEOUT)
        sub.wait_count(n, "/two", timeout=DELIVERY_TIMEOUT)
        self.assertEqual(sub.max_active, 1, "MaxConcurrency=1 exceeded")

    @needs(ORDERED)
    def test_single_concurrency_first_deliveries_in_order(self):
        t = self.topic("order")
        sub = self.subscriber("sub", [v1(t, "/order", metadata={"concurrency": "1"})], delay=0.02)
        self.start_daemon({"sub": sub})
        self.sync(t, {"sub": sub})
        n = 40
        for i in range(n):
            self.publish_ok(t, {"n": i})
        sub.wait_count(n, "/order", timeout=DELIVERY_TIMEOUT)
        first = []
        for d in sub.got("/order"):
            if d.field("n") not in first:
                first.append(d.field("n"))
        self.assertEqual(first, list(range(n)), "first deliveries out of publish order")
        self.assertEqual(sub.max_active, 1, "concurrency 1: more than one delivery in flight at once")

    @needs(SHARED)
    def test_competing_consumers_two_daemons(self):
        """Two daemons on one broker, both running app `sub`: each message reaches one of them."""
        t = self.topic("compete")
        s1 = self.subscriber("s1", [v1(t, "/c")])
        s2 = self.subscriber("s2", [v1(t, "/c")])
        d1 = self.start_daemon({"sub": s1})
        d2 = self.start_daemon({"sub": s2})
        self.wait_subscribed(t, ["sub"], d=d1)
        self.wait_subscribed(t, ["sub"], d=d2)
        # both daemons' consumers must be live: probe until each got one
        self.sync(t, {"sub": s1}, d=d1)
        self.sync(t, {"sub": s2}, d=d1)
        n = 60
        for i in range(n):
            self.publish_ok(t, {"n": i}, d=d1 if i % 2 else d2)
        both = lambda: [d.field("n") for d in s1.got("/c")] + [d.field("n") for d in s2.got("/c")]
        wait_for(lambda: len(set(both())) >= n, timeout=DELIVERY_TIMEOUT, what=f"{n} messages between both")
        time.sleep(SETTLE)
        got = both()
        split = (len(s1.got("/c")), len(s2.got("/c")))
        print(f"\n  competing consumers: {split[0]} + {split[1]} deliveries of {n} messages", file=sys.stderr)
        self.assertEqual(sorted(set(got)), list(range(n)))
        dups = sorted(x for x in set(got) if got.count(x) > 1)
        self.assertEqual(dups, [], f"delivered to both daemons (split {split})")


# ---------------------------------------------------------------------------

class CrashTest(PubsubCase):
    """The headline: messages acknowledged with 204 survive SIGKILLs of the daemon."""

    MESSAGES = int(os.environ.get("MOORING_PUBSUB_CRASH_MESSAGES", "10000"))
    PUBLISHERS = 12
    KILL_AT = (0.3, 0.65)   # fractions of MESSAGES acknowledged when the daemon is killed

    @needs(DURABLE)
    def test_acknowledged_messages_survive_sigkill(self):
        N = self.MESSAGES
        t = self.topic("crash")
        run = self.uid
        # a little slower than the publishers, so that a backlog builds up
        sub = self.subscriber("sub", [v1(t, "/crash")], delay=0.004)
        d = self.start_daemon({"sub": sub}, use_socket_activation=False)
        self.sync(t, {"sub": sub})
        sock = d.app_socket("pub")
        pad = "x" * 1000
        path = f"/v1.0/publish/pubsub/{t}"
        lock = threading.Lock()
        acked, unknown, failed, refused = set(), set(), {}, [0]
        retried = [0]
        nxt = [0]
        deadline = time.monotonic() + 150

        def publish_one(n):
            body = json.dumps({"run": run, "n": n, "pad": pad}).encode()
            attempts = 0
            while True:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(30)
                try:
                    s.connect(sock)
                except OSError:
                    # nothing was sent: the daemon is down (being restarted); try again
                    s.close()
                    with lock:
                        refused[0] += 1
                    if time.monotonic() > deadline:
                        with lock:
                            failed[n] = "connect"
                        return
                    time.sleep(0.02)
                    continue
                conn = UnixHTTPConnection(sock, timeout=30)
                conn.sock = s
                try:
                    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
                    r = conn.getresponse()
                    r.read()
                    status = r.status
                except (OSError, http.client.HTTPException):
                    with lock:
                        unknown.add(n)  # sent, no answer: the daemon died meanwhile
                    return
                finally:
                    conn.close()
                if status == 204:
                    with lock:
                        acked.add(n)
                    return
                attempts += 1
                if status >= 500 and attempts < 100 and time.monotonic() < deadline:
                    with lock:
                        retried[0] += 1
                    time.sleep(0.05)  # e.g. the broker connection is not up yet after a restart
                    continue
                with lock:
                    failed[n] = status
                return

        def worker():
            while True:
                with lock:
                    n = nxt[0]
                    nxt[0] += 1
                if n >= N:
                    return
                publish_one(n)

        t_start = time.monotonic()
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(self.PUBLISHERS)]
        for th in threads:
            th.start()
        kills = []
        for frac in self.KILL_AT:
            want = int(N * frac)
            wait_for(lambda: len(acked) >= want or not any(th.is_alive() for th in threads), timeout=120,
                     interval=0.005, what=f"{want} acknowledged publishes")
            if not any(th.is_alive() for th in threads):
                break
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait()
            with lock:
                kills.append((len(acked), round(time.monotonic() - t_start, 1)))
            d.start()
        for th in threads:
            th.join(timeout=max(1.0, deadline - time.monotonic()))
        self.assertFalse(any(th.is_alive() for th in threads), "publishers did not finish")
        t_published = time.monotonic() - t_start

        def delivered():
            c = {}
            for dl in sub.got("/crash"):
                if dl.field("run") == run:
                    c[dl.field("n")] = c.get(dl.field("n"), 0) + 1
            return c

        # Once more while the subscriber still works through a backlog, if there is one.
        backlog = len(acked - set(delivered()))
        if backlog > 100:
            d.proc.send_signal(signal.SIGKILL)
            d.proc.wait()
            kills.append((f"after publishing, {backlog} not yet delivered", round(time.monotonic() - t_start, 1)))
            d.start()

        try:
            sub.wait(lambda s: acked <= set(delivered()), timeout=120,
                     what="every acknowledged message delivered")
        except AssertionError:
            pass  # reported below with the numbers
        time.sleep(SETTLE)
        t_total = time.monotonic() - t_start
        counts = delivered()
        lost = sorted(acked - set(counts))
        dups = sorted(n for n, c in counts.items() if c > 1)
        extra_dups = sum(c - 1 for c in counts.values())
        unacked_delivered = sorted(set(counts) - acked)
        report = (
            f"pubsub crash test, driver {DRIVER_NAME} ({DRIVER['type']})\n"
            f"  messages:          {N} (~1 KiB each), {self.PUBLISHERS} publisher threads\n"
            f"  SIGKILLs:          {len(kills)} at (acked, seconds) {kills}\n"
            f"  acknowledged(204): {len(acked)}\n"
            f"  no answer (died):  {len(unknown)}\n"
            f"  refused connects:  {refused[0]} (retried), 5xx answers retried: {retried[0]}\n"
            f"  failed:            {len(failed)} {dict(list(failed.items())[:10])}\n"
            f"  delivered:         {len(counts)} distinct, {sum(counts.values())} deliveries\n"
            f"  delivered without 204 (publish outcome unknown): {len(unacked_delivered)}\n"
            f"  duplicates:        {len(dups)} messages delivered more than once ({extra_dups} extra deliveries)\n"
            f"  lost:              {len(lost)}\n"
            f"  publishing took {t_published:.1f}s, everything {t_total:.1f}s\n"
            f"  duplicate numbers: {dups[:200]}{' ...' if len(dups) > 200 else ''}\n"
            f"  lost numbers:      {lost[:200]}{' ...' if len(lost) > 200 else ''}\n"
        )
        print("\n" + report, file=sys.stderr)
        logdir = os.environ.get("MOORING_TEST_LOG_DIR")
        if logdir and os.path.isdir(logdir):
            with open(os.path.join(logdir, f"pubsub-{DRIVER_NAME}-crash.txt"), "w") as f:
                f.write(report)
                f.write(f"all duplicate numbers: {dups}\n")
        self.assertGreaterEqual(len(kills), 1, "the daemon was never killed mid-way")
        self.assertEqual(failed, {}, "publishes that never got an answer other than an error")
        self.assertEqual(lost, [], f"{len(lost)} acknowledged messages never delivered")


# ---------------------------------------------------------------------------

def start_server():
    import servers
    kind = DRIVER["server"]
    if kind == "redis":
        return servers.RedisServer()
    if kind == "mosquitto":
        cls = getattr(servers, "MosquittoServer", None)
        if cls is None:
            skip_or_fail("tests/fixtures/servers.py has no MosquittoServer")
        return cls()
    return None


def preflight():
    """One daemon with the component alone: a broker missing from this build is a skip, not
    forty failures."""
    d = harness.Daemon(apps={"pub": "[App]\n"})
    try:
        d.write_component("pubsub.yaml", component())
        d.start()
        r = request(d.app_socket("pub"), "POST", "/v1.0/publish/pubsub/preflight", body=b"{}",
                    headers={"Content-Type": "application/json"})
        d.stop()
        log = d.log()
    finally:
        d.cleanup()
    if "no pub/sub driver for type" in log:
        skip_or_fail(f"{DRIVER['type']} is not built into {harness.MOORINGD}")
    if r.status != 204:
        print(f"preflight: publishing answered {r}; mooringd log:\n{log}", file=sys.stderr)


def _terminate(signum, frame):
    raise SystemExit(128 + signum)


def main():
    global SERVER
    if DRIVER is None:
        print(f"unknown MOORING_PUBSUB_DRIVER={DRIVER_NAME!r}; known: {', '.join(DRIVERS)}", file=sys.stderr)
        sys.exit(1)
    harness.require("systemd-socket-activate")
    if not os.path.exists(harness.MOORINGD):
        skip_or_fail(f"{harness.MOORINGD} not built")
    # meson's timeout sends SIGTERM: unwind so the servers are stopped.
    signal.signal(signal.SIGTERM, _terminate)
    print(f"pub/sub conformance: driver {DRIVER_NAME} ({DRIVER['type']}), features "
          f"{', '.join(sorted(DRIVER['features'])) or 'none'}", file=sys.stderr)
    server = start_server()
    try:
        if server is not None:
            server.start()
            SERVER = server
        preflight()
        prog = unittest.main(argv=[sys.argv[0]] + sys.argv[1:], exit=False, verbosity=2)
    finally:
        if server is not None:
            server.close()
    r = prog.result
    sys.exit(0 if r.wasSuccessful() and r.testsRun > 0 else 1)


if __name__ == "__main__":
    main()
