/*
 * turnpike — declarative config loader (include/turnpike/config.h).
 *
 * The file is loaded into a libyaml document (JSON is YAML flow style), walked against the
 * schema tables (top level and limits here, entities in entities.c), then checked as a whole:
 * unique names, route default names, service hosts that name an upstream or a host.
 *
 * Accepted top-level keys: _format_version ("1", "1.0" or "3.0", Kong's), listen, workers,
 * access_log, error_log, log_level, trusted_proxies, dns_refresh, limits, services, upstreams.
 */
#include "config/schema.h"
#include "config/observe.h"
#include "config/plugins_internal.h"
#include "metrics/conf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_CONFIG_BYTES (64u << 20) /* a larger file is certainly a mistake */
#define MAX_WORKERS 1024

/* ------------------------------------------------------------------------------------------ */
/* limits                                                                                     */

#define LIMIT_SIZE(key, field, hi, dflt) \
    TP__CFG_UINT_KEY(key, struct tp_conf_limits, field, 1, hi, dflt)
#define LIMIT_MS(key, field, dflt) \
    TP__CFG_UINT_KEY(key, struct tp_conf_limits, field, 1, TP__CFG_MAX_MS, dflt)

static const struct tp__cfg_directive limits_keys[] = {
    LIMIT_SIZE("max_header_bytes", max_header_bytes, 1 << 20, TP_DEFAULT_MAX_HEADER_BYTES),
    LIMIT_SIZE("max_headers", max_headers, 10000, TP_DEFAULT_MAX_HEADERS),
    LIMIT_SIZE("max_uri_bytes", max_uri_bytes, 1 << 20, TP_DEFAULT_MAX_URI_BYTES),
    LIMIT_SIZE("max_header_field_bytes", max_field_bytes, 1 << 20, TP_DEFAULT_MAX_FIELD_BYTES),
    TP__CFG_UINT_KEY("max_body_bytes", struct tp_conf_limits, max_body_bytes, 0,
                     INT64_C(1) << 40, TP_DEFAULT_MAX_BODY_BYTES),
    LIMIT_MS("header_timeout", header_timeout_ms, TP_DEFAULT_HEADER_TIMEOUT_MS),
    LIMIT_MS("body_timeout", body_timeout_ms, TP_DEFAULT_BODY_TIMEOUT_MS),
    LIMIT_MS("keepalive_timeout", keepalive_timeout_ms, TP_DEFAULT_KEEPALIVE_TIMEOUT_MS),
    LIMIT_MS("send_timeout", send_timeout_ms, TP_DEFAULT_SEND_TIMEOUT_MS),
    LIMIT_MS("tunnel_idle_timeout", tunnel_idle_timeout_ms, TP_DEFAULT_TUNNEL_IDLE_TIMEOUT_MS),
    LIMIT_SIZE("max_connections", max_connections, 10000000, TP_DEFAULT_MAX_CONNECTIONS),
    /* 0 is allowed: stop at once on SIGTERM. */
    TP__CFG_UINT_KEY("grace_period", struct tp_conf_limits, grace_period_ms, 0, TP__CFG_MAX_MS,
                     TP_DEFAULT_GRACE_MS),
};

TP__CFG_TABLE_CHECK(limits_keys);

static const struct tp__cfg_schema limits_schema = {
    .what = "limits",
    .keys = limits_keys,
    .num_keys = TP_ARRAY_LEN(limits_keys),
    .size = sizeof(struct tp_conf_limits),
    .mark_offset = -1,
};

/* ------------------------------------------------------------------------------------------ */
/* Top-level scalars                                                                          */

static void parse_format_version(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                                 void *obj)
{
    char *v = NULL;

    (void)obj;
    if (tp__cfg_string(ctx, key, value, &v) != 0)
        return;
    if (strcmp(v, "1") != 0 && strcmp(v, "1.0") != 0 && strcmp(v, "3.0") != 0)
        tp__cfg_error(ctx, value, "unsupported %s \"%s\" (expected \"1\", \"1.0\" or \"3.0\")",
                      key, v);
    free(v);
}

