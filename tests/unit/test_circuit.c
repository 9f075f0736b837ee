/*
 * Unit tests: circuit breakers (src/upstream/circuit.c) and their configuration
 * (src/config/circuit.c). The breaker takes the time from its caller, so every test below drives
 * a clock of its own, in ms.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "turnpike/circuit.h"
#include "turnpike/config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The README's defaults, with the fields a test changes set afterwards. */
static struct tp_conf_circuit defaults(void)
{
    return (struct tp_conf_circuit){
        .failure_ratio = 50,
        .failure_count = 0,
        .min_requests = 20,
        .window_ms = 10000,
        .open_ms = 5000,
        .half_open_requests = 3,
        .max_requests = 0,
        .max_pending = 0,
    };
}

/* One request through c at now: acquire (must be allowed) and report its outcome. */
static void request(struct tp_circuit *c, uint64_t now, bool failure)
{
    assert_int_equal(tp_circuit_acquire(c, now, NULL), TP_CIRCUIT_ALLOW);
    tp_circuit_done(c, failure, now);
}

static void requests(struct tp_circuit *c, uint64_t now, int n, bool failure)
{
    for (int i = 0; i < n; i++)
        request(c, now, failure);
}

/* c refuses a request at `now` as open, with this Retry-After (s). */
static void assert_open(struct tp_circuit *c, uint64_t now, uint32_t retry_after)
{
    uint32_t ra = 0;

    assert_int_equal(tp_circuit_acquire(c, now, &ra), TP_CIRCUIT_OPEN);
    assert_int_equal(ra, retry_after);
    assert_string_equal(tp_circuit_state_name(c, now), "open");
}

/* ------------------------------------------------------------------------------------------ */
/* Opening                                                                                    */

static void opens_on_ratio_after_min_requests(void **state)
{
    (void)state;
    struct tp_conf_circuit conf = defaults();
    struct tp_circuit *c = tp_circuit_new(&conf);

    assert_non_null(c);
    assert_string_equal(tp_circuit_state_name(c, 0), "closed");
    /* 19 failures out of 19: 100%, but fewer than min_requests (20) */
    requests(c, 1000, 19, true);
    assert_string_equal(tp_circuit_state_name(c, 1000), "closed");
    request(c, 1000, true);
    assert_string_equal(tp_circuit_state_name(c, 1000), "open");
    assert_open(c, 1000, 5);
    assert_int_equal(tp_circuit_in_flight(c), 0);
    tp_circuit_free(c);
}

static void ratio_threshold_is_inclusive(void **state)
{
    (void)state;
    struct tp_conf_circuit conf = defaults();
    struct tp_circuit *c = tp_circuit_new(&conf);

    /* 11 successes, then 9 and 10 failures: 45%, 47.6% */
    requests(c, 1000, 11, false);
    requests(c, 1000, 10, true);
    assert_string_equal(tp_circuit_state_name(c, 1000), "closed");
    /* 11 / 22 = 50%: opens */
    request(c, 1000, true);
    assert_string_equal(tp_circuit_state_name(c, 1000), "open");
    tp_circuit_free(c);
}

static void opens_on_count(void **state)
{
    (void)state;
    struct tp_conf_circuit conf = defaults();
    conf.failure_ratio = 0;
    conf.failure_count = 5;
    struct tp_circuit *c = tp_circuit_new(&conf);

    requests(c, 1000, 200, false);
    requests(c, 1000, 4, true);
    assert_string_equal(tp_circuit_state_name(c, 1000), "closed");
    request(c, 1000, true); /* 5 of 205, far under any ratio, but the count is reached */
    assert_string_equal(tp_circuit_state_name(c, 1000), "open");
    tp_circuit_free(c);
}

static void either_condition_opens(void **state)
{
    (void)state;
    struct tp_conf_circuit conf = defaults();
    conf.failure_count = 100;
    conf.min_requests = 4;
    struct tp_circuit *c = tp_circuit_new(&conf);

    requests(c, 0, 2, false);
    requests(c, 0, 2, true); /* 2 of 4 = 50%: the ratio opens long before the count */
    assert_string_equal(tp_circuit_state_name(c, 0), "open");
    tp_circuit_free(c);
}

