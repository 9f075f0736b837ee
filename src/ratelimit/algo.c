/*
 * turnpike — rate-limiting algorithms (algo.h). The Lua scripts of src/ratelimit/redis.c
 * follow these functions line by line; change both together.
 */
#include "ratelimit/algo.h"
#include "turnpike/common.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int tp_rl_limit_init(struct tp_rl_limit *l)
{
    if (l->count == 0)
        return TP_EINVAL;
    if (l->algo == TP_RL_CONCURRENCY)
        return 0;
    if (l->period_us <= 0 || l->max_delay_us < 0)
        return TP_EINVAL;
    if (l->algo == TP_RL_SLIDING_LOG && l->count > TP_RL_MAX_LOG)
        return TP_EINVAL;
    if (l->burst == 0)
        l->burst = l->count;
    /* rounded down: a rate like 3 per second is one request every 333 333 µs */
    l->interval_us = l->period_us / (int64_t)TP_MIN(l->count, (uint64_t)l->period_us);
    if (l->interval_us < 1)
        l->interval_us = 1;
    return 0;
}

int tp_rl_state_init(const struct tp_rl_limit *l, struct tp_rl_state *s)
{
    memset(s, 0, sizeof(*s));
    if (l->algo != TP_RL_SLIDING_LOG)
        return 0;
    s->log = malloc((size_t)l->count * sizeof(*s->log));
    return s->log ? 0 : TP_ENOMEM;
}

