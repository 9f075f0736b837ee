"""request-transformer and response-transformer (docs/plugins/request-transformer.md,
response-transformer.md): every operation (remove, rename, replace, add, append) on request
headers, query strings, JSON and form bodies (as the backend received them), replace.uri; on
response headers and JSON bodies (json_types), local answers, bodies that must pass untouched;
config errors with FILE:LINE:COLUMN."""

import json

import pytest

from backends import RawHeadServer
from conftest import (check_plugin_config, config_errors, echoed, route, service,
                      upstream_headers)
from rawhttp import assert_json_error, request


def rt(**config):
    return {"name": "request-transformer", "config": config}


def rsp(**config):
    return {"name": "response-transformer", "config": config}


def raw_backend(responses):
    """Answers every request with the bytes of the response registered for its path."""
    return RawHeadServer(lambda head: responses.get(head.split(b" ", 2)[1].decode(),
                                                    responses["*"]))


def raw_json(body, ctype="application/json", chunked=False):
    if chunked:
        mid = len(body) // 2
        framed = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:mid], body[mid:]))
        return (b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n"
                b"Connection: close\r\n\r\n%s0\r\n\r\n" % (ctype.encode(), framed))
    return (b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (ctype.encode(), len(body), body))


UPSTREAM_DOC = b'{"id":7,"price":1.10,"tags":["a"],"name":"x","nested":{"k":[1,{"z":null}]}}'


@pytest.fixture(scope="module")
def gw(mstack):
    be = mstack.backend("echo")
    raw = raw_backend({
        "/doc": raw_json(UPSTREAM_DOC),
        "/chunked": raw_json(UPSTREAM_DOC, chunked=True),
        "/problem": raw_json(UPSTREAM_DOC, "application/problem+json; charset=utf-8"),
        "/invalid": raw_json(b'{"id": 7, oops'),
        "/array": raw_json(b'[{"id":7}]'),
        "/text": raw_json(UPSTREAM_DOC, "text/plain"),
        "*": raw_json(b"{}"),
    })
    json_ops = rsp(remove={"json": ["id"]}, rename={"json": ["name:title"]},
                   replace={"json": ["price:2.5"], "json_types": ["number"]},
                   add={"json": ["added:yes", "flag:true", "n:-3e2", "tags:never"],
                        "json_types": ["string", "boolean", "number", "string"]},
                   append={"json": ["tags:b"]})
    services = [
        service("s", be.url, [
            route("hdr", ["/hdr"], plugins=[rt(
                remove={"headers": ["x-remove"]},
                rename={"headers": ["x-old:x-new", "x-absent:x-never"]},
                replace={"headers": ["x-rep:replaced", "x-missing:nope"]},
                add={"headers": ["x-add:added", "x-present:nope"]},
                append={"headers": ["x-app:two", "x-fresh:one"]})]),
            route("qs", ["/qs"], plugins=[rt(
                remove={"querystring": ["r"]},
                rename={"querystring": ["old:new"]},
                replace={"querystring": ["rep:R V", "missing:x"]},
                add={"querystring": ["add:a&b", "keep:no"]},
                append={"querystring": ["app:2"]})]),
            route("uri", ["/uri"], plugins=[rt(replace={"uri": "/replaced/path"})]),
            route("method", ["/method"], plugins=[rt(http_method="post")]),
            route("body", ["/body"], plugins=[rt(
                remove={"body": ["secret"]},
                rename={"body": ["old:new"]},
                replace={"body": ["rep:R", "missing:x"]},
                add={"body": ["add:A", "keep:no"]},
                append={"body": ["list:x", "s:y"]})]),
            route("resp-hdr", ["/resp-hdr"], plugins=[rsp(
                remove={"headers": ["X-Backend"]},
                add={"headers": ["X-Added:yes", "Content-Type:never"]},
                append={"headers": ["X-Added:again", "Cache-Control:no-store"]})]),
            route("resp-hdr2", ["/resp-hdr2"], plugins=[rsp(
                rename={"headers": ["X-Backend:X-Server"]},
                replace={"headers": ["X-Server:replaced", "X-Missing:nope"]},
                add={"headers": ["X-Backend:late"]})]),
            route("resp-echo", ["/resp-echo"], plugins=[rsp(
                remove={"json": ["conn_id", "body_sha256", "headers"]},
                replace={"headers": ["Content-Type:application/vnd.echo+json"]},
                add={"json": ["added:1"], "json_types": ["number"]})]),
            route("resp-local", ["/resp-local"], plugins=[
                rsp(add={"headers": ["X-Added:yes"], "json": ["added:1"]}),
                {"name": "request-termination", "config": {"status_code": 403,
                                                           "message": "closed"}}]),
        ]),
        service("raw", raw.url, [route("raw", ["/raw"], plugins=[json_ops])]),
        service("based", be.url + "/base", [route("uri-based", ["/based"], plugins=[rt(
            replace={"uri": "/over", "headers": ["Host:internal.example"]})])]),
    ]
    g = mstack.gateway(services)
    g.be = be
    g.raw = raw
    yield g
    raw.close()


