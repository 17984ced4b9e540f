#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Dapr Resiliency policies (issue 14 part 8), against real apps and a real Redis.

Apps: retries reach a flaky app and stop after maxRetries (the caller then gets the
app's last answer, as daprd passes it through); a timeout cuts a slow app; a circuit
breaker opens after `trip`, fails calls fast without reaching the app, half-opens
after its timeout and closes on success. Components: an outbound retry policy on a
Redis state store carries saves over a Redis restart. A bad document on SIGHUP is
reported with file:line and the running policies stay."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from echoapp import EchoApp, Reply
from harness import MOORINGCTL, DaemonTestCase, free_port, main, request, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from servers import RedisServer  # noqa: E402

POLICIES = """apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: policies
spec:
  policies:
    timeouts:
      short: 300ms
    retries:
      three:
        policy: constant
        duration: 50ms
        maxRetries: 3
      fast:
        policy: exponential
        maxInterval: 100ms
        maxRetries: 5
    circuitBreakers:
      cb:
        maxRequests: 1
        timeout: 2s
        trip: consecutiveFailures >= 3
  targets:
    apps:
      flaky:
        retry: three
      slow:
        timeout: short
      fragile:
        circuitBreaker: cb
"""


def inv(app_id, method):
    return f"/v1.0/invoke/{app_id}/method/{method}"


class Counting:
    """An app that fails (500) its first `failures` calls, or while `failing` is set."""

    def __init__(self, failures=0):
        self.failures, self.failing, self.calls = failures, False, 0
        self.lock = threading.Lock()

    def __call__(self, req):
        with self.lock:
            self.calls += 1
            fail = self.failing or self.calls <= self.failures
        if req.target.startswith("/sleep"):
            time.sleep(3)
        return Reply(500, body=b"not now") if fail else Reply(200, body=b"ok")


class ResiliencyTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="mooring-res-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def app(self, name, handler):
        a = EchoApp(unix_path=os.path.join(self.tmp, f"{name}.sock"), handler=handler)
        self.addCleanup(a.stop)
        self.apps = getattr(self, "apps", {})
        self.apps[name] = a
        return a.start()

    def reload(self, d):
        n = len(d.notify.messages)
        d.signal(signal.SIGHUP)
        d.notify.wait("READY=1", after=n)

    def apps_daemon(self, **handlers):
        apps = {"a": "[App]\n"}
        for name, h in handlers.items():
            apps[name] = f"[App]\nAppAddress={self.app(name, h).address}\n"
        return self.daemon(apps=apps, components={"resiliency.yaml": POLICIES})

    def test_retries_timeout_and_breaker(self):
        flaky, plain, slow, fragile = Counting(failures=2), Counting(failures=2), Counting(), Counting()
        d = self.apps_daemon(flaky=flaky, plain=plain, slow=slow, fragile=fragile)
        sock = d.app_socket("a")

        # retries: two failures, then the answer
        r = request(sock, "POST", inv("flaky", "m"), body=b"x")
        self.assertEqual((r.status, r.body), (200, b"ok"), r)
        self.assertEqual(flaky.calls, 3)
        # an app no policy targets: its 500 goes back at once (no built-in retry of answers)
        r = request(sock, "POST", inv("plain", "m"), body=b"x")
        self.assertEqual(r.status, 500, r)
        self.assertEqual(plain.calls, 1)
        # gives up after maxRetries: 1 + 3 attempts, the app's last answer passed through
        flaky.failing = True
        r = request(sock, "POST", inv("flaky", "m"), body=b"x")
        self.assertEqual((r.status, r.body), (500, b"not now"), r)
        self.assertEqual(flaky.calls, 3 + 4)

        # timeout: the slow app's answer is not waited for
        r = request(sock, "GET", inv("slow", "sleep"))
        self.assertEqual(r.status, 500, r)
        self.assertEqual(r.json()["errorCode"], "ERR_DIRECT_INVOKE")
        self.assertIn("context deadline exceeded", r.json()["message"])

        # circuit breaker: three failures trip it
        fragile.failing = True
        for _ in range(3):
            self.assertEqual(request(sock, "GET", inv("fragile", "m")).status, 500)
        self.assertEqual(fragile.calls, 3)
        r = request(sock, "GET", inv("fragile", "m"))
        self.assertEqual(r.status, 500, r)
        self.assertEqual(r.json()["errorCode"], "ERR_DIRECT_INVOKE")
        self.assertIn("circuit breaker is open", r.json()["message"])
        self.assertEqual(fragile.calls, 3, "an open breaker lets no call through")
        cbs = d.get("/mooring/v1/resiliency").json()["circuitBreakers"]
        self.assertEqual([(b["caller"], b["target"], b["state"]) for b in cbs], [("a", "fragile", "open")])
        p = subprocess.run([MOORINGCTL, "--socket", d.api, "resiliency"], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout, r"\na +app +fragile +cb +open +0\n")
        self.assertRegex(p.stdout, r"target +app +flaky +timeout -, retry three, circuitBreaker -")
        # a reload that changes no Resiliency file keeps the breakers as they are
        # (a new set would have no breaker until the next call)
        self.reload(d)
        cbs = d.get("/mooring/v1/resiliency").json()["circuitBreakers"]
        self.assertEqual([(b["caller"], b["target"]) for b in cbs], [("a", "fragile")])
        self.assertIn(cbs[0]["state"], ("open", "half-open"))  # its timeout may have passed meanwhile

        # after its timeout one probe goes through (half-open); success closes it
        fragile.failing = False
        answers = []

        def probe():
            answers.append(request(sock, "GET", inv("fragile", "m")).status)
            return answers[-1] == 200
        wait_for(probe, timeout=15, interval=0.1, what="the breaker to half-open")
        self.assertEqual(fragile.calls, 4, f"only the probe reached the app: {answers}")
        for _ in range(3):
            self.assertEqual(request(sock, "GET", inv("fragile", "m")).status, 200)
        self.assertEqual(fragile.calls, 7)
        cbs = d.get("/mooring/v1/resiliency").json()["circuitBreakers"]
        self.assertEqual(cbs[0]["state"], "closed")

    def test_bad_document_keeps_policies(self):
        flaky = Counting(failures=1)
        d = self.apps_daemon(flaky=flaky)
        sock = d.app_socket("a")
        bad = POLICIES.replace("trip: consecutiveFailures >= 3", "trip: consecutiveFailures >= 3 || size(x) > 1")
        d.write_component("resiliency.yaml", bad)
        self.reload(d)
        line = bad.splitlines().index("        trip: consecutiveFailures >= 3 || size(x) > 1") + 1
        self.assertIn(f"resiliency.yaml:{line}: field 'spec.policies.circuitBreakers.trip'", d.log())
        self.assertIn("kept the previous version", d.log())
        r = request(sock, "POST", inv("flaky", "m"), body=b"x")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(flaky.calls, 2, "the retry policy still applies")
        docs = d.get("/mooring/v1/resiliency").json()["documents"]
        self.assertEqual(docs[0]["retries"]["three"]["maxRetries"], 3)

        # a good document replaces the set: no more retries for flaky
        d.write_component("resiliency.yaml", POLICIES.replace("      flaky:\n        retry: three\n", ""))
        self.reload(d)
        flaky.failing = True
        self.assertEqual(request(sock, "POST", inv("flaky", "m"), body=b"x").status, 500)
        self.assertEqual(flaky.calls, 3)

    def test_components_outbound_over_redis_restart(self):
        redis = RedisServer()
        self.addCleanup(redis.close)
        redis.start()
        docs = (STORE.format(host=redis.address) + "---\n" + BUS.format(host=redis.address) + "---\n" + STORE_POLICY)
        d = self.daemon(apps={"a": "[App]\n", "b": "[App]\n"}, components={"cache.yaml": docs})
        a, b = d.app_socket("a"), d.app_socket("b")
        self.assertEqual(save(a, "k", 1).status, 204)

        redis.stop()
        # b is outside the policy's scopes: its save fails at once
        r = save(b, "k", 2)
        self.assertEqual(r.status, 500, r)
        self.assertEqual(r.json()["errorCode"], "ERR_STATE_SAVE")
        # a's save waits through the outage, retried every 200 ms
        r = publish(b, 2)
        self.assertEqual(r.status, 500, r)
        self.assertEqual(r.json()["errorCode"], "ERR_PUBSUB_PUBLISH_MESSAGE", r)
        result, published = [], []
        t = threading.Thread(target=lambda: result.append(save(a, "k", 3)))
        t.start()
        self.addCleanup(t.join)
        t2 = threading.Thread(target=lambda: published.append(publish(a, 3)))
        t2.start()
        self.addCleanup(t2.join)
        wait_for(lambda: d.log().count("State save of 1 item(s) from app 'a' on 'cache': retried") >= 2,
                 timeout=30, what="retries while Redis is down")
        self.assertEqual(result, [], "the save did not wait for Redis")
        self.assertEqual(published, [], "the publish did not wait for Redis")
        redis.start()
        t.join(60)
        t2.join(60)
        self.assertEqual(result[0].status, 204, result[0])
        self.assertEqual(published[0].status, 204, published[0])
        r = request(a, "GET", "/v1.0/state/cache/k")
        self.assertEqual((r.status, r.json()), (200, 3), r)

    def test_state_bulk_get_outbound_over_redis_restart(self):
        redis = RedisServer()
        self.addCleanup(redis.close)
        redis.start()
        d = self.daemon(apps={"a": "[App]\n", "b": "[App]\n"},
                        components={"cache.yaml": STORE.format(host=redis.address) + "---\n" + STORE_POLICY})
        a, b = d.app_socket("a"), d.app_socket("b")
        self.assertEqual(save(a, "k1", 1).status, 204)
        self.assertEqual(save(a, "k2", 2).status, 204)

        redis.stop()
        # b is outside the policy's scopes: every key fails at once
        r = bulk_get(b, ["k1", "k2"])
        self.assertEqual(r.status, 200, r)
        self.assertEqual([("error" in i, "data" in i) for i in r.json()], [(True, False), (True, False)], r.json())
        # a's bulk get waits through the outage: the whole get is tried again every 200 ms
        result = []
        t = threading.Thread(target=lambda: result.append(bulk_get(a, ["k1", "k2"])))
        t.start()
        self.addCleanup(t.join)
        wait_for(lambda: d.log().count("State bulk get of 2 item(s) from app 'a' on 'cache': retried") >= 2,
                 timeout=30, what="bulk get retries while Redis is down")
        self.assertEqual(result, [], "the bulk get did not wait for Redis")
        redis.start()
        t.join(60)
        self.assertEqual(result[0].status, 200, result[0])
        # the fixture's Redis starts empty again: the keys are simply not there, no error
        self.assertEqual(result[0].json(), [{"key": "k1"}, {"key": "k2"}])

    def test_state_bulk_get_timeout_fails_as_a_whole(self):
        # daprd runs a bulk get as one operation under the store's policy: when the policy's timeout
        # ends it, the answer is 500 ERR_STATE_BULK_GET, not 200 with an error on every key
        redis = RedisServer()
        self.addCleanup(redis.close)
        redis.start()
        d = self.daemon(apps={"a": "[App]\n", "b": "[App]\n"},
                        components={"cache.yaml": STORE.format(host=redis.address) + "---\n" + BULK_TIMEOUT})
        a = d.app_socket("a")
        self.assertEqual(save(a, "k1", 1).status, 204)
        self.assertEqual([(i["key"], i.get("data")) for i in bulk_get(a, ["k1", "k2"]).json()], [("k1", 1), ("k2", None)])
        os.kill(redis.proc.pid, signal.SIGSTOP)  # takes the get and never answers
        self.addCleanup(lambda: redis.proc and os.kill(redis.proc.pid, signal.SIGCONT))
        r = bulk_get(a, ["k1", "k2"])
        self.assertEqual(r.status, 500, r)
        self.assertEqual(r.json()["errorCode"], "ERR_STATE_BULK_GET", r)
        self.assertIn("context deadline exceeded", r.json()["message"])
        os.kill(redis.proc.pid, signal.SIGCONT)

    def test_publish_timeout_over_paused_redis(self):
        redis = RedisServer()
        self.addCleanup(redis.close)
        redis.start()
        d = self.daemon(apps={"a": "[App]\n", "b": "[App]\n"},
                        components={"bus.yaml": BUS.format(host=redis.address) + "---\n" + PUBLISH_TIMEOUT})
        a, b = d.app_socket("a"), d.app_socket("b")
        self.assertEqual(publish(a, 1).status, 204)

        # a paused Redis takes the publish and never answers
        os.kill(redis.proc.pid, signal.SIGSTOP)
        self.addCleanup(lambda: redis.proc and os.kill(redis.proc.pid, signal.SIGCONT))
        # b: no policy, its publish waits for the broker (or the driver's own 3 s reply timeout)
        waiting = []
        t = threading.Thread(target=lambda: waiting.append(publish(b, 2)))
        t.start()
        self.addCleanup(t.join)
        # a: the policy's timeout (100 ms) ends each of its two attempts (retry: once)
        r = publish(a, 3)
        self.assertEqual(r.status, 500, r)
        self.assertEqual(r.json()["errorCode"], "ERR_PUBSUB_PUBLISH_MESSAGE", r)
        self.assertIn("context deadline exceeded", r.json()["message"])
        self.assertIn("Publish to pubsub 'bus' failed: context deadline exceeded", d.log())
        # bulk publish: every entry is published under the same policy
        entries = [{"entryId": str(i), "event": {"n": i}, "contentType": "application/json"} for i in range(2)]
        r = request(a, "POST", "/v1.0-alpha1/publish/bulk/bus/orders", body=json.dumps(entries).encode())
        self.assertEqual(r.status, 500, r)
        self.assertEqual(sorted(e["entryId"] for e in r.json()["failedEntries"]), ["0", "1"], r.json())
        self.assertTrue(all("context deadline exceeded" in e["error"] for e in r.json()["failedEntries"]), r.json())

        os.kill(redis.proc.pid, signal.SIGCONT)
        t.join(60)
        self.assertNotIn(b"context deadline exceeded", waiting[0].body, "b's publish has no timeout of the policy")
        # the broker answers the abandoned attempts late (or the driver reconnects); publishing goes on
        wait_for(lambda: publish(a, 4).status == 204, what="publishing after Redis resumed")

    def test_pubsub_inbound_retry_and_breaker(self):
        sub = Counting(failures=1000)
        d = self.daemon(start=False, apps={"a": "[App]\n", "sub": f"[App]\nAppAddress={self.app('sub', sub).address}\n"},
                        components={"resiliency.yaml": INBOUND_POLICY})
        os.makedirs(os.path.join(d.config, "subscriptions"), exist_ok=True)
        with open(os.path.join(d.config, "subscriptions", "orders.yaml"), "w") as f:
            f.write(SUBSCRIPTION)
        d.start()
        r = request(d.app_socket("a"), "POST", "/v1.0/publish/pubsub/orders", body=b'{"n": 1}',
                    headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 204, r)

        def breaker():
            cbs = d.get("/mooring/v1/resiliency").json()["circuitBreakers"]
            return cbs and (cbs[0]["caller"], cbs[0]["kind"], cbs[0]["target"], cbs[0]["state"])
        wait_for(lambda: breaker() == ("sub", "component", "pubsub", "open"), timeout=30,
                 what="the inbound breaker to open")
        # three failures tripped it (a delivery cut short by the subscription's restart when the
        # app turned healthy may have reached the app once more)
        calls = sub.calls
        self.assertIn(calls, (3, 4))
        # the broker keeps offering the message; the open breaker keeps it from the app
        wait_for(lambda: d.log().count("for app 'sub' not delivered: circuit breaker is open") >= 3, timeout=30,
                 what="redeliveries refused by the breaker")
        self.assertEqual(sub.calls, calls)
        # the policy's back-off, not the default one, spaced the redeliveries
        self.assertGreaterEqual(d.log().count("offered again in 100 ms (Resiliency policy 'quick')"), 2, d.log())

    def test_bulk_subscribe_inbound_timeout_retry_and_breaker(self):
        def slow_failure(req):
            if req.target == "/orders":
                time.sleep(1)
            return Reply(500, body=b"not now")

        def failure(req):
            return Reply(500, body=b"not now")
        d = self.daemon(start=False, apps={"a": "[App]\n",
                                           "sub": f"[App]\nAppAddress={self.app('sub', slow_failure).address}\n",
                                           "other": f"[App]\nAppAddress={self.app('other', failure).address}\n"},
                        components={"resiliency.yaml": BULK_INBOUND_POLICY})
        os.makedirs(os.path.join(d.config, "subscriptions"), exist_ok=True)
        with open(os.path.join(d.config, "subscriptions", "orders.yaml"), "w") as f:
            f.write(BULK_SUBSCRIPTION)
        d.start()
        for n in range(2):
            r = request(d.app_socket("a"), "POST", "/v1.0/publish/pubsub/orders", body=b'{"n": %d}' % n,
                        headers={"Content-Type": "application/json"})
            self.assertEqual(r.status, 204, r)

        def posts(name):
            return sum(1 for q in self.apps[name].requests if q.target == "/orders")

        def breakers():
            return [(b["caller"], b["kind"], b["target"], b["state"])
                    for b in d.get("/mooring/v1/resiliency").json()["circuitBreakers"]]
        # sub: each bulk POST is cut by the policy's timeout; three such failures trip the breaker
        wait_for(lambda: ("sub", "component", "pubsub", "open") in breakers(), timeout=30,
                 what="the inbound breaker to open on bulk deliveries")
        self.assertIn("in bulk to /orders failed: no answer within 0.3 s; retrying them.", d.log())
        # the broker keeps offering the messages; the open breaker keeps them from the app
        refused = "for app 'sub' not delivered in bulk: circuit breaker is open"
        wait_for(lambda: d.log().count(refused) >= 1, timeout=30, what="a bulk redelivery refused by the breaker")
        calls, n = posts("sub"), d.log().count(refused)
        self.assertGreaterEqual(calls, 3)
        wait_for(lambda: d.log().count(refused) >= n + 2, timeout=30, what="more bulk redeliveries refused")
        self.assertEqual(posts("sub"), calls)
        # the policy's back-off, not the default one, spaced the redeliveries
        self.assertGreaterEqual(d.log().count("for app 'sub' is offered again in 100 ms (Resiliency policy 'quick')"),
                                2, d.log())
        # other is outside the policy's scopes: default redelivery, no breaker, no policy back-off
        wait_for(lambda: posts("other") >= 3, timeout=30, what="redeliveries to the app without a policy")
        self.assertNotIn("for app 'other' is offered again in 100 ms", d.log())
        self.assertEqual([b for b in breakers() if b[0] == "other"], [])

    def test_input_binding_inbound_retries(self):
        tick = Counting(failures=2)
        d = self.daemon(apps={"cronapp": f"[App]\nAppAddress={self.app('cronapp', tick).address}\n"},
                        components={"tick.yaml": TICK})
        wait_for(lambda: tick.calls >= 3, timeout=30, what="three POSTs of the cron binding")
        reqs = self.apps["cronapp"].requests
        first = reqs[0].header("readTimeUTC")
        # the cron source does not redeliver: the policy sent the first tick again, twice
        self.assertEqual([r.header("readTimeUTC") for r in reqs[:3]], [first] * 3)
        self.assertEqual(d.log().count("Event of binding tick is sent again in 50 ms (Resiliency policy 'again')"), 2)

    def test_output_binding_outbound_retries(self):
        target = Counting(failures=2)
        web = EchoApp(port=free_port(), handler=target)
        self.addCleanup(web.stop)
        web.start()
        url = f"http://127.0.0.1:{web.port}/hook"  # "/" would be the echo app's health probe
        d = self.daemon(apps={"a": "[App]\n"}, components={"out.yaml": OUT.format(url=url)})
        sock = d.app_socket("a")
        body = json.dumps({"operation": "post", "data": {"n": 1}}).encode()
        # no policy: the web server's first 500 is the answer
        r = request(sock, "POST", "/v1.0/bindings/plain", body=body)
        self.assertEqual(r.status, 500, r)
        self.assertEqual(r.json()["errorCode"], "ERR_INVOKE_OUTPUT_BINDING")
        self.assertEqual(target.calls, 1)
        # the policy sends it again: one more failure, then the answer
        r = request(sock, "POST", "/v1.0/bindings/out", body=body)
        self.assertEqual((r.status, r.body), (200, b"ok"), r)
        self.assertEqual(target.calls, 3)

    def actor_daemon(self, policy):
        from test_actors import AppProcess
        d = self.daemon(start=False, apps={"caller": "[App]\n"}, components={"actors.yaml": policy})
        app = AppProcess(d.tmp, d.app_socket("host")).start()
        self.addCleanup(app.kill)
        d.write_app("host", f"[App]\nAppAddress={app.address}\nHealthCheckPath=/healthz\nHealthProbeInterval=100ms\n")
        d.start()

        def hosted():
            r = d.get("/mooring/v1/actors")
            return r.status == 200 and all(any(t["type"] == n and t["reminderState"] == "loaded" for t in r.json())
                                           for n in ("Counter", "Reent", "Idle"))
        wait_for(hosted, what="actor types hosted")
        return d, app

    def test_actor_retries_and_breakers(self):
        d, app = self.actor_daemon(ACTOR_CALL_POLICY)
        sock = d.app_socket("caller")

        def call(typ, aid, method, query=""):
            return request(sock, "PUT", f"/v1.0/actors/{typ}/{aid}/method/{method}" + (f"?{query}" if query else ""))

        def calls(typ, aid, method):
            return len(app.entries("method", type=typ, id=aid, name=method))

        def breakers():
            return {b["target"]: (b["caller"], b["kind"], b["state"])
                    for b in d.get("/mooring/v1/resiliency").json()["circuitBreakers"]}

        # retries: two failures, then the answer; the app saw three calls
        r = call("Counter", "1", "flaky", "n=2")
        self.assertEqual((r.status, r.body), (200, b"ok"), r)
        self.assertEqual(calls("Counter", "1", "flaky"), 3)
        self.assertEqual(d.log().count("Actor call Counter/1 is sent again in 50 ms (Resiliency policy 'again'"), 2)
        # a type no policy targets: one call, its failure answered at once
        r = call("Reent", "1", "fail")
        self.assertEqual(r.status, 500, r)
        self.assertEqual(calls("Reent", "1", "fail"), 1)
        # 404 is "actor method not found" to daprd: not retried
        r = call("Counter", "9", "status", "code=404")
        self.assertEqual(r.status, 500, r)
        self.assertEqual(calls("Counter", "9", "status"), 1)

        # scope id: three failures trip Counter/2's breaker, which ends the retries (5 allowed)
        r = call("Counter", "2", "fail")
        self.assertEqual(r.status, 500, r)
        self.assertEqual(r.json()["errorCode"], "ERR_ACTOR_INVOKE_METHOD")
        self.assertIn("circuit breaker is open", r.json()["message"])
        self.assertEqual(calls("Counter", "2", "fail"), 3)
        r = call("Counter", "2", "echo")
        self.assertEqual(r.status, 500, r)
        self.assertIn("circuit breaker is open", r.json()["message"])
        self.assertEqual(calls("Counter", "2", "echo"), 0, "an open breaker lets no call through")
        # ... and only for that actor id
        self.assertEqual(call("Counter", "3", "echo").status, 200)
        cbs = breakers()
        self.assertEqual(cbs["Counter-2"], ("caller", "actor", "open"))
        self.assertEqual(cbs["Counter-3"][2], "closed")
        # circuitBreakerCacheSize 3: Counter-1's breaker, the least recently used, was forgotten
        self.assertNotIn("Counter-1", cbs)
        # two more ids push out Counter-9's, then Counter-2's: daprd's LRU forgets an open breaker too
        self.assertEqual(call("Counter", "4", "echo").status, 200)
        self.assertEqual(call("Counter", "5", "echo").status, 200)
        self.assertEqual(sorted(t for t in breakers() if t.startswith("Counter")),
                         ["Counter-3", "Counter-4", "Counter-5"])
        self.assertEqual(call("Counter", "2", "echo").status, 200)
        self.assertEqual(calls("Counter", "2", "echo"), 1)

        # scope type: one breaker for every Idle actor
        for _ in range(3):
            self.assertEqual(call("Idle", "a", "fail").status, 500)
        self.assertEqual(calls("Idle", "a", "fail"), 3, "no retry policy for Idle")
        r = call("Idle", "b", "echo")
        self.assertEqual(r.status, 500, r)
        self.assertIn("circuit breaker is open", r.json()["message"])
        self.assertEqual(breakers()["Idle"], ("caller", "actor", "open"))
        # after its timeout (5 s) one probe goes through; its success closes the breaker
        wait_for(lambda: call("Idle", "b", "echo").status == 200, timeout=15, interval=0.1,
                 what="the Idle breaker to half-open")
        self.assertEqual(calls("Idle", "b", "echo"), 1, "only the probe reached the app")
        self.assertEqual(breakers()["Idle"][2], "closed")
        self.assertEqual(call("Idle", "a", "echo").status, 200)

    def test_actor_timeout(self):
        from test_actors import AppProcess
        d = self.daemon(start=False, apps={"caller": "[App]\n"}, components={"actors.yaml": ACTOR_POLICY})
        app = AppProcess(d.tmp, d.app_socket("host")).start()
        self.addCleanup(app.kill)
        d.write_app("host", f"[App]\nAppAddress={app.address}\nHealthCheckPath=/healthz\nHealthProbeInterval=100ms\n")
        d.start()

        def hosted():
            r = d.get("/mooring/v1/actors")
            return r.status == 200 and any(t["type"] == "Counter" and t["reminderState"] == "loaded" for t in r.json())
        wait_for(hosted, what="actor type Counter hosted")
        sock = d.app_socket("caller")
        r = request(sock, "PUT", "/v1.0/actors/Counter/1/method/slow?ms=20")
        self.assertEqual(r.status, 200, r)
        # the actor type's timeout cuts a turn the app takes 5 s for
        r = request(sock, "PUT", "/v1.0/actors/Counter/1/method/slow?ms=5000")
        self.assertEqual(r.status, 500, r)
        self.assertEqual(r.json()["errorCode"], "ERR_ACTOR_INVOKE_METHOD")


ACTOR_CALL_POLICY = """apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: actor-calls
spec:
  policies:
    retries:
      again:
        policy: constant
        duration: 50ms
        maxRetries: 5
    circuitBreakers:
      cb:
        maxRequests: 1
        timeout: 5s
        trip: consecutiveFailures >= 3
  targets:
    actors:
      Counter:
        retry: again
        circuitBreaker: cb
        circuitBreakerScope: id
        circuitBreakerCacheSize: 3
      Idle:
        circuitBreaker: cb
        circuitBreakerScope: type
"""


ACTOR_POLICY = """apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: actors
spec:
  policies:
    timeouts:
      turn: 1s
  targets:
    actors:
      Counter:
        timeout: turn
"""

OUT = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: out
spec:
  type: bindings.http
  version: v1
  metadata:
  - name: url
    value: "{url}"
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: plain
spec:
  type: bindings.http
  version: v1
  metadata:
  - name: url
    value: "{url}"
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: out
spec:
  policies:
    retries:
      again:
        duration: 50ms
        maxRetries: 3
  targets:
    components:
      out:
        outbound:
          retry: again
"""

TICK = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: tick
spec:
  type: bindings.cron
  version: v1
  metadata:
  - name: schedule
    value: "@every 1s"
  - name: direction
    value: input
---
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: ticks
spec:
  policies:
    retries:
      again:
        duration: 50ms
        maxRetries: 3
  targets:
    components:
      tick:
        inbound:
          retry: again
"""

INBOUND_POLICY = """apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: inbound
spec:
  policies:
    retries:
      quick:
        duration: 100ms
        maxRetries: 5
    circuitBreakers:
      inb:
        timeout: 1h
        trip: consecutiveFailures >= 3
  targets:
    components:
      pubsub:
        inbound:
          retry: quick
          circuitBreaker: inb
"""

SUBSCRIPTION = """apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: orders
spec:
  pubsubname: pubsub
  topic: orders
  routes:
    default: /orders
scopes: [sub]
"""

BULK_INBOUND_POLICY = """apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: inbound
scopes: [sub]
spec:
  policies:
    timeouts:
      short: 300ms
    retries:
      quick:
        duration: 100ms
        maxRetries: 5
    circuitBreakers:
      inb:
        timeout: 1h
        trip: consecutiveFailures >= 3
  targets:
    components:
      pubsub:
        inbound:
          timeout: short
          retry: quick
          circuitBreaker: inb
"""

BULK_SUBSCRIPTION = """apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: orders
spec:
  pubsubname: pubsub
  topic: orders
  routes:
    default: /orders
  bulkSubscribe:
    enabled: true
    maxMessagesCount: 10
    maxAwaitDurationMs: 200
scopes: [sub, other]
"""

STORE = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: cache
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: "{host}"
"""

STORE_POLICY = """apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: store
scopes: [a]
spec:
  policies:
    retries:
      patient:
        duration: 200ms
        maxRetries: 150
  targets:
    components:
      cache:
        outbound:
          retry: patient
      bus:
        outbound:
          retry: patient
"""

BULK_TIMEOUT = """apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: bulk
scopes: [a]
spec:
  policies:
    timeouts:
      short: 200ms
  targets:
    components:
      cache:
        outbound:
          timeout: short
"""

PUBLISH_TIMEOUT = """apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: publish
scopes: [a]
spec:
  policies:
    timeouts:
      short: 100ms
    retries:
      once:
        duration: 10ms
        maxRetries: 1
  targets:
    components:
      bus:
        outbound:
          timeout: short
          retry: once
"""

BUS = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: bus
spec:
  type: pubsub.redis
  version: v1
  metadata:
  - name: redisHost
    value: "{host}"
"""


def publish(sock, n):
    return request(sock, "POST", "/v1.0/publish/bus/orders", body=b'{"n": %d}' % n,
                   headers={"Content-Type": "application/json"})


def bulk_get(sock, keys):
    return request(sock, "POST", "/v1.0/state/cache/bulk", body=json.dumps({"keys": keys}).encode())


def save(sock, key, value):
    return request(sock, "POST", "/v1.0/state/cache", body=json.dumps([{"key": key, "value": value}]).encode())


if __name__ == "__main__":
    main()
