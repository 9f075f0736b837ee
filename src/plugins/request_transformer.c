/*
 * request-transformer — Kong's plugin of that name (priority 801): edit the request before it
 * goes upstream. Operations run in Kong's order, each on headers, query string and body:
 *
 *   remove   names                drop every occurrence
 *   rename   old:new              if old is present, new takes its values (replacing any)
 *   replace  name:value           only if present: one value instead of all
 *   add      name:value           only if absent
 *   append   name:value           one more value (a JSON string field becomes an array)
 *   replace.uri                   the path sent upstream
 *
 * Bodies: application/json (top-level fields of an object; values are strings) and
 * application/x-www-form-urlencoded. The access hook asks for the body; the request_body hook
 * rewrites it (the proxy recomputes Content-Length). A body that does not parse (invalid JSON,
 * a JSON array) is forwarded untouched, as Kong does. Values are literal: Kong's templates
 * "$(...)" are refused at load (docs/plugins/request-transformer.md).
 */
#include "plugins/transform_util.h"
#include "turnpike/plugin.h"

#include <stdlib.h>
#include <string.h>

enum { OP_REMOVE, OP_RENAME, OP_REPLACE, OP_ADD, OP_APPEND, OP_COUNT };
enum { T_HEADERS, T_QUERY, T_BODY, T_COUNT };

static const char *const op_names[OP_COUNT] = {"remove", "rename", "replace", "add", "append"};
static const char *const target_names[T_COUNT] = {"headers", "querystring", "body"};

/* One of remove/rename/replace/add/append: three lists (+ uri for replace). */
struct rt_section {
    char **list[T_COUNT];
    size_t num[T_COUNT];
    char *uri;
};

struct rt_conf {
    char *http_method;
    struct rt_section op[OP_COUNT];
};

/* ------------------------------------------------------------------------------------------ */
/* Config                                                                                      */

static void parse_target(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                         void *obj)
{
    struct rt_section *s = obj;
    for (int t = 0; t < T_COUNT; t++)
        if (strcmp(key, target_names[t]) == 0)
            tp__xf_cfg_opt_list(ctx, key, value, &s->list[t], &s->num[t]);
}

static void parse_uri(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct rt_section *s = obj;
    tp__xf_cfg_opt_string(ctx, key, value, &s->uri);
}

#define RT_TARGET_KEYS                                                                      \
    TP__CFG_CUSTOM_KEY("headers", parse_target, false),                                    \
    TP__CFG_CUSTOM_KEY("querystring", parse_target, false),                                \
    TP__CFG_CUSTOM_KEY("body", parse_target, false)

static const struct tp__cfg_directive rt_section_keys[] = {RT_TARGET_KEYS};
static const struct tp__cfg_directive rt_replace_keys[] = {
    RT_TARGET_KEYS,
    TP__CFG_CUSTOM_KEY("uri", parse_uri, false),
};

static const struct tp__cfg_schema rt_section_schema = {
    .what = "request-transformer operation",
    .keys = rt_section_keys,
    .num_keys = TP_ARRAY_LEN(rt_section_keys),
    .size = sizeof(struct rt_section),
    .mark_offset = -1,
};

static const struct tp__cfg_schema rt_replace_schema = {
    .what = "request-transformer replace",
    .keys = rt_replace_keys,
    .num_keys = TP_ARRAY_LEN(rt_replace_keys),
    .size = sizeof(struct rt_section),
    .mark_offset = -1,
};

static void parse_section(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                          void *obj)
{
    struct rt_conf *c = obj;
    for (int op = 0; op < OP_COUNT; op++) {
        if (strcmp(key, op_names[op]) != 0)
            continue;
        if (!tp__cfg_is_null(value))
            tp__cfg_object(ctx, op == OP_REPLACE ? &rt_replace_schema : &rt_section_schema,
                           value, &c->op[op]);
    }
}

static void parse_method(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct rt_conf *c = obj;
    tp__xf_cfg_opt_string(ctx, key, value, &c->http_method);
}

static const struct tp__cfg_directive rt_keys[] = {
    TP__CFG_CUSTOM_KEY("http_method", parse_method, false),
    TP__CFG_CUSTOM_KEY("remove", parse_section, false),
    TP__CFG_CUSTOM_KEY("rename", parse_section, false),
    TP__CFG_CUSTOM_KEY("replace", parse_section, false),
    TP__CFG_CUSTOM_KEY("add", parse_section, false),
    TP__CFG_CUSTOM_KEY("append", parse_section, false),
};

