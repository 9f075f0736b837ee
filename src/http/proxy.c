/*
 * The proxy state machine: one client connection, its current request, and the upstream
 * connection serving it.
 *
 * Every event (client or upstream readable/writable, a timer) ends in conn_progress(), which
 * moves bytes as far as they can go — parse a head, relay body bytes (evbuffer chains are moved,
 * not copied), parse the response head, relay the response — then flushes both sides and sets
 * the read/write interest and the timers for the new state. Reading a side stops while the other
 * side's output holds more than TP_IO_HIGH_WATER bytes, so memory per connection is bounded
 * whatever the body sizes.
 */
#include "http/proxy.h"
#include "plugins/chain.h"
#include "turnpike/router.h"
#include "upstream/hash_key.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static void conn_progress(struct tp_conn *c);
static void client_read_cb(evutil_socket_t fd, short what, void *arg);
static void client_write_cb(evutil_socket_t fd, short what, void *arg);
static void client_timer_cb(evutil_socket_t fd, short what, void *arg);

static const struct tp_conf_limits *limits_of(const struct tp_conn *c)
{
    const struct tp_wsnap *ws = c->req.ws ? c->req.ws : c->w->cur;
    return &ws->snap->config->limits;
}

/* ---------------------------------------------------------------------------------------- */
/* access log                                                                               */

static void json_field(struct tp_strbuf *b, const char *key, const char *v, size_t len)
{
    tp_strbuf_puts(b, ",\"");
    tp_strbuf_puts(b, key);
    tp_strbuf_puts(b, "\":");
    if (!v) {
        tp_strbuf_puts(b, "null");
        return;
    }
    tp_strbuf_append(b, "\"", 1);
    tp_strbuf_json_str(b, v, len);
    tp_strbuf_append(b, "\"", 1);
}

static void num_field(struct tp_strbuf *b, const char *key, unsigned long long v)
{
    tp_strbuf_puts(b, ",\"");
    tp_strbuf_puts(b, key);
    tp_strbuf_puts(b, "\":");
    tp_strbuf_putu(b, v);
}

static void log_access(struct tp_conn *c)
{
    struct tp_request *req = &c->req;
    if (req->plugins && req->route->chain && (req->route->chain->hooks & TP_CHAIN_LOG))
        tp_chain_run_log(req->plugins);
    if (c->w->access_fd < 0)
        return;
    char now[40];
    uint64_t t = tp_now_ms();
    tp_log_time_rfc3339(now, sizeof(now));
    struct tp_strbuf *b = &c->w->log_scratch; /* reused: no allocation per line */
    b->len = 0;
    b->max = 64 * 1024;
    tp_strbuf_puts(b, "{\"time\":\"");
    tp_strbuf_puts(b, now);
    tp_strbuf_append(b, "\"", 1);
    json_field(b, "request_id", req->request_id, strlen(req->request_id));
    json_field(b, "client", req->client_ip[0] ? req->client_ip : c->peer_text,
               strlen(req->client_ip[0] ? req->client_ip : c->peer_text));
    json_field(b, "method", req->method, req->method ? strlen(req->method) : 0);
    json_field(b, "path", req->path, req->path ? strlen(req->path) : 0);
    json_field(b, "user_agent", req->log_ua, req->log_ua ? strlen(req->log_ua) : 0);
    num_field(b, "status", (unsigned)req->status);
    num_field(b, "bytes_received", req->bytes_in);
    num_field(b, "bytes_sent", req->bytes_out);
    const char *route = req->route ? req->route->conf->name : NULL;
    const char *svc = req->service ? req->service->conf->name : NULL;
    json_field(b, "route", route, route ? strlen(route) : 0);
    json_field(b, "service", svc, svc ? strlen(svc) : 0);
    json_field(b, "upstream", req->target ? req->target->addr_text : NULL,
               req->target ? strlen(req->target->addr_text) : 0);
    num_field(b, "latency_ms", t - req->start_ms);
    if (req->up_start_ms && req->up_first_byte_ms)
        num_field(b, "upstream_latency_ms", req->up_first_byte_ms - req->up_start_ms);
    else
        tp_strbuf_puts(b, ",\"upstream_latency_ms\":null");
    if (tp_strbuf_puts(b, "}\n") == 0)
        tp_worker_access_log(c->w, b->ptr, b->len);
}

/* ---------------------------------------------------------------------------------------- */
/* request lifecycle                                                                        */

static void request_reset(struct tp_conn *c)
{
    struct tp_request *req = &c->req;
    if (req->target)
        atomic_fetch_sub_explicit(&req->target->active, 1, memory_order_relaxed);
    if (req->counted)
        atomic_fetch_sub_explicit(&req->service->upstream->requests, 1, memory_order_relaxed);
    if (req->is_retry)
        atomic_fetch_sub_explicit(&req->service->upstream->retrying, 1, memory_order_relaxed);
    if (req->held) /* an attempt that ended without an answer we judged (client gone) */
        tp_circuit_done(req->held, false, tp_now_ms());
    if (req->svc_circuit)
        tp_circuit_done(req->service->circuit, req->status >= 500, tp_now_ms());
    tp_mirror_detach(&req->mirror, req->req_body_done);
    tp_chain_request_end(req->plugins);
    if (req->body_buf)
        evbuffer_free(req->body_buf);
    tp_strbuf_free(&req->resp_head);
    tp_worker_snap_release(c->w, req->ws);
    free(req->strings);
    tp_strbuf_free(&req->head);
    memset(req, 0, sizeof(*req));
}

static void up_detach(struct tp_conn *c, bool reuse)
{
    struct tp_upconn *u = c->up;
    if (!u)
        return;
    c->up = NULL;
    const struct tp_upstream *us = c->req.service ? c->req.service->upstream : NULL;
    if (reuse && us && u->connected && !u->eof) {
        tp_pool_put(u, us->keepalive_pool, us->keepalive_idle_ms);
        return;
    }
    tp_upconn_close(u);
}

