/*
 * cors — Cross-Origin Resource Sharing (Fetch standard §3.2, "CORS protocol"), Kong's `cors`
 * plugin (priority 2000, same config fields and defaults).
 *
 * Preflights (OPTIONS with Origin and Access-Control-Request-Method) are answered by the gateway
 * in the access phase with 200 and the Access-Control-* headers, unless preflight_continue
 * sends them upstream. Every other response of the route (upstream answers and local errors
 * such as a 401 of an auth plugin) gets Access-Control-Allow-Origin and friends in the
 * response_headers phase. A disallowed origin gets no Access-Control-* header at all: the
 * browser then blocks the response, the request itself is still proxied (CORS protects the
 * reader, not the server).
 *
 * Origins: "*" allows any; an entry made only of [A-Za-z0-9.:/-] is compared with the
 * request's Origin after normalisation (scheme://host[:port], default port dropped); any other
 * entry is a PCRE2 regex matched against the whole origin, or against its host alone when the
 * entry has no ':' (Kong's rule).
 */
#include "plugins/transform_util.h"
#include "turnpike/plugin.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CORS_MATCH_LIMIT 100000 /* bounds a hostile Origin against a backtracking regex */
#define CORS_DEFAULT_METHODS "GET,HEAD,PUT,PATCH,POST,DELETE,OPTIONS,TRACE,CONNECT"

static const char *const cors_methods[] = {"GET",    "HEAD",    "PUT",   "PATCH",  "POST",
                                           "DELETE", "OPTIONS", "TRACE", "CONNECT"};

struct cors_conf {
    char **origins; size_t num_origins;
    char **headers; size_t num_headers;
    char **exposed_headers; size_t num_exposed_headers;
    char **methods; size_t num_methods;
    bool methods_set;              /* `methods` given (else Kong's default list) */
    bool has_max_age;
    int64_t max_age;               /* seconds */
    bool credentials;
    bool preflight_continue;
    bool private_network;
    bool allow_origin_absent;
};

/* ------------------------------------------------------------------------------------------ */
/* Config                                                                                      */

/* `methods` written (null is not: the schema walker skips it) replaces Kong's default list,
 * even when empty. */
static void parse_methods(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                          void *obj)
{
    struct cors_conf *c = obj;
    tp__xf_list_free(c->methods, c->num_methods);
    c->methods = tp__cfg_string_list(ctx, key, value, NULL, &c->num_methods);
    c->methods_set = true;
}

static void parse_max_age(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                          void *obj)
{
    struct cors_conf *c = obj;
    c->has_max_age = tp__cfg_int(ctx, key, value, 0, INT32_MAX, &c->max_age) == 0;
}

static const struct tp__cfg_directive cors_keys[] = {
    TP__CFG_STRLIST_KEY("origins", struct cors_conf, origins, num_origins),
    TP__CFG_STRLIST_KEY("headers", struct cors_conf, headers, num_headers),
    TP__CFG_STRLIST_KEY("exposed_headers", struct cors_conf, exposed_headers,
                        num_exposed_headers),
    TP__CFG_CUSTOM_KEY("methods", parse_methods, false),
    TP__CFG_CUSTOM_KEY("max_age", parse_max_age, false),
    TP__CFG_BOOL_KEY("credentials", struct cors_conf, credentials, false),
    TP__CFG_BOOL_KEY("preflight_continue", struct cors_conf, preflight_continue, false),
    TP__CFG_BOOL_KEY("private_network", struct cors_conf, private_network, false),
    TP__CFG_BOOL_KEY("allow_origin_absent", struct cors_conf, allow_origin_absent, true),
};

TP__CFG_TABLE_CHECK(cors_keys);

static const struct tp__cfg_schema cors_schema = {
    .what = "cors config",
    .keys = cors_keys,
    .num_keys = TP_ARRAY_LEN(cors_keys),
    .size = sizeof(struct cors_conf),
    .mark_offset = -1,
};