static void stays_closed_under_threshold(void **state)
{
    (void)state;
    struct tp_conf_circuit conf = defaults();
    struct tp_circuit *c = tp_circuit_new(&conf);

    /* 49% failures for a minute (successes first, so no prefix goes over either) */
    for (uint64_t t = 0; t < 60000; t += 500) {
        requests(c, t, 51, false);
        requests(c, t, 49, true);
        assert_string_equal(tp_circuit_state_name(c, t), "closed");
    }
    tp_circuit_free(c);

    /* failure_count 50: 49 failures per window, the window sliding over them */
    conf.failure_ratio = 0;
    conf.failure_count = 50;
    conf.window_ms = 1000;
    c = tp_circuit_new(&conf);
    for (uint64_t t = 0; t < 60000; t += 1000) {
        requests(c, t, 49, true);
        assert_string_equal(tp_circuit_state_name(c, t), "closed");
    }
    tp_circuit_free(c);
}

static void breaker_without_conditions_never_opens(void **state)
{
    (void)state;
    struct tp_conf_circuit conf = defaults();
    conf.failure_ratio = 0;
    struct tp_circuit *c = tp_circuit_new(&conf);
    struct tp_circuit *n = tp_circuit_new(NULL); /* NULL conf: counts only */

    assert_non_null(n);
    requests(c, 0, 1000, true);
    requests(n, 0, 1000, true);
    assert_string_equal(tp_circuit_state_name(c, 0), "closed");
    assert_string_equal(tp_circuit_state_name(n, 0), "closed");
    assert_true(tp_circuit_connect_begin(n));
    assert_int_equal(tp_circuit_pending(n), 1);
    tp_circuit_connect_end(n);
    tp_circuit_free(c);
    tp_circuit_free(n);
    tp_circuit_free(NULL);
}

/* ------------------------------------------------------------------------------------------ */
/* Open, half-open, closed again                                                              */

static struct tp_circuit *opened_at(uint64_t t)
{
    struct tp_conf_circuit conf = defaults();
    conf.failure_ratio = 0;
    conf.failure_count = 1;
    struct tp_circuit *c = tp_circuit_new(&conf);

    assert_non_null(c);
    request(c, t, true);
    assert_string_equal(tp_circuit_state_name(c, t), "open");
    return c;
}

static void open_answers_with_retry_after(void **state)
{
    (void)state;
    struct tp_circuit *c = opened_at(1000); /* open until 6000 */

    assert_open(c, 1000, 5);
    assert_open(c, 1001, 5); /* 4999 ms → 5 s */
    assert_open(c, 2000, 4); /* exactly 4 s */
    assert_open(c, 4500, 2); /* 1500 ms → 2 s */
    assert_open(c, 5000, 1);
    assert_open(c, 5999, 1); /* 1 ms → still at least 1 s */
    assert_int_equal(tp_circuit_in_flight(c), 0);
    /* A NULL retry_after is allowed. */
    assert_int_equal(tp_circuit_acquire(c, 5999, NULL), TP_CIRCUIT_OPEN);
    assert_string_equal(tp_circuit_state_name(c, 6000), "half-open"); /* next one is a trial */
    tp_circuit_free(c);
}

static void half_open_admits_exactly_the_trials(void **state)
{
    (void)state;
    struct tp_circuit *c = opened_at(1000);
    uint32_t ra = 0;

    for (int i = 0; i < 3; i++)
        assert_int_equal(tp_circuit_acquire(c, 6000 + i, NULL), TP_CIRCUIT_ALLOW);
    assert_string_equal(tp_circuit_state_name(c, 6003), "half-open");
    assert_int_equal(tp_circuit_acquire(c, 6003, &ra), TP_CIRCUIT_OPEN);
    assert_int_equal(ra, 1);
    assert_int_equal(tp_circuit_in_flight(c), 3);
    /* two successes do not close it, and admit no new trial */
    tp_circuit_done(c, false, 6010);
    tp_circuit_done(c, false, 6010);
    assert_string_equal(tp_circuit_state_name(c, 6010), "half-open");
    assert_int_equal(tp_circuit_acquire(c, 6010, &ra), TP_CIRCUIT_OPEN);
    /* the third does */
    tp_circuit_done(c, false, 6020);
    assert_string_equal(tp_circuit_state_name(c, 6020), "closed");
    assert_int_equal(tp_circuit_in_flight(c), 0);
    tp_circuit_free(c);
}

