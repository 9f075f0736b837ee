/*
 * turnpike — W3C Trace Context and span export (issue 7, DESIGN.md §5).
 *
 * traceparent (W3C Trace Context, Recommendation, §3.2) is parsed strictly: lower-case hex only,
 * all-zero trace-id or parent-id invalid, version ff invalid, version 00 exactly 55 characters,
 * a higher version parsed by the §3.2.4 rules (its first 55 characters, then "-" or the end).
 * With `tracing` configured every proxied request takes part: the upstream receives
 * `traceparent: 00-<trace-id>-<upstream span id>-<flags>` (tracestate passed on unchanged when
 * the incoming traceparent was valid, dropped when the trace is restarted), and sampled requests
 * produce two spans — the gateway's (SERVER) and the upstream call's (CLIENT, its child) —
 * exported in batches over OTLP/HTTP with JSON encoding by a thread of its own (tracer.c).
 */
#ifndef TURNPIKE_TRACE_H
#define TURNPIKE_TRACE_H

#include "turnpike/common.h"
#include "turnpike/config.h"

#include <stdbool.h>
#include <stdint.h>

#define TP_TRACEPARENT_LEN 55 /* "00-" + 32 + "-" + 16 + "-" + 2 */
#define TP_TRACE_FLAG_SAMPLED 0x01

/** A parsed traceparent. */
struct tp_traceparent {
    uint8_t version;
    uint8_t trace_id[16];
    uint8_t parent_id[8];
    uint8_t flags; /* as received; only the sampled bit is meaningful (§3.2.2.5) */
};

/**
 * Parse one traceparent value (no surrounding whitespace: the HTTP parser trims OWS).
 * @return 0, or TP_EINVAL for anything the Recommendation says to ignore (then the trace is
 *         restarted).
 */
int tp_traceparent_parse(const char *p, size_t len, struct tp_traceparent *out);

/** Write "00-<trace_id>-<span_id>-<flags>" (TP_TRACEPARENT_LEN bytes, no NUL) into buf. */
void tp_traceparent_format(char *buf, const uint8_t trace_id[16], const uint8_t span_id[8],
                           uint8_t flags);

/** Lower-case hex of n bytes into out (2n bytes, no NUL). */
void tp_trace_hex(char *out, const uint8_t *id, size_t n);

/** The trace context of one request (struct tp_request.trace); all zero = none. */
struct tp_trace_ctx {
    uint8_t trace_id[16];
    uint8_t parent_id[8];  /* the caller's span (valid with has_parent) */
    uint8_t span_id[8];    /* the gateway's SERVER span */
    uint8_t up_span_id[8]; /* the upstream call's CLIENT span: the upstream's parent-id */
    uint8_t flags;         /* trace-flags sent upstream */
    bool has_trace;        /* trace_id is set (access log trace_id) */
    bool has_parent;       /* a valid traceparent came with the request */
    bool active;           /* tracing on: traceparent is replaced towards the upstream */
    bool sampled;          /* spans are recorded and exported */
    uint64_t start_ns;     /* CLOCK_REALTIME of the request start (sampled only) */
    uint64_t up_start_ns;  /* first upstream connect or reuse (sampled only) */
};

/**
 * The head-sampling decision for a request of trace trace_id (rule documented in README):
 * with a valid incoming traceparent and parent_based, its sampled flag; otherwise the ratio,
 * applied to the trace id's random part (its last 8 bytes) so every gateway that uses the same
 * rule agrees on one trace.
 */
bool tp_trace_should_sample(const struct tp_conf_tracing *t, const uint8_t trace_id[16],
                            bool has_parent, uint8_t parent_flags);

/* ---- export (src/observe/tracer.c) ---- */

/** One request's spans as queued for export (copied strings, truncated). */
struct tp_span_record {
    uint8_t trace_id[16], parent_id[8], span_id[8], up_span_id[8];
    bool has_parent, has_upstream;
    uint8_t flags;
    uint16_t status;     /* the SERVER span's http.response.status_code (0: none sent) */
    uint16_t up_status;  /* the CLIENT span's: the upstream's answer (0: none came) */
    uint16_t local_port; /* server.port */
    uint16_t up_port;
    uint8_t minor_version; /* network.protocol.version 1.<minor> */
    uint8_t resends;       /* http.request.resend_count of the upstream call */
    uint64_t start_ns, end_ns, up_start_ns, up_end_ns;
    char method[24];
    char path[256];       /* url.path (normalised) */
    char route_path[128]; /* http.route: the route's path when it has exactly one */
    char route[64], service[64];
    char host[128];  /* server.address: the request's Host without the port */
    char client[48]; /* client.address (through trusted_proxies) */
    char peer[48];   /* network.peer.address */
    char user_agent[192];
    char request_id[64];
    char up_host[96]; /* the CLIENT span's server.address */
    char up_addr[48]; /* its network.peer.address */
};

/**
 * Start, reconfigure or idle the exporter for cfg (main thread; cfg->tracing NULL: nothing new
 * is queued, what is queued is still sent). The first call with tracing on allocates the
 * per-worker queues (queue_size records in all, split over nworkers; a later queue_size
 * change needs a restart) and starts the exporter thread.
 * @return 0, TP_ENOMEM, or TP_EIO (thread).
 */
int tp_tracer_configure(const struct tp_config *cfg, int nworkers);

/**
 * Reserve the next free record of worker `worker`'s queue, or NULL when tracing never started
 * or the queue is full (then `spans`, the spans the record would have held, are counted as
 * dropped). Fill it, then tp_tracer_commit. Worker thread only: one producer per queue, no lock.
 */
struct tp_span_record *tp_tracer_reserve(int worker, unsigned spans);

/** Publish the record returned by the last tp_tracer_reserve of this worker. */
void tp_tracer_commit(int worker);

/** Send what is queued (waits at most 2 s for the collector) and stop the thread. */
void tp_tracer_stop(void);

/** Counters since start, any thread: spans dropped (queue full), spans exported (collector
 *  answered 2xx), spans that failed to export (refused, timeout, non-2xx). */
uint64_t tp_trace_dropped(void);
uint64_t tp_trace_exported(void);
uint64_t tp_trace_failed(void);

#endif
