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

enum { T_HEADERS, T_JSON, T_JSON_TYPES, T_COUNT };

static const char *const target_names[T_COUNT] = {"headers", "json", "json_types"};
/* indexed by enum tp__xf_type */
static const char *const json_type_names[] = {"string", "boolean", "number"};

struct rsp_section {
    char **list[T_COUNT];
    size_t num[T_COUNT];
};

struct rsp_conf {
    struct rsp_section op[TP_XF_OP_COUNT];
};

/* ------------------------------------------------------------------------------------------ */
/* Config                                                                                      */

#define RSP_BASE_KEYS                                                                       \
    TP__CFG_STRLIST_KEY("headers", struct rsp_section, list[T_HEADERS], num[T_HEADERS]),   \
    TP__CFG_STRLIST_KEY("json", struct rsp_section, list[T_JSON], num[T_JSON])

static const struct tp__cfg_directive rsp_names_keys[] = {RSP_BASE_KEYS};
static const struct tp__cfg_directive rsp_values_keys[] = {
    RSP_BASE_KEYS,
    TP__CFG_STRLIST_KEY("json_types", struct rsp_section, list[T_JSON_TYPES], num[T_JSON_TYPES]),
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
    int op = tp__xf_op_find(key);
    if (op < 0)
        return;
    /* remove and rename take names only; json_types belongs to the value operations */
    bool names = op == TP_XF_OP_REMOVE || op == TP_XF_OP_RENAME;
    tp__cfg_object(ctx, names ? &rsp_names_schema : &rsp_values_schema, value, &c->op[op]);
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

/* The sections are walked by their own schemas: free what those parsed. */
static void rsp_free_conf(void *conf)
{
    struct rsp_conf *c = conf;
    for (int op = 0; op < TP_XF_OP_COUNT; op++)
        tp__cfg_free_fields(&rsp_values_schema, &c->op[op]);
}

static enum tp__xf_type json_type_of(const struct rsp_section *s, size_t i)
{
    const char *t = i < s->num[T_JSON_TYPES] ? s->list[T_JSON_TYPES][i] : NULL;
    for (int k = 0; t && k < (int)TP_ARRAY_LEN(json_type_names); k++)
        if (strcmp(t, json_type_names[k]) == 0)
            return (enum tp__xf_type)k;
    return TP_XF_TYPE_STRING;
}

static void check_entry(struct tp_plugin_build *b, const struct rsp_section *s, int op, int t,
                        size_t i)
{
    const char *entry = s->list[t][i];
    const void *at = tp__xf_cfg_item(b->cfg, b->node, tp__xf_op_names[op], target_names[t], i);
    struct tp_slice name, value;
    bool colon;
    tp__xf_split_pair(entry, &name, &value, &colon);
    bool pair = op != TP_XF_OP_REMOVE;
    const char *bad = NULL;

    if (name.len == 0)
        bad = "has an empty name";
    else if (pair && !colon)
        bad = "has no value (write \"name:value\")";
    else if (op == TP_XF_OP_RENAME && value.len == 0)
        bad = "renames to an empty name";
    else if (t == T_JSON) {
        if (pair && json_type_of(s, i) == TP_XF_TYPE_NUMBER && value.len &&
            !tp__xf_is_json_number(value.ptr, value.len))
            bad = "is typed \"number\" in json_types but its value is not a JSON number";
    } else {
        bad = tp__xf_check_header_entry(op, name, value);
    }
    if (bad)
        tp_plugin_build_error(b, at, "\"%s\" %s", entry, bad);
}

static int rsp_validate(struct tp_plugin_build *b, void *conf)
{
    struct rsp_conf *c = conf;
    int before = b->num_errors;

    for (int op = 0; op < TP_XF_OP_COUNT; op++) {
        const struct rsp_section *s = &c->op[op];
        for (size_t i = 0; i < s->num[T_JSON_TYPES]; i++) {
            const char *jt = s->list[T_JSON_TYPES][i];
            bool known = false;
            for (size_t k = 0; jt && k < TP_ARRAY_LEN(json_type_names); k++)
                known = known || strcmp(jt, json_type_names[k]) == 0;
            if (jt && !known)
                tp_plugin_build_error(b, tp__xf_cfg_item(b->cfg, b->node, tp__xf_op_names[op],
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

struct rsp_inst {
    struct tp__xf_entries ops[T_JSON + 1][TP_XF_OP_COUNT]; /* json: values typed by json_types */
    bool has_headers, has_json;
};

static void rsp_destroy(void *p)
{
    struct rsp_inst *in = p;
    if (!in)
        return;
    for (int t = T_HEADERS; t <= T_JSON; t++)
        for (int op = 0; op < TP_XF_OP_COUNT; op++)
            tp__xf_entries_free(&in->ops[t][op]);
    free(in);
}

static int rsp_compile(struct tp_plugin_build *b, const void *conf, void **inst)
{
    const struct rsp_conf *c = conf;
    struct rsp_inst *in = calloc(1, sizeof(*in));
    if (!in)
        return tp_plugin_build_error(b, NULL, "out of memory");
    for (int op = 0; op < TP_XF_OP_COUNT; op++) {
        const struct rsp_section *s = &c->op[op];
        for (int t = T_HEADERS; t <= T_JSON; t++) {
            struct tp__xf_entries *l = &in->ops[t][op];
            if (!s->num[t])
                continue;
            if (!(l->v = calloc(s->num[t], sizeof(*l->v))))
                goto out_oom;
            for (size_t i = 0; i < s->num[t]; i++) {
                struct tp_slice name, value;
                bool colon;
                tp__xf_split_pair(s->list[t][i], &name, &value, &colon);
                /* Kong skips value operations whose value is empty */
                if (op != TP_XF_OP_REMOVE && value.len == 0)
                    continue;
                enum tp__xf_type type = t == T_JSON ? json_type_of(s, i) : TP_XF_TYPE_STRING;
                if (tp__xf_entry_make(s->list[t][i], type, &l->v[l->n]) != 0)
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

    if (in->has_headers &&
        tp__xf_headers_apply(ctx, &tp__xf_response_headers, in->ops[T_HEADERS]) != 0)
        return TP_PLUGIN_ERROR;
    if (!in->has_json || tp_plugin_resp_is_local(ctx) || !has_body(ctx) ||
        !tp_plugin_resp_header(ctx, "Content-Type", 0, &ct) ||
        tp__xf_media_type(ct) != TP_XF_MEDIA_JSON)
        return TP_PLUGIN_CONTINUE;
    *tp_plugin_data(ctx) = &want_marker;
    tp_plugin_want_response_body(ctx);
    return TP_PLUGIN_CONTINUE;
}

static enum tp_plugin_status rsp_response_body(struct tp_plugin_ctx *ctx, const void *inst,
                                               struct tp_plugin_body *body)
{
    const struct rsp_inst *in = inst;
    struct tp__xf_json j = {0};
    struct tp_strbuf out = {.max = body->len + (TP_PLUGIN_BODY_MAX / 8)};
    bool changed = false;

    if (*tp_plugin_data(ctx) != &want_marker)
        return TP_PLUGIN_CONTINUE;
    int rc = tp__xf_json_parse(&j, body->ptr ? body->ptr : "", body->len);
    if (rc == 0)
        rc = tp__xf_json_apply(&j, in->ops[T_JSON], true, &changed);
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
    tp__xf_body_take(body, &out);
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
