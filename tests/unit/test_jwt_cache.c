/*
 * Unit tests for the jwt plugin's verification cache (src/plugins/jwt_cache.c): insert, hit,
 * expiry, CLOCK eviction, the expiry taken from `exp`, and tp_jwt_verify_cached with real
 * RS256 tokens: a hit skips nothing but the signature check, failures are never stored, and an
 * entry is bound to the key's identity (its SubjectPublicKeyInfo), not to a key object.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jwt_fixtures.h"
#include "plugins/jwt_cache.h"
#include "plugins/jwt_verify.h"

#define NOW 1700000000.0

/* ------------------------------------------------------------------------------------------ */
/* helpers                                                                                    */

static struct tp_jwt_cache *new_cache(size_t size)
{
    struct tp_jwt_cache *c = NULL;
    assert_int_equal(tp_jwt_cache_new(size, &c), 0);
    assert_non_null(c);
    return c;
}

/* A digest whose first 8 bytes (the set index) are `set` and whose byte 8 is n. */
static void digest(unsigned char d[TP_JWT_DIGEST_LEN], uint64_t set, unsigned n)
{
    memset(d, 0xa5, TP_JWT_DIGEST_LEN);
    memcpy(d, &set, sizeof(set));
    d[8] = (unsigned char)n;
}

/* An RS256 token of payload signed with priv (malloc'd). */
static char *rs256(const char *payload, EVP_PKEY *priv)
{
    return sign_token("{\"alg\":\"RS256\"}", payload, TP_JWT_RS256, priv, NULL);
}

static void parse(const char *tok, struct tp_jwt *t)
{
    const char *why = NULL;
    if (tp_jwt_parse(tok, strlen(tok), t, &why) != 0)
        fail_msg("parse failed: %s", why);
}

/* ------------------------------------------------------------------------------------------ */
/* the table                                                                                  */

static void test_sizes(void **state)
{
    (void)state;
    struct tp_jwt_cache *c = NULL;
    assert_int_equal(tp_jwt_cache_new(0, &c), TP_EINVAL);
    assert_null(c);
    assert_int_equal(tp_jwt_cache_new(TP_JWT_CACHE_MAX + 1, &c), TP_EINVAL);
    c = new_cache(TP_JWT_CACHE_DEFAULT);
    assert_int_equal(tp_jwt_cache_capacity(c), 4096);
    tp_jwt_cache_free(c);
    c = new_cache(1000);
    assert_int_equal(tp_jwt_cache_capacity(c), 1024);
    tp_jwt_cache_free(c);
    c = new_cache(3);
    assert_int_equal(tp_jwt_cache_capacity(c), 4);
    tp_jwt_cache_free(c);
    tp_jwt_cache_free(NULL);
}

static void test_insert_hit_expiry(void **state)
{
    (void)state;
    struct tp_jwt_cache *c = new_cache(64);
    unsigned char a[TP_JWT_DIGEST_LEN], b[TP_JWT_DIGEST_LEN];
    digest(a, 1, 1);
    digest(b, 1, 2);

    assert_false(tp_jwt_cache_lookup(c, a, NOW));
    tp_jwt_cache_insert(c, a, NOW + 10.7, NOW);
    assert_true(tp_jwt_cache_lookup(c, a, NOW));
    assert_true(tp_jwt_cache_lookup(c, a, NOW + 9.99));
    assert_false(tp_jwt_cache_lookup(c, b, NOW)); /* same set, other digest */
    /* expiry rounded down: the entry is gone at NOW + 10, before 10.7 */
    assert_false(tp_jwt_cache_lookup(c, a, NOW + 10.0));
    assert_false(tp_jwt_cache_lookup(c, a, NOW)); /* dropped when found expired */
    assert_int_equal(c->stats.hits, 2);
    assert_int_equal(c->stats.misses, 4);

    /* nothing stored for what has expired or expires within the current second */
    tp_jwt_cache_insert(c, b, NOW - 1, NOW);
    tp_jwt_cache_insert(c, b, NOW + 0.5, NOW + 0.2);
    assert_false(tp_jwt_cache_lookup(c, b, NOW));
    assert_int_equal(c->stats.inserts, 1);

    /* a second insert of the same digest updates its expiry, without a second slot */
    tp_jwt_cache_insert(c, b, NOW + 5, NOW);
    tp_jwt_cache_insert(c, b, NOW + 50, NOW);
    assert_true(tp_jwt_cache_lookup(c, b, NOW + 20));
    assert_int_equal(c->stats.inserts, 2);
    tp_jwt_cache_free(c);
}

