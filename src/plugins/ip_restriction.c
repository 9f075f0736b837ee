/*
 * ip-restriction: allow or deny clients by address (Kong's plugin of the same name, priority
 * 990; docs/plugins/ip-restriction.md).
 *
 *   plugins:
 *     - name: ip-restriction
 *       config:
 *         allow: [10.0.0.0/8, "2001:db8::/32", 192.0.2.7]   # and/or deny: [...]
 *         status: 403                                     # Kong: null = 403
 *         message: Your IP address is not allowed         # Kong: null = this text
 *
 * The address is the one the gateway decided through its `trusted_proxies` setting
 * (tp_plugin_client_addr): X-Forwarded-For counts only when the TCP peer is a trusted proxy,
 * and X-Real-IP never does. Checks follow Kong: a match in `deny` refuses; then, when `allow`
 * is set, an address outside it is refused. IPv4-mapped IPv6 peers (::ffff:a.b.c.d) match
 * IPv4 entries. Entries are tested one by one: lists of a few hundred entries are cheap.
 */
#include "config/schema.h"
#include "plugins/authz_common.h"
#include "plugins/expr.h"
#include "turnpike/plugin.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define IPR_DEFAULT_STATUS 403
#define IPR_DEFAULT_MESSAGE "Your IP address is not allowed"

/** The `config` of one ip-restriction entry; also the runtime instance. */
struct ipr_conf {
    struct tp_cidr *allow;
    size_t num_allow;
    struct tp_cidr *deny;
    size_t num_deny;
    bool has_allow, has_deny; /* written (an empty list counts as set; null is not) */
    int status;
    char *message; /* NULL: the default */
};

/* ------------------------------------------------------------------------------------------ */
/* Config                                                                                     */

/* A list of addresses and networks (null, which Kong files write for unset fields, never gets
 * here: the schema walker skips it). Host bits are cleared as Kong does: "10.1.2.3/8" means
 * 10.0.0.0/8. */
static void parse_cidrs(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                        struct tp_cidr **list, size_t *num, bool *has)
{
    free(*list);
    *list = NULL;
    *num = 0;
    *has = true;
    if (value->type != YAML_SEQUENCE_NODE) {
        tp__cfg_error(ctx, value, "expected a list of addresses or networks for \"%s\"", key);
        return;
    }
    size_t n = tp__cfg_count(value);
    if (n == 0)
        return;
    struct tp_cidr *v = calloc(n, sizeof(*v));
    if (!v) {
        tp__cfg_oom(ctx, value);
        return;
    }
    *list = v;
    *num = n;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = tp__cfg_node(ctx, value->data.sequence.items.start[i]);
        char *text = NULL;
        if (!item || tp__cfg_string(ctx, key, item, &text) != 0)
            continue;
        const char *why = tp_cidr_parse(text, strlen(text), true, &v[i]);
        if (why)
            tp__cfg_error(ctx, item, "\"%s\": invalid address or network \"%s\": %s", key, text,
                          why);
        free(text);
    }
}

static void parse_allow(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct ipr_conf *c = obj;

    parse_cidrs(ctx, key, value, &c->allow, &c->num_allow, &c->has_allow);
}

static void parse_deny(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct ipr_conf *c = obj;

    parse_cidrs(ctx, key, value, &c->deny, &c->num_deny, &c->has_deny);
}

static const struct tp__cfg_directive ipr_keys[] = {
    TP__CFG_CUSTOM_KEY("allow", parse_allow, false),
    TP__CFG_CUSTOM_KEY("deny", parse_deny, false),
    TP__CFG_INT_KEY("status", struct ipr_conf, status, 200, 599, IPR_DEFAULT_STATUS),
    TP__CFG_STRING_KEY("message", struct ipr_conf, message, NULL),
};

TP__CFG_TABLE_CHECK(ipr_keys);

static const struct tp__cfg_schema ipr_schema = {
    .what = "ip-restriction config",
    .keys = ipr_keys,
    .num_keys = TP_ARRAY_LEN(ipr_keys),
    .size = sizeof(struct ipr_conf),
    .mark_offset = -1,
};

static int ipr_validate(struct tp_plugin_build *b, void *vconf)
{
    struct ipr_conf *c = vconf;

    if (!c->has_allow && !c->has_deny)
        return tp_plugin_build_error(b, b->node, "one of \"allow\" or \"deny\" is required");
    return 0;
}

static void ipr_free_conf(void *vconf)
{
    struct ipr_conf *c = vconf;

    free(c->allow);
    free(c->deny);
    c->allow = c->deny = NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Request                                                                                    */

static bool listed(const struct tp_cidr *list, size_t n, int family, const uint8_t addr[16])
{
    for (size_t i = 0; i < n; i++)
        if (tp_cidr_match(&list[i], family, addr))
            return true;
    return false;
}

static enum tp_plugin_status ipr_access(struct tp_plugin_ctx *ctx, const void *inst)
{
    const struct ipr_conf *c = inst;
    uint8_t addr[16] = {0};
    int family = 0;
    const char *reason = NULL;

    tp_plugin_client_addr(ctx, &family, addr);
    if (listed(c->deny, c->num_deny, family, addr))
        reason = "ip-restriction: address denied";
    else if (c->has_allow && !listed(c->allow, c->num_allow, family, addr))
        reason = "ip-restriction: address not allowed";
    if (!reason)
        return TP_PLUGIN_CONTINUE;
    return tp__authz_refuse(ctx, c->status, c->message ? c->message : IPR_DEFAULT_MESSAGE, reason);
}

const struct tp_plugin tp_plugin_ip_restriction = {
    .name = "ip-restriction",
    .priority = 990,
    .schema = &ipr_schema,
    .conf_size = sizeof(struct ipr_conf),
    .validate = ipr_validate,
    .free_conf = ipr_free_conf,
    .access = ipr_access,
};
