"""key-auth plugin (docs/plugins/key-auth.md): API keys in headers or query arguments, Kong's
precedence and messages, hide_credentials, anonymous, consumer headers upstream, secrets from
the environment and files, the security log, run_on_preflight, several workers, Kong files."""

import json

import pytest

from conftest import (assert_consumer, check_alive, check_config, echoed, route, service,
                      upstream_headers)
from rawhttp import Client, assert_json_error, request

ALICE_KEY = "ka-alice-Q7x9-secret"
BOB_KEY = "ka-bob-Z3k8-secret"
WRONG_KEY = "ka-wrong-M4p2-guess"
ENV_KEY = "ka-from-env-R5t1"
FILE_KEY = "ka-from-file-W6y3"
ODD_KEY = "k+y/=%z"          # needs %-encoding in a query string

CONSUMERS = [
    {"username": "alice", "custom_id": "c-alice",
     "keyauth_credentials": [{"id": "cred-alice", "key": ALICE_KEY}]},
    {"username": "bob", "keyauth_credentials": [{"key": BOB_KEY}, {"key": ODD_KEY}]},
    {"username": "guest", "custom_id": "c-guest"},
]

CHALLENGE = 'Key realm="turnpike"'


def start(stack, config=None, consumers=None, workers=1, env=None, extra_plugins=None):
    be = stack.backend("echo")
    plugin = {"name": "key-auth"}
    if config is not None:
        plugin["config"] = config
    plugins = [plugin] + list(extra_plugins or [])
    svc = service("s", be.url, [route("r", ["/k"], plugins=plugins),
                                route("open", ["/open"])])
    return stack.gateway([svc], workers=workers, env=env,
                         extra={"consumers": consumers if consumers is not None else CONSUMERS})


def get(gw, target="/k/x", headers=None, method="GET"):
    return request(gw.port, method, target, headers=headers)


def assert_denied(resp, message, challenge=CHALLENGE):
    doc = assert_json_error(resp, 401)
    assert doc["message"] == message, doc
    assert resp.header_all("www-authenticate") == [challenge], resp
    assert resp.header("x-consumer-username") is None


# ---- success and failure -------------------------------------------------------------------

def test_key_in_header_authenticates(stack):
    gw = start(stack)
    doc = echoed(get(gw, headers=[("apikey", ALICE_KEY)]))
    assert_consumer(doc, "alice", "c-alice", "cred-alice")
    # without hide_credentials the key goes upstream unchanged
    assert upstream_headers(doc, "apikey") == [ALICE_KEY]
    check_alive(gw)


def test_key_in_query_authenticates(stack):
    gw = start(stack)
    doc = echoed(get(gw, "/k/x?a=1&apikey=%s&b=2" % BOB_KEY))
    assert_consumer(doc, "bob")
    assert doc["query"] == "a=1&apikey=%s&b=2" % BOB_KEY


def test_header_name_is_case_insensitive(stack):
    gw = start(stack)
    assert_consumer(echoed(get(gw, headers=[("APIKey", ALICE_KEY)])), "alice")


def test_missing_key_is_401_with_challenge(stack):
    gw = start(stack)
    assert_denied(get(gw), "No API key found in request")
    assert_denied(get(gw, headers=[("apikey", "")]), "No API key found in request")
    assert_denied(get(gw, "/k/x?apikey="), "No API key found in request")
    # `?apikey` without '=' is a flag, not a key (Kong)
    assert_denied(get(gw, "/k/x?apikey"), "No API key found in request")
    # a route without the plugin is not affected
    assert get(gw, "/open/x").status == 200


def test_query_flag_is_ignored_next_to_a_key(stack):
    # a bare `?apikey` (no '=') carries no key wherever it stands: not a duplicate
    gw = start(stack, {"key_names": ["apikey", "second"], "hide_credentials": True})
    for query in ("apikey&apikey=" + ALICE_KEY, "apikey=%s&apikey" % ALICE_KEY,
                  "apikey&x=1&apikey=%s&apikey" % ALICE_KEY):
        doc = echoed(get(gw, "/k/x?" + query))
        assert_consumer(doc, "alice")
        assert doc["query"] == ("x=1" if "x=1" in query else ""), doc  # flags hidden too
    # only a flag: the search goes on to the next name
    assert_consumer(echoed(get(gw, "/k/x?apikey&second=" + BOB_KEY)), "bob")
    # two real values are still a duplicate
    assert_denied(get(gw, "/k/x?apikey&apikey=%s&apikey=%s" % (ALICE_KEY, ALICE_KEY)),
                  "Duplicate API key found")


