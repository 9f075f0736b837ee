/*
 * turnpike — JWS parsing, key loading and verification (see jwt_verify.h for the rules).
 *
 * Nothing here knows about requests: the plugin (jwt.c), the unit tests and the fuzz target
 * call these functions directly. OpenSSL 3 EVP does all cryptography; jansson all JSON.
 */
#include "plugins/jwt_verify.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define RSA_MIN_BITS 2048     /* RFC 7518 §3.3, §3.5 */
#define MAX_HMAC_SECRET 4096  /* bytes of an oct JWK's k */

static const char *const alg_names[TP_JWT_ALG_COUNT] = {
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256",
    "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
};

/* ------------------------------------------------------------------------------------------ */
/* Algorithms                                                                                 */

int tp_jwt_alg_from_name(const char *name, size_t len)
{
    for (int i = 0; i < TP_JWT_ALG_COUNT; i++)
        if (strlen(alg_names[i]) == len && memcmp(alg_names[i], name, len) == 0)
            return i;
    return -1;
}

const char *tp_jwt_alg_name(enum tp_jwt_alg alg)
{
    return (unsigned)alg < TP_JWT_ALG_COUNT ? alg_names[alg] : "?";
}

enum tp_jwt_alg tp_jwt_key_default_alg(enum tp_jwt_key_type type)
{
    switch (type) {
    case TP_JWT_KEY_HMAC:
        return TP_JWT_HS256;
    case TP_JWT_KEY_RSA:
        return TP_JWT_RS256;
    case TP_JWT_KEY_P256:
        return TP_JWT_ES256;
    case TP_JWT_KEY_P384:
        return TP_JWT_ES384;
    case TP_JWT_KEY_P521:
        return TP_JWT_ES512;
    case TP_JWT_KEY_ED25519:
        break;
    }
    return TP_JWT_EDDSA;
}

/* Which key type an algorithm needs: the whole defence against algorithm confusion. */
static bool type_allows(enum tp_jwt_key_type type, enum tp_jwt_alg alg)
{
    switch (alg) {
    case TP_JWT_HS256:
    case TP_JWT_HS384:
    case TP_JWT_HS512:
        return type == TP_JWT_KEY_HMAC;
    case TP_JWT_RS256:
    case TP_JWT_RS384:
    case TP_JWT_RS512:
    case TP_JWT_PS256:
    case TP_JWT_PS384:
    case TP_JWT_PS512:
        return type == TP_JWT_KEY_RSA;
    case TP_JWT_ES256:
        return type == TP_JWT_KEY_P256;
    case TP_JWT_ES384:
        return type == TP_JWT_KEY_P384;
    case TP_JWT_ES512:
        return type == TP_JWT_KEY_P521;
    case TP_JWT_EDDSA:
        return type == TP_JWT_KEY_ED25519;
    case TP_JWT_ALG_COUNT:
        break;
    }
    return false;
}

bool tp_jwt_key_allows(const struct tp_jwt_key *k, enum tp_jwt_alg alg)
{
    if ((unsigned)alg >= TP_JWT_ALG_COUNT || !type_allows(k->type, alg))
        return false;
    return k->alg == TP_JWT_ALG_ANY || k->alg == (int)alg;
}

/* SHA-2 size of an algorithm: 256, 384 or 512 (EdDSA hashes internally: 0). */
static int alg_bits(enum tp_jwt_alg alg)
{
    static const int bits[TP_JWT_ALG_COUNT] = {256, 384, 512, 256, 384, 512, 256,
                                               384, 512, 256, 384, 512, 0};
    return bits[alg];
}

