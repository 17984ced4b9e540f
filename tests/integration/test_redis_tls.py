#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""TLS to Redis (issue 14, part 6): enableTLS with the server verified against caCert and
redisHost, client certificates (clientCert/clientKey, PEM text as Dapr takes them), and
what happens when TLS cannot be made: a clear error in the answer, and reconnect attempts
that back off instead of spinning.

Every server here is a real redis-server speaking TLS on its address (a plain port stays
open for the test's own INFO), with certificates made by openssl for the test."""

import json
import os
import sys
import tempfile
import time

from harness import DaemonTestCase, main, request, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from servers import RedisServer, make_tls_certs  # noqa: E402

APP = "[App]\n"


def component(name, metadata, type_="state.redis"):
    items = "".join(f"  - name: {k}\n    value: {json.dumps(v)}\n" for k, v in metadata)
    return (f"apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\n"
            f"spec:\n  type: {type_}\n  version: v1\n  metadata:\n{items}")


def save(sock, store, key, value):
    return request(sock, "POST", f"/v1.0/state/{store}", body=json.dumps([{"key": key, "value": value}]).encode())


def get(sock, store, key):
    return request(sock, "GET", f"/v1.0/state/{store}/{key}")


def without(metadata, *names):
    return [(k, v) for k, v in metadata if k not in names]


class RedisTlsTest(DaemonTestCase):
    def server(self, **kw):
        s = RedisServer(tls=True, **kw)
        self.addCleanup(s.close)
        return s.start()

    def test_client_certificate_and_restart(self):
        """A server that requires client certificates: the store with clientCert/clientKey works,
        also after the server restarts; the same store without them gets a clear error."""
        redis = self.server(auth_clients=True)
        with_cert = redis.metadata
        no_cert = without(redis.metadata, "clientCert", "clientKey")
        d = self.daemon(apps={"a": APP}, components={"tls.yaml": component("tls", with_cert),
                                                     "nocert.yaml": component("nocert", no_cert)})
        sock = d.app_socket("a")
        self.assertEqual(save(sock, "tls", "k", {"over": "tls"}).status, 204)
        r = get(sock, "tls", "k")
        self.assertEqual((r.status, r.json()), (200, {"over": "tls"}))
        self.assertEqual(redis.command("EXISTS", "a||k"), b":1")  # it is really in that server

        r = save(sock, "nocert", "k2", 1)
        self.assertEqual(r.status, 500, r)
        self.assertIn("TLS", r.json()["message"])
        self.assertIn("certificate", r.json()["message"])

        redis.stop()
        self.assertEqual(save(sock, "tls", "k", 2).status, 500)
        redis.start()
        wait_for(lambda: save(sock, "tls", "k", 3).status == 204, what="a save after the server restarted")
        self.assertEqual(get(sock, "tls", "k").json(), 3)
        d.assert_running()

    def test_refused_server_certificates(self):
        """The wrong CA and a certificate for another name are refused with the reason in the
        answer, and the daemon retries with backoff, not in a loop; insecureSkipTLSVerify accepts
        the other name, and redisHost given as a DNS name is checked as one (SNI)."""
        redis = self.server()
        other = self.server()  # its own CA and certificate
        elsewhere = RedisServer(tls=True)  # certificate for another name, from redis's CA
        self.addCleanup(elsewhere.close)
        wrong_name_dir = tempfile.mkdtemp(prefix="mooring-tls-", dir=elsewhere.tmp)
        make_tls_certs(wrong_name_dir, server_names=("DNS:elsewhere.example",))
        elsewhere.certs = wrong_name_dir
        elsewhere.start()
        with open(os.path.join(wrong_name_dir, "ca.pem")) as f:
            elsewhere_ca = f.read()
        port = redis.address.rsplit(":", 1)[1]

        wrong_ca = without(redis.metadata, "caCert") + [("caCert", dict(other.metadata)["caCert"])]
        wrong_name = [("redisHost", elsewhere.address), ("enableTLS", "true"), ("caCert", elsewhere_ca)]
        skip_verify = [("redisHost", elsewhere.address), ("enableTLS", "true"), ("insecureSkipTLSVerify", "true")]
        by_name = without(redis.metadata, "redisHost") + [("redisHost", f"localhost:{port}")]
        d = self.daemon(apps={"a": APP}, components={"wrongca.yaml": component("wrongca", wrong_ca),
                                                     "wrongname.yaml": component("wrongname", wrong_name),
                                                     "skip.yaml": component("skip", skip_verify),
                                                     "byname.yaml": component("byname", by_name)})
        sock = d.app_socket("a")

        r = save(sock, "wrongca", "k", 1)
        self.assertEqual(r.status, 500, r)
        self.assertIn("server certificate refused", r.json()["message"])
        r = save(sock, "wrongname", "k", 1)
        self.assertEqual(r.status, 500, r)
        self.assertIn("server certificate refused", r.json()["message"])
        self.assertIn("mismatch", r.json()["message"])

        self.assertEqual(save(sock, "skip", "k", "unverified").status, 204)
        self.assertEqual(get(sock, "skip", "k").json(), "unverified")
        self.assertEqual(save(sock, "byname", "k", "by name").status, 204)
        self.assertEqual(get(sock, "byname", "k").json(), "by name")

        # Attempts with the wrong CA back off (100 ms doubling to 5 s): a handful in the first
        # seconds, where a loop that does not wait would make thousands. The server logs each
        # handshake it refuses; only wrongca is refused by this server.
        time.sleep(3)
        attempts = redis.log().count("Error accepting a client connection")
        self.assertGreaterEqual(attempts, 2, redis.log())  # it does retry
        self.assertLess(attempts, 30, f"{attempts} refused handshakes in a few seconds")
        r = save(sock, "wrongca", "k", 1)
        self.assertEqual(r.status, 500, r)
        self.assertIn("server certificate refused", r.json()["message"])
        d.assert_running()


if __name__ == "__main__":
    main()
