/*
 * turnpike — the plugin chain runner and the per-request plugin API (include/turnpike/plugin.h).
 *
 * A request on a route with plugins gets one tp_plugin_ctx: an arena for everything plugins
 * allocate, the header edits they make (applied when the upstream head is built), the identity
 * they establish, and the runner's position (phase, index) so that a suspended hook can be
 * called again. Routes without plugins never allocate one.
 *
 * Authentication plugins follow "any of" semantics: once a real consumer is known, later auth
 * plugins are skipped; a failing auth plugin followed by another one has its answer deferred,
 * and the first deferred failure is sent only when no auth plugin succeeds.
 */
#include "plugins/chain.h"
#include "http/proxy.h"
#include "turnpike/consumer.h"
#include "turnpike/log.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


/* ------------------------------------------------------------------------------------------ */
/* chain building (snapshot, main thread)                                                     */

unsigned tp_chain_specificity(bool consumer, bool route, bool service)
{
    /* Kong: consumer+route+service > consumer+route > consumer+service > route+service >
     * consumer > route > service > global */
    if (consumer)
        return route && service ? 8 : route ? 7 : service ? 6 : 4;
    return route && service ? 5 : route ? 3 : service ? 2 : 1;
}

static int order_rank(const char *const *order, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(order[i], name) == 0)
            return (int)i;
    return -1;
}

/* Sort by explicit order, then priority (higher first), then name. */
static void sort_items(const struct tp_plugin_instance **items, size_t n, const char *const *order,
                       size_t num_order)
{
    for (size_t i = 1; i < n; i++) {
        const struct tp_plugin_instance *x = items[i];
        int rx = order_rank(order, num_order, x->plugin->name);
        size_t j = i;
        while (j > 0) {
            const struct tp_plugin_instance *y = items[j - 1];
            int ry = order_rank(order, num_order, y->plugin->name);
            bool before;
            if (rx >= 0 || ry >= 0)
                before = rx >= 0 && (ry < 0 || rx < ry);
            else if (x->plugin->priority != y->plugin->priority)
                before = x->plugin->priority > y->plugin->priority;
            else
                before = strcmp(x->plugin->name, y->plugin->name) < 0;
            if (!before)
                break;
            items[j] = y;
            j--;
        }
        items[j] = x;
    }
}

static bool scope_matches(const struct tp_plugin_instance *pi, const char *service,
                          const char *route)
{
    return (!pi->service || (service && strcmp(pi->service, service) == 0)) &&
           (!pi->route || (route && strcmp(pi->route, route) == 0));
}

static unsigned hooks_of(const struct tp_plugin *p)
{
    return (p->rewrite ? TP_CHAIN_REWRITE : 0) | (p->access ? TP_CHAIN_ACCESS : 0) |
           (p->request_body ? TP_CHAIN_REQUEST_BODY : 0) |
           (p->response_headers ? TP_CHAIN_RESPONSE_HEADERS : 0) |
           (p->response_body ? TP_CHAIN_RESPONSE_BODY : 0) | (p->log ? TP_CHAIN_LOG : 0);
}

int tp_chain_build(struct tp_chain *chain, const struct tp_plugin_instance *all, size_t n,
                   const char *service, const char *route, const char *const *order,
                   size_t num_order)
{
    memset(chain, 0, sizeof(*chain));
    chain->order = order;
    chain->num_order = num_order;
    if (n == 0)
        return 0;
    const struct tp_plugin_instance **items = calloc(n, sizeof(*items));
    if (!items)
        return TP_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const struct tp_plugin_instance *pi = &all[i];
        if (pi->consumer || !scope_matches(pi, service, route))
            continue;
        size_t j;
        for (j = 0; j < k; j++)
            if (items[j]->plugin == pi->plugin)
                break;
        if (j < k) {
            if (pi->specificity > items[j]->specificity)
                items[j] = pi;
        } else {
            items[k++] = pi;
        }
    }
    if (k == 0) {
        free(items);
        return 0;
    }
    sort_items(items, k, order, num_order);
    chain->items = items;
    chain->n = k;
    for (size_t i = 0; i < k; i++)
        chain->hooks |= hooks_of(items[i]->plugin);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* per-request state                                                                          */

struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    _Alignas(16) char data[];
};

enum edit_op { EDIT_SET, EDIT_ADD, EDIT_REMOVE };

struct edit {
    struct edit *next;
    enum edit_op op;
    struct tp_slice name;
    struct tp_slice value;
};

struct edits {
    struct edit *head, *tail;
};

struct local_resp {
    int status;                 /* 0 = none */
    const char *content_type;
    const char *body;
    size_t len;
    struct edits headers;
    const char *sec_reason;     /* security-log line waiting for the outcome */
    int sec_status;
    const char *sec_plugin;
};

struct tp_plugin_waiter {
    struct tp_plugin_waiter *prev, *next;
    struct tp_plugin_wait_list *list;
    struct tp_plugin_ctx *ctx;
};

enum phase { PH_REWRITE = 0, PH_ACCESS, PH_DONE };

struct tp_plugin_ctx {
    struct tp_conn *c;
    struct arena_block *arena;
    const struct tp_http_message *msg;
    struct tp_http_message msg_copy;
    struct tp_router_match match;
    const struct tp_chain *chain;
    const struct tp_plugin_instance **items; /* effective chain (consumer plugins merged) */
    size_t n;
    unsigned hooks;                          /* TP_CHAIN_* of items (derived, kept in step) */
    void **data;                             /* per item */
    enum phase phase;
    size_t idx;                              /* next item to run in phase */
    size_t cur;                              /* item whose hook is running */
    bool in_auth;                            /* an auth plugin's access hook is running */
    /* identity */
    const struct tp_consumer *consumer;
    const struct tp_credential *credential;
    bool anonymous, consumer_changed;
    bool authenticated;                      /* an auth plugin accepted the request (with or
                                                without a consumer) */
    json_t *claims;
    bool detached;                           /* msg_copy no longer points into client input */
    struct tp_slice method;                  /* tp_plugin_set_method, else len 0 */
    /* upstream request edits */
    struct edits req_edits;
    struct tp_slice query, upstream_path;
    bool query_set, path_set;
    uint64_t max_body;
    bool want_req_body, want_resp_body;
    /* local answer and the deferred auth failure */
    struct local_resp local, deferred;
    /* response */
    const struct tp_http_message *resp_msg;
    int resp_status;
    bool resp_local;
    struct edits resp_edits;
    /* suspension */
    struct tp_plugin_waiter waiter;
    struct event *resume_ev;
    bool suspended;
};

