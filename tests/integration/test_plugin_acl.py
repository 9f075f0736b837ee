"""acl plugin (docs/plugins/acl.md): Kong's allow / deny by consumer group, 401 without a
consumer, X-Consumer-Groups and hide_groups_header, the anonymous consumer, the RBAC
`permissions` extension (method + route name per group), the security log, Kong files with
nulls, and config errors with FILE:LINE:COLUMN."""


from conftest import (check_alive, check_plugin_config, config_errors, echoed, route, service,
                      to_yaml, upstream_headers)
from rawhttp import assert_json_error, request

KEYS = {"alice": "acl-alice-key-1", "bob": "acl-bob-key-2", "carol": "acl-carol-key-3",
        "dave": "acl-dave-key-4"}
CONSUMERS = [
    {"username": "alice", "groups": ["admin", "users"],
     "keyauth_credentials": [{"key": KEYS["alice"]}]},
    {"username": "bob", "groups": ["users"], "keyauth_credentials": [{"key": KEYS["bob"]}]},
    {"username": "carol", "keyauth_credentials": [{"key": KEYS["carol"]}]},
    # Kong's acls: [{group: ...}] spelling
    {"username": "dave", "acls": [{"group": "banned"}, {"group": "users"}],
     "keyauth_credentials": [{"key": KEYS["dave"]}]},
    {"username": "anon", "groups": ["guest"]},
]
DENIED = "You cannot consume this service"
NULL = "__NULL__"  # written as YAML null (conftest's writer quotes every string)


def start(stack, acl_config, key_auth=None, routes=None):
    be = stack.backend("echo")
    ka = {"name": "key-auth"}
    if key_auth:
        ka["config"] = key_auth
    plugins = [ka, {"name": "acl", "config": acl_config}]
    rts = routes or [route("r", ["/a"])]
    svc = service("s", be.url, rts, plugins=plugins)
    # the same acl without an authentication plugin in front of it
    noauth = service("s2", be.url, [route("noauth", ["/noauth"], plugins=[
        {"name": "acl", "config": acl_config}])])
    gw = stack.gateway([svc, noauth], extra={"consumers": CONSUMERS}, start=False)
    gw.write_text(to_yaml(gw.config_dict()).replace('"%s"' % NULL, "null") + "\n")
    return gw.start()


def get(gw, who=None, target="/a/x", method="GET", headers=None):
    h = list(headers or [])
    if who:
        h.append(("apikey", KEYS[who]))
    return request(gw.port, method, target, headers=h)


def assert_denied(resp):
    assert assert_json_error(resp, 403)["message"] == DENIED


# ---- allow / deny ----------------------------------------------------------------------------

def test_allow_list(stack):
    gw = start(stack, {"allow": ["admin"]})
    doc = echoed(get(gw, "alice"))
    assert upstream_headers(doc, "x-consumer-groups") == ["admin, users"], doc["headers"]
    assert_denied(get(gw, "bob"))
    assert_denied(get(gw, "carol"))   # no groups at all
    assert_denied(get(gw, "dave"))
    check_alive(gw)


def test_allow_any_of_several_groups(stack):
    gw = start(stack, {"allow": ["users", "nobody"]})
    for who in ("alice", "bob", "dave"):
        assert get(gw, who).status == 200, who
    assert_denied(get(gw, "carol"))


def test_deny_list(stack):
    gw = start(stack, {"deny": ["banned"]})
    assert get(gw, "alice").status == 200
    assert get(gw, "bob").status == 200
    assert get(gw, "carol").status == 200   # no groups: not denied (Kong)
    assert_denied(get(gw, "dave"))


def test_no_consumer_is_401(stack):
    gw = start(stack, {"allow": ["admin"]})
    doc = assert_json_error(get(gw, target="/noauth/x"), 401)
    assert doc["message"] == "Unauthorized"
    # key-auth answers first on routes where it runs
    doc = assert_json_error(get(gw), 401)
    assert doc["message"] == "No API key found in request"


def test_groups_header_hidden_and_never_forged(stack):
    forged = [("X-Consumer-Groups", "admin")]
    gw = start(stack, {"allow": ["users"]})
    doc = echoed(get(gw, "bob", headers=forged))
    assert upstream_headers(doc, "x-consumer-groups") == ["users"], doc["headers"]
    gw2 = start(stack, {"allow": ["users"], "hide_groups_header": True})
    doc = echoed(get(gw2, "bob", headers=forged))
    assert upstream_headers(doc, "x-consumer-groups") == [], doc["headers"]
    assert upstream_headers(doc, "x-consumer-username") == ["bob"], doc["headers"]


def test_anonymous_consumer_groups_count(stack):
    gw = start(stack, {"allow": ["guest", "users"]}, key_auth={"anonymous": "anon"})
    doc = echoed(get(gw))
    assert upstream_headers(doc, "x-anonymous-consumer") == ["true"], doc["headers"]
    assert get(gw, "bob").status == 200
    gw2 = start(stack, {"allow": ["users"]}, key_auth={"anonymous": "anon"})
    assert_denied(get(gw2))


