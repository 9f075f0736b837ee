/*
 * rate-limiting: Kong's plugin of that name (priority 910), extended with several algorithms,
 * composite keys, several limits per instance, exact local counters across workers, Redis
 * (exact, or batched) and honest headers (docs/plugins/rate-limiting.md; issue 6).
 *
 *   plugins:
 *     - name: rate-limiting
 *       config:
 *         minute: 100              # Kong: second/minute/hour/day/month/year, fixed windows
 *         limit_by: consumer       # Kong: consumer|credential|ip|service|header|path|
 *                                  #       consumer-group
 *         policy: local            # Kong: local|cluster (= local)|redis
 *         # turnpike:
 *         algorithm: sliding-window  # fixed-window|sliding-window|token-bucket|leaky-bucket|
 *                                    # concurrency
 *         limits: [{count: 10, period: second}, {count: 1000, period: hour}]
 *         key: [consumer, header:X-Tenant]
 *         storage: redis             # local|redis|redis-batched
 *
 * Phases: access decides (and may suspend: Redis answers, the leaky bucket's release time);
 * response_headers writes RateLimit-Policy / RateLimit (draft-ietf-httpapi-ratelimit-headers,
 * structured-field form of drafts 08 to 10) and/or the legacy X-RateLimit-* on every response,
 * local answers included; log ends a concurrency slot (it runs also when the client went away).
 *
 * Counters are named by a namespace (default: the plugin's place in the configuration, e.g.
 * "service=orders/route=create"), so two instances never share counters unless they set the
 * same `namespace`; the namespace survives reloads, so counts do too.
 */
#include "config/schema.h"
#include "ratelimit/algo.h"
#include "ratelimit/batched.h"
#include "ratelimit/redis.h"
#include "ratelimit/shaper.h"
#include "ratelimit/store.h"
#include "turnpike/consumer.h"
#include "turnpike/plugin.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RL_DEFAULT_MESSAGE "API rate limit exceeded"
#define RL_UNAVAILABLE "Rate limiting is unavailable"
#define RL_MAX_DELAY_MS 25000     /* the chain resumes a suspended request within 30 s */
#define RL_MAX_NAME 64
#define RL_MAX_KEY_PARTS 8
#define RL_REDIS_PREFIX "turnpike:rl:"

/* ------------------------------------------------------------------------------------------ */
/* Configuration                                                                              */

static const char *const kong_periods[] = {"second", "minute", "hour", "day", "month", "year"};
static const char *const kong_period_titles[] = {"Second", "Minute", "Hour",
                                                 "Day",    "Month",  "Year"};
/* month and year are 30 and 365 days, aligned to the epoch (Kong: calendar months, UTC) */
static const int64_t kong_period_s[] = {1, 60, 3600, 86400, 2592000, 31536000};

static const char *const algorithms[] = {"fixed-window", "sliding-window", "token-bucket",
                                         "leaky-bucket", "concurrency"};
static const enum tp_rl_algo algorithm_ids[] = {TP_RL_FIXED_WINDOW, TP_RL_SLIDING_WINDOW,
                                                TP_RL_TOKEN_BUCKET, TP_RL_LEAKY_BUCKET,
                                                TP_RL_CONCURRENCY};

static const char *const limit_bys[] = {"consumer", "credential", "ip", "service",
                                        "header",   "path",       "consumer-group"};
enum { BY_CONSUMER, BY_CREDENTIAL, BY_IP, BY_SERVICE, BY_HEADER, BY_PATH, BY_GROUP };

static const char *const policies[] = {"local", "cluster", "redis"};
enum { POLICY_LOCAL, POLICY_CLUSTER, POLICY_REDIS };

static const char *const storages[] = {"local", "redis", "redis-batched"};
enum { STORE_LOCAL, STORE_REDIS, STORE_BATCHED };

static const char *const failures[] = {"fail-open", "fail-closed"};
static const char *const header_styles[] = {"ietf", "legacy", "both", "none"};
enum { HS_IETF, HS_LEGACY, HS_BOTH, HS_NONE };

/* One part of a key: what a request is counted by. */
enum part_kind {
    PART_CONSUMER,   /* consumer id, else credential id, else the client IP (Kong) */
    PART_CREDENTIAL, /* credential id, else the client IP */
    PART_IP,
    PART_SERVICE,
    PART_ROUTE,
    PART_GLOBAL,     /* nothing: one counter for everyone */
    PART_GROUP,      /* the consumer's first group, else the client IP */
    PART_HEADER,     /* header:NAME, else the client IP */
    PART_PARAM,      /* path:NAME, a path template capture, else the client IP */
    PART_CLAIM,      /* claim:NAME (or jwt:NAME), a verified JWT claim, else the client IP */
    PART_KONG_PATH,  /* Kong's limit_by path: the path when it equals `path`, else the IP */
};

struct key_part {
    enum part_kind kind;
    char *arg;       /* header, capture or claim name; NULL for the others */
};

struct rl_key {
    struct key_part *parts;
    size_t num_parts;
    bool set;
};

/** One item of `limits`. */
struct rl_limit_conf {
    uint64_t count;
    int64_t period_us;       /* 0 = not given */
    char *name;
    int algorithm;           /* index in algorithms, -1 = the plugin's */
    uint64_t burst;
    struct rl_key key;
    struct tp_conf_mark mark;
};

/** Kong's `redis` record (3.6+) and its fields. */
struct rl_redis_rec {
    char *host;
    int64_t port;
    char *username;
    char *password;
    int64_t database;
    int64_t timeout;
    bool ssl, ssl_verify;
    char *server_name;
    int connect_timeout, send_timeout, read_timeout; /* accepted, unused: `timeout` rules */
};

/** The `config` of one rate-limiting entry. */
struct rl_conf {
    /* Kong */
    uint64_t period[6];      /* second ... year; 0 = unset */
    int limit_by;
    char *header_name, *path;
    int policy;
    bool fault_tolerant, hide_client_headers;
    int64_t error_code;
    char *error_message;
    int sync_rate;
    struct rl_redis_rec redis;
    char *redis_host, *redis_username, *redis_password, *redis_server_name;
    int redis_port, redis_database, redis_timeout; /* -1 = not given */
    bool redis_ssl, redis_ssl_verify;
    /* turnpike */
    int algorithm;
    bool sliding_exact;
    struct rl_limit_conf *limits;
    size_t num_limits;
    struct rl_key key;
    int storage;             /* validate sets it from policy when not given */
    int redis_failure;       /* validate sets it from fault_tolerant when not given */
    int64_t sync_interval, sync_every, burst, max_delay, max_keys, concurrency_lease;
    char *ns;
    int header_style;        /* validate: both, or none with hide_client_headers */
    char *auto_ns;           /* validate: the default namespace */
};

#define ENUM_PARSER(fn, field, names)                                                          \
    static void fn(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)    \
    {                                                                                          \
        tp__cfg_enum(ctx, key, value, names, TP_ARRAY_LEN(names),                              \
                     &((struct rl_conf *)obj)->field);                                         \
    }

ENUM_PARSER(parse_limit_by, limit_by, limit_bys)
ENUM_PARSER(parse_policy, policy, policies)
ENUM_PARSER(parse_algorithm, algorithm, algorithms)
ENUM_PARSER(parse_storage, storage, storages)
ENUM_PARSER(parse_failure, redis_failure, failures)
ENUM_PARSER(parse_header_style, header_style, header_styles)

