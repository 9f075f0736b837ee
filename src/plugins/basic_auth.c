/*
 * basic-auth: authenticate a request by `Authorization: Basic base64(user:password)` (RFC 7617),
 * or the same in Proxy-Authorization, against the consumers' basicauth_credentials (Kong's
 * plugin of the same name, priority 1100; docs/plugins/basic-auth.md).
 *
 *   plugins:
 *     - name: basic-auth
 *       config:
 *         hide_credentials: false   # remove Authorization / Proxy-Authorization upstream
 *         anonymous: null           # consumer id or username used when authentication fails
 *         realm: service            # WWW-Authenticate: Basic realm="service", charset="UTF-8"
 *
 * Stored passwords are crypt(3) hashes (yescrypt, bcrypt, SHA-512 crypt...), verified with
 * crypt_rn and compared in constant time. Paying the hash on every request would cap a worker
 * at a few hundred requests a second, so each worker remembers verdicts: a bounded table keyed
 * by a keyed SHA-256 of (username, password, stored hash) — never the password itself. A reload
 * that changes the stored hash changes the key, so old verdicts simply stop matching.
 */
#include "config/schema.h"
#include "plugins/auth_common.h"
#include "turnpike/consumer.h"
#include "turnpike/config.h"
#include "turnpike/plugin.h"
#include "turnpike/snapshot.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define BASIC_AUTH_DEFAULT_REALM "service" /* Kong's default */
#define BASIC_AUTH_WORKER_KEY "basic-auth:cache"

/* Verdict cache: 256 sets of 4 ways (1024 verdicts, ~44 KiB per worker with crypt_rn's
 * scratch area). A set is chosen by the first byte of the keyed digest, so an attacker cannot
 * aim at one set; inside a set the least recently used verdict goes first. */
#define CACHE_SETS 256
#define CACHE_WAYS 4
#define DIGEST_LEN 32

#define MSG_MISSING "Unauthorized"
#define MSG_INVALID "Invalid authentication credentials"

/** The `config` of one basic-auth entry, filled by basic_auth_schema. */
struct basic_auth_conf {
    bool hide_credentials;
    char *anonymous; /* consumer id or username, or NULL */
    char *realm;     /* or NULL: BASIC_AUTH_DEFAULT_REALM */
};

/** The compiled instance, shared read-only by the workers. */
struct basic_auth {
    const struct basic_auth_conf *conf;
    const struct tp_consumer *anonymous; /* resolved at compile, or NULL */
    char *www_authenticate;              /* Basic realm="...", charset="UTF-8" */
    size_t www_authenticate_len;
    char *dummy_hash;                    /* crypt(3) setting verified for unknown users */
};

/* ------------------------------------------------------------------------------------------ */
/* Config                                                                                     */

/*
 * Kong 3.13's brute_force_protection: {strategy: off|memory|redis|cluster, redis: {...}}.
 * Kong files carry it with strategy "off"; that is accepted (and the redis settings beside it
 * ignored); any active strategy is refused rather than silently not enforced.
 */
static void parse_brute_force(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                              void *obj)
{
    (void)obj;
    if (value->type != YAML_MAPPING_NODE) {
        tp__cfg_error(ctx, value, "expected a mapping for \"%s\"", key);
        return;
    }
    yaml_node_t *strategy = tp__cfg_lookup(ctx, value, "strategy");
    if (!strategy || tp__cfg_is_null(strategy))
        return;
    if (strategy->type == YAML_SCALAR_NODE && strategy->data.scalar.length == 3 &&
        memcmp(strategy->data.scalar.value, "off", 3) == 0)
        return;
    tp__cfg_error(ctx, strategy, "\"%s\": only strategy \"off\" is supported", key);
}

static const struct tp__cfg_directive basic_auth_keys[] = {
    TP__CFG_BOOL_KEY("hide_credentials", struct basic_auth_conf, hide_credentials, false),
    TP__CFG_STRING_KEY("anonymous", struct basic_auth_conf, anonymous, NULL),
    TP__CFG_STRING_KEY("realm", struct basic_auth_conf, realm, NULL),
    TP__CFG_CUSTOM_KEY("brute_force_protection", parse_brute_force, false),
};

