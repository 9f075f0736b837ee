/*
 * turnpike — the status endpoint (issue 3): a small HTTP/1.1 server on `status_listen`, run by
 * the main thread, never on the public port. GET /status answers JSON describing every upstream
 * and target of the live snapshot (health, ejections, in-flight requests, circuit state) and
 * every service (circuit state).
 */
#ifndef TURNPIKE_STATUS_H
#define TURNPIKE_STATUS_H

#include "turnpike/config.h"
#include "turnpike/log.h"
#include "turnpike/snapshot.h"

struct event_base;
struct tp_status_server;

/**
 * Listen on l and serve on base. *live is read at each request (the caller keeps it pointing
 * at the current snapshot; main thread only).
 * @return the server, or NULL (bind failure or ENOMEM; the reason goes to the error log).
 */
struct tp_status_server *tp_status_start(struct event_base *base, const struct tp_conf_listen *l,
                                         struct tp_snapshot *const *live);

/**
 * Append the status document of snap to b (JSON object, no trailing newline).
 * Returns 0, TP_ENOMEM or TP_ETOOBIG.
 */
int tp_status_json(const struct tp_snapshot *snap, struct tp_strbuf *b);

struct tp_metrics;

/** Serve GET /metrics, /status/latency and /status/usage from m (include/turnpike/metrics.h);
 *  without it they answer 404. s NULL is ignored. */
void tp_status_set_metrics(struct tp_status_server *s, struct tp_metrics *m);

/** Close the listener and every open status connection. NULL is ignored. */
void tp_status_stop(struct tp_status_server *s);

#endif
