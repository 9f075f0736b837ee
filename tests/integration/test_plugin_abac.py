"""abac plugin (docs/plugins/abac.md): policy expressions over consumer, JWT claims, request,
route, client address and time, through the real gateway — every operator of the language,
null semantics, deny-wins, lists of policies, status/message, the security log — and config
errors reported as FILE:LINE:COLUMN of the offending token inside the YAML scalar."""

import datetime
import json
import time

import jwt as pyjwt
import pytest

from conftest import check_alive, check_plugin_config, config_errors, route, service
from rawhttp import assert_json_error, request

ALICE_ID = "6a3e0c1e-0000-4000-8000-00000000a11c"
KEYS = {"alice": "abac-alice-key", "bob": "abac-bob-key"}
JWT_SECRETS = {"alice": "abac-alice-jwt-secret-0123456789", "bob": "abac-bob-jwt-secret-9876543210"}
CONSUMERS = [
    {"id": ALICE_ID, "username": "alice", "custom_id": "c-alice", "groups": ["admin", "users"],
     "keyauth_credentials": [{"key": KEYS["alice"]}],
     "jwt_secrets": [{"key": "iss-alice", "algorithm": "HS256", "secret": JWT_SECRETS["alice"]}]},
    {"username": "bob", "groups": ["users"], "keyauth_credentials": [{"key": KEYS["bob"]}],
     "jwt_secrets": [{"key": "iss-bob", "algorithm": "HS256", "secret": JWT_SECRETS["bob"]}]},
]


def utc_now_parts(delta=0):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=delta)
    return t.hour, (t.weekday() + 1) % 7  # 0 = Sunday


def time_cases():
    # the hour may turn between writing the config and the request: accept both sides of it
    (h1, w1), (h2, w2) = utc_now_parts(), utc_now_parts(120)
    local = (h1 + 5) % 24  # the gateway runs with TZ=Asia/Kolkata (+05:30): never the UTC hour
    return [
        ("time.hour in [%d, %d] && time.weekday in [%d, %d]" % (h1, h2, w1, w2),
         {}, None),
        ("time.hour >= 0 && time.hour <= 23 && time.minute < 60 && time.minute >= 0 && "
         "time.weekday > -1 && time.weekday < 7", {}, None),
        ("time.hour == %d && time.hour == %d" % (local, (local + 1) % 24), None, {}),
    ]


