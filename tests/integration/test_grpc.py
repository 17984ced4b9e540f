#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The gRPC API (daemon/grpc/): Dapr's runtime service over HTTP/2 on each app's
grpc.sock and GrpcPort=, called with an independent implementation (Debian's
python3-grpcio, messages generated from proto/ by protoc at test time)."""

import json
import os
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import grpc_support as g  # first: may re-execute under Debian's python
from grpc_support import call, dapr, common, grpc
from echoapp import EchoApp
from grpc_support import appcallback
from harness import MOORINGCTL, DaemonTestCase, free_port, main, request, wait_for

APP = "[App]\n"


def grpc_sock(d, app):
    return d.app_socket(app).replace("http.sock", "grpc.sock")


class GrpcStateTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.d = self.daemon(apps={"a": APP, "b": APP})
        self.ch = g.channel(grpc_sock(self.d, "a"))
        self.addCleanup(self.ch.close)

    def save(self, *items, store="statestore"):
        return call(self.ch, "SaveState", dapr.SaveStateRequest(store_name=store, states=list(items)))

    def get(self, key, store="statestore", ch=None):
        return call(ch or self.ch, "GetState", dapr.GetStateRequest(store_name=store, key=key), dapr.GetStateResponse)

    def test_save_get_delete_and_http_sees_the_same_bytes(self):
        self.save(common.StateItem(key="k1", value=b'{"n":1}'), common.StateItem(key="k2", value=b"\x00\xffbin"))
        r = self.get("k1")
        self.assertEqual(r.data, b'{"n":1}')
        self.assertTrue(r.etag)
        self.assertEqual(self.get("k2").data, b"\x00\xffbin")
        # the HTTP route reads what gRPC saved, for the same app
        h = request(self.d.app_socket("a"), "GET", "/v1.0/state/statestore/k1")
        self.assertEqual((h.status, h.body), (200, b'{"n":1}'))
        # another app does not see a's keys
        chb = g.channel(grpc_sock(self.d, "b"))
        self.addCleanup(chb.close)
        self.assertEqual(self.get("k1", ch=chb).data, b"")
        call(self.ch, "DeleteState", dapr.DeleteStateRequest(store_name="statestore", key="k1"))
        r = self.get("k1")
        self.assertEqual((r.data, r.etag), (b"", ""))

    def test_etag_mismatch_is_aborted(self):
        self.save(common.StateItem(key="e", value=b"1"))
        etag = self.get("e").etag
        self.save(common.StateItem(key="e", value=b"2", etag=common.Etag(value=etag)))
        with self.assertRaises(grpc.RpcError) as cm:
            self.save(common.StateItem(key="e", value=b"3", etag=common.Etag(value=etag)))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.ABORTED)
        self.assertEqual(g.error_info(cm.exception), "ERR_STATE_SAVE")
        self.assertEqual(self.get("e").data, b"2")
        with self.assertRaises(grpc.RpcError) as cm:
            call(self.ch, "DeleteState", dapr.DeleteStateRequest(store_name="statestore", key="e",
                                                               etag=common.Etag(value=etag)))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.ABORTED)
        self.assertEqual(self.get("e").data, b"2")

    def test_unknown_store_and_bad_key(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.get("k", store="nope")
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(g.error_info(cm.exception), "ERR_STATE_STORE_NOT_FOUND")
        self.assertIn("nope", cm.exception.details())
        with self.assertRaises(grpc.RpcError) as cm:
            call(self.ch, "GetBulkState", dapr.GetBulkStateRequest(store_name="nope", keys=["k"]),
                 dapr.GetBulkStateResponse)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        with self.assertRaises(grpc.RpcError) as cm:
            self.save(common.StateItem(key="a||b", value=b"1"))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        with self.assertRaises(grpc.RpcError) as cm:
            self.save(common.StateItem(key="", value=b"1"))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

    def test_bulk_get_delete_and_transaction(self):
        self.save(*[common.StateItem(key=f"b{i}", value=str(i).encode()) for i in range(5)])
        r = call(self.ch, "GetBulkState", dapr.GetBulkStateRequest(store_name="statestore",
                                                                   keys=["b0", "b3", "missing"]),
                 dapr.GetBulkStateResponse)
        self.assertEqual([(i.key, i.data) for i in r.items], [("b0", b"0"), ("b3", b"3"), ("missing", b"")])
        self.assertTrue(r.items[0].etag)
        call(self.ch, "DeleteBulkState", dapr.DeleteBulkStateRequest(
            store_name="statestore", states=[common.StateItem(key="b0"), common.StateItem(key="b1")]))
        self.assertEqual(self.get("b1").data, b"")
        self.assertEqual(self.get("b2").data, b"2")
        ops = [dapr.TransactionalStateOperation(operationType="upsert",
                                                request=common.StateItem(key="t1", value=b"x")),
               dapr.TransactionalStateOperation(operationType="delete", request=common.StateItem(key="b2"))]
        call(self.ch, "ExecuteStateTransaction", dapr.ExecuteStateTransactionRequest(storeName="statestore",
                                                                                     operations=ops))
        self.assertEqual((self.get("t1").data, self.get("b2").data), (b"x", b""))
        # an unknown operation changes nothing
        bad = [dapr.TransactionalStateOperation(operationType="upsert", request=common.StateItem(key="t2",
                                                                                                  value=b"y")),
               dapr.TransactionalStateOperation(operationType="frobnicate", request=common.StateItem(key="t1"))]
        with self.assertRaises(grpc.RpcError) as cm:
            call(self.ch, "ExecuteStateTransaction", dapr.ExecuteStateTransactionRequest(storeName="statestore",
                                                                                         operations=bad))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        self.assertEqual(self.get("t2").data, b"")
        # a stale etag in a transaction aborts all of it
        etag = self.get("t1").etag
        self.save(common.StateItem(key="t1", value=b"x2"))
        stale = [dapr.TransactionalStateOperation(operationType="upsert",
                                                  request=common.StateItem(key="t3", value=b"z")),
                 dapr.TransactionalStateOperation(operationType="upsert", request=common.StateItem(
                     key="t1", value=b"x3", etag=common.Etag(value=etag)))]
        with self.assertRaises(grpc.RpcError) as cm:
            call(self.ch, "ExecuteStateTransaction", dapr.ExecuteStateTransactionRequest(storeName="statestore",
                                                                                         operations=stale))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.ABORTED)
        self.assertEqual((self.get("t3").data, self.get("t1").data), (b"", b"x2"))


class GrpcTransportTest(DaemonTestCase):
    def test_unimplemented_and_metadata(self):
        d = self.daemon(apps={"a": APP})
        ch = g.channel(grpc_sock(d, "a"))
        self.addCleanup(ch.close)
        with self.assertRaises(grpc.RpcError) as cm:
            call(ch, "EncryptAlpha1", dapr.GetMetadataRequest())
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        with self.assertRaises(grpc.RpcError) as cm:
            call(ch, "/some.other.Service/Method", dapr.GetMetadataRequest())
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        call(ch, "SetMetadata", dapr.SetMetadataRequest(key="color", value="blue"))
        m = call(ch, "GetMetadata", dapr.GetMetadataRequest(), dapr.GetMetadataResponse)
        self.assertEqual(m.id, "a")
        self.assertEqual(m.extended_metadata["color"], "blue")
        self.assertIn("statestore", [c.name for c in m.registered_components])
        # the HTTP metadata sees what gRPC set
        self.assertEqual(d.get("/v1.0/metadata", target=d.app_socket("a")).json()["extended"]["color"], "blue")
        with self.assertRaises(grpc.RpcError) as cm:
            call(ch, "SetMetadata", dapr.SetMetadataRequest(key="", value="x"))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        # Shutdown is acknowledged; the daemon serves on (it is every app's)
        call(ch, "Shutdown", dapr.ShutdownRequest())
        self.assertEqual(call(ch, "GetMetadata", dapr.GetMetadataRequest(), dapr.GetMetadataResponse).id, "a")

    def test_bad_unary_requests(self):
        # A unary request is unpacked as soon as its message is complete (grpc/server.c on_message):
        # one that does not decode, or a second message, is answered INTERNAL and the
        # connection serves on.
        d = self.daemon(apps={"a": APP})
        ch = g.channel(grpc_sock(d, "a"))
        self.addCleanup(ch.close)
        raw = ch.unary_unary(g.DAPR + "GetState", request_serializer=lambda b: b,
                             response_deserializer=dapr.GetStateResponse.FromString)
        with self.assertRaises(grpc.RpcError) as cm:
            raw(b"\x0a\xff\xff\xff")  # field 1, a length past the end
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INTERNAL)
        self.assertIn("error unmarshalling request", cm.exception.details())
        two = ch.stream_unary(g.DAPR + "GetState", request_serializer=lambda m: m.SerializeToString(),
                              response_deserializer=dapr.GetStateResponse.FromString)
        req = dapr.GetStateRequest(store_name="statestore", key="k")
        with self.assertRaises(grpc.RpcError) as cm:
            two(iter([req, req]))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INTERNAL)
        self.assertIn("more than one request message", cm.exception.details())
        self.assertEqual(two(iter([req])).data, b"")

    def test_tcp_port_requires_the_token(self):
        port = free_port()
        d = self.daemon(apps={"a": f"[App]\nGrpcPort={port}\nApiToken=s3cret\n"})
        ch = g.channel(port)
        self.addCleanup(ch.close)
        with self.assertRaises(grpc.RpcError) as cm:
            call(ch, "GetMetadata", dapr.GetMetadataRequest(), dapr.GetMetadataResponse)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        with self.assertRaises(grpc.RpcError) as cm:
            call(ch, "GetMetadata", dapr.GetMetadataRequest(), dapr.GetMetadataResponse,
                 metadata=[("dapr-api-token", "wrong")])
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNAUTHENTICATED)
        m = call(ch, "GetMetadata", dapr.GetMetadataRequest(), dapr.GetMetadataResponse,
                 metadata=[("dapr-api-token", "s3cret")])
        self.assertEqual(m.id, "a")
        # the Unix socket is the app by itself: no token needed there
        chu = g.channel(grpc_sock(d, "a"))
        self.addCleanup(chu.close)
        self.assertEqual(call(chu, "GetMetadata", dapr.GetMetadataRequest(), dapr.GetMetadataResponse).id, "a")

    def test_out_of_fds_pauses_the_listener(self):
        # fds run out (a low limit, many listeners): accept() on grpc.sock fails, and the listener pauses
        # for 100ms instead of spinning on the socket that stays readable
        apps = {f"app{i:02}": APP for i in range(40)}
        d = self.daemon(apps=apps, prefix=["prlimit", "--nofile=128:128"])
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        for _ in range(60):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(grpc_sock(d, "app00"))
            socks.append(s)
        wait_for(lambda: "gRPC accept failed, pausing the listener for 100ms" in d.log(), what="the pause logged")
        time.sleep(0.5)
        d.assert_running()
        n = d.log().count("gRPC accept failed, pausing")
        self.assertLess(n, 30, "accept looped instead of pausing")
        for s in socks:
            s.close()
        socks.clear()
        ch = g.channel(grpc_sock(d, "app00"))
        self.addCleanup(ch.close)
        self.assertEqual(call(ch, "GetMetadata", dapr.GetMetadataRequest(), dapr.GetMetadataResponse,
                              timeout=30).id, "app00")

    def test_app_exec_exports_the_grpc_endpoints(self):
        port = free_port()
        d = self.daemon(bus=True, apps={"a": f"[App]\nGrpcPort={port}\nApiToken=tok\n", "b": APP})
        env = dict(os.environ, MOORING_SOCKET="", DAPR_GRPC_PORT="stale")
        out = {}
        for app in ("a", "b"):
            p = subprocess.run([MOORINGCTL, f"--bus-address={d.dbus.address}", "app-exec", app, "--", "env"],
                               capture_output=True, text=True, timeout=30, env=env)
            self.assertEqual(p.returncode, 0, p.stderr)
            out[app] = dict(line.split("=", 1) for line in p.stdout.splitlines() if "=" in line)
        self.assertEqual(out["a"]["DAPR_GRPC_PORT"], str(port))
        self.assertEqual(out["a"]["DAPR_GRPC_ENDPOINT"], f"http://127.0.0.1:{port}")
        self.assertEqual(out["a"]["MOORING_GRPC_SOCKET"], grpc_sock(d, "a"))
        self.assertNotIn("DAPR_GRPC_PORT", out["b"])  # no GrpcPort=: a stale value does not leak in
        self.assertEqual(out["b"]["MOORING_GRPC_SOCKET"], grpc_sock(d, "b"))
        # what the app gets works: its port, with its token, is that app
        ch = g.channel(int(out["a"]["DAPR_GRPC_PORT"]))
        self.addCleanup(ch.close)
        m = call(ch, "GetMetadata", dapr.GetMetadataRequest(), dapr.GetMetadataResponse,
                 metadata=[("dapr-api-token", out["a"]["DAPR_API_TOKEN"])])
        self.assertEqual(m.id, "a")
        # the admin route lists the gRPC socket and port
        apps = {a["id"]: a for a in d.get("/mooring/v1/apps").json()}
        self.assertEqual((apps["a"]["grpcSocket"], apps["a"]["grpcPort"]), (grpc_sock(d, "a"), port))
        # mooringctl apps shows them, over D-Bus and over the shared socket
        for transport in ([f"--bus-address={d.dbus.address}"], ["--socket", d.api]):
            p = subprocess.run([MOORINGCTL] + transport + ["apps", "--json"], capture_output=True, text=True,
                               timeout=30, env=env)
            self.assertEqual(p.returncode, 0, p.stderr)
            apps = {a["id"]: a for a in json.loads(p.stdout)}
            self.assertEqual((apps["a"]["grpcSocket"], apps["a"]["grpcPort"], apps["b"]["grpcPort"]),
                             (grpc_sock(d, "a"), port, 0), transport)
            p = subprocess.run([MOORINGCTL] + transport + ["apps"], capture_output=True, text=True, timeout=30,
                               env=env)
            self.assertIn("GRPC", p.stdout)


class GrpcInvokeTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="mooring-grpc-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.callee = EchoApp(unix_path=os.path.join(self.tmp, "b.sock")).start()
        self.addCleanup(self.callee.stop)
        self.d = self.daemon(apps={"a": APP, "b": f"[App]\nAppAddress={self.callee.address}\n"})
        self.ch = g.channel(grpc_sock(self.d, "a"))
        self.addCleanup(self.ch.close)

    def invoke(self, method, data=b"", verb=common.HTTPExtension.POST, qs="", ct="", app="b", **kw):
        msg = common.InvokeRequest(method=method, data=g.any_pb2.Any(value=data), content_type=ct,
                                   http_extension=common.HTTPExtension(verb=verb, querystring=qs))
        return g.unary(self.ch, "InvokeService", dapr.InvokeServiceRequest(id=app, message=msg),
                       common.InvokeResponse, **kw)

    def test_grpc_caller_reaches_http_app(self):
        r, c = self.invoke("orders/1", b"hello", qs="x=1&y=2", ct="text/plain", metadata=[("x-custom", "v")])
        self.assertEqual(r.data.value, b"hello")
        md = dict(c.initial_metadata())
        self.assertEqual(md["dapr-http-status"], "200")
        self.assertEqual(md["x-echo-method"], "POST")
        req = [q for q in self.callee.requests if "orders" in q.target][0]
        self.assertEqual(req.target, "/orders/1?x=1&y=2")
        self.assertEqual(req.header("x-custom"), "v")
        self.assertEqual(req.header("content-type"), "text/plain")
        self.assertEqual(req.header("dapr-caller-app-id"), "a")
        r, _ = self.invoke("things", verb=common.HTTPExtension.GET)
        self.assertEqual(self.callee.requests[-1].method, "GET")

    def test_answers_come_whole(self):
        # The answer is encoded around the body as it arrives (grpc/dapr-invoke.c): a body of many
        # reads, sent in many DATA frames under flow control and in several write batches; a content
        # type too long for the call's scratch space; a query too long for the stack.
        body = bytes(range(256)) * (12 << 10)
        long_ct = "application/x-" + "a" * 300
        qs = "q=" + "z" * 1000
        r, c = self.invoke("big", body, qs=qs, ct=long_ct)
        self.assertEqual(r.data.value, body)
        self.assertEqual(r.data.type_url, "")
        self.assertEqual(r.content_type, long_ct)
        self.assertEqual(dict(c.initial_metadata())["x-echo-length"], str(len(body)))
        self.assertEqual(self.callee.requests[-1].target, "/big?" + qs)
        # no body: the data field is still there, the content type too
        r, _ = self.invoke("empty", b"", ct="text/plain")
        self.assertTrue(r.HasField("data"))
        self.assertEqual((r.data.value, r.content_type), (b"", "text/plain"))
        # no content type from the callee: none in the answer
        r, _ = self.invoke("plain", b"abc")
        self.assertEqual((r.data.value, r.content_type), (b"abc", ""))

    def test_errors(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.invoke("status/404/x")
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
        with self.assertRaises(grpc.RpcError) as cm:
            self.invoke("status/500/x")
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNKNOWN)
        with self.assertRaises(grpc.RpcError) as cm:
            self.invoke("x", app="nosuchapp")
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INTERNAL)
        self.assertEqual(g.error_info(cm.exception), "ERR_DIRECT_INVOKE")
        with self.assertRaises(grpc.RpcError) as cm:
            self.invoke("x", verb=common.HTTPExtension.NONE)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

    def test_deadline_cancels_the_call(self):
        with self.assertRaises(grpc.RpcError) as cm:
            self.invoke("sleep/3000/x", timeout=0.3)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        # the daemon still serves, and the slot of the cancelled call is free again
        r, _ = self.invoke("after")
        self.assertEqual(r.data.value, b"")

    def test_many_concurrent_calls_on_one_connection(self):
        futs = []
        fn = self.ch.unary_unary(g.DAPR + "InvokeService", request_serializer=lambda m: m.SerializeToString(),
                                 response_deserializer=common.InvokeResponse.FromString)
        for i in range(200):
            msg = common.InvokeRequest(method=f"c/{i}", data=g.any_pb2.Any(value=b"%d" % i),
                                       http_extension=common.HTTPExtension(verb=common.HTTPExtension.POST))
            futs.append(fn.future(dapr.InvokeServiceRequest(id="b", message=msg), timeout=60))
        self.assertEqual([f.result().data.value for f in futs], [b"%d" % i for i in range(200)])


class GrpcPubsubTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.d = self.daemon(apps={"a": APP, "sub": APP})
        self.ch = g.channel(grpc_sock(self.d, "a"))
        self.addCleanup(self.ch.close)

    def subscribe(self, app="sub", topic="orders"):
        """A SubscribeTopicEventsAlpha1 stream: returns (requests queue, responses iterator, call)."""
        q = queue.Queue()

        def reqs():
            while True:
                m = q.get()
                if m is None:
                    return
                yield m
        ch = g.channel(grpc_sock(self.d, app))
        self.addCleanup(ch.close)
        fn = ch.stream_stream(g.DAPR + "SubscribeTopicEventsAlpha1", request_serializer=lambda m: m.SerializeToString(),
                              response_deserializer=dapr.SubscribeTopicEventsResponseAlpha1.FromString)
        q.put(dapr.SubscribeTopicEventsRequestAlpha1(initial_request=dapr.SubscribeTopicEventsRequestInitialAlpha1(
            pubsub_name="pubsub", topic=topic)))
        it = fn(reqs(), timeout=60)
        self.addCleanup(q.put, None)
        first = next(it)
        self.assertTrue(first.HasField("initial_response"))
        return q, it

    def ack(self, q, ev, status=0):
        q.put(dapr.SubscribeTopicEventsRequestAlpha1(event_processed=dapr.SubscribeTopicEventsRequestProcessedAlpha1(
            id=ev.id, status=appcallback.TopicEventResponse(status=status))))

    def test_publish_and_streaming_subscription(self):
        q, it = self.subscribe()
        call(self.ch, "PublishEvent", dapr.PublishEventRequest(pubsub_name="pubsub", topic="orders",
                                                               data=b'{"n":1}', data_content_type="application/json"))
        ev = next(it).event_message
        self.assertEqual((ev.topic, ev.pubsub_name, ev.data), ("orders", "pubsub", b'{"n":1}'))
        self.assertEqual(ev.source, "a")
        self.ack(q, ev, status=appcallback.TopicEventResponse.RETRY)
        again = next(it).event_message  # RETRY: offered again
        self.assertEqual(again.id, ev.id)
        self.ack(q, again)
        # an HTTP publish reaches the gRPC subscriber too
        r = request(self.d.app_socket("a"), "POST", "/v1.0/publish/pubsub/orders", body=b"plain",
                    headers={"Content-Type": "text/plain"})
        self.assertEqual(r.status, 204)
        ev = next(it).event_message
        self.assertEqual(ev.data, b"plain")
        self.ack(q, ev)

    def test_bulk_publish(self):
        q, it = self.subscribe(topic="bulk")
        entries = [dapr.BulkPublishRequestEntry(entry_id=str(i), event=b"%d" % i, content_type="text/plain")
                   for i in range(3)]
        r = call(self.ch, "BulkPublishEvent", dapr.BulkPublishRequest(pubsub_name="pubsub", topic="bulk",
                                                                      entries=entries), dapr.BulkPublishResponse)
        self.assertEqual(list(r.failedEntries), [])
        got = set()
        for _ in range(3):
            ev = next(it).event_message
            got.add(ev.data)
            self.ack(q, ev)
        self.assertEqual(got, {b"0", b"1", b"2"})
        dup = [dapr.BulkPublishRequestEntry(entry_id="x", event=b"1"), dapr.BulkPublishRequestEntry(entry_id="x",
                                                                                                     event=b"2")]
        for name in ("BulkPublishEvent", "BulkPublishEventAlpha1"):
            with self.assertRaises(grpc.RpcError) as cm:
                call(self.ch, name, dapr.BulkPublishRequest(pubsub_name="pubsub", topic="bulk", entries=dup),
                     dapr.BulkPublishResponse)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

    def test_subscribe_errors(self):
        ch = g.channel(grpc_sock(self.d, "sub"))
        self.addCleanup(ch.close)
        fn = ch.stream_stream(g.DAPR + "SubscribeTopicEventsAlpha1", request_serializer=lambda m: m.SerializeToString(),
                              response_deserializer=dapr.SubscribeTopicEventsResponseAlpha1.FromString)
        init = lambda p, t: dapr.SubscribeTopicEventsRequestAlpha1(
            initial_request=dapr.SubscribeTopicEventsRequestInitialAlpha1(pubsub_name=p, topic=t))
        ack = dapr.SubscribeTopicEventsRequestAlpha1(event_processed=dapr.SubscribeTopicEventsRequestProcessedAlpha1(
            id="x"))
        for reqs, code in (([init("nope", "t")], grpc.StatusCode.INVALID_ARGUMENT),
                           ([init("pubsub", "")], grpc.StatusCode.INVALID_ARGUMENT),
                           ([ack], grpc.StatusCode.INVALID_ARGUMENT)):
            with self.assertRaises(grpc.RpcError) as cm:
                list(fn(iter(reqs), timeout=30))
            self.assertEqual(cm.exception.code(), code, reqs)

    def test_publish_errors(self):
        cases = [("nope", "t", grpc.StatusCode.INVALID_ARGUMENT, "ERR_PUBSUB_NOT_FOUND"),
                 ("", "t", grpc.StatusCode.INVALID_ARGUMENT, "ERR_PUBSUB_EMPTY"),
                 ("pubsub", "", grpc.StatusCode.INVALID_ARGUMENT, "ERR_TOPIC_NAME_EMPTY")]
        for pubsub, topic, code, reason in cases:
            with self.assertRaises(grpc.RpcError) as cm:
                call(self.ch, "PublishEvent", dapr.PublishEventRequest(pubsub_name=pubsub, topic=topic, data=b"x"))
            self.assertEqual((cm.exception.code(), g.error_info(cm.exception)), (code, reason), pubsub + "/" + topic)


class GrpcRobustnessTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.d = self.daemon(apps={"a": APP})
        self.sock = grpc_sock(self.d, "a")
        self.ch = g.channel(self.sock, **{"grpc.max_send_message_length": 128 << 20})
        self.addCleanup(self.ch.close)

    def get(self, key):
        return call(self.ch, "GetState", dapr.GetStateRequest(store_name="statestore", key=key),
                    dapr.GetStateResponse).data

    def raw(self, data):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.sock)
        self.addCleanup(s.close)
        s.sendall(data)
        return g.read_frames(s)

    def test_oversized_message_is_refused_and_changes_nothing(self):
        big = common.StateItem(key="big", value=b"x" * (64 << 20))
        with self.assertRaises(grpc.RpcError) as cm:
            call(self.ch, "SaveState", dapr.SaveStateRequest(store_name="statestore", states=[big]))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        self.assertIn("larger than max", cm.exception.details())
        self.assertEqual(self.get("big"), b"")
        # just under the default 4 MiB passes
        ok = common.StateItem(key="ok", value=b"y" * ((4 << 20) - 1024))
        call(self.ch, "SaveState", dapr.SaveStateRequest(store_name="statestore", states=[ok]))
        self.assertEqual(len(self.get("ok")), (4 << 20) - 1024)

    def test_1000_concurrent_streams(self):
        call(self.ch, "SaveState", dapr.SaveStateRequest(store_name="statestore",
                                                         states=[common.StateItem(key="c", value=b"v")]))
        fn = self.ch.unary_unary(g.DAPR + "GetState", request_serializer=lambda m: m.SerializeToString(),
                                 response_deserializer=dapr.GetStateResponse.FromString)
        futs = [fn.future(dapr.GetStateRequest(store_name="statestore", key="c"), timeout=120) for _ in range(1000)]
        self.assertEqual({f.result().data for f in futs}, {b"v"})

    def test_client_resets_streams_mid_call(self):
        # a stream the client cancels while its message is half sent, and calls cancelled while queued
        fn = self.ch.stream_unary(g.DAPR + "SaveState", request_serializer=lambda b: b,
                                  response_deserializer=g.empty_pb2.Empty.FromString)
        gate = threading.Event()

        def half():
            yield g.grpc_message(dapr.SaveStateRequest(store_name="statestore",
                                                       states=[common.StateItem(key="r", value=b"1")]))[:7]
            gate.wait(10)
        f = fn.future(half(), timeout=30)
        f.cancel()
        gate.set()
        getfn = self.ch.unary_unary(g.DAPR + "GetState", request_serializer=lambda m: m.SerializeToString(),
                                    response_deserializer=dapr.GetStateResponse.FromString)
        futs = [getfn.future(dapr.GetStateRequest(store_name="statestore", key="r")) for _ in range(100)]
        for f in futs[::2]:
            f.cancel()
        for f in futs[1::2]:
            try:
                f.result()
            except grpc.RpcError:
                pass
        self.assertEqual(self.get("r"), b"")

    def test_protocol_errors_close_the_connection_and_change_nothing(self):
        save = g.grpc_message(dapr.SaveStateRequest(store_name="statestore",
                                                    states=[common.StateItem(key="p", value=b"1")]))
        # a bad preface: closed without an answer to anything
        frames = self.raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"\0" * 64)
        self.assertFalse([f for f in frames if f[0] == g.HEADERS])
        # headers past the announced limit (64 KiB): GOAWAY, closed, the request never runs
        hdr = g.hpack(g.request_headers("SaveState", [("x-big", "v" * 70000)]))
        chunks = [hdr[i:i + 16384] for i in range(0, len(hdr), 16384)]
        data = g.PREFACE + g.frame(g.SETTINGS, 0, 0) + g.frame(g.HEADERS, 0, 1, chunks[0])
        for i, c in enumerate(chunks[1:]):
            data += g.frame(g.CONTINUATION, g.END_HEADERS if i == len(chunks) - 2 else 0, 1, c)
        data += g.frame(g.DATA, g.END_STREAM, 1, save)
        frames = self.raw(data)
        self.assertIn(g.GOAWAY, [f[0] for f in frames])
        # a flow-control violation (a window past 2^31-1): GOAWAY FLOW_CONTROL_ERROR, the request never runs
        data = g.PREFACE + g.frame(g.SETTINGS, 0, 0) + g.frame(g.WINDOW_UPDATE, 0, 0, (0x7fffffff).to_bytes(4, "big"))
        data += g.frame(g.HEADERS, g.END_HEADERS, 1, g.hpack(g.request_headers("SaveState")))
        data += g.frame(g.DATA, g.END_STREAM, 1, save)
        frames = self.raw(data)
        goaway = [f for f in frames if f[0] == g.GOAWAY]
        self.assertTrue(goaway)
        self.assertEqual(int.from_bytes(goaway[0][3][4:8], "big"), 3)  # FLOW_CONTROL_ERROR
        self.assertEqual(self.get("p"), b"")
        # a well-formed raw request on a fresh connection does run (the test's framing is right)
        data = g.PREFACE + g.frame(g.SETTINGS, 0, 0)
        data += g.frame(g.HEADERS, g.END_HEADERS, 1, g.hpack(g.request_headers("SaveState")))
        data += g.frame(g.DATA, g.END_STREAM, 1, save)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.sock)
        self.addCleanup(s.close)
        s.sendall(data)
        frames = []
        for _ in range(20):
            frames += g.read_frames(s, until_close=False, timeout=5)
            if any(f[0] == g.HEADERS and f[1] & g.END_STREAM for f in frames):
                break
        self.assertEqual(self.get("p"), b"1")


    def test_malformed_request_headers_reset_the_stream_and_change_nothing(self):
        # RFC 9113 8.2/8.3: each of these makes the request malformed: its stream is reset with
        # PROTOCOL_ERROR, the request never runs, and the connection goes on serving
        save = g.grpc_message(dapr.SaveStateRequest(store_name="statestore",
                                                    states=[common.StateItem(key="m", value=b"1")]))
        ok = g.request_headers("SaveState")
        no_scheme = [h for h in ok if h[0] != ":scheme"]
        cases = [
            ("an upper-case name", ok + [("X-Upper", "v")]),
            ("a pseudo-header after a regular one",
             [h for h in ok if h[0] != ":authority"] + [(":authority", "localhost")]),
            ("an unknown pseudo-header", ok[:4] + [(":bogus", "x")] + ok[4:]),
            ("a repeated pseudo-header", ok[:1] + [(":method", "POST")] + ok[1:]),
            ("no :scheme", [h for h in ok if h[0] != ":scheme"]),
            ("a connection-specific field", ok + [("connection", "close")]),
            ("te other than trailers", [h for h in ok if h[0] != "te"] + [("te", "gzip")]),
            ("a space in :path", [(n, "/a b" if n == ":path" else v) for n, v in ok]),
            ("a content-length the data does not match", ok + [("content-length", str(len(save) + 1))]),
        ]
        data = g.PREFACE + g.frame(g.SETTINGS, 0, 0)
        for i, (_, headers) in enumerate(cases):
            data += g.frame(g.HEADERS, g.END_HEADERS, 1 + 2 * i, g.hpack(headers))
            data += g.frame(g.DATA, g.END_STREAM, 1 + 2 * i, save)
        last = 1 + 2 * len(cases)
        data += g.frame(g.HEADERS, g.END_HEADERS, last, g.hpack(ok))
        data += g.frame(g.DATA, g.END_STREAM, last, g.grpc_message(dapr.GetStateRequest(store_name="statestore",
                                                                                          key="m")))
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(self.sock)
        self.addCleanup(s.close)
        s.sendall(data)
        frames = []
        for _ in range(40):
            frames += g.read_frames(s, until_close=False, timeout=5)
            if any(f[0] == g.HEADERS and f[1] & g.END_STREAM and f[2] == last for f in frames):
                break
        for i, (what, _) in enumerate(cases):
            rst = [f for f in frames if f[0] == g.RST_STREAM and f[2] == 1 + 2 * i]
            self.assertTrue(rst, what)
            self.assertEqual(int.from_bytes(rst[0][3], "big"), 1, what)  # PROTOCOL_ERROR
            self.assertFalse([f for f in frames if f[0] == g.HEADERS and f[2] == 1 + 2 * i], what)
        self.assertFalse([f for f in frames if f[0] == g.GOAWAY])
        # the well-formed call on the same connection was answered, and nothing was saved
        self.assertTrue([f for f in frames if f[0] == g.HEADERS and f[2] == last])
        self.assertEqual(self.get("m"), b"")


class GrpcAppTest(DaemonTestCase):
    """AppProtocol=grpc: mooringd calls the app through Dapr's AppCallback service."""

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="mooring-grpcapp-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.app = g.CallbackApp(os.path.join(self.tmp, "g.sock"))
        self.app.subscriptions = [appcallback.TopicSubscription(pubsub_name="pubsub", topic="news")]
        self.app.start()
        self.addCleanup(self.app.stop)
        self.d = self.daemon(apps={"a": APP, "g": f"[App]\nAppAddress=unix:{self.app.path}\nAppProtocol=grpc\n"})

    def test_http_and_grpc_callers_invoke_a_grpc_app(self):
        r = request(self.d.app_socket("a"), "POST", "/v1.0/invoke/g/method/hello?x=1", body=b"hi",
                    headers={"Content-Type": "text/plain", "X-Custom": "v"})
        self.assertEqual((r.status, r.body), (200, b"echo:hi"))
        self.assertEqual(r.headers["content-type"], "text/x-echo")
        req = self.app.invocations[-1]
        self.assertEqual((req.method, req.http_extension.verb, req.http_extension.querystring, req.content_type),
                         ("hello", common.HTTPExtension.POST, "x=1", "text/plain"))
        self.assertEqual(self.app.metadata[-1]["x-custom"], "v")
        self.assertEqual(self.app.metadata[-1]["dapr-caller-app-id"], "a")
        # the app's gRPC error comes back as the HTTP status daprd maps it to
        r = request(self.d.app_socket("a"), "GET", "/v1.0/invoke/g/method/fail/x")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.json()["code"], 5)
        # a gRPC caller
        ch = g.channel(grpc_sock(self.d, "a"))
        self.addCleanup(ch.close)
        msg = common.InvokeRequest(method="m", data=g.any_pb2.Any(value=b"x"),
                                   http_extension=common.HTTPExtension(verb=common.HTTPExtension.POST))
        r = call(ch, "InvokeService", dapr.InvokeServiceRequest(id="g", message=msg), common.InvokeResponse)
        self.assertEqual(r.data.value, b"echo:x")

    def test_subscriptions_and_deliveries(self):
        sock = self.d.app_socket("a")
        # ListTopicSubscriptions was asked once the app was healthy (HealthCheck)
        def subscribed():
            m = request(self.d.app_socket("g"), "GET", "/v1.0/metadata").json()
            return [s for s in m.get("subscriptions", []) if s["topic"] == "news"]
        wait_for(subscribed, what="the gRPC app's subscription")
        r = request(sock, "POST", "/v1.0/publish/pubsub/news", body=b'{"n":1}',
                    headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 204)
        wait_for(lambda: self.app.events, what="OnTopicEvent")
        ev = self.app.events[0]
        self.assertEqual((ev.topic, ev.pubsub_name, ev.data, ev.source), ("news", "pubsub", b'{"n":1}', "a"))
        # RETRY: offered again
        self.app.topic_status = appcallback.TopicEventResponse.RETRY
        request(sock, "POST", "/v1.0/publish/pubsub/news", body=b"2", headers={"Content-Type": "text/plain"})
        wait_for(lambda: len([e for e in self.app.events if e.data == b"2"]) >= 2, what="a redelivery")
        self.app.topic_status = appcallback.TopicEventResponse.SUCCESS

    def test_bulk_subscription(self):
        self.app.subscriptions = [appcallback.TopicSubscription(
            pubsub_name="pubsub", topic="bulk", bulk_subscribe=appcallback.BulkSubscribeConfig(
                enabled=True, max_messages_count=3, max_await_duration_ms=200))]
        d = self.daemon(apps={"a2": APP, "g2": f"[App]\nAppAddress=unix:{self.app.path}\nAppProtocol=grpc\n"})
        wait_for(lambda: [s for s in request(d.app_socket("g2"), "GET", "/v1.0/metadata").json()
                          .get("subscriptions", []) if s["topic"] == "bulk"], what="the bulk subscription")
        self.app.bulk_status = {"1": appcallback.TopicEventResponse.DROP}
        for i in range(3):
            request(d.app_socket("a2"), "POST", "/v1.0/publish/pubsub/bulk", body=b"%d" % i,
                    headers={"Content-Type": "text/plain"})
        wait_for(lambda: sum(len(b.entries) for b in self.app.bulk) >= 3, what="OnBulkTopicEventAlpha1")
        got = sorted(e.cloud_event.data for b in self.app.bulk for e in b.entries)
        self.assertEqual(got, [b"0", b"1", b"2"])
        self.assertEqual({b.topic for b in self.app.bulk}, {"bulk"})


