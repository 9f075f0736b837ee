"""Router: every kind of match and the precedence between them, strip_path, the service URL path
prefix and preserve_host.  Each route has its own echo backend named after the route, so the
response says which route matched.
"""

import pytest

from conftest import check_alive, route, service
from rawhttp import Client, assert_json_error

ROUTES = [
    route("exact", ["=/x"]),
    route("prefix_x", ["/x"]),
    route("api", ["/api"]),
    route("api_v1", ["/api/v1"]),
    route("users_tpl", ["/users/{id}"]),
    route("regex", ["~^/v[0-9]+$"]),
    route("host_exact", ["/h"], hosts=["api.example.com"]),
    route("host_wild", ["/h"], hosts=["*.example.com"]),
    route("host_none", ["/h"]),
    route("m_get", ["/m"], methods=["GET"]),
    route("m_post", ["/m"], methods=["POST"]),
    route("only_get", ["/only-get"], methods=["GET"]),
    route("hdr", ["/c"], headers={"x-version": ["2"]}),
    route("c_plain", ["/c"]),
    route("q1", ["/q"], query={"v": ["1"]}),
    route("q_plain", ["/q"]),
    route("more", ["/mc"], methods=["GET"], headers={"x-a": ["1"]}),
    route("less", ["/mc"], methods=["GET"]),
    route("p_low", ["/p"], priority=0),
    route("p_high", ["/p"], priority=10),
    route("nostrip", ["/ns"], strip_path=False),
    route("preserve", ["/ph"], preserve_host=True),
    route("nopreserve", ["/nph"]),
    route("rx_partial", ["~^/rx/(a|b)"]),
    route("hdr_list", ["=/hl"], headers={"x-admin": ["1"]}),
]


@pytest.fixture(scope="module")
def env(mstack):
    services = []
    backends = {}
    for r in ROUTES:
        be = mstack.backend(r["name"])
        backends[r["name"]] = be
        services.append(service("svc_" + r["name"], be.url, [r]))
    base = mstack.backend("base")
    backends["base"] = base
    services.append(service("svc_base", base.url + "/base", [route("base", ["/b"])]))
    services.append(service("svc_base_nostrip", base.url + "/base",
                            [route("base_nostrip", ["/bn"], strip_path=False)]))
    services.append(service("svc_base_slash", base.url + "/base/",
                            [route("base_slash", ["/bs"])]))
    services.append(service("svc_base_rx", base.url + "/base",
                            [route("base_rx", ["~^/brx/(a|b)"])]))
    gw = mstack.gateway(services)
    return gw, backends


@pytest.fixture
def gw(env):
    yield env[0]
    check_alive(env[0])


def call(gw, target, method="GET", headers=(), host="example.com", body=b""):
    with Client(gw.port) as c:
        return c.request(method, target, list(headers) + [("Connection", "close")], body=body,
                         host=host)


def matched(gw, target, **kw):
    r = call(gw, target, **kw)
    assert r.status == 200, (target, r)
    doc = r.json()
    return doc["backend"], doc["path"]


@pytest.mark.parametrize("target,name,path", [
    ("/x", "exact", "/"),
    ("/x/y", "prefix_x", "/y"),
    ("/api", "api", "/"),
    ("/api/", "api", "/"),
    ("/api/thing", "api", "/thing"),
    ("/api/v1", "api_v1", "/"),
    ("/api/v1/x", "api_v1", "/x"),
    ("/api/v10", "api", "/v10"),
])
def test_path_precedence_and_strip(gw, target, name, path):
    got = matched(gw, target)
    assert got[0] == name
    assert got[1] == path


@pytest.mark.parametrize("target", ["/apix", "/xy", "/ap", "/", "/users", "/v2x", "/vx"])
def test_no_match_404(gw, target):
    assert_json_error(call(gw, target), 404)


@pytest.mark.parametrize("target", ["/users/42", "/users/abc"])
def test_template(gw, target):
    assert matched(gw, target)[0] == "users_tpl"


@pytest.mark.parametrize("target", ["/v1", "/v2", "/v2023"])
def test_regex(gw, target):
    assert matched(gw, target)[0] == "regex"


