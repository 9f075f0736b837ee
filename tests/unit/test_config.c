/*
 * Unit tests: the declarative config loader (src/config/loader.c, schema.c, entities.c).
 *
 * Error output is captured with open_memstream and compared line by line, so every message
 * and every FILE:LINE:COLUMN below is part of the contract.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "turnpike/config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct result {
    int rc;
    char *errors;
    struct tp_config *cfg;
};

static struct result load(const char *text)
{
    struct result r = {0};
    size_t len = 0;
    FILE *f = open_memstream(&r.errors, &len);

    assert_non_null(f);
    r.rc = tp_config_load_string("t.yaml", text, strlen(text), f, &r.cfg);
    fclose(f);
    return r;
}

static int count_lines(const char *s)
{
    int n = 0;

    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Loading must fail with exactly these error lines (and return their negative count). */
static void expect_errors(const char *text, const char *expected)
{
    struct result r = load(text);

    assert_string_equal(r.errors, expected);
    assert_int_equal(r.rc, -count_lines(expected));
    assert_null(r.cfg);
    free(r.errors);
}

static struct tp_config *load_ok(const char *text)
{
    struct result r = load(text);

    assert_string_equal(r.errors, "");
    assert_int_equal(r.rc, 0);
    assert_non_null(r.cfg);
    free(r.errors);
    return r.cfg;
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
}

/* ------------------------------------------------------------------------------------------ */
/* Defaults and a complete file                                                               */

static void assert_default_limits(const struct tp_conf_limits *l)
{
    assert_int_equal(l->max_header_bytes, TP_DEFAULT_MAX_HEADER_BYTES);
    assert_int_equal(l->max_headers, TP_DEFAULT_MAX_HEADERS);
    assert_int_equal(l->max_uri_bytes, TP_DEFAULT_MAX_URI_BYTES);
    assert_int_equal(l->max_field_bytes, TP_DEFAULT_MAX_FIELD_BYTES);
    assert_int_equal(l->max_body_bytes, TP_DEFAULT_MAX_BODY_BYTES);
    assert_int_equal(l->header_timeout_ms, TP_DEFAULT_HEADER_TIMEOUT_MS);
    assert_int_equal(l->body_timeout_ms, TP_DEFAULT_BODY_TIMEOUT_MS);
    assert_int_equal(l->keepalive_timeout_ms, TP_DEFAULT_KEEPALIVE_TIMEOUT_MS);
    assert_int_equal(l->send_timeout_ms, TP_DEFAULT_SEND_TIMEOUT_MS);
    assert_int_equal(l->tunnel_idle_timeout_ms, TP_DEFAULT_TUNNEL_IDLE_TIMEOUT_MS);
    assert_int_equal(l->max_connections, TP_DEFAULT_MAX_CONNECTIONS);
    assert_int_equal(l->grace_period_ms, TP_DEFAULT_GRACE_MS);
}

static void test_empty_document_gives_defaults(void **state)
{
    (void)state;
    const char *docs[] = {"", "---\n", "# only a comment\n", "{}\n", "~\n"};

    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        struct tp_config *cfg = load_ok(docs[i]);
        assert_string_equal(cfg->path, "t.yaml");
        assert_int_equal(cfg->num_listen, 1);
        assert_string_equal(cfg->listen[0].host, "0.0.0.0");
        assert_int_equal(cfg->listen[0].port, 8000);
        assert_int_equal(cfg->workers, online_cpus());
        assert_string_equal(cfg->access_log, "stdout");
        assert_string_equal(cfg->error_log, "stderr");
        assert_int_equal(cfg->log_level, TP_LOG_NOTICE);
        assert_int_equal(cfg->num_trusted_proxies, 0);
        assert_int_equal(cfg->dns_refresh_ms, TP_DEFAULT_DNS_REFRESH_MS);
        assert_int_equal(cfg->num_services, 0);
        assert_int_equal(cfg->num_upstreams, 0);
        assert_default_limits(&cfg->limits);
        tp_config_free(cfg);
    }
}

static const char full_config[] =
    "_format_version: \"3.0\"\n"
    "listen: [\"127.0.0.1:8080\", \"[::1]:8081\"]\n"
    "workers: 3\n"
    "access_log: /var/log/turnpike/access.log\n"
    "error_log: /var/log/turnpike/error.log\n"
    "log_level: debug\n"
    "trusted_proxies: [10.0.0.0/8, 192.0.2.10, \"::1/128\", \"2001:db8::/32\"]\n"
    "dns_refresh: 0\n"
    "limits:\n"
    "  max_header_bytes: 32768\n"
    "  max_headers: 50\n"
    "  max_uri_bytes: 4096\n"
    "  max_header_field_bytes: 8192\n"
    "  max_body_bytes: 1048576\n"
    "  header_timeout: 5000\n"
    "  body_timeout: 6000\n"
    "  keepalive_timeout: 7000\n"
    "  send_timeout: 8000\n"
    "  tunnel_idle_timeout: 9000\n"
    "  max_connections: 1000\n"
    "  grace_period: 0\n"
    "services:\n"
    "  - name: users\n"
    "    url: http://users-upstream/v1/\n"
    "    connect_timeout: 1000\n"
    "    read_timeout: 2000\n"
    "    write_timeout: 3000\n"
    "    retries: 0\n"
    "    routes:\n"
    "      - name: users-api\n"
    "        hosts: [API.Example.COM., \"*.example.test\"]\n"
    "        paths: [/users, \"=/exact\", \"~^/re$\", \"/users/{id}\"]\n"
    "        methods: [get, POST]\n"
    "        headers:\n"
    "          X-Version: v2\n"
    "          Accept: [application/json, text/plain]\n"
    "        query:\n"
    "          debug: \"1\"\n"
    "        priority: -7\n"
    "        strip_path: false\n"
    "        preserve_host: true\n"
    "        protocols: [http, https]\n"
    "      - paths: [/other]\n"
    "upstreams:\n"
    "  - name: users-upstream\n"
    "    algorithm: least-connections\n"
    "    keepalive_pool_size: 0\n"
    "    keepalive_idle_timeout: 1234\n"
    "    targets:\n"
    "      - target: 127.0.0.1:9001\n"
    "        weight: 0\n"
    "      - target: \"[::1]:9002\"\n"
    "      - {target: backend.internal}\n";

