/*
 * jwt: authenticate a request by a signed JSON Web Token (Kong's plugin of the same name,
 * priority 1450; docs/plugins/jwt.md).
 *
 *   plugins:
 *     - name: jwt
 *       config:
 *         uri_param_names: [jwt]          # Kong's fields and defaults
 *         cookie_names: []
 *         header_names: [authorization]   # "Bearer <token>", scheme in any case
 *         claims_to_verify: [exp]         # these claims must be present (and valid)
 *         key_claim_name: iss             # claim (or header field) naming the jwt_secrets key
 *         secret_is_base64: false
 *         anonymous: null
 *         run_on_preflight: true
 *         maximum_expiration: 0           # seconds exp may lie in the future, 0 = no bound
 *         realm: null                     # WWW-Authenticate: Bearer realm="turnpike"
 *         # turnpike extensions
 *         algorithms: [RS256]             # allow-list (a key's own algorithm still applies)
 *         leeway: 30                      # seconds of clock skew for exp, nbf, iat
 *         issuer: [https://idp.example]   # accepted iss values
 *         audience: [api]                 # aud must hold one of them
 *         required_claims: [sub]
 *         require_exp: false
 *         max_lifetime: 0                 # seconds: exp - now and exp - iat, 0 = no bound
 *         keys: [{kid: k1, algorithm: HS256, secret: {env: K1}}]
 *         jwks_file: /etc/turnpike/jwks.json
 *         jwks_uri: https://idp.example/.well-known/jwks.json
 *         consumer_claim: sub             # maps key-set tokens to a consumer (id or username)
 *         verify_cache_size: 4096         # per worker: verified signatures remembered, 0 = off
 *
 * Keys come from two places. Consumers' jwt_secrets are found, as in Kong, by the value of
 * key_claim_name (a claim, else a header field). Keys not bound to consumers (`keys`,
 * `jwks_file`, `jwks_uri`) are found by the token's `kid`, an opaque string compared with the
 * configured ids and nothing else. Every key is parsed at compile (jwt_secrets, keys,
 * jwks_file) or when its JWK Set is fetched (jwks_uri), never per request.
 *
 * A token whose kid is unknown makes the worker fetch the JWK Set again (at most once per
 * jwks_min_refresh) and the request waits for that fetch (TP_PLUGIN_SUSPEND), once.
 *
 * Public-key signatures already verified on this worker are not verified again (jwt_cache.h):
 * everything else, claims included, is checked on every request.
 */
#include "config/schema.h"
#include "plugins/auth_common.h"
#include "plugins/jwt_cache.h"
#include "plugins/jwt_jwks.h"
#include "plugins/jwt_verify.h"
#include "turnpike/consumer.h"
#include "turnpike/plugin.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JWT_DEFAULT_REALM "turnpike"
#define JWT_MAX_TOKEN_VALUES 8   /* values looked at per header name */
#define JWT_VERIFY_CACHE_KEY "jwt:verify_cache" /* tp_plugin_worker_put key */

/* Messages of the 401 answers: Kong's wording where Kong has one. */
#define MSG_UNAUTHORIZED "Unauthorized"
#define MSG_MULTIPLE "Multiple tokens provided"
#define MSG_BAD_TOKEN "Bad token"
#define MSG_BAD_ALG "Invalid algorithm"
#define MSG_BAD_SIG "Invalid signature"
#define MSG_BAD_SECRET "Invalid key/secret"
#define MSG_UNKNOWN_KEY "No key found for the token"
#define MSG_NO_CONSUMER "No consumer found for the token"

/* A list of strings; `set` tells "given (maybe empty)" from "absent" (Kong's defaults). */
struct strlist {
    char **v;
    size_t n;
    bool set;
};

/* One entry of `keys`. */
struct jwt_conf_key {
    char *kid;
    char *algorithm;
    char *secret;
    char *public_key;
    struct tp_conf_mark mark;
};

/** The `config` of one jwt entry, filled by jwt_schema. */
struct jwt_conf {
    struct strlist uri_param_names, cookie_names, header_names, claims_to_verify;
    char *key_claim_name;
    bool secret_is_base64;
    char *anonymous;      /* or NULL */
    bool run_on_preflight;
    uint32_t maximum_expiration;
    char *realm;          /* or NULL: JWT_DEFAULT_REALM */
    /* turnpike extensions */
    struct strlist algorithms, issuer, audience, required_claims;
    uint32_t leeway;
    bool require_exp;
    uint32_t max_lifetime;
    struct jwt_conf_key *keys;
    size_t num_keys;
    char *jwks_file, *jwks_uri, *jwks_ca_file, *consumer_claim; /* or NULL */
    uint32_t jwks_refresh, jwks_min_refresh, jwks_timeout, jwks_cache_ttl;
    uint32_t verify_cache_size;
};

/* A consumer's jwt secret and its parsed key. */
struct cred_key {
    const struct tp_credential *cred;
    struct tp_jwt_key key;
    bool unusable;   /* HS* without a secret, or not base64 under secret_is_base64 (Kong
                        answers "Invalid key/secret" for it at request time) */
};

/** The compiled instance, shared read-only by the workers. */
struct jwt {
    const struct jwt_conf *conf;
    const struct tp_consumer *anonymous;
    struct cred_key *creds;          /* one per jwt secret of the snapshot */
    size_t num_creds;
    uint32_t *cred_slots;            /* open addressing: credential pointer -> index + 1 */
    size_t cred_mask;
    struct tp_jwks static_keys;      /* keys + jwks_file */
    bool has_source;                 /* jwks_uri */
    struct tp_jwks_source source;
    struct tp_jwks_fetch_opts fetch;
    uint32_t alg_mask;               /* `algorithms` as bits; 0 = not set */
    struct tp_jwt_rules rules;
    char *msg_no_claim, *msg_bad_claim, *msg_no_cred;
    char *www_plain, *www_error;     /* WWW-Authenticate without and with error= */
};