def test_wrong_key_is_401_with_challenge(stack):
    gw = start(stack)
    assert_denied(get(gw, headers=[("apikey", WRONG_KEY)]), "Invalid authentication credentials")
    assert_denied(get(gw, "/k/x?apikey=" + WRONG_KEY), "Invalid authentication credentials")
    # a key is matched exactly: no prefix, no case folding, no trimming inside
    assert_denied(get(gw, headers=[("apikey", ALICE_KEY[:-1])]),
                  "Invalid authentication credentials")
    assert_denied(get(gw, headers=[("apikey", ALICE_KEY.upper())]),
                  "Invalid authentication credentials")


def test_duplicate_key_is_refused(stack):
    gw = start(stack)
    assert_denied(get(gw, headers=[("apikey", ALICE_KEY), ("apikey", ALICE_KEY)]),
                  "Duplicate API key found")
    assert_denied(get(gw, "/k/x?apikey=%s&apikey=%s" % (ALICE_KEY, BOB_KEY)),
                  "Duplicate API key found")


def test_custom_realm(stack):
    gw = start(stack, {"realm": "orders-api"})
    assert_denied(get(gw), "No API key found in request", 'Key realm="orders-api"')


# ---- which key counts ----------------------------------------------------------------------

def test_header_wins_over_query(stack):
    """For one name the header is read first and is THE key: a right key in the query does not
    rescue a wrong one in the header; a wrong query key does not spoil a right header key."""
    gw = start(stack)
    assert_denied(get(gw, "/k/x?apikey=" + ALICE_KEY, headers=[("apikey", WRONG_KEY)]),
                  "Invalid authentication credentials")
    doc = echoed(get(gw, "/k/x?apikey=" + WRONG_KEY, headers=[("apikey", BOB_KEY)]))
    assert_consumer(doc, "bob")


def test_key_names_in_order(stack):
    """Names are tried in key_names order, each in the header then the query: the first name
    found anywhere decides, even when a later name is in a header."""
    gw = start(stack, {"key_names": ["first", "second"]})
    doc = echoed(get(gw, "/k/x?first=" + ALICE_KEY, headers=[("second", BOB_KEY)]))
    assert_consumer(doc, "alice")
    doc = echoed(get(gw, headers=[("second", BOB_KEY)]))
    assert_consumer(doc, "bob")
    # the default name is not looked for once key_names is set
    assert_denied(get(gw, headers=[("apikey", ALICE_KEY)]), "No API key found in request")


def test_underscore_name_matches_dashed_header(stack):
    """As in Kong (nginx), a key name with '_' matches the header spelled with '-'; the query
    argument keeps the name as written."""
    gw = start(stack, {"key_names": ["x_api_key"]})
    assert_consumer(echoed(get(gw, headers=[("X-Api-Key", ALICE_KEY)])), "alice")
    assert_consumer(echoed(get(gw, "/k/x?x_api_key=" + BOB_KEY)), "bob")


def test_key_in_header_false_and_key_in_query_false(stack):
    gw = start(stack, {"key_in_header": False})
    assert_denied(get(gw, headers=[("apikey", ALICE_KEY)]), "No API key found in request")
    assert_consumer(echoed(get(gw, "/k/x?apikey=" + ALICE_KEY)), "alice")
    gw2 = start(stack, {"key_in_query": False})
    assert_denied(get(gw2, "/k/x?apikey=" + ALICE_KEY), "No API key found in request")
    # with the query off, a wrong query key does not disturb a header key
    doc = echoed(get(gw2, "/k/x?apikey=" + WRONG_KEY, headers=[("apikey", ALICE_KEY)]))
    assert_consumer(doc, "alice")


