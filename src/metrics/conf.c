/*
 * The top-level `metrics` section (README "Metrics"):
 *
 *   metrics:
 *     enabled: true          # count requests for /metrics, /status/latency, /status/usage
 *     max_consumers: 1000    # consumers with their own series; later ones share "other"
 *     latency_window: 60000  # ms, sliding window of the percentiles; 0 = no percentiles
 */
#include "metrics/conf.h"

#define METRICS_MAX_CONSUMERS 1000000
#define METRICS_MIN_WINDOW_MS 1000    /* five sub-windows of at least 200 ms */
#define METRICS_MAX_WINDOW_MS 3600000 /* one hour */

static const struct tp__cfg_directive metrics_keys[] = {
    TP__CFG_BOOL_KEY("enabled", struct tp_conf_metrics, enabled, true),
    TP__CFG_UINT_KEY("max_consumers", struct tp_conf_metrics, max_consumers, 0,
                     METRICS_MAX_CONSUMERS, TP_DEFAULT_METRICS_MAX_CONSUMERS),
    TP__CFG_UINT_KEY("latency_window", struct tp_conf_metrics, latency_window_ms, 0,
                     METRICS_MAX_WINDOW_MS, TP_DEFAULT_LATENCY_WINDOW_MS),
};

TP__CFG_TABLE_CHECK(metrics_keys);

static void metrics_finish(struct tp__cfg_ctx *ctx, yaml_node_t *node, void *obj)
{
    const struct tp_conf_metrics *m = obj;
    if (m->latency_window_ms && m->latency_window_ms < METRICS_MIN_WINDOW_MS) {
        yaml_node_t *at = tp__cfg_lookup(ctx, node, "latency_window");
        tp__cfg_error(ctx, at ? at : node, "\"latency_window\" must be 0 (off) or at least %d ms",
                      METRICS_MIN_WINDOW_MS);
    }
}

static const struct tp__cfg_schema metrics_schema = {
    .what = "metrics",
    .keys = metrics_keys,
    .num_keys = TP_ARRAY_LEN(metrics_keys),
    .size = sizeof(struct tp_conf_metrics),
    .mark_offset = -1,
    .finish = metrics_finish,
};

void tp__cfg_parse_metrics(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    (void)key;
    tp__cfg_object(ctx, &metrics_schema, value, &((struct tp_config *)obj)->metrics);
}

void tp__cfg_metrics_defaults(struct tp__cfg_ctx *ctx, struct tp_config *cfg)
{
    tp__cfg_defaults(ctx, &metrics_schema, &cfg->metrics);
}