/* "auto" or 0: one worker per online CPU, resolved after loading. */
static void parse_workers(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                          void *obj)
{
    struct tp_config *cfg = obj;
    int64_t n;

    if (value->type != YAML_SCALAR_NODE) {
        tp__cfg_error(ctx, value, "\"%s\" must be \"auto\" or an integer", key);
        return;
    }
    const char *v = (const char *)value->data.scalar.value;
    if (value->data.scalar.length == 4 && memcmp(v, "auto", 4) == 0) {
        cfg->workers = 0;
        return;
    }
    if (value->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || !v[0] ||
        !strchr("-0123456789", v[0]))
        tp__cfg_error(ctx, value, "\"%s\" must be \"auto\" or an integer", key);
    else if (tp__cfg_int(ctx, key, value, 0, MAX_WORKERS, &n) == 0)
        cfg->workers = (int)n;
}

static void parse_log_level(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                            void *obj)
{
    /* Indexed by enum tp_log_level. */
    static const char *const names[] = {"debug", "info", "notice", "warn", "error"};
    struct tp_config *cfg = obj;
    int i;

    if (tp__cfg_enum(ctx, key, value, names, TP_ARRAY_LEN(names), &i) == 0)
        cfg->log_level = (enum tp_log_level)i;
}

/* ------------------------------------------------------------------------------------------ */
/* Lists of strings parsed into structs: listen, trusted_proxies                              */

/* Parse one string into `elem`; NULL or a message. */
typedef const char *(*item_parse_fn)(const char *text, void *elem);

static void parse_string_item(struct tp__cfg_ctx *ctx, const char *key, const char *what,
                              yaml_node_t *item, item_parse_fn fn, void *elem)
{
    char *text = NULL;
    const char *err;

    if (item->type != YAML_SCALAR_NODE || tp__cfg_is_null(item)) {
        tp__cfg_error(ctx, item, "expected a list of strings for \"%s\"", key);
        return;
    }
    if (tp__cfg_string(ctx, key, item, &text) != 0)
        return;
    if ((err = fn(text, elem)) != NULL)
        tp__cfg_error(ctx, item, "invalid %s \"%s\": %s", what, text, err);
    free(text);
}

static void *parse_string_items(struct tp__cfg_ctx *ctx, const char *key, const char *what,
                                yaml_node_t *node, item_parse_fn fn, size_t elem_size,
                                size_t *num)
{
    size_t n = tp__cfg_count(node);

    *num = 0;
    if (node->type != YAML_SEQUENCE_NODE) {
        tp__cfg_error(ctx, node, "expected a list of strings for \"%s\"", key);
        return NULL;
    }
    if (n == 0)
        return NULL;
    char *arr = calloc(n, elem_size);
    if (!arr) {
        tp__cfg_oom(ctx, node);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = tp__cfg_node(ctx, node->data.sequence.items.start[i]);
        if (item)
            parse_string_item(ctx, key, what, item, fn, arr + i * elem_size);
    }
    *num = n;
    return arr;
}

static const char *listen_parse(const char *text, void *elem)
{
    struct tp_conf_listen *l = elem;

    free(l->host);
    return tp__cfg_hostport(text, true, &l->host, &l->port);
}

static void parse_listen(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct tp_config *cfg = obj;

    cfg->listen = parse_string_items(ctx, key, "listen address", value, listen_parse,
                                     sizeof(*cfg->listen), &cfg->num_listen);
    for (size_t i = 0; i < cfg->num_listen; i++)
        cfg->listen[i].mark = tp__cfg_mark(tp__cfg_item(ctx, value, i));
    if (value->type == YAML_SEQUENCE_NODE && cfg->num_listen == 0)
        tp__cfg_error(ctx, value, "\"%s\" must not be empty", key);
}

/* status_listen: one "host:port" for the JSON status endpoint (issue 3). */
static void parse_status_listen(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                                void *obj)
{
    struct tp_config *cfg = obj;
    char *text = NULL;
    if (tp__cfg_string(ctx, key, value, &text) != 0)
        return;
    struct tp_conf_listen *l = calloc(1, sizeof(*l));
    const char *err = l ? listen_parse(text, l) : "out of memory";
    if (err) {
        tp__cfg_error(ctx, value, "invalid \"%s\" \"%s\": %s", key, text, err);
        if (l)
            free(l->host);
        free(l);
    } else {
        l->mark = tp__cfg_mark(value);
        cfg->status_listen = l;
    }
    free(text);
}

