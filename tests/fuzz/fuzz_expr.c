/*
 * Fuzz target: the ABAC expression language (src/plugins/expr.c).
 *
 * The input is compiled as an expression: a failure must name an offset inside the input and
 * a message; a success is evaluated twice against a fixed fake request (with and without a
 * consumer and claims) and must give the same answer each time. The input is also parsed as
 * an attribute name, and as a YAML document: for every scalar of it, every byte offset of its
 * value is mapped to a line and column (tp_expr_yaml_position), which must lie between the
 * scalar's first and last line, and the scalar is compiled as an expression too. Any violated
 * invariant aborts.
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "plugins/expr.h"

#define MAX_INPUT 8192
#define MAX_OFFSETS 600 /* offsets mapped per scalar */

static void check(int ok, const char *what)
{
    if (ok)
        return;
    fprintf(stderr, "invariant failed: %s\n", what);
    abort();
}

struct fake {
    bool consumer;
    json_t *claims;
};

static const char *const groups[] = {"admin", "users"};

static void put(struct tp_expr_value *out, const char *s)
{
    out->kind = TP_EXPR_V_STRING;
    out->u.str = (struct tp_slice){s, strlen(s)};
}

static void lookup(void *env, const struct tp_expr_attr_ref *ref, struct tp_expr_value *out)
{
    const struct fake *f = env;

    switch (ref->attr) {
    case TP_EXPR_CONSUMER_ID:
    case TP_EXPR_CONSUMER_USERNAME:
    case TP_EXPR_CONSUMER_CUSTOM_ID:
        if (f->consumer)
            put(out, "alice");
        break;
    case TP_EXPR_CONSUMER_GROUPS:
        if (f->consumer) {
            out->kind = TP_EXPR_V_STRINGS;
            out->u.strs.items = groups;
            out->u.strs.n = 2;
        }
        break;
    case TP_EXPR_CONSUMER_ANONYMOUS:
        out->kind = TP_EXPR_V_BOOL;
        out->u.b = !f->consumer;
        break;
    case TP_EXPR_JWT_CLAIMS:
        if (f->claims) {
            out->kind = TP_EXPR_V_JSON;
            out->u.json = f->claims;
        }
        break;
    case TP_EXPR_CLIENT_IP:
        out->kind = TP_EXPR_V_IP;
        out->u.ip.family = AF_INET6;
        inet_pton(AF_INET6, "::ffff:10.1.2.3", out->u.ip.addr);
        break;
    case TP_EXPR_TIME_HOUR:
    case TP_EXPR_TIME_MINUTE:
    case TP_EXPR_TIME_WEEKDAY:
        out->kind = TP_EXPR_V_NUMBER;
        out->u.num = 3;
        break;
    case TP_EXPR_REQUEST_HEADER:
    case TP_EXPR_REQUEST_QUERY:
    case TP_EXPR_ROUTE_PARAM:
        if (ref->name && ref->name[0] == 'x')
            break; /* absent */
        put(out, "alice");
        break;
    default:
        put(out, "/users/alice");
        break;
    }
}

static void fuzz_expression(const char *s, size_t len, json_t *claims)
{
    struct tp_expr *e = NULL;
    struct tp_expr_error err;
    int rc = tp_expr_compile(s, len, &e, &err);

    if (rc != 0) {
        check(e == NULL, "no expression on error");
        check(err.offset <= len, "error offset inside the input");
        check(err.message[0] != '\0', "error message");
        return;
    }
    struct fake with = {true, claims}, without = {false, NULL};
    bool a = tp_expr_eval(e, lookup, &with), b = tp_expr_eval(e, lookup, &with);
    check(a == b, "deterministic evaluation");
    a = tp_expr_eval(e, lookup, &without);
    b = tp_expr_eval(e, lookup, &without);
    check(a == b, "deterministic evaluation without consumer");
    tp_expr_free(e);
}

static void fuzz_yaml(const char *s, size_t len, json_t *claims)
{
    yaml_parser_t parser;
    yaml_document_t doc;

    if (!yaml_parser_initialize(&parser))
        return;
    yaml_parser_set_input_string(&parser, (const unsigned char *)s, len);
    if (!yaml_parser_load(&parser, &doc)) {
        yaml_parser_delete(&parser);
        return;
    }
    for (yaml_node_t *n = doc.nodes.start; n < doc.nodes.top; n++) {
        if (n->type != YAML_SCALAR_NODE)
            continue;
        size_t vlen = n->data.scalar.length;
        for (size_t off = 0; off <= vlen && off < MAX_OFFSETS; off++) {
            int line = 0, col = 0;
            tp_expr_yaml_position(s, len, n, off, &line, &col);
            check(line >= (int)n->start_mark.line + 1, "line not before the scalar");
            check(line <= (int)n->end_mark.line + 1, "line not after the scalar");
            check(col >= 1, "column is 1-based");
        }
        fuzz_expression((const char *)n->data.scalar.value, vlen, claims);
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static json_t *claims;
    struct tp_expr_attr_ref ref;
    struct tp_expr_error err;

    if (size > MAX_INPUT)
        return 0;
    if (!claims)
        claims = json_loads("{\"sub\":\"alice\",\"level\":7,\"roles\":[\"a\",1,true,null],"
                            "\"realm\":{\"access\":{\"roles\":[\"ops\"]}},\"mfa\":true}",
                            0, NULL);
    const char *s = (const char *)data;
    fuzz_expression(s, size, claims);
    if (tp_expr_attr_parse(s, size, &ref, &err) == 0)
        tp_expr_attr_free(&ref);
    else
        check(err.offset <= size, "attribute error offset inside the input");
    fuzz_yaml(s, size, claims);
    return 0;
}