# ---- request-transformer: headers, query, uri ----

def test_request_headers(gw):
    doc = echoed(request(gw.port, "GET", "/hdr/x", headers=[
        ("X-Remove", "gone"), ("X-Old", "o1"), ("X-Old", "o2"), ("X-New", "overwritten"),
        ("X-Rep", "orig"), ("X-Present", "yes"), ("X-App", "one")]))
    assert upstream_headers(doc, "x-remove") == []
    assert upstream_headers(doc, "x-old") == []
    assert upstream_headers(doc, "x-new") == ["o1", "o2"]     # rename takes every value
    assert upstream_headers(doc, "x-never") == []             # rename of an absent header: nothing
    assert upstream_headers(doc, "x-rep") == ["replaced"]
    assert upstream_headers(doc, "x-missing") == []           # replace only if present
    assert upstream_headers(doc, "x-add") == ["added"]
    assert upstream_headers(doc, "x-present") == ["yes"]      # add only if absent
    assert upstream_headers(doc, "x-app") == ["one", "two"]   # append adds a value
    assert upstream_headers(doc, "x-fresh") == ["one"]


def test_request_headers_absent(gw):
    doc = echoed(request(gw.port, "GET", "/hdr/x"))
    assert upstream_headers(doc, "x-rep") == [] and upstream_headers(doc, "x-new") == []
    assert upstream_headers(doc, "x-present") == ["nope"]
    assert upstream_headers(doc, "x-app") == ["two"]


def test_request_querystring(gw):
    doc = echoed(request(gw.port, "GET", "/qs/x?r=1&old=o&rep=x&keep=yes&app=1&z=%7E&rep=y"))
    assert doc["query"] == "new=o&rep=R%20V&keep=yes&app=1&z=%7E&add=a%26b&app=2"
    assert doc["path"] == "/x"
    # nothing to change: the query goes as it came
    doc = echoed(request(gw.port, "GET", "/qs/x?add=1&keep=2&app=3"))
    assert doc["query"] == "add=1&keep=2&app=3&app=2"
    doc = echoed(request(gw.port, "GET", "/qs/x"))
    assert doc["query"] == "add=a%26b&keep=no&app=2"


def test_replace_uri(gw):
    doc = echoed(request(gw.port, "GET", "/uri/anything?q=1"))
    assert doc["path"] == "/replaced/path" and doc["query"] == "q=1"
    # the whole upstream path, as Kong's set_path: the service's /base is not prefixed
    doc = echoed(request(gw.port, "GET", "/based/x"))
    assert doc["path"] == "/over"


def test_http_method(gw):
    doc = echoed(request(gw.port, "GET", "/method/x"))
    assert doc["method"] == "POST"  # Kong upper-cases http_method


def test_http_method_after_authorization(stack):
    # acl (priority 950) judges the client's method; the transformer (801) changes it after
    be = stack.backend("echo")
    svc = service("s", be.url, [route("r", ["/r"], plugins=[
        {"name": "key-auth"},
        {"name": "acl", "config": {"permissions": {"readers": [{"methods": ["GET"]}]}}},
        rt(http_method="DELETE")])])
    gw = stack.gateway([svc], extra={"consumers": [
        {"username": "reader", "groups": ["readers"], "keyauth_credentials": [{"key": "rk"}]}]})
    doc = echoed(request(gw.port, "GET", "/r/x", headers=[("apikey", "rk")]))
    assert doc["method"] == "DELETE"
    r = request(gw.port, "DELETE", "/r/x", headers=[("apikey", "rk")])
    assert assert_json_error(r, 403)["message"] == "You cannot consume this service"


