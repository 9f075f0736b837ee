/*
 * turnpike — the local rate-limit store: counters shared by every worker thread of the process.
 *
 * A store is a hash table split into shards, each with its own lock (an adaptive mutex: it
 * spins briefly, then sleeps, so a preempted holder does not burn the other cores). There is
 * no global lock on the request path. A request's limits are decided under the locks of the
 * shards their keys fall in, taken in ascending order, so that several limits are one atomic
 * decision: admitted by all, or counted by none.
 *
 * Memory is bounded: at most max_keys keys (each shard holds max_keys / shards); a key whose
 * state is as good as fresh (window over, bucket full, nothing in flight) is freed when a
 * request touches its shard, and when a shard is full its least recently used key is
 * forgotten (for that key, up to one window's worth of requests may then be admitted again;
 * documented).
 *
 * Stores outlive configuration reloads: tp_rl_store_acquire returns the store of a namespace,
 * shared by every plugin instance (old and new snapshot) that names it, and frees it with its
 * last user. That registry is the one process-wide table here, behind a mutex taken only at
 * compile and destroy time.
 */
#ifndef TURNPIKE_RATELIMIT_STORE_H
#define TURNPIKE_RATELIMIT_STORE_H

#include "ratelimit/algo.h"
#include "turnpike/common.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TP_RL_MAX_KEY 256   /* longer keys are replaced by their SHA-256 (see tp_rl_key_fit) */

struct tp_rl_store;

/** One limit of one request, decided by tp_rl_store_take. */
struct tp_rl_item {
    const struct tp_rl_limit *limit;
    struct tp_slice key;       /* at most TP_RL_MAX_KEY bytes; includes what tells limits apart */
    struct tp_rl_decision d;   /* out */
};

/** A new store for at most max_keys keys (>= 1). NULL when out of memory. */
struct tp_rl_store *tp_rl_store_new(size_t max_keys);

/** Free a store made by tp_rl_store_new (no thread may still use it). */
void tp_rl_store_free(struct tp_rl_store *s);

/**
 * The store of namespace ns (created with max_keys when it does not exist yet), with one more
 * reference. Thread-safe. NULL when out of memory.
 */
struct tp_rl_store *tp_rl_store_acquire(const char *ns, size_t max_keys);

/** Drop a reference taken by tp_rl_store_acquire; the last one frees the store. */
void tp_rl_store_release(struct tp_rl_store *s);

/**
 * Decide one request against n limits (n <= TP_RL_MAX_LIMITS) at time now (µs): every item's
 * decision is filled; the request is counted by all of them when all admit it, else by none.
 * Keys the store cannot make room for (out of memory) are answered as admitted, uncounted.
 * @return true when admitted.
 */
bool tp_rl_store_take(struct tp_rl_store *s, struct tp_rl_item *items, size_t n, int64_t now);

/** A concurrency-limited request of `key` has ended. */
void tp_rl_store_release_one(struct tp_rl_store *s, const struct tp_rl_limit *limit,
                             struct tp_slice key);

/** Keys held now (tests, diagnostics). */
size_t tp_rl_store_count(struct tp_rl_store *s);

#define TP_RL_DIGEST_BUF 80 /* "sha256:" and 64 hex digits */

/**
 * Make a key fit TP_RL_MAX_KEY: a longer key is replaced, in buf (TP_RL_DIGEST_BUF bytes), by
 * "sha256:" and the hex SHA-256 of the key, which keeps distinct keys apart.
 */
struct tp_slice tp_rl_key_fit(struct tp_slice key, char *buf);

#endif
