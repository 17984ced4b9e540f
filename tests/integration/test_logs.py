#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Logs: the console format (timestamps on stderr, also with a journal socket
present), daprd-style JSON lines, and `mooringctl logs APP` reading a real
journal with sd-journal.

The journal for `mooringctl logs` is made of real journal files: the daemon
runs in a private mount namespace where the test's datagram socket stands at
/run/systemd/journal/socket (as the journald test in test_lifecycle.py), its
entries are taken as journald would store them for mooringd.service, the
app's own lines come from its unit mooring-app@web.service, and
systemd-journal-remote writes them all into journal files that mooringctl
reads with --directory. journald sets _SYSTEMD_UNIT from the sender's
cgroup, which a test without systemd cannot give a process; the journal files
carry it as journald would have.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time

from harness import MOORINGCTL, TIMEOUT, DaemonTestCase, main, request, skip_or_fail, wait_for

JOURNAL_REMOTE = "/lib/systemd/systemd-journal-remote"
APP = "[App]\n"
CONSOLE_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z (debug|info|notice|warning|err)\s+\S")


def export_entry(usec, fields):
    """One entry in the journal export format (text fields only)."""
    out = [f"__REALTIME_TIMESTAMP={usec}", f"__MONOTONIC_TIMESTAMP={usec}",
           "_BOOT_ID=5c0c2b1e0d4a4e1f9a6b7c8d9e0f1a2b"]
    out += [f"{k}={v}" for k, v in fields.items() if "\n" not in v]
    return "\n".join(out) + "\n\n"


