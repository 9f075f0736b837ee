/*
 * turnpike — the declarative configuration (YAML or JSON, DESIGN.md §1).
 *
 * tp_config_load() reads a file into a plain, validated tree of structs (this header). The
 * tree is immutable after load; the snapshot compiler (src/config/snapshot.c) turns it into
 * runtime objects (router, upstream pools). Every error carries FILE:LINE:COLUMN.
 */
#ifndef TURNPIKE_CONFIG_H
#define TURNPIKE_CONFIG_H

#include "turnpike/common.h"

#include <stdbool.h>
#include <stdio.h>

/* Defaults, documented in README.md (config reference). */
#define TP_DEFAULT_MAX_HEADER_BYTES (64 * 1024)
#define TP_DEFAULT_MAX_HEADERS 100
#define TP_DEFAULT_MAX_URI_BYTES (8 * 1024)
#define TP_DEFAULT_MAX_FIELD_BYTES (64 * 1024)
#define TP_DEFAULT_MAX_BODY_BYTES 0ULL /* 0 = unlimited */
#define TP_DEFAULT_HEADER_TIMEOUT_MS 10000
#define TP_DEFAULT_BODY_TIMEOUT_MS 60000
#define TP_DEFAULT_KEEPALIVE_TIMEOUT_MS 75000
#define TP_DEFAULT_SEND_TIMEOUT_MS 60000
#define TP_DEFAULT_TUNNEL_IDLE_TIMEOUT_MS 3600000
#define TP_DEFAULT_MAX_CONNECTIONS 100000 /* per process */
#define TP_DEFAULT_CONNECT_TIMEOUT_MS 60000 /* Kong's defaults */
#define TP_DEFAULT_READ_TIMEOUT_MS 60000
#define TP_DEFAULT_WRITE_TIMEOUT_MS 60000
#define TP_DEFAULT_RETRIES 5
#define TP_DEFAULT_KEEPALIVE_POOL 512   /* idle upstream connections per worker per target (Kong) */
#define TP_DEFAULT_KEEPALIVE_IDLE_MS 60000
#define TP_DEFAULT_GRACE_MS 10000
#define TP_DEFAULT_DNS_REFRESH_MS 30000 /* re-resolve target host names this often */

struct tp_plugin;

/** Where a value came from, for error messages. */
struct tp_conf_mark {
    int line;   /* 1-based */
    int column; /* 1-based */
};

struct tp_conf_limits {
    size_t max_header_bytes;     /* limits.max_header_bytes */
    size_t max_headers;          /* limits.max_headers */
    size_t max_uri_bytes;        /* limits.max_uri_bytes */
    size_t max_field_bytes;      /* limits.max_header_field_bytes */
    uint64_t max_body_bytes;     /* limits.max_body_bytes, 0 = unlimited */
    uint32_t header_timeout_ms;  /* limits.header_timeout */
    uint32_t body_timeout_ms;    /* limits.body_timeout: max idle gap while reading a body */
    uint32_t keepalive_timeout_ms; /* limits.keepalive_timeout: idle client connection */
    uint32_t send_timeout_ms;    /* limits.send_timeout: client not reading our response */
    uint32_t tunnel_idle_timeout_ms; /* limits.tunnel_idle_timeout: WebSocket idle */
    uint32_t max_connections;    /* limits.max_connections: open client connections */
    uint32_t grace_period_ms;    /* limits.grace_period: SIGTERM drain time */
};

struct tp_conf_cond {            /* headers / query: name → accepted values */
    char *name;
    char **values;
    size_t num_values;
    struct tp_conf_mark mark;
};

/** One share of a route's traffic split (canary): routes[].split[]. */
struct tp_conf_split {
    char *service;       /* a service name */
    uint32_t weight;     /* relative share, default 1; 0 = none */
    struct tp_conf_mark mark;
};

/**
 * One plugin entry (DESIGN.md §1, Kong's declarative `plugins[]`): in the top-level list (global,
 * or narrowed by `service` / `route` / `consumer` names as Kong allows), or inside a service,
 * route or consumer. `conf` is the plugin's own struct, filled by its schema (plugin.h).
 */
struct tp_conf_plugin {
    char *name;
    const struct tp_plugin *plugin; /* resolved from the registry by the loader */
    void *conf;                     /* plugin->conf_size bytes (NULL when conf_size is 0) */
    bool enabled;                   /* enabled: default true; false = as if absent */
    char *service, *route, *consumer; /* top-level entries: scope narrowing, else NULL */
    char *id;                       /* id: accepted, used in messages */
    bool conf_walked;               /* loader bookkeeping */
    struct tp_conf_mark mark;
};

