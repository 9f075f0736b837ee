/*
 * Unit tests for the rate-limiting algorithms (src/ratelimit/algo.c) and the local store
 * (src/ratelimit/store.c), driven by a scripted clock: each algorithm's exact admissions,
 * B34 (off by one at the limit), B35's header values, B36 (the window-edge burst, once per
 * algorithm), and the store's atomic multi-limit decisions, memory bound and threads.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit/algo.h"
#include "ratelimit/store.h"

#define SEC(x) ((int64_t)((x) * 1e6 + ((x) >= 0 ? 0.5 : -0.5)))

static struct tp_rl_limit make(enum tp_rl_algo algo, uint64_t count, double period_s)
{
    struct tp_rl_limit l = {.algo = algo, .count = count, .period_us = SEC(period_s)};
    assert_int_equal(tp_rl_limit_init(&l), 0);
    return l;
}

/* Send n requests at time t; returns how many were admitted. */
static int batch(const struct tp_rl_limit *l, struct tp_rl_state *s, double t, int n)
{
    int ok = 0;
    struct tp_rl_decision d;
    for (int i = 0; i < n; i++)
        ok += tp_rl_take(l, s, SEC(t), &d);
    return ok;
}

static bool one(const struct tp_rl_limit *l, struct tp_rl_state *s, double t,
                struct tp_rl_decision *d)
{
    return tp_rl_take(l, s, SEC(t), d);
}

/* ---- B36: 10 per 60 s; 10 requests at 59.9 s, 10 at 60.1 s, then 1 at 90 s ------------------- */

static void b36_fixed_window(void **st)
{
    (void)st;
    struct tp_rl_limit l = make(TP_RL_FIXED_WINDOW, 10, 60);
    struct tp_rl_state s;
    assert_int_equal(tp_rl_state_init(&l, &s), 0);
    assert_int_equal(batch(&l, &s, 59.9, 10), 10);
    assert_int_equal(batch(&l, &s, 60.1, 10), 10); /* the documented 2x burst at the edge */
    struct tp_rl_decision d;
    assert_false(one(&l, &s, 90, &d));             /* the second window is used up */
    assert_int_equal(d.remaining, 0);
    assert_int_equal(d.retry_us, SEC(30));
    assert_int_equal(d.reset_us, SEC(30));
    tp_rl_state_free(&s);
}

static void b36_sliding_log(void **st)
{
    (void)st;
    struct tp_rl_limit l = make(TP_RL_SLIDING_LOG, 10, 60);
    struct tp_rl_state s;
    struct tp_rl_decision d;
    assert_int_equal(tp_rl_state_init(&l, &s), 0);
    assert_int_equal(batch(&l, &s, 59.9, 10), 10);
    assert_int_equal(batch(&l, &s, 60.1, 10), 0);
    assert_false(one(&l, &s, 90, &d));             /* batch 1 is still inside the trailing 60 s */
    assert_int_equal(d.retry_us, SEC(29.9));       /* batch 1 leaves at 119.9 s */
    assert_false(one(&l, &s, 119.899999, &d));
    assert_true(one(&l, &s, 119.9, &d));
    assert_true(one(&l, &s, 120.0, &d));
    assert_int_equal(d.remaining, 8);              /* all of batch 1 left at 119.9 s */
    tp_rl_state_free(&s);
}

static void b36_sliding_window(void **st)
{
    (void)st;
    struct tp_rl_limit l = make(TP_RL_SLIDING_WINDOW, 10, 60);
    struct tp_rl_state s;
    struct tp_rl_decision d;
    assert_int_equal(tp_rl_state_init(&l, &s), 0);
    assert_int_equal(batch(&l, &s, 59.9, 10), 10);
    /* estimate floor(10 * 59.9/60) = 9 (rounded down) + 0: one more fits */
    assert_int_equal(batch(&l, &s, 60.1, 10), 1);
    assert_true(one(&l, &s, 90, &d));              /* floor(10 * 0.5) = 5, plus 1 */
    assert_int_equal(d.remaining, 10 - (5 + 2));
    tp_rl_state_free(&s);
}

