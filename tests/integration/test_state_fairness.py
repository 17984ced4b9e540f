#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""One app's huge state request does not stall another app, a request whose client
left is not carried out, and requests are bounded (issue 10 finding 4: one 100,000-item
save held app b's GET for 20.8 s and went on after the client aborted).

Ordering, never timing: app b's GET is answered while app a's save has no answer yet."""

import json
import select
import socket

from harness import DaemonTestCase, main, request, wait_for

APP = "[App]\n"
BIG = ("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: big\n"
       "spec:\n  type: state.sqlite\n  version: v1\n  metadata:\n"
       "  - name: connectionString\n    value: big.db\n"
       "  - name: maxOperationsPerRequest\n    value: \"0\"\n")
SMALL = ("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: small\n"
         "spec:\n  type: state.sqlite\n  version: v1\n  metadata:\n"
         "  - name: connectionString\n    value: small.db\n")


def raw_post(sock_path, path, body):
    """Sends a POST on a new connection and returns the socket without reading the answer."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return s


def read_status(s):
    data = b""
    while b"\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]) if data else None


class StateFairnessTest(DaemonTestCase):
    def test_other_app_not_stalled_and_gone_client_not_served(self):
        d = self.daemon(apps={"a": APP, "b": APP}, components={"big.yaml": BIG})
        a, b = d.app_socket("a"), d.app_socket("b")
        self.assertEqual(request(b, "POST", "/v1.0/state/big", body=b'[{"key":"mine","value":"b"}]').status, 204)

        items = [{"key": f"k{i}", "value": i} for i in range(100000)]
        big = raw_post(a, "/v1.0/state/big", json.dumps(items).encode())
        # The block says (at debug level) when it hands a call on: from then on it is in flight.
        wait_for(lambda: "save of 100000 item(s) from app 'a' on 'big': started" in d.log(), timeout=120,
                 what="the big save to start")
        # A save of a's that waits behind the big one; its client leaves before it is answered.
        gone = raw_post(a, "/v1.0/state/big", b'[{"key":"gone","value":1}]')
        wait_for(lambda: "save of 1 item(s) from app 'a' on 'big'" in d.log(), what="the second save")
        r = request(b, "GET", "/v1.0/state/big/mine")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json(), "b")
        readable, _, _ = select.select([big], [], [], 0)
        self.assertEqual(readable, [], "app b's get waited for app a's 100,000-item save")

        gone.close()
        big.settimeout(600)
        self.assertEqual(read_status(big), 204)
        big.close()
        self.assertEqual(request(a, "GET", "/v1.0/state/big/k99999").json(), 99999)
        # The abandoned save was never carried out.
        self.assertEqual(request(a, "GET", "/v1.0/state/big/gone").status, 204)

    def test_requests_are_bounded(self):
        d = self.daemon(apps={"a": APP}, components={"small.yaml": SMALL})
        a = d.app_socket("a")
        n = 10001
        r = request(a, "POST", "/v1.0/state/small",
                    body=json.dumps([{"key": f"k{i}", "value": i} for i in range(n)]).encode())
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json()["errorCode"], "ERR_STATE_SAVE")
        self.assertIn("10001 items", r.json()["message"])
        ops = [{"operation": "upsert", "request": {"key": f"k{i}", "value": i}} for i in range(n)]
        r = request(a, "POST", "/v1.0/state/small/transaction", body=json.dumps({"operations": ops}).encode())
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json()["errorCode"], "ERR_STATE_STORE_TOO_MANY_TRANSACTIONS")
        r = request(a, "POST", "/v1.0/state/small/bulk",
                    body=json.dumps({"keys": [f"k{i}" for i in range(n)]}).encode())
        self.assertEqual(r.status, 400, r)
        self.assertEqual(r.json()["errorCode"], "ERR_STATE_BULK_GET")
        # Nothing of the refused save was written; at the bound it goes through.
        self.assertEqual(request(a, "GET", "/v1.0/state/small/k0").status, 204)
        r = request(a, "POST", "/v1.0/state/small",
                    body=json.dumps([{"key": f"k{i}", "value": i} for i in range(n - 1)]).encode())
        self.assertEqual(r.status, 204, r)
        self.assertEqual(request(a, "GET", "/v1.0/state/small/k9999").json(), 9999)


if __name__ == "__main__":
    main()