static void conn_free(struct tp_conn *c)
{
    struct tp_worker *w = c->w;
    if (c->state == TP_CONN_TUNNEL || (c->req.ws && c->req.status))
        log_access(c);
    else if (c->req.plugins && (c->req.route->chain->hooks & TP_CHAIN_LOG))
        tp_chain_run_log(c->req.plugins); /* the client went away mid-request: plugins that
                                             hold something (a concurrency slot) release it */
    up_detach(c, false);
    request_reset(c);
    event_free(c->rev);
    event_free(c->wev);
    event_free(c->tmo.ev);
    if (c->retry_ev)
        event_free(c->retry_ev);
    evbuffer_free(c->in);
    evbuffer_free(c->out);
    close(c->fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
    tp_worker_conn_closed(w);
}

void tp_conn_abort(struct tp_conn *c)
{
    conn_free(c);
}

void tp_conn_shutdown(struct tp_conn *c)
{
    if (c->state == TP_CONN_HEAD && !c->got_first_byte && evbuffer_get_length(c->in) == 0) {
        conn_free(c);
        return;
    }
    c->req.keepalive = false; /* finish what is in flight, then close */
}

/*
 * Queue a response generated by the gateway (an error, or a plugin's answer) and finish the
 * request. Plugins of the route see it in their response_headers hooks (CORS headers on a 401).
 */
static void respond_local(struct tp_conn *c, int status, const char *ctype, const char *body,
                          size_t len, bool close_after)
{
    struct tp_request *req = &c->req;
    struct tp_plugin_ctx *pc = req->plugins;
    up_detach(c, false);
    if (!req->request_id[0])
        tp_proxy_request_id(c, NULL);
    if (!req->start_ms)
        req->start_ms = tp_now_ms();
    if (close_after || !req->req_body_done || !req->keepalive)
        req->keepalive = false;
    if (pc && req->route->chain && (req->route->chain->hooks & TP_CHAIN_RESPONSE_HEADERS))
        tp_chain_run_response_headers(pc, NULL, status, true);
    struct tp_strbuf *b = &c->w->head_scratch;
    b->len = 0;
    b->max = 1u << 20;
    char line[32] = "HTTP/1.1 ";
    size_t n = 9 + tp_fmt_u64(line + 9, (uint64_t)status);
    line[n++] = ' ';
    int rc = tp_strbuf_append(b, line, n);
    rc = rc ? rc : tp_strbuf_puts(b, tp_http_reason(status));
    rc = rc ? rc : tp_strbuf_append(b, "\r\n", 2);
    if (ctype && !(pc && tp_chain_resp_header_dropped(pc, TP_SLICE_LIT("content-type")))) {
        rc = rc ? rc : tp_strbuf_puts(b, "Content-Type: ");
        rc = rc ? rc : tp_strbuf_puts(b, ctype);
        rc = rc ? rc : tp_strbuf_append(b, "\r\n", 2);
    }
    char num[20];
    bool bodyless = status == 204 || status == 304 || status < 200;
    if (!bodyless) {
        rc = rc ? rc : tp_strbuf_puts(b, "Content-Length: ");
        rc = rc ? rc : tp_strbuf_append(b, num, tp_fmt_u64(num, len));
        rc = rc ? rc : tp_strbuf_append(b, "\r\n", 2);
    }
    rc = rc ? rc : tp_strbuf_puts(b, "X-Request-ID: ");
    rc = rc ? rc : tp_strbuf_puts(b, req->request_id);
    rc = rc ? rc : tp_strbuf_append(b, "\r\n", 2);
    if (status == 503 && req->retry_after) {
        rc = rc ? rc : tp_strbuf_puts(b, "Retry-After: ");
        rc = rc ? rc : tp_strbuf_append(b, num, tp_fmt_u64(num, req->retry_after));
        rc = rc ? rc : tp_strbuf_append(b, "\r\n", 2);
    }
    if (pc)
        rc = rc ? rc : tp_chain_put_local_headers(pc, b);
    if (!req->keepalive)
        rc = rc ? rc : tp_strbuf_puts(b, "Connection: close\r\n");
    rc = rc ? rc : tp_strbuf_append(b, "\r\n", 2);
    size_t before = evbuffer_get_length(c->out);
    if (rc == 0) {
        evbuffer_add(c->out, b->ptr, b->len);
        if (!req->is_head && !bodyless)
            evbuffer_add(c->out, body, len);
    } else { /* no memory for the head: the shortest honest answer */
        req->keepalive = false;
        evbuffer_add_printf(c->out, "HTTP/1.1 500 Internal Server Error\r\n"
                                    "Content-Length: 0\r\nConnection: close\r\n\r\n");
        status = 500;
    }
    req->bytes_out += evbuffer_get_length(c->out) - before;
    req->status = status;
    req->resp_started = req->resp_head_done = req->resp_done = true;
}

/* Queue a gateway-generated JSON error response and finish the request (DESIGN.md §4). */
static void respond_error(struct tp_conn *c, int status, const char *message, bool close_after)
{
    struct tp_request *req = &c->req;
    if (!req->request_id[0])
        tp_proxy_request_id(c, NULL);
    char body[512];
    struct tp_strbuf bb = {.max = 4096};
    tp_strbuf_puts(&bb, "{\"message\":\"");
    tp_strbuf_json_str(&bb, message, strlen(message));
    tp_strbuf_puts(&bb, "\",\"request_id\":\"");
    tp_strbuf_json_str(&bb, req->request_id, strlen(req->request_id));
    tp_strbuf_puts(&bb, "\"}\n");
    size_t blen = bb.ptr ? TP_MIN(bb.len, sizeof(body)) : 0;
    if (blen)
        memcpy(body, bb.ptr, blen);
    tp_strbuf_free(&bb);
    respond_local(c, status, "application/json", body, blen, close_after);
    if (status >= 500)
        tp_log(TP_LOG_WARN, "request %s: %d %s", req->request_id, status, message);
}

/* A plugin answered the request itself. */
static void respond_plugin(struct tp_conn *c)
{
    struct tp_chain_local l;
    tp_chain_local_response(c->req.plugins, &l);
    respond_local(c, l.status, l.content_type, l.body, l.len, false);
}

/* The request is over on both sides: log, recycle the upstream connection, next request. */
static void finish_request(struct tp_conn *c)
{
    struct tp_request *req = &c->req;
    bool reuse = req->up_reusable && req->req_body_done;
    log_access(c);
    up_detach(c, reuse);
    bool keep = req->keepalive && req->req_body_done && !c->peer_closed &&
                !atomic_load(&c->w->stop);
    request_reset(c);
    tp_deadline_clear(&c->tmo); /* the next phase sets its own deadline from scratch */
    c->num_requests++;
    c->scan_pos = 0;
    c->line_seen = false;
    c->uri_checked = false;
    c->got_first_byte = evbuffer_get_length(c->in) > 0;
    c->state = keep ? TP_CONN_HEAD : TP_CONN_CLOSING;
}

static bool method_idempotent(struct tp_slice m)
{
    return TP_SLICE_IEQ(m, "GET") || TP_SLICE_IEQ(m, "HEAD") || TP_SLICE_IEQ(m, "OPTIONS") ||
           TP_SLICE_IEQ(m, "TRACE") || TP_SLICE_IEQ(m, "PUT") || TP_SLICE_IEQ(m, "DELETE");
}

/*
 * True when the Transfer-Encoding fields list exactly one coding, "chunked". We decode the
 * chunked layer and re-frame the body; another coding before it (gzip, chunked) would be lost
 * on the way, so such messages are refused instead (501 for requests, 502 for responses).
 */
static bool te_is_plain_chunked(const struct tp_http_message *msg)
{
    size_t codings = 0;
    for (int i = tp_http_header_find(msg, "transfer-encoding", 17, 0); i >= 0;
         i = tp_http_header_find(msg, "transfer-encoding", 17, (size_t)i + 1)) {
        struct tp_slice v = msg->headers[i].value;
        for (size_t k = 0; k < v.len; k++)
            codings += v.ptr[k] == ',';
        codings++;
        if (!TP_SLICE_IEQ(v, "chunked"))
            return false;
    }
    return codings == 1;
}

/*
 * Only WebSocket upgrades are tunnelled (RFC 6455), and only from HTTP/1.1 (RFC 9110 §7.8: a
 * server ignores Upgrade in a 1.0 request). Anything else — h2c above all, the known way to
 * smuggle an HTTP/2 connection past a proxy's routing — is forwarded as an ordinary request
 * with Upgrade removed.
 */
static bool is_websocket_upgrade(const struct tp_http_message *msg)
{
    if (msg->minor_version != 1 || !(msg->flags & TP_HTTP_F_CONN_UPGRADE) ||
        !(msg->flags & TP_HTTP_F_HAS_UPGRADE))
        return false;
    int i = tp_http_header_find(msg, "upgrade", 7, 0);
    return i >= 0 && tp_http_header_find(msg, "upgrade", 7, (size_t)i + 1) < 0 &&
           TP_SLICE_IEQ(msg->headers[i].value, "websocket");
}

struct header_ctx {
    const struct tp_http_message *msg;
};

static bool value_in(struct tp_slice v, const char *const *values, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (v.len == strlen(values[k]) && memcmp(v.ptr, values[k], v.len) == 0)
            return true;
    return false;
}

/* Router callback: does the request carry header `name` with one of the values? */
static int header_has(void *ctx, const char *name, const char *const *values, size_t n)
{
    const struct tp_http_message *msg = ((struct header_ctx *)ctx)->msg;
    size_t nlen = strlen(name);
    for (int i = tp_http_header_find(msg, name, nlen, 0); i >= 0;
         i = tp_http_header_find(msg, name, nlen, (size_t)i + 1)) {
        struct tp_slice v = msg->headers[i].value;
        if (value_in(v, values, n))
            return 1;
        /* repeated lines equal one comma-joined line (RFC 9110 §5.3): also try each element */
        const char *p = v.ptr, *end = v.ptr + v.len;
        if (!memchr(p, ',', v.len))
            continue;
        for (;;) {
            const char *comma = memchr(p, ',', (size_t)(end - p));
            const char *stop = comma ? comma : end;
            const char *a = p, *z = stop;
            while (a < z && (*a == ' ' || *a == '\t'))
                a++;
            while (z > a && (z[-1] == ' ' || z[-1] == '\t'))
                z--;
            if (value_in((struct tp_slice){a, (size_t)(z - a)}, values, n))
                return 1;
            if (!comma)
                break;
            p = comma + 1;
        }
    }
    return 0;
}

static void connect_upstream(struct tp_conn *c);
static void upstream_failed(struct tp_conn *c, bool connect_failure, bool timeout);

/*
 * The balancer's choice among healthy targets; when none is healthy and the upstream is set to
 * fail open, any enabled target not tried yet, in turn (CASES.md B39 run 2).
 */
static struct tp_target *pick_target(struct tp_upstream *u, int wid, uint64_t tried,
                                     const struct tp_request *req)
{
    struct tp_target *t = tp_upstream_pick(u, wid, tried, req->hash_key, req->has_hash_key);
    if (t || !u->healthchecks || !u->healthchecks->fail_open || u->num_targets == 0)
        return t;
    unsigned start = atomic_fetch_add_explicit(&u->rr_next, 1, memory_order_relaxed);
    for (size_t k = 0; k < u->num_targets; k++) {
        size_t i = (start + k) % u->num_targets;
        if (u->targets[i].weight > 0 && !(i < 64 && (tried >> i) & 1))
            return &u->targets[i];
    }
    return NULL;
}

/*
 * A target the balancer picks and whose circuit breaker admits the request (tried targets and
 * refusing breakers are skipped in turn). *admitted receives the breaker to release with
 * target_done(), or NULL. On NULL with every candidate refused by an open breaker,
 * c->req.retry_after holds the soonest Retry-After.
 */
static struct tp_target *acquire_target(struct tp_conn *c, uint64_t tried,
                                        struct tp_circuit **admitted)
{
    struct tp_request *req = &c->req;
    struct tp_upstream *u = req->service->upstream;
    *admitted = NULL;
    for (size_t k = 0; k <= u->num_targets; k++) {
        struct tp_target *t = pick_target(u, c->w->id, tried, req);
        if (!t || !t->circuit)
            return t;
        uint32_t ra = 0;
        int v = tp_circuit_acquire(t->circuit, tp_now_ms(), &ra);
        if (v == TP_CIRCUIT_ALLOW) {
            *admitted = t->circuit;
            return t;
        }
        if (v == TP_CIRCUIT_OPEN && (!req->retry_after || ra < req->retry_after))
            req->retry_after = ra;
        size_t idx = (size_t)(t - u->targets);
        if (idx >= 64)
            return NULL;
        tried |= 1ull << idx;
    }
    return NULL;
}

/* The current attempt is judged: report it to the target's breaker. */
static void target_done(struct tp_conn *c, bool failure)
{
    if (c->req.held) {
        tp_circuit_done(c->req.held, failure, tp_now_ms());
        c->req.held = NULL;
    }
}

/*
 * The service of a matched route: the route's own, or one share of its traffic split drawn by
 * weight — from the sticky header or cookie when the request has it (the same value always
 * lands on the same share), else at random.
 */
static struct tp_service *split_service(struct tp_conn *c, const struct tp_route *rt,
                                        const struct tp_http_message *msg)
{
    if (rt->num_split == 0)
        return rt->service;
    const struct tp_conf_route *cr = rt->conf;
    uint64_t key = 0;
    bool sticky = false;
    if (cr->split_header)
        sticky = tp_request_key(TP_HASH_HEADER, tp_slice_cstr(cr->split_header), msg, NULL,
                                NULL, &key);
    else if (cr->split_cookie)
        sticky = tp_request_key(TP_HASH_COOKIE, tp_slice_cstr(cr->split_cookie), msg, NULL,
                                NULL, &key);
    if (!sticky)
        key = tp_worker_random(c->w);
    uint32_t total = rt->split_cumulative[rt->num_split - 1];
    uint32_t draw = (uint32_t)(key % total);
    for (size_t i = 0; i < rt->num_split; i++)
        if (draw < rt->split_cumulative[i])
            return rt->split_services[i];
    return rt->split_services[rt->num_split - 1];
}

static bool dispatch_request(struct tp_conn *c, const struct tp_http_message *msg,
                             const struct tp_router_match *m);

/* Route the parsed request, run its plugins and start proxying it. Returns false if an answer
 * was queued; true with c->state TP_CONN_PLUGIN when a plugin waits (the head stays in c->in). */
static bool start_request(struct tp_conn *c, const struct tp_http_message *msg)
{
    struct tp_request *req = &c->req;
    const struct tp_config *cfg = req->ws->snap->config;
    req->minor_version = msg->minor_version;
    /* method, normalised path and User-Agent (for the log) share one allocation */
    int ua = tp_http_header_find(msg, "user-agent", 10, 0);
    size_t ualen = ua >= 0 ? TP_MIN(msg->headers[ua].value.len, 1024) : 0;
    req->strings = malloc(msg->method.len + msg->path.len + ualen + 3);
    if (!req->strings)
        return respond_error(c, 500, "out of memory", true), false;
    req->method = req->strings;
    memcpy(req->method, msg->method.ptr, msg->method.len);
    req->method[msg->method.len] = '\0';
    req->path = req->method + msg->method.len + 1;
    req->path[0] = '\0';
    if (ua >= 0) {
        req->log_ua = req->path + msg->path.len + 1;
        memcpy(req->log_ua, msg->headers[ua].value.ptr, ualen);
        req->log_ua[ualen] = '\0';
    }
    req->is_head = TP_SLICE_IEQ(msg->method, "HEAD");
    req->idempotent = method_idempotent(msg->method);
    req->keepalive = msg->minor_version == 1 ? !(msg->flags & TP_HTTP_F_CONN_CLOSE)
                                              : !!(msg->flags & TP_HTTP_F_CONN_KEEPALIVE);
    req->req_framing = msg->framing;
    req->req_body_done = msg->framing == TP_HTTP_BODY_NONE;
    req->req_remaining = msg->content_length;
    tp_http_chunked_init(&req->req_chunked);
    req->upgrade = is_websocket_upgrade(msg);
    req->bytes_in = msg->head_len;
    tp_proxy_request_id(c, msg);
    if (msg->path.len == 0 || msg->path.ptr[0] != '/')
        return respond_error(c, 400, "unsupported request target", true), false;

    /* normalise before anything looks at the path (CASES.md B13–B17) */
    size_t plen = 0;
    if (tp_path_normalize(msg->path.ptr, msg->path.len, req->path, &plen, 0) != 0) {
        memcpy(req->path, msg->path.ptr, msg->path.len);
        req->path[msg->path.len] = '\0';
        return respond_error(c, 400, "invalid request path", true), false;
    }
    req->path[plen] = '\0';
    struct tp_slice host_in = msg->target_authority.len ? msg->target_authority : msg->host;
    char host[256];
    size_t hlen = 0;
    if (host_in.len > sizeof(host) ||
        (host_in.len && tp_host_canonicalize(host_in.ptr, host_in.len, host, &hlen) != 0))
        return respond_error(c, 400, "invalid host", true), false;

    struct header_ctx hctx = {msg};
    struct tp_router_request rr = {
        .host = {host, hlen},
        .path = {req->path, plen},
        .method = msg->method,
        .query = msg->query,
        .header_has = header_has,
        .header_ctx = &hctx,
    };
    struct tp_router_match m;
    int rc = tp_router_match(req->ws->snap->router, &rr, &m);
    if (rc == TP_EMETHOD)
        return respond_error(c, 405, "method not allowed", false), false;
    if (rc != 0)
        return respond_error(c, 404, "no route matched", false), false;
    req->route = m.udata;
    req->service = split_service(c, req->route, msg);
    if (msg->framing == TP_HTTP_BODY_CHUNKED && !te_is_plain_chunked(msg))
        return respond_error(c, 501, "transfer coding not implemented", true), false;
    const struct tp_conf_limits *lim = &cfg->limits;
    if (msg->framing == TP_HTTP_BODY_LENGTH && lim->max_body_bytes &&
        msg->content_length > lim->max_body_bytes)
        return respond_error(c, 413, "request body too large", true), false;
    if (req->route->chain) {
        bool trusted; /* plugins see the client address decided through trusted_proxies */
        tp_proxy_client_ip(c, cfg, msg, &trusted);
        req->peer_trusted = trusted;
        if (tp_chain_request_begin(c, req->route->chain, msg, &m) != 0)
            return respond_error(c, 500, "out of memory", true), false;
        enum tp_chain_result r = tp_chain_run_request(req->plugins);
        if (r == TP_CHAIN_SUSPENDED) {
            c->state = TP_CONN_PLUGIN;
            req->head_pending = msg->head_len;
            return true;
        }
        if (r == TP_CHAIN_RESPONDED)
            return respond_plugin(c), false;
    }
    return dispatch_request(c, msg, &m);
}

/* Past routing and plugins: circuit breaker, target, upstream head, connect. */
static bool dispatch_request(struct tp_conn *c, const struct tp_http_message *msg,
                             const struct tp_router_match *m)
{
    struct tp_request *req = &c->req;
    const struct tp_config *cfg = req->ws->snap->config;
    int rc;
    if (req->plugins) {
        /* later hooks (bodies, response, log) read the head after c->in moved on */
        if (tp_chain_detach_message(req->plugins) != 0)
            return respond_error(c, 500, "out of memory", true), false;
        struct tp_slice nm;
        if (tp_chain_method(req->plugins, &nm)) {
            req->is_head = TP_SLICE_IEQ(nm, "HEAD");
            req->idempotent = method_idempotent(nm);
        }
        req->max_body = tp_chain_max_body(req->plugins);
        if (tp_chain_wants_request_body(req->plugins) && msg->framing != TP_HTTP_BODY_NONE) {
            req->buffer_body = true;
            if (!(req->body_buf = evbuffer_new()))
                return respond_error(c, 500, "out of memory", true), false;
        }
    }
    if (req->service->circuit) {
        uint32_t ra = 0;
        int v = tp_circuit_acquire(req->service->circuit, tp_now_ms(), &ra);
        if (v != TP_CIRCUIT_ALLOW) {
            req->retry_after = v == TP_CIRCUIT_OPEN ? ra : 0;
            return respond_error(c, 503, v == TP_CIRCUIT_OPEN ? "circuit open"
                                                              : "too many requests to the service",
                                 false),
                   false;
        }
        req->svc_circuit = true;
    }


    /* pick the first target now: the head names its Host */
    atomic_fetch_add_explicit(&req->service->upstream->requests, 1, memory_order_relaxed);
    req->counted = true;
    if (req->service->upstream->algorithm == TP_LB_CONSISTENT_HASHING) {
        bool trusted; /* the key may be the client address: decide it before the pick */
        tp_proxy_client_ip(c, cfg, msg, &trusted);
        req->has_hash_key = tp_upstream_hash_key(req->service->upstream, msg, req->client_ip,
                                                 req->path, &req->hash_key);
    }
    req->target = acquire_target(c, 0, &req->held);
    if (!req->target && req->retry_after)
        return respond_error(c, 503, "circuit open", false), false;
    if (!req->target)
        return respond_error(c, 503, "no healthy upstream target", false), false;
    atomic_fetch_add_explicit(&req->target->active, 1, memory_order_relaxed);
    rc = tp_proxy_build_request_head(c, msg, m);
    if (rc == TP_ETOOBIG)
        return respond_error(c, 414, "request target too long", true), false;
    if (rc == TP_EINVAL)
        return respond_error(c, 400, "too many Connection options", true), false;
    if (rc != 0)
        return respond_error(c, 500, "out of memory", true), false;

    if (req->route->mirror && !req->buffer_body && !(msg->framing == TP_HTTP_BODY_LENGTH &&
                                msg->content_length > TP_MIRROR_BODY_MAX)) {
        req->mirror = tp_mirror_start(c, req->route->mirror);
        if (req->mirror && req->req_body_done)
            tp_mirror_detach(&req->mirror, true);
    }
    if ((msg->flags & TP_HTTP_F_EXPECT_CONTINUE) && msg->framing != TP_HTTP_BODY_NONE &&
        msg->minor_version == 1 && evbuffer_get_length(c->in) == msg->head_len) {
        /* we answer 100 ourselves and do not forward Expect: exactly one 100 (B45) */
        evbuffer_add(c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        req->bytes_out += 25;
    }
    c->state = TP_CONN_PROXY;
    if (!req->buffer_body) /* else once the plugins have the whole body */
        connect_upstream(c);
    return true;
}

/* A suspended plugin hook may go on (called by the chain runner from a deferred event). */
void tp_conn_resume(struct tp_conn *c)
{
    struct tp_request *req = &c->req;
    if (c->state != TP_CONN_PLUGIN)
        return;
    enum tp_chain_result r = tp_chain_run_request(req->plugins);
    if (r == TP_CHAIN_SUSPENDED)
        return;
    c->state = TP_CONN_HEAD;
    if (r == TP_CHAIN_RESPONDED)
        respond_plugin(c);
    else
        dispatch_request(c, tp_chain_message(req->plugins), tp_chain_match(req->plugins));
    evbuffer_drain(c->in, req->head_pending); /* the head's slices are no longer used */
    req->head_pending = 0;
    if (c->state == TP_CONN_HEAD && req->resp_done)
        finish_request(c);
    conn_progress(c);
}

/* Bring an upstream connection for req->target (from the pool or new) and queue the head. */
static void connect_upstream(struct tp_conn *c)
{
    struct tp_request *req = &c->req;
    struct tp_target *t = req->target;
    size_t idx = (size_t)(t - req->service->upstream->targets);
    if (idx < 64)
        req->tried_mask |= 1ull << idx;
    req->tries++;
    struct tp_pool *p = tp_pool_get(c->w, t);
    struct tp_upconn *u = p ? tp_pool_take(p) : NULL;
    if (!u) {
        if (t->circuit && !tp_circuit_connect_begin(t->circuit)) {
            /* max_pending: a local limit, not the target's failure */
            target_done(c, false);
            respond_error(c, 503, "too many pending connections to the upstream", false);
            return;
        }
        if (!p || tp_upconn_connect(c->w, p, &u) != 0) {
            if (t->circuit)
                tp_circuit_connect_end(t->circuit);
            u = NULL;
        } else {
            u->connected = false;
            u->pending = t->circuit;
        }
    } else {
        u->connected = true;
    }
    if (!u) {
        upstream_failed(c, true, false);
        return;
    }
    u->client = c;
    c->up = u;
    req->up_start_ms = tp_now_ms();
    evbuffer_add(u->out, req->head.ptr, req->head.len);
}

/*
 * Retry policy (issue 3): may this failed attempt be tried again on another target?
 * `cond` is the TP_RETRY_* condition that occurred. Never once the answer has started, never
 * for an upgrade or a request whose body has been (partly) sent; a stale pooled connection is
 * always retried (the request never reached the application) and is not counted. Otherwise
 * the condition must be in the service's retry_on, the method idempotent unless the route opts
 * in (connect failures excepted: nothing was sent), tries must remain, and the upstream's
 * retry budget must allow one more retry in flight.
 */
static bool retry_allowed(struct tp_conn *c, unsigned cond, bool stale)
{
    struct tp_request *req = &c->req;
    const struct tp_conf_service *svc = req->service->conf;
    struct tp_upstream *u = req->service->upstream;
    if (req->resp_started || req->upgrade)
        return false;
    if (req->req_framing != TP_HTTP_BODY_NONE && req->body_in > 0)
        return false;
    if (stale)
        return req->tries <= svc->retries + 1 + req->retries_done;
    if (!(svc->retry_on & cond) || req->retries_done >= svc->retries)
        return false;
    if (cond != TP_RETRY_CONNECT && !req->idempotent && !req->route->conf->retry_non_idempotent)
        return false;
    /* a refused connect sent nothing: retrying it is free, so the budget does not apply */
    if (svc->retry_budget && !req->is_retry && cond != TP_RETRY_CONNECT) {
        int live = atomic_load_explicit(&u->requests, memory_order_relaxed);
        int retrying = atomic_load_explicit(&u->retrying, memory_order_relaxed);
        int cap = TP_MAX(3, live * (int)svc->retry_budget / 100); /* Envoy: at least 3 */
        if (retrying + 1 > cap)
            return false;
    }
    return true;
}

static void retry_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tp_conn *c = arg;
    connect_upstream(c);
    conn_progress(c);
}

/*
 * Start the next attempt on `next` (the same target for a stale pooled connection).
 * Back-off with full jitter, uniform in [0, min(10 * base, base * 2^(n-1))] ms, before retries
 * after a timeout or an error status (the target may be overloaded); none after a connect
 * failure or a stale connection, where another target can answer at once.
 */
static void retry_to(struct tp_conn *c, struct tp_target *next, struct tp_circuit *admitted,
                     unsigned cond, bool stale)
{
    struct tp_request *req = &c->req;
    if (!stale) { /* the failed attempt counts against the old target's breaker */
        target_done(c, true);
        req->held = admitted;
    }
    if (!stale) {
        req->retries_done++;
        if (!req->is_retry) {
            req->is_retry = true;
            atomic_fetch_add_explicit(&req->service->upstream->retrying, 1,
                                      memory_order_relaxed);
        }
    }
    atomic_fetch_sub_explicit(&req->target->active, 1, memory_order_relaxed);
    req->target = next;
    atomic_fetch_add_explicit(&next->active, 1, memory_order_relaxed);
    if (tp_proxy_retarget_head(c) != 0) { /* Host names the new target */
        respond_error(c, 500, "out of memory", true);
        return;
    }
    uint32_t base = req->service->conf->retry_backoff_ms;
    if (stale || cond == TP_RETRY_CONNECT || cond == TP_RETRY_RESET || base == 0) {
        connect_upstream(c);
        return;
    }
    uint64_t cap = TP_MIN((uint64_t)base * 10, (uint64_t)base << TP_MIN(req->retries_done - 1, 10));
    uint64_t ms = tp_worker_random(c->w) % (cap + 1);
    if (!c->retry_ev && !(c->retry_ev = evtimer_new(c->w->base, retry_timer_cb, c))) {
        connect_upstream(c);
        return;
    }
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(c->retry_ev, &tv);
}

/* The next target for a retry (the same one after a stale connection), or NULL; *admitted
 * is its breaker admission (unchanged for a stale retry). */
static struct tp_target *retry_target(struct tp_conn *c, bool stale, struct tp_circuit **admitted)
{
    *admitted = c->req.held;
    return stale ? c->req.target : acquire_target(c, c->req.tried_mask, admitted);
}

/*
 * The upstream connection failed before any response byte reached the client. Retry when the
 * policy allows (retry_allowed), else answer 502 (504 for a timeout). Mid-response the client
 * connection is closed: the truncation is visible to it.
 */
static void upstream_failed(struct tp_conn *c, bool connect_failure, bool timeout)
{
    struct tp_request *req = &c->req;
    struct tp_upconn *u = c->up;
    if (req->buffer_resp) {
        /* the body was being collected for response_body hooks: nothing reached the client */
        req->buffer_resp = false;
        evbuffer_drain(req->body_buf, evbuffer_get_length(req->body_buf));
        tp_strbuf_free(&req->resp_head);
        tp_log(TP_LOG_WARN, "request %s: upstream %s broke its response body", req->request_id,
               req->target->addr_text);
        respond_error(c, 502, "invalid response from upstream", false);
        return;
    }
    bool reused = u && u->reused;
    bool nothing_back = !u || evbuffer_get_length(u->in) == 0;
    if (req->resp_started) {
        up_detach(c, false);
        req->keepalive = false;
        c->state = TP_CONN_CLOSING;
        return;
    }
    /* a stale pooled connection says nothing about the target's health */
    bool stale = reused && !timeout && !connect_failure && nothing_back;
    if (req->target && !stale)
        tp_health_passive(req->target->health, req->service->upstream->healthchecks, 0);
    unsigned cond = connect_failure ? TP_RETRY_CONNECT : timeout ? TP_RETRY_TIMEOUT
                                                                 : TP_RETRY_RESET;
    up_detach(c, false);
    struct tp_target *next;
    struct tp_circuit *admitted;
    if ((nothing_back || timeout) && retry_allowed(c, cond, stale) &&
        (next = retry_target(c, stale, &admitted)) != NULL) {
        retry_to(c, next, admitted, cond, stale);
        return;
    }
    target_done(c, true);
    if (timeout)
        respond_error(c, 504, "upstream timed out", false);
    else
        respond_error(c, 502, connect_failure ? "cannot connect to upstream"
                                              : "upstream closed the connection",
                      false);
}

/* ---------------------------------------------------------------------------------------- */
/* bodies                                                                                   */

static void add_chunk_header(struct evbuffer *out, size_t n)
{
    char line[20];
    size_t len = tp_fmt_hex(line, n, 0);
    line[len++] = '\r';
    line[len++] = '\n';
    evbuffer_add(out, line, len);
}

/*
 * Run a chunked decoder over src, moving the data to dst (re-framed as canonical chunks when
 * rechunk is set). Returns 1 at the end of the body, 0 when more input is needed, or a
 * negative error. *moved counts the data bytes moved.
 */
static int relay_chunked(struct tp_http_chunked *dec, struct evbuffer *src, struct evbuffer *dst,
                         bool rechunk, uint64_t *moved, uint64_t *consumed_total,
                         uint64_t limit)
{
    while (evbuffer_get_length(src) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(src, -1, NULL, &v, 1) < 1)
            return 0;
        size_t consumed = 0, off = 0, dlen = 0;
        int rc = tp_http_chunked_decode(dec, v.iov_base, v.iov_len, &consumed, &off, &dlen);
        if (rc < 0) /* an oversized chunk extension or trailer is malformed, not a body limit */
            return rc == TP_ETOOBIG ? TP_EINVAL : rc;
        if (limit && dlen && *moved + dlen > limit)
            return TP_ETOOBIG;
        evbuffer_drain(src, off);
        if (dlen) {
            if (rechunk)
                add_chunk_header(dst, dlen);
            evbuffer_remove_buffer(src, dst, dlen);
            if (rechunk)
                evbuffer_add(dst, "\r\n", 2);
            *moved += dlen;
        }
        if (consumed > off + dlen)
            evbuffer_drain(src, consumed - off - dlen);
        *consumed_total += consumed;
        if (rc == 1) {
            if (rechunk)
                evbuffer_add(dst, "0\r\n\r\n", 5);
            return 1;
        }
        if (consumed == 0)
            return 0;
    }
    return 0;
}

