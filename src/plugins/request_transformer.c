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
#include "turnpike/router.h"

#include <stdlib.h>
#include <string.h>

enum { T_HEADERS, T_QUERY, T_BODY, T_COUNT };

static const char *const target_names[T_COUNT] = {"headers", "querystring", "body"};

/* One of remove/rename/replace/add/append: three lists (+ uri for replace). */
struct rt_section {
    char **list[T_COUNT];
    size_t num[T_COUNT];
    char *uri;
};

struct rt_conf {
    char *http_method;
    struct rt_section op[TP_XF_OP_COUNT];
};

/* ------------------------------------------------------------------------------------------ */
/* Config                                                                                      */

#define RT_TARGET_KEYS                                                                      \
    TP__CFG_STRLIST_KEY("headers", struct rt_section, list[T_HEADERS], num[T_HEADERS]),    \
    TP__CFG_STRLIST_KEY("querystring", struct rt_section, list[T_QUERY], num[T_QUERY]),    \
    TP__CFG_STRLIST_KEY("body", struct rt_section, list[T_BODY], num[T_BODY])

static const struct tp__cfg_directive rt_section_keys[] = {RT_TARGET_KEYS};
static const struct tp__cfg_directive rt_replace_keys[] = {
    RT_TARGET_KEYS,
    TP__CFG_STRING_KEY("uri", struct rt_section, uri, NULL),
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
    int op = tp__xf_op_find(key);
    if (op >= 0)
        tp__cfg_object(ctx, op == TP_XF_OP_REPLACE ? &rt_replace_schema : &rt_section_schema,
                       value, &c->op[op]);
}