TP__CFG_TABLE_CHECK(basic_auth_keys);

static const struct tp__cfg_schema basic_auth_schema = {
    .what = "basic-auth config",
    .keys = basic_auth_keys,
    .num_keys = TP_ARRAY_LEN(basic_auth_keys),
    .size = sizeof(struct basic_auth_conf),
    .mark_offset = -1,
};

static int basic_auth_validate(struct tp_plugin_build *b, void *vconf)
{
    struct basic_auth_conf *conf = vconf;
    return tp__auth_check_realm(b, conf->realm);
}

static void basic_auth_destroy(void *vinst)
{
    struct basic_auth *ba = vinst;
    if (!ba)
        return;
    free(ba->www_authenticate);
    free(ba->dummy_hash);
    free(ba);
}

/*
 * What an unknown user's password is checked against, so that "no such user" costs as much
 * as "wrong password" and the answer time does not tell which usernames exist. The first
 * basic-auth credential's hash (same method, cost and salt length; the result is thrown
 * away, so its password opens nothing here); without credentials, a fresh yescrypt setting
 * of the default cost, as plain-text passwords get at load. Credentials of mixed methods or
 * costs leave a difference between them (docs/plugins/basic-auth.md).
 */
static char *dummy_hash(const struct tp_snapshot *snap)
{
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];

    for (size_t i = 0; snap && snap->config && i < snap->config->num_consumers; i++) {
        const struct tp_conf_consumer *c = &snap->config->consumers[i];
        for (size_t j = 0; j < c->num_basicauth; j++)
            if (c->basicauth[j].password)
                return strdup(c->basicauth[j].password);
    }
    if (!crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof(salt)))
        return NULL;
    return strdup(salt);
}

