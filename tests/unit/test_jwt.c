/*
 * Unit tests for JWS parsing and verification (src/plugins/jwt_verify.c): the example tokens
 * of RFC 7515 Appendix A.1 (HS256), A.2 (RS256), A.3 (ES256), A.5 (unsecured) and RFC 7519
 * §3.1, every supported algorithm with keys made here, and cases B26-B32 of
 * ../shared/cases/CASES.md at the level of the pure functions.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jwt_fixtures.h"
#include "plugins/jwt_verify.h"

/* ------------------------------------------------------------------------------------------ */
/* RFC material                                                                               */

/* RFC 7515 A.1 / RFC 7519 §3.1: {"typ":"JWT",\r\n "alg":"HS256"} */
#define A1_HEADER "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
/* {"iss":"joe",\r\n "exp":1300819380,\r\n "http://example.com/is_root":true} (all of A.x) */
#define A_PAYLOAD                                                                              \
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0" \
    "cnVlfQ"
#define A1_TOKEN A1_HEADER "." A_PAYLOAD ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
#define A1_JWK                                                                                 \
    "{\"kty\":\"oct\",\"k\":\"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0i" \
    "PS4hcgUuTwjAzZr1Z9CAow\"}"

#define A2_TOKEN                                                                               \
    "eyJhbGciOiJSUzI1NiJ9." A_PAYLOAD                                                          \
    ".cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W" \
    "2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSj" \
    "tQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh" \
    "6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw"
#define A2_JWK                                                                                 \
    "{\"kty\":\"RSA\",\"e\":\"AQAB\",\"n\":\"ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l" \
    "8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r" \
    "2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665x" \
    "smtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91" \
    "kzk2PAcDTW9gb54h4FRWyuXpoQ\"}"

#define A3_TOKEN                                                                               \
    "eyJhbGciOiJFUzI1NiJ9." A_PAYLOAD                                                          \
    ".DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
#define A3_JWK                                                                                 \
    "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","  \
    "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}"

/* A.5: {"alg":"none"}, empty signature */
#define A5_TOKEN "eyJhbGciOiJub25lIn0." A_PAYLOAD "."

#define A_EXP 1300819380.0

/* ------------------------------------------------------------------------------------------ */
/* helpers                                                                                    */

static void jwk_key(const char *jwk_text, struct tp_jwt_key *k)
{
    json_t *jwk = json_loads(jwk_text, 0, NULL);
    const char *why = NULL;
    assert_non_null(jwk);
    int rc = tp_jwt_key_from_jwk(k, jwk, &why);
    if (rc != 0)
        fail_msg("JWK refused: %s", why);
    json_decref(jwk);
}

/* Parse and verify; returns tp_jwt_verify's result (parse failures fail the test). */
static int parse_verify(const char *token, const struct tp_jwt_key *k)
{
    struct tp_jwt t;
    const char *why = NULL;
    int rc = tp_jwt_parse(token, strlen(token), &t, &why);
    if (rc != 0)
        fail_msg("parse failed: %s", why);
    rc = tp_jwt_verify(&t, k);
    tp_jwt_clear(&t);
    return rc;
}

static int parse_only(const char *token, const char **why)
{
    struct tp_jwt t;
    int rc = tp_jwt_parse(token, strlen(token), &t, why);
    tp_jwt_clear(&t);
    return rc;
}

/* True when token is refused, whether by parsing or by verification with k. */
static bool rejected(const char *token, const struct tp_jwt_key *k)
{
    struct tp_jwt t;
    const char *why = NULL;
    if (tp_jwt_parse(token, strlen(token), &t, &why) != 0)
        return true;
    int rc = tp_jwt_verify(&t, k);
    tp_jwt_clear(&t);
    return rc != 0;
}

/* ------------------------------------------------------------------------------------------ */
/* base64url                                                                                  */

