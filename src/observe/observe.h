/*
 * The proxy's hooks into the logs and tracing (src/observe/request.c). Private to src/http and
 * src/observe: they read struct tp_conn / tp_request (src/http/proxy.h).
 *
 * Per request, in order: tp_observe_begin (head parsed, request id known), maybe
 * tp_observe_upstream_start (each upstream attempt), maybe tp_observe_rejected (a gateway
 * error answer), tp_observe_done (the access-log point: once per request), tp_observe_end
 * (request reset: frees what begin kept).
 */
#ifndef TURNPIKE_OBSERVE_H
#define TURNPIKE_OBSERVE_H

#include "http/proxy.h"

/** Trace context of the request (parse traceparent / start a trace, sampling decision) and
 *  the copies the access log and spans need (query, Referer, Host). A failed copy only leaves
 *  those fields null. */
void tp_observe_begin(struct tp_conn *c, const struct tp_http_message *msg);

/** An upstream attempt starts: the first one starts the CLIENT span. */
void tp_observe_upstream_start(struct tp_conn *c);

/** The gateway answers status with reason `why`: a malformed request (400, 408, 414, 431, 501,
 *  505) gets one security-log line, event "malformed_request". */
void tp_observe_rejected(struct tp_conn *c, int status, const char *why);

/** The request is over: its access-log line (access_log_fields) and, when sampled, its spans
 *  queued for export. */
void tp_observe_done(struct tp_conn *c);

/** Free what tp_observe_begin kept (request reset). */
void tp_observe_end(struct tp_conn *c);

/** Append "traceparent: ..." for the upstream to b when the request takes part in tracing.
 *  0 or TP_ENOMEM / TP_ETOOBIG. */
int tp_observe_put_traceparent(struct tp_conn *c, struct tp_strbuf *b);

/** Whether the client's copy of header `name` is replaced (traceparent) or dropped
 *  (tracestate of a restarted trace) in the upstream head. */
bool tp_observe_drops_header(const struct tp_conn *c, struct tp_slice name);

#endif
