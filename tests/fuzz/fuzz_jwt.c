/*
 * Fuzz target: JWS parsing, signature verification, claim checks and JWK Set parsing
 * (src/plugins/jwt_verify.c).
 *
 * The input is read as a compact token and, independently, as a JWK Set document. A parsed
 * token must satisfy the parser's invariants (a known alg, signing input and kid inside the
 * input, signature within its cap, JSON objects) and is then verified with an HMAC key, the
 * RSA key of RFC 7515 A.2 and the EC key of A.3, and checked against claim rules; none of
 * that may crash, leak or accept a token whose alg does not match the key's type. An input
 * "header\nclaims" is also encoded into a token, to reach the header and claim checks. Seeds:
 * tests/fuzz/corpus/jwt/ (the RFC example tokens and the B26-B32 shapes).
 */
#include "plugins/jwt_verify.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define A2_N                                                                                   \
    "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0" \
    "Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXnd" \
    "S5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5Ihl" \
    "JH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ"

static void check(int ok, const char *what)
{
    if (ok)
        return;
    fprintf(stderr, "invariant failed: %s\n", what);
    abort();
}

/* The keys, built once (a fuzzer calls the target millions of times). */
static struct tp_jwks *keys(void)
{
    static struct tp_jwks set;
    static int ready;
    if (ready)
        return &set;
    const char *doc = "{\"keys\":["
                      "{\"kty\":\"oct\",\"kid\":\"k1\",\"k\":\"c2VjcmV0LW9uZQ\"},"
                      "{\"kty\":\"RSA\",\"kid\":\"a2\",\"e\":\"AQAB\",\"n\":\"" A2_N "\"},"
                      "{\"kty\":\"EC\",\"kid\":\"a3\",\"crv\":\"P-256\","
                      "\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
                      "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}]}";
    const char *why = NULL;
    check(tp_jwks_parse(doc, strlen(doc), &set, NULL, &why) == 0 && set.num_keys == 3,
          "fuzz keys load");
    ready = 1;
    return &set;
}

static void fuzz_token(const char *in, size_t len)
{
    struct tp_jwt t;
    const char *why = NULL;
    int rc = tp_jwt_parse(in, len, &t, &why);
    if (rc != 0) {
        check(why != NULL, "a reason for every refusal");
        check(rc == TP_EINVAL || rc == TP_ETOOBIG || rc == TP_ENOMEM, "error code");
        return;
    }
    check(len <= TP_JWT_MAX_TOKEN, "size cap");
    check((unsigned)t.alg < TP_JWT_ALG_COUNT, "known alg");
    check(json_is_object(t.header) && json_is_object(t.claims), "objects");
    check(t.signing_input.ptr == in && t.signing_input.len < len, "signing input inside");
    check(t.sig_len > 0 && t.sig_len <= TP_JWT_MAX_SIG, "signature size");
    check(!t.kid.ptr || t.kid.len <= TP_JWT_MAX_KID, "kid size");
    check(!json_object_get(t.header, "enc") && !json_object_get(t.header, "crit"), "no JWE");

    const struct tp_jwks *set = keys();
    for (size_t i = 0; i < set->num_keys; i++) {
        const struct tp_jwt_key *k = &set->keys[i];
        int v = tp_jwt_verify(&t, k);
        check(v == 0 || v == TP_EINVAL || v == TP_ENOMEM, "verify result");
        if (v == 0)
            check(tp_jwt_key_allows(k, t.alg), "verified only with a suitable key");
    }
    if (t.kid.ptr)
        (void)tp_jwks_find(set, t.kid, t.alg);

    char *aud[] = {"api"}, *req[] = {"sub"};
    struct tp_jwt_rules r = {.leeway = 30, .max_lifetime = 3600, .audiences = aud,
                             .num_audiences = 1, .required = req, .num_required = 1};
    (void)tp_jwt_check_claims(t.claims, &r, 1700000000.0, &why);
    struct tp_jwt_rules none = {0};
    (void)tp_jwt_check_claims(t.claims, &none, 1700000000.0, &why);
    tp_jwt_clear(&t);
}

static void fuzz_jwks(const char *in, size_t len)
{
    struct tp_jwks set = {0};
    size_t skipped = 0;
    const char *why = NULL;
    if (tp_jwks_parse(in, len, &set, &skipped, &why) != 0) {
        check(set.num_keys == 0 && set.keys == NULL, "nothing kept on error");
        return;
    }
    check(set.num_keys <= TP_JWKS_MAX_KEYS, "key cap");
    for (size_t i = 0; i < set.num_keys; i++)
        check(set.keys[i].pkey || (set.keys[i].secret && set.keys[i].secret_len), "key body");
    tp_jwks_clear(&set);
}

static size_t b64url_encode(const unsigned char *p, size_t n, char *out)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        out[o++] = tbl[v >> 18];
        out[o++] = tbl[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = tbl[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = tbl[v & 63];
    }
    return o;
}

/* "header JSON\nclaims JSON" made into a token with a fixed 32-byte signature: reaches the
 * header and claim checks that random base64 rarely does. */
static void fuzz_structured(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    static const unsigned char sig[32] = {1, 2, 3};
    char tok[TP_JWT_MAX_TOKEN + 64];
    if (!nl || size > TP_JWT_MAX_TOKEN / 2)
        return;
    size_t n = b64url_encode(data, (size_t)(nl - data), tok);
    tok[n++] = '.';
    n += b64url_encode(nl + 1, size - (size_t)(nl - data) - 1, tok + n);
    tok[n++] = '.';
    n += b64url_encode(sig, sizeof(sig), tok + n);
    fuzz_token(tok, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_token((const char *)data, size);
    fuzz_jwks((const char *)data, size);
    fuzz_structured(data, size);
    return 0;
}
