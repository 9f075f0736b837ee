/*
 * turnpike — redis-batched storage: counters kept by each worker and synchronised with Redis in
 * the background, so that no request waits for Redis.
 *
 * For each key (fixed-window and sliding-window limits only), a worker knows the total Redis
 * held at its last synchronisation (which includes every gateway's synchronised requests) and
 * the requests it admitted since. It decides locally, on that sum. It sends what it admitted
 * (INCRBY, one script call; one in flight per key and worker) once sync_every/10 requests are
 * unsent, or sync_interval after the last synchronisation, and reads the new total back. A
 * worker never holds more than sync_every admissions that Redis has not confirmed: beyond
 * that it refuses (429, Retry-After 1) until Redis answers. Choose sync_every above the
 * requests one worker admits for one key during a Redis round trip (the default, 1000, covers
 * 50,000 requests/s with a 20 ms round trip).
 *
 * Over-admission bound: with C counters in all (gateway instances × workers) and N =
 * sync_every, at most limit + (C − 1) · N requests are admitted per window. (The counter whose
 * confirmation Redis processed last saw every other counter's requests but at most N each, and
 * admitted only while its own sum stayed under the limit.) Windows follow the gateways' clocks,
 * which must agree (NTP). While Redis is unreachable the plugin's redis_failure policy applies
 * (fail-open: the process-wide local counters of src/ratelimit/store.c decide).
 *
 * Everything runs on the worker thread; the table is a companion of the worker's Redis
 * connection (tp_rl_redis_companion) so that it lives exactly as long as the connection.
 */
#ifndef TURNPIKE_RATELIMIT_BATCHED_H
#define TURNPIKE_RATELIMIT_BATCHED_H

#include "ratelimit/redis.h"
#include "ratelimit/store.h"

struct tp_rl_batch;

struct tp_rl_batch_opts {
    uint32_t sync_every;        /* N: unconfirmed admissions per worker and key, >= 1 */
    int64_t sync_interval_us;   /* longest time between synchronisations of a busy key */
    size_t max_keys;            /* keys per worker (the first user's value counts) */
};

/** The batched counters of r's worker, created on first use. NULL when out of memory. */
struct tp_rl_batch *tp_rl_batch_get(struct tp_rl_redis *r, size_t max_keys);

/**
 * Decide one request against n fixed-window / sliding-window limits; items' keys are the Redis
 * keys. Atomic as tp_rl_store_take (one thread). Starts synchronisations as they fall due.
 * @return true when admitted.
 */
bool tp_rl_batch_take(struct tp_rl_batch *b, struct tp_rl_item *items, size_t n, int64_t now,
                      const struct tp_rl_batch_opts *o);

/** Keys held (tests, diagnostics). */
size_t tp_rl_batch_count(const struct tp_rl_batch *b);

#endif
