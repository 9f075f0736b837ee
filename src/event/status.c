/*
 * The status endpoint: GET /status → JSON; with metrics (src/metrics) also GET /metrics
 * (Prometheus text), GET /status/latency and GET /status/usage (JSON). One request per
 * connection (Connection: close), requests parsed with the same strict parser as the proxy, at
 * most 8 KiB of head and 2 s to send it. Answers are written as the client reads them (a large
 * /metrics does not block the main thread), with 30 s to take the whole answer.
 */
#include "turnpike/status.h"
#include "turnpike/health.h"
#include "turnpike/circuit.h"
#include <time.h>
#include "turnpike/http.h"
#include "turnpike/log.h"
#include "turnpike/logsink.h"
#include "turnpike/metrics.h"

#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STATUS_HEAD_MAX 8192

struct status_conn {
    struct tp_status_server *srv;
    int fd;
    struct event *ev;
    char buf[STATUS_HEAD_MAX];
    size_t len;
    struct status_conn *next;
    struct tp_strbuf out;         /* the answer, written from `off` as the socket takes it */
    size_t off;
};

struct tp_status_server {
    struct event_base *base;
    int fd;
    struct event *accept_ev;
    struct tp_snapshot *const *live;
    struct status_conn *conns;
    struct tp_metrics *metrics;   /* NULL: /metrics and /status/{latency,usage} answer 404 */
};

static void json_key_str(struct tp_strbuf *b, const char *key, const char *v, bool comma)
{
    if (comma)
        tp_strbuf_append(b, ",", 1);
    tp_strbuf_append(b, "\"", 1);
    tp_strbuf_puts(b, key);
    tp_strbuf_puts(b, "\":\"");
    tp_strbuf_json_str(b, v, strlen(v));
    tp_strbuf_append(b, "\"", 1);
}

