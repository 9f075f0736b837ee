/*
 * Unit tests for the shaping plugins' helpers (src/plugins/transform_util.c): form-encoded
 * parameter edits, top-level JSON member edits, "name:value" splitting, field checks, media
 * types.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "plugins/transform_util.h"

#define S(lit) TP_SLICE_LIT(lit)

static void assert_buf(const struct tp_strbuf *b, const char *want)
{
    size_t n = strlen(want);
    if (b->len != n || (n && memcmp(b->ptr, want, n) != 0))
        fail_msg("expected '%s', got '%.*s'", want, (int)b->len, b->ptr ? b->ptr : "");
}

/* ---- parameters ---- */

static void params_result(const char *in, void (*ops)(struct tp__xf_params *, bool *),
                          const char *want, bool want_changed)
{
    struct tp__xf_params p = {0};
    struct tp_strbuf out = {0};
    bool changed = false;
    assert_int_equal(tp__xf_params_parse(&p, in, strlen(in)), 0);
    ops(&p, &changed);
    assert_int_equal(tp__xf_params_encode(&p, &out), 0);
    assert_buf(&out, want);
    assert_int_equal(changed, want_changed);
    tp_strbuf_free(&out);
    tp__xf_params_free(&p);
}

static void ops_remove(struct tp__xf_params *p, bool *ch)
{
    assert_int_equal(tp__xf_params_remove(p, S("a"), ch), 0);
}

static void ops_remove_encoded_name(struct tp__xf_params *p, bool *ch)
{
    assert_int_equal(tp__xf_params_remove(p, S("my key"), ch), 0);
}

static void ops_rename(struct tp__xf_params *p, bool *ch)
{
    assert_int_equal(tp__xf_params_rename(p, S("a"), S("b"), ch), 0);
}

static void ops_rename_absent(struct tp__xf_params *p, bool *ch)
{
    assert_int_equal(tp__xf_params_rename(p, S("zz"), S("b"), ch), 0);
}

static void ops_replace(struct tp__xf_params *p, bool *ch)
{
    assert_int_equal(tp__xf_params_replace(p, S("a"), S("x y&z"), ch), 0);
    assert_int_equal(tp__xf_params_replace(p, S("nope"), S("1"), ch), 0);
}

static void ops_add(struct tp__xf_params *p, bool *ch)
{
    assert_int_equal(tp__xf_params_add(p, S("a"), S("9"), ch), 0);
    assert_int_equal(tp__xf_params_add(p, S("new"), S("é/?"), ch), 0);
}

static void ops_append(struct tp__xf_params *p, bool *ch)
{
    assert_int_equal(tp__xf_params_append(p, S("a"), S("3"), ch), 0);
}

static void test_params(void **state)
{
    (void)state;
    params_result("a=1&b=2&a=%41", ops_remove, "b=2", true);
    params_result("b=2", ops_remove, "b=2", false);
    params_result("my+key=1&my%20key=2&x=3", ops_remove_encoded_name, "x=3", true);
    params_result("b=0&a=1&c&a=2", ops_rename, "b=1&c&b=2", true);
    params_result("b=0", ops_rename_absent, "b=0", false);
    params_result("a=1&k=%7E&a=2", ops_replace, "a=x%20y%26z&k=%7E", true);
    params_result("a=1", ops_add, "a=1&new=%C3%A9%2F%3F", true);
    params_result("a=1", ops_append, "a=1&a=3", true);
    params_result("", ops_append, "a=3", true);
    /* flags without '=' and empty parts survive untouched */
    params_result("flag&&a=1", ops_rename_absent, "flag&a=1", false);
}

static void test_url_decode(void **state)
{
    (void)state;
    struct tp_strbuf b = {0};
    assert_int_equal(tp__xf_url_decode("a%20b+c%zz%4", 12, true, &b), 0);
    assert_buf(&b, "a b c%zz%4");
    tp_strbuf_free(&b);
}

/* ---- JSON ---- */

