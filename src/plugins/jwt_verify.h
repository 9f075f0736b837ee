/*
 * turnpike — JSON Web Token verification, pure and synchronous (no request, no event loop).
 *
 * Used by the jwt plugin (jwt.c), its unit tests and its fuzz target. Only the JWS Compact
 * Serialization is accepted (RFC 7515 §7.1): exactly three base64url segments without padding.
 * Keys are parsed once (config load, JWKS fetch) into struct tp_jwt_key; verification uses
 * OpenSSL 3 EVP only. Rules follow RFC 7515, RFC 7518, RFC 7519 and RFC 8725 (JWT BCP):
 *
 *   - `alg` is required and `none` (any case) is never accepted (RFC 8725 §2.1, §3.1);
 *   - a header with `enc` or `zip` is a JWE (RFC 7516 §9) and is refused, so is `crit`
 *     (RFC 7515 §4.1.11: we understand no extension) and `cty: JWT` (nested tokens);
 *   - the algorithm must match the key's type: an HMAC token is never checked with an RSA,
 *     EC or OKP public key (RFC 8725 §3.1), ES256/384/512 need P-256/384/521;
 *   - `kid` is an opaque string, only ever compared with the ids of configured keys;
 *   - NumericDate claims (`exp`, `nbf`, `iat`) must be JSON numbers when present (RFC 7519
 *     §4.1.4-4.1.6) and are compared as doubles, so fractions and 1e10 work.
 *
 * Every key and every parsed token may be shared read-only between threads (OpenSSL 3 allows
 * concurrent use of one EVP_PKEY / EVP_MAC for verification).
 */
#ifndef TURNPIKE_PLUGINS_JWT_VERIFY_H
#define TURNPIKE_PLUGINS_JWT_VERIFY_H

#include "turnpike/common.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdint.h>

#define TP_JWT_MAX_TOKEN 8192  /* bytes of a compact token; longer ones are refused */
#define TP_JWT_MAX_SIG 1024    /* bytes of a decoded signature (RSA 8192 bits) */
#define TP_JWT_MAX_DEPTH 16    /* nesting of arrays/objects in the header and the claims */
#define TP_JWT_MAX_KID 256     /* bytes of a `kid` */
#define TP_JWKS_MAX_KEYS 64    /* usable keys kept from one JWK Set */
#define TP_JWKS_MAX_BYTES (256u << 10) /* bytes of a JWK Set document */
#define TP_JWT_KEY_ID_LEN 32   /* bytes of tp_jwt_key.id (SHA-256) */

/** JWS algorithms (RFC 7518 §3.1, RFC 8037 §3.1). `none` is deliberately absent. */
enum tp_jwt_alg {
    TP_JWT_HS256,
    TP_JWT_HS384,
    TP_JWT_HS512,
    TP_JWT_RS256,
    TP_JWT_RS384,
    TP_JWT_RS512,
    TP_JWT_PS256,
    TP_JWT_PS384,
    TP_JWT_PS512,
    TP_JWT_ES256,
    TP_JWT_ES384,
    TP_JWT_ES512,
    TP_JWT_EDDSA,
    TP_JWT_ALG_COUNT,
};

#define TP_JWT_ALG_ANY (-1) /* tp_jwt_key.alg: not pinned, see tp_jwt_key_default_alg */

/** What a key is; decides which algorithms may ever use it. */
enum tp_jwt_key_type {
    TP_JWT_KEY_HMAC,    /* a shared secret: HS256/384/512 only */
    TP_JWT_KEY_RSA,     /* RS* and PS* (modulus >= 2048 bits, RFC 7518 §3.3) */
    TP_JWT_KEY_P256,    /* ES256 */
    TP_JWT_KEY_P384,    /* ES384 */
    TP_JWT_KEY_P521,    /* ES512 */
    TP_JWT_KEY_ED25519, /* EdDSA */
};

