/*
 * Test fixtures shared by the jwt unit tests (test_jwt.c, test_jwt_cache.c): base64url,
 * signing a token with a key made here, and a key's public half as PEM. Include after
 * cmocka.h: failures are reported with cmocka's asserts. Everything returned is malloc'd.
 */
#ifndef TURNPIKE_TESTS_UNIT_JWT_FIXTURES_H
#define TURNPIKE_TESTS_UNIT_JWT_FIXTURES_H

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugins/jwt_verify.h"

/* base64url without padding (RFC 7515 §2) of p[0..n). */
static inline char *b64url(const unsigned char *p, size_t n)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *out = malloc(n / 3 * 4 + 5), *o = out;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = tbl[v >> 18];
        *o++ = tbl[(v >> 12) & 63];
        *o++ = tbl[(v >> 6) & 63];
        *o++ = tbl[v & 63];
    }
    if (n - i == 1) {
        *o++ = tbl[p[i] >> 2];
        *o++ = tbl[(p[i] & 3) << 4];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 8 | p[i + 1];
        *o++ = tbl[v >> 10];
        *o++ = tbl[(v >> 4) & 63];
        *o++ = tbl[(v & 15) << 2];
    }
    *o = '\0';
    return out;
}

/* base64url of a NUL-terminated string. */
static inline char *b64url_str(const char *s)
{
    return b64url((const unsigned char *)s, strlen(s));
}

/* The digest of alg (SHA-256/384/512 by its last digits); NULL for EdDSA. */
static inline const EVP_MD *md_of(enum tp_jwt_alg alg)
{
    static const char *const names[] = {"SHA256", "SHA384", "SHA512"};
    int i = alg == TP_JWT_EDDSA ? -1 : (int)alg % 3;
    return i < 0 ? NULL : EVP_get_digestbyname(names[i]);
}

/* Sign "header.payload" with alg: HS* with secret, else priv. Returns a malloc'd token. */
static inline char *sign_token(const char *header, const char *payload, enum tp_jwt_alg alg,
                               EVP_PKEY *priv, const char *secret)
{
    char *h = b64url_str(header), *p = b64url_str(payload);
    size_t in_len = strlen(h) + 1 + strlen(p);
    char *input = malloc(in_len + 1);
    snprintf(input, in_len + 1, "%s.%s", h, p);
    unsigned char sig[1024];
    size_t sig_len = sizeof(sig);
    const EVP_MD *md = md_of(alg);

    if (alg <= TP_JWT_HS512) {
        assert_non_null(EVP_Q_mac(NULL, "HMAC", NULL, EVP_MD_get0_name(md), NULL, secret,
                                  strlen(secret), (unsigned char *)input, in_len, sig,
                                  sizeof(sig), &sig_len));
    } else {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        EVP_PKEY_CTX *pctx = NULL;
        assert_int_equal(EVP_DigestSignInit(ctx, &pctx, md, NULL, priv), 1);
        if (alg >= TP_JWT_PS256 && alg <= TP_JWT_PS512) {
            assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
            assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST), 1);
        }
        assert_int_equal(EVP_DigestSign(ctx, sig, &sig_len, (unsigned char *)input, in_len), 1);
        EVP_MD_CTX_free(ctx);
        if (alg >= TP_JWT_ES256 && alg <= TP_JWT_ES512) {
            size_t field = alg == TP_JWT_ES256 ? 32 : alg == TP_JWT_ES384 ? 48 : 66;
            const unsigned char *q = sig;
            ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &q, (long)sig_len);
            assert_non_null(es);
            BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, (int)field);
            BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + field, (int)field);
            sig_len = 2 * field;
            ECDSA_SIG_free(es);
        }
    }
    char *s = b64url(sig, sig_len);
    size_t len = in_len + 1 + strlen(s);
    char *tok = malloc(len + 1);
    snprintf(tok, len + 1, "%s.%s", input, s);
    free(h);
    free(p);
    free(input);
    free(s);
    return tok;
}

/* A new private key: "RSA" (2048 bits), "EC" on curve `group`, or another type by name. */
static inline EVP_PKEY *gen_key(const char *type, const char *group)
{
    EVP_PKEY *k = NULL;
    if (!strcmp(type, "RSA"))
        k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    else if (!strcmp(type, "EC"))
        k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", group);
    else
        k = EVP_PKEY_Q_keygen(NULL, NULL, type);
    assert_non_null(k);
    return k;
}

/* The public half of priv as SubjectPublicKeyInfo PEM (malloc'd). */
static inline char *public_pem(EVP_PKEY *priv)
{
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_PUBKEY(bio, priv), 1);
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    char *pem = malloc((size_t)n + 1);
    memcpy(pem, data, (size_t)n);
    pem[n] = '\0';
    BIO_free(bio);
    return pem;
}

/* The public half of priv as a tp_jwt_key for alg (TP_JWT_ALG_ANY: any of its type). */
static inline void pem_key(EVP_PKEY *priv, int alg, struct tp_jwt_key *k)
{
    char *pem = public_pem(priv);
    const char *why = NULL;
    int rc = tp_jwt_key_from_pem(k, pem, strlen(pem), alg, NULL, &why);
    if (rc != 0)
        fail_msg("PEM refused: %s", why);
    free(pem);
}

#endif
