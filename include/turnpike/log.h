/*
 * turnpike — error log and JSON-line helpers.
 *
 * The error log is one JSON object per line: {"time","level"[,"request_id"],"message"}. Lines
 * go through the log writer thread (include/turnpike/logsink.h) once it runs, and are written
 * directly (one write(2) under a mutex) before it starts and after it stops.
 */
#ifndef TURNPIKE_LOG_H
#define TURNPIKE_LOG_H

#include "turnpike/common.h"
#include "turnpike/config.h"

#include <stdarg.h>

/** A growable byte buffer with a hard cap. Owns ptr (free with tp_strbuf_free). */
struct tp_strbuf {
    char *ptr;
    size_t len;
    size_t cap;
    size_t max; /* appends past max fail with TP_ETOOBIG; 0 = 1 MiB */
};

/** Make room for at least n bytes in total (one allocation instead of a doubling chain).
 *  Returns 0, TP_ENOMEM or TP_ETOOBIG (n over the cap). */
int tp_strbuf_reserve(struct tp_strbuf *b, size_t n);
/** Slow path of tp_strbuf_append: grow, then append. Same contract. */
int tp_strbuf_append_grow(struct tp_strbuf *b, const void *p, size_t len);

/** Append len bytes. Returns 0, TP_ENOMEM, or TP_ETOOBIG (buffer unchanged on error).
 *  Inline: heads are built from many small appends on every request. */
static inline int tp_strbuf_append(struct tp_strbuf *b, const void *p, size_t len)
{
    if (TP_LIKELY(len <= b->cap - b->len)) {
        if (len)
            memcpy(b->ptr + b->len, p, len);
        b->len += len;
        return 0;
    }
    return tp_strbuf_append_grow(b, p, len);
}
/** Append a NUL-terminated string. Same errors as tp_strbuf_append. */
int tp_strbuf_puts(struct tp_strbuf *b, const char *s);
/** Append an unsigned decimal number. */
int tp_strbuf_putu(struct tp_strbuf *b, unsigned long long v);
/** Append bytes as the inside of a JSON string (RFC 8259 §7): '"', '\\' and controls escaped,
 *  bytes >= 0x80 that are not valid UTF-8 written as \u00XX so every line stays valid JSON. */
int tp_strbuf_json_str(struct tp_strbuf *b, const char *p, size_t len);
/** Free the buffer's memory and reset it to empty. */
void tp_strbuf_free(struct tp_strbuf *b);

/**
 * Open the error log destination: a path (appended, created 0644), "stderr" or "stdout".
 * Replaces the current destination; safe to call again on reload. Returns 0 or TP_EIO.
 */
int tp_log_open(const char *dest, enum tp_log_level level);

/** Write one error-log line if level >= the configured level. printf-style message. Queued
 *  for the log writer thread once it runs (include/turnpike/logsink.h): never blocks on I/O. */
void tp_log(enum tp_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/** tp_log for a line about one request: adds its "request_id" field (NULL or "" omits it). */
void tp_log_request(enum tp_log_level level, const char *request_id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/** True when a line of this level would be written (cheap: skip building arguments). */
bool tp_log_enabled(enum tp_log_level level);

/** Name of a level ("debug", "info", "notice", "warn", "error"). */
const char *tp_log_level_name(enum tp_log_level level);

/** Current wall-clock time as RFC 3339 UTC with milliseconds into buf (>= 32 bytes). */
void tp_log_time_rfc3339(char *buf, size_t len);

#endif
