/*
 * Private to the proxy: the worker, client connection, upstream connection and request state
 * machine shared by src/event/worker.c, the src/http/proxy files and src/upstream.
 */
#ifndef TURNPIKE_PROXY_H
#define TURNPIKE_PROXY_H

#include "turnpike/http.h"
#include "turnpike/log.h"
#include "turnpike/metrics.h"
#include "turnpike/server.h"
#include "turnpike/snapshot.h"
#include "turnpike/trace.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define TP_IO_HIGH_WATER (256 * 1024) /* stop reading a side when the other's output exceeds it */
#define TP_READ_CHUNK (64 * 1024)

/* A snapshot as one worker uses it: counts this worker's requests without atomics. */
struct tp_wsnap {
    struct tp_snapshot *snap;
    unsigned users;          /* requests and connections of this worker holding it */
    struct tp_wsnap *next;   /* retired list */
};

struct tp_listener {
    int fd;
    uint16_t port;
    struct event *ev;
    struct tp_worker *w;
};

/* Idle keep-alive connections to one upstream address, owned by one worker. */
struct tp_pool {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    struct tp_upconn *idle;  /* singly linked via next_idle, most recent first */
    struct tp_health *health; /* the address's shared entry: open connection count */
    unsigned num_idle;
    struct tp_pool *next;    /* worker's list of pools */
};

/* One entry of the worker's plugin key/value registry (tp_plugin_worker_get/put). */
struct tp_worker_kv {
    char *key;
    void *value;
    void (*destroy)(void *value);
    struct tp_worker_kv *next;
};

struct tp_worker {
    int id;
    struct tp_server *srv;
    struct event_base *base;
    pthread_t thread;
    int notify_fd;                        /* eventfd: main → worker messages */
    struct event *notify_ev;
    _Atomic(struct tp_snapshot *) pending; /* a reference handed over by the main thread */
    atomic_int stop;                       /* 1 = drain and exit */
    struct tp_wsnap *cur;                  /* snapshot new requests use */
    struct tp_wsnap *retired;
    struct tp_listener *listeners;
    size_t num_listeners;
    bool accepting;
    unsigned num_conns;
    uint32_t max_conns;
    struct tp_conn *conns;                 /* doubly linked list of client connections */
    struct tp_pool *pools;
    struct tp_http_header *scratch_headers;
    size_t scratch_cap;
    struct tp_worker_kv *kv;                /* plugin state living as long as the thread */
    struct tp_strbuf head_scratch;          /* response heads are assembled here */
    struct tp_strbuf log_scratch;           /* access-log lines are assembled here */
    struct tp_mirror *mirrors;              /* shadow requests in flight (mirror.c) */
    unsigned num_mirrors;
    uint64_t rng[2];
    struct event *grace_ev;
    struct tp_mworker *metrics;            /* counters of this worker (src/metrics) */
};

/* Where the client connection is in its life. */
enum tp_conn_state {
    TP_CONN_HEAD = 0,   /* waiting for / reading a request head */
    TP_CONN_PROXY,      /* a request is being proxied */
    TP_CONN_TUNNEL,     /* after 101: bytes both ways */
    TP_CONN_CLOSING,    /* flushing the last response, then close */
    TP_CONN_LINGER,     /* response sent, write side shut: discard input until EOF or timeout */
    TP_CONN_PLUGIN,     /* a plugin hook is waiting (JWKS fetch...): client input left unread */
};

enum tp_timer_kind {
    TP_T_NONE = 0,
    TP_T_HEADER,    /* header_timeout from the first byte */
    TP_T_IDLE,      /* keepalive_timeout */
    TP_T_BODY,      /* body_timeout, reset on progress */
    TP_T_SEND,      /* send_timeout, reset on progress */
    TP_T_TUNNEL,    /* tunnel_idle_timeout, reset on progress */
    TP_T_UP_CONNECT,
    TP_T_UP_READ,
    TP_T_UP_WRITE,
    TP_T_POOL_IDLE,
    TP_T_LINGER,    /* lingering close: fixed 2 s */
    TP_T_PLUGIN,    /* a suspended plugin: TP_PLUGIN_WAIT_MS */
};

#define TP_PLUGIN_WAIT_MS 30000 /* a suspended plugin hook longer than this is a gateway fault */

#define TP_LINGER_MS 2000

