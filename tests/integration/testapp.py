# SPDX-License-Identifier: Apache-2.0
"""A small HTTP app for the tests, on a Unix socket or a loopback port, in a thread.
It counts requests and distinct connections, and its health answer can be changed."""

import http.server
import os
import socket
import socketserver
import threading


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse is visible

    def log_message(self, *args):
        pass

    def address_string(self):
        return "app-client"

    def setup(self):
        super().setup()
        with self.server.app.lock:
            self.server.app.connections += 1
            self.server.app.open_sockets.append(self.connection)

    def _answer(self):
        app = self.server.app
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with app.lock:
            app.requests.append((self.command, self.path, dict(self.headers), body))
        if self.path == "/healthz":
            status = app.health_status
        else:
            status = 404
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = do_DELETE = _answer


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _TCPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class TestApp:
    def __init__(self, unix_path=None, port=None):
        self.unix_path, self.port = unix_path, port
        self.lock = threading.Lock()
        self.requests = []
        self.connections = 0
        self.open_sockets = []
        self.health_status = 200
        self.server = None

    def start(self):
        if self.unix_path:
            if os.path.exists(self.unix_path):
                os.unlink(self.unix_path)
            self.server = _UnixServer(self.unix_path, _Handler)
        else:
            self.server = _TCPServer(("127.0.0.1", self.port), _Handler)
        self.server.app = self
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
            # like a process exiting: kept-alive connections go too
            with self.lock:
                for s in self.open_sockets:
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                self.open_sockets.clear()
            if self.unix_path and os.path.exists(self.unix_path):
                os.unlink(self.unix_path)

    def paths(self):
        with self.lock:
            return [r[1] for r in self.requests]
