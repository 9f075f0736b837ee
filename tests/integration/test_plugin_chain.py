"""The plugin chain itself: scopes and their precedence (Kong's), explicit per-route order,
consumer-scoped plugins, any-of authentication, identity headers, the security log, and config
errors that name the field path."""

import os

from conftest import check_alive, check_config, route, service, upstream_headers
from rawhttp import Client


def scope_tag(tag):
    """A request-transformer instance that tells the upstream which scope ran."""
    return {"name": "request-transformer", "config": {"add": {"headers": ["X-Scope:" + tag]}}}


def scope_gateway(stack):
    b = stack.backend()
    svc_a = service("a", b.url, [route("a1", ["/a1"], plugins=[scope_tag("route")]),
                                 route("a2", ["/a2"])], plugins=[scope_tag("service")])
    svc_b = service("b", b.url, [route("b1", ["/b1"])])
    consumers = [
        {"username": "anon"},
        {"username": "alice", "keyauth_credentials": [{"key": "alice-key"}],
         "plugins": [scope_tag("consumer")]},
        {"username": "bob", "keyauth_credentials": [{"key": "bob-key"}]},
        {"username": "carol", "keyauth_credentials": [{"key": "carol-key"}]},
    ]
    plugins = [
        scope_tag("global"),
        {"name": "key-auth", "config": {"anonymous": "anon"}},
        dict(scope_tag("consumer-route"), consumer="bob", route="a1"),
        dict(scope_tag("route-service"), route="a2", service="a"),
        dict(scope_tag("consumer-service"), consumer="carol", service="b"),
    ]
    return stack.gateway([svc_a, svc_b], extra={"consumers": consumers, "plugins": plugins})


def scope_seen(gw, path, key=None):
    with Client(gw.port) as c:
        r = c.request("GET", path, [("apikey", key)] if key else [])
        assert r.status == 200, r
        h = r.json()["headers"]
        return [v for k, v in h if k.lower() == "x-scope"] if isinstance(h, list) else \
            [h.get("X-Scope") or h.get("x-scope")]


def test_scope_precedence_follows_kong(stack):
    gw = scope_gateway(stack)
    assert scope_seen(gw, "/b1/x") == ["global"]
    assert scope_seen(gw, "/a1/x") == ["route"]            # route > service > global
    assert scope_seen(gw, "/a2/x") == ["route-service"]    # route+service > service
    assert scope_seen(gw, "/b1/x", "alice-key") == ["consumer"]         # consumer > global
    assert scope_seen(gw, "/a1/x", "alice-key") == ["consumer"]         # consumer > route
    assert scope_seen(gw, "/a2/x", "alice-key") == ["route-service"]    # route+service > consumer
    assert scope_seen(gw, "/a1/x", "bob-key") == ["consumer-route"]     # consumer+route wins
    assert scope_seen(gw, "/a2/x", "bob-key") == ["route-service"]      # not bob's route
    assert scope_seen(gw, "/b1/x", "carol-key") == ["consumer-service"]
    assert scope_seen(gw, "/a1/x", "carol-key") == ["route"]            # not carol's service
    check_alive(gw)


def termination_gateway(stack, order=None):
    b = stack.backend()
    r = route("r", ["/"], plugins=[{"name": "key-auth"},
                                   {"name": "request-termination",
                                    "config": {"status_code": 503, "message": "maintenance"}}])
    if order:
        r["order"] = order
    return stack.gateway([service("s", b.url, [r])],
                         extra={"consumers": [{"username": "u",
                                               "keyauth_credentials": [{"key": "k1"}]}]})


def test_priority_order_by_default(stack):
    gw = termination_gateway(stack)
    with Client(gw.port) as c:
        assert c.request("GET", "/x").status == 401  # key-auth (1250) before termination (2)
        r = c.request("GET", "/x", [("apikey", "k1")])
        assert r.status == 503 and r.json()["message"] == "maintenance"


