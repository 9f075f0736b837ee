/*
 * abac: attribute-based access control with policy expressions (priority 940: after acl,
 * before rate limiting; docs/plugins/abac.md).
 *
 *   plugins:
 *     - name: abac
 *       config:
 *         allow: '"admin" in consumer.groups || jwt.claims.sub == route.params.user_id'
 *         deny:                       # optional; a string or a list of strings
 *           - 'client.ip in "10.66.0.0/16"'
 *         status: 403
 *         message: Forbidden
 *
 * `allow` and `deny` are each one expression or a list of them (src/plugins/expr.c). A request
 * is refused when any deny expression is true (deny wins), else when allow is configured and
 * none of its expressions is true. At least one of the two is required. Expressions are parsed
 * and type-checked when the config is loaded: errors name the file line and the column of the
 * offending token inside the YAML scalar.
 */
#include "config/schema.h"
#include "plugins/authz_common.h"
#include "plugins/expr.h"
#include "turnpike/plugin.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define ABAC_DEFAULT_MESSAGE "Forbidden"
#define ABAC_MAX_POLICIES 256 /* per list */

/** One compiled expression of `allow` or `deny`. */
struct abac_policy {
    struct tp_expr *expr;
};

/** The `config` of one abac entry; also the runtime instance (read-only once loaded). */
struct abac_conf {
    struct abac_policy *allow;
    size_t num_allow;
    struct abac_policy *deny;
    size_t num_deny;
    bool has_allow, has_deny; /* the key was written (a list may be empty) */
    int status;
    char *message;
};

/* ------------------------------------------------------------------------------------------ */
/* Request attributes                                                                         */

static void put_cstr(struct tp_expr_value *out, const char *s)
{
    if (!s)
        return;
    out->kind = TP_EXPR_V_STRING;
    out->u.str = tp_slice_cstr(s);
}

static void put_slice(struct tp_expr_value *out, bool present, struct tp_slice s)
{
    if (!present)
        return;
    out->kind = TP_EXPR_V_STRING;
    out->u.str = s;
}

static void put_time(struct tp_expr_value *out, struct tp_plugin_ctx *ctx, enum tp_expr_attr a)
{
    time_t now = (time_t)tp_plugin_time(ctx);
    struct tm tm;

    if (!gmtime_r(&now, &tm))
        return;
    out->kind = TP_EXPR_V_INTEGER;
    out->u.i = a == TP_EXPR_TIME_HOUR     ? tm.tm_hour
                 : a == TP_EXPR_TIME_MINUTE ? tm.tm_min
                                            : tm.tm_wday;
}

static void put_consumer(struct tp_expr_value *out, struct tp_plugin_ctx *ctx, enum tp_expr_attr a)
{
    const struct tp_consumer *c = tp_plugin_consumer(ctx);

    if (!c)
        return;
    switch (a) {
    case TP_EXPR_CONSUMER_ID:
        put_cstr(out, c->id);
        break;
    case TP_EXPR_CONSUMER_USERNAME:
        put_cstr(out, c->username);
        break;
    case TP_EXPR_CONSUMER_CUSTOM_ID:
        put_cstr(out, c->custom_id);
        break;
    default:
        out->kind = TP_EXPR_V_STRINGS;
        out->u.strs.items = c->groups;
        out->u.strs.n = c->num_groups;
        break;
    }
}

void tp_expr_request_lookup(void *env, const struct tp_expr_attr_ref *ref,
                            struct tp_expr_value *out)
{
    struct tp_plugin_ctx *ctx = env;
    struct tp_slice v = {NULL, 0};
    json_t *claims;