static void cors_free_conf(void *conf)
{
    struct cors_conf *c = conf;
    tp__xf_list_free(c->methods, c->num_methods); /* the other lists are the schema's */
}

/* Kong: an entry with a byte outside [A-Za-z0-9.:/-] "may be a regex". */
static bool maybe_regex(const char *s)
{
    for (; *s; s++) {
        char c = *s;
        bool plain = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                     c == '.' || c == ':' || c == '/' || c == '-';
        if (!plain)
            return true;
    }
    return false;
}

static pcre2_code *compile_origin(const char *re, char *why, size_t whylen)
{
    int code = 0;
    PCRE2_SIZE off = 0;
    /* anchored at both ends: "https://.*\.example\.com" must not match "https://evil.com/x" */
    pcre2_code *p = pcre2_compile((PCRE2_SPTR)re, PCRE2_ZERO_TERMINATED,
                                  PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_NEVER_UTF, &code,
                                  &off, NULL);
    if (!p) {
        PCRE2_UCHAR msg[128];
        pcre2_get_error_message(code, msg, sizeof(msg));
        snprintf(why, whylen, "regex error at offset %zu: %s", (size_t)off, (const char *)msg);
    }
    return p;
}

static void check_names(struct tp_plugin_build *b, char **list, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] && !tp__xf_is_token(list[i], strlen(list[i])))
            tp_plugin_build_error(b, tp__xf_cfg_item(b->cfg, b->node, NULL, key, i),
                                  "\"%s\" is not a valid header name", list[i]);
}