static void *arena_alloc(struct tp_plugin_ctx *ctx, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    struct arena_block *b = ctx->arena;
    if (!b || b->cap - b->used < size) {
        size_t cap = size > 3072 ? size : 4096 - sizeof(*b);
        struct arena_block *nb = malloc(sizeof(*nb) + cap);
        if (!nb)
            return NULL;
        nb->cap = cap;
        nb->used = 0;
        nb->next = b;
        ctx->arena = b = nb;
    }
    void *p = b->data + b->used;
    b->used += size;
    return p;
}

static struct tp_slice arena_dup(struct tp_plugin_ctx *ctx, const char *p, size_t len)
{
    char *d = arena_alloc(ctx, len + 1);
    if (!d)
        return (struct tp_slice){NULL, 0};
    if (len)
        memcpy(d, p, len);
    d[len] = '\0';
    return (struct tp_slice){d, len};
}

void *tp_plugin_alloc(struct tp_plugin_ctx *ctx, size_t size)
{
    return arena_alloc(ctx, size ? size : 1);
}

static void arena_free(struct tp_plugin_ctx *ctx)
{
    struct arena_block *b = ctx->arena;
    while (b) {
        struct arena_block *next = b->next;
        free(b);
        b = next;
    }
    ctx->arena = NULL;
}

int tp_chain_request_begin(struct tp_conn *c, const struct tp_chain *chain,
                           const struct tp_http_message *msg, const struct tp_router_match *m)
{
    struct tp_plugin_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx)
        return TP_ENOMEM;
    ctx->c = c;
    ctx->msg = msg;
    ctx->match = *m;
    ctx->chain = chain;
    ctx->items = chain->items;
    ctx->n = chain->n;
    ctx->hooks = chain->hooks;
    ctx->data = arena_alloc(ctx, chain->n * sizeof(void *));
    if (!ctx->data) {
        free(ctx);
        return TP_ENOMEM;
    }
    memset(ctx->data, 0, chain->n * sizeof(void *));
    ctx->waiter.ctx = ctx;
    c->req.plugins = ctx;
    return 0;
}

int tp_chain_keep_message(struct tp_plugin_ctx *ctx)
{
    if (ctx->msg == &ctx->msg_copy)
        return 0;
    /* the header slices point into the client buffer, which the proxy leaves untouched (and
     * unread) while the request waits; only the array (worker scratch) must be copied */
    const struct tp_http_message *m = ctx->msg;
    struct tp_http_header *h = arena_alloc(ctx, m->num_headers * sizeof(*h) + 1);
    if (!h)
        return TP_ENOMEM;
    memcpy(h, m->headers, m->num_headers * sizeof(*h));
    ctx->msg_copy = *m;
    ctx->msg_copy.headers = h;
    ctx->msg = &ctx->msg_copy;
    return 0;
}

/* Rebase one slice from [lo, ...) to copy. */
static void rebase(struct tp_slice *s, const char *lo, const char *copy)
{
    if (s->ptr && s->len)
        s->ptr = copy + (s->ptr - lo);
}

static void span(const struct tp_slice *s, const char **lo, const char **hi)
{
    if (!s->ptr || !s->len)
        return;
    if (!*lo || s->ptr < *lo)
        *lo = s->ptr;
    if (!*hi || s->ptr + s->len > *hi)
        *hi = s->ptr + s->len;
}

unsigned tp_chain_hooks(const struct tp_plugin_ctx *ctx)
{
    return ctx->hooks;
}

int tp_chain_detach_message(struct tp_plugin_ctx *ctx)
{
    /* only hooks that run after dispatch read the head once c->in has moved on */
    unsigned later = TP_CHAIN_REQUEST_BODY | TP_CHAIN_RESPONSE_HEADERS |
                     TP_CHAIN_RESPONSE_BODY | TP_CHAIN_LOG;
    if (ctx->detached || !(ctx->hooks & later))
        return 0;
    int rc = tp_chain_keep_message(ctx);
    if (rc)
        return rc;
    /* every slice points into one contiguous head: copy that range once and rebase */
    struct tp_http_message *m = &ctx->msg_copy;
    const char *lo = NULL, *hi = NULL;
    span(&m->method, &lo, &hi);
    span(&m->target, &lo, &hi);
    span(&m->path, &lo, &hi);
    span(&m->query, &lo, &hi);
    span(&m->target_authority, &lo, &hi);
    span(&m->host, &lo, &hi);
    for (size_t i = 0; i < m->num_headers; i++) {
        span(&m->headers[i].name, &lo, &hi);
        span(&m->headers[i].value, &lo, &hi);
    }
    if (lo) {
        char *copy = arena_alloc(ctx, (size_t)(hi - lo));
        if (!copy)
            return TP_ENOMEM;
        memcpy(copy, lo, (size_t)(hi - lo));
        rebase(&m->method, lo, copy);
        rebase(&m->target, lo, copy);
        rebase(&m->path, lo, copy);
        rebase(&m->query, lo, copy);
        rebase(&m->target_authority, lo, copy);
        rebase(&m->host, lo, copy);
        for (size_t i = 0; i < m->num_headers; i++) {
            rebase(&m->headers[i].name, lo, copy);
            rebase(&m->headers[i].value, lo, copy);
        }
    }
    /* captures point into the request's normalised path, which lives as long as the request */
    ctx->detached = true;
    return 0;
}

const struct tp_http_message *tp_chain_message(const struct tp_plugin_ctx *ctx)
{
    return ctx->msg;
}

const struct tp_router_match *tp_chain_match(const struct tp_plugin_ctx *ctx)
{
    return &ctx->match;
}

static void waiter_unlink(struct tp_plugin_waiter *w)
{
    if (!w->list)
        return;
    if (w->prev)
        w->prev->next = w->next;
    else
        w->list->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->prev = w->next = NULL;
    w->list = NULL;
}

void tp_chain_request_end(struct tp_plugin_ctx *ctx)
{
    if (!ctx)
        return;
    waiter_unlink(&ctx->waiter);
    if (ctx->resume_ev)
        event_free(ctx->resume_ev);
    if (ctx->claims)
        json_decref(ctx->claims);
    arena_free(ctx);
    free(ctx);
}

/* ------------------------------------------------------------------------------------------ */
/* reading the request                                                                        */

