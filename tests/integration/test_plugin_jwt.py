"""jwt plugin (docs/plugins/jwt.md): signed tokens from consumers' jwt_secrets, static keys,
JWK Set files and JWK Set URLs; every algorithm family; the RFC 7515 A.1-A.3 example tokens;
cases B26, B27, B28, B30, B31, B32 of ../shared/cases/CASES.md; token locations, consumer
headers, anonymous, the security log, Kong's fields; JWKS fetching, rotation, rate limiting of
refetches, unreachable and slow servers, https with a private CA; the verification cache
(verify_cache_size): claims checked on every hit, entries bound to the exact key across
reloads and JWK Set rotations, and the cache turned off."""

import base64
import datetime
import hashlib
import hmac
import ipaddress
import json
import os
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt as pyjwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from conftest import check_config, dead_port, echoed, route, service, upstream_headers
from rawhttp import assert_json_error, request

HS_SECRET = "user1-hs256-secret-0123456789abcdef"
K1 = "static-key-one-0123456789abcdefghij"
K2 = "static-key-two-0123456789abcdefghij"
REALM = 'Bearer realm="turnpike"'
INVALID = 'Bearer realm="turnpike", error="invalid_token"'
LONG_LEEWAY = 2000000000  # lets the 2011 RFC example tokens past exp: their signature is tested

# ---- key material ----------------------------------------------------------------------------

RSA_KEY = rsa.generate_private_key(65537, 2048)
EC_KEYS = {"ES256": ec.generate_private_key(ec.SECP256R1()),
           "ES384": ec.generate_private_key(ec.SECP384R1()),
           "ES512": ec.generate_private_key(ec.SECP521R1())}
ED_KEY = ed25519.Ed25519PrivateKey.generate()
ALGS = ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
        "ES256", "ES384", "ES512", "EdDSA"]


def pem(private_key):
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def signing_key(alg):
    if alg.startswith("HS"):
        return HS_SECRET
    if alg[:2] in ("RS", "PS"):
        return RSA_KEY
    if alg.startswith("ES"):
        return EC_KEYS[alg]
    return ED_KEY