# (expression or abac config, request that must pass, request that must get 403); a request
# is a dict: who (key-auth consumer, "auth" service) or none ("open" service), method, path
# (after the route prefix), headers, query, source.
CASES = [
    ('consumer.username == "alice"', {"who": "alice"}, {"who": "bob"}),
    ('consumer.username != "alice"', {"who": "bob"}, {"who": "alice"}),
    ('consumer.id == "%s" && consumer.custom_id == "c-alice"' % ALICE_ID,
     {"who": "alice"}, {"who": "bob"}),
    ('"admin" in consumer.groups', {"who": "alice"}, {"who": "bob"}),
    ('!("admin" in consumer.groups)', {"who": "bob"}, {"who": "alice"}),
    ('!"admin" in consumer.groups', {"who": "bob"}, {"who": "alice"}),
    ('consumer.anonymous == false', {"who": "bob"}, None),
    ('request.method in ["GET", "HEAD"]', {"method": "HEAD"}, {"method": "DELETE"}),
    ('request.method == "POST" || request.method == "PUT"', {"method": "PUT"}, {}),
    ('request.path == "/c{i}/x"', {"path": "x"}, {"path": "y"}),
    ('request.headers.x-tenant == "acme"', {"headers": [("X-Tenant", "acme")]},
     {"headers": [("X-Tenant", "acme2")]}),
    ("request.headers['x-tenant'] != 'evil'", {"headers": [("X-Tenant", "good")]},
     {"headers": [("X-Tenant", "evil")]}),
    ('request.query.view == "full"', {"query": "a=1&view=full"}, {"query": "view=part"}),
    ('route.params.p == "mine"', {"path": "mine"}, {"path": "other"}),
    ('route.name == "c{i}" && service.name == "open"', {}, None),
    ('starts_with(request.path, "/c{i}/pub")', {"path": "public"}, {"path": "private"}),
    ('ends_with(request.path, ".json")', {"path": "a.json"}, {"path": "a.xml"}),
    ('contains(request.headers.user-agent, "bot")', {"headers": [("User-Agent", "a-bot/1")]},
     {"headers": [("User-Agent", "curl/8")]}),
    ('request.method == "GET" && (request.headers.x-a == "1" || request.headers.x-b == "1")',
     {"headers": [("X-B", "1")]}, {"method": "POST", "headers": [("X-B", "1")]}),
    ('client.ip in "127.0.0.2/32"', {"source": "127.0.0.2"}, {"source": "127.0.0.1"}),
    ('client.ip in cidr("127.0.0.0/30") && client.ip != "127.0.0.1"',
     {"source": "127.0.0.2"}, {"source": "127.0.0.1"}),
    ('client.ip in ["10.0.0.0/8", "127.0.0.3"]', {"source": "127.0.0.3"}, {"source": "127.0.0.4"}),
    ('client.ip == "127.0.0.1" || client.ip == "::1"', {}, {"source": "127.0.0.5"}),
    ('1 < 2 && 2 <= 2 && 3 > 2 && 3 >= 3 && -1.5 < 0 && true && !false', {}, None),
    # null semantics: no consumer on the "open" service, absent header
    ('consumer.username == null', {}, None),
    ('consumer.username == null', None, {"who": "alice"}),
    ('consumer.username != "alice"', None, {}),
    ('request.headers.x-a != "b"', {"headers": [("X-A", "c")]}, {}),
    ('request.headers.x-a == null || request.headers.x-a == "ok"',
     {"headers": [("X-A", "ok")]}, {"headers": [("X-A", "no")]}),
    ('"admin" in consumer.groups || true', {}, None),
    # configs rather than single expressions
    ({"allow": "true", "deny": 'request.headers.x-block == "1"'}, {},
     {"headers": [("X-Block", "1")]}),
    ({"deny": ['request.method == "DELETE"', 'request.headers.x-block != null']},
     {"method": "PUT"}, {"headers": [("X-Block", "")]}),
    ({"allow": ['request.method == "GET"', 'request.headers.x-ok == "1"']},
     {"method": "POST", "headers": [("X-Ok", "1")]}, {"method": "POST"}),
]


@pytest.fixture(scope="module")
def abac_gw(mstack):
    be = mstack.backend("echo")
    auth_routes, open_routes = [], []
    cases = CASES + time_cases()
    for i, (expr, ok, ko) in enumerate(cases):
        conf = expr if isinstance(expr, dict) else {"allow": expr.replace("{i}", str(i))}
        needs_auth = any(r and r.get("who") for r in (ok, ko))
        (auth_routes if needs_auth else open_routes).append(
            route("c%d" % i, ["/c%d/{p}" % i, "/c%d" % i],
                  plugins=[{"name": "abac", "config": conf}]))
    jwt_plugin = {"name": "jwt", "config": {"claims_to_verify": ["exp"]}}
    jwt_routes = [
        route("owner", ["/jwt/users/{user_id}"], plugins=[jwt_plugin, {"name": "abac", "config": {
            "allow": '"admin" in consumer.groups || jwt.claims.sub == route.params.user_id'}}]),
        route("claims", ["/jwt/claims"], plugins=[jwt_plugin, {"name": "abac", "config": {
            "allow": 'jwt.claims.level >= 5 && jwt.claims.level < 10 && '
                     '"ops" in jwt.claims.realm.access.roles && jwt.claims.mfa && '
                     'jwt.claims["https://example.com/tenant"] == request.headers.x-tenant && '
                     'starts_with(jwt.claims.sub, "al") && jwt.claims.missing == null'}}]),
        route("bigint", ["/jwt/bigint"], plugins=[jwt_plugin, {"name": "abac", "config": {
            "allow": 'jwt.claims.uid == 9007199254740993 || '
                     'jwt.claims.uid in [9223372036854775807, -9223372036854775808]'}}]),
    ]
    services = [service("auth", be.url, auth_routes, plugins=[{"name": "key-auth"}]),
                service("open", be.url, open_routes),
                service("jwtsvc", be.url, jwt_routes)]
    gw = mstack.gateway(services, extra={"consumers": CONSUMERS}, env={"TZ": "Asia/Kolkata"})
    gw.cases = cases
    return gw