/* "header:X-Tenant", "consumer", ... into a key part. */
static int parse_part(struct tp__cfg_ctx *ctx, const yaml_node_t *node, const char *s,
                      struct key_part *p)
{
    static const struct {
        const char *name;
        enum part_kind kind;
    } plain[] = {
        {"consumer", PART_CONSUMER}, {"credential", PART_CREDENTIAL}, {"ip", PART_IP},
        {"service", PART_SERVICE},   {"route", PART_ROUTE},           {"global", PART_GLOBAL},
        {"consumer-group", PART_GROUP},
    };
    static const struct {
        const char *prefix;
        enum part_kind kind;
    } with_arg[] = {
        {"header:", PART_HEADER}, {"path:", PART_PARAM}, {"claim:", PART_CLAIM},
        {"jwt:", PART_CLAIM},
    };
    for (size_t i = 0; i < TP_ARRAY_LEN(plain); i++)
        if (strcmp(s, plain[i].name) == 0) {
            p->kind = plain[i].kind;
            return 0;
        }
    for (size_t i = 0; i < TP_ARRAY_LEN(with_arg); i++) {
        size_t n = strlen(with_arg[i].prefix);
        if (strncmp(s, with_arg[i].prefix, n) != 0)
            continue;
        const char *arg = s + n;
        bool ok = *arg != '\0';
        for (const char *c = arg; *c; c++)
            ok &= (unsigned char)*c > ' ' && (unsigned char)*c < 0x7f && *c != ':';
        if (!ok || strlen(arg) > 128) {
            tp__cfg_error(ctx, node, "\"%s\": expected a name after \"%s\"", s,
                          with_arg[i].prefix);
            return -1;
        }
        p->kind = with_arg[i].kind;
        p->arg = strdup(arg);
        return p->arg ? 0 : tp__cfg_oom(ctx, node);
    }
    tp__cfg_error(ctx, node,
                  "unknown key part \"%s\" (consumer, credential, ip, service, route, global, "
                  "consumer-group, header:NAME, path:NAME, claim:NAME)",
                  s);
    return -1;
}

static void free_key(struct rl_key *k)
{
    for (size_t i = 0; i < k->num_parts; i++)
        free(k->parts[i].arg);
    free(k->parts);
    memset(k, 0, sizeof(*k));
}

/* key: a part, or a list of parts. */
static void parse_key_into(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                           struct rl_key *k)
{
    free_key(k);
    k->set = true;
    size_t n = value->type == YAML_SEQUENCE_NODE ? tp__cfg_count(value) : 1;
    if (value->type != YAML_SEQUENCE_NODE && value->type != YAML_SCALAR_NODE) {
        tp__cfg_error(ctx, value, "\"%s\": expected a key part or a list of them", key);
        return;
    }
    if (n == 0 || n > RL_MAX_KEY_PARTS) {
        tp__cfg_error(ctx, value, "\"%s\": between 1 and %d parts", key, RL_MAX_KEY_PARTS);
        return;
    }
    k->parts = calloc(n, sizeof(*k->parts));
    if (!k->parts) {
        tp__cfg_oom(ctx, value);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = value->type == YAML_SEQUENCE_NODE ? tp__cfg_item(ctx, value, i)
                                                               : value;
        char *s = NULL;
        if (!item || tp__cfg_string(ctx, key, item, &s) != 0)
            continue;
        if (parse_part(ctx, item, s, &k->parts[k->num_parts]) == 0)
            k->num_parts++;
        free(s);
    }
}

static void parse_key(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    parse_key_into(ctx, key, value, &((struct rl_conf *)obj)->key);
}

/* "second" ... "year", "10s", "500ms", "2m", "1h", "1d", or a plain number of seconds. */
static int parse_period_text(const char *s, int64_t *us)
{
    for (size_t i = 0; i < TP_ARRAY_LEN(kong_periods); i++)
        if (strcmp(s, kong_periods[i]) == 0) {
            *us = kong_period_s[i] * TP_RL_US;
            return 0;
        }
    char *end;
    if (*s < '0' || *s > '9')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    int64_t unit;
    if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
        unit = TP_RL_US;
    else if (strcmp(end, "ms") == 0)
        unit = 1000;
    else if (strcmp(end, "m") == 0)
        unit = 60 * TP_RL_US;
    else if (strcmp(end, "h") == 0)
        unit = 3600 * TP_RL_US;
    else if (strcmp(end, "d") == 0)
        unit = 86400 * TP_RL_US;
    else
        return -1;
    if (v == 0 || v > (unsigned long long)(400LL * 86400 * TP_RL_US / unit))
        return -1;
    *us = (int64_t)v * unit;
    return 0;
}

static void parse_period(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct rl_limit_conf *l = obj;
    char *s = NULL;
    if (tp__cfg_string(ctx, key, value, &s) != 0)
        return;
    if (parse_period_text(s, &l->period_us) != 0)
        tp__cfg_error(ctx, value,
                      "\"%s\": expected second, minute, hour, day, month, year, or a duration "
                      "such as 10s, 500ms, 5m, 1h, 1d (at most 400 days)",
                      key);
    free(s);
}

static void parse_limit_algorithm(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                                  void *obj)
{
    tp__cfg_enum(ctx, key, value, algorithms, TP_ARRAY_LEN(algorithms),
                 &((struct rl_limit_conf *)obj)->algorithm);
}

static void parse_limit_key(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                            void *obj)
{
    parse_key_into(ctx, key, value, &((struct rl_limit_conf *)obj)->key);
}

static const struct tp__cfg_directive limit_keys[] = {
    {.name = "count", .kind = TP__CFG_UINT, TP__CFG_FIELD(struct rl_limit_conf, count), .min = 1,
     .max = INT64_MAX / 2, .required = true},
    TP__CFG_CUSTOM_KEY("period", parse_period, false),
    TP__CFG_STRING_KEY("name", struct rl_limit_conf, name, NULL),
    TP__CFG_CUSTOM_KEY("algorithm", parse_limit_algorithm, false),
    TP__CFG_UINT_KEY("burst", struct rl_limit_conf, burst, 1, INT64_MAX / 2, 0),
    TP__CFG_CUSTOM_KEY("key", parse_limit_key, false),
};

TP__CFG_TABLE_CHECK(limit_keys);

static const struct tp__cfg_schema limit_schema = {
    .what = "rate-limiting limit",
    .keys = limit_keys,
    .num_keys = TP_ARRAY_LEN(limit_keys),
    .size = sizeof(struct rl_limit_conf),
    .mark_offset = offsetof(struct rl_limit_conf, mark),
};

static void free_limits(struct rl_limit_conf *l, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        tp__cfg_free_fields(&limit_schema, &l[i]);
        free_key(&l[i].key);
    }
    free(l);
}

static void parse_limits(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct rl_conf *c = obj;
    free_limits(c->limits, c->num_limits);
    c->limits = NULL;
    c->num_limits = 0;
    if (value->type != YAML_SEQUENCE_NODE) {
        tp__cfg_error(ctx, value, "expected a list for \"%s\"", key);
        return;
    }
    /* algorithm -1 marks "not given" (the plugin's applies) */
    size_t n = tp__cfg_count(value);
    c->limits = tp__cfg_list(ctx, key, value, &limit_schema, &c->num_limits);
    for (size_t i = 0; i < c->num_limits && i < n; i++) {
        yaml_node_t *item = tp__cfg_item(ctx, value, i);
        yaml_node_t *algo = item ? tp__cfg_lookup(ctx, item, "algorithm") : NULL;
        if (!algo || tp__cfg_is_null(algo))
            c->limits[i].algorithm = -1;
    }
}

