# SPDX-License-Identifier: Apache-2.0
"""The app behind tests/unit/test-transport.c: a real HTTP/1.1 server process,
one thread per connection, that answers well or badly depending on the path.

    transport-app.py FD [--wait]

FD is a socket the test already bound (a Unix socket in a temp dir or a
loopback port), inherited across exec. The test binds it itself, so there is
no race for a port and it can make the app "not there yet": with --wait the
app only calls listen() once a line arrives on stdin, so until then connect()
is refused. Either way "ready" on stdout says the socket is listening.

Every answer body the app makes up is the test pattern: the 8-byte little
endian word at byte offset o holds o, so a byte lost, doubled or moved shows
at its exact offset; request bodies on /big are checked against the same
pattern. Paths:

  /cl/N          200 with Content-Length N (HEAD: the header, no body)
  /chunked/N     200, N bytes chunked in uneven chunks (1 byte .. 64 KiB)
  /eof/N         200 with neither length nor chunking: the body ends at close
  /continue/N    a 100 and a 103 interim answer first, then as /cl/N
  /idleclose/N   as /cl/N, then closes the connection without saying so
  /nobody/S      status S (204 or 304) without a body; a 304 says Content-Length: 100
  /bighead/N     an empty header and one N bytes long
  /stall/N       promises 2N bytes, sends N, waits for the client to go
  /cut           sends the first bytes of a status line, then closes
  /midbody       promises 1000 bytes, sends 100, closes
  /never         reads the request and never answers (until the client goes)
  /garbage       answers with something that is not HTTP
  /id            answers, after a random pause, with the request's X-Id
  /big?answer=N  checks the request body, answers N bytes; X-Request-Check
                 says "LEN ok" or "LEN bad@OFFSET"
  /stats         "requests=R connections=C": R counts every request but
                 /stats itself, C every accepted connection
"""

import array
import random
import socket
import sys
import threading
import time

lock = threading.Lock()
requests = 0
connections = 0


def pattern(off, n):
    """n bytes of the test pattern starting at byte offset off."""
    first = off - off % 8
    words = array.array("Q", range(first, off + n + 8, 8))
    if sys.byteorder != "little":
        words.byteswap()
    b = words.tobytes()
    return b[off - first:off - first + n]


def send_status(sock, status, headers, body=b""):
    head = "HTTP/1.1 %d %s\r\n" % (status, "OK" if status == 200 else "Whatever")
    for k, v in headers:
        head += "%s: %s\r\n" % (k, v)
    sock.sendall(head.encode("latin-1") + b"\r\n" + body)


def read_head(f):
    line = f.readline(65537)
    if not line:
        return None
    method, target, _ = line.decode("latin-1").split(" ", 2)
    headers = {}
    while True:
        h = f.readline(65537)
        if h in (b"\r\n", b"\n", b""):
            break
        k, v = h.decode("latin-1").split(":", 1)
        headers[k.strip().lower()] = v.strip()
    return method, target, headers


def check_body(f, n):
    """Reads n request body bytes, comparing them with the pattern as they come."""
    got, bad = 0, None
    while got < n:
        b = f.read(min(1 << 20, n - got))
        if not b:
            break
        if bad is None and b != pattern(got, len(b)):
            exp = pattern(got, len(b))
            bad = got + next(i for i in range(len(b)) if b[i] != exp[i])
        got += len(b)
    return "%d %s" % (got, "ok" if bad is None else "bad@%d" % bad)


def serve(sock):
    """One connection: requests in order until the client closes or a path ends it."""
    global requests
    f = sock.makefile("rb")
    while True:
        r = read_head(f)
        if r is None:
            return
        method, target, headers = r
        path, _, query = target.partition("?")
        parts = path.split("/")
        n = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 0
        length = int(headers.get("content-length", "0"))
        if path != "/stats":
            with lock:
                requests += 1

        if path == "/big":
            check = check_body(f, length)
            size = int(query.partition("=")[2])
            send_status(sock, 200, [("Content-Length", size), ("X-Request-Check", check)])
            off = 0
            while off < size:
                k = min(1 << 20, size - off)
                sock.sendall(pattern(off, k))
                off += k
            continue

        f.read(length)
        if path == "/stats":
            with lock:
                body = ("requests=%d connections=%d" % (requests, connections)).encode()
            send_status(sock, 200, [("Content-Length", len(body))], body)
        elif parts[1] in ("cl", "idleclose", "continue"):
            if parts[1] == "continue":
                sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                sock.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
            send_status(sock, 200, [("Content-Length", n), ("X-Kind", parts[1])],
                        b"" if method == "HEAD" else pattern(0, n))
            if parts[1] == "idleclose":
                return
        elif parts[1] == "chunked":
            send_status(sock, 200, [("Transfer-Encoding", "chunked")])
            sizes = [1, 7, 100, 4096, 20000, 65536]
            off, i = 0, 0
            while off < n:
                k = min(sizes[i % len(sizes)], n - off)
                sock.sendall(b"%x\r\n" % k + pattern(off, k) + b"\r\n")
                off += k
                i += 1
            sock.sendall(b"0\r\n\r\n")
        elif parts[1] == "eof":
            send_status(sock, 200, [("X-Kind", "eof")], pattern(0, n))
            return
        elif parts[1] == "nobody":
            # No body, whatever the head says: a 304 keeps the Content-Length the
            # full answer would have (RFC 9110 8.6), a 204 has none.
            send_status(sock, n, [("Content-Length", 100), ("ETag", '"v1"')] if n == 304 else [])
        elif parts[1] == "bighead":
            send_status(sock, 200, [("X-Empty", ""), ("X-Big", "b" * n), ("Content-Length", 3)], b"abc")
        elif parts[1] == "stall":
            send_status(sock, 200, [("Content-Length", 2 * n)], pattern(0, n))
            while f.read(4096):
                pass
            return
        elif path == "/cut":
            sock.sendall(b"HTTP/1.1 2")
            return
        elif path == "/midbody":
            send_status(sock, 200, [("Content-Length", 1000)], pattern(0, 100))
            return
        elif path == "/never":
            while f.read(4096):
                pass
            return
        elif path == "/garbage":
            sock.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
            while f.read(4096):
                pass
            return
        elif path == "/id":
            time.sleep(random.uniform(0, 0.02))
            rid = headers.get("x-id", "")
            send_status(sock, 200, [("Content-Length", len(rid)), ("X-Id", rid)], rid.encode())
        else:
            send_status(sock, 404, [("Content-Length", 0)])


def handle(sock):
    try:
        serve(sock)
    except (ConnectionError, BrokenPipeError):
        pass
    finally:
        sock.close()


def main():
    global connections
    lsock = socket.socket(fileno=int(sys.argv[1]))
    if "--wait" in sys.argv[2:]:
        sys.stdin.readline()
    lsock.listen(4096)
    print("ready", flush=True)
    threading.stack_size(256 * 1024)  # 1,000 connections at once are 1,000 threads
    while True:
        s, _ = lsock.accept()
        with lock:
            connections += 1
        threading.Thread(target=handle, args=(s,), daemon=True).start()


if __name__ == "__main__":
    main()