/** One verification key. Zero-initialise, fill with tp_jwt_key_from_*, free with _clear. */
struct tp_jwt_key {
    char *kid;                  /* malloc'd key id, or NULL */
    int alg;                    /* pinned enum tp_jwt_alg, or TP_JWT_ALG_ANY */
    enum tp_jwt_key_type type;
    EVP_PKEY *pkey;             /* public key (not HMAC) */
    unsigned char *secret;      /* HMAC secret (malloc'd, may hold NUL bytes) */
    size_t secret_len;
    EVP_MAC *mac;               /* fetched "HMAC" (HMAC keys) */
    /* What the key is, independent of where it sits in memory: SHA-256 of its DER
     * SubjectPublicKeyInfo, computed once when the key is made. Two keys with equal ids verify
     * exactly the same signatures, whichever config generation or JWK Set they came from, so
     * the verification cache (jwt_cache.h) binds its entries to it. HMAC keys have none. */
    unsigned char id[TP_JWT_KEY_ID_LEN];
    bool has_id;
};

/** A decoded token: both JSON objects are owned (tp_jwt_clear releases them). */
struct tp_jwt {
    struct tp_slice signing_input; /* "header.payload" inside the caller's token */
    json_t *header;
    json_t *claims;
    enum tp_jwt_alg alg;
    struct tp_slice kid;           /* inside `header` (a JSON string), {NULL, 0} when absent */
    unsigned char sig[TP_JWT_MAX_SIG];
    size_t sig_len;
};

/** Claim rules (RFC 7519 §4.1). All times in seconds; 0 turns a bound off. */
struct tp_jwt_rules {
    double leeway;                  /* allowed clock skew, applied to exp, nbf and iat */
    bool require_exp, require_nbf;  /* the claim must be present */
    double max_expiration;          /* Kong's maximum_expiration: exp - now at most this */
    double max_lifetime;            /* exp - now and exp - iat at most this (+ leeway for
                                       exp - now); implies require_exp */
    char *const *issuers;           /* iss must equal one of them (when num_issuers > 0) */
    size_t num_issuers;
    char *const *audiences;         /* aud (string or array) must hold one of them */
    size_t num_audiences;
    char *const *required;          /* claims that must be present and not null */
    size_t num_required;
};

/** Algorithm named name[0..len) (exact case), or -1 (also for "none" and unknown names). */
int tp_jwt_alg_from_name(const char *name, size_t len);

/** The registered name of alg ("HS256"...). */
const char *tp_jwt_alg_name(enum tp_jwt_alg alg);

/** The algorithm used with a key of this type when nothing pins one (HS256, RS256, ES256,
 *  ES384, ES512, EdDSA). */
enum tp_jwt_alg tp_jwt_key_default_alg(enum tp_jwt_key_type type);

/** True when alg may be used with key k: the key type allows it (RFC 8725 §3.1) and, when the
 *  key pins an algorithm, alg is that one. */
bool tp_jwt_key_allows(const struct tp_jwt_key *k, enum tp_jwt_alg alg);

/**
 * Strict base64url (RFC 4648 §5) without padding, as JWS requires (RFC 7515 §2): no '=', no
 * white space, unused low bits of the last character zero (one encoding per byte string).
 * @param out receives at most len * 3 / 4 bytes; cap is its size.
 * @return 0, TP_EINVAL (bad character or length) or TP_ETOOBIG (cap too small).
 */
int tp_jwt_b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap,
                         size_t *out_len);

/**
 * Lenient base64 for configured secrets (Kong's secret_is_base64): standard or url alphabet,
 * padding optional. out must hold len * 3 / 4 + 3 bytes. 0 or TP_EINVAL.
 */
int tp_jwt_b64_decode_any(const char *in, size_t len, unsigned char *out, size_t *out_len);

/**
 * An HMAC key from secret[0..len) (copied). alg pins the algorithm (an HS* one) or is
 * TP_JWT_ALG_ANY. kid may be NULL (copied). 0, TP_EINVAL (alg not HS*) or TP_ENOMEM.
 */
int tp_jwt_key_from_secret(struct tp_jwt_key *k, const void *secret, size_t len, int alg,
                           const char *kid);

/**
 * A public key from PEM text: SubjectPublicKeyInfo ("PUBLIC KEY"), PKCS#1 ("RSA PUBLIC KEY")
 * or an X.509 certificate. RSA (>= 2048 bits), EC P-256/384/521 and Ed25519 are accepted.
 * alg (or TP_JWT_ALG_ANY) must suit the key. On error *why is a static message.
 * @return 0, TP_EINVAL or TP_ENOMEM; k is left cleared on error.
 */
