/*
 * resource-acl: per-resource permissions — who may use which path with which method, with
 * "owner" rules such as "/users/{id} only for user {id} or an admin" (priority 930: after acl
 * and abac; docs/plugins/resource-acl.md).
 *
 *   plugins:
 *     - name: resource-acl
 *       config:
 *         default: deny                 # when no rule matches: deny (403) or allow
 *         rules:
 *           - paths: ["/users/{id}", "/users/{id}/orders/{order}"]
 *             methods: [GET, PUT]       # omitted: any method
 *             groups: [admin]           # consumers in one of these groups
 *             consumers: [support-bot]  # consumers with this username or id
 *             owner: {param: id, attribute: consumer.username}
 *           - routes: [health]          # a rule may name routes instead of (or with) paths
 *             public: true              # anyone, even without a consumer
 *
 * Rules are tried in order; the first whose paths (or routes) and methods match decides.
 * Path templates are matched segment by segment against the normalised path: a literal
 * segment matches itself, `{name}` any one non-empty segment, and a final `*` any number of
 * further segments (zero included); one trailing '/' of the request path is ignored.
 * A deciding rule allows a public request, or a consumer that is in one of its groups, is one
 * of its consumers, or owns the resource (the owner parameter equals the owner attribute).
 * Otherwise: 401 when the request has no consumer (and, for a jwt.claims owner, no claims),
 * else 403. A rule with no groups, consumers, owner nor public refuses everyone (403).
 */
#include "config/schema.h"
#include "plugins/authz_common.h"
#include "plugins/expr.h"
#include "turnpike/consumer.h"
#include "turnpike/plugin.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RACL_MSG_FORBIDDEN "Forbidden"
#define RACL_MSG_UNAUTHORIZED "Unauthorized"
#define RACL_MAX_SEGMENTS 64

enum seg_kind {
    SEG_LITERAL = 0,
    SEG_PARAM,
    SEG_REST, /* a final "*" */
};

struct racl_segment {
    enum seg_kind kind;
    struct tp_slice text; /* literal text or parameter name, inside the template string */
};

/** A compiled path template. */
struct racl_template {
    struct racl_segment *segs;
    size_t n;
    int owner_seg; /* index of the owner parameter's segment, or -1 */
    bool valid;    /* compiled without error */
};

/** The owner part of a rule: `param` of the path must equal `attribute`. */
struct racl_owner {
    char *param;
    char *attribute;
    struct tp_expr_attr_ref attr; /* parsed attribute */
};

/** One rule; the whole struct is filled by rule_schema and finish_rule. */
struct racl_rule {
    char **paths;
    size_t num_paths;
    struct racl_template *templates; /* [num_paths] */
    char **routes;
    size_t num_routes;
    char **methods;
    size_t num_methods;
    char **groups;
    size_t num_groups;
    char **consumers;
    size_t num_consumers;
    struct tp_conf_mark *consumer_marks; /* [num_consumers]: checked against the snapshot */
    struct racl_owner *owner; /* NULL: none */
    bool public_access;       /* `public` */
    struct tp_conf_mark mark;
};

/** The `config` of one resource-acl entry; also the runtime instance. */
struct racl_conf {
    struct racl_rule *rules;
    size_t num_rules;
    int default_allow; /* index in default_names: 0 deny, 1 allow */
};

static const char *const default_names[] = {"deny", "allow"};

/* ------------------------------------------------------------------------------------------ */
/* Path templates                                                                             */