def test_route_order_overrides_priority(stack):
    gw = termination_gateway(stack, order=["request-termination", "key-auth"])
    with Client(gw.port) as c:
        r = c.request("GET", "/x")
        assert r.status == 503, r  # termination runs first: no key needed to see maintenance


def test_disabled_plugin_is_absent(stack):
    b = stack.backend()
    r = route("r", ["/"], plugins=[{"name": "key-auth", "enabled": False}])
    gw = stack.gateway([service("s", b.url, [r])])
    with Client(gw.port) as c:
        assert c.request("GET", "/x").status == 200


def test_any_of_auth_and_first_failure_answers(stack):
    b = stack.backend()
    r = route("r", ["/"], plugins=[{"name": "key-auth"}, {"name": "basic-auth"}])
    consumers = [{"username": "k", "keyauth_credentials": [{"key": "kk"}]},
                 {"username": "p", "basicauth_credentials": [{"username": "pu",
                                                              "password": "pw"}]}]
    gw = stack.gateway([service("s", b.url, [r])], extra={"consumers": consumers})
    with Client(gw.port) as c:
        r1 = c.request("GET", "/x", [("apikey", "kk")])
        assert r1.status == 200 and header(r1.json(), "x-consumer-username") == "k"
        r2 = c.request("GET", "/x", [("Authorization", "Basic cHU6cHc=")])  # pu:pw
        assert r2.status == 200 and header(r2.json(), "x-consumer-username") == "p"
        r3 = c.request("GET", "/x")
        # basic-auth (1100) runs after key-auth (1250): the first failure is key-auth's
        assert r3.status == 401
        assert r3.header("www-authenticate").startswith("Key")
    lines = gw.security_lines(1)
    assert [l["plugin"] for l in lines] == ["key-auth"], lines


def header(echo, name):
    """The first value of request header `name` the echo backend received, or None."""
    values = upstream_headers(echo, name)
    return values[0] if values else None


def test_identity_headers_and_lookalikes_from_clients_are_dropped(stack):
    b = stack.backend()
    r = route("r", ["/"], plugins=[{"name": "key-auth"}])
    gw = stack.gateway([service("s", b.url, [r]), service("open", b.url, [route("o", ["/open"])])],
                       extra={"consumers": [{"username": "real", "custom_id": "c-1",
                                             "groups": ["g1", "g2"],
                                             "keyauth_credentials": [{"key": "kk"}]}]})
    forged = [("X-Consumer-Username", "admin"), ("X_Consumer_Username", "admin"),
              ("x-consumer-id", "0"), ("X-Credential-Identifier", "x"),
              ("X-Anonymous-Consumer", "false"), ("X_CONSUMER_GROUPS", "admins")]
    with Client(gw.port) as c:
        echo = c.request("GET", "/x", forged + [("apikey", "kk")]).json()
        names = [k.lower().replace("_", "-") for k, _ in echo["headers"]]
        assert header(echo, "x-consumer-username") == "real"
        assert header(echo, "x-consumer-custom-id") == "c-1"
        assert header(echo, "x-consumer-groups") == "g1, g2"
        assert names.count("x-consumer-username") == 1
        assert names.count("x-consumer-groups") == 1
        assert "x-anonymous-consumer" not in names
        assert header(echo, "x_consumer_username") is None
        # a route without plugins drops them too: the upstream can trust these names
        echo = c.request("GET", "/open/x", forged).json()
        names = [k.lower().replace("_", "-") for k, _ in echo["headers"]]
        assert not [n for n in names if n.startswith("x-consumer") or n.startswith("x-cred")
                    or n.startswith("x-anonymous")], names


def test_consumer_id_is_stable_across_restarts(stack):
    b = stack.backend()
    r = route("r", ["/"], plugins=[{"name": "key-auth"}])
    extra = {"consumers": [{"username": "u1", "keyauth_credentials": [{"key": "k"}]}]}
    ids = []
    for _ in range(2):
        gw = stack.gateway([service("s", b.url, [r])], extra=extra)
        with Client(gw.port) as c:
            ids.append(header(c.request("GET", "/", [("apikey", "k")]).json(), "x-consumer-id"))
        assert not gw.stop()
    assert ids[0] == ids[1] and len(ids[0]) == 36 and ids[0][14] == "5", ids


