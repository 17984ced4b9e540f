#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Secrets API conformance: one suite, run unchanged against every secret store.

MOORING_SECRET_DRIVER picks the store from DRIVERS below: local.file,
local.env, systemd.credentials, linux.keyring (the real kernel keyring: the
suite re-runs itself in a fresh session keyring with `keyctl session`), and
freedesktop.secretservice (the real Secret Service: gnome-keyring-daemon,
unlocked headless, on a private D-Bus session bus that the daemon uses too).

Each test provisions secrets with unique random values in the store the way a
user would (a file, the environment, credential files, `keyctl padd`,
`secret-tool store`), starts the real mooringd with two apps `a` and `b`, and
talks Dapr's secrets API (the project's Dapr HTTP API reference, section 7.1)
on each app's own socket. Every test ends by checking that no secret value
appears in the daemon's log, which runs at debug level.
"""

import json
import os
import secrets as pysecrets
import shutil
import subprocess
import sys
import tempfile
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (os.path.join(HERE, "..", "..", "integration"), os.path.join(HERE, "..", "..", "fixtures")):
    _p = os.path.normpath(_p)
    if _p not in sys.path:
        sys.path.insert(0, _p)

import harness  # noqa: E402
from harness import DaemonTestCase, UnixHTTPConnection, request, skip_or_fail  # noqa: E402

# Features: MISSING_EMPTY: an unknown name is answered {name: ""} (daprd's env store) instead of
# ERR_SECRET_GET; MULTI: the store can hold several keys per secret.
MISSING_EMPTY, MULTI = "missing-empty", "multi"


class Ctx:
    """What a driver needs to provision: the daemon's temp dir and environment."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.env = {}


def file_provision(ctx, items):
    path = os.path.join(ctx.tmp, "secrets.json")
    with open(path, "w") as f:
        json.dump(items, f)
    return [("secretsFile", path)]


def env_provision(ctx, items):
    for k, v in items.items():
        ctx.env["MSEC_" + k] = v
    return [("prefix", "MSEC_")]


def credentials_provision(ctx, items):
    d = os.path.join(ctx.tmp, "credentials")
    os.makedirs(d, mode=0o700, exist_ok=True)
    for k, v in items.items():
        with open(os.path.join(d, k), "w") as f:
            f.write(v)
        os.chmod(os.path.join(d, k), 0o400)
    ctx.env["CREDENTIALS_DIRECTORY"] = d  # as systemd sets it
    return []


KEY_PREFIX = "mooring-test:"


def keyring_provision(ctx, items):
    for k, v in items.items():
        subprocess.run(["keyctl", "padd", "user", KEY_PREFIX + k, "@s"], input=v.encode(), check=True,
                       capture_output=True)
    return [("keyring", "session"), ("prefix", KEY_PREFIX)]


def secretservice_provision(ctx, items):
    for k, v in items.items():
        subprocess.run(["secret-tool", "store", "--label", k, "name", k, "service", ctx.service], input=v.encode(),
                       check=True, capture_output=True, env=dict(os.environ, DBUS_SESSION_BUS_ADDRESS=ctx.bus))
    return [("service", ctx.service)]


DRIVERS = {
    "local.file": {"type": "secretstores.local.file", "provision": file_provision, "features": {MULTI},
                   "broken": [("secretsFile", "/nonexistent/secrets.json")]},
    "local.env": {"type": "secretstores.local.env", "provision": env_provision, "features": {MISSING_EMPTY},
                  "broken": None},
    "systemd.credentials": {"type": "secretstores.systemd.credentials", "provision": credentials_provision,
                            "features": set(), "broken": [("directory", "/nonexistent/credentials")]},
    "linux.keyring": {"type": "secretstores.linux.keyring", "provision": keyring_provision, "features": set(),
                      "broken": [("keyring", "no-such-keyring")]},
    "freedesktop.secretservice": {"type": "secretstores.freedesktop.secretservice",
                                  "provision": secretservice_provision, "features": set(), "bus": True,
                                  "broken": [("attributes", "no-value-here")]},
}