static void check_full_top(const struct tp_config *cfg)
{
    assert_int_equal(cfg->num_listen, 2);
    assert_string_equal(cfg->listen[0].host, "127.0.0.1");
    assert_int_equal(cfg->listen[0].port, 8080);
    assert_int_equal(cfg->listen[0].mark.line, 2);
    assert_int_equal(cfg->listen[0].mark.column, 10);
    assert_string_equal(cfg->listen[1].host, "::1");
    assert_int_equal(cfg->listen[1].port, 8081);
    assert_int_equal(cfg->workers, 3);
    assert_string_equal(cfg->access_log, "/var/log/turnpike/access.log");
    assert_string_equal(cfg->error_log, "/var/log/turnpike/error.log");
    assert_int_equal(cfg->log_level, TP_LOG_DEBUG);
    assert_int_equal(cfg->dns_refresh_ms, 0);
    assert_int_equal(cfg->limits.max_header_bytes, 32768);
    assert_int_equal(cfg->limits.max_headers, 50);
    assert_int_equal(cfg->limits.max_uri_bytes, 4096);
    assert_int_equal(cfg->limits.max_field_bytes, 8192);
    assert_int_equal(cfg->limits.max_body_bytes, 1048576);
    assert_int_equal(cfg->limits.header_timeout_ms, 5000);
    assert_int_equal(cfg->limits.body_timeout_ms, 6000);
    assert_int_equal(cfg->limits.keepalive_timeout_ms, 7000);
    assert_int_equal(cfg->limits.send_timeout_ms, 8000);
    assert_int_equal(cfg->limits.tunnel_idle_timeout_ms, 9000);
    assert_int_equal(cfg->limits.max_connections, 1000);
    assert_int_equal(cfg->limits.grace_period_ms, 0);
}

static void check_full_proxies(const struct tp_config *cfg)
{
    const uint8_t ten[4] = {10, 0, 0, 0}, one[4] = {192, 0, 2, 10};
    uint8_t db8[16];

    assert_int_equal(cfg->num_trusted_proxies, 4);
    assert_int_equal(cfg->trusted_proxies[0].family, AF_INET);
    assert_int_equal(cfg->trusted_proxies[0].prefix, 8);
    assert_memory_equal(cfg->trusted_proxies[0].addr, ten, 4);
    assert_int_equal(cfg->trusted_proxies[1].prefix, 32);
    assert_memory_equal(cfg->trusted_proxies[1].addr, one, 4);
    assert_int_equal(cfg->trusted_proxies[2].family, AF_INET6);
    assert_int_equal(cfg->trusted_proxies[2].prefix, 128);
    assert_int_equal(cfg->trusted_proxies[2].addr[15], 1);
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::", db8), 1);
    assert_int_equal(cfg->trusted_proxies[3].prefix, 32);
    assert_memory_equal(cfg->trusted_proxies[3].addr, db8, 16);
}

static void check_full_route(const struct tp_conf_route *r)
{
    assert_string_equal(r->name, "users-api");
    assert_int_equal(r->num_hosts, 2);
    assert_string_equal(r->hosts[0], "api.example.com");
    assert_string_equal(r->hosts[1], "*.example.test");
    assert_int_equal(r->num_paths, 4);
    assert_string_equal(r->paths[1], "=/exact");
    assert_string_equal(r->paths[2], "~^/re$");
    assert_string_equal(r->paths[3], "/users/{id}");
    assert_int_equal(r->num_methods, 2);
    assert_string_equal(r->methods[0], "GET");
    assert_string_equal(r->methods[1], "POST");
    assert_int_equal(r->num_headers, 2);
    assert_string_equal(r->headers[0].name, "x-version");
    assert_int_equal(r->headers[0].num_values, 1);
    assert_string_equal(r->headers[0].values[0], "v2");
    assert_string_equal(r->headers[1].name, "accept");
    assert_int_equal(r->headers[1].num_values, 2);
    assert_string_equal(r->headers[1].values[1], "text/plain");
    assert_int_equal(r->num_query, 1);
    assert_string_equal(r->query[0].name, "debug");
    assert_string_equal(r->query[0].values[0], "1");
    assert_int_equal(r->priority, -7);
    assert_false(r->strip_path);
    assert_true(r->preserve_host);
    assert_int_equal(r->mark.line, 30);
    assert_int_equal(r->mark.column, 9);
}

static void check_full_service(const struct tp_conf_service *s)
{
    assert_string_equal(s->name, "users");
    assert_string_equal(s->url, "http://users-upstream/v1/");
    assert_string_equal(s->host, "users-upstream");
    assert_int_equal(s->port, 80);
    assert_string_equal(s->path, "/v1/"); /* the trailing slash is kept, as Kong does */
    assert_int_equal(s->connect_timeout_ms, 1000);
    assert_int_equal(s->read_timeout_ms, 2000);
    assert_int_equal(s->write_timeout_ms, 3000);
    assert_int_equal(s->retries, 0);
    assert_int_equal(s->mark.line, 23);
    assert_int_equal(s->mark.column, 5);
    assert_int_equal(s->num_routes, 2);
    check_full_route(&s->routes[0]);
    /* defaults of a route without a name */
    assert_string_equal(s->routes[1].name, "users.1");
    assert_true(s->routes[1].strip_path);
    assert_false(s->routes[1].preserve_host);
    assert_int_equal(s->routes[1].priority, 0);
    assert_int_equal(s->routes[1].num_hosts, 0);
}

static void check_full_upstream(const struct tp_config *cfg)
{
    assert_int_equal(cfg->num_upstreams, 1);
    const struct tp_conf_upstream *u = &cfg->upstreams[0];
    assert_string_equal(u->name, "users-upstream");
    assert_int_equal(u->algorithm, TP_LB_LEAST_CONNECTIONS);
    assert_int_equal(u->keepalive_pool, 0);
    assert_int_equal(u->keepalive_idle_ms, 1234);
    assert_int_equal(u->num_targets, 3);
    assert_string_equal(u->targets[0].host, "127.0.0.1");
    assert_int_equal(u->targets[0].port, 9001);
    assert_int_equal(u->targets[0].weight, 0);
    assert_string_equal(u->targets[1].host, "::1");
    assert_int_equal(u->targets[1].port, 9002);
    assert_int_equal(u->targets[1].weight, 100);
    assert_string_equal(u->targets[2].host, "backend.internal");
    assert_int_equal(u->targets[2].port, 80);
    assert_ptr_equal(tp_config_find_upstream(cfg, "users-upstream"), u);
    assert_null(tp_config_find_upstream(cfg, "nope"));
    assert_null(tp_config_find_upstream(cfg, NULL));
    assert_null(tp_config_find_upstream(NULL, "users-upstream"));
}

static void test_full_config(void **state)
{
    (void)state;
    struct tp_config *cfg = load_ok(full_config);

    check_full_top(cfg);
    check_full_proxies(cfg);
    assert_int_equal(cfg->num_services, 1);
    check_full_service(&cfg->services[0]);
    check_full_upstream(cfg);
    tp_config_free(cfg);
}

static void test_json_equivalent(void **state)
{
    (void)state;
    struct tp_config *cfg = load_ok(
        "{\n"
        "\t\"_format_version\": \"1.0\",\n"
        "\t\"workers\": 2,\n"
        "\t\"services\": [{\"name\": \"s\", \"url\": \"http://u:8080\", \"retries\": 1,\n"
        "\t  \"routes\": [{\"paths\": [\"/a\"], \"strip_path\": false}]}],\n"
        "\t\"upstreams\": [{\"name\": \"u\", \"targets\": [{\"target\": \"10.0.0.1:1\"}]}]\n"
        "}\n");

    assert_int_equal(cfg->workers, 2);
    assert_int_equal(cfg->services[0].port, 8080);
    assert_string_equal(cfg->services[0].path, "");
    assert_string_equal(cfg->services[0].routes[0].name, "s.0");
    assert_false(cfg->services[0].routes[0].strip_path);
    assert_int_equal(cfg->upstreams[0].targets[0].port, 1);
    tp_config_free(cfg);
    expect_errors("{\"services\": [{\"name\": \"s\", \"url\": \"http://x\", \"retries\": \"1\"}]}",
                  "t.yaml:1:59: expected an integer for \"retries\"\n");
}

