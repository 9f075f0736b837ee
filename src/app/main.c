/*
 * turnpike — the binary: command line, signals, reloads. Everything else is in libturnpike.
 */
#include "turnpike/audit.h"
#include "turnpike/config.h"
#include "turnpike/health.h"
#include "turnpike/log.h"
#include "turnpike/metrics.h"
#include "turnpike/logsink.h"
#include "turnpike/trace.h"
#include "turnpike/server.h"
#include "turnpike/status.h"
#include "turnpike/snapshot.h"

#include <event2/event.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

struct app {
    const char *config_path;
    struct tp_server *srv;
    struct tp_snapshot *snap; /* the main thread's reference to the live snapshot */
    struct event_base *base;
    struct event *dns_timer;
    struct tp_health_checker *checker; /* active health checks, on this (main) thread */
    struct tp_status_server *status;   /* status_listen, on this thread */
    char *text;               /* the config file as last loaded, for DNS-driven rebuilds */
    size_t text_len;
    int workers;
};

/* Read a whole file. Returns 0 or -1 (message on errors). */
static int read_file(const char *path, FILE *errors, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(errors, "%s:1:1: cannot open: %s\n", path, strerror(errno));
        return -1;
    }
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            char *nb = realloc(buf, cap = cap ? cap * 2 : 65536);
            if (!nb) {
                free(buf);
                fclose(f);
                return -1;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        if (r == 0)
            break;
        n += r;
    }
    if (ferror(f)) { /* a directory, an I/O error */
        fprintf(errors, "%s:1:1: cannot read: %s\n", path, strerror(errno));
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    *out = buf;
    *len = n;
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: turnpike [-c FILE] [-t] [--version] [--help]\n"
            "\n"
            "  -c, --config FILE  declarative config (YAML or JSON); default "
            "examples/turnpike.yaml\n"
            "  -t, --test         validate the config, print FILE:LINE:COLUMN errors, exit\n"
            "  -v, --version      print the version\n"
            "  -h, --help         this text\n"
            "\n"
            "signals: SIGTERM/SIGINT graceful stop, SIGHUP reload config, SIGUSR1 reopen logs\n"
            "config reference: README.md\n");
}

/* Load, validate and compile a config from text. Errors go to `errors`. */
static int build_text(const char *path, const char *text, size_t len, int workers, FILE *errors,
                      struct tp_snapshot **out)
{
    struct tp_config *cfg = NULL;
    int rc = tp_config_load_string(path, text, len, errors, &cfg);
    if (rc != 0)
        return rc;
    return tp_snapshot_build(cfg, workers > 0 ? workers : cfg->workers, errors, out);
}

/* Read the file and build; on success app->text holds the text the snapshot came from. */
static int build(struct app *app, FILE *errors, struct tp_snapshot **out)
{
    char *text = NULL;
    size_t len = 0;
    if (read_file(app->config_path, errors, &text, &len) != 0)
        return -1;
    int rc = build_text(app->config_path, text, len, app->workers, errors, out);
    if (rc != 0) {
        free(text);
        return rc;
    }
    free(app->text);
    app->text = text;
    app->text_len = len;
    return 0;
}

static void arm_dns_timer(struct app *app)
{
    uint32_t ms = app->snap->config->dns_refresh_ms;
    if (!app->dns_timer)
        return;
    evtimer_del(app->dns_timer);
    if (ms) {
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        evtimer_add(app->dns_timer, &tv);
    }
}

static void install(struct app *app, struct tp_snapshot *snap)
{
    tp_server_publish(app->srv, snap);
    tp_snapshot_unref(app->snap);
    app->snap = snap;
    arm_dns_timer(app);
    if (app->checker)
        tp_health_checker_update(app->checker, snap);
}

/* Target names are re-resolved on the main thread (workers never wait for DNS); when an
 * address moved, the same config text is compiled again and swapped in like a reload. */
static void on_dns_timer(evutil_socket_t fd, short what, void *arg)
{
    struct app *app = arg;
    struct tp_snapshot *snap = NULL;
    if (tp_snapshot_dns_changed(app->snap) &&
        build_text(app->config_path, app->text, app->text_len, app->workers, stderr, &snap) == 0) {
        tp_log(TP_LOG_NOTICE, "target addresses changed: configuration rebuilt");
        install(app, snap);
        struct tp_audit_event ev = {
            .event = "config_rebuild", .who = "dns_refresh", .sender_pid = -1, .sender_uid = -1,
            .config_path = app->config_path, .old_text = app->text, .old_len = app->text_len,
            .new_text = app->text, .new_len = app->text_len, .generation = snap->generation,
            .detail = "target addresses changed"};
        tp_audit_config(&ev);
        return;
    }
    arm_dns_timer(app);
}