/* ------------------------------------------------------------------------------------------ */
/* Config                                                                                     */

static void strlist_free(struct strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static const struct {
    const char *name;
    size_t offset;
} list_fields[] = {
    {"uri_param_names", offsetof(struct jwt_conf, uri_param_names)},
    {"cookie_names", offsetof(struct jwt_conf, cookie_names)},
    {"header_names", offsetof(struct jwt_conf, header_names)},
    {"claims_to_verify", offsetof(struct jwt_conf, claims_to_verify)},
    {"algorithms", offsetof(struct jwt_conf, algorithms)},
    {"issuer", offsetof(struct jwt_conf, issuer)},
    {"audience", offsetof(struct jwt_conf, audience)},
    {"required_claims", offsetof(struct jwt_conf, required_claims)},
};

/* A list of strings; a single string counts as a list of one (null, like absent, leaves the
 * default: the schema walker skips it). */
static void parse_list(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct strlist *l = NULL;
    for (size_t i = 0; i < TP_ARRAY_LEN(list_fields); i++)
        if (!strcmp(key, list_fields[i].name))
            l = (struct strlist *)((char *)obj + list_fields[i].offset);
    if (!l)
        return;
    strlist_free(l);
    l->set = true;
    if (value->type == YAML_SCALAR_NODE) {
        l->v = calloc(1, sizeof(*l->v));
        if (!l->v) {
            tp__cfg_oom(ctx, value);
            return;
        }
        l->n = 1;
        tp__cfg_string(ctx, key, value, &l->v[0]);
        return;
    }
    l->v = tp__cfg_string_list(ctx, key, value, NULL, &l->n);
}

static const struct tp__cfg_directive key_keys[] = {
    TP__CFG_STRING_KEY("kid", struct jwt_conf_key, kid, NULL),
    TP__CFG_STRING_KEY("algorithm", struct jwt_conf_key, algorithm, NULL),
    TP__CFG_SECRET_KEY("secret", struct jwt_conf_key, secret, false),
    TP__CFG_SECRET_KEY("public_key", struct jwt_conf_key, public_key, false),
};

TP__CFG_TABLE_CHECK(key_keys);

static const struct tp__cfg_schema key_schema = {
    .what = "jwt key",
    .keys = key_keys,
    .num_keys = TP_ARRAY_LEN(key_keys),
    .size = sizeof(struct jwt_conf_key),
    .mark_offset = offsetof(struct jwt_conf_key, mark),
};

static void free_keys(struct jwt_conf *conf)
{
    for (size_t i = 0; i < conf->num_keys; i++)
        tp__cfg_free_fields(&key_schema, &conf->keys[i]);
    free(conf->keys);
    conf->keys = NULL;
    conf->num_keys = 0;
}

static void parse_keys(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct jwt_conf *conf = obj;
    free_keys(conf);
    conf->keys = tp__cfg_list(ctx, key, value, &key_schema, &conf->num_keys);
}

/* clang-format off */
static const struct tp__cfg_directive jwt_keys[] = {
    TP__CFG_CUSTOM_KEY("uri_param_names", parse_list, false),
    TP__CFG_CUSTOM_KEY("cookie_names", parse_list, false),
    TP__CFG_CUSTOM_KEY("header_names", parse_list, false),
    TP__CFG_CUSTOM_KEY("claims_to_verify", parse_list, false),
    TP__CFG_STRING_KEY("key_claim_name", struct jwt_conf, key_claim_name, "iss"),
    TP__CFG_BOOL_KEY("secret_is_base64", struct jwt_conf, secret_is_base64, false),
    TP__CFG_STRING_KEY("anonymous", struct jwt_conf, anonymous, NULL),
    TP__CFG_BOOL_KEY("run_on_preflight", struct jwt_conf, run_on_preflight, true),
    TP__CFG_UINT_KEY("maximum_expiration", struct jwt_conf, maximum_expiration, 0, 31536000, 0),
    TP__CFG_STRING_KEY("realm", struct jwt_conf, realm, NULL),
    TP__CFG_CUSTOM_KEY("algorithms", parse_list, false),
    TP__CFG_CUSTOM_KEY("issuer", parse_list, false),
    TP__CFG_CUSTOM_KEY("audience", parse_list, false),
    TP__CFG_CUSTOM_KEY("required_claims", parse_list, false),
    TP__CFG_UINT_KEY("leeway", struct jwt_conf, leeway, 0, UINT32_MAX, 0),
    TP__CFG_BOOL_KEY("require_exp", struct jwt_conf, require_exp, false),
    TP__CFG_UINT_KEY("max_lifetime", struct jwt_conf, max_lifetime, 0, UINT32_MAX, 0),
    TP__CFG_CUSTOM_KEY("keys", parse_keys, false),
    TP__CFG_STRING_KEY("jwks_file", struct jwt_conf, jwks_file, NULL),
    TP__CFG_STRING_KEY("jwks_uri", struct jwt_conf, jwks_uri, NULL),
    TP__CFG_STRING_KEY("jwks_ca_file", struct jwt_conf, jwks_ca_file, NULL),
    TP__CFG_UINT_KEY("jwks_refresh", struct jwt_conf, jwks_refresh, 1, 604800, 300),
    TP__CFG_UINT_KEY("jwks_min_refresh", struct jwt_conf, jwks_min_refresh, 0, 86400, 10),
    TP__CFG_UINT_KEY("jwks_timeout", struct jwt_conf, jwks_timeout, 1, 60000, 5000),
    TP__CFG_UINT_KEY("jwks_cache_ttl", struct jwt_conf, jwks_cache_ttl, 0, UINT32_MAX, 0),
    TP__CFG_STRING_KEY("consumer_claim", struct jwt_conf, consumer_claim, NULL),
    TP__CFG_UINT_KEY("verify_cache_size", struct jwt_conf, verify_cache_size, 0,
                     TP_JWT_CACHE_MAX, TP_JWT_CACHE_DEFAULT),
};
/* clang-format on */

TP__CFG_TABLE_CHECK(jwt_keys);

static const struct tp__cfg_schema jwt_schema = {
    .what = "jwt config",
    .keys = jwt_keys,
    .num_keys = TP_ARRAY_LEN(jwt_keys),
    .size = sizeof(struct jwt_conf),
    .mark_offset = -1,
};

static void jwt_free_conf(void *vconf)
{
    struct jwt_conf *conf = vconf;
    for (size_t i = 0; i < TP_ARRAY_LEN(list_fields); i++)
        strlist_free((struct strlist *)((char *)conf + list_fields[i].offset));
    free_keys(conf);
}

/* Kong's defaults of the lists that are not empty by default. */
static int default_list(struct strlist *l, const char *value)
{
    if (l->set)
        return 0;
    l->v = calloc(1, sizeof(*l->v));
    if (!l->v || !(l->v[0] = strdup(value))) {
        free(l->v);
        l->v = NULL;
        return -1;
    }
    l->n = 1;
    return 0;
}

/* RFC 9110 §5.1 token: a header name. */
static bool valid_header_name(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              (c && strchr("!#$%&'*+-.^_`|~", c))))
            return false;
    }
    return true;
}