static const EVP_MD *alg_md(enum tp_jwt_alg alg)
{
    switch (alg_bits(alg)) {
    case 256:
        return EVP_sha256();
    case 384:
        return EVP_sha384();
    case 512:
        return EVP_sha512();
    }
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* base64                                                                                     */

/* Character -> 6-bit value: 0..63 for the url alphabet (RFC 4648 §5), 0x40 | value for '+'
 * and '/' (standard alphabet, lenient decoding only), 0xff for everything else. A table
 * rather than comparisons: every request decodes a whole token. */
static const unsigned char b64_table[256] = {
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7e, 0xff, 0x3e, 0xff, 0x7f,
    0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
    0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0xff, 0xff, 0xff, 0xff, 0x3f,
    0xff, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28,
    0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
};

/* Decode without padding, four characters at a time; strict refuses the standard alphabet
 * and non-zero leftover bits. */
static int b64_decode(const char *in, size_t len, unsigned char *out, size_t cap,
                      size_t *out_len, bool lenient)
{
    const unsigned char *s = (const unsigned char *)in;
    const unsigned bad = lenient ? 0x80 : 0xc0;
    if (len % 4 == 1)
        return TP_EINVAL;
    size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (need > cap)
        return TP_ETOOBIG;
    size_t i = 0, o = 0;
    for (; i + 4 <= len; i += 4) {
        unsigned a = b64_table[s[i]], b = b64_table[s[i + 1]];
        unsigned c = b64_table[s[i + 2]], d = b64_table[s[i + 3]];
        if ((a | b | c | d) & bad)
            return TP_EINVAL;
        uint32_t v = (a & 63) << 18 | (b & 63) << 12 | (c & 63) << 6 | (d & 63);
        out[o++] = (unsigned char)(v >> 16);
        out[o++] = (unsigned char)(v >> 8);
        out[o++] = (unsigned char)v;
    }
    if (i < len) {
        /* 2 characters: one byte and 4 leftover bits; 3: two bytes and 2 leftover bits */
        unsigned a = b64_table[s[i]], b = b64_table[s[i + 1]];
        unsigned c = len - i == 3 ? b64_table[s[i + 2]] : 0;
        if ((a | b | c) & bad)
            return TP_EINVAL;
        uint32_t v = (a & 63) << 18 | (b & 63) << 12 | (c & 63) << 6;
        out[o++] = (unsigned char)(v >> 16);
        if (len - i == 3)
            out[o++] = (unsigned char)(v >> 8);
        uint32_t leftover = len - i == 3 ? v & 0xff : v & 0xffff;
        if (leftover != 0 && !lenient)
            return TP_EINVAL; /* a second spelling of the same bytes */
    }
    *out_len = o;
    return 0;
}

int tp_jwt_b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap,
                         size_t *out_len)
{
    return b64_decode(in, len, out, cap, out_len, false);
}

int tp_jwt_b64_decode_any(const char *in, size_t len, unsigned char *out, size_t *out_len)
{
    while (len > 0 && in[len - 1] == '=')
        len--;
    int rc = b64_decode(in, len, out, len / 4 * 3 + 3, out_len, true);
    return rc == 0 ? 0 : TP_EINVAL;
}

/* ------------------------------------------------------------------------------------------ */
/* Keys                                                                                       */

void tp_jwt_key_clear(struct tp_jwt_key *k)
{
    free(k->kid);
    EVP_PKEY_free(k->pkey);
    if (k->secret)
        OPENSSL_cleanse(k->secret, k->secret_len);
    free(k->secret);
    EVP_MAC_free(k->mac);
    memset(k, 0, sizeof(*k));
    k->alg = TP_JWT_ALG_ANY;
}

static int set_kid(struct tp_jwt_key *k, const char *kid, size_t len)
{
    if (!kid)
        return 0;
    k->kid = malloc(len + 1);
    if (!k->kid)
        return TP_ENOMEM;
    memcpy(k->kid, kid, len);
    k->kid[len] = '\0';
    return 0;
}

int tp_jwt_key_from_secret(struct tp_jwt_key *k, const void *secret, size_t len, int alg,
                           const char *kid)
{
    memset(k, 0, sizeof(*k));
    k->alg = alg;
    k->type = TP_JWT_KEY_HMAC;
    if (len == 0 || (alg != TP_JWT_ALG_ANY && !type_allows(TP_JWT_KEY_HMAC, alg)))
        return TP_EINVAL;
    k->secret = malloc(len);
    k->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (!k->secret || !k->mac || set_kid(k, kid, kid ? strlen(kid) : 0) != 0) {
        tp_jwt_key_clear(k);
        ERR_clear_error();
        return TP_ENOMEM;
    }
    memcpy(k->secret, secret, len);
    k->secret_len = len;
    return 0;
}

/* Key type of a public key, or -1 with *why set. */
static int classify(EVP_PKEY *pkey, enum tp_jwt_key_type *type, const char **why)
{
    if (EVP_PKEY_is_a(pkey, "RSA")) {
        if (EVP_PKEY_get_bits(pkey) < RSA_MIN_BITS) {
            *why = "RSA key shorter than 2048 bits (RFC 7518 §3.3)";
            return -1;
        }
        *type = TP_JWT_KEY_RSA;
        return 0;
    }
    if (EVP_PKEY_is_a(pkey, "ED25519")) {
        *type = TP_JWT_KEY_ED25519;
        return 0;
    }
    if (EVP_PKEY_is_a(pkey, "EC")) {
        char group[64];
        size_t glen = 0;
        if (EVP_PKEY_get_group_name(pkey, group, sizeof(group), &glen) != 1)
            glen = 0;
        group[TP_MIN(glen, sizeof(group) - 1)] = '\0';
        if (!strcmp(group, "prime256v1") || !strcmp(group, "P-256"))
            *type = TP_JWT_KEY_P256;
        else if (!strcmp(group, "secp384r1") || !strcmp(group, "P-384"))
            *type = TP_JWT_KEY_P384;
        else if (!strcmp(group, "secp521r1") || !strcmp(group, "P-521"))
            *type = TP_JWT_KEY_P521;
        else {
            *why = "EC key on a curve other than P-256, P-384 or P-521";
            return -1;
        }
        return 0;
    }
    *why = "unsupported public key type (RSA, EC or Ed25519 expected)";
    return -1;
}

