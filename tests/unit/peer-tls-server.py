# SPDX-License-Identifier: Apache-2.0
"""The other host behind tests/unit/test-peer-tls.c: an HTTP/1.1 server over
mutual TLS, one thread per connection, as a peer listener would be.

    peer-tls-server.py FD CERT KEY TRUST_ROOT

FD is a loopback socket the test bound, inherited across exec. The server
presents CERT/KEY, demands a client certificate chaining to TRUST_ROOT, and
says "ready" on stdout once it listens. Paths:

  /whoami   200, the body is the client certificate's first SAN DNS name
  /close    200 "bye" with Connection: close, then closes
  /stats    "requests=R connections=C handshakes_failed=F" (/stats not counted)
"""

import socket
import ssl
import sys
import threading

lock = threading.Lock()
stats = {"requests": 0, "connections": 0, "handshakes_failed": 0}


def answer(conn, status, body, close=False):
    head = "HTTP/1.1 %d X\r\nContent-Length: %d\r\n%s\r\n" % (status, len(body), "Connection: close\r\n" if close else "")
    conn.sendall(head.encode() + body)


def serve(ctx, raw):
    try:
        conn = ctx.wrap_socket(raw, server_side=True)
    except (ssl.SSLError, OSError):
        with lock:
            stats["handshakes_failed"] += 1
        raw.close()
        return
    with lock:
        stats["connections"] += 1
    f = conn.makefile("rb")
    try:
        while True:
            line = f.readline(65537)
            if not line:
                return
            method, target, _ = line.decode("latin-1").split(" ", 2)
            length = 0
            while True:
                h = f.readline(65537)
                if h in (b"\r\n", b"\n", b""):
                    break
                k, v = h.decode("latin-1").split(":", 1)
                if k.strip().lower() == "content-length":
                    length = int(v.strip())
            if length:
                f.read(length)
            if target == "/stats":
                with lock:
                    body = "requests=%d connections=%d handshakes_failed=%d" % (
                        stats["requests"], stats["connections"], stats["handshakes_failed"])
                answer(conn, 200, body.encode())
                continue
            with lock:
                stats["requests"] += 1
            if target == "/whoami":
                names = [v for k, v in conn.getpeercert().get("subjectAltName", ()) if k == "DNS"]
                answer(conn, 200, (names[0] if names else "").encode())
            elif target == "/close":
                answer(conn, 200, b"bye", close=True)
                return
            else:
                answer(conn, 404, b"")
    except (OSError, ValueError):
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


def main():
    fd, cert, key, ca = sys.argv[1:5]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    lsock = socket.socket(fileno=int(fd))
    lsock.listen(64)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        raw, _ = lsock.accept()
        threading.Thread(target=serve, args=(ctx, raw), daemon=True).start()


if __name__ == "__main__":
    main()
