#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The gRPC API of the blocks that landed after the gRPC front-end: secrets,
output and input bindings (to a gRPC app), actors, the distributed lock, the
configuration API and the state query API. Called with Debian's python3-grpcio
(grpc_support.py), against the real daemon and real stores; each RPC reaches
the same block as its HTTP route, so what one front-end does the other sees."""

import base64
import json
import os
import queue
import re
import secrets
import shutil
import sqlite3
import tempfile
import threading

import grpc_support as g  # first: may re-execute under Debian's python
from grpc_support import appcallback, call, common, dapr, empty_pb2, grpc
from harness import DaemonTestCase, main, request, wait_for
from test_actors import AppProcess

APP = "[App]\n"


def grpc_sock(d, app):
    return d.app_socket(app).replace("http.sock", "grpc.sock")


def component(name, typ, metadata=(), scopes=None):
    md = "".join(f"  - name: {k}\n    value: {json.dumps(v)}\n" for k, v in metadata)
    sc = f"scopes: [{', '.join(scopes)}]\n" if scopes else ""
    return (f"apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: {typ}\n"
            f"  version: v1\n  metadata:\n{md}{sc}")


SECRET_SCOPES = """apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: b
spec:
  secrets:
    scopes:
    - storeName: vault
      defaultAccess: deny
      allowedSecrets: [api]
