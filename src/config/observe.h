/*
 * Config loader internals for the observability settings (src/config/observe.c): custom
 * parsers of the top-level table and the whole-document check of log destinations.
 */
#ifndef TURNPIKE_CONFIG_OBSERVE_H
#define TURNPIKE_CONFIG_OBSERVE_H

#include "config/schema.h"

/** access_log_fields: a list of field names (enum tp_access_field), each at most once. */
void tp__cfg_parse_access_log_fields(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                                     void *obj);

/** tracing: the section (struct tp_conf_tracing) into a tp_config. */
void tp__cfg_parse_tracing(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj);

/** Check access_log, error_log, security_log and audit_log destinations (syntax only). */
void tp__cfg_check_observe(struct tp__cfg_ctx *ctx, yaml_node_t *root, struct tp_config *cfg);

#endif
