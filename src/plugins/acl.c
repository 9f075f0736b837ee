/*
 * acl: allow or deny consumers by group (Kong's plugin of the same name, priority 950;
 * docs/plugins/acl.md), extended with role-based permissions per method and route.
 *
 *   plugins:
 *     - name: acl
 *       config:
 *         allow: [admin, users]            # or deny: [...] — exactly one of them (Kong)
 *         hide_groups_header: false        # true: the upstream gets no X-Consumer-Groups
 *         always_use_authenticated_groups: false   # accepted (Kong); no effect here
 *         include_consumer_groups: false            # accepted (Kong); no effect here
 *         permissions:                     # turnpike extension (RBAC)
 *           admin:
 *             - {methods: ["*"], routes: ["*"]}
 *           users:
 *             - {methods: [GET, HEAD], routes: [orders-read]}
 *
 * Order of the checks: no consumer → 401 "Unauthorized" (Kong). Then allow / deny (Kong's
 * rule); then, when `permissions` is set, some group of the consumer must have an entry
 * listing the request's method and its route's name; any refusal → 403 "You cannot consume
 * this service" (Kong's message). The anonymous consumer of an auth plugin is a consumer like
 * any other here, as in Kong: give it groups to let unauthenticated requests through.
 */
#include "config/schema.h"
#include "plugins/authz_common.h"
#include "turnpike/consumer.h"
#include "turnpike/plugin.h"

#include <stdlib.h>
#include <string.h>

#define ACL_MSG_DENIED "You cannot consume this service"
#define ACL_MSG_NO_CONSUMER "Unauthorized"
#define ACL_WILDCARD "*"

/** One permission entry: the methods and routes a role may use ("*" = any). */
struct acl_permission {
    char **methods;
    size_t num_methods;
    char **routes;
    size_t num_routes;
    bool has_methods, has_routes;
    struct tp_conf_mark mark;
};

/** The permissions of one group (role). */
struct acl_role {
    char *group;
    struct acl_permission *perms;
    size_t num_perms;
    struct tp_conf_mark mark;
};

/** The `config` of one acl entry; also the runtime instance (read-only once loaded). */
struct acl_conf {
    char **allow;
    size_t num_allow;
    char **deny;
    size_t num_deny;
    bool has_allow, has_deny, has_permissions; /* written (null is not: the walker skips it) */
    bool hide_groups_header;
    bool always_use_authenticated_groups;
    bool include_consumer_groups;
    struct acl_role *roles;
    size_t num_roles;
};

/* ------------------------------------------------------------------------------------------ */
/* Config                                                                                     */

/* A list of strings whose presence counts: an empty `allow` refuses every consumer. */
static void parse_group_list(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                             char ***list, size_t *num, bool *has)
{
    tp__authz_list_free(*list, *num);
    *list = tp__cfg_string_list(ctx, key, value, NULL, num);
    *has = true;
}

static void parse_allow(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct acl_conf *c = obj;

    parse_group_list(ctx, key, value, &c->allow, &c->num_allow, &c->has_allow);
}

static void parse_deny(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct acl_conf *c = obj;

    parse_group_list(ctx, key, value, &c->deny, &c->num_deny, &c->has_deny);
}

/* An HTTP method (tp__authz_cfg_method), or "*" for any. */
static int check_method(struct tp__cfg_ctx *ctx, const char *key, const yaml_node_t *node, char *s)
{
    if (strcmp(s, ACL_WILDCARD) == 0)
        return 0;
    return tp__authz_cfg_method(ctx, key, node, s);
}

static void parse_perm_list(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                            char ***list, size_t *num, tp__cfg_check_fn check, bool *has)
{
    tp__authz_list_free(*list, *num);
    *list = tp__cfg_string_list(ctx, key, value, check, num);
    *has = true;
    if (value->type == YAML_SEQUENCE_NODE && *num == 0)
        tp__cfg_error(ctx, value,
                      "\"%s\" must not be empty (write [\"*\"] for any, or omit "
                      "it)",
                      key);
}

static void parse_perm_methods(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                               void *obj)
{
    struct acl_permission *p = obj;

    parse_perm_list(ctx, key, value, &p->methods, &p->num_methods, check_method, &p->has_methods);
}

static void parse_perm_routes(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                              void *obj)
{
    struct acl_permission *p = obj;

    parse_perm_list(ctx, key, value, &p->routes, &p->num_routes, NULL, &p->has_routes);
}

