/*
 * key-auth: authenticate a request by an API key found in a header or a query argument
 * (Kong's plugin of the same name, priority 1250; docs/plugins/key-auth.md).
 *
 *   plugins:
 *     - name: key-auth
 *       config:
 *         key_names: [apikey]     # searched in this order, each in the header then the query
 *         key_in_header: true
 *         key_in_query: true
 *         key_in_body: false      # accepted for Kong files; true is a config error
 *         hide_credentials: false # remove the key from what the upstream receives
 *         anonymous: null         # consumer id or username used when authentication fails
 *         run_on_preflight: true  # false: OPTIONS requests pass without a key
 *         realm: null             # WWW-Authenticate: Key realm="<realm or turnpike>"
 *
 * The key is looked up in the snapshot's key table (tp_consumer_find_key: one hash probe, the
 * candidate compared in constant time). Which key counts: for each name of key_names in order,
 * the header first, then the query argument; the first one present is THE key, so a wrong key
 * in a header is not rescued by a right one in the query (401). A name present twice (two
 * headers, or two query arguments) is refused as Kong does ("Duplicate API key found").
 */
#include "config/schema.h"
#include "turnpike/consumer.h"
#include "turnpike/plugin.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define KEY_AUTH_DEFAULT_NAME "apikey"
#define KEY_AUTH_DEFAULT_REALM "turnpike"
#define KEY_AUTH_MAX_REALM 256

/* Messages of the 401 answers: Kong's wording, so clients written for Kong keep working. */
#define MSG_NO_KEY "No API key found in request"
#define MSG_INVALID "Invalid authentication credentials"
#define MSG_DUPLICATE "Duplicate API key found"

/** The `config` of one key-auth entry, filled by key_auth_schema. */
struct key_auth_conf {
    char **key_names;
    size_t num_key_names;
    bool key_in_header;
    bool key_in_query;
    bool key_in_body;
    bool hide_credentials;
    bool run_on_preflight;
    char *anonymous; /* custom (accepts null): consumer id or username, or NULL */
    char *realm;     /* custom (accepts null) */
};

/* One name of key_names, ready for both places it is looked for. */
struct key_name {
    const char *query; /* as configured: the query argument's name */
    size_t query_len;
    char *header; /* '_' written as '-': the header Kong (nginx) would match */
};

/** The compiled instance, shared read-only by the workers. */
struct key_auth {
    const struct key_auth_conf *conf;
    const struct tp_consumer *anonymous; /* resolved at compile, or NULL */
    struct key_name *names;
    size_t num_names;
    char *www_authenticate; /* Key realm="..." */
    size_t www_authenticate_len;
};

/* ------------------------------------------------------------------------------------------ */
/* Config                                                                                     */

/* A string that Kong files may also write as null (deck dumps every field): null = unset. */
static void parse_nullable(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                           char **field)
{
    free(*field);
    *field = NULL;
    if (tp__cfg_is_null(value))
        return;
    if (tp__cfg_string(ctx, key, value, field) == 0 && (*field)[0] == '\0')
        tp__cfg_error(ctx, value, "\"%s\" must not be empty (omit it, or write null)", key);
}

static void parse_anonymous(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    parse_nullable(ctx, key, value, &((struct key_auth_conf *)obj)->anonymous);
}

static void parse_realm(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    parse_nullable(ctx, key, value, &((struct key_auth_conf *)obj)->realm);
}

/*
 * Kong (3.10+, Konnect) `identity_realms`: where keys are looked up. Its default,
 * [{scope: cp, id: null, region: null}], means "in this gateway's own configuration", which
 * is what we do; a `realm` scope needs Konnect and is refused rather than ignored.
 */