static void relay_request_bytes(struct tp_conn *c, struct tp_upconn *u);

/* The effective body limit: limits.max_body_bytes and a plugin's (request-size-limiting). */
static uint64_t body_limit(struct tp_conn *c)
{
    uint64_t a = limits_of(c)->max_body_bytes, b = c->req.max_body;
    return !a ? b : !b ? a : TP_MIN(a, b);
}

/* All of the body is here: hand it to the request_body hooks, then send head and body. */
static void send_collected_body(struct tp_conn *c)
{
    struct tp_request *req = &c->req;
    struct tp_plugin_body pb = {0};
    pb.len = evbuffer_get_length(req->body_buf);
    pb.cap = pb.len + 1;
    pb.ptr = malloc(pb.cap);
    if (!pb.ptr) {
        respond_error(c, 500, "out of memory", true);
        return;
    }
    evbuffer_remove(req->body_buf, pb.ptr, pb.len);
    enum tp_chain_result r = tp_chain_run_request_body(req->plugins, &pb);
    if (r == TP_CHAIN_RESPONDED) {
        free(pb.ptr);
        respond_plugin(c);
        return;
    }
    char num[20];
    int rc = tp_strbuf_puts(&req->head, "Content-Length: ");
    rc = rc ? rc : tp_strbuf_append(&req->head, num, tp_fmt_u64(num, pb.len));
    rc = rc ? rc : tp_strbuf_puts(&req->head, "\r\n\r\n");
    if (rc) {
        free(pb.ptr);
        respond_error(c, 500, "out of memory", true);
        return;
    }
    req->buffer_body = false; /* from here on, an ordinary request whose body was sent */
    connect_upstream(c);
    if (c->up)
        evbuffer_add(c->up->out, pb.ptr, pb.len);
    free(pb.ptr);
}

