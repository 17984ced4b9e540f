#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Trace export end to end: a receiver written for the test decodes what
mooringd sends as OTLP/HTTP protobuf (otel.protocol: http; the wire format is
decoded here by hand, field numbers from opentelemetry-proto) and as Zipkin v2 JSON,
for an invocation chain A -> B -> C through the daemon (B calls C while it
handles A's call, passing the traceparent it got). Checked: one trace, each
span's parent, the span whose id the callee saw in its traceparent, span
names from route templates, the sampling rate (0 exports nothing unless the
caller's traceparent is sampled), the drop counter while the receiver is
down, that a graceful stop sends what is still queued, and that health checks
make no span (daprd's tracing middleware skips paths containing "/healthz").
"""

import http.server
import json
import os
import re
import signal
import socket
import socketserver
import tempfile
import threading

from echoapp import EchoApp, Reply, echo
from harness import TIMEOUT, DaemonTestCase, free_port, main, request, wait_for

TP_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def pb_fields(buf):
    """The fields of one protobuf message as (number, value): varints and fixed64 as int,
    length-delimited as bytes. Anything malformed raises."""
    out, i = [], 0

    def varint(i):
        v = shift = 0
        while True:
            b = buf[i]
            i += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return v, i
            assert shift < 64, "varint too long"
    while i < len(buf):
        key, i = varint(i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = varint(i)
        elif wire == 1:
            assert i + 8 <= len(buf)
            v, i = int.from_bytes(buf[i:i + 8], "little"), i + 8
        elif wire == 2:
            n, i = varint(i)
            assert i + n <= len(buf), "length past the end"
            v, i = bytes(buf[i:i + n]), i + n
        elif wire == 5:
            assert i + 4 <= len(buf)
            v, i = int.from_bytes(buf[i:i + 4], "little"), i + 4
        else:
            raise AssertionError(f"wire type {wire}")
        assert field > 0
        out.append((field, v))
    return out


def pb_get(fields, number, default=None):
    vals = [v for f, v in fields if f == number]
    assert len(vals) <= 1, f"field {number} repeated"
    return vals[0] if vals else default


def otlp_decode(body):
    """ExportTraceServiceRequest (opentelemetry-proto collector/trace/v1) into span dicts."""
    out = []
    for f, rs in pb_fields(body):
        assert f == 1  # resource_spans
        rs = pb_fields(rs)
        service = None
        for kv in (pb_fields(a) for f2, a in pb_fields(pb_get(rs, 1)) if f2 == 1):  # resource.attributes
            if pb_get(kv, 1) == b"service.name":
                service = pb_get(pb_fields(pb_get(kv, 2)), 1).decode()  # AnyValue.string_value
        for f2, ss in rs:
            if f2 != 2:  # scope_spans
                continue
            ss = pb_fields(ss)
            assert pb_get(pb_fields(pb_get(ss, 1)), 1) == b"mooringd"  # scope.name
            for f3, sp in ss:
                if f3 != 2:
                    continue
                sp = pb_fields(sp)
                tid, sid, parent = pb_get(sp, 1), pb_get(sp, 2), pb_get(sp, 4)
                assert len(tid) == 16 and len(sid) == 8 and (parent is None or len(parent) == 8)
                start, end = pb_get(sp, 7), pb_get(sp, 8)
                assert end >= start > 0
                attrs = {pb_get(kv, 1).decode(): pb_fields(pb_get(kv, 2))
                         for kv in (pb_fields(a) for f4, a in sp if f4 == 9)}
                status = pb_get(pb_fields(pb_get(sp, 15)), 3)
                assert status in (1, 2)
                code = pb_get(attrs["http.status_code"], 3) if "http.status_code" in attrs else None
                out.append({"trace": tid.hex(), "id": sid.hex(), "parent": parent.hex() if parent else None,
                            "name": pb_get(sp, 5).decode(), "kind": {2: "SERVER", 3: "CLIENT"}.get(pb_get(sp, 6)),
                            "service": service, "status": code, "error": status == 2})
    return out


class Receiver:
    """Collects spans POSTed as OTLP/HTTP JSON or Zipkin v2 JSON, normalized to dicts."""

    def __init__(self, port=None, keep_alive=False):
        self.spans, self.posts, self.headers, self.lock = [], [], [], threading.Lock()
        self.peers = []  # the client's (address, port) of each POST: one port for a kept-alive connection
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1" if keep_alive else "HTTP/1.0"

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.posts.append((self.path, self.headers.get("Content-Type")))
                    receiver.headers.append(dict(self.headers.items()))
                    receiver.peers.append(self.client_address)
                    receiver.spans += receiver.decode(self.path, body)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *a):
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", port or free_port()), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @staticmethod
    def decode(path, body):
        if path == "/v1/traces":  # OTLP/HTTP protobuf
            return otlp_decode(body)
        out = []  # Zipkin v2 JSON
        for s in json.loads(body):
            assert s["duration"] >= 0 and s["timestamp"] > 0
            out.append({"trace": s["traceId"], "id": s["id"], "parent": s.get("parentId"), "name": s["name"],
                        "kind": s.get("kind"), "service": s["localEndpoint"]["serviceName"]})
        return out

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def snapshot(self):
        with self.lock:
            return list(self.spans)


def config_yaml(rate, otel=None, zipkin=None, headers=None):
    t = f"apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: tracing\nspec:\n  tracing:\n" \
        f"    samplingRate: \"{rate}\"\n"
    if otel:
        t += f"    otel:\n      endpointAddress: \"{otel}\"\n      isSecure: false\n      protocol: http\n"
        if headers:
            t += f"      headers: \"{headers}\"\n"
    if zipkin:
        t += f"    zipkin:\n      endpointAddress: \"{zipkin}\"\n"
    return t


class TracingTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="mooring-trace-")

    def chain_daemon(self, cfg):
        """Apps a (the test), b (calls c while handling a call) and c (echo)."""
        c = EchoApp(unix_path=os.path.join(self.tmp, "c.sock"))
        self.addCleanup(c.stop)
        c.start()
        holder = {}

        def b_handler(req):
            if not req.target.startswith("/chain"):
                return echo(req)
            tp = req.header("traceparent")
            r = request(holder["d"].app_socket("b"), "POST", "/v1.0/invoke/c/method/leaf", body=b"x",
                        headers={"traceparent": tp})
            return Reply(r.status, [("X-Seen-Traceparent", tp)], r.body)

        b = EchoApp(unix_path=os.path.join(self.tmp, "b.sock"), handler=b_handler)
        self.addCleanup(b.stop)
        b.start()
        d = self.daemon(apps={"a": "[App]\n", "b": f"[App]\nAppAddress={b.address}\n",
                              "c": f"[App]\nAppAddress={c.address}\n"}, start=False)
        with open(os.path.join(d.config, "config.yaml"), "w") as f:
            f.write(cfg)
        d.start()
        holder["d"] = d
        return d, b, c

    def check_chain(self, fmt):
        rx = Receiver()
        self.addCleanup(rx.stop)
        endpoint = {"otel": f"127.0.0.1:{rx.port}", "headers": "authorization=Bearer t0ken,x-tenant=blue"} \
            if fmt == "otel" else \
            {"zipkin": f"http://127.0.0.1:{rx.port}/api/v2/spans"}
        d, b, c = self.chain_daemon(config_yaml(1, **endpoint))
        r = request(d.app_socket("a"), "POST", "/v1.0/invoke/b/method/chain", body=b"hi")
        self.assertEqual(r.status, 200, r.body)
        seen_by_c = c.calls("/leaf")[0].header("traceparent")
        seen_by_b = b.calls("/chain")[0].header("traceparent")

        def spans():
            s = rx.snapshot()
            return s if len([x for x in s if x["name"].startswith(("/v1.0/invoke", "CallLocal"))]) >= 4 else None
        got = wait_for(spans, what="the chain's spans at the receiver")
        self.assertEqual(rx.posts[0], ("/v1/traces", "application/x-protobuf") if fmt == "otel" else
                         ("/api/v2/spans", "application/json"))
        if fmt == "otel":  # otel.headers, daprd's "k=v,k=v"
            self.assertEqual((rx.headers[0].get("authorization"), rx.headers[0].get("x-tenant")),
                             ("Bearer t0ken", "blue"))
        chain = [x for x in got if x["name"].startswith(("/v1.0/invoke", "CallLocal"))]
        by = {(x["service"], x["kind"]): x for x in chain}
        sa, ca = by[("a", "SERVER")], by[("a", "CLIENT")]
        sb, cb = by[("b", "SERVER")], by[("b", "CLIENT")]
        self.assertEqual(len({x["trace"] for x in chain}), 1, chain)
        self.assertEqual(sa["name"], "/v1.0/invoke/{id}/method/{method*}")
        self.assertEqual(ca["name"], "CallLocal/b/chain")
        self.assertEqual(cb["name"], "CallLocal/c/leaf")
        self.assertIsNone(sa["parent"])            # a sent no traceparent: a new trace
        self.assertEqual(ca["parent"], sa["id"])
        self.assertEqual(sb["parent"], ca["id"])   # b's inbound call is a child of a's call into b
        self.assertEqual(cb["parent"], sb["id"])
        # what each callee saw is the CLIENT span of the call into it
        self.assertEqual(TP_RE.match(seen_by_b).group(2), ca["id"])
        self.assertEqual(TP_RE.match(seen_by_c).group(2), cb["id"])
        self.assertEqual(TP_RE.match(seen_by_c).group(1), sa["trace"])
        if fmt == "otel":  # the answer's status rides along as an int attribute
            self.assertEqual((sa["status"], sa["error"], ca["status"]), (200, False, 200))
        return d, rx

    def test_otlp_http_chain_parentage(self):
        d, rx = self.check_chain("otel")
        # component operations are children of the API call that asked for them
        parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        sock = d.app_socket("a")
        r = request(sock, "POST", "/v1.0/state/statestore", body=b'[{"key":"k","value":1}]',
                    headers={"traceparent": parent})
        self.assertEqual(r.status, 204, r.body)
        r = request(sock, "POST", "/v1.0/publish/pubsub/orders", body=b"{}", headers={"traceparent": parent})
        self.assertEqual(r.status, 204, r.body)

        def named(n):
            return [x for x in rx.snapshot() if x["name"] == n]
        wait_for(lambda: named("state/statestore/set") and named("pubsub/pubsub/publish"),
                 what="the component operations' spans")
        for api, op in (("/v1.0/state/{store}", "state/statestore/set"),
                        ("/v1.0/publish/{pubsub}/{topic*}", "pubsub/pubsub/publish")):
            server, child = named(api)[0], named(op)[0]
            self.assertEqual(server["parent"], "b7ad6b7169203331")
            self.assertEqual(server["trace"], "0af7651916cd43dd8448eb211c80319c")
            self.assertEqual(child["parent"], server["id"])
            self.assertEqual(child["service"], "a")

    def test_zipkin_chain_parentage_and_flush_on_stop(self):
        d, rx = self.check_chain("zipkin")
        # spans still queued when SIGTERM comes are sent before the daemon exits; health checks make none
        before = len(rx.snapshot())
        for _ in range(5):
            self.assertEqual(request(d.app_socket("a"), "GET", "/v1.0/metadata").status, 200)
            self.assertEqual(request(d.app_socket("a"), "GET", "/v1.0/healthz").status, 204)
            self.assertEqual(request(d.app_socket("a"), "GET", "/v1.0/healthz/outbound").status, 204)
            # a Prometheus scrape makes no span either: daprd serves metrics from an untraced server
            self.assertEqual(d.get("/metrics").status, 200)
        d.signal(signal.SIGTERM)
        d.proc.wait(TIMEOUT)
        after = rx.snapshot()[before:]
        self.assertEqual(len([x for x in after if x["name"] == "/v1.0/metadata" and x["service"] == "a"]), 5)
        self.assertEqual([x for x in after if "healthz" in x["name"]], [])
        self.assertEqual([x for x in after if x["name"] == "/metrics"], [])

    def test_tracestate_travels_with_the_callers_traceparent(self):
        # With an exporter the front-end's span is the call's parent; the caller's tracestate still goes
        # to the callee with a traceparent of the caller's trace, and never without one (W3C).
        rx = Receiver()
        self.addCleanup(rx.stop)
        d, b, c = self.chain_daemon(config_yaml(1, otel=f"127.0.0.1:{rx.port}"))
        sock = d.app_socket("a")
        parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        state = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
        r = request(sock, "POST", "/v1.0/invoke/c/method/t/1", body=b"x",
                    headers={"traceparent": parent, "tracestate": state})
        self.assertEqual(r.status, 200, r.body)
        r = request(sock, "POST", "/v1.0/invoke/c/method/t/2", body=b"x", headers={"tracestate": state})
        self.assertEqual(r.status, 200, r.body)
        first, second = c.calls("/t/1")[0], c.calls("/t/2")[0]
        self.assertEqual(first.header_all("tracestate"), [state])
        self.assertEqual(TP_RE.match(first.header("traceparent")).group(1), "4bf92f3577b34da6a3ce929d0e0e4736")
        self.assertNotEqual(TP_RE.match(first.header("traceparent")).group(2), "00f067aa0ba902b7")
        self.assertEqual(second.header_all("tracestate"), [])
        self.assertNotEqual(TP_RE.match(second.header("traceparent")).group(1), "4bf92f3577b34da6a3ce929d0e0e4736")

    def test_sampling_rate(self):
        rx = Receiver()
        self.addCleanup(rx.stop)
        d, b, c = self.chain_daemon(config_yaml(0, otel=f"http://127.0.0.1:{rx.port}"))
        sock = d.app_socket("a")
        for _ in range(20):
            self.assertEqual(request(sock, "GET", "/v1.0/metadata").status, 200)
        # a caller's sampled traceparent is followed whatever the rate
        parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        self.assertEqual(request(sock, "GET", "/v1.0/metadata", headers={"traceparent": parent}).status, 200)
        got = wait_for(lambda: rx.snapshot(), what="the sampled span")
        d.stop()
        got = rx.snapshot()
        self.assertEqual([(x["trace"], x["parent"]) for x in got],
                         [("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")])

    def test_drop_counter_while_the_receiver_is_down(self):
        port = free_port()  # nothing listens there yet
        d, b, c = self.chain_daemon(config_yaml(1, otel=f"127.0.0.1:{port}"))
        conn_sock = d.app_socket("a")
        from harness import UnixHTTPConnection
        conn = UnixHTTPConnection(conn_sock)
        # more than the queue (4096) and a batch out waiting for its retry (1024) hold
        for _ in range(6000):
            conn.request("GET", "/v1.0/metadata")
            resp = conn.getresponse()
            resp.read()
            self.assertEqual(resp.status, 200)
        conn.close()

        def counter(name):
            m = re.search(rf"^{name} (\d+)$", d.get("/metrics").body.decode(), re.M)
            return int(m.group(1))
        dropped = counter("mooring_trace_spans_dropped_total")
        self.assertGreater(dropped, 0)
        self.assertEqual(counter("mooring_trace_spans_exported_total"), 0)
        self.assertLessEqual(counter("mooring_trace_queue_spans"), 4096)
        # the receiver comes up: the waiting spans go out
        rx = Receiver(port)
        self.addCleanup(rx.stop)
        wait_for(lambda: counter("mooring_trace_spans_exported_total") > 0, timeout=60,
                 what="spans exported once the receiver is up")

    def test_reload_moves_the_export_to_the_new_collector(self):
        # a new endpoint on reload: the exporter's thread is stopped and a new one started
        rx1, rx2 = Receiver(), Receiver()
        self.addCleanup(rx1.stop)
        self.addCleanup(rx2.stop)
        d, b, c = self.chain_daemon(config_yaml(1, zipkin=f"http://127.0.0.1:{rx1.port}/api/v2/spans"))
        sock = d.app_socket("a")
        self.assertEqual(request(sock, "GET", "/v1.0/metadata").status, 200)
        wait_for(lambda: rx1.snapshot(), what="the first span at the first collector")
        with open(os.path.join(d.config, "config.yaml"), "w") as f:
            f.write(config_yaml(1, otel=f"127.0.0.1:{rx2.port}"))
        n = len(d.notify.messages)
        d.signal(signal.SIGHUP)
        i = d.notify.wait("RELOADING=1", after=n)
        d.notify.wait("READY=1", after=i)
        self.assertEqual(request(sock, "GET", "/v1.0/metadata").status, 200)
        got = wait_for(lambda: rx2.snapshot(), what="the span at the new collector")
        self.assertEqual([x["name"] for x in got], ["/v1.0/metadata"])
        self.assertEqual(rx2.posts[0], ("/v1/traces", "application/x-protobuf"))
        self.assertEqual([x["name"] for x in rx1.snapshot()], ["/v1.0/metadata"])
        d.stop()

    def test_kept_alive_connection_and_libcurl(self):
        # an HTTP/1.1 collector: the exporter's own client sends every batch on one connection
        rx = Receiver(keep_alive=True)
        self.addCleanup(rx.stop)
        d, b, c = self.chain_daemon(config_yaml(1, otel=f"http://127.0.0.1:{rx.port}"))
        sock = d.app_socket("a")
        for i in range(3):
            self.assertEqual(request(sock, "GET", "/v1.0/metadata").status, 200)
            wait_for(lambda: len(rx.snapshot()) > i, what=f"span {i + 1} at the collector")
        self.assertEqual(len(rx.posts), 3)
        self.assertEqual(len(set(rx.peers)), 1, rx.peers)
        # a URL that client does not take (user info) goes through libcurl, on the same kind of thread
        rx2 = Receiver()
        self.addCleanup(rx2.stop)
        with open(os.path.join(d.config, "config.yaml"), "w") as f:
            f.write(config_yaml(1, zipkin=f"http://trace@127.0.0.1:{rx2.port}/api/v2/spans"))
        n = len(d.notify.messages)
        d.signal(signal.SIGHUP)
        d.notify.wait("READY=1", after=d.notify.wait("RELOADING=1", after=n))
        self.assertEqual(request(sock, "GET", "/v1.0/metadata").status, 200)
        got = wait_for(lambda: rx2.snapshot(), what="the span sent through libcurl")
        self.assertEqual([x["name"] for x in got], ["/v1.0/metadata"])
        self.assertTrue(rx2.headers[0].get("Authorization", "").startswith("Basic "), rx2.headers[0])
        d.stop()

    def test_graceful_stop_while_the_collector_hangs(self):
        # a collector that takes the request and never answers: a graceful stop waits for the flush's
        # deadline (2 s), not for otel.timeout (an hour here)
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(4)
        self.addCleanup(lsock.close)
        conns = []

        def accept():
            try:
                while True:
                    conns.append(lsock.accept()[0])  # kept open, never read nor answered
            except OSError:
                pass
        threading.Thread(target=accept, daemon=True).start()
        cfg = config_yaml(1, otel=f"127.0.0.1:{lsock.getsockname()[1]}") + "      timeout: \"3600000\"\n"
        d, b, c = self.chain_daemon(cfg)
        self.assertEqual(request(d.app_socket("a"), "GET", "/v1.0/metadata").status, 200)
        wait_for(lambda: conns, what="the exporter's connection to the collector")
        self.assertEqual(request(d.app_socket("a"), "GET", "/v1.0/metadata").status, 200)  # one still queued
        d.signal(signal.SIGTERM)
        d.proc.wait(TIMEOUT)
        for s in conns:
            s.close()


if __name__ == "__main__":
    main()
