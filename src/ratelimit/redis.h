/*
 * turnpike — Redis storage for rate limits: one connection per worker and Redis server, on
 * the worker's event loop (hiredis with its libevent adapter), and the atomic Lua scripts that
 * carry the algorithms of algo.c into Redis.
 *
 * Time: the scripts read Redis's own clock (TIME), so every gateway sharing a Redis agrees on
 * windows and buckets whatever their clocks say (windows aligned to the epoch as Redis sees
 * it). Keys carry a TTL a little longer than the state they hold.
 *
 * Failure: a connection that fails, is refused, closes, or leaves a command unanswered for
 * `timeout` ms is dropped: every command waiting on it fails at once (the requests fall back
 * to their plugin's policy), the drop is logged once, and the next connection is tried at most
 * once a second, started by a request; requests do not wait for a reconnection (only for the
 * very first connection of the worker). Recovery is logged once.
 *
 * Everything here runs on the worker thread that owns the connection: no locks.
 */
#ifndef TURNPIKE_RATELIMIT_REDIS_H
#define TURNPIKE_RATELIMIT_REDIS_H

#include "ratelimit/algo.h"
#include "turnpike/common.h"
#include "turnpike/plugin.h"

#include <stdbool.h>
#include <stdint.h>

/** Where a Redis server is and how to talk to it (compiled, immutable). */
struct tp_rl_redis_conf {
    char *host;               /* IP address or host name (resolved at each connect) */
    uint16_t port;
    char *username;           /* ACL user (Redis 6+), or NULL */
    char *password;           /* or NULL */
    int database;             /* SELECT, 0 = default */
    uint32_t timeout_ms;      /* connect and per-command */
    char *worker_key;         /* tp_plugin_worker_put key: one connection per server and
                                 credentials, shared by plugin instances */
};

/** Build c->worker_key from the other fields. 0 or TP_ENOMEM. */
int tp_rl_redis_conf_init(struct tp_rl_redis_conf *c);

/** Free what a conf holds. */
void tp_rl_redis_conf_free(struct tp_rl_redis_conf *c);

struct tp_rl_redis;

enum tp_rl_redis_state {
    TP_RL_REDIS_UP = 0,       /* commands may be sent */
    TP_RL_REDIS_CONNECTING,   /* the worker's first connection is being made: wait for it */
    TP_RL_REDIS_DOWN,         /* unreachable: use the fallback */
};

/** This worker's connection to c's server, created on first use (not yet connected). NULL
 *  when out of memory. */
struct tp_rl_redis *tp_rl_redis_get(struct tp_plugin_ctx *ctx, const struct tp_rl_redis_conf *c);

/** The connection's state; starts (re)connecting when it is due. */
enum tp_rl_redis_state tp_rl_redis_state(struct tp_rl_redis *r);

/** Requests waiting for the first connection (woken when it succeeds or fails). */
struct tp_plugin_wait_list *tp_rl_redis_connect_waiters(struct tp_rl_redis *r);

/** One script call in flight. Owned by the connection; see tp_rl_op_done. */
struct tp_rl_op {
    struct tp_plugin_wait_list waiters;  /* the request waiting for the answer */
    bool done;                           /* answered (or failed) */
    bool failed;                         /* no usable answer: use the fallback */
    bool allowed;
    size_t n;
    struct tp_rl_decision d[TP_RL_MAX_LIMITS];
    /* private */
    struct tp_rl_redis *r;
    struct tp_rl_op *prev, *next;
    int64_t done_at;
    bool retried;
    char *args;                          /* the command, for an EVAL after NOSCRIPT */
    size_t num_args;
    size_t *arg_len;
};

/**
 * Decide a request against n limits in Redis (atomic, like tp_rl_store_take). keys[i] is the
 * full Redis key of limit i; member names this request in sets (sliding log, concurrency;
 * unique per request: use tp_rl_redis_member). The request then waits on op->waiters and,
 * woken, reads the op and ends it with tp_rl_op_done.
 * @return the op, or NULL when the command could not be sent (use the fallback).
 */
struct tp_rl_op *tp_rl_redis_take(struct tp_rl_redis *r, const struct tp_rl_limit *const *limits,
                                  const struct tp_slice *keys, size_t n, struct tp_slice member,
                                  int64_t lease_us);

/** The request is done with op (frees it). Ops whose request went away are freed by the
 *  connection a minute after their answer. */
void tp_rl_op_done(struct tp_rl_op *op);

#define TP_RL_MEMBER_BUF 40

/** A unique member name for this worker (for sets), written to buf (TP_RL_MEMBER_BUF bytes);
 *  returns its length. */
size_t tp_rl_redis_member(struct tp_rl_redis *r, char *buf);

/** End a concurrency slot taken by tp_rl_redis_take (fire and forget). */
void tp_rl_redis_release(struct tp_rl_redis *r, struct tp_slice key, struct tp_slice member);

/** Answer of a batched synchronisation: the totals Redis holds for window w and w - 1. */
typedef void (*tp_rl_sync_cb)(void *arg, bool ok, int64_t w, uint64_t cur, uint64_t prev);

/**
 * Add delta_cur to key:w and delta_prev to key:(w-1) (TTL 2·period) and read both totals back.
 * cb is called exactly once, later, from the event loop (ok false on any failure); arg must
 * stay valid until then. 0, or TP_EIO when nothing was sent (cb is not called).
 */
int tp_rl_redis_sync(struct tp_rl_redis *r, struct tp_slice key, int64_t period_us, int64_t w,
                     uint64_t delta_cur, uint64_t delta_prev, tp_rl_sync_cb cb, void *arg);

/** The worker's event base of r. */
struct event_base *tp_rl_redis_base(struct tp_rl_redis *r);

/**
 * A slot for one companion object that lives exactly as long as r (the batched counters of
 * redis-batched, whose synchronisations r answers): destroy is called when r is destroyed,
 * after every callback r owed has run.
 */
void **tp_rl_redis_companion(struct tp_rl_redis *r, void (*destroy)(void *));

#endif
