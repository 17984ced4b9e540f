#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Engine libraries (libpq, hiredis, libmosquitto, OpenSSL for Redis TLS) are loaded when a component needs
them, not linked: the binary does not NEED them, an idle daemon does not map them,
and a missing one fails only the components that need it, with the Debian package
to install, while the rest of the daemon works.

"Missing" is made real, not simulated by a hook in the daemon: the daemon runs in
a private mount namespace (unshare -m as root, unshare -rm otherwise) where an
empty file is bind-mounted over the library, so the dynamic loader itself fails
exactly as it does on a host without the package ("file too short"). Nothing
outside the namespace changes. Where no mount namespace can be made (a container
without CAP_SYS_ADMIN or user namespaces), that test is skipped, or fails under
MOORING_TEST_NO_SKIP=1."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys

from harness import MOORINGD, DaemonTestCase, main, request, skip_or_fail, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from servers import RedisServer  # noqa: E402

APP = "[App]\n"

# Debian 12's sonames and the packages that ship them, as meson.build states them.
ENGINES = {
    "libpq": ("libpq.so.5", "libpq5"),
    "hiredis": ("libhiredis.so.0.14", "libhiredis0.14"),
    "mosquitto": ("libmosquitto.so.1", "libmosquitto1"),
    "openssl": ("libssl.so.3", "libssl3"),  # Redis components with enableTLS
    "avahi": ("libavahi-client.so.3", "libavahi-client3"),  # [Cluster] Membership=mdns
}


def component(name, type_, *metadata):
    text = f"apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: {type_}\n"
    if metadata:
        text += "  metadata:\n" + "".join(f"  - name: {k}\n    value: \"{v}\"\n" for k, v in metadata)
    return text


def library_path(soname):
    """Where the dynamic loader finds soname (ld.so.cache), symlinks resolved; None if nowhere."""
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    native = "x86-64" if os.uname().machine == "x86_64" else ""
    for line in out.splitlines():
        m = re.match(r"\s*(\S+) \(([^)]*)\) => (\S+)", line)
        if m and m.group(1) == soname and native in m.group(2):
            return os.path.realpath(m.group(3))
    return None


def mapped_libraries(pid):
    with open(f"/proc/{pid}/maps") as f:
        return {os.path.basename(line.split()[5]) for line in f if len(line.split()) >= 6}


def mooringd_pid(d):
    """systemd-socket-activate execs mooringd in place: same pid, once the socket is up."""
    def exe_is_mooringd():
        try:
            return os.path.samefile(f"/proc/{d.proc.pid}/exe", MOORINGD)
        except OSError:
            return False
    wait_for(exe_is_mooringd, what="mooringd to be exec'd")
    return d.proc.pid


class HiddenLibraries:
    """A command prefix that runs its argv in a new mount namespace in which the given
    libraries are replaced by an empty file."""

    def __init__(self, tmp, sonames):
        self.empty = os.path.join(tmp, "empty.so")
        open(self.empty, "w").close()
        self.paths = []
        for s in sonames:
            p = library_path(s)
            if not p:
                skip_or_fail(f"{s} is not installed, so it cannot be hidden")
            self.paths.append(p)
        self.unshare = self._probe()

    def _probe(self):
        if not shutil.which("unshare"):
            skip_or_fail("unshare (util-linux) is not installed")
        # root needs no user namespace (and may run where those are disabled); anyone else does
        for opts in (["-m"], ["-rm"]) if os.geteuid() == 0 else (["-rm"],):
            p = subprocess.run(["unshare"] + opts + ["sh", "-c", f"mount --bind {self.empty} {self.paths[0]}"],
                               capture_output=True, text=True)
            if p.returncode == 0:
                return ["unshare"] + opts
        skip_or_fail(f"cannot make a private mount namespace here: {p.stderr.strip()}")

    def prefix(self):
        mounts = "".join(f"mount --bind {self.empty} {p} && " for p in self.paths)
        return self.unshare + ["sh", "-c", mounts + 'exec "$@"', "sh"]