static void json_key_num(struct tp_strbuf *b, const char *key, unsigned long long v)
{
    tp_strbuf_puts(b, ",\"");
    tp_strbuf_puts(b, key);
    tp_strbuf_puts(b, "\":");
    tp_strbuf_putu(b, v);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *health_word(const struct tp_upstream *u, const struct tp_target *t)
{
    if (!t->health || !u->healthchecks)
        return "untracked";
    return tp_health_up(t->health) ? "healthy" : "unhealthy";
}

int tp_status_json(const struct tp_snapshot *snap, struct tp_strbuf *b)
{
    static const char *const algorithms[] = {"round-robin", "weighted-round-robin",
                                             "least-connections", "consistent-hashing",
                                             "random-two-choices"};
    tp_strbuf_puts(b, "{\"generation\":");
    tp_strbuf_putu(b, snap->generation);
    tp_strbuf_puts(b, ",\"upstreams\":[");
    for (size_t i = 0; i < snap->num_upstreams; i++) {
        const struct tp_upstream *u = &snap->upstreams[i];
        tp_strbuf_puts(b, i ? ",{" : "{");
        json_key_str(b, "name", u->name, false);
        json_key_str(b, "algorithm",
                     (size_t)u->algorithm < TP_ARRAY_LEN(algorithms) ? algorithms[u->algorithm]
                                                                     : "other",
                     true);
        tp_strbuf_puts(b, ",\"targets\":[");
        for (size_t j = 0; j < u->num_targets; j++) {
            const struct tp_target *t = &u->targets[j];
            tp_strbuf_puts(b, j ? ",{" : "{");
            json_key_str(b, "target", t->name, false);
            json_key_str(b, "address", t->addr_text, true);
            json_key_num(b, "weight", t->weight);
            json_key_str(b, "health", health_word(u, t), true);
            json_key_num(b, "connections",
                         t->health ? (unsigned)TP_MAX(0, atomic_load(&t->health->connections))
                                   : 0);
            int active = atomic_load_explicit(&((struct tp_target *)t)->active,
                                              memory_order_relaxed);
            json_key_num(b, "in_flight", active > 0 ? (unsigned)active : 0);
            json_key_num(b, "ejections",
                         t->health ? atomic_load(&((struct tp_health *)t->health)->ejections) : 0);
            if (t->circuit) {
                json_key_str(b, "circuit", tp_circuit_state_name(t->circuit, mono_ms()), true);
                json_key_num(b, "pending_connects", tp_circuit_pending(t->circuit));
            }
            tp_strbuf_append(b, "}", 1);
        }
        tp_strbuf_puts(b, "]}");
    }
    tp_strbuf_puts(b, "],\"services\":[");
    for (size_t i = 0; i < snap->num_services; i++) {
        const struct tp_service *svc = &snap->services[i];
        tp_strbuf_puts(b, i ? ",{" : "{");
        json_key_str(b, "name", svc->conf->name, false);
        json_key_str(b, "upstream", svc->upstream->name, true);
        if (svc->circuit) {
            json_key_str(b, "circuit", tp_circuit_state_name(svc->circuit, mono_ms()), true);
            json_key_num(b, "in_flight", tp_circuit_in_flight(svc->circuit));
        }
        tp_strbuf_append(b, "}", 1);
    }
    tp_strbuf_puts(b, "]");
    tp_observe_status_json(b); /* "logs" and "tracing" counters */
    return tp_strbuf_puts(b, "}");
}

static void conn_close(struct status_conn *c)
{
    for (struct status_conn **pp = &c->srv->conns; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    if (c->ev)
        event_free(c->ev);
    close(c->fd);
    tp_strbuf_free(&c->out);
    free(c);
}

/* Write what the socket takes. true when the whole answer is out (or the client is gone). */
static bool flush_answer(struct status_conn *c)
{
    while (c->off < c->out.len) {
        ssize_t n = write(c->fd, c->out.ptr + c->off, c->out.len - c->off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return false;
        if (n <= 0)
            return true;
        c->off += (size_t)n;
    }
    return true;
}

static void write_cb(evutil_socket_t fd, short what, void *arg)
{
    struct status_conn *c = arg;
    if ((what & EV_TIMEOUT) || flush_answer(c))
        conn_close(c);
}

/* Queue the answer (head, then body unless head_only) in c->out. */
static void answer_type(struct status_conn *c, int status, const char *ctype, const char *body,
                        size_t blen, bool head_only)
{
    struct tp_strbuf *b = &c->out;
    char num[20];
    b->max = 1u << 30;
    b->len = 0;
    int rc = tp_strbuf_reserve(b, 256 + (head_only ? 0 : blen));
    rc = rc ? rc : tp_strbuf_puts(b, "HTTP/1.1 ");
    rc = rc ? rc : tp_strbuf_putu(b, (unsigned)status);
    rc = rc ? rc : tp_strbuf_append(b, " ", 1);
    rc = rc ? rc : tp_strbuf_puts(b, tp_http_reason(status));
    rc = rc ? rc : tp_strbuf_puts(b, "\r\nContent-Type: ");
    rc = rc ? rc : tp_strbuf_puts(b, ctype);
    rc = rc ? rc : tp_strbuf_puts(b, "\r\nCache-Control: no-store\r\nConnection: close\r\n"
                                     "Content-Length: ");
    rc = rc ? rc : tp_strbuf_append(b, num, tp_fmt_u64(num, blen));
    rc = rc ? rc : tp_strbuf_puts(b, "\r\n\r\n");
    if (!head_only) /* HEAD: the same head, no body (RFC 9110 §9.3.2) */
        rc = rc ? rc : tp_strbuf_append(b, body, blen);
    if (rc)
        b->len = 0; /* no memory for it: close without an answer */
}

static void answer(struct status_conn *c, int status, const char *body, size_t blen,
                   bool head)
{
    answer_type(c, status, "application/json", body, blen, head);
}

/* A document built by fn into a buffer of at most 256 MiB, or a 500. */
static void answer_doc(struct status_conn *c, const char *ctype, bool head,
                       int (*fn)(struct tp_metrics *, const struct tp_snapshot *,
                                 struct tp_strbuf *))
{
    static const char too_large[] = "{\"message\":\"document too large\"}\n";
    struct tp_strbuf b = {.max = 1u << 28};
    int rc = fn(c->srv->metrics, *c->srv->live, &b);
    if (rc == 0 && strcmp(ctype, "application/json") == 0) /* JSON documents end a line */
        rc = tp_strbuf_append(&b, "\n", 1);
    if (rc == 0)
        answer_type(c, 200, ctype, b.ptr ? b.ptr : "", b.len, head);
    else
        answer(c, 500, too_large, sizeof(too_large) - 1, head);
    tp_strbuf_free(&b);
}

/* /metrics, /status/latency, /status/usage; false when path is none of them. */
static bool metrics_route(struct status_conn *c, struct tp_slice path, bool head)
{
    static const char prom_type[] = "text/plain; version=0.0.4; charset=utf-8";
    const struct tp_conf_metrics *mc = &(*c->srv->live)->config->metrics;
    bool prom = path.len == 8 && memcmp(path.ptr, "/metrics", 8) == 0;
    bool lat = path.len == 15 && memcmp(path.ptr, "/status/latency", 15) == 0;
    bool usage = path.len == 13 && memcmp(path.ptr, "/status/usage", 13) == 0;
    if (!prom && !lat && !usage)
        return false;
    if (!c->srv->metrics || !mc->enabled) {
        static const char off[] = "{\"message\":\"metrics are off (metrics.enabled)\"}\n";
        answer(c, 404, off, sizeof(off) - 1, head);
    } else if (lat && !mc->latency_window_ms) {
        static const char off[] = "{\"message\":\"percentiles are off (metrics.latency_window: "
                                  "0)\"}\n";
        answer(c, 404, off, sizeof(off) - 1, head);
    } else {
        answer_doc(c, prom ? prom_type : "application/json", head,
                   prom ? tp_metrics_prometheus : lat ? tp_metrics_latency_json
                                                      : tp_metrics_usage_json);
    }
    return true;
}

static void conn_cb(evutil_socket_t fd, short what, void *arg)
{
    struct status_conn *c = arg;
    if (what & EV_TIMEOUT) {
        conn_close(c);
        return;
    }
    ssize_t n = read(fd, c->buf + c->len, sizeof(c->buf) - c->len);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_close(c);
        return;
    }
    c->len += (size_t)n;
    struct tp_http_header headers[64];
    struct tp_http_message msg = {.headers = headers};
    struct tp_http_limits lim = {STATUS_HEAD_MAX, 64, 2048, STATUS_HEAD_MAX};
    int status = 400;
    int rc = tp_http_parse_request(c->buf, c->len, &msg, &lim, &status);
    if (rc == TP_EAGAIN && c->len < sizeof(c->buf))
        return;
    bool head = rc >= 0 && TP_SLICE_IEQ(msg.method, "HEAD");
    if (rc < 0) {
        static const char bad[] = "{\"message\":\"malformed request\"}\n";
        answer(c, rc == TP_EAGAIN ? 431 : status, bad, sizeof(bad) - 1, false);
    } else if (!TP_SLICE_IEQ(msg.method, "GET") && !head) {
        static const char no[] = "{\"message\":\"method not allowed\"}\n";
        answer(c, 405, no, sizeof(no) - 1, false);
    } else if (msg.path.len == 7 && memcmp(msg.path.ptr, "/status", 7) == 0) {
        struct tp_strbuf b = {.max = 1u << 24};
        int jr = tp_status_json(*c->srv->live, &b);
        if (jr == 0 && tp_strbuf_append(&b, "\n", 1) == 0)
            answer(c, 200, b.ptr, b.len, head);
        else
            answer(c, 500, "{\"message\":\"status too large\"}\n", 31, head);
        tp_strbuf_free(&b);
    } else if (!metrics_route(c, msg.path, head)) {
        static const char nf[] = "{\"message\":\"not found\"}\n";
        answer(c, 404, nf, sizeof(nf) - 1, head);
    }
    /* from now on the connection only writes: swap the read event for a write event */
    event_free(c->ev);
    c->ev = NULL;
    if (flush_answer(c)) {
        conn_close(c);
        return;
    }
    struct timeval tv = {30, 0};
    c->ev = event_new(c->srv->base, c->fd, EV_WRITE | EV_PERSIST, write_cb, c);
    if (!c->ev || event_add(c->ev, &tv) != 0)
        conn_close(c);
}

static void accept_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tp_status_server *s = arg;
    int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0)
        return;
    struct status_conn *c = calloc(1, sizeof(*c));
    if (c)
        c->ev = event_new(s->base, cfd, EV_READ | EV_PERSIST, conn_cb, c);
    struct timeval tv = {2, 0};
    if (!c || !c->ev || event_add(c->ev, &tv) != 0) {
        if (c && c->ev)
            event_free(c->ev);
        free(c);
        close(cfd);
        return;
    }
    c->srv = s;
    c->fd = cfd;
    c->next = s->conns;
    s->conns = c;
}

