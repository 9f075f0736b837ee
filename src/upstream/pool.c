/*
 * Upstream connections and the per-worker keep-alive pools. Pools are keyed by the target's
 * address and owned by the worker, so they survive config reloads; a snapshot's target caches
 * its pool pointer per worker (slot written only by that worker).
 */
#include "http/proxy.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void tp_up_read_cb(evutil_socket_t fd, short what, void *arg);
void tp_up_write_cb(evutil_socket_t fd, short what, void *arg);
void tp_up_timer_cb(evutil_socket_t fd, short what, void *arg);

struct tp_pool *tp_pool_get(struct tp_worker *w, struct tp_target *t)
{
    if (t->pools[w->id])
        return t->pools[w->id];
    struct tp_pool *p;
    for (p = w->pools; p; p = p->next)
        if (p->addrlen == t->addrlen && memcmp(&p->addr, &t->addr, t->addrlen) == 0)
            break;
    if (!p) {
        p = calloc(1, sizeof(*p));
        if (!p)
            return NULL;
        memcpy(&p->addr, &t->addr, t->addrlen);
        p->addrlen = t->addrlen;
        p->health = tp_health_acquire(&t->addr, t->addrlen); /* NULL: not counted */
        p->next = w->pools;
        w->pools = p;
    }
    t->pools[w->id] = p;
    return p;
}

static void pool_unlink(struct tp_upconn *u)
{
    struct tp_pool *p = u->pool;
    for (struct tp_upconn **pp = &p->idle; *pp; pp = &(*pp)->next_idle) {
        if (*pp == u) {
            *pp = u->next_idle;
            p->num_idle--;
            break;
        }
    }
    u->next_idle = NULL;
    u->in_pool = false;
}

struct tp_upconn *tp_pool_take(struct tp_pool *p)
{
    struct tp_upconn *u = p->idle;
    if (!u)
        return NULL;
    p->idle = u->next_idle;
    p->num_idle--;
    u->next_idle = NULL;
    u->in_pool = false;
    u->reused = true;
    tp_deadline_clear(&u->tmo);
    return u;
}

void tp_upconn_close(struct tp_upconn *u)
{
    if (!u)
        return;
    if (u->in_pool)
        pool_unlink(u);
    if (u->pending)
        tp_circuit_connect_end(u->pending);
    event_free(u->rev);
    event_free(u->wev);
    event_free(u->tmo.ev);
    evbuffer_free(u->in);
    evbuffer_free(u->out);
    if (u->fd >= 0) {
        close(u->fd);
        if (u->pool && u->pool->health)
            atomic_fetch_sub_explicit(&u->pool->health->connections, 1, memory_order_relaxed);
    }
    free(u);
}

void tp_pool_put(struct tp_upconn *u, uint32_t max_idle, uint32_t idle_ms)
{
    struct tp_pool *p = u->pool;
    u->client = NULL;
    if (p->num_idle >= max_idle || evbuffer_get_length(u->in) || evbuffer_get_length(u->out)) {
        tp_upconn_close(u);
        return;
    }
    /* idle: watch for the upstream closing (or sending garbage) and for the idle timeout */
    event_del(u->wev);
    u->write_on = false;
    if (!u->read_on) {
        event_add(u->rev, NULL);
        u->read_on = true;
    }
    tp_deadline_set(&u->tmo, TP_T_POOL_IDLE, idle_ms);
    u->next_idle = p->idle;
    p->idle = u;
    p->num_idle++;
    u->in_pool = true;
}

void tp_pool_free_all(struct tp_worker *w)
{
    struct tp_pool *p = w->pools;
    while (p) {
        while (p->idle)
            tp_upconn_close(p->idle);
        struct tp_pool *next = p->next;
        tp_health_release(p->health);
        free(p);
        p = next;
    }
    w->pools = NULL;
}

int tp_upconn_connect(struct tp_worker *w, struct tp_pool *p, struct tp_upconn **out)
{
    int fd = socket(p->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return TP_EIO;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (const struct sockaddr *)&p->addr, p->addrlen) < 0 && errno != EINPROGRESS) {
        close(fd);
        return TP_EIO;
    }
    struct tp_upconn *u = calloc(1, sizeof(*u));
    if (!u) {
        close(fd);
        return TP_ENOMEM;
    }
    u->fd = fd;
    u->w = w;
    u->pool = p;
    if (p->health)
        atomic_fetch_add_explicit(&p->health->connections, 1, memory_order_relaxed);
    u->rev = event_new(w->base, fd, EV_READ | EV_PERSIST, tp_up_read_cb, u);
    u->wev = event_new(w->base, fd, EV_WRITE | EV_PERSIST, tp_up_write_cb, u);
    u->tmo.ev = evtimer_new(w->base, tp_up_timer_cb, u);
    u->in = evbuffer_new();
    u->out = evbuffer_new();
    if (!u->rev || !u->wev || !u->tmo.ev || !u->in || !u->out) {
        tp_upconn_close(u);
        return TP_ENOMEM;
    }
    *out = u;
    return 0;
}
