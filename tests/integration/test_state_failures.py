#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Failures of a state component are visible, and not one line per failed request
(issue 10 finding 8: 244 failed saves while Redis was down left no log line).

The first failure is logged with its cause; further failures within 10 s are only
counted, and a summary line with the count follows once the 10 s are over."""

import json
import os
import sys

from harness import DaemonTestCase, main, request, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from servers import RedisServer  # noqa: E402

APP = "[App]\n"
FIRST = "State save against component 'cache' failed"
SUMMARY = "State store 'cache': "


def component(host):
    return ("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: cache\n"
            f"spec:\n  type: state.redis\n  version: v1\n  metadata:\n  - name: redisHost\n    value: \"{host}\"\n")


def save(sock, i):
    return request(sock, "POST", "/v1.0/state/cache", body=json.dumps([{"key": f"k{i}", "value": i}]).encode())


class StateFailureLogTest(DaemonTestCase):
    def test_failures_logged_once_then_summarised(self):
        redis = RedisServer()
        self.addCleanup(redis.close)
        redis.start()
        d = self.daemon(apps={"a": APP}, components={"cache.yaml": component(redis.address)})
        sock = d.app_socket("a")
        self.assertEqual(save(sock, 0).status, 204)

        redis.stop()
        n = 20
        for i in range(n):
            r = save(sock, i)
            self.assertEqual(r.status, 500, r)
            self.assertEqual(r.json()["errorCode"], "ERR_STATE_SAVE")

        log = d.log()
        firsts = [line for line in log.splitlines() if FIRST in line]
        self.assertEqual(len(firsts), 1, f"expected one line for {n} failures:\n{log}")
        self.assertNotIn(SUMMARY, log)

        # The rest of the burst is reported in one line once the interval is over.
        wait_for(lambda: SUMMARY in d.log(), timeout=30, what="the summary line")
        summaries = [line for line in d.log().splitlines() if SUMMARY in line]
        self.assertEqual(len(summaries), 1, d.log())
        self.assertIn(f"{n - 1} more failed operations", summaries[0])
        self.assertEqual(len([line for line in d.log().splitlines() if FIRST in line]), 1)


if __name__ == "__main__":
    main()