def test_ambiguous_content_type_refused_with_body_operations(gw):
    body = b'{"secret":1,"rep":1}'
    for ctypes in (["text/plain", "application/json"], ["application/json", "text/plain"],
                   ["application/json", "application/json"],
                   ["text/plain, application/json"]):
        r = request(gw.port, "POST", "/body/x", body=body,
                    headers=[("Content-Type", c) for c in ctypes])
        assert assert_json_error(r, 400)["message"] == "ambiguous Content-Type", (ctypes, r)
    # a comma inside a quoted parameter is no list
    doc = echoed(request(gw.port, "POST", "/body/x", body=body,
                         headers=[("Content-Type", 'application/json; x="a,b"')]))
    edited = json.loads(doc["body"])
    assert "secret" not in edited and edited["rep"] == "R", edited
    # without body operations the plugin does not look at Content-Type
    doc = echoed(request(gw.port, "POST", "/hdr/x", body=body,
                         headers=[("Content-Type", "text/plain"),
                                  ("Content-Type", "application/json")]))
    assert doc["body"] == body.decode()
    lines = gw.security_lines(4)
    assert [l["reason"] for l in lines if l["plugin"] == "request-transformer"] == \
        ["request-transformer: ambiguous Content-Type"] * 4, lines
    assert all(l["status"] == 400 for l in lines if l["plugin"] == "request-transformer")


def test_replace_host(gw):
    doc = echoed(request(gw.port, "GET", "/based/x", host="public.example"))
    assert upstream_headers(doc, "host") == ["internal.example"]


# ---- request-transformer: bodies ----

JSON_IN = b'{"secret":1,"old":{"n":[1,2]},"rep":1.10,"keep":true,"list":["a"],"s":"str","n":1.10}'
JSON_OUT = ('{"new":{"n":[1,2]},"rep":"R","keep":true,"list":["a","x"],"s":["str","y"],'
            '"n":1.10,"add":"A"}')


def test_json_body(gw):
    doc = echoed(request(gw.port, "POST", "/body/x", body=JSON_IN,
                         headers=[("Content-Type", "application/json; charset=utf-8")]))
    assert doc["body"] == JSON_OUT
    assert upstream_headers(doc, "content-length") == [str(len(JSON_OUT))]


def test_json_body_chunked(gw):
    framed = b"%x\r\n%s\r\n0\r\n\r\n" % (len(JSON_IN), JSON_IN)
    doc = echoed(request(gw.port, "POST", "/body/x", body=framed,
                         headers=[("Content-Type", "application/json"),
                                  ("Transfer-Encoding", "chunked")]))
    assert doc["body"] == JSON_OUT


def test_form_body(gw):
    body = b"secret=1&old=o&rep=1&keep=yes&list=a&s=str&sp=a+b"
    doc = echoed(request(gw.port, "POST", "/body/x", body=body,
                         headers=[("Content-Type", "application/x-www-form-urlencoded")]))
    want = "new=o&rep=R&keep=yes&list=a&s=str&sp=a+b&add=A&list=x&s=y"
    assert doc["body"] == want
    assert upstream_headers(doc, "content-length") == [str(len(want))]


@pytest.mark.parametrize("ctype,body", [
    ("application/json", b'{"secret": 1, broken'),      # invalid JSON passes untouched
    ("application/json", b'[{"secret":1}]'),             # not an object
    ("text/plain", b'{"secret":1}'),                     # not a type the plugin edits
    ("multipart/form-data; boundary=x", b"--x--\r\n"),
])
def test_bodies_passed_untouched(gw, ctype, body):
    doc = echoed(request(gw.port, "POST", "/body/x", body=body,
                         headers=[("Content-Type", ctype)]))
    assert doc["body"] == body.decode()


# ---- response-transformer ----

def test_response_headers_remove_add_append(gw):
    r = request(gw.port, "GET", "/resp-hdr/status/204")
    assert r.status == 204, r
    assert r.header("x-backend") is None
    assert r.header_all("x-added") == ["yes", "again"]
    assert r.header("cache-control") == "no-store"
    assert r.header("content-type") == "never"          # absent on the 204: added


def test_response_headers_rename_replace_order(gw):
    r = request(gw.port, "GET", "/resp-hdr2/status/204")
    assert r.status == 204, r
    # rename runs before replace, and add after both: X-Backend is absent again by then
    assert r.header_all("x-server") == ["replaced"]
    assert r.header_all("x-backend") == ["late"]
    assert r.header("x-missing") is None


def test_response_json_on_the_echo(gw):
    r = request(gw.port, "GET", "/resp-echo/x?q=1")
    assert r.status == 200
    assert r.header("content-type") == "application/vnd.echo+json"  # still JSON: +json
    doc = json.loads(r.body)
    assert list(doc) == ["method", "target", "path", "query", "version", "body_len", "body",
                         "backend", "added"]
    assert doc["added"] == 1 and doc["query"] == "q=1"
    assert int(r.header("content-length")) == len(r.body)


RAW_OUT = {"price": 2.5, "tags": ["a", "b"], "title": "x",
           "nested": {"k": [1, {"z": None}]}, "added": "yes", "flag": True, "n": -300.0}