/* SHA-256 of pkey's DER SubjectPublicKeyInfo (tp_jwt_key.id). False when it cannot be
 * encoded: the key then works as before, only without the verification cache. */
static bool spki_id(EVP_PKEY *pkey, unsigned char id[TP_JWT_KEY_ID_LEN])
{
    unsigned char *der = NULL;
    unsigned int len = 0;
    int n = i2d_PUBKEY(pkey, &der);
    bool ok = n > 0 && EVP_Digest(der, (size_t)n, id, &len, EVP_sha256(), NULL) == 1 &&
              len == TP_JWT_KEY_ID_LEN;
    OPENSSL_free(der);
    ERR_clear_error();
    return ok;
}

/* Take pkey into k after checking its type against alg. Frees pkey on error. */
static int adopt_pkey(struct tp_jwt_key *k, EVP_PKEY *pkey, int alg, const char **why)
{
    enum tp_jwt_key_type type;
    if (classify(pkey, &type, why) != 0) {
        EVP_PKEY_free(pkey);
        return TP_EINVAL;
    }
    if (alg != TP_JWT_ALG_ANY && !type_allows(type, alg)) {
        *why = "the key's type does not suit its algorithm";
        EVP_PKEY_free(pkey);
        return TP_EINVAL;
    }
    k->pkey = pkey;
    k->type = type;
    k->alg = alg;
    k->has_id = spki_id(pkey, k->id);
    return 0;
}

static EVP_PKEY *pem_decode(const char *pem, size_t len)
{
    EVP_PKEY *pkey = NULL;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        return NULL;
    if (memmem(pem, len, "-----BEGIN CERTIFICATE-----", 27)) {
        X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
        if (x)
            pkey = X509_get_pubkey(x);
        X509_free(x);
    } else {
        OSSL_DECODER_CTX *dctx = OSSL_DECODER_CTX_new_for_pkey(
            &pkey, "PEM", NULL, NULL, EVP_PKEY_PUBLIC_KEY, NULL, NULL);
        if (dctx && OSSL_DECODER_from_bio(dctx, bio) != 1) {
            EVP_PKEY_free(pkey);
            pkey = NULL;
        }
        OSSL_DECODER_CTX_free(dctx);
    }
    BIO_free(bio);
    return pkey;
}

int tp_jwt_key_from_pem(struct tp_jwt_key *k, const char *pem, size_t len, int alg,
                        const char *kid, const char **why)
{
    memset(k, 0, sizeof(*k));
    k->alg = TP_JWT_ALG_ANY;
    if (len == 0 || len > INT32_MAX) {
        *why = "empty public key";
        return TP_EINVAL;
    }
    EVP_PKEY *pkey = pem_decode(pem, len);
    ERR_clear_error();
    if (!pkey) {
        *why = "not a PEM public key or certificate";
        return TP_EINVAL;
    }
    int rc = adopt_pkey(k, pkey, alg, why);
    if (rc == 0 && set_kid(k, kid, kid ? strlen(kid) : 0) != 0)
        rc = TP_ENOMEM;
    if (rc != 0)
        tp_jwt_key_clear(k);
    return rc;
}

/* --- JWK (RFC 7517, RFC 7518 §6, RFC 8037 §2) --- */

/* Decode member `name` of jwk (a base64url string) into out[0..cap). */
static int jwk_bytes(const json_t *jwk, const char *name, unsigned char *out, size_t cap,
                     size_t *len)
{
    const json_t *v = json_object_get(jwk, name);
    if (!json_is_string(v))
        return TP_EINVAL;
    return tp_jwt_b64url_decode(json_string_value(v), json_string_length(v), out, cap, len) ==
                   0 && *len > 0
               ? 0
               : TP_EINVAL;
}

