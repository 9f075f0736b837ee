/*
 * The four logs and their writer thread (include/turnpike/logsink.h).
 *
 * Each log has a bounded byte queue: producers append a whole line under the log's mutex (held
 * for the memcpy only) and the writer thread swaps the queue for its spare buffer, again under
 * the mutex, then writes the batch with the mutex released. A producer never waits for I/O: a
 * line that does not fit is dropped and counted. The producer that puts the first line into an
 * empty queue wakes the writer, which waits TP_LOG_FLUSH_MS for the batch to grow (less when a
 * queue passes half full) — one wake-up per batch, not per line.
 *
 * Destinations belong to the writer thread while it runs. A reload (tp_logsink_configure)
 * opens the new destinations on the main thread and hands them over; the writer writes what is
 * queued to the old destination first, then switches. SIGUSR1 (tp_logsink_reopen) is handled
 * the same way: drain to the old file, then reopen the path, so a rotation loses no line.
 *
 * Syslog: RFC 5424 messages ("<PRI>1 TIMESTAMP HOST APP-NAME PROCID MSGID - MSG", MSG = the
 * JSON line) sent with our own small sender, one datagram per line, over a unix datagram socket
 * (/dev/log, the local syslog daemon) or UDP (RFC 5426). libc's syslog(3) is not used: it
 * formats RFC 3164 headers and has one process-wide identity.
 */
#include "turnpike/logsink.h"
#include "turnpike/log.h"
#include "turnpike/trace.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum dest_kind { DEST_OFF = 0, DEST_FD, DEST_FILE, DEST_SYSLOG };

struct dest {
    enum dest_kind kind;
    int fd;                       /* -1 when none */
    char *spec;                   /* the configured string, to compare on reload */
    char *path;                   /* DEST_FILE */
    struct sockaddr_storage addr; /* DEST_SYSLOG server */
    socklen_t addrlen;
    int facility; /* syslog facility number (0..23) */
    char tag[49]; /* APP-NAME, RFC 5424 §6.2.5: at most 48 printable chars */
};

struct sink {
    pthread_mutex_t lock;
    char *buf; /* the queue producers fill */
    size_t len, lines;
    char *spare; /* the writer's buffer, swapped with buf */
    size_t cap;
    atomic_bool on;
    atomic_uint_fast64_t dropped, written;
    struct dest dest; /* the writer's (the main thread's before start and after stop) */
    struct dest next; /* a destination handed over by a reload (under g.lock) */
    bool has_next;
};

static struct {
    pthread_mutex_t lock; /* protects the flags below and the sinks' `next` */
    pthread_cond_t cond;
    bool kick, urgent, reopen, stop;
    atomic_bool running;
    atomic_bool stopping; /* tp_logsink_stop was called: writes must not wait */
    bool started;
    pthread_t thread;
    struct sink sinks[TP_LOGSINK_COUNT];
    char hostname[256];
    int pid;
} g = {.lock = PTHREAD_MUTEX_INITIALIZER};

static const char *const sink_names[TP_LOGSINK_COUNT] = {"access", "error", "security", "audit"};

const char *tp_logsink_name(int log)
{
    return log >= 0 && log < TP_LOGSINK_COUNT ? sink_names[log] : "?";
}

/* ------------------------------------------------------------------------------------------ */
/* destinations                                                                               */

static const struct {
    const char *name;
    int code;
} facilities[] = {
    {"kern", 0},      {"user", 1},    {"mail", 2},    {"daemon", 3},  {"auth", 4},
    {"syslog", 5},    {"lpr", 6},     {"news", 7},    {"uucp", 8},    {"cron", 9},
    {"authpriv", 10}, {"ftp", 11},    {"local0", 16}, {"local1", 17}, {"local2", 18},
    {"local3", 19},   {"local4", 20}, {"local5", 21}, {"local6", 22}, {"local7", 23},
};

