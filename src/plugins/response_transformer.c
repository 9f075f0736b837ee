/*
 * response-transformer — Kong's plugin of that name (priority 800): edit the response on its
 * way to the client. Operations in Kong's order: remove, rename, replace, add, append, on
 *
 *   headers   every response, upstream or local (a 401 of an auth plugin too)
 *   json      top-level fields of a JSON object body (Content-Type application/json or a
 *             +json type), upstream responses only; values are strings unless json_types
 *             says boolean or number for that entry (same index)
 *
 * The response_headers hook edits the head and, when json operations are configured and the
 * response is JSON, asks for the body; the response_body hook rewrites it (the proxy re-frames
 * it). Bodies over TP_PLUGIN_BODY_MAX, bodies that are not a JSON object (invalid JSON, an
 * array, a compressed body) pass untouched.
 */
#include "plugins/transform_util.h"
#include "turnpike/plugin.h"

#include <stdlib.h>
#include <string.h>

enum { OP_REMOVE, OP_RENAME, OP_REPLACE, OP_ADD, OP_APPEND, OP_COUNT };
enum { T_HEADERS, T_JSON, T_JSON_TYPES, T_COUNT };

static const char *const op_names[OP_COUNT] = {"remove", "rename", "replace", "add", "append"};
static const char *const target_names[T_COUNT] = {"headers", "json", "json_types"};
static const char *const json_type_names[] = {"string", "boolean", "number"};
enum { JT_STRING, JT_BOOLEAN, JT_NUMBER };

struct rsp_section {
    char **list[T_COUNT];
    size_t num[T_COUNT];
};

struct rsp_conf {
    struct rsp_section op[OP_COUNT];
};

/* ------------------------------------------------------------------------------------------ */
/* Config                                                                                      */

static void parse_target(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                         void *obj)
{
    struct rsp_section *s = obj;
    for (int t = 0; t < T_COUNT; t++)
        if (strcmp(key, target_names[t]) == 0)
            tp__xf_cfg_opt_list(ctx, key, value, &s->list[t], &s->num[t]);
}

#define RSP_BASE_KEYS                                                                       \
    TP__CFG_CUSTOM_KEY("headers", parse_target, false),                                    \
    TP__CFG_CUSTOM_KEY("json", parse_target, false)

static const struct tp__cfg_directive rsp_names_keys[] = {RSP_BASE_KEYS};
static const struct tp__cfg_directive rsp_values_keys[] = {
    RSP_BASE_KEYS,
    TP__CFG_CUSTOM_KEY("json_types", parse_target, false),
};

static const struct tp__cfg_schema rsp_names_schema = {
    .what = "response-transformer operation",
    .keys = rsp_names_keys,
    .num_keys = TP_ARRAY_LEN(rsp_names_keys),
    .size = sizeof(struct rsp_section),
    .mark_offset = -1,
};

static const struct tp__cfg_schema rsp_values_schema = {
    .what = "response-transformer operation",
    .keys = rsp_values_keys,
    .num_keys = TP_ARRAY_LEN(rsp_values_keys),
    .size = sizeof(struct rsp_section),
    .mark_offset = -1,
};

static void parse_section(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                          void *obj)
{
    struct rsp_conf *c = obj;
    for (int op = 0; op < OP_COUNT; op++) {
        if (strcmp(key, op_names[op]) != 0 || tp__cfg_is_null(value))
            continue;
        /* remove and rename take names only; json_types belongs to the value operations */
        bool names = op == OP_REMOVE || op == OP_RENAME;
        tp__cfg_object(ctx, names ? &rsp_names_schema : &rsp_values_schema, value, &c->op[op]);
    }
}

static const struct tp__cfg_directive rsp_keys[] = {
    TP__CFG_CUSTOM_KEY("remove", parse_section, false),
    TP__CFG_CUSTOM_KEY("rename", parse_section, false),
    TP__CFG_CUSTOM_KEY("replace", parse_section, false),
    TP__CFG_CUSTOM_KEY("add", parse_section, false),
    TP__CFG_CUSTOM_KEY("append", parse_section, false),
};

TP__CFG_TABLE_CHECK(rsp_keys);