/*
 * A lazy deadline on one libevent timer: moving a deadline later (the common case: progress on
 * a connection) or clearing it costs no timer-heap operation; the timer only moves when the
 * deadline comes earlier, and a timer that fires early re-arms itself for the rest.
 */
struct tp_deadline {
    struct event *ev;
    enum tp_timer_kind kind; /* TP_T_NONE: no deadline */
    uint64_t due_ms;         /* tp_now_ms() value at which it expires */
    uint64_t armed_ms;       /* when ev is due to fire; 0 = not pending */
};

/** Set (or replace) the deadline to ms from now. */
void tp_deadline_set(struct tp_deadline *d, enum tp_timer_kind kind, uint32_t ms);
/** Clear the deadline (the pending timer, if any, fires and is ignored). */
void tp_deadline_clear(struct tp_deadline *d);
/** Call first in the timer callback: the kind that expired, or TP_T_NONE when the deadline
 *  moved or was cleared (then it re-arms itself as needed and the callback returns). */
enum tp_timer_kind tp_deadline_fired(struct tp_deadline *d);
#define TP_MAX_INTERIM_RESPONSES 16 /* 1xx answers tolerated before the final one */
#define TP_MIRROR_BODY_MAX (1u << 20) /* bytes of body copied to a shadow service */
#define TP_MIRROR_MAX 1024            /* mirrors in flight per worker; more are shed */

struct tp_mirror;

struct tp_upconn {
    int fd;
    struct event *rev, *wev;
    struct tp_deadline tmo;
    struct evbuffer *in, *out;
    struct tp_pool *pool;
    struct tp_conn *client;       /* NULL while idle in the pool */
    struct tp_upconn *next_idle;
    struct tp_worker *w;
    bool connected;
    bool reused;                  /* taken from the pool */
    struct tp_circuit *pending;   /* counted in this breaker's max_pending until connected */
    bool in_pool;                 /* linked in pool->idle (not the timer's kind: that is
                                     cleared when the idle deadline fires) */
    bool read_on, write_on, eof, progress;
    uint32_t read_hint;           /* next read size (adaptive) */
};

struct tp_plugin_ctx;

struct tp_request {
    struct tp_wsnap *ws;
    struct tp_plugin_ctx *plugins; /* NULL when the route has no plugins */
    const struct tp_route *route;
    const struct tp_service *service;
    struct tp_target *target;
    struct tp_strbuf head;        /* upstream request head, kept for retries */
    size_t host_off, host_len;    /* the Host value inside head (host_len 0: preserve_host) */
    unsigned interim;             /* 1xx responses skipped so far */
    char *strings;                /* one allocation holding the three below */
    char *method;                 /* copies for the log */
    char *path;                   /* normalised path as matched */
    char *log_ua;                 /* first 1 KiB of User-Agent, or NULL */
    char request_id[208];
    char client_ip[64];           /* as determined through trusted_proxies */
    uint64_t start_ms, up_start_ms, up_first_byte_ms;
    int minor_version;
    int status;                   /* status sent to the client */
    enum tp_http_framing req_framing;
    uint64_t req_remaining;       /* LENGTH: body bytes still to read */
    struct tp_http_chunked req_chunked;
    enum tp_http_framing resp_framing;
    uint64_t resp_remaining;
    struct tp_http_chunked resp_chunked;
    uint64_t bytes_in, bytes_out, body_in;
    struct tp_mirror *mirror;     /* the shadow copy still receiving this request's body */
    struct tp_circuit *held;      /* target breaker admitted for the current attempt */
    bool svc_circuit;             /* admitted by the service's breaker */
    uint32_t retry_after;         /* seconds for a Retry-After on a 503, 0 = none */
    int tries;                    /* attempts made */
    int retries_done;             /* of which were retries counted against retries/budget */
    bool counted, is_retry;       /* in upstream->requests / ->retrying */
    uint64_t tried_mask;
    uint64_t hash_key;            /* consistent-hashing key of this request */
    bool has_hash_key;
    bool idempotent, is_head, upgrade;
    bool keepalive;               /* keep the client connection after this request */
    bool req_body_done, resp_head_done, resp_done, resp_chunked_out, resp_started;
    bool up_reusable;
    /* plugins (src/plugins/chain.c) */
    size_t head_pending;          /* head bytes left in c->in while a plugin waits */
    bool peer_trusted;            /* the peer is in trusted_proxies (its X-Forwarded-* count) */
    uint64_t max_body;            /* body limit of this request (0 = none) */
    bool buffer_body;             /* request body collected for request_body hooks */
    bool buffer_resp;             /* response body collected for response_body hooks */
    struct evbuffer *body_buf;    /* the request or response body being collected */
    struct tp_strbuf resp_head;   /* response head without framing, while buffer_resp */
    /* observability (src/observe): trace context, and copies kept for the log and spans */
    struct tp_trace_ctx trace;
    char *obs_strings;            /* one allocation holding the three below, or NULL */
    const char *obs_query, *obs_referer, *obs_host; /* NULL when absent or not wanted */
    uint64_t start_us, up_start_us, up_first_us; /* µs clock of start_ms... (metrics) */
};