/* "HOST[:PORT]", "[V6]:PORT" or "unix:/path" into d->addr. Resolves names (main thread). */
static int parse_server(const char *v, size_t len, struct dest *d, bool resolve, char *err,
                        size_t errlen)
{
    char host[256];
    if (len > 5 && memcmp(v, "unix:", 5) == 0) {
        struct sockaddr_un *sun = (struct sockaddr_un *)&d->addr;
        if (len - 5 >= sizeof(sun->sun_path) || v[5] != '/') {
            snprintf(err, errlen, "syslog server unix: needs an absolute path (at most %zu bytes)",
                     sizeof(sun->sun_path) - 1);
            return TP_EINVAL;
        }
        memset(sun, 0, sizeof(*sun));
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, v + 5, len - 5);
        d->addrlen = (socklen_t)sizeof(*sun);
        return 0;
    }
    const char *port = "514";
    char portbuf[8];
    const char *hend = v + len;
    if (len && v[0] == '[') {
        const char *rb = memchr(v, ']', len);
        if (!rb || rb == v + 1) {
            snprintf(err, errlen, "invalid syslog server address");
            return TP_EINVAL;
        }
        if (rb + 1 < v + len && rb[1] != ':') {
            snprintf(err, errlen, "invalid syslog server address");
            return TP_EINVAL;
        }
        if (rb + 1 < v + len) {
            size_t pl = (size_t)(v + len - rb - 2);
            if (pl == 0 || pl >= sizeof(portbuf)) {
                snprintf(err, errlen, "invalid syslog server port");
                return TP_EINVAL;
            }
            memcpy(portbuf, rb + 2, pl);
            portbuf[pl] = '\0';
            port = portbuf;
        }
        v++;
        hend = rb;
    } else {
        const char *colon = memchr(v, ':', len);
        if (colon) {
            size_t pl = (size_t)(v + len - colon - 1);
            if (pl == 0 || pl >= sizeof(portbuf)) {
                snprintf(err, errlen, "invalid syslog server port");
                return TP_EINVAL;
            }
            memcpy(portbuf, colon + 1, pl);
            portbuf[pl] = '\0';
            port = portbuf;
            hend = colon;
        }
    }
    size_t hl = (size_t)(hend - v);
    if (hl == 0 || hl >= sizeof(host)) {
        snprintf(err, errlen, "invalid syslog server address");
        return TP_EINVAL;
    }
    memcpy(host, v, hl);
    host[hl] = '\0';
    char *e = NULL;
    long pn = strtol(port, &e, 10);
    if (*e || pn < 1 || pn > 65535) {
        snprintf(err, errlen, "invalid syslog server port");
        return TP_EINVAL;
    }
    if (!resolve)
        return 0;
    struct addrinfo hints = {.ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, errlen, "syslog server %s: %s", host, gai_strerror(rc));
        return TP_EIO;
    }
    memcpy(&d->addr, res->ai_addr, res->ai_addrlen);
    d->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* Parse "syslog" / "syslog:server=...,facility=...,tag=..." into d (no socket yet). */