static const void *node_of(struct tp_plugin_build *b, const char *key)
{
    return b->node && b->cfg ? tp__cfg_lookup(b->cfg, b->node, key) : NULL;
}

static int validate_lists(struct tp_plugin_build *b, struct jwt_conf *conf)
{
    int rc = 0;
    if (default_list(&conf->uri_param_names, "jwt") != 0 ||
        default_list(&conf->header_names, "authorization") != 0)
        return tp_plugin_build_error(b, NULL, "out of memory");
    for (size_t i = 0; i < conf->header_names.n; i++)
        if (conf->header_names.v[i] && !valid_header_name(conf->header_names.v[i]))
            rc = tp_plugin_build_error(b, node_of(b, "header_names"),
                                       "\"header_names\": \"%s\" is not a header name",
                                       conf->header_names.v[i]);
    for (size_t i = 0; i < conf->claims_to_verify.n; i++) {
        const char *c = conf->claims_to_verify.v[i];
        if (c && strcmp(c, "exp") != 0 && strcmp(c, "nbf") != 0)
            rc = tp_plugin_build_error(b, node_of(b, "claims_to_verify"),
                                       "\"claims_to_verify\": \"%s\" is not one of exp, nbf", c);
    }
    for (size_t i = 0; i < conf->algorithms.n; i++) {
        const char *a = conf->algorithms.v[i];
        if (a && tp_jwt_alg_from_name(a, strlen(a)) < 0)
            rc = tp_plugin_build_error(b, node_of(b, "algorithms"),
                                       "\"algorithms\": \"%s\" is not a supported algorithm "
                                       "(HS256/384/512, RS256/384/512, PS256/384/512, "
                                       "ES256/384/512, EdDSA; never none)", a);
    }
    if (conf->algorithms.set && conf->algorithms.n == 0)
        rc = tp_plugin_build_error(b, node_of(b, "algorithms"),
                                   "\"algorithms\" must not be empty (omit it instead)");
    return rc;
}

static int validate_keys(struct tp_plugin_build *b, const struct jwt_conf *conf)
{
    int rc = 0;
    for (size_t i = 0; i < conf->num_keys; i++) {
        const struct jwt_conf_key *k = &conf->keys[i];
        int alg = k->algorithm ? tp_jwt_alg_from_name(k->algorithm, strlen(k->algorithm))
                               : TP_JWT_ALG_ANY;
        bool hmac = alg >= TP_JWT_HS256 && alg <= TP_JWT_HS512;
        if (k->algorithm && alg < 0)
            rc = tp_plugin_build_error(b, node_of(b, "keys"),
                                       "\"keys[%zu]\": unsupported algorithm \"%s\"", i,
                                       k->algorithm);
        else if (!k->secret == !k->public_key)
            rc = tp_plugin_build_error(b, node_of(b, "keys"),
                                       "\"keys[%zu]\": give exactly one of secret, public_key",
                                       i);
        else if (k->algorithm && (k->secret ? !hmac : hmac))
            rc = tp_plugin_build_error(b, node_of(b, "keys"),
                                       "\"keys[%zu]\": algorithm %s does not go with a %s", i,
                                       k->algorithm, k->secret ? "secret" : "public key");
        for (size_t j = 0; j < i; j++)
            if (k->kid && conf->keys[j].kid && !strcmp(k->kid, conf->keys[j].kid))
                rc = tp_plugin_build_error(b, node_of(b, "keys"),
                                           "\"keys[%zu]\": kid \"%s\" is already used by "
                                           "keys[%zu]", i, k->kid, j);
    }
    return rc;
}