static void closing_empties_the_window(void **state)
{
    (void)state;
    struct tp_conf_circuit conf = defaults();
    conf.min_requests = 4;
    conf.half_open_requests = 1;
    struct tp_circuit *c = tp_circuit_new(&conf);

    requests(c, 0, 4, true);
    assert_string_equal(tp_circuit_state_name(c, 0), "open");
    request(c, 5000, false); /* the one trial succeeds */
    assert_string_equal(tp_circuit_state_name(c, 5000), "closed");
    /* within the old window, but the four failures are history: 1 of 4 is 25% */
    requests(c, 5001, 3, false);
    request(c, 5001, true);
    assert_string_equal(tp_circuit_state_name(c, 5001), "closed");
    tp_circuit_free(c);
}

static void failed_trial_reopens_for_full_open_time(void **state)
{
    (void)state;
    struct tp_circuit *c = opened_at(1000);

    assert_int_equal(tp_circuit_acquire(c, 6000, NULL), TP_CIRCUIT_ALLOW);
    assert_int_equal(tp_circuit_acquire(c, 6000, NULL), TP_CIRCUIT_ALLOW);
    tp_circuit_done(c, false, 6100);
    tp_circuit_done(c, true, 6500); /* open until 11500 */
    assert_open(c, 6500, 5);
    assert_open(c, 11499, 1);
    /* the third trial slot of the old period is gone: a new period starts at 11500 */
    for (int i = 0; i < 3; i++)
        assert_int_equal(tp_circuit_acquire(c, 11500, NULL), TP_CIRCUIT_ALLOW);
    assert_int_equal(tp_circuit_acquire(c, 11500, NULL), TP_CIRCUIT_OPEN);
    for (int i = 0; i < 3; i++)
        tp_circuit_done(c, false, 11600);
    assert_string_equal(tp_circuit_state_name(c, 11600), "closed");
    assert_int_equal(tp_circuit_in_flight(c), 0);
    tp_circuit_free(c);
}

static void outcomes_while_open_are_ignored(void **state)
{
    (void)state;
    struct tp_conf_circuit conf = defaults();
    conf.failure_ratio = 0;
    conf.failure_count = 1;
    conf.half_open_requests = 2;
    struct tp_circuit *c = tp_circuit_new(&conf);

    /* three requests in flight; the first fails and opens the circuit */
    for (int i = 0; i < 3; i++)
        assert_int_equal(tp_circuit_acquire(c, 0, NULL), TP_CIRCUIT_ALLOW);
    tp_circuit_done(c, true, 10);
    tp_circuit_done(c, true, 20); /* open already: does not extend the open time */
    assert_open(c, 20, 5);
    assert_int_equal(tp_circuit_in_flight(c), 1);
    /* half-open with one trial admitted: the straggler's success counts as the trial's result,
     * and the trial's own result then finds no unanswered trial */
    assert_int_equal(tp_circuit_acquire(c, 5010, NULL), TP_CIRCUIT_ALLOW);
    tp_circuit_done(c, false, 5020); /* the straggler */
    tp_circuit_done(c, false, 5020); /* the trial */
    assert_string_equal(tp_circuit_state_name(c, 5020), "half-open");
    assert_int_equal(tp_circuit_in_flight(c), 0);
    assert_int_equal(tp_circuit_acquire(c, 5020, NULL), TP_CIRCUIT_ALLOW);
    tp_circuit_done(c, false, 5030);
    assert_string_equal(tp_circuit_state_name(c, 5030), "closed");
    tp_circuit_free(c);
}

/* ------------------------------------------------------------------------------------------ */
/* Window                                                                                     */

