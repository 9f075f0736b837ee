/*
 * Circuit breakers (include/turnpike/circuit.h): lock-free, shared by every worker.
 *
 * State word. The state, the trial counters of a half-open period and a time stamp share one
 * 64-bit atomic, so every decision is one load and every transition one compare-and-swap:
 *
 *   bits  0..1   state: closed, open, half-open
 *   bits  2..11  half-open: trials admitted
 *   bits 12..21  half-open: trials that succeeded (a failed trial ends the period)
 *   bits 22..63  stamp, ms: open → when it may turn half-open; half-open → the same;
 *                closed → when it closed (0 at start)
 *
 * Stamps never go down (an open stamp is max(now, previous stamp) + open_time, a close stamp
 * max(now, previous stamp)), and within one half-open period the counters only go up, so a word
 * never repeats: a CAS from a stale word always fails (no ABA), and exactly one thread wins
 * each transition.
 *
 * Half-open never sticks. done() counts a result only while fewer results than admitted trials
 * have been counted, so "admitted - counted <= trials still in flight" holds at every step; once
 * every trial has answered, either they all succeeded (closed, when half_open_requests were
 * admitted), one failed (open), or slots remain for the next requests.
 *
 * Window. NUM_BUCKETS buckets of window/NUM_BUCKETS ms, bucket i holding the requests of the
 * bucket periods p with p % NUM_BUCKETS == i. Each bucket is one atomic word with the period it
 * holds (low 26 bits), its requests and its failures, updated by CAS: a bucket found holding an
 * older period is reset and reused in the same CAS, so no sample lands in a stale period. The
 * window sums the buckets of the current period and the NUM_BUCKETS - 1 before it.
 *
 * Memory order. Each invariant lives in a single atomic object (the state word, one bucket,
 * in_flight, pending), and read-modify-writes of one object are totally ordered whatever the
 * memory order, so no invariant needs ordering between objects: counters and buckets are
 * relaxed. The state word is loaded with acquire and swapped with acq_rel so that a thread that
 * sees a transition also sees the samples that caused it. The window is statistics: a sample
 * that races with a transition (recorded just after the circuit opened, or cleared by the
 * close) is lost or kept, which only shifts the next decision by one request.
 */
#include "turnpike/circuit.h"
#include "turnpike/config.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define NUM_BUCKETS 10
#define CACHE_LINE 64

enum { ST_CLOSED = 0, ST_OPEN = 1, ST_HALF_OPEN = 2 };

#define ST_STATE_MASK UINT64_C(0x3)
#define ST_ADMITTED_SHIFT 2
#define ST_OK_SHIFT 12
#define ST_COUNT_MASK UINT64_C(0x3ff)
#define ST_STAMP_SHIFT 22
#define ST_STAMP_MASK ((UINT64_C(1) << 42) - 1)

#define BK_COUNT_BITS 19
#define BK_COUNT_MAX ((UINT64_C(1) << BK_COUNT_BITS) - 1)
#define BK_TOTAL_SHIFT BK_COUNT_BITS
#define BK_EPOCH_SHIFT (2 * BK_COUNT_BITS)
#define BK_EPOCH_MASK ((UINT64_C(1) << (64 - BK_EPOCH_SHIFT)) - 1)

struct tp_circuit {
    _Alignas(CACHE_LINE) atomic_uint_least64_t state; /* read by every acquire */
    /* settings, read-only after tp_circuit_new */
    uint32_t failure_ratio, failure_count, min_requests, half_open_requests;
    uint32_t max_requests, max_pending;
    uint64_t bucket_ms, open_ms;
    bool trips; /* failure_ratio or failure_count set */
    _Alignas(CACHE_LINE) atomic_uint in_flight;
    atomic_uint pending;
    _Alignas(CACHE_LINE) atomic_uint_least64_t buckets[NUM_BUCKETS];
};

/* --- state word ---------------------------------------------------------------------------- */

static inline uint64_t st_make(unsigned state, uint64_t admitted, uint64_t ok, uint64_t stamp)
{
    return (uint64_t)state | admitted << ST_ADMITTED_SHIFT | ok << ST_OK_SHIFT |
           (stamp & ST_STAMP_MASK) << ST_STAMP_SHIFT;
}

static inline unsigned st_state(uint64_t w)
{
    return (unsigned)(w & ST_STATE_MASK);
}

static inline uint32_t st_admitted(uint64_t w)
{
    return (uint32_t)(w >> ST_ADMITTED_SHIFT & ST_COUNT_MASK);
}

static inline uint32_t st_ok(uint64_t w)
{
    return (uint32_t)(w >> ST_OK_SHIFT & ST_COUNT_MASK);
}

static inline uint64_t st_stamp(uint64_t w)
{
    return w >> ST_STAMP_SHIFT;
}