static int jwt_validate(struct tp_plugin_build *b, void *vconf)
{
    struct jwt_conf *conf = vconf;
    int rc = validate_lists(b, conf);

    if (validate_keys(b, conf) != 0)
        rc = -1;
    if (tp__auth_check_realm(b, conf->realm) != 0)
        rc = -1;
    if (conf->jwks_uri) {
        struct tp_jwks_source src;
        const char *why = NULL;
        if (tp_jwks_source_parse(conf->jwks_uri, &src, &why) != 0)
            rc = tp_plugin_build_error(b, node_of(b, "jwks_uri"), "\"jwks_uri\" %s", why);
        tp_jwks_source_free(&src);
    }
    if (conf->jwks_ca_file && !conf->jwks_uri)
        rc = tp_plugin_build_error(b, node_of(b, "jwks_ca_file"),
                                   "\"jwks_ca_file\" needs \"jwks_uri\"");
    if (conf->consumer_claim && !conf->num_keys && !conf->jwks_file && !conf->jwks_uri)
        rc = tp_plugin_build_error(b, node_of(b, "consumer_claim"),
                                   "\"consumer_claim\" applies to keys, jwks_file and jwks_uri; "
                                   "none is set");
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Compile                                                                                    */

static void jwt_destroy(void *vinst)
{
    struct jwt *j = vinst;
    if (!j)
        return;
    for (size_t i = 0; i < j->num_creds; i++)
        tp_jwt_key_clear(&j->creds[i].key);
    free(j->creds);
    free(j->cred_slots);
    tp_jwks_clear(&j->static_keys);
    tp_jwks_source_free(&j->source);
    free(j->msg_no_claim);
    free(j->msg_bad_claim);
    free(j->msg_no_cred);
    free(j->www_plain);
    free(j->www_error);
    free(j);
}

static char *format(const char *fmt, const char *a)
{
    size_t n = strlen(fmt) + strlen(a) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, fmt, a);
    return s;
}

static size_t ptr_hash(const void *p)
{
    uint64_t h = (uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 32);
}

/* The key of a consumer credential: one hash probe sequence, no string compare. */
static const struct cred_key *cred_key_of(const struct jwt *j, const struct tp_credential *cred)
{
    if (!j->cred_slots)
        return NULL;
    for (size_t i = ptr_hash(cred) & j->cred_mask;; i = (i + 1) & j->cred_mask) {
        uint32_t s = j->cred_slots[i];
        if (!s)
            return NULL;
        if (j->creds[s - 1].cred == cred)
            return &j->creds[s - 1];
    }
}

/* A consumer's jwt secret as a key: HS* with `secret` (base64 when secret_is_base64), else a
 * PEM public key in rsa_public_key. A secret that cannot be used leaves the key unusable
 * rather than failing the config: secret_is_base64 is per plugin instance, secrets are per
 * consumer, and other routes may read them as they are (Kong decides this per request). */
static int cred_to_key(struct tp_plugin_build *b, const struct jwt_conf *conf,
                       const struct tp_credential *cred, struct cred_key *ck)
{
    struct tp_jwt_key *k = &ck->key;
    const struct tp_conf_credential *cc = cred->conf;
    const char *who = cred->consumer && cred->consumer->username ? cred->consumer->username
                      : cred->consumer                          ? cred->consumer->id
                                                                : "?";
    const char *name = cc->algorithm ? cc->algorithm : "HS256";
    int alg = tp_jwt_alg_from_name(name, strlen(name));
    const char *why = NULL;
    int rc;

    if (alg < 0)
        return tp_plugin_build_error(b, NULL, "consumer \"%s\": jwt secret \"%s\": unsupported "
                                     "algorithm \"%s\"", who, cc->key ? cc->key : "", name);
    if (alg <= TP_JWT_HS512) {
        size_t len = cc->secret ? strlen(cc->secret) : 0, n = len;
        unsigned char *raw = (unsigned char *)cc->secret, *dec = NULL;
        if (len && conf->secret_is_base64) {
            dec = malloc(len / 4 * 3 + 3);
            if (!dec)
                return tp_plugin_build_error(b, NULL, "out of memory");
            if (tp_jwt_b64_decode_any(cc->secret, len, dec, &n) != 0)
                n = 0;
            raw = dec;
        }
        if (n == 0) {
            free(dec);
            k->type = TP_JWT_KEY_HMAC;
            k->alg = alg;
            ck->unusable = true;
            return 0;
        }
        rc = tp_jwt_key_from_secret(k, raw, n, alg, NULL);
        free(dec);
        why = "out of memory";
    } else {
        if (!cc->rsa_public_key)
            return tp_plugin_build_error(b, NULL, "consumer \"%s\": jwt secret \"%s\": %s needs "
                                         "rsa_public_key", who, cc->key ? cc->key : "", name);
        rc = tp_jwt_key_from_pem(k, cc->rsa_public_key, strlen(cc->rsa_public_key), alg, NULL,
                                 &why);
    }
    if (rc != 0)
        return tp_plugin_build_error(b, NULL, "consumer \"%s\": jwt secret \"%s\": %s", who,
                                     cc->key ? cc->key : "", why);
    return 0;
}