static void parse_identity_realms(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                                  void *obj)
{
    (void)obj;
    if (tp__cfg_is_null(value))
        return;
    if (value->type != YAML_SEQUENCE_NODE) {
        tp__cfg_error(ctx, value, "expected a list for \"%s\"", key);
        return;
    }
    for (size_t i = 0; i < tp__cfg_count(value); i++) {
        yaml_node_t *item = tp__cfg_item(ctx, value, i);
        yaml_node_t *scope = item ? tp__cfg_lookup(ctx, item, "scope") : NULL;
        if (!item || item->type != YAML_MAPPING_NODE) {
            tp__cfg_error(ctx, item ? item : value, "expected a mapping in \"%s\"", key);
            continue;
        }
        if (scope && scope->type == YAML_SCALAR_NODE && scope->data.scalar.length == 2 &&
            memcmp(scope->data.scalar.value, "cp", 2) == 0)
            continue;
        tp__cfg_error(ctx, scope ? scope : item,
                      "\"%s\": only {scope: cp} (keys of this configuration) is supported", key);
    }
}

static const struct tp__cfg_directive key_auth_keys[] = {
    TP__CFG_STRLIST_KEY("key_names", struct key_auth_conf, key_names, num_key_names),
    TP__CFG_BOOL_KEY("key_in_header", struct key_auth_conf, key_in_header, true),
    TP__CFG_BOOL_KEY("key_in_query", struct key_auth_conf, key_in_query, true),
    TP__CFG_BOOL_KEY("key_in_body", struct key_auth_conf, key_in_body, false),
    TP__CFG_BOOL_KEY("hide_credentials", struct key_auth_conf, hide_credentials, false),
    TP__CFG_BOOL_KEY("run_on_preflight", struct key_auth_conf, run_on_preflight, true),
    TP__CFG_CUSTOM_KEY("anonymous", parse_anonymous, false),
    TP__CFG_CUSTOM_KEY("realm", parse_realm, false),
    TP__CFG_CUSTOM_KEY("identity_realms", parse_identity_realms, false),
};

TP__CFG_TABLE_CHECK(key_auth_keys);

static const struct tp__cfg_schema key_auth_schema = {
    .what = "key-auth config",
    .keys = key_auth_keys,
    .num_keys = TP_ARRAY_LEN(key_auth_keys),
    .size = sizeof(struct key_auth_conf),
    .mark_offset = -1,
};

/* Kong's header_name typedef: what may be both a header name and a query argument name. */
static bool valid_key_name(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_'))
            return false;
    }
    return true;
}

/* The realm goes inside a quoted-string (RFC 9110 §11.2): no quote, backslash or control. */
static bool valid_realm(const char *s)
{
    size_t n = strlen(s);
    if (n > KEY_AUTH_MAX_REALM)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
            return false;
    }
    return true;
}

static int key_auth_validate(struct tp_plugin_build *b, void *vconf)
{
    struct key_auth_conf *conf = vconf;
    yaml_node_t *names = b->node && b->cfg ? tp__cfg_lookup(b->cfg, b->node, "key_names") : NULL;
    int rc = 0;

    if (names && conf->num_key_names == 0 && !tp__cfg_is_null(names))
        rc = tp_plugin_build_error(b, names, "\"key_names\" must not be empty");
    for (size_t i = 0; i < conf->num_key_names; i++) {
        if (conf->key_names[i] && !valid_key_name(conf->key_names[i]))
            rc = tp_plugin_build_error(b, names ? tp__cfg_item(b->cfg, names, i) : NULL,
                                       "\"key_names\": \"%s\" is not a valid name "
                                       "(letters, digits, '-' and '_')",
                                       conf->key_names[i]);
    }
    if (conf->key_in_body) {
        /* The key would be known only after the body, i.e. after the access phase where the
         * consumer must already be set (acl, rate limits): refused rather than half done. */
        rc = tp_plugin_build_error(
            b, b->node && b->cfg ? tp__cfg_lookup(b->cfg, b->node, "key_in_body") : NULL,
            "\"key_in_body\": true is not supported (keys are read from "
            "headers and the query string only)");
    }
    if (!conf->key_in_header && !conf->key_in_query)
        rc = tp_plugin_build_error(b, NULL,
                                   "\"key_in_header\" and \"key_in_query\" are both "
                                   "false: no key could ever be found");
    if (conf->realm && !valid_realm(conf->realm))
        rc = tp_plugin_build_error(
            b, b->node && b->cfg ? tp__cfg_lookup(b->cfg, b->node, "realm") : NULL,
            "\"realm\" must be at most %d printable characters without "
            "'\"' or '\\'",
            KEY_AUTH_MAX_REALM);
    return rc;
}

