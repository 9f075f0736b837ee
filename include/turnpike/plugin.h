/*
 * turnpike — the plugin API (DESIGN.md §3).
 *
 * A plugin is one `const struct tp_plugin` of callbacks; every callback may be NULL (a no-op).
 * All plugins are listed in one registry table (src/plugins/registry.c). docs/plugins.md is the
 * developer guide; this header is the contract.
 *
 * Life of a plugin instance
 *   config load (main thread)   the `config` mapping of a `plugins[]` entry is walked against
 *                               the plugin's schema (config/schema.h directive table) into a
 *                               struct of conf_size bytes; `validate` then checks it as a whole.
 *                               Errors name FILE:LINE:COLUMN and the field path.
 *   snapshot build (main)       `compile` turns the config into an immutable instance (tables,
 *                               compiled expressions, parsed keys); it may read the consumers.
 *   request (worker thread)     the per-request hooks run in phase order, plugins of a phase
 *                               in chain order (priority, higher first, unless the route sets an
 *                               explicit `order`).
 *
 * Phases: rewrite → access (authentication, then authorization, then shaping) → [request_body]
 * → upstream → response_headers → [response_body] → log. A hook returns a tp_plugin_status.
 *
 * Threads: compile/destroy run on the main thread; request hooks on a worker thread, never
 * concurrently for the same request. An instance is shared by all workers: hooks must treat it
 * as read-only (use atomics, or tp_plugin_worker_get/put for per-worker state).
 */
#ifndef TURNPIKE_PLUGIN_H
#define TURNPIKE_PLUGIN_H

#include "turnpike/common.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct tp__cfg_ctx;
struct tp__cfg_schema;
struct tp_snapshot;
struct tp_consumer;
struct tp_credential;
struct tp_plugin_ctx;  /* one request as a plugin sees it (opaque) */
struct tp_plugin_body;
struct tp_plugin_waiter;
struct tp_conf_consumer;
struct tp_plugin_instance;
struct event_base;
typedef struct json_t json_t; /* jansson */

/** What a per-request hook asks the chain to do next (Envoy's filter statuses). */
enum tp_plugin_status {
    TP_PLUGIN_CONTINUE = 0, /* run the next plugin */
    TP_PLUGIN_RESPOND,      /* a local response was set (tp_plugin_respond*): stop the chain */
    TP_PLUGIN_ERROR,        /* internal failure: the gateway answers 500 */
    TP_PLUGIN_SUSPEND,      /* waiting (Redis, a JWKS fetch...): the hook has put the request's
                               waiter on a list (tp_plugin_wait); when resumed, the SAME hook of
                               the same plugin is called again */
};

/** Where an instance was attached (Kong's scopes), most specific last. */
enum tp_plugin_scope {
    TP_SCOPE_GLOBAL = 0,
    TP_SCOPE_SERVICE,
    TP_SCOPE_ROUTE,
    TP_SCOPE_CONSUMER,
};

/** Context given to `validate` and `compile` for error reporting. */
struct tp_plugin_build {
    struct tp__cfg_ctx *cfg;          /* loader context (validate only; NULL at compile) */
    const void *node;                 /* the plugin's `config` yaml_node_t (validate only) */
    const struct tp_snapshot *snap;   /* the snapshot being built (compile only) */
    const char *path;                 /* field path for messages: "plugins[0](jwt).config" */
    int line, column;                 /* position of the plugin entry */
    void *errors;                     /* FILE * for messages (compile) */
    const char *file;                 /* config file name (compile) */
    int num_errors;
};

/**
 * Report a config error for the plugin being validated or compiled: printed as
 * "FILE:LINE:COLUMN: <path>: message" at the position of `node` (a yaml_node_t * of the
 * plugin's config, or NULL for the plugin entry itself). Counts the error; returns -1.
 */
