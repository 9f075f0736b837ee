/*
 * Observability settings (issue 7): log destinations, access_log_fields, log_buffer_size and the
 * `tracing` section.
 *
 *   access_log_fields: [time, request_id, status, ...]   # names of enum tp_access_field
 *   tracing:
 *     endpoint: "http://127.0.0.1:4318"   # required; spans are POSTed to {endpoint}/v1/traces
 *     sampling: 0.1                        # head-sampling ratio, 0..1 (default 1)
 *     parent_based: true                   # a valid incoming traceparent's sampled flag decides
 *     service_name: turnpike
 *     batch_size: 512                      # spans per export request
 *     flush_interval: 5000                 # ms
 *     queue_size: 2048                     # requests waiting for export (all workers)
 *     timeout: 10000                       # ms per export request
 */
#include "config/observe.h"
#include "turnpike/logsink.h"

#include <stdlib.h>
#include <string.h>

static const char *const access_field_names[TP_AF_COUNT] = {
    [TP_AF_TIME] = "time",
    [TP_AF_REQUEST_ID] = "request_id",
    [TP_AF_CLIENT] = "client",
    [TP_AF_PEER] = "peer",
    [TP_AF_METHOD] = "method",
    [TP_AF_PATH] = "path",
    [TP_AF_QUERY] = "query",
    [TP_AF_PROTOCOL] = "protocol",
    [TP_AF_HOST] = "host",
    [TP_AF_USER_AGENT] = "user_agent",
    [TP_AF_REFERER] = "referer",
    [TP_AF_STATUS] = "status",
    [TP_AF_BYTES_RECEIVED] = "bytes_received",
    [TP_AF_BYTES_SENT] = "bytes_sent",
    [TP_AF_ROUTE] = "route",
    [TP_AF_SERVICE] = "service",
    [TP_AF_UPSTREAM] = "upstream",
    [TP_AF_LATENCY_MS] = "latency_ms",
    [TP_AF_UPSTREAM_LATENCY_MS] = "upstream_latency_ms",
    [TP_AF_TRACE_ID] = "trace_id",
    [TP_AF_SPAN_ID] = "span_id",
    [TP_AF_CONSUMER] = "consumer",
    [TP_AF_TRIES] = "tries",
};

const char *tp_access_field_name(enum tp_access_field f)
{
    return (unsigned)f < TP_AF_COUNT ? access_field_names[f] : "?";
}

/* The fields of a line without access_log_fields: the original set plus trace_id. */
static const unsigned char default_fields[] = {
    TP_AF_TIME,       TP_AF_REQUEST_ID,
    TP_AF_CLIENT,     TP_AF_METHOD,
    TP_AF_PATH,       TP_AF_USER_AGENT,
    TP_AF_STATUS,     TP_AF_BYTES_RECEIVED,
    TP_AF_BYTES_SENT, TP_AF_ROUTE,
    TP_AF_SERVICE,    TP_AF_UPSTREAM,
    TP_AF_LATENCY_MS, TP_AF_UPSTREAM_LATENCY_MS,
    TP_AF_TRACE_ID,
};

const unsigned char *tp_config_access_fields(const struct tp_config *cfg, size_t *n)
{
    if (cfg && cfg->access_log_fields) {
        *n = cfg->num_access_log_fields;
        return cfg->access_log_fields;
    }
    *n = sizeof(default_fields);
    return default_fields;
}

void tp__cfg_parse_access_log_fields(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                                     void *obj)
{
    struct tp_config *cfg = obj;
    size_t n = 0;
    char **names = tp__cfg_string_list(ctx, key, value, NULL, &n);
    if (!names) {
        if (n == 0 && value->type == YAML_SEQUENCE_NODE)
            tp__cfg_error(ctx, value, "\"%s\" must name at least one field", key);
        return;
    }
    free(cfg->access_log_fields);
    cfg->access_log_fields = calloc(n, 1);
    cfg->num_access_log_fields = 0;
    uint32_t seen = 0;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = tp__cfg_item(ctx, value, i);
        int f = -1;
        for (int k = 0; names[i] && k < TP_AF_COUNT; k++)
            if (strcmp(names[i], access_field_names[k]) == 0)
                f = k;
        if (names[i] && f < 0)
            tp__cfg_error(ctx, item ? item : value, "unknown access log field \"%s\"", names[i]);
        else if (f >= 0 && (seen & (1u << f)))
            tp__cfg_error(ctx, item ? item : value, "access log field \"%s\" listed twice",
                          names[i]);
        else if (f >= 0 && cfg->access_log_fields)
            cfg->access_log_fields[cfg->num_access_log_fields++] = (unsigned char)f;
        if (f >= 0)
            seen |= 1u << f;
        free(names[i]);
    }
    free(names);
    if (!cfg->access_log_fields)
        tp__cfg_oom(ctx, value);
}

