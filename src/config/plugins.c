/*
 * turnpike — config loader: plugin entries, consumers and credentials (DESIGN.md §1, §3).
 *
 * A plugin entry is walked in two steps: its `name` is resolved in the registry first, then
 * the whole entry is walked, and `config` is walked against the plugin's own schema with the
 * field path ("plugins[2](jwt).config") prefixed to every message, then `validate` runs.
 * Consumers carry credentials of three kinds, each with its own schema (Kong's field names);
 * secret values may be {env: NAME} or {file: PATH}.
 */
#include "config/schema.h"
#include "config/plugins_internal.h"
#include "turnpike/plugin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Errors from plugin hooks                                                                   */

int tp_plugin_build_error(struct tp_plugin_build *b, const void *node, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    b->num_errors++;
    if (b->cfg) {
        const char *saved = b->cfg->path;
        b->cfg->path = b->path;
        if (node)
            tp__cfg_error(b->cfg, node, "%s", msg);
        else
            tp__cfg_error_at(b->cfg, b->line, b->column, "%s", msg);
        b->cfg->path = saved;
        return -1;
    }
    if (b->errors) {
        for (char *p = msg; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = '?';
        fprintf(b->errors, "%s:%d:%d: %s: %s\n", b->file ? b->file : "config", b->line, b->column,
                b->path ? b->path : "plugin", msg);
    }
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Plugin entries                                                                             */

static void parse_plugin_config(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                                void *obj);
static void parse_ignored_list(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                               void *obj);

#define PLUGIN_COMMON_KEYS                                                                  \
    TP__CFG_STRING_KEY("name", struct tp_conf_plugin, name, NULL),                          \
    TP__CFG_CUSTOM_KEY("config", parse_plugin_config, false),                               \
    TP__CFG_BOOL_KEY("enabled", struct tp_conf_plugin, enabled, true),                      \
    TP__CFG_STRING_KEY("id", struct tp_conf_plugin, id, NULL),                              \
    TP__CFG_CUSTOM_KEY("instance_name", parse_ignored_list, false),                         \
    TP__CFG_CUSTOM_KEY("tags", parse_ignored_list, false),                                  \
    TP__CFG_CUSTOM_KEY("protocols", parse_ignored_list, false)

static const struct tp__cfg_directive nested_plugin_keys[] = {PLUGIN_COMMON_KEYS};
static const struct tp__cfg_directive top_plugin_keys[] = {
    PLUGIN_COMMON_KEYS,
    TP__CFG_STRING_KEY("service", struct tp_conf_plugin, service, NULL),
    TP__CFG_STRING_KEY("route", struct tp_conf_plugin, route, NULL),
    TP__CFG_STRING_KEY("consumer", struct tp_conf_plugin, consumer, NULL),
};

TP__CFG_TABLE_CHECK(top_plugin_keys);

static const struct tp__cfg_schema nested_plugin_schema = {
    .what = "plugin",
    .keys = nested_plugin_keys,
    .num_keys = TP_ARRAY_LEN(nested_plugin_keys),
    .size = sizeof(struct tp_conf_plugin),
    .mark_offset = offsetof(struct tp_conf_plugin, mark),
};

static const struct tp__cfg_schema top_plugin_schema = {
    .what = "plugin",
    .keys = top_plugin_keys,
    .num_keys = TP_ARRAY_LEN(top_plugin_keys),
    .size = sizeof(struct tp_conf_plugin),
    .mark_offset = offsetof(struct tp_conf_plugin, mark),
};

/* Kong metadata we accept and do not use: tags, protocols (plugins run for http and https),
 * instance_name. A scalar or a list of scalars. */
static void parse_ignored_list(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                               void *obj)
{
    (void)obj;
    if (value->type == YAML_SCALAR_NODE)
        return;
    size_t n = 0;
    char **v = tp__cfg_string_list(ctx, key, value, NULL, &n);
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* The plugin entry being walked: config parsing needs its plugin and its path. */
struct plugin_walk {
    struct tp_conf_plugin *entry;
    char path[160];
};

static _Thread_local struct plugin_walk *cur_walk;

static void run_validate(struct tp__cfg_ctx *ctx, struct tp_conf_plugin *p, yaml_node_t *node,
                         const char *path)
{
    if (!p->plugin->validate)
        return;
    struct tp_plugin_build b = {.cfg = ctx, .node = node, .path = path,
                                .line = p->mark.line, .column = p->mark.column};
    p->plugin->validate(&b, p->conf);
}

static int alloc_conf(struct tp__cfg_ctx *ctx, yaml_node_t *at, struct tp_conf_plugin *p)
{
    if (p->conf || !p->plugin->conf_size)
        return 0;
    p->conf = calloc(1, p->plugin->conf_size);
    return p->conf ? 0 : tp__cfg_oom(ctx, at);
}

static void parse_plugin_config(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                                void *obj)
{
    struct tp_conf_plugin *p = obj;
    const struct tp_plugin *pl = p->plugin;
    (void)key;
    if (!pl || !cur_walk)
        return; /* unknown plugin: already reported */
    if (tp__cfg_is_null(value))
        return; /* `config:` with nothing: defaults (finish_plugin) */
    if (!pl->schema) {
        if (value->type != YAML_MAPPING_NODE || value->data.mapping.pairs.top !=
                                                    value->data.mapping.pairs.start)
            tp__cfg_error(ctx, value, "plugin \"%s\" takes no config", pl->name);
        return;
    }
    if (alloc_conf(ctx, value, p) != 0)
        return;
    const char *saved = ctx->path;
    ctx->path = cur_walk->path;
    tp__cfg_object(ctx, pl->schema, value, p->conf);
    run_validate(ctx, p, value, cur_walk->path);
    ctx->path = saved;
    p->plugin = pl;
    p->conf_walked = true;
}

/* An entry without `config` still gets its defaults and its validation. */
static void finish_plugin(struct tp__cfg_ctx *ctx, yaml_node_t *node, struct tp_conf_plugin *p)
{
    if (!p->plugin || p->conf_walked)
        return;
    if (p->plugin->schema && alloc_conf(ctx, node, p) == 0) {
        const char *saved = ctx->path;
        ctx->path = cur_walk->path;
        tp__cfg_object(ctx, p->plugin->schema, NULL, p->conf);
        /* required keys of the plugin's schema are missing when there is no config at all */
        for (size_t i = 0; i < p->plugin->schema->num_keys; i++)
            if (p->plugin->schema->keys[i].required)
                tp__cfg_error(ctx, node, "missing required key \"%s\" in %s",
                              p->plugin->schema->keys[i].name, p->plugin->schema->what);
        run_validate(ctx, p, NULL, cur_walk->path);
        ctx->path = saved;
    } else if (!p->plugin->schema) {
        run_validate(ctx, p, NULL, cur_walk->path);
    }
    p->conf_walked = true;
}

static void plugin_list(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                        bool top_level, struct tp_conf_plugin **out, size_t *num)
{
    *num = 0;
    *out = NULL;
    if (value->type != YAML_SEQUENCE_NODE) {
        tp__cfg_error(ctx, value, "expected a list for \"%s\"", key);
        return;
    }
    size_t n = tp__cfg_count(value);
    if (n == 0)
        return;
    struct tp_conf_plugin *arr = calloc(n, sizeof(*arr));
    if (!arr) {
        tp__cfg_oom(ctx, value);
        return;
    }
    *out = arr;
    *num = n;
    for (size_t i = 0; i < n; i++) {
        struct tp_conf_plugin *p = &arr[i];
        yaml_node_t *item = tp__cfg_item(ctx, value, i);
        yaml_node_t *name = item ? tp__cfg_lookup(ctx, item, "name") : NULL;
        struct plugin_walk walk = {.entry = p};
        if (name && name->type == YAML_SCALAR_NODE) {
            const char *s = (const char *)name->data.scalar.value;
            size_t len = name->data.scalar.length;
            p->plugin = tp_plugin_find(s, len);
            if (!p->plugin)
                tp__cfg_error(ctx, name, "unknown plugin \"%.*s\"", (int)TP_MIN(len, 64), s);
            snprintf(walk.path, sizeof(walk.path), "%s[%zu](%.*s).config", key, i,
                     (int)TP_MIN(len, 64), s);
        } else if (item && item->type == YAML_MAPPING_NODE) {
            tp__cfg_error(ctx, item, "missing required key \"name\" in plugin");
        }
        struct plugin_walk *saved = cur_walk;
        cur_walk = &walk;
        yaml_node_t *node = item ? tp__cfg_node(ctx, value->data.sequence.items.start[i]) : NULL;
        if (node)
            tp__cfg_object(ctx, top_level ? &top_plugin_schema : &nested_plugin_schema, node, p);
        if (node && node->type == YAML_MAPPING_NODE)
            finish_plugin(ctx, node, p);
        cur_walk = saved;
    }
    /* one instance of a plugin per scope (Kong's rule) */
    for (size_t i = 1; i < n; i++)
        for (size_t j = 0; j < i && arr[i].plugin; j++)
            if (arr[j].plugin == arr[i].plugin && !top_level) {
                tp__cfg_error_at(ctx, arr[i].mark.line, arr[i].mark.column,
                                 "plugin \"%s\" is configured twice here (first at %d:%d)",
                                 arr[i].plugin->name, arr[j].mark.line, arr[j].mark.column);
                break;
            }
}

void tp__cfg_parse_route_plugins(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                                 void *obj)
{
    struct tp_conf_route *r = obj;
    plugin_list(ctx, key, value, false, &r->plugins, &r->num_plugins);
}

void tp__cfg_parse_service_plugins(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                                   void *obj)
{
    struct tp_conf_service *s = obj;
    plugin_list(ctx, key, value, false, &s->plugins, &s->num_plugins);
}

void tp__cfg_parse_top_plugins(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                               void *obj)
{
    struct tp_config *cfg = obj;
    plugin_list(ctx, key, value, true, &cfg->plugins, &cfg->num_plugins);
}

static void parse_consumer_plugins(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                                   void *obj)
{
    struct tp_conf_consumer *c = obj;
    plugin_list(ctx, key, value, false, &c->plugins, &c->num_plugins);
}

void tp__cfg_parse_route_order(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                               void *obj)
{
    struct tp_conf_route *r = obj;
    r->order = tp__cfg_string_list(ctx, key, value, NULL, &r->num_order);
    r->order_mark = tp__cfg_mark(value);
    for (size_t i = 0; i < r->num_order; i++) {
        if (!r->order[i])
            continue;
        if (!tp_plugin_find(r->order[i], strlen(r->order[i])))
            tp__cfg_error(ctx, tp__cfg_item(ctx, value, i), "unknown plugin \"%s\" in \"%s\"",
                          r->order[i], key);
        for (size_t j = 0; j < i; j++)
            if (r->order[j] && strcmp(r->order[j], r->order[i]) == 0)
                tp__cfg_error(ctx, tp__cfg_item(ctx, value, i),
                              "plugin \"%s\" listed twice in \"%s\"", r->order[i], key);
    }
}

void tp__cfg_plugins_free(struct tp_conf_plugin *arr, size_t n)
{
    for (size_t i = 0; arr && i < n; i++) {
        struct tp_conf_plugin *p = &arr[i];
        if (p->conf && p->plugin) {
            if (p->plugin->free_conf)
                p->plugin->free_conf(p->conf);
            if (p->plugin->schema)
                tp__cfg_free_fields(p->plugin->schema, p->conf);
        }
        free(p->conf);
        free(p->name);
        free(p->id);
        free(p->service);
        free(p->route);
        free(p->consumer);
    }
    free(arr);
}

/* ------------------------------------------------------------------------------------------ */
/* Consumers and credentials                                                                  */

static const char *const jwt_algorithms[] = {"HS256", "HS384", "HS512", "RS256", "RS384",
                                             "RS512", "PS256", "PS384", "PS512", "ES256",
                                             "ES384", "ES512", "EdDSA"};

static void parse_jwt_algorithm(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                                void *obj)
{
    struct tp_conf_credential *c = obj;
    int idx;
    if (tp__cfg_enum(ctx, key, value, jwt_algorithms, TP_ARRAY_LEN(jwt_algorithms), &idx) == 0) {
        free(c->algorithm);
        c->algorithm = strdup(jwt_algorithms[idx]);
        if (!c->algorithm)
            tp__cfg_oom(ctx, value);
    }
}

#define CRED_COMMON(type)                                                                   \
    TP__CFG_STRING_KEY("id", type, id, NULL),                                               \
    TP__CFG_CUSTOM_KEY("tags", parse_ignored_list, false),                                  \
    TP__CFG_CUSTOM_KEY("consumer", parse_ignored_list, false),                              \
    TP__CFG_CUSTOM_KEY("created_at", parse_ignored_list, false)

static const struct tp__cfg_directive keyauth_keys[] = {
    CRED_COMMON(struct tp_conf_credential),
    TP__CFG_SECRET_KEY("key", struct tp_conf_credential, key, true),
    TP__CFG_CUSTOM_KEY("ttl", parse_ignored_list, false),
};

static const struct tp__cfg_directive basicauth_keys[] = {
    CRED_COMMON(struct tp_conf_credential),
    TP__CFG_STRING_KEY("username", struct tp_conf_credential, username, NULL),
    TP__CFG_SECRET_KEY("password", struct tp_conf_credential, password, true),
};

static void finish_jwt_secret(struct tp__cfg_ctx *ctx, yaml_node_t *node, void *obj)
{
    struct tp_conf_credential *c = obj;
    if (!c->algorithm && !(c->algorithm = strdup("HS256"))) {
        tp__cfg_oom(ctx, node);
        return;
    }
    bool hmac = c->algorithm[0] == 'H';
    if (hmac && !c->secret)
        tp__cfg_error(ctx, node, "jwt secret with algorithm %s needs \"secret\"", c->algorithm);
    if (!hmac && !c->rsa_public_key)
        tp__cfg_error(ctx, node, "jwt secret with algorithm %s needs \"rsa_public_key\"",
                      c->algorithm);
}

static const struct tp__cfg_directive jwt_keys[] = {
    CRED_COMMON(struct tp_conf_credential),
    TP__CFG_STRING_KEY("key", struct tp_conf_credential, key, NULL),
    TP__CFG_CUSTOM_KEY("algorithm", parse_jwt_algorithm, false),
    TP__CFG_SECRET_KEY("secret", struct tp_conf_credential, secret, false),
    TP__CFG_SECRET_KEY("rsa_public_key", struct tp_conf_credential, rsa_public_key, false),
};

static void finish_keyauth(struct tp__cfg_ctx *ctx, yaml_node_t *node, void *obj);
static void finish_basicauth(struct tp__cfg_ctx *ctx, yaml_node_t *node, void *obj);

static const struct tp__cfg_schema keyauth_schema = {
    .what = "keyauth_credentials entry", .keys = keyauth_keys,
    .num_keys = TP_ARRAY_LEN(keyauth_keys), .size = sizeof(struct tp_conf_credential),
    .mark_offset = offsetof(struct tp_conf_credential, mark), .finish = finish_keyauth,
};
static const struct tp__cfg_schema basicauth_schema = {
    .what = "basicauth_credentials entry", .keys = basicauth_keys,
    .num_keys = TP_ARRAY_LEN(basicauth_keys), .size = sizeof(struct tp_conf_credential),
    .mark_offset = offsetof(struct tp_conf_credential, mark), .finish = finish_basicauth,
};
static const struct tp__cfg_schema jwt_schema = {
    .what = "jwt_secrets entry", .keys = jwt_keys, .num_keys = TP_ARRAY_LEN(jwt_keys),
    .size = sizeof(struct tp_conf_credential),
    .mark_offset = offsetof(struct tp_conf_credential, mark),
    .finish = finish_jwt_secret,
};

static void require_key(struct tp__cfg_ctx *ctx, yaml_node_t *value, struct tp_conf_credential *arr,
                        size_t n, const char *what, size_t field)
{
    for (size_t i = 0; i < n; i++) {
        char *v;
        memcpy(&v, (char *)&arr[i] + field, sizeof(v));
        if (!v)
            tp__cfg_error(ctx, tp__cfg_item(ctx, value, i), "missing required key \"%s\" in %s",
                          what, "credential");
    }
}

static void parse_keyauth(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct tp_conf_consumer *c = obj;
    c->keyauth = tp__cfg_list(ctx, key, value, &keyauth_schema, &c->num_keyauth);
}

static void parse_basicauth(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                            void *obj)
{
    struct tp_conf_consumer *c = obj;
    c->basicauth = tp__cfg_list(ctx, key, value, &basicauth_schema, &c->num_basicauth);
    require_key(ctx, value, c->basicauth, c->num_basicauth, "username",
                offsetof(struct tp_conf_credential, username));
}

static void parse_jwt_secrets(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                              void *obj)
{
    struct tp_conf_consumer *c = obj;
    c->jwt = tp__cfg_list(ctx, key, value, &jwt_schema, &c->num_jwt);
    require_key(ctx, value, c->jwt, c->num_jwt, "key", offsetof(struct tp_conf_credential, key));
}

/* Kong's acl credentials: acls: [{group: NAME}] — merged into groups. */
static void parse_acls(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct tp_conf_consumer *c = obj;
    if (value->type != YAML_SEQUENCE_NODE) {
        tp__cfg_error(ctx, value, "expected a list for \"%s\"", key);
        return;
    }
    size_t n = tp__cfg_count(value);
    char **g = realloc(c->groups, (c->num_groups + n) * sizeof(*g) + 1);
    if (!g) {
        tp__cfg_oom(ctx, value);
        return;
    }
    c->groups = g;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = tp__cfg_item(ctx, value, i);
        yaml_node_t *gn = item ? tp__cfg_lookup(ctx, item, "group") : NULL;
        if (!gn) {
            tp__cfg_error(ctx, item ? item : value, "expected {group: NAME} in \"%s\"", key);
            continue;
        }
        char *s = NULL;
        if (tp__cfg_string(ctx, "group", gn, &s) == 0)
            c->groups[c->num_groups++] = s;
    }
}

static void parse_groups(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct tp_conf_consumer *c = obj;
    size_t n = 0;
    char **v = tp__cfg_string_list(ctx, key, value, NULL, &n);
    if (!n)
        return;
    char **g = realloc(c->groups, (c->num_groups + n) * sizeof(*g));
    if (!g) {
        for (size_t i = 0; i < n; i++)
            free(v[i]);
        free(v);
        tp__cfg_oom(ctx, value);
        return;
    }
    c->groups = g;
    for (size_t i = 0; i < n; i++)
        if (v[i])
            c->groups[c->num_groups++] = v[i];
    free(v);
}

/* Values the gateway sends upstream in X-Consumer-* / X-Credential-Identifier headers: no
 * control characters (they could not be sent), and for group names no ',' (the groups header
 * is a comma-separated list: "a,admin" would read as two groups upstream). */
static bool header_safe(const char *s, bool comma_ok)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f || (!comma_ok && *p == ','))
            return false;
    return s[0] != '\0';
}