static void b36_token_bucket(void **st)
{
    (void)st;
    /* capacity 10, one token per 6 s, full before batch 1 */
    struct tp_rl_limit l = make(TP_RL_TOKEN_BUCKET, 10, 60);
    struct tp_rl_state s;
    struct tp_rl_decision d;
    assert_int_equal(tp_rl_state_init(&l, &s), 0);
    assert_int_equal(batch(&l, &s, 59.9, 10), 10);
    assert_int_equal(batch(&l, &s, 60.1, 10), 0);  /* 0.2 s refilled 0.03 token */
    assert_true(one(&l, &s, 90, &d));              /* about 5 tokens refilled */
    assert_int_equal(d.remaining, 4);              /* 30.1 s refilled 5.02 tokens, minus this one */
    tp_rl_state_free(&s);
}

static void b36_leaky_bucket(void **st)
{
    (void)st;
    /* policing (max_delay 0): one request every 6 s, no queue */
    struct tp_rl_limit l = make(TP_RL_LEAKY_BUCKET, 10, 60);
    struct tp_rl_state s;
    struct tp_rl_decision d;
    assert_int_equal(tp_rl_state_init(&l, &s), 0);
    assert_int_equal(batch(&l, &s, 59.9, 10), 1);
    assert_int_equal(batch(&l, &s, 60.1, 10), 0);
    assert_true(one(&l, &s, 90, &d));
    assert_int_equal(d.delay_us, 0);
    tp_rl_state_free(&s);

    /* shaping (max_delay 60 s): batch 1 is queued 6 s apart, batch 2 finds one slot left */
    l.max_delay_us = SEC(60);
    assert_int_equal(tp_rl_state_init(&l, &s), 0);
    for (int i = 0; i < 10; i++) {
        assert_true(one(&l, &s, 59.9, &d));
        assert_int_equal(d.delay_us, SEC(6) * i);
    }
    assert_int_equal(batch(&l, &s, 60.1, 10), 1);  /* leaves at 119.9: held 59.8 s */
    assert_true(one(&l, &s, 90, &d));              /* leaves at 125.9 */
    assert_int_equal(d.delay_us, SEC(35.9));
    tp_rl_state_free(&s);
}

/* ---- B34: 5 per 5 s, 6 requests within 1 s, one more 5.1 s after the first ------------------- */

static void b34_run(enum tp_rl_algo algo, int64_t max_delay)
{
    struct tp_rl_limit l = {.algo = algo, .count = 5, .period_us = SEC(5),
                            .max_delay_us = max_delay};
    struct tp_rl_state s;
    struct tp_rl_decision d;
    assert_int_equal(tp_rl_limit_init(&l), 0);
    assert_int_equal(tp_rl_state_init(&l, &s), 0);
    for (int i = 0; i < 5; i++) {
        assert_true(one(&l, &s, 0.2 * i, &d));
        assert_int_equal(d.limit, 5);
        assert_int_equal(d.remaining, 4 - i);
    }
    assert_false(one(&l, &s, 0.9, &d));
    assert_int_equal(d.remaining, 0);
    assert_true(d.retry_us > 0);
    assert_true(one(&l, &s, 5.1, &d));
    tp_rl_state_free(&s);
}

static void b34_every_algorithm(void **st)
{
    (void)st;
    b34_run(TP_RL_FIXED_WINDOW, 0);
    b34_run(TP_RL_SLIDING_WINDOW, 0);
    b34_run(TP_RL_SLIDING_LOG, 0);
    b34_run(TP_RL_TOKEN_BUCKET, 0);
}

static void b34_fixed_retry(void **st)
{
    (void)st;
    struct tp_rl_limit l = make(TP_RL_FIXED_WINDOW, 5, 5);
    struct tp_rl_state s;
    struct tp_rl_decision d;
    assert_int_equal(tp_rl_state_init(&l, &s), 0);
    assert_int_equal(batch(&l, &s, 0, 5), 5);
    assert_false(one(&l, &s, 0.9, &d));
    assert_int_equal(d.retry_us, SEC(4.1));
    assert_int_equal(tp_rl_ceil_s(d.retry_us), 5);
    tp_rl_state_free(&s);
}

