/*
 * Per-request observability: the access-log line with its configurable fields, the
 * security-log line for malformed requests, the trace context and the spans of a request
 * (src/observe/observe.h).
 *
 * Every value taken from the request is JSON-escaped (tp_strbuf_json_str): control bytes,
 * '"' and '\' become escapes, bytes that are not valid UTF-8 become \u00XX, so a request can
 * neither break nor forge a line (CASES.md B57). The line is assembled in the worker's scratch
 * buffer and copied into the log queue: no allocation per line.
 */
#include "observe/observe.h"
#include "turnpike/logsink.h"
#include "turnpike/plugin.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define QUERY_MAX 4096   /* bytes of the query string kept for the log */
#define REFERER_MAX 1024 /* as User-Agent */
#define HOST_MAX 256

static uint64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static const struct tp_config *config_of(const struct tp_conn *c)
{
    const struct tp_wsnap *ws = c->req.ws ? c->req.ws : c->w->cur;
    return ws->snap->config;
}

/* 8 or 16 random bytes, never all zero (an all-zero id is invalid, W3C §3.2.2.3–4). */
static void random_id(struct tp_worker *w, uint8_t *out, size_t n)
{
    do {
        for (size_t i = 0; i < n; i += 8) {
            uint64_t v = tp_worker_random(w);
            memcpy(out + i, &v, 8);
        }
    } while (out[0] == 0 && memcmp(out, out + 1, n - 1) == 0);
}

/* ------------------------------------------------------------------------------------------ */
/* trace context                                                                              */

static void trace_begin(struct tp_conn *c, const struct tp_http_message *msg,
                        const struct tp_conf_tracing *tc)
{
    struct tp_trace_ctx *tr = &c->req.trace;
    struct tp_traceparent in;
    /* two traceparent fields cannot be combined into one valid value (RFC 9110 §5.3) */
    int idx = tp_http_header_find(msg, "traceparent", 11, 0);
    bool valid =
        idx >= 0 && tp_http_header_find(msg, "traceparent", 11, (size_t)idx + 1) < 0 &&
        tp_traceparent_parse(msg->headers[idx].value.ptr, msg->headers[idx].value.len, &in) == 0;
    if (valid) {
        memcpy(tr->trace_id, in.trace_id, 16);
        tr->has_trace = true;
    }
    if (!tc)
        return; /* not participating: the headers pass through untouched */
    tr->active = true;
    if (valid) {
        memcpy(tr->parent_id, in.parent_id, 8);
        tr->has_parent = true;
    } else {
        random_id(c->w, tr->trace_id, 16); /* absent or invalid: a new trace (§4.2) */
        tr->has_trace = true;
    }
    random_id(c->w, tr->span_id, 8);
    random_id(c->w, tr->up_span_id, 8);
    tr->sampled = tp_trace_should_sample(tc, tr->trace_id, valid, valid ? in.flags : 0);
    tr->flags = tr->sampled ? TP_TRACE_FLAG_SAMPLED : 0;
    if (tr->sampled)
        tr->start_ns = realtime_ns();
}

bool tp_observe_drops_header(const struct tp_conn *c, struct tp_slice name)
{
    const struct tp_trace_ctx *tr = &c->req.trace;
    if (!tr->active)
        return false;
    if (name.len == 11 && TP_SLICE_IEQ(name, "traceparent"))
        return true;
    /* tracestate belongs to the incoming traceparent: kept with it, dropped on a restart */
    return !tr->has_parent && name.len == 10 && TP_SLICE_IEQ(name, "tracestate");
}

int tp_observe_put_traceparent(struct tp_conn *c, struct tp_strbuf *b)
{
    const struct tp_trace_ctx *tr = &c->req.trace;
    if (!tr->active)
        return 0;
    char line[13 + TP_TRACEPARENT_LEN + 2] = "traceparent: ";
    tp_traceparent_format(line + 13, tr->trace_id, tr->up_span_id, tr->flags);
    memcpy(line + 13 + TP_TRACEPARENT_LEN, "\r\n", 2);
    return tp_strbuf_append(b, line, sizeof(line));
}

/* ------------------------------------------------------------------------------------------ */
/* begin / end                                                                                */

static size_t keep(char *dst, struct tp_slice s, size_t max)
{
    size_t n = TP_MIN(s.len, max);
    memcpy(dst, s.ptr, n);
    dst[n] = '\0';
    return n + 1;
}