static int parse_syslog(const char *spec, struct dest *d, bool resolve, char *err, size_t errlen)
{
    static const char devlog[] = "unix:/dev/log";
    const char *server = devlog;
    size_t server_len = sizeof(devlog) - 1;
    d->kind = DEST_SYSLOG;
    d->facility = 23; /* local7, as NGINX's syslog: destinations */
    memcpy(d->tag, "turnpike", sizeof("turnpike"));
    const char *p = spec + 6;
    if (*p == ':')
        p++;
    else if (*p != '\0') {
        snprintf(err, errlen, "expected \"syslog\" or \"syslog:server=...\"");
        return TP_EINVAL;
    }
    while (*p) {
        const char *end = p + strcspn(p, ",");
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (!eq) {
            snprintf(err, errlen, "syslog option without '=': \"%.*s\"", (int)(end - p), p);
            return TP_EINVAL;
        }
        size_t kl = (size_t)(eq - p), vl = (size_t)(end - eq - 1);
        const char *v = eq + 1;
        if (kl == 6 && memcmp(p, "server", 6) == 0) {
            server = v;
            server_len = vl;
        } else if (kl == 8 && memcmp(p, "facility", 8) == 0) {
            int code = -1;
            for (size_t i = 0; i < TP_ARRAY_LEN(facilities); i++)
                if (strlen(facilities[i].name) == vl && memcmp(facilities[i].name, v, vl) == 0)
                    code = facilities[i].code;
            if (code < 0) {
                snprintf(err, errlen, "unknown syslog facility \"%.*s\"", (int)TP_MIN(vl, 32), v);
                return TP_EINVAL;
            }
            d->facility = code;
        } else if (kl == 3 && memcmp(p, "tag", 3) == 0) {
            if (vl == 0 || vl >= sizeof(d->tag)) {
                snprintf(err, errlen, "syslog tag must be 1 to 48 characters");
                return TP_EINVAL;
            }
            for (size_t i = 0; i < vl; i++) {
                if (v[i] <= 32 || v[i] >= 127) { /* PRINTUSASCII, RFC 5424 §6 */
                    snprintf(err, errlen, "syslog tag must be printable ASCII without spaces");
                    return TP_EINVAL;
                }
            }
            memcpy(d->tag, v, vl);
            d->tag[vl] = '\0';
        } else {
            snprintf(err, errlen, "unknown syslog option \"%.*s\"", (int)TP_MIN(kl, 32), p);
            return TP_EINVAL;
        }
        p = *end ? end + 1 : end;
    }
    return parse_server(server, server_len, d, resolve, err, errlen);
}

static int parse_dest(const char *spec, bool allow_off, struct dest *d, bool resolve, char *err,
                      size_t errlen)
{
    memset(d, 0, sizeof(*d));
    d->fd = -1;
    if (!spec || strcmp(spec, "off") == 0) {
        if (!allow_off) {
            snprintf(err, errlen, "this log cannot be \"off\"");
            return TP_EINVAL;
        }
        d->kind = DEST_OFF;
        return 0;
    }
    if (strcmp(spec, "stdout") == 0 || strcmp(spec, "stderr") == 0) {
        d->kind = DEST_FD;
        d->fd = spec[3] == 'o' ? 1 : 2;
        return 0;
    }
    if (strncmp(spec, "syslog", 6) == 0 && (spec[6] == '\0' || spec[6] == ':'))
        return parse_syslog(spec, d, resolve, err, errlen);
    if (spec[0] == '\0') {
        snprintf(err, errlen, "empty destination");
        return TP_EINVAL;
    }
    d->kind = DEST_FILE;
    return 0;
}

int tp_logsink_dest_check(const char *spec, bool allow_off, char *err, size_t errlen)
{
    struct dest d;
    int rc = parse_dest(spec, allow_off, &d, false, err, errlen);
    return rc == 0 ? 0 : TP_EINVAL;
}

/* O_NONBLOCK for the open only: a FIFO without a reader would block open(2) (the main thread,
 * at start or on a reload) — it fails with ENXIO instead, reported like any unopenable path.
 * Writes stay blocking, on the log-writer thread. */
static int open_file(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NONBLOCK, 0644);
    if (fd >= 0) {
        int fl = fcntl(fd, F_GETFL);
        if (fl >= 0)
            fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    }
    return fd;
}

