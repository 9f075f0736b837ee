/*
 * Span export over OTLP/HTTP with JSON encoding (OpenTelemetry protocol, "OTLP/HTTP" and
 * "JSON Protobuf Encoding"): POST {endpoint}/v1/traces, body an ExportTraceServiceRequest.
 *
 * Workers never wait for the exporter: each worker owns one single-producer ring of fixed-size
 * span records (tp_tracer_reserve / tp_tracer_commit: no lock, no allocation; a full ring drops
 * the record and counts its spans). The exporter thread runs its own libevent loop: a 50 ms
 * tick moves records from the rings into the JSON of the next batch, and a batch is POSTed when
 * it holds batch_size spans or flush_interval has passed since its first span. One request is
 * in flight at a time; a slow or dead collector only makes the rings fill up and drop.
 * Failures are not retried (counted in tp_trace_failed): telemetry must not pile up.
 */
#include "turnpike/trace.h"
#include "turnpike/log.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TICK_MS 50
#define STOP_WAIT_MS 2000
#define JSON_MAX (64u << 20)

struct ring {
    _Atomic size_t head; /* written by the worker */
    char pad1[64 - sizeof(size_t)];
    _Atomic size_t tail; /* written by the exporter */
    char pad2[64 - sizeof(size_t)];
    size_t mask;
    struct tp_span_record *slots;
};

struct export_conf {
    struct tp_tracing_endpoint ep;
    char service_name[128];
    uint32_t batch_size, flush_interval_ms, timeout_ms;
};

static struct {
    _Atomic(struct ring *) rings; /* [nrings]; set once, freed by tp_tracer_stop */
    int nrings;
    bool started;
    pthread_t thread;
    atomic_bool stop;
    atomic_uint_fast64_t dropped, exported, failed;
    pthread_mutex_t lock; /* next / has_next */
    struct export_conf next;
    bool has_next;
    /* exporter thread */
    struct event_base *base;
    struct event *tick;
    struct export_conf conf;
    bool configured;
    struct evhttp_connection *conn;
    struct tp_strbuf spans; /* the JSON span objects of the next batch, comma-separated */
    size_t pending;         /* spans in `spans` */
    uint64_t first_ms;      /* when the first of them was added */
    bool in_flight;
    size_t in_flight_spans;
    uint64_t stop_deadline;
    uint64_t warned_ms;
} t = {.lock = PTHREAD_MUTEX_INITIALIZER};

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------------------------------ */
/* producers (workers)                                                                        */

struct tp_span_record *tp_tracer_reserve(int worker, unsigned spans)
{
    struct ring *rings = atomic_load_explicit(&t.rings, memory_order_acquire);
    if (!rings || worker < 0 || worker >= t.nrings)
        return NULL;
    struct ring *r = &rings[worker];
    size_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    size_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    if (head - tail > r->mask) {
        atomic_fetch_add_explicit(&t.dropped, spans, memory_order_relaxed);
        return NULL;
    }
    return &r->slots[head & r->mask];
}

void tp_tracer_commit(int worker)
{
    struct ring *rings = atomic_load_explicit(&t.rings, memory_order_acquire);
    struct ring *r = &rings[worker];
    size_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    atomic_store_explicit(&r->head, head + 1, memory_order_release);
}

uint64_t tp_trace_dropped(void)
{
    return atomic_load_explicit(&t.dropped, memory_order_relaxed);
}

uint64_t tp_trace_exported(void)
{
    return atomic_load_explicit(&t.exported, memory_order_relaxed);
}

uint64_t tp_trace_failed(void)
{
    return atomic_load_explicit(&t.failed, memory_order_relaxed);
}

/* ------------------------------------------------------------------------------------------ */
/* JSON encoding (exporter thread)                                                            */

/*
 * A record's JSON is written through a cursor into space reserved beforehand (SPAN_JSON_MAX:
 * every string of a record escaped at worst six times, plus the fixed text), so the encoder
 * appends constant pieces with plain memcpy of known length instead of one checked append per
 * piece. Keys and the JSON around them are string literals joined at compile time.
 */