static void key_auth_free_conf(void *vconf)
{
    struct key_auth_conf *conf = vconf;
    free(conf->anonymous);
    free(conf->realm);
    conf->anonymous = conf->realm = NULL;
}

static void key_auth_destroy(void *vinst)
{
    struct key_auth *ka = vinst;
    if (!ka)
        return;
    for (size_t i = 0; i < ka->num_names; i++)
        free(ka->names[i].header);
    free(ka->names);
    free(ka->www_authenticate);
    free(ka);
}

static int set_name(struct key_name *n, const char *name)
{
    size_t len = strlen(name);
    n->query = name;
    n->query_len = len;
    n->header = malloc(len + 1);
    if (!n->header)
        return -1;
    for (size_t i = 0; i <= len; i++)
        n->header[i] = name[i] == '_' ? '-' : name[i];
    return 0;
}

static int build_www_authenticate(struct key_auth *ka, const char *realm)
{
    static const char pre[] = "Key realm=\"";
    size_t rlen = strlen(realm);
    size_t len = sizeof(pre) - 1 + rlen + 1;

    ka->www_authenticate = malloc(len + 1);
    if (!ka->www_authenticate)
        return -1;
    memcpy(ka->www_authenticate, pre, sizeof(pre) - 1);
    memcpy(ka->www_authenticate + sizeof(pre) - 1, realm, rlen);
    ka->www_authenticate[len - 1] = '"';
    ka->www_authenticate[len] = '\0';
    ka->www_authenticate_len = len;
    return 0;
}

static int key_auth_compile(struct tp_plugin_build *b, const void *vconf, void **out)
{
    const struct key_auth_conf *conf = vconf;
    struct key_auth *ka = calloc(1, sizeof(*ka));
    size_t n = conf->num_key_names ? conf->num_key_names : 1;

    if (!ka)
        goto out_oom;
    ka->conf = conf;
    ka->names = calloc(n, sizeof(*ka->names));
    if (!ka->names)
        goto out_oom;
    for (size_t i = 0; i < n; i++, ka->num_names++)
        if (set_name(&ka->names[i],
                     conf->num_key_names ? conf->key_names[i] : KEY_AUTH_DEFAULT_NAME) != 0)
            goto out_oom;
    if (build_www_authenticate(ka, conf->realm ? conf->realm : KEY_AUTH_DEFAULT_REALM) != 0)
        goto out_oom;
    if (conf->anonymous) {
        ka->anonymous = tp_consumer_find(b->snap, tp_slice_cstr(conf->anonymous));
        if (!ka->anonymous) {
            tp_plugin_build_error(b, NULL,
                                  "\"anonymous\": no consumer with id or username "
                                  "\"%s\"",
                                  conf->anonymous);
            key_auth_destroy(ka);
            return -1;
        }
    }
    *out = ka;
    return 0;

out_oom:
    key_auth_destroy(ka);
    return tp_plugin_build_error(b, NULL, "out of memory");
}

/* ------------------------------------------------------------------------------------------ */
/* Query strings (application/x-www-form-urlencoded, as Kong's get_query reads them)          */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tp_lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The byte that starts at s[*i] once decoded ('+' is a space, %XX a byte; a '%' that is not
 * followed by two hex digits stands for itself); advances *i past it. */
static unsigned char form_byte(const char *s, size_t len, size_t *i)
{
    char c = s[*i];
    if (c == '+') {
        (*i)++;
        return ' ';
    }
    if (c == '%' && *i + 2 < len) {
        int hi = hex_value(s[*i + 1]);
        int lo = hex_value(s[*i + 2]);
        if (hi >= 0 && lo >= 0) {
            *i += 3;
            return (unsigned char)(hi << 4 | lo);
        }
    }
    (*i)++;
    return (unsigned char)c;
}

/* Does raw[0..len), decoded, equal name[0..nlen)? (No buffer: names are compared in place.) */
static bool form_eq(const char *raw, size_t len, const char *name, size_t nlen)
{
    size_t i = 0, j = 0;
    while (i < len && j < nlen)
        if (form_byte(raw, len, &i) != (unsigned char)name[j++])
            return false;
    return i == len && j == nlen;
}

