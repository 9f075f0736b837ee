/*
 * turnpike — target health, shared by every worker and every snapshot (issue 3).
 *
 * One entry per target address in a process-wide registry, so health survives reloads. The
 * request path only reads one atomic (tp_health_up); workers report passive outcomes with
 * atomics; the active checker (its own thread) probes targets and flips the state.
 */
#ifndef TURNPIKE_HEALTH_H
#define TURNPIKE_HEALTH_H

#include "turnpike/common.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <sys/socket.h>

struct tp_health {
    atomic_bool up;             /* may receive traffic */
    atomic_uint successes;      /* consecutive successes (active or passive) */
    atomic_uint failures;       /* consecutive failures of any kind */
    atomic_uint ejections;      /* times ejected by passive checks (ejection time grows) */
    atomic_ullong ejected_until_ms; /* passive ejection: back after this (monotonic ms) */
    atomic_int connections;     /* open upstream connections to this address, all workers */
    atomic_uint refs;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    struct tp_health *next;     /* registry chain */
};

/** Whether a target with health h may receive traffic (NULL = no health tracking: up). */
static inline bool tp_health_up(const struct tp_health *h)
{
    return !h || atomic_load_explicit(&((struct tp_health *)h)->up, memory_order_relaxed);
}

struct tp_conf_healthchecks;
struct tp_snapshot;
struct event_base;

/**
 * The shared health entry of an address (created up, refcount 1, or one more reference).
 * Thread-safe (registry mutex: config-time only). NULL on ENOMEM.
 */
struct tp_health *tp_health_acquire(const struct sockaddr_storage *addr, socklen_t len);

/** Drop a reference (any thread). NULL is ignored. */
void tp_health_release(struct tp_health *h);

/**
 * Passive check (workers, lock-free): the outcome of one proxied attempt. `status` is the
 * upstream's status code, or 0 for a connect failure, reset or timeout. A status in
 * hc->unhealthy_statuses or 0 counts as a failure; passive_threshold consecutive failures eject
 * the target for ejection_ms, doubled for each repeat (at most 16 times). No-op when passive
 * checks are off or h is NULL.
 */
void tp_health_passive(struct tp_health *h, const struct tp_conf_healthchecks *hc, int status);

/** Active check result (main thread): thresholds from hc move the state up or down. */
void tp_health_active(struct tp_health *h, const struct tp_conf_healthchecks *hc, bool ok);

/** Bring back passively ejected targets whose ejection time is over (main thread timer). */
void tp_health_sweep(uint64_t now_ms);

/** Active health checker: probes every target of every upstream with active checks, on the
 *  given event loop (the main thread's), so each target is probed once per process. */
struct tp_health_checker;

/** Create a checker on base. NULL on ENOMEM. */
struct tp_health_checker *tp_health_checker_new(struct event_base *base);

/** Probe the targets of snap from now on (takes a reference; the previous one is released and
 *  its probes cancelled). First probes start at a random point of the interval (jitter). */
void tp_health_checker_update(struct tp_health_checker *hc, struct tp_snapshot *snap);

/** Cancel every probe and free the checker. NULL is ignored. */
void tp_health_checker_free(struct tp_health_checker *hc);

#endif
