"""basic-auth plugin (docs/plugins/basic-auth.md): RFC 7617 credentials in Authorization or
Proxy-Authorization, crypt(3) hashes (yescrypt from plain text, bcrypt, SHA-512 crypt), the
per-worker verdict cache, hide_credentials, anonymous, consumer headers, secrets from the
environment and files, the security log, several workers, any-of with key-auth, Kong files."""

import base64
import ctypes
import ctypes.util
import json
import subprocess
import time

import pytest

from conftest import (assert_consumer, check_alive, check_config, echoed, route, service,
                      upstream_headers)
from rawhttp import Client, assert_json_error, request

ALICE_PW = "alice-Pw-9fK2-secret"
BOB_PW = "b0b:with:colons-T4q"          # ':' inside the password is allowed (RFC 7617 §2)
WRONG_PW = "wrong-Pw-7hN3-guess"
ENV_PW = "env-Pw-2Lm5-secret"
FILE_PW = "file-Pw-8Rc1-secret"
UTF8_PW = "p\u00e4ss-\u20ac-6Gd"

CHALLENGE = 'Basic realm="service", charset="UTF-8"'

_libcrypt = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
_libcrypt.crypt_gensalt.restype = ctypes.c_char_p
_libcrypt.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p,
                                    ctypes.c_int]
_libcrypt.crypt.restype = ctypes.c_char_p
_libcrypt.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]


def crypt_hash(password, prefix=b"$2b$", cost=4):
    """A crypt(3) hash made by this machine's libxcrypt (the gateway's libcrypt), not by the
    gateway: bcrypt by default."""
    salt = _libcrypt.crypt_gensalt(prefix, cost, None, 0)
    assert salt, "crypt_gensalt failed for %r" % prefix
    out = _libcrypt.crypt(password.encode(), salt)
    assert out and not out.startswith(b"*"), out
    return out.decode()


def sha512_crypt(password):
    """SHA-512 crypt from openssl(1): a hash from an independent implementation."""
    res = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password.encode(),
                         capture_output=True, check=True)
    return res.stdout.decode().strip()


def basic(user, password):
    raw = ("%s:%s" % (user, password)).encode("utf-8")
    return "Basic " + base64.b64encode(raw).decode()


def consumers_plain():
    return [
        {"username": "alice", "custom_id": "c-alice",
         "basicauth_credentials": [{"id": "cred-alice", "username": "alice",
                                    "password": ALICE_PW}]},
        {"username": "bob", "basicauth_credentials": [{"username": "bob", "password": BOB_PW}]},
        {"username": "guest", "custom_id": "c-guest"},
    ]


def start(stack, config=None, consumers=None, workers=1, env=None, plugins=None):
    be = stack.backend("echo")
    if plugins is None:
        plugin = {"name": "basic-auth"}
        if config is not None:
            plugin["config"] = config
        plugins = [plugin]
    svc = service("s", be.url, [route("r", ["/b"], plugins=plugins), route("open", ["/open"])])
    return stack.gateway([svc], workers=workers, env=env,
                         extra={"consumers": consumers if consumers is not None
                                else consumers_plain()})


def get(gw, target="/b/x", headers=None, method="GET"):
    return request(gw.port, method, target, headers=headers)


def auth(user, password):
    return [("Authorization", basic(user, password))]


def assert_denied(resp, message="Invalid authentication credentials", challenge=CHALLENGE):
    doc = assert_json_error(resp, 401)
    assert doc["message"] == message, doc
    assert resp.header_all("www-authenticate") == [challenge], resp


# ---- success and failure -------------------------------------------------------------------

def test_plain_text_password_hashed_at_load(stack):
    gw = start(stack)
    doc = echoed(get(gw, headers=auth("alice", ALICE_PW)))
    assert_consumer(doc, "alice", "c-alice", "cred-alice")
    # without hide_credentials the header goes upstream unchanged
    assert upstream_headers(doc, "authorization") == [basic("alice", ALICE_PW)]
    assert_consumer(echoed(get(gw, headers=auth("bob", BOB_PW))), "bob")
    assert get(gw, "/open/x").status == 200
    check_alive(gw)


