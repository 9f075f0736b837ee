/*
 * Metrics: the series registry, the per-worker counters and what the request path does
 * (see include/turnpike/metrics.h and metrics_internal.h).
 *
 * The request path (tp_metrics_request_done, once per request) costs a few dozen loads and
 * stores: snapshot binding (one compare), the series' cell (two loads), then plain increments.
 * It takes the registry lock only the first time a worker sees a series in a snapshot, and
 * allocates only the first time a worker counts a series (a cell) or times it (a latency block).
 */
#include "metrics/metrics_internal.h"
#include "http/proxy.h"
#include "turnpike/plugin.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* ------------------------------------------------------------------------------------------ */
/* label tables                                                                               */

const char *const tp_metrics_method_names[M_METHODS] = {
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "other"};

/* Exact codes first (indices 0..29), then the classes (30..34), then "other" (35). */
const char *const tp_metrics_code_names[M_CODES] = {
    "101", "200", "201", "202", "204", "206", "301", "302", "303", "304", "307", "308",
    "400", "401", "403", "404", "405", "408", "409", "413", "414", "415", "422", "429",
    "431", "500", "501", "502", "503", "504", "1xx", "2xx", "3xx", "4xx", "5xx", "other"};
#define M_CODE_CLASS0 30
#define M_CODE_OTHER 35

/* code → index + 1 of the exact codes above (0: not in the set). */
static const unsigned char code_table[600] = {
    [101] = 1,  [200] = 2,  [201] = 3,  [202] = 4,  [204] = 5,  [206] = 6,  [301] = 7,  [302] = 8,
    [303] = 9,  [304] = 10, [307] = 11, [308] = 12, [400] = 13, [401] = 14, [403] = 15, [404] = 16,
    [405] = 17, [408] = 18, [409] = 19, [413] = 20, [414] = 21, [415] = 22, [422] = 23, [429] = 24,
    [431] = 25, [500] = 26, [501] = 27, [502] = 28, [503] = 29, [504] = 30,
};

const uint64_t tp_metrics_dur_bounds_us[M_DUR_BUCKETS - 1] = {
    500,    1000,   2500,    5000,    10000,   25000,    50000,    100000,
    250000, 500000, 1000000, 2500000, 5000000, 10000000, 30000000, 60000000};
const char *const tp_metrics_dur_le[M_DUR_BUCKETS] = {
    "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
    "0.5",    "1",     "2.5",    "5",     "10",   "30",    "60",   "+Inf"};

const uint64_t tp_metrics_size_bounds[M_SIZE_BUCKETS - 1] = {
    256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216};
const char *const tp_metrics_size_le[M_SIZE_BUCKETS] = {
    "256", "1024", "4096", "16384", "65536", "262144", "1048576", "4194304", "16777216", "+Inf"};

const char *const tp_metrics_conn_state_names[M_CONN_STATES] = {"idle",     "reading", "waiting",
                                                                "proxying", "tunnel",  "closing"};

_Static_assert(sizeof(code_table) == 600, "code table");
_Static_assert(TP_ARRAY_LEN(tp_metrics_code_names) == M_CODES, "code names");

static unsigned method_index(const char *m)
{
    if (!m)
        return M_METHOD_OTHER;
    switch (m[0]) { /* methods are case-sensitive (RFC 9110 §9.1) */
    case 'G':
        return strcmp(m, "GET") == 0 ? 0 : M_METHOD_OTHER;
    case 'H':
        return strcmp(m, "HEAD") == 0 ? 1 : M_METHOD_OTHER;
    case 'P':
        return strcmp(m, "POST") == 0    ? 2
               : strcmp(m, "PUT") == 0   ? 3
               : strcmp(m, "PATCH") == 0 ? 5
                                         : M_METHOD_OTHER;
    case 'D':
        return strcmp(m, "DELETE") == 0 ? 4 : M_METHOD_OTHER;
    case 'O':
        return strcmp(m, "OPTIONS") == 0 ? 6 : M_METHOD_OTHER;
    case 'C':
        return strcmp(m, "CONNECT") == 0 ? 7 : M_METHOD_OTHER;
    case 'T':
        return strcmp(m, "TRACE") == 0 ? 8 : M_METHOD_OTHER;
    default:
        return M_METHOD_OTHER;
    }
}