static const struct tp__cfg_directive redis_rec_keys[] = {
    TP__CFG_STRING_KEY("host", struct rl_redis_rec, host, NULL),
    TP__CFG_UINT_KEY("port", struct rl_redis_rec, port, 1, 65535, 6379),
    TP__CFG_STRING_KEY("username", struct rl_redis_rec, username, NULL),
    TP__CFG_SECRET_KEY("password", struct rl_redis_rec, password, false),
    TP__CFG_UINT_KEY("database", struct rl_redis_rec, database, 0, 1000000, 0),
    TP__CFG_UINT_KEY("timeout", struct rl_redis_rec, timeout, 1, TP__CFG_MAX_MS, 2000),
    TP__CFG_BOOL_KEY("ssl", struct rl_redis_rec, ssl, false),
    TP__CFG_BOOL_KEY("ssl_verify", struct rl_redis_rec, ssl_verify, false),
    TP__CFG_STRING_KEY("server_name", struct rl_redis_rec, server_name, NULL),
    TP__CFG_INT_KEY("connect_timeout", struct rl_redis_rec, connect_timeout, -1, TP__CFG_MAX_MS,
                    -1),
    TP__CFG_INT_KEY("send_timeout", struct rl_redis_rec, send_timeout, -1, TP__CFG_MAX_MS, -1),
    TP__CFG_INT_KEY("read_timeout", struct rl_redis_rec, read_timeout, -1, TP__CFG_MAX_MS, -1),
};

TP__CFG_TABLE_CHECK(redis_rec_keys);

static const struct tp__cfg_schema redis_rec_schema = {
    .what = "rate-limiting redis config",
    .keys = redis_rec_keys,
    .num_keys = TP_ARRAY_LEN(redis_rec_keys),
    .size = sizeof(struct rl_redis_rec),
    .mark_offset = -1,
};

static void parse_redis(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct rl_conf *c = obj;
    (void)key;
    tp__cfg_free_fields(&redis_rec_schema, &c->redis);
    tp__cfg_object(ctx, &redis_rec_schema, value, &c->redis);
}

#define KONG_PERIOD_KEY(key, i)                                                                \
    {.name = (key), .kind = TP__CFG_UINT, TP__CFG_FIELD(struct rl_conf, period[i]), .min = 1, \
     .max = INT64_MAX / 2}

static const struct tp__cfg_directive rl_keys[] = {
    KONG_PERIOD_KEY("second", 0),
    KONG_PERIOD_KEY("minute", 1),
    KONG_PERIOD_KEY("hour", 2),
    KONG_PERIOD_KEY("day", 3),
    KONG_PERIOD_KEY("month", 4),
    KONG_PERIOD_KEY("year", 5),
    TP__CFG_CUSTOM_KEY("limit_by", parse_limit_by, false),
    TP__CFG_STRING_KEY("header_name", struct rl_conf, header_name, NULL),
    TP__CFG_STRING_KEY("path", struct rl_conf, path, NULL),
    TP__CFG_CUSTOM_KEY("policy", parse_policy, false),
    TP__CFG_BOOL_KEY("fault_tolerant", struct rl_conf, fault_tolerant, true),
    TP__CFG_BOOL_KEY("hide_client_headers", struct rl_conf, hide_client_headers, false),
    /* a refusal is a final answer: never 1xx (101 would read as an upgrade) */
    TP__CFG_UINT_KEY("error_code", struct rl_conf, error_code, 200, 599, 429),
    TP__CFG_STRING_KEY("error_message", struct rl_conf, error_message, NULL),
    TP__CFG_INT_KEY("sync_rate", struct rl_conf, sync_rate, -1, 86400, -1),
    TP__CFG_CUSTOM_KEY("redis", parse_redis, false),
    TP__CFG_STRING_KEY("redis_host", struct rl_conf, redis_host, NULL),
    TP__CFG_INT_KEY("redis_port", struct rl_conf, redis_port, -1, 65535, -1),
    TP__CFG_STRING_KEY("redis_username", struct rl_conf, redis_username, NULL),
    TP__CFG_SECRET_KEY("redis_password", struct rl_conf, redis_password, false),
    TP__CFG_INT_KEY("redis_database", struct rl_conf, redis_database, -1, 1000000, -1),
    TP__CFG_INT_KEY("redis_timeout", struct rl_conf, redis_timeout, -1, TP__CFG_MAX_MS, -1),
    TP__CFG_BOOL_KEY("redis_ssl", struct rl_conf, redis_ssl, false),
    TP__CFG_BOOL_KEY("redis_ssl_verify", struct rl_conf, redis_ssl_verify, false),
    TP__CFG_STRING_KEY("redis_server_name", struct rl_conf, redis_server_name, NULL),
    /* turnpike */
    TP__CFG_CUSTOM_KEY("algorithm", parse_algorithm, false),
    TP__CFG_BOOL_KEY("sliding_exact", struct rl_conf, sliding_exact, false),
    TP__CFG_CUSTOM_KEY("limits", parse_limits, false),
    TP__CFG_CUSTOM_KEY("key", parse_key, false),
    TP__CFG_CUSTOM_KEY("storage", parse_storage, false),
    TP__CFG_CUSTOM_KEY("redis_failure", parse_failure, false),
    TP__CFG_UINT_KEY("sync_interval", struct rl_conf, sync_interval, 1, 60000, 100),
    TP__CFG_UINT_KEY("sync_every", struct rl_conf, sync_every, 1, 1000000, 1000),
    TP__CFG_UINT_KEY("burst", struct rl_conf, burst, 0, INT64_MAX / 2, 0),
    TP__CFG_UINT_KEY("max_delay", struct rl_conf, max_delay, 0, RL_MAX_DELAY_MS, 1000),
    TP__CFG_UINT_KEY("max_keys", struct rl_conf, max_keys, 16, 100000000, 100000),
    TP__CFG_UINT_KEY("concurrency_lease", struct rl_conf, concurrency_lease, 1, 86400, 300),
    TP__CFG_STRING_KEY("namespace", struct rl_conf, ns, NULL),
    TP__CFG_CUSTOM_KEY("header_style", parse_header_style, false),
};

TP__CFG_TABLE_CHECK(rl_keys);

static const struct tp__cfg_schema rl_schema = {
    .what = "rate-limiting config",
    .keys = rl_keys,
    .num_keys = TP_ARRAY_LEN(rl_keys),
    .size = sizeof(struct rl_conf),
    .mark_offset = -1,
};

/* ------------------------------------------------------------------------------------------ */
/* Validation and the default namespace                                                        */

/* The config node of `key`, when it is written and not null. */
static yaml_node_t *given(struct tp_plugin_build *b, const char *key)
{
    if (!b->cfg || !b->node)
        return NULL;
    yaml_node_t *n = tp__cfg_lookup(b->cfg, b->node, key);
    return n && !tp__cfg_is_null(n) ? n : NULL;
}

/* The default namespace names the plugin's place by the names around it, as Kong keys its
 * counters by the plugin's service and route: services[name=orders].routes[name=create]
 * .plugins[] is "service=orders/route=create". Stable across reloads and file edits, distinct
 * for every instance (a plugin appears once per scope), equal on every gateway that loads the
 * same file. */
struct ns_walk {
    yaml_document_t *doc;
    const yaml_node_t *target;
    char buf[512];
    size_t len;
    long budget;
};

static const char *map_scalar(yaml_document_t *doc, const yaml_node_t *map, const char *key)
{
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(doc, p->key);
        yaml_node_t *v = yaml_document_get_node(doc, p->value);
        if (k && v && k->type == YAML_SCALAR_NODE && v->type == YAML_SCALAR_NODE &&
            strcmp((const char *)k->data.scalar.value, key) == 0)
            return (const char *)v->data.scalar.value;
    }
    return NULL;
}