static void check_value(struct tp__cfg_ctx *ctx, yaml_node_t *map, const char *key,
                        const char *v, bool comma_ok)
{
    if (v && !header_safe(v, comma_ok)) {
        yaml_node_t *at = tp__cfg_lookup(ctx, map, key);
        tp__cfg_error(ctx, at ? at : map, "\"%s\" must not be empty or contain control "
                      "characters%s", key, comma_ok ? "" : " or ','");
    }
}

static void finish_consumer(struct tp__cfg_ctx *ctx, yaml_node_t *node, void *obj)
{
    struct tp_conf_consumer *c = obj;
    if (!c->username && !c->custom_id)
        tp__cfg_error(ctx, node, "a consumer needs \"username\" or \"custom_id\"");
    check_value(ctx, node, "id", c->id, true);
    check_value(ctx, node, "username", c->username, true);
    check_value(ctx, node, "custom_id", c->custom_id, true);
    for (size_t i = 0; i < c->num_groups; i++)
        if (!header_safe(c->groups[i], false)) {
            tp__cfg_error(ctx, node, "group \"%s\" must not be empty or contain control "
                          "characters or ','", c->groups[i]);
            break;
        }
}

/* A key-auth key travels in a header or query: surrounding blanks or control bytes could never
 * be sent. */
