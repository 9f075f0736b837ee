/*
 * turnpike — the four logs and their writer thread (DESIGN.md §5).
 *
 * Access, error, security and audit log: one JSON object per line, each to its own destination
 * (a file path, "stdout", "stderr", "syslog[:options]" or "off"). Producers — workers, the main
 * thread, any thread calling tp_log() — copy a finished line into the log's bounded in-memory
 * queue under a mutex held only for that memcpy; a dedicated writer thread swaps the queue for
 * its own buffer and writes the batch to the destination, so a slow disk or syslog server never
 * blocks a worker. A full queue drops the line and counts it (tp_log_dropped).
 *
 * Destinations:
 *   path                 appended (created 0644); reopened on SIGUSR1 (tp_logsink_reopen)
 *   stdout, stderr       the process's descriptors
 *   syslog               RFC 5424 messages over a unix datagram socket (/dev/log)
 *   syslog:OPTS          OPTS = comma-separated server=unix:/path | server=HOST[:PORT] (UDP,
 *                        RFC 5426, port 514 by default), facility=local0..local7|user|daemon|
 *                        auth|authpriv, tag=APP-NAME (default "turnpike")
 *   off                  nothing is queued (not allowed for the error log)
 *
 * The logs are process-wide by nature (one destination for every thread), like the error log.
 */
#ifndef TURNPIKE_LOGSINK_H
#define TURNPIKE_LOGSINK_H

#include "turnpike/config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** The logs, also the `log` argument of tp_log_dropped / tp_log_written. */
enum tp_logsink_id {
    TP_LOGSINK_ACCESS = 0,
    TP_LOGSINK_ERROR,
    TP_LOGSINK_SECURITY,
    TP_LOGSINK_AUDIT,
    TP_LOGSINK_COUNT,
};

/* queue bytes per log (log_buffer_size) */
#define TP_LOG_BUFFER_DEFAULT (1u << 20)
/* an access or security line reaches its destination within this (plus the write itself);
 * error and audit lines go at once */
#define TP_LOG_FLUSH_MS 10

/**
 * Check a destination string without opening it (config validation).
 * @param allow_off  false for the error log
 * @return 0, or TP_EINVAL with a reason in err (errlen bytes, NUL-terminated).
 */
int tp_logsink_dest_check(const char *spec, bool allow_off, char *err, size_t errlen);

/**
 * Open every destination of cfg (access_log, error_log, security_log, audit_log), size the
 * queues (cfg->log_buffer_bytes each) and start the writer thread. Call once, from the main
 * thread, before the workers start. Every signal is blocked in the writer thread.
 * @return 0, or TP_EIO (a destination could not be opened: the reason is printed to stderr),
 *         TP_ENOMEM.
 */
int tp_logsink_start(const struct tp_config *cfg);

/**
 * Apply the destinations of a reloaded cfg (main thread). A destination that did not change is
 * kept as it is; lines queued before the call still go to the old destination. A destination
 * that cannot be opened keeps the old one and is reported in the error log. Queue sizes change
 * only at restart. Returns 0 or the number of destinations that failed, negated.
 */
int tp_logsink_configure(const struct tp_config *cfg);

/** Reopen the file destinations (SIGUSR1): lines queued before go to the old file, the rest to
 *  the new one, so a rename + SIGUSR1 rotation loses no line. Any thread; returns at once. */
void tp_logsink_reopen(void);

/** Write what is queued, stop the writer thread and close the destinations. After this the
 *  error log is written synchronously again (tp_log). */
void tp_logsink_stop(void);

/** True when log id has a destination (not "off") and the writer runs. Relaxed atomic load. */
bool tp_logsink_enabled(enum tp_logsink_id id);

/**
 * Queue one complete line (ending in '\n'; bytes copied). Never blocks on I/O.
 * @return 0, TP_ETOOBIG (queue full or line larger than the queue: dropped and counted) or
 *         TP_ENOTFOUND (the log is off or the writer is not running: nothing done, not counted).
 */
int tp_logsink_write(enum tp_logsink_id id, const char *line, size_t len);

/** Lines of log (enum tp_logsink_id) dropped since start: full queue, or a destination write
 *  that failed. 0 for an unknown log. Any thread. */
uint64_t tp_log_dropped(int log);

/** Lines of log written to its destination since start. Any thread. */
uint64_t tp_log_written(int log);

/** "access", "error", "security", "audit" ("?" for an unknown log). */
const char *tp_logsink_name(int log);

struct tp_strbuf;
/** Append the status-document members ,"logs":{"access":{"written":N,"dropped":N},...},
 *  "tracing":{"exported":N,"dropped":N,"failed":N} to b (GET /status). 0 or TP_E*. */
int tp_observe_status_json(struct tp_strbuf *b);

#endif
