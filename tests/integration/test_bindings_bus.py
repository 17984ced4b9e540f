#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Output bindings over D-Bus (InvokeBinding) and `mooringctl binding invoke`,
with the real daemon on a private bus and a bindings.localstorage component:
the data goes to the binding as bytes, the answer and its metadata come back,
the component's scopes decide who the caller may act as, and the errors have
their D-Bus names and mooringctl's messages and exit codes.
"""

import json
import os
import shutil
import subprocess
import tempfile

from harness import MOORINGCTL, DaemonTestCase, main, require

ERR = "org.mooring.Runtime1.Error."


def component(name, root, scopes=None):
    sc = f"scopes: [{', '.join(scopes)}]\n" if scopes else ""
    return (f"apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n"
            f"  type: bindings.localstorage\n  version: v1\n  metadata:\n  - name: rootPath\n"
            f"    value: {json.dumps(root)}\n{sc}")


class BindingsBusTest(DaemonTestCase):
    def setUp(self):
        super().setUp()
        require("gdbus")
        self.tmp = tempfile.mkdtemp(prefix="mooring-bb-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.root = os.path.join(self.tmp, "files")
        self.d = self.daemon(start=False, bus=True, apps={"orders": "[App]\n", "billing": "[App]\n"})
        self.d.write_component("files.yaml", component("files", self.root))
        self.d.write_component("private.yaml", component("private", os.path.join(self.tmp, "p"), ["billing"]))
        self.d.start()

    def invoke(self, app, name, op, data=b"", metadata=None, check=True):
        md = metadata or {}
        args = [app, name, op, str(len(data))] + [str(b) for b in data] + [str(len(md))]
        for k, v in md.items():
            args += [k, v]
        return self.d.call("InvokeBinding", "sssaya{ss}", *args, check=check)

    def gdbus_error(self, app, name, op, metadata="@a{ss} {}"):
        """The D-Bus error name of a failing call (gdbus prints it, busctl only the message)."""
        p = subprocess.run(["gdbus", "call", "--address", self.d.dbus.address, "--dest", "org.mooring.Runtime1",
                            "--object-path", "/org/mooring/Runtime1", "--method", "org.mooring.Runtime1.InvokeBinding",
                            app, name, op, "@ay []", metadata], capture_output=True, text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        return p.stderr

    def ctl(self, *args):
        return subprocess.run([MOORINGCTL, f"--bus-address={self.d.dbus.address}"] + list(args),
                              capture_output=True, timeout=30)

    def test_invoke_binding(self):
        p = self.invoke("orders", "files", "create", b"raw bytes", {"fileName": "a.txt"})
        out = json.loads(p.stdout)["data"]
        self.assertEqual(bytes(out[0]), b'{"fileName":"a.txt"}')
        with open(os.path.join(self.root, "a.txt"), "rb") as f:
            self.assertEqual(f.read(), b"raw bytes")  # the bytes as sent: no JSON re-encoding over D-Bus
        p = self.invoke("orders", "files", "get", b"", {"fileName": "a.txt"})
        self.assertEqual(bytes(json.loads(p.stdout)["data"][0]), b"raw bytes")
        p = self.invoke("orders", "files", "delete", b"", {"fileName": "a.txt"})
        self.assertEqual(json.loads(p.stdout)["data"], [[], {}])

    def test_errors(self):
        cases = [
            (("orders", "nope", "get"), "NoSuchBinding"),
            (("orders", "private", "list"), "NoSuchBinding"),   # scoped to billing
            (("orders", "files", ""), "InvalidArgument"),
            (("orders", "files", "frobnicate"), "NotSupported"),
            (("ghost", "files", "list"), "NoSuchApp"),
        ]
        for args, err in cases:
            self.assertIn(ERR + err, self.gdbus_error(*args), args)
        e = self.gdbus_error("orders", "files", "get", "{'fileName': 'missing'}")
        self.assertIn(ERR + "Failed", e)
        self.assertIn("error invoking output binding files", e)
        # billing sees its own binding
        p = self.invoke("billing", "private", "list")
        self.assertEqual(json.loads(p.stdout)["data"][0], list(b"null"))

    def test_mooringctl(self):
        p = self.ctl("binding", "invoke", "files", "create", "--app=orders", "--data=hello",
                     "--metadata=fileName=x/y.txt")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, b'{"fileName":"x/y.txt"}')
        p = self.ctl("binding", "invoke", "files", "get", "--app", "orders", "--metadata", "fileName=x/y.txt")
        self.assertEqual((p.returncode, p.stdout), (0, b"hello"))
        p = self.ctl("binding", "invoke", "nope", "get", "--app=orders")
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"couldn't find output binding nope", p.stderr)
        p = self.ctl("binding", "invoke", "files", "--app=orders")
        self.assertEqual(p.returncode, 2)
        p = self.ctl("binding", "frob")
        self.assertEqual(p.returncode, 2)
        p = self.ctl("binding", "invoke", "files", "list", "--app=orders", "--socket=/nonexistent")
        self.assertEqual(p.returncode, 2)
        p = self.ctl("--help")
        self.assertIn(b"binding invoke NAME OPERATION", p.stdout)


if __name__ == "__main__":
    main()
