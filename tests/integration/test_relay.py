"""Relaying details, limits and timeouts: keep-alive, pipelining, HTTP/1.0, chunked request
bodies, 100-continue (B45), HEAD/204/304 (B46), chunked responses with trailers (B47), size limits
(B48, 413, 414) and read timeouts (B49).

Three gateways share one echo backend: `dflt` (default limits), `small` (8 KiB header section,
4 KiB per field, 100 fields, 4 KiB URI, 1000-byte bodies) and `slow` (header/body/keep-alive
timeouts of 1 s).
"""

import hashlib
import os
import socket
import time

import pytest

from conftest import check_alive, route, service
from rawhttp import Client, ConnectionClosed, assert_json_error, build, send_raw

SMALL = {"max_header_bytes": 8192, "max_headers": 100, "max_header_field_bytes": 4096,
         "max_uri_bytes": 4096, "max_body_bytes": 1000}
SLOW = {"header_timeout": 1000, "body_timeout": 1000, "keepalive_timeout": 1000}


@pytest.fixture(scope="module")
def env(mstack):
    be = mstack.backend("echo")
    svc = [service("public", be.url, [route("public", ["/public"], strip_path=False)])]
    return {"be": be, "dflt": mstack.gateway(svc), "small": mstack.gateway(svc, limits=SMALL),
            "slow": mstack.gateway(svc, limits=SLOW)}


@pytest.fixture
def e(env):
    env["be"].reset()
    yield env
    for k in ("dflt", "small", "slow"):
        check_alive(env[k])


# ---- keep-alive, pipelining, HTTP/1.0 ----

def test_keepalive_sequential(e):
    with Client(e["dflt"].port) as c:
        for i in range(5):
            r = c.request("GET", "/public/k%d" % i)
            assert r.status == 200 and r.json()["path"] == "/public/k%d" % i
            assert "close" not in (r.header("connection") or "").lower()
        assert not c.closed_within(0.3)


def test_pipelining_answered_in_order(e):
    with Client(e["dflt"].port) as c:
        c.send(build("GET", "/public/a") + build("POST", "/public/b", body=b"x" * 3000) +
               build("GET", "/public/c"))
        rs = [c.read_response() for _ in range(3)]
    assert [r.status for r in rs] == [200, 200, 200]
    assert [r.json()["path"] for r in rs] == ["/public/a", "/public/b", "/public/c"]
    assert rs[1].json()["body_len"] == 3000


def test_pipelined_slow_first_request_keeps_order(e):
    with Client(e["dflt"].port) as c:
        c.send(build("GET", "/public/sleep/300") + build("GET", "/public/fast"))
        r1, r2 = c.read_response(), c.read_response()
    assert (r1.json()["path"], r2.json()["path"]) == ("/public/sleep/300", "/public/fast")