def test_query_value_is_percent_decoded(stack):
    """Query values are compared after form decoding (%XX, '+' = space), as Kong does; header
    values are compared as sent."""
    gw = start(stack)
    assert_consumer(echoed(get(gw, "/k/x?apikey=k%2By%2F%3D%25z")), "bob")
    assert_consumer(echoed(get(gw, "/k/x?api%6Bey=k%2By%2F%3D%25z")), "bob")
    assert_consumer(echoed(get(gw, headers=[("apikey", ODD_KEY)])), "bob")
    # a raw '+' is a space once decoded: not the key
    assert_denied(get(gw, "/k/x?apikey=k+y/=%25z"), "Invalid authentication credentials")


# ---- hide_credentials ----------------------------------------------------------------------

def test_hide_credentials_header(stack):
    gw = start(stack, {"hide_credentials": True})
    doc = echoed(get(gw, "/k/x?q=1", headers=[("apikey", ALICE_KEY), ("X-Other", "kept")]))
    assert_consumer(doc, "alice")
    assert upstream_headers(doc, "apikey") == []
    assert upstream_headers(doc, "x-other") == ["kept"]
    assert doc["query"] == "q=1"
    assert ALICE_KEY not in json.dumps(doc)


def test_hide_credentials_query(stack):
    gw = start(stack, {"hide_credentials": True})
    doc = echoed(get(gw, "/k/x?a=1&apikey=%s&b=2" % ALICE_KEY))
    assert_consumer(doc, "alice")
    assert doc["query"] == "a=1&b=2"
    assert doc["path"] == "/x"
    doc = echoed(get(gw, "/k/x?apikey=" + BOB_KEY))
    assert doc["query"] == "" and "?" not in doc["target"], doc["target"]
    assert BOB_KEY not in json.dumps(doc)


def test_without_hide_credentials_key_is_forwarded(stack):
    gw = start(stack, {"hide_credentials": False})
    doc = echoed(get(gw, "/k/x?apikey=" + ALICE_KEY))
    assert doc["query"] == "apikey=" + ALICE_KEY


# ---- anonymous and consumer headers --------------------------------------------------------

def test_anonymous_fallback(stack):
    gw = start(stack, {"anonymous": "guest"})
    for hdrs in ([], [("apikey", WRONG_KEY)]):
        doc = echoed(get(gw, headers=hdrs))
        assert upstream_headers(doc, "x-anonymous-consumer") == ["true"], doc["headers"]
        assert upstream_headers(doc, "x-consumer-username") == ["guest"], doc["headers"]
        assert upstream_headers(doc, "x-consumer-custom-id") == ["c-guest"], doc["headers"]
        assert upstream_headers(doc, "x-credential-identifier") == []
    # a right key still authenticates the real consumer
    assert_consumer(echoed(get(gw, headers=[("apikey", ALICE_KEY)])), "alice")
    # served as anonymous; the rejected key is logged, the absent one is not
    lines = gw.security_lines(1)
    assert [l["reason"] for l in lines] == ["invalid api key"], lines


def test_anonymous_by_id(stack):
    consumers = CONSUMERS + [{"id": "8d3f0c1e-0000-4000-8000-000000000001",
                              "username": "anon"}]
    gw = start(stack, {"anonymous": "8d3f0c1e-0000-4000-8000-000000000001"},
               consumers=consumers)
    doc = echoed(get(gw))
    assert upstream_headers(doc, "x-consumer-id") == ["8d3f0c1e-0000-4000-8000-000000000001"]
    assert upstream_headers(doc, "x-anonymous-consumer") == ["true"]


def test_client_consumer_headers_are_stripped(stack):
    gw = start(stack)
    spoof = [("X-Consumer-Username", "admin"), ("X_Consumer_Username", "admin"),
             ("X-Consumer-ID", "0"), ("X-Anonymous-Consumer", "false"),
             ("X-Credential-Identifier", "x"), ("X-Consumer-Groups", "admins")]
    doc = echoed(get(gw, headers=spoof + [("apikey", ALICE_KEY)]))
    assert_consumer(doc, "alice", "c-alice", "cred-alice")
    names = [n.lower() for n, _ in doc["headers"]]
    assert "x_consumer_username" not in names
    assert "admin" not in [v for _, v in doc["headers"]]
    assert upstream_headers(doc, "x-consumer-groups") == []
    # and spoofing alone does not authenticate
    assert_denied(get(gw, headers=spoof), "No API key found in request")