/**
 * A consumer credential (Kong's keyauth_credentials, basicauth_credentials, jwt_secrets). One
 * struct for the three kinds; each kind's schema accepts only its own keys. Secret values may
 * be written as {env: NAME} or {file: PATH} (read at load).
 */
struct tp_conf_credential {
    char *id;              /* id: optional; X-Credential-Identifier */
    char *key;             /* key-auth: the API key; jwt: the key matched against key_claim_name */
    char *username;        /* basic-auth */
    char *password;        /* basic-auth: a crypt(3) hash; a plain value is hashed at load */
    char *algorithm;       /* jwt: HS256 (default) ... EdDSA */
    char *secret;          /* jwt: HMAC secret */
    char *rsa_public_key;  /* jwt: PEM public key (RSA, EC or Ed25519 despite the name) */
    struct tp_conf_mark mark;
};

struct tp_conf_consumer {
    char *id;              /* id: optional, else a UUID derived from username / custom_id */
    char *username;        /* at least one of username, custom_id */
    char *custom_id;
    char **groups; size_t num_groups; /* groups, plus Kong's acls: [{group: ...}] */
    struct tp_conf_credential *keyauth; size_t num_keyauth;   /* keyauth_credentials */
    struct tp_conf_credential *basicauth; size_t num_basicauth; /* basicauth_credentials */
    struct tp_conf_credential *jwt; size_t num_jwt;           /* jwt_secrets */
    struct tp_conf_plugin *plugins; size_t num_plugins;       /* consumer-scoped plugins */
    struct tp_conf_mark mark;
};

struct tp_conf_route {
    char *name;
    char **hosts;   size_t num_hosts;
    char **paths;   size_t num_paths;
    char **methods; size_t num_methods; /* upper-cased by the loader */
    struct tp_conf_cond *headers; size_t num_headers;
    struct tp_conf_cond *query;   size_t num_query;
    int priority;
    bool strip_path;     /* default true, as in Kong */
    bool preserve_host;  /* default false */
    bool retry_non_idempotent; /* default false: only idempotent methods are retried */
    struct tp_conf_split *split; size_t num_split; /* split: weighted services, else none */
    char *split_header;  /* split_sticky.header: same value → same share */
    char *split_cookie;  /* split_sticky.cookie */
    char *mirror;        /* mirror: a service receiving a copy of each request */
    struct tp_conf_mark mirror_mark;
    struct tp_conf_plugin *plugins; size_t num_plugins; /* route-scoped plugins */
    char **order; size_t num_order; /* order: plugin names run first, in this order */
    struct tp_conf_mark order_mark;
    struct tp_conf_mark mark;
};

/* Conditions that allow another attempt on another target (service retry_on). */
enum {
    TP_RETRY_CONNECT = 1u << 0, /* "connect-failure": refused, unreachable, connect timeout */
    TP_RETRY_RESET = 1u << 1,   /* "reset": closed or reset before any byte of the answer */
    TP_RETRY_TIMEOUT = 1u << 2, /* "timeout": no answer within retry_timeout / read_timeout */
    TP_RETRY_502 = 1u << 3,     /* "502", "503", "504": the target answered that status */
    TP_RETRY_503 = 1u << 4,
    TP_RETRY_504 = 1u << 5,
};
#define TP_DEFAULT_RETRY_ON (TP_RETRY_CONNECT | TP_RETRY_RESET)
#define TP_DEFAULT_RETRY_BUDGET 20     /* percent, as Envoy's retry budget */
#define TP_DEFAULT_RETRY_BACKOFF_MS 25 /* Envoy's base interval */

struct tp_conf_service {
    char *name;
    char *url;        /* as written */
    char *host;       /* from url: an upstream name or a host name / IP literal */
    uint16_t port;    /* from url (default 80) */
    char *path;       /* from url, "" when none; a trailing '/' is kept (as Kong does) */
    uint32_t connect_timeout_ms, read_timeout_ms, write_timeout_ms;
    int retries;
    unsigned retry_on;         /* retry_on: TP_RETRY_* bits, default connect-failure + reset */
    uint32_t retry_timeout_ms; /* retry_timeout: per-try wait for the answer, 0 = read_timeout */
    uint32_t retry_budget;     /* retry_budget: % of in-flight requests that may be retries */
    uint32_t retry_backoff_ms; /* retry_backoff: base of the jittered exponential back-off */
    struct tp_conf_route *routes; size_t num_routes;
    struct tp_conf_circuit *circuit_breaker; /* NULL: no breaker for the service */
    struct tp_conf_plugin *plugins; size_t num_plugins; /* service-scoped plugins */
    struct tp_conf_mark mark;
};