/* Collect the request body for request_body hooks (bounded by TP_PLUGIN_BODY_MAX). */
static void collect_request_body(struct tp_conn *c)
{
    struct tp_request *req = &c->req;
    uint64_t limit = body_limit(c);
    if (!limit || limit > TP_PLUGIN_BODY_MAX)
        limit = TP_PLUGIN_BODY_MAX;
    if (req->req_framing == TP_HTTP_BODY_LENGTH) {
        if (req->body_in + req->req_remaining > limit) {
            respond_error(c, 413, "request body too large", true);
            return;
        }
        size_t n = TP_MIN((uint64_t)evbuffer_get_length(c->in), req->req_remaining);
        evbuffer_remove_buffer(c->in, req->body_buf, n);
        req->req_remaining -= n;
        req->body_in += n;
        req->bytes_in += n;
        req->req_body_done = req->req_remaining == 0;
    } else {
        uint64_t consumed = 0;
        int rc = relay_chunked(&req->req_chunked, c->in, req->body_buf, false, &req->body_in,
                               &consumed, limit);
        req->bytes_in += consumed;
        if (rc == TP_ETOOBIG) {
            respond_error(c, 413, "request body too large", true);
            return;
        }
        if (rc < 0) {
            respond_error(c, 400, "malformed chunked request body", true);
            return;
        }
        req->req_body_done = rc == 1;
    }
    if (req->req_body_done)
        send_collected_body(c);
}