static void window_slides(void **state)
{
    (void)state;
    struct tp_conf_circuit conf = defaults();
    conf.failure_ratio = 0;
    conf.failure_count = 5;
    conf.window_ms = 1000; /* 10 buckets of 100 ms */
    struct tp_circuit *c = tp_circuit_new(&conf);

    requests(c, 0, 4, true);
    request(c, 1000, true); /* the 4 at t=0 have left the window */
    requests(c, 1050, 3, true);
    /* 4 in the window; then 1000..1950 is one window: 5 */
    assert_string_equal(tp_circuit_state_name(c, 1050), "closed");
    request(c, 1950, true);
    assert_string_equal(tp_circuit_state_name(c, 1950), "open");
    tp_circuit_free(c);

    c = tp_circuit_new(&conf);
    requests(c, 0, 4, true);
    request(c, 999, true); /* still within the window of t=0 */
    assert_string_equal(tp_circuit_state_name(c, 999), "open");
    tp_circuit_free(c);

    /* the ratio's denominator slides too: old successes do not dilute new failures */
    conf = defaults();
    conf.window_ms = 1000;
    conf.min_requests = 10;
    c = tp_circuit_new(&conf);
    requests(c, 0, 100, false);
    requests(c, 500, 9, true);
    assert_string_equal(tp_circuit_state_name(c, 500), "closed");
    requests(c, 1200, 1, true); /* window 300..1200: 10 failures, 0 successes */
    assert_string_equal(tp_circuit_state_name(c, 1200), "open");
    tp_circuit_free(c);
}

static void clock_going_back_is_harmless(void **state)
{
    (void)state;
    struct tp_conf_circuit conf = defaults();
    conf.failure_ratio = 0;
    conf.failure_count = 3;
    conf.window_ms = 1000;
    struct tp_circuit *c = tp_circuit_new(&conf);

    /* another worker's older clock reading lands in a bucket reused by a later period */
    request(c, 2000, true);
    request(c, 1000, true); /* same bucket as 2000, older period: dropped */
    request(c, 2001, true);
    assert_string_equal(tp_circuit_state_name(c, 2001), "closed");
    request(c, 2002, true);
    assert_string_equal(tp_circuit_state_name(c, 2002), "open");
    /* an outcome stamped before the open does not shorten or corrupt the open time */
    assert_open(c, 2002, 5);
    tp_circuit_free(c);
}

/* ------------------------------------------------------------------------------------------ */
/* Limits                                                                                     */

static void max_requests_bounds_in_flight(void **state)
{
    (void)state;
    struct tp_conf_circuit conf = defaults();
    conf.max_requests = 2;
    struct tp_circuit *c = tp_circuit_new(&conf);
    uint32_t ra = 77;

    assert_int_equal(tp_circuit_acquire(c, 0, &ra), TP_CIRCUIT_ALLOW);
    assert_int_equal(tp_circuit_acquire(c, 0, &ra), TP_CIRCUIT_ALLOW);
    assert_int_equal(tp_circuit_acquire(c, 0, &ra), TP_CIRCUIT_BUSY);
    assert_int_equal(ra, 77); /* untouched unless OPEN */
    assert_int_equal(tp_circuit_in_flight(c), 2);
    tp_circuit_done(c, false, 1);
    assert_int_equal(tp_circuit_acquire(c, 1, NULL), TP_CIRCUIT_ALLOW);
    assert_int_equal(tp_circuit_acquire(c, 1, NULL), TP_CIRCUIT_BUSY);
    tp_circuit_done(c, false, 2);
    tp_circuit_done(c, false, 2);
    assert_int_equal(tp_circuit_in_flight(c), 0);
    /* BUSY is not a failure: it never opens the circuit */
    assert_string_equal(tp_circuit_state_name(c, 2), "closed");
    tp_circuit_free(c);
}