TP__CFG_TABLE_CHECK(rt_keys);

static const struct tp__cfg_schema rt_schema = {
    .what = "request-transformer config",
    .keys = rt_keys,
    .num_keys = TP_ARRAY_LEN(rt_keys),
    .size = sizeof(struct rt_conf),
    .mark_offset = -1,
};

static void rt_free_conf(void *conf)
{
    struct rt_conf *c = conf;
    free(c->http_method);
    for (int op = 0; op < OP_COUNT; op++) {
        for (int t = 0; t < T_COUNT; t++)
            tp__xf_list_free(c->op[op].list[t], c->op[op].num[t]);
        free(c->op[op].uri);
    }
}

/* Check one entry of op/target; reports at its position. */
static void check_entry(struct tp_plugin_build *b, int op, int t, size_t i, const char *entry)
{
    const void *at = tp__xf_cfg_item(b->cfg, b->node, op_names[op], target_names[t], i);
    struct tp_slice name, value;
    bool colon;
    tp__xf_split_pair(entry, &name, &value, &colon);
    bool pair = op != OP_REMOVE;

    if (name.len == 0) {
        tp_plugin_build_error(b, at, "\"%s\": empty name", entry);
        return;
    }
    /* header values may be empty (Kong's "^[^:]+:.*$"); body, query and renames may not */
    bool need_value = pair && (t != T_HEADERS || op == OP_RENAME);
    if ((pair && !colon) || (need_value && value.len == 0)) {
        tp_plugin_build_error(b, at, "key '%.*s' has no value (write \"name:value\")",
                              (int)name.len, name.ptr);
        return;
    }
    if (pair && tp__xf_is_template(value.ptr)) {
        tp_plugin_build_error(b, at, "\"%s\": templates \"$(...)\" are not supported, values "
                              "are literal", entry);
        return;
    }
    if (t != T_HEADERS)
        return;
    const char *bad = NULL;
    if (!tp__xf_is_token(name.ptr, name.len))
        bad = "is not a valid header name";
    else if (op == OP_RENAME && !tp__xf_is_token(value.ptr, value.len))
        bad = "does not rename to a valid header name";
    else if (pair && op != OP_RENAME && !tp__xf_is_field_value(value.ptr, value.len))
        bad = "has a control character in its value";
    else if (tp__xf_is_framing_header(name.ptr, name.len) ||
             (op == OP_RENAME && tp__xf_is_framing_header(value.ptr, value.len)))
        bad = "edits a framing header (the gateway owns Content-Length, Transfer-Encoding, "
              "Connection and hop-by-hop fields)";
    else if ((TP_SLICE_IEQ(name, "host") && op != OP_REPLACE) ||
             (op == OP_RENAME && TP_SLICE_IEQ(value, "host")))
        bad = "edits Host (only \"replace\" may change it)";
    if (bad)
        tp_plugin_build_error(b, at, "\"%s\" %s", entry, bad);
}

static void check_uri(struct tp_plugin_build *b, const char *uri)
{
    const void *at = tp__xf_cfg_item(b->cfg, b->node, NULL, "replace", 0);
    if (b->cfg && b->node) {
        const void *sec = tp__cfg_lookup(b->cfg, b->node, "replace");
        const void *u = sec ? tp__cfg_lookup(b->cfg, sec, "uri") : NULL;
        at = u ? u : at;
    }
    if (tp__xf_is_template(uri)) {
        tp_plugin_build_error(b, at, "replace.uri: templates \"$(...)\" are not supported");
        return;
    }
    bool ok = uri[0] == '/';
    for (const char *p = uri; ok && *p; p++)
        ok = (unsigned char)*p > ' ' && *p != '?' && *p != '#' && (unsigned char)*p != 0x7f;
    if (!ok)
        tp_plugin_build_error(b, at, "replace.uri \"%s\" must be a path starting with '/' (no "
                              "spaces, '?' or '#')", uri);
}

