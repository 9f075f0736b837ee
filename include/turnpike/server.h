/*
 * turnpike — the server: worker threads, listeners, snapshot publication, lifecycle.
 *
 * One process, N worker threads, each with its own libevent event_base and its own
 * SO_REUSEPORT listening sockets (DESIGN.md §2). The main thread owns signals and reloads.
 */
#ifndef TURNPIKE_SERVER_H
#define TURNPIKE_SERVER_H

#include "turnpike/snapshot.h"

struct tp_server;

/**
 * Create the server from a built snapshot: opens every listener of snap->config (once per
 * worker, SO_REUSEPORT) and starts the worker threads. Takes one reference on snap per worker.
 *
 * @return 0, TP_EIO (a listener could not be bound: the reason goes to the error log) or
 *         TP_ENOMEM. *out is set only on success.
 */
int tp_server_start(struct tp_snapshot *snap, struct tp_server **out);

/**
 * Publish a new snapshot to every worker (config reload). New requests use it at once;
 * requests in flight finish on the snapshot they started with. Takes its own references.
 */
void tp_server_publish(struct tp_server *srv, struct tp_snapshot *snap);

/**
 * Graceful stop: workers stop accepting, close idle connections, finish in-flight requests,
 * and exit once idle or after grace_ms. Blocks until every worker thread has exited.
 */
void tp_server_stop(struct tp_server *srv, uint32_t grace_ms);

/** Free a stopped server. */
void tp_server_free(struct tp_server *srv);

#endif