static void relay_request_body(struct tp_conn *c)
{
    struct tp_request *req = &c->req;
    struct tp_upconn *u = c->up;
    if (req->buffer_body && !req->req_body_done && !req->resp_done) {
        collect_request_body(c);
        return;
    }
    if (req->req_body_done || !u || !u->connected || req->resp_done)
        return;
    size_t before = evbuffer_get_length(u->out);
    relay_request_bytes(c, u);
    if (req->mirror) {
        tp_mirror_body(&req->mirror, u->out, before, evbuffer_get_length(u->out) - before);
        if (req->req_body_done)
            tp_mirror_detach(&req->mirror, true);
    }
}

/* Move request body bytes from the client to the upstream connection (re-framing chunks). */
static void relay_request_bytes(struct tp_conn *c, struct tp_upconn *u)
{
    struct tp_request *req = &c->req;
    if (req->req_framing == TP_HTTP_BODY_LENGTH) {
        size_t n = TP_MIN((uint64_t)evbuffer_get_length(c->in), req->req_remaining);
        if (n) {
            evbuffer_remove_buffer(c->in, u->out, n);
            req->req_remaining -= n;
            req->body_in += n;
            req->bytes_in += n;
        }
        req->req_body_done = req->req_remaining == 0;
        return;
    }
    uint64_t consumed = 0;
    uint64_t limit = body_limit(c);
    int rc = relay_chunked(&req->req_chunked, c->in, u->out, true, &req->body_in, &consumed,
                           limit);
    req->bytes_in += consumed;
    if (rc == 1) {
        req->req_body_done = true;
    } else if (rc == TP_ETOOBIG) {
        if (!req->resp_started)
            respond_error(c, 413, "request body too large", true);
        else
            c->state = TP_CONN_CLOSING;
    } else if (rc < 0) {
        if (!req->resp_started)
            respond_error(c, 400, "malformed chunked request body", true);
        else
            c->state = TP_CONN_CLOSING;
    }
}

/* Decide framing towards the client and whether the upstream connection can be kept. */
static void plan_response(struct tp_conn *c, const struct tp_http_message *msg)
{
    struct tp_request *req = &c->req;
    req->resp_framing = msg->framing;
    req->resp_remaining = msg->content_length;
    tp_http_chunked_init(&req->resp_chunked);
    bool up_keep = msg->minor_version == 1 ? !(msg->flags & TP_HTTP_F_CONN_CLOSE)
                                           : !!(msg->flags & TP_HTTP_F_CONN_KEEPALIVE);
    /* CL with TE is accepted (TE wins, RFC 9112 §6.3) but the connection is not trusted again */
    bool ambiguous = (msg->flags & TP_HTTP_F_HAS_CL) && (msg->flags & TP_HTTP_F_HAS_TE);
    req->up_reusable = up_keep && msg->framing != TP_HTTP_BODY_UNTIL_CLOSE && !req->upgrade &&
                       !ambiguous;
    if (msg->framing == TP_HTTP_BODY_CHUNKED || msg->framing == TP_HTTP_BODY_UNTIL_CLOSE) {
        if (req->minor_version == 1)
            req->resp_chunked_out = true;
        else
            req->keepalive = false; /* HTTP/1.0: the end of the body is the close */
    }
    if (!req->req_body_done)
        req->keepalive = false; /* answered before the body ended: do not read the rest */
}

