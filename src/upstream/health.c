/*
 * Target health: the process-wide registry, passive outcome tracking (workers, atomics only)
 * and the active checker (probes on the main thread's event loop, once per process).
 *
 * Active HTTP probe: connect, "GET <http_path> HTTP/1.1" with the target's Host and
 * Connection: close, read the status line, compare it with healthy_statuses. TCP probe: a
 * completed connect is a success. Every probe has its own timeout; the next probe of a target
 * starts interval ± 10% later so targets and processes do not probe in lockstep.
 */
#include "turnpike/health.h"
#include "turnpike/log.h"
#include "turnpike/snapshot.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define REGISTRY_BUCKETS 256
#define MAX_EJECTION_FACTOR 16

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tp_health *registry[REGISTRY_BUCKETS];

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static unsigned addr_bucket(const struct sockaddr_storage *a, socklen_t len)
{
    const unsigned char *p = (const unsigned char *)a;
    unsigned h = 2166136261u;
    for (socklen_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 16777619u;
    return h % REGISTRY_BUCKETS;
}

struct tp_health *tp_health_acquire(const struct sockaddr_storage *addr, socklen_t len)
{
    unsigned b = addr_bucket(addr, len);
    pthread_mutex_lock(&registry_lock);
    struct tp_health *h;
    for (h = registry[b]; h; h = h->next)
        if (h->addrlen == len && memcmp(&h->addr, addr, len) == 0)
            break;
    if (h) {
        atomic_fetch_add(&h->refs, 1);
    } else if ((h = calloc(1, sizeof(*h))) != NULL) {
        atomic_init(&h->up, true);
        atomic_init(&h->refs, 1);
        memcpy(&h->addr, addr, len);
        h->addrlen = len;
        h->next = registry[b];
        registry[b] = h;
    }
    pthread_mutex_unlock(&registry_lock);
    return h;
}

void tp_health_release(struct tp_health *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&registry_lock);
    if (atomic_fetch_sub(&h->refs, 1) == 1) {
        for (struct tp_health **pp = &registry[addr_bucket(&h->addr, h->addrlen)]; *pp;
             pp = &(*pp)->next) {
            if (*pp == h) {
                *pp = h->next;
                break;
            }
        }
        free(h);
    }
    pthread_mutex_unlock(&registry_lock);
}

static bool status_in(int status, const int *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (list[i] == status)
            return true;
    return false;
}

void tp_health_passive(struct tp_health *h, const struct tp_conf_healthchecks *hc, int status)
{
    if (!h || !hc || hc->passive_threshold == 0)
        return;
    bool failure = status == 0 || status_in(status, hc->unhealthy_statuses,
                                            hc->num_unhealthy_statuses);
    if (!failure) {
        if (atomic_load_explicit(&h->failures, memory_order_relaxed))
            atomic_store_explicit(&h->failures, 0, memory_order_relaxed);
        return;
    }
    unsigned f = atomic_fetch_add_explicit(&h->failures, 1, memory_order_relaxed) + 1;
    if (f < hc->passive_threshold)
        return;
    bool was_up = true;
    /* one worker wins the transition: it alone sets the ejection time */
    if (!atomic_compare_exchange_strong(&h->up, &was_up, false))
        return;
    unsigned n = atomic_fetch_add(&h->ejections, 1);
    uint64_t factor = n < 4 ? (1u << n) : MAX_EJECTION_FACTOR;
    atomic_store(&h->ejected_until_ms, now_ms() + hc->ejection_ms * factor);
    atomic_store(&h->successes, 0);
}

void tp_health_active(struct tp_health *h, const struct tp_conf_healthchecks *hc, bool ok)
{
    if (ok) {
        atomic_store(&h->failures, 0);
        unsigned s = atomic_fetch_add(&h->successes, 1) + 1;
        if (!atomic_load(&h->up) && s >= hc->healthy_threshold) {
            atomic_store(&h->ejected_until_ms, 0);
            atomic_store(&h->ejections, 0);
            atomic_store(&h->up, true);
        }
        return;
    }
    atomic_store(&h->successes, 0);
    unsigned f = atomic_fetch_add(&h->failures, 1) + 1;
    if (atomic_load(&h->up) && f >= hc->unhealthy_threshold) {
        atomic_store(&h->ejected_until_ms, 0); /* down until an active check says otherwise */
        atomic_store(&h->up, false);
    }
}