static void finish_keyauth(struct tp__cfg_ctx *ctx, yaml_node_t *node, void *obj)
{
    struct tp_conf_credential *c = obj;
    check_value(ctx, node, "id", c->id, true);
    if (!c->key)
        return;
    size_t n = strlen(c->key);
    if (!header_safe(c->key, true) || c->key[0] == ' ' || c->key[0] == '\t' ||
        c->key[n - 1] == ' ' || c->key[n - 1] == '\t') {
        yaml_node_t *at = tp__cfg_lookup(ctx, node, "key");
        tp__cfg_error(ctx, at ? at : node, "a key-auth key must not contain control characters "
                      "or start or end with a blank");
    }
}

/* RFC 7617 §2: the user-id cannot contain ':' (the first colon ends it). */
static void finish_basicauth(struct tp__cfg_ctx *ctx, yaml_node_t *node, void *obj)
{
    struct tp_conf_credential *c = obj;
    check_value(ctx, node, "id", c->id, true);
    check_value(ctx, node, "username", c->username, true);
    if (c->username && strchr(c->username, ':')) {
        yaml_node_t *at = tp__cfg_lookup(ctx, node, "username");
        tp__cfg_error(ctx, at ? at : node, "a basic-auth username cannot contain ':' "
                      "(RFC 7617)");
    }
}