static void test_clock_eviction(void **state)
{
    (void)state;
    /* 8 slots: a single set of 8 ways */
    struct tp_jwt_cache *c = new_cache(8);
    unsigned char d[16][TP_JWT_DIGEST_LEN];
    for (unsigned i = 0; i < 16; i++)
        digest(d[i], 0, i);
    for (unsigned i = 0; i < 8; i++)
        tp_jwt_cache_insert(c, d[i], NOW + 100, NOW);
    assert_int_equal(c->stats.evictions, 0);
    /* 0-3 are in use, 4-7 are not seen again: the hand passes over 0-3 (taking their bit)
     * and evicts 4, then 5 */
    for (unsigned i = 0; i < 4; i++)
        assert_true(tp_jwt_cache_lookup(c, d[i], NOW));
    tp_jwt_cache_insert(c, d[8], NOW + 100, NOW);
    tp_jwt_cache_insert(c, d[9], NOW + 100, NOW);
    assert_int_equal(c->stats.evictions, 2);
    assert_false(tp_jwt_cache_lookup(c, d[4], NOW));
    assert_false(tp_jwt_cache_lookup(c, d[5], NOW));
    /* 0-3 used again; a flood of six one-shot entries replaces 6, 7 and then itself (8-11),
     * never an entry in use */
    for (unsigned i = 0; i < 4; i++)
        assert_true(tp_jwt_cache_lookup(c, d[i], NOW));
    for (unsigned i = 10; i < 16; i++)
        tp_jwt_cache_insert(c, d[i], NOW + 100, NOW);
    assert_int_equal(c->stats.evictions, 8);
    for (unsigned i = 0; i < 16; i++)
        if ((i < 4 || i >= 12) != tp_jwt_cache_lookup(c, d[i], NOW))
            fail_msg("entry %u: %s", i, i < 4 || i >= 12 ? "evicted" : "still cached");
    /* an expired entry's slot is reused before anything is evicted */
    tp_jwt_cache_free(c);
    c = new_cache(8);
    for (unsigned i = 0; i < 8; i++)
        tp_jwt_cache_insert(c, d[i], i == 5 ? NOW + 1 : NOW + 100, NOW);
    tp_jwt_cache_insert(c, d[8], NOW + 100, NOW + 2);
    assert_int_equal(c->stats.evictions, 0);
    assert_false(tp_jwt_cache_lookup(c, d[5], NOW));
    for (unsigned i = 0; i < 9; i++)
        if (i != 5)
            assert_true(tp_jwt_cache_lookup(c, d[i], NOW + 2));
    tp_jwt_cache_free(c);
}

static void test_expiry_from_exp(void **state)
{
    (void)state;
    json_t *none = json_pack("{s:s}", "sub", "x");
    json_t *soon = json_pack("{s:f}", "exp", NOW + 2.5);
    json_t *late = json_pack("{s:I}", "exp", (json_int_t)NOW + 86400);
    json_t *past = json_pack("{s:I}", "exp", (json_int_t)NOW - 10);
    json_t *text = json_pack("{s:s}", "exp", "tomorrow");
    assert_true(tp_jwt_cache_expiry(none, NOW) == NOW + TP_JWT_CACHE_TTL);
    assert_true(tp_jwt_cache_expiry(soon, NOW) == NOW + 2.5);
    assert_true(tp_jwt_cache_expiry(late, NOW) == NOW + TP_JWT_CACHE_TTL);
    assert_true(tp_jwt_cache_expiry(past, NOW) == NOW - 10);
    assert_true(tp_jwt_cache_expiry(text, NOW) == 0);
    json_decref(none);
    json_decref(soon);
    json_decref(late);
    json_decref(past);
    json_decref(text);
}

