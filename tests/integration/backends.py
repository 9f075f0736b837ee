"""In-process HTTP/1.1 backends for the integration tests.

The backend parses HTTP by itself (not http.server) so that it can also act as a raw recorder:
every byte it receives can be kept, and every request it manages to parse is recorded with its
headers exactly as they arrived.  Its parser is deliberately lenient, like many real upstreams:
a bare LF ends a line, surrounding whitespace is trimmed from values, and a request is framed by
`Transfer-Encoding: chunked` when chunked is the last coding, else by the first Content-Length.
That is what makes it a good smuggling detector: if the gateway forwards something ambiguous,
this backend reads a second request out of it.

Endpoints (matched anywhere at the end of the forwarded path, so any route prefix works):
  default           JSON echo: {method, target, path, query, version, headers, body_len,
                    body_sha256, body, backend, conn_id}
  /status/N         status N (204/304: no body), JSON echo otherwise
  /sleep/MS         sleep, then JSON echo
  /bytes/N          N bytes of the shared pattern (see pattern_block), with Content-Length
  /chunked-trailers the B47 response (chunked, "hello world", trailer X-Checksum)
  /head-1234        Content-Length: 1234 (no body for HEAD, 1234 bytes for GET)
  /head-chunked     Transfer-Encoding: chunked (no body for HEAD, "abc" for GET)
  /ws               RFC 6455 handshake + echo of every frame; JSON echo when not an upgrade
  /upgrade-426 | /upgrade-403 | /upgrade-200   refuse an upgrade with that status (B41)
  /conn-count       {"connections": accepted connections so far}
  /bad-cl-abc, /bad-cl-dup, /bad-status, /no-response, /close-delimited, /close-after,
  /conn-close, /space-before-colon, /cl-and-te, /bad-chunk, /truncated, /resp-hop,
  /truncated-json, /bad-chunk-json (the same as JSON, for response-transformer),
  /gzip-chunked, /interim-flood, /interim-few   broken or unusual upstream
                    responses
In recorder mode every request is answered with `HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok`.
"""

import base64
import hashlib
import json
import random
import re
import socket
import socketserver
import struct
import threading
import time

BLOCK = 1 << 20
_PATTERN = random.Random(20240601).randbytes(BLOCK)
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
RECORDER_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
SMALL_BODY_KEEP = 1 << 20


def pattern_block(i, size=BLOCK):
    """Block i of the shared pattern stream: a fixed 1 MiB random block whose first 8 bytes
    carry the block number, so reordered or repeated blocks change the hash."""
    blk = bytearray(_PATTERN)
    blk[0:8] = i.to_bytes(8, "big")
    return bytes(blk[:size]) if size != BLOCK else bytes(blk)


def pattern_stream(total):
    """Yield the first `total` bytes of the pattern stream in blocks of at most 1 MiB."""
    i = 0
    left = total
    while left > 0:
        n = min(BLOCK, left)
        yield pattern_block(i, n)
        left -= n
        i += 1


_HASH_CACHE = {}


def pattern_sha256(total):
    if total not in _HASH_CACHE:
        h = hashlib.sha256()
        for blk in pattern_stream(total):
            h.update(blk)
        _HASH_CACHE[total] = h.hexdigest()
    return _HASH_CACHE[total]


class ParseError(Exception):
    pass


class Reader:
    """Buffered reader over a socket that optionally records every received byte."""

    def __init__(self, sock, record=None, lock=None):
        self.sock = sock
        self.buf = bytearray()
        self.record = record
        self.lock = lock

    def _recv(self, n):
        data = self.sock.recv(n)
        if data and self.record is not None:
            with self.lock:
                self.record.append(data)
        return data

    def readline(self, limit=1 << 20):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[: i + 1])
                del self.buf[: i + 1]
                return line
            if len(self.buf) > limit:
                raise ParseError("line too long")
            data = self._recv(65536)
            if not data:
                if self.buf:
                    raise ParseError("EOF inside a line")
                return b""
            self.buf += data

    def read(self, n):
        """Up to n bytes (at least 1), b'' at EOF."""
        if self.buf:
            out = bytes(self.buf[:n])
            del self.buf[:n]
            return out
        return self._recv(min(n, BLOCK))

    def read_exact(self, n):
        out = bytearray()
        while len(out) < n:
            d = self.read(n - len(out))
            if not d:
                raise ParseError("EOF in body")
            out += d
        return bytes(out)


