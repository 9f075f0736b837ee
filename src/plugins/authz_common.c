/*
 * Helpers shared by the authorization plugins (authz_common.h).
 */
#include "plugins/authz_common.h"

#include "turnpike/snapshot.h"

#include <stdlib.h>
#include <string.h>

void tp__authz_list_free(char **list, size_t n)
{
    for (size_t i = 0; list && i < n; i++)
        free(list[i]);
    free(list);
}

int tp__authz_cfg_method(struct tp__cfg_ctx *ctx, const char *key, const yaml_node_t *node,
                         char *s)
{
    for (char *p = s; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '-' || *p == '_')) {
            tp__cfg_error(ctx, node, "\"%s\": \"%s\" is not an HTTP method", key, s);
            return -1;
        }
        *p = (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    }
    return 0;
}

bool tp__authz_route_exists(const struct tp_plugin_build *b, const char *name)
{
    const struct tp_config *cfg = b->snap ? b->snap->config : NULL;

    if (!cfg)
        return true;
    for (size_t s = 0; s < cfg->num_services; s++)
        for (size_t r = 0; r < cfg->services[s].num_routes; r++)
            if (cfg->services[s].routes[r].name &&
                strcmp(cfg->services[s].routes[r].name, name) == 0)
                return true;
    return false;
}

bool tp__authz_in_any_group(const struct tp_consumer *c, char *const *groups, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (groups[i] && tp_consumer_in_group(c, tp_slice_cstr(groups[i])))
            return true;
    return false;
}

enum tp_plugin_status tp__authz_refuse(struct tp_plugin_ctx *ctx, int status, const char *message,
                                       const char *reason)
{
    tp_plugin_security_log(ctx, status, reason);
    tp_plugin_respond(ctx, status, message);
    return TP_PLUGIN_RESPOND;
}
