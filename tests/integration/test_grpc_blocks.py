#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The gRPC API of the blocks that landed after the gRPC front-end: secrets,
output and input bindings (to a gRPC app), actors, the distributed lock, the
configuration API and the state query API. Called with Debian's python3-grpcio
(grpc_support.py), against the real daemon and real stores; each RPC reaches
the same block as its HTTP route, so what one front-end does the other sees."""

import json
import os
import secrets
import shutil
import tempfile

import grpc_support as g  # first: may re-execute under Debian's python
from grpc_support import appcallback, call, common, dapr, empty_pb2, grpc
from harness import DaemonTestCase, main, request, wait_for

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


class BindingApp(g.CallbackApp):
    """The test's gRPC app, also reading input bindings: ListInputBindings lists self.inputs,
    OnBindingEvent records."""

    def __init__(self, path, inputs):
        super().__init__(path)
        self.inputs = inputs
        self.binding_events = []
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
        return appcallback.BindingEventResponse()


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
        ev = app.binding_events[0]
        self.assertEqual(ev.name, "tick")
        self.assertTrue(ev.data is not None)
        # the app does not list "other": it is not read for it
        wait_for(lambda: "does not read input binding other" in d.log(), what="other refused")
        self.assertEqual({e.name for e in app.binding_events}, {"tick"})
        # nothing went to OnInvoke (the HTTP shape of a delivery)
        self.assertEqual(app.invocations, [])


if __name__ == "__main__":
    main()
