/*
 * turnpike — redis-batched storage (batched.h): one worker's counters, their synchronisation
 * with Redis, the flush timer.
 */
#include "ratelimit/batched.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#define FLUSH_TICK_US (10 * 1000) /* the timer's resolution */

struct bentry {
    struct bentry *next;               /* hash chain */
    struct bentry *older, *newer;      /* LRU */
    struct bentry *dprev, *dnext;      /* dirty list: unsent requests */
    struct tp_rl_batch *b;
    uint64_t hash;
    struct tp_rl_limit limit;
    int64_t window;
    uint64_t base_cur, base_prev;      /* Redis's totals at the last synchronisation */
    uint64_t unsent_cur, unsent_prev;  /* admitted here, not yet sent */
    uint64_t sent_cur, sent_prev;      /* sent, not yet confirmed */
    int64_t sent_window;
    int64_t last_sync;
    uint32_t sync_every;
    int64_t interval;
    bool syncing, dirty;
    uint16_t key_len;
    char key[];
};

struct tp_rl_batch {
    struct tp_rl_redis *r;
    struct bentry **buckets;
    size_t num_buckets, count, max_keys;
    struct bentry *oldest, *newest;
    struct bentry *dirty;
    struct event *timer;
    bool timer_armed;
    uint64_t seed;
};

static uint64_t hash_key(uint64_t seed, const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 31;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 29);
}

static void dirty_add(struct tp_rl_batch *b, struct bentry *e)
{
    if (e->dirty)
        return;
    e->dirty = true;
    e->dprev = NULL;
    e->dnext = b->dirty;
    if (b->dirty)
        b->dirty->dprev = e;
    b->dirty = e;
}

static void dirty_remove(struct tp_rl_batch *b, struct bentry *e)
{
    if (!e->dirty)
        return;
    if (e->dprev)
        e->dprev->dnext = e->dnext;
    else
        b->dirty = e->dnext;
    if (e->dnext)
        e->dnext->dprev = e->dprev;
    e->dprev = e->dnext = NULL;
    e->dirty = false;
}

static void lru_unlink(struct tp_rl_batch *b, struct bentry *e)
{
    if (e->older)
        e->older->newer = e->newer;
    else
        b->oldest = e->newer;
    if (e->newer)
        e->newer->older = e->older;
    else
        b->newest = e->older;
    e->older = e->newer = NULL;
}

static void lru_push(struct tp_rl_batch *b, struct bentry *e)
{
    e->older = b->newest;
    e->newer = NULL;
    if (b->newest)
        b->newest->newer = e;
    else
        b->oldest = e;
    b->newest = e;
}

static void entry_remove(struct tp_rl_batch *b, struct bentry *e)
{
    struct bentry **pp = &b->buckets[e->hash & (b->num_buckets - 1)];
    while (*pp != e)
        pp = &(*pp)->next;
    *pp = e->next;
    lru_unlink(b, e);
    dirty_remove(b, e);
    b->count--;
    free(e);
}

/* Move an entry to window w: the current counts become the previous window's. */
static void roll(struct bentry *e, int64_t w)
{
    if (e->window == w)
        return;
    bool adjacent = e->window == w - 1 && e->limit.algo == TP_RL_SLIDING_WINDOW;
    e->base_prev = adjacent ? e->base_cur : 0;
    e->unsent_prev = adjacent ? e->unsent_cur : 0;
    e->base_cur = e->unsent_cur = 0;
    e->window = w;
}

