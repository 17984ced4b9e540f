#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The peer listener ([Cluster] PeerListen=): mutual TLS between mooringd hosts.

A Python ssl client plays the other host, with keys and certificates made by
`mooringctl ca init` / `ca issue` (and, for the certificates mooringctl would
never make, python3-cryptography signing with the same root's key). It calls a
local app through the peer listener; the daemon must

- serve service invocation to its local app, with the caller's app id from
  mooring-caller-app and the caller's trust domain from the certificate's
  spiffe:// URI, both reaching accessControl (a policy denying a trust domain
  refuses the call before the app sees it);
- refuse, with nothing reaching the app: no client certificate, one from
  another root, an expired one, one whose DNS name and spiffe:// host differ,
  one without a spiffe:// URI;
- answer 404 (Dapr's error shape) for every route not meant for peers;
- reload its certificate on SIGHUP (new connections get the renewed one,
  connections already up go on), keep the old one when the new file is bad,
  and warn when the certificate expires within 7 days;
- take the listener from systemd socket activation (fd named "peer").
"""

import datetime
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile

from echoapp import EchoApp
from harness import MOORINGCTL, TIMEOUT, DaemonTestCase, free_port, main, skip_or_fail, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from servers import RedisServer  # noqa: E402

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
except ImportError:  # pragma: no cover
    x509 = None

ACL_YAML = """apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: appconfig
spec:
  accessControl:
    defaultAction: allow
    trustDomain: public
    policies:
    - appId: a
      trustDomain: evil
      defaultAction: deny
"""


def ctl(*args):
    p = subprocess.run([MOORINGCTL] + list(args), capture_output=True, text=True, timeout=TIMEOUT)
    if p.returncode != 0:
        raise AssertionError(f"mooringctl {' '.join(args)} failed: {p.stderr}")
    return p.stdout


class Pki:
    """Two roots in tmp: 'public' (trusted, with a second trusted root 'evil' in the bundle) and
    'other' (not trusted). Host pairs are issued by mooringctl."""

    def __init__(self, tmp):
        self.tmp = tmp
        for name, td in (("public", "public"), ("evil", "evil"), ("other", "public")):
            ctl("ca", "init", "--dir", self.dir(name), "--trust-domain", td)
        self.bundle = os.path.join(tmp, "trusted.crt")
        with open(self.bundle, "w") as out:
            for name in ("public", "evil"):
                with open(os.path.join(self.dir(name), "ca.crt")) as f:
                    out.write(f.read())

    def dir(self, root):
        return os.path.join(self.tmp, root)

    def issue(self, host, root="public", days=None, ip=None):
        args = ["ca", "issue", host, "--dir", self.dir(root)]
        if days:
            args += ["--days", str(days)]
        if ip:
            args += ["--ip", ip]
        ctl(*args)
        return os.path.join(self.dir(root), host + ".crt"), os.path.join(self.dir(root), host + ".key")

    def forge(self, name, root="public", dns="h1", uri="spiffe://public/mooring/host/h1", expired=False):
        """A certificate mooringctl would not make, signed by root's real key."""
        with open(os.path.join(self.dir(root), "ca.key"), "rb") as f:
            ca_key = serialization.load_pem_private_key(f.read(), None)
        with open(os.path.join(self.dir(root), "ca.crt"), "rb") as f:
            ca = x509.load_pem_x509_certificate(f.read())
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        start, end = (now - datetime.timedelta(days=30), now - datetime.timedelta(days=1)) if expired else \
            (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=30))
        sans = [x509.DNSName(dns)] + ([x509.UniformResourceIdentifier(uri)] if uri else [])
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns)]))
                .issuer_name(ca.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .sign(ca_key, hashes.SHA256()))
        crt, keyf = os.path.join(self.tmp, name + ".crt"), os.path.join(self.tmp, name + ".key")
        with open(crt, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(keyf, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        return crt, keyf


class PeerConn:
    """An HTTP/1.1 connection over mutual TLS to a peer listener, as another host would make."""

    def __init__(self, port, pki, cert, server_host="h2", trust=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(trust or os.path.join(pki.dir("public"), "ca.crt"))
        if cert:
            ctx.load_cert_chain(*cert)
        raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=server_host)
        except Exception:
            raw.close()
            raise
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        self.conn.sock = self.sock

    def request(self, path, method="GET", headers=None, body=None):
        self.conn.request(method, path, body=body, headers=headers or {})
        r = self.conn.getresponse()
        return r.status, r.read()

    def close(self):
        self.conn.close()


def refused(port, pki, cert):
    """True when the peer listener refuses the connection (handshake or the first read fails)."""
    try:
        c = PeerConn(port, pki, cert)
        try:
            c.request("/v1.0/invoke/b/method/x", headers={"mooring-caller-app": "a"})
        finally:
            c.close()
    except (ssl.SSLError, ConnectionError, http.client.HTTPException, OSError):
        return True
    return False


class PeerTlsTest(DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        # [Cluster] needs a membership; what it is does not matter here: one Redis for every test
        cls.redis = RedisServer(tls=False)
        try:
            cls.redis.start()
        except Exception as e:  # pragma: no cover
            cls.redis.close()
            skip_or_fail(f"redis-server cannot start: {e}")
        cls.membership = f"Membership=redis\nMembershipConnection=redis://{cls.redis.address}/0\n"

    @classmethod
    def tearDownClass(cls):
        cls.redis.close()

    def setUp(self):
        super().setUp()
        if x509 is None:
            skip_or_fail("python3-cryptography is not installed")
        self.tmp = tempfile.mkdtemp(prefix="mooring-peer-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.pki = Pki(self.tmp)
        self.server_cert = self.pki.issue("h2", ip="127.0.0.1")
        self.client_cert = self.pki.issue("h1")
        self.app = EchoApp(unix_path=os.path.join(self.tmp, "b.sock")).start()
        self.addCleanup(self.app.stop)

    def start(self, activate=False, cert=None, extra=""):
        self.port = free_port()
        crt, key = cert or self.server_cert
        conf = (f"[Cluster]\nHostId=h2\nPeerListen=127.0.0.1:{self.port}\n{self.membership}"
                f"CertificateFile={crt}\nKeyFile={key}\nTrustRootFile={self.pki.bundle}\n{extra}")
        d = self.daemon(start=False, conf=conf, apps={"b": f"[App]\nAppAddress={self.app.address}\n",
                                                      "a": "[App]\n"},
                        activate=[("peer", f"127.0.0.1:{self.port}")] if activate else ())
        with open(os.path.join(d.config, "config.yaml"), "w") as f:
            f.write(ACL_YAML)
        d.start()
        if not activate:
            wait_for(lambda: "Peer listener on" in d.log(), what="the peer listener")
        return d

    def invoke(self, cert=None, caller="a", path="/v1.0/invoke/b/method/hello"):
        c = PeerConn(self.port, self.pki, cert or self.client_cert)
        try:
            return c.request(path, headers={"mooring-caller-app": caller} if caller else {})
        finally:
            c.close()

    def test_invoke_with_caller_identity(self):
        self.start()
        status, body = self.invoke()
        self.assertEqual(status, 200, body)
        got = self.app.calls("/hello")
        self.assertEqual(len(got), 1)
        self.assertEqual(got[0].header_all("dapr-caller-app-id"), ["a"])
        self.assertEqual(got[0].header_all("dapr-callee-app-id"), ["b"])
        # the header that carried the identity between hosts never reaches the app
        self.assertNotIn("mooring-caller-app", got[0].header_names())

    def test_trust_domain_reaches_access_control(self):
        self.start()
        # a caller 'a' of trust domain 'evil' (from a root in the bundle) is denied by policy ...
        evil = self.pki.issue("h1", root="evil")
        status, body = self.invoke(cert=evil)
        self.assertEqual(status, 403, body)
        self.assertIn("access control policy has denied access", json.loads(body)["message"])
        # ... the same app id from trust domain 'public' is not, nor is 'c' from 'evil'
        self.assertEqual(self.invoke()[0], 200)
        self.assertEqual(self.invoke(cert=evil, caller="c")[0], 200)
        self.assertEqual(len(self.app.calls("/hello")), 2)

    def test_local_caller_in_host_trust_domain(self):
        """With [Cluster] on, an app of this host is in this host's TrustDomain=."""
        d = self.start(extra="TrustDomain=evil\n")
        r = d.get("/v1.0/invoke/b/method/local", target=d.app_socket("a"))
        self.assertEqual(r.status, 403, r)
        d2 = self.start()
        self.assertEqual(d2.get("/v1.0/invoke/b/method/local", target=d2.app_socket("a")).status, 200)

    def test_refused_certificates(self):
        d = self.start()
        cases = {
            "no client certificate": None,
            "another root": self.pki.issue("h1", root="other"),
            "expired": self.pki.forge("expired", expired=True),
            "DNS and spiffe host differ": self.pki.forge("mismatch", dns="h1", uri="spiffe://public/mooring/host/h7"),
            "no spiffe URI": self.pki.forge("nouri", uri=None),
        }
        for what, cert in cases.items():
            with self.subTest(what):
                if cert is None:
                    self.assertTrue(refused(self.port, self.pki, None), what)
                else:
                    self.assertTrue(refused(self.port, self.pki, cert), what)
        self.assertEqual(self.app.calls("/v1.0"), [])
        self.assertEqual(self.app.calls("/x"), [])
        self.assertIn("TLS handshake failed", d.log())
        # still serving the good ones
        self.assertEqual(self.invoke()[0], 200)

    def test_client_checks_the_server_name(self):
        """What every peer does with our certificate: it names h2, not h9."""
        self.start()
        with self.assertRaises(ssl.SSLCertVerificationError):
            PeerConn(self.port, self.pki, self.client_cert, server_host="h9")

    def test_only_peer_routes(self):
        d = self.start()
        c = PeerConn(self.port, self.pki, self.client_cert)
        try:
            for path in ("/v1.0/state/statestore/k", "/v1.0/metadata", "/mooring/v1/status", "/metrics",
                         "/v1.0/healthz", "/v1.0/publish/pubsub/t", "/anything"):
                status, body = c.request(path, headers={"dapr-app-id": "b"})
                self.assertEqual(status, 404, path)
                self.assertIn("errorCode", json.loads(body), path)
            # the same connection still serves what peers may call
            self.assertEqual(c.request("/v1.0/invoke/b/method/ok", headers={"mooring-caller-app": "a"})[0], 200)
        finally:
            c.close()
        self.assertEqual(len(self.app.calls("/")), 1)
        # and the caller app header means nothing on the app's own listeners
        d.get("/v1.0/invoke/b/method/local", headers={"mooring-caller-app": "a"})
        local = self.app.calls("/local")
        self.assertEqual(len(local), 1)
        self.assertEqual(local[0].header_all("dapr-caller-app-id"), [])

    def test_reload_renewed_certificate(self):
        short = self.pki.issue("h2", days=2, ip="127.0.0.1")
        d = self.start(cert=short)
        wait_for(lambda: "expires in" in d.log(), what="the expiry warning")
        old = PeerConn(self.port, self.pki, self.client_cert)
        self.addCleanup(old.close)
        old_end = old.sock.getpeercert()["notAfter"]
        self.assertEqual(old.request("/v1.0/invoke/b/method/before", headers={"mooring-caller-app": "a"})[0], 200)

        # a broken file: the old certificate stays
        crt, key = short
        with open(crt) as f:
            good = f.read()
        with open(crt, "w") as f:
            f.write("not a certificate\n")
        n = len(d.notify.messages)
        d.signal(signal.SIGHUP)
        d.notify.wait("READY=1", after=n)
        wait_for(lambda: "keeping the ones in use" in d.log(), what="the reload error")
        c = PeerConn(self.port, self.pki, self.client_cert)
        self.assertEqual(c.sock.getpeercert()["notAfter"], old_end)
        c.close()
        with open(crt, "w") as f:
            f.write(good)

        # renewed: new connections see the new certificate, the old connection goes on
        self.pki.issue("h2", days=365, ip="127.0.0.1")
        n = len(d.notify.messages)
        d.signal(signal.SIGHUP)
        d.notify.wait("READY=1", after=n)
        wait_for(lambda: "Peer TLS reloaded" in d.log(), what="the reload")
        c = PeerConn(self.port, self.pki, self.client_cert)
        self.addCleanup(c.close)
        self.assertNotEqual(c.sock.getpeercert()["notAfter"], old_end)
        self.assertEqual(c.request("/v1.0/invoke/b/method/after", headers={"mooring-caller-app": "a"})[0], 200)
        self.assertEqual(old.request("/v1.0/invoke/b/method/still", headers={"mooring-caller-app": "a"})[0], 200)

    def test_socket_activation(self):
        d = self.start(activate=True)
        self.assertEqual(self.invoke()[0], 200)
        self.assertNotIn("Failed", d.log())

    def test_missing_files_then_reload(self):
        """Without its files the host runs, refuses peers, and takes the files at a reload."""
        crt, key = os.path.join(self.tmp, "late.crt"), os.path.join(self.tmp, "late.key")
        self.port = free_port()
        d = self.daemon(conf=(f"[Cluster]\nHostId=h2\nPeerListen=127.0.0.1:{self.port}\n{self.membership}"
                              f"CertificateFile={crt}\nKeyFile={key}\nTrustRootFile={self.pki.bundle}\n"),
                        apps={"b": f"[App]\nAppAddress={self.app.address}\n"})
        self.assertIn("late.crt", d.log())
        self.assertTrue(refused(self.port, self.pki, self.client_cert))
        for src, dst in zip(self.server_cert, (crt, key)):
            shutil.copy(src, dst)
        n = len(d.notify.messages)
        d.signal(signal.SIGHUP)
        d.notify.wait("READY=1", after=n)
        wait_for(lambda: "Peer TLS started" in d.log(), what="peer TLS to start")
        self.assertEqual(self.invoke()[0], 200)
        self.assertEqual(len(self.app.calls("/hello")), 1)


if __name__ == "__main__":
    main()