/* Prefix length: decimal, no leading zero, 0..max. */
static int parse_prefix(const char *s, int max)
{
    int v = 0;

    if (!*s || (s[0] == '0' && s[1]) || strlen(s) > 3)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v <= max ? v : -1;
}

static bool host_bits_set(const struct tp_conf_cidr *c, int bits)
{
    for (int b = c->prefix; b < bits; b++)
        if (c->addr[b / 8] & (0x80 >> (b % 8)))
            return true;
    return false;
}

/* "10.0.0.0/8", "192.0.2.10" (a /32), "::1/128", "2001:db8::/32". */
static const char *cidr_parse(const char *text, void *elem)
{
    struct tp_conf_cidr *c = elem;
    char addr[INET6_ADDRSTRLEN];
    const char *slash = strchr(text, '/');
    size_t len = slash ? (size_t)(slash - text) : strlen(text);

    if (len == 0 || len >= sizeof(addr))
        return "invalid address";
    memcpy(addr, text, len);
    addr[len] = '\0';
    c->family = memchr(addr, ':', len) ? AF_INET6 : AF_INET;
    int bits = c->family == AF_INET6 ? 128 : 32;
    if (inet_pton(c->family, addr, c->addr) != 1)
        return "invalid address";
    c->prefix = slash ? parse_prefix(slash + 1, bits) : bits;
    if (c->prefix < 0)
        return c->family == AF_INET6 ? "prefix length must be between 0 and 128"
                                     : "prefix length must be between 0 and 32";
    return host_bits_set(c, bits) ? "host bits set" : NULL;
}

static void parse_trusted_proxies(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                                  void *obj)
{
    struct tp_config *cfg = obj;

    cfg->trusted_proxies = parse_string_items(ctx, key, "trusted proxy", value, cidr_parse,
                                              sizeof(*cfg->trusted_proxies),
                                              &cfg->num_trusted_proxies);
}

/* ------------------------------------------------------------------------------------------ */
/* Sections                                                                                   */

static void parse_limits(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    (void)key;
    tp__cfg_object(ctx, &limits_schema, value, &((struct tp_config *)obj)->limits);
}

static void parse_services(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                           void *obj)
{
    struct tp_config *cfg = obj;

    cfg->services = tp__cfg_list(ctx, key, value, &tp__cfg_service_schema, &cfg->num_services);
}

static void parse_upstreams(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                            void *obj)
{
    struct tp_config *cfg = obj;

    cfg->upstreams = tp__cfg_list(ctx, key, value, &tp__cfg_upstream_schema, &cfg->num_upstreams);
}

static const struct tp__cfg_directive config_keys[] = {
    TP__CFG_CUSTOM_KEY("_format_version", parse_format_version, false),
    TP__CFG_CUSTOM_KEY("listen", parse_listen, false),
    TP__CFG_CUSTOM_KEY("status_listen", parse_status_listen, false),
    TP__CFG_CUSTOM_KEY("workers", parse_workers, false),
    TP__CFG_STRING_KEY("access_log", struct tp_config, access_log, "stdout"),
    TP__CFG_STRING_KEY("error_log", struct tp_config, error_log, "stderr"),
    TP__CFG_STRING_KEY("security_log", struct tp_config, security_log, "stderr"),
    TP__CFG_CUSTOM_KEY("log_level", parse_log_level, false),
    TP__CFG_STRING_KEY("audit_log", struct tp_config, audit_log, "stderr"),
    TP__CFG_UINT_KEY("log_buffer_size", struct tp_config, log_buffer_bytes, 65536, 1u << 28,
                     1u << 20),
    TP__CFG_CUSTOM_KEY("access_log_fields", tp__cfg_parse_access_log_fields, false),
    TP__CFG_CUSTOM_KEY("tracing", tp__cfg_parse_tracing, false),
    TP__CFG_CUSTOM_KEY("trusted_proxies", parse_trusted_proxies, false),
    /* 0: resolve target host names only when the config is (re)loaded. */
    TP__CFG_UINT_KEY("dns_refresh", struct tp_config, dns_refresh_ms, 0, TP__CFG_MAX_MS,
                     TP_DEFAULT_DNS_REFRESH_MS),
    TP__CFG_CUSTOM_KEY("limits", parse_limits, false),
    TP__CFG_CUSTOM_KEY("metrics", tp__cfg_parse_metrics, false),
    TP__CFG_CUSTOM_KEY("services", parse_services, false),
    TP__CFG_CUSTOM_KEY("upstreams", parse_upstreams, false),
    TP__CFG_CUSTOM_KEY("consumers", tp__cfg_parse_consumers, false),
    TP__CFG_CUSTOM_KEY("plugins", tp__cfg_parse_top_plugins, false),
};