enum tp_balancer_algorithm {
    TP_LB_ROUND_ROBIN = 0,
    TP_LB_WEIGHTED_ROUND_ROBIN,
    TP_LB_LEAST_CONNECTIONS,
    TP_LB_CONSISTENT_HASHING, /* ketama ring on a request key (hash_on) */
    TP_LB_RANDOM_TWO_CHOICES, /* power of two choices on in-flight requests */
};

/** What consistent-hashing hashes (Kong's hash_on / hash_fallback values). */
enum tp_hash_on {
    TP_HASH_NONE = 0,  /* no key: round-robin among usable targets */
    TP_HASH_IP,        /* the client address (after trusted_proxies) */
    TP_HASH_HEADER,    /* every value of one request header */
    TP_HASH_COOKIE,    /* one cookie's value (RFC 6265) */
    TP_HASH_PATH,      /* the normalised path, without the query */
    TP_HASH_QUERY_ARG, /* one query argument's raw value */
};

#define TP_HASH_NAME_MAX 128 /* bytes of a hash_on_* name, NUL included */

struct tp_conf_target {
    char *host;        /* host name or IP literal (IPv6 without brackets) */
    uint16_t port;
    uint32_t weight;   /* default 100, 0 = disabled */
    uint32_t priority; /* 0 = primary (default); traffic goes to the lowest level with a
                          usable target: higher levels are backups */
    bool backup;       /* backup: true = priority 1 when no priority is given */
    struct tp_conf_mark mark;
};

/** upstreams[].healthchecks (issue 3): active probes and passive outcome tracking. */
struct tp_conf_healthchecks {
    /* active: probes from the main thread, once per process */
    uint32_t active_interval_ms;   /* active.interval: 0 = no active checks */
    bool active_tcp;               /* active.type: "tcp" (connect only) or "http" (default) */
    char *active_http_path;        /* active.http_path, default "/" */
    char *active_host;             /* active.host: Host of the probe, default the target's */
    uint32_t active_timeout_ms;    /* active.timeout, default 1000 */
    uint32_t healthy_threshold;    /* active.healthy_threshold: successes to come back, default 2 */
    uint32_t unhealthy_threshold;  /* active.unhealthy_threshold: failures to go down, default 2 */
    int *healthy_statuses;         /* active.healthy_statuses, default [200, 302] */
    size_t num_healthy_statuses;
    /* passive: outcomes of real requests, counted by the workers */
    uint32_t passive_threshold;    /* passive.unhealthy_threshold: consecutive failures, 0 = off */
    int *unhealthy_statuses;       /* passive.unhealthy_statuses, default [500, 502, 503, 504] */
    size_t num_unhealthy_statuses;
    uint32_t ejection_ms;          /* passive.ejection_time, default 30000; doubles per repeat */
    bool fail_open;                /* fail_open: all down → try them anyway (default false: 503) */
};

/**
 * circuit_breaker on an upstream (one breaker per target) or a service (one for the service),
 * issue 3. Durations in ms; see include/turnpike/circuit.h and README.md.
 */
struct tp_conf_circuit {
    uint32_t failure_ratio;      /* failure_ratio: percent failed in the window, 0 = off (50) */
    uint32_t failure_count;      /* failure_count: failures in the window, 0 = off (0) */
    uint32_t min_requests;       /* min_requests: requests before the ratio is judged (20) */
    uint32_t window_ms;          /* window: sliding window, 10 buckets of window/10 (10000) */
    uint32_t open_ms;            /* open_time: open before half-open (5000) */
    uint32_t half_open_requests; /* half_open_requests: trials while half-open (3) */
    uint32_t max_requests;       /* max_requests: in flight, 0 = unlimited (0) */
    uint32_t max_pending;        /* max_pending: connects in progress, upstream only, 0 = off */
};

