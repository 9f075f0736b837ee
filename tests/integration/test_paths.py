"""Path normalisation before routing: CASES.md B13, B14, B16, B17.

/public -> echo backend "public"; /admin and /internal -> echo backend "admin" (both with
strip_path: false, so the backend reports the full forwarded path); /strip -> "public" with
strip_path: true.  The path that is matched must be the path that is forwarded, after removing
dot segments, decoding %2e and merging slashes; an encoded slash and a '#' are refused with 400.
"""

import pytest

from conftest import check_alive, route, service
from rawhttp import Client, assert_json_error, send_raw


@pytest.fixture(scope="module")
def env(mstack):
    pub = mstack.backend("public")
    adm = mstack.backend("admin")
    gw = mstack.gateway([
        service("public", pub.url, [route("public", ["/public"], strip_path=False),
                                    route("strip", ["/strip"], strip_path=True)]),
        service("admin", adm.url, [route("admin", ["/admin", "/internal"], strip_path=False)]),
    ])
    return gw, pub, adm


@pytest.fixture
def gw(env):
    yield env[0]
    check_alive(env[0])


def get(gw, target):
    with Client(gw.port) as c:
        c.send(b"GET " + target.encode() + b" HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
        return c.read_response()


@pytest.mark.parametrize("target,backend,path", [
    ("/public/../admin/users", "admin", "/admin/users"),
    ("/public/./../admin/users", "admin", "/admin/users"),
    ("/public/x/../../admin/users", "admin", "/admin/users"),
    ("/admin/./users", "admin", "/admin/users"),
    ("/public/a/./b/../c", "public", "/public/a/c"),
    ("/public/x/..", "public", "/public"),
])
def test_b13_dot_segments(gw, target, backend, path):
    r = get(gw, target)
    assert r.status == 200, r
    doc = r.json()
    assert doc["backend"] == backend, "matched on the raw path, not the normalised one"
    assert doc["path"] in (path, path + "/") if target.endswith("..") else doc["path"] == path


def test_b13_climbing_above_root_is_consistent(gw):
    r = get(gw, "/../public/y")
    if r.status == 400:
        assert_json_error(r, 400)
    else:
        assert r.status == 200, r
        assert r.json()["backend"] == "public"
        assert r.json()["path"] == "/public/y"


@pytest.mark.parametrize("target", [
    "/public/%2e%2e/internal/config",
    "/public/%2E%2E/internal/config",
    "/public/.%2e/internal/config",
    "/public/%2e./internal/config",
    "/public/%2e/../internal/config",
])
def test_b14_encoded_dot_segments(gw, target):
    r = get(gw, target)
    assert r.status == 200, r
    doc = r.json()
    assert doc["backend"] == "admin"
    assert doc["path"] == "/internal/config"


def test_b14_encoded_dots_glued_to_prefix(gw):
    # decodes to /public../internal/config: not a dot segment, matches neither /public nor
    # /internal on a segment boundary
    r = get(gw, "/public%2e%2e/internal/config")
    assert r.status in (400, 404), r
    assert_json_error(r, r.status)


@pytest.mark.parametrize("target", ["/public/..%2finternal/config", "/public/..%2Finternal/config",
                                    "/public/a%2fb"])
def test_b14_encoded_slash_rejected(gw, target):
    r = get(gw, target)
    assert_json_error(r, 400)


def test_b14_strip_prefix_after_normalisation(gw):
    r = get(gw, "/strip/%2e%2e/admin/users")
    assert r.status == 200, r
    assert r.json()["backend"] == "admin"
    assert r.json()["path"] == "/admin/users"
    r = get(gw, "/strip/./a/b")
    assert r.status == 200, r
    assert (r.json()["backend"], r.json()["path"]) == ("public", "/a/b")


@pytest.mark.parametrize("target,path,query", [
    ("//admin", "/admin", ""),
    ("/internal//config", "/internal/config", ""),
    ("///internal/config?x=1", "/internal/config", "x=1"),
    ("/public//a///b", "/public/a/b", ""),
])
def test_b16_repeated_slashes_merged(gw, target, path, query):
    r = get(gw, target)
    assert r.status == 200, r
    doc = r.json()
    assert doc["path"] == path
    assert doc["query"] == query
    assert doc["backend"] == ("public" if path.startswith("/public") else "admin")


@pytest.mark.parametrize("target", ["/admin/users#.css", "/public/a#/../../admin/users",
                                    "/public/x?a=1#frag"])
def test_b17_fragment_rejected(gw, target):
    responses, closed = send_raw(gw.port, b"GET " + target.encode() +
                                 b" HTTP/1.1\r\nHost: example.com\r\n\r\n")
    assert responses, "no response"
    assert_json_error(responses[0], 400)


def test_query_is_not_normalised(gw):
    r = get(gw, "/public/x?a=../b&c=%2e%2e//d")
    assert r.status == 200, r
    assert r.json()["path"] == "/public/x"
    assert r.json()["query"] == "a=../b&c=%2e%2e//d"

