/*
 * request-termination — Kong's plugin of that name (priority 2): answer every request of the
 * route (service, consumer...) from the gateway; nothing goes upstream.
 *
 *   message            {"message": ..., "request_id": ...} (the gateway's JSON error shape);
 *                      without it, Kong's default text for 401/404/405/500/502/503, or an empty
 *                      body for other statuses
 *   body+content_type  that body verbatim
 *   echo               a JSON copy of the request (method, path, query, headers, body) and of
 *                      the matched route and service, as Kong's echo (for debugging clients)
 *   trigger            a header or query argument name: terminate only requests that carry it
 */
#include "plugins/transform_util.h"
#include "turnpike/plugin.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define ECHO_MAX (TP_PLUGIN_BODY_MAX * 2) /* an echo of a full-size body, escaped */

struct rtm_conf {
    uint32_t status_code;
    char *message;
    char *content_type;
    char *body;
    bool echo;
    char *trigger;
};

/* ------------------------------------------------------------------------------------------ */
/* Config                                                                                      */

static const struct tp__cfg_directive rtm_keys[] = {
    /* Kong allows 100..599; an interim 1xx cannot end a request (RFC 9110 §15.2) */
    TP__CFG_UINT_KEY("status_code", struct rtm_conf, status_code, 200, 599, 503),
    TP__CFG_STRING_KEY("message", struct rtm_conf, message, NULL),
    TP__CFG_STRING_KEY("content_type", struct rtm_conf, content_type, NULL),
    TP__CFG_STRING_KEY("body", struct rtm_conf, body, NULL),
    TP__CFG_BOOL_KEY("echo", struct rtm_conf, echo, false),
    TP__CFG_STRING_KEY("trigger", struct rtm_conf, trigger, NULL),
};

TP__CFG_TABLE_CHECK(rtm_keys);

static const struct tp__cfg_schema rtm_schema = {
    .what = "request-termination config",
    .keys = rtm_keys,
    .num_keys = TP_ARRAY_LEN(rtm_keys),
    .size = sizeof(struct rtm_conf),
    .mark_offset = -1,
};

static const void *key_node(struct tp_plugin_build *b, const char *key)
{
    return b->cfg && b->node ? tp__cfg_lookup(b->cfg, b->node, key) : NULL;
}

/* Kong's custom_validator, plus what HTTP requires of the answer. */
static int rtm_validate(struct tp_plugin_build *b, void *conf)
{
    struct rtm_conf *c = conf;
    int before = b->num_errors;

    if (c->message && (c->content_type || c->body))
        tp_plugin_build_error(b, key_node(b, "message"),
                              "message cannot be used with content_type or body");
    if (c->content_type && !c->body)
        tp_plugin_build_error(b, key_node(b, "content_type"), "content_type requires a body");
    if (c->echo && (c->content_type || c->body))
        tp_plugin_build_error(b, key_node(b, "echo"),
                              "echo cannot be used with content_type and body");
    if (c->content_type && !tp__xf_is_field_value(c->content_type, strlen(c->content_type)))
        tp_plugin_build_error(b, key_node(b, "content_type"),
                              "content_type has a control character");
    if (c->trigger && !tp__xf_is_token(c->trigger, strlen(c->trigger)))
        tp_plugin_build_error(b, key_node(b, "trigger"),
                              "trigger \"%s\" is not a valid header name", c->trigger);
    if ((c->status_code == 204 || c->status_code == 304) && (c->message || c->body || c->echo))
        tp_plugin_build_error(b, key_node(b, "status_code"),
                              "status_code %u cannot carry a body (message, body or echo)",
                              (unsigned)c->status_code);
    return b->num_errors == before ? 0 : -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Echo                                                                                        */

/* Kong's DEFAULT_RESPONSE texts. */
static const char *default_message(unsigned status)
{
    switch (status) {
    case 401: return "Unauthorized";
    case 404: return "Not found";
    case 405: return "Method not allowed";
    case 500: return "An unexpected error occurred";
    case 502: return "Bad Gateway";
    case 503: return "Service unavailable";
    default: return NULL;
    }
}

static int put_str(struct tp_strbuf *b, struct tp_slice s)
{
    return tp__xf_json_string(b, s.ptr, s.len);
}

/* "name": value(s) with repeated headers as an array (Kong's get_headers), names lower-case. */
static int echo_headers(struct tp_strbuf *b, struct tp_plugin_ctx *ctx)
{
    size_t n = tp_plugin_header_count(ctx);
    int rc = tp_strbuf_append(b, "{", 1);
    bool first = true;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct tp_slice name, value, other, ov;
        tp_plugin_header_at(ctx, i, &name, &value);
        size_t count = 0;
        bool seen = false;
        for (size_t k = 0; k < n; k++) {
            tp_plugin_header_at(ctx, k, &other, &ov);
            if (tp_slice_eq_nocase(other, name.ptr, name.len)) {
                seen = seen || k < i;
                count++;
            }
        }
        if (seen)
            continue; /* written with its first occurrence */
        char *lower = tp_plugin_alloc(ctx, name.len);
        if (!lower)
            return TP_ENOMEM;
        for (size_t k = 0; k < name.len; k++)
            lower[k] = tp_lower(name.ptr[k]);
        rc = first ? 0 : tp_strbuf_append(b, ",", 1);
        rc = rc ? rc : put_str(b, (struct tp_slice){lower, name.len});
        rc = rc ? rc : tp_strbuf_append(b, ":", 1);
        if (count == 1) {
            rc = rc ? rc : put_str(b, value);
        } else {
            rc = rc ? rc : tp_strbuf_append(b, "[", 1);
            for (size_t k = i, m = 0; rc == 0 && k < n; k++) {
                tp_plugin_header_at(ctx, k, &other, &ov);
                if (!tp_slice_eq_nocase(other, name.ptr, name.len))
                    continue;
                rc = m++ ? tp_strbuf_append(b, ",", 1) : 0;
                rc = rc ? rc : put_str(b, ov);
            }
            rc = rc ? rc : tp_strbuf_append(b, "]", 1);
        }
        first = false;
    }
    return rc ? rc : tp_strbuf_append(b, "}", 1);
}