static bool is_param_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* Split and check one template; NULL or a static message. segs point into s (kept by conf). */
static const char *template_compile(const char *s, struct racl_template *t)
{
    size_t len = strlen(s), n = 0;
    struct racl_segment segs[RACL_MAX_SEGMENTS];

    t->owner_seg = -1;
    if (s[0] == '~')
        return "regex paths are not supported here (name the route in \"routes\" and use its "
               "captures)";
    if (s[0] != '/')
        return "a path must start with '/'";
    for (size_t i = 1; i < len;) {
        size_t end = i;
        while (end < len && s[end] != '/')
            end++;
        struct tp_slice seg = {s + i, end - i};
        if (seg.len == 0)
            return "empty segment (\"//\")";
        if (n == RACL_MAX_SEGMENTS)
            return "too many segments";
        if (seg.len == 1 && seg.ptr[0] == '*') {
            if (end != len && end + 1 != len)
                return "'*' may only be the last segment";
            segs[n++] = (struct racl_segment){SEG_REST, seg};
            break;
        }
        if (seg.ptr[0] == '{') {
            if (seg.len < 3 || seg.ptr[seg.len - 1] != '}')
                return "a parameter is a whole segment: {name}";
            for (size_t k = 1; k + 1 < seg.len; k++)
                if (!is_param_char(seg.ptr[k]))
                    return "a parameter name is letters, digits and '_'";
            seg = (struct tp_slice){seg.ptr + 1, seg.len - 2};
            for (size_t k = 0; k < n; k++)
                if (segs[k].kind == SEG_PARAM && segs[k].text.len == seg.len &&
                    memcmp(segs[k].text.ptr, seg.ptr, seg.len) == 0)
                    return "a parameter name is used twice";
            segs[n++] = (struct racl_segment){SEG_PARAM, seg};
        } else {
            if (memchr(seg.ptr, '{', seg.len) || memchr(seg.ptr, '}', seg.len) ||
                memchr(seg.ptr, '*', seg.len))
                return "'{', '}' and '*' are only allowed as a whole segment";
            segs[n++] = (struct racl_segment){SEG_LITERAL, seg};
        }
        i = end + 1;
    }
    t->n = n;
    t->segs = n ? malloc(n * sizeof(*t->segs)) : NULL;
    if (n && !t->segs)
        return "out of memory";
    if (n)
        memcpy(t->segs, segs, n * sizeof(*segs));
    t->valid = true;
    return NULL;
}