void tp_health_sweep(uint64_t now)
{
    pthread_mutex_lock(&registry_lock);
    for (size_t b = 0; b < REGISTRY_BUCKETS; b++) {
        for (struct tp_health *h = registry[b]; h; h = h->next) {
            uint64_t until = atomic_load(&h->ejected_until_ms);
            if (!atomic_load(&h->up) && until && until <= now) {
                atomic_store(&h->failures, 0);
                atomic_store(&h->ejected_until_ms, 0);
                atomic_store(&h->up, true);
            }
        }
    }
    pthread_mutex_unlock(&registry_lock);
}

/* ---------------------------------------------------------------------------------------- */
/* active checker                                                                           */

struct probe {
    struct tp_health_checker *hc;
    const struct tp_conf_healthchecks *conf;
    struct tp_target *target;
    struct event *timer;  /* next probe, then the probe's timeout */
    struct event *io;
    int fd;
    bool running;
    char buf[64];
    size_t len;
};

struct tp_health_checker {
    struct event_base *base;
    struct tp_snapshot *snap;
    struct probe *probes;
    size_t num_probes;
    struct event *sweep;
};

static uint32_t jitter(uint32_t interval_ms)
{
    uint32_t r = 0;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != sizeof(r))
        r = (uint32_t)now_ms() * 2654435761u;
    uint32_t spread = interval_ms / 5 + 1; /* ±10% */
    return interval_ms - interval_ms / 10 + r % spread;
}

static void schedule(struct probe *p, uint32_t ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(p->timer, &tv);
}

static void probe_finish(struct probe *p, bool ok)
{
    if (p->io) {
        event_free(p->io);
        p->io = NULL;
    }
    if (p->fd >= 0) {
        close(p->fd);
        p->fd = -1;
    }
    p->running = false;
    bool was_up = tp_health_up(p->target->health);
    tp_health_active(p->target->health, p->conf, ok);
    bool up = tp_health_up(p->target->health);
    if (was_up != up)
        tp_log(TP_LOG_WARN, "target %s is now %s (active check)", p->target->name,
               up ? "healthy" : "unhealthy");
    schedule(p, jitter(p->conf->active_interval_ms));
}

/* The status line is in: "HTTP/1.x NNN". */
static int status_of(const char *b, size_t len)
{
    if (len < 12 || memcmp(b, "HTTP/1.", 7) != 0 || b[8] != ' ')
        return -1;
    int s = 0;
    for (int i = 9; i < 12; i++) {
        if (b[i] < '0' || b[i] > '9')
            return -1;
        s = s * 10 + (b[i] - '0');
    }
    return s;
}

static void probe_io(evutil_socket_t fd, short what, void *arg)
{
    struct probe *p = arg;
    if (what & EV_WRITE) { /* connected (or failed) */
        int err = 0;
        socklen_t l = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0 || err) {
            probe_finish(p, false);
            return;
        }
        if (p->conf->active_tcp) {
            probe_finish(p, true);
            return;
        }
        struct tp_strbuf req = {.max = 4096};
        tp_strbuf_puts(&req, "GET ");
        tp_strbuf_puts(&req, p->conf->active_http_path ? p->conf->active_http_path : "/");
        tp_strbuf_puts(&req, " HTTP/1.1\r\nHost: ");
        tp_strbuf_puts(&req, p->conf->active_host ? p->conf->active_host
                                                  : p->target->host_header);
        tp_strbuf_puts(&req, "\r\nUser-Agent: turnpike-healthcheck\r\nConnection: close\r\n\r\n");
        ssize_t n = req.ptr ? write(fd, req.ptr, req.len) : -1;
        bool sent = n == (ssize_t)req.len;
        tp_strbuf_free(&req);
        if (!sent) {
            probe_finish(p, false);
            return;
        }
        event_free(p->io);
        p->io = event_new(p->hc->base, fd, EV_READ | EV_PERSIST, probe_io, p);
        if (!p->io || event_add(p->io, NULL) != 0)
            probe_finish(p, false);
        return;
    }
    ssize_t n = read(fd, p->buf + p->len, sizeof(p->buf) - p->len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n > 0)
        p->len += (size_t)n;
    int status = status_of(p->buf, p->len);
    if (status < 0 && n > 0 && p->len < 12)
        return; /* more of the status line to come */
    probe_finish(p, status >= 0 && status_in(status, p->conf->healthy_statuses,
                                             p->conf->num_healthy_statuses));
}