static bool same_listeners(const struct tp_config *a, const struct tp_config *b)
{
    if (a->num_listen != b->num_listen)
        return false;
    for (size_t i = 0; i < a->num_listen; i++)
        if (a->listen[i].port != b->listen[i].port || strcmp(a->listen[i].host, b->listen[i].host))
            return false;
    return true;
}

/* SIGHUP from pid (-1: unknown) of user uid: reload, and say so in the audit log. */
static void reload(struct app *app, long pid, long uid)
{
    char *text = NULL;
    size_t len = 0;
    FILE *errs = open_memstream(&text, &len);
    struct tp_snapshot *snap = NULL;
    /* build() replaces app->text on success: keep the old text for the audit diff */
    char *prev = app->text;
    size_t prev_len = app->text_len;
    app->text = NULL;
    int rc = build(app, errs ? errs : stderr, &snap);
    if (errs)
        fclose(errs);
    struct tp_audit_event ev = {.event = "config_reload", .who = "signal SIGHUP",
                                .sender_pid = pid, .sender_uid = uid,
                                .config_path = app->config_path, .old_text = prev,
                                .old_len = prev_len};
    if (rc != 0) {
        app->text = prev;
        app->text_len = prev_len;
        ev.errors = text ? text : "";
        tp_audit_config(&ev);
        /* report each error line; the old snapshot keeps serving */
        for (char *line = text, *nl; line && *line; line = nl + 1) {
            nl = strchr(line, '\n');
            if (nl)
                *nl = '\0';
            tp_log(TP_LOG_ERROR, "reload failed: %s", line);
            if (!nl)
                break;
        }
        tp_log(TP_LOG_ERROR, "reload of %s failed; keeping the running configuration",
               app->config_path);
        free(text);
        return;
    }
    free(text);
    if (!same_listeners(snap->config, app->snap->config))
        tp_log(TP_LOG_WARN, "listen changed in %s: takes effect at the next restart",
               app->config_path);
    if (snap->config->workers != app->workers)
        tp_log(TP_LOG_WARN, "workers changed in %s: takes effect at the next restart",
               app->config_path);
    tp_log_open(snap->config->error_log, snap->config->log_level);
    tp_logsink_configure(snap->config);
    if (tp_tracer_configure(snap->config, app->workers) != 0)
        tp_log(TP_LOG_ERROR, "tracing could not start: spans are not exported");
    install(app, snap);
    tp_log(TP_LOG_NOTICE, "configuration reloaded (generation %llu)",
           (unsigned long long)snap->generation);
    ev.new_text = app->text;
    ev.new_len = app->text_len;
    ev.generation = snap->generation;
    tp_audit_config(&ev);
    free(prev);
}

/* Fallback when signalfd(2) is not available: the sender is unknown. */
static void on_reload(evutil_socket_t sig, short what, void *arg)
{
    reload(arg, -1, -1);
}

/* SIGHUP through a signalfd: its siginfo names the sending process (audit log "who"). */
static void on_reload_fd(evutil_socket_t fd, short what, void *arg)
{
    struct signalfd_siginfo si;
    long pid = -1, uid = -1;
    bool got = false;
    while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        got = true; /* signals sent before we read coalesce: one reload, the last sender */
        pid = (long)si.ssi_pid;
        uid = (long)si.ssi_uid;
    }
    if (got)
        reload(arg, pid, uid);
}

static void on_stop(evutil_socket_t sig, short what, void *arg)
{
    struct app *app = arg;
    tp_log(TP_LOG_NOTICE, "signal %d: graceful stop", (int)sig);
    event_base_loopbreak(app->base);
}