static bool slice_eq(struct tp_slice a, struct tp_slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

/* Match path (normalised, starting with '/') segment-wise; *owner receives the owner segment. */
static bool template_match(const struct racl_template *t, struct tp_slice path,
                           struct tp_slice *owner)
{
    const char *p = path.ptr + 1;
    size_t len = path.len - 1, i = 0;
    bool more = len > 0;

    for (size_t k = 0; k < t->n; k++) {
        const struct racl_segment *seg = &t->segs[k];
        if (seg->kind == SEG_REST)
            return true;
        if (!more)
            return false;
        size_t end = i;
        while (end < len && p[end] != '/')
            end++;
        struct tp_slice s = {p + i, end - i};
        if (seg->kind == SEG_LITERAL ? !slice_eq(s, seg->text) : s.len == 0)
            return false;
        if ((int)k == t->owner_seg)
            *owner = s;
        more = end < len;
        i = end + 1;
    }
    return !more;
}

/* ------------------------------------------------------------------------------------------ */
/* Config                                                                                     */

static void free_owner(struct racl_owner *o)
{
    if (!o)
        return;
    free(o->param);
    free(o->attribute);
    tp_expr_attr_free(&o->attr);
    free(o);
}

static void free_rule(struct racl_rule *r)
{
    for (size_t i = 0; r->templates && i < r->num_paths; i++)
        free(r->templates[i].segs);
    free(r->templates);
    tp__authz_list_free(r->paths, r->num_paths);
    tp__authz_list_free(r->routes, r->num_routes);
    tp__authz_list_free(r->methods, r->num_methods);
    tp__authz_list_free(r->groups, r->num_groups);
    tp__authz_list_free(r->consumers, r->num_consumers);
    free(r->consumer_marks);
    free_owner(r->owner);
    memset(r, 0, sizeof(*r));
}

static void parse_paths(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct racl_rule *r = obj;

    for (size_t i = 0; r->templates && i < r->num_paths; i++)
        free(r->templates[i].segs);
    free(r->templates);
    tp__authz_list_free(r->paths, r->num_paths);
    r->templates = NULL;
    r->paths = tp__cfg_string_list(ctx, key, value, NULL, &r->num_paths);
    if (value->type == YAML_SEQUENCE_NODE && r->num_paths == 0)
        tp__cfg_error(ctx, value, "\"%s\" must not be empty (omit it to match every path)", key);
    if (r->num_paths == 0)
        return;
    r->templates = calloc(r->num_paths, sizeof(*r->templates));
    if (!r->templates) {
        tp__cfg_oom(ctx, value);
        return;
    }
    for (size_t i = 0; i < r->num_paths; i++) {
        const char *why = r->paths[i] ? template_compile(r->paths[i], &r->templates[i]) : NULL;
        if (why)
            tp__cfg_error(ctx, tp__cfg_item(ctx, value, i),
                          "\"%s\": invalid path template "
                          "\"%s\": %s",
                          key, r->paths[i], why);
    }
}

static void parse_methods(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct racl_rule *r = obj;

    tp__authz_list_free(r->methods, r->num_methods);
    r->methods = tp__cfg_string_list(ctx, key, value, tp__authz_cfg_method, &r->num_methods);
    if (value->type == YAML_SEQUENCE_NODE && r->num_methods == 0)
        tp__cfg_error(ctx, value, "\"%s\" must not be empty (omit it for any method)", key);
}

/* Consumer names, with the position of each: compile reports one that no consumer has. */
static void parse_consumers(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                            void *obj)
{
    struct racl_rule *r = obj;

    tp__authz_list_free(r->consumers, r->num_consumers);
    free(r->consumer_marks);
    r->consumer_marks = NULL;
    r->consumers = tp__cfg_string_list(ctx, key, value, NULL, &r->num_consumers);
    if (r->num_consumers == 0)
        return;
    r->consumer_marks = calloc(r->num_consumers, sizeof(*r->consumer_marks));
    if (!r->consumer_marks) {
        tp__cfg_oom(ctx, value);
        return;
    }
    for (size_t i = 0; i < r->num_consumers; i++) {
        const yaml_node_t *item = tp__cfg_item(ctx, value, i);
        r->consumer_marks[i] = tp__cfg_mark(item ? item : value);
    }
}

static const struct tp__cfg_directive owner_keys[] = {
    TP__CFG_STRING_KEY("param", struct racl_owner, param, NULL),
    TP__CFG_STRING_KEY("attribute", struct racl_owner, attribute, "consumer.username"),
};

TP__CFG_TABLE_CHECK(owner_keys);

/* Only verified identity may prove ownership: a header could be sent by anyone. */
static bool owner_attribute_ok(enum tp_expr_attr a)
{
    return a == TP_EXPR_CONSUMER_ID || a == TP_EXPR_CONSUMER_USERNAME ||
           a == TP_EXPR_CONSUMER_CUSTOM_ID || a == TP_EXPR_JWT_CLAIMS;
}

static void finish_owner(struct tp__cfg_ctx *ctx, yaml_node_t *node, void *obj)
{
    struct racl_owner *o = obj;
    yaml_node_t *an = tp__cfg_lookup(ctx, node, "attribute");
    struct tp_expr_error err;
    int line, col;

    if (!o->param)
        tp__cfg_error(ctx, node, "missing required key \"param\" in owner");
    if (!o->attribute)
        return;
    int rc = tp_expr_attr_parse(o->attribute, strlen(o->attribute), &o->attr, &err);
    if (rc == 0 && !owner_attribute_ok(o->attr.attr)) {
        rc = TP_EINVAL;
        err.offset = 0;
        snprintf(err.message, sizeof(err.message),
                 "an owner is one of consumer.id, "
                 "consumer.username, consumer.custom_id or jwt.claims.<name>");
    }
    if (rc == TP_ENOMEM) {
        tp__cfg_oom(ctx, node);
    } else if (rc != 0) {
        line = tp__cfg_mark(an ? an : node).line;
        col = tp__cfg_mark(an ? an : node).column;
        if (an)
            tp_expr_yaml_position(ctx->text, ctx->len, an, err.offset, &line, &col);
        tp__cfg_error_at(ctx, line, col, "\"attribute\": %s", err.message);
    }
}

static const struct tp__cfg_schema owner_schema = {
    .what = "resource-acl owner",
    .keys = owner_keys,
    .num_keys = TP_ARRAY_LEN(owner_keys),
    .size = sizeof(struct racl_owner),
    .mark_offset = -1,
    .finish = finish_owner,
};

static void parse_owner(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct racl_rule *r = obj;

    (void)key;
    free_owner(r->owner);
    r->owner = calloc(1, sizeof(*r->owner));
    if (!r->owner) {
        tp__cfg_oom(ctx, value);
        return;
    }
    tp__cfg_object(ctx, &owner_schema, value, r->owner);
}

/* Index of parameter `name` in t, or -1. */
static int find_param(const struct racl_template *t, const char *name)
{
    for (size_t k = 0; k < t->n; k++)
        if (t->segs[k].kind == SEG_PARAM && slice_eq(t->segs[k].text, tp_slice_cstr(name)))
            return (int)k;
    return -1;
}

static void finish_rule(struct tp__cfg_ctx *ctx, yaml_node_t *node, void *obj)
{
    struct racl_rule *r = obj;
    bool principals = r->num_groups || r->num_consumers || r->owner;

    if (r->public_access && principals)
        tp__cfg_error(ctx, node,
                      "a public rule allows everyone: \"groups\", \"consumers\" "
                      "and \"owner\" would have no effect");
    if (!r->owner || !r->owner->param)
        return;
    /* With paths, the owner parameter comes from the rule's own templates: each needs it. */
    for (size_t i = 0; r->templates && i < r->num_paths; i++) {
        if (!r->templates[i].valid)
            continue; /* already reported */
        r->templates[i].owner_seg = find_param(&r->templates[i], r->owner->param);
        if (r->templates[i].owner_seg < 0)
            tp__cfg_error(ctx, tp__cfg_lookup(ctx, node, "owner"),
                          "owner parameter \"%s\" is "
                          "not in path \"%s\"",
                          r->owner->param, r->paths[i]);
    }
}

static const struct tp__cfg_directive rule_keys[] = {
    TP__CFG_CUSTOM_KEY("paths", parse_paths, false),
    TP__CFG_STRLIST_KEY("routes", struct racl_rule, routes, num_routes),
    TP__CFG_CUSTOM_KEY("methods", parse_methods, false),
    TP__CFG_STRLIST_KEY("groups", struct racl_rule, groups, num_groups),
    TP__CFG_CUSTOM_KEY("consumers", parse_consumers, false),
    TP__CFG_CUSTOM_KEY("owner", parse_owner, false),
    TP__CFG_BOOL_KEY("public", struct racl_rule, public_access, false),
};

TP__CFG_TABLE_CHECK(rule_keys);

static const struct tp__cfg_schema rule_schema = {
    .what = "resource-acl rule",
    .keys = rule_keys,
    .num_keys = TP_ARRAY_LEN(rule_keys),
    .size = sizeof(struct racl_rule),
    .mark_offset = offsetof(struct racl_rule, mark),
    .finish = finish_rule,
};

static void free_rules(struct racl_rule *rules, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free_rule(&rules[i]);
    free(rules);
}

static void parse_rules(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct racl_conf *c = obj;

    free_rules(c->rules, c->num_rules);
    c->rules = tp__cfg_list(ctx, key, value, &rule_schema, &c->num_rules);
}

static void parse_default(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct racl_conf *c = obj;

    tp__cfg_enum(ctx, key, value, default_names, TP_ARRAY_LEN(default_names), &c->default_allow);
}

static const struct tp__cfg_directive racl_keys[] = {
    TP__CFG_CUSTOM_KEY("rules", parse_rules, true),
    TP__CFG_CUSTOM_KEY("default", parse_default, false),
};

TP__CFG_TABLE_CHECK(racl_keys);

static const struct tp__cfg_schema racl_schema = {
    .what = "resource-acl config",
    .keys = racl_keys,
    .num_keys = TP_ARRAY_LEN(racl_keys),
    .size = sizeof(struct racl_conf),
    .mark_offset = -1,
};

static void racl_free_conf(void *vconf)
{
    struct racl_conf *c = vconf;

    free_rules(c->rules, c->num_rules);
    c->rules = NULL;
    c->num_rules = 0;
}

/* Report at `mark` (compile has no YAML nodes: the marks were kept at load). */
static int report_at(struct tp_plugin_build *b, struct tp_conf_mark mark, const char *what,
                     size_t rule, const char *name)
{
    int line = b->line, column = b->column;

    b->line = mark.line;
    b->column = mark.column;
    tp_plugin_build_error(b, NULL, "rules[%zu]: %s \"%s\"", rule, what, name);
    b->line = line;
    b->column = column;
    return -1;
}

/* A rule naming a route or a consumer that does not exist is a typo that would never match
 * (a consumer added later would need a reload anyway: consumers live in the same file). */
static int racl_compile(struct tp_plugin_build *b, const void *vconf, void **inst)
{
    const struct racl_conf *c = vconf;
    int rc = 0;

    *inst = (void *)vconf;
    for (size_t i = 0; i < c->num_rules; i++) {
        const struct racl_rule *r = &c->rules[i];
        for (size_t j = 0; j < r->num_routes; j++)
            if (r->routes[j] && !tp__authz_route_exists(b, r->routes[j]))
                rc = report_at(b, r->mark, "no route is named", i, r->routes[j]);
        for (size_t j = 0; b->snap && r->consumer_marks && j < r->num_consumers; j++)
            if (r->consumers[j] && !tp_consumer_find(b->snap, tp_slice_cstr(r->consumers[j])))
                rc = report_at(b, r->consumer_marks[j], "no consumer has the username or id", i,
                               r->consumers[j]);
    }
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Request                                                                                    */

static bool list_has(char *const *list, size_t n, struct tp_slice s)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] && slice_eq(tp_slice_cstr(list[i]), s))
            return true;
    return false;
}

