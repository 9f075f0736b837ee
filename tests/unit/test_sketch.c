/*
 * Unit tests: the latency quantile sketch (src/metrics/sketch.c) against exact quantiles.
 *
 * The documented bound: a quantile the sketch reports is within 1 % (relative) of the exact
 * value of the same rank (nearest rank: the ceil(q * n)-th smallest value).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "metrics/sketch.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t next_u64(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static double uniform01(void)
{
    return (double)(next_u64() >> 11) / 9007199254740992.0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double rel_error(double got, double want)
{
    return want == 0 ? fabs(got) : fabs(got - want) / want;
}

static void setup_once(void)
{
    tp_sketch_init();
}

/* Every bucket's reported value is within the bound of every integer that lands in it. */
static void every_small_value_within_bound(void **state)
{
    (void)state;
    setup_once();
    unsigned prev = 0;
    for (uint64_t v = 1; v < (UINT64_C(1) << 22); v++) {
        unsigned i = tp_sketch_index(v);
        assert_true(i >= prev); /* monotonic */
        assert_true(i > 0 && i < TP_SKETCH_BUCKETS);
        prev = i;
        double e = rel_error(tp_sketch_value(i), (double)v);
        if (e > TP_SKETCH_MAX_ERROR)
            fail_msg("value %llu: bucket %u reports %.4f (error %.5f)", (unsigned long long)v, i,
                     tp_sketch_value(i), e);
    }
}

/* Large values, sampled across every octave, including each octave's edges. */
static void large_values_within_bound(void **state)
{
    (void)state;
    setup_once();
    for (unsigned k = 22; k < TP_SKETCH_OCTAVES; k++) {
        uint64_t base = UINT64_C(1) << k;
        uint64_t probes[] = {base, base + 1, base * 2 - 1, base + base / 3, base + base / 2};
        for (size_t j = 0; j < sizeof(probes) / sizeof(probes[0]); j++) {
            double e = rel_error(tp_sketch_value(tp_sketch_index(probes[j])), (double)probes[j]);
            assert_true(e <= TP_SKETCH_MAX_ERROR);
        }
        for (int r = 0; r < 20000; r++) {
            uint64_t v = base + next_u64() % base;
            double e = rel_error(tp_sketch_value(tp_sketch_index(v)), (double)v);
            if (e > TP_SKETCH_MAX_ERROR)
                fail_msg("value %llu: error %.5f", (unsigned long long)v, e);
        }
    }
}

static void edges(void **state)
{
    (void)state;
    setup_once();
    assert_int_equal(tp_sketch_index(0), 0);
    assert_true(tp_sketch_value(0) == 0.0);
    assert_int_equal(tp_sketch_index(1), 1);
    assert_int_equal(tp_sketch_index(UINT64_C(1) << 32), TP_SKETCH_BUCKETS - 1);
    assert_int_equal(tp_sketch_index(UINT64_MAX), TP_SKETCH_BUCKETS - 1);
    assert_int_equal(tp_sketch_index((UINT64_C(1) << 32) - 1), TP_SKETCH_BUCKETS - 1);
    assert_int_equal(TP_SKETCH_BUCKETS, 1153); /* README: the memory of a sketch */
    uint64_t counts[TP_SKETCH_BUCKETS] = {0};
    double qs[] = {0.5, 0.99}, out[2] = {-1, -1};
    tp_sketch_quantiles(counts, 0, TP_SKETCH_BUCKETS - 1, 0, qs, 2, out);
    assert_true(out[0] == 0.0 && out[1] == 0.0);
}

/* Sketch quantiles of data vs the exact nearest-rank quantiles of the same data. */
static void check_data(const char *what, uint64_t *data, size_t n)
{
    static uint64_t counts[TP_SKETCH_BUCKETS];
    static const double qs[] = {0.0, 0.1, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0};
    const size_t nq = sizeof(qs) / sizeof(qs[0]);
    double out[8];
    memset(counts, 0, sizeof(counts));
    for (size_t i = 0; i < n; i++)
        counts[tp_sketch_index(data[i])]++;
    tp_sketch_quantiles(counts, 0, TP_SKETCH_BUCKETS - 1, n, qs, nq, out);
    qsort(data, n, sizeof(*data), cmp_u64);
    for (size_t j = 0; j < nq; j++) {
        double r = ceil(qs[j] * (double)n);
        size_t rank = r < 1 ? 1 : (size_t)r;
        double exact = (double)data[rank - 1];
        double e = rel_error(out[j], exact);
        if (e > TP_SKETCH_MAX_ERROR)
            fail_msg("%s n=%zu q=%g: sketch %.3f exact %.0f (error %.5f)", what, n, qs[j], out[j],
                     exact, e);
    }
}

static void random_data_quantiles(void **state)
{
    (void)state;
    setup_once();
    static const size_t sizes[] = {1, 2, 7, 100, 1000, 100000};
    uint64_t *data = malloc(100000 * sizeof(*data));
    assert_non_null(data);
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        size_t n = sizes[s];
        for (int round = 0; round < 5; round++) {
            /* log-uniform over 1 µs .. 100 s */
            for (size_t i = 0; i < n; i++)
                data[i] = (uint64_t)exp(uniform01() * log(1e8));
            check_data("log-uniform", data, n);
            /* log-normal around 20 ms (a typical upstream) */
            for (size_t i = 0; i < n; i++) {
                double u1 = uniform01() + 1e-12, u2 = uniform01();
                double z = sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
                data[i] = (uint64_t)(20000.0 * exp(0.8 * z));
            }
            check_data("log-normal", data, n);
            /* bimodal: cache hits at ~300 µs, misses at ~250 ms */
            for (size_t i = 0; i < n; i++)
                data[i] = next_u64() % 10 ? 250 + next_u64() % 100 : 200000 + next_u64() % 100000;
            check_data("bimodal", data, n);
            /* uniform integers 0 .. 5000 (zeros included) */
            for (size_t i = 0; i < n; i++)
                data[i] = next_u64() % 5001;
            check_data("uniform", data, n);
        }
    }
    free(data);
}

/* Only [lo, hi] of the counts is read: a merge may pass the range it touched. */
static void range_limited_read(void **state)
{
    (void)state;
    setup_once();
    uint64_t counts[TP_SKETCH_BUCKETS] = {0};
    unsigned a = tp_sketch_index(1000), b = tp_sketch_index(50000);
    counts[a] = 99;
    counts[b] = 1;
    double qs[] = {0.5, 0.99, 0.999}, out[3];
    tp_sketch_quantiles(counts, a, b, 100, qs, 3, out);
    assert_true(rel_error(out[0], 1000) <= 0.01);
    assert_true(rel_error(out[1], 1000) <= 0.01);
    assert_true(rel_error(out[2], 50000) <= 0.01);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_small_value_within_bound),
        cmocka_unit_test(large_values_within_bound),
        cmocka_unit_test(edges),
        cmocka_unit_test(random_data_quantiles),
        cmocka_unit_test(range_limited_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