DRIVER_NAME = os.environ.get("MOORING_SECRET_DRIVER", "local.file")
DRIVER = DRIVERS.get(DRIVER_NAME)

COMPONENT = """apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {name}
spec:
  type: {type}
  version: v1
{metadata}{scopes}"""


def component(name, type_, items, scopes=None, auth=None):
    meta = ""
    if items:
        meta = "  metadata:\n" + "".join(f"  - name: {k}\n    value: {json.dumps(v)}\n" for k, v in items)
    sc = f"scopes: [{', '.join(scopes)}]\n" if scopes else ""
    if auth:
        sc += f"auth:\n  secretStore: {auth}\n"
    return COMPONENT.format(name=name, type=type_, metadata=meta, scopes=sc)


def q(s):
    return urllib.parse.quote(s, safe="")


class KeyringDaemon:
    """gnome-keyring-daemon serving org.freedesktop.secrets on a private bus, unlocked headless."""

    def __init__(self, tmp, bus):
        self.home = os.path.join(tmp, "keyring-home")
        os.makedirs(self.home)
        env = dict(os.environ, HOME=self.home, XDG_DATA_HOME=os.path.join(self.home, "data"),
                   XDG_RUNTIME_DIR=self.home, DBUS_SESSION_BUS_ADDRESS=bus)
        self.proc = subprocess.Popen(["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
                                     env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.proc.stdin.write(b"test-password")
        self.proc.stdin.close()
        # ready once it owns the name
        harness.wait_for(lambda: subprocess.run(
            ["busctl", f"--address={bus}", "status", "org.freedesktop.secrets"], capture_output=True).returncode == 0,
            what="gnome-keyring-daemon on the bus")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class SecretCase(DaemonTestCase):
    """A fresh daemon per test with apps a and b; secrets provisioned before it starts."""

    def setUp(self):
        super().setUp()
        self.values = {}

    def value(self, name):
        """A unique random value for secret name (so a leak into the log cannot be a coincidence)."""
        v = self.values.setdefault(name, "v-" + pysecrets.token_hex(12))
        return v

    def start(self, names=("db_password", "api_key", "other"), config=None, app_b=None, extra=None, store_scopes=None,
              keep_stopped=False):
        d = self.daemon(start=False, apps={"a": "[App]\n", "b": app_b or "[App]\n"}, bus=DRIVER.get("bus", False))
        self.d = d
        ctx = Ctx(d.tmp)
        if DRIVER.get("bus"):
            self.keyring = KeyringDaemon(d.tmp, d.dbus.address)
            self.addCleanup(self.keyring.stop)
            ctx.bus = d.dbus.address
            ctx.service = "mooring-" + pysecrets.token_hex(4)
        items = {n: self.value(n) for n in names}
        meta = DRIVER["provision"](ctx, items)
        self.ctx, self.meta = ctx, meta
        d.env.update(ctx.env)
        d.write_component("store.yaml", component("store", DRIVER["type"], meta, scopes=store_scopes))
        for fname, text in (extra or {}).items():
            d.write_component(fname, text)
        if config is not None:
            with open(os.path.join(d.config, "config.yaml"), "w") as f:
                f.write(config)
        self.addCleanup(self.assert_no_secret_in_log)
        if not keep_stopped:
            d.start()
        return d

    def assert_no_secret_in_log(self):
        log = self.d.log()
        self.assertIn("debug", log.lower() + "debug")  # the log exists
        for n, v in self.values.items():
            self.assertNotIn(v, log, f"the value of secret {n} is in the daemon's log")

    def req(self, path, app="a"):
        conn = UnixHTTPConnection(self.d.app_socket(app), timeout=30)
        try:
            return request(None, "GET", path, conn=conn)
        finally:
            conn.close()

    def get(self, name, store="store", app="a", query=""):
        return self.req(f"/v1.0/secrets/{store}/{q(name)}{query}", app=app)

    def bulk(self, store="store", app="a"):
        return self.req(f"/v1.0/secrets/{store}/bulk", app=app)

    def assert_error(self, r, status, code):
        self.assertEqual(r.status, status, r)
        body = r.json()
        self.assertEqual(body.get("errorCode"), code, body)
        self.assertTrue(body.get("message"), body)
        for v in self.values.values():
            self.assertNotIn(v, body["message"])
        return body


def has(feature):
    """Cases for a feature exist only for drivers that have it: CI refuses skipped tests."""
    return feature in (DRIVER or {}).get("features", ())


class GetTest(SecretCase):
    def test_get(self):
        self.start()
        r = self.get("db_password")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.headers.get("content-type", "").startswith("application/json"), r.headers)
        self.assertEqual(r.json(), {"db_password": self.value("db_password")})

    def test_get_with_metadata_query(self):
        self.start()
        r = self.get("api_key", query="?metadata.version_id=15")
        self.assertEqual((r.status, r.json()), (200, {"api_key": self.value("api_key")}))

    def test_missing_secret(self):
        self.start()
        r = self.get("never_stored")
        if MISSING_EMPTY in DRIVER["features"]:
            self.assertEqual((r.status, r.json()), (200, {"never_stored": ""}))
        else:
            self.assert_error(r, 500, "ERR_SECRET_GET")

    def test_bulk(self):
        self.start()
        r = self.bulk()
        self.assertEqual(r.status, 200, r)
        got = r.json()
        for n in ("db_password", "api_key", "other"):
            self.assertEqual(got.get(n), {n: self.value(n)}, got)

    def test_unknown_store(self):
        self.start()
        self.assert_error(self.get("db_password", store="nope"), 401, "ERR_SECRET_STORE_NOT_FOUND")
        self.assert_error(self.bulk(store="nope"), 401, "ERR_SECRET_STORE_NOT_FOUND")

    def test_unidentified_caller_is_refused(self):
        self.start()
        r = self.d.get("/v1.0/secrets/store/db_password")
        self.assert_error(r, 403, "ERR_PERMISSION_DENIED")

    def test_component_scopes_hide_the_store(self):
        self.start(store_scopes=["a"])
        self.assertEqual(self.get("db_password", app="a").status, 200)
        self.assert_error(self.get("db_password", app="b"), 401, "ERR_SECRET_STORE_NOT_FOUND")

    if has(MULTI):
        def test_multi_valued(self):
            d = self.start(keep_stopped=True)
            path = os.path.join(d.tmp, "multi.json")
            user, pw = self.value("user"), self.value("pw")
            with open(path, "w") as f:
                json.dump({"db": {"user": user, "pw": pw, "nested": {"x": self.value("x")}}, "plain": self.value("p")},
                          f)
            d.write_component("multi.yaml", component("multi", DRIVER["type"], [("secretsFile", path),
                                                                               ("multiValued", "true"),
                                                                               ("nestedSeparator", ".")]))
            d.start()
            r = self.get("db", store="multi")
            self.assertEqual((r.status, r.json()), (200, {"user": user, "pw": pw, "nested.x": self.value("x")}))
            r = self.get("plain", store="multi")
            self.assertEqual((r.status, r.json()), (200, {"plain": self.value("p")}))
            r = self.bulk(store="multi")
            self.assertEqual(r.json(), {"db": {"user": user, "pw": pw, "nested.x": self.value("x")},
                                        "plain": {"plain": self.value("p")}})

        def test_nested_names_are_joined(self):
            d = self.start(keep_stopped=True)
            path = os.path.join(d.tmp, "nested.json")
            u, h = self.value("u"), self.value("h")
            with open(path, "w") as f:
                json.dump({"db": {"user": u, "hosts": [h], "port": 5432}}, f)
            d.write_component("nested.yaml", component("nested", DRIVER["type"], [("secretsFile", path)]))
            d.start()
            self.assertEqual(self.get("db:user", store="nested").json(), {"db:user": u})
            self.assertEqual(self.get("db:hosts:0", store="nested").json(), {"db:hosts:0": h})
            self.assertEqual(self.get("db:port", store="nested").json(), {"db:port": "5432"})
            self.assert_error(self.get("db", store="nested"), 500, "ERR_SECRET_GET")

        def test_a_changed_file_is_read_again(self):
            d = self.start()
            new = self.value("rotated")
            path = dict(self.meta)["secretsFile"]
            with open(path + ".new", "w") as f:
                json.dump({"db_password": new}, f)
            os.rename(path + ".new", path)  # a new inode, as editors and config management write
            self.assertEqual(self.get("db_password").json(), {"db_password": new})

    if DRIVER_NAME == "freedesktop.secretservice":
        def test_service_gone_is_an_error_not_a_hang(self):
            self.start()
            self.assertEqual(self.get("api_key").status, 200)
            self.keyring.stop()  # the Secret Service leaves the bus
            body = self.assert_error(self.get("api_key"), 500, "ERR_SECRET_GET")
            self.assertIn("Secret Service", body["message"])
            self.assert_error(self.bulk(), 500, "ERR_SECRET_GET")
            self.assertEqual(self.d.get("/v1.0/healthz").status, 204)  # the loop was never blocked


SCOPES = """apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: {name}
spec:
  secrets:
    scopes:
    - storeName: store
{body}"""


class ScopeTest(SecretCase):
    def test_allowed_secrets_only(self):
        self.start(config=SCOPES.format(name="c", body="      defaultAccess: allow\n      allowedSecrets: [api_key]\n"))
        self.assertEqual(self.get("api_key").status, 200)
        self.assert_error(self.get("db_password"), 403, "ERR_PERMISSION_DENIED")
        r = self.bulk()
        self.assertEqual((r.status, r.json()), (200, {"api_key": {"api_key": self.value("api_key")}}))

    def test_denied_secrets(self):
        self.start(config=SCOPES.format(name="c", body="      deniedSecrets: [db_password]\n"))
        self.assert_error(self.get("db_password"), 403, "ERR_PERMISSION_DENIED")
        self.assertEqual(self.get("other").status, 200)
        got = self.bulk().json()
        self.assertNotIn("db_password", got)
        self.assertIn("other", got)

    def test_default_deny(self):
        self.start(config=SCOPES.format(name="c", body="      defaultAccess: deny\n"))
        self.assert_error(self.get("api_key"), 403, "ERR_PERMISSION_DENIED")
        r = self.bulk()
        self.assertEqual((r.status, r.json()), (200, {}))

    def test_per_app_configuration(self):
        # app b has a Configuration of its own that denies everything; a has config.yaml, which allows
        d = self.start(keep_stopped=True)
        conf_b = os.path.join(d.tmp, "b-config.yaml")
        with open(conf_b, "w") as f:
            f.write(SCOPES.format(name="b", body="      defaultAccess: deny\n      allowedSecrets: [other]\n"))
        d.write_app("b", f"[App]\nConfiguration={conf_b}\n")
        d.start()
        self.assertEqual(self.get("db_password", app="a").status, 200)
        self.assert_error(self.get("db_password", app="b"), 403, "ERR_PERMISSION_DENIED")
        self.assertEqual(self.get("other", app="b").json(), {"other": self.value("other")})
        self.assertEqual(set(self.bulk(app="b").json()), {"other"})


class LoadTest(SecretCase):
    def test_no_secret_store_configured(self):
        d = self.daemon(start=False, apps={"a": "[App]\n"})
        self.d = d
        d.start()
        self.assert_error(self.get("x"), 500, "ERR_SECRET_STORES_NOT_CONFIGURED")

    def test_failed_store_is_named_with_its_error(self):
        # local.env has no metadata that can fail: a file store stands in for it there
        broken = DRIVERS["local.file"] if DRIVER["broken"] is None else DRIVER
        extra = {"broken.yaml": component("broken", broken["type"], broken["broken"])}
        self.start(extra=extra)
        # as Dapr, /v1.0/metadata leaves a failed component out; the admin API names it with its error
        md = self.req("/v1.0/metadata").json()
        self.assertNotIn("broken", [c["name"] for c in md.get("components", [])])
        comps = self.d.get("/mooring/v1/components").json()
        entry = [c for c in comps if c["name"] == "broken"]
        self.assertEqual(len(entry), 1, comps)
        self.assertTrue(entry[0].get("error"), entry)
        self.assertFalse([c for c in comps if c["name"] == "store"][0].get("error"))
        body = self.assert_error(self.get("x", store="broken"), 401, "ERR_SECRET_STORE_NOT_FOUND")
        self.assertIn("did not open", body["message"])
        self.assertEqual(self.get("db_password").status, 200)  # the good store still serves

    def test_secret_key_ref_resolves_through_the_store(self):
        # a SQLite state store whose connectionString comes from this store: the database file appears there
        d = self.start(names=("db_password",), keep_stopped=True)
        db = os.path.join(d.tmp, "from-secret.db")
        # re-provision with the path as the secret's value (values are random elsewhere)
        self.values["dbpath"] = db
        ctx = Ctx(d.tmp)
        ctx.bus, ctx.service = getattr(self.ctx, "bus", None), getattr(self.ctx, "service", None)
        meta = DRIVER["provision"](ctx, {"dbpath": db, "db_password": self.value("db_password")})
        d.env.update(ctx.env)
        d.write_component("store.yaml", component("store", DRIVER["type"], meta))
        d.write_component("state.yaml", "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: st\n"
                                        "spec:\n  type: state.sqlite\n  version: v1\n  metadata:\n"
                                        "  - name: connectionString\n    secretKeyRef:\n      name: dbpath\n"
                                        "auth:\n  secretStore: store\n")
        del self.values["dbpath"]  # a path, legitimately in the log
        d.start()
        conn = UnixHTTPConnection(d.app_socket("a"), timeout=30)
        r = request(None, "POST", "/v1.0/state/st", body=json.dumps([{"key": "k", "value": 1}]).encode(),
                    headers={"Content-Type": "application/json"}, conn=conn)
        conn.close()
        self.assertEqual(r.status, 204, r)
        self.assertTrue(os.path.exists(db), os.listdir(d.tmp))


def main():
    if DRIVER is None:
        print(f"unknown MOORING_SECRET_DRIVER {DRIVER_NAME}", file=sys.stderr)
        sys.exit(2)
    if DRIVER_NAME == "linux.keyring":
        if not shutil.which("keyctl"):
            skip_or_fail("keyctl (keyutils) is not installed")
        if os.environ.get("MOORING_FRESH_KEYRING") != "1":
            # a fresh anonymous session keyring of our own, inherited by mooringd and keyctl
            os.environ["MOORING_FRESH_KEYRING"] = "1"
            os.execvp("keyctl", ["keyctl", "session", "-", sys.executable] + sys.argv)
    if DRIVER.get("bus"):
        # GLib leaks a few bytes per item that libsecret's search creates (the GDBusProxy async-init
        # state of each SecretItem, under libsecret's synchronous wrappers); not ours to fix, so
        # LeakSanitizer is told to ignore exactly that path in the daemon (lsan.supp).
        supp = os.path.join(HERE, "lsan.supp")
        os.environ["LSAN_OPTIONS"] = ":".join(filter(None, [os.environ.get("LSAN_OPTIONS"), f"suppressions={supp}"]))
        # GLib has no frame pointers: only the slow unwinder sees libsecret in the stack
        os.environ["ASAN_OPTIONS"] = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"),
                                                            "fast_unwind_on_malloc=0"]))
        for p in ("gnome-keyring-daemon", "secret-tool", "dbus-daemon", "busctl"):
            if not shutil.which(p):
                skip_or_fail(f"{p} is not installed")
    harness.main()


if __name__ == "__main__":
    main()
