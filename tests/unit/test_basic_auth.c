/*
 * Unit tests for the Basic credentials parser of the basic-auth plugin (src/plugins/basic_auth.c):
 * RFC 7617 §2 (scheme, user-id ':' password) and strict base64 (RFC 4648 §4).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "turnpike/common.h"

/* Internal to the plugin (no header of its own): declared here for the test. */
int tp__basic_auth_parse(struct tp_slice value, char *buf, struct tp_slice *user,
                         struct tp_slice *password);

struct parse_case {
    const char *header;
    int rc;           /* expected return */
    const char *user; /* expected when rc == 0 */
    const char *password;
};

static void check(const struct parse_case *c)
{
    char buf[256];
    struct tp_slice user = {0}, password = {0};
    size_t len = strlen(c->header);

    assert_true(len + 1 <= sizeof(buf));
    int rc = tp__basic_auth_parse((struct tp_slice){c->header, len}, buf, &user, &password);
    if (rc != c->rc)
        fail_msg("'%s': expected %d, got %d", c->header, c->rc, rc);
    if (rc != 0)
        return;
    if (user.len != strlen(c->user) || memcmp(user.ptr, c->user, user.len) != 0)
        fail_msg("'%s': user '%.*s', expected '%s'", c->header, (int)user.len, user.ptr, c->user);
    if (password.len != strlen(c->password) || memcmp(password.ptr, c->password, password.len) != 0)
        fail_msg("'%s': password '%.*s', expected '%s'", c->header, (int)password.len, password.ptr,
                 c->password);
    /* the password is handed to crypt(3): it must end with a NUL right after it */
    assert_int_equal(password.ptr[password.len], '\0');
}

static void run(const struct parse_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        check(&cases[i]);
}

static void test_valid(void **state)
{
    (void)state;
    static const struct parse_case cases[] = {
        /* RFC 7617 §2's example */
        {"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", 0, "Aladdin", "open sesame"},
        {"basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", 0, "Aladdin", "open sesame"},
        {"BASIC   QWxhZGRpbjpvcGVuIHNlc2FtZQ==  ", 0, "Aladdin", "open sesame"},
        {"Basic\tQWxhZGRpbjpvcGVuIHNlc2FtZQ==", 0, "Aladdin", "open sesame"},
        /* unpadded, as nginx accepts */
        {"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ", 0, "Aladdin", "open sesame"},
        /* empty password; a password holding ':' (only the first one splits) */
        {"Basic dTo=", 0, "u", ""},
        {"Basic dTo", 0, "u", ""},
        {"Basic dTphOmI=", 0, "u", "a:b"},
        /* UTF-8 bytes pass through untouched (RFC 7617 §2.1) */
        {"Basic dGVzdDoxMjPCow==", 0, "test", "123\xc2\xa3"},
    };
    run(cases, TP_ARRAY_LEN(cases));
}

static void test_other_scheme(void **state)
{
    (void)state;
    static const struct parse_case cases[] = {
        {"Bearer abc.def.ghi", TP_ENOTFOUND, NULL, NULL},
        {"Basically dTpw", TP_ENOTFOUND, NULL, NULL},
        {"Digest username=\"u\"", TP_ENOTFOUND, NULL, NULL},
        {"", TP_ENOTFOUND, NULL, NULL},
        {"Basi", TP_ENOTFOUND, NULL, NULL},
    };
    run(cases, TP_ARRAY_LEN(cases));
}

static void test_malformed(void **state)
{
    (void)state;
    static const struct parse_case cases[] = {
        {"Basic", TP_EINVAL, NULL, NULL},          /* no credentials */
        {"Basic    ", TP_EINVAL, NULL, NULL},      /* only spaces */
        {"Basic dXNlcg==", TP_EINVAL, NULL, NULL}, /* "user": no colon */
        {"Basic OnBhc3M=", TP_EINVAL, NULL, NULL}, /* ":pass": empty user-id */
        {"Basic dTpw!!!!", TP_EINVAL, NULL, NULL}, /* outside the alphabet */
        {"Basic dTp w", TP_EINVAL, NULL, NULL},    /* a space inside */
        {"Basic dTpw=", TP_EINVAL, NULL, NULL},    /* padding the length does not need */
        {"Basic d", TP_EINVAL, NULL, NULL},        /* one character: no byte */
        {"Basic dT=o", TP_EINVAL, NULL, NULL},     /* '=' in the middle */
        {"Basic dTpwAA==", TP_EINVAL, NULL, NULL}, /* "u:p\0": NUL byte */
        {"Basic AHU6cA==", TP_EINVAL, NULL, NULL}, /* "\0u:p" */
        {"Basic dTpw-_==", TP_EINVAL, NULL, NULL}, /* base64url is not base64 */
    };
    run(cases, TP_ARRAY_LEN(cases));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_other_scheme),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