struct tp_conf_upstream {
    char *name;
    struct tp_conf_circuit *circuit_breaker; /* NULL: no breaker on the targets */
    enum tp_balancer_algorithm algorithm; /* default round-robin */
    struct tp_conf_target *targets; size_t num_targets;
    uint32_t keepalive_pool;     /* keepalive_pool_size: idle conns per worker per target */
    uint32_t keepalive_idle_ms;  /* keepalive_idle_timeout */
    struct tp_conf_healthchecks *healthchecks; /* NULL: no health tracking */
    uint32_t failover_threshold; /* % of a priority tier's weight that must be usable for the
                                    tier to take traffic; 0 = any usable target will do */
    struct tp_conf_mark mark;
    /* consistent-hashing; names are "" when not set, header names lower-cased */
    enum tp_hash_on hash_on;                          /* default none */
    enum tp_hash_on hash_fallback;                    /* default none */
    char hash_on_header[TP_HASH_NAME_MAX];
    char hash_fallback_header[TP_HASH_NAME_MAX];
    char hash_on_cookie[TP_HASH_NAME_MAX];            /* also used by hash_fallback: cookie */
    char hash_on_query_arg[TP_HASH_NAME_MAX];
    char hash_fallback_query_arg[TP_HASH_NAME_MAX];
};

struct tp_conf_cidr {
    int family;          /* AF_INET or AF_INET6 */
    uint8_t addr[16];    /* network address, host bits cleared */
    int prefix;          /* prefix length */
};

struct tp_conf_listen {
    char *host;          /* "0.0.0.0", "127.0.0.1", "::" ... */
    uint16_t port;
    struct tp_conf_mark mark;
};

enum tp_log_level { TP_LOG_DEBUG = 0, TP_LOG_INFO, TP_LOG_NOTICE, TP_LOG_WARN, TP_LOG_ERROR };

/* Fields of an access-log line (access_log_fields), in the order they may be listed. */
enum tp_access_field {
    TP_AF_TIME = 0, TP_AF_REQUEST_ID, TP_AF_CLIENT, TP_AF_PEER, TP_AF_METHOD, TP_AF_PATH,
    TP_AF_QUERY, TP_AF_PROTOCOL, TP_AF_HOST, TP_AF_USER_AGENT, TP_AF_REFERER, TP_AF_STATUS,
    TP_AF_BYTES_RECEIVED, TP_AF_BYTES_SENT, TP_AF_ROUTE, TP_AF_SERVICE, TP_AF_UPSTREAM,
    TP_AF_LATENCY_MS, TP_AF_UPSTREAM_LATENCY_MS, TP_AF_TRACE_ID, TP_AF_SPAN_ID, TP_AF_CONSUMER,
    TP_AF_TRIES,
    TP_AF_COUNT
};

/* tracing: W3C Trace Context and OTLP/HTTP span export (src/observe/tracer.c). */
struct tp_conf_tracing {
    char *endpoint;              /* "http://host[:port][/base]": spans go to {endpoint}/v1/traces */
    char *service_name;          /* resource service.name; default "turnpike" */
    double sampling;             /* head-sampling ratio 0..1; default 1 */
    uint64_t sample_threshold;   /* sampling x 2^64: ids whose random part is below are kept */
    bool sample_all;             /* sampling == 1 */
    bool parent_based;           /* follow a valid incoming sampled flag; default true */
    uint32_t batch_size;         /* spans per export request; default 512 */
    uint32_t flush_interval_ms;  /* export at least this often when spans wait; default 5000 */
    uint32_t queue_size;         /* requests' spans waiting for export, all workers; 2048 */
    uint32_t timeout_ms;         /* one export request; default 10000 */
    struct tp_conf_mark mark;
};

/** metrics (src/metrics, README "Metrics"): Prometheus /metrics, /status/latency, /status/usage
 *  on status_listen. */
#define TP_DEFAULT_METRICS_MAX_CONSUMERS 1000
#define TP_DEFAULT_LATENCY_WINDOW_MS 60000
struct tp_conf_metrics {
    bool enabled;               /* metrics.enabled: count requests; default true */
    uint32_t max_consumers;     /* metrics.max_consumers: consumers with their own series; the
                                   rest share consumer="other"; 0 = no per-consumer counts */
    uint32_t latency_window_ms; /* metrics.latency_window: percentile window, 0 = no percentiles */
};