def check_key_auth(tmp_path, config, consumers=""):
    """check_config on a route with key-auth configured with `config` (a dict)."""
    return check_config(tmp_path, (
        "listen: [\"127.0.0.1:1\"]\nservices:\n  - name: s\n    url: http://127.0.0.1:9/\n"
        "    routes:\n      - name: r\n        paths: [/k]\n        plugins:\n"
        "          - name: key-auth\n            config: %s\n%s" % (json.dumps(config),
                                                                       consumers)))


def test_anonymous_must_name_a_consumer(tmp_path):
    consumers = "consumers:\n  - username: guest\n"
    rc, err = check_key_auth(tmp_path, {"anonymous": "nobody"}, consumers)
    assert rc == 1, err
    assert "nobody" in err and "anonymous" in err, err
    rc, err = check_key_auth(tmp_path, {"anonymous": "guest"}, consumers)
    assert rc == 0, err


@pytest.mark.parametrize("config, words", [
    ({"key_in_body": True}, "key_in_body"),
    ({"key_names": []}, "key_names"),
    ({"key_names": ["bad name"]}, "key_names"),
    ({"key_in_header": False, "key_in_query": False}, "key_in_query"),
    ({"realm": 'a"b'}, "realm"),
    ({"hide_credential": True}, "hide_credential"),
    ({"identity_realms": [{"scope": "realm", "id": "x", "region": "us"}]}, "identity_realms"),
])
def test_config_errors(tmp_path, config, words):
    rc, err = check_key_auth(tmp_path, config)
    assert rc == 1, err
    assert words in err, err
    assert "check.yaml:" in err, err


def test_config_defaults_and_kong_fields_accepted(tmp_path):
    rc, err = check_key_auth(tmp_path, {"key_names": ["apikey", "x-api-key"],
                                        "key_in_body": False, "hide_credentials": True,
                                        "run_on_preflight": False, "realm": "api",
                                        "key_in_header": True, "key_in_query": True})
    assert rc == 0, err
    rc, err = check_key_auth(tmp_path, {})
    assert rc == 0, err


# ---- secrets -------------------------------------------------------------------------------

def test_keys_from_env_and_file(stack, tmp_path):
    key_file = tmp_path / "key.txt"
    key_file.write_text(FILE_KEY + "\n")
    consumers = [
        {"username": "envy", "keyauth_credentials": [{"key": {"env": "TP_TEST_KEYAUTH_KEY"}}]},
        {"username": "filey", "keyauth_credentials": [{"key": {"file": str(key_file)}}]},
    ]
    gw = start(stack, consumers=consumers, env={"TP_TEST_KEYAUTH_KEY": ENV_KEY})
    assert_consumer(echoed(get(gw, headers=[("apikey", ENV_KEY)])), "envy")
    assert_consumer(echoed(get(gw, headers=[("apikey", FILE_KEY)])), "filey")
    # the trailing newline of the file is not part of the key, the variable's name is no key
    assert_denied(get(gw, headers=[("apikey", "TP_TEST_KEYAUTH_KEY")]),
                  "Invalid authentication credentials")
    assert_denied(get(gw, headers=[("apikey", str(key_file))]),
                  "Invalid authentication credentials")


# ---- security log --------------------------------------------------------------------------

