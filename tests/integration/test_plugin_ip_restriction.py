"""ip-restriction plugin (docs/plugins/ip-restriction.md): allow / deny lists of IPv4 and IPv6
addresses and networks, deny before allow, Kong's status and message, the security log, and
CASES.md B44: the address is the TCP peer unless the peer is a trusted proxy, so a spoofed
X-Forwarded-For or X-Real-IP never opens an allow-list."""

import re
import socket

from conftest import (check_alive, check_plugin_config, config_errors, echoed, route, service,
                      to_yaml, upstream_headers)
from rawhttp import Client, assert_json_error, request

KONG_MESSAGE = "Your IP address is not allowed"


NULL = "__NULL__"  # written as YAML null (conftest's writer quotes every string)


def start(stack, config, trusted_proxies=None, listen_v6=False, paths=("/admin",)):
    be = stack.backend("echo")
    svc = service("s", be.url, [route("admin", list(paths), plugins=[
        {"name": "ip-restriction", "config": config}]), route("open", ["/open"])])
    gw = stack.gateway([svc], trusted_proxies=trusted_proxies, start=False)
    extra = {"listen": ["127.0.0.1:%d" % gw.port, "[::1]:%d" % gw.port]} if listen_v6 else None
    gw.write_text(to_yaml(gw.config_dict(extra=extra)).replace('"%s"' % NULL, "null") + "\n")
    return gw.start()


def get(gw, target="/admin/x", headers=None, source="127.0.0.1"):
    return request(gw.port, "GET", target, headers=headers, source=source)


def get6(gw, target="/admin/x", headers=None):
    """One request over IPv6 from ::1 (rawhttp.Client only speaks IPv4)."""
    c = Client.__new__(Client)
    c.sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    c.sock.settimeout(10)
    c.sock.connect(("::1", gw.port))
    c.buf = bytearray()
    c.timeout = 10
    try:
        return c.request("GET", target, list(headers or []) + [("Connection", "close")])
    finally:
        c.close()


def assert_refused(resp, status=403, message=KONG_MESSAGE):
    doc = assert_json_error(resp, status)
    assert doc["message"] == message, doc


# ---- allow and deny --------------------------------------------------------------------------

def test_allow_list_ipv4(stack):
    gw = start(stack, {"allow": ["127.0.0.2", "127.0.1.0/24"]})
    assert_refused(get(gw, source="127.0.0.1"))
    assert get(gw, source="127.0.0.2").status == 200
    assert get(gw, source="127.0.1.77").status == 200
    assert_refused(get(gw, source="127.0.2.1"))
    # a route without the plugin is open to everyone
    assert get(gw, "/open/x", source="127.0.0.1").status == 200
    check_alive(gw)


def test_deny_wins_over_allow(stack):
    gw = start(stack, {"allow": ["127.0.0.0/8"], "deny": ["127.0.0.3", "127.0.9.0/24"]})
    assert get(gw, source="127.0.0.2").status == 200
    assert_refused(get(gw, source="127.0.0.3"))
    assert_refused(get(gw, source="127.0.9.9"))


def test_deny_only_lets_others_through(stack):
    gw = start(stack, {"deny": ["127.0.0.3"]})
    assert get(gw, source="127.0.0.1").status == 200
    assert_refused(get(gw, source="127.0.0.3"))


def test_custom_status_and_message(stack):
    gw = start(stack, {"deny": ["127.0.0.0/8"], "status": 451, "message": "Not from here"})
    assert_refused(get(gw), 451, "Not from here")


def test_kong_file_with_nulls_and_host_bits(stack):
    # deck dumps unset fields as null; Kong accepts host bits in a network ("10.1.2.3/8")
    gw = start(stack, {"allow": ["127.0.0.9/8"], "deny": NULL, "status": NULL, "message": NULL})
    assert get(gw, source="127.0.0.1").status == 200
    gw2 = start(stack, {"allow": NULL, "deny": ["127.0.0.1"], "status": NULL, "message": NULL})
    assert_refused(get(gw2))


def test_ipv6_peers(stack):
    gw = start(stack, {"allow": ["::1"]}, listen_v6=True)
    assert get6(gw).status == 200
    assert_refused(get(gw))                                   # 127.0.0.1 is not ::1
    gw2 = start(stack, {"allow": ["127.0.0.1", "2001:db8::/32"], "deny": ["::1/128"]},
                listen_v6=True)
    assert_refused(get6(gw2))
    assert get(gw2).status == 200


def test_ipv4_mapped_entry_matches_ipv4_peer(stack):
    # ::ffff:127.0.0.0/104 is 127.0.0.0/8 written as IPv6
    gw = start(stack, {"allow": ["::ffff:127.0.0.0/104"]})
    assert get(gw, source="127.0.0.5").status == 200
    gw2 = start(stack, {"deny": ["::ffff:127.0.0.5"]})
    assert_refused(get(gw2, source="127.0.0.5"))
    assert get(gw2, source="127.0.0.6").status == 200