/* The examples in the repository must load as they are. */
static void test_examples_load(void **state)
{
    (void)state;
    const char *names[] = {"examples/turnpike.yaml", "examples/turnpike.json"};
    const char *self = __FILE__;
    const char *tail = strstr(self, "tests/unit/test_config.c");
    int root = tail ? (int)(tail - self) : 0;

    for (size_t i = 0; i < 2; i++) {
        char path[4096];
        struct tp_config *cfg = NULL;
        snprintf(path, sizeof(path), "%.*s%s", root, self, names[i]);
        assert_int_equal(tp_config_load(path, stderr, &cfg), 0);
        assert_non_null(cfg);
        assert_string_equal(cfg->path, path);
        assert_non_null(tp_config_find_upstream(cfg, "demo-upstream"));
        assert_string_equal(cfg->services[0].name, "demo");
        tp_config_free(cfg);
    }
}

static void test_missing_file(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    struct tp_config *cfg = (struct tp_config *)&len; /* must stay untouched */

    assert_int_equal(tp_config_load("/nonexistent/turnpike.yaml", f, &cfg), -1);
    fclose(f);
    assert_string_equal(buf, "/nonexistent/turnpike.yaml: cannot read config: "
                             "No such file or directory\n");
    assert_ptr_equal(cfg, (struct tp_config *)&len);
    free(buf);
}

static void test_out_untouched_and_null_errors(void **state)
{
    (void)state;
    struct tp_config *cfg = (struct tp_config *)state;
    const char *bad = "workers: many\nlog_level: loud\n";

    assert_int_equal(tp_config_load_string("x", bad, strlen(bad), NULL, &cfg), -2);
    assert_ptr_equal(cfg, (struct tp_config *)state);
    cfg = NULL;
    assert_int_equal(tp_config_load_string(NULL, "", 0, NULL, &cfg), 0);
    assert_string_equal(cfg->path, "<string>");
    tp_config_free(cfg);
    tp_config_free(NULL);
}

/* ------------------------------------------------------------------------------------------ */
/* Keys                                                                                       */

static void test_unknown_keys(void **state)
{
    (void)state;
    expect_errors("foo: 1\n"
                  "services:\n"
                  "  - name: users\n"
                  "    url: http://x\n"
                  "    bogus: 2\n"
                  "    routes:\n"
                  "      - paths: [/a]\n"
                  "        wat: 1\n"
                  "upstreams:\n"
                  "  - name: u\n"
                  "    healthchecks: {bogus_check: 1}\n"
                  "    targets:\n"
                  "      - target: a:1\n"
                  "        extra: 3\n"
                  "limits:\n"
                  "  nope: 1\n",
                  "t.yaml:1:1: unknown key \"foo\" in the top-level mapping\n"
                  "t.yaml:5:5: unknown key \"bogus\" in service\n"
                  "t.yaml:8:9: unknown key \"wat\" in route\n"
                  "t.yaml:11:20: unknown key \"bogus_check\" in healthchecks\n"
                  "t.yaml:14:9: unknown key \"extra\" in target\n"
                  "t.yaml:16:3: unknown key \"nope\" in limits\n");
}

static void test_duplicate_and_missing_keys(void **state)
{
    (void)state;
    expect_errors("services:\n"
                  "  - name: users\n"
                  "    name: again\n"
                  "    url: http://x\n"
                  "  - url: http://y\n"
                  "  - name: z\n"
                  "upstreams:\n"
                  "  - targets: [{weight: 1}]\n"
                  "workers: 1\n"
                  "workers: 2\n",
                  "t.yaml:3:5: duplicate key \"name\" (first defined at 2:5)\n"
                  "t.yaml:5:5: missing required key \"name\" in service\n"
                  "t.yaml:6:5: missing required key \"url\" (or \"host\") in service\n"
                  "t.yaml:8:15: missing required key \"target\" in target\n"
                  "t.yaml:8:5: missing required key \"name\" in upstream\n"
                  "t.yaml:10:1: duplicate key \"workers\" (first defined at 9:1)\n");
}

static void test_wrong_shapes(void **state)
{
    (void)state;
    expect_errors("[1, 2]\n", "t.yaml:1:1: the top level must be a mapping\n");
    expect_errors("services: {name: a}\n"
                  "upstreams: [name]\n"
                  "limits: [1]\n"
                  "listen: 0.0.0.0:80\n"
                  "? [a]\n"
                  ": 1\n",
                  "t.yaml:1:11: expected a list for \"services\"\n"
                  "t.yaml:2:13: expected a mapping for upstream\n"
                  "t.yaml:3:9: expected a mapping for limits\n"
                  "t.yaml:4:9: expected a list of strings for \"listen\"\n"
                  "t.yaml:5:3: expected a string key in the top-level mapping\n");
}

/* ------------------------------------------------------------------------------------------ */
/* Scalars                                                                                    */

static void test_integer_syntax_and_ranges(void **state)
{
    (void)state;
    expect_errors("limits:\n"
                  "  max_headers: \"10\"\n"
                  "  max_header_bytes: 1.5\n"
                  "  max_uri_bytes: 0x10\n"
                  "  body_timeout: 010\n"
                  "  header_timeout: 0\n"
                  "  max_body_bytes: -1\n"
                  "  keepalive_timeout: 99999999999999999999999\n"
                  "  max_header_field_bytes: 1048577\n"
                  "  send_timeout: 86400001\n"
                  "  max_connections: '5'\n"
                  "  tunnel_idle_timeout: +5\n"
                  "  grace_period: 1e3\n",
                  "t.yaml:2:16: expected an integer for \"max_headers\"\n"
                  "t.yaml:3:21: expected an integer for \"max_header_bytes\"\n"
                  "t.yaml:4:18: expected an integer for \"max_uri_bytes\"\n"
                  "t.yaml:5:17: expected an integer for \"body_timeout\"\n"
                  "t.yaml:6:19: \"header_timeout\" must be between 1 and 86400000\n"
                  "t.yaml:7:19: \"max_body_bytes\" must be between 0 and 1099511627776\n"
                  "t.yaml:8:22: \"keepalive_timeout\" must be between 1 and 86400000\n"
                  "t.yaml:9:27: \"max_header_field_bytes\" must be between 1 and 1048576\n"
                  "t.yaml:10:17: \"send_timeout\" must be between 1 and 86400000\n"
                  "t.yaml:11:20: expected an integer for \"max_connections\"\n"
                  "t.yaml:12:24: expected an integer for \"tunnel_idle_timeout\"\n"
                  "t.yaml:13:17: expected an integer for \"grace_period\"\n");
}