def test_missing_credentials(stack):
    gw = start(stack)
    assert_denied(get(gw), "Unauthorized")


def test_wrong_password_and_unknown_user_look_the_same(stack):
    gw = start(stack)
    assert_denied(get(gw, headers=auth("alice", WRONG_PW)))
    assert_denied(get(gw, headers=auth("alice", ALICE_PW[:-1])))
    assert_denied(get(gw, headers=auth("alice", ALICE_PW + "x")))
    assert_denied(get(gw, headers=auth("nobody", ALICE_PW)))
    assert_denied(get(gw, headers=auth("Alice", ALICE_PW)))   # user names are case-sensitive
    assert_denied(get(gw, headers=auth("bob", BOB_PW.split(":")[0])))


@pytest.mark.parametrize("value", [
    "Basic",
    "Basic ",
    "Basic !!!notbase64!!!",
    "Basic " + base64.b64encode(b"no-colon").decode(),
    "Basic " + base64.b64encode(b":empty-user").decode(),
    "Basic " + base64.b64encode(b"alice\0:" + ALICE_PW.encode()).decode(),
    "Basic " + base64.b64encode(("alice:" + ALICE_PW).encode()).decode() + "=",
    "Bearer abc.def.ghi",
    "Digest username=\"alice\"",
])
def test_malformed_or_other_scheme_is_401(stack, value):
    gw = start(stack)
    assert_denied(get(gw, headers=[("Authorization", value)]))
    check_alive(gw)


def test_scheme_is_case_insensitive_and_padding_optional(stack):
    gw = start(stack)
    token = base64.b64encode(("alice:" + ALICE_PW).encode()).decode()
    for value in ("basic " + token, "BASIC   " + token, "Basic " + token.rstrip("=")):
        assert_consumer(echoed(get(gw, headers=[("Authorization", value)])), "alice")


def test_two_authorization_headers_are_refused(stack):
    gw = start(stack)
    assert_denied(get(gw, headers=auth("alice", ALICE_PW) + auth("alice", ALICE_PW)))


def test_custom_realm(stack):
    gw = start(stack, {"realm": "orders"})
    assert_denied(get(gw), "Unauthorized", 'Basic realm="orders", charset="UTF-8"')


def test_utf8_password(stack):
    consumers = [{"username": "u", "basicauth_credentials": [
        {"username": "\u00fcser", "password": UTF8_PW}]}]
    gw = start(stack, consumers=consumers)
    assert_consumer(echoed(get(gw, headers=auth("\u00fcser", UTF8_PW))), "u")
    assert_denied(get(gw, headers=auth("\u00fcser", UTF8_PW.encode().decode("latin-1"))))


# ---- Proxy-Authorization -------------------------------------------------------------------

def test_proxy_authorization(stack):
    gw = start(stack)
    pa = [("Proxy-Authorization", basic("bob", BOB_PW))]
    assert_consumer(echoed(get(gw, headers=pa)), "bob")
    # Kong's order: Proxy-Authorization first when it names a known user...
    assert_consumer(echoed(get(gw, headers=pa + auth("alice", ALICE_PW))), "bob")
    # ...else Authorization
    unknown = [("Proxy-Authorization", basic("nobody", "x"))]
    assert_consumer(echoed(get(gw, headers=unknown + auth("alice", ALICE_PW))), "alice")
    # a known user with a wrong password in Proxy-Authorization is not rescued
    wrong = [("Proxy-Authorization", basic("bob", WRONG_PW))]
    assert_denied(get(gw, headers=wrong + auth("alice", ALICE_PW)))


# ---- hashes given in the config -------------------------------------------------------------

