/*
 * Balancer unit tests: smooth weighted round-robin sequences (CASES.md B38), round-robin,
 * least-connections, consistent hashing (ring stability, weights, the request key),
 * random-two-choices, exclusion of tried, disabled (weight 0) and unhealthy targets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "http/proxy.h"
#include "upstream/hash_key.h"

#include <stdio.h>
#include <stdlib.h>

struct fixture {
    struct tp_upstream u;
    struct tp_target t[10];
    int64_t swrr[10 * 4];
    uint64_t rng[4 * TP_P2C_RNG_STRIDE];
    char names[10][32];
};

static void setup_upstream(struct fixture *f, enum tp_balancer_algorithm alg,
                           const uint32_t *weights, size_t n)
{
    memset(f, 0, sizeof(*f));
    f->u.algorithm = alg;
    f->u.targets = f->t;
    f->u.num_targets = n;
    f->u.swrr_current = f->swrr;
    f->u.p2c_rng = f->rng;
    for (int w = 0; w < 4; w++)
        f->rng[w * TP_P2C_RNG_STRIDE] = 0x1234567ull * (uint64_t)(w + 1);
    for (size_t i = 0; i < n; i++) {
        f->t[i].weight = weights[i];
        snprintf(f->names[i], sizeof(f->names[i]), "10.0.0.%zu:8080", i + 1);
        f->t[i].name = f->names[i];
    }
    if (alg == TP_LB_CONSISTENT_HASHING)
        assert_int_equal(tp_upstream_ring_build(&f->u), 0);
}

static char pick_name(struct fixture *f, int worker, uint64_t exclude)
{
    struct tp_target *t = tp_upstream_pick(&f->u, worker, exclude, 0, false);
    return t ? (char)('A' + (t - f->t)) : '-';
}

/* Index of the target chosen for key k, or -1. */
static int pick_hashed(struct fixture *f, uint64_t exclude, uint64_t k)
{
    struct tp_target *t = tp_upstream_pick(&f->u, 0, exclude, k, true);
    return t ? (int)(t - f->t) : -1;
}

static uint64_t key_n(int i)
{
    char buf[32];
    int len = snprintf(buf, sizeof(buf), "user-%d", i);
    return tp_hash64(buf, (size_t)len, 0);
}

static void swrr_interleaves_like_nginx(void **state)
{
    struct fixture f;
    const uint32_t w[] = {5, 1, 1, 1, 1};
    setup_upstream(&f, TP_LB_WEIGHTED_ROUND_ROBIN, w, 5);
    char seq[10] = {0};
    for (int i = 0; i < 9; i++)
        seq[i] = pick_name(&f, 0, 0);
    assert_string_equal(seq, "ABACADAEA");
    int counts[5] = {0};
    for (int i = 0; i < 900; i++)
        counts[pick_name(&f, 0, 0) - 'A']++;
    assert_int_equal(counts[0], 500);
    for (int i = 1; i < 5; i++)
        assert_int_equal(counts[i], 100);
}

static void swrr_light_target_in_every_window(void **state)
{
    struct fixture f;
    const uint32_t w[] = {100, 100, 25};
    setup_upstream(&f, TP_LB_WEIGHTED_ROUND_ROBIN, w, 3);
    char seq[900];
    for (int i = 0; i < 900; i++)
        seq[i] = pick_name(&f, 0, 0);
    for (int i = 0; i + 9 <= 900; i++) {
        int c = 0;
        for (int k = 0; k < 9; k++)
            c += seq[i + k] == 'C';
        assert_true(c >= 1);
    }
}

static void swrr_state_is_per_worker(void **state)
{
    struct fixture f;
    const uint32_t w[] = {2, 1};
    setup_upstream(&f, TP_LB_WEIGHTED_ROUND_ROBIN, w, 2);
    /* two workers each see the full, exact sequence */
    assert_int_equal(pick_name(&f, 0, 0), 'A');
    assert_int_equal(pick_name(&f, 1, 0), 'A');
    assert_int_equal(pick_name(&f, 0, 0), 'B');
    assert_int_equal(pick_name(&f, 1, 0), 'B');
}