static const struct tp__cfg_directive perm_keys[] = {
    TP__CFG_CUSTOM_KEY("methods", parse_perm_methods, false),
    TP__CFG_CUSTOM_KEY("routes", parse_perm_routes, false),
};

TP__CFG_TABLE_CHECK(perm_keys);

static void finish_perm(struct tp__cfg_ctx *ctx, yaml_node_t *node, void *obj)
{
    struct acl_permission *p = obj;

    if (!p->has_methods && !p->has_routes)
        tp__cfg_error(ctx, node, "a permission needs \"methods\" or \"routes\"");
}

static const struct tp__cfg_schema perm_schema = {
    .what = "acl permission",
    .keys = perm_keys,
    .num_keys = TP_ARRAY_LEN(perm_keys),
    .size = sizeof(struct acl_permission),
    .mark_offset = offsetof(struct acl_permission, mark),
    .finish = finish_perm,
};

static void free_roles(struct acl_role *roles, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < roles[i].num_perms; k++) {
            tp__authz_list_free(roles[i].perms[k].methods, roles[i].perms[k].num_methods);
            tp__authz_list_free(roles[i].perms[k].routes, roles[i].perms[k].num_routes);
        }
        free(roles[i].perms);
        free(roles[i].group);
    }
    free(roles);
}

/* permissions: {group: [{methods: [...], routes: [...]}, ...], ...} */
static void parse_permissions(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                              void *obj)
{
    struct acl_conf *c = obj;

    free_roles(c->roles, c->num_roles);
    c->roles = NULL;
    c->num_roles = 0;
    c->has_permissions = true;
    if (value->type != YAML_MAPPING_NODE) {
        tp__cfg_error(ctx, value,
                      "\"%s\": expected a mapping of group names to lists of "
                      "permissions",
                      key);
        return;
    }
    size_t n = (size_t)(value->data.mapping.pairs.top - value->data.mapping.pairs.start);
    if (n == 0)
        return;
    c->roles = calloc(n, sizeof(*c->roles));
    if (!c->roles) {
        tp__cfg_oom(ctx, value);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct acl_role *r = &c->roles[c->num_roles];
        yaml_node_t *k = tp__cfg_pair_key(ctx, value, i, "acl permissions");
        yaml_node_t *v = k ? tp__cfg_node(ctx, value->data.mapping.pairs.start[i].value) : NULL;
        if (!k || !v || tp__cfg_string(ctx, key, k, &r->group) != 0)
            continue;
        c->num_roles++;
        r->mark = tp__cfg_mark(k);
        for (size_t j = 0; j + 1 < c->num_roles; j++)
            if (strcmp(c->roles[j].group, r->group) == 0)
                tp__cfg_error(ctx, k, "\"%s\": group \"%s\" is listed twice (first at %d:%d)", key,
                              r->group, c->roles[j].mark.line, c->roles[j].mark.column);
        r->perms = tp__cfg_list(ctx, r->group, v, &perm_schema, &r->num_perms);
    }
}

static const struct tp__cfg_directive acl_keys[] = {
    TP__CFG_CUSTOM_KEY("allow", parse_allow, false),
    TP__CFG_CUSTOM_KEY("deny", parse_deny, false),
    TP__CFG_BOOL_KEY("hide_groups_header", struct acl_conf, hide_groups_header, false),
    TP__CFG_BOOL_KEY("always_use_authenticated_groups", struct acl_conf,
                     always_use_authenticated_groups, false),
    TP__CFG_BOOL_KEY("include_consumer_groups", struct acl_conf, include_consumer_groups, false),
    TP__CFG_CUSTOM_KEY("permissions", parse_permissions, false),
};

TP__CFG_TABLE_CHECK(acl_keys);

static const struct tp__cfg_schema acl_schema = {
    .what = "acl config",
    .keys = acl_keys,
    .num_keys = TP_ARRAY_LEN(acl_keys),
    .size = sizeof(struct acl_conf),
    .mark_offset = -1,
};

static int acl_validate(struct tp_plugin_build *b, void *vconf)
{
    struct acl_conf *c = vconf;

    /* Kong's entity checks: only_one_of and at_least_one_of {allow, deny}; permissions alone
     * is our extension. */
    if (c->has_allow && c->has_deny)
        return tp_plugin_build_error(
            b, b->cfg && b->node ? tp__cfg_lookup(b->cfg, b->node, "deny") : NULL,
            "only one of \"allow\" and \"deny\" may be set");
    if (!c->has_allow && !c->has_deny && !c->has_permissions)
        return tp_plugin_build_error(b, b->node,
                                     "one of \"allow\", \"deny\" or \"permissions\" is required");
    return 0;
}