/* Parse the upstream response head (skipping 1xx). Returns true when a head was consumed. */
static bool read_response_head(struct tp_conn *c)
{
    struct tp_request *req = &c->req;
    struct tp_upconn *u = c->up;
    const struct tp_conf_limits *lim = limits_of(c);
    size_t len = evbuffer_get_length(u->in);
    if (len == 0)
        return false;
    size_t cap = lim->max_header_bytes + 4;
    const char *p = (const char *)evbuffer_pullup(u->in, (ssize_t)TP_MIN(len, cap));
    struct tp_http_message msg = {0};
    struct tp_http_limits hl = {lim->max_header_bytes, lim->max_headers, lim->max_uri_bytes,
                                lim->max_field_bytes};
    msg.headers = tp_worker_headers(c->w, lim->max_headers);
    if (!msg.headers) {
        respond_error(c, 502, "out of memory", true);
        return false;
    }
    struct tp_slice sent = tp_slice_cstr(req->method); /* a HEAD answer has no body */
    if (req->plugins)
        tp_chain_method(req->plugins, &sent);
    int rc = tp_http_parse_response(p, TP_MIN(len, cap), sent, &msg, &hl);
    if (rc == TP_EAGAIN) {
        if (len > cap)
            respond_error(c, 502, "upstream response head too large", false);
        return false;
    }
    if (rc < 0) {
        tp_log(TP_LOG_WARN, "request %s: invalid response from %s", req->request_id,
               req->target->addr_text);
        tp_health_passive(req->target->health, req->service->upstream->healthchecks, 0);
        target_done(c, true);
        respond_error(c, 502, "invalid response from upstream", false);
        return false;
    }
    if (!req->up_first_byte_ms)
        req->up_first_byte_ms = tp_now_ms();
    if (msg.status < 200 && msg.status != 101) {
        if (++req->interim > TP_MAX_INTERIM_RESPONSES) {
            respond_error(c, 502, "too many interim responses from upstream", false);
            return false;
        }
        evbuffer_drain(u->in, msg.head_len); /* interim responses are not relayed */
        return true;
    }
    if ((msg.flags & TP_HTTP_F_HAS_TE) && msg.framing != TP_HTTP_BODY_NONE &&
        !te_is_plain_chunked(&msg)) {
        respond_error(c, 502, "unsupported transfer coding from upstream", false);
        return false;
    }
    if (msg.status == 101 && !req->upgrade) {
        respond_error(c, 502, "unexpected 101 from upstream", false);
        return false;
    }
    tp_health_passive(req->target->health, req->service->upstream->healthchecks, msg.status);
    unsigned cond = msg.status == 502 ? TP_RETRY_502 : msg.status == 503 ? TP_RETRY_503
                  : msg.status == 504 ? TP_RETRY_504 : 0;
    struct tp_target *next;
    struct tp_circuit *admitted;
    if (cond && retry_allowed(c, cond, false) &&
        (next = retry_target(c, false, &admitted)) != NULL) {
        /* nothing of this answer has reached the client: drop it and try another target */
        up_detach(c, false);
        retry_to(c, next, admitted, cond, false);
        return false;
    }
    target_done(c, msg.status >= 500);
    plan_response(c, &msg);
    struct tp_plugin_ctx *pc = req->plugins;
    unsigned hooks = pc ? req->route->chain->hooks : 0;
    if (hooks & TP_CHAIN_RESPONSE_HEADERS)
        tp_chain_run_response_headers(pc, &msg, msg.status, false);
    bool has_body = msg.framing != TP_HTTP_BODY_NONE && !req->is_head && msg.status != 101 &&
                    !(msg.framing == TP_HTTP_BODY_LENGTH && msg.content_length == 0);
    if ((hooks & TP_CHAIN_RESPONSE_BODY) && has_body && tp_chain_wants_response_body(pc)) {
        if (!req->body_buf && !(req->body_buf = evbuffer_new())) {
            respond_error(c, 502, "out of memory", true);
            return false;
        }
        req->buffer_resp = true; /* the head waits for the transformed body */
    }
    if (tp_proxy_build_response_head(c, &msg, req->buffer_resp ? NULL : c->out) != 0) {
        respond_error(c, 502, "out of memory", true);
        return false;
    }
    evbuffer_drain(u->in, msg.head_len);
    req->status = msg.status;
    req->resp_started = req->resp_head_done = true;
    if (msg.status == 101) {
        c->state = TP_CONN_TUNNEL;
        req->resp_done = true;
        return true;
    }
    if (req->resp_framing == TP_HTTP_BODY_NONE ||
        (req->resp_framing == TP_HTTP_BODY_LENGTH && req->resp_remaining == 0))
        req->resp_done = true;
    return true;
}

/* The whole response body is collected: response_body hooks, then head and body. */
static void send_collected_response(struct tp_conn *c)
{
    struct tp_request *req = &c->req;
    struct tp_plugin_body pb = {0};
    pb.len = evbuffer_get_length(req->body_buf);
    pb.cap = pb.len + 1;
    pb.ptr = malloc(pb.cap);
    req->buffer_resp = false;
    req->resp_done = true;
    if (!pb.ptr) {
        req->keepalive = false;
        c->state = TP_CONN_CLOSING;
        return;
    }
    evbuffer_remove(req->body_buf, pb.ptr, pb.len);
    tp_chain_run_response_body(req->plugins, &pb);
    req->resp_chunked_out = false;
    if (tp_proxy_close_response_head(c, pb.len, false, c->out) == 0) {
        evbuffer_add(c->out, pb.ptr, pb.len);
        req->bytes_out += pb.len;
    } else {
        req->keepalive = false;
        c->state = TP_CONN_CLOSING;
    }
    free(pb.ptr);
}

/* Too big to transform: send the head with the upstream's framing and stream from here on. */
static void give_up_collecting(struct tp_conn *c)
{
    struct tp_request *req = &c->req;
    bool length = req->resp_framing == TP_HTTP_BODY_LENGTH;
    size_t have = evbuffer_get_length(req->body_buf);
    req->buffer_resp = false;
    if (tp_proxy_close_response_head(c, have + req->resp_remaining, !length, c->out) != 0) {
        req->keepalive = false;
        c->state = TP_CONN_CLOSING;
        return;
    }
    if (!length && req->resp_chunked_out)
        add_chunk_header(c->out, have);
    req->bytes_out += have;
    evbuffer_add_buffer(c->out, req->body_buf);
    if (!length && req->resp_chunked_out)
        evbuffer_add(c->out, "\r\n", 2);
}

/* Collect the response body for response_body hooks. */
static void collect_response_body(struct tp_conn *c)
{
    struct tp_request *req = &c->req;
    struct tp_upconn *u = c->up;
    bool done = false;
    if (req->resp_framing == TP_HTTP_BODY_LENGTH) {
        size_t n = TP_MIN((uint64_t)evbuffer_get_length(u->in), req->resp_remaining);
        evbuffer_remove_buffer(u->in, req->body_buf, n);
        req->resp_remaining -= n;
        done = req->resp_remaining == 0;
        if (done && evbuffer_get_length(u->in))
            req->up_reusable = false;
    } else if (req->resp_framing == TP_HTTP_BODY_CHUNKED) {
        uint64_t moved = 0, consumed = 0;
        int rc = relay_chunked(&req->resp_chunked, u->in, req->body_buf, false, &moved,
                               &consumed, 0);
        if (rc < 0) {
            upstream_failed(c, false, false);
            return;
        }
        done = rc == 1;
        if (done && evbuffer_get_length(u->in))
            req->up_reusable = false;
    } else {
        evbuffer_add_buffer(req->body_buf, u->in); /* until close: upstream_eof ends it */
    }
    if (done)
        send_collected_response(c);
    else if (evbuffer_get_length(req->body_buf) > TP_PLUGIN_BODY_MAX)
        give_up_collecting(c);
}

static void relay_response_body(struct tp_conn *c)
{
    struct tp_request *req = &c->req;
    struct tp_upconn *u = c->up;
    size_t avail = evbuffer_get_length(u->in);
    if (req->resp_done || avail == 0)
        return;
    if (req->buffer_resp) {
        collect_response_body(c);
        return;
    }
    size_t before = evbuffer_get_length(c->out);
    if (req->resp_framing == TP_HTTP_BODY_LENGTH) {
        size_t n = TP_MIN((uint64_t)avail, req->resp_remaining);
        evbuffer_remove_buffer(u->in, c->out, n);
        req->resp_remaining -= n;
        req->resp_done = req->resp_remaining == 0;
        if (req->resp_done && evbuffer_get_length(u->in))
            req->up_reusable = false; /* bytes beyond the declared length */
    } else if (req->resp_framing == TP_HTTP_BODY_CHUNKED) {
        uint64_t moved = 0, consumed = 0;
        int rc = relay_chunked(&req->resp_chunked, u->in, c->out, req->resp_chunked_out, &moved,
                               &consumed, 0);
        if (rc == 1) {
            req->resp_done = true;
            if (evbuffer_get_length(u->in))
                req->up_reusable = false;
        } else if (rc < 0) {
            tp_log(TP_LOG_WARN, "request %s: bad chunked body from %s", req->request_id,
                   req->target->addr_text);
            upstream_failed(c, false, false);
        }
    } else { /* until close */
        size_t n = avail;
        if (req->resp_chunked_out)
            add_chunk_header(c->out, n);
        evbuffer_remove_buffer(u->in, c->out, n);
        if (req->resp_chunked_out)
            evbuffer_add(c->out, "\r\n", 2);
    }
    req->bytes_out += evbuffer_get_length(c->out) - before;
}

/* The upstream closed its side. */
static void upstream_eof(struct tp_conn *c)
{
    struct tp_request *req = &c->req;
    if (c->state == TP_CONN_TUNNEL)
        return;
    if (!req->resp_head_done) {
        upstream_failed(c, false, false);
        return;
    }
    if (req->resp_done)
        return;
    if (req->resp_framing == TP_HTTP_BODY_UNTIL_CLOSE && req->buffer_resp) {
        req->up_reusable = false;
        send_collected_response(c);
        return;
    }
    if (req->resp_framing == TP_HTTP_BODY_UNTIL_CLOSE) {
        if (req->resp_chunked_out) {
            evbuffer_add(c->out, "0\r\n\r\n", 5);
            req->bytes_out += 5;
        }
        req->resp_done = true;
        req->up_reusable = false;
        return;
    }
    upstream_failed(c, false, false); /* truncated body: close the client too */
}

/* ---------------------------------------------------------------------------------------- */
/* head parsing                                                                             */

/* Cheap check for the end of a head in bytes not yet scanned, so a slow client sending a
 * header a byte at a time does not make us re-parse the whole head on every read. */