TP__CFG_TABLE_CHECK(config_keys);

static const struct tp__cfg_schema config_schema = {
    .what = "the top-level mapping",
    .keys = config_keys,
    .num_keys = TP_ARRAY_LEN(config_keys),
    .size = sizeof(struct tp_config),
    .mark_offset = -1,
};

/* ------------------------------------------------------------------------------------------ */
/* Whole-document checks                                                                      */

static void add_unique(struct tp__cfg_ctx *ctx, struct tp__cfg_names *set, const char *what,
                       const char *name, struct tp_conf_mark at)
{
    const struct tp__cfg_name *first = tp__cfg_names_add(set, name, at);

    if (first)
        tp__cfg_error_at(ctx, at.line, at.column,
                         "duplicate %s name \"%s\" (first defined at %d:%d)", what, name,
                         first->mark.line, first->mark.column);
}

/* Position of the "name" value of list item i, or `fallback`. */
static struct tp_conf_mark name_mark(struct tp__cfg_ctx *ctx, const yaml_node_t *seq, size_t i,
                                     struct tp_conf_mark fallback)
{
    yaml_node_t *n = tp__cfg_lookup(ctx, tp__cfg_item(ctx, seq, i), "name");

    return n ? tp__cfg_mark(n) : fallback;
}

static void check_upstream_names(struct tp__cfg_ctx *ctx, yaml_node_t *root,
                                 const struct tp_config *cfg, struct tp__cfg_names *set)
{
    yaml_node_t *seq = tp__cfg_lookup(ctx, root, "upstreams");

    for (size_t i = 0; i < cfg->num_upstreams; i++) {
        const struct tp_conf_upstream *u = &cfg->upstreams[i];
        if (u->name)
            add_unique(ctx, set, "upstream", u->name, name_mark(ctx, seq, i, u->mark));
    }
}

static char *default_route_name(const char *service, size_t index)
{
    int n = snprintf(NULL, 0, "%s.%zu", service, index);
    char *s = n >= 0 ? malloc((size_t)n + 1) : NULL;

    if (s)
        snprintf(s, (size_t)n + 1, "%s.%zu", service, index);
    return s;
}

/* Routes without a name become "<service>.<index>"; names are unique across services. */
static void name_routes(struct tp__cfg_ctx *ctx, yaml_node_t *service_node,
                        struct tp_conf_service *s, struct tp__cfg_names *set)
{
    yaml_node_t *seq = tp__cfg_lookup(ctx, service_node, "routes");

    for (size_t j = 0; j < s->num_routes; j++) {
        struct tp_conf_route *r = &s->routes[j];
        bool named = tp__cfg_lookup(ctx, tp__cfg_item(ctx, seq, j), "name") != NULL;
        if (!named && !r->name && s->name && !(r->name = default_route_name(s->name, j))) {
            tp__cfg_oom(ctx, service_node);
            continue;
        }
        if (r->name)
            add_unique(ctx, set, "route", r->name, name_mark(ctx, seq, j, r->mark));
    }
}

static void check_service_host(struct tp__cfg_ctx *ctx, yaml_node_t *service_node,
                               const struct tp_conf_service *s, const struct tp__cfg_names *ups)
{
    if (!s->host || tp__cfg_names_find(ups, s->host) || strchr(s->host, ':') ||
        tp__cfg_valid_hostname(s->host, strlen(s->host)))
        return;
    yaml_node_t *at = tp__cfg_lookup(ctx, service_node, "url");
    const char *what = at ? "url host" : "host";
    if (!at)
        at = tp__cfg_lookup(ctx, service_node, "host");
    tp__cfg_error(ctx, at ? at : service_node,
                  "service \"%s\": %s \"%s\" is neither an upstream nor a valid host name",
                  s->name ? s->name : "", what, s->host);
}

static size_t count_routes(const struct tp_config *cfg)
{
    size_t n = 0;

    for (size_t i = 0; i < cfg->num_services; i++)
        n += cfg->services[i].num_routes;
    return n;
}

