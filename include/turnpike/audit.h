/*
 * turnpike — the audit log (issue 7): one JSON line per configuration change, saying who
 * changed it, when, and what changed. Used by the start-up load, SIGHUP reloads (successful or
 * not) and DNS-driven rebuilds now, and by the admin API later.
 *
 * "What changed" compares the old and new configuration documents entity by entity: services,
 * routes, upstreams, consumers and plugins are matched by name (plugins by name and scope),
 * each reported as added, removed or changed (any difference in its own settings, key order
 * ignored; nested routes and plugins are entities of their own). Other top-level keys are
 * "settings". Values are never written (secrets stay out of the log), only names.
 */
#ifndef TURNPIKE_AUDIT_H
#define TURNPIKE_AUDIT_H

#include <stddef.h>
#include <stdint.h>

/** One configuration change. Strings may be NULL where noted. */
struct tp_audit_event {
    const char *event;       /* "config_load", "config_reload", "config_rebuild" */
    const char *who;         /* "startup", "signal SIGHUP", "dns_refresh", ... */
    long sender_pid;         /* the process that sent the signal, -1 when unknown */
    long sender_uid;         /* its user id, -1 when unknown */
    const char *config_path; /* the file, or NULL */
    const char *old_text;    /* the configuration before (NULL at start-up) */
    size_t old_len;
    const char *new_text; /* the configuration after (NULL when the change failed) */
    size_t new_len;
    uint64_t generation; /* of the new snapshot (0 when failed) */
    const char *errors;  /* a failed change: its error lines ('\n'-separated), else NULL */
    const char *detail;  /* a short free-form reason, or NULL */
};

/**
 * Write the audit line of ev (nothing when audit_log is off). Main thread; the line goes
 * through the log writer (include/turnpike/logsink.h), so it never blocks on I/O.
 * @return 0, TP_ENOMEM, or TP_ENOTFOUND (audit log off).
 */
int tp_audit_config(const struct tp_audit_event *ev);

/**
 * The diff part on its own: append to b (a struct tp_strbuf) the JSON object
 * {"services":{"added":[...],"removed":[...],"changed":[...]},...} of the kinds that changed
 * between two configuration texts (YAML or JSON; an unparsable text counts as empty).
 * Exposed for tests. 0, TP_ENOMEM or TP_ETOOBIG.
 */
struct tp_strbuf;
int tp_audit_diff_json(const char *old_text, size_t old_len, const char *new_text, size_t new_len,
                       struct tp_strbuf *b);

#endif