static bool head_maybe_complete(struct tp_conn *c, const char *p, size_t len)
{
    /* the first bytes and the end of the request line are also worth a parse: garbage (a TLS
     * ClientHello, HTTP/0.9) is refused at once instead of waiting for header_timeout */
    bool first = c->scan_pos == 0 && !c->line_seen;
    size_t from = c->scan_pos > 2 ? c->scan_pos - 2 : 0;
    const char *q = p + from, *end = p + len;
    while ((q = memchr(q, '\n', (size_t)(end - q))) != NULL) {
        if (!c->line_seen) {
            c->line_seen = true;
            first = true;
        }
        if (q + 1 < end && (q[1] == '\n' || (q[1] == '\r' && q + 2 < end)))
            return true;
        q++;
    }
    c->scan_pos = len;
    return first;
}

static void parse_head(struct tp_conn *c)
{
    const struct tp_conf_limits *lim = limits_of(c);
    size_t len = evbuffer_get_length(c->in);
    /* enough bytes for the parser to tell a long request line (414) from a big head (431) */
    size_t cap = TP_MAX(lim->max_header_bytes, lim->max_uri_bytes + 64) + 4;
    size_t n = TP_MIN(len, cap);
    const char *p = (const char *)evbuffer_pullup(c->in, (ssize_t)n);
    if (!head_maybe_complete(c, p, n)) {
        bool check_uri = !c->uri_checked && n > lim->max_uri_bytes + 16;
        if (n < cap && n <= lim->max_header_bytes && !check_uri)
            return;
        c->uri_checked = true;
    }
    struct tp_http_message msg = {0};
    struct tp_http_limits hl = {lim->max_header_bytes, lim->max_headers, lim->max_uri_bytes,
                                lim->max_field_bytes};
    msg.headers = tp_worker_headers(c->w, lim->max_headers);
    if (!msg.headers)
        return;
    int status = 400;
    int rc = tp_http_parse_request(p, n, &msg, &hl, &status);
    if (rc == TP_EAGAIN)
        return;
    struct tp_request *req = &c->req;
    req->ws = tp_worker_snap_acquire(c->w);
    req->start_ms = tp_now_ms();
    if (rc < 0) {
        req->req_body_done = true;
        req->bytes_in = n;
        const char *why = status == 414   ? "request URI too long"
                          : status == 431 ? "request header fields too large"
                          : status == 505 ? "HTTP version not supported"
                          : status == 501 ? "transfer coding not implemented"
                                          : "malformed request";
        req->path = NULL;
        tp_log(TP_LOG_INFO, "client %s: %d %s", c->peer_text, status, why);
        respond_error(c, status, why, true);
        evbuffer_drain(c->in, len);
        return;
    }
    start_request(c, &msg);
    if (c->state != TP_CONN_PLUGIN)
        evbuffer_drain(c->in, msg.head_len);
}

/* ---------------------------------------------------------------------------------------- */
/* I/O, interest and timers                                                                 */

static void set_read(struct event *ev, bool *on, bool want)
{
    if (want == *on)
        return;
    if (want)
        event_add(ev, NULL);
    else
        event_del(ev);
    *on = want;
}

/* Set the deadline for `kind`: unchanged while the kind stays and `reset` is false. */
static void arm_timer(struct tp_deadline *d, enum tp_timer_kind kind, uint32_t ms, bool reset)
{
    if (kind == TP_T_NONE)
        tp_deadline_clear(d);
    else if (kind != d->kind || reset)
        tp_deadline_set(d, kind, ms);
}

static void update_client_timer(struct tp_conn *c)
{
    const struct tp_conf_limits *lim = limits_of(c);
    struct tp_request *req = &c->req;
    enum tp_timer_kind k = TP_T_NONE;
    uint32_t ms = 0;
    bool pending_out = evbuffer_get_length(c->out) > 0;
    switch (c->state) {
    case TP_CONN_HEAD:
        if (c->got_first_byte || c->num_requests == 0)
            k = TP_T_HEADER, ms = lim->header_timeout_ms;
        else
            k = TP_T_IDLE, ms = lim->keepalive_timeout_ms;
        if (pending_out && k == TP_T_IDLE)
            k = TP_T_SEND, ms = lim->send_timeout_ms;
        break;
    case TP_CONN_PROXY:
        if (pending_out && (c->wev && c->write_on))
            k = TP_T_SEND, ms = lim->send_timeout_ms;
        else if (!req->req_body_done && c->read_on)
            k = TP_T_BODY, ms = lim->body_timeout_ms;
        break;
    case TP_CONN_TUNNEL:
        k = TP_T_TUNNEL, ms = lim->tunnel_idle_timeout_ms;
        break;
    case TP_CONN_CLOSING:
        k = TP_T_SEND, ms = lim->send_timeout_ms;
        break;
    case TP_CONN_LINGER:
        k = TP_T_LINGER, ms = TP_LINGER_MS;
        break;
    case TP_CONN_PLUGIN:
        k = TP_T_PLUGIN, ms = TP_PLUGIN_WAIT_MS;
        break;
    }
    /* header and idle deadlines count from their start, not from the last byte (B49) */
    bool resettable = k == TP_T_BODY || k == TP_T_SEND || k == TP_T_TUNNEL;
    arm_timer(&c->tmo, k, ms, resettable && c->progress);
    c->progress = false;
}

static void update_upstream_timer(struct tp_conn *c)
{
    struct tp_upconn *u = c->up;
    if (!u)
        return;
    const struct tp_conf_service *svc = c->req.service->conf;
    enum tp_timer_kind k = TP_T_NONE;
    uint32_t ms = 0;
    if (!u->connected)
        k = TP_T_UP_CONNECT, ms = svc->connect_timeout_ms;
    else if (c->state == TP_CONN_TUNNEL)
        k = TP_T_NONE;
    else if (evbuffer_get_length(u->out) > 0)
        k = TP_T_UP_WRITE, ms = svc->write_timeout_ms;
    else if (!c->req.resp_done)
        k = TP_T_UP_READ, ms = svc->read_timeout_ms;
    if (k == TP_T_UP_READ && !c->req.resp_head_done && svc->retry_timeout_ms)
        ms = TP_MIN(ms, svc->retry_timeout_ms); /* per-try wait for the answer */
    arm_timer(&u->tmo, k, ms, u->progress);
    u->progress = false;
}