def test_security_log_lines_are_json_without_secrets(stack):
    b = stack.backend()
    r = route("r", ["/"], plugins=[{"name": "key-auth"}])
    gw = stack.gateway([service("s", b.url, [r])],
                       extra={"consumers": [{"username": "u", "keyauth_credentials": [
                           {"key": "the-real-secret"}]}]}, workers=2)
    with Client(gw.port) as c:
        c.request("GET", "/x")
        c.request("GET", "/x", [("apikey", "guessed-secret-123\"")])
        c.request("GET", "/x", [("apikey", "the-real-secret")])
    lines = gw.security_lines(2)
    assert len(lines) == 2, lines
    for l in lines:
        for k in ("time", "request_id", "client", "route", "service", "plugin", "status",
                  "reason", "consumer"):
            assert k in l, (k, l)
        assert l["status"] == 401 and l["route"] == "r" and l["plugin"] == "key-auth"
        assert l["client"] == "127.0.0.1"
    raw = gw.read(gw.security_log) + gw.read(gw.access_log) + gw.read(gw.error_log)
    assert b"guessed-secret" not in raw and b"the-real-secret" not in raw


BASE = """services:
  - name: s
    url: http://127.0.0.1:9
    routes:
      - name: r
        paths: [/]
"""


def test_config_errors_name_file_line_column_and_field_path(tmp_path):
    rc, err = check_config(tmp_path, BASE + """        plugins:
          - name: key-auth
            config:
              key_names: [apikey]
              hide_credential: true
""")
    assert rc == 1
    assert ("check.yaml:11:15: plugins[0](key-auth).config: unknown key \"hide_credential\""
            in err), err

    rc, err = check_config(tmp_path, BASE + """        plugins:
          - name: no-such-plugin
""")
    assert rc == 1 and "check.yaml:8:19: unknown plugin \"no-such-plugin\"" in err, err

    rc, err = check_config(tmp_path, BASE + """plugins:
  - name: request-termination
    consumer: nobody
""")
    assert rc == 1 and "check.yaml:8:5: plugin names unknown consumer \"nobody\"" in err, err

    rc, err = check_config(tmp_path, BASE + """consumers:
  - username: u
    plugins:
      - name: key-auth
""")
    assert rc == 1 and "cannot be scoped to a consumer" in err, err

    rc, err = check_config(tmp_path, BASE + """        order: [key-auth, nope]
""")
    assert rc == 1 and "check.yaml:7:27: unknown plugin \"nope\" in \"order\"" in err, err

    rc, err = check_config(tmp_path, BASE + """consumers:
  - username: u
    keyauth_credentials: [{key: {env: TP_TEST_UNSET_KEY}}]
  - username: v
    keyauth_credentials: [{key: dup}, {key: dup}]
""")
    assert rc == 1
    assert "environment variable \"TP_TEST_UNSET_KEY\"" in err, err
    assert "duplicate key-auth key (first defined at" in err and "dup\"" not in err, err


def test_secrets_from_env_and_file(stack, tmp_path):
    b = stack.backend()
    keyfile = os.path.join(str(tmp_path), "key.txt")
    with open(keyfile, "w") as f:
        f.write("file-key\n")
    r = route("r", ["/"], plugins=[{"name": "key-auth"}])
    consumers = [{"username": "e", "keyauth_credentials": [{"key": {"env": "TP_TEST_KEY"}}]},
                 {"username": "f", "keyauth_credentials": [{"key": {"file": keyfile}}]}]
    gw = stack.gateway([service("s", b.url, [r])], extra={"consumers": consumers},
                       env={"TP_TEST_KEY": "env-key"})
    with Client(gw.port) as c:
        assert header(c.request("GET", "/", [("apikey", "env-key")]).json(),
                      "x-consumer-username") == "e"
        assert header(c.request("GET", "/", [("apikey", "file-key")]).json(),
                      "x-consumer-username") == "f"
        assert c.request("GET", "/", [("apikey", "file-key\n")]).status in (400, 401)


