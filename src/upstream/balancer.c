/*
 * Load balancers: round-robin (shared position), smooth weighted round-robin (NGINX's
 * algorithm: interleaves instead of bursting, CASES.md B38), least-connections.
 */
#include "http/proxy.h"

static bool usable(const struct tp_upstream *u, size_t i, uint64_t exclude)
{
    return u->targets[i].weight > 0 && !(i < 64 && (exclude >> i) & 1);
}

/* Each skip of an unusable target takes a fresh position, so a disabled or excluded target
 * does not hand its share to its neighbour (its share spreads over all the others). */
static struct tp_target *pick_round_robin(struct tp_upstream *u, uint64_t exclude)
{
    size_t n = u->num_targets;
    for (size_t k = 0; k < n; k++) {
        size_t i = atomic_fetch_add_explicit(&u->rr_next, 1, memory_order_relaxed) % n;
        if (usable(u, i, exclude))
            return &u->targets[i];
    }
    for (size_t i = 0; i < n; i++) /* positions raced past every usable one: scan */
        if (usable(u, i, exclude))
            return &u->targets[i];
    return NULL;
}

/*
 * Smooth WRR: every pick adds each weight to its current value, takes the largest and
 * subtracts the total from it. Weights 5,1,1,1,1 give A B A C A D A E A. State is per worker so
 * no lock or atomic is needed; each worker's sequence is exact on its own.
 */
static struct tp_target *pick_swrr(struct tp_upstream *u, int wid, uint64_t exclude)
{
    int64_t *cur = u->swrr_current + (size_t)wid * u->num_targets;
    int64_t total = 0;
    ssize_t best = -1;
    for (size_t i = 0; i < u->num_targets; i++) {
        if (!usable(u, i, exclude))
            continue;
        cur[i] += u->targets[i].weight;
        total += u->targets[i].weight;
        if (best < 0 || cur[i] > cur[best])
            best = (ssize_t)i;
    }
    if (best < 0)
        return NULL;
    cur[best] -= total;
    return &u->targets[best];
}

/* Fewest in-flight requests relative to weight; ties rotate so equal targets share load. */
static struct tp_target *pick_least_conn(struct tp_upstream *u, uint64_t exclude)
{
    size_t n = u->num_targets;
    unsigned start = atomic_fetch_add_explicit(&u->rr_next, 1, memory_order_relaxed);
    ssize_t best = -1;
    int64_t best_active = 0, best_weight = 1;
    for (size_t k = 0; k < n; k++) {
        size_t i = (start + k) % n;
        if (!usable(u, i, exclude))
            continue;
        int64_t a = atomic_load_explicit(&u->targets[i].active, memory_order_relaxed);
        int64_t wt = u->targets[i].weight;
        if (best < 0 || a * best_weight < best_active * wt) {
            best = (ssize_t)i;
            best_active = a;
            best_weight = wt;
        }
    }
    return best < 0 ? NULL : &u->targets[best];
}

/**
 * Pick a target of upstream u for worker wid, skipping targets whose index bit is set in
 * exclude_mask (already tried by this request). Returns NULL when no target is usable.
 */
struct tp_target *tp_upstream_pick(struct tp_upstream *u, int wid, uint64_t exclude_mask)
{
    if (u->num_targets == 0)
        return NULL;
    switch (u->algorithm) {
    case TP_LB_WEIGHTED_ROUND_ROBIN:
        return pick_swrr(u, wid, exclude_mask);
    case TP_LB_LEAST_CONNECTIONS:
        return pick_least_conn(u, exclude_mask);
    case TP_LB_ROUND_ROBIN:
    default:
        return pick_round_robin(u, exclude_mask);
    }
}