int tp_jwt_key_from_pem(struct tp_jwt_key *k, const char *pem, size_t len, int alg,
                        const char *kid, const char **why);

/**
 * A key from one JWK (RFC 7517 §4, RFC 7518 §6, RFC 8037 §2): kty RSA, EC (P-256/384/521),
 * OKP (Ed25519) or oct. Keys with `use` other than "sig", or `key_ops` without "verify",
 * are refused, as are unknown or unsuitable `alg` values. Built with EVP_PKEY_fromdata; EC
 * points are checked to lie on the curve.
 * @return 0, TP_EINVAL (*why says why) or TP_ENOMEM.
 */
int tp_jwt_key_from_jwk(struct tp_jwt_key *k, const json_t *jwk, const char **why);

/** Release what k holds and zero it (safe on a zeroed key). */
void tp_jwt_key_clear(struct tp_jwt_key *k);

/**
 * Split and decode a compact JWS. Checks the shape, base64url, JSON objects (duplicate names
 * refused, depth at most TP_JWT_MAX_DEPTH), `alg` (required, not none, known), `enc`/`zip`/
 * `crit`/`cty: JWT`, and `kid` (a string of at most TP_JWT_MAX_KID bytes). The signature is
 * NOT verified. token must stay alive while t is used (t->signing_input points into it).
 * @return 0, TP_EINVAL (*why a fixed phrase, safe to log), TP_ETOOBIG (longer than
 *         TP_JWT_MAX_TOKEN) or TP_ENOMEM. On error t holds nothing to clear.
 */
int tp_jwt_parse(const char *token, size_t len, struct tp_jwt *t, const char **why);

/** Release the JSON held by t (safe after a failed parse and twice). */
void tp_jwt_clear(struct tp_jwt *t);

/**
 * Verify t's signature with key k (RFC 7515 §5.2 step 8, RFC 7518 §3). Fails when k does not
 * allow t->alg (tp_jwt_key_allows). HMAC tags are compared in constant time; RSASSA-PSS uses
 * a salt of the hash's length (RFC 7518 §3.5); ECDSA signatures are R||S of the curve's size
 * (RFC 7518 §3.4).
 * @return 0 when valid, TP_EINVAL when not, TP_ENOMEM.
 */
int tp_jwt_verify(const struct tp_jwt *t, const struct tp_jwt_key *k);

/**
 * Check the registered claims of a verified token against rules at time now (seconds since
 * the epoch). exp/nbf/iat present with a non-number type fail (RFC 7519 §4.1.4-4.1.6).
 * @return 0, or TP_EINVAL with *why a fixed phrase.
 */
int tp_jwt_check_claims(const json_t *claims, const struct tp_jwt_rules *rules, double now,
                        const char **why);

/** A set of keys, e.g. a JWK Set. */
struct tp_jwks {
    struct tp_jwt_key *keys;
    size_t num_keys;
};

/**
 * Parse a JWK Set document (RFC 7517 §5) of at most TP_JWKS_MAX_BYTES. Keys that are not
 * usable (unknown kty, enc keys, bad parameters) are skipped and counted in *skipped (may be
 * NULL); at most TP_JWKS_MAX_KEYS keys are kept.
 * @return 0, TP_EINVAL (not a JWK Set; *why says why), TP_ETOOBIG or TP_ENOMEM. set must be
 *         zeroed; on error it holds nothing.
 */
int tp_jwks_parse(const char *text, size_t len, struct tp_jwks *set, size_t *skipped,
                  const char **why);

/** Append a copy-free key (moved: *k is zeroed). 0 or TP_ENOMEM (k untouched). */
int tp_jwks_add(struct tp_jwks *set, struct tp_jwt_key *k);

/** Release every key of set and zero it. */
void tp_jwks_clear(struct tp_jwks *set);

/** The first key of set whose kid is kid exactly and that allows alg, or NULL. */
const struct tp_jwt_key *tp_jwks_find(const struct tp_jwks *set, struct tp_slice kid,
                                      enum tp_jwt_alg alg);

/** True when some key of set has this kid (whatever its type). */
bool tp_jwks_has_kid(const struct tp_jwks *set, struct tp_slice kid);

#endif