static void ns_push(struct ns_walk *w, const char *what, const char *name)
{
    if (!name)
        return;
    int n = snprintf(w->buf + w->len, sizeof(w->buf) - w->len, "%s%s=%s", w->len ? "/" : "",
                     what, name);
    if (n > 0)
        w->len = TP_MIN(w->len + (size_t)n, sizeof(w->buf) - 1);
}

static bool ns_find(struct ns_walk *w, yaml_node_t *node, const char *under, int depth)
{
    if (node == w->target)
        return true;
    if (--w->budget < 0 || depth > 24)
        return false;
    if (node->type == YAML_MAPPING_NODE) {
        for (yaml_node_pair_t *p = node->data.mapping.pairs.start;
             p < node->data.mapping.pairs.top; p++) {
            yaml_node_t *k = yaml_document_get_node(w->doc, p->key);
            yaml_node_t *v = yaml_document_get_node(w->doc, p->value);
            if (k && v && k->type == YAML_SCALAR_NODE && v->type != YAML_SCALAR_NODE &&
                ns_find(w, v, (const char *)k->data.scalar.value, depth + 1))
                return true;
        }
    } else if (node->type == YAML_SEQUENCE_NODE) {
        for (yaml_node_item_t *it = node->data.sequence.items.start;
             it < node->data.sequence.items.top; it++) {
            yaml_node_t *v = yaml_document_get_node(w->doc, *it);
            size_t saved = w->len;
            if (!v)
                continue;
            if (v->type == YAML_MAPPING_NODE && under) {
                if (strcmp(under, "services") == 0) {
                    ns_push(w, "service", map_scalar(w->doc, v, "name"));
                } else if (strcmp(under, "routes") == 0) {
                    ns_push(w, "route", map_scalar(w->doc, v, "name"));
                } else if (strcmp(under, "consumers") == 0) {
                    const char *c = map_scalar(w->doc, v, "username");
                    c = c ? c : map_scalar(w->doc, v, "id");
                    ns_push(w, "consumer", c ? c : map_scalar(w->doc, v, "custom_id"));
                } else if (strcmp(under, "plugins") == 0) {
                    ns_push(w, "service", map_scalar(w->doc, v, "service"));
                    ns_push(w, "route", map_scalar(w->doc, v, "route"));
                    ns_push(w, "consumer", map_scalar(w->doc, v, "consumer"));
                }
            }
            if (ns_find(w, v, NULL, depth + 1))
                return true;
            w->len = saved;
            w->buf[saved] = '\0';
        }
    }
    return false;
}

static char *default_namespace(struct tp_plugin_build *b)
{
    struct ns_walk w = {.target = b->node, .budget = 4000000};
    char out[600];
    bool found = false;
    if (b->cfg && b->cfg->doc && b->node) {
        w.doc = b->cfg->doc;
        yaml_node_t *root = yaml_document_get_root_node(w.doc);
        found = root && ns_find(&w, root, NULL, 0);
    }
    if (found)
        snprintf(out, sizeof(out), "%s", w.len ? w.buf : "global");
    else
        snprintf(out, sizeof(out), "at:%d:%d", b->line, b->column);
    return strdup(out);
}

/* A policy name goes inside a structured-field string (RFC 8941 §3.3.3). */
static bool valid_sf_string(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > RL_MAX_NAME)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e || s[i] == '"' || s[i] == '\\')
            return false;
    return true;
}

static bool valid_header_name(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}",
                                                                           *s))
            return false;
    return true;
}

/* The algorithm a limit runs. */
static enum tp_rl_algo limit_algo(const struct rl_conf *c, int per_limit)
{
    int a = per_limit >= 0 ? per_limit : c->algorithm;
    enum tp_rl_algo id = algorithm_ids[a];
    if (id == TP_RL_SLIDING_WINDOW && c->sliding_exact)
        id = TP_RL_SLIDING_LOG;
    return id;
}

static int check_key(struct tp_plugin_build *b, yaml_node_t *at, const struct rl_key *k)
{
    int rc = 0;
    for (size_t i = 0; i < k->num_parts; i++)
        if (k->parts[i].kind == PART_HEADER && !valid_header_name(k->parts[i].arg))
            rc = tp_plugin_build_error(b, at, "\"key\": \"%s\" is not a valid header name",
                                       k->parts[i].arg);
    return rc;
}

static int check_limit(struct tp_plugin_build *b, struct rl_conf *c, size_t i, yaml_node_t *at)
{
    struct rl_limit_conf *l = &c->limits[i];
    enum tp_rl_algo algo = limit_algo(c, l->algorithm);
    int rc = 0;
    if (algo != TP_RL_CONCURRENCY && l->period_us == 0)
        rc = tp_plugin_build_error(b, at, "\"limits[%zu]\": \"period\" is required", i);
    if (algo == TP_RL_SLIDING_LOG && l->count > TP_RL_MAX_LOG)
        rc = tp_plugin_build_error(b, at,
                                   "\"limits[%zu]\": sliding_exact keeps one timestamp per "
                                   "request: count must be at most %d",
                                   i, TP_RL_MAX_LOG);
    if (l->name && !valid_sf_string(l->name))
        rc = tp_plugin_build_error(b, at,
                                   "\"limits[%zu]\": \"name\" must be 1 to %d printable "
                                   "characters without '\"' or '\\'",
                                   i, RL_MAX_NAME);
    return rc ? rc : check_key(b, at, &l->key);
}

static int check_storage(struct tp_plugin_build *b, struct rl_conf *c)
{
    int rc = 0;
    const char *host = c->redis_host ? c->redis_host : c->redis.host;
    if (c->storage == STORE_LOCAL)
        return 0;
    if (!host)
        rc = tp_plugin_build_error(b, given(b, "storage") ? given(b, "storage")
                                                          : given(b, "policy"),
                                   "Redis storage needs \"redis.host\" (or \"redis_host\")");
    if (c->redis_ssl || c->redis.ssl)
        rc = tp_plugin_build_error(b, given(b, "redis_ssl") ? given(b, "redis_ssl")
                                                            : given(b, "redis"),
                                   "\"ssl\": TLS to Redis is not supported (use a local "
                                   "Redis or a TLS tunnel)");
    if (c->storage != STORE_BATCHED)
        return rc;
    for (size_t i = 0; i < 6; i++)
        if (c->period[i] && limit_algo(c, -1) != TP_RL_FIXED_WINDOW &&
            limit_algo(c, -1) != TP_RL_SLIDING_WINDOW)
            return tp_plugin_build_error(b, given(b, "algorithm"),
                                         "redis-batched supports fixed-window and "
                                         "sliding-window (not sliding_exact) only");
    for (size_t i = 0; i < c->num_limits; i++) {
        enum tp_rl_algo a = limit_algo(c, c->limits[i].algorithm);
        if (a != TP_RL_FIXED_WINDOW && a != TP_RL_SLIDING_WINDOW)
            return tp_plugin_build_error(b, given(b, "limits"),
                                         "redis-batched supports fixed-window and "
                                         "sliding-window (not sliding_exact) only");
    }
    return rc;
}