/* A decoded form-encoded value as a JSON string (true without '=', as Kong's get_query). */
static int put_param_value(struct tp_strbuf *b, const struct tp__xf_param *p)
{
    if (!p->has_value)
        return tp_strbuf_puts(b, "true");
    struct tp_strbuf d = {.max = p->value.len + 1};
    int rc = tp__xf_url_decode(p->value.ptr, p->value.len, true, &d);
    rc = rc ? rc : put_str(b, (struct tp_slice){d.ptr ? d.ptr : "", d.len});
    tp_strbuf_free(&d);
    return rc;
}

/* A parameter for grouping by name: its decoded name (in a shared buffer) and position. */
struct echo_param {
    const char *base;
    size_t off, len, idx;
};

static int name_cmp(const struct echo_param *x, const struct echo_param *y)
{
    int c = TP_MIN(x->len, y->len) ? memcmp(x->base + x->off, y->base + y->off,
                                            TP_MIN(x->len, y->len))
                                   : 0;
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* By name, then by position: a repeated name keeps the order of its values. */
static int param_cmp(const void *a, const void *b)
{
    const struct echo_param *x = a, *y = b;
    int c = name_cmp(x, y);
    return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

/*
 * {"name": value or [values]} of a form-encoded string (query or body), names in byte order.
 * Grouping sorts the parameters: a body of a million parameters costs O(n log n), not O(n^2).
 */
static int echo_params(struct tp_strbuf *b, struct tp_slice s)
{
    struct tp__xf_params p = {0};
    struct tp_strbuf names = {.max = s.len + 1};
    struct echo_param *v = NULL;
    int rc = tp__xf_params_parse(&p, s.ptr, s.len);

    if (rc == 0 && p.n && !(v = calloc(p.n, sizeof(*v))))
        rc = TP_ENOMEM;
    for (size_t i = 0; rc == 0 && i < p.n; i++) {
        v[i].off = names.len;
        v[i].idx = i;
        rc = tp__xf_url_decode(p.v[i].name.ptr, p.v[i].name.len, true, &names);
        v[i].len = names.len - v[i].off;
    }
    for (size_t i = 0; rc == 0 && i < p.n; i++)
        v[i].base = names.ptr ? names.ptr : ""; /* final: the buffer no longer grows */
    if (rc == 0 && p.n)
        qsort(v, p.n, sizeof(*v), param_cmp);
    rc = rc ? rc : tp_strbuf_append(b, "{", 1);
    for (size_t i = 0, j; rc == 0 && i < p.n; i = j) {
        for (j = i + 1; j < p.n && name_cmp(&v[i], &v[j]) == 0; j++)
            ;
        bool many = j - i > 1;
        rc = i ? tp_strbuf_append(b, ",", 1) : 0;
        rc = rc ? rc : put_str(b, (struct tp_slice){v[i].base + v[i].off, v[i].len});
        rc = rc ? rc : tp_strbuf_append(b, many ? ":[" : ":", many ? 2 : 1);
        for (size_t k = i; rc == 0 && k < j; k++) {
            rc = k > i ? tp_strbuf_append(b, ",", 1) : 0;
            rc = rc ? rc : put_param_value(b, &p.v[v[k].idx]);
        }
        rc = rc || !many ? rc : tp_strbuf_append(b, "]", 1);
    }
    free(v);
    tp_strbuf_free(&names);
    tp__xf_params_free(&p);
    return rc ? rc : tp_strbuf_append(b, "}", 1);
}

/* The request's Host without its port. */
static struct tp_slice request_host(struct tp_plugin_ctx *ctx)
{
    struct tp_slice h;
    if (!tp_plugin_header(ctx, "Host", 0, &h))
        return (struct tp_slice){"", 0};
    size_t end = h.len;
    if (h.len && h.ptr[0] == '[') {
        const char *rb = memchr(h.ptr, ']', h.len);
        end = rb ? (size_t)(rb - h.ptr) + 1 : h.len;
    } else {
        const char *colon = memchr(h.ptr, ':', h.len);
        end = colon ? (size_t)(colon - h.ptr) : h.len;
    }
    return (struct tp_slice){h.ptr, end};
}

/* "body" (parsed JSON or form) and "raw_body" members of the echoed request. */
static int echo_body(struct tp_strbuf *b, enum tp__xf_media m, const struct tp_plugin_body *body)
{
    int rc = 0;
    struct tp_slice raw = {body->ptr ? body->ptr : "", body->len};
    if (m == TP_XF_MEDIA_JSON) {
        json_t *doc = json_loadb(raw.ptr, raw.len, JSON_DECODE_ANY, NULL);
        if (doc) {
            rc = tp_strbuf_puts(b, ",\"body\":");
            rc = rc ? rc : tp_strbuf_append(b, raw.ptr, raw.len); /* already valid JSON */
        }
        json_decref(doc);
    } else if (m == TP_XF_MEDIA_FORM) {
        rc = tp_strbuf_puts(b, ",\"body\":");
        rc = rc ? rc : echo_params(b, raw);
    }
    rc = rc ? rc : tp_strbuf_puts(b, ",\"raw_body\":");
    return rc ? rc : put_str(b, raw);
}

/*
 * The echo is made in two halves around the body: the head (message and the request up to its
 * headers) and the tail (matched route and service). Both are written in the access phase,
 * while the request head is at hand; the body, when there is one, comes later.
 */
struct echo {
    struct tp_slice head, tail;
    enum tp__xf_media media;
};

static int echo_head(struct tp_strbuf *b, struct tp_plugin_ctx *ctx, const struct rtm_conf *c)
{
    const char *msg = c->message ? c->message : default_message(c->status_code);
    int rc = tp_strbuf_puts(b, "{");
    if (msg) {
        rc = rc ? rc : tp_strbuf_puts(b, "\"message\":");
        rc = rc ? rc : put_str(b, tp_slice_cstr(msg));
        rc = rc ? rc : tp_strbuf_puts(b, ",");
    }
    rc = rc ? rc : tp_strbuf_puts(b, "\"request\":{\"method\":");
    rc = rc ? rc : put_str(b, tp_plugin_method(ctx));
    rc = rc ? rc : tp_strbuf_puts(b, ",\"host\":");
    rc = rc ? rc : put_str(b, request_host(ctx));
    rc = rc ? rc : tp_strbuf_puts(b, ",\"path\":");
    rc = rc ? rc : put_str(b, tp_plugin_path(ctx));
    rc = rc ? rc : tp_strbuf_puts(b, ",\"query\":");
    rc = rc ? rc : echo_params(b, tp_plugin_query(ctx));
    rc = rc ? rc : tp_strbuf_puts(b, ",\"headers\":");
    return rc ? rc : echo_headers(b, ctx);
}

static int echo_tail(struct tp_strbuf *b, struct tp_plugin_ctx *ctx)
{
    int rc = tp_strbuf_puts(b, "},\"matched_route\":{\"name\":");
    rc = rc ? rc : put_str(b, tp_slice_cstr(tp_plugin_route_name(ctx)));
    rc = rc ? rc : tp_strbuf_puts(b, "},\"matched_service\":{\"name\":");
    rc = rc ? rc : put_str(b, tp_slice_cstr(tp_plugin_service_name(ctx)));
    rc = rc ? rc : tp_strbuf_puts(b, "},\"request_id\":");
    rc = rc ? rc : put_str(b, tp_slice_cstr(tp_plugin_request_id(ctx)));
    return rc ? rc : tp_strbuf_puts(b, "}\n");
}

/* Answer with head + body members + tail. */
static enum tp_plugin_status respond_echo(struct tp_plugin_ctx *ctx, const struct rtm_conf *c,
                                          const struct echo *e, const struct tp_plugin_body *body)
{
    struct tp_strbuf b = {.max = ECHO_MAX};
    int rc = tp_strbuf_append(&b, e->head.ptr, e->head.len);
    if (body)
        rc = rc ? rc : echo_body(&b, e->media, body);
    rc = rc ? rc : tp_strbuf_append(&b, e->tail.ptr, e->tail.len);
    if (rc == 0)
        tp_plugin_respond_body(ctx, (int)c->status_code, "application/json", b.ptr, b.len);
    tp_strbuf_free(&b);
    return rc ? TP_PLUGIN_ERROR : TP_PLUGIN_RESPOND;
}

/* A copy of a buffer in the request's arena. */
static struct tp_slice arena_copy(struct tp_plugin_ctx *ctx, const struct tp_strbuf *b)
{
    char *p = tp_plugin_alloc(ctx, b->len);
    if (p && b->len)
        memcpy(p, b->ptr, b->len);
    return (struct tp_slice){p, p ? b->len : 0};
}

static enum tp_plugin_status start_echo(struct tp_plugin_ctx *ctx, const struct rtm_conf *c)
{
    struct tp_strbuf head = {.max = ECHO_MAX}, tail = {.max = 4096};
    struct echo *e = tp_plugin_alloc(ctx, sizeof(*e));
    struct tp_slice ct;
    enum tp_plugin_status st = TP_PLUGIN_ERROR;

    if (!e || echo_head(&head, ctx, c) != 0 || echo_tail(&tail, ctx) != 0)
        goto out;
    e->media = tp_plugin_header(ctx, "Content-Type", 0, &ct) ? tp__xf_media_type(ct)
                                                              : TP_XF_MEDIA_OTHER;
    if (tp_plugin_content_length(ctx) == 0) {
        e->head = (struct tp_slice){head.ptr, head.len};
        e->tail = (struct tp_slice){tail.ptr, tail.len};
        st = respond_echo(ctx, c, e, NULL);
        goto out;
    }
    e->head = arena_copy(ctx, &head);
    e->tail = arena_copy(ctx, &tail);
    if (!e->head.ptr || !e->tail.ptr)
        goto out;
    *tp_plugin_data(ctx) = e; /* answered from request_body, with the body */
    tp_plugin_want_request_body(ctx);
    st = TP_PLUGIN_CONTINUE;
out:
    tp_strbuf_free(&head);
    tp_strbuf_free(&tail);
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* Hooks                                                                                       */

static bool triggered(struct tp_plugin_ctx *ctx, const char *trigger)
{
    struct tp_slice v;
    return tp_plugin_header(ctx, trigger, 0, &v) ||
           (tp_plugin_query(ctx).len && tp_plugin_query_arg(ctx, trigger, &v));
}

static enum tp_plugin_status rtm_access(struct tp_plugin_ctx *ctx, const void *inst)
{
    const struct rtm_conf *c = inst;
    int status = (int)c->status_code;

    if (c->trigger && !triggered(ctx, c->trigger))
        return TP_PLUGIN_CONTINUE;
    if (c->echo)
        return start_echo(ctx, c);
    if (c->body) {
        tp_plugin_respond_body(ctx, status, c->content_type, c->body, strlen(c->body));
        return TP_PLUGIN_RESPOND;
    }
    const char *msg = c->message ? c->message : default_message(c->status_code);
    if (msg && status != 204 && status != 304)
        tp_plugin_respond(ctx, status, msg);
    else
        tp_plugin_respond_body(ctx, status, NULL, "", 0);
    return TP_PLUGIN_RESPOND;
}

static enum tp_plugin_status rtm_request_body(struct tp_plugin_ctx *ctx, const void *inst,
                                              struct tp_plugin_body *body)
{
    const struct echo *e = *tp_plugin_data(ctx);
    if (!e)
        return TP_PLUGIN_CONTINUE;
    return respond_echo(ctx, inst, e, body);
}

const struct tp_plugin tp_plugin_request_termination = {
    .name = "request-termination",
    .priority = 2,
    .schema = &rtm_schema,
    .conf_size = sizeof(struct rtm_conf),
    .validate = rtm_validate,
    .access = rtm_access,
    .request_body = rtm_request_body,
};