#define SPAN_JSON_MAX 16384

struct out {
    char *p, *end;
};

#define OUT_LIT(o, s) (memcpy((o)->p, (s), sizeof(s) - 1), (o)->p += sizeof(s) - 1)

/* The inside of a JSON string (tp_strbuf_json_str's escaping, written in place). */
static void out_esc(struct out *o, const char *s, size_t len)
{
    size_t room = (size_t)(o->end - o->p);
    struct tp_strbuf v = {.ptr = o->p, .cap = room, .max = room}; /* never grows */
    if (tp_strbuf_json_str(&v, s, len) == 0)
        o->p += v.len;
}

static void out_u64(struct out *o, uint64_t v)
{
    o->p += tp_fmt_u64(o->p, v);
}

static void out_hex(struct out *o, const uint8_t *id, size_t n)
{
    tp_trace_hex(o->p, id, n);
    o->p += 2 * n;
}

static void out_sep(struct out *o, bool *first)
{
    if (!*first)
        *o->p++ = ',';
    *first = false;
}

/* {"key":"K","value":{"stringValue":"V"}}; nothing for an empty value */
#define ATTR_STR(o, first, key, v)                                                                 \
    attr_str((o), (first), "{\"key\":\"" key "\",\"value\":{\"stringValue\":\"",                   \
             sizeof("{\"key\":\"" key "\",\"value\":{\"stringValue\":\"") - 1, (v))
/* {"key":"K","value":{"intValue":"N"}} (int64 is a JSON string in OTLP/JSON) */
#define ATTR_INT(o, first, key, v)                                                                 \
    attr_int((o), (first), "{\"key\":\"" key "\",\"value\":{\"intValue\":\"",                      \
             sizeof("{\"key\":\"" key "\",\"value\":{\"intValue\":\"") - 1, (v))

static void attr_str(struct out *o, bool *first, const char *head, size_t hlen, const char *v)
{
    if (!v || !v[0])
        return;
    out_sep(o, first);
    memcpy(o->p, head, hlen);
    o->p += hlen;
    out_esc(o, v, strlen(v));
    OUT_LIT(o, "\"}}");
}

static void attr_int(struct out *o, bool *first, const char *head, size_t hlen, uint64_t v)
{
    out_sep(o, first);
    memcpy(o->p, head, hlen);
    o->p += hlen;
    out_u64(o, v);
    OUT_LIT(o, "\"}}");
}

/* http.request.method: the known methods as is, anything else "_OTHER" (semantic conventions) */
static bool known_method(const char *m)
{
    static const char *const known[] = {"GET",     "HEAD",    "POST",  "PUT",  "DELETE",
                                        "CONNECT", "OPTIONS", "TRACE", "PATCH"};
    for (size_t i = 0; i < TP_ARRAY_LEN(known); i++)
        if (strcmp(m, known[i]) == 0)
            return true;
    return false;
}

static void attr_method(struct out *o, bool *first, const char *m, bool known)
{
    ATTR_STR(o, first, "http.request.method", known ? m : "_OTHER");
    if (!known)
        ATTR_STR(o, first, "http.request.method_original", m);
}

/* {"traceId":..,"spanId":..[,"parentSpanId":..],"name":"<name>[ <name2>]","kind":K,
 *  "startTimeUnixNano":"..","endTimeUnixNano":"..","attributes":[ */
static void span_head(struct out *o, const struct tp_span_record *r, const uint8_t *span,
                      const uint8_t *parent, const char *name, const char *name2, int kind,
                      uint64_t start, uint64_t end)
{
    OUT_LIT(o, "{\"traceId\":\"");
    out_hex(o, r->trace_id, 16);
    OUT_LIT(o, "\",\"spanId\":\"");
    out_hex(o, span, 8);
    if (parent) {
        OUT_LIT(o, "\",\"parentSpanId\":\"");
        out_hex(o, parent, 8);
    }
    OUT_LIT(o, "\",\"name\":\"");
    out_esc(o, name, strlen(name));
    if (name2 && name2[0]) {
        *o->p++ = ' ';
        out_esc(o, name2, strlen(name2));
    }
    OUT_LIT(o, "\",\"kind\":");
    *o->p++ = (char)('0' + kind);
    OUT_LIT(o, ",\"startTimeUnixNano\":\"");
    out_u64(o, start);
    OUT_LIT(o, "\",\"endTimeUnixNano\":\"");
    out_u64(o, end > start ? end : start);
    OUT_LIT(o, "\",\"attributes\":[");
}