/* ------------------------------------------------------------------------------------------ */
/* tracing                                                                                    */

static void parse_sampling(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct tp_conf_tracing *t = obj;
    char *s = NULL;
    if (tp__cfg_string(ctx, key, value, &s) != 0)
        return;
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !(v >= 0.0 && v <= 1.0))
        tp__cfg_error(ctx, value, "\"%s\" must be a number from 0 to 1", key);
    else
        t->sampling = v;
    free(s);
}

static void parse_endpoint(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct tp_conf_tracing *t = obj;
    if (tp__cfg_string(ctx, key, value, &t->endpoint) != 0)
        return;
    char err[160];
    if (tp_tracing_endpoint_check(t->endpoint, err, sizeof(err)) != 0)
        tp__cfg_error(ctx, value, "%s: %s", key, err);
}

static const struct tp__cfg_directive tracing_keys[] = {
    TP__CFG_CUSTOM_KEY("endpoint", parse_endpoint, true),
    TP__CFG_CUSTOM_KEY("sampling", parse_sampling, false),
    TP__CFG_BOOL_KEY("parent_based", struct tp_conf_tracing, parent_based, true),
    TP__CFG_STRING_KEY("service_name", struct tp_conf_tracing, service_name, "turnpike"),
    TP__CFG_UINT_KEY("batch_size", struct tp_conf_tracing, batch_size, 1, 8192, 512),
    TP__CFG_UINT_KEY("flush_interval", struct tp_conf_tracing, flush_interval_ms, 10,
                     TP__CFG_MAX_MS, 5000),
    TP__CFG_UINT_KEY("queue_size", struct tp_conf_tracing, queue_size, 1, 1 << 20, 2048),
    TP__CFG_UINT_KEY("timeout", struct tp_conf_tracing, timeout_ms, 1, TP__CFG_MAX_MS, 10000),
};

TP__CFG_TABLE_CHECK(tracing_keys);

static const struct tp__cfg_schema tracing_schema = {
    .what = "tracing",
    .keys = tracing_keys,
    .num_keys = TP_ARRAY_LEN(tracing_keys),
    .mark_offset = offsetof(struct tp_conf_tracing, mark),
};

void tp__cfg_parse_tracing(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct tp_config *cfg = obj;
    struct tp_conf_tracing *t = calloc(1, sizeof(*t));
    (void)key;
    if (!t) {
        tp__cfg_oom(ctx, value);
        return;
    }
    tp_conf_tracing_free(cfg->tracing);
    cfg->tracing = t; /* attached at once: tp_config_free() releases it whatever follows */
    t->sampling = 1.0;
    tp__cfg_object(ctx, &tracing_schema, value, t);
    if (t->sampling >= 1.0) {
        t->sample_all = true;
        t->sample_threshold = UINT64_MAX;
    } else {
        /* ratio x 2^64: below 1, so it fits; a trace id's random part is compared to it */
        double th = t->sampling * 18446744073709551616.0; /* 2^64 */
        t->sample_threshold = th >= 18446744073709551615.0 ? UINT64_MAX : (uint64_t)th;
    }
}

void tp_conf_tracing_free(struct tp_conf_tracing *t)
{
    if (!t)
        return;
    free(t->endpoint);
    free(t->service_name);
    free(t);
}

int tp_tracing_endpoint_check(const char *url, char *err, size_t errlen)
{
    struct tp_tracing_endpoint ep;
    return tp_tracing_endpoint_parse(url, &ep, err, errlen);
}