static void check_names(struct tp__cfg_ctx *ctx, yaml_node_t *root, struct tp_config *cfg)
{
    struct tp__cfg_names ups, svcs, routes;
    yaml_node_t *seq = tp__cfg_lookup(ctx, root, "services");

    int rc = tp__cfg_names_init(&ups, cfg->num_upstreams);
    rc |= tp__cfg_names_init(&svcs, cfg->num_services);
    rc |= tp__cfg_names_init(&routes, count_routes(cfg));
    if (rc != 0) {
        tp__cfg_oom(ctx, root);
        goto out_free;
    }
    check_upstream_names(ctx, root, cfg, &ups);
    for (size_t i = 0; i < cfg->num_services; i++) {
        struct tp_conf_service *s = &cfg->services[i];
        yaml_node_t *node = tp__cfg_item(ctx, seq, i);
        if (s->name)
            add_unique(ctx, &svcs, "service", s->name, name_mark(ctx, seq, i, s->mark));
        check_service_host(ctx, node, s, &ups);
        name_routes(ctx, node, s, &routes);
    }
out_free:
    tp__cfg_names_free(&routes);
    tp__cfg_names_free(&svcs);
    tp__cfg_names_free(&ups);
}

static void check_listen(struct tp__cfg_ctx *ctx, const struct tp_config *cfg)
{
    const struct tp_conf_listen *st = cfg->status_listen;
    for (size_t i = 0; st && st->host && i < cfg->num_listen; i++) {
        const struct tp_conf_listen *l = &cfg->listen[i];
        /* the status page is never on the public port (README: status_listen) */
        if (l->host && l->port == st->port &&
            (strcmp(l->host, st->host) == 0 || strcmp(l->host, "0.0.0.0") == 0 ||
             strcmp(st->host, "0.0.0.0") == 0))
            tp__cfg_error_at(ctx, st->mark.line, st->mark.column,
                             "\"status_listen\" must not be a listen address (%d:%d)",
                             l->mark.line, l->mark.column);
    }
    for (size_t i = 1; i < cfg->num_listen; i++) {
        const struct tp_conf_listen *l = &cfg->listen[i];
        for (size_t j = 0; l->host && j < i; j++) {
            const struct tp_conf_listen *o = &cfg->listen[j];
            if (o->host && o->port == l->port && strcmp(o->host, l->host) == 0) {
                tp__cfg_error_at(ctx, l->mark.line, l->mark.column,
                                 "duplicate listen address (first defined at %d:%d)",
                                 o->mark.line, o->mark.column);
                break;
            }
        }
    }
}

static void default_listen(struct tp__cfg_ctx *ctx, struct tp_config *cfg)
{
    cfg->listen = calloc(1, sizeof(*cfg->listen));
    if (cfg->listen) {
        cfg->num_listen = 1;
        cfg->listen[0].host = strdup("0.0.0.0");
        cfg->listen[0].port = 8000;
    }
    if (!cfg->listen || !cfg->listen[0].host)
        tp__cfg_oom(ctx, NULL);
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n < 1 ? 1 : n > MAX_WORKERS ? MAX_WORKERS : (int)n;
}

static void finish_config(struct tp__cfg_ctx *ctx, yaml_node_t *root, struct tp_config *cfg)
{
    if (!tp__cfg_lookup(ctx, root, "listen"))
        default_listen(ctx, cfg);
    check_listen(ctx, cfg);
    if (cfg->workers == 0)
        cfg->workers = online_cpus();
    check_names(ctx, root, cfg);
    tp__cfg_check_consumers(ctx, cfg);
    tp__cfg_check_observe(ctx, root, cfg);
}

/* ------------------------------------------------------------------------------------------ */
/* Loading                                                                                    */

static struct tp_config *build(struct tp__cfg_ctx *ctx, yaml_document_t *doc)
{
    struct tp_config *cfg = calloc(1, sizeof(*cfg));