struct tp_conn {
    struct tp_worker *w;
    int fd;
    struct event *rev, *wev;
    struct tp_deadline tmo;
    struct evbuffer *in, *out;
    struct sockaddr_storage peer;
    char peer_text[64];
    uint16_t local_port;
    enum tp_conn_state state;
    bool read_on, write_on, got_first_byte, peer_closed, progress, uri_checked, line_seen;
    bool plugin_input;            /* input arrived while a plugin waits (TP_CONN_PLUGIN) */
    unsigned num_requests;
    size_t scan_pos;              /* head: bytes already scanned for the blank line */
    uint32_t read_hint;           /* next read size (adaptive) */
    struct tp_upconn *up;
    struct event *retry_ev;       /* back-off before a retry; created on first use */
    struct tp_request req;
    struct tp_conn *prev, *next;
};

/* worker.c */
/** Monotonic clock in ms (CLOCK_MONOTONIC). */
uint64_t tp_now_ms(void);
/** The worker's current snapshot, counted as one more user (no atomics: worker-local). */
struct tp_wsnap *tp_worker_snap_acquire(struct tp_worker *w);
/** Drop one user; the last user of a retired snapshot releases the worker's reference.
 *  NULL is ignored. */
void tp_worker_snap_release(struct tp_worker *w, struct tp_wsnap *ws);
/** Queue one access-log line (bytes copied) for the log writer thread (logsink.h). */
void tp_worker_access_log(struct tp_worker *w, const char *line, size_t len);
/** Queue one security-log line (bytes copied); same as the access log. */
void tp_worker_security_log(struct tp_worker *w, const char *line, size_t len);
/** The worker's plugin registry: value stored under key, or NULL. */
void *tp_worker_kv_get(struct tp_worker *w, const char *key);
/** Store value under key (replacing and destroying an older value). 0 or TP_ENOMEM. */
int tp_worker_kv_put(struct tp_worker *w, const char *key, void *value,
                     void (*destroy)(void *value));
/** A client connection was freed: resume accepting below max_conns, exit when draining. */
void tp_worker_conn_closed(struct tp_worker *w);
/** 64 random bits (xorshift128+, seeded from getrandom): ids, not secrets. */
uint64_t tp_worker_random(struct tp_worker *w);
/** Worker-owned scratch array of at least n headers for the parser; NULL on ENOMEM.
 *  Valid until the next call on the same worker. */
struct tp_http_header *tp_worker_headers(struct tp_worker *w, size_t n);

/* proxy.c */
/** Take ownership of an accepted, non-blocking client socket fd (closed on any failure).
 *  The caller has already counted it in w->num_conns. */
void tp_conn_accept(struct tp_worker *w, int fd, const struct sockaddr_storage *peer,
                    uint16_t local_port);
/** Graceful stop: close c now if idle, else let its current request finish and close. */
void tp_conn_shutdown(struct tp_conn *c);
/** A suspended plugin hook of c's request may go on: run the chain again, then proxy or answer. */
void tp_conn_resume(struct tp_conn *c);
/** Close c and its upstream connection at once (forced exit). */
void tp_conn_abort(struct tp_conn *c);

/* proxy_head.c — RFC 9110 §7.6 rewriting; see the file comment */
/** Build c->req.head, the upstream request head for msg routed by m, with the plugins' edits.
 *  With c->req.buffer_body the framing field and the final CRLF are left out (added once the
 *  body is known). 0, TP_ENOMEM, TP_ETOOBIG (path over 16 KiB) or TP_EINVAL (more than 32
 *  Connection options). */