/* Parse spec and open it: d owns what it opened (dest_close). Reasons go to err. */
static int dest_open(const char *spec, bool allow_off, struct dest *d, char *err, size_t errlen)
{
    int rc = parse_dest(spec, allow_off, d, true, err, errlen);
    if (rc != 0)
        return rc;
    if (spec && !(d->spec = strdup(spec)))
        return TP_ENOMEM;
    if (d->kind == DEST_FILE) {
        d->path = d->spec;
        if ((d->fd = open_file(d->path)) < 0) {
            snprintf(err, errlen, "cannot open %s: %s", d->path, strerror(errno));
            return TP_EIO;
        }
    } else if (d->kind == DEST_SYSLOG) {
        d->fd = socket(d->addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        /* a stuck syslog daemon delays the writer thread at most this long per line */
        struct timeval tv = {0, 200 * 1000};
        if (d->fd >= 0)
            setsockopt(d->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (d->fd < 0 || connect(d->fd, (struct sockaddr *)&d->addr, d->addrlen) < 0) {
            snprintf(err, errlen, "cannot reach syslog server of %s: %s", spec, strerror(errno));
            return TP_EIO;
        }
    }
    return 0;
}

static void dest_close(struct dest *d)
{
    if ((d->kind == DEST_FILE || d->kind == DEST_SYSLOG) && d->fd >= 0)
        close(d->fd);
    free(d->spec);
    memset(d, 0, sizeof(*d));
    d->fd = -1;
}

static bool same_spec(const struct dest *d, const char *spec)
{
    const char *a = d->spec ? d->spec : "off", *b = spec ? spec : "off";
    return strcmp(a, b) == 0;
}

/* ------------------------------------------------------------------------------------------ */
/* writing (writer thread)                                                                    */

static size_t count_lines(const char *p, size_t n)
{
    size_t k = 0;
    for (const char *q = p, *end = p + n; (q = memchr(q, '\n', (size_t)(end - q))) != NULL; q++)
        k++;
    return k;
}

static void write_fd(struct sink *s, const char *p, size_t n, size_t lines)
{
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(s->dest.fd, p + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break; /* disk full, closed pipe: the lines not written are counted as dropped */
        off += (size_t)w;
    }
    size_t lost = off < n ? count_lines(p + off, n - off) : 0;
    atomic_fetch_add_explicit(&s->written, lines - lost, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->dropped, lost, memory_order_relaxed);
}

/* RFC 5424 §6.2.1 severity of a line: fixed per log, the error log's own level otherwise. */
static int severity_of(enum tp_logsink_id id, const char *line, size_t len)
{
    static const struct {
        const char *word;
        int sev;
    } levels[] = {{"\"level\":\"debug\"", 7},
                  {"\"level\":\"info\"", 6},
                  {"\"level\":\"notice\"", 5},
                  {"\"level\":\"warn\"", 4},
                  {"\"level\":\"error\"", 3}};
    if (id == TP_LOGSINK_ACCESS)
        return 6;
    if (id == TP_LOGSINK_SECURITY)
        return 4;
    if (id == TP_LOGSINK_AUDIT)
        return 5;
    /* tp_log writes "level" second, right after the fixed-width time */
    size_t scan = TP_MIN(len, 64);
    for (size_t i = 0; i < TP_ARRAY_LEN(levels); i++)
        if (memmem(line, scan, levels[i].word, strlen(levels[i].word)))
            return levels[i].sev;
    return 3;
}

static void write_syslog(struct sink *s, enum tp_logsink_id id, const char *p, size_t n)
{
    char head[512];
    char now[40];
    tp_log_time_rfc3339(now, sizeof(now));
    size_t ok = 0, lost = 0;
    const char *end = p + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        int sev = severity_of(id, p, len);
        /* HOSTNAME, APP-NAME, PROCID and MSGID are PRINTUSASCII (checked at start) */
        int hl = snprintf(head, sizeof(head), "<%d>1 %s %s %s %d %s - ", s->dest.facility * 8 + sev,
                          now, g.hostname, s->dest.tag, g.pid, sink_names[id]);
        struct iovec iov[2] = {{head, (size_t)hl}, {(void *)p, len}};
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = 2};
        /* at stop a stuck syslog server costs no time: what cannot go at once is dropped */
        int flags = MSG_NOSIGNAL |
                    (atomic_load_explicit(&g.stopping, memory_order_relaxed) ? MSG_DONTWAIT : 0);
        ssize_t w;
        do {
            w = sendmsg(s->dest.fd, &mh, flags);
        } while (w < 0 && errno == EINTR);
        if (w < 0)
            lost++;
        else
            ok++;
        p += len + (nl ? 1 : 0);
    }
    atomic_fetch_add_explicit(&s->written, ok, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->dropped, lost, memory_order_relaxed);
}