static inline uint64_t max_u64(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

/* The open word that follows w: stamps never go down, whatever clock the caller read. */
static inline uint64_t st_reopen(const struct tp_circuit *c, uint64_t w, uint64_t now_ms)
{
    return st_make(ST_OPEN, 0, 0, max_u64(now_ms, st_stamp(w)) + c->open_ms);
}

static inline bool st_swap(struct tp_circuit *c, uint64_t *w, uint64_t next)
{
    return atomic_compare_exchange_strong_explicit(&c->state, w, next, memory_order_acq_rel,
                                                   memory_order_acquire);
}

/* --- counters with a limit ------------------------------------------------------------------ */

/* Take one unit of *n unless `max` (0 = unlimited) are taken. */
static bool reserve(atomic_uint *n, uint32_t max)
{
    if (max == 0) {
        atomic_fetch_add_explicit(n, 1, memory_order_relaxed);
        return true;
    }
    unsigned v = atomic_load_explicit(n, memory_order_relaxed);
    do {
        if (v >= max)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(n, &v, v + 1, memory_order_relaxed,
                                                    memory_order_relaxed));
    return true;
}

static void unreserve(atomic_uint *n)
{
    atomic_fetch_sub_explicit(n, 1, memory_order_relaxed);
}

/* --- window ---------------------------------------------------------------------------------- */

static inline uint64_t bk_epoch(uint64_t v)
{
    return v >> BK_EPOCH_SHIFT;
}

static inline uint64_t bk_total(uint64_t v)
{
    return v >> BK_TOTAL_SHIFT & BK_COUNT_MAX;
}

static inline uint64_t bk_failures(uint64_t v)
{
    return v & BK_COUNT_MAX;
}

/* Count one request in the bucket of its period. */
static void window_record(struct tp_circuit *c, bool failure, uint64_t now_ms)
{
    uint64_t period = now_ms / c->bucket_ms;
    uint64_t epoch = period & BK_EPOCH_MASK;
    atomic_uint_least64_t *b = &c->buckets[period % NUM_BUCKETS];
    uint64_t v = atomic_load_explicit(b, memory_order_relaxed), next;

    do {
        uint64_t ahead = (bk_epoch(v) - epoch) & BK_EPOCH_MASK;
        if (ahead == 0) {
            if (bk_total(v) == BK_COUNT_MAX)
                return; /* saturated: drop the sample rather than skew the ratio */
            next = v + (UINT64_C(1) << BK_TOTAL_SHIFT) + failure;
        } else if (ahead < (BK_EPOCH_MASK >> 1)) {
            return; /* reused by a later period (a caller with a newer clock): too old */
        } else {
            next = epoch << BK_EPOCH_SHIFT | UINT64_C(1) << BK_TOTAL_SHIFT | failure;
        }
    } while (!atomic_compare_exchange_weak_explicit(b, &v, next, memory_order_relaxed,
                                                    memory_order_relaxed));
}

/* Whether the window at now_ms calls for opening the circuit. */
static bool window_tripped(struct tp_circuit *c, uint64_t now_ms)
{
    uint64_t epoch = (now_ms / c->bucket_ms) & BK_EPOCH_MASK, total = 0, failures = 0;

    for (size_t i = 0; i < NUM_BUCKETS; i++) {
        uint64_t v = atomic_load_explicit(&c->buckets[i], memory_order_relaxed);
        if (((epoch - bk_epoch(v)) & BK_EPOCH_MASK) < NUM_BUCKETS) {
            total += bk_total(v);
            failures += bk_failures(v);
        }
    }
    if (c->failure_count && failures >= c->failure_count)
        return true;
    return c->failure_ratio && total > 0 && total >= c->min_requests &&
           failures * 100 >= (uint64_t)c->failure_ratio * total;
}

/* A closed circuit starts from an empty window (the samples that opened it are history). */
static void window_clear(struct tp_circuit *c)
{
    for (size_t i = 0; i < NUM_BUCKETS; i++)
        atomic_store_explicit(&c->buckets[i], 0, memory_order_relaxed);
}

/* --- API ------------------------------------------------------------------------------------ */

struct tp_circuit *tp_circuit_new(const struct tp_conf_circuit *conf)
{
    size_t size = (sizeof(struct tp_circuit) + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE;
    struct tp_circuit *c = aligned_alloc(CACHE_LINE, size);

    if (!c)
        return NULL;
    memset(c, 0, size);
    atomic_init(&c->state, st_make(ST_CLOSED, 0, 0, 0));
    atomic_init(&c->in_flight, 0);
    atomic_init(&c->pending, 0);
    for (size_t i = 0; i < NUM_BUCKETS; i++)
        atomic_init(&c->buckets[i], 0);
    c->half_open_requests = 1;
    c->open_ms = 1;
    c->bucket_ms = 1000;
    if (conf) {
        c->failure_ratio = conf->failure_ratio;
        c->failure_count = conf->failure_count;
        c->min_requests = conf->min_requests;
        c->max_requests = conf->max_requests;
        c->max_pending = conf->max_pending;
        /* the loader bounds these; clamp anyway so the bit fields cannot overflow */
        c->half_open_requests = conf->half_open_requests < 1      ? 1
                                : conf->half_open_requests > 1000 ? 1000
                                                                  : conf->half_open_requests;
        c->open_ms = conf->open_ms ? conf->open_ms : 1;
        c->bucket_ms = conf->window_ms >= NUM_BUCKETS ? conf->window_ms / NUM_BUCKETS : 1;
    }
    c->trips = c->failure_ratio || c->failure_count;
    return c;
}

void tp_circuit_free(struct tp_circuit *c)
{
    free(c);
}

/* Retry-After for a refused request: the rest of the open time in whole seconds, at least 1. */
static uint32_t retry_after(uint64_t w, uint64_t now_ms)
{
    uint64_t until = st_stamp(w);
    uint64_t s = st_state(w) == ST_OPEN && until > now_ms ? (until - now_ms + 999) / 1000 : 1;

    return s > UINT32_MAX ? UINT32_MAX : s < 1 ? 1 : (uint32_t)s;
}

/* Whether w refuses a request at now_ms before anything is reserved. */
static bool refuses(const struct tp_circuit *c, uint64_t w, uint64_t now_ms)
{
    switch (st_state(w)) {
    case ST_OPEN:
        return now_ms < st_stamp(w);
    case ST_HALF_OPEN:
        return st_admitted(w) >= c->half_open_requests;
    default:
        return false;
    }
}

int tp_circuit_acquire(struct tp_circuit *c, uint64_t now_ms, uint32_t *retry_after_s)
{
    uint64_t w = atomic_load_explicit(&c->state, memory_order_acquire), next;

    /* An open circuit answers without touching the shared in-flight counter. */
    if (refuses(c, w, now_ms))
        goto out_open;
    if (!reserve(&c->in_flight, c->max_requests))
        return TP_CIRCUIT_BUSY;
    for (;;) {
        if (st_state(w) == ST_CLOSED)
            return TP_CIRCUIT_ALLOW;
        if (refuses(c, w, now_ms))
            goto out_unreserve;
        if (st_state(w) == ST_OPEN) /* open time over: this request is the first trial */
            next = st_make(ST_HALF_OPEN, 1, 0, st_stamp(w));
        else
            next = w + (UINT64_C(1) << ST_ADMITTED_SHIFT);
        if (st_swap(c, &w, next))
            return TP_CIRCUIT_ALLOW;
    }

out_unreserve:
    unreserve(&c->in_flight);
out_open:
    if (retry_after_s)
        *retry_after_s = retry_after(w, now_ms);
    return TP_CIRCUIT_OPEN;
}

/* A closed circuit: count the outcome, open on a failure that trips the window. */
static void done_closed(struct tp_circuit *c, uint64_t w, bool failure, uint64_t now_ms)
{
    if (!c->trips)
        return;
    window_record(c, failure, now_ms);
    /* Only opening leaves the closed state: if the CAS fails another thread opened it. */
    if (failure && window_tripped(c, now_ms))
        st_swap(c, &w, st_reopen(c, w, now_ms));
}

void tp_circuit_done(struct tp_circuit *c, bool failure, uint64_t now_ms)
{
    uint64_t w = atomic_load_explicit(&c->state, memory_order_acquire), next;

    unreserve(&c->in_flight);
    for (;;) {
        if (st_state(w) == ST_CLOSED) {
            done_closed(c, w, failure, now_ms);
            return;
        }
        /* Open, or every admitted trial has answered: nothing to decide. */
        if (st_state(w) == ST_OPEN || st_ok(w) >= st_admitted(w))
            return;
        if (failure)
            next = st_reopen(c, w, now_ms);
        else if (st_ok(w) + 1 >= c->half_open_requests)
            next = st_make(ST_CLOSED, 0, 0, max_u64(now_ms, st_stamp(w)));
        else
            next = w + (UINT64_C(1) << ST_OK_SHIFT);
        if (st_swap(c, &w, next)) {
            if (st_state(next) == ST_CLOSED)
                window_clear(c);
            return;
        }
    }
}

bool tp_circuit_connect_begin(struct tp_circuit *c)
{
    return reserve(&c->pending, c->max_pending);
}

void tp_circuit_connect_end(struct tp_circuit *c)
{
    unreserve(&c->pending);
}

const char *tp_circuit_state_name(const struct tp_circuit *c, uint64_t now_ms)
{
    uint64_t w = atomic_load_explicit(&((struct tp_circuit *)c)->state, memory_order_acquire);

    switch (st_state(w)) {
    case ST_OPEN:
        return now_ms < st_stamp(w) ? "open" : "half-open";
    case ST_HALF_OPEN:
        return "half-open";
    default:
        return "closed";
    }
}

uint32_t tp_circuit_in_flight(const struct tp_circuit *c)
{
    return atomic_load_explicit(&((struct tp_circuit *)c)->in_flight, memory_order_relaxed);
}

uint32_t tp_circuit_pending(const struct tp_circuit *c)
{
    return atomic_load_explicit(&((struct tp_circuit *)c)->pending, memory_order_relaxed);
}
