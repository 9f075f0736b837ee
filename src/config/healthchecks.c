/*
 * upstreams[].healthchecks: active probes and passive outcome tracking (issue 3).
 *
 *   healthchecks:
 *     active:  {type: http|tcp, http_path: /, host: (target's), interval: 0 (ms, 0 = off),
 *               timeout: 1000,
 *               healthy_threshold: 2, unhealthy_threshold: 2, healthy_statuses: [200, 302]}
 *     passive: {unhealthy_threshold: 5, unhealthy_statuses: [500, 502, 503, 504],
 *               ejection_time: 30000}
 *     fail_open: false
 *
 * Without a `passive` section passive checks are off; without `active` (or with interval 0)
 * there are no probes.
 */
#include "config/schema.h"
#include "turnpike/config.h"

#include <stdlib.h>
#include <string.h>

/* A list of HTTP status codes 100..599 into a new int array. */
static void parse_statuses(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                           int **out, size_t *num)
{
    size_t n = tp__cfg_count(value);
    if (value->type != YAML_SEQUENCE_NODE || n == 0) {
        tp__cfg_error(ctx, value, "expected a non-empty list of status codes for \"%s\"", key);
        return;
    }
    int *v = calloc(n, sizeof(*v));
    if (!v) {
        tp__cfg_oom(ctx, value);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        int64_t s = 0;
        yaml_node_t *item = tp__cfg_item(ctx, value, i);
        if (item && tp__cfg_int(ctx, key, item, 100, 599, &s) == 0)
            v[i] = (int)s;
    }
    free(*out);
    *out = v;
    *num = n;
}

static void parse_healthy_statuses(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                                   void *obj)
{
    struct tp_conf_healthchecks *h = obj;
    parse_statuses(ctx, key, value, &h->healthy_statuses, &h->num_healthy_statuses);
}

static void parse_unhealthy_statuses(struct tp__cfg_ctx *ctx, const char *key,
                                     yaml_node_t *value, void *obj)
{
    struct tp_conf_healthchecks *h = obj;
    parse_statuses(ctx, key, value, &h->unhealthy_statuses, &h->num_unhealthy_statuses);
}

static void parse_type(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    static const char *const names[] = {"http", "tcp"};
    int i;
    if (tp__cfg_enum(ctx, key, value, names, TP_ARRAY_LEN(names), &i) == 0)
        ((struct tp_conf_healthchecks *)obj)->active_tcp = i == 1;
}

static void parse_http_path(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                            void *obj)
{
    struct tp_conf_healthchecks *h = obj;
    if (tp__cfg_string(ctx, key, value, &h->active_http_path) != 0)
        return;
    const char *p = h->active_http_path;
    for (size_t i = 0; p[i]; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch <= 0x20 || ch >= 0x7f) {
            tp__cfg_error(ctx, value, "\"%s\" must not contain spaces or control bytes", key);
            return;
        }
    }
    if (p[0] != '/')
        tp__cfg_error(ctx, value, "\"%s\" must start with \"/\"", key);
}

/* The probe's Host: host[:port], checked so no byte can break the probe's head. */
static void parse_probe_host(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                             void *obj)
{
    struct tp_conf_healthchecks *h = obj;
    char *host = NULL;
    uint16_t port;
    if (tp__cfg_string(ctx, key, value, &h->active_host) != 0)
        return;
    const char *err = tp__cfg_hostport(h->active_host, false, &host, &port);
    free(host);
    if (err)
        tp__cfg_error(ctx, value, "invalid \"%s\" \"%s\": %s", key, h->active_host, err);
}

static const struct tp__cfg_directive active_keys[] = {
    TP__CFG_CUSTOM_KEY("type", parse_type, false),
    TP__CFG_CUSTOM_KEY("http_path", parse_http_path, false),
    TP__CFG_CUSTOM_KEY("host", parse_probe_host, false),
    TP__CFG_UINT_KEY("interval", struct tp_conf_healthchecks, active_interval_ms, 0,
                     TP__CFG_MAX_MS, 0),
    TP__CFG_UINT_KEY("timeout", struct tp_conf_healthchecks, active_timeout_ms, 1,
                     TP__CFG_MAX_MS, 1000),
    TP__CFG_UINT_KEY("healthy_threshold", struct tp_conf_healthchecks, healthy_threshold, 1,
                     1000, 2),
    TP__CFG_UINT_KEY("unhealthy_threshold", struct tp_conf_healthchecks, unhealthy_threshold, 1,
                     1000, 2),
    TP__CFG_CUSTOM_KEY("healthy_statuses", parse_healthy_statuses, false),
};

