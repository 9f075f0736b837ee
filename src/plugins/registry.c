/*
 * turnpike — the plugin registry: every plugin, in one table (DESIGN.md §3).
 *
 * To add a plugin: write src/plugins/<name>.c defining `const struct tp_plugin tp_plugin_<name>`
 * (include/turnpike/plugin.h, docs/plugins.md), declare it below and list it in tp_plugins[].
 */
#include "turnpike/plugin.h"

#include <string.h>

/* authentication */
extern const struct tp_plugin tp_plugin_key_auth;
extern const struct tp_plugin tp_plugin_basic_auth;
extern const struct tp_plugin tp_plugin_jwt;
/* authorization */
extern const struct tp_plugin tp_plugin_acl;
extern const struct tp_plugin tp_plugin_abac;
extern const struct tp_plugin tp_plugin_resource_acl;
extern const struct tp_plugin tp_plugin_ip_restriction;
/* shaping */
extern const struct tp_plugin tp_plugin_cors;
extern const struct tp_plugin tp_plugin_request_size_limiting;
extern const struct tp_plugin tp_plugin_request_transformer;
extern const struct tp_plugin tp_plugin_response_transformer;
extern const struct tp_plugin tp_plugin_request_termination;
extern const struct tp_plugin tp_plugin_rate_limiting;

const struct tp_plugin *const tp_plugins[] = {
    &tp_plugin_key_auth,
    &tp_plugin_basic_auth,
    &tp_plugin_jwt,
    &tp_plugin_acl,
    &tp_plugin_abac,
    &tp_plugin_resource_acl,
    &tp_plugin_ip_restriction,
    &tp_plugin_cors,
    &tp_plugin_request_size_limiting,
    &tp_plugin_request_transformer,
    &tp_plugin_response_transformer,
    &tp_plugin_request_termination,
    &tp_plugin_rate_limiting,
    NULL,
};

const struct tp_plugin *tp_plugin_find(const char *name, size_t len)
{
    for (size_t i = 0; tp_plugins[i]; i++)
        if (strlen(tp_plugins[i]->name) == len && memcmp(tp_plugins[i]->name, name, len) == 0)
            return tp_plugins[i];
    return NULL;
}
