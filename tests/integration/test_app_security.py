#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Who may connect to an app's socket (issue 10 part 7): whoever connects IS
the app, so by default only the app's own unit may.

- without User=: 0600 and the daemon's until the app's unit
  (mooring-app@<id>.service, found from the caller's cgroup) asks for its
  endpoints over D-Bus (mooringctl app-exec); then it is that caller's uid's;
- User=: 0600, owned by that user;
- AllowAnyUser=yes (development): 0666.
Other uids are refused by the kernel (EACCES). Needs root (setpriv, chown)
and, for the unit part, a cgroup2 hierarchy to put a process into a cgroup
named like the unit.
"""

import os
import pwd
import stat
import subprocess
import sys

from harness import MOORINGCTL, TIMEOUT, DaemonTestCase, main

CONNECT = ("import socket, sys\n"
           "s = socket.socket(socket.AF_UNIX)\n"
           "try:\n"
           "    s.connect(sys.argv[1])\n"
           "except OSError as e:\n"
           "    print(e.strerror); sys.exit(3)\n")

NOBODY = pwd.getpwnam("nobody").pw_uid
OTHER = 1  # "daemon" on Debian: some other unprivileged uid


def as_uid(uid, cmd, **kw):
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"] + cmd,
                          capture_output=True, text=True, timeout=TIMEOUT, **kw)


def unit_cgroup_root():
    for root in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
        if os.path.exists(os.path.join(root, "cgroup.controllers")):
            return root
    return None


class AppSocketTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest("needs root to run clients as other uids")

    def connects(self, uid, path):
        p = as_uid(uid, [sys.executable, "-c", CONNECT, path])
        self.assertNotIn("setpriv:", p.stderr)
        return p.returncode == 0

    def test_modes_and_owners(self):
        d = self.daemon(apps={"plain": "[App]\n", "fixed": "[App]\nUser=nobody\n",
                              "dev": "[App]\nAllowAnyUser=yes\n"})
        st = os.stat(d.app_socket("plain"))
        self.assertEqual((stat.S_IMODE(st.st_mode), st.st_uid), (0o600, os.geteuid()))
        st = os.stat(d.app_socket("fixed"))
        self.assertEqual((stat.S_IMODE(st.st_mode), st.st_uid), (0o600, NOBODY))
        st = os.stat(d.app_socket("dev"))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o666)

        # issue 10 part 7: without User= every local user could act as the app
        self.assertFalse(self.connects(NOBODY, d.app_socket("plain")))
        self.assertFalse(self.connects(OTHER, d.app_socket("plain")))
        self.assertTrue(self.connects(NOBODY, d.app_socket("fixed")))
        self.assertFalse(self.connects(OTHER, d.app_socket("fixed")))
        self.assertTrue(self.connects(OTHER, d.app_socket("dev")))

    def test_unit_claims_its_socket(self):
        root = unit_cgroup_root()
        if not root:
            self.skipTest("needs a cgroup2 hierarchy to put a process into a unit's cgroup")
        d = self.daemon(bus=True, apps={"claim": "[App]\n"})
        sock = d.app_socket("claim")
        ctl = [MOORINGCTL, f"--bus-address={d.dbus.address}", "app-exec", "claim", "--",
               "/usr/bin/python3", "-c", CONNECT, sock]

        # the same uid outside the app's unit gets nothing, and app-exec says why
        p = as_uid(NOBODY, ctl)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("cannot use its socket", p.stderr)
        self.assertEqual(os.stat(sock).st_uid, os.geteuid())

        cg = os.path.join(root, "mooring-app@claim.service")
        os.makedirs(cg, exist_ok=True)
        self.addCleanup(lambda: os.path.isdir(cg) and os.rmdir(cg))

        def enter_cgroup():
            with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

        p = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] + ctl,
                           capture_output=True, text=True, timeout=TIMEOUT, preexec_fn=enter_cgroup)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        st = os.stat(sock)
        self.assertEqual((stat.S_IMODE(st.st_mode), st.st_uid), (0o600, NOBODY))
        self.assertFalse(self.connects(OTHER, sock))

    def test_unit_gets_its_wiring_without_dbus(self):
        """A DynamicUser= unit may not reach the system bus (dbus-daemon could not resolve dynamic
        uids in a booted Debian 12): inside its own unit, app-exec asks the shared socket instead."""
        root = unit_cgroup_root()
        if not root:
            self.skipTest("needs a cgroup2 hierarchy to put a process into a unit's cgroup")
        d = self.daemon(apps={"nobus": "[App]\nApiToken=tok-123\n"})
        sock = d.app_socket("nobus")
        os.chmod(d.api, 0o666)  # as mooringd.socket's SocketMode=
        env = dict(os.environ, MOORING_SOCKET=d.api, DBUS_SYSTEM_BUS_ADDRESS="unix:path=/nonexistent/bus")
        show = ("import os, socket, sys\n"
                "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
                "print(os.environ.get('DAPR_API_TOKEN'), os.environ.get('MOORING_HTTP_SOCKET'))\n")
        ctl = [MOORINGCTL, "app-exec", "nobus", "--", "/usr/bin/python3", "-c", show, sock]

        # outside the app's unit: no answer from the socket, no bus: nothing runs
        p = as_uid(NOBODY, ctl, env=env)
        self.assertNotEqual(p.returncode, 0)
        self.assertEqual(os.stat(sock).st_uid, os.geteuid())
        # and the route refuses a caller that is not the app's unit
        r = d.get("/mooring/v1/self")
        self.assertEqual((r.status, r.json()["errorCode"]), (403, "ERR_PERMISSION_DENIED"))

        cg = os.path.join(root, "mooring-app@nobus.service")
        os.makedirs(cg, exist_ok=True)
        self.addCleanup(lambda: os.path.isdir(cg) and os.rmdir(cg))

        def enter_cgroup():
            with open(os.path.join(cg, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))

        p = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] + ctl,
                           capture_output=True, text=True, timeout=TIMEOUT, preexec_fn=enter_cgroup, env=env)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(p.stdout.split(), ["tok-123", sock])
        self.assertEqual(os.stat(sock).st_uid, NOBODY)


if __name__ == "__main__":
    main()