static const struct tp__cfg_directive consumer_keys[] = {
    TP__CFG_STRING_KEY("id", struct tp_conf_consumer, id, NULL),
    TP__CFG_STRING_KEY("username", struct tp_conf_consumer, username, NULL),
    TP__CFG_STRING_KEY("custom_id", struct tp_conf_consumer, custom_id, NULL),
    TP__CFG_CUSTOM_KEY("groups", parse_groups, false),
    TP__CFG_CUSTOM_KEY("acls", parse_acls, false),
    TP__CFG_CUSTOM_KEY("tags", parse_ignored_list, false),
    TP__CFG_CUSTOM_KEY("created_at", parse_ignored_list, false),
    TP__CFG_CUSTOM_KEY("keyauth_credentials", parse_keyauth, false),
    TP__CFG_CUSTOM_KEY("basicauth_credentials", parse_basicauth, false),
    TP__CFG_CUSTOM_KEY("jwt_secrets", parse_jwt_secrets, false),
    TP__CFG_CUSTOM_KEY("plugins", parse_consumer_plugins, false),
};

static const struct tp__cfg_schema consumer_schema = {
    .what = "consumer",
    .keys = consumer_keys,
    .num_keys = TP_ARRAY_LEN(consumer_keys),
    .size = sizeof(struct tp_conf_consumer),
    .mark_offset = offsetof(struct tp_conf_consumer, mark),
    .finish = finish_consumer,
};

