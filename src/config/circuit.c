/*
 * circuit_breaker on upstreams[] (one breaker per target) and services[] (one per service),
 * issue 3:
 *
 *   circuit_breaker:
 *     failure_ratio: 50        # percent failed in the window that opens it, 0 = off
 *     failure_count: 0         # failures in the window that open it, 0 = off
 *     min_requests: 20         # the ratio is judged with at least this many requests
 *     window: 10000            # ms, sliding, in 10 buckets of window/10 ms
 *     open_time: 5000          # ms open before half-open
 *     half_open_requests: 3    # trials while half-open
 *     max_requests: 0          # in flight per target / per service, 0 = unlimited
 *     max_pending: 0           # upstreams only: connects in progress per target, 0 = unlimited
 *
 * Without the key there is no breaker; `circuit_breaker: {}` gives one with the defaults.
 */
#include "config/schema.h"
#include "turnpike/config.h"

#include <stdlib.h>

/* Bounds that keep every counter of src/upstream/circuit.c inside its bit field. */
#define CIRCUIT_MAX_COUNT 100000       /* failure_count, min_requests */
#define CIRCUIT_MAX_TRIALS 1000        /* half_open_requests */
#define CIRCUIT_MAX_CONCURRENT 1000000 /* max_requests, max_pending */

/* clang-format off */
#define CIRCUIT_COMMON_KEYS                                                                   \
    TP__CFG_UINT_KEY("failure_ratio", struct tp_conf_circuit, failure_ratio, 0, 100, 50),     \
    TP__CFG_UINT_KEY("failure_count", struct tp_conf_circuit, failure_count, 0,               \
                     CIRCUIT_MAX_COUNT, 0),                                                   \
    TP__CFG_UINT_KEY("min_requests", struct tp_conf_circuit, min_requests, 0,                 \
                     CIRCUIT_MAX_COUNT, 20),                                                  \
    TP__CFG_UINT_KEY("window", struct tp_conf_circuit, window_ms, 100, TP__CFG_MAX_MS,        \
                     10000),                                                                  \
    TP__CFG_UINT_KEY("open_time", struct tp_conf_circuit, open_ms, 1, TP__CFG_MAX_MS, 5000), \
    TP__CFG_UINT_KEY("half_open_requests", struct tp_conf_circuit, half_open_requests, 1,     \
                     CIRCUIT_MAX_TRIALS, 3),                                                  \
    TP__CFG_UINT_KEY("max_requests", struct tp_conf_circuit, max_requests, 0,                 \
                     CIRCUIT_MAX_CONCURRENT, 0)
/* clang-format on */

static const struct tp__cfg_directive upstream_circuit_keys[] = {
    CIRCUIT_COMMON_KEYS,
    TP__CFG_UINT_KEY("max_pending", struct tp_conf_circuit, max_pending, 0, CIRCUIT_MAX_CONCURRENT,
                     0),
};

TP__CFG_TABLE_CHECK(upstream_circuit_keys);

/* A service's breaker guards the service as a whole; connects belong to targets. */
static const struct tp__cfg_directive service_circuit_keys[] = {
    CIRCUIT_COMMON_KEYS,
};

TP__CFG_TABLE_CHECK(service_circuit_keys);

static const struct tp__cfg_schema upstream_circuit_schema = {
    .what = "upstream circuit_breaker",
    .keys = upstream_circuit_keys,
    .num_keys = TP_ARRAY_LEN(upstream_circuit_keys),
    .mark_offset = -1,
};

static const struct tp__cfg_schema service_circuit_schema = {
    .what = "service circuit_breaker",
    .keys = service_circuit_keys,
    .num_keys = TP_ARRAY_LEN(service_circuit_keys),
    .mark_offset = -1,
};

/* A new section from `value` into *slot (an earlier one is freed). */
static void parse_circuit(struct tp__cfg_ctx *ctx, const struct tp__cfg_schema *schema,
                          yaml_node_t *value, struct tp_conf_circuit **slot)
{
    struct tp_conf_circuit *c = calloc(1, sizeof(*c));

    if (!c) {
        tp__cfg_oom(ctx, value);
        return;
    }
    tp_conf_circuit_free(*slot);
    *slot = c; /* attached at once: tp_config_free() releases it whatever follows */
    tp__cfg_object(ctx, schema, value, c);
}

void tp__cfg_parse_upstream_circuit(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                                    void *obj)
{
    (void)key;
    parse_circuit(ctx, &upstream_circuit_schema, value,
                  &((struct tp_conf_upstream *)obj)->circuit_breaker);
}

void tp__cfg_parse_service_circuit(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value,
                                   void *obj)
{
    (void)key;
    parse_circuit(ctx, &service_circuit_schema, value,
                  &((struct tp_conf_service *)obj)->circuit_breaker);
}

void tp_conf_circuit_free(struct tp_conf_circuit *c)
{
    free(c);
}