static void test_limit_upper_bounds_accepted(void **state)
{
    (void)state;
    struct tp_config *cfg = load_ok("limits:\n"
                                    "  max_header_bytes: 1048576\n"
                                    "  max_headers: 10000\n"
                                    "  header_timeout: 86400000\n"
                                    "  max_body_bytes: 1099511627776\n");

    assert_int_equal(cfg->limits.max_header_bytes, 1048576);
    assert_int_equal(cfg->limits.max_headers, 10000);
    assert_int_equal(cfg->limits.header_timeout_ms, 86400000);
    assert_int_equal(cfg->limits.max_body_bytes, 1099511627776ULL);
    assert_int_equal(cfg->limits.max_uri_bytes, TP_DEFAULT_MAX_URI_BYTES);
    tp_config_free(cfg);
    expect_errors("limits: {max_headers: 10001, max_header_bytes: 0}\n",
                  "t.yaml:1:23: \"max_headers\" must be between 1 and 10000\n"
                  "t.yaml:1:48: \"max_header_bytes\" must be between 1 and 1048576\n");
}

static void test_booleans_and_strings(void **state)
{
    (void)state;
    expect_errors("access_log: \"\"\n"
                  "error_log: ~\n"
                  "services:\n"
                  "  - name: a\n"
                  "    url: http://a\n"
                  "    routes:\n"
                  "      - strip_path: yes\n"
                  "        preserve_host: \"true\"\n"
                  "        hosts: host\n"
                  "        paths: [[1]]\n"
                  "        methods: [~]\n"
                  "        name: null\n",
                  "t.yaml:1:13: \"access_log\" must not be empty\n"
                  "t.yaml:2:12: expected a string for \"error_log\"\n"
                  "t.yaml:7:21: expected true or false for \"strip_path\"\n"
                  "t.yaml:8:24: expected true or false for \"preserve_host\"\n"
                  "t.yaml:9:16: expected a list of strings for \"hosts\"\n"
                  "t.yaml:10:17: expected a list of strings for \"paths\"\n"
                  "t.yaml:11:19: expected a list of strings for \"methods\"\n"
                  "t.yaml:12:15: expected a string for \"name\"\n");
    expect_errors("services: [{name: \"a\\0b\", url: \"http://x\"}]\n",
                  "t.yaml:1:19: \"name\" must not contain a NUL byte\n");
}

static void test_top_level_scalars(void **state)
{
    (void)state;
    struct tp_config *cfg = load_ok("_format_version: 3.0\nworkers: auto\naccess_log: off\n"
                                    "log_level: warn\n");
    assert_int_equal(cfg->workers, online_cpus());
    assert_string_equal(cfg->access_log, "off");
    assert_int_equal(cfg->log_level, TP_LOG_WARN);
    tp_config_free(cfg);
    cfg = load_ok("_format_version: '1'\nworkers: 0\n");
    assert_int_equal(cfg->workers, online_cpus());
    tp_config_free(cfg);
    cfg = load_ok("workers: 1024\n");
    assert_int_equal(cfg->workers, 1024);
    tp_config_free(cfg);
    expect_errors("_format_version: 2\n"
                  "workers: many\n"
                  "log_level: verbose\n",
                  "t.yaml:1:18: unsupported _format_version \"2\" "
                  "(expected \"1\", \"1.0\" or \"3.0\")\n"
                  "t.yaml:2:10: \"workers\" must be \"auto\" or an integer\n"
                  "t.yaml:3:12: \"log_level\" must be one of: debug, info, notice, warn, error\n");
    expect_errors("workers: 1025\ndns_refresh: -1\n",
                  "t.yaml:1:10: \"workers\" must be between 0 and 1024\n"
                  "t.yaml:2:14: \"dns_refresh\" must be between 0 and 86400000\n");
    expect_errors("workers: \"4\"\n", "t.yaml:1:10: \"workers\" must be \"auto\" or an integer\n");
}

/* ------------------------------------------------------------------------------------------ */
/* listen and trusted_proxies                                                                 */

static void test_listen(void **state)
{
    (void)state;
    struct tp_config *cfg = load_ok("listen: [\"[::]:80\", localhost:8080]\n");

    assert_int_equal(cfg->num_listen, 2);
    assert_string_equal(cfg->listen[0].host, "::");
    assert_int_equal(cfg->listen[0].port, 80);
    assert_string_equal(cfg->listen[1].host, "localhost");
    tp_config_free(cfg);
    expect_errors("listen: [\"[::1]:8000\", 127.0.0.1, \":80\", \"::1:80\", \"[::1]:8000\","
                  " \"h:99999\", \"[::1]x\"]\n",
                  "t.yaml:1:24: invalid listen address \"127.0.0.1\": missing port\n"
                  "t.yaml:1:35: invalid listen address \":80\": invalid host name\n"
                  "t.yaml:1:42: invalid listen address \"::1:80\": "
                  "IPv6 addresses must be written in brackets, as in [::1]:8000\n"
                  "t.yaml:1:66: invalid listen address \"h:99999\": "
                  "port must be between 1 and 65535\n"
                  "t.yaml:1:77: invalid listen address \"[::1]x\": "
                  "unexpected text after the address\n"
                  "t.yaml:1:52: duplicate listen address (first defined at 1:10)\n");
    expect_errors("listen: []\n", "t.yaml:1:9: \"listen\" must not be empty\n");
}

static void test_trusted_proxies(void **state)
{
    (void)state;
    struct tp_config *cfg = load_ok("trusted_proxies: [0.0.0.0/0, \"::/0\", 172.16.0.0/12]\n");

    assert_int_equal(cfg->num_trusted_proxies, 3);
    assert_int_equal(cfg->trusted_proxies[0].prefix, 0);
    assert_int_equal(cfg->trusted_proxies[1].family, AF_INET6);
    assert_int_equal(cfg->trusted_proxies[1].prefix, 0);
    assert_int_equal(cfg->trusted_proxies[2].prefix, 12);
    tp_config_free(cfg);
    expect_errors("trusted_proxies:\n"
                  "  - 10.0.0.1/8\n"
                  "  - \"::1/127\"\n"
                  "  - \"::1/129\"\n"
                  "  - 1.2.3.4/33\n"
                  "  - 1.2.3.4/01\n"
                  "  - 1.2.3.4/\n"
                  "  - x/3\n"
                  "  - 5\n"
                  "  - [a]\n",
                  "t.yaml:2:5: invalid trusted proxy \"10.0.0.1/8\": host bits set\n"
                  "t.yaml:3:5: invalid trusted proxy \"::1/127\": host bits set\n"
                  "t.yaml:4:5: invalid trusted proxy \"::1/129\": "
                  "prefix length must be between 0 and 128\n"
                  "t.yaml:5:5: invalid trusted proxy \"1.2.3.4/33\": "
                  "prefix length must be between 0 and 32\n"
                  "t.yaml:6:5: invalid trusted proxy \"1.2.3.4/01\": "
                  "prefix length must be between 0 and 32\n"
                  "t.yaml:7:5: invalid trusted proxy \"1.2.3.4/\": "
                  "prefix length must be between 0 and 32\n"
                  "t.yaml:8:5: invalid trusted proxy \"x/3\": invalid address\n"
                  "t.yaml:9:5: invalid trusted proxy \"5\": invalid address\n"
                  "t.yaml:10:5: expected a list of strings for \"trusted_proxies\"\n");
}