static void max_pending_bounds_connects(void **state)
{
    (void)state;
    struct tp_conf_circuit conf = defaults();
    conf.max_pending = 2;
    struct tp_circuit *c = tp_circuit_new(&conf);

    assert_true(tp_circuit_connect_begin(c));
    assert_true(tp_circuit_connect_begin(c));
    assert_false(tp_circuit_connect_begin(c));
    assert_int_equal(tp_circuit_pending(c), 2);
    tp_circuit_connect_end(c);
    assert_true(tp_circuit_connect_begin(c));
    tp_circuit_connect_end(c);
    tp_circuit_connect_end(c);
    assert_int_equal(tp_circuit_pending(c), 0);
    /* requests are not connects */
    requests(c, 0, 10, false);
    assert_true(tp_circuit_connect_begin(c));
    tp_circuit_connect_end(c);
    tp_circuit_free(c);

    conf.max_pending = 0; /* unlimited, still counted */
    c = tp_circuit_new(&conf);
    for (int i = 0; i < 1000; i++)
        assert_true(tp_circuit_connect_begin(c));
    assert_int_equal(tp_circuit_pending(c), 1000);
    for (int i = 0; i < 1000; i++)
        tp_circuit_connect_end(c);
    tp_circuit_free(c);
}

/* ------------------------------------------------------------------------------------------ */
/* Threads                                                                                    */

#define THREADS 4
#define ITERATIONS 100000
#define MAX_REQUESTS 3
#define MAX_PENDING 2
#define STRESS_OPEN_MS 200

struct stress {
    struct tp_circuit *c;
    atomic_ullong clock;  /* shared fake ms clock: 1 ms per 16 calls */
    atomic_int in_flight; /* our own count of admitted requests */
    atomic_int connects;  /* our own count of connects in progress */
    atomic_int max_in_flight, max_connects;
    atomic_ulong allowed, open, busy;
    atomic_int states_seen; /* bit per state name */
    atomic_int bad;         /* verdicts or Retry-After values out of range (no cmocka
                             * asserts off the main thread) */
};

static void note_max(atomic_int *max, int v)
{
    int m = atomic_load(max);
    while (v > m && !atomic_compare_exchange_weak(max, &m, v))
        ;
}

static void *stress_thread(void *arg)
{
    struct stress *s = arg;
    unsigned seed = (unsigned)(uintptr_t)pthread_self();

    for (int i = 0; i < ITERATIONS; i++) {
        uint64_t now = atomic_fetch_add(&s->clock, 1) / 16;
        uint32_t ra = 0;
        int v = tp_circuit_acquire(s->c, now, &ra);
        if (v == TP_CIRCUIT_ALLOW) {
            atomic_fetch_add(&s->allowed, 1);
            note_max(&s->max_in_flight, atomic_fetch_add(&s->in_flight, 1) + 1);
            if (tp_circuit_connect_begin(s->c)) {
                note_max(&s->max_connects, atomic_fetch_add(&s->connects, 1) + 1);
                atomic_fetch_sub(&s->connects, 1);
                tp_circuit_connect_end(s->c);
            }
            /* the target alternates between sick and healthy every 300 ms */
            bool failure = (int)(rand_r(&seed) % 100) < ((now / 300) % 2 ? 90 : 10);
            atomic_fetch_sub(&s->in_flight, 1);
            tp_circuit_done(s->c, failure, atomic_load(&s->clock) / 16);
        } else if (v == TP_CIRCUIT_OPEN) {
            /* The open time ends at most open_ms after the latest clock reading of any thread,
             * and this thread's reading may be stale (preempted): bound by the clock now. */
            uint64_t late = atomic_load(&s->clock) / 16 - now;
            if (ra < 1 || ra > (late + STRESS_OPEN_MS + 999) / 1000)
                atomic_fetch_add(&s->bad, 1);
            atomic_fetch_add(&s->open, 1);
        } else if (v == TP_CIRCUIT_BUSY) {
            atomic_fetch_add(&s->busy, 1);
        } else {
            atomic_fetch_add(&s->bad, 1);
        }
        const char *name = tp_circuit_state_name(s->c, now);
        atomic_fetch_or(&s->states_seen, strcmp(name, "closed") == 0      ? 1
                                         : strcmp(name, "open") == 0      ? 2
                                         : strcmp(name, "half-open") == 0 ? 4
                                                                          : 8);
    }
    return NULL;
}