static void on_reopen(evutil_socket_t sig, short what, void *arg)
{
    struct app *app = arg;
    tp_log_open(app->snap->config->error_log, app->snap->config->log_level);
    tp_logsink_reopen();
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"test", no_argument, NULL, 't'},
        {"version", no_argument, NULL, 'v'},      {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    struct app app = {.config_path = "examples/turnpike.yaml"};
    int test_only = 0, ch;
    while ((ch = getopt_long(argc, argv, "c:tvh", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            app.config_path = optarg;
            break;
        case 't':
            test_only = 1;
            break;
        case 'v':
            printf("turnpike %s\n", TP_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 2;
    }
    if (build(&app, stderr, &app.snap) != 0) {
        if (test_only)
            fprintf(stderr, "%s: configuration is invalid\n", app.config_path);
        return 1;
    }
    if (test_only) {
        printf("%s: configuration ok\n", app.config_path);
        tp_snapshot_unref(app.snap);
        free(app.text);
        return 0;
    }
    app.workers = app.snap->nworkers;
    if (tp_log_open(app.snap->config->error_log, app.snap->config->log_level) != 0) {
        fprintf(stderr, "cannot open error log %s\n", app.snap->config->error_log);
        tp_snapshot_unref(app.snap);
        free(app.text);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    /* workers (and the log and trace threads) inherit a mask that blocks the control signals:
     * only the main thread gets them */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    int rc = 1;
    if (tp_logsink_start(app.snap->config) != 0) {
        tp_snapshot_unref(app.snap);
        free(app.text);
        return 1;
    }
    if (tp_tracer_configure(app.snap->config, app.workers) != 0)
        tp_log(TP_LOG_ERROR, "tracing could not start: spans are not exported");
    if (tp_server_start(app.snap, &app.srv) != 0) {
        fprintf(stderr, "turnpike: cannot start (see the error log)\n");
        goto out_logs;
    }
    app.base = event_base_new();
    /* SIGHUP through a signalfd (it stays blocked): the audit log names its sender */
    sigset_t hup;
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    int hup_fd = signalfd(-1, &hup, SFD_NONBLOCK | SFD_CLOEXEC);
    struct event *ev[4] = {
        evsignal_new(app.base, SIGTERM, on_stop, &app),
        evsignal_new(app.base, SIGINT, on_stop, &app),
        hup_fd >= 0 ? event_new(app.base, hup_fd, EV_READ | EV_PERSIST, on_reload_fd, &app)
                    : evsignal_new(app.base, SIGHUP, on_reload, &app),
        evsignal_new(app.base, SIGUSR1, on_reopen, &app),
    };
    for (int i = 0; i < 4; i++)
        event_add(ev[i], NULL);
    app.dns_timer = evtimer_new(app.base, on_dns_timer, &app);
    arm_dns_timer(&app);
    app.checker = tp_health_checker_new(app.base);
    if (app.checker)
        tp_health_checker_update(app.checker, app.snap);
    if (app.snap->config->status_listen &&
        !(app.status = tp_status_start(app.base, app.snap->config->status_listen, &app.snap))) {
        fprintf(stderr, "turnpike: cannot open status_listen (see the error log)\n");
        tp_server_stop(app.srv, 0);
        goto out_free;
    }
    tp_status_set_metrics(app.status, tp_server_metrics(app.srv));
    if (hup_fd >= 0)
        sigaddset(&old, SIGHUP);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    tp_log(TP_LOG_NOTICE, "turnpike %s started: %d worker(s), config %s", TP_VERSION,
           app.workers, app.config_path);
    struct tp_audit_event aev = {.event = "config_load", .who = "startup", .sender_pid = -1,
                                 .sender_uid = -1, .config_path = app.config_path,
                                 .new_text = app.text, .new_len = app.text_len,
                                 .generation = app.snap->generation};
    tp_audit_config(&aev);
    event_base_dispatch(app.base);
    tp_server_stop(app.srv, app.snap->config->limits.grace_period_ms);
    rc = 0;
out_free:
    tp_server_free(app.srv);
    for (int i = 0; i < 4; i++)
        event_free(ev[i]);
    if (hup_fd >= 0)
        close(hup_fd);
    event_free(app.dns_timer);
    tp_health_checker_free(app.checker);
    tp_status_stop(app.status);
    event_base_free(app.base);
out_logs:
    tp_tracer_stop(); /* after the workers: nothing is queued any more */
    tp_logsink_stop();
    free(app.text);
    tp_snapshot_unref(app.snap);
    if (rc == 0)
        tp_log(TP_LOG_NOTICE, "stopped");
    return rc;
}