void tp__cfg_parse_consumers(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                             void *obj)
{
    struct tp_config *cfg = obj;
    bool saved = ctx->null_is_unset;
    ctx->null_is_unset = true; /* deck exports write unset fields as null */
    cfg->consumers = tp__cfg_list(ctx, key, value, &consumer_schema, &cfg->num_consumers);
    ctx->null_is_unset = saved;
}

static void free_credentials(struct tp_conf_credential *arr, size_t n)
{
    for (size_t i = 0; arr && i < n; i++) {
        struct tp_conf_credential *c = &arr[i];
        free(c->id);
        if (c->key)
            explicit_bzero(c->key, strlen(c->key));
        free(c->key);
        free(c->username);
        if (c->password)
            explicit_bzero(c->password, strlen(c->password));
        free(c->password);
        free(c->algorithm);
        if (c->secret)
            explicit_bzero(c->secret, strlen(c->secret));
        free(c->secret);
        free(c->rsa_public_key);
    }
    free(arr);
}

void tp__cfg_consumers_free(struct tp_conf_consumer *arr, size_t n)
{
    for (size_t i = 0; arr && i < n; i++) {
        struct tp_conf_consumer *c = &arr[i];
        free(c->id);
        free(c->username);
        free(c->custom_id);
        for (size_t g = 0; g < c->num_groups; g++)
            free(c->groups[g]);
        free(c->groups);
        free_credentials(c->keyauth, c->num_keyauth);
        free_credentials(c->basicauth, c->num_basicauth);
        free_credentials(c->jwt, c->num_jwt);
        tp__cfg_plugins_free(c->plugins, c->num_plugins);
    }
    free(arr);
}

