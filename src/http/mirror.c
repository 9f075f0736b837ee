/*
 * Request mirroring (issue 3): a copy of each request of a route is sent to a shadow service;
 * its answer is read and discarded. The mirror is fire-and-forget: it has its own connection,
 * buffer and timeout, owned by the worker, so the shadow's slowness or failure never reaches
 * the client. Bodies are copied as they are relayed, up to TP_MIRROR_BODY_MAX; a larger body
 * abandons that mirror (the shadow must not receive a truncated request).
 */
#include "http/proxy.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct tp_mirror {
    struct tp_worker *w;
    int fd;
    struct event *ev;      /* EV_READ|EV_WRITE as needed */
    struct event *timer;   /* the whole mirror's deadline */
    struct evbuffer *out;
    size_t body_left;      /* bytes still allowed in out for the body */
    uint32_t read_ms;      /* the shadow service's read_timeout, once connected */
    bool connected, sending_done, writing;
    struct tp_mirror *prev, *next;
};

static void mirror_free(struct tp_mirror *m)
{
    struct tp_worker *w = m->w;
    if (m->prev)
        m->prev->next = m->next;
    else
        w->mirrors = m->next;
    if (m->next)
        m->next->prev = m->prev;
    w->num_mirrors--;
    if (m->ev)
        event_free(m->ev);
    if (m->timer)
        event_free(m->timer);
    if (m->out)
        evbuffer_free(m->out);
    if (m->fd >= 0)
        close(m->fd);
    free(m);
}

/*
 * Want writes while the connect is pending, and once the whole request is buffered (it is only
 * sent complete: a body that turns out too big must not leave a truncated request at the
 * shadow); reads always.
 */
static void mirror_interest(struct tp_mirror *m)
{
    bool want_write = !m->connected || (m->sending_done && evbuffer_get_length(m->out) > 0);
    if (want_write == m->writing)
        return;
    event_del(m->ev);
    event_assign(m->ev, m->w->base, m->fd, EV_READ | EV_PERSIST | (want_write ? EV_WRITE : 0),
                 event_get_callback(m->ev), m);
    event_add(m->ev, NULL);
    m->writing = want_write;
}

static void mirror_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tp_mirror *m = arg;
    if (what & EV_WRITE) {
        if (!m->connected) {
            int err = 0;
            socklen_t l = sizeof(err);
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0 || err) {
                mirror_free(m);
                return;
            }
            m->connected = true;
            struct timeval tv = {m->read_ms / 1000, (m->read_ms % 1000) * 1000};
            evtimer_add(m->timer, &tv);
        }
        if (m->sending_done && evbuffer_get_length(m->out) &&
            evbuffer_write(m->out, fd) < 0 && errno != EAGAIN) {
            mirror_free(m);
            return;
        }
    }
    if (what & EV_READ) {
        char sink[16384];
        ssize_t n = read(fd, sink, sizeof(sink)); /* the shadow's answer is discarded */
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            mirror_free(m);
            return;
        }
    }
    mirror_interest(m);
}

static void mirror_timeout(evutil_socket_t fd, short what, void *arg)
{
    mirror_free(arg);
}

/*
 * The primary head with the shadow target's Host and "Connection: close" (the shadow closes
 * after answering, which ends the mirror).
 */
static int mirror_head(struct tp_mirror *m, const struct tp_request *req,
                       const struct tp_target *t)
{
    const char *h = req->head.ptr;
    size_t len = req->head.len;
    if (len < 4)
        return TP_EINVAL;
    size_t host_end = req->host_off + req->host_len;
    int rc = 0;
    if (req->host_len) {
        rc |= evbuffer_add(m->out, h, req->host_off);
        rc |= evbuffer_add(m->out, t->host_header, strlen(t->host_header));
        rc |= evbuffer_add(m->out, h + host_end, len - 2 - host_end);
    } else {
        rc |= evbuffer_add(m->out, h, len - 2);
    }
    rc |= evbuffer_add(m->out, "Connection: close\r\n\r\n", 21);
    return rc ? TP_ENOMEM : 0;
}

struct tp_mirror *tp_mirror_start(struct tp_conn *c, struct tp_service *svc)
{
    struct tp_worker *w = c->w;
    const struct tp_request *req = &c->req;
    if (w->num_mirrors >= TP_MIRROR_MAX || !svc)
        return NULL; /* shed mirrors rather than memory */
    struct tp_target *t = tp_upstream_pick(svc->upstream, w->id, 0, 0, false);
    if (!t)
        return NULL;
    struct tp_mirror *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->w = w;
    m->fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    m->next = w->mirrors;
    if (w->mirrors)
        w->mirrors->prev = m;
    w->mirrors = m;
    w->num_mirrors++;
    m->body_left = TP_MIRROR_BODY_MAX;
    m->out = evbuffer_new();
    m->ev = m->fd >= 0 ? event_new(w->base, m->fd, EV_READ | EV_WRITE | EV_PERSIST, mirror_cb, m)
                       : NULL;
    m->timer = evtimer_new(w->base, mirror_timeout, m);
    if (!m->out || !m->ev || !m->timer || mirror_head(m, req, t) != 0 ||
        (connect(m->fd, (struct sockaddr *)&t->addr, t->addrlen) < 0 && errno != EINPROGRESS)) {
        mirror_free(m);
        return NULL;
    }
    int one = 1;
    setsockopt(m->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* the shadow's own timeouts: connect_timeout to connect, then read_timeout for the rest */
    m->read_ms = svc->conf->read_timeout_ms;
    uint32_t ms = svc->conf->connect_timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_add(m->ev, NULL);
    m->writing = true;
    evtimer_add(m->timer, &tv);
    return m;
}

void tp_mirror_body(struct tp_mirror **mp, struct evbuffer *src, size_t from, size_t n)
{
    struct tp_mirror *m = *mp;
    if (!m || n == 0)
        return;
    if (n > m->body_left) { /* too big to copy: the shadow gets nothing rather than a part */
        mirror_free(m);
        *mp = NULL;
        return;
    }
    struct evbuffer_ptr pos;
    struct evbuffer_iovec v[8];
    if (evbuffer_ptr_set(src, &pos, from, EVBUFFER_PTR_SET) != 0) {
        mirror_free(m);
        *mp = NULL;
        return;
    }
    size_t left = n;
    while (left) {
        int nv = evbuffer_peek(src, (ev_ssize_t)left, &pos, v, 8);
        if (nv <= 0)
            break;
        for (int i = 0; i < nv && left; i++) {
            size_t k = TP_MIN(left, v[i].iov_len);
            evbuffer_add(m->out, v[i].iov_base, k);
            left -= k;
            evbuffer_ptr_set(src, &pos, k, EVBUFFER_PTR_ADD);
        }
        if (nv < 8)
            break;
    }
    m->body_left -= n;
    mirror_interest(m);
}

void tp_mirror_detach(struct tp_mirror **mp, bool complete)
{
    struct tp_mirror *m = *mp;
    *mp = NULL;
    if (!m)
        return;
    if (!complete) { /* the client request ended early: never send a truncated copy */
        mirror_free(m);
        return;
    }
    m->sending_done = true;
    mirror_interest(m);
}

void tp_mirror_free_all(struct tp_worker *w)
{
    while (w->mirrors)
        mirror_free(w->mirrors);
}