/* Swap the queue of sink id and write it. Returns the bytes written. */
static size_t drain(enum tp_logsink_id id)
{
    struct sink *s = &g.sinks[id];
    pthread_mutex_lock(&s->lock);
    char *b = s->buf;
    size_t n = s->len, lines = s->lines;
    s->buf = s->spare;
    s->len = s->lines = 0;
    s->spare = b;
    pthread_mutex_unlock(&s->lock);
    if (n == 0)
        return 0;
    if (s->dest.kind == DEST_SYSLOG)
        write_syslog(s, id, b, n);
    else if (s->dest.fd >= 0)
        write_fd(s, b, n, lines);
    else
        atomic_fetch_add_explicit(&s->dropped, lines, memory_order_relaxed);
    return n;
}

static void reopen_files(void)
{
    for (int i = 0; i < TP_LOGSINK_COUNT; i++) {
        struct dest *d = &g.sinks[i].dest;
        if (d->kind != DEST_FILE)
            continue;
        int fd = open_file(d->path);
        if (fd < 0) {
            tp_log(TP_LOG_ERROR, "reopen %s log %s: %s", sink_names[i], d->path, strerror(errno));
            continue;
        }
        if (d->fd >= 0)
            close(d->fd);
        d->fd = fd;
    }
}

static void timespec_add_ms(struct timespec *ts, unsigned ms)
{
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    ts->tv_sec += ms / 1000 + ts->tv_nsec / 1000000000L;
    ts->tv_nsec %= 1000000000L;
}

/* Take the destinations handed over by reloads (under g.lock); only_off: only for logs whose
 * current destination is off. */
static void switch_dests(bool only_off)
{
    for (int i = 0; i < TP_LOGSINK_COUNT; i++) {
        struct sink *s = &g.sinks[i];
        if (!s->has_next || (only_off && s->dest.kind != DEST_OFF))
            continue;
        dest_close(&s->dest);
        s->dest = s->next;
        s->has_next = false;
    }
}

