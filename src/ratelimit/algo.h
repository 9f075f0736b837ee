/*
 * turnpike — rate-limiting algorithms (issue 6): pure functions of (limit, state, now).
 *
 * Nothing here reads a clock, locks or allocates on the decision path: the caller passes the
 * time (microseconds on a clock aligned to the epoch, see tp_rl_now_us) and owns the state, so
 * the same code runs under the local store's shard locks, in unit tests against a scripted
 * clock, and — transcribed to Lua — inside Redis (src/ratelimit/redis.c).
 *
 * Every algorithm answers a request in two steps so that several limits can be decided as one:
 * tp_rl_check says whether this limit would admit the request (without changing the state),
 * tp_rl_commit records the admission. A request is admitted when every limit admits it, and
 * only then is it counted anywhere: rejected requests are never counted.
 *
 *   fixed-window    windows [k·P, (k+1)·P) aligned to the epoch; at most `count` per window.
 *                   A burst of 2·count across a window edge is possible (documented; B36).
 *   sliding-window  weighted counter: used = cur + floor(prev · (P − elapsed) / P), where prev
 *                   is the previous window's count; admitted while used < count.
 *   sliding-log     exact: a log of the admissions of the trailing period P (memory: 8 bytes ·
 *                   count per key); admitted while fewer than `count` are younger than P.
 *   token-bucket    capacity `burst`, refilled with one token every P/count (GCRA form: one
 *                   theoretical arrival time per key instead of a token count and a timestamp).
 *   leaky-bucket    traffic shaping (GCRA virtual scheduling): requests leave one every P/count;
 *                   a request that would wait longer than max_delay is refused, the others are
 *                   held for delay_us and then go on.
 *   concurrency     at most `count` requests in flight; tp_rl_release ends one.
 */
#ifndef TURNPIKE_RATELIMIT_ALGO_H
#define TURNPIKE_RATELIMIT_ALGO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TP_RL_MAX_LIMITS 8                 /* limits in one plugin instance */
#define TP_RL_MAX_LOG 10000                /* sliding-log: largest count (memory per key) */
#define TP_RL_US 1000000LL                 /* microseconds per second */

enum tp_rl_algo {
    TP_RL_FIXED_WINDOW = 0,
    TP_RL_SLIDING_WINDOW,
    TP_RL_SLIDING_LOG,
    TP_RL_TOKEN_BUCKET,
    TP_RL_LEAKY_BUCKET,
    TP_RL_CONCURRENCY,
};

/** One limit, immutable once built with tp_rl_limit_init. */
struct tp_rl_limit {
    enum tp_rl_algo algo;
    uint64_t count;        /* requests per period (concurrency: requests in flight), >= 1 */
    int64_t period_us;     /* window or refill period, > 0 (ignored by concurrency) */
    uint64_t burst;        /* token bucket: capacity, >= 1 (default count) */
    int64_t max_delay_us;  /* leaky bucket: longest a request may be held, >= 0 */
    int64_t interval_us;   /* token/leaky: period_us / count, at least 1 (derived) */
};

/**
 * The state of one limit for one key. All zero is a fresh key. The sliding log's ring
 * (capacity `count` timestamps) is allocated by tp_rl_state_init and freed by tp_rl_state_free.
 */
struct tp_rl_state {
    int64_t window;        /* fixed/sliding: index of the window `cur` counts */
    uint64_t cur;          /* fixed/sliding: admissions in `window`; concurrency: in flight */
    uint64_t prev;         /* sliding: admissions in window - 1 */
    int64_t tat;           /* token/leaky: theoretical arrival time, µs */
    int64_t *log;          /* sliding log: ring of admission times, µs, oldest at log_head */
    uint32_t log_head, log_len;
};

/** What a limit says about one request; every time is relative to `now`, in µs. */
struct tp_rl_decision {
    bool allowed;
    uint64_t limit;        /* the quota reported in headers (token bucket: burst) */
    uint64_t remaining;    /* requests still admitted after this one (never negative) */
    int64_t reset_us;      /* until the quota is whole again if nothing more comes */
    int64_t retry_us;      /* until one more request would be admitted (0 while remaining>0) */
    int64_t delay_us;      /* leaky bucket: hold the admitted request this long */
};

/**
 * Fill the derived fields of l (interval_us; burst defaults to count when 0).
 * @return 0, or TP_EINVAL when count is 0, a period is not positive, or the log is too long.
 */
int tp_rl_limit_init(struct tp_rl_limit *l);

/** Prepare a fresh state for l (allocates the sliding log's ring). 0 or TP_ENOMEM. */
int tp_rl_state_init(const struct tp_rl_limit *l, struct tp_rl_state *s);

/** Release what tp_rl_state_init allocated; the state is fresh (all zero) afterwards. */
void tp_rl_state_free(struct tp_rl_state *s);

/** Would l admit a request at now? The state is not changed; d describes the state as it
 *  would be after the admission (or, when refused, as it is). */
void tp_rl_check(const struct tp_rl_limit *l, const struct tp_rl_state *s, int64_t now,
                 struct tp_rl_decision *d);

/** Record the admission of a request at now (call only after tp_rl_check allowed it); d is
 *  filled as by tp_rl_check. */
void tp_rl_commit(const struct tp_rl_limit *l, struct tp_rl_state *s, int64_t now,
                  struct tp_rl_decision *d);

/** tp_rl_check, then tp_rl_commit when allowed. Returns d->allowed. */
bool tp_rl_take(const struct tp_rl_limit *l, struct tp_rl_state *s, int64_t now,
                struct tp_rl_decision *d);

/** A request counted by a concurrency limit has ended (saturates at zero). */
void tp_rl_release(const struct tp_rl_limit *l, struct tp_rl_state *s);

/**
 * The absolute time (µs) from which s is equivalent to a fresh state, so that the key may be
 * forgotten: the end of the window (fixed), of the next window (sliding), the last admission
 * plus P (log), the theoretical arrival time (buckets); for concurrency `now` when nothing is
 * in flight, else INT64_MAX.
 */
int64_t tp_rl_expiry(const struct tp_rl_limit *l, const struct tp_rl_state *s, int64_t now);

/**
 * Of n decisions of one request, the one its headers report: when refused, the refusing limit
 * that makes the client wait longest; when admitted, the one with the fewest remaining
 * requests (ties: the longest reset). Returns its index (0 when n is 0).
 */
size_t tp_rl_pick(const struct tp_rl_decision *d, size_t n);

/**
 * Microseconds since the epoch on a clock that never jumps: CLOCK_MONOTONIC plus the offset
 * to CLOCK_REALTIME taken once at the first call. Windows are aligned to the epoch as the
 * clock was when the process started; a later change of the wall clock does not move them.
 */
int64_t tp_rl_now_us(void);

/** Whole seconds, rounded up, of a positive duration; 0 for 0 or less. For headers. */
int64_t tp_rl_ceil_s(int64_t us);

#endif
