/*
 * Worker threads, listeners, snapshot hand-over and graceful stop.
 *
 * Each worker owns an event_base, one SO_REUSEPORT socket per configured listen address, its
 * client connections and its upstream pools. The main thread talks to a worker only through an
 * eventfd plus two atomics (a pending snapshot reference and the stop flag), so the request
 * path takes no lock.
 */
#include "http/proxy.h"
#include "turnpike/logsink.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

struct tp_server {
    struct tp_worker *workers;
    int nworkers;
    struct tp_metrics *metrics; /* series registry (src/metrics) */
};

uint64_t tp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void tp_deadline_set(struct tp_deadline *d, enum tp_timer_kind kind, uint32_t ms)
{
    d->kind = kind;
    d->due_ms = tp_now_ms() + ms;
    if (d->armed_ms == 0 || d->armed_ms > d->due_ms) {
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        evtimer_add(d->ev, &tv);
        d->armed_ms = d->due_ms;
    }
}

void tp_deadline_clear(struct tp_deadline *d)
{
    d->kind = TP_T_NONE;
}

enum tp_timer_kind tp_deadline_fired(struct tp_deadline *d)
{
    d->armed_ms = 0;
    if (d->kind == TP_T_NONE)
        return TP_T_NONE;
    uint64_t now = tp_now_ms();
    if (now < d->due_ms) {
        uint64_t left = d->due_ms - now;
        struct timeval tv = {(time_t)(left / 1000), (suseconds_t)((left % 1000) * 1000)};
        evtimer_add(d->ev, &tv);
        d->armed_ms = d->due_ms;
        return TP_T_NONE;
    }
    enum tp_timer_kind k = d->kind;
    d->kind = TP_T_NONE;
    return k;
}

uint64_t tp_worker_random(struct tp_worker *w)
{
    /* xorshift128+: fast, per worker, seeded from getrandom(2); ids need uniqueness only */
    uint64_t s1 = w->rng[0];
    const uint64_t s0 = w->rng[1];
    w->rng[0] = s0;
    s1 ^= s1 << 23;
    w->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return w->rng[1] + s0;
}

struct tp_http_header *tp_worker_headers(struct tp_worker *w, size_t n)
{
    if (n > w->scratch_cap) {
        struct tp_http_header *h = realloc(w->scratch_headers, n * sizeof(*h));
        if (!h)
            return NULL;
        w->scratch_headers = h;
        w->scratch_cap = n;
    }
    return w->scratch_headers;
}

struct tp_wsnap *tp_worker_snap_acquire(struct tp_worker *w)
{
    w->cur->users++;
    return w->cur;
}

void tp_worker_snap_release(struct tp_worker *w, struct tp_wsnap *ws)
{
    if (!ws || --ws->users > 0 || ws == w->cur)
        return;
    for (struct tp_wsnap **pp = &w->retired; *pp; pp = &(*pp)->next) {
        if (*pp == ws) {
            *pp = ws->next;
            break;
        }
    }
    tp_snapshot_unref(ws->snap);
    free(ws);
}

static void switch_snapshot(struct tp_worker *w, struct tp_snapshot *snap)
{
    struct tp_wsnap *ws = calloc(1, sizeof(*ws));
    if (!ws) {
        tp_log(TP_LOG_ERROR, "worker %d: out of memory switching config", w->id);
        tp_snapshot_unref(snap);
        return;
    }
    ws->snap = snap;
    struct tp_wsnap *old = w->cur;
    w->cur = ws;
    w->max_conns = snap->config->limits.max_connections / (uint32_t)w->srv->nworkers + 1;
    if (old) {
        if (old->users == 0) {
            tp_snapshot_unref(old->snap);
            free(old);
        } else {
            old->next = w->retired;
            w->retired = old;
        }
    }
}

/* The logs are written by their own thread (src/observe/logsink.c): a worker only copies the
 * line into a bounded queue, and a full queue drops it (counted), never blocks. */