struct tp_slice tp_plugin_method(const struct tp_plugin_ctx *ctx)
{
    return ctx->method.len ? ctx->method : ctx->msg->method;
}

int tp_plugin_set_method(struct tp_plugin_ctx *ctx, struct tp_slice method)
{
    /* a token (RFC 9110 §9.1, §5.6.2), upper-case letters as every registered method */
    if (method.len == 0 || method.len > 32)
        return TP_EINVAL;
    for (size_t i = 0; i < method.len; i++)
        if (!((method.ptr[i] >= 'A' && method.ptr[i] <= 'Z') || method.ptr[i] == '-' ||
              method.ptr[i] == '_'))
            return TP_EINVAL;
    struct tp_slice m = arena_dup(ctx, method.ptr, method.len);
    if (!m.ptr)
        return TP_ENOMEM;
    ctx->method = m;
    return 0;
}

bool tp_chain_method(const struct tp_plugin_ctx *ctx, struct tp_slice *method)
{
    if (ctx->method.len)
        *method = ctx->method;
    return ctx->method.len != 0;
}

struct tp_slice tp_plugin_path(const struct tp_plugin_ctx *ctx)
{
    return tp_slice_cstr(ctx->c->req.path);
}

struct tp_slice tp_plugin_query(const struct tp_plugin_ctx *ctx)
{
    return ctx->query_set ? ctx->query : ctx->msg->query;
}

static bool name_eq(struct tp_slice a, struct tp_slice b)
{
    return tp_slice_eq_nocase(a, b.ptr, b.len);
}

/* The last SET/REMOVE edit of name, or NULL: everything before it (and the original values)
 * is gone. */
static const struct edit *last_reset(const struct edits *e, struct tp_slice name)
{
    const struct edit *r = NULL;
    for (const struct edit *x = e->head; x; x = x->next)
        if (x->op != EDIT_ADD && name_eq(x->name, name))
            r = x;
    return r;
}

/* The idx-th value of name in originals (count n via at()) followed by the edits. */
static bool edited_value(const struct edits *e, struct tp_slice name, size_t idx,
                         const struct tp_http_message *orig, struct tp_slice *value)
{
    const struct edit *reset = last_reset(e, name);
    if (!reset && orig) {
        for (size_t i = 0; i < orig->num_headers; i++)
            if (name_eq(orig->headers[i].name, name) && idx-- == 0) {
                *value = orig->headers[i].value;
                return true;
            }
    }
    for (const struct edit *x = reset ? reset : e->head; x; x = x->next) {
        if (x->op == EDIT_REMOVE || !name_eq(x->name, name))
            continue;
        if (idx-- == 0) {
            *value = x->value;
            return true;
        }
    }
    return false;
}

/* Request fields whose client copies the upstream never receives as sent: the identity
 * headers, and the forwarding headers of a peer that is not a trusted proxy. Plugins see the
 * request as the upstream will (a policy on X-Consumer-Username or X-Forwarded-For must not be
 * satisfiable by the client). */
static bool hidden_from_plugins(const struct tp_plugin_ctx *ctx, struct tp_slice name)
{
    if (tp_chain_is_identity_header(name))
        return true;
    if (ctx->c->req.peer_trusted)
        return false;
    return TP_SLICE_IEQ(name, "x-forwarded-for") || TP_SLICE_IEQ(name, "x-forwarded-proto") ||
           TP_SLICE_IEQ(name, "x-forwarded-host") || TP_SLICE_IEQ(name, "x-forwarded-port") ||
           TP_SLICE_IEQ(name, "forwarded");
}

bool tp_plugin_header(const struct tp_plugin_ctx *ctx, const char *name, size_t idx,
                      struct tp_slice *value)
{
    struct tp_slice n = tp_slice_cstr(name);
    if (TP_SLICE_IEQ(n, "x-real-ip") && !last_reset(&ctx->req_edits, n)) {
        /* the gateway sets it to the client address it decided */
        if (idx)
            return false;
        *value = tp_slice_cstr(tp_plugin_client_ip(ctx));
        return true;
    }
    bool hide = hidden_from_plugins(ctx, n);
    return edited_value(&ctx->req_edits, n, idx, hide ? NULL : ctx->msg, value);
}

size_t tp_plugin_header_count(const struct tp_plugin_ctx *ctx)
{
    return ctx->msg->num_headers;
}

void tp_plugin_header_at(const struct tp_plugin_ctx *ctx, size_t i, struct tp_slice *name,
                         struct tp_slice *value)
{
    *name = ctx->msg->headers[i].name;
    *value = ctx->msg->headers[i].value;
}

bool tp_plugin_query_arg(const struct tp_plugin_ctx *ctx, const char *name,
                         struct tp_slice *value)
{
    struct tp_slice q = tp_plugin_query(ctx);
    size_t nlen = strlen(name);
    if (!q.len)
        return false;
    const char *p = q.ptr, *end = q.ptr + q.len;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *kend = eq ? eq : stop;
        if ((size_t)(kend - p) == nlen && memcmp(p, name, nlen) == 0) {
            value->ptr = eq ? eq + 1 : stop;
            value->len = eq ? (size_t)(stop - eq - 1) : 0;
            return true;
        }
        p = amp ? amp + 1 : NULL;
    }
    return false;
}

bool tp_plugin_cookie(const struct tp_plugin_ctx *ctx, const char *name, struct tp_slice *value)
{
    size_t nlen = strlen(name);
    struct tp_slice h;
    for (size_t k = 0; tp_plugin_header(ctx, "cookie", k, &h); k++) {
        const char *p = h.ptr, *end = h.ptr + h.len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == '\t'))
                p++;
            const char *semi = memchr(p, ';', (size_t)(end - p));
            const char *stop = semi ? semi : end;
            const char *eq = memchr(p, '=', (size_t)(stop - p));
            if (eq && (size_t)(eq - p) == nlen && memcmp(p, name, nlen) == 0) {
                const char *v = eq + 1, *ve = stop;
                while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                    ve--;
                if (ve - v >= 2 && v[0] == '"' && ve[-1] == '"') /* RFC 6265 §4.1.1 DQUOTE */
                    v++, ve--;
                value->ptr = v;
                value->len = (size_t)(ve - v);
                return true;
            }
            p = semi ? semi + 1 : end;
        }
    }
    return false;
}

