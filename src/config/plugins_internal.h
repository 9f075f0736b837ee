/*
 * turnpike — config loader internals for plugin entries and consumers (src/config/plugins.c).
 */
#ifndef TURNPIKE_CONFIG_PLUGINS_INTERNAL_H
#define TURNPIKE_CONFIG_PLUGINS_INTERNAL_H

#include "config/schema.h"

/** Custom parsers of `plugins` lists in a route, a service and the top level. */
void tp__cfg_parse_route_plugins(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                                 void *obj);
void tp__cfg_parse_service_plugins(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                                   void *obj);
void tp__cfg_parse_top_plugins(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                               void *obj);
/** Route `order`: a list of registered plugin names. */
void tp__cfg_parse_route_order(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                               void *obj);
/** Top-level `consumers`. */
void tp__cfg_parse_consumers(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                             void *obj);
/** Whole-document checks: unique consumer ids/usernames/keys, plugin scope references. */
void tp__cfg_check_consumers(struct tp__cfg_ctx *ctx, struct tp_config *cfg);
/** True when a consumer has this id or username. */
bool tp__cfg_consumer_exists(const struct tp_config *cfg, const char *name);
/** strcmp that accepts NULL (NULL equals only NULL). */
int tp__cfg_strcmp0(const char *a, const char *b);

void tp__cfg_plugins_free(struct tp_conf_plugin *arr, size_t n);
void tp__cfg_consumers_free(struct tp_conf_consumer *arr, size_t n);

struct tp_snapshot;
/** Build consumers, credential tables, plugin instances and route chains into s (after its
 *  routes). Errors are printed to errors as FILE:LINE:COLUMN. 0, TP_EINVAL or TP_ENOMEM. */
int tp__snapshot_build_plugins(struct tp_snapshot *s, FILE *errors);
/** Free what tp__snapshot_build_plugins built. */
void tp__snapshot_free_plugins(struct tp_snapshot *s);

#endif