/* Decode raw[0..len) into out (at least len bytes); returns the decoded length. */
static size_t form_decode(const char *raw, size_t len, char *out)
{
    size_t i = 0, n = 0;
    while (i < len)
        out[n++] = (char)form_byte(raw, len, &i);
    return n;
}

/* One `name` argument of a query string, split at '&'. */
struct query_hit {
    unsigned count;        /* arguments with this name, with or without '=' */
    bool has_value;        /* the first one has a '=' */
    struct tp_slice value; /* its raw (still encoded) value */
};

static void query_find(struct tp_slice q, const struct key_name *n, struct query_hit *hit)
{
    size_t pos = 0;
    memset(hit, 0, sizeof(*hit));
    while (pos < q.len) {
        const char *seg = q.ptr + pos;
        const char *amp = memchr(seg, '&', q.len - pos);
        size_t seg_len = amp ? (size_t)(amp - seg) : q.len - pos;
        const char *eq = memchr(seg, '=', seg_len);
        size_t name_len = eq ? (size_t)(eq - seg) : seg_len;

        if (seg_len && form_eq(seg, name_len, n->query, n->query_len) && hit->count++ == 0) {
            hit->has_value = eq != NULL;
            if (eq)
                hit->value = (struct tp_slice){eq + 1, seg_len - name_len - 1};
        }
        pos += seg_len + 1;
    }
}