def test_security_log_lines_without_secrets(stack):
    gw = start(stack)
    rid_missing = get(gw).header("x-request-id")
    rid_wrong = get(gw, headers=[("apikey", WRONG_KEY)]).header("x-request-id")
    rid_wrong_q = get(gw, "/k/x?apikey=" + WRONG_KEY).header("x-request-id")
    get(gw, headers=[("apikey", ALICE_KEY)])
    get(gw, "/k/x?apikey=" + BOB_KEY)
    lines = gw.security_lines(3)
    assert len(lines) == 3, lines
    by_rid = {l.get("request_id"): l for l in lines}
    assert by_rid[rid_missing]["reason"] == "missing api key"
    assert by_rid[rid_wrong]["reason"] == "invalid api key"
    assert by_rid[rid_wrong_q]["reason"] == "invalid api key"
    for l in lines:
        assert l["status"] == 401 and l["plugin"] == "key-auth", l
        assert l.get("route") == "r", l
    gw.wait_access_lines(5)
    for path in (gw.security_log, gw.access_log, gw.error_log):
        text = gw.read(path)
        for secret in (WRONG_KEY, ALICE_KEY, BOB_KEY):
            assert secret.encode() not in text, (path, secret)


# ---- preflight -----------------------------------------------------------------------------

def test_run_on_preflight_false(stack):
    gw = start(stack, {"run_on_preflight": False})
    r = get(gw, method="OPTIONS", headers=[("Origin", "https://app.example"),
                                           ("Access-Control-Request-Method", "GET")])
    doc = echoed(r)
    assert doc["method"] == "OPTIONS"
    assert upstream_headers(doc, "x-consumer-username") == []
    assert_denied(get(gw), "No API key found in request")


def test_run_on_preflight_method_is_case_sensitive(stack):
    # "options" is another method than OPTIONS (RFC 9110 §9.1): it needs a key
    gw = start(stack, {"run_on_preflight": False})
    assert_denied(get(gw, method="options"), "No API key found in request")
    assert_denied(get(gw, method="Options"), "No API key found in request")


def test_run_on_preflight_default_checks_options(stack):
    gw = start(stack)
    assert_denied(get(gw, method="OPTIONS"), "No API key found in request")


# ---- workers, keep-alive, Kong files --------------------------------------------------------

def test_two_workers(stack):
    gw = start(stack, workers=2)
    for i in range(30):
        key, who = (ALICE_KEY, "alice") if i % 2 else (BOB_KEY, "bob")
        assert_consumer(echoed(get(gw, "/k/%d" % i, headers=[("apikey", key)])), who)
        assert get(gw, headers=[("apikey", WRONG_KEY)]).status == 401
    check_alive(gw)


def test_keepalive_each_request_judged_alone(stack):
    gw = start(stack)
    with Client(gw.port) as c:
        r = c.request("GET", "/k/1", [("apikey", ALICE_KEY)])
        assert_consumer(echoed(r), "alice")
        r = c.request("GET", "/k/2")
        assert r.status == 401
        r = c.request("GET", "/k/3", [("apikey", BOB_KEY)])
        assert_consumer(echoed(r), "bob")


KONG_FILE = """_format_version: "3.0"
listen: ["127.0.0.1:%(port)d"]
workers: 1
access_log: %(access)s
error_log: %(error)s
security_log: %(security)s
services:
  - name: orders
    url: %(url)s
    routes:
      - name: orders-route
        paths: [/k]
        plugins:
          - name: key-auth
            id: 3b1c8a3e-6f39-4b1e-9d0f-5a2b8f4d7c11
            enabled: true
            protocols: [grpc, grpcs, http, https]
            config:
              anonymous: null
              hide_credentials: false
              key_in_body: false
              key_in_header: true
              key_in_query: true
              key_names:
                - apikey
              realm: null
              run_on_preflight: true
              identity_realms:
                - id: null
                  region: null
                  scope: cp
consumers:
  - username: alice
    custom_id: c-alice
    keyauth_credentials:
      - key: %(key)s
"""


def test_kong_declarative_file_loads(stack):
    be = stack.backend("echo")
    gw = stack.gateway([service("s", be.url, [route("r", ["/x"])])], start=False)
    gw.write_text(KONG_FILE % {"port": gw.port, "access": json.dumps(gw.access_log),
                               "error": json.dumps(gw.error_log),
                               "security": json.dumps(gw.security_log), "url": be.url,
                               "key": ALICE_KEY})
    gw.start()
    assert_consumer(echoed(get(gw, headers=[("apikey", ALICE_KEY)])), "alice", "c-alice")
    assert_denied(get(gw), "No API key found in request")
