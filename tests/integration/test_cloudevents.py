#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""CloudEvents published as application/cloudevents+json are checked against
CloudEvents 1.0 before they reach the broker (issue 10, finding 7), through
the real daemon: POST /v1.0/publish, the alpha bulk publish and D-Bus Publish.

A refused event gets daprd's error for an event it cannot build
(ERR_PUBSUB_CLOUD_EVENTS_SER, HTTP 500; D-Bus InvalidArgument), and nothing
of it is delivered: a subscribed app sees only the valid event published
after the bad ones. A bulk request with one bad CloudEvent entry publishes
none of its entries, as daprd, which builds every envelope before it
publishes any.
"""

import json
import os
import shutil
import subprocess
import tempfile

from harness import TIMEOUT, DaemonTestCase, main, request, wait_for
from testapp import TestApp

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
  name: events
spec:
  pubsubname: pubsub
  topic: events
  routes:
    default: /events
scopes:
- sub
"""

CE = "application/cloudevents+json"

# Each of these is stored by daprd as given (it only checks "a JSON object").
BAD = [
    ({}, "no 'id'"),
    ({"id": "1", "source": "s", "type": "t", "specversion": "2.0"}, "'specversion' must be \"1.0\""),
    ({"id": 42, "source": "s", "type": "t", "specversion": "1.0"}, "'id' must be a non-empty string"),
    ({"id": "1", "source": "s", "type": "t", "specversion": "1.0", "data_base64": "not base64!"},
     "'data_base64' is not a base64 string"),
    ({"id": "1", "time": "yesterday"}, "'time' must be an RFC 3339 timestamp"),
]


class CloudEventsTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        tmp = tempfile.mkdtemp(prefix="mooring-ce-")
        self.addCleanup(shutil.rmtree, tmp, True)
        sock = os.path.join(tmp, "sub.sock")
        self.app = TestApp(unix_path=sock).start()
        self.addCleanup(self.app.stop)
        self.d = self.daemon(bus=True, start=False,
                             apps={"pub": "[App]\n", "sub": f"[App]\nAppAddress=unix:{sock}\n"},
                             components={"pubsub.yaml": PUBSUB})
        os.makedirs(os.path.join(self.d.config, "subscriptions"))
        with open(os.path.join(self.d.config, "subscriptions", "events.yaml"), "w") as f:
            f.write(SUBSCRIPTION)
        self.d.start()
        # The declarative subscription starts with the daemon and is started again once
        # the app is found up and has answered GET /dapr/subscribe; a delivery in flight
        # then is given back to the broker and offered again (at least once). Publish
        # after that, so that "delivered once" means what the tests say.
        wait_for(lambda: self.d.log().count("Subscribed to topic events (declarative)") >= 2,
                 what="the subscription restarted after GET /dapr/subscribe")

    def publish(self, body, content_type=CE):
        return request(self.d.app_socket("pub"), "POST", "/v1.0/publish/pubsub/events",
                       body=body if isinstance(body, bytes) else json.dumps(body).encode(),
                       headers={"Content-Type": content_type})

    def delivered_ids(self):
        return [json.loads(body).get("id") for method, path, headers, body in self.app.requests
                if path == "/events"]

    def assert_only_good_delivered(self, good_id):
        r = self.publish({"id": good_id, "source": "s", "type": "t", "specversion": "1.0", "data": "ok"})
        self.assertEqual(r.status, 204, r.body)
        wait_for(lambda: good_id in self.delivered_ids(), what="the valid event's delivery")
        self.assertEqual(self.delivered_ids(), [good_id])

    def test_http_publish_refuses_invalid_events(self):
        for event, why in BAD:
            r = self.publish(event)
            self.assertEqual(r.status, 500, (event, r.body))
            self.assertEqual(r.json()["errorCode"], "ERR_PUBSUB_CLOUD_EVENTS_SER", event)
            self.assertIn(why, r.json()["message"], event)
        # Dapr's defaults still apply to a valid event that leaves them out.
        self.assert_only_good_delivered("good-1")
        r = self.publish({"id": "good-2"})
        self.assertEqual(r.status, 204, r.body)
        wait_for(lambda: "good-2" in self.delivered_ids(), what="the minimal event's delivery")
        last = json.loads([b for _, p, _, b in self.app.requests if p == "/events"][-1])
        self.assertEqual((last["source"], last["type"], last["specversion"]),
                         ("Dapr", "com.dapr.event.sent", "1.0"))

    def test_bulk_publish_refuses_the_request(self):
        entries = [
            {"entryId": "a", "event": {"id": "bulk-a", "source": "s", "type": "t", "specversion": "1.0"},
             "contentType": CE},
            {"entryId": "b", "event": {"id": 7}, "contentType": CE},
        ]
        r = request(self.d.app_socket("pub"), "POST", "/v1.0-alpha1/publish/bulk/pubsub/events",
                    body=json.dumps(entries).encode(), headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 500, r.body)
        self.assertEqual(r.json()["errorCode"], "ERR_PUBSUB_CLOUD_EVENTS_SER")
        self.assertIn("'b'", r.json()["message"])
        # rawPayload: the bytes are not a CloudEvent to Dapr, so they are not checked
        entries[1]["metadata"] = {"rawPayload": "true"}
        r = request(self.d.app_socket("pub"), "POST", "/v1.0-alpha1/publish/bulk/pubsub/events",
                    body=json.dumps(entries[1:]).encode(), headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 204, r.body)
        wait_for(lambda: len(self.delivered_ids()) == 1, what="the raw entry's delivery")
        self.app.requests.clear()
        self.assert_only_good_delivered("good-bulk")

    def test_dbus_publish_refuses_invalid_events(self):
        # gdbus prints the error's name, busctl only its message
        if not shutil.which("gdbus"):
            self.skipTest("gdbus (libglib2.0-bin) is not installed")
        for event, why in BAD:
            data = "[" + ", ".join(f"byte {b:#x}" for b in json.dumps(event).encode()) + "]"
            if data == "[]":
                data = "@ay []"
            p = subprocess.run(["gdbus", "call", "--address", self.d.dbus.address, "--dest", "org.mooring.Runtime1",
                                "--object-path", "/org/mooring/Runtime1", "--method",
                                "org.mooring.Runtime1.Publish", "pubsub", "events", CE, data, "@a{ss} {}"],
                               capture_output=True, text=True, timeout=TIMEOUT)
            self.assertNotEqual(p.returncode, 0, event)
            self.assertIn("org.mooring.Runtime1.Error.InvalidArgument:", p.stderr, event)
            self.assertIn(why, p.stderr, event)
        self.assert_only_good_delivered("good-bus")

if __name__ == "__main__":
    main()
