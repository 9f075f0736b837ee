"""request-termination plugin (docs/plugins/request-termination.md): Kong's default 503, a
message, a verbatim body with its content type, statuses without a default text, 204, trigger
by header or query argument, echo of the request (query, headers, JSON and form bodies),
scoping by service, config errors with FILE:LINE:COLUMN."""

import json

import pytest

from conftest import check_plugin_config, config_errors, route, service
from rawhttp import assert_json_error, request


def term(**config):
    return [{"name": "request-termination", "config": config}]


@pytest.fixture(scope="module")
def gw(mstack):
    be = mstack.backend("echo")
    routes = [
        route("dflt", ["/dflt"], plugins=[{"name": "request-termination"}]),
        route("msg", ["/msg"], plugins=term(status_code=403, message="Go away")),
        route("teapot", ["/teapot"], plugins=term(status_code=418)),
        route("nocontent", ["/nocontent"], plugins=term(status_code=204)),
        route("html", ["/html"], plugins=term(status_code=200, content_type="text/html",
                                              body="<h1>maintenance</h1>")),
        route("bare", ["/bare"], plugins=term(status_code=410, body="gone for good")),
        route("trig", ["/trig"], plugins=term(trigger="X-Kill", message="killed")),
        route("echo", ["/echo"], plugins=term(echo=True, status_code=200)),
        route("echotrig", ["/echotrig"], plugins=term(echo=True, trigger="debug")),
        route("open", ["/open"]),
    ]
    g = mstack.gateway([service("s", be.url, routes),
                        service("closed", be.url, [route("c", ["/closed"])],
                                plugins=term(status_code=503, message="down"))])
    g.be = be
    return g


def proxied(gw):
    return len(gw.be.completed())


def test_default_is_503_service_unavailable(gw):
    before = proxied(gw)
    r = request(gw.port, "GET", "/dflt/x")
    doc = assert_json_error(r, 503)
    assert doc["message"] == "Service unavailable"
    assert set(doc) == {"message", "request_id"}
    assert proxied(gw) == before


def test_message(gw):
    doc = assert_json_error(request(gw.port, "POST", "/msg", body=b"ignored"), 403)
    assert doc["message"] == "Go away"


def test_status_without_default_text_has_an_empty_body(gw):
    r = request(gw.port, "GET", "/teapot")
    assert r.status == 418 and r.body == b"" and r.header("content-length") == "0", r
    assert r.header("content-type") is None


def test_204_has_no_body(gw):
    r = request(gw.port, "GET", "/nocontent")
    assert r.status == 204 and r.body == b"", r


def test_body_and_content_type_verbatim(gw):
    r = request(gw.port, "GET", "/html")
    assert r.status == 200 and r.body == b"<h1>maintenance</h1>", r
    assert r.header("content-type") == "text/html"
    assert r.header("content-length") == str(len(r.body))
    r = request(gw.port, "GET", "/bare")
    assert r.status == 410 and r.body == b"gone for good" and r.header("content-type") is None


def test_service_scope(gw):
    doc = assert_json_error(request(gw.port, "GET", "/closed"), 503)
    assert doc["message"] == "down"
    assert request(gw.port, "GET", "/open").status == 200


def test_trigger(gw):
    before = proxied(gw)
    r = request(gw.port, "GET", "/trig/x")
    assert r.status == 200 and json.loads(r.body)["path"] == "/x"   # no trigger: proxied
    assert proxied(gw) == before + 1
    doc = assert_json_error(request(gw.port, "GET", "/trig/x", headers=[("x-kill", "1")]), 503)
    assert doc["message"] == "killed"
    assert_json_error(request(gw.port, "GET", "/trig/x?X-Kill"), 503)
    assert_json_error(request(gw.port, "GET", "/trig/x?a=1&X-Kill=0"), 503)
    # query argument names are case-sensitive (Kong's get_query); header names are not
    assert request(gw.port, "GET", "/trig/x?x-kill=1").status == 200
    assert proxied(gw) == before + 2


