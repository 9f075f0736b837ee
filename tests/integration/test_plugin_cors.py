"""cors plugin (docs/plugins/cors.md): preflights answered by the gateway, Access-Control-*
headers on proxied answers and on local errors (key-auth 401, request-termination), exact and
regex origins, credentials, max_age, private network access, preflight_continue,
allow_origin_absent, Kong files with nulls, and config errors with FILE:LINE:COLUMN."""

import pytest

from backends import RawHeadServer
from conftest import check_plugin_config, config_errors, dead_port, echoed, route, service
from rawhttp import assert_json_error, request

ALLOWED = "https://a.example.com"
EVIL = "https://evil.example.net"
DEFAULT_METHODS = "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT"
KEY = "cors-test-key-8Kq2"


def cors(**config):
    return {"name": "cors", "config": config}


def routes():
    return [
        route("plain", ["/plain"], plugins=[cors(
            origins=[ALLOWED, "http://b.example.com:8080"], max_age=600,
            exposed_headers=["X-Total", "X-Page"])]),
        route("regex", ["/regex"], plugins=[cors(
            origins=[r"https://.*\.good\.org", r"(foo|bar)\.test"])]),
        route("star", ["/star"], plugins=[{"name": "cors"}]),
        route("cred", ["/cred"], plugins=[cors(origins=["*"], credentials=True)]),
        route("credlist", ["/credlist"], plugins=[cors(
            origins=[ALLOWED], credentials=True, headers=["X-Custom", "Authorization"],
            methods=["GET", "POST"], private_network=True)]),
        route("continue", ["/continue"], plugins=[cors(origins=[ALLOWED],
                                                       preflight_continue=True)]),
        route("auth", ["/auth"], plugins=[cors(origins=[ALLOWED]), {"name": "key-auth"}]),
        route("term", ["/term"], plugins=[cors(origins=[ALLOWED]),
                                          {"name": "request-termination"}]),
        route("noabsent", ["/noabsent"], plugins=[cors(allow_origin_absent=False)]),
    ]


def cors_upstream_answer(head):
    """An upstream that sets its own CORS and Vary headers: /vary-origin answers
    `Vary: origin`, anything else `Vary: Accept-Encoding`; both send
    `Access-Control-Allow-Origin: *`."""
    vary = b"origin" if b" /up/vary-origin " in head else b"Accept-Encoding"
    return (b"HTTP/1.1 200 OK\r\nVary: %s\r\n"
            b"Access-Control-Allow-Origin: *\r\nContent-Length: 2\r\n"
            b"Connection: close\r\n\r\nok" % vary)


@pytest.fixture(scope="module")
def gw(mstack):
    be = mstack.backend("echo")
    up = RawHeadServer(cors_upstream_answer)
    consumers = [{"username": "u", "keyauth_credentials": [{"key": KEY}]}]
    g = mstack.gateway([service("s", be.url, routes()),
                        service("up", up.url, [route("up", ["/up"], strip_path=False,
                                                     plugins=[cors(origins=[ALLOWED])])]),
                        service("down", "http://127.0.0.1:%d" % dead_port(),
                                [route("down", ["/down"], plugins=[cors(origins=[ALLOWED])])],
                                retries=0)],
                       extra={"consumers": consumers})
    g.be = be
    yield g
    up.close()


def preflight(gw, path, origin, method="PUT", headers=()):
    hdrs = [("Origin", origin), ("Access-Control-Request-Method", method)] + list(headers)
    return request(gw.port, "OPTIONS", path, headers=hdrs)


def acl_headers(resp):
    """Every Access-Control-* header of a response, lower-cased names."""
    return {n.lower(): v for n, v in resp.headers if n.lower().startswith("access-control-")}


def count_backend(gw):
    return len(gw.be.completed())


# ---- preflights ----

def test_preflight_allowed_is_answered_by_the_gateway(gw):
    before = count_backend(gw)
    r = preflight(gw, "/plain/x", ALLOWED, headers=[("Access-Control-Request-Headers",
                                                     "X-Foo, X-Bar")])
    assert r.status == 200 and r.body == b"", r
    assert r.header("content-length") == "0"
    assert acl_headers(r) == {
        "access-control-allow-origin": ALLOWED,
        "access-control-allow-methods": DEFAULT_METHODS,
        "access-control-allow-headers": "X-Foo, X-Bar",   # reflected: no `headers` configured
        "access-control-max-age": "600",
    }
    assert r.header_all("vary") == ["Origin"]
    assert count_backend(gw) == before  # never proxied