int tp_proxy_build_request_head(struct tp_conn *c, const struct tp_http_message *msg,
                                const struct tp_router_match *m);
/** Append the client response head for upstream response msg to out. 0 or TP_ENOMEM.
 *  With out NULL the head is left open in c->req.resp_head: no framing, no Connection field,
 *  no final CRLF (tp_proxy_close_response_head completes it). */
int tp_proxy_build_response_head(struct tp_conn *c, const struct tp_http_message *msg,
                                 struct evbuffer *out);
/** Complete c->req.resp_head with Content-Length len (or chunked when chunked) and the
 *  Connection field, and move it to out. 0 or TP_ENOMEM. */
int tp_proxy_close_response_head(struct tp_conn *c, uint64_t len, bool chunked,
                                 struct evbuffer *out);
/** Keep a valid incoming X-Request-ID or generate one into c->req.request_id. msg may be
 *  NULL (unparseable request). */
void tp_proxy_request_id(struct tp_conn *c, const struct tp_http_message *msg);
/** Rewrite the Host value of c->req.head for c->req.target (retry). 0 or TP_ENOMEM. */
int tp_proxy_retarget_head(struct tp_conn *c);
/** Decide c->req.client_ip through trusted_proxies; *trusted: the peer is a trusted proxy. */
void tp_proxy_client_ip(struct tp_conn *c, const struct tp_config *cfg,
                        const struct tp_http_message *msg, bool *trusted);

/* mirror.c */
/** Start a shadow copy of c's request (head already built) to a target of svc. NULL when
 *  none is started (no target, too many mirrors in flight, ENOMEM): mirroring is best effort. */
struct tp_mirror *tp_mirror_start(struct tp_conn *c, struct tp_service *svc);
/** Copy n body bytes found at offset `from` of src to the mirror; a body over
 *  TP_MIRROR_BODY_MAX abandons the mirror (*mp becomes NULL). */
void tp_mirror_body(struct tp_mirror **mp, struct evbuffer *src, size_t from, size_t n);
/** The request no longer feeds the mirror: complete lets it finish, else it is dropped. */
void tp_mirror_detach(struct tp_mirror **mp, bool complete);
/** Free every mirror of the worker (exit). */
void tp_mirror_free_all(struct tp_worker *w);

/* balancer.c */
/** Pick a target of u for worker worker_id (0 <= worker_id < the snapshot's nworkers),
 *  skipping targets whose index bit (< 64) is set in exclude_mask, weight-0 targets and
 *  targets whose health is down. hash is the request's consistent-hashing key
 *  (tp_upstream_hash_key, src/upstream/hash_key.h), valid when has_hash; only
 *  consistent-hashing reads it (without a key it balances round-robin). Pass the same key on
 *  a retry, with the tried targets in exclude_mask: the next distinct usable target clockwise
 *  on the ring is chosen. NULL when no target is usable. */
struct tp_target *tp_upstream_pick(struct tp_upstream *u, int worker_id, uint64_t exclude_mask,
                                   uint64_t hash, bool has_hash);

/* pool.c */
/** The worker's pool for t's address (created on first use, cached in t->pools[w->id]).
 *  NULL on ENOMEM. */
struct tp_pool *tp_pool_get(struct tp_worker *w, struct tp_target *t);
/** Pop the most recently used idle connection, or NULL. */
struct tp_upconn *tp_pool_take(struct tp_pool *p);
/** Return u to its pool (idle timeout idle_ms), or close it when the pool holds max_idle
 *  connections or u has unread/unsent bytes. Takes ownership of u. */
void tp_pool_put(struct tp_upconn *u, uint32_t max_idle, uint32_t idle_ms);
/** Close every idle connection and free every pool of the worker (exit). */
void tp_pool_free_all(struct tp_worker *w);
/** Close u and free it (unlinking it from its pool when idle). NULL is ignored. */
void tp_upconn_close(struct tp_upconn *u);
/** Start a non-blocking connect to p's address. 0 and *out (not yet connected), TP_EIO when
 *  the connect failed at once, TP_ENOMEM. */
int tp_upconn_connect(struct tp_worker *w, struct tp_pool *p, struct tp_upconn **out);

#endif