    if (!cfg) {
        tp__cfg_oom(ctx, NULL);
        return NULL;
    }
    ctx->doc = doc;
    ctx->num_nodes = (size_t)(doc->nodes.top - doc->nodes.start);
    ctx->visited = calloc(ctx->num_nodes + 1, 1);
    cfg->path = strdup(ctx->name);
    if (!ctx->visited || !cfg->path) {
        tp__cfg_oom(ctx, NULL);
        free(ctx->visited);
        return cfg;
    }
    cfg->log_level = TP_LOG_NOTICE;
    tp__cfg_defaults(ctx, &config_schema, cfg);
    tp__cfg_defaults(ctx, &limits_schema, &cfg->limits);
    tp__cfg_metrics_defaults(ctx, cfg);
    yaml_node_t *root = tp__cfg_node(ctx, 1);
    if (root && root->type != YAML_MAPPING_NODE && !tp__cfg_is_null(root))
        tp__cfg_error(ctx, root, "the top level must be a mapping");
    else if (root && root->type == YAML_MAPPING_NODE)
        tp__cfg_object(ctx, &config_schema, root, cfg);
    finish_config(ctx, root, cfg);
    free(ctx->visited);
    return cfg;
}

/* 1-based line and column of byte `offset` of the input. */
static struct tp_conf_mark offset_mark(const struct tp__cfg_ctx *ctx, size_t offset)
{
    struct tp_conf_mark m = {1, 1};

    for (size_t i = 0; i < offset && i < ctx->len && m.line < INT32_MAX; i++) {
        if (ctx->text[i] == '\n') {
            m.line++;
            m.column = 1;
        } else if (m.column < INT32_MAX) {
            m.column++;
        }
    }
    return m;
}

static int clamp_int(size_t v)
{
    return v < INT32_MAX ? (int)v : INT32_MAX;
}

static void yaml_error(struct tp__cfg_ctx *ctx, const yaml_parser_t *p)
{
    const char *problem = p->problem ? p->problem : "unknown error";
    int line = clamp_int(p->problem_mark.line + 1), col = clamp_int(p->problem_mark.column + 1);

    if (p->error == YAML_MEMORY_ERROR) {
        tp__cfg_error_at(ctx, 1, 1, "out of memory while parsing YAML");
    } else if (p->error == YAML_READER_ERROR) {
        struct tp_conf_mark m = offset_mark(ctx, p->problem_offset);
        tp__cfg_error_at(ctx, m.line, m.column, "invalid input: %s", problem);
    } else if (p->context) {
        tp__cfg_error_at(ctx, line, col, "YAML syntax error: %s (%s at %d:%d)", problem,
                         p->context, clamp_int(p->context_mark.line + 1),
                         clamp_int(p->context_mark.column + 1));
    } else {
        tp__cfg_error_at(ctx, line, col, "YAML syntax error: %s", problem);
    }
}

/* The stream must hold one document: a second one would be silently ignored otherwise. */
static void check_single_document(struct tp__cfg_ctx *ctx, yaml_parser_t *parser)
{
    yaml_document_t extra;

    if (!yaml_parser_load(parser, &extra)) {
        yaml_error(ctx, parser);
        return;
    }
    yaml_node_t *root = yaml_document_get_root_node(&extra);
    if (root)
        tp__cfg_error(ctx, root, "only one YAML document is allowed");
    yaml_document_delete(&extra);
}

int tp_config_load_string(const char *name, const char *text, size_t len, FILE *errors,
                          struct tp_config **out)
{
    struct tp__cfg_ctx ctx = {
        .name = name ? name : "<string>",
        .text = text ? text : "",
        .len = text ? len : 0,
        .errors = errors,
    };
    struct tp_config *cfg = NULL;
    yaml_parser_t parser;
    yaml_document_t doc;

    if (!yaml_parser_initialize(&parser)) {
        tp__cfg_error_at(&ctx, 1, 1, "out of memory");
        return -1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)ctx.text, ctx.len);
    if (!yaml_parser_load(&parser, &doc)) {
        yaml_error(&ctx, &parser);
        goto out_parser;
    }
    check_single_document(&ctx, &parser);
    if (ctx.num_errors == 0)
        cfg = build(&ctx, &doc);
    yaml_document_delete(&doc);
out_parser:
    yaml_parser_delete(&parser);
    if (ctx.num_errors > 0) {
        tp_config_free(cfg);
        return -ctx.num_errors;
    }
    *out = cfg;
    return 0;
}