/* Does rule r apply to this request? *owner gets the owner parameter when it does. */
static bool rule_matches(const struct racl_rule *r, struct tp_plugin_ctx *ctx, struct tp_slice path,
                         struct tp_slice *owner, bool *has_owner)
{
    if (r->num_methods && !list_has(r->methods, r->num_methods, tp_plugin_method(ctx)))
        return false;
    if (r->num_routes &&
        !list_has(r->routes, r->num_routes, tp_slice_cstr(tp_plugin_route_name(ctx))))
        return false;
    *has_owner = false;
    if (r->num_paths) {
        for (size_t i = 0; i < r->num_paths; i++) {
            *owner = (struct tp_slice){NULL, 0};
            if (template_match(&r->templates[i], path, owner)) {
                *has_owner = r->templates[i].owner_seg >= 0;
                return true;
            }
        }
        return false;
    }
    if (r->owner && r->owner->param)
        *has_owner = tp_plugin_route_param(ctx, r->owner->param, owner);
    return true;
}

/* Is the request's identity the owner named by the path? */
static bool is_owner(const struct racl_owner *o, struct tp_plugin_ctx *ctx, struct tp_slice id)
{
    struct tp_expr_value v;
    char num[24];
    int len;

    if (tp_plugin_is_anonymous(ctx) || id.len == 0)
        return false;
    tp_expr_attr_fetch(&o->attr, tp_expr_request_lookup, ctx, &v);
    if (v.kind == TP_EXPR_V_STRING)
        return slice_eq(v.u.str, id);
    /* An integer claim ("sub": 42) owns "/users/42": its exact decimal form, printed from the
     * int64 (through a double, 1234567890123456789 would become ...784). A real with an
     * integral value below 2^53 (42.0) owns the same form, as it always did. */
    if (v.kind == TP_EXPR_V_INTEGER)
        len = snprintf(num, sizeof(num), "%" PRId64, v.u.i);
    else if (v.kind == TP_EXPR_V_NUMBER && v.u.num >= 0 && v.u.num < 9007199254740992.0 &&
             v.u.num == (double)(uint64_t)v.u.num)
        len = (int)tp_fmt_u64(num, (uint64_t)v.u.num);
    else
        return false;
    return len > 0 && (size_t)len < sizeof(num) &&
           slice_eq((struct tp_slice){num, (size_t)len}, id);
}

