"""request-size-limiting plugin (docs/plugins/request-size-limiting.md): Content-Length over
the limit answered at once (413, or 417 with Expect: 100-continue), chunked bodies cut off with
413 when they pass the limit mid-stream, 411 for require_content_length, the three units and
the 128 MB default, config errors with FILE:LINE:COLUMN."""

import json
import time

import pytest

from conftest import check_plugin_config, config_errors, echoed, route, service
from rawhttp import Client, assert_json_error, request

MESSAGE = "Request size limit exceeded"


def limit(**config):
    return [{"name": "request-size-limiting", "config": config}]


@pytest.fixture(scope="module")
def gw(mstack):
    be = mstack.backend("echo")
    routes = [
        route("bytes", ["/bytes"], plugins=limit(allowed_payload_size=10, size_unit="bytes")),
        route("kb", ["/kb"], plugins=limit(allowed_payload_size=1, size_unit="kilobytes")),
        route("mb", ["/mb"], plugins=limit(allowed_payload_size=1)),
        route("dflt", ["/dflt"], plugins=[{"name": "request-size-limiting"}]),
        route("req", ["/req"], plugins=limit(allowed_payload_size=10, size_unit="bytes",
                                             require_content_length=True)),
    ]
    g = mstack.gateway([service("s", be.url, routes)])
    g.be = be
    return g


def completed(gw):
    return len(gw.be.completed())


def assert_limited(resp, status=413):
    doc = assert_json_error(resp, status)
    assert doc["message"] == MESSAGE, doc


def test_content_length_at_the_limit_passes(gw):
    doc = echoed(request(gw.port, "POST", "/bytes", body=b"0123456789"))
    assert doc["body_len"] == 10 and doc["body"] == "0123456789"


def test_content_length_over_the_limit_is_refused_at_once(gw):
    before = completed(gw)
    # only the head is sent: the answer must not wait for the body
    with Client(gw.port, timeout=5) as c:
        c.send(b"POST /bytes HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n")
        t0 = time.monotonic()
        r = c.read_response()
        assert time.monotonic() - t0 < 2
    assert_limited(r)
    assert completed(gw) == before and not [q for q in gw.be.all_requests()
                                            if q.path == "/bytes" and q.body_len == 11]


def test_expect_100_continue_gets_417_and_no_100(gw):
    with Client(gw.port, timeout=5) as c:
        c.send(b"POST /bytes HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n"
               b"Expect: 100-continue\r\n\r\n")
        interims, r = c.read_final()
    assert interims == []
    assert_limited(r, 417)


@pytest.mark.parametrize("path,size,ok", [
    ("/kb", 1024, True), ("/kb", 1025, False),
    ("/mb", 1 << 20, True), ("/mb", (1 << 20) + 1, False),
])
def test_units(gw, path, size, ok):
    if ok:
        assert echoed(request(gw.port, "POST", path, body=b"k" * size))["body_len"] == size
        return
    with Client(gw.port, timeout=5) as c:
        c.send(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
               % (path.encode(), size))
        assert_limited(c.read_response())


def test_default_is_128_megabytes(gw):
    with Client(gw.port, timeout=5) as c:
        c.send(b"POST /dflt HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
               % ((128 << 20) + 1))
        assert_limited(c.read_response())
    doc = echoed(request(gw.port, "POST", "/dflt", body=b"x" * 4096))
    assert doc["body_len"] == 4096


def chunked_head(path):
    return (b"POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            % path.encode())


def test_chunked_within_the_limit_passes(gw):
    r = request(gw.port, "POST", "/bytes", headers=[("Transfer-Encoding", "chunked")],
                body=b"4\r\n0123\r\n6\r\n456789\r\n0\r\n\r\n")
    doc = echoed(r)
    assert doc["body_len"] == 10 and doc["body"] == "0123456789"


def test_chunked_over_the_limit_gets_413_mid_stream(gw):
    before = completed(gw)
    with Client(gw.port, timeout=5) as c:
        c.send(chunked_head("/bytes") + b"8\r\n01234567\r\n")
        time.sleep(0.2)  # the first 8 bytes are under the limit: no answer yet
        assert c.pending() == b""
        try:
            c.send(b"8\r\n89abcdef\r\n")
        except OSError:
            pass
        r = c.read_response()
    assert r.status == 413, r
    assert json.loads(r.body)["message"]
    time.sleep(0.2)
    assert completed(gw) == before  # the upstream never got a whole request


def test_require_content_length(gw):
    r = request(gw.port, "GET", "/req/x")
    doc = assert_json_error(r, 411)
    assert doc["message"] == "A valid Content-Length header is required"
    # an explicit Content-Length: 0 is fine
    doc = echoed(request(gw.port, "GET", "/req/x", headers=[("Content-Length", "0")]))
    assert doc["body_len"] == 0
    # chunked bodies are accepted (counted as they stream), as in Kong
    r = request(gw.port, "POST", "/req/x", headers=[("Transfer-Encoding", "chunked")],
                body=b"3\r\nabc\r\n0\r\n\r\n")
    assert echoed(r)["body"] == "abc"
    assert_limited(request(gw.port, "POST", "/req/x", body=b"x" * 11))


# ---- config ----

def test_kong_config_loads(tmp_path):
    rc, err = check_plugin_config(tmp_path, "request-size-limiting",
                                  """              allowed_payload_size: 128
              size_unit: megabytes
              require_content_length: false""")
    assert rc == 0, err


@pytest.mark.parametrize("config,line,col,text", [
    ("              size_unit: gigabytes", 11, 26,
     '"size_unit" must be one of: megabytes, kilobytes, bytes'),
    ("              allowed_payload_size: -1", 11, 37, "must be between 0 and"),
    ('              allowed_payload_size: "10"', 11, 37, "expected an integer"),
    ("              require_content_length: 1", 11, 39, "expected true or false"),
])
def test_config_errors(tmp_path, config, line, col, text):
    rc, err = check_plugin_config(tmp_path, "request-size-limiting", config)
    assert rc == 1
    lines = config_errors(err)
    assert lines and lines[0].startswith("%d:%d: " % (line, col)), err
    assert "plugins[0](request-size-limiting).config" in lines[0], err
    assert text in lines[0], err