static void span_tail(struct out *o, bool error, unsigned flags)
{
    OUT_LIT(o, "],\"flags\":");
    out_u64(o, flags);
    if (error)
        OUT_LIT(o, ",\"status\":{\"code\":2}");
    *o->p++ = '}';
}

/* error.type of a failed span: its status code, or `none` when it has none */
static void attr_error(struct out *o, bool *first, unsigned status, const char *none)
{
    if (!status) {
        ATTR_STR(o, first, "error.type", none);
        return;
    }
    char code[24];
    code[tp_fmt_u64(code, status)] = '\0';
    ATTR_STR(o, first, "error.type", code);
}

/* Span.flags: the W3C trace flags, and whether the parent is known and remote (bits 8, 9). */
#define SPAN_FLAG_HAS_IS_REMOTE 0x100u
#define SPAN_FLAG_IS_REMOTE 0x200u

static void encode_server(struct out *o, const struct tp_span_record *r, bool known)
{
    /* span name: "{method} {http.route}" when there is a route template (semantic conventions) */
    span_head(o, r, r->span_id, r->has_parent ? r->parent_id : NULL, known ? r->method : "HTTP",
              r->route_path, 2 /* SERVER */, r->start_ns, r->end_ns);
    bool first = true;
    attr_method(o, &first, r->method, known);
    ATTR_STR(o, &first, "url.scheme", "http");
    ATTR_STR(o, &first, "url.path", r->path);
    ATTR_STR(o, &first, "http.route", r->route_path);
    if (r->status)
        ATTR_INT(o, &first, "http.response.status_code", r->status);
    ATTR_STR(o, &first, "server.address", r->host);
    ATTR_INT(o, &first, "server.port", r->local_port);
    ATTR_STR(o, &first, "client.address", r->client);
    ATTR_STR(o, &first, "network.peer.address", r->peer);
    ATTR_STR(o, &first, "network.protocol.version", r->minor_version ? "1.1" : "1.0");
    ATTR_STR(o, &first, "user_agent.original", r->user_agent);
    ATTR_STR(o, &first, "turnpike.request_id", r->request_id);
    ATTR_STR(o, &first, "turnpike.route", r->route);
    ATTR_STR(o, &first, "turnpike.service", r->service);
    /* a server span is an error for 5xx only: 4xx are the client's (semantic conventions) */
    bool error = r->status >= 500 || r->status == 0;
    if (error)
        attr_error(o, &first, r->status, "_OTHER");
    span_tail(o, error,
              r->flags | SPAN_FLAG_HAS_IS_REMOTE | (r->has_parent ? SPAN_FLAG_IS_REMOTE : 0));
}

static void encode_client(struct out *o, const struct tp_span_record *r, bool known)
{
    span_head(o, r, r->up_span_id, r->span_id, known ? r->method : "HTTP", NULL, 3 /* CLIENT */,
              r->up_start_ns, r->up_end_ns);
    bool first = true;
    attr_method(o, &first, r->method, known);
    ATTR_STR(o, &first, "server.address", r->up_host);
    ATTR_INT(o, &first, "server.port", r->up_port);
    ATTR_STR(o, &first, "network.peer.address", r->up_addr);
    ATTR_STR(o, &first, "network.protocol.version", "1.1");
    bool answered = r->up_status != 0;
    if (answered)
        ATTR_INT(o, &first, "http.response.status_code", r->up_status);
    if (r->resends)
        ATTR_INT(o, &first, "http.request.resend_count", r->resends);
    /* a client span is an error for 4xx and 5xx, and when no answer came */
    bool error = !answered || r->up_status >= 400;
    if (error)
        attr_error(o, &first, r->up_status, "no_response");
    span_tail(o, error, r->flags | SPAN_FLAG_HAS_IS_REMOTE);
}