def test_bcrypt_sha512_and_yescrypt_hashes(stack):
    consumers = [
        {"username": "bc", "basicauth_credentials": [
            {"username": "bc", "password": crypt_hash(ALICE_PW, b"$2b$", 5)}]},
        {"username": "sha", "basicauth_credentials": [
            {"username": "sha", "password": sha512_crypt(BOB_PW)}]},
        {"username": "yes", "basicauth_credentials": [
            {"username": "yes", "password": crypt_hash(ENV_PW, b"$y$", 0)}]},
    ]
    gw = start(stack, consumers=consumers)
    assert_consumer(echoed(get(gw, headers=auth("bc", ALICE_PW))), "bc")
    assert_consumer(echoed(get(gw, headers=auth("sha", BOB_PW))), "sha")
    assert_consumer(echoed(get(gw, headers=auth("yes", ENV_PW))), "yes")
    assert_denied(get(gw, headers=auth("bc", BOB_PW)))
    assert_denied(get(gw, headers=auth("sha", ALICE_PW)))
    assert_denied(get(gw, headers=auth("yes", WRONG_PW)))
    # the hash itself is not a password
    assert_denied(get(gw, headers=auth("bc", consumers[0]["basicauth_credentials"][0]
                                       ["password"])))


def test_verdicts_are_cached(stack):
    """bcrypt at cost 12 takes ~0.2 s per check: after the first request, repeats (right or
    wrong) are answered from the worker's cache, never paying the hash again."""
    consumers = [{"username": "slow", "basicauth_credentials": [
        {"username": "slow", "password": crypt_hash(ALICE_PW, b"$2b$", 12)}]}]
    gw = start(stack, consumers=consumers)
    t0 = time.monotonic()
    assert_consumer(echoed(get(gw, headers=auth("slow", ALICE_PW))), "slow")
    assert_denied(get(gw, headers=auth("slow", WRONG_PW)))
    first_two = time.monotonic() - t0
    with Client(gw.port) as c:
        t0 = time.monotonic()
        for i in range(10):
            r = c.request("GET", "/b/%d" % i, auth("slow", ALICE_PW))
            assert_consumer(echoed(r), "slow")
            r = c.request("GET", "/b/%d" % i, auth("slow", WRONG_PW))
            assert_denied(r)
        twenty = time.monotonic() - t0
    # 20 uncached checks would take >= 10x the first two
    assert twenty < max(first_two * 2.5, 1.0), (first_two, twenty)


def test_wrong_password_repeated(stack):
    gw = start(stack)
    with Client(gw.port) as c:
        for i in range(40):
            assert_denied(c.request("GET", "/b/%d" % i, auth("alice", WRONG_PW + str(i % 3))))
    assert_consumer(echoed(get(gw, headers=auth("alice", ALICE_PW))), "alice")
    check_alive(gw)


def test_reload_with_new_password(stack):
    """A reload that changes the stored hash invalidates cached verdicts by construction."""
    gw = start(stack)
    assert_consumer(echoed(get(gw, headers=auth("alice", ALICE_PW))), "alice")
    consumers = consumers_plain()
    consumers[0]["basicauth_credentials"][0]["password"] = WRONG_PW
    gw.write_config(extra={"consumers": consumers})
    gw.reload()
    deadline = time.monotonic() + 10
    while get(gw, headers=auth("alice", WRONG_PW)).status != 200:
        assert time.monotonic() < deadline, "reload did not take effect:\n" + gw.logs()
        time.sleep(0.1)
    assert_denied(get(gw, headers=auth("alice", ALICE_PW)))
    check_alive(gw)


# ---- hide_credentials, anonymous, consumer headers -----------------------------------------

def test_hide_credentials(stack):
    gw = start(stack, {"hide_credentials": True})
    doc = echoed(get(gw, headers=auth("alice", ALICE_PW) + [("X-Other", "kept")]))
    assert_consumer(doc, "alice")
    assert upstream_headers(doc, "authorization") == []
    assert upstream_headers(doc, "proxy-authorization") == []
    assert upstream_headers(doc, "x-other") == ["kept"]
    assert ALICE_PW not in json.dumps(doc)
    assert base64.b64encode(("alice:" + ALICE_PW).encode()).decode() not in json.dumps(doc)