def send(gw, i, spec):
    spec = dict(spec)
    headers = list(spec.get("headers", []))
    if spec.get("who"):
        headers.append(("apikey", KEYS[spec["who"]]))
    target = "/c%d" % i + ("/" + spec["path"] if "path" in spec else "")
    if spec.get("query"):
        target += "?" + spec["query"]
    return request(gw.port, spec.get("method", "GET"), target, headers=headers,
                   source=spec.get("source", "127.0.0.1"))


def test_every_operator(abac_gw):
    failures = []
    for i, (expr, ok, ko) in enumerate(abac_gw.cases):
        if ok is not None:
            r = send(abac_gw, i, ok)
            if r.status != 200:
                failures.append("%r: %r should pass, got %d %s" % (expr, ok, r.status, r.body))
        if ko is not None:
            r = send(abac_gw, i, ko)
            if r.status != 403 or json.loads(r.body)["message"] != "Forbidden":
                failures.append("%r: %r should get 403, got %d" % (expr, ko, r.status))
    assert not failures, "\n".join(failures)
    check_alive(abac_gw)


def token(who, **claims):
    body = {"iss": "iss-" + who, "sub": who, "exp": int(time.time()) + 300}
    body.update(claims)
    return pyjwt.encode(body, JWT_SECRETS[who], algorithm="HS256")


def bearer(tok, *extra):
    return [("Authorization", "Bearer " + tok)] + list(extra)


def test_jwt_claims_owner_or_admin(abac_gw):
    gw = abac_gw
    get = lambda target, tok: request(gw.port, "GET", target, headers=bearer(tok))
    assert get("/jwt/users/bob", token("bob")).status == 200        # the owner
    assert get("/jwt/users/alice", token("bob")).status == 403      # someone else
    assert get("/jwt/users/bob", token("alice")).status == 200      # an admin
    # a token whose sub is absent: null == "bob" is false
    tok = pyjwt.encode({"iss": "iss-bob", "exp": int(time.time()) + 300}, JWT_SECRETS["bob"],
                       algorithm="HS256")
    assert get("/jwt/users/bob", tok).status == 403


def test_jwt_nested_and_typed_claims(abac_gw):
    gw = abac_gw
    good = dict(level=7, realm={"access": {"roles": ["dev", "ops"]}}, mfa=True,
                **{"https://example.com/tenant": "acme"})
    tenant = ("X-Tenant", "acme")

    def get(**over):
        claims = dict(good)
        claims.update(over)
        return request(gw.port, "GET", "/jwt/claims",
                       headers=bearer(token("alice", **claims), tenant)).status

    assert get() == 200
    assert get(level=4) == 403
    assert get(level=10) == 403
    assert get(level="7") == 403                      # a string is not a number
    assert get(realm={"access": {"roles": ["dev"]}}) == 403
    assert get(realm={"access": "ops"}) == 403        # not an array
    assert get(mfa=False) == 403
    assert get(mfa="true") == 403                     # only JSON true is true
    assert get(**{"https://example.com/tenant": "other"}) == 403
    assert get(missing=1) == 403


def test_jwt_integer_claims_compare_exactly(abac_gw):
    # integers above 2^53 are compared as int64, not as doubles (which would round
    # 9007199254740993 to 9007199254740992)
    def get(uid):
        return request(abac_gw.port, "GET", "/jwt/bigint",
                       headers=bearer(token("bob", uid=uid))).status
    assert get(9007199254740993) == 200
    assert get(9007199254740992) == 403
    assert get(9007199254740994) == 403
    assert get(9007199254740992.0) == 403
    assert get(9223372036854775807) == 200
    assert get(9223372036854775806) == 403
    assert get(-9223372036854775808) == 200