static void test_json_parse(void **state)
{
    (void)state;
    struct tp__xf_json j = {0};
    const char *doc = " { \"a\" : 1.10 , \"b\\u0041\":{\"x\":[1,\"]\"]}, \"c\":\"s\\\"}\" } ";
    assert_int_equal(tp__xf_json_parse(&j, doc, strlen(doc)), 0);
    assert_int_equal(j.n, 3);
    assert_int_equal(j.v[0].value.len, 4);
    assert_memory_equal(j.v[0].value.ptr, "1.10", 4);
    assert_int_equal(j.v[1].key_text.len, 2);
    assert_memory_equal(j.v[1].key_text.ptr, "bA", 2);
    assert_memory_equal(j.v[1].value.ptr, "{\"x\":[1,\"]\"]}", j.v[1].value.len);
    assert_memory_equal(j.v[2].value.ptr, "\"s\\\"}\"", j.v[2].value.len);
    struct tp_strbuf out = {0};
    assert_int_equal(tp__xf_json_encode(&j, &out), 0);
    assert_buf(&out, "{\"a\":1.10,\"b\\u0041\":{\"x\":[1,\"]\"]},\"c\":\"s\\\"}\"}");
    tp_strbuf_free(&out);
    tp__xf_json_free(&j);

    static const char *const bad[] = {"[1,2]", "{\"a\":}", "", "nope", "{\"a\":1} x", "\"s\""};
    for (size_t i = 0; i < TP_ARRAY_LEN(bad); i++) {
        struct tp__xf_json k = {0};
        assert_int_equal(tp__xf_json_parse(&k, bad[i], strlen(bad[i])), TP_EINVAL);
        tp__xf_json_free(&k);
    }
}

static void test_json_ops(void **state)
{
    (void)state;
    struct tp__xf_json j = {0};
    const char *doc = "{\"s\":\"x\",\"arr\":[ 1 ],\"empty\":[],\"n\":2,\"gone\":true,\"old\":{}}";
    bool ch = false;
    assert_int_equal(tp__xf_json_parse(&j, doc, strlen(doc)), 0);
    assert_int_equal(tp__xf_json_remove(&j, S("gone"), &ch), 0);
    assert_int_equal(tp__xf_json_rename(&j, S("old"), S("new \"k\""), &ch), 0);
    assert_int_equal(tp__xf_json_replace(&j, S("n"), S("\"two\""), &ch), 0);
    assert_int_equal(tp__xf_json_replace(&j, S("absent"), S("1"), &ch), 0);
    assert_int_equal(tp__xf_json_add(&j, S("s"), S("\"no\""), &ch), 0);
    assert_int_equal(tp__xf_json_add(&j, S("added"), S("true"), &ch), 0);
    assert_int_equal(tp__xf_json_append(&j, S("s"), S("\"y\""), &ch), 0);
    assert_int_equal(tp__xf_json_append(&j, S("arr"), S("2"), &ch), 0);
    assert_int_equal(tp__xf_json_append(&j, S("empty"), S("3"), &ch), 0);
    assert_int_equal(tp__xf_json_append(&j, S("fresh"), S("\"z\""), &ch), 0);
    assert_true(ch);
    struct tp_strbuf out = {0};
    assert_int_equal(tp__xf_json_encode(&j, &out), 0);
    assert_buf(&out, "{\"s\":[\"x\",\"y\"],\"arr\":[ 1 ,2],\"empty\":[3],\"n\":\"two\","
                     "\"new \\\"k\\\"\":{},\"added\":true,\"fresh\":[\"z\"]}");
    tp_strbuf_free(&out);
    tp__xf_json_free(&j);

    /* rename onto an existing key drops the old holder of that name */
    struct tp__xf_json k = {0};
    ch = false;
    assert_int_equal(tp__xf_json_parse(&k, "{\"a\":1,\"b\":2}", 13), 0);
    assert_int_equal(tp__xf_json_rename(&k, S("a"), S("b"), &ch), 0);
    assert_int_equal(tp__xf_json_encode(&k, &out), 0);
    assert_buf(&out, "{\"b\":1}");
    tp_strbuf_free(&out);
    tp__xf_json_free(&k);

    /* an empty document (no body) takes additions */
    struct tp__xf_json e = {0};
    ch = false;
    assert_int_equal(tp__xf_json_add(&e, S("k"), S("\"v\""), &ch), 0);
    assert_int_equal(tp__xf_json_encode(&e, &out), 0);
    assert_buf(&out, "{\"k\":\"v\"}");
    tp_strbuf_free(&out);
    tp__xf_json_free(&e);
}