static void b34_leaky_shaping(void **st)
{
    (void)st;
    /* 1 per second with a queue of up to 4 s: five are spaced 1 s apart, the sixth waits too
     * long; the remaining count is the queue room */
    struct tp_rl_limit l = {.algo = TP_RL_LEAKY_BUCKET, .count = 5, .period_us = SEC(5),
                            .max_delay_us = SEC(4)};
    struct tp_rl_state s;
    struct tp_rl_decision d;
    assert_int_equal(tp_rl_limit_init(&l), 0);
    assert_int_equal(tp_rl_state_init(&l, &s), 0);
    for (int i = 0; i < 5; i++) {
        assert_true(one(&l, &s, 0.2 * i, &d));
        assert_int_equal(d.delay_us, SEC(i - 0.2 * i));
        assert_int_equal(d.remaining, 4 - i);
    }
    assert_false(one(&l, &s, 0.9, &d));
    assert_int_equal(d.retry_us, SEC(0.1));
    assert_true(one(&l, &s, 5.1, &d));
    assert_int_equal(d.delay_us, 0);
    tp_rl_state_free(&s);
}

/* ---- B35: headers of refused requests -------------------------------------------------------- */

static void b35_fixed_reset(void **st)
{
    (void)st;
    /* 2 per 60 s, requests at 0, 1, 2, 3 s */
    struct tp_rl_limit l = make(TP_RL_FIXED_WINDOW, 2, 60);
    struct tp_rl_state s;
    struct tp_rl_decision d;
    assert_int_equal(tp_rl_state_init(&l, &s), 0);
    assert_true(one(&l, &s, 0, &d));
    assert_int_equal(d.remaining, 1);
    assert_true(one(&l, &s, 1, &d));
    assert_int_equal(d.remaining, 0);
    assert_false(one(&l, &s, 2, &d));
    assert_int_equal(d.remaining, 0);
    assert_int_equal(tp_rl_ceil_s(d.reset_us), 58);
    assert_int_equal(tp_rl_ceil_s(d.retry_us), 58);
    assert_false(one(&l, &s, 3, &d));
    assert_int_equal(tp_rl_ceil_s(d.retry_us), 57);
    /* never 0 while refused: 1 µs before the window ends */
    assert_false(one(&l, &s, 59.999999, &d));
    assert_int_equal(tp_rl_ceil_s(d.retry_us), 1);
    tp_rl_state_free(&s);
}

/* Refused requests report when the next one passes, for every algorithm: at that time the
 * next one does pass, and a little before it does not. */
static void retry_is_exact(enum tp_rl_algo algo, uint64_t count, double period)
{
    struct tp_rl_limit l = make(algo, count, period);
    struct tp_rl_state s;
    struct tp_rl_decision d, e;
    assert_int_equal(tp_rl_state_init(&l, &s), 0);
    int64_t now = SEC(12.345);
    for (int i = 0; i < 1000; i++) {
        if (tp_rl_take(&l, &s, now, &d))
            continue;
        assert_true(d.retry_us > 0);
        assert_true(d.reset_us >= d.retry_us);
        tp_rl_check(&l, &s, now + d.retry_us - 1, &e);
        assert_false(e.allowed);
        tp_rl_check(&l, &s, now + d.retry_us, &e);
        assert_true(e.allowed);
        now += d.retry_us / 3 + 1;
    }
    tp_rl_state_free(&s);
}

static void retry_after_every_algorithm(void **st)
{
    (void)st;
    retry_is_exact(TP_RL_FIXED_WINDOW, 7, 10);
    retry_is_exact(TP_RL_SLIDING_WINDOW, 7, 10);
    retry_is_exact(TP_RL_SLIDING_LOG, 7, 10);
    retry_is_exact(TP_RL_TOKEN_BUCKET, 7, 10);
    retry_is_exact(TP_RL_LEAKY_BUCKET, 7, 10);
}

/* ---- other properties ------------------------------------------------------------------------ */

