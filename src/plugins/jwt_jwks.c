/*
 * turnpike — JWK Set fetching and per-worker caching for the jwt plugin (jwt_jwks.h).
 *
 * One fetch at a time per cache: a GET with a hard deadline (our own timer, so a server that
 * trickles bytes cannot hold it open), a body capped at TP_JWKS_MAX_BYTES, no redirects. The
 * connection of a fetch is freed when the next fetch starts or the cache is destroyed, never
 * from inside its own callback (libevent still uses it after the callback returns).
 */
#include "plugins/jwt_jwks.h"
#include "turnpike/log.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define JWKS_MAX_HEADERS 16384

double tp_jwks_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------------------------------ */
/* Source URL                                                                                 */

void tp_jwks_source_free(struct tp_jwks_source *src)
{
    free(src->url);
    free(src->log_url);
    free(src->cache_key);
    free(src->host);
    free(src->host_header);
    free(src->target);
    memset(src, 0, sizeof(*src));
}

static char *join(const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *s = malloc(la + lb + lc + 1);
    if (s) {
        memcpy(s, a, la);
        memcpy(s + la, b, lb);
        memcpy(s + la + lb, c, lc + 1);
    }
    return s;
}

static bool is_ip_literal(const char *host)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

int tp_jwks_source_parse(const char *url, struct tp_jwks_source *src, const char **why)
{
    memset(src, 0, sizeof(*src));
    struct evhttp_uri *u = evhttp_uri_parse_with_flags(url, 0);
    if (!u) {
        *why = "is not a valid URL";
        return TP_EINVAL;
    }
    const char *scheme = evhttp_uri_get_scheme(u), *host = evhttp_uri_get_host(u);
    const char *path = evhttp_uri_get_path(u), *query = evhttp_uri_get_query(u);
    int port = evhttp_uri_get_port(u);
    int rc = TP_EINVAL;
    if (!scheme || (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
        *why = "must be an http:// or https:// URL";
        goto out;
    }
    if (!host || !*host || evhttp_uri_get_userinfo(u) || evhttp_uri_get_fragment(u)) {
        *why = "must have a host and no user info or fragment";
        goto out;
    }
    src->https = scheme[4] == 's';
    src->port = (uint16_t)(port > 0 ? port : src->https ? 443 : 80);
    size_t hl = strlen(host);
    bool bracketed = host[0] == '[' && hl > 2 && host[hl - 1] == ']';
    char portbuf[8];
    snprintf(portbuf, sizeof(portbuf), "%u", (unsigned)src->port);
    rc = TP_ENOMEM;
    src->url = strdup(url);
    src->cache_key = join("jwt:jwks:", url, "");
    src->host = bracketed ? strndup(host + 1, hl - 2) : strdup(host);
    src->host_header = port > 0 ? join(host, ":", portbuf) : strdup(host);
    src->target = join(path && *path ? path : "/", query ? "?" : "", query ? query : "");
    if (src->host_header)
        src->log_url = join(src->https ? "https://" : "http://", src->host_header,
                            path && *path ? path : "/");
    if (src->url && src->log_url && src->cache_key && src->host && src->host_header &&
        src->target)
        rc = 0;
out:
    evhttp_uri_free(u);
    if (rc != 0)
        tp_jwks_source_free(src);
    if (rc == TP_ENOMEM)
        *why = "out of memory";
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Cache                                                                                      */

static void cache_destroy(void *arg)
{
    struct tp_jwks_cache *c = arg;
    if (c->deadline)
        event_free(c->deadline);
    if (c->conn)
        evhttp_connection_free(c->conn); /* frees a pending request without its callback */
    if (c->dns)
        evdns_base_free(c->dns, 0);
    SSL_CTX_free(c->ssl_ctx);
    /* requests still waiting are resumed (and then find no keys) rather than left hanging */
    tp_plugin_wake_all(&c->waiters);
    tp_jwks_clear(&c->keys);
    free(c->url);
    free(c);
}

struct tp_jwks_cache *tp_jwks_cache_get(struct tp_plugin_ctx *ctx,
                                        const struct tp_jwks_source *src)
{
    struct tp_jwks_cache *c = tp_plugin_worker_get(ctx, src->cache_key);
    if (c)
        return c;
    c = calloc(1, sizeof(*c));
    if (!c || !(c->url = strdup(src->log_url))) {
        free(c);
        return NULL;
    }
    c->base = tp_plugin_event_base(ctx);
    if (tp_plugin_worker_put(ctx, src->cache_key, c, cache_destroy) != 0) {
        cache_destroy(c);
        return NULL;
    }
    return c;
}

/* End of a fetch, successful or not: keep the new keys if they are usable, wake the waiters. */
static void fetch_end(struct tp_jwks_cache *c, struct evhttp_request *req)
{
    int code = req ? evhttp_request_get_response_code(req) : 0;
    const char *why = "no response";
    bool ok = false;

    c->req = NULL;
    c->fetching = false;
    if (c->deadline)
        event_del(c->deadline);
    if (code == 200) {
        struct evbuffer *body = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(body);
        const char *text = len ? (const char *)evbuffer_pullup(body, -1) : "";
        struct tp_jwks fresh = {0};
        size_t skipped = 0;
        if (tp_jwks_parse(text, len, &fresh, &skipped, &why) == 0) {
            if (fresh.num_keys > 0) {
                tp_jwks_clear(&c->keys);
                c->keys = fresh;
                c->loaded = true;
                c->fetched_at = tp_jwks_now();
                ok = true;
                if (skipped)
                    tp_log(TP_LOG_INFO, "jwt: JWKS %s: %zu unusable key(s) skipped", c->url,
                           skipped);
            } else {
                why = "no usable key";
            }
        }
    } else if (code > 0) {
        why = "HTTP status other than 200";
    }
    if (ok) {
        c->failures = 0;
    } else {
        c->failures++;
        tp_log(TP_LOG_WARN, "jwt: fetching JWKS %s failed (%s, status %d); %s", c->url, why,
               code, c->loaded ? "keeping the previous keys" : "no keys yet");
    }
    tp_plugin_wake_all(&c->waiters);
}

static void fetch_done(struct evhttp_request *req, void *arg)
{
    fetch_end(arg, req);
}

/* The deadline passed: cancel (no callback then) and end the fetch as failed. */
static void fetch_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct tp_jwks_cache *c = arg;
    (void)fd;
    (void)what;
    if (c->req)
        evhttp_cancel_request(c->req);
    c->req = NULL;
    fetch_end(c, NULL);
}

/* A TLS bufferevent checking the server's certificate against ca_file (else the system trust
 * store) and its name against host (RFC 6125), with SNI. */
static struct bufferevent *tls_bev(struct tp_jwks_cache *c, const struct tp_jwks_source *src,
                                   const char *ca_file)
{
    if (!c->ssl_ctx) {
        SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx)
            return NULL;
        SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if ((ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(ctx)) != 1) {
            SSL_CTX_free(ctx);
            ERR_clear_error();
            return NULL;
        }
        c->ssl_ctx = ctx;
    }
    SSL *ssl = SSL_new(c->ssl_ctx);
    if (!ssl)
        return NULL;
    /* an IP literal is checked against the certificate's IP addresses, a name against its
     * DNS names; SNI carries names only (RFC 6066 §3) */
    bool ip = is_ip_literal(src->host);
    if (ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), src->host) != 1
           : SSL_set_tlsext_host_name(ssl, src->host) != 1 || SSL_set1_host(ssl, src->host) != 1) {
        SSL_free(ssl);
        ERR_clear_error();
        return NULL;
    }
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        c->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev)
        SSL_free(ssl);
    else
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