    switch (ref->attr) {
    case TP_EXPR_CONSUMER_ID:
    case TP_EXPR_CONSUMER_USERNAME:
    case TP_EXPR_CONSUMER_CUSTOM_ID:
    case TP_EXPR_CONSUMER_GROUPS:
        put_consumer(out, ctx, ref->attr);
        break;
    case TP_EXPR_CONSUMER_ANONYMOUS:
        out->kind = TP_EXPR_V_BOOL;
        out->u.b = tp_plugin_is_anonymous(ctx);
        break;
    case TP_EXPR_JWT_CLAIMS:
        if ((claims = tp_plugin_claims(ctx)) != NULL) {
            out->kind = TP_EXPR_V_JSON;
            out->u.json = claims;
        }
        break;
    case TP_EXPR_REQUEST_METHOD:
        put_slice(out, true, tp_plugin_method(ctx));
        break;
    case TP_EXPR_REQUEST_PATH:
        put_slice(out, true, tp_plugin_path(ctx));
        break;
    case TP_EXPR_REQUEST_HEADER:
        put_slice(out, tp_plugin_header(ctx, ref->name, 0, &v), v);
        break;
    case TP_EXPR_REQUEST_QUERY:
        put_slice(out, tp_plugin_query_arg(ctx, ref->name, &v), v);
        break;
    case TP_EXPR_ROUTE_NAME:
        put_cstr(out, tp_plugin_route_name(ctx));
        break;
    case TP_EXPR_ROUTE_PARAM:
        put_slice(out, tp_plugin_route_param(ctx, ref->name, &v), v);
        break;
    case TP_EXPR_SERVICE_NAME:
        put_cstr(out, tp_plugin_service_name(ctx));
        break;
    case TP_EXPR_CLIENT_IP:
        tp_plugin_client_addr(ctx, &out->u.ip.family, out->u.ip.addr);
        if (out->u.ip.family == AF_INET || out->u.ip.family == AF_INET6)
            out->kind = TP_EXPR_V_IP;
        break;
    case TP_EXPR_TIME_HOUR:
    case TP_EXPR_TIME_MINUTE:
    case TP_EXPR_TIME_WEEKDAY:
        put_time(out, ctx, ref->attr);
        break;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Config                                                                                     */

/* Compile one expression scalar; errors point at the offending token inside the file. */
static void compile_policy(struct tp__cfg_ctx *ctx, const char *key, const yaml_node_t *node,
                           struct abac_policy *out)
{
    struct tp_expr_error err;
    int line, col;

    if (node->type != YAML_SCALAR_NODE || tp__cfg_is_null(node)) {
        tp__cfg_error(ctx, node, "\"%s\": expected an expression (a string)", key);
        return;
    }
    const char *src = (const char *)node->data.scalar.value;
    int rc = tp_expr_compile(src, node->data.scalar.length, &out->expr, &err);
    if (rc == TP_ENOMEM) {
        tp__cfg_oom(ctx, node);
    } else if (rc != 0) {
        tp_expr_yaml_position(ctx->text, ctx->len, node, err.offset, &line, &col);
        tp__cfg_error_at(ctx, line, col, "\"%s\": %s", key, err.message);
    }
}

static void free_policies(struct abac_policy *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        tp_expr_free(p[i].expr);
    free(p);
}

/* `allow` / `deny`: one expression, or a list of them (any of which decides). */
static void parse_policies(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                           struct abac_policy **list, size_t *num)
{
    bool seq = value->type == YAML_SEQUENCE_NODE;
    size_t n = seq ? tp__cfg_count(value) : 1;

    free_policies(*list, *num);
    *list = NULL;
    *num = 0;
    if (n > ABAC_MAX_POLICIES) {
        tp__cfg_error(ctx, value, "\"%s\" has more than %d expressions", key, ABAC_MAX_POLICIES);
        return;
    }
    if (n == 0)
        return;
    struct abac_policy *p = calloc(n, sizeof(*p));
    if (!p) {
        tp__cfg_oom(ctx, value);
        return;
    }
    *list = p;
    *num = n;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = seq ? tp__cfg_node(ctx, value->data.sequence.items.start[i]) : value;
        if (item)
            compile_policy(ctx, key, item, &p[i]);
    }
}

static void parse_allow(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct abac_conf *c = obj;

    c->has_allow = true;
    parse_policies(ctx, key, value, &c->allow, &c->num_allow);
}

static void parse_deny(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct abac_conf *c = obj;

    c->has_deny = true;
    parse_policies(ctx, key, value, &c->deny, &c->num_deny);
}

static const struct tp__cfg_directive abac_keys[] = {
    TP__CFG_CUSTOM_KEY("allow", parse_allow, false),
    TP__CFG_CUSTOM_KEY("deny", parse_deny, false),
    TP__CFG_INT_KEY("status", struct abac_conf, status, 400, 599, 403),
    TP__CFG_STRING_KEY("message", struct abac_conf, message, ABAC_DEFAULT_MESSAGE),
};

TP__CFG_TABLE_CHECK(abac_keys);

static const struct tp__cfg_schema abac_schema = {
    .what = "abac config",
    .keys = abac_keys,
    .num_keys = TP_ARRAY_LEN(abac_keys),
    .size = sizeof(struct abac_conf),
    .mark_offset = -1,
};

static int abac_validate(struct tp_plugin_build *b, void *vconf)
{
    struct abac_conf *c = vconf;

    if (!c->has_allow && !c->has_deny)
        return tp_plugin_build_error(b, b->node, "one of \"allow\" or \"deny\" is required");
    if (c->has_allow && c->num_allow == 0) {
        const void *n = b->cfg && b->node ? tp__cfg_lookup(b->cfg, b->node, "allow") : NULL;
        return tp_plugin_build_error(b, n,
                                     "\"allow\" must not be empty (an empty list would "
                                     "refuse every request; omit it instead)");
    }
    return 0;
}

static void abac_free_conf(void *vconf)
{
    struct abac_conf *c = vconf;

    free_policies(c->allow, c->num_allow);
    free_policies(c->deny, c->num_deny);
    c->allow = c->deny = NULL;
    c->num_allow = c->num_deny = 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Request                                                                                    */

static bool any_true(const struct abac_policy *p, size_t n, struct tp_plugin_ctx *ctx)
{
    for (size_t i = 0; i < n; i++)
        if (tp_expr_eval(p[i].expr, tp_expr_request_lookup, ctx))
            return true;
    return false;
}

static enum tp_plugin_status abac_access(struct tp_plugin_ctx *ctx, const void *inst)
{
    const struct abac_conf *c = inst;
    const char *reason = NULL;

    if (any_true(c->deny, c->num_deny, ctx))
        reason = "abac: a deny policy matched";
    else if (c->num_allow && !any_true(c->allow, c->num_allow, ctx))
        reason = "abac: no allow policy matched";
    if (!reason)
        return TP_PLUGIN_CONTINUE;
    return tp__authz_refuse(ctx, c->status, c->message, reason);
}

const struct tp_plugin tp_plugin_abac = {
    .name = "abac",
    .priority = 940,
    .schema = &abac_schema,
    .conf_size = sizeof(struct abac_conf),
    .validate = abac_validate,
    .free_conf = abac_free_conf,
    .access = abac_access,
};