static void test_b64url_strict(void **state)
{
    (void)state;
    unsigned char out[16];
    size_t n = 0;
    assert_int_equal(tp_jwt_b64url_decode("AQAB", 4, out, sizeof(out), &n), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(out, "\x01\x00\x01", 3);
    assert_int_equal(tp_jwt_b64url_decode("_-8", 3, out, sizeof(out), &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(tp_jwt_b64url_decode("", 0, out, sizeof(out), &n), 0);
    assert_int_equal(n, 0);
    /* padding, the standard alphabet, white space and impossible lengths are refused */
    assert_int_equal(tp_jwt_b64url_decode("AQ==", 4, out, sizeof(out), &n), TP_EINVAL);
    assert_int_equal(tp_jwt_b64url_decode("a+b/", 4, out, sizeof(out), &n), TP_EINVAL);
    assert_int_equal(tp_jwt_b64url_decode("AQ B", 4, out, sizeof(out), &n), TP_EINVAL);
    assert_int_equal(tp_jwt_b64url_decode("AQABA", 5, out, sizeof(out), &n), TP_EINVAL);
    /* "AR" decodes to the same byte as "AQ" with a non-zero unused bit: one spelling only */
    assert_int_equal(tp_jwt_b64url_decode("AQ", 2, out, sizeof(out), &n), 0);
    assert_int_equal(tp_jwt_b64url_decode("AR", 2, out, sizeof(out), &n), TP_EINVAL);
    assert_int_equal(tp_jwt_b64url_decode("AQAB", 4, out, 2, &n), TP_ETOOBIG);
}

static void test_b64_any(void **state)
{
    (void)state;
    unsigned char out[16];
    size_t n = 0;
    assert_int_equal(tp_jwt_b64_decode_any("c2VjcmV0", 8, out, &n), 0);
    assert_int_equal(n, 6);
    assert_memory_equal(out, "secret", 6);
    assert_int_equal(tp_jwt_b64_decode_any("+/8=", 4, out, &n), 0);
    assert_int_equal(n, 2);
    assert_memory_equal(out, "\xfb\xff", 2);
    assert_int_equal(tp_jwt_b64_decode_any("-_8", 3, out, &n), 0);
    assert_int_equal(tp_jwt_b64_decode_any("@@@@", 4, out, &n), TP_EINVAL);
}

/* ------------------------------------------------------------------------------------------ */
/* RFC examples                                                                               */

static void test_rfc7515_a1_hs256(void **state)
{
    (void)state;
    struct tp_jwt_key k;
    jwk_key(A1_JWK, &k);
    assert_int_equal(k.type, TP_JWT_KEY_HMAC);
    assert_int_equal(parse_verify(A1_TOKEN, &k), 0);

    /* one changed byte of the signature, of the payload, or a truncated signature */
    char bad[] = A1_TOKEN;
    bad[strlen(bad) - 2] = bad[strlen(bad) - 2] == 'X' ? 'Y' : 'X';
    assert_int_equal(parse_verify(bad, &k), TP_EINVAL);
    char bad2[] = A1_TOKEN;
    bad2[sizeof(A1_HEADER) + 3] ^= 1;
    struct tp_jwt t;
    const char *why;
    if (tp_jwt_parse(bad2, strlen(bad2), &t, &why) == 0) {
        assert_int_equal(tp_jwt_verify(&t, &k), TP_EINVAL);
        tp_jwt_clear(&t);
    }
    char shortsig[] = A1_TOKEN;
    shortsig[strlen(shortsig) - 4] = '\0';
    assert_true(rejected(shortsig, &k));

    /* the same secret as a plain key, pinned to HS256 and to HS384 */
    unsigned char raw[64];
    size_t n;
    assert_int_equal(tp_jwt_b64url_decode("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH"
                                          "75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow",
                                          86, raw, sizeof(raw), &n),
                     0);
    struct tp_jwt_key k2, k3;
    assert_int_equal(tp_jwt_key_from_secret(&k2, raw, n, TP_JWT_HS256, "x"), 0);
    assert_string_equal(k2.kid, "x");
    assert_int_equal(parse_verify(A1_TOKEN, &k2), 0);
    assert_int_equal(tp_jwt_key_from_secret(&k3, raw, n, TP_JWT_HS384, NULL), 0);
    assert_int_equal(parse_verify(A1_TOKEN, &k3), TP_EINVAL);
    tp_jwt_key_clear(&k3);
    assert_int_equal(tp_jwt_key_from_secret(&k3, raw, 0, TP_JWT_HS256, NULL), TP_EINVAL);
    assert_int_equal(tp_jwt_key_from_secret(&k3, raw, n, TP_JWT_RS256, NULL), TP_EINVAL);
    tp_jwt_key_clear(&k);
    tp_jwt_key_clear(&k2);
    tp_jwt_key_clear(&k3);
}

/* RFC 7519 §3.1: the same token read as a JWT; its claims and their checks. */
static void test_rfc7519_example(void **state)
{
    (void)state;
    struct tp_jwt t;
    const char *why = NULL;
    assert_int_equal(tp_jwt_parse(A1_TOKEN, strlen(A1_TOKEN), &t, &why), 0);
    assert_int_equal(t.alg, TP_JWT_HS256);
    assert_null(t.kid.ptr);
    assert_string_equal(json_string_value(json_object_get(t.claims, "iss")), "joe");
    assert_true(json_is_true(json_object_get(t.claims, "http://example.com/is_root")));
    assert_string_equal(json_string_value(json_object_get(t.header, "typ")), "JWT");
    assert_int_equal(t.signing_input.len, strlen(A1_HEADER "." A_PAYLOAD));

    struct tp_jwt_rules r = {0};
    assert_int_equal(tp_jwt_check_claims(t.claims, &r, A_EXP - 1, &why), 0);
    assert_int_equal(tp_jwt_check_claims(t.claims, &r, A_EXP, &why), TP_EINVAL);
    assert_string_equal(why, "token expired");
    r.leeway = 30;
    assert_int_equal(tp_jwt_check_claims(t.claims, &r, A_EXP + 29, &why), 0);
    assert_int_equal(tp_jwt_check_claims(t.claims, &r, A_EXP + 30, &why), TP_EINVAL);
    char *iss[] = {"joe"}, *other[] = {"ann"};
    r.issuers = iss;
    r.num_issuers = 1;
    assert_int_equal(tp_jwt_check_claims(t.claims, &r, A_EXP - 1, &why), 0);
    r.issuers = other;
    assert_int_equal(tp_jwt_check_claims(t.claims, &r, A_EXP - 1, &why), TP_EINVAL);
    assert_string_equal(why, "issuer not accepted");
    tp_jwt_clear(&t);
    tp_jwt_clear(&t); /* twice is harmless */
}

static void test_rfc7515_a2_rs256(void **state)
{
    (void)state;
    struct tp_jwt_key k;
    jwk_key(A2_JWK, &k);
    assert_int_equal(k.type, TP_JWT_KEY_RSA);
    assert_int_equal(k.alg, TP_JWT_ALG_ANY);
    assert_int_equal(parse_verify(A2_TOKEN, &k), 0);
    char bad[] = A2_TOKEN;
    bad[strlen(bad) - 10] = bad[strlen(bad) - 10] == 'A' ? 'B' : 'A';
    assert_int_equal(parse_verify(bad, &k), TP_EINVAL);

    /* B27 at this level: an HS256 token whose "secret" is the PEM of this very key */
    char *pem = NULL;
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(bio, k.pkey), 1);
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    pem = strndup(data, (size_t)n);
    BIO_free(bio);
    struct tp_jwt_key pk;
    const char *why = NULL;
    assert_int_equal(tp_jwt_key_from_pem(&pk, pem, strlen(pem), TP_JWT_RS256, NULL, &why), 0);
    assert_int_equal(parse_verify(A2_TOKEN, &pk), 0);
    for (int trim = 0; trim < 2; trim++) {
        if (trim)
            pem[strlen(pem) - 1] = '\0'; /* without the final newline */
        char *forged = sign_token("{\"alg\":\"HS256\",\"typ\":\"JWT\"}",
                                  "{\"sub\":\"user1\",\"exp\":9999999999}", TP_JWT_HS256, NULL,
                                  pem);
        assert_int_equal(parse_verify(forged, &k), TP_EINVAL);
        assert_int_equal(parse_verify(forged, &pk), TP_EINVAL);
        free(forged);
    }
    /* an RSA key pinned to RS256 takes neither PS256 nor HS256 */
    assert_false(tp_jwt_key_allows(&pk, TP_JWT_PS256));
    assert_false(tp_jwt_key_allows(&pk, TP_JWT_HS256));
    assert_true(tp_jwt_key_allows(&k, TP_JWT_PS256)); /* unpinned JWK: the type decides */
    assert_false(tp_jwt_key_allows(&k, TP_JWT_ES256));
    free(pem);
    tp_jwt_key_clear(&k);
    tp_jwt_key_clear(&pk);
}

static void test_rfc7515_a3_es256(void **state)
{
    (void)state;
    struct tp_jwt_key k;
    jwk_key(A3_JWK, &k);
    assert_int_equal(k.type, TP_JWT_KEY_P256);
    assert_int_equal(parse_verify(A3_TOKEN, &k), 0);
    char bad[] = A3_TOKEN;
    bad[strlen(bad) - 5] = bad[strlen(bad) - 5] == 'A' ? 'B' : 'A';
    assert_int_equal(parse_verify(bad, &k), TP_EINVAL);
    /* a DER signature or a truncated R||S is not a JWS ES256 signature */
    char shortsig[] = A3_TOKEN;
    shortsig[strlen(shortsig) - 3] = '\0';
    assert_true(rejected(shortsig, &k));
    /* the A.3 public key used as an HMAC secret: refused by type */
    struct tp_jwt_key a1;
    jwk_key(A1_JWK, &a1);
    assert_int_equal(parse_verify(A3_TOKEN, &a1), TP_EINVAL);
    assert_int_equal(parse_verify(A1_TOKEN, &k), TP_EINVAL);
    tp_jwt_key_clear(&k);
    tp_jwt_key_clear(&a1);
}

static void test_rfc7515_a5_none(void **state)
{
    (void)state;
    const char *why = NULL;
    assert_int_equal(parse_only(A5_TOKEN, &why), TP_EINVAL);
    assert_string_equal(why, "alg none refused");
    static const char *const headers[] = {"{\"alg\":\"None\"}", "{\"alg\":\"NONE\"}",
                                          "{\"alg\":\"nOnE\",\"typ\":\"JWT\"}"};
    for (size_t i = 0; i < 3; i++) {
        char *h = b64url_str(headers[i]);
        char tok[512];
        snprintf(tok, sizeof(tok), "%s.%s.", h, A_PAYLOAD);
        assert_int_equal(parse_only(tok, &why), TP_EINVAL);
        snprintf(tok, sizeof(tok), "%s.%s.c2ln", h, A_PAYLOAD);
        assert_int_equal(parse_only(tok, &why), TP_EINVAL);
        assert_string_equal(why, "alg none refused");
        free(h);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* B26: headers that must never reach signature verification                                  */

static void check_header_refused(const char *header, const char *expect_why)
{
    char *h = b64url_str(header);
    char *p = b64url_str("{\"sub\":\"user1\",\"exp\":9999999999}");
    char tok[1024];
    const char *why = NULL;
    snprintf(tok, sizeof(tok), "%s.%s.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", h, p);
    if (parse_only(tok, &why) != TP_EINVAL)
        fail_msg("header %s accepted", header);
    if (expect_why && strcmp(why, expect_why) != 0)
        fail_msg("header %s: '%s', expected '%s'", header, why, expect_why);
    free(h);
    free(p);
}

static void test_b26_headers(void **state)
{
    (void)state;
    check_header_refused("{\"alg\":\"HS256\",\"enc\":\"A128CBC-HS256\"}",
                         "JWE header (enc/zip) in a JWS");
    check_header_refused("{\"alg\":\"HS256\",\"zip\":\"DEF\"}", NULL);
    check_header_refused("{\"typ\":\"JWT\"}", "missing alg");
    check_header_refused("{\"alg\":null}", "alg is not a string");
    check_header_refused("{\"alg\":256}", "alg is not a string");
    check_header_refused("{\"alg\":\"HS257\"}", "unsupported alg");
    check_header_refused("{\"alg\":\"hs256\"}", "unsupported alg");
    check_header_refused("{\"alg\":\"HS256\",\"crit\":[\"exp\"],\"exp\":1}",
                         "crit header names an unsupported extension");
    check_header_refused("{\"alg\":\"HS256\",\"crit\":[\"b64\"],\"b64\":false}", NULL);
    check_header_refused("{\"alg\":\"HS256\",\"cty\":\"JWT\"}", "nested JWT refused");
    check_header_refused("{\"alg\":\"HS256\",\"kid\":7}", "invalid kid");
    check_header_refused("{\"alg\":\"HS256\",\"alg\":\"none\"}", "malformed header");
    check_header_refused("[\"alg\",\"HS256\"]", "malformed header");
    check_header_refused("{\"alg\":\"HS256\",\"x\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]}",
                         "malformed header");

    /* shapes: JWE (five segments), two, four, empty parts, padding, bad characters */
    const char *why = NULL;
    static const char *const shapes[] = {
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyMSJ9.a.b.c",
        A1_HEADER "." A_PAYLOAD,
        A1_TOKEN ".x",
        "." A_PAYLOAD ".dBjftJeZ4CVP",
        A1_HEADER "..dBjftJeZ4CVP",
        A1_HEADER "." A_PAYLOAD ".",
        A1_HEADER "=." A_PAYLOAD ".dBjftJeZ4CVP",
        A1_HEADER "." A_PAYLOAD ".dBjftJeZ4CVP+mB9",
        " " A1_TOKEN,
        "",
        "...",
    };
    for (size_t i = 0; i < TP_ARRAY_LEN(shapes); i++)
        if (parse_only(shapes[i], &why) != TP_EINVAL)
            fail_msg("shape %zu accepted", i);

    /* the size cap */
    size_t big = TP_JWT_MAX_TOKEN + 1;
    char *huge = malloc(big + 1);
    memset(huge, 'A', big);
    huge[big] = '\0';
    huge[10] = '.';
    huge[20] = '.';
    assert_int_equal(parse_only(huge, &why), TP_ETOOBIG);
    free(huge);

    /* claims that are not an object */
    char *h = b64url_str("{\"alg\":\"HS256\"}"), *p = b64url_str("[1,2]");
    char tok[256];
    snprintf(tok, sizeof(tok), "%s.%s.c2ln", h, p);
    assert_int_equal(parse_only(tok, &why), TP_EINVAL);
    assert_string_equal(why, "malformed claims");
    free(h);
    free(p);
}

/* ------------------------------------------------------------------------------------------ */
/* Claims: B28 (types), B30 (missing exp), B31 (leeway)                                       */

static int claims_rc(const char *json, const struct tp_jwt_rules *r, double now)
{
    json_t *c = json_loads(json, JSON_REJECT_DUPLICATES, NULL);
    const char *why = NULL;
    if (!c)
        fail_msg("bad test JSON %s", json);
    int rc = tp_jwt_check_claims(c, r, now, &why);
    json_decref(c);
    return rc;
}

static void test_b28_numeric_dates(void **state)
{
    (void)state;
    struct tp_jwt_rules r = {0};
    double now = 1700000000.0;
    char buf[128];
    snprintf(buf, sizeof(buf), "{\"sub\":\"u\",\"exp\":%.2f}", now + 300.5);
    assert_int_equal(claims_rc(buf, &r, now), 0);
    snprintf(buf, sizeof(buf), "{\"exp\":%.2f}", now - 10.25);
    assert_int_equal(claims_rc(buf, &r, now), TP_EINVAL);
    /* the fraction counts: 0.25 s after exp is expired, 0.25 s before is not */
    snprintf(buf, sizeof(buf), "{\"exp\":%.2f}", now - 0.25);
    assert_int_equal(claims_rc(buf, &r, now), TP_EINVAL);
    snprintf(buf, sizeof(buf), "{\"exp\":%.2f}", now + 0.25);
    assert_int_equal(claims_rc(buf, &r, now), 0);
    static const char *const bad[] = {
        "{\"exp\":\"9999999999\"}", "{\"exp\":true}", "{\"exp\":null}", "{\"exp\":{}}",
        "{\"exp\":[9999999999]}",   "{\"nbf\":\"0\"}", "{\"nbf\":false}", "{\"iat\":\"1\"}",
    };
    for (size_t i = 0; i < TP_ARRAY_LEN(bad); i++)
        if (claims_rc(bad[i], &r, now) != TP_EINVAL)
            fail_msg("%s accepted", bad[i]);
    snprintf(buf, sizeof(buf), "{\"nbf\":%.1f}", now + 600.0);
    assert_int_equal(claims_rc(buf, &r, now), TP_EINVAL);
    assert_int_equal(claims_rc("{\"exp\":1e10}", &r, now), 0);
    assert_int_equal(claims_rc("{\"exp\":1e10}", &r, 1e10), TP_EINVAL);
    assert_int_equal(claims_rc("{\"exp\":1e10}", &r, 1e10 - 0.5), 0);
    assert_int_equal(claims_rc("{\"exp\":10000000000}", &r, 1e10 - 1), 0);
}

static void test_b30_missing_exp(void **state)
{
    (void)state;
    struct tp_jwt_rules r = {0};
    double now = 1700000000.0;
    char buf[128];
    assert_int_equal(claims_rc("{\"sub\":\"user1\"}", &r, now), 0);
    r.require_exp = true;
    assert_int_equal(claims_rc("{\"sub\":\"user1\"}", &r, now), TP_EINVAL);
    r.require_exp = false;
    r.max_lifetime = 3600;
    assert_int_equal(claims_rc("{\"sub\":\"user1\"}", &r, now), TP_EINVAL);
    snprintf(buf, sizeof(buf), "{\"exp\":%.0f}", now + 86400);
    assert_int_equal(claims_rc(buf, &r, now), TP_EINVAL);
    snprintf(buf, sizeof(buf), "{\"exp\":%.0f}", now + 600);
    assert_int_equal(claims_rc(buf, &r, now), 0);
    /* exp - iat also bounded: a long-lived token issued long ago */
    snprintf(buf, sizeof(buf), "{\"exp\":%.0f,\"iat\":%.0f}", now + 600, now - 7200);
    assert_int_equal(claims_rc(buf, &r, now), TP_EINVAL);
    r.max_lifetime = 0;
    r.require_nbf = true;
    assert_int_equal(claims_rc("{\"exp\":9999999999}", &r, now), TP_EINVAL);
    r.require_nbf = false;
    r.max_expiration = 60; /* Kong's maximum_expiration */
    assert_int_equal(claims_rc("{\"sub\":\"u\"}", &r, now), TP_EINVAL);
    snprintf(buf, sizeof(buf), "{\"exp\":%.0f}", now + 61);
    assert_int_equal(claims_rc(buf, &r, now), TP_EINVAL);
    snprintf(buf, sizeof(buf), "{\"exp\":%.0f}", now + 59);
    assert_int_equal(claims_rc(buf, &r, now), 0);
}

static void test_b31_leeway(void **state)
{
    (void)state;
    struct tp_jwt_rules r = {.leeway = 30};
    double now = 1700000000.0;
    char buf[160];
    snprintf(buf, sizeof(buf), "{\"sub\":\"user1\",\"iat\":%.0f,\"nbf\":%.0f,\"exp\":%.0f}",
             now + 1, now + 1, now + 300);
    assert_int_equal(claims_rc(buf, &r, now), 0);
    static const struct {
        const char *claim;
        double offset;
        int with30, with0;
    } cases[] = {
        {"nbf", 20, 0, TP_EINVAL},          {"nbf", 120, TP_EINVAL, TP_EINVAL},
        {"exp", -20, 0, TP_EINVAL},         {"exp", -120, TP_EINVAL, TP_EINVAL},
        {"nbf", 1, 0, TP_EINVAL},           {"iat", 20, 0, TP_EINVAL},
        {"iat", 120, TP_EINVAL, TP_EINVAL}, {"nbf", 0, 0, 0},
    };
    for (size_t i = 0; i < TP_ARRAY_LEN(cases); i++) {
        snprintf(buf, sizeof(buf), "{\"%s\":%.0f}", cases[i].claim, now + cases[i].offset);
        r.leeway = 30;
        if (claims_rc(buf, &r, now) != cases[i].with30)
            fail_msg("leeway 30: %s", buf);
        r.leeway = 0;
        if (claims_rc(buf, &r, now) != cases[i].with0)
            fail_msg("leeway 0: %s", buf);
    }
}

static void test_aud_and_required(void **state)
{
    (void)state;
    char *aud[] = {"api", "web"}, *req[] = {"sub", "scope"};
    struct tp_jwt_rules r = {.audiences = aud, .num_audiences = 2};
    assert_int_equal(claims_rc("{\"aud\":\"api\"}", &r, 0), 0);
    assert_int_equal(claims_rc("{\"aud\":[\"x\",\"web\"]}", &r, 0), 0);
    assert_int_equal(claims_rc("{\"aud\":[\"x\"]}", &r, 0), TP_EINVAL);
    assert_int_equal(claims_rc("{\"aud\":[\"api\",3]}", &r, 0), TP_EINVAL);
    assert_int_equal(claims_rc("{\"aud\":null}", &r, 0), TP_EINVAL);
    assert_int_equal(claims_rc("{}", &r, 0), TP_EINVAL);
    r = (struct tp_jwt_rules){.required = req, .num_required = 2};
    assert_int_equal(claims_rc("{\"sub\":\"a\",\"scope\":\"b\"}", &r, 0), 0);
    assert_int_equal(claims_rc("{\"sub\":\"a\"}", &r, 0), TP_EINVAL);
    assert_int_equal(claims_rc("{\"sub\":\"a\",\"scope\":null}", &r, 0), TP_EINVAL);
    char *iss[] = {"https://idp"};
    r = (struct tp_jwt_rules){.issuers = iss, .num_issuers = 1};
    assert_int_equal(claims_rc("{\"iss\":\"https://idp\"}", &r, 0), 0);
    assert_int_equal(claims_rc("{\"iss\":[\"https://idp\"]}", &r, 0), TP_EINVAL);
    assert_int_equal(claims_rc("{}", &r, 0), TP_EINVAL);
}

/* ------------------------------------------------------------------------------------------ */
/* Every algorithm, end to end, with keys made here                                           */

static void check_alg(enum tp_jwt_alg alg, EVP_PKEY *priv, const char *secret)
{
    char header[64];
    snprintf(header, sizeof(header), "{\"alg\":\"%s\",\"kid\":\"k\"}", tp_jwt_alg_name(alg));
    char *tok = sign_token(header, "{\"sub\":\"user1\"}", alg, priv, secret);
    struct tp_jwt_key k, any;
    if (secret) {
        assert_int_equal(tp_jwt_key_from_secret(&k, secret, strlen(secret), alg, "k"), 0);
        assert_int_equal(tp_jwt_key_from_secret(&any, "other", 5, TP_JWT_ALG_ANY, NULL), 0);
    } else {
        pem_key(priv, alg, &k);
        pem_key(priv, TP_JWT_ALG_ANY, &any);
    }
    struct tp_jwt t;
    const char *why = NULL;
    assert_int_equal(tp_jwt_parse(tok, strlen(tok), &t, &why), 0);
    assert_int_equal(t.alg, alg);
    assert_int_equal(t.kid.len, 1);
    if (tp_jwt_verify(&t, &k) != 0)
        fail_msg("%s: valid token refused", tp_jwt_alg_name(alg));
    if (!secret && tp_jwt_verify(&t, &any) != 0)
        fail_msg("%s: unpinned key refused", tp_jwt_alg_name(alg));
    if (secret && tp_jwt_verify(&t, &any) == 0)
        fail_msg("%s: wrong secret accepted", tp_jwt_alg_name(alg));
    /* flip one bit of the signature */
    t.sig[t.sig_len / 2] ^= 0x01;
    if (tp_jwt_verify(&t, &k) == 0)
        fail_msg("%s: altered signature accepted", tp_jwt_alg_name(alg));
    t.sig[t.sig_len / 2] ^= 0x01;
    /* claim another algorithm of the family: the pinned key refuses */
    enum tp_jwt_alg other = alg == TP_JWT_EDDSA ? TP_JWT_ES256
                            : alg % 3 == 0      ? (enum tp_jwt_alg)(alg + 1)
                                                : (enum tp_jwt_alg)(alg - 1);
    t.alg = other;
    if (tp_jwt_verify(&t, &k) == 0)
        fail_msg("%s: verified as %s", tp_jwt_alg_name(alg), tp_jwt_alg_name(other));
    tp_jwt_clear(&t);
    free(tok);
    tp_jwt_key_clear(&k);
    tp_jwt_key_clear(&any);
}

static void test_all_algorithms(void **state)
{
    (void)state;
    EVP_PKEY *rsa = gen_key("RSA", NULL), *p256 = gen_key("EC", "P-256");
    EVP_PKEY *p384 = gen_key("EC", "P-384"), *p521 = gen_key("EC", "P-521");
    EVP_PKEY *ed = gen_key("ED25519", NULL);
    const char *secret = "a-secret-of-thirty-two-bytes-or-more!!";
    for (int a = TP_JWT_HS256; a <= TP_JWT_HS512; a++)
        check_alg((enum tp_jwt_alg)a, NULL, secret);
    for (int a = TP_JWT_RS256; a <= TP_JWT_PS512; a++)
        check_alg((enum tp_jwt_alg)a, rsa, NULL);
    check_alg(TP_JWT_ES256, p256, NULL);
    check_alg(TP_JWT_ES384, p384, NULL);
    check_alg(TP_JWT_ES512, p521, NULL);
    check_alg(TP_JWT_EDDSA, ed, NULL);

    /* curve and algorithm must agree: ES256 with a P-384 key */
    char *tok = sign_token("{\"alg\":\"ES384\"}", "{}", TP_JWT_ES384, p384, NULL);
    struct tp_jwt_key k;
    pem_key(p256, TP_JWT_ALG_ANY, &k);
    assert_int_equal(parse_verify(tok, &k), TP_EINVAL);
    tp_jwt_key_clear(&k);
    free(tok);
    /* a key whose type does not suit the configured algorithm is a config error */
    char *pem = public_pem(p256);
    const char *why = NULL;
    assert_int_equal(tp_jwt_key_from_pem(&k, pem, strlen(pem), TP_JWT_RS256, NULL, &why),
                     TP_EINVAL);
    assert_int_equal(tp_jwt_key_from_pem(&k, pem, strlen(pem), TP_JWT_ES384, NULL, &why),
                     TP_EINVAL);
    free(pem);
    assert_int_equal(tp_jwt_key_from_pem(&k, "nonsense", 8, TP_JWT_ALG_ANY, NULL, &why),
                     TP_EINVAL);
    /* RSA keys shorter than 2048 bits are refused (RFC 7518 §3.3) */
    EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    pem = public_pem(small);
    assert_int_equal(tp_jwt_key_from_pem(&k, pem, strlen(pem), TP_JWT_RS256, NULL, &why),
                     TP_EINVAL);
    free(pem);
    EVP_PKEY_free(small);
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(p256);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(p521);
    EVP_PKEY_free(ed);
}

/* ------------------------------------------------------------------------------------------ */
/* JWK Sets and kid (B32)                                                                     */

static void test_jwks(void **state)
{
    (void)state;
    const char *doc =
        "{\"keys\":["
        "{\"kty\":\"oct\",\"kid\":\"k1\",\"alg\":\"HS256\",\"k\":\"c2VjcmV0LW9uZQ\"},"
        "{\"kty\":\"oct\",\"kid\":\"k2\",\"alg\":\"HS256\",\"k\":\"c2VjcmV0LXR3bw\"},"
        "{\"kty\":\"RSA\",\"kid\":\"enc\",\"use\":\"enc\",\"e\":\"AQAB\",\"n\":\"AQAB\"},"
        "{\"kty\":\"EC\",\"kid\":\"off\",\"crv\":\"P-256\","
        "\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
        "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a1\"},"
        "{\"kty\":\"EC\",\"kid\":\"a3\",\"crv\":\"P-256\",\"key_ops\":[\"verify\"],"
        "\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
        "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"},"
        "{\"kty\":\"RSA\",\"kid\":\"short\",\"e\":\"AQAB\",\"n\":\"AQAB\"},"
        "{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":\"AQAB\"},"
        "{\"kty\":\"oct\",\"kid\":\"rs\",\"alg\":\"RS256\",\"k\":\"c2VjcmV0\"},"
        "{\"kty\":\"EC\",\"kid\":\"sign\",\"key_ops\":[\"sign\"],\"crv\":\"P-256\","
        "\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
        "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"},"
        "{\"kty\":\"foo\"}, 42,"
        A2_JWK "]}";
    struct tp_jwks set = {0};
    size_t skipped = 0;
    const char *why = NULL;
    assert_int_equal(tp_jwks_parse(doc, strlen(doc), &set, &skipped, &why), 0);
    assert_int_equal(set.num_keys, 4); /* k1, k2, a3, the A.2 key */
    assert_int_equal(skipped, 8);
    assert_non_null(tp_jwks_find(&set, TP_SLICE_LIT("k1"), TP_JWT_HS256));
    assert_null(tp_jwks_find(&set, TP_SLICE_LIT("k1"), TP_JWT_HS384)); /* pinned by alg */
    assert_null(tp_jwks_find(&set, TP_SLICE_LIT("k1"), TP_JWT_RS256));
    assert_true(tp_jwks_has_kid(&set, TP_SLICE_LIT("k1")));
    const struct tp_jwt_key *a3 = tp_jwks_find(&set, TP_SLICE_LIT("a3"), TP_JWT_ES256);
    assert_non_null(a3);
    assert_int_equal(parse_verify(A3_TOKEN, a3), 0);
    /* B32: kid is an opaque string; paths, SQL and URLs match nothing */
    static const char *const kids[] = {"../../../../dev/null", "k1' OR '1'='1",
                                       "https://example.net/k", "K1", "k1 ", ""};
    for (size_t i = 0; i < TP_ARRAY_LEN(kids); i++)
        assert_null(tp_jwks_find(&set, tp_slice_cstr(kids[i]), TP_JWT_HS256));
    tp_jwks_clear(&set);

    static const char *const bad[] = {"[]", "{}", "{\"keys\":{}}", "not json", ""};
    for (size_t i = 0; i < TP_ARRAY_LEN(bad); i++)
        assert_int_equal(tp_jwks_parse(bad[i], strlen(bad[i]), &set, NULL, &why), TP_EINVAL);
    assert_int_equal(tp_jwks_parse("{\"keys\":[]}", 11, &set, NULL, &why), 0);
    assert_int_equal(set.num_keys, 0);

    /* an Ed25519 JWK (RFC 8037 A.2 public key) */
    json_t *okp = json_loads("{\"kty\":\"OKP\",\"crv\":\"Ed25519\","
                             "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}",
                             0, NULL);
    struct tp_jwt_key k;
    assert_int_equal(tp_jwt_key_from_jwk(&k, okp, &why), 0);
    assert_int_equal(k.type, TP_JWT_KEY_ED25519);
    tp_jwt_key_clear(&k);
    json_decref(okp);
}

/* EC JWK coordinates with leading zero bytes dropped (as some libraries write them) name
 * the same point; longer ones and points off the curve are refused. */
static void test_jwk_ec_short_coordinates(void **state)
{
    (void)state;
    for (int round = 0; round < 64; round++) {
        EVP_PKEY *priv = gen_key("EC", "P-521");
        BIGNUM *x = NULL, *y = NULL;
        assert_int_equal(EVP_PKEY_get_bn_param(priv, OSSL_PKEY_PARAM_EC_PUB_X, &x), 1);
        assert_int_equal(EVP_PKEY_get_bn_param(priv, OSSL_PKEY_PARAM_EC_PUB_Y, &y), 1);
        unsigned char xb[66], yb[66];
        int xl = BN_bn2bin(x, xb), yl = BN_bn2bin(y, yb); /* minimal: no leading zeros */
        char *xs = b64url(xb, (size_t)xl), *ys = b64url(yb, (size_t)yl);
        char text[512];
        snprintf(text, sizeof(text), "{\"kty\":\"EC\",\"crv\":\"P-521\",\"x\":\"%s\","
                 "\"y\":\"%s\"}", xs, ys);
        struct tp_jwt_key k;
        jwk_key(text, &k);
        char *tok = sign_token("{\"alg\":\"ES512\"}", "{}", TP_JWT_ES512, priv, NULL);
        assert_int_equal(parse_verify(tok, &k), 0);
        tp_jwt_key_clear(&k);
        free(tok);
        free(xs);
        free(ys);
        BN_free(x);
        BN_free(y);
        EVP_PKEY_free(priv);
        if (xl < 66 || yl < 66)
            break; /* a short coordinate was exercised */
    }
    json_t *bad = json_loads("{\"kty\":\"EC\",\"crv\":\"P-256\","
                             "\"x\":\"AAAAf83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
                             "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}",
                             0, NULL);
    struct tp_jwt_key k;
    const char *why = NULL;
    assert_int_equal(tp_jwt_key_from_jwk(&k, bad, &why), TP_EINVAL);
    json_decref(bad);
}

/* RFC 8037 A.4: the Ed25519 signature of "Example of Ed25519 signing". */
static void test_rfc8037_ed25519(void **state)
{
    (void)state;
    const char *tok = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCj"
                      "P0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_Mu"
                      "M0KAg";
    json_t *okp = json_loads("{\"kty\":\"OKP\",\"crv\":\"Ed25519\","
                             "\"x\":\"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo\"}",
                             0, NULL);
    struct tp_jwt_key k;
    const char *why = NULL;
    assert_int_equal(tp_jwt_key_from_jwk(&k, okp, &why), 0);
    /* the payload is not a JSON object, so it is no JWT: parsing refuses it */
    struct tp_jwt t;
    assert_int_equal(tp_jwt_parse(tok, strlen(tok), &t, &why), TP_EINVAL);
    assert_string_equal(why, "malformed claims");
    /* the signature itself, checked by hand-filling the parsed form */
    const char *dot = strrchr(tok, '.');
    memset(&t, 0, sizeof(t));
    t.alg = TP_JWT_EDDSA;
    t.signing_input = (struct tp_slice){tok, (size_t)(dot - tok)};
    assert_int_equal(tp_jwt_b64url_decode(dot + 1, strlen(dot + 1), t.sig, sizeof(t.sig),
                                          &t.sig_len), 0);
    assert_int_equal(tp_jwt_verify(&t, &k), 0);
    t.signing_input.len--;
    assert_int_equal(tp_jwt_verify(&t, &k), TP_EINVAL);
    tp_jwt_key_clear(&k);
    json_decref(okp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_b64url_strict),    cmocka_unit_test(test_b64_any),
        cmocka_unit_test(test_rfc7515_a1_hs256), cmocka_unit_test(test_rfc7519_example),
        cmocka_unit_test(test_rfc7515_a2_rs256), cmocka_unit_test(test_rfc7515_a3_es256),
        cmocka_unit_test(test_rfc7515_a5_none),  cmocka_unit_test(test_b26_headers),
        cmocka_unit_test(test_b28_numeric_dates), cmocka_unit_test(test_b30_missing_exp),
        cmocka_unit_test(test_b31_leeway),       cmocka_unit_test(test_aud_and_required),
        cmocka_unit_test(test_all_algorithms),   cmocka_unit_test(test_jwks),
        cmocka_unit_test(test_rfc8037_ed25519), cmocka_unit_test(test_jwk_ec_short_coordinates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
