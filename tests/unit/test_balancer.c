/*
 * Balancer unit tests: smooth weighted round-robin sequences (CASES.md B38), round-robin,
 * least-connections, exclusion of tried targets and disabled (weight 0) targets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "http/proxy.h"

#include <stdlib.h>

struct fixture {
    struct tp_upstream u;
    struct tp_target t[10];
    int64_t swrr[10 * 4];
};

static void setup_upstream(struct fixture *f, enum tp_balancer_algorithm alg,
                           const uint32_t *weights, size_t n)
{
    memset(f, 0, sizeof(*f));
    f->u.algorithm = alg;
    f->u.targets = f->t;
    f->u.num_targets = n;
    f->u.swrr_current = f->swrr;
    for (size_t i = 0; i < n; i++)
        f->t[i].weight = weights[i];
}

static char pick_name(struct fixture *f, int worker, uint64_t exclude)
{
    struct tp_target *t = tp_upstream_pick(&f->u, worker, exclude);
    return t ? (char)('A' + (t - f->t)) : '-';
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
    for (int alg = 0; alg < 3; alg++) {
        setup_upstream(&f, (enum tp_balancer_algorithm)alg, w, 3);
        for (int i = 0; i < 10; i++)
            assert_int_equal(pick_name(&f, 0, 0x3), 'C');
        assert_int_equal(pick_name(&f, 0, 0x7), '-');
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(swrr_interleaves_like_nginx),
        cmocka_unit_test(swrr_light_target_in_every_window),
        cmocka_unit_test(swrr_state_is_per_worker),
        cmocka_unit_test(round_robin_is_even_and_skips),
        cmocka_unit_test(exclusion_and_exhaustion),
        cmocka_unit_test(least_connections_prefers_idle),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