def public_pem(alg):
    return pem(signing_key(alg))


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def d64(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


# RFC 7515 Appendix A (A.1 = RFC 7519 §3.1), exactly as published
A_PAYLOAD = ("eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19y"
             "b290Ijp0cnVlfQ")
A1_TOKEN = ("eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9." + A_PAYLOAD +
            ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
A1_KEY = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"
A2_TOKEN = (
    "eyJhbGciOiJSUzI1NiJ9." + A_PAYLOAD +
    ".cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2"
    "Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQ"
    "BMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6Ie"
    "YI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw")
A2_JWK = {"kty": "RSA", "e": "AQAB", "n": (
    "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0B"
    "m4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5"
    "z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7"
    "aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ")}
A3_TOKEN = ("eyJhbGciOiJFUzI1NiJ9." + A_PAYLOAD +
            ".DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6N"
            "U1Q")
A3_JWK = {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
          "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}


# ---- tokens ----------------------------------------------------------------------------------

def now():
    return time.time()


def hs(payload, key=HS_SECRET, headers=None, alg="HS256"):
    return pyjwt.encode(payload, key, algorithm=alg, headers=headers)


def raw(header, payload, key=HS_SECRET, sig=None, digest=hashlib.sha256):
    """A compact token from exact JSON texts (str) or objects; HMAC-signed unless sig given."""
    h = header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))
    p = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    si = b64(h.encode()) + "." + b64(p.encode())
    if sig is None:
        k = key if isinstance(key, bytes) else key.encode()
        sig = b64(hmac.new(k, si.encode(), digest).digest())
    return si + "." + sig


def random_sig(n=43):
    return b64(os.urandom(32))[:n]


def bearer(tok):
    return [("Authorization", "Bearer " + tok)]


# ---- requests --------------------------------------------------------------------------------

def get(gw, target, headers=None, method="GET"):
    return request(gw.port, method, target, headers=headers)


def status(gw, target, tok):
    return get(gw, target, bearer(tok)).status


def assert_denied(resp, message=None, challenge=INVALID):
    doc = assert_json_error(resp, 401)
    if message is not None:
        assert doc["message"] == message, doc
    assert resp.header_all("www-authenticate") == [challenge], resp
    return doc


def assert_user(resp, username):
    doc = echoed(resp)
    assert upstream_headers(doc, "x-consumer-username") == [username], doc["headers"]
    return doc


# ---- the shared gateway ----------------------------------------------------------------------

def jwt_plugin(**config):
    return [{"name": "jwt", "config": config}]


CONSUMERS = [
    {"username": "user1", "custom_id": "c-user1", "groups": ["staff"],
     "jwt_secrets": [{"id": "cred-user1", "key": "user1", "secret": HS_SECRET}]},
    {"username": "multi",
     "jwt_secrets": [{"key": "alg-" + a, "algorithm": a,
                      **({"secret": HS_SECRET} if a.startswith("HS")
                         else {"rsa_public_key": public_pem(a)})} for a in ALGS]},
    {"username": "joe", "jwt_secrets": [{"key": "joe", "secret": A1_KEY}]},
    {"username": "guest", "custom_id": "c-guest"},
]


@pytest.fixture(scope="module")
def main(mstack, tmp_path_factory):
    d = tmp_path_factory.mktemp("jwks")
    rfc_jwks = d / "rfc.json"
    rfc_jwks.write_text(json.dumps({"keys": [A2_JWK, A3_JWK]}))
    static = [{"kid": "k1", "algorithm": "HS256", "secret": K1},
              {"kid": "k2", "algorithm": "HS256", "secret": K2}]
    rsa_key = [{"kid": "rk", "public_key": pem(RSA_KEY)}]
    sub = {"key_claim_name": "sub"}
    routes = [
        route("hs", ["/hs"], plugins=jwt_plugin(**sub)),
        route("l30", ["/l30"], plugins=jwt_plugin(leeway=30, **sub)),
        route("l0", ["/l0"], plugins=jwt_plugin(leeway=0, **sub)),
        route("reqexp", ["/reqexp"], plugins=jwt_plugin(require_exp=True, **sub)),
        route("life", ["/life"], plugins=jwt_plugin(max_lifetime=3600, **sub)),
        route("kong", ["/kong"], plugins=jwt_plugin(claims_to_verify=["exp", "nbf"], **sub)),
        route("maxexp", ["/maxexp"], plugins=jwt_plugin(claims_to_verify=["exp"],
                                                         maximum_expiration=600, **sub)),
        route("where", ["/where"], plugins=jwt_plugin(
            uri_param_names=["token"], cookie_names=["jwt_cookie"],
            header_names=["authorization", "x-token"], **sub)),
        route("alg", ["/alg"], plugins=jwt_plugin()),
        route("rfc1", ["/rfc1"], plugins=jwt_plugin(secret_is_base64=True, leeway=LONG_LEEWAY)),
        route("rfc1strict", ["/rfc1strict"], plugins=jwt_plugin(secret_is_base64=True)),
        route("rfcfile", ["/rfcfile"], plugins=jwt_plugin(
            jwks_file=str(rfc_jwks), key_claim_name="nokey", leeway=LONG_LEEWAY)),
        route("b32", ["/b32"], plugins=jwt_plugin(keys=static)),
        route("single", ["/single"], plugins=jwt_plugin(keys=static[:1])),
        route("policy", ["/policy"], plugins=jwt_plugin(
            keys=static[:1], issuer=["https://idp.test"], audience=["api"],
            required_claims=["scope"], consumer_claim="sub")),
        route("unpinned", ["/unpinned"], plugins=jwt_plugin(keys=rsa_key)),
        route("psonly", ["/psonly"], plugins=jwt_plugin(keys=rsa_key, algorithms=["PS256"])),
        route("anon", ["/anon"], plugins=jwt_plugin(anonymous="guest", **sub)),
        route("pre", ["/pre"], plugins=jwt_plugin(run_on_preflight=False, **sub)),
        route("realm", ["/realm"], plugins=jwt_plugin(realm="api", **sub)),
    ]
    be = mstack.backend("echo")
    return mstack.gateway([service("s", be.url, routes)], extra={"consumers": CONSUMERS})


# ---- basics ----------------------------------------------------------------------------------

def test_valid_token_authenticates_with_consumer_headers(main):
    tok = hs({"sub": "user1", "exp": now() + 300})
    spoof = [("X-Consumer-Username", "admin"), ("X_Consumer_Username", "admin")]
    doc = assert_user(get(main, "/hs/x", bearer(tok) + spoof), "user1")
    assert upstream_headers(doc, "x-consumer-custom-id") == ["c-user1"]
    assert upstream_headers(doc, "x-credential-identifier") == ["cred-user1"]
    assert upstream_headers(doc, "x-consumer-groups") == ["staff"]
    assert len(upstream_headers(doc, "x-consumer-id")) == 1
    assert upstream_headers(doc, "x-anonymous-consumer") == []
    assert "admin" not in [v for _, v in doc["headers"]]


def test_missing_token_gets_challenge_without_error(main):
    assert_denied(get(main, "/hs/x"), "Unauthorized", challenge=REALM)
    # another scheme is no bearer token
    assert_denied(get(main, "/hs/x", [("Authorization", "Basic dXNlcjE6cA==")]),
                  "Unauthorized", challenge=REALM)
    resp = get(main, "/realm/x")
    assert_denied(resp, "Unauthorized", challenge='Bearer realm="api"')
    resp = get(main, "/realm/x", bearer("a.b.c"))
    assert_denied(resp, "Bad token", challenge='Bearer realm="api", error="invalid_token"')


def test_bad_signature_and_unknown_key(main):
    tok = hs({"sub": "user1", "exp": now() + 300})
    forged = tok[:-4] + ("AAAA" if tok[-4:] != "AAAA" else "BBBA")
    assert_denied(get(main, "/hs/x", bearer(forged)), "Invalid signature")
    assert_denied(get(main, "/hs/x", bearer(hs({"sub": "user1"}, key="wrong-secret"))),
                  "Invalid signature")
    assert_denied(get(main, "/hs/x", bearer(hs({"sub": "nobody"}))),
                  "No credentials found for given 'sub'")
    assert_denied(get(main, "/hs/x", bearer(hs({"iss": "user1"}))),
                  "No mandatory 'sub' in claims")
    assert_denied(get(main, "/hs/x", bearer(hs({"sub": 5}))), "Invalid 'sub' in claims")
    assert_denied(get(main, "/hs/x", bearer("not-a-token")), "Bad token")


def test_bearer_scheme_and_locations(main):
    tok = hs({"sub": "user1", "exp": now() + 300})
    for value in ("bearer " + tok, "BEARER \t" + tok, "  Bearer " + tok + "  "):
        assert_user(get(main, "/hs/x", [("Authorization", value)]), "user1")
    # Kong's default uri_param_names: jwt
    assert_user(get(main, "/hs/x?jwt=" + tok), "user1")
    # configured places: query `token`, cookie `jwt_cookie`, header x-token
    assert_user(get(main, "/where/x?a=1&token=" + tok), "user1")
    assert_user(get(main, "/where/x", [("Cookie", "a=b; jwt_cookie=" + tok)]), "user1")
    assert_user(get(main, "/where/x", [("X-Token", "Bearer " + tok)]), "user1")
    assert_denied(get(main, "/where/x?jwt=" + tok), "Unauthorized", challenge=REALM)
    # the same token twice is fine; two different tokens are ambiguous (Kong)
    assert_user(get(main, "/where/x?token=" + tok, bearer(tok)), "user1")
    other = hs({"sub": "user1", "exp": now() + 301})
    assert_denied(get(main, "/where/x?token=" + other, bearer(tok)), "Multiple tokens provided")
    assert_denied(get(main, "/hs/x", bearer(tok) + bearer(other)), "Multiple tokens provided")


def test_anonymous_and_preflight(main):
    doc = assert_user(get(main, "/anon/x"), "guest")
    assert upstream_headers(doc, "x-anonymous-consumer") == ["true"]
    doc = assert_user(get(main, "/anon/x", bearer(hs({"sub": "user1"}, key="bad"))), "guest")
    assert upstream_headers(doc, "x-anonymous-consumer") == ["true"]
    doc = assert_user(get(main, "/anon/x", bearer(hs({"sub": "user1"}))), "user1")
    assert upstream_headers(doc, "x-anonymous-consumer") == []
    assert get(main, "/pre/x", method="OPTIONS").status == 200
    assert_denied(get(main, "/pre/x"), "Unauthorized", challenge=REALM)
    assert_denied(get(main, "/hs/x", method="OPTIONS"), "Unauthorized", challenge=REALM)


def test_preflight_method_is_case_sensitive(main):
    # "options" is another method than OPTIONS (RFC 9110 §9.1), as key-auth has it
    assert_denied(get(main, "/pre/x", method="options"), "Unauthorized", challenge=REALM)
    assert_denied(get(main, "/pre/x", method="Options"), "Unauthorized", challenge=REALM)
    assert get(main, "/pre/x", method="OPTIONS").status == 200


def test_security_log_has_fixed_reasons_never_the_token(main):
    tok = raw({"alg": "HS256", "enc": "A128CBC-HS256"}, {"sub": "user1"})
    marker = tok.split(".")[1]
    resp = get(main, "/hs/x", bearer(tok))
    assert_denied(resp, "Bad token")
    rid = resp.header("x-request-id")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = [l for l in main.security_lines() if l["request_id"] == rid]
        if lines:
            break
        time.sleep(0.05)
    assert len(lines) == 1, lines
    line = lines[0]
    assert line["plugin"] == "jwt" and line["status"] == 401 and line["route"] == "hs"
    assert line["reason"] == "JWE header (enc/zip) in a JWS"
    assert marker not in main.read(main.security_log).decode()


# ---- every algorithm family ------------------------------------------------------------------

@pytest.mark.parametrize("alg", ALGS)
def test_every_algorithm(main, alg):
    tok = pyjwt.encode({"iss": "alg-" + alg, "exp": now() + 300}, signing_key(alg), algorithm=alg)
    assert_user(get(main, "/alg/x", bearer(tok)), "multi")
    # the same key under another algorithm of its family is refused: alg is pinned per key
    other = {"HS256": "HS384", "RS256": "PS256", "PS256": "RS256", "ES256": "ES256"}.get(alg)
    if other and other != alg:
        tok = pyjwt.encode({"iss": "alg-" + alg}, signing_key(other), algorithm=other)
        assert_denied(get(main, "/alg/x", bearer(tok)), "Invalid algorithm")


def test_algorithms_allow_list(main):
    rs = pyjwt.encode({"sub": "x"}, RSA_KEY, algorithm="RS256", headers={"kid": "rk"})
    ps = pyjwt.encode({"sub": "x"}, RSA_KEY, algorithm="PS256", headers={"kid": "rk"})
    # a key without its own algorithm: its type's usual one, RS256, unless `algorithms` says
    assert get(main, "/unpinned/x", bearer(rs)).status == 200
    assert_denied(get(main, "/unpinned/x", bearer(ps)), "Invalid algorithm")
    assert get(main, "/psonly/x", bearer(ps)).status == 200
    assert_denied(get(main, "/psonly/x", bearer(rs)), "Invalid algorithm")


# ---- RFC 7515 Appendix A / RFC 7519 §3.1 ------------------------------------------------------

def test_rfc7515_a1_hs256_through_the_gateway(main):
    # iss "joe" -> joe's secret, the A.1 key given in base64url (secret_is_base64)
    doc = assert_user(get(main, "/rfc1/x", bearer(A1_TOKEN)), "joe")
    assert upstream_headers(doc, "authorization") == ["Bearer " + A1_TOKEN]
    tampered = A1_TOKEN[:-3] + ("AAA" if not A1_TOKEN.endswith("AAA") else "BBA")
    assert_denied(get(main, "/rfc1/x", bearer(tampered)))
    # without the leeway the 2011 token is expired: exp is checked after the signature
    assert_denied(get(main, "/rfc1strict/x", bearer(A1_TOKEN)), "token expired")
    # the secret read as plain text (no secret_is_base64) does not verify it
    assert_denied(get(main, "/alg/x", bearer(A1_TOKEN)), "Invalid signature")


def test_rfc7515_a2_a3_from_a_jwks_file(main):
    assert get(main, "/rfcfile/x", bearer(A2_TOKEN)).status == 200
    assert get(main, "/rfcfile/x", bearer(A3_TOKEN)).status == 200
    # A.1 (HS256) has no key there: an RSA or EC public key is never an HMAC secret
    assert_denied(get(main, "/rfcfile/x", bearer(A1_TOKEN)), "No key found for the token")
    bad = A2_TOKEN[:-6] + ("AAAAAA" if not A2_TOKEN.endswith("AAAAAA") else "BBBBBA")
    assert_denied(get(main, "/rfcfile/x", bearer(bad)), "Invalid signature")
    # the A.5 unsecured token ({"alg":"none"}) with the same payload
    assert_denied(get(main, "/rfcfile/x", bearer("eyJhbGciOiJub25lIn0." + A_PAYLOAD + ".")),
                  "Bad token")


# ---- B26: enc / no alg / none / JWE ----------------------------------------------------------

def test_b26_signature_check_never_skipped(main):
    exp = int(now()) + 300
    payload = {"sub": "user1", "exp": exp}
    good = raw({"alg": "HS256", "typ": "JWT"}, payload)
    assert status(main, "/hs/x", good) == 200  # the route works with a proper token
    enc_header = "eyJhbGciOiJIUzI1NiIsImVuYyI6IkExMjhDQkMtSFMyNTYifQ"
    assert d64(enc_header) == b'{"alg":"HS256","enc":"A128CBC-HS256"}'
    p = b64(json.dumps(payload).encode())
    si = enc_header + "." + p
    tokens = [
        si + "." + random_sig(),                                                  # 1
        si + "." + b64(hmac.new(HS_SECRET.encode(), si.encode(), hashlib.sha256).digest()),
        raw({"typ": "JWT"}, payload, sig=random_sig()),                            # 2
        raw({"typ": "JWT"}, payload),
        raw({"alg": "none", "typ": "JWT"}, payload, sig=""),                       # 3
        raw({"alg": "None", "typ": "JWT"}, payload, sig=""),
        raw({"alg": "NONE", "typ": "JWT"}, payload, sig=""),
        raw({"alg": "none", "typ": "JWT"}, payload, sig=random_sig()),
        raw({"alg": "none", "typ": "JWT"}, payload),
        # 4: a JWE compact serialization (five segments)
        "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ." + random_sig(342) + "." +
        random_sig(16) + "." + p + "." + random_sig(22),
        # crit naming an extension we do not understand (RFC 7515 §4.1.11), correctly signed
        raw({"alg": "HS256", "crit": ["exp"], "exp": exp}, payload),
        raw({"alg": "HS256", "zip": "DEF"}, payload),
        raw('{"alg":"HS256","alg":"none"}', payload),
    ]
    for i, tok in enumerate(tokens):
        resp = get(main, "/hs/x", bearer(tok))
        assert resp.status == 401, (i, tok, resp)
        assert_denied(resp, "Bad token")


# ---- B27: HS256 signed with the RS256 public key ---------------------------------------------

def test_b27_algorithm_confusion(stack):
    be = stack.backend("echo")
    key_pem = pem(RSA_KEY)
    consumers = [{"username": "user1", "jwt_secrets": [
        {"key": "user1", "algorithm": "RS256", "rsa_public_key": key_pem}]}]
    gw = stack.gateway([service("s", be.url, [route("r", ["/r"], plugins=jwt_plugin(
        key_claim_name="sub"))])], extra={"consumers": consumers})
    payload = {"sub": "user1", "exp": int(now()) + 300}
    assert status(gw, "/r/x", pyjwt.encode(payload, RSA_KEY, algorithm="RS256")) == 200
    for secret in (key_pem, key_pem.rstrip("\n"), key_pem.encode().hex()):
        forged = raw({"alg": "HS256", "typ": "JWT"}, payload, key=secret)
        assert_denied(get(gw, "/r/x", bearer(forged)), "Invalid algorithm")
    # another algorithm of the same key type is refused as well
    ps = pyjwt.encode(payload, RSA_KEY, algorithm="PS256")
    assert_denied(get(gw, "/r/x", bearer(ps)), "Invalid algorithm")


# ---- B28: NumericDate types ------------------------------------------------------------------

def test_b28_numeric_date_types(main):
    t = now()
    assert status(main, "/hs/x", raw({"alg": "HS256"}, {"sub": "user1", "exp": t + 300.5})) == 200
    resp = get(main, "/hs/x", bearer(raw({"alg": "HS256"}, {"sub": "user1", "exp": t - 10.25})))
    assert_denied(resp, "token expired")
    for bad in ('"9999999999"', "true", "null", "{}"):
        tok = raw({"alg": "HS256"}, '{"sub":"user1","exp":%s}' % bad)
        assert_denied(get(main, "/hs/x", bearer(tok)), "exp is not a number")
    tok = raw({"alg": "HS256"}, '{"sub":"user1","nbf":%.1f}' % (t + 600.0))
    assert_denied(get(main, "/hs/x", bearer(tok)), "token not valid yet (nbf)")
    tok = raw({"alg": "HS256"}, '{"sub":"user1","nbf":"0"}')
    assert_denied(get(main, "/hs/x", bearer(tok)), "nbf is not a number")
    tok = raw({"alg": "HS256"}, '{"sub":"user1","exp":1e10}')
    assert status(main, "/hs/x", tok) == 200
    # Kong's claims_to_verify uses the same checks
    tok = raw({"alg": "HS256"}, '{"sub":"user1","exp":"9999999999","nbf":0}')
    assert_denied(get(main, "/kong/x", bearer(tok)), "exp is not a number")


# ---- B30: no exp -----------------------------------------------------------------------------

def test_b30_token_without_exp_follows_config(main):
    tok = raw({"alg": "HS256"}, {"sub": "user1"})
    assert status(main, "/hs/x", tok) == 200  # default: exp and nbf are optional
    assert_denied(get(main, "/reqexp/x", bearer(tok)), "token has no exp")
    assert_denied(get(main, "/life/x", bearer(tok)), "token has no exp")
    long_lived = raw({"alg": "HS256"}, {"sub": "user1", "exp": int(now()) + 86400})
    assert_denied(get(main, "/life/x", bearer(long_lived)), "token lifetime exceeds max_lifetime")
    assert status(main, "/life/x", raw({"alg": "HS256"}, {"sub": "user1",
                                                           "exp": int(now()) + 600})) == 200
    # Kong: claims_to_verify lists claims that must be there
    assert_denied(get(main, "/kong/x", bearer(tok)), "token has no exp")
    ok = raw({"alg": "HS256"}, {"sub": "user1", "exp": int(now()) + 60, "nbf": int(now()) - 5})
    assert status(main, "/kong/x", ok) == 200
    far = raw({"alg": "HS256"}, {"sub": "user1", "exp": int(now()) + 3600})
    assert_denied(get(main, "/maxexp/x", bearer(far)), "exp exceeds maximum_expiration")
    near = raw({"alg": "HS256"}, {"sub": "user1", "exp": int(now()) + 300})
    assert status(main, "/maxexp/x", near) == 200


# ---- B31: clock skew -------------------------------------------------------------------------

def test_b31_leeway(main):
    t = int(now())
    first = raw({"alg": "HS256"}, {"sub": "user1", "iat": t + 1, "nbf": t + 1, "exp": t + 300})
    assert status(main, "/l30/x", first) == 200
    cases = [({"nbf": t + 20}, 200), ({"nbf": t + 120}, 401), ({"exp": t - 20}, 200),
             ({"exp": t - 120}, 401), ({"iat": t + 20}, 200)]
    for claims, want in cases:
        tok = raw({"alg": "HS256"}, dict({"sub": "user1"}, **claims))
        assert status(main, "/l30/x", tok) == want, claims
    assert_denied(get(main, "/l0/x", bearer(first)), "token not valid yet (nbf)")
    assert status(main, "/l0/x", raw({"alg": "HS256"}, {"sub": "user1", "nbf": t - 1})) == 200


# ---- B32: kid is an opaque lookup key --------------------------------------------------------

def test_b32_kid_never_a_path_or_url(main):
    def tok(kid, key):
        header = {"alg": "HS256"} if kid is None else {"alg": "HS256", "kid": kid}
        return raw(header, {"sub": "user1", "exp": int(now()) + 300}, key=key)
    assert status(main, "/b32/x", tok("k1", K1)) == 200
    assert status(main, "/b32/x", tok("k2", K2)) == 200
    assert_denied(get(main, "/b32/x", bearer(tok("k1", K2))), "Invalid signature")
    for kid, key in [("../../../../dev/null", b""), ("k1' OR '1'='1", K1),
                     ("https://example.net/k", K1), ("/dev/null", b""), ("K1", K1)]:
        assert_denied(get(main, "/b32/x", bearer(tok(kid, key))), "No key found for the token")
    # no kid while two keys exist: refused, even signed with one of them
    assert_denied(get(main, "/b32/x", bearer(tok(None, K1))), "No key found for the token")
    # with a single key, a token without kid uses it
    assert status(main, "/single/x", tok(None, K1)) == 200
    assert_denied(get(main, "/single/x", bearer(tok(None, K2))), "Invalid signature")


# ---- claim policies, consumer mapping --------------------------------------------------------

def test_issuer_audience_required_and_consumer_claim(main):
    base = {"iss": "https://idp.test", "aud": ["web", "api"], "scope": "read", "sub": "user1",
            "exp": int(now()) + 300}

    def tok(**changes):
        claims = dict(base, **changes)
        for k in [k for k, v in claims.items() if v is None]:
            del claims[k]
        return raw({"alg": "HS256", "kid": "k1"}, claims, key=K1)
    doc = assert_user(get(main, "/policy/x", bearer(tok())), "user1")
    assert upstream_headers(doc, "x-credential-identifier") == []
    assert_denied(get(main, "/policy/x", bearer(tok(iss="https://evil.test"))),
                  "issuer not accepted")
    assert_denied(get(main, "/policy/x", bearer(tok(aud="web"))), "audience not accepted")
    assert_denied(get(main, "/policy/x", bearer(tok(aud=None))), "audience not accepted")
    assert_denied(get(main, "/policy/x", bearer(tok(scope=None))), "a required claim is missing")
    assert_denied(get(main, "/policy/x", bearer(tok(sub="nobody"))),
                  "No consumer found for the token")
    assert status(main, "/policy/x", tok(sub="guest")) == 200


def test_key_set_token_without_consumer(main):
    doc = echoed(get(main, "/single/x", bearer(raw({"alg": "HS256"}, {"sub": "someone"},
                                                      key=K1))))
    for h in ("x-consumer-id", "x-consumer-username", "x-credential-identifier",
              "x-anonymous-consumer"):
        assert upstream_headers(doc, h) == [], h


def test_claims_reach_later_plugins(stack, tmp_path):
    """abac reads jwt.claims.* set by this plugin (skipped where abac is not built in)."""
    be = stack.backend("echo")
    plugins = jwt_plugin(keys=[{"kid": "k1", "algorithm": "HS256", "secret": K1}]) + [
        {"name": "abac", "config": {"allow": 'jwt.claims.role == "admin"'}}]
    gw = stack.gateway([service("s", be.url, [route("r", ["/r"], plugins=plugins)])],
                       start=False)
    with open(gw.config_path) as f:
        rc, err = check_config(tmp_path, f.read())
    if rc != 0 and "abac" in err:
        pytest.skip("abac plugin not registered: %s" % err[-200:])
    gw.start()
    assert status(gw, "/r/x", raw({"alg": "HS256"}, {"role": "admin"}, key=K1)) == 200
    assert status(gw, "/r/x", raw({"alg": "HS256"}, {"role": "user"}, key=K1)) == 403


# ---- config ----------------------------------------------------------------------------------

def check_jwt(tmp_path, config, consumers=None):
    """check_config on a route with jwt configured with `config` (a dict)."""
    doc = {"listen": ["127.0.0.1:1"], "services": [{"name": "s", "url": "http://127.0.0.1:9/",
           "routes": [{"name": "r", "paths": ["/k"],
                       "plugins": [{"name": "jwt", "config": config}]}]}]}
    if consumers:
        doc["consumers"] = consumers
    return check_config(tmp_path, json.dumps(doc))


@pytest.mark.parametrize("config, words", [
    ({"claims_to_verify": ["iat"]}, "claims_to_verify"),
    ({"algorithms": ["none"]}, "algorithms"),
    ({"algorithms": []}, "algorithms"),
    ({"keys": [{"kid": "a", "secret": "x", "public_key": "y"}]}, "keys[0]"),
    ({"keys": [{"kid": "a", "secret": "x", "algorithm": "RS256"}]}, "keys[0]"),
    ({"keys": [{"kid": "a", "public_key": "not a pem"}]}, "keys[0]"),
    ({"keys": [{"kid": "a", "secret": "x"}, {"kid": "a", "secret": "y"}]}, "keys[1]"),
    ({"jwks_uri": "ftp://idp/keys"}, "jwks_uri"),
    ({"jwks_file": "/nonexistent/jwks.json"}, "jwks_file"),
    ({"anonymous": "nobody"}, "anonymous"),
    ({"realm": 'a"b'}, "realm"),
    ({"consumer_claim": "sub"}, "consumer_claim"),
    ({"maximum_expiration": 31536001}, "maximum_expiration"),
    ({"key_claim_name": ""}, "key_claim_name"),
    ({"verify_cache_size": 1048577}, "verify_cache_size"),
])
def test_config_errors(tmp_path, config, words):
    rc, err = check_jwt(tmp_path, config)
    assert rc == 1, err
    assert words in err, err
    assert "check.yaml:" in err, err


def test_consumer_key_errors(tmp_path):
    bad_pem = [{"username": "u", "jwt_secrets": [{"key": "u", "algorithm": "RS256",
                                                  "rsa_public_key": "garbage"}]}]
    rc, err = check_jwt(tmp_path, {}, bad_pem)
    assert rc == 1 and "garbage" not in err, err
    assert "not a PEM" in err, err
    ec_as_rsa = [{"username": "u", "jwt_secrets": [{"key": "u", "algorithm": "RS256",
                                                    "rsa_public_key": public_pem("ES256")}]}]
    rc, err = check_jwt(tmp_path, {}, ec_as_rsa)
    assert rc == 1 and "does not suit" in err, err
    assert check_jwt(tmp_path, {}, CONSUMERS)[0] == 0


KONG_PLUGIN = """  - name: jwt
    service: s
    config:
      anonymous: null
      claims_to_verify: null
      cookie_names: []
      header_names:
      - authorization
      key_claim_name: iss
      maximum_expiration: 0
      realm: null
      run_on_preflight: true
      secret_is_base64: false
      uri_param_names:
      - jwt
    enabled: true
    protocols: [grpc, grpcs, http, https]
"""


def test_kong_declarative_plugin_entry_loads(tmp_path):
    rc, err = check_config(tmp_path, 'listen: ["127.0.0.1:1"]\nservices:\n  - name: s\n    url: '
                           'http://127.0.0.1:9/\n    routes:\n      - name: r\n        paths: '
                           '[/k]\nplugins:\n' + KONG_PLUGIN)
    assert rc == 0, err


# ---- JWK Set URLs ----------------------------------------------------------------------------

class JwksServer:
    """Serves the JWK Set `doc` (mutable) on every GET; counts requests; optional delay, TLS."""

    def __init__(self, doc, delay=0.0, tls_context=None):
        self.doc = doc
        self.delay = delay
        self.hits = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                server.hits += 1
                if server.delay:
                    time.sleep(server.delay)
                body = json.dumps(server.doc).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/jwk-set+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.srv.daemon_threads = True
        if tls_context:
            self.srv.socket = tls_context.wrap_socket(self.srv.socket, server_side=True)
        self.scheme = "https" if tls_context else "http"
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "%s://127.0.0.1:%d/.well-known/jwks.json" % (self.scheme, self.srv.server_port)

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def jwks_servers():
    servers = []
    yield servers
    for s in servers:
        s.close()


def jwk(key, kid, alg=None):
    if isinstance(key, rsa.RSAPrivateKey):
        d = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        d = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    else:
        d = json.loads(OKPAlgorithm.to_jwk(key.public_key()))
    d["kid"] = kid
    if alg:
        d["alg"] = alg
    return d


def jwks_gateway(stack, url, consumers=None, **config):
    be = stack.backend("echo")
    plugins = jwt_plugin(jwks_uri=url, **config)
    return stack.gateway([service("s", be.url, [route("r", ["/r"], plugins=plugins)])],
                         extra={"consumers": consumers or [{"username": "user1"}]})


def rs(kid, key=RSA_KEY, alg="RS256", **claims):
    claims.setdefault("exp", int(now()) + 300)
    return pyjwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def test_jwks_fetch_rotation_and_unknown_kid(stack, jwks_servers):
    old_key, new_key = RSA_KEY, rsa.generate_private_key(65537, 2048)
    srv = JwksServer({"keys": [jwk(old_key, "old")]})
    jwks_servers.append(srv)
    gw = jwks_gateway(stack, srv.url, jwks_min_refresh=0)
    assert srv.hits == 0  # fetched on demand, not at start
    doc = echoed(get(gw, "/r/x", bearer(rs("old", sub="user1"))))
    assert upstream_headers(doc, "x-consumer-username") == []  # no consumer_claim: claims only
    assert srv.hits == 1
    assert status(gw, "/r/x", rs("old")) == 200
    assert srv.hits == 1  # cached
    # rotation: the server now has only the new key; a token with the new kid works at once
    srv.doc = {"keys": [jwk(new_key, "new")]}
    assert status(gw, "/r/x", rs("new", key=new_key)) == 200
    assert srv.hits == 2
    # the old key is gone from the refetched set
    assert_denied(get(gw, "/r/x", bearer(rs("old"))), "No key found for the token")
    assert_denied(get(gw, "/r/x", bearer(rs("nope", key=new_key))), "No key found for the token")
    # a known kid with a bad signature, and the new kid signed by the old key
    assert_denied(get(gw, "/r/x", bearer(rs("new", key=old_key))), "Invalid signature")
    lines = gw.security_lines(3)
    assert {"unknown kid", "invalid signature"} <= {l["reason"] for l in lines}, lines


def test_jwks_refetch_is_rate_limited(stack, jwks_servers):
    srv = JwksServer({"keys": [jwk(RSA_KEY, "a")]})
    jwks_servers.append(srv)
    gw = jwks_gateway(stack, srv.url, jwks_min_refresh=30)
    assert status(gw, "/r/x", rs("a")) == 200
    for i in range(20):  # a flood of made-up kids costs no fetch within jwks_min_refresh
        t0 = time.monotonic()
        assert_denied(get(gw, "/r/x", bearer(rs("made-up-%d" % i))), "No key found for the token")
        assert time.monotonic() - t0 < 1.0
    assert srv.hits == 1


def test_jwks_periodic_refresh_drops_removed_keys(stack, jwks_servers):
    srv = JwksServer({"keys": [jwk(RSA_KEY, "a")]})
    jwks_servers.append(srv)
    gw = jwks_gateway(stack, srv.url, jwks_refresh=1, jwks_min_refresh=1)
    assert status(gw, "/r/x", rs("a")) == 200
    srv.doc = {"keys": []}  # an empty set is not accepted: the old keys stay
    time.sleep(1.2)
    assert status(gw, "/r/x", rs("a")) == 200  # served from the cache, refresh starts
    deadline = time.monotonic() + 5
    while srv.hits < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.hits >= 2
    assert status(gw, "/r/x", rs("a")) == 200
    other = rsa.generate_private_key(65537, 2048)
    srv.doc = {"keys": [jwk(other, "b")]}
    deadline = time.monotonic() + 6
    while status(gw, "/r/x", rs("a")) == 200:
        assert time.monotonic() < deadline, "the removed key was never dropped"
        time.sleep(0.2)
    assert status(gw, "/r/x", rs("b", key=other)) == 200


def test_jwks_concurrent_requests_share_one_fetch(stack, jwks_servers):
    srv = JwksServer({"keys": [jwk(RSA_KEY, "a")]}, delay=0.4)
    jwks_servers.append(srv)
    gw = jwks_gateway(stack, srv.url)
    results = []

    def one():
        results.append(status(gw, "/r/x", rs("a")))
    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [200] * 6
    assert srv.hits == 1


def test_jwks_server_down_fails_fast(stack):
    gw = jwks_gateway(stack, "http://127.0.0.1:%d/jwks" % dead_port())
    t0 = time.monotonic()
    assert_denied(get(gw, "/r/x", bearer(rs("a"))), "No key found for the token")
    assert time.monotonic() - t0 < 2.0
    assert b"fetching JWKS" in gw.read(gw.error_log)


def test_jwks_failure_log_has_no_query(stack):
    # the query of a jwks_uri may carry an API key: the error log names the URL without it
    port = dead_port()
    gw = jwks_gateway(stack, "http://127.0.0.1:%d/keys/jwks?api_key=S3CR3T-jwks" % port)
    assert_denied(get(gw, "/r/x", bearer(rs("a"))), "No key found for the token")
    wait_until(lambda: b"fetching JWKS" in gw.read(gw.error_log), timeout=5.0)
    log = gw.read(gw.error_log)
    assert b"fetching JWKS http://127.0.0.1:%d/keys/jwks failed" % port in log, log
    assert b"S3CR3T" not in log and b"api_key" not in log, log


def test_jwks_server_that_never_answers_times_out(stack):
    sink = socket.socket()
    sink.bind(("127.0.0.1", 0))
    sink.listen(8)  # connections complete in the kernel; nothing is ever read or answered
    try:
        gw = jwks_gateway(stack, "http://127.0.0.1:%d/jwks" % sink.getsockname()[1],
                          jwks_timeout=400)
        t0 = time.monotonic()
        assert_denied(get(gw, "/r/x", bearer(rs("a"))), "No key found for the token")
        elapsed = time.monotonic() - t0
        assert 0.3 <= elapsed < 3.0, elapsed
        # the gateway still serves other requests while a fetch hangs
        assert get(gw, "/r/x").status == 401
    finally:
        sink.close()


def test_jwks_key_types_and_consumer_claim(stack, jwks_servers):
    keys = {"ES256": EC_KEYS["ES256"], "ES384": EC_KEYS["ES384"], "ES512": EC_KEYS["ES512"],
            "EdDSA": ED_KEY, "PS256": RSA_KEY}
    srv = JwksServer({"keys": [jwk(k, "kid-" + a, alg=a) for a, k in keys.items()] +
                      [{"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
                       {"kty": "oct", "kid": "hs", "alg": "HS256", "k": b64(K1.encode())}]})
    jwks_servers.append(srv)
    gw = jwks_gateway(stack, srv.url, consumer_claim="sub",
                      consumers=[{"username": "user1", "custom_id": "c1"}])
    for alg, key in keys.items():
        tok = pyjwt.encode({"sub": "user1"}, key, algorithm=alg, headers={"kid": "kid-" + alg})
        doc = assert_user(get(gw, "/r/x", bearer(tok)), "user1")
        assert upstream_headers(doc, "x-consumer-custom-id") == ["c1"]
    # a JWK's alg pins it: RS256 with the PS256 key is refused
    tok = pyjwt.encode({"sub": "user1"}, RSA_KEY, algorithm="RS256", headers={"kid": "kid-PS256"})
    assert_denied(get(gw, "/r/x", bearer(tok)), "Invalid algorithm")
    # oct keys from a JWK Set work for their HS algorithm
    assert status(gw, "/r/x", raw({"alg": "HS256", "kid": "hs"}, {"sub": "user1"}, key=K1)) == 200
    tok = pyjwt.encode({"sub": "stranger"}, ED_KEY, algorithm="EdDSA", headers={"kid": "kid-EdDSA"})
    assert_denied(get(gw, "/r/x", bearer(tok)), "No consumer found for the token")
    assert srv.hits == 1


def make_ca_and_cert(tmp_path):
    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    start = datetime.datetime.utcnow() - datetime.timedelta(days=1)
    end = start + datetime.timedelta(days=30)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("jwt test CA"))
          .issuer_name(name("jwt test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_path, cert_path, key_path = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert_path), str(key_path))
    return str(ca_path), ctx


def test_jwks_over_https_checks_the_certificate(stack, jwks_servers, tmp_path):
    ca_path, ctx = make_ca_and_cert(tmp_path)
    srv = JwksServer({"keys": [jwk(RSA_KEY, "a")]}, tls_context=ctx)
    jwks_servers.append(srv)
    gw = jwks_gateway(stack, srv.url, jwks_ca_file=ca_path)
    assert status(gw, "/r/x", rs("a")) == 200
    assert srv.hits == 1
    # the same server is not trusted by the system's CAs
    gw2 = jwks_gateway(stack, srv.url)
    t0 = time.monotonic()
    assert_denied(get(gw2, "/r/x", bearer(rs("a"))), "No key found for the token")
    assert time.monotonic() - t0 < 3.0


# ---- the verification cache ------------------------------------------------------------------
# Signatures verified once are not verified again by the same worker (docs/plugins/jwt.md);
# everything else is. These tests reuse a token after it was verified, so its second use is
# a cache hit, and check that every other rule still applies.

RSA_B = rsa.generate_private_key(65537, 2048)


def rsa_consumer(public):
    return [{"username": "rsa-user",
             "jwt_secrets": [{"key": "rsa-user", "algorithm": "RS256", "rsa_public_key": public}]}]


def rsa_tok(key=RSA_KEY, **claims):
    claims.setdefault("iss", "rsa-user")
    return pyjwt.encode(claims, key, algorithm="RS256")


def wait_until(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_cache_hit_still_checks_every_claim(stack):
    be = stack.backend("echo")
    routes = [route("lenient", ["/lenient"], plugins=jwt_plugin(leeway=60)),
              route("strict", ["/strict"], plugins=jwt_plugin()),
              route("l1", ["/l1"], plugins=jwt_plugin(leeway=1)),
              route("aud", ["/aud"], plugins=jwt_plugin(audience=["other"], leeway=60)),
              route("sub", ["/sub"], plugins=jwt_plugin(required_claims=["sub"], leeway=60))]
    gw = stack.gateway([service("s", be.url, routes)],
                       extra={"consumers": rsa_consumer(pem(RSA_KEY))})
    # verified (and cached) on one route; the same worker's other routes still refuse it
    early = rsa_tok(nbf=int(now()) + 30, exp=int(now()) + 300)
    for _ in range(3):
        assert_user(get(gw, "/lenient/x", bearer(early)), "rsa-user")
    assert_denied(get(gw, "/strict/x", bearer(early)), "token not valid yet (nbf)")
    assert_denied(get(gw, "/aud/x", bearer(early)), "audience not accepted")
    assert_denied(get(gw, "/sub/x", bearer(early)), "a required claim is missing")
    # the same signing input with another key's signature is not a hit
    forged = early.rsplit(".", 1)[0] + "." + rsa_tok(RSA_B, nbf=0).rsplit(".", 1)[1]
    assert_denied(get(gw, "/lenient/x", bearer(forged)), "Invalid signature")
    # a cached token that has since expired is refused (exp = now + 2, leeway 1)
    exp = int(now()) + 2
    short = rsa_tok(exp=exp)
    for _ in range(3):
        assert_user(get(gw, "/l1/x", bearer(short)), "rsa-user")
        assert_user(get(gw, "/strict/x", bearer(short)), "rsa-user")
    time.sleep(max(0.0, exp + 1.3 - now()))
    assert_denied(get(gw, "/l1/x", bearer(short)), "token expired")
    assert_denied(get(gw, "/strict/x", bearer(short)), "token expired")
    assert_user(get(gw, "/lenient/x", bearer(short)), "rsa-user")  # within its leeway
    reasons = [l["reason"] for l in gw.security_lines(6)]
    assert reasons.count("token expired") == 2, reasons


def test_cache_bound_to_the_key_across_reloads(stack):
    be = stack.backend("echo")
    services = [service("s", be.url, [route("r", ["/r"], plugins=jwt_plugin())])]
    gw = stack.gateway(services, extra={"consumers": rsa_consumer(pem(RSA_KEY))})
    old, new = rsa_tok(exp=int(now()) + 300), rsa_tok(RSA_B, exp=int(now()) + 300)
    for _ in range(3):
        assert_user(get(gw, "/r/x", bearer(old)), "rsa-user")
    assert_denied(get(gw, "/r/x", bearer(new)), "Invalid signature")
    # the consumer's key changes: the cached verification of `old` no longer counts
    gw.write_config(extra={"consumers": rsa_consumer(pem(RSA_B))})
    gw.reload()
    wait_until(lambda: status(gw, "/r/x", new) == 200)
    for _ in range(2):
        assert_denied(get(gw, "/r/x", bearer(old)), "Invalid signature")
    # and back: the old key is that key again, whatever object holds it now
    gw.write_config(extra={"consumers": rsa_consumer(pem(RSA_KEY))})
    gw.reload()
    wait_until(lambda: status(gw, "/r/x", old) == 200)
    assert_denied(get(gw, "/r/x", bearer(new)), "Invalid signature")


def test_cache_follows_jwks_rotation(stack, jwks_servers):
    other = rsa.generate_private_key(65537, 2048)
    srv = JwksServer({"keys": [jwk(RSA_KEY, "a"), jwk(other, "b")]})
    jwks_servers.append(srv)
    gw = jwks_gateway(stack, srv.url, jwks_min_refresh=0)
    tok_a = rs("a")
    for _ in range(3):
        assert status(gw, "/r/x", tok_a) == 200
    assert srv.hits == 1
    # kid "a" now names another key: the cached token is checked against that one
    srv.doc = {"keys": [jwk(RSA_B, "a"), jwk(other, "b")]}
    assert_denied(get(gw, "/r/x", bearer(rs("unknown-1"))), "No key found for the token")
    assert srv.hits == 2
    assert_denied(get(gw, "/r/x", bearer(tok_a)), "Invalid signature")
    tok_a2 = rs("a", key=RSA_B)
    for _ in range(3):
        assert status(gw, "/r/x", tok_a2) == 200
    # kid "a" is removed: its tokens fail although their verification was cached
    srv.doc = {"keys": [jwk(other, "b")]}
    assert_denied(get(gw, "/r/x", bearer(rs("unknown-2"))), "No key found for the token")
    assert srv.hits == 3
    assert_denied(get(gw, "/r/x", bearer(tok_a2)), "No key found for the token")
    assert_denied(get(gw, "/r/x", bearer(tok_a)), "No key found for the token")
    assert status(gw, "/r/x", rs("b", key=other)) == 200


def test_cache_off_and_small(stack, tmp_path):
    be = stack.backend("echo")
    routes = [route("off", ["/off"], plugins=jwt_plugin(verify_cache_size=0)),
              route("one", ["/one"], plugins=jwt_plugin(verify_cache_size=1)),
              route("big", ["/big"], plugins=jwt_plugin())]
    gw = stack.gateway([service("s", be.url, routes)],
                       extra={"consumers": rsa_consumer(pem(RSA_KEY))})
    toks = [rsa_tok(exp=int(now()) + 300, n=i) for i in range(3)]
    # the worker's cache starts with one entry (each token evicts the previous one), then
    # /big replaces it by a cache of 4096 that /one uses as well
    for _ in range(2):
        for t in toks:
            for path in ("/off/x", "/one/x", "/big/x"):
                assert_user(get(gw, path, bearer(t)), "rsa-user")
    forged = toks[0].rsplit(".", 1)[0] + "." + rsa_tok(RSA_B).rsplit(".", 1)[1]
    for path in ("/off/x", "/one/x", "/big/x"):
        assert_denied(get(gw, path, bearer(forged)), "Invalid signature")
    expired = rsa_tok(exp=int(now()) - 5)
    for path in ("/off/x", "/one/x", "/big/x"):
        assert_denied(get(gw, path, bearer(expired)), "token expired")
    assert check_jwt(tmp_path, {"verify_cache_size": 0})[0] == 0