def test_reload_swaps_plugins_and_consumers(stack):
    b = stack.backend()
    r = route("r", ["/"], plugins=[{"name": "key-auth"}])
    gw = stack.gateway([service("s", b.url, [r])],
                       extra={"consumers": [{"username": "u", "keyauth_credentials": [
                           {"key": "old"}]}]})
    with Client(gw.port) as c:
        assert c.request("GET", "/", [("apikey", "old")]).status == 200
    gw.write_config(extra={"consumers": [{"username": "u", "keyauth_credentials": [
        {"key": "new"}]}]})
    gw.reload()
    import time
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with Client(gw.port) as c:
            if c.request("GET", "/", [("apikey", "new")]).status == 200:
                break
        time.sleep(0.05)
    with Client(gw.port) as c:
        assert c.request("GET", "/", [("apikey", "new")]).status == 200
        assert c.request("GET", "/", [("apikey", "old")]).status == 401
    check_alive(gw)


def test_plugins_see_the_request_as_the_upstream_will(stack):
    """Client copies of identity and forwarding headers are not what the upstream receives:
    a policy on them must not be satisfiable by the client."""
    b = stack.backend()
    pol = lambda expr: [{"name": "abac", "config": {"allow": expr}}]  # noqa: E731
    routes = [route("who", ["/who"], plugins=pol(
                  'request.headers.x-consumer-username == "admin"')),
              route("lookalike", ["/lookalike"], plugins=pol(
                  'request.headers.x_consumer_username == "admin"')),
              route("ip", ["/ip"], plugins=pol(
                  'request.headers.x-real-ip == "10.1.1.1" || '
                  'starts_with(request.headers.x-forwarded-for, "10.")'))]
    gw = stack.gateway([service("s", b.url, routes)])
    with Client(gw.port) as c:
        assert c.request("GET", "/who", [("X-Consumer-Username", "admin")]).status == 403
        assert c.request("GET", "/lookalike", [("X_Consumer_Username", "admin")]).status == 403
        assert c.request("GET", "/ip", [("X-Real-IP", "10.1.1.1")]).status == 403
        assert c.request("GET", "/ip", [("X-Forwarded-For", "10.2.2.2")]).status == 403


def test_forwarding_headers_of_a_trusted_proxy_are_visible(stack):
    b = stack.backend()
    r = route("ip", ["/ip"], plugins=[{"name": "abac", "config": {
        "allow": 'starts_with(request.headers.x-forwarded-for, "10.") && '
                 'request.headers.x-real-ip == "10.2.2.2"'}}])
    gw = stack.gateway([service("s", b.url, [r])], trusted_proxies=["127.0.0.1"])
    with Client(gw.port) as c:
        assert c.request("GET", "/ip", [("X-Forwarded-For", "10.2.2.2")]).status == 200
        assert c.request("GET", "/ip").status == 403


def test_anonymous_fallback_stands_against_a_later_failure(stack):
    b = stack.backend()
    r = route("r", ["/"], plugins=[{"name": "key-auth", "config": {"anonymous": "anon"}},
                                   {"name": "basic-auth"}])
    consumers = [{"username": "anon"},
                 {"username": "p", "basicauth_credentials": [{"username": "pu",
                                                              "password": "pw"}]}]
    gw = stack.gateway([service("s", b.url, [r])], extra={"consumers": consumers})
    with Client(gw.port) as c:
        r1 = c.request("GET", "/x")
        assert r1.status == 200 and header(r1.json(), "x-consumer-username") == "anon"
        assert header(r1.json(), "x-anonymous-consumer") == "true"
        r2 = c.request("GET", "/x", [("Authorization", "Basic cHU6cHc=")])
        assert r2.status == 200 and header(r2.json(), "x-consumer-username") == "p"
        assert header(r2.json(), "x-anonymous-consumer") is None
        r3 = c.request("GET", "/x", [("apikey", "wrong")])
        assert r3.status == 200 and header(r3.json(), "x-consumer-username") == "anon"
    lines = gw.security_lines(1)
    assert [(l["plugin"], l["reason"]) for l in lines] == [("key-auth", "invalid api key")], lines