void tp_worker_access_log(struct tp_worker *w, const char *line, size_t len)
{
    (void)w;
    tp_logsink_write(TP_LOGSINK_ACCESS, line, len);
}

void tp_worker_security_log(struct tp_worker *w, const char *line, size_t len)
{
    (void)w;
    tp_logsink_write(TP_LOGSINK_SECURITY, line, len);
}

void *tp_worker_kv_get(struct tp_worker *w, const char *key)
{
    for (struct tp_worker_kv *kv = w->kv; kv; kv = kv->next)
        if (strcmp(kv->key, key) == 0)
            return kv->value;
    return NULL;
}

int tp_worker_kv_put(struct tp_worker *w, const char *key, void *value,
                     void (*destroy)(void *value))
{
    struct tp_worker_kv *kv;
    for (kv = w->kv; kv; kv = kv->next)
        if (strcmp(kv->key, key) == 0)
            break;
    if (kv) {
        if (kv->destroy && kv->value != value)
            kv->destroy(kv->value);
    } else {
        kv = calloc(1, sizeof(*kv));
        if (!kv || !(kv->key = strdup(key))) {
            free(kv);
            return TP_ENOMEM;
        }
        kv->next = w->kv;
        w->kv = kv;
    }
    kv->value = value;
    kv->destroy = destroy;
    return 0;
}

static void kv_free_all(struct tp_worker *w)
{
    while (w->kv) {
        struct tp_worker_kv *kv = w->kv;
        w->kv = kv->next;
        if (kv->destroy)
            kv->destroy(kv->value);
        free(kv->key);
        free(kv);
    }
}

static void set_accepting(struct tp_worker *w, bool on)
{
    if (w->accepting == on)
        return;
    for (size_t i = 0; i < w->num_listeners; i++) {
        if (on)
            event_add(w->listeners[i].ev, NULL);
        else
            event_del(w->listeners[i].ev);
    }
    w->accepting = on;
}

static void maybe_exit(struct tp_worker *w)
{
    if (atomic_load(&w->stop) && w->num_conns == 0)
        event_base_loopexit(w->base, NULL);
}

void tp_worker_conn_closed(struct tp_worker *w)
{
    w->num_conns--;
    tp_metrics_conn_closed(w);
    if (!atomic_load(&w->stop) && !w->accepting && w->num_conns < w->max_conns)
        set_accepting(w, true);
    maybe_exit(w);
}

static void accept_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tp_listener *l = arg;
    struct tp_worker *w = l->w;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        int cfd = accept4(fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                tp_log(TP_LOG_ERROR, "accept: %s", strerror(errno));
            return;
        }
        w->num_conns++;
        tp_metrics_conn_opened(w);
        tp_conn_accept(w, cfd, &peer, l->port);
        if (w->num_conns >= w->max_conns) {
            set_accepting(w, false);
            return;
        }
    }
}

static void grace_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tp_worker *w = arg;
    tp_log(TP_LOG_WARN, "worker %d: grace period over, closing %u connection(s)", w->id,
           w->num_conns);
    event_base_loopexit(w->base, NULL);
}

static void begin_stop(struct tp_worker *w)
{
    set_accepting(w, false);
    for (size_t i = 0; i < w->num_listeners; i++) {
        close(w->listeners[i].fd);
        w->listeners[i].fd = -1;
    }
    uint32_t grace = w->cur->snap->config->limits.grace_period_ms;
    struct timeval tv = {grace / 1000, (grace % 1000) * 1000};
    w->grace_ev = evtimer_new(w->base, grace_cb, w);
    if (w->grace_ev)
        evtimer_add(w->grace_ev, &tv);
    struct tp_conn *c = w->conns;
    while (c) {
        struct tp_conn *next = c->next;
        tp_conn_shutdown(c); /* closes idle connections, marks busy ones to close when done */
        c = next;
    }
    maybe_exit(w);
}