/* Build a public key from OSSL_PARAMs, then check it (EC: point on the curve). */
static EVP_PKEY *pkey_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = params ? EVP_PKEY_CTX_new_from_name(NULL, type, NULL) : NULL;
    if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        goto out;
    EVP_PKEY_CTX *check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (!check || EVP_PKEY_public_check(check) != 1) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
    EVP_PKEY_CTX_free(check);
out:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

static EVP_PKEY *jwk_rsa(const json_t *jwk, const char **why)
{
    unsigned char n[TP_JWT_MAX_SIG], e[16];
    size_t nlen, elen;
    EVP_PKEY *pkey = NULL;
    if (jwk_bytes(jwk, "n", n, sizeof(n), &nlen) != 0 ||
        jwk_bytes(jwk, "e", e, sizeof(e), &elen) != 0) {
        *why = "RSA JWK without valid n and e";
        return NULL;
    }
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    BIGNUM *bn = BN_bin2bn(n, (int)nlen, NULL), *be = BN_bin2bn(e, (int)elen, NULL);
    if (bld && bn && be && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) == 1 &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) == 1)
        pkey = pkey_fromdata("RSA", bld);
    if (!pkey)
        *why = "RSA JWK rejected by OpenSSL";
    BN_free(bn);
    BN_free(be);
    OSSL_PARAM_BLD_free(bld);
    return pkey;
}

static EVP_PKEY *jwk_ec(const json_t *jwk, const char **why)
{
    static const struct {
        const char *crv;
        size_t field;
    } curves[] = {{"P-256", 32}, {"P-384", 48}, {"P-521", 66}};
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    size_t field = 0;
    for (size_t i = 0; crv && i < TP_ARRAY_LEN(curves); i++)
        if (!strcmp(crv, curves[i].crv))
            field = curves[i].field;
    if (!field) {
        *why = "EC JWK on an unsupported curve";
        return NULL;
    }
    /* RFC 7518 §6.2.1.2 wants x and y of exactly the field's size, but some libraries drop
     * leading zero bytes (half of all P-521 keys then lose a byte): shorter values are padded
     * on the left, which names the same point; the point is checked on the curve below. */
    unsigned char pub[1 + 2 * 66] = {0x04}, x[80], y[80];
    size_t xlen, ylen;
    if (jwk_bytes(jwk, "x", x, sizeof(x), &xlen) != 0 ||
        jwk_bytes(jwk, "y", y, sizeof(y), &ylen) != 0 || xlen > field || ylen > field) {
        *why = "EC JWK without valid x and y";
        return NULL;
    }
    memcpy(pub + 1 + field - xlen, x, xlen);
    memcpy(pub + 1 + 2 * field - ylen, y, ylen);
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    if (bld && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, crv, 0) == 1 &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, 1 + 2 * field) == 1)
        pkey = pkey_fromdata("EC", bld);
    if (!pkey)
        *why = "EC JWK is not a point of its curve";
    OSSL_PARAM_BLD_free(bld);
    return pkey;
}

static EVP_PKEY *jwk_okp(const json_t *jwk, const char **why)
{
    unsigned char x[64];
    size_t xlen;
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    if (!crv || strcmp(crv, "Ed25519") != 0) {
        *why = "OKP JWK on a curve other than Ed25519";
        return NULL;
    }
    if (jwk_bytes(jwk, "x", x, sizeof(x), &xlen) != 0 || xlen != 32) {
        *why = "OKP JWK without a valid x";
        return NULL;
    }
    EVP_PKEY *pkey = EVP_PKEY_new_raw_public_key_ex(NULL, "ED25519", NULL, x, xlen);
    if (!pkey)
        *why = "Ed25519 JWK rejected by OpenSSL";
    return pkey;
}

/* `use` must be "sig" and `key_ops` must allow "verify" when present (RFC 7517 §4.2-4.3). */
static bool jwk_for_verify(const json_t *jwk)
{
    const json_t *use = json_object_get(jwk, "use");
    if (use && (!json_is_string(use) || strcmp(json_string_value(use), "sig") != 0))
        return false;
    const json_t *ops = json_object_get(jwk, "key_ops");
    if (!ops)
        return true;
    size_t i;
    const json_t *op;
    json_array_foreach(ops, i, op)
        if (json_is_string(op) && !strcmp(json_string_value(op), "verify"))
            return true;
    return false;
}