static void sync_done(void *arg, bool ok, int64_t w, uint64_t cur, uint64_t prev)
{
    struct bentry *e = arg;
    e->syncing = false;
    e->last_sync = tp_rl_now_us();
    if (!ok) {
        /* not counted by Redis: send it again with the next synchronisation */
        if (e->sent_window == e->window) {
            e->unsent_cur += e->sent_cur;
            e->unsent_prev += e->sent_prev;
        } else if (e->sent_window == e->window - 1) {
            e->unsent_prev += e->sent_cur;
        }
        e->sent_cur = e->sent_prev = 0;
        if (e->unsent_cur || e->unsent_prev)
            dirty_add(e->b, e);
        return;
    }
    if (w == e->window) {
        e->base_cur = cur;
        e->base_prev = e->limit.algo == TP_RL_SLIDING_WINDOW ? prev : 0;
    } else if (w == e->window - 1 && e->limit.algo == TP_RL_SLIDING_WINDOW) {
        e->base_prev = cur;
    }
    e->sent_cur = e->sent_prev = 0;
}

/* Send what e admitted since its last synchronisation (also when nothing: to read others'). */
static void start_sync(struct bentry *e)
{
    if (e->syncing || tp_rl_redis_state(e->b->r) != TP_RL_REDIS_UP)
        return;
    e->sent_cur = e->unsent_cur;
    e->sent_prev = e->unsent_prev;
    e->sent_window = e->window;
    if (tp_rl_redis_sync(e->b->r, (struct tp_slice){e->key, e->key_len}, e->limit.period_us,
                         e->window, e->sent_cur, e->sent_prev, sync_done, e) != 0) {
        e->sent_cur = e->sent_prev = 0;
        return;
    }
    e->syncing = true;
    e->unsent_cur = e->unsent_prev = 0;
    dirty_remove(e->b, e);
}

static void arm(struct tp_rl_batch *b)
{
    if (b->timer_armed || !b->dirty)
        return;
    struct timeval tv = {0, FLUSH_TICK_US};
    if (event_add(b->timer, &tv) == 0)
        b->timer_armed = true;
}

static void flush_tick(evutil_socket_t fd, short what, void *arg)
{
    struct tp_rl_batch *b = arg;
    int64_t now = tp_rl_now_us();
    (void)fd;
    (void)what;
    b->timer_armed = false;
    for (struct bentry *e = b->dirty, *next; e; e = next) {
        next = e->dnext;
        if (now - e->last_sync >= e->interval)
            start_sync(e);
    }
    arm(b);
}

static void batch_destroy(void *arg)
{
    struct tp_rl_batch *b = arg;
    if (!b)
        return;
    for (struct bentry *e = b->oldest, *next; e; e = next) {
        next = e->newer;
        free(e);
    }
    free(b->buckets);
    if (b->timer)
        event_free(b->timer);
    free(b);
}

struct tp_rl_batch *tp_rl_batch_get(struct tp_rl_redis *r, size_t max_keys)
{
    void **slot = tp_rl_redis_companion(r, batch_destroy);
    if (*slot)
        return *slot;
    struct tp_rl_batch *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->r = r;
    b->max_keys = max_keys ? max_keys : 1;
    b->num_buckets = 64;
    b->buckets = calloc(b->num_buckets, sizeof(*b->buckets));
    b->timer = event_new(tp_rl_redis_base(r), -1, 0, flush_tick, b);
    b->seed = (uint64_t)(uintptr_t)b ^ (uint64_t)tp_rl_now_us();
    if (!b->buckets || !b->timer) {
        batch_destroy(b);
        return NULL;
    }
    *slot = b;
    return b;
}

static void grow(struct tp_rl_batch *b)
{
    size_t n = b->num_buckets * 2;
    struct bentry **nb = calloc(n, sizeof(*nb));
    if (!nb)
        return;
    for (size_t i = 0; i < b->num_buckets; i++)
        for (struct bentry *e = b->buckets[i], *next; e; e = next) {
            next = e->next;
            e->next = nb[e->hash & (n - 1)];
            nb[e->hash & (n - 1)] = e;
        }
    free(b->buckets);
    b->buckets = nb;
    b->num_buckets = n;
}