class GrpcProxyTest(DaemonTestCase):
    """A call with dapr-app-id for a method mooringd does not serve reaches that app's own service."""

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="mooring-grpcproxy-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.app = g.CallbackApp(os.path.join(self.tmp, "g.sock")).start()
        self.addCleanup(self.app.stop)
        cfg = os.path.join(self.tmp, "deny.yaml")
        with open(cfg, "w") as f:
            f.write("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: deny\nspec:\n"
                    "  accessControl:\n    defaultAction: deny\n    policies:\n    - appId: a\n"
                    "      defaultAction: allow\n")
        self.d = self.daemon(apps={"a": APP, "c": APP, "h": "[App]\nAppAddress=http://127.0.0.1:1\n",
                                   "g": f"[App]\nAppAddress=unix:{self.app.path}\nAppProtocol=grpc\n"
                                        f"Configuration={cfg}\n"})
        self.ch = g.channel(grpc_sock(self.d, "a"))
        self.addCleanup(self.ch.close)
        self.md = [("dapr-app-id", "g")]

    def test_all_four_stream_kinds(self):
        raw = dict(request_serializer=lambda b: b, response_deserializer=lambda b: b)
        r, c = self.ch.unary_unary("/test.Echo/Unary", **raw).with_call(b"x", metadata=self.md + [("k", "v")],
                                                                         timeout=30)
        self.assertEqual(r, b"unary:x")
        seen = self.app.metadata[-1]
        self.assertEqual((seen["k"], seen["dapr-caller-app-id"]), ("v", "a"))
        self.assertNotIn("dapr-app-id", seen)
        self.assertTrue(seen["traceparent"].startswith("00-"))
        self.assertEqual(list(self.ch.unary_stream("/test.Echo/ServerStream", **raw)(b"s", metadata=self.md,
                                                                                    timeout=30)),
                         [b"0:s", b"1:s", b"2:s"])
        self.assertEqual(self.ch.stream_unary("/test.Echo/ClientStream", **raw)(iter([b"a", b"b", b"c"]),
                                                                                metadata=self.md, timeout=30),
                         b"a+b+c")
        self.assertEqual(list(self.ch.stream_stream("/test.Echo/Bidi", **raw)(iter([b"1", b"2"]), metadata=self.md,
                                                                              timeout=30)),
                         [b"bidi:1", b"bidi:2"])
        # a large message passes through whole
        big = os.urandom(3 << 20)
        self.assertEqual(self.ch.unary_unary("/test.Echo/Unary", **raw)(big, metadata=self.md, timeout=60),
                         b"unary:" + big)

    def test_refusals(self):
        raw = dict(request_serializer=lambda b: b, response_deserializer=lambda b: b)
        # the app's own error status comes back as it is
        with self.assertRaises(grpc.RpcError) as cm:
            self.ch.unary_unary("/test.Echo/Nope", **raw)(b"x", metadata=self.md, timeout=30)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        # access control: only a may call g
        chc = g.channel(grpc_sock(self.d, "c"))
        self.addCleanup(chc.close)
        with self.assertRaises(grpc.RpcError) as cm:
            chc.unary_unary("/test.Echo/Unary", **raw)(b"x", metadata=self.md, timeout=30)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        # an unknown app, and an app that does not speak gRPC
        for target, code in (("nosuch", grpc.StatusCode.INTERNAL), ("h", grpc.StatusCode.UNIMPLEMENTED)):
            with self.assertRaises(grpc.RpcError) as cm:
                self.ch.unary_unary("/test.Echo/Unary", **raw)(b"x", metadata=[("dapr-app-id", target)], timeout=30)
            self.assertEqual(cm.exception.code(), code, target)


if __name__ == "__main__":
    main()
