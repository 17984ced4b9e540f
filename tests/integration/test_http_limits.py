#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Fairness under hostile load (issue 10): connection limits per listener and
per peer uid below the global one, and a deadline for the request head.

- 10,000 idle connections on one app's socket do not lock out another app's
  socket or mooringd.sock;
- a slowloris client (one byte every 0.5 s) is cut at HeaderTimeoutSec=;
- MaxConnectionsPerListener= and MaxConnectionsPerUser= refuse the N+1th
  connection with a 503 in Dapr's JSON shape, log it and count it.
"""

import json
import resource
import select
import socket
import time

from harness import TIMEOUT, DaemonTestCase, main, request, wait_for

APPS = {"a": "[App]\nAppAddress=unix:/nonexistent/a.sock\n",
        "b": "[App]\nAppAddress=unix:/nonexistent/b.sock\n"}


def unix(path, timeout=TIMEOUT):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
    except OSError:
        s.close()
        raise
    return s


def unix_when_queued(path, timeout=TIMEOUT):
    """unix(), waiting while the listen backlog is full. A Unix stream connect with a
    timeout is non-blocking underneath, and a full backlog makes it fail with EAGAIN at
    once instead of waiting: 10,000 connects in a row outrun the daemon's accept loop on
    a loaded machine. Every connection must still be accepted in the end."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return unix(path)
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def get_healthz(s):
    """One keep-alive request on s; returns the status."""
    s.sendall(b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionResetError("closed")
        data += chunk
    return int(data.split(b" ", 2)[1])


def read_all(s):
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


class LimitsTest(DaemonTestCase):
    def status(self, d):
        r = d.get("/mooring/v1/status")
        j = r.json() if r.status == 200 else {}
        j.setdefault("http", {})  # a daemon without the counters fails the waits, not with a KeyError
        return j

    def wait_quiet(self, d):
        # Only our own status request open: the harness' readiness probe is gone.
        wait_for(lambda: self.status(d).get("http", {}).get("connections") == 1, what="no other connections")

    def test_idle_flood_does_not_lock_out_others(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 10000 + 500
        if hard < want:
            self.skipTest(f"RLIMIT_NOFILE hard limit {hard} < {want}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the daemon inherits it too
        self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        d = self.daemon(apps=APPS, conf="[Daemon]\nMaxConnectionsPerListener=20000\n"
                                        "MaxConnectionsPerUser=30000\nMaxConnections=40000\n")
        flood = []
        self.addCleanup(lambda: [s.close() for s in flood])
        for i in range(10000):
            flood.append(unix_when_queued(d.app_socket("a")))
        # Make sure the daemon took them all (accepted, not just queued in the backlog).
        wait_for(lambda: self.status(d)["http"].get("connections", 0) >= 10001, timeout=60,
                 what="10,000 accepted connections")
        for target in (d.app_socket("b"), d.api):
            t0 = time.monotonic()
            r = request(target, "GET", "/v1.0/healthz")
            took = time.monotonic() - t0
            print(f"healthz on {target} with 10,000 idle connections on a: {took * 1000:.1f} ms")
            self.assertEqual(r.status, 204)
            self.assertLess(took, 5.0)
        # the flooded app itself is still served too
        self.assertEqual(request(d.app_socket("a"), "GET", "/v1.0/healthz").status, 204)

    def test_slowloris_cut_at_header_deadline(self):
        d = self.daemon(apps=APPS, conf="[Daemon]\nHeaderTimeoutSec=2\n")
        s = unix(d.app_socket("a"))
        self.addCleanup(s.close)
        head = b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 40 + b"\r\n\r\n"
        t0 = time.monotonic()
        answer = None
        for i in range(len(head)):
            try:
                s.sendall(head[i:i + 1])
            except (BrokenPipeError, ConnectionResetError):
                answer = b""
                break
            r, _, _ = select.select([s], [], [], 0.5)
            if r:
                answer = read_all(s)
                break
        took = time.monotonic() - t0
        self.assertIsNotNone(answer, "the daemon kept a 1-byte-per-0.5s head for %.1fs" % took)
        print(f"slowloris connection closed after {took:.1f}s")
        self.assertLess(took, 8.0)
        if answer:
            self.assertIn(b" 408 ", answer.split(b"\r\n")[0])
            self.assertEqual(json.loads(answer.split(b"\r\n\r\n", 1)[1])["errorCode"], "ERR_REQUEST_TIMEOUT")
        self.assertGreaterEqual(self.status(d)["http"]["headerTimeouts"], 1)

    def assert_refused(self, s):
        data = read_all(s)
        self.assertTrue(data.startswith(b"HTTP/1.1 503 "), data)
        self.assertEqual(json.loads(data.split(b"\r\n\r\n", 1)[1])["errorCode"], "ERR_TOO_MANY_CONNECTIONS")

    def test_per_listener_limit(self):
        d = self.daemon(apps=APPS, conf="[Daemon]\nMaxConnectionsPerListener=5\n")
        self.wait_quiet(d)
        held = [unix(d.app_socket("a")) for _ in range(5)]
        self.addCleanup(lambda: [s.close() for s in held])
        for s in held:
            self.assertEqual(get_healthz(s), 204)
        extra = unix(d.app_socket("a"))
        self.addCleanup(extra.close)
        self.assert_refused(extra)
        # another app's listener has its own count
        other = unix(d.app_socket("b"))
        self.addCleanup(other.close)
        self.assertEqual(get_healthz(other), 204)
        st = self.status(d)["http"]
        self.assertGreaterEqual(st["refusedListener"], 1)
        wait_for(lambda: "MaxConnectionsPerListener=" in d.log(), what="the refusal in the log")
        # a closed connection frees its place
        held.pop().close()
        wait_for(lambda: self.status(d)["http"].get("connections", 99) <= 6, what="the close to be noticed")
        again = unix(d.app_socket("a"))
        self.addCleanup(again.close)
        self.assertEqual(get_healthz(again), 204)

    def test_per_user_limit(self):
        d = self.daemon(apps=APPS, conf="[Daemon]\nMaxConnectionsPerUser=5\n")
        self.wait_quiet(d)
        held = [unix(d.app_socket("a")) for _ in range(3)] + [unix(d.app_socket("b")) for _ in range(2)]
        self.addCleanup(lambda: [s.close() for s in held])
        for s in held:
            self.assertEqual(get_healthz(s), 204)
        for path in (d.api, d.app_socket("b")):
            extra = unix(path)
            self.addCleanup(extra.close)
            self.assert_refused(extra)
        wait_for(lambda: "MaxConnectionsPerUser=" in d.log(), what="the refusal in the log")
        for s in held:
            s.close()
        held.clear()
        wait_for(lambda: self.status(d)["http"].get("refusedUser", 0) >= 2, what="the refusals counted")


if __name__ == "__main__":
    main()