static const struct tp__cfg_schema rsp_schema = {
    .what = "response-transformer config",
    .keys = rsp_keys,
    .num_keys = TP_ARRAY_LEN(rsp_keys),
    .size = sizeof(struct rsp_conf),
    .mark_offset = -1,
};

static void rsp_free_conf(void *conf)
{
    struct rsp_conf *c = conf;
    for (int op = 0; op < OP_COUNT; op++)
        for (int t = 0; t < T_COUNT; t++)
            tp__xf_list_free(c->op[op].list[t], c->op[op].num[t]);
}

static int json_type_of(const struct rsp_section *s, size_t i)
{
    const char *t = i < s->num[T_JSON_TYPES] ? s->list[T_JSON_TYPES][i] : NULL;
    for (int k = 0; t && k < (int)TP_ARRAY_LEN(json_type_names); k++)
        if (strcmp(t, json_type_names[k]) == 0)
            return k;
    return JT_STRING;
}

static void check_entry(struct tp_plugin_build *b, const struct rsp_section *s, int op, int t,
                        size_t i)
{
    const char *entry = s->list[t][i];
    const void *at = tp__xf_cfg_item(b->cfg, b->node, op_names[op], target_names[t], i);
    struct tp_slice name, value;
    bool colon;
    tp__xf_split_pair(entry, &name, &value, &colon);
    bool pair = op != OP_REMOVE;
    const char *bad = NULL;

    if (name.len == 0)
        bad = "has an empty name";
    else if (pair && !colon)
        bad = "has no value (write \"name:value\")";
    else if (op == OP_RENAME && value.len == 0)
        bad = "renames to an empty name";
    else if (t == T_JSON) {
        if (pair && json_type_of(s, i) == JT_NUMBER && value.len &&
            !tp__xf_is_json_number(value.ptr, value.len))
            bad = "is typed \"number\" in json_types but its value is not a JSON number";
    } else if (!tp__xf_is_token(name.ptr, name.len))
        bad = "is not a valid header name";
    else if (op == OP_RENAME && !tp__xf_is_token(value.ptr, value.len))
        bad = "does not rename to a valid header name";
    else if (pair && op != OP_RENAME && !tp__xf_is_field_value(value.ptr, value.len))
        bad = "has a control character in its value";
    else if (tp__xf_is_framing_header(name.ptr, name.len) ||
             (op == OP_RENAME && tp__xf_is_framing_header(value.ptr, value.len)))
        bad = "edits a framing header (the gateway owns Content-Length, Transfer-Encoding, "
              "Connection and hop-by-hop fields)";
    if (bad)
        tp_plugin_build_error(b, at, "\"%s\" %s", entry, bad);
}