void tp_rl_state_free(struct tp_rl_state *s)
{
    free(s->log);
    memset(s, 0, sizeof(*s));
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* ---- fixed window ---------------------------------------------------------------------- */

static void fixed_eval(const struct tp_rl_limit *l, struct tp_rl_state *s, int64_t now,
                       struct tp_rl_decision *d, bool commit)
{
    int64_t w = floor_div(now, l->period_us);
    uint64_t used = s->window == w ? s->cur : 0;
    int64_t end = (w + 1) * l->period_us - now;

    d->allowed = used < l->count;
    if (d->allowed) {
        used++;
        if (commit) {
            s->window = w;
            s->cur = used;
        }
    }
    d->limit = l->count;
    d->remaining = used >= l->count ? 0 : l->count - used;
    d->reset_us = end;
    d->retry_us = d->remaining ? 0 : end;
}

/* ---- sliding window (weighted) --------------------------------------------------------- */

/* floor(prev · (P − e) / P): the previous window's admissions still inside the trailing P,
 * assuming they were spread evenly; rounded down (documented). */
static uint64_t weighted(uint64_t prev, int64_t period, int64_t e)
{
    unsigned __int128 x = (unsigned __int128)prev * (uint64_t)(period - e);
    return (uint64_t)(x / (uint64_t)period);
}

/* Within a window of length P where `prev` weighs in, the first offset e' at which
 * cur + floor(prev · (P − e') / P) < limit, i.e. prev · (P − e') < (limit − cur) · P. */
static int64_t sliding_first_offset(uint64_t prev, uint64_t cur, uint64_t limit, int64_t period)
{
    if (prev == 0)
        return 0;
    unsigned __int128 kp = (unsigned __int128)(limit - cur) * (uint64_t)period;
    unsigned __int128 q = (kp - 1) / prev; /* largest P − e' allowed */
    if (q >= (unsigned __int128)period)
        return 0;
    return period - (int64_t)q;
}

/* How long until one more request is admitted, the state being (prev, cur) at offset e. */
static int64_t sliding_wait(uint64_t prev, uint64_t cur, uint64_t limit, int64_t period,
                            int64_t e)
{
    if (cur < limit) {
        int64_t first = sliding_first_offset(prev, cur, limit, period);
        return first > e ? first - e : 0;
    }
    /* this window is full by itself: in the next one it becomes `prev` and must decay */
    return (period - e) + sliding_first_offset(cur, 0, limit, period);
}

static void sliding_eval(const struct tp_rl_limit *l, struct tp_rl_state *s, int64_t now,
                         struct tp_rl_decision *d, bool commit)
{
    int64_t p = l->period_us;
    int64_t w = floor_div(now, p);
    int64_t e = now - w * p;
    uint64_t cur = s->window == w ? s->cur : 0;
    uint64_t prev = s->window == w ? s->prev : s->window == w - 1 ? s->cur : 0;
    uint64_t used = cur + weighted(prev, p, e);

    d->allowed = used < l->count;
    if (d->allowed) {
        cur++;
        used++;
        if (commit) {
            s->window = w;
            s->cur = cur;
            s->prev = prev;
        }
    }
    d->limit = l->count;
    d->remaining = used >= l->count ? 0 : l->count - used;
    d->retry_us = d->remaining ? 0 : sliding_wait(prev, cur, l->count, p, e);
    d->reset_us = cur ? 2 * p - e : prev ? p - e : 0;
    if (d->reset_us < d->retry_us)
        d->reset_us = d->retry_us;
}

/* ---- sliding log ------------------------------------------------------------------------ */

static int64_t log_at(const struct tp_rl_limit *l, const struct tp_rl_state *s, uint32_t i)
{
    return s->log[(s->log_head + i) % l->count];
}

/* Admissions of the trailing period: those later than now − P (one made exactly P ago has
 * left the window). */
static uint32_t log_skip_old(const struct tp_rl_limit *l, const struct tp_rl_state *s,
                             int64_t now)
{
    uint32_t old = 0;
    while (old < s->log_len && log_at(l, s, old) <= now - l->period_us)
        old++;
    return old;
}

static void log_eval(const struct tp_rl_limit *l, struct tp_rl_state *s, int64_t now,
                     struct tp_rl_decision *d, bool commit)
{
    uint32_t old = log_skip_old(l, s, now);
    uint64_t live = s->log_len - old;
    int64_t newest = s->log_len ? log_at(l, s, s->log_len - 1) : 0;
    int64_t oldest_live = live ? log_at(l, s, old) : 0;

    d->allowed = s->log && live < l->count;
    if (d->allowed) {
        int64_t t = now > newest ? now : newest; /* keep the ring ordered */
        if (!live)
            oldest_live = t;
        newest = t;
        live++;
        if (commit) {
            s->log_head = (uint32_t)((s->log_head + old) % l->count);
            s->log_len -= old;
            s->log[(s->log_head + s->log_len) % l->count] = t;
            s->log_len++;
        }
    }
    d->limit = l->count;
    d->remaining = live >= l->count ? 0 : l->count - live;
    d->retry_us = d->remaining ? 0 : oldest_live + l->period_us - now;
    d->reset_us = live ? newest + l->period_us - now : 0;
}

/* ---- token bucket (GCRA) ------------------------------------------------------------------ */

/*
 * One token every T = P/count, capacity B = burst. The state is the theoretical arrival time
 * TAT: the bucket is full when TAT <= now, and holds (now + B·T − TAT)/T tokens otherwise.
 * A request is admitted when max(TAT, now) − now <= (B − 1)·T, and moves TAT on by T.
 */
static void token_eval(const struct tp_rl_limit *l, struct tp_rl_state *s, int64_t now,
                       struct tp_rl_decision *d, bool commit)
{
    int64_t t = l->interval_us;
    int64_t cap; /* a bucket of burst tokens, in µs of refill; saturates (burst x period) */
    if (__builtin_mul_overflow((int64_t)l->burst, t, &cap))
        cap = INT64_MAX / 4;
    int64_t tat = s->tat > now ? s->tat : now;

    d->allowed = tat - now <= cap - t;
    if (d->allowed) {
        tat += t;
        if (commit)
            s->tat = tat;
    }
    int64_t room = cap - (tat - now);
    d->limit = l->burst;
    d->remaining = room > 0 ? (uint64_t)(room / t) : 0;
    d->reset_us = tat - now;
    d->retry_us = d->remaining ? 0 : tat - (cap - t) - now;
    if (d->retry_us < 0)
        d->retry_us = 0;
}

/* ---- leaky bucket (shaping) --------------------------------------------------------------- */

/*
 * Requests leave one every T; a request arriving at now leaves at max(TAT, now) and TAT moves
 * to that time plus T. One that would wait more than max_delay is refused. remaining is the
 * number of further requests that could still be queued now.
 */
static void leaky_eval(const struct tp_rl_limit *l, struct tp_rl_state *s, int64_t now,
                       struct tp_rl_decision *d, bool commit)
{
    int64_t t = l->interval_us;
    int64_t release = s->tat > now ? s->tat : now;
    int64_t tat = s->tat > now ? s->tat : now;

    d->allowed = release - now <= l->max_delay_us;
    d->delay_us = 0;
    if (d->allowed) {
        d->delay_us = release - now;
        tat = release + t;
        if (commit)
            s->tat = tat;
    }
    int64_t room = now + l->max_delay_us - tat;
    d->limit = l->count;
    d->remaining = room >= 0 ? (uint64_t)(room / t) + 1 : 0;
    d->reset_us = tat > now ? tat - now : 0;
    d->retry_us = d->remaining ? 0 : tat - l->max_delay_us - now;
    if (d->retry_us < 0)
        d->retry_us = 0;
}

/* ---- concurrency --------------------------------------------------------------------------- */

static void conc_eval(const struct tp_rl_limit *l, struct tp_rl_state *s, struct tp_rl_decision *d,
                      bool commit)
{
    uint64_t cur = s->cur;

    d->allowed = cur < l->count;
    if (d->allowed) {
        cur++;
        if (commit)
            s->cur = cur;
    }
    d->limit = l->count;
    d->remaining = cur >= l->count ? 0 : l->count - cur;
    /* no clock frees a slot: a refused client is told to try again in a second */
    d->retry_us = d->remaining ? 0 : TP_RL_US;
    d->reset_us = d->retry_us;
}

/* ---------------------------------------------------------------------------------------- */

static void eval(const struct tp_rl_limit *l, struct tp_rl_state *s, int64_t now,
                 struct tp_rl_decision *d, bool commit)
{
    d->delay_us = 0;
    switch (l->algo) {
    case TP_RL_FIXED_WINDOW:
        fixed_eval(l, s, now, d, commit);
        break;
    case TP_RL_SLIDING_WINDOW:
        sliding_eval(l, s, now, d, commit);
        break;
    case TP_RL_SLIDING_LOG:
        log_eval(l, s, now, d, commit);
        break;
    case TP_RL_TOKEN_BUCKET:
        token_eval(l, s, now, d, commit);
        break;
    case TP_RL_LEAKY_BUCKET:
        leaky_eval(l, s, now, d, commit);
        break;
    case TP_RL_CONCURRENCY:
        conc_eval(l, s, d, commit);
        break;
    }
}

void tp_rl_check(const struct tp_rl_limit *l, const struct tp_rl_state *s, int64_t now,
                 struct tp_rl_decision *d)
{
    /* the evaluators write the state only when commit is true */
    eval(l, (struct tp_rl_state *)s, now, d, false);
}

void tp_rl_commit(const struct tp_rl_limit *l, struct tp_rl_state *s, int64_t now,
                  struct tp_rl_decision *d)
{
    eval(l, s, now, d, true);
}

bool tp_rl_take(const struct tp_rl_limit *l, struct tp_rl_state *s, int64_t now,
                struct tp_rl_decision *d)
{
    tp_rl_check(l, s, now, d);
    if (d->allowed)
        tp_rl_commit(l, s, now, d);
    return d->allowed;
}

void tp_rl_release(const struct tp_rl_limit *l, struct tp_rl_state *s)
{
    if (l->algo == TP_RL_CONCURRENCY && s->cur > 0)
        s->cur--;
}

int64_t tp_rl_expiry(const struct tp_rl_limit *l, const struct tp_rl_state *s, int64_t now)
{
    switch (l->algo) {
    case TP_RL_FIXED_WINDOW:
        return (s->window + 1) * l->period_us;
    case TP_RL_SLIDING_WINDOW:
        return (s->window + 2) * l->period_us;
    case TP_RL_SLIDING_LOG:
        return s->log_len ? log_at(l, s, s->log_len - 1) + l->period_us : now;
    case TP_RL_TOKEN_BUCKET:
    case TP_RL_LEAKY_BUCKET:
        return s->tat;
    case TP_RL_CONCURRENCY:
        return s->cur ? INT64_MAX : now;
    }
    return now;
}

size_t tp_rl_pick(const struct tp_rl_decision *d, size_t n)
{
    size_t best = 0;
    bool refused = false;
    for (size_t i = 0; i < n; i++)
        refused |= !d[i].allowed;
    for (size_t i = 1; i < n; i++) {
        const struct tp_rl_decision *a = &d[i], *b = &d[best];
        bool better;
        if (refused)
            better = !a->allowed && (b->allowed || a->retry_us > b->retry_us);
        else
            better = a->remaining < b->remaining ||
                     (a->remaining == b->remaining && a->reset_us > b->reset_us);
        if (better)
            best = i;
    }
    return best;
}

static int64_t clock_offset_us;
static pthread_once_t clock_once = PTHREAD_ONCE_INIT;

static int64_t read_clock(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * TP_RL_US + ts.tv_nsec / 1000;
}

static void clock_init(void)
{
    clock_offset_us = read_clock(CLOCK_REALTIME) - read_clock(CLOCK_MONOTONIC);
}

int64_t tp_rl_now_us(void)
{
    pthread_once(&clock_once, clock_init);
    return read_clock(CLOCK_MONOTONIC) + clock_offset_us;
}

int64_t tp_rl_ceil_s(int64_t us)
{
    return us <= 0 ? 0 : (us + TP_RL_US - 1) / TP_RL_US;
}
