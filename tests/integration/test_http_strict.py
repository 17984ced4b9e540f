#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""HTTP/1.1 framing, strictly (RFC 9112), over raw sockets.

Every request whose framing is ambiguous (the classic request-smuggling
shapes) is answered 400 in Dapr's JSON error shape and the connection is
closed; the server's own 413/414/431/505 are JSON too. Keep-alive serves
several requests on one connection; pipelined requests are answered in
order; chunked bodies, Expect: 100-continue and HTTP/1.0 work.
"""

import json
import socket

from harness import TIMEOUT, DaemonTestCase, main


def read_response(sock, head_only=False):
    """Reads one response: (status, {header: value}, body). Body by Content-Length or chunked."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a full response head: {buf!r}")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    version, status = lines[0].split(" ", 2)[:2]
    assert version == "HTTP/1.1", lines[0]
    headers = {}
    for line in lines[1:]:
        k, v = line.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    status = int(status)
    if head_only or status in (204, 304) or 100 <= status < 200:
        return status, headers, b"", rest
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += sock.recv(65536)
            size_line, rest = rest.split(b"\r\n", 1)
            size = int(size_line, 16)
            while len(rest) < size + 2:
                rest += sock.recv(65536)
            body += rest[:size]
            rest = rest[size + 2:]
            if size == 0:
                return status, headers, body, rest
    n = int(headers["content-length"])
    while len(rest) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("connection closed inside a body")
        rest += chunk
    return status, headers, rest[:n], rest[n:]


def closed(sock, leftover=b""):
    """True if the server closed the connection (EOF) after what was read."""
    if leftover:
        return False
    sock.settimeout(TIMEOUT)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


class StrictTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.d = self.daemon(apps={"a": "[App]\nAppAddress=unix:/nonexistent/a.sock\n"},
                             conf="[Daemon]\nMaxRequestBodySize=1K\n")
        self.sock_path = self.d.app_socket("a")

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(TIMEOUT)
        s.connect(self.sock_path)
        self.addCleanup(s.close)
        return s

    def exchange(self, raw):
        s = self.connect()
        s.sendall(raw)
        status, headers, body, rest = read_response(s)
        return s, status, headers, body, rest

    def assert_rejected(self, raw, status=400, code="ERR_MALFORMED_REQUEST"):
        s, st, headers, body, rest = self.exchange(raw)
        self.assertEqual(st, status, (raw, body))
        self.assertEqual(headers.get("content-type"), "application/json", raw)
        self.assertEqual(headers.get("connection"), "close", raw)
        err = json.loads(body)
        self.assertEqual(err["errorCode"], code, raw)
        self.assertTrue(err["message"], raw)
        self.assertTrue(closed(s, rest), f"connection left open after {raw!r}")

    # -- ambiguous framing: 400 and close --

    def test_content_length_and_transfer_encoding(self):
        self.assert_rejected(b"POST /v1.0/metadata/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        self.assert_rejected(b"POST /v1.0/metadata/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                             b"Content-Length: 5\r\n\r\n0\r\n\r\n")

    def test_conflicting_content_lengths(self):
        self.assert_rejected(b"PUT /v1.0/metadata/x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                             b"Content-Length: 3\r\n\r\nabc")
        self.assert_rejected(b"PUT /v1.0/metadata/x HTTP/1.1\r\nHost: x\r\nContent-Length: 2, 3\r\n\r\nabc")

    def test_whitespace_before_colon(self):
        self.assert_rejected(b"PUT /v1.0/metadata/x HTTP/1.1\r\nHost: x\r\nContent-Length : 2\r\n\r\nab")
        self.assert_rejected(b"GET /v1.0/healthz HTTP/1.1\r\nHost\t: x\r\n\r\n")

    def test_bare_cr(self):
        self.assert_rejected(b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\nX-A: a\rContent-Length: 3\r\n\r\nabc")

    def test_obs_fold(self):
        self.assert_rejected(b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\nX-A: one\r\n two\r\n\r\n")
        self.assert_rejected(b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\nX-A:\r\n\ttwo\r\n\r\n")

    def test_transfer_codings(self):
        for te in (b"gzip", b"gzip, chunked", b"chunked, gzip", b"identity", b"chunkedx"):
            self.assert_rejected(b"POST /v1.0/metadata/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + te +
                                 b"\r\n\r\n0\r\n\r\n")
        self.assert_rejected(b"POST /v1.0/metadata/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")

    def test_host(self):
        self.assert_rejected(b"GET /v1.0/healthz HTTP/1.1\r\n\r\n")
        self.assert_rejected(b"GET /v1.0/healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        # HTTP/1.0 needs none
        s, st, headers, body, rest = self.exchange(b"GET /v1.0/healthz HTTP/1.0\r\n\r\n")
        self.assertEqual(st, 204)
        self.assertTrue(closed(s, rest))

    def test_bad_request_line(self):
        for raw in (b"GET\r\n\r\n", b"GET /v1.0/healthz\r\n\r\n", b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n", b"GET / XTTP/1.1\r\nHost: x\r\n\r\n",
                    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"):
            s = self.connect()
            s.sendall(raw)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            status = int(head.split(b" ")[1])
            self.assertIn(status, (400, 505), raw)
            self.assertEqual(json.loads(body)["errorCode"], "ERR_MALFORMED_REQUEST", raw)

    # -- the server's own statuses are JSON --

    def test_version_505(self):
        self.assert_rejected(b"GET /v1.0/healthz HTTP/2.0\r\nHost: x\r\n\r\n", status=505)
        self.assert_rejected(b"GET /v1.0/healthz HTTP/1.2\r\nHost: x\r\n\r\n", status=505)

    def test_uri_too_long_414(self):
        self.assert_rejected(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", status=414)

    def test_header_block_too_large_431(self):
        self.assert_rejected(b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\n" +
                             b"".join(b"X-%d: %s\r\n" % (i, b"v" * 1000) for i in range(70)) + b"\r\n",
                             status=431)
        self.assert_rejected(b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\n" +
                             b"".join(b"X-%d: v\r\n" % i for i in range(200)) + b"\r\n", status=431)

    def test_body_too_large_413(self):
        # announced: answered before the body is sent
        self.assert_rejected(b"PUT /v1.0/metadata/x HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n",
                             status=413, code="ERR_BODY_TOO_LARGE")
        # chunked: found while reading
        self.assert_rejected(b"PUT /v1.0/metadata/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
                             b"400\r\n" + b"a" * 1024 + b"\r\n400\r\n" + b"a" * 1024 + b"\r\n0\r\n\r\n",
                             status=413, code="ERR_BODY_TOO_LARGE")

    # -- what must keep working --

    def test_keep_alive_serves_several(self):
        s = self.connect()
        rest = b""
        for i in range(5):
            s.sendall(b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            st, headers, body, rest = read_response(s)
            self.assertEqual(st, 204)
            self.assertNotIn("connection", headers)
        s.sendall(b"PUT /v1.0/metadata/k HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        self.assertEqual(read_response(s)[0], 204)
        s.sendall(b"GET /v1.0/metadata HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        st, headers, body, rest = read_response(s)
        self.assertEqual(st, 200)
        self.assertEqual(json.loads(body)["extended"]["k"], "abc")
        self.assertEqual(headers.get("connection"), "close")
        self.assertTrue(closed(s, rest))

    def test_pipelined_in_order(self):
        s = self.connect()
        reqs = b""
        for i in range(10):
            reqs += b"PUT /v1.0/metadata/p%d HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nv%d" % (i, i)
            reqs += b"GET /v1.0/metadata HTTP/1.1\r\nHost: x\r\n\r\n"
        s.sendall(reqs)
        rest = b""
        for i in range(10):
            # read_response works on fresh reads: feed leftovers back through a tiny buffer socket
            st, _, _, rest = read_response(BufferedSock(s, rest))
            self.assertEqual(st, 204)
            st, _, body, rest = read_response(BufferedSock(s, rest))
            self.assertEqual(st, 200)
            ext = json.loads(body)["extended"]
            self.assertEqual(ext.get(f"p{i}"), f"v{i}")
            self.assertNotIn(f"p{i + 1}", ext)  # answered before the next one ran

    def test_chunked_body_and_expect_continue(self):
        s = self.connect()
        s.sendall(b"PUT /v1.0/metadata/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n")
        self.assertEqual(read_response(s)[0], 204)
        s.sendall(b"PUT /v1.0/metadata/e HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        st, _, _, rest = read_response(s)
        self.assertEqual(st, 100)
        self.assertEqual(rest, b"")
        s.sendall(b"wxyz")
        self.assertEqual(read_response(s)[0], 204)
        s.sendall(b"GET /v1.0/metadata HTTP/1.1\r\nHost: x\r\n\r\n")
        ext = json.loads(read_response(s)[2])["extended"]
        self.assertEqual(ext["c"], "abcde")
        self.assertEqual(ext["e"], "wxyz")

    def test_head_and_http10_keep_alive(self):
        s = self.connect()
        s.sendall(b"HEAD /v1.0/nothing HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        st, headers, body, rest = read_response(s, head_only=True)
        self.assertEqual(st, 404)
        self.assertEqual(headers.get("connection"), "keep-alive")
        self.assertGreater(int(headers["content-length"]), 0)
        self.assertEqual(rest, b"")  # no body after a HEAD answer
        s.sendall(b"GET /v1.0/healthz HTTP/1.0\r\n\r\n")
        st, headers, body, rest = read_response(s)
        self.assertEqual(st, 204)
        self.assertTrue(closed(s, rest))


class BufferedSock:
    """A socket whose first recv() returns what was already read past the previous response."""

    def __init__(self, sock, pending):
        self.sock = sock
        self.pending = pending

    def recv(self, n):
        if self.pending:
            data, self.pending = self.pending, b""
            return data
        return self.sock.recv(n)


if __name__ == "__main__":
    main()
