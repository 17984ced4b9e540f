#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Failed publishes are visible, and not one line per failed request (issue 10 part 6);
bulk publish checks entry ids without holding the loop.

The first publish a broker fails is logged with its cause; further failures within
10 s are only counted, and the next failure after that says how many there were."""

import os
import sys
import time

from harness import DaemonTestCase, main, request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from servers import RedisServer  # noqa: E402

FIRST = "Publish to pubsub 'bus' failed"


def component(host):
    return ("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: bus\n"
            f"spec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: \"{host}\"\n")


def publish(sock, i):
    return request(sock, "POST", "/v1.0/publish/bus/orders", body=b'{"n": %d}' % i,
                   headers={"Content-Type": "application/json"})


class PublishFailureLogTest(DaemonTestCase):
    def test_failures_logged_once_then_counted(self):
        redis = RedisServer()
        self.addCleanup(redis.close)
        redis.start()
        d = self.daemon(apps={"a": "[App]\n"}, components={"bus.yaml": component(redis.address)})
        sock = d.app_socket("a")
        self.assertEqual(publish(sock, 0).status, 204)

        redis.stop()
        n = 20
        for i in range(n):
            r = publish(sock, i)
            self.assertEqual(r.status, 500, r)
            self.assertEqual(r.json()["errorCode"], "ERR_PUBSUB_PUBLISH_MESSAGE", r)
        lines = [line for line in d.log().splitlines() if FIRST in line]
        self.assertEqual(len(lines), 1, f"expected one line for {n} failures:\n{d.log()}")

        # Past the interval the next failure is logged again, with the count of those held back.
        time.sleep(10.5)
        self.assertEqual(publish(sock, n).status, 500)
        lines = [line for line in d.log().splitlines() if FIRST in line]
        self.assertEqual(len(lines), 2, d.log())
        self.assertIn(f"{n - 1} more failures since the last report", lines[1])


class BulkPublishIdsTest(DaemonTestCase):
    def test_duplicate_entry_ids_in_a_large_bulk(self):
        """10,000 entries are checked for duplicate ids by sorting (the pairwise check held the
        loop for seconds); the duplicate is found wherever it is, and nothing is published."""
        import json
        d = self.daemon(apps={"a": "[App]\n"})
        sock = d.app_socket("a")
        entries = [{"entryId": f"e{i}", "event": {"n": i}, "contentType": "application/json"} for i in range(10000)]
        dup = entries + [{"entryId": "e4711", "event": {}, "contentType": "application/json"}]
        r = request(sock, "POST", "/v1.0-alpha1/publish/bulk/pubsub/orders", body=json.dumps(dup).encode(),
                    headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json()["errorCode"], "ERR_PUBSUB_EVENTS_SER")
        self.assertIn("'e4711' is duplicated", r.json()["message"])
        r = request(sock, "POST", "/v1.0-alpha1/publish/bulk/pubsub/orders", body=json.dumps(entries).encode(),
                    headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 204, r)


if __name__ == "__main__":
    main()