@pytest.mark.parametrize("host,name", [
    ("api.example.com", "host_exact"),
    ("API.EXAMPLE.COM.", "host_exact"),
    ("api.example.com:80", "host_exact"),
    ("www.example.com", "host_wild"),
    ("WWW.Example.Com", "host_wild"),
    ("example.net", "host_none"),
])
def test_host_precedence(gw, host, name):
    assert matched(gw, "/h", host=host)[0] == name


def test_methods(gw):
    assert matched(gw, "/m")[0] == "m_get"
    assert matched(gw, "/m", method="POST", body=b"x")[0] == "m_post"


def test_method_not_allowed_405(gw):
    assert_json_error(call(gw, "/only-get", method="DELETE"), 405)
    assert_json_error(call(gw, "/m", method="PUT", body=b"x"), 405)


def test_get_on_get_only_route(gw):
    assert matched(gw, "/only-get")[0] == "only_get"


@pytest.mark.parametrize("headers,name", [
    ([("X-Version", "2")], "hdr"),
    ([("x-version", "2")], "hdr"),
    ([("X-Version", "3")], "c_plain"),
    ([], "c_plain"),
])
def test_header_condition(gw, headers, name):
    assert matched(gw, "/c", headers=headers)[0] == name


@pytest.mark.parametrize("target,name", [
    ("/q?v=1", "q1"),
    ("/q?a=b&v=1", "q1"),
    ("/q?v=2", "q_plain"),
    ("/q", "q_plain"),
])
def test_query_condition(gw, target, name):
    assert matched(gw, target)[0] == name


def test_more_conditions_win(gw):
    assert matched(gw, "/mc", headers=[("X-A", "1")])[0] == "more"
    assert matched(gw, "/mc")[0] == "less"


def test_priority_breaks_ties(gw):
    assert matched(gw, "/p")[0] == "p_high"


def test_strip_path_false(gw):
    assert matched(gw, "/ns/a/b") == ("nostrip", "/ns/a/b")


def test_query_string_forwarded(gw):
    r = call(gw, "/api/thing?a=1&b=%20x")
    assert r.json()["path"] == "/thing"
    assert r.json()["query"] == "a=1&b=%20x"


def test_service_path_prefix(gw):
    assert matched(gw, "/b/x") == ("base", "/base/x")
    assert matched(gw, "/b/x/y?z=1") == ("base", "/base/x/y")
    assert matched(gw, "/b")[1] in ("/base", "/base/")
    assert matched(gw, "/bn/x") == ("base", "/base/bn/x")


def test_preserve_host(gw):
    r = call(gw, "/ph/x", host="client.example")
    hosts = [v for n, v in r.json()["headers"] if n.lower() == "host"]
    assert hosts == ["client.example"]


def test_no_preserve_host_uses_target(env):
    gw, backends = env
    r = call(gw, "/nph/x", host="client.example")
    hosts = [v for n, v in r.json()["headers"] if n.lower() == "host"]
    assert hosts == ["127.0.0.1:%d" % backends["nopreserve"].port]


def test_regex_strip_keeps_segments_apart(gw):
    # strip_path removes what the regex matched; the rest is re-joined with one '/'
    assert matched(gw, "/rx/abc/d") == ("rx_partial", "/bc/d")
    assert matched(gw, "/brx/abc/d") == ("base", "/base/bc/d")
    assert matched(gw, "/rx/a") == ("rx_partial", "/")


def test_service_path_trailing_slash_kept(gw):
    # Kong keeps the url path's trailing slash, and never doubles it
    assert matched(gw, "/bs") == ("base", "/base/")
    assert matched(gw, "/bs/x") == ("base", "/base/x")


@pytest.mark.parametrize("headers,status", [
    ([("X-Admin", "1")], 200),
    ([("X-Admin", "0"), ("X-Admin", "1")], 200),
    ([("X-Admin", "0, 1")], 200),
    ([("X-Admin", "0,1")], 200),
    ([("X-Admin", "0")], 404),
    ([("X-Admin", "10")], 404),
])
def test_header_condition_on_list_values(gw, headers, status):
    # repeated field lines and one comma-joined line are the same field (RFC 9110 §5.3)
    assert call(gw, "/hl", headers=headers).status == status