class Request:
    def __init__(self):
        self.method = self.target = self.version = None
        self.headers = []          # [name, value] as received (name case kept)
        self.head_raw = b""
        self.body_len = 0
        self.body_sha256 = None
        self.body = b""            # first SMALL_BODY_KEEP bytes
        self.complete = False
        self.conn_id = None

    @property
    def path(self):
        return self.target.split("?", 1)[0] if self.target else None

    @property
    def query(self):
        return self.target.split("?", 1)[1] if self.target and "?" in self.target else ""

    def header(self, name):
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def header_all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]

    def conn_tokens(self):
        toks = []
        for v in self.header_all("connection"):
            toks += [t.strip().lower() for t in v.split(",") if t.strip()]
        return toks

    def as_dict(self, backend):
        return {
            "method": self.method, "target": self.target, "path": self.path,
            "query": self.query, "version": self.version, "headers": self.headers,
            "body_len": self.body_len, "body_sha256": self.body_sha256,
            "body": self.body.decode("latin-1") if self.body_len <= 65536 else None,
            "backend": backend.name, "conn_id": self.conn_id,
        }


def read_head(rd):
    """Read a request head. Returns a Request, or None at a clean EOF before any byte."""
    req = Request()
    raw = bytearray()
    line = rd.readline()
    while line in (b"\r\n", b"\n"):   # tolerate empty lines before a request (RFC 9112 §2.2)
        raw += line
        line = rd.readline()
    if not line:
        return None
    raw += line
    parts = line.rstrip(b"\r\n").decode("latin-1").split(" ")
    if len(parts) != 3:
        raise ParseError("bad request line %r" % line)
    req.method, req.target, req.version = parts
    while True:
        line = rd.readline()
        if not line:
            raise ParseError("EOF in headers")
        raw += line
        if line in (b"\r\n", b"\n"):
            break
        text = line.rstrip(b"\r\n").decode("latin-1")
        if ":" not in text:
            raise ParseError("bad header line %r" % line)
        name, value = text.split(":", 1)
        req.headers.append([name, value.strip(" \t")])
        if len(raw) > (4 << 20):
            raise ParseError("head too large")
    req.head_raw = bytes(raw)
    return req


def _framing(req):
    te = req.header_all("transfer-encoding")
    if te:
        codings = [c.strip().lower() for v in te for c in v.split(",") if c.strip()]
        if codings and codings[-1] == "chunked":
            return "chunked", None
    cl = req.header("content-length")
    if cl is not None:
        try:
            return "length", int(cl.split(",")[0].strip())
        except ValueError:
            raise ParseError("bad content-length %r" % cl)
    return "length", 0


def read_body(rd, req):
    """Stream the body: count, hash, keep the first bytes."""
    kind, n = _framing(req)
    h = hashlib.sha256()
    kept = bytearray()
    total = 0

    def take(data):
        nonlocal total
        h.update(data)
        if len(kept) < SMALL_BODY_KEEP:
            kept.extend(data[: SMALL_BODY_KEEP - len(kept)])
        total += len(data)

    if kind == "length":
        left = n
        while left > 0:
            d = rd.read(left)
            if not d:
                raise ParseError("EOF in body")
            take(d)
            left -= len(d)
    else:
        while True:
            line = rd.readline()
            if not line:
                raise ParseError("EOF in chunked body")
            size_s = line.rstrip(b"\r\n").split(b";", 1)[0].strip()
            try:
                size = int(size_s, 16)
            except ValueError:
                raise ParseError("bad chunk size %r" % line)
            if size == 0:
                while True:   # trailers
                    t = rd.readline()
                    if t in (b"\r\n", b"\n"):
                        break
                    if not t:
                        raise ParseError("EOF in trailers")
                break
            left = size
            while left > 0:
                d = rd.read(left)
                if not d:
                    raise ParseError("EOF in chunk")
                take(d)
                left -= len(d)
            if rd.readline() not in (b"\r\n", b"\n"):
                raise ParseError("no CRLF after chunk data")
    req.body_len = total
    req.body_sha256 = h.hexdigest()
    req.body = bytes(kept)


