/*
 * turnpike — the compiled, immutable runtime configuration (DESIGN.md §2).
 *
 * A snapshot is built from a validated tp_config on the main thread (names resolved, router
 * compiled, upstream state allocated), then published to the workers. It is reference-counted:
 * the main thread holds one reference per worker while that worker uses it, and each worker
 * counts its own in-flight requests per snapshot without atomics (src/event/worker.c).
 */
#ifndef TURNPIKE_SNAPSHOT_H
#define TURNPIKE_SNAPSHOT_H

#include "turnpike/common.h"
#include "turnpike/config.h"
#include "turnpike/health.h"
#include "turnpike/circuit.h"
#include "turnpike/router.h"

#include <stdatomic.h>
#include <stdio.h>
#include <sys/socket.h>

struct tp_pool;
struct tp_chain;
struct tp_consumers;

/** One backend instance with a resolved address. */
struct tp_target {
    char *name;                   /* "host:port" as configured, for logs */
    char *host_header;            /* Host value sent upstream: "host" or "host:port" */
    struct sockaddr_storage addr; /* resolved at snapshot build */
    socklen_t addrlen;
    char addr_text[64];           /* "127.0.0.1:9001" */
    char *host;                   /* as configured; re-resolved unless an IP literal */
    uint16_t port;
    uint32_t weight;
    uint32_t priority;            /* 0 = primary; higher = backup tiers */
    atomic_int active;            /* in-flight requests, all workers (least-connections) */
    struct tp_health *health;     /* shared health of this address; NULL = not tracked (up) */
    struct tp_circuit *circuit;   /* upstream circuit_breaker, per target; NULL = none. Owned
                                     by the snapshot: a reload starts it closed again */
    struct tp_pool **pools;       /* [nworkers]: slot w written only by worker w */
};

/** One point of a consistent-hashing ring: hash of "host:port#i" → index of its target. */
struct tp_ring_point {
    uint64_t hash;
    uint32_t target;
};

#define TP_P2C_RNG_STRIDE 8 /* uint64_t per worker in tp_upstream.p2c_rng (64 bytes) */

struct tp_upstream {
    char *name;
    enum tp_balancer_algorithm algorithm;
    struct tp_target *targets;
    size_t num_targets;
    atomic_uint rr_next;          /* round-robin position shared by workers */
    int64_t *swrr_current;        /* [nworkers * num_targets]: smooth WRR state per worker */
    uint32_t keepalive_pool;
    uint32_t keepalive_idle_ms;
    /* consistent-hashing (src/upstream/hash_key.c) */
    struct tp_ring_point *ring;   /* [ring_len] sorted by hash; NULL for other algorithms */
    size_t ring_len;
    enum tp_hash_on hash_on, hash_fallback;
    struct tp_slice hash_on_name;       /* header (lower-case), cookie or query argument name */
    struct tp_slice hash_fallback_name; /* borrowed from the config the snapshot owns */
    /* random-two-choices: xorshift64* state of worker w at p2c_rng[w * TP_P2C_RNG_STRIDE]
     * (one cache line per worker); NULL: a shared counter is mixed instead */
    uint64_t *p2c_rng;
    const struct tp_conf_healthchecks *healthchecks; /* config-owned; NULL = not tracked */
    bool tiered;                  /* some target has a priority above 0 (<= 64 targets) */
    uint32_t failover_threshold;  /* percent, see tp_conf_upstream */
    atomic_int requests;          /* requests in flight through this upstream (retry budget) */
    atomic_int retrying;          /* of which are on a retry attempt */
};

struct tp_service {
    const struct tp_conf_service *conf;
    struct tp_upstream *upstream;  /* a url with a literal host gets an implicit upstream */
    int host_is_upstream;          /* url host named an upstream (Host comes from the target) */
    struct tp_circuit *circuit;    /* service circuit_breaker; NULL = none (snapshot-owned) */
};

struct tp_route {
    const struct tp_conf_route *conf;
    struct tp_service *service;
    /* traffic split (canary): share i goes to split_services[i] when the draw falls below
     * split_cumulative[i]; num_split 0 = everything to `service` */
    struct tp_service **split_services;
    uint32_t *split_cumulative;
    size_t num_split;
    struct tp_service *mirror;    /* shadow service receiving a copy of each request, or NULL */
    struct tp_chain *chain;       /* plugins of the route (src/plugins/chain.h), NULL = none */
};

struct tp_snapshot {
    atomic_int refs;
    uint64_t generation;
    int nworkers;
    struct tp_config *config;      /* owned */
    struct tp_router *router;      /* owned */
    struct tp_service *services;   size_t num_services;
    struct tp_route *routes;       size_t num_routes;
    struct tp_upstream *upstreams; size_t num_upstreams; /* configured + implicit */
    struct tp_consumers *consumers; /* consumers, credentials, plugin instances (consumer.h) */
};

/**
 * Build a snapshot from a loaded config. Takes ownership of cfg on success (and on failure:
 * cfg is freed). Resolves target host names with getaddrinfo (blocking: main thread only).
 *
 * @param nworkers  number of worker threads (sizes per-worker state)
 * @param errors    stream for "FILE:LINE:COLUMN: message" lines (router pattern errors, names
 *                  that do not resolve); may be NULL
 * @param out       receives the snapshot with one reference held by the caller
 * @return 0 or a negative error.
 */
int tp_snapshot_build(struct tp_config *cfg, int nworkers, FILE *errors,
                      struct tp_snapshot **out);

/**
 * Resolve again every target that is named by a host name (getaddrinfo: blocking, main thread
 * only) and say whether any of them no longer resolves to the address the snapshot uses.
 *
 * @return 1 if an address changed (the caller rebuilds the snapshot), 0 if none did or a name
 *         failed to resolve (the old address is kept; a warning is logged).
 */
int tp_snapshot_dns_changed(const struct tp_snapshot *s);

/** Take a reference (any thread). */
void tp_snapshot_ref(struct tp_snapshot *s);

/** Drop a reference (any thread); the last one frees the snapshot. NULL is ignored. */
void tp_snapshot_unref(struct tp_snapshot *s);

#endif