int64_t tp_plugin_content_length(const struct tp_plugin_ctx *ctx)
{
    if (ctx->msg->framing == TP_HTTP_BODY_CHUNKED)
        return -1;
    return ctx->msg->framing == TP_HTTP_BODY_LENGTH ? (int64_t)ctx->msg->content_length : 0;
}

const char *tp_plugin_client_ip(const struct tp_plugin_ctx *ctx)
{
    return ctx->c->req.client_ip[0] ? ctx->c->req.client_ip : ctx->c->peer_text;
}

void tp_plugin_client_addr(const struct tp_plugin_ctx *ctx, int *family, uint8_t addr[16])
{
    const char *ip = tp_plugin_client_ip(ctx);
    memset(addr, 0, 16);
    if (inet_pton(AF_INET, ip, addr) == 1) {
        *family = AF_INET;
        return;
    }
    char tmp[64];
    size_t n = strlen(ip);
    if (n >= 2 && ip[0] == '[' && n < sizeof(tmp)) { /* "[::1]" from a peer text */
        memcpy(tmp, ip + 1, n - 2);
        tmp[n - 2] = '\0';
        ip = tmp;
    }
    *family = inet_pton(AF_INET6, ip, addr) == 1 ? AF_INET6 : AF_UNSPEC;
}

const char *tp_plugin_route_name(const struct tp_plugin_ctx *ctx)
{
    return ctx->c->req.route->conf->name;
}

const char *tp_plugin_service_name(const struct tp_plugin_ctx *ctx)
{
    return ctx->c->req.service->conf->name;
}

bool tp_plugin_route_param(const struct tp_plugin_ctx *ctx, const char *name,
                           struct tp_slice *value)
{
    for (size_t i = 0; i < ctx->match.num_captures; i++)
        if (ctx->match.captures[i].name && strcmp(ctx->match.captures[i].name, name) == 0) {
            *value = ctx->match.captures[i].value;
            return true;
        }
    return false;
}

const char *tp_plugin_request_id(const struct tp_plugin_ctx *ctx)
{
    return ctx->c->req.request_id;
}