/* ------------------------------------------------------------------------------------------ */
/* Services                                                                                   */

static void test_service_urls(void **state)
{
    (void)state;
    static const struct {
        const char *url, *host, *path;
        int port;
    } ok[] = {
        {"http://a", "a", "", 80},
        {"http://a/", "a", "/", 80},
        {"http://a//", "a", "//", 80},
        {"HTTP://a:8080/v1/x/", "a", "/v1/x/", 8080},
        {"http://[::1]:9000/x", "::1", "/x", 9000},
        {"http://[2001:db8::1]", "2001:db8::1", "", 80},
        {"http://10.1.2.3:65535/{a}", "10.1.2.3", "/{a}", 65535},
    };

    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char text[256];
        snprintf(text, sizeof(text), "services: [{name: s, url: \"%s\"}]\n", ok[i].url);
        struct tp_config *cfg = load_ok(text);
        const struct tp_conf_service *s = &cfg->services[0];
        assert_string_equal(s->url, ok[i].url);
        assert_string_equal(s->host, ok[i].host);
        assert_string_equal(s->path, ok[i].path);
        assert_int_equal(s->port, ok[i].port);
        assert_int_equal(s->connect_timeout_ms, TP_DEFAULT_CONNECT_TIMEOUT_MS);
        assert_int_equal(s->read_timeout_ms, TP_DEFAULT_READ_TIMEOUT_MS);
        assert_int_equal(s->write_timeout_ms, TP_DEFAULT_WRITE_TIMEOUT_MS);
        assert_int_equal(s->retries, TP_DEFAULT_RETRIES);
        tp_config_free(cfg);
    }
}

static void test_service_url_errors(void **state)
{
    (void)state;
    expect_errors("services:\n"
                  "  - {name: a, url: \"https://x\"}\n"
                  "  - {name: b, url: \"ftp://x\"}\n"
                  "  - {name: c, url: \"http://u@x/\"}\n"
                  "  - {name: d, url: \"http://x:0\"}\n"
                  "  - {name: e, url: \"http://x:65536/\"}\n"
                  "  - {name: f, url: \"http://x/?q=1\"}\n"
                  "  - {name: g, url: \"http://x/#f\"}\n"
                  "  - {name: h, url: \"http://[::g]/\"}\n"
                  "  - {name: i, url: \"http://\"}\n"
                  "  - {name: j, url: \"http://x:\"}\n"
                  "  - {name: k, url: \"http://[::1]x\"}\n"
                  "  - {name: l, url: \"http://a b/\"}\n"
                  "  - {name: m, url: \"http://[::1\"}\n"
                  "  - {name: n, url: \"http://x/a b\"}\n"
                  "  - {name: o, url: 5}\n"
                  "  - {name: p, url: [http://x]}\n",
                  "t.yaml:2:20: https upstreams are not supported yet\n"
                  "t.yaml:3:20: \"url\" must start with http://\n"
                  "t.yaml:4:20: \"url\" must not contain user information\n"
                  "t.yaml:5:20: \"url\" port must be between 1 and 65535\n"
                  "t.yaml:6:20: \"url\" port must be between 1 and 65535\n"
                  "t.yaml:7:20: the path of \"url\" must not contain spaces, a query or a "
                  "fragment\n"
                  "t.yaml:8:20: the path of \"url\" must not contain spaces, a query or a "
                  "fragment\n"
                  "t.yaml:9:20: invalid IPv6 address in \"url\"\n"
                  "t.yaml:10:20: \"url\" has no host\n"
                  "t.yaml:11:20: \"url\" port must be between 1 and 65535\n"
                  "t.yaml:12:20: unexpected text after the IPv6 address in \"url\"\n"
                  "t.yaml:13:20: invalid character in the host of \"url\"\n"
                  "t.yaml:14:20: missing ']' after the IPv6 address in \"url\"\n"
                  "t.yaml:15:20: the path of \"url\" must not contain spaces, a query or a "
                  "fragment\n"
                  "t.yaml:16:20: \"url\" must start with http://\n"
                  "t.yaml:17:20: expected a string for \"url\"\n");
}

static void test_service_host_resolution(void **state)
{
    (void)state;
    struct tp_config *cfg = load_ok("services:\n"
                                    "  - {name: a, url: \"http://my_pool/x\"}\n"
                                    "  - {name: b, url: \"http://api.example.com\"}\n"
                                    "upstreams:\n"
                                    "  - name: my_pool\n");
    assert_non_null(tp_config_find_upstream(cfg, cfg->services[0].host));
    assert_null(tp_config_find_upstream(cfg, cfg->services[1].host));
    tp_config_free(cfg);
    expect_errors("services:\n"
                  "  - {name: users, url: \"http://x_y/\"}\n"
                  "  - {name: b, url: \"http://-bad-\"}\n"
                  "  - {name: c, url: \"http://1.2.3.999\"}\n"
                  "  - {name: d, host: a..b}\n",
                  "t.yaml:2:24: service \"users\": url host \"x_y\" is neither an upstream nor a "
                  "valid host name\n"
                  "t.yaml:3:20: service \"b\": url host \"-bad-\" is neither an upstream nor a "
                  "valid host name\n"
                  "t.yaml:4:20: service \"c\": url host \"1.2.3.999\" is neither an upstream "
                  "nor a valid host name\n"
                  "t.yaml:5:21: service \"d\": host \"a..b\" is neither an upstream nor a valid "
                  "host name\n");
}

static void test_service_kong_style(void **state)
{
    (void)state;
    struct tp_config *cfg = load_ok("services:\n"
                                    "  - {name: a, protocol: http, host: api.local, port: 8080,"
                                    " path: /v1/}\n"
                                    "  - {name: b, host: \"::1\"}\n"
                                    "  - {name: c, host: pool, path: /}\n"
                                    "upstreams: [{name: pool}]\n");
    const struct tp_conf_service *s = cfg->services;

    assert_string_equal(s[0].url, "http://api.local:8080/v1/");
    assert_string_equal(s[0].host, "api.local");
    assert_int_equal(s[0].port, 8080);
    assert_string_equal(s[0].path, "/v1/");
    assert_string_equal(s[1].url, "http://[::1]");
    assert_int_equal(s[1].port, 80);
    assert_string_equal(s[1].path, "");
    assert_string_equal(s[2].url, "http://pool/");
    assert_string_equal(s[2].path, "/");
    tp_config_free(cfg);
}

