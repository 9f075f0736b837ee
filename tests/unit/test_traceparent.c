/*
 * Unit tests for the W3C Trace Context traceparent parser, formatter and head-sampling rule
 * (src/observe/traceparent.c), and the tracing endpoint parser (src/config/observe.c).
 * Cases follow the Recommendation's §3.2 (format, all-zero ids, upper case, version ff) and
 * §3.2.4 (versioning: a higher version parsed by its first four fields).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "turnpike/trace.h"

#define TP_EXAMPLE "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static int parse(const char *s, struct tp_traceparent *out)
{
    return tp_traceparent_parse(s, strlen(s), out);
}

static void test_valid(void **state)
{
    (void)state;
    struct tp_traceparent tp;
    static const uint8_t trace[16] = {0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
                                      0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36};
    static const uint8_t parent[8] = {0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7};
    assert_int_equal(parse(TP_EXAMPLE, &tp), 0);
    assert_int_equal(tp.version, 0);
    assert_memory_equal(tp.trace_id, trace, 16);
    assert_memory_equal(tp.parent_id, parent, 8);
    assert_int_equal(tp.flags, 1);
    assert_int_equal(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", &tp), 0);
    assert_int_equal(tp.flags, 0);
    /* unknown flags are accepted (only the sampled bit is read) */
    assert_int_equal(parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff", &tp), 0);
    assert_int_equal(tp.flags, 0xff);
    /* one non-zero byte is enough */
    assert_int_equal(parse("00-00000000000000000000000000000001-0000000000000001-01", &tp), 0);
}

static void test_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "0",
        "00",
        "00-",
        /* all-zero ids (§3.2.2.3, §3.2.2.4) */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        /* upper-case hex is not HEXDIGLC */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",
        "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        /* version ff is forbidden */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        /* version 00 is exactly 55 characters */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
        /* wrong separators, non-hex characters, whitespace */
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01",
        "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
        " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ",
        "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        /* a higher version shorter than 55, or not followed by '-' after the flags */
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
        "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.what-the-future-will-be-like",
    };
    for (size_t i = 0; i < TP_ARRAY_LEN(bad); i++) {
        struct tp_traceparent tp;
        if (parse(bad[i], &tp) != TP_EINVAL)
            fail_msg("accepted '%s'", bad[i]);
    }
}

/* §3.2.4: a future version is read by its first four fields; what follows "-" is ignored. */
static void test_higher_version(void **state)
{
    (void)state;
    struct tp_traceparent tp;
    assert_int_equal(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &tp), 0);
    assert_int_equal(tp.version, 1);
    assert_int_equal(
        parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds", &tp),
        0);
    assert_int_equal(tp.version, 0xcc);
    assert_int_equal(tp.flags, 1);
    assert_int_equal(tp.parent_id[7], 0xb7);
}

static void test_nul_and_length(void **state)
{
    (void)state;
    struct tp_traceparent tp;
    char buf[64];
    memcpy(buf, TP_EXAMPLE, 55);
    buf[10] = '\0'; /* an embedded NUL is not a hex digit */
    assert_int_equal(tp_traceparent_parse(buf, 55, &tp), TP_EINVAL);
    /* a prefix of a valid value is never valid */
    for (size_t n = 0; n < 55; n++)
        assert_int_equal(tp_traceparent_parse(TP_EXAMPLE, n, &tp), TP_EINVAL);
}

static void test_format_round_trip(void **state)
{
    (void)state;
    struct tp_traceparent tp;
    char out[TP_TRACEPARENT_LEN + 1];
    assert_int_equal(parse(TP_EXAMPLE, &tp), 0);
    tp_traceparent_format(out, tp.trace_id, tp.parent_id, TP_TRACE_FLAG_SAMPLED);
    out[TP_TRACEPARENT_LEN] = '\0';
    assert_string_equal(out, TP_EXAMPLE);
    static const uint8_t trace[16] = {0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0xab};
    static const uint8_t span[8] = {0, 0, 0, 0, 0, 0, 0, 1};
    tp_traceparent_format(out, trace, span, 0);
    assert_string_equal(out, "00-ff0102030405060708090a0b0c0d0eab-0000000000000001-00");
    assert_int_equal(parse(out, &tp), 0);
    assert_memory_equal(tp.trace_id, trace, 16);
    assert_memory_equal(tp.parent_id, span, 8);
}