/* ------------------------------------------------------------------------------------------ */
/* Whole-document checks                                                                      */

static void unique(struct tp__cfg_ctx *ctx, struct tp__cfg_names *set, const char *what,
                   const char *v, struct tp_conf_mark at, bool show)
{
    if (!v)
        return;
    const struct tp__cfg_name *first = tp__cfg_names_add(set, v, at);
    if (first && show)
        tp__cfg_error_at(ctx, at.line, at.column, "duplicate %s \"%s\" (first defined at %d:%d)",
                         what, v, first->mark.line, first->mark.column);
    else if (first) /* a secret: never echo it */
        tp__cfg_error_at(ctx, at.line, at.column, "duplicate %s (first defined at %d:%d)", what,
                         first->mark.line, first->mark.column);
}

static bool route_exists(const struct tp_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->num_services; i++)
        for (size_t j = 0; j < cfg->services[i].num_routes; j++)
            if (cfg->services[i].routes[j].name &&
                strcmp(cfg->services[i].routes[j].name, name) == 0)
                return true;
    return false;
}

static bool service_exists(const struct tp_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->num_services; i++)
        if (cfg->services[i].name && strcmp(cfg->services[i].name, name) == 0)
            return true;
    return false;
}

bool tp__cfg_consumer_exists(const struct tp_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->num_consumers; i++) {
        const struct tp_conf_consumer *c = &cfg->consumers[i];
        if ((c->id && strcmp(c->id, name) == 0) || (c->username && strcmp(c->username, name) == 0))
            return true;
    }
    return false;
}