def test_ipv4_mapped_proxy_in_forwarded_for_is_trusted(stack):
    b = stack.backend()
    r = route("r", ["/"], plugins=[{"name": "ip-restriction",
                                    "config": {"deny": ["203.0.113.9"]}}])
    gw = stack.gateway([service("s", b.url, [r])],
                       trusted_proxies=["127.0.0.1", "192.0.2.10"])
    with Client(gw.port) as c:
        for xff in ("203.0.113.9, 192.0.2.10", "203.0.113.9, ::ffff:192.0.2.10",
                    "::ffff:203.0.113.9, 192.0.2.10"):
            assert c.request("GET", "/", [("X-Forwarded-For", xff)]).status == 403, xff
        assert c.request("GET", "/", [("X-Forwarded-For", "198.51.100.1")]).status == 200


def test_collected_response_that_breaks_gets_502(stack):
    b = stack.backend()
    r = route("r", ["/"], plugins=[{"name": "response-transformer",
                                    "config": {"add": {"json": ["x:1"]}}}])
    gw = stack.gateway([service("s", b.url, [r])])
    for path in ("/truncated-json", "/bad-chunk-json"):
        with Client(gw.port) as c:
            resp = c.request("GET", path)
            assert resp.status == 502, (path, resp)
            assert resp.json()["message"] == "invalid response from upstream"
    with Client(gw.port) as c:
        assert c.request("GET", "/ok").status == 200
    check_alive(gw)


def test_consumer_values_that_cannot_travel_in_headers_are_config_errors(tmp_path):
    cases = [
        ("""consumers:
  - username: admin
  - username: mallory
    id: admin
""", "consumer id \"admin\" is the username of another consumer"),
        ("""consumers:
  - username: u
    groups: ["partners,admin"]
""", "must not be empty or contain control characters or ','"),
        ("""consumers:
  - username: u
    keyauth_credentials: [{key: "k "}]
""", "must not contain control characters or start or end with a blank"),
        ("""consumers:
  - username: u
    basicauth_credentials: [{username: "a:b", password: x}]
""", "cannot contain ':'"),
        ("""consumers:
  - username: u
    basicauth_credentials: [{username: a, password: "$9z$unknownmethod$hashhashhash"}]
""", "not a usable crypt(3) hash"),
    ]
    for doc, text in cases:
        rc, err = check_config(tmp_path, BASE + doc)
        assert rc == 1 and text in err, (doc, err)
    rc, err = check_config(tmp_path, BASE + """consumers:
  - username: u
    custom_id: null
    id: null
    keyauth_credentials: [{key: k, id: null, tags: null}]
""")
    assert rc == 0, err


def test_consumer_plugin_hooks_the_route_lacks_still_run(stack):
    """A consumer-scoped plugin brings hooks the route's own chain does not have (here the log
    hook that gives a concurrency slot back): they run for that consumer's requests."""
    b = stack.backend()
    r = route("r", ["/"], plugins=[{"name": "key-auth"}])
    consumers = [{"username": "u", "keyauth_credentials": [{"key": "k"}],
                  "plugins": [{"name": "rate-limiting", "config": {
                      "algorithm": "concurrency", "limits": [{"count": 1}], "key": "consumer"}}]}]
    gw = stack.gateway([service("s", b.url, [r])], extra={"consumers": consumers})
    with Client(gw.port) as c:
        for _ in range(3):  # one at a time: each must find the slot given back
            assert c.request("GET", "/x", [("apikey", "k")]).status == 200