static int basic_auth_compile(struct tp_plugin_build *b, const void *vconf, void **out)
{
    const struct basic_auth_conf *conf = vconf;
    struct basic_auth *ba = calloc(1, sizeof(*ba));

    /* RFC 7617 §2: the challenge names the realm; §2.1: charset="UTF-8" tells the client how
     * to encode user-id and password (we compare bytes, so UTF-8 passwords work as stored). */
    if (!ba || !(ba->www_authenticate = tp__auth_challenge(
                     "Basic", conf->realm ? conf->realm : BASIC_AUTH_DEFAULT_REALM,
                     ", charset=\"UTF-8\"", &ba->www_authenticate_len))) {
        basic_auth_destroy(ba);
        return tp_plugin_build_error(b, NULL, "out of memory");
    }
    ba->conf = conf;
    if (!(ba->dummy_hash = dummy_hash(b->snap))) {
        basic_auth_destroy(ba);
        return tp_plugin_build_error(b, NULL, "cannot make a crypt(3) setting (libxcrypt)");
    }
    if (tp__auth_anonymous(b, conf->anonymous, &ba->anonymous) != 0) {
        basic_auth_destroy(ba);
        return -1;
    }
    *out = ba;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Parsing the credentials (RFC 7617 §2, base64 of RFC 4648 §4)                               */

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Strict base64: the standard alphabet; '=' padding only at the end and only as much as the
 * length needs (unpadded input is accepted, as nginx's decoder does). Returns the decoded
 * length, or -1. out holds at least len bytes. */
static long b64_decode(const char *in, size_t len, unsigned char *out)
{
    size_t pad = 0, n = 0;
    uint32_t acc = 0;
    unsigned bits = 0;

    while (pad < 2 && len > 0 && in[len - 1] == '=') {
        len--;
        pad++;
    }
    if (len % 4 == 1 || (pad && (len + pad) % 4 != 0))
        return -1;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    return (long)n;
}

/**
 * Parse one Authorization / Proxy-Authorization value of the Basic scheme (RFC 7617 §2):
 * `Basic` (any case, RFC 9110 §11.1), one or more spaces, then base64 of `user-id:password`.
 *
 * @param value     the header value (borrowed)
 * @param buf       value.len + 1 bytes of scratch: receives the decoded credentials (secret:
 *                  the caller wipes it)
 * @param user      set to the user-id inside buf (not NUL-terminated; no ':', never empty)
 * @param password  set to the password inside buf (NUL-terminated right after it)
 * @return 0; TP_ENOTFOUND when the scheme is not Basic; TP_EINVAL when malformed (bad base64,
 *         no ':', an empty user-id, a NUL byte — which crypt(3) could not see past).
 */
int tp__basic_auth_parse(struct tp_slice value, char *buf, struct tp_slice *user,
                         struct tp_slice *password)
{
    const char *p = value.ptr, *end = value.ptr + value.len;

    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    if ((size_t)(end - p) < 5 || !tp_slice_eq_nocase((struct tp_slice){p, 5}, "basic", 5))
        return TP_ENOTFOUND;
    p += 5;
    if (p == end)
        return TP_EINVAL; /* "Basic" alone */
    if (*p != ' ' && *p != '\t')
        return TP_ENOTFOUND; /* "Basically": another scheme */
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    long n = b64_decode(p, (size_t)(end - p), (unsigned char *)buf);
    if (n <= 0)
        return TP_EINVAL;
    buf[n] = '\0';
    const char *colon = memchr(buf, ':', (size_t)n);
    if (!colon || colon == buf || memchr(buf, '\0', (size_t)n))
        return TP_EINVAL;
    *user = (struct tp_slice){buf, (size_t)(colon - buf)};
    *password = (struct tp_slice){colon + 1, (size_t)(buf + n - colon - 1)};
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Per-worker verdict cache                                                                   */

enum { VERDICT_EMPTY = 0, VERDICT_GOOD, VERDICT_BAD };

struct verdict {
    unsigned char digest[DIGEST_LEN];
    uint32_t last_use;
    uint8_t state; /* VERDICT_* */
};

struct basic_worker {
    EVP_MD *sha256;        /* fetched once */
    EVP_MD_CTX *md;        /* reused: no allocation per request */
    unsigned char key[32]; /* random per worker: digests are useless
                              outside this process */
    uint32_t tick;
    struct verdict sets[CACHE_SETS][CACHE_WAYS];
    struct crypt_data crypt; /* crypt_rn's scratch (32 KiB) */
};

static void worker_free(void *v)
{
    struct basic_worker *w = v;
    if (!w)
        return;
    EVP_MD_CTX_free(w->md);
    EVP_MD_free(w->sha256);
    OPENSSL_cleanse(w, sizeof(*w));
    free(w);
}

static struct basic_worker *worker_state(struct tp_plugin_ctx *ctx)
{
    struct basic_worker *w = tp_plugin_worker_get(ctx, BASIC_AUTH_WORKER_KEY);
    if (w)
        return w;
    w = calloc(1, sizeof(*w)); /* crypt_data must start zeroed (crypt.h) */
    if (!w)
        return NULL;
    w->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    w->md = EVP_MD_CTX_new();
    if (!w->sha256 || !w->md || RAND_bytes(w->key, sizeof(w->key)) != 1 ||
        tp_plugin_worker_put(ctx, BASIC_AUTH_WORKER_KEY, w, worker_free) != 0) {
        worker_free(w);
        return NULL;
    }
    return w;
}

/* SHA-256(key ‖ user ‖ 0 ‖ password ‖ 0 ‖ stored hash): user and password hold no NUL, so
 * distinct triples never share an input. */
static int verdict_digest(struct basic_worker *w, struct tp_slice user, struct tp_slice password,
                          const char *stored, unsigned char out[DIGEST_LEN])
{
    static const unsigned char zero = 0;
    unsigned int len = 0;

    if (EVP_DigestInit_ex2(w->md, w->sha256, NULL) != 1 ||
        EVP_DigestUpdate(w->md, w->key, sizeof(w->key)) != 1 ||
        EVP_DigestUpdate(w->md, user.ptr, user.len) != 1 ||
        EVP_DigestUpdate(w->md, &zero, 1) != 1 ||
        EVP_DigestUpdate(w->md, password.ptr, password.len) != 1 ||
        EVP_DigestUpdate(w->md, &zero, 1) != 1 ||
        EVP_DigestUpdate(w->md, stored, strlen(stored)) != 1 ||
        EVP_DigestFinal_ex(w->md, out, &len) != 1 || len != DIGEST_LEN)
        return TP_EIO;
    return 0;
}

static struct verdict *verdict_find(struct basic_worker *w, const unsigned char *digest)
{
    struct verdict *set = w->sets[digest[0]];
    for (size_t i = 0; i < CACHE_WAYS; i++)
        if (set[i].state != VERDICT_EMPTY &&
            CRYPTO_memcmp(set[i].digest, digest, DIGEST_LEN) == 0) {
            set[i].last_use = ++w->tick;
            return &set[i];
        }
    return NULL;
}

/* Remember a verdict. A failure may only take the place of another failure (or a free way):
 * a flood of wrong passwords must not push out the verdicts of the users who know theirs. */
static void verdict_put(struct basic_worker *w, const unsigned char *digest, bool good)
{
    struct verdict *set = w->sets[digest[0]], *victim = NULL;
    uint32_t oldest = 0;

    for (size_t i = 0; i < CACHE_WAYS; i++) {
        if (set[i].state == VERDICT_EMPTY) {
            victim = &set[i];
            break;
        }
        if (!good && set[i].state == VERDICT_GOOD)
            continue;
        uint32_t age = w->tick - set[i].last_use; /* unsigned: survives the wrap */
        if (!victim || age > oldest) {
            victim = &set[i];
            oldest = age;
        }
    }
    if (!victim)
        return;
    memcpy(victim->digest, digest, DIGEST_LEN);
    victim->state = good ? VERDICT_GOOD : VERDICT_BAD;
    victim->last_use = ++w->tick;
}

/* crypt(3) the password with the stored hash as setting; equal output = the right password. */
static bool crypt_matches(struct basic_worker *w, const char *password, const char *stored)
{
    size_t len = strlen(stored);
    const char *out = crypt_rn(password, stored, &w->crypt, (int)sizeof(w->crypt));
    bool ok = out && out[0] != '*' && strlen(out) == len && CRYPTO_memcmp(out, stored, len) == 0;

    OPENSSL_cleanse(w->crypt.input, sizeof(w->crypt.input)); /* crypt_rn copied the password */
    return ok;
}

/*
 * 0 with *ok set, or an error (the request then fails with 500). cred NULL: an unknown user,
 * checked against the instance's dummy hash and always wrong — at the same cost as a known
 * user's wrong password, the first time and (through the cache, as a failure that can only
 * replace other failures) the next times.
 */
static int verify_password(struct tp_plugin_ctx *ctx, const struct basic_auth *ba,
                           const struct tp_credential *cred, struct tp_slice user,
                           struct tp_slice password, bool *ok)
{
    const struct tp_conf_credential *cc = cred ? cred->conf : NULL;
    const char *stored = cred ? (cc ? cc->password : NULL) : ba->dummy_hash;
    struct basic_worker *w = worker_state(ctx);
    unsigned char digest[DIGEST_LEN];

    *ok = false;
    if (!w)
        return TP_ENOMEM;
    if (!stored || password.len >= CRYPT_MAX_PASSPHRASE_SIZE)
        return 0; /* no hash to match, or longer than crypt(3) accepts: wrong */
    if (verdict_digest(w, user, password, stored, digest) != 0)
        return TP_EIO;
    const struct verdict *v = verdict_find(w, digest);
    if (v) {
        *ok = v->state == VERDICT_GOOD;
    } else {
        *ok = crypt_matches(w, password.ptr, stored) && cred != NULL;
        verdict_put(w, digest, *ok);
    }
    OPENSSL_cleanse(digest, sizeof(digest));
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Requests                                                                                   */

/* Credentials read from one header. */
struct basic_creds {
    int rc;       /* 0, TP_ENOTFOUND (absent / other scheme), TP_EINVAL, TP_ENOMEM */
    bool present; /* the header is there at all */
    char *buf;    /* decoded bytes in the request arena (wiped at the end) */
    size_t cap;
    struct tp_slice user, password;
};

static void read_creds(struct tp_plugin_ctx *ctx, const char *header, struct basic_creds *c)
{
    struct tp_slice v, second;

    memset(c, 0, sizeof(*c));
    c->rc = TP_ENOTFOUND;
    if (!tp_plugin_header(ctx, header, 0, &v))
        return;
    c->present = true;
    if (tp_plugin_header(ctx, header, 1, &second)) {
        c->rc = TP_EINVAL; /* a singleton field given twice: which one counts is ambiguous */
        return;
    }
    c->cap = v.len + 1;
    c->buf = tp_plugin_alloc(ctx, c->cap);
    c->rc = c->buf ? tp__basic_auth_parse(v, c->buf, &c->user, &c->password) : TP_ENOMEM;
}

static void wipe_creds(struct basic_creds *c)
{
    if (c->buf)
        OPENSSL_cleanse(c->buf, c->cap);
}

/* A failed authentication (tp__auth_fail): credentials were presented unless neither header
 * was there at all. */
static enum tp_plugin_status deny(struct tp_plugin_ctx *ctx, const struct basic_auth *ba,
                                  const char *message, const char *reason)
{
    return tp__auth_fail(ctx, ba->anonymous,
                         (struct tp_slice){ba->www_authenticate, ba->www_authenticate_len},
                         message, reason, strcmp(reason, "missing basic credentials") != 0);
}

/*
 * Kong's order: Proxy-Authorization first, used when it parses and names a known user; else
 * Authorization. Neither header at all: "Unauthorized"; anything else that fails: "Invalid
 * authentication credentials" (unknown user and wrong password look the same to the client).
 */
static enum tp_plugin_status authenticate(struct tp_plugin_ctx *ctx, const struct basic_auth *ba,
                                          struct basic_creds *pa, struct basic_creds *au)
{
    const struct tp_snapshot *snap = tp_plugin_snapshot(ctx);
    const struct tp_credential *cred = NULL;
    const struct basic_creds *use = NULL;
    bool ok;

    if (pa->rc == TP_ENOMEM || au->rc == TP_ENOMEM)
        return TP_PLUGIN_ERROR;
    if (!pa->present && !au->present)
        return deny(ctx, ba, MSG_MISSING, "missing basic credentials");
    if (pa->rc == 0 && (cred = tp_consumer_find_basic(snap, pa->user)))
        use = pa;
    else if (au->rc == 0)
        cred = tp_consumer_find_basic(snap, (use = au)->user);
    if (!use) {
        if (pa->rc == TP_EINVAL || au->rc == TP_EINVAL)
            return deny(ctx, ba, MSG_INVALID, "malformed basic credentials");
        if (pa->rc != 0) /* only other schemes (Bearer...): another auth plugin may take them */
            return deny(ctx, ba, MSG_INVALID, "no basic credentials");
        use = pa; /* well formed, unknown user, and nothing else to try */
    }
    /* an unknown user (cred NULL) pays for a hash too: timing must not reveal usernames */
    if (verify_password(ctx, ba, cred, use->user, use->password, &ok) != 0)
        return TP_PLUGIN_ERROR;
    if (!ok)
        return deny(ctx, ba, MSG_INVALID, "invalid basic credentials");
    if (ba->conf->hide_credentials && (tp_plugin_remove_header(ctx, "Authorization") != 0 ||
                                       tp_plugin_remove_header(ctx, "Proxy-Authorization") != 0))
        return TP_PLUGIN_ERROR;
    tp_plugin_set_consumer(ctx, cred->consumer, cred);
    return TP_PLUGIN_CONTINUE;
}

static enum tp_plugin_status basic_auth_access(struct tp_plugin_ctx *ctx, const void *vinst)
{
    struct basic_creds pa, au;
    enum tp_plugin_status st;

    read_creds(ctx, "Proxy-Authorization", &pa);
    read_creds(ctx, "Authorization", &au);
    st = authenticate(ctx, vinst, &pa, &au);
    wipe_creds(&pa); /* the arena lives until the response is sent: no password in it */
    wipe_creds(&au);
    return st;
}

/** The basic-auth plugin (registered in src/plugins/registry.c). */
const struct tp_plugin tp_plugin_basic_auth = {
    .name = "basic-auth",
    .priority = 1100,
    .auth = true,
    .schema = &basic_auth_schema,
    .conf_size = sizeof(struct basic_auth_conf),
    .validate = basic_auth_validate,
    .compile = basic_auth_compile,
    .destroy = basic_auth_destroy,
    .access = basic_auth_access,
};