void tp_observe_begin(struct tp_conn *c, const struct tp_http_message *msg)
{
    struct tp_request *req = &c->req;
    const struct tp_config *cfg = req->ws->snap->config;
    uint32_t mask = tp_logsink_enabled(TP_LOGSINK_ACCESS) ? cfg->access_log_field_mask : 0;
    if (cfg->tracing || (mask & (1u << TP_AF_TRACE_ID)))
        trace_begin(c, msg, cfg->tracing);
    bool want_query = (mask & (1u << TP_AF_QUERY)) && msg->query.len;
    int ref = (mask & (1u << TP_AF_REFERER)) ? tp_http_header_find(msg, "referer", 7, 0) : -1;
    struct tp_slice host = msg->target_authority.len ? msg->target_authority : msg->host;
    bool want_host = ((mask & (1u << TP_AF_HOST)) || req->trace.sampled) && host.len;
    if (!want_query && ref < 0 && !want_host)
        return;
    size_t qn = want_query ? TP_MIN(msg->query.len, QUERY_MAX) + 1 : 0;
    size_t rn = ref >= 0 ? TP_MIN(msg->headers[ref].value.len, REFERER_MAX) + 1 : 0;
    size_t hn = want_host ? TP_MIN(host.len, HOST_MAX) + 1 : 0;
    char *p = malloc(qn + rn + hn);
    if (!p)
        return; /* the fields are logged as null */
    req->obs_strings = p;
    if (qn) {
        req->obs_query = p;
        p += keep(p, msg->query, QUERY_MAX);
    }
    if (rn) {
        req->obs_referer = p;
        p += keep(p, msg->headers[ref].value, REFERER_MAX);
    }
    if (hn) {
        req->obs_host = p;
        keep(p, host, HOST_MAX);
    }
}

void tp_observe_upstream_start(struct tp_conn *c)
{
    struct tp_trace_ctx *tr = &c->req.trace;
    if (tr->sampled && !tr->up_start_ns)
        tr->up_start_ns = realtime_ns();
}

void tp_observe_end(struct tp_conn *c)
{
    free(c->req.obs_strings);
}

/* ------------------------------------------------------------------------------------------ */
/* JSON fields                                                                                */

static void json_key(struct tp_strbuf *b, const char *key, bool *first)
{
    tp_strbuf_puts(b, *first ? "\"" : ",\"");
    *first = false;
    tp_strbuf_puts(b, key);
    tp_strbuf_puts(b, "\":");
}

static void json_str(struct tp_strbuf *b, const char *key, const char *v, bool *first)
{
    json_key(b, key, first);
    if (!v) {
        tp_strbuf_puts(b, "null");
        return;
    }
    tp_strbuf_append(b, "\"", 1);
    tp_strbuf_json_str(b, v, strlen(v));
    tp_strbuf_append(b, "\"", 1);
}

static void json_num(struct tp_strbuf *b, const char *key, unsigned long long v, bool *first)
{
    json_key(b, key, first);
    tp_strbuf_putu(b, v);
}

static void json_hex(struct tp_strbuf *b, const char *key, const uint8_t *id, size_t n, bool set,
                     bool *first)
{
    json_key(b, key, first);
    if (!set) {
        tp_strbuf_puts(b, "null");
        return;
    }
    char hex[34];
    hex[0] = '"';
    tp_trace_hex(hex + 1, id, n);
    hex[2 * n + 1] = '"';
    tp_strbuf_append(b, hex, 2 * n + 2);
}

static const char *consumer_name(const struct tp_request *req)
{
    const struct tp_consumer *k = req->plugins ? tp_plugin_consumer(req->plugins) : NULL;
    if (!k)
        return NULL;
    return k->username ? k->username : k->custom_id ? k->custom_id : k->id;
}

