"""Request mirroring: a copy of each request goes to a shadow service whose answers are
discarded and whose slowness or absence never reaches the client."""

import socketserver
import threading
import time

from conftest import check_alive, dead_port, route, service
from rawhttp import request


class Shadow:
    """Records each request (method, path, body) and answers after `delay` seconds."""

    def __init__(self, delay):
        outer = self
        self.seen = []
        self.lock = threading.Lock()

        class H(socketserver.BaseRequestHandler):
            def handle(self):
                sock, buf = self.request, b""
                while b"\r\n\r\n" not in buf:
                    d = sock.recv(65536)
                    if not d:
                        return
                    buf += d
                head, _, body = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ")
                hdrs = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
                want = int(hdrs.get("content-length", "0"))
                while len(body) < want:
                    d = sock.recv(65536)
                    if not d:
                        break
                    body += d
                with outer.lock:
                    outer.seen.append((method, path, body, hdrs))
                time.sleep(delay)
                sock.sendall(b"HTTP/1.1 500 Shadow\r\nContent-Length: 6\r\n\r\nshadow")

        class S(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = S(("127.0.0.1", 0), H)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    @property
    def port(self):
        return self.server.server_address[1]

    def wait(self, n, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.seen) >= n:
                    return list(self.seen)
            time.sleep(0.02)
        return list(self.seen)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_slow_mirror_does_not_delay_the_client(stack):
    primary = stack.backend("primary")
    shadow = Shadow(delay=2.0)
    try:
        gw = stack.gateway([service("p", primary.url, [route("r", ["/m"], mirror="shadow")]),
                            service("shadow", "http://127.0.0.1:%d" % shadow.port, [])])
        for i in range(5):
            t0 = time.monotonic()
            r = request(gw.port, "GET", "/m/item%d?q=1" % i)
            assert r.status == 200 and r.json()["backend"] == "primary"
            assert time.monotonic() - t0 < 0.5, "the 2 s shadow delayed the client"
        r = request(gw.port, "POST", "/m/upload", body=b"x" * 5000)
        assert r.status == 200 and r.json()["body_len"] == 5000
        seen = shadow.wait(6)
        assert sorted(p for _, p, _, _ in seen) == sorted(
            ["/item%d?q=1" % i for i in range(5)] + ["/upload"])
        post = [s for s in seen if s[0] == "POST"][0]
        assert post[2] == b"x" * 5000
        assert post[3]["host"] == "127.0.0.1:%d" % shadow.port
        check_alive(gw)
    finally:
        shadow.close()


def test_missing_mirror_target_is_harmless(stack):
    primary = stack.backend("primary")
    gw = stack.gateway([service("p", primary.url, [route("r", ["/m"], mirror="shadow")]),
                        service("shadow", "http://127.0.0.1:%d" % dead_port(), [])])
    for _ in range(10):
        assert request(gw.port, "GET", "/m/x").status == 200
    check_alive(gw)


def fd_count(pid):
    import os
    return len(os.listdir("/proc/%d/fd" % pid))


def test_hanging_mirror_is_released_by_its_timeout(stack):
    from backends import FixedBackend
    primary = stack.backend("primary")
    hang = FixedBackend(hang=True)
    try:
        gw = stack.gateway([service("p", primary.url, [route("r", ["/m"], mirror="shadow")]),
                            service("shadow", "http://127.0.0.1:%d" % hang.port, [],
                                    read_timeout=300)])
        request(gw.port, "GET", "/m/warm")
        time.sleep(0.6)
        base = fd_count(gw.pid)
        for i in range(40):
            assert request(gw.port, "GET", "/m/x%d" % i).status == 200
        time.sleep(1.0)          # 300 ms read_timeout: every mirror is gone by now
        assert fd_count(gw.pid) <= base + 2, (base, fd_count(gw.pid))
    finally:
        hang.close()


def test_body_over_the_mirror_cap_is_not_mirrored(stack):
    primary = stack.backend("primary")
    shadow = Shadow(delay=0)
    try:
        gw = stack.gateway([service("p", primary.url, [route("r", ["/m"], mirror="shadow")]),
                            service("shadow", "http://127.0.0.1:%d" % shadow.port, [])])
        big = b"y" * 2000000
        assert request(gw.port, "POST", "/m/big", body=big).json()["body_len"] == len(big)
        from rawhttp import Client
        with Client(gw.port) as c:   # chunked: the size is only known at the end
            c.send(b"POST /m/bigchunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(40):
                c.send(b"c350\r\n" + b"z" * 50000 + b"\r\n")
            c.send(b"0\r\n\r\n")
            assert c.read_response().json()["body_len"] == 2000000
        assert request(gw.port, "POST", "/m/small", body=b"s" * 1000).status == 200
        seen = shadow.wait(1, timeout=5)
        time.sleep(0.5)
        paths = [p for _, p, _, _ in shadow.seen]
        assert paths == ["/small"], paths          # nothing partial, nothing truncated
    finally:
        shadow.close()