static int compile_creds(struct tp_plugin_build *b, struct jwt *j)
{
    size_t n = tp_consumer_jwt_count(b->snap), cap = 4;
    if (n == 0)
        return 0;
    while (cap < 2 * n)
        cap <<= 1;
    j->creds = calloc(n, sizeof(*j->creds));
    j->cred_slots = calloc(cap, sizeof(*j->cred_slots));
    if (!j->creds || !j->cred_slots)
        return tp_plugin_build_error(b, NULL, "out of memory");
    j->cred_mask = cap - 1;
    for (size_t i = 0; i < n; i++) {
        const struct tp_credential *cred = tp_consumer_jwt_at(b->snap, i);
        struct cred_key *ck = &j->creds[j->num_creds];
        if (!cred || cred_to_key(b, j->conf, cred, ck) != 0)
            return -1;
        ck->cred = cred;
        size_t s = ptr_hash(cred) & j->cred_mask;
        while (j->cred_slots[s])
            s = (s + 1) & j->cred_mask;
        j->cred_slots[s] = (uint32_t)++j->num_creds;
    }
    return 0;
}

static int compile_static_keys(struct tp_plugin_build *b, struct jwt *j)
{
    const struct jwt_conf *conf = j->conf;
    for (size_t i = 0; i < conf->num_keys; i++) {
        const struct jwt_conf_key *ck = &conf->keys[i];
        int alg = ck->algorithm ? tp_jwt_alg_from_name(ck->algorithm, strlen(ck->algorithm))
                                : TP_JWT_ALG_ANY;
        struct tp_jwt_key k;
        const char *why = "out of memory";
        int rc;
        if (ck->secret) {
            size_t len = strlen(ck->secret), n = len;
            unsigned char *dec = conf->secret_is_base64 ? malloc(len / 4 * 3 + 3) : NULL;
            if (conf->secret_is_base64 &&
                (!dec || tp_jwt_b64_decode_any(ck->secret, len, dec, &n) != 0 || n == 0)) {
                free(dec);
                return tp_plugin_build_error(b, NULL, "\"keys[%zu]\": secret is not base64 "
                                             "(secret_is_base64 is true)", i);
            }
            rc = tp_jwt_key_from_secret(&k, dec ? (const void *)dec : ck->secret, n, alg,
                                        ck->kid);
            free(dec);
        } else {
            rc = tp_jwt_key_from_pem(&k, ck->public_key, strlen(ck->public_key), alg, ck->kid,
                                     &why);
        }
        if (rc == 0 && (rc = tp_jwks_add(&j->static_keys, &k)) != 0)
            tp_jwt_key_clear(&k);
        if (rc != 0)
            return tp_plugin_build_error(b, NULL, "\"keys[%zu]\": %s", i, why);
    }
    return 0;
}

static int compile_jwks_file(struct tp_plugin_build *b, struct jwt *j)
{
    const char *path = j->conf->jwks_file;
    FILE *f = fopen(path, "rb");
    char *text = f ? malloc(TP_JWKS_MAX_BYTES + 1) : NULL;
    size_t len = text ? fread(text, 1, TP_JWKS_MAX_BYTES + 1, f) : 0;
    struct tp_jwks set = {0};
    size_t skipped = 0;
    const char *why = "cannot be read";
    int rc = -1;

    if (text && !ferror(f) && len <= TP_JWKS_MAX_BYTES &&
        tp_jwks_parse(text, len, &set, &skipped, &why) == 0) {
        why = "holds no usable key";
        rc = set.num_keys ? 0 : -1;
        for (size_t i = 0; rc == 0 && i < set.num_keys; i++)
            if (tp_jwks_add(&j->static_keys, &set.keys[i]) != 0) {
                why = "out of memory";
                rc = -1;
            }
    } else if (text && len > TP_JWKS_MAX_BYTES) {
        why = "is larger than 256 KiB";
    }
    tp_jwks_clear(&set); /* the keys moved out are zeroed */
    free(text);
    if (f)
        fclose(f);
    if (rc != 0)
        return tp_plugin_build_error(b, NULL, "\"jwks_file\" %s: %s", path, why);
    return 0;
}

static int compile_messages(struct jwt *j)
{
    const char *kcn = j->conf->key_claim_name ? j->conf->key_claim_name : "iss";
    const char *realm = j->conf->realm ? j->conf->realm : JWT_DEFAULT_REALM;
    j->msg_no_claim = format("No mandatory '%s' in claims", kcn);
    j->msg_bad_claim = format("Invalid '%s' in claims", kcn);
    j->msg_no_cred = format("No credentials found for given '%s'", kcn);
    /* RFC 6750 §3: error= only when a token was presented */
    j->www_plain = tp__auth_challenge("Bearer", realm, "", NULL);
    j->www_error = tp__auth_challenge("Bearer", realm, ", error=\"invalid_token\"", NULL);
    return j->msg_no_claim && j->msg_bad_claim && j->msg_no_cred && j->www_plain && j->www_error
               ? 0
               : -1;
}

static void compile_rules(struct jwt *j)
{
    const struct jwt_conf *conf = j->conf;
    struct tp_jwt_rules *r = &j->rules;
    r->leeway = conf->leeway;
    r->require_exp = conf->require_exp;
    for (size_t i = 0; i < conf->claims_to_verify.n; i++) {
        const char *c = conf->claims_to_verify.v[i];
        r->require_exp = r->require_exp || (c && !strcmp(c, "exp"));
        r->require_nbf = r->require_nbf || (c && !strcmp(c, "nbf"));
    }
    r->max_expiration = conf->maximum_expiration;
    r->max_lifetime = conf->max_lifetime;
    r->issuers = conf->issuer.v;
    r->num_issuers = conf->issuer.n;
    r->audiences = conf->audience.v;
    r->num_audiences = conf->audience.n;
    r->required = conf->required_claims.v;
    r->num_required = conf->required_claims.n;
    for (size_t i = 0; i < conf->algorithms.n; i++) {
        const char *a = conf->algorithms.v[i];
        int alg = a ? tp_jwt_alg_from_name(a, strlen(a)) : -1;
        if (alg >= 0)
            j->alg_mask |= 1u << alg;
    }
}

