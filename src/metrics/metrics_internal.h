/*
 * turnpike — metrics internals shared by src/metrics/metrics.c (registry, counting, census) and
 * src/metrics/export.c (Prometheus text and JSON documents).
 *
 * Layout: the process-wide registry (struct tp_metrics) gives every (service, route) pair that
 * has had traffic a series slot, and every consumer one; slot numbers are the same in every
 * worker. Each worker (struct tp_mworker) keeps a directory of cells indexed by slot; a cell is
 * allocated by its worker the first time the worker counts for that slot and published with a
 * release store. Counters have one writer (the worker) and are read by the main thread with
 * relaxed loads: the reader may see a request counted in one family and not yet in another, and
 * that is all.
 */
#ifndef TURNPIKE_METRICS_INTERNAL_H
#define TURNPIKE_METRICS_INTERNAL_H

#include "turnpike/metrics.h"
#include "metrics/sketch.h"

#include <pthread.h>
#include <sys/socket.h>
#include <stdatomic.h>

typedef _Atomic uint64_t tp_mctr;

/** One writer: load and store, no read-modify-write (no lock prefix on x86). */
static inline void tp_mctr_add(tp_mctr *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

static inline uint64_t tp_mctr_get(const tp_mctr *c)
{
    return atomic_load_explicit((tp_mctr *)c, memory_order_relaxed);
}

/* Methods: a fixed set plus "other" (index M_METHOD_OTHER). */
#define M_METHODS 10
#define M_METHOD_OTHER 9
extern const char *const tp_metrics_method_names[M_METHODS];

/* Status codes: a fixed set of exact codes, then the classes 1xx..5xx, then "other". */
#define M_CODES 36
extern const char *const tp_metrics_code_names[M_CODES];

/* Histogram buckets (upper bounds; the last is +Inf). */
#define M_DUR_BUCKETS 17
extern const uint64_t tp_metrics_dur_bounds_us[M_DUR_BUCKETS - 1];
extern const char *const tp_metrics_dur_le[M_DUR_BUCKETS];
#define M_SIZE_BUCKETS 10
extern const uint64_t tp_metrics_size_bounds[M_SIZE_BUCKETS - 1];
extern const char *const tp_metrics_size_le[M_SIZE_BUCKETS];

/* Plugin outcomes: index 0 is "gateway", then the registry's plugins in order. */
#define M_PLUGINS 32
enum { M_SEC_AUTHN = 0, M_SEC_AUTHZ, M_SEC_RATE, M_SEC_KINDS };

#define M_MINUTES 60 /* usage: per-minute buckets kept */
#define M_WINDOWS 5  /* latency: the window is M_WINDOWS sub-windows of window / M_WINDOWS */

/* Connection states of the census. */
enum {
    M_CONN_IDLE = 0,
    M_CONN_READING,
    M_CONN_PLUGIN,
    M_CONN_PROXYING,
    M_CONN_TUNNEL,
    M_CONN_CLOSING,
    M_CONN_STATES
};
extern const char *const tp_metrics_conn_state_names[M_CONN_STATES];

struct tp_mdur {
    tp_mctr bucket[M_DUR_BUCKETS]; /* not cumulative */
    tp_mctr sum_us;
    tp_mctr count;
};

struct tp_msize {
    tp_mctr bucket[M_SIZE_BUCKETS];
    tp_mctr sum;
    tp_mctr count;
};

/* One wall-clock minute of usage; tag = minute number + 1 (0 = empty or being reset). */
struct tp_mminute {
    _Atomic uint64_t tag;
    tp_mctr requests, bytes_in, bytes_out;
};

/* One latency sub-window: sketches of the total and the upstream latency (µs). */
struct tp_mwindow {
    _Atomic uint64_t epoch;        /* sub-window number + 1; 0 = empty or being reset */
    _Atomic uint32_t lo[2], hi[2]; /* range of buckets touched, per sketch */
    tp_mctr n[2];
    _Atomic uint32_t counts[2][TP_SKETCH_BUCKETS];
};

struct tp_mlatency {
    _Atomic uint32_t sub_ms; /* sub-window length the epochs count in */
    struct tp_mwindow w[M_WINDOWS];
};

/* The counters of one (service, route) series on one worker. */
struct tp_mcell {
    tp_mctr requests[M_METHODS][M_CODES];
    struct tp_mdur total, upstream;
    struct tp_msize req_size, resp_size;
    tp_mctr security[M_PLUGINS][M_SEC_KINDS];
    struct tp_mminute minutes[M_MINUTES];
    _Atomic(struct tp_mlatency *) latency; /* NULL until the first timed request */
};

/* The counters of one consumer series on one worker. */
struct tp_mconsumer {
    tp_mctr requests, bytes_in, bytes_out;
    struct tp_mminute minutes[M_MINUTES];
};

/* The memory figures documented in README "Metrics" and include/turnpike/metrics.h. */
_Static_assert(sizeof(struct tp_mcell) == 6072, "update the documented size of a series");
_Static_assert(sizeof(struct tp_mlatency) == 46328, "update the documented size of a sketch");
_Static_assert(sizeof(struct tp_mconsumer) == 1944, "update the documented size of a consumer");

/* A worker's cells by slot. Replaced (never resized in place) when a slot past cap appears;
 * the old directory stays allocated until the worker is freed, so a reader holding it is safe. */
struct tp_mdir {
    struct tp_mdir *older;
    size_t cap;
    _Atomic(void *) cells[];
};

/* A snapshot as one worker's counting sees it: its routes' and consumers' slots (+ 1; 0 = not
 * yet looked up). Built by the worker on the first request of that snapshot. */
struct tp_mbinding {
    uint64_t gen; /* snapshot generation; 0 = unused entry */
    size_t num_routes, num_consumers;
    uint32_t *route_slot;    /* [num_routes] */
    uint32_t *split_off;     /* [num_routes] first entry in split_slot; NULL: no splits */
    uint32_t *split_slot;    /* [sum of num_split] */
    uint32_t *consumer_slot; /* [num_consumers] */
};

#define M_BINDINGS 4 /* snapshots a worker counts for at once (older requests, tunnels) */

/* The census the worker takes once a second, for the main thread. */
struct tp_midle {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    unsigned idle;
};

struct tp_mworker {
    struct tp_metrics *m;
    struct tp_worker *w;
    _Atomic(struct tp_mdir *) routes;
    _Atomic(struct tp_mdir *) consumers;
    struct tp_mbinding bind[M_BINDINGS]; /* most recently used first */
    struct event *census_ev;
    int64_t wall_offset_us; /* CLOCK_REALTIME - CLOCK_MONOTONIC, refreshed each second */
    _Atomic uint64_t conn_state[M_CONN_STATES];
    tp_mctr accepted, closed;
    pthread_mutex_t census_lock; /* idle[]: written once a second, read by scrapes */
    struct tp_midle *idle;
    size_t num_idle, cap_idle;
};

/* A registered (service, route) series. */
struct tp_mseries {
    char *service; /* "" for unmatched */
    char *route;
    uint64_t hash;
};

/* A registered consumer series (slot 0 is "other"). */
struct tp_mcons {
    char *name;
    uint64_t hash;
};

/* Open-addressing table of slot + 1 (0 = empty). */
struct tp_mtable {
    uint32_t *slots;
    size_t mask; /* size - 1 (a power of two) */
};

struct tp_metrics {
    int nworkers;
    struct tp_mworker **workers; /* [nworkers] */
    pthread_mutex_t lock;        /* the registry below: workers (first sight of a series per
                                    snapshot) and scrapes */
    struct tp_mseries **series;  /* [num_series]; each entry allocated once, never moved */
    size_t num_series, cap_series;
    struct tp_mtable series_tab;
    struct tp_mcons **cons;
    size_t num_cons, cap_cons;
    struct tp_mtable cons_tab;
};

#define M_SLOT_UNMATCHED 0 /* series slot of requests without a route */
#define M_SLOT_OTHER 0     /* consumer slot of consumers past max_consumers */

/* metrics.c, for export.c */
/** Slot of (service, route) if registered, else -1. Caller holds m->lock. */
long tp__metrics_find_series(struct tp_metrics *m, const char *service, const char *route);
/** Index of plugin name in the outcome table (0: "gateway" or unknown). */
unsigned tp__metrics_plugin_index(const char *name);
/** Name of outcome-table index i, or NULL past the registry. */
const char *tp__metrics_plugin_name(unsigned i);
/** The cell of slot on worker mw, or NULL (acquire load). */
static inline void *tp__metrics_cell(_Atomic(struct tp_mdir *) *dirp, size_t slot)
{
    struct tp_mdir *d = atomic_load_explicit(dirp, memory_order_acquire);
    if (!d || slot >= d->cap)
        return NULL;
    return atomic_load_explicit(&d->cells[slot], memory_order_acquire);
}

#endif
