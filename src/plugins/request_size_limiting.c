/*
 * request-size-limiting — Kong's plugin of that name (priority 951): refuse request bodies over
 * allowed_payload_size (in size_unit: megabytes = 2^20 bytes, kilobytes = 2^10, bytes).
 *
 *   Content-Length over the limit   413 {"message":"Request size limit exceeded"} at once, before
 *                                   a byte of the body is read (417 when the client sent
 *                                   Expect: 100-continue, as Kong does: the body is not wanted)
 *   chunked body                    the request's body limit is lowered: the proxy answers 413
 *                                   when the streamed body passes it (RFC 9110 §15.5.14)
 *   no Content-Length               411 when require_content_length is true (chunked bodies
 *                                   are allowed: they are counted as they stream, as in Kong)
 */
#include "plugins/transform_util.h"
#include "turnpike/plugin.h"

#include <string.h>

#define RSL_MAX_SIZE (UINT64_C(1) << 30) /* in any unit: 1 PiB in megabytes is plenty */

static const char *const size_units[] = {"megabytes", "kilobytes", "bytes"};
static const uint64_t unit_bytes[] = {UINT64_C(1) << 20, UINT64_C(1) << 10, 1};

struct rsl_conf {
    uint64_t allowed_payload_size;
    int size_unit;                 /* index in size_units */
    bool require_content_length;
};

static void parse_unit(struct tp__cfg_ctx *ctx, const char *key, yaml_node_t *value, void *obj)
{
    struct rsl_conf *c = obj;
    tp__cfg_enum(ctx, key, value, size_units, TP_ARRAY_LEN(size_units), &c->size_unit);
}

static const struct tp__cfg_directive rsl_keys[] = {
    TP__CFG_UINT_KEY("allowed_payload_size", struct rsl_conf, allowed_payload_size, 0,
                     RSL_MAX_SIZE, 128),
    TP__CFG_CUSTOM_KEY("size_unit", parse_unit, false),
    TP__CFG_BOOL_KEY("require_content_length", struct rsl_conf, require_content_length, false),
};

TP__CFG_TABLE_CHECK(rsl_keys);

static const struct tp__cfg_schema rsl_schema = {
    .what = "request-size-limiting config",
    .keys = rsl_keys,
    .num_keys = TP_ARRAY_LEN(rsl_keys),
    .size = sizeof(struct rsl_conf),
    .mark_offset = -1,
};

/* size_unit defaults to megabytes: index 0, which calloc already gave the struct. */

static bool expects_continue(struct tp_plugin_ctx *ctx)
{
    struct tp_slice v;
    if (!tp_plugin_header(ctx, "Expect", 0, &v))
        return false;
    while (v.len && (v.ptr[0] == ' ' || v.ptr[0] == '\t'))
        v.ptr++, v.len--;
    while (v.len && (v.ptr[v.len - 1] == ' ' || v.ptr[v.len - 1] == '\t'))
        v.len--;
    return TP_SLICE_IEQ(v, "100-continue");
}

static enum tp_plugin_status rsl_access(struct tp_plugin_ctx *ctx, const void *inst)
{
    const struct rsl_conf *c = inst;
    uint64_t limit = c->allowed_payload_size * unit_bytes[c->size_unit];
    int64_t cl = tp_plugin_content_length(ctx);
    struct tp_slice v;

    if (cl > 0) {
        if ((uint64_t)cl <= limit)
            return TP_PLUGIN_CONTINUE;
        int status = expects_continue(ctx) ? 417 : 413;
        tp_plugin_security_log(ctx, status, "request body over the size limit");
        tp_plugin_respond(ctx, status, "Request size limit exceeded");
        return TP_PLUGIN_RESPOND;
    }
    if (cl < 0) {
        tp_plugin_set_max_body(ctx, limit); /* chunked: counted while it streams */
        return TP_PLUGIN_CONTINUE;
    }
    if (c->require_content_length && !tp_plugin_header(ctx, "Content-Length", 0, &v)) {
        tp_plugin_security_log(ctx, 411, "request without Content-Length");
        tp_plugin_respond(ctx, 411, "A valid Content-Length header is required");
        return TP_PLUGIN_RESPOND;
    }
    return TP_PLUGIN_CONTINUE;
}

const struct tp_plugin tp_plugin_request_size_limiting = {
    .name = "request-size-limiting",
    .priority = 951,
    .schema = &rsl_schema,
    .conf_size = sizeof(struct rsl_conf),
    .access = rsl_access,
};