def ws_accept(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def ws_read_frame(rd):
    """Read one frame. Returns (fin, opcode, payload) or None at EOF."""
    h = rd.read_exact(2)
    fin = bool(h[0] & 0x80)
    opcode = h[0] & 0x0F
    masked = bool(h[1] & 0x80)
    ln = h[1] & 0x7F
    if ln == 126:
        ln = struct.unpack("!H", rd.read_exact(2))[0]
    elif ln == 127:
        ln = struct.unpack("!Q", rd.read_exact(8))[0]
    key = rd.read_exact(4) if masked else None
    payload = rd.read_exact(ln) if ln else b""
    if masked:
        payload = ws_mask(payload, key)
    return fin, opcode, payload


def ws_mask(payload, key):
    if not payload:
        return b""
    n = len(payload)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def ws_frame(opcode, payload, fin=True, mask=None):
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if mask:
        return head + mask + ws_mask(payload, mask)
    return head + payload


class _Handler(socketserver.BaseRequestHandler):
    def handle(self):
        be = self.server.backend
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with be.lock:
            be.conn_count += 1
            conn_id = be.conn_count
            be.socks.add(sock)
        rd = Reader(sock, be.raw if be.recorder else None, be.lock)
        try:
            while True:
                try:
                    req = read_head(rd)
                except ParseError as e:
                    be._note_error(str(e))
                    return
                if req is None:
                    return
                req.conn_id = conn_id
                with be.lock:
                    be.requests.append(req)
                if not be.recorder and (req.header("expect") or "").lower() == "100-continue":
                    sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                try:
                    read_body(rd, req)
                except ParseError as e:
                    be._note_error(str(e))
                    return
                req.complete = True
                if be.recorder:
                    sock.sendall(RECORDER_RESPONSE)
                    continue
                if not be.respond(req, sock, rd):
                    return
        except (OSError, ParseError):
            return
        finally:
            with be.lock:
                be.socks.discard(sock)
            try:
                sock.close()
            except OSError:
                pass


class _Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 512


class Backend:
    def __init__(self, name="backend", recorder=False, port=0, host="127.0.0.1"):
        self.name = name
        self.host = host
        self.recorder = recorder
        self.lock = threading.Lock()
        self.conn_count = 0
        self.raw = []
        self.requests = []
        self.errors = []
        self.socks = set()
        self.server = _Server((host, port), _Handler)
        self.server.backend = self
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def port(self):
        return self.server.server_address[1]

    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    def reset(self):
        with self.lock:
            self.raw.clear()
            self.requests.clear()
            self.errors.clear()

    def raw_bytes(self):
        with self.lock:
            return b"".join(self.raw)

    def completed(self):
        with self.lock:
            return [r for r in self.requests if r.complete]

    def all_requests(self):
        with self.lock:
            return list(self.requests)

    def _note_error(self, msg):
        with self.lock:
            self.errors.append(msg)

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            socks = list(self.socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # ---- echo mode ----

    def _send(self, sock, status, reason, headers, body=b""):
        head = "HTTP/1.1 %d %s\r\n" % (status, reason)
        for n, v in headers:
            head += "%s: %s\r\n" % (n, v)
        sock.sendall(head.encode("latin-1") + b"\r\n" + body)

    def _json(self, sock, req, status=200, reason="OK", extra=()):
        body = json.dumps(req.as_dict(self)).encode()
        hdrs = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        hdrs += list(extra)
        self._send(sock, status, reason, hdrs, b"" if req.method == "HEAD" else body)

    def respond(self, req, sock, rd):
        """Answer one request. Returns False when the connection must end."""
        path = req.path or ""
        head = req.method == "HEAD"
        m = re.search(r"/status/(\d{3})$", path)
        if m:
            code = int(m.group(1))
            if code in (204, 304):
                self._send(sock, code, "No Content" if code == 204 else "Not Modified",
                           [("X-Backend", self.name)])
            else:
                self._json(sock, req, code, "Status")
            return True
        m = re.search(r"/sleep/(\d+)$", path)
        if m:
            time.sleep(int(m.group(1)) / 1000.0)
            self._json(sock, req)
            return True
        m = re.search(r"/bytes/(\d+)$", path)
        if m:
            n = int(m.group(1))
            self._send(sock, 200, "OK", [("Content-Type", "application/octet-stream"),
                                         ("Content-Length", str(n))])
            if not head:
                for blk in pattern_stream(n):
                    sock.sendall(blk)
            return True
        if path.endswith("/chunked-trailers"):
            sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n"
                         b"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n")
            return True
        if path.endswith("/head-1234"):
            self._send(sock, 200, "OK", [("Content-Length", "1234"),
                                         ("Content-Type", "application/octet-stream")],
                       b"" if head else b"x" * 1234)
            return True
        if path.endswith("/head-chunked"):
            self._send(sock, 200, "OK", [("Transfer-Encoding", "chunked"),
                                         ("Content-Type", "application/octet-stream")],
                       b"" if head else b"3\r\nabc\r\n0\r\n\r\n")
            return True
        if path.endswith("/ws"):
            up = (req.header("upgrade") or "").lower()
            if "upgrade" in req.conn_tokens() and up == "websocket":
                return self._websocket(req, sock, rd)
            self._json(sock, req)
            return True
        m = re.search(r"/upgrade-(\d{3})$", path)
        if m:
            code = int(m.group(1))
            if code == 426:
                sock.sendall(b"HTTP/1.1 426 Upgrade Required\r\nConnection: upgrade\r\n"
                             b"Upgrade: websocket\r\nContent-Length: 0\r\n\r\n")
            elif code == 403:
                sock.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 12\r\n\r\nforbidden!!\n")
            else:
                sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nplain body")
            return True
        if path.endswith("/conn-count"):
            with self.lock:
                n = self.conn_count
            body = json.dumps({"connections": n}).encode()
            self._send(sock, 200, "OK", [("Content-Type", "application/json"),
                                         ("Content-Length", str(len(body)))], body)
            return True
        if path.endswith("/bad-cl-abc"):
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nok")
            return False
        if path.endswith("/bad-cl-dup"):
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nokk")
            return False
        if path.endswith("/bad-status"):
            sock.sendall(b"HTTP/1.1 abc\r\nContent-Length: 2\r\n\r\nok")
            return False
        if path.endswith("/space-before-colon"):
            sock.sendall(b"HTTP/1.1 200 OK\r\nX-Bad : 1\r\nContent-Length: 2\r\n\r\nok")
            return False
        if path.endswith("/cl-and-te"):
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"2\r\nok\r\n0\r\n\r\n")
            return False
        if path.endswith("/interim-flood") or path.endswith("/interim-few"):
            n = 40 if path.endswith("/interim-flood") else 3
            sock.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" * n +
                         b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            return True
        if path.endswith("/gzip-chunked"):
            sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                         b"2\r\nok\r\n0\r\n\r\n")
            return False
        if path.endswith("/truncated-json"):
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"a\":1")
            time.sleep(0.05)
            return False
        if path.endswith("/bad-chunk-json"):
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\nzz\r\n1}\r\n0\r\n\r\n")
            return False
        if path.endswith("/bad-chunk"):
            sock.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
                         b"zz\r\nworld\r\n0\r\n\r\n")
            return False
        if path.endswith("/truncated"):
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
            time.sleep(0.05)
            return False
        if path.endswith("/resp-hop"):
            sock.sendall(b"HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\n"
                         b"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n"
                         b"X-End-To-End: yes\r\nContent-Length: 2\r\n\r\nok")
            return True
        if path.endswith("/no-response"):
            return False
        if path.endswith("/close-delimited"):
            sock.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nclose-delimited-body")
            return False
        if path.endswith("/close-after"):
            self._json(sock, req)
            time.sleep(0.05)
            return False   # close without announcing it (as an idle timeout would)
        if path.endswith("/conn-close"):
            self._json(sock, req, extra=[("Connection", "close")])
            return False
        self._json(sock, req)
        return True

    def _websocket(self, req, sock, rd):
        key = req.header("sec-websocket-key") or ""
        sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % ws_accept(key))
                     .encode())
        while True:
            try:
                fin, opcode, payload = ws_read_frame(rd)
            except ParseError:
                return False
            if opcode == 8:
                sock.sendall(ws_frame(8, payload[:2]))
                return False
            if opcode == 9:
                sock.sendall(ws_frame(10, payload))
                continue
            sock.sendall(ws_frame(opcode, payload, fin=fin))


