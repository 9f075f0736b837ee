/*
 * Metrics export (main thread): the Prometheus text exposition format 0.0.4 at /metrics, the
 * percentiles document at /status/latency and the usage document at /status/usage.
 *
 * A scrape first takes the list of live series under the registry lock: every (service, route)
 * pair of the live snapshot that has been registered, plus route="unmatched". It then sums the
 * workers' cells of each series with relaxed loads, without the lock. Only series that have
 * been counted at least once (a cell exists on some worker) are written, so the output grows
 * with the traffic's reach into the configuration, never with request data.
 */
#include "metrics/metrics_internal.h"
#include "turnpike/circuit.h"
#include "turnpike/health.h"
#include "turnpike/logsink.h"
#include "turnpike/trace.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double quantiles[] = {0.5, 0.95, 0.99, 0.999};
static const char *const quantile_labels[] = {"0.5", "0.95", "0.99", "0.999"};
static const char *const quantile_keys[] = {"p50", "p95", "p99", "p99_9"};
#define NQ 4

/* ------------------------------------------------------------------------------------------ */
/* output helpers: the first error sticks                                                     */

struct out {
    struct tp_strbuf *b;
    int err;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (!o->err)
        o->err = tp_strbuf_append(o->b, s, n);
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void putu(struct out *o, uint64_t v)
{
    char num[20];
    put(o, num, tp_fmt_u64(num, v));
}

/* A label value (exposition format: backslash, double quote and line feed escaped). */
static void put_label(struct out *o, const char *s)
{
    const char *run = s;
    for (; *s; s++) {
        const char *esc = *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : *s == '\n' ? "\\n" : NULL;
        if (!esc)
            continue;
        put(o, run, (size_t)(s - run));
        puts_(o, esc);
        run = s + 1;
    }
    put(o, run, (size_t)(s - run));
}

static void put_json(struct out *o, const char *s)
{
    put(o, "\"", 1);
    if (!o->err)
        o->err = tp_strbuf_json_str(o->b, s, strlen(s));
    put(o, "\"", 1);
}

/* Microseconds as decimal seconds, exactly ("1.5", "0.000250"). */
static void put_seconds(struct out *o, uint64_t us)
{
    putu(o, us / 1000000);
    uint64_t frac = us % 1000000;
    if (!frac)
        return;
    char d[8] = ".000000";
    for (int i = 6; i >= 1; i--, frac /= 10)
        d[i] = (char)('0' + frac % 10);
    size_t n = 7;
    while (d[n - 1] == '0')
        n--;
    put(o, d, n);
}

static void put_double(struct out *o, double v, const char *fmt)
{
    char buf[64];
    if (isnan(v)) {
        puts_(o, "NaN");
        return;
    }
    int n = snprintf(buf, sizeof(buf), fmt, v);
    if (n > 0)
        put(o, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
}

/* ------------------------------------------------------------------------------------------ */
/* the live series of a scrape                                                                */

struct live {
    uint32_t slot;
    int svc; /* index in snap->services; -1 for unmatched */
    const struct tp_mseries *s;
};

struct scrape {
    struct tp_metrics *m;
    const struct tp_snapshot *snap;
    struct live *live;
    size_t n;
    struct tp_mcons **cons; /* copy of the consumer entries (never freed before m) */
    size_t ncons;
    uint64_t now_ms;
    uint64_t *acc, *tmp; /* [TP_SKETCH_BUCKETS] merge buffers */
};

static uint64_t mono_ms(void)
{
    return tp_now_us() / 1000;
}

static void live_add(struct scrape *sc, unsigned char *seen, const char *service, const char *route,
                     int svc)
{
    long s = tp__metrics_find_series(sc->m, service ? service : "", route ? route : "");
    if (s < 0 || (seen[s / 8] & (1u << (s % 8))))
        return;
    seen[s / 8] |= (unsigned char)(1u << (s % 8));
    sc->live[sc->n++] = (struct live){(uint32_t)s, svc, sc->m->series[s]};
}

static int scrape_begin(struct scrape *sc, struct tp_metrics *m, const struct tp_snapshot *snap)
{
    memset(sc, 0, sizeof(*sc));
    sc->m = m;
    sc->snap = snap;
    sc->now_ms = mono_ms();
    size_t nsplit = 0;
    for (size_t i = 0; i < snap->num_routes; i++)
        nsplit += snap->routes[i].num_split;
    sc->acc = calloc(TP_SKETCH_BUCKETS, sizeof(uint64_t));
    sc->tmp = calloc(TP_SKETCH_BUCKETS, sizeof(uint64_t));
    sc->live = malloc((1 + snap->num_routes + nsplit) * sizeof(*sc->live));
    pthread_mutex_lock(&m->lock);
    unsigned char *seen = calloc(m->num_series / 8 + 1, 1);
    sc->cons = malloc((m->num_cons ? m->num_cons : 1) * sizeof(*sc->cons));
    int rc = seen && sc->live && sc->cons && sc->acc && sc->tmp ? 0 : TP_ENOMEM;
    if (rc == 0) {
        live_add(sc, seen, "", "unmatched", -1);
        for (size_t i = 0; i < snap->num_routes; i++) {
            const struct tp_route *rt = &snap->routes[i];
            live_add(sc, seen, rt->service->conf->name, rt->conf->name,
                     (int)(rt->service - snap->services));
            for (size_t k = 0; k < rt->num_split; k++)
                live_add(sc, seen, rt->split_services[k]->conf->name, rt->conf->name,
                         (int)(rt->split_services[k] - snap->services));
        }
        memcpy(sc->cons, m->cons, m->num_cons * sizeof(*sc->cons));
        sc->ncons = m->num_cons;
    }
    pthread_mutex_unlock(&m->lock);
    free(seen);
    return rc;
}

static void scrape_end(struct scrape *sc)
{
    free(sc->live);
    free(sc->cons);
    free(sc->acc);
    free(sc->tmp);
}

static const struct tp_mcell *wcell(const struct scrape *sc, int w, uint32_t slot)
{
    struct tp_mworker *mw = sc->m->workers[w];
    return mw ? tp__metrics_cell(&mw->routes, slot) : NULL;
}

static const struct tp_mconsumer *wcons(const struct scrape *sc, int w, uint32_t slot)
{
    struct tp_mworker *mw = sc->m->workers[w];
    return mw ? tp__metrics_cell(&mw->consumers, slot) : NULL;
}

static bool counted(const struct scrape *sc, uint32_t slot)
{
    for (int w = 0; w < sc->m->nworkers; w++)
        if (wcell(sc, w, slot))
            return true;
    return false;
}

static void series_labels(struct out *o, const struct live *l)
{
    puts_(o, "service=\"");
    put_label(o, l->s->service);
    puts_(o, "\",route=\"");
    put_label(o, l->s->route);
    puts_(o, "\"");
}

static void family(struct out *o, const char *name, const char *type, const char *help)
{
    puts_(o, "# HELP ");
    puts_(o, name);
    puts_(o, " ");
    puts_(o, help);
    puts_(o, "\n# TYPE ");
    puts_(o, name);
    puts_(o, " ");
    puts_(o, type);
    puts_(o, "\n");
}

/* ------------------------------------------------------------------------------------------ */
/* sums over workers                                                                          */

struct dur_sum {
    uint64_t bucket[M_DUR_BUCKETS], sum_us, count;
};

static void sum_dur(const struct scrape *sc, uint32_t slot, int which, struct dur_sum *d)
{
    memset(d, 0, sizeof(*d));
    for (int w = 0; w < sc->m->nworkers; w++) {
        const struct tp_mcell *c = wcell(sc, w, slot);
        if (!c)
            continue;
        const struct tp_mdur *h = which ? &c->upstream : &c->total;
        for (int i = 0; i < M_DUR_BUCKETS; i++)
            d->bucket[i] += tp_mctr_get(&h->bucket[i]);
        d->sum_us += tp_mctr_get(&h->sum_us);
        d->count += tp_mctr_get(&h->count);
    }
}

struct size_sum {
    uint64_t bucket[M_SIZE_BUCKETS], sum, count;
};

static void sum_size(const struct scrape *sc, uint32_t slot, int which, struct size_sum *d)
{
    memset(d, 0, sizeof(*d));
    for (int w = 0; w < sc->m->nworkers; w++) {
        const struct tp_mcell *c = wcell(sc, w, slot);
        if (!c)
            continue;
        const struct tp_msize *h = which ? &c->resp_size : &c->req_size;
        for (int i = 0; i < M_SIZE_BUCKETS; i++)
            d->bucket[i] += tp_mctr_get(&h->bucket[i]);
        d->sum += tp_mctr_get(&h->sum);
        d->count += tp_mctr_get(&h->count);
    }
}

/* Add the live sub-windows of sketch k of one cell to sc->acc; returns the values added.
 * A sub-window being cleared while it is read (its epoch changed) is left out. */
static uint64_t merge_cell(struct scrape *sc, const struct tp_mcell *c, int k, unsigned *lo,
                           unsigned *hi)
{
    const struct tp_mlatency *l = atomic_load_explicit(&c->latency, memory_order_acquire);
    if (!l)
        return 0;
    uint32_t sub = atomic_load_explicit(&l->sub_ms, memory_order_acquire);
    if (!sub)
        return 0;
    uint64_t cur = sc->now_ms / sub + 1, n = 0;
    for (int i = 0; i < M_WINDOWS; i++) {
        const struct tp_mwindow *win = &l->w[i];
        uint64_t e1 = atomic_load_explicit(&win->epoch, memory_order_acquire);
        if (!e1 || e1 > cur || e1 + M_WINDOWS <= cur)
            continue;
        unsigned wl = atomic_load_explicit(&win->lo[k], memory_order_relaxed);
        unsigned wh = atomic_load_explicit(&win->hi[k], memory_order_relaxed);
        if (wl > wh || wh >= TP_SKETCH_BUCKETS)
            continue;
        for (unsigned j = wl; j <= wh; j++)
            sc->tmp[j] = atomic_load_explicit(&win->counts[k][j], memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&win->epoch, memory_order_relaxed) != e1)
            continue;
        for (unsigned j = wl; j <= wh; j++) {
            sc->acc[j] += sc->tmp[j];
            n += sc->tmp[j];
        }
        *lo = TP_MIN(*lo, wl);
        *hi = TP_MAX(*hi, wh);
    }
    return n;
}

/* Percentiles (µs) of sketch k over the series live[idx[0..n)]; returns the values seen. */
static uint64_t percentiles(struct scrape *sc, const size_t *idx, size_t n, int k, double out[NQ])
{
    unsigned lo = TP_SKETCH_BUCKETS, hi = 0;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        for (int w = 0; w < sc->m->nworkers; w++) {
            const struct tp_mcell *c = wcell(sc, w, sc->live[idx[i]].slot);
            if (c)
                total += merge_cell(sc, c, k, &lo, &hi);
        }
    if (total)
        tp_sketch_quantiles(sc->acc, lo, hi, total, quantiles, NQ, out);
    for (unsigned j = lo; total && j <= hi; j++)
        sc->acc[j] = 0;
    return total;
}

/* live indices grouped by service: order[start[s] .. start[s + 1]) */
struct by_service {
    size_t *order;
    size_t *start;
};

static int group_by_service(const struct scrape *sc, struct by_service *g)
{
    size_t ns = sc->snap->num_services;
    g->start = calloc(ns + 2, sizeof(size_t));
    g->order = malloc((sc->n ? sc->n : 1) * sizeof(size_t));
    if (!g->start || !g->order) {
        free(g->start);
        free(g->order);
        return TP_ENOMEM;
    }
    for (size_t i = 0; i < sc->n; i++)
        if (sc->live[i].svc >= 0)
            g->start[sc->live[i].svc + 1]++;
    for (size_t s = 0; s < ns; s++)
        g->start[s + 1] += g->start[s];
    size_t *fill = calloc(ns + 1, sizeof(size_t));
    if (!fill) {
        free(g->start);
        free(g->order);
        return TP_ENOMEM;
    }
    for (size_t i = 0; i < sc->n; i++) {
        int s = sc->live[i].svc;
        if (s >= 0)
            g->order[g->start[s] + fill[s]++] = i;
    }
    free(fill);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Prometheus families                                                                        */

static void prom_requests(struct out *o, const struct scrape *sc)
{
    family(o, "turnpike_http_requests_total", "counter",
           "Requests by service, route, method and status code (unmatched: route=\"unmatched\"; "
           "codes outside the fixed set counted by class).");
    uint64_t sum[M_METHODS][M_CODES];
    for (size_t i = 0; i < sc->n; i++) {
        const struct live *l = &sc->live[i];
        memset(sum, 0, sizeof(sum));
        for (int w = 0; w < sc->m->nworkers; w++) {
            const struct tp_mcell *c = wcell(sc, w, l->slot);
            for (int a = 0; c && a < M_METHODS; a++)
                for (int b = 0; b < M_CODES; b++)
                    sum[a][b] += tp_mctr_get(&c->requests[a][b]);
        }
        for (int a = 0; a < M_METHODS; a++)
            for (int b = 0; b < M_CODES; b++) {
                if (!sum[a][b])
                    continue;
                puts_(o, "turnpike_http_requests_total{");
                series_labels(o, l);
                puts_(o, ",method=\"");
                puts_(o, tp_metrics_method_names[a]);
                puts_(o, "\",code=\"");
                puts_(o, tp_metrics_code_names[b]);
                puts_(o, "\"} ");
                putu(o, sum[a][b]);
                puts_(o, "\n");
            }
    }
}

/* One histogram series: cumulative _bucket lines, then _sum (seconds from µs, or a plain
 * integer) and _count. */
static void histogram_series(struct out *o, const char *name, const struct live *l,
                             const char *const *le, const uint64_t *bucket, int nb, uint64_t sum,
                             bool sum_is_us, uint64_t count)
{
    uint64_t cum = 0;
    for (int b = 0; b < nb; b++) {
        cum += bucket[b];
        puts_(o, name);
        puts_(o, "_bucket{");
        series_labels(o, l);
        puts_(o, ",le=\"");
        puts_(o, le[b]);
        puts_(o, "\"} ");
        putu(o, cum);
        puts_(o, "\n");
    }
    puts_(o, name);
    puts_(o, "_sum{");
    series_labels(o, l);
    puts_(o, "} ");
    if (sum_is_us)
        put_seconds(o, sum);
    else
        putu(o, sum);
    puts_(o, "\n");
    puts_(o, name);
    puts_(o, "_count{");
    series_labels(o, l);
    puts_(o, "} ");
    putu(o, count);
    puts_(o, "\n");
}

static void prom_dur(struct out *o, const struct scrape *sc, int which)
{
    const char *name =
        which ? "turnpike_upstream_duration_seconds" : "turnpike_http_request_duration_seconds";
    family(o, name, "histogram",
           which ? "Upstream time to the first byte of the answer, per service and route."
                 : "Request duration from the parsed head to the end of the answer, per service "
                   "and route (WebSocket tunnels excluded).");
    for (size_t i = 0; i < sc->n; i++) {
        struct dur_sum d;
        sum_dur(sc, sc->live[i].slot, which, &d);
        if (d.count)
            histogram_series(o, name, &sc->live[i], tp_metrics_dur_le, d.bucket, M_DUR_BUCKETS,
                             d.sum_us, true, d.count);
    }
}

static void prom_size(struct out *o, const struct scrape *sc, int which)
{
    const char *name =
        which ? "turnpike_http_response_size_bytes" : "turnpike_http_request_size_bytes";
    family(o, name, "histogram",
           which ? "Bytes sent to the client per request (head and body), per service and route."
                 : "Bytes received from the client per request (head and body), per service and "
                   "route.");
    for (size_t i = 0; i < sc->n; i++) {
        struct size_sum d;
        sum_size(sc, sc->live[i].slot, which, &d);
        if (d.count)
            histogram_series(o, name, &sc->live[i], tp_metrics_size_le, d.bucket,
                             M_SIZE_BUCKETS, d.sum, false, d.count);
    }
}

/* One summary: quantile lines, then _sum and _count (cumulative, from the histogram). */
static void summary_lines(struct out *o, const char *name,
                          void (*labels)(struct out *, const void *), const void *arg,
                          const double q[NQ], uint64_t n, uint64_t sum_us, uint64_t count)
{
    for (int j = 0; j < NQ; j++) {
        puts_(o, name);
        puts_(o, "{");
        labels(o, arg);
        puts_(o, ",quantile=\"");
        puts_(o, quantile_labels[j]);
        puts_(o, "\"} ");
        put_double(o, n ? q[j] / 1e6 : NAN, "%.9g");
        puts_(o, "\n");
    }
    puts_(o, name);
    puts_(o, "_sum{");
    labels(o, arg);
    puts_(o, "} ");
    put_seconds(o, sum_us);
    puts_(o, "\n");
    puts_(o, name);
    puts_(o, "_count{");
    labels(o, arg);
    puts_(o, "} ");
    putu(o, count);
    puts_(o, "\n");
}

static void live_labels(struct out *o, const void *arg)
{
    series_labels(o, arg);
}

static void service_labels(struct out *o, const void *arg)
{
    puts_(o, "service=\"");
    put_label(o, arg);
    puts_(o, "\"");
}

static void prom_route_summaries(struct out *o, struct scrape *sc, int which)
{
    const char *name =
        which ? "turnpike_upstream_latency_seconds" : "turnpike_http_request_latency_seconds";
    family(o, name, "summary",
           which ? "Upstream latency percentiles over metrics.latency_window, per service and "
                   "route (relative error under 1%)."
                 : "Request latency percentiles over metrics.latency_window, per service and "
                   "route (relative error under 1%).");
    for (size_t i = 0; i < sc->n; i++) {
        struct dur_sum d;
        sum_dur(sc, sc->live[i].slot, which, &d);
        if (!d.count)
            continue;
        double q[NQ] = {0};
        uint64_t n = percentiles(sc, &i, 1, which, q);
        summary_lines(o, name, live_labels, &sc->live[i], q, n, d.sum_us, d.count);
    }
}

static void prom_service_summaries(struct out *o, struct scrape *sc, const struct by_service *g,
                                   int which)
{
    const char *name = which ? "turnpike_service_upstream_latency_seconds"
                             : "turnpike_service_request_latency_seconds";
    family(o, name, "summary",
           which ? "Upstream latency percentiles over metrics.latency_window, per service."
                 : "Request latency percentiles over metrics.latency_window, per service.");
    for (size_t s = 0; s < sc->snap->num_services; s++) {
        size_t a = g->start[s], b = g->start[s + 1];
        uint64_t sum_us = 0, count = 0;
        for (size_t i = a; i < b; i++) {
            struct dur_sum d;
            sum_dur(sc, sc->live[g->order[i]].slot, which, &d);
            sum_us += d.sum_us;
            count += d.count;
        }
        if (!count)
            continue;
        double q[NQ] = {0};
        uint64_t n = percentiles(sc, g->order + a, b - a, which, q);
        summary_lines(o, name, service_labels, sc->snap->services[s].conf->name, q, n, sum_us,
                      count);
    }
}

static void prom_connections(struct out *o, const struct scrape *sc)
{
    uint64_t st[M_CONN_STATES] = {0}, acc = 0, clo = 0;
    for (int w = 0; w < sc->m->nworkers; w++) {
        const struct tp_mworker *mw = sc->m->workers[w];
        if (!mw)
            continue;
        for (int i = 0; i < M_CONN_STATES; i++)
            st[i] += atomic_load_explicit(&((struct tp_mworker *)mw)->conn_state[i],
                                          memory_order_relaxed);
        acc += tp_mctr_get(&mw->accepted);
        clo += tp_mctr_get(&mw->closed);
    }
    family(o, "turnpike_connections", "gauge",
           "Client connections by state (taken by each worker once a second).");
    for (int i = 0; i < M_CONN_STATES; i++) {
        puts_(o, "turnpike_connections{state=\"");
        puts_(o, tp_metrics_conn_state_names[i]);
        puts_(o, "\"} ");
        putu(o, st[i]);
        puts_(o, "\n");
    }
    family(o, "turnpike_connections_open", "gauge", "Client connections open now.");
    puts_(o, "turnpike_connections_open ");
    putu(o, acc >= clo ? acc - clo : 0);
    puts_(o, "\n");
    family(o, "turnpike_connections_accepted_total", "counter", "Client connections accepted.");
    puts_(o, "turnpike_connections_accepted_total ");
    putu(o, acc);
    puts_(o, "\n");
}

static unsigned idle_of(const struct scrape *sc, const struct tp_target *t)
{
    unsigned n = 0;
    for (int w = 0; w < sc->m->nworkers; w++) {
        struct tp_mworker *mw = sc->m->workers[w];
        if (!mw)
            continue;
        pthread_mutex_lock(&mw->census_lock);
        for (size_t i = 0; i < mw->num_idle; i++)
            if (mw->idle[i].addrlen == t->addrlen &&
                memcmp(&mw->idle[i].addr, &t->addr, t->addrlen) == 0)
                n += mw->idle[i].idle;
        pthread_mutex_unlock(&mw->census_lock);
    }
    return n;
}

static void target_labels(struct out *o, const struct tp_upstream *u, const struct tp_target *t)
{
    puts_(o, "upstream=\"");
    put_label(o, u->name);
    puts_(o, "\",target=\"");
    put_label(o, t->name);
    puts_(o, "\"");
}

/* The lines of a state set: one per breaker state, 1 for the current one. Target labels when
 * t is set, else the service's. */
static void circuit_lines(struct out *o, const char *name, const struct tp_upstream *u,
                          const struct tp_target *t, const char *service, const char *current)
{
    static const char *const states[] = {"closed", "open", "half-open"};
    for (int s = 0; s < 3; s++) {
        puts_(o, name);
        puts_(o, "{");
        if (t) {
            target_labels(o, u, t);
        } else {
            puts_(o, "service=\"");
            put_label(o, service);
            puts_(o, "\"");
        }
        puts_(o, ",state=\"");
        puts_(o, states[s]);
        puts_(o, "\"} ");
        puts_(o, strcmp(states[s], current) == 0 ? "1\n" : "0\n");
    }
}

static void prom_upstreams(struct out *o, const struct scrape *sc)
{
    const struct tp_snapshot *snap = sc->snap;
    family(o, "turnpike_upstream_connections", "gauge",
           "Upstream connections per target: open (all workers) and idle in the keep-alive "
           "pools (taken once a second).");
    for (size_t i = 0; i < snap->num_upstreams; i++)
        for (size_t j = 0; j < snap->upstreams[i].num_targets; j++) {
            const struct tp_upstream *u = &snap->upstreams[i];
            const struct tp_target *t = &u->targets[j];
            int open =
                t->health ? atomic_load_explicit(&t->health->connections, memory_order_relaxed) : 0;
            for (int k = 0; k < 2; k++) {
                puts_(o, "turnpike_upstream_connections{");
                target_labels(o, u, t);
                puts_(o, k ? ",state=\"idle\"} " : ",state=\"open\"} ");
                putu(o, k ? idle_of(sc, t) : (uint64_t)(open > 0 ? open : 0));
                puts_(o, "\n");
            }
        }
    family(o, "turnpike_upstream_target_health", "gauge",
           "1 when the target may receive traffic (healthy or not health-checked), else 0.");
    for (size_t i = 0; i < snap->num_upstreams; i++)
        for (size_t j = 0; j < snap->upstreams[i].num_targets; j++) {
            const struct tp_upstream *u = &snap->upstreams[i];
            const struct tp_target *t = &u->targets[j];
            puts_(o, "turnpike_upstream_target_health{");
            target_labels(o, u, t);
            puts_(o, "} ");
            puts_(o, !u->healthchecks || tp_health_up(t->health) ? "1\n" : "0\n");
        }
    family(o, "turnpike_upstream_target_circuit_state", "gauge",
           "Circuit breaker state of each target of an upstream with a circuit_breaker "
           "(1 for the current state).");
    for (size_t i = 0; i < snap->num_upstreams; i++)
        for (size_t j = 0; j < snap->upstreams[i].num_targets; j++) {
            const struct tp_upstream *u = &snap->upstreams[i];
            const struct tp_target *t = &u->targets[j];
            if (t->circuit)
                circuit_lines(o, "turnpike_upstream_target_circuit_state", u, t, NULL,
                              tp_circuit_state_name(t->circuit, sc->now_ms));
        }
    family(o, "turnpike_service_circuit_state", "gauge",
           "Circuit breaker state of each service with a circuit_breaker (1 for the current "
           "state).");
    for (size_t i = 0; i < snap->num_services; i++) {
        const struct tp_service *svc = &snap->services[i];
        if (svc->circuit)
            circuit_lines(o, "turnpike_service_circuit_state", NULL, NULL, svc->conf->name,
                          tp_circuit_state_name(svc->circuit, sc->now_ms));
    }
}

static void prom_security(struct out *o, const struct scrape *sc)
{
    static const char *const names[M_SEC_KINDS] = {"turnpike_auth_failures_total",
                                                   "turnpike_authz_denials_total",
                                                   "turnpike_ratelimit_rejections_total"};
    static const char *const helps[M_SEC_KINDS] = {
        "Authentication failures (401) per service, route and plugin.",
        "Authorization denials (403 and other refusals) per service, route and plugin.",
        "Rate-limit rejections (429) per service, route and plugin."};
    for (int k = 0; k < M_SEC_KINDS; k++) {
        family(o, names[k], "counter", helps[k]);
        for (size_t i = 0; i < sc->n; i++) {
            uint64_t sum[M_PLUGINS] = {0};
            for (int w = 0; w < sc->m->nworkers; w++) {
                const struct tp_mcell *c = wcell(sc, w, sc->live[i].slot);
                for (int p = 0; c && p < M_PLUGINS; p++)
                    sum[p] += tp_mctr_get(&c->security[p][k]);
            }
            for (unsigned p = 0; p < M_PLUGINS; p++) {
                const char *pn = tp__metrics_plugin_name(p);
                if (!sum[p] || !pn)
                    continue;
                puts_(o, names[k]);
                puts_(o, "{");
                series_labels(o, &sc->live[i]);
                puts_(o, ",plugin=\"");
                put_label(o, pn);
                puts_(o, "\"} ");
                putu(o, sum[p]);
                puts_(o, "\n");
            }
        }
    }
}

struct cons_sum {
    uint64_t requests, bytes_in, bytes_out;
    bool seen;
};

static void sum_cons(const struct scrape *sc, uint32_t slot, struct cons_sum *d)
{
    memset(d, 0, sizeof(*d));
    for (int w = 0; w < sc->m->nworkers; w++) {
        const struct tp_mconsumer *c = wcons(sc, w, slot);
        if (!c)
            continue;
        d->seen = true;
        d->requests += tp_mctr_get(&c->requests);
        d->bytes_in += tp_mctr_get(&c->bytes_in);
        d->bytes_out += tp_mctr_get(&c->bytes_out);
    }
}

static void prom_consumers(struct out *o, const struct scrape *sc)
{
    static const char *const names[] = {"turnpike_consumer_requests_total",
                                        "turnpike_consumer_request_bytes_total",
                                        "turnpike_consumer_response_bytes_total"};
    static const char *const helps[] = {
        "Requests per authenticated consumer (past metrics.max_consumers: consumer=\"other\").",
        "Bytes received from each consumer (heads and bodies).",
        "Bytes sent to each consumer (heads and bodies)."};
    for (int k = 0; k < 3; k++) {
        family(o, names[k], "counter", helps[k]);
        for (size_t i = 0; i < sc->ncons; i++) {
            struct cons_sum d;
            sum_cons(sc, (uint32_t)i, &d);
            if (!d.seen)
                continue;
            puts_(o, names[k]);
            puts_(o, "{consumer=\"");
            put_label(o, sc->cons[i]->name);
            puts_(o, "\"} ");
            putu(o, k == 0 ? d.requests : k == 1 ? d.bytes_in : d.bytes_out);
            puts_(o, "\n");
        }
    }
}

/* The log writer's and the span exporter's counters (src/observe, process-wide). */
static void prom_observe(struct out *o)
{
    static const char *const names[] = {"turnpike_log_lines_total", "turnpike_log_dropped_total"};
    static const char *const helps[] = {"Log lines written to their destination, per log.",
                                        "Log lines dropped (full queue or failed write), per log."};
    for (int k = 0; k < 2; k++) {
        family(o, names[k], "counter", helps[k]);
        for (int log = 0; log < TP_LOGSINK_COUNT; log++) {
            puts_(o, names[k]);
            puts_(o, "{log=\"");
            puts_(o, tp_logsink_name(log));
            puts_(o, "\"} ");
            putu(o, k ? tp_log_dropped(log) : tp_log_written(log));
            puts_(o, "\n");
        }
    }
    family(o, "turnpike_trace_spans_total", "counter",
           "Spans by outcome: exported (collector answered 2xx), failed, dropped (queue full).");
    puts_(o, "turnpike_trace_spans_total{outcome=\"exported\"} ");
    putu(o, tp_trace_exported());
    puts_(o, "\nturnpike_trace_spans_total{outcome=\"failed\"} ");
    putu(o, tp_trace_failed());
    puts_(o, "\nturnpike_trace_spans_total{outcome=\"dropped\"} ");
    putu(o, tp_trace_dropped());
    puts_(o, "\n");
}

/* Keep only the series some worker has counted. */
static void drop_uncounted(struct scrape *sc)
{
    size_t k = 0;
    for (size_t i = 0; i < sc->n; i++)
        if (counted(sc, sc->live[i].slot))
            sc->live[k++] = sc->live[i];
    sc->n = k;
}

int tp_metrics_prometheus(struct tp_metrics *m, const struct tp_snapshot *snap, struct tp_strbuf *b)
{
    struct scrape sc;
    struct by_service g = {0};
    struct out o = {b, 0};
    int rc = scrape_begin(&sc, m, snap);
    if (rc == 0) {
        drop_uncounted(&sc);
        rc = group_by_service(&sc, &g);
    }
    if (rc == 0) {
        prom_requests(&o, &sc);
        prom_dur(&o, &sc, 0);
        prom_dur(&o, &sc, 1);
        prom_size(&o, &sc, 0);
        prom_size(&o, &sc, 1);
        if (snap->config->metrics.latency_window_ms) {
            prom_route_summaries(&o, &sc, 0);
            prom_route_summaries(&o, &sc, 1);
            prom_service_summaries(&o, &sc, &g, 0);
            prom_service_summaries(&o, &sc, &g, 1);
        }
        prom_security(&o, &sc);
        prom_consumers(&o, &sc);
        prom_connections(&o, &sc);
        prom_upstreams(&o, &sc);
        prom_observe(&o);
        rc = o.err;
    }
    free(g.order);
    free(g.start);
    scrape_end(&sc);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* /status/latency                                                                            */

static void json_percentiles(struct out *o, struct scrape *sc, const size_t *idx, size_t n, int k)
{
    double q[NQ] = {0};
    uint64_t count = percentiles(sc, idx, n, k, q);
    puts_(o, "{\"count\":");
    putu(o, count);
    for (int j = 0; j < NQ; j++) {
        puts_(o, ",\"");
        puts_(o, quantile_keys[j]);
        puts_(o, "\":");
        if (count)
            put_double(o, q[j] / 1000.0, "%.3f");
        else
            puts_(o, "null");
    }
    puts_(o, "}");
}

int tp_metrics_latency_json(struct tp_metrics *m, const struct tp_snapshot *snap,
                            struct tp_strbuf *b)
{
    struct scrape sc;
    struct by_service g = {0};
    struct out o = {b, 0};
    int rc = scrape_begin(&sc, m, snap);
    if (rc == 0) {
        drop_uncounted(&sc);
        rc = group_by_service(&sc, &g);
    }
    if (rc == 0) {
        puts_(&o, "{\"window_ms\":");
        putu(&o, snap->config->metrics.latency_window_ms);
        puts_(&o, ",\"unit\":\"ms\",\"relative_error\":0.01,\"routes\":[");
        for (size_t i = 0; i < sc.n; i++) {
            puts_(&o, i ? ",{\"service\":" : "{\"service\":");
            put_json(&o, sc.live[i].s->service);
            puts_(&o, ",\"route\":");
            put_json(&o, sc.live[i].s->route);
            puts_(&o, ",\"total\":");
            json_percentiles(&o, &sc, &i, 1, 0);
            puts_(&o, ",\"upstream\":");
            json_percentiles(&o, &sc, &i, 1, 1);
            puts_(&o, "}");
        }
        puts_(&o, "],\"services\":[");
        bool first = true;
        for (size_t s = 0; s < snap->num_services; s++) {
            size_t a = g.start[s], e = g.start[s + 1];
            if (a == e)
                continue;
            puts_(&o, first ? "{\"service\":" : ",{\"service\":");
            first = false;
            put_json(&o, snap->services[s].conf->name);
            puts_(&o, ",\"total\":");
            json_percentiles(&o, &sc, g.order + a, e - a, 0);
            puts_(&o, ",\"upstream\":");
            json_percentiles(&o, &sc, g.order + a, e - a, 1);
            puts_(&o, "}");
        }
        puts_(&o, "]}");
        rc = o.err;
    }
    free(g.order);
    free(g.start);
    scrape_end(&sc);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* /status/usage                                                                              */

struct usage_min {
    uint64_t requests, bytes_in, bytes_out;
};

/* Add a ring's minutes of (now_min - M_MINUTES, now_min] into acc[0..M_MINUTES) (oldest
 * first). */
static void usage_ring(const struct tp_mminute *ring, uint64_t now_min, struct usage_min *acc)
{
    for (int i = 0; i < M_MINUTES; i++) {
        const struct tp_mminute *mm = &ring[i];
        uint64_t t1 = atomic_load_explicit(&((struct tp_mminute *)mm)->tag, memory_order_acquire);
        if (!t1 || t1 - 1 > now_min || t1 - 1 + M_MINUTES <= now_min)
            continue;
        struct usage_min v = {tp_mctr_get(&mm->requests), tp_mctr_get(&mm->bytes_in),
                              tp_mctr_get(&mm->bytes_out)};
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&((struct tp_mminute *)mm)->tag, memory_order_relaxed) != t1)
            continue;
        struct usage_min *a = &acc[M_MINUTES - 1 - (now_min - (t1 - 1))];
        a->requests += v.requests;
        a->bytes_in += v.bytes_in;
        a->bytes_out += v.bytes_out;
    }
}

static void put_minute_time(struct out *o, uint64_t minute)
{
    time_t t = (time_t)(minute * 60);
    struct tm tm;
    char buf[32];
    gmtime_r(&t, &tm);
    size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    put(o, "\"", 1);
    put(o, buf, n);
    put(o, "\"", 1);
}

static void usage_body(struct out *o, const struct usage_min *total, const struct usage_min *acc,
                       uint64_t now_min)
{
    puts_(o, "\"total\":{\"requests\":");
    putu(o, total->requests);
    puts_(o, ",\"bytes_in\":");
    putu(o, total->bytes_in);
    puts_(o, ",\"bytes_out\":");
    putu(o, total->bytes_out);
    puts_(o, "},\"per_minute\":[");
    bool first = true;
    for (int i = 0; i < M_MINUTES; i++) {
        if (!acc[i].requests)
            continue;
        puts_(o, first ? "{\"start\":" : ",{\"start\":");
        first = false;
        put_minute_time(o, now_min - (uint64_t)(M_MINUTES - 1 - i));
        puts_(o, ",\"requests\":");
        putu(o, acc[i].requests);
        puts_(o, ",\"bytes_in\":");
        putu(o, acc[i].bytes_in);
        puts_(o, ",\"bytes_out\":");
        putu(o, acc[i].bytes_out);
        puts_(o, "}");
    }
    puts_(o, "]");
}

int tp_metrics_usage_json(struct tp_metrics *m, const struct tp_snapshot *snap, struct tp_strbuf *b)
{
    struct scrape sc;
    struct out o = {b, 0};
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    uint64_t now_min = (uint64_t)rt.tv_sec / 60;
    int rc = scrape_begin(&sc, m, snap);
    if (rc == 0) {
        drop_uncounted(&sc);
        puts_(&o, "{\"minutes\":");
        putu(&o, M_MINUTES);
        puts_(&o, ",\"now\":");
        put_minute_time(&o, now_min);
        puts_(&o, ",\"routes\":[");
        for (size_t i = 0; i < sc.n; i++) {
            struct usage_min acc[M_MINUTES] = {{0}}, total = {0};
            struct size_sum in, outb;
            sum_size(&sc, sc.live[i].slot, 0, &in);
            sum_size(&sc, sc.live[i].slot, 1, &outb);
            total = (struct usage_min){outb.count, in.sum, outb.sum};
            for (int w = 0; w < m->nworkers; w++) {
                const struct tp_mcell *c = wcell(&sc, w, sc.live[i].slot);
                if (c)
                    usage_ring(c->minutes, now_min, acc);
            }
            puts_(&o, i ? ",{\"service\":" : "{\"service\":");
            put_json(&o, sc.live[i].s->service);
            puts_(&o, ",\"route\":");
            put_json(&o, sc.live[i].s->route);
            puts_(&o, ",");
            usage_body(&o, &total, acc, now_min);
            puts_(&o, "}");
        }
        puts_(&o, "],\"consumers\":[");
        bool first = true;
        for (size_t i = 0; i < sc.ncons; i++) {
            struct cons_sum d;
            sum_cons(&sc, (uint32_t)i, &d);
            if (!d.seen)
                continue;
            struct usage_min acc[M_MINUTES] = {{0}};
            struct usage_min total = {d.requests, d.bytes_in, d.bytes_out};
            for (int w = 0; w < m->nworkers; w++) {
                const struct tp_mconsumer *c = wcons(&sc, w, (uint32_t)i);
                if (c)
                    usage_ring(c->minutes, now_min, acc);
            }
            puts_(&o, first ? "{\"consumer\":" : ",{\"consumer\":");
            first = false;
            put_json(&o, sc.cons[i]->name);
            puts_(&o, ",");
            usage_body(&o, &total, acc, now_min);
            puts_(&o, "}");
        }
        puts_(&o, "]}");
        rc = o.err;
    }
    scrape_end(&sc);
    return rc;
}