static void put_field(struct tp_conn *c, struct tp_strbuf *b, int f, const char *now, uint64_t t,
                      bool *first)
{
    struct tp_request *req = &c->req;
    const char *name = tp_access_field_name((enum tp_access_field)f);
    switch (f) {
    case TP_AF_TIME:
        json_str(b, name, now, first);
        break;
    case TP_AF_REQUEST_ID:
        json_str(b, name, req->request_id, first);
        break;
    case TP_AF_CLIENT:
        json_str(b, name, req->client_ip[0] ? req->client_ip : c->peer_text, first);
        break;
    case TP_AF_PEER:
        json_str(b, name, c->peer_text, first);
        break;
    case TP_AF_METHOD:
        json_str(b, name, req->method, first);
        break;
    case TP_AF_PATH:
        json_str(b, name, req->path, first);
        break;
    case TP_AF_QUERY:
        json_str(b, name, req->obs_query, first);
        break;
    case TP_AF_PROTOCOL:
        json_str(b, name,
                 !req->method         ? NULL
                 : req->minor_version ? "HTTP/1.1"
                                      : "HTTP/1.0",
                 first);
        break;
    case TP_AF_HOST:
        json_str(b, name, req->obs_host, first);
        break;
    case TP_AF_USER_AGENT:
        json_str(b, name, req->log_ua, first);
        break;
    case TP_AF_REFERER:
        json_str(b, name, req->obs_referer, first);
        break;
    case TP_AF_STATUS:
        json_num(b, name, (unsigned)req->status, first);
        break;
    case TP_AF_BYTES_RECEIVED:
        json_num(b, name, req->bytes_in, first);
        break;
    case TP_AF_BYTES_SENT:
        json_num(b, name, req->bytes_out, first);
        break;
    case TP_AF_ROUTE:
        json_str(b, name, req->route ? req->route->conf->name : NULL, first);
        break;
    case TP_AF_SERVICE:
        json_str(b, name, req->service ? req->service->conf->name : NULL, first);
        break;
    case TP_AF_UPSTREAM:
        json_str(b, name, req->target ? req->target->addr_text : NULL, first);
        break;
    case TP_AF_LATENCY_MS:
        json_num(b, name, t - req->start_ms, first);
        break;
    case TP_AF_UPSTREAM_LATENCY_MS:
        if (req->up_start_ms && req->up_first_byte_ms) {
            json_num(b, name, req->up_first_byte_ms - req->up_start_ms, first);
        } else {
            json_key(b, name, first);
            tp_strbuf_puts(b, "null");
        }
        break;
    case TP_AF_TRACE_ID:
        json_hex(b, name, req->trace.trace_id, 16, req->trace.has_trace, first);
        break;
    case TP_AF_SPAN_ID:
        json_hex(b, name, req->trace.span_id, 8, req->trace.active, first);
        break;
    case TP_AF_CONSUMER:
        json_str(b, name, consumer_name(req), first);
        break;
    case TP_AF_TRIES:
        json_num(b, name, (unsigned)req->tries, first);
        break;
    default:
        break;
    }
}

static void access_line(struct tp_conn *c)
{
    char now[40];
    uint64_t t = tp_now_ms();
    tp_log_time_rfc3339(now, sizeof(now));
    size_t n;
    const unsigned char *fields = tp_config_access_fields(config_of(c), &n);
    struct tp_strbuf *b = &c->w->log_scratch; /* reused: no allocation per line */
    b->len = 0;
    b->max = 64 * 1024;
    bool first = true;
    tp_strbuf_append(b, "{", 1);
    for (size_t i = 0; i < n; i++)
        put_field(c, b, fields[i], now, t, &first);
    /* a line over 64 KiB is cut off by the cap: it is dropped rather than written broken */
    if (tp_strbuf_puts(b, "}\n") == 0)
        tp_worker_access_log(c->w, b->ptr, b->len);
}

/* ------------------------------------------------------------------------------------------ */
/* security log: malformed requests                                                           */

void tp_observe_rejected(struct tp_conn *c, int status, const char *why)
{
    switch (status) {
    case 400:
    case 408:
    case 414:
    case 431:
    case 501:
    case 505:
        break;
    default:
        return;
    }
    if (!tp_logsink_enabled(TP_LOGSINK_SECURITY))
        return;
    struct tp_request *req = &c->req;
    char now[40];
    tp_log_time_rfc3339(now, sizeof(now));
    char line[4096];
    struct tp_strbuf b = {.ptr = line, .cap = sizeof(line), .max = sizeof(line)};
    bool first = true;
    tp_strbuf_append(&b, "{", 1);
    json_str(&b, "time", now, &first);
    json_str(&b, "event", "malformed_request", &first);
    json_str(&b, "request_id", req->request_id, &first);
    json_str(&b, "client", req->client_ip[0] ? req->client_ip : c->peer_text, &first);
    json_str(&b, "method", req->method, &first);
    /* the path is cut at 1 KiB: the line must fit whatever the request line held */
    char path[1025];
    if (req->path) {
        size_t pl = strnlen(req->path, sizeof(path) - 1);
        memcpy(path, req->path, pl);
        path[pl] = '\0';
    }
    json_str(&b, "path", req->path ? path : NULL, &first);
    json_num(&b, "status", (unsigned)status, &first);
    json_str(&b, "reason", why, &first);
    if (tp_strbuf_puts(&b, "}\n") == 0)
        tp_worker_security_log(c->w, b.ptr, b.len);
}