def test_anonymous_fallback(stack):
    gw = start(stack, {"anonymous": "guest"})
    for hdrs in ([], auth("alice", WRONG_PW), [("Authorization", "Basic !!")]):
        doc = echoed(get(gw, headers=hdrs))
        assert upstream_headers(doc, "x-anonymous-consumer") == ["true"], doc["headers"]
        assert upstream_headers(doc, "x-consumer-username") == ["guest"], doc["headers"]
        assert upstream_headers(doc, "x-consumer-custom-id") == ["c-guest"], doc["headers"]
    assert_consumer(echoed(get(gw, headers=auth("alice", ALICE_PW))), "alice")
    # served as anonymous; the two rejected credentials are logged, the absent one is not
    lines = gw.security_lines(2)
    assert [l["reason"] for l in lines] == ["invalid basic credentials",
                                            "malformed basic credentials"], lines
    assert all(l["status"] == 401 and l["plugin"] == "basic-auth" for l in lines)


def test_client_consumer_headers_are_stripped(stack):
    gw = start(stack)
    spoof = [("X-Consumer-Username", "admin"), ("X_Consumer_Username", "admin"),
             ("X-Consumer-Custom-ID", "root"), ("X-Anonymous-Consumer", "false")]
    doc = echoed(get(gw, headers=spoof + auth("alice", ALICE_PW)))
    assert_consumer(doc, "alice", "c-alice", "cred-alice")
    values = [v for _, v in doc["headers"]]
    assert "admin" not in values and "root" not in values, doc["headers"]
    assert_denied(get(gw, headers=spoof), "Unauthorized")


def test_config_errors(tmp_path):
    def check(config, consumers=""):
        return check_config(tmp_path, (
            "listen: [\"127.0.0.1:1\"]\nservices:\n  - name: s\n    url: http://127.0.0.1:9/\n"
            "    routes:\n      - name: r\n        paths: [/b]\n        plugins:\n"
            "          - name: basic-auth\n            config: %s\n%s" % (json.dumps(config),
                                                                          consumers)))
    for config, word in (({"anonymous": "nobody"}, "nobody"), ({"realm": "a\\b"}, "realm"),
                         ({"brute_force_protection": {"strategy": "memory"}},
                          "brute_force_protection"),
                         ({"hide_credential": True}, "hide_credential")):
        rc, err = check(config)
        assert rc == 1 and word in err, (config, err)
    rc, err = check({"anonymous": "guest", "realm": "x", "hide_credentials": True,
                     "brute_force_protection": {"strategy": "off"}},
                    "consumers:\n  - username: guest\n")
    assert rc == 0, err


# ---- secrets, logs -------------------------------------------------------------------------

def test_passwords_from_env_and_file(stack, tmp_path):
    pw_file = tmp_path / "pw.txt"
    pw_file.write_text(FILE_PW + "\n")
    hash_file = tmp_path / "hash.txt"
    hash_file.write_text(crypt_hash(ALICE_PW) + "\n")
    consumers = [
        {"username": "envy", "basicauth_credentials": [
            {"username": "envy", "password": {"env": "TP_TEST_BASIC_PW"}}]},
        {"username": "filey", "basicauth_credentials": [
            {"username": "filey", "password": {"file": str(pw_file)}}]},
        {"username": "hashy", "basicauth_credentials": [
            {"username": "hashy", "password": {"file": str(hash_file)}}]},
    ]
    gw = start(stack, consumers=consumers, env={"TP_TEST_BASIC_PW": ENV_PW})
    assert_consumer(echoed(get(gw, headers=auth("envy", ENV_PW))), "envy")
    assert_consumer(echoed(get(gw, headers=auth("filey", FILE_PW))), "filey")
    assert_consumer(echoed(get(gw, headers=auth("hashy", ALICE_PW))), "hashy")
    assert_denied(get(gw, headers=auth("envy", "TP_TEST_BASIC_PW")))
    assert_denied(get(gw, headers=auth("filey", FILE_PW + "\n")))