static enum tp_plugin_status refuse(struct tp_plugin_ctx *ctx, int status, const char *reason)
{
    return tp__authz_refuse(ctx, status,
                            status == 401 ? RACL_MSG_UNAUTHORIZED : RACL_MSG_FORBIDDEN, reason);
}

static enum tp_plugin_status decide(const struct racl_rule *r, struct tp_plugin_ctx *ctx,
                                    struct tp_slice owner, bool has_owner)
{
    const struct tp_consumer *c = tp_plugin_consumer(ctx);

    if (r->public_access)
        return TP_PLUGIN_CONTINUE;
    if (!r->num_groups && !r->num_consumers && !r->owner)
        return refuse(ctx, 403, "resource-acl: refused by rule");
    bool claims_owner = r->owner && r->owner->attr.attr == TP_EXPR_JWT_CLAIMS;
    if (!c && !(claims_owner && tp_plugin_claims(ctx)))
        return refuse(ctx, 401, "resource-acl: no consumer");
    if (c && tp__authz_in_any_group(c, r->groups, r->num_groups))
        return TP_PLUGIN_CONTINUE;
    for (size_t i = 0; c && i < r->num_consumers; i++)
        if (r->consumers[i] && ((c->username && strcmp(c->username, r->consumers[i]) == 0) ||
                                (c->id && strcmp(c->id, r->consumers[i]) == 0)))
            return TP_PLUGIN_CONTINUE;
    if (r->owner && has_owner && is_owner(r->owner, ctx, owner))
        return TP_PLUGIN_CONTINUE;
    return refuse(ctx, 403, "resource-acl: not the owner nor in an allowed group");
}

static enum tp_plugin_status racl_access(struct tp_plugin_ctx *ctx, const void *inst)
{
    const struct racl_conf *c = inst;
    struct tp_slice path = tp_plugin_path(ctx), owner = {NULL, 0};
    bool has_owner = false;

    if (path.len == 0 || path.ptr[0] != '/')
        path = TP_SLICE_LIT("/");
    if (path.len > 1 && path.ptr[path.len - 1] == '/')
        path.len--; /* "/users/alice/" is the same resource as "/users/alice" */
    for (size_t i = 0; i < c->num_rules; i++)
        if (rule_matches(&c->rules[i], ctx, path, &owner, &has_owner))
            return decide(&c->rules[i], ctx, owner, has_owner);
    if (c->default_allow)
        return TP_PLUGIN_CONTINUE;
    return refuse(ctx, 403, "resource-acl: no rule matched");
}

const struct tp_plugin tp_plugin_resource_acl = {
    .name = "resource-acl",
    .priority = 930,
    .schema = &racl_schema,
    .conf_size = sizeof(struct racl_conf),
    .free_conf = racl_free_conf,
    .compile = racl_compile,
    .access = racl_access,
};