int tp_jwks_cache_fetch(struct tp_jwks_cache *c, const struct tp_jwks_source *src,
                        const struct tp_jwks_fetch_opts *opts)
{
    if (c->fetching)
        return 0;
    if (c->conn) {
        evhttp_connection_free(c->conn);
        c->conn = NULL;
    }
    c->attempted_at = tp_jwks_now();
    if (!c->deadline && !(c->deadline = evtimer_new(c->base, fetch_timeout, c)))
        return TP_ENOMEM;
    if (!c->dns && !is_ip_literal(src->host) &&
        !(c->dns = evdns_base_new(c->base, EVDNS_BASE_INITIALIZE_NAMESERVERS)))
        return TP_EIO;
    if (src->https) {
        struct bufferevent *bev = tls_bev(c, src, opts->ca_file);
        c->conn = bev ? evhttp_connection_base_bufferevent_new(c->base, c->dns, bev, src->host,
                                                               src->port)
                      : NULL;
        if (bev && !c->conn)
            bufferevent_free(bev);
    } else {
        c->conn = evhttp_connection_base_new(c->base, c->dns, src->host, src->port);
    }
    if (!c->conn)
        return TP_EIO;
    struct timeval tv = {opts->timeout_ms / 1000, (opts->timeout_ms % 1000) * 1000};
    evhttp_connection_set_timeout_tv(c->conn, &tv);
    evhttp_connection_set_retries(c->conn, 0);
    evhttp_connection_set_max_body_size(c->conn, TP_JWKS_MAX_BYTES);
    evhttp_connection_set_max_headers_size(c->conn, JWKS_MAX_HEADERS);
    struct evhttp_request *req = evhttp_request_new(fetch_done, c);
    if (!req)
        return TP_ENOMEM;
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    if (evhttp_add_header(h, "Host", src->host_header) != 0 ||
        evhttp_add_header(h, "Accept", "application/jwk-set+json, application/json") != 0 ||
        evhttp_add_header(h, "User-Agent", "turnpike/" TP_VERSION) != 0 ||
        evhttp_add_header(h, "Connection", "close") != 0) {
        evhttp_request_free(req);
        return TP_ENOMEM;
    }
    /* Marked running first: a connect refused at once (loopback) makes libevent call
     * fetch_done from inside evhttp_make_request, which then ends the fetch. On failure
     * evhttp_make_request frees req itself. */
    c->req = req;
    c->fetching = true;
    evtimer_add(c->deadline, &tv);
    if (evhttp_make_request(c->conn, req, EVHTTP_REQ_GET, src->target) != 0) {
        c->req = NULL;
        c->fetching = false;
        event_del(c->deadline);
        return TP_EIO;
    }
    return 0;
}