static unsigned code_index(int status)
{
    if (status < 100 || status > 599)
        return M_CODE_OTHER;
    unsigned t = code_table[status];
    return t ? t - 1 : M_CODE_CLASS0 + (unsigned)(status / 100 - 1);
}

unsigned tp__metrics_plugin_index(const char *name)
{
    for (unsigned i = 0; name && tp_plugins[i] && i + 1 < M_PLUGINS; i++)
        if (strcmp(tp_plugins[i]->name, name) == 0)
            return i + 1;
    return 0;
}

const char *tp__metrics_plugin_name(unsigned i)
{
    if (i == 0)
        return "gateway";
    for (unsigned j = 0; tp_plugins[j]; j++)
        if (j + 1 == i)
            return tp_plugins[j]->name;
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* registry                                                                                   */

static uint64_t fnv(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

static uint64_t pair_hash(const char *service, const char *route)
{
    uint64_t h = fnv(0xcbf29ce484222325ULL, service);
    h = (h ^ 0xff) * 0x100000001b3ULL; /* a byte no name contains: ("ab","c") != ("a","bc") */
    return fnv(h, route);
}

static uint64_t series_hash(const struct tp_metrics *m, uint32_t slot)
{
    return m->series[slot]->hash;
}

static uint64_t cons_hash(const struct tp_metrics *m, uint32_t slot)
{
    return m->cons[slot]->hash;
}

/* Make room for a table holding n entries at most half full. */
static int table_reserve(struct tp_metrics *m, struct tp_mtable *t, size_t n,
                         uint64_t (*hash_of)(const struct tp_metrics *, uint32_t))
{
    size_t size = t->slots ? t->mask + 1 : 0;
    if (n * 2 <= size)
        return 0;
    size_t nsize = size ? size * 2 : 64;
    while (nsize < n * 2)
        nsize *= 2;
    uint32_t *ns = calloc(nsize, sizeof(*ns));
    if (!ns)
        return TP_ENOMEM;
    for (size_t i = 0; i < size; i++) {
        if (!t->slots[i])
            continue;
        size_t j = hash_of(m, t->slots[i] - 1) & (nsize - 1);
        while (ns[j])
            j = (j + 1) & (nsize - 1);
        ns[j] = t->slots[i];
    }
    free(t->slots);
    t->slots = ns;
    t->mask = nsize - 1;
    return 0;
}

static void table_put(struct tp_mtable *t, uint64_t hash, uint32_t slot)
{
    size_t j = hash & t->mask;
    while (t->slots[j])
        j = (j + 1) & t->mask;
    t->slots[j] = slot + 1;
}

long tp__metrics_find_series(struct tp_metrics *m, const char *service, const char *route)
{
    if (!m->series_tab.slots)
        return -1;
    uint64_t h = pair_hash(service, route);
    for (size_t j = h & m->series_tab.mask; m->series_tab.slots[j];
         j = (j + 1) & m->series_tab.mask) {
        const struct tp_mseries *s = m->series[m->series_tab.slots[j] - 1];
        if (s->hash == h && strcmp(s->service, service) == 0 && strcmp(s->route, route) == 0)
            return (long)m->series_tab.slots[j] - 1;
    }
    return -1;
}

/* Find or add (service, route). Caller holds m->lock. The slot, or -1 on ENOMEM. */
static long series_add(struct tp_metrics *m, const char *service, const char *route)
{
    long found = tp__metrics_find_series(m, service, route);
    if (found >= 0)
        return found;
    if (m->num_series == m->cap_series) {
        size_t ncap = m->cap_series ? m->cap_series * 2 : 64;
        struct tp_mseries **ns = realloc(m->series, ncap * sizeof(*ns));
        if (!ns)
            return -1;
        m->series = ns;
        m->cap_series = ncap;
    }
    if (table_reserve(m, &m->series_tab, m->num_series + 1, series_hash) != 0)
        return -1;
    struct tp_mseries *s = calloc(1, sizeof(*s));
    if (s) {
        s->service = strdup(service);
        s->route = strdup(route);
    }
    if (!s || !s->service || !s->route) {
        if (s) {
            free(s->service);
            free(s->route);
        }
        free(s);
        return -1;
    }
    s->hash = pair_hash(service, route);
    uint32_t slot = (uint32_t)m->num_series++;
    m->series[slot] = s;
    table_put(&m->series_tab, s->hash, slot);
    return slot;
}

static long cons_find(struct tp_metrics *m, const char *name, uint64_t h)
{
    if (!m->cons_tab.slots)
        return -1;
    for (size_t j = h & m->cons_tab.mask; m->cons_tab.slots[j]; j = (j + 1) & m->cons_tab.mask) {
        const struct tp_mcons *c = m->cons[m->cons_tab.slots[j] - 1];
        if (c->hash == h && strcmp(c->name, name) == 0)
            return (long)m->cons_tab.slots[j] - 1;
    }
    return -1;
}

/* Find or add a consumer series; past `cap` own series (slot 0 excluded) the answer is
 * M_SLOT_OTHER. Caller holds m->lock. -1 on ENOMEM. */
static long cons_add(struct tp_metrics *m, const char *name, uint32_t cap)
{
    uint64_t h = fnv(0xcbf29ce484222325ULL, name);
    long found = cons_find(m, name, h);
    if (found >= 0)
        return found;
    if (m->num_cons > 0 && m->num_cons - 1 >= cap)
        return M_SLOT_OTHER;
    if (m->num_cons == m->cap_cons) {
        size_t ncap = m->cap_cons ? m->cap_cons * 2 : 64;
        struct tp_mcons **nc = realloc(m->cons, ncap * sizeof(*nc));
        if (!nc)
            return -1;
        m->cons = nc;
        m->cap_cons = ncap;
    }
    if (table_reserve(m, &m->cons_tab, m->num_cons + 1, cons_hash) != 0)
        return -1;
    struct tp_mcons *c = calloc(1, sizeof(*c));
    if (c && !(c->name = strdup(name))) {
        free(c);
        c = NULL;
    }
    if (!c)
        return -1;
    c->hash = h;
    uint32_t slot = (uint32_t)m->num_cons++;
    m->cons[slot] = c;
    table_put(&m->cons_tab, h, slot);
    return slot;
}

struct tp_metrics *tp_metrics_new(int nworkers)
{
    tp_sketch_init();
    struct tp_metrics *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    pthread_mutex_init(&m->lock, NULL);
    m->nworkers = nworkers;
    m->workers = calloc((size_t)(nworkers > 0 ? nworkers : 1), sizeof(*m->workers));
    /* slot 0 of each registry: requests without a route, consumers past the cap */
    if (!m->workers || series_add(m, "", "unmatched") != M_SLOT_UNMATCHED ||
        cons_add(m, "other", 1) != M_SLOT_OTHER) {
        tp_metrics_free(m);
        return NULL;
    }
    return m;
}

void tp_metrics_free(struct tp_metrics *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->num_series; i++) {
        free(m->series[i]->service);
        free(m->series[i]->route);
        free(m->series[i]);
    }
    for (size_t i = 0; i < m->num_cons; i++) {
        free(m->cons[i]->name);
        free(m->cons[i]);
    }
    free(m->series);
    free(m->cons);
    free(m->series_tab.slots);
    free(m->cons_tab.slots);
    free(m->workers);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* ------------------------------------------------------------------------------------------ */
/* per worker: directories, bindings, census                                                  */

static int64_t wall_offset_us(void)
{
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    int64_t real = (int64_t)rt.tv_sec * 1000000 + rt.tv_nsec / 1000;
    return real - (int64_t)tp_now_us();
}

static unsigned conn_state(const struct tp_conn *c)
{
    switch (c->state) {
    case TP_CONN_HEAD:
        return c->got_first_byte || evbuffer_get_length(c->in) ? M_CONN_READING : M_CONN_IDLE;
    case TP_CONN_PROXY:
        return M_CONN_PROXYING;
    case TP_CONN_TUNNEL:
        return M_CONN_TUNNEL;
    case TP_CONN_PLUGIN:
        return M_CONN_PLUGIN;
    default:
        return M_CONN_CLOSING;
    }
}

/* Once a second on the worker: connections by state, idle pooled upstream connections per
 * address, and the wall-clock offset of the usage minutes. */
static void census_cb(evutil_socket_t fd, short what, void *arg)
{
    struct tp_mworker *mw = arg;
    struct tp_worker *w = mw->w;
    uint64_t n[M_CONN_STATES] = {0};
    for (const struct tp_conn *c = w->conns; c; c = c->next)
        n[conn_state(c)]++;
    for (unsigned i = 0; i < M_CONN_STATES; i++)
        atomic_store_explicit(&mw->conn_state[i], n[i], memory_order_relaxed);
    pthread_mutex_lock(&mw->census_lock);
    mw->num_idle = 0;
    for (const struct tp_pool *p = w->pools; p; p = p->next) {
        if (mw->num_idle == mw->cap_idle) {
            size_t ncap = mw->cap_idle ? mw->cap_idle * 2 : 8;
            struct tp_midle *ni = realloc(mw->idle, ncap * sizeof(*ni));
            if (!ni)
                break;
            mw->idle = ni;
            mw->cap_idle = ncap;
        }
        struct tp_midle *e = &mw->idle[mw->num_idle++];
        memcpy(&e->addr, &p->addr, sizeof(e->addr));
        e->addrlen = p->addrlen;
        e->idle = p->num_idle;
    }
    pthread_mutex_unlock(&mw->census_lock);
    mw->wall_offset_us = wall_offset_us();
}

struct tp_mworker *tp_metrics_worker_new(struct tp_metrics *m, struct tp_worker *w)
{
    if (!m || w->id < 0 || w->id >= m->nworkers)
        return NULL;
    struct tp_mworker *mw = calloc(1, sizeof(*mw));
    if (!mw)
        return NULL;
    mw->m = m;
    mw->w = w;
    pthread_mutex_init(&mw->census_lock, NULL);
    mw->wall_offset_us = wall_offset_us();
    mw->census_ev = event_new(w->base, -1, EV_PERSIST, census_cb, mw);
    struct timeval tv = {1, 0};
    if (!mw->census_ev || event_add(mw->census_ev, &tv) != 0) {
        tp_metrics_worker_free(mw);
        return NULL;
    }
    m->workers[w->id] = mw;
    return mw;
}

static void binding_free(struct tp_mbinding *b)
{
    free(b->route_slot);
    free(b->split_off);
    free(b->split_slot);
    free(b->consumer_slot);
    memset(b, 0, sizeof(*b));
}

static void dir_free(struct tp_mdir *d, bool cells, void (*free_cell)(void *))
{
    if (d && cells)
        for (size_t i = 0; i < d->cap; i++)
            free_cell(atomic_load_explicit(&d->cells[i], memory_order_relaxed));
    while (d) {
        struct tp_mdir *older = d->older;
        free(d);
        d = older;
    }
}

static void cell_free(void *p)
{
    struct tp_mcell *c = p;
    if (c)
        free(atomic_load_explicit(&c->latency, memory_order_relaxed));
    free(c);
}

void tp_metrics_worker_free(struct tp_mworker *mw)
{
    if (!mw)
        return;
    if (mw->m && mw->w && mw->m->workers[mw->w->id] == mw)
        mw->m->workers[mw->w->id] = NULL;
    if (mw->census_ev)
        event_free(mw->census_ev);
    for (int i = 0; i < M_BINDINGS; i++)
        binding_free(&mw->bind[i]);
    dir_free(atomic_load(&mw->routes), true, cell_free);
    dir_free(atomic_load(&mw->consumers), true, free);
    free(mw->idle);
    pthread_mutex_destroy(&mw->census_lock);
    free(mw);
}

/* The binding of snap, built on first use; NULL on ENOMEM. Most recently used first. */
static struct tp_mbinding *binding_of(struct tp_mworker *mw, const struct tp_snapshot *snap)
{
    struct tp_mbinding *b = mw->bind;
    if (TP_LIKELY(b[0].gen == snap->generation))
        return &b[0];
    for (int i = 1; i < M_BINDINGS; i++) {
        if (b[i].gen == snap->generation) {
            struct tp_mbinding t = b[i];
            memmove(&b[1], &b[0], (size_t)i * sizeof(*b));
            b[0] = t;
            return &b[0];
        }
    }
    binding_free(&b[M_BINDINGS - 1]);
    memmove(&b[1], &b[0], (M_BINDINGS - 1) * sizeof(*b));
    memset(&b[0], 0, sizeof(*b));
    size_t nsplit = 0;
    for (size_t i = 0; i < snap->num_routes; i++)
        nsplit += snap->routes[i].num_split;
    size_t ncons = snap->config->num_consumers;
    b->route_slot = calloc(snap->num_routes ? snap->num_routes : 1, sizeof(uint32_t));
    b->consumer_slot = calloc(ncons ? ncons : 1, sizeof(uint32_t));
    if (nsplit) {
        b->split_off = calloc(snap->num_routes, sizeof(uint32_t));
        b->split_slot = calloc(nsplit, sizeof(uint32_t));
    }
    if (!b->route_slot || !b->consumer_slot || (nsplit && (!b->split_off || !b->split_slot))) {
        binding_free(b);
        return NULL;
    }
    for (size_t i = 0, off = 0; nsplit && i < snap->num_routes; i++) {
        b->split_off[i] = (uint32_t)off;
        off += snap->routes[i].num_split;
    }
    b->num_routes = snap->num_routes;
    b->num_consumers = ncons;
    b->gen = snap->generation;
    return b;
}

/* A new, larger directory holding the old one's cells (worker thread). 0 or TP_ENOMEM. */
static int dir_grow(_Atomic(struct tp_mdir *) *dirp, size_t need)
{
    struct tp_mdir *old = atomic_load_explicit(dirp, memory_order_relaxed);
    size_t cap = old ? old->cap * 2 : 16;
    while (cap < need)
        cap *= 2;
    struct tp_mdir *d = calloc(1, sizeof(*d) + cap * sizeof(d->cells[0]));
    if (!d)
        return TP_ENOMEM;
    d->cap = cap;
    d->older = old;
    for (size_t i = 0; old && i < old->cap; i++)
        atomic_init(&d->cells[i], atomic_load_explicit(&old->cells[i], memory_order_relaxed));
    atomic_store_explicit(dirp, d, memory_order_release);
    return 0;
}

/* The worker's cell for slot, allocated (size bytes, zeroed) on first use. NULL on ENOMEM. */
static void *cell_get(_Atomic(struct tp_mdir *) *dirp, uint32_t slot, size_t size)
{
    struct tp_mdir *d = atomic_load_explicit(dirp, memory_order_relaxed);
    if (TP_LIKELY(d && slot < d->cap)) {
        void *c = atomic_load_explicit(&d->cells[slot], memory_order_relaxed);
        if (TP_LIKELY(c != NULL))
            return c;
    } else if (dir_grow(dirp, (size_t)slot + 1) != 0) {
        return NULL;
    }
    d = atomic_load_explicit(dirp, memory_order_relaxed);
    void *c = calloc(1, size);
    if (c)
        atomic_store_explicit(&d->cells[slot], c, memory_order_release);
    return c;
}

/* ------------------------------------------------------------------------------------------ */
/* counting                                                                                   */

/* The slot cached in *cache, else looked up (and registered) under the registry lock.
 * UINT32_MAX on ENOMEM (the request is not counted). */
static uint32_t series_slot(struct tp_metrics *m, uint32_t *cache, const char *service,
                            const char *route)
{
    if (TP_LIKELY(*cache != 0))
        return *cache - 1;
    pthread_mutex_lock(&m->lock);
    long s = series_add(m, service ? service : "", route ? route : "");
    pthread_mutex_unlock(&m->lock);
    if (s < 0)
        return UINT32_MAX;
    *cache = (uint32_t)s + 1;
    return (uint32_t)s;
}

/* The series of c's request: its route and the service that served it (a split share has a
 * series of its own). */
static uint32_t request_series(struct tp_mworker *mw, const struct tp_snapshot *snap,
                               const struct tp_request *req)
{
    if (!req->route)
        return M_SLOT_UNMATCHED;
    struct tp_mbinding *b = binding_of(mw, snap);
    size_t ri = (size_t)(req->route - snap->routes);
    if (!b || ri >= b->num_routes)
        return UINT32_MAX;
    const struct tp_route *rt = req->route;
    const struct tp_service *svc = rt->service;
    uint32_t *cache = &b->route_slot[ri];
    if (TP_UNLIKELY(req->service && req->service != rt->service && b->split_off)) {
        for (size_t k = 0; k < rt->num_split; k++) {
            if (rt->split_services[k] == req->service) {
                cache = &b->split_slot[b->split_off[ri] + k];
                svc = req->service;
                break;
            }
        }
    }
    return series_slot(mw->m, cache, svc->conf->name, rt->conf->name);
}

static void dur_add(struct tp_mdur *h, uint64_t us)
{
    unsigned i = 0;
    while (i < M_DUR_BUCKETS - 1 && us > tp_metrics_dur_bounds_us[i])
        i++;
    tp_mctr_add(&h->bucket[i], 1);
    tp_mctr_add(&h->sum_us, us);
    tp_mctr_add(&h->count, 1);
}

static void size_add(struct tp_msize *h, uint64_t bytes)
{
    unsigned i = 0;
    while (i < M_SIZE_BUCKETS - 1 && bytes > tp_metrics_size_bounds[i])
        i++;
    tp_mctr_add(&h->bucket[i], 1);
    tp_mctr_add(&h->sum, bytes);
    tp_mctr_add(&h->count, 1);
}

/* Usage of one wall-clock minute. A slot from an older minute is cleared first: its tag goes
 * to 0 while it is, so a reader never mixes two minutes. */
static void minute_add(struct tp_mminute *ring, uint64_t minute, uint64_t in, uint64_t out)
{
    struct tp_mminute *mm = &ring[minute % M_MINUTES];
    uint64_t tag = minute + 1;
    if (TP_UNLIKELY(atomic_load_explicit(&mm->tag, memory_order_relaxed) != tag)) {
        atomic_store_explicit(&mm->tag, 0, memory_order_relaxed);
        atomic_thread_fence(memory_order_release);
        atomic_store_explicit(&mm->requests, 0, memory_order_relaxed);
        atomic_store_explicit(&mm->bytes_in, 0, memory_order_relaxed);
        atomic_store_explicit(&mm->bytes_out, 0, memory_order_relaxed);
        atomic_store_explicit(&mm->tag, tag, memory_order_release);
    }
    tp_mctr_add(&mm->requests, 1);
    tp_mctr_add(&mm->bytes_in, in);
    tp_mctr_add(&mm->bytes_out, out);
}

static void window_clear(struct tp_mwindow *win, uint64_t epoch)
{
    atomic_store_explicit(&win->epoch, 0, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    for (int k = 0; k < 2; k++) {
        uint32_t lo = atomic_load_explicit(&win->lo[k], memory_order_relaxed);
        uint32_t hi = atomic_load_explicit(&win->hi[k], memory_order_relaxed);
        for (uint32_t i = lo; i <= hi && i < TP_SKETCH_BUCKETS; i++) /* only what was touched */
            atomic_store_explicit(&win->counts[k][i], 0, memory_order_relaxed);
        atomic_store_explicit(&win->lo[k], TP_SKETCH_BUCKETS, memory_order_relaxed);
        atomic_store_explicit(&win->hi[k], 0, memory_order_relaxed);
    }
    atomic_store_explicit(&win->epoch, epoch, memory_order_release);
}

static void sketch_add(struct tp_mwindow *win, int k, uint64_t us)
{
    unsigned i = tp_sketch_index(us);
    _Atomic uint32_t *cnt = &win->counts[k][i];
    atomic_store_explicit(cnt, atomic_load_explicit(cnt, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    if (i < atomic_load_explicit(&win->lo[k], memory_order_relaxed))
        atomic_store_explicit(&win->lo[k], i, memory_order_relaxed);
    if (i > atomic_load_explicit(&win->hi[k], memory_order_relaxed))
        atomic_store_explicit(&win->hi[k], i, memory_order_relaxed);
}

static struct tp_mlatency *latency_new(void)
{
    struct tp_mlatency *l = calloc(1, sizeof(*l));
    for (int i = 0; l && i < M_WINDOWS; i++)
        for (int k = 0; k < 2; k++)
            atomic_init(&l->w[i].lo[k], TP_SKETCH_BUCKETS);
    return l;
}

static void latency_add(struct tp_mcell *cell, uint32_t window_ms, uint64_t now_us,
                        uint64_t total_us, bool has_up, uint64_t up_us)
{
    struct tp_mlatency *l = atomic_load_explicit(&cell->latency, memory_order_relaxed);
    if (TP_UNLIKELY(!l)) {
        if (!(l = latency_new()))
            return;
        atomic_store_explicit(&cell->latency, l, memory_order_release);
    }
    uint32_t sub = window_ms / M_WINDOWS;
    if (TP_UNLIKELY(atomic_load_explicit(&l->sub_ms, memory_order_relaxed) != sub)) {
        for (int i = 0; i < M_WINDOWS; i++) /* a reload changed the window: start again */
            window_clear(&l->w[i], 0);
        atomic_store_explicit(&l->sub_ms, sub, memory_order_release);
    }
    uint64_t epoch = now_us / 1000 / sub + 1;
    struct tp_mwindow *win = &l->w[epoch % M_WINDOWS];
    if (TP_UNLIKELY(atomic_load_explicit(&win->epoch, memory_order_relaxed) != epoch))
        window_clear(win, epoch);
    sketch_add(win, 0, total_us);
    if (has_up)
        sketch_add(win, 1, up_us);
}

static const char *consumer_name(const struct tp_consumer *c)
{
    return c->username ? c->username : c->custom_id ? c->custom_id : c->id ? c->id : "";
}

static void count_consumer(struct tp_mworker *mw, const struct tp_snapshot *snap,
                           const struct tp_request *req, uint32_t cap, uint64_t minute)
{
    const struct tp_consumer *cons = tp_plugin_consumer(req->plugins);
    if (!cons || !cons->conf || !cap)
        return;
    struct tp_mbinding *b = binding_of(mw, snap);
    size_t ci = (size_t)(cons->conf - snap->config->consumers);
    if (!b || ci >= b->num_consumers)
        return;
    uint32_t slot = b->consumer_slot[ci];
    if (TP_UNLIKELY(slot == 0)) {
        pthread_mutex_lock(&mw->m->lock);
        long s = cons_add(mw->m, consumer_name(cons), cap);
        pthread_mutex_unlock(&mw->m->lock);
        if (s < 0)
            return;
        slot = b->consumer_slot[ci] = (uint32_t)s + 1;
    }
    struct tp_mconsumer *cc = cell_get(&mw->consumers, slot - 1, sizeof(*cc));
    if (!cc)
        return;
    tp_mctr_add(&cc->requests, 1);
    tp_mctr_add(&cc->bytes_in, req->bytes_in);
    tp_mctr_add(&cc->bytes_out, req->bytes_out);
    minute_add(cc->minutes, minute, req->bytes_in, req->bytes_out);
}

/* Upstream time to the first byte of the answer (µs); false when no answer head came. */
static bool upstream_time(const struct tp_request *req, uint64_t *us)
{
    uint64_t start = req->up_start_us ? req->up_start_us : req->up_start_ms * 1000;
    uint64_t first = req->up_first_us ? req->up_first_us : req->up_first_byte_ms * 1000;
    if (!start || !first || first < start)
        return false; /* a retry started after the answer that stopped it */
    *us = first - start;
    return true;
}

void tp_metrics_request_done(struct tp_conn *c)
{
    struct tp_worker *w = c->w;
    struct tp_mworker *mw = w->metrics;
    const struct tp_request *req = &c->req;
    const struct tp_snapshot *snap = (req->ws ? req->ws : w->cur)->snap;
    const struct tp_conf_metrics *mc = &snap->config->metrics;
    if (!mw || !mc->enabled)
        return;
    uint32_t slot = request_series(mw, snap, req);
    struct tp_mcell *cell = slot != UINT32_MAX ? cell_get(&mw->routes, slot, sizeof(*cell)) : NULL;
    if (!cell)
        return;
    uint64_t now = tp_now_us();
    tp_mctr_add(&cell->requests[method_index(req->method)][code_index(req->status)], 1);
    size_add(&cell->req_size, req->bytes_in);
    size_add(&cell->resp_size, req->bytes_out);
    uint64_t minute = (uint64_t)((int64_t)now + mw->wall_offset_us) / 60000000u;
    minute_add(cell->minutes, minute, req->bytes_in, req->bytes_out);
    if (req->status != 101) { /* a tunnel's lifetime is not a latency */
        uint64_t start = req->start_us ? req->start_us : req->start_ms * 1000;
        uint64_t total = now > start ? now - start : 0, up = 0;
        bool has_up = upstream_time(req, &up);
        dur_add(&cell->total, total);
        if (has_up)
            dur_add(&cell->upstream, up);
        if (mc->latency_window_ms)
            latency_add(cell, mc->latency_window_ms, now, total, has_up, up);
    }
    if (req->plugins && mc->max_consumers)
        count_consumer(mw, snap, req, mc->max_consumers, minute);
}

void tp_metrics_security(struct tp_conn *c, const char *plugin, int status)
{
    struct tp_worker *w = c->w;
    struct tp_mworker *mw = w->metrics;
    const struct tp_request *req = &c->req;
    const struct tp_snapshot *snap = (req->ws ? req->ws : w->cur)->snap;
    if (!mw || !snap->config->metrics.enabled)
        return;
    uint32_t slot = request_series(mw, snap, req);
    struct tp_mcell *cell = slot != UINT32_MAX ? cell_get(&mw->routes, slot, sizeof(*cell)) : NULL;
    if (!cell)
        return;
    unsigned kind = status == 401 ? M_SEC_AUTHN : status == 429 ? M_SEC_RATE : M_SEC_AUTHZ;
    tp_mctr_add(&cell->security[tp__metrics_plugin_index(plugin)][kind], 1);
}

void tp_metrics_conn_opened(struct tp_worker *w)
{
    if (w->metrics)
        tp_mctr_add(&w->metrics->accepted, 1);
}

void tp_metrics_conn_closed(struct tp_worker *w)
{
    if (w->metrics)
        tp_mctr_add(&w->metrics->closed, 1);
}