static bool flush_out(int fd, struct evbuffer *out, bool *progress, bool *failed)
{
    while (evbuffer_get_length(out) > 0) {
        int n = evbuffer_write(out, fd);
        if (n > 0) {
            *progress = true;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return false;
        if (n < 0 && errno == EINTR)
            continue;
        *failed = true;
        return false;
    }
    return true;
}

static void tunnel_relay(struct tp_conn *c)
{
    struct tp_upconn *u = c->up;
    if (!u)
        return;
    if (evbuffer_get_length(c->in))
        evbuffer_add_buffer(u->out, c->in);
    if (evbuffer_get_length(u->in)) {
        c->req.bytes_out += evbuffer_get_length(u->in);
        evbuffer_add_buffer(c->out, u->in);
    }
}

/* Move bytes as far as they go. Returns false if the connection was freed. */
static bool advance(struct tp_conn *c)
{
    for (int guard = 0; guard < 64; guard++) {
        struct tp_request *req = &c->req;
        switch (c->state) {
        case TP_CONN_HEAD:
            if (evbuffer_get_length(c->out) > TP_IO_HIGH_WATER || evbuffer_get_length(c->in) == 0)
                return true;
            parse_head(c);
            if (c->state == TP_CONN_HEAD && !req->resp_done)
                return true; /* incomplete head */
            break;
        case TP_CONN_PROXY:
            relay_request_body(c);
            if (c->state != TP_CONN_PROXY)
                break;
            if (c->up && !req->resp_head_done)
                while (c->up && !req->resp_head_done && read_response_head(c))
                    ;
            if (c->up && req->resp_head_done && !req->resp_done)
                relay_response_body(c);
            if (c->state != TP_CONN_PROXY && c->state != TP_CONN_TUNNEL)
                break;
            if (c->state == TP_CONN_TUNNEL) {
                tunnel_relay(c);
                return true;
            }
            if (c->up && c->up->eof && !req->resp_done) {
                upstream_eof(c);
                continue;
            }
            if (!req->resp_done)
                return true;
            finish_request(c); /* closes the client when the body was not read to its end */
            break;
        case TP_CONN_TUNNEL:
            tunnel_relay(c);
            return true;
        case TP_CONN_CLOSING:
        case TP_CONN_LINGER:
        case TP_CONN_PLUGIN:
            return true;
        }
        if (c->state == TP_CONN_HEAD && req->resp_done) {
            /* an error answered in HEAD state (parse failure): finish it */
            finish_request(c);
        }
    }
    return true;
}

/*
 * Read what the socket has into buf without evbuffer_read's FIONREAD ioctl (one syscall per
 * read saved): reserve up to TP_READ_CHUNK in at most two extents and readv into them.
 * Returns bytes read, 0 at EOF, -1 with errno set.
 */
static int tp_evbuffer_read(struct evbuffer *buf, int fd, uint32_t *hint)
{
    /* adaptive size: 16 KiB chunks for requests and small answers (a 64 KiB chunk per read is
     * a large malloc/free pair per request), 64 KiB once a read fills its reservation */
    uint32_t want = *hint ? *hint : 16384;
    struct evbuffer_iovec v[2];
    int nv = evbuffer_reserve_space(buf, want, v, 2);
    if (nv <= 0) {
        errno = ENOMEM;
        return -1;
    }
    ssize_t n;
    do {
        n = readv(fd, (struct iovec *)v, nv);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
        evbuffer_commit_space(buf, v, 0);
        return (int)n;
    }
    *hint = (size_t)n >= want ? TP_READ_CHUNK : (n < 4096 ? 16384 : want);
    size_t left = (size_t)n;
    for (int i = 0; i < nv; i++) {
        if (v[i].iov_len > left)
            v[i].iov_len = left;
        left -= v[i].iov_len;
    }
    evbuffer_commit_space(buf, v, nv);
    return (int)n;
}

static void conn_progress(struct tp_conn *c)
{
    advance(c);
    struct tp_request *req = &c->req;
    bool failed = false;
    flush_out(c->fd, c->out, &c->progress, &failed);
    if (failed) {
        conn_free(c);
        return;
    }
    struct tp_upconn *u = c->up;
    if (u && u->connected) {
        bool ufailed = false;
        flush_out(u->fd, u->out, &u->progress, &ufailed);
        if (ufailed) {
            if (c->state == TP_CONN_TUNNEL) {
                c->state = TP_CONN_CLOSING;
                up_detach(c, false);
            } else {
                upstream_failed(c, false, false);
                advance(c);
                flush_out(c->fd, c->out, &c->progress, &failed);
            }
            u = c->up;
        }
    }
    size_t out_len = evbuffer_get_length(c->out);
    if (c->state == TP_CONN_LINGER) {
        evbuffer_drain(c->in, evbuffer_get_length(c->in));
        if (c->peer_closed) {
            conn_free(c);
            return;
        }
    }
    if (c->state == TP_CONN_CLOSING && out_len == 0) {
        if (c->peer_closed) {
            conn_free(c);
            return;
        }
        /* Lingering close: a close() with unread input would send a RST that can destroy the
         * response before the client reads it (e.g. a 413 during an upload). Shut our side,
         * then discard what the client still sends, for at most TP_LINGER_MS. */
        up_detach(c, false);
        shutdown(c->fd, SHUT_WR);
        c->state = TP_CONN_LINGER;
        evbuffer_drain(c->in, evbuffer_get_length(c->in));
    }
    if (c->state == TP_CONN_TUNNEL && (c->peer_closed || (u && u->eof) || !u)) {
        bool drained = out_len == 0 && (!u || evbuffer_get_length(u->out) == 0);
        if (drained || !u) {
            conn_free(c);
            return;
        }
    }
    if (c->state == TP_CONN_HEAD && c->peer_closed && out_len == 0) {
        conn_free(c);
        return;
    }
    if (c->state == TP_CONN_PROXY && c->peer_closed && !req->req_body_done) {
        conn_free(c); /* client went away mid-request */
        return;
    }
    /* interest: keep reads enabled across requests (toggling costs an epoll_ctl each time);
     * stop only for back-pressure or a full head buffer */
    size_t up_out = u ? evbuffer_get_length(u->out) : 0;
    size_t in_len = evbuffer_get_length(c->in);
    bool want_client_read = !c->peer_closed && out_len < TP_IO_HIGH_WATER;
    if (c->state == TP_CONN_LINGER)
        want_client_read = !c->peer_closed;
    else if (c->state == TP_CONN_PLUGIN)
        want_client_read = false; /* the head's bytes must stay where the plugin saw them */
    else if (c->state == TP_CONN_HEAD)
        want_client_read = want_client_read && in_len <= limits_of(c)->max_header_bytes + 4;
    else
        want_client_read = want_client_read && in_len < TP_IO_HIGH_WATER &&
                           up_out < TP_IO_HIGH_WATER && c->state != TP_CONN_CLOSING;
    set_read(c->rev, &c->read_on, want_client_read);
    set_read(c->wev, &c->write_on, out_len > 0);
    if (u) {
        bool want_up_read = u->connected && !u->eof && out_len < TP_IO_HIGH_WATER;
        set_read(u->rev, &u->read_on, want_up_read);
        set_read(u->wev, &u->write_on, !u->connected || up_out > 0);
        update_upstream_timer(c);
    }
    update_client_timer(c);
}

static void client_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tp_conn *c = arg;
    int n = tp_evbuffer_read(c->in, fd, &c->read_hint);
    if (n > 0) {
        c->progress = true;
        if (c->state == TP_CONN_HEAD)
            c->got_first_byte = true;
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        c->peer_closed = true;
        if (n < 0 && c->state != TP_CONN_PROXY) {
            conn_free(c);
            return;
        }
    }
    conn_progress(c);
}

static void client_write_cb(evutil_socket_t fd, short what, void *arg)
{
    conn_progress(arg);
}

static void client_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tp_conn *c = arg;
    enum tp_timer_kind k = tp_deadline_fired(&c->tmo);
    if (k == TP_T_NONE)
        return;
    if (k == TP_T_HEADER && (c->got_first_byte || evbuffer_get_length(c->in))) {
        c->req.ws = tp_worker_snap_acquire(c->w);
        c->req.start_ms = tp_now_ms();
        c->req.req_body_done = true;
        respond_error(c, 408, "request header timeout", true);
        finish_request(c);
        conn_progress(c);
        return;
    }
    if (k == TP_T_PLUGIN) {
        tp_log(TP_LOG_ERROR, "request %s: a plugin did not resume within %d ms",
               c->req.request_id, TP_PLUGIN_WAIT_MS);
        evbuffer_drain(c->in, c->req.head_pending);
        c->state = TP_CONN_HEAD;
        respond_error(c, 500, "An unexpected error occurred", true);
        finish_request(c);
        conn_progress(c);
        return;
    }
    if (k == TP_T_BODY && !c->req.resp_started) {
        respond_error(c, 408, "request body timeout", true);
        c->state = TP_CONN_CLOSING;
        conn_progress(c);
        return;
    }
    if (k == TP_T_SEND || k == TP_T_LINGER) {
        /* the client stopped reading: reset instead of leaving our unsent bytes (up to the
         * socket buffer) to the kernel for minutes */
        struct linger lg = {1, 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    conn_free(c); /* idle keep-alive, send, linger or tunnel timeout: close */
}

void tp_up_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tp_upconn *u = arg;
    struct tp_conn *c = u->client;
    if (!c) {
        tp_upconn_close(u); /* idle pooled connection closed by the upstream, or noise */
        return;
    }
    int n = tp_evbuffer_read(u->in, fd, &u->read_hint);
    if (n > 0) {
        u->progress = true;
        if (c->state == TP_CONN_TUNNEL)
            c->progress = true;
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        u->eof = true;
        set_read(u->rev, &u->read_on, false);
        if (c->state != TP_CONN_TUNNEL && !c->req.resp_head_done) {
            upstream_failed(c, false, false);
        } else if (c->state != TP_CONN_TUNNEL) {
            advance(c); /* relay what is buffered first */
            if (c->up == u && !c->req.resp_done)
                upstream_eof(c);
        }
    }
    conn_progress(c);
}

void tp_up_write_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tp_upconn *u = arg;
    struct tp_conn *c = u->client;
    if (!c) {
        tp_upconn_close(u);
        return;
    }
    if (!u->connected) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
            tp_log(TP_LOG_WARN, "connect to %s failed: %s", c->req.target->addr_text,
                   strerror(err ? err : errno));
            upstream_failed(c, true, false);
            conn_progress(c);
            return;
        }
        u->connected = true;
        u->progress = true;
        if (u->pending) {
            tp_circuit_connect_end(u->pending);
            u->pending = NULL;
        }
    }
    conn_progress(c);
}

void tp_up_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tp_upconn *u = arg;
    struct tp_conn *c = u->client;
    enum tp_timer_kind k = u->tmo.kind;
    if (tp_deadline_fired(&u->tmo) == TP_T_NONE)
        return;
    if (!c) {
        tp_upconn_close(u); /* pool idle timeout */
        return;
    }
    tp_log(TP_LOG_WARN, "request %s: upstream %s %s timeout", c->req.request_id,
           c->req.target->addr_text,
           k == TP_T_UP_CONNECT ? "connect" : k == TP_T_UP_WRITE ? "write" : "read");
    upstream_failed(c, k == TP_T_UP_CONNECT, true);
    conn_progress(c);
}

void tp_conn_accept(struct tp_worker *w, int fd, const struct sockaddr_storage *peer,
                    uint16_t local_port)
{
    struct tp_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        tp_worker_conn_closed(w);
        return;
    }
    c->w = w;
    c->fd = fd;
    c->peer = *peer;
    c->local_port = local_port;
    char ip[INET6_ADDRSTRLEN] = "";
    if (peer->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)peer)->sin_addr, ip, sizeof(ip));
    else if (peer->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)peer)->sin6_addr, ip, sizeof(ip));
    snprintf(c->peer_text, sizeof(c->peer_text), "%s", ip);
    c->rev = event_new(w->base, fd, EV_READ | EV_PERSIST, client_read_cb, c);
    c->wev = event_new(w->base, fd, EV_WRITE | EV_PERSIST, client_write_cb, c);
    c->tmo.ev = evtimer_new(w->base, client_timer_cb, c);
    c->in = evbuffer_new();
    c->out = evbuffer_new();
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    if (!c->rev || !c->wev || !c->tmo.ev || !c->in || !c->out) {
        conn_free(c);
        return;
    }
    c->state = TP_CONN_HEAD;
    conn_progress(c);
}