static void threads_keep_counters_consistent(void **state)
{
    (void)state;
    struct tp_conf_circuit conf = defaults();
    conf.min_requests = 10;
    conf.window_ms = 100;
    conf.open_ms = STRESS_OPEN_MS;
    conf.max_requests = MAX_REQUESTS;
    conf.max_pending = MAX_PENDING;
    struct stress s = {.c = tp_circuit_new(&conf)};
    pthread_t t[THREADS];

    assert_non_null(s.c);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, stress_thread, &s), 0);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);

    assert_int_equal(atomic_load(&s.allowed) + atomic_load(&s.open) + atomic_load(&s.busy),
                     THREADS * ITERATIONS);
    assert_int_equal(tp_circuit_in_flight(s.c), 0);
    assert_int_equal(tp_circuit_pending(s.c), 0);
    assert_true(atomic_load(&s.max_in_flight) <= MAX_REQUESTS);
    assert_true(atomic_load(&s.max_connects) <= MAX_PENDING);
    assert_true(atomic_load(&s.allowed) > 0);
    assert_true(atomic_load(&s.open) > 0);
    assert_int_equal(atomic_load(&s.states_seen), 1 | 2 | 4); /* it opened and closed again */
    assert_int_equal(atomic_load(&s.bad), 0);
    /* quiet now: after the open time a full set of successful trials closes it */
    uint64_t later = atomic_load(&s.clock) / 16 + 1000;
    for (int i = 0; i < 3 && strcmp(tp_circuit_state_name(s.c, later), "closed") != 0; i++)
        request(s.c, later, false);
    assert_string_equal(tp_circuit_state_name(s.c, later), "closed");
    assert_int_equal(tp_circuit_in_flight(s.c), 0);
    tp_circuit_free(s.c);
}

/* ------------------------------------------------------------------------------------------ */
/* Configuration                                                                              */

struct result {
    int rc;
    char *errors;
    struct tp_config *cfg;
};

static struct result load(const char *text)
{
    struct result r = {0};
    size_t len = 0;
    FILE *f = open_memstream(&r.errors, &len);

    assert_non_null(f);
    r.rc = tp_config_load_string("t.yaml", text, strlen(text), f, &r.cfg);
    fclose(f);
    return r;
}

static void config_defaults_and_values(void **state)
{
    (void)state;
    struct result r = load("services:\n"
                           "  - name: s\n"
                           "    url: http://u\n"
                           "    circuit_breaker:\n"
                           "      failure_ratio: 25\n"
                           "      max_requests: 100\n"
                           "  - name: plain\n"
                           "    url: http://u\n"
                           "upstreams:\n"
                           "  - name: u\n"
                           "    targets: [{target: 'a:1'}]\n"
                           "    circuit_breaker:\n"
                           "      failure_count: 7\n"
                           "      min_requests: 0\n"
                           "      window: 2000\n"
                           "      open_time: 1500\n"
                           "      half_open_requests: 1\n"
                           "      max_pending: 9\n"
                           "  - name: v\n"
                           "    circuit_breaker: {}\n");

    assert_string_equal(r.errors, "");
    assert_int_equal(r.rc, 0);
    const struct tp_conf_circuit *sc = r.cfg->services[0].circuit_breaker;
    assert_non_null(sc);
    assert_int_equal(sc->failure_ratio, 25);
    assert_int_equal(sc->failure_count, 0);
    assert_int_equal(sc->min_requests, 20);
    assert_int_equal(sc->window_ms, 10000);
    assert_int_equal(sc->open_ms, 5000);
    assert_int_equal(sc->half_open_requests, 3);
    assert_int_equal(sc->max_requests, 100);
    assert_int_equal(sc->max_pending, 0);
    assert_null(r.cfg->services[1].circuit_breaker);

    const struct tp_conf_circuit *uc = r.cfg->upstreams[0].circuit_breaker;
    assert_non_null(uc);
    assert_int_equal(uc->failure_ratio, 50);
    assert_int_equal(uc->failure_count, 7);
    assert_int_equal(uc->min_requests, 0);
    assert_int_equal(uc->window_ms, 2000);
    assert_int_equal(uc->open_ms, 1500);
    assert_int_equal(uc->half_open_requests, 1);
    assert_int_equal(uc->max_requests, 0);
    assert_int_equal(uc->max_pending, 9);

    const struct tp_conf_circuit *vc = r.cfg->upstreams[1].circuit_breaker;
    assert_non_null(vc);
    struct tp_conf_circuit d = defaults();
    assert_memory_equal(vc, &d, sizeof(d));
    tp_config_free(r.cfg);
    free(r.errors);
}

