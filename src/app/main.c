/*
 * turnpike — the binary: command line, signals, reloads. Everything else is in libturnpike.
 */
#include "turnpike/config.h"
#include "turnpike/log.h"
#include "turnpike/server.h"
#include "turnpike/snapshot.h"

#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct app {
    const char *config_path;
    struct tp_server *srv;
    struct tp_snapshot *snap; /* the main thread's reference to the live snapshot */
    struct event_base *base;
    int workers;
};

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

/* Load, validate and compile a config. Errors go to `errors` (and the error log on reload). */
static int build(const char *path, int workers, FILE *errors, struct tp_snapshot **out)
{
    struct tp_config *cfg = NULL;
    int rc = tp_config_load(path, errors, &cfg);
    if (rc != 0)
        return rc;
    return tp_snapshot_build(cfg, workers > 0 ? workers : cfg->workers, errors, out);
}

static void on_reload(evutil_socket_t sig, short what, void *arg)
{
    struct app *app = arg;
    char *text = NULL;
    size_t len = 0;
    FILE *errs = open_memstream(&text, &len);
    struct tp_snapshot *snap = NULL;
    int rc = build(app->config_path, app->workers, errs ? errs : stderr, &snap);
    if (errs)
        fclose(errs);
    if (rc != 0) {
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
    if (snap->config->workers != app->workers)
        tp_log(TP_LOG_WARN, "workers changed in %s: takes effect at the next restart",
               app->config_path);
    tp_log_open(snap->config->error_log, snap->config->log_level);
    tp_server_publish(app->srv, snap);
    tp_snapshot_unref(app->snap);
    app->snap = snap;
    tp_log(TP_LOG_NOTICE, "configuration reloaded (generation %llu)",
           (unsigned long long)snap->generation);
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
    tp_server_reopen_logs(app->srv);
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
    if (build(app.config_path, 0, stderr, &app.snap) != 0) {
        if (test_only)
            fprintf(stderr, "%s: configuration is invalid\n", app.config_path);
        return 1;
    }
    if (test_only) {
        printf("%s: configuration ok\n", app.config_path);
        tp_snapshot_unref(app.snap);
        return 0;
    }
    app.workers = app.snap->nworkers;
    if (tp_log_open(app.snap->config->error_log, app.snap->config->log_level) != 0) {
        fprintf(stderr, "cannot open error log %s\n", app.snap->config->error_log);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    /* workers inherit a mask that blocks the control signals: only the main thread gets them */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    if (tp_server_start(app.snap, &app.srv) != 0) {
        fprintf(stderr, "turnpike: cannot start (see the error log)\n");
        tp_snapshot_unref(app.snap);
        return 1;
    }
    app.base = event_base_new();
    struct event *ev[4] = {
        evsignal_new(app.base, SIGTERM, on_stop, &app),
        evsignal_new(app.base, SIGINT, on_stop, &app),
        evsignal_new(app.base, SIGHUP, on_reload, &app),
        evsignal_new(app.base, SIGUSR1, on_reopen, &app),
    };
    for (int i = 0; i < 4; i++)
        event_add(ev[i], NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    tp_log(TP_LOG_NOTICE, "turnpike %s started: %d worker(s), config %s", TP_VERSION,
           app.workers, app.config_path);
    event_base_dispatch(app.base);
    tp_server_stop(app.srv, app.snap->config->limits.grace_period_ms);
    tp_server_free(app.srv);
    for (int i = 0; i < 4; i++)
        event_free(ev[i]);
    event_base_free(app.base);
    tp_snapshot_unref(app.snap);
    tp_log(TP_LOG_NOTICE, "stopped");
    return 0;
}