def test_preflight_normalises_default_ports(gw):
    r = preflight(gw, "/plain", "https://a.example.com:443")
    assert r.header("access-control-allow-origin") == ALLOWED
    r = preflight(gw, "/plain", "http://b.example.com:8080")
    assert r.header("access-control-allow-origin") == "http://b.example.com:8080"
    r = preflight(gw, "/plain", "http://b.example.com")  # port 80 is another origin
    assert acl_headers(r) == {}


def test_preflight_denied_gets_no_cors_headers(gw):
    before = count_backend(gw)
    r = preflight(gw, "/plain", EVIL)
    assert r.status == 200 and r.body == b"", r
    assert acl_headers(r) == {}
    assert r.header_all("vary") == ["Origin"]
    assert count_backend(gw) == before


def test_options_without_request_method_is_proxied(gw):
    r = request(gw.port, "OPTIONS", "/plain/x", headers=[("Origin", ALLOWED)])
    doc = echoed(r)
    assert doc["method"] == "OPTIONS"
    assert r.header("access-control-allow-origin") == ALLOWED
    assert "access-control-allow-methods" not in acl_headers(r)


def test_preflight_credentials_configured_headers_and_private_network(gw):
    r = preflight(gw, "/credlist", ALLOWED, "POST",
                  [("Access-Control-Request-Headers", "X-Other"),
                   ("Access-Control-Request-Private-Network", "true")])
    assert r.status == 200
    assert acl_headers(r) == {
        "access-control-allow-origin": ALLOWED,
        "access-control-allow-credentials": "true",
        "access-control-allow-headers": "X-Custom,Authorization",
        "access-control-allow-methods": "GET,POST",
        "access-control-allow-private-network": "true",
    }
    # the private-network answer is only given to the question
    r = preflight(gw, "/credlist", ALLOWED, "POST")
    assert "access-control-allow-private-network" not in acl_headers(r)
    assert "access-control-max-age" not in acl_headers(r)


def test_preflight_continue_goes_upstream(gw):
    r = preflight(gw, "/continue/x", ALLOWED)
    doc = echoed(r)
    assert doc["method"] == "OPTIONS"
    assert ["Access-Control-Request-Method", "PUT"] in doc["headers"]
    assert acl_headers(r) == {}  # the upstream answers the preflight


# ---- actual requests ----

def test_actual_request_allowed(gw):
    r = request(gw.port, "GET", "/plain/x", headers=[("Origin", ALLOWED)])
    doc = echoed(r)
    assert ["Origin", ALLOWED] in doc["headers"]
    assert acl_headers(r) == {"access-control-allow-origin": ALLOWED,
                              "access-control-expose-headers": "X-Total,X-Page"}
    assert r.header_all("vary") == ["Origin"]


def test_actual_request_denied_is_still_proxied(gw):
    before = count_backend(gw)
    r = request(gw.port, "POST", "/plain/x", headers=[("Origin", EVIL)], body=b"data")
    doc = echoed(r)
    assert doc["body"] == "data"
    assert acl_headers(r) == {}
    assert r.header_all("vary") == ["Origin"]
    assert count_backend(gw) == before + 1


@pytest.mark.parametrize("origin,allowed", [
    ("https://x.good.org", True),
    ("https://deep.sub.good.org", True),
    ("https://x.good.org:8443", False),         # ':' in the entry: the whole origin, port too
    ("https://good.org", False),
    ("https://x.good.org.evil.com", False),     # anchored at the end
    ("http://x.good.org", False),
    ("http://foo.test:3000", True),             # no ':' in the entry: the host matches
    ("https://bar.test", True),
    ("http://foo.test.evil", False),
    ("http://xfoo.test", False),                # anchored at the start
])
def test_regex_origins(gw, origin, allowed):
    r = request(gw.port, "GET", "/regex", headers=[("Origin", origin)])
    assert r.status == 200
    assert r.header("access-control-allow-origin") == (origin if allowed else None), r
    r = preflight(gw, "/regex", origin)
    assert r.header("access-control-allow-origin") == (origin if allowed else None), r


def test_any_origin_by_default(gw):
    r = request(gw.port, "GET", "/star", headers=[("Origin", EVIL)])
    assert r.header("access-control-allow-origin") == "*"
    assert r.header("vary") is None
    r = request(gw.port, "GET", "/star")  # allow_origin_absent: also without Origin
    assert r.header("access-control-allow-origin") == "*"
    r = preflight(gw, "/star", EVIL, "DELETE")
    assert acl_headers(r) == {"access-control-allow-origin": "*",
                              "access-control-allow-methods": DEFAULT_METHODS}