static int cors_validate(struct tp_plugin_build *b, void *conf)
{
    struct cors_conf *c = conf;
    int before = b->num_errors;
    char why[192];

    for (size_t i = 0; i < c->num_origins; i++) {
        const char *o = c->origins[i];
        if (!o || strcmp(o, "*") == 0 || !maybe_regex(o))
            continue;
        pcre2_code *re = compile_origin(o, why, sizeof(why));
        if (!re)
            tp_plugin_build_error(b, tp__xf_cfg_item(b->cfg, b->node, NULL, "origins", i),
                                  "origin \"%s\" is not a valid regex: %s", o, why);
        pcre2_code_free(re);
    }
    for (size_t i = 0; i < c->num_methods; i++) {
        bool known = false;
        for (size_t k = 0; c->methods[i] && k < TP_ARRAY_LEN(cors_methods); k++)
            known = known || strcmp(c->methods[i], cors_methods[k]) == 0;
        if (c->methods[i] && !known)
            tp_plugin_build_error(b, tp__xf_cfg_item(b->cfg, b->node, NULL, "methods", i),
                                  "method \"%s\" must be one of GET, HEAD, PUT, PATCH, POST, "
                                  "DELETE, OPTIONS, TRACE, CONNECT", c->methods[i]);
    }
    check_names(b, c->headers, c->num_headers, "headers");
    check_names(b, c->exposed_headers, c->num_exposed_headers, "exposed_headers");
    return b->num_errors == before ? 0 : -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Origins                                                                                     */

struct origin_parts {
    struct tp_slice scheme, host, port; /* scheme empty when there is no "://" */
};

/* Split "scheme://host[:port][/...]" as Kong's socket.url does for an Origin. */
static void origin_split(struct tp_slice o, struct origin_parts *p)
{
    memset(p, 0, sizeof(*p));
    const char *sep = NULL;
    for (size_t i = 0; i + 2 < o.len; i++) {
        if (o.ptr[i] == ':' && o.ptr[i + 1] == '/' && o.ptr[i + 2] == '/') {
            sep = o.ptr + i;
            break;
        }
    }
    if (!sep) {
        p->host = o; /* "null" and other opaque origins */
        return;
    }
    p->scheme = (struct tp_slice){o.ptr, (size_t)(sep - o.ptr)};
    const char *s = sep + 3, *end = o.ptr + o.len;
    const char *stop = s;
    while (stop < end && *stop != '/' && *stop != '?' && *stop != '#')
        stop++;
    const char *colon = NULL;
    const char *from = s;
    if (s < stop && *s == '[') { /* IPv6 literal: the port colon comes after ']' */
        const char *rb = memchr(s, ']', (size_t)(stop - s));
        from = rb ? rb : stop;
    }
    for (const char *q = from; q < stop; q++)
        if (*q == ':')
            colon = q;
    p->host = (struct tp_slice){s, (size_t)((colon ? colon : stop) - s)};
    if (colon)
        p->port = (struct tp_slice){colon + 1, (size_t)(stop - colon - 1)};
}

/* Normalised origin "scheme://host[:port]" (default ports dropped) into buf (>= o.len + 1
 * bytes); returns its length. */
static size_t origin_normalise(struct tp_slice o, const struct origin_parts *p, char *buf)
{
    size_t n = 0;
    if (!p->scheme.ptr) {
        memcpy(buf, o.ptr, o.len);
        return o.len;
    }
    bool dflt = (TP_SLICE_IEQ(p->scheme, "http") && TP_SLICE_IEQ(p->port, "80")) ||
                (TP_SLICE_IEQ(p->scheme, "https") && TP_SLICE_IEQ(p->port, "443"));
    memcpy(buf + n, p->scheme.ptr, p->scheme.len);
    n += p->scheme.len;
    memcpy(buf + n, "://", 3);
    n += 3;
    memcpy(buf + n, p->host.ptr, p->host.len);
    n += p->host.len;
    if (p->port.len && !dflt) {
        buf[n++] = ':';
        memcpy(buf + n, p->port.ptr, p->port.len);
        n += p->port.len;
    }
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* Instance                                                                                    */

struct cors_origin {
    char *domain;        /* normalised, for plain entries */
    size_t len;
    pcre2_code *re;      /* regex entries */
    bool by_host;        /* regex without ':' is matched against the host only */
};

struct cors_inst {
    const struct cors_conf *conf;
    bool allow_all;
    struct cors_origin *origins;
    size_t num_origins;
    pcre2_match_context *mctx;
    char *allow_headers;  /* joined with ",", or NULL: reflect Access-Control-Request-Headers */
    char *expose_headers; /* or NULL */
    char *methods;
    char max_age[24];
};

static void cors_destroy(void *p)
{
    struct cors_inst *in = p;
    if (!in)
        return;
    for (size_t i = 0; i < in->num_origins; i++) {
        free(in->origins[i].domain);
        pcre2_code_free(in->origins[i].re);
    }
    free(in->origins);
    pcre2_match_context_free(in->mctx);
    free(in->allow_headers);
    free(in->expose_headers);
    free(in->methods);
    free(in);
}

/* list joined with ",", or NULL when empty (or on ENOMEM: *oom set). */
static char *join(char **list, size_t n, bool *oom)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += (list[i] ? strlen(list[i]) : 0) + 1;
    if (len == 0)
        return NULL;
    char *s = malloc(len);
    if (!s) {
        *oom = true;
        return NULL;
    }
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (!list[i])
            continue;
        if (at)
            s[at++] = ',';
        size_t l = strlen(list[i]);
        memcpy(s + at, list[i], l);
        at += l;
    }
    s[at] = '\0';
    return s;
}

