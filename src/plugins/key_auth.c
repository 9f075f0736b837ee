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
#include "plugins/auth_common.h"
#include "plugins/transform_util.h"
#include "turnpike/consumer.h"
#include "turnpike/plugin.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define KEY_AUTH_DEFAULT_NAME "apikey"
#define KEY_AUTH_DEFAULT_REALM "turnpike"

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
    char *anonymous; /* consumer id or username, or NULL */
    char *realm;     /* or NULL: KEY_AUTH_DEFAULT_REALM */
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

/*
 * Kong (3.10+, Konnect) `identity_realms`: where keys are looked up. Its default,
 * [{scope: cp, id: null, region: null}], means "in this gateway's own configuration", which
 * is what we do; a `realm` scope needs Konnect and is refused rather than ignored.
 */
static void parse_identity_realms(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                                  void *obj)
{
    (void)obj;
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
    TP__CFG_STRING_KEY("anonymous", struct key_auth_conf, anonymous, NULL),
    TP__CFG_STRING_KEY("realm", struct key_auth_conf, realm, NULL),
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
    if (tp__auth_check_realm(b, conf->realm) != 0)
        rc = -1;
    return rc;
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
    ka->www_authenticate = tp__auth_challenge(
        "Key", conf->realm ? conf->realm : KEY_AUTH_DEFAULT_REALM, "", &ka->www_authenticate_len);
    if (!ka->www_authenticate)
        goto out_oom;
    if (tp__auth_anonymous(b, conf->anonymous, &ka->anonymous) != 0) {
        key_auth_destroy(ka);
        return -1;
    }
    *out = ka;
    return 0;

out_oom:
    key_auth_destroy(ka);
    return tp_plugin_build_error(b, NULL, "out of memory");
}

/* ------------------------------------------------------------------------------------------ */
/* Query strings (application/x-www-form-urlencoded, as Kong's get_query reads them)          */

/* One argument of a query string: `name`, or `name=value`. */
struct query_arg {
    struct tp_slice seg;  /* the whole argument (raw) */
    struct tp_slice name; /* raw */
    const char *eq;       /* its '=', or NULL */
};

/* The argument at *pos (advanced past it and its '&'); false at the end of q. */
static bool query_next(struct tp_slice q, size_t *pos, struct query_arg *a)
{
    if (*pos >= q.len)
        return false;
    const char *seg = q.ptr + *pos;
    const char *amp = memchr(seg, '&', q.len - *pos);
    size_t seg_len = amp ? (size_t)(amp - seg) : q.len - *pos;

    a->eq = memchr(seg, '=', seg_len);
    a->seg = (struct tp_slice){seg, seg_len};
    a->name = (struct tp_slice){seg, a->eq ? (size_t)(a->eq - seg) : seg_len};
    *pos += seg_len + 1;
    return true;
}

/* Is a a non-empty argument with n's query name? (Names are compared decoded, in place.) */
static bool query_arg_is(const struct query_arg *a, const struct key_name *n)
{
    return a->seg.len && tp__xf_form_eq(a->name, (struct tp_slice){n->query, n->query_len});
}

/* The `name=value` arguments of a query string, split at '&'. A bare `name` (a flag, no
 * '=') carries no key and is not counted: `?apikey&apikey=k` holds one key, not two. */
struct query_hit {
    unsigned count;        /* `name=...` arguments */
    struct tp_slice value; /* the first one's raw (still encoded) value */
};

static void query_find(struct tp_slice q, const struct key_name *n, struct query_hit *hit)
{
    struct query_arg a;
    size_t pos = 0;
    memset(hit, 0, sizeof(*hit));
    while (query_next(q, &pos, &a))
        if (a.eq && query_arg_is(&a, n) && hit->count++ == 0)
            hit->value = (struct tp_slice){a.eq + 1, a.seg.len - a.name.len - 1};
}

/* The query without any `name` argument, sent upstream instead (hide_credentials). */
static int query_remove(struct tp_plugin_ctx *ctx, struct tp_slice q, const struct key_name *n)
{
    char *out = tp_plugin_alloc(ctx, q.len + 1);
    struct query_arg a;
    size_t pos = 0, len = 0;
    bool removed = false;

    if (!out)
        return TP_ENOMEM;
    while (query_next(q, &pos, &a)) {
        if (query_arg_is(&a, n)) {
            removed = true;
        } else {
            if (len)
                out[len++] = '&';
            memcpy(out + len, a.seg.ptr, a.seg.len);
            len += a.seg.len;
        }
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
        if (hit.count == 1) {
            /* Kong compares the decoded value; the decoded form is never longer. */
            char *buf = tp_plugin_alloc(ctx, hit.value.len + 1);
            if (!buf)
                return KEY_NOMEM;
            key->ptr = buf;
            key->len = tp__xf_form_decode(hit.value.ptr, hit.value.len, buf);
            return KEY_FOUND;
        }
        /* none, or only flags (`?apikey` without '='): no key here, try the next name */
    }
    return KEY_NONE;
}

/* A failed authentication (tp__auth_fail): a key was presented unless none was found. */
static enum tp_plugin_status deny(struct tp_plugin_ctx *ctx, const struct key_auth *ka,
                                  const char *message, const char *reason)
{
    return tp__auth_fail(ctx, ka->anonymous,
                         (struct tp_slice){ka->www_authenticate, ka->www_authenticate_len},
                         message, reason, strcmp(reason, "missing api key") != 0);
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
    .compile = key_auth_compile,
    .destroy = key_auth_destroy,
    .access = key_auth_access,
};
