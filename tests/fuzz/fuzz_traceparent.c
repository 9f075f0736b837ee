/*
 * Fuzz target: the W3C traceparent parser (src/observe/traceparent.c).
 *
 * Invariants checked on every input: an accepted value is at least 55 bytes, has a lower-case
 * hex version other than ff, its ids are not all zero, a version-00 value is exactly 55 bytes;
 * formatting what was parsed and parsing that again gives the same ids and flags; and the
 * formatted value equals the input's first 55 bytes for version 00. Any violation aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "turnpike/trace.h"

static void check(int ok, const char *what, const uint8_t *s, size_t len)
{
    if (ok)
        return;
    fprintf(stderr, "invariant failed: %s on '%.*s'\n", what, (int)len, (const char *)s);
    abort();
}

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tp_traceparent tp, again;
    if (size > 4096)
        return 0;
    if (tp_traceparent_parse((const char *)data, size, &tp) != 0)
        return 0;
    check(size >= TP_TRACEPARENT_LEN, "length at least 55", data, size);
    check(tp.version != 0xff, "version ff refused", data, size);
    check(tp.version != 0 || size == TP_TRACEPARENT_LEN, "version 00 is 55 bytes", data, size);
    check(!all_zero(tp.trace_id, 16) && !all_zero(tp.parent_id, 8), "ids not zero", data, size);
    for (size_t i = 0; i < TP_TRACEPARENT_LEN; i++)
        check(data[i] == '-' || (data[i] >= '0' && data[i] <= '9') ||
                  (data[i] >= 'a' && data[i] <= 'f'),
              "lower-case hex only", data, size);
    char out[TP_TRACEPARENT_LEN];
    tp_traceparent_format(out, tp.trace_id, tp.parent_id, tp.flags);
    check(tp_traceparent_parse(out, sizeof(out), &again) == 0, "formatted value parses", data,
          size);
    check(memcmp(again.trace_id, tp.trace_id, 16) == 0 &&
              memcmp(again.parent_id, tp.parent_id, 8) == 0 && again.flags == tp.flags,
          "round trip", data, size);
    if (tp.version == 0)
        check(memcmp(out, data, TP_TRACEPARENT_LEN) == 0, "version 00 round trip", data, size);
    return 0;
}