static void test_service_kong_style_errors(void **state)
{
    (void)state;
    expect_errors("services:\n"
                  "  - {name: p, host: x, url: \"http://x\", port: 1, path: /a}\n"
                  "  - {name: q, protocol: https, host: x}\n"
                  "  - {name: r, protocol: grpc, host: x, port: 70000}\n"
                  "  - {name: s, host: \"a/b\", path: \"x\"}\n"
                  "  - {name: t, port: 80}\n"
                  "  - {name: u, host: \"::g\"}\n",
                  "t.yaml:2:21: \"host\" cannot be combined with \"url\"\n"
                  "t.yaml:2:47: \"port\" cannot be combined with \"url\"\n"
                  "t.yaml:2:56: \"path\" cannot be combined with \"url\"\n"
                  "t.yaml:3:25: https upstreams are not supported yet\n"
                  "t.yaml:4:25: \"protocol\" must be http\n"
                  "t.yaml:4:46: \"port\" must be between 1 and 65535\n"
                  "t.yaml:5:21: invalid host \"a/b\"\n"
                  "t.yaml:5:34: \"path\" must start with '/' and have no spaces, query or "
                  "fragment\n"
                  "t.yaml:6:5: missing required key \"url\" (or \"host\") in service\n"
                  "t.yaml:7:21: invalid host \"::g\"\n");
}

static void test_service_scalars(void **state)
{
    (void)state;
    expect_errors("services:\n"
                  "  - name: \"bad name\"\n"
                  "    url: http://x\n"
                  "    retries: 101\n"
                  "    connect_timeout: 0\n"
                  "    read_timeout: 86400001\n"
                  "    write_timeout: -1\n"
                  "  - name: \"\"\n"
                  "    url: http://x\n",
                  "t.yaml:2:11: invalid name \"bad name\" (use only letters, digits, '.', '_', "
                  "'~' and '-')\n"
                  "t.yaml:4:14: \"retries\" must be between 0 and 100\n"
                  "t.yaml:5:22: \"connect_timeout\" must be between 1 and 86400000\n"
                  "t.yaml:6:19: \"read_timeout\" must be between 1 and 86400000\n"
                  "t.yaml:7:20: \"write_timeout\" must be between 1 and 86400000\n"
                  "t.yaml:8:11: invalid name \"\" (use only letters, digits, '.', '_', '~' and "
                  "'-')\n");
}

/* ------------------------------------------------------------------------------------------ */
/* Names                                                                                      */

static void test_duplicate_names(void **state)
{
    (void)state;
    expect_errors("services:\n"
                  "  - name: users\n"
                  "    url: http://x\n"
                  "    routes:\n"
                  "      - name: r\n"
                  "      - {}\n"
                  "  - name: other\n"
                  "    url: http://x\n"
                  "    routes:\n"
                  "      - name: r\n"
                  "      - name: users.1\n"
                  "  - name: users\n"
                  "    url: http://x\n"
                  "upstreams:\n"
                  "  - name: up\n"
                  "  - name: up\n",
                  "t.yaml:16:11: duplicate upstream name \"up\" (first defined at 15:11)\n"
                  "t.yaml:10:15: duplicate route name \"r\" (first defined at 5:15)\n"
                  "t.yaml:11:15: duplicate route name \"users.1\" (first defined at 6:9)\n"
                  "t.yaml:12:11: duplicate service name \"users\" (first defined at 2:11)\n");
}

/* ------------------------------------------------------------------------------------------ */
/* Routes                                                                                     */

static const char *route_doc(char *buf, size_t size, const char *route)
{
    snprintf(buf, size, "services:\n  - name: s\n    url: http://x\n    routes:\n      - %s\n",
             route);
    return buf;
}

static void test_route_hosts(void **state)
{
    (void)state;
    char buf[1024];
    struct tp_config *cfg =
        load_ok(route_doc(buf, sizeof(buf), "hosts: [WWW.X.Test., \"*.Y.test\", b_c.d, 10.0.0.1]"));
    const struct tp_conf_route *r = &cfg->services[0].routes[0];

    assert_int_equal(r->num_hosts, 4);
    assert_string_equal(r->hosts[0], "www.x.test");
    assert_string_equal(r->hosts[1], "*.y.test");
    assert_string_equal(r->hosts[2], "b_c.d");
    assert_string_equal(r->hosts[3], "10.0.0.1");
    tp_config_free(cfg);
    expect_errors(route_doc(buf, sizeof(buf),
                            "hosts: [\"a..b\", \"x:80\", \"a/b\", \"*\", \"a.*.b\", \"\", \".a\","
                            " \"a!b\", \"*.\"]"),
                  "t.yaml:5:17: invalid host \"a..b\" in \"hosts\": empty label\n"
                  "t.yaml:5:25: invalid host \"x:80\" in \"hosts\": ports are not allowed\n"
                  "t.yaml:5:33: invalid host \"a/b\" in \"hosts\": '/' is not allowed\n"
                  "t.yaml:5:40: invalid host \"*\" in \"hosts\": '*' is only allowed as the "
                  "whole first label\n"
                  "t.yaml:5:45: invalid host \"a.*.b\" in \"hosts\": '*' is only allowed as the "
                  "whole first label\n"
                  "t.yaml:5:54: invalid host \"\" in \"hosts\": empty host\n"
                  "t.yaml:5:58: invalid host \".a\" in \"hosts\": empty label\n"
                  "t.yaml:5:64: invalid host \"a!b\" in \"hosts\": invalid character\n"
                  "t.yaml:5:71: invalid host \"*\" in \"hosts\": '*' is only allowed as the "
                  "whole first label\n");
}

static void test_route_paths_and_methods(void **state)
{
    (void)state;
    char buf[1024];

    expect_errors(route_doc(buf, sizeof(buf),
                            "paths: [\"/\", \"=/x\", \"~^/a$\", \"~\", \"x\", \"/a b\", \"/a?b\","
                            " \"=x\", \"/a#b\"]\n"
                            "        methods: [get, \"G ET\", \"\", Patch]"),
                  "t.yaml:5:38: invalid path \"~\" in \"paths\": empty regular expression\n"
                  "t.yaml:5:43: invalid path \"x\" in \"paths\": must start with \"/\", \"=/\" "
                  "or \"~\"\n"
                  "t.yaml:5:48: invalid path \"/a b\" in \"paths\": contains a space or control "
                  "character\n"
                  "t.yaml:5:56: invalid path \"/a?b\" in \"paths\": must not contain a query or "
                  "fragment\n"
                  "t.yaml:5:64: invalid path \"=x\" in \"paths\": must start with \"/\", \"=/\" "
                  "or \"~\"\n"
                  "t.yaml:5:70: invalid path \"/a#b\" in \"paths\": must not contain a query or "
                  "fragment\n"
                  "t.yaml:6:24: invalid method \"G ET\" in \"methods\"\n"
                  "t.yaml:6:32: invalid method \"\" in \"methods\"\n");
    struct tp_config *cfg = load_ok(route_doc(buf, sizeof(buf), "methods: [patch, M-SEARCH]"));
    assert_string_equal(cfg->services[0].routes[0].methods[0], "PATCH");
    assert_string_equal(cfg->services[0].routes[0].methods[1], "M-SEARCH");
    tp_config_free(cfg);
}