static void *writer_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g.lock);
    for (;;) {
        while (!g.kick && !g.stop && !g.reopen)
            pthread_cond_wait(&g.cond, &g.lock);
        if (!g.stop && !g.urgent && !g.reopen) {
            /* let the batch grow: one write per TP_LOG_FLUSH_MS instead of one per line */
            struct timespec until;
            clock_gettime(CLOCK_MONOTONIC, &until);
            timespec_add_ms(&until, TP_LOG_FLUSH_MS);
            while (!g.urgent && !g.stop && !g.reopen &&
                   pthread_cond_timedwait(&g.cond, &g.lock, &until) == 0) {
            }
        }
        g.kick = g.urgent = false;
        bool reopen = g.reopen, stop = g.stop;
        g.reopen = false;
        /* a log that was off has nothing queued for its old destination: switch at once */
        switch_dests(true);
        pthread_mutex_unlock(&g.lock);
        for (int i = 0; i < TP_LOGSINK_COUNT; i++)
            drain((enum tp_logsink_id)i);
        pthread_mutex_lock(&g.lock);
        /* destinations from a reload: what was queued before went to the old one */
        switch_dests(false);
        pthread_mutex_unlock(&g.lock);
        if (reopen)
            reopen_files();
        if (stop) {
            size_t left = 0;
            for (int i = 0; i < TP_LOGSINK_COUNT; i++)
                left += drain((enum tp_logsink_id)i);
            if (left == 0)
                return NULL;
        }
        pthread_mutex_lock(&g.lock);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* producers                                                                                  */

static void wake(bool urgent)
{
    pthread_mutex_lock(&g.lock);
    g.kick = true;
    if (urgent)
        g.urgent = true;
    pthread_cond_signal(&g.cond);
    pthread_mutex_unlock(&g.lock);
}

bool tp_logsink_enabled(enum tp_logsink_id id)
{
    return (unsigned)id < TP_LOGSINK_COUNT &&
           atomic_load_explicit(&g.sinks[id].on, memory_order_relaxed) &&
           atomic_load_explicit(&g.running, memory_order_relaxed);
}

int tp_logsink_write(enum tp_logsink_id id, const char *line, size_t len)
{
    if (!tp_logsink_enabled(id))
        return TP_ENOTFOUND;
    struct sink *s = &g.sinks[id];
    pthread_mutex_lock(&s->lock);
    if (len > s->cap - s->len) {
        pthread_mutex_unlock(&s->lock);
        atomic_fetch_add_explicit(&s->dropped, 1, memory_order_relaxed);
        return TP_ETOOBIG;
    }
    memcpy(s->buf + s->len, line, len);
    size_t half = s->cap / 2;
    bool first = s->len == 0, urgent = s->len < half && s->len + len >= half;
    /* error and audit lines are rare and read by people watching: no batching delay */
    if (first && (id == TP_LOGSINK_ERROR || id == TP_LOGSINK_AUDIT))
        urgent = true;
    s->len += len;
    s->lines++;
    pthread_mutex_unlock(&s->lock);
    if (first || urgent)
        wake(urgent);
    return 0;
}

uint64_t tp_log_dropped(int log)
{
    if (log < 0 || log >= TP_LOGSINK_COUNT)
        return 0;
    return atomic_load_explicit(&g.sinks[log].dropped, memory_order_relaxed);
}

uint64_t tp_log_written(int log)
{
    if (log < 0 || log >= TP_LOGSINK_COUNT)
        return 0;
    return atomic_load_explicit(&g.sinks[log].written, memory_order_relaxed);
}

/* ------------------------------------------------------------------------------------------ */
/* life cycle (main thread)                                                                   */

static const char *spec_of(const struct tp_config *cfg, int i)
{
    switch (i) {
    case TP_LOGSINK_ACCESS:
        return cfg->access_log;
    case TP_LOGSINK_ERROR:
        return cfg->error_log ? cfg->error_log : "stderr";
    case TP_LOGSINK_SECURITY:
        return cfg->security_log;
    default:
        return cfg->audit_log;
    }
}

/* RFC 5424 HOSTNAME: printable ASCII without spaces, "-" when unknown. */
static void init_identity(void)
{
    if (gethostname(g.hostname, sizeof(g.hostname) - 1) != 0 || !g.hostname[0])
        memcpy(g.hostname, "-", 2);
    for (char *p = g.hostname; *p; p++)
        if (*p <= 32 || *p >= 127)
            *p = '_';
    g.pid = (int)getpid();
}

static void free_sinks(void)
{
    for (int i = 0; i < TP_LOGSINK_COUNT; i++) {
        struct sink *s = &g.sinks[i];
        dest_close(&s->dest);
        if (s->has_next)
            dest_close(&s->next);
        s->has_next = false;
        free(s->buf);
        free(s->spare);
        s->buf = s->spare = NULL;
        s->len = s->lines = 0;
        atomic_store(&s->on, false);
    }
}

int tp_logsink_start(const struct tp_config *cfg)
{
    int rc = 0;
    char err[300];
    if (g.started)
        return 0;
    init_identity();
    size_t cap = cfg->log_buffer_bytes ? cfg->log_buffer_bytes : TP_LOG_BUFFER_DEFAULT;
    for (int i = 0; i < TP_LOGSINK_COUNT && rc == 0; i++) {
        struct sink *s = &g.sinks[i];
        pthread_mutex_init(&s->lock, NULL);
        s->cap = cap;
        s->buf = malloc(cap);
        s->spare = malloc(cap);
        if (!s->buf || !s->spare) {
            rc = TP_ENOMEM;
            break;
        }
        rc = dest_open(spec_of(cfg, i), i != TP_LOGSINK_ERROR, &s->dest, err, sizeof(err));
        if (rc != 0)
            fprintf(stderr, "turnpike: %s log: %s\n", sink_names[i], err);
        atomic_store(&s->on, s->dest.kind != DEST_OFF);
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g.cond, &ca);
    pthread_condattr_destroy(&ca);
    if (rc == 0) {
        /* the writer takes no signal: they belong to the main thread */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        atomic_store(&g.running, true);
        if (pthread_create(&g.thread, NULL, writer_main, NULL) != 0) {
            atomic_store(&g.running, false);
            rc = TP_ENOMEM;
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    if (rc != 0) {
        free_sinks();
        pthread_cond_destroy(&g.cond);
        return rc;
    }
    g.started = true;
    return 0;
}

int tp_logsink_configure(const struct tp_config *cfg)
{
    int failed = 0;
    char err[300];
    if (!g.started)
        return 0;
    for (int i = 0; i < TP_LOGSINK_COUNT; i++) {
        struct sink *s = &g.sinks[i];
        const char *spec = spec_of(cfg, i);
        pthread_mutex_lock(&g.lock);
        bool same = s->has_next ? same_spec(&s->next, spec) : same_spec(&s->dest, spec);
        pthread_mutex_unlock(&g.lock);
        if (same)
            continue;
        struct dest d;
        if (dest_open(spec, i != TP_LOGSINK_ERROR, &d, err, sizeof(err)) != 0) {
            dest_close(&d);
            tp_log(TP_LOG_ERROR, "%s log: %s; keeping the previous destination", sink_names[i],
                   err);
            failed++;
            continue;
        }
        pthread_mutex_lock(&g.lock);
        if (s->has_next)
            dest_close(&s->next);
        s->next = d;
        s->has_next = true;
        g.kick = true;
        pthread_cond_signal(&g.cond);
        pthread_mutex_unlock(&g.lock);
        /* a log turned on accepts lines at once (they wait for the switch in the queue); one
         * turned off stops now, its queued lines still reach the old destination */
        atomic_store(&s->on, d.kind != DEST_OFF);
    }
    return -failed;
}

void tp_logsink_reopen(void)
{
    if (!g.started)
        return;
    pthread_mutex_lock(&g.lock);
    g.reopen = true;
    pthread_cond_signal(&g.cond);
    pthread_mutex_unlock(&g.lock);
}

void tp_logsink_stop(void)
{
    if (!g.started)
        return;
    atomic_store(&g.stopping, true);
    pthread_mutex_lock(&g.lock);
    g.stop = true;
    pthread_cond_signal(&g.cond);
    pthread_mutex_unlock(&g.lock);
    pthread_join(g.thread, NULL);
    atomic_store(&g.running, false);
    /* a line queued between the writer's last look and now still has a destination */
    for (int i = 0; i < TP_LOGSINK_COUNT; i++)
        drain((enum tp_logsink_id)i);
    free_sinks();
    pthread_cond_destroy(&g.cond);
    g.started = false;
    g.stop = g.kick = g.urgent = g.reopen = false;
    atomic_store(&g.stopping, false);
}

int tp_observe_status_json(struct tp_strbuf *b)
{
    tp_strbuf_puts(b, ",\"logs\":{");
    for (int i = 0; i < TP_LOGSINK_COUNT; i++) {
        tp_strbuf_puts(b, i ? ",\"" : "\"");
        tp_strbuf_puts(b, sink_names[i]);
        tp_strbuf_puts(b, "\":{\"written\":");
        tp_strbuf_putu(b, tp_log_written(i));
        tp_strbuf_puts(b, ",\"dropped\":");
        tp_strbuf_putu(b, tp_log_dropped(i));
        tp_strbuf_append(b, "}", 1);
    }
    tp_strbuf_puts(b, "},\"tracing\":{\"exported\":");
    tp_strbuf_putu(b, tp_trace_exported());
    tp_strbuf_puts(b, ",\"dropped\":");
    tp_strbuf_putu(b, tp_trace_dropped());
    tp_strbuf_puts(b, ",\"failed\":");
    tp_strbuf_putu(b, tp_trace_failed());
    return tp_strbuf_puts(b, "}");
}