struct tp_status_server *tp_status_start(struct event_base *base, const struct tp_conf_listen *l,
                                         struct tp_snapshot *const *live)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)l->port);
    if (getaddrinfo(l->host, port, &hints, &res) != 0 || !res) {
        tp_log(TP_LOG_ERROR, "status_listen %s:%u: cannot resolve", l->host, l->port);
        return NULL;
    }
    int one = 1;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 64) < 0) {
        tp_log(TP_LOG_ERROR, "status_listen %s:%u: %s", l->host, l->port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return NULL;
    }
    freeaddrinfo(res);
    struct tp_status_server *s = calloc(1, sizeof(*s));
    if (s) {
        s->base = base;
        s->fd = fd;
        s->live = live;
        s->accept_ev = event_new(base, fd, EV_READ | EV_PERSIST, accept_cb, s);
    }
    if (!s || !s->accept_ev || event_add(s->accept_ev, NULL) != 0) {
        if (s && s->accept_ev)
            event_free(s->accept_ev);
        free(s);
        close(fd);
        return NULL;
    }
    return s;
}

void tp_status_set_metrics(struct tp_status_server *s, struct tp_metrics *m)
{
    if (s)
        s->metrics = m;
}

void tp_status_stop(struct tp_status_server *s)
{
    if (!s)
        return;
    while (s->conns)
        conn_close(s->conns);
    event_free(s->accept_ev);
    close(s->fd);
    free(s);
}