static void test_route_headers_and_query(void **state)
{
    (void)state;
    char buf[1024];

    expect_errors(route_doc(buf, sizeof(buf),
                            "headers:\n"
                            "          X-A: v\n"
                            "          x-a: w\n"
                            "          \"bad name\": v\n"
                            "          X-C: []\n"
                            "          X-D: {a: 1}\n"
                            "          X-E:\n"
                            "          X-F: [a, [b]]\n"
                            "        query:\n"
                            "          \"\": x\n"
                            "          q: 1\n"
                            "          q: 2"),
                  "t.yaml:7:11: duplicate header \"x-a\" in \"headers\" (first defined at 6:11)\n"
                  "t.yaml:8:11: invalid header name \"bad name\" in \"headers\"\n"
                  "t.yaml:9:16: no values for \"x-c\" in \"headers\"\n"
                  "t.yaml:10:16: expected a string or a list of strings for \"x-d\" in "
                  "\"headers\"\n"
                  "t.yaml:11:15: expected a string or a list of strings for \"x-e\" in "
                  "\"headers\"\n"
                  "t.yaml:12:20: expected a list of strings for \"headers\"\n"
                  "t.yaml:14:11: invalid query argument name \"\" in \"query\"\n"
                  "t.yaml:16:11: duplicate query argument \"q\" in \"query\" (first defined at "
                  "15:11)\n");
    expect_errors(route_doc(buf, sizeof(buf), "headers: [a]\n        query: a"),
                  "t.yaml:5:18: expected a mapping for \"headers\"\n"
                  "t.yaml:6:16: expected a mapping for \"query\"\n");
    struct tp_config *cfg = load_ok(route_doc(buf, sizeof(buf), "query: {Page: [\"1\", \"2\"]}"));
    const struct tp_conf_cond *q = &cfg->services[0].routes[0].query[0];
    assert_string_equal(q->name, "Page"); /* query names keep their case */
    assert_int_equal(q->num_values, 2);
    assert_int_equal(q->mark.line, 5);
    assert_int_equal(q->mark.column, 17);
    tp_config_free(cfg);
}

static void test_route_protocols_and_priority(void **state)
{
    (void)state;
    char buf[1024];

    struct tp_config *cfg =
        load_ok(route_doc(buf, sizeof(buf), "{protocols: [http], priority: 2147483647}"));
    assert_int_equal(cfg->services[0].routes[0].priority, 2147483647);
    tp_config_free(cfg);
    expect_errors(route_doc(buf, sizeof(buf), "protocols: [https]\n"
                                              "      - protocols: [grpc, http]\n"
                                              "      - protocols: http\n"
                                              "      - priority: 2147483648"),
                  "t.yaml:5:20: \"protocols\" must include \"http\"\n"
                  "t.yaml:6:21: unsupported protocol \"grpc\" in \"protocols\" (only http and "
                  "https)\n"
                  "t.yaml:7:20: expected a list of strings for \"protocols\"\n"
                  "t.yaml:8:19: \"priority\" must be between -2147483648 and 2147483647\n");
}

/* ------------------------------------------------------------------------------------------ */
/* Upstreams                                                                                  */

static void test_upstream_errors(void **state)
{
    (void)state;
    expect_errors("upstreams:\n"
                  "  - name: up\n"
                  "    algorithm: fastest\n"
                  "    keepalive_pool_size: 10001\n"
                  "    keepalive_idle_timeout: 0\n"
                  "    targets:\n"
                  "      - target: \"::1\"\n"
                  "      - target: \"h:0\"\n"
                  "      - target: h\n"
                  "      - target: h:80\n"
                  "      - target: \"[::1\"\n"
                  "      - target: 300.1.1.1:5\n"
                  "      - target: \"[::1]:1\"\n"
                  "        weight: 70000\n"
                  "      - target: a\n"
                  "        weight: \"5\"\n"
                  "      - bad\n",
                  "t.yaml:3:16: \"algorithm\" must be one of: round-robin, weighted-round-robin, "
                  "least-connections, consistent-hashing, random-two-choices\n"
                  "t.yaml:4:26: \"keepalive_pool_size\" must be between 0 and 10000\n"
                  "t.yaml:5:29: \"keepalive_idle_timeout\" must be between 1 and 86400000\n"
                  "t.yaml:7:17: invalid target \"::1\": IPv6 addresses must be written in "
                  "brackets, as in [::1]:8000\n"
                  "t.yaml:8:17: invalid target \"h:0\": port must be between 1 and 65535\n"
                  "t.yaml:11:17: invalid target \"[::1\": missing ']' after an IPv6 address\n"
                  "t.yaml:12:17: invalid target \"300.1.1.1:5\": invalid host name\n"
                  "t.yaml:14:17: \"weight\" must be between 0 and 65535\n"
                  "t.yaml:16:17: expected an integer for \"weight\"\n"
                  "t.yaml:17:9: expected a mapping for target\n"
                  "t.yaml:10:9: duplicate target \"h\" port 80 (first defined at 9:9)\n");
    struct tp_config *cfg = load_ok("upstreams: [{name: a, algorithm: weighted-round-robin}]\n");
    assert_int_equal(cfg->upstreams[0].algorithm, TP_LB_WEIGHTED_ROUND_ROBIN);
    assert_int_equal(cfg->upstreams[0].keepalive_pool, TP_DEFAULT_KEEPALIVE_POOL);
    assert_int_equal(cfg->upstreams[0].keepalive_idle_ms, TP_DEFAULT_KEEPALIVE_IDLE_MS);
    assert_int_equal(cfg->upstreams[0].num_targets, 0);
    tp_config_free(cfg);
}

static void test_upstream_hashing(void **state)
{
    (void)state;
    struct tp_config *cfg = load_ok("upstreams:\n"
                                    "  - name: a\n"
                                    "    algorithm: consistent-hashing\n"
                                    "    hash_on: header\n"
                                    "    hash_on_header: X-User\n"
                                    "    hash_fallback: cookie\n"
                                    "    hash_on_cookie: Session\n"
                                    "  - name: b\n"
                                    "    algorithm: consistent-hashing\n"
                                    "    hash_on: query_arg\n"
                                    "    hash_on_query_arg: uid\n"
                                    "    hash_fallback: query_arg\n"
                                    "    hash_fallback_query_arg: user\n"
                                    "  - name: c\n"
                                    "    algorithm: random-two-choices\n"
                                    "  - {name: d, algorithm: consistent-hashing, hash_on: ip,\n"
                                    "     hash_fallback: header, hash_fallback_header: X-Id}\n");
    const struct tp_conf_upstream *u = &cfg->upstreams[0];
    assert_int_equal(u->algorithm, TP_LB_CONSISTENT_HASHING);
    assert_int_equal(u->hash_on, TP_HASH_HEADER);
    assert_string_equal(u->hash_on_header, "x-user"); /* lower-cased */
    assert_int_equal(u->hash_fallback, TP_HASH_COOKIE);
    assert_string_equal(u->hash_on_cookie, "Session"); /* cookie names keep their case */
    u = &cfg->upstreams[1];
    assert_int_equal(u->hash_on, TP_HASH_QUERY_ARG);
    assert_string_equal(u->hash_on_query_arg, "uid");
    assert_string_equal(u->hash_fallback_query_arg, "user");
    u = &cfg->upstreams[2];
    assert_int_equal(u->algorithm, TP_LB_RANDOM_TWO_CHOICES);
    assert_int_equal(u->hash_on, TP_HASH_NONE);
    assert_int_equal(u->hash_fallback, TP_HASH_NONE);
    assert_string_equal(u->hash_on_header, "");
    u = &cfg->upstreams[3];
    assert_int_equal(u->hash_on, TP_HASH_IP);
    assert_int_equal(u->hash_fallback, TP_HASH_HEADER);
    assert_string_equal(u->hash_fallback_header, "x-id");
    tp_config_free(cfg);
    /* consistent-hashing without hash_on is allowed (Kong): round-robin, as without a key */
    cfg = load_ok("upstreams: [{name: a, algorithm: consistent-hashing, hash_on: path}]\n");
    assert_int_equal(cfg->upstreams[0].hash_on, TP_HASH_PATH);
    tp_config_free(cfg);
}

