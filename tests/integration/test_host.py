"""Host header handling: CASES.md B19, B20, B22.

Routes: hosts [admin.example.com] -> "admin" (preserve_host: true), hosts ["*.example.com"] ->
"wild", no hosts -> "default".  Hosts compare case-insensitively, one trailing dot and the
default port :80 are ignored; a missing, repeated or malformed Host is a 400.
"""

import pytest

from conftest import check_alive, route, service
from rawhttp import assert_json_error, send_raw


@pytest.fixture(scope="module")
def env(mstack):
    adm = mstack.backend("admin")
    wild = mstack.backend("wild")
    default = mstack.backend("default")
    gw = mstack.gateway([
        service("admin", adm.url, [route("admin", ["/"], hosts=["admin.example.com"],
                                         preserve_host=True)]),
        service("wild", wild.url, [route("wild", ["/"], hosts=["*.example.com"])]),
        service("default", default.url, [route("default", ["/"])]),
    ])
    return gw


@pytest.fixture
def gw(env):
    yield env
    check_alive(env)


def get_raw(gw, head_lines, target=b"/x", version=b"HTTP/1.1"):
    data = (b"GET " + target + b" " + version + b"\r\n" + b"".join(l + b"\r\n" for l in head_lines) +
            b"Connection: close\r\n\r\n")
    responses, closed = send_raw(gw.port, data)
    assert responses, "no response"
    return responses[0], closed


@pytest.mark.parametrize("host", ["admin.example.com", "admin.example.com:80",
                                  "ADMIN.Example.COM", "admin.example.com.",
                                  "admin.example.com.:80", "Admin.Example.Com.:80"])
def test_b19_b20_canonical_host_selects_exact_vhost(gw, host):
    r, _ = get_raw(gw, [b"Host: " + host.encode()])
    assert r.status == 200, r
    doc = r.json()
    assert doc["backend"] == "admin", "Host %r did not select admin.example.com" % host
    # preserve_host: the Host forwarded upstream is the client's, unchanged
    hosts = [v for n, v in doc["headers"] if n.lower() == "host"]
    assert hosts == [host]


@pytest.mark.parametrize("host", ["api.example.com", "API.EXAMPLE.COM", "api.example.com.",
                                  "x.example.com:80"])
def test_b20_wildcard_host(gw, host):
    r, _ = get_raw(gw, [b"Host: " + host.encode()])
    assert r.status == 200, r
    assert r.json()["backend"] == "wild"


@pytest.mark.parametrize("host", ["example.com", "example.org", "127.0.0.1", "[::1]:80"])
def test_host_without_vhost_goes_to_hostless_route(gw, host):
    r, _ = get_raw(gw, [b"Host: " + host.encode()])
    assert r.status == 200, r
    assert r.json()["backend"] == "default"


@pytest.mark.parametrize("host", [b"admin.example.com..", b"admin..example.com", b".example.com"])
def test_b20_empty_labels_rejected(gw, host):
    r, closed = get_raw(gw, [b"Host: " + host])
    assert_json_error(r, 400)


def test_b22_missing_host(gw):
    r, closed = get_raw(gw, [], target=b"/public/x")
    assert_json_error(r, 400)
    assert closed


def test_b22_missing_host_http10_is_allowed(gw):
    r, closed = get_raw(gw, [], version=b"HTTP/1.0")
    assert r.status == 200, r
    assert r.json()["backend"] == "default"


def test_b22_duplicate_host(gw):
    r, closed = get_raw(gw, [b"Host: a.example.com", b"Host: b.example.com"])
    assert_json_error(r, 400)
    assert closed


def test_b22_duplicate_identical_host(gw):
    r, closed = get_raw(gw, [b"Host: a.example.com", b"Host: a.example.com"])
    assert_json_error(r, 400)


@pytest.mark.parametrize("host", [b"example.com/admin", b"user1@example.com", b"exa mple.com",
                                  b"example.com:8o", b"example.com:99999",
                                  b"example.com:80:80", b"exa\"mple.com"],
                         ids=["slash", "userinfo", "space", "bad-port", "port-range",
                              "two-ports", "quote"])
def test_b22_malformed_host(gw, host):
    r, closed = get_raw(gw, [b"Host: " + host])
    assert_json_error(r, 400)
    assert closed


def test_b22_authority_form_on_get(gw):
    r, closed = get_raw(gw, [b"Host: example.com:80"], target=b"example.com:80")
    assert_json_error(r, 400)
    assert closed


def test_x_forwarded_host_is_the_clients_host(gw):
    r, _ = get_raw(gw, [b"Host: API.example.com:80"])
    assert r.status == 200
    xfh = [v for n, v in r.json()["headers"] if n.lower() == "x-forwarded-host"]
    assert xfh == ["API.example.com:80"] or xfh == ["api.example.com"], xfh