static void fixed_windows_are_epoch_aligned(void **st)
{
    (void)st;
    struct tp_rl_limit l = make(TP_RL_FIXED_WINDOW, 1, 60);
    struct tp_rl_state s;
    struct tp_rl_decision d;
    assert_int_equal(tp_rl_state_init(&l, &s), 0);
    assert_true(one(&l, &s, 1700000039.5, &d));    /* window [1699999980, 1700000040) */
    assert_int_equal(d.reset_us, SEC(0.5));
    assert_false(one(&l, &s, 1700000039.9, &d));
    assert_true(one(&l, &s, 1700000040, &d));
    assert_int_equal(tp_rl_expiry(&l, &s, 0), SEC(1700000100));
    tp_rl_state_free(&s);
}

static void sliding_window_steady_rate(void **st)
{
    (void)st;
    /* at exactly the limit's rate (1 per second against 60 per minute) everything passes */
    struct tp_rl_limit l = make(TP_RL_SLIDING_WINDOW, 60, 60);
    struct tp_rl_state s;
    assert_int_equal(tp_rl_state_init(&l, &s), 0);
    int ok = 0;
    for (int i = 0; i < 300; i++)
        ok += batch(&l, &s, i + 0.25, 1);
    assert_int_equal(ok, 300);
    tp_rl_state_free(&s);
    /* at twice the rate, any trailing minute holds at most 60 (+1 for the rounding) */
    assert_int_equal(tp_rl_state_init(&l, &s), 0);
    double t[600];
    int n = 0;
    for (int i = 0; i < 600; i++)
        if (batch(&l, &s, 0.5 * i + 0.25, 1))
            t[n++] = 0.5 * i + 0.25;
    for (int i = 0; i < n; i++) {
        int in = 0;
        for (int j = i; j < n && t[j] < t[i] + 60; j++)
            in++;
        assert_true(in <= 61);
    }
    assert_true(n >= 250);
    tp_rl_state_free(&s);
}

static void token_bucket_burst(void **st)
{
    (void)st;
    /* rate 1/s, burst 3 */
    struct tp_rl_limit l = {.algo = TP_RL_TOKEN_BUCKET, .count = 1, .period_us = SEC(1),
                            .burst = 3};
    struct tp_rl_state s;
    struct tp_rl_decision d;
    assert_int_equal(tp_rl_limit_init(&l), 0);
    assert_int_equal(tp_rl_state_init(&l, &s), 0);
    assert_int_equal(batch(&l, &s, 100, 5), 3);
    assert_false(one(&l, &s, 100.999, &d));
    assert_int_equal(d.limit, 3);
    assert_int_equal(d.retry_us, SEC(0.001));
    assert_true(one(&l, &s, 101, &d));
    assert_int_equal(d.remaining, 0);
    assert_int_equal(d.reset_us, SEC(3));          /* full again at 104 */
    assert_int_equal(batch(&l, &s, 104, 5), 3);
    tp_rl_state_free(&s);
}

static void concurrency_limit(void **st)
{
    (void)st;
    struct tp_rl_limit l = {.algo = TP_RL_CONCURRENCY, .count = 2};
    struct tp_rl_state s;
    struct tp_rl_decision d;
    assert_int_equal(tp_rl_limit_init(&l), 0);
    assert_int_equal(tp_rl_state_init(&l, &s), 0);
    assert_true(one(&l, &s, 1, &d));
    assert_int_equal(d.remaining, 1);
    assert_true(one(&l, &s, 1, &d));
    assert_int_equal(d.remaining, 0);
    assert_false(one(&l, &s, 1, &d));
    assert_int_equal(d.retry_us, SEC(1));
    assert_int_equal(tp_rl_expiry(&l, &s, 5), INT64_MAX);
    tp_rl_release(&l, &s);
    assert_true(one(&l, &s, 1, &d));
    tp_rl_release(&l, &s);
    tp_rl_release(&l, &s);
    tp_rl_release(&l, &s); /* saturates */
    assert_int_equal(s.cur, 0);
    assert_int_equal(tp_rl_expiry(&l, &s, 5), 5);
    tp_rl_state_free(&s);
}

static void pick_most_restrictive(void **st)
{
    (void)st;
    struct tp_rl_decision d[3] = {
        {.allowed = true, .remaining = 5, .reset_us = 10},
        {.allowed = true, .remaining = 2, .reset_us = 100},
        {.allowed = true, .remaining = 2, .reset_us = 1000},
    };
    assert_int_equal(tp_rl_pick(d, 3), 2);
    d[0].allowed = false;
    d[0].retry_us = 5;
    assert_int_equal(tp_rl_pick(d, 3), 0);
    d[1].allowed = false;
    d[1].retry_us = 50;
    assert_int_equal(tp_rl_pick(d, 3), 1);
}