static void notify_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tp_worker *w = arg;
    uint64_t v;
    ssize_t n = read(fd, &v, sizeof(v));
    (void)n;
    struct tp_snapshot *snap = atomic_exchange(&w->pending, NULL);
    if (snap)
        switch_snapshot(w, snap);
    if (atomic_load(&w->stop) && !w->grace_ev)
        begin_stop(w);
}

static void *worker_main(void *arg)
{
    struct tp_worker *w = arg;
    set_accepting(w, true);
    event_base_dispatch(w->base);
    /* forced exit or drained: close whatever is left */
    atomic_store(&w->stop, 1);
    while (w->conns)
        tp_conn_abort(w->conns);
    kv_free_all(w); /* plugin state may hold events of this thread's base */
    return NULL;
}

/*
 * SO_REUSEPORT would let a second turnpike (or anything else with the option) share the port
 * silently, splitting traffic with a stale process. Bind once without it first, as NGINX's
 * plain bind would, so "address already in use" is reported.
 */
static int probe_listener(const struct addrinfo *ai, const struct tp_conf_listen *l)
{
    int one = 1;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return TP_EIO;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (ai->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    int rc = bind(fd, ai->ai_addr, ai->ai_addrlen);
    int err = errno;
    close(fd);
    if (rc < 0) {
        tp_log(TP_LOG_ERROR, "listen %s:%u: %s", l->host, l->port, strerror(err));
        return TP_EIO;
    }
    return 0;
}

static int open_listener(const struct tp_conf_listen *l, bool probe, int *fd_out)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)l->port);
    int rc = getaddrinfo(l->host, port, &hints, &res);
    if (rc != 0 || !res) {
        tp_log(TP_LOG_ERROR, "listen %s:%u: %s", l->host, l->port, gai_strerror(rc));
        return TP_EIO;
    }
    if (probe && probe_listener(res, l) != 0) {
        freeaddrinfo(res);
        return TP_EIO;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (res->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    }
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 4096) < 0) {
        tp_log(TP_LOG_ERROR, "listen %s:%u: %s", l->host, l->port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return TP_EIO;
    }
    freeaddrinfo(res);
    *fd_out = fd;
    return 0;
}

static int worker_init(struct tp_server *srv, struct tp_worker *w, int id,
                       struct tp_snapshot *snap)
{
    const struct tp_config *cfg = snap->config;
    w->id = id;
    w->srv = srv;
    w->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (getrandom(w->rng, sizeof(w->rng), 0) != sizeof(w->rng))
        w->rng[0] = (uint64_t)time(NULL) ^ (uint64_t)id, w->rng[1] = 0x9e3779b97f4a7c15ULL;
    w->base = event_base_new();
    if (!w->base || w->notify_fd < 0)
        return TP_ENOMEM;
    w->notify_ev = event_new(w->base, w->notify_fd, EV_READ | EV_PERSIST, notify_cb, w);
    w->listeners = calloc(cfg->num_listen ? cfg->num_listen : 1, sizeof(*w->listeners));
    if (!w->notify_ev || !w->listeners)
        return TP_ENOMEM;
    event_add(w->notify_ev, NULL);
    for (size_t i = 0; i < cfg->num_listen; i++) {
        struct tp_listener *l = &w->listeners[w->num_listeners];
        if (open_listener(&cfg->listen[i], id == 0, &l->fd) != 0)
            return TP_EIO;
        w->num_listeners++;
        l->port = cfg->listen[i].port;
        l->w = w;
        l->ev = event_new(w->base, l->fd, EV_READ | EV_PERSIST, accept_cb, l);
        if (!l->ev)
            return TP_ENOMEM;
    }
    if (!(w->metrics = tp_metrics_worker_new(srv->metrics, w)))
        return TP_ENOMEM;
    tp_snapshot_ref(snap);
    switch_snapshot(w, snap);
    return 0;
}