static void test_upstream_hashing_errors(void **state)
{
    (void)state;
    expect_errors("upstreams:\n"
                  "  - name: a\n"
                  "    algorithm: consistent-hashing\n"
                  "    hash_on: consumer\n"
                  "  - name: b\n"
                  "    algorithm: consistent-hashing\n"
                  "    hash_on: header\n"
                  "    hash_fallback: query_arg\n"
                  "  - name: c\n"
                  "    hash_on: ip\n"
                  "  - name: d\n"
                  "    algorithm: consistent-hashing\n"
                  "    hash_fallback: ip\n"
                  "  - name: e\n"
                  "    algorithm: consistent-hashing\n"
                  "    hash_on: path\n"
                  "    hash_fallback: path\n"
                  "  - name: f\n"
                  "    algorithm: consistent-hashing\n"
                  "    hash_on: cookie\n"
                  "    hash_on_cookie: \"a b\"\n"
                  "    hash_on_header: \"x:y\"\n"
                  "    hash_on_query_arg: \"a&b\"\n"
                  "    hash_fallback: uri_capture\n"
                  "  - name: g\n"
                  "    algorithm: consistent-hashing\n"
                  "    hash_on: header\n"
                  "    hash_on_header: x-a\n"
                  "    hash_fallback: header\n"
                  "    hash_fallback_header: X-A\n"
                  "  - name: h\n"
                  "    algorithm: consistent-hashing\n"
                  "    hash_on: query_arg\n"
                  "    hash_on_query_arg: "
                  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n",
                  "t.yaml:4:14: \"hash_on\": consumer is not supported yet (no consumers exist)\n"
                  "t.yaml:7:14: \"hash_on_header\" is required when \"hash_on\" is header\n"
                  "t.yaml:8:20: \"hash_fallback_query_arg\" is required when \"hash_fallback\" is "
                  "query_arg\n"
                  "t.yaml:10:14: \"hash_on\" needs \"algorithm: consistent-hashing\"\n"
                  "t.yaml:13:20: \"hash_fallback\" needs \"hash_on\" to be set\n"
                  "t.yaml:17:20: \"hash_fallback\" must differ from \"hash_on\"\n"
                  "t.yaml:21:21: invalid cookie name \"a b\" in \"hash_on_cookie\"\n"
                  "t.yaml:22:21: invalid header name \"x:y\" in \"hash_on_header\"\n"
                  "t.yaml:23:24: invalid query argument name \"a&b\" in \"hash_on_query_arg\"\n"
                  "t.yaml:24:20: \"hash_fallback\" must be one of: none, ip, header, cookie, path, "
                  "query_arg\n"
                  "t.yaml:29:20: \"hash_fallback_header\" must differ from \"hash_on_header\"\n"
                  "t.yaml:34:24: \"hash_on_query_arg\" is longer than 127 bytes\n");
}

/* ------------------------------------------------------------------------------------------ */
/* YAML itself                                                                                */

static void test_yaml_syntax_errors(void **state)
{
    (void)state;
    expect_errors("a: [1\n", "t.yaml:2:1: YAML syntax error: did not find expected ',' or ']' "
                             "(while parsing a flow sequence at 1:4)\n");
    expect_errors("a: b\n  c: d\n",
                  "t.yaml:2:4: YAML syntax error: mapping values are not allowed in this "
                  "context\n");
    expect_errors("a: *x\n", "t.yaml:1:4: YAML syntax error: found undefined alias\n");
    expect_errors("workers: 1\n---\nworkers: 2\n",
                  "t.yaml:3:1: only one YAML document is allowed\n");
    expect_errors("workers: 1\nlog_level: \xff\n",
                  "t.yaml:2:12: invalid input: invalid leading UTF-8 octet\n");
}

static void test_yaml_aliases(void **state)
{
    (void)state;
    /* A scalar alias is harmless; a collection alias could loop or explode. */
    struct tp_config *cfg = load_ok("services:\n"
                                    "  - {name: a, url: &u \"http://x\"}\n"
                                    "  - {name: b, url: *u}\n");
    assert_string_equal(cfg->services[1].url, "http://x");
    tp_config_free(cfg);
    expect_errors("services: &s [{name: a, url: \"http://x\", routes: *s}]\n",
                  "t.yaml:1:11: YAML aliases of lists and mappings are not supported\n");
    expect_errors("services:\n"
                  "  - &svc {name: a, url: \"http://x\"}\n"
                  "  - *svc\n",
                  "t.yaml:2:5: YAML aliases of lists and mappings are not supported\n");
}

static void test_many_errors_in_one_pass(void **state)
{
    (void)state;
    struct result r = load("workers: x\nlog_level: y\naccess_log: ''\nlimits: {max_headers: 0}\n"
                           "services: [{url: http://x}]\nupstreams: [{}]\nfoo: 1\n");
    assert_int_equal(r.rc, -7);
    assert_int_equal(count_lines(r.errors), 7);
    assert_null(r.cfg);
    free(r.errors);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_document_gives_defaults),
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_json_equivalent),
        cmocka_unit_test(test_examples_load),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_out_untouched_and_null_errors),
        cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_duplicate_and_missing_keys),
        cmocka_unit_test(test_wrong_shapes),
        cmocka_unit_test(test_integer_syntax_and_ranges),
        cmocka_unit_test(test_limit_upper_bounds_accepted),
        cmocka_unit_test(test_booleans_and_strings),
        cmocka_unit_test(test_top_level_scalars),
        cmocka_unit_test(test_listen),
        cmocka_unit_test(test_trusted_proxies),
        cmocka_unit_test(test_service_urls),
        cmocka_unit_test(test_service_url_errors),
        cmocka_unit_test(test_service_host_resolution),
        cmocka_unit_test(test_service_kong_style),
        cmocka_unit_test(test_service_kong_style_errors),
        cmocka_unit_test(test_service_scalars),
        cmocka_unit_test(test_duplicate_names),
        cmocka_unit_test(test_route_hosts),
        cmocka_unit_test(test_route_paths_and_methods),
        cmocka_unit_test(test_route_headers_and_query),
        cmocka_unit_test(test_route_protocols_and_priority),
        cmocka_unit_test(test_upstream_errors),
        cmocka_unit_test(test_upstream_hashing),
        cmocka_unit_test(test_upstream_hashing_errors),
        cmocka_unit_test(test_yaml_syntax_errors),
        cmocka_unit_test(test_yaml_aliases),
        cmocka_unit_test(test_many_errors_in_one_pass),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