class _LocalServer:
    """Base of the small canned servers below: a threaded TCP server on a free loopback port
    that runs `handler` (a socketserver.BaseRequestHandler class) for each connection."""

    def _serve(self, handler):
        class S(socketserver.ThreadingTCPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.server = S(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()

    @property
    def port(self):
        return self.server.server_address[1]

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class FixedBackend(_LocalServer):
    """A backend that answers every request with `status` after `delay` seconds, or never
    (hang=True), and counts the requests it received. status and delay may be changed while it
    runs (a target that recovers)."""

    def __init__(self, status=503, delay=0.0, hang=False):
        outer = self
        self.status, self.delay, self.hang, self.count = status, delay, hang, 0
        self.lock = threading.Lock()

        class H(socketserver.BaseRequestHandler):
            def handle(self):
                sock, buf = self.request, b""
                while True:
                    while b"\r\n\r\n" not in buf:
                        d = sock.recv(65536)
                        if not d:
                            return
                        buf += d
                    _, _, buf = buf.partition(b"\r\n\r\n")
                    with outer.lock:
                        outer.count += 1
                    if outer.hang:
                        time.sleep(30)
                        return
                    time.sleep(outer.delay)
                    body = b"fixed %d" % outer.status
                    sock.sendall(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s"
                                 % (outer.status, len(body), body))

        self._serve(H)


class RawHeadServer(_LocalServer):
    """A server of canned bytes: for each connection it reads the request head and sends back
    whatever respond(head) returns (head: the bytes up to the blank line), then closes."""

    def __init__(self, respond):
        class H(socketserver.BaseRequestHandler):
            def handle(self):
                buf = b""
                while b"\r\n\r\n" not in buf:
                    d = self.request.recv(65536)
                    if not d:
                        return
                    buf += d
                self.request.sendall(respond(buf))

        self._serve(H)
