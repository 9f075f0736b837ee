/*
 * turnpike — the plugin chain: instances in the snapshot, and the per-request runner shared by
 * the proxy (src/http/proxy.c) and the snapshot compiler (src/config/consumers.c).
 */
#ifndef TURNPIKE_PLUGINS_CHAIN_H
#define TURNPIKE_PLUGINS_CHAIN_H

#include "turnpike/http.h"
#include "turnpike/plugin.h"
#include "turnpike/router.h"

#include <stdbool.h>
#include <stdio.h>

struct tp_conn;
struct tp_strbuf;

/** One configured plugin, compiled: owned by the snapshot. */
struct tp_plugin_instance {
    const struct tp_plugin *plugin;
    const void *inst;                  /* compiled instance (or the conf) */
    bool compiled;                     /* inst came from plugin->compile (destroy it) */
    const struct tp_conf_plugin *conf;
    const char *service, *route;       /* scope narrowing by name, or NULL */
    const struct tp_consumer *consumer; /* consumer-bound, or NULL */
    unsigned specificity;              /* Kong's precedence: higher wins for one plugin name */
};

/* Hooks present somewhere in a chain. */
enum {
    TP_CHAIN_REWRITE = 1u << 0,
    TP_CHAIN_ACCESS = 1u << 1,
    TP_CHAIN_REQUEST_BODY = 1u << 2,
    TP_CHAIN_RESPONSE_HEADERS = 1u << 3,
    TP_CHAIN_RESPONSE_BODY = 1u << 4,
    TP_CHAIN_LOG = 1u << 5,
};

/** A route's plugins in run order. */
struct tp_chain {
    const struct tp_plugin_instance **items;
    size_t n;
    unsigned hooks;                    /* TP_CHAIN_* */
    const char *const *order;          /* the route's explicit order, or NULL */
    size_t num_order;
};

/**
 * Build the chain of one route: for each plugin name the most specific enabled instance that is
 * not bound to a consumer, sorted by priority (higher first, then name) unless the route's
 * `order` lists it (listed plugins first, in that order). 0 or TP_ENOMEM.
 */
int tp_chain_build(struct tp_chain *chain, const struct tp_plugin_instance *all, size_t n,
                   const char *service, const char *route, const char *const *order,
                   size_t num_order);

/** Specificity of an instance's scope (Kong's precedence order). */
unsigned tp_chain_specificity(bool consumer, bool route, bool service);

/* ---- per request (proxy) ---- */

/** Outcome of running request phases. */
enum tp_chain_result {
    TP_CHAIN_CONTINUE = 0, /* proxy the request */
    TP_CHAIN_RESPONDED,    /* a local response is ready (tp_chain_local_response) */
    TP_CHAIN_SUSPENDED,    /* waiting: tp_conn_resume will be called */
};

/**
 * Start plugins for a routed request: allocates c->req.plugins when the route has a chain.
 * msg and m must stay valid until the request phases finish (or are copied on suspension).
 */
int tp_chain_request_begin(struct tp_conn *c, const struct tp_chain *chain,
                           const struct tp_http_message *msg, const struct tp_router_match *m);

/** Run (or continue) rewrite and access phases. */
enum tp_chain_result tp_chain_run_request(struct tp_plugin_ctx *ctx);

/** Copy the request head so it survives the client buffer (suspension). 0 or TP_ENOMEM. */
int tp_chain_keep_message(struct tp_plugin_ctx *ctx);

/** The TP_CHAIN_* hooks of the request's effective chain: the route's, plus those of plugins
 *  scoped to the consumer once it is known. */
unsigned tp_chain_hooks(const struct tp_plugin_ctx *ctx);

/** Deep-copy the request head (slices and headers) into the request's arena, so that later
 *  hooks (request_body, response, log) can read it after the client buffer moved on; a no-op
 *  when the effective chain has none of those hooks. 0 or TP_ENOMEM. */
int tp_chain_detach_message(struct tp_plugin_ctx *ctx);
/** A method set by tp_plugin_set_method. */
bool tp_chain_method(const struct tp_plugin_ctx *ctx, struct tp_slice *method);

/** The message the request phases saw (possibly the kept copy). */
const struct tp_http_message *tp_chain_message(const struct tp_plugin_ctx *ctx);
const struct tp_router_match *tp_chain_match(const struct tp_plugin_ctx *ctx);

/** The local response set by a plugin (or deferred auth failure). */
struct tp_chain_local {
    int status;
    const char *content_type;          /* NULL = none */
    const char *body;
    size_t len;
};
void tp_chain_local_response(const struct tp_plugin_ctx *ctx, struct tp_chain_local *out);

/** Request edits for the upstream head. */
bool tp_chain_header_dropped(const struct tp_plugin_ctx *ctx, struct tp_slice name);
/** Append the headers added/set by plugins ("Name: value\r\n"). 0 or an error. */
int tp_chain_put_headers(const struct tp_plugin_ctx *ctx, struct tp_strbuf *b, bool response);
bool tp_chain_query(const struct tp_plugin_ctx *ctx, struct tp_slice *query);
bool tp_chain_upstream_path(const struct tp_plugin_ctx *ctx, struct tp_slice *path);
/** Append the headers a plugin added to its local response. 0 or an error. */
int tp_chain_put_local_headers(const struct tp_plugin_ctx *ctx, struct tp_strbuf *b);
/** A request header only the gateway may set (X-Consumer-*, X-Credential-Identifier,
 *  X-Anonymous-Consumer, X-Authenticated-*, also spelled with '_'): client copies are dropped. */
bool tp_chain_is_identity_header(struct tp_slice name);
/** Response header edits: is this upstream response header removed or replaced? */
bool tp_chain_resp_header_dropped(const struct tp_plugin_ctx *ctx, struct tp_slice name);
uint64_t tp_chain_max_body(const struct tp_plugin_ctx *ctx); /* 0 = no plugin limit */
bool tp_chain_wants_request_body(const struct tp_plugin_ctx *ctx);
bool tp_chain_wants_response_body(const struct tp_plugin_ctx *ctx);

/** Run request_body hooks over body (may be replaced). */
enum tp_chain_result tp_chain_run_request_body(struct tp_plugin_ctx *ctx,
                                               struct tp_plugin_body *body);
/** Run response_headers hooks for an upstream response msg (NULL: a local response with this
 *  status). Errors are logged; the response goes on. */
void tp_chain_run_response_headers(struct tp_plugin_ctx *ctx, const struct tp_http_message *msg,
                                   int status, bool local);
/** Run response_body hooks over body. */
void tp_chain_run_response_body(struct tp_plugin_ctx *ctx, struct tp_plugin_body *body);
/** Run log hooks. */
void tp_chain_run_log(struct tp_plugin_ctx *ctx);
/** Free the request's plugin state (leaves any wait list). NULL is ignored. */
void tp_chain_request_end(struct tp_plugin_ctx *ctx);

#endif