static int jwk_oct(struct tp_jwt_key *k, const json_t *jwk, int alg, const char **why)
{
    unsigned char *secret = malloc(MAX_HMAC_SECRET);
    size_t len = 0;
    if (!secret)
        return TP_ENOMEM;
    int rc = jwk_bytes(jwk, "k", secret, MAX_HMAC_SECRET, &len);
    if (rc == 0)
        rc = tp_jwt_key_from_secret(k, secret, len, alg, NULL);
    else
        *why = "oct JWK without a valid k";
    if (rc == TP_EINVAL && len > 0)
        *why = "oct JWK with a non-HMAC alg";
    OPENSSL_cleanse(secret, MAX_HMAC_SECRET);
    free(secret);
    return rc;
}

int tp_jwt_key_from_jwk(struct tp_jwt_key *k, const json_t *jwk, const char **why)
{
    memset(k, 0, sizeof(*k));
    k->alg = TP_JWT_ALG_ANY;
    if (!json_is_object(jwk)) {
        *why = "JWK is not an object";
        return TP_EINVAL;
    }
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    const json_t *jalg = json_object_get(jwk, "alg");
    const json_t *jkid = json_object_get(jwk, "kid");
    int alg = TP_JWT_ALG_ANY;
    if (!kty) {
        *why = "JWK without kty";
        return TP_EINVAL;
    }
    if (!jwk_for_verify(jwk)) {
        *why = "JWK not meant for signature verification (use/key_ops)";
        return TP_EINVAL;
    }
    if (jalg && (!json_is_string(jalg) ||
                 (alg = tp_jwt_alg_from_name(json_string_value(jalg),
                                             json_string_length(jalg))) < 0)) {
        *why = "JWK with an unsupported alg";
        return TP_EINVAL;
    }
    if (jkid && (!json_is_string(jkid) || json_string_length(jkid) > TP_JWT_MAX_KID)) {
        *why = "JWK with an invalid kid";
        return TP_EINVAL;
    }
    int rc;
    if (!strcmp(kty, "oct")) {
        rc = jwk_oct(k, jwk, alg, why);
    } else {
        EVP_PKEY *pkey = NULL;
        if (!strcmp(kty, "RSA"))
            pkey = jwk_rsa(jwk, why);
        else if (!strcmp(kty, "EC"))
            pkey = jwk_ec(jwk, why);
        else if (!strcmp(kty, "OKP"))
            pkey = jwk_okp(jwk, why);
        else
            *why = "JWK with an unsupported kty";
        rc = pkey ? adopt_pkey(k, pkey, alg, why) : TP_EINVAL;
    }
    ERR_clear_error();
    if (rc == 0 && jkid &&
        set_kid(k, json_string_value(jkid), json_string_length(jkid)) != 0)
        rc = TP_ENOMEM;
    if (rc != 0)
        tp_jwt_key_clear(k);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Tokens                                                                                     */

/* Nesting depth of a JSON text stays within max (strings are skipped). Bounds jansson's
 * recursion well below its own limit. */
static bool depth_ok(const unsigned char *s, size_t len, int max)
{
    int depth = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max)
                return false;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return true;
}

/* Decode one base64url segment holding a JSON object. buf is scratch of cap bytes. */
static json_t *segment_object(const char *seg, size_t len, unsigned char *buf, size_t cap)
{
    size_t n;
    if (len == 0 || tp_jwt_b64url_decode(seg, len, buf, cap, &n) != 0 ||
        !depth_ok(buf, n, TP_JWT_MAX_DEPTH))
        return NULL;
    json_t *v = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, NULL);
    if (v && !json_is_object(v)) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

/* Header checks of RFC 7515 §4.1 / RFC 8725; fills t->alg and t->kid. */
static int check_header(struct tp_jwt *t, const char **why)
{
    const json_t *h = t->header;
    if (json_object_get(h, "enc") || json_object_get(h, "zip")) {
        *why = "JWE header (enc/zip) in a JWS";
        return TP_EINVAL;
    }
    const json_t *alg = json_object_get(h, "alg");
    if (!alg) {
        *why = "missing alg";
        return TP_EINVAL;
    }
    if (!json_is_string(alg)) {
        *why = "alg is not a string";
        return TP_EINVAL;
    }
    if (!strcasecmp(json_string_value(alg), "none")) {
        *why = "alg none refused";
        return TP_EINVAL;
    }
    int a = tp_jwt_alg_from_name(json_string_value(alg), json_string_length(alg));
    if (a < 0) {
        *why = "unsupported alg";
        return TP_EINVAL;
    }
    t->alg = (enum tp_jwt_alg)a;
    if (json_object_get(h, "crit")) {
        *why = "crit header names an unsupported extension";
        return TP_EINVAL;
    }
    const char *cty = json_string_value(json_object_get(h, "cty"));
    if (cty && !strcasecmp(cty, "JWT")) {
        *why = "nested JWT refused";
        return TP_EINVAL;
    }
    const json_t *kid = json_object_get(h, "kid");
    if (kid) {
        if (!json_is_string(kid) || json_string_length(kid) > TP_JWT_MAX_KID) {
            *why = "invalid kid";
            return TP_EINVAL;
        }
        t->kid = (struct tp_slice){json_string_value(kid), json_string_length(kid)};
    }
    return 0;
}