static void bad_limits(void **st)
{
    (void)st;
    struct tp_rl_limit l = {.algo = TP_RL_FIXED_WINDOW, .count = 0, .period_us = 1};
    assert_int_equal(tp_rl_limit_init(&l), TP_EINVAL);
    l = (struct tp_rl_limit){.algo = TP_RL_FIXED_WINDOW, .count = 1, .period_us = 0};
    assert_int_equal(tp_rl_limit_init(&l), TP_EINVAL);
    l = (struct tp_rl_limit){.algo = TP_RL_SLIDING_LOG, .count = TP_RL_MAX_LOG + 1,
                             .period_us = 1};
    assert_int_equal(tp_rl_limit_init(&l), TP_EINVAL);
    l = (struct tp_rl_limit){.algo = TP_RL_TOKEN_BUCKET, .count = 1000, .period_us = 10};
    assert_int_equal(tp_rl_limit_init(&l), 0);
    assert_int_equal(l.interval_us, 1);
}

static void clock_moves_forward(void **st)
{
    (void)st;
    int64_t a = tp_rl_now_us(), b = tp_rl_now_us();
    assert_true(a > 1600000000LL * TP_RL_US); /* aligned to the epoch */
    assert_true(b >= a);
}

/* ---- store ----------------------------------------------------------------------------------- */

static struct tp_rl_item item(const struct tp_rl_limit *l, const char *key)
{
    return (struct tp_rl_item){.limit = l, .key = tp_slice_cstr(key)};
}

static void store_limits_are_atomic(void **st)
{
    (void)st;
    struct tp_rl_store *s = tp_rl_store_new(1000);
    struct tp_rl_limit sec = make(TP_RL_FIXED_WINDOW, 3, 1);
    struct tp_rl_limit hour = make(TP_RL_FIXED_WINDOW, 5, 3600);
    struct tp_rl_item it[2] = {item(&sec, "s|alice"), item(&hour, "h|alice")};
    int ok = 0;
    for (int i = 0; i < 10; i++) {
        it[0].key = tp_slice_cstr("s|alice");
        ok += tp_rl_store_take(s, it, 2, SEC(10.5));
    }
    assert_int_equal(ok, 3);                         /* the per-second limit decides */
    assert_int_equal(it[1].d.remaining, 2);          /* the hour saw only the 3 admitted */
    assert_false(it[0].d.allowed);
    assert_int_equal(tp_rl_pick((struct tp_rl_decision[]){it[0].d, it[1].d}, 2), 0);
    ok = 0;
    for (int i = 0; i < 10; i++)
        ok += tp_rl_store_take(s, it, 2, SEC(11.5));
    assert_int_equal(ok, 2);                         /* now the hour decides */
    assert_int_equal(tp_rl_pick((struct tp_rl_decision[]){it[0].d, it[1].d}, 2), 1);
    /* another key is another counter */
    struct tp_rl_item bob = item(&sec, "s|bob");
    assert_true(tp_rl_store_take(s, &bob, 1, SEC(11.5)));
    assert_int_equal(tp_rl_store_count(s), 3);
    tp_rl_store_free(s);
}

static void store_memory_is_bounded(void **st)
{
    (void)st;
    struct tp_rl_store *s = tp_rl_store_new(100);
    struct tp_rl_limit l = make(TP_RL_FIXED_WINDOW, 1, 10);
    char key[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        struct tp_rl_item it = item(&l, key);
        assert_true(tp_rl_store_take(s, &it, 1, SEC(5)));
    }
    assert_true(tp_rl_store_count(s) <= 128);        /* max_keys, rounded up per shard */
    /* idle keys expire: once their window is over they are freed as requests come */
    for (int i = 0; i < 400; i++) {
        snprintf(key, sizeof(key), "n%d", i % 4);
        struct tp_rl_item it = item(&l, key);
        tp_rl_store_take(s, &it, 1, SEC(25));
    }
    assert_true(tp_rl_store_count(s) < 100);
    tp_rl_store_free(s);
}

