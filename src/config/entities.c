/*
 * turnpike — config loader: services, routes, upstreams and targets (DESIGN.md §1).
 *
 * Each entity is one schema table; the custom parsers below check what a table row cannot
 * (URLs, host patterns, path kinds, method tokens, header/query conditions).
 */
#include "config/schema.h"
#include "config/plugins_internal.h"
#include "turnpike/http.h"
#include "turnpike/router.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------------------------------ */
/* Shared checks                                                                              */

static void parse_name(struct tp__cfg_ctx *ctx, const char *key, const yaml_node_t *value,
                       char **out)
{
    if (tp__cfg_string(ctx, key, value, out) == 0 && !tp__cfg_valid_name(*out))
        tp__cfg_error(ctx, value,
                      "invalid name \"%s\" (use only letters, digits, '.', '_', '~' and '-')",
                      *out);
}

/* RFC 9110 §5.6.2 token characters. */
static bool is_tchar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!is_tchar(*s))
            return false;
    return true;
}

/* A path that can appear in a request target: no control bytes, spaces, query or fragment. */
static const char *bad_path_char(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c == 0x7f)
            return "contains a space or control character";
        if (c == '?' || c == '#')
            return "must not contain a query or fragment";
    }
    return NULL;
}

static bool is_unreserved(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~';
}

/* ------------------------------------------------------------------------------------------ */
/* Routes                                                                                     */

/* Exact host or "*.suffix"; lower-cased, one trailing dot removed. */
static const char *route_host_problem(char *s)
{
    size_t len = strlen(s);
    char *p = s;

    for (size_t i = 0; i < len; i++)
        s[i] = tp_lower(s[i]);
    if (len > 1 && s[len - 1] == '.')
        s[--len] = '\0';
    if (len >= 2 && s[0] == '*' && s[1] == '.')
        p = s + 2;
    if (*p == '\0')
        return "empty host";
    for (const char *c = p; *c; c++) {
        if (*c == ':')
            return "ports are not allowed";
        if (*c == '/')
            return "'/' is not allowed";
        if (*c == '*')
            return "'*' is only allowed as the whole first label";
        if (*c == '.' && (c == p || c[1] == '.' || c[1] == '\0'))
            return "empty label";
        if (!(*c >= 'a' && *c <= 'z') && !(*c >= '0' && *c <= '9') && !strchr("-_.", *c))
            return "invalid character";
    }
    return NULL;
}

static int check_route_host(struct tp__cfg_ctx *ctx, const char *key, const yaml_node_t *node,
                            char *s)
{
    const char *problem = route_host_problem(s);

    if (!problem)
        return 0;
    tp__cfg_error(ctx, node, "invalid host \"%s\" in \"%s\": %s", s, key, problem);
    return -1;
}

/* "/prefix", "=/exact", "/users/{id}" (template) or "~regex" (compiled by the router). */
static int check_path(struct tp__cfg_ctx *ctx, const char *key, const yaml_node_t *node, char *s)
{
    const char *problem = NULL;

    char why[192];
    if (s[0] == '~')
        problem = s[1] ? NULL : "empty regular expression";
    else if (s[0] == '/' || (s[0] == '=' && s[1] == '/'))
        problem = bad_path_char(s, strlen(s));
    else
        problem = "must start with \"/\", \"=/\" or \"~\"";
    /* regex and template syntax: the router's own parser, so errors point at this path */
    if (!problem && tp_router_check_path(s, why, sizeof(why)) != 0)
        problem = why;
    if (!problem)
        return 0;
    tp__cfg_error(ctx, node, "invalid path \"%s\" in \"%s\": %s", s, key, problem);
    return -1;
}

static int check_method(struct tp__cfg_ctx *ctx, const char *key, const yaml_node_t *node,
                        char *s)
{
    if (!is_token(s)) {
        tp__cfg_error(ctx, node, "invalid method \"%s\" in \"%s\"", s, key);
        return -1;
    }
    for (; *s; s++)
        if (*s >= 'a' && *s <= 'z')
            *s = (char)(*s - 'a' + 'A');
    return 0;
}

static void parse_route_name(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                             void *obj)
{
    parse_name(ctx, key, value, &((struct tp_conf_route *)obj)->name);
}

static void parse_hosts(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct tp_conf_route *r = obj;

    r->hosts = tp__cfg_string_list(ctx, key, value, check_route_host, &r->num_hosts);
}

static void parse_paths(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct tp_conf_route *r = obj;

    r->paths = tp__cfg_string_list(ctx, key, value, check_path, &r->num_paths);
}

static void parse_methods(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                          void *obj)
{
    struct tp_conf_route *r = obj;

    r->methods = tp__cfg_string_list(ctx, key, value, check_method, &r->num_methods);
}

