/*
 * turnpike — the `metrics` section of the declarative config (src/metrics/conf.c), used by the
 * loader (src/config/loader.c).
 */
#ifndef TURNPIKE_METRICS_CONF_H
#define TURNPIKE_METRICS_CONF_H

#include "config/schema.h"

/** Custom parser of the top-level `metrics` mapping into cfg->metrics (obj: struct tp_config). */
void tp__cfg_parse_metrics(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj);

/** Store the defaults of the `metrics` section (called before the document is walked). */
void tp__cfg_metrics_defaults(struct tp__cfg_ctx *ctx, struct tp_config *cfg);

#endif