def test_credentials_with_any_origin_reflect_the_origin(gw):
    r = request(gw.port, "GET", "/cred", headers=[("Origin", EVIL)])
    assert acl_headers(r) == {"access-control-allow-origin": EVIL,
                              "access-control-allow-credentials": "true"}
    assert r.header_all("vary") == ["Origin"]
    r = preflight(gw, "/cred", EVIL)
    assert r.header("access-control-allow-origin") == EVIL
    assert r.header("access-control-allow-credentials") == "true"
    # no Origin: "*" and no credentials (a wildcard with credentials is invalid)
    r = request(gw.port, "GET", "/cred")
    assert acl_headers(r) == {"access-control-allow-origin": "*"}


def test_allow_origin_absent_false(gw):
    r = request(gw.port, "GET", "/noabsent")
    assert acl_headers(r) == {}
    r = request(gw.port, "GET", "/noabsent", headers=[("Origin", EVIL)])
    assert r.header("access-control-allow-origin") == "*"


def test_upstream_cors_and_vary_headers(gw):
    # allowed: our origin replaces the upstream's "*"; Vary: Origin joins the upstream's Vary
    r = request(gw.port, "GET", "/up/x", headers=[("Origin", ALLOWED)])
    assert r.status == 200 and r.header_all("access-control-allow-origin") == [ALLOWED], r
    assert r.header_all("vary") == ["Accept-Encoding", "Origin"]
    # not allowed: the upstream's own Access-Control-Allow-Origin is removed as well
    r = request(gw.port, "GET", "/up/x", headers=[("Origin", EVIL)])
    assert r.status == 200 and acl_headers(r) == {}, r
    # the upstream already varies on Origin: not repeated
    r = request(gw.port, "GET", "/up/vary-origin", headers=[("Origin", ALLOWED)])
    assert r.header_all("vary") == ["origin"], r


# ---- local answers ----

def test_cors_headers_on_a_key_auth_401(gw):
    r = request(gw.port, "GET", "/auth/x", headers=[("Origin", ALLOWED)])
    doc = assert_json_error(r, 401)
    assert doc["message"] == "No API key found in request"
    assert r.header("access-control-allow-origin") == ALLOWED
    assert r.header_all("vary") == ["Origin"]
    # a disallowed origin: the 401 carries no CORS header
    r = request(gw.port, "GET", "/auth/x", headers=[("Origin", EVIL)])
    assert_json_error(r, 401)
    assert acl_headers(r) == {}
    # the preflight is answered before key-auth runs (higher priority)
    r = preflight(gw, "/auth/x", ALLOWED)
    assert r.status == 200 and r.header("access-control-allow-origin") == ALLOWED
    # with the key, the request goes through with the headers
    r = request(gw.port, "GET", "/auth/x", headers=[("Origin", ALLOWED), ("apikey", KEY)])
    assert echoed(r)["path"] == "/x"
    assert r.header("access-control-allow-origin") == ALLOWED


def test_cors_headers_on_a_gateway_502(gw):
    r = request(gw.port, "GET", "/down", headers=[("Origin", ALLOWED)])
    assert_json_error(r, 502)
    assert r.header("access-control-allow-origin") == ALLOWED
    assert r.header_all("vary") == ["Origin"]


def test_cors_headers_on_request_termination(gw):
    before = count_backend(gw)
    r = request(gw.port, "GET", "/term", headers=[("Origin", ALLOWED)])
    doc = assert_json_error(r, 503)
    assert doc["message"] == "Service unavailable"
    assert r.header("access-control-allow-origin") == ALLOWED
    assert count_backend(gw) == before


# ---- config ----

def test_kong_file_with_nulls_loads(tmp_path):
    rc, err = check_plugin_config(tmp_path, "cors", """              origins: null
              headers: null
              exposed_headers: null
              methods: null
              max_age: null
              credentials: false
              preflight_continue: false
              private_network: false
              allow_origin_absent: true""")
    assert rc == 0, err


@pytest.mark.parametrize("config,line,col,text", [
    ('              origins: ["https://a.com", "https://(unclosed"]', 11, 42,
     "not a valid regex"),
    ("              methods: [GET, FETCH]", 11, 30, 'method "FETCH" must be one of'),
    ('              headers: ["X-Ok", "bad header"]', 11, 33, "not a valid header name"),
    ("              max_age: -1", 11, 24, "must be between"),
    ("              credentials: yes", 11, 28, "expected true or false"),
    ("              origin: [x]", 11, 15, 'unknown key "origin"'),
])
def test_config_errors(tmp_path, config, line, col, text):
    rc, err = check_plugin_config(tmp_path, "cors", config)
    assert rc == 1
    lines = config_errors(err)
    assert lines and lines[0].startswith("%d:%d: " % (line, col)), err
    assert "plugins[0](cors).config" in lines[0] and text in lines[0], err