class DlopenTest(DaemonTestCase):
    def test_engines_are_not_linked(self):
        out = subprocess.run(["readelf", "-d", MOORINGD], capture_output=True, text=True, check=True).stdout
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)
        self.assertTrue(needed, out)  # the regex matched something: the check can see a library
        for soname, _ in ENGINES.values():
            self.assertNotIn(soname, needed)

    def test_loaded_at_first_use_only(self):
        redis = RedisServer()
        self.addCleanup(redis.close)
        redis.start()
        d = self.daemon(apps={"a": APP})
        pid = mooringd_pid(d)
        maps = mapped_libraries(pid)
        self.assertTrue(any(m.startswith("libc.so") for m in maps), maps)  # the check can see a library
        for soname, _ in ENGINES.values():
            self.assertFalse(any(m.startswith(soname) for m in maps), f"{soname} mapped while no component uses it")

        # a Redis component maps hiredis, and only hiredis
        d.write_component("cache.yaml", component("cache", "state.redis", ("redisHost", f"127.0.0.1:{redis.port}")))
        n = len(d.notify.messages)
        d.signal(signal.SIGHUP)
        d.notify.wait("READY=1", after=n)
        sock = d.app_socket("a")
        r = request(sock, "POST", "/v1.0/state/cache", body=json.dumps([{"key": "k", "value": 7}]).encode())
        self.assertEqual(r.status, 204, r)
        self.assertEqual(request(sock, "GET", "/v1.0/state/cache/k").body, b"7")
        maps = mapped_libraries(pid)
        self.assertTrue(any(m.startswith("libhiredis.so.0.14") for m in maps))
        self.assertFalse(any(m.startswith("libpq.so") or m.startswith("libmosquitto.so") or
                             m.startswith("libssl.so") for m in maps))

    def test_missing_libraries_fail_only_their_components(self):
        tmp = self.make_tmp()
        hidden = HiddenLibraries(tmp, [s for s, _ in ENGINES.values()])
        d = self.daemon(
            apps={"a": APP},
            components={
                "pg.yaml": component("pg", "state.postgresql", ("connectionString", "host=/nonexistent")),
                "rstate.yaml": component("rstate", "state.redis", ("redisHost", "127.0.0.1:1")),
                "rpubsub.yaml": component("rpubsub", "pubsub.redis", ("redisHost", "127.0.0.1:1")),
                "mqtt.yaml": component("mqtt", "pubsub.mqtt3", ("url", "tcp://127.0.0.1:1")),
                "mem.yaml": component("mem", "state.in-memory"),
                "bus.yaml": component("bus", "pubsub.in-memory"),
            },
            prefix=hidden.prefix())
        log = d.log()
        for file, what, name, type_, engine in (
                ("pg.yaml", "state store", "pg", "state.postgresql", "libpq"),
                ("rstate.yaml", "state store", "rstate", "state.redis", "hiredis"),
                ("rpubsub.yaml", "pub/sub", "rpubsub", "pubsub.redis", "hiredis"),
                ("mqtt.yaml", "pub/sub", "mqtt", "pubsub.mqtt3", "mosquitto")):
            soname, package = ENGINES[engine]
            # file:line as for every component error, the package to install, and the loader's reason
            self.assertRegex(log, re.escape(f"{file}:1: field 'spec.metadata': ") + r"[^\n]*" +
                             re.escape(f"'{name}' ({type_}): {type_} needs {package}: apt install {package} "
                                       f"(dlopen {soname}: ") + r"[^\n]*file too short\)")
        self.assertTrue(any("configuration errors: see the log" in m for m in d.notify.messages))

        sock = d.app_socket("a")
        r = request(sock, "GET", "/v1.0/state/pg/k")
        self.assertEqual((r.status, r.json()["errorCode"]), (400, "ERR_STATE_STORE_NOT_FOUND"))
        r = request(sock, "POST", "/v1.0/publish/rpubsub/t", body=b"{}", headers={"Content-Type": "application/json"})
        self.assertEqual((r.status, r.json()["errorCode"]), (404, "ERR_PUBSUB_NOT_FOUND"))
        # the rest works
        r = request(sock, "POST", "/v1.0/state/mem", body=b'[{"key":"k","value":1}]')
        self.assertEqual(r.status, 204, r)
        self.assertEqual(request(sock, "GET", "/v1.0/state/mem/k").body, b"1")
        r = request(sock, "POST", "/v1.0/publish/bus/t", body=b"{}", headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 204, r)
        self.assertEqual(request(sock, "GET", "/v1.0/healthz").status, 204)

    def test_one_missing_library_leaves_the_other_engines_working(self):
        redis = RedisServer()
        self.addCleanup(redis.close)
        redis.start()
        tmp = self.make_tmp()
        hidden = HiddenLibraries(tmp, [ENGINES["libpq"][0]])
        d = self.daemon(
            apps={"a": APP},
            components={
                "pg.yaml": component("pg", "state.postgresql", ("connectionString", "host=/nonexistent")),
                "cache.yaml": component("cache", "state.redis", ("redisHost", f"127.0.0.1:{redis.port}")),
            },
            prefix=hidden.prefix())
        self.assertIn("state.postgresql needs libpq5: apt install libpq5 (dlopen libpq.so.5: ", d.log())
        self.assertNotIn("hiredis0.14", d.log())
        sock = d.app_socket("a")
        r = request(sock, "POST", "/v1.0/state/cache", body=b'[{"key":"k","value":"v"}]')
        self.assertEqual(r.status, 204, r)
        self.assertEqual(request(sock, "GET", "/v1.0/state/cache/k").body, b'"v"')
        r = request(sock, "GET", "/v1.0/state/pg/k")
        self.assertEqual((r.status, r.json()["errorCode"]), (400, "ERR_STATE_STORE_NOT_FOUND"))

    def test_missing_openssl_fails_only_tls_components(self):
        redis = RedisServer(tls=False)
        self.addCleanup(redis.close)
        redis.start()
        hidden = HiddenLibraries(self.make_tmp(), [ENGINES["openssl"][0]])
        d = self.daemon(
            apps={"a": APP},
            components={
                "cache.yaml": component("cache", "state.redis", ("redisHost", redis.address)),
                "tls.yaml": component("tls", "state.redis", ("redisHost", redis.address), ("enableTLS", "true")),
            },
            prefix=hidden.prefix())
        self.assertRegex(d.log(), re.escape("tls.yaml:1: field 'spec.metadata': ") + r"[^\n]*" +
                         re.escape("state.redis needs libssl3: apt install libssl3 (dlopen libssl.so.3: ") +
                         r"[^\n]*file too short\)")
        sock = d.app_socket("a")
        r = request(sock, "POST", "/v1.0/state/cache", body=b'[{"key":"k","value":"v"}]')
        self.assertEqual(r.status, 204, r)
        r = request(sock, "GET", "/v1.0/state/tls/k")
        self.assertEqual((r.status, r.json()["errorCode"]), (400, "ERR_STATE_STORE_NOT_FOUND"))

    def make_tmp(self):
        import tempfile
        tmp = tempfile.mkdtemp(prefix="mooring-dlopen-")
        self.addCleanup(shutil.rmtree, tmp, True)
        return tmp


if __name__ == "__main__":
    main()
