/*
 * Error log and the shared string buffer / JSON escaping helpers.
 */
#include "turnpike/log.h"
#include "turnpike/logsink.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int tp_strbuf_append_grow(struct tp_strbuf *b, const void *p, size_t len)
{
    size_t max = b->max ? b->max : (1u << 20);
    if (len > max - b->len || b->len > max)
        return TP_ETOOBIG;
    if (b->len + len > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        while (ncap < b->len + len)
            ncap *= 2;
        if (ncap > max)
            ncap = max;
        char *np = realloc(b->ptr, ncap);
        if (!np)
            return TP_ENOMEM;
        b->ptr = np;
        b->cap = ncap;
    }
    if (len)
        memcpy(b->ptr + b->len, p, len);
    b->len += len;
    return 0;
}

int tp_strbuf_reserve(struct tp_strbuf *b, size_t n)
{
    size_t max = b->max ? b->max : (1u << 20);
    if (n > max)
        return TP_ETOOBIG;
    if (n <= b->cap)
        return 0;
    char *np = realloc(b->ptr, n);
    if (!np)
        return TP_ENOMEM;
    b->ptr = np;
    b->cap = n;
    return 0;
}

int tp_strbuf_puts(struct tp_strbuf *b, const char *s)
{
    return tp_strbuf_append(b, s, strlen(s));
}

int tp_strbuf_putu(struct tp_strbuf *b, unsigned long long v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return tp_strbuf_append(b, tmp + i, sizeof(tmp) - i);
}

/* Length of a valid UTF-8 sequence starting at p (RFC 3629), 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *p, size_t len)
{
    unsigned char c = p[0];
    size_t n;
    unsigned min;
    unsigned cp;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2, cp = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3, cp = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n > len)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

int tp_strbuf_json_str(struct tp_strbuf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, run = 0;
    int rc;
    while (i < len) {
        unsigned char c = p[i];
        size_t n = 1;
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            i++;
            continue;
        }
        if (c >= 0x80 && (n = utf8_seq_len(p + i, len - i)) > 0) {
            i += n;
            continue;
        }
        /* flush the clean run before the byte that needs escaping */
        if ((rc = tp_strbuf_append(b, s + run, i - run)) != 0)
            return rc;
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        if (c == '"' || c == '\\') {
            char two[2] = {'\\', (char)c};
            rc = tp_strbuf_append(b, two, 2);
        } else {
            rc = tp_strbuf_append(b, esc, 6);
        }
        if (rc)
            return rc;
        i++;
        run = i;
    }
    return tp_strbuf_append(b, s + run, len - run);
}

void tp_strbuf_free(struct tp_strbuf *b)
{
    free(b->ptr);
    b->ptr = NULL;
    b->len = b->cap = 0;
}

/* The error log is process-wide state by nature (one destination for every thread). */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = 2;
static enum tp_log_level log_min = TP_LOG_NOTICE;

static const char *const level_names[] = {"debug", "info", "notice", "warn", "error"};

const char *tp_log_level_name(enum tp_log_level level)
{
    return (unsigned)level < TP_ARRAY_LEN(level_names) ? level_names[level] : "error";
}

int tp_log_open(const char *dest, enum tp_log_level level)
{
    int fd;
    /* syslog is reached through the writer thread only; until it runs, stderr stands in */
    if (!dest || strcmp(dest, "stderr") == 0 ||
        (strncmp(dest, "syslog", 6) == 0 && (dest[6] == '\0' || dest[6] == ':')))
        fd = 2;
    else if (strcmp(dest, "stdout") == 0)
        fd = 1;
    else if ((fd = open(dest, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)) < 0)
        return TP_EIO;
    pthread_mutex_lock(&log_lock);
    int old = log_fd;
    log_fd = fd;
    log_min = level;
    pthread_mutex_unlock(&log_lock);
    if (old > 2 && old != fd)
        close(old);
    return 0;
}

void tp_log_time_rfc3339(char *buf, size_t len)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    /* the casts bound every field for the compiler: no truncation warning at -O3 */
    snprintf(buf, len, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ",
             (unsigned)(tm.tm_year + 1900) % 10000u, (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u,
             (unsigned)tm.tm_hour % 100u, (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u,
             (unsigned)(ts.tv_nsec / 1000000) % 1000u);
}

bool tp_log_enabled(enum tp_log_level level)
{
    return level >= log_min;
}

/* One line {"time","level"[,"request_id"],"message"}: queued for the writer thread, or written
 * at once when it does not run (start-up, shutdown, `turnpike -t`). No allocation: the line is
 * assembled on the stack (messages are capped at 2 KiB, escaping at most sextuples them). */
static void log_line(enum tp_log_level level, const char *request_id, const char *fmt,
                     va_list ap)
{
    char msg[2048];
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(msg))
        n = sizeof(msg) - 1;
    char now[40];
    tp_log_time_rfc3339(now, sizeof(now));
    char line[16384];
    struct tp_strbuf b = {.ptr = line, .cap = sizeof(line), .max = sizeof(line)};
    tp_strbuf_puts(&b, "{\"time\":\"");
    tp_strbuf_puts(&b, now);
    tp_strbuf_puts(&b, "\",\"level\":\"");
    tp_strbuf_puts(&b, tp_log_level_name(level));
    if (request_id) {
        tp_strbuf_puts(&b, "\",\"request_id\":\"");
        tp_strbuf_json_str(&b, request_id, strlen(request_id));
    }
    tp_strbuf_puts(&b, "\",\"message\":\"");
    tp_strbuf_json_str(&b, msg, (size_t)n);
    if (tp_strbuf_puts(&b, "\"}\n") != 0)
        return;
    if (tp_logsink_write(TP_LOGSINK_ERROR, b.ptr, b.len) != TP_ENOTFOUND)
        return;
    pthread_mutex_lock(&log_lock);
    ssize_t w = write(log_fd, b.ptr, b.len);
    (void)w;
    pthread_mutex_unlock(&log_lock);
}

void tp_log(enum tp_log_level level, const char *fmt, ...)
{
    if (level < log_min)
        return;
    va_list ap;
    va_start(ap, fmt);
    log_line(level, NULL, fmt, ap);
    va_end(ap);
}

void tp_log_request(enum tp_log_level level, const char *request_id, const char *fmt, ...)
{
    if (level < log_min)
        return;
    va_list ap;
    va_start(ap, fmt);
    log_line(level, request_id && request_id[0] ? request_id : NULL, fmt, ap);
    va_end(ap);
}