def test_security_log_lines_without_secrets(stack):
    gw = start(stack)
    rids = {
        "missing basic credentials": get(gw).header("x-request-id"),
        "invalid basic credentials": get(gw, headers=auth("alice", WRONG_PW))
        .header("x-request-id"),
        "malformed basic credentials": get(gw, headers=[("Authorization", "Basic %%%")])
        .header("x-request-id"),
    }
    echoed(get(gw, headers=auth("alice", ALICE_PW)))
    lines = gw.security_lines(3)
    assert len(lines) == 3, lines
    by_rid = {l.get("request_id"): l for l in lines}
    for reason, rid in rids.items():
        assert by_rid[rid]["reason"] == reason, by_rid[rid]
        assert by_rid[rid]["status"] == 401 and by_rid[rid]["plugin"] == "basic-auth"
    gw.wait_access_lines(4)
    secrets = [WRONG_PW, ALICE_PW, base64.b64encode(("alice:" + WRONG_PW).encode()).decode(),
               base64.b64encode(("alice:" + ALICE_PW).encode()).decode()]
    for path in (gw.security_log, gw.access_log, gw.error_log):
        text = gw.read(path)
        for secret in secrets:
            assert secret.encode() not in text, (path, secret)


# ---- workers, any-of, Kong files -----------------------------------------------------------

def test_two_workers(stack):
    gw = start(stack, workers=2)
    for i in range(20):
        assert_consumer(echoed(get(gw, "/b/%d" % i, headers=auth("alice", ALICE_PW))), "alice")
        assert_denied(get(gw, "/b/%d" % i, headers=auth("bob", WRONG_PW)))
    check_alive(gw)


def test_any_of_with_key_auth(stack):
    """key-auth (1250) and basic-auth (1100) on one route: either credential is enough; with
    none, the first failure (key-auth's) is the answer."""
    consumers = consumers_plain()
    consumers[1]["keyauth_credentials"] = [{"key": "any-of-key-5Sd2"}]
    gw = start(stack, consumers=consumers,
               plugins=[{"name": "basic-auth"}, {"name": "key-auth"}])
    assert_consumer(echoed(get(gw, headers=[("apikey", "any-of-key-5Sd2")])), "bob")
    assert_consumer(echoed(get(gw, headers=auth("alice", ALICE_PW))), "alice")
    r = get(gw)
    doc = assert_json_error(r, 401)
    assert doc["message"] == "No API key found in request", doc
    assert r.header_all("www-authenticate") == ['Key realm="turnpike"'], r
    # a wrong key with right basic credentials: basic-auth rescues the request
    assert_consumer(echoed(get(gw, headers=[("apikey", "nope")] + auth("alice", ALICE_PW))),
                    "alice")


KONG_FILE = """_format_version: "3.0"
listen: ["127.0.0.1:%(port)d"]
workers: 1
access_log: %(access)s
error_log: %(error)s
security_log: %(security)s
services:
  - name: billing
    url: %(url)s
    routes:
      - name: billing-route
        paths: [/b]
plugins:
  - name: basic-auth
    route: billing-route
    enabled: true
    protocols: [grpc, grpcs, http, https, ws, wss]
    config:
      anonymous: null
      hide_credentials: false
      realm: service
consumers:
  - username: alice
    custom_id: c-alice
    basicauth_credentials:
      - username: alice
        password: %(password)s
"""


def test_kong_declarative_file_loads(stack):
    be = stack.backend("echo")
    gw = stack.gateway([service("s", be.url, [route("r", ["/x"])])], start=False)
    gw.write_text(KONG_FILE % {"port": gw.port, "access": json.dumps(gw.access_log),
                               "error": json.dumps(gw.error_log),
                               "security": json.dumps(gw.security_log), "url": be.url,
                               "password": json.dumps(ALICE_PW)})
    gw.start()
    assert_consumer(echoed(get(gw, headers=auth("alice", ALICE_PW))), "alice", "c-alice")
    assert_denied(get(gw), "Unauthorized")
