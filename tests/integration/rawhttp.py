"""Raw-socket HTTP/1.1 client helpers: send exact bytes, read one response at a time, and tell
whether the peer closed the connection."""

import json
import socket
import time


class ConnectionClosed(Exception):
    pass


class Response:
    def __init__(self):
        self.version = None
        self.status = None
        self.reason = None
        self.headers = []
        self.body = b""
        self.trailers = []
        self.raw_head = b""

    def header(self, name):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def header_all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %s %s %r body=%r>" % (self.status, self.reason, self.headers,
                                                self.body[:300])


def build(method="GET", target="/", headers=None, body=b"", version="HTTP/1.1",
          host="example.com"):
    """Build request bytes. headers: list of (name, value); Host is added first unless
    host is None or headers already has one."""
    hdrs = list(headers or [])
    if host is not None and not any(n.lower() == "host" for n, _ in hdrs):
        hdrs.insert(0, ("Host", host))
    if body and not any(n.lower() in ("content-length", "transfer-encoding") for n, _ in hdrs):
        hdrs.append(("Content-Length", str(len(body))))
    out = "%s %s %s\r\n" % (method, target, version)
    for n, v in hdrs:
        out += "%s: %s\r\n" % (n, v)
    return out.encode("latin-1") + b"\r\n" + body


class Client:
    def __init__(self, port, host="127.0.0.1", timeout=10.0, source=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if source:
            self.sock.bind((source, 0))
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = bytearray()
        self.timeout = timeout

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        try:
            data = self.sock.recv(1 << 20)
        except ConnectionResetError:
            data = b""
        if not data:
            raise ConnectionClosed("connection closed by peer")
        self.buf += data

    def _line(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[: i + 1])
                del self.buf[: i + 1]
                return line
            self._fill()

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_head(self):
        r = Response()
        raw = bytearray()
        line = self._line()
        raw += line
        parts = line.rstrip(b"\r\n").decode("latin-1").split(" ", 2)
        r.version = parts[0]
        r.status = int(parts[1])
        r.reason = parts[2] if len(parts) > 2 else ""
        while True:
            line = self._line()
            raw += line
            if line in (b"\r\n", b"\n"):
                break
            n, v = line.rstrip(b"\r\n").decode("latin-1").split(":", 1)
            r.headers.append((n, v.strip()))
        r.raw_head = bytes(raw)
        return r

    def read_response(self, head=False):
        """Read one response (a 1xx is returned as a response of its own)."""
        r = self.read_head()
        if 100 <= r.status < 200 or r.status in (204, 304) or head:
            return r
        te = ",".join(r.header_all("transfer-encoding")).lower()
        cl = r.header("content-length")
        if te:
            body = bytearray()
            while True:
                size = int(self._line().split(b";")[0].strip(), 16)
                if size == 0:
                    while True:
                        t = self._line()
                        if t in (b"\r\n", b"\n"):
                            break
                        r.trailers.append(t.rstrip(b"\r\n").decode("latin-1"))
                    break
                body += self._exact(size)
                assert self._exact(2) == b"\r\n", "chunk data not followed by CRLF"
            r.body = bytes(body)
        elif cl is not None:
            r.body = self._exact(int(cl))
        else:
            body = bytearray(self.buf)
            self.buf.clear()
            while True:
                try:
                    d = self.sock.recv(1 << 20)
                except ConnectionResetError:
                    d = b""
                if not d:
                    break
                body += d
            r.body = bytes(body)
        return r

    def read_final(self, head=False):
        """Read interim responses and the final one: returns (interims, final)."""
        interims = []
        while True:
            r = self.read_response(head=head)
            if r.status >= 200 or r.status == 101:
                return interims, r
            interims.append(r)

    def request(self, method="GET", target="/", headers=None, body=b"", version="HTTP/1.1",
                host="example.com"):
        self.send(build(method, target, headers, body, version, host))
        return self.read_final(head=(method == "HEAD"))[1]

    def closed_within(self, timeout):
        """True if the peer closes (EOF or reset) within `timeout` seconds; data that arrives
        in the meantime is kept in self.buf."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.sock.settimeout(left)
                try:
                    d = self.sock.recv(65536)
                except socket.timeout:
                    return False
                except ConnectionResetError:
                    return True
                if not d:
                    return True
                self.buf += d
        finally:
            self.sock.settimeout(self.timeout)

    def pending(self):
        return bytes(self.buf)


def request(port, method="GET", target="/", headers=None, body=b"", host="example.com",
            timeout=15.0, source=None, version="HTTP/1.1"):
    """One request on a fresh connection (Connection: close)."""
    hdrs = list(headers or [])
    if not any(n.lower() == "connection" for n, _ in hdrs):
        hdrs.append(("Connection", "close"))
    with Client(port, timeout=timeout, source=source) as c:
        return c.request(method, target, hdrs, body, version=version, host=host)


def send_raw(port, data, timeout=10.0):
    """Send raw bytes on a fresh connection; return (responses, closed) where responses are all
    complete responses read before the peer closed or went quiet for 1.5 s."""
    c = Client(port, timeout=timeout)
    out = []
    closed = False
    try:
        c.send(data)
        while True:
            c.sock.settimeout(1.5 if out else timeout)
            try:
                out.append(c.read_response())
            except ConnectionClosed:
                closed = True
                break
            except socket.timeout:
                break
        if not closed:
            closed = c.closed_within(1.5)
    finally:
        c.close()
    return out, closed


def assert_json_error(resp, status):
    """A gateway-produced error: right status, application/json, {"message", "request_id"}."""
    assert resp.status == status, resp
    ctype = (resp.header("content-type") or "").lower()
    assert ctype.startswith("application/json"), resp
    doc = json.loads(resp.body)
    assert isinstance(doc.get("message"), str) and doc["message"], doc
    assert isinstance(doc.get("request_id"), str) and doc["request_id"], doc
    rid = resp.header("x-request-id")
    assert rid == doc["request_id"], (rid, doc)
    return doc
