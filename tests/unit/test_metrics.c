/*
 * Unit tests: the `metrics` section of the config (src/metrics/conf.c) — defaults, values and
 * errors with their positions.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "turnpike/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BASE "services: [{name: s, url: \"http://127.0.0.1:9\", routes: [{paths: [/]}]}]\n"

/* Load text; returns the config (or NULL) and the error text in *errors (caller frees). */
static struct tp_config *load(const char *text, char **errors)
{
    size_t len = 0;
    FILE *f = open_memstream(errors, &len);
    struct tp_config *cfg = NULL;
    int rc = tp_config_load_string("t.yaml", text, strlen(text), f, &cfg);
    fclose(f);
    return rc == 0 ? cfg : NULL;
}

static void defaults(void **state)
{
    (void)state;
    char *err = NULL;
    struct tp_config *cfg = load(BASE, &err);
    assert_non_null(cfg);
    assert_true(cfg->metrics.enabled);
    assert_int_equal(cfg->metrics.max_consumers, 1000);
    assert_int_equal(cfg->metrics.latency_window_ms, 60000);
    tp_config_free(cfg);
    free(err);
    /* an empty section gives the defaults too */
    cfg = load(BASE "metrics: {}\n", &err);
    assert_non_null(cfg);
    assert_true(cfg->metrics.enabled);
    assert_int_equal(cfg->metrics.latency_window_ms, 60000);
    tp_config_free(cfg);
    free(err);
}

static void values(void **state)
{
    (void)state;
    char *err = NULL;
    struct tp_config *cfg =
        load(BASE "metrics: {enabled: false, max_consumers: 0, latency_window: 0}\n", &err);
    assert_non_null(cfg);
    assert_false(cfg->metrics.enabled);
    assert_int_equal(cfg->metrics.max_consumers, 0);
    assert_int_equal(cfg->metrics.latency_window_ms, 0);
    tp_config_free(cfg);
    free(err);
    cfg = load(BASE "metrics: {latency_window: 10000, max_consumers: 5}\n", &err);
    assert_non_null(cfg);
    assert_int_equal(cfg->metrics.latency_window_ms, 10000);
    assert_int_equal(cfg->metrics.max_consumers, 5);
    tp_config_free(cfg);
    free(err);
}

static void errors(void **state)
{
    (void)state;
    static const struct {
        const char *yaml, *want;
    } cases[] = {
        {BASE "metrics: {latency_window: 999}\n",
         "t.yaml:2:27: \"latency_window\" must be 0 (off) or at least 1000 ms"},
        {BASE "metrics: {latency_window: 3600001}\n", "t.yaml:2:27:"},
        {BASE "metrics: {max_consumers: -1}\n", "t.yaml:2:26:"},
        {BASE "metrics: {enabled: maybe}\n", "t.yaml:2:20:"},
        {BASE "metrics: {percentiles: true}\n", "t.yaml:2:11:"},
        {BASE "metrics: [1]\n", "t.yaml:2:10:"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *err = NULL;
        struct tp_config *cfg = load(cases[i].yaml, &err);
        if (cfg || !err || strncmp(err, cases[i].want, strlen(cases[i].want)) != 0)
            fail_msg("case %zu: got %s", i, err ? err : "(nothing)");
        free(err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults),
        cmocka_unit_test(values),
        cmocka_unit_test(errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