void tp_jwt_clear(struct tp_jwt *t)
{
    json_decref(t->header);
    json_decref(t->claims);
    t->header = t->claims = NULL;
}

int tp_jwt_parse(const char *token, size_t len, struct tp_jwt *t, const char **why)
{
    unsigned char buf[TP_JWT_MAX_TOKEN];
    t->header = t->claims = NULL;
    t->kid = (struct tp_slice){NULL, 0};
    t->sig_len = 0;
    if (len > TP_JWT_MAX_TOKEN) {
        *why = "token too large";
        return TP_ETOOBIG;
    }
    const char *d1 = len ? memchr(token, '.', len) : NULL;
    const char *d2 = d1 ? memchr(d1 + 1, '.', (size_t)(token + len - d1 - 1)) : NULL;
    if (!d2 || memchr(d2 + 1, '.', (size_t)(token + len - d2 - 1))) {
        *why = "not a compact JWS (three segments expected)";
        return TP_EINVAL;
    }
    const char *sig = d2 + 1;
    size_t sig_len = (size_t)(token + len - sig);
    t->signing_input = (struct tp_slice){token, (size_t)(d2 - token)};
    t->header = segment_object(token, (size_t)(d1 - token), buf, sizeof(buf));
    if (!t->header) {
        *why = "malformed header";
        return TP_EINVAL;
    }
    int rc = check_header(t, why);
    if (rc != 0)
        goto fail;
    rc = TP_EINVAL;
    t->claims = segment_object(d1 + 1, (size_t)(d2 - d1 - 1), buf, sizeof(buf));
    if (!t->claims) {
        *why = "malformed claims";
        goto fail;
    }
    if (sig_len == 0) {
        *why = "missing signature";
        goto fail;
    }
    if (tp_jwt_b64url_decode(sig, sig_len, t->sig, sizeof(t->sig), &t->sig_len) != 0) {
        *why = "malformed signature";
        goto fail;
    }
    return 0;
fail:
    tp_jwt_clear(t);
    t->kid = (struct tp_slice){NULL, 0};
    return rc;
}

/* --- signatures --- */

static int verify_hmac(const struct tp_jwt *t, const struct tp_jwt_key *k)
{
    unsigned char tag[EVP_MAX_MD_SIZE];
    size_t tag_len = 0;
    char digest[8];
    int bits = alg_bits(t->alg);
    memcpy(digest, bits == 256 ? "SHA256" : bits == 384 ? "SHA384" : "SHA512", 7);
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(k->mac);
    int ok = ctx && EVP_MAC_init(ctx, k->secret, k->secret_len, params) == 1 &&
             EVP_MAC_update(ctx, (const unsigned char *)t->signing_input.ptr,
                            t->signing_input.len) == 1 &&
             EVP_MAC_final(ctx, tag, &tag_len, sizeof(tag)) == 1;
    EVP_MAC_CTX_free(ctx);
    if (!ok) {
        ERR_clear_error();
        return ctx ? TP_EINVAL : TP_ENOMEM;
    }
    ok = tag_len == t->sig_len && CRYPTO_memcmp(tag, t->sig, tag_len) == 0;
    OPENSSL_cleanse(tag, sizeof(tag));
    return ok ? 0 : TP_EINVAL;
}

/* R||S (RFC 7518 §3.4) to the DER ECDSA-Sig-Value EVP expects. 0 or TP_EINVAL. */
static int ecdsa_der(const struct tp_jwt *t, size_t field, unsigned char *der, size_t cap,
                     size_t *der_len)
{
    if (t->sig_len != 2 * field)
        return TP_EINVAL;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(t->sig, (int)field, NULL);
    BIGNUM *s = BN_bin2bn(t->sig + field, (int)field, NULL);
    int rc = TP_EINVAL;
    if (!es || !r || !s || ECDSA_SIG_set0(es, r, s) != 1) {
        BN_free(r);
        BN_free(s);
        goto out;
    }
    int n = i2d_ECDSA_SIG(es, NULL);
    unsigned char *p = der;
    if (n > 0 && (size_t)n <= cap && i2d_ECDSA_SIG(es, &p) == n) {
        *der_len = (size_t)n;
        rc = 0;
    }
out:
    ECDSA_SIG_free(es);
    return rc;
}