static int rl_validate(struct tp_plugin_build *b, void *vconf)
{
    struct rl_conf *c = vconf;
    int rc = 0;
    size_t kong = 0;

    for (size_t i = 0; i < 6; i++) {
        if (!c->period[i])
            continue;
        kong++;
        for (size_t j = i + 1; j < 6; j++)
            if (c->period[j] && c->period[j] < c->period[i])
                rc = tp_plugin_build_error(b, given(b, kong_periods[j]),
                                           "The limit for %s(%llu) cannot be lower than the "
                                           "limit for %s(%llu)",
                                           kong_periods[j], (unsigned long long)c->period[j],
                                           kong_periods[i], (unsigned long long)c->period[i]);
    }
    if (kong + c->num_limits == 0)
        return tp_plugin_build_error(b, b->node,
                                     "at least one of \"second\", \"minute\", \"hour\", \"day\", "
                                     "\"month\", \"year\" or \"limits\" is required");
    if (kong + c->num_limits > TP_RL_MAX_LIMITS)
        rc = tp_plugin_build_error(b, b->node, "at most %d limits in one plugin",
                                   TP_RL_MAX_LIMITS);
    if (!given(b, "key") && c->limit_by == BY_HEADER && !c->header_name)
        rc = tp_plugin_build_error(b, given(b, "limit_by"),
                                   "\"header_name\" is required when \"limit_by\" is header");
    if (c->header_name && !valid_header_name(c->header_name))
        rc = tp_plugin_build_error(b, given(b, "header_name"),
                                   "\"header_name\": not a valid header name");
    if (!given(b, "key") && c->limit_by == BY_PATH && !c->path)
        rc = tp_plugin_build_error(b, given(b, "limit_by"),
                                   "\"path\" is required when \"limit_by\" is path");
    if (c->path && c->path[0] != '/')
        rc = tp_plugin_build_error(b, given(b, "path"), "\"path\" must start with '/'");
    if (check_key(b, given(b, "key"), &c->key) != 0)
        rc = -1;
    yaml_node_t *limits = given(b, "limits");
    for (size_t i = 0; i < c->num_limits; i++)
        if (check_limit(b, c, i, limits ? tp__cfg_item(b->cfg, limits, i) : NULL) != 0)
            rc = -1;
    if (kong && limit_algo(c, -1) == TP_RL_SLIDING_LOG)
        for (size_t i = 0; i < 6; i++)
            if (c->period[i] > TP_RL_MAX_LOG)
                rc = tp_plugin_build_error(b, given(b, kong_periods[i]),
                                           "sliding_exact keeps one timestamp per request: "
                                           "\"%s\" must be at most %d",
                                           kong_periods[i], TP_RL_MAX_LOG);
    if (c->error_message && !c->error_message[0])
        rc = tp_plugin_build_error(b, given(b, "error_message"), "\"error_message\" is empty");
    if (c->ns && !valid_sf_string(c->ns))
        rc = tp_plugin_build_error(b, given(b, "namespace"),
                                   "\"namespace\" must be 1 to %d printable characters",
                                   RL_MAX_NAME);

    /* settings decided by others when not written */
    if (!given(b, "storage"))
        c->storage = c->policy != POLICY_REDIS ? STORE_LOCAL
                     : c->sync_rate > 0        ? STORE_BATCHED
                                               : STORE_REDIS;
    if (!given(b, "sync_interval") && c->sync_rate > 0)
        c->sync_interval = (int64_t)c->sync_rate * 1000;
    if (!given(b, "redis_failure"))
        c->redis_failure = c->fault_tolerant ? 0 : 1;
    if (!given(b, "header_style"))
        c->header_style = c->hide_client_headers ? HS_NONE : HS_BOTH;
    if (check_storage(b, c) != 0)
        rc = -1;
    if (!c->ns && !c->auto_ns && !(c->auto_ns = default_namespace(b)))
        rc = tp_plugin_build_error(b, NULL, "out of memory");
    return rc;
}

