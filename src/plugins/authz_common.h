/*
 * turnpike — helpers shared by the authorization plugins (acl, resource-acl, abac,
 * ip-restriction): method lists in their config, route names checked at compile, group
 * membership of the consumer, and the refusal itself.
 */
#ifndef TURNPIKE_PLUGINS_AUTHZ_COMMON_H
#define TURNPIKE_PLUGINS_AUTHZ_COMMON_H

#include "config/schema.h"
#include "turnpike/consumer.h"
#include "turnpike/plugin.h"

#include <stdbool.h>
#include <stddef.h>

/** Free a list of n strings (NULL items allowed) and the list itself. */
void tp__authz_list_free(char **list, size_t n);

/**
 * tp__cfg_check_fn for a list of HTTP methods: letters, '-' and '_' only, upper-cased in place
 * (the route loader upper-cases its methods too, so both compare as upper case).
 * @return 0, or -1 after reporting "is not an HTTP method" at `node`.
 */
int tp__authz_cfg_method(struct tp__cfg_ctx *ctx, const char *key, const yaml_node_t *node,
                         char *s);

/**
 * At compile: does the snapshot being built (b->snap) have a route named `name`? A name
 * that no route has is a typo that would silently never match. True when there is no snapshot
 * to look in.
 */
bool tp__authz_route_exists(const struct tp_plugin_build *b, const char *name);

/** Is consumer c in one of groups[0..n)? (NULL items are skipped.) */
bool tp__authz_in_any_group(const struct tp_consumer *c, char *const *groups, size_t n);

/**
 * Refuse the request (access hook): one security-log line with `reason` (a fixed phrase),
 * then the gateway's JSON answer {"message", "request_id"} with `status`.
 * @return TP_PLUGIN_RESPOND.
 */
enum tp_plugin_status tp__authz_refuse(struct tp_plugin_ctx *ctx, int status, const char *message,
                                       const char *reason);

#endif