int tp_tracing_endpoint_parse(const char *url, struct tp_tracing_endpoint *ep, char *err,
                              size_t errlen)
{
    memset(ep, 0, sizeof(*ep));
    if (strncmp(url, "http://", 7) != 0) {
        snprintf(err, errlen, "only http:// endpoints are supported");
        return TP_EINVAL;
    }
    const char *h = url + 7, *end = h + strcspn(h, "/?#");
    if (*end == '?' || *end == '#') {
        snprintf(err, errlen, "no query or fragment allowed");
        return TP_EINVAL;
    }
    const char *colon = NULL;
    if (*h == '[') {
        const char *rb = memchr(h, ']', (size_t)(end - h));
        if (!rb) {
            snprintf(err, errlen, "unterminated IPv6 literal");
            return TP_EINVAL;
        }
        colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
        if (rb + 1 < end && !colon) {
            snprintf(err, errlen, "invalid host");
            return TP_EINVAL;
        }
        if ((size_t)(rb - h - 1) >= sizeof(ep->host) || rb == h + 1) {
            snprintf(err, errlen, "invalid host");
            return TP_EINVAL;
        }
        memcpy(ep->host, h + 1, (size_t)(rb - h - 1));
    } else {
        colon = memchr(h, ':', (size_t)(end - h));
        const char *hend = colon ? colon : end;
        if (hend == h || (size_t)(hend - h) >= sizeof(ep->host)) {
            snprintf(err, errlen, "invalid host");
            return TP_EINVAL;
        }
        memcpy(ep->host, h, (size_t)(hend - h));
    }
    ep->port = 80;
    if (colon) {
        unsigned long port = 0;
        const char *p = colon + 1;
        if (p == end)
            port = 0;
        for (; p < end && port <= 65535; p++)
            port = (*p >= '0' && *p <= '9') ? port * 10 + (unsigned long)(*p - '0') : 70000;
        if (port == 0 || port > 65535) {
            snprintf(err, errlen, "invalid port");
            return TP_EINVAL;
        }
        ep->port = (uint16_t)port;
    }
    /* the base path without a trailing '/', then the OTLP/HTTP signal path */
    size_t blen = strlen(end);
    while (blen && end[blen - 1] == '/')
        blen--;
    if (blen + sizeof("/v1/traces") > sizeof(ep->path)) {
        snprintf(err, errlen, "path too long");
        return TP_EINVAL;
    }
    for (size_t i = 0; i < blen; i++) {
        unsigned char ch = (unsigned char)end[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '?' || ch == '#') {
            snprintf(err, errlen, "invalid character in the path (no query or fragment)");
            return TP_EINVAL;
        }
    }
    memcpy(ep->path, end, blen);
    memcpy(ep->path + blen, "/v1/traces", sizeof("/v1/traces"));
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* whole-document checks                                                                      */

static void check_dest(struct tp__cfg_ctx *ctx, yaml_node_t *root, const char *key,
                       const char *dest, bool allow_off)
{
    char err[160];
    /* an empty value was reported by the schema walker already */
    if (!dest || !dest[0] || tp_logsink_dest_check(dest, allow_off, err, sizeof(err)) == 0)
        return;
    yaml_node_t *at = tp__cfg_lookup(ctx, root, key);
    if (at)
        tp__cfg_error(ctx, at, "%s: %s", key, err);
    else
        tp__cfg_error_at(ctx, 1, 1, "%s: %s", key, err);
}

void tp__cfg_check_observe(struct tp__cfg_ctx *ctx, yaml_node_t *root, struct tp_config *cfg)
{
    check_dest(ctx, root, "access_log", cfg->access_log, true);
    check_dest(ctx, root, "error_log", cfg->error_log, false);
    check_dest(ctx, root, "security_log", cfg->security_log, true);
    check_dest(ctx, root, "audit_log", cfg->audit_log, true);
    size_t n;
    const unsigned char *f = tp_config_access_fields(cfg, &n);
    cfg->access_log_field_mask = 0;
    for (size_t i = 0; i < n; i++)
        cfg->access_log_field_mask |= 1u << f[i];
}