/* ------------------------------------------------------------------------------------------ */
/* with real tokens                                                                           */

static void test_verify_cached(void **state)
{
    (void)state;
    EVP_PKEY *priv = gen_key("RSA", NULL), *other = gen_key("RSA", NULL);
    struct tp_jwt_key k, k_again, k_other, hmac;
    pem_key(priv, TP_JWT_ALG_ANY, &k);
    pem_key(priv, TP_JWT_ALG_ANY, &k_again);
    pem_key(other, TP_JWT_ALG_ANY, &k_other);
    assert_true(k.has_id);
    /* the identity is the key, not the object: same key twice, same id; other key, other id */
    assert_memory_equal(k.id, k_again.id, TP_JWT_KEY_ID_LEN);
    assert_memory_not_equal(k.id, k_other.id, TP_JWT_KEY_ID_LEN);
    assert_int_equal(
        tp_jwt_key_from_secret(&hmac, "0123456789abcdef0123456789abcdef", 32, TP_JWT_HS256, NULL),
        0);
    assert_false(hmac.has_id);

    char payload[64];
    snprintf(payload, sizeof(payload), "{\"sub\":\"a\",\"exp\":%.0f}", NOW + 60);
    char *tok = rs256(payload, priv);
    struct tp_jwt t;
    parse(tok, &t);
    struct tp_jwt_cache *c = new_cache(64);

    assert_int_equal(tp_jwt_verify_cached(c, &t, &k, NOW), 0);
    assert_int_equal(c->stats.misses, 1);
    assert_int_equal(c->stats.inserts, 1);
    assert_int_equal(tp_jwt_verify_cached(c, &t, &k, NOW + 1), 0);
    assert_int_equal(c->stats.hits, 1);
    /* a reloaded copy of the same key finds the entry */
    assert_int_equal(tp_jwt_verify_cached(c, &t, &k_again, NOW + 1), 0);
    assert_int_equal(c->stats.hits, 2);
    /* another key does not: it verifies, and fails */
    assert_int_equal(tp_jwt_verify_cached(c, &t, &k_other, NOW + 1), TP_EINVAL);
    assert_int_equal(tp_jwt_verify_cached(c, &t, &k_other, NOW + 1), TP_EINVAL);
    assert_int_equal(c->stats.inserts, 1); /* failures are never stored */
    /* the entry ends with the token's exp */
    assert_int_equal(tp_jwt_verify_cached(c, &t, &k, NOW + 60), 0);
    assert_int_equal(c->stats.hits, 2);
    assert_int_equal(c->stats.inserts, 1); /* exp reached: verified, not stored again */
    /* an algorithm the key does not allow is refused before the cache is asked */
    t.alg = TP_JWT_ES256;
    assert_int_equal(tp_jwt_verify_cached(c, &t, &k, NOW), TP_EINVAL);
    t.alg = TP_JWT_RS256;

    /* a flipped signature bit: verified (a miss), refused, never stored */
    t.sig[10] ^= 1;
    uint64_t misses = c->stats.misses;
    assert_int_equal(tp_jwt_verify_cached(c, &t, &k, NOW), TP_EINVAL);
    assert_int_equal(tp_jwt_verify_cached(c, &t, &k, NOW), TP_EINVAL);
    assert_int_equal(c->stats.misses, misses + 2);
    t.sig[10] ^= 1;

    /* digests: bound to the key, the signature, the input and the cache's salt */
    unsigned char d1[TP_JWT_DIGEST_LEN], d2[TP_JWT_DIGEST_LEN];
    assert_int_equal(tp_jwt_cache_digest(c, &t, &k, d1), 0);
    assert_int_equal(tp_jwt_cache_digest(c, &t, &k_again, d2), 0);
    assert_memory_equal(d1, d2, sizeof(d1));
    assert_int_equal(tp_jwt_cache_digest(c, &t, &k_other, d2), 0);
    assert_memory_not_equal(d1, d2, sizeof(d1));
    t.sig_len--;
    assert_int_equal(tp_jwt_cache_digest(c, &t, &k, d2), 0);
    assert_memory_not_equal(d1, d2, sizeof(d1));
    t.sig_len++;
    t.signing_input.len--;
    assert_int_equal(tp_jwt_cache_digest(c, &t, &k, d2), 0);
    assert_memory_not_equal(d1, d2, sizeof(d1));
    t.signing_input.len++;
    struct tp_jwt_cache *c2 = new_cache(64);
    assert_int_equal(tp_jwt_cache_digest(c2, &t, &k, d2), 0);
    assert_memory_not_equal(d1, d2, sizeof(d1));
    assert_int_equal(tp_jwt_cache_digest(c, &t, &hmac, d2), TP_EINVAL);

    /* without a cache: plain verification */
    assert_int_equal(tp_jwt_verify_cached(NULL, &t, &k, NOW), 0);
    assert_int_equal(tp_jwt_verify_cached(NULL, &t, &k_other, NOW), TP_EINVAL);

    tp_jwt_clear(&t);
    free(tok);
    tp_jwt_cache_free(c);
    tp_jwt_cache_free(c2);
    tp_jwt_key_clear(&k);
    tp_jwt_key_clear(&k_again);
    tp_jwt_key_clear(&k_other);
    tp_jwt_key_clear(&hmac);
    EVP_PKEY_free(priv);
    EVP_PKEY_free(other);
}