static void probe_timer(evutil_socket_t fd, short what, void *arg)
{
    struct probe *p = arg;
    if (p->running) { /* the probe's timeout */
        probe_finish(p, false);
        return;
    }
    p->len = 0;
    p->fd = socket(p->target->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (p->fd < 0) {
        probe_finish(p, false);
        return;
    }
    p->running = true;
    if (connect(p->fd, (struct sockaddr *)&p->target->addr, p->target->addrlen) < 0 &&
        errno != EINPROGRESS) {
        probe_finish(p, false);
        return;
    }
    p->io = event_new(p->hc->base, p->fd, EV_WRITE, probe_io, p);
    if (!p->io || event_add(p->io, NULL) != 0) {
        probe_finish(p, false);
        return;
    }
    schedule(p, p->conf->active_timeout_ms);
}

static void cancel_probes(struct tp_health_checker *hc)
{
    for (size_t i = 0; i < hc->num_probes; i++) {
        struct probe *p = &hc->probes[i];
        if (p->io)
            event_free(p->io);
        if (p->timer)
            event_free(p->timer);
        if (p->fd >= 0)
            close(p->fd);
    }
    free(hc->probes);
    hc->probes = NULL;
    hc->num_probes = 0;
    tp_snapshot_unref(hc->snap);
    hc->snap = NULL;
}

static void sweep_cb(evutil_socket_t fd, short what, void *arg)
{
    tp_health_sweep(now_ms());
}

struct tp_health_checker *tp_health_checker_new(struct event_base *base)
{
    struct tp_health_checker *hc = calloc(1, sizeof(*hc));
    if (!hc)
        return NULL;
    hc->base = base;
    hc->sweep = event_new(base, -1, EV_PERSIST, sweep_cb, hc);
    struct timeval tv = {0, 100 * 1000}; /* passive ejections end within 100 ms of their time */
    if (!hc->sweep || event_add(hc->sweep, &tv) != 0) {
        if (hc->sweep)
            event_free(hc->sweep);
        free(hc);
        return NULL;
    }
    return hc;
}

void tp_health_checker_update(struct tp_health_checker *hc, struct tp_snapshot *snap)
{
    cancel_probes(hc);
    size_t n = 0;
    for (size_t i = 0; i < snap->num_upstreams; i++) {
        const struct tp_conf_healthchecks *c = snap->upstreams[i].healthchecks;
        if (c && c->active_interval_ms)
            n += snap->upstreams[i].num_targets;
    }
    if (n == 0)
        return;
    hc->probes = calloc(n, sizeof(*hc->probes));
    if (!hc->probes) {
        tp_log(TP_LOG_ERROR, "health checks: out of memory");
        return;
    }
    tp_snapshot_ref(snap);
    hc->snap = snap;
    for (size_t i = 0; i < snap->num_upstreams; i++) {
        struct tp_upstream *u = &snap->upstreams[i];
        if (!u->healthchecks || !u->healthchecks->active_interval_ms)
            continue;
        for (size_t j = 0; j < u->num_targets; j++) {
            struct probe *p = &hc->probes[hc->num_probes++];
            p->hc = hc;
            p->conf = u->healthchecks;
            p->target = &u->targets[j];
            p->fd = -1;
            p->timer = evtimer_new(hc->base, probe_timer, p);
            if (p->timer && p->target->health) /* first probe anywhere in the interval */
                schedule(p, jitter(p->conf->active_interval_ms) % p->conf->active_interval_ms);
        }
    }
}

void tp_health_checker_free(struct tp_health_checker *hc)
{
    if (!hc)
        return;
    cancel_probes(hc);
    if (hc->sweep)
        event_free(hc->sweep);
    free(hc);
}