double tp_plugin_time(const struct tp_plugin_ctx *ctx)
{
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

const struct tp_snapshot *tp_plugin_snapshot(const struct tp_plugin_ctx *ctx)
{
    return ctx->c->req.ws->snap;
}

/* ------------------------------------------------------------------------------------------ */
/* edits                                                                                      */

static int add_edit(struct tp_plugin_ctx *ctx, struct edits *e, enum edit_op op,
                    const char *name, struct tp_slice value)
{
    struct edit *x = arena_alloc(ctx, sizeof(*x));
    if (!x)
        return TP_ENOMEM;
    x->next = NULL;
    x->op = op;
    x->name = arena_dup(ctx, name, strlen(name));
    x->value = op == EDIT_REMOVE ? (struct tp_slice){"", 0} : arena_dup(ctx, value.ptr, value.len);
    if (!x->name.ptr || !x->value.ptr)
        return TP_ENOMEM;
    /* a value with CR or LF would split the head: refuse it (header injection) */
    for (size_t i = 0; i < x->value.len; i++)
        if (x->value.ptr[i] == '\r' || x->value.ptr[i] == '\n' || x->value.ptr[i] == '\0')
            return TP_EINVAL;
    for (size_t i = 0; i < x->name.len; i++)
        if ((unsigned char)x->name.ptr[i] <= ' ' || x->name.ptr[i] == ':' ||
            (unsigned char)x->name.ptr[i] >= 0x7f)
            return TP_EINVAL;
    /* framing and hop-by-hop fields are the gateway's own (RFC 9112 §6, RFC 9110 §7.6.1) */
    static const char *const reserved[] = {"content-length", "transfer-encoding", "connection",
                                           "keep-alive", "te", "trailer", "upgrade",
                                           "proxy-connection"};
    for (size_t i = 0; i < TP_ARRAY_LEN(reserved); i++)
        if (tp_slice_eq_nocase(x->name, reserved[i], strlen(reserved[i])))
            return TP_EINVAL;
    if (x->name.len == 0)
        return TP_EINVAL;
    if (e->tail)
        e->tail->next = x;
    else
        e->head = x;
    e->tail = x;
    return 0;
}

int tp_plugin_set_header(struct tp_plugin_ctx *ctx, const char *name, struct tp_slice value)
{
    return add_edit(ctx, &ctx->req_edits, EDIT_SET, name, value);
}

int tp_plugin_add_header(struct tp_plugin_ctx *ctx, const char *name, struct tp_slice value)
{
    return add_edit(ctx, &ctx->req_edits, EDIT_ADD, name, value);
}

int tp_plugin_remove_header(struct tp_plugin_ctx *ctx, const char *name)
{
    return add_edit(ctx, &ctx->req_edits, EDIT_REMOVE, name, (struct tp_slice){"", 0});
}

int tp_plugin_set_query(struct tp_plugin_ctx *ctx, struct tp_slice query)
{
    for (size_t i = 0; i < query.len; i++)
        if ((unsigned char)query.ptr[i] <= ' ' || query.ptr[i] == '#' || query.ptr[i] == 0x7f)
            return TP_EINVAL;
    struct tp_slice q = arena_dup(ctx, query.ptr, query.len);
    if (!q.ptr)
        return TP_ENOMEM;
    ctx->query = q;
    ctx->query_set = true;
    return 0;
}

int tp_plugin_set_upstream_path(struct tp_plugin_ctx *ctx, struct tp_slice path)
{
    if (path.len == 0 || path.ptr[0] != '/')
        return TP_EINVAL;
    for (size_t i = 0; i < path.len; i++)
        if ((unsigned char)path.ptr[i] <= ' ' || path.ptr[i] == '?' || path.ptr[i] == '#' ||
            path.ptr[i] == 0x7f)
            return TP_EINVAL;
    struct tp_slice p = arena_dup(ctx, path.ptr, path.len);
    if (!p.ptr)
        return TP_ENOMEM;
    ctx->upstream_path = p;
    ctx->path_set = true;
    return 0;
}

void tp_plugin_set_max_body(struct tp_plugin_ctx *ctx, uint64_t max_bytes)
{
    if (ctx->max_body == 0 || max_bytes < ctx->max_body)
        ctx->max_body = max_bytes ? max_bytes : 1;
}

void tp_plugin_want_request_body(struct tp_plugin_ctx *ctx)
{
    ctx->want_req_body = true;
}

void tp_plugin_want_response_body(struct tp_plugin_ctx *ctx)
{
    if (!ctx->resp_local)
        ctx->want_resp_body = true;
}

bool tp_chain_header_dropped(const struct tp_plugin_ctx *ctx, struct tp_slice name)
{
    return last_reset(&ctx->req_edits, name) != NULL;
}

bool tp_chain_resp_header_dropped(const struct tp_plugin_ctx *ctx, struct tp_slice name)
{
    return last_reset(&ctx->resp_edits, name) != NULL;
}

/* Emit the live SET/ADD edits: those after the last reset of their name. */
static int put_edits(const struct edits *e, struct tp_strbuf *b, bool skip_host)
{
    int rc = 0;
    for (const struct edit *x = e->head; x && rc == 0; x = x->next) {
        if (x->op == EDIT_REMOVE || (skip_host && TP_SLICE_IEQ(x->name, "host")))
            continue;
        bool dead = false; /* a later SET or REMOVE of the same name replaces this value */
        for (const struct edit *y = x->next; y; y = y->next)
            if (y->op != EDIT_ADD && name_eq(y->name, x->name))
                dead = true;
        if (dead)
            continue;
        rc = tp_strbuf_append(b, x->name.ptr, x->name.len);
        rc = rc ? rc : tp_strbuf_append(b, ": ", 2);
        rc = rc ? rc : tp_strbuf_append(b, x->value.ptr, x->value.len);
        rc = rc ? rc : tp_strbuf_append(b, "\r\n", 2);
    }
    return rc;
}

int tp_chain_put_headers(const struct tp_plugin_ctx *ctx, struct tp_strbuf *b, bool response)
{
    return put_edits(response ? &ctx->resp_edits : &ctx->req_edits, b, !response);
}

bool tp_chain_query(const struct tp_plugin_ctx *ctx, struct tp_slice *query)
{
    if (ctx->query_set)
        *query = ctx->query;
    return ctx->query_set;
}

bool tp_chain_upstream_path(const struct tp_plugin_ctx *ctx, struct tp_slice *path)
{
    if (ctx->path_set)
        *path = ctx->upstream_path;
    return ctx->path_set;
}

uint64_t tp_chain_max_body(const struct tp_plugin_ctx *ctx)
{
    return ctx->max_body;
}

bool tp_chain_wants_request_body(const struct tp_plugin_ctx *ctx)
{
    return ctx->want_req_body;
}

bool tp_chain_wants_response_body(const struct tp_plugin_ctx *ctx)
{
    return ctx->want_resp_body;
}

/* ------------------------------------------------------------------------------------------ */
/* identity                                                                                   */

static void identity_headers(struct tp_plugin_ctx *ctx)
{
    const struct tp_consumer *c = ctx->consumer;
    static const char *const names[] = {"X-Consumer-ID", "X-Consumer-Custom-ID",
                                        "X-Consumer-Username", "X-Credential-Identifier",
                                        "X-Anonymous-Consumer", "X-Consumer-Groups"};
    for (size_t i = 0; i < TP_ARRAY_LEN(names); i++)
        tp_plugin_remove_header(ctx, names[i]);
    if (c) {
        tp_plugin_set_header(ctx, "X-Consumer-ID", tp_slice_cstr(c->id));
        if (c->custom_id)
            tp_plugin_set_header(ctx, "X-Consumer-Custom-ID", tp_slice_cstr(c->custom_id));
        if (c->username)
            tp_plugin_set_header(ctx, "X-Consumer-Username", tp_slice_cstr(c->username));
        if (c->num_groups) { /* "a, b, c", joined in the arena: no malloc per request */
            size_t len = 0;
            for (size_t i = 0; i < c->num_groups; i++)
                len += strlen(c->groups[i]) + 2;
            char *g = arena_alloc(ctx, len);
            size_t n = 0;
            for (size_t i = 0; g && i < c->num_groups; i++) {
                if (i)
                    g[n++] = ',', g[n++] = ' ';
                size_t k = strlen(c->groups[i]);
                memcpy(g + n, c->groups[i], k);
                n += k;
            }
            if (g)
                tp_plugin_set_header(ctx, "X-Consumer-Groups", (struct tp_slice){g, n});
        }
    }
    if (ctx->credential && ctx->credential->id)
        tp_plugin_set_header(ctx, "X-Credential-Identifier", tp_slice_cstr(ctx->credential->id));
    if (ctx->anonymous)
        tp_plugin_set_header(ctx, "X-Anonymous-Consumer", TP_SLICE_LIT("true"));
}

void tp_plugin_set_consumer(struct tp_plugin_ctx *ctx, const struct tp_consumer *c,
                            const struct tp_credential *cred)
{
    ctx->consumer = c;
    ctx->credential = cred;
    ctx->anonymous = false;
    ctx->authenticated = true;
    ctx->consumer_changed = true;
    identity_headers(ctx);
}

void tp_plugin_set_anonymous(struct tp_plugin_ctx *ctx, const struct tp_consumer *c)
{
    if (ctx->authenticated)
        return; /* an authenticated request is never downgraded */
    ctx->consumer = c;
    ctx->credential = NULL;
    ctx->anonymous = true;
    ctx->consumer_changed = true;
    identity_headers(ctx);
}

const struct tp_consumer *tp_plugin_consumer(const struct tp_plugin_ctx *ctx)
{
    return ctx->consumer;
}

bool tp_plugin_is_anonymous(const struct tp_plugin_ctx *ctx)
{
    return ctx->anonymous;
}

void tp_plugin_set_claims(struct tp_plugin_ctx *ctx, json_t *claims)
{
    if (ctx->claims)
        json_decref(ctx->claims);
    ctx->claims = claims;
}

json_t *tp_plugin_claims(const struct tp_plugin_ctx *ctx)
{
    return ctx->claims;
}

/* A request header that only the gateway may set: the identity headers and their look-alikes
 * ('_' for '-', any case), which some servers (CGI, WSGI, PHP) map to the same variable. */
bool tp_chain_is_identity_header(struct tp_slice name)
{
    static const char *const names[] = {"x-consumer-", "x-credential-identifier",
                                        "x-anonymous-consumer", "x-authenticated-"};
    if (name.len < 11 || tp_lower(name.ptr[0]) != 'x')
        return false;
    for (size_t k = 0; k < TP_ARRAY_LEN(names); k++) {
        size_t n = strlen(names[k]);
        bool prefix = names[k][n - 1] == '-';
        if (name.len < n || (!prefix && name.len != n))
            continue;
        size_t i;
        for (i = 0; i < n; i++) {
            char ch = tp_lower(name.ptr[i]);
            if (ch == '_')
                ch = '-';
            if (ch != names[k][i])
                break;
        }
        if (i == n)
            return true;
    }
    return false;
}

/* ------------------------------------------------------------------------------------------ */
/* local responses and the security log                                                       */

static void set_local(struct tp_plugin_ctx *ctx, int status, const char *ctype, const char *body,
                      size_t len)
{
    ctx->local.status = status < 100 || status > 599 ? 500 : status;
    ctx->local.content_type = ctype ? arena_dup(ctx, ctype, strlen(ctype)).ptr : NULL;
    struct tp_slice b = arena_dup(ctx, body ? body : "", body ? len : 0);
    ctx->local.body = b.ptr ? b.ptr : "";
    ctx->local.len = b.ptr ? b.len : 0;
}

void tp_plugin_respond(struct tp_plugin_ctx *ctx, int status, const char *message)
{
    struct tp_strbuf body = {.max = 16384};
    tp_strbuf_puts(&body, "{\"message\":\"");
    tp_strbuf_json_str(&body, message, strlen(message));
    tp_strbuf_puts(&body, "\",\"request_id\":\"");
    tp_strbuf_json_str(&body, ctx->c->req.request_id, strlen(ctx->c->req.request_id));
    tp_strbuf_puts(&body, "\"}\n");
    set_local(ctx, status, "application/json", body.ptr, body.ptr ? body.len : 0);
    tp_strbuf_free(&body);
}

void tp_plugin_respond_body(struct tp_plugin_ctx *ctx, int status, const char *content_type,
                            const char *body, size_t len)
{
    set_local(ctx, status, content_type, body, len);
}

int tp_plugin_respond_header(struct tp_plugin_ctx *ctx, const char *name, struct tp_slice value)
{
    return add_edit(ctx, &ctx->local.headers, EDIT_ADD, name, value);
}

void tp_chain_local_response(const struct tp_plugin_ctx *ctx, struct tp_chain_local *out)
{
    out->status = ctx->local.status;
    out->content_type = ctx->local.content_type;
    out->body = ctx->local.body;
    out->len = ctx->local.len;
}

/* Headers of the local response (plugin-added) for the proxy's head builder. */
int tp_chain_put_local_headers(const struct tp_plugin_ctx *ctx, struct tp_strbuf *b)
{
    int rc = 0;
    for (const struct edit *x = ctx->local.headers.head; x && rc == 0; x = x->next) {
        if (last_reset(&ctx->resp_edits, x->name))
            continue; /* a response_headers hook replaced or removed it */
        rc = tp_strbuf_append(b, x->name.ptr, x->name.len);
        rc = rc ? rc : tp_strbuf_append(b, ": ", 2);
        rc = rc ? rc : tp_strbuf_append(b, x->value.ptr, x->value.len);
        rc = rc ? rc : tp_strbuf_append(b, "\r\n", 2);
    }
    return rc ? rc : put_edits(&ctx->resp_edits, b, false);
}

static void write_security_line(struct tp_plugin_ctx *ctx, const char *plugin, int status,
                                const char *reason)
{
    struct tp_conn *c = ctx->c;
    tp_metrics_security(c, plugin, status); /* counted whether or not the log is written */
    struct tp_request *req = &c->req;
    char now[40];
    tp_log_time_rfc3339(now, sizeof(now));
    struct tp_strbuf b = {.max = 16384};
    const char *client = tp_plugin_client_ip(ctx);
    const char *cons = ctx->consumer ? (ctx->consumer->username ? ctx->consumer->username
                                                                : ctx->consumer->id)
                                     : NULL;
    tp_strbuf_puts(&b, "{\"time\":\"");
    tp_strbuf_puts(&b, now);
    tp_strbuf_puts(&b, "\",\"event\":\"");
    tp_strbuf_puts(&b, status == 401 ? "authentication" : status == 429 ? "rate_limit"
                                                                       : "authorization");
    tp_strbuf_puts(&b, "\",\"request_id\":\"");
    tp_strbuf_json_str(&b, req->request_id, strlen(req->request_id));
    tp_strbuf_puts(&b, "\",\"client\":\"");
    tp_strbuf_json_str(&b, client, strlen(client));
    tp_strbuf_puts(&b, "\",\"method\":\"");
    tp_strbuf_json_str(&b, req->method, strlen(req->method));
    tp_strbuf_puts(&b, "\",\"path\":\"");
    tp_strbuf_json_str(&b, req->path, strlen(req->path));
    tp_strbuf_puts(&b, "\",\"route\":\"");
    tp_strbuf_json_str(&b, req->route->conf->name, strlen(req->route->conf->name));
    tp_strbuf_puts(&b, "\",\"service\":\"");
    tp_strbuf_json_str(&b, req->service->conf->name, strlen(req->service->conf->name));
    tp_strbuf_puts(&b, "\",\"consumer\":");
    if (cons) {
        tp_strbuf_puts(&b, "\"");
        tp_strbuf_json_str(&b, cons, strlen(cons));
        tp_strbuf_puts(&b, "\"");
    } else {
        tp_strbuf_puts(&b, "null");
    }
    tp_strbuf_puts(&b, ",\"plugin\":\"");
    tp_strbuf_json_str(&b, plugin, strlen(plugin));
    tp_strbuf_puts(&b, "\",\"status\":");
    tp_strbuf_putu(&b, (unsigned)status);
    tp_strbuf_puts(&b, ",\"reason\":\"");
    tp_strbuf_json_str(&b, reason, strlen(reason));
    if (tp_strbuf_puts(&b, "\"}\n") == 0)
        tp_worker_security_log(c->w, b.ptr, b.len);
    tp_strbuf_free(&b);
}

void tp_plugin_security_log(struct tp_plugin_ctx *ctx, int status, const char *reason)
{
    const char *plugin = ctx->cur < ctx->n ? ctx->items[ctx->cur]->plugin->name : "gateway";
    if (!ctx->in_auth) {
        write_security_line(ctx, plugin, status, reason);
        return;
    }
    /* an auth failure may be superseded by a later auth plugin: keep it with the answer */
    struct tp_slice r = arena_dup(ctx, reason, strlen(reason));
    ctx->local.sec_reason = r.ptr ? r.ptr : "authentication failed";
    ctx->local.sec_status = status;
    ctx->local.sec_plugin = plugin;
}

/* ------------------------------------------------------------------------------------------ */
/* per-plugin and per-worker state, suspension                                                */

void **tp_plugin_data(struct tp_plugin_ctx *ctx)
{
    return &ctx->data[ctx->cur < ctx->n ? ctx->cur : 0];
}

void *tp_plugin_worker_get(struct tp_plugin_ctx *ctx, const char *key)
{
    return tp_worker_kv_get(ctx->c->w, key);
}

int tp_plugin_worker_put(struct tp_plugin_ctx *ctx, const char *key, void *value,
                         void (*destroy)(void *value))
{
    return tp_worker_kv_put(ctx->c->w, key, value, destroy);
}

struct event_base *tp_plugin_event_base(struct tp_plugin_ctx *ctx)
{
    return ctx->c->w->base;
}

int tp_plugin_wait(struct tp_plugin_ctx *ctx, struct tp_plugin_wait_list *list)
{
    struct tp_plugin_waiter *w = &ctx->waiter;
    if (w->list)
        return TP_EINVAL;
    w->list = list;
    w->prev = NULL;
    w->next = list->head;
    if (list->head)
        list->head->prev = w;
    list->head = w;
    return 0;
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tp_plugin_ctx *ctx = arg;
    (void)fd;
    (void)what;
    if (ctx->suspended)
        tp_conn_resume(ctx->c);
}

void tp_plugin_wake_all(struct tp_plugin_wait_list *list)
{
    while (list->head) {
        struct tp_plugin_waiter *w = list->head;
        waiter_unlink(w);
        struct tp_plugin_ctx *ctx = w->ctx;
        if (!ctx->resume_ev)
            ctx->resume_ev = event_new(ctx->c->w->base, -1, 0, resume_cb, ctx);
        if (ctx->resume_ev)
            event_active(ctx->resume_ev, EV_TIMEOUT, 0);
        /* without an event the request stays suspended until its deadline (500) */
    }
}

/* ------------------------------------------------------------------------------------------ */
/* the runner                                                                                 */

/* Consumer-scoped plugins: merge the consumer's instances that apply to this route into the
 * rest of the chain (same name: the consumer's wins, it is more specific). */
static void merge_consumer_plugins(struct tp_plugin_ctx *ctx)
{
    const struct tp_consumer *c = ctx->consumer;
    ctx->consumer_changed = false;
    if (!c || !c->num_plugins)
        return;
    const char *svc = tp_plugin_service_name(ctx), *rt = tp_plugin_route_name(ctx);
    size_t cap = ctx->n + c->num_plugins;
    const struct tp_plugin_instance **items = arena_alloc(ctx, cap * sizeof(*items));
    void **data = arena_alloc(ctx, cap * sizeof(void *));
    if (!items || !data)
        return;
    memcpy(items, ctx->items, ctx->n * sizeof(*items));
    memset(data, 0, cap * sizeof(void *));
    memcpy(data, ctx->data, ctx->n * sizeof(void *));
    size_t n = ctx->n;
    for (size_t i = 0; i < c->num_plugins; i++) {
        const struct tp_plugin_instance *pi = c->plugins[i];
        if (!scope_matches(pi, svc, rt))
            continue;
        size_t j;
        for (j = 0; j < n; j++)
            if (items[j]->plugin == pi->plugin)
                break;
        if (j < n) {
            if (pi->specificity > items[j]->specificity && j > ctx->cur)
                items[j] = pi, data[j] = NULL;
        } else {
            items[n++] = pi;
        }
    }
    /* re-sort what has not run yet; what ran keeps its place */
    size_t from = ctx->cur + 1;
    sort_items(items + from, n - from, ctx->chain->order, ctx->chain->num_order);
    /* data slots follow their items: only the tail was reordered, whose slots are empty */
    for (size_t j = from; j < n; j++)
        data[j] = NULL;
    for (size_t j = from; j < ctx->n; j++)
        for (size_t k = from; k < n; k++)
            if (items[k] == ctx->items[j])
                data[k] = ctx->data[j];
    ctx->items = items;
    ctx->data = data;
    ctx->n = n;
    for (size_t j = 0; j < n; j++) /* a consumer's plugins may bring hooks the route lacks */
        ctx->hooks |= hooks_of(items[j]->plugin);
}

static bool later_auth(const struct tp_plugin_ctx *ctx, size_t i)
{
    for (size_t j = i + 1; j < ctx->n; j++)
        if (ctx->items[j]->plugin->auth && ctx->items[j]->plugin->access)
            return true;
    return false;
}

static void flush_security(struct tp_plugin_ctx *ctx, struct local_resp *r)
{
    if (r->sec_reason)
        write_security_line(ctx, r->sec_plugin, r->sec_status, r->sec_reason);
    r->sec_reason = NULL;
}

/* The deferred first auth failure becomes the answer. */
static enum tp_chain_result send_deferred(struct tp_plugin_ctx *ctx)
{
    ctx->local = ctx->deferred;
    memset(&ctx->deferred, 0, sizeof(ctx->deferred));
    flush_security(ctx, &ctx->local);
    return TP_CHAIN_RESPONDED;
}

static enum tp_chain_result hook_error(struct tp_plugin_ctx *ctx, const char *plugin)
{
    tp_log(TP_LOG_ERROR, "request %s: plugin %s failed", ctx->c->req.request_id, plugin);
    memset(&ctx->local, 0, sizeof(ctx->local));
    tp_plugin_respond(ctx, 500, "An unexpected error occurred");
    return TP_CHAIN_RESPONDED;
}

enum tp_chain_result tp_chain_run_request(struct tp_plugin_ctx *ctx)
{
    ctx->suspended = false;
    for (; ctx->phase < PH_DONE; ctx->phase++, ctx->idx = 0) {
        bool access = ctx->phase == PH_ACCESS;
        for (; ctx->idx < ctx->n; ctx->idx++) {
            size_t i = ctx->idx;
            const struct tp_plugin_instance *pi = ctx->items[i];
            const struct tp_plugin *pl = pi->plugin;
            enum tp_plugin_status (*hook)(struct tp_plugin_ctx *, const void *) =
                access ? pl->access : pl->rewrite;
            if (!hook)
                continue;
            bool auth = access && pl->auth;
            if (auth && ctx->authenticated)
                continue; /* any of: already authenticated */
            if (access && !auth && ctx->deferred.status)
                return send_deferred(ctx);
            ctx->cur = i;
            ctx->in_auth = auth;
            enum tp_plugin_status st = hook(ctx, pi->inst);
            ctx->in_auth = false;
            if (st == TP_PLUGIN_SUSPEND) {
                if (!ctx->waiter.list)
                    return hook_error(ctx, pl->name);
                if (tp_chain_keep_message(ctx) != 0)
                    return hook_error(ctx, pl->name);
                ctx->suspended = true;
                return TP_CHAIN_SUSPENDED; /* idx unchanged: the same hook runs again */
            }
            if (st == TP_PLUGIN_ERROR || (st == TP_PLUGIN_RESPOND && !ctx->local.status))
                return hook_error(ctx, pl->name);
            if (st == TP_PLUGIN_RESPOND) {
                if (auth && ctx->anonymous) {
                    /* an earlier plugin fell back to its anonymous consumer: that stands, as
                     * when a later plugin succeeds ("any of") */
                    memset(&ctx->local, 0, sizeof(ctx->local));
                    continue;
                }
                if (auth && later_auth(ctx, i)) {
                    if (!ctx->deferred.status)
                        ctx->deferred = ctx->local;
                    memset(&ctx->local, 0, sizeof(ctx->local));
                    continue;
                }
                if (ctx->deferred.status)
                    return send_deferred(ctx); /* the first failure is the answer */
                flush_security(ctx, &ctx->local);
                return TP_CHAIN_RESPONDED;
            }
            if (auth)
                flush_security(ctx, &ctx->local); /* a rejected credential, then anonymous */
            if (auth && (ctx->authenticated || ctx->anonymous))
                memset(&ctx->deferred, 0, sizeof(ctx->deferred)); /* superseded */
            if (ctx->consumer_changed)
                merge_consumer_plugins(ctx);
        }
        if (access && ctx->deferred.status)
            return send_deferred(ctx);
    }
    return TP_CHAIN_CONTINUE;
}

enum tp_chain_result tp_chain_run_request_body(struct tp_plugin_ctx *ctx,
                                               struct tp_plugin_body *body)
{
    for (size_t i = 0; i < ctx->n; i++) {
        const struct tp_plugin *pl = ctx->items[i]->plugin;
        if (!pl->request_body)
            continue;
        ctx->cur = i;
        enum tp_plugin_status st = pl->request_body(ctx, ctx->items[i]->inst, body);
        if (st == TP_PLUGIN_RESPOND && ctx->local.status) {
            flush_security(ctx, &ctx->local);
            return TP_CHAIN_RESPONDED;
        }
        if (st != TP_PLUGIN_CONTINUE)
            return hook_error(ctx, pl->name);
    }
    return TP_CHAIN_CONTINUE;
}

/* ---- response side ---- */

int tp_plugin_resp_status(const struct tp_plugin_ctx *ctx)
{
    return ctx->resp_status;
}

bool tp_plugin_resp_is_local(const struct tp_plugin_ctx *ctx)
{
    return ctx->resp_local;
}

bool tp_plugin_resp_header(const struct tp_plugin_ctx *ctx, const char *name, size_t idx,
                           struct tp_slice *value)
{
    struct tp_slice n = tp_slice_cstr(name);
    if (ctx->resp_local) { /* the local answer's own headers come first */
        const struct edit *reset = last_reset(&ctx->resp_edits, n);
        if (!reset) {
            if (TP_SLICE_IEQ(n, "content-type") && ctx->local.content_type) {
                if (idx-- == 0) {
                    *value = tp_slice_cstr(ctx->local.content_type);
                    return true;
                }
            }
            for (const struct edit *x = ctx->local.headers.head; x; x = x->next)
                if (name_eq(x->name, n) && idx-- == 0) {
                    *value = x->value;
                    return true;
                }
        }
        return edited_value(&ctx->resp_edits, n, idx, NULL, value);
    }
    return edited_value(&ctx->resp_edits, n, idx, ctx->resp_msg, value);
}

int tp_plugin_resp_set_header(struct tp_plugin_ctx *ctx, const char *name, struct tp_slice value)
{
    return add_edit(ctx, &ctx->resp_edits, EDIT_SET, name, value);
}

int tp_plugin_resp_add_header(struct tp_plugin_ctx *ctx, const char *name, struct tp_slice value)
{
    return add_edit(ctx, &ctx->resp_edits, EDIT_ADD, name, value);
}

int tp_plugin_resp_remove_header(struct tp_plugin_ctx *ctx, const char *name)
{
    return add_edit(ctx, &ctx->resp_edits, EDIT_REMOVE, name, (struct tp_slice){"", 0});
}

void tp_chain_run_response_headers(struct tp_plugin_ctx *ctx, const struct tp_http_message *msg,
                                   int status, bool local)
{
    ctx->resp_msg = msg;
    ctx->resp_status = status;
    ctx->resp_local = local;
    if (local)
        ctx->want_resp_body = false;
    for (size_t i = 0; i < ctx->n; i++) {
        const struct tp_plugin *pl = ctx->items[i]->plugin;
        if (!pl->response_headers)
            continue;
        ctx->cur = i;
        if (pl->response_headers(ctx, ctx->items[i]->inst) != TP_PLUGIN_CONTINUE)
            tp_log(TP_LOG_ERROR, "request %s: plugin %s failed on the response",
                   ctx->c->req.request_id, pl->name);
    }
}

void tp_chain_run_response_body(struct tp_plugin_ctx *ctx, struct tp_plugin_body *body)
{
    for (size_t i = 0; i < ctx->n; i++) {
        const struct tp_plugin *pl = ctx->items[i]->plugin;
        if (!pl->response_body)
            continue;
        ctx->cur = i;
        if (pl->response_body(ctx, ctx->items[i]->inst, body) != TP_PLUGIN_CONTINUE)
            tp_log(TP_LOG_ERROR, "request %s: plugin %s failed on the response body",
                   ctx->c->req.request_id, pl->name);
    }
}

void tp_chain_run_log(struct tp_plugin_ctx *ctx)
{
    for (size_t i = 0; i < ctx->n; i++) {
        const struct tp_plugin *pl = ctx->items[i]->plugin;
        if (!pl->log)
            continue;
        ctx->cur = i;
        pl->log(ctx, ctx->items[i]->inst);
    }
}