static void rl_free_conf(void *vconf)
{
    struct rl_conf *c = vconf;
    free_limits(c->limits, c->num_limits);
    free_key(&c->key);
    tp__cfg_free_fields(&redis_rec_schema, &c->redis);
    free(c->auto_ns);
    c->limits = NULL;
    c->num_limits = 0;
    c->auto_ns = NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* The compiled instance                                                                      */

struct rl_limit {
    struct tp_rl_limit l;
    int kong;                    /* index in kong_periods, or -1 */
    char name[RL_MAX_NAME + 1];  /* the policy's name in RateLimit headers */
    const struct rl_key *key;    /* what this limit counts by */
    char id[48];                 /* tells the limits of a namespace apart in keys */
};

struct rl_inst {
    const struct rl_conf *conf;
    struct rl_limit limits[TP_RL_MAX_LIMITS];
    size_t n;
    struct key_part kong_part;   /* limit_by, when `key` is not given */
    struct rl_key kong_key;
    struct tp_rl_store *store;   /* local counters, and the fail-open fallback */
    char *prefix;                /* Redis key prefix: turnpike:rl:<namespace>: */
    size_t prefix_len;
    struct tp_rl_redis_conf redis;
    int storage;
    bool fail_open;
    int header_style;
    bool kong_headers;           /* Kong's X-RateLimit-*-<Period> and RateLimit-* too */
    char *policy;                /* RateLimit-Policy value */
    struct tp_rl_batch_opts bopts;
    int64_t lease_us;
    const char *message;
    int status;
};

static void rl_destroy(void *vinst)
{
    struct rl_inst *in = vinst;
    if (!in)
        return;
    tp_rl_store_release(in->store);
    tp_rl_redis_conf_free(&in->redis);
    free(in->prefix);
    free(in->policy);
    free(in);
}

static int add_limit(struct rl_inst *in, const struct rl_conf *c, uint64_t count,
                     int64_t period_us, int algorithm, uint64_t burst, const char *name,
                     int kong, const struct rl_key *key)
{
    struct rl_limit *l = &in->limits[in->n];
    l->l.algo = limit_algo(c, algorithm);
    l->l.count = count;
    l->l.period_us = l->l.algo == TP_RL_CONCURRENCY ? TP_RL_US : period_us;
    l->l.burst = burst ? burst : (uint64_t)c->burst;
    l->l.max_delay_us = c->max_delay * 1000;
    if (tp_rl_limit_init(&l->l) != 0)
        return TP_EINVAL;
    l->kong = kong;
    l->key = key && key->set ? key : c->key.set ? &c->key : &in->kong_key;
    if (name)
        snprintf(l->name, sizeof(l->name), "%s", name);
    else if (kong >= 0)
        snprintf(l->name, sizeof(l->name), "%s", kong_periods[kong]);
    else if (l->l.algo == TP_RL_CONCURRENCY)
        snprintf(l->name, sizeof(l->name), "concurrency");
    else if (period_us % TP_RL_US == 0)
        snprintf(l->name, sizeof(l->name), "%llus", (unsigned long long)(period_us / TP_RL_US));
    else
        snprintf(l->name, sizeof(l->name), "%llums", (unsigned long long)(period_us / 1000));
    snprintf(l->id, sizeof(l->id), "%zu.%d.%lld", in->n, (int)l->l.algo,
             (long long)l->l.period_us);
    in->n++;
    return 0;
}

/* RateLimit-Policy: every limit of the instance, e.g. "minute";q=100;w=60, "hour";q=1000;w=3600 */
static int build_policy(struct rl_inst *in)
{
    /* a single unnamed limit is the draft's "default" policy */
    if (in->n == 1 && !(in->conf->num_limits && in->conf->limits[0].name) &&
        in->limits[0].kong < 0)
        snprintf(in->limits[0].name, sizeof(in->limits[0].name), "default");
    size_t cap = in->n * (RL_MAX_NAME + 64) + 1;
    in->policy = malloc(cap);
    if (!in->policy)
        return TP_ENOMEM;
    size_t len = 0;
    for (size_t i = 0; i < in->n; i++) {
        const struct rl_limit *l = &in->limits[i];
        bool bucket = l->l.algo == TP_RL_TOKEN_BUCKET;
        uint64_t q = bucket ? l->l.burst : l->l.count;
        int64_t w = l->l.period_us;
        if (bucket && __builtin_mul_overflow((int64_t)l->l.burst, l->l.interval_us, &w))
            w = INT64_MAX / 4; /* burst x period beyond int64: report a huge window */
        len += (size_t)snprintf(in->policy + len, cap - len, "%s\"%s\";q=%llu", i ? ", " : "",
                                l->name, (unsigned long long)q);
        if (l->l.algo != TP_RL_CONCURRENCY)
            len += (size_t)snprintf(in->policy + len, cap - len, ";w=%lld",
                                    (long long)TP_MAX(tp_rl_ceil_s(w), 1));
    }
    return 0;
}

static int rl_compile(struct tp_plugin_build *b, const void *vconf, void **out)
{
    const struct rl_conf *c = vconf;
    struct rl_inst *in = calloc(1, sizeof(*in));
    if (!in)
        return tp_plugin_build_error(b, NULL, "out of memory");
    in->conf = c;
    static const enum part_kind by_kind[] = {PART_CONSUMER, PART_CREDENTIAL, PART_IP,
                                             PART_SERVICE,  PART_HEADER,     PART_KONG_PATH,
                                             PART_GROUP};
    in->kong_part.kind = by_kind[c->limit_by];
    in->kong_part.arg = c->limit_by == BY_HEADER ? c->header_name : c->path;
    in->kong_key = (struct rl_key){.parts = &in->kong_part, .num_parts = 1, .set = true};
    for (int i = 0; i < 6; i++)
        if (c->period[i] && add_limit(in, c, c->period[i], kong_period_s[i] * TP_RL_US, -1, 0,
                                      NULL, i, NULL) != 0)
            goto out_invalid;
    for (size_t i = 0; i < c->num_limits && in->n < TP_RL_MAX_LIMITS; i++) {
        const struct rl_limit_conf *l = &c->limits[i];
        if (add_limit(in, c, l->count, l->period_us, l->algorithm, l->burst, l->name, -1,
                      &l->key) != 0)
            goto out_invalid;
    }
    const char *ns = c->ns ? c->ns : c->auto_ns ? c->auto_ns : "global";
    in->store = tp_rl_store_acquire(ns, (size_t)c->max_keys);
    size_t plen = strlen(RL_REDIS_PREFIX) + strlen(ns) + 2;
    in->prefix = malloc(plen);
    if (!in->store || !in->prefix || build_policy(in) != 0)
        goto out_oom;
    in->prefix_len = (size_t)snprintf(in->prefix, plen, "%s%s:", RL_REDIS_PREFIX, ns);
    in->storage = c->storage;
    in->fail_open = c->redis_failure == 0;
    in->header_style = c->header_style;
    for (size_t i = 0; i < in->n; i++)
        in->kong_headers |= in->limits[i].kong >= 0;
    in->bopts = (struct tp_rl_batch_opts){.sync_every = (uint32_t)c->sync_every,
                                          .sync_interval_us = c->sync_interval * 1000,
                                          .max_keys = (size_t)c->max_keys};
    in->lease_us = c->concurrency_lease * TP_RL_US;
    in->message = c->error_message ? c->error_message : RL_DEFAULT_MESSAGE;
    in->status = (int)c->error_code;
    if (in->storage != STORE_LOCAL) {
        const char *host = c->redis_host ? c->redis_host : c->redis.host;
        const char *user = c->redis_username ? c->redis_username : c->redis.username;
        const char *pw = c->redis_password ? c->redis_password : c->redis.password;
        in->redis.host = strdup(host);
        in->redis.username = user ? strdup(user) : NULL;
        in->redis.password = pw ? strdup(pw) : NULL;
        in->redis.port = (uint16_t)(c->redis_port > 0 ? c->redis_port
                                    : c->redis.port   ? c->redis.port
                                                      : 6379);
        in->redis.database = (int)(c->redis_database >= 0 ? c->redis_database
                                                          : c->redis.database);
        in->redis.timeout_ms = (uint32_t)(c->redis_timeout > 0 ? c->redis_timeout
                                          : c->redis.timeout  ? c->redis.timeout
                                                              : 2000);
        if (!in->redis.host || (user && !in->redis.username) || (pw && !in->redis.password) ||
            tp_rl_redis_conf_init(&in->redis) != 0)
            goto out_oom;
    }
    *out = in;
    return 0;

out_invalid:
    rl_destroy(in);
    return tp_plugin_build_error(b, NULL, "invalid limit");
out_oom:
    rl_destroy(in);
    return tp_plugin_build_error(b, NULL, "out of memory");
}

/* ------------------------------------------------------------------------------------------ */
/* Requests                                                                                   */

enum rl_phase {
    RQ_NEW = 0,
    RQ_WAIT_CONNECT, /* the worker's first Redis connection is being made */
    RQ_WAIT_REDIS,   /* the script's answer */
    RQ_HELD,         /* leaky bucket: until the release time */
    RQ_DONE,
};

/* What this plugin knows of one request (request arena). */
struct rl_req {
    enum rl_phase phase;
    struct tp_slice keys[TP_RL_MAX_LIMITS];   /* local keys */
    struct tp_slice rkeys[TP_RL_MAX_LIMITS];  /* Redis keys (prefix + local key) */
    struct tp_rl_decision d[TP_RL_MAX_LIMITS];
    bool decided, allowed;
    size_t pick;
    bool slot_local, slot_redis;              /* a concurrency slot to end in the log hook */
    struct tp_rl_redis *redis;
    struct tp_rl_op *op;
    char member[TP_RL_MEMBER_BUF];
    size_t member_len;
};

/* The value of one key part, or false when the request has none (the IP is used then). */
static bool part_value(struct tp_plugin_ctx *ctx, const struct rl_inst *in,
                       const struct key_part *p, struct tp_slice *v, char *num, size_t numlen)
{
    const struct tp_consumer *c = tp_plugin_consumer(ctx);
    switch (p->kind) {
    case PART_CONSUMER:
        /* Kong falls back to the credential of a consumer-less authentication; the plugin
         * API does not say whether one happened, so such requests are counted by IP */
        if (!c)
            return false;
        *v = tp_slice_cstr(c->id);
        return true;
    case PART_CREDENTIAL:
        /* set by the gateway only once an auth plugin accepted the request (client copies
         * are removed then), so it is read only with a consumer */
        return c && tp_plugin_header(ctx, "X-Credential-Identifier", 0, v) && v->len;
    case PART_IP:
        *v = tp_slice_cstr(tp_plugin_client_ip(ctx));
        return true;
    case PART_SERVICE:
        *v = tp_slice_cstr(tp_plugin_service_name(ctx));
        return true;
    case PART_ROUTE:
        *v = tp_slice_cstr(tp_plugin_route_name(ctx));
        return true;
    case PART_GLOBAL:
        *v = (struct tp_slice){"", 0};
        return true;
    case PART_GROUP:
        if (!c || !c->num_groups)
            return false;
        *v = tp_slice_cstr(c->groups[0]);
        return true;
    case PART_HEADER:
        return tp_plugin_header(ctx, p->arg, 0, v) && v->len;
    case PART_PARAM:
        return tp_plugin_route_param(ctx, p->arg, v) && v->len;
    case PART_CLAIM: {
        json_t *claims = tp_plugin_claims(ctx);
        json_t *x = claims ? json_object_get(claims, p->arg) : NULL;
        if (json_is_string(x)) {
            *v = (struct tp_slice){json_string_value(x), json_string_length(x)};
            return v->len > 0;
        }
        if (json_is_integer(x)) {
            *v = (struct tp_slice){num, (size_t)snprintf(num, numlen, "%lld",
                                                         (long long)json_integer_value(x))};
            return true;
        }
        return false;
    }
    case PART_KONG_PATH: {
        struct tp_slice path = tp_plugin_path(ctx);
        const char *want = in->conf->path;
        if (path.len != strlen(want) || memcmp(path.ptr, want, path.len) != 0)
            return false;
        *v = path;
        return true;
    }
    }
    return false;
}

/* limit id | one "<tag><length>:<value>" per part: parts cannot run into each other. */
static int build_key(struct tp_plugin_ctx *ctx, const struct rl_inst *in,
                     const struct rl_limit *l, struct tp_slice *local, struct tp_slice *remote)
{
    struct tp_slice vals[RL_MAX_KEY_PARTS];
    char tags[RL_MAX_KEY_PARTS];
    char nums[RL_MAX_KEY_PARTS][24];
    size_t n = TP_MIN(l->key->num_parts, RL_MAX_KEY_PARTS);
    size_t len = in->prefix_len + strlen(l->id) + 1;
    for (size_t i = 0; i < n; i++) {
        const struct key_part *p = &l->key->parts[i];
        tags[i] = (char)('a' + p->kind);
        if (!part_value(ctx, in, p, &vals[i], nums[i], sizeof(nums[i]))) {
            tags[i] = '@'; /* no value: the client's IP, tagged apart from every value */
            vals[i] = tp_slice_cstr(tp_plugin_client_ip(ctx));
        }
        len += 1 + 20 + 1 + vals[i].len;
    }
    /* room for the key, then for the prefix and a digest should the key be too long */
    char *buf = tp_plugin_alloc(ctx, len + in->prefix_len + TP_RL_DIGEST_BUF);
    if (!buf)
        return TP_ENOMEM;
    char *p = buf + in->prefix_len;
    memcpy(buf, in->prefix, in->prefix_len);
    p += snprintf(p, len, "%s|", l->id);
    for (size_t i = 0; i < n; i++) {
        *p++ = tags[i];
        p += tp_fmt_u64(p, vals[i].len);
        *p++ = ':';
        memcpy(p, vals[i].ptr, vals[i].len);
        p += vals[i].len;
    }
    struct tp_slice whole = {buf, (size_t)(p - buf)};
    struct tp_slice key = {buf + in->prefix_len, whole.len - in->prefix_len};
    if (key.len > TP_RL_MAX_KEY) {
        /* a long value (a header): its digest, after the prefix, in the spare room */
        char *d = buf + len;
        struct tp_slice fit = tp_rl_key_fit(key, d + in->prefix_len);
        memcpy(d, in->prefix, in->prefix_len);
        key = (struct tp_slice){d + in->prefix_len, fit.len};
        whole = (struct tp_slice){d, in->prefix_len + fit.len};
    }
    *local = key;
    *remote = whole;
    return 0;
}

static enum tp_plugin_status decide_local(struct rl_req *q, const struct rl_inst *in)
{
    struct tp_rl_item items[TP_RL_MAX_LIMITS];
    for (size_t i = 0; i < in->n; i++)
        items[i] = (struct tp_rl_item){.limit = &in->limits[i].l, .key = q->keys[i]};
    q->allowed = tp_rl_store_take(in->store, items, in->n, tp_rl_now_us());
    for (size_t i = 0; i < in->n; i++) {
        q->d[i] = items[i].d;
        q->slot_local |= q->allowed && in->limits[i].l.algo == TP_RL_CONCURRENCY;
    }
    q->decided = true;
    return TP_PLUGIN_CONTINUE;
}

/* Redis is not usable for this request: the plugin's redis_failure policy. */
static enum tp_plugin_status fallback(struct tp_plugin_ctx *ctx, struct rl_req *q,
                                      const struct rl_inst *in)
{
    if (in->fail_open)
        return decide_local(q, in);
    tp_plugin_respond(ctx, 503, RL_UNAVAILABLE);
    q->phase = RQ_DONE;
    return TP_PLUGIN_RESPOND;
}

static enum tp_plugin_status decide_redis(struct tp_plugin_ctx *ctx, struct rl_req *q,
                                          const struct rl_inst *in)
{
    if (!q->redis && !(q->redis = tp_rl_redis_get(ctx, &in->redis)))
        return fallback(ctx, q, in);
    switch (tp_rl_redis_state(q->redis)) {
    case TP_RL_REDIS_CONNECTING:
        if (q->phase == RQ_WAIT_CONNECT || /* woken, still connecting: do not wait twice */
            tp_plugin_wait(ctx, tp_rl_redis_connect_waiters(q->redis)) != 0)
            return fallback(ctx, q, in);
        q->phase = RQ_WAIT_CONNECT;
        return TP_PLUGIN_SUSPEND;
    case TP_RL_REDIS_DOWN:
        return fallback(ctx, q, in);
    case TP_RL_REDIS_UP:
        break;
    }
    if (in->storage == STORE_BATCHED) {
        struct tp_rl_batch *b = tp_rl_batch_get(q->redis, in->bopts.max_keys);
        if (!b)
            return fallback(ctx, q, in);
        struct tp_rl_item items[TP_RL_MAX_LIMITS];
        for (size_t i = 0; i < in->n; i++)
            items[i] = (struct tp_rl_item){.limit = &in->limits[i].l, .key = q->rkeys[i]};
        q->allowed = tp_rl_batch_take(b, items, in->n, tp_rl_now_us(), &in->bopts);
        for (size_t i = 0; i < in->n; i++)
            q->d[i] = items[i].d;
        q->decided = true;
        return TP_PLUGIN_CONTINUE;
    }
    const struct tp_rl_limit *limits[TP_RL_MAX_LIMITS];
    for (size_t i = 0; i < in->n; i++)
        limits[i] = &in->limits[i].l;
    q->member_len = tp_rl_redis_member(q->redis, q->member);
    q->op = tp_rl_redis_take(q->redis, limits, q->rkeys, in->n,
                             (struct tp_slice){q->member, q->member_len}, in->lease_us);
    if (!q->op)
        return fallback(ctx, q, in);
    if (tp_plugin_wait(ctx, &q->op->waiters) != 0) {
        tp_rl_op_done(q->op);
        q->op = NULL;
        return TP_PLUGIN_ERROR;
    }
    q->phase = RQ_WAIT_REDIS;
    return TP_PLUGIN_SUSPEND;
}

/* The script answered (or failed): take its decisions. */
static enum tp_plugin_status redis_answered(struct tp_plugin_ctx *ctx, struct rl_req *q,
                                            const struct rl_inst *in)
{
    struct tp_rl_op *op = q->op;
    q->op = NULL;
    q->phase = RQ_NEW;
    if (!op || !op->done || op->failed || op->n != in->n) {
        tp_rl_op_done(op);
        return fallback(ctx, q, in);
    }
    q->allowed = op->allowed;
    for (size_t i = 0; i < in->n; i++) {
        q->d[i] = op->d[i];
        q->slot_redis |= q->allowed && in->limits[i].l.algo == TP_RL_CONCURRENCY;
    }
    q->decided = true;
    tp_rl_op_done(op);
    return TP_PLUGIN_CONTINUE;
}

static enum tp_plugin_status refuse(struct tp_plugin_ctx *ctx, struct rl_req *q,
                                    const struct rl_inst *in)
{
    q->phase = RQ_DONE;
    /* the event is a rate-limit rejection whatever status error_code sends */
    tp_plugin_security_log(ctx, 429, "rate limit exceeded");
    tp_plugin_respond(ctx, in->status, in->message);
    return TP_PLUGIN_RESPOND;
}

static enum tp_plugin_status rl_access(struct tp_plugin_ctx *ctx, const void *vinst)
{
    const struct rl_inst *in = vinst;
    void **slot = tp_plugin_data(ctx);
    struct rl_req *q = *slot;
    enum tp_plugin_status st = TP_PLUGIN_CONTINUE;

    if (!q) {
        q = tp_plugin_alloc(ctx, sizeof(*q));
        if (!q)
            return TP_PLUGIN_ERROR;
        memset(q, 0, sizeof(*q));
        for (size_t i = 0; i < in->n; i++)
            if (build_key(ctx, in, &in->limits[i], &q->keys[i], &q->rkeys[i]) != 0)
                return TP_PLUGIN_ERROR;
        *slot = q;
    }
    switch (q->phase) {
    case RQ_DONE:
        return TP_PLUGIN_CONTINUE;
    case RQ_HELD:
        q->phase = RQ_DONE; /* released by the leaky bucket */
        return TP_PLUGIN_CONTINUE;
    case RQ_WAIT_REDIS:
        st = redis_answered(ctx, q, in);
        break;
    case RQ_NEW:
    case RQ_WAIT_CONNECT:
        st = in->storage == STORE_LOCAL ? decide_local(q, in) : decide_redis(ctx, q, in);
        break;
    }
    if (st != TP_PLUGIN_CONTINUE || !q->decided)
        return st;
    q->pick = tp_rl_pick(q->d, in->n);
    if (!q->allowed)
        return refuse(ctx, q, in);
    int64_t delay = 0;
    for (size_t i = 0; i < in->n; i++)
        delay = TP_MAX(delay, q->d[i].delay_us);
    q->phase = RQ_DONE;
    if (delay > 0) {
        if (tp_rl_shaper_hold(ctx, tp_rl_now_us() + delay) != 0)
            return TP_PLUGIN_ERROR;
        q->phase = RQ_HELD;
        return TP_PLUGIN_SUSPEND;
    }
    return TP_PLUGIN_CONTINUE;
}

/* ---- headers -------------------------------------------------------------------------------- */

static int set_num(struct tp_plugin_ctx *ctx, const char *name, uint64_t v)
{
    char buf[24];
    return tp_plugin_resp_set_header(ctx, name, (struct tp_slice){buf, tp_fmt_u64(buf, v)});
}

/* Seconds reported as a limit's reset: when nothing remains, until the next request passes
 * (what Retry-After says); otherwise until the quota is whole again. Never 0 while refused. */
static uint64_t reset_s(const struct tp_rl_decision *d)
{
    int64_t s = tp_rl_ceil_s(d->remaining ? d->reset_us : d->retry_us);
    if (!d->allowed && s < 1)
        s = 1;
    return (uint64_t)s;
}

static int legacy_headers(struct tp_plugin_ctx *ctx, const struct rl_inst *in,
                          const struct rl_req *q)
{
    const struct tp_rl_decision *d = &q->d[q->pick];
    int rc = set_num(ctx, "X-RateLimit-Limit", d->limit);
    rc = rc ? rc : set_num(ctx, "X-RateLimit-Remaining", d->remaining);
    rc = rc ? rc : set_num(ctx, "X-RateLimit-Reset", reset_s(d));
    if (rc || !in->kong_headers)
        return rc;
    char name[40];
    for (size_t i = 0; i < in->n && rc == 0; i++) {
        int k = in->limits[i].kong;
        if (k < 0)
            continue;
        snprintf(name, sizeof(name), "X-RateLimit-Limit-%s", kong_period_titles[k]);
        rc = set_num(ctx, name, q->d[i].limit);
        snprintf(name, sizeof(name), "X-RateLimit-Remaining-%s", kong_period_titles[k]);
        rc = rc ? rc : set_num(ctx, name, q->d[i].remaining);
    }
    /* Kong's own trio (an early draft of the IETF fields) */
    rc = rc ? rc : set_num(ctx, "RateLimit-Limit", d->limit);
    rc = rc ? rc : set_num(ctx, "RateLimit-Remaining", d->remaining);
    return rc ? rc : set_num(ctx, "RateLimit-Reset", reset_s(d));
}

static int ietf_headers(struct tp_plugin_ctx *ctx, const struct rl_inst *in,
                        const struct rl_req *q)
{
    const struct tp_rl_decision *d = &q->d[q->pick];
    char buf[RL_MAX_NAME + 64];
    int n = snprintf(buf, sizeof(buf), "\"%s\";r=%llu;t=%llu", in->limits[q->pick].name,
                     (unsigned long long)d->remaining, (unsigned long long)reset_s(d));
    int rc = tp_plugin_resp_set_header(ctx, "RateLimit-Policy", tp_slice_cstr(in->policy));
    return rc ? rc : tp_plugin_resp_set_header(ctx, "RateLimit", (struct tp_slice){buf, (size_t)n});
}

static enum tp_plugin_status rl_response_headers(struct tp_plugin_ctx *ctx, const void *vinst)
{
    const struct rl_inst *in = vinst;
    const struct rl_req *q = *tp_plugin_data(ctx);
    int rc = 0;
    if (!q || !q->decided)
        return TP_PLUGIN_CONTINUE;
    if (in->header_style == HS_IETF || in->header_style == HS_BOTH)
        rc = ietf_headers(ctx, in, q);
    if (rc == 0 && (in->header_style == HS_LEGACY || in->header_style == HS_BOTH))
        rc = legacy_headers(ctx, in, q);
    if (rc == 0 && !q->allowed) /* RFC 6585 §4, RFC 9110 §10.2.3 */
        rc = set_num(ctx, "Retry-After",
                     (uint64_t)TP_MAX(tp_rl_ceil_s(q->d[q->pick].retry_us), 1));
    return rc ? TP_PLUGIN_ERROR : TP_PLUGIN_CONTINUE;
}

/* The request is over (answered, or its client went away): end its concurrency slots. */
static void rl_log(struct tp_plugin_ctx *ctx, const void *vinst)
{
    const struct rl_inst *in = vinst;
    struct rl_req *q = *tp_plugin_data(ctx);
    if (!q)
        return;
    for (size_t i = 0; i < in->n; i++) {
        if (in->limits[i].l.algo != TP_RL_CONCURRENCY)
            continue;
        if (q->slot_local)
            tp_rl_store_release_one(in->store, &in->limits[i].l, q->keys[i]);
        if (q->slot_redis && q->redis)
            tp_rl_redis_release(q->redis, q->rkeys[i],
                                (struct tp_slice){q->member, q->member_len});
    }
    q->slot_local = q->slot_redis = false;
}

/** The rate-limiting plugin (registered in src/plugins/registry.c). */
const struct tp_plugin tp_plugin_rate_limiting = {
    .name = "rate-limiting",
    .priority = 910,
    .schema = &rl_schema,
    .conf_size = sizeof(struct rl_conf),
    .validate = rl_validate,
    .free_conf = rl_free_conf,
    .compile = rl_compile,
    .destroy = rl_destroy,
    .access = rl_access,
    .response_headers = rl_response_headers,
    .log = rl_log,
};