def write_journal(path, entries):
    p = subprocess.run([JOURNAL_REMOTE, "-o", path, "-"], input="".join(entries), capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr


class LogFormatTest(DaemonTestCase):
    def test_console_target_prints_timestamped_lines(self):
        # without systemd-socket-activate, whose own lines would share the file
        d = self.daemon(apps={"web": APP}, args=["--log-target=console", "--log-level=info"],
                        use_socket_activation=False)
        self.assertEqual(request(d.app_socket("web"), "GET", "/v1.0/healthz").status, 204)
        d.stop()
        lines = [l for l in d.log().splitlines() if l.strip()]
        self.assertTrue(lines)
        for l in lines:
            self.assertRegex(l, CONSOLE_RE)
        self.assertTrue(any("app 'web': App registered" in l for l in lines), lines)

    def test_json_format_is_one_object_per_line(self):
        d = self.daemon(apps={"web": APP}, args=["--log-format=json", "--log-level=info"],
                        use_socket_activation=False)
        d.stop()
        objs = [json.loads(l) for l in d.log().splitlines() if l.strip()]
        self.assertTrue(objs)
        for o in objs:
            self.assertEqual(o["type"], "log")
            self.assertEqual(o["scope"], "mooringd")
            self.assertIn(o["level"], ("debug", "info", "warning", "error"))
            self.assertRegex(o["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
        reg = [o for o in objs if o["msg"].startswith("App registered")]
        self.assertEqual(reg[0]["app_id"], "web")

    def test_bad_log_options_are_usage_errors(self):
        d = self.daemon(start=False, args=["--log-format=xml"], use_socket_activation=False)
        d.start(wait_ready=False)
        d.proc.wait(TIMEOUT)
        self.assertEqual(d.proc.returncode, 2)
        self.assertIn("--log-format must be text or json", d.log())


class MooringctlLogsTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        if not os.path.exists(JOURNAL_REMOTE):
            skip_or_fail("systemd-journal-remote is not installed")
        self.tmp = tempfile.mkdtemp(prefix="mooring-logs-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def daemon_entries(self):
        """Runs mooringd with a journal socket of ours; returns its native-protocol entries."""
        if os.geteuid() != 0 or not shutil.which("unshare"):
            skip_or_fail("needs root and unshare for a private mount namespace")
        probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True)
        if probe.returncode != 0:
            skip_or_fail("cannot create a mount namespace here: " + probe.stderr.decode())
        jdir = os.path.join(self.tmp, "sock")
        os.makedirs(jdir)
        js = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        js.bind(os.path.join(jdir, "socket"))
        os.chmod(os.path.join(jdir, "socket"), 0o666)
        self.addCleanup(js.close)
        setup = ("mount -t tmpfs tmpfs /run/systemd 2>/dev/null || { mkdir -p /run/systemd && "
                 "mount -t tmpfs tmpfs /run/systemd; } && mkdir /run/systemd/journal && "
                 f"mount --bind {jdir} /run/systemd/journal && exec \"$@\"")
        d = self.daemon(apps={"web": APP, "other": APP}, args=["--log-level=info"],
                        prefix=["unshare", "--mount", "--propagation", "private", "sh", "-c", setup, "sh"])
        self.assertEqual(request(d.app_socket("web"), "POST", "/v1.0/state/nostore", body=b"[]").status, 400)
        d.stop()
        entries = []
        js.settimeout(0.5)
        while True:
            try:
                data = js.recv(65536)
            except socket.timeout:
                break
            e = {}
            for line in data.decode(errors="replace").split("\n"):
                if "=" in line:
                    k, v = line.split("=", 1)
                    e[k] = v
            entries.append(e)
        return entries

    def ctl(self, *args, check=True):
        p = subprocess.run([MOORINGCTL, "logs", "web", "--directory", self.jdir] + list(args), capture_output=True,
                           text=True, timeout=TIMEOUT)
        if check:
            self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout.splitlines()

    def test_logs_merges_the_app_and_the_daemon_in_time_order(self):
        daemon = self.daemon_entries()
        about_web = [e for e in daemon if e.get("APP_ID") == "web"]
        self.assertTrue(about_web, daemon)
        self.jdir = os.path.join(self.tmp, "journal")
        os.makedirs(self.jdir)
        # on a whole second: --since below floors its cut to the second, which must not fall after
        # the first entries (with t0 late in a second, one run in forty lost them)
        t0 = (int(time.time()) - 3600) * 1000000
        entries = []
        # the daemon's entries, as journald stores them for mooringd.service, 10 ms apart,
        # interleaved with the app's own lines and with lines that only claim to be about web
        for i, e in enumerate(daemon):
            f = dict(e)
            f.update({"_SYSTEMD_UNIT": "mooringd.service", "_PID": "100", "_COMM": "mooringd"})
            entries.append(export_entry(t0 + i * 10000, f))
            entries.append(export_entry(t0 + i * 10000 + 5000, {
                "MESSAGE": f"web says {i}", "PRIORITY": "6", "SYSLOG_IDENTIFIER": "mooring-app-web",
                "_SYSTEMD_UNIT": "mooring-app@web.service", "_PID": "200"}))
            entries.append(export_entry(t0 + i * 10000 + 6000, {
                "MESSAGE": f"forged {i}", "APP_ID": "web", "SYSLOG_IDENTIFIER": "mooring-app-web",
                "_SYSTEMD_UNIT": "mallory.service", "_PID": "300"}))
        write_journal(os.path.join(self.jdir, "a.journal"), entries)

        lines = self.ctl()
        expected = []
        for i, e in enumerate(daemon):
            if e.get("APP_ID") == "web":
                expected.append("mooringd: " + e["MESSAGE"])
            expected.append(f"mooring-app-web: web says {i}")
        self.assertEqual([l.split(" ", 1)[1] for l in lines], expected)
        self.assertFalse(any("forged" in l for l in lines))
        self.assertTrue(any("App registered" in l for l in lines), lines)
        self.assertFalse(any("'other'" in l for l in lines), lines)
        # time order: the timestamps printed never go back
        stamps = [l.split(" ", 1)[0] for l in lines]
        self.assertEqual(stamps, sorted(stamps))

        self.assertEqual(self.ctl("-n", "3"), lines[-3:])
        self.assertEqual(self.ctl("-n", "0"), [])
        # --since: a time between two of the entries
        cut = t0 + 2 * 10000 + 5500
        since = self.ctl("--since", f"@{cut // 1000000}")
        self.assertEqual(since, lines)  # the whole journal is within that second
        self.assertEqual(self.ctl("--since", "1m"), [])
        j = [json.loads(l) for l in self.ctl("--json", "-n", "2")]
        self.assertEqual([o["message"] for o in j], [l.split(": ", 1)[1] for l in lines[-2:]])
        self.assertEqual(j[-1]["source"], "mooring-app-web")

        # -f: shows the last lines, then what the journal gets later
        p = subprocess.Popen([MOORINGCTL, "logs", "web", "-f", "-n", "1", "--directory", self.jdir],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        first = p.stdout.readline()
        self.assertEqual(first.rstrip("\n"), lines[-1])
        write_journal(os.path.join(self.jdir, "b.journal"), [
            export_entry(int(time.time() * 1e6), {"MESSAGE": "a late line", "_SYSTEMD_UNIT": "mooring-app@web.service",
                                                  "SYSLOG_IDENTIFIER": "mooring-app-web"})])
        late = p.stdout.readline()
        self.assertIn("mooring-app-web: a late line", late)
        p.kill()
        p.wait()
        p.stdout.close()
        p.stderr.close()

    def test_logs_usage_errors(self):
        self.jdir = self.tmp
        p = subprocess.run([MOORINGCTL, "logs"], capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(p.returncode, 2)
        p = subprocess.run([MOORINGCTL, "logs", "web", "--since", "soon"], capture_output=True, text=True,
                           timeout=TIMEOUT)
        self.assertEqual(p.returncode, 2)
        self.assertIn("invalid --since 'soon'", p.stderr)
        p = subprocess.run([MOORINGCTL, "apps", "-f"], capture_output=True, text=True, timeout=TIMEOUT)
        self.assertEqual(p.returncode, 2)
        self.assertIn("only valid for 'logs'", p.stderr)


if __name__ == "__main__":
    main()
