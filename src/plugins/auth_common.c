/*
 * Helpers shared by the authentication plugins: `anonymous`, `realm`, the WWW-Authenticate
 * challenge and the failure path (auth_common.h).
 */
#include "plugins/auth_common.h"

#include "config/schema.h"

#include <stdlib.h>
#include <string.h>

int tp__auth_anonymous(struct tp_plugin_build *b, const char *anonymous,
                       const struct tp_consumer **out)
{
    *out = NULL;
    if (!anonymous)
        return 0;
    *out = tp_consumer_find(b->snap, tp_slice_cstr(anonymous));
    if (!*out)
        return tp_plugin_build_error(b, NULL, "\"anonymous\": no consumer with id or username "
                                     "\"%s\"", anonymous);
    return 0;
}

int tp__auth_check_realm(struct tp_plugin_build *b, const char *realm)
{
    if (!realm)
        return 0;
    size_t n = strlen(realm);
    bool ok = n <= TP__AUTH_MAX_REALM;
    for (size_t i = 0; ok && i < n; i++) {
        unsigned char c = (unsigned char)realm[i];
        ok = !(c < 0x20 || c == 0x7f || c == '"' || c == '\\');
    }
    if (ok)
        return 0;
    return tp_plugin_build_error(b, b->node && b->cfg ? tp__cfg_lookup(b->cfg, b->node, "realm")
                                                      : NULL,
                                 "\"realm\" must be at most %d printable characters without "
                                 "'\"' or '\\'", TP__AUTH_MAX_REALM);
}

char *tp__auth_challenge(const char *scheme, const char *realm, const char *params, size_t *len)
{
    static const char mid[] = " realm=\"";
    size_t slen = strlen(scheme), rlen = strlen(realm), plen = strlen(params);
    size_t n = slen + sizeof(mid) - 1 + rlen + 1 + plen;
    char *s = malloc(n + 1), *p = s;

    if (!s)
        return NULL;
    memcpy(p, scheme, slen);
    p += slen;
    memcpy(p, mid, sizeof(mid) - 1);
    p += sizeof(mid) - 1;
    memcpy(p, realm, rlen);
    p += rlen;
    *p++ = '"';
    memcpy(p, params, plen + 1); /* with the NUL */
    if (len)
        *len = n;
    return s;
}

enum tp_plugin_status tp__auth_fail(struct tp_plugin_ctx *ctx, const struct tp_consumer *anonymous,
                                    struct tp_slice challenge, const char *message,
                                    const char *reason, bool presented)
{
    if (anonymous) {
        if (presented)
            tp_plugin_security_log(ctx, 401, reason);
        tp_plugin_set_anonymous(ctx, anonymous);
        return TP_PLUGIN_CONTINUE;
    }
    tp_plugin_security_log(ctx, 401, reason);
    tp_plugin_respond(ctx, 401, message);
    if (tp_plugin_respond_header(ctx, "WWW-Authenticate", challenge) != 0)
        return TP_PLUGIN_ERROR;
    return TP_PLUGIN_RESPOND;
}