static const struct tp__cfg_directive rt_keys[] = {
    TP__CFG_STRING_KEY("http_method", struct rt_conf, http_method, NULL),
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

/* The sections are walked by their own schemas: free what those parsed (http_method is the
 * top schema's, freed by the loader). */
static void rt_free_conf(void *conf)
{
    struct rt_conf *c = conf;
    for (int op = 0; op < TP_XF_OP_COUNT; op++)
        tp__cfg_free_fields(&rt_replace_schema, &c->op[op]);
}

/* Check one entry of op/target; reports at its position. */
static void check_entry(struct tp_plugin_build *b, int op, int t, size_t i, const char *entry)
{
    const void *at = tp__xf_cfg_item(b->cfg, b->node, tp__xf_op_names[op], target_names[t], i);
    struct tp_slice name, value;
    bool colon;
    tp__xf_split_pair(entry, &name, &value, &colon);
    bool pair = op != TP_XF_OP_REMOVE;

    if (name.len == 0) {
        tp_plugin_build_error(b, at, "\"%s\": empty name", entry);
        return;
    }
    /* header values may be empty (Kong's "^[^:]+:.*$"); body, query and renames may not */
    bool need_value = pair && (t != T_HEADERS || op == TP_XF_OP_RENAME);
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
    const char *bad = tp__xf_check_header_entry(op, name, value);
    if (!bad && ((TP_SLICE_IEQ(name, "host") && op != TP_XF_OP_REPLACE) ||
                 (op == TP_XF_OP_RENAME && TP_SLICE_IEQ(value, "host"))))
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
    size_t len = strlen(uri), out_len = 0;
    bool ok = uri[0] == '/';
    for (const char *p = uri; ok && *p; p++)
        ok = (unsigned char)*p > ' ' && *p != '?' && *p != '#' && (unsigned char)*p != 0x7f;
    if (!ok) {
        tp_plugin_build_error(b, at, "replace.uri \"%s\" must be a path starting with '/' (no "
                              "spaces, '?' or '#')", uri);
        return;
    }
    /* The gateway's own rules for client paths (README "Path normalisation"): a path it would
     * refuse from a client (%00, a backslash, %2F, bad escapes) or rewrite ("..", "//", %41) must
     * not reach the upstream through the config either. */
    char *norm = malloc(len + 1);
    if (!norm) {
        tp_plugin_build_error(b, at, "out of memory");
        return;
    }
    if (tp_path_normalize(uri, len, norm, &out_len, 0) != 0)
        tp_plugin_build_error(b, at, "replace.uri \"%s\" is a path the gateway refuses from "
                              "clients (%%00, '\\', %%2F, a malformed escape or a byte outside "
                              "RFC 3986)", uri);
    else if (out_len != len || memcmp(norm, uri, len) != 0)
        tp_plugin_build_error(b, at, "replace.uri \"%s\" is not normalised: write \"%.*s\"", uri,
                              (int)out_len, norm);
    free(norm);
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
    for (int op = 0; op < TP_XF_OP_COUNT; op++)
        for (int t = 0; t < T_COUNT; t++)
            for (size_t i = 0; i < c->op[op].num[t]; i++)
                if (c->op[op].list[t][i])
                    check_entry(b, op, t, i, c->op[op].list[t][i]);
    if (c->op[TP_XF_OP_REPLACE].uri)
        check_uri(b, c->op[TP_XF_OP_REPLACE].uri);
    return b->num_errors == before ? 0 : -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Instance                                                                                    */

struct rt_inst {
    struct tp__xf_entries ops[T_COUNT][TP_XF_OP_COUNT]; /* values as JSON strings */
    const char *uri;
    const char *http_method;  /* borrowed from the config, or NULL */
    bool has[T_COUNT]; /* some operation on this target */
};

static void rt_destroy(void *p)
{
    struct rt_inst *in = p;
    if (!in)
        return;
    for (int t = 0; t < T_COUNT; t++)
        for (int op = 0; op < TP_XF_OP_COUNT; op++)
            tp__xf_entries_free(&in->ops[t][op]);
    free(in);
}

static int rt_compile(struct tp_plugin_build *b, const void *conf, void **inst)
{
    const struct rt_conf *c = conf;
    struct rt_inst *in = calloc(1, sizeof(*in));
    if (!in)
        return tp_plugin_build_error(b, NULL, "out of memory");
    for (int op = 0; op < TP_XF_OP_COUNT; op++) {
        for (int t = 0; t < T_COUNT; t++) {
            size_t n = c->op[op].num[t];
            struct tp__xf_entries *l = &in->ops[t][op];
            if (!n)
                continue;
            if (!(l->v = calloc(n, sizeof(*l->v))))
                goto out_oom;
            for (; l->n < n; l->n++)
                if (tp__xf_entry_make(c->op[op].list[t][l->n], TP_XF_TYPE_STRING,
                                      &l->v[l->n]) != 0)
                    goto out_oom;
            in->has[t] = true;
        }
    }
    in->uri = c->op[TP_XF_OP_REPLACE].uri;
    in->http_method = c->http_method;
    *inst = in;
    return 0;

out_oom:
    rt_destroy(in);
    return tp_plugin_build_error(b, NULL, "out of memory");
}

/* ------------------------------------------------------------------------------------------ */
/* Query                                                                                       */

static int transform_query(struct tp_plugin_ctx *ctx, const struct rt_inst *in)
{
    struct tp_slice q = tp_plugin_query(ctx);
    struct tp__xf_params p = {0};
    struct tp_strbuf out = {.max = 1u << 20};
    bool changed = false;
    int rc = tp__xf_params_parse(&p, q.ptr, q.len);
    if (rc == 0)
        rc = tp__xf_params_apply(&p, in->ops[T_QUERY], true, &changed);
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

/* A comma outside a quoted string: a list of media types, where one is allowed (RFC 9110
 * §8.3 makes Content-Type a singleton field). */
static bool has_list_comma(struct tp_slice v)
{
    bool quoted = false;

    for (size_t i = 0; i < v.len; i++) {
        if (quoted && v.ptr[i] == '\\')
            i++;
        else if (v.ptr[i] == '"')
            quoted = !quoted;
        else if (!quoted && v.ptr[i] == ',')
            return true;
    }
    return false;
}

/*
 * Two Content-Type fields (or one holding a list) leave the body's type to the reader: the
 * transformer would judge it by the first, the upstream may take the last and read a body
 * the transformer skipped (a field meant to be removed would get through). Refused, when
 * body edits are configured. Headers are seen as the upstream will get them.
 */
static bool ambiguous_content_type(struct tp_plugin_ctx *ctx)
{
    struct tp_slice ct;

    if (tp_plugin_header(ctx, "Content-Type", 1, &ct))
        return true;
    return tp_plugin_header(ctx, "Content-Type", 0, &ct) && has_list_comma(ct);
}

static enum tp_plugin_status rt_access(struct tp_plugin_ctx *ctx, const void *inst)
{
    const struct rt_inst *in = inst;
    struct tp_slice ct;

    if (in->has[T_HEADERS] &&
        tp__xf_headers_apply(ctx, &tp__xf_request_headers, in->ops[T_HEADERS]) != 0)
        return TP_PLUGIN_ERROR;
    if (in->has[T_QUERY] && transform_query(ctx, in) != 0)
        return TP_PLUGIN_ERROR;
    if (in->uri && tp_plugin_set_upstream_path(ctx, tp_slice_cstr(in->uri)) != 0)
        return TP_PLUGIN_ERROR;
    if (in->http_method && tp_plugin_set_method(ctx, tp_slice_cstr(in->http_method)) != 0)
        return TP_PLUGIN_ERROR;
    if (!in->has[T_BODY])
        return TP_PLUGIN_CONTINUE;
    if (ambiguous_content_type(ctx)) { /* after our own header edits: as the upstream sees it */
        tp_plugin_security_log(ctx, 400, "request-transformer: ambiguous Content-Type");
        tp_plugin_respond(ctx, 400, "ambiguous Content-Type");
        return TP_PLUGIN_RESPOND;
    }
    if (!tp_plugin_header(ctx, "Content-Type", 0, &ct))
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
    bool with_old = body->len > 0;
    int rc = with_old ? tp__xf_json_parse(&j, body->ptr, body->len) : 0;

    if (rc == TP_EINVAL) {
        tp__xf_json_free(&j);
        return 0; /* not a JSON object: forwarded untouched */
    }
    if (rc == 0)
        rc = tp__xf_json_apply(&j, in->ops[T_BODY], with_old, changed);
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
        rc = tp__xf_params_apply(&p, in->ops[T_BODY], body->len > 0, changed);
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
    tp__xf_body_take(body, &out);
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