def test_http10_closes_by_default(e):
    with Client(e["dflt"].port) as c:
        c.send(b"GET /public/x HTTP/1.0\r\nHost: example.com\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.version in ("HTTP/1.1", "HTTP/1.0")
        assert r.json()["path"] == "/public/x"
        assert c.closed_within(3), "HTTP/1.0 connection without keep-alive left open"


def test_http10_keepalive_requested(e):
    with Client(e["dflt"].port) as c:
        for i in range(2):
            c.send(b"GET /public/x HTTP/1.0\r\nHost: example.com\r\nConnection: keep-alive\r\n\r\n")
            r = c.read_response()
            assert r.status == 200
            assert r.header("content-length") is not None, "HTTP/1.0 keep-alive needs a length"


def test_connection_close_from_client(e):
    with Client(e["dflt"].port) as c:
        r = c.request("GET", "/public/x", [("Connection", "close")])
        assert r.status == 200
        assert c.closed_within(3)


# ---- request bodies ----

def test_chunked_request_body_relayed(e):
    parts = [os.urandom(n) for n in (1, 100, 4096, 65536, 3, 200000)]
    body = b"".join(b"%x\r\n" % len(p) + p + b"\r\n" for p in parts) + b"0\r\n\r\n"
    with Client(e["dflt"].port) as c:
        c.send(build("POST", "/public/chunked", [("Transfer-Encoding", "chunked")]) + body)
        r = c.read_response()
    assert r.status == 200
    doc = r.json()
    data = b"".join(parts)
    assert doc["body_len"] == len(data)
    assert doc["body_sha256"] == hashlib.sha256(data).hexdigest()
    up = {n.lower(): v for n, v in doc["headers"]}
    assert ("content-length" in up) != ("transfer-encoding" in up), doc["headers"]
    if "content-length" in up:
        assert up["content-length"] == str(len(data))
    else:
        assert up["transfer-encoding"].lower() == "chunked"


def test_chunked_request_with_trailers(e):
    with Client(e["dflt"].port) as c:
        c.send(build("POST", "/public/t", [("Transfer-Encoding", "chunked")]) +
               b"3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n" + build("GET", "/public/next"))
        r1, r2 = c.read_response(), c.read_response()
    assert r1.json()["body"] == "abc"
    assert r2.json()["path"] == "/public/next"


def test_body_sent_in_pieces(e):
    with Client(e["dflt"].port) as c:
        c.send(build("PUT", "/public/p", [("Content-Length", "10")]))
        for ch in (b"01234", b"567", b"89"):
            time.sleep(0.1)
            c.send(ch)
        r = c.read_response()
    assert r.json()["body"] == "0123456789"


# ---- 100-continue (B45) ----

def test_b45_expect_100_continue(e):
    with Client(e["dflt"].port) as c:
        c.send(b"PUT /public/upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: 4\r\n"
               b"Expect: 100-continue\r\n\r\n")
        c.sock.settimeout(3)
        first = c.read_response()
        assert first.status == 100, first
        assert first.raw_head.startswith(b"HTTP/1.1 100 Continue\r\n")
        c.sock.settimeout(10)
        c.send(b"data")
        r = c.read_response()
        assert r.status == 200, "a second interim response or no final response: %r" % r
        assert r.json()["body"] == "data"
        # still usable
        r = c.request("GET", "/public/after")
        assert r.status == 200 and r.json()["path"] == "/public/after"


def test_b45_no_100_when_request_is_refused(e):
    with Client(e["dflt"].port) as c:
        c.send(b"PUT /nope/upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: 4\r\n"
               b"Expect: 100-continue\r\n\r\n")
        c.sock.settimeout(3)
        r = c.read_response()
        assert_json_error(r, 404)


def test_b45_no_100_when_body_too_large(e):
    with Client(e["small"].port) as c:
        c.send(b"PUT /public/upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5000\r\n"
               b"Expect: 100-continue\r\n\r\n")
        c.sock.settimeout(3)
        r = c.read_response()
        assert_json_error(r, 413)
    assert e["be"].all_requests() == []


# ---- HEAD, 204, 304 (B46) ----

def test_b46_head_keeps_content_length_and_has_no_body(e):
    with Client(e["dflt"].port) as c:
        c.send(build("HEAD", "/public/head-1234"))
        r = c.read_response(head=True)
        assert r.status == 200
        assert r.header("content-length") == "1234"
        assert r.header("transfer-encoding") is None
        c.send(build("GET", "/public/y"))
        r2 = c.read_response()
        assert r2.status == 200 and r2.json()["path"] == "/public/y", r2


def test_b46_head_pipelined_with_get(e):
    with Client(e["dflt"].port) as c:
        c.send(build("HEAD", "/public/head-1234") + build("GET", "/public/y"))
        r1 = c.read_response(head=True)
        r2 = c.read_response()
    assert r1.header("content-length") == "1234"
    assert r2.status == 200 and r2.json()["path"] == "/public/y"


def test_b46_head_with_chunked_upstream_headers(e):
    with Client(e["dflt"].port) as c:
        c.send(build("HEAD", "/public/head-chunked"))
        r = c.read_response(head=True)
        assert r.status == 200
        assert r.header("content-length") != "0"
        c.send(build("GET", "/public/y"))
        r2 = c.read_response()
        assert r2.status == 200 and r2.json()["path"] == "/public/y", r2


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses(e, code):
    with Client(e["dflt"].port) as c:
        c.send(build("GET", "/public/status/%d" % code) + build("GET", "/public/z"))
        r1 = c.read_response()
        r2 = c.read_response()
    assert r1.status == code
    assert r1.header("transfer-encoding") is None
    assert r2.status == 200 and r2.json()["path"] == "/public/z"


# ---- upstream response framing (B47) ----

def test_b47_chunked_response_with_trailers(e):
    with Client(e["dflt"].port) as c:
        r = c.request("GET", "/public/chunked-trailers")
        assert r.status == 200
        assert r.body == b"hello world"
        r2 = c.request("GET", "/public/after")
        assert r2.status == 200 and r2.json()["path"] == "/public/after"


def test_close_delimited_upstream_response(e):
    with Client(e["dflt"].port) as c:
        r = c.request("GET", "/public/close-delimited")
        assert r.status == 200
        assert r.body == b"close-delimited-body"


def test_download_relayed(e):
    with Client(e["dflt"].port) as c:
        r = c.request("GET", "/public/bytes/3000000")
        assert len(r.body) == 3000000
        from backends import pattern_sha256
        assert hashlib.sha256(r.body).hexdigest() == pattern_sha256(3000000)


# ---- limits (B48, 413, 414) ----

def test_b48_large_cookie_431(e):
    responses, closed = send_raw(e["small"].port, build("GET", "/public/x",
                                                         [("Cookie", "a=" + "c" * 20480)]))
    assert responses
    assert_json_error(responses[0], 431)
    time.sleep(0.2)
    assert e["be"].all_requests() == []


def test_b48_too_many_headers_431(e):
    hdrs = [("X-H%d" % i, "v") for i in range(150)]
    responses, closed = send_raw(e["small"].port, build("GET", "/public/x", hdrs))
    assert responses
    assert_json_error(responses[0], 431)
    time.sleep(0.2)
    assert e["be"].all_requests() == []


def test_b48_field_over_per_field_limit_431(e):
    responses, closed = send_raw(e["small"].port, build("GET", "/public/x",
                                                         [("X-Big", "b" * 5000)]))
    assert responses
    assert_json_error(responses[0], 431)


def test_b48_limits_not_hit_below(e):
    hdrs = [("X-H%d" % i, "v") for i in range(90)] + [("X-Big", "b" * 3000)]
    with Client(e["small"].port) as c:
        r = c.request("GET", "/public/x", hdrs)
        assert r.status == 200, r
        r = c.request("GET", "/public/" + "u" * 3900)
        assert r.status == 200, r


def test_b48_long_request_line_414(e):
    responses, closed = send_raw(e["small"].port, build("GET", "/public/" + "u" * 16384))
    assert responses
    assert_json_error(responses[0], 414)
    time.sleep(0.2)
    assert e["be"].all_requests() == []


def test_default_uri_limit_414(e):
    responses, _ = send_raw(e["dflt"].port, build("GET", "/public/x?q=" + "u" * 9000))
    assert responses
    assert_json_error(responses[0], 414)


def test_default_header_section_limit_431(e):
    hdrs = [("X-H%d" % i, "v" * 1000) for i in range(70)]
    responses, _ = send_raw(e["dflt"].port, build("GET", "/public/x", hdrs))
    assert responses
    assert_json_error(responses[0], 431)


def test_body_limit_content_length_413_not_forwarded(e):
    with Client(e["small"].port) as c:
        c.send(build("POST", "/public/x", [("Content-Length", "1001")]))
        try:
            c.send(b"b" * 1001)
        except OSError:
            pass
        r = c.read_response()
    assert_json_error(r, 413)
    time.sleep(0.2)
    assert e["be"].all_requests() == [], "a body over the limit was forwarded"


def test_body_at_limit_accepted(e):
    with Client(e["small"].port) as c:
        r = c.request("POST", "/public/x", body=b"b" * 1000)
    assert r.status == 200 and r.json()["body_len"] == 1000


def test_body_limit_chunked_413_and_close(e):
    with Client(e["small"].port) as c:
        c.send(build("POST", "/public/x", [("Transfer-Encoding", "chunked")]))
        try:
            c.send(b"258\r\n" + b"a" * 600 + b"\r\n")
            time.sleep(0.1)
            c.send(b"258\r\n" + b"a" * 600 + b"\r\n0\r\n\r\n")
        except OSError:
            pass
        r = c.read_response()
        assert_json_error(r, 413)
        assert c.closed_within(3), "connection not closed after a chunked body over the limit"
    time.sleep(0.2)
    assert e["be"].completed() == [], "a body over the limit reached the upstream complete"


# ---- timeouts (B49) ----

def _closed_after(c, limit):
    t0 = time.monotonic()
    closed = c.closed_within(limit)
    return closed, time.monotonic() - t0


def _only_408(c):
    got = c.pending()
    assert got == b"" or got.startswith(b"HTTP/1.1 408"), got[:200]


def test_b49_slowloris_header_timeout_counts_from_first_byte(e):
    with Client(e["slow"].port) as c:
        t0 = time.monotonic()
        c.send(b"GET /public/x HTTP/1.1\r\n")
        closed = False
        while time.monotonic() - t0 < 5:
            try:
                c.send(b"X-a: b\r\n")
            except OSError:
                closed = True
                break
            if c.closed_within(0.25):
                closed = True
                break
        elapsed = time.monotonic() - t0
        assert closed, "slowloris connection kept open for 5 s (header_timeout 1 s)"
        assert 0.7 <= elapsed <= 3.0, elapsed
        _only_408(c)


def test_b49_partial_head_then_silence(e):
    with Client(e["slow"].port) as c:
        c.send(b"GET /public/x HTTP/1.1\r\nHost: exa")
        closed, elapsed = _closed_after(c, 5)
        assert closed and 0.7 <= elapsed <= 3.0, (closed, elapsed)
        _only_408(c)


def test_b49a_body_promised_never_sent(e):
    with Client(e["slow"].port) as c:
        c.send(b"GET /public/x HTTP/1.1\r\nHost: example.com\r\nContent-Length: 10\r\n\r\n")
        closed, elapsed = _closed_after(c, 5)
        assert closed and 0.7 <= elapsed <= 3.0, (closed, elapsed)
        got = c.pending()
        assert got == b"" or got.startswith(b"HTTP/1.1 408") or got.startswith(b"HTTP/1.1 504"), \
            got[:200]


def test_body_timeout_is_an_idle_gap(e):
    with Client(e["slow"].port) as c:
        c.send(b"POST /public/x HTTP/1.1\r\nHost: example.com\r\nContent-Length: 8\r\n\r\n")
        for ch in b"abcdefgh":
            time.sleep(0.4)
            c.send(bytes([ch]))
        r = c.read_response()
    assert r.status == 200 and r.json()["body"] == "abcdefgh"


def test_keepalive_timeout_closes_idle_connection(e):
    with Client(e["slow"].port) as c:
        r = c.request("GET", "/public/x")
        assert r.status == 200
        closed, elapsed = _closed_after(c, 5)
        assert closed and 0.7 <= elapsed <= 3.0, (closed, elapsed)
        assert c.pending() == b""


def test_keepalive_connection_used_within_timeout_survives(e):
    with Client(e["slow"].port) as c:
        for _ in range(4):
            r = c.request("GET", "/public/x")
            assert r.status == 200
            time.sleep(0.5)


def test_silent_connection_closed(e):
    with Client(e["slow"].port) as c:
        closed, elapsed = _closed_after(c, 5)
        assert closed and elapsed <= 3.0, (closed, elapsed)


def test_slowloris_does_not_block_normal_clients(e):
    loris = []
    try:
        for _ in range(50):
            c = Client(e["slow"].port)
            c.send(b"GET /public/x HTTP/1.1\r\n")
            loris.append(c)
        with Client(e["slow"].port) as c:
            r = c.request("GET", "/public/normal")
            assert r.status == 200
    finally:
        for c in loris:
            c.close()


# ---- many connections, many pipelined requests, aborts ----

def test_fifty_pipelined_requests_in_one_write(e):
    with Client(e["dflt"].port) as c:
        c.send(b"".join(build("GET", "/public/p%d" % i) for i in range(50)))
        paths = [c.read_response().json()["path"] for _ in range(50)]
    assert paths == ["/public/p%d" % i for i in range(50)]


def test_many_concurrent_connections(e):
    clients = [Client(e["dflt"].port) for _ in range(200)]
    try:
        for i, c in enumerate(clients):
            c.send(build("GET", "/public/c%d" % i))
        for i, c in enumerate(clients):
            r = c.read_response()
            assert r.status == 200 and r.json()["path"] == "/public/c%d" % i
    finally:
        for c in clients:
            c.close()


def test_client_aborts_during_body_upload(e):
    for _ in range(5):
        c = Client(e["dflt"].port)
        c.send(build("POST", "/public/abort", [("Content-Length", "100000")]) + b"x" * 1000)
        time.sleep(0.05)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()   # RST
    time.sleep(0.3)
    with Client(e["dflt"].port) as c:
        assert c.request("GET", "/public/ok").status == 200


def test_client_aborts_while_upstream_is_slow(e):
    for _ in range(5):
        c = Client(e["dflt"].port)
        c.send(build("GET", "/public/sleep/300"))
        time.sleep(0.05)
        c.close()
    time.sleep(0.6)
    with Client(e["dflt"].port) as c:
        assert c.request("GET", "/public/ok").status == 200


def test_client_aborts_large_download(e):
    c = Client(e["dflt"].port)
    c.send(build("GET", "/public/bytes/%d" % (200 << 20)))
    c.read_head()
    c.sock.recv(1 << 20)
    c.close()
    time.sleep(0.5)
    with Client(e["dflt"].port) as c:
        r = c.request("GET", "/public/bytes/1000")
        assert r.status == 200 and len(r.body) == 1000


def test_upstream_truncated_response_is_not_completed(e):
    with Client(e["dflt"].port) as c:
        c.send(build("GET", "/public/truncated"))
        try:
            r = c.read_response()
        except ConnectionClosed:
            return   # head relayed, then the client connection closed: detectably incomplete
        assert_json_error(r, 502)


def test_requests_after_connection_close_are_not_processed(e):
    with Client(e["dflt"].port) as c:
        c.send(build("GET", "/public/first", [("Connection", "close")]) + build("GET", "/public/second"))
        r = c.read_response()
        assert r.json()["path"] == "/public/first"
        assert c.closed_within(3)
        assert c.pending() == b"", "a request after Connection: close was answered"
    time.sleep(0.2)
    assert [q.path for q in e["be"].all_requests()] == ["/public/first"]


def test_http10_client_never_gets_chunked(e):
    with Client(e["dflt"].port) as c:
        c.send(b"GET /public/chunked-trailers HTTP/1.0\r\nHost: example.com\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.header("transfer-encoding") is None, "chunked sent to an HTTP/1.0 client"
        assert r.body == b"hello world"


def test_http10_expect_gets_no_100(e):
    with Client(e["dflt"].port) as c:
        c.send(b"PUT /public/upload HTTP/1.0\r\nHost: example.com\r\nContent-Length: 4\r\n"
               b"Expect: 100-continue\r\n\r\n")
        time.sleep(0.5)
        c.send(b"data")
        r = c.read_response()
        assert r.status == 200, "interim response sent to an HTTP/1.0 client: %r" % r
        assert r.json()["body"] == "data"


@pytest.mark.parametrize("method", ["OPTIONS", "DELETE", "PATCH", "PUT"])
def test_other_methods_forwarded(e, method):
    with Client(e["dflt"].port) as c:
        r = c.request(method, "/public/m", body=b"abc" if method in ("PATCH", "PUT") else b"")
        assert r.status == 200 and r.json()["method"] == method


def test_uri_limit_above_header_limit_still_414(stack):
    # max_uri_bytes larger than max_header_bytes: a request line longer than the URI limit is
    # still reported as 414, not 431
    be = stack.backend("echo")
    gw = stack.gateway([service("public", be.url, [route("public", ["/public"])])],
                       limits={"max_header_bytes": 4096, "max_uri_bytes": 8192})
    responses, _ = send_raw(gw.port, build("GET", "/public/" + "u" * 9000))
    assert responses
    assert_json_error(responses[0], 414)
    responses, _ = send_raw(gw.port, build("GET", "/public/" + "u" * 6000))
    assert responses
    assert_json_error(responses[0], 431)
    assert be.all_requests() == []


@pytest.mark.parametrize("data", [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 32,   # a TLS ClientHello
    b"GET /public/x\r\n",                                     # HTTP/0.9
])
def test_garbage_refused_without_waiting_for_header_timeout(e, data):
    t0 = time.monotonic()
    responses, closed = send_raw(e["dflt"].port, data, timeout=5)
    assert responses, "no answer"
    assert_json_error(responses[0], 400)
    assert time.monotonic() - t0 < 3, "waited for the 10 s header timeout"