def test_security_log_and_status(stack):
    be = stack.backend("echo")
    svc = service("s", be.url, [
        route("a", ["/a"], plugins=[{"name": "abac", "config": {
            "allow": 'request.headers.x-ok == "1"', "deny": 'request.headers.x-bad != null'}}]),
        route("b", ["/b"], plugins=[{"name": "abac", "config": {
            "allow": "false", "status": 404, "message": "No such thing"}}])])
    gw = stack.gateway([svc])
    rid1 = request(gw.port, "GET", "/a").header("x-request-id")
    rid2 = request(gw.port, "GET", "/a", headers=[("X-Ok", "1"), ("X-Bad", "")]).header(
        "x-request-id")
    assert request(gw.port, "GET", "/a", headers=[("X-Ok", "1")]).status == 200
    doc = assert_json_error(request(gw.port, "GET", "/b"), 404)
    assert doc["message"] == "No such thing"
    lines = gw.security_lines(3)
    by_rid = {l.get("request_id"): l for l in lines}
    assert by_rid[rid1]["reason"] == "abac: no allow policy matched"
    assert by_rid[rid1]["status"] == 403 and by_rid[rid1]["plugin"] == "abac"
    assert by_rid[rid2]["reason"] == "abac: a deny policy matched"
    assert len(lines) == 3, lines


# ---- config errors: FILE:LINE:COLUMN of the offending token ----------------------------------

def errors(tmp_path, body):
    rc, err = check_plugin_config(tmp_path, "abac", body)
    return rc, config_errors(err)


# (config body starting on line 11, expected "LINE:COLUMN", a piece of the message)
BAD = [
    ('              allow: consumer.nope == "a"\n', "11:22", 'unknown attribute "consumer.nope"'),
    ("              allow: 'request.method == \"GET\" && consumer.groups == 5'\n",
     "11:66", "cannot compare a list of strings with a number"),
    ('              allow: "\\"admin\\" in consumer.groups && request.path < \\"/x\\""\n',
     "11:68", "'<' compares numbers, not a string"),
    ("              allow: 'request.headers.x-a == ''it\\''s'' &&'\n", "11:59",
     "unexpected end"),
    ("              allow: request.headers.x-a ==\n", "11:44", "unexpected end"),
    ("              allow: |\n"
     "                request.method == \"GET\" &&\n"
     "                  (time.hour > 8 || time.hour = 9)\n", "13:47", "use '=='"),
    ("              allow: >\n"
     "                true &&\n"
     "                client.ip in \"10.0.0.0/33\"\n", "13:30", "prefix length"),
    ("              deny:\n"
     "                - request.method == \"GET\"\n"
     "                - jwt.claims.sub == jwt.claims\n", "13:37", "needs a claim name"),
    ("              allow: request.method\n", "11:22", "expected a condition"),
    ('              allow: "request.method == \\"GET\\" true"\n', "11:49", "missing && or ||"),
    ('              allow: "é\u00e9 == 1"\n', "11:23", "unexpected byte"),
    ("              allow: \"starts_with(request.path, 1)\"\n", "11:49", "works on strings"),
    ("              allow: []\n", "11:22", "must not be empty"),
    ("              status: 403\n", "11:15", 'one of "allow" or "deny"'),
    ("              allow: jwt.claims.uid == 9223372036854775808\n", "11:40",
     "integer out of range"),
]


@pytest.mark.parametrize("body,where,what", BAD)
def test_config_errors_point_at_the_token(tmp_path, body, where, what):
    rc, lines = errors(tmp_path, body)
    assert rc == 1, lines
    assert lines and lines[0].startswith(where + ": ") and what in lines[0], (where, what, lines)


def test_good_config_checks(tmp_path):
    rc, lines = errors(tmp_path, "              allow:\n"
                                 "                - '\"admin\" in consumer.groups'\n"
                                 "                - jwt.claims.sub == route.params.id\n"
                                 "              deny: client.ip in [\"10.0.0.0/8\"]\n"
                                 "              message: Go away\n")
    assert rc == 0, lines