/* Append the spans of r to b (a comma first unless b is empty). 0, TP_ENOMEM or TP_ETOOBIG. */
static int encode_record(struct tp_strbuf *b, const struct tp_span_record *r)
{
    if (b->len + SPAN_JSON_MAX > b->cap) {
        size_t want = TP_MAX(b->cap * 2, b->len + SPAN_JSON_MAX);
        int rc = tp_strbuf_reserve(b, TP_MIN(want, (size_t)JSON_MAX));
        if (rc != 0 || b->len + SPAN_JSON_MAX > b->cap)
            return rc ? rc : TP_ETOOBIG;
    }
    struct out o = {b->ptr + b->len, b->ptr + b->cap};
    bool known = known_method(r->method);
    if (b->len)
        *o.p++ = ',';
    encode_server(&o, r, known);
    if (r->has_upstream) {
        *o.p++ = ',';
        encode_client(&o, r, known);
    }
    b->len = (size_t)(o.p - b->ptr);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* exporter thread                                                                            */

static void pump(void);

static void export_done(struct evhttp_request *req, void *arg)
{
    (void)arg;
    int code = req ? evhttp_request_get_response_code(req) : 0;
    size_t n = t.in_flight_spans;
    t.in_flight = false;
    t.in_flight_spans = 0;
    if (code >= 200 && code < 300) {
        atomic_fetch_add_explicit(&t.exported, n, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&t.failed, n, memory_order_relaxed);
        uint64_t now = mono_ms();
        if (!t.warned_ms || now - t.warned_ms >= 60000) { /* at most one line a minute */
            t.warned_ms = now;
            tp_log(TP_LOG_WARN, "tracing: export of %zu span(s) to %s:%u%s failed (%s %d)", n,
                   t.conf.ep.host, (unsigned)t.conf.ep.port, t.conf.ep.path,
                   code ? "status" : "no response", code);
        }
    }
    pump();
}

static void send_batch(void)
{
    if (t.pending == 0 || t.in_flight)
        return;
    size_t n = t.pending;
    struct evbuffer *body = NULL;
    struct evhttp_request *req = NULL;
    if (!t.conn) {
        t.conn = evhttp_connection_base_new(t.base, NULL, t.conf.ep.host, t.conf.ep.port);
        if (t.conn) {
            struct timeval tv = {t.conf.timeout_ms / 1000, (t.conf.timeout_ms % 1000) * 1000};
            evhttp_connection_set_timeout_tv(t.conn, &tv);
            evhttp_connection_set_retries(t.conn, 0);
        }
    }
    if (t.conn)
        req = evhttp_request_new(export_done, NULL);
    if (req)
        body = evhttp_request_get_output_buffer(req);
    char hbuf[2048]; /* service_name is at most 127 bytes: escaped, 762 */
    struct out o = {hbuf, hbuf + sizeof(hbuf)};
    bool first = true;
    OUT_LIT(&o, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
    ATTR_STR(&o, &first, "service.name", t.conf.service_name);
    ATTR_STR(&o, &first, "service.version", TP_VERSION);
    ATTR_STR(&o, &first, "telemetry.sdk.name", "turnpike");
    ATTR_STR(&o, &first, "telemetry.sdk.language", "c");
    OUT_LIT(&o, "]},\"scopeSpans\":[{\"scope\":{\"name\":\"turnpike\",\"version\":\"" TP_VERSION
                "\"},\"spans\":[");
    if (!body || evbuffer_add(body, hbuf, (size_t)(o.p - hbuf)) != 0 ||
        evbuffer_add(body, t.spans.ptr, t.spans.len) != 0 || evbuffer_add(body, "]}]}]}", 6) != 0) {
        if (req)
            evhttp_request_free(req);
        atomic_fetch_add_explicit(&t.failed, n, memory_order_relaxed);
    } else {
        struct evkeyvalq *h = evhttp_request_get_output_headers(req);
        char host[300];
        bool v6 = strchr(t.conf.ep.host, ':') != NULL;
        snprintf(host, sizeof(host), "%s%s%s:%u", v6 ? "[" : "", t.conf.ep.host, v6 ? "]" : "",
                 (unsigned)t.conf.ep.port);
        evhttp_add_header(h, "Host", host);
        evhttp_add_header(h, "Content-Type", "application/json");
        evhttp_add_header(h, "User-Agent", "turnpike/" TP_VERSION);
        if (evhttp_make_request(t.conn, req, EVHTTP_REQ_POST, t.conf.ep.path) == 0) {
            t.in_flight = true;
            t.in_flight_spans = n;
        } else {
            /* evhttp_make_request frees req on failure */
            atomic_fetch_add_explicit(&t.failed, n, memory_order_relaxed);
        }
    }
    t.spans.len = 0;
    t.pending = 0;
}

/* Move records from the rings into the pending batch until it holds batch_size spans.
 * Returns true when records remain in some ring. */
static bool collect(void)
{
    struct ring *rings = atomic_load_explicit(&t.rings, memory_order_acquire);
    bool more = false;
    for (int i = 0; rings && i < t.nrings; i++) {
        struct ring *r = &rings[i];
        size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
        size_t head = atomic_load_explicit(&r->head, memory_order_acquire);
        while (tail != head && t.pending < t.conf.batch_size) {
            const struct tp_span_record *rec = &r->slots[tail & r->mask];
            unsigned n = rec->has_upstream ? 2 : 1;
            if (encode_record(&t.spans, rec) != 0) {
                /* no memory for the JSON: drop the record rather than the batch */
                atomic_fetch_add_explicit(&t.failed, n, memory_order_relaxed);
            } else {
                if (t.pending == 0)
                    t.first_ms = mono_ms();
                t.pending += n;
            }
            tail++;
        }
        atomic_store_explicit(&r->tail, tail, memory_order_release);
        if (tail != head)
            more = true;
    }
    return more;
}

static void apply_next_conf(void)
{
    if (t.in_flight)
        return; /* the connection in use stays until its answer */
    pthread_mutex_lock(&t.lock);
    bool has = t.has_next;
    struct export_conf next = t.next;
    t.has_next = false;
    pthread_mutex_unlock(&t.lock);
    if (!has)
        return;
    if (t.conn && (strcmp(next.ep.host, t.conf.ep.host) != 0 || next.ep.port != t.conf.ep.port ||
                   next.timeout_ms != t.conf.timeout_ms)) {
        evhttp_connection_free(t.conn);
        t.conn = NULL;
    }
    t.conf = next;
    t.configured = true;
}

/* Move spans along: collect from the rings, send a batch that is full or due. Runs on every
 * tick and when the collector answers (the next full batch goes at once). */
static void pump(void)
{
    apply_next_conf();
    if (!t.configured)
        return;
    bool stopping = atomic_load(&t.stop);
    uint64_t now = mono_ms();
    if (stopping && !t.stop_deadline)
        t.stop_deadline = now + STOP_WAIT_MS;
    bool more = true;
    for (int round = 0; round < 64 && more; round++) {
        more = collect();
        bool full = t.pending >= t.conf.batch_size;
        bool due = t.pending && (stopping || now - t.first_ms >= t.conf.flush_interval_ms);
        if ((full || due) && !t.in_flight)
            send_batch();
        else if (full)
            break; /* wait for the collector: the rings hold the rest, and drop beyond */
    }
    if (stopping && ((!more && !t.pending && !t.in_flight) || now >= t.stop_deadline))
        event_base_loopbreak(t.base);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    pump();
}

static void *exporter_main(void *arg)
{
    (void)arg;
    event_base_dispatch(t.base);
    /* whatever is left when the stop deadline passed is lost: count it */
    size_t left = t.pending + t.in_flight_spans;
    struct ring *rings = atomic_load_explicit(&t.rings, memory_order_acquire);
    for (int i = 0; rings && i < t.nrings; i++) {
        struct ring *r = &rings[i];
        size_t head = atomic_load_explicit(&r->head, memory_order_acquire);
        size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
        for (; tail != head; tail++)
            left += r->slots[tail & r->mask].has_upstream ? 2 : 1;
        atomic_store_explicit(&r->tail, tail, memory_order_release);
    }
    atomic_fetch_add_explicit(&t.failed, left, memory_order_relaxed);
    if (t.conn)
        evhttp_connection_free(t.conn); /* a request in flight is freed without its callback */
    t.conn = NULL;
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* life cycle (main thread)                                                                   */

static size_t pow2_at_least(size_t n)
{
    size_t p = 16;
    while (p < n)
        p <<= 1;
    return p;
}

static int alloc_rings(uint32_t queue_size, int nworkers)
{
    int n = nworkers > 0 ? nworkers : 1;
    struct ring *rings = calloc((size_t)n, sizeof(*rings));
    if (!rings)
        return TP_ENOMEM;
    size_t per = pow2_at_least(((size_t)queue_size + (size_t)n - 1) / (size_t)n);
    for (int i = 0; i < n; i++) {
        rings[i].mask = per - 1;
        rings[i].slots = calloc(per, sizeof(struct tp_span_record));
        if (!rings[i].slots) {
            for (int j = 0; j < i; j++)
                free(rings[j].slots);
            free(rings);
            return TP_ENOMEM;
        }
    }
    t.nrings = n;
    atomic_store_explicit(&t.rings, rings, memory_order_release);
    return 0;
}

static int start_thread(void)
{
    t.base = event_base_new();
    if (!t.base)
        return TP_ENOMEM;
    t.tick = event_new(t.base, -1, EV_PERSIST, tick_cb, NULL);
    struct timeval tv = {0, TICK_MS * 1000};
    t.spans.max = JSON_MAX;
    if (!t.tick || event_add(t.tick, &tv) != 0)
        goto out_free;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&t.thread, NULL, exporter_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        goto out_free;
    t.started = true;
    return 0;
out_free:
    if (t.tick)
        event_free(t.tick);
    t.tick = NULL;
    event_base_free(t.base);
    t.base = NULL;
    return TP_EIO;
}

int tp_tracer_configure(const struct tp_config *cfg, int nworkers)
{
    const struct tp_conf_tracing *tc = cfg->tracing;
    if (!tc)
        return 0; /* workers stop sampling (they read the snapshot); queued spans still go */
    struct export_conf ec = {0};
    char err[160];
    if (tp_tracing_endpoint_parse(tc->endpoint, &ec.ep, err, sizeof(err)) != 0) {
        tp_log(TP_LOG_ERROR, "tracing: endpoint: %s", err);
        return TP_EINVAL;
    }
    snprintf(ec.service_name, sizeof(ec.service_name), "%s",
             tc->service_name ? tc->service_name : "turnpike");
    ec.batch_size = tc->batch_size ? tc->batch_size : 512;
    ec.flush_interval_ms = tc->flush_interval_ms ? tc->flush_interval_ms : 5000;
    ec.timeout_ms = tc->timeout_ms ? tc->timeout_ms : 10000;
    pthread_mutex_lock(&t.lock);
    t.next = ec;
    t.has_next = true;
    pthread_mutex_unlock(&t.lock);
    if (t.started)
        return 0;
    int rc = atomic_load(&t.rings) ? 0 : alloc_rings(tc->queue_size, nworkers);
    return rc ? rc : start_thread();
}

void tp_tracer_stop(void)
{
    if (t.started) {
        atomic_store(&t.stop, true);
        pthread_join(t.thread, NULL);
        event_free(t.tick);
        event_base_free(t.base);
        t.tick = NULL;
        t.base = NULL;
        t.started = false;
    }
    tp_strbuf_free(&t.spans);
    struct ring *rings = atomic_exchange(&t.rings, NULL);
    for (int i = 0; rings && i < t.nrings; i++)
        free(rings[i].slots);
    free(rings);
    t.nrings = 0;
    t.configured = false;
    t.pending = 0;
    atomic_store(&t.stop, false);
}