static int verify_pkey(const struct tp_jwt *t, const struct tp_jwt_key *k)
{
    unsigned char der[2 * 66 + 16];
    const unsigned char *sig = t->sig;
    size_t sig_len = t->sig_len;
    const EVP_MD *md = alg_md(t->alg);
    bool pss = t->alg >= TP_JWT_PS256 && t->alg <= TP_JWT_PS512;

    if (k->type == TP_JWT_KEY_RSA && (int)sig_len != EVP_PKEY_get_size(k->pkey))
        return TP_EINVAL;
    if (k->type == TP_JWT_KEY_P256 || k->type == TP_JWT_KEY_P384 ||
        k->type == TP_JWT_KEY_P521) {
        size_t field = k->type == TP_JWT_KEY_P256 ? 32 : k->type == TP_JWT_KEY_P384 ? 48 : 66;
        if (ecdsa_der(t, field, der, sizeof(der), &sig_len) != 0)
            return TP_EINVAL;
        sig = der;
    }
    if (k->type == TP_JWT_KEY_ED25519 && sig_len != 64)
        return TP_EINVAL;

    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    int ok = ctx && EVP_DigestVerifyInit(ctx, &pctx, md, NULL, k->pkey) == 1;
    if (ok && pss)
        ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1 &&
             EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) == 1;
    if (ok)
        ok = EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *)t->signing_input.ptr,
                              t->signing_input.len) == 1;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    if (!ctx)
        return TP_ENOMEM;
    return ok ? 0 : TP_EINVAL;
}

int tp_jwt_verify(const struct tp_jwt *t, const struct tp_jwt_key *k)
{
    if (!tp_jwt_key_allows(k, t->alg))
        return TP_EINVAL;
    if (k->type == TP_JWT_KEY_HMAC)
        return k->secret && k->mac ? verify_hmac(t, k) : TP_EINVAL;
    return k->pkey ? verify_pkey(t, k) : TP_EINVAL;
}

/* ------------------------------------------------------------------------------------------ */
/* Claims                                                                                     */

/* A NumericDate claim: absent (0), a number (1, *v set) or of another type (-1). */
static int numeric_date(const json_t *claims, const char *name, double *v)
{
    const json_t *c = json_object_get(claims, name);
    if (!c)
        return 0;
    if (!json_is_number(c))
        return -1;
    *v = json_number_value(c);
    return 1;
}

static bool in_list(const char *s, char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] && !strcmp(s, list[i]))
            return true;
    return false;
}

/* aud is a string or an array of strings (RFC 7519 §4.1.3); one must be accepted. */
static bool audience_ok(const json_t *aud, const struct tp_jwt_rules *r)
{
    if (json_is_string(aud))
        return in_list(json_string_value(aud), r->audiences, r->num_audiences);
    if (!json_is_array(aud))
        return false;
    size_t i;
    const json_t *a;
    bool found = false;
    json_array_foreach(aud, i, a) {
        if (!json_is_string(a))
            return false;
        found = found || in_list(json_string_value(a), r->audiences, r->num_audiences);
    }
    return found;
}

static int check_times(const json_t *claims, const struct tp_jwt_rules *r, double now,
                       const char **why)
{
    double exp = 0, nbf = 0, iat = 0;
    int has_exp = numeric_date(claims, "exp", &exp);
    int has_nbf = numeric_date(claims, "nbf", &nbf);
    int has_iat = numeric_date(claims, "iat", &iat);

    if (has_exp < 0 || has_nbf < 0 || has_iat < 0) {
        *why = has_exp < 0 ? "exp is not a number" : has_nbf < 0 ? "nbf is not a number"
                                                                  : "iat is not a number";
        return TP_EINVAL;
    }
    bool need_exp = r->require_exp || r->max_lifetime > 0 || r->max_expiration > 0;
    if (!has_exp && need_exp) {
        *why = "token has no exp";
        return TP_EINVAL;
    }
    if (!has_nbf && r->require_nbf) {
        *why = "token has no nbf";
        return TP_EINVAL;
    }
    /* RFC 7519 §4.1.4: now must be before exp; §4.1.5: now at or after nbf. */
    if (has_exp && now - r->leeway >= exp) {
        *why = "token expired";
        return TP_EINVAL;
    }
    if (has_nbf && now + r->leeway < nbf) {
        *why = "token not valid yet (nbf)";
        return TP_EINVAL;
    }
    if (has_iat && now + r->leeway < iat) {
        *why = "token issued in the future (iat)";
        return TP_EINVAL;
    }
    if (r->max_expiration > 0 && exp - now > r->max_expiration) {
        *why = "exp exceeds maximum_expiration";
        return TP_EINVAL;
    }
    if (r->max_lifetime > 0 &&
        (exp - now > r->max_lifetime + r->leeway || (has_iat && exp - iat > r->max_lifetime))) {
        *why = "token lifetime exceeds max_lifetime";
        return TP_EINVAL;
    }
    return 0;
}