static void store_release_concurrency(void **st)
{
    (void)st;
    struct tp_rl_store *s = tp_rl_store_new(100);
    struct tp_rl_limit l = {.algo = TP_RL_CONCURRENCY, .count = 1};
    assert_int_equal(tp_rl_limit_init(&l), 0);
    struct tp_rl_item it = item(&l, "c|x");
    assert_true(tp_rl_store_take(s, &it, 1, 1));
    assert_false(tp_rl_store_take(s, &it, 1, 2));
    tp_rl_store_release_one(s, &l, tp_slice_cstr("c|x"));
    assert_true(tp_rl_store_take(s, &it, 1, 3));
    tp_rl_store_free(s);
}

static void store_long_keys(void **st)
{
    (void)st;
    char big[600], big2[600], buf[TP_RL_DIGEST_BUF], buf2[TP_RL_DIGEST_BUF];
    memset(big, 'a', sizeof(big));
    memcpy(big2, big, sizeof(big2));
    big2[599] = 'b';
    struct tp_slice a = tp_rl_key_fit((struct tp_slice){big, sizeof(big)}, buf);
    struct tp_slice b = tp_rl_key_fit((struct tp_slice){big2, sizeof(big2)}, buf2);
    assert_int_equal(a.len, 71);
    assert_true(a.len == b.len && memcmp(a.ptr, b.ptr, a.len) != 0);
    struct tp_slice c = tp_rl_key_fit(tp_slice_cstr("short"), buf);
    assert_int_equal(c.len, 5);
}

struct thread_arg {
    struct tp_rl_store *s;
    const struct tp_rl_limit *l;
    int admitted;
};

static void *hammer(void *p)
{
    struct thread_arg *a = p;
    for (int i = 0; i < 2000; i++) {
        struct tp_rl_item it = item(a->l, i % 2 ? "shared" : "other");
        struct tp_rl_item both[2] = {item(a->l, "shared"), item(a->l, "other")};
        if (i % 3 == 0)
            a->admitted += tp_rl_store_take(a->s, both, 2, SEC(1)) ? 2 : 0;
        else
            a->admitted += tp_rl_store_take(a->s, &it, 1, SEC(1));
    }
    return NULL;
}

static void store_exact_across_threads(void **st)
{
    (void)st;
    struct tp_rl_store *s = tp_rl_store_acquire("test:threads", 1000);
    struct tp_rl_limit l = make(TP_RL_FIXED_WINDOW, 1500, 3600);
    struct thread_arg args[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct thread_arg){.s = s, .l = &l};
        pthread_create(&th[i], NULL, hammer, &args[i]);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        total += args[i].admitted;
    }
    assert_int_equal(total, 3000);                   /* exactly 1500 per key, 2 keys */
    assert_ptr_equal(tp_rl_store_acquire("test:threads", 5), s);
    tp_rl_store_release(s);
    tp_rl_store_release(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(b36_fixed_window),
        cmocka_unit_test(b36_sliding_log),
        cmocka_unit_test(b36_sliding_window),
        cmocka_unit_test(b36_token_bucket),
        cmocka_unit_test(b36_leaky_bucket),
        cmocka_unit_test(b34_every_algorithm),
        cmocka_unit_test(b34_fixed_retry),
        cmocka_unit_test(b34_leaky_shaping),
        cmocka_unit_test(b35_fixed_reset),
        cmocka_unit_test(retry_after_every_algorithm),
        cmocka_unit_test(fixed_windows_are_epoch_aligned),
        cmocka_unit_test(sliding_window_steady_rate),
        cmocka_unit_test(token_bucket_burst),
        cmocka_unit_test(concurrency_limit),
        cmocka_unit_test(pick_most_restrictive),
        cmocka_unit_test(bad_limits),
        cmocka_unit_test(clock_moves_forward),
        cmocka_unit_test(store_limits_are_atomic),
        cmocka_unit_test(store_memory_is_bounded),
        cmocka_unit_test(store_release_concurrency),
        cmocka_unit_test(store_long_keys),
        cmocka_unit_test(store_exact_across_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