static void test_sampling_rule(void **state)
{
    (void)state;
    uint8_t id[16] = {0};
    struct tp_conf_tracing t = {.parent_based = true, .sampling = 0.0, .sample_threshold = 0};
    /* parent-based: the incoming sampled flag decides, whatever the ratio */
    assert_true(tp_trace_should_sample(&t, id, true, 0x01));
    assert_false(tp_trace_should_sample(&t, id, true, 0x00));
    assert_true(tp_trace_should_sample(&t, id, true, 0xff));
    /* no parent: the ratio (0: never) */
    id[15] = 1;
    assert_false(tp_trace_should_sample(&t, id, false, 0));
    t.parent_based = false;
    assert_false(tp_trace_should_sample(&t, id, true, 0x01));
    t.sample_all = true;
    t.sample_threshold = UINT64_MAX;
    assert_true(tp_trace_should_sample(&t, id, true, 0x00));
    /* ratio 0.25: ids whose last 8 bytes are below 2^62 */
    t.sample_all = false;
    t.sample_threshold = 1ull << 62;
    memset(id, 0, sizeof(id));
    id[8] = 0x3f;
    assert_true(tp_trace_should_sample(&t, id, false, 0));
    id[8] = 0x40;
    assert_false(tp_trace_should_sample(&t, id, false, 0));
    /* over many ids spread evenly, the share sampled is the ratio */
    unsigned kept = 0;
    for (unsigned i = 0; i < 4096; i++) {
        uint64_t v = (uint64_t)i * 0x0010000000000000ULL + 12345;
        for (int k = 0; k < 8; k++)
            id[8 + k] = (uint8_t)(v >> (56 - 8 * k));
        kept += tp_trace_should_sample(&t, id, false, 0);
    }
    assert_int_equal(kept, 1024);
}

static void test_endpoint(void **state)
{
    (void)state;
    struct tp_tracing_endpoint ep;
    char err[160];
    assert_int_equal(tp_tracing_endpoint_parse("http://127.0.0.1:4318", &ep, err, sizeof(err)), 0);
    assert_string_equal(ep.host, "127.0.0.1");
    assert_int_equal(ep.port, 4318);
    assert_string_equal(ep.path, "/v1/traces");
    assert_int_equal(tp_tracing_endpoint_parse("http://collector/otlp/", &ep, err, sizeof(err)), 0);
    assert_string_equal(ep.host, "collector");
    assert_int_equal(ep.port, 80);
    assert_string_equal(ep.path, "/otlp/v1/traces");
    assert_int_equal(tp_tracing_endpoint_parse("http://[::1]:4318/x", &ep, err, sizeof(err)), 0);
    assert_string_equal(ep.host, "::1");
    assert_string_equal(ep.path, "/x/v1/traces");
    static const char *const bad[] = {"https://c:4318", "c:4318",         "http://:4318",
                                      "http://c:0",     "http://c:70000", "http://c:43x8",
                                      "http://c/?q=1",  "http://[::1",    "http://c:"};
    for (size_t i = 0; i < TP_ARRAY_LEN(bad); i++)
        if (tp_tracing_endpoint_parse(bad[i], &ep, err, sizeof(err)) != TP_EINVAL)
            fail_msg("accepted endpoint '%s'", bad[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_higher_version),
        cmocka_unit_test(test_nul_and_length),
        cmocka_unit_test(test_format_round_trip),
        cmocka_unit_test(test_sampling_rule),
        cmocka_unit_test(test_endpoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