def test_kong_file_with_nulls(stack):
    gw = start(stack, {"allow": ["admin"], "deny": NULL, "hide_groups_header": False,
                       "always_use_authenticated_groups": False,
                       "include_consumer_groups": False})
    assert get(gw, "alice").status == 200
    assert_denied(get(gw, "bob"))


# ---- RBAC permissions --------------------------------------------------------------------------

RBAC_ROUTES = [route("orders", ["/orders"]), route("reports", ["/reports"]),
               route("r", ["/a"])]
PERMISSIONS = {
    "admin": [{"methods": ["*"], "routes": ["*"]}],
    "users": [{"methods": ["get", "HEAD"], "routes": ["orders", "reports"]},
              {"methods": ["POST"], "routes": ["orders"]}],
    "banned": [{"routes": ["reports"]}],   # methods omitted: any
}


def test_permissions_by_method_and_route(stack):
    gw = start(stack, {"permissions": PERMISSIONS}, routes=RBAC_ROUTES)
    for method in ("GET", "POST", "DELETE", "PUT"):
        for path in ("/orders/1", "/reports/1", "/a/x"):
            assert get(gw, "alice", path, method).status == 200, (method, path)
    assert get(gw, "bob", "/orders/1").status == 200
    assert get(gw, "bob", "/orders/1", "HEAD").status == 200
    assert get(gw, "bob", "/orders/1", "POST").status == 200
    assert_denied(get(gw, "bob", "/orders/1", "DELETE"))
    assert get(gw, "bob", "/reports/1").status == 200
    assert_denied(get(gw, "bob", "/reports/1", "POST"))
    assert_denied(get(gw, "bob", "/a/x"))              # no entry names route "r"
    assert_denied(get(gw, "carol", "/orders/1"))       # no groups, no permissions
    assert get(gw, "dave", "/reports/1", "DELETE").status == 200   # banned: any method
    assert_denied(get(gw, "dave", "/a/x", "DELETE"))


def test_permissions_after_deny(stack):
    gw = start(stack, {"deny": ["banned"], "permissions": PERMISSIONS}, routes=RBAC_ROUTES)
    assert get(gw, "bob", "/reports/1").status == 200
    assert_denied(get(gw, "dave", "/reports/1"))       # deny is checked first
    gw2 = start(stack, {"allow": ["users"], "permissions": PERMISSIONS}, routes=RBAC_ROUTES)
    assert get(gw2, "bob", "/orders/1").status == 200
    assert_denied(get(gw2, "bob", "/orders/1", "DELETE"))  # in allow, but no permission


def test_security_log(stack):
    gw = start(stack, {"allow": ["users"], "permissions": PERMISSIONS}, routes=RBAC_ROUTES)
    rid1 = get(gw, "carol", "/orders/1").header("x-request-id")
    rid2 = get(gw, "bob", "/orders/1", "DELETE").header("x-request-id")
    rid3 = get(gw, target="/noauth/x").header("x-request-id")
    get(gw, "bob", "/orders/1")
    lines = gw.security_lines(3)
    assert len(lines) == 3, lines
    by_rid = {l.get("request_id"): l for l in lines}
    assert by_rid[rid1]["reason"] == "acl: consumer not in an allowed group"
    assert by_rid[rid1]["status"] == 403 and by_rid[rid1]["consumer"] == "carol"
    assert by_rid[rid2]["reason"] == "acl: no permission for this method and route"
    assert by_rid[rid3]["reason"] == "acl: no consumer"
    assert by_rid[rid3]["status"] == 401


# ---- config errors -------------------------------------------------------------------------

def check(tmp_path, body):
    rc, err = check_plugin_config(tmp_path, "acl", body)
    return rc, config_errors(err)


def test_config_errors(tmp_path):
    rc, lines = check(tmp_path, "              allow: [a]\n              deny: [b]")
    assert rc == 1 and lines[0].startswith("12:21: ") and "only one of" in lines[0], lines
    rc, lines = check(tmp_path, "              hide_groups_header: true")
    assert rc == 1 and lines[0].startswith("11:15: ") and "is required" in lines[0], lines
    rc, lines = check(tmp_path, "              permissions:\n"
                                "                users: [{methods: [GET], routes: [r]}]\n"
                                "                admin: [{methods: [\"G T\"]}]")
    assert rc == 1 and lines[0].startswith("13:36: ") and "not an HTTP method" in lines[0], lines
    rc, lines = check(tmp_path, "              permissions:\n"
                                "                users: [{methods: [GET], routes: [r, nope]}]")
    assert rc == 1 and lines[0].startswith("12:25: ") and "\"nope\"" in lines[0], lines
    rc, lines = check(tmp_path, "              permissions:\n"
                                "                users: [{methods: []}]")
    assert rc == 1 and lines[0].startswith("12:35: ") and "must not be empty" in lines[0], lines
    rc, lines = check(tmp_path, "              permissions: {users: [{}]}")
    assert rc == 1 and lines[0].startswith("11:37: ") and "needs" in lines[0], lines
    rc, lines = check(tmp_path, "              allow: [a]\n              permissions:\n"
                                "                users: [{methods: [get], routes: [r]}]")
    assert rc == 0, lines