@pytest.mark.parametrize("path", ["/raw/doc", "/raw/chunked", "/raw/problem"])
def test_response_json_operations_and_types(gw, path):
    r = request(gw.port, "GET", path)
    assert r.status == 200, r
    doc = json.loads(r.body)
    assert doc == RAW_OUT
    assert list(doc) == list(RAW_OUT)
    # untouched values keep their bytes (no re-serialisation of the nested object)
    assert b'"nested":{"k":[1,{"z":null}]}' in r.body and b'"n":-3e2' in r.body


@pytest.mark.parametrize("path,body", [
    ("/raw/invalid", b'{"id": 7, oops'),
    ("/raw/array", b'[{"id":7}]'),
    ("/raw/text", UPSTREAM_DOC),
])
def test_response_bodies_passed_untouched(gw, path, body):
    r = request(gw.port, "GET", path)
    assert r.status == 200 and r.body == body, r


def test_response_head_request(gw):
    r = request(gw.port, "HEAD", "/raw/doc")
    assert r.status == 200 and r.body == b"", r


def test_local_answer_gets_headers_not_json(gw):
    r = request(gw.port, "GET", "/resp-local")
    doc = assert_json_error(r, 403)
    assert doc["message"] == "closed" and "added" not in doc
    assert r.header("x-added") == "yes"


# ---- config ----

def test_kong_files_load(tmp_path):
    rc, err = check_plugin_config(tmp_path, "request-transformer",
                                  """              http_method: null
              remove: {headers: [], querystring: [], body: []}
              rename: {headers: [], querystring: [], body: []}
              replace: {headers: [], querystring: [], body: [], uri: null}
              add: {headers: ["x-a:1"], querystring: [], body: []}
              append: {headers: [], querystring: [], body: []}""")
    assert rc == 0, err
    rc, err = check_plugin_config(tmp_path, "response-transformer",
                                  """              remove: {headers: [], json: []}
              rename: {headers: [], json: []}
              replace: {headers: [], json: [], json_types: []}
              add: {headers: [], json: ["a:1"], json_types: [number]}
              append: {headers: [], json: [], json_types: []}""")
    assert rc == 0, err


@pytest.mark.parametrize("plugin,config,line,col,text", [
    ("request-transformer", '              add: {headers: ["x-a:$(headers.b)"]}', 11, 31,
     "templates"),
    ("request-transformer", "              http_method: \"P O\"", 11, 28, "must be a method"),
    ("request-transformer", '              rename: {headers: ["x-a:Content-Length"]}', 11, 34,
     "framing header"),
    ("request-transformer", '              add: {body: ["novalue"]}', 11, 28, "has no value"),
    ("request-transformer", '              add: {headers: ["bad name:1"]}', 11, 31,
     "not a valid header name"),
    ("request-transformer", "              replace: {uri: relative/path}", 11, 30,
     "must be a path starting with '/'"),
    ("request-transformer", "              add: {cookies: []}", 11, 21, 'unknown key "cookies"'),
    # replace.uri follows the gateway's rules for client paths: refused or not normalised
    ("request-transformer", '              replace: {uri: "/a%00b"}', 11, 30, "refuses"),
    ("request-transformer", '              replace: {uri: "/a\\\\b"}', 11, 30, "refuses"),
    ("request-transformer", '              replace: {uri: "/a%2fb"}', 11, 30, "refuses"),
    ("request-transformer", '              replace: {uri: "/a%zz"}', 11, 30, "refuses"),
    ("request-transformer", '              replace: {uri: "/a/../.."}', 11, 30,
     'not normalised: write "/"'),
    ("request-transformer", '              replace: {uri: "/a//b/./c"}', 11, 30,
     'not normalised: write "/a/b/c"'),
    ("request-transformer", '              replace: {uri: "/%41%3a"}', 11, 30,
     'not normalised: write "/A%3A"'),
    ("response-transformer", '              add: {json: ["a:1"], json_types: [integer]}', 11, 49,
     "must be one of: boolean, number, string"),
    ("response-transformer", '              add: {json: ["a:abc"], json_types: [number]}', 11, 28,
     "not a JSON number"),
    ("response-transformer", '              append: {headers: ["Transfer-Encoding:gzip"]}', 11,
     34, "framing header"),
    ("response-transformer", "              remove: {json_types: [string]}", 11, 24,
     'unknown key "json_types"'),
])
def test_config_errors(tmp_path, plugin, config, line, col, text):
    rc, err = check_plugin_config(tmp_path, plugin, config)
    assert rc == 1
    lines = config_errors(err)
    assert lines and lines[0].startswith("%d:%d: " % (line, col)), err
    assert "plugins[0](%s).config" % plugin in lines[0] and text in lines[0], err
