/*
 * turnpike — the leaky bucket's release queue (shaper.h).
 */
#include "ratelimit/shaper.h"
#include "ratelimit/algo.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#define SHAPER_KEY "ratelimit:shaper"

struct hold {
    int64_t due;
    struct tp_plugin_wait_list waiters;
};

struct shaper {
    struct hold **heap;
    size_t len, cap;
    struct event *timer;
};

static void heap_swap(struct shaper *s, size_t a, size_t b)
{
    struct hold *t = s->heap[a];
    s->heap[a] = s->heap[b];
    s->heap[b] = t;
}

static void heap_up(struct shaper *s, size_t i)
{
    while (i > 0 && s->heap[(i - 1) / 2]->due > s->heap[i]->due) {
        heap_swap(s, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(struct shaper *s, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < s->len && s->heap[l]->due < s->heap[m]->due)
            m = l;
        if (r < s->len && s->heap[r]->due < s->heap[m]->due)
            m = r;
        if (m == i)
            return;
        heap_swap(s, i, m);
        i = m;
    }
}

static void schedule(struct shaper *s)
{
    if (!s->len) {
        event_del(s->timer);
        return;
    }
    int64_t wait = s->heap[0]->due - tp_rl_now_us();
    if (wait < 0)
        wait = 0;
    struct timeval tv = {(time_t)(wait / TP_RL_US), (suseconds_t)(wait % TP_RL_US)};
    event_add(s->timer, &tv);
}

static void release_due(evutil_socket_t fd, short what, void *arg)
{
    struct shaper *s = arg;
    int64_t now = tp_rl_now_us();
    (void)fd;
    (void)what;
    while (s->len && s->heap[0]->due <= now) {
        struct hold *h = s->heap[0];
        s->heap[0] = s->heap[--s->len];
        heap_down(s, 0);
        tp_plugin_wake_all(&h->waiters); /* resumed from the event loop, after this returns */
        free(h);
    }
    schedule(s);
}

static void shaper_destroy(void *arg)
{
    struct shaper *s = arg;
    for (size_t i = 0; i < s->len; i++) {
        tp_plugin_wake_all(&s->heap[i]->waiters);
        free(s->heap[i]);
    }
    free(s->heap);
    if (s->timer)
        event_free(s->timer);
    free(s);
}

static struct shaper *shaper_get(struct tp_plugin_ctx *ctx)
{
    struct shaper *s = tp_plugin_worker_get(ctx, SHAPER_KEY);
    if (s)
        return s;
    s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->timer = event_new(tp_plugin_event_base(ctx), -1, 0, release_due, s);
    if (!s->timer || tp_plugin_worker_put(ctx, SHAPER_KEY, s, shaper_destroy) != 0) {
        shaper_destroy(s);
        return NULL;
    }
    return s;
}

int tp_rl_shaper_hold(struct tp_plugin_ctx *ctx, int64_t due)
{
    struct shaper *s = shaper_get(ctx);
    if (!s)
        return TP_ENOMEM;
    if (s->len == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        struct hold **h = realloc(s->heap, cap * sizeof(*h));
        if (!h)
            return TP_ENOMEM;
        s->heap = h;
        s->cap = cap;
    }
    struct hold *h = calloc(1, sizeof(*h));
    if (!h)
        return TP_ENOMEM;
    h->due = due;
    if (tp_plugin_wait(ctx, &h->waiters) != 0) {
        free(h);
        return TP_EINVAL;
    }
    s->heap[s->len++] = h;
    heap_up(s, s->len - 1);
    if (s->heap[0] == h)
        schedule(s);
    return 0;
}