static void test_json_numbers(void **state)
{
    (void)state;
    static const char *const good[] = {"0", "-0", "12", "1.5", "-3.25e+10", "1E5"};
    static const char *const bad[] = {"", "-", "01", "1.", ".5", "1e", "0x10", "inf", " 1"};
    for (size_t i = 0; i < TP_ARRAY_LEN(good); i++)
        assert_true(tp__xf_is_json_number(good[i], strlen(good[i])));
    for (size_t i = 0; i < TP_ARRAY_LEN(bad); i++)
        assert_false(tp__xf_is_json_number(bad[i], strlen(bad[i])));
}

/* ---- small helpers ---- */

static void test_split_pair(void **state)
{
    (void)state;
    struct tp_slice n, v;
    bool colon;
    tp__xf_split_pair("x-a:b:c", &n, &v, &colon);
    assert_true(colon);
    assert_int_equal(n.len, 3);
    assert_string_equal(v.ptr, "b:c");
    tp__xf_split_pair("k:::v", &n, &v, &colon);
    assert_int_equal(n.len, 1);
    assert_string_equal(v.ptr, "v");
    tp__xf_split_pair("name", &n, &v, &colon);
    assert_false(colon);
    assert_int_equal(n.len, 4);
    assert_int_equal(v.len, 0);
    tp__xf_split_pair("k:", &n, &v, &colon);
    assert_true(colon);
    assert_int_equal(v.len, 0);
}

static void test_checks(void **state)
{
    (void)state;
    assert_true(tp__xf_is_token("X-Api-Key", 9));
    assert_false(tp__xf_is_token("bad name", 8));
    assert_false(tp__xf_is_token("a:b", 3));
    assert_false(tp__xf_is_token("", 0));
    assert_true(tp__xf_is_field_value("a\tb c", 5));
    assert_false(tp__xf_is_field_value("a\r\nb", 4));
    assert_true(tp__xf_is_framing_header("Transfer-Encoding", 17));
    assert_true(tp__xf_is_framing_header("content-length", 14));
    assert_false(tp__xf_is_framing_header("Content-Type", 12));
    assert_true(tp__xf_is_template("$(headers.x)"));
    assert_true(tp__xf_is_template("pre $(a) post"));
    assert_false(tp__xf_is_template("$5 (cheap)"));
    assert_false(tp__xf_is_template("$(open"));
}

static void test_media(void **state)
{
    (void)state;
    assert_int_equal(tp__xf_media_type(S("application/json")), TP_XF_MEDIA_JSON);
    assert_int_equal(tp__xf_media_type(S(" Application/JSON ; charset=utf-8")),
                     TP_XF_MEDIA_JSON);
    assert_int_equal(tp__xf_media_type(S("application/problem+json")), TP_XF_MEDIA_JSON);
    assert_int_equal(tp__xf_media_type(S("application/x-www-form-urlencoded")),
                     TP_XF_MEDIA_FORM);
    assert_int_equal(tp__xf_media_type(S("text/plain")), TP_XF_MEDIA_OTHER);
    assert_int_equal(tp__xf_media_type(S("+json")), TP_XF_MEDIA_OTHER);
    assert_int_equal(tp__xf_media_type(S("multipart/form-data; boundary=x")), TP_XF_MEDIA_OTHER);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params),       cmocka_unit_test(test_url_decode),
        cmocka_unit_test(test_json_parse),   cmocka_unit_test(test_json_ops),
        cmocka_unit_test(test_json_numbers), cmocka_unit_test(test_split_pair),
        cmocka_unit_test(test_checks),       cmocka_unit_test(test_media),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
