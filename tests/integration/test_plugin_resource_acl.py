"""resource-acl plugin (docs/plugins/resource-acl.md): per-resource rules — the owner of
/users/{id}, an admin group and named consumers may use it, others get 403, requests without a
consumer 401; path templates with a final `*`, trailing slashes, normalised paths, rules by
route name using the route's own captures, owners by JWT claim, public and deny-all rules,
the default for unmatched requests, the security log, and config errors with positions."""

import time

import jwt as pyjwt
import pytest

from conftest import check_alive, check_plugin_config, config_errors, route, service
from rawhttp import assert_json_error, request

KEYS = {"alice": "racl-alice-key", "bob": "racl-bob-key", "root": "racl-root-key",
        "support-bot": "racl-bot-key"}
JWT_SECRET = "racl-carol-jwt-secret-0123456789"
CONSUMERS = [
    {"username": "alice", "custom_id": "c-alice", "groups": ["users"],
     "keyauth_credentials": [{"key": KEYS["alice"]}]},
    {"username": "bob", "custom_id": "c-bob", "groups": ["users"],
     "keyauth_credentials": [{"key": KEYS["bob"]}]},
    {"username": "root", "groups": ["admin"], "keyauth_credentials": [{"key": KEYS["root"]}]},
    {"username": "support-bot", "keyauth_credentials": [{"key": KEYS["support-bot"]}]},
    {"username": "carol", "jwt_secrets": [{"key": "iss-carol", "secret": JWT_SECRET}]},
]

USER_RULES = [
    {"paths": ["/users/{id}", "/users/{id}/*"], "methods": ["GET", "put", "DELETE"],
     "groups": ["admin"], "consumers": ["support-bot"], "owner": {"param": "id"}},
    {"paths": ["/users"], "methods": ["GET"], "groups": ["admin"]},
    {"paths": ["/docs/*"], "public": True},
    {"paths": ["/blocked/*"]},
    {"routes": ["accounts"], "owner": {"param": "acct", "attribute": "consumer.custom_id"}},
]


def gateway(stack, default=None):
    be = stack.backend("echo")
    conf = {"rules": USER_RULES}
    if default:
        conf["default"] = default
    racl = {"name": "resource-acl", "config": conf}
    api = service("api", be.url, [route("api", ["/"]), route("accounts", ["/accounts/{acct}"])],
                  plugins=[{"name": "key-auth"}, racl])
    # the same rules without authentication, for requests with Host: open.test
    open_svc = service("open", be.url, [route("open", ["/"], hosts=["open.test"])],
                       plugins=[racl])
    jwt_svc = service("jwtsvc", be.url, [route("me", ["/me/{sub}"])], plugins=[
        {"name": "jwt"},
        {"name": "resource-acl", "config": {"rules": [
            {"paths": ["/me/{sub}"], "owner": {"param": "sub", "attribute": "jwt.claims.sub"}}]}}])
    return stack.gateway([api, open_svc, jwt_svc], extra={"consumers": CONSUMERS})


@pytest.fixture(scope="module")
def gw(mstack):
    return gateway(mstack)


def status(gw, who, target, method="GET", host="example.com"):
    headers = [("apikey", KEYS[who])] if who else []
    return request(gw.port, method, target, headers=headers, host=host).status


def test_owner_admin_and_named_consumer(gw):
    assert status(gw, "alice", "/users/alice") == 200        # the owner
    assert status(gw, "bob", "/users/alice") == 403          # someone else
    assert status(gw, "root", "/users/alice") == 200         # an admin
    assert status(gw, "support-bot", "/users/alice") == 200  # a listed consumer
    assert status(gw, "alice", "/users/alice", "PUT") == 200
    assert status(gw, "bob", "/users/alice", "DELETE") == 403
    r = request(gw.port, "GET", "/users/alice", headers=[("apikey", KEYS["bob"])])
    assert assert_json_error(r, 403)["message"] == "Forbidden"
    check_alive(gw)


