/*
 * W3C Trace Context traceparent (Recommendation, §3.2): parsing, formatting, head sampling.
 * Pure functions, no allocation: tests/unit/test_traceparent.c and tests/fuzz/fuzz_traceparent.c
 * drive them directly.
 */
#include "turnpike/trace.h"

#include <string.h>

/* HEXDIGLC (§3.2.2): lower-case only; an upper-case id makes the whole value invalid. */
static int hexlc(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* n bytes from 2n lower-case hex digits; false on any other character. */
static bool unhex(const char *p, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hexlc(p[2 * i]), lo = hexlc(p[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

int tp_traceparent_parse(const char *p, size_t len, struct tp_traceparent *out)
{
    struct tp_traceparent tp;
    /* version "-": two lower-case hex digits and a dash, else the trace restarts (§3.2.4) */
    if (len < 3 || p[2] != '-' || !unhex(p, &tp.version, 1))
        return TP_EINVAL;
    if (tp.version == 0xff) /* forbidden (§3.2.2.1) */
        return TP_EINVAL;
    /* version 00 is exactly trace-id "-" parent-id "-" trace-flags; a higher version must be
     * at least as long and its first four fields read the same way, followed by "-" or the end
     * (§3.2.4): fields it may add are ignored */
    if (len < TP_TRACEPARENT_LEN || (tp.version == 0 && len != TP_TRACEPARENT_LEN))
        return TP_EINVAL;
    if (len > TP_TRACEPARENT_LEN && p[TP_TRACEPARENT_LEN] != '-')
        return TP_EINVAL;
    if (p[35] != '-' || p[52] != '-')
        return TP_EINVAL;
    if (!unhex(p + 3, tp.trace_id, 16) || !unhex(p + 36, tp.parent_id, 8) ||
        !unhex(p + 53, &tp.flags, 1))
        return TP_EINVAL;
    if (all_zero(tp.trace_id, 16) || all_zero(tp.parent_id, 8))
        return TP_EINVAL;
    *out = tp;
    return 0;
}

void tp_trace_hex(char *out, const uint8_t *id, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[id[i] >> 4];
        out[2 * i + 1] = digits[id[i] & 15];
    }
}

void tp_traceparent_format(char *buf, const uint8_t trace_id[16], const uint8_t span_id[8],
                           uint8_t flags)
{
    buf[0] = '0';
    buf[1] = '0';
    buf[2] = '-';
    tp_trace_hex(buf + 3, trace_id, 16);
    buf[35] = '-';
    tp_trace_hex(buf + 36, span_id, 8);
    buf[52] = '-';
    tp_trace_hex(buf + 53, &flags, 1);
}

bool tp_trace_should_sample(const struct tp_conf_tracing *t, const uint8_t trace_id[16],
                            bool has_parent, uint8_t parent_flags)
{
    if (has_parent && t->parent_based)
        return (parent_flags & TP_TRACE_FLAG_SAMPLED) != 0;
    if (t->sample_all)
        return true;
    uint64_t r = 0;
    for (int i = 8; i < 16; i++)
        r = r << 8 | trace_id[i];
    return r < t->sample_threshold;
}