static void round_robin_is_even_and_skips(void **state)
{
    struct fixture f;
    const uint32_t w[] = {1, 1, 0, 1};
    setup_upstream(&f, TP_LB_ROUND_ROBIN, w, 4);
    int counts[4] = {0};
    for (int i = 0; i < 300; i++)
        counts[pick_name(&f, i % 3, 0) - 'A']++;
    assert_int_equal(counts[2], 0); /* weight 0 = disabled */
    assert_true(counts[0] >= 99 && counts[0] <= 101);
    assert_true(counts[1] >= 99 && counts[1] <= 101);
    assert_int_equal(counts[0] + counts[1] + counts[3], 300);
}

static void exclusion_and_exhaustion(void **state)
{
    struct fixture f;
    const uint32_t w[] = {1, 1, 1};
    for (int alg = 0; alg <= TP_LB_RANDOM_TWO_CHOICES; alg++) {
        setup_upstream(&f, (enum tp_balancer_algorithm)alg, w, 3);
        for (int i = 0; i < 10; i++) {
            assert_int_equal(pick_name(&f, 0, 0x3), 'C');
            assert_int_equal(pick_hashed(&f, 0x3, key_n(i)), 2);
        }
        assert_int_equal(pick_name(&f, 0, 0x7), '-');
        assert_int_equal(pick_hashed(&f, 0x7, key_n(1)), -1);
        tp_upstream_ring_free(&f.u);
    }
}

/* A target whose health is down gets nothing, whatever the algorithm; back up, it returns. */
static void unhealthy_targets_are_skipped(void **state)
{
    struct fixture f;
    struct tp_health down, up;
    const uint32_t w[] = {1, 1, 1};
    memset(&down, 0, sizeof(down));
    memset(&up, 0, sizeof(up));
    atomic_store(&down.up, false);
    atomic_store(&up.up, true);
    for (int alg = 0; alg <= TP_LB_RANDOM_TWO_CHOICES; alg++) {
        static const struct tp_conf_healthchecks hc = {.healthy_threshold = 1};
        setup_upstream(&f, (enum tp_balancer_algorithm)alg, w, 3);
        f.t[1].health = &down;
        /* health is shared per address: an upstream without healthchecks ignores it */
        assert_int_not_equal(pick_name(&f, 0, 0x5), '-');
        f.u.healthchecks = &hc;
        f.t[0].health = &up; /* t[2]: NULL = not tracked = up */
        int counts[3] = {0};
        for (int i = 0; i < 300; i++) {
            counts[pick_name(&f, 0, 0) - 'A']++;
            counts[pick_hashed(&f, 0, key_n(i))]++;
        }
        assert_int_equal(counts[1], 0);
        assert_true(counts[0] > 0 && counts[2] > 0);
        f.t[0].health = &down;
        assert_int_equal(pick_name(&f, 0, 0x4), '-');
        f.t[1].health = &up;
        assert_int_equal(pick_name(&f, 0, 0x4), 'B');
        tp_upstream_ring_free(&f.u);
    }
}

static void least_connections_prefers_idle(void **state)
{
    struct fixture f;
    const uint32_t w[] = {1, 1, 2};
    setup_upstream(&f, TP_LB_LEAST_CONNECTIONS, w, 3);
    atomic_store(&f.t[0].active, 3);
    atomic_store(&f.t[1].active, 0);
    atomic_store(&f.t[2].active, 1);
    assert_int_equal(pick_name(&f, 0, 0), 'B');
    atomic_store(&f.t[1].active, 1);
    /* C has weight 2: 1/2 beats 1/1 */
    assert_int_equal(pick_name(&f, 0, 0), 'C');
}

/* ------------------------------------------------------------------------------------------ */
/* Consistent hashing                                                                         */