TP__CFG_TABLE_CHECK(active_keys);

static const struct tp__cfg_schema active_schema = {
    .what = "active health check",
    .keys = active_keys,
    .num_keys = TP_ARRAY_LEN(active_keys),
    .mark_offset = -1,
};

static const struct tp__cfg_directive passive_keys[] = {
    TP__CFG_UINT_KEY("unhealthy_threshold", struct tp_conf_healthchecks, passive_threshold, 0,
                     1000, 5),
    TP__CFG_CUSTOM_KEY("unhealthy_statuses", parse_unhealthy_statuses, false),
    TP__CFG_UINT_KEY("ejection_time", struct tp_conf_healthchecks, ejection_ms, 1,
                     TP__CFG_MAX_MS, 30000),
};

TP__CFG_TABLE_CHECK(passive_keys);

static const struct tp__cfg_schema passive_schema = {
    .what = "passive health check",
    .keys = passive_keys,
    .num_keys = TP_ARRAY_LEN(passive_keys),
    .mark_offset = -1,
};

static void parse_active(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    tp__cfg_object(ctx, &active_schema, value, obj);
}

static void parse_passive(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                          void *obj)
{
    tp__cfg_object(ctx, &passive_schema, value, obj);
}

static const struct tp__cfg_directive healthcheck_keys[] = {
    TP__CFG_CUSTOM_KEY("active", parse_active, false),
    TP__CFG_CUSTOM_KEY("passive", parse_passive, false),
    TP__CFG_BOOL_KEY("fail_open", struct tp_conf_healthchecks, fail_open, false),
};

TP__CFG_TABLE_CHECK(healthcheck_keys);

static const struct tp__cfg_schema healthcheck_schema = {
    .what = "healthchecks",
    .keys = healthcheck_keys,
    .num_keys = TP_ARRAY_LEN(healthcheck_keys),
    .mark_offset = -1,
};

/* Defaults for the status lists when none were given (Kong's and Envoy's usual sets). */
static int default_statuses(int **out, size_t *num, const int *v, size_t n)
{
    if (*out)
        return 0;
    if (!(*out = malloc(n * sizeof(*v))))
        return -1;
    memcpy(*out, v, n * sizeof(*v));
    *num = n;
    return 0;
}

void tp__cfg_parse_healthchecks(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                                void *obj)
{
    static const int healthy[] = {200, 302};
    static const int unhealthy[] = {500, 502, 503, 504};
    struct tp_conf_upstream *u = obj;
    struct tp_conf_healthchecks *h = calloc(1, sizeof(*h));
    if (!h) {
        tp__cfg_oom(ctx, value);
        return;
    }
    tp_conf_healthchecks_free(u->healthchecks);
    u->healthchecks = h;
    tp__cfg_defaults(ctx, &active_schema, h);
    tp__cfg_defaults(ctx, &passive_schema, h);
    h->passive_threshold = 0; /* passive checks only with a `passive` section */
    tp__cfg_object(ctx, &healthcheck_schema, value, h);
    if (default_statuses(&h->healthy_statuses, &h->num_healthy_statuses, healthy, 2) ||
        default_statuses(&h->unhealthy_statuses, &h->num_unhealthy_statuses, unhealthy, 4) ||
        (!h->active_http_path && !(h->active_http_path = strdup("/"))))
        tp__cfg_oom(ctx, value);
}

void tp_conf_healthchecks_free(struct tp_conf_healthchecks *h)
{
    if (!h)
        return;
    free(h->healthy_statuses);
    free(h->unhealthy_statuses);
    free(h->active_http_path);
    free(h->active_host);
    free(h);
}