def test_security_log(stack):
    gw = start(stack, {"allow": ["127.0.0.2"], "deny": ["127.0.0.3"]})
    rid1 = get(gw, source="127.0.0.1").header("x-request-id")
    rid2 = get(gw, source="127.0.0.3").header("x-request-id")
    get(gw, source="127.0.0.2")
    lines = gw.security_lines(2)
    assert len(lines) == 2, lines
    by_rid = {l.get("request_id"): l for l in lines}
    assert by_rid[rid1]["reason"] == "ip-restriction: address not allowed"
    assert by_rid[rid1]["status"] == 403
    assert by_rid[rid1]["client"] == "127.0.0.1"
    assert by_rid[rid2]["reason"] == "ip-restriction: address denied"


# ---- B44: spoofed X-Forwarded-For / X-Real-IP ------------------------------------------------

SPOOF = [("X-Forwarded-For", "10.0.0.5"), ("X-Real-IP", "10.0.0.5")]


def test_b44_spoofed_headers_without_trusted_proxies(stack):
    gw = start(stack, {"allow": ["10.0.0.0/8"]})
    assert_refused(get(gw, headers=SPOOF))
    assert_refused(get(gw, headers=SPOOF[:1]))
    assert_refused(get(gw, headers=SPOOF[1:]))
    assert_refused(get(gw, headers=[("X-Forwarded-For", "10.0.0.5, 10.0.0.6")]))
    assert_refused(get(gw, headers=[("Forwarded", "for=10.0.0.5")]))
    lines = gw.security_lines(5)
    assert [l["client"] for l in lines] == ["127.0.0.1"] * 5, lines


def test_b44_trusted_proxy_chain(stack):
    gw = start(stack, {"allow": ["10.0.0.0/8"]}, trusted_proxies=["127.0.0.1"])
    # the walk goes right to left: 203.0.113.9 is the first untrusted hop, the client
    assert_refused(get(gw, headers=[("X-Forwarded-For", "10.0.0.5, 203.0.113.9")]))
    # ... also when the chain is split over two fields
    assert_refused(get(gw, headers=[("X-Forwarded-For", "10.0.0.5"),
                                    ("X-Forwarded-For", "203.0.113.9")]))
    # X-Real-IP is never believed, even from a trusted proxy
    assert_refused(get(gw, headers=[("X-Real-IP", "10.0.0.5")]))
    # the trusted proxy vouches for the address it received the request from
    doc = echoed(get(gw, headers=[("X-Forwarded-For", "10.0.0.5"),
                                    ("X-Real-IP", "203.0.113.9")]))
    assert upstream_headers(doc, "x-real-ip") == ["10.0.0.5"], doc["headers"]
    assert upstream_headers(doc, "x-forwarded-for") == ["10.0.0.5, 127.0.0.1"], doc["headers"]
    # an untrusted peer cannot use the same header
    assert_refused(get(gw, headers=[("X-Forwarded-For", "10.0.0.5")], source="127.0.0.2"))


def test_b44_trusted_hops_are_skipped(stack):
    gw = start(stack, {"allow": ["10.0.0.0/8"]}, trusted_proxies=["127.0.0.1", "10.9.0.0/16"])
    # 10.9.0.7 is a trusted hop: the client is 203.0.113.9
    assert_refused(get(gw, headers=[("X-Forwarded-For", "203.0.113.9, 10.9.0.7")]))
    assert get(gw, headers=[("X-Forwarded-For", "10.0.0.5, 10.9.0.7")]).status == 200
    # an IPv6 client behind the trusted proxy
    gw2 = start(stack, {"allow": ["2001:db8::/32"]}, trusted_proxies=["127.0.0.1"])
    assert get(gw2, headers=[("X-Forwarded-For", "2001:db8::5")]).status == 200
    assert_refused(get(gw2, headers=[("X-Forwarded-For", "2001:db9::5")]))


# ---- config errors -------------------------------------------------------------------------

def test_bad_networks_are_config_errors(tmp_path):
    rc, err = check_plugin_config(tmp_path, "ip-restriction",
                                  '              allow: [10.0.0.0/8, "10.0.0.0/33", bogus]\n'
                                  '              deny: ["::1/129"]')
    assert rc == 1, err
    lines = config_errors(err)
    assert any(l.startswith("11:35: ") and "10.0.0.0/33" in l and "prefix length" in l
               for l in lines), err
    assert any(l.startswith("11:50: ") and "bogus" in l for l in lines), err
    assert any(l.startswith("12:22: ") and "::1/129" in l for l in lines), err


def test_allow_or_deny_is_required(tmp_path):
    rc, err = check_plugin_config(tmp_path, "ip-restriction", "              status: 403")
    assert rc == 1, err
    assert any(re.match(r"11:15: .*one of \"allow\" or \"deny\"", l)
               for l in config_errors(err)), err