/* ------------------------------------------------------------------------------------------ */
/* spans                                                                                      */

static void copy(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strnlen(src, cap - 1) : 0;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

/* "127.0.0.1:9001" → "127.0.0.1", "[::1]:9001" → "::1", "example.com:80" → "example.com" */
static void copy_host(char *dst, size_t cap, const char *hostport)
{
    if (!hostport) {
        dst[0] = '\0';
        return;
    }
    const char *h = hostport, *end = hostport + strlen(hostport);
    if (*h == '[') {
        const char *rb = strchr(h, ']');
        if (rb) {
            h++;
            end = rb;
        }
    } else {
        const char *colon = strrchr(h, ':');
        if (colon && !memchr(h, ':', (size_t)(colon - h)))
            end = colon;
    }
    size_t n = TP_MIN((size_t)(end - h), cap - 1);
    memcpy(dst, h, n);
    dst[n] = '\0';
}

static void record_spans(struct tp_conn *c)
{
    struct tp_request *req = &c->req;
    const struct tp_trace_ctx *tr = &req->trace;
    bool up = tr->up_start_ns && req->target;
    struct tp_span_record *r = tp_tracer_reserve(c->w->id, up ? 2 : 1);
    if (!r)
        return;
    memcpy(r->trace_id, tr->trace_id, 16);
    memcpy(r->parent_id, tr->parent_id, 8);
    memcpy(r->span_id, tr->span_id, 8);
    memcpy(r->up_span_id, tr->up_span_id, 8);
    r->has_parent = tr->has_parent;
    r->has_upstream = up;
    r->flags = tr->flags;
    r->status = (uint16_t)req->status;
    r->local_port = c->local_port;
    r->minor_version = (uint8_t)req->minor_version;
    r->start_ns = tr->start_ns;
    r->end_ns = realtime_ns();
    r->up_start_ns = tr->up_start_ns;
    r->up_end_ns = r->end_ns;
    r->resends = (uint8_t)TP_MIN(req->tries > 1 ? req->tries - 1 : 0, 255);
    copy(r->method, sizeof(r->method), req->method);
    copy(r->path, sizeof(r->path), req->path);
    const struct tp_conf_route *rc = req->route ? req->route->conf : NULL;
    copy(r->route_path, sizeof(r->route_path), rc && rc->num_paths == 1 ? rc->paths[0] : NULL);
    copy(r->route, sizeof(r->route), rc ? rc->name : NULL);
    copy(r->service, sizeof(r->service), req->service ? req->service->conf->name : NULL);
    copy_host(r->host, sizeof(r->host), req->obs_host);
    copy(r->client, sizeof(r->client), req->client_ip[0] ? req->client_ip : c->peer_text);
    copy(r->peer, sizeof(r->peer), c->peer_text);
    copy(r->user_agent, sizeof(r->user_agent), req->log_ua);
    copy(r->request_id, sizeof(r->request_id), req->request_id);
    if (up) {
        /* the CLIENT span's status is the upstream's: none when it never answered */
        r->up_status = req->up_first_byte_ms ? (uint16_t)req->status : 0;
        copy(r->up_host, sizeof(r->up_host), req->target->host);
        r->up_port = req->target->port;
        copy_host(r->up_addr, sizeof(r->up_addr), req->target->addr_text);
    } else {
        r->up_host[0] = r->up_addr[0] = '\0';
        r->up_port = r->up_status = 0;
    }
    tp_tracer_commit(c->w->id);
}

void tp_observe_done(struct tp_conn *c)
{
    if (c->req.trace.sampled)
        record_spans(c);
    if (tp_logsink_enabled(TP_LOGSINK_ACCESS))
        access_line(c);
}