def test_echo_get(gw):
    r = request(gw.port, "GET", "/echo/a/b?x=1&x=2&flag&sp=a+b%21", host="api.example.com:8080",
                headers=[("X-Test", "v"), ("X-Multi", "1"), ("x-multi", "2")])
    assert r.status == 200 and r.header("content-type") == "application/json", r
    doc = json.loads(r.body)
    assert doc["request_id"] == r.header("x-request-id")
    assert "message" not in doc           # 200 has no default text
    req = doc["request"]
    assert req["method"] == "GET" and req["path"] == "/echo/a/b"
    assert req["host"] == "api.example.com"
    assert req["query"] == {"x": ["1", "2"], "flag": True, "sp": "a b!"}
    assert req["headers"]["x-test"] == "v"
    assert req["headers"]["x-multi"] == ["1", "2"]
    assert req["headers"]["host"] == "api.example.com:8080"
    assert "body" not in req and "raw_body" not in req
    assert doc["matched_route"] == {"name": "echo"}
    assert doc["matched_service"] == {"name": "s"}


def test_echo_json_and_form_bodies(gw):
    body = b'{"a":[1,2],"b":"\xc3\xa9"}'
    r = request(gw.port, "POST", "/echo", body=body, headers=[("Content-Type", "application/json")])
    req = json.loads(r.body)["request"]
    assert req["body"] == {"a": [1, 2], "b": "\u00e9"}
    assert req["raw_body"] == body.decode()
    r = request(gw.port, "POST", "/echo", body=b"k=v&k=w&e=%3D",
                headers=[("Content-Type", "application/x-www-form-urlencoded")])
    req = json.loads(r.body)["request"]
    assert req["body"] == {"k": ["v", "w"], "e": "="}
    assert req["raw_body"] == "k=v&k=w&e=%3D"
    # chunked bodies are echoed as well
    r = request(gw.port, "PUT", "/echo", body=b"3\r\nabc\r\n0\r\n\r\n",
                headers=[("Transfer-Encoding", "chunked")])
    req = json.loads(r.body)["request"]
    assert req["method"] == "PUT" and req["raw_body"] == "abc" and "body" not in req


def test_echo_with_trigger(gw):
    assert request(gw.port, "GET", "/echotrig/x").status == 200   # proxied
    r = request(gw.port, "GET", "/echotrig/x?debug=1")
    assert r.status == 503
    doc = json.loads(r.body)
    assert doc["message"] == "Service unavailable" and doc["request"]["query"] == {"debug": "1"}


# ---- config ----

def test_kong_file_with_nulls_loads(tmp_path):
    rc, err = check_plugin_config(tmp_path, "request-termination", """              status_code: 503
              message: null
              content_type: null
              body: null
              echo: false
              trigger: null""")
    assert rc == 0, err


@pytest.mark.parametrize("config,line,col,text", [
    ("              message: hi\n              body: there", 11, 24,
     "message cannot be used with content_type or body"),
    ("              content_type: text/plain", 11, 29, "content_type requires a body"),
    ("              echo: true\n              body: x", 11, 21,
     "echo cannot be used with content_type and body"),
    ("              status_code: 99", 11, 28, "must be between 200 and 599"),
    ("              status_code: 600", 11, 28, "must be between 200 and 599"),
    ("              status_code: 204\n              message: x", 11, 28,
     "cannot carry a body"),
    ('              trigger: "bad header"', 11, 24, "not a valid header name"),
    ('              message: ""', 11, 24, "must not be empty"),
])
def test_config_errors(tmp_path, config, line, col, text):
    rc, err = check_plugin_config(tmp_path, "request-termination", config)
    assert rc == 1
    lines = config_errors(err)
    assert lines and lines[0].startswith("%d:%d: " % (line, col)), err
    assert "plugins[0](request-termination).config" in lines[0], err
    assert text in lines[0], err