static int compile_origins(struct tp_plugin_build *b, const struct cors_conf *c,
                           struct cors_inst *in)
{
    char why[192];
    in->origins = calloc(c->num_origins ? c->num_origins : 1, sizeof(*in->origins));
    if (!in->origins)
        return tp_plugin_build_error(b, NULL, "out of memory");
    for (size_t i = 0; i < c->num_origins; i++) {
        const char *o = c->origins[i];
        struct cors_origin *co = &in->origins[in->num_origins];
        if (!o)
            continue;
        if (strcmp(o, "*") == 0) {
            in->allow_all = true;
            continue;
        }
        if (maybe_regex(o)) {
            if (!(co->re = compile_origin(o, why, sizeof(why))))
                return tp_plugin_build_error(b, NULL, "origin \"%s\": %s", o, why);
            (void)pcre2_jit_compile(co->re, PCRE2_JIT_COMPLETE); /* interpreter if JIT fails */
            co->by_host = !strchr(o, ':');
        } else {
            struct tp_slice s = tp_slice_cstr(o);
            struct origin_parts parts;
            origin_split(s, &parts);
            if (!(co->domain = malloc(s.len + 1)))
                return tp_plugin_build_error(b, NULL, "out of memory");
            co->len = origin_normalise(s, &parts, co->domain);
        }
        in->num_origins++;
    }
    if (c->num_origins == 0)
        in->allow_all = true; /* Kong: no origins = any origin */
    return 0;
}

