/*
 * turnpike — metrics (issue 7): Prometheus text at GET /metrics, latency percentiles at
 * GET /status/latency and business usage at GET /status/usage, all on status_listen.
 *
 * Counting is per worker and lock-free: each worker owns its counters (one writer; plain
 * loads and stores through relaxed atomics) and the main thread sums the workers' counters when
 * it is scraped. Series are keyed by (service, route) names, never by request data, so their
 * number is bounded by the configuration: unmatched requests share route="unmatched", methods
 * outside a fixed set are "other", status codes outside a fixed set are counted as their class
 * ("4xx"), and consumers past metrics.max_consumers share consumer="other".
 *
 * Reloads: a series is found again by its (service, route) names in the new configuration, so
 * its counters go on across a reload; a route that is removed stops being exported (its
 * counters come back if a route of the same names returns).
 *
 * Memory (README "Metrics"), allocated on a series' first request: per (service, route) pair
 * with traffic and per worker, 6,072 bytes of counters plus 46,328 bytes of percentile sketches
 * (none with metrics.latency_window 0); per consumer with traffic and per worker, 1,944 bytes;
 * per configured route (8 with canary splits) and consumer, 4 bytes per worker in the map of
 * each configuration in use. tests/integration/test_metrics.py checks these figures.
 */
#ifndef TURNPIKE_METRICS_H
#define TURNPIKE_METRICS_H

#include "turnpike/common.h"
#include "turnpike/log.h"
#include "turnpike/snapshot.h"

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct tp_metrics;
struct tp_mworker;
struct tp_worker;
struct tp_conn;
struct tp_server;

/** Monotonic clock in microseconds (CLOCK_MONOTONIC), for request timings. */
static inline uint64_t tp_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- lifecycle (src/event/worker.c) ---- */

/** The process-wide registry of series for nworkers workers. NULL on ENOMEM. */
struct tp_metrics *tp_metrics_new(int nworkers);

/** Free the registry (after every worker was freed). NULL is ignored. */
void tp_metrics_free(struct tp_metrics *m);

/** The per-worker counters of worker w (w->id < nworkers, w->base set): registered in m, with a
 *  once-a-second census timer on w's base. Called before the worker thread starts. NULL on
 *  ENOMEM. */
struct tp_mworker *tp_metrics_worker_new(struct tp_metrics *m, struct tp_worker *w);

/** Free a worker's counters (its thread has exited, before its event base is freed). */
void tp_metrics_worker_free(struct tp_mworker *mw);

/** The server's metrics registry (defined in src/event/worker.c). */
struct tp_metrics *tp_server_metrics(struct tp_server *srv);

/* ---- counting (worker threads) ---- */

/** Count a finished request of c (called once per request where the access log is written):
 *  status, method, sizes, latencies, consumer. No lock; allocates only the first time a series
 *  is seen by this worker. No-op when metrics.enabled is false. */
void tp_metrics_request_done(struct tp_conn *c);

/** Count a plugin outcome written to the security log: status 401 = authentication failure,
 *  429 = rate-limit rejection, anything else = authorization denial, for c's route and the
 *  plugin named `plugin` (a registry name or "gateway"). */
void tp_metrics_security(struct tp_conn *c, const char *plugin, int status);

/** A client connection was accepted / closed on w (connection counters). */
void tp_metrics_conn_opened(struct tp_worker *w);
void tp_metrics_conn_closed(struct tp_worker *w);

/* ---- export (main thread) ---- */

/**
 * Append the Prometheus text exposition (format 0.0.4) of every series of the live snapshot
 * snap to b. Returns 0, TP_ENOMEM or TP_ETOOBIG (b's cap).
 */
int tp_metrics_prometheus(struct tp_metrics *m, const struct tp_snapshot *snap,
                          struct tp_strbuf *b);

/**
 * Append the latency percentiles document (JSON, README "Metrics"): P50, P95, P99 and P99.9 of
 * the total and upstream latency of each route and service over metrics.latency_window.
 * Returns 0, TP_ENOMEM or TP_ETOOBIG.
 */
int tp_metrics_latency_json(struct tp_metrics *m, const struct tp_snapshot *snap,
                            struct tp_strbuf *b);

/**
 * Append the usage document (JSON): requests, bytes in and bytes out per route and per
 * consumer, per wall-clock minute over the last hour and in total since start.
 * Returns 0, TP_ENOMEM or TP_ETOOBIG.
 */
int tp_metrics_usage_json(struct tp_metrics *m, const struct tp_snapshot *snap,
                          struct tp_strbuf *b);

#endif