static void acl_free_conf(void *vconf)
{
    struct acl_conf *c = vconf;

    tp__authz_list_free(c->allow, c->num_allow);
    tp__authz_list_free(c->deny, c->num_deny);
    free_roles(c->roles, c->num_roles);
    c->allow = c->deny = NULL;
    c->roles = NULL;
    c->num_allow = c->num_deny = c->num_roles = 0;
}

/* A permission naming a route that does not exist is a typo that would silently refuse. */
static int acl_compile(struct tp_plugin_build *b, const void *vconf, void **inst)
{
    const struct acl_conf *c = vconf;
    int rc = 0, line = b->line, column = b->column;

    *inst = (void *)vconf;
    for (size_t i = 0; i < c->num_roles; i++) {
        for (size_t k = 0; k < c->roles[i].num_perms; k++) {
            const struct acl_permission *p = &c->roles[i].perms[k];
            for (size_t j = 0; j < p->num_routes; j++) {
                if (!p->routes[j] || strcmp(p->routes[j], ACL_WILDCARD) == 0 ||
                    tp__authz_route_exists(b, p->routes[j]))
                    continue;
                b->line = p->mark.line; /* point at the entry rather than the plugin */
                b->column = p->mark.column;
                rc = tp_plugin_build_error(b, NULL,
                                           "permissions of \"%s\": no route is named "
                                           "\"%s\"",
                                           c->roles[i].group, p->routes[j]);
            }
        }
    }
    b->line = line;
    b->column = column;
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Request                                                                                    */

static bool list_has(char *const *list, size_t n, bool present, struct tp_slice s)
{
    if (!present)
        return true; /* omitted: any */
    for (size_t i = 0; i < n; i++) {
        if (!list[i])
            continue;
        if (strcmp(list[i], ACL_WILDCARD) == 0)
            return true;
        if (strlen(list[i]) == s.len && memcmp(list[i], s.ptr, s.len) == 0)
            return true;
    }
    return false;
}

/* Does some group of c grant this method on this route? */
static bool permitted(const struct acl_conf *conf, const struct tp_consumer *c,
                      struct tp_slice method, struct tp_slice route)
{
    for (size_t g = 0; g < c->num_groups; g++) {
        for (size_t r = 0; r < conf->num_roles; r++) {
            const struct acl_role *role = &conf->roles[r];
            if (!role->group || strcmp(role->group, c->groups[g]) != 0)
                continue;
            for (size_t k = 0; k < role->num_perms; k++) {
                const struct acl_permission *p = &role->perms[k];
                if (list_has(p->methods, p->num_methods, p->has_methods, method) &&
                    list_has(p->routes, p->num_routes, p->has_routes, route))
                    return true;
            }
        }
    }
    return false;
}

static enum tp_plugin_status acl_access(struct tp_plugin_ctx *ctx, const void *inst)
{
    const struct acl_conf *conf = inst;
    const struct tp_consumer *c = tp_plugin_consumer(ctx);

    if (!c)
        return tp__authz_refuse(ctx, 401, ACL_MSG_NO_CONSUMER, "acl: no consumer");
    if (conf->has_allow && !tp__authz_in_any_group(c, conf->allow, conf->num_allow))
        return tp__authz_refuse(ctx, 403, ACL_MSG_DENIED,
                                "acl: consumer not in an allowed group");
    if (conf->has_deny && tp__authz_in_any_group(c, conf->deny, conf->num_deny))
        return tp__authz_refuse(ctx, 403, ACL_MSG_DENIED, "acl: consumer in a denied group");
    if (conf->has_permissions &&
        !permitted(conf, c, tp_plugin_method(ctx), tp_slice_cstr(tp_plugin_route_name(ctx))))
        return tp__authz_refuse(ctx, 403, ACL_MSG_DENIED,
                                "acl: no permission for this method and route");
    if (conf->hide_groups_header && tp_plugin_remove_header(ctx, "X-Consumer-Groups") != 0)
        return TP_PLUGIN_ERROR;
    return TP_PLUGIN_CONTINUE;
}

const struct tp_plugin tp_plugin_acl = {
    .name = "acl",
    .priority = 950,
    .schema = &acl_schema,
    .conf_size = sizeof(struct acl_conf),
    .validate = acl_validate,
    .free_conf = acl_free_conf,
    .compile = acl_compile,
    .access = acl_access,
};
