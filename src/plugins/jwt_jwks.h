/*
 * turnpike — JWK Set fetching for the jwt plugin: one cache per worker and URL.
 *
 * A jwt instance with `jwks_uri` owns a parsed struct tp_jwks_source. On a worker, the keys
 * of that URL live in a struct tp_jwks_cache stored with tp_plugin_worker_put under
 * "jwt:jwks:<url>", so they survive config reloads and are shared by every instance that
 * names the same URL. Fetches run on the worker's event loop (libevent's evhttp client): a
 * request that needs keys the cache does not have yet waits on the cache's wait list and is
 * resumed (tp_plugin_wake_all) when the fetch ends, whether it succeeded, failed or timed out.
 * A failed or empty fetch keeps the previous key set.
 *
 * Everything here runs on the worker thread that owns the cache; nothing is shared between
 * workers, so no locks.
 */
#ifndef TURNPIKE_PLUGINS_JWT_JWKS_H
#define TURNPIKE_PLUGINS_JWT_JWKS_H

#include "plugins/jwt_verify.h"
#include "turnpike/plugin.h"

#include <stdbool.h>
#include <stdint.h>

struct event;
struct evdns_base;
struct evhttp_connection;
struct evhttp_request;

/** A parsed jwks_uri (config time, immutable). */
struct tp_jwks_source {
    char *url;        /* as configured */
    char *log_url;    /* for logs: scheme://host[:port]/path — no query (it may carry an API
                         key or a token) */
    char *cache_key;  /* "jwt:jwks:<url>" */
    char *host;       /* without brackets */
    char *host_header;/* Host: value (host[:port]) */
    char *target;     /* path and query, at least "/" */
    uint16_t port;
    bool https;
};

/** Fetch settings, from the instance that starts a fetch. */
struct tp_jwks_fetch_opts {
    uint32_t timeout_ms;  /* whole fetch: connect, request, response */
    const char *ca_file;  /* https: PEM trust anchors, NULL = the system's (read once per
                             cache, by its first https fetch) */
};

/** One URL's keys on one worker. */
struct tp_jwks_cache {
    char *url;                      /* the source's log_url: what log lines name */
    struct tp_jwks keys;            /* the last good set (may be empty before the first) */
    bool loaded;                    /* a fetch has succeeded at least once */
    bool fetching;
    double fetched_at;              /* monotonic seconds of the last good fetch */
    double attempted_at;            /* monotonic seconds of the start of the last fetch */
    unsigned failures;              /* consecutive failed fetches */
    struct tp_plugin_wait_list waiters;
    struct event_base *base;
    struct evdns_base *dns;         /* for host names (NULL for IP literals) */
    struct evhttp_connection *conn; /* of the last fetch; freed when the next one starts */
    struct evhttp_request *req;     /* in flight, or NULL */
    struct event *deadline;
    void *ssl_ctx;                  /* SSL_CTX * for https sources, or NULL */
};

/**
 * Parse a jwks_uri: http://host[:port]/path?query (https:// when built with TLS support).
 * No user info, no fragment. On error *why is a static message and src holds nothing.
 * @return 0, TP_EINVAL or TP_ENOMEM.
 */
int tp_jwks_source_parse(const char *url, struct tp_jwks_source *src, const char **why);

/** Release what src holds. */
void tp_jwks_source_free(struct tp_jwks_source *src);

/**
 * This worker's cache for src, created (empty, nothing fetched) on first use.
 * @return the cache, or NULL when out of memory.
 */
struct tp_jwks_cache *tp_jwks_cache_get(struct tp_plugin_ctx *ctx,
                                        const struct tp_jwks_source *src);

/** Monotonic clock in seconds (the cache's time base). */
double tp_jwks_now(void);

/**
 * Start fetching src into c unless a fetch is already running. Returns at once; when the fetch
 * ends the waiters of c are woken. The fetch may also end during this call (a connection
 * refused at once): check c->fetching before waiting on c->waiters.
 * @return 0 (started, ran, or already running), TP_ENOMEM or TP_EIO (could not start:
 *         nothing will wake the waiters).
 */
int tp_jwks_cache_fetch(struct tp_jwks_cache *c, const struct tp_jwks_source *src,
                        const struct tp_jwks_fetch_opts *opts);

#endif