int tp_plugin_build_error(struct tp_plugin_build *b, const void *node, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** One plugin: name, priority, schema and hooks. Every pointer may be NULL. */
struct tp_plugin {
    const char *name;       /* as written in config: "key-auth" */
    int priority;           /* higher runs first (Kong's numbers: key-auth 1250, acl 950...) */
    bool auth;              /* an authentication plugin: several on one route mean "any of"
                               (see docs/plugins.md); they set the consumer */

    /* --- config time (main thread) --- */
    const struct tp__cfg_schema *schema; /* keys of `config`; NULL = `config` must be empty */
    size_t conf_size;                    /* bytes of the struct the schema fills */
    /** Cross-field checks after the schema walk; `node` is the config mapping (may be NULL
     *  when absent). Report with tp_plugin_build_error. Return 0 or -1. */
    int (*validate)(struct tp_plugin_build *b, void *conf);
    /** Free what custom parsers allocated inside conf (schema strings are freed for you). */
    void (*free_conf)(void *conf);
    /** Build the runtime instance from conf (which outlives it: the snapshot owns both).
     *  *inst defaults to conf when this hook is NULL. Return 0 or -1 after reporting. */
    int (*compile)(struct tp_plugin_build *b, const void *conf, void **inst);
    /** Free an instance made by compile (any thread, after the last request using it). */
    void (*destroy)(void *inst);

    /* --- per request (worker thread); inst is the compiled instance --- */
    enum tp_plugin_status (*rewrite)(struct tp_plugin_ctx *ctx, const void *inst);
    enum tp_plugin_status (*access)(struct tp_plugin_ctx *ctx, const void *inst);
    /** The whole request body, when some hook called tp_plugin_want_request_body. body is a
     *  growable buffer the hook may rewrite (Content-Length follows). */
    enum tp_plugin_status (*request_body)(struct tp_plugin_ctx *ctx, const void *inst,
                                          struct tp_plugin_body *body);
    /** Upstream (or local) response head received; edit it with tp_plugin_resp_*. RESPOND and
     *  SUSPEND are not allowed here (treated as ERROR). */
    enum tp_plugin_status (*response_headers)(struct tp_plugin_ctx *ctx, const void *inst);
    /** The whole response body, when a response_headers hook called
     *  tp_plugin_want_response_body (bodies over the cap are streamed untouched instead). */
    enum tp_plugin_status (*response_body)(struct tp_plugin_ctx *ctx, const void *inst,
                                           struct tp_plugin_body *body);
    /** After the response was sent (or the client went away). Return value ignored. */
    void (*log)(struct tp_plugin_ctx *ctx, const void *inst);
};

/** A whole message body handed to request_body / response_body hooks. */
struct tp_plugin_body {
    char *ptr;      /* malloc'd; a hook may free it and store a new malloc'd buffer */
    size_t len;
    size_t cap;
};

/* Limits of buffered bodies (request_body / response_body). */
#define TP_PLUGIN_BODY_MAX (8u << 20)

/* ------------------------------------------------------------------------------------------ */
/* Registry (src/plugins/registry.c)                                                          */

/** The plugin named name[0..len), or NULL. */
const struct tp_plugin *tp_plugin_find(const char *name, size_t len);

/** Every registered plugin, NULL-terminated (docs, --help). */
extern const struct tp_plugin *const tp_plugins[];

/* ------------------------------------------------------------------------------------------ */
/* Consumers (DESIGN.md §1): built into the snapshot; read-only at run time                    */

/** A credential of a consumer (key-auth key, basic-auth user, jwt secret). */
struct tp_credential {
    const char *id;                   /* credential id (config `id`, else derived), for
                                         X-Credential-Identifier */
    const struct tp_consumer *consumer;
    const void *conf;                 /* the config entry (struct tp_conf_*_credential) */
};

struct tp_consumer {
    const char *id;          /* `id`, else a UUID derived from the username (stable) */
    const char *username;    /* may be NULL when only custom_id is set */
    const char *custom_id;   /* may be NULL */
    const char *const *groups; size_t num_groups; /* acl groups / roles */
    const struct tp_conf_consumer *conf;
    const struct tp_plugin_instance *const *plugins; /* consumer-scoped plugins (runner) */
    size_t num_plugins;
};

/* ------------------------------------------------------------------------------------------ */
/* Per-request API (worker thread, valid only during a hook)                                  */

/* -- the request as received (after path normalisation) -- */
struct tp_slice tp_plugin_method(const struct tp_plugin_ctx *ctx);
/** Normalised path as routed (without the query). */
struct tp_slice tp_plugin_path(const struct tp_plugin_ctx *ctx);
/** Raw query string without '?', possibly empty (after request-transformer edits). */
struct tp_slice tp_plugin_query(const struct tp_plugin_ctx *ctx);
/**
 * The idx-th value (0-based) of request header `name` (ASCII case-insensitive), as the
 * upstream will see it: edits made by earlier plugins are visible. Returns false when absent.
 */
bool tp_plugin_header(const struct tp_plugin_ctx *ctx, const char *name, size_t idx,
                      struct tp_slice *value);
/** Number of request headers as received (for iteration with tp_plugin_header_at). */
size_t tp_plugin_header_count(const struct tp_plugin_ctx *ctx);
/** Header i as received (edits not applied). */
void tp_plugin_header_at(const struct tp_plugin_ctx *ctx, size_t i, struct tp_slice *name,
                         struct tp_slice *value);
/** First query argument `name` (raw, not %-decoded); false when absent. */
bool tp_plugin_query_arg(const struct tp_plugin_ctx *ctx, const char *name,
                         struct tp_slice *value);
/** Value of cookie `name` from the Cookie header(s) (RFC 6265 §5.4); false when absent. */
bool tp_plugin_cookie(const struct tp_plugin_ctx *ctx, const char *name, struct tp_slice *value);
/** Request body framing: declared Content-Length, or -1 for chunked, 0 for none. */
int64_t tp_plugin_content_length(const struct tp_plugin_ctx *ctx);
/** The client address as decided through trusted_proxies (text form, e.g. "10.0.0.5"). */
const char *tp_plugin_client_ip(const struct tp_plugin_ctx *ctx);
/** The client address in binary: family AF_INET (4 bytes) or AF_INET6 (16 bytes). */
void tp_plugin_client_addr(const struct tp_plugin_ctx *ctx, int *family, uint8_t addr[16]);
/** Route and service names (never NULL inside hooks). */
const char *tp_plugin_route_name(const struct tp_plugin_ctx *ctx);
const char *tp_plugin_service_name(const struct tp_plugin_ctx *ctx);
/** A path template capture (`/users/{id}`) or regex named group; false when absent. */
bool tp_plugin_route_param(const struct tp_plugin_ctx *ctx, const char *name,
                           struct tp_slice *value);
const char *tp_plugin_request_id(const struct tp_plugin_ctx *ctx);
/** Wall-clock time in seconds since the epoch, with sub-second precision. */
double tp_plugin_time(const struct tp_plugin_ctx *ctx);
/** The request's snapshot (consumers lookup). */
const struct tp_snapshot *tp_plugin_snapshot(const struct tp_plugin_ctx *ctx);

/* -- identity: set by authentication plugins, read by the others -- */
/** Authenticate the request as consumer c (may be NULL for "credential valid, no consumer")
 *  with credential cred (may be NULL). The gateway then sends X-Consumer-* upstream. */
void tp_plugin_set_consumer(struct tp_plugin_ctx *ctx, const struct tp_consumer *c,
                            const struct tp_credential *cred);
/** The authenticated consumer, or NULL. */
const struct tp_consumer *tp_plugin_consumer(const struct tp_plugin_ctx *ctx);
/** True when some auth plugin marked the request as anonymous (its `anonymous` consumer). */
bool tp_plugin_is_anonymous(const struct tp_plugin_ctx *ctx);
void tp_plugin_set_anonymous(struct tp_plugin_ctx *ctx, const struct tp_consumer *c);
/** Verified JWT claims for later plugins; takes ownership of one reference (json_decref at the
 *  end of the request). */
void tp_plugin_set_claims(struct tp_plugin_ctx *ctx, json_t *claims);
/** Verified claims (borrowed) or NULL. */
json_t *tp_plugin_claims(const struct tp_plugin_ctx *ctx);

/* -- upstream request edits (applied when the upstream head is built) -- */
/** Replace every value of header `name` by value (copied). 0 or TP_ENOMEM. */
int tp_plugin_set_header(struct tp_plugin_ctx *ctx, const char *name, struct tp_slice value);
/** Add one more value of `name`. 0 or TP_ENOMEM. */
int tp_plugin_add_header(struct tp_plugin_ctx *ctx, const char *name, struct tp_slice value);
/** Remove every value of `name` (also client look-alikes are NOT matched: exact name, case-
 *  insensitive). 0 or TP_ENOMEM. */
int tp_plugin_remove_header(struct tp_plugin_ctx *ctx, const char *name);
/** Replace the whole query string sent upstream (without '?'; empty = none). 0 or TP_ENOMEM. */
int tp_plugin_set_query(struct tp_plugin_ctx *ctx, struct tp_slice query);
/** Replace the whole path sent upstream (as Kong's request-transformer replace.uri: neither
 *  strip_path nor the service's url path apply any more); starts with '/'. 0, TP_EINVAL (no
 *  leading '/', a control character, '?' or '#'), TP_ENOMEM. */
int tp_plugin_set_upstream_path(struct tp_plugin_ctx *ctx, struct tp_slice path);
/** Change the method sent upstream (request-transformer http_method): an upper-case token.
 *  0, TP_EINVAL or TP_ENOMEM. The method seen by later plugins changes too. */
int tp_plugin_set_method(struct tp_plugin_ctx *ctx, struct tp_slice method);
/** Lower the request's body limit (bytes): bodies above it get 413, also when chunked. */
void tp_plugin_set_max_body(struct tp_plugin_ctx *ctx, uint64_t max_bytes);
/** Ask for the whole request body (request_body hooks); bodies over TP_PLUGIN_BODY_MAX get 413. */
void tp_plugin_want_request_body(struct tp_plugin_ctx *ctx);

/* -- local responses (rewrite/access/request_body hooks; then return TP_PLUGIN_RESPOND) -- */
/** Answer with the gateway's JSON error body {"message": ..., "request_id": ...}. */
void tp_plugin_respond(struct tp_plugin_ctx *ctx, int status, const char *message);
/** Answer with any body (copied); content_type NULL = none. */
void tp_plugin_respond_body(struct tp_plugin_ctx *ctx, int status, const char *content_type,
                            const char *body, size_t len);
/** Add a header to the local response about to be sent (e.g. WWW-Authenticate). 0/TP_ENOMEM. */
int tp_plugin_respond_header(struct tp_plugin_ctx *ctx, const char *name, struct tp_slice value);

/* -- response (response_headers / response_body / log hooks) -- */
int tp_plugin_resp_status(const struct tp_plugin_ctx *ctx);
/** True when the response is generated by the gateway (an error or a plugin's answer). */
bool tp_plugin_resp_is_local(const struct tp_plugin_ctx *ctx);
/** The idx-th value of response header `name` with edits applied; false when absent. */
bool tp_plugin_resp_header(const struct tp_plugin_ctx *ctx, const char *name, size_t idx,
                           struct tp_slice *value);
int tp_plugin_resp_set_header(struct tp_plugin_ctx *ctx, const char *name, struct tp_slice value);
int tp_plugin_resp_add_header(struct tp_plugin_ctx *ctx, const char *name, struct tp_slice value);
int tp_plugin_resp_remove_header(struct tp_plugin_ctx *ctx, const char *name);
/** Ask for the whole response body (response_body hooks); only for upstream responses. */
void tp_plugin_want_response_body(struct tp_plugin_ctx *ctx);

/* -- memory, per-plugin state, logs -- */
/** Memory from the request's arena, freed at once when the request ends. NULL on ENOMEM. */
void *tp_plugin_alloc(struct tp_plugin_ctx *ctx, size_t size);
/** This plugin instance's per-request slot (NULL until set), for state kept between phases. */
void **tp_plugin_data(struct tp_plugin_ctx *ctx);
/**
 * A per-worker value that lives as long as the worker thread (survives reloads), stored under
 * key (e.g. "jwt:jwks:https://idp/keys"). get returns NULL when absent; put stores value with
 * its destructor (called on the worker thread at exit). put returns 0 or TP_ENOMEM.
 */
void *tp_plugin_worker_get(struct tp_plugin_ctx *ctx, const char *key);
int tp_plugin_worker_put(struct tp_plugin_ctx *ctx, const char *key, void *value,
                         void (*destroy)(void *value));
/** The worker's libevent base (for timers and connections of asynchronous work). */
struct event_base *tp_plugin_event_base(struct tp_plugin_ctx *ctx);
/**
 * One JSON line in the security log: time, request_id, client, route, service, consumer (if
 * known), plugin, status, reason. Never pass a secret: reason is a fixed phrase.
 */
void tp_plugin_security_log(struct tp_plugin_ctx *ctx, int status, const char *reason);

/* -- suspension -- */
/** A list of requests waiting for one event (a JWKS fetch...). Zero-initialise it. */
struct tp_plugin_wait_list {
    struct tp_plugin_waiter *head;
};
/** Put the request on list; the hook then returns TP_PLUGIN_SUSPEND. If the client goes away
 *  the request leaves the list by itself. 0 or TP_EINVAL (already waiting). */
int tp_plugin_wait(struct tp_plugin_ctx *ctx, struct tp_plugin_wait_list *list);
/** Resume every request on list (each calls its suspended hook again, from the event loop,
 *  not from inside this call). The list is empty afterwards. Worker thread of the list. */
void tp_plugin_wake_all(struct tp_plugin_wait_list *list);

#endif