struct tp_config {
    char *path;          /* file it was read from */
    struct tp_conf_listen *listen; size_t num_listen;  /* default 0.0.0.0:8000 */
    int workers;         /* 0 in the file means "number of CPUs"; the loader resolves it */
    char *access_log;    /* path, "stdout", "stderr", "syslog[:...]" or "off"; default "stdout" */
    char *error_log;     /* path, "stdout", "stderr" or "syslog[:...]"; default "stderr" */
    char *security_log;  /* path, "stdout", "stderr", "syslog[:...]" or "off"; default "stderr" */
    enum tp_log_level log_level; /* default notice */
    char *audit_log;     /* path, "stdout", "stderr", "syslog[:...]" or "off"; default "stderr" */
    uint32_t log_buffer_bytes; /* log_buffer_size: queue bytes per log; default 1 MiB */
    unsigned char *access_log_fields; size_t num_access_log_fields; /* TP_AF_*; NULL = default */
    uint32_t access_log_field_mask; /* bit 1 << TP_AF_* for each field of the line (computed) */
    struct tp_conf_tracing *tracing; /* NULL = tracing off */
    struct tp_conf_cidr *trusted_proxies; size_t num_trusted_proxies;
    uint32_t dns_refresh_ms; /* dns_refresh: re-resolve target names; 0 = only on reload */
    struct tp_conf_listen *status_listen; /* status_listen: JSON status endpoint; NULL = off */
    struct tp_conf_limits limits;
    struct tp_conf_metrics metrics; /* metrics: see src/metrics */
    struct tp_conf_service *services; size_t num_services;
    struct tp_conf_upstream *upstreams; size_t num_upstreams;
    struct tp_conf_consumer *consumers; size_t num_consumers;
    struct tp_conf_plugin *plugins; size_t num_plugins; /* top-level plugins[] */
};

/**
 * Load and validate a config file (YAML 1.1 via libyaml; JSON is accepted as YAML flow).
 *
 * Every error is printed to `errors` as "FILE:LINE:COLUMN: message\n" and loading continues to
 * report as many errors as possible. Unknown keys, wrong types, out-of-range numbers, bad URLs,
 * duplicate service/route/upstream names, a service url host that is neither an upstream nor a
 * valid host, and unparseable CIDRs are errors. Durations are integers in ms.
 *
 * @param path    file to read
 * @param errors  stream for error lines (e.g. stderr); may be NULL
 * @param out     receives a newly allocated config on success (free with tp_config_free)
 * @return 0, or the negative number of errors found (out untouched).
 */
int tp_config_load(const char *path, FILE *errors, struct tp_config **out);

/** Same as tp_config_load but from memory; `name` is used in error messages. */
int tp_config_load_string(const char *name, const char *text, size_t len, FILE *errors,
                          struct tp_config **out);

/** Free one healthchecks section (part of tp_config_free). NULL is ignored. */
void tp_conf_healthchecks_free(struct tp_conf_healthchecks *h);

/** Free one circuit_breaker section (part of tp_config_free). NULL is ignored. */
void tp_conf_circuit_free(struct tp_conf_circuit *c);

/** Free a config tree. NULL is ignored. */
void tp_config_free(struct tp_config *cfg);

/** Free a tracing section (part of tp_config_free). NULL is ignored. */
void tp_conf_tracing_free(struct tp_conf_tracing *t);

/** Name of an access-log field ("time", "request_id", ...; "?" when out of range). */
const char *tp_access_field_name(enum tp_access_field f);

/** The access-log fields of cfg in order (access_log_fields, or the default set); *n gets the
 *  count. The array lives as long as cfg (or forever: the default). */
const unsigned char *tp_config_access_fields(const struct tp_config *cfg, size_t *n);

/** A tracing endpoint split for the exporter: host (no brackets), port, and the request path
 *  ({base}/v1/traces). */
struct tp_tracing_endpoint {
    char host[256];
    uint16_t port;
    char path[512];
};

/** Split an endpoint URL "http://host[:port][/base]" (port 80 by default). 0, or TP_EINVAL
 *  with a reason in err. */
int tp_tracing_endpoint_parse(const char *url, struct tp_tracing_endpoint *ep, char *err,
                              size_t errlen);

/** tp_tracing_endpoint_parse without the result (config check). */
int tp_tracing_endpoint_check(const char *url, char *err, size_t errlen);

/** Find an upstream by name, NULL if none. */
const struct tp_conf_upstream *tp_config_find_upstream(const struct tp_config *cfg,
                                                       const char *name);

#endif