"""


class GrpcTestCase(DaemonTestCase):
    def channel(self, d, app):
        ch = g.channel(grpc_sock(d, app))
        self.addCleanup(ch.close)
        return ch

    def assert_fails(self, ch, method, req, code, reason, resp=empty_pb2.Empty, contains=None):
        with self.assertRaises(grpc.RpcError) as cm:
            call(ch, method, req, resp)
        self.assertEqual(cm.exception.code(), code, cm.exception.details())
        self.assertEqual(g.error_info(cm.exception), reason, cm.exception.details())
        if contains:
            self.assertIn(contains, cm.exception.details())
        return cm.exception


class GrpcObservabilityTest(GrpcTestCase):
    """gRPC calls in the metrics (Dapr's dapr_grpc_io_server_* names, methods as labels, bounded) and
    in the traces (a SERVER span per call, child of the caller's traceparent; the block's operations
    its children)."""

    def test_metrics_and_spans(self):
        from test_tracing import Receiver, config_yaml  # noqa: E402 (its module imports nothing of ours)
        rx = Receiver()
        self.addCleanup(rx.stop)
        d = self.daemon(apps={"a": APP}, start=False)
        with open(os.path.join(d.config, "config.yaml"), "w") as f:
            f.write(config_yaml(1, otel=f"127.0.0.1:{rx.port}"))
        d.start()
        ch = self.channel(d, "a")
        call(ch, "SaveState", dapr.SaveStateRequest(store_name="statestore", states=[common.StateItem(key="k", value=b"1")]))
        parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        for _ in range(3):
            call(ch, "GetState", dapr.GetStateRequest(store_name="statestore", key="k"), dapr.GetStateResponse,
                 metadata=[("traceparent", parent)])
        self.assert_fails(ch, "GetState", dapr.GetStateRequest(store_name="nope", key="k"),
                          grpc.StatusCode.INVALID_ARGUMENT, "ERR_STATE_STORE_NOT_FOUND")
        # methods nobody serves share one label, whatever their names
        for i in range(20):
            with self.assertRaises(grpc.RpcError) as cm:
                g.unary(ch, f"/made.up.Service{i}/Call{i}", empty_pb2.Empty(), empty_pb2.Empty)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.UNIMPLEMENTED)
        text = d.get("/metrics").body.decode()

        def value(method, status):
            m = re.search(r'^dapr_grpc_io_server_completed_rpcs\{app_id="a",grpc_server_method="%s",'
                          r'grpc_server_status="%s"\} (\d+)$' % (re.escape(method), status), text, re.M)
            return int(m.group(1)) if m else None
        self.assertEqual(value("/dapr.proto.runtime.v1.Dapr/GetState", "OK"), 3, text)
        self.assertEqual(value("/dapr.proto.runtime.v1.Dapr/SaveState", "OK"), 1)
        self.assertEqual(value("/dapr.proto.runtime.v1.Dapr/GetState", "INVALID_ARGUMENT"), 1)
        self.assertEqual(value("_other", "UNIMPLEMENTED"), 20)
        self.assertNotIn("made.up", text)
        self.assertIn('dapr_grpc_io_server_server_latency_count{app_id="a",'
                      'grpc_server_method="/dapr.proto.runtime.v1.Dapr/GetState",grpc_server_status="OK"} 3', text)

        def spans():
            got = [x for x in rx.snapshot() if x["name"] == "/dapr.proto.runtime.v1.Dapr/GetState"]
            return got if len(got) >= 4 else None
        got = wait_for(spans, what="the GetState spans")
        # the three with the caller's traceparent, and the failed one (no traceparent: a trace of its own)
        gets = [x for x in got if x["parent"]]
        self.assertEqual([(x["kind"], x["service"], x["trace"], x["parent"], x["error"]) for x in gets],
                         [("SERVER", "a", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", False)] * 3)
        self.assertEqual([x["error"] for x in got if not x["parent"]], [True])
        ids = {x["id"] for x in gets}
        children = wait_for(lambda: [x for x in rx.snapshot() if x["name"] == "state/statestore/get"] or None,
                            what="the store's spans")
        self.assertTrue(all(x["parent"] in ids for x in children), (children, ids))


class GrpcSecretsBindingsTest(GrpcTestCase):
    def setUp(self):
        super().setUp()
        self.values = {"db": "v-" + secrets.token_hex(12), "api": "v-" + secrets.token_hex(12)}
        d = self.daemon(start=False)
        path = os.path.join(d.tmp, "secrets.json")
        with open(path, "w") as f:
            json.dump(self.values, f)
        conf_b = os.path.join(d.tmp, "b.yaml")
        with open(conf_b, "w") as f:
            f.write(SECRET_SCOPES)
        self.root = os.path.join(d.tmp, "files")
        d.write_app("a", APP)
        d.write_app("b", f"[App]\nConfiguration={conf_b}\n")
        d.write_component("vault.yaml", component("vault", "secretstores.local.file", [("secretsFile", path)]))
        d.write_component("files.yaml", component("files", "bindings.localstorage", [("rootPath", self.root)]))
        d.write_component("private.yaml", component("private", "bindings.localstorage",
                                                     [("rootPath", os.path.join(d.tmp, "p"))], scopes=["b"]))
        d.start()
        self.d = d
        self.a, self.b = self.channel(d, "a"), self.channel(d, "b")

    def test_get_secret_and_bulk_with_scopes(self):
        r = call(self.a, "GetSecret", dapr.GetSecretRequest(store_name="vault", key="db"), dapr.GetSecretResponse)
        self.assertEqual(dict(r.data), {"db": self.values["db"]})
        r = call(self.a, "GetBulkSecret", dapr.GetBulkSecretRequest(store_name="vault"), dapr.GetBulkSecretResponse)
        self.assertEqual({k: dict(v.secrets) for k, v in r.data.items()},
                         {"db": {"db": self.values["db"]}, "api": {"api": self.values["api"]}})
        # b's Configuration allows api only: bulk is filtered, db refused
        r = call(self.b, "GetBulkSecret", dapr.GetBulkSecretRequest(store_name="vault"), dapr.GetBulkSecretResponse)
        self.assertEqual({k: dict(v.secrets) for k, v in r.data.items()}, {"api": {"api": self.values["api"]}})
        r = call(self.b, "GetSecret", dapr.GetSecretRequest(store_name="vault", key="api"), dapr.GetSecretResponse)
        self.assertEqual(dict(r.data), {"api": self.values["api"]})
        self.assert_fails(self.b, "GetSecret", dapr.GetSecretRequest(store_name="vault", key="db"),
                          grpc.StatusCode.PERMISSION_DENIED, "ERR_PERMISSION_DENIED", dapr.GetSecretResponse)
        # unknown store, unknown secret
        self.assert_fails(self.a, "GetSecret", dapr.GetSecretRequest(store_name="nope", key="db"),
                          grpc.StatusCode.INVALID_ARGUMENT, "ERR_SECRET_STORE_NOT_FOUND", dapr.GetSecretResponse,
                          contains="nope")
        self.assert_fails(self.a, "GetBulkSecret", dapr.GetBulkSecretRequest(store_name="nope"),
                          grpc.StatusCode.INVALID_ARGUMENT, "ERR_SECRET_STORE_NOT_FOUND", dapr.GetBulkSecretResponse)
        self.assert_fails(self.a, "GetSecret", dapr.GetSecretRequest(store_name="vault", key="missing"),
                          grpc.StatusCode.INTERNAL, "ERR_SECRET_GET", dapr.GetSecretResponse, contains="missing")
        # the store's reads in the metrics (a: one get, one bulk, one failed get), never the values
        text = self.d.get("/metrics").body.decode()
        sec = 'dapr_component_secret_count{app_id="a",component="vault",namespace="",operation="%s",success="%s"} %d'
        for line in (sec % ("get", "true", 1), sec % ("bulk_get", "true", 1), sec % ("get", "false", 1)):
            self.assertIn(line, text)
        self.assertNotIn(self.values["db"], text)
        # the HTTP route answers the same value
        h = request(self.d.app_socket("a"), "GET", "/v1.0/secrets/vault/db")
        self.assertEqual(h.json(), {"db": self.values["db"]})
        log = self.d.log()
        for v in self.values.values():
            self.assertNotIn(v, log)

    def test_invoke_binding(self):
        r = call(self.a, "InvokeBinding", dapr.InvokeBindingRequest(
            name="files", operation="create", data=b"\x00raw bytes", metadata={"fileName": "a.bin"}),
            dapr.InvokeBindingResponse)
        with open(os.path.join(self.root, "a.bin"), "rb") as f:
            self.assertEqual(f.read(), b"\x00raw bytes")  # the bytes as sent, not re-encoded
        self.assertEqual(json.loads(r.data), {"fileName": "a.bin"})
        r = call(self.a, "InvokeBinding", dapr.InvokeBindingRequest(name="files", operation="get",
                                                                    metadata={"fileName": "a.bin"}),
                 dapr.InvokeBindingResponse)
        self.assertEqual(r.data, b"\x00raw bytes")
        # the HTTP route reads what gRPC wrote
        h = request(self.d.app_socket("a"), "POST", "/v1.0/bindings/files",
                    body=json.dumps({"operation": "get", "metadata": {"fileName": "a.bin"}}).encode())
        self.assertEqual((h.status, h.body), (200, b"\x00raw bytes"))
        for req, text in [(dapr.InvokeBindingRequest(name="nope", operation="get"), "couldn't find output binding"),
                          (dapr.InvokeBindingRequest(name="private", operation="list"), "couldn't find"),
                          (dapr.InvokeBindingRequest(name="files", operation=""), "operation field is missing"),
                          (dapr.InvokeBindingRequest(name="files", operation="frobnicate"), "does not support"),
                          (dapr.InvokeBindingRequest(name="files", operation="get", metadata={"fileName": "x"}),
                           "")]:
            self.assert_fails(self.a, "InvokeBinding", req, grpc.StatusCode.INTERNAL, "ERR_INVOKE_OUTPUT_BINDING",
                              dapr.InvokeBindingResponse, contains=text)
        # b may use its private binding
        call(self.b, "InvokeBinding", dapr.InvokeBindingRequest(name="private", operation="create", data=b"p",
                                                                metadata={"fileName": "p"}),
             dapr.InvokeBindingResponse)
        # in the metrics, under daprd's names: what the binding ran (a's create, two gets, the failed get;
        # not the four calls refused before the binding saw them), by caller
        text = self.d.get("/metrics").body.decode()
        out = 'dapr_component_output_binding_count{app_id="%s",component="%s",namespace="",operation="%s",success="%s"} %d'
        for line in (out % ("a", "files", "create", "true", 1), out % ("a", "files", "get", "true", 2),
                     out % ("a", "files", "get", "false", 1), out % ("b", "private", "create", "true", 1)):
            self.assertIn(line, text)
        self.assertNotIn('operation="frobnicate"', text)


class BindingApp(g.CallbackApp):
    """The test's gRPC app, also reading input bindings: ListInputBindings lists self.inputs,
    OnBindingEvent records."""

    def __init__(self, path, inputs):
        super().__init__(path)
        self.inputs = inputs
        self.binding_events = []
        self.response = None  # what OnBindingEvent answers (None: an empty answer)
        pb = lambda t: dict(request_deserializer=t.FromString, response_serializer=lambda m: m.SerializeToString())
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "dapr.proto.runtime.v1.AppCallback", {
                "ListInputBindings": grpc.unary_unary_rpc_method_handler(
                    lambda req, ctx: appcallback.ListInputBindingsResponse(bindings=self.inputs),
                    **pb(empty_pb2.Empty)),
                "OnBindingEvent": grpc.unary_unary_rpc_method_handler(self.on_binding_event,
                                                                      **pb(appcallback.BindingEventRequest)),
            }),))

    def on_binding_event(self, req, ctx):
        self.binding_events.append(req)
        return self.response or appcallback.BindingEventResponse()


class GrpcInputBindingTest(GrpcTestCase):
    def test_cron_reaches_a_grpc_app(self):
        tmp = tempfile.mkdtemp(prefix="mooring-grpcbind-")
        self.addCleanup(shutil.rmtree, tmp, True)
        app = BindingApp(os.path.join(tmp, "g.sock"), ["tick"]).start()
        self.addCleanup(app.stop)
        d = self.daemon(apps={"g": f"[App]\nAppAddress=unix:{app.path}\nAppProtocol=grpc\n"},
                        components={"tick.yaml": component("tick", "bindings.cron", [("schedule", "@every 1s")]),
                                    "other.yaml": component("other", "bindings.cron", [("schedule", "@every 1s")])})
        wait_for(lambda: len(app.binding_events) >= 2, timeout=30, what="two OnBindingEvent calls")
        self.assertRegex(d.get("/metrics").body.decode(),
                         r'dapr_component_input_binding_count\{app_id="g",component="tick",namespace="",'
                         r'success="true"\} [1-9]')
        ev = app.binding_events[0]
        self.assertEqual(ev.name, "tick")
        self.assertTrue(ev.data is not None)
        # the app does not list "other": it is not read for it
        wait_for(lambda: "does not read input binding other" in d.log(), what="other refused")
        self.assertEqual({e.name for e in app.binding_events}, {"tick"})
        # nothing went to OnInvoke (the HTTP shape of a delivery)
        self.assertEqual(app.invocations, [])


    def test_answer_sends_data_on_to_output_bindings(self):
        # daprd acts on an OnBindingEvent answer's to/data/concurrency: operation "create" to each
        # binding named, the data re-encoded as JSON (null when it is not JSON), one after the other
        # until one fails, or all at once; failures are logged and the event stays taken
        tmp = tempfile.mkdtemp(prefix="mooring-grpcbind-")
        self.addCleanup(shutil.rmtree, tmp, True)
        app = BindingApp(os.path.join(tmp, "g.sock"), ["tick"]).start()
        self.addCleanup(app.stop)
        out1, out2 = os.path.join(tmp, "out1"), os.path.join(tmp, "out2")
        app.response = appcallback.BindingEventResponse(to=["out1", "nope", "out2"], data=b'{ "n": 1 }')
        d = self.daemon(apps={"g": f"[App]\nAppAddress=unix:{app.path}\nAppProtocol=grpc\n"},
                        components={"tick.yaml": component("tick", "bindings.cron", [("schedule", "@every 1s")]),
                                    "out1.yaml": component("out1", "bindings.localstorage", [("rootPath", out1)]),
                                    "out2.yaml": component("out2", "bindings.localstorage", [("rootPath", out2)])})

        def files(root):
            out = []
            for f in sorted(os.listdir(root)) if os.path.isdir(root) else []:
                with open(os.path.join(root, f), "rb") as fh:
                    out.append(fh.read())
            return out
        wait_for(lambda: files(out1), timeout=30, what="the answer's data in out1")
        self.assertEqual(files(out1)[0], b'{"n":1}')
        wait_for(lambda: "on to output binding nope failed" in d.log(), what="the failure logged")
        self.assertEqual(files(out2), [])  # sequential: it stopped at "nope"
        # parallel: out2 gets it although "nope" fails; data that is no JSON goes as null
        app.response = appcallback.BindingEventResponse(
            to=["nope", "out2"], data=b"not json",
            concurrency=appcallback.BindingEventResponse.BindingEventConcurrency.PARALLEL)
        wait_for(lambda: files(out2), timeout=30, what="the answer's data in out2")
        # "null", which bindings.localstorage's create takes for base64 text as daprd's does
        self.assertEqual(files(out2)[0], base64.b64decode("null"))
        self.assertTrue(len(app.binding_events) >= 2)


class GrpcActorsTest(GrpcTestCase):
    def setUp(self):
        super().setUp()
        d = self.daemon(start=False, apps={"caller": APP})
        self.app = AppProcess(d.tmp, d.app_socket("host")).start()
        self.addCleanup(self.app.kill)
        d.write_app("host", f"[App]\nAppAddress={self.app.address}\nHealthCheckPath=/healthz\n"
                            "HealthProbeInterval=100ms\n")
        d.start()

        def hosted():
            r = d.get("/mooring/v1/actors")
            return r.status == 200 and any(t["type"] == "Counter" and t["reminderState"] == "loaded"
                                           for t in r.json())
        wait_for(hosted, what="actor type Counter hosted")
        self.d = d
        self.caller, self.host = self.channel(d, "caller"), self.channel(d, "host")

    def invoke(self, ch, method, data=b"", aid="1", typ="Counter", **md):
        return call(ch, "InvokeActor", dapr.InvokeActorRequest(actor_type=typ, actor_id=aid, method=method, data=data,
                                                               metadata=md), dapr.InvokeActorResponse)

    def test_invoke_and_state(self):
        r = self.invoke(self.caller, "echo", b'{"n":1}', x_trace="t1")
        self.assertEqual(r.data, b'{"n":1}')
        e = self.app.entries("method", type="Counter", id="1", name="echo")[-1]
        self.assertEqual((e["body"], e["headers"]["content-type"], e["headers"]["x_trace"]),
                         ('{"n":1}', "application/json", "t1"))
        self.assert_fails(self.caller, "InvokeActor", dapr.InvokeActorRequest(actor_type="Counter", actor_id="1",
                                                                              method="fail"),
                          grpc.StatusCode.INTERNAL, "ERR_ACTOR_INVOKE_METHOD", dapr.InvokeActorResponse)
        self.assert_fails(self.caller, "InvokeActor", dapr.InvokeActorRequest(actor_type="Nobody", actor_id="1",
                                                                              method="m"),
                          grpc.StatusCode.INTERNAL, "ERR_ACTOR_INVOKE_METHOD", dapr.InvokeActorResponse,
                          contains="no app hosts actor type 'Nobody'")
        # state: the host's, for an active actor
        ops = [dapr.TransactionalActorStateOperation(operationType="upsert", key="k1",
                                                     value=g.any_pb2.Any(value=b'"v1"')),
               dapr.TransactionalActorStateOperation(operationType="upsert", key="k2",
                                                     value=g.any_pb2.Any(value=b"2"))]
        call(self.host, "ExecuteActorStateTransaction", dapr.ExecuteActorStateTransactionRequest(
            actor_type="Counter", actor_id="1", operations=ops))

        def get(key, ch=None, aid="1"):
            return call(ch or self.host, "GetActorState", dapr.GetActorStateRequest(actor_type="Counter", actor_id=aid,
                                                                                    key=key),
                        dapr.GetActorStateResponse)
        self.assertEqual(get("k1").data, b'"v1"')
        h = request(self.d.app_socket("host"), "GET", "/v1.0/actors/Counter/1/state/k2")
        self.assertEqual((h.status, h.body), (200, b"2"))
        call(self.host, "ExecuteActorStateTransaction", dapr.ExecuteActorStateTransactionRequest(
            actor_type="Counter", actor_id="1",
            operations=[dapr.TransactionalActorStateOperation(operationType="delete", key="k1")]))
        self.assertEqual(get("k1").data, b"")
        # another app, an actor that is not active, an unknown operation
        for ch, aid in ((self.caller, "1"), (self.host, "never")):
            self.assert_fails(ch, "GetActorState", dapr.GetActorStateRequest(actor_type="Counter", actor_id=aid,
                                                                             key="k2"),
                              grpc.StatusCode.INVALID_ARGUMENT, "ERR_ACTOR_INSTANCE_MISSING",
                              dapr.GetActorStateResponse)
        self.assert_fails(self.host, "ExecuteActorStateTransaction", dapr.ExecuteActorStateTransactionRequest(
            actor_type="Counter", actor_id="1",
            operations=[dapr.TransactionalActorStateOperation(operationType="merge", key="k2")]),
            grpc.StatusCode.UNIMPLEMENTED, "ERR_NOT_SUPPORTED_STATE_OPERATION")
        self.assertEqual(get("k2").data, b"2")

    def test_reminders_and_timers(self):
        self.invoke(self.caller, "echo", aid="r1")  # active, for the timer
        call(self.host, "RegisterActorReminder", dapr.RegisterActorReminderRequest(
            actor_type="Counter", actor_id="r1", name="now", due_time="0s", data=b"hi"))
        wait_for(lambda: self.app.entries("remind", id="r1", name="now"), what="the reminder")
        # bytes on the wire; daprd hands them to the app as json.Marshal does a []byte: base64
        self.assertEqual(self.app.entries("remind", id="r1", name="now")[0]["body"]["data"],
                         base64.b64encode(b"hi").decode())
        call(self.host, "RegisterActorReminder", dapr.RegisterActorReminderRequest(
            actor_type="Counter", actor_id="r1", name="later", due_time="1h"))
        h = request(self.d.app_socket("host"), "GET", "/v1.0/actors/Counter/r1/reminders/later")
        self.assertEqual(h.json()["dueTime"], "1h")
        call(self.host, "UnregisterActorReminder", dapr.UnregisterActorReminderRequest(
            actor_type="Counter", actor_id="r1", name="later"))
        h = request(self.d.app_socket("host"), "GET", "/v1.0/actors/Counter/r1/reminders/later")
        self.assertEqual(h.body, b"null")
        self.assert_fails(self.host, "RegisterActorReminder", dapr.RegisterActorReminderRequest(
            actor_type="Counter", actor_id="r1", name="bad", due_time="tomorrow"),
            grpc.StatusCode.INTERNAL, "ERR_ACTOR_REMINDER_CREATE")
        self.assert_fails(self.caller, "RegisterActorReminder", dapr.RegisterActorReminderRequest(
            actor_type="Counter", actor_id="r1", name="x", due_time="1h"),
            grpc.StatusCode.PERMISSION_DENIED, "ERR_ACTOR_REMINDER_NON_HOSTED")
        # timers: on an active actor only
        call(self.host, "RegisterActorTimer", dapr.RegisterActorTimerRequest(
            actor_type="Counter", actor_id="r1", name="t", due_time="0s", period="1h", callback="cb"))
        wait_for(lambda: self.app.entries("timer", id="r1", name="t"), what="the timer")
        call(self.host, "UnregisterActorTimer", dapr.UnregisterActorTimerRequest(actor_type="Counter",
                                                                                 actor_id="r1", name="t"))
        self.assert_fails(self.host, "RegisterActorTimer", dapr.RegisterActorTimerRequest(
            actor_type="Counter", actor_id="never", name="t", due_time="1s"),
            grpc.StatusCode.INTERNAL, "ERR_ACTOR_TIMER_CREATE")
        self.assert_fails(self.host, "RegisterActorTimer", dapr.RegisterActorTimerRequest(
            actor_type="Counter", actor_id="r1", name="t", period="often"),
            grpc.StatusCode.INTERNAL, "ERR_ACTOR_TIMER_CREATE")


class GrpcAlphaTest(GrpcTestCase):
    def setUp(self):
        super().setUp()
        d = self.daemon(start=False, apps={"a": APP, "b": APP})
        d.write_component("config.yaml", component("configstore", "configuration.sqlite",
                                                   [("pollInterval", "100ms")]))
        d.start()
        self.d = d
        self.a, self.b = self.channel(d, "a"), self.channel(d, "b")

    def test_lock(self):
        def lock(ch, owner, resource="r", expiry=60, store="lockstore"):
            return call(ch, "TryLockAlpha1", dapr.TryLockRequest(store_name=store, resource_id=resource,
                                                                 lock_owner=owner, expiry_in_seconds=expiry),
                        dapr.TryLockResponse).success

        def unlock(ch, owner, resource="r"):
            return call(ch, "UnlockAlpha1", dapr.UnlockRequest(store_name="lockstore", resource_id=resource,
                                                               lock_owner=owner), dapr.UnlockResponse).status
        self.assertTrue(lock(self.a, "o1"))
        self.assertFalse(lock(self.a, "o2"))  # held by another owner
        # the HTTP route sees the same lock
        h = request(self.d.app_socket("a"), "POST", "/v1.0-alpha1/lock/lockstore",
                    body=b'{"resourceId":"r","lockOwner":"o3","expiryInSeconds":5}')
        self.assertEqual(h.json(), {"success": False})
        self.assertTrue(lock(self.b, "o2"))  # b's "r" is another key
        self.assertEqual(unlock(self.a, "o2"), dapr.UnlockResponse.LOCK_BELONGS_TO_OTHERS)
        self.assertEqual(unlock(self.a, "o1"), dapr.UnlockResponse.SUCCESS)
        self.assertEqual(unlock(self.a, "o1"), dapr.UnlockResponse.LOCK_DOES_NOT_EXIST)
        for req, code, reason in [
                (dapr.TryLockRequest(store_name="lockstore", resource_id="r", lock_owner="o", expiry_in_seconds=0),
                 grpc.StatusCode.INVALID_ARGUMENT, "ERR_MALFORMED_REQUEST"),
                (dapr.TryLockRequest(store_name="lockstore", resource_id="", lock_owner="o", expiry_in_seconds=5),
                 grpc.StatusCode.INVALID_ARGUMENT, "ERR_MALFORMED_REQUEST"),
                (dapr.TryLockRequest(store_name="lockstore", resource_id="x||y", lock_owner="o", expiry_in_seconds=5),
                 grpc.StatusCode.INTERNAL, "ERR_TRY_LOCK"),
                (dapr.TryLockRequest(store_name="nope", resource_id="r", lock_owner="o", expiry_in_seconds=5),
                 grpc.StatusCode.INVALID_ARGUMENT, "ERR_LOCK_STORE_NOT_FOUND")]:
            self.assert_fails(self.a, "TryLockAlpha1", req, code, reason, dapr.TryLockResponse)
        self.assert_fails(self.a, "UnlockAlpha1", dapr.UnlockRequest(store_name="lockstore", resource_id="r"),
                          grpc.StatusCode.INVALID_ARGUMENT, "ERR_MALFORMED_REQUEST", dapr.UnlockResponse)

    def db(self):
        return sqlite3.connect(os.path.join(self.d.state, "configuration.db"))

    def test_configuration_get_subscribe_unsubscribe(self):
        r = call(self.a, "GetConfiguration", dapr.GetConfigurationRequest(store_name="configstore"),
                 dapr.GetConfigurationResponse)  # creates the table
        self.assertEqual(dict(r.items), {})
        with self.db() as db:
            db.execute("INSERT INTO configuration (key, value, version, metadata) VALUES "
                       "('k', 'v', '7', '{\"m\":\"x\"}'), ('other', 'o', '', '{}')")
        for name in ("GetConfiguration", "GetConfigurationAlpha1"):
            r = call(self.a, name, dapr.GetConfigurationRequest(store_name="configstore", keys=["k"]),
                     dapr.GetConfigurationResponse)
            self.assertEqual({k: (v.value, v.version, dict(v.metadata)) for k, v in r.items.items()},
                             {"k": ("v", "7", {"m": "x"})})
        self.assert_fails(self.a, "GetConfiguration", dapr.GetConfigurationRequest(store_name="nope"),
                          grpc.StatusCode.INVALID_ARGUMENT, "ERR_CONFIGURATION_STORE_NOT_FOUND",
                          dapr.GetConfigurationResponse)
        # a subscription on the stream, for key k only; a change made in the store itself reaches it
        fn = self.a.unary_stream(g.DAPR + "SubscribeConfiguration", request_serializer=lambda m: m.SerializeToString(),
                                 response_deserializer=dapr.SubscribeConfigurationResponse.FromString)
        it = fn(dapr.SubscribeConfigurationRequest(store_name="configstore", keys=["k"]), timeout=60)
        first = next(it)
        self.assertTrue(first.id)
        self.assertEqual(len(first.items), 0)
        got = queue.Queue()
        threading.Thread(target=lambda: [got.put(m) for m in it] + [got.put(None)], daemon=True).start()
        with self.db() as db:
            db.execute("UPDATE configuration SET value = 'other2' WHERE key = 'other'")
            db.execute("UPDATE configuration SET value = 'v2', version = '8' WHERE key = 'k'")
        m = got.get(timeout=30)
        self.assertEqual(m.id, first.id)
        self.assertEqual({k: (v.value, v.version) for k, v in m.items.items()}, {"k": ("v2", "8")})
        # another app cannot end it; an unknown id is ok=false, not an error
        r = call(self.b, "UnsubscribeConfiguration", dapr.UnsubscribeConfigurationRequest(
            store_name="configstore", id=first.id), dapr.UnsubscribeConfigurationResponse)
        self.assertFalse(r.ok)
        self.assertIn("does not exist", r.message)
        r = call(self.a, "UnsubscribeConfigurationAlpha1", dapr.UnsubscribeConfigurationRequest(
            store_name="configstore", id=first.id), dapr.UnsubscribeConfigurationResponse)
        self.assertTrue(r.ok)
        self.assertIsNone(got.get(timeout=30))  # the stream ended, OK
        # a subscriber that leaves ends its subscription (the daemon's leak check at exit sees the rest)
        gone = fn(dapr.SubscribeConfigurationRequest(store_name="configstore"), timeout=30)
        next(gone)
        gone.cancel()
        # errors of the stream
        bad = fn(dapr.SubscribeConfigurationRequest(store_name="nope"), timeout=30)
        with self.assertRaises(grpc.RpcError) as cm:
            next(bad)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(g.error_info(cm.exception), "ERR_CONFIGURATION_STORE_NOT_FOUND")

    def test_query_state(self):
        r = request(self.d.app_socket("a"), "POST", "/v1.0/state/statestore",
                    body=json.dumps([{"key": f"k{i}", "value": {"n": i, "even": i % 2 == 0}}
                                     for i in range(5)]).encode())
        self.assertEqual(r.status, 204, r)
        q = json.dumps({"filter": {"EQ": {"even": True}}, "sort": [{"key": "n", "order": "DESC"}],
                        "page": {"limit": 2}})
        r = call(self.a, "QueryStateAlpha1", dapr.QueryStateRequest(store_name="statestore", query=q),
                 dapr.QueryStateResponse)
        self.assertEqual([(i.key, json.loads(i.data)) for i in r.results],
                         [("k4", {"n": 4, "even": True}), ("k2", {"n": 2, "even": True})])
        self.assertTrue(r.results[0].etag)
        self.assertEqual(r.token, "2")
        # b sees none of a's keys
        r = call(self.b, "QueryStateAlpha1", dapr.QueryStateRequest(store_name="statestore", query=q),
                 dapr.QueryStateResponse)
        self.assertEqual((list(r.results), r.token), ([], ""))
        self.assert_fails(self.a, "QueryStateAlpha1", dapr.QueryStateRequest(store_name="statestore",
                                                                             query="{not json"),
                          grpc.StatusCode.INTERNAL, "ERR_STATE_QUERY", dapr.QueryStateResponse)
        self.assert_fails(self.a, "QueryStateAlpha1", dapr.QueryStateRequest(store_name="nope", query="{}"),
                          grpc.StatusCode.INVALID_ARGUMENT, "ERR_STATE_STORE_NOT_FOUND", dapr.QueryStateResponse)


if __name__ == "__main__":
    main()