void tp__cfg_check_consumers(struct tp__cfg_ctx *ctx, struct tp_config *cfg)
{
    struct tp__cfg_names ids, names, customs, keys, users, jwtkeys;
    size_t nk = 0, nb = 0, nj = 0;
    for (size_t i = 0; i < cfg->num_consumers; i++) {
        nk += cfg->consumers[i].num_keyauth;
        nb += cfg->consumers[i].num_basicauth;
        nj += cfg->consumers[i].num_jwt;
    }
    int rc = tp__cfg_names_init(&ids, cfg->num_consumers);
    rc |= tp__cfg_names_init(&names, cfg->num_consumers);
    rc |= tp__cfg_names_init(&customs, cfg->num_consumers);
    rc |= tp__cfg_names_init(&keys, nk);
    rc |= tp__cfg_names_init(&users, nb);
    rc |= tp__cfg_names_init(&jwtkeys, nj);
    if (rc) {
        tp__cfg_oom(ctx, NULL);
        goto out;
    }
    for (size_t i = 0; i < cfg->num_consumers; i++) {
        const struct tp_conf_consumer *c = &cfg->consumers[i];
        unique(ctx, &ids, "consumer id", c->id, c->mark, true);
        unique(ctx, &names, "consumer username", c->username, c->mark, true);
        unique(ctx, &customs, "consumer custom_id", c->custom_id, c->mark, true);
        for (size_t k = 0; k < c->num_keyauth; k++)
            unique(ctx, &keys, "key-auth key", c->keyauth[k].key, c->keyauth[k].mark, false);
        for (size_t k = 0; k < c->num_basicauth; k++)
            unique(ctx, &users, "basic-auth username", c->basicauth[k].username,
                   c->basicauth[k].mark, true);
        for (size_t k = 0; k < c->num_jwt; k++)
            unique(ctx, &jwtkeys, "jwt secret key", c->jwt[k].key, c->jwt[k].mark, true);
    }
    /* consumers are found by id or username (anonymous, plugin scopes, acl lists): one
     * consumer's id must not be another's username */
    for (size_t i = 0; i < cfg->num_consumers; i++) {
        const struct tp_conf_consumer *c = &cfg->consumers[i];
        const struct tp__cfg_name *other = c->id ? tp__cfg_names_find(&names, c->id) : NULL;
        if (other && (c->username == NULL || strcmp(c->username, c->id) != 0))
            tp__cfg_error_at(ctx, c->mark.line, c->mark.column,
                             "consumer id \"%s\" is the username of another consumer (%d:%d)",
                             c->id, other->mark.line, other->mark.column);
    }
    for (size_t i = 0; i < cfg->num_plugins; i++) {
        const struct tp_conf_plugin *p = &cfg->plugins[i];
        if (p->service && !service_exists(cfg, p->service))
            tp__cfg_error_at(ctx, p->mark.line, p->mark.column,
                             "plugin names unknown service \"%s\"", p->service);
        if (p->route && !route_exists(cfg, p->route))
            tp__cfg_error_at(ctx, p->mark.line, p->mark.column,
                             "plugin names unknown route \"%s\"", p->route);
        if (p->consumer && !tp__cfg_consumer_exists(cfg, p->consumer))
            tp__cfg_error_at(ctx, p->mark.line, p->mark.column,
                             "plugin names unknown consumer \"%s\"", p->consumer);
        if (p->consumer && p->plugin && p->plugin->auth)
            tp__cfg_error_at(ctx, p->mark.line, p->mark.column,
                             "authentication plugin \"%s\" cannot be scoped to a consumer",
                             p->plugin->name);
        for (size_t j = 0; j < i && p->plugin; j++) {
            const struct tp_conf_plugin *q = &cfg->plugins[j];
            if (q->plugin == p->plugin && !tp__cfg_strcmp0(q->service, p->service) &&
                !tp__cfg_strcmp0(q->route, p->route) && !tp__cfg_strcmp0(q->consumer, p->consumer)) {
                tp__cfg_error_at(ctx, p->mark.line, p->mark.column,
                                 "plugin \"%s\" is configured twice for the same scope (first "
                                 "at %d:%d)", p->plugin->name, q->mark.line, q->mark.column);
                break;
            }
        }
    }
    for (size_t i = 0; i < cfg->num_consumers; i++)
        for (size_t k = 0; k < cfg->consumers[i].num_plugins; k++) {
            const struct tp_conf_plugin *p = &cfg->consumers[i].plugins[k];
            if (p->plugin && p->plugin->auth)
                tp__cfg_error_at(ctx, p->mark.line, p->mark.column,
                                 "authentication plugin \"%s\" cannot be scoped to a consumer",
                                 p->plugin->name);
        }
out:
    tp__cfg_names_free(&ids);
    tp__cfg_names_free(&names);
    tp__cfg_names_free(&customs);
    tp__cfg_names_free(&keys);
    tp__cfg_names_free(&users);
    tp__cfg_names_free(&jwtkeys);
}

int tp__cfg_strcmp0(const char *a, const char *b)
{
    if (!a || !b)
        return a != b;
    return strcmp(a, b);
}