int tp_jwt_check_claims(const json_t *claims, const struct tp_jwt_rules *r, double now,
                        const char **why)
{
    int rc = check_times(claims, r, now, why);
    if (rc != 0)
        return rc;
    if (r->num_issuers > 0) {
        const char *iss = json_string_value(json_object_get(claims, "iss"));
        if (!iss || !in_list(iss, r->issuers, r->num_issuers)) {
            *why = "issuer not accepted";
            return TP_EINVAL;
        }
    }
    if (r->num_audiences > 0 && !audience_ok(json_object_get(claims, "aud"), r)) {
        *why = "audience not accepted";
        return TP_EINVAL;
    }
    for (size_t i = 0; i < r->num_required; i++) {
        const json_t *c = r->required[i] ? json_object_get(claims, r->required[i]) : NULL;
        if (!c || json_is_null(c)) {
            *why = "a required claim is missing";
            return TP_EINVAL;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Key sets                                                                                   */

int tp_jwks_add(struct tp_jwks *set, struct tp_jwt_key *k)
{
    struct tp_jwt_key *keys = realloc(set->keys, (set->num_keys + 1) * sizeof(*keys));
    if (!keys)
        return TP_ENOMEM;
    set->keys = keys;
    keys[set->num_keys++] = *k;
    memset(k, 0, sizeof(*k));
    k->alg = TP_JWT_ALG_ANY;
    return 0;
}

void tp_jwks_clear(struct tp_jwks *set)
{
    for (size_t i = 0; i < set->num_keys; i++)
        tp_jwt_key_clear(&set->keys[i]);
    free(set->keys);
    set->keys = NULL;
    set->num_keys = 0;
}

int tp_jwks_parse(const char *text, size_t len, struct tp_jwks *set, size_t *skipped,
                  const char **why)
{
    size_t skip = 0;
    int rc = 0;
    if (len > TP_JWKS_MAX_BYTES) {
        *why = "JWK Set too large";
        return TP_ETOOBIG;
    }
    if (!depth_ok((const unsigned char *)text, len, TP_JWT_MAX_DEPTH)) {
        *why = "JWK Set nested too deeply";
        return TP_EINVAL;
    }
    json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
    const json_t *keys = json_object_get(doc, "keys");
    if (!json_is_array(keys)) {
        *why = "not a JWK Set (no \"keys\" array)";
        json_decref(doc);
        return TP_EINVAL;
    }
    size_t i;
    const json_t *jwk;
    json_array_foreach(keys, i, jwk) {
        struct tp_jwt_key k;
        const char *ignored;
        if (set->num_keys >= TP_JWKS_MAX_KEYS) {
            skip++;
            continue;
        }
        rc = tp_jwt_key_from_jwk(&k, jwk, &ignored);
        if (rc == TP_EINVAL) {
            skip++;
            rc = 0;
            continue;
        }
        if (rc == 0 && (rc = tp_jwks_add(set, &k)) != 0)
            tp_jwt_key_clear(&k);
        if (rc != 0)
            break;
    }
    json_decref(doc);
    if (rc != 0) {
        tp_jwks_clear(set);
        *why = "out of memory";
    }
    if (skipped)
        *skipped = skip;
    return rc;
}

static bool kid_eq(const struct tp_jwt_key *k, struct tp_slice kid)
{
    return k->kid && strlen(k->kid) == kid.len && memcmp(k->kid, kid.ptr, kid.len) == 0;
}

const struct tp_jwt_key *tp_jwks_find(const struct tp_jwks *set, struct tp_slice kid,
                                      enum tp_jwt_alg alg)
{
    for (size_t i = 0; i < set->num_keys; i++)
        if (kid_eq(&set->keys[i], kid) && tp_jwt_key_allows(&set->keys[i], alg))
            return &set->keys[i];
    return NULL;
}

bool tp_jwks_has_kid(const struct tp_jwks *set, struct tp_slice kid)
{
    for (size_t i = 0; i < set->num_keys; i++)
        if (kid_eq(&set->keys[i], kid))
            return true;
    return false;
}
