"""Logs: the access log is JSON lines, one line per request, with request-derived fields escaped
(CASES.md B57); rejected requests are logged too (B48); the error log is JSON lines."""

import json

import pytest

from conftest import check_alive, route, service
from rawhttp import Client, request, send_raw


@pytest.fixture
def gw(stack):
    be = stack.backend("echo")
    g = stack.gateway([service("s", be.url, [route("r", ["/public"])])],
                      limits={"max_header_bytes": 8192})
    yield g
    check_alive(g)


def parse_lines(lines):
    docs = []
    for raw in lines:
        text = raw.decode("utf-8")          # JSON text is UTF-8 (RFC 8259 §8.1)
        doc = json.loads(text)
        assert isinstance(doc, dict), text
        docs.append(doc)
    return docs


def values(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from values(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from values(v)
    else:
        yield obj


def test_one_line_per_request_with_request_id(gw):
    ids = []
    with Client(gw.port) as c:
        for i in range(5):
            r = c.request("GET", "/public/x%d" % i)
            ids.append(r.header("x-request-id"))
    lines = gw.wait_access_lines(5)
    assert len(lines) == 5, lines
    docs = parse_lines(lines)
    for rid, doc in zip(ids, docs):
        assert rid in list(values(doc)), "request id %s not in %r" % (rid, doc)
        assert 200 in list(values(doc)) or "200" in list(values(doc)), doc


def test_b57a_encoded_crlf_in_path(gw):
    target = "/public/%0d%0a203.0.113.1%20-%20-%20%22GET%20/admin%20HTTP/1.1%22%20200"
    r = request(gw.port, "GET", target)
    assert r.status in (200, 400, 404)
    lines = gw.wait_access_lines(1)
    assert len(lines) == 1, lines
    parse_lines(lines)
    assert b"\r" not in gw.read(gw.access_log)


def test_b57b_quotes_backslash_and_high_bytes(gw):
    data = (b"GET /public/x HTTP/1.1\r\nHost: example.com\r\n"
            b"User-Agent: ua \"quoted\" \\ back\r\nReferer: http://r.example/\x80\xff\xc3\r\n"
            b"Connection: close\r\n\r\n")
    responses, _ = send_raw(gw.port, data)
    assert responses
    lines = gw.wait_access_lines(1)
    assert len(lines) == 1, lines
    doc = parse_lines(lines)[0]
    # the User-Agent is logged and round-trips exactly through JSON escaping
    assert doc["user_agent"] == 'ua "quoted" \\ back', doc


def test_b57c_escape_byte_in_user_agent(gw):
    data = (b"GET /public/x HTTP/1.1\r\nHost: example.com\r\nUser-Agent: ua\x1b[31m\r\n"
            b"Connection: close\r\n\r\n")
    responses, _ = send_raw(gw.port, data)
    assert responses and responses[0].status in (200, 400)
    lines = gw.wait_access_lines(1)
    assert len(lines) == 1, lines
    doc = parse_lines(lines)[0]
    assert b"\x1b" not in gw.read(gw.access_log), "raw ESC byte in the access log"
    if responses[0].status == 200:
        assert doc["user_agent"] == "ua\x1b[31m", doc


def test_control_bytes_in_path_escaped(gw):
    request(gw.port, "GET", "/public/%1b%5b31m%00%07")
    lines = gw.wait_access_lines(1)
    assert len(lines) == 1
    parse_lines(lines)
    raw = gw.read(gw.access_log)
    for b in (b"\x1b", b"\x00", b"\x07"):
        assert b not in raw


def test_rejected_requests_logged_once(gw):
    responses, _ = send_raw(gw.port, b"GET /public/x HTTP/1.1\r\nHost: example.com\r\n"
                                     b"Cookie: " + b"c" * 20000 + b"\r\n\r\n")
    assert responses and responses[0].status == 431
    r = request(gw.port, "GET", "/nowhere")
    assert r.status == 404
    lines = gw.wait_access_lines(2)
    assert len(lines) == 2, lines
    docs = parse_lines(lines)
    assert 431 in list(values(docs[0])) or "431" in list(values(docs[0]))
    assert 404 in list(values(docs[1])) or "404" in list(values(docs[1]))


def test_error_log_is_json_lines(gw):
    request(gw.port, "GET", "/public/x")
    data = gw.read(gw.error_log)
    for line in data.split(b"\n"):
        if line:
            assert isinstance(json.loads(line.decode("utf-8")), dict), line