static void expect_errors(const char *text, const char *expected)
{
    struct result r = load(text);
    int lines = 0;

    for (const char *p = expected; *p; p++)
        lines += *p == '\n';
    assert_string_equal(r.errors, expected);
    assert_int_equal(r.rc, -lines);
    assert_null(r.cfg);
    free(r.errors);
}

static void config_errors(void **state)
{
    (void)state;
    expect_errors("upstreams:\n"
                  "  - name: u\n"
                  "    circuit_breaker:\n"
                  "      failure_ratio: 101\n"
                  "      failure_count: -1\n"
                  "      min_requests: 100001\n"
                  "      window: 99\n"
                  "      open_time: 0\n"
                  "      half_open_requests: 0\n"
                  "      max_requests: 1000001\n"
                  "      max_pending: x\n"
                  "      bogus: 1\n"
                  "      window: 1000\n",
                  "t.yaml:4:22: \"failure_ratio\" must be between 0 and 100\n"
                  "t.yaml:5:22: \"failure_count\" must be between 0 and 100000\n"
                  "t.yaml:6:21: \"min_requests\" must be between 0 and 100000\n"
                  "t.yaml:7:15: \"window\" must be between 100 and 86400000\n"
                  "t.yaml:8:18: \"open_time\" must be between 1 and 86400000\n"
                  "t.yaml:9:27: \"half_open_requests\" must be between 1 and 1000\n"
                  "t.yaml:10:21: \"max_requests\" must be between 0 and 1000000\n"
                  "t.yaml:11:20: expected an integer for \"max_pending\"\n"
                  "t.yaml:12:7: unknown key \"bogus\" in upstream circuit_breaker\n"
                  "t.yaml:13:7: duplicate key \"window\" (first defined at 7:7)\n");
    expect_errors("services:\n"
                  "  - name: s\n"
                  "    url: http://u\n"
                  "    circuit_breaker: {max_pending: 1}\n"
                  "  - name: t\n"
                  "    url: http://u\n"
                  "    circuit_breaker: 5\n"
                  "upstreams:\n"
                  "  - name: u\n"
                  "    circuit_breaker: [1]\n",
                  "t.yaml:4:23: unknown key \"max_pending\" in service circuit_breaker\n"
                  "t.yaml:7:22: expected a mapping for service circuit_breaker\n"
                  "t.yaml:10:22: expected a mapping for upstream circuit_breaker\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(opens_on_ratio_after_min_requests),
        cmocka_unit_test(ratio_threshold_is_inclusive),
        cmocka_unit_test(opens_on_count),
        cmocka_unit_test(either_condition_opens),
        cmocka_unit_test(stays_closed_under_threshold),
        cmocka_unit_test(breaker_without_conditions_never_opens),
        cmocka_unit_test(open_answers_with_retry_after),
        cmocka_unit_test(half_open_admits_exactly_the_trials),
        cmocka_unit_test(closing_empties_the_window),
        cmocka_unit_test(failed_trial_reopens_for_full_open_time),
        cmocka_unit_test(outcomes_while_open_are_ignored),
        cmocka_unit_test(window_slides),
        cmocka_unit_test(clock_going_back_is_harmless),
        cmocka_unit_test(max_requests_bounds_in_flight),
        cmocka_unit_test(max_pending_bounds_connects),
        cmocka_unit_test(threads_keep_counters_consistent),
        cmocka_unit_test(config_defaults_and_values),
        cmocka_unit_test(config_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
