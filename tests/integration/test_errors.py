"""Errors produced by the gateway itself are JSON {"message", "request_id"} with the right status;
upstream failures map to 502 / 504."""

import time

import pytest

from conftest import check_alive, dead_port, route, service
from rawhttp import Client, ConnectionClosed, assert_json_error, request, send_raw


@pytest.fixture(scope="module")
def env(mstack):
    be = mstack.backend("echo")
    gw = mstack.gateway([
        service("s", be.url, [route("r", ["/s"]), route("getonly", ["/g"], methods=["GET"])]),
        service("down", "http://127.0.0.1:%d" % dead_port(), [route("down", ["/down"])],
                retries=1),
        service("slow", be.url, [route("slow", ["/slow"])], read_timeout=500),
    ])
    return gw, be


@pytest.fixture
def gw(env):
    yield env[0]
    check_alive(env[0])


def test_404_no_route(gw):
    doc = assert_json_error(request(gw.port, "GET", "/nowhere"), 404)
    assert doc["message"]


def test_404_request_id_is_the_clients(gw):
    r = request(gw.port, "GET", "/nowhere", [("X-Request-ID", "my-id.1")])
    doc = assert_json_error(r, 404)
    assert doc["request_id"] == "my-id.1"


def test_405_method_not_allowed(gw):
    assert_json_error(request(gw.port, "POST", "/g/x", body=b"x"), 405)


@pytest.mark.parametrize("data", [
    b"GARBAGE\r\n\r\n",
    b"GET /s/x\r\nHost: example.com\r\n\r\n",
    b"GET /s/x HTTP/1.1 extra\r\nHost: example.com\r\n\r\n",
    b"GET /s/x HTTP/x.y\r\nHost: example.com\r\n\r\n",
    b"G\x01T /s/x HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"GET /s/\x7f HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"GET s/x HTTP/1.1\r\nHost: example.com\r\n\r\n",
], ids=["garbage", "no-version", "extra-token", "bad-version", "ctl-method",
        "del-in-target", "relative-target"])
def test_400_malformed(gw, data):
    responses, closed = send_raw(gw.port, data)
    assert responses, "no response"
    assert_json_error(responses[0], 400)
    assert closed


def test_502_upstream_refused(gw):
    assert_json_error(request(gw.port, "GET", "/down/x"), 502)


@pytest.mark.parametrize("path", ["/s/bad-cl-abc", "/s/bad-cl-dup", "/s/bad-status",
                                  "/s/no-response", "/s/gzip-chunked"])
def test_502_bad_upstream_response(gw, path):
    r = request(gw.port, "GET", path)
    assert_json_error(r, 502)


def test_gateway_keeps_serving_after_bad_upstream(gw):
    with Client(gw.port) as c:
        r = c.request("GET", "/s/bad-cl-abc")
        assert_json_error(r, 502)
        r = c.request("GET", "/s/x")
        assert r.status == 200


def test_504_upstream_timeout(gw):
    t0 = time.monotonic()
    r = request(gw.port, "GET", "/slow/sleep/3000")
    elapsed = time.monotonic() - t0
    assert_json_error(r, 504)
    assert elapsed < 2.5, elapsed


def test_error_statuses_have_content_length(gw):
    r = request(gw.port, "GET", "/nowhere")
    assert r.header("content-length") == str(len(r.body)) or \
        (r.header("transfer-encoding") or "").lower() == "chunked"


def test_upstream_error_status_is_relayed_not_rewritten(gw):
    r = request(gw.port, "GET", "/s/status/503")
    assert r.status == 503
    assert r.json()["backend"] == "echo"     # the upstream's own body
    r = request(gw.port, "GET", "/s/status/404")
    assert r.status == 404 and r.json()["backend"] == "echo"


def test_b06_upstream_whitespace_before_colon(gw):
    with Client(gw.port) as c:
        c.send(b"GET /s/space-before-colon HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
        r = c.read_response()
    if r.status == 502:
        assert_json_error(r, 502)
    else:
        assert r.status == 200 and r.body == b"ok"
        assert b" :" not in r.raw_head, "whitespace before colon relayed: %r" % r.raw_head


def test_upstream_cl_and_te_together(gw):
    with Client(gw.port) as c:
        c.send(b"GET /s/cl-and-te HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
        r = c.read_response()
    if r.status == 502:
        assert_json_error(r, 502)
    else:
        assert r.status == 200 and r.body == b"ok"
        assert not (r.header("content-length") and r.header("transfer-encoding")), r.headers


def test_upstream_invalid_chunk_is_not_relayed_as_complete(gw):
    with Client(gw.port) as c:
        c.send(b"GET /s/bad-chunk HTTP/1.1\r\nHost: example.com\r\n\r\n")
        try:
            r = c.read_response()
        except (ConnectionClosed, ValueError, AssertionError, OSError):
            return   # response cut short: the client can tell it is incomplete
        assert_json_error(r, 502)


def test_501_request_transfer_coding_other_than_chunked(gw):
    # the chunked layer is decoded and re-framed; a coding before it would be lost, so refuse
    responses, closed = send_raw(gw.port, b"POST /s/x HTTP/1.1\r\nHost: example.com\r\n"
                                          b"Transfer-Encoding: gzip, chunked\r\n\r\n"
                                          b"2\r\nok\r\n0\r\n\r\n")
    assert responses, "no response"
    assert_json_error(responses[0], 501)


def test_interim_responses_skipped_then_final_relayed(gw):
    r = request(gw.port, "GET", "/s/interim-few")
    assert r.status == 200 and r.body == b"ok", r


def test_interim_response_flood_502(gw):
    # an upstream cannot hold a request open forever with 1xx answers
    assert_json_error(request(gw.port, "GET", "/s/interim-flood"), 502)
