/*
 * Load balancers: round-robin (shared position), smooth weighted round-robin (NGINX's
 * algorithm: interleaves instead of bursting, CASES.md B38), least-connections, consistent
 * hashing (a ketama ring built with the snapshot, src/upstream/hash_key.c) and random two
 * choices (power of two choices on in-flight requests).
 */
#include "http/proxy.h"

/* Every algorithm skips disabled (weight 0), already tried and unhealthy targets. */
static bool usable(const struct tp_upstream *u, size_t i, uint64_t exclude)
{
    const struct tp_target *t = &u->targets[i];
    /* health is shared per address: it only counts for upstreams that check it */
    return t->weight > 0 && !(i < 64 && (exclude >> i) & 1) &&
           (!u->healthchecks || tp_health_up(t->health));
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

/* ------------------------------------------------------------------------------------------ */
/* Consistent hashing                                                                         */

/* First ring point whose hash is >= h, wrapping to 0 past the last (clockwise). */
static size_t ring_find(const struct tp_ring_point *ring, size_t len, uint64_t h)
{
    size_t lo = 0, hi = len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ring[mid].hash < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo == len ? 0 : lo;
}

/*
 * The key's point, then clockwise to the first point of a usable target: an excluded target's
 * keys go to its ring successors, so the keys of every other target stay where they were.
 * Without a key (or a ring) the request is balanced round-robin.
 */
static struct tp_target *pick_hash(struct tp_upstream *u, uint64_t exclude, uint64_t hash,
                                   bool has_hash)
{
    if (!has_hash || u->ring_len == 0)
        return pick_round_robin(u, exclude);
    size_t start = ring_find(u->ring, u->ring_len, hash);
    uint32_t first = u->ring[start].target;
    if (usable(u, first, exclude))
        return &u->targets[first];
    /* walking the whole ring to learn that nothing is usable would be slow: look first */
    bool any = false;
    for (size_t i = 0; i < u->num_targets && !any; i++)
        any = usable(u, i, exclude);
    if (!any)
        return NULL;
    for (size_t k = 1; k < u->ring_len; k++) {
        uint32_t t = u->ring[(start + k) % u->ring_len].target;
        if (t != first && usable(u, t, exclude))
            return &u->targets[t];
    }
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Random two choices                                                                         */

static uint64_t mix64(uint64_t x) /* splitmix64's finaliser */
{
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* xorshift64* on the worker's own cache line; no atomics. */
static uint64_t p2c_random(struct tp_upstream *u, int wid)
{
    if (!u->p2c_rng) {
        unsigned n = atomic_fetch_add_explicit(&u->rr_next, 1, memory_order_relaxed);
        return mix64(((uint64_t)(unsigned)wid << 32 | n) + 0x9E3779B97F4A7C15ull);
    }
    uint64_t *s = &u->p2c_rng[(size_t)wid * TP_P2C_RNG_STRIDE];
    uint64_t x = *s ? *s : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* A usable target other than `skip` (-1: none), drawn with probability proportional to its
 * weight from r; total is the sum of the candidates' weights. -1 when health changed under us
 * and nothing was drawn. */
static ssize_t draw_weighted(struct tp_upstream *u, uint64_t exclude, ssize_t skip, uint64_t total,
                             uint64_t r)
{
    uint64_t x = r % total;
    for (size_t i = 0; i < u->num_targets; i++) {
        if ((ssize_t)i == skip || !usable(u, i, exclude))
            continue;
        if (x < u->targets[i].weight)
            return (ssize_t)i;
        x -= u->targets[i].weight;
    }
    return -1;
}

/*
 * Two distinct usable targets drawn at random (in proportion to weight), and the one with fewer
 * in-flight requests relative to its weight wins: as good as least-connections at spreading
 * uneven load, without every worker herding onto the same "least" target at once.
 */
static struct tp_target *pick_two_choices(struct tp_upstream *u, int wid, uint64_t exclude)
{
    uint64_t total = 0;
    size_t count = 0;
    for (size_t i = 0; i < u->num_targets; i++) {
        if (usable(u, i, exclude)) {
            total += u->targets[i].weight;
            count++;
        }
    }
    if (count == 0)
        return NULL;
    ssize_t a = draw_weighted(u, exclude, -1, total, p2c_random(u, wid));
    if (a < 0)
        return pick_round_robin(u, exclude);
    /* health may flip between the scans: never divide by a stale, too small total */
    if (count == 1 || total <= u->targets[a].weight)
        return &u->targets[a];
    ssize_t b = draw_weighted(u, exclude, a, total - u->targets[a].weight, p2c_random(u, wid));
    if (b < 0)
        return &u->targets[a];
    int64_t la = atomic_load_explicit(&u->targets[a].active, memory_order_relaxed);
    int64_t lb = atomic_load_explicit(&u->targets[b].active, memory_order_relaxed);
    /* la / wa <= lb / wb without division; ties keep the first draw (random) */
    return lb * (int64_t)u->targets[a].weight < la * (int64_t)u->targets[b].weight ? &u->targets[b]
                                                                                   : &u->targets[a];
}

/**
 * Pick a target of upstream u for worker wid, skipping targets whose index bit is set in
 * exclude_mask (already tried by this request), weight-0 and unhealthy targets. hash/has_hash
 * are the request's consistent-hashing key (only consistent-hashing reads them). Returns NULL
 * when no target is usable.
 */
/*
 * Priority tiers (backup targets): only the lowest priority level that still has a usable
 * target takes traffic, as NGINX's `backup` does; its members are picked by the algorithm as
 * usual. Returned as extra exclusions for the other levels (tiered upstreams have <= 64
 * targets, checked by the loader).
 */
static uint64_t other_tiers(const struct tp_upstream *u, uint64_t exclude)
{
    /* lowest tier whose usable weight reaches failover_threshold % of its enabled weight */
    uint32_t level = UINT32_MAX, floor = 0;
    for (;;) {
        uint32_t cur = UINT32_MAX;
        uint64_t total = 0, ok = 0;
        for (size_t i = 0; i < u->num_targets; i++)
            if (u->targets[i].weight > 0 && u->targets[i].priority >= floor &&
                u->targets[i].priority < cur)
                cur = u->targets[i].priority;
        if (cur == UINT32_MAX)
            break; /* no tier qualifies: the last one with anything usable serves */
        for (size_t i = 0; i < u->num_targets; i++) {
            if (u->targets[i].priority != cur || u->targets[i].weight == 0)
                continue;
            total += u->targets[i].weight;
            if (usable(u, i, exclude))
                ok += u->targets[i].weight;
        }
        if (ok && (level == UINT32_MAX || ok * 100 >= total * u->failover_threshold))
            level = cur;
        if (ok && ok * 100 >= total * u->failover_threshold)
            break;
        floor = cur + 1;
    }
    uint64_t mask = 0;
    for (size_t i = 0; i < u->num_targets && i < 64; i++)
        if (u->targets[i].priority != level)
            mask |= 1ull << i;
    return mask;
}

struct tp_target *tp_upstream_pick(struct tp_upstream *u, int wid, uint64_t exclude_mask,
                                   uint64_t hash, bool has_hash)
{
    if (u->num_targets == 0)
        return NULL;
    if (u->tiered)
        exclude_mask |= other_tiers(u, exclude_mask);
    switch (u->algorithm) {
    case TP_LB_WEIGHTED_ROUND_ROBIN:
        return pick_swrr(u, wid, exclude_mask);
    case TP_LB_LEAST_CONNECTIONS:
        return pick_least_conn(u, exclude_mask);
    case TP_LB_CONSISTENT_HASHING:
        return pick_hash(u, exclude_mask, hash, has_hash);
    case TP_LB_RANDOM_TWO_CHOICES:
        return pick_two_choices(u, wid, exclude_mask);
    case TP_LB_ROUND_ROBIN:
    default:
        return pick_round_robin(u, exclude_mask);
    }
}