static struct bentry *lookup(struct tp_rl_batch *b, const struct tp_rl_limit *l,
                             struct tp_slice key, struct bentry *const *keep, size_t num_keep)
{
    uint64_t h = hash_key(b->seed, key.ptr, key.len);
    struct bentry *e;
    for (e = b->buckets[h & (b->num_buckets - 1)]; e; e = e->next)
        if (e->hash == h && e->key_len == key.len && memcmp(e->key, key.ptr, key.len) == 0) {
            e->limit = *l;
            lru_unlink(b, e);
            lru_push(b, e);
            return e;
        }
    if (b->count >= b->max_keys) {
        /* forget the least recently used key that no answer is pending for */
        for (struct bentry *v = b->oldest; v; v = v->newer) {
            bool kept = v->syncing;
            for (size_t i = 0; i < num_keep; i++)
                kept |= keep[i] == v;
            if (!kept) {
                entry_remove(b, v);
                break;
            }
        }
    }
    if (b->count + 1 > b->num_buckets)
        grow(b);
    e = calloc(1, sizeof(*e) + key.len);
    if (!e)
        return NULL;
    e->b = b;
    e->hash = h;
    e->limit = *l;
    e->key_len = (uint16_t)key.len;
    memcpy(e->key, key.ptr, key.len);
    e->next = b->buckets[h & (b->num_buckets - 1)];
    b->buckets[h & (b->num_buckets - 1)] = e;
    lru_push(b, e);
    b->count++;
    return e;
}

bool tp_rl_batch_take(struct tp_rl_batch *b, struct tp_rl_item *items, size_t n, int64_t now,
                      const struct tp_rl_batch_opts *o)
{
    struct bentry *e[TP_RL_MAX_LIMITS];
    bool all = true;
    bool up = tp_rl_redis_state(b->r) == TP_RL_REDIS_UP;

    if (n > TP_RL_MAX_LIMITS)
        n = TP_RL_MAX_LIMITS;
    for (size_t i = 0; i < n; i++) {
        e[i] = lookup(b, items[i].limit, items[i].key, e, i);
        if (e[i]) {
            e[i]->sync_every = o->sync_every;
            e[i]->interval = o->sync_interval_us;
        }
    }
    for (size_t i = 0; i < n; i++) {
        struct tp_rl_decision *d = &items[i].d;
        const struct tp_rl_limit *l = items[i].limit;
        if (!e[i]) {
            memset(d, 0, sizeof(*d));
            d->allowed = true;
            d->limit = l->count;
            d->remaining = l->count - 1;
            continue;
        }
        int64_t w = now / l->period_us;
        roll(e[i], w);
        bool same = e[i]->sent_window == w;
        struct tp_rl_state s = {
            .window = w,
            .cur = e[i]->base_cur + e[i]->unsent_cur + (same ? e[i]->sent_cur : 0),
            .prev = e[i]->base_prev + e[i]->unsent_prev +
                    (same ? e[i]->sent_prev
                          : e[i]->sent_window == w - 1 ? e[i]->sent_cur : 0),
        };
        tp_rl_check(l, &s, now, d);
        if (d->allowed && up && e[i]->unsent_cur + e[i]->sent_cur >= o->sync_every) {
            /* sync_every admissions unconfirmed: wait for Redis rather than guess */
            d->allowed = false;
            d->remaining = 0;
            if (d->retry_us < 1000)
                d->retry_us = 1000;
            if (d->reset_us < d->retry_us)
                d->reset_us = d->retry_us;
            start_sync(e[i]);
        }
        all &= d->allowed;
    }
    for (size_t i = 0; i < n; i++) {
        if (!e[i])
            continue;
        if (!all) {
            if (items[i].d.allowed)
                items[i].d.remaining++;
            continue;
        }
        e[i]->unsent_cur++;
        dirty_add(b, e[i]);
        if (up && (e[i]->unsent_cur >= TP_MAX(o->sync_every / 10, 1) ||
                   now - e[i]->last_sync >= o->sync_interval_us))
            start_sync(e[i]);
    }
    arm(b);
    return all;
}

size_t tp_rl_batch_count(const struct tp_rl_batch *b)
{
    return b->count;
}
