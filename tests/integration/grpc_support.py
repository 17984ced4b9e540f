# SPDX-License-Identifier: Apache-2.0
"""An independent gRPC client (and server) for the integration tests: Debian's
python3-grpcio, with message classes generated at test time by protoc from
mooring's proto/ files. Methods are called by their full path
(channel.unary_unary("/dapr.proto.runtime.v1.Dapr/GetState", ...)), so no
service stubs (grpc_tools) are needed.

Import this module first: when the running python has no grpc module, it
re-executes the test under /usr/bin/python3 (Debian's, where python3-grpcio
lives)."""

import os
import shutil
import subprocess
import sys
import tempfile

try:
    import grpc  # noqa: F401
except ImportError:
    if sys.executable != "/usr/bin/python3" and os.path.exists("/usr/bin/python3") and \
            not os.environ.get("MOORING_GRPC_REEXEC"):
        os.environ["MOORING_GRPC_REEXEC"] = "1"
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    from harness import skip_or_fail
    skip_or_fail("python3-grpcio is not installed (apt install python3-grpcio python3-protobuf)")
    raise

import grpc  # noqa: E402

from harness import skip_or_fail  # noqa: E402

PROTO_DIR = os.environ.get("MOORING_PROTO_DIR",
                           os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto"))
PROTOS = ["dapr/proto/common/v1/common.proto", "dapr/proto/runtime/v1/appcallback.proto",
          "dapr/proto/runtime/v1/dapr.proto"]
DAPR = "/dapr.proto.runtime.v1.Dapr/"


def _generate():
    if not shutil.which("protoc"):
        skip_or_fail("protoc is not installed (apt install protobuf-compiler)")
    out = tempfile.mkdtemp(prefix="mooring-pb-")
    # google.rpc.Status under a file name of its own: the google package is python3-protobuf's
    shutil.copy(os.path.join(PROTO_DIR, "google", "rpc", "status.proto"), os.path.join(out, "rpc_status.proto"))
    subprocess.run(["protoc", "-I", PROTO_DIR, "-I", out, "--python_out", out] + PROTOS + ["rpc_status.proto"],
                   check=True)
    sys.path.insert(0, out)
    return out


_OUT = _generate()

from dapr.proto.common.v1 import common_pb2 as common  # noqa: E402
from dapr.proto.runtime.v1 import appcallback_pb2 as appcallback  # noqa: E402
from dapr.proto.runtime.v1 import dapr_pb2 as dapr  # noqa: E402
from google.protobuf import any_pb2, empty_pb2  # noqa: E402,F401
import rpc_status_pb2 as rpc_status  # noqa: E402


def channel(target, **options):
    """target: a Unix socket path or a port on 127.0.0.1."""
    addr = f"unix:{target}" if isinstance(target, str) else f"127.0.0.1:{target}"
    return grpc.insecure_channel(addr, options=list(options.items()))


def unary(ch, method, req, resp_type, **kw):
    """Calls /dapr.proto.runtime.v1.Dapr/<method> (or a full path). Returns (response, call)."""
    path = method if method.startswith("/") else DAPR + method
    fn = ch.unary_unary(path, request_serializer=lambda m: m.SerializeToString(),
                        response_deserializer=resp_type.FromString)
    return fn.with_call(req, **kw)


def call(ch, method, req, resp_type=empty_pb2.Empty, **kw):
    return unary(ch, method, req, resp_type, **kw)[0]


def error_info(err):
    """The ErrorInfo reason of a grpc.RpcError's grpc-status-details-bin, or None."""
    for k, v in (err.trailing_metadata() or ()):
        if k == "grpc-status-details-bin":
            st = rpc_status.Status.FromString(v)
            for d in st.details:
                if d.type_url.endswith("google.rpc.ErrorInfo"):
                    return rpc_status.ErrorInfo.FromString(d.value).reason
    return None


# ---- raw HTTP/2, for peers that break the protocol on purpose ----

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 7, 8, 9
END_STREAM, END_HEADERS = 0x1, 0x4


def frame(ftype, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload


def _hpack_int(n, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if n < limit:
        return bytes([first | n])
    out = [first | limit]
    n -= limit
    while n >= 128:
        out.append((n % 128) | 128)
        n //= 128
    out.append(n)
    return bytes(out)


def hpack(headers):
    """Literal header fields without indexing, no Huffman coding (RFC 7541 6.2.2)."""
    out = b""
    for name, value in headers:
        name, value = name.encode(), value.encode()
        out += b"\x00" + _hpack_int(len(name), 7) + name + _hpack_int(len(value), 7) + value
    return out


def grpc_message(msg):
    body = msg.SerializeToString()
    return b"\x00" + len(body).to_bytes(4, "big") + body


def request_headers(method, extra=()):
    return [(":method", "POST"), (":scheme", "http"), (":path", DAPR + method), (":authority", "localhost"),
            ("content-type", "application/grpc"), ("te", "trailers")] + list(extra)


def read_frames(sock, until_close=True, timeout=10):
    """Frames the server sent, as (type, flags, stream, payload), until it closes (or the timeout)."""
    sock.settimeout(timeout)
    buf, frames = b"", []
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
            while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
                n = int.from_bytes(buf[:3], "big")
                frames.append((buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7fffffff, buf[9:9 + n]))
                buf = buf[9 + n:]
            if not until_close and frames:
                break
    except OSError:
        pass
    return frames


# ---- a gRPC app (AppProtocol=grpc): Dapr's AppCallback service in grpcio ----

class CallbackApp:
    """A grpc.server on a Unix socket implementing AppCallback (OnInvoke echoes, ListTopicSubscriptions
    lists self.subscriptions, OnTopicEvent records and answers self.topic_status), HealthCheck, and,
    for proxying, a service of its own (/test.Echo/{Unary,ServerStream,ClientStream,Bidi})."""

    def __init__(self, path):
        from concurrent import futures
        self.path = path
        self.invocations = []
        self.events = []
        self.metadata = []
        self.subscriptions = []
        self.bulk = []
        self.bulk_status = {}
        self.topic_status = appcallback.TopicEventResponse.SUCCESS
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        pb = lambda t: dict(request_deserializer=t.FromString, response_serializer=lambda m: m.SerializeToString())
        raw = dict(request_deserializer=lambda b: b, response_serializer=lambda b: b)
        handlers = {
            "OnInvoke": grpc.unary_unary_rpc_method_handler(self.on_invoke, **pb(common.InvokeRequest)),
            "ListTopicSubscriptions": grpc.unary_unary_rpc_method_handler(
                self.list_subscriptions, **pb(empty_pb2.Empty)),
            "OnTopicEvent": grpc.unary_unary_rpc_method_handler(self.on_topic_event,
                                                                **pb(appcallback.TopicEventRequest)),
        }
        self.server.add_generic_rpc_handlers((
            grpc.method_handlers_generic_handler("dapr.proto.runtime.v1.AppCallback", handlers),
            grpc.method_handlers_generic_handler("dapr.proto.runtime.v1.AppCallbackAlpha", {
                "OnBulkTopicEventAlpha1": grpc.unary_unary_rpc_method_handler(
                    self.on_bulk, **pb(appcallback.TopicEventBulkRequest))}),
            grpc.method_handlers_generic_handler("dapr.proto.runtime.v1.AppCallbackHealthCheck", {
                "HealthCheck": grpc.unary_unary_rpc_method_handler(
                    lambda req, ctx: appcallback.HealthCheckResponse(), **pb(empty_pb2.Empty))}),
            grpc.method_handlers_generic_handler("test.Echo", {
                "Unary": grpc.unary_unary_rpc_method_handler(self.echo_unary, **raw),
                "ServerStream": grpc.unary_stream_rpc_method_handler(self.echo_server_stream, **raw),
                "ClientStream": grpc.stream_unary_rpc_method_handler(self.echo_client_stream, **raw),
                "Bidi": grpc.stream_stream_rpc_method_handler(self.echo_bidi, **raw),
            }),
        ))
        self.server.add_insecure_port(f"unix:{path}")

    def start(self):
        self.server.start()
        return self

    def stop(self):
        self.server.stop(0)

    def on_invoke(self, req, ctx):
        self.invocations.append(req)
        self.metadata.append(dict(ctx.invocation_metadata()))
        if req.method.startswith("fail/"):
            ctx.abort(grpc.StatusCode.NOT_FOUND, "no " + req.method)
        return common.InvokeResponse(data=any_pb2.Any(value=b"echo:" + req.data.value), content_type="text/x-echo")

    def list_subscriptions(self, req, ctx):
        return appcallback.ListTopicSubscriptionsResponse(subscriptions=self.subscriptions)

    def on_topic_event(self, req, ctx):
        self.events.append(req)
        return appcallback.TopicEventResponse(status=self.topic_status)

    def on_bulk(self, req, ctx):
        self.bulk.append(req)
        return appcallback.TopicEventBulkResponse(statuses=[appcallback.TopicEventBulkResponseEntry(
            entry_id=e.entry_id, status=self.bulk_status.get(e.cloud_event.data.decode(), 0)) for e in req.entries])

    def echo_unary(self, req, ctx):
        self.metadata.append(dict(ctx.invocation_metadata()))
        return b"unary:" + req

    def echo_server_stream(self, req, ctx):
        for i in range(3):
            yield b"%d:" % i + req

    def echo_client_stream(self, it, ctx):
        return b"+".join(it)

    def echo_bidi(self, it, ctx):
        for m in it:
            yield b"bidi:" + m