static int cors_compile(struct tp_plugin_build *b, const void *conf, void **inst)
{
    const struct cors_conf *c = conf;
    struct cors_inst *in = calloc(1, sizeof(*in));
    bool oom = false;
    if (!in)
        return tp_plugin_build_error(b, NULL, "out of memory");
    in->conf = c;
    if (compile_origins(b, c, in) != 0)
        goto out_free;
    in->mctx = pcre2_match_context_create(NULL);
    if (!in->mctx) {
        tp_plugin_build_error(b, NULL, "out of memory");
        goto out_free;
    }
    pcre2_set_match_limit(in->mctx, CORS_MATCH_LIMIT);
    in->allow_headers = join(c->headers, c->num_headers, &oom);
    in->expose_headers = join(c->exposed_headers, c->num_exposed_headers, &oom);
    in->methods = c->methods_set ? join(c->methods, c->num_methods, &oom) : NULL;
    if (!in->methods && !oom)
        in->methods = strdup(CORS_DEFAULT_METHODS);
    if (oom || !in->methods) {
        tp_plugin_build_error(b, NULL, "out of memory");
        goto out_free;
    }
    if (c->has_max_age)
        in->max_age[tp_fmt_u64(in->max_age, (uint64_t)c->max_age)] = '\0';
    *inst = in;
    return 0;

out_free:
    cors_destroy(in);
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Requests                                                                                    */

/* What the access phase saw, for the response phase (tp_plugin_data). The Origin is copied:
 * the request head is gone by the time the response comes. */
struct cors_req {
    struct tp_slice origin;
    bool has_origin;
    bool preflight; /* handled (or passed on) in access: no response-phase headers, as Kong */
};

static void match_data_free(void *md)
{
    pcre2_match_data_free(md);
}

static pcre2_match_data *match_data(struct tp_plugin_ctx *ctx)
{
    pcre2_match_data *md = tp_plugin_worker_get(ctx, "cors:match_data");
    if (md)
        return md;
    md = pcre2_match_data_create(1, NULL);
    if (md && tp_plugin_worker_put(ctx, "cors:match_data", md, match_data_free) != 0) {
        pcre2_match_data_free(md);
        return NULL;
    }
    return md;
}

/*
 * The Access-Control-Allow-Origin value for the request's origin, or a zero slice when the
 * origin is not allowed. "*" when any origin is allowed and credentials are off.
 */
static struct tp_slice allowed_origin(struct tp_plugin_ctx *ctx, const struct cors_inst *in,
                                      bool has_origin, struct tp_slice origin)
{
    if (in->allow_all) {
        /* "*" is not valid with credentials (Fetch §3.2.5): reflect the origin, as Kong does */
        if (in->conf->credentials && has_origin)
            return origin;
        return TP_SLICE_LIT("*");
    }
    if (!has_origin)
        return (struct tp_slice){NULL, 0};
    struct origin_parts parts;
    origin_split(origin, &parts);
    char *norm = tp_plugin_alloc(ctx, origin.len + 1);
    if (!norm)
        return (struct tp_slice){NULL, 0};
    struct tp_slice domain = {norm, origin_normalise(origin, &parts, norm)};
    for (size_t i = 0; i < in->num_origins; i++) {
        const struct cors_origin *co = &in->origins[i];
        if (!co->re) {
            if (tp_slice_eq_nocase(domain, co->domain, co->len))
                return domain;
            continue;
        }
        pcre2_match_data *md = match_data(ctx);
        struct tp_slice subject = co->by_host ? parts.host : domain;
        if (md && pcre2_match(co->re, (PCRE2_SPTR)subject.ptr, subject.len, 0, 0, md,
                              in->mctx) >= 0)
            return domain;
    }
    return (struct tp_slice){NULL, 0};
}

static enum tp_plugin_status cors_preflight(struct tp_plugin_ctx *ctx, const struct cors_inst *in,
                                            struct tp_slice origin)
{
    const struct cors_conf *c = in->conf;
    struct tp_slice acao = allowed_origin(ctx, in, true, origin);
    struct tp_slice v;
    int rc = 0;

    tp_plugin_respond_body(ctx, 200, NULL, "", 0);
    if (!in->allow_all || c->credentials)
        rc |= tp_plugin_respond_header(ctx, "Vary", TP_SLICE_LIT("Origin"));
    if (!acao.ptr)
        return rc ? TP_PLUGIN_ERROR : TP_PLUGIN_RESPOND; /* the browser blocks the request */
    rc |= tp_plugin_respond_header(ctx, "Access-Control-Allow-Origin", acao);
    if (c->credentials)
        rc |= tp_plugin_respond_header(ctx, "Access-Control-Allow-Credentials",
                                       TP_SLICE_LIT("true"));
    if (in->allow_headers)
        rc |= tp_plugin_respond_header(ctx, "Access-Control-Allow-Headers",
                                       tp_slice_cstr(in->allow_headers));
    else if (tp_plugin_header(ctx, "Access-Control-Request-Headers", 0, &v))
        rc |= tp_plugin_respond_header(ctx, "Access-Control-Allow-Headers", v);
    rc |= tp_plugin_respond_header(ctx, "Access-Control-Allow-Methods",
                                   tp_slice_cstr(in->methods));
    if (in->max_age[0])
        rc |= tp_plugin_respond_header(ctx, "Access-Control-Max-Age", tp_slice_cstr(in->max_age));
    /* Private Network Access: answer only the question that was asked */
    if (c->private_network &&
        tp_plugin_header(ctx, "Access-Control-Request-Private-Network", 0, &v) &&
        TP_SLICE_IEQ(v, "true"))
        rc |= tp_plugin_respond_header(ctx, "Access-Control-Allow-Private-Network",
                                       TP_SLICE_LIT("true"));
    return rc ? TP_PLUGIN_ERROR : TP_PLUGIN_RESPOND;
}

static enum tp_plugin_status cors_access(struct tp_plugin_ctx *ctx, const void *inst)
{
    const struct cors_inst *in = inst;
    struct tp_slice origin = {NULL, 0}, acrm;
    struct cors_req *r = tp_plugin_alloc(ctx, sizeof(*r));

    if (!r)
        return TP_PLUGIN_ERROR;
    memset(r, 0, sizeof(*r));
    *tp_plugin_data(ctx) = r;
    r->has_origin = tp_plugin_header(ctx, "Origin", 0, &origin);
    if (r->has_origin) {
        char *copy = tp_plugin_alloc(ctx, origin.len);
        if (!copy)
            return TP_PLUGIN_ERROR;
        memcpy(copy, origin.ptr, origin.len);
        r->origin = (struct tp_slice){copy, origin.len};
    }
    if (!r->has_origin || !TP_SLICE_IEQ(tp_plugin_method(ctx), "OPTIONS") ||
        !tp_plugin_header(ctx, "Access-Control-Request-Method", 0, &acrm))
        return TP_PLUGIN_CONTINUE;
    r->preflight = true;
    if (in->conf->preflight_continue)
        return TP_PLUGIN_CONTINUE; /* the upstream answers the preflight itself */
    return cors_preflight(ctx, in, r->origin);
}

/* True when a Vary value of the response already names Origin (or is "*"). */
static bool vary_has_origin(struct tp_plugin_ctx *ctx)
{
    struct tp_slice v;
    for (size_t i = 0; tp_plugin_resp_header(ctx, "Vary", i, &v); i++) {
        size_t s = 0;
        while (s < v.len) {
            size_t e = s;
            while (e < v.len && v.ptr[e] != ',')
                e++;
            struct tp_slice tok = {v.ptr + s, e - s};
            while (tok.len && (tok.ptr[0] == ' ' || tok.ptr[0] == '\t'))
                tok.ptr++, tok.len--;
            while (tok.len && (tok.ptr[tok.len - 1] == ' ' || tok.ptr[tok.len - 1] == '\t'))
                tok.len--;
            if (TP_SLICE_IEQ(tok, "Origin") || TP_SLICE_IEQ(tok, "*"))
                return true;
            s = e + 1;
        }
    }
    return false;
}

static enum tp_plugin_status cors_response_headers(struct tp_plugin_ctx *ctx, const void *inst)
{
    const struct cors_inst *in = inst;
    const struct cors_conf *c = in->conf;
    struct tp_slice origin = {NULL, 0};
    int rc = 0;

    const struct cors_req *r = *tp_plugin_data(ctx);
    bool has_origin;
    if (r) {
        if (r->preflight)
            return TP_PLUGIN_CONTINUE;
        has_origin = r->has_origin;
        origin = r->origin;
    } else {
        /* answered before our access hook ran (a rewrite-phase plugin) */
        has_origin = tp_plugin_header(ctx, "Origin", 0, &origin);
    }
    if (!has_origin && !c->allow_origin_absent)
        return TP_PLUGIN_CONTINUE;
    struct tp_slice acao = allowed_origin(ctx, in, has_origin, origin);
    /* the answer depends on Origin: caches must key on it (RFC 9110 §12.5.5) */
    if ((!in->allow_all || (c->credentials && has_origin)) && !vary_has_origin(ctx))
        rc |= tp_plugin_resp_add_header(ctx, "Vary", TP_SLICE_LIT("Origin"));
    if (!acao.ptr) {
        /* not allowed: no CORS header at all, also none the upstream may have set */
        rc |= tp_plugin_resp_remove_header(ctx, "Access-Control-Allow-Origin");
        return rc ? TP_PLUGIN_ERROR : TP_PLUGIN_CONTINUE;
    }
    rc |= tp_plugin_resp_set_header(ctx, "Access-Control-Allow-Origin", acao);
    if (c->credentials && (!in->allow_all || has_origin))
        rc |= tp_plugin_resp_set_header(ctx, "Access-Control-Allow-Credentials",
                                        TP_SLICE_LIT("true"));
    if (in->expose_headers)
        rc |= tp_plugin_resp_set_header(ctx, "Access-Control-Expose-Headers",
                                        tp_slice_cstr(in->expose_headers));
    return rc ? TP_PLUGIN_ERROR : TP_PLUGIN_CONTINUE;
}

const struct tp_plugin tp_plugin_cors = {
    .name = "cors",
    .priority = 2000,
    .schema = &cors_schema,
    .conf_size = sizeof(struct cors_conf),
    .validate = cors_validate,
    .free_conf = cors_free_conf,
    .compile = cors_compile,
    .destroy = cors_destroy,
    .access = cors_access,
    .response_headers = cors_response_headers,
};