static void worker_destroy(struct tp_worker *w)
{
    for (size_t i = 0; i < w->num_listeners; i++) {
        if (w->listeners[i].ev)
            event_free(w->listeners[i].ev);
        if (w->listeners[i].fd >= 0)
            close(w->listeners[i].fd);
    }
    free(w->listeners);
    tp_pool_free_all(w);
    tp_mirror_free_all(w);
    if (w->notify_ev)
        event_free(w->notify_ev);
    if (w->grace_ev)
        event_free(w->grace_ev);
    struct tp_snapshot *p = atomic_exchange(&w->pending, NULL);
    tp_snapshot_unref(p);
    while (w->retired) {
        struct tp_wsnap *ws = w->retired;
        w->retired = ws->next;
        tp_snapshot_unref(ws->snap);
        free(ws);
    }
    if (w->cur) {
        tp_snapshot_unref(w->cur->snap);
        free(w->cur);
    }
    tp_metrics_worker_free(w->metrics); /* its census timer is on the base */
    if (w->base)
        event_base_free(w->base);
    if (w->notify_fd >= 0)
        close(w->notify_fd);
    free(w->scratch_headers);
    tp_strbuf_free(&w->head_scratch);
    tp_strbuf_free(&w->log_scratch);
}

int tp_server_start(struct tp_snapshot *snap, struct tp_server **out)
{
    struct tp_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return TP_ENOMEM;
    srv->nworkers = snap->nworkers;
    srv->workers = calloc((size_t)srv->nworkers, sizeof(*srv->workers));
    int rc = srv->workers ? 0 : TP_ENOMEM;
    if (rc == 0 && !(srv->metrics = tp_metrics_new(srv->nworkers)))
        rc = TP_ENOMEM;
    int started = 0;
    for (int i = 0; rc == 0 && i < srv->nworkers; i++) {
        srv->workers[i].notify_fd = -1;
        rc = worker_init(srv, &srv->workers[i], i, snap);
    }
    for (int i = 0; rc == 0 && i < srv->nworkers; i++) {
        if (pthread_create(&srv->workers[i].thread, NULL, worker_main, &srv->workers[i]) != 0)
            rc = TP_ENOMEM;
        else
            started++;
    }
    if (rc != 0) {
        for (int i = 0; i < started; i++) {
            atomic_store(&srv->workers[i].stop, 1);
            uint64_t one = 1;
            ssize_t n = write(srv->workers[i].notify_fd, &one, sizeof(one));
            (void)n;
            pthread_join(srv->workers[i].thread, NULL);
        }
        started = srv->nworkers;
        for (int i = 0; srv->workers && i < srv->nworkers; i++)
            worker_destroy(&srv->workers[i]);
        free(srv->workers);
        tp_metrics_free(srv->metrics);
        free(srv);
        return rc;
    }
    *out = srv;
    return 0;
}

static void notify(struct tp_worker *w)
{
    uint64_t one = 1;
    ssize_t n = write(w->notify_fd, &one, sizeof(one));
    (void)n;
}

void tp_server_publish(struct tp_server *srv, struct tp_snapshot *snap)
{
    for (int i = 0; i < srv->nworkers; i++) {
        tp_snapshot_ref(snap);
        struct tp_snapshot *old = atomic_exchange(&srv->workers[i].pending, snap);
        tp_snapshot_unref(old); /* a reload the worker had not picked up yet */
        notify(&srv->workers[i]);
    }
}

void tp_server_stop(struct tp_server *srv, uint32_t grace_ms)
{
    (void)grace_ms; /* each worker reads grace_period from its current snapshot */
    for (int i = 0; i < srv->nworkers; i++) {
        atomic_store(&srv->workers[i].stop, 1);
        notify(&srv->workers[i]);
    }
    for (int i = 0; i < srv->nworkers; i++)
        pthread_join(srv->workers[i].thread, NULL);
}

void tp_server_free(struct tp_server *srv)
{
    if (!srv)
        return;
    for (int i = 0; i < srv->nworkers; i++)
        worker_destroy(&srv->workers[i]);
    free(srv->workers);
    tp_metrics_free(srv->metrics);
    free(srv);
}

struct tp_metrics *tp_server_metrics(struct tp_server *srv)
{
    return srv->metrics;
}