static int jwt_compile(struct tp_plugin_build *b, const void *vconf, void **out)
{
    const struct jwt_conf *conf = vconf;
    struct jwt *j = calloc(1, sizeof(*j));
    const char *why = NULL;

    if (!j || (j->conf = conf, compile_messages(j)) != 0) {
        jwt_destroy(j);
        return tp_plugin_build_error(b, NULL, "out of memory");
    }
    compile_rules(j);
    if (compile_creds(b, j) != 0 || compile_static_keys(b, j) != 0 ||
        (conf->jwks_file && compile_jwks_file(b, j) != 0))
        goto fail;
    if (conf->jwks_uri) {
        if (tp_jwks_source_parse(conf->jwks_uri, &j->source, &why) != 0) {
            tp_plugin_build_error(b, NULL, "\"jwks_uri\" %s", why);
            goto fail;
        }
        j->has_source = true;
        j->fetch.timeout_ms = conf->jwks_timeout;
        j->fetch.ca_file = conf->jwks_ca_file;
    }
    if (tp__auth_anonymous(b, conf->anonymous, &j->anonymous) != 0)
        goto fail;
    *out = j;
    return 0;
fail:
    jwt_destroy(j);
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Finding the token                                                                          */

enum token_found {
    TOKEN_NONE,
    TOKEN_FOUND,
    TOKEN_MULTIPLE, /* two different tokens: ambiguous, refused (Kong) */
};

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* "Bearer <token>" (RFC 6750 §2.1), the scheme in any case (RFC 9110 §11.1). */
static bool bearer_token(struct tp_slice v, struct tp_slice *tok)
{
    size_t i = 0, end = v.len;
    while (i < end && is_ows(v.ptr[i]))
        i++;
    if (end - i < 7 || !tp_slice_eq_nocase((struct tp_slice){v.ptr + i, 6}, "bearer", 6) ||
        !is_ows(v.ptr[i + 6]))
        return false;
    i += 6;
    while (i < end && is_ows(v.ptr[i]))
        i++;
    while (end > i && is_ows(v.ptr[end - 1]))
        end--;
    *tok = (struct tp_slice){v.ptr + i, end - i};
    return end > i;
}

/* Remember a candidate; a second, different one makes the search ambiguous. */
static bool add_token(struct tp_slice cand, struct tp_slice *tok, bool *found)
{
    if (cand.len == 0)
        return true;
    if (!*found) {
        *tok = cand;
        *found = true;
        return true;
    }
    return cand.len == tok->len && memcmp(cand.ptr, tok->ptr, cand.len) == 0;
}

/* Kong's retrieve_tokens: query arguments, cookies, then headers; all must agree. */
static enum token_found find_token(struct tp_plugin_ctx *ctx, const struct jwt_conf *conf,
                                   struct tp_slice *tok)
{
    bool found = false;
    struct tp_slice v;

    for (size_t i = 0; i < conf->uri_param_names.n; i++)
        if (conf->uri_param_names.v[i] &&
            tp_plugin_query_arg(ctx, conf->uri_param_names.v[i], &v) &&
            !add_token(v, tok, &found))
            return TOKEN_MULTIPLE;
    for (size_t i = 0; i < conf->cookie_names.n; i++)
        if (conf->cookie_names.v[i] && tp_plugin_cookie(ctx, conf->cookie_names.v[i], &v) &&
            !add_token(v, tok, &found))
            return TOKEN_MULTIPLE;
    for (size_t i = 0; i < conf->header_names.n; i++) {
        const char *name = conf->header_names.v[i];
        for (size_t k = 0; name && k < JWT_MAX_TOKEN_VALUES && tp_plugin_header(ctx, name, k, &v);
             k++) {
            struct tp_slice t;
            if (bearer_token(v, &t) && !add_token(t, tok, &found))
                return TOKEN_MULTIPLE;
        }
    }
    return found ? TOKEN_FOUND : TOKEN_NONE;
}

/* ------------------------------------------------------------------------------------------ */
/* Requests                                                                                   */

/*
 * A failed authentication (tp__auth_fail) with the Bearer challenge: error="invalid_token"
 * when a token was presented (RFC 6750 §3.1).
 */
static enum tp_plugin_status deny(struct tp_plugin_ctx *ctx, const struct jwt *j,
                                  const char *message, const char *reason, bool presented)
{
    return tp__auth_fail(ctx, j->anonymous, tp_slice_cstr(presented ? j->www_error : j->www_plain),
                         message, reason, presented);
}

/* May alg be used with k here? The key must allow it (type, its own alg); then `algorithms`
 * when set, else a key without its own alg takes only its type's usual one (RFC 8725 §3.1:
 * the algorithm comes from the configuration, never from the token alone). */
static bool alg_permitted(const struct jwt *j, const struct tp_jwt_key *k, enum tp_jwt_alg alg)
{
    if (!tp_jwt_key_allows(k, alg))
        return false;
    if (j->alg_mask)
        return (j->alg_mask >> alg) & 1u;
    return k->alg != TP_JWT_ALG_ANY || alg == tp_jwt_key_default_alg(k->type);
}

/* The only key of the sets that may verify alg (a token without kid), counting candidates. */
static const struct tp_jwt_key *sole_key(const struct jwt *j, const struct tp_jwks *sets[2],
                                         enum tp_jwt_alg alg, size_t *count)
{
    const struct tp_jwt_key *found = NULL;
    *count = 0;
    for (size_t s = 0; s < 2; s++)
        for (size_t i = 0; sets[s] && i < sets[s]->num_keys; i++)
            if (alg_permitted(j, &sets[s]->keys[i], alg)) {
                found = &sets[s]->keys[i];
                (*count)++;
            }
    return *count == 1 ? found : NULL;
}

enum key_result {
    KEY_FOUND,
    KEY_SUSPEND,  /* the request waits for a JWKS fetch */
    KEY_UNKNOWN,  /* no key with this kid (or none for a token without kid) */
    KEY_AMBIGUOUS,/* no kid and several keys could verify */
    KEY_BAD_ALG,  /* the kid exists but not for this algorithm */
    KEY_ERROR,
};

/* The worker's key set of jwks_uri when usable (fetched and not older than jwks_cache_ttl);
 * starts a background refresh when the set is older than jwks_refresh. */
static const struct tp_jwks *remote_keys(const struct jwt *j, struct tp_jwks_cache *c,
                                         double now)
{
    const struct jwt_conf *conf = j->conf;
    if (!c->loaded)
        return NULL;
    if (!c->fetching && now - c->fetched_at >= conf->jwks_refresh &&
        now - c->attempted_at >= conf->jwks_min_refresh)
        tp_jwks_cache_fetch(c, &j->source, &j->fetch); /* failure: the next request retries */
    if (conf->jwks_cache_ttl && now - c->fetched_at > conf->jwks_cache_ttl)
        return NULL;
    return &c->keys;
}

/* Wait for the running fetch, or start one, unless this request waited already or the last
 * attempt was less than jwks_min_refresh ago (a flood of made-up kids costs one fetch per
 * jwks_min_refresh, not one per request). */
static enum key_result wait_for_keys(struct tp_plugin_ctx *ctx, const struct jwt *j,
                                     struct tp_jwks_cache *c, double now)
{
    void **waited = tp_plugin_data(ctx);
    if (!c || *waited)
        return KEY_UNKNOWN;
    if (!c->fetching) {
        if (c->attempted_at > 0 && now - c->attempted_at < j->conf->jwks_min_refresh)
            return KEY_UNKNOWN;
        if (tp_jwks_cache_fetch(c, &j->source, &j->fetch) != 0 || !c->fetching)
            return KEY_UNKNOWN; /* could not start, or failed at once */
    }
    if (!(*waited = tp_plugin_alloc(ctx, 1)) || tp_plugin_wait(ctx, &c->waiters) != 0)
        return KEY_ERROR;
    return KEY_SUSPEND;
}

/* Key selection for keys not bound to consumers: by kid only (RFC 7515 §4.1.4). */
static enum key_result find_set_key(struct tp_plugin_ctx *ctx, const struct jwt *j,
                                    const struct tp_jwt *t, const struct tp_jwt_key **key)
{
    struct tp_jwks_cache *c = NULL;
    double now = tp_jwks_now();
    const struct tp_jwks *sets[2] = {&j->static_keys, NULL};

    if (j->has_source) {
        if (!(c = tp_jwks_cache_get(ctx, &j->source)))
            return KEY_ERROR;
        sets[1] = remote_keys(j, c, now);
    }
    if (t->kid.ptr) {
        for (size_t s = 0; s < 2 && !*key; s++)
            if (sets[s])
                *key = tp_jwks_find(sets[s], t->kid, t->alg);
        if (*key)
            return alg_permitted(j, *key, t->alg) ? KEY_FOUND : KEY_BAD_ALG;
        for (size_t s = 0; s < 2; s++)
            if (sets[s] && tp_jwks_has_kid(sets[s], t->kid))
                return KEY_BAD_ALG;
    } else {
        size_t n = 0;
        if ((*key = sole_key(j, sets, t->alg, &n)))
            return KEY_FOUND;
        if (n > 1)
            return KEY_AMBIGUOUS;
        if (sets[1] || !c)
            return KEY_UNKNOWN; /* the remote set is loaded: a refetch would not help */
    }
    return wait_for_keys(ctx, j, c, now);
}

/* consumer_claim: the claim's value names a consumer by id or username. */
static const struct tp_consumer *claimed_consumer(struct tp_plugin_ctx *ctx,
                                                  const struct jwt *j, const json_t *claims)
{
    const json_t *v = json_object_get(claims, j->conf->consumer_claim);
    if (!json_is_string(v) || json_string_length(v) == 0)
        return NULL;
    return tp_consumer_find(tp_plugin_snapshot(ctx),
                            (struct tp_slice){json_string_value(v), json_string_length(v)});
}

/*
 * This worker's verification cache, or NULL when verify_cache_size is 0 or the cache cannot
 * be made (then every signature is verified, as without it). One cache per worker, shared by
 * every jwt instance and kept across reloads: its entries are bound to the key's identity, so
 * what one instance verified holds for any other with the same key. It is made on first use
 * and replaced by a larger one (empty) when an instance asks for more entries than it has, so
 * a worker holds one cache of the largest size it was asked for.
 */
static struct tp_jwt_cache *verify_cache(struct tp_plugin_ctx *ctx, const struct jwt *j)
{
    size_t size = j->conf->verify_cache_size;
    if (size == 0)
        return NULL;
    struct tp_jwt_cache *c = tp_plugin_worker_get(ctx, JWT_VERIFY_CACHE_KEY), *bigger = NULL;
    if (c && tp_jwt_cache_capacity(c) >= size)
        return c;
    if (tp_jwt_cache_new(size, &bigger) != 0)
        return c;
    /* put frees the smaller cache: nothing holds it beyond the request that fetched it */
    if (tp_plugin_worker_put(ctx, JWT_VERIFY_CACHE_KEY, bigger, tp_jwt_cache_free) != 0) {
        tp_jwt_cache_free(bigger);
        return c;
    }
    return bigger;
}

/* Verify t and authenticate the request; the claims go to the context on success. */
static enum tp_plugin_status authenticate(struct tp_plugin_ctx *ctx, const struct jwt *j,
                                          struct tp_jwt *t)
{
    const char *kcn = j->conf->key_claim_name;
    const json_t *kv = json_object_get(t->claims, kcn);
    const struct tp_credential *cred = NULL;
    const struct cred_key *ck = NULL;
    const struct tp_jwt_key *key = NULL;
    const char *why = NULL;
    bool has_sets = j->static_keys.num_keys || j->has_source;

    if (!kv)
        kv = json_object_get(t->header, kcn); /* Kong: claims first, then the header */
    if (json_is_string(kv) && json_string_length(kv) > 0)
        cred = tp_consumer_find_jwt(tp_plugin_snapshot(ctx),
                                    (struct tp_slice){json_string_value(kv),
                                                      json_string_length(kv)});
    if (cred) {
        if (!(ck = cred_key_of(j, cred)))
            return deny(ctx, j, j->msg_no_cred, "credential not compiled", true);
        key = &ck->key;
    } else if (!has_sets) {
        if (!kv)
            return deny(ctx, j, j->msg_no_claim, "key claim missing", true);
        if (!json_is_string(kv) || json_string_length(kv) == 0)
            return deny(ctx, j, j->msg_bad_claim, "key claim invalid", true);
        return deny(ctx, j, j->msg_no_cred, "no credential for the key claim", true);
    } else {
        switch (find_set_key(ctx, j, t, &key)) {
        case KEY_FOUND:
            break;
        case KEY_SUSPEND:
            return TP_PLUGIN_SUSPEND;
        case KEY_UNKNOWN:
            return deny(ctx, j, MSG_UNKNOWN_KEY, t->kid.ptr ? "unknown kid" : "no key", true);
        case KEY_AMBIGUOUS:
            return deny(ctx, j, MSG_UNKNOWN_KEY, "no kid and several keys", true);
        case KEY_BAD_ALG:
            return deny(ctx, j, MSG_BAD_ALG, "algorithm not allowed for the key", true);
        case KEY_ERROR:
            return TP_PLUGIN_ERROR;
        }
    }
    if (!alg_permitted(j, key, t->alg))
        return deny(ctx, j, MSG_BAD_ALG, "algorithm not allowed for the key", true);
    if (ck && ck->unusable)
        return deny(ctx, j, MSG_BAD_SECRET, "credential secret unusable", true);
    /* only the public-key operation may be skipped; the claims are checked below either way */
    double now = tp_plugin_time(ctx);
    int rc = tp_jwt_verify_cached(verify_cache(ctx, j), t, key, now);
    if (rc == TP_ENOMEM)
        return TP_PLUGIN_ERROR;
    if (rc != 0)
        return deny(ctx, j, MSG_BAD_SIG, "invalid signature", true);
    if (tp_jwt_check_claims(t->claims, &j->rules, now, &why) != 0)
        return deny(ctx, j, why, why, true);

    const struct tp_consumer *consumer = cred ? cred->consumer : NULL;
    if (!cred && j->conf->consumer_claim &&
        !(consumer = claimed_consumer(ctx, j, t->claims)))
        return deny(ctx, j, MSG_NO_CONSUMER, "no consumer for consumer_claim", true);
    tp_plugin_set_consumer(ctx, consumer, cred);
    tp_plugin_set_claims(ctx, json_incref(t->claims));
    return TP_PLUGIN_CONTINUE;
}

static enum tp_plugin_status jwt_access(struct tp_plugin_ctx *ctx, const void *vinst)
{
    const struct jwt *j = vinst;
    struct tp_slice token = {0};
    const char *why = NULL;

    struct tp_slice method = tp_plugin_method(ctx);

    /* methods are case-sensitive (RFC 9110 §9.1): "options" is not a preflight (as key-auth) */
    if (!j->conf->run_on_preflight && method.len == 7 && memcmp(method.ptr, "OPTIONS", 7) == 0)
        return TP_PLUGIN_CONTINUE;
    switch (find_token(ctx, j->conf, &token)) {
    case TOKEN_NONE:
        return deny(ctx, j, MSG_UNAUTHORIZED, "no token", false);
    case TOKEN_MULTIPLE:
        return deny(ctx, j, MSG_MULTIPLE, "multiple tokens", true);
    case TOKEN_FOUND:
        break;
    }
    struct tp_jwt *t = tp_plugin_alloc(ctx, sizeof(*t));
    if (!t)
        return TP_PLUGIN_ERROR;
    int rc = tp_jwt_parse(token.ptr, token.len, t, &why);
    if (rc == TP_ENOMEM)
        return TP_PLUGIN_ERROR;
    if (rc != 0)
        return deny(ctx, j, MSG_BAD_TOKEN, why, true);
    enum tp_plugin_status st = authenticate(ctx, j, t);
    tp_jwt_clear(t);
    return st;
}

/** The jwt plugin (registered in src/plugins/registry.c). */
const struct tp_plugin tp_plugin_jwt = {
    .name = "jwt",
    .priority = 1450,
    .auth = true,
    .schema = &jwt_schema,
    .conf_size = sizeof(struct jwt_conf),
    .validate = jwt_validate,
    .free_conf = jwt_free_conf,
    .compile = jwt_compile,
    .destroy = jwt_destroy,
    .access = jwt_access,
};