/* The query without any `name` argument, sent upstream instead (hide_credentials). */
static int query_remove(struct tp_plugin_ctx *ctx, struct tp_slice q, const struct key_name *n)
{
    char *out = tp_plugin_alloc(ctx, q.len + 1);
    size_t pos = 0, len = 0;
    bool removed = false;

    if (!out)
        return TP_ENOMEM;
    while (pos < q.len) {
        const char *seg = q.ptr + pos;
        const char *amp = memchr(seg, '&', q.len - pos);
        size_t seg_len = amp ? (size_t)(amp - seg) : q.len - pos;
        const char *eq = memchr(seg, '=', seg_len);
        size_t name_len = eq ? (size_t)(eq - seg) : seg_len;

        if (seg_len && form_eq(seg, name_len, n->query, n->query_len)) {
            removed = true;
        } else {
            if (len)
                out[len++] = '&';
            memcpy(out + len, seg, seg_len);
            len += seg_len;
        }
        pos += seg_len + 1;
    }
    return removed ? tp_plugin_set_query(ctx, (struct tp_slice){out, len}) : 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Requests                                                                                   */

enum key_found {
    KEY_NONE,      /* no name of key_names anywhere */
    KEY_FOUND,     /* *key holds the key (possibly empty) */
    KEY_DUPLICATE, /* a name given twice: ambiguous, refused */
    KEY_NOMEM,     /* the request arena is exhausted */
};

/* Kong's search: name by name, the header then the query; the first one present wins. */
static enum key_found find_key(struct tp_plugin_ctx *ctx, const struct key_auth *ka,
                               struct tp_slice *key, const struct key_name **which)
{
    const struct key_auth_conf *conf = ka->conf;
    struct tp_slice q = conf->key_in_query ? tp_plugin_query(ctx) : (struct tp_slice){0};

    for (size_t i = 0; i < ka->num_names; i++) {
        const struct key_name *n = &ka->names[i];
        struct tp_slice v, other;
        *which = n;
        if (conf->key_in_header && tp_plugin_header(ctx, n->header, 0, &v)) {
            if (tp_plugin_header(ctx, n->header, 1, &other))
                return KEY_DUPLICATE;
            *key = v;
            return KEY_FOUND;
        }
        if (!conf->key_in_query || q.len == 0)
            continue;
        struct query_hit hit;
        query_find(q, n, &hit);
        if (hit.count > 1)
            return KEY_DUPLICATE;
        if (hit.count == 1 && hit.has_value) {
            /* Kong compares the decoded value; the decoded form is never longer. */
            char *buf = tp_plugin_alloc(ctx, hit.value.len + 1);
            if (!buf)
                return KEY_NOMEM;
            key->ptr = buf;
            key->len = form_decode(hit.value.ptr, hit.value.len, buf);
            return KEY_FOUND;
        }
        /* `?apikey` without '=' is no key (Kong reads it as a flag): try the next name */
    }
    return KEY_NONE;
}

/*
 * A failed authentication: 401 with the challenge (and a security-log line, which the runner
 * drops if a later auth plugin of the route succeeds), or, with `anonymous`, the anonymous
 * consumer: the request is served as anonymous; a presented but rejected credential is still
 * one security-log line, a missing one is none.
 */
static enum tp_plugin_status deny(struct tp_plugin_ctx *ctx, const struct key_auth *ka,
                                  const char *message, const char *reason)
{
    if (ka->anonymous) {
        if (strcmp(reason, "missing api key") != 0) /* a rejected key, not an absent one */
            tp_plugin_security_log(ctx, 401, reason);
        tp_plugin_set_anonymous(ctx, ka->anonymous);
        return TP_PLUGIN_CONTINUE;
    }
    tp_plugin_security_log(ctx, 401, reason);
    tp_plugin_respond(ctx, 401, message);
    if (tp_plugin_respond_header(
            ctx, "WWW-Authenticate",
            (struct tp_slice){ka->www_authenticate, ka->www_authenticate_len}) != 0)
        return TP_PLUGIN_ERROR;
    return TP_PLUGIN_RESPOND;
}

/* hide_credentials: neither the header nor the query argument reach the upstream (Kong removes
 * both whichever carried the key). */
static int hide_key(struct tp_plugin_ctx *ctx, const struct key_auth *ka, const struct key_name *n)
{
    int rc = 0;
    if (ka->conf->key_in_header)
        rc = tp_plugin_remove_header(ctx, n->header);
    if (rc == 0 && ka->conf->key_in_query) {
        struct tp_slice q = tp_plugin_query(ctx);
        if (q.len)
            rc = query_remove(ctx, q, n);
    }
    return rc;
}

static enum tp_plugin_status key_auth_access(struct tp_plugin_ctx *ctx, const void *vinst)
{
    const struct key_auth *ka = vinst;
    struct tp_slice key = {0};
    const struct key_name *which = NULL;

    struct tp_slice method = tp_plugin_method(ctx);
    /* methods are case-sensitive (RFC 9110 §9.1): "options" is not a preflight */
    if (!ka->conf->run_on_preflight && method.len == 7 && memcmp(method.ptr, "OPTIONS", 7) == 0)
        return TP_PLUGIN_CONTINUE;
    switch (find_key(ctx, ka, &key, &which)) {
    case KEY_DUPLICATE:
        return deny(ctx, ka, MSG_DUPLICATE, "duplicate api key");
    case KEY_NONE:
        return deny(ctx, ka, MSG_NO_KEY, "missing api key");
    case KEY_NOMEM:
        return TP_PLUGIN_ERROR;
    case KEY_FOUND:
        break;
    }
    if (key.len == 0)
        return deny(ctx, ka, MSG_NO_KEY, "missing api key");
    const struct tp_credential *cred = tp_consumer_find_key(tp_plugin_snapshot(ctx), key);
    if (!cred)
        return deny(ctx, ka, MSG_INVALID, "invalid api key");
    if (ka->conf->hide_credentials && hide_key(ctx, ka, which) != 0)
        return TP_PLUGIN_ERROR;
    tp_plugin_set_consumer(ctx, cred->consumer, cred);
    return TP_PLUGIN_CONTINUE;
}

/** The key-auth plugin (registered in src/plugins/registry.c). */
const struct tp_plugin tp_plugin_key_auth = {
    .name = "key-auth",
    .priority = 1250,
    .auth = true,
    .schema = &key_auth_schema,
    .conf_size = sizeof(struct key_auth_conf),
    .validate = key_auth_validate,
    .free_conf = key_auth_free_conf,
    .compile = key_auth_compile,
    .destroy = key_auth_destroy,
    .access = key_auth_access,
};