/* The whole file in a new NUL-terminated buffer; NULL with errno set on failure. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0;

    *len = 0;
    if (!f)
        return NULL;
    for (;;) {
        if (*len + 1 >= cap) {
            size_t ncap = cap ? cap * 2 : 16384;
            char *nb = ncap <= MAX_CONFIG_BYTES ? realloc(buf, ncap) : NULL;
            if (!nb) {
                errno = ncap > MAX_CONFIG_BYTES ? EFBIG : ENOMEM;
                goto out_fail;
            }
            buf = nb;
            cap = ncap;
        }
        size_t n = fread(buf + *len, 1, cap - *len - 1, f);
        *len += n;
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        errno = EIO;
        goto out_fail;
    }
    fclose(f);
    buf[*len] = '\0';
    return buf;
out_fail:
    free(buf);
    fclose(f);
    return NULL;
}

int tp_config_load(const char *path, FILE *errors, struct tp_config **out)
{
    size_t len;
    char *text = read_file(path, &len);

    if (!text) {
        if (errors)
            fprintf(errors, "%s: cannot read config: %s\n", path, strerror(errno));
        return -1;
    }
    int rc = tp_config_load_string(path, text, len, errors, out);
    free(text);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Freeing and lookup                                                                         */

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

static void free_conds(struct tp_conf_cond *c, size_t n)
{
    for (size_t i = 0; c && i < n; i++) {
        free(c[i].name);
        free_strings(c[i].values, c[i].num_values);
    }
    free(c);
}

static void free_service(struct tp_conf_service *s)
{
    for (size_t i = 0; s->routes && i < s->num_routes; i++) {
        struct tp_conf_route *r = &s->routes[i];
        free(r->name);
        free_strings(r->hosts, r->num_hosts);
        free_strings(r->paths, r->num_paths);
        free_strings(r->methods, r->num_methods);
        free_conds(r->headers, r->num_headers);
        free_conds(r->query, r->num_query);
        for (size_t k = 0; r->split && k < r->num_split; k++)
            free(r->split[k].service);
        free(r->split);
        free(r->split_header);
        free(r->split_cookie);
        free(r->mirror);
        tp__cfg_plugins_free(r->plugins, r->num_plugins);
        free_strings(r->order, r->num_order);
    }
    free(s->routes);
    free(s->name);
    free(s->url);
    free(s->host);
    free(s->path);
    tp_conf_circuit_free(s->circuit_breaker);
    tp__cfg_plugins_free(s->plugins, s->num_plugins);
}

static void free_upstream(struct tp_conf_upstream *u)
{
    tp_conf_healthchecks_free(u->healthchecks);
    tp_conf_circuit_free(u->circuit_breaker);
    for (size_t i = 0; u->targets && i < u->num_targets; i++)
        free(u->targets[i].host);
    free(u->targets);
    free(u->name);
}

void tp_config_free(struct tp_config *cfg)
{
    if (cfg && cfg->status_listen) {
        free(cfg->status_listen->host);
        free(cfg->status_listen);
    }
    if (!cfg)
        return;
    for (size_t i = 0; cfg->services && i < cfg->num_services; i++)
        free_service(&cfg->services[i]);
    for (size_t i = 0; cfg->upstreams && i < cfg->num_upstreams; i++)
        free_upstream(&cfg->upstreams[i]);
    for (size_t i = 0; cfg->listen && i < cfg->num_listen; i++)
        free(cfg->listen[i].host);
    free(cfg->services);
    free(cfg->upstreams);
    free(cfg->listen);
    free(cfg->trusted_proxies);
    free(cfg->access_log);
    free(cfg->error_log);
    free(cfg->security_log);
    free(cfg->audit_log);
    free(cfg->access_log_fields);
    tp_conf_tracing_free(cfg->tracing);
    tp__cfg_consumers_free(cfg->consumers, cfg->num_consumers);
    tp__cfg_plugins_free(cfg->plugins, cfg->num_plugins);
    free(cfg->path);
    free(cfg);
}

const struct tp_conf_upstream *tp_config_find_upstream(const struct tp_config *cfg,
                                                       const char *name)
{
    if (!cfg || !name)
        return NULL;
    for (size_t i = 0; i < cfg->num_upstreams; i++)
        if (cfg->upstreams[i].name && strcmp(cfg->upstreams[i].name, name) == 0)
            return &cfg->upstreams[i];
    return NULL;
}