static int rsp_validate(struct tp_plugin_build *b, void *conf)
{
    struct rsp_conf *c = conf;
    int before = b->num_errors;

    for (int op = 0; op < OP_COUNT; op++) {
        const struct rsp_section *s = &c->op[op];
        for (size_t i = 0; i < s->num[T_JSON_TYPES]; i++) {
            const char *jt = s->list[T_JSON_TYPES][i];
            bool known = false;
            for (size_t k = 0; jt && k < TP_ARRAY_LEN(json_type_names); k++)
                known = known || strcmp(jt, json_type_names[k]) == 0;
            if (jt && !known)
                tp_plugin_build_error(b, tp__xf_cfg_item(b->cfg, b->node, op_names[op],
                                                         "json_types", i),
                                      "json_types entry \"%s\" must be one of: boolean, "
                                      "number, string", jt);
        }
        for (int t = T_HEADERS; t <= T_JSON; t++)
            for (size_t i = 0; i < s->num[t]; i++)
                if (s->list[t][i])
                    check_entry(b, s, op, t, i);
    }
    return b->num_errors == before ? 0 : -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Instance                                                                                    */

/* One entry: name and value NUL-terminated; json is the value as JSON text of its type. */
struct rsp_entry {
    struct tp_slice name, value, json;
    char *mem;
};

struct rsp_list {
    struct rsp_entry *v;
    size_t n;
};

struct rsp_inst {
    struct rsp_list ops[OP_COUNT][T_JSON + 1];
    bool has_headers, has_json;
};

static void rsp_destroy(void *p)
{
    struct rsp_inst *in = p;
    if (!in)
        return;
    for (int op = 0; op < OP_COUNT; op++)
        for (int t = T_HEADERS; t <= T_JSON; t++) {
            for (size_t i = 0; i < in->ops[op][t].n; i++)
                free(in->ops[op][t].v[i].mem);
            free(in->ops[op][t].v);
        }
    free(in);
}

/* The JSON text of a value: a string, Kong's toboolean ("true" or false), or the number. */
static int json_text(struct tp_strbuf *b, struct tp_slice v, int type)
{
    if (type == JT_BOOLEAN)
        return tp_strbuf_puts(b, v.len == 4 && memcmp(v.ptr, "true", 4) == 0 ? "true" : "false");
    if (type == JT_NUMBER)
        return tp_strbuf_append(b, v.ptr, v.len);
    return tp__xf_json_string(b, v.ptr, v.len);
}

static int make_entry(const char *entry, int type, struct rsp_entry *e)
{
    struct tp_slice name, value;
    bool colon;
    tp__xf_split_pair(entry, &name, &value, &colon);
    struct tp_strbuf js = {.max = value.len * 6 + 16};
    if (json_text(&js, value, type) != 0) {
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

static int rsp_compile(struct tp_plugin_build *b, const void *conf, void **inst)
{
    const struct rsp_conf *c = conf;
    struct rsp_inst *in = calloc(1, sizeof(*in));
    if (!in)
        return tp_plugin_build_error(b, NULL, "out of memory");
    for (int op = 0; op < OP_COUNT; op++) {
        const struct rsp_section *s = &c->op[op];
        for (int t = T_HEADERS; t <= T_JSON; t++) {
            struct rsp_list *l = &in->ops[op][t];
            if (!s->num[t])
                continue;
            if (!(l->v = calloc(s->num[t], sizeof(*l->v))))
                goto out_oom;
            for (size_t i = 0; i < s->num[t]; i++) {
                struct tp_slice name, value;
                bool colon;
                tp__xf_split_pair(s->list[t][i], &name, &value, &colon);
                /* Kong skips value operations whose value is empty */
                if (op != OP_REMOVE && value.len == 0)
                    continue;
                int type = t == T_JSON ? json_type_of(s, i) : JT_STRING;
                if (make_entry(s->list[t][i], type, &l->v[l->n]) != 0)
                    goto out_oom;
                l->n++;
            }
            if (t == T_JSON)
                in->has_json = in->has_json || l->n;
            else
                in->has_headers = in->has_headers || l->n;
        }
    }
    *inst = in;
    return 0;

out_oom:
    rsp_destroy(in);
    return tp_plugin_build_error(b, NULL, "out of memory");
}

/* ------------------------------------------------------------------------------------------ */
/* Hooks                                                                                       */

static bool resp_has(struct tp_plugin_ctx *ctx, const char *name)
{
    struct tp_slice v;
    return tp_plugin_resp_header(ctx, name, 0, &v);
}

static int rename_header(struct tp_plugin_ctx *ctx, const struct rsp_entry *e)
{
    struct tp_slice v;
    int rc = 0;
    if (!resp_has(ctx, e->name.ptr) || tp_slice_eq_nocase(e->name, e->value.ptr, e->value.len))
        return 0;
    rc |= tp_plugin_resp_remove_header(ctx, e->value.ptr);
    for (size_t i = 0; rc == 0 && tp_plugin_resp_header(ctx, e->name.ptr, i, &v); i++)
        rc |= tp_plugin_resp_add_header(ctx, e->value.ptr, v);
    return rc ? rc : tp_plugin_resp_remove_header(ctx, e->name.ptr);
}

static int transform_headers(struct tp_plugin_ctx *ctx, const struct rsp_inst *in)
{
    int rc = 0;
    const struct rsp_list *l;

    l = &in->ops[OP_REMOVE][T_HEADERS];
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        rc = tp_plugin_resp_remove_header(ctx, l->v[i].name.ptr);
    l = &in->ops[OP_RENAME][T_HEADERS];
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        rc = rename_header(ctx, &l->v[i]);
    l = &in->ops[OP_REPLACE][T_HEADERS];
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        if (resp_has(ctx, l->v[i].name.ptr))
            rc = tp_plugin_resp_set_header(ctx, l->v[i].name.ptr, l->v[i].value);
    l = &in->ops[OP_ADD][T_HEADERS];
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        if (!resp_has(ctx, l->v[i].name.ptr))
            rc = tp_plugin_resp_set_header(ctx, l->v[i].name.ptr, l->v[i].value);
    l = &in->ops[OP_APPEND][T_HEADERS];
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        rc = tp_plugin_resp_add_header(ctx, l->v[i].name.ptr, l->v[i].value);
    return rc;
}

/* Marker in tp_plugin_data: the response body was asked for. */
static char want_marker;

/* A status that may carry a body (RFC 9110 §6.4.1). A response to HEAD has none either: its
 * (empty) body does not parse as JSON and goes through as it is. */
static bool has_body(struct tp_plugin_ctx *ctx)
{
    int status = tp_plugin_resp_status(ctx);
    return status >= 200 && status != 204 && status != 304;
}

static enum tp_plugin_status rsp_response_headers(struct tp_plugin_ctx *ctx, const void *inst)
{
    const struct rsp_inst *in = inst;
    struct tp_slice ct;

    if (in->has_headers && transform_headers(ctx, in) != 0)
        return TP_PLUGIN_ERROR;
    if (!in->has_json || tp_plugin_resp_is_local(ctx) || !has_body(ctx) ||
        !tp_plugin_resp_header(ctx, "Content-Type", 0, &ct) ||
        tp__xf_media_type(ct) != TP_XF_MEDIA_JSON)
        return TP_PLUGIN_CONTINUE;
    *tp_plugin_data(ctx) = &want_marker;
    tp_plugin_want_response_body(ctx);
    return TP_PLUGIN_CONTINUE;
}

static int transform_json(const struct rsp_inst *in, struct tp__xf_json *j, bool *changed)
{
    int rc = 0;
    const struct rsp_list *l;

    l = &in->ops[OP_REMOVE][T_JSON];
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        rc = tp__xf_json_remove(j, l->v[i].name, changed);
    l = &in->ops[OP_RENAME][T_JSON];
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        rc = tp__xf_json_rename(j, l->v[i].name, l->v[i].value, changed);
    l = &in->ops[OP_REPLACE][T_JSON];
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        rc = tp__xf_json_replace(j, l->v[i].name, l->v[i].json, changed);
    l = &in->ops[OP_ADD][T_JSON];
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        rc = tp__xf_json_add(j, l->v[i].name, l->v[i].json, changed);
    l = &in->ops[OP_APPEND][T_JSON];
    for (size_t i = 0; rc == 0 && i < l->n; i++)
        rc = tp__xf_json_append(j, l->v[i].name, l->v[i].json, changed);
    return rc;
}

static enum tp_plugin_status rsp_response_body(struct tp_plugin_ctx *ctx, const void *inst,
                                               struct tp_plugin_body *body)
{
    struct tp__xf_json j = {0};
    struct tp_strbuf out = {.max = body->len + (TP_PLUGIN_BODY_MAX / 8)};
    bool changed = false;

    if (*tp_plugin_data(ctx) != &want_marker)
        return TP_PLUGIN_CONTINUE;
    int rc = tp__xf_json_parse(&j, body->ptr ? body->ptr : "", body->len);
    if (rc == 0)
        rc = transform_json(inst, &j, &changed);
    if (rc == 0 && changed)
        rc = tp__xf_json_encode(&j, &out);
    tp__xf_json_free(&j);
    if (rc == TP_EINVAL || (rc == 0 && !changed)) {
        tp_strbuf_free(&out);
        return TP_PLUGIN_CONTINUE; /* not a JSON object: the upstream's bytes go through */
    }
    if (rc != 0) {
        tp_strbuf_free(&out);
        return TP_PLUGIN_ERROR;
    }
    free(body->ptr);
    body->ptr = out.ptr;
    body->len = out.len;
    body->cap = out.cap;
    return TP_PLUGIN_CONTINUE;
}

const struct tp_plugin tp_plugin_response_transformer = {
    .name = "response-transformer",
    .priority = 800,
    .schema = &rsp_schema,
    .conf_size = sizeof(struct rsp_conf),
    .validate = rsp_validate,
    .free_conf = rsp_free_conf,
    .compile = rsp_compile,
    .destroy = rsp_destroy,
    .response_headers = rsp_response_headers,
    .response_body = rsp_response_body,
};