static int rt_validate(struct tp_plugin_build *b, void *conf)
{
    struct rt_conf *c = conf;
    int before = b->num_errors;

    if (c->http_method) {
        /* Kong upper-cases the value; a token of letters (RFC 9110 §9.1) */
        bool ok = c->http_method[0] != '\0' && strlen(c->http_method) <= 32;
        for (char *p = c->http_method; *p; p++) {
            if (*p >= 'a' && *p <= 'z')
                *p = (char)(*p - 'a' + 'A');
            ok = ok && ((*p >= 'A' && *p <= 'Z') || *p == '-' || *p == '_');
        }
        if (!ok) {
            const void *at = b->cfg && b->node ? tp__cfg_lookup(b->cfg, b->node, "http_method")
                                               : NULL;
            tp_plugin_build_error(b, at, "\"http_method\" must be a method name such as POST");
        }
    }
    for (int op = 0; op < OP_COUNT; op++)
        for (int t = 0; t < T_COUNT; t++)
            for (size_t i = 0; i < c->op[op].num[t]; i++)
                if (c->op[op].list[t][i])
                    check_entry(b, op, t, i, c->op[op].list[t][i]);
    if (c->op[OP_REPLACE].uri)
        check_uri(b, c->op[OP_REPLACE].uri);
    return b->num_errors == before ? 0 : -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Instance                                                                                    */

/* One entry, split: name and value NUL-terminated; json is the value as a JSON string. */
struct rt_entry {
    struct tp_slice name, value, json;
    char *mem;
};

struct rt_list {
    struct rt_entry *v;
    size_t n;
};

struct rt_inst {
    struct rt_list ops[OP_COUNT][T_COUNT];
    const char *uri;
    const char *http_method;  /* borrowed from the config, or NULL */
    bool has[T_COUNT]; /* some operation on this target */
};

static void rt_destroy(void *p)
{
    struct rt_inst *in = p;
    if (!in)
        return;
    for (int op = 0; op < OP_COUNT; op++)
        for (int t = 0; t < T_COUNT; t++) {
            for (size_t i = 0; i < in->ops[op][t].n; i++)
                free(in->ops[op][t].v[i].mem);
            free(in->ops[op][t].v);
        }
    free(in);
}

/* Split entry into e: "name\0value\0\"json\"\0" in one block. */
static int make_entry(const char *entry, struct rt_entry *e)
{
    struct tp_slice name, value;
    bool colon;
    tp__xf_split_pair(entry, &name, &value, &colon);
    struct tp_strbuf js = {.max = value.len * 6 + 16};
    if (tp__xf_json_string(&js, value.ptr, value.len) != 0) {
        tp_strbuf_free(&js);
        return TP_ENOMEM;
    }
    e->mem = malloc(name.len + value.len + js.len + 3);
    if (!e->mem) {
        tp_strbuf_free(&js);
        return TP_ENOMEM;
    }
    char *p = e->mem;
    memcpy(p, name.ptr, name.len);
    p[name.len] = '\0';
    e->name = (struct tp_slice){p, name.len};
    p += name.len + 1;
    memcpy(p, value.ptr, value.len);
    p[value.len] = '\0';
    e->value = (struct tp_slice){p, value.len};
    p += value.len + 1;
    memcpy(p, js.ptr, js.len);
    p[js.len] = '\0';
    e->json = (struct tp_slice){p, js.len};
    tp_strbuf_free(&js);
    return 0;
}

static int rt_compile(struct tp_plugin_build *b, const void *conf, void **inst)
{
    const struct rt_conf *c = conf;
    struct rt_inst *in = calloc(1, sizeof(*in));
    if (!in)
        return tp_plugin_build_error(b, NULL, "out of memory");
    for (int op = 0; op < OP_COUNT; op++) {
        for (int t = 0; t < T_COUNT; t++) {
            size_t n = c->op[op].num[t];
            struct rt_list *l = &in->ops[op][t];
            if (!n)
                continue;
            if (!(l->v = calloc(n, sizeof(*l->v))))
                goto out_oom;
            for (; l->n < n; l->n++)
                if (make_entry(c->op[op].list[t][l->n], &l->v[l->n]) != 0)
                    goto out_oom;
            in->has[t] = true;
        }
    }
    in->uri = c->op[OP_REPLACE].uri;
    in->http_method = c->http_method;
    *inst = in;
    return 0;

out_oom:
    rt_destroy(in);
    return tp_plugin_build_error(b, NULL, "out of memory");
}

/* ------------------------------------------------------------------------------------------ */
/* Headers and query                                                                           */

static bool has_header(struct tp_plugin_ctx *ctx, const char *name)
{
    struct tp_slice v;
    return tp_plugin_header(ctx, name, 0, &v);
}

/* rename: the new name takes every value of the old one (edits keep their own copies). */
static int rename_header(struct tp_plugin_ctx *ctx, const struct rt_entry *e)
{
    struct tp_slice v;
    int rc = 0;
    if (!has_header(ctx, e->name.ptr) || tp_slice_eq_nocase(e->name, e->value.ptr, e->value.len))
        return 0;
    rc |= tp_plugin_remove_header(ctx, e->value.ptr);
    for (size_t i = 0; rc == 0 && tp_plugin_header(ctx, e->name.ptr, i, &v); i++)
        rc |= tp_plugin_add_header(ctx, e->value.ptr, v);
    return rc ? rc : tp_plugin_remove_header(ctx, e->name.ptr);
}

static int transform_headers(struct tp_plugin_ctx *ctx, const struct rt_inst *in)
{
    int rc = 0;
    const struct rt_list *l;

    l = &in->ops[OP_REMOVE][T_HEADERS];
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        rc = tp_plugin_remove_header(ctx, l->v[i].name.ptr);
    l = &in->ops[OP_RENAME][T_HEADERS];
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        rc = rename_header(ctx, &l->v[i]);
    l = &in->ops[OP_REPLACE][T_HEADERS];
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        if (has_header(ctx, l->v[i].name.ptr) || TP_SLICE_IEQ(l->v[i].name, "host"))
            rc = tp_plugin_set_header(ctx, l->v[i].name.ptr, l->v[i].value);
    l = &in->ops[OP_ADD][T_HEADERS];
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        if (!has_header(ctx, l->v[i].name.ptr))
            rc = tp_plugin_set_header(ctx, l->v[i].name.ptr, l->v[i].value);
    l = &in->ops[OP_APPEND][T_HEADERS];
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        rc = tp_plugin_add_header(ctx, l->v[i].name.ptr, l->v[i].value);
    return rc;
}

/* The five operations on a parameter list (query string or form body). `with_old` is false
 * for an empty form body: Kong then skips remove/rename/replace. */
static int transform_params(const struct rt_inst *in, int t, struct tp__xf_params *p,
                            bool with_old, bool *changed)
{
    int rc = 0;
    const struct rt_list *l;

    l = &in->ops[OP_REMOVE][t];
    for (size_t i = 0; with_old && rc == 0 && i < l->n; i++)
        rc = tp__xf_params_remove(p, l->v[i].name, changed);
    l = &in->ops[OP_RENAME][t];
    for (size_t i = 0; with_old && rc == 0 && i < l->n; i++)
        rc = tp__xf_params_rename(p, l->v[i].name, l->v[i].value, changed);
    l = &in->ops[OP_REPLACE][t];
    for (size_t i = 0; with_old && rc == 0 && i < l->n; i++)
        rc = tp__xf_params_replace(p, l->v[i].name, l->v[i].value, changed);
    l = &in->ops[OP_ADD][t];
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        rc = tp__xf_params_add(p, l->v[i].name, l->v[i].value, changed);
    l = &in->ops[OP_APPEND][t];
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        rc = tp__xf_params_append(p, l->v[i].name, l->v[i].value, changed);
    return rc;
}

static int transform_query(struct tp_plugin_ctx *ctx, const struct rt_inst *in)
{
    struct tp_slice q = tp_plugin_query(ctx);
    struct tp__xf_params p = {0};
    struct tp_strbuf out = {.max = 1u << 20};
    bool changed = false;
    int rc = tp__xf_params_parse(&p, q.ptr, q.len);
    if (rc == 0)
        rc = transform_params(in, T_QUERY, &p, true, &changed);
    if (rc == 0 && changed)
        rc = tp__xf_params_encode(&p, &out);
    if (rc == 0 && changed)
        rc = tp_plugin_set_query(ctx, (struct tp_slice){out.ptr ? out.ptr : "", out.len});
    tp_strbuf_free(&out);
    tp__xf_params_free(&p);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Hooks                                                                                       */

/* tp_plugin_data markers: which body parser the request_body hook uses. */
static char media_json, media_form;

static enum tp_plugin_status rt_access(struct tp_plugin_ctx *ctx, const void *inst)
{
    const struct rt_inst *in = inst;
    struct tp_slice ct;

    if (in->has[T_HEADERS] && transform_headers(ctx, in) != 0)
        return TP_PLUGIN_ERROR;
    if (in->has[T_QUERY] && transform_query(ctx, in) != 0)
        return TP_PLUGIN_ERROR;
    if (in->uri && tp_plugin_set_upstream_path(ctx, tp_slice_cstr(in->uri)) != 0)
        return TP_PLUGIN_ERROR;
    if (in->http_method && tp_plugin_set_method(ctx, tp_slice_cstr(in->http_method)) != 0)
        return TP_PLUGIN_ERROR;
    if (!in->has[T_BODY] || !tp_plugin_header(ctx, "Content-Type", 0, &ct))
        return TP_PLUGIN_CONTINUE;
    enum tp__xf_media m = tp__xf_media_type(ct);
    if (m == TP_XF_MEDIA_OTHER)
        return TP_PLUGIN_CONTINUE; /* multipart and others pass untouched */
    *tp_plugin_data(ctx) = m == TP_XF_MEDIA_JSON ? &media_json : &media_form;
    tp_plugin_want_request_body(ctx);
    return TP_PLUGIN_CONTINUE;
}

static int transform_json(const struct rt_inst *in, const struct tp_plugin_body *body,
                          struct tp_strbuf *out, bool *changed)
{
    struct tp__xf_json j = {0};
    const struct rt_list *l;
    bool with_old = body->len > 0;
    int rc = with_old ? tp__xf_json_parse(&j, body->ptr, body->len) : 0;

    if (rc == TP_EINVAL) {
        tp__xf_json_free(&j);
        return 0; /* not a JSON object: forwarded untouched */
    }
    l = &in->ops[OP_REMOVE][T_BODY];
    for (size_t i = 0; with_old && rc == 0 && i < l->n; i++)
        rc = tp__xf_json_remove(&j, l->v[i].name, changed);
    l = &in->ops[OP_RENAME][T_BODY];
    for (size_t i = 0; with_old && rc == 0 && i < l->n; i++)
        rc = tp__xf_json_rename(&j, l->v[i].name, l->v[i].value, changed);
    l = &in->ops[OP_REPLACE][T_BODY];
    for (size_t i = 0; with_old && rc == 0 && i < l->n; i++)
        rc = tp__xf_json_replace(&j, l->v[i].name, l->v[i].json, changed);
    l = &in->ops[OP_ADD][T_BODY];
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        rc = tp__xf_json_add(&j, l->v[i].name, l->v[i].json, changed);
    l = &in->ops[OP_APPEND][T_BODY];
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        rc = tp__xf_json_append(&j, l->v[i].name, l->v[i].json, changed);
    if (rc == 0 && *changed)
        rc = tp__xf_json_encode(&j, out);
    tp__xf_json_free(&j);
    return rc;
}

static int transform_form(const struct rt_inst *in, const struct tp_plugin_body *body,
                          struct tp_strbuf *out, bool *changed)
{
    struct tp__xf_params p = {0};
    int rc = tp__xf_params_parse(&p, body->ptr, body->len);
    if (rc == 0)
        rc = transform_params(in, T_BODY, &p, body->len > 0, changed);
    if (rc == 0 && *changed)
        rc = tp__xf_params_encode(&p, out);
    tp__xf_params_free(&p);
    return rc;
}

static enum tp_plugin_status rt_request_body(struct tp_plugin_ctx *ctx, const void *inst,
                                             struct tp_plugin_body *body)
{
    const struct rt_inst *in = inst;
    void *kind = *tp_plugin_data(ctx);
    /* room for what the configuration adds, on top of the body itself */
    struct tp_strbuf out = {.max = body->len + (TP_PLUGIN_BODY_MAX / 8)};
    bool changed = false;
    int rc;

    if (kind == &media_json)
        rc = transform_json(in, body, &out, &changed);
    else if (kind == &media_form)
        rc = transform_form(in, body, &out, &changed);
    else
        return TP_PLUGIN_CONTINUE;
    if (rc != 0 || !changed) {
        tp_strbuf_free(&out);
        return rc ? TP_PLUGIN_ERROR : TP_PLUGIN_CONTINUE;
    }
    if (!out.ptr && tp_strbuf_reserve(&out, 1) != 0)
        return TP_PLUGIN_ERROR; /* an empty result still needs a buffer of its own */
    free(body->ptr);
    body->ptr = out.ptr;
    body->len = out.len;
    body->cap = out.cap;
    return TP_PLUGIN_CONTINUE;
}

const struct tp_plugin tp_plugin_request_transformer = {
    .name = "request-transformer",
    .priority = 801,
    .schema = &rt_schema,
    .conf_size = sizeof(struct rt_conf),
    .validate = rt_validate,
    .free_conf = rt_free_conf,
    .compile = rt_compile,
    .destroy = rt_destroy,
    .access = rt_access,
    .request_body = rt_request_body,
};