/* Accepted for Kong compatibility and ignored: turnpike routes serve plain HTTP. */
static void parse_protocols(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                            void *obj)
{
    size_t n = 0;
    char **v = tp__cfg_string_list(ctx, key, value, NULL, &n);
    bool http = false, bad = false;

    (void)obj;
    for (size_t i = 0; i < n; i++) {
        if (v[i] && strcmp(v[i], "http") == 0) {
            http = true;
        } else if (v[i] && strcmp(v[i], "https") != 0) {
            tp__cfg_error(ctx, tp__cfg_item(ctx, value, i),
                          "unsupported protocol \"%s\" in \"%s\" (only http and https)", v[i], key);
            bad = true;
        }
    }
    if (!http && !bad && value->type == YAML_SEQUENCE_NODE)
        tp__cfg_error(ctx, value, "\"%s\" must include \"http\"", key);
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Name of one header / query condition: a token for headers (lower-cased), any text else. */
static int check_cond_name(struct tp__cfg_ctx *ctx, const char *key, const yaml_node_t *node,
                           char *name, bool header)
{
    if (header && !is_token(name)) {
        tp__cfg_error(ctx, node, "invalid header name \"%s\" in \"%s\"", name, key);
        return -1;
    }
    if (!header && (name[0] == '\0' || bad_path_char(name, strlen(name)))) {
        tp__cfg_error(ctx, node, "invalid query argument name \"%s\" in \"%s\"", name, key);
        return -1;
    }
    for (char *p = name; header && *p; p++)
        *p = tp_lower(*p);
    return 0;
}

static void parse_cond_values(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                              struct tp_conf_cond *c)
{
    if (value->type == YAML_SCALAR_NODE && !tp__cfg_is_null(value)) {
        c->values = calloc(1, sizeof(*c->values));
        if (!c->values) {
            tp__cfg_oom(ctx, value);
            return;
        }
        c->num_values = 1;
        tp__cfg_string(ctx, key, value, &c->values[0]);
    } else if (value->type == YAML_SEQUENCE_NODE) {
        c->values = tp__cfg_string_list(ctx, key, value, NULL, &c->num_values);
        if (c->num_values == 0)
            tp__cfg_error(ctx, value, "no values for \"%s\" in \"%s\"", c->name, key);
    } else {
        tp__cfg_error(ctx, value, "expected a string or a list of strings for \"%s\" in \"%s\"",
                      c->name, key);
    }
}

/* Pair i of `map` into `c`; `seen` holds the names so far (headers compare lower-cased). */
static void parse_cond(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *map, size_t i,
                       bool header, struct tp_conf_cond *c, struct tp__cfg_names *seen)
{
    yaml_node_t *k = tp__cfg_pair_key(ctx, map, i, key);

    if (!k)
        return;
    c->mark = tp__cfg_mark(k);
    if (tp__cfg_string(ctx, key, k, &c->name) != 0 ||
        check_cond_name(ctx, key, k, c->name, header) != 0)
        return;
    const struct tp__cfg_name *first = tp__cfg_names_add(seen, c->name, c->mark);
    if (first) {
        tp__cfg_error(ctx, k, "duplicate %s \"%s\" in \"%s\" (first defined at %d:%d)",
                      header ? "header" : "query argument", c->name, key, first->mark.line,
                      first->mark.column);
        return;
    }
    yaml_node_t *value = tp__cfg_node(ctx, map->data.mapping.pairs.start[i].value);
    if (value)
        parse_cond_values(ctx, key, value, c);
}

static struct tp_conf_cond *parse_conds(struct tp__cfg_ctx *ctx, const char *key,
                                        yaml_node_t *node, bool header, size_t *num)
{
    *num = 0;
    if (node->type != YAML_MAPPING_NODE) {
        tp__cfg_error(ctx, node, "expected a mapping for \"%s\"", key);
        return NULL;
    }
    size_t n = (size_t)(node->data.mapping.pairs.top - node->data.mapping.pairs.start);
    if (n == 0)
        return NULL;
    struct tp__cfg_names seen;
    struct tp_conf_cond *conds = calloc(n, sizeof(*conds));
    if (!conds || tp__cfg_names_init(&seen, n) != 0) {
        free(conds);
        tp__cfg_oom(ctx, node);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        parse_cond(ctx, key, node, i, header, &conds[i], &seen);
    tp__cfg_names_free(&seen);
    *num = n;
    return conds;
}

static void parse_headers(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                          void *obj)
{
    struct tp_conf_route *r = obj;

    r->headers = parse_conds(ctx, key, value, true, &r->num_headers);
}

static void parse_query(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct tp_conf_route *r = obj;

    r->query = parse_conds(ctx, key, value, false, &r->num_query);
}

/* split: [{service: NAME, weight: N}] (services are resolved when the snapshot is built). */
static const struct tp__cfg_directive split_keys[] = {
    TP__CFG_STRING_KEY("service", struct tp_conf_split, service, NULL),
    TP__CFG_UINT_KEY("weight", struct tp_conf_split, weight, 0, 1000000, 1),
};

TP__CFG_TABLE_CHECK(split_keys);

static const struct tp__cfg_schema split_schema = {
    .what = "split",
    .keys = split_keys,
    .num_keys = TP_ARRAY_LEN(split_keys),
    .size = sizeof(struct tp_conf_split),
    .mark_offset = offsetof(struct tp_conf_split, mark),
};

static void parse_split(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct tp_conf_route *r = obj;
    if (value->type == YAML_SEQUENCE_NODE && tp__cfg_count(value) == 0) {
        tp__cfg_error(ctx, value, "\"%s\" must not be empty", key);
        return;
    }
    r->split = tp__cfg_list(ctx, key, value, &split_schema, &r->num_split);
    uint64_t total = 0;
    for (size_t i = 0; i < r->num_split; i++) {
        if (!r->split[i].service)
            tp__cfg_error(ctx, value, "every \"%s\" entry needs a \"service\"", key);
        total += r->split[i].weight;
    }
    if (r->num_split && total == 0)
        tp__cfg_error(ctx, value, "the weights of \"%s\" add up to 0", key);
}

/* split_sticky: {header: NAME} or {cookie: NAME} */
static const struct tp__cfg_directive sticky_keys[] = {
    TP__CFG_STRING_KEY("header", struct tp_conf_route, split_header, NULL),
    TP__CFG_STRING_KEY("cookie", struct tp_conf_route, split_cookie, NULL),
};

TP__CFG_TABLE_CHECK(sticky_keys);

static const struct tp__cfg_schema sticky_schema = {
    .what = "split_sticky",
    .keys = sticky_keys,
    .num_keys = TP_ARRAY_LEN(sticky_keys),
    .mark_offset = -1,
};

static void parse_sticky(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                         void *obj)
{
    struct tp_conf_route *r = obj;
    tp__cfg_object(ctx, &sticky_schema, value, r);
    const char *name = r->split_header ? r->split_header : r->split_cookie;
    for (size_t i = 0; name && name[i]; i++) {
        if (!tp_http_is_tchar((unsigned char)name[i])) {
            tp__cfg_error(ctx, value, "\"%s\": \"%s\" is not a valid name", key, name);
            break;
        }
    }
    if (r->split_header && r->split_cookie)
        tp__cfg_error(ctx, value, "\"%s\" takes a header or a cookie, not both", key);
    else if (!r->split_header && !r->split_cookie)
        tp__cfg_error(ctx, value, "\"%s\" needs a \"header\" or a \"cookie\"", key);
}

static void parse_mirror(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                         void *obj)
{
    struct tp_conf_route *r = obj;
    if (tp__cfg_string(ctx, key, value, &r->mirror) == 0)
        r->mirror_mark = tp__cfg_mark(value);
}

static const struct tp__cfg_directive route_keys[] = {
    TP__CFG_CUSTOM_KEY("name", parse_route_name, false),
    TP__CFG_CUSTOM_KEY("hosts", parse_hosts, false),
    TP__CFG_CUSTOM_KEY("paths", parse_paths, false),
    TP__CFG_CUSTOM_KEY("methods", parse_methods, false),
    TP__CFG_CUSTOM_KEY("headers", parse_headers, false),
    TP__CFG_CUSTOM_KEY("query", parse_query, false),
    TP__CFG_INT_KEY("priority", struct tp_conf_route, priority, INT32_MIN, INT32_MAX, 0),
    TP__CFG_BOOL_KEY("strip_path", struct tp_conf_route, strip_path, true),
    TP__CFG_BOOL_KEY("preserve_host", struct tp_conf_route, preserve_host, false),
    TP__CFG_BOOL_KEY("retry_non_idempotent", struct tp_conf_route, retry_non_idempotent, false),
    TP__CFG_CUSTOM_KEY("split", parse_split, false),
    TP__CFG_CUSTOM_KEY("split_sticky", parse_sticky, false),
    TP__CFG_CUSTOM_KEY("mirror", parse_mirror, false),
    TP__CFG_CUSTOM_KEY("protocols", parse_protocols, false),
    TP__CFG_CUSTOM_KEY("plugins", tp__cfg_parse_route_plugins, false),
    TP__CFG_CUSTOM_KEY("order", tp__cfg_parse_route_order, false),
};

TP__CFG_TABLE_CHECK(route_keys);

static const struct tp__cfg_schema route_schema = {
    .what = "route",
    .keys = route_keys,
    .num_keys = TP_ARRAY_LEN(route_keys),
    .size = sizeof(struct tp_conf_route),
    .mark_offset = offsetof(struct tp_conf_route, mark),
};

/* ------------------------------------------------------------------------------------------ */
/* Service URL: "http://host[:port][/path]"                                                   */

struct url_parts {
    const char *host;
    size_t host_len;
    uint16_t port;
    const char *path;
    size_t path_len;
};

/* Host and port of the authority a[0..len); NULL or a message. */
static const char *url_authority(const char *a, size_t len, struct url_parts *u)
{
    const char *end = a + len, *port = NULL;

    if (memchr(a, '@', len))
        return "\"url\" must not contain user information";
    if (len > 0 && a[0] == '[') {
        const char *close = memchr(a, ']', len);
        if (!close)
            return "missing ']' after the IPv6 address in \"url\"";
        u->host = a + 1;
        u->host_len = (size_t)(close - u->host);
        if (!tp__cfg_valid_ipv6(u->host, u->host_len))
            return "invalid IPv6 address in \"url\"";
        if (close + 1 < end && close[1] != ':')
            return "unexpected text after the IPv6 address in \"url\"";
        port = close + 1 < end ? close + 2 : NULL;
    } else {
        const char *colon = memchr(a, ':', len);
        u->host = a;
        u->host_len = colon ? (size_t)(colon - a) : len;
        port = colon ? colon + 1 : NULL;
        for (size_t i = 0; i < u->host_len; i++)
            if (!is_unreserved(a[i]))
                return "invalid character in the host of \"url\"";
    }
    if (u->host_len == 0)
        return "\"url\" has no host";
    u->port = 80;
    if (port && tp__cfg_port(port, (size_t)(end - port), &u->port) != 0)
        return "\"url\" port must be between 1 and 65535";
    return NULL;
}

static const char *url_split(const char *url, struct url_parts *u)
{
    if (strncasecmp(url, "https://", 8) == 0)
        return "https upstreams are not supported yet";
    if (strncasecmp(url, "http://", 7) != 0)
        return "\"url\" must start with http://";
    const char *a = url + 7;
    size_t alen = strcspn(a, "/?#");
    const char *err = url_authority(a, alen, u);
    if (err)
        return err;
    u->path = a + alen;
    u->path_len = strlen(u->path);
    if (bad_path_char(u->path, u->path_len))
        return "the path of \"url\" must not contain spaces, a query or a fragment";
    return NULL;
}

static void parse_url(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct tp_conf_service *s = obj;
    struct url_parts u;
    const char *err;

    if (tp__cfg_string(ctx, key, value, &s->url) != 0)
        return;
    if ((err = url_split(s->url, &u)) != NULL) {
        tp__cfg_error(ctx, value, "%s", err);
        return;
    }
    free(s->host);
    free(s->path);
    s->host = strndup(u.host, u.host_len);
    s->path = strndup(u.path, u.path_len);
    s->port = u.port;
    if (!s->host || !s->path)
        tp__cfg_oom(ctx, value);
}

/* ------------------------------------------------------------------------------------------ */
/* Services                                                                                   */

static void parse_service_name(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                               void *obj)
{
    parse_name(ctx, key, value, &((struct tp_conf_service *)obj)->name);
}

static void parse_protocol(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                           void *obj)
{
    char *proto = NULL;

    (void)obj;
    if (tp__cfg_string(ctx, key, value, &proto) != 0)
        return;
    if (strcasecmp(proto, "https") == 0)
        tp__cfg_error(ctx, value, "https upstreams are not supported yet");
    else if (strcasecmp(proto, "http") != 0)
        tp__cfg_error(ctx, value, "\"%s\" must be http", key);
    free(proto);
}

/* Kong's `host`: a host name, an IPv4 address, an IPv6 address (no brackets) or an upstream. */
static void parse_host(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct tp_conf_service *s = obj;

    if (tp__cfg_string(ctx, key, value, &s->host) != 0)
        return;
    const char *h = s->host;
    bool ok = h[0] != '\0';
    if (strchr(h, ':')) {
        ok = tp__cfg_valid_ipv6(h, strlen(h));
    } else {
        for (const char *p = h; *p; p++)
            ok = ok && is_unreserved(*p);
    }
    if (!ok) {
        tp__cfg_error(ctx, value, "invalid host \"%s\"", h);
        free(s->host);
        s->host = NULL;
    }
}

static void parse_path(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct tp_conf_service *s = obj;

    if (tp__cfg_string(ctx, key, value, &s->path) != 0)
        return;
    size_t len = strlen(s->path);
    if (s->path[0] != '/' || bad_path_char(s->path, len)) {
        tp__cfg_error(ctx, value,
                      "\"%s\" must start with '/' and have no spaces, query or fragment", key);
        return;
    }
}

static void parse_routes(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct tp_conf_service *s = obj;

    s->routes = tp__cfg_list(ctx, key, value, &route_schema, &s->num_routes);
}

/* Kong style (protocol/host/port/path): fill the defaults and write the equivalent url. */
static void build_url(struct tp__cfg_ctx *ctx, yaml_node_t *node, struct tp_conf_service *s)
{
    if (s->port == 0)
        s->port = 80;
    if (!s->path && !(s->path = strdup(""))) {
        tp__cfg_oom(ctx, node);
        return;
    }
    if (!s->host)
        return;
    bool v6 = strchr(s->host, ':') != NULL;
    char port[8] = "";
    if (s->port != 80)
        snprintf(port, sizeof(port), ":%u", (unsigned)s->port);
    int n = snprintf(NULL, 0, "http://%s%s%s%s%s", v6 ? "[" : "", s->host, v6 ? "]" : "", port,
                     s->path);
    free(s->url);
    s->url = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (!s->url) {
        tp__cfg_oom(ctx, node);
        return;
    }
    snprintf(s->url, (size_t)n + 1, "http://%s%s%s%s%s", v6 ? "[" : "", s->host, v6 ? "]" : "",
             port, s->path);
}

static void service_custom_defaults(struct tp_conf_service *s, const yaml_node_t *node,
                                    struct tp__cfg_ctx *ctx);

static void finish_service(struct tp__cfg_ctx *ctx, yaml_node_t *node, void *obj)
{
    static const char *const kong_keys[] = {"protocol", "host", "port", "path"};
    struct tp_conf_service *s = obj;

    service_custom_defaults(s, node, ctx);

    if (tp__cfg_lookup(ctx, node, "url")) {
        for (size_t i = 0; i < TP_ARRAY_LEN(kong_keys); i++) {
            yaml_node_t *v = tp__cfg_lookup(ctx, node, kong_keys[i]);
            if (v)
                tp__cfg_error(ctx, v, "\"%s\" cannot be combined with \"url\"", kong_keys[i]);
        }
        return;
    }
    if (!tp__cfg_lookup(ctx, node, "host")) {
        tp__cfg_error(ctx, node, "missing required key \"url\" (or \"host\") in service");
        return;
    }
    build_url(ctx, node, s);
}

/* retry_on: a list of conditions (see enum TP_RETRY_* in config.h). */
static void parse_retry_on(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                           void *obj)
{
    static const char *const names[] = {"connect-failure", "reset", "timeout", "502", "503",
                                        "504"};
    struct tp_conf_service *s = obj;
    size_t n = tp__cfg_count(value);
    if (value->type != YAML_SEQUENCE_NODE) {
        tp__cfg_error(ctx, value, "expected a list of conditions for \"%s\"", key);
        return;
    }
    s->retry_on = 0;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = tp__cfg_item(ctx, value, i);
        int k;
        if (item && tp__cfg_enum(ctx, key, item, names, TP_ARRAY_LEN(names), &k) == 0)
            s->retry_on |= 1u << k;
    }
}

/* The defaults of custom keys that are absent. */
static void service_custom_defaults(struct tp_conf_service *s, const yaml_node_t *node,
                                    struct tp__cfg_ctx *ctx)
{
    if (!tp__cfg_lookup(ctx, node, "retry_on"))
        s->retry_on = TP_DEFAULT_RETRY_ON;
}

static const struct tp__cfg_directive service_keys[] = {
    TP__CFG_CUSTOM_KEY("name", parse_service_name, true),
    TP__CFG_CUSTOM_KEY("url", parse_url, false),
    TP__CFG_CUSTOM_KEY("protocol", parse_protocol, false),
    TP__CFG_CUSTOM_KEY("host", parse_host, false),
    TP__CFG_UINT_KEY("port", struct tp_conf_service, port, 1, 65535, 0),
    TP__CFG_CUSTOM_KEY("path", parse_path, false),
    TP__CFG_UINT_KEY("connect_timeout", struct tp_conf_service, connect_timeout_ms, 1,
                     TP__CFG_MAX_MS, TP_DEFAULT_CONNECT_TIMEOUT_MS),
    TP__CFG_UINT_KEY("read_timeout", struct tp_conf_service, read_timeout_ms, 1, TP__CFG_MAX_MS,
                     TP_DEFAULT_READ_TIMEOUT_MS),
    TP__CFG_UINT_KEY("write_timeout", struct tp_conf_service, write_timeout_ms, 1,
                     TP__CFG_MAX_MS, TP_DEFAULT_WRITE_TIMEOUT_MS),
    TP__CFG_INT_KEY("retries", struct tp_conf_service, retries, 0, 100, TP_DEFAULT_RETRIES),
    TP__CFG_CUSTOM_KEY("retry_on", parse_retry_on, false),
    TP__CFG_UINT_KEY("retry_timeout", struct tp_conf_service, retry_timeout_ms, 0,
                     TP__CFG_MAX_MS, 0),
    TP__CFG_UINT_KEY("retry_budget", struct tp_conf_service, retry_budget, 0, 100,
                     TP_DEFAULT_RETRY_BUDGET),
    TP__CFG_UINT_KEY("retry_backoff", struct tp_conf_service, retry_backoff_ms, 0, 60000,
                     TP_DEFAULT_RETRY_BACKOFF_MS),
    TP__CFG_CUSTOM_KEY("routes", parse_routes, false),
    TP__CFG_CUSTOM_KEY("circuit_breaker", tp__cfg_parse_service_circuit, false),
    TP__CFG_CUSTOM_KEY("plugins", tp__cfg_parse_service_plugins, false),
};

TP__CFG_TABLE_CHECK(service_keys);

const struct tp__cfg_schema tp__cfg_service_schema = {
    .what = "service",
    .keys = service_keys,
    .num_keys = TP_ARRAY_LEN(service_keys),
    .size = sizeof(struct tp_conf_service),
    .mark_offset = offsetof(struct tp_conf_service, mark),
    .finish = finish_service,
};

/* ------------------------------------------------------------------------------------------ */
/* Upstreams and targets                                                                      */

static void parse_target(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct tp_conf_target *t = obj;
    char *text = NULL;
    const char *err;

    if (tp__cfg_string(ctx, key, value, &text) != 0)
        return;
    free(t->host);
    if ((err = tp__cfg_hostport(text, false, &t->host, &t->port)) != NULL)
        tp__cfg_error(ctx, value, "invalid target \"%s\": %s", text, err);
    free(text);
}

static const struct tp__cfg_directive target_keys[] = {
    TP__CFG_CUSTOM_KEY("target", parse_target, true),
    TP__CFG_UINT_KEY("weight", struct tp_conf_target, weight, 0, 65535, 100),
    TP__CFG_UINT_KEY("priority", struct tp_conf_target, priority, 0, 255, 0),
    TP__CFG_BOOL_KEY("backup", struct tp_conf_target, backup, false),
};

TP__CFG_TABLE_CHECK(target_keys);

static const struct tp__cfg_schema target_schema = {
    .what = "target",
    .keys = target_keys,
    .num_keys = TP_ARRAY_LEN(target_keys),
    .size = sizeof(struct tp_conf_target),
    .mark_offset = offsetof(struct tp_conf_target, mark),
};

static void parse_upstream_name(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                                void *obj)
{
    parse_name(ctx, key, value, &((struct tp_conf_upstream *)obj)->name);
}

static void parse_algorithm(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                            void *obj)
{
    /* Indexed by enum tp_balancer_algorithm. */
    static const char *const names[] = {"round-robin", "weighted-round-robin",
                                        "least-connections", "consistent-hashing",
                                        "random-two-choices"};
    struct tp_conf_upstream *u = obj;
    int i;

    if (tp__cfg_enum(ctx, key, value, names, TP_ARRAY_LEN(names), &i) == 0)
        u->algorithm = (enum tp_balancer_algorithm)i;
}

static void parse_targets(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                          void *obj)
{
    struct tp_conf_upstream *u = obj;

    u->targets = tp__cfg_list(ctx, key, value, &target_schema, &u->num_targets);
}

/* hash_on / hash_fallback: Kong's values; "consumer" waits for consumers. */
static void parse_hash_kind(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                            enum tp_hash_on *out)
{
    /* Indexed by enum tp_hash_on. */
    static const char *const names[] = {"none", "ip", "header", "cookie", "path", "query_arg"};
    int i;

    if (value->type == YAML_SCALAR_NODE &&
        strcmp((const char *)value->data.scalar.value, "consumer") == 0) {
        tp__cfg_error(ctx, value, "\"%s\": consumer is not supported yet (no consumers exist)",
                      key);
        return;
    }
    if (tp__cfg_enum(ctx, key, value, names, TP_ARRAY_LEN(names), &i) == 0)
        *out = (enum tp_hash_on)i;
}

static void parse_hash_on(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                          void *obj)
{
    parse_hash_kind(ctx, key, value, &((struct tp_conf_upstream *)obj)->hash_on);
}

static void parse_hash_fallback(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                                void *obj)
{
    parse_hash_kind(ctx, key, value, &((struct tp_conf_upstream *)obj)->hash_fallback);
}

enum hash_name_kind { HASH_NAME_HEADER, HASH_NAME_COOKIE, HASH_NAME_QUERY_ARG };

/* A hash_on_* name into a fixed buffer: a token for headers (lower-cased) and cookies
 * (RFC 6265 cookie-name), any text without '&', '=' or spaces for query arguments. */
static void parse_hash_name(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                            enum hash_name_kind kind, char out[TP_HASH_NAME_MAX])
{
    char *s = NULL;

    if (tp__cfg_string(ctx, key, value, &s) != 0)
        return;
    size_t len = strlen(s);
    bool ok = kind == HASH_NAME_QUERY_ARG
                  ? len > 0 && !bad_path_char(s, len) && !strpbrk(s, "&=")
                  : is_token(s);
    if (!ok)
        tp__cfg_error(ctx, value, "invalid %s name \"%s\" in \"%s\"",
                      kind == HASH_NAME_HEADER   ? "header"
                      : kind == HASH_NAME_COOKIE ? "cookie"
                                                 : "query argument",
                      s, key);
    else if (len >= TP_HASH_NAME_MAX)
        tp__cfg_error(ctx, value, "\"%s\" is longer than %d bytes", key, TP_HASH_NAME_MAX - 1);
    for (size_t i = 0; ok && len < TP_HASH_NAME_MAX && i <= len; i++)
        out[i] = kind == HASH_NAME_HEADER ? tp_lower(s[i]) : s[i];
    free(s);
}

static void parse_hash_on_header(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                                 void *obj)
{
    parse_hash_name(ctx, key, value, HASH_NAME_HEADER,
                    ((struct tp_conf_upstream *)obj)->hash_on_header);
}

static void parse_hash_fallback_header(struct tp__cfg_ctx *ctx, const char *key,
                                       yaml_node_t *value, void *obj)
{
    parse_hash_name(ctx, key, value, HASH_NAME_HEADER,
                    ((struct tp_conf_upstream *)obj)->hash_fallback_header);
}

static void parse_hash_on_cookie(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                                 void *obj)
{
    parse_hash_name(ctx, key, value, HASH_NAME_COOKIE,
                    ((struct tp_conf_upstream *)obj)->hash_on_cookie);
}

static void parse_hash_on_query_arg(struct tp__cfg_ctx *ctx, const char *key,
                                    yaml_node_t *value, void *obj)
{
    parse_hash_name(ctx, key, value, HASH_NAME_QUERY_ARG,
                    ((struct tp_conf_upstream *)obj)->hash_on_query_arg);
}

static void parse_hash_fallback_query_arg(struct tp__cfg_ctx *ctx, const char *key,
                                          yaml_node_t *value, void *obj)
{
    parse_hash_name(ctx, key, value, HASH_NAME_QUERY_ARG,
                    ((struct tp_conf_upstream *)obj)->hash_fallback_query_arg);
}

/* The name a hash kind needs: "" when missing; NULL when the kind takes no name. */
static const char *hash_name_needed(const struct tp_conf_upstream *u, enum tp_hash_on kind,
                                    bool fallback, const char **key)
{
    switch (kind) {
    case TP_HASH_HEADER:
        *key = fallback ? "hash_fallback_header" : "hash_on_header";
        return fallback ? u->hash_fallback_header : u->hash_on_header;
    case TP_HASH_COOKIE:
        *key = "hash_on_cookie";
        return u->hash_on_cookie;
    case TP_HASH_QUERY_ARG:
        *key = fallback ? "hash_fallback_query_arg" : "hash_on_query_arg";
        return fallback ? u->hash_fallback_query_arg : u->hash_on_query_arg;
    default:
        return NULL;
    }
}

/* Kong's rules between algorithm, hash_on, hash_fallback and the names they need. */
static void check_hashing(struct tp__cfg_ctx *ctx, yaml_node_t *node,
                          const struct tp_conf_upstream *u)
{
    static const char *const kinds[] = {"none", "ip", "header", "cookie", "path", "query_arg"};
    yaml_node_t *on = tp__cfg_lookup(ctx, node, "hash_on");
    yaml_node_t *fb = tp__cfg_lookup(ctx, node, "hash_fallback");
    const char *key = NULL, *name;

    if (u->hash_on != TP_HASH_NONE && u->algorithm != TP_LB_CONSISTENT_HASHING)
        tp__cfg_error(ctx, on, "\"hash_on\" needs \"algorithm: consistent-hashing\"");
    if (u->hash_on == TP_HASH_NONE && u->hash_fallback != TP_HASH_NONE)
        tp__cfg_error(ctx, fb, "\"hash_fallback\" needs \"hash_on\" to be set");
    else if (u->hash_fallback != TP_HASH_NONE && u->hash_fallback == u->hash_on &&
             (u->hash_on == TP_HASH_IP || u->hash_on == TP_HASH_PATH ||
              u->hash_on == TP_HASH_COOKIE))
        tp__cfg_error(ctx, fb, "\"hash_fallback\" must differ from \"hash_on\"");
    /* a name given but invalid has been reported already */
    if ((name = hash_name_needed(u, u->hash_on, false, &key)) && !name[0] &&
        !tp__cfg_lookup(ctx, node, key))
        tp__cfg_error(ctx, on, "\"%s\" is required when \"hash_on\" is %s", key,
                      kinds[u->hash_on]);
    if ((name = hash_name_needed(u, u->hash_fallback, true, &key)) && !name[0] &&
        !tp__cfg_lookup(ctx, node, key))
        tp__cfg_error(ctx, fb, "\"%s\" is required when \"hash_fallback\" is %s", key,
                      kinds[u->hash_fallback]);
    if (u->hash_on == u->hash_fallback && u->hash_on == TP_HASH_HEADER &&
        u->hash_on_header[0] && strcmp(u->hash_on_header, u->hash_fallback_header) == 0)
        tp__cfg_error(ctx, fb, "\"hash_fallback_header\" must differ from \"hash_on_header\"");
    if (u->hash_on == u->hash_fallback && u->hash_on == TP_HASH_QUERY_ARG &&
        u->hash_on_query_arg[0] && strcmp(u->hash_on_query_arg, u->hash_fallback_query_arg) == 0)
        tp__cfg_error(ctx, fb,
                      "\"hash_fallback_query_arg\" must differ from \"hash_on_query_arg\"");
}

/* The same host:port twice in one upstream is almost certainly a mistake. */
static void finish_upstream(struct tp__cfg_ctx *ctx, yaml_node_t *node, void *obj)
{
    struct tp_conf_upstream *u = obj;

    /* power of two choices is the default: it follows uneven load, round-robin does not */
    if (!tp__cfg_lookup(ctx, node, "algorithm"))
        u->algorithm = TP_LB_RANDOM_TWO_CHOICES;

    bool tiers = false;
    for (size_t i = 0; i < u->num_targets; i++) {
        if (u->targets[i].backup && u->targets[i].priority != 0)
            tp__cfg_error_at(ctx, u->targets[i].mark.line, u->targets[i].mark.column,
                             "a target takes \"backup\" or \"priority\", not both");
        if (u->targets[i].backup && u->targets[i].priority == 0)
            u->targets[i].priority = 1;
        tiers |= u->targets[i].priority != 0;
    }
    if (tiers && u->num_targets > 64)
        tp__cfg_error(ctx, node, "priority and backup targets: at most 64 targets per upstream");

    (void)node;
    for (size_t i = 1; i < u->num_targets; i++) {
        const struct tp_conf_target *t = &u->targets[i];
        for (size_t j = 0; t->host && j < i; j++) {
            const struct tp_conf_target *o = &u->targets[j];
            if (o->host && o->port == t->port && strcmp(o->host, t->host) == 0) {
                tp__cfg_error_at(ctx, t->mark.line, t->mark.column,
                                 "duplicate target \"%s\" port %u (first defined at %d:%d)",
                                 t->host, (unsigned)t->port, o->mark.line, o->mark.column);
                break;
            }
        }
    }
    check_hashing(ctx, node, u);
}

static const struct tp__cfg_directive upstream_keys[] = {
    TP__CFG_CUSTOM_KEY("name", parse_upstream_name, true),
    TP__CFG_CUSTOM_KEY("algorithm", parse_algorithm, false),
    TP__CFG_CUSTOM_KEY("targets", parse_targets, false),
    TP__CFG_UINT_KEY("keepalive_pool_size", struct tp_conf_upstream, keepalive_pool, 0, 10000,
                     TP_DEFAULT_KEEPALIVE_POOL),
    TP__CFG_UINT_KEY("keepalive_idle_timeout", struct tp_conf_upstream, keepalive_idle_ms, 1,
                     TP__CFG_MAX_MS, TP_DEFAULT_KEEPALIVE_IDLE_MS),
    TP__CFG_CUSTOM_KEY("hash_on", parse_hash_on, false),
    TP__CFG_CUSTOM_KEY("hash_fallback", parse_hash_fallback, false),
    TP__CFG_CUSTOM_KEY("hash_on_header", parse_hash_on_header, false),
    TP__CFG_CUSTOM_KEY("hash_fallback_header", parse_hash_fallback_header, false),
    TP__CFG_CUSTOM_KEY("hash_on_cookie", parse_hash_on_cookie, false),
    TP__CFG_CUSTOM_KEY("hash_on_query_arg", parse_hash_on_query_arg, false),
    TP__CFG_CUSTOM_KEY("hash_fallback_query_arg", parse_hash_fallback_query_arg, false),
    TP__CFG_CUSTOM_KEY("healthchecks", tp__cfg_parse_healthchecks, false),
    TP__CFG_UINT_KEY("failover_threshold", struct tp_conf_upstream, failover_threshold, 0, 100,
                     0),
    TP__CFG_CUSTOM_KEY("circuit_breaker", tp__cfg_parse_upstream_circuit, false),
};

TP__CFG_TABLE_CHECK(upstream_keys);

const struct tp__cfg_schema tp__cfg_upstream_schema = {
    .what = "upstream",
    .keys = upstream_keys,
    .num_keys = TP_ARRAY_LEN(upstream_keys),
    .size = sizeof(struct tp_conf_upstream),
    .mark_offset = offsetof(struct tp_conf_upstream, mark),
    .finish = finish_upstream,
};