static void hash64_is_xxh64(void **state)
{
    static const char long_in[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!";
    /* reference values from the xxHash library */
    assert_true(tp_hash64("", 0, 0) == 0xef46db3751d8e999ull);
    assert_true(tp_hash64(NULL, 0, 0) == 0xef46db3751d8e999ull);
    assert_true(tp_hash64("abc", 3, 0) == 0x44bc2cf5ad770999ull);
    assert_true(tp_hash64("abc", 3, 1) == 0xbea9ca8199328908ull);
    assert_true(tp_hash64("10.0.0.1:80#7", 13, 0) == 0xd3190a30b6622131ull);
    assert_true(tp_hash64("hello world", 11, 12345) == 0xdadff1fd84701c05ull);
    assert_true(tp_hash64(long_in, sizeof(long_in) - 1, 0) == 0xaa4dcad69fac0eb3ull);
}

/* Name of the target key k lands on. */
static const char *hashed_name(struct fixture *f, uint64_t exclude, uint64_t k)
{
    int i = pick_hashed(f, exclude, k);
    assert_true(i >= 0);
    return f->t[i].name;
}

/* Removing one of 10 equal targets moves ~10% of the keys, all of them from that target. */
static void consistent_hash_removal_moves_one_tenth(void **state)
{
    static struct fixture all, rest;
    const uint32_t w[10] = {100, 100, 100, 100, 100, 100, 100, 100, 100, 100};
    const int removed = 3;
    setup_upstream(&all, TP_LB_CONSISTENT_HASHING, w, 10);
    setup_upstream(&rest, TP_LB_CONSISTENT_HASHING, w, 9);
    for (int i = 0, j = 0; i < 10; i++)
        if (i != removed)
            rest.t[j++].name = all.names[i];
    assert_int_equal(tp_upstream_ring_build(&rest.u), 0);
    assert_int_equal(all.u.ring_len, 10 * TP_RING_POINTS_PER_UNIT);
    int moved = 0, counts[10] = {0};
    for (int k = 0; k < 10000; k++) {
        const char *before = hashed_name(&all, 0, key_n(k));
        const char *after = hashed_name(&rest, 0, key_n(k));
        counts[pick_hashed(&all, 0, key_n(k))]++;
        if (strcmp(before, after) != 0) {
            moved++;
            /* a key moves only off the removed target, never between two survivors */
            assert_string_equal(before, all.names[removed]);
        }
        /* excluding the target at pick time (a retry, or health) moves the same keys */
        assert_string_equal(hashed_name(&all, 1ull << removed, key_n(k)), after);
    }
    assert_true(moved >= 500 && moved <= 1500);
    for (int i = 0; i < 10; i++) /* 160 points each: every share within 7%..13% */
        assert_true(counts[i] >= 700 && counts[i] <= 1300);
    tp_upstream_ring_free(&all.u);
    tp_upstream_ring_free(&rest.u);
}

/* Weight 0 (as after a reload) also moves only that target's keys. */
static void consistent_hash_weight_zero_moves_only_its_keys(void **state)
{
    static struct fixture before, after;
    const uint32_t w1[3] = {100, 100, 100}, w2[3] = {100, 0, 100};
    setup_upstream(&before, TP_LB_CONSISTENT_HASHING, w1, 3);
    setup_upstream(&after, TP_LB_CONSISTENT_HASHING, w2, 3);
    assert_int_equal(after.u.ring_len, 2 * TP_RING_POINTS_PER_UNIT);
    for (int k = 0; k < 5000; k++) {
        int b = pick_hashed(&before, 0, key_n(k)), a = pick_hashed(&after, 0, key_n(k));
        assert_int_not_equal(a, 1);
        if (b != 1)
            assert_int_equal(a, b);
    }
    tp_upstream_ring_free(&before.u);
    tp_upstream_ring_free(&after.u);
}

/* Weights 100:200:300 get about 1/6, 2/6, 3/6 of the keys; 1:1:1 and 100:100:100 agree. */
static void consistent_hash_weights_skew_share(void **state)
{
    static struct fixture f, g;
    const uint32_t w[3] = {100, 200, 300}, ones[3] = {1, 1, 1}, hundreds[3] = {100, 100, 100};
    setup_upstream(&f, TP_LB_CONSISTENT_HASHING, w, 3);
    assert_int_equal(f.u.ring_len, 6 * TP_RING_POINTS_PER_UNIT);
    int counts[3] = {0};
    for (int k = 0; k < 12000; k++)
        counts[pick_hashed(&f, 0, key_n(k))]++;
    assert_true(counts[0] >= 1500 && counts[0] <= 2500); /* 2000 expected */
    assert_true(counts[1] >= 3200 && counts[1] <= 4800); /* 4000 */
    assert_true(counts[2] >= 5000 && counts[2] <= 7000); /* 6000 */
    tp_upstream_ring_free(&f.u);

    setup_upstream(&f, TP_LB_CONSISTENT_HASHING, ones, 3);
    setup_upstream(&g, TP_LB_CONSISTENT_HASHING, hundreds, 3);
    assert_int_equal(f.u.ring_len, g.u.ring_len);
    for (int k = 0; k < 1000; k++)
        assert_int_equal(pick_hashed(&f, 0, key_n(k)), pick_hashed(&g, 0, key_n(k)));
    tp_upstream_ring_free(&f.u);
    tp_upstream_ring_free(&g.u);
}

/* The same key always lands on the same target; without a key the pick is round-robin. */
static void consistent_hash_is_sticky_and_keyless_round_robin(void **state)
{
    static struct fixture f;
    const uint32_t w[4] = {100, 100, 100, 100};
    setup_upstream(&f, TP_LB_CONSISTENT_HASHING, w, 4);
    for (int k = 0; k < 50; k++) {
        int first = pick_hashed(&f, 0, key_n(k));
        for (int r = 0; r < 20; r++)
            assert_int_equal(pick_hashed(&f, 0, key_n(k)), first);
    }
    char seq[9] = {0};
    for (int i = 0; i < 8; i++)
        seq[i] = pick_name(&f, 0, 0);
    assert_string_equal(seq, "ABCDABCD");
    /* keys past the last point wrap around to the first */
    assert_int_equal(pick_hashed(&f, 0, UINT64_MAX), (int)f.u.ring[0].target);
    assert_int_equal(pick_hashed(&f, 0, 0), (int)f.u.ring[0].target);
    tp_upstream_ring_free(&f.u);
    /* big weights are scaled down to the ring's cap */
    const uint32_t big[2] = {65535, 65533};
    setup_upstream(&f, TP_LB_CONSISTENT_HASHING, big, 2);
    assert_true(f.u.ring_len <= TP_RING_MAX_POINTS && f.u.ring_len > TP_RING_MAX_POINTS / 2);
    tp_upstream_ring_free(&f.u);
}

/* ------------------------------------------------------------------------------------------ */
/* Random two choices                                                                         */

static void two_choices_avoids_loaded_target(void **state)
{
    struct fixture f;
    const uint32_t w[4] = {1, 1, 1, 1};
    setup_upstream(&f, TP_LB_RANDOM_TWO_CHOICES, w, 4);
    int counts[4] = {0};
    for (int i = 0; i < 10000; i++) /* equal load: even within 10% */
        counts[pick_name(&f, i % 4, 0) - 'A']++;
    for (int i = 0; i < 4; i++)
        assert_true(counts[i] >= 2250 && counts[i] <= 2750);
    memset(counts, 0, sizeof(counts));
    atomic_store(&f.t[0].active, 50);
    atomic_store(&f.t[1].active, 2);
    for (int i = 0; i < 10000; i++)
        counts[pick_name(&f, 0, 0) - 'A']++;
    assert_true(counts[0] < 100);           /* loaded: far less often */
    assert_true(counts[1] < counts[2] / 2); /* a little loaded: less often */
    assert_true(counts[2] > 3000 && counts[3] > 3000);
}

static void two_choices_follows_weights(void **state)
{
    struct fixture f;
    const uint32_t w[2] = {100, 300};
    setup_upstream(&f, TP_LB_RANDOM_TWO_CHOICES, w, 2);
    int counts[2] = {0};
    for (int i = 0; i < 10000; i++)
        counts[pick_name(&f, 1, 0) - 'A']++;
    assert_true(counts[0] >= 2250 && counts[0] <= 2750); /* 1/4 at equal (zero) load */
    /* relative load: 3 in flight on weight 300 is lighter than 2 on weight 100 */
    atomic_store(&f.t[0].active, 2);
    atomic_store(&f.t[1].active, 3);
    for (int i = 0; i < 100; i++)
        assert_int_equal(pick_name(&f, 1, 0), 'B');
    f.rng[0] = 0; /* a zero state (never seeded) still works */
    assert_int_not_equal(pick_name(&f, 0, 0), '-');
    f.u.p2c_rng = NULL; /* no per-worker state: still picks */
    assert_int_equal(pick_name(&f, 0, 0), 'B');
}

/* ------------------------------------------------------------------------------------------ */
/* The request's hash key                                                                     */

static struct tp_http_header key_headers[] = {
    {TP_SLICE_LIT("Host"), TP_SLICE_LIT("example.com")},
    {TP_SLICE_LIT("X-User"), TP_SLICE_LIT("alice")},
    {TP_SLICE_LIT("Cookie"), TP_SLICE_LIT("theme=dark;sessionid=zzz")},
    {TP_SLICE_LIT("cookie"), TP_SLICE_LIT(" a = 1 ;session=s3cr3t; session=other;empty=")},
    {TP_SLICE_LIT("x-user"), TP_SLICE_LIT("bob")},
    {TP_SLICE_LIT("X-Empty"), TP_SLICE_LIT("")},
};

static struct tp_http_message key_message(void)
{
    struct tp_http_message m;
    memset(&m, 0, sizeof(m));
    m.headers = key_headers;
    m.num_headers = TP_ARRAY_LEN(key_headers);
    m.path = TP_SLICE_LIT("/users/7");
    m.query = TP_SLICE_LIT("a=1&uid=42&uid=43&empty=&flag&x%20y=sp");
    return m;
}

static bool key_for(enum tp_hash_on on, const char *name, enum tp_hash_on fb, const char *fb_name,
                    const struct tp_http_message *m, uint64_t *out)
{
    struct tp_upstream u;
    memset(&u, 0, sizeof(u));
    u.hash_on = on;
    u.hash_on_name = tp_slice_cstr(name);
    u.hash_fallback = fb;
    u.hash_fallback_name = tp_slice_cstr(fb_name);
    return tp_upstream_hash_key(&u, m, "10.1.2.3", "/users/7", out);
}

#define H(s) tp_hash64((s), sizeof(s) - 1, 0)

static void hash_key_of_each_kind(void **state)
{
    struct tp_http_message m = key_message();
    uint64_t k = 0;

    assert_true(key_for(TP_HASH_IP, "", TP_HASH_NONE, "", &m, &k));
    assert_true(k == H("10.1.2.3"));
    assert_true(key_for(TP_HASH_IP, "", TP_HASH_NONE, "", NULL, &k)); /* needs no message */
    assert_true(k == H("10.1.2.3"));
    assert_true(key_for(TP_HASH_PATH, "", TP_HASH_NONE, "", &m, &k));
    assert_true(k == H("/users/7"));
    /* every value of the header, any case of its name, in order */
    assert_true(key_for(TP_HASH_HEADER, "x-user", TP_HASH_NONE, "", &m, &k));
    assert_true(k == tp_hash64("bob", 3, H("alice")));
    assert_true(key_for(TP_HASH_HEADER, "host", TP_HASH_NONE, "", &m, &k));
    assert_true(k == H("example.com"));
    assert_false(key_for(TP_HASH_HEADER, "x-empty", TP_HASH_NONE, "", &m, &k));
    assert_false(key_for(TP_HASH_HEADER, "x-missing", TP_HASH_NONE, "", &m, &k));
    /* cookies: whole names only, spaces around pairs ignored, the first of a name wins */
    assert_true(key_for(TP_HASH_COOKIE, "session", TP_HASH_NONE, "", &m, &k));
    assert_true(k == H("s3cr3t"));
    assert_true(key_for(TP_HASH_COOKIE, "a", TP_HASH_NONE, "", &m, &k));
    assert_true(k == H("1"));
    assert_true(key_for(TP_HASH_COOKIE, "sessionid", TP_HASH_NONE, "", &m, &k));
    assert_true(k == H("zzz"));
    assert_false(key_for(TP_HASH_COOKIE, "Session", TP_HASH_NONE, "", &m, &k));
    assert_false(key_for(TP_HASH_COOKIE, "empty", TP_HASH_NONE, "", &m, &k));
    assert_false(key_for(TP_HASH_COOKIE, "sess", TP_HASH_NONE, "", &m, &k));
    /* query arguments: raw value of the first, whole names only */
    assert_true(key_for(TP_HASH_QUERY_ARG, "uid", TP_HASH_NONE, "", &m, &k));
    assert_true(k == H("42"));
    assert_true(key_for(TP_HASH_QUERY_ARG, "x%20y", TP_HASH_NONE, "", &m, &k));
    assert_true(k == H("sp"));
    assert_false(key_for(TP_HASH_QUERY_ARG, "ui", TP_HASH_NONE, "", &m, &k));
    assert_false(key_for(TP_HASH_QUERY_ARG, "empty", TP_HASH_NONE, "", &m, &k));
    assert_false(key_for(TP_HASH_QUERY_ARG, "flag", TP_HASH_NONE, "", &m, &k));
    assert_false(key_for(TP_HASH_NONE, "", TP_HASH_NONE, "", &m, &k));
}

static void hash_key_fallback(void **state)
{
    struct tp_http_message m = key_message();
    uint64_t k = 0;

    /* the primary key wins when present */
    assert_true(key_for(TP_HASH_HEADER, "host", TP_HASH_IP, "", &m, &k));
    assert_true(k == H("example.com"));
    /* absent: the fallback decides */
    assert_true(key_for(TP_HASH_COOKIE, "nope", TP_HASH_IP, "", &m, &k));
    assert_true(k == H("10.1.2.3"));
    assert_true(key_for(TP_HASH_HEADER, "x-nope", TP_HASH_HEADER, "x-user", &m, &k));
    assert_true(k == tp_hash64("bob", 3, H("alice")));
    assert_true(key_for(TP_HASH_QUERY_ARG, "nope", TP_HASH_QUERY_ARG, "a", &m, &k));
    assert_true(k == H("1"));
    assert_true(key_for(TP_HASH_IP, "", TP_HASH_PATH, "", &m, &k)); /* ip present */
    assert_true(k == H("10.1.2.3"));
    /* absent, no fallback, or the fallback absent too: no key */
    assert_false(key_for(TP_HASH_COOKIE, "nope", TP_HASH_NONE, "", &m, &k));
    assert_false(key_for(TP_HASH_COOKIE, "nope", TP_HASH_QUERY_ARG, "nope", &m, &k));
    struct tp_upstream u;
    memset(&u, 0, sizeof(u));
    u.hash_on = TP_HASH_IP;
    u.hash_fallback = TP_HASH_PATH;
    assert_true(tp_upstream_hash_key(&u, &m, "", "/p", &k));
    assert_true(k == H("/p"));
    assert_false(tp_upstream_hash_key(&u, &m, NULL, NULL, &k));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(swrr_interleaves_like_nginx),
        cmocka_unit_test(swrr_light_target_in_every_window),
        cmocka_unit_test(swrr_state_is_per_worker),
        cmocka_unit_test(round_robin_is_even_and_skips),
        cmocka_unit_test(exclusion_and_exhaustion),
        cmocka_unit_test(least_connections_prefers_idle),
        cmocka_unit_test(unhealthy_targets_are_skipped),
        cmocka_unit_test(hash64_is_xxh64),
        cmocka_unit_test(consistent_hash_removal_moves_one_tenth),
        cmocka_unit_test(consistent_hash_weight_zero_moves_only_its_keys),
        cmocka_unit_test(consistent_hash_weights_skew_share),
        cmocka_unit_test(consistent_hash_is_sticky_and_keyless_round_robin),
        cmocka_unit_test(two_choices_avoids_loaded_target),
        cmocka_unit_test(two_choices_follows_weights),
        cmocka_unit_test(hash_key_of_each_kind),
        cmocka_unit_test(hash_key_fallback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