def test_sub_resources_and_trailing_slash(gw):
    assert status(gw, "alice", "/users/alice/") == 200
    assert status(gw, "bob", "/users/alice/") == 403
    assert status(gw, "alice", "/users/alice/orders/7") == 200
    assert status(gw, "bob", "/users/alice/orders/7") == 403
    assert status(gw, "root", "/users/alice/orders/7") == 200


def test_normalised_path_is_what_is_checked(gw):
    # dot segments are removed before the check, exactly as before routing
    assert status(gw, "alice", "/users/bob/../alice") == 200
    assert status(gw, "bob", "/users/bob/../alice") == 403
    assert status(gw, "bob", "/users/./alice") == 403
    assert status(gw, "bob", "/users/%61lice") == 403
    assert status(gw, "bob", "//users//alice") == 403


def test_methods_and_default_deny(gw):
    # POST matches no rule (methods), and the default is deny
    assert status(gw, "alice", "/users/alice", "POST") == 403
    assert status(gw, "root", "/users") == 200
    assert status(gw, "alice", "/users") == 403
    assert status(gw, "root", "/elsewhere") == 403


def test_public_and_deny_all_rules(gw):
    assert status(gw, "alice", "/docs/a/b") == 200
    assert status(gw, "alice", "/docs") == 200               # `*` also matches nothing
    assert status(gw, "root", "/blocked/x") == 403           # a rule without principals
    assert status(gw, None, "/docs/x", host="open.test") == 200  # public: no consumer needed


def test_no_consumer_is_401(gw):
    r = request(gw.port, "GET", "/users/alice", host="open.test")
    assert assert_json_error(r, 401)["message"] == "Unauthorized"
    assert status(gw, None, "/elsewhere", host="open.test") == 403  # no rule: the default


def test_rule_by_route_uses_route_captures(gw):
    assert status(gw, "alice", "/accounts/c-alice") == 200   # owner by custom_id
    assert status(gw, "alice", "/accounts/c-bob") == 403
    assert status(gw, "bob", "/accounts/c-bob") == 200


def test_owner_by_jwt_claim(gw):
    def get(target, sub):
        tok = pyjwt.encode({"iss": "iss-carol", "sub": sub, "exp": int(time.time()) + 300},
                           JWT_SECRET, algorithm="HS256")
        return request(gw.port, "GET", target, headers=[("Authorization", "Bearer " + tok)])
    assert get("/me/carol", "carol").status == 200
    assert get("/me/dave", "carol").status == 403
    assert get("/me/42", 42).status == 200                   # a numeric sub claim
    assert get("/me/42", 420).status == 403


def test_owner_by_big_integer_claim(gw):
    # an integer claim owns its exact decimal form, also above 2^53 (not via a double)
    def get(target, claims):
        claims.update(iss="iss-carol", exp=int(time.time()) + 300)
        tok = pyjwt.encode(claims, JWT_SECRET, algorithm="HS256")
        return request(gw.port, "GET", target, headers=[("Authorization", "Bearer " + tok)])
    big = 1234567890123456789
    assert get("/me/%d" % big, {"sub": big}).status == 200
    assert get("/me/1234567890123456784", {"sub": big}).status == 403  # its double's form
    assert get("/me/9223372036854775807", {"sub": 9223372036854775807}).status == 200
    assert get("/me/-5", {"sub": -5}).status == 200
    # beyond 64 bits: the jwt plugin refuses the token (docs/plugins/jwt.md)
    r = get("/me/x", {"sub": "x", "n": 2 ** 64})
    assert assert_json_error(r, 401)["message"] == "Bad token"


def test_default_allow(stack):
    gw = gateway(stack, default="allow")
    assert status(gw, "alice", "/elsewhere") == 200
    assert status(gw, "bob", "/users/alice") == 403          # rules still decide