/* HMAC keys have no identity: their tokens are verified every time and take no slot. */
static void test_hmac_not_cached(void **state)
{
    (void)state;
    /* RFC 7515 A.1 */
    const char *tok = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjE"
                      "zMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4"
                      "CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const char *k64 = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgU"
                      "uTwjAzZr1Z9CAow";
    unsigned char secret[128];
    size_t n = 0;
    assert_int_equal(tp_jwt_b64_decode_any(k64, strlen(k64), secret, &n), 0);
    struct tp_jwt_key k;
    assert_int_equal(tp_jwt_key_from_secret(&k, secret, n, TP_JWT_HS256, NULL), 0);
    struct tp_jwt t;
    parse(tok, &t);
    struct tp_jwt_cache *c = new_cache(16);
    assert_int_equal(tp_jwt_verify_cached(c, &t, &k, 1300819000.0), 0);
    assert_int_equal(tp_jwt_verify_cached(c, &t, &k, 1300819000.0), 0);
    assert_int_equal(c->stats.hits + c->stats.misses + c->stats.inserts, 0);
    t.sig[0] ^= 1;
    assert_int_equal(tp_jwt_verify_cached(c, &t, &k, 1300819000.0), TP_EINVAL);
    tp_jwt_clear(&t);
    tp_jwt_key_clear(&k);
    tp_jwt_cache_free(c);
}

/* The same public key given as a JWK and as PEM has one identity. */
static void test_jwk_and_pem_same_id(void **state)
{
    (void)state;
    json_t *jwk = json_loads("{\"kty\":\"EC\",\"crv\":\"P-256\","
                             "\"x\":\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\","
                             "\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}",
                             0, NULL);
    struct tp_jwt_key a, b;
    const char *why = NULL;
    assert_int_equal(tp_jwt_key_from_jwk(&a, jwk, &why), 0);
    assert_true(a.has_id);
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(bio, a.pkey), 1);
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    assert_int_equal(tp_jwt_key_from_pem(&b, data, (size_t)n, TP_JWT_ALG_ANY, NULL, &why), 0);
    assert_true(b.has_id);
    assert_memory_equal(a.id, b.id, TP_JWT_KEY_ID_LEN);
    BIO_free(bio);
    tp_jwt_key_clear(&a);
    tp_jwt_key_clear(&b);
    assert_false(a.has_id);
    json_decref(jwk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_insert_hit_expiry),
        cmocka_unit_test(test_clock_eviction),
        cmocka_unit_test(test_expiry_from_exp),
        cmocka_unit_test(test_verify_cached),
        cmocka_unit_test(test_hmac_not_cached),
        cmocka_unit_test(test_jwk_and_pem_same_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
