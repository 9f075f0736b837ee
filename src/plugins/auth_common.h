/*
 * turnpike — helpers shared by the authentication plugins (key-auth, basic-auth, jwt).
 *
 *  - `anonymous`: the consumer id or username a plugin falls back to, resolved once at compile
 *    with tp_consumer_find (an unknown one is a config error, as in Kong).
 *  - `realm` and the WWW-Authenticate challenge built from it once at compile (RFC 9110
 *    §11.6.1), so that a denial costs no formatting.
 *  - the failure path: 401 with the challenge and a security-log line, or, with `anonymous`,
 *    the anonymous consumer (the chain runner then sets the X-Consumer-* headers).
 *
 * What differs between the plugins (the scheme, the default realm, when a credential counts
 * as presented) stays in each plugin.
 */
#ifndef TURNPIKE_PLUGINS_AUTH_COMMON_H
#define TURNPIKE_PLUGINS_AUTH_COMMON_H

#include "turnpike/consumer.h"
#include "turnpike/plugin.h"

#include <stdbool.h>
#include <stddef.h>

#define TP__AUTH_MAX_REALM 256 /* bytes of `realm` */

/**
 * Resolve the `anonymous` setting of an auth plugin at compile (b->snap is the snapshot being
 * built).
 *
 * @param anonymous  the configured consumer id or username, or NULL (not set)
 * @param out        receives the consumer (borrowed from the snapshot), or NULL when not set
 * @return 0; -1 after reporting "no consumer with id or username" through b.
 */
int tp__auth_anonymous(struct tp_plugin_build *b, const char *anonymous,
                       const struct tp_consumer **out);

/**
 * Check a configured `realm` at validate: it goes inside a quoted-string (RFC 9110 §11.2,
 * §5.6.4), so at most TP__AUTH_MAX_REALM bytes, no '"', '\' nor control byte.
 *
 * @param realm  the configured realm, or NULL (not set: nothing to check)
 * @return 0; -1 after reporting the error at the `realm` key of the plugin's config.
 */
int tp__auth_check_realm(struct tp_plugin_build *b, const char *realm);

/**
 * Build a WWW-Authenticate challenge (RFC 9110 §11.6.1): `<scheme> realm="<realm>"<params>`.
 *
 * @param scheme  "Basic", "Bearer", "Key"...
 * @param realm   a realm that passed tp__auth_check_realm (no quoting is done)
 * @param params  appended as is, e.g. ", charset=\"UTF-8\"" (RFC 7617 §2.1); "" for none
 * @param len     receives the length in bytes; may be NULL
 * @return a new NUL-terminated string (the caller frees it), or NULL when out of memory.
 */
char *tp__auth_challenge(const char *scheme, const char *realm, const char *params, size_t *len);

/**
 * A failed authentication (access hook). With an anonymous consumer, the request goes on as
 * that consumer (tp_plugin_set_anonymous) and is logged only when a credential was presented
 * and rejected: a request without one is ordinary traffic. Without it, the request is
 * answered 401 with `message` and the challenge, and always logged; the runner drops the log
 * line when a later auth plugin of the route succeeds.
 *
 * @param anonymous  the plugin's resolved anonymous consumer, or NULL
 * @param challenge  the WWW-Authenticate value (borrowed)
 * @param message    the answer's message (Kong's wording)
 * @param reason     fixed security-log phrase, never the credential
 * @param presented  a credential was presented (and rejected)
 * @return TP_PLUGIN_CONTINUE (anonymous), TP_PLUGIN_RESPOND, or TP_PLUGIN_ERROR (out of memory).
 */
enum tp_plugin_status tp__auth_fail(struct tp_plugin_ctx *ctx, const struct tp_consumer *anonymous,
                                    struct tp_slice challenge, const char *message,
                                    const char *reason, bool presented);

#endif