def test_security_log(stack):
    gw = gateway(stack)
    rids = [request(gw.port, "GET", t, headers=h, host=host).header("x-request-id")
            for t, h, host in [
                ("/users/alice", [("apikey", KEYS["bob"])], "example.com"),
                ("/blocked/x", [("apikey", KEYS["root"])], "example.com"),
                ("/elsewhere", [("apikey", KEYS["root"])], "example.com"),
                ("/users/alice", [], "open.test")]]
    request(gw.port, "GET", "/users/alice", headers=[("apikey", KEYS["alice"])])
    lines = gw.security_lines(4)
    assert len(lines) == 4, lines
    by_rid = {l.get("request_id"): l for l in lines}
    assert by_rid[rids[0]]["reason"] == "resource-acl: not the owner nor in an allowed group"
    assert by_rid[rids[0]]["consumer"] == "bob" and by_rid[rids[0]]["status"] == 403
    assert by_rid[rids[1]]["reason"] == "resource-acl: refused by rule"
    assert by_rid[rids[2]]["reason"] == "resource-acl: no rule matched"
    assert by_rid[rids[3]]["reason"] == "resource-acl: no consumer"
    assert by_rid[rids[3]]["status"] == 401


# ---- config errors -------------------------------------------------------------------------

RULES = "              rules:\n"

BAD = [
    ('                - paths: ["/users/{id}x"]\n', "12:27", "a parameter is a whole segment"),
    ('                - paths: ["users/{id}"]\n', "12:27", "must start with '/'"),
    ('                - paths: ["/a/*/b"]\n', "12:27", "'*' may only be the last"),
    ('                - paths: ["/a/{x}/{x}"]\n', "12:27", "used twice"),
    ('                - paths: ["~^/a$"]\n', "12:27", "regex paths"),
    ('                - paths: ["/users/{id}"]\n'
     '                  owner: {param: uid}\n', "13:26", "not in path"),
    ('                - paths: ["/users/{id}"]\n'
     '                  owner: {param: id, attribute: request.headers.x-user}\n', "13:49",
     "an owner is one of"),
    ('                - paths: ["/users/{id}"]\n'
     '                  owner: {param: id, attribute: "consumer.nope"}\n', "13:50",
     "unknown attribute"),
    ('                - routes: [nope]\n', "12:19", 'no route is named "nope"'),
    ('                - {paths: ["/d"], public: true, groups: [a]}\n', "12:19", "public rule"),
    ('                - methods: [\"G T\"]\n', "12:29", "not an HTTP method"),
    ('                - paths: []\n', "12:26", "must not be empty"),
]


CONSUMERS_YAML = "consumers:\n  - {username: alice}\n  - {username: bob, id: c-bob}\n"


def test_unknown_consumer_is_a_config_error(tmp_path):
    rc, err = check_plugin_config(tmp_path, "resource-acl",
                                  RULES + "                - consumers: [alice, ghost, c-bob]\n"
                                          "                - consumers: [bob, c-ghost]\n"
                                  + CONSUMERS_YAML)
    assert rc == 1, err
    assert config_errors(err) == [
        '12:38: plugin resource-acl: rules[0]: no consumer has the username or id "ghost"',
        '13:36: plugin resource-acl: rules[1]: no consumer has the username or id "c-ghost"',
    ], err
    # usernames and ids of existing consumers load
    rc, err = check_plugin_config(tmp_path, "resource-acl",
                                  RULES + "                - consumers: [alice, c-bob, bob]\n"
                                  + CONSUMERS_YAML)
    assert rc == 0, err


@pytest.mark.parametrize("body,where,what", BAD)
def test_config_errors(tmp_path, body, where, what):
    rc, err = check_plugin_config(tmp_path, "resource-acl", RULES + body)
    lines = config_errors(err)
    assert rc == 1, lines
    assert lines and lines[0].startswith(where + ": ") and what in lines[0], (where, what, lines)


def test_bad_default(tmp_path):
    rc, err = check_plugin_config(tmp_path, "resource-acl",
                                  RULES + '                - {public: true}\n'
                                          '              default: maybe\n')
    assert rc == 1
    assert any(l.startswith("13:24: ") for l in config_errors(err)) and "deny, allow" in err
